//! The realtime session: one task that owns the connection and all session state, a
//! cloneable handle to send from anywhere, and a stream of events.

mod driver;
mod events;
mod playback;
pub(crate) mod queue;
pub mod turn;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use std::future::Future as _;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use driver::HistoryEdit;
pub(crate) use driver::{Command, Driver, Shared, agent_settings};
pub use events::{RealtimeSessionEvent, ResponseEnd};
pub use playback::{PlaybackTracker, WallClockPlaybackTracker};
pub use turn::{
    HandoffRecord, ResponseRecord, ToolCallRecord, TurnCause, TurnResult, TurnStatus, TurnTimings,
};

use crate::config::RealtimeRunConfig;
use crate::items::{History, RealtimeItem};
use crate::model::{ModelCommand, Usage, UserMessage};
use crate::{Error, RealtimeAgent, Result, SessionSnapshot};

/// What the runner tells a session about itself.
#[derive(Debug)]
pub(crate) struct SessionInfo {
    /// The session's id ([`RealtimeSessionHandle::session_id`]).
    pub(crate) id: String,
    /// The session's configuration, shared with its task: its settings before any agent's
    /// layer (for snapshots), the model its usage is priced as and the prices.
    pub(crate) config: Arc<RealtimeRunConfig>,
}

/// Cancels a session from outside, with a reason: the first reason given wins.
#[derive(Debug, Clone)]
pub(crate) struct Canceller {
    pub(crate) token: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl Canceller {
    pub(crate) fn new(token: CancellationToken) -> Self {
        Self {
            token,
            reason: Arc::default(),
        }
    }

    pub(crate) fn cancel(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
        self.token.cancel();
    }

    /// The reason given, or the one of the run's cancellation token (which takes none).
    pub(crate) fn reason(&self) -> String {
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "the run's cancellation token was cancelled".to_owned())
    }
}

/// A cheap, cloneable way to drive a session from any task.
///
/// ```no_run
/// # async fn demo(session: realtime_agents::RealtimeSession) -> realtime_agents::Result<()> {
/// let handle = session.handle();
/// tokio::spawn(async move {
///     // e.g. a microphone task
///     let chunk = vec![0u8; 960]; // 20 ms of PCM16 at 24 kHz
///     handle.send_audio(chunk, false).await
/// });
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RealtimeSessionHandle {
    commands: queue::Sender<Command>,
    cancel: CancellationToken,
    cancelled: Canceller,
    muted: Arc<AtomicBool>,
    info: Arc<SessionInfo>,
}

