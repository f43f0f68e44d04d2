//! The Realtime session configuration: GA defaults, `session.update` validation and merge.

use serde_json::{Map, Value, json};

use super::errors::{Rejection, invalid, missing};
use crate::audio::AudioFormat;

const SESSION_KEYS: &[&str] = &[
    "type",
    "model",
    "output_modalities",
    "instructions",
    "audio",
    "include",
    "tracing",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "truncation",
    "prompt",
    "parallel_tool_calls",
    "reasoning",
    // Read-only fields a client may echo back from `session.created`.
    "id",
    "object",
    "expires_at",
];
const AUDIO_KEYS: &[&str] = &["input", "output"];
const INPUT_KEYS: &[&str] = &[
    "format",
    "noise_reduction",
    "transcription",
    "turn_detection",
];
const OUTPUT_KEYS: &[&str] = &["format", "voice", "speed"];

/// The default GA session of a new connection.
pub(crate) fn default_session(model: &str, id: &str, expires_at: u64) -> Value {
    json!({
        "type": "realtime",
        "object": "realtime.session",
        "id": id,
        "expires_at": expires_at,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": null,
        "truncation": "auto",
        "prompt": null,
        "include": null,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": null,
                "noise_reduction": null,
                "turn_detection": default_turn_detection("server_vad"),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0,
            },
        },
    })
}

/// Defaults of a turn-detection mode.
fn default_turn_detection(kind: &str) -> Value {
    match kind {
        "semantic_vad" => json!({
            "type": "semantic_vad",
            "eagerness": "auto",
            "create_response": true,
            "interrupt_response": true,
        }),
        _ => json!({
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
            "idle_timeout_ms": null,
            "create_response": true,
            "interrupt_response": true,
        }),
    }
}

fn unknown_keys(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), Rejection> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err((
            "unknown_parameter",
            format!("Unknown parameter: '{path}.{k}'."),
            Some(format!("{path}.{k}")),
        )),
        None => Ok(()),
    }
}

/// Parses a GA audio format object (`audio/pcm` must be 24 kHz).
pub(crate) fn parse_format(value: &Value) -> Option<AudioFormat> {
    let format: AudioFormat = serde_json::from_value(value.clone()).ok()?;
    match format {
        AudioFormat::Pcm16 { rate: 24_000 } | AudioFormat::G711Ulaw | AudioFormat::G711Alaw => {
            Some(format)
        }
        AudioFormat::Pcm16 { .. } => None,
    }
}

fn normalise_format(value: &Value, param: &str) -> Result<Value, Rejection> {
    match parse_format(value) {
        Some(f) => Ok(serde_json::to_value(f).unwrap_or(Value::Null)),
        None => Err(invalid(
            param,
            format!(
                "Invalid value: {value}. Supported formats are {{\"type\":\"audio/pcm\",\"rate\":24000}}, \
                 {{\"type\":\"audio/pcmu\"}} and {{\"type\":\"audio/pcma\"}}."
            ),
        )),
    }
}

/// Checks `output_modalities`: `["audio"]` or `["text"]`.
pub(crate) fn check_modalities(value: &Value, param: &str) -> Result<(), Rejection> {
    let ok =
        matches!(value.as_array().map(Vec::as_slice), Some([m]) if m == "audio" || m == "text");
    if ok {
        Ok(())
    } else {
        Err(invalid(
            param,
            format!("Invalid value: {value}. Supported values are: [\"audio\"] and [\"text\"]."),
        ))
    }
}

