//! The turn contract (`realtime_agents::turn`): a turn ends exactly once, when the assistant has
//! nothing left to do for it, with a result that says what happened. Against the simulator over
//! loopback, and as a property over random schedules of an in-process backend.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use realtime_agents::model::task::TaskModel;
use realtime_agents::model::{
    Capabilities, ModelCommand, ModelEvent, OpenAIRealtimeWebSocketModel, ResponseStatus, Usage,
};
use realtime_agents::simulator::Simulator;
use realtime_agents::{
    FunctionTool, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSession,
    RealtimeSessionEvent as E, ResponseEnd, TurnCause, TurnStatus,
};
use schemars::JsonSchema;
use serde::Deserialize;
use support::{ScriptedServer, ev, until};

#[derive(Deserialize, JsonSchema)]
struct City {
    /// The city.
    city: String,
}

fn weather_tool() -> FunctionTool {
    FunctionTool::new(
        "get_weather",
        "Current weather in a city.",
        |a: City| async move { Ok::<_, String>(format!("Sunny and 22 degrees in {}", a.city)) },
    )
}

async fn sim_session(sim: &Simulator, agent: RealtimeAgent) -> RealtimeSession {
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(sim.url())
        .build();
    RealtimeRunner::new(agent)
        .model(model)
        .run(())
        .await
        .expect("session starts")
}

#[tokio::test]
async fn a_tool_turn_ends_after_the_answer_even_when_response_done_trails_the_call() {
    // The server sends a tool-calling response's `response.done` 30 ms after the call, so a
    // fast tool finishes first: the turn must still end only after the spoken answer.
    let sim = Simulator::builder()
        .speed(0.0)
        .tool_response_done_delay(Duration::from_millis(30))
        .start()
        .await
        .unwrap();
    for run in 0..20 {
        let agent = RealtimeAgent::new("Assistant").tool(weather_tool());
        let mut session = sim_session(&sim, agent).await;
        let (result, events) = support::script::weather_turn(&mut session).await;
        assert_eq!(result.status, TurnStatus::Completed, "run {run}");
        assert_eq!(result.cause, TurnCause::Message);
        assert!(
            result.text.contains("Sunny and 22 degrees in Paris"),
            "run {run}: {result:#?}"
        );
        assert_eq!(result.heard_text, result.text);
        assert_eq!(result.tool_calls.len(), 1);
        let call = &result.tool_calls[0];
        assert_eq!(call.tool, "get_weather");
        assert_eq!(call.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(
            call.output.as_deref(),
            Some("Sunny and 22 degrees in Paris")
        );
        assert_eq!(result.responses.len(), 2, "the call, then the answer");
        assert!(
            result
                .responses
                .iter()
                .all(|r| r.status == Some(ResponseEnd::Completed) && r.usage.is_some())
        );
        let summed = result.responses.iter().filter_map(|r| r.usage).fold(
            Usage::default(),
            |mut total, u| {
                total += u;
                total
            },
        );
        assert_eq!(result.usage, summed);
        assert!(result.timings.first_audio.is_some() && result.timings.total.is_some());
        assert!(result.timings.audio_generated_ms > 0);
        // The items of the turn: the user message, the call, the answer.
        assert!(result.items.len() >= 3, "{:#?}", result.items);
        // TurnEnded came after the tool's end and after the answer's AgentEnd.
        let tool_end = events
            .iter()
            .position(|e| matches!(e, E::ToolEnd { .. }))
            .unwrap();
        let last_agent_end = events
            .iter()
            .rposition(|e| matches!(e, E::AgentEnd { .. }))
            .unwrap();
        let turn_end = events
            .iter()
            .position(|e| matches!(e, E::TurnEnded { .. }))
            .unwrap();
        assert!(
            tool_end < last_agent_end && last_agent_end < turn_end,
            "run {run}"
        );
        session.close().await;
    }
}

#[tokio::test]
async fn an_interrupted_answer_reports_what_the_user_heard() {
    // Audio streams four times faster than it plays (as the real API sends it), so when the
    // user cuts in, much more was generated than heard.
    let sim = Simulator::builder().speed(4.0).start().await.unwrap();
    let mut session = sim_session(&sim, RealtimeAgent::new("Assistant")).await;
    let handle = session.handle();
    let mut audio = 0usize;
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        session.run_turn_with("Tell me a long story.", |e| {
            if let E::Audio { data, .. } = e {
                audio += data.len();
                // Two seconds of PCM16 at 24 kHz, received in about half a second.
                if audio >= 96_000 && audio - data.len() < 96_000 {
                    let handle = handle.clone();
                    tokio::spawn(async move { handle.interrupt().await });
                }
            }
        }),
    )
    .await
    .expect("the turn ends")
    .expect("the turn succeeds");
    assert_eq!(result.status, TurnStatus::Interrupted, "{result:#?}");
    let t = result.timings;
    assert!(
        t.audio_heard_ms > 0 && t.audio_heard_ms < t.audio_generated_ms,
        "{t:?}"
    );
    assert!(!result.heard_text.is_empty());
    assert!(result.text.starts_with(&result.heard_text), "{result:#?}");
    assert!(result.heard_text.len() < result.text.len(), "{result:#?}");
    assert_eq!(result.responses[0].status, Some(ResponseEnd::Interrupted));
    // The session's history keeps what was heard (the server dropped the transcript of the
    // item it truncated).
    let spoken = session
        .history()
        .iter()
        .filter_map(|item| item.as_message())
        .filter(|m| m.role == realtime_agents::items::Role::Assistant)
        .map(|m| m.text())
        .next_back();
    assert_eq!(spoken.as_deref(), Some(result.heard_text.as_str()));
    assert_eq!(
        session.handle().history().await.unwrap().as_slice(),
        session.history()
    );
}

