//! The Live wire protocol: commands become `session.*` and `response.*` frames, server frames
//! become [`ModelEvent`]s. What the mapping does is documented in the [module docs](super).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64_simd::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::turns::Turns;
use super::{Config, LiveDelegation};
use crate::audio::AudioFormat;
use crate::items::{self, ItemStatus, MessageContent, RealtimeItem, Role};
use crate::model::{
    Capabilities, ModelCommand, ModelEvent, RawServerEvent, SessionSettings, ToolSpec, Usage,
    UserContent,
};
use crate::transport::{Queues, WireProtocol};
use crate::{Error, ServerError};

/// What `ModelCommand::CreateResponse` appends as commentary (`delegation_id: null`): the
/// only way to make a Live model take the floor.
///
/// ```
/// assert_eq!(realtime_agents::model::live::RESPOND_NOW, "Respond to the user now.");
/// ```
pub const RESPOND_NOW: &str = "Respond to the user now.";
/// Appended text is cut into pieces of at most this many bytes (the API takes at most 500
/// tokens per append; about 4 bytes a token, with a margin).
const APPEND_BYTES: usize = 1800;
/// Audio held until `session.started` stops being held past this many bytes of frames.
const MAX_HELD_BYTES: usize = 1 << 20;
/// `session.start.input` takes at most this many messages.
const MAX_INPUT_ITEMS: usize = 128;
/// The formats a Live WebSocket takes (the same both ways).
const FORMATS: &[AudioFormat] = &[
    AudioFormat::PCM16_24K,
    AudioFormat::Pcm16 { rate: 16_000 },
    AudioFormat::G711_ULAW,
    AudioFormat::G711_ALAW,
];

/// What a Live connection supports: the model owns turn-taking (nothing is created, cancelled
/// or truncated by the client), the context is append-only (startup history, appended
/// instructions), tools run through the delegation chosen at start.
pub(crate) fn capabilities(delegation: &LiveDelegation) -> Capabilities {
    let responses = matches!(delegation, LiveDelegation::Responses { .. });
    Capabilities::minimal()
        .model_turn_taking(true)
        .input_transcription(true)
        .audio_output(true)
        .auto_tool_reply(true)
        .function_calls(responses)
        // Replaced by appending them: the model reads the new ones as the rule from now on.
        .mutable_instructions(true)
        .mutable_tools(responses)
        .delegated_tools(!responses)
        // Seeding and the replay after a reconnect: into `session.start.input`.
        .create_items(true)
        .input_formats(FORMATS)
        .output_formats(FORMATS)
}

/// A server frame, decoded in one pass with only the fields the mapping reads; everything else
/// (and any field of an unknown event) is left to the [`ModelEvent::Raw`] that precedes it.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
    #[serde(default)]
    start_ms: Option<u64>,
    #[serde(default)]
    end_ms: Option<u64>,
    #[serde(default)]
    session: Option<SessionResource>,
    #[serde(default)]
    delegation: Option<Delegation>,
    #[serde(default)]
    delegation_id: Option<String>,
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    error: Option<WireError>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct SessionResource {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    audio: Option<SessionAudio>,
}

#[derive(Deserialize)]
struct SessionAudio {
    #[serde(default)]
    format: Option<WireFormat>,
}

#[derive(Deserialize)]
struct WireFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    rate: Option<u32>,
}

#[derive(Deserialize)]
struct Delegation {
    id: String,
    #[serde(default)]
    target: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    client_event_id: Option<String>,
}

/// The wire form of an audio format (the same both ways on Live).
pub(crate) fn format_json(format: AudioFormat) -> Value {
    match format {
        AudioFormat::Pcm16 { rate } => json!({"type": "audio/pcm", "rate": rate}),
        AudioFormat::G711Ulaw => json!({"type": "audio/pcmu", "rate": 8000}),
        AudioFormat::G711Alaw => json!({"type": "audio/pcma", "rate": 8000}),
    }
}

