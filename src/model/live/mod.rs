//! OpenAI's Live API (GPT-Live: `gpt-live-1`, `gpt-live-1.1`) over WebSocket, behind the same
//! [`RealtimeModel`] trait as the Realtime backend.
//!
//! Live is a different protocol, not a Realtime variant: the client speaks first
//! (`session.start`, then `session.started`), **the model owns turn-taking**, the context is
//! **append-only**, and tools run **through delegation**. [`LiveModel`] maps it onto the
//! provider-neutral [`ModelCommand`](crate::model::ModelCommand)s and
//! [`ModelEvent`](crate::model::ModelEvent)s so that a [`RealtimeSession`](crate::RealtimeSession)
//! works unchanged: `AgentStart`/`AgentEnd`, transcripts, tools and history.
//!
//! ```no_run
//! use realtime_agents::model::live::{LiveDelegation, LiveModel};
//! use realtime_agents::{RealtimeAgent, RealtimeRunner};
//! # async fn demo() -> realtime_agents::Result<()> {
//! // The real API (key from OPENAI_API_KEY), tools run by a Responses model:
//! let model = LiveModel::builder()
//!     .model("gpt-live-1.1")
//!     .delegation(LiveDelegation::responses("gpt-5.4-mini"))
//!     .build();
//! let session = RealtimeRunner::new(RealtimeAgent::new("Assistant")).model(model).run(()).await?;
//! # drop(session); Ok(()) }
//! ```
//!
//! # What differs from the Realtime backend
//!
//! | | Realtime ([`OpenAIRealtimeWebSocketModel`](crate::model::OpenAIRealtimeWebSocketModel)) | Live ([`LiveModel`]) |
//! |---|---|---|
//! | start | server-first `session.created`, then `session.update` | `session.start` (written on the first poll, so that the history the session replays goes into its `input`); commands (audio too, up to about 15 s of it) wait for `session.started`; an `error` before it ends the connection |
//! | turns | server VAD, `response.create`, `response.cancel` | the model decides. A `UserMessage` with `respond` (and a `CreateResponse`, which a session does not send to a backend without `response_create`) appends commentary ([`RESPOND_NOW`]) asking it to speak, except right after a tool output, which already asks for speech; `Audio { commit: true }` commits nothing |
//! | responses | `response.created` … `response.done` with ids | none on the wire: each utterance of the continuous output track becomes `ResponseStarted` … `ResponseDone` (ids `resp_live<N>`), starting at its first sound or transcript and ending after 800 ms of output silence; silence between utterances is not delivered |
//! | barge-in | `input_audio_buffer.speech_started`, the server cancels | no event: the first user transcript fragment of a turn is `SpeechStarted`, and the utterance being delivered ends there, `Cancelled` (hence `server_interrupts: true`: the model stops by itself once it hears the user); what it still says until it falls silent for 800 ms is not delivered |
//! | `Interrupt` | `response.cancel` and `conversation.item.truncate` | nothing can be cancelled or truncated on the wire (the session sends neither, as the capabilities say): an `Interrupt` that arrives ends the current utterance `Cancelled` locally, and what the model still says of it is dropped until it falls silent; the model keeps all it said in its context |
//! | user items | the server's items | the client's: a user turn is an item (`item_live_in<N>`) opened at its first transcript fragment and completed (`InputTranscriptCompleted`) when the model answers or delegates, or a new fragment starts 800 ms after the last; typed messages are echoed as items |
//! | typed text | `conversation.item.create` | `session.thinking.append` `"user: <text>"` (silent context; images are refused), then commentary to answer when asked |
//! | settings | `session.update` with every setting | `session.start`: model, instructions, audio format (the input format, else the output one; one format both ways), voice, delegation and the settings' `extra` fields (`store`, `safety_identifier`, `triggers`); turn detection, transcription, noise reduction, modalities, speed, tool choice and token limits do not exist on Live and are ignored |
//! | instructions | `session.update`, any time | fixed at start; a change is appended (`session.instructions.append`, ≤ 500 tokens a piece) as a standing rule; voice and audio formats never change |
//! | tools | `session.tools`, function calls in responses | delegation, chosen once per session ([`LiveDelegation`]). `Responses` declares the tools to a Responses model; its calls arrive in `response.event`s and become `FunctionCall`s inside the utterance being delivered, or inside a response of their own (`ResponseStarted`, the call, `ResponseDone`); outputs go back as `response.item.create`, then one `response.create` once every open call is answered (the service refuses a partial batch), and the model speaks the result itself. `Client` delegates to the application: each `session.delegation.created` is a `FunctionCall` of one tool, outside any response (`response_id` empty), with `{"task": <what the user said>}` since the event carries no task text; its output is spoken through `session.commentary.append` with the delegation's id. The agent's tools are named in the instructions (`Delegate to the application, as one task, requests for: …`) so that the model knows what to delegate |
//! | history | `conversation.item.create`/`delete` | append-only: `CreateItem` before the start frame is written (seeding, the replay after a reconnect) goes into `session.start.input` (text messages; system as developer; tool calls as developer notes; the newest 128), later into `thinking`; either way it is echoed as its `Item` with the same id. `DeleteItem` and positioned items are refused (an `Error` event) |
//! | reconnect | a new session, history replayed as items | the same: a new Live session seeded through `session.start.input` (the API restores nothing itself) |
//! | usage | tokens per response | seconds in `session.usage.updated` (raw events only); backend tokens from `response.event` are added to the next `ResponseDone` |
//! | close | close frame | `session.close`, then `session.closed` (bounded by the session's close grace), then the close frame; a `session.closed` the client did not ask for ends the connection with [`Error::Closed`](crate::Error::Closed) |
//!
//! The connection's [`capabilities`](crate::model::RealtimeConnection::capabilities) say so:
//! `model_turn_taking`, `input_transcription`, `audio_output`, `auto_tool_reply`,
//! `create_items` (the start-up input), `mutable_instructions` (appended, see above);
//! `function_calls` and `mutable_tools` with Responses delegation, `delegated_tools` with
//! client delegation; no truncation, response create or cancel (the session drops the rest
//! of an interrupted utterance itself), server turn detection, manual turns, mutable voice,
//! item edits, text output or images. A message sent with `respond` still asks the model to
//! speak (commentary), which it usually does. Formats: PCM16 at 16 or 24 kHz, G.711 μ-law and A-law, the same
//! both ways.
//!
//! Mute, unmute and the three appends are raw events; [`mute`], [`unmute`], [`commentary`],
//! [`thinking`] and [`instructions`] build them for
//! [`RealtimeSessionHandle::send_raw`](crate::RealtimeSessionHandle::send_raw). Keep the
//! microphone streaming (silence included) for the whole session: the Live timeline advances
//! with its input audio, and appends sent while nothing streams wait. A muted
//! [`RealtimeSessionHandle::mute`](crate::RealtimeSessionHandle::mute) drops the audio instead;
//! prefer [`mute`] on Live.
//!
//! Decoding is tolerant: every frame is first a [`ModelEvent::Raw`](crate::model::ModelEvent::Raw);
//! unknown events stay raw only, and frames that do not decode add a
//! [`ModelEvent::Error`](crate::model::ModelEvent::Error), never ending the connection.

