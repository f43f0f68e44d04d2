//! The Live backend (`model::live`) in sessions, over loopback: against the simulator's Live
//! mode (text and audio turns, tools through Responses and client delegation, barge-in, close)
//! and against scripted servers (malformed and unknown events, a failed start, reconnect).

mod support;

use std::time::Duration;

use futures::StreamExt as _;

use realtime_agents::items::{RealtimeItem, Role};
use realtime_agents::model::live::{LiveDelegation, LiveModel};
use realtime_agents::simulator::{Simulator, speech};
use realtime_agents::{
    Error, FunctionTool, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSession,
    RealtimeSessionEvent as E, ReconnectPolicy, ResponseEnd,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use support::{ScriptedServer, assistant_text, until, until_end};

#[derive(Deserialize, JsonSchema)]
struct City {
    city: String,
}

#[derive(Deserialize, JsonSchema)]
struct Task {
    task: String,
}

fn weather() -> FunctionTool {
    FunctionTool::new("get_weather", "Weather in a city.", |a: City| async move {
        Ok::<_, String>(format!("Sunny in {}", a.city))
    })
}

async fn session_with(
    model: LiveModel,
    agent: RealtimeAgent,
    config: RealtimeRunConfig,
) -> RealtimeSession {
    RealtimeRunner::new(agent)
        .model(model)
        .config(config)
        .run(())
        .await
        .expect("connects")
}

async fn sim_session(sim: &Simulator, agent: RealtimeAgent) -> RealtimeSession {
    let model = LiveModel::builder().url(sim.live_url()).build();
    session_with(model, agent, RealtimeRunConfig::new()).await
}

/// Streams test speech and a second of silence in 20 ms chunks, as a microphone would.
async fn speak(session: &RealtimeSession, text: &str) {
    let mut samples = speech::encode_text(text);
    samples.extend(std::iter::repeat_n(0i16, 24_000));
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    for chunk in bytes.chunks(960) {
        session.send_audio(chunk.to_vec(), false).await.unwrap();
    }
}

/// Waits until `session.start` went out and `session.started` had time to come back.
async fn started(session: &mut RealtimeSession, sim: &Simulator) {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            // Any event pumps the session; the simulator records the start when it answers it.
            let _ = tokio::time::timeout(Duration::from_millis(20), session.next()).await;
            if sim
                .client_events()
                .iter()
                .any(|e| e["type"] == "session.start")
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        }
    })
    .await
    .expect("started");
}

fn no_errors(events: &[E]) {
    assert!(
        !events.iter().any(|e| matches!(e, E::Error { .. })),
        "{events:#?}"
    );
}

#[tokio::test]
async fn a_text_turn_is_one_response_with_history() {
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    let mut session = sim_session(&sim, RealtimeAgent::new("Assistant")).await;
    session.send_message("Hello!").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    no_errors(&events);
    let start = events
        .iter()
        .position(|e| matches!(e, E::AgentStart { .. }));
    let end = events.iter().position(
        |e| matches!(e, E::AgentEnd { status: ResponseEnd::Completed, response_id, .. } if response_id.starts_with("resp_live")),
    );
    assert!(start.is_some() && start < end, "{events:#?}");
    assert_eq!(
        assistant_text(&events),
        "Hello! I'm a simulated assistant. How can I help you today?"
    );
    assert!(events.iter().any(|e| matches!(e, E::Audio { .. })));
    let history = session.history();
    let texts: Vec<(Role, String)> = history
        .iter()
        .filter_map(RealtimeItem::as_message)
        .map(|m| (m.role, m.text()))
        .collect();
    assert_eq!(
        texts,
        [
            (Role::User, "Hello!".to_owned()),
            (
                Role::Assistant,
                "Hello! I'm a simulated assistant. How can I help you today?".to_owned()
            )
        ]
    );
    let sent = sim.client_events();
    assert_eq!(sent[0]["type"], "session.start");
    assert_eq!(sent[1]["type"], "session.thinking.append");
    assert_eq!(sent[1]["content"], "user: Hello!");
    assert_eq!(sent[2]["type"], "session.commentary.append");
    assert!(sent[2]["delegation_id"].is_null());
}

#[tokio::test]
async fn an_audio_turn_is_transcribed_and_answered() {
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    let mut session = sim_session(&sim, RealtimeAgent::new("Assistant")).await;
    speak(&session, "hello there").await;
    let events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    no_errors(&events);
    let pos = |f: &dyn Fn(&E) -> bool| events.iter().position(f);
    let speech = pos(&|e| matches!(e, E::InputSpeechStarted { .. }));
    let heard =
        pos(&|e| matches!(e, E::UserTranscript { transcript, .. } if transcript == "hello there"));
    let answer = pos(&|e| matches!(e, E::AgentStart { .. }));
    assert!(
        speech.is_some() && speech < heard && heard < answer,
        "{events:#?}"
    );
    assert_eq!(
        assistant_text(&events),
        "Hello! I'm a simulated assistant. How can I help you today?"
    );
}

