//! One-shot runs: each message gets a session of its own, one turn, and a JSON line.
//!
//! ```text
//! cargo run --example oneshot                         # in-process simulator (no OPENAI_API_KEY set)
//! cargo run --example oneshot -- "Hello!" "What's the weather in Paris?"
//! OPENAI_API_KEY=sk-... cargo run --example oneshot   # the real OpenAI Realtime API
//! cargo run --example oneshot -- --url ws://127.0.0.1:8765/v1/realtime   # any compatible server
//! ```
//!
//! Prints one line per run on stdout:
//! `{"text":…,"status":"completed","usage":{…},"cost_usd":…,"duration_ms":…}`.
//! Exits non-zero when a run fails or does not complete.

#[path = "support/backend.rs"]
mod support;

use realtime_agents::{FunctionTool, RealtimeAgent, RealtimeRunner, SessionOptions};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// The city, e.g. "Paris".
    city: String,
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut messages: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--url" {
            args.next();
        } else {
            messages.push(arg);
        }
    }
    if messages.is_empty() {
        messages = vec!["Hello!".into(), "What's the weather in Paris?".into()];
    }
    // Keep the simulator (if any) alive for every run.
    let (model, _simulator) = support::backend(0.0).await?;
    let weather = FunctionTool::new(
        "get_weather",
        "Get the current weather in a city.",
        |args: WeatherArgs| async move {
            Ok::<_, String>(format!("Sunny and 22 degrees Celsius in {}", args.city))
        },
    );
    let agent = RealtimeAgent::new("Assistant")
        .instructions("You are a helpful assistant. Answer in one short sentence.")
        .tool(weather);
    let runner = RealtimeRunner::new(agent).model(model);

    let mut failed = 0;
    for message in &messages {
        let result = runner
            .run_once(message.as_str(), SessionOptions::new())
            .await?;
        println!(
            "{}",
            json!({
                "text": result.text,
                "status": result.status.as_str(),
                "usage": result.usage,
                "cost_usd": result.cost_usd,
                "duration_ms": result.duration.as_millis() as u64,
            })
        );
        if !result.status.is_completed() || result.error.is_some() {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} runs did not complete", messages.len()).into());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("oneshot failed: {e}");
        std::process::exit(1);
    }
}
