//! The OpenAI Realtime API (GA) over WebSocket.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64_simd::STANDARD as BASE64;
use futures::future::BoxFuture;
use futures::{FutureExt as _, Sink, Stream};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{
    AudioCut, ModelCommand, ModelEvent, RawServerEvent, RealtimeConnection, RealtimeModel,
    ResponseStatus, SessionSettings, Usage, UserContent, UserMessage,
};
use crate::audio::AudioFormat;
use crate::items::{self, ItemStatus, MessageContent, RealtimeItem, Role};
use crate::protocol::{
    self, AudioConfig, AudioInputConfig, AudioOutputConfig, ClientEvent, ContentPart, Item,
    Modality, ServerEvent, SessionConfig, SessionKind, ToolDefinition, TranscriptionConfig,
    TurnDetection,
};
use crate::transport::handshake::{self, HandshakeError};
use crate::wake::Wakes;
use crate::{Error, Result, ServerError};

const DEFAULT_MODEL: &str = "gpt-realtime";
const DEFAULT_BASE_URL: &str = "wss://api.openai.com/v1/realtime";
/// Frames are gathered up to this size before a write.
const WRITE_BATCH_BYTES: usize = 8 << 10;
const USER_AGENT: &str = concat!("realtime-agents-rust/", env!("CARGO_PKG_VERSION"));

/// A secret that never shows in `Debug` output.
#[derive(Clone)]
struct Secret(Arc<str>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Clone)]
struct Config {
    url: Option<String>,
    api_key: Option<Secret>,
    model: String,
    call_id: Option<String>,
    headers: Vec<(String, Secret)>,
    handshake_timeout: Duration,
    ping_interval: Option<Duration>,
    ping_timeout: Duration,
    max_frame_size: usize,
    read_buffer_size: usize,
    max_send_queue: usize,
}

/// The URL is shown without its query (keys travel there too); keys and header values are
/// redacted.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url.as_deref().map(strip_query))
            .field("api_key", &self.api_key)
            .field("model", &self.model)
            .field("call_id", &self.call_id)
            .field("headers", &self.headers)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("max_frame_size", &self.max_frame_size)
            .field("read_buffer_size", &self.read_buffer_size)
            .field("max_send_queue", &self.max_send_queue)
            .finish()
    }
}

/// The OpenAI Realtime API over WebSocket.
///
/// Defaults: `wss://api.openai.com/v1/realtime?model=gpt-realtime`, the key from the builder or
/// `OPENAI_API_KEY`, a 10 s handshake timeout and a ping every 20 s. With custom headers (for
/// Azure's `api-key`), the headers are sent as given and no `Authorization` header is added.
/// The key never appears in `Debug` output, logs or errors.
///
/// ```no_run
/// use realtime_agents::model::OpenAIRealtimeWebSocketModel;
/// // The real API (key from OPENAI_API_KEY):
/// let openai = OpenAIRealtimeWebSocketModel::new();
/// // Azure OpenAI:
/// let azure = OpenAIRealtimeWebSocketModel::builder()
///     .url("wss://my-resource.openai.azure.com/openai/v1/realtime?model=gpt-realtime")
///     .header("api-key", "...")
///     .build();
/// // A local simulator:
/// let local = OpenAIRealtimeWebSocketModel::builder().url("ws://127.0.0.1:8765/v1/realtime").build();
/// ```
#[derive(Debug, Clone)]
pub struct OpenAIRealtimeWebSocketModel {
    config: Arc<Config>,
}

impl Default for OpenAIRealtimeWebSocketModel {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenAIRealtimeWebSocketModel {
    /// The real API with default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for custom URLs, keys, headers and timeouts.
    pub fn builder() -> OpenAIRealtimeWebSocketModelBuilder {
        OpenAIRealtimeWebSocketModelBuilder {
            config: Config {
                url: None,
                api_key: None,
                model: DEFAULT_MODEL.to_owned(),
                call_id: None,
                headers: Vec::new(),
                handshake_timeout: Duration::from_secs(10),
                ping_interval: Some(Duration::from_secs(20)),
                ping_timeout: Duration::from_secs(20),
                max_frame_size: 16 << 20,
                // tungstenite zero-fills the free part of its read buffer before every read,
                // so a big buffer costs CPU on each of the ~50 reads a second of a voice
                // session. A 20 ms audio delta is about 1.4 KB; larger frames grow it.
                read_buffer_size: 4 << 10,
                max_send_queue: 8 << 20,
            },
        }
    }
}

/// Builder for [`OpenAIRealtimeWebSocketModel`].
#[derive(Debug, Clone)]
#[must_use]
pub struct OpenAIRealtimeWebSocketModelBuilder {
    config: Config,
}

impl OpenAIRealtimeWebSocketModelBuilder {
    /// Connects to this URL instead of the OpenAI endpoint (Azure, proxies, simulators). The
    /// `model` query parameter is added when the URL has none.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = Some(url.into());
        self
    }

