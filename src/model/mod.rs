//! The model layer: how a session talks to a speech-to-speech backend.
//!
//! A [`RealtimeModel`] opens [`RealtimeConnection`]s, one per session. A connection accepts
//! provider-neutral [`ModelCommand`]s and yields provider-neutral [`ModelEvent`]s; it owns the
//! socket and its wire protocol, and nothing else. History, tools, guardrails and handoffs live
//! in the session, so a new backend only has to translate.
//!
//! [`OpenAIRealtimeWebSocketModel`] is the OpenAI Realtime API (GA) over WebSocket.

pub mod live;
mod openai;
mod settings;

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::audio::AudioFormat;
use crate::items::RealtimeItem;
use crate::{Error, Result};

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
}

/// One live connection to a backend, owned by a single session task.
///
/// Commands are queued by [`send`](Self::send) and written while the owner polls
/// [`poll_event`](Self::poll_event), so one task drives both directions without locks.
pub trait RealtimeConnection: Send + 'static {
    /// Queues a command. Fails only when the connection is closed or its send queue is full.
    fn send(&mut self, command: ModelCommand) -> Result<()>;

    /// Writes queued commands and returns the next event. `Ready(None)` after
    /// [`ModelEvent::Closed`] was returned.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ModelEvent>>;

    /// Flushes what is queued and closes the connection.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()>;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
