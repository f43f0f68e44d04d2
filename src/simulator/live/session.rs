//! The session's life: `session.start` (strict config), `session.update`, the appends, input
//! audio and the user's turns, and `session.close`.

use base64_simd::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::delegation::Mode;
use super::{LiveState, Rejection, missing};
use crate::audio::AudioFormat;
use crate::simulator::brain::Turn;
use crate::simulator::hearing::{InputAudio, VadEvent, transcribe};
use crate::simulator::outgoing::Events;

/// Fields `session.start`'s `session` may have.
const START_FIELDS: &[&str] = &[
    "model",
    "instructions",
    "audio",
    "delegation",
    "input",
    "triggers",
    "store",
    "safety_identifier",
    "client",
];

fn unknown(param: String) -> Rejection {
    (
        "unknown_parameter",
        format!("Unknown parameter: '{param}'."),
        Some(param),
    )
}

fn parse_format(format: &Value) -> Result<AudioFormat, Rejection> {
    let invalid = |why: &str| {
        (
            "invalid_value",
            format!("Invalid 'session.audio.format': {why}."),
            Some("session.audio.format".to_owned()),
        )
    };
    let rate = format.get("rate").and_then(Value::as_u64);
    match format.get("type").and_then(Value::as_str) {
        Some("audio/pcm") => match rate {
            Some(rate @ (16_000 | 24_000)) => Ok(AudioFormat::Pcm16 { rate: rate as u32 }),
            _ => Err(invalid("PCM takes a rate of 16000 or 24000")),
        },
        Some("audio/pcmu") => Ok(AudioFormat::G711Ulaw),
        Some("audio/pcma") => Ok(AudioFormat::G711Alaw),
        _ => Err(invalid("expected audio/pcm, audio/pcmu or audio/pcma")),
    }
}

