//! Runs the Realtime API simulator until Ctrl-C.
//!
//! ```text
//! cargo run --example sim_server -- --addr 127.0.0.1:8765 [--speed 1.0] [--api-key KEY] [--stamp-audio] [--tool-done-delay-ms 0]
//! ```
//!
//! Prints `listening on ws://ADDR/v1/realtime` once it accepts connections, then
//! `live on ws://ADDR/v1/live/sessions`. Point any OpenAI Realtime client (this crate, the
//! Python or JS Agents SDK) at the first URL, and any Live client (this crate's
//! `model::live`, the `openai` package's `client.live.connect()`) at the second.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use realtime_agents::simulator::Simulator;

const USAGE: &str = "usage: sim_server [--addr 127.0.0.1:8765] [--speed 1.0] [--api-key KEY] [--stamp-audio] [--tool-done-delay-ms 0]\n\
     --addr                address to listen on (default 127.0.0.1:8765; port 0 picks a free port)\n\
     --speed               audio pacing: 1.0 real time, 4.0 four times faster, 0 unpaced\n\
     --api-key             refuse connections (HTTP 401) that do not present this key\n\
     --stamp-audio         write each audio delta's send time into its first bytes (for loadtest --url)\n\
     --tool-done-delay-ms  send response.done of a function-call response this long after the call";

struct Args {
    addr: SocketAddr,
    speed: f64,
    api_key: Option<String>,
    stamp_audio: bool,
    tool_done_delay: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 8765)),
        speed: 1.0,
        api_key: None,
        stamp_audio: false,
        tool_done_delay: Duration::ZERO,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Err(String::new());
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--addr" => {
                let v = value()?;
                args.addr = v.parse().map_err(|e| format!("bad --addr {v:?}: {e}"))?;
            }
            "--speed" => {
                let v = value()?;
                args.speed = v.parse().map_err(|e| format!("bad --speed {v:?}: {e}"))?;
            }
            "--api-key" => args.api_key = Some(value()?),
            "--stamp-audio" => args.stamp_audio = true,
            "--tool-done-delay-ms" => {
                let v = value()?;
                let ms: u64 = v
                    .parse()
                    .map_err(|e| format!("bad --tool-done-delay-ms {v:?}: {e}"))?;
                args.tool_done_delay = Duration::from_millis(ms);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if message.is_empty() {
                println!("{USAGE}");
                return;
            }
            eprintln!("error: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let mut builder = Simulator::builder()
        .addr(args.addr)
        .speed(args.speed)
        .record_client_events(false)
        .stamp_audio(args.stamp_audio)
        .tool_response_done_delay(args.tool_done_delay);
    if let Some(key) = args.api_key {
        builder = builder.require_api_key(key);
    }
    let sim = match builder.start().await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {}", sim.url());
    println!("live on {}", sim.live_url());
    let _ = std::io::stdout().flush();
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C: {e}");
    }
    eprintln!("shutting down after {} connection(s)", sim.connections());
    sim.shutdown().await;
}
