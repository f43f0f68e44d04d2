//! The turn contract's bookkeeping (the contract itself is in `session::turn`): which turns are
//! open, what each still waits for, and what goes in each turn's result.
//!
//! Fed by the driver at a few points: a turn begins (message, commit, speech), a response is
//! asked for, a response starts and ends, a call is made and answered; and by every event the
//! application gets (text, audio, cuts, items). After anything that can finish work, the driver
//! calls `end_idle_turns`.

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::Driver;
use crate::audio::AudioFormat;
use crate::items::Role;
use crate::model::Usage;
use crate::session::turn::{
    HandoffRecord, ResponseRecord, ToolCallRecord, TurnCause, TurnResult, TurnStatus, TurnTimings,
};
use crate::{Error, RealtimeSessionEvent, ResponseEnd};

/// Open turns and who owns which response and call.
#[derive(Debug, Default)]
pub(super) struct Turns {
    next_id: u64,
    /// In the order they began.
    open: Vec<OpenTurn>,
    /// Turns whose response request went out and that no response has answered yet.
    awaiting: Vec<u64>,
    /// Turns that asked while a response was running or awaited: the response after it
    /// answers them together.
    queued: Vec<u64>,
    /// The turns of the response being generated.
    current: Vec<u64>,
    /// Response id → the turns it answers, while it or its calls are pending.
    response_turns: HashMap<String, Vec<u64>>,
    /// Call id → its turn.
    call_turns: HashMap<String, u64>,
    /// The turn the next response request is for (a batch of tool outputs), instead of the
    /// newest.
    pub(super) request_owner: Option<u64>,
}

#[derive(Debug)]
struct OpenTurn {
    id: u64,
    cause: TurnCause,
    /// When the user's part ended (message sent, audio committed, speech stopped).
    user_end: Option<Instant>,
    speaking: bool,
    /// Its user message went out and the backend has not echoed it as an item yet.
    unechoed: bool,
    /// The user's part ended with no answer asked for: the turn waits for a request, or ends
    /// when the next one begins.
    unanswered: bool,
    active: usize,
    span: tracing::Span,
    first_audio: Option<Instant>,
    first_transcript: Option<Instant>,
    items: Vec<String>,
    spoken: Vec<Spoken>,
    tool_calls: Vec<ToolCallRecord>,
    handoffs: Vec<HandoffRecord>,
    responses: Vec<ResponseRecord>,
    usage: Usage,
}

/// One assistant item of a turn: its text and how much of its audio was generated and heard.
#[derive(Debug)]
struct Spoken {
    item_id: String,
    text: String,
    audio_bytes: usize,
    heard_ms: Option<u64>,
}

impl Turns {
    fn get(&mut self, id: u64) -> Option<&mut OpenTurn> {
        self.open.iter_mut().find(|t| t.id == id)
    }

    fn newest(&self) -> Option<u64> {
        self.open.last().map(|t| t.id)
    }

    /// Records what the application is told, in the turns it belongs to. Cheap for audio: it
    /// touches only the current response's turns.
    pub(super) fn observe(&mut self, event: &RealtimeSessionEvent) {
        use RealtimeSessionEvent as E;
        match event {
            E::Audio { item_id, data, .. } => {
                for id in &self.current {
                    if let Some(turn) = self.open.iter_mut().find(|t| t.id == *id) {
                        // The clock is read once per turn, not per chunk.
                        if turn.first_audio.is_none() {
                            turn.first_audio = Some(Instant::now());
                        }
                        turn.spoken(item_id).audio_bytes += data.len();
                    }
                }
            }
            E::TranscriptDelta {
                role: Role::Assistant,
                item_id,
                delta,
                ..
            } => {
                for id in &self.current {
                    if let Some(turn) = self.open.iter_mut().find(|t| t.id == *id) {
                        if turn.first_transcript.is_none() {
                            turn.first_transcript = Some(Instant::now());
                        }
                        turn.spoken(item_id).text.push_str(delta);
                    }
                }
            }
            E::AudioInterrupted {
                item_id, played_ms, ..
            } => {
                for turn in &mut self.open {
                    if let Some(s) = turn.spoken.iter_mut().find(|s| s.item_id == *item_id) {
                        s.heard_ms = Some(*played_ms);
                    }
                }
            }
            E::HistoryAdded { item } => {
                if let Some(turn) = self.open.last_mut() {
                    turn.items.push(item.item_id().to_owned());
                }
            }
            E::ToolEnd {
                call_id,
                output,
                is_error,
                ..
            } => self.call_output(call_id, output, *is_error),
            E::Handoff { from, to } => {
                if let Some(turn) = self.current_or_newest() {
                    turn.handoffs.push(HandoffRecord {
                        from: from.clone(),
                        to: to.clone(),
                    });
                }
            }
            _ => {}
        }
    }

