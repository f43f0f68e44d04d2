//! What the load harnesses (`loadtest`, `loopback_floor`) share: delay histograms, CPU time
//! and resident memory read from the kernel, and the plumbing of a server in a child process.

#![allow(dead_code)] // Each harness uses its own subset.

use std::sync::atomic::{AtomicU64, Ordering};

/// Delivery delays: 10 µs buckets up to 100 ms, then 1 ms buckets up to 10 s.
pub struct Histogram {
    fine: Vec<AtomicU64>,
    coarse: Vec<AtomicU64>,
    pub max_us: AtomicU64,
}

impl Histogram {
    pub fn new() -> Self {
        let h = Self {
            fine: (0..10_000).map(|_| AtomicU64::new(0)).collect(),
            coarse: (0..10_000).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        };
        h.reset();
        h
    }

    pub fn reset(&self) {
        for b in self.fine.iter().chain(&self.coarse) {
            b.store(0, Ordering::Relaxed);
        }
        self.max_us.store(0, Ordering::Relaxed);
    }

    pub fn record(&self, us: u64) {
        if us < 100_000 {
            self.fine[(us / 10) as usize].fetch_add(1, Ordering::Relaxed);
        } else {
            let i = ((us / 1000) as usize).min(self.coarse.len() - 1);
            self.coarse[i].fetch_add(1, Ordering::Relaxed);
        }
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The upper bound of the bucket holding quantile `q`, in ms.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<(u64, f64)> = self
            .fine
            .iter()
            .enumerate()
            .map(|(i, b)| (b.load(Ordering::Relaxed), (i + 1) as f64 * 0.01))
            .chain(
                self.coarse
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (b.load(Ordering::Relaxed), (i + 1) as f64)),
            )
            .collect();
        let total: u64 = counts.iter().map(|c| c.0).sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        counts.into_iter().find_map(|(n, upper)| {
            seen += n;
            (seen >= rank).then_some(upper)
        })
    }
}

/// Resident memory of this process, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// (user, system) CPU seconds of this process.
pub fn process_cpu() -> (f64, f64) {
    // SAFETY: `usage` is a valid, writable rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

/// (user, system) CPU seconds of this process's threads whose name starts with `prefix`.
pub fn threads_cpu(prefix: &str) -> (f64, f64) {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return total;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the name: state is field 3 of stat(5); utime and stime are fields 14 and 15.
        let get = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (get(14), get(15)) {
            total.0 += u / tick;
            total.1 += s / tick;
        }
    }
    total
}

/// CPU seconds (user + system) of another process.
pub fn pid_cpu(pid: u32) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    let u: f64 = fields.get(11)?.parse().ok()?;
    let s: f64 = fields.get(12)?.parse().ok()?;
    Some((u + s) / tick)
}

/// The command line after the program's name, for the harnesses' flag parsers.
pub struct Flags(std::iter::Skip<std::env::Args>);

impl Flags {
    pub fn new() -> Self {
        Self(std::env::args().skip(1))
    }

    /// The next flag (or switch).
    pub fn next_flag(&mut self) -> Option<String> {
        self.0.next()
    }

    /// The value that follows `flag`, parsed.
    pub fn value<T: std::str::FromStr>(&mut self, flag: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self
            .0
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        raw.parse().map_err(|e| format!("bad {flag}: {e}"))
    }
}

/// The parsed arguments, or exits: with the usage on `--help` (an empty error), with the error
/// and the usage (exit code 2) on a bad argument.
pub fn args_or_exit<T>(parsed: Result<T, String>, usage: &str) -> T {
    match parsed {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{usage}");
            std::process::exit(0);
        }
        Err(message) => {
            eprintln!("error: {message}\n{usage}");
            std::process::exit(2);
        }
    }
}

/// Starts this program again with `args` (its server mode) and returns the child with the first
/// line it printed (its address). The child ends when its stdin closes: see
/// [`wait_for_stdin_close`].
pub fn spawn_server(args: &[&str]) -> Result<(std::process::Child, String), String> {
    use std::io::BufRead as _;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no server stdout")?;
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok((child, line.trim().to_owned()))
}

/// Prints the server's address for [`spawn_server`] and blocks until stdin closes (the parent
/// exited or is done).
pub fn announce_and_wait(address: &str) {
    use std::io::{BufRead as _, Write as _};
    println!("{address}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
        line.clear();
    }
}

/// The `--serve` mode of the load harnesses: the simulator with stamped audio deltas and no
/// recording, on a runtime of `workers` threads named `sim`, until stdin closes.
pub fn serve_stamping_simulator(workers: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("sim")
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = realtime_agents::simulator::Simulator::builder()
            .stamp_audio(true)
            .record_client_events(false)
            .start()
            .await
            .expect("simulator");
        let url = sim.url();
        let _ = tokio::task::spawn_blocking(move || announce_and_wait(&url)).await;
        sim.shutdown().await;
    });
}
