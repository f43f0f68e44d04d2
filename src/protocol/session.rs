//! The GA `session` object: sent in `session.update`, echoed in full by the server in
//! `session.created` / `session.updated`.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decode::double_option;
use crate::audio::AudioFormat;

/// The session configuration (GA shape).
///
/// Every field is optional: in `session.update` an absent field keeps its current value; in
/// `session.created`/`session.updated` the server fills in the full effective configuration.
/// `kind` (`"type"` on the wire) is required by the API in every `session.update`.
///
/// ```
/// use realtime_agents::protocol::{
///     AudioConfig, AudioInputConfig, Modality, SessionConfig, SessionKind, TurnDetection,
/// };
///
/// let session = SessionConfig {
///     kind: Some(SessionKind::Realtime),
///     output_modalities: Some(vec![Modality::Audio]),
///     instructions: Some("Be brief.".into()),
///     audio: Some(AudioConfig {
///         input: Some(AudioInputConfig {
///             turn_detection: Some(Some(TurnDetection::semantic_vad())),
///             ..Default::default()
///         }),
///         output: None,
///     }),
///     ..Default::default()
/// };
/// let json = serde_json::to_value(&session).unwrap();
/// assert_eq!(json["type"], "realtime");
/// assert_eq!(json["audio"]["input"]["turn_detection"]["type"], "semantic_vad");
/// assert!(json.get("model").is_none()); // no nulls for unset fields
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// `realtime` (speech-to-speech) or `transcription`. Required in `session.update`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SessionKind>,
    /// Session id, e.g. `sess_…` (server-assigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Object type, `realtime.session` (server-assigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// When the session expires, in seconds since the Unix epoch (server-assigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The model, e.g. `gpt-realtime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How the model answers: `["audio"]` (audio plus transcript) or `["text"]`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<Modality>>,
    /// System instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Input and output audio configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioConfig>,
    /// Tools available to the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolDefinition>>,
    /// How the model chooses tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Output token limit per response (1–4096, or `"inf"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<MaxOutputTokens>,
    /// Tracing: `"auto"` or `{workflow_name, group_id, metadata}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Value>,
    /// Prompt template reference: `{id, version?, variables?}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Value>,
    /// Context truncation: `"auto"`, `"disabled"` or `{type: "retention_ratio", …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<Value>,
    /// Extra output fields, e.g. `["item.input_audio_transcription.logprobs"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    /// Reasoning configuration (`{effort}`) for reasoning-capable models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Value>,
    /// Whether the model may call several tools in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
}

impl SessionConfig {
    /// The configured output audio format, if any.
    ///
    /// ```
    /// use realtime_agents::audio::AudioFormat;
    /// use realtime_agents::protocol::SessionConfig;
    ///
    /// let s: SessionConfig = serde_json::from_str(
    ///     r#"{"type":"realtime","audio":{"output":{"format":{"type":"audio/pcmu"}}}}"#,
    /// ).unwrap();
    /// assert_eq!(s.output_format(), Some(AudioFormat::G711_ULAW));
    /// ```
    pub fn output_format(&self) -> Option<AudioFormat> {
        self.audio.as_ref()?.output.as_ref()?.format
    }

    /// The configured input audio format, if any.
    pub fn input_format(&self) -> Option<AudioFormat> {
        self.audio.as_ref()?.input.as_ref()?.format
    }

    /// The turn detection in effect: `None` when it is absent or `null` (VAD off).
    pub fn turn_detection(&self) -> Option<&TurnDetection> {
        self.audio
            .as_ref()?
            .input
            .as_ref()?
            .turn_detection
            .as_ref()?
            .as_ref()
    }
}

/// The kind of session (`session.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// Speech-to-speech conversation (`"realtime"`).
    Realtime,
    /// Transcription only (`"transcription"`).
    Transcription,
}

/// An output modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Text output (`"text"`).
    Text,
    /// Audio output with its transcript (`"audio"`).
    Audio,
}

