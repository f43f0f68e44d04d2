//! A voice gateway: browsers and phone calls to sessions, in one axum app (feature `server`).
//!
//! [`Gateway::builder`] takes the agent (and the model, run configuration and session
//! settings every call's session is made of); [`Gateway::router`] is the axum app:
//!
//! | route | what |
//! |---|---|
//! | `GET /` (`/app.js`, `/capture-worklet.js`, `/playback-worklet.js`) | the voice page, plain HTML and JS embedded in the binary |
//! | `GET /ws` | the [browser socket](#browser-socket) |
//! | `POST /twilio/voice` | the TwiML webhook for incoming calls: `<Connect><Stream>` to `/twilio/stream` |
//! | `GET /twilio/stream` | Twilio Media Streams ([`TwilioSerializer`](carrier::TwilioSerializer)) |
//! | `GET /telnyx/stream` | Telnyx media streaming ([`TelnyxSerializer`](carrier::TelnyxSerializer)) |
//! | `GET /healthz` | liveness: 200 while the process serves |
//! | `GET /readyz` | readiness: 503 `draining` or `full`, else 200 |
//! | `GET /load` | JSON: the [load figure](Gateway::load), sessions, limit, draining |
//! | `GET /metrics` | Prometheus text (with [`GatewayBuilder::prometheus`]; see [`metrics`](mod@metrics)) |
//!
//! Every call gets its own session, playback tracker and `call` tracing span (field
//! `call_id`, plus `carrier_call_id` and `stream_id` once a carrier says them); calls share
//! nothing, so replicas scale out behind any load balancer. A call over the limit
//! ([`GatewayBuilder::max_sessions`]) or during a drain is refused before the upgrade with
//! HTTP 503 and the reason as the body.
//!
//! ```no_run
//! use realtime_agents::RealtimeAgent;
//! use realtime_agents::gateway::{Gateway, shutdown_signal};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let gateway = Gateway::builder(RealtimeAgent::new("Assistant").instructions("Be brief."))
//!     .max_sessions(200)
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! // On SIGTERM: readiness fails at once, new calls get 503, live calls finish (or are
//! // closed at the drain deadline), then `serve` returns.
//! gateway.serve(listener, shutdown_signal()).await?;
//! # Ok(()) }
//! ```
//!
//! # Browser socket
//!
//! `GET /ws`, checked against the allowed origins ([`GatewayBuilder::allowed_origins`]; by
//! default the page's own origin). Audio is binary frames of PCM16 little-endian mono at
//! 24 kHz both ways; everything else is JSON text with a `type`.
//!
//! From the page: `{"type":"played","item_id","content_index","played_ms"}` (what the playback
//! worklet has played of an item: the session truncates there on barge-in),
//! `{"type":"message","text"}`, `{"type":"interrupt"}`.
//!
//! To the page: `ready {call_id, sample_rate}` once the session is up; `audio {item_id,
//! content_index}` before the first binary frame of an item; `audio_end`; `interrupted
//! {item_id, played_ms}` (flush playback now); `transcript_delta {role, item_id, delta}`;
//! `user_transcript {item_id, transcript}`; `tool_start {tool, call_id, arguments}`;
//! `tool_end {tool, call_id, output, is_error}`; `speech_started`, `speech_stopped`,
//! `agent_start`, `agent_end`, `handoff`, `error {message}`; `closed {reason}` last.
//!
//! A malformed frame (not JSON, an odd-sized PCM frame) closes the call with code 1007; a
//! well-formed message of an unknown `type` is logged once and ignored.
//!
//! # Phone calls
//!
//! A carrier stream speaks G.711 at 8 kHz, and so does its session (the session's input and
//! output formats are set to the stream's, so no transcoding happens in the gateway; the real
//! API and the simulator both take `audio/pcmu` and `audio/pcma`). The bridge
//! ([`carrier`] has the details):
//!
//! * sends the answer in fixed 20 ms frames (160 bytes of μ-law), paced on absolute deadlines
//!   from a monotonic clock with a small lead ([`GatewayBuilder::outbound_lead`], 100 ms), so
//!   the carrier's buffer never holds more than that;
//! * sends a `mark` every [`GatewayBuilder::mark_interval`] (100 ms) of audio and at the end
//!   of each item; an echo means the caller heard up to there, and only echoes feed the call's
//!   [`AckPlaybackTracker`], so a barge-in truncates at what the caller heard;
//! * on [`AudioInterrupted`](crate::RealtimeSessionEvent::AudioInterrupted) drops its queue,
//!   sends `clear` and forgets pending marks, so the echoes `clear` provokes are ignored;
//! * fills gaps in the caller's audio (from the carrier's timestamps) with silence, so turn
//!   detection is not starved on calls without silent chunks;
//! * surfaces DTMF as [`GatewayEvent::Dtmf`] at once, and tells the model the digits as one
//!   user message `"DTMF: 12#"` after a pause ([`GatewayBuilder::dtmf_to_model`], 1.5 s) or
//!   at `#`, which asks for a response: menus and PIN entry work without extra code.
//! * ends the session on `stop`; a caller that vanishes without `stop`, a malformed frame or a
//!   stream without `start` ends it too, with a log line saying which.
//!
//! The TwiML webhook answers `<Connect><Stream url="wss://{host}/twilio/stream">` with the
//! call's `CallSid` as a `<Parameter>` and a `<Say>` after `</Connect>`, which Twilio plays if
//! the gateway closes the stream (a drain deadline, a failed session start).
//!
//! Authentication: [`GatewayBuilder::twilio_auth_token`] checks Twilio's `X-Twilio-Signature`
//! on the webhook and on the stream's upgrade. Twilio strips query strings from stream URLs,
//! so [`GatewayBuilder::stream_secret`] puts a token in the TwiML as a `<Parameter>` (an HMAC
//! of the `CallSid` and an expiry, checkable by any replica) and closes streams whose `start`
//! lacks a valid one for its `callSid`; [`GatewayBuilder::verify_stream`] adds your own check
//! of the `start` and its parameters. All of them run before a session is opened.

