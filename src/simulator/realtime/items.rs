//! The conversation: stored items, `conversation.item.create` / `.retrieve` / `.delete`,
//! response items joining it, and what the brain makes of each item.

use base64_simd::STANDARD as BASE64;
use serde_json::{Value, json};

use super::ConnectionState;
use super::errors::{Rejection, invalid, missing};
use crate::simulator::brain::Turn;
use crate::simulator::hearing::{InputAudio, transcribe};
use crate::simulator::outgoing::Events;

/// The assistant audio of a stored item, for truncation.
#[derive(Debug)]
pub(super) struct AudioTrack {
    /// Milliseconds of audio produced (or kept after a truncation).
    pub(super) produced_ms: f64,
}

/// An item of the conversation, as stored.
#[derive(Debug)]
pub(super) struct StoredItem {
    /// The item as the API shows it (`conversation.item.retrieved`).
    pub(super) json: Value,
    /// What the simulator understood of a user message (text, or its audio's transcript).
    pub(super) understood: Option<String>,
    /// Committed by the idle timeout.
    pub(super) idle: bool,
    /// Milliseconds of user audio in the item.
    pub(super) input_audio_ms: f64,
    /// Assistant audio, for truncation.
    pub(super) audio: Option<AudioTrack>,
}

impl StoredItem {
    pub(super) fn new(json: Value) -> Self {
        Self {
            json,
            understood: None,
            idle: false,
            input_audio_ms: 0.0,
            audio: None,
        }
    }

    pub(super) fn id(&self) -> &str {
        self.json["id"].as_str().unwrap_or_default()
    }
}

impl ConnectionState {
    pub(super) fn find(&self, id: &str) -> Option<usize> {
        self.items.iter().position(|i| i.id() == id)
    }

    pub(super) fn last_item_id(&self) -> Value {
        self.items
            .last()
            .map(|i| Value::from(i.id()))
            .unwrap_or(Value::Null)
    }

