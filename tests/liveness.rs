//! Liveness and the end of a session, against servers that misbehave: a server that freezes
//! is noticed by the keep-alive with no help from the application, a healthy server is never
//! judged by how slowly the application reads, and every session ends with exactly one
//! `Closed`, after every event, with every `AgentStart` matched by one `AgentEnd`.
//!
//! The keep-alive tests use the default settings (a ping every 20 s, 20 s to answer). The
//! frozen-server ones run on tokio's paused clock: the server is real (loopback WebSocket),
//! the minutes are virtual. The slow reader runs in real time (about a minute).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::{
    CancellationToken, Error, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSession,
    RealtimeSessionEvent as E, ReconnectPolicy, ResponseEnd, TurnStatus,
};
use serde_json::{Value, json};
use support::{ScriptedServer, ev, until, until_end};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// The default keep-alive: a ping every 20 s, 20 s to answer.
const PING_INTERVAL: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// A server whose first connection freezes right after `session.updated`: it holds the socket
/// open but never reads or writes again (a stopped process, a network black hole). Later
/// connections answer `session.update` and stay responsive.
async fn freezing_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let created = support::session_created().to_string();
                if ws.send(Message::text(created)).await.is_err() {
                    return;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(text) = msg else { continue };
                    let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if event["type"] == "session.update" {
                        let updated = json!({"type": "session.updated", "event_id": "ev_su",
                                             "session": event["session"].clone()});
                        if ws.send(Message::text(updated.to_string())).await.is_err() {
                            return;
                        }
                        if n == 0 {
                            // Frozen: the socket stays open, nothing is read or answered.
                            std::future::pending::<()>().await;
                        }
                    }
                }
            });
        }
    });
    (url, connections)
}

fn model(url: &str) -> OpenAIRealtimeWebSocketModel {
    OpenAIRealtimeWebSocketModel::builder()
        .url(url)
        .api_key("sk-test-secret")
        .build()
}

async fn run(model: OpenAIRealtimeWebSocketModel, config: RealtimeRunConfig) -> RealtimeSession {
    RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model)
        .config(config)
        .run(())
        .await
        .expect("session starts")
}

/// The next event, or `None` when the stream ended or nothing came within `limit` (virtual).
async fn next_within(session: &mut RealtimeSession, limit: Duration) -> Option<E> {
    tokio::time::timeout(limit, session.next())
        .await
        .ok()
        .flatten()
}

fn is_keepalive_timeout(error: &Error) -> bool {
    matches!(error, Error::Timeout(message) if message.contains("ping"))
}