impl LiveState {
    /// `session.start`: checks the config, starts the session, answers `session.started`.
    pub(super) fn start(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        if self.session.is_some() {
            return Err((
                "session_already_started",
                "The session has already started.".to_owned(),
                Some("type".to_owned()),
            ));
        }
        let Some(config) = value.get("session").and_then(Value::as_object) else {
            return Err(missing("session"));
        };
        if let Some(field) = config.keys().find(|k| !START_FIELDS.contains(&k.as_str())) {
            return Err(unknown(format!("session.{field}")));
        }
        let Some(model) = config.get("model").and_then(Value::as_str) else {
            return Err(missing("session.model"));
        };
        let audio = config.get("audio").and_then(Value::as_object);
        let format = match audio.and_then(|a| a.get("format")) {
            Some(format) => parse_format(format)?,
            None => AudioFormat::PCM16_24K,
        };
        let voice = audio
            .and_then(|a| a.get("output"))
            .and_then(|o| o.get("voice"))
            .cloned()
            .unwrap_or_else(|| Value::from("marin"));
        let delegation = config.get("delegation").cloned().unwrap_or(Value::Null);
        let mode = Mode::parse(&delegation)?;
        let mut turns = Vec::new();
        for item in config
            .get("input")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = item
                .pointer("/content/0/text")
                .and_then(Value::as_str)
                .unwrap_or_default();
            turns.push(match item.get("role").and_then(Value::as_str) {
                Some("user") => Turn::User(text.to_owned()),
                _ => Turn::Other,
            });
        }
        self.instructions = config
            .get("instructions")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.voice = match &voice {
            Value::String(name) => name.clone(),
            other => other
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("marin")
                .to_owned(),
        };
        self.format = format;
        self.input = InputAudio::new(format);
        self.turns = turns;
        self.delegation.set_mode(mode, &delegation);
        let expires_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 3600)
            .unwrap_or_default();
        let id = self.id("sess_live");
        let mut session = Map::new();
        session.insert("id".into(), Value::from(id));
        session.insert("expires_at".into(), Value::from(expires_at));
        session.insert("model".into(), Value::from(model));
        session.insert("status".into(), Value::from("active"));
        session.insert(
            "audio".into(),
            json!({"format": crate::model::live::format_json(format), "output": {"voice": voice}}),
        );
        session.insert(
            "delegation".into(),
            if delegation.is_null() {
                json!({"type": "client"})
            } else {
                delegation
            },
        );
        session.insert(
            "instructions".into(),
            Value::from(self.instructions.clone()),
        );
        session.insert(
            "input".into(),
            config.get("input").cloned().unwrap_or_else(|| json!([])),
        );
        let session = Value::Object(session);
        self.session = Some(session.clone());
        self.started_at = tokio::time::Instant::now();
        out.push(json!({"type": "session.started", "session": session}));
        Ok(())
    }

    /// `session.update`: delegation settings (same type) and triggers only.
    pub(super) fn update(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        let Some(config) = value.get("session").and_then(Value::as_object) else {
            return Err(missing("session"));
        };
        if let Some(field) = config
            .keys()
            .find(|k| !matches!(k.as_str(), "delegation" | "triggers"))
        {
            return Err((
                "immutable_field_update",
                format!("'session.{field}' cannot change after the session started."),
                Some(format!("session.{field}")),
            ));
        }
        if let Some(delegation) = config.get("delegation") {
            self.delegation.update(delegation)?;
            if let Some(session) = self.session.as_mut() {
                session["delegation"] = self.delegation.resolved();
            }
        }
        let session = self.session.clone().unwrap_or(Value::Null);
        out.push(json!({"type": "session.updated", "session": session}));
        Ok(())
    }

    /// The three appends: acknowledged on the output timeline, then acted on.
    pub(super) fn on_append(
        &mut self,
        kind: &str,
        value: &Value,
        out: &mut Events,
    ) -> Result<(), Rejection> {
        let content = value
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("content"))?
            .to_owned();
        let Some(delegation_id) = value.get("delegation_id") else {
            return Err(missing("delegation_id"));
        };
        let delegation_id = delegation_id.as_str().map(str::to_owned);
        if delegation_id.is_some() && self.delegation.mode() != Mode::Client {
            return Err((
                "invalid_value",
                "Non-null delegation IDs are only accepted with client delegation.".to_owned(),
                Some("delegation_id".to_owned()),
            ));
        }
        let at = self.output_ms as u64;
        let acked = kind.replace(".append", ".appended");
        out.push(json!({"type": acked, "start_ms": at, "end_ms": at}));
        match kind {
            "session.instructions.append" => {
                self.instructions.push('\n');
                self.instructions.push_str(&content);
            }
            "session.thinking.append" => {
                if let Some(text) = content.strip_prefix("user: ") {
                    self.turns.push(Turn::User(text.to_owned()));
                }
            }
            _ => match delegation_id {
                Some(id) => {
                    if self.delegation.answer_client(&id) {
                        self.turns.push(Turn::ToolOutput(content));
                        self.reply();
                    }
                }
                None => {
                    // Asked to speak: a typed request the model has not acted on yet may
                    // still be delegated.
                    let typed = match self.turns.last() {
                        Some(Turn::User(text)) => Some(text.clone()),
                        _ => None,
                    };
                    if !typed.is_some_and(|text| self.delegate(&text, out)) {
                        self.reply();
                    }
                }
            },
        }
        Ok(())
    }

    /// Input audio: the user's turns, found by energy detection.
    pub(super) fn append_audio(&mut self, audio: &str, out: &mut Events) -> Result<(), Rejection> {
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        let decoded = BASE64.decode_append(audio, &mut bytes);
        if decoded.is_ok() {
            if self.muted {
                // The model hears silence: the timeline goes on.
                let silence = match self.format {
                    AudioFormat::Pcm16 { .. } => 0,
                    AudioFormat::G711Ulaw => crate::audio::g711::ulaw_encode_sample(0),
                    AudioFormat::G711Alaw => crate::audio::g711::alaw_encode_sample(0),
                };
                bytes.fill(silence);
            }
            self.input.append(&bytes);
        }
        self.scratch = bytes;
        decoded.map_err(|e| {
            (
                "invalid_value",
                format!("Invalid 'audio': not valid base64 ({e})."),
                Some("audio".to_owned()),
            )
        })?;
        while let Some(event) = self.input.next_event(&self.detector) {
            if let VadEvent::Stopped { start, end } = event {
                let samples = self.input.take(start, end);
                let text = transcribe(&samples, self.format.sample_rate());
                let (from, to) = (self.input.ms(start), self.input.ms(end));
                self.heard(&text, from, to, out);
            }
        }
        Ok(())
    }

    /// The user's turn ended: its transcript, then the model's answer (cutting itself off if
    /// it was talking).
    fn heard(&mut self, text: &str, from: u64, to: u64, out: &mut Events) {
        let words: Vec<&str> = text.split_whitespace().collect();
        let step = (to.saturating_sub(from)) / words.len().max(1) as u64;
        for (i, word) in words.iter().enumerate() {
            let delta = if i == 0 {
                (*word).to_owned()
            } else {
                format!(" {word}")
            };
            let start = from + step * i as u64;
            out.push(
                json!({"type": "session.input_transcript.delta", "delta": delta,
                "start_ms": start, "end_ms": start + step}),
            );
        }
        self.stop_talking();
        self.turns.push(Turn::User(text.to_owned()));
        if !self.delegate(text, out) {
            self.reply();
        }
    }

    /// Says the shared rules' answer to the conversation so far.
    pub(super) fn reply(&mut self) {
        let plan = crate::simulator::brain::plan(
            &self.turns,
            &self.instructions,
            &[],
            &Value::from("none"),
            false,
        );
        if let crate::simulator::brain::Plan::Speak(text) = plan {
            self.say(text);
        }
    }

    /// `session.closed`, after which the connection ends.
    pub(super) fn close(&mut self, reason: &str, out: &mut Events) {
        let session = self.session.clone().unwrap_or(Value::Null);
        out.push(
            json!({"type": "session.closed", "reason": reason, "session": session,
            "usage": self.usage()}),
        );
        self.speaking = None;
        self.queued.clear();
        self.closed = true;
    }

    /// Cumulative usage: whole seconds since the start.
    pub(super) fn usage(&self) -> Value {
        json!({"seconds": self.started_at.elapsed().as_secs()})
    }
}
