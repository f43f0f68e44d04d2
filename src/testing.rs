//! Testing agents without a network: a model whose replies the test scripts.
//!
//! [`ScriptedModel`] is an in-process backend (built on [`TaskModel`]) for unit tests of
//! agents: their tools, handoffs, guardrails and what each turn says. The test queues
//! [`Reply`]s; each time the session asks for a response, the next one plays: text, speech,
//! function calls with their arguments, errors, a user barging in, the connection closing.
//! A [`responder`](ScriptedModel::responder) can decide replies from the request instead.
//! Afterwards the test inspects what the session sent ([`commands`](ScriptedModel::commands),
//! [`user_messages`](ScriptedModel::user_messages),
//! [`tool_outputs`](ScriptedModel::tool_outputs), [`settings`](ScriptedModel::settings)) and
//! what the session reported ([`Events`]).
//!
//! Everything is deterministic: nothing is paced by a clock unless
//! [`pace`](ScriptedModel::pace) asks for it.
//!
//! ```
//! use realtime_agents::testing::{Reply, ScriptedModel};
//! use realtime_agents::{FunctionTool, RealtimeAgent, RealtimeRunner};
//! use serde_json::json;
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct City { city: String }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> realtime_agents::Result<()> {
//! let weather = FunctionTool::new("get_weather", "Weather in a city.", |a: City| async move {
//!     Ok::<_, String>(format!("Sunny in {}", a.city))
//! });
//! let agent = RealtimeAgent::new("Assistant").tool(weather);
//! let model = ScriptedModel::new()
//!     .reply(Reply::call("get_weather", json!({"city": "Paris"})))
//!     .reply(Reply::text("It is sunny in Paris."));
//! let mut session = RealtimeRunner::new(agent).model(model.clone()).run(()).await?;
//! session.send_message("Weather in Paris?").await?;
//! let events = model.play(&mut session).await?;
//!
//! assert_eq!(events.assistant_text(), "It is sunny in Paris.");
//! assert_eq!(events.tool_runs()[0].output, "Sunny in Paris");
//! assert_eq!(model.tool_outputs()[0].1, "Sunny in Paris");
//! assert_eq!(model.user_messages(), ["Weather in Paris?"]);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::future::BoxFuture;

use crate::audio::AudioFormat;
use crate::items::{ItemStatus, MessageContent, MessageItem, RealtimeItem, Role};
use crate::model::task::{CommandReceiver, EventSender, TaskModel, call_events, message_events};
use crate::model::{
    Capabilities, ModelCommand, ModelEvent, RealtimeConnection, RealtimeModel, ResponseStatus,
    SessionSettings, Usage,
};
use crate::simulator::speech;
use crate::{Error, RealtimeSession, RealtimeSessionEvent, Result};

/// Input audio kept per user turn, at most (about a minute of PCM16 at 24 kHz).
const MAX_TURN_AUDIO: usize = 3 << 20;

/// What the scripted model does when the session asks for a response.
///
/// A reply is a response with outputs in order ([`text`](Self::text), [`speech`](Self::speech),
/// [`call`](Self::call), chained with the `and_` methods), or something instead of a response
/// ([`error`](Self::error), [`close`](Self::close)).
///
/// ```
/// use realtime_agents::model::{ResponseStatus, Usage};
/// use realtime_agents::testing::Reply;
/// use serde_json::json;
///
/// let reply = Reply::speech("Let me check.")
///     .and_call("get_weather", json!({"city": "Paris"}))
///     .usage(Usage::new(120, 40));
/// let cut_off = Reply::speech("Once upon a time there was a very long story").interrupted_by_user();
/// let refusal = Reply::text("I can't.").status(ResponseStatus::Incomplete);
/// # let _ = (reply, cut_off, refusal);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Reply {
    kind: ReplyKind,
}

#[derive(Debug, Clone)]
enum ReplyKind {
    Response {
        parts: Vec<Part>,
        status: ResponseStatus,
        usage: Usage,
        barge_in: bool,
    },
    Error(Error),
    Close(Option<Error>),
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Speech(String),
    Call { name: String, arguments: String },
}

impl Reply {
    fn response(part: Part) -> Self {
        Self {
            kind: ReplyKind::Response {
                parts: vec![part],
                status: ResponseStatus::Completed,
                usage: Usage::new(0, 0),
                barge_in: false,
            },
        }
    }

    /// A response with a text message (one transcript delta per word, no audio).
    ///
    /// ```
    /// let reply = realtime_agents::testing::Reply::text("Hello!");
    /// # let _ = reply;
    /// ```
    pub fn text(text: impl Into<String>) -> Self {
        Self::response(Part::Text(text.into()))
    }

    /// A response with a spoken message: its transcript, then its audio in the session's
    /// output format. In PCM16 at 24 kHz the audio is [`speech::encode_text`] of the text
    /// (so [`speech::decode_text`] reads it back); in other formats it is silence of the same
    /// length.
    ///
    /// ```
    /// let reply = realtime_agents::testing::Reply::speech("Hello!");
    /// # let _ = reply;
    /// ```
    pub fn speech(transcript: impl Into<String>) -> Self {
        Self::response(Part::Speech(transcript.into()))
    }

