//! Output guardrails on the assistant transcript, and audio held back until it passed them.

use futures::FutureExt as _;
use futures::future::BoxFuture;

use super::Driver;
use crate::guardrail::GuardrailResult;
use crate::model::{ModelCommand, UserMessage};
use crate::{Error, OutputGuardrail, RealtimeAgent, RealtimeSessionEvent};

/// Transcript of the current response, as the output guardrails see it.
#[derive(Debug, Default)]
pub(super) struct GuardText {
    pub(super) response_id: String,
    text: String,
    checked: usize,
    /// Checks of this response in flight.
    running: usize,
    /// Audio of this response is held until the guardrails pass it.
    holding: bool,
}

/// Audio (or the end of an audio part) waiting for the guardrails.
#[derive(Debug)]
pub(super) struct Held {
    seq: u64,
    event: RealtimeSessionEvent,
}

pub(super) struct GuardDone {
    response_id: String,
    text: String,
    /// Held audio received before this check started (sequence numbers below this).
    audio_mark: u64,
    results: Vec<GuardrailResult>,
    failures: Vec<Error>,
}

/// The default message to the model after a trip.
fn default_feedback(results: &[GuardrailResult]) -> String {
    let tripped: Vec<String> = results
        .iter()
        .filter(|r| r.output.tripwire_triggered)
        .map(|r| match &r.output.info {
            serde_json::Value::Null => r.name.clone(),
            serde_json::Value::String(s) => format!("{} ({s})", r.name),
            info => format!("{} ({info})", r.name),
        })
        .collect();
    format!(
        "Your last answer was blocked by the output guardrail(s) {}. Do not repeat it; apologise briefly and continue.",
        tripped.join(", ")
    )
}

impl Driver {
    /// The agent that started the current response (the current agent between responses).
    fn response_agent(&self) -> &RealtimeAgent {
        self.response_agent.as_deref().unwrap_or(&self.agent)
    }

    fn has_guardrails(&self) -> bool {
        !self.response_agent().output_guardrails().is_empty()
            || !self.shared.config.output_guardrails.is_empty()
    }

    fn guardrail_set(&self) -> Vec<OutputGuardrail> {
        let mut all: Vec<OutputGuardrail> = self.response_agent().output_guardrails().to_vec();
        for g in &self.shared.config.output_guardrails {
            if !all.iter().any(|a| a.name() == g.name()) {
                all.push(g.clone());
            }
        }
        all
    }

    /// Starts tracking `response_id`'s transcript if it is new.
    fn guard_response(&mut self, response_id: &str) {
        if self.guard.response_id != response_id {
            self.guard = GuardText {
                response_id: response_id.to_owned(),
                holding: self.shared.config.hold_audio_for_guardrails && self.has_guardrails(),
                ..GuardText::default()
            };
        }
    }

    /// Holds `event` (audio or audio end of the current response) back if its response's
    /// audio waits for the guardrails; otherwise gives it back to be delivered now.
    pub(super) fn hold(&mut self, event: RealtimeSessionEvent) -> Option<RealtimeSessionEvent> {
        if !self.shared.config.hold_audio_for_guardrails {
            return Some(event);
        }
        match &event {
            RealtimeSessionEvent::Audio { response_id, .. } => self.guard_response(response_id),
            RealtimeSessionEvent::AudioEnd { .. } if self.held.is_empty() => return Some(event),
            _ => {}
        }
        if !self.guard.holding {
            return Some(event);
        }
        self.held_seq += 1;
        self.held.push_back(Held {
            seq: self.held_seq,
            event,
        });
        None
    }

    /// Delivers held audio received before `mark`.
    pub(super) async fn release_held(&mut self, mark: u64) {
        while self.held.front().is_some_and(|h| h.seq < mark) {
            if let Some(held) = self.held.pop_front() {
                self.deliver_audio(held.event).await;
            }
        }
    }

    pub(super) fn guard_text(&mut self, response_id: &str, delta: &str) {
        if !self.has_guardrails() {
            return;
        }
        self.guard_response(response_id);
        self.guard.text.push_str(delta);
        let debounce = self.shared.config.guardrail_debounce_chars;
        if debounce > 0 && self.guard.text.len() >= self.guard.checked + debounce {
            self.check_guardrails(false);
        }
    }

