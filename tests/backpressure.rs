//! Back-pressure both ways, with nothing lost.
//!
//! A consumer that stops reading events does not make the session buffer without bound: the
//! bounded event channel fills, the session stops reading its socket, and the server's writes
//! block. When the consumer resumes, every event arrives, in order.
//!
//! A server that stops reading does not make the session drop audio: once the connection's
//! send queue is full the session holds the application's commands back, and `send_audio`
//! waits. When the server reads again, every append arrives, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::{
    RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSessionEvent as E,
};
use serde_json::json;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Audio deltas the server tries to send: 10 ms each, about 750 bytes a frame, 75 MB in all,
/// well over what the kernel buffers on loopback (at most 32 MiB received + 4 MiB sent).
const DELTAS: usize = 100_000;
/// Bytes of PCM per delta.
const DELTA_BYTES: usize = 480;

fn delta_frame(k: usize) -> String {
    let mut pcm = vec![0u8; DELTA_BYTES];
    pcm[..4].copy_from_slice(&(k as u32).to_le_bytes());
    json!({"type": "response.output_audio.delta", "event_id": format!("ev_{k}"), "response_id": "resp_1",
           "item_id": "item_1", "output_index": 0, "content_index": 0,
           "delta": base64::engine::general_purpose::STANDARD.encode(&pcm)})
    .to_string()
}

/// Waits until `count` has not moved for a second, and returns where it stopped; fails after
/// `limit` (`what` names the count).
async fn settled(count: &AtomicUsize, limit: Duration, what: &str) -> usize {
    let mut last = count.load(Ordering::SeqCst);
    let mut still = 0;
    let deadline = tokio::time::Instant::now() + limit;
    while still < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the {what} never stopped (at {})",
            count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count.load(Ordering::SeqCst);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    last
}

/// Accepts the session's WebSocket and sends `session.created`.
async fn accept_session(
    listener: &TcpListener,
) -> (
    futures::stream::SplitSink<WebSocketStream<TcpStream>, Message>,
    futures::stream::SplitStream<WebSocketStream<TcpStream>>,
) {
    let (stream, _) = listener.accept().await.expect("accept");
    let ws = tokio_tungstenite::accept_async(stream)
        .await
        .expect("handshake");
    let (mut sink, source) = ws.split();
    sink.send(session_created()).await.expect("send");
    (sink, source)
}

