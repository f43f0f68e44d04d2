//! The run configuration: settings shared by every session a runner starts.
//!
//! It lives apart from the runner so that the session (which reads it) and the runner (which
//! starts sessions with it) do not import each other.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::cost::{self, Budget, PriceTable};
use crate::guardrail::GuardrailResult;
use crate::hooks::RealtimeHooks;
use crate::items::RealtimeItem;
use crate::model::SessionSettings;
use crate::model::Usage;
use crate::{Error, OutputGuardrail, PlaybackTracker, Redactor};

type Feedback = Arc<dyn Fn(&[GuardrailResult]) -> String + Send + Sync>;
pub(crate) type CancelCheck = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// When and how often a session reconnects after its connection ends unexpectedly (a dropped
/// socket, a server close such as the 60-minute session cap).
///
/// Between attempts the session waits `initial_backoff`, doubled after each failure up to
/// `max_backoff`. A new connection gets the session settings again, then the local history is
/// re-created on it (spoken parts as their transcripts), then everything the application sent
/// meanwhile is delivered in order. Events: [`Reconnecting`](crate::RealtimeSessionEvent::Reconnecting)
/// before each attempt, [`Reconnected`](crate::RealtimeSessionEvent::Reconnected) after
/// success, or a final [`Closed`](crate::RealtimeSessionEvent::Closed) with the last error.
///
/// ```
/// use std::time::Duration;
/// use realtime_agents::ReconnectPolicy;
/// let policy = ReconnectPolicy::new()
///     .max_attempts(5)
///     .backoff(Duration::from_millis(250), Duration::from_secs(5));
/// assert_eq!(policy.delay(1), Duration::from_millis(250));
/// assert_eq!(policy.delay(3), Duration::from_secs(1));
/// assert_eq!(policy.delay(10), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct ReconnectPolicy {
    pub(crate) max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl ReconnectPolicy {
    /// Five attempts, backoff from 250 ms doubling up to 8 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attempts per outage before the session gives up (at least one).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The wait before the first attempt, and the cap of the doubling waits.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// The wait before attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// Settings for every session a runner starts.
///
/// ```
/// use realtime_agents::{RealtimeRunConfig, model::SessionSettings, audio::AudioFormat};
/// let config = RealtimeRunConfig::new()
///     .settings(SessionSettings::new().voice("marin").output_format(AudioFormat::G711_ULAW))
///     .guardrail_debounce_chars(50)
///     .raw_events(true);
/// # let _ = config;
/// ```
#[derive(Clone)]
#[must_use]
pub struct RealtimeRunConfig {
    pub(crate) settings: SessionSettings,
    pub(crate) output_guardrails: Vec<OutputGuardrail>,
    pub(crate) guardrail_debounce_chars: usize,
    pub(crate) raw_events: bool,
    pub(crate) event_capacity: usize,
    pub(crate) tracker: Option<Arc<dyn PlaybackTracker>>,
    pub(crate) hooks: Option<Arc<dyn RealtimeHooks>>,
    pub(crate) initial_history: Vec<RealtimeItem>,
    pub(crate) hold_audio_for_guardrails: bool,
    pub(crate) guardrail_feedback: Option<Feedback>,
    pub(crate) reconnect: Option<ReconnectPolicy>,
    pub(crate) cancel: Option<CancellationToken>,
    pub(crate) max_duration: Option<Duration>,
    pub(crate) cancel_check: Option<(Duration, CancelCheck)>,
    pub(crate) redactor: Redactor,
    pub(crate) input_audio_batch: Duration,
    pub(crate) wake_coalescing: Duration,
    pub(crate) budget: Option<Budget>,
    pub(crate) prices: PriceTable,
    /// The model the session's usage is priced as: the settings' model, else the backend's
    /// ([`RealtimeModel::model_name`](crate::model::RealtimeModel::model_name)). Set by the
    /// runner for each session.
    pub(crate) model_name: Option<String>,
}

impl std::fmt::Debug for RealtimeRunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeRunConfig")
            .field("settings", &self.settings)
            .field("output_guardrails", &self.output_guardrails)
            .field("guardrail_debounce_chars", &self.guardrail_debounce_chars)
            .field("raw_events", &self.raw_events)
            .field("event_capacity", &self.event_capacity)
            .field("custom_tracker", &self.tracker.is_some())
            .field("hooks", &self.hooks)
            .field("initial_history", &self.initial_history.len())
            .field("hold_audio_for_guardrails", &self.hold_audio_for_guardrails)
            .field("reconnect", &self.reconnect)
            .field("max_duration", &self.max_duration)
            .field("redactor", &self.redactor)
            .field("input_audio_batch", &self.input_audio_batch)
            .field("wake_coalescing", &self.wake_coalescing)
            .field("budget", &self.budget)
            .field("prices", &self.prices)
            .finish_non_exhaustive()
    }
}

