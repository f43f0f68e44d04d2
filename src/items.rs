//! Conversation items, as the session keeps them in its local history.
//!
//! These types are provider-neutral: a [`RealtimeModel`](crate::model::RealtimeModel) backend
//! translates its wire items into them, and the session orders, merges and reports them.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person talking to the agent.
    User,
    /// The model.
    Assistant,
    /// Instructions injected by the application.
    System,
}

/// Progress of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Still being produced.
    #[default]
    InProgress,
    /// Finished.
    Completed,
    /// Cut short (interrupted, cancelled or truncated).
    Incomplete,
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageContent {
    /// Text typed by the user (or a system instruction).
    InputText {
        /// The text.
        text: String,
    },
    /// Audio spoken by the user; `transcript` arrives once transcription finishes.
    InputAudio {
        /// Transcript of the audio, if known.
        transcript: Option<String>,
    },
    /// An image sent by the user.
    InputImage {
        /// `data:` URL or `https:` URL of the image.
        image_url: String,
        /// `auto`, `low` or `high`.
        detail: Option<String>,
    },
    /// Text produced by the model.
    Text {
        /// The text.
        text: String,
    },
    /// Audio produced by the model and its transcript.
    Audio {
        /// Transcript of the audio, if known.
        transcript: Option<String>,
    },
}

impl MessageContent {
    /// The text or transcript this part carries.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::InputText { text } | Self::Text { text } => Some(text),
            Self::InputAudio { transcript } | Self::Audio { transcript } => transcript.as_deref(),
            Self::InputImage { .. } => None,
        }
    }
}

/// A message in the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    /// Item id assigned by the server.
    pub item_id: String,
    /// The item this one follows, as the server reported it.
    pub previous_item_id: Option<String>,
    /// Author.
    pub role: Role,
    /// Parts in order.
    pub content: Vec<MessageContent>,
    /// Progress.
    pub status: ItemStatus,
}

impl MessageItem {
    /// All text and transcripts of the message, joined.
    ///
    /// ```
    /// use realtime_agents::items::{MessageContent, MessageItem, ItemStatus, Role};
    /// let m = MessageItem {
    ///     item_id: "i1".into(), previous_item_id: None, role: Role::Assistant,
    ///     content: vec![MessageContent::Audio { transcript: Some("Hi there".into()) }],
    ///     status: ItemStatus::Completed,
    /// };
    /// assert_eq!(m.text(), "Hi there");
    /// ```
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(MessageContent::text)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A function call made by the model, with its output once the tool ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallItem {
    /// Item id assigned by the server.
    pub item_id: String,
    /// The item this one follows, as the server reported it.
    pub previous_item_id: Option<String>,
    /// Id correlating the call with its output.
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as a JSON string.
    pub arguments: String,
    /// The tool's output, once sent back to the model.
    pub output: Option<String>,
    /// Progress.
    pub status: ItemStatus,
}

/// An item of the conversation history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RealtimeItem {
    /// A message from the user, the assistant or the system.
    Message(MessageItem),
    /// A function call and its output.
    ToolCall(ToolCallItem),
}

impl RealtimeItem {
    /// The item's id.
    pub fn item_id(&self) -> &str {
        match self {
            Self::Message(m) => &m.item_id,
            Self::ToolCall(t) => &t.item_id,
        }
    }

    /// The id of the item this one follows.
    pub fn previous_item_id(&self) -> Option<&str> {
        match self {
            Self::Message(m) => m.previous_item_id.as_deref(),
            Self::ToolCall(t) => t.previous_item_id.as_deref(),
        }
    }

    /// The message, if this item is one.
    pub fn as_message(&self) -> Option<&MessageItem> {
        match self {
            Self::Message(m) => Some(m),
            Self::ToolCall(_) => None,
        }
    }

    /// The tool call, if this item is one.
    pub fn as_tool_call(&self) -> Option<&ToolCallItem> {
        match self {
            Self::ToolCall(t) => Some(t),
            Self::Message(_) => None,
        }
    }