fn parse_format(format: &WireFormat) -> Option<AudioFormat> {
    match format.kind.as_str() {
        "audio/pcm" => Some(AudioFormat::Pcm16 {
            rate: format.rate.unwrap_or(24_000),
        }),
        "audio/pcmu" => Some(AudioFormat::G711Ulaw),
        "audio/pcma" => Some(AudioFormat::G711Alaw),
        _ => None,
    }
}

/// The protocol state of one Live connection.
#[derive(Debug)]
pub(crate) struct Protocol {
    config: Arc<Config>,
    /// `session.start`, not yet written: startup history (`CreateItem`) still goes into it.
    start: Option<Map<String, Value>>,
    /// `session.started` arrived: commands go out as they come.
    started: bool,
    /// Frames held until `session.started`, and their size.
    held: Vec<String>,
    held_bytes: usize,
    /// The instructions the model has (the startup ones, then what was appended).
    instructions: String,
    /// The tools last sent to the Responses backend.
    tools: Vec<ToolSpec>,
    /// The session's audio format.
    format: AudioFormat,
    turns: Turns,
    /// Client delegations not answered yet.
    delegations: HashSet<String>,
    /// Responses delegation: calls not answered yet, by backend response.
    open_calls: HashMap<String, String>,
    /// Responses delegation: backend responses still running.
    running: HashSet<String>,
    /// Responses delegation: outputs were sent since the last `response.create`.
    answered: bool,
    /// A tool output was sent and the model has not spoken since: `CreateResponse` (the
    /// session's request after a batch of outputs) has nothing to add.
    output_unspoken: bool,
    /// Backend token usage not reported yet.
    backend_usage: Option<Usage>,
    closing: bool,
    next_id: u64,
}

impl Protocol {
    pub(crate) fn new(config: Arc<Config>, settings: &SessionSettings) -> Self {
        let format = settings
            .input_format
            .or(settings.output_format)
            .unwrap_or(AudioFormat::PCM16_24K);
        let tools = settings.tools.clone().unwrap_or_default();
        let instructions = full_instructions(&config, settings.instructions.as_deref(), &tools);
        let mut session = Map::new();
        let model = settings
            .model
            .clone()
            .unwrap_or_else(|| config.model.clone());
        session.insert("model".into(), Value::String(model));
        if !instructions.is_empty() {
            session.insert("instructions".into(), Value::String(instructions.clone()));
        }
        let mut audio = Map::new();
        audio.insert("format".into(), format_json(format));
        if let Some(voice) = settings.voice.as_ref().or(config.voice.as_ref()) {
            if let Ok(voice) = serde_json::to_value(voice) {
                audio.insert("output".into(), json!({ "voice": voice }));
            }
        }
        session.insert("audio".into(), Value::Object(audio));
        session.insert(
            "delegation".into(),
            delegation_json(&config.delegation, &tools),
        );
        // `store`, `safety_identifier`, `triggers`...: as given (the API rejects unknown fields).
        for (key, value) in &settings.extra {
            session.insert(key.clone(), value.clone());
        }
        let mut start = Map::new();
        start.insert("type".into(), Value::from("session.start"));
        start.insert("session".into(), Value::Object(session));
        Self {
            config,
            start: Some(start),
            started: false,
            held: Vec::new(),
            held_bytes: 0,
            instructions,
            tools,
            format,
            turns: Turns::new(format),
            delegations: HashSet::new(),
            open_calls: HashMap::new(),
            running: HashSet::new(),
            answered: false,
            output_unspoken: false,
            backend_usage: None,
            closing: false,
            next_id: 0,
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_live{}", self.next_id)
    }

    /// Sends a frame now, or holds it until the session has started.
    fn send(&mut self, q: &mut Queues, frame: String) {
        if self.started {
            q.push_text(frame);
        } else {
            self.held_bytes += frame.len();
            self.held.push(frame);
        }
    }

    /// `session.{instructions,thinking,commentary}.append`, cut into pieces the API accepts.
    fn append(&mut self, q: &mut Queues, kind: &str, text: &str, delegation_id: Option<&str>) {
        for piece in pieces(text) {
            let frame = json!({"type": kind, "content": piece, "delegation_id": delegation_id});
            self.send(q, frame.to_string());
        }
    }

    /// A request for speech: commentary the model says in its own words.
    fn respond(&mut self, q: &mut Queues) {
        if std::mem::take(&mut self.output_unspoken) {
            // The outputs already asked for speech.
            return;
        }
        self.append(q, "session.commentary.append", RESPOND_NOW, None);
    }

    fn user_message(&mut self, q: &mut Queues, content: Vec<UserContent>, respond: bool) {
        let mut text = String::new();
        let mut images = 0;
        for part in content {
            match part {
                UserContent::Text(t) => {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&t);
                }
                _ => images += 1,
            }
        }
        if images > 0 {
            q.event(ModelEvent::Error(Error::Protocol(format!(
                "the Live API takes no images: {images} image part(s) of a user message dropped"
            ))));
        }
        if !text.is_empty() {
            // No user-role item exists on Live: typed text is silent context.
            self.append(q, "session.thinking.append", &format!("user: {text}"), None);
            self.turns.typed(&text);
            let item_id = self.id("item");
            q.event(ModelEvent::Item(RealtimeItem::Message(
                items::MessageItem {
                    item_id,
                    previous_item_id: None,
                    role: Role::User,
                    content: vec![MessageContent::InputText { text }],
                    status: ItemStatus::Completed,
                },
            )));
        }
        if respond {
            self.respond(q);
        }
    }

