//! OpenAI's Live API (`/v1/live/sessions`): one connection's simulated Live session.
//!
//! [`LiveState`] is the connection's [`Machine`]; the shared parts decide what the simulated
//! model hears ([`hearing`](super::hearing)), answers ([`brain`](super::brain)) and says
//! ([`voice`](super::voice)). Handlers: [`session`] (start, update, appends, mute, close),
//! [`speaking`] (the output track) and [`delegation`] (client and Responses delegation).
//!
//! Its behaviour is documented in [the simulator's docs](crate::simulator) ("Live mode").

mod delegation;
mod session;
mod speaking;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use serde_json::{Value, json};
use tokio::time::Instant;

use self::delegation::Delegation;
use self::speaking::Utterance;
use super::Shared;
use super::brain::Turn;
use super::connection::{Machine, peek_audio_append};
use super::hearing::{InputAudio, SpeechDetector};
use super::outgoing::{Due, Events};
use crate::audio::AudioFormat;

/// The client events the simulator knows, for the error that lists them.
const CLIENT_EVENTS: &[&str] = &[
    "session.start",
    "session.update",
    "session.input_audio.append",
    "session.input_audio.mute",
    "session.input_audio.unmute",
    "session.instructions.append",
    "session.thinking.append",
    "session.commentary.append",
    "response.item.create",
    "response.create",
    "session.close",
];

/// An error event: code, message and the parameter it concerns.
type Rejection = (&'static str, String, Option<String>);

fn error_event(rejection: Rejection, client_event_id: Option<&str>) -> Value {
    let (code, message, param) = rejection;
    json!({"type": "error", "client_event_id": client_event_id, "error": {
        "type": "invalid_request_error", "code": code, "message": message, "param": param,
        "client_event_id": client_event_id}})
}

/// One connection's simulated Live session.
#[derive(Debug)]
pub(crate) struct LiveState {
    speed: f64,
    /// The resolved session (`session.started`), once started.
    session: Option<Value>,
    started_at: Instant,
    format: AudioFormat,
    voice: String,
    instructions: String,
    input: InputAudio,
    detector: SpeechDetector,
    muted: bool,
    /// What the model heard and said, for the shared rules.
    turns: Vec<Turn>,
    /// The utterance being streamed, and the ones waiting for it.
    speaking: Option<Utterance>,
    queued: VecDeque<String>,
    /// Milliseconds of output audio sent (the output timeline).
    output_ms: f64,
    delegation: Delegation,
    next_id: u64,
    /// `session.closed` went out: the connection ends.
    closed: bool,
    scratch: Vec<u8>,
}

impl LiveState {
    /// A new connection's state. The client speaks first: nothing is sent yet.
    pub(crate) fn open(shared: &Shared) -> (Self, Events) {
        let format = AudioFormat::PCM16_24K;
        let state = Self {
            speed: shared.speed,
            session: None,
            started_at: Instant::now(),
            format,
            voice: "marin".into(),
            instructions: String::new(),
            input: InputAudio::new(format),
            detector: SpeechDetector::new(0.5, 300, 500),
            muted: false,
            turns: Vec::new(),
            speaking: None,
            queued: VecDeque::new(),
            output_ms: 0.0,
            delegation: Delegation::default(),
            next_id: 0,
            closed: false,
            scratch: Vec::new(),
        };
        (state, Events::default())
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{}", self.next_id)
    }

    /// Handles one client event.
    fn on_client_event(&mut self, value: &Value, out: &mut Events) {
        let event_id = value.get("event_id").and_then(Value::as_str);
        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            let rejection = (
                "missing_required_parameter",
                "Missing required parameter: 'type'.".to_owned(),
                Some("type".to_owned()),
            );
            return out.push(error_event(rejection, event_id));
        };
        let result = match kind {
            "session.start" => self.start(value, out),
            _ if self.session.is_none() && CLIENT_EVENTS.contains(&kind) => Err((
                "session_not_started",
                "Send session.start first and wait for session.started.".to_owned(),
                None,
            )),
            "session.update" => self.update(value, out),
            "session.input_audio.append" => match value.get("audio").and_then(Value::as_str) {
                Some(audio) => self.append_audio(audio, out),
                None => Err(missing("audio")),
            },
            "session.input_audio.mute" => {
                self.muted = true;
                out.push(json!({"type": "session.input_audio.muted"}));
                Ok(())
            }
            "session.input_audio.unmute" => {
                self.muted = false;
                out.push(json!({"type": "session.input_audio.unmuted"}));
                Ok(())
            }
            "session.instructions.append"
            | "session.thinking.append"
            | "session.commentary.append" => self.on_append(kind, value, out),
            "response.item.create" => self.response_item_create(value),
            "response.create" => self.response_create(out),
            "session.close" => {
                self.close("close_requested", out);
                Ok(())
            }
            other => Err((
                "invalid_value",
                format!(
                    "Invalid value: '{other}'. Supported values are: {}.",
                    CLIENT_EVENTS
                        .iter()
                        .map(|t| format!("'{t}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some("type".to_owned()),
            )),
        };
        if let Err(rejection) = result {
            out.push(error_event(rejection, event_id));
        }
    }
}

fn missing(param: &str) -> Rejection {
    (
        "missing_required_parameter",
        format!("Missing required parameter: '{param}'."),
        Some(param.to_owned()),
    )
}

impl Machine for LiveState {
    fn on_text(&mut self, text: &str, shared: &Shared, out: &mut Events) {
        if !shared.recording() && self.session.is_some() {
            if let Some((audio, event_id)) = peek_audio_append(text, "session.input_audio.append") {
                if let Err(rejection) = self.append_audio(&audio, out) {
                    out.push(error_event(rejection, event_id.as_deref()));
                }
                return;
            }
        }
        match serde_json::from_str::<Value>(text) {
            Ok(value) => {
                self.on_client_event(&value, out);
                shared.record(value);
            }
            Err(e) => out.push(error_event(
                (
                    "invalid_json",
                    format!("The server could not parse the JSON of the event: {e}."),
                    None,
                ),
                None,
            )),
        }
    }

    fn on_binary(&mut self, out: &mut Events) {
        out.push(error_event(
            (
                "invalid_json",
                "Binary frames are not supported: send each event as a JSON text frame.".to_owned(),
                None,
            ),
            None,
        ));
    }

    fn next_due(&self) -> Option<Due> {
        self.speaking_due()
    }

    fn advance(&mut self, out: &mut Events) {
        self.speak_step(out);
    }

    fn timer(&self) -> Option<Instant> {
        None
    }

    fn on_timer(&mut self, _out: &mut Events) {}

    fn finished(&self) -> bool {
        self.closed
    }
}