    /// The API key (default: `OPENAI_API_KEY`).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(Secret(key.into().into()));
        self
    }

    /// The model name (default `gpt-realtime`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.model = model.into();
        self
    }

    /// Attaches to an existing SIP or WebRTC call instead of starting a new conversation.
    /// Audio formats are then left as the call negotiated them.
    pub fn call_id(mut self, call_id: impl Into<String>) -> Self {
        self.config.call_id = Some(call_id.into());
        self
    }

    /// Adds a header. With any custom header, no `Authorization` header is added.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config
            .headers
            .push((name.into(), Secret(value.into().into())));
        self
    }

    /// How long the connection and WebSocket handshake may take (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Keep-alive (default: a ping every 20 s, 20 s to answer); `interval: None` disables it.
    ///
    /// Any frame from the server counts as proof of life, not only a pong, and time the session
    /// spends waiting for the application to read its events never counts against the server:
    /// frames that arrived meanwhile are read before the server is judged. A server that stops
    /// sending anything (a frozen process, a network black hole) is reported at most
    /// `interval + timeout` after its last frame (40 s with the defaults), with no action from
    /// the application: as [`Reconnecting`](crate::RealtimeSessionEvent::Reconnecting) when a
    /// [`ReconnectPolicy`](crate::ReconnectPolicy) is set, otherwise as the final
    /// [`Closed`](crate::RealtimeSessionEvent::Closed) with an [`Error::Timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use realtime_agents::model::OpenAIRealtimeWebSocketModel;
    /// // Notice a dead server within 15 s (a ping every 10 s, 5 s to answer).
    /// let model = OpenAIRealtimeWebSocketModel::builder()
    ///     .ping(Some(Duration::from_secs(10)), Duration::from_secs(5))
    ///     .build();
    /// # let _ = model;
    /// ```
    pub fn ping(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.config.ping_interval = interval;
        self.config.ping_timeout = timeout;
        self
    }

    /// Largest accepted frame (default 16 MiB). Larger frames close the connection with an error.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// The finished model.
    pub fn build(self) -> OpenAIRealtimeWebSocketModel {
        OpenAIRealtimeWebSocketModel {
            config: Arc::new(self.config),
        }
    }
}

impl RealtimeModel for OpenAIRealtimeWebSocketModel {
    fn connect(
        &self,
        settings: SessionSettings,
    ) -> BoxFuture<'static, Result<Box<dyn RealtimeConnection>>> {
        let config = self.config.clone();
        async move {
            let ws = open_socket(&config).await?;
            let mut connection = OpenAIConnection::new(ws, config);
            let session = connection.proto.session_config(&settings, true);
            connection.proto.push(&ClientEvent::SessionUpdate {
                event_id: None,
                session,
            });
            let connection: Box<dyn RealtimeConnection> = Box::new(connection);
            Ok(connection)
        }
        .boxed()
    }

    /// The `model` of the URL's query when it has one, else the builder's.
    fn model_name(&self) -> Option<String> {
        let from_url = self.config.url.as_deref().and_then(|url| {
            let (_, query) = url.split_once('?')?;
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("model="))
        });
        Some(from_url.unwrap_or(&self.config.model).to_owned())
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

fn endpoint(config: &Config) -> String {
    let base = config.url.as_deref().unwrap_or(DEFAULT_BASE_URL);
    let (key, value) = match &config.call_id {
        Some(call_id) => ("call_id", call_id.as_str()),
        None => ("model", config.model.as_str()),
    };
    if base.contains(&format!("{key}=")) {
        base.to_owned()
    } else {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}{key}={value}")
    }
}

async fn open_socket(config: &Config) -> Result<Socket> {
    let url = endpoint(config);
    let shown = strip_query(&url);
    let connect_error = |status: Option<u16>, message: String| Error::Connect {
        url: shown.clone(),
        status,
        message,
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| connect_error(None, e.to_string()))?;
    let headers = request.headers_mut();
    let header = |value: &str| {
        HeaderValue::from_str(value).map_err(|_| Error::Config("invalid header value".into()))
    };
    if config.headers.is_empty() {
        let key = match &config.api_key {
            Some(key) => Some(key.0.to_string()),
            None => std::env::var("OPENAI_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
        };
        match key {
            Some(key) => {
                let mut value = header(&format!("Bearer {key}"))?;
                value.set_sensitive(true);
                headers.insert("authorization", value);
            }
            None if config.url.is_none() => {
                return Err(Error::Config(
                    "no API key: set OPENAI_API_KEY or call `api_key`".into(),
                ));
            }
            None => {}
        }
    } else {
        for (name, value) in &config.headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::Config(format!("invalid header name `{name}`")))?;
            let mut value = header(&value.0)?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
    }
    headers.insert("user-agent", HeaderValue::from_static(USER_AGENT));
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_size)
        // Frames queued together go out in one write, when `poll_write` flushes.
        .write_buffer_size(WRITE_BATCH_BYTES)
        // Never refuse an outgoing message for its size: `max_frame_size` bounds what the
        // server sends, and `max_send_queue` bounds what waits to be written.
        .max_write_buffer_size(usize::MAX)
        .max_frame_size(Some(config.max_frame_size))
        .max_message_size(Some(config.max_frame_size));
    let handshake = handshake::connect(&url, request.headers(), ws_config);
    match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Err(_) => Err(Error::Timeout(format!(
            "connecting to {shown} took over {:?}",
            config.handshake_timeout
        ))),
        Ok(Err(HandshakeError::Refused { status, body })) => {
            let body = String::from_utf8_lossy(&body);
            // Hide our credentials before cutting, so that no fragment of one survives.
            let body = refusal_redactor(config, &url).redact_string(body.into_owned());
            Err(connect_error(
                Some(status),
                body.chars().take(500).collect(),
            ))
        }
        Ok(Err(e)) => Err(connect_error(None, e.to_string())),
        Ok(Ok(ws)) => {
            tracing::debug!(url = %shown, "connected");
            Ok(ws)
        }
    }
}

/// Every credential a connection attempt may have sent: the key, custom header values, the
/// environment's key and the URL's query values (but the model name). A refused upgrade's body can echo them back
/// (proxies and gateways do), and it ends up in [`Error::Connect`].
fn refusal_redactor(config: &Config, url: &str) -> crate::Redactor {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    crate::Redactor::new(
        config
            .api_key
            .iter()
            .chain(config.headers.iter().map(|(_, value)| value))
            .map(|secret| secret.0.to_string())
            .chain(std::env::var("OPENAI_API_KEY").ok())
            .chain(
                query
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .filter(|(name, _)| *name != "model")
                    .map(|(_, v)| v.to_owned()),
            ),
    )
}

