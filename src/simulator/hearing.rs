//! What the simulated model hears, protocol-neutral: the input audio as decoded samples, an
//! energy detector that finds where speech starts and ends, and transcription (text made
//! with [`speech::encode_text`] is read back; other audio is described by its length).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use super::speech;
use crate::audio::AudioFormat;
use crate::audio::g711;

/// How the energy detector tells speech from silence, and when speech has ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpeechDetector {
    /// RMS (of PCM16 samples) above which a 20 ms frame is speech.
    rms_threshold: f64,
    /// Audio kept before the first speech frame.
    prefix_ms: u64,
    /// Silence that ends speech.
    silence_ms: u64,
}

impl SpeechDetector {
    /// `threshold` from 0 to 1 maps to an RMS level in dBFS: 0 → −60, 0.5 → −35, 1 → −10.
    pub(crate) fn new(threshold: f64, prefix_ms: u64, silence_ms: u64) -> Self {
        Self {
            rms_threshold: 32_768.0 * 10f64.powf((-60.0 + 50.0 * threshold) / 20.0),
            prefix_ms,
            silence_ms,
        }
    }
}

/// Where speech started or stopped, as cumulative sample positions.
pub(crate) enum VadEvent {
    Started { start: u64 },
    Stopped { start: u64, end: u64 },
}

/// The input audio buffer, as decoded samples with cumulative sample positions.
#[derive(Debug)]
pub(crate) struct InputAudio {
    format: AudioFormat,
    samples: Vec<i16>,
    /// Cumulative position of `samples[0]`.
    start: u64,
    /// Cumulative position up to which VAD has analysed.
    analysed: u64,
    /// Odd trailing byte of a PCM16 append.
    carry: Option<u8>,
    /// Speech in progress: its start (prefix padding included) and trailing silence.
    speech: Option<(u64, u64)>,
}

impl InputAudio {
    pub(crate) fn new(format: AudioFormat) -> Self {
        Self {
            format,
            samples: Vec::new(),
            start: 0,
            analysed: 0,
            carry: None,
            speech: None,
        }
    }

    fn rate(&self) -> u64 {
        u64::from(self.format.sample_rate())
    }

    /// The format appends are in.
    pub(crate) fn format(&self) -> AudioFormat {
        self.format
    }

    /// The buffered samples.
    pub(crate) fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Whether speech has started and not yet stopped.
    pub(crate) fn in_speech(&self) -> bool {
        self.speech.is_some()
    }

    /// Forgets speech in progress (the detector was turned off).
    pub(crate) fn forget_speech(&mut self) {
        self.speech = None;
    }

    /// The cumulative position after the last sample.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.samples.len() as u64
    }

    /// A cumulative position in milliseconds.
    pub(crate) fn ms(&self, position: u64) -> u64 {
        position * 1000 / self.rate()
    }

    pub(crate) fn buffered_ms(&self) -> f64 {
        self.samples.len() as f64 * 1000.0 / self.rate() as f64
    }

    /// Decodes appended bytes (an odd PCM16 byte waits for the next append).
    pub(crate) fn append(&mut self, bytes: &[u8]) {
        match self.format {
            AudioFormat::Pcm16 { .. } => {
                let mut bytes = bytes;
                if let (Some(low), Some((&high, rest))) = (self.carry, bytes.split_first()) {
                    self.samples.push(i16::from_le_bytes([low, high]));
                    self.carry = None;
                    bytes = rest;
                }
                let mut pairs = bytes.chunks_exact(2);
                self.samples
                    .extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
                if let Some(&odd) = pairs.remainder().first() {
                    self.carry = Some(odd);
                }
            }
            AudioFormat::G711Ulaw => self
                .samples
                .extend(bytes.iter().map(|&b| g711::ulaw_decode_sample(b))),
            AudioFormat::G711Alaw => self
                .samples
                .extend(bytes.iter().map(|&b| g711::alaw_decode_sample(b))),
        }
    }

    /// Removes and returns the samples in `[from, to)` (cumulative positions), dropping
    /// everything before `to`.
    pub(crate) fn take(&mut self, from: u64, to: u64) -> Vec<i16> {
        let from = from.max(self.start);
        let to = to.clamp(from, self.end());
        let a = (from - self.start) as usize;
        let b = (to - self.start) as usize;
        let out = self.samples[a..b].to_vec();
        self.samples.drain(..b);
        self.start = to;
        self.analysed = self.analysed.max(to);
        out
    }

    /// Removes and returns everything buffered, ending speech in progress.
    pub(crate) fn take_all(&mut self) -> Vec<i16> {
        let samples = self.take(self.start, self.end());
        self.speech = None;
        samples
    }

    /// Drops everything buffered.
    pub(crate) fn clear(&mut self) {
        self.start = self.end();
        self.samples.clear();
        self.analysed = self.start;
        self.carry = None;
        self.speech = None;
    }

    /// Analyses 20 ms frames until the next VAD event.
    pub(crate) fn next_event(&mut self, vad: &SpeechDetector) -> Option<VadEvent> {
        let frame = (self.rate() / 50).max(1);
        let prefix = vad.prefix_ms * self.rate() / 1000;
        let silence = vad.silence_ms * self.rate() / 1000;
        while self.analysed + frame <= self.end() {
            let at = self.analysed;
            let offset = (at - self.start) as usize;
            let window = &self.samples[offset..offset + frame as usize];
            let energy: f64 = window.iter().map(|&s| f64::from(s).powi(2)).sum();
            let voiced = (energy / frame as f64).sqrt() > vad.rms_threshold;
            self.analysed += frame;
            match &mut self.speech {
                None if voiced => {
                    let start = at.saturating_sub(prefix).max(self.start);
                    self.speech = Some((start, 0));
                    return Some(VadEvent::Started { start });
                }
                None => {}
                Some((_, quiet)) if voiced => *quiet = 0,
                Some((start, quiet)) => {
                    *quiet += frame;
                    if *quiet >= silence {
                        let start = *start;
                        self.speech = None;
                        return Some(VadEvent::Stopped {
                            start,
                            end: self.analysed,
                        });
                    }
                }
            }
        }
        if self.speech.is_none() {
            // Keep a little history for the next utterance's prefix padding; drop the rest
            // once it is as long again (not on every append: that would move a second of
            // audio every 20 ms).
            let keep = prefix.max(self.rate());
            if self.analysed > self.start + 2 * keep {
                let cut = (self.analysed - keep - self.start) as usize;
                self.samples.drain(..cut);
                self.start += cut as u64;
            }
        }
        None
    }
}

/// What the simulator makes of user audio. Transcripts are cached by the audio's hash: load
/// tests send the same utterances on many connections, and decoding is the costly part.
pub(crate) fn transcribe(samples: &[i16], rate: u32) -> String {
    use std::hash::{Hash, Hasher};
    type Key = (u64, usize, u32);
    static CACHE: LazyLock<Mutex<HashMap<Key, String>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    samples.hash(&mut hasher);
    let key = (hasher.finish(), samples.len(), rate);
    if let Some(hit) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return hit.clone();
    }
    let text = transcribe_uncached(samples, rate);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(key, text.clone());
    text
}

fn transcribe_uncached(samples: &[i16], rate: u32) -> String {
    speech::decode_text(samples, rate).unwrap_or_else(|| {
        format!(
            "({:.1} seconds of audio)",
            samples.len() as f64 / f64::from(rate)
        )
    })
}