#[tokio::test]
async fn a_call_waiting_for_approval_keeps_its_turn_open() {
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    let agent = RealtimeAgent::new("Assistant").tool(weather_tool().needs_approval(true));
    let mut session = sim_session(&sim, agent).await;
    session
        .send_message("What's the weather in Paris?")
        .await
        .unwrap();
    let events = until(&mut session, |e| {
        matches!(e, E::ToolApprovalRequired { .. })
    })
    .await;
    let E::ToolApprovalRequired { call_id, .. } = events.last().unwrap().clone() else {
        unreachable!()
    };
    // Nothing ends the turn while the call waits.
    let waiting = tokio::time::timeout(Duration::from_millis(300), async {
        while let Some(e) = session.next().await {
            if matches!(e, E::TurnEnded { .. }) {
                return e;
            }
        }
        panic!("stream ended")
    })
    .await;
    assert!(
        waiting.is_err(),
        "the turn ended while a call awaited approval: {waiting:?}"
    );
    session
        .handle()
        .approve_tool_call(call_id, false)
        .await
        .unwrap();
    let events = until(&mut session, |e| matches!(e, E::TurnEnded { .. })).await;
    let Some(E::TurnEnded { result }) = events.last() else {
        unreachable!()
    };
    assert_eq!(result.status, TurnStatus::Completed);
    assert_eq!(
        result.tool_calls[0].output.as_deref(),
        Some("Sunny and 22 degrees in Paris")
    );
    assert!(result.text.contains("Sunny"), "{result:#?}");
}

#[tokio::test]
async fn the_usage_of_a_cancelled_response_counts_in_its_turn() {
    let server = ScriptedServer::start(support::script::cancellable_response).await;
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(server.model())
        .run(())
        .await
        .unwrap();
    let handle = session.handle();
    let result = session
        .run_turn_with("hi", |e| {
            if matches!(e, E::Audio { .. }) {
                let handle = handle.clone();
                tokio::spawn(async move { handle.interrupt().await });
            }
        })
        .await
        .unwrap();
    assert_eq!(result.status, TurnStatus::Interrupted);
    // `ev::response_done` reports 10 input and 20 output tokens.
    assert_eq!(result.usage.total_tokens, 30, "{result:#?}");
    assert_eq!(result.responses[0].usage.map(|u| u.total_tokens), Some(30));
}

#[tokio::test]
async fn barge_in_starts_the_next_turn_before_the_interrupted_one_ends() {
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "response.create" {
            out.send_all([
                ev::response_created("r1"),
                ev::assistant_item("a1", None, "in_progress"),
                ev::audio_delta("r1", "a1", 20),
                ev::speech_started("u2"),
                ev::response_done("r1", "cancelled"),
                serde_json::json!({"type": "input_audio_buffer.speech_stopped", "event_id": "ev_ss",
                               "audio_end_ms": 900, "item_id": "u2"}),
                ev::response_created("r2"),
                ev::transcript_delta("r2", "a2", "Sure."),
                ev::response_done("r2", "completed"),
            ]);
        }
    })
    .await;
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
        .model(server.model())
        .run(())
        .await
        .unwrap();
    session.send_message("hi").await.unwrap();
    let mut events = until(
        &mut session,
        |e| matches!(e, E::TurnEnded { result } if result.turn_id == 2),
    )
    .await;
    session.close().await;
    events.extend(session.by_ref().collect::<Vec<_>>().await);
    let kinds: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            E::TurnStarted { turn_id, cause } => Some(format!("start {turn_id} {cause:?}")),
            E::TurnEnded { result } => {
                Some(format!("end {} {}", result.turn_id, result.status.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "start 1 Message",
            "start 2 Speech",
            "end 1 interrupted",
            "end 2 completed"
        ],
        "{events:#?}"
    );
    let Some(E::TurnEnded { result }) = events
        .iter()
        .find(|e| matches!(e, E::TurnEnded { result } if result.turn_id == 2))
    else {
        unreachable!()
    };
    assert_eq!(result.text, "Sure.");
    assert!(
        result.timings.first_transcript.is_some(),
        "measured from speech stopped"
    );
}

