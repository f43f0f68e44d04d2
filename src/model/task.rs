//! Backends written as ordinary async tasks over channels.
//!
//! [`TaskModel`] turns an async function into a [`RealtimeModel`]: each connection spawns the
//! function as a task that gets the initial [`SessionSettings`], reads [`ModelCommand`]s from
//! a [`CommandReceiver`] and writes [`ModelEvent`]s to an [`EventSender`]. The adapter does
//! the poll-based [`RealtimeConnection`] side:
//!
//! * Both channels are bounded ([`TaskModel::capacity`]). A task that sends faster than the
//!   session reads waits in [`EventSender::send`]; commands the task does not take yet wait in
//!   the connection. Once another `capacity` of them are waiting,
//!   [`has_room`](RealtimeConnection::has_room) is `false` and the session holds the
//!   application's commands back; [`RealtimeConnection::send`] called anyway fails with
//!   [`Error::Protocol`].
//! * [`ModelEvent::Closed`] is sent for the task when it ends: `error: None` when it returned
//!   `Ok(())` after the session closed the command channel, the error when it returned
//!   `Err(..)`, [`Error::Closed`] when it returned on its own, and [`Error::Protocol`] naming
//!   the panic when it panicked. Only the first `Closed` counts, so a task may also send its
//!   own.
//! * [`poll_close`](RealtimeConnection::poll_close) hands over the queued commands, then
//!   closes the command channel ([`CommandReceiver::recv`] returns `None`) and waits for the
//!   task to return, at most [`TaskModel::close_timeout`]; then it aborts the task.
//! * Dropping the connection aborts the task.
//!
//! [`EventSender::start_response`] writes the events of a response in the order the
//! [backend contract](super) asks for.
//!
//! ```
//! use realtime_agents::model::{ModelCommand, ModelEvent, RealtimeModel, SessionSettings};
//! use realtime_agents::model::task::TaskModel;
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> realtime_agents::Result<()> {
//! // A backend that answers every message with its text, reversed.
//! let model = TaskModel::new(|_settings, mut commands, events| async move {
//!     while let Some(command) = commands.recv().await {
//!         if let ModelCommand::UserMessage { message, respond } = command {
//!             let text: String = message.plain_text().chars().rev().collect();
//!             events.user_message(message).await?;
//!             if respond {
//!                 let mut response = events.start_response().await?;
//!                 response.text(&text).await?;
//!                 response.complete().await?;
//!             }
//!         }
//!     }
//!     Ok(())
//! });
//! let mut connection = model.connect(SessionSettings::new()).await?;
//! connection.send(ModelCommand::UserMessage { message: "stressed".into(), respond: true })?;
//! let mut said = String::new();
//! loop {
//!     match std::future::poll_fn(|cx| connection.poll_event(cx)).await {
//!         Some(ModelEvent::TranscriptDelta { delta, .. }) => said.push_str(&delta),
//!         Some(ModelEvent::ResponseDone { .. }) => break,
//!         Some(_) => {}
//!         None => panic!("closed early"),
//!     }
//! }
//! assert_eq!(said, "desserts");
//! # Ok(()) }
//! ```

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt as _, Stream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

use super::{
    Capabilities, ModelCommand, ModelEvent, RealtimeConnection, RealtimeModel, ResponseStatus,
    SessionSettings, Usage, UserMessage,
};
use crate::items::{ItemStatus, MessageContent, MessageItem, RealtimeItem, Role, ToolCallItem};
use crate::{Error, Result};

type Backend = dyn Fn(SessionSettings, CommandReceiver, EventSender) -> BoxFuture<'static, Result<()>>
    + Send
    + Sync;

/// The largest [`Audio`](ModelEvent::Audio) event [`ResponseWriter::speech`] sends.
const SPEECH_CHUNK_BYTES: usize = 4_800;

/// A [`RealtimeModel`] whose connections are async tasks (see the [module docs](self)).
///
/// ```
/// use std::time::Duration;
/// use realtime_agents::model::{Capabilities, task::TaskModel};
/// let model = TaskModel::new(|_settings, mut commands, _events| async move {
///     while commands.recv().await.is_some() {}
///     Ok(())
/// })
/// .capabilities(Capabilities::minimal().response_create(true))
/// .capacity(32)
/// .close_timeout(Duration::from_millis(500));
/// # let _ = model;
/// ```
#[derive(Clone)]
#[must_use]
pub struct TaskModel {
    backend: Arc<Backend>,
    capabilities: Capabilities,
    capacity: usize,
    close_timeout: Duration,
}

impl fmt::Debug for TaskModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskModel")
            .field("capabilities", &self.capabilities)
            .field("capacity", &self.capacity)
            .field("close_timeout", &self.close_timeout)
            .finish_non_exhaustive()
    }
}

