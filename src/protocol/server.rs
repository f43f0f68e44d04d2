//! Server events: what the server sends (the GA `RealtimeServerEvent` union, 46 types), plus
//! the response resource and usage statistics they carry.
//!
//! Decoding is tolerant: unknown fields are ignored, an unknown `type` becomes
//! [`ServerEvent::Unknown`], and `event_id` defaults to empty when absent.

use serde::de::{Deserializer, Error as _};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::ResponseAudioConfig;
use super::decode::{DecodeError, Tagged, read_type, to_json_string, value_type};
use super::items::{ContentPart, Item};
use super::session::{MaxOutputTokens, Modality, SessionConfig};

macro_rules! server_events {
    ($( $(#[$doc:meta])* $variant:ident($payload:ident) = $ty:literal, )*) => {
        /// An event sent by the server: one variant per GA event type, plus
        /// [`Unknown`](ServerEvent::Unknown) for types this crate does not know.
        ///
        /// Decode with [`ServerEvent::from_json`]; [`Serialize`] (and [`ServerEvent::to_json`])
        /// produce the wire JSON with its `type`, which is what a test server sends.
        ///
        /// ```
        /// use realtime_agents::protocol::ServerEvent;
        ///
        /// let frame = r#"{"type":"response.output_audio.delta","event_id":"event_1",
        ///     "response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,
        ///     "delta":"AAAA"}"#;
        /// match ServerEvent::from_json(frame).unwrap() {
        ///     ServerEvent::ResponseOutputAudioDelta(e) => {
        ///         assert_eq!((e.item_id.as_str(), e.delta.as_str()), ("item_1", "AAAA"));
        ///     }
        ///     other => panic!("unexpected {}", other.event_type()),
        /// }
        ///
        /// let new = ServerEvent::from_json(r#"{"type":"response.hologram.delta","x":1}"#).unwrap();
        /// assert!(matches!(new, ServerEvent::Unknown { ref event_type, .. } if event_type == "response.hologram.delta"));
        /// assert_eq!(new.to_json(), r#"{"type":"response.hologram.delta","x":1}"#);
        /// ```
        // The session and response events hold their (inline) `SessionConfig`/`Response`, so
        // every event is ~660 bytes. That is a memcpy next to the JSON parse of each frame;
        // boxing would change the payload field types other code is written against.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum ServerEvent {
            $( $(#[$doc])* $variant($payload), )*
            /// An event type this crate does not know (kept verbatim).
            Unknown {
                /// The event's `type`.
                event_type: String,
                /// The whole frame as JSON (including `type`).
                raw: Value,
            },
        }

        impl ServerEvent {
            /// Every known server event type, in the order of the variants.
            pub const TYPES: &'static [&'static str] = &[$($ty),*];

            /// The wire `type` of the event.
            pub fn event_type(&self) -> &str {
                match self {
                    $( Self::$variant(_) => $ty, )*
                    Self::Unknown { event_type, .. } => event_type,
                }
            }

            /// The server's `event_id` (empty if the frame had none).
            pub fn event_id(&self) -> &str {
                match self {
                    $( Self::$variant(e) => &e.event_id, )*
                    Self::Unknown { raw, .. } => {
                        raw.get("event_id").and_then(Value::as_str).unwrap_or("")
                    }
                }
            }

            /// Decodes the payload of a known `type`; `None` for an unknown type.
            fn decode_known<'de, D: Deserializer<'de>>(
                event_type: &str,
                deserializer: D,
            ) -> Option<Result<Self, D::Error>> {
                Some(match event_type {
                    $( $ty => $payload::deserialize(deserializer).map(Self::$variant), )*
                    _ => return None,
                })
            }
        }

        impl Serialize for ServerEvent {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( Self::$variant(e) => Tagged { t: $ty, inner: e }.serialize(serializer), )*
                    Self::Unknown { raw, .. } => raw.serialize(serializer),
                }
            }
        }

        $(
            impl From<$payload> for ServerEvent {
                fn from(e: $payload) -> Self {
                    Self::$variant(e)
                }
            }
        )*
    };
}