    /// Runs the guardrails on the response's text so far (`last`: once more at its end).
    /// Returns true when, at the end, all of the response's text has passed: its held audio
    /// can go.
    pub(super) fn check_guardrails(&mut self, last: bool) -> bool {
        let blocked = self.blocked_response.as_deref() == Some(&self.guard.response_id);
        let fresh = self.guard.text.len() > self.guard.checked || (last && self.guard.checked == 0);
        if blocked || (self.guard.running > 0 && !last) {
            return false;
        }
        if !fresh {
            return last && self.guard.running == 0;
        }
        let guardrails = self.guardrail_set();
        if guardrails.is_empty() {
            return last;
        }
        self.guard.checked = self.guard.text.len();
        self.guard.running += 1;
        let text = self.guard.text.clone();
        let response_id = self.guard.response_id.clone();
        let ctx = self.shared.context.clone();
        // At the end of the response, everything held is covered by this check.
        let audio_mark = if last { u64::MAX } else { self.held_seq + 1 };
        self.wakes.mark(super::wake::GUARDRAILS);
        self.guardrails.get_or_insert_default().push(
            async move {
                let runs = guardrails.iter().map(|g| {
                    let task = tokio::spawn(g.run(ctx.clone(), text.clone()));
                    let name = g.name().to_owned();
                    async move { (name, task.await) }
                });
                let mut results = Vec::new();
                let mut failures = Vec::new();
                for (name, outcome) in futures::future::join_all(runs).await {
                    match outcome {
                        Ok(output) => results.push(GuardrailResult { name, output }),
                        Err(e) => failures.push(Error::Guardrail {
                            name,
                            message: if e.is_panic() {
                                "it panicked".to_owned()
                            } else {
                                "it was cancelled".to_owned()
                            },
                        }),
                    }
                }
                GuardDone {
                    response_id,
                    text,
                    audio_mark,
                    results,
                    failures,
                }
            }
            .boxed(),
        );
        false
    }

    pub(super) fn on_guardrails_done(&mut self, done: GuardDone) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let current = self.guard.response_id == done.response_id;
            if current {
                self.guard.running = self.guard.running.saturating_sub(1);
            }
            for error in done.failures {
                tracing::warn!(%error, "output guardrail failed");
                self.emit(RealtimeSessionEvent::Error { error }).await;
            }
            let tripped = done.results.iter().any(|r| r.output.tripwire_triggered);
            let blocked = self.blocked_response.as_deref() == Some(done.response_id.as_str());
            if !tripped || blocked {
                if current && !blocked {
                    self.release_held(done.audio_mark).await;
                    // Text that arrived while this check ran gets its own check.
                    let debounce = self.shared.config.guardrail_debounce_chars;
                    let ended = self.active_response.as_deref() != Some(done.response_id.as_str());
                    if ended {
                        if self.check_guardrails(true) {
                            self.release_held(u64::MAX).await;
                        }
                    } else if debounce > 0 && self.guard.text.len() >= self.guard.checked + debounce
                    {
                        self.check_guardrails(false);
                    }
                }
                return;
            }
            let names: Vec<&str> = done
                .results
                .iter()
                .filter(|r| r.output.tripwire_triggered)
                .map(|r| r.name.as_str())
                .collect();
            tracing::info!(response_id = %done.response_id, guardrails = ?names, "output guardrail tripped");
            let feedback = match &self.shared.config.guardrail_feedback {
                Some(feedback) => feedback(&done.results),
                None => default_feedback(&done.results),
            };
            self.blocked_response = Some(done.response_id.clone());
            self.emit(RealtimeSessionEvent::GuardrailTripped {
                response_id: done.response_id,
                results: done.results,
                text: done.text,
            })
            .await;
            self.interrupt(true).await;
            self.send(ModelCommand::UserMessage {
                message: UserMessage::text(feedback),
                respond: true,
            })
            .await;
        })
    }
}