/// `response.create` sequencing: at most one response at a time, requests made meanwhile
/// coalesced into one.
#[derive(Debug, Default)]
struct Sequencer {
    /// `event_id` of a `response.create` sent but not yet answered by `response.created`.
    awaiting: Option<String>,
    /// `event_id` of the last `response.create` sent, to recognise the server rejecting it
    /// even after a server-created response cleared `awaiting`.
    last_sent: Option<String>,
    /// The response being generated.
    active: Option<String>,
    /// A `response.create` body waiting for the current response to end.
    queued: Option<Value>,
    /// Cancel the response as soon as it is created.
    cancel_on_created: bool,
}

impl Sequencer {
    fn busy(&self) -> bool {
        self.awaiting.is_some() || self.active.is_some()
    }
}

/// The protocol state of a connection, apart from its socket: commands become queued frames,
/// frames become events.
#[derive(Debug)]
struct Protocol {
    config: Arc<Config>,
    outbox: VecDeque<Message>,
    outbox_bytes: usize,
    pending: VecDeque<ModelEvent>,
    sequencer: Sequencer,
    /// Audio of this response is dropped: it was interrupted.
    interrupted: Option<String>,
    /// `event_id`s of our `response.cancel`s, whose "not active" errors are benign races.
    cancel_ids: VecDeque<String>,
    next_event_id: u64,
}

struct OpenAIConnection {
    ws: Socket,
    proto: Protocol,
    keepalive: Option<KeepAlive>,
    /// Frames were written but not yet flushed.
    flush_pending: bool,
    /// Whether the socket's read side woke since reading last came up empty: only then is a
    /// read tried (an empty try still costs tungstenite a read attempt and a buffer to clear,
    /// and the session polls the connection after every frame it sends).
    read: Wakes<1>,
    closing: bool,
    finished: bool,
}

/// The only source of [`OpenAIConnection::read`].
const READ: u32 = 1;

impl Protocol {
    fn new(config: Arc<Config>) -> Self {
        Self {
            config,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            pending: VecDeque::new(),
            sequencer: Sequencer::default(),
            interrupted: None,
            cancel_ids: VecDeque::new(),
            next_event_id: 0,
        }
    }

    fn event_id(&mut self, prefix: &str) -> String {
        self.next_event_id += 1;
        format!("rta_{prefix}_{}", self.next_event_id)
    }

    fn push_text(&mut self, text: String) {
        self.outbox_bytes += text.len();
        self.outbox.push_back(Message::Text(text.into()));
    }

    fn push(&mut self, event: &ClientEvent) {
        self.push_text(event.to_json());
    }

    fn session_config(&self, s: &SessionSettings, initial: bool) -> SessionConfig {
        // On connect, fill what the caller left unset with the defaults a voice agent wants;
        // on updates, unset means "unchanged". With a call id, formats stay as negotiated.
        let defaults = initial && self.config.call_id.is_none();
        let or_default = |v: Option<AudioFormat>| v.or(defaults.then_some(AudioFormat::PCM16_24K));
        let turn_detection = s.turn_detection.clone().or_else(|| {
            initial.then_some(Some(TurnDetection::SemanticVad {
                eagerness: None,
                create_response: Some(true),
                interrupt_response: Some(true),
            }))
        });
        let transcription = s.transcription.clone().or_else(|| {
            initial.then(|| {
                Some(TranscriptionConfig {
                    model: Some("gpt-4o-mini-transcribe".into()),
                    ..Default::default()
                })
            })
        });
        let input = AudioInputConfig {
            format: or_default(s.input_format),
            noise_reduction: s.noise_reduction.clone(),
            transcription,
            turn_detection,
        };
        let output = AudioOutputConfig {
            format: or_default(s.output_format),
            voice: s.voice.clone(),
            speed: s.speed,
        };
        let tools = s.tools.as_ref().map(|tools| {
            tools
                .iter()
                .map(|t| ToolDefinition::Function {
                    name: t.name.clone(),
                    description: Some(t.description.clone()),
                    parameters: t.parameters.clone(),
                })
                .collect()
        });
        let model = match (&s.model, initial && self.config.call_id.is_none()) {
            (Some(m), _) => Some(m.clone()),
            (None, true) => Some(self.config.model.clone()),
            (None, false) => None,
        };
        SessionConfig {
            kind: Some(SessionKind::Realtime),
            model,
            output_modalities: s
                .output_modalities
                .clone()
                .or_else(|| initial.then(|| vec![Modality::Audio])),
            instructions: s.instructions.clone(),
            audio: Some(AudioConfig {
                input: Some(input),
                output: Some(output),
            }),
            tools,
            tool_choice: s.tool_choice.clone(),
            max_output_tokens: s.max_output_tokens,
            ..Default::default()
        }
    }

    fn send_session_update(&mut self, settings: &SessionSettings, initial: bool) {
        let session = self.session_config(settings, initial);
        if settings.extra.is_empty() {
            self.push(&ClientEvent::SessionUpdate {
                event_id: None,
                session,
            });
        } else {
            let mut session = serde_json::to_value(&session).unwrap_or_else(|_| json!({}));
            if let Some(obj) = session.as_object_mut() {
                for (k, v) in &settings.extra {
                    obj.insert(k.clone(), v.clone());
                }
            }
            self.push_text(json!({"type": "session.update", "session": session}).to_string());
        }
    }

