//! A consumer that stops reading events does not make the session buffer without bound: the
//! bounded event channel fills, the session stops reading its socket, and the server's writes
//! block. When the consumer resumes, every event arrives, in order.

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
use tokio::net::TcpListener;
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

/// Starts a server that sends `session.created` and then `DELTAS` audio deltas as fast as the
/// client takes them, counting those written.
async fn flooding_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("addr"));
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let ws = tokio_tungstenite::accept_async(stream)
            .await
            .expect("handshake");
        let (mut sink, mut source) = ws.split();
        // Keep reading what the client sends (session.update), and drop it.
        tokio::spawn(async move { while let Some(Ok(_)) = source.next().await {} });
        let created = json!({"type": "session.created", "event_id": "ev_sc", "session": {
            "type": "realtime", "id": "sess_1", "object": "realtime.session", "model": "gpt-realtime",
            "output_modalities": ["audio"],
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": null},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}}}});
        sink.send(Message::text(created.to_string()))
            .await
            .expect("send");
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
    let mut last = written.load(Ordering::SeqCst);
    let mut still = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while still < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never stalled ({} of {DELTAS} written)",
            written.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = written.load(Ordering::SeqCst);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    let stalled_at = last;
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
