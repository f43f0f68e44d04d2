//! Phone carriers' media streams: one small serializer per carrier, one bridge for all.
//!
//! A [`CarrierSerializer`] maps a carrier's WebSocket frames to [`CarrierEvent`]s and builds
//! the three messages the bridge sends: audio, a playback marker and a flush. Everything else
//! (pacing in 20 ms frames, turning marker echoes into playback positions, flushing on
//! barge-in, DTMF, drain) is the bridge's, the same for every carrier. The session never sees
//! the carrier.
//!
//! | carrier | serializer | audio | marker / echo | flush |
//! |---|---|---|---|---|
//! | Twilio Media Streams | [`TwilioSerializer`] | μ-law 8 kHz, base64 in JSON text | `mark` / `mark` | `clear` |
//! | Telnyx media streaming (`stream_bidirectional_mode: rtp`) | [`TelnyxSerializer`] | PCMU or PCMA 8 kHz, base64 in JSON text | `mark` / `mark` | `clear` |
//! | Plivo audio streams | not included | μ-law 8 kHz (`contentType`), JSON `playAudio` | `checkpoint` / `playedStream` | `clearAudio` |
//! | Vonage WebSockets | not included | 16-bit PCM 8/16 kHz in **binary** frames | `notify` / `websocket:notify` | `clear` |
//!
//! Plivo is the Twilio serializer with other event names. Vonage sends binary PCM at 8 or
//! 16 kHz, so its serializer would decode [`CarrierFrame::Binary`] and declare
//! `AudioFormat::Pcm16 { rate: 16_000 }`; the bridge accepts only formats a session speaks
//! natively (G.711 μ-law or A-law, PCM16 24 kHz) and closes other calls with a log line, so
//! Vonage also needs a resampling step (the crate's [`StreamResampler`](crate::audio::StreamResampler)).

mod telnyx;
mod twilio;

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::audio::AudioFormat;

pub use telnyx::TelnyxSerializer;
pub use twilio::TwilioSerializer;

/// A frame received from a carrier.
///
/// ```
/// use realtime_agents::gateway::carrier::{CarrierFrame, CarrierSerializer, TwilioSerializer};
/// let mut twilio = TwilioSerializer::new();
/// assert!(twilio.decode(CarrierFrame::Text(r#"{"event":"connected"}"#)).is_ok());
/// assert!(twilio.decode(CarrierFrame::Binary(&[0xff; 160])).is_err());
/// ```
#[derive(Debug, Clone, Copy)]
pub enum CarrierFrame<'a> {
    /// A text frame (JSON for every carrier here).
    Text(&'a str),
    /// A binary frame (Vonage audio; Twilio forbids them).
    Binary(&'a [u8]),
}

/// A frame to send to a carrier.
///
/// ```
/// use realtime_agents::gateway::carrier::{CarrierMessage, CarrierSerializer, TelnyxSerializer};
/// let CarrierMessage::Text(json) = TelnyxSerializer::new().media(&[0xff; 3]) else { panic!() };
/// assert_eq!(json, r#"{"event":"media","media":{"payload":"////"}}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierMessage {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

/// What a carrier said, in neutral terms.
///
/// ```
/// use realtime_agents::gateway::carrier::*;
/// let mut twilio = TwilioSerializer::new();
/// let dtmf = r#"{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"5"}}"#;
/// assert_eq!(twilio.decode(CarrierFrame::Text(dtmf)), Ok(CarrierEvent::Dtmf { digit: "5".into() }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CarrierEvent {
    /// The socket is up (Twilio's `connected`).
    Connected,
    /// The media stream starts: who is calling and in which format.
    Start(StreamStart),
    /// Caller audio, in the stream's format (raw, not base64).
    Media {
        /// The audio bytes.
        audio: Vec<u8>,
        /// The carrier's timestamp of the chunk in ms since the stream started, if it sends one.
        timestamp_ms: Option<u64>,
    },
    /// A marker the bridge sent came back: the audio sent before it has been played (or was
    /// flushed; the bridge tells the two apart).
    Mark {
        /// The marker's name.
        name: String,
    },
    /// The caller pressed a key.
    Dtmf {
        /// `0`-`9`, `*`, `#`, `A`-`D`.
        digit: String,
    },
    /// The stream ended (the call hung up, or the stream was stopped).
    Stop,
    /// A well-formed event the bridge has no use for (logged once per kind, then ignored).
    Other {
        /// The event's name.
        event: String,
    },
}

