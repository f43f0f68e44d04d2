//! The OpenAI Realtime GA wire protocol: typed client and server events.
//!
//! - [`ClientEvent`]: the 11 events a client sends (`session.update`,
//!   `input_audio_buffer.append`, `response.create`, …). Encode with [`ClientEvent::to_json`].
//! - [`ServerEvent`]: the 46 events the server sends, one variant each, plus
//!   [`ServerEvent::Unknown`] so a new event type never breaks a session. Decode with
//!   [`ServerEvent::from_json`], which reads the `type` first and then decodes straight into
//!   that event's payload struct (it runs for every 20 ms audio delta).
//! - [`SessionConfig`]: the GA `session` object of `session.update` / `session.updated`.
//! - [`Item`] and [`ContentPart`]: conversation items (messages, function calls and outputs).
//!
//! Encoding never emits `null` for unset optional fields. Decoding ignores unknown fields.
//! Where `null` means something (`turn_detection: null` turns VAD off) the field is a
//! tri-state `Option<Option<T>>`: absent, `null`, or a value.
//!
//! ```
//! use realtime_agents::protocol::{ClientEvent, Item, ServerEvent};
//!
//! let send = ClientEvent::ConversationItemCreate {
//!     event_id: None,
//!     previous_item_id: None,
//!     item: Item::user_text("Hi!"),
//! };
//! assert!(send.to_json().starts_with(r#"{"type":"conversation.item.create""#));
//!
//! let received = ServerEvent::from_json(
//!     r#"{"type":"conversation.item.deleted","event_id":"event_9","item_id":"item_3"}"#,
//! )
//! .unwrap();
//! match received {
//!     ServerEvent::ConversationItemDeleted(e) => assert_eq!(e.item_id, "item_3"),
//!     other => panic!("unexpected {}", other.event_type()),
//! }
//! ```

mod client;
mod decode;
mod items;
mod server;
mod session;

pub use client::{
    ClientEvent, ResponseAudioConfig, ResponseAudioOutputConfig, ResponseCreateParams,
};
pub use decode::DecodeError;
pub use items::{
    ContentPart, FunctionCallItem, FunctionCallOutputItem, Item, ItemStatus, MessageItem, Role,
};
pub use server::*;
pub use session::{
    AudioConfig, AudioInputConfig, AudioOutputConfig, MaxOutputTokens, Modality, NoiseReduction,
    SessionConfig, SessionKind, ToolChoice, ToolDefinition, TranscriptionConfig, TurnDetection,
    Voice,
};

/// Helpers shared by the unit tests of this module.
#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value;

    /// Parses a sample, failing the test with the sample's name on bad JSON.
    pub(crate) fn value(name: &str, json: &str) -> Value {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("sample {name} is not JSON: {e}"))
    }

    /// Writes each sample and its re-encoding to `$PROTOCOL_SAMPLES_DIR/<kind>/` for the
    /// conformance check against the official `openai` Python models (a development-time
    /// step, see the module's tests). Does nothing when the variable is unset.
    pub(crate) fn dump(kind: &str, samples: &[(&str, &str)], reencode: impl Fn(&str) -> String) {
        let Some(dir) = std::env::var_os("PROTOCOL_SAMPLES_DIR") else {
            return;
        };
        let dir = std::path::Path::new(&dir).join(kind);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, json) in samples {
            std::fs::write(dir.join(format!("{name}.json")), json).unwrap();
            std::fs::write(dir.join(format!("{name}.reencoded.json")), reencode(json)).unwrap();
        }
    }
}
