//! The OpenAI Realtime GA protocol: one connection's simulated session.
//!
//! [`ConnectionState`] is the connection's [`Machine`]: the connection loop feeds it client
//! frames and the clock, and it pushes the server events to send. Its handlers are grouped by
//! concern: [`session`] (`session.update`, server VAD, the input audio buffer, the idle
//! timeout), [`items`] (the conversation), [`truncate`], [`response`] (`response.create`,
//! planning with the shared [`brain`](super::brain)), [`stream`] (streaming and ending a
//! response) and [`errors`]. The behaviour is documented in [the simulator's
//! docs](crate::simulator).

mod errors;
mod items;
mod response;
mod session;
mod session_config;
mod stream;
#[cfg(test)]
mod tests;
mod truncate;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::Response as UpgradeResponse;
use tokio_tungstenite::tungstenite::http;

use self::errors::{error_event, invalid, missing};
use self::items::StoredItem;
use self::response::Response;
use super::Shared;
use super::connection::{Machine, peek_audio_append, query_param};
use super::hearing::InputAudio;
use super::outgoing::{Due, Events};
use crate::audio::AudioFormat;
use crate::protocol::ClientEvent;

const DEFAULT_MODEL: &str = "gpt-realtime";

/// Selects the `realtime` subprotocol when the client offers it.
pub(crate) fn answer_upgrade(offered: &[String], response: &mut UpgradeResponse) {
    if offered.iter().any(|p| p == "realtime") {
        response.headers_mut().insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static("realtime"),
        );
    }
}

/// One connection's simulated session.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    /// Audio pacing ([`SimulatorBuilder::speed`](crate::simulator::SimulatorBuilder::speed)).
    speed: f64,
    tool_done_delay: Duration,
    /// Ids are numbered per connection: `item_<n>`, `resp_<n>`, `call_<n>`.
    next_item: u64,
    next_response: u64,
    next_call: u64,
    /// The effective session, as `session.updated` shows it.
    session: Value,
    /// Its turn detection, read once per `session.update` rather than on every audio append.
    vad: Option<session::Vad>,
    conversation_id: String,
    items: Vec<StoredItem>,
    input: InputAudio,
    /// The item id announced by `speech_started`, used again when the speech is committed.
    speech_item: Option<String>,
    response: Option<Response>,
    /// VAD committed a turn while a response was active: answer it when that one ends.
    pending_auto_response: bool,
    /// Assistant audio went out: the voice can no longer change.
    produced_audio: bool,
    /// When the server-VAD idle timeout fires, if armed.
    idle_deadline: Option<Instant>,
    /// The previous response's input tokens, for the cached-token estimate.
    last_input_tokens: u64,
    /// Reused buffer for decoding audio appends.
    scratch: Vec<u8>,
}

impl ConnectionState {
    /// A connection accepted with this query string (`?model=`, default `gpt-realtime`): its
    /// state, paced as the simulator is, and its first event, `session.created`.
    pub(crate) fn open(query: &str, shared: &Shared) -> (Self, Events) {
        let model = query_param(query, "model").unwrap_or_else(|| DEFAULT_MODEL.to_string());
        tracing::debug!("simulator: realtime session with model {model}");
        let (state, created) = Self::new(&model, shared.speed);
        let mut out = Events::default();
        out.push(created);
        (state.with_tool_done_delay(shared.tool_done_delay), out)
    }

