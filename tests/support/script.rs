//! Scripts and helpers shared by the session tests.

use std::sync::atomic::{AtomicUsize, Ordering};

use realtime_agents::{
    FunctionTool, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSession,
    RealtimeSessionEvent, TurnResult,
};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Responder, ScriptedServer, ev};

/// Arguments of the weather tool.
#[derive(Deserialize, JsonSchema)]
pub struct City {
    pub city: String,
}

/// Asks for the weather in Paris and waits (20 s at most) for the turn to succeed: its result
/// and every event of the turn.
pub async fn weather_turn(
    session: &mut RealtimeSession,
) -> (TurnResult, Vec<RealtimeSessionEvent>) {
    let mut events = Vec::new();
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        session.run_turn_with("What's the weather in Paris?", |e| events.push(e.clone())),
    )
    .await
    .expect("the turn ends")
    .expect("the turn succeeds");
    (result, events)
}

/// Starts a session for `agent` on `server` with a context.
pub async fn start_with<C: std::any::Any + Send + Sync>(
    server: &ScriptedServer,
    agent: RealtimeAgent,
    config: RealtimeRunConfig,
    context: C,
) -> RealtimeSession {
    RealtimeRunner::new(agent)
        .model(server.model())
        .config(config)
        .run(context)
        .await
        .expect("session starts")
}

/// `get_weather(city)`: always sunny.
pub fn weather_tool() -> FunctionTool {
    FunctionTool::new(
        "get_weather",
        "Current weather in a city.",
        |a: City| async move { Ok::<_, String>(format!("Sunny, 22 degrees in {}", a.city)) },
    )
}

/// A spoken response: each word is a transcript delta and 20 ms of audio.
pub fn spoken_response(out: &Responder, resp: &str, item: &str, words: &[&str]) {
    out.send_all([
        ev::response_created(resp),
        ev::assistant_item(item, None, "in_progress"),
    ]);
    for w in words {
        out.send_all([
            ev::transcript_delta(resp, item, w),
            ev::audio_delta(resp, item, 20),
        ]);
    }
    out.send_all([
        ev::audio_done(resp, item),
        ev::response_done(resp, "completed"),
    ]);
}

/// Starts a session for `agent` on `server` (no context).
pub async fn start(
    server: &ScriptedServer,
    agent: RealtimeAgent,
    config: RealtimeRunConfig,
) -> RealtimeSession {
    start_with(server, agent, config, ()).await
}

/// First `response.create`: a response that makes `calls`; later ones: "Done.".
pub fn tool_script(
    calls: Vec<(&'static str, &'static str, &'static str)>,
) -> impl Fn(&serde_json::Value, &Responder) {
    let creates = AtomicUsize::new(0);
    move |e, out| {
        if e["type"] != "response.create" {
            return;
        }
        if creates.fetch_add(1, Ordering::SeqCst) == 0 {
            out.send(ev::response_created("r1"));
            for (i, (call_id, name, args)) in calls.iter().enumerate() {
                out.send(ev::function_call_item(
                    &format!("fc{i}"),
                    None,
                    call_id,
                    name,
                    args,
                ));
                out.send(ev::function_call(
                    "r1",
                    &format!("fc{i}"),
                    call_id,
                    name,
                    args,
                ));
            }
            out.send(ev::response_done("r1", "completed"));
        } else {
            spoken_response(out, "r2", "a2", &["Done."]);
        }
    }
}

/// A response that starts speaking (`r1`, item `a1`, 20 ms of audio) and ends `cancelled` only
/// when the client sends `response.cancel`.
pub fn cancellable_response(e: &serde_json::Value, out: &Responder) {
    match e["type"].as_str() {
        Some("response.create") => out.send_all([
            ev::response_created("r1"),
            ev::assistant_item("a1", None, "in_progress"),
            ev::audio_delta("r1", "a1", 20),
        ]),
        Some("response.cancel") => out.send(ev::response_done("r1", "cancelled")),
        _ => {}
    }
}
