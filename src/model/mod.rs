//! The model layer: how a session talks to a speech-to-speech backend.
//!
//! A [`RealtimeModel`] opens [`RealtimeConnection`]s, one per session. A connection accepts
//! provider-neutral [`ModelCommand`]s and yields provider-neutral [`ModelEvent`]s; it owns the
//! socket and its wire protocol, and nothing else. History, tools, guardrails and handoffs live
//! in the session, so a new backend only has to translate.
//!
//! [`OpenAIRealtimeWebSocketModel`] is the OpenAI Realtime API (GA) over WebSocket. Another
//! backend implements the two traits by hand, or is an async task through
//! [`task::TaskModel`]; either way it follows the contract below, which
//! [`conformance::run`] checks.
#![doc = include_str!("contract.md")]

mod capabilities;
pub mod conformance;
pub mod live;
mod openai;
mod settings;
pub mod task;

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::audio::AudioFormat;
use crate::items::{ItemStatus, MessageContent, MessageItem, RealtimeItem, Role};
use crate::{Error, Result};

pub use capabilities::Capabilities;
pub use live::{LiveDelegation, LiveModel, LiveModelBuilder};
#[doc(hidden)]
pub use openai::bench;
pub use openai::{OpenAIRealtimeWebSocketModel, OpenAIRealtimeWebSocketModelBuilder};
pub use settings::{SessionSettings, ToolSpec};

/// A speech-to-speech backend that can open connections, one per session.
///
/// Object safe: the runner holds an `Arc<dyn RealtimeModel>`. One model value opens any number
/// of connections.
///
/// ```no_run
/// use realtime_agents::model::{OpenAIRealtimeWebSocketModel, RealtimeModel, SessionSettings};
/// # async fn demo() -> realtime_agents::Result<()> {
/// let model = OpenAIRealtimeWebSocketModel::builder().url("ws://127.0.0.1:8765/v1/realtime").build();
/// let connection = model.connect(SessionSettings::default()).await?;
/// # drop(connection); Ok(()) }
/// ```
pub trait RealtimeModel: Send + Sync + fmt::Debug + 'static {
    /// Opens a connection and applies `settings` as the initial session configuration.
    fn connect(
        &self,
        settings: SessionSettings,
    ) -> BoxFuture<'static, Result<Box<dyn RealtimeConnection>>>;

    /// The name of the model the connections talk to (e.g. `gpt-realtime`), used to price a
    /// session's usage ([`crate::cost`]) when its settings name no model. Default: `None`.
    ///
    /// ```
    /// use realtime_agents::model::{OpenAIRealtimeWebSocketModel, RealtimeModel};
    /// let model = OpenAIRealtimeWebSocketModel::builder().model("gpt-realtime-mini").build();
    /// assert_eq!(model.model_name().as_deref(), Some("gpt-realtime-mini"));
    /// ```
    fn model_name(&self) -> Option<String> {
        None
    }
}

