//! Telnyx media streaming, bidirectional RTP mode.

use serde_json::{Value, json};

use super::twilio::encoding_format;
use super::{
    CarrierEvent, CarrierFrame, CarrierMessage, CarrierSerializer, MalformedFrame, StreamStart,
    decode_payload, lenient_u64,
};
use crate::audio::AudioFormat;

/// Telnyx media streaming with `stream_bidirectional_mode: "rtp"`: Twilio's shape in
/// snake case (`stream_id`, `call_control_id`), PCMU or PCMA at 8 kHz.
///
/// Set `bidirectional_codec` to the stream's `codec`, so audio goes back in the format it
/// came in. Telnyx does not promise media order; the bridge plays chunks as they come
/// (reordering by `sequence_number` is left out: loopback and a single TCP stream keep order).
///
/// ```
/// use realtime_agents::audio::AudioFormat;
/// use realtime_agents::gateway::carrier::*;
/// let mut telnyx = TelnyxSerializer::new();
/// let start = r#"{"event":"start","sequence_number":"1","stream_id":"s1","start":{
///     "call_control_id":"v3:abc","media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1}}}"#;
/// let CarrierEvent::Start(s) = telnyx.decode(CarrierFrame::Text(start))? else { panic!() };
/// assert_eq!(s.format, Some(AudioFormat::G711_ALAW));
/// assert_eq!(telnyx.clear(), Some(CarrierMessage::Text(r#"{"event":"clear"}"#.into())));
/// # Ok::<(), MalformedFrame>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct TelnyxSerializer {
    _private: (),
}

impl TelnyxSerializer {
    /// A serializer for one stream.
    pub fn new() -> Self {
        Self::default()
    }
}

impl CarrierSerializer for TelnyxSerializer {
    fn name(&self) -> &'static str {
        "telnyx"
    }

    fn format(&self) -> AudioFormat {
        AudioFormat::G711_ULAW
    }

    fn decode(&mut self, frame: CarrierFrame<'_>) -> Result<CarrierEvent, MalformedFrame> {
        let CarrierFrame::Text(text) = frame else {
            return Err(MalformedFrame(
                "binary frame (Telnyx sends JSON text frames)".into(),
            ));
        };
        let v: Value =
            serde_json::from_str(text).map_err(|e| MalformedFrame(format!("not JSON: {e}")))?;
        let event = v["event"]
            .as_str()
            .ok_or_else(|| MalformedFrame("no `event`".into()))?;
        let missing = |what: &str| MalformedFrame(format!("`{event}` without `{what}`"));
        Ok(match event {
            "connected" => CarrierEvent::Connected,
            "start" => {
                let start = v.get("start").ok_or_else(|| missing("start"))?;
                let format = &start["media_format"];
                CarrierEvent::Start(StreamStart {
                    stream_id: v["stream_id"].as_str().unwrap_or_default().to_owned(),
                    call_id: start["call_control_id"].as_str().map(str::to_owned),
                    parameters: Default::default(),
                    format: format["encoding"].as_str().and_then(|encoding| {
                        encoding_format(encoding, lenient_u64(format.get("sample_rate")))
                    }),
                })
            }
            "media" => {
                let media = v.get("media").ok_or_else(|| missing("media"))?;
                if media["track"].as_str().is_some_and(|t| t != "inbound") {
                    return Ok(CarrierEvent::Other {
                        event: "media (outbound track)".into(),
                    });
                }
                let payload = media["payload"]
                    .as_str()
                    .ok_or_else(|| missing("media.payload"))?;
                CarrierEvent::Media {
                    audio: decode_payload(payload)?,
                    timestamp_ms: lenient_u64(media.get("timestamp")),
                }
            }
            "mark" => CarrierEvent::Mark {
                name: v["mark"]["name"]
                    .as_str()
                    .ok_or_else(|| missing("mark.name"))?
                    .to_owned(),
            },
            "dtmf" => CarrierEvent::Dtmf {
                digit: v["dtmf"]["digit"]
                    .as_str()
                    .ok_or_else(|| missing("dtmf.digit"))?
                    .to_owned(),
            },
            "stop" => CarrierEvent::Stop,
            other => CarrierEvent::Other {
                event: other.to_owned(),
            },
        })
    }

    fn media(&self, audio: &[u8]) -> CarrierMessage {
        let payload = base64_simd::STANDARD.encode_to_string(audio);
        CarrierMessage::Text(json!({"event": "media", "media": {"payload": payload}}).to_string())
    }

    fn mark(&self, name: &str) -> Option<CarrierMessage> {
        Some(CarrierMessage::Text(
            json!({"event": "mark", "mark": {"name": name}}).to_string(),
        ))
    }

    fn clear(&self) -> Option<CarrierMessage> {
        Some(CarrierMessage::Text(json!({"event": "clear"}).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_inbound_event() {
        let mut t = TelnyxSerializer::new();
        let mut read = |s: &str| t.decode(CarrierFrame::Text(s));
        assert_eq!(
            read(r#"{"event":"connected","version":"1.0.0"}"#),
            Ok(CarrierEvent::Connected)
        );
        let Ok(CarrierEvent::Start(start)) = read(
            r#"{"event":"start","sequence_number":"1","stream_id":"s1","start":{"user_id":"u",
                "call_control_id":"v3:c","media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}}}"#,
        ) else {
            panic!("start expected")
        };
        assert_eq!(start.stream_id, "s1");
        assert_eq!(start.call_id.as_deref(), Some("v3:c"));
        assert_eq!(start.format, Some(AudioFormat::G711_ULAW));
        assert_eq!(
            read(
                r#"{"event":"media","sequence_number":"4","stream_id":"s1","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"//8="}}"#
            ),
            Ok(CarrierEvent::Media {
                audio: vec![0xff, 0xff],
                timestamp_ms: Some(5)
            })
        );
        assert_eq!(
            read(r#"{"event":"dtmf","stream_id":"s1","dtmf":{"digit":"9"}}"#),
            Ok(CarrierEvent::Dtmf { digit: "9".into() })
        );
        assert_eq!(
            read(r#"{"event":"mark","stream_id":"s1","mark":{"name":"m3"}}"#),
            Ok(CarrierEvent::Mark { name: "m3".into() })
        );
        assert_eq!(
            read(r#"{"event":"error","payload":{"code":100002,"title":"Unknown error"}}"#),
            Ok(CarrierEvent::Other {
                event: "error".into()
            })
        );
        assert_eq!(
            read(r#"{"event":"stop","stream_id":"s1","stop":{}}"#),
            Ok(CarrierEvent::Stop)
        );
        assert!(read(r#"{"sequence_number":"1"}"#).is_err());
        assert!(read(r#"{"event":"media","media":{}}"#).is_err());
    }
}
