//! One-shot runs: connect, one turn, close.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use crate::model::{Usage, UserMessage};
use crate::runner::Launch;
use crate::{
    Error, RealtimeRunner, RealtimeSession, RealtimeSessionEvent, RealtimeSessionHandle, Result,
    SessionOptions, TurnResult, TurnStatus,
};

/// How long a one-shot run waits for its session to end after the turn.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The outcome of a one-shot run ([`RealtimeRunner::run_once`]): the answer, how the turn
/// ended, what it cost, how long it took, and everything that happened.
///
/// ```no_run
/// use realtime_agents::{RealtimeAgent, RealtimeRunner, SessionOptions};
/// # async fn demo() -> realtime_agents::Result<()> {
/// let runner = RealtimeRunner::new(RealtimeAgent::new("Assistant"));
/// let result = runner.run_once("What's the capital of France?", SessionOptions::new()).await?;
/// println!("{} [{}] {} tokens, ${:.4}, {} ms",
///     result.text, result.status.as_str(), result.usage.total_tokens,
///     result.cost_usd.unwrap_or_default(), result.duration.as_millis());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OneShotResult {
    /// The session's id.
    pub session_id: String,
    /// The assistant's answer (its text, or the transcript of a spoken answer).
    pub text: String,
    /// How the turn ended.
    pub status: TurnStatus,
    /// The tokens the session used.
    pub usage: Usage,
    /// What they cost at the runner's [prices](crate::RealtimeRunConfig::prices), when it
    /// has one for the model.
    pub cost_usd: Option<f64>,
    /// From the start of the connection to the end of the session.
    pub duration: Duration,
    /// The whole turn: tool calls, handoffs, responses, timings.
    pub turn: TurnResult,
    /// Why the session ended, when it was not closed by the run: e.g.
    /// [`Error::Cancelled`] with the canceller's reason.
    pub error: Option<Error>,
    /// Every event of the session, in order, ending with
    /// [`Closed`](RealtimeSessionEvent::Closed).
    pub events: Vec<RealtimeSessionEvent>,
}

impl RealtimeRunner {
    /// Runs one turn in a session of its own: connects, sends `message`, waits for the end
    /// of the turn (tools and handoffs included, see the [turn contract](crate::turn)),
    /// closes, and returns the answer with its status, usage, cost, duration, session id and
    /// events.
    ///
    /// The answer is text unless `options` (or the runner's settings) ask for audio with
    /// [`output_modalities`](crate::model::SessionSettings::output_modalities). Fails with
    /// the connection's error, or with the session's closing error when it ended before the
    /// turn began (e.g. [`Error::Cancelled`]); once the turn has begun, how it ended is in
    /// [`status`](OneShotResult::status) and [`error`](OneShotResult::error).
    ///
    /// ```no_run
    /// use realtime_agents::{RealtimeAgent, RealtimeRunner, SessionOptions};
    /// use realtime_agents::model::SessionSettings;
    /// use realtime_agents::protocol::Modality;
    /// # async fn demo() -> realtime_agents::Result<()> {
    /// let runner = RealtimeRunner::new(RealtimeAgent::new("Assistant"));
    /// let text = runner.run_once("Hello!", SessionOptions::new()).await?;
    /// // Spoken, with the audio in the events.
    /// let spoken = SessionOptions::new()
    ///     .settings(SessionSettings::new().output_modalities(vec![Modality::Audio]));
    /// let audio = runner.run_once("Hello!", spoken).await?;
    /// # drop((text, audio)); Ok(()) }
    /// ```
    pub async fn run_once(
        &self,
        message: impl Into<UserMessage>,
        options: SessionOptions,
    ) -> Result<OneShotResult> {
        let never = std::future::pending();
        self.run_once_with(message.into(), options, never, |_| {})
            .await
    }

    /// [`run_once`](Self::run_once) that gives up connecting with `abort`'s error when it
    /// finishes first, and tells `started` about the session before the turn begins.
    pub(crate) async fn run_once_with(
        &self,
        message: UserMessage,
        options: SessionOptions,
        abort: impl Future<Output = Error>,
        started: impl FnOnce(&RealtimeSessionHandle),
    ) -> Result<OneShotResult> {
        let begun = Instant::now();
        let mut session = tokio::select! {
            session = self.launch(Ok(self.start_agent()), options, Launch::OneShot) => session?,
            error = abort => return Err(error),
        };
        started(&session.handle());
        let mut events = Vec::new();
        let turn = session
            .run_turn_with(message, |event| events.push(event.clone()))
            .await;
        let error = finish(&mut session, &mut events).await;
        let turn = match turn {
            Ok(turn) => turn,
            // The session ended before the turn began: its closing error says why.
            Err(e) => return Err(error.unwrap_or(e)),
        };
        Ok(OneShotResult {
            session_id: session.session_id().to_owned(),
            text: turn.text.clone(),
            status: turn.status,
            usage: session.usage(),
            cost_usd: session.cost_usd(),
            duration: begun.elapsed(),
            error: error.or_else(|| turn.error.clone()),
            turn,
            events,
        })
    }
}

/// Closes `session` (unless it ended already) and reads it to its end; returns its closing
/// error. The events read are added to `events`.
async fn finish(
    session: &mut RealtimeSession,
    events: &mut Vec<RealtimeSessionEvent>,
) -> Option<Error> {
    if !matches!(events.last(), Some(RealtimeSessionEvent::Closed { .. })) {
        session.close().await;
        let rest = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(event) = session.next().await {
                events.push(event);
            }
        })
        .await;
        if rest.is_err() {
            tracing::warn!("a one-shot session did not end within {CLOSE_WAIT:?} of closing");
        }
    }
    match events.last() {
        Some(RealtimeSessionEvent::Closed { error }) => error.clone(),
        _ => None,
    }
}