/// The `start` of a media stream.
///
/// ```
/// use realtime_agents::gateway::carrier::StreamStart;
/// // What a `verify_stream` check sees.
/// fn trusted(start: &StreamStart) -> bool {
///     start.call_id.is_some() && start.parameters.get("token").is_some_and(|t| t == "s3cret")
/// }
/// assert!(!trusted(&StreamStart::default()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStart {
    /// The stream's id, echoed in everything the bridge sends (Twilio `streamSid`).
    pub stream_id: String,
    /// The carrier's call id (Twilio `callSid`).
    pub call_id: Option<String>,
    /// Parameters from the call setup (Twilio `<Parameter>`s).
    pub parameters: BTreeMap<String, String>,
    /// The audio format the carrier announced, if it is one a session speaks.
    pub format: Option<AudioFormat>,
}

/// A frame the serializer could not read. The bridge logs it and closes the call.
///
/// ```
/// use realtime_agents::gateway::carrier::{CarrierFrame, CarrierSerializer, TwilioSerializer};
/// let mut twilio = TwilioSerializer::new();
/// let error = twilio.decode(CarrierFrame::Text("{not json")).unwrap_err();
/// assert!(error.to_string().starts_with("malformed frame"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed frame: {0}")]
pub struct MalformedFrame(pub String);

/// One carrier's wire format. The bridge makes one per call (it may keep the stream id).
///
/// Implementing a carrier means writing `decode` and the three builders; a sketch for
/// Plivo's audio streams:
///
/// ```
/// use realtime_agents::audio::AudioFormat;
/// use realtime_agents::gateway::carrier::*;
/// use serde_json::{Value, json};
///
/// #[derive(Debug, Default)]
/// struct Plivo { stream_id: String }
///
/// impl CarrierSerializer for Plivo {
///     fn name(&self) -> &'static str { "plivo" }
///     fn format(&self) -> AudioFormat { AudioFormat::G711_ULAW }
///     fn decode(&mut self, frame: CarrierFrame<'_>) -> Result<CarrierEvent, MalformedFrame> {
///         let CarrierFrame::Text(text) = frame else {
///             return Err(MalformedFrame("binary frame".into()));
///         };
///         let v: Value = serde_json::from_str(text).map_err(|e| MalformedFrame(e.to_string()))?;
///         Ok(match v["event"].as_str().unwrap_or_default() {
///             "start" => {
///                 self.stream_id = v["start"]["streamId"].as_str().unwrap_or_default().into();
///                 let mut start = StreamStart::default();
///                 start.stream_id = self.stream_id.clone();
///                 CarrierEvent::Start(start)
///             }
///             "playedStream" => CarrierEvent::Mark { name: v["name"].as_str().unwrap_or_default().into() },
///             "stop" => CarrierEvent::Stop,
///             other => CarrierEvent::Other { event: other.into() }, // media, dtmf: left out here
///         })
///     }
///     fn media(&self, audio: &[u8]) -> CarrierMessage {
///         let payload = base64_simd::STANDARD.encode_to_string(audio);
///         CarrierMessage::Text(json!({"event": "playAudio", "streamId": self.stream_id,
///             "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": payload}}).to_string())
///     }
///     fn mark(&self, name: &str) -> Option<CarrierMessage> {
///         Some(CarrierMessage::Text(json!({"event": "checkpoint", "streamId": self.stream_id, "name": name}).to_string()))
///     }
///     fn clear(&self) -> Option<CarrierMessage> {
///         Some(CarrierMessage::Text(json!({"event": "clearAudio", "streamId": self.stream_id}).to_string()))
///     }
/// }
/// ```
pub trait CarrierSerializer: Send + std::fmt::Debug + 'static {
    /// Short lowercase name, for logs and the `transport` metric label (`"twilio"`).
    fn name(&self) -> &'static str;

    /// The audio format of the stream, used unless `start` announces another.
    fn format(&self) -> AudioFormat;

    /// Reads one frame from the carrier.
    fn decode(&mut self, frame: CarrierFrame<'_>) -> Result<CarrierEvent, MalformedFrame>;

    /// Audio for the caller, in the stream's format (the bridge sends 20 ms at a time).
    fn media(&self, audio: &[u8]) -> CarrierMessage;

    /// A named marker the carrier echoes once the audio sent before it has played; `None` if
    /// the carrier has none (then truncation falls back to audio sent).
    fn mark(&self, name: &str) -> Option<CarrierMessage>;

    /// Drops the audio the carrier has buffered (barge-in); `None` if it cannot.
    fn clear(&self) -> Option<CarrierMessage>;
}

/// Reads a JSON number that carriers send as a string or a number.
pub(crate) fn lenient_u64(value: Option<&serde_json::Value>) -> Option<u64> {
    match value? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Decodes a base64 payload.
pub(crate) fn decode_payload(payload: &str) -> Result<Vec<u8>, MalformedFrame> {
    base64_simd::STANDARD
        .decode_to_vec(payload.as_bytes())
        .map_err(|_| MalformedFrame("media payload is not base64".into()))
}
