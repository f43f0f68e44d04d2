//! Starting a response: `response.create` and `response.cancel`, what the response will say
//! or call (decided by the shared [`crate::simulator::brain`]), and its plan of timed steps
//! ([`Step`]) that [`stream`](super::stream) then runs.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::ConnectionState;
use super::errors::{Rejection, invalid};
use super::session_config;
use crate::audio::AudioFormat;
use crate::simulator::brain::{self, Plan, Turn};
use crate::simulator::outgoing::Events;
use crate::simulator::voice::{DELTA_MS, Speech};

/// One step of a response, at its offset (media milliseconds) from the response's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Step {
    MessageStart,
    Word(usize),
    Audio(usize),
    MessageEnd,
    Call(usize),
    Done,
}

/// The response's message, as planned and as streamed so far.
#[derive(Debug)]
pub(super) struct MessagePlan {
    pub(super) item_id: String,
    pub(super) output_index: usize,
    /// Word start (ms) and its delta text.
    pub(super) words: Vec<(f64, String)>,
    /// The audio, for audio responses.
    pub(super) speech: Option<Arc<Speech>>,
    pub(super) started: bool,
    pub(super) finished: bool,
    pub(super) text_sent: String,
    pub(super) audio_sent: usize,
    /// A `conversation.item.truncate` received while the message was still streaming.
    pub(super) truncated_at: Option<f64>,
    /// The fields of this message's audio deltas, rendered once when it starts.
    pub(super) delta_fields: Arc<str>,
}

/// One function call of the response.
#[derive(Debug)]
pub(super) struct CallPlan {
    pub(super) item_id: String,
    pub(super) call_id: String,
    pub(super) name: String,
    pub(super) arguments: String,
}

/// The active response.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) id: String,
    pub(super) start: Instant,
    pub(super) steps: VecDeque<(f64, Step)>,
    /// Fields of the response object that do not change.
    pub(super) base: Map<String, Value>,
    pub(super) output: Vec<Value>,
    pub(super) in_conversation: bool,
    pub(super) audio: bool,
    pub(super) format: AudioFormat,
    pub(super) message: Option<MessagePlan>,
    pub(super) calls: Vec<CallPlan>,
    pub(super) input_text_tokens: u64,
    pub(super) input_audio_tokens: u64,
    /// `max_output_tokens` cut the message short.
    pub(super) limited: bool,
    /// `response.done` of a function-call response waits until then
    /// ([`SimulatorBuilder::tool_response_done_delay`](crate::simulator::SimulatorBuilder::tool_response_done_delay)).
    pub(super) done_not_before: Option<Instant>,
}

