//! The state machine of one simulated connection.
//!
//! Everything here is synchronous: each input (a client frame, a due response step, the idle
//! timer) produces the server events to send, in order. `connection.rs` owns the socket,
//! the clock and the event ids.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use base64_simd::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::brain::{self, Plan, Turn};
use super::session_config::{self, Rejection};
use super::speech;
use crate::audio::AudioFormat;
use crate::audio::g711;
use crate::protocol::ClientEvent;

/// Milliseconds of audio per output delta.
const DELTA_MS: f64 = 20.0;

/// When the next response step is due.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Due {
    /// Unpaced: as soon as the task has yielded once.
    Now,
    /// Paced: at this instant.
    At(Instant),
}

/// Speech synthesized and encoded once, shared by every response (on any connection) that
/// says the same words in the same voice and format.
#[derive(Debug)]
pub(crate) struct Speech {
    /// Word start (ms) and word, as the synthesizer placed them.
    words: Vec<(f64, String)>,
    /// The audio in the output format, padded to whole 20 ms frames.
    audio: Vec<u8>,
    /// Bytes per delta.
    chunk_bytes: usize,
    /// The base64 of each delta, concatenated.
    b64: String,
    /// Delta `k` is `b64[offsets[k]..offsets[k + 1]]`.
    offsets: Vec<usize>,
}

impl Speech {
    fn new(text: &str, voice: &str, format: AudioFormat) -> Self {
        let mut utterance = speech::synthesize(text, voice, format.sample_rate());
        // Whole 20 ms frames, so every delta has the same size.
        let frame = (format.sample_rate() / 50) as usize;
        let padded = utterance.samples.len().div_ceil(frame) * frame;
        utterance.samples.resize(padded, 0);
        let audio = encode_audio(&utterance.samples, format);
        let chunk_bytes = format.ms_to_bytes(DELTA_MS as u64).max(1);
        let mut b64 =
            String::with_capacity(audio.len().div_ceil(3) * 4 + 4 * audio.len() / chunk_bytes);
        let mut offsets = vec![0];
        for chunk in audio.chunks(chunk_bytes) {
            BASE64.encode_append(chunk, &mut b64);
            offsets.push(b64.len());
        }
        Self {
            words: utterance.words,
            audio,
            chunk_bytes,
            b64,
            offsets,
        }
    }

    /// The cached speech for these words, voice and format (synthesized on first use).
    fn cached(text: &str, voice: &str, format: AudioFormat) -> Arc<Speech> {
        type Key = (String, String, u32, u8);
        static CACHE: LazyLock<Mutex<HashMap<Key, Arc<Speech>>>> =
            LazyLock::new(|| Mutex::new(HashMap::new()));
        let kind = match format {
            AudioFormat::Pcm16 { .. } => 0,
            AudioFormat::G711Ulaw => 1,
            AudioFormat::G711Alaw => 2,
        };
        let key = (
            text.to_owned(),
            voice.to_owned(),
            format.sample_rate(),
            kind,
        );
        if let Some(hit) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return hit.clone();
        }
        // Synthesize outside the lock; a concurrent miss does the work twice, harmlessly.
        let speech = Arc::new(Speech::new(text, voice, format));
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 16 {
            cache.clear();
        }
        cache.insert(key, speech.clone());
        speech
    }

    fn chunks(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Delta `k`'s audio bytes.
    fn chunk(&self, k: usize) -> &[u8] {
        let from = k * self.chunk_bytes;
        &self.audio[from..(from + self.chunk_bytes).min(self.audio.len())]
    }

    /// Delta `k`'s audio in base64.
    fn chunk_b64(&self, k: usize) -> &str {
        &self.b64[self.offsets[k]..self.offsets[k + 1]]
    }
}

/// The marker after the send time in a stamped audio delta.
pub(crate) const STAMP_MAGIC: [u8; 4] = *b"RTA1";
/// Bytes of a stamp: the send time (µs since the Unix epoch, u64 LE) and [`STAMP_MAGIC`].
pub(crate) const STAMP_LEN: usize = 12;

/// One server event to send.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Any event, as JSON (its `event_id` is set when sent).
    Json(Value),
    /// A `response.output_audio.delta`, rendered straight from pre-encoded speech.
    AudioDelta {
        response_id: String,
        item_id: String,
        output_index: usize,
        speech: Arc<Speech>,
        chunk: usize,
    },
}