/// Input and output audio configuration (`session.audio`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioConfig {
    /// Input side: format, noise reduction, transcription, turn detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<AudioInputConfig>,
    /// Output side: format, voice, speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<AudioOutputConfig>,
}

/// Input audio configuration (`session.audio.input`).
///
/// The tri-state fields distinguish "leave unchanged" (`None`, not sent), "turn off"
/// (`Some(None)`, sent as `null`) and "set" (`Some(Some(v))`).
///
/// ```
/// use realtime_agents::protocol::AudioInputConfig;
///
/// let manual_turns = AudioInputConfig { turn_detection: Some(None), ..Default::default() };
/// assert_eq!(serde_json::to_string(&manual_turns).unwrap(), r#"{"turn_detection":null}"#);
/// let back: AudioInputConfig = serde_json::from_str(r#"{"turn_detection":null}"#).unwrap();
/// assert_eq!(back, manual_turns);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioInputConfig {
    /// Format of the audio the client appends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AudioFormat>,
    /// Noise reduction; `Some(None)` (`null`) turns it off.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "double_option"
    )]
    pub noise_reduction: Option<Option<NoiseReduction>>,
    /// Input transcription; `Some(None)` (`null`) turns it off (no user transcripts).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "double_option"
    )]
    pub transcription: Option<Option<TranscriptionConfig>>,
    /// Turn detection; `Some(None)` (`null`) disables VAD (manual turns).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "double_option"
    )]
    pub turn_detection: Option<Option<TurnDetection>>,
}

/// Output audio configuration (`session.audio.output`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AudioOutputConfig {
    /// Format of the audio the server sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<AudioFormat>,
    /// The voice. It cannot change once the model has produced audio in the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<Voice>,
    /// Speaking speed multiplier (0.25–1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f32>,
}

/// Input noise reduction (`{"type":"near_field"}` or `{"type":"far_field"}`).
///
/// ```
/// use realtime_agents::protocol::NoiseReduction;
/// assert_eq!(serde_json::to_string(&NoiseReduction::far_field()).unwrap(), r#"{"type":"far_field"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseReduction {
    /// `near_field` (headsets) or `far_field` (laptop, conference-room microphones).
    #[serde(rename = "type")]
    pub kind: String,
}

impl NoiseReduction {
    /// Near-field noise reduction (close-talking microphones, headsets).
    pub fn near_field() -> Self {
        Self {
            kind: "near_field".into(),
        }
    }

    /// Far-field noise reduction (laptop or conference-room microphones).
    pub fn far_field() -> Self {
        Self {
            kind: "far_field".into(),
        }
    }
}

/// Input audio transcription settings (`session.audio.input.transcription`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TranscriptionConfig {
    /// Transcription model, e.g. `gpt-4o-mini-transcribe` or `whisper-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Language of the input audio (ISO-639-1, e.g. `en`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Text to guide the transcription's style or vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Candidate languages of the input audio (newer transcription models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
    /// Words or phrases to guide transcription (newer transcription models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
    /// How long the model waits before emitting text: `minimal`, `low`, `medium`, `high`, `xhigh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
}

/// Server-side turn detection (`session.audio.input.turn_detection`).
///
/// ```
/// use realtime_agents::protocol::TurnDetection;
///
/// let td: TurnDetection =
///     serde_json::from_str(r#"{"type":"server_vad","silence_duration_ms":500,"interrupt_response":false}"#)
///         .unwrap();
/// assert!(td.create_response()); // defaults to true
/// assert!(!td.interrupt_response());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnDetection {
    /// Silence-based voice activity detection.
    ServerVad {
        /// Activation threshold, 0.0–1.0 (default 0.5); higher for noisy rooms.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold: Option<f32>,
        /// Audio kept before detected speech, in ms (default 300).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_padding_ms: Option<u32>,
        /// Silence that ends a turn, in ms (default 500).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        silence_duration_ms: Option<u32>,
        /// After this much assistant-then-user silence the server triggers a response and
        /// sends `input_audio_buffer.timeout_triggered`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle_timeout_ms: Option<u64>,
        /// Whether the server creates a response after each detected turn (default true).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        create_response: Option<bool>,
        /// Whether detected speech cancels the active response (default true).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interrupt_response: Option<bool>,
    },
    /// Model-based end-of-turn detection.
    SemanticVad {
        /// `low`, `medium`, `high` or `auto` (default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eagerness: Option<String>,
        /// Whether the server creates a response after each detected turn (default true).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        create_response: Option<bool>,
        /// Whether detected speech cancels the active response (default true).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interrupt_response: Option<bool>,
    },
}