/// Text tokens, estimated: one per 4 characters.
pub(super) fn tokens_for_text(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

impl ConnectionState {
    pub(super) fn response_create(
        &mut self,
        value: &Value,
        out: &mut Events,
    ) -> Result<(), Rejection> {
        if let Some(r) = &self.response {
            return Err((
                "conversation_already_has_active_response",
                format!(
                    "Conversation already has an active response in progress: {}. Wait until the \
                     response is finished before creating a new one.",
                    r.id
                ),
                None,
            ));
        }
        let params = match value.get("response") {
            None | Some(Value::Null) => None,
            Some(p @ Value::Object(_)) => Some(p),
            Some(_) => {
                return Err(invalid(
                    "response",
                    "Invalid type for 'response': expected an object.",
                ));
            }
        };
        if let Some(m) = params.and_then(|p| p.get("output_modalities")) {
            session_config::check_modalities(m, "response.output_modalities")?;
        }
        if let Some(c) = params.and_then(|p| p.get("conversation")) {
            if !matches!(c.as_str(), Some("auto" | "none")) {
                return Err(invalid(
                    "response.conversation",
                    format!("Invalid value: {c}. Supported values are: 'auto' and 'none'."),
                ));
            }
        }
        if let Some(format) = params.and_then(|p| p.pointer("/audio/output/format")) {
            if session_config::parse_format(format).is_none() {
                return Err(invalid(
                    "response.audio.output.format",
                    format!("Invalid value: {format}."),
                ));
            }
        }
        let mut turns_source = None;
        if let Some(input) = params.and_then(|p| p.get("input")) {
            let items = input.as_array().ok_or_else(|| {
                invalid(
                    "response.input",
                    "Invalid type for 'response.input': expected an array.",
                )
            })?;
            let mut resolved = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if item["type"] == "item_reference" {
                    let id = item["id"].as_str().unwrap_or_default();
                    let index = self.find(id).ok_or_else(|| {
                        (
                            "item_not_found",
                            format!("Item with id '{id}' not found in the conversation."),
                            Some(format!("response.input[{i}].id")),
                        )
                    })?;
                    resolved.push(Self::turn_of(&self.items[index]));
                } else {
                    Self::validate_item(item).map_err(|(c, m, p)| {
                        (
                            c,
                            m,
                            p.map(|p| p.replacen("item", &format!("response.input[{i}]"), 1)),
                        )
                    })?;
                    let stored = self.store_client_item(item);
                    resolved.push(Self::turn_of(&stored));
                }
            }
            turns_source = Some(resolved);
        }
        self.start_response_with(params, turns_source, out);
        Ok(())
    }

    pub(super) fn response_cancel(
        &mut self,
        value: &Value,
        out: &mut Events,
    ) -> Result<(), Rejection> {
        let wanted = value.get("response_id").and_then(Value::as_str);
        match &self.response {
            Some(r) if wanted.is_none_or(|w| w == r.id) => {
                self.cancel_response("client_cancelled", out);
                Ok(())
            }
            _ => Err((
                "response_cancel_not_active",
                "Cancellation failed: no active response found".to_string(),
                None,
            )),
        }
    }

    pub(super) fn start_response(&mut self, params: Option<&Value>, out: &mut Events) {
        self.start_response_with(params, None, out);
    }

    fn start_response_with(
        &mut self,
        params: Option<&Value>,
        turns: Option<Vec<Turn>>,
        out: &mut Events,
    ) {
        let param = |key: &str| params.and_then(|p| p.get(key)).filter(|v| !v.is_null());
        let session = &self.session;
        let modalities = param("output_modalities")
            .cloned()
            .unwrap_or_else(|| session["output_modalities"].clone());
        let audio = modalities
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == "audio"));
        let instructions = param("instructions")
            .or_else(|| session.get("instructions"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let tools = param("tools")
            .or_else(|| session.get("tools"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let tool_choice = param("tool_choice")
            .or_else(|| session.get("tool_choice"))
            .cloned()
            .unwrap_or_else(|| Value::from("auto"));
        let parallel = param("parallel_tool_calls")
            .or_else(|| session.get("parallel_tool_calls"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let format_json = params
            .and_then(|p| p.pointer("/audio/output/format"))
            .cloned()
            .unwrap_or_else(|| session["audio"]["output"]["format"].clone());
        let format = session_config::parse_format(&format_json).unwrap_or(AudioFormat::PCM16_24K);
        let voice = params
            .and_then(|p| p.pointer("/audio/output/voice"))
            .cloned()
            .unwrap_or_else(|| session["audio"]["output"]["voice"].clone());
        let voice_name = match &voice {
            Value::String(s) => s.clone(),
            other => other
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("alloy")
                .to_string(),
        };
        let in_conversation = param("conversation").and_then(Value::as_str) != Some("none");
        let max_output_tokens = param("max_output_tokens")
            .cloned()
            .unwrap_or_else(|| session["max_output_tokens"].clone());
        let metadata = param("metadata").cloned().unwrap_or(Value::Null);
        let token_limit = max_output_tokens.as_u64();
        let mut limited = false;

        let turns = turns.unwrap_or_else(|| self.items.iter().map(Self::turn_of).collect());
        let plan = brain::plan(&turns, &instructions, &tools, &tool_choice, parallel);

        // Token estimates of the context.
        let context_chars: String = self
            .items
            .iter()
            .map(|i| i.json.to_string())
            .chain([
                instructions.clone(),
                Value::Array(tools.clone()).to_string(),
            ])
            .collect();
        let input_audio_ms: f64 = self.items.iter().map(|i| i.input_audio_ms).sum();
        let input_text_tokens = tokens_for_text(&context_chars) / 2 + 4 * self.items.len() as u64;
        let input_audio_tokens = (input_audio_ms / 100.0).round() as u64;

        self.next_response += 1;
        let id = format!("resp_{}", self.next_response);
        let mut base = Map::new();
        base.insert("object".into(), Value::from("realtime.response"));
        base.insert("id".into(), Value::from(id.clone()));
        base.insert(
            "conversation_id".into(),
            if in_conversation {
                Value::from(self.conversation_id.clone())
            } else {
                Value::Null
            },
        );
        base.insert("output_modalities".into(), modalities);
        base.insert("max_output_tokens".into(), max_output_tokens);
        base.insert(
            "audio".into(),
            json!({"output": {"format": serde_json::to_value(format).unwrap_or(Value::Null), "voice": voice}}),
        );
        base.insert("metadata".into(), metadata);

        let mut steps = VecDeque::new();
        let mut message = None;
        let mut calls = Vec::new();
        match plan {
            Plan::Speak(text) => {
                let item_id = self.item_id();
                let (words, speech) = if audio {
                    let speech = Speech::cached(&text, &voice_name, format);
                    (speech.words().to_vec(), Some(speech))
                } else {
                    let words = text
                        .split_whitespace()
                        .map(|w| (0.0, w.to_string()))
                        .collect();
                    (words, None)
                };
                let words: Vec<(f64, String)> = words
                    .into_iter()
                    .enumerate()
                    .map(|(i, (at, w))| (at, if i == 0 { w } else { format!(" {w}") }))
                    .collect();
                steps.push_back((0.0, Step::MessageStart));
                // Output tokens: a text token per 4 characters, an audio token per 50 ms.
                let over = |chars: usize, audio_ms: f64| {
                    token_limit.is_some_and(|limit| {
                        (chars as u64).div_ceil(4) + (audio_ms / 50.0).ceil() as u64 > limit
                    })
                };
                let mut chars = 0;
                if let Some(speech) = &speech {
                    let chunks = speech.chunks();
                    let mut next_word = 0;
                    let mut sent = 0;
                    for k in 0..chunks {
                        let t = k as f64 * DELTA_MS;
                        let mut word_chars = 0;
                        let mut last_word = next_word;
                        while last_word < words.len() && words[last_word].0 < t + DELTA_MS {
                            word_chars += words[last_word].1.chars().count();
                            last_word += 1;
                        }
                        if over(chars + word_chars, t + DELTA_MS) {
                            limited = true;
                            break;
                        }
                        chars += word_chars;
                        for w in next_word..last_word {
                            steps.push_back((t, Step::Word(w)));
                        }
                        next_word = last_word;
                        steps.push_back((t, Step::Audio(k)));
                        sent = k + 1;
                    }
                    let end = sent.saturating_sub(1) as f64 * DELTA_MS;
                    if !limited {
                        for w in next_word..words.len() {
                            steps.push_back((end, Step::Word(w)));
                        }
                    }
                    steps.push_back((end, Step::MessageEnd));
                    steps.push_back((end, Step::Done));
                } else {
                    for (w, (_, word)) in words.iter().enumerate() {
                        chars += word.chars().count();
                        if over(chars, 0.0) {
                            limited = true;
                            break;
                        }
                        steps.push_back((0.0, Step::Word(w)));
                    }
                    steps.push_back((0.0, Step::MessageEnd));
                    steps.push_back((0.0, Step::Done));
                }
                message = Some(MessagePlan {
                    item_id,
                    output_index: 0,
                    words,
                    speech,
                    started: false,
                    finished: false,
                    text_sent: String::new(),
                    audio_sent: 0,
                    truncated_at: None,
                    delta_fields: Arc::from(""),
                });
            }
            Plan::Calls(planned) => {
                for (i, (name, arguments)) in planned.into_iter().enumerate() {
                    let item_id = self.item_id();
                    self.next_call += 1;
                    calls.push(CallPlan {
                        item_id,
                        call_id: format!("call_{}", self.next_call),
                        name,
                        arguments,
                    });
                    steps.push_back((0.0, Step::Call(i)));
                }
                steps.push_back((0.0, Step::Done));
            }
        }
        let response = Response {
            id,
            start: Instant::now(),
            steps,
            base,
            output: Vec::new(),
            in_conversation,
            audio,
            format,
            message,
            calls,
            input_text_tokens,
            input_audio_tokens,
            limited,
            done_not_before: None,
        };
        out.push(json!({"type": "response.created", "response": Self::response_json(&response, "in_progress", Value::Null, None)}));
        self.response = Some(response);
        self.idle_deadline = None;
    }

    pub(super) fn response_json(
        r: &Response,
        status: &str,
        details: Value,
        usage: Option<Value>,
    ) -> Value {
        let mut obj = r.base.clone();
        obj.insert("status".into(), Value::from(status));
        obj.insert("status_details".into(), details);
        obj.insert("output".into(), Value::Array(r.output.clone()));
        obj.insert("usage".into(), usage.unwrap_or(Value::Null));
        Value::Object(obj)
    }

    pub(super) fn message_item(m: &MessagePlan, audio: bool, status: &str) -> Value {
        let content = if !m.started {
            json!([])
        } else if audio {
            json!([{"type": "output_audio", "transcript": m.text_sent}])
        } else {
            json!([{"type": "output_text", "text": m.text_sent}])
        };
        json!({
            "id": m.item_id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        })
    }
}
