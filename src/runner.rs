//! The runner: starts sessions for an agent.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::RealtimeRunConfig;
use crate::cost;
use crate::model::{OpenAIRealtimeWebSocketModel, RealtimeModel};
use crate::protocol::Modality;
use crate::session::{Canceller, Driver, RealtimeSession, SessionInfo, Shared, agent_settings};
use crate::{
    Error, RealtimeAgent, Result, RunContext, SessionOptions, SessionSnapshot,
    WallClockPlaybackTracker,
};

/// The longest time limit a session takes (longer ones are this): far beyond any session,
/// and far from the clock's overflow.
const MAX_TIME_LIMIT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

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
    /// Shared with every session whose options change nothing in it (see
    /// [`prepared`](Self::prepared)): one copy for them all.
    config: Arc<RealtimeRunConfig>,
}

impl RealtimeRunner {
    /// A runner for `agent` on the OpenAI Realtime API (key from `OPENAI_API_KEY`).
    pub fn new(agent: impl Into<Arc<RealtimeAgent>>) -> Self {
        Self {
            agent: agent.into(),
            model: Arc::new(OpenAIRealtimeWebSocketModel::new()),
            config: Arc::new(RealtimeRunConfig::default()),
        }
        .prepared()
    }

    /// Uses another model (another URL, key, backend).
    pub fn model(mut self, model: impl RealtimeModel) -> Self {
        self.model = Arc::new(model);
        self.prepared()
    }

    /// Uses a shared model.
    pub fn shared_model(mut self, model: Arc<dyn RealtimeModel>) -> Self {
        self.model = model;
        self.prepared()
    }

    /// Sets the run configuration.
    pub fn config(mut self, config: RealtimeRunConfig) -> Self {
        self.config = Arc::new(config);
        self.prepared()
    }

    /// The configuration as a session takes it when its options change nothing: the time
    /// limit bounded, the model's name filled in. Such sessions then share it.
    fn prepared(mut self) -> Self {
        let config = Arc::make_mut(&mut self.config);
        prepare(config, self.model.as_ref());
        self
    }

    /// Connects and starts a session. `context` is shared with tools, guardrails and dynamic
    /// instructions (pass `()` when there is none). The same as
    /// [`start`](Self::start) with only [`SessionOptions::context`] set.
    ///
    /// Like [`start`](Self::start), the returned future keeps only what connecting needs.
    pub fn run<C: std::any::Any + Send + Sync>(
        &self,
        context: C,
    ) -> impl Future<Output = Result<RealtimeSession>> + Send {
        self.start(SessionOptions::new().context(context))
    }

    /// Connects and starts a session with `options` over the runner's configuration: one
    /// runner serves sessions with different contexts, tokens, time limits, trackers,
    /// histories, settings and budgets.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use realtime_agents::{RealtimeAgent, RealtimeRunner, SessionOptions};
    /// # async fn demo() -> realtime_agents::Result<()> {
    /// let runner = RealtimeRunner::new(RealtimeAgent::new("Assistant"));
    /// let short = runner.start(SessionOptions::new().max_duration(Duration::from_secs(60))).await?;
    /// let long = runner.start(SessionOptions::new().max_duration(Duration::from_secs(3600))).await?;
    /// # drop((short, long)); Ok(()) }
    /// ```
    ///
    /// The session's configuration is made when this is called; the returned future only
    /// connects (it stays small while a server accepts many calls at once).
    pub fn start(
        &self,
        options: SessionOptions,
    ) -> impl Future<Output = Result<RealtimeSession>> + Send {
        self.launch(Ok(self.start_agent()), options, Launch::New)
    }

    /// Continues a saved session ([`SessionSnapshot`]) in a new one: the agent named by the
    /// snapshot (the starting agent or one reachable through handoffs, see
    /// [`find_agent`](Self::find_agent)) is in charge, the snapshot's settings are the
    /// session's (with `options`' settings merged over them), its conversation is re-created
    /// on the new connection before anything else is sent, and the session keeps its id.
    /// `options`' [`history`](SessionOptions::history) is not used: the snapshot's is.
    ///
    /// Fails with [`Error::Config`] when no agent of that name is reachable.
    ///
    /// ```no_run
    /// use realtime_agents::{RealtimeAgent, RealtimeRunner, SessionOptions, SessionSnapshot};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let billing = RealtimeAgent::new("Billing");
    /// let runner = RealtimeRunner::new(RealtimeAgent::new("Triage").handoff(billing));
    /// let saved: SessionSnapshot = serde_json::from_str(&std::fs::read_to_string("call.json")?)?;
    /// let session = runner.resume(saved, SessionOptions::new()).await?;
    /// # drop(session); Ok(()) }
    /// ```
    pub fn resume(
        &self,
        snapshot: SessionSnapshot,
        options: SessionOptions,
    ) -> impl Future<Output = Result<RealtimeSession>> + Send {
        let agent = self.find_agent(&snapshot.agent).ok_or_else(|| {
            Error::Config(format!(
                "agent `{}` of the snapshot is neither `{}` nor reachable from it by handoffs",
                snapshot.agent,
                self.agent.name()
            ))
        });
        let mut options = options;
        options.history = Some(snapshot.history);
        let saved = Launch::Resume {
            id: snapshot.session_id,
            settings: Box::new(snapshot.settings),
        };
        self.launch(agent, options, saved)
    }

