//! End-to-end session behaviour over real loopback WebSockets.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use realtime_agents::audio::AudioFormat;
use realtime_agents::items::RealtimeItem;
use realtime_agents::model::SessionSettings;
use realtime_agents::{
    Error, FunctionTool, Handoff, PlaybackTracker, RealtimeAgent, RealtimeRunConfig,
    RealtimeRunner, RealtimeSessionEvent as E, ResponseEnd, TurnCause, TurnStatus,
};
use serde_json::json;
use support::script::{City, spoken_response, start, tool_script, weather_tool};
use support::{Responder, ScriptedServer, assistant_text, ev, until, until_end};

/// A tracker whose playback position the test sets (`u64::MAX` = unknown).
#[derive(Default)]
struct FixedTracker(AtomicU64);

impl FixedTracker {
    fn new(ms: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(ms)))
    }
}

impl PlaybackTracker for FixedTracker {
    fn on_audio_delivered(&self, _: &str, _: u32, _: usize, _: AudioFormat) {}
    fn played_ms(&self, _: &str, _: u32) -> Option<u64> {
        match self.0.load(Ordering::SeqCst) {
            u64::MAX => None,
            ms => Some(ms),
        }
    }
    fn on_interrupted(&self) {}
}

#[tokio::test]
async fn session_update_has_the_ga_shape() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let billing = RealtimeAgent::new("Billing Agent").instructions("Help with invoices.");
    let agent = RealtimeAgent::new("Assistant")
        .instructions("Be brief.")
        .tool(weather_tool())
        .handoff(billing);
    let config = RealtimeRunConfig::new().settings(
        SessionSettings::new()
            .voice("marin")
            .input_format(AudioFormat::G711_ULAW)
            .output_format(AudioFormat::G711_ULAW),
    );
    let _session = start(&server, agent, config).await;
    let update = server.wait_for("session.update", 1).await.remove(0);
    let s = &update["session"];
    assert_eq!(s["type"], "realtime");
    assert_eq!(s["model"], "gpt-realtime");
    assert_eq!(s["output_modalities"], json!(["audio"]));
    assert_eq!(s["instructions"], "Be brief.");
    assert_eq!(s["audio"]["input"]["format"], json!({"type": "audio/pcmu"}));
    assert_eq!(
        s["audio"]["output"]["format"],
        json!({"type": "audio/pcmu"})
    );
    assert_eq!(s["audio"]["output"]["voice"], "marin");
    assert_eq!(
        s["audio"]["input"]["transcription"]["model"],
        "gpt-4o-mini-transcribe"
    );
    assert_eq!(
        s["audio"]["input"]["turn_detection"]["type"],
        "semantic_vad"
    );
    assert!(
        s.get("modalities").is_none() && s.get("input_audio_format").is_none(),
        "no beta fields: {s}"
    );
    let tools = s["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["type"], "function");
    assert_eq!(tools[0]["name"], "get_weather");
    assert_eq!(tools[0]["parameters"]["required"], json!(["city"]));
    assert_eq!(tools[0]["parameters"]["additionalProperties"], false);
    assert_eq!(tools[1]["name"], "transfer_to_billing_agent");
}

