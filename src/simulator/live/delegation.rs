//! Delegation: when the simulated model hands a user turn to the client or to its simulated
//! Responses backend, and how the answers come back.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::{LiveState, Rejection, missing};
use crate::model::live::DELEGATE_LINE;
use crate::simulator::brain::{self, Plan, Turn};
use crate::simulator::outgoing::Events;

/// What the model says when it delegates (the automatic acknowledgement).
const ACKNOWLEDGEMENT: &str = "Okay, let me check.";

/// The delegation type, fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Mode {
    #[default]
    Client,
    Responses,
    Decisions,
}

impl Mode {
    /// The type of a `delegation` object (`null`: client).
    pub(super) fn parse(delegation: &Value) -> Result<Mode, Rejection> {
        let invalid = |why: String| {
            (
                "invalid_value",
                why,
                Some("session.delegation.type".to_owned()),
            )
        };
        match delegation {
            Value::Null => Ok(Mode::Client),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("client") => Ok(Mode::Client),
                Some("responses") => {
                    if o.get("responses")
                        .and_then(|r| r.get("model"))
                        .and_then(Value::as_str)
                        .is_none()
                    {
                        return Err(missing("session.delegation.responses.model"));
                    }
                    Ok(Mode::Responses)
                }
                Some("decisions") => Ok(Mode::Decisions),
                other => Err(invalid(format!(
                    "Invalid delegation type {other:?}: expected 'client', 'responses' or 'decisions'."
                ))),
            },
            _ => Err(invalid(
                "'session.delegation' must be an object.".to_owned(),
            )),
        }
    }
}

/// A Responses delegation's calls and their outputs.
#[derive(Debug)]
struct Backend {
    delegation_id: String,
    calls: Vec<String>,
    outputs: HashMap<String, String>,
}

#[derive(Debug, Default)]
pub(super) struct Delegation {
    mode: Mode,
    /// The resolved `delegation` object.
    config: Value,
    /// Client delegations not answered yet.
    pending: HashSet<String>,
    /// The Responses delegation waiting for its outputs.
    backend: Option<Backend>,
    next_response: u64,
}

impl Delegation {
    pub(super) fn mode(&self) -> Mode {
        self.mode
    }

    pub(super) fn set_mode(&mut self, mode: Mode, config: &Value) {
        self.mode = mode;
        self.config = config.clone();
    }

    /// The `delegation` object as `session.updated` shows it.
    pub(super) fn resolved(&self) -> Value {
        if self.config.is_null() {
            json!({"type": "client"})
        } else {
            self.config.clone()
        }
    }