impl TaskModel {
    /// A model whose every connection runs `backend(settings, commands, events)` as a task.
    ///
    /// The task should return `Ok(())` once [`CommandReceiver::recv`] gives `None` (the
    /// session closed the connection), and `Err(..)` when its backend failed; either way the
    /// adapter sends the final [`ModelEvent::Closed`]. Defaults: [`Capabilities::default`],
    /// channels of 64, a close timeout of one second.
    ///
    /// ```
    /// use realtime_agents::model::{ModelCommand, task::TaskModel};
    /// let model = TaskModel::new(|settings, mut commands, events| async move {
    ///     let _instructions = settings.instructions.unwrap_or_default();
    ///     while let Some(command) = commands.recv().await {
    ///         if let ModelCommand::UserMessage { message, .. } = command {
    ///             events.user_message(message).await?;
    ///         }
    ///     }
    ///     Ok(())
    /// });
    /// # let _ = model;
    /// ```
    pub fn new<F, Fut>(backend: F) -> Self
    where
        F: Fn(SessionSettings, CommandReceiver, EventSender) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        Self {
            backend: Arc::new(move |settings, commands, events| {
                backend(settings, commands, events).boxed()
            }),
            capabilities: Capabilities::default(),
            capacity: 64,
            close_timeout: Duration::from_secs(1),
        }
    }

    /// What the connections report as their [capabilities](RealtimeConnection::capabilities)
    /// until the task changes them with [`EventSender::set_capabilities`].
    ///
    /// ```
    /// use realtime_agents::model::{Capabilities, task::TaskModel};
    /// let model = TaskModel::new(|_, _, _| async { Ok(()) }).capabilities(Capabilities::minimal());
    /// # let _ = model;
    /// ```
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Capacity of the event channel and of the command channel (at least 1; default 64).
    ///
    /// ```
    /// use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, _| async { Ok(()) }).capacity(8);
    /// # let _ = model;
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// How long [`poll_close`](RealtimeConnection::poll_close) waits for the task to return
    /// before aborting it (default one second).
    ///
    /// ```
    /// use std::time::Duration;
    /// use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, _| async { Ok(()) }).close_timeout(Duration::from_millis(200));
    /// # let _ = model;
    /// ```
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
}

impl RealtimeModel for TaskModel {
    fn connect(
        &self,
        settings: SessionSettings,
    ) -> BoxFuture<'static, Result<Box<dyn RealtimeConnection>>> {
        let model = self.clone();
        async move {
            let connection: Box<dyn RealtimeConnection> =
                Box::new(TaskConnection::spawn(&model, settings));
            Ok(connection)
        }
        .boxed()
    }
}

/// What a connection and its task share.
#[derive(Debug)]
struct Shared {
    capabilities: Mutex<Capabilities>,
    /// The client closed the connection (or dropped it).
    closing: AtomicBool,
}

/// Where the connection is in its life.
#[derive(Debug)]
enum Life {
    Open,
    /// The close is under way until this instant.
    Closing(Pin<Box<tokio::time::Sleep>>),
    /// Over; `Closed` with this error is still to be returned.
    Ending(Option<Error>),
    /// `Closed` was returned: only `None` from now on.
    Ended,
}

struct TaskConnection {
    commands: Option<PollSender<ModelCommand>>,
    outbox: VecDeque<ModelCommand>,
    events: mpsc::Receiver<ModelEvent>,
    task: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    capacity: usize,
    close_timeout: Duration,
    life: Life,
}

impl TaskConnection {
    fn spawn(model: &TaskModel, settings: SessionSettings) -> Self {
        let (command_tx, command_rx) = mpsc::channel(model.capacity);
        let (event_tx, event_rx) = mpsc::channel(model.capacity);
        let shared = Arc::new(Shared {
            capabilities: Mutex::new(model.capabilities.clone()),
            closing: AtomicBool::new(false),
        });
        let events = EventSender {
            tx: event_tx,
            shared: shared.clone(),
        };
        let closed = events.tx.clone();
        let work = (model.backend)(settings, CommandReceiver { rx: command_rx }, events);
        let flags = shared.clone();
        let task = tokio::spawn(async move {
            let outcome = AssertUnwindSafe(work).catch_unwind().await;
            let error = match outcome {
                Ok(Ok(())) if flags.closing.load(Ordering::Acquire) => None,
                Ok(Ok(())) => Some(Error::Closed {
                    code: None,
                    reason: "the backend task ended".to_owned(),
                }),
                Ok(Err(error)) => Some(error),
                Err(panic) => Some(Error::Protocol(format!(
                    "the backend task panicked: {}",
                    panic_message(panic.as_ref())
                ))),
            };
            let _ = closed.send(ModelEvent::Closed { error }).await;
        });
        Self {
            commands: Some(PollSender::new(command_tx)),
            outbox: VecDeque::new(),
            events: event_rx,
            task: Some(task),
            shared,
            capacity: model.capacity,
            close_timeout: model.close_timeout,
            life: Life::Open,
        }
    }

