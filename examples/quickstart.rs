//! A complete voice-agent conversation in code, with no key and no network.
//!
//! ```text
//! cargo run --example quickstart                 # in-process simulator (no OPENAI_API_KEY set)
//! OPENAI_API_KEY=sk-... cargo run --example quickstart   # the real OpenAI Realtime API
//! cargo run --example quickstart -- --url ws://127.0.0.1:8765/v1/realtime   # any compatible server
//! cargo run --example quickstart -- --backend live   # OpenAI's Live API (or the simulator's Live mode)
//! ```
//!
//! The agent has a `get_weather(city)` tool. The example says "Hello!", asks for the weather in
//! Paris, asks for a long story and interrupts it after about a second of audio. It prints what
//! happens and writes the assistant's audio to `quickstart.wav`. It exits non-zero on any failure.
//!
//! With `--backend live` ([`LiveModel`]), the tool runs through Responses delegation, the
//! microphone streams silence all along (Live's timeline advances with its input audio), and
//! the story is interrupted the Live way: playback stops and the user speaks ("Stop.", as the
//! simulator's test speech), since nothing can cancel a Live model's utterance.

use std::time::Duration;

use futures::StreamExt;
use realtime_agents::items::Role;
use realtime_agents::model::live::{LiveDelegation, LiveModel};
use realtime_agents::model::{OpenAIRealtimeWebSocketModel, RealtimeModel};
use realtime_agents::simulator::{Simulator, speech};
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
    /// Live: a response started after the tool ended (it says the result).
    started_after_tool: bool,
    /// Live: the interrupted story ended (the next response answers "Stop.").
    answered_stop: bool,
}

/// Test speech ("Stop.") and a second of silence, as PCM16 24 kHz bytes: how the user
/// interrupts a Live model.
fn spoken_stop() -> Vec<u8> {
    let mut samples = speech::encode_text("Stop.");
    samples.extend(std::iter::repeat_n(0i16, 24_000));
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Prints events until the assistant finishes speaking (after any tool calls, once
/// `interrupt_after_ms` of audio arrived, it interrupts instead; on Live, by speaking too).
async fn turn(
    session: &mut RealtimeSession,
    wait_for_tool: bool,
    interrupt_after_ms: Option<usize>,
    live: bool,
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
            E::AgentStart { agent, .. } => {
                speaker = Some(agent);
                out.started_after_tool |= out.tools > 0;
            }
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
                    if live {
                        for chunk in spoken_stop().chunks(960) {
                            session.send_audio(chunk.to_vec(), false).await?;
                        }
                    }
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
                // On Live, the spoken acknowledgement of a delegation comes before the tool's
                // result is spoken, and the interrupted story before the answer to "Stop.".
                let tool_spoken =
                    !wait_for_tool || (out.tools > 0 && (!live || out.started_after_tool));
                let interrupt_done = !live || interrupt_after_ms.is_none() || out.answered_stop;
                if tool_spoken && interrupt_done {
                    return Ok(out);
                }
                if out.interrupted {
                    out.answered_stop = true;
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
            let sim = Simulator::start().await?;
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
    let mut errors = Vec::new();
    let mut collect = |t: Turn| {
        audio.extend_from_slice(&t.audio);
        errors.extend(t.errors.iter().cloned());
        t
    };

    println!("\nYou: Hello!");
    session.send_message("Hello!").await?;
    collect(turn(&mut session, false, None, live).await?);

    println!("\nYou: What's the weather in Paris?");
    session.send_message("What's the weather in Paris?").await?;
    let t = collect(turn(&mut session, true, None, live).await?);
    if t.tools == 0 {
        return Err("the weather tool was not called".into());
    }

    println!("\nYou: Tell me a long story.");
    session.send_message("Tell me a long story.").await?;
    let t = collect(turn(&mut session, false, Some(1000), live).await?);
    if !t.interrupted {
        return Err("the story ended before a second of audio: nothing to interrupt".into());
    }

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