#[tokio::test]
async fn a_tool_runs_through_responses_delegation() {
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    let model = LiveModel::builder()
        .url(sim.live_url())
        .delegation(LiveDelegation::responses("gpt-5.4-mini"))
        .build();
    let agent = RealtimeAgent::new("Assistant").tool(weather());
    let mut session = session_with(model, agent, RealtimeRunConfig::new()).await;
    speak(&session, "What's the weather in Paris?").await;
    let events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { role: Role::Assistant, delta, .. } if delta.contains("Paris.")),
    )
    .await;
    no_errors(&events);
    assert!(
        events.iter().any(
            |e| matches!(e, E::ToolEnd { tool, output, .. } if tool == "get_weather" && output == "Sunny in Paris")
        ),
        "{events:#?}"
    );
    assert!(assistant_text(&events).ends_with("Here is what I found: Sunny in Paris."));
    let sent = sim.client_events();
    let start = &sent[0]["session"]["delegation"];
    assert_eq!(start["responses"]["tools"][0]["name"], "get_weather");
    let kinds: Vec<&str> = sent.iter().filter_map(|e| e["type"].as_str()).collect();
    let output = kinds.iter().position(|k| *k == "response.item.create");
    let create = kinds.iter().position(|k| *k == "response.create");
    assert!(output.is_some() && output < create, "{kinds:?}");
    // One continuation, no commentary asking for speech on top of it.
    assert_eq!(kinds.iter().filter(|k| **k == "response.create").count(), 1);
    assert!(!kinds.contains(&"session.commentary.append"), "{kinds:?}");
    let history = session.history();
    assert!(history.iter().any(
        |i| matches!(i, RealtimeItem::ToolCall(t) if t.output.as_deref() == Some("Sunny in Paris"))
    ));
}

#[tokio::test]
async fn client_delegation_calls_the_task_tool_and_the_answer_is_spoken() {
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    let model = LiveModel::builder()
        .url(sim.live_url())
        .delegation(LiveDelegation::client("get_weather"))
        .build();
    let tool = FunctionTool::new("get_weather", "Weather questions.", |t: Task| async move {
        Ok::<_, String>(format!("Sunny, for: {}", t.task))
    });
    let agent = RealtimeAgent::new("Assistant").tool(tool);
    let mut session = session_with(model, agent, RealtimeRunConfig::new()).await;
    speak(&session, "What's the weather in Paris?").await;
    let events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { role: Role::Assistant, delta, .. } if delta.contains("Paris?.")),
    )
    .await;
    no_errors(&events);
    assert!(events.iter().any(|e| matches!(e, E::ToolEnd { output, .. } if output == "Sunny, for: What's the weather in Paris?")), "{events:#?}");
    let sent = sim.client_events();
    let instructions = sent[0]["session"]["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("get_weather: Weather questions."),
        "{instructions}"
    );
    let answer = sent
        .iter()
        .find(|e| e["type"] == "session.commentary.append" && e["delegation_id"].is_string())
        .expect("the answer");
    assert_eq!(
        answer["content"],
        "Sunny, for: What's the weather in Paris?"
    );
}

