//! Realtime `error` events. A handler refuses a client event with a [`Rejection`]; the
//! dispatcher turns it into an `invalid_request_error` that echoes the client's `event_id`,
//! and the connection stays open.

use serde_json::{Value, json};

/// A refused client event: (code, message, param).
pub(crate) type Rejection = (&'static str, String, Option<String>);

/// An `error` event (`event_id`: the offending client event's, if it had one).
pub(super) fn error_event(
    code: &str,
    message: impl Into<String>,
    param: Option<String>,
    event_id: Option<&str>,
) -> Value {
    json!({
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message.into(),
            "param": param,
            "event_id": event_id,
        }
    })
}

/// `missing_required_parameter` for `param`.
pub(super) fn missing(param: &str) -> Rejection {
    (
        "missing_required_parameter",
        format!("Missing required parameter: '{param}'."),
        Some(param.to_string()),
    )
}

/// `invalid_value` of `param`.
pub(super) fn invalid(param: &str, message: impl Into<String>) -> Rejection {
    ("invalid_value", message.into(), Some(param.to_string()))
}
