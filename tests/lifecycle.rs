//! Session lifecycle over loopback WebSockets: reconnect with history replay, cancellation from
//! outside, overall timeouts, and a close that never hangs.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use realtime_agents::{
    Error, FunctionTool, RealtimeAgent, RealtimeRunConfig, RealtimeRunner,
    RealtimeSessionEvent as E, ReconnectPolicy,
};
use serde_json::Value;
use support::script::{City, start, tool_script};
use support::{Responder, ScriptedServer, ev, until, until_end};

fn fast_reconnect(attempts: u32) -> ReconnectPolicy {
    ReconnectPolicy::new()
        .max_attempts(attempts)
        .backoff(Duration::from_millis(150), Duration::from_millis(300))
}

/// Connection 1: the user's message is echoed, then a response starts and the socket drops
/// mid-sentence (or, with `expire`, the server ends the session like the 60-minute cap).
/// Later connections: user messages are echoed, responses say "Done.".
fn dropping_script(expire: bool) -> impl Fn(&Value, &Responder) {
    let connections = AtomicUsize::new(0);
    let messages = AtomicUsize::new(0);
    move |e, out| match e["type"].as_str() {
        Some("session.update") => {
            connections.fetch_add(1, Ordering::SeqCst);
        }
        Some("conversation.item.create") if e["item"]["id"].is_null() => {
            let n = messages.fetch_add(1, Ordering::SeqCst);
            let text = e["item"]["content"][0]["text"].as_str().unwrap_or("");
            out.send(ev::user_text_item(&format!("u{n}"), None, text));
        }
        Some("response.create") if connections.load(Ordering::SeqCst) == 1 => {
            out.send_all([
                ev::response_created("r1"),
                ev::assistant_item("a1", Some("u0"), "in_progress"),
                ev::transcript_delta("r1", "a1", "Let me "),
                ev::audio_delta("r1", "a1", 20),
            ]);
            if expire {
                out.send(ev::error(
                    "session_expired",
                    "Your session hit the maximum duration of 60 minutes.",
                    None,
                ));
                out.close(1000, "session expired");
            } else {
                out.drop_connection();
            }
        }
        Some("response.create") => support::script::spoken_response(out, "r2", "a2", &["Done."]),
        _ => {}
    }
}

async fn reconnects_and_replays(expire: bool) {
    let server = ScriptedServer::start(dropping_script(expire)).await;
    let config = RealtimeRunConfig::new().reconnect(fast_reconnect(3));
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").instructions("Help."),
        config,
    )
    .await;
    session.send_message("Book a table").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::Reconnecting { .. })).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::AudioInterrupted { .. })),
        "playback stopped"
    );
    assert!(
        events.iter().any(|e| matches!(e, E::AgentEnd { .. })),
        "the cut response ended"
    );
    let Some(E::Reconnecting { attempt: 1, error }) = events.last() else {
        unreachable!()
    };
    if expire {
        assert!(
            matches!(
                error,
                Error::Closed {
                    code: Some(1000),
                    ..
                }
            ),
            "{error:?}"
        );
    }
    // Sent during the gap: delivered after reconnecting, not lost.
    session.send_message("For two people").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::Reconnected { .. })).await;
    assert!(matches!(
        events.last(),
        Some(E::Reconnected {
            attempt: 1,
            replayed_items: 2
        })
    ));
    until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "Done."),
    )
    .await;

    let received = server.received();
    let second = received
        .iter()
        .enumerate()
        .filter(|(_, e)| e["type"] == "session.update")
        .nth(1)
        .map(|(i, _)| i)
        .expect("a second connection");
    let after: Vec<&Value> = received[second..]
        .iter()
        .filter(|e| e["type"] != "input_audio_buffer.append")
        .collect();
    let types: Vec<&str> = after.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "session.update",
            "conversation.item.create",
            "conversation.item.create",
            "conversation.item.create",
            "response.create"
        ]
    );
    assert_eq!(after[0]["session"]["instructions"], "Help.");
    assert_eq!(after[1]["item"]["id"], "u0");
    assert_eq!(after[1]["item"]["content"][0]["text"], "Book a table");
    assert_eq!(after[2]["item"]["id"], "a1");
    assert_eq!(
        after[2]["item"]["content"][0],
        serde_json::json!({"type": "output_text", "text": "Let me "})
    );
    assert_eq!(after[3]["item"]["content"][0]["text"], "For two people");
}

#[tokio::test]
async fn a_dropped_socket_reconnects_replays_history_and_delivers_what_was_sent_meanwhile() {
    reconnects_and_replays(false).await;
}

#[tokio::test]
async fn an_expired_session_reconnects_the_same_way() {
    reconnects_and_replays(true).await;
}

