//! What the gateway reports through the [`metrics`] facade, and a Prometheus recorder for it.
//!
//! Names follow the Prometheus conventions (base units, `_total` counters, no call ids as
//! labels). Labels: `transport` (`browser`, `twilio`, `telnyx`...), and `outcome`, `reason` or
//! `kind` where named.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `realtime_gateway_active_sessions{transport}` | gauge | calls in progress |
//! | `realtime_gateway_sessions_total{transport,outcome}` | counter | ended calls by outcome (`completed`, `caller_gone`, `drained`, `protocol_error`, `session_error`, `refused_token`) |
//! | `realtime_gateway_refused_total{transport,reason}` | counter | calls refused (`full`, `draining`, `origin`) |
//! | `realtime_gateway_turns_total{transport}` | counter | assistant responses finished |
//! | `realtime_gateway_first_audio_latency_seconds{transport}` | histogram | end of the caller's speech to the first answer audio sent |
//! | `realtime_gateway_barge_in_seconds{transport}` | histogram | caller starts speaking to the playback flush sent (`clear`) |
//! | `realtime_gateway_session_duration_seconds{transport}` | histogram | call length |
//! | `realtime_gateway_errors_total{transport,kind}` | counter | malformed frames, session errors, failed session starts |
//! | `realtime_gateway_load` | gauge | the [load figure](super::Gateway::load), 0 to 1 |
//! | `realtime_gateway_draining` | gauge | 1 while draining |
//! | `realtime_gateway_max_sessions` | gauge | the session limit |

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use super::Transport;

pub(crate) const ACTIVE: &str = "realtime_gateway_active_sessions";
pub(crate) const SESSIONS: &str = "realtime_gateway_sessions_total";
pub(crate) const REFUSED: &str = "realtime_gateway_refused_total";
pub(crate) const TURNS: &str = "realtime_gateway_turns_total";
pub(crate) const FIRST_AUDIO: &str = "realtime_gateway_first_audio_latency_seconds";
pub(crate) const BARGE_IN: &str = "realtime_gateway_barge_in_seconds";
pub(crate) const DURATION: &str = "realtime_gateway_session_duration_seconds";
pub(crate) const ERRORS: &str = "realtime_gateway_errors_total";
pub(crate) const LOAD: &str = "realtime_gateway_load";
pub(crate) const DRAINING: &str = "realtime_gateway_draining";
pub(crate) const MAX_SESSIONS: &str = "realtime_gateway_max_sessions";

/// Latency buckets, 50 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];
/// Call length buckets, 5 s to 1 h.
const DURATION_BUCKETS: &[f64] = &[5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// Installs a Prometheus recorder as the process's global [`metrics`] recorder, with
/// histogram buckets for the gateway's metrics, and returns the handle whose
/// [`render`](PrometheusHandle::render) the gateway serves on `/metrics` (pass it to
/// [`GatewayBuilder::prometheus`](super::GatewayBuilder::prometheus)).
///
/// Fails if another global recorder is installed already. The gateway runs the handle's
/// upkeep every 5 s.
///
/// ```no_run
/// let handle = realtime_agents::gateway::install_prometheus()?;
/// assert!(handle.render().is_empty() || handle.render().contains("# TYPE"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), DURATION_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)?
        .install_recorder()
}

/// Makes the gauge of `transport` exist (at 0) before its first call, for dashboards.
pub(crate) fn register(transport: Transport) {
    gauge!(ACTIVE, "transport" => transport.as_str()).increment(0.0);
}

pub(crate) fn session_opened(transport: Transport) {
    gauge!(ACTIVE, "transport" => transport.as_str()).increment(1.0);
}

pub(crate) fn session_closed(transport: Transport) {
    gauge!(ACTIVE, "transport" => transport.as_str()).decrement(1.0);
}

pub(crate) fn session_ended(transport: Transport, outcome: &'static str, duration: Duration) {
    counter!(SESSIONS, "transport" => transport.as_str(), "outcome" => outcome).increment(1);
    histogram!(DURATION, "transport" => transport.as_str()).record(duration.as_secs_f64());
}

pub(crate) fn refused(transport: Transport, reason: &'static str) {
    counter!(REFUSED, "transport" => transport.as_str(), "reason" => reason).increment(1);
}

pub(crate) fn turn(transport: Transport) {
    counter!(TURNS, "transport" => transport.as_str()).increment(1);
}

pub(crate) fn first_audio(transport: Transport, latency: Duration) {
    histogram!(FIRST_AUDIO, "transport" => transport.as_str()).record(latency.as_secs_f64());
}

pub(crate) fn barge_in(transport: Transport, latency: Duration) {
    histogram!(BARGE_IN, "transport" => transport.as_str()).record(latency.as_secs_f64());
}

pub(crate) fn error(transport: Transport, kind: &'static str) {
    counter!(ERRORS, "transport" => transport.as_str(), "kind" => kind).increment(1);
}

pub(crate) fn set_load(load: f64) {
    gauge!(LOAD).set(load);
}

pub(crate) fn set_draining(draining: bool) {
    gauge!(DRAINING).set(if draining { 1.0 } else { 0.0 });
}

pub(crate) fn set_max_sessions(max: usize) {
    gauge!(MAX_SESSIONS).set(max as f64);
}