#[tokio::test]
async fn barge_in_stops_the_utterance_and_the_model_answers_the_user() {
    let sim = Simulator::builder().speed(4.0).start().await.unwrap();
    let mut session = sim_session(&sim, RealtimeAgent::new("Assistant")).await;
    session.send_message("Tell me a story").await.unwrap();
    until(&mut session, |e| matches!(e, E::Audio { .. })).await;
    let silence = vec![0u8; 960];
    for _ in 0..25 {
        session.send_audio(silence.clone(), false).await.unwrap();
    }
    speak(&session, "stop").await;
    let events = until(&mut session, |e| {
        matches!(
            e,
            E::AgentEnd {
                status: ResponseEnd::Completed,
                ..
            }
        )
    })
    .await;
    no_errors(&events);
    let pos = |f: &dyn Fn(&E) -> bool| events.iter().position(f);
    let barge = pos(&|e| matches!(e, E::InputSpeechStarted { .. }));
    let interrupted = pos(&|e| {
        matches!(
            e,
            E::AgentEnd {
                status: ResponseEnd::Interrupted,
                ..
            }
        )
    });
    assert!(
        barge.is_some() && barge < interrupted,
        "the story ends as interrupted after the barge-in: {events:#?}"
    );
    let answer: String = events[interrupted.unwrap()..]
        .iter()
        .filter_map(|e| match e {
            E::TranscriptDelta {
                role: Role::Assistant,
                delta,
                ..
            } => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(answer, "You said: stop.");
    let story = session
        .history()
        .iter()
        .filter_map(RealtimeItem::as_message)
        .find(|m| m.role == Role::Assistant)
        .map(|m| m.text())
        .unwrap();
    // Cut where the user stopped hearing it (the session keeps what was heard).
    assert!(
        "Once upon a time".starts_with(story.as_str()),
        "cut short once the user was heard: {story}"
    );
}

#[tokio::test]
async fn close_sends_session_close_and_waits_for_session_closed() {
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    let mut session = sim_session(&sim, RealtimeAgent::new("Assistant")).await;
    started(&mut session, &sim).await;
    session.close().await;
    let events = until_end(&mut session).await;
    assert!(
        matches!(events.last(), Some(E::Closed { error: None })),
        "{events:#?}"
    );
    assert_eq!(sim.client_events().last().unwrap()["type"], "session.close");
}

/// A scripted server that answers `session.start` with `session.started`.
async fn live_server(
    script: impl Fn(&Value, &support::Responder) + Send + Sync + 'static,
) -> ScriptedServer {
    ScriptedServer::start(move |event, out| {
        if event["type"] == "session.start" {
            out.send(
                json!({"type": "session.started", "event_id": "ev_start", "session": {
                "id": "sess_1", "expires_at": 0, "model": "gpt-live-1", "status": "active",
                "audio": {"format": {"type": "audio/pcm", "rate": 24000}}}}),
            );
        }
        script(event, out);
    })
    .await
}

fn live_model(server: &ScriptedServer) -> LiveModel {
    LiveModel::builder().url(server.url.clone()).build()
}

#[tokio::test]
async fn unknown_and_malformed_events_never_end_the_session() {
    let server = live_server(|event, out| {
        if event["type"] == "session.start" {
            out.send(json!({"type": "session.brand_new_event", "event_id": "e1", "x": [1, 2]}));
            out.raw("not json at all");
            out.send(json!({"type": "session.output_audio.delta", "delta": 5}));
            out.send(json!({"type": "session.output_transcript.delta"}));
            out.send(json!({"type": "session.output_audio.delta", "delta": "@@@@"}));
            out.send(json!({"type": "error", "event_id": "e2", "error": {"type": "invalid_request_error",
                "code": "unknown_parameter", "message": "nope", "param": null, "client_event_id": "c9"}}));
            out.send(json!({"type": "session.output_transcript.delta", "event_id": "e3",
                "delta": "Still here", "start_ms": 0, "end_ms": 200}));
        }
    })
    .await;
    let mut session = session_with(
        live_model(&server),
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    let events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "Still here"),
    )
    .await;
    let errors: Vec<&Error> = events
        .iter()
        .filter_map(|e| match e {
            E::Error { error } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(
        matches!(errors[4], Error::Server(s) if s.code.as_deref() == Some("unknown_parameter") && s.event_id.as_deref() == Some("c9"))
    );
    assert!(!events.iter().any(|e| matches!(e, E::Closed { .. })));
}

#[tokio::test]
async fn an_error_before_session_started_ends_the_connection() {
    let server = ScriptedServer::start(|event, out| {
        if event["type"] == "session.start" {
            out.send(
                json!({"type": "error", "event_id": "e1", "error": {"type": "invalid_request_error",
                "code": "model_not_found", "message": "The model `gpt-live-9` does not exist.",
                "param": "session.model"}}),
            );
        }
    })
    .await;
    let mut session = session_with(
        live_model(&server),
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    let events = until_end(&mut session).await;
    assert!(
        matches!(events.last(), Some(E::Closed { error: Some(Error::Server(s)) }) if s.code.as_deref() == Some("model_not_found")),
        "{events:#?}"
    );
}

#[tokio::test]
async fn reconnect_starts_a_new_session_seeded_with_the_history() {
    let server = live_server(|event, out| {
        if event["type"] == "session.commentary.append" {
            out.send(
                json!({"type": "session.output_transcript.delta", "event_id": "e1",
                "delta": "Hi there.", "start_ms": 0, "end_ms": 200}),
            );
            out.send(json!({"type": "session.output_audio.delta",
                "delta": base64_silence(900)}));
        }
        if event["type"] == "session.thinking.append" && event["content"] == "user: bye" {
            out.drop_connection();
        }
    })
    .await;
    let config = RealtimeRunConfig::new().reconnect(
        ReconnectPolicy::new()
            .max_attempts(2)
            .backoff(Duration::from_millis(10), Duration::from_millis(10)),
    );
    let mut session = session_with(
        live_model(&server),
        RealtimeAgent::new("Assistant").instructions("Be brief."),
        config,
    )
    .await;
    session.send_message("hello").await.unwrap();
    until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    session.handle().add_message("bye").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::Reconnected { .. })).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::Reconnected { replayed_items, .. } if *replayed_items == 3)),
        "{events:#?}"
    );
    let starts = server.wait_for("session.start", 2).await;
    let input = &starts[1]["session"]["input"];
    assert_eq!(
        input,
        &json!([
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi there."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "bye"}]},
        ]),
        "{starts:#?}"
    );
    assert_eq!(starts[1]["session"]["instructions"], "Be brief.");
}

