//! Background runs: one-shot runs on their own task, with a handle to watch and cancel them.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::model::UserMessage;
use crate::{
    Error, OneShotResult, RealtimeRunner, RealtimeSessionHandle, Result, SessionOptions, TurnStatus,
};

/// Where a background run is ([`RunHandle::status`]).
///
/// ```
/// use realtime_agents::RunStatus;
/// assert!(!RunStatus::Running.is_done());
/// assert!(RunStatus::Cancelled.is_done());
/// assert_eq!(RunStatus::Failed.as_str(), "failed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunStatus {
    /// Connecting, or in its turn.
    Running,
    /// The turn ended and the session closed normally (the result's
    /// [`status`](OneShotResult::status) says how the turn ended: completed, or cut short by
    /// the model or a guardrail).
    Completed,
    /// Cancelled from outside: by [`RunHandle::cancel`] or a
    /// [cancellation token](SessionOptions::cancellation_token) (the error is
    /// [`Error::Cancelled`] with the reason).
    Cancelled,
    /// The connection failed, the turn failed, or the session ended with an error (the time
    /// limit, a lost connection, a budget...).
    Failed,
}

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_done(self) -> bool {
        self != Self::Running
    }

    /// The status as a lowercase word (`running`, `completed`...), for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    /// The status of a run that ended with `result`.
    fn of(result: &Result<OneShotResult>) -> Self {
        let error = match result {
            Ok(run) if run.error.is_none() && run.status != TurnStatus::Failed => {
                return Self::Completed;
            }
            Ok(run) => run.error.as_ref(),
            Err(error) => Some(error),
        };
        match error {
            Some(Error::Cancelled { .. }) => Self::Cancelled,
            _ => Self::Failed,
        }
    }
}

/// The session of a run and the reason it was cancelled for, guarded together so that a
/// cancellation before the session exists still reaches it with its reason.
#[derive(Debug, Default)]
struct Control {
    reason: Option<String>,
    session: Option<RealtimeSessionHandle>,
}

#[derive(Debug)]
struct Shared {
    control: Mutex<Control>,
    /// Cancelled with the run: stops a connection under way (a session that exists is
    /// cancelled through its handle, which carries the reason).
    token: CancellationToken,
    result: watch::Receiver<Option<Result<OneShotResult>>>,
}

/// A one-shot run on its own task ([`RealtimeRunner::dispatch`]): watch it, wait for it,
/// cancel it. Cheap to clone and to send anywhere; the run goes on when every handle is
/// dropped.
///
/// ```no_run
/// use realtime_agents::{RealtimeAgent, RealtimeRunner, RunStatus, SessionOptions};
/// # async fn demo() -> realtime_agents::Result<()> {
/// let runner = RealtimeRunner::new(RealtimeAgent::new("Assistant"));
/// let run = runner.dispatch("Summarise today's orders.", SessionOptions::new());
/// assert_eq!(run.status(), RunStatus::Running);
/// let watcher = run.clone();
/// tokio::spawn(async move {
///     tokio::time::sleep(std::time::Duration::from_secs(30)).await;
///     watcher.cancel("took too long");
/// });
/// match run.wait().await {
///     Ok(result) => println!("{} ({})", result.text, result.status.as_str()),
///     Err(error) => println!("no answer: {error}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RunHandle {
    shared: Arc<Shared>,
}

impl RunHandle {
    /// Where the run is now.
    pub fn status(&self) -> RunStatus {
        match &*self.shared.result.borrow() {
            None => RunStatus::Running,
            Some(result) => RunStatus::of(result),
        }
    }

    /// Whether the run has ended.
    pub fn is_done(&self) -> bool {
        self.shared.result.borrow().is_some()
    }

    /// Waits for the end of the run and returns its result (every handle gets it). Fails
    /// with the connection's error, or with the session's closing error when the run ended
    /// before its turn began: a run cancelled that early fails with [`Error::Cancelled`]
    /// and the reason.
    pub async fn wait(&self) -> Result<OneShotResult> {
        let mut result = self.shared.result.clone();
        match result.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or(Err(Error::SessionClosed)),
            // The task is gone without a result: it panicked, or the runtime is shutting down.
            Err(_) => Err(Error::Closed {
                code: None,
                reason: "the run's task stopped unexpectedly".to_owned(),
            }),
        }
    }

    /// Cancels the run with `reason`: its session ends, and the reason is in the result's
    /// [`error`](OneShotResult::error) (and its turn's) as [`Error::Cancelled`], or in the
    /// error of [`wait`](Self::wait) when the turn had not begun. Returns at once; the first
    /// reason given wins, and cancelling a finished run does nothing.
    pub fn cancel(&self, reason: impl Into<String>) {
        let mut control = self.shared.control();
        if control.reason.is_some() || self.is_done() {
            return;
        }
        let reason = reason.into();
        if let Some(session) = &control.session {
            session.cancel(reason.clone());
        }
        control.reason = Some(reason);
        drop(control);
        self.shared.token.cancel();
    }
}

impl Shared {
    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error of a run cancelled before its session started.
    fn cancelled_error(&self) -> Error {
        let reason = self.control().reason.clone();
        Error::Cancelled {
            reason: reason.unwrap_or_else(|| "the run was cancelled".to_owned()),
        }
    }
}

impl RealtimeRunner {
    /// Starts a [one-shot run](Self::run_once) on a task of its own and returns at once with
    /// a [`RunHandle`] to follow it. Needs a tokio runtime.
    ///
    /// ```no_run
    /// use realtime_agents::{RealtimeAgent, RealtimeRunner, SessionOptions};
    /// # async fn demo() {
    /// let runner = RealtimeRunner::new(RealtimeAgent::new("Assistant"));
    /// let runs: Vec<_> = ["Hello!", "What's new?"]
    ///     .into_iter()
    ///     .map(|message| runner.dispatch(message, SessionOptions::new()))
    ///     .collect();
    /// for run in runs {
    ///     println!("{:?}", run.wait().await.map(|r| r.text));
    /// }
    /// # }
    /// ```
    pub fn dispatch(&self, message: impl Into<UserMessage>, options: SessionOptions) -> RunHandle {
        let (done, result) = watch::channel(None);
        let shared = Arc::new(Shared {
            control: Mutex::default(),
            token: CancellationToken::new(),
            result,
        });
        let runner = self.clone();
        let message = message.into();
        let run = shared.clone();
        tokio::spawn(async move {
            let connecting = async {
                run.token.cancelled().await;
                run.cancelled_error()
            };
            let started = |session: &RealtimeSessionHandle| {
                // Under the lock, so that a cancel either finds the session or leaves its
                // reason for it here.
                let mut control = run.control();
                match &control.reason {
                    Some(reason) => session.cancel(reason.clone()),
                    None => control.session = Some(session.clone()),
                }
            };
            let result = runner
                .run_once_with(message, options, connecting, started)
                .await;
            run.control().session = None;
            let _ = done.send(Some(result));
        });
        RunHandle { shared }
    }
}
