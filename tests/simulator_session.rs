//! Sessions against the built-in simulator: real audio turns with server VAD, manual turns,
//! interruption, all over loopback WebSockets.

mod support;

use std::time::Duration;

use realtime_agents::items::Role;
use realtime_agents::model::{OpenAIRealtimeWebSocketModel, SessionSettings};
use realtime_agents::protocol::TurnDetection;
use realtime_agents::simulator::{Simulator, speech};
use realtime_agents::{
    FunctionTool, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSession,
    RealtimeSessionEvent as E,
};
use schemars::JsonSchema;
use serde::Deserialize;
use support::{assistant_text, until};

#[derive(Deserialize, JsonSchema)]
struct City {
    city: String,
}

async fn session(sim: &Simulator, settings: SessionSettings) -> RealtimeSession {
    let agent = RealtimeAgent::new("Assistant").tool(FunctionTool::new(
        "get_weather",
        "Weather in a city.",
        |a: City| async move { Ok::<_, String>(format!("Sunny in {}", a.city)) },
    ));
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(sim.url())
        .build();
    RealtimeRunner::new(agent)
        .model(model)
        .config(RealtimeRunConfig::new().settings(settings))
        .run(())
        .await
        .expect("connects")
}

fn pcm(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Streams `samples` in 20 ms chunks, as a microphone would.
async fn speak(session: &RealtimeSession, samples: &[i16]) {
    for chunk in pcm(samples).chunks(960) {
        session.send_audio(chunk.to_vec(), false).await.unwrap();
    }
}

#[tokio::test]
async fn audio_turn_with_server_vad_calls_the_tool_and_answers() {
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    let mut session = session(
        &sim,
        SessionSettings::new().turn_detection(Some(TurnDetection::server_vad())),
    )
    .await;
    let mut audio = speech::encode_text("What's the weather in Paris?");
    audio.extend(std::iter::repeat_n(0i16, 24_000)); // a second of silence ends the turn
    speak(&session, &audio).await;

    let events = until(&mut session, |e| matches!(e, E::TranscriptDelta { role: Role::Assistant, delta, .. } if delta.contains("Paris"))).await;
    let pos = |f: &dyn Fn(&E) -> bool| events.iter().position(f);
    let started = pos(&|e| matches!(e, E::InputSpeechStarted { .. }));
    let stopped = pos(&|e| matches!(e, E::InputSpeechStopped { .. }));
    let heard = pos(
        &|e| matches!(e, E::UserTranscript { transcript, .. } if transcript == "What's the weather in Paris?"),
    );
    let tool = pos(&|e| matches!(e, E::ToolEnd { output, .. } if output == "Sunny in Paris"));
    assert!(
        started.is_some() && started < stopped && stopped < heard && tool.is_some(),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, E::Error { .. })),
        "{events:#?}"
    );

    // The server made the first response itself (VAD); the client asked exactly once, after the tool output.
    let sent: Vec<String> = sim
        .client_events()
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .filter(|t| t != "input_audio_buffer.append")
        .collect();
    assert_eq!(
        sent,
        [
            "session.update",
            "conversation.item.create",
            "response.create"
        ],
        "{sent:?}"
    );
    let user = session
        .history()
        .iter()
        .find_map(|i| i.as_message().filter(|m| m.role == Role::User).cloned())
        .unwrap();
    assert_eq!(user.text(), "What's the weather in Paris?");
}

#[tokio::test]
async fn manual_turn_commits_audio_and_asks_for_a_response() {
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    let mut session = session(&sim, SessionSettings::new().turn_detection(None)).await;
    speak(&session, &speech::encode_text("hello there")).await;
    session.send_audio(Vec::new(), true).await.unwrap();
    session.handle().create_response().await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    assert!(assistant_text(&events).starts_with("Hello!"), "{events:#?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, E::Error { .. } | E::InputSpeechStarted { .. })),
        "{events:#?}"
    );
}

#[tokio::test]
async fn interrupting_a_story_is_accepted_by_the_server() {
    let sim = Simulator::builder().speed(4.0).start().await.unwrap();
    let mut session = session(&sim, SessionSettings::new()).await;
    session.send_message("Tell me a long story.").await.unwrap();
    let mut audio = 0usize;
    let events = until(&mut session, |e| {
        if let E::Audio { data, .. } = e {
            audio += data.len();
        }
        audio >= 48_000 / 2
    })
    .await;
    drop(events);
    tokio::time::sleep(Duration::from_millis(200)).await;
    session.interrupt().await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, E::AudioInterrupted { played_ms, .. } if *played_ms >= 200)),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, E::Error { .. })),
        "truncate and cancel were valid: {events:#?}"
    );
    let truncate = sim
        .client_events()
        .into_iter()
        .find(|e| e["type"] == "conversation.item.truncate")
        .expect("truncated");
    assert!(
        truncate["audio_end_ms"]
            .as_u64()
            .is_some_and(|ms| ms >= 200)
    );
    // The conversation goes on.
    session.send_message("Hello!").await.unwrap();
    let events = until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    assert!(assistant_text(&events).starts_with("Hello!"), "{events:#?}");
}