    /// A response that calls the function `name` with these JSON arguments.
    ///
    /// ```
    /// use serde_json::json;
    /// let reply = realtime_agents::testing::Reply::call("transfer_to_billing", json!({}));
    /// # let _ = reply;
    /// ```
    pub fn call(name: impl Into<String>, arguments: serde_json::Value) -> Self {
        Self::response(Part::Call {
            name: name.into(),
            arguments: arguments.to_string(),
        })
    }

    /// Instead of a response, an error event (the server refusing the request). The session
    /// reports it as [`RealtimeSessionEvent::Error`] and goes on.
    ///
    /// ```
    /// use realtime_agents::{Error, ServerError, testing::Reply};
    /// let reply = Reply::error(Error::Server(ServerError::new("server_error", "overloaded")));
    /// # let _ = reply;
    /// ```
    pub fn error(error: Error) -> Self {
        Self {
            kind: ReplyKind::Error(error),
        }
    }

    /// Instead of a response, the connection ends: `None` as if the client had closed it,
    /// `Some(error)` as a server hang-up (the session reconnects when its policy allows).
    ///
    /// ```
    /// use realtime_agents::{Error, testing::Reply};
    /// let reply = Reply::close(Some(Error::Closed { code: Some(1011), reason: "restart".into() }));
    /// # let _ = reply;
    /// ```
    pub fn close(error: Option<Error>) -> Self {
        Self {
            kind: ReplyKind::Close(error),
        }
    }

    fn push(mut self, part: Part) -> Self {
        if let ReplyKind::Response { parts, .. } = &mut self.kind {
            parts.push(part);
        }
        self
    }

    /// Adds a text message after the outputs so far (nothing for an error or close reply).
    ///
    /// ```
    /// let reply = realtime_agents::testing::Reply::text("One.").and_text("Two.");
    /// # let _ = reply;
    /// ```
    pub fn and_text(self, text: impl Into<String>) -> Self {
        self.push(Part::Text(text.into()))
    }

    /// Adds a spoken message after the outputs so far.
    ///
    /// ```
    /// let reply = realtime_agents::testing::Reply::speech("One.").and_speech("Two.");
    /// # let _ = reply;
    /// ```
    pub fn and_speech(self, transcript: impl Into<String>) -> Self {
        self.push(Part::Speech(transcript.into()))
    }

    /// Adds a function call after the outputs so far (several calls make one batch).
    ///
    /// ```
    /// use serde_json::json;
    /// let reply = realtime_agents::testing::Reply::call("a", json!({})).and_call("b", json!({"x": 1}));
    /// # let _ = reply;
    /// ```
    pub fn and_call(self, name: impl Into<String>, arguments: serde_json::Value) -> Self {
        self.push(Part::Call {
            name: name.into(),
            arguments: arguments.to_string(),
        })
    }

    /// How the response ends (default [`Completed`](ResponseStatus::Completed)).
    ///
    /// ```
    /// use realtime_agents::{model::ResponseStatus, testing::Reply};
    /// let reply = Reply::text("Sorry").status(ResponseStatus::Failed);
    /// # let _ = reply;
    /// ```
    pub fn status(mut self, status: ResponseStatus) -> Self {
        if let ReplyKind::Response { status: s, .. } = &mut self.kind {
            *s = status;
        }
        self
    }

    /// The usage the response reports (default zero tokens).
    ///
    /// ```
    /// use realtime_agents::{model::Usage, testing::Reply};
    /// let reply = Reply::text("Hi").usage(Usage::new(10, 2));
    /// # let _ = reply;
    /// ```
    pub fn usage(mut self, usage: Usage) -> Self {
        if let ReplyKind::Response { usage: u, .. } = &mut self.kind {
            *u = usage;
        }
        self
    }

    /// The user starts speaking halfway through the first message: the model reports
    /// [`SpeechStarted`](ModelEvent::SpeechStarted), and (as a server that interrupts itself)
    /// ends the message as incomplete and the response as
    /// [`Cancelled`](ResponseStatus::Cancelled). Later outputs are not sent.
    ///
    /// ```
    /// let reply = realtime_agents::testing::Reply::speech("A long answer").interrupted_by_user();
    /// # let _ = reply;
    /// ```
    pub fn interrupted_by_user(mut self) -> Self {
        if let ReplyKind::Response { barge_in, .. } = &mut self.kind {
            *barge_in = true;
        }
        self
    }
}

/// What a [responder](ScriptedModel::responder) knows about a response request.
///
/// ```
/// use realtime_agents::testing::{Reply, ScriptedModel};
/// let model = ScriptedModel::new().responder(|request| {
///     match request.tool_outputs.first() {
///         Some((_call, output)) => Reply::text(format!("The tool said {output}.")),
///         None if request.number == 1 => Reply::text("Welcome!"),
///         None => Reply::text("Go on."),
///     }
/// });
/// # let _ = model;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Request {
    /// 1 for the first request the model got, and so on.
    pub number: usize,
    /// The text of the last user message (or transcribed user audio) since the previous
    /// response, if any.
    pub user_text: Option<String>,
    /// The tool outputs (`call_id`, `output`) received since the previous response.
    pub tool_outputs: Vec<(String, String)>,
    /// The session settings in effect (connect settings with every update applied).
    pub settings: SessionSettings,
}

type Responder = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