    /// A `session.update`'s delegation: the same type, settings merged.
    pub(super) fn update(&mut self, update: &Value) -> Result<(), Rejection> {
        let mode = Mode::parse_update(update)?;
        if mode != self.mode {
            return Err((
                "immutable_field_update",
                "The delegation type cannot change; start a new session instead.".to_owned(),
                Some("session.delegation.type".to_owned()),
            ));
        }
        let mut config = self.resolved();
        if let (Some(target), Some(source)) = (config.as_object_mut(), update.as_object()) {
            for (key, value) in source {
                match (target.get_mut(key), value) {
                    (Some(Value::Object(inner)), Value::Object(patch)) => {
                        for (k, v) in patch {
                            inner.insert(k.clone(), v.clone());
                        }
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        self.config = config;
        Ok(())
    }

    /// A client delegation answered: whether it was pending.
    pub(super) fn answer_client(&mut self, id: &str) -> bool {
        self.pending.remove(id)
    }

    /// The tools the model may delegate: the Responses backend's, or under client delegation
    /// those named in the instructions' delegation line.
    fn tools(&self, instructions: &str) -> Vec<Value> {
        match self.mode {
            Mode::Responses => self
                .config
                .pointer("/responses/tools")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            Mode::Client => instructions
                .lines()
                .find_map(|line| line.trim().strip_prefix(DELEGATE_LINE))
                .into_iter()
                .flat_map(|names| names.split(','))
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| json!({"type": "function", "name": name}))
                .collect(),
            Mode::Decisions => Vec::new(),
        }
    }
}

impl Mode {
    fn parse_update(update: &Value) -> Result<Mode, Rejection> {
        match update.get("type").and_then(Value::as_str) {
            Some("client") => Ok(Mode::Client),
            Some("responses") => Ok(Mode::Responses),
            Some("decisions") => Ok(Mode::Decisions),
            _ => Err((
                "immutable_field_update",
                "'session.delegation' cannot be removed or changed to another type.".to_owned(),
                Some("session.delegation".to_owned()),
            )),
        }
    }
}

impl LiveState {
    /// Delegates `text` when it matches a tool; returns whether it did.
    pub(super) fn delegate(&mut self, text: &str, out: &mut Events) -> bool {
        let tools = self.delegation.tools(&self.instructions);
        let turns = [Turn::User(text.to_owned())];
        let Plan::Calls(calls) = brain::plan(&turns, "", &tools, &Value::from("auto"), true) else {
            return false;
        };
        let id = self.id("item");
        let offset_ms = self.input.ms(self.input.end());
        match self.delegation.mode() {
            Mode::Client => {
                self.delegation.pending.insert(id.clone());
                out.push(
                    json!({"type": "session.delegation.created", "offset_ms": offset_ms,
                    "delegation": {"id": id, "type": "delegation", "target": "client"}}),
                );
            }
            Mode::Responses => {
                self.delegation.next_response += 1;
                let response_id = format!("resp_{}", self.delegation.next_response);
                out.push(
                    json!({"type": "session.delegation.created", "offset_ms": offset_ms,
                    "delegation": {"id": id, "type": "delegation", "target": "responses",
                                   "response_id": response_id}}),
                );
                let event = |event: Value| json!({"type": "response.event", "delegation_id": id, "event": event});
                out.push(event(json!({"type": "response.created",
                    "response": {"id": response_id, "object": "response", "status": "in_progress"}})));
                let mut call_ids = Vec::new();
                for (i, (name, arguments)) in calls.into_iter().enumerate() {
                    let call_id = format!("call_{}_{i}", self.delegation.next_response);
                    out.push(event(
                        json!({"type": "response.output_item.done", "output_index": i,
                        "item": {"id": format!("fc_{call_id}"), "type": "function_call",
                                 "status": "completed", "call_id": call_id, "name": name,
                                 "arguments": arguments}}),
                    ));
                    call_ids.push(call_id);
                }
                out.push(event(json!({"type": "response.completed", "response": {
                    "id": response_id, "object": "response", "status": "completed", "output": [],
                    "usage": {"input_tokens": 120, "output_tokens": 20, "total_tokens": 140}}})));
                self.delegation.backend = Some(Backend {
                    delegation_id: id,
                    calls: call_ids,
                    outputs: HashMap::new(),
                });
            }
            Mode::Decisions => return false,
        }
        self.say(ACKNOWLEDGEMENT.to_owned());
        true
    }

    /// `response.item.create`: a function call's output for the Responses backend.
    pub(super) fn response_item_create(&mut self, value: &Value) -> Result<(), Rejection> {
        self.require_responses("response.item.create")?;
        let item = value.get("item").ok_or_else(|| missing("item"))?;
        if item.get("type").and_then(Value::as_str) != Some("function_call_output") {
            // Other input items are accepted and have no effect here.
            return Ok(());
        }
        let call_id = item
            .get("call_id")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("item.call_id"))?;
        let output = match item.get("output") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return Err(missing("item.output")),
        };
        if let Some(backend) = self.delegation.backend.as_mut() {
            if backend.calls.iter().any(|c| c == call_id) {
                backend.outputs.insert(call_id.to_owned(), output);
            }
        }
        Ok(())
    }

    /// `response.create`: continues the backend once every call is answered, and says the
    /// result.
    pub(super) fn response_create(&mut self, out: &mut Events) -> Result<(), Rejection> {
        self.require_responses("response.create")?;
        let Some(backend) = self.delegation.backend.take() else {
            return Err((
                "invalid_request_error",
                "No delegated response is waiting for tool results.".to_owned(),
                None,
            ));
        };
        if let Some(missing) = backend
            .calls
            .iter()
            .find(|c| !backend.outputs.contains_key(*c))
        {
            let message = format!("Responses handoff incomplete: no output for call '{missing}'.");
            self.delegation.backend = Some(backend);
            return Err(("invalid_request_error", message, None));
        }
        self.delegation.next_response += 1;
        let response_id = format!("resp_{}", self.delegation.next_response);
        let id = backend.delegation_id.clone();
        for kind in ["response.created", "response.completed"] {
            let status = if kind == "response.created" {
                "in_progress"
            } else {
                "completed"
            };
            out.push(
                json!({"type": "response.event", "delegation_id": id, "event": {
                "type": kind, "response": {"id": response_id, "object": "response",
                "status": status, "output": []}}}),
            );
        }
        for call in &backend.calls {
            if let Some(output) = backend.outputs.get(call) {
                self.turns.push(Turn::ToolOutput(output.clone()));
            }
        }
        self.reply();
        Ok(())
    }

    fn require_responses(&self, event: &str) -> Result<(), Rejection> {
        if self.delegation.mode() == Mode::Responses {
            Ok(())
        } else {
            Err((
                "invalid_request_error",
                format!("{event} requires Responses delegation."),
                Some("type".to_owned()),
            ))
        }
    }
}
