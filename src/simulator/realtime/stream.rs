//! Streaming the active response: running its steps when due (message start, transcript or
//! text deltas, audio deltas, function calls), then ending the message and the response
//! (`response.done`, usage, `rate_limits.updated`), or cancelling it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::ConnectionState;
use super::items::AudioTrack;
use super::response::{Response, Step, tokens_for_text};
use crate::simulator::outgoing::{Due, Events, Outgoing};

impl ConnectionState {
    /// When the active response's next step is due.
    pub(super) fn next_due(&self) -> Option<Due> {
        let r = self.response.as_ref()?;
        let (offset_ms, step) = r.steps.front()?;
        let paced = (self.speed > 0.0)
            .then(|| r.start + Duration::from_secs_f64(offset_ms / 1000.0 / self.speed));
        // The tool delay is wall-clock time, not media time: `speed` does not scale it.
        let held = r.done_not_before.filter(|_| *step == Step::Done);
        Some(
            paced
                .into_iter()
                .chain(held)
                .max()
                .map_or(Due::Now, Due::At),
        )
    }

    /// Runs the active response's next step.
    pub(super) fn advance(&mut self, out: &mut Events) {
        let Some(step) = self
            .response
            .as_mut()
            .and_then(|r| r.steps.pop_front())
            .map(|(_, s)| s)
        else {
            return;
        };
        let Some(mut r) = self.response.take() else {
            return;
        };
        let rid = r.id.clone();
        match step {
            Step::MessageStart => {
                if let Some(m) = r.message.as_mut() {
                    m.output_index = r.output.len();
                    // The ids are the simulator's own (`resp_N`, `item_N`): nothing to escape.
                    m.delta_fields = Arc::from(format!(
                        r#""response_id":"{rid}","item_id":"{}","output_index":{},"content_index":0,"#,
                        m.item_id, m.output_index
                    ));
                    let item = Self::message_item(m, r.audio, "in_progress");
                    m.started = true;
                    out.push(json!({"type": "response.output_item.added", "response_id": rid, "output_index": m.output_index, "item": item}));
                    if r.in_conversation {
                        let previous = self.upsert_item(item.clone(), None);
                        out.push(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item}));
                    }
                    let part = if r.audio {
                        json!({"type": "audio", "transcript": ""})
                    } else {
                        json!({"type": "text", "text": ""})
                    };
                    out.push(json!({"type": "response.content_part.added", "response_id": rid, "item_id": m.item_id,
                        "output_index": m.output_index, "content_index": 0, "part": part}));
                }
            }
            Step::Word(i) => {
                if let Some(m) = r.message.as_mut() {
                    let delta = m.words[i].1.clone();
                    m.text_sent.push_str(&delta);
                    let kind = if r.audio {
                        "response.output_audio_transcript.delta"
                    } else {
                        "response.output_text.delta"
                    };
                    out.push(
                        json!({"type": kind, "response_id": rid, "item_id": m.item_id,
                        "output_index": m.output_index, "content_index": 0, "delta": delta}),
                    );
                }
            }
            Step::Audio(k) => {
                if let Some((m, speech)) = r
                    .message
                    .as_mut()
                    .and_then(|m| m.speech.clone().map(|s| (m, s)))
                {
                    m.audio_sent = speech.bytes_through(k);
                    self.produced_audio = true;
                    out.0.push(Outgoing::AudioDelta {
                        kind: "response.output_audio.delta",
                        fields: m.delta_fields.clone(),
                        speech,
                        chunk: k,
                    });
                }
            }
            Step::MessageEnd => {
                let status = if r.limited { "incomplete" } else { "completed" };
                self.finish_message(&mut r, status, out);
            }
            Step::Call(i) => {
                let output_index = r.output.len();
                let c = &r.calls[i];
                let mut item = json!({"id": c.item_id, "object": "realtime.item", "type": "function_call",
                    "status": "in_progress", "name": c.name, "call_id": c.call_id, "arguments": ""});
                out.push(json!({"type": "response.output_item.added", "response_id": rid, "output_index": output_index, "item": item}));
                if r.in_conversation {
                    let previous = self.upsert_item(item.clone(), None);
                    out.push(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item}));
                }
                let chars: Vec<char> = c.arguments.chars().collect();
                let pieces = if chars.len() <= 8 { 1 } else { 3 };
                let size = chars.len().div_ceil(pieces).max(1);
                for piece in chars.chunks(size) {
                    out.push(
                        json!({"type": "response.function_call_arguments.delta", "response_id": rid,
                        "item_id": c.item_id, "output_index": output_index, "call_id": c.call_id,
                        "delta": piece.iter().collect::<String>()}),
                    );
                }
                out.push(
                    json!({"type": "response.function_call_arguments.done", "response_id": rid,
                    "item_id": c.item_id, "output_index": output_index, "call_id": c.call_id,
                    "name": c.name, "arguments": c.arguments}),
                );
                item["status"] = Value::from("completed");
                item["arguments"] = Value::from(c.arguments.clone());
                out.push(json!({"type": "response.output_item.done", "response_id": rid, "output_index": output_index, "item": item}));
                if r.in_conversation {
                    let previous = self.upsert_item(item.clone(), None);
                    out.push(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item}));
                }
                r.output.push(item);
                if !self.tool_done_delay.is_zero() {
                    // Counted from this call's last event; a later call restarts it.
                    r.done_not_before = Some(Instant::now() + self.tool_done_delay);
                }
            }
            Step::Done => {
                if r.limited {
                    let details = json!({"type": "incomplete", "reason": "max_output_tokens"});
                    self.finish_response(r, "incomplete", details, out);
                } else {
                    self.finish_response(r, "completed", Value::Null, out);
                }
                return;
            }
        }
        self.response = Some(r);
    }

    /// Ends the response's message (completed, or incomplete when cancelled).
    fn finish_message(&mut self, r: &mut Response, status: &str, out: &mut Events) {
        let rid = r.id.clone();
        let Some(m) = r.message.as_mut().filter(|m| m.started && !m.finished) else {
            return;
        };
        m.finished = true;
        let index = m.output_index;
        if r.audio {
            out.push(json!({"type": "response.output_audio.done", "response_id": rid, "item_id": m.item_id,
                "output_index": index, "content_index": 0}));
            out.push(json!({"type": "response.output_audio_transcript.done", "response_id": rid, "item_id": m.item_id,
                "output_index": index, "content_index": 0, "transcript": m.text_sent}));
            out.push(json!({"type": "response.content_part.done", "response_id": rid, "item_id": m.item_id,
                "output_index": index, "content_index": 0, "part": {"type": "audio", "transcript": m.text_sent}}));
        } else {
            out.push(json!({"type": "response.output_text.done", "response_id": rid, "item_id": m.item_id,
                "output_index": index, "content_index": 0, "text": m.text_sent}));
            out.push(json!({"type": "response.content_part.done", "response_id": rid, "item_id": m.item_id,
                "output_index": index, "content_index": 0, "part": {"type": "text", "text": m.text_sent}}));
        }
        let item = Self::message_item(m, r.audio, status);
        out.push(json!({"type": "response.output_item.done", "response_id": rid, "output_index": index, "item": item}));
        r.output.push(item.clone());
        if r.in_conversation {
            let mut stored = item;
            let mut track = None;
            if r.audio {
                let mut produced = r.format.bytes_to_ms(m.audio_sent);
                if let Some(cut) = m.truncated_at {
                    // Truncated while streaming: the conversation keeps the cut audio and,
                    // as the real API does, no transcript (the model must not "remember"
                    // words the user never heard). The response events above still carry
                    // what was generated; the conversation event below shows the stored item.
                    produced = produced.min(cut);
                    stored["content"][0]["transcript"] = Value::from("");
                }
                track = Some(AudioTrack {
                    produced_ms: produced,
                });
            }
            let previous = self.upsert_item(stored.clone(), track);
            out.push(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": stored}));
        }
    }

    pub(super) fn finish_response(
        &mut self,
        mut r: Response,
        status: &str,
        details: Value,
        out: &mut Events,
    ) {
        let (text_tokens, audio_tokens) = match &r.message {
            Some(m) => (
                tokens_for_text(&m.text_sent),
                if r.audio {
                    (r.format.bytes_to_ms(m.audio_sent) / 50.0).round() as u64
                } else {
                    0
                },
            ),
            None => (
                r.calls
                    .iter()
                    .map(|c| tokens_for_text(&c.arguments) + 5)
                    .sum::<u64>(),
                0,
            ),
        };
        let input_tokens = r.input_text_tokens + r.input_audio_tokens;
        let cached = if self.last_input_tokens >= 1024 {
            self.last_input_tokens.min(input_tokens) / 64 * 64
        } else {
            0
        };
        self.last_input_tokens = input_tokens;
        let output_tokens = text_tokens + audio_tokens;
        let usage = json!({
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {
                "text_tokens": r.input_text_tokens,
                "audio_tokens": r.input_audio_tokens,
                "image_tokens": 0,
                "cached_tokens": cached,
                "cached_tokens_details": {"text_tokens": cached, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        });
        r.steps.clear();
        out.push(json!({"type": "response.done", "response": Self::response_json(&r, status, details, Some(usage))}));
        let total = input_tokens + output_tokens;
        out.push(json!({"type": "rate_limits.updated", "rate_limits": [
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": 40000, "remaining": 40000u64.saturating_sub(total),
             "reset_seconds": (total as f64 * 60.0 / 40000.0 * 1000.0).round() / 1000.0},
        ]}));
        self.response = None;
        if status == "completed" {
            if let Some(ms) = self.vad().and_then(|v| v.idle_timeout_ms) {
                self.idle_deadline = Some(Instant::now() + Duration::from_millis(ms));
            }
        }
        if std::mem::take(&mut self.pending_auto_response) {
            self.start_response(None, out);
        }
    }

    /// Cancels the active response (`reason`: `client_cancelled` or `turn_detected`).
    pub(super) fn cancel_response(&mut self, reason: &str, out: &mut Events) {
        let Some(mut r) = self.response.take() else {
            return;
        };
        self.finish_message(&mut r, "incomplete", out);
        self.finish_response(
            r,
            "cancelled",
            json!({"type": "cancelled", "reason": reason}),
            out,
        );
    }
}