    /// A new connection's state and its first event, `session.created`.
    fn new(model: &str, speed: f64) -> (Self, Value) {
        let expires_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 3600)
            .unwrap_or_default();
        let session = session_config::default_session(model, "sess_1", expires_at);
        let created = json!({"type": "session.created", "session": session.clone()});
        let state = Self {
            speed,
            tool_done_delay: Duration::ZERO,
            next_item: 0,
            next_response: 0,
            next_call: 0,
            vad: session::Vad::from_session(&session),
            session,
            conversation_id: "conv_1".to_string(),
            items: Vec::new(),
            input: InputAudio::new(AudioFormat::PCM16_24K),
            speech_item: None,
            response: None,
            pending_auto_response: false,
            produced_audio: false,
            idle_deadline: None,
            last_input_tokens: 0,
            scratch: Vec::new(),
        };
        (state, created)
    }

    /// How long `response.done` of a response that only made function calls trails its last
    /// call (real servers trail by a few milliseconds; clients must not wait for it).
    fn with_tool_done_delay(mut self, delay: Duration) -> Self {
        self.tool_done_delay = delay;
        self
    }

    fn item_id(&mut self) -> String {
        loop {
            self.next_item += 1;
            let id = format!("item_{}", self.next_item);
            // A client may have created items with ids of this form (a conversation saved
            // from another connection): like the real API, never hand out an id in use.
            if self.find(&id).is_none() {
                return id;
            }
        }
    }

    /// Handles one client event.
    fn on_client_event(&mut self, value: &Value, out: &mut Events) {
        let event_id = value.get("event_id").and_then(Value::as_str);
        let kind = match value.get("type") {
            Some(Value::String(kind)) => kind.as_str(),
            Some(other) => {
                out.push(error_event(
                    "invalid_value",
                    format!("Invalid type for 'type': expected a string, but got {other}."),
                    Some("type".into()),
                    event_id,
                ));
                return;
            }
            None => {
                let (code, message, param) = if value.is_object() {
                    missing("type")
                } else {
                    invalid("", "Expected a JSON object.")
                };
                out.push(error_event(code, message, param, event_id));
                return;
            }
        };
        let result = match kind {
            "session.update" => self.session_update(value, out),
            "input_audio_buffer.append" => self.append(value, out),
            "input_audio_buffer.commit" => self.commit(out),
            "input_audio_buffer.clear" => {
                self.input.clear();
                self.speech_item = None;
                out.push(json!({"type": "input_audio_buffer.cleared"}));
                Ok(())
            }
            "conversation.item.create" => self.item_create(value, out),
            "conversation.item.retrieve" => self.item_retrieve(value, out),
            "conversation.item.delete" => self.item_delete(value, out),
            "conversation.item.truncate" => self.item_truncate(value, out),
            "response.create" => self.response_create(value, out),
            "response.cancel" => self.response_cancel(value, out),
            "output_audio_buffer.clear" => Err((
                "invalid_value",
                "output_audio_buffer.clear is only supported on WebRTC and SIP connections; \
                 on WebSocket, playback is the client's."
                    .to_string(),
                Some("type".to_string()),
            )),
            other => Err(invalid(
                "type",
                format!(
                    "Invalid value: '{other}'. Supported values are: {}.",
                    ClientEvent::TYPES
                        .iter()
                        .map(|t| format!("'{t}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        };
        if let Err((code, message, param)) = result {
            out.push(error_event(code, message, param, event_id));
        }
    }
}

impl Machine for ConnectionState {
    fn on_text(&mut self, text: &str, shared: &Shared, out: &mut Events) {
        if !shared.recording() {
            if let Some((audio, event_id)) = peek_audio_append(text, "input_audio_buffer.append") {
                self.on_append(&audio, event_id.as_deref(), out);
                return;
            }
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value) => {
                self.on_client_event(&value, out);
                shared.record(value);
            }
            Err(e) => out.push(error_event(
                "invalid_json",
                format!("The server could not parse the JSON of the event: {e}."),
                None,
                None,
            )),
        }
    }

    fn on_binary(&mut self, out: &mut Events) {
        out.push(error_event(
            "invalid_json",
            "Binary frames are not supported: send each event as a JSON text frame.",
            None,
            None,
        ));
    }

    fn next_due(&self) -> Option<Due> {
        ConnectionState::next_due(self)
    }

    fn advance(&mut self, out: &mut Events) {
        ConnectionState::advance(self, out);
    }

    fn timer(&self) -> Option<Instant> {
        self.idle_deadline()
    }

    fn on_timer(&mut self, out: &mut Events) {
        self.on_idle_timeout(out);
    }
}