fn base64_silence(ms: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(vec![0u8; ms * 48])
}

#[tokio::test]
async fn no_key_reaches_an_error_or_a_debug_string() {
    let sim = Simulator::builder()
        .speed(0.0)
        .require_api_key("sk-right")
        .start()
        .await
        .unwrap();
    let model = LiveModel::builder()
        .url(sim.live_url())
        .api_key("sk-live-wrong-secret")
        .build();
    assert!(!format!("{model:?}").contains("sk-live-wrong-secret"));
    let error = RealtimeRunner::new(RealtimeAgent::new("A"))
        .model(model)
        .run(())
        .await
        .expect_err("refused");
    assert!(
        matches!(
            error,
            Error::Connect {
                status: Some(401),
                ..
            }
        ),
        "{error}"
    );
    assert!(!format!("{error:?}").contains("sk-live-wrong-secret"));
}

/// The conformance kit on the Live backend against the simulator's Live mode.
async fn conformance_report(
    delegation: LiveDelegation,
) -> realtime_agents::model::conformance::Report {
    use realtime_agents::model::conformance::{self, Options};
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    let model = LiveModel::builder()
        .url(sim.live_url())
        .delegation(delegation)
        .build();
    conformance::run(&model, &Options::default()).await
}

#[tokio::test]
async fn the_live_backend_conforms_with_responses_delegation() {
    let report = conformance_report(LiveDelegation::responses("gpt-5.4-mini")).await;
    println!("{report}");
    assert!(report.passed(), "{report}");
    let caps = report.capabilities.clone().expect("capabilities");
    assert!(caps.model_turn_taking && caps.function_calls && caps.auto_tool_reply);
    assert!(!caps.truncation && !caps.response_cancel && !caps.edit_items);
}

#[tokio::test]
async fn the_live_backend_conforms_with_client_delegation() {
    let report = conformance_report(LiveDelegation::client("get_weather")).await;
    println!("{report}");
    assert!(report.passed(), "{report}");
    let caps = report.capabilities.clone().expect("capabilities");
    assert!(caps.delegated_tools && !caps.function_calls);
}

/// A buffer the TRACE capture writes to.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A Live session with a key, a refused upgrade (wrong key) and a close, under a global TRACE
/// capture (with the `log` bridge): the key never shows.
#[tokio::test]
async fn trace_capture_of_live_sessions_never_shows_the_key() {
    const KEY: &str = "sk-proj-LIVE-CANARY-5e1d2c3b4a59";
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only global subscriber of this test binary");
    let sim = Simulator::builder()
        .speed(0.0)
        .require_api_key(KEY)
        .start()
        .await
        .unwrap();
    let refused = RealtimeRunner::new(RealtimeAgent::new("A"))
        .model(
            LiveModel::builder()
                .url(sim.live_url())
                .api_key("sk-proj-LIVE-WRONG-00000000")
                .build(),
        )
        .run(())
        .await
        .expect_err("refused");
    assert!(matches!(
        refused,
        Error::Connect {
            status: Some(401),
            ..
        }
    ));
    let model = LiveModel::builder()
        .url(sim.live_url())
        .api_key(KEY)
        .build();
    let mut session = session_with(model, RealtimeAgent::new("A"), RealtimeRunConfig::new()).await;
    session.send_message("Hello!").await.unwrap();
    until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    session.close().await;
    until_end(&mut session).await;
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(text.contains("Live session started"), "{text}");
    assert!(text.contains("tungstenite"), "the log bridge is on: {text}");
    assert_eq!(text.matches(KEY).count(), 0, "the key is in the capture");
    assert_eq!(
        text.matches(&KEY[8..24]).count(),
        0,
        "part of the key is in the capture"
    );
    assert!(
        !text.contains("sk-proj-LIVE-WRONG"),
        "the wrong key is in the capture"
    );
}