    fn tool_output(&mut self, q: &mut Queues, call_id: String, output: String) {
        self.output_unspoken = true;
        if self.delegations.remove(&call_id) {
            self.append(q, "session.commentary.append", &output, Some(&call_id));
            return;
        }
        if self.open_calls.remove(&call_id).is_some() {
            let frame = json!({"type": "response.item.create", "item": {
                "type": "function_call_output", "call_id": call_id, "output": output}});
            self.send(q, frame.to_string());
            self.answered = true;
            self.maybe_continue(q);
            return;
        }
        match self.config.delegation {
            LiveDelegation::Client { .. } => {
                // Not a delegation of this session (e.g. from before a reconnect): say it as
                // general context.
                self.append(q, "session.commentary.append", &output, None);
            }
            LiveDelegation::Responses { .. } => {
                tracing::debug!(%call_id, "output for a call this session does not know dropped");
                self.output_unspoken = false;
            }
        }
    }

    /// Responses delegation: one `response.create` once every open call is answered and no
    /// backend response runs (the service refuses a partial batch).
    fn maybe_continue(&mut self, q: &mut Queues) {
        if self.answered && self.open_calls.is_empty() && self.running.is_empty() {
            self.answered = false;
            self.send(q, r#"{"type":"response.create"}"#.to_owned());
        }
    }

    fn update_session(&mut self, q: &mut Queues, settings: &SessionSettings) {
        let tools = settings.tools.clone().unwrap_or_else(|| self.tools.clone());
        let instructions = match &settings.instructions {
            Some(i) => full_instructions(&self.config, Some(i), &tools),
            None if tools != self.tools => {
                full_instructions(&self.config, Some(&self.instructions), &tools)
            }
            None => self.instructions.clone(),
        };
        if let Some(start) = self.start.as_mut() {
            // Not started yet: everything still goes into `session.start`.
            if let Some(Value::Object(session)) = start.get_mut("session") {
                session.insert("instructions".into(), Value::String(instructions.clone()));
                session.insert(
                    "delegation".into(),
                    delegation_json(&self.config.delegation, &tools),
                );
            }
            self.instructions = instructions;
            self.tools = tools;
            // `SessionUpdated` comes with `session.started`.
            return;
        }
        if instructions != self.instructions && !instructions.is_empty() {
            // Immutable after start: the change is appended, and the model reads it as a
            // standing rule from now on.
            let text = format!("New instructions, replacing the earlier ones:\n{instructions}");
            self.append(q, "session.instructions.append", &text, None);
            self.instructions = instructions;
        }
        if tools != self.tools {
            if let LiveDelegation::Responses { .. } = self.config.delegation {
                let update = json!({"type": "session.update", "session": {"delegation": {
                    "type": "responses", "responses": {"tools": function_tools(&tools)}}}});
                self.send(q, update.to_string());
            }
            self.tools = tools;
        }
        q.event(ModelEvent::SessionUpdated {
            output_format: self.format,
            server_interrupts: true,
        });
    }

    fn create_item(&mut self, q: &mut Queues, item: RealtimeItem) {
        let text = history_text(&item);
        // The item joins the model's context (below) with the session's id.
        q.event(ModelEvent::Item(item));
        let Some((role, text)) = text else {
            return;
        };
        if let Some(start) = self.start.as_mut() {
            // Startup history: `session.start.input`.
            if let Some(Value::Object(session)) = start.get_mut("session") {
                let input = session
                    .entry("input")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(input) = input {
                    let part = match role {
                        "assistant" => json!({"type": "output_text", "text": text}),
                        _ => json!({"type": "input_text", "text": text}),
                    };
                    input.push(json!({"type": "message", "role": role, "content": [part]}));
                }
            }
            return;
        }
        // Started: history can only be appended, as silent context.
        self.append(
            q,
            "session.thinking.append",
            &format!("{role}: {text}"),
            None,
        );
    }

    /// The event for a decoded frame; `Err` for a frame that does not decode.
    fn on_frame(&mut self, frame: Frame<'_>, q: &mut Queues) {
        match frame.kind.as_ref() {
            "session.output_audio.delta" => {
                let Some(delta) = frame.delta else {
                    return q.event(missing("session.output_audio.delta", "delta"));
                };
                match BASE64.decode_to_vec(delta.as_bytes()) {
                    Ok(data) => {
                        let spoke = self.turns.output_audio(data.into(), q);
                        self.after_output(spoke, q);
                    }
                    Err(e) => q.event(ModelEvent::Error(Error::Protocol(format!(
                        "invalid base64 audio: {e}"
                    )))),
                }
            }
            "session.output_transcript.delta" => {
                let Some(delta) = frame.delta else {
                    return q.event(missing("session.output_transcript.delta", "delta"));
                };
                let spoke = self.turns.output_transcript(delta.into_owned(), q);
                self.after_output(spoke, q);
            }
            "session.input_transcript.delta" => {
                let Some(delta) = frame.delta else {
                    return q.event(missing("session.input_transcript.delta", "delta"));
                };
                self.output_unspoken = false;
                self.turns.input_transcript(
                    delta.into_owned(),
                    frame.start_ms.unwrap_or(0),
                    frame.end_ms.or(frame.start_ms).unwrap_or(0),
                    q,
                );
            }
            "session.started" => {
                self.started = true;
                self.held_bytes = 0;
                for frame in std::mem::take(&mut self.held) {
                    q.push_text(frame);
                }
                let session = frame.session;
                if let Some(id) = session.as_ref().and_then(|s| s.id.as_deref()) {
                    tracing::debug!(session = %id, "Live session started");
                }
                if let Some(format) = session
                    .and_then(|s| s.audio)
                    .and_then(|a| a.format)
                    .as_ref()
                    .and_then(parse_format)
                {
                    self.format = format;
                    self.turns.set_format(format);
                }
                q.event(ModelEvent::SessionUpdated {
                    output_format: self.format,
                    server_interrupts: true,
                });
            }
            "session.delegation.created" => {
                let Some(delegation) = frame.delegation else {
                    return q.event(missing("session.delegation.created", "delegation"));
                };
                self.turns.end_user_turn(q);
                match delegation.target.as_deref() {
                    Some("client") | None => self.client_delegation(delegation.id, q),
                    // Responses: the calls arrive in `response.event`s. Decisions: raw only.
                    _ => {}
                }
            }
            "response.event" => {
                if let Some(event) = frame.event {
                    self.backend_event(event, frame.delegation_id, q);
                }
            }
            "session.closed" => {
                self.turns.end_response(q);
                let reason = frame.reason.unwrap_or_else(|| "unknown".into());
                if self.closing {
                    q.end(None);
                } else {
                    q.end(Some(Error::Closed {
                        code: None,
                        reason: format!("the Live session ended ({reason})"),
                    }));
                }
            }
            "error" => {
                let error = server_error(frame.error);
                if self.started {
                    q.event(ModelEvent::Error(Error::Server(error)));
                } else {
                    // No `session.started`: the session did not start.
                    q.end(Some(Error::Server(error)));
                }
            }
            // Acknowledgements, usage in seconds, notices and anything unknown: raw only.
            _ => {}
        }
    }

    /// After output: a response that started closes the user's turn and means the model has
    /// spoken; a response that ended carries the backend usage gathered meanwhile.
    fn after_output(&mut self, spoke: bool, _q: &mut Queues) {
        if spoke {
            self.output_unspoken = false;
        }
        if let Some(usage) = self.backend_usage.take() {
            self.turns.add_usage(usage);
        }
    }

    fn client_delegation(&mut self, id: String, q: &mut Queues) {
        let LiveDelegation::Client { tool } = &self.config.delegation else {
            return;
        };
        let name = tool.clone();
        let arguments = json!({ "task": self.turns.last_user_text() }).to_string();
        self.delegations.insert(id.clone());
        q.event(ModelEvent::Item(RealtimeItem::ToolCall(
            items::ToolCallItem {
                item_id: id.clone(),
                previous_item_id: None,
                call_id: id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
                output: None,
                status: ItemStatus::Completed,
            },
        )));
        // Outside any response: the model delegated; it speaks the answer by itself.
        q.event(ModelEvent::FunctionCall {
            call_id: id.clone(),
            name,
            arguments,
            item_id: id,
            response_id: String::new(),
        });
    }

    /// A Responses backend event (`response.event`): function calls, and the running set that
    /// decides when to continue.
    fn backend_event(&mut self, event: Value, delegation_id: Option<String>, q: &mut Queues) {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let response_id = event
            .pointer("/response/id")
            .or_else(|| event.get("response_id"))
            .and_then(Value::as_str)
            .or(delegation_id.as_deref())
            .unwrap_or_default()
            .to_owned();
        match kind {
            "response.created" | "response.in_progress" => {
                self.running.insert(response_id);
            }
            "response.output_item.done" => {
                let Some(item) = event.get("item") else {
                    return;
                };
                let status = item.get("status").and_then(Value::as_str);
                if item.get("type").and_then(Value::as_str) != Some("function_call")
                    || status.is_some_and(|s| s != "completed")
                {
                    return;
                }
                let text = |key: &str| {
                    item.get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let (call_id, name, arguments) = (text("call_id"), text("name"), text("arguments"));
                if call_id.is_empty() || name.is_empty() {
                    return q.event(missing("response.output_item.done", "item.call_id"));
                }
                let item_id = Some(text("id"))
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| call_id.clone());
                self.open_calls.insert(call_id.clone(), response_id.clone());
                let item = ModelEvent::Item(RealtimeItem::ToolCall(items::ToolCallItem {
                    item_id: item_id.clone(),
                    previous_item_id: None,
                    call_id: call_id.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                    output: None,
                    status: ItemStatus::Completed,
                }));
                // The response id is that of the utterance the call is placed in.
                let call = ModelEvent::FunctionCall {
                    call_id,
                    name,
                    arguments,
                    item_id,
                    response_id: String::new(),
                };
                self.turns.call([item, call], q);
            }
            "response.completed"
            | "response.failed"
            | "response.incomplete"
            | "response.cancelled" => {
                self.running.remove(&response_id);
                if kind == "response.failed" {
                    // A failed response's calls are discarded: their outputs would be refused.
                    self.open_calls.retain(|_, r| *r != response_id);
                }
                if let Some(u) = event.pointer("/response/usage") {
                    let n = |key: &str| u.get(key).and_then(Value::as_u64).unwrap_or(0);
                    let usage = Usage {
                        requests: 1,
                        input_tokens: n("input_tokens"),
                        output_tokens: n("output_tokens"),
                        total_tokens: n("total_tokens"),
                        cached_tokens: u
                            .pointer("/input_tokens_details/cached_tokens")
                            .and_then(Value::as_u64)
                            .unwrap_or(0),
                        ..Usage::default()
                    };
                    *self.backend_usage.get_or_insert_with(Usage::default) += usage;
                }
                self.maybe_continue(q);
            }
            _ => {}
        }
    }
}

impl WireProtocol for Protocol {
    fn command(&mut self, command: ModelCommand, q: &mut Queues) {
        match command {
            ModelCommand::Audio { audio, commit: _ } => {
                // No commit on Live: the model ends turns itself. Audio before
                // `session.started` waits for it (what would not fit in the held frames'
                // bound, about 15 s of PCM16 at 24 kHz, is dropped).
                let over = !self.started && self.held_bytes + audio.len() * 4 / 3 > MAX_HELD_BYTES;
                if audio.is_empty() || over {
                    return;
                }
                // Hot path: one allocation, no JSON serializer (base64 needs no escaping).
                const HEAD: &str = r#"{"type":"session.input_audio.append","audio":""#;
                let mut text = String::with_capacity(HEAD.len() + audio.len().div_ceil(3) * 4 + 2);
                text.push_str(HEAD);
                BASE64.encode_append(&audio, &mut text);
                text.push_str("\"}");
                if self.started {
                    q.push_text(text);
                } else {
                    self.send(q, text);
                }
            }
            ModelCommand::UserMessage { message, respond } => {
                self.user_message(q, message.content, respond)
            }
            ModelCommand::ToolOutput {
                call_id, output, ..
            } => self.tool_output(q, call_id, output),
            ModelCommand::CreateResponse => self.respond(q),
            ModelCommand::Interrupt { .. } => {
                // Nothing to cancel or truncate on Live: the model stops by itself once it
                // hears the user. The utterance ends here; what the model still says of it is
                // not delivered.
                self.turns.interrupt(q);
            }
            ModelCommand::UpdateSession(settings) => self.update_session(q, &settings),
            ModelCommand::CreateItem { item, .. } => self.create_item(q, *item),
            ModelCommand::DeleteItem { item_id } => {
                q.event(ModelEvent::Error(Error::Protocol(format!(
                    "the Live API's context is append-only: item `{item_id}` stays in the \
                     model's context"
                ))));
            }
            ModelCommand::Raw(value) => self.send(q, value.to_string()),
        }
    }