#[derive(Default)]
struct State {
    replies: VecDeque<Reply>,
    responder: Option<Responder>,
    commands: Vec<ModelCommand>,
    connects: Vec<SessionSettings>,
    settings: SessionSettings,
    current: Option<EventSender>,
    requests: usize,
    unanswered: usize,
    responses_started: u64,
    responses_done: u64,
    /// Response requests answered so far (by a reply or by an error for a missing one).
    played: usize,
    /// `played` when [`ScriptedModel::play`] last returned.
    played_mark: usize,
    /// What the session has yet to report of the replies played.
    acks: Vec<Ack>,
}

/// The session event that shows a reply was handled.
#[derive(Debug, PartialEq)]
enum Ack {
    /// `Usage` with a total of at least this many responses.
    Response(u64),
    /// An `Error` event with this text.
    Error(String),
    /// `Closed`.
    Close,
}

#[derive(Default)]
struct Script {
    state: Mutex<State>,
}

impl Script {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, Copy)]
struct Options {
    pace: Duration,
    server_interrupts: bool,
    timeout: Duration,
}

/// An in-process model that plays scripted replies (see the [module docs](self)).
///
/// Clones share the script and the records: give one to the runner
/// (`runner.model(model.clone())`) and keep one to script and inspect. Use one session at a
/// time per model.
///
/// Per connection, the model sends `SessionUpdated` (the settings' output format), echoes
/// user messages and created items, ends a user's audio turn on `commit` (transcribing audio
/// made with [`speech::encode_text`]) and asks itself for a response then, as server turn
/// detection does; every other response is requested by the session. Requests made while a
/// response plays coalesce into one.
///
/// ```
/// use realtime_agents::testing::{Reply, ScriptedModel};
/// use realtime_agents::{RealtimeAgent, RealtimeRunner};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> realtime_agents::Result<()> {
/// let model = ScriptedModel::new().reply(Reply::speech("Hi! How can I help?"));
/// let mut session = RealtimeRunner::new(RealtimeAgent::new("Greeter")).model(model.clone()).run(()).await?;
/// session.send_message("Hello").await?;
/// let events = model.play(&mut session).await?;
/// assert_eq!(events.assistant_text(), "Hi! How can I help?");
/// assert!(events.audio_bytes() > 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ScriptedModel {
    script: Arc<Script>,
    options: Options,
    capabilities: Capabilities,
}