    /// A completed text message without an id (the session assigns one when it creates it),
    /// e.g. to seed or edit a conversation.
    ///
    /// ```
    /// use realtime_agents::items::{RealtimeItem, Role};
    /// let item = RealtimeItem::text(Role::User, "Hello");
    /// assert_eq!(item.as_message().unwrap().text(), "Hello");
    /// assert_eq!(item.item_id(), "");
    /// ```
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        let text = text.into();
        let content = match role {
            Role::Assistant => MessageContent::Text { text },
            Role::User | Role::System => MessageContent::InputText { text },
        };
        Self::Message(MessageItem {
            item_id: String::new(),
            previous_item_id: None,
            role,
            content: vec![content],
            status: ItemStatus::Completed,
        })
    }

    /// Sets the item id (and nothing else).
    pub(crate) fn set_item_id(&mut self, id: String) {
        match self {
            Self::Message(m) => m.item_id = id,
            Self::ToolCall(t) => t.item_id = id,
        }
    }

    pub(crate) fn set_previous_item_id(&mut self, previous: Option<String>) {
        match self {
            Self::Message(m) => m.previous_item_id = previous,
            Self::ToolCall(t) => t.previous_item_id = previous,
        }
    }
}

/// An ordered conversation history.
///
/// Items are placed after the item named by their `previous_item_id` (as the server reports
/// it), or appended when that item is unknown. Updates merge into the existing item so that a
/// later event without a transcript never erases one already known.
///
/// ```
/// use realtime_agents::items::*;
/// let mut h = History::default();
/// let msg = |id: &str, prev: Option<&str>| RealtimeItem::Message(MessageItem {
///     item_id: id.into(), previous_item_id: prev.map(Into::into), role: Role::User,
///     content: vec![MessageContent::InputText { text: id.into() }], status: ItemStatus::Completed,
/// });
/// h.upsert(msg("a", None));
/// h.upsert(msg("c", Some("a")));
/// h.upsert(msg("b", Some("a"))); // server says b follows a: it goes between a and c
/// let ids: Vec<_> = h.items().iter().map(|i| i.item_id().to_owned()).collect();
/// assert_eq!(ids, ["a", "b", "c"]);
/// ```
#[derive(Clone, Default)]
pub struct History {
    items: Vec<RealtimeItem>,
    /// Item id → its index in `items`, so that lookups (a transcript delta, an update) cost the
    /// same with ten items or ten thousand. Kept in step by every method that moves items.
    index: HashMap<String, usize>,
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("items", &self.items)
            .finish()
    }
}

/// What [`History::upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// A new item was inserted.
    Added,
    /// An existing item was updated.
    Updated,
}

impl History {
    /// The items, in conversation order.
    pub fn items(&self) -> &[RealtimeItem] {
        &self.items
    }

    /// The item with this id.
    pub fn get(&self, item_id: &str) -> Option<&RealtimeItem> {
        self.position(item_id).map(|i| &self.items[i])
    }

    fn position(&self, item_id: &str) -> Option<usize> {
        self.index.get(item_id).copied()
    }

    /// Inserts `item` (whose id is not in the history) at `at`, keeping the index in step:
    /// O(1) at the end, O(items after `at`) elsewhere.
    fn insert_at(&mut self, at: usize, item: RealtimeItem) {
        let at = at.min(self.items.len());
        self.index.insert(item.item_id().to_owned(), at);
        self.items.insert(at, item);
        self.reindex_from(at + 1);
    }

    /// Re-points the index at the items from `from` on, after an insertion or removal.
    fn reindex_from(&mut self, from: usize) {
        for (i, item) in self.items.iter().enumerate().skip(from) {
            if let Some(slot) = self.index.get_mut(item.item_id()) {
                *slot = i;
            }
        }
    }

    /// Inserts a new item or merges into the existing one with the same id.
    pub fn upsert(&mut self, item: RealtimeItem) -> Upsert {
        match self.position(item.item_id()) {
            Some(index) => {
                merge(&mut self.items[index], item);
                Upsert::Updated
            }
            None => {
                let at = match item.previous_item_id() {
                    Some("root") => 0,
                    Some(prev) => self.position(prev).map_or(self.items.len(), |p| p + 1),
                    None => self.items.len(),
                };
                self.insert_at(at, item);
                Upsert::Added
            }
        }
    }

    /// Removes an item; returns whether it existed.
    pub fn remove(&mut self, item_id: &str) -> bool {
        match self.position(item_id) {
            Some(index) => {
                self.items.remove(index);
                self.index.remove(item_id);
                self.reindex_from(index);
                true
            }
            None => false,
        }
    }

