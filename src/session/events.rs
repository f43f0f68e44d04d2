//! What the session tells the application.

use bytes::Bytes;

use crate::Error;
use crate::guardrail::GuardrailResult;
use crate::items::{RealtimeItem, Role};
use crate::model::{RawServerEvent, Usage};
use crate::session::turn::{TurnCause, TurnResult};

/// How a response ended ([`RealtimeSessionEvent::AgentEnd`]).
///
/// ```
/// use realtime_agents::ResponseEnd;
/// assert!(ResponseEnd::Completed.is_completed());
/// assert!(!ResponseEnd::Interrupted.is_completed());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseEnd {
    /// The model finished it.
    Completed,
    /// Cancelled by a guardrail or the server.
    Cancelled,
    /// Cut off by the user: speech over it (barge-in) or
    /// [`interrupt`](crate::RealtimeSessionHandle::interrupt).
    Interrupted,
    /// Stopped early by the model (token limit, content filter).
    Incomplete,
    /// Failed on the server.
    Failed,
    /// The connection was lost before it finished (with or without a reconnect after).
    ConnectionLost,
    /// The session ended before it finished: `close()`, cancellation or the time limit (the
    /// final [`Closed`](RealtimeSessionEvent::Closed) says which).
    SessionEnded,
}

impl ResponseEnd {
    /// Whether the model finished the response normally.
    pub fn is_completed(self) -> bool {
        self == Self::Completed
    }
}

/// An event of a [`RealtimeSession`](crate::RealtimeSession), in the order things happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RealtimeSessionEvent {
    /// A user turn began (see the [turn contract](crate::turn)). Comes before every
    /// other event of the turn.
    TurnStarted {
        /// The turn's number in the session, from 1.
        turn_id: u64,
        /// What began it.
        cause: TurnCause,
    },
    /// A user turn ended: the assistant has nothing left to do for it. Exactly once per
    /// `TurnStarted`, after every other event of the turn and before `Closed`.
    TurnEnded {
        /// What happened in it.
        result: Box<TurnResult>,
    },
    /// An agent started a response. Exactly one [`AgentEnd`](Self::AgentEnd) with the same
    /// `response_id` follows, whatever happens to the response or the session.
    AgentStart {
        /// The agent's name.
        agent: String,
        /// The response.
        response_id: String,
    },
    /// An agent's response ended; `status` says how. A response that only called tools ends
    /// too: the answer comes in a later response.
    AgentEnd {
        /// The agent's name.
        agent: String,
        /// The response.
        response_id: String,
        /// How it ended.
        status: ResponseEnd,
    },
    /// The conversation moved to another agent.
    Handoff {
        /// The agent handing over.
        from: String,
        /// The agent taking over.
        to: String,
    },
    /// A tool is about to run.
    ToolStart {
        /// The agent that owns the tool.
        agent: String,
        /// Tool name.
        tool: String,
        /// Call id.
        call_id: String,
        /// JSON arguments.
        arguments: String,
    },
    /// A tool finished and its output went back to the model.
    ToolEnd {
        /// The agent that owns the tool.
        agent: String,
        /// Tool name.
        tool: String,
        /// Call id.
        call_id: String,
        /// JSON arguments.
        arguments: String,
        /// The output the model received.
        output: String,
        /// Whether the output reports a failure (error, panic, timeout, unknown tool) or a
        /// rejection (by the application or a hook).
        is_error: bool,
    },
    /// A tool call waits for the application's decision: answer with
    /// [`approve_tool_call`](crate::RealtimeSessionHandle::approve_tool_call) or
    /// [`reject_tool_call`](crate::RealtimeSessionHandle::reject_tool_call).
    ToolApprovalRequired {
        /// The agent that owns the tool.
        agent: String,
        /// Tool name.
        tool: String,
        /// Call id to answer.
        call_id: String,
        /// JSON arguments.
        arguments: String,
    },
    /// A chunk of assistant audio to play, in the session's output format.
    Audio {
        /// Response producing it.
        response_id: String,
        /// Assistant item.
        item_id: String,
        /// Content part.
        content_index: u32,
        /// Audio bytes.
        data: Bytes,
    },
    /// The assistant item's audio is complete.
    AudioEnd {
        /// Assistant item.
        item_id: String,
        /// Content part.
        content_index: u32,
    },
    /// Stop playback now and drop queued audio: the user interrupted.
    AudioInterrupted {
        /// The item that was playing.
        item_id: String,
        /// Its content part.
        content_index: u32,
        /// Milliseconds of it the user heard.
        played_ms: u64,
    },
    /// A piece of a transcript: what the assistant says (or writes), or what the user said.
    TranscriptDelta {
        /// Whose words.
        role: Role,
        /// The message item.
        item_id: String,
        /// Content part.
        content_index: u32,
        /// New text.
        delta: String,
    },
    /// The full transcript of something the user said.
    UserTranscript {
        /// The user's item.
        item_id: String,
        /// The transcript.
        transcript: String,
    },
    /// The user started speaking.
    InputSpeechStarted {
        /// The user item being recorded.
        item_id: String,
        /// Position in the input audio stream.
        audio_start_ms: u64,
    },
    /// The user stopped speaking.
    InputSpeechStopped {
        /// The user item.
        item_id: String,
        /// Position in the input audio stream.
        audio_end_ms: u64,
    },
    /// The user said nothing within the configured idle timeout.
    InputAudioTimeout {
        /// Item id the server reported.
        item_id: String,
        /// Start of the silent span.
        audio_start_ms: u64,
        /// End of the silent span.
        audio_end_ms: u64,
    },
    /// An item joined the history.
    HistoryAdded {
        /// The item.
        item: RealtimeItem,
    },
    /// An item of the history changed.
    HistoryUpdated {
        /// The item as it is now.
        item: RealtimeItem,
    },
    /// An item left the history.
    HistoryDeleted {
        /// The removed item.
        item_id: String,
    },
    /// An output guardrail stopped a response.
    GuardrailTripped {
        /// The response stopped.
        response_id: String,
        /// Every guardrail's verdict on the text.
        results: Vec<GuardrailResult>,
        /// The text that was checked.
        text: String,
    },
    /// Tokens used by a response, and in total.
    Usage {
        /// This response.
        response: Usage,
        /// The session so far.
        total: Usage,
    },
    /// Something went wrong; the session goes on unless a `Closed` event follows.
    Error {
        /// What happened.
        error: Error,
    },
    /// A server event exactly as received (only with
    /// [`RealtimeRunConfig::raw_events`](crate::RealtimeRunConfig::raw_events)).
    Raw(RawServerEvent),
    /// The connection ended unexpectedly and the session is about to reconnect (see
    /// [`ReconnectPolicy`](crate::ReconnectPolicy)). Playback was stopped; what the
    /// application sends meanwhile is delivered after reconnecting.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
        /// Why the connection ended (or why the previous attempt failed).
        error: Error,
    },
    /// A new connection is up; the history was re-created on it.
    Reconnected {
        /// The attempt that succeeded.
        attempt: u32,
        /// How many history items were re-created.
        replayed_items: usize,
    },
    /// The session ended: always the last event, exactly once, after every other event.
    /// `error` says why, if it was not closed on request (a cancellation, the time limit, a
    /// lost connection...); that error is reported here only, not in an `Error` event before.
    Closed {
        /// Why it ended.
        error: Option<Error>,
    },
}
