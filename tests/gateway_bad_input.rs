//! Bad input: malformed frames, unknown events, callers that vanish, sessions that cannot
//! start, calls over the limits. Each gives a clear log line (in the call's span) and a closed
//! session, and nothing leaks: the gateway's count and the Prometheus gauge are back at 0.

mod gateway_support;

use std::sync::OnceLock;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use gateway_support::twilio::TwilioCall;
use gateway_support::{TestGateway, captured_logs, http, log_text, wait_for};
use realtime_agents::gateway::{GatewayEvent, PrometheusHandle, install_prometheus};
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::Simulator;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::{self, Message};

/// One scenario at a time, so the process-wide gauge belongs to it.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| install_prometheus().expect("the only recorder"))
        .clone()
}

async fn gateway(sim: &Simulator) -> TestGateway {
    captured_logs();
    TestGateway::start(&sim.url(), |b| {
        b.prometheus(prometheus())
            .start_timeout(Duration::from_millis(500))
    })
    .await
}

/// The call ended with `outcome`, a log line of its span says `message`, and nothing leaked.
async fn assert_ended(gw: &TestGateway, outcome: &str, message: &str) {
    gw.wait_idle(Duration::from_secs(10)).await;
    let ended: Vec<(String, &'static str)> = gw
        .events()
        .iter()
        .filter_map(|e| match e {
            GatewayEvent::CallEnded {
                call_id, outcome, ..
            } => Some((call_id.clone(), *outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    let (call_id, got) = &ended[0];
    assert_eq!(*got, outcome);
    let logs = log_text();
    assert!(
        logs.lines()
            .any(|l| l.contains(call_id.as_str()) && l.contains(message)),
        "no log line of {call_id} says {message:?}:\n{}",
        logs.lines()
            .filter(|l| l.contains(call_id.as_str()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (status, metrics) = http("GET", &gw.url("/metrics"), "").await;
    assert_eq!(status, 200);
    let active: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("realtime_gateway_active_sessions{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(active, 0.0, "{metrics}");
}

async fn twilio_call(gw: &TestGateway) -> TwilioCall {
    let call = TwilioCall::connect(&gw.ws_url("/twilio/stream"), "CA1").await;
    wait_for(Duration::from_secs(5), "the session", || {
        gw.events()
            .iter()
            .any(|e| matches!(e, GatewayEvent::CallStarted { .. }))
    })
    .await;
    call
}

#[tokio::test]
async fn twilio_malformed_json_closes_the_call() {
    let _serial = SERIAL.lock().await;
    let sim = Simulator::start().await.unwrap();
    let gw = gateway(&sim).await;
    let call = twilio_call(&gw).await;
    call.raw(Message::text("{\"event\":\"media\",\"media\":"));
    let log = call.log.clone();
    call.finished(Duration::from_secs(5)).await;
    assert_eq!(log.lock().unwrap().closed, Some(Some(1007)));
    assert_ended(
        &gw,
        "protocol_error",
        "closing the call: malformed frame from the carrier",
    )
    .await;
}

#[tokio::test]
async fn twilio_binary_frame_closes_the_call() {
    let _serial = SERIAL.lock().await;
    let sim = Simulator::start().await.unwrap();
    let gw = gateway(&sim).await;
    let call = twilio_call(&gw).await;
    call.raw(Message::binary(vec![0xffu8; 160]));
    call.finished(Duration::from_secs(5)).await;
    assert_ended(
        &gw,
        "protocol_error",
        "binary frame (Twilio sends JSON text frames only)",
    )
    .await;
}

#[tokio::test]
async fn twilio_bad_base64_closes_the_call() {
    let _serial = SERIAL.lock().await;
    let sim = Simulator::start().await.unwrap();
    let gw = gateway(&sim).await;
    let call = twilio_call(&gw).await;
    call.raw(Message::text(
        r#"{"event":"media","streamSid":"MZCA1","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"%%%"}}"#,
    ));
    call.finished(Duration::from_secs(5)).await;
    assert_ended(&gw, "protocol_error", "media payload is not base64").await;
}

#[tokio::test]
async fn twilio_unknown_events_are_logged_and_the_call_goes_on_until_the_caller_vanishes() {
    let _serial = SERIAL.lock().await;
    let sim = Simulator::start().await.unwrap();
    let gw = gateway(&sim).await;
    let call = twilio_call(&gw).await;
    for _ in 0..3 {
        call.raw(Message::text(r#"{"event":"surprise","streamSid":"MZCA1"}"#));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gw.gateway.active_sessions(),
        1,
        "an unknown event does not end the call"
    );
    let logs = log_text();
    assert_eq!(
        logs.matches("ignoring an unknown carrier event").count(),
        1,
        "logged once per kind"
    );
    call.vanish();
    assert_ended(&gw, "caller_gone", "caller vanished").await;
}

#[tokio::test]
async fn a_stream_without_start_is_closed() {
    let _serial = SERIAL.lock().await;
    let sim = Simulator::start().await.unwrap();
    let gw = gateway(&sim).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url("/twilio/stream"))
        .await
        .unwrap();
    ws.send(Message::text(
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
    ))
    .await
    .unwrap();
    // The gateway gives up after start_timeout (500 ms) and closes.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1008));
    assert_ended(&gw, "protocol_error", "no `start` within").await;
}

async fn browser(
    gw: &TestGateway,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url("/ws"))
        .await
        .unwrap();
    let Some(Ok(Message::Text(ready))) = ws.next().await else {
        panic!("no ready message")
    };
    let ready: Value = serde_json::from_str(ready.as_str()).unwrap();
    assert_eq!(ready["type"], "ready");
    assert_eq!(ready["sample_rate"], 24_000);
    ws
}

async fn close_code(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("the gateway closes the socket")
}

#[tokio::test]
async fn browser_malformed_json_closes_the_call() {
    let _serial = SERIAL.lock().await;
    let sim = Simulator::start().await.unwrap();
    let gw = gateway(&sim).await;
    let mut ws = browser(&gw).await;
    ws.send(Message::text("played 100 ms")).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1007));
    assert_ended(
        &gw,
        "protocol_error",
        "closing the call: malformed message from the page",
    )
    .await;
}

#[tokio::test]
async fn browser_odd_sized_audio_closes_the_call() {
    let _serial = SERIAL.lock().await;
    let sim = Simulator::start().await.unwrap();
    let gw = gateway(&sim).await;
    let mut ws = browser(&gw).await;
    ws.send(Message::binary(vec![0u8; 961])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1007));
    assert_ended(&gw, "protocol_error", "odd-sized PCM16 frame").await;
}

#[tokio::test]
async fn browser_unknown_messages_are_ignored_and_a_vanished_page_ends_the_call() {
    let _serial = SERIAL.lock().await;
    let sim = Simulator::start().await.unwrap();
    let gw = gateway(&sim).await;
    let mut ws = browser(&gw).await;
    ws.send(Message::text(r#"{"type":"telemetry","fps":60}"#))
        .await
        .unwrap();
    // A playback report for an item that never played changes nothing.
    ws.send(Message::text(
        r#"{"type":"played","item_id":"nope","content_index":0,"played_ms":999999}"#,
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.gateway.active_sessions(), 1);
    drop(ws); // no close frame: the TCP connection just goes away
    assert_ended(&gw, "caller_gone", "caller vanished").await;
    assert!(log_text().contains("ignoring an unknown message from the page"));
}

#[tokio::test]
async fn a_session_that_cannot_start_closes_the_call() {
    let _serial = SERIAL.lock().await;
    captured_logs();
    // A model server that is not there.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/v1/realtime", unused.local_addr().unwrap());
    drop(unused);
    let gw = TestGateway::start(&url, |b| {
        b.model(OpenAIRealtimeWebSocketModel::builder().url(&url).build())
            .prometheus(prometheus())
    })
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url("/ws"))
        .await
        .unwrap();
    let Some(Ok(Message::Text(closed))) = ws.next().await else {
        panic!("no closed message")
    };
    let closed: Value = serde_json::from_str(closed.as_str()).unwrap();
    assert_eq!(closed["type"], "closed");
    assert_eq!(close_code(&mut ws).await, Some(1011));
    assert_ended(&gw, "session_error", "could not start the session").await;
}

#[tokio::test]
async fn calls_over_the_limit_and_foreign_origins_are_refused() {
    let _serial = SERIAL.lock().await;
    let sim = Simulator::start().await.unwrap();
    captured_logs();
    let gw = TestGateway::start(&sim.url(), |b| b.max_sessions(1).prometheus(prometheus())).await;
    let mut first = browser(&gw).await;
    assert_eq!(
        http("GET", &gw.url("/readyz"), "").await,
        (503, "full".into())
    );
    let error = tokio_tungstenite::connect_async(gw.ws_url("/twilio/stream"))
        .await
        .unwrap_err();
    let tungstenite::Error::Http(response) = error else {
        panic!("{error}")
    };
    assert_eq!(response.status(), 503);
    let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
    assert!(body.starts_with("full"), "{body}");
    let load: Value = serde_json::from_str(&http("GET", &gw.url("/load"), "").await.1).unwrap();
    assert_eq!(load["load"], 1.0, "every slot is taken: {load}");

    // Another site's page may not open a socket on the caller's behalf.
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(gw.ws_url("/ws")).unwrap();
    request
        .headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    let error = tokio_tungstenite::connect_async(request).await.unwrap_err();
    let tungstenite::Error::Http(response) = error else {
        panic!("{error}")
    };
    assert_eq!(response.status(), 403);
    // The page's own origin may.
    first.close(None).await.unwrap();
    gw.wait_idle(Duration::from_secs(5)).await;
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(gw.ws_url("/ws")).unwrap();
    let origin = format!("http://{}", gw.addr);
    request
        .headers_mut()
        .insert("Origin", origin.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.close(None).await.unwrap();
    gw.wait_idle(Duration::from_secs(5)).await;
    assert!(log_text().contains("browser socket refused: origin not allowed"));
}
