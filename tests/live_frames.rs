//! Every kind of client event the Live backend sends, produced by real sessions against the
//! simulator's Live mode (which records them). With `LIVE_FRAMES_OUT=<file>`, they are written
//! there as JSON lines, for the Python interop check to validate against the official
//! `openai.types.live.ClientEvent` in strict mode (`tests/python_interop/live_interop.py`).

use std::time::Duration;

use futures::StreamExt as _;
use realtime_agents::items::{RealtimeItem, Role};
use realtime_agents::model::SessionSettings;
use realtime_agents::model::live::{self, LiveDelegation, LiveModel};
use realtime_agents::simulator::{Simulator, speech};
use realtime_agents::{
    FunctionTool, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSession,
    RealtimeSessionEvent as E,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, JsonSchema)]
struct City {
    city: String,
}

#[derive(Deserialize, JsonSchema)]
struct Task {
    task: String,
}

async fn until(session: &mut RealtimeSession, mut pred: impl FnMut(&E) -> bool) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = session.next().await {
            assert!(!matches!(event, E::Error { .. }), "{event:?}");
            let done = pred(&event);
            if !matches!(event, E::Audio { .. }) {
                seen.push(event);
            }
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(found == Ok(true), "{seen:#?}");
}

async fn speak(session: &RealtimeSession, text: &str) {
    let mut samples = speech::encode_text(text);
    samples.extend(std::iter::repeat_n(0i16, 24_000));
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    for chunk in bytes.chunks(960) {
        session.send_audio(chunk.to_vec(), false).await.unwrap();
    }
}

fn said(e: &E, text: &str) -> bool {
    matches!(e, E::TranscriptDelta { role: Role::Assistant, delta, .. } if delta.contains(text))
}

/// A Responses-delegation session: seeded history, typed text, a spoken tool turn, the raw
/// helpers, an agent switch, an interrupt, close.
async fn responses_session(sim: &Simulator) {
    let model = LiveModel::builder()
        .url(sim.live_url())
        .delegation(LiveDelegation::responses("gpt-5.4-mini").with_instructions("Be exact."))
        .voice("cedar")
        .build();
    let weather = FunctionTool::new("get_weather", "Weather in a city.", |a: City| async move {
        Ok::<_, String>(format!("Sunny in {}", a.city))
    });
    let agent = RealtimeAgent::new("Assistant")
        .instructions("Be brief.")
        .tool(weather);
    let config = RealtimeRunConfig::new()
        .settings(SessionSettings::new().extra("store", serde_json::json!(false)))
        .history(vec![
            RealtimeItem::text(Role::User, "My name is Ada."),
            RealtimeItem::text(Role::Assistant, "Hello Ada."),
            RealtimeItem::text(Role::System, "The user is on the premium plan."),
        ]);
    let mut session = RealtimeRunner::new(agent)
        .model(model)
        .config(config)
        .run(())
        .await
        .unwrap();
    session.send_message("Hello!").await.unwrap();
    until(&mut session, |e| matches!(e, E::AgentEnd { .. })).await;
    speak(&session, "What's the weather in Paris?").await;
    until(&mut session, |e| said(e, "Paris.")).await;
    let handle = session.handle();
    for event in [
        live::mute(),
        live::unmute(),
        live::thinking("The user sounds busy."),
        live::instructions("Keep answers under 20 words."),
    ] {
        handle.send_raw(event).await.unwrap();
    }
    let other = RealtimeAgent::new("Other")
        .instructions("Always answer: Bonjour.")
        .tool(FunctionTool::new(
            "book_table",
            "Book a table.",
            |_: Task| async move { Ok::<_, String>("Booked".to_owned()) },
        ));
    handle.update_agent(other).await.unwrap();
    handle.interrupt().await.unwrap();
    handle.send_message("Are you there?").await.unwrap();
    until(&mut session, |e| said(e, "Bonjour.")).await;
    session.close().await;
    while session.next().await.is_some() {}
}

/// A client-delegation session: the delegation is answered with commentary.
async fn client_session(sim: &Simulator) {
    let model = LiveModel::builder()
        .url(sim.live_url())
        .delegation(LiveDelegation::client("get_weather"))
        .build();
    let tool = FunctionTool::new("get_weather", "Weather questions.", |t: Task| async move {
        Ok::<_, String>(format!("Sunny, for: {}", t.task))
    });
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant").tool(tool))
        .model(model)
        .run(())
        .await
        .unwrap();
    session
        .send_message("What's the weather in Paris?")
        .await
        .unwrap();
    until(&mut session, |e| said(e, "Paris?.")).await;
    session.close().await;
    while session.next().await.is_some() {}
}

#[tokio::test]
async fn every_client_event_kind_the_backend_sends() {
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    responses_session(&sim).await;
    client_session(&sim).await;
    let events = sim.client_events();
    let mut kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "response.create",
            "response.item.create",
            "session.close",
            "session.commentary.append",
            "session.input_audio.append",
            "session.input_audio.mute",
            "session.input_audio.unmute",
            "session.instructions.append",
            "session.start",
            "session.thinking.append",
            "session.update",
        ]
    );
    let start = &events[0]["session"];
    assert_eq!(start["input"].as_array().map(Vec::len), Some(3));
    assert_eq!(start["input"][2]["role"], "developer");
    assert_eq!(start["audio"]["output"]["voice"], "cedar");
    assert_eq!(start["store"], false);
    if let Ok(path) = std::env::var("LIVE_FRAMES_OUT") {
        let lines: Vec<String> = events.iter().map(Value::to_string).collect();
        std::fs::write(&path, lines.join("\n") + "\n").expect("write the frames");
        println!("{} client events written to {path}", events.len());
    }
}
