//! Background runs: 20 one-shot runs at once, 5 of them cancelled with a reason.
//!
//! ```text
//! cargo run --example dispatch                         # in-process simulator (no OPENAI_API_KEY set)
//! OPENAI_API_KEY=sk-... cargo run --example dispatch   # the real OpenAI Realtime API
//! cargo run --example dispatch -- --url ws://127.0.0.1:8765/v1/realtime   # any compatible server
//! ```
//!
//! Every run gets its own session and a spoken answer; runs 2, 6, 10, 14 and 18 are cancelled
//! once they are under way. Prints one line per run, in order. Exits non-zero unless 15 runs
//! completed and the 5 cancelled ones report their reason.

#[path = "support/backend.rs"]
mod support;

use std::time::Duration;

use realtime_agents::model::SessionSettings;
use realtime_agents::protocol::Modality;
use realtime_agents::{Error, RealtimeAgent, RealtimeRunner, RunStatus, SessionOptions};

const RUNS: usize = 20;

fn cancelled(i: usize) -> bool {
    i % 4 == 2
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The simulator speaks in real time here, so that the cancelled runs are still going.
    let (model, _simulator) = support::backend(1.0).await?;
    let spoken = SessionOptions::new()
        .settings(SessionSettings::new().output_modalities(vec![Modality::Audio]));
    let agent = RealtimeAgent::new("Assistant").instructions("Answer in one short sentence.");
    let runner = RealtimeRunner::new(agent).model(model);

    let runs: Vec<_> = (0..RUNS)
        .map(|i| runner.dispatch(format!("This is run number {i}."), spoken.clone()))
        .collect();
    // Let them connect and start answering, then cancel some.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, run) in runs.iter().enumerate().filter(|(i, _)| cancelled(*i)) {
        run.cancel(format!("run {i} is no longer needed"));
    }

    let mut wrong = 0;
    for (i, run) in runs.iter().enumerate() {
        let result = run.wait().await;
        let status = run.status();
        match &result {
            Ok(r) => println!(
                "run {i:2}: {:9} turn {:11} {:5} ms  {:?}{}",
                status.as_str(),
                r.status.as_str(),
                r.duration.as_millis(),
                r.text,
                r.error
                    .as_ref()
                    .map(|e| format!("  [{e}]"))
                    .unwrap_or_default()
            ),
            Err(e) => println!("run {i:2}: {:9} [{e}]", status.as_str()),
        }
        let reason = format!("run {i} is no longer needed");
        let error = match &result {
            Ok(r) => r.error.as_ref(),
            Err(e) => Some(e),
        };
        let as_expected = if cancelled(i) {
            status == RunStatus::Cancelled
                && matches!(error, Some(Error::Cancelled { reason: r }) if *r == reason)
        } else {
            status == RunStatus::Completed
        };
        if !as_expected {
            wrong += 1;
        }
    }
    if wrong > 0 {
        return Err(format!("{wrong} runs did not end as expected").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("dispatch failed: {e}");
        std::process::exit(1);
    }
}