/// One live connection to a backend, owned by a single session task.
///
/// Commands are queued by [`send`](Self::send) and written while the owner polls
/// [`poll_event`](Self::poll_event), so one task drives both directions without locks. The
/// [module docs](self) say what each method must do; [`task::TaskModel`] implements this
/// trait for backends written as async tasks.
///
/// A connection by hand: a backend that answers nothing but still keeps the contract (it
/// reports its configuration, echoes user messages and closes properly).
///
/// ```
/// use std::collections::VecDeque;
/// use std::task::{Context, Poll};
/// use realtime_agents::model::{Capabilities, ModelCommand, ModelEvent, RealtimeConnection};
/// use realtime_agents::{Error, Result};
///
/// struct Listener {
///     events: VecDeque<ModelEvent>,
///     next_id: u64,
///     closed: bool,
/// }
///
/// impl RealtimeConnection for Listener {
///     fn send(&mut self, command: ModelCommand) -> Result<()> {
///         if self.closed {
///             return Err(Error::SessionClosed);
///         }
///         if let ModelCommand::UserMessage { message, .. } = command {
///             self.next_id += 1;
///             self.events.push_back(ModelEvent::Item(message.into_item(format!("item_{}", self.next_id))));
///         }
///         Ok(())
///     }
///
///     fn poll_event(&mut self, _cx: &mut Context<'_>) -> Poll<Option<ModelEvent>> {
///         match self.events.pop_front() {
///             Some(event) => Poll::Ready(Some(event)),
///             None if self.closed => Poll::Ready(None),
///             // A real backend registers `cx.waker()` with its socket here.
///             None => Poll::Pending,
///         }
///     }
///
///     fn poll_close(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
///         if !self.closed {
///             self.closed = true;
///             self.events.clear();
///             self.events.push_back(ModelEvent::closed(None));
///         }
///         Poll::Ready(())
///     }
///
///     fn capabilities(&self) -> Capabilities {
///         Capabilities::minimal()
///     }
/// }
///
/// let mut listener = Listener { events: VecDeque::new(), next_id: 0, closed: false };
/// listener.events.push_back(ModelEvent::session_updated(Default::default(), false));
/// listener.send(ModelCommand::UserMessage { message: "Hi".into(), respond: false }).unwrap();
/// let mut cx = Context::from_waker(std::task::Waker::noop());
/// assert!(matches!(listener.poll_event(&mut cx), Poll::Ready(Some(ModelEvent::SessionUpdated { .. }))));
/// assert!(matches!(listener.poll_event(&mut cx), Poll::Ready(Some(ModelEvent::Item(_)))));
/// assert!(listener.poll_close(&mut cx).is_ready());
/// assert!(matches!(listener.poll_event(&mut cx), Poll::Ready(Some(ModelEvent::Closed { error: None }))));
/// assert!(matches!(listener.poll_event(&mut cx), Poll::Ready(None)));
/// ```
pub trait RealtimeConnection: Send + 'static {
    /// Queues a command. Fails only when the connection is closed or its send queue is full.
    fn send(&mut self, command: ModelCommand) -> Result<()>;

    /// Whether the send queue has room for another command.
    ///
    /// While it is `false`, the session takes no more of the application's commands: they
    /// wait in the session's command queue, and once that is full the application's sends
    /// wait too (back-pressure), instead of failing and losing audio. The session asks again
    /// after each [`poll_event`](Self::poll_event), which must register `cx` to be woken when
    /// the queue drains (a socket's write readiness). The default, always `true`, suits a
    /// connection whose queue is never full.
    ///
    /// ```
    /// use realtime_agents::model::{RealtimeConnection, RealtimeModel, SessionSettings, task::TaskModel};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> realtime_agents::Result<()> {
    /// // A backend task with room for one command, which it never reads.
    /// let model = TaskModel::new(|_settings, commands, _events| async move {
    ///     let _unread = commands;
    ///     std::future::pending::<realtime_agents::Result<()>>().await
    /// })
    /// .capacity(1);
    /// let mut connection = model.connect(SessionSettings::new()).await?;
    /// assert!(connection.has_room());
    /// connection.send(realtime_agents::model::ModelCommand::CreateResponse)?;
    /// connection.send(realtime_agents::model::ModelCommand::CreateResponse)?;
    /// assert!(!connection.has_room(), "one in the task's channel, one waiting");
    /// # Ok(()) }
    /// ```
    fn has_room(&self) -> bool {
        true
    }

    /// Writes queued commands and returns the next event. `Ready(None)` after
    /// [`ModelEvent::Closed`] was returned.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ModelEvent>>;

    /// Flushes what is queued and closes the connection.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()>;

    /// What this connection's backend supports (see [`Capabilities`]). The default is
    /// everything the OpenAI Realtime API does.
    ///
    /// Read after connecting and again after each
    /// [`SessionUpdated`](ModelEvent::SessionUpdated), the only point at which it may change.
    ///
    /// ```
    /// use realtime_agents::model::{Capabilities, ModelEvent, RealtimeConnection, task::TaskModel, RealtimeModel, SessionSettings};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> realtime_agents::Result<()> {
    /// let model = TaskModel::new(|_settings, mut commands, _events| async move {
    ///     while commands.recv().await.is_some() {}
    ///     Ok(())
    /// })
    /// .capabilities(Capabilities::minimal().response_create(true));
    /// let connection = model.connect(SessionSettings::new()).await?;
    /// assert!(!connection.capabilities().truncation);
    /// # Ok(()) }
    /// ```
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

