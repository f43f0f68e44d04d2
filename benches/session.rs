//! Cost of the client's hot paths per event, through the library's real code.
//!
//! * `wire/*`: the OpenAI transport's frame handling alone (no socket): one 20 ms
//!   `response.output_audio.delta` text frame to PCM bytes, and one 20 ms microphone chunk to an
//!   `input_audio_buffer.append` frame. `protocol/*` is the general decoder for comparison.
//! * `session/*`: end to end through a [`RealtimeSession`] connected to a loopback WebSocket
//!   server on another thread. The time reported is the **CPU time of the client thread** (the
//!   session task and the application loop share one current-thread runtime) per event, so the
//!   server's work is not counted: socket reads and writes, WebSocket framing, decoding, the
//!   session task and the event channel are.
//! * `session/transcript_delta/history_N`: the same for an assistant transcript delta once the
//!   history holds N items: the cost must not grow with N.
//! * `live_wire/*` and `live_session/*`: the same for the Live backend (`model::live`): a 20 ms
//!   and a 100 ms `session.output_audio.delta` (what the real API sends; silence detection
//!   included), a `session.output_transcript.delta`, a 20 ms `session.input_audio.append`;
//!   end to end, an audio and a transcript delta through a session on a `LiveModel`.
//!
//! Run briefly with:
//! `cargo bench --bench session -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::{SinkExt, StreamExt};
use realtime_agents::model::live::{LiveModel, bench::Wire as LiveWire};
use realtime_agents::model::{ModelCommand, OpenAIRealtimeWebSocketModel, bench::Wire};
use realtime_agents::protocol::ServerEvent;
use realtime_agents::{RealtimeAgent, RealtimeRunner, RealtimeSession, RealtimeSessionEvent as E};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// 20 ms of PCM16 at 24 kHz.
const CHUNK_BYTES: usize = 960;

fn pcm_chunk() -> Vec<u8> {
    (0..CHUNK_BYTES / 2)
        .flat_map(|i| (((i * 37) % 2000) as i16 - 1000).to_le_bytes())
        .collect()
}

/// In the order the API (and the simulator) sends its fields: `type` first. (`json!` would sort
/// the keys and put it last.)
fn audio_delta_frame() -> String {
    let delta = base64::engine::general_purpose::STANDARD.encode(pcm_chunk());
    format!(
        r#"{{"type":"response.output_audio.delta","event_id":"event_4711","response_id":"resp_12","item_id":"item_34","output_index":0,"content_index":0,"delta":"{delta}"}}"#
    )
}

/// In the API's field order, as [`audio_delta_frame`].
fn transcript_delta_frame() -> String {
    r#"{"type":"response.output_audio_transcript.delta","event_id":"event_4712","response_id":"resp_12","item_id":"item_asst","output_index":0,"content_index":0,"delta":" word"}"#.to_owned()
}

/// A Live `session.output_audio.delta` of `ms` milliseconds (no ids, as on the real API).
fn live_audio_delta_frame(ms: usize) -> String {
    let pcm: Vec<u8> = pcm_chunk().repeat(ms / 20);
    json!({"type": "session.output_audio.delta",
           "delta": base64::engine::general_purpose::STANDARD.encode(pcm)})
    .to_string()
}