    fn request_response(&mut self, body: Option<Value>) {
        let body = body.unwrap_or_else(|| json!({"type": "response.create"}));
        if self.sequencer.busy() {
            // Coalesce: a queued request with explicit parameters wins over a plain one.
            let explicit = body.as_object().is_some_and(|o| o.len() > 1);
            if explicit || self.sequencer.queued.is_none() {
                self.sequencer.queued = Some(body);
            }
            return;
        }
        self.send_response_create(body);
    }

    fn send_response_create(&mut self, mut body: Value) {
        let id = self.event_id("response_create");
        if let Some(obj) = body.as_object_mut() {
            obj.insert("event_id".into(), Value::String(id.clone()));
        }
        self.sequencer.awaiting = Some(id.clone());
        self.sequencer.last_sent = Some(id);
        self.push_text(body.to_string());
    }

    fn release_queued(&mut self) {
        if !self.sequencer.busy() {
            if let Some(body) = self.sequencer.queued.take() {
                self.send_response_create(body);
            }
        }
    }

    fn send_cancel(&mut self, response_id: &str) {
        let id = self.event_id("cancel");
        self.cancel_ids.push_back(id.clone());
        if self.cancel_ids.len() > 16 {
            self.cancel_ids.pop_front();
        }
        self.push(&ClientEvent::ResponseCancel {
            event_id: Some(id),
            response_id: Some(response_id.to_owned()),
        });
    }

    fn command(&mut self, command: ModelCommand) {
        match command {
            ModelCommand::UserMessage { message, respond } => {
                self.push(&ClientEvent::ConversationItemCreate {
                    event_id: None,
                    previous_item_id: None,
                    item: user_item(message),
                });
                if respond {
                    self.request_response(None);
                }
            }
            ModelCommand::Audio { audio, commit } => {
                if !audio.is_empty() {
                    // Hot path: one allocation, no JSON serializer (base64 needs no escaping).
                    const HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
                    let mut text =
                        String::with_capacity(HEAD.len() + audio.len().div_ceil(3) * 4 + 2);
                    text.push_str(HEAD);
                    BASE64.encode_append(&audio, &mut text);
                    text.push_str("\"}");
                    self.push_text(text);
                }
                if commit {
                    self.push(&ClientEvent::InputAudioBufferCommit { event_id: None });
                }
            }
            ModelCommand::ToolOutput {
                call_id,
                output,
                respond,
            } => {
                self.push(&ClientEvent::ConversationItemCreate {
                    event_id: None,
                    previous_item_id: None,
                    item: Item::function_call_output(call_id, output),
                });
                if respond {
                    self.request_response(None);
                }
            }
            ModelCommand::CreateResponse => self.request_response(None),
            ModelCommand::Interrupt {
                cancel_response,
                cut,
            } => {
                if let Some(active) = self.sequencer.active.clone() {
                    self.interrupted = Some(active.clone());
                    if cancel_response {
                        self.send_cancel(&active);
                    }
                } else if cancel_response && self.sequencer.awaiting.is_some() {
                    self.sequencer.cancel_on_created = true;
                }
                if let Some(AudioCut {
                    item_id,
                    content_index,
                    audio_end_ms,
                }) = cut
                {
                    self.push(&ClientEvent::ConversationItemTruncate {
                        event_id: None,
                        item_id,
                        content_index,
                        audio_end_ms,
                    });
                }
            }
            ModelCommand::UpdateSession(settings) => self.send_session_update(&settings, false),
            ModelCommand::CreateItem {
                item,
                mut previous_item_id,
            } => {
                for item in wire_items(*item) {
                    let id = item.id().map(str::to_owned);
                    self.push(&ClientEvent::ConversationItemCreate {
                        event_id: None,
                        previous_item_id: previous_item_id.take(),
                        item,
                    });
                    previous_item_id = id;
                }
            }
            ModelCommand::DeleteItem { item_id } => {
                self.push(&ClientEvent::ConversationItemDelete {
                    event_id: None,
                    item_id,
                })
            }
            ModelCommand::Raw(value) => {
                if value.get("type").and_then(Value::as_str) == Some("response.create") {
                    self.request_response(Some(value));
                } else {
                    self.push_text(value.to_string());
                }
            }
        }
    }

    fn on_text(&mut self, text: tungstenite::Utf8Bytes) {
        let event = ServerEvent::from_json(&text);
        self.pending
            .push_back(ModelEvent::Raw(RawServerEvent::from(text)));
        match event {
            Ok(event) => self.on_server_event(event),
            Err(e) => {
                tracing::warn!(error = %e, "undecodable server event");
                self.pending.push_back(ModelEvent::Error(Error::from(e)));
            }
        }
    }

    /// The event for an audio delta: `None` when its response was interrupted.
    fn audio_delta(
        &self,
        response_id: &str,
        item_id: &str,
        content_index: u32,
        delta: &str,
    ) -> Option<ModelEvent> {
        if self.interrupted.as_deref() == Some(response_id) {
            return None;
        }
        Some(match BASE64.decode_to_vec(delta) {
            Ok(data) => ModelEvent::Audio {
                response_id: response_id.to_owned(),
                item_id: item_id.to_owned(),
                content_index,
                data: data.into(),
            },
            Err(err) => ModelEvent::Error(Error::Protocol(format!("invalid base64 audio: {err}"))),
        })
    }

