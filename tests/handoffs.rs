//! Handoffs and `update_agent` over loopback WebSockets: typed input, predicates, cycles,
//! voice and formats that survive, and per-agent voice before the first audio.

mod support;

use std::sync::{Arc, Mutex};

use realtime_agents::audio::AudioFormat;
use realtime_agents::model::SessionSettings;
use realtime_agents::{
    Handoff, RealtimeAgent, RealtimeRunConfig, RealtimeSessionEvent as E, RunContext,
};
use serde_json::{Value, json};
use support::script::{spoken_response, start, start_with, tool_script};
use support::{ScriptedServer, ev, until};

fn done(e: &E) -> bool {
    matches!(e, E::TranscriptDelta { delta, .. } if delta == "Done.")
}

fn tool_names(update: &Value) -> Vec<String> {
    update["session"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Escalation {
    reason: String,
}

#[tokio::test]
async fn typed_handoff_input_reaches_the_callback_and_the_schema_is_strict() {
    let server = ScriptedServer::start(tool_script(vec![(
        "call_h",
        "transfer_to_supervisor",
        r#"{"reason":"angry caller"}"#,
    )]))
    .await;
    let seen = Arc::new(Mutex::new(None));
    let handoff = {
        let seen = seen.clone();
        Handoff::new(RealtimeAgent::new("Supervisor").instructions("Calm things down."))
            .on_handoff_with_input(move |_ctx: RunContext, input: Escalation| {
                *seen.lock().unwrap() = Some(input.reason);
                async { Ok(()) }
            })
    };
    let mut session = start(
        &server,
        RealtimeAgent::new("Triage").handoff(handoff),
        RealtimeRunConfig::new(),
    )
    .await;
    let first = server.wait_for("session.update", 1).await.remove(0);
    assert_eq!(
        first["session"]["tools"][0]["parameters"],
        json!({"type": "object", "properties": {"reason": {"type": "string"}},
               "required": ["reason"], "additionalProperties": false})
    );
    session.send_message("Get me your boss").await.unwrap();
    let events = until(&mut session, done).await;
    assert_eq!(seen.lock().unwrap().as_deref(), Some("angry caller"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::Handoff { to, .. } if to == "Supervisor"))
    );
    let update = server.received_of("session.update").remove(1);
    assert_eq!(update["session"]["instructions"], "Calm things down.");
}

#[tokio::test]
async fn invalid_handoff_input_keeps_the_agent_and_tells_the_model() {
    let server = ScriptedServer::start(tool_script(vec![(
        "call_h",
        "transfer_to_supervisor",
        r#"{"why":"?"}"#,
    )]))
    .await;
    let handoff = Handoff::new(RealtimeAgent::new("Supervisor"))
        .on_handoff_with_input(|_ctx: RunContext, _: Escalation| async { Ok(()) });
    let mut session = start(
        &server,
        RealtimeAgent::new("Triage").handoff(handoff),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("Get me your boss").await.unwrap();
    let events = until(&mut session, done).await;
    assert!(!events.iter().any(|e| matches!(e, E::Handoff { .. })));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::AgentStart { agent, .. } if agent == "Triage"))
    );
    assert_eq!(server.received_of("session.update").len(), 1, "no switch");
    let output = server
        .received_of("conversation.item.create")
        .into_iter()
        .find(|e| e["item"]["type"] == "function_call_output")
        .unwrap();
    let text = output["item"]["output"].as_str().unwrap();
    assert!(
        text.starts_with("Error: invalid input for `transfer_to_supervisor`"),
        "{text}"
    );
    assert_eq!(
        session.handle().current_agent().await.unwrap().name(),
        "Triage"
    );
}

