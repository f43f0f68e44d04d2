//! Options for one session, over the runner's configuration.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::RealtimeRunConfig;
use crate::cost::Budget;
use crate::items::RealtimeItem;
use crate::model::SessionSettings;
use crate::{PlaybackTracker, RunContext};

/// What one session does differently from the others a runner starts, without rebuilding the
/// runner: its context, cancellation token, time limit, playback tracker, starting history,
/// event capacity, settings and budget. Whatever is not set comes from the runner's
/// [`RealtimeRunConfig`].
///
/// Give it to [`RealtimeRunner::start`](crate::RealtimeRunner::start) (or
/// [`resume`](crate::RealtimeRunner::resume)).
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use realtime_agents::{
///     CancellationToken, RealtimeAgent, RealtimeRunner, SessionOptions, WallClockPlaybackTracker,
///     items::{RealtimeItem, Role},
/// };
///
/// struct Caller { number: String }
///
/// # async fn demo() -> realtime_agents::Result<()> {
/// let runner = RealtimeRunner::new(RealtimeAgent::new("Assistant"));
/// let hang_up = CancellationToken::new();
/// let session = runner
///     .start(
///         SessionOptions::new()
///             .context(Caller { number: "+15550100".into() })
///             .cancellation_token(hang_up.clone())
///             .max_duration(Duration::from_secs(10 * 60))
///             .playback_tracker(Arc::new(WallClockPlaybackTracker::default()))
///             .history(vec![RealtimeItem::text(Role::System, "The caller is a premium customer.")])
///             .event_capacity(1024),
///     )
///     .await?;
/// # drop(session); Ok(()) }
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct SessionOptions {
    context: Option<RunContext>,
    cancel: Option<CancellationToken>,
    max_duration: Option<Duration>,
    tracker: Option<Arc<dyn PlaybackTracker>>,
    pub(crate) history: Option<Vec<RealtimeItem>>,
    event_capacity: Option<usize>,
    settings: Option<SessionSettings>,
    budget: Option<Budget>,
}

impl std::fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOptions")
            .field("context", &self.context.is_some())
            .field("cancellation_token", &self.cancel.is_some())
            .field("max_duration", &self.max_duration)
            .field("custom_tracker", &self.tracker.is_some())
            .field("history", &self.history.as_ref().map(Vec::len))
            .field("event_capacity", &self.event_capacity)
            .field("settings", &self.settings)
            .field("budget", &self.budget)
            .finish()
    }
}

impl SessionOptions {
    /// Nothing set: the session is started as the runner's configuration says, with `()` as
    /// its context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The application state shared with this session's tools, guardrails and dynamic
    /// instructions (default `()`), as [`RealtimeRunner::run`](crate::RealtimeRunner::run)'s
    /// argument would be.
    ///
    /// ```
    /// use realtime_agents::SessionOptions;
    /// struct Db { name: &'static str }
    /// let options = SessionOptions::new().context(Db { name: "orders" });
    /// # let _ = options;
    /// ```
    pub fn context<C: Any + Send + Sync>(mut self, context: C) -> Self {
        self.context = Some(RunContext::new(context));
        self
    }

    /// Ends this session when `token` is cancelled, with
    /// [`Error::Cancelled`](crate::Error::Cancelled) in its final
    /// [`Closed`](crate::RealtimeSessionEvent::Closed). The session gets a child token, so
    /// cancelling its handle never cancels `token`. The runner's
    /// [cancellation token](RealtimeRunConfig::cancellation_token), if any, still ends it too
    /// (a shutdown reaches every session).
    ///
    /// ```
    /// use realtime_agents::{CancellationToken, SessionOptions};
    /// let call_ended = CancellationToken::new();
    /// let options = SessionOptions::new().cancellation_token(call_ended.clone());
    /// # let _ = options;
    /// ```
    pub fn cancellation_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Ends this session after `limit`, with [`Error::Timeout`](crate::Error::Timeout), in
    /// place of the runner's [`max_duration`](RealtimeRunConfig::max_duration).
    ///
    /// ```
    /// use std::time::Duration;
    /// use realtime_agents::SessionOptions;
    /// let options = SessionOptions::new().max_duration(Duration::from_secs(300));
    /// # let _ = options;
    /// ```
    pub fn max_duration(mut self, limit: Duration) -> Self {
        self.max_duration = Some(limit);
        self
    }