server_events! {
    /// `session.created`: first event of every connection.
    SessionCreated(SessionCreatedEvent) = "session.created",
    /// `session.updated`: the full effective session after a `session.update`.
    SessionUpdated(SessionUpdatedEvent) = "session.updated",
    /// `error`: a client or server error. The session stays open.
    Error(ErrorEvent) = "error",
    /// `rate_limits.updated`: rate limits at the start of a response.
    RateLimitsUpdated(RateLimitsUpdatedEvent) = "rate_limits.updated",
    /// `conversation.created`: the default conversation exists (right after `session.created`).
    ConversationCreated(ConversationCreatedEvent) = "conversation.created",
    /// `conversation.item.added`: an item was added to the conversation.
    ConversationItemAdded(ConversationItemAddedEvent) = "conversation.item.added",
    /// `conversation.item.created`: beta-era name of `conversation.item.added`, still in the GA union.
    ConversationItemCreated(ConversationItemCreatedEvent) = "conversation.item.created",
    /// `conversation.item.done`: an item is final.
    ConversationItemDone(ConversationItemDoneEvent) = "conversation.item.done",
    /// `conversation.item.retrieved`: answer to `conversation.item.retrieve`.
    ConversationItemRetrieved(ConversationItemRetrievedEvent) = "conversation.item.retrieved",
    /// `conversation.item.deleted`: an item was deleted.
    ConversationItemDeleted(ConversationItemDeletedEvent) = "conversation.item.deleted",
    /// `conversation.item.truncated`: an assistant audio item was truncated.
    ConversationItemTruncated(ConversationItemTruncatedEvent) = "conversation.item.truncated",
    /// `conversation.item.input_audio_transcription.delta`: partial user transcript.
    ConversationItemInputAudioTranscriptionDelta(ConversationItemInputAudioTranscriptionDeltaEvent) =
        "conversation.item.input_audio_transcription.delta",
    /// `conversation.item.input_audio_transcription.completed`: final user transcript.
    ConversationItemInputAudioTranscriptionCompleted(ConversationItemInputAudioTranscriptionCompletedEvent) =
        "conversation.item.input_audio_transcription.completed",
    /// `conversation.item.input_audio_transcription.failed`: user transcription failed.
    ConversationItemInputAudioTranscriptionFailed(ConversationItemInputAudioTranscriptionFailedEvent) =
        "conversation.item.input_audio_transcription.failed",
    /// `conversation.item.input_audio_transcription.segment`: a diarized transcript segment.
    ConversationItemInputAudioTranscriptionSegment(ConversationItemInputAudioTranscriptionSegmentEvent) =
        "conversation.item.input_audio_transcription.segment",
    /// `input_audio_buffer.speech_started`: VAD heard speech (barge-in point).
    InputAudioBufferSpeechStarted(InputAudioBufferSpeechStartedEvent) = "input_audio_buffer.speech_started",
    /// `input_audio_buffer.speech_stopped`: VAD heard the end of speech.
    InputAudioBufferSpeechStopped(InputAudioBufferSpeechStoppedEvent) = "input_audio_buffer.speech_stopped",
    /// `input_audio_buffer.committed`: the input buffer became a user item.
    InputAudioBufferCommitted(InputAudioBufferCommittedEvent) = "input_audio_buffer.committed",
    /// `input_audio_buffer.cleared`: answer to `input_audio_buffer.clear`.
    InputAudioBufferCleared(InputAudioBufferClearedEvent) = "input_audio_buffer.cleared",
    /// `input_audio_buffer.timeout_triggered`: server VAD's `idle_timeout_ms` fired.
    InputAudioBufferTimeoutTriggered(InputAudioBufferTimeoutTriggeredEvent) = "input_audio_buffer.timeout_triggered",
    /// `input_audio_buffer.dtmf_event_received`: a telephone key was pressed (SIP only).
    InputAudioBufferDtmfEventReceived(InputAudioBufferDtmfEventReceivedEvent) =
        "input_audio_buffer.dtmf_event_received",
    /// `output_audio_buffer.started`: server-side playback started (WebRTC/SIP only).
    OutputAudioBufferStarted(OutputAudioBufferStartedEvent) = "output_audio_buffer.started",
    /// `output_audio_buffer.stopped`: server-side playback drained (WebRTC/SIP only).
    OutputAudioBufferStopped(OutputAudioBufferStoppedEvent) = "output_audio_buffer.stopped",
    /// `output_audio_buffer.cleared`: server-side playback flushed (WebRTC/SIP only).
    OutputAudioBufferCleared(OutputAudioBufferClearedEvent) = "output_audio_buffer.cleared",
    /// `response.created`: a response started.
    ResponseCreated(ResponseCreatedEvent) = "response.created",
    /// `response.done`: a response ended (any status), with usage.
    ResponseDone(ResponseDoneEvent) = "response.done",
    /// `response.output_item.added`: the response produced a new item.
    ResponseOutputItemAdded(ResponseOutputItemAddedEvent) = "response.output_item.added",
    /// `response.output_item.done`: an output item is complete (function calls: run the tool).
    ResponseOutputItemDone(ResponseOutputItemDoneEvent) = "response.output_item.done",
    /// `response.content_part.added`: a content part started.
    ResponseContentPartAdded(ResponseContentPartAddedEvent) = "response.content_part.added",
    /// `response.content_part.done`: a content part is complete.
    ResponseContentPartDone(ResponseContentPartDoneEvent) = "response.content_part.done",
    /// `response.output_audio.delta`: a chunk of assistant audio.
    ResponseOutputAudioDelta(ResponseOutputAudioDeltaEvent) = "response.output_audio.delta",
    /// `response.output_audio.done`: assistant audio of a part is complete.
    ResponseOutputAudioDone(ResponseOutputAudioDoneEvent) = "response.output_audio.done",
    /// `response.output_audio_transcript.delta`: a chunk of the assistant's audio transcript.
    ResponseOutputAudioTranscriptDelta(ResponseOutputAudioTranscriptDeltaEvent) =
        "response.output_audio_transcript.delta",
    /// `response.output_audio_transcript.done`: the assistant's audio transcript is complete.
    ResponseOutputAudioTranscriptDone(ResponseOutputAudioTranscriptDoneEvent) =
        "response.output_audio_transcript.done",
    /// `response.output_text.delta`: a chunk of assistant text.
    ResponseOutputTextDelta(ResponseOutputTextDeltaEvent) = "response.output_text.delta",
    /// `response.output_text.done`: assistant text of a part is complete.
    ResponseOutputTextDone(ResponseOutputTextDoneEvent) = "response.output_text.done",
    /// `response.function_call_arguments.delta`: a chunk of function call arguments.
    ResponseFunctionCallArgumentsDelta(ResponseFunctionCallArgumentsDeltaEvent) =
        "response.function_call_arguments.delta",
    /// `response.function_call_arguments.done`: function call arguments are complete.
    ResponseFunctionCallArgumentsDone(ResponseFunctionCallArgumentsDoneEvent) =
        "response.function_call_arguments.done",
    /// `mcp_list_tools.in_progress`: listing a hosted MCP server's tools.
    McpListToolsInProgress(McpListToolsInProgressEvent) = "mcp_list_tools.in_progress",
    /// `mcp_list_tools.completed`: MCP tools listed.
    McpListToolsCompleted(McpListToolsCompletedEvent) = "mcp_list_tools.completed",
    /// `mcp_list_tools.failed`: listing MCP tools failed.
    McpListToolsFailed(McpListToolsFailedEvent) = "mcp_list_tools.failed",
    /// `response.mcp_call.in_progress`: a hosted MCP tool call started.
    ResponseMcpCallInProgress(ResponseMcpCallInProgressEvent) = "response.mcp_call.in_progress",
    /// `response.mcp_call.completed`: a hosted MCP tool call finished.
    ResponseMcpCallCompleted(ResponseMcpCallCompletedEvent) = "response.mcp_call.completed",
    /// `response.mcp_call.failed`: a hosted MCP tool call failed.
    ResponseMcpCallFailed(ResponseMcpCallFailedEvent) = "response.mcp_call.failed",
    /// `response.mcp_call_arguments.delta`: a chunk of MCP call arguments.
    ResponseMcpCallArgumentsDelta(ResponseMcpCallArgumentsDeltaEvent) = "response.mcp_call_arguments.delta",
    /// `response.mcp_call_arguments.done`: MCP call arguments are complete.
    ResponseMcpCallArgumentsDone(ResponseMcpCallArgumentsDoneEvent) = "response.mcp_call_arguments.done",
}

