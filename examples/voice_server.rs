//! A production-shaped voice server: the gateway's page, browser socket, Twilio webhook and
//! media stream, health, readiness, load and Prometheus metrics in one axum app, drained on
//! SIGTERM.
//!
//! ```text
//! cargo run --features server --example voice_server                  # built-in simulator
//! cargo run --features server --example voice_server -- --url ws://127.0.0.1:8765/v1/realtime
//! OPENAI_API_KEY=sk-... cargo run --features server --example voice_server -- --real
//! ```
//!
//! Then open http://127.0.0.1:8080/ and talk (the simulator understands the crate's test
//! speech only; with `--real`, talk normally), or point a Twilio number's voice webhook at
//! `https://<public host>/twilio/voice` (with `--public-url https://<public host>`).

use std::time::Duration;

use realtime_agents::gateway::{Gateway, install_prometheus, shutdown_signal};
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::Simulator;
use realtime_agents::{FunctionTool, RealtimeAgent, RealtimeRunConfig};
use schemars::JsonSchema;
use serde::Deserialize;

const USAGE: &str = "usage: voice_server [--addr ADDR] [--url URL | --real] [limits]\n\
     --addr            listen address (default 127.0.0.1:8080)\n\
     --url             an OpenAI-Realtime-compatible server (default: a simulator started here)\n\
     --real            the OpenAI Realtime API (needs OPENAI_API_KEY)\n\
     --max-sessions    calls at once; more get 503 (default 100)\n\
     --drain-seconds   how long live calls may finish after SIGTERM (default 300)\n\
     --allowed-origin  an origin allowed to open the browser socket (repeatable; default: same host)\n\
     --public-url      public base URL for the TwiML stream URL (default: from the Host header)\n\
     --greet           the assistant speaks first\n\
     environment: TWILIO_AUTH_TOKEN checks Twilio's request signatures; GATEWAY_STREAM_SECRET\n\
     binds media streams to the calls the webhook answered (a token in the TwiML)";

#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// The city, e.g. "Paris".
    city: String,
}

#[derive(Debug)]
struct Args {
    addr: String,
    url: Option<String>,
    real: bool,
    max_sessions: usize,
    drain_seconds: u64,
    origins: Vec<String>,
    public_url: Option<String>,
    greet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".into(),
        url: None,
        real: false,
        max_sessions: 100,
        drain_seconds: 300,
        origins: Vec::new(),
        public_url: None,
        greet: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--addr" => args.addr = value()?,
            "--url" => args.url = Some(value()?),
            "--real" => args.real = true,
            "--max-sessions" => {
                args.max_sessions = value()?
                    .parse()
                    .map_err(|e| format!("--max-sessions: {e}"))?
            }
            "--drain-seconds" => {
                args.drain_seconds = value()?
                    .parse()
                    .map_err(|e| format!("--drain-seconds: {e}"))?
            }
            "--allowed-origin" => args.origins.push(value()?),
            "--public-url" => args.public_url = Some(value()?),
            "--greet" => args.greet = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) if message.is_empty() => return println!("{USAGE}"),
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    if let Err(e) = run(args).await {
        eprintln!("voice_server failed: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Keep the simulator alive while serving.
    let mut simulator = None;
    let model = match (&args.url, args.real) {
        (Some(url), _) => OpenAIRealtimeWebSocketModel::builder().url(url).build(),
        (None, true) => {
            if std::env::var("OPENAI_API_KEY").map_or(true, |k| k.is_empty()) {
                return Err("--real needs OPENAI_API_KEY".into());
            }
            OpenAIRealtimeWebSocketModel::new()
        }
        (None, false) => {
            let sim = Simulator::builder()
                .record_client_events(false)
                .start()
                .await?;
            tracing::info!(url = %sim.url(), "using the built-in simulator");
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
        .instructions("You are a friendly voice assistant on the phone. Keep answers short.")
        .tool(weather);

    let mut builder = Gateway::builder(agent)
        .model(model)
        // Phone audio arrives in 20 ms frames: five per write to the model.
        .run_config(RealtimeRunConfig::new().input_audio_batch(Duration::from_millis(100)))
        .max_sessions(args.max_sessions)
        .drain_timeout(Duration::from_secs(args.drain_seconds))
        .greet(args.greet)
        .prometheus(install_prometheus()?)
        .on_event(|event| tracing::info!(?event, "gateway event"));
    if !args.origins.is_empty() {
        builder = builder.allowed_origins(args.origins.clone());
    }
    if let Some(url) = &args.public_url {
        builder = builder.public_url(url);
    }
    if let Ok(token) = std::env::var("TWILIO_AUTH_TOKEN") {
        builder = builder.twilio_auth_token(token);
    }
    if let Ok(secret) = std::env::var("GATEWAY_STREAM_SECRET") {
        builder = builder.stream_secret(secret);
    }
    let gateway = builder.build()?;

    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    let report = gateway.serve(listener, shutdown_signal()).await?;
    tracing::info!(?report, "stopped");
    drop(simulator);
    Ok(())
}