impl Default for RealtimeRunConfig {
    fn default() -> Self {
        Self {
            settings: SessionSettings::default(),
            output_guardrails: Vec::new(),
            guardrail_debounce_chars: 100,
            raw_events: false,
            event_capacity: 256,
            tracker: None,
            hooks: None,
            initial_history: Vec::new(),
            hold_audio_for_guardrails: false,
            guardrail_feedback: None,
            reconnect: None,
            cancel: None,
            max_duration: None,
            cancel_check: None,
            redactor: Redactor::default(),
            input_audio_batch: Duration::ZERO,
            wake_coalescing: Duration::ZERO,
            budget: None,
            prices: PriceTable::new(),
            model_name: None,
        }
    }
}

impl RealtimeRunConfig {
    /// Default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Base session settings (voice, audio formats, turn detection...). Agents add their
    /// instructions and tools on top; voice and formats survive handoffs and agent switches.
    pub fn settings(mut self, settings: SessionSettings) -> Self {
        self.settings = settings;
        self
    }

    /// An output guardrail for every agent (run once even if an agent lists it too).
    pub fn output_guardrail(mut self, guardrail: OutputGuardrail) -> Self {
        self.output_guardrails.push(guardrail);
        self
    }

    /// Run output guardrails each time this many characters of transcript arrived (default 100).
    /// They always run once more at the end of each response; `0` runs them only then.
    pub fn guardrail_debounce_chars(mut self, chars: usize) -> Self {
        self.guardrail_debounce_chars = chars;
        self
    }

    /// Holds back each response's audio until the transcript received with it has passed the
    /// output guardrails, so that blocked speech is never played (default off).
    ///
    /// Audio received before a guardrail check started is released when the check passes;
    /// the rest waits for the next check, and the final check at the end of the response
    /// releases everything. The model's transcript comes ahead of the audio it describes, so
    /// released audio has been checked. The cost is latency: up to
    /// [`guardrail_debounce_chars`](Self::guardrail_debounce_chars) of text plus the guardrails'
    /// run time before the first sound. It only applies to responses of agents that have
    /// guardrails.
    pub fn hold_audio_for_guardrails(mut self, hold: bool) -> Self {
        self.hold_audio_for_guardrails = hold;
        self
    }

    /// Collects microphone audio and sends it in batches of up to `window` (default zero:
    /// every [`send_audio`](crate::RealtimeSessionHandle::send_audio) goes out at once).
    ///
    /// Each batch is one `input_audio_buffer.append` frame and one socket write instead of one
    /// per chunk, which is most of the CPU a session spends on its input: with 20 ms chunks, a
    /// 100 ms window makes five times fewer writes. The price is input latency: audio waits up
    /// to `window` before it leaves, so the server hears the end of a turn up to that much
    /// later. A batch also goes out early when it is full, when `commit` is set, and before
    /// any other command (a text message, an interrupt...), so the order of what the server
    /// receives never changes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use realtime_agents::RealtimeRunConfig;
    ///
    /// // A phone bridge that gets 20 ms frames: five of them per write.
    /// let config = RealtimeRunConfig::new().input_audio_batch(Duration::from_millis(100));
    /// # let _ = config;
    /// ```
    pub fn input_audio_batch(mut self, window: Duration) -> Self {
        self.input_audio_batch = window;
        self
    }

