//! A complete voice-agent conversation in code, with no key and no network.
//!
//! ```text
//! cargo run --example quickstart                 # in-process simulator (no OPENAI_API_KEY set)
//! OPENAI_API_KEY=sk-... cargo run --example quickstart   # the real OpenAI Realtime API
//! cargo run --example quickstart -- --url ws://127.0.0.1:8765/v1/realtime   # any compatible server
//! cargo run --example quickstart -- --tool-done-delay-ms 30   # simulator: late response.done
//! ```
//!
//! The agent has a `get_weather(city)` tool. The example says "Hello!", asks for the weather in
//! Paris, asks for a long story and interrupts it after about a second of audio. It prints what
//! happens and writes the assistant's audio to `quickstart.wav`. It exits non-zero on any failure.
//!
//! Each question is one `run_turn`: it returns when the assistant has nothing left to do for the
//! turn (tool calls and the answer that follows them included), with the answer's text, what
//! the user heard of it, tool calls, usage and latencies.

use std::time::Duration;

use realtime_agents::items::Role;
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::Simulator;
use realtime_agents::{
    FunctionTool, RealtimeAgent, RealtimeRunner, RealtimeSession, RealtimeSessionEvent as E,
    TurnResult, TurnStatus,
};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// The city, e.g. "Paris".
    city: String,
}

type Failure = Box<dyn std::error::Error>;

/// Runs one user turn and prints what happens. The turn ends when the assistant has nothing
/// left to do for it: after tool calls and the answer that follows them. With
/// `interrupt_after_ms`, it interrupts the answer once that much audio arrived.
async fn turn(
    session: &mut RealtimeSession,
    message: &str,
    interrupt_after_ms: Option<usize>,
    audio: &mut Vec<u8>,
    failures: &mut Vec<String>,
) -> Result<TurnResult, Failure> {
    println!("\nYou: {message}");
    let handle = session.handle();
    let mut received = 0;
    // The agent's name is printed with its first words (a response may only call tools).
    let mut speaker: Option<String> = None;
    let mut speaking = false;
    let result = session.run_turn_with(message, |event| match event {
        E::AgentStart { agent, .. } => speaker = Some(agent.clone()),
        E::TranscriptDelta {
            role: Role::Assistant,
            delta,
            ..
        } => {
            if let Some(agent) = speaker.take() {
                print!("  {agent}: ");
                speaking = true;
            }
            print!("{delta}");
        }
        E::AgentEnd { .. } if speaking => {
            println!();
            speaking = false;
        }
        E::Audio { data, .. } => {
            audio.extend_from_slice(data);
            received += data.len();
            // PCM16 at 24 kHz: 48 bytes per millisecond.
            if interrupt_after_ms
                .is_some_and(|ms| received >= ms * 48 && received - data.len() < ms * 48)
            {
                print!(" [interrupting]");
                let handle = handle.clone();
                tokio::spawn(async move { handle.interrupt().await });
            }
        }
        E::ToolStart {
            tool, arguments, ..
        } => println!("  -> calling {tool}({arguments})"),
        E::ToolEnd { tool, output, .. } => println!("  <- {tool} returned {output:?}"),
        E::AudioInterrupted { played_ms, .. } => {
            println!("  [audio interrupted after {played_ms} ms heard]")
        }
        E::Error { error } => {
            println!("\n  [error: {error}]");
            failures.push(error.to_string());
        }
        _ => {}
    });
    let result = tokio::time::timeout(Duration::from_secs(90), result)
        .await
        .map_err(|_| "timed out waiting for the assistant")??;
    let latency = result
        .timings
        .first_audio
        .or(result.timings.first_transcript)
        .map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis()));
    println!(
        "  [turn {}: {}, {} tokens, first output after {latency}, {} of {} ms of audio heard]",
        result.turn_id,
        result.status.as_str(),
        result.usage.total_tokens,
        result.timings.audio_heard_ms,
        result.timings.audio_generated_ms,
    );
    Ok(result)
}

async fn run() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .iter()
        .position(|a| a == "--url")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let has_key = std::env::var("OPENAI_API_KEY").is_ok_and(|k| !k.is_empty());

    // Keep the simulator alive for the whole conversation.
    let mut simulator = None;
    let model = match (url, has_key) {
        (Some(url), _) => {
            println!("Using the server at {url}");
            OpenAIRealtimeWebSocketModel::builder().url(url).build()
        }
        (None, true) => {
            println!("Using the OpenAI Realtime API (OPENAI_API_KEY is set)");
            OpenAIRealtimeWebSocketModel::new()
        }
        (None, false) => {
            // `--tool-done-delay-ms N`: the simulator sends a tool-calling response's
            // `response.done` N ms after the call, as real servers sometimes do.
            let delay = args
                .iter()
                .position(|a| a == "--tool-done-delay-ms")
                .and_then(|i| args.get(i + 1))
                .and_then(|ms| ms.parse().ok())
                .map_or(Duration::ZERO, Duration::from_millis);
            let sim = Simulator::builder()
                .tool_response_done_delay(delay)
                .start()
                .await?;
            println!(
                "No OPENAI_API_KEY: using the built-in simulator at {}",
                sim.url()
            );
            let model = OpenAIRealtimeWebSocketModel::builder()
                .url(sim.url())
                .build();
            simulator = Some(sim);
            model
        }
    };

    let weather = FunctionTool::new(
        "get_weather",
        "Get the current weather in a city.",
        |args: WeatherArgs| async move {
            Ok::<_, String>(format!("Sunny and 22 degrees Celsius in {}", args.city))
        },
    );
    let agent = RealtimeAgent::new("Assistant")
        .instructions("You are a friendly voice assistant. Keep answers short, except for stories.")
        .tool(weather);
    let mut session = RealtimeRunner::new(agent).model(model).run(()).await?;

    let mut audio = Vec::new();
    let mut failures = Vec::new();

    let hello = turn(&mut session, "Hello!", None, &mut audio, &mut failures).await?;
    if !hello.status.is_completed() {
        failures.push(format!("the greeting ended as {}", hello.status.as_str()));
    }

    let weather = turn(
        &mut session,
        "What's the weather in Paris?",
        None,
        &mut audio,
        &mut failures,
    )
    .await?;
    if weather.tool_calls.iter().all(|c| c.tool != "get_weather") {
        failures.push("the weather tool was not called".to_owned());
    }
    if !weather.text.contains("22") {
        failures.push(format!(
            "the answer does not give the weather: {:?}",
            weather.text
        ));
    }

    let story = turn(
        &mut session,
        "Tell me a long story.",
        Some(1000),
        &mut audio,
        &mut failures,
    )
    .await?;
    if story.status != TurnStatus::Cancelled && story.status != TurnStatus::Interrupted {
        failures.push(format!(
            "the story was not interrupted (it ended as {})",
            story.status.as_str()
        ));
    }
    println!("  [heard of the story: {:?}]", story.heard_text);

    session.close().await;
    drop(simulator);

    let path = "quickstart.wav";
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 24_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec)?;
    for sample in audio.chunks_exact(2) {
        wav.write_sample(i16::from_le_bytes([sample[0], sample[1]]))?;
    }
    wav.finalize()?;
    println!(
        "\nWrote {:.1} s of assistant audio to {path}",
        audio.len() as f64 / 48_000.0
    );

    if !failures.is_empty() {
        return Err(failures.join("; ").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("quickstart failed: {e}");
        std::process::exit(1);
    }
}