impl TurnDetection {
    /// Server VAD with every parameter left to the server's defaults.
    pub fn server_vad() -> Self {
        Self::ServerVad {
            threshold: None,
            prefix_padding_ms: None,
            silence_duration_ms: None,
            idle_timeout_ms: None,
            create_response: None,
            interrupt_response: None,
        }
    }

    /// Semantic VAD with every parameter left to the server's defaults.
    pub fn semantic_vad() -> Self {
        Self::SemanticVad {
            eagerness: None,
            create_response: None,
            interrupt_response: None,
        }
    }

    /// Whether the server creates a response at the end of each user turn (default true).
    pub fn create_response(&self) -> bool {
        match self {
            Self::ServerVad {
                create_response, ..
            }
            | Self::SemanticVad {
                create_response, ..
            } => create_response.unwrap_or(true),
        }
    }

    /// Whether user speech cancels the active response on the server (default true).
    pub fn interrupt_response(&self) -> bool {
        match self {
            Self::ServerVad {
                interrupt_response, ..
            }
            | Self::SemanticVad {
                interrupt_response, ..
            } => interrupt_response.unwrap_or(true),
        }
    }
}

/// An output voice: a built-in name (`"ash"`, `"marin"`, …) or a custom voice `{"id": …}`.
///
/// ```
/// use realtime_agents::protocol::Voice;
///
/// assert_eq!(serde_json::to_string(&Voice::from("marin")).unwrap(), r#""marin""#);
/// let custom: Voice = serde_json::from_str(r#"{"id":"voice_1234"}"#).unwrap();
/// assert_eq!(custom, Voice::Custom { id: "voice_1234".into() });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Voice {
    /// A built-in voice: `alloy`, `ash`, `ballad`, `coral`, `echo`, `sage`, `shimmer`, `verse`,
    /// `marin`, `cedar` (any string is accepted).
    Named(String),
    /// A custom voice by id, e.g. `voice_1234`.
    Custom {
        /// The custom voice id.
        id: String,
    },
}

impl From<&str> for Voice {
    fn from(name: &str) -> Self {
        Self::Named(name.to_owned())
    }
}

impl From<String> for Voice {
    fn from(name: String) -> Self {
        Self::Named(name)
    }
}

/// A tool the model may call.
///
/// Function tools are typed; any other kind (hosted `mcp`, future types) is kept as raw JSON
/// and re-encoded unchanged.
///
/// ```
/// use realtime_agents::protocol::ToolDefinition;
/// use serde_json::json;
///
/// let tool: ToolDefinition = serde_json::from_value(json!({
///     "type": "function", "name": "get_weather", "description": "Weather for a city.",
///     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
/// })).unwrap();
/// assert_eq!(tool.name(), Some("get_weather"));
///
/// let mcp = json!({"type": "mcp", "server_label": "docs", "server_url": "https://example.com/mcp"});
/// let tool: ToolDefinition = serde_json::from_value(mcp.clone()).unwrap();
/// assert_eq!(tool, ToolDefinition::Other(mcp.clone()));
/// assert_eq!(serde_json::to_value(&tool).unwrap(), mcp);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ToolDefinition {
    /// A function tool (`"type":"function"`), executed by the client.
    Function {
        /// The function name the model calls.
        name: String,
        /// What the function does and when to call it.
        description: Option<String>,
        /// JSON Schema of the arguments (`Value::Null` is not sent).
        parameters: Value,
    },
    /// Any other tool type (e.g. hosted `mcp`), kept verbatim.
    Other(Value),
}

