//! Agents tested with the scripted model, the way a user of the crate would: tools, handoffs,
//! guardrails, turn results, barge-in, errors, and what the session sent.

use std::time::Duration;

use realtime_agents::model::{ModelCommand, Usage};
use realtime_agents::protocol::Voice;
use realtime_agents::simulator::speech::encode_text;
use realtime_agents::testing::{Reply, ScriptedModel, until};
use realtime_agents::{
    Error, FunctionTool, GuardrailOutput, Handoff, OutputGuardrail, RealtimeAgent,
    RealtimeRunConfig, RealtimeRunner, RealtimeSession, RealtimeSessionEvent as E, ReconnectPolicy,
    ServerError,
};
use serde_json::json;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct City {
    city: String,
}

fn weather_tool() -> FunctionTool {
    FunctionTool::new("get_weather", "Weather in a city.", |a: City| async move {
        Ok::<_, String>(format!("Sunny in {}", a.city))
    })
}

async fn start(agent: RealtimeAgent, model: &ScriptedModel) -> RealtimeSession {
    RealtimeRunner::new(agent)
        .model(model.clone())
        .run(())
        .await
        .expect("session")
}

/// The kinds of commands the session sent, in order.
fn command_kinds(model: &ScriptedModel) -> Vec<&'static str> {
    model
        .commands()
        .iter()
        .map(|c| match c {
            ModelCommand::UserMessage { respond: true, .. } => "message+respond",
            ModelCommand::UserMessage { .. } => "message",
            ModelCommand::Audio { commit: true, .. } => "audio+commit",
            ModelCommand::Audio { .. } => "audio",
            ModelCommand::ToolOutput { respond: true, .. } => "output+respond",
            ModelCommand::ToolOutput { .. } => "output",
            ModelCommand::CreateResponse => "respond",
            ModelCommand::Interrupt {
                cancel_response: true,
                ..
            } => "cancel",
            ModelCommand::Interrupt { .. } => "cut",
            ModelCommand::UpdateSession(_) => "update",
            ModelCommand::CreateItem { .. } => "create item",
            ModelCommand::DeleteItem { .. } => "delete item",
            _ => "other",
        })
        .collect()
}

#[tokio::test]
async fn a_tool_agent_calls_its_tool_and_answers_with_the_result() {
    let model = ScriptedModel::new()
        .reply(Reply::speech("Let me check.").and_call("get_weather", json!({"city": "Paris"})))
        .reply(Reply::speech("It is sunny in Paris.").usage(Usage::new(50, 12)));
    let agent = RealtimeAgent::new("Assistant").tool(weather_tool());
    let mut session = start(agent, &model).await;
    session
        .send_message("What's the weather in Paris?")
        .await
        .unwrap();
    let events = model.play(&mut session).await.unwrap();

    let runs = events.tool_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].tool.as_str(),
            runs[0].arguments.as_str(),
            runs[0].output.as_str()
        ),
        ("get_weather", r#"{"city":"Paris"}"#, "Sunny in Paris")
    );
    assert!(!runs[0].is_error);
    assert_eq!(
        events.assistant_text(),
        "Let me check.It is sunny in Paris."
    );
    assert!(events.audio_bytes() > 0);
    // The model got the output, then exactly one request for the answer.
    assert_eq!(model.tool_outputs().len(), 1);
    assert_eq!(model.tool_outputs()[0].1, "Sunny in Paris");
    assert_eq!(
        command_kinds(&model),
        ["message+respond", "output", "respond"]
    );
    // The session summed the usage it was told.
    let total = events
        .iter()
        .rev()
        .find_map(|e| match e {
            E::Usage { total, .. } => Some(*total),
            _ => None,
        })
        .expect("usage");
    assert_eq!(
        (total.requests, total.input_tokens, total.output_tokens),
        (2, 50, 12)
    );
    // The history holds the call with its output.
    let history = session.handle().history().await.unwrap();
    let call = history
        .iter()
        .find_map(|i| i.as_tool_call())
        .expect("call in history");
    assert_eq!(call.output.as_deref(), Some("Sunny in Paris"));
    assert_eq!(model.remaining(), 0);
    assert_eq!(model.unanswered(), 0);
}

#[tokio::test]
async fn a_failing_tool_is_reported_and_the_model_hears_the_error() {
    let broken = FunctionTool::new("get_weather", "Weather.", |_: City| async move {
        Err::<String, _>("the weather service is down")
    });
    let model = ScriptedModel::new()
        .reply(Reply::call("get_weather", json!({"city": "Oslo"})))
        .reply(Reply::text("Sorry, I cannot check the weather right now."));
    let mut session = start(RealtimeAgent::new("Assistant").tool(broken), &model).await;
    session.send_message("Weather in Oslo?").await.unwrap();
    let events = model.play(&mut session).await.unwrap();

    assert!(events.tool_runs()[0].is_error);
    assert_eq!(
        model.tool_outputs()[0].1,
        "Error: the weather service is down"
    );
    assert!(
        events
            .errors()
            .iter()
            .any(|e| matches!(e, Error::Tool { name, .. } if name == "get_weather"))
    );
}