mod auth;
mod browser;
pub mod carrier;
pub mod metrics;
mod phone;
mod playback;
mod router;
mod session;
mod socket;
mod state;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use auth::twilio_signature;
pub use metrics::install_prometheus;
pub use metrics_exporter_prometheus::PrometheusHandle;
pub use playback::AckPlaybackTracker;
pub use session::CallInfo;
pub use state::Transport;

use crate::model::{OpenAIRealtimeWebSocketModel, RealtimeModel, SessionSettings};
use crate::{Error, RealtimeAgent, RealtimeRunConfig};
use carrier::{CarrierSerializer, StreamStart};
use session::SessionRecipe;
use state::State;

/// What the gateway tells the application about calls (see [`GatewayBuilder::on_event`]).
///
/// ```
/// use realtime_agents::gateway::GatewayEvent;
/// fn log(event: &GatewayEvent) {
///     match event {
///         GatewayEvent::Dtmf { call_id, digit } => println!("{call_id} pressed {digit}"),
///         GatewayEvent::CallEnded { call_id, outcome, .. } => println!("{call_id}: {outcome}"),
///         _ => {}
///     }
/// }
/// # let _ = log;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GatewayEvent {
    /// A call's session started.
    CallStarted {
        /// The call.
        call: CallInfo,
    },
    /// A phone caller pressed a key.
    Dtmf {
        /// The gateway's call id.
        call_id: String,
        /// The key: `0`-`9`, `*`, `#`, `A`-`D`.
        digit: String,
    },
    /// A call ended (whether or not its session had started).
    CallEnded {
        /// The gateway's call id.
        call_id: String,
        /// Where it came from.
        transport: Transport,
        /// How it ended: `completed` (a `stop`, the page closed, the session closed),
        /// `caller_gone` (the socket ended without `stop`), `drained` (closed at the drain
        /// deadline), `protocol_error` (a malformed frame, no `start`), `session_error`
        /// (the session could not start or failed), `refused_token` (the stream check failed).
        outcome: &'static str,
        /// How long the socket was up.
        duration: Duration,
    },
}

