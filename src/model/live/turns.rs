//! Turns on a protocol that has none: Live's output is one continuous audio track (silence
//! included) with transcript deltas, and its input transcript is deltas only. Here the model's
//! utterances become responses (`ResponseStarted` … `ResponseDone`) and the user's speech
//! becomes user items, so that a session's `AgentStart`/`AgentEnd`, transcripts and history
//! work as on the Realtime API.

use bytes::Bytes;

use crate::audio::{AudioFormat, g711};
use crate::items::{self, ItemStatus, MessageContent, RealtimeItem, Role};
use crate::model::{ModelEvent, ResponseStatus, Usage};
use crate::transport::Queues;

/// This much output silence in a row ends an utterance (what LiveKit's and Pipecat's Live
/// adapters wait for too).
pub(crate) const END_SILENCE_MS: f64 = 800.0;
/// A user transcript fragment starting this long after the previous one's end starts a new
/// user turn.
pub(crate) const USER_GAP_MS: u64 = 800;
/// Samples at most this loud count as silence (Live's silence is digital zeros; a little
/// margin for dithering).
const SILENCE_LEVEL: u16 = 64;

/// The utterance being delivered.
#[derive(Debug)]
struct Utterance {
    response_id: String,
    item_id: String,
    transcript: String,
    /// Output silence since the last sound or transcript.
    silent_ms: f64,
    /// Cut off by the user or the application.
    interrupted: bool,
    /// Some audio was delivered.
    audio: bool,
    /// It speaks (an assistant message), rather than only calling tools.
    message: bool,
}

/// The user's turn being transcribed.
#[derive(Debug)]
struct UserTurn {
    item_id: String,
    transcript: String,
    end_ms: u64,
}

#[derive(Debug)]
pub(crate) struct Turns {
    format: AudioFormat,
    response: Option<Utterance>,
    user: Option<UserTurn>,
    last_user_text: String,
    /// Backend usage to report with the next `ResponseDone`.
    usage: Option<Usage>,
    /// After a barge-in: the model is still finishing the utterance it was cut off in. Its
    /// output is not delivered until it has been silent this long (ms).
    draining: Option<f64>,
    next: u64,
}

impl Turns {
    pub(crate) fn new(format: AudioFormat) -> Self {
        Self {
            format,
            response: None,
            user: None,
            last_user_text: String::new(),
            usage: None,
            draining: None,
            next: 0,
        }
    }

    pub(crate) fn set_format(&mut self, format: AudioFormat) {
        self.format = format;
    }