/// Validates a `session.update` payload and returns the merged session.
///
/// `voice_locked` is true once this connection produced assistant audio: the voice can no
/// longer change then.
pub(crate) fn apply_update(
    current: &Value,
    update: Option<&Value>,
    voice_locked: bool,
) -> Result<Value, Rejection> {
    let Some(update) = update else {
        return Err(missing("session"));
    };
    let Some(update) = update.as_object() else {
        return Err(invalid(
            "session",
            "Invalid type for 'session': expected an object.".to_string(),
        ));
    };
    match update.get("type") {
        None | Some(Value::Null) => {
            return Err(missing("session.type"));
        }
        Some(t) if t == "realtime" => {}
        Some(t) => {
            return Err(invalid(
                "session.type",
                format!(
                    "Invalid value: {t}. This is a realtime session: 'session.type' must be 'realtime'."
                ),
            ));
        }
    }
    unknown_keys(update, SESSION_KEYS, "session")?;
    if let Some(m) = update.get("output_modalities") {
        check_modalities(m, "session.output_modalities")?;
    }
    let mut merged = current.clone();
    for (key, value) in update {
        if matches!(key.as_str(), "id" | "object" | "expires_at" | "audio") {
            continue;
        }
        merged[key] = value.clone();
    }
    match update.get("audio") {
        None => {}
        Some(Value::Null) => {}
        Some(Value::Object(audio)) => {
            unknown_keys(audio, AUDIO_KEYS, "session.audio")?;
            if let Some(Value::Object(input)) = audio.get("input") {
                unknown_keys(input, INPUT_KEYS, "session.audio.input")?;
                let target = &mut merged["audio"]["input"];
                for (key, value) in input {
                    target[key] = match (key.as_str(), value) {
                        ("format", Value::Null) => json!({"type": "audio/pcm", "rate": 24000}),
                        ("format", v) => normalise_format(v, "session.audio.input.format")?,
                        ("turn_detection", Value::Object(td)) => {
                            let kind = td
                                .get("type")
                                .and_then(Value::as_str)
                                .unwrap_or("server_vad");
                            if !matches!(kind, "server_vad" | "semantic_vad") {
                                return Err(invalid(
                                    "session.audio.input.turn_detection.type",
                                    format!(
                                        "Invalid value: '{kind}'. Supported values are: 'server_vad' and 'semantic_vad'."
                                    ),
                                ));
                            }
                            let mut base = match target.get("turn_detection") {
                                Some(old) if old["type"] == kind => old.clone(),
                                _ => default_turn_detection(kind),
                            };
                            for (k, v) in td {
                                base[k] = v.clone();
                            }
                            base["type"] = Value::from(kind);
                            base
                        }
                        (_, v) => v.clone(),
                    };
                }
            }
            if let Some(Value::Object(output)) = audio.get("output") {
                unknown_keys(output, OUTPUT_KEYS, "session.audio.output")?;
                let target = &mut merged["audio"]["output"];
                for (key, value) in output {
                    if key == "voice" && voice_locked && target.get("voice") != Some(value) {
                        return Err((
                            "cannot_update_voice",
                            "Cannot update a conversation's voice if assistant audio is present."
                                .to_string(),
                            Some("session.audio.output.voice".to_string()),
                        ));
                    }
                    target[key] = match (key.as_str(), value) {
                        ("format", Value::Null) => json!({"type": "audio/pcm", "rate": 24000}),
                        ("format", v) => normalise_format(v, "session.audio.output.format")?,
                        (_, v) => v.clone(),
                    };
                }
            }
        }
        Some(_) => {
            return Err(invalid(
                "session.audio",
                "Invalid type for 'session.audio': expected an object.".to_string(),
            ));
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_validates() {
        let base = default_session("gpt-realtime", "sess_1", 0);
        let err = apply_update(&base, Some(&json!({"instructions": "x"})), false).unwrap_err();
        assert_eq!(err.0, "missing_required_parameter");
        let err = apply_update(
            &base,
            Some(&json!({"type": "realtime", "input_audio_format": "pcm16"})),
            false,
        )
        .unwrap_err();
        assert_eq!(err.0, "unknown_parameter");
        let merged = apply_update(
            &base,
            Some(&json!({"type": "realtime", "instructions": "Be nice",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad"}},
                          "output": {"format": {"type": "audio/pcmu"}}}})),
            false,
        )
        .unwrap();
        assert_eq!(merged["instructions"], "Be nice");
        assert_eq!(merged["audio"]["output"]["voice"], "alloy");
        assert_eq!(
            merged["audio"]["output"]["format"],
            json!({"type": "audio/pcmu"})
        );
        assert_eq!(
            merged["audio"]["input"]["turn_detection"]["eagerness"],
            "auto"
        );
        assert!(
            merged["audio"]["input"]["turn_detection"]
                .get("threshold")
                .is_none()
        );
        let merged = apply_update(
            &merged,
            Some(&json!({"type": "realtime", "audio": {"input": {"turn_detection": null}}})),
            false,
        )
        .unwrap();
        assert!(merged["audio"]["input"]["turn_detection"].is_null());
        let err = apply_update(
            &merged,
            Some(&json!({"type": "realtime", "audio": {"output": {"voice": "ash"}}})),
            true,
        )
        .unwrap_err();
        assert_eq!(err.0, "cannot_update_voice");
        assert!(
            apply_update(
                &merged,
                Some(&json!({"type": "realtime", "audio": {"output": {"voice": "alloy"}}})),
                true
            )
            .is_ok()
        );
    }
}
