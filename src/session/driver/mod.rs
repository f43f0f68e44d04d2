//! The session task: owns the connection, the history, running tools and guardrails.
//!
//! `mod.rs` has the task's loop, the model events and the connection's life (close,
//! cancellation, reconnect); `tools.rs` runs function calls, approvals and handoffs;
//! `guardrails.rs` checks the transcript and holds audio back; `history.rs` seeds, edits and
//! replays the conversation.
//!
//! Every session keeps this task's future for its whole life, sized for its largest state, so
//! the handlers are written to keep it small. A handler that takes an owned input (an event, a
//! command, an item, an id) is a plain `fn` returning an `async move` block: an `async fn` would
//! keep the argument twice in its future (the argument and the local it is moved into), in
//! every state. Rare, large paths (a tool call, closing, reconnecting) are boxed.
#![allow(
    clippy::manual_async_fn,
    reason = "handlers that take their input by value return `async move` blocks (see above)"
)]

mod guardrails;
mod history;
mod tools;
mod turns;

use super::queue::{self, TrySendError};

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::future::{BoxFuture, Either};
use futures::stream::FuturesUnordered;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Canceller, PlaybackTracker, RealtimeSessionEvent, ResponseEnd, TurnCause};
use crate::audio::AudioFormat;
use crate::config::RealtimeRunConfig;
use crate::hooks::HookDecision;
use crate::items::{History, ItemStatus, MessageItem, RealtimeItem, Role, Upsert};
use crate::model::{
    AudioCut, Capabilities, ModelCommand, ModelEvent, RealtimeConnection, RealtimeModel,
    ResponseStatus, SessionSettings, Usage,
};
use crate::wake::Wakes;
use crate::{Error, RealtimeAgent, Result, RunContext};

use guardrails::{GuardDone, GuardText, Held};
use tools::{Batch, PendingApproval, ToolDone};
use turns::{SessionEnd, Turns};

/// How long `close` waits for the peer to acknowledge the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The session task's wake-up sources (see [`Wakes`]).
mod wake {
    /// The connection to the model.
    pub(super) const CONNECTION: u32 = 1;
    /// The command channel from the handles.
    pub(super) const COMMANDS: u32 = 1 << 1;
    /// Running tool calls.
    pub(super) const TOOLS: u32 = 1 << 2;
    /// Running guardrail checks.
    pub(super) const GUARDRAILS: u32 = 1 << 3;
    /// Close, cancellation, the time limit, the application dropping its stream.
    pub(super) const LIFE: u32 = 1 << 4;
    /// The deadline of the microphone audio batch.
    pub(super) const MIC: u32 = 1 << 5;
    pub(super) const SOURCES: usize = 6;
}

/// The most items (commands, model events, finished tools) one source gets handled in one pass
/// of the session loop before the other sources get their turn.
const BATCH: usize = 32;

type EditFn = Box<dyn FnOnce(&[RealtimeItem]) -> Vec<RealtimeItem> + Send>;

/// Edits the conversation: gets the current items, returns the wanted ones.
pub(crate) struct HistoryEdit(pub(crate) EditFn);

impl std::fmt::Debug for HistoryEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryEdit")
    }
}

/// A request from a handle to the session task.
#[derive(Debug)]
pub(crate) enum Command {
    Model(ModelCommand),
    Interrupt,
    UpdateAgent(Arc<RealtimeAgent>),
    History(oneshot::Sender<Vec<RealtimeItem>>),
    CurrentAgent(oneshot::Sender<Arc<RealtimeAgent>>),
    Approve {
        call_id: String,
        always: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    Reject {
        call_id: String,
        always: bool,
        message: Option<String>,
        reply: oneshot::Sender<Result<()>>,
    },
    UpdateHistory(HistoryEdit, oneshot::Sender<Result<()>>),
    /// A user message that begins a turn; the reply is the turn's id.
    Turn {
        message: crate::model::UserMessage,
        reply: oneshot::Sender<u64>,
    },
}

/// What the session task shares with the runner.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// The runner's own configuration when the session's options change nothing in it, else
    /// the session's copy.
    pub(crate) config: Arc<RealtimeRunConfig>,
    pub(crate) context: RunContext,
    pub(crate) tracker: Arc<dyn PlaybackTracker>,
    pub(crate) model: Arc<dyn RealtimeModel>,
    /// Cancelled from outside (the run's token, `cancel_check`, a handle's `cancel`): ends
    /// with `Error::Cancelled` and the canceller's reason.
    pub(crate) cancelled: Canceller,
}

/// The session settings for `agent`: the run configuration's settings (voice, formats, turn
/// detection...) with the agent's instructions and enabled tools and handoffs on top. Once the
/// model has spoken, the voice is left out so that the server never sees an attempt to change it.
pub(crate) async fn agent_settings(
    shared: &Shared,
    agent: &RealtimeAgent,
    audio_started: bool,
) -> Result<SessionSettings> {
    let ctx = &shared.context;
    let mut settings = shared.config.settings.clone();
    settings.instructions = Some(agent.resolve_instructions(ctx).await);
    let mut tools: Vec<_> = agent
        .tools()
        .iter()
        .filter(|t| t.is_enabled(ctx, agent))
        .map(|t| t.spec())
        .collect();
    tools.extend(
        agent
            .handoffs()
            .iter()
            .filter(|h| h.is_enabled(ctx, agent))
            .map(|h| h.spec()),
    );
    let mut names = HashSet::new();
    if let Some(dup) = tools.iter().find(|t| !names.insert(t.name.as_str())) {
        return Err(Error::Config(format!(
            "agent `{}` has two tools named `{}`",
            agent.name(),
            dup.name
        )));
    }
    settings.tools = Some(tools);
    if audio_started {
        settings.voice = None;
    } else if let Some(voice) = agent.agent_voice() {
        settings.voice = Some(voice.clone());
    }
    Ok(settings)
}