    fn ids(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Usage reported with the response that ends next.
    pub(crate) fn add_usage(&mut self, usage: Usage) {
        *self.usage.get_or_insert_with(Usage::default) += usage;
    }

    /// The user's words that a delegation is about: the open turn's, or the last one's.
    pub(crate) fn last_user_text(&self) -> String {
        match &self.user {
            Some(u) if !u.transcript.trim().is_empty() => u.transcript.trim().to_owned(),
            _ => self.last_user_text.clone(),
        }
    }

    /// A typed user message: what a delegation that follows is about.
    pub(crate) fn typed(&mut self, text: &str) {
        self.last_user_text = text.trim().to_owned();
    }

    /// A chunk of the output track. Returns whether it started a response.
    pub(crate) fn output_audio(&mut self, data: Bytes, q: &mut Queues) -> bool {
        let silent = is_silent(&data, self.format);
        if let Some(quiet) = self.draining.as_mut() {
            // What the model says after it was cut off is not heard: wait for its silence.
            *quiet = if silent {
                *quiet + self.format.bytes_to_ms(data.len())
            } else {
                0.0
            };
            if *quiet >= END_SILENCE_MS {
                self.draining = None;
            }
            return false;
        }
        let started = match self.response {
            // Silence between utterances is not delivered.
            None if silent => return false,
            None => {
                self.start_response(q);
                true
            }
            Some(_) => false,
        };
        let ms = self.format.bytes_to_ms(data.len());
        let Some(r) = self.response.as_mut() else {
            return started;
        };
        if silent {
            r.silent_ms += ms;
        } else {
            r.silent_ms = 0.0;
        }
        r.audio = true;
        q.event(ModelEvent::Audio {
            response_id: r.response_id.clone(),
            item_id: r.item_id.clone(),
            content_index: 0,
            data,
        });
        if r.silent_ms >= END_SILENCE_MS {
            self.end_response(q);
        }
        started
    }

    /// A fragment of the model's transcript. Returns whether it started a response.
    pub(crate) fn output_transcript(&mut self, delta: String, q: &mut Queues) -> bool {
        if let Some(quiet) = self.draining.as_mut() {
            *quiet = 0.0;
            return false;
        }
        let started = self.response.is_none();
        if started {
            self.start_response(q);
        }
        let Some(r) = self.response.as_mut() else {
            return started;
        };
        r.silent_ms = 0.0;
        r.transcript.push_str(&delta);
        q.event(ModelEvent::TranscriptDelta {
            response_id: r.response_id.clone(),
            item_id: r.item_id.clone(),
            content_index: 0,
            delta,
        });
        started
    }

    fn start_response(&mut self, q: &mut Queues) {
        self.open_response(q, true);
    }

    /// Opens a response; `message`: with the assistant message it speaks (else it only calls
    /// tools).
    fn open_response(&mut self, q: &mut Queues, message: bool) {
        self.end_user_turn(q);
        let n = self.ids();
        let response_id = format!("resp_live{n}");
        let item_id = format!("item_live_out{n}");
        q.event(ModelEvent::ResponseStarted {
            response_id: response_id.clone(),
        });
        if message {
            q.event(ModelEvent::Item(assistant_item(
                item_id.clone(),
                None,
                ItemStatus::InProgress,
            )));
        }
        self.response = Some(Utterance {
            response_id,
            item_id,
            transcript: String::new(),
            silent_ms: 0.0,
            interrupted: false,
            audio: false,
            message,
        });
    }

    /// A function call of the Responses backend (its item and its call): in the utterance
    /// being delivered, or else in a response of its own that ends with it (the session hangs
    /// calls on responses).
    pub(crate) fn call(&mut self, events: [ModelEvent; 2], q: &mut Queues) {
        let own = self.response.is_none();
        if own {
            self.open_response(q, false);
        }
        let Some(r) = self.response.as_ref() else {
            return;
        };
        let response_id = r.response_id.clone();
        for mut event in events {
            if let ModelEvent::FunctionCall {
                response_id: id, ..
            } = &mut event
            {
                id.clone_from(&response_id);
            }
            q.event(event);
        }
        if own {
            self.end_response(q);
        }
    }

    /// Ends the utterance being delivered, if any.
    pub(crate) fn end_response(&mut self, q: &mut Queues) {
        let Some(r) = self.response.take() else {
            return;
        };
        if r.audio {
            q.event(ModelEvent::AudioDone {
                item_id: r.item_id.clone(),
                content_index: 0,
            });
        }
        let (item_status, status) = if r.interrupted {
            (ItemStatus::Incomplete, ResponseStatus::Cancelled)
        } else {
            (ItemStatus::Completed, ResponseStatus::Completed)
        };
        if r.message {
            q.event(ModelEvent::Item(assistant_item(
                r.item_id,
                Some(r.transcript),
                item_status,
            )));
        }
        q.event(ModelEvent::ResponseDone {
            response_id: r.response_id,
            status,
            usage: self.usage.take(),
        });
    }

    /// The utterance being delivered is cut off (the user spoke, or the application
    /// interrupted): it ends `Cancelled` now, and what the model still says of it is not
    /// delivered (the model stops by itself once it hears the user).
    pub(crate) fn interrupt(&mut self, q: &mut Queues) {
        let Some(r) = self.response.as_mut() else {
            return;
        };
        r.interrupted = true;
        self.end_response(q);
        self.draining = Some(0.0);
    }

    /// A fragment of the user's transcript: the first of a turn is its `SpeechStarted` (a
    /// barge-in when the model is talking).
    pub(crate) fn input_transcript(
        &mut self,
        delta: String,
        start_ms: u64,
        end_ms: u64,
        q: &mut Queues,
    ) {
        let new_turn = self
            .user
            .as_ref()
            .is_none_or(|u| start_ms > u.end_ms + USER_GAP_MS);
        if new_turn {
            self.end_user_turn(q);
            let item_id = format!("item_live_in{}", self.ids());
            q.event(ModelEvent::SpeechStarted {
                item_id: item_id.clone(),
                audio_start_ms: start_ms,
            });
            // A barge-in: the model stops for the user (`server_interrupts`).
            self.interrupt(q);
            q.event(ModelEvent::Item(RealtimeItem::Message(
                items::MessageItem {
                    item_id: item_id.clone(),
                    previous_item_id: None,
                    role: Role::User,
                    content: vec![MessageContent::InputAudio { transcript: None }],
                    status: ItemStatus::InProgress,
                },
            )));
            self.user = Some(UserTurn {
                item_id,
                transcript: String::new(),
                end_ms,
            });
        }
        let Some(u) = self.user.as_mut() else {
            return;
        };
        u.transcript.push_str(&delta);
        u.end_ms = u.end_ms.max(end_ms);
        q.event(ModelEvent::InputTranscriptDelta {
            item_id: u.item_id.clone(),
            content_index: 0,
            delta,
        });
    }

    /// Closes the user's turn, if one is open: the model answered or delegated.
    pub(crate) fn end_user_turn(&mut self, q: &mut Queues) {
        let Some(u) = self.user.take() else {
            return;
        };
        q.event(ModelEvent::SpeechStopped {
            item_id: u.item_id.clone(),
            audio_end_ms: u.end_ms,
        });
        let transcript = u.transcript.trim().to_owned();
        q.event(ModelEvent::Item(RealtimeItem::Message(
            items::MessageItem {
                item_id: u.item_id.clone(),
                previous_item_id: None,
                role: Role::User,
                content: vec![MessageContent::InputAudio {
                    transcript: Some(transcript.clone()),
                }],
                status: ItemStatus::Completed,
            },
        )));
        q.event(ModelEvent::InputTranscriptCompleted {
            item_id: u.item_id,
            content_index: 0,
            transcript: transcript.clone(),
        });
        self.last_user_text = transcript;
    }
}

/// The assistant message of an utterance.
fn assistant_item(item_id: String, transcript: Option<String>, status: ItemStatus) -> RealtimeItem {
    RealtimeItem::Message(items::MessageItem {
        item_id,
        previous_item_id: None,
        role: Role::Assistant,
        content: vec![MessageContent::Audio { transcript }],
        status,
    })
}

/// Whether a chunk of output audio is silence.
fn is_silent(data: &[u8], format: AudioFormat) -> bool {
    let quiet = |s: i16| s.unsigned_abs() <= SILENCE_LEVEL;
    match format {
        AudioFormat::Pcm16 { .. } => data
            .chunks_exact(2)
            .all(|b| quiet(i16::from_le_bytes([b[0], b[1]]))),
        AudioFormat::G711Ulaw => data.iter().all(|&c| quiet(g711::ulaw_decode_sample(c))),
        AudioFormat::G711Alaw => data.iter().all(|&c| quiet(g711::alaw_decode_sample(c))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_told_from_sound_in_every_format() {
        assert!(is_silent(&[0; 960], AudioFormat::PCM16_24K));
        assert!(!is_silent(
            &1000i16.to_le_bytes().repeat(480),
            AudioFormat::PCM16_24K
        ));
        let ulaw_zero = g711::ulaw_encode_sample(0);
        assert!(is_silent(&[ulaw_zero; 160], AudioFormat::G711Ulaw));
        assert!(!is_silent(
            &[g711::ulaw_encode_sample(8000); 160],
            AudioFormat::G711Ulaw
        ));
        let alaw_zero = g711::alaw_encode_sample(0);
        assert!(is_silent(&[alaw_zero; 160], AudioFormat::G711Alaw));
    }
}