#[tokio::test]
async fn a_handoff_predicate_hides_it_and_agents_can_hand_off_in_a_cycle() {
    struct Hours {
        open: bool,
    }
    fn triage() -> RealtimeAgent {
        RealtimeAgent::new("Triage")
            .instructions("triage")
            .handoff(Handoff::lazy("Billing", billing))
            .handoff(
                Handoff::lazy("Sales", || RealtimeAgent::new("Sales"))
                    .enabled_if(|ctx: &RunContext, _| ctx.get::<Hours>().is_some_and(|h| h.open)),
            )
    }
    fn billing() -> RealtimeAgent {
        RealtimeAgent::new("Billing")
            .instructions("billing")
            .handoff(Handoff::lazy("Triage", triage))
    }
    // Triage -> Billing, then Billing -> Triage.
    let server = ScriptedServer::start({
        let n = std::sync::atomic::AtomicUsize::new(0);
        move |e: &Value, out: &support::Responder| {
            if e["type"] != "response.create" {
                return;
            }
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let resp = format!("r{i}");
            let target = match i {
                0 => "transfer_to_billing",
                1 => "transfer_to_triage",
                _ => return spoken_response(out, &resp, "a9", &["Done."]),
            };
            out.send(ev::response_created(&resp));
            out.send(ev::function_call(
                &resp,
                &format!("fc{i}"),
                &format!("call_{i}"),
                target,
                "{}",
            ));
            out.send(ev::response_done(&resp, "completed"));
        }
    })
    .await;
    let mut session = start_with(
        &server,
        triage(),
        RealtimeRunConfig::new(),
        Hours { open: false },
    )
    .await;
    let first = server.wait_for("session.update", 1).await.remove(0);
    assert_eq!(
        tool_names(&first),
        ["transfer_to_billing"],
        "Sales is closed"
    );
    session.send_message("Invoice question").await.unwrap();
    let events = until(&mut session, done).await;
    let handoffs: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            E::Handoff { from, to } => Some((from.clone(), to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        handoffs,
        [
            ("Triage".to_owned(), "Billing".to_owned()),
            ("Billing".to_owned(), "Triage".to_owned())
        ]
    );
    let updates = server.received_of("session.update");
    assert_eq!(updates[1]["session"]["instructions"], "billing");
    assert_eq!(tool_names(&updates[1]), ["transfer_to_triage"]);
    assert_eq!(updates[2]["session"]["instructions"], "triage");
}

#[tokio::test]
async fn update_agent_keeps_voice_and_format_and_reports_no_handoff() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let config = RealtimeRunConfig::new().settings(
        SessionSettings::new()
            .voice("marin")
            .output_format(AudioFormat::G711_ULAW)
            .input_format(AudioFormat::G711_ULAW),
    );
    let mut session = start(&server, RealtimeAgent::new("A").instructions("a"), config).await;
    session
        .update_agent(RealtimeAgent::new("B").instructions("b"))
        .await
        .unwrap();
    let update = server.wait_for("session.update", 2).await.remove(1);
    assert_eq!(update["session"]["instructions"], "b");
    assert_eq!(update["session"]["audio"]["output"]["voice"], "marin");
    assert_eq!(
        update["session"]["audio"]["output"]["format"],
        json!({"type": "audio/pcmu"})
    );
    assert_eq!(
        update["session"]["audio"]["input"]["format"],
        json!({"type": "audio/pcmu"})
    );
    assert_eq!(session.handle().current_agent().await.unwrap().name(), "B");
    session.close().await;
    let events = support::until_end(&mut session).await;
    assert!(!events.iter().any(|e| matches!(e, E::Handoff { .. })));
}

#[tokio::test]
async fn a_per_agent_voice_applies_only_before_the_first_audio() {
    let server =
        ScriptedServer::start(tool_script(vec![("call_h", "transfer_to_billing", "{}")])).await;
    let billing = RealtimeAgent::new("Billing").voice("cedar");
    let triage = RealtimeAgent::new("Triage")
        .voice("verse")
        .handoff(Handoff::new(billing));
    let mut session = start(&server, triage, RealtimeRunConfig::new()).await;
    let first = server.wait_for("session.update", 1).await.remove(0);
    assert_eq!(first["session"]["audio"]["output"]["voice"], "verse");
    // Before any audio: the handoff may still change the voice.
    session.send_message("Billing please").await.unwrap();
    until(&mut session, done).await;
    let update = server.received_of("session.update").remove(1);
    assert_eq!(update["session"]["audio"]["output"]["voice"], "cedar");
    // "Done." came with audio: from now on no update carries a voice.
    session
        .update_agent(RealtimeAgent::new("Other").voice("ash"))
        .await
        .unwrap();
    let update = server.wait_for("session.update", 3).await.remove(2);
    assert!(
        update["session"]["audio"]["output"].get("voice").is_none(),
        "{update}"
    );
}
