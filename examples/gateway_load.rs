//! How many Twilio calls one core of the gateway sustains: μ-law both ways in real time, the
//! simulator and the callers in other processes, the gateway alone in this one.
//!
//! ```text
//! cargo run --release --features server --example gateway_load                       # 25,50,100,200 calls
//! cargo run --release --features server --example gateway_load -- --calls 50,150 --seconds 20
//! cargo run --release --features server --example gateway_load -- --calls 4 --seconds 2 --warmup 2   # smoke
//! ```
//!
//! Three processes: this one runs the gateway on a one-worker tokio runtime (threads named
//! `gw`); a child runs the simulator (real-time pacing, audio deltas stamped with their send
//! time); another child runs the callers. Each caller is a Twilio Media Streams client: it
//! streams 20 ms μ-law frames (test speech, then silence) in real time, plays the answer in
//! real time and echoes marks as it plays, and every 8 s talks over the story it asked for
//! ("Tell me a long story.": barge-in, `clear`, truncation, a new story), so audio flows both
//! ways all the time.
//!
//! For each number of calls it prints one row:
//!
//! * `gw cores`: CPU time of the gateway's threads over the window, in cores (1.0 = the core
//!   is saturated);
//! * `ms CPU / call-s`: that CPU per call and second of call;
//! * `added delay p50/p99/max`: from the simulator handing an audio delta to its socket to
//!   the caller receiving that 20 ms frame from the gateway (model transport, session, bridge,
//!   pacer, caller socket; the simulator paces in real time, so the pacer adds no wait);
//! * `RSS KiB / call`: the gateway process's resident memory over its idle baseline, per call;
//! * `errors`: failed connects and calls that ended early. The exit code is 1 when there were
//!   any.
//!
//! All three processes share this machine's cores, so the callers and the simulator take CPU
//! from the gateway: read the figures as an upper bound of the gateway's cost.

#[path = "support/measure.rs"]
mod measure;

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use realtime_agents::audio::StreamResampler;
use realtime_agents::audio::g711::G711Law;
use realtime_agents::gateway::Gateway;
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::{audio_stamp, speech};
use realtime_agents::{FunctionTool, RealtimeAgent, RealtimeRunConfig};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use measure::{
    Histogram, args_or_exit, rss_kib, serve_stamping_simulator, spawn_server, threads_cpu,
};

const USAGE: &str = "usage: gateway_load [--calls N,N,...] [--seconds T] [--warmup W]\n\
     --calls     concurrent calls per step, comma-separated (default 25,50,100,200)\n\
     --seconds   measured window per step (default 10)\n\
     --warmup    seconds after all calls connected, before the window (default 3)\n\
     --serve     (internal) run the stamping simulator and print its URL\n\
     --callers   (internal) URL N SECONDS WARMUP: run the callers and print their figures";

const FRAME: usize = 160;
const SILENCE: u8 = 0xFF;
const BARGE_IN_EVERY: Duration = Duration::from_secs(8);

#[derive(Debug)]
enum Mode {
    Measure {
        calls: Vec<usize>,
        seconds: f64,
        warmup: f64,
    },
    Serve,
    Callers {
        url: String,
        calls: usize,
        seconds: f64,
        warmup: f64,
    },
}

fn parse_args() -> Result<Mode, String> {
    let mut calls = vec![25, 50, 100, 200];
    let (mut seconds, mut warmup) = (10.0, 3.0);
    let mut it = std::env::args().skip(1);
    let bad = |name: &str, e: &dyn std::fmt::Display| format!("bad {name}: {e}");
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--calls" => {
                calls = value(&arg)?
                    .split(',')
                    .map(|n| n.trim().parse().map_err(|e| bad(&arg, &e)))
                    .collect::<Result<_, _>>()?
            }
            "--seconds" => seconds = value(&arg)?.parse().map_err(|e| bad(&arg, &e))?,
            "--warmup" => warmup = value(&arg)?.parse().map_err(|e| bad(&arg, &e))?,
            "--serve" => return Ok(Mode::Serve),
            "--callers" => {
                let url = value(&arg)?;
                let calls = value(&arg)?.parse().map_err(|e| bad("N", &e))?;
                let seconds = value(&arg)?.parse().map_err(|e| bad("SECONDS", &e))?;
                let warmup = value(&arg)?.parse().map_err(|e| bad("WARMUP", &e))?;
                return Ok(Mode::Callers {
                    url,
                    calls,
                    seconds,
                    warmup,
                });
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Mode::Measure {
        calls,
        seconds,
        warmup,
    })
}

