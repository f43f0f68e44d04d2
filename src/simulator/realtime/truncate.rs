//! `conversation.item.truncate`: cutting an assistant audio item (stored, or still
//! streaming) at what the user heard. Like the real API, it deletes the part's transcript.

use serde_json::{Value, json};

use super::ConnectionState;
use super::errors::{Rejection, invalid, missing};
use crate::simulator::outgoing::Events;

impl ConnectionState {
    pub(super) fn item_truncate(
        &mut self,
        value: &Value,
        out: &mut Events,
    ) -> Result<(), Rejection> {
        let id = Self::required_item(value, "item_id")?.to_string();
        let content_index = value
            .get("content_index")
            .and_then(Value::as_u64)
            .ok_or_else(|| missing("content_index"))?;
        let audio_end_ms = value
            .get("audio_end_ms")
            .and_then(Value::as_u64)
            .ok_or_else(|| missing("audio_end_ms"))?;
        let index = self.find(&id).ok_or_else(|| {
            (
                "item_truncate_invalid_item_id",
                format!("Error truncating item: the item with id '{id}' does not exist."),
                Some("item_id".to_string()),
            )
        })?;
        let not_audio = || {
            (
                "unsupported_content_type",
                "Only model output audio messages can be truncated".to_string(),
                None,
            )
        };
        // The message may still be streaming.
        let streaming = self.response.as_ref().and_then(|r| {
            r.message
                .as_ref()
                .filter(|m| m.item_id == id && !m.finished)
                .map(|m| (r.audio, r.format, m.audio_sent))
        });
        if let Some((audio, format, sent)) = streaming {
            if !audio || content_index != 0 || sent == 0 {
                return Err(not_audio());
            }
            let produced = format.bytes_to_ms(sent).ceil() as u64;
            if audio_end_ms > produced {
                return Err(invalid(
                    "audio_end_ms",
                    format!(
                        "Audio content of {produced}ms is already shorter than {audio_end_ms}ms"
                    ),
                ));
            }
            if let Some(m) = self.response.as_mut().and_then(|r| r.message.as_mut()) {
                m.truncated_at = Some(audio_end_ms as f64);
            }
        } else {
            let item = &mut self.items[index];
            let is_audio = item.json["type"] == "message"
                && item.json["role"] == "assistant"
                && item.json["content"][content_index as usize]["type"] == "output_audio";
            let Some(track) = item
                .audio
                .as_mut()
                .filter(|t| is_audio && t.produced_ms > 0.0)
            else {
                return Err(not_audio());
            };
            let produced = track.produced_ms.ceil() as u64;
            if audio_end_ms > produced {
                return Err(invalid(
                    "audio_end_ms",
                    format!(
                        "Audio content of {produced}ms is already shorter than {audio_end_ms}ms"
                    ),
                ));
            }
            track.produced_ms = audio_end_ms as f64;
            // The real API deletes the whole transcript of a truncated part ("there is no
            // text in the context that hasn't been heard"), not just the unheard words.
            item.json["content"][content_index as usize]["transcript"] = Value::from("");
        }
        out.push(json!({
            "type": "conversation.item.truncated",
            "item_id": id,
            "content_index": content_index,
            "audio_end_ms": audio_end_ms,
        }));
        Ok(())
    }
}
