//! The axum app: routes, admission before upgrades, health and metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::trace::TraceLayer;

use super::carrier::CarrierSerializer;
use super::{Inner, SerializerFn, Transport, auth, browser, metrics, phone};

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const CAPTURE_JS: &str = include_str!("web/capture-worklet.js");
const PLAYBACK_JS: &str = include_str!("web/playback-worklet.js");

type Shared = Arc<Inner>;

pub(crate) fn build(inner: Shared) -> Router {
    let mut router = Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route("/app.js", get(|| asset("text/javascript", APP_JS)))
        .route(
            "/capture-worklet.js",
            get(|| asset("text/javascript", CAPTURE_JS)),
        )
        .route(
            "/playback-worklet.js",
            get(|| asset("text/javascript", PLAYBACK_JS)),
        )
        .route("/ws", get(browser_socket))
        .route("/twilio/voice", post(twiml))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/load", get(load))
        .route("/metrics", get(metrics_text));
    for (path, make) in &inner.carriers {
        let make: SerializerFn = make.clone();
        let route: Arc<str> = Arc::from(path.as_str());
        router = router.route(
            path,
            get(
                move |state: State<Shared>, headers: HeaderMap, ws: WebSocketUpgrade| {
                    carrier_socket(state, headers, ws, make.clone(), route.clone())
                },
            ),
        );
    }
    router.layer(TraceLayer::new_for_http()).with_state(inner)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn refuse(transport: Transport, refusal: super::state::Refusal) -> Response {
    tracing::info!(%transport, reason = refusal.reason(), "call refused");
    metrics::refused(transport, refusal.label());
    (StatusCode::SERVICE_UNAVAILABLE, refusal.reason()).into_response()
}

/// Whether the page's `Origin` may open the socket (see `GatewayBuilder::allowed_origins`).
fn origin_allowed(inner: &Inner, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if !inner.origins.is_empty() {
        return inner.origins.contains(&origin);
    }
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    matches!((authority, host), (Some(a), Some(h)) if a == h)
}

/// Socket limits and buffers: messages up to the configured limit (64 KiB: a second of PCM16 at
/// 24 kHz is 48 KB), and small buffers, since a call's frames are small (tungstenite's default
/// 128 KiB read buffer per socket would be most of a call's memory).
fn sized(ws: WebSocketUpgrade, inner: &Inner) -> WebSocketUpgrade {
    let limit = inner.options.max_message_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
}

async fn browser_socket(
    State(inner): State<Shared>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&inner, &headers) {
        tracing::warn!(
            origin = ?headers.get(header::ORIGIN),
            "browser socket refused: origin not allowed"
        );
        metrics::refused(Transport::Browser, "origin");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let permit = match inner.state.admit(Transport::Browser) {
        Ok(permit) => permit,
        Err(refusal) => return refuse(Transport::Browser, refusal),
    };
    let tasks = permit.state().tasks.clone();
    sized(ws, &inner)
        .on_upgrade(move |socket| tasks.track_future(browser::serve(socket, inner, permit)))
}

async fn carrier_socket(
    State(inner): State<Shared>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
    make: SerializerFn,
    path: Arc<str>,
) -> Response {
    let serializer: Box<dyn CarrierSerializer> = make();
    let transport = Transport::Carrier(serializer.name());
    if let (Some(token), "twilio") = (&inner.twilio_auth_token, serializer.name()) {
        // Twilio signs the upgrade: the stream URL and no parameters.
        let url = format!("{}{path}", public_base(&inner, &headers, "wss"));
        let no_params: [(&str, &str); 0] = [];
        if !auth::twilio_signature_ok(token, &url, &no_params, signature(&headers)) {
            return bad_signature(transport, &url);
        }
    }
    let permit = match inner.state.admit(transport) {
        Ok(permit) => permit,
        Err(refusal) => return refuse(transport, refusal),
    };
    let tasks = permit.state().tasks.clone();
    sized(ws, &inner).on_upgrade(move |socket| {
        tasks.track_future(phone::serve(socket, serializer, inner, permit))
    })
}

/// The TwiML webhook: connect the call to the media stream, or 503 when no call can be taken
/// (Twilio then uses the number's fallback URL).
async fn twiml(
    State(inner): State<Shared>,
    headers: HeaderMap,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    let transport = Transport::Carrier("twilio");
    let state = &inner.state;
    if state.is_draining() {
        return refuse(transport, super::state::Refusal::Draining);
    }
    if state.active() >= state.max_sessions {
        return refuse(transport, super::state::Refusal::Full);
    }
    if let Some(token) = &inner.twilio_auth_token {
        let url = format!("{}/twilio/voice", public_base(&inner, &headers, "https"));
        let pairs: Vec<(&String, &String)> = params.iter().collect();
        if !auth::twilio_signature_ok(token, &url, &pairs, signature(&headers)) {
            return bad_signature(transport, &url);
        }
    }
    let base = public_base(&inner, &headers, "wss");
    let call_sid = params.get("CallSid").map(String::as_str).unwrap_or("");
    let mut parameters = format!(
        "<Parameter name=\"callSid\" value=\"{}\"/>",
        xml_escape(call_sid)
    );
    if let Some(secret) = &inner.stream_secret {
        let token = auth::mint_stream_token(secret, call_sid, STREAM_TOKEN_TTL);
        parameters.push_str(&format!("<Parameter name=\"token\" value=\"{token}\"/>"));
    }
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Response><Connect><Stream url=\"{url}/twilio/stream\">{parameters}</Stream></Connect>\
         <Say>{say}</Say></Response>",
        url = xml_escape(&base),
        say = xml_escape(&inner.options.fallback_say),
    );
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// How long a stream token minted by the webhook stays valid (Twilio connects in seconds).
const STREAM_TOKEN_TTL: Duration = Duration::from_secs(120);

/// The gateway's public base URL with `scheme` (`https` or `wss`): the configured one, or the
/// request's `Host`.
fn public_base(inner: &Inner, headers: &HeaderMap, scheme: &str) -> String {
    match &inner.public_url {
        Some(url) => {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .or_else(|| url.strip_prefix("wss://"))
                .or_else(|| url.strip_prefix("ws://"))
                .unwrap_or(url);
            format!("{scheme}://{rest}")
        }
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("{scheme}://{host}")
        }
    }
}

fn signature(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-twilio-signature")
        .and_then(|h| h.to_str().ok())
}

fn bad_signature(transport: Transport, url: &str) -> Response {
    tracing::warn!(%transport, url, "refused: missing or wrong X-Twilio-Signature");
    metrics::refused(transport, "signature");
    (StatusCode::FORBIDDEN, "invalid Twilio signature").into_response()
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

async fn readyz(State(inner): State<Shared>) -> Response {
    let state = &inner.state;
    if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else if state.active() >= state.max_sessions {
        (StatusCode::SERVICE_UNAVAILABLE, "full").into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

async fn load(State(inner): State<Shared>) -> Response {
    let state = &inner.state;
    axum::Json(json!({
        "load": state.load(),
        "cpu": state.cpu(),
        "active_sessions": state.active(),
        "max_sessions": state.max_sessions,
        "draining": state.is_draining(),
    }))
    .into_response()
}

async fn metrics_text(State(inner): State<Shared>) -> Response {
    match &inner.prometheus {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_is_escaped() {
        assert_eq!(xml_escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
