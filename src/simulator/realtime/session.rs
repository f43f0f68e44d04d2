//! The session and the input audio: `session.update`, turn detection (server VAD on the
//! shared speech detector), the input audio buffer (`append`, `commit`, `clear`), committed
//! user audio with its transcription, and the idle timeout.

use base64_simd::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::ConnectionState;
use super::errors::{Rejection, error_event, invalid, missing};
use super::items::StoredItem;
use super::session_config;
use crate::audio::AudioFormat;
use crate::simulator::hearing::{InputAudio, SpeechDetector, VadEvent, transcribe};
use crate::simulator::outgoing::Events;

/// The session's turn detection (`audio.input.turn_detection`), when on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Vad {
    detector: SpeechDetector,
    pub(super) create_response: bool,
    interrupt_response: bool,
    pub(super) idle_timeout_ms: Option<u64>,
}

impl Vad {
    /// The session's turn detection, `None` when `turn_detection` is null.
    pub(super) fn from_session(session: &Value) -> Option<Self> {
        let td = session["audio"]["input"].get("turn_detection")?;
        let kind = td.get("type")?.as_str()?;
        let threshold = td
            .get("threshold")
            .and_then(Value::as_f64)
            .unwrap_or(0.5)
            .clamp(0.0, 1.0);
        let silence_ms = match kind {
            "semantic_vad" => match td.get("eagerness").and_then(Value::as_str) {
                Some("high") => 250,
                Some("low") => 900,
                _ => 500,
            },
            _ => td
                .get("silence_duration_ms")
                .and_then(Value::as_u64)
                .unwrap_or(500),
        };
        let prefix_ms = td
            .get("prefix_padding_ms")
            .and_then(Value::as_u64)
            .unwrap_or(300);
        Some(Self {
            detector: SpeechDetector::new(threshold, prefix_ms, silence_ms.max(20)),
            create_response: td
                .get("create_response")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            interrupt_response: td
                .get("interrupt_response")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            idle_timeout_ms: (kind == "server_vad")
                .then(|| td.get("idle_timeout_ms").and_then(Value::as_u64))
                .flatten()
                .filter(|&ms| ms > 0),
        })
    }
}

impl ConnectionState {
    pub(super) fn vad(&self) -> Option<Vad> {
        self.vad
    }

    /// When the idle timeout fires, if armed.
    pub(super) fn idle_deadline(&self) -> Option<Instant> {
        self.idle_deadline
    }

    pub(super) fn session_update(
        &mut self,
        value: &Value,
        out: &mut Events,
    ) -> Result<(), Rejection> {
        let merged =
            session_config::apply_update(&self.session, value.get("session"), self.produced_audio)?;
        let old_format = self.session["audio"]["input"]["format"].clone();
        self.session = merged;
        self.vad = Vad::from_session(&self.session);
        if self.session["audio"]["input"]["format"] != old_format {
            let format = session_config::parse_format(&self.session["audio"]["input"]["format"])
                .unwrap_or(AudioFormat::PCM16_24K);
            self.input = InputAudio::new(format);
            self.speech_item = None;
        }
        match self.vad() {
            None => {
                self.input.forget_speech();
                self.speech_item = None;
                self.idle_deadline = None;
            }
            Some(vad) if vad.idle_timeout_ms.is_none() => self.idle_deadline = None,
            Some(_) => {}
        }
        out.push(json!({"type": "session.updated", "session": self.session.clone()}));
        Ok(())
    }

