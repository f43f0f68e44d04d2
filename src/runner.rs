//! The runner: starts sessions for an agent.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::model::{OpenAIRealtimeWebSocketModel, RealtimeModel, SessionSettings};
use crate::session::{Driver, RealtimeSession, Shared, agent_settings};
use crate::{
    OutputGuardrail, PlaybackTracker, RealtimeAgent, Result, RunContext, WallClockPlaybackTracker,
};

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
            .finish()
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
    /// They always run once more at the end of each response.
    pub fn guardrail_debounce_chars(mut self, chars: usize) -> Self {
        self.guardrail_debounce_chars = chars;
        self
    }

    /// Also deliver every server event as received ([`RealtimeSessionEvent::Raw`](crate::RealtimeSessionEvent::Raw)).
    pub fn raw_events(mut self, enabled: bool) -> Self {
        self.raw_events = enabled;
        self
    }

    /// Capacity of the event channel to the application (default 256 events).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Where playback positions come from (default: [`WallClockPlaybackTracker`]).
    pub fn playback_tracker(mut self, tracker: Arc<dyn PlaybackTracker>) -> Self {
        self.tracker = Some(tracker);
        self
    }
}

/// Starts [`RealtimeSession`]s for a starting agent.
///
/// ```no_run
/// use realtime_agents::{RealtimeAgent, RealtimeRunner, model::OpenAIRealtimeWebSocketModel};
/// # async fn demo() -> realtime_agents::Result<()> {
/// let agent = RealtimeAgent::new("Assistant").instructions("Be brief.");
/// let runner = RealtimeRunner::new(agent)
///     .model(OpenAIRealtimeWebSocketModel::builder().url("ws://127.0.0.1:8765/v1/realtime").build());
/// let session = runner.run(()).await?; // connected
/// # drop(session); Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RealtimeRunner {
    agent: Arc<RealtimeAgent>,
    model: Arc<dyn RealtimeModel>,
    config: RealtimeRunConfig,
}

impl RealtimeRunner {
    /// A runner for `agent` on the OpenAI Realtime API (key from `OPENAI_API_KEY`).
    pub fn new(agent: impl Into<Arc<RealtimeAgent>>) -> Self {
        Self {
            agent: agent.into(),
            model: Arc::new(OpenAIRealtimeWebSocketModel::new()),
            config: RealtimeRunConfig::default(),
        }
    }

    /// Uses another model (another URL, key, backend).
    pub fn model(mut self, model: impl RealtimeModel) -> Self {
        self.model = Arc::new(model);
        self
    }

    /// Uses a shared model.
    pub fn shared_model(mut self, model: Arc<dyn RealtimeModel>) -> Self {
        self.model = model;
        self
    }

    /// Sets the run configuration.
    pub fn config(mut self, config: RealtimeRunConfig) -> Self {
        self.config = config;
        self
    }

    /// Connects and starts a session. `context` is shared with tools, guardrails and dynamic
    /// instructions (pass `()` when there is none).
    pub async fn run<C: std::any::Any + Send + Sync>(&self, context: C) -> Result<RealtimeSession> {
        let tracker = self
            .config
            .tracker
            .clone()
            .unwrap_or_else(|| Arc::new(WallClockPlaybackTracker::default()));
        let shared = Shared {
            config: self.config.clone(),
            context: RunContext::new(context),
            tracker,
        };
        let settings = agent_settings(&shared, &self.agent, false).await?;
        let conn = self.model.connect(settings).await?;
        let (command_tx, command_rx) = mpsc::channel(256);
        let (event_tx, event_rx) = mpsc::channel(self.config.event_capacity);
        let driver = Driver::new(conn, command_rx, event_tx, shared, self.agent.clone());
        Ok(RealtimeSession::spawn(driver, command_tx, event_rx))
    }
}
