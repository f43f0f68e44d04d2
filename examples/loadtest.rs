//! Many concurrent voice sessions against the simulator, with the client's cost measured.
//!
//! ```text
//! cargo run --release --example loadtest -- --sessions 500 --seconds 20
//! cargo run --release --example loadtest -- --sessions 4 --seconds 2       # smoke test
//! cargo run --release --example loadtest -- --in-process                   # simulator on its own runtime here
//! cargo run --release --example loadtest -- --url ws://127.0.0.1:8765/v1/realtime
//! ```
//!
//! Each session connects with an agent that has a `get_weather` tool, then streams microphone
//! audio in real time (20 ms chunks) in a 12-second cycle: it asks for a story (the assistant
//! streams speech back, paced in real time), interrupts it after a few seconds by asking for the
//! weather in Paris (server VAD cuts the story, the session truncates it), the tool runs and the
//! assistant answers, then silence. Sessions start at different points of the cycle.
//!
//! By default the simulator runs in a child process (this program with `--serve`, audio
//! deltas stamped with their send time), so the process measured holds only the client:
//! sessions, their tasks, the application loops and the microphone pacers. At the end it prints
//! one JSON line:
//!
//! * `sessions`, `seconds`: sessions connected and the length of the measured window;
//! * `audio_seconds`: audio moved both ways in the window (`chunks_in` + `chunks_out`, 20 ms each);
//! * `client_cpu_seconds` (`user` + `sys`), `cpu_us_per_chunk` (client CPU / chunks) and
//!   `cpu_ms_per_stream_second` (client CPU / (sessions × seconds));
//! * `delay_p50_ms`, `delay_p99_ms`, `delay_max_ms`: from the simulator handing an audio
//!   delta to its socket to the application receiving the PCM bytes;
//! * `rss_kib_per_session` (under load) and `rss_idle_kib_per_session` (connected, silent):
//!   resident memory over the baseline before connecting, divided by sessions;
//! * `errors`: session errors, failed connects and sessions that ended early. The exit code is 1
//!   when there were any.

#[path = "support/measure.rs"]
mod measure;
#[path = "support/mic.rs"]
mod mic;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::simulator::{Simulator, audio_stamp};
use realtime_agents::{
    FunctionTool, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSessionEvent as E,
    RealtimeSessionHandle,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};

use measure::{
    Histogram, args_or_exit, pid_cpu, process_cpu, rss_kib, serve_stamping_simulator, spawn_server,
    threads_cpu,
};
use mic::{CHUNK, PACER_GROUP, microphone_cycle, start_offset};

const USAGE: &str = "usage: loadtest [--sessions N] [--seconds T] [--workers W] [--in-process | --url URL]\n\
     --sessions    concurrent sessions (default 100)\n\
     --seconds     measured window after all sessions are connected and streaming (default 10)\n\
     --warmup      seconds of streaming before the window (default 3)\n\
     --workers     client runtime worker threads (default 2)\n\
     --batch-ms    send microphone audio in batches of up to this many ms (input_audio_batch; default 0)\n\
     --coalesce-ms let each session task sleep this long after a pass (wake_coalescing; default 0)\n\
     --in-process  run the simulator on a separate runtime in this process (RSS then includes it)\n\
     --url         use a running server (delays need one that stamps audio: sim_server --stamp-audio)\n\
     --serve       run only the stamping simulator and print its URL (used by the default mode)";

