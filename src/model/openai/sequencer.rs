//! `response.create` sequencing for the Realtime protocol.

use serde_json::Value;

/// `response.create` sequencing: at most one response at a time, requests made meanwhile
/// coalesced into one.
#[derive(Debug, Default)]
pub(super) struct Sequencer {
    /// `event_id` of a `response.create` sent but not yet answered by `response.created`.
    pub(super) awaiting: Option<String>,
    /// `event_id` of the last `response.create` sent, to recognise the server rejecting it
    /// even after a server-created response cleared `awaiting`.
    pub(super) last_sent: Option<String>,
    /// The response being generated.
    pub(super) active: Option<String>,
    /// A `response.create` body waiting for the current response to end.
    pub(super) queued: Option<Value>,
    /// Cancel the response as soon as it is created.
    pub(super) cancel_on_created: bool,
}

impl Sequencer {
    pub(super) fn busy(&self) -> bool {
        self.awaiting.is_some() || self.active.is_some()
    }
}
