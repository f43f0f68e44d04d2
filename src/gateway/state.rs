//! Admission, drain and the load figure: the only state a gateway keeps, and none of it is
//! shared between calls.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::metrics;

/// Which kind of caller a call came from; a label on every metric.
///
/// ```
/// use realtime_agents::gateway::Transport;
/// assert_eq!(Transport::Browser.as_str(), "browser");
/// assert_eq!(Transport::Carrier("twilio").to_string(), "twilio");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// The gateway's own web page.
    Browser,
    /// A phone carrier's media stream, by serializer name (`"twilio"`, `"telnyx"`).
    Carrier(&'static str),
}

impl Transport {
    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Transport::Browser => "browser",
            Transport::Carrier(name) => name,
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a new call was refused (answered with HTTP 503 and this reason as the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Draining,
    Full,
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Draining => "draining: this replica takes no new calls",
            Refusal::Full => "full: this replica is at its session limit",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Draining => "draining",
            Refusal::Full => "full",
        }
    }
}

/// Gateway-wide counters and switches. Calls only take and return a [`Permit`].
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) max_sessions: usize,
    active: AtomicUsize,
    draining: AtomicBool,
    /// Cancelled at the drain deadline: live calls close.
    pub(crate) hard_stop: CancellationToken,
    /// Every call task, so a drain can wait for them (axum spawns upgraded sockets detached).
    pub(crate) tasks: TaskTracker,
    cpu: Mutex<CpuAverage>,
    /// The last load figure, as `f64` bits.
    load: AtomicU64,
    sampler_started: AtomicBool,
}

impl State {
    pub(crate) fn new(max_sessions: usize, cpu_cores: f64) -> Self {
        metrics::set_max_sessions(max_sessions);
        metrics::set_draining(false);
        Self {
            max_sessions,
            active: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            hard_stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            cpu: Mutex::new(CpuAverage::new(cpu_cores)),
            load: AtomicU64::new(0f64.to_bits()),
            sampler_started: AtomicBool::new(false),
        }
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Takes a session slot, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, transport: Transport) -> Result<Permit, Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        let taken = self
            .active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_sessions).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Refusal::Full);
        }
        // A drain that started between the check and the increment still wins.
        if self.is_draining() {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Draining);
        }
        metrics::session_opened(transport);
        self.refresh_load();
        Ok(Permit {
            state: self.clone(),
            transport,
        })
    }

    /// Refuses new calls from now on; live calls go on. Returns `false` if already draining.
    pub(crate) fn start_drain(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::SeqCst);
        if first {
            metrics::set_draining(true);
            self.tasks.close();
        }
        first
    }

    /// The load figure in [0, 1]: the larger of the CPU share (moving average) and the share
    /// of session slots taken.
    pub(crate) fn load(&self) -> f64 {
        f64::from_bits(self.load.load(Ordering::Relaxed))
    }

    pub(crate) fn cpu(&self) -> f64 {
        self.cpu.lock().unwrap_or_else(|e| e.into_inner()).average()
    }

    fn refresh_load(&self) {
        let slots = self.active() as f64 / self.max_sessions.max(1) as f64;
        let load = slots.max(self.cpu()).clamp(0.0, 1.0);
        self.load.store(load.to_bits(), Ordering::Relaxed);
        metrics::set_load(load);
    }

    /// Starts the background sampler (CPU every 0.5 s, Prometheus upkeep every 5 s) once,
    /// if a tokio runtime is running. It stops when the gateway is dropped.
    pub(crate) fn start_sampler(
        self: &Arc<Self>,
        prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) {
        if self.sampler_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sampler_started.store(false, Ordering::SeqCst);
            return;
        };
        let weak: Weak<State> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut ticks = 0u64;
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else { break };
                state.cpu.lock().unwrap_or_else(|e| e.into_inner()).sample();
                state.refresh_load();
                ticks += 1;
                if ticks.is_multiple_of(10) {
                    if let Some(handle) = &prometheus {
                        handle.run_upkeep();
                    }
                }
            }
        });
    }
}

/// One admitted call. Dropping it frees the slot and updates the gauges, however the call
/// ended (a panic included).
#[derive(Debug)]
pub(crate) struct Permit {
    state: Arc<State>,
    transport: Transport,
}

impl Permit {
    pub(crate) fn state(&self) -> &Arc<State> {
        &self.state
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Ordering::SeqCst);
        metrics::session_closed(self.transport);
        self.state.refresh_load();
    }
}

/// Process CPU time as a share of the cores the gateway may use, averaged over the last five
/// samples (2.5 s at the sampler's pace), as LiveKit workers do.
#[derive(Debug)]
struct CpuAverage {
    cores: f64,
    last: Option<(Instant, f64)>,
    samples: [f64; 5],
    filled: usize,
    next: usize,
}

impl CpuAverage {
    fn new(cores: f64) -> Self {
        Self {
            cores: cores.max(0.01),
            last: None,
            samples: [0.0; 5],
            filled: 0,
            next: 0,
        }
    }

    fn sample(&mut self) {
        let Some(cpu) = process_cpu_seconds() else {
            return;
        };
        let now = Instant::now();
        if let Some((then, before)) = self.last {
            let wall = now.duration_since(then).as_secs_f64();
            if wall > 0.0 {
                let share = ((cpu - before) / wall / self.cores).clamp(0.0, 1.0);
                self.samples[self.next] = share;
                self.next = (self.next + 1) % self.samples.len();
                self.filled = (self.filled + 1).min(self.samples.len());
            }
        }
        self.last = Some((now, cpu));
    }

    fn average(&self) -> f64 {
        if self.filled == 0 {
            return 0.0;
        }
        self.samples[..self.filled].iter().sum::<f64>() / self.filled as f64
    }
}

/// User + system CPU seconds of this process (Linux; `None` elsewhere).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may contain spaces: state is field 3 of stat(5),
    // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