#[tokio::test]
async fn text_turn_streams_transcript_audio_usage_and_history() {
    let server = ScriptedServer::start(|e, out| match e["type"].as_str() {
        Some("conversation.item.create") => out.send(ev::user_text_item("u1", None, "Hello!")),
        Some("response.create") => {
            out.send(ev::response_created("r1"));
            out.send(ev::assistant_item("a1", Some("u1"), "in_progress"));
            for w in ["Hi ", "there!"] {
                out.send_all([
                    ev::transcript_delta("r1", "a1", w),
                    ev::audio_delta("r1", "a1", 20),
                ]);
            }
            out.send_all([
                ev::audio_done("r1", "a1"),
                ev::response_done("r1", "completed"),
            ]);
        }
        _ => {}
    })
    .await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("Hello!").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;

    let create = server
        .wait_for("conversation.item.create", 1)
        .await
        .remove(0);
    assert_eq!(
        create["item"],
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello!"}]})
    );
    assert_eq!(
        server.types(),
        [
            "session.update",
            "conversation.item.create",
            "response.create"
        ]
    );

    assert_eq!(assistant_text(&events), "Hi there!");
    let audio: usize = events
        .iter()
        .map(|e| {
            if let E::Audio { data, .. } = e {
                data.len()
            } else {
                0
            }
        })
        .sum();
    assert_eq!(audio, 2 * 960, "two 20 ms PCM chunks");
    assert!(
        matches!(
            events.as_slice(),
            [
                E::TurnStarted {
                    turn_id: 1,
                    cause: TurnCause::Message
                },
                E::HistoryAdded { .. },
                ..
            ]
        ),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::AgentStart { agent, .. } if agent == "Assistant"))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::AudioEnd { item_id, .. } if item_id == "a1"))
    );
    assert!(events.iter().any(|e| matches!(e, E::Usage { response, total } if response.total_tokens == 30 && total.requests == 1)));

    let history = session.history();
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[0].as_message().map(|m| m.text()).as_deref(),
        Some("Hello!")
    );
    assert_eq!(
        history[1].as_message().map(|m| m.text()).as_deref(),
        Some("Hi there!")
    );
    assert_eq!(session.handle().history().await.unwrap(), history);
}

/// Answers the first `response.create` with a call to `name(args)` and later ones with speech.
#[tokio::test]
async fn tool_round_trip_sends_output_then_one_response_create() {
    let server = ScriptedServer::start(tool_script(vec![(
        "call_1",
        "get_weather",
        r#"{"city":"Paris"}"#,
    )]))
    .await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(weather_tool()),
        RealtimeRunConfig::new(),
    )
    .await;
    session
        .send_message("What's the weather in Paris?")
        .await
        .unwrap();
    let events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "Done."),
    )
    .await;

    let start = events.iter().position(|e| matches!(e, E::ToolStart { tool, arguments, .. } if tool == "get_weather" && arguments.contains("Paris")));
    let end = events.iter().position(|e| matches!(e, E::ToolEnd { output, is_error: false, .. } if output == "Sunny, 22 degrees in Paris"));
    assert!(
        start.is_some() && end.is_some() && start < end,
        "{events:#?}"
    );
    let outputs: Vec<_> = server
        .received_of("conversation.item.create")
        .into_iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .collect();
    assert_eq!(outputs.len(), 1);
    assert_eq!(
        outputs[0]["item"],
        json!({"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 22 degrees in Paris"})
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
    let call = session
        .history()
        .iter()
        .find_map(RealtimeItem::as_tool_call)
        .cloned()
        .expect("tool call in history");
    assert_eq!(call.output.as_deref(), Some("Sunny, 22 degrees in Paris"));
}

#[tokio::test]
async fn two_tool_calls_run_concurrently_and_share_one_response_create() {
    let server = ScriptedServer::start(tool_script(vec![
        ("call_a", "rendezvous", r#"{"city":"Paris"}"#),
        ("call_b", "rendezvous", r#"{"city":"Rome"}"#),
    ]))
    .await;
    // Each call waits for the other: this only finishes if both run at the same time.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let tool = FunctionTool::new("rendezvous", "Meets the other call.", move |a: City| {
        let barrier = barrier.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(3), barrier.wait())
                .await
                .map_err(|_| "ran alone")?;
            Ok::<_, &str>(a.city)
        }
    });
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(tool),
        RealtimeRunConfig::new(),
    )
    .await;
    session
        .send_message("Compare Paris and Rome")
        .await
        .unwrap();
    let events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "Done."),
    )
    .await;
    let ends: Vec<_> = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                E::ToolEnd {
                    is_error: false,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(ends.len(), 2, "{events:#?}");
    assert_eq!(
        server.types(),
        [
            "session.update",
            "conversation.item.create",
            "response.create",
            "conversation.item.create",
            "conversation.item.create",
            "response.create"
        ]
    );
}