impl Outgoing {
    /// The frame's text. `stamp`: the send time, written over the audio's first bytes.
    pub(crate) fn render(&self, event_id: &str, stamp: Option<u64>) -> String {
        match self {
            Outgoing::Json(value) => {
                let mut value = value.clone();
                value["event_id"] = Value::from(event_id);
                value.to_string()
            }
            Outgoing::AudioDelta {
                response_id,
                item_id,
                output_index,
                speech,
                chunk,
            } => {
                use std::fmt::Write as _;
                let b64 = speech.chunk_b64(*chunk);
                let mut text = String::with_capacity(b64.len() + 192);
                // The ids are the simulator's own (`resp_N`, `item_N`): nothing to escape.
                let _ = write!(
                    text,
                    r#"{{"type":"response.output_audio.delta","event_id":"{event_id}","response_id":"{response_id}","item_id":"{item_id}","output_index":{output_index},"content_index":0,"delta":""#
                );
                let raw = speech.chunk(*chunk);
                match stamp {
                    Some(micros) if raw.len() >= STAMP_LEN => {
                        let mut head = [0u8; STAMP_LEN];
                        head[..8].copy_from_slice(&micros.to_le_bytes());
                        head[8..].copy_from_slice(&STAMP_MAGIC);
                        BASE64.encode_append(head, &mut text);
                        // 12 bytes are 16 base64 characters: the rest encodes unchanged.
                        text.push_str(&b64[STAMP_LEN / 3 * 4..]);
                    }
                    _ => text.push_str(b64),
                }
                text.push_str("\"}");
                text
            }
        }
    }

    /// The event as JSON (without `event_id`).
    #[cfg(test)]
    fn to_value(&self) -> Value {
        match self {
            Outgoing::Json(value) => value.clone(),
            other => {
                let mut value: Value =
                    serde_json::from_str(&other.render("", None)).unwrap_or_default();
                if let Some(map) = value.as_object_mut() {
                    map.remove("event_id");
                }
                value
            }
        }
    }
}

/// The events an input produced, in order.
#[derive(Debug, Default)]
pub(crate) struct Events(pub(crate) Vec<Outgoing>);

impl Events {
    pub(crate) fn push(&mut self, event: Value) {
        self.0.push(Outgoing::Json(event));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[cfg(test)]
    fn values(&self) -> Vec<Value> {
        self.0.iter().map(Outgoing::to_value).collect()
    }
}

#[derive(Debug)]
struct AudioTrack {
    /// Milliseconds of audio produced (or kept after a truncation).
    produced_ms: f64,
    /// Words and the millisecond their audio starts.
    words: Vec<(f64, String)>,
}

#[derive(Debug)]
struct StoredItem {
    json: Value,
    /// What the simulator understood of a user message (text, or its audio's transcript).
    understood: Option<String>,
    /// Committed by the idle timeout.
    idle: bool,
    /// Milliseconds of user audio in the item.
    input_audio_ms: f64,
    /// Assistant audio, for truncation.
    audio: Option<AudioTrack>,
}

impl StoredItem {
    fn new(json: Value) -> Self {
        Self {
            json,
            understood: None,
            idle: false,
            input_audio_ms: 0.0,
            audio: None,
        }
    }

