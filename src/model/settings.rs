//! Session settings: what the session asks of the model, in neutral terms.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::audio::AudioFormat;
use crate::protocol::{
    MaxOutputTokens, Modality, NoiseReduction, ToolChoice, TranscriptionConfig, TurnDetection,
    Voice,
};

/// A function the model may call, as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Function name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON schema of the arguments (an object schema).
    pub parameters: Value,
}

/// Session configuration sent to the model.
///
/// Every field is optional: `None` means "leave as it is" on an update, and "use the backend's
/// default" on connect. Build it with the chained setters; later layers override earlier ones
/// with [`merge`](Self::merge) (run config, then agent, then per-connection overrides).
///
/// ```
/// use realtime_agents::model::SessionSettings;
/// use realtime_agents::audio::AudioFormat;
/// use realtime_agents::protocol::TurnDetection;
///
/// let settings = SessionSettings::new()
///     .voice("marin")
///     .input_format(AudioFormat::G711_ULAW)
///     .output_format(AudioFormat::G711_ULAW)
///     .turn_detection(Some(TurnDetection::server_vad()));
/// assert_eq!(settings.output_format, Some(AudioFormat::G711_ULAW));
///
/// // Settings are saved with a session (see `SessionSnapshot`): unset fields are left out,
/// // and a field turned off (`Some(None)`) stays off.
/// let json = serde_json::to_value(&settings).unwrap();
/// assert_eq!(json["voice"], "marin");
/// assert!(json.get("model").is_none());
/// let off = SessionSettings::new().turn_detection(None);
/// let json = serde_json::to_string(&off).unwrap();
/// assert_eq!(json, r#"{"turn_detection":null}"#);
/// assert_eq!(serde_json::from_str::<SessionSettings>(&json).unwrap(), off);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SessionSettings {
    /// Model name (e.g. `gpt-realtime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// System instructions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Functions the model may call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolSpec>>,
    /// Output voice. It cannot change once the model has spoken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<Voice>,
    /// Speech speed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f32>,
    /// Format of the audio the application sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_format: Option<AudioFormat>,
    /// Format of the audio the model sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_format: Option<AudioFormat>,
    /// Voice activity detection; `Some(None)` turns it off (manual turns).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub turn_detection: Option<Option<TurnDetection>>,
    /// Transcription of the user's audio; `Some(None)` turns it off.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub transcription: Option<Option<TranscriptionConfig>>,
    /// Input noise reduction; `Some(None)` turns it off.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub noise_reduction: Option<Option<NoiseReduction>>,
    /// `[Audio]` (speech with transcript) or `[Text]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<Modality>>,
    /// How the model picks tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Output token cap per response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<MaxOutputTokens>,
    /// Extra raw fields for the backend's session object, applied last.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// A field that is present: `null` is `Some(None)` (turned off), not `None` (unset, which is a
/// missing field).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $conv:expr;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = Some($conv(value));
                self
            }
        )*
    };
}

impl SessionSettings {
    /// Empty settings.
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets the model name.
        model: impl Into<String> => Into::into;
        /// Sets the instructions.
        instructions: impl Into<String> => Into::into;
        /// Sets the voice.
        voice: impl Into<Voice> => Into::into;
        /// Sets the speech speed.
        speed: f32 => std::convert::identity;
        /// Sets the input audio format.
        input_format: AudioFormat => std::convert::identity;
        /// Sets the output audio format.
        output_format: AudioFormat => std::convert::identity;
        /// Sets turn detection (`None` turns it off).
        turn_detection: Option<TurnDetection> => std::convert::identity;
        /// Sets user-audio transcription (`None` turns it off).
        transcription: Option<TranscriptionConfig> => std::convert::identity;
        /// Sets noise reduction (`None` turns it off).
        noise_reduction: Option<NoiseReduction> => std::convert::identity;
        /// Sets the output modalities.
        output_modalities: Vec<Modality> => std::convert::identity;
        /// Sets the tool choice.
        tool_choice: ToolChoice => std::convert::identity;
        /// Sets the output token cap.
        max_output_tokens: MaxOutputTokens => std::convert::identity;
    }

    /// Sets the tools.
    #[must_use]
    pub fn tools(mut self, tools: Vec<ToolSpec>) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Sets a raw field of the backend's session object.
    #[must_use]
    pub fn extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// Overrides fields of `self` with those set in `other`.
    ///
    /// ```
    /// use realtime_agents::model::SessionSettings;
    /// let mut base = SessionSettings::new().voice("ash").instructions("base");
    /// base.merge(&SessionSettings::new().instructions("agent"));
    /// assert_eq!(base.instructions.as_deref(), Some("agent"));
    /// assert!(base.voice.is_some());
    /// ```
    pub fn merge(&mut self, other: &SessionSettings) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f.clone_from(&other.$f); } )* };
        }
        take!(
            model,
            instructions,
            tools,
            voice,
            speed,
            input_format,
            output_format,
            turn_detection,
            transcription,
            noise_reduction,
            output_modalities,
            tool_choice,
            max_output_tokens
        );
        for (k, v) in &other.extra {
            self.extra.insert(k.clone(), v.clone());
        }
    }
}