#[tokio::test]
async fn unknown_tool_and_panicking_tool_report_errors_and_the_session_goes_on() {
    let server = ScriptedServer::start(tool_script(vec![
        ("call_x", "does_not_exist", "{}"),
        ("call_p", "explode", r#"{"city":"Oslo"}"#),
    ]))
    .await;
    let explode = FunctionTool::new("explode", "Panics.", |_: City| async move {
        if true {
            panic!("tool bug");
        }
        Ok::<_, String>(())
    });
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant").tool(explode),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("go").await.unwrap();
    let events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "Done."),
    )
    .await;

    let outputs: Vec<_> = server
        .received_of("conversation.item.create")
        .into_iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .map(|e| {
            (
                e["item"]["call_id"].as_str().unwrap().to_owned(),
                e["item"]["output"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        outputs.contains(&(
            "call_x".into(),
            "Error: tool `does_not_exist` does not exist".into()
        )),
        "{outputs:?}"
    );
    assert!(
        outputs.contains(&("call_p".into(), "Error: the tool panicked".into())),
        "{outputs:?}"
    );
    let tool_errors: Vec<_> = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                E::Error {
                    error: Error::Tool { .. }
                }
            )
        })
        .collect();
    assert_eq!(tool_errors.len(), 2, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::ToolEnd { tool, is_error: true, .. } if tool == "explode"))
    );
    assert_eq!(
        server.received_of("response.create").len(),
        2,
        "one create for the batch after the errors"
    );
}

/// A response that streams `ms` of audio and stays active until cancelled.
fn long_response_script(ms: usize) -> impl Fn(&serde_json::Value, &Responder) {
    move |e, out| match e["type"].as_str() {
        Some("response.create") => {
            out.send_all([
                ev::response_created("r1"),
                ev::assistant_item("a1", None, "in_progress"),
                ev::audio_delta("r1", "a1", ms),
            ]);
        }
        Some("response.cancel") => out.send(ev::response_done("r1", "cancelled")),
        _ => {}
    }
}

async fn interrupted(tracker_ms: u64) -> (ScriptedServer, Vec<E>) {
    let server = ScriptedServer::start(long_response_script(1000)).await;
    let config = RealtimeRunConfig::new().playback_tracker(FixedTracker::new(tracker_ms));
    let mut session = start(&server, RealtimeAgent::new("Assistant"), config).await;
    session.send_message("Tell me a story").await.unwrap();
    until(&mut session, |e| matches!(e, E::Audio { .. })).await;
    session.interrupt().await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    // A marker: everything the interrupt sent arrives before this message.
    session.send_message("next").await.unwrap();
    server.wait_for("conversation.item.create", 2).await;
    (server, events)
}

#[tokio::test]
async fn interrupt_cancels_and_truncates_at_the_played_position() {
    let (server, events) = interrupted(400).await;
    let cancel = server.wait_for("response.cancel", 1).await.remove(0);
    assert_eq!(cancel["response_id"], "r1");
    let truncate = server
        .wait_for("conversation.item.truncate", 1)
        .await
        .remove(0);
    assert_eq!(
        (
            truncate["item_id"].as_str(),
            truncate["content_index"].as_u64(),
            truncate["audio_end_ms"].as_u64()
        ),
        (Some("a1"), Some(0), Some(400))
    );
    assert!(
        events.iter().any(
            |e| matches!(e, E::AudioInterrupted { item_id, played_ms: 400, .. } if item_id == "a1")
        ),
        "{events:#?}"
    );
}

#[tokio::test]
async fn truncation_is_clamped_to_the_audio_received() {
    let (server, _) = interrupted(5_000).await;
    let truncate = server
        .wait_for("conversation.item.truncate", 1)
        .await
        .remove(0);
    assert_eq!(truncate["audio_end_ms"], 1000);
}

#[tokio::test]
async fn nothing_played_means_cancel_but_no_truncate_at_zero() {
    let (server, events) = interrupted(u64::MAX).await;
    assert_eq!(server.received_of("response.cancel").len(), 1);
    assert!(
        server.received_of("conversation.item.truncate").is_empty(),
        "{:?}",
        server.types()
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::AudioInterrupted { played_ms: 0, .. }))
    );
}