impl fmt::Debug for dyn RealtimeConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RealtimeConnection")
    }
}

/// What a user sends as a message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum UserContent {
    /// Text.
    Text(String),
    /// An image as a `data:` or `https:` URL, with an optional detail level (`auto`, `low`, `high`).
    Image {
        /// The image URL.
        url: String,
        /// Detail level.
        detail: Option<String>,
    },
}

/// A message from the user: text and images.
///
/// ```
/// use realtime_agents::model::UserMessage;
/// let m: UserMessage = "Hello!".into();
/// let m = UserMessage::text("What is in this picture?").with_image("data:image/png;base64,iVBORw0KGgo=");
/// assert_eq!(m.content.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UserMessage {
    /// The parts, in order.
    pub content: Vec<UserContent>,
}

impl UserMessage {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: vec![UserContent::Text(text.into())],
        }
    }

    /// Adds an image part.
    #[must_use]
    pub fn with_image(mut self, url: impl Into<String>) -> Self {
        self.content.push(UserContent::Image {
            url: url.into(),
            detail: None,
        });
        self
    }
}

impl UserMessage {
    /// The conversation item a backend reports for this message
    /// ([`ModelEvent::Item`]): a completed user message with id `item_id`, its text parts as
    /// [`InputText`](MessageContent::InputText) and its images as
    /// [`InputImage`](MessageContent::InputImage).
    ///
    /// ```
    /// use realtime_agents::items::{ItemStatus, Role};
    /// use realtime_agents::model::UserMessage;
    /// let item = UserMessage::text("Hi").into_item("item_7");
    /// let message = item.as_message().unwrap();
    /// assert_eq!((item.item_id(), message.role, message.status), ("item_7", Role::User, ItemStatus::Completed));
    /// assert_eq!(message.text(), "Hi");
    /// ```
    pub fn into_item(self, item_id: impl Into<String>) -> RealtimeItem {
        let content = self
            .content
            .into_iter()
            .map(|part| match part {
                UserContent::Text(text) => MessageContent::InputText { text },
                UserContent::Image { url, detail } => MessageContent::InputImage {
                    image_url: url,
                    detail,
                },
            })
            .collect();
        RealtimeItem::Message(MessageItem {
            item_id: item_id.into(),
            previous_item_id: None,
            role: Role::User,
            content,
            status: ItemStatus::Completed,
        })
    }