    /// Appends a transcript delta to a message part, creating the part (and an assistant
    /// message) if needed. Returns whether a new item was created.
    pub fn append_transcript(
        &mut self,
        item_id: &str,
        content_index: u32,
        role: Role,
        delta: &str,
    ) -> bool {
        let (index, created) = match self.position(item_id) {
            Some(index) => (index, false),
            None => {
                let at = self.items.len();
                self.insert_at(
                    at,
                    RealtimeItem::Message(MessageItem {
                        item_id: item_id.to_owned(),
                        previous_item_id: None,
                        role,
                        content: Vec::new(),
                        status: ItemStatus::InProgress,
                    }),
                );
                (at, true)
            }
        };
        if let RealtimeItem::Message(m) = &mut self.items[index] {
            match part_mut(m, content_index as usize) {
                None => {}
                Some(
                    MessageContent::Audio { transcript }
                    | MessageContent::InputAudio { transcript },
                ) => transcript.get_or_insert_with(String::new).push_str(delta),
                Some(MessageContent::Text { text } | MessageContent::InputText { text }) => {
                    text.push_str(delta)
                }
                Some(MessageContent::InputImage { .. }) => {}
            }
        }
        created
    }

    /// Sets the full transcript of a message part (a finished transcription).
    /// Returns whether a new item was created.
    pub fn set_transcript(
        &mut self,
        item_id: &str,
        content_index: u32,
        role: Role,
        transcript: &str,
    ) -> bool {
        let created = self.append_transcript(item_id, content_index, role, "");
        if let Some(RealtimeItem::Message(m)) = self.position(item_id).map(|i| &mut self.items[i]) {
            match part_mut(m, content_index as usize) {
                None => {}
                Some(
                    MessageContent::Audio { transcript: t }
                    | MessageContent::InputAudio { transcript: t },
                ) => *t = Some(transcript.to_owned()),
                Some(MessageContent::Text { text } | MessageContent::InputText { text }) => {
                    *text = transcript.to_owned()
                }
                Some(MessageContent::InputImage { .. }) => {}
            }
        }
        created
    }

