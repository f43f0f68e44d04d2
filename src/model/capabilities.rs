//! What a backend can do, so that the session uses only what is there.

use std::borrow::Cow;

use crate::audio::AudioFormat;

/// The audio formats of the OpenAI Realtime API, in and out.
const OPENAI_FORMATS: &[AudioFormat] = &[
    AudioFormat::PCM16_24K,
    AudioFormat::G711_ULAW,
    AudioFormat::G711_ALAW,
];

/// PCM16 at 24 kHz only.
const PCM16_24K_ONLY: &[AudioFormat] = &[AudioFormat::PCM16_24K];

/// What a connection's backend supports, as reported by
/// [`RealtimeConnection::capabilities`](super::RealtimeConnection::capabilities).
///
/// [`Default`] (and [`openai_realtime`](Self::openai_realtime)) is everything the OpenAI
/// Realtime API does, which is what a backend that does not override `capabilities` is taken
/// to support. [`minimal`](Self::minimal) is what every backend must do and nothing more;
/// backends start from one of the two and switch fields with the chained setters (each setter
/// has the field's name).
///
/// Each field says what the backend does when it is `true`, and what the session does
/// differently when it is `false`. A `false` field never makes a command an error: a backend
/// ignores what it cannot do (and may report a [`ModelEvent::Error`](super::ModelEvent::Error)
/// for it), and the session avoids sending it in the first place.
///
/// Capabilities belong to a connection rather than to a model, because a backend may learn
/// them only when the session starts (a model version without mutable instructions, a
/// delegation mode chosen in the settings, formats fixed by a phone call). They may change
/// only together with a [`SessionUpdated`](super::ModelEvent::SessionUpdated) event: the
/// session reads them after connecting and again after each `SessionUpdated`.
///
/// ```
/// use realtime_agents::audio::AudioFormat;
/// use realtime_agents::model::Capabilities;
///
/// // The default: the OpenAI Realtime API.
/// let openai = Capabilities::default();
/// assert!(openai.truncation && openai.response_cancel && openai.edit_items);
///
/// // A backend whose model owns turn-taking and whose context is append-only (the shape of
/// // OpenAI's Live API with client delegation).
/// const LIVE: Capabilities = Capabilities::minimal()
///     .model_turn_taking(true)
///     .delegated_tools(true)
///     .auto_tool_reply(true)
///     .input_transcription(true)
///     .audio_output(true);
/// assert!(!LIVE.truncation && !LIVE.response_create && !LIVE.create_items);
///
/// // A backend that learns its formats at session start.
/// let negotiated = Capabilities::default()
///     .input_formats(vec![AudioFormat::G711_ULAW])
///     .output_formats(vec![AudioFormat::G711_ULAW]);
/// assert!(!negotiated.supports_output_format(AudioFormat::PCM16_24K));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Interrupt`](super::ModelCommand::Interrupt) with a `cut` truncates the assistant
    /// item's audio (and transcript) at what the user heard. When `false` the session still
    /// stops playback and reports the interruption, but sends no `cut`.
    pub truncation: bool,
    /// [`CreateResponse`](super::ModelCommand::CreateResponse) and the `respond` flags of
    /// [`UserMessage`](super::ModelCommand::UserMessage) and
    /// [`ToolOutput`](super::ModelCommand::ToolOutput) start a response. When `false` the
    /// model decides when to speak (see [`model_turn_taking`](Self::model_turn_taking)); the
    /// session still sets the flags but never waits for a response it asked for.
    pub response_create: bool,
    /// [`Interrupt`](super::ModelCommand::Interrupt) with `cancel_response` ends the active
    /// response with [`ResponseStatus::Cancelled`](super::ResponseStatus::Cancelled). When
    /// `false` the model goes on by itself: the session stops playback and drops the rest of
    /// that response's audio and transcript locally until its `ResponseDone`.
    pub response_cancel: bool,
    /// The server detects the user's turns in the input audio (voice activity detection): it
    /// reports [`SpeechStarted`](super::ModelEvent::SpeechStarted) and
    /// [`SpeechStopped`](super::ModelEvent::SpeechStopped), ends the turn by itself and
    /// honours `turn_detection` in the settings. When `false` nothing reports speech, and a
    /// turn ends with `commit` (see [`manual_turns`](Self::manual_turns)) or when the model
    /// decides.
    pub server_turn_detection: bool,
    /// The application may end the user's turn itself: `commit` on
    /// [`Audio`](super::ModelCommand::Audio) ends it, and `turn_detection: Some(None)` turns
    /// server detection off. When `false` the backend ignores both.
    pub manual_turns: bool,
    /// The model itself decides when to speak and when to stop, from what it hears (OpenAI's
    /// Live API, full-duplex models): responses start without being asked, nothing cancels or
    /// truncates them, and input audio must keep flowing (silence included) for the model's
    /// timeline to advance. The backend still brackets what the model says in
    /// `ResponseStarted`/`ResponseDone` pairs of its own choosing.
    pub model_turn_taking: bool,
    /// [`UpdateSession`](super::ModelCommand::UpdateSession) can replace the instructions
    /// mid-session. When `false` the instructions given at connect stay (a backend with an
    /// append-only context may append the new ones instead); the session leaves them out of
    /// updates, so a handoff keeps the first agent's instructions.
    pub mutable_instructions: bool,
    /// `UpdateSession` can replace the tools mid-session. When `false` the tools given at
    /// connect stay; the session leaves them out of updates.
    pub mutable_tools: bool,
    /// `UpdateSession` can change the voice until the model first speaks (the OpenAI rule;
    /// after that no backend changes it). When `false` the voice given at connect stays.
    pub mutable_voice: bool,
    /// [`CreateItem`](super::ModelCommand::CreateItem) at the end of the conversation
    /// (`previous_item_id: None`) works and keeps the item's id: seeding a session with a saved
    /// history and replaying the history after a reconnect. When `false` the session does
    /// neither: a new connection starts with an empty server-side context.
    pub create_items: bool,
    /// [`DeleteItem`](super::ModelCommand::DeleteItem) and `CreateItem` at a position
    /// (`previous_item_id: Some(..)`) work: editing the history. When `false` the session
    /// refuses history edits.
    pub edit_items: bool,
    /// The model calls the session's function tools (from the settings' `tools`) with
    /// [`FunctionCall`](super::ModelEvent::FunctionCall) events, and takes their results as
    /// [`ToolOutput`](super::ModelCommand::ToolOutput). When `false` it never calls a tool.
    pub function_calls: bool,
    /// The server delegates work to the client on its own (OpenAI Live API's client
    /// delegation): such work arrives as a `FunctionCall` that may come outside any response
    /// (`response_id` empty) and with empty arguments (`{}`); its `ToolOutput` is how the
    /// result goes back. The session answers each such call on its own, without waiting for
    /// a `ResponseDone`.
    pub delegated_tools: bool,
    /// The model answers a tool's output by itself: after a `ToolOutput` the backend starts
    /// the follow-up response whatever `respond` says (Gemini Live, OpenAI's Live API). When
    /// `true` the session sends no `CreateResponse` after a batch of tool outputs, and a
    /// background tool's result is still spoken.
    pub auto_tool_reply: bool,
    /// The user's audio is transcribed:
    /// [`InputTranscriptDelta`](super::ModelEvent::InputTranscriptDelta) and
    /// [`InputTranscriptCompleted`](super::ModelEvent::InputTranscriptCompleted) arrive (the
    /// settings' `transcription` is honoured). When `false` user audio items keep no text.
    pub input_transcription: bool,
    /// Responses can be text only (`output_modalities: [Text]`).
    pub text_output: bool,
    /// Responses can be spoken: [`Audio`](super::ModelEvent::Audio) events, in one of
    /// [`output_formats`](Self::output_formats).
    pub audio_output: bool,
    /// User messages may hold images ([`UserContent::Image`](super::UserContent::Image)).
    /// When `false` the backend drops image parts.
    pub image_input: bool,
    /// Formats the backend accepts for input audio (the settings' `input_format`).
    pub input_formats: Cow<'static, [AudioFormat]>,
    /// Formats the backend can send (the settings' `output_format`).
    pub output_formats: Cow<'static, [AudioFormat]>,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::openai_realtime()
    }
}