    /// Moves waiting commands into the channel while it has room.
    fn flush(&mut self, cx: &mut Context<'_>) {
        let Some(sender) = &mut self.commands else {
            self.outbox.clear();
            return;
        };
        while !self.outbox.is_empty() {
            match sender.poll_reserve(cx) {
                Poll::Ready(Ok(())) => {
                    if let Some(command) = self.outbox.pop_front() {
                        // Cannot fail right after a successful reservation but for a task
                        // that is gone, whose commands no longer matter.
                        let _ = sender.send_item(command);
                    }
                }
                Poll::Ready(Err(_)) => {
                    // The task dropped its receiver: nobody reads commands any more.
                    self.outbox.clear();
                    return;
                }
                Poll::Pending => return,
            }
        }
    }

    /// Takes the events the task sent during the close: only its `Closed` matters.
    fn drain_while_closing(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(event)) = self.events.poll_recv(cx) {
            if let ModelEvent::Closed { error } = event {
                self.task_closed(error);
            }
        }
    }

    /// The task's own `Closed`, seen while closing: the first one is kept for `poll_event`.
    fn task_closed(&mut self, error: Option<Error>) {
        if matches!(self.life, Life::Closing(_)) {
            self.life = Life::Ending(error);
        }
    }
}

impl RealtimeConnection for TaskConnection {
    fn send(&mut self, command: ModelCommand) -> Result<()> {
        if !matches!(self.life, Life::Open) {
            return Err(Error::SessionClosed);
        }
        let Some(sender) = &mut self.commands else {
            return Err(Error::SessionClosed);
        };
        if self.outbox.is_empty() {
            if let Some(channel) = sender.get_ref() {
                match channel.try_send(command) {
                    Ok(()) => return Ok(()),
                    Err(mpsc::error::TrySendError::Closed(_)) => return Err(Error::SessionClosed),
                    Err(mpsc::error::TrySendError::Full(command)) => {
                        self.outbox.push_back(command);
                        return Ok(());
                    }
                }
            }
        }
        if self.outbox.len() >= self.capacity {
            return Err(Error::Protocol(format!(
                "the backend task is not taking commands: {} are waiting",
                self.outbox.len()
            )));
        }
        self.outbox.push_back(command);
        Ok(())
    }