    /// Records a tool's output on its call item.
    pub fn set_tool_output(&mut self, call_id: &str, output: &str) -> Option<&RealtimeItem> {
        let index = self
            .items
            .iter()
            .rposition(|i| matches!(i, RealtimeItem::ToolCall(t) if t.call_id == call_id))?;
        if let RealtimeItem::ToolCall(t) = &mut self.items[index] {
            t.output = Some(output.to_owned());
            t.status = ItemStatus::Completed;
        }
        Some(&self.items[index])
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the history is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The most content parts a message gets from a content index off the wire (real messages
/// have one or two); a larger index is ignored instead of sizing an allocation.
const MAX_CONTENT_PARTS: usize = 64;

fn part_mut(m: &mut MessageItem, index: usize) -> Option<&mut MessageContent> {
    if index >= MAX_CONTENT_PARTS {
        return None;
    }
    while m.content.len() <= index {
        m.content.push(match m.role {
            Role::Assistant => MessageContent::Audio { transcript: None },
            _ => MessageContent::InputAudio { transcript: None },
        });
    }
    m.content.get_mut(index)
}

/// Merges `new` into `old`, keeping what `old` knew that `new` lacks (transcripts, output).
fn merge(old: &mut RealtimeItem, mut new: RealtimeItem) {
    if new.previous_item_id().is_none() {
        new.set_previous_item_id(old.previous_item_id().map(str::to_owned));
    }
    match (&mut *old, new) {
        (RealtimeItem::Message(o), RealtimeItem::Message(mut n)) if o.role == n.role => {
            for (i, part) in n.content.iter_mut().enumerate() {
                let Some(old_part) = o.content.get(i) else {
                    break;
                };
                match (part, old_part) {
                    (
                        MessageContent::Audio { transcript: t }
                        | MessageContent::InputAudio { transcript: t },
                        MessageContent::Audio {
                            transcript: Some(known),
                        }
                        | MessageContent::InputAudio {
                            transcript: Some(known),
                        },
                    ) if t.as_deref().is_none_or(str::is_empty) => *t = Some(known.clone()),
                    (
                        MessageContent::Text { text } | MessageContent::InputText { text },
                        MessageContent::Text { text: known }
                        | MessageContent::InputText { text: known },
                    ) if text.is_empty() => text.clone_from(known),
                    _ => {}
                }
            }
            if n.content.len() < o.content.len() {
                n.content.extend(o.content.drain(n.content.len()..));
            }
            *o = n;
        }
        (RealtimeItem::ToolCall(o), RealtimeItem::ToolCall(mut n)) => {
            if n.output.is_none() {
                n.output = o.output.take();
                if n.output.is_some() {
                    n.status = ItemStatus::Completed;
                }
            }
            *o = n;
        }
        (slot, n) => *slot = n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assistant(id: &str, prev: Option<&str>, transcript: Option<&str>) -> RealtimeItem {
        RealtimeItem::Message(MessageItem {
            item_id: id.into(),
            previous_item_id: prev.map(Into::into),
            role: Role::Assistant,
            content: vec![MessageContent::Audio {
                transcript: transcript.map(Into::into),
            }],
            status: ItemStatus::InProgress,
        })
    }

    fn ids(h: &History) -> Vec<&str> {
        h.items().iter().map(RealtimeItem::item_id).collect()
    }

    #[test]
    fn orders_by_previous_item_id_and_appends_unknown() {
        let mut h = History::default();
        h.upsert(assistant("a", None, None));
        h.upsert(assistant("c", Some("a"), None));
        h.upsert(assistant("b", Some("a"), None));
        h.upsert(assistant("z", Some("missing"), None));
        h.upsert(assistant("first", Some("root"), None));
        assert_eq!(ids(&h), ["first", "a", "b", "c", "z"]);
    }

    #[test]
    fn update_keeps_known_transcript_and_position() {
        let mut h = History::default();
        h.upsert(assistant("a", None, None));
        h.upsert(assistant("b", Some("a"), None));
        h.append_transcript("a", 0, Role::Assistant, "Hello ");
        h.append_transcript("a", 0, Role::Assistant, "there");
        assert_eq!(h.upsert(assistant("a", None, None)), Upsert::Updated);
        assert_eq!(ids(&h), ["a", "b"]);
        assert_eq!(
            h.get("a")
                .and_then(RealtimeItem::as_message)
                .map(MessageItem::text)
                .as_deref(),
            Some("Hello there")
        );
        // A server transcript replaces the accumulated one.
        h.upsert(assistant("a", None, Some("Hello there!")));
        assert_eq!(
            h.get("a")
                .and_then(RealtimeItem::as_message)
                .map(MessageItem::text)
                .as_deref(),
            Some("Hello there!")
        );
    }

    #[test]
    fn transcription_fills_user_audio_and_tool_output_sticks() {
        let mut h = History::default();
        h.upsert(RealtimeItem::Message(MessageItem {
            item_id: "u".into(),
            previous_item_id: None,
            role: Role::User,
            content: vec![MessageContent::InputAudio { transcript: None }],
            status: ItemStatus::Completed,
        }));
        assert!(!h.set_transcript("u", 0, Role::User, "what's up"));
        assert_eq!(
            h.get("u")
                .and_then(RealtimeItem::as_message)
                .map(MessageItem::text)
                .as_deref(),
            Some("what's up")
        );
        let call = |output: Option<&str>| {
            RealtimeItem::ToolCall(ToolCallItem {
                item_id: "t".into(),
                previous_item_id: Some("u".into()),
                call_id: "c1".into(),
                name: "f".into(),
                arguments: "{}".into(),
                output: output.map(Into::into),
                status: ItemStatus::InProgress,
            })
        };
        h.upsert(call(None));
        h.set_tool_output("c1", "42");
        h.upsert(call(None)); // a late `.done` without output keeps the output
        let t = h.get("t").and_then(RealtimeItem::as_tool_call).cloned();
        assert_eq!(t.as_ref().and_then(|t| t.output.as_deref()), Some("42"));
        assert_eq!(t.map(|t| t.status), Some(ItemStatus::Completed));
        assert!(h.remove("u"));
        assert!(!h.remove("u"));
        assert_eq!(ids(&h), ["t"]);
    }

    #[test]
    fn index_follows_inserts_and_removals_in_the_middle() {
        let mut h = History::default();
        for i in 0..50 {
            h.upsert(assistant(&format!("i{i}"), None, None));
        }
        h.upsert(assistant("mid", Some("i10"), None));
        h.upsert(assistant("first", Some("root"), None));
        assert!(h.remove("i20"));
        assert!(h.append_transcript("new", 0, Role::User, "x"));
        assert!(!h.append_transcript("i30", 0, Role::Assistant, "hello"));
        for (i, item) in h.items().iter().enumerate() {
            assert_eq!(h.position(item.item_id()), Some(i), "{}", item.item_id());
        }
        assert_eq!(h.index.len(), h.len());
        assert_eq!(ids(&h)[..3], ["first", "i0", "i1"]);
        assert_eq!(ids(&h)[12], "mid");
        assert!(h.get("i20").is_none());
        assert_eq!(
            h.get("i30")
                .and_then(RealtimeItem::as_message)
                .map(MessageItem::text)
                .as_deref(),
            Some("hello")
        );
    }
}