    /// Lets the session task sleep for `window` after each pass, so that what arrives in the
    /// meantime (server frames, commands from handles, finished tools) is handled together on
    /// one wake-up (default zero: the task runs as soon as anything arrives).
    ///
    /// For servers that hold many sessions, where waking up once per event costs more than the
    /// event: what a pass finds is read from the socket in one call, written in one call, and
    /// delivered to the application's task with one wake-up. With 20 ms audio both ways, a
    /// 60 ms window cut the client's CPU per chunk by about a third in `examples/loadtest.rs`
    /// (300 and 1,000 sessions); windows under two chunks (40 ms) save little, since each
    /// pass then still handles about one chunk each way. The price is latency, bounded by
    /// `window`: an event or a command that comes while the task sleeps waits at most that
    /// long. An idle session does not wake up at all: the sleep only follows a pass that had
    /// something to do. Order is never changed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use realtime_agents::RealtimeRunConfig;
    ///
    /// // A phone gateway with thousands of calls: up to 60 ms more latency, fewer wake-ups.
    /// let config = RealtimeRunConfig::new().wake_coalescing(Duration::from_millis(60));
    /// # let _ = config;
    /// ```
    pub fn wake_coalescing(mut self, window: Duration) -> Self {
        self.wake_coalescing = window;
        self
    }

    /// What the model is told after an output guardrail stopped its answer (it is sent as a
    /// user message and asks for a new response). The default names the guardrails and their
    /// `info`, and asks the model not to repeat the answer.
    ///
    /// ```
    /// use realtime_agents::RealtimeRunConfig;
    /// let config = RealtimeRunConfig::new().guardrail_feedback(|results| {
    ///     format!("Blocked by {}. Offer to connect the caller with a human.", results[0].name)
    /// });
    /// # let _ = config;
    /// ```
    pub fn guardrail_feedback<F>(mut self, feedback: F) -> Self
    where
        F: Fn(&[GuardrailResult]) -> String + Send + Sync + 'static,
    {
        self.guardrail_feedback = Some(Arc::new(feedback));
        self
    }

    /// Secret strings (customer numbers, internal tokens...) to replace with `[REDACTED]` in
    /// tool outputs (before the model, the events and the history see them), in error events
    /// and in the session's log lines. Strings shorter than 4 characters are ignored.
    ///
    /// ```
    /// use realtime_agents::RealtimeRunConfig;
    /// let config = RealtimeRunConfig::new().redact_secrets(["db-password-123", "sk-internal-xyz"]);
    /// # let _ = config;
    /// ```
    pub fn redact_secrets<I, S>(mut self, secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.redactor = Redactor::new(secrets);
        self
    }