/// How a [`Gateway::drain`] went.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> realtime_agents::Result<()> {
/// use realtime_agents::RealtimeAgent;
/// use realtime_agents::gateway::Gateway;
/// let gateway = Gateway::builder(RealtimeAgent::new("Assistant")).build()?;
/// let report = gateway.drain().await; // no calls: returns at once
/// assert_eq!((report.live_at_start, report.closed_at_deadline), (0, 0));
/// assert!(gateway.is_draining());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Calls live when the drain started.
    pub live_at_start: usize,
    /// Calls still live at the deadline, closed by the gateway.
    pub closed_at_deadline: usize,
}

type EventFn = Arc<dyn Fn(&GatewayEvent) + Send + Sync>;
type VerifyFn = Arc<dyn Fn(&StreamStart) -> bool + Send + Sync>;
type SerializerFn = Arc<dyn Fn() -> Box<dyn CarrierSerializer> + Send + Sync>;

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) drain_timeout: Duration,
    pub(crate) mark_interval: Duration,
    pub(crate) outbound_lead: Duration,
    pub(crate) dtmf_to_model: Option<Duration>,
    pub(crate) start_timeout: Duration,
    pub(crate) greet: bool,
    pub(crate) max_message_bytes: usize,
    pub(crate) fallback_say: String,
}