    fn on_server_event(&mut self, event: ServerEvent) {
        use ServerEvent as S;
        let out = &mut self.pending;
        match event {
            S::SessionCreated(protocol::SessionCreatedEvent { session, .. })
            | S::SessionUpdated(protocol::SessionUpdatedEvent { session, .. }) => {
                let audio = session.audio.unwrap_or_default();
                let output_format = audio.output.and_then(|o| o.format).unwrap_or_default();
                let server_interrupts = matches!(
                    audio.input.and_then(|i| i.turn_detection),
                    Some(Some(td)) if td.interrupt_response()
                );
                out.push_back(ModelEvent::SessionUpdated {
                    output_format,
                    server_interrupts,
                });
            }
            S::Error(protocol::ErrorEvent { error, .. }) => {
                let code = error.code.as_deref();
                let ours = error.event_id.is_some() && error.event_id == self.sequencer.last_sent;
                if ours {
                    if self.sequencer.awaiting == error.event_id {
                        self.sequencer.awaiting = None;
                    }
                    if code == Some("conversation_already_has_active_response") {
                        // A server-created response (voice activity) won the race: ask again after it.
                        tracing::debug!(
                            "response.create raced a server response; retrying after it"
                        );
                        self.sequencer
                            .queued
                            .get_or_insert_with(|| json!({"type": "response.create"}));
                        return;
                    }
                    self.release_queued();
                }
                let benign_cancel = code == Some("response_cancel_not_active")
                    && error
                        .event_id
                        .as_ref()
                        .is_some_and(|id| self.cancel_ids.contains(id));
                if benign_cancel {
                    tracing::debug!("response.cancel raced the end of the response");
                    return;
                }
                self.pending
                    .push_back(ModelEvent::Error(Error::Server(error.into())));
            }
            S::ResponseCreated(protocol::ResponseCreatedEvent { response, .. }) => {
                self.sequencer.awaiting = None;
                self.sequencer.active = Some(response.id.clone());
                if std::mem::take(&mut self.sequencer.cancel_on_created) {
                    self.interrupted = Some(response.id.clone());
                    self.send_cancel(&response.id);
                }
                self.pending.push_back(ModelEvent::ResponseStarted {
                    response_id: response.id,
                });
            }
            S::ResponseDone(protocol::ResponseDoneEvent { response, .. }) => {
                if self
                    .sequencer
                    .active
                    .as_deref()
                    .is_none_or(|a| a == response.id)
                {
                    self.sequencer.active = None;
                }
                if self.interrupted.as_deref() == Some(response.id.as_str()) {
                    self.interrupted = None;
                }
                let status = match response.status {
                    Some(protocol::ResponseStatus::Cancelled) => ResponseStatus::Cancelled,
                    Some(protocol::ResponseStatus::Failed) => ResponseStatus::Failed,
                    Some(protocol::ResponseStatus::Incomplete) => ResponseStatus::Incomplete,
                    _ => ResponseStatus::Completed,
                };
                let usage = response.usage.map(|u| Usage {
                    requests: 1,
                    input_tokens: u.input_tokens,
                    output_tokens: u.output_tokens,
                    total_tokens: u.total_tokens,
                    input_audio_tokens: u
                        .input_token_details
                        .as_ref()
                        .map_or(0, |d| d.audio_tokens),
                    cached_tokens: u
                        .input_token_details
                        .as_ref()
                        .map_or(0, |d| d.cached_tokens),
                    output_audio_tokens: u
                        .output_token_details
                        .as_ref()
                        .map_or(0, |d| d.audio_tokens),
                });
                self.pending.push_back(ModelEvent::ResponseDone {
                    response_id: response.id,
                    status,
                    usage,
                });
                self.release_queued();
            }
            S::ResponseOutputItemDone(protocol::ResponseOutputItemDoneEvent {
                response_id,
                item: Item::FunctionCall(call),
                ..
            }) if call
                .status
                .is_none_or(|s| s == protocol::ItemStatus::Completed) =>
            {
                out.push_back(ModelEvent::FunctionCall {
                    item_id: call.id.unwrap_or_default(),
                    call_id: call.call_id,
                    name: call.name,
                    arguments: call.arguments,
                    response_id,
                });
            }
            S::ResponseOutputAudioDelta(e) => {
                let event = self.audio_delta(&e.response_id, &e.item_id, e.content_index, &e.delta);
                self.pending.extend(event);
            }
            S::ResponseOutputAudioDone(e) => out.push_back(ModelEvent::AudioDone {
                item_id: e.item_id,
                content_index: e.content_index,
            }),
            S::ResponseOutputAudioTranscriptDelta(e) => {
                out.push_back(ModelEvent::TranscriptDelta {
                    response_id: e.response_id,
                    item_id: e.item_id,
                    content_index: e.content_index,
                    delta: e.delta,
                })
            }
            S::ResponseOutputTextDelta(e) => out.push_back(ModelEvent::TranscriptDelta {
                response_id: e.response_id,
                item_id: e.item_id,
                content_index: e.content_index,
                delta: e.delta,
            }),
            S::ConversationItemAdded(protocol::ConversationItemAddedEvent {
                previous_item_id,
                item,
                ..
            })
            | S::ConversationItemDone(protocol::ConversationItemDoneEvent {
                previous_item_id,
                item,
                ..
            })
            | S::ConversationItemCreated(protocol::ConversationItemCreatedEvent {
                previous_item_id,
                item,
                ..
            }) => {
                if let Some(item) = realtime_item(item, previous_item_id) {
                    out.push_back(ModelEvent::Item(item));
                }
            }
            S::ConversationItemRetrieved(protocol::ConversationItemRetrievedEvent {
                item, ..
            }) => {
                if let Some(item) = realtime_item(item, None) {
                    out.push_back(ModelEvent::Item(item));
                }
            }
            S::ConversationItemDeleted(e) => {
                out.push_back(ModelEvent::ItemDeleted { item_id: e.item_id })
            }
            S::InputAudioBufferSpeechStarted(e) => out.push_back(ModelEvent::SpeechStarted {
                item_id: e.item_id,
                audio_start_ms: e.audio_start_ms,
            }),
            S::InputAudioBufferSpeechStopped(e) => out.push_back(ModelEvent::SpeechStopped {
                item_id: e.item_id,
                audio_end_ms: e.audio_end_ms,
            }),
            S::InputAudioBufferTimeoutTriggered(e) => {
                out.push_back(ModelEvent::InputAudioTimeout {
                    item_id: e.item_id,
                    audio_start_ms: e.audio_start_ms,
                    audio_end_ms: e.audio_end_ms,
                })
            }
            S::ConversationItemInputAudioTranscriptionDelta(e) => {
                out.push_back(ModelEvent::InputTranscriptDelta {
                    item_id: e.item_id,
                    content_index: e.content_index.unwrap_or(0),
                    delta: e.delta,
                })
            }
            S::ConversationItemInputAudioTranscriptionCompleted(e) => {
                out.push_back(ModelEvent::InputTranscriptCompleted {
                    item_id: e.item_id,
                    content_index: e.content_index,
                    transcript: e.transcript,
                })
            }
            S::ConversationItemInputAudioTranscriptionFailed(e) => {
                let reason = e.error.message.unwrap_or_else(|| "unknown reason".into());
                out.push_back(ModelEvent::Error(Error::Server(ServerError {
                    kind: e.error.kind.unwrap_or_else(|| "transcription_error".into()),
                    code: e.error.code,
                    message: format!("transcription of {} failed: {reason}", e.item_id),
                    param: e.error.param,
                    event_id: None,
                })))
            }
            _ => {}
        }
    }
}

