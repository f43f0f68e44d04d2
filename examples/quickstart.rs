//! A complete voice-agent conversation in code, with no key and no network.
//!
//! ```text
//! cargo run --example quickstart                 # in-process simulator (no OPENAI_API_KEY set)
//! OPENAI_API_KEY=sk-... cargo run --example quickstart   # the real OpenAI Realtime API
//! cargo run --example quickstart -- --url ws://127.0.0.1:8765/v1/realtime   # any compatible server
//! cargo run --example quickstart -- --tool-done-delay-ms 30   # simulator: late response.done
//! cargo run --example quickstart -- --backend live   # OpenAI's Live API (or the simulator's Live mode)
//! ```
//!
//! The agent has a `get_weather(city)` tool. The example says "Hello!", asks for the weather in
//! Paris, asks for a long story and interrupts it after about a second of audio. It prints what
//! happens and writes the assistant's audio to `quickstart.wav`. It exits non-zero on any failure.
//!
//! Each question is one `run_turn`: it returns when the assistant has nothing left to do for the
//! turn (tool calls and the answer that follows them included), with the answer's text, what
//! the user heard of it, tool calls, usage and latencies.
//!
//! With `--backend live` ([`LiveModel`]), the model owns turn-taking: the tool runs through
//! Responses delegation (the model first says it is checking, then gives the result), the
//! microphone streams silence all along (Live's timeline advances with its input audio), and
//! the story is interrupted the Live way: playback stops and the user speaks ("Stop.", the
//! simulator's test speech), since nothing can cancel a Live model's utterance.

use std::time::Duration;

use futures::StreamExt as _;
use realtime_agents::items::Role;
use realtime_agents::model::live::{LiveDelegation, LiveModel};
use realtime_agents::model::{OpenAIRealtimeWebSocketModel, RealtimeModel};
use realtime_agents::simulator::{Simulator, speech};
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
/// Test speech ("Stop.") and a second of silence, as PCM16 24 kHz bytes: how the user
/// interrupts a Live model.
fn spoken_stop() -> Vec<u8> {
    let mut samples = speech::encode_text("Stop.");
    samples.extend(std::iter::repeat_n(0i16, 24_000));
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Live: prints what the assistant says until a response gives `needle` (the delegated tool's
/// result follows the turn's spoken acknowledgement).
async fn until_said(
    session: &mut RealtimeSession,
    needle: &str,
    audio: &mut Vec<u8>,
) -> Result<String, Failure> {
    let mut text = String::new();
    let wait = async {
        while let Some(event) = session.next().await {
            match event {
                E::TranscriptDelta {
                    role: Role::Assistant,
                    delta,
                    ..
                } => {
                    if text.is_empty() {
                        print!("  Assistant: ");
                    }
                    print!("{delta}");
                    text.push_str(&delta);
                }
                E::Audio { data, .. } => audio.extend_from_slice(&data),
                E::AgentEnd { .. } if text.contains(needle) => {
                    println!();
                    return Ok(());
                }
                E::Closed { error } => return Err(format!("the session closed: {error:?}")),
                _ => {}
            }
        }
        Err("the session ended".to_owned())
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .map_err(|_| "timed out waiting for the tool's result")??;
    Ok(text)
}

async fn turn(
    session: &mut RealtimeSession,
    message: &str,
    interrupt_after_ms: Option<usize>,
    live: bool,
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
                tokio::spawn(async move {
                    handle.interrupt().await?;
                    if live {
                        for chunk in spoken_stop().chunks(960) {
                            handle.send_audio(chunk.to_vec(), false).await?;
                        }
                    }
                    Ok::<_, realtime_agents::Error>(())
                });
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
    let live = match args
        .iter()
        .position(|a| a == "--backend")
        .map(|i| args.get(i + 1).map(String::as_str))
    {
        None | Some(Some("realtime")) => false,
        Some(Some("live")) => true,
        Some(other) => {
            return Err(format!("--backend takes `realtime` or `live`, not {other:?}").into());
        }
    };
    let has_key = std::env::var("OPENAI_API_KEY").is_ok_and(|k| !k.is_empty());
    let api = if live { "Live" } else { "Realtime" };

    // Keep the simulator alive for the whole conversation.
    let mut simulator = None;
    let url = match (url, has_key) {
        (Some(url), _) => {
            println!("Using the server at {url}");
            Some(url)
        }
        (None, true) => {
            println!("Using the OpenAI {api} API (OPENAI_API_KEY is set)");
            None
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
            let url = if live { sim.live_url() } else { sim.url() };
            println!("No OPENAI_API_KEY: using the built-in simulator at {url}");
            simulator = Some(sim);
            Some(url)
        }
    };
    let model: Box<dyn RealtimeModel> = if live {
        // Tools run on a Responses model the Live session delegates to.
        let mut builder =
            LiveModel::builder().delegation(LiveDelegation::responses("gpt-5.4-mini"));
        if let Some(url) = url {
            builder = builder.url(url);
        }
        Box::new(builder.build())
    } else {
        let mut builder = OpenAIRealtimeWebSocketModel::builder();
        if let Some(url) = url {
            builder = builder.url(url);
        }
        Box::new(builder.build())
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
    let mut session = RealtimeRunner::new(agent)
        .shared_model(model.into())
        .run(())
        .await?;
    // Live: the microphone streams (silence) for the whole session.
    let microphone = live.then(|| {
        let handle = session.handle();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while handle.send_audio(vec![0u8; 960], false).await.is_ok() {
                tick.tick().await;
            }
        })
    });

    let mut audio = Vec::new();
    let mut failures = Vec::new();

    let hello = turn(
        &mut session,
        "Hello!",
        None,
        live,
        &mut audio,
        &mut failures,
    )
    .await?;
    if !hello.status.is_completed() {
        failures.push(format!("the greeting ended as {}", hello.status.as_str()));
    }

    let weather = turn(
        &mut session,
        "What's the weather in Paris?",
        None,
        live,
        &mut audio,
        &mut failures,
    )
    .await?;
    let mut said = weather.text.clone();
    if live && !said.contains("22") {
        // The turn ended with the acknowledgement; the result comes next.
        said = until_said(&mut session, "22", &mut audio).await?;
    }
    if weather.tool_calls.iter().all(|c| c.tool != "get_weather") {
        failures.push("the weather tool was not called".to_owned());
    }
    if !said.contains("22") {
        failures.push(format!("the answer does not give the weather: {said:?}"));
    }

    let story = turn(
        &mut session,
        "Tell me a long story.",
        Some(1000),
        live,
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

    if let Some(microphone) = microphone {
        microphone.abort();
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