#[tokio::test]
async fn interrupt_after_playback_finished_cuts_nothing() {
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "response.create" && e.get("event_id").is_some() {
            spoken_response(out, "r1", "a1", &["Short."]);
        }
    })
    .await;
    let tracker = FixedTracker::new(60_000);
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new().playback_tracker(tracker),
    )
    .await;
    session.send_message("hi").await.unwrap();
    until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    session.interrupt().await.unwrap();
    session
        .handle()
        .send_raw(json!({"type": "input_audio_buffer.clear"}))
        .await
        .unwrap();
    server.wait_for("input_audio_buffer.clear", 1).await;
    assert!(
        server.received_of("conversation.item.truncate").is_empty(),
        "{:?}",
        server.types()
    );
    assert!(
        server.received_of("response.cancel").is_empty(),
        "{:?}",
        server.types()
    );
    session.close().await;
    let rest: Vec<E> = session.collect().await;
    assert!(
        !rest.iter().any(|e| matches!(e, E::AudioInterrupted { .. })),
        "{rest:#?}"
    );
}

#[tokio::test]
async fn server_vad_barge_in_truncates_without_cancelling() {
    let server = ScriptedServer::start(long_response_script(1000)).await;
    let config = RealtimeRunConfig::new().playback_tracker(FixedTracker::new(250));
    let mut session = start(&server, RealtimeAgent::new("Assistant"), config).await;
    session.send_message("Tell me a story").await.unwrap();
    until(&mut session, |e| matches!(e, E::Audio { .. })).await;
    // The user starts talking; the server (interrupt_response: true) cancels by itself.
    server.send(ev::speech_started("u2"));
    server.send(ev::response_done("r1", "cancelled"));
    let events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    let truncate = server
        .wait_for("conversation.item.truncate", 1)
        .await
        .remove(0);
    assert_eq!(truncate["audio_end_ms"], 250);
    assert!(server.received_of("response.cancel").is_empty());
    let started = events
        .iter()
        .position(|e| matches!(e, E::InputSpeechStarted { .. }));
    let interrupted = events
        .iter()
        .position(|e| matches!(e, E::AudioInterrupted { played_ms: 250, .. }));
    assert!(started.is_some() && started < interrupted, "{events:#?}");
}

#[tokio::test]
async fn late_audio_of_an_interrupted_response_is_dropped() {
    // The server keeps streaming after the cancel until it gets to its `response.done`.
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "response.create" {
            out.send_all([
                ev::response_created("r1"),
                ev::assistant_item("a1", None, "in_progress"),
                ev::audio_delta("r1", "a1", 100),
            ]);
        }
    })
    .await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new().playback_tracker(FixedTracker::new(50)),
    )
    .await;
    session.send_message("story").await.unwrap();
    until(&mut session, |e| matches!(e, E::Audio { .. })).await;
    session.interrupt().await.unwrap();
    server.wait_for("response.cancel", 1).await;
    // Deltas already in flight when the cancel was sent, then the cancelled response ends.
    server.send(ev::audio_delta("r1", "a1", 20));
    server.send(ev::audio_delta("r1", "a1", 20));
    server.send(ev::response_done("r1", "cancelled"));
    let events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    assert!(
        !events.iter().any(|e| matches!(e, E::Audio { .. })),
        "{events:#?}"
    );
}

#[tokio::test]
async fn no_response_create_while_a_response_is_active() {
    let creates = Arc::new(AtomicUsize::new(0));
    let server = ScriptedServer::start({
        let creates = creates.clone();
        move |e, out| {
            if e["type"] == "response.create" {
                let n = creates.fetch_add(1, Ordering::SeqCst) + 1;
                out.send(ev::response_created(&format!("r{n}")));
                if n > 1 {
                    out.send(ev::response_done(&format!("r{n}"), "completed"));
                }
            }
        }
    })
    .await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("one").await.unwrap();
    until(&mut session, |e| matches!(e, E::AgentStart { .. })).await;
    session.send_message("two").await.unwrap();
    session.send_message("three").await.unwrap();
    server.wait_for("conversation.item.create", 3).await;
    assert_eq!(
        server.received_of("response.create").len(),
        1,
        "{:?}",
        server.types()
    );
    server.send(ev::response_done("r1", "completed"));
    until(
        &mut session,
        |e| matches!(e, E::AgentEnd { agent, .. } if agent == "Assistant"),
    )
    .await;
    server.wait_for("response.create", 2).await;
    until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    session.send_message("four").await.unwrap();
    server.wait_for("response.create", 3).await;
    until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    assert_eq!(
        server.received_of("response.create").len(),
        3,
        "two and three coalesced: {:?}",
        server.types()
    );
}

