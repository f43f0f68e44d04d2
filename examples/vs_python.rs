//! The same voice sessions through this library and through the official Python Agents SDK,
//! against the same simulator, with each client's CPU per second of audio side by side.
//!
//! ```text
//! bash tests/python_interop/run.sh                        # once: the venv (target/interop-venv)
//! cargo build --release --example loadtest --example vs_python
//! cargo run --release --example vs_python -- --sessions 8 --seconds 10 --warmup 3
//! cargo run --release --example vs_python -- --sessions 256 --seconds 10 --warmup 3 --rounds 2
//! cargo run --release --example vs_python -- --sessions 4 --seconds 2 --warmup 1   # smoke test
//! ```
//!
//! One stamping simulator runs in a child process (this program with `--serve`) for both
//! clients. The microphone cycle of `loadtest` (`examples/support/mic.rs`) is written to a temp
//! file as raw PCM16 24 kHz. Then, in each round, one after the other:
//!
//! * **Rust**: the `loadtest` example next to this binary (`target/<profile>/examples/loadtest`,
//!   build it first) with `--url` pointing at the simulator. It measures its own process, which
//!   holds only the client.
//! * **Python**: `tests/python_interop/load_peer.py` on the venv's interpreter, the sessions split
//!   over `--python-procs` processes (one interpreter runs on one core). Each session is an
//!   `agents.realtime.RealtimeSession` with the same agent, tool and paced microphone audio; each
//!   process measures its own CPU over the window (`getrusage`), and the processes start
//!   streaming together once all are connected.
//!
//! Both clients run the same `--sessions`, `--seconds` and `--warmup`. At the end it prints a
//! short summary and one JSON line with, per client (`rust`, `python`, totals over the rounds):
//!
//! * `cpu_seconds`: client CPU (`user` + `sys`) over the measured windows;
//! * `audio_seconds`: audio moved both ways (`chunks_in` microphone chunks sent + `chunks_out`
//!   audio chunks received, 20 ms each);
//! * `cpu_ms_per_audio_second` and `cpu_us_per_chunk`;
//! * `pace`: microphone chunks sent over those due (sessions × seconds × 50);
//! * `delay_p99_ms` (worst round; from the simulator handing an audio delta to its socket to the
//!   application receiving it);
//! * `pace_kept`: `pace` at least 0.95 and `delay_p99_ms` under 500 ms (a client that falls
//!   behind reads its audio late and moves fewer chunks: compare `chunks_out`);
//! * `tool_calls`, `interruptions` (as each SDK counts them), `errors`;
//!
//! and `ratio`: Python's CPU per audio second over Rust's. The exit code is 1 when either client
//! had errors or moved no audio, or when `--min-ratio` is given and the ratio is below it.

#[path = "support/measure.rs"]
mod measure;
#[path = "support/mic.rs"]
mod mic;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use serde_json::{Value, json};

use measure::{args_or_exit, serve_stamping_simulator, spawn_server};

const USAGE: &str = "usage: vs_python [--sessions N] [--seconds T] [--warmup W] [--rounds R] [--coalesce-ms M] [--rust-workers W] [--python PATH] [--python-procs P] [--min-ratio X]\n\
     --sessions      concurrent sessions per client (default 8)\n\
     --seconds       measured window (default 10)\n\
     --warmup        seconds of streaming before the window (default 3)\n\
     --rounds        Rust-then-Python rounds (default 1)\n\
     --coalesce-ms   the Rust sessions' wake_coalescing window (default 0: off, the default settings)\n\
     --rust-workers  the Rust client's tokio worker threads (loadtest --workers; default 2)\n\
     --python        the interpreter with openai-agents installed (default target/interop-venv/bin/python)\n\
     --python-procs  Python processes to split the sessions over (default: the number of cores)\n\
     --min-ratio     exit 1 when Python's CPU per audio second is less than X times Rust's\n\
     --write-pcm     write the microphone cycle (raw PCM16 24 kHz) to PATH and exit (for load_peer.py alone)\n\
     --serve         run only the stamping simulator and print its URL (used by the default mode)";

/// Microphone chunks each session sends per second.
const CHUNKS_PER_SECOND: f64 = 50.0;
/// A client keeps pace when it sends at least this share of the microphone chunks due…
const MIN_PACE: f64 = 0.95;
/// …and its delay p99 stays under this.
const MAX_P99_MS: f64 = 500.0;

struct Args {
    sessions: usize,
    seconds: f64,
    warmup: f64,
    rounds: usize,
    coalesce_ms: u64,
    rust_workers: usize,
    python: PathBuf,
    python_procs: usize,
    min_ratio: Option<f64>,
    write_pcm: Option<PathBuf>,
    serve: bool,
}