    fn id(&self) -> &str {
        self.json["id"].as_str().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy)]
struct Vad {
    rms_threshold: f64,
    prefix_ms: u64,
    silence_ms: u64,
    create_response: bool,
    interrupt_response: bool,
    idle_timeout_ms: Option<u64>,
}

impl Vad {
    fn from_session(session: &Value) -> Option<Self> {
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
        Some(Self {
            // threshold 0 → -60 dBFS, 0.5 → -35 dBFS, 1 → -10 dBFS (RMS).
            rms_threshold: 32_768.0 * 10f64.powf((-60.0 + 50.0 * threshold) / 20.0),
            prefix_ms: td
                .get("prefix_padding_ms")
                .and_then(Value::as_u64)
                .unwrap_or(300),
            silence_ms: silence_ms.max(20),
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

enum VadEvent {
    Started { start: u64 },
    Stopped { start: u64, end: u64 },
}

/// The input audio buffer, as decoded samples with cumulative sample positions.
#[derive(Debug)]
struct InputAudio {
    format: AudioFormat,
    samples: Vec<i16>,
    /// Cumulative position of `samples[0]`.
    start: u64,
    /// Cumulative position up to which VAD has analysed.
    analysed: u64,
    /// Odd trailing byte of a PCM16 append.
    carry: Option<u8>,
    /// Speech in progress: its start (prefix padding included) and trailing silence.
    speech: Option<(u64, u64)>,
}

impl InputAudio {
    fn new(format: AudioFormat) -> Self {
        Self {
            format,
            samples: Vec::new(),
            start: 0,
            analysed: 0,
            carry: None,
            speech: None,
        }
    }

    fn rate(&self) -> u64 {
        u64::from(self.format.sample_rate())
    }

    fn end(&self) -> u64 {
        self.start + self.samples.len() as u64
    }

    fn ms(&self, position: u64) -> u64 {
        position * 1000 / self.rate()
    }

    fn buffered_ms(&self) -> f64 {
        self.samples.len() as f64 * 1000.0 / self.rate() as f64
    }

    fn append(&mut self, bytes: &[u8]) {
        match self.format {
            AudioFormat::Pcm16 { .. } => {
                let mut bytes = bytes;
                if let (Some(low), Some((&high, rest))) = (self.carry, bytes.split_first()) {
                    self.samples.push(i16::from_le_bytes([low, high]));
                    self.carry = None;
                    bytes = rest;
                }
                let mut pairs = bytes.chunks_exact(2);
                self.samples
                    .extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
                if let Some(&odd) = pairs.remainder().first() {
                    self.carry = Some(odd);
                }
            }
            AudioFormat::G711Ulaw => self
                .samples
                .extend(bytes.iter().map(|&b| g711::ulaw_decode_sample(b))),
            AudioFormat::G711Alaw => self
                .samples
                .extend(bytes.iter().map(|&b| g711::alaw_decode_sample(b))),
        }
    }

    /// Removes and returns the samples in `[from, to)` (cumulative positions), dropping
    /// everything before `to`.
    fn take(&mut self, from: u64, to: u64) -> Vec<i16> {
        let from = from.max(self.start);
        let to = to.clamp(from, self.end());
        let a = (from - self.start) as usize;
        let b = (to - self.start) as usize;
        let out = self.samples[a..b].to_vec();
        self.samples.drain(..b);
        self.start = to;
        self.analysed = self.analysed.max(to);
        out
    }

    fn clear(&mut self) {
        self.start = self.end();
        self.samples.clear();
        self.analysed = self.start;
        self.carry = None;
        self.speech = None;
    }

    /// Analyses 20 ms frames until the next VAD event.
    fn next_event(&mut self, vad: &Vad) -> Option<VadEvent> {
        let frame = (self.rate() / 50).max(1);
        let prefix = vad.prefix_ms * self.rate() / 1000;
        let silence = vad.silence_ms * self.rate() / 1000;
        while self.analysed + frame <= self.end() {
            let at = self.analysed;
            let offset = (at - self.start) as usize;
            let window = &self.samples[offset..offset + frame as usize];
            let energy: f64 = window.iter().map(|&s| f64::from(s).powi(2)).sum();
            let voiced = (energy / frame as f64).sqrt() > vad.rms_threshold;
            self.analysed += frame;
            match &mut self.speech {
                None if voiced => {
                    let start = at.saturating_sub(prefix).max(self.start);
                    self.speech = Some((start, 0));
                    return Some(VadEvent::Started { start });
                }
                None => {}
                Some((_, quiet)) if voiced => *quiet = 0,
                Some((start, quiet)) => {
                    *quiet += frame;
                    if *quiet >= silence {
                        let start = *start;
                        self.speech = None;
                        return Some(VadEvent::Stopped {
                            start,
                            end: self.analysed,
                        });
                    }
                }
            }
        }
        if self.speech.is_none() {
            // Keep a little history for the next utterance's prefix padding; drop the rest
            // once it is as long again (not on every append: that would move a second of
            // audio every 20 ms).
            let keep = prefix.max(self.rate());
            if self.analysed > self.start + 2 * keep {
                let cut = (self.analysed - keep - self.start) as usize;
                self.samples.drain(..cut);
                self.start += cut as u64;
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    MessageStart,
    Word(usize),
    Audio(usize),
    MessageEnd,
    Call(usize),
    Done,
}

#[derive(Debug)]
struct MessagePlan {
    item_id: String,
    output_index: usize,
    /// Word start (ms) and its delta text.
    words: Vec<(f64, String)>,
    /// The audio, for audio responses.
    speech: Option<Arc<Speech>>,
    started: bool,
    finished: bool,
    words_sent: usize,
    text_sent: String,
    audio_sent: usize,
    /// A `conversation.item.truncate` received while the message was still streaming.
    truncated_at: Option<f64>,
}

#[derive(Debug)]
struct CallPlan {
    item_id: String,
    call_id: String,
    name: String,
    arguments: String,
}

#[derive(Debug)]
struct Response {
    id: String,
    start: Instant,
    steps: VecDeque<(f64, Step)>,
    /// Fields of the response object that do not change.
    base: Map<String, Value>,
    output: Vec<Value>,
    in_conversation: bool,
    audio: bool,
    format: AudioFormat,
    message: Option<MessagePlan>,
    calls: Vec<CallPlan>,
    input_text_tokens: u64,
    input_audio_tokens: u64,
    /// `max_output_tokens` cut the message short.
    limited: bool,
}

/// One connection's simulated session.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    speed: f64,
    next_item: u64,
    next_response: u64,
    next_call: u64,
    session: Value,
    conversation_id: String,
    items: Vec<StoredItem>,
    input: InputAudio,
    speech_item: Option<String>,
    response: Option<Response>,
    pending_auto_response: bool,
    produced_audio: bool,
    idle_deadline: Option<Instant>,
    last_input_tokens: u64,
    /// Reused buffer for decoding audio appends.
    scratch: Vec<u8>,
}

fn error_event(
    code: &str,
    message: impl Into<String>,
    param: Option<String>,
    event_id: Option<&str>,
) -> Value {
    json!({
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message.into(),
            "param": param,
            "event_id": event_id,
        }
    })
}

fn missing(param: &str) -> Rejection {
    (
        "missing_required_parameter",
        format!("Missing required parameter: '{param}'."),
        Some(param.to_string()),
    )
}

fn invalid(param: &str, message: impl Into<String>) -> Rejection {
    ("invalid_value", message.into(), Some(param.to_string()))
}

fn encode_audio(samples: &[i16], format: AudioFormat) -> Vec<u8> {
    match format {
        AudioFormat::Pcm16 { .. } => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        AudioFormat::G711Ulaw => samples
            .iter()
            .map(|&s| g711::ulaw_encode_sample(s))
            .collect(),
        AudioFormat::G711Alaw => samples
            .iter()
            .map(|&s| g711::alaw_encode_sample(s))
            .collect(),
    }
}

/// What the simulator makes of user audio. Transcripts are cached by the audio's hash: load
/// tests send the same utterances on many connections, and decoding is the costly part.
fn transcribe(samples: &[i16], rate: u32) -> String {
    use std::hash::{Hash, Hasher};
    type Key = (u64, usize, u32);
    static CACHE: LazyLock<Mutex<HashMap<Key, String>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    samples.hash(&mut hasher);
    let key = (hasher.finish(), samples.len(), rate);
    if let Some(hit) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return hit.clone();
    }
    let text = transcribe_uncached(samples, rate);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(key, text.clone());
    text
}

fn transcribe_uncached(samples: &[i16], rate: u32) -> String {
    speech::decode_text(samples, rate).unwrap_or_else(|| {
        format!(
            "({:.1} seconds of audio)",
            samples.len() as f64 / f64::from(rate)
        )
    })
}

fn tokens_for_text(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

impl ConnectionState {
    /// A new connection's state and its first event, `session.created`.
    pub(crate) fn new(model: &str, speed: f64) -> (Self, Value) {
        let expires_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 3600)
            .unwrap_or_default();
        let session = session_config::default_session(model, "sess_1", expires_at);
        let created = json!({"type": "session.created", "session": session.clone()});
        let state = Self {
            speed,
            next_item: 0,
            next_response: 0,
            next_call: 0,
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

    fn vad(&self) -> Option<Vad> {
        Vad::from_session(&self.session)
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.items.iter().position(|i| i.id() == id)
    }

    fn last_item_id(&self) -> Value {
        self.items
            .last()
            .map(|i| Value::from(i.id()))
            .unwrap_or(Value::Null)
    }

    /// When the active response's next step is due.
    pub(crate) fn next_due(&self) -> Option<Due> {
        let r = self.response.as_ref()?;
        let (offset_ms, _) = r.steps.front()?;
        if self.speed <= 0.0 {
            Some(Due::Now)
        } else {
            Some(Due::At(
                r.start + Duration::from_secs_f64(offset_ms / 1000.0 / self.speed),
            ))
        }
    }

    /// When the idle timeout fires, if armed.
    pub(crate) fn idle_deadline(&self) -> Option<Instant> {
        self.idle_deadline
    }

    /// Handles one text frame from the client.
    pub(crate) fn on_client_event(&mut self, value: &Value, out: &mut Events) {
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

    fn session_update(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        let merged =
            session_config::apply_update(&self.session, value.get("session"), self.produced_audio)?;
        let old_format = self.session["audio"]["input"]["format"].clone();
        self.session = merged;
        if self.session["audio"]["input"]["format"] != old_format {
            let format = session_config::parse_format(&self.session["audio"]["input"]["format"])
                .unwrap_or(AudioFormat::PCM16_24K);
            self.input = InputAudio::new(format);
            self.speech_item = None;
        }
        match self.vad() {
            None => {
                self.input.speech = None;
                self.speech_item = None;
                self.idle_deadline = None;
            }
            Some(vad) if vad.idle_timeout_ms.is_none() => self.idle_deadline = None,
            Some(_) => {}
        }
        out.push(json!({"type": "session.updated", "session": self.session.clone()}));
        Ok(())
    }

    fn append(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        let audio = value
            .get("audio")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("audio"))?;
        self.append_base64(audio, out)
    }

    /// An `input_audio_buffer.append` whose `audio` the connection read without building a JSON
    /// tree (the hot path of a voice session).
    pub(crate) fn on_append(&mut self, audio: &str, event_id: Option<&str>, out: &mut Events) {
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
        while let Some(event) = self.input.next_event(&vad) {
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

    fn commit(&mut self, out: &mut Events) -> Result<(), Rejection> {
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
        let end = self.input.end();
        let start = self.input.start;
        let samples = self.input.take(start, end);
        self.input.speech = None;
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
        let rate = self.input.format.sample_rate();
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
    pub(crate) fn on_idle_timeout(&mut self, out: &mut Events) {
        self.idle_deadline = None;
        let Some(vad) = self.vad() else {
            return;
        };
        if self.response.is_some() || self.input.speech.is_some() {
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

    fn validate_item(item: &Value) -> Result<(), Rejection> {
        let Some(obj) = item.as_object() else {
            return Err(invalid(
                "item",
                "Invalid type for 'item': expected an object.",
            ));
        };
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("item.type"))?;
        match kind {
            "message" => {
                let role = obj
                    .get("role")
                    .and_then(Value::as_str)
                    .ok_or_else(|| missing("item.role"))?;
                let allowed: &[&str] = match role {
                    "user" => &["input_text", "input_audio", "input_image"],
                    "system" => &["input_text"],
                    "assistant" => &["output_text", "output_audio"],
                    other => {
                        return Err(invalid(
                            "item.role",
                            format!(
                                "Invalid value: '{other}'. Supported values are: 'user', 'assistant', and 'system'."
                            ),
                        ));
                    }
                };
                let content = obj
                    .get("content")
                    .and_then(Value::as_array)
                    .ok_or_else(|| missing("item.content"))?;
                for (i, part) in content.iter().enumerate() {
                    let param = format!("item.content[{i}].type");
                    let ty = part
                        .get("type")
                        .and_then(Value::as_str)
                        .ok_or_else(|| missing(&param))?;
                    if !allowed.contains(&ty) {
                        return Err(invalid(
                            &param,
                            format!(
                                "Invalid value: '{ty}'. Supported values are: {}.",
                                allowed
                                    .iter()
                                    .map(|a| format!("'{a}'"))
                                    .collect::<Vec<_>>()
                                    .join(" and ")
                            ),
                        ));
                    }
                    if ty == "input_text" && !part.get("text").is_some_and(Value::is_string) {
                        return Err(missing(&format!("item.content[{i}].text")));
                    }
                }
                Ok(())
            }
            "function_call_output" => {
                for field in ["call_id", "output"] {
                    if !obj.get(field).is_some_and(Value::is_string) {
                        return Err(missing(&format!("item.{field}")));
                    }
                }
                Ok(())
            }
            "function_call" => {
                for field in ["call_id", "name", "arguments"] {
                    if !obj.get(field).is_some_and(Value::is_string) {
                        return Err(missing(&format!("item.{field}")));
                    }
                }
                Ok(())
            }
            other => Err(invalid(
                "item.type",
                format!(
                    "Invalid value: '{other}'. Supported values are: 'message', 'function_call', and 'function_call_output'."
                ),
            )),
        }
    }

    /// Turns a client item into a stored item (id, object, status; user audio understood).
    fn store_client_item(&mut self, item: &Value) -> StoredItem {
        let mut json = item.clone();
        if !json.get("id").is_some_and(Value::is_string) {
            json["id"] = Value::from(self.item_id());
        }
        json["object"] = Value::from("realtime.item");
        json["status"] = Value::from("completed");
        let mut stored = StoredItem::new(Value::Null);
        if json["type"] == "message" && json["role"] == "user" {
            let mut understood = Vec::new();
            if let Some(parts) = json["content"].as_array_mut() {
                for part in parts {
                    match part["type"].as_str() {
                        Some("input_text") => {
                            understood.push(part["text"].as_str().unwrap_or_default().to_string());
                        }
                        Some("input_audio") => {
                            let bytes = part
                                .get("audio")
                                .and_then(Value::as_str)
                                .and_then(|a| BASE64.decode_to_vec(a).ok())
                                .unwrap_or_default();
                            let mut input = InputAudio::new(self.input.format);
                            input.append(&bytes);
                            stored.input_audio_ms += input.buffered_ms();
                            match part.get("transcript").and_then(Value::as_str) {
                                Some(t) => understood.push(t.to_string()),
                                None if !input.samples.is_empty() => understood.push(transcribe(
                                    &input.samples,
                                    self.input.format.sample_rate(),
                                )),
                                None => {}
                            }
                            if let Some(map) = part.as_object_mut() {
                                map.remove("audio");
                                map.entry("transcript").or_insert(Value::Null);
                            }
                        }
                        _ => {}
                    }
                }
            }
            stored.understood = Some(understood.join(" "));
        }
        stored.json = json;
        stored
    }

    fn item_create(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        let item = value.get("item").ok_or_else(|| missing("item"))?;
        Self::validate_item(item)?;
        if let Some(id) = item.get("id").and_then(Value::as_str) {
            if self.find(id).is_some() {
                return Err(invalid(
                    "item.id",
                    format!("Item with id '{id}' already exists in the conversation."),
                ));
            }
        }
        let position = match value.get("previous_item_id") {
            None | Some(Value::Null) => self.items.len(),
            Some(Value::String(p)) if p == "root" => 0,
            Some(Value::String(p)) => self.find(p).map(|i| i + 1).ok_or_else(|| {
                (
                    "item_not_found",
                    format!("Previous item with id '{p}' not found in the conversation."),
                    Some("previous_item_id".to_string()),
                )
            })?,
            Some(_) => {
                return Err(invalid(
                    "previous_item_id",
                    "Invalid type for 'previous_item_id': expected a string.",
                ));
            }
        };
        let stored = self.store_client_item(item);
        let json = stored.json.clone();
        let previous = match position {
            0 => Value::Null,
            n => Value::from(self.items[n - 1].id()),
        };
        self.items.insert(position, stored);
        out.push(
            json!({"type": "conversation.item.added", "previous_item_id": previous, "item": json}),
        );
        out.push(
            json!({"type": "conversation.item.done", "previous_item_id": previous, "item": json}),
        );
        Ok(())
    }

    fn required_item<'a>(value: &'a Value, field: &str) -> Result<&'a str, Rejection> {
        value
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| missing(field))
    }

    fn item_retrieve(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        let id = Self::required_item(value, "item_id")?;
        let index = self.find(id).ok_or_else(|| {
            (
                "item_retrieve_invalid_item_id",
                format!("Error retrieving item: the item with id '{id}' does not exist."),
                Some("item_id".to_string()),
            )
        })?;
        out.push(
            json!({"type": "conversation.item.retrieved", "item": self.items[index].json.clone()}),
        );
        Ok(())
    }

    fn item_delete(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        let id = Self::required_item(value, "item_id")?.to_string();
        let index = self.find(&id).ok_or_else(|| {
            (
                "item_delete_invalid_item_id",
                format!("Error deleting item: the item with id '{id}' does not exist."),
                Some("item_id".to_string()),
            )
        })?;
        self.items.remove(index);
        out.push(json!({"type": "conversation.item.deleted", "item_id": id}));
        Ok(())
    }

    fn item_truncate(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        let id = Self::required_item(value, "item_id")?.to_string();
        let content_index = value
            .get("content_index")
            .and_then(Value::as_u64)
            .ok_or_else(|| missing("content_index"))?;
        let audio_end_ms = value
            .get("audio_end_ms")
            .and_then(Value::as_u64)
            .ok_or_else(|| missing("audio_end_ms"))?;
        let index = self.find(&id).ok_or_else(|| {
            (
                "item_truncate_invalid_item_id",
                format!("Error truncating item: the item with id '{id}' does not exist."),
                Some("item_id".to_string()),
            )
        })?;
        let not_audio = || {
            (
                "unsupported_content_type",
                "Only model output audio messages can be truncated".to_string(),
                None,
            )
        };
        // The message may still be streaming.
        let streaming = self.response.as_ref().and_then(|r| {
            r.message
                .as_ref()
                .filter(|m| m.item_id == id && !m.finished)
                .map(|m| (r.audio, r.format, m.audio_sent))
        });
        if let Some((audio, format, sent)) = streaming {
            if !audio || content_index != 0 || sent == 0 {
                return Err(not_audio());
            }
            let produced = format.bytes_to_ms(sent).ceil() as u64;
            if audio_end_ms > produced {
                return Err(invalid(
                    "audio_end_ms",
                    format!(
                        "Audio content of {produced}ms is already shorter than {audio_end_ms}ms"
                    ),
                ));
            }
            if let Some(m) = self.response.as_mut().and_then(|r| r.message.as_mut()) {
                m.truncated_at = Some(audio_end_ms as f64);
            }
        } else {
            let item = &mut self.items[index];
            let is_audio = item.json["type"] == "message"
                && item.json["role"] == "assistant"
                && item.json["content"][content_index as usize]["type"] == "output_audio";
            let Some(track) = item
                .audio
                .as_mut()
                .filter(|t| is_audio && t.produced_ms > 0.0)
            else {
                return Err(not_audio());
            };
            let produced = track.produced_ms.ceil() as u64;
            if audio_end_ms > produced {
                return Err(invalid(
                    "audio_end_ms",
                    format!(
                        "Audio content of {produced}ms is already shorter than {audio_end_ms}ms"
                    ),
                ));
            }
            track.produced_ms = audio_end_ms as f64;
            track
                .words
                .retain(|(start, _)| *start < audio_end_ms as f64);
            let transcript = track
                .words
                .iter()
                .map(|(_, w)| w.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            item.json["content"][content_index as usize]["transcript"] = Value::from(transcript);
        }
        out.push(json!({
            "type": "conversation.item.truncated",
            "item_id": id,
            "content_index": content_index,
            "audio_end_ms": audio_end_ms,
        }));
        Ok(())
    }

    fn response_create(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
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

    fn turn_of(item: &StoredItem) -> Turn {
        match (item.json["type"].as_str(), item.json["role"].as_str()) {
            (Some("message"), Some("user")) if item.idle => Turn::UserIdle,
            (Some("message"), Some("user")) => {
                Turn::User(item.understood.clone().unwrap_or_default())
            }
            (Some("function_call_output"), _) => {
                Turn::ToolOutput(item.json["output"].as_str().unwrap_or_default().to_string())
            }
            _ => Turn::Other,
        }
    }

    fn response_cancel(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
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

    fn start_response(&mut self, params: Option<&Value>, out: &mut Events) {
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
                    (speech.words.clone(), Some(speech))
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
                    words_sent: 0,
                    text_sent: String::new(),
                    audio_sent: 0,
                    truncated_at: None,
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
        };
        out.push(json!({"type": "response.created", "response": Self::response_json(&response, "in_progress", Value::Null, None)}));
        self.response = Some(response);
        self.idle_deadline = None;
    }

    fn response_json(r: &Response, status: &str, details: Value, usage: Option<Value>) -> Value {
        let mut obj = r.base.clone();
        obj.insert("status".into(), Value::from(status));
        obj.insert("status_details".into(), details);
        obj.insert("output".into(), Value::Array(r.output.clone()));
        obj.insert("usage".into(), usage.unwrap_or(Value::Null));
        Value::Object(obj)
    }

    fn message_item(m: &MessagePlan, audio: bool, status: &str) -> Value {
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

    /// Inserts (or replaces) a response item in the conversation; returns the previous item id.
    fn upsert_item(&mut self, json: Value, audio: Option<AudioTrack>) -> Value {
        let id = json["id"].as_str().unwrap_or_default().to_string();
        if let Some(index) = self.find(&id) {
            self.items[index].json = json;
            if audio.is_some() {
                self.items[index].audio = audio;
            }
            match index {
                0 => Value::Null,
                n => Value::from(self.items[n - 1].id()),
            }
        } else {
            let previous = self.last_item_id();
            let mut stored = StoredItem::new(json);
            stored.audio = audio;
            self.items.push(stored);
            previous
        }
    }

    /// Runs the active response's next step.
    pub(crate) fn advance(&mut self, out: &mut Events) {
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
                    m.words_sent = i + 1;
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
                    m.audio_sent = k * speech.chunk_bytes + speech.chunk(k).len();
                    self.produced_audio = true;
                    out.0.push(Outgoing::AudioDelta {
                        response_id: rid.clone(),
                        item_id: m.item_id.clone(),
                        output_index: m.output_index,
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
            let mut stored = item.clone();
            let mut track = None;
            if r.audio {
                let mut words: Vec<(f64, String)> = m.words[..m.words_sent]
                    .iter()
                    .map(|(at, w)| (*at, w.trim().to_string()))
                    .collect();
                let mut produced = r.format.bytes_to_ms(m.audio_sent);
                if let Some(cut) = m.truncated_at {
                    produced = produced.min(cut);
                    words.retain(|(at, _)| *at < cut);
                    stored["content"][0]["transcript"] = Value::from(
                        words
                            .iter()
                            .map(|(_, w)| w.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                }
                track = Some(AudioTrack {
                    produced_ms: produced,
                    words,
                });
            }
            let previous = self.upsert_item(stored, track);
            out.push(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item}));
        }
    }

    fn finish_response(&mut self, mut r: Response, status: &str, details: Value, out: &mut Events) {
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
    fn cancel_response(&mut self, reason: &str, out: &mut Events) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run_to_end(state: &mut ConnectionState, out: &mut Vec<Value>) {
        let mut events = Events::default();
        while state.next_due().is_some() {
            state.advance(&mut events);
        }
        out.extend(events.values());
    }

    fn client(state: &mut ConnectionState, event: &Value, out: &mut Vec<Value>) {
        let mut events = Events::default();
        state.on_client_event(event, &mut events);
        out.extend(events.values());
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default())
            .collect()
    }

    #[test]
    fn text_turn_and_truncate_rules() {
        let (mut state, created) = ConnectionState::new("gpt-realtime", 0.0);
        assert_eq!(created["session"]["audio"]["output"]["voice"], "alloy");
        let mut out = Vec::new();
        client(
            &mut state,
            &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "Hello there"}]}}),
            &mut out,
        );
        client(&mut state, &json!({"type": "response.create"}), &mut out);
        run_to_end(&mut state, &mut out);
        let t = types(&out);
        assert_eq!(
            t[..4],
            [
                "conversation.item.added",
                "conversation.item.done",
                "response.created",
                "response.output_item.added"
            ]
        );
        assert_eq!(t[t.len() - 2..], ["response.done", "rate_limits.updated"]);
        let done = &out[out.len() - 2]["response"];
        assert_eq!(done["status"], "completed");
        let transcript = done["output"][0]["content"][0]["transcript"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(transcript, brain::GREETING);
        let item_id = done["output"][0]["id"].as_str().unwrap().to_string();
        let audio_bytes: usize = out
            .iter()
            .filter(|e| e["type"] == "response.output_audio.delta")
            .map(|e| {
                BASE64
                    .decode_to_vec(e["delta"].as_str().unwrap())
                    .unwrap()
                    .len()
            })
            .sum();
        let total_ms = audio_bytes / 48;
        out.clear();
        client(
            &mut state,
            &json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": total_ms + 1, "event_id": "e1"}),
            &mut out,
        );
        assert_eq!(out[0]["error"]["code"], "invalid_value");
        assert_eq!(out[0]["error"]["event_id"], "e1");
        client(
            &mut state,
            &json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 1000}),
            &mut out,
        );
        assert_eq!(out[1]["type"], "conversation.item.truncated");
        client(
            &mut state,
            &json!({"type": "conversation.item.retrieve", "item_id": item_id}),
            &mut out,
        );
        let kept = out[2]["item"]["content"][0]["transcript"].as_str().unwrap();
        assert!(
            kept.starts_with("Hello!") && kept.len() < transcript.len(),
            "{kept}"
        );
    }

    #[test]
    fn max_output_tokens_cuts_the_message() {
        let (mut state, _) = ConnectionState::new("gpt-realtime", 0.0);
        let mut out = Vec::new();
        for (modalities, limit) in [(json!(["text"]), 8), (json!(["audio"]), 30)] {
            client(
                &mut state,
                &json!({"type": "response.create", "response": {"output_modalities": modalities,
                    "max_output_tokens": limit, "conversation": "none"}}),
                &mut out,
            );
            run_to_end(&mut state, &mut out);
            let done = &out
                .iter()
                .rev()
                .find(|e| e["type"] == "response.done")
                .unwrap()["response"];
            assert_eq!(done["status"], "incomplete");
            assert_eq!(done["status_details"]["reason"], "max_output_tokens");
            assert_eq!(done["output"][0]["status"], "incomplete");
            assert!(done["usage"]["output_tokens"].as_u64().unwrap() <= limit);
            let part = &done["output"][0]["content"][0];
            let said = part["text"]
                .as_str()
                .or(part["transcript"].as_str())
                .unwrap();
            assert!(
                said.starts_with("Hello!") && said.len() < brain::GREETING.len(),
                "{said}"
            );
        }
    }

    #[test]
    fn vad_commits_encoded_speech() {
        let (mut state, _) = ConnectionState::new("gpt-realtime", 0.0);
        let mut out = Vec::new();
        client(
            &mut state,
            &json!({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                "audio": {"input": {"transcription": {"model": "whisper-1"}}}}}),
            &mut out,
        );
        let mut samples = vec![0i16; 4800];
        samples.extend(speech::encode_text("story please"));
        samples.extend(vec![0i16; 24_000]);
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        for chunk in bytes.chunks(4800) {
            client(
                &mut state,
                &json!({"type": "input_audio_buffer.append", "audio": BASE64.encode_to_string(chunk)}),
                &mut out,
            );
        }
        let t = types(&out);
        let started = t
            .iter()
            .position(|t| *t == "input_audio_buffer.speech_started")
            .unwrap();
        assert_eq!(out[started]["audio_start_ms"], 0);
        let completed = out
            .iter()
            .find(|e| e["type"] == "conversation.item.input_audio_transcription.completed")
            .unwrap();
        assert_eq!(completed["transcript"], "story please");
        assert!(t.contains(&"response.created"));
        run_to_end(&mut state, &mut out);
        let done = out
            .iter()
            .rev()
            .find(|e| e["type"] == "response.done")
            .unwrap();
        assert_eq!(
            done["response"]["output"][0]["content"][0]["text"],
            brain::STORY
        );
    }
}