macro_rules! setters {
    ($($name:ident),* $(,)?) => {
        $(
            #[doc = concat!("Sets [`", stringify!($name), "`](Self::", stringify!($name), ").")]
            ///
            /// ```
            /// use realtime_agents::model::Capabilities;
            #[doc = concat!("let caps = Capabilities::minimal().", stringify!($name), "(true);")]
            #[doc = concat!("assert!(caps.", stringify!($name), ");")]
            /// ```
            #[must_use]
            pub const fn $name(mut self, supported: bool) -> Self {
                self.$name = supported;
                self
            }
        )*
    };
}

impl Capabilities {
    /// Everything the OpenAI Realtime API (GA) does: every flag but
    /// [`model_turn_taking`](Self::model_turn_taking),
    /// [`delegated_tools`](Self::delegated_tools) and
    /// [`auto_tool_reply`](Self::auto_tool_reply); PCM16 at 24 kHz, G.711 μ-law and A-law
    /// both ways.
    ///
    /// ```
    /// use realtime_agents::model::Capabilities;
    /// assert_eq!(Capabilities::openai_realtime(), Capabilities::default());
    /// assert!(!Capabilities::default().auto_tool_reply);
    /// ```
    #[must_use]
    pub const fn openai_realtime() -> Self {
        Self {
            truncation: true,
            response_create: true,
            response_cancel: true,
            server_turn_detection: true,
            manual_turns: true,
            model_turn_taking: false,
            mutable_instructions: true,
            mutable_tools: true,
            mutable_voice: true,
            create_items: true,
            edit_items: true,
            function_calls: true,
            delegated_tools: false,
            auto_tool_reply: false,
            input_transcription: true,
            text_output: true,
            audio_output: true,
            image_input: true,
            input_formats: Cow::Borrowed(OPENAI_FORMATS),
            output_formats: Cow::Borrowed(OPENAI_FORMATS),
        }
    }