/// The audio item the application is (or was last) playing.
#[derive(Debug)]
struct Playing {
    response_id: String,
    item_id: String,
    content_index: u32,
    bytes: usize,
}

/// An assistant item the user cut off: `played_ms` of `received_ms` were heard.
#[derive(Debug)]
struct Cut {
    response_id: String,
    item_id: String,
    content_index: u32,
    played_ms: u64,
    received_ms: f64,
}

/// Why the session ends, from outside the connection.
enum Step {
    Close,
    Cancelled,
    TimedOut,
}

/// What [`Driver::emit`] leaves to await: nothing, or the wait for room in a full event channel.
type Emitted<'a> = Either<std::future::Ready<()>, BoxFuture<'a, ()>>;

/// The session task.
pub(crate) struct Driver {
    conn: Box<dyn RealtimeConnection>,
    /// What the backend can do (read again after each reconnect and session update).
    caps: Capabilities,
    commands: queue::Receiver<Command>,
    events: queue::Sender<RealtimeSessionEvent>,
    /// Events that come after the channel's: the ones emitted while the session ends without
    /// waiting for the application, then `Closed`. The stream reads them once the channel is
    /// empty and closed, so nothing is lost and `Closed` is always last.
    tail: VecDeque<RealtimeSessionEvent>,
    tail_tx: Option<oneshot::Sender<VecDeque<RealtimeSessionEvent>>>,
    /// The session is ending: events never wait for room in the channel.
    ending: bool,

    cancel: CancellationToken,
    shared: Shared,
    agent: Arc<RealtimeAgent>,
    response_agent: Option<Arc<RealtimeAgent>>,
    history: History,
    /// Items this session created on the server: their echoes are not merged again.
    own_items: HashSet<String>,
    next_item_id: u64,
    /// Running tools; created with the first (a `FuturesUnordered` allocates when created).
    tools: Option<FuturesUnordered<BoxFuture<'static, ToolDone>>>,
    tool_aborts: HashMap<String, AbortHandle>,
    calls_seen: HashSet<String>,
    batches: HashMap<String, Batch>,
    approvals: HashMap<String, PendingApproval>,
    always_approved: HashSet<String>,
    always_rejected: HashMap<String, Option<String>>,
    /// Running guardrail checks; created with the first.
    guardrails: Option<FuturesUnordered<BoxFuture<'static, GuardDone>>>,
    guard: GuardText,
    blocked_response: Option<String>,
    held: VecDeque<Held>,
    held_seq: u64,
    output_format: AudioFormat,
    server_interrupts: bool,
    active_response: Option<String>,
    /// The response this session interrupted (barge-in or `interrupt`), whose cancellation is
    /// reported as [`ResponseEnd::Interrupted`].
    interrupted_response: Option<String>,
    playing: Option<Playing>,
    /// Items cut off while their response still streams: their history transcript becomes
    /// what was heard once the response ends.
    cut_items: Vec<Cut>,
    /// The last cut `stop_playback` made.
    last_cut: Option<Cut>,
    audio_started: bool,
    usage: Usage,
    turns: Turns,
    session_span: tracing::Span,
    /// The span of the response being generated (its tools run under it).
    turn_span: tracing::Span,
    wakes: Wakes<{ wake::SOURCES }>,
    /// Microphone audio waiting for its batch to fill (`input_audio_batch`).
    mic: BytesMut,
    /// When the batch in `mic` goes out even if it is not full.
    mic_due: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection's send queue was full: the application's commands wait in their queue
    /// until a connection pass finds room again.
    commands_held: bool,
    stopped: bool,
}

