//! Twilio Media Streams, bidirectional (`<Connect><Stream>`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    CarrierEvent, CarrierFrame, CarrierMessage, CarrierSerializer, MalformedFrame, StreamStart,
    decode_payload, lenient_u64,
};
use crate::audio::AudioFormat;

/// Twilio Media Streams: JSON text frames, μ-law 8 kHz in base64.
///
/// In: `connected`, `start`, `media`, `mark`, `dtmf`, `stop`. Out: `media`, `mark`, `clear`.
/// Numbers Twilio sends as strings (`timestamp`, `sequenceNumber`) are read either way;
/// binary frames are malformed (Twilio error 31950 the other way round).
///
/// ```
/// use realtime_agents::gateway::carrier::*;
/// let mut twilio = TwilioSerializer::new();
/// let start = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1",
///     "callSid":"CA1","customParameters":{"token":"t"},
///     "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
/// let CarrierEvent::Start(s) = twilio.decode(CarrierFrame::Text(start))? else { panic!() };
/// assert_eq!((s.stream_id.as_str(), s.call_id.as_deref()), ("MZ1", Some("CA1")));
/// assert_eq!(twilio.clear(), Some(CarrierMessage::Text(r#"{"event":"clear","streamSid":"MZ1"}"#.into())));
/// # Ok::<(), MalformedFrame>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct TwilioSerializer {
    stream_sid: String,
}

impl TwilioSerializer {
    /// A serializer for one stream.
    pub fn new() -> Self {
        Self::default()
    }
}

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default, borrow)]
    media: Option<Media<'a>>,
    #[serde(default)]
    start: Option<Value>,
    #[serde(default)]
    mark: Option<Named>,
    #[serde(default)]
    dtmf: Option<Dtmf>,
}

#[derive(Deserialize)]
struct Media<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default, borrow)]
    track: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct Dtmf {
    digit: String,
}

/// The session format for a Twilio (or Telnyx) media encoding.
pub(super) fn encoding_format(encoding: &str, rate: Option<u64>) -> Option<AudioFormat> {
    let rate_ok = rate.is_none_or(|r| r == 8000);
    match encoding.to_ascii_lowercase().as_str() {
        "audio/x-mulaw" | "pcmu" | "audio/pcmu" if rate_ok => Some(AudioFormat::G711_ULAW),
        "audio/x-alaw" | "pcma" | "audio/pcma" if rate_ok => Some(AudioFormat::G711_ALAW),
        _ => None,
    }
}