    /// The message's text parts, joined with spaces.
    ///
    /// ```
    /// use realtime_agents::model::UserMessage;
    /// let m = UserMessage::text("Look").with_image("https://example.com/a.png");
    /// assert_eq!(m.plain_text(), "Look");
    /// ```
    pub fn plain_text(&self) -> String {
        self.content
            .iter()
            .filter_map(|part| match part {
                UserContent::Text(text) => Some(text.as_str()),
                UserContent::Image { .. } => None,
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl From<&str> for UserMessage {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}

impl From<String> for UserMessage {
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

/// Where the user cut the assistant's audio off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioCut {
    /// The assistant item that was playing.
    pub item_id: String,
    /// Its audio content part.
    pub content_index: u32,
    /// Milliseconds the user heard.
    pub audio_end_ms: u64,
}

/// A provider-neutral command from the session to the backend.
///
/// The [module docs](self) say what each command means and which events answer it.
///
/// ```
/// use realtime_agents::model::{AudioCut, ModelCommand};
/// let ask = ModelCommand::UserMessage { message: "Hello!".into(), respond: true };
/// let stop = ModelCommand::Interrupt {
///     cancel_response: true,
///     cut: Some(AudioCut { item_id: "item_2".into(), content_index: 0, audio_end_ms: 1_200 }),
/// };
/// # let _ = (ask, stop);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ModelCommand {
    /// Add a user message to the conversation and, if `respond`, ask for a response.
    UserMessage {
        /// The message.
        message: UserMessage,
        /// Whether to request a response afterwards.
        respond: bool,
    },
    /// Append input audio (in the session's input format); `commit` ends the user turn.
    Audio {
        /// Raw audio bytes.
        audio: Bytes,
        /// Commit the input buffer after appending.
        commit: bool,
    },
    /// Return a tool's output; `respond` asks for a response (coalesced with other requests).
    ToolOutput {
        /// The call being answered.
        call_id: String,
        /// The output text given to the model.
        output: String,
        /// Whether to request a response.
        respond: bool,
    },
    /// Ask for a response now (or as soon as the current one ends).
    CreateResponse,
    /// Stop the assistant: cancel the active response if `cancel_response`, and tell the server
    /// what was heard if `cut` is set.
    Interrupt {
        /// Cancel the response being generated, if any.
        cancel_response: bool,
        /// The playback position to truncate at.
        cut: Option<AudioCut>,
    },
    /// Apply new session settings (agent switch, handoff).
    UpdateSession(Box<SessionSettings>),
    /// Add an item to the server-side conversation, keeping its id (seeding a session, replaying
    /// history after a reconnect, editing history). A tool call with an output is created as
    /// the call followed by its output. Never asks for a response.
    CreateItem {
        /// The item to create.
        item: Box<RealtimeItem>,
        /// The item it follows (`None`: at the end of the conversation).
        previous_item_id: Option<String>,
    },
    /// Remove an item from the server-side conversation.
    DeleteItem {
        /// The item to remove.
        item_id: String,
    },
    /// Send a provider-specific event as is (a JSON object for OpenAI).
    Raw(serde_json::Value),
}

/// Why a response ended.
///
/// Every [`ResponseStarted`](ModelEvent::ResponseStarted) ends with exactly one
/// [`ResponseDone`](ModelEvent::ResponseDone) carrying one of these.
///
/// ```
/// use realtime_agents::model::{ModelEvent, ResponseStatus};
/// let done = ModelEvent::response_done("resp_1", ResponseStatus::Cancelled, None);
/// assert!(matches!(done, ModelEvent::ResponseDone { status: ResponseStatus::Cancelled, .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseStatus {
    /// Finished normally.
    Completed,
    /// Cancelled (by the client or by the user speaking).
    Cancelled,
    /// Stopped early (token limit, content filter).
    Incomplete,
    /// Failed on the server.
    Failed,
}

/// Token usage, summed over responses.
///
/// ```
/// use realtime_agents::model::Usage;
/// let mut total = Usage::default();
/// total += Usage::new(100, 20);
/// total += Usage::new(150, 30).cached_tokens(100);
/// assert_eq!((total.requests, total.total_tokens, total.cached_tokens), (2, 300, 100));
/// assert_eq!(serde_json::to_value(total).unwrap()["total_tokens"], 300);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Usage {
    /// Responses counted.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input plus output tokens.
    pub total_tokens: u64,
    /// Input tokens that were audio.
    pub input_audio_tokens: u64,
    /// Input tokens served from cache.
    pub cached_tokens: u64,
    /// Output tokens that were audio.
    pub output_audio_tokens: u64,
}

impl Usage {
    /// The usage of one response: `requests` is 1 and `total_tokens` is `input_tokens +
    /// output_tokens`. The audio and cache details start at zero; set them with the builder
    /// methods.
    ///
    /// ```
    /// use realtime_agents::model::Usage;
    /// let usage = Usage::new(120, 80).input_audio_tokens(100).cached_tokens(64).output_audio_tokens(70);
    /// assert_eq!((usage.requests, usage.total_tokens), (1, 200));
    /// assert_eq!((usage.input_audio_tokens, usage.cached_tokens, usage.output_audio_tokens), (100, 64, 70));
    /// ```
    #[must_use]
    pub const fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            requests: 1,
            input_tokens,
            output_tokens,
            total_tokens: input_tokens.saturating_add(output_tokens),
            input_audio_tokens: 0,
            cached_tokens: 0,
            output_audio_tokens: 0,
        }
    }

    /// Sets how many of the input tokens were audio.
    ///
    /// ```
    /// # use realtime_agents::model::Usage;
    /// assert_eq!(Usage::new(10, 5).input_audio_tokens(8).input_audio_tokens, 8);
    /// ```
    #[must_use]
    pub const fn input_audio_tokens(mut self, tokens: u64) -> Self {
        self.input_audio_tokens = tokens;
        self
    }

    /// Sets how many of the input tokens were served from cache.
    ///
    /// ```
    /// # use realtime_agents::model::Usage;
    /// assert_eq!(Usage::new(10, 5).cached_tokens(4).cached_tokens, 4);
    /// ```
    #[must_use]
    pub const fn cached_tokens(mut self, tokens: u64) -> Self {
        self.cached_tokens = tokens;
        self
    }

    /// Sets how many of the output tokens were audio.
    ///
    /// ```
    /// # use realtime_agents::model::Usage;
    /// assert_eq!(Usage::new(10, 5).output_audio_tokens(3).output_audio_tokens, 3);
    /// ```
    #[must_use]
    pub const fn output_audio_tokens(mut self, tokens: u64) -> Self {
        self.output_audio_tokens = tokens;
        self
    }

    /// Sets how many responses this usage covers (a backend that reports usage for several
    /// responses at once).
    ///
    /// ```
    /// # use realtime_agents::model::Usage;
    /// assert_eq!(Usage::new(10, 5).requests(2).requests, 2);
    /// ```
    #[must_use]
    pub const fn requests(mut self, requests: u64) -> Self {
        self.requests = requests;
        self
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Self) {
        self.requests += o.requests;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.total_tokens += o.total_tokens;
        self.input_audio_tokens += o.input_audio_tokens;
        self.cached_tokens += o.cached_tokens;
        self.output_audio_tokens += o.output_audio_tokens;
    }
}