impl RealtimeSessionHandle {
    async fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::SessionClosed)
    }

    /// Sends a user message (text, or text and images) and asks for a response. Messages sent
    /// while the assistant is answering are answered together after it finishes.
    pub async fn send_message(&self, message: impl Into<UserMessage>) -> Result<()> {
        self.send(Command::Model(ModelCommand::UserMessage {
            message: message.into(),
            respond: true,
        }))
        .await
    }

    /// Adds a user message to the conversation without asking for a response (the model sees
    /// it on its next turn), e.g. an image the user is looking at.
    ///
    /// ```no_run
    /// # async fn demo(handle: realtime_agents::RealtimeSessionHandle) -> realtime_agents::Result<()> {
    /// use realtime_agents::model::UserMessage;
    /// handle.add_message(UserMessage::text("This is my screen:").with_image("data:image/png;base64,iVBORw0KGgo=")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_message(&self, message: impl Into<UserMessage>) -> Result<()> {
        self.send(Command::Model(ModelCommand::UserMessage {
            message: message.into(),
            respond: false,
        }))
        .await
    }

    /// Mutes or unmutes the user: while muted, [`send_audio`](Self::send_audio) drops the audio
    /// instead of sending it (the model hears silence; nothing is buffered).
    pub fn mute(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// Whether the user is muted.
    pub fn is_muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }

    /// Runs the tool call `call_id` that awaits approval
    /// ([`ToolApprovalRequired`](RealtimeSessionEvent::ToolApprovalRequired)). `always`
    /// approves every later call of the same tool in this session.
    ///
    /// Fails with [`Error::Config`] when no such call awaits approval.
    pub async fn approve_tool_call(&self, call_id: impl Into<String>, always: bool) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Approve {
            call_id: call_id.into(),
            always,
            reply,
        })
        .await?;
        rx.await.map_err(|_| Error::SessionClosed)?
    }

    /// Rejects the tool call `call_id` that awaits approval: the model gets `message` (default
    /// "Tool execution was not approved.") as the call's output and answers. `always` rejects
    /// every later call of the same tool in this session, with the same message.
    ///
    /// Fails with [`Error::Config`] when no such call awaits approval.
    pub async fn reject_tool_call(
        &self,
        call_id: impl Into<String>,
        always: bool,
        message: Option<String>,
    ) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Reject {
            call_id: call_id.into(),
            always,
            message,
            reply,
        })
        .await?;
        rx.await.map_err(|_| Error::SessionClosed)?
    }

    /// Edits the conversation: `edit` gets the current items and returns the wanted ones.
    /// Items that are gone are deleted on the server; changed, moved and new items are
    /// (re-)created in their place (spoken parts as their transcripts; items without an id get
    /// one). History events report each change.
    ///
    /// ```no_run
    /// # async fn demo(handle: realtime_agents::RealtimeSessionHandle) -> realtime_agents::Result<()> {
    /// use realtime_agents::items::{RealtimeItem, Role};
    /// // Forget everything but the last four items, and add a note at the start.
    /// handle.update_history(|items| {
    ///     let mut kept = vec![RealtimeItem::text(Role::System, "The caller is verified.")];
    ///     kept.extend(items.iter().rev().take(4).rev().cloned());
    ///     kept
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update_history<F>(&self, edit: F) -> Result<()>
    where
        F: FnOnce(&[RealtimeItem]) -> Vec<RealtimeItem> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.send(Command::UpdateHistory(HistoryEdit(Box::new(edit)), reply))
            .await?;
        rx.await.map_err(|_| Error::SessionClosed)?
    }

    /// The agent currently in charge (after handoffs and `update_agent`).
    pub async fn current_agent(&self) -> Result<Arc<RealtimeAgent>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::CurrentAgent(tx)).await?;
        rx.await.map_err(|_| Error::SessionClosed)
    }

    /// Appends user audio in the session's input format (PCM16 24 kHz mono by default).
    /// `commit` ends the user's turn (for sessions without voice activity detection).
    /// While [muted](Self::mute), the audio is dropped (a commit is still sent).
    pub async fn send_audio(&self, audio: impl Into<Bytes>, commit: bool) -> Result<()> {
        let audio = if self.is_muted() {
            if !commit {
                return Ok(());
            }
            Bytes::new()
        } else {
            audio.into()
        };
        self.send(Command::Model(ModelCommand::Audio { audio, commit }))
            .await
    }

    /// Asks for a response now (e.g. after committing audio with voice activity detection off).
    pub async fn create_response(&self) -> Result<()> {
        self.send(Command::Model(ModelCommand::CreateResponse))
            .await
    }

    /// Stops the assistant: cancels the response being generated, stops playback (an
    /// [`AudioInterrupted`](RealtimeSessionEvent::AudioInterrupted) event) and tells the model
    /// how much the user heard.
    pub async fn interrupt(&self) -> Result<()> {
        self.send(Command::Interrupt).await
    }

    /// Switches to another agent on the same connection (instructions and tools change; voice
    /// and audio formats stay).
    pub async fn update_agent(&self, agent: impl Into<Arc<RealtimeAgent>>) -> Result<()> {
        self.send(Command::UpdateAgent(agent.into())).await
    }

    /// Sends a raw client event of the backend's protocol (for OpenAI, a JSON event object).
    /// A `response.create` still goes through the session's response sequencing.
    pub async fn send_raw(&self, event: serde_json::Value) -> Result<()> {
        self.send(Command::Model(ModelCommand::Raw(event))).await
    }

    /// The history as the session task knows it now (it may be ahead of the events the stream
    /// has delivered; [`RealtimeSession::history`] is not).
    pub async fn history(&self) -> Result<Vec<RealtimeItem>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::History(tx)).await?;
        rx.await.map_err(|_| Error::SessionClosed)
    }

    /// Closes the session: stops running tools, closes the connection (waiting at most a couple
    /// of seconds for the peer) and ends the event stream. Calling it again does nothing.
    pub async fn close(&self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.commands.closed()).await;
    }

    /// Cancels the session: it ends like [`close`](Self::close), and its final
    /// [`Closed`](RealtimeSessionEvent::Closed) carries
    /// [`Error::Cancelled`] with `reason`. Returns at once; the first reason given wins.
    ///
    /// ```no_run
    /// # fn demo(handle: realtime_agents::RealtimeSessionHandle) {
    /// handle.cancel("the caller hung up");
    /// # }
    /// ```
    pub fn cancel(&self, reason: impl Into<String>) {
        self.cancelled.cancel(reason);
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// The session's id: made by the runner when the session starts (`sess_ra…`, unique in
    /// practice across processes), kept by a session [resumed](crate::RealtimeRunner::resume)
    /// from a [snapshot](Self::snapshot). It is this library's id, not the server's.
    ///
    /// ```no_run
    /// # fn demo(handle: realtime_agents::RealtimeSessionHandle) {
    /// tracing::info!(session = handle.session_id(), "call started");
    /// # }
    /// ```
    pub fn session_id(&self) -> &str {
        &self.info.id
    }

    /// Saves the session as it is now: its id, the agent in charge, the history as the session
    /// task knows it and the session settings, to continue later with
    /// [`RealtimeRunner::resume`](crate::RealtimeRunner::resume). The session goes on.
    ///
    /// The agent and the history are asked for one after the other, so a handoff that happens
    /// in between is seen by the history but not the agent; take snapshots between turns.
    ///
    /// ```no_run
    /// # async fn demo(handle: realtime_agents::RealtimeSessionHandle) -> Result<(), Box<dyn std::error::Error>> {
    /// let snapshot = handle.snapshot().await?;
    /// std::fs::write("call.json", serde_json::to_string(&snapshot)?)?;
    /// # Ok(()) }
    /// ```
    pub async fn snapshot(&self) -> Result<SessionSnapshot> {
        let agent = self.current_agent().await?;
        let history = self.history().await?;
        Ok(
            SessionSnapshot::new(self.info.id.clone(), agent.name(), history)
                .with_settings(self.info.config.settings.clone()),
        )
    }
}