impl fmt::Debug for ScriptedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.script.lock();
        f.debug_struct("ScriptedModel")
            .field("replies_left", &state.replies.len())
            .field("responder", &state.responder.is_some())
            .field("commands", &state.commands.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Default for ScriptedModel {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedModel {
    /// A model with no replies, full [capabilities](Capabilities::default), a server that
    /// interrupts itself, no pacing and a five-second [`play`](Self::play) timeout.
    ///
    /// ```
    /// let model = realtime_agents::testing::ScriptedModel::new();
    /// assert_eq!(model.remaining(), 0);
    /// ```
    pub fn new() -> Self {
        Self {
            script: Arc::default(),
            options: Options {
                pace: Duration::ZERO,
                server_interrupts: true,
                timeout: Duration::from_secs(5),
            },
            capabilities: Capabilities::default(),
        }
    }

    /// Queues the reply to the next response request.
    ///
    /// ```
    /// use realtime_agents::testing::{Reply, ScriptedModel};
    /// let model = ScriptedModel::new().reply(Reply::text("one")).reply(Reply::text("two"));
    /// assert_eq!(model.remaining(), 2);
    /// ```
    pub fn reply(self, reply: Reply) -> Self {
        self.push_reply(reply);
        self
    }

    /// Queues a reply while the test runs (for a conversation scripted step by step).
    ///
    /// ```
    /// use realtime_agents::testing::{Reply, ScriptedModel};
    /// let model = ScriptedModel::new();
    /// model.push_reply(Reply::text("later"));
    /// assert_eq!(model.remaining(), 1);
    /// ```
    pub fn push_reply(&self, reply: Reply) {
        self.script.lock().replies.push_back(reply);
    }

    /// Decides the reply to each request the queue has no reply for.
    ///
    /// ```
    /// use realtime_agents::testing::{Reply, ScriptedModel};
    /// let model = ScriptedModel::new().responder(|request| match &request.user_text {
    ///     Some(text) => Reply::text(format!("You said: {text}")),
    ///     None => Reply::text("Anything else?"),
    /// });
    /// # let _ = model;
    /// ```
    pub fn responder<F>(self, responder: F) -> Self
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        self.script.lock().responder = Some(Arc::new(responder));
        self
    }

    /// What the connections report as their capabilities (default: everything).
    ///
    /// ```
    /// use realtime_agents::{model::Capabilities, testing::ScriptedModel};
    /// let model = ScriptedModel::new().capabilities(Capabilities::default().truncation(false));
    /// # let _ = model;
    /// ```
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Waits this long after each transcript delta and audio chunk (default zero), so that
    /// an interrupt arriving meanwhile cancels the response halfway.
    ///
    /// ```
    /// use std::time::Duration;
    /// let model = realtime_agents::testing::ScriptedModel::new().pace(Duration::from_millis(5));
    /// # let _ = model;
    /// ```
    pub fn pace(mut self, pace: Duration) -> Self {
        self.options.pace = pace;
        self
    }

    /// What `SessionUpdated` says about the server cancelling its own response when the user
    /// speaks (default `true`, like the OpenAI Realtime API with voice activity detection).
    ///
    /// ```
    /// let model = realtime_agents::testing::ScriptedModel::new().server_interrupts(false);
    /// # let _ = model;
    /// ```
    pub fn server_interrupts(mut self, interrupts: bool) -> Self {
        self.options.server_interrupts = interrupts;
        self
    }

    /// How long [`play`](Self::play) waits (default five seconds).
    ///
    /// ```
    /// use std::time::Duration;
    /// let model = realtime_agents::testing::ScriptedModel::new().timeout(Duration::from_secs(1));
    /// # let _ = model;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// Every command the session sent, in order, over all connections.
    ///
    /// ```
    /// let model = realtime_agents::testing::ScriptedModel::new();
    /// assert!(model.commands().is_empty());
    /// ```
    pub fn commands(&self) -> Vec<ModelCommand> {
        self.script.lock().commands.clone()
    }

    /// The text of every user message the session sent (guardrail feedback included).
    ///
    /// ```
    /// let model = realtime_agents::testing::ScriptedModel::new();
    /// assert!(model.user_messages().is_empty());
    /// ```
    pub fn user_messages(&self) -> Vec<String> {
        self.script
            .lock()
            .commands
            .iter()
            .filter_map(|c| match c {
                ModelCommand::UserMessage { message, .. } => Some(message.plain_text()),
                _ => None,
            })
            .collect()
    }

    /// Every tool output the session sent, as (`call_id`, `output`).
    ///
    /// ```
    /// let model = realtime_agents::testing::ScriptedModel::new();
    /// assert!(model.tool_outputs().is_empty());
    /// ```
    pub fn tool_outputs(&self) -> Vec<(String, String)> {
        self.script
            .lock()
            .commands
            .iter()
            .filter_map(|c| match c {
                ModelCommand::ToolOutput {
                    call_id, output, ..
                } => Some((call_id.clone(), output.clone())),
                _ => None,
            })
            .collect()
    }

    /// The settings in effect on the latest connection: what it was opened with, with every
    /// `UpdateSession` applied (instructions and tools of the current agent after a handoff).
    ///
    /// ```
    /// let model = realtime_agents::testing::ScriptedModel::new();
    /// assert_eq!(model.settings().instructions, None);
    /// ```
    pub fn settings(&self) -> SessionSettings {
        self.script.lock().settings.clone()
    }

    /// The settings each connection was opened with, in order (more than one after a
    /// reconnect).
    ///
    /// ```
    /// let model = realtime_agents::testing::ScriptedModel::new();
    /// assert!(model.connections().is_empty());
    /// ```
    pub fn connections(&self) -> Vec<SessionSettings> {
        self.script.lock().connects.clone()
    }

    /// Queued replies not played yet.
    ///
    /// ```
    /// let model = realtime_agents::testing::ScriptedModel::new();
    /// assert_eq!(model.remaining(), 0);
    /// ```
    pub fn remaining(&self) -> usize {
        self.script.lock().replies.len()
    }

    /// Response requests that found neither a queued reply nor a responder (each was
    /// answered with an error event).
    ///
    /// ```
    /// let model = realtime_agents::testing::ScriptedModel::new();
    /// assert_eq!(model.unanswered(), 0);
    /// ```
    pub fn unanswered(&self) -> usize {
        self.script.lock().unanswered
    }

    /// Sends an event on the latest connection now (a user starting to speak, a server
    /// error, `ModelEvent::closed(..)`...). Fails with [`Error::SessionClosed`] when no
    /// connection is open.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use realtime_agents::{Error, model::ModelEvent, testing::ScriptedModel};
    /// let model = ScriptedModel::new();
    /// let sent = model.emit(ModelEvent::closed(None)).await;
    /// assert!(matches!(sent, Err(Error::SessionClosed)));
    /// # }
    /// ```
    pub async fn emit(&self, event: ModelEvent) -> Result<()> {
        let sender = self.script.lock().current.clone();
        match sender {
            Some(sender) => sender.send(event).await,
            None => Err(Error::SessionClosed),
        }
    }

    /// Reads the session's events until the conversation the test started is over, and
    /// returns them: some reply was played since the last `play` returned, every queued
    /// reply was played, and the session reported each one (a response by its
    /// [`Usage`](RealtimeSessionEvent::Usage) event, as each scripted response reports
    /// usage; an error reply by its `Error` event, a close by `Reconnected` or `Closed`).
    /// Returns early when the session closes.
    ///
    /// Fails with [`Error::Timeout`] after the [`timeout`](Self::timeout), saying what was
    /// still missing. Read one conversation with either `play` or [`until`], not both.
    ///
    /// ```
    /// # use realtime_agents::testing::{Reply, ScriptedModel};
    /// # use realtime_agents::{RealtimeAgent, RealtimeRunner};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> realtime_agents::Result<()> {
    /// let model = ScriptedModel::new().reply(Reply::text("Hi"));
    /// let mut session = RealtimeRunner::new(RealtimeAgent::new("A")).model(model.clone()).run(()).await?;
    /// session.send_message("Hello").await?;
    /// assert_eq!(model.play(&mut session).await?.assistant_text(), "Hi");
    /// model.push_reply(Reply::text("Bye"));
    /// session.send_message("Goodbye").await?;
    /// assert_eq!(model.play(&mut session).await?.assistant_text(), "Bye");
    /// # Ok(()) }
    /// ```
    pub async fn play(&self, session: &mut RealtimeSession) -> Result<Events> {
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        let mut events = Vec::new();
        loop {
            let missing = {
                let mut state = self.script.lock();
                let over = state.played > state.played_mark
                    && state.replies.is_empty()
                    && state.responses_started == state.responses_done
                    && state.acks.is_empty();
                if over {
                    state.played_mark = state.played;
                    return Ok(Events(events));
                }
                format!(
                    "{} replies not played, {} of {} responses ended, not yet reported by the \
                     session: {:?}",
                    state.replies.len(),
                    state.responses_done,
                    state.responses_started,
                    state.acks
                )
            };
            let next = tokio::time::timeout_at(deadline, session.next()).await;
            match next {
                Ok(Some(event)) => {
                    let closed = self.acknowledge(&event);
                    events.push(event);
                    if closed {
                        let mut state = self.script.lock();
                        state.played_mark = state.played;
                        return Ok(Events(events));
                    }
                }
                Ok(None) => return Ok(Events(events)),
                Err(_) => {
                    return Err(Error::Timeout(format!(
                        "the conversation did not end within {:?}: {missing}; events: {}",
                        self.options.timeout,
                        Events(events).summary()
                    )));
                }
            }
        }
    }

    /// Crosses off what `event` shows the session handled; true for the end of the session.
    fn acknowledge(&self, event: &RealtimeSessionEvent) -> bool {
        let mut state = self.script.lock();
        match event {
            RealtimeSessionEvent::Usage { total, .. } => state
                .acks
                .retain(|a| !matches!(a, Ack::Response(n) if *n <= total.requests)),
            RealtimeSessionEvent::Error { error } => {
                let text = error.to_string();
                if let Some(at) = state
                    .acks
                    .iter()
                    .position(|a| *a == Ack::Error(text.clone()))
                {
                    state.acks.remove(at);
                }
            }
            RealtimeSessionEvent::Reconnected { .. } => {
                if let Some(at) = state.acks.iter().position(|a| *a == Ack::Close) {
                    state.acks.remove(at);
                }
            }
            RealtimeSessionEvent::Closed { .. } => {
                state.acks.clear();
                return true;
            }
            _ => {}
        }
        false
    }
}

impl RealtimeModel for ScriptedModel {
    fn connect(
        &self,
        settings: SessionSettings,
    ) -> BoxFuture<'static, Result<Box<dyn RealtimeConnection>>> {
        let script = self.script.clone();
        let options = self.options;
        TaskModel::new(move |settings: SessionSettings, commands, events| {
            let script = script.clone();
            async move {
                {
                    let mut state = script.lock();
                    state.connects.push(settings.clone());
                    state.settings = settings.clone();
                    state.current = Some(events.clone());
                }
                let connection = Connection {
                    commands,
                    events,
                    script,
                    options,
                    settings,
                    deferred: VecDeque::new(),
                    requested: false,
                    ended: false,
                    user_text: None,
                    tool_outputs: Vec::new(),
                    audio: Vec::new(),
                };
                connection.run().await
            }
        })
        .capabilities(self.capabilities.clone())
        .connect(settings)
    }
}

