//! API keys never show: not in `Debug` output, not in errors (even when the server echoes
//! them back), not in tracing output.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::Simulator;
use realtime_agents::{
    Error, FunctionTool, RealtimeAgent, RealtimeRunConfig, RealtimeRunner,
    RealtimeSessionEvent as E, ReconnectPolicy,
};
use schemars::JsonSchema;
use serde::Deserialize;
use support::{ScriptedServer, ev, until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The key every test uses; no output may contain it.
const KEY: &str = "sk-proj-CANARY-7f3a9c51e2d84b06";
/// A second secret, sent as a custom header (Azure's `api-key`).
const HEADER_KEY: &str = "az-CANARY-0b1c2d3e4f5a6b7c";

fn assert_no_secret(what: &str, text: &str) {
    for secret in [KEY, HEADER_KEY] {
        assert!(!text.contains(secret), "{what} shows a secret: {text}");
        // Nor a recognisable part of it.
        assert!(
            !text.contains(&secret[4..20]),
            "{what} shows part of a secret: {text}"
        );
    }
}

fn assert_error_hides_secrets(error: &Error) {
    assert_no_secret("Display", &error.to_string());
    assert_no_secret("Debug", &format!("{error:?}"));
    assert_no_secret("alternate Debug", &format!("{error:#?}"));
}

#[test]
fn debug_of_builder_model_runner_and_config_hides_keys() {
    let builder = OpenAIRealtimeWebSocketModel::builder()
        .url("ws://127.0.0.1:9/v1/realtime")
        .api_key(KEY)
        .header("api-key", HEADER_KEY);
    assert_no_secret("builder Debug", &format!("{builder:?} {builder:#?}"));
    let model = builder.build();
    let shown = format!("{model:?} {model:#?}");
    assert_no_secret("model Debug", &shown);
    assert!(
        shown.contains("127.0.0.1:9"),
        "the rest is still shown: {shown}"
    );
    let runner = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model)
        .config(RealtimeRunConfig::new());
    assert_no_secret("runner Debug", &format!("{runner:?} {runner:#?}"));
}

/// A key given in the URL's query (some proxies and Azure deployments take it there) is as
/// secret as one given in a header.
#[test]
fn debug_of_a_model_with_a_key_in_the_url_hides_it() {
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(format!("ws://127.0.0.1:9/v1/realtime?api-key={KEY}"))
        .build();
    assert_no_secret("model Debug", &format!("{model:?} {model:#?}"));
}

/// An HTTP server on loopback that refuses every WebSocket upgrade with `status` and puts the
/// whole request, `Authorization` header and query string included, into the response body
/// (as a careless proxy might).
async fn echoing_refuser(status: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request);
                let auth = request
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    .unwrap_or("none");
                let body = format!(
                    "{{\"error\":{{\"message\":\"Incorrect API key provided ({auth})\"}}}}\nrequest was:\n{request}"
                );
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("ws://{addr}/v1/realtime")
}

