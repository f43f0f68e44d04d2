//! Conversation items (messages, function calls and their outputs) and content parts.

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An item of the conversation.
///
/// Tagged by `"type"`: `message`, `function_call`, `function_call_output`. Any other type
/// (`mcp_call`, `mcp_list_tools`, `mcp_approval_request`, future types) decodes to
/// [`Item::Other`] with the raw JSON, which re-encodes unchanged.
///
/// ```
/// use realtime_agents::protocol::Item;
///
/// let item = Item::user_text("What's the weather in Paris?");
/// assert_eq!(
///     serde_json::to_string(&item).unwrap(),
///     r#"{"type":"message","role":"user","content":[{"type":"input_text","text":"What's the weather in Paris?"}]}"#
/// );
///
/// let output = Item::function_call_output("call_1", r#"{"temp_c":21}"#);
/// assert_eq!(serde_json::to_value(&output).unwrap()["type"], "function_call_output");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A `message` from the user, the assistant or the system.
    Message(MessageItem),
    /// A `function_call` made by the model.
    FunctionCall(FunctionCallItem),
    /// A `function_call_output`: the client's answer to a function call.
    FunctionCallOutput(FunctionCallOutputItem),
    /// Any other item type, kept verbatim.
    Other(Value),
}

impl Item {
    /// A user message with one `input_text` part.
    pub fn user_text(text: impl Into<String>) -> Self {
        Self::message(Role::User, ContentPart::InputText { text: text.into() })
    }

    /// A user message with one `input_image` part. `url` is a `data:image/…;base64,…` URI.
    pub fn user_image(url: impl Into<String>) -> Self {
        Self::message(
            Role::User,
            ContentPart::InputImage {
                image_url: Some(url.into()),
                detail: None,
            },
        )
    }

    /// A user message with one `input_audio` part (base64 audio in the session's input format).
    pub fn user_audio(audio_base64: impl Into<String>) -> Self {
        Self::message(
            Role::User,
            ContentPart::InputAudio {
                audio: Some(audio_base64.into()),
                transcript: None,
            },
        )
    }

    /// A system message with one `input_text` part.
    pub fn system_text(text: impl Into<String>) -> Self {
        Self::message(Role::System, ContentPart::InputText { text: text.into() })
    }

    /// An assistant message with one `output_text` part (e.g. to seed history).
    pub fn assistant_text(text: impl Into<String>) -> Self {
        Self::message(
            Role::Assistant,
            ContentPart::OutputText { text: text.into() },
        )
    }

    /// A `function_call_output` answering the call `call_id`.
    pub fn function_call_output(call_id: impl Into<String>, output: impl Into<String>) -> Self {
        Self::FunctionCallOutput(FunctionCallOutputItem {
            id: None,
            object: None,
            status: None,
            call_id: call_id.into(),
            output: output.into(),
        })
    }

    fn message(role: Role, part: ContentPart) -> Self {
        Self::Message(MessageItem {
            id: None,
            object: None,
            status: None,
            role,
            content: vec![part],
        })
    }

    /// The item id, if it has one (server-assigned items always do).
    ///
    /// ```
    /// use realtime_agents::protocol::Item;
    /// let item: Item = serde_json::from_str(r#"{"type":"mcp_call","id":"mcp_1","name":"x","arguments":"{}","server_label":"s"}"#).unwrap();
    /// assert_eq!(item.id(), Some("mcp_1"));
    /// assert_eq!(Item::user_text("hi").id(), None);
    /// ```
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Message(m) => m.id.as_deref(),
            Self::FunctionCall(c) => c.id.as_deref(),
            Self::FunctionCallOutput(o) => o.id.as_deref(),
            Self::Other(raw) => raw.get("id").and_then(Value::as_str),
        }
    }

    /// The wire `type` of the item.
    pub fn item_type(&self) -> &str {
        match self {
            Self::Message(_) => "message",
            Self::FunctionCall(_) => "function_call",
            Self::FunctionCallOutput(_) => "function_call_output",
            Self::Other(raw) => raw.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// The item status, if it has one.
    pub fn status(&self) -> Option<ItemStatus> {
        match self {
            Self::Message(m) => m.status,
            Self::FunctionCall(c) => c.status,
            Self::FunctionCallOutput(o) => o.status,
            Self::Other(raw) => raw
                .get("status")
                .and_then(|s| ItemStatus::deserialize(s).ok()),
        }
    }
}

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use super::decode::Tagged;
        match self {
            Self::Message(m) => Tagged {
                t: "message",
                inner: m,
            }
            .serialize(serializer),
            Self::FunctionCall(c) => Tagged {
                t: "function_call",
                inner: c,
            }
            .serialize(serializer),
            Self::FunctionCallOutput(o) => Tagged {
                t: "function_call_output",
                inner: o,
            }
            .serialize(serializer),
            Self::Other(raw) => raw.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        let item = match raw.get("type").and_then(Value::as_str) {
            Some("message") => MessageItem::deserialize(raw).map(Self::Message),
            Some("function_call") => FunctionCallItem::deserialize(raw).map(Self::FunctionCall),
            Some("function_call_output") => {
                FunctionCallOutputItem::deserialize(raw).map(Self::FunctionCallOutput)
            }
            Some(_) => return Ok(Self::Other(raw)),
            None => return Err(de::Error::missing_field("type")),
        };
        item.map_err(de::Error::custom)
    }
}

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user (`"user"`).
    User,
    /// The model (`"assistant"`).
    Assistant,
    /// Extra instructions or context (`"system"`).
    System,
}