/// A server event exactly as received (one JSON text frame).
#[derive(Clone, PartialEq, Eq)]
pub struct RawServerEvent(Bytes);

impl RawServerEvent {
    /// Wraps a frame's text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(Bytes::from(text.into()))
    }

    /// The frame as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from `String`s or validated UTF-8 frames.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The frame parsed as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.0).ok()
    }
}

impl From<tokio_tungstenite::tungstenite::Utf8Bytes> for RawServerEvent {
    fn from(text: tokio_tungstenite::tungstenite::Utf8Bytes) -> Self {
        Self(Bytes::from(text))
    }
}

impl fmt::Debug for RawServerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.as_str();
        match s.char_indices().nth(200) {
            Some((cut, _)) => write!(f, "RawServerEvent({}…)", &s[..cut]),
            None => write!(f, "RawServerEvent({s})"),
        }
    }
}

/// A provider-neutral event from the backend.
///
/// The [module docs](self) say which events answer which command, and in what order. The
/// constructors below fill the fields a backend rarely cares about (content index 0, no
/// usage); the variants can also be built directly.
///
/// ```
/// use realtime_agents::model::{ModelEvent, ResponseStatus, Usage};
/// let events = [
///     ModelEvent::response_started("resp_1"),
///     ModelEvent::transcript_delta("resp_1", "item_2", "Hi!"),
///     ModelEvent::response_done("resp_1", ResponseStatus::Completed, Some(Usage::new(12, 3))),
///     ModelEvent::closed(None),
/// ];
/// assert!(matches!(&events[1], ModelEvent::TranscriptDelta { content_index: 0, delta, .. } if delta == "Hi!"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ModelEvent {
    /// The server's session configuration changed (or was first reported).
    SessionUpdated {
        /// Format of the audio the model sends.
        output_format: AudioFormat,
        /// Whether the server cancels a response by itself when the user starts speaking.
        server_interrupts: bool,
    },
    /// A response started.
    ResponseStarted {
        /// Response id.
        response_id: String,
    },
    /// A response ended.
    ResponseDone {
        /// Response id.
        response_id: String,
        /// How it ended.
        status: ResponseStatus,
        /// Tokens it used.
        usage: Option<Usage>,
    },
    /// A chunk of assistant audio in the session's output format.
    Audio {
        /// Response producing it.
        response_id: String,
        /// Assistant item.
        item_id: String,
        /// Content part.
        content_index: u32,
        /// Audio bytes.
        data: Bytes,
    },
    /// The assistant item's audio is complete.
    AudioDone {
        /// Assistant item.
        item_id: String,
        /// Content part.
        content_index: u32,
    },
    /// A piece of the assistant's transcript (or text output).
    TranscriptDelta {
        /// Response producing it.
        response_id: String,
        /// Assistant item.
        item_id: String,
        /// Content part.
        content_index: u32,
        /// New text.
        delta: String,
    },
    /// A piece of the transcript of the user's audio.
    InputTranscriptDelta {
        /// User item.
        item_id: String,
        /// Content part.
        content_index: u32,
        /// New text.
        delta: String,
    },
    /// The transcript of the user's audio is complete.
    InputTranscriptCompleted {
        /// User item.
        item_id: String,
        /// Content part.
        content_index: u32,
        /// Full transcript.
        transcript: String,
    },
    /// An item was added to the conversation (or changed).
    Item(RealtimeItem),
    /// An item was removed from the conversation.
    ItemDeleted {
        /// The removed item.
        item_id: String,
    },
    /// The model called a function.
    FunctionCall {
        /// Call id.
        call_id: String,
        /// Function name.
        name: String,
        /// Arguments as JSON text.
        arguments: String,
        /// Item id of the call.
        item_id: String,
        /// Response that made the call.
        response_id: String,
    },
    /// The user started speaking (server voice activity detection).
    SpeechStarted {
        /// The user item being recorded.
        item_id: String,
        /// Position in the input audio stream.
        audio_start_ms: u64,
    },
    /// The user stopped speaking.
    SpeechStopped {
        /// The user item.
        item_id: String,
        /// Position in the input audio stream.
        audio_end_ms: u64,
    },
    /// No speech arrived within the configured idle timeout.
    InputAudioTimeout {
        /// Item id the server reported.
        item_id: String,
        /// Start of the silent span.
        audio_start_ms: u64,
        /// End of the silent span.
        audio_end_ms: u64,
    },
    /// A server error or an event that could not be decoded; the connection goes on.
    Error(Error),
    /// A server event as received, before decoding.
    Raw(RawServerEvent),
    /// The connection ended. `error` is `None` for a close the client asked for.
    Closed {
        /// Why it ended, if it was not asked for.
        error: Option<Error>,
    },
}