#[tokio::test]
async fn a_frozen_server_is_reported_closed_within_the_keepalive_bound() {
    let (url, _) = freezing_server().await;
    let mut session = run(model(&url), RealtimeRunConfig::new()).await;
    tokio::time::pause();
    let frozen_at = Instant::now();
    // The application does nothing but read.
    let event = next_within(&mut session, Duration::from_secs(600)).await;
    let detected = frozen_at.elapsed();
    match &event {
        Some(E::Closed { error: Some(error) }) => {
            assert!(is_keepalive_timeout(error), "{error}")
        }
        other => panic!("expected Closed with a keep-alive timeout, got {other:?}"),
    }
    assert!(
        detected <= PING_INTERVAL + PING_TIMEOUT + Duration::from_secs(1),
        "reported after {detected:?}"
    );
    assert!(detected >= PING_TIMEOUT, "reported too early: {detected:?}");
    assert!(
        next_within(&mut session, Duration::from_secs(1))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_frozen_server_triggers_a_reconnect_and_close_still_works() {
    let (url, connections) = freezing_server().await;
    let config = RealtimeRunConfig::new().reconnect(
        ReconnectPolicy::new().backoff(Duration::from_millis(100), Duration::from_secs(1)),
    );
    let mut session = run(model(&url), config).await;
    tokio::time::pause();
    let frozen_at = Instant::now();
    match next_within(&mut session, Duration::from_secs(600)).await {
        Some(E::Reconnecting { attempt: 1, error }) => {
            assert!(is_keepalive_timeout(&error), "{error}")
        }
        other => panic!("expected Reconnecting, got {other:?}"),
    }
    assert!(frozen_at.elapsed() <= PING_INTERVAL + PING_TIMEOUT + Duration::from_secs(1));
    match next_within(&mut session, Duration::from_secs(60)).await {
        Some(E::Reconnected { attempt: 1, .. }) => {}
        other => panic!("expected Reconnected, got {other:?}"),
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    session.close().await;
    let rest = until_end(&mut session).await;
    assert!(
        matches!(rest.as_slice(), [E::Closed { error: None }]),
        "{rest:#?}"
    );
}

#[tokio::test]
async fn close_works_while_the_server_is_frozen() {
    let (url, _) = freezing_server().await;
    let mut session = run(model(&url), RealtimeRunConfig::new()).await;
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let asked = Instant::now();
    session.close().await;
    let events = until_end(&mut session).await;
    assert!(
        asked.elapsed() <= Duration::from_secs(3),
        "close took {:?}",
        asked.elapsed()
    );
    assert!(
        matches!(events.as_slice(), [E::Closed { error: None }]),
        "{events:#?}"
    );
}

/// 20 ms of PCM16 at 24 kHz, numbered in its first bytes.
fn numbered_chunk(k: u32) -> String {
    let mut pcm = vec![0u8; 960];
    pcm[..4].copy_from_slice(&k.to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(&pcm)
}

#[tokio::test]
async fn a_slow_reader_never_gets_a_healthy_session_killed() {
    // The server streams 60 s of audio at once, as the real API does (faster than real time);
    // the application plays it back in real time. Pings are answered, but their pongs queue
    // behind the audio still unread.
    const CHUNKS: u32 = 3_000;
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "response.create" {
            out.send_all([
                ev::response_created("r1"),
                ev::assistant_item("a1", None, "in_progress"),
            ]);
            for k in 0..CHUNKS {
                out.send(
                    json!({"type": "response.output_audio.delta", "event_id": format!("ev_{k}"),
                    "response_id": "r1", "item_id": "a1", "output_index": 0, "content_index": 0,
                    "delta": numbered_chunk(k)}),
                );
            }
            out.send_all([
                ev::audio_done("r1", "a1"),
                ev::response_done("r1", "completed"),
            ]);
        }
    })
    .await;
    // Real time, not the paused clock: the keep-alive must judge the server by the clock the
    // server lives by. The test takes the minute the audio lasts.
    let mut session = run(server.model(), RealtimeRunConfig::new()).await;
    session.send_message("Tell me a long story.").await.unwrap();
    let started = Instant::now();
    let mut next_chunk = 0u32;
    let mut errors = Vec::new();
    loop {
        let event = next_within(&mut session, Duration::from_secs(120))
            .await
            .expect("the session stays up");
        match event {
            E::Audio { data, .. } => {
                let k = u32::from_le_bytes(data[..4].try_into().unwrap());
                assert_eq!(k, next_chunk, "audio in order, none missing");
                next_chunk += 1;
                // Playback speed: 20 ms of audio takes 20 ms to play.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            E::Error { error } => errors.push(error),
            E::Closed { error } => panic!("closed after {next_chunk} chunks: {error:?}"),
            E::AgentEnd { status, .. } => {
                assert_eq!(status, ResponseEnd::Completed);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(next_chunk, CHUNKS);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(60),
        "read in real time"
    );
    session.close().await;
    let rest = until_end(&mut session).await;
    assert!(
        matches!(rest.last(), Some(E::Closed { error: None })),
        "{rest:#?}"
    );
}

/// A server that answers `response.create` with a response of `deltas` audio chunks that
/// never finishes.
fn endless_response(deltas: usize) -> impl Fn(&Value, &support::Responder) {
    move |e, out| {
        if e["type"] == "response.create" {
            out.send_all([
                ev::response_created("r1"),
                ev::assistant_item("a1", None, "in_progress"),
            ]);
            for _ in 0..deltas {
                out.send(ev::audio_delta("r1", "a1", 20));
            }
        }
    }
}

#[tokio::test]
async fn closed_comes_last_even_when_the_application_was_not_reading() {
    let server = ScriptedServer::start(endless_response(40)).await;
    let mut session = run(server.model(), RealtimeRunConfig::new().event_capacity(4)).await;
    session.send_message("hi").await.unwrap();
    // Let the channel fill up while nobody reads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    session.handle().close().await;
    // Much later, the application reads everything.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let events = until_end(&mut session).await;
    let closed = events
        .iter()
        .filter(|e| matches!(e, E::Closed { .. }))
        .count();
    assert_eq!(closed, 1, "{events:#?}");
    assert!(
        matches!(events.last(), Some(E::Closed { error: None })),
        "{events:#?}"
    );
    let audio = events
        .iter()
        .filter(|e| matches!(e, E::Audio { .. }))
        .count();
    assert!(
        audio >= 4,
        "the queued audio is still delivered: {events:#?}"
    );
    let n = events.len();
    assert!(
        matches!(&events[n - 3], E::AgentEnd { response_id, status: ResponseEnd::SessionEnded, .. } if response_id == "r1"),
        "{events:#?}"
    );
    assert!(
        matches!(&events[n - 2], E::TurnEnded { result } if result.status == TurnStatus::Cancelled),
        "{events:#?}"
    );
}

/// Every `AgentStart` is followed by exactly one `AgentEnd` with the same response id, and
/// the last event is the only `Closed`.
fn assert_well_formed(events: &[E]) {
    let mut open: Option<&str> = None;
    for event in events {
        match event {
            E::AgentStart { response_id, .. } => {
                assert!(
                    open.is_none(),
                    "a response started inside another: {events:#?}"
                );
                open = Some(response_id);
            }
            E::AgentEnd { response_id, .. } => {
                assert_eq!(open.take(), Some(response_id.as_str()), "{events:#?}");
            }
            _ => {}
        }
    }
    assert!(open.is_none(), "AgentStart without AgentEnd: {events:#?}");
    let closed: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, E::Closed { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(closed, vec![events.len() - 1], "{events:#?}");
}

fn end_status(events: &[E]) -> Option<ResponseEnd> {
    events.iter().find_map(|e| match e {
        E::AgentEnd { status, .. } => Some(*status),
        _ => None,
    })
}

#[tokio::test]
async fn every_agent_start_gets_one_agent_end_on_every_path() {
    // Completed.
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "response.create" {
            support::script::spoken_response(out, "r1", "a1", &["Hi."]);
        }
    })
    .await;
    let mut session = run(server.model(), RealtimeRunConfig::new()).await;
    session.send_message("hi").await.unwrap();
    let mut events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    session.close().await;
    events.extend(until_end(&mut session).await);
    assert_well_formed(&events);
    assert_eq!(end_status(&events), Some(ResponseEnd::Completed));

    // Interrupted by the application, then cancelled by the server.
    let server = ScriptedServer::start(support::script::cancellable_response).await;
    let mut session = run(server.model(), RealtimeRunConfig::new()).await;
    session.send_message("hi").await.unwrap();
    let mut events = until(&mut session, |e| matches!(e, E::Audio { .. })).await;
    session.interrupt().await.unwrap();
    events.extend(until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await);
    session.close().await;
    events.extend(until_end(&mut session).await);
    assert_well_formed(&events);
    assert_eq!(end_status(&events), Some(ResponseEnd::Interrupted));

    // The connection dies mid-response, no reconnect.
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "response.create" {
            out.send_all([ev::response_created("r1"), ev::audio_delta("r1", "a1", 20)]);
            out.drop_connection();
        }
    })
    .await;
    let mut session = run(server.model(), RealtimeRunConfig::new()).await;
    session.send_message("hi").await.unwrap();
    let events = until_end(&mut session).await;
    assert_well_formed(&events);
    assert_eq!(end_status(&events), Some(ResponseEnd::ConnectionLost));

    // The connection dies mid-response and the session reconnects.
    let server = ScriptedServer::start(endless_response(1)).await;
    let config = RealtimeRunConfig::new().reconnect(
        ReconnectPolicy::new().backoff(Duration::from_millis(50), Duration::from_millis(100)),
    );
    let mut session = run(server.model(), config).await;
    session.send_message("hi").await.unwrap();
    let mut events = until(&mut session, |e| matches!(e, E::Audio { .. })).await;
    server.responder().drop_connection();
    events.extend(until(&mut session, |e| matches!(e, E::Reconnected { .. })).await);
    session.close().await;
    events.extend(until_end(&mut session).await);
    assert_well_formed(&events);
    assert_eq!(end_status(&events), Some(ResponseEnd::ConnectionLost));
    let end = events
        .iter()
        .position(|e| matches!(e, E::AgentEnd { .. }))
        .unwrap();
    let reconnecting = events
        .iter()
        .position(|e| matches!(e, E::Reconnecting { .. }))
        .unwrap();
    assert!(end < reconnecting, "{events:#?}");

    // close(), a cancellation from the handle, the run's token, the time limit: all
    // mid-response.
    let token = CancellationToken::new();
    let cases: Vec<(&str, RealtimeRunConfig)> = vec![
        ("close", RealtimeRunConfig::new()),
        ("cancel", RealtimeRunConfig::new()),
        (
            "token",
            RealtimeRunConfig::new().cancellation_token(token.clone()),
        ),
        (
            "time limit",
            RealtimeRunConfig::new().max_duration(Duration::from_millis(600)),
        ),
    ];
    for (case, config) in cases {
        let server = ScriptedServer::start(endless_response(1)).await;
        let mut session = run(server.model(), config).await;
        session.send_message("hi").await.unwrap();
        let mut events = until(&mut session, |e| matches!(e, E::Audio { .. })).await;
        match case {
            "close" => session.close().await,
            "cancel" => session.handle().cancel("the caller hung up"),
            "token" => token.cancel(),
            _ => {}
        }
        events.extend(until_end(&mut session).await);
        assert_well_formed(&events);
        assert_eq!(
            end_status(&events),
            Some(ResponseEnd::SessionEnded),
            "{case}"
        );
        // The reason for the end is reported once, in `Closed`, never as an `Error` too.
        assert!(
            !events.iter().any(|e| matches!(e, E::Error { .. })),
            "{case}: {events:#?}"
        );
        let Some(E::Closed { error }) = events.last() else {
            unreachable!()
        };
        match (case, error) {
            ("close", None) => {}
            ("cancel", Some(Error::Cancelled { reason })) => {
                assert_eq!(reason, "the caller hung up")
            }
            ("token", Some(Error::Cancelled { reason })) => {
                assert!(reason.contains("cancellation token"), "{reason}")
            }
            ("time limit", Some(Error::Timeout(_))) => {}
            other => panic!("{case}: unexpected end {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_response_that_never_started_is_reported_as_a_broken_contract() {
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "response.create" {
            // `response.done` without `response.created`.
            out.send(ev::response_done("r9", "completed"));
        }
    })
    .await;
    let mut session = run(server.model(), RealtimeRunConfig::new()).await;
    session.send_message("hi").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::Error { .. })).await;
    assert!(
        matches!(events.last(), Some(E::Error { error: Error::Contract(m) }) if m.contains("r9")),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, E::AgentEnd { .. })),
        "no AgentEnd without an AgentStart: {events:#?}"
    );
}
