//! One accepted TCP connection: the WebSocket handshake (auth, subprotocols, model) and the
//! select loop that feeds [`ConnectionState`] and writes its events.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::state::{ConnectionState, Due, Events};

const DEFAULT_MODEL: &str = "gpt-realtime";
const KEY_PROTOCOL_PREFIX: &str = "openai-insecure-api-key.";

/// What the handshake learned about the client.
#[derive(Debug, Default)]
struct Handshake {
    model: Option<String>,
}

fn query_param(query: &str, name: &str) -> Option<String> {
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

/// Checks the upgrade request: credentials when a key is required, the `realtime`
/// subprotocol, and the model in the query.
#[allow(clippy::result_large_err)] // the error type is tungstenite's handshake callback's
fn check_request(
    request: &Request,
    mut response: Response,
    required_key: Option<&str>,
    handshake: &mut Handshake,
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
    if protocols.iter().any(|p| p == "realtime") {
        response.headers_mut().insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static("realtime"),
        );
    }
    handshake.model = request.uri().query().and_then(|q| query_param(q, "model"));
    Ok(response)
}

/// Small read buffers: tungstenite zero-fills the free part of its read buffer before every
/// read, and a client event is rarely over a few kilobytes. Writes are batched up to a flush.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 << 10)
        .write_buffer_size(64 << 10)
}

async fn wait_for(due: Option<Due>) {
    match due {
        Some(Due::Now) => tokio::task::yield_now().await,
        Some(Due::At(at)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Serves one connection until the client leaves or the simulator shuts down.
#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
pub(crate) async fn serve(stream: TcpStream, shared: Arc<Shared>, cancel: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let mut handshake = Handshake::default();
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
    let connection = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let model = handshake.model.unwrap_or_else(|| DEFAULT_MODEL.to_string());
    tracing::debug!("simulator: connection {connection} accepted (model {model})");
    let (mut sink, mut source) = ws.split();
    let (state, created) = ConnectionState::new(&model, shared.speed);
    let mut state = state.with_tool_done_delay(shared.tool_done_delay);
    let mut out = Events::default();
    out.push(created);
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
        let due = state.next_due();
        let idle = state.idle_deadline();
        tokio::select! {
            _ = cancel.cancelled() => {
                let frame = CloseFrame { code: CloseCode::Away, reason: "simulator shutting down".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
            message = source.next() => match message {
                Some(Ok(Message::Text(text))) => on_text(&text, &shared, &mut state, &mut out),
                Some(Ok(Message::Binary(_))) => out.push(json!({"type": "error", "error": {
                    "type": "invalid_request_error",
                    "code": "invalid_json",
                    "message": "Binary frames are not supported: send each event as a JSON text frame.",
                    "param": null,
                    "event_id": null,
                }})),
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
                state.advance(&mut out);
                // Paced: everything due by now goes out in one write.
                let now = Instant::now();
                while let Some(Due::At(at)) = state.next_due() {
                    if at > now {
                        break;
                    }
                    state.advance(&mut out);
                }
            }
            _ = tokio::time::sleep_until(idle.unwrap_or_else(Instant::now)), if idle.is_some() => {
                state.on_idle_timeout(&mut out);
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

/// The fields of a client event that the audio hot path needs, borrowed from the frame.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    audio: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
}

/// Handles one client text frame.
fn on_text(text: &str, shared: &Shared, state: &mut ConnectionState, out: &mut Events) {
    if !shared.record {
        // Audio appends skip the JSON tree: they are most of what a voice client sends.
        if let Ok(Peek {
            kind,
            audio: Some(audio),
            event_id,
        }) = serde_json::from_str::<Peek<'_>>(text)
        {
            if kind == "input_audio_buffer.append" {
                state.on_append(&audio, event_id.as_deref(), out);
                return;
            }
        }
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            state.on_client_event(&value, out);
            shared.record(value);
        }
        Err(e) => out.push(json!({"type": "error", "error": {
            "type": "invalid_request_error",
            "code": "invalid_json",
            "message": format!("The server could not parse the JSON of the event: {e}."),
            "param": null,
            "event_id": null,
        }})),
    }
}