impl ServerEvent {
    /// Decodes one JSON text frame.
    ///
    /// Two passes: the first reads only `type` (borrowed, nothing else kept), the second
    /// decodes straight into that type's payload struct. Errors: not JSON, not an object, or
    /// no string `type` (`event_type: None`); a known type with missing or mistyped fields
    /// (`event_type: Some(..)`). An unknown type is `Ok(ServerEvent::Unknown{..})`.
    ///
    /// ```
    /// use realtime_agents::protocol::ServerEvent;
    ///
    /// let e = ServerEvent::from_json(r#"{"type":"input_audio_buffer.speech_started",
    ///     "event_id":"event_1","audio_start_ms":1000,"item_id":"item_1","new_field":true}"#).unwrap();
    /// assert_eq!(e.event_type(), "input_audio_buffer.speech_started");
    /// assert!(ServerEvent::from_json("[1,2]").is_err());
    /// ```
    pub fn from_json(text: &str) -> Result<ServerEvent, DecodeError> {
        let t = read_type(text)?;
        let mut de = serde_json::Deserializer::from_str(text);
        match Self::decode_known(&t, &mut de) {
            Some(result) => result.map_err(|e| DecodeError::new(Some(&*t), e)),
            None => Ok(Self::Unknown {
                raw: serde_json::from_str(text).map_err(|e| DecodeError::new(Some(&*t), e))?,
                event_type: t.into_owned(),
            }),
        }
    }