#[tokio::test]
async fn a_create_that_races_a_server_response_is_retried_after_it() {
    let creates = Arc::new(AtomicUsize::new(0));
    let server = ScriptedServer::start({
        let creates = creates.clone();
        move |e, out| {
            if let Some(echo) = ev::echo_user_message(e, "u1") {
                out.send(echo);
            }
            if e["type"] == "response.create" {
                if creates.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Voice activity already started a response on the server.
                    out.send(ev::response_created("vad"));
                    out.send(ev::error(
                        "conversation_already_has_active_response",
                        "busy",
                        e["event_id"].as_str(),
                    ));
                    out.send(ev::response_done("vad", "completed"));
                } else {
                    spoken_response(out, "r2", "a2", &["Retried."]);
                }
            }
        }
    })
    .await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("hi").await.unwrap();
    let events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "Retried."),
    )
    .await;
    assert!(
        !events.iter().any(|e| matches!(e, E::Error { .. })),
        "the race is handled, not reported: {events:#?}"
    );
    assert_eq!(server.received_of("response.create").len(), 2);
}

#[tokio::test]
async fn malformed_and_unknown_server_events_are_reported_and_the_session_goes_on() {
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "response.create" {
            spoken_response(out, "r1", "a1", &["Still here."]);
        }
    })
    .await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new().raw_events(true),
    )
    .await;
    let out = server.responder();
    out.raw("{this is not json");
    out.raw(r#"{"type":"response.output_audio.delta","response_id":"r0"}"#);
    out.raw(r#"{"type":"brand_new.event","payload":{"x":1}}"#);
    let events = until(
        &mut session,
        |e| matches!(e, E::Raw(raw) if raw.as_str().contains("brand_new.event")),
    )
    .await;
    let errors: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            E::Error {
                error: Error::Protocol(m),
            } => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 2, "{events:#?}");
    assert!(
        errors[1].contains("response.output_audio.delta"),
        "{errors:?}"
    );
    session.send_message("still there?").await.unwrap();
    until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "Still here."),
    )
    .await;
}

#[tokio::test]
async fn server_close_mid_response_ends_the_stream_with_an_error() {
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "response.create" {
            out.send_all([
                ev::response_created("r1"),
                ev::assistant_item("a1", None, "in_progress"),
                ev::audio_delta("r1", "a1", 20),
            ]);
            out.close(1011, "internal server error");
        }
    })
    .await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("hi").await.unwrap();
    let events = until_end(&mut session).await;
    let n = events.len();
    // The response that was cut off ends, then the session, with the server's reason, once.
    assert!(
        matches!(&events[n - 3], E::AgentEnd { response_id, status: ResponseEnd::ConnectionLost, .. } if response_id == "r1"),
        "{events:#?}"
    );
    assert!(
        matches!(&events[n - 2], E::TurnEnded { result } if result.status == TurnStatus::Failed),
        "{events:#?}"
    );
    assert!(
        matches!(&events[n - 1], E::Closed { error: Some(Error::Closed { code: Some(1011), reason }) } if reason == "internal server error"),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, E::Error { .. })),
        "{events:#?}"
    );
    assert!(session.send_message("anyone?").await.is_err());
}

#[tokio::test]
async fn dropped_socket_ends_the_stream_with_an_error() {
    let server = ScriptedServer::start(|e, out| {
        if e["type"] == "response.create" {
            out.send(ev::response_created("r1"));
            out.drop_connection();
        }
    })
    .await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    session.send_message("hi").await.unwrap();
    let events = until_end(&mut session).await;
    assert!(
        matches!(
            events.last(),
            Some(E::Closed {
                error: Some(Error::Closed { code: None, .. })
            })
        ),
        "{events:#?}"
    );
}