#[tokio::test]
async fn reconnect_gives_up_after_max_attempts_with_the_last_error() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let config = RealtimeRunConfig::new().reconnect(fast_reconnect(2));
    let mut session = start(&server, RealtimeAgent::new("Assistant"), config).await;
    drop(server); // the socket drops and nothing listens any more
    let events = until_end(&mut session).await;
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            E::Reconnecting { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2]);
    assert!(
        matches!(
            events.last(),
            Some(E::Closed {
                error: Some(Error::Connect { .. })
            })
        ),
        "{events:#?}"
    );
}

#[tokio::test]
async fn without_a_policy_a_drop_ends_the_session() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    server.responder().drop_connection();
    let events = until_end(&mut session).await;
    assert!(!events.iter().any(|e| matches!(e, E::Reconnecting { .. })));
    assert!(matches!(events.last(), Some(E::Closed { error: Some(_) })));
}

#[tokio::test]
async fn a_cancellation_token_ends_sessions_with_cancelled() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let token = tokio_util::sync::CancellationToken::new();
    let runner = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(server.model())
        .config(RealtimeRunConfig::new().cancellation_token(token.clone()));
    // Closing one session does not cancel the token (the scripted server takes one
    // connection at a time, so the sessions run one after the other).
    let mut first = runner.run(()).await.unwrap();
    first.close().await;
    until_end(&mut first).await;
    assert!(!token.is_cancelled());
    let mut second = runner.run(()).await.unwrap();
    token.cancel();
    let events = until_end(&mut second).await;
    assert!(
        matches!(
            events.last(),
            Some(E::Closed {
                error: Some(Error::Cancelled { .. })
            })
        ),
        "{events:#?}"
    );
    assert!(second.handle().send_message("hi").await.is_err());
}

#[tokio::test]
async fn max_duration_ends_the_session_with_a_timeout() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let config = RealtimeRunConfig::new().max_duration(Duration::from_millis(200));
    let mut session = start(&server, RealtimeAgent::new("Assistant"), config).await;
    let events = until_end(&mut session).await;
    assert!(
        matches!(events.last(), Some(E::Closed { error: Some(Error::Timeout(m)) }) if m.contains("200ms")),
        "{events:#?}"
    );
}

#[tokio::test]
async fn an_is_cancelled_check_is_polled_and_ends_the_session() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let flag = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    let config = RealtimeRunConfig::new().cancel_check(Duration::from_millis(20), {
        let (flag, polls) = (flag.clone(), polls.clone());
        move || {
            polls.fetch_add(1, Ordering::SeqCst);
            let cancelled = flag.load(Ordering::SeqCst);
            async move { cancelled }
        }
    });
    let mut session = start(&server, RealtimeAgent::new("Assistant"), config).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(polls.load(Ordering::SeqCst) >= 2);
    assert!(!session.handle().is_closed());
    flag.store(true, Ordering::SeqCst);
    let events = until_end(&mut session).await;
    assert!(matches!(
        events.last(),
        Some(E::Closed {
            error: Some(Error::Cancelled { .. })
        })
    ));
    let after = polls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        polls.load(Ordering::SeqCst),
        after,
        "polling stops with the session"
    );
}

#[tokio::test]
async fn close_cancels_running_tools() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let server =
        ScriptedServer::start(tool_script(vec![("call_1", "wait", r#"{"city":"x"}"#)])).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let tool = {
        let (dropped, started) = (dropped.clone(), started.clone());
        FunctionTool::new("wait", "Waits forever.", move |_: City| {
            let guard = SetOnDrop(dropped.clone());
            started.store(true, Ordering::SeqCst);
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<_, String>("never")
            }
        })
    };
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(tool),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("Wait").await.unwrap();
    until(&mut session, |e| matches!(e, E::ToolStart { .. })).await;
    assert!(started.load(Ordering::SeqCst));
    session.close().await;
    until_end(&mut session).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the tool's task was cancelled"
    );
    session.close().await; // idempotent
}

#[tokio::test]
async fn close_never_hangs_on_a_peer_that_stops_answering() {
    use futures::StreamExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        let (_sink, mut source) = ws.split();
        // Read the first message, then never read or answer again.
        let _ = source.next().await;
        std::future::pending::<()>().await;
    });
    let model = realtime_agents::model::OpenAIRealtimeWebSocketModel::builder()
        .url(url)
        .api_key("sk-test")
        .build();
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model)
        .run(())
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        session.close().await;
        until_end(&mut session).await
    })
    .await
    .expect("close is bounded by its grace period");
    assert!(matches!(closed.last(), Some(E::Closed { .. })));
    server.abort();
}