    /// The newest turn's user message went out.
    pub(super) fn message_sent(&mut self) {
        if let Some(turn) = self.open.last_mut() {
            turn.unechoed = true;
        }
    }

    /// The backend echoed a user message: the oldest turn waiting for an echo has it.
    pub(super) fn message_echoed(&mut self) {
        if let Some(turn) = self.open.iter_mut().find(|t| t.unechoed) {
            turn.unechoed = false;
        }
    }

    /// The connection was replaced: requests sent on the old one will not be answered.
    pub(super) fn forget_requests(&mut self) {
        self.awaiting.clear();
        self.queued.clear();
        self.current.clear();
    }

    fn current_or_newest(&mut self) -> Option<&mut OpenTurn> {
        let id = self.current.last().copied().or_else(|| self.newest())?;
        self.get(id)
    }

    /// A call's output went back to the model.
    pub(super) fn call_output(&mut self, call_id: &str, output: &str, is_error: bool) {
        let Some(turn) = self.call_turns.get(call_id).copied() else {
            return;
        };
        if let Some(turn) = self.get(turn) {
            if let Some(call) = turn.tool_calls.iter_mut().find(|c| c.call_id == call_id) {
                call.output = Some(output.to_owned());
                call.is_error = is_error;
            }
        }
    }

    /// The model called a function in `response_id`.
    pub(super) fn function_call(
        &mut self,
        agent: &str,
        response_id: &str,
        call_id: &str,
        tool: &str,
        arguments: &str,
    ) {
        let owner = self
            .response_turns
            .get(response_id)
            .and_then(|owners| owners.last().copied())
            .or_else(|| self.newest());
        let Some(owner) = owner else { return };
        self.call_turns.insert(call_id.to_owned(), owner);
        if let Some(turn) = self.get(owner) {
            turn.tool_calls.push(ToolCallRecord {
                agent: agent.to_owned(),
                tool: tool.to_owned(),
                call_id: call_id.to_owned(),
                arguments: arguments.to_owned(),
                output: None,
                is_error: false,
            });
        }
    }

    /// The turns a batch of tool calls (keyed by response id, or `call:<id>`) belongs to.
    fn batch_owns(&self, batch: &str, turn: u64) -> bool {
        match batch.strip_prefix("call:") {
            Some(call_id) => self.call_turns.get(call_id) == Some(&turn),
            None => self
                .response_turns
                .get(batch)
                .is_some_and(|owners| owners.contains(&turn)),
        }
    }

    /// The turn that owns a batch (for the response request its outputs make).
    pub(super) fn batch_owner(&self, batch: &str) -> Option<u64> {
        match batch.strip_prefix("call:") {
            Some(call_id) => self.call_turns.get(call_id).copied(),
            None => self
                .response_turns
                .get(batch)
                .and_then(|owners| owners.last().copied()),
        }
    }
}

impl OpenTurn {
    fn spoken(&mut self, item_id: &str) -> &mut Spoken {
        // Deltas come for the latest item almost always: look from the end.
        match self.spoken.iter().rposition(|s| s.item_id == item_id) {
            Some(i) => &mut self.spoken[i],
            None => {
                self.spoken.push(Spoken {
                    item_id: item_id.to_owned(),
                    text: String::new(),
                    audio_bytes: 0,
                    heard_ms: None,
                });
                let last = self.spoken.len() - 1;
                &mut self.spoken[last]
            }
        }
    }
}

/// Whether the session told the server to answer the user's speech by itself.
fn server_answers_speech(settings: &crate::model::SessionSettings) -> bool {
    match &settings.turn_detection {
        None => true,
        Some(None) => false,
        Some(Some(detection)) => detection.create_response(),
    }
}