mod protocol;
mod turns;

use std::fmt;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use self::protocol::Protocol;
use super::{RealtimeConnection, RealtimeModel, SessionSettings};
use crate::Result;
use crate::protocol::Voice;
use crate::transport::{Connection, Options, strip_query};

pub use self::protocol::RESPOND_NOW;
pub(crate) use self::protocol::format_json;

const DEFAULT_MODEL: &str = "gpt-live-1";
const DEFAULT_URL: &str = "wss://api.openai.com/v1/live/sessions";
/// Under client delegation, the start of the instructions line that names the application's
/// tools, so that the model knows what to delegate.
pub(crate) const DELEGATE_LINE: &str = "Delegate to the application, as one task, requests for:";

/// Who handles the work the Live model delegates (chosen once per session).
///
/// ```
/// use realtime_agents::model::live::LiveDelegation;
/// let client = LiveDelegation::client("handle_task");
/// let backend = LiveDelegation::responses("gpt-5.4-mini").with_instructions("Be brief.");
/// assert!(matches!(client, LiveDelegation::Client { .. }));
/// assert!(matches!(backend, LiveDelegation::Responses { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveDelegation {
    /// The application (Live's default). A delegation carries no task text, so each one
    /// becomes a call of `tool` with `{"task": "<what the user said>"}`; its output is given
    /// to the model as commentary, which it says in its own words. The agent's tools are named
    /// in the instructions so that the model knows what to delegate.
    Client {
        /// The tool each delegation calls (default `delegate`).
        tool: String,
    },
    /// A Responses model run by the Live session, with the agent's function tools: their
    /// calls come back as function calls and their outputs are returned to the backend.
    Responses {
        /// The backend model.
        model: String,
        /// Its instructions (separate from the Live model's).
        instructions: Option<String>,
    },
}