/// One connection of the scripted model.
struct Connection {
    commands: CommandReceiver,
    events: EventSender,
    script: Arc<Script>,
    options: Options,
    settings: SessionSettings,
    /// Commands that arrived while a response played, handled after it.
    deferred: VecDeque<ModelCommand>,
    /// A response was asked for.
    requested: bool,
    /// The command channel ended.
    ended: bool,
    user_text: Option<String>,
    tool_outputs: Vec<(String, String)>,
    /// Input audio of the user's current turn.
    audio: Vec<u8>,
}

/// Whether playing a reply ended the connection.
enum Flow {
    Continue,
    Stop,
}

impl Connection {
    fn output_format(&self) -> AudioFormat {
        self.settings.output_format.unwrap_or_default()
    }

    async fn run(mut self) -> Result<()> {
        self.session_updated().await?;
        loop {
            if self.deferred.is_empty() {
                match self.receive().await {
                    Some(command) => self.handle(command).await?,
                    None => return Ok(()),
                }
            }
            while let Some(command) = self.deferred.pop_front() {
                self.handle(command).await?;
            }
            if std::mem::take(&mut self.requested) {
                if let Flow::Stop = self.respond().await? {
                    return Ok(());
                }
            }
            if self.ended && self.deferred.is_empty() {
                return Ok(());
            }
        }
    }

    /// The next command, recorded.
    async fn receive(&mut self) -> Option<ModelCommand> {
        let Some(command) = self.commands.recv().await else {
            self.ended = true;
            return None;
        };
        self.script.lock().commands.push(command.clone());
        Some(command)
    }

    async fn session_updated(&self) -> Result<()> {
        let event =
            ModelEvent::session_updated(self.output_format(), self.options.server_interrupts);
        self.events.send(event).await
    }

    async fn handle(&mut self, command: ModelCommand) -> Result<()> {
        match command {
            ModelCommand::UserMessage { message, respond } => {
                self.user_text = Some(message.plain_text());
                self.events.user_message(message).await?;
                self.requested |= respond;
            }
            ModelCommand::Audio { audio, commit } => {
                if self.audio.len() + audio.len() <= MAX_TURN_AUDIO {
                    self.audio.extend_from_slice(&audio);
                }
                if commit {
                    self.end_audio_turn().await?;
                }
            }
            ModelCommand::ToolOutput {
                call_id,
                output,
                respond,
            } => {
                self.tool_outputs.push((call_id, output));
                self.requested |= respond;
            }
            ModelCommand::CreateResponse => self.requested = true,
            // Nothing plays between responses: nothing to cancel or cut.
            ModelCommand::Interrupt { .. } | ModelCommand::Raw(_) => {}
            ModelCommand::UpdateSession(settings) => {
                self.settings.merge(&settings);
                self.script.lock().settings = self.settings.clone();
                self.session_updated().await?;
            }
            ModelCommand::CreateItem {
                item,
                previous_item_id,
            } => {
                let mut item = *item;
                item.set_previous_item_id(previous_item_id);
                self.events.send(ModelEvent::Item(item)).await?;
            }
            ModelCommand::DeleteItem { item_id } => {
                self.events
                    .send(ModelEvent::ItemDeleted { item_id })
                    .await?;
            }
        }
        Ok(())
    }