/// Keep-alive: a ping every `interval`; when one goes unanswered for `timeout`, the server is
/// reported gone.
///
/// Any frame received is proof of life, not only a pong. The deadline is checked only after
/// the socket was read dry: when the session was busy waiting for the application, the frames
/// (and the pong) that arrived meanwhile are still in the socket's buffers, and are read first.
/// A frozen server is thus reported at most `interval + timeout` after its last frame.
struct KeepAlive {
    ping: tokio::time::Interval,
    timeout: Duration,
    /// Armed while a ping is unanswered (no frame since it was sent).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// What the keep-alive wants done.
enum KeepAliveStep {
    /// Nothing until a timer fires.
    Idle,
    /// Send a ping.
    Ping,
    /// A ping went unanswered for the timeout.
    Expired,
}

impl KeepAlive {
    fn new(interval: Duration, timeout: Duration) -> Self {
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            ping,
            timeout,
            deadline: None,
        }
    }

    /// A frame arrived: the server is alive.
    fn alive(&mut self) {
        self.deadline = None;
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> KeepAliveStep {
        if let Some(deadline) = &mut self.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                return KeepAliveStep::Expired;
            }
        }
        if self.ping.poll_tick(cx).is_ready() && self.deadline.is_none() {
            let mut deadline = Box::pin(tokio::time::sleep(self.timeout));
            // Registers the deadline's timer.
            let _ = deadline.as_mut().poll(cx);
            self.deadline = Some(deadline);
            return KeepAliveStep::Ping;
        }
        KeepAliveStep::Idle
    }
}

impl OpenAIConnection {
    fn new(ws: Socket, config: Arc<Config>) -> Self {
        let keepalive = config
            .ping_interval
            .map(|every| KeepAlive::new(every, config.ping_timeout));
        Self {
            ws,
            proto: Protocol::new(config),
            keepalive,
            flush_pending: false,
            read: Wakes::new(),
            closing: false,
            finished: false,
        }
    }

    fn finish(&mut self, error: Option<Error>) {
        if !self.finished {
            self.finished = true;
            self.proto.outbox.clear();
            self.proto.pending.push_back(ModelEvent::Closed { error });
        }
    }

    /// Writes queued messages until the socket pushes back.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), tungstenite::Error> {
        let mut wrote = false;
        while !self.proto.outbox.is_empty() {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
            let Some(message) = self.proto.outbox.pop_front() else {
                break;
            };
            self.proto.outbox_bytes = self.proto.outbox_bytes.saturating_sub(message.len());
            Pin::new(&mut self.ws).start_send(message)?;
            wrote = true;
        }
        // Flush once per batch, and again only while a flush is unfinished.
        self.flush_pending |= wrote;
        if self.flush_pending {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flush_pending = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(())
    }
}

fn close_error(frame: Option<tungstenite::protocol::CloseFrame>) -> Error {
    match frame {
        Some(f) => Error::Closed {
            code: Some(u16::from(f.code)),
            reason: f.reason.to_string(),
        },
        None => Error::Closed {
            code: None,
            reason: "closed by the server".into(),
        },
    }
}

/// What a failed read means for the session (the connection is unusable after any of them).
fn read_error(e: tungstenite::Error) -> Error {
    use tungstenite::error::{CapacityError, ProtocolError};
    match e {
        tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            Error::Protocol(format!(
                "server message too large: {size} bytes, over the limit of {max_size} bytes \
                 (max_frame_size); connection closed"
            ))
        }
        tungstenite::Error::Capacity(e) => Error::Protocol(format!("frame rejected: {e}")),
        tungstenite::Error::Utf8(e) => Error::Protocol(format!(
            "server text frame is not valid UTF-8 ({e}); connection closed"
        )),
        tungstenite::Error::Protocol(e) if e != ProtocolError::ResetWithoutClosingHandshake => {
            Error::Protocol(format!(
                "server broke the WebSocket protocol ({e}); connection closed"
            ))
        }
        e => Error::Closed {
            code: None,
            reason: format!("connection lost: {e}"),
        },
    }
}

