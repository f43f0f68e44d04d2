//! The output track: utterances streamed as 20 ms audio deltas with their words' transcript
//! just before, each followed by a second of silence, paced like the Realtime simulator's
//! responses.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64_simd::STANDARD as BASE64;
use serde_json::json;
use tokio::time::Instant;

use super::LiveState;
use crate::audio::{AudioFormat, g711};
use crate::simulator::brain::Turn;
use crate::simulator::outgoing::{Due, Events, Outgoing};
use crate::simulator::voice::{DELTA_MS, Speech};

/// Silence after each utterance, in deltas of [`SILENCE_DELTA_MS`].
const SILENCE_DELTAS: usize = 10;
const SILENCE_DELTA_MS: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Word(usize),
    Audio(usize),
    Silence,
    Done,
}

/// An utterance being streamed.
#[derive(Debug)]
pub(super) struct Utterance {
    start: Instant,
    speech: Arc<Speech>,
    /// Words with their leading spaces.
    words: Vec<String>,
    /// Offset (ms of audio) and step.
    steps: VecDeque<(f64, Step)>,
    /// The audio deltas' fields besides type, id and audio: none on Live.
    fields: Arc<str>,
}

/// 100 ms of digital silence in base64, per format.
fn silence_b64(format: AudioFormat) -> &'static str {
    static PCM16: LazyLock<[String; 2]> = LazyLock::new(|| {
        [16_000usize, 24_000].map(|rate| BASE64.encode_to_string(vec![0u8; rate / 10 * 2]))
    });
    static ULAW: LazyLock<String> =
        LazyLock::new(|| BASE64.encode_to_string([g711::ulaw_encode_sample(0); 800]));
    static ALAW: LazyLock<String> =
        LazyLock::new(|| BASE64.encode_to_string([g711::alaw_encode_sample(0); 800]));
    match format {
        AudioFormat::Pcm16 { rate: 16_000 } => &PCM16[0],
        AudioFormat::Pcm16 { .. } => &PCM16[1],
        AudioFormat::G711Ulaw => &ULAW,
        AudioFormat::G711Alaw => &ALAW,
    }
}

impl LiveState {
    /// Says `text`, after what is being said.
    pub(super) fn say(&mut self, text: String) {
        if self.speaking.is_some() {
            self.queued.push_back(text);
            return;
        }
        self.turns.push(Turn::Other);
        let speech = Speech::cached(&text, &self.voice, self.format);
        let words: Vec<String> = speech
            .words()
            .iter()
            .enumerate()
            .map(|(i, (_, w))| if i == 0 { w.clone() } else { format!(" {w}") })
            .collect();
        let mut steps = VecDeque::new();
        let mut next_word = 0;
        for k in 0..speech.chunks() {
            let t = k as f64 * DELTA_MS;
            while next_word < words.len() && speech.words()[next_word].0 < t + DELTA_MS {
                steps.push_back((t, Step::Word(next_word)));
                next_word += 1;
            }
            steps.push_back((t, Step::Audio(k)));
        }
        let end = speech.chunks() as f64 * DELTA_MS;
        for w in next_word..words.len() {
            steps.push_back((end, Step::Word(w)));
        }
        for j in 0..SILENCE_DELTAS {
            steps.push_back((end + j as f64 * SILENCE_DELTA_MS, Step::Silence));
        }
        steps.push_back((end + SILENCE_DELTAS as f64 * SILENCE_DELTA_MS, Step::Done));
        self.speaking = Some(Utterance {
            start: Instant::now(),
            speech,
            words,
            steps,
            fields: Arc::from(""),
        });
    }

    /// The model heard the user out: what it was saying stops; its silence follows.
    pub(super) fn stop_talking(&mut self) {
        self.queued.clear();
        if let Some(u) = self.speaking.as_mut() {
            let at = u.steps.front().map_or(0.0, |(t, _)| *t);
            u.steps
                .retain(|(_, s)| matches!(s, Step::Silence | Step::Done));
            for (j, (t, _)) in u.steps.iter_mut().enumerate() {
                *t = at + j as f64 * SILENCE_DELTA_MS;
            }
        }
    }

    /// When the current utterance's next step is due.
    pub(super) fn speaking_due(&self) -> Option<Due> {
        let u = self.speaking.as_ref()?;
        let (offset_ms, _) = u.steps.front()?;
        Some(if self.speed > 0.0 {
            Due::At(u.start + Duration::from_secs_f64(offset_ms / 1000.0 / self.speed))
        } else {
            Due::Now
        })
    }

    /// Runs the current utterance's next step.
    pub(super) fn speak_step(&mut self, out: &mut Events) {
        let Some(u) = self.speaking.as_mut() else {
            return;
        };
        let Some((_, step)) = u.steps.pop_front() else {
            return;
        };
        let at = self.output_ms as u64;
        match step {
            Step::Word(i) => {
                let ms = (DELTA_MS as u64).max(1);
                out.push(json!({"type": "session.output_transcript.delta",
                    "delta": u.words[i], "start_ms": at, "end_ms": at + ms}));
            }
            Step::Audio(k) => {
                self.output_ms += DELTA_MS;
                out.0.push(Outgoing::AudioDelta {
                    kind: "session.output_audio.delta",
                    fields: u.fields.clone(),
                    speech: u.speech.clone(),
                    chunk: k,
                });
            }
            Step::Silence => {
                self.output_ms += SILENCE_DELTA_MS;
                out.push(json!({"type": "session.output_audio.delta",
                    "delta": silence_b64(self.format)}));
            }
            Step::Done => {
                self.speaking = None;
                out.push(json!({"type": "session.usage.updated", "usage": self.usage(),
                    "context_window": {"usage_ratio": (self.turns.len() as f64 / 1000.0).min(1.0)}}));
                if let Some(next) = self.queued.pop_front() {
                    self.say(next);
                }
            }
        }
    }
}