impl ModelEvent {
    /// [`SessionUpdated`](Self::SessionUpdated): the configuration in effect.
    ///
    /// ```
    /// use realtime_agents::{audio::AudioFormat, model::ModelEvent};
    /// let event = ModelEvent::session_updated(AudioFormat::G711_ULAW, true);
    /// assert!(matches!(event, ModelEvent::SessionUpdated { server_interrupts: true, .. }));
    /// ```
    pub fn session_updated(output_format: AudioFormat, server_interrupts: bool) -> Self {
        Self::SessionUpdated {
            output_format,
            server_interrupts,
        }
    }

    /// [`ResponseStarted`](Self::ResponseStarted).
    ///
    /// ```
    /// use realtime_agents::model::ModelEvent;
    /// assert!(matches!(ModelEvent::response_started("r1"), ModelEvent::ResponseStarted { response_id } if response_id == "r1"));
    /// ```
    pub fn response_started(response_id: impl Into<String>) -> Self {
        Self::ResponseStarted {
            response_id: response_id.into(),
        }
    }

    /// [`ResponseDone`](Self::ResponseDone).
    ///
    /// ```
    /// use realtime_agents::model::{ModelEvent, ResponseStatus};
    /// let event = ModelEvent::response_done("r1", ResponseStatus::Completed, None);
    /// assert!(matches!(event, ModelEvent::ResponseDone { usage: None, .. }));
    /// ```
    pub fn response_done(
        response_id: impl Into<String>,
        status: ResponseStatus,
        usage: Option<Usage>,
    ) -> Self {
        Self::ResponseDone {
            response_id: response_id.into(),
            status,
            usage,
        }
    }

