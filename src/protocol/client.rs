//! Client events: what the client sends to the server (the GA `RealtimeClientEvent` union).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decode::{DecodeError, read_type, to_json_string, value_type};
use super::items::Item;
use super::session::{MaxOutputTokens, Modality, SessionConfig, ToolChoice, ToolDefinition, Voice};
use crate::audio::AudioFormat;

/// An event sent by the client (11 types).
///
/// Every variant accepts an optional client-chosen `event_id`; an `error` caused by the event
/// echoes it in `error.event_id`.
///
/// ```
/// use realtime_agents::protocol::{ClientEvent, Item};
///
/// let event = ClientEvent::ConversationItemCreate {
///     event_id: Some("evt_1".into()),
///     previous_item_id: None,
///     item: Item::user_text("Hello!"),
/// };
/// assert_eq!(event.event_type(), "conversation.item.create");
/// let json = event.to_json();
/// assert!(json.starts_with(r#"{"type":"conversation.item.create","event_id":"evt_1","#));
/// assert_eq!(ClientEvent::from_json(&json).unwrap(), event);
///
/// let append = ClientEvent::InputAudioBufferAppend { event_id: None, audio: "AAAA".into() };
/// assert_eq!(append.to_json(), r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#);
/// ```
// `SessionUpdate` carries the whole (inline) `SessionConfig`; events are built and encoded
// right away, so the size does not matter and a `Box` would only make construction noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum ClientEvent {
    /// `session.update`: change the session configuration (`session.type` is required).
    #[serde(rename = "session.update")]
    SessionUpdate {
        /// Optional client-chosen event id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The fields to change.
        session: SessionConfig,
    },
    /// `input_audio_buffer.append`: add base64 audio to the input buffer.
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioBufferAppend {
        /// Optional client-chosen event id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// Base64 audio in the session's input format (at most 15 MB per event).
        audio: String,
    },
    /// `input_audio_buffer.commit`: turn the buffer into a user item (manual turns; ≥ 100 ms).
    #[serde(rename = "input_audio_buffer.commit")]
    InputAudioBufferCommit {
        /// Optional client-chosen event id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
    /// `input_audio_buffer.clear`: drop uncommitted input audio.
    #[serde(rename = "input_audio_buffer.clear")]
    InputAudioBufferClear {
        /// Optional client-chosen event id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
    /// `conversation.item.create`: add an item (message, function call output, …).
    #[serde(rename = "conversation.item.create")]
    ConversationItemCreate {
        /// Optional client-chosen event id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// Insert after this item (`"root"`: at the start); absent: append.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_item_id: Option<String>,
        /// The item.
        item: Item,
    },
    /// `conversation.item.retrieve`: ask for the server's copy of an item.
    #[serde(rename = "conversation.item.retrieve")]
    ConversationItemRetrieve {
        /// Optional client-chosen event id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The item to retrieve.
        item_id: String,
    },
    /// `conversation.item.truncate`: cut an assistant audio item at what was actually played.
    #[serde(rename = "conversation.item.truncate")]
    ConversationItemTruncate {
        /// Optional client-chosen event id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The assistant message item.
        item_id: String,
        /// The audio content part (normally 0).
        content_index: u32,
        /// Audio played, in ms; must not exceed the audio the item has.
        audio_end_ms: u64,
    },
    /// `conversation.item.delete`: remove an item.
    #[serde(rename = "conversation.item.delete")]
    ConversationItemDelete {
        /// Optional client-chosen event id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The item to delete.
        item_id: String,
    },
    /// `response.create`: ask the model to respond (at most one active response at a time).
    #[serde(rename = "response.create")]
    ResponseCreate {
        /// Optional client-chosen event id (recommended, to match errors).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// Per-response overrides.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response: Option<ResponseCreateParams>,
    },
    /// `response.cancel`: stop the active response.
    #[serde(rename = "response.cancel")]
    ResponseCancel {
        /// Optional client-chosen event id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The response to cancel; absent: the active one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_id: Option<String>,
    },
    /// `output_audio_buffer.clear`: flush server-side playback (WebRTC/SIP only, never on WebSocket).
    #[serde(rename = "output_audio_buffer.clear")]
    OutputAudioBufferClear {
        /// Optional client-chosen event id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
    },
}

impl ClientEvent {
    /// Every client event type, in the order of the variants.
    pub const TYPES: [&'static str; 11] = [
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    ];

    /// Encodes the event as one JSON text frame (no nulls for unset fields).
    pub fn to_json(&self) -> String {
        to_json_string(self)
    }

    /// The wire `type` of the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::SessionUpdate { .. } => "session.update",
            Self::InputAudioBufferAppend { .. } => "input_audio_buffer.append",
            Self::InputAudioBufferCommit { .. } => "input_audio_buffer.commit",
            Self::InputAudioBufferClear { .. } => "input_audio_buffer.clear",
            Self::ConversationItemCreate { .. } => "conversation.item.create",
            Self::ConversationItemRetrieve { .. } => "conversation.item.retrieve",
            Self::ConversationItemTruncate { .. } => "conversation.item.truncate",
            Self::ConversationItemDelete { .. } => "conversation.item.delete",
            Self::ResponseCreate { .. } => "response.create",
            Self::ResponseCancel { .. } => "response.cancel",
            Self::OutputAudioBufferClear { .. } => "output_audio_buffer.clear",
        }
    }

    /// The client-chosen `event_id`, if set.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            Self::SessionUpdate { event_id, .. }
            | Self::InputAudioBufferAppend { event_id, .. }
            | Self::InputAudioBufferCommit { event_id }
            | Self::InputAudioBufferClear { event_id }
            | Self::ConversationItemCreate { event_id, .. }
            | Self::ConversationItemRetrieve { event_id, .. }
            | Self::ConversationItemTruncate { event_id, .. }
            | Self::ConversationItemDelete { event_id, .. }
            | Self::ResponseCreate { event_id, .. }
            | Self::ResponseCancel { event_id, .. }
            | Self::OutputAudioBufferClear { event_id } => event_id.as_deref(),
        }
    }

    /// Decodes a client event from a JSON text frame (what a server or the simulator receives).
    ///
    /// Unlike server events there is no `Unknown` fallback: an unknown `type` is an error.
    ///
    /// ```
    /// use realtime_agents::protocol::ClientEvent;
    ///
    /// let e = ClientEvent::from_json(r#"{"type":"response.cancel"}"#).unwrap();
    /// assert_eq!(e, ClientEvent::ResponseCancel { event_id: None, response_id: None });
    /// let err = ClientEvent::from_json(r#"{"type":"transcription_session.update"}"#).unwrap_err();
    /// assert_eq!(err.event_type.as_deref(), Some("transcription_session.update"));
    /// ```
    pub fn from_json(text: &str) -> Result<ClientEvent, DecodeError> {
        let t = read_type(text)?;
        // Second pass straight into the variant's body; the first pass already checked that
        // this is a single JSON object, so the body structs never see anything else.
        macro_rules! body {
            ($body:ty) => {
                serde_json::from_str::<$body>(text)
                    .map(Into::into)
                    .map_err(|e| DecodeError::new(Some(&*t), e))
            };
        }
        match &*t {
            "session.update" => body!(bodies::SessionUpdate),
            "input_audio_buffer.append" => body!(bodies::InputAudioBufferAppend),
            "input_audio_buffer.commit" => body!(bodies::InputAudioBufferCommit),
            "input_audio_buffer.clear" => body!(bodies::InputAudioBufferClear),
            "conversation.item.create" => body!(bodies::ConversationItemCreate),
            "conversation.item.retrieve" => body!(bodies::ConversationItemRetrieve),
            "conversation.item.truncate" => body!(bodies::ConversationItemTruncate),
            "conversation.item.delete" => body!(bodies::ConversationItemDelete),
            "response.create" => body!(bodies::ResponseCreate),
            "response.cancel" => body!(bodies::ResponseCancel),
            "output_audio_buffer.clear" => body!(bodies::OutputAudioBufferClear),
            other => Err(DecodeError::new(Some(other), "unknown client event type")),
        }
    }

    /// Decodes a client event from an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<ClientEvent, DecodeError> {
        let t = value_type(&value)?.to_owned();
        if !Self::TYPES.contains(&t.as_str()) {
            return Err(DecodeError::new(
                Some(t.as_str()),
                "unknown client event type",
            ));
        }
        serde_json::from_value(value).map_err(|e| DecodeError::new(Some(t.as_str()), e))
    }
}