    /// Decodes an already parsed JSON value (same rules as [`ServerEvent::from_json`]).
    pub fn from_value(value: Value) -> Result<ServerEvent, DecodeError> {
        let t = value_type(&value)?.to_owned();
        match Self::decode_known(&t, &value) {
            Some(result) => result.map_err(|e| DecodeError::new(Some(t.as_str()), e)),
            None => Ok(Self::Unknown {
                event_type: t,
                raw: value,
            }),
        }
    }

    /// Encodes the event as the JSON frame the server would send (with its `type`).
    pub fn to_json(&self) -> String {
        to_json_string(self)
    }
}

impl<'de> Deserialize<'de> for ServerEvent {
    /// Goes through [`serde_json::Value`]; prefer [`ServerEvent::from_json`] on hot paths.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(D::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------
// Session, errors, rate limits, conversation

/// Payload of `session.created`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionCreatedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The session's initial configuration.
    pub session: SessionConfig,
}

/// Payload of `session.updated`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionUpdatedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The full effective configuration after the update.
    pub session: SessionConfig,
}

/// Payload of `error`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// What went wrong.
    pub error: ErrorDetails,
}

/// The `error` object of an [`ErrorEvent`].
///
/// ```
/// use realtime_agents::protocol::ErrorDetails;
///
/// let details: ErrorDetails = serde_json::from_str(r#"{"type":"invalid_request_error",
///     "code":"response_cancel_not_active","message":"Cancellation failed: no active response found.",
///     "param":null,"event_id":"evt_7"}"#).unwrap();
/// let error = realtime_agents::ServerError::from(details);
/// assert_eq!(error.code.as_deref(), Some("response_cancel_not_active"));
/// assert_eq!(error.event_id.as_deref(), Some("evt_7"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetails {
    /// Error class, e.g. `invalid_request_error`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Machine-readable code, e.g. `conversation_already_has_active_response`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human-readable message.
    pub message: String,
    /// The parameter the error refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// `event_id` of the client event that caused the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

impl From<ErrorDetails> for crate::ServerError {
    fn from(d: ErrorDetails) -> Self {
        let mut e = crate::ServerError::new(d.kind, d.message);
        e.code = d.code;
        e.param = d.param;
        e.event_id = d.event_id;
        e
    }
}