    fn has_room(&self) -> bool {
        self.outbox.len() < self.capacity
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ModelEvent>> {
        match &mut self.life {
            Life::Ended => return Poll::Ready(None),
            Life::Ending(error) => {
                let error = error.take();
                self.life = Life::Ended;
                return Poll::Ready(Some(ModelEvent::Closed { error }));
            }
            Life::Closing(_) => {
                // Finish the close first; what the task says meanwhile is dropped.
                return match self.poll_close(cx) {
                    Poll::Ready(()) => self.poll_event(cx),
                    Poll::Pending => Poll::Pending,
                };
            }
            Life::Open => {}
        }
        self.flush(cx);
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                if matches!(event, ModelEvent::Closed { .. }) {
                    self.life = Life::Ended;
                    self.commands = None;
                    self.outbox.clear();
                }
                Poll::Ready(Some(event))
            }
            Poll::Ready(None) => {
                // Every sender is gone without a `Closed`: the task was aborted.
                self.life = Life::Ended;
                self.commands = None;
                Poll::Ready(Some(ModelEvent::Closed {
                    error: Some(Error::Protocol(
                        "the backend task stopped without closing".to_owned(),
                    )),
                }))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if matches!(self.life, Life::Open) {
            self.shared.closing.store(true, Ordering::Release);
            let deadline = tokio::time::Instant::now() + self.close_timeout;
            self.life = Life::Closing(Box::pin(tokio::time::sleep_until(deadline)));
        }
        let expired = match &mut self.life {
            Life::Closing(deadline) => deadline.as_mut().poll(cx).is_ready(),
            Life::Open | Life::Ending(_) | Life::Ended => return Poll::Ready(()),
        };
        // Hand over what is queued, then end the command stream.
        if self.commands.is_some() {
            self.flush(cx);
            if !self.outbox.is_empty() && !expired {
                self.drain_while_closing(cx);
                if !matches!(self.life, Life::Closing(_)) {
                    return Poll::Ready(());
                }
                return Poll::Pending;
            }
            self.commands = None;
            self.outbox.clear();
        }
        self.drain_while_closing(cx);
        if let Some(task) = &mut self.task {
            if Pin::new(task).poll(cx).is_ready() {
                self.task = None;
                self.drain_while_closing(cx);
            }
        }
        if !matches!(self.life, Life::Closing(_)) {
            return Poll::Ready(());
        }
        if self.task.is_none() {
            self.life = Life::Ending(None);
            return Poll::Ready(());
        }
        if expired {
            if let Some(task) = self.task.take() {
                tracing::warn!(
                    timeout = ?self.close_timeout,
                    "the backend task did not return after its commands ended; aborted"
                );
                task.abort();
            }
            self.life = Life::Ending(None);
            return Poll::Ready(());
        }
        Poll::Pending
    }

    fn capabilities(&self) -> Capabilities {
        self.shared
            .capabilities
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for TaskConnection {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A fresh id: `<prefix>_` and a number unique in this process, behind a per-process salt so
/// that ids from an earlier process (a saved history) do not collide either.
fn fresh_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static SALT: OnceLock<u32> = OnceLock::new();
    let salt = SALT.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{salt:08x}{n}")
}

/// The commands of one connection, as the backend task receives them.
///
/// `None` from [`recv`](Self::recv) means the session closed the connection: return
/// `Ok(())`. Also a [`Stream`].
///
/// ```
/// use realtime_agents::model::{ModelCommand, task::TaskModel};
/// let model = TaskModel::new(|_settings, mut commands, _events| async move {
///     while let Some(command) = commands.recv().await {
///         if let ModelCommand::Audio { audio, .. } = command {
///             let _samples = audio.len() / 2;
///         }
///     }
///     Ok(())
/// });
/// # let _ = model;
/// ```
#[derive(Debug)]
pub struct CommandReceiver {
    rx: mpsc::Receiver<ModelCommand>,
}

impl CommandReceiver {
    /// The next command; `None` once the session closed the connection.
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, mut commands, _| async move {
    ///     while let Some(_command) = commands.recv().await {}
    ///     Ok(())
    /// });
    /// # let _ = model;
    /// ```
    pub async fn recv(&mut self) -> Option<ModelCommand> {
        self.rx.recv().await
    }

    /// Polls for the next command (for backends that are state machines themselves).
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, mut commands, _| async move {
    ///     while let Some(_command) = std::future::poll_fn(|cx| commands.poll_recv(cx)).await {}
    ///     Ok(())
    /// });
    /// # let _ = model;
    /// ```
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ModelCommand>> {
        self.rx.poll_recv(cx)
    }
}

impl Stream for CommandReceiver {
    type Item = ModelCommand;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ModelCommand>> {
        self.rx.poll_recv(cx)
    }
}

/// Where the backend task sends its events. Cheap to clone.
///
/// ```
/// use realtime_agents::{audio::AudioFormat, model::{ModelEvent, task::TaskModel}};
/// let model = TaskModel::new(|settings, mut commands, events| async move {
///     let format = settings.output_format.unwrap_or(AudioFormat::PCM16_24K);
///     events.send(ModelEvent::session_updated(format, false)).await?;
///     while commands.recv().await.is_some() {}
///     Ok(())
/// });
/// # let _ = model;
/// ```
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: mpsc::Sender<ModelEvent>,
    shared: Arc<Shared>,
}

impl EventSender {
    /// Sends an event, waiting while the channel is full. Fails with
    /// [`Error::SessionClosed`] once the connection is gone.
    ///
    /// ```
    /// # use realtime_agents::model::{ModelEvent, task::TaskModel};
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     events.send(ModelEvent::closed(None)).await
    /// });
    /// # let _ = model;
    /// ```
    pub async fn send(&self, event: ModelEvent) -> Result<()> {
        self.tx.send(event).await.map_err(|_| Error::SessionClosed)
    }

    /// Whether the connection is gone (nothing sent arrives any more).
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     assert!(!events.is_closed());
    ///     Ok(())
    /// });
    /// # let _ = model;
    /// ```
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Waits until the connection is gone (for a task that waits on something else, e.g. its
    /// own socket).
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     events.closed().await;
    ///     Ok(())
    /// });
    /// # let _ = model;
    /// ```
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Changes what the connection reports as its capabilities. Send a
    /// [`SessionUpdated`](ModelEvent::SessionUpdated) right after: the session reads the
    /// capabilities again when it sees one.
    ///
    /// ```
    /// use realtime_agents::{audio::AudioFormat, model::{Capabilities, ModelEvent, task::TaskModel}};
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     // Learned at session start: instructions are fixed for this model version.
    ///     events.set_capabilities(Capabilities::default().mutable_instructions(false));
    ///     events.send(ModelEvent::session_updated(AudioFormat::PCM16_24K, true)).await
    /// });
    /// # let _ = model;
    /// ```
    pub fn set_capabilities(&self, capabilities: Capabilities) {
        *self
            .shared
            .capabilities
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = capabilities;
    }

    /// A fresh id, `<prefix>_…`, unique in this process (and unlikely to collide with ids of
    /// another), at most 32 characters for a short prefix.
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     assert_ne!(events.new_id("item"), events.new_id("item"));
    ///     Ok(())
    /// });
    /// # let _ = model;
    /// ```
    pub fn new_id(&self, prefix: &str) -> String {
        fresh_id(prefix)
    }

    /// Reports a user message as a conversation item with a fresh id (the answer the
    /// [contract](super) asks for to every [`ModelCommand::UserMessage`]); returns the id.
    ///
    /// ```
    /// # use realtime_agents::model::{ModelCommand, task::TaskModel};
    /// let model = TaskModel::new(|_, mut commands, events| async move {
    ///     while let Some(command) = commands.recv().await {
    ///         if let ModelCommand::UserMessage { message, .. } = command {
    ///             let _item_id = events.user_message(message).await?;
    ///         }
    ///     }
    ///     Ok(())
    /// });
    /// # let _ = model;
    /// ```
    pub async fn user_message(&self, message: UserMessage) -> Result<String> {
        let item_id = self.new_id("item");
        self.send(ModelEvent::Item(message.into_item(item_id.clone())))
            .await?;
        Ok(item_id)
    }

    /// Starts a response: sends [`ResponseStarted`](ModelEvent::ResponseStarted) with a
    /// fresh id and returns the writer for what it says. Finish it with
    /// [`complete`](ResponseWriter::complete) or [`finish`](ResponseWriter::finish).
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     let mut response = events.start_response().await?;
    ///     response.text("Hello!").await?;
    ///     response.complete().await?;
    ///     events.closed().await;
    ///     Ok(())
    /// });
    /// # let _ = model;
    /// ```
    pub async fn start_response(&self) -> Result<ResponseWriter> {
        let id = self.new_id("resp");
        self.send(ModelEvent::response_started(id.clone())).await?;
        Ok(ResponseWriter {
            events: self.clone(),
            id,
            finished: false,
        })
    }
}

/// Writes one response's events in contract order; see [`EventSender::start_response`].
///
/// Each output is one conversation item: an in-progress [`Item`](ModelEvent::Item), its
/// content, then the completed `Item`. A writer dropped without
/// [`finish`](Self::finish) ends its response as [`Failed`](ResponseStatus::Failed) if the
/// channel has room.
///
/// ```
/// # use realtime_agents::model::task::TaskModel;
/// let model = TaskModel::new(|_, _, events| async move {
///     let mut response = events.start_response().await?;
///     response.speech("Hi!", vec![0u8; 960]).await?;
///     let _call_id = response.function_call("get_time", "{}").await?;
///     response.complete().await?;
///     events.closed().await;
///     Ok(())
/// });
/// # let _ = model;
/// ```
#[derive(Debug)]
pub struct ResponseWriter {
    events: EventSender,
    id: String,
    finished: bool,
}

impl ResponseWriter {
    /// The response id.
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     let response = events.start_response().await?;
    ///     assert!(response.id().starts_with("resp_"));
    ///     response.complete().await
    /// });
    /// # let _ = model;
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    async fn send_all(&self, events: Vec<ModelEvent>) -> Result<()> {
        for event in events {
            self.events.send(event).await?;
        }
        Ok(())
    }

    /// A text answer: an assistant message whose text arrives one word per
    /// [`TranscriptDelta`](ModelEvent::TranscriptDelta). Returns the item id.
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     let mut response = events.start_response().await?;
    ///     let _item_id = response.text("Sure.").await?;
    ///     response.complete().await
    /// });
    /// # let _ = model;
    /// ```
    pub async fn text(&mut self, text: &str) -> Result<String> {
        let item_id = self.events.new_id("item");
        self.send_all(message_events(&self.id, &item_id, text, None))
            .await?;
        Ok(item_id)
    }

    /// A spoken answer: an assistant message with its transcript (a delta per word, ahead of
    /// the audio it describes), its audio (in the session's output format, in chunks of at most
    /// 4,800 bytes) and [`AudioDone`](ModelEvent::AudioDone). Returns the item id.
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     let mut response = events.start_response().await?;
    ///     response.speech("Hmm.", vec![0u8; 9_600]).await?; // 200 ms of PCM16 silence
    ///     response.complete().await
    /// });
    /// # let _ = model;
    /// ```
    pub async fn speech(&mut self, transcript: &str, audio: impl Into<Bytes>) -> Result<String> {
        let item_id = self.events.new_id("item");
        let audio = (audio.into(), SPEECH_CHUNK_BYTES);
        self.send_all(message_events(&self.id, &item_id, transcript, Some(audio)))
            .await?;
        Ok(item_id)
    }

    /// A function call with JSON `arguments`: its [`Item`](ModelEvent::Item), then the
    /// [`FunctionCall`](ModelEvent::FunctionCall). Returns the call id, which the session's
    /// [`ToolOutput`](ModelCommand::ToolOutput) answers.
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     let mut response = events.start_response().await?;
    ///     let _call_id = response.function_call("get_weather", r#"{"city":"Paris"}"#).await?;
    ///     response.complete().await
    /// });
    /// # let _ = model;
    /// ```
    pub async fn function_call(&mut self, name: &str, arguments: &str) -> Result<String> {
        let item_id = self.events.new_id("item");
        let call_id = self.events.new_id("call");
        let events = call_events(&self.id, &item_id, &call_id, name, arguments);
        self.send_all(events.into()).await?;
        Ok(call_id)
    }

    /// Sends any event (an error, a user's speech starting...) in the middle of the
    /// response.
    ///
    /// ```
    /// # use realtime_agents::model::{ModelEvent, task::TaskModel};
    /// # use realtime_agents::{Error, ServerError};
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     let mut response = events.start_response().await?;
    ///     let warning = ServerError::new("server_error", "slow backend");
    ///     response.send(ModelEvent::Error(Error::Server(warning))).await?;
    ///     response.complete().await
    /// });
    /// # let _ = model;
    /// ```
    pub async fn send(&mut self, event: ModelEvent) -> Result<()> {
        self.events.send(event).await
    }

    /// Ends the response with [`ResponseDone`](ModelEvent::ResponseDone).
    ///
    /// ```
    /// # use realtime_agents::model::{ResponseStatus, Usage, task::TaskModel};
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     let response = events.start_response().await?;
    ///     response.finish(ResponseStatus::Incomplete, Some(Usage::new(10, 4096))).await
    /// });
    /// # let _ = model;
    /// ```
    pub async fn finish(mut self, status: ResponseStatus, usage: Option<Usage>) -> Result<()> {
        self.finished = true;
        let done = ModelEvent::response_done(std::mem::take(&mut self.id), status, usage);
        self.events.send(done).await
    }

    /// Ends the response as [`Completed`](ResponseStatus::Completed), without usage.
    ///
    /// ```
    /// # use realtime_agents::model::task::TaskModel;
    /// let model = TaskModel::new(|_, _, events| async move {
    ///     events.start_response().await?.complete().await
    /// });
    /// # let _ = model;
    /// ```
    pub async fn complete(self) -> Result<()> {
        self.finish(ResponseStatus::Completed, None).await
    }
}

/// An assistant message of a response, in contract order: the item in progress, the
/// transcript one word per delta with the audio (if any) in chunks of at most `chunk` bytes,
/// each word ahead of its share of the audio, the end of the audio, then the completed item.
pub(crate) fn message_events(
    response_id: &str,
    item_id: &str,
    transcript: &str,
    audio: Option<(Bytes, usize)>,
) -> Vec<ModelEvent> {
    let spoken = audio.is_some();
    let part = |text: &str| {
        if spoken {
            MessageContent::Audio {
                transcript: (!text.is_empty()).then(|| text.to_owned()),
            }
        } else {
            MessageContent::Text {
                text: text.to_owned(),
            }
        }
    };
    let item = |text: &str, status| {
        ModelEvent::Item(RealtimeItem::Message(MessageItem {
            item_id: item_id.to_owned(),
            previous_item_id: None,
            role: Role::Assistant,
            content: vec![part(text)],
            status,
        }))
    };
    let mut events = vec![item("", ItemStatus::InProgress)];
    let words: Vec<&str> = transcript.split_inclusive(' ').collect();
    let delta = |word: &str| ModelEvent::transcript_delta(response_id, item_id, word);
    let Some((audio, chunk)) = audio else {
        events.extend(words.iter().map(|word| delta(word)));
        events.push(item(transcript, ItemStatus::Completed));
        return events;
    };
    // Each word just ahead of its share of the audio, as a speaking model streams them.
    let chunk = chunk.max(1);
    let chunks = audio.len().div_ceil(chunk);
    let piece = |n: usize| {
        let end = ((n + 1) * chunk).min(audio.len());
        ModelEvent::audio(response_id, item_id, audio.slice(n * chunk..end))
    };
    let mut sent = 0;
    for (i, word) in words.iter().enumerate() {
        events.push(delta(word));
        let upto = chunks * (i + 1) / words.len();
        events.extend((sent..upto).map(piece));
        sent = sent.max(upto);
    }
    events.extend((sent..chunks).map(piece));
    events.push(ModelEvent::audio_done(item_id));
    events.push(item(transcript, ItemStatus::Completed));
    events
}

/// A function call of a response: its item, then the call.
pub(crate) fn call_events(
    response_id: &str,
    item_id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
) -> [ModelEvent; 2] {
    [
        ModelEvent::Item(RealtimeItem::ToolCall(ToolCallItem {
            item_id: item_id.to_owned(),
            previous_item_id: None,
            call_id: call_id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
            output: None,
            status: ItemStatus::Completed,
        })),
        ModelEvent::function_call(response_id, item_id, call_id, name, arguments),
    ]
}

impl Drop for ResponseWriter {
    fn drop(&mut self) {
        if !self.finished {
            let done = ModelEvent::response_done(
                std::mem::take(&mut self.id),
                ResponseStatus::Failed,
                None,
            );
            if self.events.tx.try_send(done).is_err() && !self.events.is_closed() {
                tracing::warn!("a response writer was dropped unfinished and its end was lost");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    async fn next(conn: &mut Box<dyn RealtimeConnection>) -> Option<ModelEvent> {
        tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| conn.poll_event(cx)))
            .await
            .expect("no event within 5 s")
    }

    async fn connect(model: TaskModel) -> Box<dyn RealtimeConnection> {
        model
            .connect(SessionSettings::new())
            .await
            .expect("connect")
    }

    /// Sets its flag when dropped (the task's future was dropped: returned or aborted).
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_panic_becomes_a_closed_event_naming_it() {
        let mut conn = connect(TaskModel::new(|_, _, _| async {
            if true {
                panic!("backend exploded");
            }
            Ok(())
        }))
        .await;
        match next(&mut conn).await {
            Some(ModelEvent::Closed {
                error: Some(Error::Protocol(message)),
            }) => assert_eq!(message, "the backend task panicked: backend exploded"),
            other => panic!("expected Closed with the panic, got {other:?}"),
        }
        assert!(next(&mut conn).await.is_none());
        assert!(next(&mut conn).await.is_none());
        assert!(matches!(
            conn.send(ModelCommand::CreateResponse),
            Err(Error::SessionClosed)
        ));
    }

    #[tokio::test]
    async fn returning_an_error_or_early_closes_with_it() {
        let mut conn = connect(TaskModel::new(|_, _, _| async {
            Err(Error::Config("no key".into()))
        }))
        .await;
        assert!(matches!(
            next(&mut conn).await,
            Some(ModelEvent::Closed { error: Some(Error::Config(m)) }) if m == "no key"
        ));
        let mut conn = connect(TaskModel::new(|_, _, _| async { Ok(()) })).await;
        assert!(matches!(
            next(&mut conn).await,
            Some(ModelEvent::Closed {
                error: Some(Error::Closed { .. })
            })
        ));
    }

    #[tokio::test]
    async fn only_the_first_closed_counts() {
        let mut conn = connect(TaskModel::new(|_, _, events| async move {
            events.send(ModelEvent::closed(None)).await?;
            Err(Error::Protocol("after the end".into()))
        }))
        .await;
        assert!(matches!(
            next(&mut conn).await,
            Some(ModelEvent::Closed { error: None })
        ));
        assert!(next(&mut conn).await.is_none());
    }

    #[tokio::test]
    async fn dropping_the_connection_aborts_the_task() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let conn = connect(TaskModel::new(move |_, _, _| {
            let guard = Guard(flag.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(())
            }
        }))
        .await;
        tokio::task::yield_now().await;
        assert!(!dropped.load(Ordering::SeqCst));
        drop(conn);
        for _ in 0..100 {
            if dropped.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the task outlived its connection");
    }

    #[tokio::test]
    async fn close_hands_over_queued_commands_then_ends_the_stream() {
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        let mut conn = connect(
            TaskModel::new(move |_, mut commands, _| {
                let count = count.clone();
                async move {
                    while commands.recv().await.is_some() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            })
            .capacity(1),
        )
        .await;
        for _ in 0..2 {
            conn.send(ModelCommand::CreateResponse).expect("queued");
        }
        let started = tokio::time::Instant::now();
        poll_fn(|cx| conn.poll_close(cx)).await;
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        assert!(matches!(
            next(&mut conn).await,
            Some(ModelEvent::Closed { error: None })
        ));
        assert!(next(&mut conn).await.is_none());
        assert!(matches!(
            conn.send(ModelCommand::CreateResponse),
            Err(Error::SessionClosed)
        ));
        poll_fn(|cx| conn.poll_close(cx)).await;
    }

    #[tokio::test]
    async fn close_aborts_a_task_that_does_not_return_in_time() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let mut conn = connect(
            TaskModel::new(move |_, _commands, _| {
                let guard = Guard(flag.clone());
                async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                    Ok(())
                }
            })
            .close_timeout(Duration::from_millis(50)),
        )
        .await;
        let started = tokio::time::Instant::now();
        poll_fn(|cx| conn.poll_close(cx)).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(50) && took < Duration::from_secs(1),
            "{took:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(dropped.load(Ordering::SeqCst), "the task was not aborted");
    }

    #[tokio::test]
    async fn events_wait_for_the_reader_and_commands_queue_up_to_a_bound() {
        let sent = Arc::new(AtomicUsize::new(0));
        let count = sent.clone();
        let mut conn = connect(
            TaskModel::new(move |_, commands, events| {
                let count = count.clone();
                async move {
                    let _unread = commands;
                    for i in 0..10 {
                        events
                            .send(ModelEvent::response_started(format!("r{i}")))
                            .await?;
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    events.closed().await;
                    Ok(())
                }
            })
            .capacity(2),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Two in the channel, the third waits in `send`.
        assert_eq!(sent.load(Ordering::SeqCst), 2);
        for i in 0..10 {
            assert!(matches!(
                next(&mut conn).await,
                Some(ModelEvent::ResponseStarted { response_id }) if response_id == format!("r{i}")
            ));
        }
        // The task never reads commands: two fit in the channel, two more wait, then no more.
        for _ in 0..4 {
            conn.send(ModelCommand::CreateResponse).expect("room");
        }
        assert!(matches!(
            conn.send(ModelCommand::CreateResponse),
            Err(Error::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn a_response_writer_follows_the_contract_order() {
        let mut conn = connect(TaskModel::new(|_, _, events| async move {
            let mut response = events.start_response().await?;
            response.speech("Hi.", vec![0u8; 6_000]).await?;
            response.function_call("f", "{}").await?;
            response.complete().await?;
            let unfinished = events.start_response().await?;
            drop(unfinished);
            events.closed().await;
            Ok(())
        }))
        .await;
        let mut kinds = Vec::new();
        let mut response = String::new();
        for _ in 0..12 {
            let event = next(&mut conn).await.expect("event");
            kinds.push(match &event {
                ModelEvent::ResponseStarted { response_id } => {
                    response.clone_from(response_id);
                    "started"
                }
                ModelEvent::Item(RealtimeItem::Message(m))
                    if m.status == ItemStatus::InProgress =>
                {
                    "message"
                }
                ModelEvent::Item(RealtimeItem::Message(m)) => {
                    assert_eq!(m.text(), "Hi.");
                    "message done"
                }
                ModelEvent::Item(RealtimeItem::ToolCall(_)) => "call item",
                ModelEvent::TranscriptDelta { response_id, .. } => {
                    assert_eq!(*response_id, response);
                    "delta"
                }
                ModelEvent::Audio { data, .. } => {
                    assert!(data.len() <= SPEECH_CHUNK_BYTES);
                    "audio"
                }
                ModelEvent::AudioDone { .. } => "audio done",
                ModelEvent::FunctionCall { response_id, .. } => {
                    assert_eq!(*response_id, response);
                    "call"
                }
                ModelEvent::ResponseDone { status, .. } => match status {
                    ResponseStatus::Completed => "done",
                    ResponseStatus::Failed => "failed",
                    _ => "other",
                },
                _ => "unexpected",
            });
        }
        assert_eq!(
            kinds,
            [
                "started",
                "message",
                "delta",
                "audio",
                "audio",
                "audio done",
                "message done",
                "call item",
                "call",
                "done",
                "started",
                "failed"
            ]
        );
    }
}
