//! Cost of the Live backend's hot paths per event, through the library's real code (the Live
//! counterpart of `benches/session.rs`).
//!
//! * `live_wire/*`: the Live protocol's frame handling alone (no socket): one 20 ms
//!   `session.output_audio.delta` frame to PCM bytes (silence detection included), one 100 ms
//!   delta (what the real API sends), one `session.output_transcript.delta`, and one 20 ms
//!   microphone chunk to a `session.input_audio.append` frame.
//! * `live_session/*`: end to end through a [`RealtimeSession`] on a [`LiveModel`] connected to
//!   a loopback WebSocket server on another thread; the time is the **CPU time of the client
//!   thread** per event, as in `benches/session.rs`.
//!
//! Run briefly with:
//! `cargo bench --bench live -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::{SinkExt, StreamExt};
use realtime_agents::model::ModelCommand;
use realtime_agents::model::live::LiveModel;
use realtime_agents::model::live::bench::Wire;
use realtime_agents::{RealtimeAgent, RealtimeRunner, RealtimeSession, RealtimeSessionEvent as E};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Speech-like PCM16 at 24 kHz.
fn pcm(bytes: usize) -> Vec<u8> {
    (0..bytes / 2)
        .flat_map(|i| (((i * 37) % 2000) as i16 - 1000).to_le_bytes())
        .collect()
}

fn audio_delta_frame(ms: usize) -> String {
    json!({"type": "session.output_audio.delta",
           "delta": base64::engine::general_purpose::STANDARD.encode(pcm(ms * 48))})
    .to_string()
}

fn transcript_delta_frame() -> String {
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
    let mut g = c.benchmark_group("live_wire");
    g.throughput(Throughput::Elements(1));
    let mut wire = Wire::new();
    let mut events = Vec::with_capacity(8);
    for ms in [20, 100] {
        let frame = Utf8Bytes::from(audio_delta_frame(ms));
        g.bench_function(format!("decode_output_audio_delta_{ms}ms"), |b| {
            b.iter(|| {
                wire.decode(black_box(frame.clone()), &mut events);
                black_box(&events);
                events.clear();
            })
        });
    }
    let frame = Utf8Bytes::from(transcript_delta_frame());
    g.bench_function("decode_output_transcript_delta", |b| {
        b.iter(|| {
            wire.decode(black_box(frame.clone()), &mut events);
            black_box(&events);
            events.clear();
        })
    });
    let chunk = bytes::Bytes::from(pcm(960));
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

/// A Live server on another thread: answers `session.start`, then sends what it is told, as
/// fast as the client reads, and reads (and drops) what the client sends.
struct Loopback {
    url: String,
    jobs: mpsc::UnboundedSender<(Utf8Bytes, u64)>,
}

impl Loopback {
    fn start() -> Self {
        let (jobs, mut rx) = mpsc::unbounded_channel::<(Utf8Bytes, u64)>();
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("live-loopback".into())
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
                    url_tx
                        .send(format!("ws://{addr}/v1/live/sessions"))
                        .expect("url");
                    let (stream, _) = listener.accept().await.expect("accept");
                    stream.set_nodelay(true).expect("nodelay");
                    let mut ws = tokio_tungstenite::accept_async(stream)
                        .await
                        .expect("handshake");
                    loop {
                        tokio::select! {
                            job = rx.recv() => match job {
                                Some((frame, n)) => {
                                    for _ in 0..n {
                                        if ws.feed(Message::Text(frame.clone())).await.is_err() { return; }
                                    }
                                    if ws.flush().await.is_err() { return; }
                                }
                                None => return,
                            },
                            message = ws.next() => match message {
                                Some(Ok(Message::Text(text))) => {
                                    if text.as_str().contains(r#""type":"session.start""#) {
                                        let started = json!({"type": "session.started", "event_id": "ev_ss",
                                            "session": {"id": "sess_1", "expires_at": 0, "model": "gpt-live-1",
                                                        "status": "active",
                                                        "audio": {"format": {"type": "audio/pcm", "rate": 24000}}}});
                                        if ws.send(Message::text(started.to_string())).await.is_err() { return; }
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
    let mut g = c.benchmark_group("live_session");
    g.throughput(Throughput::Elements(1));
    let server = Loopback::start();
    let model = LiveModel::builder().url(server.url.clone()).build();
    let mut s = rt
        .block_on(
            RealtimeRunner::new(RealtimeAgent::new("Bench"))
                .model(model)
                .run(()),
        )
        .expect("session");
    // The first frame starts the utterance the measured deltas belong to.
    let frame = Utf8Bytes::from(audio_delta_frame(20));
    let _ = server.jobs.send((frame.clone(), 1));
    rt.block_on(count(&mut s, 1, |e| matches!(e, E::Audio { .. })));
    g.bench_function("output_audio_delta_20ms_client_cpu", |b| {
        b.iter_custom(|n| {
            let start = thread_cpu();
            rt.block_on(async {
                let _ = server.jobs.send((frame.clone(), n));
                count(&mut s, n, |e| matches!(e, E::Audio { .. })).await;
            });
            thread_cpu() - start
        })
    });
    let frame = Utf8Bytes::from(transcript_delta_frame());
    g.bench_function("output_transcript_delta_client_cpu", |b| {
        b.iter_custom(|n| {
            let start = thread_cpu();
            rt.block_on(async {
                let _ = server.jobs.send((frame.clone(), n));
                count(&mut s, n, |e| matches!(e, E::TranscriptDelta { .. })).await;
            });
            thread_cpu() - start
        })
    });
    g.finish();
}

criterion_group!(benches, wire, end_to_end);
criterion_main!(benches);