/// Payload of `rate_limits.updated`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimitsUpdatedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The limits (`requests`, `tokens`).
    pub rate_limits: Vec<RateLimit>,
}

/// One rate limit of a [`RateLimitsUpdatedEvent`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// `requests` or `tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The maximum allowed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What remains before the limit is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// Seconds until the limit resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_seconds: Option<f64>,
}

/// Payload of `conversation.created`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationCreatedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The conversation.
    pub conversation: Conversation,
}

/// The conversation resource of a [`ConversationCreatedEvent`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Conversation id, e.g. `conv_…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Object type, `realtime.conversation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Conversation items

/// Payload of `conversation.item.added`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemAddedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The item this one follows (`None`: first item). Use it for ordering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_item_id: Option<String>,
    /// The item.
    pub item: Item,
}

/// Payload of `conversation.item.created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemCreatedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The item this one follows (`None`: first item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_item_id: Option<String>,
    /// The item.
    pub item: Item,
}

/// Payload of `conversation.item.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemDoneEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The item this one follows (`None`: first item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_item_id: Option<String>,
    /// The final item.
    pub item: Item,
}

/// Payload of `conversation.item.retrieved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemRetrievedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The server's copy of the item (including audio).
    pub item: Item,
}

/// Payload of `conversation.item.deleted`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemDeletedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The deleted item.
    pub item_id: String,
}

/// Payload of `conversation.item.truncated`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemTruncatedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The truncated assistant item.
    pub item_id: String,
    /// The truncated content part.
    pub content_index: u32,
    /// Where the audio was cut, in ms.
    pub audio_end_ms: u64,
}

/// Payload of `conversation.item.input_audio_transcription.delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemInputAudioTranscriptionDeltaEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The user item being transcribed.
    pub item_id: String,
    /// The audio content part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_index: Option<u32>,
    /// The new text.
    #[serde(default)]
    pub delta: String,
    /// Token log probabilities (when requested with `include`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
}

/// Payload of `conversation.item.input_audio_transcription.completed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemInputAudioTranscriptionCompletedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The user item.
    pub item_id: String,
    /// The audio content part.
    pub content_index: u32,
    /// The transcript.
    pub transcript: String,
    /// Transcription usage: `{type:"tokens", input_tokens, output_tokens, total_tokens, …}`
    /// or `{type:"duration", seconds}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    /// Token log probabilities (when requested with `include`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
    /// Detected languages: `[{code}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Value>,
}

/// Payload of `conversation.item.input_audio_transcription.failed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemInputAudioTranscriptionFailedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The user item.
    pub item_id: String,
    /// The audio content part.
    pub content_index: u32,
    /// What went wrong.
    pub error: TranscriptionError,
}

/// The `error` of a [`ConversationItemInputAudioTranscriptionFailedEvent`] (all fields optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptionError {
    /// Error class.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Related parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

/// Payload of `conversation.item.input_audio_transcription.segment` (diarization).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationItemInputAudioTranscriptionSegmentEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The user item.
    pub item_id: String,
    /// The audio content part.
    pub content_index: u32,
    /// Segment id.
    pub id: String,
    /// Segment text.
    pub text: String,
    /// Speaker label.
    pub speaker: String,
    /// Start, in seconds.
    pub start: f64,
    /// End, in seconds.
    pub end: f64,
}

// ---------------------------------------------------------------------------------------
// Input and output audio buffers

/// Payload of `input_audio_buffer.speech_started`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputAudioBufferSpeechStartedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// Where speech started, in ms of all audio appended this session.
    pub audio_start_ms: u64,
    /// The user item that will be created when speech stops.
    pub item_id: String,
}

/// Payload of `input_audio_buffer.speech_stopped`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputAudioBufferSpeechStoppedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// Where speech stopped, in ms since the session started.
    pub audio_end_ms: u64,
    /// The user item that will be created.
    pub item_id: String,
}

/// Payload of `input_audio_buffer.committed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputAudioBufferCommittedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The user item created from the buffer.
    pub item_id: String,
    /// The item it follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_item_id: Option<String>,
}

/// Payload of `input_audio_buffer.cleared`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputAudioBufferClearedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
}

