//! Lifecycle hooks over loopback WebSockets: each is called, and each veto does what it says.

mod support;

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use realtime_agents::hooks::{HookDecision, RealtimeHooks};
use realtime_agents::model::{ModelCommand, ModelEvent};
use realtime_agents::{
    FunctionTool, Handoff, RealtimeAgent, RealtimeRunConfig, RealtimeSessionEvent as E, RunContext,
    ToolContext,
};
use support::script::{City, start, tool_script, weather_tool};
use support::{ScriptedServer, until};

/// Records every hook call; vetoes what it is told to.
#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    reject_tool: Option<&'static str>,
    replace_output: bool,
    reject_audio: bool,
    ignore_function_calls: bool,
    reject_handoff: bool,
}

impl Recorder {
    fn log(&self, entry: String) {
        self.calls.lock().unwrap().push(entry);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl RealtimeHooks for Recorder {
    fn on_agent_start(&self, _: &RunContext, agent: &RealtimeAgent) {
        self.log(format!("agent_start:{}", agent.name()));
    }
    fn on_agent_end(&self, _: &RunContext, agent: &RealtimeAgent) {
        self.log(format!("agent_end:{}", agent.name()));
    }
    fn before_tool<'a>(&'a self, tool: &'a ToolContext) -> BoxFuture<'a, HookDecision> {
        Box::pin(async move {
            self.log(format!("before_tool:{}", tool.tool_name));
            match self.reject_tool {
                Some(name) if name == tool.tool_name => HookDecision::reject("Not on this line."),
                _ => HookDecision::Continue,
            }
        })
    }
    fn after_tool<'a>(
        &'a self,
        tool: &'a ToolContext,
        result: &'a Result<String, String>,
    ) -> BoxFuture<'a, HookDecision> {
        Box::pin(async move {
            self.log(format!(
                "after_tool:{}:{}",
                tool.tool_name,
                result.as_deref().unwrap_or("err")
            ));
            if self.replace_output {
                HookDecision::reject("[redacted]")
            } else {
                HookDecision::Continue
            }
        })
    }
    fn on_handoff(&self, _: &RunContext, from: &RealtimeAgent, to: &RealtimeAgent) -> HookDecision {
        self.log(format!("handoff:{}->{}", from.name(), to.name()));
        if self.reject_handoff {
            HookDecision::reject("Transfers are closed.")
        } else {
            HookDecision::Continue
        }
    }
    fn before_send(&self, command: &ModelCommand) -> HookDecision {
        match command {
            ModelCommand::Audio { .. } if self.reject_audio => {
                HookDecision::reject("muted by policy")
            }
            ModelCommand::ToolOutput { call_id, .. } => {
                self.log(format!("send_output:{call_id}"));
                HookDecision::Continue
            }
            _ => HookDecision::Continue,
        }
    }
    fn on_model_event(&self, event: &ModelEvent) -> HookDecision {
        match event {
            ModelEvent::FunctionCall { name, .. } => {
                self.log(format!("event_call:{name}"));
                if self.ignore_function_calls {
                    return HookDecision::reject("ignored");
                }
                HookDecision::Continue
            }
            _ => HookDecision::Continue,
        }
    }
}

fn done(e: &E) -> bool {
    matches!(e, E::TranscriptDelta { delta, .. } if delta == "Done.")
}

fn tool_output(server: &ScriptedServer) -> String {
    server
        .received_of("conversation.item.create")
        .into_iter()
        .find(|e| e["item"]["type"] == "function_call_output")
        .map(|e| e["item"]["output"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn hooks_are_called_in_order_around_a_tool_turn() {
    let server = ScriptedServer::start(tool_script(vec![(
        "call_1",
        "get_weather",
        r#"{"city":"Paris"}"#,
    )]))
    .await;
    let recorder = Arc::new(Recorder::default());
    let config = RealtimeRunConfig::new().hooks(recorder.clone());
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(weather_tool()),
        config,
    )
    .await;
    session.send_message("Weather?").await.unwrap();
    until(&mut session, done).await;
    until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    let calls = recorder.calls();
    let at = |entry: &str| {
        calls
            .iter()
            .position(|c| c == entry)
            .unwrap_or_else(|| panic!("no `{entry}` in {calls:?}"))
    };
    // The tool runs in its own task, concurrently with the end of the response.
    assert_eq!(at("agent_start:Assistant"), 0);
    assert!(at("event_call:get_weather") < at("before_tool:get_weather"));
    assert!(
        at("before_tool:get_weather") < at("after_tool:get_weather:Sunny, 22 degrees in Paris")
    );
    assert!(at("after_tool:get_weather:Sunny, 22 degrees in Paris") < at("send_output:call_1"));
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("agent_start"))
            .count(),
        2
    );
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("agent_end")).count(),
        2
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("agent_end:Assistant")
    );
}