    /// [`Audio`](Self::Audio) of content part 0.
    ///
    /// ```
    /// use realtime_agents::model::ModelEvent;
    /// let event = ModelEvent::audio("r1", "item_1", vec![0u8; 960]);
    /// assert!(matches!(event, ModelEvent::Audio { data, .. } if data.len() == 960));
    /// ```
    pub fn audio(
        response_id: impl Into<String>,
        item_id: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Self {
        Self::Audio {
            response_id: response_id.into(),
            item_id: item_id.into(),
            content_index: 0,
            data: data.into(),
        }
    }

    /// [`AudioDone`](Self::AudioDone) of content part 0.
    ///
    /// ```
    /// use realtime_agents::model::ModelEvent;
    /// assert!(matches!(ModelEvent::audio_done("item_1"), ModelEvent::AudioDone { content_index: 0, .. }));
    /// ```
    pub fn audio_done(item_id: impl Into<String>) -> Self {
        Self::AudioDone {
            item_id: item_id.into(),
            content_index: 0,
        }
    }

    /// [`TranscriptDelta`](Self::TranscriptDelta) of content part 0.
    ///
    /// ```
    /// use realtime_agents::model::ModelEvent;
    /// let event = ModelEvent::transcript_delta("r1", "item_1", "Hello");
    /// assert!(matches!(event, ModelEvent::TranscriptDelta { delta, .. } if delta == "Hello"));
    /// ```
    pub fn transcript_delta(
        response_id: impl Into<String>,
        item_id: impl Into<String>,
        delta: impl Into<String>,
    ) -> Self {
        Self::TranscriptDelta {
            response_id: response_id.into(),
            item_id: item_id.into(),
            content_index: 0,
            delta: delta.into(),
        }
    }

    /// [`FunctionCall`](Self::FunctionCall) with complete JSON `arguments`.
    ///
    /// ```
    /// use realtime_agents::model::ModelEvent;
    /// let call = ModelEvent::function_call("r1", "item_2", "call_1", "get_weather", r#"{"city":"Paris"}"#);
    /// assert!(matches!(call, ModelEvent::FunctionCall { name, .. } if name == "get_weather"));
    /// ```
    pub fn function_call(
        response_id: impl Into<String>,
        item_id: impl Into<String>,
        call_id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self::FunctionCall {
            call_id: call_id.into(),
            name: name.into(),
            arguments: arguments.into(),
            item_id: item_id.into(),
            response_id: response_id.into(),
        }
    }

    /// [`Closed`](Self::Closed): `None` for a close the client asked for, else why it ended.
    ///
    /// ```
    /// use realtime_agents::{Error, model::ModelEvent};
    /// let lost = ModelEvent::closed(Some(Error::Closed { code: Some(1011), reason: "overloaded".into() }));
    /// assert!(matches!(lost, ModelEvent::Closed { error: Some(_) }));
    /// ```
    pub fn closed(error: Option<Error>) -> Self {
        Self::Closed { error }
    }
}