impl ToolDefinition {
    /// A function tool.
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
    ) -> Self {
        Self::Function {
            name: name.into(),
            description: Some(description.into()),
            parameters,
        }
    }

    /// The function name (`None` for non-function tools).
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Function { name, .. } => Some(name),
            Self::Other(_) => None,
        }
    }
}

#[derive(Serialize)]
struct FunctionToolRef<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    parameters: &'a Value,
}

#[derive(Deserialize)]
struct FunctionToolOwned {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Value,
}

impl Serialize for ToolDefinition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Function {
                name,
                description,
                parameters,
            } => super::decode::Tagged {
                t: "function",
                inner: &FunctionToolRef {
                    name,
                    description: description.as_ref(),
                    parameters,
                },
            }
            .serialize(serializer),
            Self::Other(raw) => raw.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ToolDefinition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        if raw.get("type").and_then(Value::as_str) != Some("function") {
            return Ok(Self::Other(raw));
        }
        let f: FunctionToolOwned = serde_json::from_value(raw).map_err(de::Error::custom)?;
        Ok(Self::Function {
            name: f.name,
            description: f.description,
            parameters: f.parameters,
        })
    }
}

/// How the model chooses tools: a mode string or a specific function.
///
/// ```
/// use realtime_agents::protocol::ToolChoice;
///
/// assert_eq!(serde_json::to_string(&ToolChoice::auto()).unwrap(), r#""auto""#);
/// assert_eq!(
///     serde_json::to_string(&ToolChoice::function("get_weather")).unwrap(),
///     r#"{"type":"function","name":"get_weather"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// `"auto"`, `"none"` or `"required"`.
    Mode(String),
    /// Force a call of this function: `{"type":"function","name":…}`.
    Function {
        /// The function to call.
        name: String,
    },
    /// Any other object (e.g. `{"type":"mcp","server_label":…}`), kept verbatim.
    Other(Value),
}

impl ToolChoice {
    /// The model decides (`"auto"`).
    pub fn auto() -> Self {
        Self::Mode("auto".into())
    }

    /// No tool calls (`"none"`).
    pub fn none() -> Self {
        Self::Mode("none".into())
    }

    /// At least one tool call (`"required"`).
    pub fn required() -> Self {
        Self::Mode("required".into())
    }

    /// Force a call of the named function.
    pub fn function(name: impl Into<String>) -> Self {
        Self::Function { name: name.into() }
    }
}

#[derive(Serialize, Deserialize)]
struct FunctionChoiceWire<N> {
    name: N,
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Mode(mode) => serializer.serialize_str(mode),
            Self::Function { name } => super::decode::Tagged {
                t: "function",
                inner: &FunctionChoiceWire { name },
            }
            .serialize(serializer),
            Self::Other(raw) => raw.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        match raw {
            Value::String(mode) => Ok(Self::Mode(mode)),
            Value::Object(ref obj)
                if obj.get("type").and_then(Value::as_str) == Some("function") =>
            {
                let f: FunctionChoiceWire<String> =
                    serde_json::from_value(raw).map_err(de::Error::custom)?;
                Ok(Self::Function { name: f.name })
            }
            Value::Object(_) => Ok(Self::Other(raw)),
            other => Err(de::Error::custom(format_args!(
                "expected a tool choice string or object, got {other}"
            ))),
        }
    }
}

/// Output token limit: a number (1–4096) or `"inf"`.
///
/// ```
/// use realtime_agents::protocol::MaxOutputTokens;
///
/// assert_eq!(serde_json::to_string(&MaxOutputTokens::Inf).unwrap(), r#""inf""#);
/// let n: MaxOutputTokens = serde_json::from_str("1024").unwrap();
/// assert_eq!(n, MaxOutputTokens::Tokens(1024));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxOutputTokens {
    /// At most this many tokens.
    Tokens(u32),
    /// No limit beyond the model's (`"inf"`).
    Inf,
}