    /// Lifecycle hooks for every session (see [`crate::hooks`]).
    pub fn hooks(mut self, hooks: impl RealtimeHooks) -> Self {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// A saved conversation to start from: the items are re-created on the server, in order,
    /// before anything else is sent, and appear in the history as
    /// [`HistoryAdded`](crate::RealtimeSessionEvent::HistoryAdded) events. Spoken parts are
    /// re-created from their transcripts; items without an id get one.
    ///
    /// ```
    /// use realtime_agents::{RealtimeRunConfig, items::{RealtimeItem, Role}};
    /// let config = RealtimeRunConfig::new().history(vec![
    ///     RealtimeItem::text(Role::User, "My order number is 4711."),
    ///     RealtimeItem::text(Role::Assistant, "Thanks, I found order 4711."),
    /// ]);
    /// # let _ = config;
    /// ```
    pub fn history(mut self, items: Vec<RealtimeItem>) -> Self {
        self.initial_history = items;
        self
    }

    /// Reconnects after an unexpected end of the connection (default: no reconnect, the
    /// session ends with [`Closed`](crate::RealtimeSessionEvent::Closed) and the error).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Ends every session when `token` is cancelled, with
    /// [`Error::Cancelled`](crate::Error::Cancelled) in the final `Closed` event. Sessions get
    /// child tokens, so cancelling one session's handle never cancels `token`.
    ///
    /// ```
    /// use realtime_agents::RealtimeRunConfig;
    /// use tokio_util::sync::CancellationToken;
    /// let shutdown = CancellationToken::new();
    /// let config = RealtimeRunConfig::new().cancellation_token(shutdown.clone());
    /// // later, e.g. on SIGTERM: shutdown.cancel();
    /// # let _ = config;
    /// ```
    pub fn cancellation_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Ends every session after this long, with [`Error::Timeout`](crate::Error::Timeout) in
    /// the final `Closed` event.
    pub fn max_duration(mut self, limit: Duration) -> Self {
        self.max_duration = Some(limit);
        self
    }

    /// Polls `is_cancelled` every `interval` (for apps that keep cancellation state elsewhere,
    /// e.g. in a database); when it returns `true` the session ends as if its
    /// [cancellation token](Self::cancellation_token) was cancelled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use realtime_agents::RealtimeRunConfig;
    /// let config = RealtimeRunConfig::new().cancel_check(Duration::from_secs(1), || async {
    ///     false // e.g. look the call up in the database
    /// });
    /// # let _ = config;
    /// ```
    pub fn cancel_check<F, Fut>(mut self, interval: Duration, is_cancelled: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let check: CancelCheck = Arc::new(move || is_cancelled().boxed());
        self.cancel_check = Some((interval.max(Duration::from_millis(1)), check));
        self
    }

    /// Also deliver every server event as received ([`RealtimeSessionEvent::Raw`](crate::RealtimeSessionEvent::Raw)).
    pub fn raw_events(mut self, enabled: bool) -> Self {
        self.raw_events = enabled;
        self
    }

    /// Capacity of the event channel to the application (default 256 events).
    ///
    /// Nothing is ever dropped. When the application stops reading, the session waits for
    /// room and reads nothing more from the socket, so unread frames stay in the kernel's
    /// buffers until TCP flow control stops the server: a stalled session holds at most this
    /// many events plus the socket buffers, and when the application reads again every event
    /// arrives in order. Meanwhile commands (`send_audio`...) queue in their own bounded
    /// channel and then wait too, so keep slow work off the loop that reads events.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Ends each session once it has spent more than `budget` (tokens, or dollars at
    /// [`prices`](Self::prices)), with [`Error::BudgetExceeded`] in the final
    /// [`Closed`](crate::RealtimeSessionEvent::Closed). Checked after each response, so the
    /// response that crosses it is finished. A dollar budget needs a price for the session's
    /// model: a session without one does not start ([`Error::Config`]).
    ///
    /// ```
    /// use realtime_agents::{RealtimeRunConfig, cost::Budget};
    /// let config = RealtimeRunConfig::new().budget(Budget::usd(0.25));
    /// # let _ = config;
    /// ```
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The prices sessions' usage is costed at (default: [`PriceTable::new`], OpenAI's list
    /// prices as of [`PRICES_AS_OF`](crate::cost::PRICES_AS_OF)).
    ///
    /// ```
    /// use realtime_agents::RealtimeRunConfig;
    /// use realtime_agents::cost::{ModelPrices, PriceTable};
    /// let prices = PriceTable::new().with("gpt-realtime", ModelPrices::new(3.0, 0.3, 25.0, 12.0, 50.0));
    /// let config = RealtimeRunConfig::new().prices(prices);
    /// # let _ = config;
    /// ```
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// Whether a session's running total `usage` is over its budget, as the error that ends
    /// it (see [`cost::exceeded`]). The session task calls this after each response's usage.
    pub(crate) fn budget_exceeded(&self, usage: &Usage) -> Option<Error> {
        let budget = self.budget.as_ref()?;
        let model = self.model_name.as_deref().unwrap_or_default();
        cost::exceeded(budget, usage, &self.prices, model)
    }

    /// Where playback positions come from (default: [`WallClockPlaybackTracker`](crate::WallClockPlaybackTracker)).
    pub fn playback_tracker(mut self, tracker: Arc<dyn PlaybackTracker>) -> Self {
        self.tracker = Some(tracker);
        self
    }
}
