//! Saving a session (SessionSnapshot as JSON) and resuming it in a new session, against the
//! built-in simulator: the model gets the conversation replayed and the right agent is in
//! charge.

mod support;

use realtime_agents::items::Role;
use realtime_agents::model::{OpenAIRealtimeWebSocketModel, SessionSettings};
use realtime_agents::simulator::Simulator;
use realtime_agents::{
    Error, Handoff, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSession,
    RealtimeSessionEvent as E, SessionOptions, SessionSnapshot,
};
use serde_json::Value;
use support::{assistant_text, client_events, recording_simulator, until};

fn agents() -> RealtimeAgent {
    let refunds = RealtimeAgent::new("Refunds").instructions("Always answer: Refunds here.");
    let billing = RealtimeAgent::new("Billing")
        .instructions("Always answer: Billing here.")
        .handoff(refunds);
    // Billing is built lazily, as an app with cycles between agents would.
    RealtimeAgent::new("Triage")
        .instructions("Route the caller.")
        .handoff(Handoff::lazy("Billing", move || billing.clone()))
}

fn runner(sim: &Simulator) -> RealtimeRunner {
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(sim.url())
        .build();
    RealtimeRunner::new(agents())
        .model(model)
        .config(RealtimeRunConfig::new().settings(SessionSettings::new().voice("marin").speed(1.1)))
}

async fn answer(session: &mut RealtimeSession, text: &str) -> String {
    session.send_message(text).await.expect("sends");
    let events = until(session, |e| matches!(e, E::AgentEnd { .. })).await;
    assistant_text(&events)
}

#[tokio::test]
async fn a_saved_session_resumes_with_its_agent_and_conversation() {
    // The first session: a handoff to Billing, then a question Billing answers.
    let first_sim = recording_simulator().await;
    let mut first = runner(&first_sim)
        .start(SessionOptions::new())
        .await
        .unwrap();
    first
        .send_message("Please transfer me to billing.")
        .await
        .unwrap();
    until(
        &mut first,
        |e| matches!(e, E::Handoff { to, .. } if to == "Billing"),
    )
    .await;
    until(
        &mut first,
        |e| matches!(e, E::AgentEnd { agent, .. } if agent == "Billing"),
    )
    .await;
    assert_eq!(
        answer(&mut first, "My order is 4711.").await,
        "Billing here."
    );
    let snapshot = first.handle().snapshot().await.unwrap();
    assert_eq!(snapshot.agent, "Billing");
    assert_eq!(snapshot.session_id, first.session_id());
    assert_eq!(snapshot.history, first.handle().history().await.unwrap());
    assert!(snapshot.settings.voice.is_some());
    assert_eq!(
        snapshot.settings.instructions, None,
        "the agent's layer is not saved"
    );
    let json = serde_json::to_string(&snapshot).unwrap();
    first.close().await;
    drop(first_sim);

    // Later, elsewhere: the JSON is all there is.
    let saved: SessionSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(saved, snapshot);
    let sim = recording_simulator().await;
    let mut resumed = runner(&sim)
        .resume(saved.clone(), SessionOptions::new())
        .await
        .unwrap();
    assert_eq!(resumed.session_id(), saved.session_id);
    assert_eq!(
        resumed.handle().current_agent().await.unwrap().name(),
        "Billing"
    );

    // The model got the session settings with Billing's instructions, then every item of
    // the conversation, in order, before anything else.
    let events = client_events(&sim, |e| e.len() > saved.history.len()).await;
    assert_eq!(events[0]["type"], "session.update", "{events:#?}");
    let session = &events[0]["session"];
    assert_eq!(session["instructions"], "Always answer: Billing here.");
    assert_eq!(session["audio"]["output"]["voice"], "marin");
    assert_eq!(session["audio"]["output"]["speed"], 1.1);
    let created: Vec<&Value> = events[1..]
        .iter()
        .take_while(|e| e["type"] == "conversation.item.create")
        .map(|e| &e["item"])
        .collect();
    // Each item with its id; a call is followed by its output.
    let expected: Vec<(String, &str)> = saved
        .history
        .iter()
        .flat_map(|item| {
            let mut ids = vec![(item.item_id().to_owned(), "")];
            if let Some(call) = item.as_tool_call().filter(|c| c.output.is_some()) {
                ids.push((String::new(), "function_call_output"));
                assert_eq!(call.name, "transfer_to_billing");
            }
            ids
        })
        .collect();
    let got: Vec<(String, &str)> = created
        .iter()
        .map(|item| match item["type"].as_str() {
            Some("function_call_output") => (String::new(), "function_call_output"),
            _ => (item["id"].as_str().unwrap_or("?").to_owned(), ""),
        })
        .collect();
    assert_eq!(got, expected, "{events:#?}");
    let texts: Vec<String> = saved
        .history
        .iter()
        .filter_map(|i| i.as_message())
        .map(|m| m.text())
        .collect();
    assert!(texts.contains(&"Please transfer me to billing.".to_owned()));
    assert!(texts.contains(&"My order is 4711.".to_owned()));
    assert!(texts.contains(&"Billing here.".to_owned()));
    let replayed = serde_json::to_string(&created).unwrap();
    for text in &texts {
        assert!(
            replayed.contains(text.as_str()),
            "{text} not replayed: {replayed}"
        );
    }
    assert!(
        saved.history.iter().any(|i| i.as_tool_call().is_some()),
        "the handoff call is part of the conversation"
    );
    assert!(replayed.contains("function_call_output"), "{replayed}");

    // Billing is in charge and the conversation goes on from there.
    assert_eq!(
        answer(&mut resumed, "Anything else?").await,
        "Billing here."
    );
    let history = resumed.handle().history().await.unwrap();
    assert_eq!(history.len(), saved.history.len() + 2, "{history:#?}");
    // The same items (placed by the session, so without the old connection's links).
    let id_and_text = |item: &realtime_agents::items::RealtimeItem| {
        let text = item.as_message().map(|m| m.text());
        (item.item_id().to_owned(), text)
    };
    assert_eq!(
        history[..saved.history.len()]
            .iter()
            .map(id_and_text)
            .collect::<Vec<_>>(),
        saved.history.iter().map(id_and_text).collect::<Vec<_>>()
    );
    let last_user = history.iter().rev().find_map(|i| {
        i.as_message()
            .filter(|m| m.role == Role::User)
            .map(|m| m.text())
    });
    assert_eq!(last_user.as_deref(), Some("Anything else?"));
}