/// What the gateway's handlers share: configuration and the admission state.
pub(crate) struct Inner {
    pub(crate) state: Arc<State>,
    pub(crate) recipe: SessionRecipe,
    pub(crate) options: Options,
    pub(crate) origins: Vec<String>,
    pub(crate) public_url: Option<String>,
    pub(crate) prometheus: Option<PrometheusHandle>,
    pub(crate) on_event: Option<EventFn>,
    pub(crate) verify_stream: Option<VerifyFn>,
    pub(crate) carriers: Vec<(String, SerializerFn)>,
    pub(crate) twilio_auth_token: Option<String>,
    pub(crate) stream_secret: Option<String>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("state", &self.state)
            .field("options", &self.options)
            .field("origins", &self.origins)
            .field("public_url", &self.public_url)
            .field(
                "carriers",
                &self.carriers.iter().map(|c| &c.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn emit(&self, event: GatewayEvent) {
        if let Some(on_event) = &self.on_event {
            on_event(&event);
        }
    }

    /// The end of a call, however it went: one log line in its span, the metrics, the event.
    pub(crate) fn call_ended(
        &self,
        span: &tracing::Span,
        call_id: String,
        transport: Transport,
        outcome: &'static str,
        started: tokio::time::Instant,
    ) {
        let duration = started.elapsed();
        let duration_ms = duration.as_millis() as u64;
        span.in_scope(|| tracing::info!(outcome, duration_ms, "call ended"));
        metrics::session_ended(transport, outcome, duration);
        self.emit(GatewayEvent::CallEnded {
            call_id,
            transport,
            outcome,
            duration,
        });
    }
}

/// A voice gateway: a cheap handle to the routes, the admission state and the drain.
///
/// Built with [`Gateway::builder`]; see the [module docs](self) for the routes and protocols.
///
/// ```
/// use realtime_agents::RealtimeAgent;
/// use realtime_agents::gateway::Gateway;
/// let gateway = Gateway::builder(RealtimeAgent::new("Assistant")).max_sessions(10).build()?;
/// assert_eq!((gateway.active_sessions(), gateway.is_draining()), (0, false));
/// let _app: axum::Router = gateway.router();
/// # Ok::<(), realtime_agents::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    /// A builder for a gateway whose calls talk to `agent`.
    pub fn builder(agent: impl Into<Arc<RealtimeAgent>>) -> GatewayBuilder {
        GatewayBuilder::new(agent.into())
    }

    /// The axum app: page, sockets, webhooks, health, readiness, load and metrics. It also
    /// starts the load sampler (CPU every 0.5 s) on the current tokio runtime, if any.
    pub fn router(&self) -> axum::Router {
        self.inner
            .state
            .start_sampler(self.inner.prometheus.clone());
        router::build(self.inner.clone())
    }

    /// Calls in progress.
    pub fn active_sessions(&self) -> usize {
        self.inner.state.active()
    }

    /// The session limit.
    pub fn max_sessions(&self) -> usize {
        self.inner.state.max_sessions
    }

    /// Whether a drain has started (readiness fails, new calls are refused).
    pub fn is_draining(&self) -> bool {
        self.inner.state.is_draining()
    }

    /// The load figure in [0, 1], LiveKit workers' convention: the larger of the process's CPU
    /// share (a 2.5 s moving average over the cores it may use) and the share of session slots
    /// taken. Served on `/load` and as the `realtime_gateway_load` gauge; route new calls away
    /// from replicas above about 0.7.
    ///
    /// ```
    /// # use realtime_agents::{RealtimeAgent, gateway::Gateway};
    /// let gateway = Gateway::builder(RealtimeAgent::new("Assistant")).build()?;
    /// assert!((0.0..=1.0).contains(&gateway.load()));
    /// # Ok::<(), realtime_agents::Error>(())
    /// ```
    pub fn load(&self) -> f64 {
        self.inner.state.load()
    }

    /// Starts a drain without waiting: readiness fails at once and new calls are refused with
    /// 503; live calls go on. Returns `false` if a drain had started already.
    ///
    /// ```
    /// # use realtime_agents::{RealtimeAgent, gateway::Gateway};
    /// let gateway = Gateway::builder(RealtimeAgent::new("Assistant")).build()?;
    /// assert!(gateway.start_drain());
    /// assert!(!gateway.start_drain());
    /// assert!(gateway.is_draining());
    /// # Ok::<(), realtime_agents::Error>(())
    /// ```
    pub fn start_drain(&self) -> bool {
        let first = self.inner.state.start_drain();
        if first {
            tracing::info!(
                live = self.active_sessions(),
                "draining: refusing new calls, live calls may finish"
            );
        }
        first
    }

    /// Serves [`router`](Self::router) on `listener` until `shutdown` completes, then
    /// [drains](Self::drain) and returns once every call has ended. While draining, the
    /// listener still answers: readiness says 503 and new calls get 503 `draining`, instead
    /// of connections being refused before the load balancer has noticed.
    ///
    /// `shutdown` is [`shutdown_signal`] in a server; tests pass any future (a oneshot).
    ///
    /// ```no_run
    /// # async fn demo(gateway: realtime_agents::gateway::Gateway) -> std::io::Result<()> {
    /// use realtime_agents::gateway::shutdown_signal;
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    /// let report = gateway.serve(listener, shutdown_signal()).await?;
    /// println!("drained: {report:?}");
    /// # Ok(()) }
    /// ```
    pub async fn serve<F>(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: F,
    ) -> std::io::Result<DrainReport>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (report_tx, report_rx) = tokio::sync::oneshot::channel();
        let gateway = self.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = report_tx.send(gateway.drain().await);
            })
            .await?;
        Ok(report_rx.await.unwrap_or(DrainReport {
            live_at_start: 0,
            closed_at_deadline: 0,
        }))
    }

    /// Drains: [`start_drain`](Self::start_drain), then waits for live calls to finish, up to
    /// the [drain timeout](GatewayBuilder::drain_timeout); calls still live then are closed
    /// cleanly (browser pages get `closed` and close code 1001; carrier streams are closed, so
    /// Twilio goes on with the TwiML after `<Connect>`). Resolves when every call has ended.
    pub async fn drain(&self) -> DrainReport {
        let live_at_start = self.active_sessions();
        self.start_drain();
        let state = &self.inner.state;
        let timeout = self.inner.options.drain_timeout;
        let mut closed_at_deadline = 0;
        if tokio::time::timeout(timeout, state.tasks.wait())
            .await
            .is_err()
        {
            closed_at_deadline = self.active_sessions();
            tracing::info!(
                live = closed_at_deadline,
                "drain deadline: closing the calls still live"
            );
            state.hard_stop.cancel();
            state.tasks.wait().await;
        }
        tracing::info!(live_at_start, closed_at_deadline, "drained");
        DrainReport {
            live_at_start,
            closed_at_deadline,
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): the drain trigger of a server (see
/// [`Gateway::serve`]). On other platforms than Unix, on Ctrl-C only.
///
/// ```no_run
/// # async fn demo() {
/// realtime_agents::gateway::shutdown_signal().await;
/// println!("draining");
/// # }
/// ```
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: draining"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "no SIGTERM handler; draining on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C: draining");
    }
}

