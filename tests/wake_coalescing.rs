//! Wake-up coalescing (`RealtimeRunConfig::wake_coalescing`) over loopback WebSockets: what
//! arrives while the session task sleeps waits for the end of the window, and a whole
//! conversation comes out the same as without it.

mod support;

use std::time::{Duration, Instant};

use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::Simulator;
use realtime_agents::{
    RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSessionEvent as E, TurnResult,
    TurnStatus,
};
use support::script::{start, weather_tool, weather_turn};
use support::{ScriptedServer, ev, until};

const WINDOW: Duration = Duration::from_millis(300);

fn is_error(message: &'static str) -> impl FnMut(&E) -> bool {
    move |e| matches!(e, E::Error { error } if error.to_string().contains(message))
}

#[tokio::test]
async fn what_arrives_during_the_sleep_waits_for_the_end_of_the_window() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let config = RealtimeRunConfig::new().wake_coalescing(WINDOW);
    let mut session = start(&server, RealtimeAgent::new("Assistant"), config).await;
    let handle = session.handle();
    // Let the start-up passes (and their sleeps) go by: the task is waiting.
    tokio::time::sleep(WINDOW * 2).await;

    server.send(ev::error("first", "first", None));
    until(&mut session, is_error("first")).await;
    let first = Instant::now();
    // The pass that delivered `first` is followed by a sleep: this event and this command wait.
    server.send(ev::error("second", "second", None));
    handle.send_message("Hello").await.unwrap();
    until(&mut session, is_error("second")).await;
    let event_gap = first.elapsed();
    server.wait_for("conversation.item.create", 1).await;
    let command_gap = first.elapsed();

    assert!(
        event_gap >= WINDOW / 2,
        "the second event waited for the window: {event_gap:?}"
    );
    assert!(
        event_gap < WINDOW + Duration::from_secs(2),
        "but not much longer: {event_gap:?}"
    );
    assert!(
        command_gap >= WINDOW / 2,
        "the command waited too: {command_gap:?}"
    );
}

#[tokio::test]
async fn an_idle_session_handles_the_first_event_at_once() {
    let server = ScriptedServer::start(|_, _| {}).await;
    let window = Duration::from_secs(2);
    let config = RealtimeRunConfig::new().wake_coalescing(window);
    let mut session = start(&server, RealtimeAgent::new("Assistant"), config).await;
    // Past the start-up passes and their sleeps: the task waits for something to happen.
    tokio::time::sleep(window * 2 + Duration::from_millis(500)).await;
    let sent = Instant::now();
    server.send(ev::error("idle", "idle", None));
    until(&mut session, is_error("idle")).await;
    assert!(
        sent.elapsed() < window / 2,
        "an idle session wakes up for the first event: {:?}",
        sent.elapsed()
    );
}

async fn tool_turn(config: RealtimeRunConfig) -> (TurnResult, Vec<E>) {
    let sim = Simulator::builder().speed(0.0).start().await.unwrap();
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(sim.url())
        .build();
    let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant").tool(weather_tool()))
        .model(model)
        .config(config)
        .run(())
        .await
        .expect("session starts");
    let turn = weather_turn(&mut session).await;
    session.close().await;
    turn
}

#[tokio::test]
async fn a_coalesced_tool_turn_has_the_same_result() {
    let (plain, _) = tool_turn(RealtimeRunConfig::new()).await;
    let (coalesced, events) =
        tool_turn(RealtimeRunConfig::new().wake_coalescing(Duration::from_millis(40))).await;
    assert_eq!(coalesced.status, TurnStatus::Completed);
    assert_eq!(coalesced.text, plain.text);
    assert!(coalesced.text.contains("Paris"), "{coalesced:#?}");
    assert_eq!(coalesced.heard_text, plain.heard_text);
    assert_eq!(coalesced.tool_calls.len(), 1);
    assert_eq!(coalesced.tool_calls[0].output, plain.tool_calls[0].output);
    assert_eq!(coalesced.responses.len(), plain.responses.len());
    assert_eq!(coalesced.items.len(), plain.items.len());
    assert_eq!(
        coalesced.timings.audio_generated_ms,
        plain.timings.audio_generated_ms
    );
    let position = |f: fn(&E) -> bool| events.iter().position(f).expect("event");
    assert!(
        position(|e| matches!(e, E::ToolStart { .. }))
            < position(|e| matches!(e, E::ToolEnd { .. }))
    );
    assert!(matches!(events.last(), Some(E::TurnEnded { .. })));
}