/// A live realtime session: a [`Stream`] of [`RealtimeSessionEvent`]s plus the methods of its
/// [`RealtimeSessionHandle`].
///
/// Created by [`RealtimeRunner::run`](crate::RealtimeRunner::run). One task consumes events
/// while [`handle`](Self::handle)s send from others. The event channel is bounded: if the
/// application stops reading, the session stops reading the socket (nothing is dropped), and
/// the server sees TCP back-pressure. Dropping the session ends the session task.
///
/// The stream keeps the [turn contract](crate::turn): every user turn is announced by
/// `TurnStarted` and ends once with `TurnEnded` when the assistant has nothing left to do for
/// it; every `AgentStart` has one `AgentEnd`; the stream ends with exactly one `Closed`, after
/// every other event.
///
/// ```no_run
/// use futures::StreamExt;
/// use realtime_agents::{RealtimeAgent, RealtimeRunner, RealtimeSessionEvent};
/// # async fn demo() -> realtime_agents::Result<()> {
/// let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant")).run(()).await?;
/// session.send_message("Hello!").await?;
/// while let Some(event) = session.next().await {
///     match event {
///         RealtimeSessionEvent::TranscriptDelta { delta, .. } => print!("{delta}"),
///         // The assistant has nothing left to do for the turn (tool calls included).
///         RealtimeSessionEvent::TurnEnded { .. } => break,
///         _ => {}
///     }
/// }
/// session.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RealtimeSession {
    handle: RealtimeSessionHandle,
    events: queue::Receiver<RealtimeSessionEvent>,
    /// What the session task emitted while ending without waiting for room in `events`, then
    /// `Closed`: read after `events`.
    tail: Option<oneshot::Receiver<VecDeque<RealtimeSessionEvent>>>,
    tail_events: VecDeque<RealtimeSessionEvent>,
    history: History,
    usage: Usage,
}