    /// Where this session's playback positions come from, in place of the runner's
    /// [`playback_tracker`](RealtimeRunConfig::playback_tracker) (e.g. one tracker per phone
    /// call).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use realtime_agents::{SessionOptions, WallClockPlaybackTracker};
    /// let options = SessionOptions::new().playback_tracker(Arc::new(WallClockPlaybackTracker::default()));
    /// # let _ = options;
    /// ```
    pub fn playback_tracker(mut self, tracker: Arc<dyn PlaybackTracker>) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// The conversation this session starts from, in place of the runner's
    /// [`history`](RealtimeRunConfig::history) (see there for how it is re-created).
    ///
    /// ```
    /// use realtime_agents::{SessionOptions, items::{RealtimeItem, Role}};
    /// let options = SessionOptions::new()
    ///     .history(vec![RealtimeItem::text(Role::User, "My order number is 4711.")]);
    /// # let _ = options;
    /// ```
    pub fn history(mut self, items: Vec<RealtimeItem>) -> Self {
        self.history = Some(items);
        self
    }

    /// This session's event channel capacity, in place of the runner's
    /// [`event_capacity`](RealtimeRunConfig::event_capacity) (at least 1).
    ///
    /// ```
    /// use realtime_agents::SessionOptions;
    /// let options = SessionOptions::new().event_capacity(4096);
    /// # let _ = options;
    /// ```
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = Some(capacity.max(1));
        self
    }

    /// Session settings for this session, merged over the runner's
    /// [`settings`](RealtimeRunConfig::settings) (fields set here win; see
    /// [`SessionSettings::merge`]).
    ///
    /// ```
    /// use realtime_agents::{SessionOptions, model::SessionSettings, protocol::Modality};
    /// // This session answers in text only.
    /// let options = SessionOptions::new()
    ///     .settings(SessionSettings::new().output_modalities(vec![Modality::Text]));
    /// # let _ = options;
    /// ```
    pub fn settings(mut self, settings: SessionSettings) -> Self {
        match &mut self.settings {
            Some(mine) => mine.merge(&settings),
            None => self.settings = Some(settings),
        }
        self
    }

    /// This session's [`Budget`], in place of the runner's
    /// [`budget`](RealtimeRunConfig::budget).
    ///
    /// ```
    /// use realtime_agents::{SessionOptions, cost::Budget};
    /// let options = SessionOptions::new().budget(Budget::tokens(50_000));
    /// # let _ = options;
    /// ```
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Whether [`apply`](Self::apply) leaves the runner's configuration as it is (only the
    /// context and the cancellation token, which are not part of it, may be set).
    pub(crate) fn keeps_config(&self) -> bool {
        // Every field named, so that a new option cannot be forgotten here.
        let Self {
            context: _,
            cancel: _,
            max_duration,
            tracker,
            history,
            event_capacity,
            settings,
            budget,
        } = self;
        settings.is_none()
            && history.is_none()
            && max_duration.is_none()
            && tracker.is_none()
            && event_capacity.is_none()
            && budget.is_none()
    }

    /// Takes out the context and the cancellation token, which are not part of the
    /// configuration.
    pub(crate) fn take_context_and_token(
        mut self,
    ) -> (Self, Option<RunContext>, Option<CancellationToken>) {
        let (context, cancel) = (self.context.take(), self.cancel.take());
        (self, context, cancel)
    }

    /// Applies these options to the runner's configuration.
    pub(crate) fn apply(self, config: &mut RealtimeRunConfig) {
        if let Some(settings) = &self.settings {
            config.settings.merge(settings);
        }
        if let Some(history) = self.history {
            config.initial_history = history;
        }
        if let Some(limit) = self.max_duration {
            config.max_duration = Some(limit);
        }
        if let Some(tracker) = self.tracker {
            config.tracker = Some(tracker);
        }
        if let Some(capacity) = self.event_capacity {
            config.event_capacity = capacity;
        }
        if let Some(budget) = self.budget {
            config.budget = Some(budget);
        }
    }
}