/// `text` cut to the share of its audio that was heard.
pub(super) fn heard_part(text: &str, generated_ms: f64, heard_ms: u64) -> &str {
    if generated_ms <= 0.0 || heard_ms as f64 >= generated_ms {
        return text;
    }
    let chars = text.chars().count();
    let keep = ((chars as f64) * (heard_ms as f64) / generated_ms).round() as usize;
    match text.char_indices().nth(keep) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// How the session's end ends a turn that is still open.
#[derive(Debug, Clone)]
pub(super) enum SessionEnd {
    /// `close()`, a cancellation or the time limit.
    Ended(Option<Error>),
    /// The connection was lost for good.
    Lost(Option<Error>),
}

impl Driver {
    /// Begins a turn (after ending the ones that will get no answer).
    pub(super) fn begin_turn(&mut self, cause: TurnCause) -> BoxFuture<'_, u64> {
        Box::pin(async move {
            let superseded: Vec<u64> = self
                .turns
                .open
                .iter()
                .filter(|t| t.unanswered || t.speaking)
                .map(|t| t.id)
                .collect();
            for id in superseded {
                if let Some(turn) = self.turns.get(id) {
                    turn.unanswered = false;
                    turn.speaking = false;
                }
            }
            self.end_idle_turns().await;
            self.turns.next_id += 1;
            let id = self.turns.next_id;
            let now = Instant::now();
            let user_end = (cause != TurnCause::Speech).then_some(now);
            let span = tracing::info_span!(
                parent: &self.session_span,
                "turn",
                turn_id = id,
                cause = ?cause,
                status = tracing::field::Empty,
                first_audio_ms = tracing::field::Empty,
                first_transcript_ms = tracing::field::Empty,
                total_ms = tracing::field::Empty,
                audio_generated_ms = tracing::field::Empty,
                audio_heard_ms = tracing::field::Empty,
                input_tokens = tracing::field::Empty,
                output_tokens = tracing::field::Empty,
            );
            self.turns.open.push(OpenTurn {
                id,
                cause,
                user_end,
                speaking: cause == TurnCause::Speech,
                unechoed: false,
                unanswered: cause == TurnCause::AudioCommitted,
                active: 0,
                span,
                first_audio: None,
                first_transcript: None,
                items: Vec::new(),
                spoken: Vec::new(),
                tool_calls: Vec::new(),
                handoffs: Vec::new(),
                responses: Vec::new(),
                usage: Usage::default(),
            });
            metrics::counter!("realtime_turns_started_total").increment(1);
            self.emit(RealtimeSessionEvent::TurnStarted { turn_id: id, cause })
                .await;
            id
        })
    }

    /// The user stopped speaking: the turn's user part is over.
    pub(super) async fn turn_speech_stopped(&mut self) {
        let answers = server_answers_speech(&self.shared.config.settings);
        let Some(id) = self
            .turns
            .open
            .iter()
            .rev()
            .find(|t| t.speaking)
            .map(|t| t.id)
        else {
            return;
        };
        if let Some(turn) = self.turns.get(id) {
            turn.speaking = false;
            turn.user_end = Some(Instant::now());
            turn.unanswered = !answers;
        }
        if answers {
            // The server answers by itself: its response is awaited like one asked for.
            self.turn_request(Some(id)).await;
        }
    }

    /// A response was asked for, by `owner` (default: the newest turn, or a new one).
    pub(super) fn turn_request(&mut self, owner: Option<u64>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let owner = match owner.or_else(|| self.turns.newest()) {
                Some(id) => id,
                None => self.begin_turn(TurnCause::Assistant).await,
            };
            if let Some(turn) = self.turns.get(owner) {
                turn.unanswered = false;
            }
            let t = &mut self.turns;
            if t.awaiting.contains(&owner) || t.queued.contains(&owner) {
                return;
            }
            if self.active_response.is_some() || !t.awaiting.is_empty() {
                t.queued.push(owner);
            } else {
                t.awaiting.push(owner);
            }
        })
    }

    /// A response started: it answers the turns awaiting one, else the newest turn, else a
    /// turn of its own. Returns the span its work should run under.
    pub(super) async fn turn_response_started(&mut self, response_id: &str) -> tracing::Span {
        let mut owners = std::mem::take(&mut self.turns.awaiting);
        if owners.is_empty() {
            let id = match self.turns.newest() {
                Some(id) => id,
                None => self.begin_turn(TurnCause::Assistant).await,
            };
            owners.push(id);
        }
        let agent = self.agent.name().to_owned();
        for id in &owners {
            if let Some(turn) = self.turns.get(*id) {
                turn.active += 1;
                turn.unanswered = false;
                turn.responses.push(ResponseRecord {
                    response_id: response_id.to_owned(),
                    agent: agent.clone(),
                    status: None,
                    usage: None,
                });
            }
        }
        let span = owners
            .last()
            .and_then(|id| self.turns.open.iter().find(|t| t.id == *id))
            .map_or_else(tracing::Span::none, |t| t.span.clone());
        self.turns.current.clone_from(&owners);
        self.turns
            .response_turns
            .insert(response_id.to_owned(), owners);
        span
    }

    /// A response ended (`AgentEnd`): its turns no longer wait for it.
    pub(super) fn turn_response_ended(
        &mut self,
        response_id: &str,
        status: ResponseEnd,
        usage: Option<Usage>,
    ) {
        let owners = self
            .turns
            .response_turns
            .get(response_id)
            .cloned()
            .unwrap_or_default();
        for id in &owners {
            if let Some(turn) = self.turns.get(*id) {
                turn.active = turn.active.saturating_sub(1);
                if let Some(usage) = usage {
                    turn.usage += usage;
                }
                if let Some(r) = turn
                    .responses
                    .iter_mut()
                    .find(|r| r.response_id == response_id)
                {
                    r.status = Some(status);
                    r.usage = usage;
                }
            }
        }
        self.turns.current.clear();
        // The requests made meanwhile now go out, as one.
        if self.turns.awaiting.is_empty() {
            self.turns.awaiting = std::mem::take(&mut self.turns.queued);
        }
    }

    fn turn_busy(&self, turn: &OpenTurn) -> bool {
        let t = &self.turns;
        turn.speaking
            || turn.unanswered
            || turn.active > 0
            || t.awaiting.contains(&turn.id)
            || t.queued.contains(&turn.id)
            || self.batches.keys().any(|b| t.batch_owns(b, turn.id))
            || self
                .approvals
                .keys()
                .any(|c| t.call_turns.get(c) == Some(&turn.id))
    }

    /// Ends, in order, every open turn with nothing left to do.
    pub(super) fn end_idle_turns(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut i = 0;
            while i < self.turns.open.len() {
                if self.turn_busy(&self.turns.open[i]) {
                    i += 1;
                    continue;
                }
                let turn = self.turns.open.remove(i);
                self.finish_turn(turn, None).await;
            }
        })
    }

    /// Ends every open turn: the session is ending.
    pub(super) fn end_all_turns(&mut self, end: SessionEnd) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.turns.awaiting.clear();
            self.turns.queued.clear();
            for turn in std::mem::take(&mut self.turns.open) {
                self.finish_turn(turn, Some(end.clone())).await;
            }
        })
    }

    fn finish_turn(
        &mut self,
        turn: OpenTurn,
        end: Option<SessionEnd>,
    ) -> impl Future<Output = ()> + Send + '_ {
        async move {
            if turn.unechoed && end.is_none() {
                let error = Error::Contract(format!(
                    "the user message of turn {} was never echoed as an Item, so it is missing \
                 from the history",
                    turn.id
                ));
                self.emit(RealtimeSessionEvent::Error { error }).await;
            }
            let result = self.turn_result(turn, end);
            self.turns
                .call_turns
                .retain(|_, owner| *owner != result.turn_id);
            self.turns.response_turns.retain(|_, owners| {
                owners.retain(|o| *o != result.turn_id);
                !owners.is_empty()
            });
            self.emit(RealtimeSessionEvent::TurnEnded {
                result: Box::new(result),
            })
            .await;
        }
    }

    fn turn_result(&self, turn: OpenTurn, end: Option<SessionEnd>) -> TurnResult {
        let now = Instant::now();
        let status = match &end {
            Some(SessionEnd::Ended(_)) => TurnStatus::Cancelled,
            Some(SessionEnd::Lost(_)) => TurnStatus::Failed,
            None => match turn.responses.last().and_then(|r| r.status) {
                Some(ResponseEnd::Completed) => TurnStatus::Completed,
                Some(ResponseEnd::Interrupted) => TurnStatus::Interrupted,
                Some(ResponseEnd::Cancelled | ResponseEnd::SessionEnded) => TurnStatus::Cancelled,
                Some(ResponseEnd::Failed | ResponseEnd::ConnectionLost) => TurnStatus::Failed,
                _ => TurnStatus::Incomplete,
            },
        };
        let error = match end {
            Some(SessionEnd::Ended(e) | SessionEnd::Lost(e)) => e,
            None => None,
        };
        let format = self.output_format;
        let (text, heard_text, timings) = spoken_summary(&turn, format);
        let since = |at: Option<Instant>| at?.checked_duration_since(turn.user_end?);
        let timings = TurnTimings {
            first_audio: since(turn.first_audio),
            first_transcript: since(turn.first_transcript),
            total: since(Some(now)),
            ..timings
        };
        let items = turn
            .items
            .iter()
            .filter_map(|id| self.history.get(id).cloned())
            .collect();
        record_turn(&turn.span, status, &timings, &turn.usage);
        TurnResult {
            turn_id: turn.id,
            cause: turn.cause,
            status,
            text,
            heard_text,
            items,
            tool_calls: turn.tool_calls,
            handoffs: turn.handoffs,
            responses: turn.responses,
            usage: turn.usage,
            timings,
            error,
        }
    }
}