    /// The agent named `name`: the starting agent, or one reachable from it through
    /// [handoffs](RealtimeAgent::handoffs), nearest first (lazy handoffs are
    /// [resolved](crate::Handoff::resolve) on the way, each agent name once).
    ///
    /// ```
    /// use realtime_agents::{RealtimeAgent, RealtimeRunner};
    /// let refunds = RealtimeAgent::new("Refunds");
    /// let billing = RealtimeAgent::new("Billing").handoff(refunds);
    /// let runner = RealtimeRunner::new(RealtimeAgent::new("Triage").handoff(billing));
    /// assert_eq!(runner.find_agent("Refunds").map(|a| a.name().to_owned()).as_deref(), Some("Refunds"));
    /// assert!(runner.find_agent("Sales").is_none());
    /// ```
    pub fn find_agent(&self, name: &str) -> Option<Arc<RealtimeAgent>> {
        let mut seen = HashSet::from([self.agent.name().to_owned()]);
        let mut queue = VecDeque::from([self.agent.clone()]);
        while let Some(agent) = queue.pop_front() {
            if agent.name() == name {
                return Some(agent);
            }
            for handoff in agent.handoffs() {
                if seen.insert(handoff.agent_name().to_owned()) {
                    queue.push_back(handoff.resolve());
                }
            }
        }
        None
    }

    /// The agent sessions start with.
    pub(crate) fn start_agent(&self) -> Arc<RealtimeAgent> {
        self.agent.clone()
    }

    /// Connects and starts a session for `agent`. Everything but connecting is done when
    /// this is called, so that the future holds only what connecting needs: an `async fn`
    /// would keep its arguments (the options alone are over 500 bytes) for its whole life.
    pub(crate) fn launch(
        &self,
        agent: Result<Arc<RealtimeAgent>>,
        options: SessionOptions,
        how: Launch,
    ) -> impl Future<Output = Result<RealtimeSession>> + Send + use<> {
        let launching = agent.and_then(|agent| self.prepare_launch(agent, options, how));
        async move {
            let launching = launching?;
            let settings = agent_settings(&launching.shared, &launching.agent, false).await?;
            let conn = launching.shared.model.connect(settings).await?;
            Ok(launching.spawn(conn))
        }
    }

    /// A session's configuration, context and cancellation, ready to connect.
    fn prepare_launch(
        &self,
        agent: Arc<RealtimeAgent>,
        options: SessionOptions,
        how: Launch,
    ) -> Result<Launching> {
        let (options, context, token) = options.take_context_and_token();
        let one_shot = matches!(how, Launch::OneShot);
        let (id, settings) = match how {
            Launch::Resume { id, settings } => (Some(id), Some(settings)),
            Launch::New | Launch::OneShot => (None, None),
        };
        let config = if !one_shot && settings.is_none() && options.keeps_config() {
            // Nothing of the session's own: it shares the runner's configuration.
            self.config.clone()
        } else {
            let mut config = RealtimeRunConfig::clone(&self.config);
            if let Some(settings) = settings {
                // The saved session's own settings take the place of the runner's.
                config.settings = *settings;
            }
            options.apply(&mut config);
            if one_shot && config.settings.output_modalities.is_none() {
                config.settings.output_modalities = Some(vec![Modality::Text]);
            }
            prepare(&mut config, self.model.as_ref());
            Arc::new(config)
        };
        if let Some(budget @ cost::Budget::Usd(_)) = &config.budget {
            let model = config.model_name.as_deref().unwrap_or_default();
            if config.prices.get(model).is_none() {
                tracing::warn!(%budget, model, "no price for the model of a dollar budget");
                return Err(cost::unpriced(model));
            }
        }
        let info = SessionInfo {
            id: id.unwrap_or_else(new_session_id),
            config: config.clone(),
        };
        let tracker = config
            .tracker
            .clone()
            .unwrap_or_else(|| Arc::new(WallClockPlaybackTracker::default()));
        let cancelled = Canceller::new(match (&token, &config.cancel) {
            (Some(token), _) | (None, Some(token)) => token.child_token(),
            (None, None) => CancellationToken::new(),
        });
        let shared = Shared {
            config,
            context: context.unwrap_or_else(|| RunContext::new(())),
            tracker,
            model: self.model.clone(),
            cancelled,
        };
        Ok(Launching {
            agent,
            shared,
            info,
            own_token: token.is_some(),
        })
    }
}

/// What [`RealtimeRunner::launch`] keeps while it connects.
struct Launching {
    agent: Arc<RealtimeAgent>,
    shared: Shared,
    info: SessionInfo,
    /// The options brought a cancellation token of their own.
    own_token: bool,
}