/// Configures a [`Gateway`]. Errors are reported by [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use realtime_agents::RealtimeAgent;
/// use realtime_agents::gateway::Gateway;
/// use realtime_agents::model::{OpenAIRealtimeWebSocketModel, SessionSettings};
///
/// let gateway = Gateway::builder(RealtimeAgent::new("Assistant"))
///     .model(OpenAIRealtimeWebSocketModel::builder().url("ws://127.0.0.1:8765/v1/realtime").build())
///     .settings(SessionSettings::new().voice("marin"))
///     .max_sessions(100)
///     .drain_timeout(Duration::from_secs(300))
///     .allowed_origins(["https://voice.example.com"])
///     .public_url("https://voice.example.com")
///     .verify_stream(|start| start.parameters.get("token").is_some_and(|t| t == "expected"))
///     .on_event(|event| tracing::info!(?event, "gateway event"))
///     .build()?;
/// # drop(gateway);
/// # Ok::<(), realtime_agents::Error>(())
/// ```
#[must_use]
pub struct GatewayBuilder {
    agent: Arc<RealtimeAgent>,
    model: Option<Arc<dyn RealtimeModel>>,
    config: RealtimeRunConfig,
    settings: SessionSettings,
    max_sessions: usize,
    cpu_cores: Option<f64>,
    options: Options,
    origins: Vec<String>,
    public_url: Option<String>,
    prometheus: Option<PrometheusHandle>,
    on_event: Option<EventFn>,
    verify_stream: Option<VerifyFn>,
    carriers: Vec<(String, SerializerFn)>,
    twilio_auth_token: Option<String>,
    stream_secret: Option<String>,
}

