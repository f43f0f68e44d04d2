//! Tool execution: approvals, background results, enabled predicates, the tool context,
//! call-id idempotency and timeouts, over loopback WebSockets.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use realtime_agents::items::{RealtimeItem, Role};
use realtime_agents::{
    Error, FunctionTool, RealtimeAgent, RealtimeRunConfig, RealtimeSession,
    RealtimeSessionEvent as E, RunContext,
};
use serde_json::{Value, json};
use support::script::{City, start, start_with, tool_script, weather_tool};
use support::{ScriptedServer, ev, until};

/// Waits until the server received `n` tool outputs; returns them in order.
async fn wait_outputs(server: &ScriptedServer, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        let got = outputs(server);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "timed out waiting for {n} tool outputs: {:?}",
        server.types()
    )
}

/// The outputs the server received, in order.
fn outputs(server: &ScriptedServer) -> Vec<Value> {
    server
        .received_of("conversation.item.create")
        .into_iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .map(|e| e["item"].clone())
        .collect()
}

fn done(e: &E) -> bool {
    matches!(e, E::TranscriptDelta { delta, .. } if delta == "Done.")
}

/// A weather tool that counts its runs.
fn counted_weather(runs: Arc<AtomicUsize>) -> FunctionTool {
    FunctionTool::new("get_weather", "Weather.", move |a: City| {
        runs.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, String>(format!("Sunny in {}", a.city)) }
    })
}

/// A session whose model called `get_weather` (needs approval), up to the approval request.
async fn awaiting_approval() -> (ScriptedServer, Arc<AtomicUsize>, RealtimeSession, Vec<E>) {
    let server = ScriptedServer::start(tool_script(vec![(
        "call_1",
        "get_weather",
        r#"{"city":"Paris"}"#,
    )]))
    .await;
    let runs = Arc::new(AtomicUsize::new(0));
    let agent =
        RealtimeAgent::new("Assistant").tool(counted_weather(runs.clone()).needs_approval(true));
    let mut session = start(&server, agent, RealtimeRunConfig::new()).await;
    session.send_message("Weather in Paris?").await.unwrap();
    let events = until(&mut session, |e| {
        matches!(e, E::ToolApprovalRequired { .. })
    })
    .await;
    (server, runs, session, events)
}

#[tokio::test]
async fn approval_required_then_approved_runs_the_tool_and_responds() {
    let (server, runs, mut session, events) = awaiting_approval().await;
    let Some(E::ToolApprovalRequired {
        agent,
        tool,
        call_id,
        arguments,
    }) = events.last()
    else {
        unreachable!()
    };
    assert_eq!(
        (
            agent.as_str(),
            tool.as_str(),
            call_id.as_str(),
            arguments.as_str()
        ),
        ("Assistant", "get_weather", "call_1", r#"{"city":"Paris"}"#)
    );
    // The response ends; nothing runs or is answered until the application decides.
    until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(outputs(&server).is_empty());
    assert_eq!(server.received_of("response.create").len(), 1);

    session
        .handle()
        .approve_tool_call("call_1", false)
        .await
        .unwrap();
    let events = until(&mut session, done).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::ToolStart { call_id, .. } if call_id == "call_1"))
    );
    assert!(events.iter().any(
        |e| matches!(e, E::ToolEnd { output, is_error: false, .. } if output == "Sunny in Paris")
    ));
    assert_eq!(
        outputs(&server),
        [json!({"type": "function_call_output", "call_id": "call_1", "output": "Sunny in Paris"})]
    );
    assert_eq!(server.received_of("response.create").len(), 2);
    // A call id is decided once.
    let again = session.handle().approve_tool_call("call_1", false).await;
    assert!(matches!(again, Err(Error::Config(m)) if m.contains("call_1")));
}

#[tokio::test]
async fn rejection_sends_the_message_and_a_response_without_running_the_tool() {
    let (server, runs, mut session, _) = awaiting_approval().await;
    session
        .handle()
        .reject_tool_call("call_1", false, Some("The user declined.".into()))
        .await
        .unwrap();
    let events = until(&mut session, done).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(!events.iter().any(|e| matches!(e, E::ToolStart { .. })));
    assert!(events.iter().any(
        |e| matches!(e, E::ToolEnd { output, is_error: true, .. } if output == "The user declined.")
    ));
    assert_eq!(
        outputs(&server),
        [
            json!({"type": "function_call_output", "call_id": "call_1", "output": "The user declined."})
        ]
    );
    assert_eq!(
        server.types(),
        [
            "session.update",
            "conversation.item.create",
            "response.create",
            "conversation.item.create",
            "response.create"
        ]
    );
}