async fn connect_error(model: OpenAIRealtimeWebSocketModel) -> Error {
    let result = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model)
        .run(())
        .await;
    match result {
        Ok(_) => panic!("the connection should have been refused"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn refused_upgrade_reports_the_status_but_not_the_echoed_key() {
    let url = echoing_refuser("401 Unauthorized").await;
    let models = [
        (
            "bearer key",
            OpenAIRealtimeWebSocketModel::builder()
                .url(url.clone())
                .api_key(KEY)
                .build(),
        ),
        (
            "custom header",
            OpenAIRealtimeWebSocketModel::builder()
                .url(url.clone())
                .header("api-key", HEADER_KEY)
                .build(),
        ),
        (
            "key in the query",
            OpenAIRealtimeWebSocketModel::builder()
                .url(format!("{url}?api-key={KEY}"))
                .build(),
        ),
    ];
    for (case, model) in models {
        let error = connect_error(model).await;
        match &error {
            Error::Connect {
                url: shown,
                status,
                message,
            } => {
                assert_eq!(*status, Some(401), "{case}: {error}");
                assert_eq!(shown, &url, "{case}: the URL without its query");
                assert!(
                    message.contains("Incorrect API key provided"),
                    "{case}: the server's explanation is kept: {message}"
                );
            }
            other => panic!("{case}: expected Error::Connect, got {other:?}"),
        }
        assert!(error.to_string().contains("HTTP 401"), "{error}");
        assert_error_hides_secrets(&error);
    }
}

#[tokio::test]
async fn other_connect_failures_never_show_a_key_from_the_url() {
    // Connection refused: a port nobody listens on any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = OpenAIRealtimeWebSocketModel::builder()
        .url(format!("ws://127.0.0.1:{port}/v1/realtime?api-key={KEY}"))
        .api_key(KEY)
        .build();
    let error = connect_error(refused).await;
    assert!(
        matches!(error, Error::Connect { status: None, .. }),
        "{error:?}"
    );
    assert_error_hides_secrets(&error);

    // Handshake timeout: a server that accepts the TCP connection and says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let slow = OpenAIRealtimeWebSocketModel::builder()
        .url(format!("ws://{addr}/v1/realtime?model=m&api-key={KEY}"))
        .header("api-key", HEADER_KEY)
        .handshake_timeout(Duration::from_millis(200))
        .build();
    let error = connect_error(slow).await;
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    assert_error_hides_secrets(&error);

    // TLS to a peer that is not TLS.
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = plain.accept().await {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let tls = OpenAIRealtimeWebSocketModel::builder()
        .url(format!(
            "wss://127.0.0.1:{}/v1/realtime?api-key={KEY}",
            addr.port()
        ))
        .api_key(KEY)
        .build();
    let error = connect_error(tls).await;
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert_error_hides_secrets(&error);
}

// ---------------------------------------------------------------------------------------
// Tracing

/// Everything every subscriber layer wrote, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The text so far, once it is checked to hold each of `expected`.
    fn text_with(&self, expected: &[&str]) -> String {
        let text = self.text();
        for expected in expected {
            assert!(
                text.contains(expected),
                "capture lacks `{expected}`; captured:\n{text}"
            );
        }
        text
    }
}

/// Installs (once per test binary) a global TRACE subscriber that writes every event, every
/// span's open and close with its fields, and every `log` record of the dependencies
/// (tungstenite logs through `log`) into one buffer.
fn capture_all_tracing() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .try_init()
                .expect("the only global subscriber of this test binary");
            captured
        })
        .clone()
}

#[derive(Deserialize, JsonSchema)]
struct City {
    city: String,
}

#[tokio::test]
async fn tracing_of_a_full_session_never_shows_the_key() {
    let captured = capture_all_tracing();
    let server = ScriptedServer::start(|e, out| match e["type"].as_str() {
        Some("conversation.item.create") if e["item"]["type"] == "message" => {
            out.send(ev::user_text_item("u1", None, "Weather in Paris?"));
        }
        Some("response.create") if e["event_id"].as_str() == Some("rta_response_create_1") => {
            out.send_all([
                ev::response_created("r1"),
                ev::function_call("r1", "fc1", "call_1", "get_weather", r#"{"city":"Paris"}"#),
                ev::function_call("r1", "fc2", "call_2", "broken", "{}"),
                ev::function_call("r1", "fc3", "call_3", "no_such_tool", "{}"),
                ev::error("some_server_error", "something went wrong", None),
                ev::response_done("r1", "completed"),
            ]);
            out.raw("{ this is not json");
        }
        Some("response.create") => {
            out.send_all([
                ev::response_created("r2"),
                ev::assistant_item("a2", None, "in_progress"),
                ev::transcript_delta("r2", "a2", "Sunny in Paris."),
                ev::audio_delta("r2", "a2", 20),
                ev::audio_done("r2", "a2"),
                ev::response_done("r2", "completed"),
            ]);
        }
        _ => {}
    })
    .await;
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(server.url.clone())
        .api_key(KEY)
        .build();
    let agent = RealtimeAgent::new("Assistant")
        .tool(FunctionTool::new(
            "get_weather",
            "Current weather in a city.",
            |a: City| async move { Ok::<_, String>(format!("Sunny in {}", a.city)) },
        ))
        .tool(FunctionTool::new(
            "broken",
            "Always fails.",
            |_: serde_json::Value| async move { Err::<String, _>("database unavailable") },
        ));
    let mut session = RealtimeRunner::new(agent)
        .model(model)
        .config(RealtimeRunConfig::new().raw_events(true))
        .run(())
        .await
        .expect("session starts");
    session.send_message("Weather in Paris?").await.unwrap();
    let mut events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "Sunny in Paris."),
    )
    .await;
    events.extend(until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await);
    let errors = events
        .iter()
        .filter(|e| matches!(e, E::Error { .. }))
        .count();
    assert!(
        errors >= 4,
        "tool failure, unknown tool, server error, bad frame: {events:#?}"
    );
    // An unexpected close by the server, then a second session closed by the client.
    server.responder().close(4000, "going away");
    let rest = tokio::time::timeout(Duration::from_secs(5), session.by_ref().collect::<Vec<_>>())
        .await
        .expect("the session ends");
    assert!(
        matches!(rest.last(), Some(E::Closed { error: Some(_) })),
        "{rest:#?}"
    );
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(server.url.clone())
        .api_key(KEY)
        .build();
    let session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model)
        .run(())
        .await
        .expect("second session starts");
    server.wait_for("session.update", 2).await;
    session.close().await;
    drop(session);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The capture really saw the session: our spans and events, tool spans, and the
    // dependencies' `log` records (tungstenite's).
    let text = captured.text_with(&[
        "realtime_session",
        "session started",
        "tool=get_weather",
        "model error",
        "session ended with an error",
        "session ended",
        "tungstenite",
    ]);
    assert_no_secret("tracing output", &text);
}