    /// The user's audio turn ends: its item, its transcript when the audio is test speech,
    /// and a response request.
    async fn end_audio_turn(&mut self) -> Result<()> {
        let audio = std::mem::take(&mut self.audio);
        let transcript = match self.settings.input_format.unwrap_or_default() {
            AudioFormat::Pcm16 { rate } => {
                let samples: Vec<i16> = audio
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                speech::decode_text(&samples, rate)
            }
            AudioFormat::G711Ulaw | AudioFormat::G711Alaw => None,
        };
        let item_id = self.events.new_id("item");
        self.events
            .send(ModelEvent::Item(RealtimeItem::Message(MessageItem {
                item_id: item_id.clone(),
                previous_item_id: None,
                role: Role::User,
                content: vec![MessageContent::InputAudio { transcript: None }],
                status: ItemStatus::Completed,
            })))
            .await?;
        if let Some(transcript) = transcript {
            self.user_text = Some(transcript.clone());
            self.events
                .send(ModelEvent::InputTranscriptCompleted {
                    item_id,
                    content_index: 0,
                    transcript,
                })
                .await?;
        }
        self.requested = true;
        Ok(())
    }

    /// Plays the reply to a response request.
    async fn respond(&mut self) -> Result<Flow> {
        let reply = {
            let mut state = self.script.lock();
            state.requests += 1;
            let request = Request {
                number: state.requests,
                user_text: self.user_text.take(),
                tool_outputs: std::mem::take(&mut self.tool_outputs),
                settings: self.settings.clone(),
            };
            let reply = state.replies.pop_front().or_else(|| {
                let responder = state.responder.clone()?;
                Some(responder(&request))
            });
            state.played += 1;
            if reply.is_none() {
                state.unanswered += 1;
            }
            reply.map(|r| r.kind).ok_or(request.number)
        };
        match reply {
            Err(number) => {
                let error = Error::Protocol(format!(
                    "the scripted model has no reply for response request #{number}"
                ));
                self.error(error).await?;
            }
            Ok(ReplyKind::Error(error)) => self.error(error).await?,
            Ok(ReplyKind::Close(error)) => {
                self.script.lock().acks.push(Ack::Close);
                self.events.send(ModelEvent::closed(error)).await?;
                return Ok(Flow::Stop);
            }
            Ok(ReplyKind::Response {
                parts,
                status,
                usage,
                barge_in,
            }) => self.play_response(parts, status, usage, barge_in).await?,
        }
        Ok(Flow::Continue)
    }

    async fn error(&self, error: Error) -> Result<()> {
        self.script.lock().acks.push(Ack::Error(error.to_string()));
        self.events.send(ModelEvent::Error(error)).await
    }

    /// The events of a response's outputs, in order.
    fn plan(&self, response_id: &str, parts: Vec<Part>) -> Vec<ModelEvent> {
        let format = self.output_format();
        let chunk = format.ms_to_bytes(100);
        let mut plan = Vec::new();
        for part in parts {
            let item_id = self.events.new_id("item");
            match part {
                Part::Text(text) => plan.extend(message_events(response_id, &item_id, &text, None)),
                Part::Speech(text) => {
                    let audio = (speech_audio(&text, format), chunk);
                    plan.extend(message_events(response_id, &item_id, &text, Some(audio)));
                }
                Part::Call { name, arguments } => {
                    let call_id = self.events.new_id("call");
                    plan.extend(call_events(
                        response_id,
                        &item_id,
                        &call_id,
                        &name,
                        &arguments,
                    ));
                }
            }
        }
        plan
    }