impl RealtimeSession {
    pub(crate) fn spawn(
        driver: Driver,
        commands: queue::Sender<Command>,
        events: queue::Receiver<RealtimeSessionEvent>,
        tail: oneshot::Receiver<VecDeque<RealtimeSessionEvent>>,
        cancelled: Canceller,
        info: SessionInfo,
    ) -> Self {
        let cancel = driver.cancel_token();
        // `run` makes the session's span here, in the caller's (see there).
        tokio::spawn(driver.run());
        Self {
            handle: RealtimeSessionHandle {
                commands,
                cancel,
                cancelled,
                muted: Arc::new(AtomicBool::new(false)),
                info: Arc::new(info),
            },
            events,
            tail: Some(tail),
            tail_events: VecDeque::new(),
            history: History::default(),
            usage: Usage::default(),
        }
    }

    /// The next event: the channel's, then the tail's once the channel is closed.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<RealtimeSessionEvent>> {
        loop {
            if let Some(event) = self.tail_events.pop_front() {
                return Poll::Ready(Some(event));
            }
            if let Some(tail) = &mut self.tail {
                if let Some(event) = std::task::ready!(self.events.poll_recv(cx)) {
                    return Poll::Ready(Some(event));
                }
                self.tail_events = match std::task::ready!(Pin::new(tail).poll(cx)) {
                    Ok(events) => events,
                    // The session task died without saying goodbye (a panic, or the runtime
                    // shutting down): the stream still ends with `Closed`.
                    Err(_) => VecDeque::from([RealtimeSessionEvent::Closed {
                        error: Some(Error::Closed {
                            code: None,
                            reason: "the session task stopped unexpectedly".to_owned(),
                        }),
                    }]),
                };
                self.tail = None;
                continue;
            }
            return Poll::Ready(None);
        }
    }

    /// A handle for sending from other tasks.
    pub fn handle(&self) -> RealtimeSessionHandle {
        self.handle.clone()
    }

    /// The history as of the events this stream has delivered.
    pub fn history(&self) -> &[RealtimeItem] {
        self.history.items()
    }

    /// The tokens the session used, as of the [`Usage`](RealtimeSessionEvent::Usage) events
    /// this stream has delivered.
    ///
    /// ```no_run
    /// # fn demo(session: &realtime_agents::RealtimeSession) {
    /// println!("{} tokens so far", session.usage().total_tokens);
    /// # }
    /// ```
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// What [`usage`](Self::usage) cost in US dollars at the runner's
    /// [prices](crate::RealtimeRunConfig::prices), or `None` when they have no price for the
    /// session's model (see [`crate::cost`]).
    ///
    /// ```no_run
    /// # fn demo(session: &realtime_agents::RealtimeSession) {
    /// if let Some(dollars) = session.cost_usd() {
    ///     println!("${dollars:.4} so far");
    /// }
    /// # }
    /// ```
    pub fn cost_usd(&self) -> Option<f64> {
        let info = &self.handle.info;
        info.config
            .prices
            .cost_usd(info.config.model_name.as_deref()?, &self.usage)
    }

    /// See [`RealtimeSessionHandle::session_id`].
    pub fn session_id(&self) -> &str {
        self.handle.session_id()
    }

    /// See [`RealtimeSessionHandle::snapshot`].
    pub async fn snapshot(&self) -> Result<SessionSnapshot> {
        self.handle.snapshot().await
    }

    /// Sends a user message and waits for the end of the turn it begins (see the
    /// [turn contract](crate::turn)): the answer, tool calls, handoffs, usage and latencies.
    ///
    /// The events of the turn are read from this stream on the way (the session's
    /// [`history`](Self::history) follows them); use [`run_turn_with`](Self::run_turn_with) to
    /// see them too. Fails with the session's closing error if it ends first.
    ///
    /// ```no_run
    /// # async fn demo(mut session: realtime_agents::RealtimeSession) -> realtime_agents::Result<()> {
    /// let result = session.run_turn("What's the weather in Paris?").await?;
    /// assert!(result.status.is_completed());
    /// println!("{}", result.text);
    /// # Ok(()) }
    /// ```
    pub async fn run_turn(&mut self, message: impl Into<UserMessage>) -> Result<TurnResult> {
        self.run_turn_with(message, |_| {}).await
    }

    /// Like [`run_turn`](Self::run_turn), and `on_event` sees every event read meanwhile
    /// (audio to play, transcripts to show, approvals to answer from another handle...).
    ///
    /// ```no_run
    /// # async fn demo(mut session: realtime_agents::RealtimeSession) -> realtime_agents::Result<()> {
    /// use realtime_agents::RealtimeSessionEvent;
    /// let result = session
    ///     .run_turn_with("Tell me a story.", |event| {
    ///         if let RealtimeSessionEvent::TranscriptDelta { delta, .. } = event {
    ///             print!("{delta}");
    ///         }
    ///     })
    ///     .await?;
    /// println!("\n{} ms to first audio", result.timings.first_audio.unwrap_or_default().as_millis());
    /// # Ok(()) }
    /// ```
    pub async fn run_turn_with(
        &mut self,
        message: impl Into<UserMessage>,
        mut on_event: impl FnMut(&RealtimeSessionEvent),
    ) -> Result<TurnResult> {
        use futures::StreamExt as _;
        let (reply, rx) = oneshot::channel();
        self.handle
            .send(Command::Turn {
                message: message.into(),
                reply,
            })
            .await?;
        let turn_id = rx.await.map_err(|_| Error::SessionClosed)?;
        while let Some(event) = self.next().await {
            on_event(&event);
            match event {
                RealtimeSessionEvent::TurnEnded { result } if result.turn_id == turn_id => {
                    return Ok(*result);
                }
                RealtimeSessionEvent::Closed { error } => {
                    return Err(error.unwrap_or(Error::SessionClosed));
                }
                _ => {}
            }
        }
        Err(Error::SessionClosed)
    }

    /// See [`RealtimeSessionHandle::send_message`].
    pub async fn send_message(&self, message: impl Into<UserMessage>) -> Result<()> {
        self.handle.send_message(message).await
    }

    /// See [`RealtimeSessionHandle::send_audio`].
    pub async fn send_audio(&self, audio: impl Into<Bytes>, commit: bool) -> Result<()> {
        self.handle.send_audio(audio, commit).await
    }

    /// See [`RealtimeSessionHandle::interrupt`].
    pub async fn interrupt(&self) -> Result<()> {
        self.handle.interrupt().await
    }

    /// See [`RealtimeSessionHandle::update_agent`].
    pub async fn update_agent(&self, agent: impl Into<Arc<RealtimeAgent>>) -> Result<()> {
        self.handle.update_agent(agent).await
    }

    /// See [`RealtimeSessionHandle::close`]. Events already queued can still be read.
    pub async fn close(&self) {
        self.handle.close().await
    }

    fn observe(&mut self, event: &RealtimeSessionEvent) {
        match event {
            RealtimeSessionEvent::HistoryAdded { item }
            | RealtimeSessionEvent::HistoryUpdated { item } => {
                self.history.upsert(item.clone());
            }
            RealtimeSessionEvent::HistoryDeleted { item_id } => {
                self.history.remove(item_id);
            }
            RealtimeSessionEvent::Usage { total, .. } => self.usage = *total,
            RealtimeSessionEvent::TranscriptDelta {
                role,
                item_id,
                content_index,
                delta,
            } => {
                self.history
                    .append_transcript(item_id, *content_index, *role, delta);
            }
            _ => {}
        }
    }
}

impl Stream for RealtimeSession {
    type Item = RealtimeSessionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let event = std::task::ready!(self.poll_event(cx));
        if let Some(event) = &event {
            self.observe(event);
        }
        Poll::Ready(event)
    }
}
