//! One-shot runs against the built-in simulator: connect, one turn, close.

mod support;

use std::time::Duration;

use realtime_agents::model::{OpenAIRealtimeWebSocketModel, SessionSettings};
use realtime_agents::protocol::Modality;
use realtime_agents::simulator::Simulator;
use realtime_agents::{
    CancellationToken, Error, FunctionTool, RealtimeAgent, RealtimeRunner,
    RealtimeSessionEvent as E, SessionOptions, TurnStatus,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use support::recording_simulator;

#[derive(Deserialize, JsonSchema)]
struct City {
    city: String,
}

fn runner(url: String) -> RealtimeRunner {
    let weather = FunctionTool::new("get_weather", "Weather in a city.", |a: City| async move {
        Ok::<_, String>(format!("Sunny in {}", a.city))
    });
    let model = OpenAIRealtimeWebSocketModel::builder().url(url).build();
    RealtimeRunner::new(RealtimeAgent::new("Assistant").tool(weather)).model(model)
}

fn session_updates(sim: &Simulator) -> Vec<Value> {
    sim.client_events()
        .into_iter()
        .filter(|e| e["type"] == "session.update")
        .collect()
}

#[tokio::test]
async fn a_one_shot_answers_in_text_and_closes() {
    let sim = recording_simulator().await;
    let result = runner(sim.url())
        .run_once("Hello!", SessionOptions::new())
        .await
        .unwrap();
    assert_eq!(
        result.text,
        "Hello! I'm a simulated assistant. How can I help you today?"
    );
    assert_eq!(result.status, TurnStatus::Completed);
    assert!(result.error.is_none(), "{:?}", result.error);
    assert!(result.usage.output_tokens > 0);
    assert_eq!(result.usage.output_audio_tokens, 0, "a text answer");
    assert_eq!(result.usage, result.turn.usage);
    let cost = result.cost_usd.expect("gpt-realtime has a price");
    assert!(cost > 0.0);
    assert!(result.duration > Duration::ZERO && result.duration < Duration::from_secs(10));
    assert!(result.session_id.starts_with("sess_ra"));
    assert!(!result.events.iter().any(|e| matches!(e, E::Audio { .. })));
    assert!(matches!(
        result.events.first(),
        Some(E::HistoryAdded { .. } | E::TurnStarted { .. })
    ));
    assert!(
        result
            .events
            .iter()
            .any(|e| matches!(e, E::TurnEnded { result: turn } if turn.text == result.text))
    );
    assert!(matches!(
        result.events.last(),
        Some(E::Closed { error: None })
    ));
    // The model was asked for text, and the session is gone.
    let updates = session_updates(&sim);
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0]["session"]["output_modalities"],
        serde_json::json!(["text"])
    );
    assert_eq!(sim.connections(), 1);
}

#[tokio::test]
async fn audio_when_asked_and_tools_in_the_turn() {
    let sim = recording_simulator().await;
    let spoken = SessionOptions::new()
        .settings(SessionSettings::new().output_modalities(vec![Modality::Audio]));
    let result = runner(sim.url())
        .run_once("What's the weather in Paris?", spoken)
        .await
        .unwrap();
    assert_eq!(result.status, TurnStatus::Completed);
    assert_eq!(result.text, "Here is what I found: Sunny in Paris.");
    assert!(result.events.iter().any(|e| matches!(e, E::Audio { .. })));
    assert!(result.usage.output_audio_tokens > 0);
    let calls = &result.turn.tool_calls;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].output.as_deref(), Some("Sunny in Paris"));
    assert_eq!(
        session_updates(&sim)[0]["session"]["output_modalities"],
        serde_json::json!(["audio"])
    );
}

#[tokio::test]
async fn a_one_shot_fails_with_the_reason_it_could_not_run() {
    // Nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = runner(format!("ws://127.0.0.1:{port}/v1/realtime"))
        .run_once("Hello!", SessionOptions::new())
        .await
        .err();
    assert!(matches!(error, Some(Error::Connect { .. })), "{error:?}");

    // Cancelled before it began.
    let sim = recording_simulator().await;
    let token = CancellationToken::new();
    token.cancel();
    let error = runner(sim.url())
        .run_once("Hello!", SessionOptions::new().cancellation_token(token))
        .await
        .err();
    assert!(matches!(error, Some(Error::Cancelled { .. })), "{error:?}");

    // Out of time in the middle of the turn (a tool that never answers): the turn says so.
    let stuck = FunctionTool::new("order_status", "The status of an order.", |_: City| async {
        std::future::pending::<()>().await;
        Ok::<_, String>("never")
    });
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(sim.url())
        .build();
    let result = RealtimeRunner::new(RealtimeAgent::new("Assistant").tool(stuck))
        .model(model)
        .run_once(
            "What is the status of my order?",
            SessionOptions::new().max_duration(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert_eq!(result.status, TurnStatus::Cancelled);
    assert!(
        matches!(result.error, Some(Error::Timeout(_))),
        "{:?}",
        result.error
    );
    let calls = &result.turn.tool_calls;
    assert!(calls.len() == 1 && calls[0].output.is_none(), "{calls:?}");
    assert!(matches!(
        result.events.last(),
        Some(E::Closed {
            error: Some(Error::Timeout(_))
        })
    ));
}