/// Every `response.create` makes one call of `get_weather` with a new call id.
fn repeated_calls() -> impl Fn(&Value, &support::Responder) {
    let n = AtomicUsize::new(0);
    move |e, out| {
        if e["type"] == "response.create" {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let resp = format!("r{i}");
            let call = format!("call_{i}");
            out.send(ev::response_created(&resp));
            out.send(ev::function_call(
                &resp,
                &format!("fc{i}"),
                &call,
                "get_weather",
                r#"{"city":"Oslo"}"#,
            ));
            out.send(ev::response_done(&resp, "completed"));
        }
    }
}

#[tokio::test]
async fn always_approve_and_always_reject_stick_for_the_session() {
    let server = ScriptedServer::start(repeated_calls()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let agent =
        RealtimeAgent::new("Assistant").tool(counted_weather(runs.clone()).needs_approval(true));
    let mut session = start(&server, agent, RealtimeRunConfig::new()).await;
    session.send_message("Weather?").await.unwrap();
    until(
        &mut session,
        |e| matches!(e, E::ToolApprovalRequired { call_id, .. } if call_id == "call_0"),
    )
    .await;
    session
        .handle()
        .approve_tool_call("call_0", true)
        .await
        .unwrap();
    // call_1 (answered automatically) leads to call_2...: no more approval requests.
    let events = until(
        &mut session,
        |e| matches!(e, E::ToolEnd { call_id, .. } if call_id == "call_2"),
    )
    .await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, E::ToolApprovalRequired { .. }))
    );
    assert!(runs.load(Ordering::SeqCst) >= 3);

    let server = ScriptedServer::start(repeated_calls()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let agent =
        RealtimeAgent::new("Assistant").tool(counted_weather(runs.clone()).needs_approval(true));
    let mut session = start(&server, agent, RealtimeRunConfig::new()).await;
    session.send_message("Weather?").await.unwrap();
    until(&mut session, |e| {
        matches!(e, E::ToolApprovalRequired { .. })
    })
    .await;
    session
        .handle()
        .reject_tool_call("call_0", true, Some("Not allowed.".into()))
        .await
        .unwrap();
    let events = until(
        &mut session,
        |e| matches!(e, E::ToolEnd { call_id, .. } if call_id == "call_2"),
    )
    .await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, E::ToolApprovalRequired { .. }))
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(
        wait_outputs(&server, 3).await[..3]
            .iter()
            .all(|o| o["output"] == "Not allowed.")
    );
}