/// Status of an item (informational: it has no effect on the conversation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Finished normally.
    Completed,
    /// Cut short (e.g. the response was cancelled).
    Incomplete,
    /// Still being generated.
    InProgress,
}

/// A `message` item.
///
/// ```
/// use realtime_agents::protocol::{Item, MessageItem};
///
/// let item: Item = serde_json::from_str(r#"{"type":"message","id":"item_1","role":"assistant",
///     "status":"completed","content":[{"type":"output_audio","transcript":"Hello there."}]}"#).unwrap();
/// let Item::Message(message) = item else { unreachable!() };
/// assert_eq!(message.text(), "Hello there.");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    /// Item id (server-assigned when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Object type, `realtime.item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Item status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ItemStatus>,
    /// Who sent it.
    pub role: Role,
    /// The content parts.
    #[serde(default)]
    pub content: Vec<ContentPart>,
}

impl MessageItem {
    /// The text of the message: its text parts and audio transcripts, concatenated in order.
    pub fn text(&self) -> String {
        self.content.iter().filter_map(ContentPart::text).collect()
    }
}

/// A part of a message's content.
///
/// `input_*` parts belong to user (and system) messages, `output_*` to assistant messages.
/// `text`/`audio` are the part types used by `response.content_part.added`/`.done`.
///
/// ```
/// use realtime_agents::protocol::ContentPart;
///
/// let part: ContentPart = serde_json::from_str(r#"{"type":"audio","transcript":""}"#).unwrap();
/// assert_eq!(part, ContentPart::Audio { audio: None, transcript: Some(String::new()) });
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// User or system text.
    InputText {
        /// The text.
        #[serde(default)]
        text: String,
    },
    /// User audio.
    InputAudio {
        /// Base64 audio in the session's input format (omitted by the server in most events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audio: Option<String>,
        /// Transcript, when input transcription is on and has finished.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transcript: Option<String>,
    },
    /// User image.
    InputImage {
        /// A `data:image/…;base64,…` URI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_url: Option<String>,
        /// `auto`, `low` or `high`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Assistant text.
    OutputText {
        /// The text.
        #[serde(default)]
        text: String,
    },
    /// Assistant audio.
    OutputAudio {
        /// Base64 audio in the session's output format (usually omitted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audio: Option<String>,
        /// What the assistant said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transcript: Option<String>,
    },
    /// Text part as named in `response.content_part.*` events.
    Text {
        /// The text.
        #[serde(default)]
        text: String,
    },
    /// Audio part as named in `response.content_part.*` events.
    Audio {
        /// Base64 audio (usually omitted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audio: Option<String>,
        /// What the assistant said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transcript: Option<String>,
    },
}

impl ContentPart {
    /// The part's text, or its audio transcript.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::InputText { text } | Self::OutputText { text } | Self::Text { text } => {
                Some(text)
            }
            Self::InputAudio { transcript, .. }
            | Self::OutputAudio { transcript, .. }
            | Self::Audio { transcript, .. } => transcript.as_deref(),
            Self::InputImage { .. } => None,
        }
    }
}

/// A `function_call` item: the model asks the client to run a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallItem {
    /// Item id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Object type, `realtime.item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// `in_progress` while arguments stream, then `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ItemStatus>,
    /// The call id to answer with a [`FunctionCallOutputItem`]. The server always sets it;
    /// empty (and not sent) only in hand-built items.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub call_id: String,
    /// The function name.
    pub name: String,
    /// The arguments as a JSON string (empty while `in_progress`).
    pub arguments: String,
}