/// The server's first frame.
fn session_created() -> Message {
    let created = json!({"type": "session.created", "event_id": "ev_sc", "session": {
        "type": "realtime", "id": "sess_1", "object": "realtime.session", "model": "gpt-realtime",
        "output_modalities": ["audio"],
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": null},
                  "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}}}});
    Message::text(created.to_string())
}

/// Starts a server that sends `session.created` and then `DELTAS` audio deltas as fast as the
/// client takes them, counting those written.
async fn flooding_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("addr"));
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        let (mut sink, mut source) = accept_session(&listener).await;
        // Keep reading what the client sends (session.update), and drop it.
        tokio::spawn(async move { while let Some(Ok(_)) = source.next().await {} });
        for k in 0..DELTAS {
            if sink
                .send(Message::Text(Utf8Bytes::from(delta_frame(k))))
                .await
                .is_err()
            {
                return;
            }
            counter.store(k + 1, Ordering::SeqCst);
        }
    });
    (url, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_stops_the_socket_and_loses_nothing() {
    let (url, written) = flooding_server().await;
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(url)
        .api_key("sk-test")
        .build();
    let capacity = 16;
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Slow"))
        .model(model)
        .config(RealtimeRunConfig::new().event_capacity(capacity))
        .run(())
        .await
        .expect("session");

    // The consumer reads nothing. The server gets ahead only until the buffers between the two
    // are full: the event channel, the session's read buffer and the kernel's socket buffers.
    let stalled_at = settled(&written, Duration::from_secs(30), "server's writes").await;
    eprintln!(
        "the server stalled after {stalled_at} of {DELTAS} deltas (~{} KiB in flight)",
        stalled_at * delta_frame(0).len() / 1024
    );
    assert!(
        stalled_at < DELTAS / 2,
        "the server wrote {stalled_at} of {DELTAS} deltas to a session nobody read: buffering is unbounded"
    );
    assert!(stalled_at > capacity, "{stalled_at}");

    // The consumer resumes: everything arrives, in order, nothing dropped.
    let mut next = 0usize;
    let drained = tokio::time::timeout(Duration::from_secs(120), async {
        while next < DELTAS {
            match session.next().await {
                Some(E::Audio { data, .. }) => {
                    assert_eq!(data.len(), DELTA_BYTES);
                    let k = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
                    assert_eq!(k, next, "audio delta out of order or lost");
                    next += 1;
                }
                Some(E::Error { error }) => panic!("error: {error}"),
                Some(E::Closed { error }) => panic!("closed after {next} deltas: {error:?}"),
                Some(_) => {}
                None => panic!("stream ended after {next} deltas"),
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "only {next} of {DELTAS} deltas arrived");
    assert_eq!(written.load(Ordering::SeqCst), DELTAS);
    session.close().await;
}

/// Microphone chunks the application sends: 100 ms each (about 6.5 KB a frame), 25 MB of
/// frames in all, well over what the send queue, the command queue and the kernel's socket
/// buffers hold between a client and a server that does not read.
const APPENDS: usize = 4_000;
/// Bytes of PCM per chunk.
const CHUNK_BYTES: usize = 4_800;

fn numbered_chunk(k: usize) -> Vec<u8> {
    let mut pcm = vec![0u8; CHUNK_BYTES];
    pcm[..4].copy_from_slice(&(k as u32).to_le_bytes());
    pcm
}

/// What the not-reading server saw once it read: appends in order, and anything wrong.
#[derive(Default)]
struct Received {
    appends: AtomicUsize,
    out_of_order: AtomicUsize,
}

/// Starts a server that sends `session.created` and then reads nothing until `read` is
/// notified; then it reads everything, checking that the appends' numbers come in order. Its
/// socket's receive buffer is small, so that the client's frames back up quickly.
async fn deaf_server(read: Arc<Notify>) -> (String, Arc<Received>) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(64 << 10).expect("rcvbuf");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(8).expect("listen");
    let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("addr"));
    let received = Arc::new(Received::default());
    let seen = received.clone();
    tokio::spawn(async move {
        let (_sink, mut source) = accept_session(&listener).await;
        read.notified().await;
        while let Some(Ok(message)) = source.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let event: serde_json::Value = serde_json::from_str(&text).expect("json");
            if event["type"] != "input_audio_buffer.append" {
                continue;
            }
            let audio = base64::engine::general_purpose::STANDARD
                .decode(event["audio"].as_str().expect("audio"))
                .expect("base64");
            let k = u32::from_le_bytes([audio[0], audio[1], audio[2], audio[3]]) as usize;
            let next = seen.appends.fetch_add(1, Ordering::SeqCst);
            if k != next || audio.len() != CHUNK_BYTES {
                seen.out_of_order.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_reading_holds_the_sender_and_loses_nothing() {
    let read = Arc::new(Notify::new());
    let (url, received) = deaf_server(read.clone()).await;
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(url)
        .api_key("sk-test")
        .max_send_queue(64 << 10)
        .build();
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Talker"))
        .model(model)
        .run(())
        .await
        .expect("session");

    // The application reads its events in one task and sends the microphone in another.
    let handle = session.handle();
    let errors = tokio::spawn(async move {
        let mut errors = Vec::new();
        while let Some(event) = session.next().await {
            if let E::Error { error } = event {
                errors.push(error.to_string());
            }
        }
        errors
    });
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (handle, sent) = (handle.clone(), sent.clone());
        tokio::spawn(async move {
            for k in 0..APPENDS {
                handle
                    .send_audio(numbered_chunk(k), false)
                    .await
                    .expect("send_audio");
                sent.store(k + 1, Ordering::SeqCst);
            }
        })
    };

    // The server reads nothing: the sender gets ahead only until the buffers between the two
    // are full, and then waits in `send_audio`.
    let last = settled(&sent, Duration::from_secs(60), "application's sends").await;
    eprintln!(
        "the sender waited after {last} of {APPENDS} appends (~{} KiB in flight)",
        last * CHUNK_BYTES * 4 / 3 / 1024
    );
    assert!(
        last < APPENDS / 2,
        "{last} of {APPENDS} appends went into a connection nobody read"
    );
    assert_eq!(received.appends.load(Ordering::SeqCst), 0);

    // The server reads again: the sender finishes, and every append arrives, in order.
    read.notify_one();
    tokio::time::timeout(Duration::from_secs(120), sender)
        .await
        .expect("the sender finished")
        .expect("sender task");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.appends.load(Ordering::SeqCst) < APPENDS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {APPENDS} appends arrived",
            received.appends.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(received.out_of_order.load(Ordering::SeqCst), 0);
    handle.close().await;
    let errors = tokio::time::timeout(Duration::from_secs(10), errors)
        .await
        .expect("the stream ended")
        .expect("consumer task");
    assert!(errors.is_empty(), "errors: {errors:?}");
}