impl LiveDelegation {
    /// Client delegation: each delegation calls `tool`.
    ///
    /// ```
    /// use realtime_agents::model::live::LiveDelegation;
    /// assert_eq!(LiveDelegation::default(), LiveDelegation::client("delegate"));
    /// ```
    pub fn client(tool: impl Into<String>) -> Self {
        Self::Client { tool: tool.into() }
    }

    /// Responses delegation to `model`.
    ///
    /// ```
    /// use realtime_agents::model::live::LiveDelegation;
    /// let delegation = LiveDelegation::responses("gpt-5.4-mini");
    /// assert!(matches!(delegation, LiveDelegation::Responses { instructions: None, .. }));
    /// ```
    pub fn responses(model: impl Into<String>) -> Self {
        Self::Responses {
            model: model.into(),
            instructions: None,
        }
    }

    /// Sets the Responses backend's instructions (no effect on client delegation).
    ///
    /// ```
    /// use realtime_agents::model::live::LiveDelegation;
    /// let delegation = LiveDelegation::responses("gpt-5.4-mini").with_instructions("Be exact.");
    /// assert!(matches!(delegation, LiveDelegation::Responses { instructions: Some(_), .. }));
    /// ```
    #[must_use]
    pub fn with_instructions(mut self, text: impl Into<String>) -> Self {
        if let Self::Responses { instructions, .. } = &mut self {
            *instructions = Some(text.into());
        }
        self
    }
}

impl Default for LiveDelegation {
    fn default() -> Self {
        Self::client("delegate")
    }
}

#[derive(Clone)]
struct Config {
    url: Option<String>,
    model: String,
    voice: Option<Voice>,
    delegation: LiveDelegation,
    transport: Options,
}

/// The URL is shown without its query; keys and header values are redacted.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url.as_deref().map(strip_query))
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("delegation", &self.delegation)
            .field("transport", &self.transport)
            .finish()
    }
}

/// OpenAI's Live API over WebSocket. See the [module docs](self) for how it maps onto
/// sessions.
///
/// Defaults: `wss://api.openai.com/v1/live/sessions`, model `gpt-live-1`, client delegation
/// to a tool named `delegate`, the key from the builder or `OPENAI_API_KEY`, a 10 s handshake
/// timeout and a ping every 20 s. The key never appears in `Debug` output, logs or errors.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> realtime_agents::Result<()> {
/// use realtime_agents::model::live::LiveModel;
/// use realtime_agents::simulator::Simulator;
/// use realtime_agents::{RealtimeAgent, RealtimeRunner};
///
/// let sim = Simulator::builder().speed(0.0).start().await?;
/// let model = LiveModel::builder().url(sim.live_url()).build();
/// let mut session = RealtimeRunner::new(RealtimeAgent::new("Assistant")).model(model).run(()).await?;
/// let turn = session.run_turn("Hello!").await?;
/// assert_eq!(turn.text, "Hello! I'm a simulated assistant. How can I help you today?");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LiveModel {
    config: Arc<Config>,
}