/// A session against the simulator (which wants the key) that loses its connection twice,
/// once to the server going away and once to a refused upgrade, then reconnects, all under the
/// TRACE capture with the `log` bridge: the key shows up 0 times, though tungstenite's own
/// TRACE records (frames sent and received) are there.
#[tokio::test]
async fn trace_capture_of_a_reconnecting_session_never_shows_the_key() {
    let captured = capture_all_tracing();
    let simulator = |key: &str, addr: Option<std::net::SocketAddr>| {
        let builder = Simulator::builder().speed(0.0).require_api_key(key);
        let builder = match addr {
            Some(addr) => builder.addr(addr),
            None => builder,
        };
        async move { builder.start().await.expect("simulator starts") }
    };
    let sim = simulator(KEY, None).await;
    let addr = sim.local_addr();
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(sim.url())
        .api_key(KEY)
        .build();
    let reconnect = ReconnectPolicy::new()
        .max_attempts(30)
        .backoff(Duration::from_millis(50), Duration::from_millis(150));
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model)
        .config(RealtimeRunConfig::new().reconnect(reconnect))
        .run(())
        .await
        .expect("session starts");
    session.send_message("Hello!").await.unwrap();
    until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;

    // The server goes away; in its place one that wants another key refuses the upgrade.
    sim.shutdown().await;
    let wrong = simulator("sk-someone-elses-key", Some(addr)).await;
    until(&mut session, |e| {
        matches!(
            e,
            E::Reconnecting {
                error: Error::Connect {
                    status: Some(401),
                    ..
                },
                ..
            }
        )
    })
    .await;
    // Then the right server is back.
    wrong.shutdown().await;
    let sim = simulator(KEY, Some(addr)).await;
    until(&mut session, |e| matches!(e, E::Reconnected { .. })).await;
    session.send_message("Hello again!").await.unwrap();
    until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    session.close().await;
    assert_eq!(sim.connections(), 1, "the reconnect reached the new server");
    drop(session);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let text = captured.text_with(&[
        "reconnect attempt failed",
        "HTTP 401",
        "reconnected",
        // tungstenite's own TRACE records, through the `log` bridge.
        "tungstenite::protocol",
        "Received message",
    ]);
    assert_eq!(text.matches(KEY).count(), 0, "the key is in the capture");
    assert_no_secret("tracing output", &text);
}

#[tokio::test]
async fn configured_secrets_are_redacted_from_the_sessions_log_lines() {
    const SECRET: &str = "db-secret-7Q2Z9";
    let captured = capture_all_tracing();
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "session.update" {
            out.send(ev::error(
                "bad_token",
                &format!("token {SECRET} is invalid"),
                None,
            ));
        }
    })
    .await;
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(server.model())
        .config(RealtimeRunConfig::new().redact_secrets([SECRET]))
        .run(())
        .await
        .expect("session starts");
    let events = until(&mut session, |e| matches!(e, E::Error { .. })).await;
    assert!(
        matches!(events.last(), Some(E::Error { error: Error::Server(e) }) if e.message == "token [REDACTED] is invalid")
    );
    session.close().await;
    let text = captured.text();
    assert!(
        text.contains("token [REDACTED] is invalid"),
        "the model error is logged: {text}"
    );
    let ours: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("realtime_agents"))
        .collect();
    assert!(!ours.join("\n").contains(SECRET), "{ours:#?}");
}
