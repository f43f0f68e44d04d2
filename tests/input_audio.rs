//! Microphone audio batching (`RealtimeRunConfig::input_audio_batch`) over loopback WebSockets.

mod support;

use std::time::Duration;

use base64::Engine as _;
use realtime_agents::{RealtimeAgent, RealtimeRunConfig};
use serde_json::Value;
use support::ScriptedServer;
use support::script::start;

/// 20 ms of PCM16 at 24 kHz, every byte `n`.
fn chunk(n: u8) -> Vec<u8> {
    vec![n; 960]
}

fn decoded(append: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(append["audio"].as_str().expect("audio"))
        .expect("base64")
}

fn config(window_ms: u64) -> RealtimeRunConfig {
    RealtimeRunConfig::new().input_audio_batch(Duration::from_millis(window_ms))
}

#[tokio::test]
async fn chunks_go_out_one_frame_per_window_in_order_and_the_rest_when_the_window_ends() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let session = start(&server, RealtimeAgent::new("Assistant"), config(500)).await;
    let handle = session.handle();
    // 500 ms of PCM16 at 24 kHz is 25 chunks: two full batches, then 10 chunks that wait.
    let sent: Vec<u8> = (0..60u8).flat_map(chunk).collect();
    for n in 0..60u8 {
        handle.send_audio(chunk(n), false).await.unwrap();
    }
    let full = server.wait_for("input_audio_buffer.append", 2).await;
    assert_eq!(
        full.iter().map(|a| decoded(a).len()).collect::<Vec<_>>(),
        [24_000, 24_000],
        "full batches go out without waiting for the window"
    );
    let appends = server.wait_for("input_audio_buffer.append", 3).await;
    let sizes: Vec<usize> = appends.iter().map(|a| decoded(a).len()).collect();
    assert_eq!(
        sizes,
        [24_000, 24_000, 9_600],
        "the rest goes out at the deadline"
    );
    let received: Vec<u8> = appends.iter().flat_map(decoded).collect();
    assert_eq!(received, sent, "nothing lost or reordered");
}

#[tokio::test]
async fn a_batch_goes_out_before_any_other_command_and_with_a_commit() {
    let server = ScriptedServer::start(|_, _| {}).await;
    // A window that never ends during the test: only other commands and commits send audio.
    let session = start(&server, RealtimeAgent::new("Assistant"), config(60_000)).await;
    let handle = session.handle();
    handle.send_audio(chunk(1), false).await.unwrap();
    handle.send_audio(chunk(2), false).await.unwrap();
    handle.send_message("Hello").await.unwrap();
    handle.send_audio(chunk(3), true).await.unwrap();
    server.wait_for("input_audio_buffer.commit", 1).await;

    let received = server.received();
    let order: Vec<&str> = received
        .iter()
        .filter_map(|v| v["type"].as_str())
        .filter(|t| *t != "session.update")
        .collect();
    assert_eq!(
        order,
        [
            "input_audio_buffer.append",
            "conversation.item.create",
            "response.create",
            "input_audio_buffer.append",
            "input_audio_buffer.commit",
        ]
    );
    let appends = server.received_of("input_audio_buffer.append");
    assert_eq!(decoded(&appends[0]), [chunk(1), chunk(2)].concat());
    assert_eq!(decoded(&appends[1]), chunk(3));
}

#[tokio::test]
async fn without_a_window_every_chunk_is_its_own_frame() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    let handle = session.handle();
    for n in 0..3u8 {
        handle.send_audio(chunk(n), false).await.unwrap();
    }
    let appends = server.wait_for("input_audio_buffer.append", 3).await;
    let chunks: Vec<Vec<u8>> = appends.iter().map(decoded).collect();
    assert_eq!(chunks, [chunk(0), chunk(1), chunk(2)]);
}
