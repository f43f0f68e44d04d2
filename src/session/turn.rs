//! User turns: when the assistant has finished answering, and what happened in between.
//!
//! # The turn contract
//!
//! The session guarantees, for every session and backend:
//!
//! * **A user turn begins** with a user message that asks for an answer
//!   ([`send_message`](crate::RealtimeSessionHandle::send_message),
//!   [`run_turn`](crate::RealtimeSession::run_turn)), with committed audio
//!   ([`send_audio`](crate::RealtimeSessionHandle::send_audio) with `commit`), or with speech
//!   the server detected ([`InputSpeechStarted`](crate::RealtimeSessionEvent::InputSpeechStarted)).
//!   A response that no user turn asked for (a greeting, an idle-timeout prompt,
//!   [`create_response`](crate::RealtimeSessionHandle::create_response) with no turn open)
//!   opens a turn of its own ([`TurnCause::Assistant`]). [`TurnStarted`] comes before every other
//!   event of the turn.
//! * **A turn ends exactly once**, with [`TurnEnded`], when the assistant has nothing left to do
//!   for it: no response of the turn is active, no tool call of the turn is running or waiting
//!   for an approval or for the other calls of its response, and no response the turn asked for
//!   is still to come. So a response that only calls tools does not end the turn: the answer
//!   that follows the tools' outputs does. `TurnEnded` comes after every `AgentEnd`, `ToolEnd`
//!   and transcript of the turn, and before the session's final `Closed`.
//! * **A tool call waiting for an approval keeps its turn open**:
//!   [`ToolApprovalRequired`](crate::RealtimeSessionEvent::ToolApprovalRequired) comes inside the
//!   turn, and the turn ends after the call is approved or rejected (from any handle) and the
//!   answer that follows is done.
//! * **Requests made while a response is running are coalesced**: the next response answers
//!   all the turns that asked meanwhile, and it is reported in each of them.
//! * **Barge-in**: when the user speaks over the assistant, the new turn starts at once and the
//!   interrupted one ends when its cancelled response does (status
//!   [`TurnStatus::Interrupted`]), so a `TurnStarted` may come before the previous `TurnEnded`.
//!   Each response belongs to the turns that were waiting for it, or else to the newest turn.
//! * **A turn that will get no answer** (audio committed, or speech ended, with no response
//!   asked for and none coming) ends as [`TurnStatus::Incomplete`] when the next turn starts.
//! * **When the session ends**, every open turn ends before `Closed`: as
//!   [`TurnStatus::Cancelled`] after `close()`, a cancellation or the time limit, as
//!   [`TurnStatus::Failed`] when the connection was lost for good.
//!
//! [`TurnStarted`]: crate::RealtimeSessionEvent::TurnStarted
//! [`TurnEnded`]: crate::RealtimeSessionEvent::TurnEnded

use std::time::Duration;

use crate::Error;
use crate::ResponseEnd;
use crate::items::RealtimeItem;
use crate::model::Usage;

/// What began a turn.
///
/// ```
/// use realtime_agents::TurnCause;
/// assert_ne!(TurnCause::Message, TurnCause::Speech);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TurnCause {
    /// A user message that asks for an answer.
    Message,
    /// User audio committed by the application.
    AudioCommitted,
    /// Speech the server detected.
    Speech,
    /// A response no user turn asked for (a greeting, an idle-timeout prompt, a bare
    /// `create_response`).
    Assistant,
}

/// How a turn ended.
///
/// ```
/// use realtime_agents::TurnStatus;
/// assert!(TurnStatus::Completed.is_completed());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TurnStatus {
    /// The assistant answered in full.
    Completed,
    /// The user cut the answer off: speech over it (barge-in) or `interrupt`.
    Interrupted,
    /// The answer was cancelled: by a guardrail, the server, `close()`, a cancellation or the
    /// time limit.
    Cancelled,
    /// The answer failed on the server, or the connection was lost for good.
    Failed,
    /// The answer stopped early (token limit, content filter), or none came.
    Incomplete,
}

impl TurnStatus {
    /// Whether the assistant answered in full.
    pub fn is_completed(self) -> bool {
        self == Self::Completed
    }

