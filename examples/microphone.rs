//! Talk to a voice agent from your laptop: microphone in, speaker out, barge-in included.
//!
//! ```text
//! cargo run --example microphone --features audio                       # built-in simulator
//! OPENAI_API_KEY=sk-... cargo run --example microphone --features audio # the real API
//! cargo run --example microphone --features audio -- --url ws://127.0.0.1:8765/v1/realtime
//! cargo run --example microphone --features audio -- --seconds 60 --input "USB Mic" --output "Headphones"
//! cargo run --example microphone --features audio -- --backend live     # OpenAI's Live API
//! ```
//!
//! Use headphones: with loudspeakers the agent hears itself and interrupts itself. The
//! simulator does not understand real speech; it answers with how long you spoke. The real API
//! understands you, calls `get_weather` when you ask about the weather, and stops talking the
//! moment you start (server VAD barge-in: playback is flushed and the server is told how much
//! you heard, measured from the frames the sound card actually played). With `--backend live`
//! (OpenAI's Live API, or the simulator's Live mode), the model owns turn-taking: it stops by
//! itself once it hears you, playback is flushed when your words are first transcribed, and
//! `get_weather` runs through Responses delegation.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use realtime_agents::audio::{
    AudioDeviceEvent, Microphone, MicrophoneConfig, Speaker, SpeakerConfig,
};
use realtime_agents::items::Role;
use realtime_agents::model::live::{LiveDelegation, LiveModel};
use realtime_agents::model::{OpenAIRealtimeWebSocketModel, RealtimeModel, SessionSettings};
use realtime_agents::protocol::TurnDetection;
use realtime_agents::simulator::Simulator;
use realtime_agents::{
    FunctionTool, PlaybackTracker, RealtimeAgent, RealtimeRunConfig, RealtimeRunner,
    RealtimeSessionEvent as E,
};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// The city, e.g. "Paris".
    city: String,
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = arg("--seconds")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(120);
    let has_key = std::env::var("OPENAI_API_KEY").is_ok_and(|k| !k.is_empty());

    let live = match arg("--backend").as_deref() {
        None | Some("realtime") => false,
        Some("live") => true,
        Some(other) => {
            return Err(format!("--backend takes `realtime` or `live`, not {other:?}").into());
        }
    };
    let mut simulator = None;
    let url = match (arg("--url"), has_key) {
        (Some(url), _) => Some(url),
        (None, true) => None,
        (None, false) => {
            let sim = Simulator::start().await?;
            let url = if live { sim.live_url() } else { sim.url() };
            println!("No OPENAI_API_KEY: talking to the built-in simulator at {url}");
            simulator = Some(sim);
            Some(url)
        }
    };
    let model: Arc<dyn RealtimeModel> = if live {
        let mut builder =
            LiveModel::builder().delegation(LiveDelegation::responses("gpt-5.4-mini"));
        if let Some(url) = url {
            builder = builder.url(url);
        }
        Arc::new(builder.build())
    } else {
        let mut builder = OpenAIRealtimeWebSocketModel::builder();
        if let Some(url) = url {
            builder = builder.url(url);
        }
        Arc::new(builder.build())
    };

    let mut mic_config = MicrophoneConfig::default().chunk(Duration::from_millis(20));
    if let Some(name) = arg("--input") {
        mic_config = mic_config.device(name);
    }
    let mut speaker_config = SpeakerConfig::default();
    if let Some(name) = arg("--output") {
        speaker_config = speaker_config.device(name);
    }
    let mut mic = Microphone::open(mic_config)?;
    let mut speaker = Speaker::open(speaker_config)?;
    println!(
        "Microphone: {} ({} Hz); speaker: {} ({} Hz)",
        mic.device().name,
        mic.device_sample_rate(),
        speaker.device().name,
        speaker.device_sample_rate()
    );
    for mut events in [mic.take_events(), speaker.take_events()]
        .into_iter()
        .flatten()
    {
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let AudioDeviceEvent::Error {
                    direction, message, ..
                } = event
                {
                    eprintln!("[{direction:?} device error: {message}]");
                }
            }
        });
    }

    let weather = FunctionTool::new(
        "get_weather",
        "Get the current weather in a city.",
        |a: WeatherArgs| async move {
            Ok::<_, String>(format!("Sunny and 22 degrees Celsius in {}", a.city))
        },
    );
    let agent = RealtimeAgent::new("Assistant")
        .instructions("You are a friendly voice assistant. Keep answers short.")
        .tool(weather);
    // Truncation on barge-in uses what the sound card actually played.
    let tracker: Arc<dyn PlaybackTracker> = speaker.tracker();
    let config = RealtimeRunConfig::new()
        .settings(SessionSettings::new().turn_detection(Some(TurnDetection::server_vad())))
        .playback_tracker(tracker);
    let mut session = RealtimeRunner::new(agent)
        .shared_model(model)
        .config(config)
        .run(())
        .await?;
    println!("Listening for {seconds} s. Say something (Ctrl-C to stop).");

    let handle = session.handle();
    let microphone = tokio::spawn(async move {
        while let Some(chunk) = mic.next_chunk().await {
            if handle.send_audio(chunk, false).await.is_err() {
                break;
            }
        }
    });

    let deadline = tokio::time::sleep(Duration::from_secs(seconds));
    tokio::pin!(deadline);
    loop {
        let event = tokio::select! {
            _ = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => break,
            event = session.next() => match event { Some(e) => e, None => break },
        };
        match event {
            E::Audio { data, .. } => speaker.push_pcm16(&data),
            E::AudioInterrupted { played_ms, .. } => {
                speaker.clear();
                println!("\n[you interrupted after {played_ms} ms]");
            }
            E::InputSpeechStarted { .. } => println!("\n[listening...]"),
            E::UserTranscript { transcript, .. } => println!("You: {transcript}"),
            E::AgentStart { agent, .. } => print!("{agent}: "),
            E::TranscriptDelta {
                role: Role::Assistant,
                delta,
                ..
            } => print!("{delta}"),
            E::AgentEnd { .. } => println!(),
            E::ToolStart {
                tool, arguments, ..
            } => println!("\n[calling {tool}({arguments})]"),
            E::Error { error } => eprintln!("\n[error: {error}]"),
            E::Closed { error } => {
                eprintln!("\n[session closed: {error:?}]");
                break;
            }
            _ => {}
        }
    }
    microphone.abort();
    session.close().await;
    drop(simulator);
    Ok(())
}
