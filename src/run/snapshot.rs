//! A session saved to resume later.

use serde::{Deserialize, Serialize};

use crate::items::RealtimeItem;
use crate::model::SessionSettings;

/// What a session needs to go on later, in another session (another process, after a
/// restart): its id, the agent in charge, the conversation and the session settings. It is
/// plain data (serde), e.g. to keep as JSON next to the call.
///
/// Take one from a live session with
/// [`RealtimeSessionHandle::snapshot`](crate::RealtimeSessionHandle::snapshot) and continue it
/// with [`RealtimeRunner::resume`](crate::RealtimeRunner::resume), which finds the agent by
/// name among the runner's starting agent and its handoffs, and re-creates the conversation
/// on the new connection before anything else is sent (spoken parts as their transcripts).
///
/// `settings` are the session's own settings (the runner's, with the session's options
/// merged): the agent's instructions and tools are not saved, they come from the agent when
/// the session resumes. Tools, hooks, guardrails and the context are code, not data: they come
/// from the runner that resumes.
///
/// ```
/// use realtime_agents::SessionSnapshot;
/// use realtime_agents::items::{RealtimeItem, Role};
///
/// let snapshot = SessionSnapshot::new(
///     "sess_ra1",
///     "Billing",
///     vec![RealtimeItem::text(Role::User, "I was charged twice.")],
/// );
/// let json = serde_json::to_string(&snapshot).unwrap();
/// let back: SessionSnapshot = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, snapshot);
/// assert_eq!(back.agent, "Billing");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionSnapshot {
    /// The session's id ([`RealtimeSessionHandle::session_id`](crate::RealtimeSessionHandle::session_id));
    /// a resumed session keeps it.
    pub session_id: String,
    /// The name of the agent that was in charge.
    pub agent: String,
    /// The conversation, oldest item first.
    pub history: Vec<RealtimeItem>,
    /// The session settings (voice, formats, turn detection...), without the agent's layer.
    #[serde(default)]
    pub settings: SessionSettings,
}

impl SessionSnapshot {
    /// A snapshot of a conversation held by `agent`, with default settings (e.g. to resume a
    /// conversation kept elsewhere).
    pub fn new(
        session_id: impl Into<String>,
        agent: impl Into<String>,
        history: Vec<RealtimeItem>,
    ) -> Self {
        Self {
            session_id: session_id.into(),
            agent: agent.into(),
            history,
            settings: SessionSettings::default(),
        }
    }

    /// The same snapshot with these settings.
    ///
    /// ```
    /// use realtime_agents::{SessionSnapshot, model::SessionSettings};
    /// let snapshot = SessionSnapshot::new("sess_ra1", "Assistant", Vec::new())
    ///     .with_settings(SessionSettings::new().voice("marin"));
    /// assert!(snapshot.settings.voice.is_some());
    /// ```
    #[must_use]
    pub fn with_settings(mut self, settings: SessionSettings) -> Self {
        self.settings = settings;
        self
    }
}