fn parse_args() -> Result<Args, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = Args {
        sessions: 8,
        seconds: 10.0,
        warmup: 3.0,
        rounds: 1,
        coalesce_ms: 0,
        rust_workers: 2,
        python: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python"),
        python_procs: cores,
        min_ratio: None,
        write_pcm: None,
        serve: false,
    };
    let mut flags = measure::Flags::new();
    while let Some(arg) = flags.next_flag() {
        match arg.as_str() {
            "--sessions" => args.sessions = flags.value(&arg)?,
            "--seconds" => args.seconds = flags.value(&arg)?,
            "--warmup" => args.warmup = flags.value(&arg)?,
            "--rounds" => args.rounds = flags.value(&arg)?,
            "--rust-workers" => args.rust_workers = flags.value(&arg)?,
            "--coalesce-ms" => args.coalesce_ms = flags.value(&arg)?,
            "--python" => args.python = flags.value(&arg)?,
            "--python-procs" => args.python_procs = flags.value(&arg)?,
            "--min-ratio" => args.min_ratio = Some(flags.value(&arg)?),
            "--write-pcm" => args.write_pcm = Some(flags.value(&arg)?),
            "--serve" => args.serve = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.sessions == 0 || args.rounds == 0 || args.seconds <= 0.0 || args.warmup < 0.0 {
        return Err("--sessions, --rounds and --seconds must be positive".into());
    }
    args.python_procs = args.python_procs.clamp(1, args.sessions);
    Ok(args)
}

fn main() {
    let args = args_or_exit(parse_args(), USAGE);
    if args.serve {
        serve_stamping_simulator(2);
        return;
    }
    if let Some(path) = &args.write_pcm {
        if let Err(e) = std::fs::write(path, mic::microphone_cycle().concat()) {
            eprintln!("error: {}: {e}", path.display());
            std::process::exit(1);
        }
        return;
    }
    match run(&args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One client's measurements

/// One client's totals over its runs (one per round, or one per Python process and round).
#[derive(Default)]
struct Totals {
    cpu_seconds: f64,
    chunks_in: u64,
    chunks_out: u64,
    /// Microphone chunks due: sessions × seconds × 50, summed over the runs.
    chunks_due: f64,
    tool_calls: u64,
    interruptions: u64,
    errors: u64,
    delay_p99_ms: Option<f64>,
    /// Whether any run failed to report (crashed, printed no JSON).
    failed_runs: u64,
}

impl Totals {
    /// Adds one run's JSON report (`loadtest` and `load_peer.py` share the field names).
    fn add(&mut self, report: &Value) -> Result<(), String> {
        let num = |key: &str| {
            report[key]
                .as_f64()
                .ok_or_else(|| format!("the report has no number {key:?}: {report}"))
        };
        let count = |key: &str| report[key].as_u64().unwrap_or(0);
        self.cpu_seconds += num("client_cpu_seconds")?;
        self.chunks_in += count("chunks_in");
        self.chunks_out += count("chunks_out");
        self.chunks_due += num("sessions")? * num("seconds")? * CHUNKS_PER_SECOND;
        self.tool_calls += count("tool_calls");
        self.interruptions += count("interruptions");
        self.errors += count("errors") + count("connect_failures");
        if let Some(p99) = report["delay_p99_ms"].as_f64() {
            self.delay_p99_ms = Some(self.delay_p99_ms.map_or(p99, |d| d.max(p99)));
        }
        Ok(())
    }

    fn chunks(&self) -> u64 {
        self.chunks_in + self.chunks_out
    }

    fn audio_seconds(&self) -> f64 {
        self.chunks() as f64 * mic::CHUNK.as_secs_f64()
    }

    fn cpu_ms_per_audio_second(&self) -> Option<f64> {
        (self.chunks() > 0).then(|| self.cpu_seconds * 1e3 / self.audio_seconds())
    }

    /// Microphone audio sent on time and received audio read without falling behind.
    fn pace_kept(&self) -> bool {
        self.pace() >= MIN_PACE && self.delay_p99_ms.is_none_or(|d| d < MAX_P99_MS)
    }

    fn pace(&self) -> f64 {
        if self.chunks_due > 0.0 {
            self.chunks_in as f64 / self.chunks_due
        } else {
            0.0
        }
    }

    fn json(&self) -> Value {
        let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
        json!({
            "cpu_seconds": round(self.cpu_seconds, 3),
            "audio_seconds": round(self.audio_seconds(), 1),
            "cpu_ms_per_audio_second": self.cpu_ms_per_audio_second().map(|v| round(v, 3)),
            "cpu_us_per_chunk": (self.chunks() > 0)
                .then(|| round(self.cpu_seconds * 1e6 / self.chunks() as f64, 2)),
            "pace": round(self.pace(), 3),
            "pace_kept": self.pace_kept(),
            "chunks_in": self.chunks_in,
            "chunks_out": self.chunks_out,
            "delay_p99_ms": self.delay_p99_ms,
            "tool_calls": self.tool_calls,
            "interruptions": self.interruptions,
            "errors": self.errors + self.failed_runs,
        })
    }

    fn summary(&self, name: &str) -> String {
        format!(
            "{name:>6}: {:.3} s CPU for {:.1} s of audio = {} ms CPU per audio second \
             ({} µs per chunk); mic pace {:.1}%, delay p99 {} ms{}; {} tool calls, {} errors",
            self.cpu_seconds,
            self.audio_seconds(),
            self.cpu_ms_per_audio_second()
                .map_or("-".into(), |v| format!("{v:.3}")),
            if self.chunks() > 0 {
                format!("{:.1}", self.cpu_seconds * 1e6 / self.chunks() as f64)
            } else {
                "-".into()
            },
            self.pace() * 100.0,
            self.delay_p99_ms.map_or("-".into(), |d| format!("{d:.1}")),
            if self.pace_kept() {
                " (kept)"
            } else {
                " (NOT kept)"
            },
            self.tool_calls,
            self.errors + self.failed_runs,
        )
    }
}

/// The last line of `output` that parses as a JSON object.
fn last_json(output: &str) -> Option<Value> {
    output
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(Value::is_object)
}

// ---------------------------------------------------------------------------------------------
// The clients

/// Runs the Rust client (`loadtest --url`) once; its JSON report.
fn run_rust(args: &Args, loadtest: &Path, url: &str) -> Result<Value, String> {
    let output = Command::new(loadtest)
        .args(["--url", url])
        .args(["--sessions", &args.sessions.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--coalesce-ms", &args.coalesce_ms.to_string()])
        .args(["--workers", &args.rust_workers.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", loadtest.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    last_json(&stdout)
        .ok_or_else(|| format!("loadtest printed no report ({}): {stdout}", output.status))
}

/// A Python peer process and its stdout, read line by line.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs the Python client once, over `--python-procs` processes; their JSON reports.
fn run_python(
    args: &Args,
    peer_script: &Path,
    pcm: &Path,
    url: &str,
) -> Result<Vec<Value>, String> {
    let procs = args.python_procs;
    let mut peers = Vec::with_capacity(procs);
    let mut first = 0;
    for p in 0..procs {
        // Sessions split as evenly as they go; the first ones take the remainder.
        let n = args.sessions / procs + usize::from(p < args.sessions % procs);
        let mut child = Command::new(&args.python)
            .arg(peer_script)
            .args(["--url", url])
            .arg("--pcm")
            .arg(pcm)
            .args(["--sessions", &n.to_string()])
            .args(["--seconds", &args.seconds.to_string()])
            .args(["--warmup", &args.warmup.to_string()])
            .args(["--first-index", &first.to_string()])
            .arg("--sync")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", args.python.display()))?;
        first += n;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or("no stdout from the Python peer")?;
        peers.push(Peer {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        });
    }
    // Every process connects its sessions, then all start streaming together.
    for (p, peer) in peers.iter_mut().enumerate() {
        let mut line = String::new();
        loop {
            line.clear();
            let read = peer
                .stdout
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            if read == 0 {
                return Err(format!(
                    "Python peer {p} exited before connecting ({})",
                    peer.child.wait().map_or("?".into(), |s| s.to_string())
                ));
            }
            if line.trim() == "ready" {
                break;
            }
        }
    }
    for peer in &mut peers {
        if let Some(stdin) = peer.stdin.as_mut() {
            stdin
                .write_all(b"go\n")
                .and_then(|()| stdin.flush())
                .map_err(|e| format!("cannot start a Python peer: {e}"))?;
        }
    }
    let mut reports = Vec::with_capacity(procs);
    for (p, peer) in peers.iter_mut().enumerate() {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut peer.stdout, &mut rest);
        drop(peer.stdin.take());
        let status = peer.child.wait().map_err(|e| e.to_string())?;
        match last_json(&rest) {
            Some(report) => reports.push(report),
            None => {
                eprintln!("Python peer {p} printed no report ({status}): {rest}");
                reports.push(Value::Null);
            }
        }
    }
    Ok(reports)
}

// ---------------------------------------------------------------------------------------------

/// Removes the file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(args: &Args) -> Result<i32, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let loadtest = exe.with_file_name(format!("loadtest{}", std::env::consts::EXE_SUFFIX));
    if !loadtest.is_file() {
        return Err(format!(
            "{} not found: build it with the same profile first (cargo build --release --example loadtest)",
            loadtest.display()
        ));
    }
    let peer_script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_interop/load_peer.py");
    if !args.python.is_file() {
        return Err(format!(
            "{} not found: create the venv with `bash tests/python_interop/run.sh` or pass --python",
            args.python.display()
        ));
    }

    // The microphone cycle, for the Python peer.
    let pcm = TempFile(std::env::temp_dir().join(format!("vs_python-{}.pcm", std::process::id())));
    let cycle: Vec<u8> = mic::microphone_cycle().concat();
    std::fs::write(&pcm.0, &cycle).map_err(|e| format!("{}: {e}", pcm.0.display()))?;

    // The one server both clients talk to.
    let (mut server, url) = spawn_server(&["--serve"])?;
    let result = (|| {
        if !url.starts_with("ws://") {
            return Err(format!("the simulator said {url:?}"));
        }
        let mut rust = Totals::default();
        let mut python = Totals::default();
        let mut rounds = Vec::new();
        for round in 1..=args.rounds {
            eprintln!(
                "round {round}/{}: Rust, {} sessions",
                args.rounds, args.sessions
            );
            let mut rust_round = Totals::default();
            match run_rust(args, &loadtest, &url) {
                Ok(report) => {
                    rust.add(&report)?;
                    rust_round.add(&report)?;
                }
                Err(e) => {
                    eprintln!("{e}");
                    rust.failed_runs += 1;
                    rust_round.failed_runs += 1;
                }
            }
            eprintln!(
                "round {round}/{}: Python, {} sessions over {} processes",
                args.rounds, args.sessions, args.python_procs
            );
            let mut python_round = Totals::default();
            for report in run_python(args, &peer_script, &pcm.0, &url)? {
                if report.is_null() {
                    python.failed_runs += 1;
                    python_round.failed_runs += 1;
                } else {
                    python.add(&report)?;
                    python_round.add(&report)?;
                }
            }
            let round3 = |v: Option<f64>| v.map(|v| (v * 1e3).round() / 1e3);
            rounds.push(json!({
                "ratio": round3(ratio(&python_round, &rust_round)),
                "rust_cpu_ms_per_audio_second": round3(rust_round.cpu_ms_per_audio_second()),
                "python_cpu_ms_per_audio_second": round3(python_round.cpu_ms_per_audio_second()),
                "rust_delay_p99_ms": rust_round.delay_p99_ms,
                "python_delay_p99_ms": python_round.delay_p99_ms,
                "rust_pace_kept": rust_round.pace_kept(),
                "python_pace_kept": python_round.pace_kept(),
            }));
        }
        Ok((rust, python, rounds))
    })();
    drop(server.stdin.take());
    let _ = server.kill();
    let _ = server.wait();
    let (rust, python, rounds) = result?;

    let ratio = ratio(&python, &rust);
    // The keys in this order (serde_json's map would sort them).
    let fields = [
        ("sessions", json!(args.sessions)),
        ("seconds", json!(args.seconds)),
        ("warmup", json!(args.warmup)),
        ("rounds", json!(args.rounds)),
        ("python_procs", json!(args.python_procs)),
        ("rust_workers", json!(args.rust_workers)),
        ("rust_wake_coalescing_ms", json!(args.coalesce_ms)),
        ("ratio", json!(ratio.map(|r| (r * 100.0).round() / 100.0))),
        ("rust", rust.json()),
        ("python", python.json()),
        ("per_round", json!(rounds)),
    ];
    let report = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
        .collect::<Vec<_>>()
        .join(",");
    println!("{}", rust.summary("Rust"));
    println!("{}", python.summary("Python"));
    match ratio {
        Some(r) => println!("ratio: Python uses {r:.2}× the CPU of Rust per second of audio"),
        None => println!("ratio: - (a client moved no audio)"),
    }
    println!("{{{report}}}");

    let mut code = 0;
    for (name, t) in [("Rust", &rust), ("Python", &python)] {
        if t.errors + t.failed_runs > 0 {
            eprintln!("fail: the {name} client had errors");
            code = 1;
        }
        if t.chunks_in == 0 {
            eprintln!("fail: the {name} client sent no audio in the window");
            code = 1;
        }
        if t.chunks_out == 0 {
            eprintln!(
                "fail: the {name} client received no audio in the window (a longer --seconds?)"
            );
            code = 1;
        }
    }
    if let (Some(min), Some(r)) = (args.min_ratio, ratio)
        && r < min
    {
        eprintln!("fail: ratio {r:.2} below --min-ratio {min}");
        code = 1;
    }
    Ok(code)
}

/// Python's CPU per audio second over Rust's.
fn ratio(python: &Totals, rust: &Totals) -> Option<f64> {
    Some(python.cpu_ms_per_audio_second()? / rust.cpu_ms_per_audio_second()?)
        .filter(|r| r.is_finite())
}