#[derive(Debug)]
struct Args {
    sessions: usize,
    seconds: f64,
    warmup: f64,
    workers: usize,
    batch_ms: u64,
    coalesce_ms: u64,
    in_process: bool,
    url: Option<String>,
    serve: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sessions: 100,
        seconds: 10.0,
        warmup: 3.0,
        workers: 2,
        batch_ms: 0,
        coalesce_ms: 0,
        in_process: false,
        url: None,
        serve: false,
    };
    let mut flags = measure::Flags::new();
    while let Some(arg) = flags.next_flag() {
        match arg.as_str() {
            "--sessions" => args.sessions = flags.value(&arg)?,
            "--seconds" => args.seconds = flags.value(&arg)?,
            "--warmup" => args.warmup = flags.value(&arg)?,
            "--workers" => args.workers = flags.value(&arg)?,
            "--batch-ms" => args.batch_ms = flags.value(&arg)?,
            "--coalesce-ms" => args.coalesce_ms = flags.value(&arg)?,
            "--in-process" => args.in_process = true,
            "--url" => args.url = Some(flags.value(&arg)?),
            "--serve" => args.serve = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    args.workers = args.workers.max(1);
    Ok(args)
}

fn main() {
    let args = args_or_exit(parse_args(), USAGE);
    if args.serve {
        serve_stamping_simulator(args.workers);
        return;
    }
    match run(&args) {
        Ok(report) => {
            println!("{}", report.json);
            if report.errors > 0 {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

#[derive(Default)]
struct Counters {
    chunks_in: AtomicU64,
    chunks_out: AtomicU64,
    unstamped: AtomicU64,
    tool_calls: AtomicU64,
    interruptions: AtomicU64,
    errors: AtomicU64,
}

struct Stats {
    counters: Counters,
    delays: Histogram,
    printed_errors: AtomicU64,
}

impl Stats {
    fn error(&self, what: impl std::fmt::Display) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        if self.printed_errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("session error: {what}");
        }
    }
}

/// Snapshot of the counters.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    chunks_in: u64,
    chunks_out: u64,
    unstamped: u64,
    tool_calls: u64,
    interruptions: u64,
}

impl Counters {
    fn snapshot(&self) -> Snapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            chunks_in: l(&self.chunks_in),
            chunks_out: l(&self.chunks_out),
            unstamped: l(&self.unstamped),
            tool_calls: l(&self.tool_calls),
            interruptions: l(&self.interruptions),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The sessions

#[derive(Deserialize, JsonSchema)]
struct WeatherArgs {
    /// The city.
    city: String,
}

/// Reads one session's events until told to stop.
async fn consume(
    mut session: realtime_agents::RealtimeSession,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            // Events first: the stop signal is looked at only when none is waiting.
            biased;
            event = session.next() => event,
            _ = stop.wait_for(|s| *s) => break,
        };
        let c = &stats.counters;
        match event {
            Some(E::Audio { data, .. }) => {
                c.chunks_out.fetch_add(1, Ordering::Relaxed);
                match audio_stamp(&data) {
                    Some(sent) => {
                        let delay = SystemTime::now()
                            .duration_since(sent)
                            .unwrap_or_default()
                            .as_micros() as u64;
                        stats.delays.record(delay);
                    }
                    None => {
                        c.unstamped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some(E::ToolStart { .. }) => {
                c.tool_calls.fetch_add(1, Ordering::Relaxed);
            }
            Some(E::AudioInterrupted { .. }) => {
                c.interruptions.fetch_add(1, Ordering::Relaxed);
            }
            Some(E::Error { error }) => stats.error(error),
            Some(E::Closed { error }) => {
                stats.error(format!("session closed early: {error:?}"));
                return;
            }
            Some(_) => {}
            None => {
                stats.error("session stream ended early");
                return;
            }
        }
    }
    session.close().await;
}

/// Feeds a group of sessions their microphone audio, one 20 ms chunk each per tick.
async fn pace(
    mut sessions: Vec<Option<(RealtimeSessionHandle, usize)>>,
    cycle: Arc<Vec<Bytes>>,
    stats: Arc<Stats>,
    stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CHUNK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut k = 0usize;
    while !*stop.borrow() {
        tick.tick().await;
        for slot in sessions.iter_mut() {
            let Some((handle, offset)) = slot else {
                continue;
            };
            let chunk = cycle[(k + *offset) % cycle.len()].clone();
            match handle.send_audio(chunk, false).await {
                Ok(()) => {
                    stats.counters.chunks_in.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    if !*stop.borrow() {
                        stats.error(format!("send_audio: {e}"));
                    }
                    *slot = None;
                }
            }
        }
        k += 1;
    }
}

struct Report {
    json: String,
    errors: u64,
}

/// The report's keys in a fixed order: the issue's fields first, then the details.
fn ordered_json(value: serde_json::Value) -> String {
    const ORDER: &[&str] = &[
        "sessions",
        "seconds",
        "audio_seconds",
        "client_cpu_seconds",
        "cpu_us_per_chunk",
        "delay_p50_ms",
        "delay_p99_ms",
        "delay_max_ms",
        "rss_kib_per_session",
        "errors",
    ];
    let Some(map) = value.as_object() else {
        return value.to_string();
    };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by_key(|k| ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()));
    let fields: Vec<String> = keys
        .into_iter()
        .map(|k| format!("{}:{}", serde_json::Value::from(k.as_str()), map[k]))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn run(args: &Args) -> Result<Report, String> {
    // The server: a child process (default), a runtime of its own here, or given.
    let mut child = None;
    let mut sim_runtime = None;
    let mut sim = None;
    let (url, server_kind) = if let Some(url) = &args.url {
        (url.clone(), "url")
    } else if args.in_process {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.workers)
            .thread_name("sim")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let s = rt
            .block_on(
                Simulator::builder()
                    .stamp_audio(true)
                    .record_client_events(false)
                    .start(),
            )
            .map_err(|e| e.to_string())?;
        let url = s.url();
        sim = Some(s);
        sim_runtime = Some(rt);
        (url, "in-process")
    } else {
        let (mut c, url) = spawn_server(&["--serve", "--workers", &args.workers.to_string()])?;
        if !url.starts_with("ws://") {
            let _ = c.kill();
            return Err(format!("the simulator said {url:?}"));
        }
        child = Some(c);
        (url, "child-process")
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .thread_name("client")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let stats = Arc::new(Stats {
        counters: Counters::default(),
        delays: Histogram::new(),
        printed_errors: AtomicU64::new(0),
    });
    let cycle = Arc::new(microphone_cycle());
    let model = OpenAIRealtimeWebSocketModel::builder()
        .url(url)
        .api_key("sk-loadtest")
        .build();
    let agent = RealtimeAgent::new("Assistant")
        .instructions("You are a helpful voice assistant.")
        .tool(FunctionTool::new(
            "get_weather",
            "Current weather in a city.",
            |args: WeatherArgs| async move {
                Ok::<_, String>(format!("Sunny and 21 degrees in {}", args.city))
            },
        ));
    let runner = RealtimeRunner::new(agent).model(model).config(
        RealtimeRunConfig::new()
            .input_audio_batch(Duration::from_millis(args.batch_ms))
            .wake_coalescing(Duration::from_millis(args.coalesce_ms)),
    );

    let client_cpu = || {
        if args.in_process {
            threads_cpu("client")
        } else {
            process_cpu()
        }
    };
    let rss_base = rss_kib();
    let n = args.sessions;
    let result = rt.block_on(async {
        let (stop_tx, stop) = watch::channel(false);
        // Connect, at most 64 handshakes at a time.
        let gate = Arc::new(Semaphore::new(64));
        let connects: Vec<_> = (0..n)
            .map(|_| {
                let runner = runner.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let _permit = gate.acquire().await;
                    runner.run(()).await
                })
            })
            .collect();
        let mut handles = Vec::with_capacity(n);
        let mut consumers = Vec::with_capacity(n);
        let mut connect_failures = 0u64;
        for (i, c) in connects.into_iter().enumerate() {
            match c.await {
                Ok(Ok(session)) => {
                    handles.push((session.handle(), start_offset(i, cycle.len())));
                    consumers.push(tokio::spawn(consume(session, stats.clone(), stop.clone())));
                }
                Ok(Err(e)) => {
                    connect_failures += 1;
                    stats.error(format!("connect: {e}"));
                }
                Err(e) => {
                    connect_failures += 1;
                    stats.error(format!("connect task: {e}"));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_idle = rss_kib();

        // Stream.
        let mut pacers = Vec::new();
        for group in handles.chunks(PACER_GROUP) {
            pacers.push(tokio::spawn(pace(
                group.iter().cloned().map(Some).collect(),
                cycle.clone(),
                stats.clone(),
                stop.clone(),
            )));
        }
        drop(handles);
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;

        // The measured window.
        stats.delays.reset();
        let before = stats.counters.snapshot();
        let cpu_before = client_cpu();
        let server_before = child.as_ref().and_then(|c| pid_cpu(c.id()));
        let started = Instant::now();
        let mut rss_peak = rss_kib();
        while started.elapsed().as_secs_f64() < args.seconds {
            tokio::time::sleep(Duration::from_millis(250)).await;
            rss_peak = rss_peak.max(rss_kib());
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_after = client_cpu();
        let server_after = child.as_ref().and_then(|c| pid_cpu(c.id()));
        let after = stats.counters.snapshot();
        let max = stats.delays.max_us.load(Ordering::Relaxed) as f64 / 1000.0;
        // Bucket upper bounds, never above the largest delay seen.
        let p50 = stats.delays.quantile_ms(0.50).map(|v| v.min(max));
        let p99 = stats.delays.quantile_ms(0.99).map(|v| v.min(max));

        // Wind down.
        let _ = stop_tx.send(true);
        for p in pacers {
            let _ = p.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            for c in consumers {
                let _ = c.await;
            }
        })
        .await;

        let user = cpu_after.0 - cpu_before.0;
        let sys = cpu_after.1 - cpu_before.1;
        let cpu = user + sys;
        let chunks_in = after.chunks_in - before.chunks_in;
        let chunks_out = after.chunks_out - before.chunks_out;
        let chunks = (chunks_in + chunks_out).max(1);
        let connected = (n as u64 - connect_failures).max(1);
        let errors = stats.counters.errors.load(Ordering::Relaxed);
        let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
        let json = ordered_json(serde_json::json!({
            "sessions": n as u64 - connect_failures,
            "seconds": round(elapsed, 2),
            "audio_seconds": round(chunks as f64 * 0.02, 1),
            "client_cpu_seconds": round(cpu, 3),
            "cpu_us_per_chunk": round(cpu * 1e6 / chunks as f64, 2),
            "delay_p50_ms": p50.map(|v| round(v, 2)),
            "delay_p99_ms": p99.map(|v| round(v, 2)),
            "delay_max_ms": round(max, 2),
            "rss_kib_per_session": round(rss_peak.saturating_sub(rss_base) as f64 / connected as f64, 1),
            "errors": errors,
            "cpu_ms_per_stream_second": round(cpu * 1e3 / (connected as f64 * elapsed), 4),
            "client_user_cpu_seconds": round(user, 3),
            "client_sys_cpu_seconds": round(sys, 3),
            "rss_idle_kib_per_session": round(rss_idle.saturating_sub(rss_base) as f64 / connected as f64, 1),
            "chunks_in": chunks_in,
            "chunks_out": chunks_out,
            "unstamped_chunks": after.unstamped - before.unstamped,
            "tool_calls": after.tool_calls - before.tool_calls,
            "interruptions": after.interruptions - before.interruptions,
            "connect_failures": connect_failures,
            "server": server_kind,
            "rss_includes_server": args.in_process,
            "server_cpu_seconds": server_before.zip(server_after).map(|(a, b)| round(b - a, 3)),
            "client_workers": args.workers,
            "input_audio_batch_ms": args.batch_ms,
            "wake_coalescing_ms": args.coalesce_ms,
        }));
        Report { json, errors }
    });
    drop(rt);
    drop(sim);
    drop(sim_runtime);
    if let Some(mut c) = child {
        drop(c.stdin.take());
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(result)
}