    pub(super) fn validate_item(item: &Value) -> Result<(), Rejection> {
        let Some(obj) = item.as_object() else {
            return Err(invalid(
                "item",
                "Invalid type for 'item': expected an object.",
            ));
        };
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("item.type"))?;
        match kind {
            "message" => {
                let role = obj
                    .get("role")
                    .and_then(Value::as_str)
                    .ok_or_else(|| missing("item.role"))?;
                let allowed: &[&str] = match role {
                    "user" => &["input_text", "input_audio", "input_image"],
                    "system" => &["input_text"],
                    "assistant" => &["output_text", "output_audio"],
                    other => {
                        return Err(invalid(
                            "item.role",
                            format!(
                                "Invalid value: '{other}'. Supported values are: 'user', 'assistant', and 'system'."
                            ),
                        ));
                    }
                };
                let content = obj
                    .get("content")
                    .and_then(Value::as_array)
                    .ok_or_else(|| missing("item.content"))?;
                for (i, part) in content.iter().enumerate() {
                    let param = format!("item.content[{i}].type");
                    let ty = part
                        .get("type")
                        .and_then(Value::as_str)
                        .ok_or_else(|| missing(&param))?;
                    if !allowed.contains(&ty) {
                        return Err(invalid(
                            &param,
                            format!(
                                "Invalid value: '{ty}'. Supported values are: {}.",
                                allowed
                                    .iter()
                                    .map(|a| format!("'{a}'"))
                                    .collect::<Vec<_>>()
                                    .join(" and ")
                            ),
                        ));
                    }
                    if ty == "input_text" && !part.get("text").is_some_and(Value::is_string) {
                        return Err(missing(&format!("item.content[{i}].text")));
                    }
                }
                Ok(())
            }
            "function_call_output" => {
                for field in ["call_id", "output"] {
                    if !obj.get(field).is_some_and(Value::is_string) {
                        return Err(missing(&format!("item.{field}")));
                    }
                }
                Ok(())
            }
            "function_call" => {
                for field in ["call_id", "name", "arguments"] {
                    if !obj.get(field).is_some_and(Value::is_string) {
                        return Err(missing(&format!("item.{field}")));
                    }
                }
                Ok(())
            }
            other => Err(invalid(
                "item.type",
                format!(
                    "Invalid value: '{other}'. Supported values are: 'message', 'function_call', and 'function_call_output'."
                ),
            )),
        }
    }

    /// Turns a client item into a stored item (id, object, status; user audio understood).
    pub(super) fn store_client_item(&mut self, item: &Value) -> StoredItem {
        let mut json = item.clone();
        if !json.get("id").is_some_and(Value::is_string) {
            json["id"] = Value::from(self.item_id());
        }
        json["object"] = Value::from("realtime.item");
        json["status"] = Value::from("completed");
        let mut stored = StoredItem::new(Value::Null);
        if json["type"] == "message" && json["role"] == "user" {
            let mut understood = Vec::new();
            if let Some(parts) = json["content"].as_array_mut() {
                for part in parts {
                    match part["type"].as_str() {
                        Some("input_text") => {
                            understood.push(part["text"].as_str().unwrap_or_default().to_string());
                        }
                        Some("input_audio") => {
                            let bytes = part
                                .get("audio")
                                .and_then(Value::as_str)
                                .and_then(|a| BASE64.decode_to_vec(a).ok())
                                .unwrap_or_default();
                            let mut input = InputAudio::new(self.input.format());
                            input.append(&bytes);
                            stored.input_audio_ms += input.buffered_ms();
                            match part.get("transcript").and_then(Value::as_str) {
                                Some(t) => understood.push(t.to_string()),
                                None if !input.samples().is_empty() => understood.push(transcribe(
                                    input.samples(),
                                    self.input.format().sample_rate(),
                                )),
                                None => {}
                            }
                            if let Some(map) = part.as_object_mut() {
                                map.remove("audio");
                                map.entry("transcript").or_insert(Value::Null);
                            }
                        }
                        _ => {}
                    }
                }
            }
            stored.understood = Some(understood.join(" "));
        }
        stored.json = json;
        stored
    }

    pub(super) fn item_create(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        let item = value.get("item").ok_or_else(|| missing("item"))?;
        Self::validate_item(item)?;
        if let Some(id) = item.get("id").and_then(Value::as_str) {
            if self.find(id).is_some() {
                return Err(invalid(
                    "item.id",
                    format!("Item with id '{id}' already exists in the conversation."),
                ));
            }
        }
        let position = match value.get("previous_item_id") {
            None | Some(Value::Null) => self.items.len(),
            Some(Value::String(p)) if p == "root" => 0,
            Some(Value::String(p)) => self.find(p).map(|i| i + 1).ok_or_else(|| {
                (
                    "item_not_found",
                    format!("Previous item with id '{p}' not found in the conversation."),
                    Some("previous_item_id".to_string()),
                )
            })?,
            Some(_) => {
                return Err(invalid(
                    "previous_item_id",
                    "Invalid type for 'previous_item_id': expected a string.",
                ));
            }
        };
        let stored = self.store_client_item(item);
        let json = stored.json.clone();
        let previous = match position {
            0 => Value::Null,
            n => Value::from(self.items[n - 1].id()),
        };
        self.items.insert(position, stored);
        out.push(
            json!({"type": "conversation.item.added", "previous_item_id": previous, "item": json}),
        );
        out.push(
            json!({"type": "conversation.item.done", "previous_item_id": previous, "item": json}),
        );
        Ok(())
    }

    /// A required string field of a client event.
    pub(super) fn required_item<'a>(value: &'a Value, field: &str) -> Result<&'a str, Rejection> {
        value
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| missing(field))
    }

    pub(super) fn item_retrieve(
        &mut self,
        value: &Value,
        out: &mut Events,
    ) -> Result<(), Rejection> {
        let id = Self::required_item(value, "item_id")?;
        let index = self.find(id).ok_or_else(|| {
            (
                "item_retrieve_invalid_item_id",
                format!("Error retrieving item: the item with id '{id}' does not exist."),
                Some("item_id".to_string()),
            )
        })?;
        out.push(
            json!({"type": "conversation.item.retrieved", "item": self.items[index].json.clone()}),
        );
        Ok(())
    }

    pub(super) fn item_delete(&mut self, value: &Value, out: &mut Events) -> Result<(), Rejection> {
        let id = Self::required_item(value, "item_id")?.to_string();
        let index = self.find(&id).ok_or_else(|| {
            (
                "item_delete_invalid_item_id",
                format!("Error deleting item: the item with id '{id}' does not exist."),
                Some("item_id".to_string()),
            )
        })?;
        self.items.remove(index);
        out.push(json!({"type": "conversation.item.deleted", "item_id": id}));
        Ok(())
    }

    /// The item as the brain sees it.
    pub(super) fn turn_of(item: &StoredItem) -> Turn {
        match (item.json["type"].as_str(), item.json["role"].as_str()) {
            (Some("message"), Some("user")) if item.idle => Turn::UserIdle,
            (Some("message"), Some("user")) => {
                Turn::User(item.understood.clone().unwrap_or_default())
            }
            (Some("function_call_output"), _) => {
                Turn::ToolOutput(item.json["output"].as_str().unwrap_or_default().to_string())
            }
            _ => Turn::Other,
        }
    }

    /// Inserts (or replaces) a response item in the conversation; returns the previous item id.
    pub(super) fn upsert_item(&mut self, json: Value, audio: Option<AudioTrack>) -> Value {
        let id = json["id"].as_str().unwrap_or_default().to_string();
        if let Some(index) = self.find(&id) {
            self.items[index].json = json;
            if audio.is_some() {
                self.items[index].audio = audio;
            }
            match index {
                0 => Value::Null,
                n => Value::from(self.items[n - 1].id()),
            }
        } else {
            let previous = self.last_item_id();
            let mut stored = StoredItem::new(json);
            stored.audio = audio;
            self.items.push(stored);
            previous
        }
    }
}