/// The turn's full text, the heard part, and its audio amounts.
fn spoken_summary(turn: &OpenTurn, format: AudioFormat) -> (String, String, TurnTimings) {
    let mut text = String::new();
    let mut heard = String::new();
    let mut timings = TurnTimings::default();
    for s in turn
        .spoken
        .iter()
        .filter(|s| !s.text.is_empty() || s.audio_bytes > 0)
    {
        let generated_ms = format.bytes_to_ms(s.audio_bytes);
        let heard_ms = s
            .heard_ms
            .map_or(generated_ms as u64, |h| h.min(generated_ms as u64));
        timings.audio_generated_ms += generated_ms as u64;
        timings.audio_heard_ms += heard_ms;
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&s.text);
        let part = match s.heard_ms {
            Some(h) if s.audio_bytes > 0 => heard_part(&s.text, generated_ms, h),
            _ => &s.text,
        };
        if !part.is_empty() {
            if !heard.is_empty() {
                heard.push('\n');
            }
            heard.push_str(part);
        }
    }
    (text, heard, timings)
}

/// The turn's figures on its span and in the `metrics` facade.
fn record_turn(span: &tracing::Span, status: TurnStatus, timings: &TurnTimings, usage: &Usage) {
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    span.record("status", status.as_str());
    if let Some(v) = ms(timings.first_audio) {
        span.record("first_audio_ms", v);
        metrics::histogram!("realtime_turn_first_audio_seconds").record(v as f64 / 1e3);
    }
    if let Some(v) = ms(timings.first_transcript) {
        span.record("first_transcript_ms", v);
        metrics::histogram!("realtime_turn_first_transcript_seconds").record(v as f64 / 1e3);
    }
    if let Some(v) = ms(timings.total) {
        span.record("total_ms", v);
        metrics::histogram!("realtime_turn_duration_seconds").record(v as f64 / 1e3);
    }
    span.record("audio_generated_ms", timings.audio_generated_ms);
    span.record("audio_heard_ms", timings.audio_heard_ms);
    span.record("input_tokens", usage.input_tokens);
    span.record("output_tokens", usage.output_tokens);
    span.in_scope(|| tracing::debug!(status = status.as_str(), "turn ended"));
    metrics::counter!("realtime_turns_total", "status" => status.as_str()).increment(1);
    metrics::counter!("realtime_audio_generated_ms_total").increment(timings.audio_generated_ms);
    metrics::counter!("realtime_audio_heard_ms_total").increment(timings.audio_heard_ms);
    metrics::counter!("realtime_tokens_total", "kind" => "input").increment(usage.input_tokens);
    metrics::counter!("realtime_tokens_total", "kind" => "output").increment(usage.output_tokens);
}

#[cfg(test)]
mod tests {
    use super::heard_part;

    #[test]
    fn heard_text_is_cut_in_proportion_to_the_audio_played() {
        assert_eq!(heard_part("abcdefghij", 1000.0, 500), "abcde");
        assert_eq!(heard_part("abcdefghij", 1000.0, 1000), "abcdefghij");
        assert_eq!(heard_part("abcdefghij", 1000.0, 0), "");
        assert_eq!(heard_part("héllo wörld", 1100.0, 500), "héllo");
        assert_eq!(heard_part("", 1000.0, 500), "");
    }
}