impl Default for LiveModel {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveModel {
    /// The real API with default settings.
    ///
    /// ```
    /// let model = realtime_agents::model::live::LiveModel::new();
    /// # let _ = model;
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for URLs, keys, the model, delegation and timeouts.
    ///
    /// ```
    /// use realtime_agents::model::live::LiveModel;
    /// let model = LiveModel::builder().model("gpt-live-1.1").voice("cedar").build();
    /// # let _ = model;
    /// ```
    pub fn builder() -> LiveModelBuilder {
        LiveModelBuilder {
            config: Config {
                url: None,
                model: DEFAULT_MODEL.to_owned(),
                voice: None,
                delegation: LiveDelegation::default(),
                transport: Options::default(),
            },
        }
    }
}

/// Builder for [`LiveModel`].
///
/// ```
/// use std::time::Duration;
/// use realtime_agents::model::live::{LiveDelegation, LiveModel};
/// let model = LiveModel::builder()
///     .url("ws://127.0.0.1:8765/v1/live/sessions")
///     .api_key("sk-test")
///     .delegation(LiveDelegation::client("handle_task"))
///     .handshake_timeout(Duration::from_secs(5))
///     .build();
/// assert!(!format!("{model:?}").contains("sk-test"));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct LiveModelBuilder {
    config: Config,
}

impl LiveModelBuilder {
    /// Connects to this URL instead of the OpenAI endpoint (proxies, simulators). Nothing is
    /// added to it: Live takes the model in `session.start`, not in the URL.
    ///
    /// ```
    /// use realtime_agents::model::live::LiveModel;
    /// let model = LiveModel::builder().url("ws://127.0.0.1:8765/v1/live/sessions").build();
    /// # let _ = model;
    /// ```
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = Some(url.into());
        self
    }

    /// The model (default `gpt-live-1`); a session's `SessionSettings::model` overrides it.
    ///
    /// ```
    /// let model = realtime_agents::model::live::LiveModel::builder().model("gpt-live-1.1").build();
    /// # let _ = model;
    /// ```
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.model = model.into();
        self
    }

    /// The voice, unless the session's settings name one (default: the API's, `marin`). It
    /// cannot change once the session has started.
    ///
    /// ```
    /// let model = realtime_agents::model::live::LiveModel::builder().voice("cedar").build();
    /// # let _ = model;
    /// ```
    pub fn voice(mut self, voice: impl Into<Voice>) -> Self {
        self.config.voice = Some(voice.into());
        self
    }

    /// Who handles delegated work (default: client delegation to a tool named `delegate`).
    ///
    /// ```
    /// use realtime_agents::model::live::{LiveDelegation, LiveModel};
    /// let model = LiveModel::builder()
    ///     .delegation(LiveDelegation::responses("gpt-5.4-mini").with_instructions("Be exact."))
    ///     .build();
    /// # let _ = model;
    /// ```
    pub fn delegation(mut self, delegation: LiveDelegation) -> Self {
        self.config.delegation = delegation;
        self
    }

    crate::transport::transport_setters!("live::LiveModel");

    /// The finished model.
    ///
    /// ```
    /// let model = realtime_agents::model::live::LiveModel::builder().build();
    /// # let _ = model;
    /// ```
    pub fn build(self) -> LiveModel {
        LiveModel {
            config: Arc::new(self.config),
        }
    }
}

impl RealtimeModel for LiveModel {
    fn connect(
        &self,
        settings: SessionSettings,
    ) -> BoxFuture<'static, Result<Box<dyn RealtimeConnection>>> {
        let config = self.config.clone();
        async move {
            let url = config.url.as_deref().unwrap_or(DEFAULT_URL);
            let key_required = config.url.is_none();
            let ws = crate::transport::open(url, &config.transport, key_required, &[]).await?;
            let proto = Protocol::new(config.clone(), &settings);
            let connection: Box<dyn RealtimeConnection> =
                Box::new(Connection::new(ws, proto, &config.transport));
            Ok(connection)
        }
        .boxed()
    }

    /// The builder's model (a session's settings may name another one at connect).
    fn model_name(&self) -> Option<String> {
        Some(self.config.model.clone())
    }
}

/// `session.input_audio.mute`: the model hears silence until [`unmute`] (the session's
/// timeline goes on).
///
/// ```
/// assert_eq!(realtime_agents::model::live::mute()["type"], "session.input_audio.mute");
/// ```
pub fn mute() -> Value {
    json!({"type": "session.input_audio.mute"})
}