    async fn play_response(
        &mut self,
        parts: Vec<Part>,
        mut status: ResponseStatus,
        usage: Usage,
        barge_in: bool,
    ) -> Result<()> {
        let response_id = self.events.new_id("resp");
        self.script.lock().responses_started += 1;
        self.events
            .send(ModelEvent::response_started(&response_id))
            .await?;
        let mut plan = self.plan(&response_id, parts);
        let mut barge_in_at = None;
        if barge_in {
            // Half of the first message's content, then the user speaks.
            let content: Vec<usize> = plan
                .iter()
                .enumerate()
                .take_while(|(_, e)| {
                    !matches!(
                        e,
                        ModelEvent::AudioDone { .. }
                            | ModelEvent::Item(RealtimeItem::Message(MessageItem {
                                status: ItemStatus::Completed,
                                ..
                            }))
                    )
                })
                .filter(|(_, e)| is_content(e))
                .map(|(i, _)| i)
                .collect();
            let cut = content.get(content.len() / 2).copied().unwrap_or(1);
            plan.truncate(cut);
            barge_in_at = Some(cut);
        }
        // The message being said: its id, whether spoken, and its text so far.
        let mut open: Option<(String, bool, String)> = None;
        let mut cancelled = false;
        for event in plan {
            match &event {
                ModelEvent::Item(RealtimeItem::Message(m)) => {
                    open = (m.status == ItemStatus::InProgress).then(|| {
                        let spoken =
                            matches!(m.content.first(), Some(MessageContent::Audio { .. }));
                        (m.item_id.clone(), spoken, String::new())
                    });
                }
                ModelEvent::TranscriptDelta { delta, .. } => {
                    if let Some((_, _, text)) = &mut open {
                        text.push_str(delta);
                    }
                }
                _ => {}
            }
            let content = is_content(&event);
            self.events.send(event).await?;
            if content && !self.options.pace.is_zero() && self.pause().await {
                cancelled = true;
                break;
            }
        }
        if barge_in_at.is_some() && !cancelled {
            let user_item = self.events.new_id("item");
            self.events
                .send(ModelEvent::SpeechStarted {
                    item_id: user_item,
                    audio_start_ms: 0,
                })
                .await?;
            cancelled = true;
        }
        if cancelled {
            status = ResponseStatus::Cancelled;
            if let Some((item_id, spoken, text)) = open {
                let part = if spoken {
                    MessageContent::Audio {
                        transcript: Some(text),
                    }
                } else {
                    MessageContent::Text { text }
                };
                self.events
                    .send(ModelEvent::Item(RealtimeItem::Message(MessageItem {
                        item_id,
                        previous_item_id: None,
                        role: Role::Assistant,
                        content: vec![part],
                        status: ItemStatus::Incomplete,
                    })))
                    .await?;
            }
        }
        {
            let mut state = self.script.lock();
            state.responses_done += 1;
            let done = state.responses_done;
            state.acks.push(Ack::Response(done));
        }
        self.events
            .send(ModelEvent::response_done(response_id, status, Some(usage)))
            .await
    }

    /// Waits the pace, taking commands meanwhile; true when one cancels the response (or the
    /// connection is closing). Other commands wait for the response to end.
    async fn pause(&mut self) -> bool {
        let sleep = tokio::time::sleep(self.options.pace);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return false,
                command = self.receive() => match command {
                    None => return true,
                    Some(ModelCommand::Interrupt { cancel_response: true, .. }) => return true,
                    Some(command) => self.deferred.push_back(command),
                },
            }
        }
    }
}

fn is_content(event: &ModelEvent) -> bool {
    matches!(
        event,
        ModelEvent::TranscriptDelta { .. } | ModelEvent::Audio { .. }
    )
}

/// Audio of `text` in `format`, for test backends: [`speech::encode_text`] as PCM16 bytes at
/// 24 kHz (which the simulator and [`speech::decode_text`] read back), or silence of the same
/// length in any other format.
///
/// ```
/// use realtime_agents::{audio::AudioFormat, simulator::speech, testing::speech_audio};
/// let audio = speech_audio("hi", AudioFormat::PCM16_24K);
/// let samples: Vec<i16> = audio.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
/// assert_eq!(speech::decode_text(&samples, 24_000).as_deref(), Some("hi"));
/// assert_eq!(speech_audio("hi", AudioFormat::G711_ULAW).len(), 960); // 120 ms at 8 kHz
/// ```
pub fn speech_audio(text: &str, format: AudioFormat) -> Bytes {
    let samples = speech::encode_text(text);
    match format {
        AudioFormat::Pcm16 { rate } if rate == speech::SAMPLE_RATE => {
            samples.iter().flat_map(|s| s.to_le_bytes()).collect()
        }
        _ => {
            let ms = samples.len() as u64 * 1000 / u64::from(speech::SAMPLE_RATE);
            let silence = match format {
                AudioFormat::G711Ulaw => 0xFF,
                AudioFormat::G711Alaw => 0xD5,
                AudioFormat::Pcm16 { .. } => 0,
            };
            vec![silence; format.ms_to_bytes(ms)].into()
        }
    }
}

/// A tool call as the session ran it (from its
/// [`ToolEnd`](RealtimeSessionEvent::ToolEnd) event).
///
/// ```
/// use realtime_agents::{RealtimeSessionEvent, testing::Events};
/// let events = Events(vec![RealtimeSessionEvent::ToolEnd {
///     agent: "A".into(), tool: "get_weather".into(), call_id: "call_1".into(),
///     arguments: "{}".into(), output: "Sunny".into(), is_error: false,
/// }]);
/// let run = &events.tool_runs()[0];
/// assert_eq!((run.tool.as_str(), run.output.as_str()), ("get_weather", "Sunny"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolRun {
    /// The agent that owns the tool.
    pub agent: String,
    /// Tool name.
    pub tool: String,
    /// JSON arguments.
    pub arguments: String,
    /// What the model got back.
    pub output: String,
    /// Whether the output reports a failure or a rejection.
    pub is_error: bool,
}

/// Session events a test collected, with shortcuts for what tests check.
///
/// ```
/// use realtime_agents::{RealtimeSessionEvent, items::Role, testing::Events};
/// let events = Events(vec![
///     RealtimeSessionEvent::TranscriptDelta { role: Role::Assistant, item_id: "i".into(), content_index: 0, delta: "Hi ".into() },
///     RealtimeSessionEvent::TranscriptDelta { role: Role::Assistant, item_id: "i".into(), content_index: 0, delta: "there".into() },
/// ]);
/// assert_eq!(events.assistant_text(), "Hi there");
/// assert_eq!(events.len(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Events(pub Vec<RealtimeSessionEvent>);