impl Driver {
    pub(crate) fn new(
        conn: Box<dyn RealtimeConnection>,
        commands: queue::Receiver<Command>,
        events: queue::Sender<RealtimeSessionEvent>,
        tail: oneshot::Sender<VecDeque<RealtimeSessionEvent>>,
        shared: Shared,
        agent: Arc<RealtimeAgent>,
    ) -> Self {
        let output_format = shared.config.settings.output_format.unwrap_or_default();
        Self {
            caps: conn.capabilities(),
            conn,
            commands,
            events,
            tail: VecDeque::new(),
            tail_tx: Some(tail),
            ending: false,

            cancel: CancellationToken::new(),
            shared,
            agent,
            response_agent: None,
            history: History::default(),
            own_items: HashSet::new(),
            next_item_id: 0,
            tools: None,
            tool_aborts: HashMap::new(),
            calls_seen: HashSet::new(),
            batches: HashMap::new(),
            approvals: HashMap::new(),
            always_approved: HashSet::new(),
            always_rejected: HashMap::new(),
            guardrails: None,
            guard: GuardText::default(),
            blocked_response: None,
            held: VecDeque::new(),
            held_seq: 0,
            output_format,
            server_interrupts: true,
            active_response: None,
            interrupted_response: None,
            playing: None,
            cut_items: Vec::new(),
            last_cut: None,
            audio_started: false,
            usage: Usage::default(),
            turns: Turns::default(),
            session_span: tracing::Span::none(),
            turn_span: tracing::Span::none(),
            wakes: Wakes::new(),
            mic: BytesMut::new(),
            mic_due: None,
            commands_held: false,
            stopped: false,
        }
    }

    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The session task. The driver lives in the task once: the block owns it and the loop
    /// borrows it. (An `async fn` that takes the driver by value keeps two copies of it in its
    /// future, the argument and the local it moves into: 2.3 KiB more per session.)
    pub(crate) fn run(mut self) -> impl Future<Output = ()> + Send + 'static {
        // A child of the caller's span (e.g. a gateway call with its call id). When a filter
        // leaves it out, the caller's span takes its place, so that the session's lines still
        // carry the caller's fields.
        let span = tracing::info_span!("realtime_session", agent = %self.agent.name());
        let span = match span.is_disabled() {
            true => tracing::Span::current(),
            false => span,
        };
        self.session_span = span.clone();
        async move { self.run_inner().await }.instrument(span)
    }

    async fn run_inner(&mut self) {
        tracing::info!("session started");
        let deadline = self
            .shared
            .config
            .max_duration
            .map(|limit| tokio::time::Instant::now() + limit);
        let seed = self.shared.config.initial_history.clone();
        if !seed.is_empty() && !self.caps.create_items {
            let error = Error::Config(
                "this backend cannot create conversation items: the seeded history was not sent"
                    .into(),
            );
            self.emit(RealtimeSessionEvent::Error { error }).await;
        } else if !seed.is_empty() {
            self.seed_history(seed).await;
        }
        // Created once: waits for the whole session, polled only when one of them fires.
        let mut life = std::pin::pin!({
            let (close, cancelled, events) = (
                self.cancel.clone(),
                self.shared.cancelled.token.clone(),
                self.events.gone(),
            );
            async move {
                tokio::select! {
                    _ = close.cancelled() => Step::Close,
                    _ = cancelled.cancelled() => Step::Cancelled,
                    _ = sleep_until(deadline) => Step::TimedOut,
                    _ = events.wait() => Step::Close,
                }
            }
        });
        let coalescing = self.shared.config.wake_coalescing;
        let mut ready = 0;
        while !self.stopped {
            if ready == 0 {
                ready = self.wakes.wait().await;
            }
            if ready & wake::LIFE != 0 {
                let polled = life.as_mut().poll(&mut self.wakes.context(wake::LIFE));
                if let Poll::Ready(step) = polled {
                    self.end(step).await;
                    break;
                }
            }
            if ready & wake::COMMANDS != 0 {
                self.run_commands().await;
            }
            if ready & wake::TOOLS != 0 {
                self.run_tools().await;
            }
            if ready & wake::GUARDRAILS != 0 {
                self.run_guardrails().await;
            }
            if ready & wake::MIC != 0 {
                self.run_mic_deadline().await;
            }
            if ready & wake::CONNECTION != 0 {
                self.run_connection().await;
            }
            ready = 0;
            if !coalescing.is_zero() && !self.stopped {
                // `wake_coalescing`: what becomes ready during the sleep only sets its bit, and
                // the next pass takes it all. After a quiet sleep, the task waits as usual.
                ready = self.wakes.take_quietly();
                if ready == 0 {
                    tokio::time::sleep(coalescing).await;
                    ready = self.wakes.take_quietly();
                } else {
                    // More work already (a source with more than a pass's worth): no sleep.
                    tokio::task::consume_budget().await;
                }
            }
        }
        for abort in self.tool_aborts.values() {
            abort.abort();
        }
        // Stops the `cancel_check` poller, if any.
        self.shared.cancelled.token.cancel();
        if let Some(tail) = self.tail_tx.take() {
            // The application may be gone; then nobody needs the tail.
            let _ = tail.send(std::mem::take(&mut self.tail));
        }
        tracing::info!("session ended");
    }

    /// Ends the session for a reason from outside the connection.
    fn end(&mut self, step: Step) -> impl Future<Output = ()> + Send + '_ {
        async move {
            // `close` is boxed: this future stays small without a box of its own.
            match step {
                Step::Close => self.close(None, true).await,
                Step::Cancelled => self.close(Some(self.cancelled_error()), true).await,
                Step::TimedOut => {
                    let limit = self.shared.config.max_duration.unwrap_or_default();
                    let error = Error::Timeout(format!("the session reached its {limit:?} limit"));
                    self.close(Some(error), true).await
                }
            }
        }
    }

    fn cancelled_error(&self) -> Error {
        Error::Cancelled {
            reason: self.shared.cancelled.reason(),
        }
    }

    /// Handles the commands that are waiting, up to a bound so that the other sources get
    /// their turn. Their frames go out together when the connection is polled.
    ///
    /// While the connection's send queue is full (a server that does not read, a network
    /// slower than the audio), commands stay in their queue: the application's sends wait
    /// for room there instead of failing, and nothing is dropped.
    async fn run_commands(&mut self) {
        for _ in 0..BATCH {
            if self.stopped {
                return;
            }
            if !self.conn.has_room() {
                self.commands_held = true;
                return;
            }
            // The context must not live across the handler's awaits.
            let polled = self
                .commands
                .poll_recv(&mut self.wakes.context(wake::COMMANDS));
            match polled {
                Poll::Ready(Some(command)) => self.on_command(command).await,
                Poll::Ready(None) => return self.close(None, true).await,
                Poll::Pending => return,
            }
        }
        self.wakes.mark(wake::COMMANDS);
    }

    async fn run_tools(&mut self) {
        for _ in 0..BATCH {
            let Some(tools) = &mut self.tools else {
                return;
            };
            let polled = tools.poll_next_unpin(&mut self.wakes.context(wake::TOOLS));
            match polled {
                Poll::Ready(Some(done)) => self.on_tool_done(done).await,
                Poll::Ready(None) | Poll::Pending => return,
            }
        }
        self.wakes.mark(wake::TOOLS);
    }

    async fn run_guardrails(&mut self) {
        for _ in 0..BATCH {
            let Some(guardrails) = &mut self.guardrails else {
                return;
            };
            let polled = guardrails.poll_next_unpin(&mut self.wakes.context(wake::GUARDRAILS));
            match polled {
                Poll::Ready(Some(done)) => self.on_guardrails_done(done).await,
                Poll::Ready(None) | Poll::Pending => return,
            }
        }
        self.wakes.mark(wake::GUARDRAILS);
    }

    /// Sends the microphone batch when its window is over.
    async fn run_mic_deadline(&mut self) {
        let Some(due) = self.mic_due.as_mut().filter(|_| !self.mic.is_empty()) else {
            return;
        };
        if due
            .as_mut()
            .poll(&mut self.wakes.context(wake::MIC))
            .is_ready()
        {
            self.flush_mic(false).await;
        }
    }

    /// Sends the microphone audio batched so far (maybe none, with `commit`) as one append.
    async fn flush_mic(&mut self, commit: bool) {
        let audio = self.mic.split().freeze();
        self.write(ModelCommand::Audio { audio, commit }).await;
    }

    /// Adds microphone audio to the batch (`input_audio_batch`), and sends the batch when it
    /// is full or committed.
    fn batch_audio(&mut self, audio: Bytes, commit: bool) -> impl Future<Output = ()> + Send + '_ {
        async move {
            let window = self.shared.config.input_audio_batch;
            let format = self.shared.config.settings.input_format.unwrap_or_default();
            let batch_bytes = format.ms_to_bytes(window.as_millis() as u64);
            if self.mic.is_empty() && !audio.is_empty() {
                // One allocation per batch, filled by copies of the chunks.
                self.mic.reserve(batch_bytes + audio.len());
                let due = tokio::time::Instant::now() + window;
                match &mut self.mic_due {
                    Some(sleep) => sleep.as_mut().reset(due),
                    None => self.mic_due = Some(Box::pin(tokio::time::sleep_until(due))),
                }
                self.wakes.mark(wake::MIC);
            }
            self.mic.extend_from_slice(&audio);
            if commit || self.mic.len() >= batch_bytes {
                self.flush_mic(commit).await;
            }
        }
    }

    /// Writes what is queued and handles the model events already received (a frame gives
    /// two: its raw form and the decoded event), up to a bound.
    async fn run_connection(&mut self) {
        for _ in 0..BATCH {
            if self.stopped {
                return;
            }
            let polled = self
                .conn
                .poll_event(&mut self.wakes.context(wake::CONNECTION));
            match polled {
                Poll::Ready(Some(event)) => self.on_model_event(event).await,
                Poll::Ready(None) => {
                    return self
                        .on_model_event(ModelEvent::Closed { error: None })
                        .await;
                }
                Poll::Pending => {
                    if self.commands_held && self.conn.has_room() {
                        self.commands_held = false;
                        self.wakes.mark(wake::COMMANDS);
                    }
                    return;
                }
            }
        }
        self.wakes.mark(wake::CONNECTION);
    }

    /// Hands `event` to the application. The work is done when called; what is left to await
    /// is the wait for room in a full channel, if any. (Not an `async fn`: every future that
    /// emits would keep room for the event and the call's state, on every session.)
    fn emit(&mut self, event: RealtimeSessionEvent) -> Emitted<'_> {
        let event = match event {
            RealtimeSessionEvent::Error { error } => RealtimeSessionEvent::Error {
                error: self.redact(error),
            },
            other => other,
        };
        self.turns.observe(&event);
        if !self.tail.is_empty() {
            // Once events go to the tail, all later ones do, to keep the order.
            self.tail.push_back(event);
            return Either::Left(std::future::ready(()));
        }
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Closed) => self.stopped = true,
            Err(TrySendError::Full(event)) if self.ending => self.tail.push_back(event),
            Err(TrySendError::Full(event)) => return Either::Right(self.emit_when_room(event)),
        }
        Either::Left(std::future::ready(()))
    }

    /// [`emit`](Self::emit) when the channel is full: waits for room (back-pressure on the
    /// server), but a consumer that stopped reading must not delay `close()` or a
    /// cancellation: then the event goes to the tail, which the application reads after the
    /// channel. Boxed: the wait is rare, and every future that emits would otherwise carry
    /// its size.
    fn emit_when_room(&mut self, event: RealtimeSessionEvent) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let room = tokio::select! {
                biased;
                room = self.events.room() => room,
                _ = self.cancel.cancelled() => false,
                _ = self.shared.cancelled.token.cancelled() => false,
            };
            // With room, the one producer is sure to queue it (or to find the stream gone).
            let event = match room {
                true => match self.events.try_send(event) {
                    Ok(()) => return,
                    Err(TrySendError::Closed) => {
                        self.stopped = true;
                        return;
                    }
                    Err(TrySendError::Full(event)) => event,
                },
                false => event,
            };
            if self.events.is_closed() {
                self.stopped = true;
            } else {
                self.ending = true;
                self.tail.push_back(event);
            }
        })
    }

    /// Sends a command to the model, after any microphone audio still in its batch.
    fn send(&mut self, command: ModelCommand) -> impl Future<Output = ()> + Send + '_ {
        async move {
            if !self.mic.is_empty() {
                self.flush_mic(false).await;
            }
            self.write(command).await;
        }
    }

    fn write(&mut self, command: ModelCommand) -> impl Future<Output = ()> + Send + '_ {
        async move {
            if let Some(hooks) = &self.shared.config.hooks {
                if let HookDecision::Reject(reason) = hooks.before_send(&command) {
                    tracing::debug!(%reason, "command dropped by a hook");
                    return;
                }
            }
            if matches!(command, ModelCommand::CreateResponse) && !self.caps.response_create {
                let error = Error::Config(
                    "this backend decides itself when to respond: it takes no response requests"
                        .into(),
                );
                return self.emit(RealtimeSessionEvent::Error { error }).await;
            }
            let asks_response = match &command {
                ModelCommand::UserMessage { respond, .. }
                | ModelCommand::ToolOutput { respond, .. } => *respond,
                ModelCommand::CreateResponse => true,
                ModelCommand::Raw(event) => {
                    event.get("type").and_then(serde_json::Value::as_str) == Some("response.create")
                }
                _ => false,
            };
            // The frame goes out when the connection is polled, together with any others queued
            // in this pass.
            self.wakes.mark(wake::CONNECTION);
            let message = matches!(command, ModelCommand::UserMessage { respond: true, .. });
            match self.conn.send(command) {
                Ok(()) if asks_response => {
                    if message {
                        self.turns.message_sent();
                    }
                    let owner = self.turns.request_owner.take();
                    self.turn_request(owner).await;
                }
                Ok(()) => {}
                Err(error) => self.emit(RealtimeSessionEvent::Error { error }).await,
            }
        }
    }

    fn redact(&self, error: Error) -> Error {
        error.redacted(&self.shared.config.redactor)
    }

    /// Ends the session. `graceful`: close the connection politely (bounded by a grace period);
    /// otherwise the connection is already gone. `error` goes in the final `Closed` only.
    fn close(&mut self, error: Option<Error>, graceful: bool) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // From here on nothing waits for the application: what does not fit in the channel
            // goes to the tail, which the stream reads last.
            self.ending = true;
            let error = error.map(|e| self.redact(e));
            for abort in self.tool_aborts.values() {
                abort.abort();
            }
            if graceful {
                let _ =
                    tokio::time::timeout(CLOSE_GRACE, poll_fn(|cx| self.conn.poll_close(cx))).await;
            }
            let how = if graceful {
                ResponseEnd::SessionEnded
            } else {
                ResponseEnd::ConnectionLost
            };
            self.end_active_response(how).await;
            let end = if graceful {
                SessionEnd::Ended(error.clone())
            } else {
                SessionEnd::Lost(error.clone())
            };
            self.end_all_turns(end).await;
            match &error {
                Some(error) => tracing::warn!(%error, "session ended with an error"),
                None => tracing::debug!("session closed"),
            }
            self.emit(RealtimeSessionEvent::Closed { error }).await;
            self.stopped = true;
        })
    }

    /// The connection ended without being asked to: reconnect if the policy allows, else end.
    fn on_connection_lost(&mut self, error: Option<Error>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(policy) = self.shared.config.reconnect else {
                return self.close(error, false).await;
            };
            let mut error = self.redact(error.unwrap_or_else(|| Error::Closed {
                code: None,
                reason: "the server ended the session".to_owned(),
            }));
            tracing::warn!(%error, "connection lost");
            self.stop_playback().await;
            self.end_active_response(ResponseEnd::ConnectionLost).await;
            for attempt in 1..=policy.max_attempts {
                self.emit(RealtimeSessionEvent::Reconnecting {
                    attempt,
                    error: error.clone(),
                })
                .await;
                let wait = tokio::time::sleep(policy.delay(attempt));
                tokio::select! {
                    _ = wait => {}
                    _ = self.cancel.cancelled() => return self.close(None, false).await,
                    _ = self.shared.cancelled.token.cancelled() => return self.close(Some(self.cancelled_error()), false).await,
                    _ = self.events.gone().wait() => return self.close(None, false).await,
                }
                let settings = match agent_settings(&self.shared, &self.agent, false).await {
                    Ok(settings) => settings,
                    Err(e) => return self.close(Some(e), false).await,
                };
                let connect = self.shared.model.connect(settings);
                let result = tokio::select! {
                    result = connect => result,
                    _ = self.cancel.cancelled() => return self.close(None, false).await,
                    _ = self.shared.cancelled.token.cancelled() => return self.close(Some(self.cancelled_error()), false).await,
                };
                match result {
                    Ok(conn) => {
                        self.caps = conn.capabilities();
                        self.conn = conn;
                        self.wakes.mark(wake::CONNECTION);
                        self.audio_started = false;
                        let replayed_items = self.replay_history().await;
                        tracing::info!(attempt, replayed_items, "reconnected");
                        self.emit(RealtimeSessionEvent::Reconnected {
                            attempt,
                            replayed_items,
                        })
                        .await;
                        // Requests sent on the lost connection died with it; tool outputs of the
                        // lost response still get their response.
                        self.turns.forget_requests();
                        let ids: Vec<String> = self.batches.keys().cloned().collect();
                        for id in ids {
                            if let Some(batch) = self.batches.get_mut(&id) {
                                batch.response_done = true;
                            }
                            self.respond_if_batch_complete(&id).await;
                        }
                        self.end_idle_turns().await;
                        return;
                    }
                    Err(e) => {
                        error = self.redact(e);
                        tracing::warn!(attempt, %error, "reconnect attempt failed");
                    }
                }
            }
            self.close(Some(error), false).await
        })
    }

    /// Ends the response in flight, if any, with `how` (its connection or session is gone).
    fn end_active_response(&mut self, how: ResponseEnd) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(response_id) = self.active_response.take() {
                self.agent_end(response_id, how, None).await;
            }
            self.held.clear();
            self.guard = GuardText::default();
            self.turn_span = tracing::Span::none();
        })
    }

    fn on_command(&mut self, command: Command) -> impl Future<Output = ()> + Send + '_ {
        async move {
            match &command {
                Command::Model(ModelCommand::UserMessage { respond: true, .. }) => {
                    self.begin_turn(TurnCause::Message).await;
                }
                Command::Model(ModelCommand::Audio { commit: true, .. }) => {
                    self.begin_turn(TurnCause::AudioCommitted).await;
                }
                _ => {}
            }
            match command {
                Command::Model(ModelCommand::Audio { audio, commit })
                    if !self.shared.config.input_audio_batch.is_zero() =>
                {
                    self.batch_audio(audio, commit).await
                }
                Command::Model(command) => self.send(command).await,
                Command::Interrupt => self.interrupt(true).await,
                Command::UpdateAgent(agent) => {
                    self.agent = agent;
                    self.send_agent_settings().await;
                }
                Command::History(reply) => {
                    let _ = reply.send(self.history.items().to_vec());
                }
                Command::CurrentAgent(reply) => {
                    let _ = reply.send(self.agent.clone());
                }
                Command::Approve {
                    call_id,
                    always,
                    reply,
                } => {
                    let result = self.approve(&call_id, always).await;
                    let _ = reply.send(result);
                }
                Command::Reject {
                    call_id,
                    always,
                    message,
                    reply,
                } => {
                    let result = self.reject(&call_id, always, message).await;
                    let _ = reply.send(result);
                }
                Command::UpdateHistory(edit, reply) => {
                    if !self.caps.edit_items {
                        let error = Error::Config(
                            "this backend's conversation is append-only: history cannot be edited"
                                .into(),
                        );
                        let _ = reply.send(Err(error));
                        return;
                    }
                    self.update_history(edit).await;
                    let _ = reply.send(Ok(()));
                }
                Command::Turn { message, reply } => {
                    let turn_id = self.begin_turn(TurnCause::Message).await;
                    let _ = reply.send(turn_id);
                    self.send(ModelCommand::UserMessage {
                        message,
                        respond: true,
                    })
                    .await;
                }
            }
        }
    }

    fn send_agent_settings(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match agent_settings(&self.shared, &self.agent, self.audio_started).await {
                Ok(mut settings) => {
                    // What the backend cannot change mid-session stays as it was.
                    let caps = &self.caps;
                    let kept = [
                        (
                            !caps.mutable_instructions && settings.instructions.take().is_some(),
                            "instructions",
                        ),
                        (
                            !caps.mutable_tools && settings.tools.take().is_some(),
                            "tools",
                        ),
                        (
                            !caps.mutable_voice && settings.voice.take().is_some(),
                            "voice",
                        ),
                    ];
                    for (_, what) in kept.iter().filter(|(kept, _)| *kept) {
                        tracing::warn!(
                            what,
                            "the backend cannot change this mid-session; it stays as it was"
                        );
                    }
                    self.send(ModelCommand::UpdateSession(Box::new(settings)))
                        .await
                }
                Err(error) => self.emit(RealtimeSessionEvent::Error { error }).await,
            }
        })
    }

    fn agent_start(
        &mut self,
        agent: &Arc<RealtimeAgent>,
        response_id: String,
    ) -> impl Future<Output = ()> + Send {
        async move {
            if let Some(hooks) = &self.shared.config.hooks {
                hooks.on_agent_start(&self.shared.context, agent);
            }
            let agent = agent.name().to_owned();
            self.emit(RealtimeSessionEvent::AgentStart { agent, response_id })
                .await;
        }
    }

    /// Reports the end of the response that `AgentStart` announced (the caller took it out of
    /// `active_response`).
    fn agent_end(
        &mut self,
        response_id: String,
        status: ResponseEnd,
        usage: Option<Usage>,
    ) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let agent = self
                .response_agent
                .take()
                .unwrap_or_else(|| self.agent.clone());
            if self.interrupted_response.as_deref() == Some(response_id.as_str()) {
                self.interrupted_response = None;
            }
            if let Some(hooks) = &self.shared.config.hooks {
                hooks.on_agent_end(&self.shared.context, &agent);
            }
            self.keep_heard_of(&response_id).await;
            self.turn_response_ended(&response_id, status, usage);
            let agent = agent.name().to_owned();
            self.emit(RealtimeSessionEvent::AgentEnd {
                agent,
                response_id,
                status,
            })
            .await;
        })
    }

    fn on_model_event(&mut self, event: ModelEvent) -> impl Future<Output = ()> + Send + '_ {
        async move {
            use RealtimeSessionEvent as E;
            if let Some(hooks) = &self.shared.config.hooks {
                if let HookDecision::Reject(reason) = hooks.on_model_event(&event) {
                    tracing::debug!(%reason, "model event ignored by a hook");
                    return;
                }
            }
            match event {
                ModelEvent::Raw(raw) => {
                    if self.shared.config.raw_events {
                        self.emit(E::Raw(raw)).await;
                    }
                }
                ModelEvent::SessionUpdated {
                    output_format,
                    server_interrupts,
                } => {
                    self.output_format = output_format;
                    self.server_interrupts = server_interrupts;
                    self.caps = self.conn.capabilities();
                }
                ModelEvent::ResponseStarted { response_id } => {
                    if let Some(previous) = self.active_response.take() {
                        let error = Error::Contract(format!(
                            "response `{response_id}` started before response `{previous}` ended"
                        ));
                        self.emit(E::Error { error }).await;
                        self.agent_end(previous, ResponseEnd::Incomplete, None)
                            .await;
                    }
                    let turn = self.turn_response_started(&response_id).await;
                    self.turn_span = tracing::info_span!(parent: &turn, "response", response_id = %response_id, agent = %self.agent.name());
                    self.turn_span
                        .in_scope(|| tracing::debug!("response started"));
                    self.active_response = Some(response_id.clone());
                    let agent = self.agent.clone();
                    self.response_agent = Some(agent.clone());
                    self.agent_start(&agent, response_id).await;
                }
                ModelEvent::ResponseDone {
                    response_id,
                    status,
                    usage,
                } => {
                    self.turn_span
                        .in_scope(|| tracing::debug!(?status, "response done"));
                    let started = self.active_response.as_deref() == Some(response_id.as_str());
                    if started {
                        self.active_response = None;
                    }
                    if let Some(usage) = usage {
                        self.usage += usage;
                        let total = self.usage;
                        self.emit(E::Usage {
                            response: usage,
                            total,
                        })
                        .await;
                    }
                    if self.guard.response_id == response_id && self.check_guardrails(true) {
                        // Boxed like the tool call: once per guarded response, and large.
                        Box::pin(self.release_held(u64::MAX)).await;
                    }
                    if started {
                        let how = match status {
                            ResponseStatus::Cancelled
                                if self.interrupted_response.as_deref() == Some(&response_id) =>
                            {
                                ResponseEnd::Interrupted
                            }
                            ResponseStatus::Cancelled => ResponseEnd::Cancelled,
                            ResponseStatus::Incomplete => ResponseEnd::Incomplete,
                            ResponseStatus::Failed => ResponseEnd::Failed,
                            _ => ResponseEnd::Completed,
                        };
                        self.agent_end(response_id.clone(), how, usage).await;
                    } else {
                        let error = Error::Contract(format!(
                            "response `{response_id}` ended, but it never started (no ResponseStarted)"
                        ));
                        self.emit(E::Error { error }).await;
                    }
                    if let Some(error) = self.shared.config.budget_exceeded(&self.usage) {
                        // Over budget: no further response is asked for; the session ends.
                        return self.close(Some(error), true).await;
                    }
                    self.batches
                        .entry(response_id.clone())
                        .or_default()
                        .response_done = true;
                    self.respond_if_batch_complete(&response_id).await;
                    self.end_idle_turns().await;
                    self.turn_span = tracing::Span::none();
                }
                ModelEvent::Audio {
                    response_id,
                    item_id,
                    content_index,
                    data,
                } => {
                    if self.blocked_response.as_deref() == Some(response_id.as_str()) {
                        return;
                    }
                    let event = E::Audio {
                        response_id,
                        item_id,
                        content_index,
                        data,
                    };
                    if let Some(event) = self.hold(event) {
                        self.deliver_audio(event).await;
                    }
                }
                ModelEvent::AudioDone {
                    item_id,
                    content_index,
                } => {
                    let event = E::AudioEnd {
                        item_id,
                        content_index,
                    };
                    if let Some(event) = self.hold(event) {
                        self.emit(event).await;
                    }
                }
                ModelEvent::TranscriptDelta {
                    response_id,
                    item_id,
                    content_index,
                    delta,
                } => {
                    if self.blocked_response.as_deref() == Some(response_id.as_str()) {
                        return;
                    }
                    self.ensure_message(&item_id, Role::Assistant).await;
                    self.history.append_transcript(
                        &item_id,
                        content_index,
                        Role::Assistant,
                        &delta,
                    );
                    self.guard_text(&response_id, &delta);
                    self.emit(E::TranscriptDelta {
                        role: Role::Assistant,
                        item_id,
                        content_index,
                        delta,
                    })
                    .await;
                }
                ModelEvent::InputTranscriptDelta {
                    item_id,
                    content_index,
                    delta,
                } => {
                    self.ensure_message(&item_id, Role::User).await;
                    self.history
                        .append_transcript(&item_id, content_index, Role::User, &delta);
                    self.emit(E::TranscriptDelta {
                        role: Role::User,
                        item_id,
                        content_index,
                        delta,
                    })
                    .await;
                }
                ModelEvent::InputTranscriptCompleted {
                    item_id,
                    content_index,
                    transcript,
                } => {
                    self.ensure_message(&item_id, Role::User).await;
                    self.history
                        .set_transcript(&item_id, content_index, Role::User, &transcript);
                    if let Some(item) = self.history.get(&item_id).cloned() {
                        self.emit(E::HistoryUpdated { item }).await;
                    }
                    self.emit(E::UserTranscript {
                        item_id,
                        transcript,
                    })
                    .await;
                }
                ModelEvent::Item(item) => {
                    if item.as_message().is_some_and(|m| m.role == Role::User) {
                        self.turns.message_echoed();
                    }
                    let id = item.item_id().to_owned();
                    if self.own_items.contains(&id) && self.history.get(&id).is_some() {
                        // The server echoing an item this session created: already in history.
                        return;
                    }
                    let change = self.history.upsert(item);
                    if let Some(item) = self.history.get(&id).cloned() {
                        let event = match change {
                            Upsert::Added => E::HistoryAdded { item },
                            Upsert::Updated => E::HistoryUpdated { item },
                        };
                        self.emit(event).await;
                    }
                }
                ModelEvent::ItemDeleted { item_id } => {
                    self.own_items.remove(&item_id);
                    if self.history.remove(&item_id) {
                        self.emit(E::HistoryDeleted { item_id }).await;
                    }
                }
                ModelEvent::FunctionCall {
                    call_id,
                    name,
                    arguments,
                    item_id: _,
                    response_id,
                } => {
                    let agent = self.agent.name().to_owned();
                    self.turns
                        .function_call(&agent, &response_id, &call_id, &name, &arguments);
                    // Boxed: once per tool call, and the largest state of this future otherwise
                    // (every session's task would keep room for it).
                    Box::pin(self.on_function_call(call_id, name, arguments, response_id)).await
                }
                ModelEvent::SpeechStarted {
                    item_id,
                    audio_start_ms,
                } => {
                    self.begin_turn(TurnCause::Speech).await;
                    self.emit(E::InputSpeechStarted {
                        item_id,
                        audio_start_ms,
                    })
                    .await;
                    if self.server_interrupts {
                        // The server cancels its response itself; stop playback and truncate.
                        self.interrupt(false).await;
                    }
                }
                ModelEvent::SpeechStopped {
                    item_id,
                    audio_end_ms,
                } => {
                    self.emit(E::InputSpeechStopped {
                        item_id,
                        audio_end_ms,
                    })
                    .await;
                    self.turn_speech_stopped().await;
                    self.end_idle_turns().await;
                }
                ModelEvent::InputAudioTimeout {
                    item_id,
                    audio_start_ms,
                    audio_end_ms,
                } => {
                    self.emit(E::InputAudioTimeout {
                        item_id,
                        audio_start_ms,
                        audio_end_ms,
                    })
                    .await
                }
                ModelEvent::Error(error) => {
                    let error = self.redact(error);
                    tracing::warn!(%error, "model error");
                    self.emit(E::Error { error }).await
                }
                ModelEvent::Closed { error } => self.on_connection_lost(error).await,
            }
        }
    }

    /// Hands audio to the application and records it as playing.
    fn deliver_audio(
        &mut self,
        event: RealtimeSessionEvent,
    ) -> impl Future<Output = ()> + Send + '_ {
        async move {
            let RealtimeSessionEvent::Audio {
                response_id,
                item_id,
                content_index,
                data,
            } = &event
            else {
                return self.emit(event).await;
            };
            self.audio_started = true;
            self.shared.tracker.on_audio_delivered(
                item_id,
                *content_index,
                data.len(),
                self.output_format,
            );
            match &mut self.playing {
                Some(p) if p.item_id == *item_id && p.content_index == *content_index => {
                    p.bytes += data.len()
                }
                slot => {
                    *slot = Some(Playing {
                        response_id: response_id.clone(),
                        item_id: item_id.clone(),
                        content_index: *content_index,
                        bytes: data.len(),
                    })
                }
            }
            self.emit(event).await;
        }
    }

    /// Makes sure a message item exists before text is appended to it, reporting it if new.
    async fn ensure_message(&mut self, item_id: &str, role: Role) {
        if self.history.get(item_id).is_none() {
            let item = RealtimeItem::Message(MessageItem {
                item_id: item_id.to_owned(),
                previous_item_id: None,
                role,
                content: Vec::new(),
                status: ItemStatus::InProgress,
            });
            self.history.upsert(item.clone());
            self.emit(RealtimeSessionEvent::HistoryAdded { item }).await;
        }
    }

    /// Stops local playback of the current item and says where to truncate it. Audio held back
    /// for the guardrails is dropped: nobody heard it.
    async fn stop_playback(&mut self) -> Option<AudioCut> {
        self.held.clear();
        self.last_cut = None;
        let playing = self.playing.take()?;
        let received_ms = self.output_format.bytes_to_ms(playing.bytes) as u64;
        let played_ms = self
            .shared
            .tracker
            .played_ms(&playing.item_id, playing.content_index)
            .unwrap_or(0)
            .min(received_ms);
        let generating = self.active_response.as_deref() == Some(playing.response_id.as_str());
        if played_ms >= received_ms && !generating {
            // Everything was heard: nothing to cut, and no spurious truncate.
            return None;
        }
        self.shared.tracker.on_interrupted();
        self.emit(RealtimeSessionEvent::AudioInterrupted {
            item_id: playing.item_id.clone(),
            content_index: playing.content_index,
            played_ms,
        })
        .await;
        self.last_cut = Some(Cut {
            response_id: playing.response_id.clone(),
            item_id: playing.item_id.clone(),
            content_index: playing.content_index,
            played_ms,
            received_ms: self.output_format.bytes_to_ms(playing.bytes),
        });
        // Truncating at 0 ms before anything was heard is rejected by the API; leave it.
        (played_ms > 0).then_some(AudioCut {
            item_id: playing.item_id,
            content_index: playing.content_index,
            audio_end_ms: played_ms,
        })
    }

    /// The history keeps what the user heard of a cut-off item, as the server does (it drops
    /// the transcript of what it truncates, and the model no longer sees the rest).
    fn keep_heard(&mut self, cut: Cut) -> impl Future<Output = ()> + Send + '_ {
        async move {
            let Some(full) = self.history.get(&cut.item_id).and_then(|item| {
                let message = item.as_message()?;
                message
                    .content
                    .get(cut.content_index as usize)?
                    .text()
                    .map(str::to_owned)
            }) else {
                return;
            };
            let heard = turns::heard_part(&full, cut.received_ms, cut.played_ms);
            if heard.len() == full.len() {
                return;
            }
            let heard = heard.to_owned();
            self.history
                .set_transcript(&cut.item_id, cut.content_index, Role::Assistant, &heard);
            if let Some(item) = self.history.get(&cut.item_id).cloned() {
                self.emit(RealtimeSessionEvent::HistoryUpdated { item })
                    .await;
            }
        }
    }

    /// A response ended: its cut-off items keep only what was heard.
    async fn keep_heard_of(&mut self, response_id: &str) {
        let cuts: Vec<Cut> = self
            .cut_items
            .extract_if(.., |c| c.response_id == response_id)
            .collect();
        for cut in cuts {
            self.keep_heard(cut).await;
        }
    }

    fn interrupt(&mut self, cancel_response: bool) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.interrupted_response.is_none() {
                self.interrupted_response = self.active_response.clone();
            }
            let mut cut = self.stop_playback().await;
            if let Some(heard) = self.last_cut.take() {
                // The user cut in: the history keeps what they heard, now or once the response
                // stops streaming.
                if self.active_response.as_deref() == Some(heard.response_id.as_str()) {
                    self.cut_items.push(heard);
                } else {
                    self.keep_heard(heard).await;
                }
            }
            let mut cancel_response = cancel_response;
            if !self.caps.truncation {
                // The backend cannot cut an item at what was heard: only playback stops.
                cut = None;
            }
            if cancel_response && !self.caps.response_cancel {
                // The backend cannot cancel: the rest of the response is dropped here instead.
                self.blocked_response.clone_from(&self.active_response);
                cancel_response = false;
            }
            if cancel_response || cut.is_some() {
                self.send(ModelCommand::Interrupt {
                    cancel_response,
                    cut,
                })
                .await;
            }
        })
    }
}

/// Sleeps until `deadline`, or forever without one. The timer is boxed: the session task keeps
/// this future for its whole life, and most sessions have no deadline.
fn sleep_until(deadline: Option<tokio::time::Instant>) -> impl Future<Output = ()> + Send {
    match deadline {
        Some(deadline) => Either::Right(Box::pin(tokio::time::sleep_until(deadline))),
        None => Either::Left(std::future::pending()),
    }
}