/// Payload of `input_audio_buffer.timeout_triggered`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputAudioBufferTimeoutTriggeredEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The item associated with the idle segment.
    pub item_id: String,
    /// Start of the idle segment, in ms of appended audio.
    pub audio_start_ms: u64,
    /// When the timeout fired, in ms of appended audio.
    pub audio_end_ms: u64,
}

/// Payload of `input_audio_buffer.dtmf_event_received` (SIP only).
///
/// The official model has no `event_id` for this event; it stays empty then.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputAudioBufferDtmfEventReceivedEvent {
    /// Server event id (usually absent for this event).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The key pressed: `0`–`9`, `*`, `#`.
    pub event: String,
    /// When the server received it, Unix seconds.
    pub received_at: i64,
}

/// Payload of `output_audio_buffer.started` (WebRTC/SIP only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputAudioBufferStartedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response producing the audio.
    pub response_id: String,
}

/// Payload of `output_audio_buffer.stopped` (WebRTC/SIP only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputAudioBufferStoppedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response whose audio finished.
    pub response_id: String,
}

/// Payload of `output_audio_buffer.cleared` (WebRTC/SIP only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputAudioBufferClearedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response whose audio was cut off.
    pub response_id: String,
}

// ---------------------------------------------------------------------------------------
// Responses

/// Payload of `response.created`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseCreatedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The new response (`status: in_progress`).
    pub response: Response,
}

/// Payload of `response.done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseDoneEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The finished response: status, output items, usage.
    pub response: Response,
}

/// The response resource of `response.created` / `response.done`.
///
/// ```
/// use realtime_agents::protocol::{Response, ResponseStatus};
///
/// let r: Response = serde_json::from_str(r#"{"id":"resp_1","object":"realtime.response",
///     "status":"cancelled","status_details":{"type":"cancelled","reason":"turn_detected"},
///     "output":[]}"#).unwrap();
/// assert_eq!(r.status, Some(ResponseStatus::Cancelled));
/// assert_eq!(r.status_reason(), Some("turn_detected"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Response id, e.g. `resp_…`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Object type, `realtime.response`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// `in_progress`, then `completed`, `cancelled`, `failed` or `incomplete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ResponseStatus>,
    /// `{type, reason?, error?}`: why the response did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<Value>,
    /// The items the response produced.
    #[serde(default)]
    pub output: Vec<Item>,
    /// Token usage (in `response.done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The conversation the response is added to (absent for out-of-band responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// Metadata given in `response.create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// The modalities the model used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<Modality>>,
    /// The output token limit that applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<MaxOutputTokens>,
    /// The output audio settings that applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<ResponseAudioConfig>,
}

impl Response {
    /// `status_details.reason`: `turn_detected`, `client_cancelled`, `max_output_tokens`,
    /// `content_filter`.
    pub fn status_reason(&self) -> Option<&str> {
        self.status_details.as_ref()?.get("reason")?.as_str()
    }

    /// `status_details.error`, set when the response failed.
    pub fn status_error(&self) -> Option<&Value> {
        self.status_details.as_ref()?.get("error")
    }
}

/// Status of a [`Response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Still generating.
    InProgress,
    /// Finished normally.
    Completed,
    /// Cancelled (barge-in or `response.cancel`).
    Cancelled,
    /// Failed; see `status_details.error`.
    Failed,
    /// Cut short, e.g. by `max_output_tokens` or a content filter.
    Incomplete,
}

/// Token usage of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input plus output tokens.
    #[serde(default)]
    pub total_tokens: u64,
    /// Input tokens (text and audio).
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens (text and audio).
    #[serde(default)]
    pub output_tokens: u64,
    /// Input token breakdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_token_details: Option<InputTokenDetails>,
    /// Output token breakdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_token_details: Option<OutputTokenDetails>,
}

/// Input token breakdown of [`Usage`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTokenDetails {
    /// Text tokens.
    #[serde(default)]
    pub text_tokens: u64,
    /// Audio tokens.
    #[serde(default)]
    pub audio_tokens: u64,
    /// Image tokens.
    #[serde(default)]
    pub image_tokens: u64,
    /// Cached tokens.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Cached tokens by modality: `{text_tokens, audio_tokens, image_tokens}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens_details: Option<Value>,
}