    pub(super) fn append(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        let audio = value
            .get("audio")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("audio"))?;
        self.append_base64(audio, out)
    }

    /// An `input_audio_buffer.append` whose `audio` the connection read without building a JSON
    /// tree (the hot path of a voice session).
    pub(super) fn on_append(&mut self, audio: &str, event_id: Option<&str>, out: &mut Events) {
        if let Err((code, message, param)) = self.append_base64(audio, out) {
            out.push(error_event(code, message, param, event_id));
        }
    }

    fn append_base64(&mut self, audio: &str, out: &mut Events) -> Result<(), Rejection> {
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        let decoded = BASE64.decode_append(audio, &mut bytes);
        if decoded.is_ok() {
            self.input.append(&bytes);
        }
        self.scratch = bytes;
        decoded
            .map_err(|e| invalid("audio", format!("Invalid 'audio': not valid base64 ({e}).")))?;
        let Some(vad) = self.vad() else {
            return Ok(());
        };
        while let Some(event) = self.input.next_event(&vad.detector) {
            match event {
                VadEvent::Started { start } => {
                    let item_id = self.item_id();
                    self.speech_item = Some(item_id.clone());
                    self.idle_deadline = None;
                    out.push(json!({
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": self.input.ms(start),
                        "item_id": item_id,
                    }));
                    if vad.interrupt_response
                        && self.response.as_ref().is_some_and(|r| r.in_conversation)
                    {
                        self.cancel_response("turn_detected", out);
                    }
                }
                VadEvent::Stopped { start, end } => {
                    let item_id = self.speech_item.take().unwrap_or_else(|| self.item_id());
                    out.push(json!({
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": self.input.ms(end),
                        "item_id": item_id,
                    }));
                    let samples = self.input.take(start, end);
                    self.commit_user_audio(item_id, &samples, false, out);
                    if vad.create_response {
                        if self.response.is_some() {
                            self.pending_auto_response = true;
                        } else {
                            self.start_response(None, out);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn commit(&mut self, out: &mut Events) -> Result<(), Rejection> {
        let buffered = self.input.buffered_ms();
        if buffered < 100.0 {
            return Err((
                "input_audio_buffer_commit_empty",
                format!(
                    "Error committing input audio buffer: buffer too small. Expected at least 100ms \
                     of audio, but buffer only has {buffered:.2}ms of audio."
                ),
                None,
            ));
        }
        let item_id = self.speech_item.take().unwrap_or_else(|| self.item_id());
        let samples = self.input.take_all();
        self.commit_user_audio(item_id, &samples, false, out);
        Ok(())
    }

    /// `input_audio_buffer.committed`, the user item, and its transcription when configured.
    fn commit_user_audio(
        &mut self,
        item_id: String,
        samples: &[i16],
        idle: bool,
        out: &mut Events,
    ) {
        let previous = self.last_item_id();
        out.push(json!({
            "type": "input_audio_buffer.committed",
            "item_id": item_id,
            "previous_item_id": previous,
        }));
        let item = json!({
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": null}],
        });
        let rate = self.input.format().sample_rate();
        let mut stored = StoredItem::new(item.clone());
        stored.idle = idle;
        stored.input_audio_ms = samples.len() as f64 * 1000.0 / f64::from(rate);
        let transcript = (!idle).then(|| transcribe(samples, rate));
        stored.understood = transcript.clone();
        self.items.push(stored);
        out.push(
            json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item}),
        );
        out.push(
            json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item}),
        );
        let transcription = &self.session["audio"]["input"]["transcription"];
        if let (Some(transcript), false) = (transcript, transcription.is_null()) {
            if let Some(stored) = self.items.last_mut() {
                stored.json["content"][0]["transcript"] = Value::from(transcript.clone());
            }
            out.push(json!({
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": transcript,
                "usage": {"type": "duration", "seconds": (samples.len() as f64 / f64::from(rate) * 10.0).round() / 10.0},
            }));
        }
    }

    /// The idle timeout fired.
    pub(super) fn on_idle_timeout(&mut self, out: &mut Events) {
        self.idle_deadline = None;
        let Some(vad) = self.vad() else {
            return;
        };
        if self.response.is_some() || self.input.in_speech() {
            return;
        }
        let item_id = self.item_id();
        let at = self.input.ms(self.input.end());
        out.push(json!({
            "type": "input_audio_buffer.timeout_triggered",
            "item_id": item_id,
            "audio_start_ms": at,
            "audio_end_ms": at,
        }));
        self.input.clear();
        self.commit_user_audio(item_id, &[], true, out);
        if vad.create_response {
            self.start_response(None, out);
        }
    }
}