fn main() {
    match args_or_exit(parse_args(), USAGE) {
        Mode::Serve => serve_stamping_simulator(1),
        Mode::Callers {
            url,
            calls,
            seconds,
            warmup,
        } => callers(&url, calls, seconds, warmup),
        Mode::Measure {
            calls,
            seconds,
            warmup,
        } => {
            if let Err(e) = measure(&calls, seconds, warmup) {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway (this process) and the measurements

#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// The city.
    city: String,
}

fn measure(steps: &[usize], seconds: f64, warmup: f64) -> Result<(), String> {
    let (mut sim, sim_url) = spawn_server(&["--serve"])?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gw")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let max = steps.iter().copied().max().unwrap_or(1);
    let (gateway, addr) = rt.block_on(async {
        let weather = FunctionTool::new(
            "get_weather",
            "Get the current weather in a city.",
            |args: WeatherArgs| async move { Ok::<_, String>(format!("Sunny in {}", args.city)) },
        );
        let gateway = Gateway::builder(RealtimeAgent::new("Assistant").tool(weather))
            .model(
                OpenAIRealtimeWebSocketModel::builder()
                    .url(&sim_url)
                    .build(),
            )
            .run_config(RealtimeRunConfig::new().input_audio_batch(Duration::from_millis(100)))
            .max_sessions(max + 10)
            .build()
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = gateway.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok::<_, String>((gateway, addr))
    })?;
    let url = format!("ws://{addr}/twilio/stream");
    let baseline_kib = rss_kib();

    println!(
        "| calls | gw cores | ms CPU / call-s | added delay p50 / p99 / max (ms) | RSS KiB / call | errors |"
    );
    println!("|---|---|---|---|---|---|");
    let mut failed = false;
    for &calls in steps {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args(["--callers", &url, &calls.to_string()])
            .args([seconds.to_string(), warmup.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the callers: {e}"))?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no callers stdout")?).lines();
        // "ready": every call connected and warmed up; the window starts now.
        match lines.next() {
            Some(Ok(line)) if line == "ready" => {}
            other => return Err(format!("callers did not start: {other:?}")),
        }
        let (u0, s0) = threads_cpu("gw");
        let t0 = Instant::now();
        let live = gateway.active_sessions();
        let result: Value = match lines.next() {
            Some(Ok(line)) => serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?,
            other => return Err(format!("no result from the callers: {other:?}")),
        };
        let (u1, s1) = threads_cpu("gw");
        let window = t0.elapsed().as_secs_f64();
        let rss_per_call = rss_kib().saturating_sub(baseline_kib) as f64 / calls as f64;
        let _ = child.wait();
        let cpu = (u1 - u0) + (s1 - s0);
        let errors = result["errors"].as_u64().unwrap_or(1) + (live < calls) as u64;
        failed |= errors > 0;
        println!(
            "| {calls} | {:.2} | {:.2} | {:.1} / {:.1} / {:.1} | {:.0} | {errors} |",
            cpu / window,
            cpu * 1000.0 / (calls as f64 * window),
            result["p50_ms"].as_f64().unwrap_or(f64::NAN),
            result["p99_ms"].as_f64().unwrap_or(f64::NAN),
            result["max_ms"].as_f64().unwrap_or(f64::NAN),
            rss_per_call,
        );
        let _ = std::io::stdout().flush();
        // Let the calls of this step end before the next one starts.
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while gateway.active_sessions() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    drop(sim.stdin.take());
    let _ = sim.wait();
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The callers child

struct Stats {
    delays: Histogram,
    recording: std::sync::atomic::AtomicBool,
    errors: AtomicU64,
    frames: AtomicU64,
}

fn ulaw_speech(text: &str) -> Vec<u8> {
    let pcm: Vec<f32> = speech::encode_text(text)
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    let mut resampler = StreamResampler::new(speech::SAMPLE_RATE, 8_000).expect("resampler");
    let mut out = Vec::new();
    resampler.push(&pcm, &mut out);
    resampler.flush(&mut out);
    let samples: Vec<i16> = out
        .iter()
        .map(|&s| (s.clamp(-1.0, 1.0) * 32767.0) as i16)
        .collect();
    G711Law::Ulaw.encode_vec(&samples)
}

fn callers(url: &str, calls: usize, seconds: f64, warmup: f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("caller")
        .enable_all()
        .build()
        .expect("runtime");
    let stats = Arc::new(Stats {
        delays: Histogram::new(),
        recording: false.into(),
        errors: AtomicU64::new(0),
        frames: AtomicU64::new(0),
    });
    let speech = Arc::new(ulaw_speech("Tell me a long story."));
    rt.block_on(async {
        let end = tokio::time::Instant::now() + Duration::from_secs_f64(warmup + seconds + 5.0);
        let mut tasks = Vec::new();
        for i in 0..calls {
            let (url, stats, speech) = (url.to_owned(), stats.clone(), speech.clone());
            // Stagger the starts over a second so the barge-ins do not all coincide.
            let offset = Duration::from_millis((i * 1000 / calls.max(1)) as u64);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                if let Err(e) = call(&url, i, &speech, &stats, end).await {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("call {i}: {e}");
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(1.0 + warmup)).await;
        stats.delays.reset();
        stats.recording.store(true, Ordering::Relaxed);
        println!("ready");
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        stats.recording.store(false, Ordering::Relaxed);
        let q = |q: f64| stats.delays.quantile_ms(q);
        let max_ms = stats.delays.max_us.load(Ordering::Relaxed) as f64 / 1000.0;
        println!(
            "{}",
            json!({
                "p50_ms": q(0.5).map(|v| v.min(max_ms)),
                "p99_ms": q(0.99).map(|v| v.min(max_ms)),
                "max_ms": max_ms,
                "frames": stats.frames.load(Ordering::Relaxed),
                "errors": stats.errors.load(Ordering::Relaxed),
            })
        );
        let _ = std::io::stdout().flush();
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// One caller until `end`, then `stop`.
async fn call(
    url: &str,
    n: usize,
    speech: &[u8],
    stats: &Stats,
    end: tokio::time::Instant,
) -> Result<(), String> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    let (mut tx, mut rx) = ws.split();
    let sid = format!("MZload{n}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let start = json!({"event":"start","sequenceNumber":"1","streamSid":sid,"start":{"streamSid":sid,
        "callSid":format!("CAload{n}"),"customParameters":{},
        "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}});
    tx.send(Message::text(start.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let mut talk: VecDeque<u8> = speech.iter().copied().collect();
    let mut next_barge_in = tokio::time::Instant::now() + BARGE_IN_EVERY;
    // What the caller is "playing": frames, and marks behind them.
    let mut playing: VecDeque<Option<String>> = VecDeque::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let started = tokio::time::Instant::now();
    let mut chunk = 0u64;
    loop {
        let mut echoes = Vec::new();
        tokio::select! {
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                if now >= end {
                    let stop = json!({"event":"stop","streamSid":sid,"stop":{}});
                    let _ = tx.send(Message::text(stop.to_string())).await;
                    let _ = tx.close().await;
                    return Ok(());
                }
                if now >= next_barge_in {
                    talk.extend(speech.iter().copied());
                    next_barge_in += BARGE_IN_EVERY;
                }
                let frame: Vec<u8> = (0..FRAME).map(|_| talk.pop_front().unwrap_or(SILENCE)).collect();
                chunk += 1;
                let media = json!({"event":"media","streamSid":sid,"media":{"track":"inbound",
                    "chunk":chunk.to_string(),"timestamp":started.elapsed().as_millis().to_string(),
                    "payload":b64.encode(&frame)}});
                tx.send(Message::text(media.to_string())).await.map_err(|e| e.to_string())?;
                if matches!(playing.front(), Some(None)) {
                    playing.pop_front();
                }
                while let Some(Some(_)) = playing.front() {
                    if let Some(Some(name)) = playing.pop_front() {
                        echoes.push(name);
                    }
                }
            }
            message = rx.next() => {
                let Some(Ok(message)) = message else {
                    return Err("the gateway closed the call early".into());
                };
                let Message::Text(text) = message else {
                    if let Message::Close(_) = message {
                        return Err("the gateway closed the call early".into());
                    }
                    continue;
                };
                let v: Value = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
                match v["event"].as_str() {
                    Some("media") => {
                        let audio = b64
                            .decode(v["media"]["payload"].as_str().unwrap_or_default())
                            .map_err(|e| e.to_string())?;
                        if audio.len() != FRAME {
                            return Err(format!("a {}-byte frame", audio.len()));
                        }
                        if let Some(sent) = audio_stamp(&audio) {
                            if stats.recording.load(Ordering::Relaxed) {
                                let delay = SystemTime::now().duration_since(sent).unwrap_or_default();
                                stats.delays.record(delay.as_micros() as u64);
                                stats.frames.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        playing.push_back(None);
                    }
                    Some("mark") => {
                        let name = v["mark"]["name"].as_str().unwrap_or_default().to_owned();
                        if playing.is_empty() {
                            echoes.push(name);
                        } else {
                            playing.push_back(Some(name));
                        }
                    }
                    Some("clear") => {
                        echoes.extend(playing.drain(..).flatten());
                    }
                    _ => {}
                }
            }
        }
        for name in echoes {
            let echo = json!({"event":"mark","streamSid":sid,"mark":{"name":name}});
            tx.send(Message::text(echo.to_string()))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
}