/// Output token breakdown of [`Usage`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTokenDetails {
    /// Text tokens.
    #[serde(default)]
    pub text_tokens: u64,
    /// Audio tokens.
    #[serde(default)]
    pub audio_tokens: u64,
}

/// Payload of `response.output_item.added`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutputItemAddedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// The new item (`status: in_progress`).
    pub item: Item,
}

/// Payload of `response.output_item.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutputItemDoneEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// The finished item (`completed` or `incomplete`).
    pub item: Item,
}

/// Payload of `response.content_part.added`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseContentPartAddedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// Position of the part in the item's content.
    pub content_index: u32,
    /// The part (`text` or `audio`), usually empty so far.
    pub part: ContentPart,
}

/// Payload of `response.content_part.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseContentPartDoneEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// Position of the part in the item's content.
    pub content_index: u32,
    /// The finished part.
    pub part: ContentPart,
}

/// Payload of `response.output_audio.delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutputAudioDeltaEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The assistant item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// Position of the audio part in the item's content.
    pub content_index: u32,
    /// Base64 audio in the session's output format.
    pub delta: String,
}

/// Payload of `response.output_audio.done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutputAudioDoneEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The assistant item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// Position of the audio part in the item's content.
    pub content_index: u32,
}

/// Payload of `response.output_audio_transcript.delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutputAudioTranscriptDeltaEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The assistant item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// Position of the audio part in the item's content.
    pub content_index: u32,
    /// The new transcript text.
    pub delta: String,
}

/// Payload of `response.output_audio_transcript.done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutputAudioTranscriptDoneEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The assistant item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// Position of the audio part in the item's content.
    pub content_index: u32,
    /// The full transcript.
    pub transcript: String,
}

/// Payload of `response.output_text.delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutputTextDeltaEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The assistant item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// Position of the text part in the item's content.
    pub content_index: u32,
    /// The new text.
    pub delta: String,
}

/// Payload of `response.output_text.done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseOutputTextDoneEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The assistant item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// Position of the text part in the item's content.
    pub content_index: u32,
    /// The full text.
    pub text: String,
}

/// Payload of `response.function_call_arguments.delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseFunctionCallArgumentsDeltaEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The function call item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// The call id.
    pub call_id: String,
    /// The new argument text (a piece of a JSON string).
    pub delta: String,
}

/// Payload of `response.function_call_arguments.done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseFunctionCallArgumentsDoneEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The function call item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// The call id.
    pub call_id: String,
    /// The function name (the official model requires it; tolerated when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The full arguments as a JSON string.
    pub arguments: String,
}

// ---------------------------------------------------------------------------------------
// Hosted MCP

/// Payload of `mcp_list_tools.in_progress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct McpListToolsInProgressEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The `mcp_list_tools` item.
    pub item_id: String,
}

/// Payload of `mcp_list_tools.completed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct McpListToolsCompletedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The `mcp_list_tools` item.
    pub item_id: String,
}

/// Payload of `mcp_list_tools.failed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct McpListToolsFailedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The `mcp_list_tools` item.
    pub item_id: String,
}

/// Payload of `response.mcp_call.in_progress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMcpCallInProgressEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The `mcp_call` item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
}

/// Payload of `response.mcp_call.completed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMcpCallCompletedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The `mcp_call` item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
}

/// Payload of `response.mcp_call.failed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMcpCallFailedEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The `mcp_call` item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
}

/// Payload of `response.mcp_call_arguments.delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMcpCallArgumentsDeltaEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The `mcp_call` item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// The new argument text.
    pub delta: String,
    /// Set when the delta text was obfuscated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obfuscation: Option<String>,
}

/// Payload of `response.mcp_call_arguments.done`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMcpCallArgumentsDoneEvent {
    /// Server event id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    /// The response.
    pub response_id: String,
    /// The `mcp_call` item.
    pub item_id: String,
    /// Position of the item in the response's output.
    pub output_index: u32,
    /// The full arguments as a JSON string.
    pub arguments: String,
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
