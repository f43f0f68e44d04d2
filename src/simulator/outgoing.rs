//! What a connection sends, protocol-neutral: JSON events, and audio deltas rendered
//! straight from pre-encoded speech (the hot path), with the send-time stamp of
//! [`SimulatorBuilder::stamp_audio`](super::SimulatorBuilder::stamp_audio). A protocol's state
//! machine pushes them to [`Events`]; the connection loop numbers and writes them.

use std::sync::Arc;

use base64_simd::STANDARD as BASE64;
use serde_json::Value;
use tokio::time::Instant;

use super::voice::Speech;

/// When a state machine's next step is due.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Due {
    /// Unpaced: as soon as the task has yielded once.
    Now,
    /// Paced: at this instant.
    At(Instant),
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
    /// An audio delta (Realtime: `response.output_audio.delta`), rendered straight from
    /// pre-encoded speech as `{"type":KIND,"event_id":…,FIELDS"delta":"<base64>"}`.
    AudioDelta {
        /// The event type.
        kind: &'static str,
        /// The protocol's other fields, rendered once per message, each followed by a comma:
        /// the same for every delta of a message, so shared rather than copied per delta.
        fields: Arc<str>,
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
                kind,
                fields,
                speech,
                chunk,
            } => {
                use std::fmt::Write as _;
                let b64 = speech.chunk_b64(*chunk);
                let mut text = String::with_capacity(b64.len() + 64 + fields.len());
                // The kind, event id and fields are the simulator's own: nothing to escape.
                let _ = write!(
                    text,
                    r#"{{"type":"{kind}","event_id":"{event_id}",{fields}"delta":""#
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
    pub(crate) fn to_value(&self) -> Value {
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
    /// Queues a JSON event.
    pub(crate) fn push(&mut self, event: Value) {
        self.0.push(Outgoing::Json(event));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every event as JSON (without `event_id`), for unit tests.
    #[cfg(test)]
    pub(crate) fn values(&self) -> Vec<Value> {
        self.0.iter().map(Outgoing::to_value).collect()
    }
}