#[tokio::test]
async fn approval_predicate_sees_the_arguments_and_invalid_json_fails_closed() {
    let server = ScriptedServer::start(tool_script(vec![
        ("call_small", "refund", r#"{"amount":20}"#),
        ("call_big", "refund", r#"{"amount":500}"#),
        ("call_bad", "refund", r#"{"amount":"#),
    ]))
    .await;
    let refund = FunctionTool::from_json_schema(
        "refund",
        "Refund.",
        json!({"type": "object", "properties": {"amount": {"type": "number"}}}),
        |args: Value| async move { Ok::<_, String>(format!("refunded {}", args["amount"])) },
    )
    .needs_approval_if(|_call, args| args["amount"].as_f64().is_none_or(|a| a > 100.0));
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(refund),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("Refund me").await.unwrap();
    let events = until(
        &mut session,
        |e| matches!(e, E::ToolEnd { call_id, .. } if call_id == "call_small"),
    )
    .await;
    let mut asked: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            E::ToolApprovalRequired { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    asked.sort();
    assert_eq!(asked, ["call_bad", "call_big"]);
    assert_eq!(
        wait_outputs(&server, 1).await,
        [json!({"type": "function_call_output", "call_id": "call_small", "output": "refunded 20"})]
    );
}

#[tokio::test]
async fn background_results_add_the_output_without_a_response() {
    let server = ScriptedServer::start(tool_script(vec![(
        "call_1",
        "save_note",
        r#"{"city":"Rome"}"#,
    )]))
    .await;
    let note = FunctionTool::new("save_note", "Save a note.", |_: City| async {
        Ok::<_, String>("saved")
    })
    .background();
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(note),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("Note Rome").await.unwrap();
    until(&mut session, |e| matches!(e, E::ToolEnd { .. })).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(outputs(&server).len(), 1);
    assert_eq!(
        server.received_of("response.create").len(),
        1,
        "no response for a background result: {:?}",
        server.types()
    );
}

#[tokio::test]
async fn a_disabled_tool_is_not_offered_and_a_call_to_it_does_not_run() {
    struct Caller {
        verified: bool,
    }
    let server =
        ScriptedServer::start(tool_script(vec![("call_1", "balance", r#"{"city":"x"}"#)])).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let balance = {
        let runs = runs.clone();
        FunctionTool::new("balance", "Balance.", move |_: City| {
            runs.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, String>("42 EUR") }
        })
        .enabled_if(|ctx: &RunContext, _| ctx.get::<Caller>().is_some_and(|c| c.verified))
    };
    let agent = RealtimeAgent::new("Assistant")
        .tool(balance)
        .tool(weather_tool());
    let mut session = start_with(
        &server,
        agent,
        RealtimeRunConfig::new(),
        Caller { verified: false },
    )
    .await;
    let update = server.wait_for("session.update", 1).await.remove(0);
    let names: Vec<&str> = update["session"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get_weather"]);
    session.send_message("Balance?").await.unwrap();
    let events = until(&mut session, done).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(events.iter().any(|e| matches!(e, E::Error { error: Error::Tool { name, message } } if name == "balance" && message.contains("not enabled"))));
    assert_eq!(
        outputs(&server)[0]["output"],
        "Error: tool `balance` is not enabled"
    );
}

#[tokio::test]
async fn the_tool_context_has_the_user_context_call_id_and_history() {
    struct Account(&'static str);
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "conversation.item.create" && e["item"]["type"] == "message" {
            out.send(ev::user_text_item("u1", None, "Who am I?"));
        }
        if e["type"] == "response.create" {
            out.send(ev::response_created("r1"));
            out.send(ev::function_call(
                "r1",
                "fc1",
                "call_9",
                "whoami",
                r#"{"city":"x"}"#,
            ));
            out.send(ev::response_done("r1", "completed"));
        }
    })
    .await;
    let tool = FunctionTool::with_context("whoami", "Who is calling.", |ctx, _: City| async move {
        let account = ctx.context.get::<Account>().map(|a| a.0).unwrap_or("?");
        let said = ctx
            .history
            .iter()
            .find_map(RealtimeItem::as_message)
            .filter(|m| m.role == Role::User)
            .map(|m| m.text())
            .unwrap_or_default();
        Ok::<_, String>(format!(
            "{account}|{}|{}|{said}",
            ctx.call_id, ctx.agent_name
        ))
    });
    let mut session = start_with(
        &server,
        RealtimeAgent::new("Assistant").tool(tool),
        RealtimeRunConfig::new(),
        Account("acct_7"),
    )
    .await;
    session.send_message("Who am I?").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::ToolEnd { .. })).await;
    assert!(
        events.iter().any(|e| matches!(e, E::ToolEnd { output, .. } if output == "acct_7|call_9|Assistant|Who am I?")),
        "{events:#?}"
    );
}

#[tokio::test]
async fn a_repeated_call_id_never_runs_the_tool_twice() {
    let server = ScriptedServer::start(tool_script(vec![
        ("call_1", "get_weather", r#"{"city":"Paris"}"#),
        ("call_1", "get_weather", r#"{"city":"Paris"}"#),
    ]))
    .await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(counted_weather(runs.clone())),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("Weather?").await.unwrap();
    until(&mut session, done).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(outputs(&server).len(), 1);
}

#[tokio::test]
async fn a_tool_timeout_is_an_error_output_and_the_session_goes_on() {
    let server =
        ScriptedServer::start(tool_script(vec![("call_1", "slow", r#"{"city":"x"}"#)])).await;
    let slow = FunctionTool::new("slow", "Slow.", |_: City| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, String>("late")
    })
    .timeout(Duration::from_millis(50));
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(slow),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("Go").await.unwrap();
    let events = until(&mut session, done).await;
    assert!(events.iter().any(
        |e| matches!(e, E::ToolEnd { is_error: true, output, .. } if output.contains("timed out"))
    ));
    assert_eq!(server.received_of("response.create").len(), 2);
}

#[tokio::test]
async fn configured_secrets_are_redacted_from_tool_outputs_and_errors() {
    let server = ScriptedServer::start(tool_script(vec![
        ("call_ok", "lookup", r#"{"city":"x"}"#),
        ("call_err", "fail", r#"{"city":"x"}"#),
    ]))
    .await;
    let lookup = FunctionTool::new("lookup", "Looks up.", |_: City| async {
        Ok::<_, String>("connected with db-password-123 as admin")
    });
    let fail = FunctionTool::new("fail", "Fails.", |_: City| async {
        Err::<String, _>("login with db-password-123 refused")
    });
    let config = RealtimeRunConfig::new().redact_secrets(["db-password-123"]);
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(lookup).tool(fail),
        config,
    )
    .await;
    session.send_message("Go").await.unwrap();
    let events = until(&mut session, done).await;
    let sent = wait_outputs(&server, 2).await;
    let text = format!("{sent:?} {events:?} {:?}", session.history());
    assert!(!text.contains("db-password-123"), "{text}");
    assert!(
        sent.iter()
            .any(|o| o["output"] == "connected with [REDACTED] as admin")
    );
    assert!(events.iter().any(|e| matches!(e, E::Error { error: Error::Tool { message, .. } } if message == "login with [REDACTED] refused")));
}