impl From<u32> for MaxOutputTokens {
    fn from(n: u32) -> Self {
        Self::Tokens(n)
    }
}

impl Serialize for MaxOutputTokens {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Tokens(n) => serializer.serialize_u32(*n),
            Self::Inf => serializer.serialize_str("inf"),
        }
    }
}

impl<'de> Deserialize<'de> for MaxOutputTokens {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MaxVisitor;
        impl Visitor<'_> for MaxVisitor {
            type Value = MaxOutputTokens;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a token count or \"inf\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MaxOutputTokens, E> {
                u32::try_from(v)
                    .map(MaxOutputTokens::Tokens)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaxOutputTokens, E> {
                u32::try_from(v)
                    .map(MaxOutputTokens::Tokens)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MaxOutputTokens, E> {
                if v == "inf" {
                    Ok(MaxOutputTokens::Inf)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        deserializer.deserialize_any(MaxVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        v: Value,
    ) -> T {
        let t: T = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&t).unwrap(), v);
        t
    }

    #[test]
    fn turn_detection_tri_state() {
        let absent: AudioInputConfig = roundtrip(json!({}));
        assert_eq!(absent.turn_detection, None);
        let null: AudioInputConfig = roundtrip(json!({"turn_detection": null}));
        assert_eq!(null.turn_detection, Some(None));
        let set: AudioInputConfig = roundtrip(json!({
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                               "silence_duration_ms": 200, "idle_timeout_ms": 6000,
                               "create_response": true, "interrupt_response": false}
        }));
        let td = set.turn_detection.unwrap().unwrap();
        assert!(td.create_response());
        assert!(!td.interrupt_response());
        assert!(matches!(
            td,
            TurnDetection::ServerVad {
                idle_timeout_ms: Some(6000),
                silence_duration_ms: Some(200),
                ..
            }
        ));
        // Same for the other tri-state fields.
        let off: AudioInputConfig =
            roundtrip(json!({"noise_reduction": null, "transcription": null}));
        assert_eq!(off.noise_reduction, Some(None));
        assert_eq!(off.transcription, Some(None));
    }

