//! Writing to a caller's socket: bounded in time, so a caller that stops reading cannot hold
//! its call's task forever.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::SinkExt as _;
use futures::stream::SplitSink;
use tracing::warn;

/// The write half of a caller's socket (the call's task owns both halves).
pub(crate) type Sink = SplitSink<WebSocket, Message>;

/// A caller that does not take a frame for this long is treated as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends one frame; `Err("caller_gone")` (logged) if the socket failed or stalled.
pub(crate) async fn send(sink: &mut Sink, message: Message) -> Result<(), &'static str> {
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            warn!(%error, "caller vanished: sending failed");
            Err("caller_gone")
        }
        Err(_) => {
            warn!("caller vanished: not reading for {SEND_TIMEOUT:?}");
            Err("caller_gone")
        }
    }
}

/// Sends a close frame and closes the socket, without waiting long for either.
pub(crate) async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}
