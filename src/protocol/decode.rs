//! Decoding support shared by client and server events: the error type, the cheap first
//! pass that reads only the `type` field, and small serde helpers.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A frame that could not be decoded into a typed event.
///
/// Kept deliberately small (no copy of the frame): `event_type` says which event it was,
/// when that much could be read, and `message` is serde's explanation.
///
/// ```
/// use realtime_agents::protocol::ServerEvent;
///
/// let err = ServerEvent::from_json(r#"{"type":"response.output_audio.delta","event_id":"e1"}"#)
///     .unwrap_err();
/// assert_eq!(err.event_type.as_deref(), Some("response.output_audio.delta"));
/// assert!(err.message.contains("response_id"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeError {
    /// The frame's `type`, if it had a string `type` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// What was wrong (serde's message, with line and column).
    pub message: String,
}

impl DecodeError {
    pub(crate) fn new(event_type: Option<&str>, message: impl fmt::Display) -> Self {
        Self {
            event_type: event_type.map(str::to_owned),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.event_type {
            Some(t) => write!(f, "cannot decode `{t}` event: {}", self.message),
            None => write!(f, "cannot decode event: {}", self.message),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for crate::Error {
    fn from(e: DecodeError) -> Self {
        crate::Error::Protocol(e.to_string())
    }
}

/// Reads the `type` of a JSON object and skips everything else.
///
/// Borrows the type string from the input when it has no escapes, so the first pass over
/// a 20 ms audio delta allocates nothing. Rejects anything that is not an object (serde's
/// derived structs would also accept an array).
pub(crate) fn read_type(text: &str) -> Result<Cow<'_, str>, DecodeError> {
    match serde_json::from_str::<Tag<'_>>(text) {
        Ok(tag) => Ok(tag.0),
        Err(e) => Err(DecodeError::new(None, e)),
    }
}

/// Like [`read_type`], for an already parsed value.
pub(crate) fn value_type(value: &serde_json::Value) -> Result<&str, DecodeError> {
    let obj = value
        .as_object()
        .ok_or_else(|| DecodeError::new(None, "expected a JSON object"))?;
    match obj.get("type") {
        Some(serde_json::Value::String(t)) => Ok(t),
        Some(_) => Err(DecodeError::new(None, "field `type` is not a string")),
        None => Err(DecodeError::new(None, "missing field `type`")),
    }
}

struct Tag<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Tag<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TagVisitor)
    }
}

struct TagVisitor;

impl<'de> Visitor<'de> for TagVisitor {
    type Value = Tag<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with a string `type` field")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tag<'de>, A::Error> {
        let mut found: Option<Cow<'de, str>> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type if found.is_some() => return Err(de::Error::duplicate_field("type")),
                Key::Type => found = Some(map.next_value::<CowStr<'de>>()?.0),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        found
            .map(Tag)
            .ok_or_else(|| de::Error::missing_field("type"))
    }
}

enum Key {
    Type,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(if v == "type" { Key::Type } else { Key::Other })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CowVisitor;
        impl<'de> Visitor<'de> for CowVisitor {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(CowVisitor)
    }
}

/// Serializes `inner` (a struct) with a leading `"type": t` field.
#[derive(Serialize)]
pub(crate) struct Tagged<'a, T: ?Sized> {
    #[serde(rename = "type")]
    pub(crate) t: &'a str,
    #[serde(flatten)]
    pub(crate) inner: &'a T,
}

/// `deserialize_with` for tri-state fields (`Option<Option<T>>`): a present `null` becomes
/// `Some(None)`; an absent field stays `None` through `#[serde(default)]`.
pub(crate) fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Re-encodes a value; our types contain no maps with non-string keys, so this cannot fail.
pub(crate) fn to_json_string<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("protocol types always serialize to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_type_borrowed_and_escaped() {
        let t = read_type(r#"{"a":[1,{"type":"x"}],"type":"response.done","b":null}"#).unwrap();
        assert!(matches!(t, Cow::Borrowed("response.done")));
        let t = read_type(r#"{"type":"a\u002eb"}"#).unwrap();
        assert_eq!(t, "a.b");
    }

    #[test]
    fn rejects_non_objects_and_bad_types() {
        for bad in [
            "",
            "not json",
            "[\"error\"]",
            "42",
            "{}",
            r#"{"type":5}"#,
            r#"{"type":"a","type":"b"}"#,
            r#"{"type":"a"} trailing"#,
            r#"{"type":"a""#,
        ] {
            let err = read_type(bad).unwrap_err();
            assert_eq!(err.event_type, None, "{bad}");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn display_names_the_type() {
        let e = DecodeError::new(Some("error"), "missing field `error`");
        assert_eq!(
            e.to_string(),
            "cannot decode `error` event: missing field `error`"
        );
        let e: crate::Error = e.into();
        assert!(matches!(e, crate::Error::Protocol(m) if m.contains("`error`")));
    }
}