fn parameters(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

impl CarrierSerializer for TwilioSerializer {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn format(&self) -> AudioFormat {
        AudioFormat::G711_ULAW
    }

    fn decode(&mut self, frame: CarrierFrame<'_>) -> Result<CarrierEvent, MalformedFrame> {
        let CarrierFrame::Text(text) = frame else {
            return Err(MalformedFrame(
                "binary frame (Twilio sends JSON text frames only)".into(),
            ));
        };
        let inbound: Inbound<'_> =
            serde_json::from_str(text).map_err(|e| MalformedFrame(format!("not JSON: {e}")))?;
        let missing = |what: &str| MalformedFrame(format!("`{}` without `{what}`", inbound.event));
        Ok(match inbound.event.as_ref() {
            "connected" => CarrierEvent::Connected,
            "start" => {
                let start = inbound.start.as_ref().ok_or_else(|| missing("start"))?;
                let stream_sid = start["streamSid"]
                    .as_str()
                    .ok_or_else(|| missing("start.streamSid"))?;
                self.stream_sid = stream_sid.to_owned();
                let media_format = &start["mediaFormat"];
                let format = media_format["encoding"].as_str().and_then(|encoding| {
                    encoding_format(encoding, lenient_u64(media_format.get("sampleRate")))
                });
                CarrierEvent::Start(StreamStart {
                    stream_id: stream_sid.to_owned(),
                    call_id: start["callSid"].as_str().map(str::to_owned),
                    parameters: parameters(start.get("customParameters")),
                    format,
                })
            }
            "media" => {
                let media = inbound.media.ok_or_else(|| missing("media"))?;
                if media.track.as_deref().is_some_and(|t| t != "inbound") {
                    return Ok(CarrierEvent::Other {
                        event: format!("media ({} track)", media.track.unwrap_or_default()),
                    });
                }
                CarrierEvent::Media {
                    audio: decode_payload(&media.payload)?,
                    timestamp_ms: lenient_u64(media.timestamp.as_ref()),
                }
            }
            "mark" => CarrierEvent::Mark {
                name: inbound.mark.ok_or_else(|| missing("mark.name"))?.name,
            },
            "dtmf" => CarrierEvent::Dtmf {
                digit: inbound.dtmf.ok_or_else(|| missing("dtmf.digit"))?.digit,
            },
            "stop" => CarrierEvent::Stop,
            other => CarrierEvent::Other {
                event: other.to_owned(),
            },
        })
    }

    fn media(&self, audio: &[u8]) -> CarrierMessage {
        let payload = base64_simd::STANDARD.encode_to_string(audio);
        CarrierMessage::Text(
            json!({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})
                .to_string(),
        )
    }

    fn mark(&self, name: &str) -> Option<CarrierMessage> {
        Some(CarrierMessage::Text(
            json!({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
                .to_string(),
        ))
    }

    fn clear(&self) -> Option<CarrierMessage> {
        Some(CarrierMessage::Text(
            json!({"event": "clear", "streamSid": self.stream_sid}).to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_inbound_event() {
        let mut t = TwilioSerializer::new();
        let read = |t: &mut TwilioSerializer, s: &str| t.decode(CarrierFrame::Text(s));
        assert_eq!(
            read(
                &mut t,
                r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#
            ),
            Ok(CarrierEvent::Connected)
        );
        let media = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"//8="}}"#;
        assert_eq!(
            read(&mut t, media),
            Ok(CarrierEvent::Media {
                audio: vec![0xff, 0xff],
                timestamp_ms: Some(40)
            })
        );
        let mark =
            r#"{"event":"mark","streamSid":"MZ1","sequenceNumber":"4","mark":{"name":"g0m1"}}"#;
        assert_eq!(
            read(&mut t, mark),
            Ok(CarrierEvent::Mark {
                name: "g0m1".into()
            })
        );
        let dtmf = r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"7"}}"#;
        assert_eq!(
            read(&mut t, dtmf),
            Ok(CarrierEvent::Dtmf { digit: "7".into() })
        );
        assert_eq!(
            read(&mut t, r#"{"event":"stop","streamSid":"MZ1","stop":{}}"#),
            Ok(CarrierEvent::Stop)
        );
        assert_eq!(
            read(&mut t, r#"{"event":"surprise"}"#),
            Ok(CarrierEvent::Other {
                event: "surprise".into()
            })
        );
        assert!(read(&mut t, r#"{"event":"media","media":{"payload":"!!"}}"#).is_err());
        assert!(read(&mut t, r#"{"event":"media"}"#).is_err());
        assert!(t.decode(CarrierFrame::Binary(&[1, 2])).is_err());
    }

    #[test]
    fn builds_outbound_messages() {
        let mut t = TwilioSerializer::new();
        let _ = t.decode(CarrierFrame::Text(
            r#"{"event":"start","start":{"streamSid":"MZ9","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
        ));
        let CarrierMessage::Text(media) = t.media(&[0xff; 3]) else {
            panic!("text expected")
        };
        let v: Value = serde_json::from_str(&media).unwrap();
        assert_eq!(
            v,
            json!({"event":"media","streamSid":"MZ9","media":{"payload":"////"}})
        );
        let Some(CarrierMessage::Text(mark)) = t.mark("m1") else {
            panic!("mark expected")
        };
        assert!(mark.contains(r#""mark":{"name":"m1"}"#));
    }
}