    #[test]
    fn turn_detection_defaults_and_constructors() {
        let s = TurnDetection::semantic_vad();
        assert!(s.create_response() && s.interrupt_response());
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"type": "semantic_vad"})
        );
        assert_eq!(
            serde_json::to_value(TurnDetection::server_vad()).unwrap(),
            json!({"type": "server_vad"})
        );
        let s: TurnDetection = roundtrip(
            json!({"type": "semantic_vad", "eagerness": "low", "create_response": false}),
        );
        assert!(!s.create_response());
        assert!(serde_json::from_value::<TurnDetection>(json!({"type": "magic_vad"})).is_err());
    }

    #[test]
    fn voice_both_forms() {
        let v: Voice = roundtrip(json!("ash"));
        assert_eq!(v, Voice::from("ash"));
        let v: Voice = roundtrip(json!({"id": "voice_1234"}));
        assert_eq!(
            v,
            Voice::Custom {
                id: "voice_1234".into()
            }
        );
        assert!(serde_json::from_value::<Voice>(json!(3)).is_err());
    }

    #[test]
    fn tool_definitions() {
        let f: ToolDefinition = roundtrip(json!({
            "type": "function", "name": "get_weather", "description": "Weather.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"], "additionalProperties": false}
        }));
        assert_eq!(f.name(), Some("get_weather"));
        let bare: ToolDefinition = roundtrip(json!({"type": "function", "name": "ping"}));
        assert_eq!(
            bare,
            ToolDefinition::Function {
                name: "ping".into(),
                description: None,
                parameters: Value::Null
            }
        );
        let mcp = json!({"type": "mcp", "server_label": "deepwiki",
                         "server_url": "https://mcp.deepwiki.com/mcp", "require_approval": "never",
                         "allowed_tools": ["ask_question"], "headers": {"X-Key": "v"}});
        let other: ToolDefinition = roundtrip(mcp.clone());
        assert_eq!(other, ToolDefinition::Other(mcp));
        // A function tool without a name is an error, not silently `Other`.
        assert!(serde_json::from_value::<ToolDefinition>(json!({"type": "function"})).is_err());
        assert_eq!(
            serde_json::to_value(ToolDefinition::function(
                "f",
                "d",
                json!({"type": "object"})
            ))
            .unwrap(),
            json!({"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}})
        );
    }

    #[test]
    fn tool_choice_forms() {
        assert_eq!(
            roundtrip::<ToolChoice>(json!("required")),
            ToolChoice::required()
        );
        assert_eq!(
            roundtrip::<ToolChoice>(json!({"type": "function", "name": "f"})),
            ToolChoice::function("f")
        );
        let mcp = json!({"type": "mcp", "server_label": "deepwiki", "name": "ask_question"});
        assert_eq!(roundtrip::<ToolChoice>(mcp.clone()), ToolChoice::Other(mcp));
        assert!(serde_json::from_value::<ToolChoice>(json!(1)).is_err());
    }

    #[test]
    fn max_output_tokens_forms() {
        assert_eq!(
            roundtrip::<MaxOutputTokens>(json!("inf")),
            MaxOutputTokens::Inf
        );
        assert_eq!(
            roundtrip::<MaxOutputTokens>(json!(4096)),
            MaxOutputTokens::Tokens(4096)
        );
        assert!(serde_json::from_value::<MaxOutputTokens>(json!("lots")).is_err());
        assert!(serde_json::from_value::<MaxOutputTokens>(json!(-1)).is_err());
        assert!(serde_json::from_value::<MaxOutputTokens>(json!(1.5)).is_err());
    }

    #[test]
    fn session_config_full_roundtrip_and_helpers() {
        let s: SessionConfig = roundtrip(json!({
            "type": "realtime", "model": "gpt-realtime", "output_modalities": ["audio"],
            "instructions": "Be brief.",
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}, "noise_reduction": {"type": "near_field"},
                          "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en", "prompt": "names"},
                          "turn_detection": null},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": {"id": "voice_1"}, "speed": 1.25}
            },
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": "auto", "max_output_tokens": 512, "tracing": "auto",
            "prompt": {"id": "pmpt_1", "version": "2"}, "truncation": "disabled",
            "include": ["item.input_audio_transcription.logprobs"],
            "reasoning": {"effort": "low"}, "parallel_tool_calls": false
        }));
        assert_eq!(s.kind, Some(SessionKind::Realtime));
        assert_eq!(s.input_format(), Some(AudioFormat::G711_ULAW));
        assert_eq!(s.output_format(), Some(AudioFormat::PCM16_24K));
        assert_eq!(s.turn_detection(), None);
        assert_eq!(s.max_output_tokens, Some(MaxOutputTokens::Tokens(512)));
        assert_eq!(
            serde_json::to_string(&SessionConfig::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn session_config_tolerates_server_nulls_and_unknown_fields() {
        // What a real `session.created` looks like: nulls for unset values, integer speed,
        // plus a field this crate does not know about.
        let s: SessionConfig = serde_json::from_value(json!({
            "type": "realtime", "object": "realtime.session", "id": "sess_1", "expires_at": 1756324625,
            "model": "gpt-realtime", "tracing": null, "prompt": null, "include": null,
            "max_output_tokens": "inf", "brand_new_field": {"x": 1},
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": null,
                                "noise_reduction": null,
                                "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                                   "idle_timeout_ms": null, "create_response": true}},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1}}
        }))
        .unwrap();
        assert_eq!(s.tracing, None);
        assert_eq!(s.include, None);
        let input = s.audio.as_ref().unwrap().input.as_ref().unwrap();
        assert_eq!(input.transcription, Some(None));
        assert!(s.turn_detection().unwrap().interrupt_response());
        assert_eq!(s.audio.unwrap().output.unwrap().speed, Some(1.0));
    }
}