/// Per-variant body structs for the fast decoding path (no `type` field: it is ignored).
mod bodies {
    use super::*;

    macro_rules! bodies {
        ($( $name:ident { $($field:ident : $ty:ty),* $(,)? } )*) => {$(
            #[derive(serde::Deserialize)]
            pub(super) struct $name {
                $( $field: $ty, )*
            }
            impl From<$name> for ClientEvent {
                fn from(b: $name) -> Self {
                    ClientEvent::$name { $( $field: b.$field, )* }
                }
            }
        )*};
    }

    // Missing `Option` fields decode as `None` without `#[serde(default)]`.
    bodies! {
        SessionUpdate { event_id: Option<String>, session: SessionConfig }
        InputAudioBufferAppend { event_id: Option<String>, audio: String }
        InputAudioBufferCommit { event_id: Option<String> }
        InputAudioBufferClear { event_id: Option<String> }
        ConversationItemCreate { event_id: Option<String>, previous_item_id: Option<String>, item: Item }
        ConversationItemRetrieve { event_id: Option<String>, item_id: String }
        ConversationItemTruncate { event_id: Option<String>, item_id: String, content_index: u32, audio_end_ms: u64 }
        ConversationItemDelete { event_id: Option<String>, item_id: String }
        ResponseCreate { event_id: Option<String>, response: Option<ResponseCreateParams> }
        ResponseCancel { event_id: Option<String>, response_id: Option<String> }
        OutputAudioBufferClear { event_id: Option<String> }
    }
}

