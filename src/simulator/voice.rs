//! What the simulated model says, ready to stream: speech synthesized once, encoded in the
//! output format and cut into 20 ms deltas with their base64, cached across connections.
//! Protocol-neutral: any protocol's responses stream these deltas.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use base64_simd::STANDARD as BASE64;

use super::speech;
use crate::audio::AudioFormat;
use crate::audio::g711;

/// Milliseconds of audio per output delta.
pub(crate) const DELTA_MS: f64 = 20.0;

/// Speech synthesized and encoded once, shared by every response (on any connection) that
/// says the same words in the same voice and format.
#[derive(Debug)]
pub(crate) struct Speech {
    /// Word start (ms) and word, as the synthesizer placed them.
    words: Vec<(f64, String)>,
    /// The audio in the output format, padded to whole 20 ms frames.
    audio: Vec<u8>,
    /// Bytes per delta.
    chunk_bytes: usize,
    /// The base64 of each delta, concatenated.
    b64: String,
    /// Delta `k` is `b64[offsets[k]..offsets[k + 1]]`.
    offsets: Vec<usize>,
}

impl Speech {
    fn new(text: &str, voice: &str, format: AudioFormat) -> Self {
        let mut utterance = speech::synthesize(text, voice, format.sample_rate());
        // Whole 20 ms frames, so every delta has the same size.
        let frame = (format.sample_rate() / 50) as usize;
        let padded = utterance.samples.len().div_ceil(frame) * frame;
        utterance.samples.resize(padded, 0);
        let audio = encode_audio(&utterance.samples, format);
        let chunk_bytes = format.ms_to_bytes(DELTA_MS as u64).max(1);
        let mut b64 =
            String::with_capacity(audio.len().div_ceil(3) * 4 + 4 * audio.len() / chunk_bytes);
        let mut offsets = vec![0];
        for chunk in audio.chunks(chunk_bytes) {
            BASE64.encode_append(chunk, &mut b64);
            offsets.push(b64.len());
        }
        Self {
            words: utterance.words,
            audio,
            chunk_bytes,
            b64,
            offsets,
        }
    }

    /// The cached speech for these words, voice and format (synthesized on first use).
    pub(crate) fn cached(text: &str, voice: &str, format: AudioFormat) -> Arc<Speech> {
        type Key = (String, String, u32, u8);
        static CACHE: LazyLock<Mutex<HashMap<Key, Arc<Speech>>>> =
            LazyLock::new(|| Mutex::new(HashMap::new()));
        let kind = match format {
            AudioFormat::Pcm16 { .. } => 0,
            AudioFormat::G711Ulaw => 1,
            AudioFormat::G711Alaw => 2,
        };
        let key = (
            text.to_owned(),
            voice.to_owned(),
            format.sample_rate(),
            kind,
        );
        if let Some(hit) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return hit.clone();
        }
        // Synthesize outside the lock; a concurrent miss does the work twice, harmlessly.
        let speech = Arc::new(Speech::new(text, voice, format));
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 16 {
            cache.clear();
        }
        cache.insert(key, speech.clone());
        speech
    }

    /// How many deltas the speech makes.
    pub(crate) fn chunks(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Word start (ms) and word, as the synthesizer placed them.
    pub(crate) fn words(&self) -> &[(f64, String)] {
        &self.words
    }

    /// Bytes of audio in deltas `0..=k`.
    pub(crate) fn bytes_through(&self, k: usize) -> usize {
        k * self.chunk_bytes + self.chunk(k).len()
    }

    /// Delta `k`'s audio bytes.
    pub(crate) fn chunk(&self, k: usize) -> &[u8] {
        let from = k * self.chunk_bytes;
        &self.audio[from..(from + self.chunk_bytes).min(self.audio.len())]
    }

    /// Delta `k`'s audio in base64.
    pub(crate) fn chunk_b64(&self, k: usize) -> &str {
        &self.b64[self.offsets[k]..self.offsets[k + 1]]
    }
}

fn encode_audio(samples: &[i16], format: AudioFormat) -> Vec<u8> {
    match format {
        AudioFormat::Pcm16 { .. } => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        AudioFormat::G711Ulaw => samples
            .iter()
            .map(|&s| g711::ulaw_encode_sample(s))
            .collect(),
        AudioFormat::G711Alaw => samples
            .iter()
            .map(|&s| g711::alaw_encode_sample(s))
            .collect(),
    }
}