    /// Only what every backend must do (see the [module docs](super)): text user messages
    /// echoed as items, input audio accepted, responses bracketed by `ResponseStarted` and
    /// `ResponseDone`, `Closed` last. Every flag is `false`; the formats are PCM16 at 24 kHz.
    ///
    /// ```
    /// use realtime_agents::model::Capabilities;
    /// let echo = Capabilities::minimal().response_create(true).audio_output(true);
    /// assert!(echo.response_create && !echo.function_calls);
    /// ```
    #[must_use]
    pub const fn minimal() -> Self {
        Self {
            truncation: false,
            response_create: false,
            response_cancel: false,
            server_turn_detection: false,
            manual_turns: false,
            model_turn_taking: false,
            mutable_instructions: false,
            mutable_tools: false,
            mutable_voice: false,
            create_items: false,
            edit_items: false,
            function_calls: false,
            delegated_tools: false,
            auto_tool_reply: false,
            input_transcription: false,
            text_output: false,
            audio_output: false,
            image_input: false,
            input_formats: Cow::Borrowed(PCM16_24K_ONLY),
            output_formats: Cow::Borrowed(PCM16_24K_ONLY),
        }
    }

    setters!(
        truncation,
        response_create,
        response_cancel,
        server_turn_detection,
        manual_turns,
        model_turn_taking,
        mutable_instructions,
        mutable_tools,
        mutable_voice,
        create_items,
        edit_items,
        function_calls,
        delegated_tools,
        auto_tool_reply,
        input_transcription,
        text_output,
        audio_output,
        image_input,
    );

    /// Sets [`input_formats`](Self::input_formats) (a `&'static` slice or a `Vec`).
    ///
    /// ```
    /// use realtime_agents::{audio::AudioFormat, model::Capabilities};
    /// let caps = Capabilities::minimal().input_formats(&[AudioFormat::Pcm16 { rate: 16_000 }][..]);
    /// assert!(caps.supports_input_format(AudioFormat::Pcm16 { rate: 16_000 }));
    /// ```
    #[must_use]
    pub fn input_formats(mut self, formats: impl Into<Cow<'static, [AudioFormat]>>) -> Self {
        self.input_formats = formats.into();
        self
    }

    /// Sets [`output_formats`](Self::output_formats) (a `&'static` slice or a `Vec`).
    ///
    /// ```
    /// use realtime_agents::{audio::AudioFormat, model::Capabilities};
    /// let caps = Capabilities::minimal().output_formats(vec![AudioFormat::G711_ALAW]);
    /// assert!(caps.supports_output_format(AudioFormat::G711_ALAW));
    /// ```
    #[must_use]
    pub fn output_formats(mut self, formats: impl Into<Cow<'static, [AudioFormat]>>) -> Self {
        self.output_formats = formats.into();
        self
    }

    /// Whether `format` is one of [`input_formats`](Self::input_formats).
    ///
    /// ```
    /// use realtime_agents::{audio::AudioFormat, model::Capabilities};
    /// assert!(Capabilities::default().supports_input_format(AudioFormat::G711_ULAW));
    /// assert!(!Capabilities::minimal().supports_input_format(AudioFormat::G711_ULAW));
    /// ```
    pub fn supports_input_format(&self, format: AudioFormat) -> bool {
        self.input_formats.contains(&format)
    }

    /// Whether `format` is one of [`output_formats`](Self::output_formats).
    ///
    /// ```
    /// use realtime_agents::{audio::AudioFormat, model::Capabilities};
    /// assert!(Capabilities::default().supports_output_format(AudioFormat::PCM16_24K));
    /// ```
    pub fn supports_output_format(&self, format: AudioFormat) -> bool {
        self.output_formats.contains(&format)
    }
}