#[tokio::test]
async fn history_follows_previous_item_id_and_merges_transcripts() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let mut session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    let out = server.responder();
    out.send(ev::user_text_item("a", None, "first"));
    out.send(ev::user_text_item("c", Some("a"), "third"));
    out.send(ev::user_text_item("b", Some("a"), "second"));
    out.send(ev::assistant_item("d", Some("c"), "in_progress"));
    out.send_all([
        ev::transcript_delta("r1", "d", "four"),
        ev::transcript_delta("r1", "d", "th"),
    ]);
    // `.done` without a transcript keeps the one already known.
    let mut done = ev::assistant_item("d", Some("c"), "completed");
    done["type"] = json!("conversation.item.done");
    out.send(done);
    out.send(json!({"type": "conversation.item.deleted", "event_id": "x", "item_id": "c"}));
    until(&mut session, |e| matches!(e, E::HistoryDeleted { .. })).await;
    let history = session.history();
    let texts: Vec<String> = history
        .iter()
        .filter_map(|i| i.as_message().map(|m| m.text()))
        .collect();
    assert_eq!(texts, ["first", "second", "fourth"]);
    assert_eq!(session.handle().history().await.unwrap(), history);
}

#[tokio::test]
async fn handoff_updates_the_session_then_answers_and_responds_once() {
    let server = ScriptedServer::start(tool_script(vec![(
        "call_h",
        "transfer_to_billing_agent",
        "{}",
    )]))
    .await;
    let billing = RealtimeAgent::new("Billing Agent").instructions("You handle invoices.");
    let agent = RealtimeAgent::new("Triage")
        .instructions("Route calls.")
        .handoff(Handoff::new(billing));
    let config = RealtimeRunConfig::new().settings(
        SessionSettings::new()
            .voice("marin")
            .output_format(AudioFormat::G711_ULAW),
    );
    let mut session = start(&server, agent, config).await;
    session
        .send_message("I have a billing question")
        .await
        .unwrap();
    let events = until(
        &mut session,
        |e| matches!(e, E::TranscriptDelta { delta, .. } if delta == "Done."),
    )
    .await;
    assert!(events.iter().any(
        |e| matches!(e, E::Handoff { from, to } if from == "Triage" && to == "Billing Agent")
    ));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::AgentStart { agent, .. } if agent == "Billing Agent"))
    );
    assert_eq!(
        server.types(),
        [
            "session.update",
            "conversation.item.create",
            "response.create",
            "session.update",
            "conversation.item.create",
            "response.create"
        ]
    );
    let update = server.received_of("session.update").remove(1);
    assert_eq!(update["session"]["instructions"], "You handle invoices.");
    assert_eq!(
        update["session"]["audio"]["output"]["format"],
        json!({"type": "audio/pcmu"}),
        "format survives the handoff"
    );
    assert_eq!(update["session"]["audio"]["output"]["voice"], "marin");
    let output = server.received_of("conversation.item.create").remove(1);
    assert_eq!(output["item"]["output"], r#"{"assistant":"Billing Agent"}"#);
}

#[tokio::test]
async fn refused_upgrade_reports_the_http_status_and_never_the_key() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let body = r#"{"error":{"message":"Incorrect API key provided"}}"#;
        let reply = format!(
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
    });
    let model = realtime_agents::model::OpenAIRealtimeWebSocketModel::builder()
        .url(url)
        .api_key("sk-live-very-secret")
        .build();
    let err = RealtimeRunner::new(RealtimeAgent::new("A"))
        .model(model)
        .run(())
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, Error::Connect { status: Some(401), message, .. } if message.contains("Incorrect API key")),
        "{err:?}"
    );
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("sk-live-very-secret"), "{shown}");
    }
}

#[tokio::test]
async fn dropping_the_session_ends_its_task_and_closes_the_socket() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let session = start(
        &server,
        RealtimeAgent::new("Assistant"),
        RealtimeRunConfig::new(),
    )
    .await;
    let handle = session.handle();
    server.wait_for("session.update", 1).await;
    drop(session);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !handle.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the session task ends when the session is dropped");
    assert!(handle.send_message("hello?").await.is_err());
}

#[tokio::test]
async fn wss_connect_uses_a_chosen_crypto_provider_and_fails_cleanly() {
    // A TCP server that is not TLS: the handshake fails, and the client must report it
    // (no "no process-level CryptoProvider" panic).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://{}/v1/realtime", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let model = realtime_agents::model::OpenAIRealtimeWebSocketModel::builder()
        .url(url)
        .api_key("sk-x")
        .build();
    let err = RealtimeRunner::new(RealtimeAgent::new("A"))
        .model(model)
        .run(())
        .await
        .expect_err("no TLS server");
    assert!(
        matches!(err, Error::Connect { status: None, .. }),
        "{err:?}"
    );
}