impl Deref for Events {
    type Target = [RealtimeSessionEvent];

    fn deref(&self) -> &[RealtimeSessionEvent] {
        &self.0
    }
}

impl Events {
    /// Everything the assistant said or wrote, joined.
    ///
    /// ```
    /// assert_eq!(realtime_agents::testing::Events::default().assistant_text(), "");
    /// ```
    pub fn assistant_text(&self) -> String {
        self.iter()
            .filter_map(|e| match e {
                RealtimeSessionEvent::TranscriptDelta {
                    role: Role::Assistant,
                    delta,
                    ..
                } => Some(delta.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Bytes of assistant audio delivered.
    ///
    /// ```
    /// assert_eq!(realtime_agents::testing::Events::default().audio_bytes(), 0);
    /// ```
    pub fn audio_bytes(&self) -> usize {
        self.iter()
            .map(|e| match e {
                RealtimeSessionEvent::Audio { data, .. } => data.len(),
                _ => 0,
            })
            .sum()
    }

    /// The tool calls that finished, in order.
    ///
    /// ```
    /// assert!(realtime_agents::testing::Events::default().tool_runs().is_empty());
    /// ```
    pub fn tool_runs(&self) -> Vec<ToolRun> {
        self.iter()
            .filter_map(|e| match e {
                RealtimeSessionEvent::ToolEnd {
                    agent,
                    tool,
                    arguments,
                    output,
                    is_error,
                    ..
                } => Some(ToolRun {
                    agent: agent.clone(),
                    tool: tool.clone(),
                    arguments: arguments.clone(),
                    output: output.clone(),
                    is_error: *is_error,
                }),
                _ => None,
            })
            .collect()
    }

    /// The handoffs, as (from, to).
    ///
    /// ```
    /// assert!(realtime_agents::testing::Events::default().handoffs().is_empty());
    /// ```
    pub fn handoffs(&self) -> Vec<(String, String)> {
        self.iter()
            .filter_map(|e| match e {
                RealtimeSessionEvent::Handoff { from, to } => Some((from.clone(), to.clone())),
                _ => None,
            })
            .collect()
    }

    /// The agents that started responses, in order.
    ///
    /// ```
    /// assert!(realtime_agents::testing::Events::default().agents().is_empty());
    /// ```
    pub fn agents(&self) -> Vec<String> {
        self.iter()
            .filter_map(|e| match e {
                RealtimeSessionEvent::AgentStart { agent, .. } => Some(agent.clone()),
                _ => None,
            })
            .collect()
    }

    /// The errors reported.
    ///
    /// ```
    /// assert!(realtime_agents::testing::Events::default().errors().is_empty());
    /// ```
    pub fn errors(&self) -> Vec<Error> {
        self.iter()
            .filter_map(|e| match e {
                RealtimeSessionEvent::Error { error } => Some(error.clone()),
                _ => None,
            })
            .collect()
    }

    /// The names of the guardrails that tripped, per trip.
    ///
    /// ```
    /// assert!(realtime_agents::testing::Events::default().guardrail_trips().is_empty());
    /// ```
    pub fn guardrail_trips(&self) -> Vec<Vec<String>> {
        self.iter()
            .filter_map(|e| match e {
                RealtimeSessionEvent::GuardrailTripped { results, .. } => Some(
                    results
                        .iter()
                        .filter(|r| r.output.tripwire_triggered)
                        .map(|r| r.name.clone())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// The kinds of the events, for failure messages.
    fn summary(&self) -> String {
        self.iter()
            .map(|e| {
                let debug = format!("{e:?}");
                let end = debug.find([' ', '{', '(']).unwrap_or(debug.len());
                debug[..end].to_owned()
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Reads `session`'s events until one matches `done` (included), at most `timeout`.
///
/// Fails with [`Error::Timeout`] (naming the events seen) when none matched in time, and
/// with [`Error::SessionClosed`] when the session ended first.
///
/// ```
/// use std::time::Duration;
/// use realtime_agents::testing::{Reply, ScriptedModel, until};
/// use realtime_agents::{RealtimeAgent, RealtimeRunner, RealtimeSessionEvent as E};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> realtime_agents::Result<()> {
/// let model = ScriptedModel::new().reply(Reply::text("Hi"));
/// let mut session = RealtimeRunner::new(RealtimeAgent::new("A")).model(model).run(()).await?;
/// session.send_message("Hello").await?;
/// let events = until(&mut session, Duration::from_secs(5), |e| matches!(e, E::AgentEnd { .. })).await?;
/// assert_eq!(events.agents(), ["A"]);
/// # Ok(()) }
/// ```
pub async fn until<F>(
    session: &mut RealtimeSession,
    timeout: Duration,
    mut done: F,
) -> Result<Events>
where
    F: FnMut(&RealtimeSessionEvent) -> bool,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = Events::default();
    loop {
        match tokio::time::timeout_at(deadline, session.next()).await {
            Ok(Some(event)) => {
                let matched = done(&event);
                events.0.push(event);
                if matched {
                    return Ok(events);
                }
            }
            Ok(None) => return Err(Error::SessionClosed),
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "no matching event within {timeout:?}; events: {}",
                    events.summary()
                )));
            }
        }
    }
}