impl RealtimeConnection for OpenAIConnection {
    fn send(&mut self, command: ModelCommand) -> Result<()> {
        if self.finished || self.closing {
            return Err(Error::SessionClosed);
        }
        if self.proto.outbox_bytes > self.proto.config.max_send_queue {
            return Err(Error::Protocol(format!(
                "send queue over {} bytes: the server is not reading",
                self.proto.config.max_send_queue
            )));
        }
        self.proto.command(command);
        Ok(())
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ModelEvent>> {
        // The keep-alive's deadline passed: read the socket dry before judging the server.
        let mut check = false;
        loop {
            if let Some(event) = self.proto.pending.pop_front() {
                return Poll::Ready(Some(event));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            if let Err(e) = self.poll_write(cx) {
                self.finish(Some(Error::Protocol(format!("write failed: {e}"))));
                continue;
            }
            let polled = if self.read.take(cx) != 0 || check {
                Pin::new(&mut self.ws).poll_next(&mut self.read.context(READ))
            } else {
                Poll::Pending
            };
            if polled.is_ready() {
                // There may be more: read again on the next poll.
                self.read.mark(READ);
                if let Some(keepalive) = &mut self.keepalive {
                    keepalive.alive();
                }
                check = false;
            }
            let Poll::Ready(polled) = polled else {
                // Nothing more to read: only the keep-alive's timers are left.
                let Some(keepalive) = &mut self.keepalive else {
                    return Poll::Pending;
                };
                match keepalive.poll(cx) {
                    KeepAliveStep::Idle => return Poll::Pending,
                    KeepAliveStep::Ping => self
                        .proto
                        .outbox
                        .push_back(Message::Ping(Default::default())),
                    KeepAliveStep::Expired if check => {
                        let timeout = keepalive.timeout;
                        self.finish(Some(Error::Timeout(format!(
                            "the server sent nothing for {timeout:?} after a ping"
                        ))));
                    }
                    KeepAliveStep::Expired => check = true,
                }
                continue;
            };
            match polled {
                Some(Ok(message)) => match message {
                    Message::Text(text) => self.proto.on_text(text),
                    Message::Close(frame) => {
                        let error = (!self.closing).then(|| close_error(frame));
                        self.finish(error);
                    }
                    Message::Binary(_) => {
                        self.proto
                            .pending
                            .push_back(ModelEvent::Error(Error::Protocol(
                                "unexpected binary frame from the server".into(),
                            )))
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                },
                Some(Err(e)) => {
                    let error = match e {
                        tungstenite::Error::ConnectionClosed
                        | tungstenite::Error::AlreadyClosed
                            if self.closing =>
                        {
                            self.finish(None);
                            continue;
                        }
                        e => read_error(e),
                    };
                    self.finish(Some(error));
                }
                None => {
                    let error = (!self.closing).then(|| Error::Closed {
                        code: None,
                        reason: "connection dropped without a close frame".into(),
                    });
                    self.finish(error);
                }
            }
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.closing {
            self.closing = true;
        }
        if self.finished {
            return Poll::Ready(());
        }
        if !self.proto.outbox.is_empty() {
            if self.poll_write(cx).is_err() {
                return Poll::Ready(());
            }
            if !self.proto.outbox.is_empty() {
                return Poll::Pending;
            }
        }
        match Pin::new(&mut self.ws).poll_close(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                self.finished = true;
                Poll::Ready(())
            }
        }
    }
}

fn user_item(message: UserMessage) -> Item {
    let content = message
        .content
        .into_iter()
        .map(|part| match part {
            UserContent::Text(text) => ContentPart::InputText { text },
            UserContent::Image { url, detail } => ContentPart::InputImage {
                image_url: Some(url),
                detail,
            },
        })
        .collect();
    Item::Message(protocol::MessageItem {
        id: None,
        object: None,
        status: None,
        role: protocol::Role::User,
        content,
    })
}

fn status(s: Option<protocol::ItemStatus>) -> ItemStatus {
    match s {
        Some(protocol::ItemStatus::Completed) => ItemStatus::Completed,
        Some(protocol::ItemStatus::Incomplete) => ItemStatus::Incomplete,
        Some(protocol::ItemStatus::InProgress) | None => ItemStatus::InProgress,
    }
}

/// Translates a wire item into a history item (`None` for items the history does not keep).
fn realtime_item(item: Item, previous_item_id: Option<String>) -> Option<RealtimeItem> {
    match item {
        Item::Message(m) => {
            let role = match m.role {
                protocol::Role::User => Role::User,
                protocol::Role::Assistant => Role::Assistant,
                protocol::Role::System => Role::System,
            };
            let content = m
                .content
                .into_iter()
                .map(|part| match part {
                    ContentPart::InputText { text } => MessageContent::InputText { text },
                    ContentPart::InputAudio { transcript, .. } => {
                        MessageContent::InputAudio { transcript }
                    }
                    ContentPart::InputImage { image_url, detail } => MessageContent::InputImage {
                        image_url: image_url.unwrap_or_default(),
                        detail,
                    },
                    ContentPart::OutputText { text } | ContentPart::Text { text } => {
                        MessageContent::Text { text }
                    }
                    ContentPart::OutputAudio { transcript, .. }
                    | ContentPart::Audio { transcript, .. } => MessageContent::Audio { transcript },
                })
                .collect();
            Some(RealtimeItem::Message(items::MessageItem {
                item_id: m.id.unwrap_or_default(),
                previous_item_id,
                role,
                content,
                status: status(m.status),
            }))
        }
        Item::FunctionCall(c) => Some(RealtimeItem::ToolCall(items::ToolCallItem {
            item_id: c.id.unwrap_or_default(),
            previous_item_id,
            call_id: c.call_id,
            name: c.name,
            arguments: c.arguments,
            output: None,
            status: status(c.status),
        })),
        _ => None,
    }
}

/// Translates a history item back into the wire items that re-create it. Audio is not kept in
/// history, so spoken parts are re-created from their transcripts (as text); parts with nothing
/// to say are left out.
fn wire_items(item: RealtimeItem) -> Vec<Item> {
    match item {
        RealtimeItem::Message(m) => {
            let assistant = m.role == Role::Assistant;
            let content: Vec<ContentPart> = m
                .content
                .into_iter()
                .filter_map(|part| match part {
                    MessageContent::InputImage { image_url, detail } => {
                        Some(ContentPart::InputImage {
                            image_url: Some(image_url),
                            detail,
                        })
                    }
                    other => {
                        let text = other.text().filter(|t| !t.is_empty())?.to_owned();
                        Some(if assistant {
                            ContentPart::OutputText { text }
                        } else {
                            ContentPart::InputText { text }
                        })
                    }
                })
                .collect();
            if content.is_empty() {
                return Vec::new();
            }
            let role = match m.role {
                Role::User => protocol::Role::User,
                Role::Assistant => protocol::Role::Assistant,
                Role::System => protocol::Role::System,
            };
            vec![Item::Message(protocol::MessageItem {
                id: Some(m.item_id).filter(|id| !id.is_empty()),
                object: None,
                status: None,
                role,
                content,
            })]
        }
        RealtimeItem::ToolCall(t) => {
            let mut items = vec![Item::FunctionCall(protocol::FunctionCallItem {
                id: Some(t.item_id).filter(|id| !id.is_empty()),
                object: None,
                status: None,
                call_id: t.call_id.clone(),
                name: t.name,
                arguments: t.arguments,
            })];
            if let Some(output) = t.output {
                items.push(Item::function_call_output(t.call_id, output));
            }
            items
        }
    }
}

/// Benchmark hooks: the OpenAI transport's frame handling without a socket. Not a stable API;
/// `benches/session.rs` uses it to time the decode and encode steps alone.
#[doc(hidden)]
pub mod bench {
    use super::*;

    /// The protocol state of one connection.
    ///
    /// ```
    /// use realtime_agents::model::{ModelCommand, ModelEvent, bench::Wire};
    /// let mut wire = Wire::new();
    /// let frame = r#"{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"AAAA"}"#;
    /// let mut events = Vec::new();
    /// wire.decode(frame.into(), &mut events);
    /// assert!(matches!(&events[1], ModelEvent::Audio { data, .. } if data.len() == 3));
    /// let bytes = wire.encode(ModelCommand::Audio { audio: vec![0u8; 960].into(), commit: false });
    /// assert_eq!(bytes, 1280 + 47);
    /// ```
    #[derive(Debug)]
    pub struct Wire(Protocol);

    impl Default for Wire {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Wire {
        /// A fresh connection's state.
        pub fn new() -> Self {
            let model = OpenAIRealtimeWebSocketModel::builder()
                .url("ws://127.0.0.1:1/v1/realtime")
                .build();
            Self(Protocol::new(model.config))
        }

        /// Handles one server text frame as a connection does; its events go to `out`.
        pub fn decode(&mut self, frame: tungstenite::Utf8Bytes, out: &mut Vec<ModelEvent>) {
            self.0.on_text(frame);
            out.extend(self.0.pending.drain(..));
        }

        /// Handles one command as a connection does and drops the frames it queued; returns
        /// their total size.
        pub fn encode(&mut self, command: ModelCommand) -> usize {
            self.0.command(command);
            let bytes = self.0.outbox_bytes;
            self.0.outbox.clear();
            self.0.outbox_bytes = 0;
            bytes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_adds_model_or_call_id() {
        let mut config = OpenAIRealtimeWebSocketModel::new().config.as_ref().clone();
        assert_eq!(
            endpoint(&config),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
        config.url = Some("ws://127.0.0.1:1/v1/realtime?model=x".into());
        assert_eq!(endpoint(&config), "ws://127.0.0.1:1/v1/realtime?model=x");
        config.call_id = Some("rtc_1".into());
        assert_eq!(
            endpoint(&config),
            "ws://127.0.0.1:1/v1/realtime?model=x&call_id=rtc_1"
        );
    }

    #[test]
    fn model_name_prefers_the_urls_model() {
        let name = |model: OpenAIRealtimeWebSocketModel| model.model_name();
        assert_eq!(
            name(OpenAIRealtimeWebSocketModel::new()).as_deref(),
            Some("gpt-realtime")
        );
        let builder = || OpenAIRealtimeWebSocketModel::builder().model("gpt-realtime-mini");
        assert_eq!(
            name(builder().url("ws://127.0.0.1:1/v1/realtime").build()).as_deref(),
            Some("gpt-realtime-mini")
        );
        let url = "wss://x.example/openai/v1/realtime?api-version=1&model=gpt-realtime-2";
        assert_eq!(
            name(builder().url(url).build()).as_deref(),
            Some("gpt-realtime-2")
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let model = OpenAIRealtimeWebSocketModel::builder()
            .api_key("sk-secret-123")
            .header("api-key", "az-secret-456")
            .build();
        let shown = format!("{model:?}");
        assert!(
            !shown.contains("sk-secret-123") && !shown.contains("az-secret-456"),
            "{shown}"
        );
        assert!(shown.contains("[redacted]"));
    }
}