impl Launching {
    /// Starts the session's task on `conn`, and its cancellation helpers.
    fn spawn(self, conn: Box<dyn crate::model::RealtimeConnection>) -> RealtimeSession {
        let Self {
            agent,
            shared,
            info,
            own_token,
        } = self;
        let cancelled = shared.cancelled.clone();
        // The helpers below end with the session: it cancels its token when it ends.
        if let (true, Some(runner_token)) = (own_token, shared.config.cancel.clone()) {
            // The session's token is the options' child; the runner's shutdown reaches it too.
            let cancelled = cancelled.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = runner_token.cancelled() => cancelled.token.cancel(),
                    _ = cancelled.token.cancelled() => {}
                }
            });
        }
        if let Some((interval, check)) = shared.config.cancel_check.clone() {
            let cancelled = cancelled.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = cancelled.token.cancelled() => break,
                        _ = tokio::time::sleep(interval) => {}
                    }
                    if check().await {
                        cancelled.cancel("cancel_check reported the run cancelled");
                        break;
                    }
                }
            });
        }
        let (command_tx, command_rx) = crate::session::queue::channel(256);
        let (event_tx, event_rx) = crate::session::queue::channel(shared.config.event_capacity);
        let (tail_tx, tail_rx) = oneshot::channel();
        let driver = Driver::new(conn, command_rx, event_tx, tail_tx, shared, agent);
        RealtimeSession::spawn(driver, command_tx, event_rx, tail_rx, cancelled, info)
    }
}

/// What every session's configuration gets at launch: the time limit bounded, and the model's
/// name (the settings', or else the backend's).
fn prepare(config: &mut RealtimeRunConfig, model: &dyn RealtimeModel) {
    config.max_duration = config.max_duration.map(|limit| limit.min(MAX_TIME_LIMIT));
    config.model_name = config.settings.model.clone().or_else(|| model.model_name());
}

/// What kind of session [`RealtimeRunner::launch`] starts.
pub(crate) enum Launch {
    /// A new session.
    New,
    /// A saved session going on: its id and settings.
    Resume {
        id: String,
        settings: Box<crate::model::SessionSettings>,
    },
    /// A one-shot run's: text answers unless the settings ask for audio.
    OneShot,
}

/// A new session id: the time, the process and a counter, so that ids from different
/// processes and restarts do not collide in practice.
fn new_session_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos() as u64);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("sess_ra{nanos:x}{:x}{n:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedModel;

    #[tokio::test]
    async fn sessions_share_the_runners_configuration_unless_their_options_change_it() {
        let runner = RealtimeRunner::new(RealtimeAgent::new("Assistant"))
            .config(RealtimeRunConfig::new().max_duration(MAX_TIME_LIMIT * 2))
            .model(ScriptedModel::new());
        assert_eq!(
            runner.config.max_duration,
            Some(MAX_TIME_LIMIT),
            "prepared as a session takes it"
        );
        let plain = runner.run(()).await.expect("session");
        let with_token = runner
            .start(SessionOptions::new().cancellation_token(CancellationToken::new()))
            .await
            .expect("session");
        // The runner, and each session's task and handle.
        assert_eq!(Arc::strong_count(&runner.config), 5, "one copy for three");
        let limited = runner
            .start(SessionOptions::new().max_duration(Duration::from_millis(50)))
            .await
            .expect("session");
        assert_eq!(
            Arc::strong_count(&runner.config),
            5,
            "a session with options has its own"
        );
        // Its own limit applies to it alone.
        let mut limited = limited;
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            use futures::StreamExt as _;
            while let Some(event) = limited.next().await {
                if let crate::RealtimeSessionEvent::Closed { error } = event {
                    return error;
                }
            }
            None
        })
        .await
        .expect("the limited session ended");
        assert!(matches!(ended, Some(Error::Timeout(_))), "{ended:?}");
        plain.close().await;
        with_token.close().await;
    }

    /// The fmt subscriber's output, shared with the test.
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn session_lines_carry_the_callers_span_also_when_a_filter_leaves_the_session_span_out() {
        // The test's own spans have this module as their target.
        for filter in ["info", "warn,realtime_agents::runner::tests=info"] {
            let lines = Lines::default();
            let writer = lines.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    use tracing::Instrument as _;
                    let call = tracing::info_span!("call", call_id = "CA-span-test");
                    async {
                        let runner = RealtimeRunner::new(RealtimeAgent::new("Spans"))
                            .model(ScriptedModel::new());
                        let mut session = runner
                            .start(SessionOptions::new().max_duration(Duration::from_millis(20)))
                            .await
                            .expect("session");
                        use futures::StreamExt as _;
                        while let Some(event) = session.next().await {
                            if matches!(event, crate::RealtimeSessionEvent::Closed { .. }) {
                                break;
                            }
                        }
                    }
                    .instrument(call)
                    .await;
                });
            });
            let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
            let ended = text
                .lines()
                .find(|l| l.contains("session ended with an error"))
                .unwrap_or_else(|| {
                    panic!("filter {filter}: no line of the session's end:\n{text}")
                });
            assert!(
                ended.contains("call_id=\"CA-span-test\"")
                    || ended.contains("call_id=CA-span-test"),
                "filter {filter}: {ended}"
            );
        }
    }
}