fn live_transcript_delta_frame() -> String {
    json!({"type": "session.output_transcript.delta", "event_id": "event_4712", "delta": " word",
           "start_ms": 4800, "end_ms": 5000})
    .to_string()
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    let frame = Utf8Bytes::from(audio_delta_frame());
    let mut wire = Wire::new();
    let mut events = Vec::with_capacity(4);
    g.bench_function("decode_output_audio_delta_20ms", |b| {
        b.iter(|| {
            wire.decode(black_box(frame.clone()), &mut events);
            black_box(&events);
            events.clear();
        })
    });
    let chunk = bytes::Bytes::from(pcm_chunk());
    g.bench_function("encode_input_audio_append_20ms", |b| {
        b.iter(|| {
            black_box(wire.encode(ModelCommand::Audio {
                audio: black_box(chunk.clone()),
                commit: false,
            }))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("protocol");
    g.throughput(Throughput::Elements(1));
    let text = audio_delta_frame();
    g.bench_function("server_event_from_json_audio_delta_20ms", |b| {
        b.iter(|| {
            let event = ServerEvent::from_json(black_box(&text));
            if let Ok(ServerEvent::ResponseOutputAudioDelta(e)) = event {
                black_box(
                    base64::engine::general_purpose::STANDARD
                        .decode(e.delta.as_bytes())
                        .ok(),
                );
            }
        })
    });
    g.finish();
}

/// How many appends the input bench sends before it waits for the server to have read them:
/// 1.4 MB of frames, well under the session's send queue limit.
const APPENDS_PER_ACK: u64 = 1_000;

/// What the loopback server does next.
enum Job {
    /// Send this frame `n` times, in one batch.
    Send(Utf8Bytes, u64),
    /// Once `n` audio appends have arrived since the connection opened, send this frame.
    AfterAppends(u64, Utf8Bytes),
}

/// A WebSocket server on another thread that sends what it is told, as fast as the client
/// reads, and reads (and drops) what the client sends. It speaks first with `session.created`
/// (Realtime), or answers `session.start` with `session.started` (Live).
struct Loopback {
    url: String,
    jobs: mpsc::UnboundedSender<Job>,
}

impl Loopback {
    fn start() -> Self {
        Self::start_speaking(false)
    }

    fn start_speaking(live: bool) -> Self {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("loopback-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    let path = if live { "live/sessions" } else { "realtime" };
                    url_tx.send(format!("ws://{addr}/v1/{path}")).expect("url");
                    let (stream, _) = listener.accept().await.expect("accept");
                    stream.set_nodelay(true).expect("nodelay");
                    let mut ws = tokio_tungstenite::accept_async(stream)
                        .await
                        .expect("handshake");
                    let created = json!({"type": "session.created", "event_id": "ev_sc", "session": {
                        "type": "realtime", "id": "sess_1", "object": "realtime.session", "model": "gpt-realtime",
                        "output_modalities": ["audio"],
                        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": null},
                                  "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}}}});
                    let started = json!({"type": "session.started", "event_id": "ev_ss", "session": {
                        "id": "sess_1", "expires_at": 0, "model": "gpt-live-1", "status": "active",
                        "audio": {"format": {"type": "audio/pcm", "rate": 24000}}}});
                    if !live {
                        ws.send(Message::text(created.to_string()))
                            .await
                            .expect("send");
                    }
                    let mut appends = 0u64;
                    let mut waiting: Option<(u64, Utf8Bytes)> = None;
                    loop {
                        tokio::select! {
                            job = rx.recv() => match job {
                                Some(Job::Send(frame, n)) => {
                                    for _ in 0..n {
                                        if ws.feed(Message::Text(frame.clone())).await.is_err() { return; }
                                    }
                                    if ws.flush().await.is_err() { return; }
                                }
                                Some(Job::AfterAppends(n, frame)) => {
                                    if appends >= n {
                                        if ws.send(Message::Text(frame)).await.is_err() { return; }
                                    } else {
                                        waiting = Some((n, frame));
                                    }
                                }
                                None => return,
                            },
                            message = ws.next() => match message {
                                Some(Ok(Message::Text(text))) => {
                                    if live
                                        && text.as_str().contains(r#""type":"session.start""#)
                                        && ws.send(Message::text(started.to_string())).await.is_err()
                                    {
                                        return;
                                    }
                                    if text.as_str().starts_with(r#"{"type":"input_audio_buffer.append""#) {
                                        appends += 1;
                                        if waiting.as_ref().is_some_and(|(n, _)| appends >= *n) {
                                            if let Some((_, frame)) = waiting.take() {
                                                if ws.send(Message::Text(frame)).await.is_err() { return; }
                                            }
                                        }
                                    }
                                }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                        }
                    }
                });
            })
            .expect("server thread");
        let url = url_rx.recv().expect("server url");
        Self { url, jobs }
    }
}

/// A session on `rt` (current-thread) connected to a fresh loopback server.
fn session(rt: &tokio::runtime::Runtime) -> (RealtimeSession, Loopback) {
    let server = Loopback::start();
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(server.url.clone())
        .build();
    let session = rt
        .block_on(
            RealtimeRunner::new(RealtimeAgent::new("Bench"))
                .model(model)
                .run(()),
        )
        .expect("session");
    (session, server)
}

/// Reads events until `n` match `pred`.
async fn count(session: &mut RealtimeSession, n: u64, pred: impl Fn(&E) -> bool) {
    let mut seen = 0;
    while seen < n {
        match session.next().await {
            Some(event) if pred(&event) => seen += 1,
            Some(E::Closed { error }) => panic!("session closed: {error:?}"),
            Some(E::Error { error }) => panic!("session error: {error}"),
            Some(_) => {}
            None => panic!("session ended"),
        }
    }
}

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));

    let (mut s, server) = session(&rt);
    let frame = Utf8Bytes::from(audio_delta_frame());
    g.bench_function("output_audio_delta_20ms_client_cpu", |b| {
        b.iter_custom(|n| {
            let start = thread_cpu();
            rt.block_on(async {
                let _ = server.jobs.send(Job::Send(frame.clone(), n));
                count(&mut s, n, |e| matches!(e, E::Audio { .. })).await;
            });
            thread_cpu() - start
        })
    });

    let chunk = bytes::Bytes::from(pcm_chunk());
    let ack = Utf8Bytes::from(
        json!({"type": "input_audio_buffer.speech_started", "event_id": "ev_ack", "audio_start_ms": 0, "item_id": "item_u"})
            .to_string(),
    );
    let mut appended = 0;
    g.bench_function("input_audio_append_20ms_client_cpu", |b| {
        b.iter_custom(|n| {
            let start = thread_cpu();
            rt.block_on(async {
                // In rounds that the server acknowledges: unpaced, the client writes faster
                // than the server reads, and the session's full send queue would make
                // `send_audio` wait for the server, which the bench would then measure too.
                let mut left = n;
                while left > 0 {
                    let round = left.min(APPENDS_PER_ACK);
                    left -= round;
                    appended += round;
                    let _ = server.jobs.send(Job::AfterAppends(appended, ack.clone()));
                    for _ in 0..round {
                        s.send_audio(chunk.clone(), false).await.expect("send");
                    }
                    count(&mut s, 1, |e| matches!(e, E::InputSpeechStarted { .. })).await;
                }
            });
            thread_cpu() - start
        })
    });
    drop(s);
    drop(server);

    for items in [10u64, 1_000] {
        let (mut s, server) = session(&rt);
        let mut previous: Option<String> = None;
        for i in 0..items - 1 {
            let id = format!("item_{i}");
            let frame = json!({"type": "conversation.item.added", "event_id": format!("ev_{i}"), "previous_item_id": previous,
                "item": {"id": id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                         "content": [{"type": "input_text", "text": "What is the weather like in Paris today?"}]}});
            let _ = server
                .jobs
                .send(Job::Send(Utf8Bytes::from(frame.to_string()), 1));
            previous = Some(id);
        }
        let assistant = json!({"type": "conversation.item.added", "event_id": "ev_asst", "previous_item_id": previous,
            "item": {"id": "item_asst", "object": "realtime.item", "type": "message", "role": "assistant",
                     "status": "in_progress", "content": [{"type": "output_audio", "transcript": null}]}});
        let _ = server
            .jobs
            .send(Job::Send(Utf8Bytes::from(assistant.to_string()), 1));
        rt.block_on(count(&mut s, items, |e| {
            matches!(e, E::HistoryAdded { .. })
        }));
        assert_eq!(s.history().len() as u64, items);
        let frame = Utf8Bytes::from(transcript_delta_frame());
        g.bench_function(
            format!("transcript_delta/history_{items}_client_cpu"),
            |b| {
                b.iter_custom(|n| {
                    let start = thread_cpu();
                    rt.block_on(async {
                        let _ = server.jobs.send(Job::Send(frame.clone(), n));
                        count(&mut s, n, |e| matches!(e, E::TranscriptDelta { .. })).await;
                    });
                    thread_cpu() - start
                })
            },
        );
        assert_eq!(s.history().len() as u64, items);
    }
    g.finish();
}

fn live_wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("live_wire");
    g.throughput(Throughput::Elements(1));
    let mut wire = LiveWire::new();
    let mut events = Vec::with_capacity(8);
    let frames = [
        ("decode_output_audio_delta_20ms", live_audio_delta_frame(20)),
        (
            "decode_output_audio_delta_100ms",
            live_audio_delta_frame(100),
        ),
        (
            "decode_output_transcript_delta",
            live_transcript_delta_frame(),
        ),
    ];
    for (name, frame) in frames {
        let frame = Utf8Bytes::from(frame);
        g.bench_function(name, |b| {
            b.iter(|| {
                wire.decode(black_box(frame.clone()), &mut events);
                black_box(&events);
                events.clear();
            })
        });
    }
    let chunk = bytes::Bytes::from(pcm_chunk());
    g.bench_function("encode_input_audio_append_20ms", |b| {
        b.iter(|| {
            black_box(wire.encode(ModelCommand::Audio {
                audio: black_box(chunk.clone()),
                commit: false,
            }))
        })
    });
    g.finish();
}

fn live_end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let mut g = c.benchmark_group("live_session");
    g.throughput(Throughput::Elements(1));
    let server = Loopback::start_speaking(true);
    let model = LiveModel::builder().url(server.url.clone()).build();
    let mut s = rt
        .block_on(
            RealtimeRunner::new(RealtimeAgent::new("Bench"))
                .model(model)
                .run(()),
        )
        .expect("session");
    let benches = [
        (
            "output_audio_delta_20ms_client_cpu",
            live_audio_delta_frame(20),
            (|e: &E| matches!(e, E::Audio { .. })) as fn(&E) -> bool,
        ),
        (
            "output_transcript_delta_client_cpu",
            live_transcript_delta_frame(),
            |e: &E| matches!(e, E::TranscriptDelta { .. }),
        ),
    ];
    for (name, frame, pred) in benches {
        let frame = Utf8Bytes::from(frame);
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                let start = thread_cpu();
                rt.block_on(async {
                    let _ = server.jobs.send(Job::Send(frame.clone(), n));
                    count(&mut s, n, pred).await;
                });
                thread_cpu() - start
            })
        });
    }
    g.finish();
}

criterion_group!(benches, wire, live_wire, live_end_to_end, end_to_end);
criterion_main!(benches);