#[tokio::test]
async fn agents_are_found_through_the_handoff_graph() {
    let sim = recording_simulator().await;
    let runner = runner(&sim);
    // Two handoffs deep, behind a lazy one.
    let snapshot = SessionSnapshot::new("sess_saved", "Refunds", Vec::new());
    let mut session = runner
        .resume(snapshot, SessionOptions::new())
        .await
        .unwrap();
    assert_eq!(
        session.handle().current_agent().await.unwrap().name(),
        "Refunds"
    );
    assert_eq!(session.session_id(), "sess_saved");
    assert_eq!(answer(&mut session, "Hi.").await, "Refunds here.");

    // The starting agent itself.
    let snapshot = SessionSnapshot::new("sess_2", "Triage", Vec::new());
    let session = runner
        .resume(snapshot, SessionOptions::new())
        .await
        .unwrap();
    assert_eq!(
        session.handle().current_agent().await.unwrap().name(),
        "Triage"
    );

    // An agent nobody hands off to.
    let connections = sim.connections();
    let snapshot = SessionSnapshot::new("sess_3", "Sales", Vec::new());
    let error = runner.resume(snapshot, SessionOptions::new()).await.err();
    assert!(
        matches!(&error, Some(Error::Config(m)) if m.contains("Sales")),
        "{error:?}"
    );
    assert_eq!(sim.connections(), connections, "nothing was connected");
}

#[tokio::test]
async fn options_apply_over_the_snapshot() {
    let sim = recording_simulator().await;
    let runner = runner(&sim);
    let snapshot = SessionSnapshot::new("sess_saved", "Triage", Vec::new())
        .with_settings(SessionSettings::new().voice("cedar"));
    let session = runner
        .resume(
            snapshot,
            SessionOptions::new().settings(SessionSettings::new().speed(0.9)),
        )
        .await
        .unwrap();
    let saved = session.handle().snapshot().await.unwrap();
    // The snapshot's settings replace the runner's (no speed 1.1); the options' merge over.
    assert_eq!(
        serde_json::to_value(&saved.settings).unwrap(),
        serde_json::json!({"voice": "cedar", "speed": 0.9_f32})
    );
    let update = &client_events(&sim, |e| !e.is_empty()).await[0];
    assert_eq!(update["session"]["audio"]["output"]["voice"], "cedar");
    // Fresh sessions get fresh ids.
    let a = runner.start(SessionOptions::new()).await.unwrap();
    let b = runner.start(SessionOptions::new()).await.unwrap();
    assert_ne!(a.session_id(), b.session_id());
    assert!(a.session_id().starts_with("sess_ra"));
}
