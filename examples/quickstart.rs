//! A complete voice-agent conversation in code, with no key and no network.
//!
//! ```text
//! cargo run --example quickstart                 # in-process simulator (no OPENAI_API_KEY set)
//! OPENAI_API_KEY=sk-... cargo run --example quickstart   # the real OpenAI Realtime API
//! cargo run --example quickstart -- --url ws://127.0.0.1:8765/v1/realtime   # any compatible server
//! ```
//!
//! The agent has a `get_weather(city)` tool. The example says "Hello!", asks for the weather in
//! Paris, asks for a long story and interrupts it after about a second of audio. It prints what
//! happens and writes the assistant's audio to `quickstart.wav`. It exits non-zero on any failure.

use std::time::Duration;

use futures::StreamExt;
use realtime_agents::items::Role;
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::Simulator;
use realtime_agents::{
    FunctionTool, RealtimeAgent, RealtimeRunner, RealtimeSession, RealtimeSessionEvent as E,
};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// The city, e.g. "Paris".
    city: String,
}

type Failure = Box<dyn std::error::Error>;

/// What one turn produced.
#[derive(Default)]
struct Turn {
    audio: Vec<u8>,
    errors: Vec<String>,
    tools: usize,
    interrupted: bool,
}

/// Prints events until the assistant finishes speaking (after any tool calls, once
/// `interrupt_after_ms` of audio arrived, it interrupts instead).
async fn turn(
    session: &mut RealtimeSession,
    wait_for_tool: bool,
    interrupt_after_ms: Option<usize>,
) -> Result<Turn, Failure> {
    let mut out = Turn::default();
    let mut at_line_start = true;
    let mut speaker: Option<String> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let event = tokio::time::timeout_at(deadline, session.next())
            .await
            .map_err(|_| "timed out waiting for the assistant")?;
        let Some(event) = event else {
            return Err("the session ended unexpectedly".into());
        };
        match event {
            E::AgentStart { agent, .. } => speaker = Some(agent),
            E::TranscriptDelta {
                role: Role::Assistant,
                delta,
                ..
            } => {
                if let Some(agent) = speaker.take() {
                    print!("  {agent}: ");
                    at_line_start = false;
                }
                print!("{delta}");
            }
            E::UserTranscript { transcript, .. } => println!("  (you said: {transcript})"),
            E::Audio { data, .. } => {
                out.audio.extend_from_slice(&data);
                // PCM16 at 24 kHz: 48 bytes per millisecond.
                if interrupt_after_ms
                    .is_some_and(|ms| !out.interrupted && out.audio.len() >= ms * 48)
                {
                    out.interrupted = true;
                    println!(" [interrupting]");
                    at_line_start = true;
                    session.interrupt().await?;
                }
            }
            E::ToolStart {
                tool, arguments, ..
            } => println!("  -> calling {tool}({arguments})"),
            E::ToolEnd { tool, output, .. } => {
                println!("  <- {tool} returned {output:?}");
                out.tools += 1;
            }
            E::AudioInterrupted { played_ms, .. } => {
                println!("  [audio interrupted after {played_ms} ms heard]")
            }
            E::Usage { response, total } => {
                if !at_line_start {
                    println!();
                }
                println!(
                    "  [usage: {} tokens this response, {} total]",
                    response.total_tokens, total.total_tokens
                );
                at_line_start = true;
            }
            E::Error { error } => {
                println!("\n  [error: {error}]");
                out.errors.push(error.to_string());
            }
            E::Closed { error } => return Err(format!("the session closed: {error:?}").into()),
            E::AgentEnd { .. } => {
                if !at_line_start {
                    println!();
                    at_line_start = true;
                }
                if !wait_for_tool || out.tools > 0 {
                    return Ok(out);
                }
            }
            _ => {}
        }
    }
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
            let sim = Simulator::start().await?;
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
    let mut errors = Vec::new();
    let mut collect = |t: Turn| {
        audio.extend_from_slice(&t.audio);
        errors.extend(t.errors.iter().cloned());
        t
    };

    println!("\nYou: Hello!");
    session.send_message("Hello!").await?;
    collect(turn(&mut session, false, None).await?);

    println!("\nYou: What's the weather in Paris?");
    session.send_message("What's the weather in Paris?").await?;
    let t = collect(turn(&mut session, true, None).await?);
    if t.tools == 0 {
        return Err("the weather tool was not called".into());
    }

    println!("\nYou: Tell me a long story.");
    session.send_message("Tell me a long story.").await?;
    let t = collect(turn(&mut session, false, Some(1000)).await?);
    if !t.interrupted {
        return Err("the story ended before a second of audio: nothing to interrupt".into());
    }

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

    if !errors.is_empty() {
        return Err(format!("{} error event(s): {errors:?}", errors.len()).into());
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
