//! One accepted TCP connection, whatever its protocol: the WebSocket handshake (the API key,
//! the choice of protocol), then the loop that owns the socket and the clock, feeds client
//! frames and due steps to the protocol's state machine ([`Machine`]) and writes the events
//! it produces, numbered.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::outgoing::{Due, Events};
use super::{live, realtime};

const KEY_PROTOCOL_PREFIX: &str = "openai-insecure-api-key.";

/// The fields of a client event that the audio hot path needs, borrowed from the frame.
#[derive(serde::Deserialize)]
struct Peek<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    audio: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    event_id: Option<std::borrow::Cow<'a, str>>,
}

/// The base64 audio and the event id of `text` when it is an audio append of type `kind`,
/// read without building the JSON tree: appends are most of what a voice client sends.
pub(crate) fn peek_audio_append<'a>(
    text: &'a str,
    kind: &str,
) -> Option<(std::borrow::Cow<'a, str>, Option<std::borrow::Cow<'a, str>>)> {
    let peek = serde_json::from_str::<Peek<'a>>(text).ok()?;
    (peek.kind == kind).then_some((peek.audio?, peek.event_id))
}

/// One connection's protocol: the state machine the connection loop drives.
///
/// Everything is synchronous: each input (a client frame, a due step, a timer) pushes the
/// server events it produces, in order, to `out`. The loop owns the socket, the clock and the
/// event ids (`event_<n>`, numbered per connection), and stamps audio deltas.
pub(crate) trait Machine {
    /// A text frame from the client. The machine parses it, answers it, and hands the parsed
    /// event to [`Shared::record`] for [`Simulator::client_events`](super::Simulator::client_events);
    /// when [`Shared::recording`] is false it may skip building a JSON tree (audio appends).
    fn on_text(&mut self, text: &str, shared: &Shared, out: &mut Events);
    /// A binary frame from the client.
    fn on_binary(&mut self, out: &mut Events);
    /// When the next step of what is streaming is due (`None`: nothing is).
    fn next_due(&self) -> Option<Due>;
    /// Runs the step that is due.
    fn advance(&mut self, out: &mut Events);
    /// When the machine's timer fires, if armed (Realtime: the idle timeout).
    fn timer(&self) -> Option<Instant>;
    /// The timer fired.
    fn on_timer(&mut self, out: &mut Events);
    /// The session is over: the loop sends what is queued, closes the socket and ends.
    fn finished(&self) -> bool {
        false
    }
}

/// The wire protocol a connection speaks, chosen from its upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// OpenAI Realtime GA ([`realtime`]).
    Realtime,
    /// OpenAI's Live API ([`live`]).
    Live,
}

impl Protocol {
    /// The protocol a request's path asks for: a path with a `live` segment
    /// (`/v1/live/sessions`) is Live; every other path is Realtime, as it always was for this
    /// simulator (clients keep their own paths and queries).
    fn of(path: &str) -> Self {
        if path.split('/').any(|segment| segment == "live") {
            Protocol::Live
        } else {
            Protocol::Realtime
        }
    }
}

/// What the handshake learned about the client.
#[derive(Debug)]
struct Handshake {
    protocol: Protocol,
    /// The request's query string (`""` without one).
    query: String,
}

/// The value of `name` in a URL query string (`a=1&b=2`), when present and not empty.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name && !v.is_empty()).then(|| v.to_string())
    })
}

fn unauthorized(message: &str) -> ErrorResponse {
    let body = json!({"error": {
        "message": message,
        "type": "invalid_request_error",
        "param": null,
        "code": "invalid_api_key",
    }});
    let mut response = http::Response::new(Some(body.to_string()));
    *response.status_mut() = http::StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Small read buffers: tungstenite zero-fills the free part of its read buffer before every
/// read, and a client event is rarely over a few kilobytes. Writes are batched up to a flush.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 << 10)
        .write_buffer_size(64 << 10)
}