// ---------------------------------------------------------------------------------------
// The ordering guarantees over random schedules.

/// What the random backend does, drawn per case.
#[derive(Debug, Clone)]
struct Schedule {
    /// Messages the application sends; `true`: one that calls the tool.
    messages: Vec<(bool, u64)>,
    /// Interrupt after the message with this index (if any), after a pause.
    interrupt_after: Option<(usize, u64)>,
    /// Close after this many messages were sent, after a pause.
    close_after: (usize, u64),
    /// Audio chunks per spoken answer, and the pause between them (ms).
    chunks: usize,
    chunk_gap_ms: u64,
    /// How long after its call a tool-calling response ends (ms).
    done_delay_ms: u64,
    /// How long the tool takes (ms).
    tool_ms: u64,
}

fn schedules() -> impl Strategy<Value = Schedule> {
    (
        prop::collection::vec((any::<bool>(), 0u64..15), 1..4),
        prop::option::of((0usize..3, 0u64..10)),
        (0usize..5, 0u64..40),
        1usize..5,
        0u64..4,
        0u64..12,
        0u64..12,
    )
        .prop_map(
            |(
                messages,
                interrupt_after,
                close_after,
                chunks,
                chunk_gap_ms,
                done_delay_ms,
                tool_ms,
            )| {
                Schedule {
                    messages,
                    interrupt_after,
                    close_after,
                    chunks,
                    chunk_gap_ms,
                    done_delay_ms,
                    tool_ms,
                }
            },
        )
}

/// A backend that keeps the contract but takes its time: one response at a time, requests made
/// meanwhile coalesced, cancels honoured between chunks, and a tool-calling response whose end
/// trails its call.
fn random_backend(s: &Schedule) -> TaskModel {
    let (chunks, gap, done_delay) = (s.chunks, s.chunk_gap_ms, s.done_delay_ms);
    TaskModel::new(move |settings, mut commands, events| async move {
        let format = settings.output_format.unwrap_or_default();
        events
            .send(ModelEvent::session_updated(format, false))
            .await?;
        let mut pending = false;
        let mut input = String::new();
        let handle = |command: ModelCommand, pending: &mut bool, input: &mut String| match command {
            ModelCommand::UserMessage { message, respond } => {
                *input = message.plain_text();
                *pending |= respond;
                Some(message)
            }
            ModelCommand::ToolOutput {
                output, respond, ..
            } => {
                *input = output;
                *pending |= respond;
                None
            }
            ModelCommand::CreateResponse => {
                *pending = true;
                None
            }
            _ => None,
        };
        loop {
            if !pending {
                let Some(command) = commands.recv().await else {
                    return Ok(());
                };
                if let Some(message) = handle(command, &mut pending, &mut input) {
                    events.user_message(message).await?;
                }
                continue;
            }
            pending = false;
            let mut response = events.start_response().await?;
            if input.contains("weather") {
                response
                    .function_call("get_weather", r#"{"city":"Paris"}"#)
                    .await?;
                tokio::time::sleep(Duration::from_millis(done_delay)).await;
                response.complete().await?;
                input.clear();
                continue;
            }
            let mut cancelled = false;
            for k in 0..chunks {
                let audio = vec![0u8; format.ms_to_bytes(20)];
                response.speech(&format!("w{k} "), audio).await?;
                tokio::time::sleep(Duration::from_millis(gap)).await;
                while let Some(Some(command)) = commands.recv().now_or_never() {
                    if let ModelCommand::Interrupt {
                        cancel_response: true,
                        ..
                    } = command
                    {
                        cancelled = true;
                    } else if let Some(message) = handle(command, &mut pending, &mut input) {
                        events.user_message(message).await?;
                    }
                }
                if cancelled {
                    break;
                }
            }
            let status = if cancelled {
                ResponseStatus::Cancelled
            } else {
                ResponseStatus::Completed
            };
            response.finish(status, Some(Usage::new(3, 4))).await?;
        }
    })
    .capabilities(
        Capabilities::minimal()
            .response_create(true)
            .response_cancel(true)
            .function_calls(true)
            .audio_output(true),
    )
}

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
});