    /// The status as a lowercase word (`completed`, `interrupted`...), for logs and JSON.
    ///
    /// ```
    /// assert_eq!(realtime_agents::TurnStatus::Interrupted.as_str(), "interrupted");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Interrupted => "interrupted",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Incomplete => "incomplete",
        }
    }
}

/// A tool call made in a turn.
///
/// ```
/// # fn demo(result: realtime_agents::TurnResult) {
/// for call in &result.tool_calls {
///     println!("{}({}) -> {:?}", call.tool, call.arguments, call.output);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolCallRecord {
    /// The agent whose tool it is.
    pub agent: String,
    /// Tool name.
    pub tool: String,
    /// Call id.
    pub call_id: String,
    /// JSON arguments.
    pub arguments: String,
    /// What the model received (`None`: never answered, e.g. the session ended first).
    pub output: Option<String>,
    /// Whether the output reports a failure or a rejection.
    pub is_error: bool,
}

/// A handoff made in a turn.
///
/// ```
/// # fn demo(result: realtime_agents::TurnResult) {
/// if let Some(h) = result.handoffs.last() {
///     println!("{} handed over to {}", h.from, h.to);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandoffRecord {
    /// The agent handing over.
    pub from: String,
    /// The agent taking over.
    pub to: String,
}

/// A response of a turn.
///
/// ```
/// # fn demo(result: realtime_agents::TurnResult) {
/// for r in &result.responses {
///     println!("{} by {}: {:?}, {:?}", r.response_id, r.agent, r.status, r.usage);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseRecord {
    /// Response id.
    pub response_id: String,
    /// The agent that gave it.
    pub agent: String,
    /// How it ended (`None`: still running when the turn was reported, which only happens for
    /// a response shared with a later turn).
    pub status: Option<ResponseEnd>,
    /// Its tokens, when the backend reported them (cancelled responses included).
    pub usage: Option<Usage>,
}

/// Latencies and audio amounts of a turn. Latencies run from the end of the user's turn: the
/// message sent, the audio committed, or the speech stopped.
///
/// ```
/// # fn demo(result: realtime_agents::TurnResult) {
/// if let Some(latency) = result.timings.first_audio {
///     println!("first audio after {} ms", latency.as_millis());
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TurnTimings {
    /// To the first assistant audio.
    pub first_audio: Option<Duration>,
    /// To the first assistant transcript or text.
    pub first_transcript: Option<Duration>,
    /// To the end of the turn.
    pub total: Option<Duration>,
    /// Milliseconds of assistant audio generated.
    pub audio_generated_ms: u64,
    /// Milliseconds of it the user heard (less than generated after a barge-in).
    pub audio_heard_ms: u64,
}

/// Everything that happened in a user turn: the answer, what was heard of it, tools, handoffs,
/// usage and latencies. Delivered in [`TurnEnded`](crate::RealtimeSessionEvent::TurnEnded) and
/// returned by [`run_turn`](crate::RealtimeSession::run_turn).
///
/// ```no_run
/// # async fn demo(mut session: realtime_agents::RealtimeSession) -> realtime_agents::Result<()> {
/// let result = session.run_turn("What's the weather in Paris?").await?;
/// println!("{} ({})", result.text, result.status.as_str());
/// println!("{} input + {} output tokens", result.usage.input_tokens, result.usage.output_tokens);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TurnResult {
    /// The turn's number in the session, from 1.
    pub turn_id: u64,
    /// What began it.
    pub cause: TurnCause,
    /// How it ended.
    pub status: TurnStatus,
    /// All the assistant text generated (transcripts of spoken answers, or text answers),
    /// answers separated by a newline.
    pub text: String,
    /// The part of `text` the user heard: answers cut off by a barge-in are cut in proportion
    /// to the audio played (the server drops the transcript of what it truncates).
    pub heard_text: String,
    /// The items added to the conversation during the turn, as they are at its end.
    pub items: Vec<RealtimeItem>,
    /// The tool calls, with their arguments and outputs.
    pub tool_calls: Vec<ToolCallRecord>,
    /// The handoffs.
    pub handoffs: Vec<HandoffRecord>,
    /// The responses, in order.
    pub responses: Vec<ResponseRecord>,
    /// The tokens of every response of the turn, cancelled ones included.
    pub usage: Usage,
    /// Latencies and audio amounts.
    pub timings: TurnTimings,
    /// Why the session ended during the turn, if it did with an error.
    pub error: Option<Error>,
}