impl fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("agent", &self.agent.name())
            .field("max_sessions", &self.max_sessions)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    fn new(agent: Arc<RealtimeAgent>) -> Self {
        let carriers: Vec<(String, SerializerFn)> = vec![
            (
                "/twilio/stream".to_owned(),
                Arc::new(|| {
                    Box::new(carrier::TwilioSerializer::new()) as Box<dyn CarrierSerializer>
                }),
            ),
            (
                "/telnyx/stream".to_owned(),
                Arc::new(|| {
                    Box::new(carrier::TelnyxSerializer::new()) as Box<dyn CarrierSerializer>
                }),
            ),
        ];
        Self {
            agent,
            model: None,
            config: RealtimeRunConfig::new(),
            settings: SessionSettings::new(),
            max_sessions: 100,
            cpu_cores: None,
            options: Options {
                drain_timeout: Duration::from_secs(300),
                mark_interval: Duration::from_millis(100),
                outbound_lead: Duration::from_millis(100),
                dtmf_to_model: Some(Duration::from_millis(1500)),
                start_timeout: Duration::from_secs(10),
                greet: false,
                max_message_bytes: 64 * 1024,
                fallback_say: "Sorry, the assistant is not available right now. Goodbye."
                    .to_owned(),
            },
            origins: Vec::new(),
            public_url: None,
            prometheus: None,
            on_event: None,
            verify_stream: None,
            carriers,
            twilio_auth_token: None,
            stream_secret: None,
        }
    }

    /// The model every call's session uses (default: the OpenAI Realtime API, key from
    /// `OPENAI_API_KEY`).
    pub fn model(mut self, model: impl RealtimeModel) -> Self {
        self.model = Some(Arc::new(model));
        self
    }

    /// A shared model.
    pub fn shared_model(mut self, model: Arc<dyn RealtimeModel>) -> Self {
        self.model = Some(model);
        self
    }

    /// The run configuration of every call's session (guardrails, hooks, reconnects,
    /// `input_audio_batch`...). Its settings and playback tracker are replaced per call: use
    /// [`settings`](Self::settings); the gateway sets the audio formats and the tracker.
    pub fn run_config(mut self, config: RealtimeRunConfig) -> Self {
        self.config = config;
        self
    }

    /// Base session settings (voice, turn detection...); the gateway sets the input and
    /// output formats to what each call's audio is.
    pub fn settings(mut self, settings: SessionSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Calls served at once (default 100); more are refused with 503 `full`.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max;
        self
    }

    /// Cores the load figure's CPU share is measured against (default: the cores this
    /// process may use, cgroup limits included).
    pub fn cpu_cores(mut self, cores: f64) -> Self {
        self.cpu_cores = Some(cores);
        self
    }

    /// How long [`Gateway::drain`] lets live calls finish before closing them (default 300 s).
    /// Keep it below the pod's `terminationGracePeriodSeconds`.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.options.drain_timeout = timeout;
        self
    }

    /// Origins allowed to open the browser socket, compared exactly (scheme, host, port),
    /// e.g. `https://voice.example.com`. Default: only the origin whose host matches the
    /// request's `Host` header (the gateway's own page). Requests without an `Origin`
    /// (non-browser clients, which can forge one anyway) are allowed.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origins = origins
            .into_iter()
            .map(|o| o.into().trim_end_matches('/').to_ascii_lowercase())
            .collect();
        self
    }

    /// The gateway's public base URL (`https://voice.example.com`), for the stream URL in
    /// TwiML (default: `wss://` plus the webhook request's `Host`). Set it behind proxies
    /// that rewrite the host.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Serves `/metrics` from this Prometheus handle (see [`install_prometheus`]); without
    /// it `/metrics` answers 404.
    pub fn prometheus(mut self, handle: PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// Called for each [`GatewayEvent`], on the call's task: keep it quick.
    pub fn on_event<F>(mut self, on_event: F) -> Self
    where
        F: Fn(&GatewayEvent) + Send + Sync + 'static,
    {
        self.on_event = Some(Arc::new(on_event));
        self
    }

    /// Checks a carrier stream's `start` (its call id and `<Parameter>`s) before a session
    /// is opened; `false` closes the stream (outcome `refused_token`).
    pub fn verify_stream<F>(mut self, verify: F) -> Self
    where
        F: Fn(&StreamStart) -> bool + Send + Sync + 'static,
    {
        self.verify_stream = Some(Arc::new(verify));
        self
    }

    /// Checks Twilio's `X-Twilio-Signature` (HMAC-SHA1 with the account's auth token) on the
    /// TwiML webhook and on the media stream's WebSocket upgrade; unsigned or wrongly signed
    /// requests get 403. The URL signed is [`public_url`](Self::public_url) plus the path
    /// (or `https://` and the `Host` header): set `public_url` behind proxies that rewrite
    /// the host or scheme.
    ///
    /// ```
    /// # use realtime_agents::{RealtimeAgent, gateway::Gateway};
    /// let gateway = Gateway::builder(RealtimeAgent::new("Assistant"))
    ///     .public_url("https://voice.example.com")
    ///     .twilio_auth_token(std::env::var("TWILIO_AUTH_TOKEN").unwrap_or_default())
    ///     .build()?;
    /// # drop(gateway); Ok::<(), realtime_agents::Error>(())
    /// ```
    pub fn twilio_auth_token(mut self, token: impl Into<String>) -> Self {
        self.twilio_auth_token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    /// Binds Twilio media streams to the calls the webhook answered: the TwiML carries a
    /// `token` `<Parameter>` (an HMAC-SHA256 of the `CallSid` and a two-minute expiry with
    /// `secret`), and a stream whose `start` lacks a valid token for its `callSid` is closed
    /// before a session opens (outcome `refused_token`). No state is kept, so every replica
    /// sharing the secret accepts the stream of a call another one answered.
    pub fn stream_secret(mut self, secret: impl Into<String>) -> Self {
        self.stream_secret = Some(secret.into()).filter(|t| !t.is_empty());
        self
    }

    /// Serves another carrier's media streams on `path` (e.g. `/plivo/stream`), with a
    /// serializer made per call. Twilio (`/twilio/stream`) and Telnyx (`/telnyx/stream`)
    /// are built in; the same path replaces one.
    pub fn carrier<F>(mut self, path: impl Into<String>, serializer: F) -> Self
    where
        F: Fn() -> Box<dyn CarrierSerializer> + Send + Sync + 'static,
    {
        let path = path.into();
        self.carriers.retain(|(p, _)| *p != path);
        self.carriers.push((path, Arc::new(serializer)));
        self
    }

    /// Phone audio: send a `mark` after this much audio (default 100 ms; also one at the end
    /// of each item). Smaller is a finer truncation point and more messages.
    pub fn mark_interval(mut self, interval: Duration) -> Self {
        self.options.mark_interval = interval;
        self
    }

    /// Phone audio: how far ahead of real time frames are sent (default 100 ms): a cushion
    /// against network jitter, and the most audio a `clear` has to drop.
    pub fn outbound_lead(mut self, lead: Duration) -> Self {
        self.options.outbound_lead = lead;
        self
    }

    /// Phone calls: tell the model the DTMF digits pressed, as one user message
    /// (`"DTMF: 42#"`) once `pause` passes without a key or at `#` (default: 1.5 s); `None`
    /// only surfaces them as [`GatewayEvent::Dtmf`].
    pub fn dtmf_to_model(mut self, pause: Option<Duration>) -> Self {
        self.options.dtmf_to_model = pause;
        self
    }

    /// How long a carrier stream may take to send `start` (default 10 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.options.start_timeout = timeout;
        self
    }

    /// Whether the assistant speaks first (asks for a response as the session starts;
    /// default `false`).
    pub fn greet(mut self, greet: bool) -> Self {
        self.options.greet = greet;
        self
    }

    /// What Twilio says if the gateway closes the stream (after `</Connect>` in the TwiML).
    pub fn fallback_say(mut self, text: impl Into<String>) -> Self {
        self.options.fallback_say = text.into();
        self
    }

    /// Builds the gateway. Fails with [`Error::Config`] when `max_sessions` is 0.
    pub fn build(self) -> crate::Result<Gateway> {
        if self.max_sessions == 0 {
            return Err(Error::Config("max_sessions must be at least 1".into()));
        }
        let cores = self.cpu_cores.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
        });
        metrics::register(Transport::Browser);
        for (_, make) in &self.carriers {
            metrics::register(Transport::Carrier(make().name()));
        }
        let model = self
            .model
            .unwrap_or_else(|| Arc::new(OpenAIRealtimeWebSocketModel::new()));
        Ok(Gateway {
            inner: Arc::new(Inner {
                state: Arc::new(State::new(self.max_sessions, cores)),
                recipe: SessionRecipe::new(self.agent, model, self.config, self.settings),
                options: self.options,
                origins: self.origins,
                public_url: self.public_url,
                prometheus: self.prometheus,
                on_event: self.on_event,
                verify_stream: self.verify_stream,
                carriers: self.carriers,
                twilio_auth_token: self.twilio_auth_token,
                stream_secret: self.stream_secret,
            }),
        })
    }
}