async fn run_schedule(s: Schedule) -> Vec<E> {
    let tool_ms = s.tool_ms;
    let tool = FunctionTool::new("get_weather", "Weather.", move |a: City| async move {
        tokio::time::sleep(Duration::from_millis(tool_ms)).await;
        Ok::<_, String>(format!("Sunny in {}", a.city))
    });
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant").tool(tool))
        .model(random_backend(&s))
        .config(RealtimeRunConfig::new().event_capacity(8))
        .run(())
        .await
        .expect("session starts");
    let handle = session.handle();
    let reader = tokio::spawn(async move { session.by_ref().collect::<Vec<_>>().await });
    for (i, (tool, pause)) in s.messages.iter().enumerate() {
        if i == s.close_after.0 {
            break;
        }
        let text = if *tool {
            "What's the weather?"
        } else {
            "Tell me something."
        };
        let _ = handle.send_message(text).await;
        tokio::time::sleep(Duration::from_millis(*pause)).await;
        if let Some((after, pause)) = s.interrupt_after {
            if after == i {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let _ = handle.interrupt().await;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(s.close_after.1)).await;
    handle.close().await;
    tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the stream ends")
        .expect("reader")
}

/// The guarantees of the turn contract and of the session's end, on one event sequence.
fn check_contract(events: &[E]) -> Result<(), String> {
    let closed: Vec<usize> = (0..events.len())
        .filter(|i| matches!(events[*i], E::Closed { .. }))
        .collect();
    if closed != [events.len() - 1] {
        return Err("exactly one Closed, last".into());
    }
    let mut open_response: Option<&str> = None;
    let mut ended_responses = HashSet::new();
    let mut started_turns = Vec::new();
    let mut ended_turns = HashSet::new();
    let mut tool_ends = HashSet::new();
    let mut answer_after_tool: HashMap<String, bool> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        match event {
            E::AgentStart { response_id, .. } if open_response.replace(response_id).is_some() => {
                return Err(format!("#{i}: AgentStart inside another response"));
            }
            E::AgentEnd { response_id, .. } => {
                if open_response.take() != Some(response_id.as_str()) {
                    return Err(format!("#{i}: AgentEnd without its AgentStart"));
                }
                ended_responses.insert(response_id.clone());
            }
            E::ToolEnd { call_id, .. } => {
                tool_ends.insert(call_id.clone());
            }
            E::TurnStarted { turn_id, .. } => {
                if *turn_id != started_turns.len() as u64 + 1 {
                    return Err(format!("#{i}: turn ids must count from 1"));
                }
                started_turns.push(*turn_id);
            }
            E::TurnEnded { result } => {
                if !started_turns.contains(&result.turn_id) || !ended_turns.insert(result.turn_id) {
                    return Err(format!(
                        "#{i}: turn {} ended twice or unstarted",
                        result.turn_id
                    ));
                }
                for r in &result.responses {
                    if r.status.is_some() && !ended_responses.contains(&r.response_id) {
                        return Err(format!("#{i}: turn ended before its response's AgentEnd"));
                    }
                }
                let session_ended =
                    matches!(result.status, TurnStatus::Cancelled | TurnStatus::Failed);
                for call in &result.tool_calls {
                    if call.output.is_some() && !tool_ends.contains(&call.call_id) {
                        return Err(format!("#{i}: turn ended before its ToolEnd"));
                    }
                    if call.output.is_none() && !session_ended {
                        return Err(format!("#{i}: turn ended with a call unanswered"));
                    }
                }
                if result.status == TurnStatus::Completed && !result.tool_calls.is_empty() {
                    // The answer to the tool output is part of the turn.
                    answer_after_tool
                        .insert(result.turn_id.to_string(), result.responses.len() >= 2);
                }
            }
            _ => {}
        }
    }
    if open_response.is_some() {
        return Err("AgentStart without AgentEnd".into());
    }
    if ended_turns.len() != started_turns.len() {
        return Err("a turn never ended".into());
    }
    if let Some((turn, _)) = answer_after_tool.iter().find(|(_, ok)| !**ok) {
        return Err(format!(
            "turn {turn} completed without answering its tool output"
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn turns_end_once_after_all_their_work_on_any_schedule(s in schedules()) {
        let events = RT.block_on(run_schedule(s));
        if let Err(violation) = check_contract(&events) {
            return Err(TestCaseError::fail(format!("{violation}\n{events:#?}")));
        }
    }
}