/// Per-response overrides for `response.create` (all optional).
///
/// ```
/// use realtime_agents::protocol::{ClientEvent, Item, Modality, ResponseCreateParams};
///
/// // An out-of-band text response that is not added to the conversation.
/// let params = ResponseCreateParams {
///     conversation: Some("none".into()),
///     output_modalities: Some(vec![Modality::Text]),
///     instructions: Some("Classify the topic in one word.".into()),
///     input: Some(vec![Item::user_text("I'd like to change my flight.")]),
///     ..Default::default()
/// };
/// let event = ClientEvent::ResponseCreate { event_id: None, response: Some(params) };
/// let json: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
/// assert_eq!(json["response"]["conversation"], "none");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseCreateParams {
    /// Instructions for this response only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `["audio"]` or `["text"]` for this response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<Modality>>,
    /// Tools for this response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolDefinition>>,
    /// Tool choice for this response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Output token limit for this response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<MaxOutputTokens>,
    /// `"auto"` (default conversation) or `"none"` (out-of-band response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    /// Input items for this response instead of (or referencing) the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<Item>>,
    /// Up to 16 string key-value pairs, echoed in `response.created`/`response.done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Output audio overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<ResponseAudioConfig>,
    /// Prompt template reference: `{id, version?, variables?}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Value>,
    /// Reasoning configuration (`{effort}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Value>,
    /// Whether the model may call several tools in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
}

/// Audio settings of one response (`response.audio`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseAudioConfig {
    /// Output audio settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ResponseAudioOutputConfig>,
}

/// Output audio settings of one response (`response.audio.output`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseAudioOutputConfig {
    /// Output audio format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AudioFormat>,
    /// Output voice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<Voice>,
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