#[tokio::test]
async fn before_tool_vetoes_and_after_tool_replaces_outputs() {
    let server = ScriptedServer::start(tool_script(vec![(
        "call_1",
        "delete_account",
        r#"{"city":"x"}"#,
    )]))
    .await;
    let ran = Arc::new(Mutex::new(false));
    let delete = {
        let ran = ran.clone();
        FunctionTool::new("delete_account", "Delete.", move |_: City| {
            *ran.lock().unwrap() = true;
            async { Ok::<_, String>("deleted") }
        })
    };
    let recorder = Arc::new(Recorder {
        reject_tool: Some("delete_account"),
        ..Recorder::default()
    });
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(delete),
        RealtimeRunConfig::new().hooks(recorder),
    )
    .await;
    session.send_message("Delete me").await.unwrap();
    let events = until(&mut session, done).await;
    assert!(!*ran.lock().unwrap());
    assert_eq!(tool_output(&server), "Not on this line.");
    assert!(events.iter().any(
        |e| matches!(e, E::ToolEnd { is_error: true, output, .. } if output == "Not on this line.")
    ));

    let server = ScriptedServer::start(tool_script(vec![(
        "call_1",
        "get_weather",
        r#"{"city":"Paris"}"#,
    )]))
    .await;
    let recorder = Arc::new(Recorder {
        replace_output: true,
        ..Recorder::default()
    });
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(weather_tool()),
        RealtimeRunConfig::new().hooks(recorder),
    )
    .await;
    session.send_message("Weather?").await.unwrap();
    until(&mut session, done).await;
    assert_eq!(tool_output(&server), "[redacted]");
}

#[tokio::test]
async fn before_send_drops_commands_and_on_model_event_ignores_events() {
    let server = ScriptedServer::start(tool_script(vec![(
        "call_1",
        "get_weather",
        r#"{"city":"Paris"}"#,
    )]))
    .await;
    let recorder = Arc::new(Recorder {
        reject_audio: true,
        ignore_function_calls: true,
        ..Recorder::default()
    });
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(weather_tool()),
        RealtimeRunConfig::new().hooks(recorder.clone()),
    )
    .await;
    session
        .handle()
        .send_audio(vec![0u8; 960], false)
        .await
        .unwrap();
    session.send_message("Weather?").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    server.wait_for("response.create", 1).await;
    assert!(server.received_of("input_audio_buffer.append").is_empty());
    assert!(!events.iter().any(|e| matches!(e, E::ToolStart { .. })));
    assert!(
        recorder
            .calls()
            .contains(&"event_call:get_weather".to_owned())
    );
    assert_eq!(tool_output(&server), "");
}

#[tokio::test]
async fn on_handoff_can_keep_the_current_agent() {
    let server =
        ScriptedServer::start(tool_script(vec![("call_h", "transfer_to_billing", "{}")])).await;
    let recorder = Arc::new(Recorder {
        reject_handoff: true,
        ..Recorder::default()
    });
    let agent = RealtimeAgent::new("Triage").handoff(Handoff::new(RealtimeAgent::new("Billing")));
    let mut session = start(
        &server,
        agent,
        RealtimeRunConfig::new().hooks(recorder.clone()),
    )
    .await;
    session.send_message("Billing").await.unwrap();
    let events = until(&mut session, done).await;
    assert!(!events.iter().any(|e| matches!(e, E::Handoff { .. })));
    assert!(
        recorder
            .calls()
            .contains(&"handoff:Triage->Billing".to_owned())
    );
    assert_eq!(tool_output(&server), "Transfers are closed.");
    assert_eq!(server.received_of("session.update").len(), 1);
    assert_eq!(
        session.handle().current_agent().await.unwrap().name(),
        "Triage"
    );
}