#[tokio::test]
async fn a_handoff_switches_agent_instructions_and_tools() {
    let billing = RealtimeAgent::new("Billing")
        .instructions("You handle invoices.")
        .tool(FunctionTool::new(
            "get_invoice",
            "An invoice.",
            |_: City| async move { Ok::<_, String>("none") },
        ));
    let triage = RealtimeAgent::new("Triage")
        .instructions("Route the caller.")
        .handoff(Handoff::new(billing));
    let model = ScriptedModel::new()
        .reply(Reply::call("transfer_to_billing", json!({})))
        .reply(Reply::speech("Billing here, how can I help?"));
    let mut session = start(triage, &model).await;
    session
        .send_message("I have a question about my invoice")
        .await
        .unwrap();
    let events = model.play(&mut session).await.unwrap();

    assert_eq!(
        events.handoffs(),
        [("Triage".to_owned(), "Billing".to_owned())]
    );
    assert_eq!(events.agents(), ["Triage", "Billing"]);
    assert_eq!(events.assistant_text(), "Billing here, how can I help?");
    // The model was told about the new agent before it answered.
    let settings = model.settings();
    assert_eq!(
        settings.instructions.as_deref(),
        Some("You handle invoices.")
    );
    let tools: Vec<String> = settings
        .tools
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(tools, ["get_invoice"]);
    assert_eq!(
        command_kinds(&model),
        ["message+respond", "update", "output", "respond"]
    );
    assert_eq!(model.tool_outputs()[0].1, r#"{"assistant":"Billing"}"#);
    assert_eq!(
        session.handle().current_agent().await.unwrap().name(),
        "Billing"
    );
}

#[tokio::test]
async fn a_guardrail_trip_stops_the_answer_and_asks_for_another() {
    let no_codes = OutputGuardrail::new("no_codes", |text: String| async move {
        if text.contains("1234") {
            GuardrailOutput::trip("reveals a code")
        } else {
            GuardrailOutput::pass()
        }
    });
    let agent = RealtimeAgent::new("Assistant").output_guardrail(no_codes);
    let model = ScriptedModel::new()
        .reply(Reply::text("Your door code is 1234."))
        .reply(Reply::text("Sorry, I can't share codes."));
    let mut session = start(agent, &model).await;
    session.send_message("What's my door code?").await.unwrap();
    let events = model.play(&mut session).await.unwrap();

    assert_eq!(events.guardrail_trips(), [vec!["no_codes".to_owned()]]);
    // The model was stopped and told why, in a message that asks for a new answer.
    let messages = model.user_messages();
    assert_eq!(messages.len(), 2);
    assert!(
        messages[1].contains("no_codes (reveals a code)"),
        "{messages:?}"
    );
    assert_eq!(
        command_kinds(&model),
        ["message+respond", "cancel", "message+respond"]
    );
    assert!(
        events
            .assistant_text()
            .ends_with("Sorry, I can't share codes.")
    );
}

#[tokio::test]
async fn the_session_sent_what_the_agent_configured() {
    let agent = RealtimeAgent::new("Assistant")
        .instructions("Be brief.")
        .voice("marin")
        .tool(weather_tool());
    let model = ScriptedModel::new().reply(Reply::text("Hi!"));
    let mut session = start(agent, &model).await;
    session.send_message("Hello").await.unwrap();
    model.play(&mut session).await.unwrap();
    session.interrupt().await.unwrap();
    // A round trip through the session: the interrupt was handled before the close.
    session.handle().history().await.unwrap();
    session.close().await;
    until(&mut session, Duration::from_secs(5), |e| {
        matches!(e, E::Closed { .. })
    })
    .await
    .unwrap();

    let connects = model.connections();
    assert_eq!(connects.len(), 1);
    assert_eq!(connects[0].instructions.as_deref(), Some("Be brief."));
    assert_eq!(connects[0].voice, Some(Voice::from("marin")));
    let tools: Vec<&str> = connects[0]
        .tools
        .iter()
        .flatten()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(tools, ["get_weather"]);
    assert_eq!(command_kinds(&model), ["message+respond", "cancel"]);
    assert_eq!(model.user_messages(), ["Hello"]);
}

#[tokio::test]
async fn spoken_input_is_transcribed_and_answered() {
    // The responder answers whatever the user said.
    let model = ScriptedModel::new().responder(|request| {
        Reply::text(format!(
            "You said: {}",
            request.user_text.as_deref().unwrap_or("nothing")
        ))
    });
    let mut session = start(RealtimeAgent::new("Assistant"), &model).await;
    let speech: Vec<u8> = encode_text("book a table")
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    for chunk in speech.chunks(960) {
        session.send_audio(chunk.to_vec(), false).await.unwrap();
    }
    session.send_audio(Vec::new(), true).await.unwrap();
    let events = model.play(&mut session).await.unwrap();

    assert!(events.iter().any(
        |e| matches!(e, E::UserTranscript { transcript, .. } if transcript == "book a table")
    ));
    assert_eq!(events.assistant_text(), "You said: book a table");
}

#[tokio::test]
async fn a_user_barging_in_stops_playback_without_a_second_cancel() {
    let model = ScriptedModel::new().reply(
        Reply::speech("Here is a rather long answer that the user will cut short.")
            .interrupted_by_user(),
    );
    let mut session = start(RealtimeAgent::new("Assistant"), &model).await;
    session.send_message("Tell me everything").await.unwrap();
    let events = model.play(&mut session).await.unwrap();

    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::InputSpeechStarted { .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::AudioInterrupted { .. }))
    );
    // The server cancelled by itself: the session does not cancel again.
    assert!(!command_kinds(&model).contains(&"cancel"));
    let history = session.handle().history().await.unwrap();
    let answer = history
        .iter()
        .filter_map(|i| i.as_message())
        .find(|m| m.role == realtime_agents::items::Role::Assistant)
        .expect("answer in history");
    assert_eq!(
        answer.status,
        realtime_agents::items::ItemStatus::Incomplete
    );
    assert!(
        answer.text().len() < "Here is a rather long answer that the user will cut short.".len()
    );
}