    fn on_text(&mut self, text: Utf8Bytes, q: &mut Queues) {
        let decoded = serde_json::from_str::<Frame<'_>>(&text);
        match decoded {
            Ok(frame) => {
                // The raw event first, as the Realtime backend does.
                q.event(ModelEvent::Raw(RawServerEvent::from(text.clone())));
                self.on_frame(frame, q);
            }
            Err(e) => {
                tracing::warn!(error = %e, "undecodable Live server event");
                q.event(ModelEvent::Raw(RawServerEvent::from(text.clone())));
                q.event(ModelEvent::Error(Error::Protocol(format!(
                    "undecodable Live server event: {e}"
                ))));
            }
        }
    }

    #[inline]
    fn before_write(&mut self, q: &mut Queues) {
        if let Some(mut start) = self.start.take() {
            if let Some(Value::Array(input)) =
                start.get_mut("session").and_then(|s| s.get_mut("input"))
            {
                // The newest messages the API accepts.
                let excess = input.len().saturating_sub(MAX_INPUT_ITEMS);
                input.drain(..excess);
            }
            q.push_text(Value::Object(start).to_string());
        }
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(&self.config.delegation)
    }

    fn on_close(&mut self, q: &mut Queues) -> bool {
        self.closing = true;
        if !self.started {
            return false;
        }
        q.push_text(r#"{"type":"session.close"}"#.to_owned());
        true
    }
}

fn missing(event: &str, field: &str) -> ModelEvent {
    ModelEvent::Error(Error::Protocol(format!("Live `{event}` without `{field}`")))
}

fn server_error(error: Option<WireError>) -> ServerError {
    let error = error.unwrap_or(WireError {
        kind: None,
        code: None,
        message: None,
        param: None,
        client_event_id: None,
    });
    ServerError {
        kind: error.kind.unwrap_or_else(|| "error".into()),
        code: error.code,
        message: error.message.unwrap_or_default(),
        param: error.param,
        event_id: error.client_event_id,
    }
}

/// The session's `delegation` object.
fn delegation_json(delegation: &LiveDelegation, tools: &[ToolSpec]) -> Value {
    match delegation {
        LiveDelegation::Client { .. } => json!({"type": "client"}),
        LiveDelegation::Responses {
            model,
            instructions,
        } => {
            let mut responses = json!({"model": model, "tools": function_tools(tools)});
            if let Some(instructions) = instructions {
                responses["instructions"] = Value::String(instructions.clone());
            }
            json!({"type": "responses", "responses": responses})
        }
    }
}

fn function_tools(tools: &[ToolSpec]) -> Value {
    tools
        .iter()
        .map(|t| {
            json!({"type": "function", "name": t.name, "description": t.description,
                   "parameters": t.parameters})
        })
        .collect()
}

/// The frontend instructions: the agent's, and under client delegation a line naming the
/// tasks the application takes (so the model knows when to delegate).
fn full_instructions(config: &Config, instructions: Option<&str>, tools: &[ToolSpec]) -> String {
    let mut text = instructions.unwrap_or_default().trim_end().to_owned();
    if let LiveDelegation::Client { .. } = config.delegation {
        if !tools.is_empty() && !text.contains(super::DELEGATE_LINE) {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(super::DELEGATE_LINE);
            text.push(' ');
            let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
            text.push_str(&names.join(", "));
            for tool in tools {
                text.push_str(&format!("\n- {}: {}", tool.name, tool.description));
            }
        }
    }
    text
}

/// A history item as Live's text history: its role and text (`None`: nothing to say).
fn history_text(item: &RealtimeItem) -> Option<(&'static str, String)> {
    match item {
        RealtimeItem::Message(m) => {
            let text = m.text();
            if text.trim().is_empty() {
                return None;
            }
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::System => "developer",
            };
            Some((role, text))
        }
        RealtimeItem::ToolCall(t) => {
            let output = t.output.as_deref().unwrap_or("(no output)");
            Some((
                "developer",
                format!("Tool `{}`({}) returned: {output}", t.name, t.arguments),
            ))
        }
    }
}

/// Text cut into appendable pieces, at whitespace where possible.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > APPEND_BYTES {
        let mut cut = APPEND_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(space) = rest[..cut].rfind(char::is_whitespace) {
            if space > APPEND_BYTES / 2 {
                cut = space;
            }
        }
        out.push(&rest[..cut]);
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_spaces_into_appendable_pieces() {
        let text = "word ".repeat(1000);
        let parts = pieces(text.trim());
        assert!(parts.len() >= 3);
        assert!(
            parts
                .iter()
                .all(|p| p.len() <= APPEND_BYTES && !p.is_empty())
        );
        assert_eq!(parts.join(" "), text.trim());
        assert_eq!(pieces("short"), ["short"]);
    }

    #[test]
    fn formats_round_trip() {
        for format in [
            AudioFormat::PCM16_24K,
            AudioFormat::Pcm16 { rate: 16_000 },
            AudioFormat::G711Ulaw,
            AudioFormat::G711Alaw,
        ] {
            let wire: WireFormat = serde_json::from_value(format_json(format)).unwrap();
            assert_eq!(parse_format(&wire), Some(format));
        }
    }
}