/// A `function_call_output` item: the result of a function call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallOutputItem {
    /// Item id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Object type, `realtime.item`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Item status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ItemStatus>,
    /// The call this output answers.
    pub call_id: String,
    /// The output, free text (often JSON).
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(v: Value) -> Item {
        let item: Item = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&item).unwrap(), v);
        item
    }

    #[test]
    fn constructors_encode_ga_shapes() {
        let cases = [
            (
                Item::user_text("hi"),
                json!({"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}),
            ),
            (
                Item::user_image("data:image/png;base64,AAAA"),
                json!({"type":"message","role":"user","content":[{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]}),
            ),
            (
                Item::user_audio("AAAA"),
                json!({"type":"message","role":"user","content":[{"type":"input_audio","audio":"AAAA"}]}),
            ),
            (
                Item::system_text("Speak French."),
                json!({"type":"message","role":"system","content":[{"type":"input_text","text":"Speak French."}]}),
            ),
            (
                Item::assistant_text("Bonjour."),
                json!({"type":"message","role":"assistant","content":[{"type":"output_text","text":"Bonjour."}]}),
            ),
            (
                Item::function_call_output("call_1", "{\"ok\":true}"),
                json!({"type":"function_call_output","call_id":"call_1","output":"{\"ok\":true}"}),
            ),
        ];
        for (item, expected) in cases {
            assert_eq!(serde_json::to_value(&item).unwrap(), expected);
            assert_eq!(roundtrip(expected), item);
        }
    }

    #[test]
    fn server_items_roundtrip() {
        let msg = roundtrip(json!({
            "id": "item_1", "object": "realtime.item", "type": "message", "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": "Hello?"},
                        {"type": "input_text", "text": " And more."},
                        {"type": "input_image", "image_url": "data:image/jpeg;base64,/9j/", "detail": "low"}]
        }));
        assert_eq!(msg.id(), Some("item_1"));
        assert_eq!(msg.status(), Some(ItemStatus::Completed));
        let Item::Message(m) = &msg else { panic!() };
        assert_eq!(m.role, Role::User);
        assert_eq!(m.text(), "Hello? And more.");

        let call = roundtrip(json!({
            "id": "item_2", "object": "realtime.item", "type": "function_call", "status": "in_progress",
            "call_id": "call_9", "name": "get_weather", "arguments": ""
        }));
        let Item::FunctionCall(c) = &call else {
            panic!()
        };
        assert_eq!(
            (c.call_id.as_str(), c.name.as_str()),
            ("call_9", "get_weather")
        );
        assert_eq!(call.item_type(), "function_call");

        // call_id is optional in the official model; absent stays absent.
        let no_id = roundtrip(json!({"type": "function_call", "name": "f", "arguments": "{}"}));
        assert!(
            matches!(no_id, Item::FunctionCall(FunctionCallItem { ref call_id, .. }) if call_id.is_empty())
        );

        let empty = roundtrip(json!({"type": "message", "role": "assistant", "content": []}));
        assert!(matches!(empty, Item::Message(ref m) if m.text().is_empty()));
        // content defaults to empty when missing
        let item: Item =
            serde_json::from_value(json!({"type": "message", "role": "system"})).unwrap();
        assert!(matches!(item, Item::Message(ref m) if m.content.is_empty()));
    }

    #[test]
    fn other_items_roundtrip_unchanged() {
        for raw in [
            json!({"type": "mcp_call", "id": "mcp_1", "server_label": "deepwiki", "name": "ask_question",
                   "arguments": "{\"q\":\"x\"}", "output": "42", "error": null, "approval_request_id": null}),
            json!({"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "deepwiki",
                   "tools": [{"name": "ask_question", "input_schema": {"type": "object"}}]}),
            json!({"type": "mcp_approval_request", "id": "mcpr_1", "server_label": "s", "name": "n", "arguments": "{}"}),
            json!({"type": "item_reference", "id": "item_1"}),
        ] {
            let item = roundtrip(raw.clone());
            assert_eq!(item, Item::Other(raw));
        }
    }

    #[test]
    fn bad_items_are_errors() {
        for bad in [
            json!({"role": "user", "content": []}),
            json!({"type": "message", "content": []}),
            json!({"type": "message", "role": "robot", "content": []}),
            json!({"type": "message", "role": "user", "content": [{"type": "input_video"}]}),
            json!({"type": "function_call_output", "call_id": "c"}),
            json!("message"),
        ] {
            assert!(
                serde_json::from_value::<Item>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn content_part_text() {
        assert_eq!(ContentPart::Text { text: "a".into() }.text(), Some("a"));
        assert_eq!(
            ContentPart::Audio {
                audio: None,
                transcript: None
            }
            .text(),
            None
        );
        assert_eq!(
            ContentPart::InputImage {
                image_url: None,
                detail: None
            }
            .text(),
            None
        );
    }
}