#[tokio::test]
async fn server_errors_are_reported_and_a_server_close_ends_the_session() {
    let overloaded = Error::Server(ServerError::new("server_error", "overloaded"));
    let model = ScriptedModel::new().reply(Reply::error(overloaded));
    let mut session = start(RealtimeAgent::new("Assistant"), &model).await;
    session.send_message("Hello?").await.unwrap();
    let first = model.play(&mut session).await.unwrap();
    assert!(matches!(first.errors().as_slice(), [Error::Server(e)] if e.message == "overloaded"));

    // The next reply, scripted as the test goes.
    let restart = Error::Closed {
        code: Some(1011),
        reason: "restarting".into(),
    };
    model.push_reply(Reply::close(Some(restart)));
    session.send_message("Hello again?").await.unwrap();
    let second = model.play(&mut session).await.unwrap();
    match second.last() {
        Some(E::Closed {
            error: Some(Error::Closed { code, .. }),
        }) => assert_eq!(*code, Some(1011)),
        other => panic!("expected the session to end with the server's close, got {other:?}"),
    }
}

#[tokio::test]
async fn play_says_what_is_missing_when_the_script_is_not_used_up() {
    let model = ScriptedModel::new()
        .timeout(Duration::from_millis(300))
        .reply(Reply::text("One."))
        .reply(Reply::text("Two, never asked for."));
    let mut session = start(RealtimeAgent::new("Assistant"), &model).await;
    session.send_message("Hi").await.unwrap();
    let error = model.play(&mut session).await.unwrap_err();
    let Error::Timeout(message) = error else {
        panic!("expected a timeout, got {error:?}");
    };
    assert!(message.contains("1 replies not played"), "{message}");
    assert_eq!(model.remaining(), 1);
}

#[tokio::test]
async fn a_dropped_connection_is_resumed_with_the_history() {
    let lost = Error::Closed {
        code: Some(1006),
        reason: "network".into(),
    };
    let model = ScriptedModel::new().reply(Reply::text("First answer."));
    let config = RealtimeRunConfig::new().reconnect(
        ReconnectPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(1)),
    );
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(model.clone())
        .config(config)
        .run(())
        .await
        .unwrap();
    session.send_message("One").await.unwrap();
    model.play(&mut session).await.unwrap();
    // The next request finds the connection dropping.
    model.push_reply(Reply::close(Some(lost)));
    session.send_message("Two").await.unwrap();
    let events = model.play(&mut session).await.unwrap();
    let replayed = events.iter().find_map(|e| match e {
        E::Reconnected { replayed_items, .. } => Some(*replayed_items),
        _ => None,
    });
    // The user's two messages and the first answer were re-created on the new connection.
    assert_eq!(replayed, Some(3));
    assert_eq!(model.connections().len(), 2);
    let kinds = command_kinds(&model);
    assert_eq!(
        kinds,
        [
            "message+respond",
            "message+respond",
            "create item",
            "create item",
            "create item"
        ]
    );
    // The request was lost with the connection; asking again gets an answer.
    model.push_reply(Reply::text("Still here."));
    session.handle().create_response().await.unwrap();
    assert_eq!(
        model.play(&mut session).await.unwrap().assistant_text(),
        "Still here."
    );
}