/// `session.input_audio.unmute`: the model hears the microphone again.
///
/// ```
/// assert_eq!(realtime_agents::model::live::unmute()["type"], "session.input_audio.unmute");
/// ```
pub fn unmute() -> Value {
    json!({"type": "session.input_audio.unmute"})
}

/// `session.commentary.append` with no delegation: context the model should say, in its own
/// words (at most 500 tokens).
///
/// ```
/// let event = realtime_agents::model::live::commentary("Your table is booked for 8 pm.");
/// assert_eq!(event["delegation_id"], serde_json::Value::Null);
/// ```
pub fn commentary(text: impl Into<String>) -> Value {
    json!({"type": "session.commentary.append", "content": text.into(), "delegation_id": null})
}

/// `session.thinking.append` with no delegation: silent context (at most 500 tokens).
///
/// ```
/// let event = realtime_agents::model::live::thinking("The user is on the premium plan.");
/// assert_eq!(event["type"], "session.thinking.append");
/// ```
pub fn thinking(text: impl Into<String>) -> Value {
    json!({"type": "session.thinking.append", "content": text.into(), "delegation_id": null})
}

/// `session.instructions.append`: a standing developer rule, kept through compaction (at most
/// 500 tokens).
///
/// ```
/// let event = realtime_agents::model::live::instructions("Answer in French from now on.");
/// assert_eq!(event["type"], "session.instructions.append");
/// ```
pub fn instructions(text: impl Into<String>) -> Value {
    json!({"type": "session.instructions.append", "content": text.into(), "delegation_id": null})
}

/// Benchmark hooks: the Live protocol's frame handling without a socket. Not a stable API;
/// `benches/session.rs` uses it (`live_wire/*`).
#[doc(hidden)]
pub mod bench {
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    use super::*;
    use crate::model::{ModelCommand, ModelEvent};
    use crate::transport::{Queues, WireProtocol};

    /// The protocol state of one started connection.
    ///
    /// ```
    /// use realtime_agents::model::{ModelCommand, ModelEvent};
    /// use realtime_agents::model::live::bench::Wire;
    /// let mut wire = Wire::new();
    /// let mut events = Vec::new();
    /// wire.decode(r#"{"type":"session.output_audio.delta","delta":"AQEB"}"#.into(), &mut events);
    /// assert!(events.iter().any(|e| matches!(e, ModelEvent::Audio { data, .. } if data.len() == 3)));
    /// let bytes = wire.encode(ModelCommand::Audio { audio: vec![0u8; 960].into(), commit: false });
    /// assert_eq!(bytes, 1280 + 48);
    /// ```
    #[derive(Debug)]
    pub struct Wire(Protocol, Queues);

    impl Default for Wire {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Wire {
        /// A connection's state right after `session.started`.
        pub fn new() -> Self {
            let model = LiveModel::builder()
                .url("ws://127.0.0.1:1/v1/live/sessions")
                .build();
            let mut proto = Protocol::new(model.config, &SessionSettings::default());
            let mut q = Queues::default();
            proto.before_write(&mut q);
            proto.on_text(
                Utf8Bytes::from_static(
                    r#"{"type":"session.started","event_id":"e0","session":{"id":"s","expires_at":0,"model":"gpt-live-1","status":"active"}}"#,
                ),
                &mut q,
            );
            q.clear_frames();
            q.events.clear();
            Self(proto, q)
        }

        /// Handles one server text frame as a connection does; its events go to `out`.
        pub fn decode(&mut self, frame: Utf8Bytes, out: &mut Vec<ModelEvent>) {
            self.0.on_text(frame, &mut self.1);
            out.extend(self.1.events.drain(..));
        }

        /// Handles one command as a connection does and drops the frames it queued; returns
        /// their total size.
        pub fn encode(&mut self, command: ModelCommand) -> usize {
            self.0.command(command, &mut self.1);
            let bytes = self.1.frame_bytes();
            self.1.clear_frames();
            bytes
        }
    }
}