async fn wait_for(due: Option<Due>) {
    match due {
        Some(Due::Now) => tokio::task::yield_now().await,
        Some(Due::At(at)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Checks the upgrade request: credentials when a key is required, then lets the protocol
/// that the path asks for answer it (subprotocols).
#[allow(clippy::result_large_err)] // the error type is tungstenite's handshake callback's
fn check_request(
    request: &Request,
    mut response: Response,
    required_key: Option<&str>,
    handshake: &mut Option<Handshake>,
) -> Result<Response, ErrorResponse> {
    let headers = request.headers();
    let protocols: Vec<String> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    if let Some(required) = required_key {
        let mut offered: Vec<String> = Vec::new();
        if let Some(auth) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let mut parts = auth.splitn(2, ' ');
            if parts
                .next()
                .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
            {
                offered.extend(parts.next().map(|k| k.trim().to_string()));
            }
        }
        if let Some(key) = headers.get("api-key").and_then(|v| v.to_str().ok()) {
            offered.push(key.trim().to_string());
        }
        offered.extend(
            protocols
                .iter()
                .filter_map(|p| p.strip_prefix(KEY_PROTOCOL_PREFIX))
                .map(str::to_string),
        );
        if offered.is_empty() {
            return Err(unauthorized(
                "You didn't provide an API key. You need to provide your API key in an \
                 Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            ));
        }
        if !offered.iter().any(|k| k == required) {
            return Err(unauthorized("Incorrect API key provided."));
        }
    }
    let protocol = Protocol::of(request.uri().path());
    match protocol {
        Protocol::Realtime => realtime::answer_upgrade(&protocols, &mut response),
        // No subprotocol: Live clients send none.
        Protocol::Live => {}
    }
    *handshake = Some(Handshake {
        protocol,
        query: request.uri().query().unwrap_or_default().to_string(),
    });
    Ok(response)
}

/// Serves one connection until the client leaves or the simulator shuts down.
#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
pub(crate) async fn serve(stream: TcpStream, shared: Arc<Shared>, cancel: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let mut handshake = None;
    let required = shared.api_key.clone();
    let callback = |request: &Request, response: Response| {
        check_request(request, response, required.as_deref(), &mut handshake)
    };
    let ws = tokio::select! {
        _ = cancel.cancelled() => return,
        ws = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config())) => match ws {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!("simulator: handshake failed: {e}");
                return;
            }
        },
    };
    // The callback ran and accepted the request, or the handshake failed above.
    let Some(handshake) = handshake else {
        return;
    };
    let connection = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    tracing::debug!(
        "simulator: connection {connection} accepted ({:?})",
        handshake.protocol
    );
    match handshake.protocol {
        Protocol::Realtime => {
            let (machine, out) = realtime::ConnectionState::open(&handshake.query, &shared);
            drive(ws, machine, out, &shared, &cancel, connection).await;
        }
        Protocol::Live => {
            let (machine, out) = live::LiveState::open(&shared);
            drive(ws, machine, out, &shared, &cancel, connection).await;
        }
    }
}

/// The connection loop: writes what the machine produced, then waits for a client frame, the
/// machine's next due step or its timer, or the shutdown.
async fn drive<M: Machine>(
    ws: WebSocketStream<TcpStream>,
    mut machine: M,
    mut out: Events,
    shared: &Shared,
    cancel: &CancellationToken,
    connection: usize,
) {
    let (mut sink, mut source) = ws.split();
    let mut sent = 0u64;
    let mut event_id = String::new();
    loop {
        if !out.is_empty() {
            for event in out.0.drain(..) {
                sent += 1;
                event_id.clear();
                let _ = write!(event_id, "event_{sent}");
                let stamp = shared.stamp_audio.then(unix_micros);
                let text = event.render(&event_id, stamp);
                if sink
                    .feed(Message::Text(Utf8Bytes::from(text)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        if machine.finished() {
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
        let due = machine.next_due();
        let timer = machine.timer();
        tokio::select! {
            _ = cancel.cancelled() => {
                let frame = CloseFrame { code: CloseCode::Away, reason: "simulator shutting down".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
            message = source.next() => match message {
                Some(Ok(Message::Text(text))) => machine.on_text(&text, shared, &mut out),
                Some(Ok(Message::Binary(_))) => machine.on_binary(&mut out),
                // tungstenite answers pings and close frames itself; after a close frame
                // the next read ends the stream.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!("simulator: connection {connection} read error: {e}");
                    return;
                }
                None => return,
            },
            _ = wait_for(due), if due.is_some() => {
                machine.advance(&mut out);
                // Paced: everything due by now goes out in one write.
                let now = Instant::now();
                while let Some(Due::At(at)) = machine.next_due() {
                    if at > now {
                        break;
                    }
                    machine.advance(&mut out);
                }
            }
            _ = tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {
                machine.on_timer(&mut out);
            }
        }
    }
}

/// Microseconds since the Unix epoch (the clock every process on the machine shares).
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}
