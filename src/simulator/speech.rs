//! Test speech: lets tests and demos speak text the simulator can transcribe.
//!
//! The simulator has no speech recogniser. Instead, [`encode_text`] turns text into audio
//! that the simulator decodes exactly: one pure tone per character. Append that audio with
//! `input_audio_buffer.append` (PCM16, 24 kHz, little-endian) and the simulator's VAD
//! detects it as speech, and its "transcription" returns the original text, which then
//! drives the simulated assistant (tool calls included). Any other audio is transcribed as a
//! description such as `"(2.4 seconds of audio)"`.
//!
//! The scheme:
//!
//! * one symbol per character, [`SYMBOL_MS`] (30 ms) each, preceded by a start symbol and
//!   followed by an end symbol, with no gaps (so VAD sees one continuous utterance);
//! * symbol `k` is a cosine at `(15 + k) × 33⅓ Hz` (500 Hz to 3.7 kHz), i.e. exactly
//!   `15 + k` cycles per symbol, so neighbouring symbols are orthogonal over a symbol window;
//! * printable ASCII (`' '..='~'`) is carried as is; tabs and newlines become spaces and any
//!   other character becomes `?`;
//! * decoding finds the onset, then picks the strongest of the 97 frequencies in each 30 ms
//!   window with the Goertzel algorithm, and requires it to hold most of the window's energy.
//!
//! Every tone stays below 4 kHz, so the audio survives resampling to 8 kHz for G.711
//! sessions ([`decode_text`] takes the sample rate).
//!
//! ```
//! use realtime_agents::simulator::speech::{decode_text, encode_text, SAMPLE_RATE};
//! let audio = encode_text("What's the weather in Paris?");
//! assert_eq!(audio.len(), 30 * 720); // 28 characters + start + end, 30 ms each at 24 kHz
//! assert_eq!(decode_text(&audio, SAMPLE_RATE).as_deref(), Some("What's the weather in Paris?"));
//! ```

use std::f64::consts::PI;

/// Sample rate of [`encode_text`]'s output, in Hz (the Realtime API's PCM rate).
pub const SAMPLE_RATE: u32 = 24_000;

/// Duration of one encoded character, in milliseconds.
pub const SYMBOL_MS: u32 = 30;

/// Peak amplitude of an encoded tone (about −10 dBFS).
const AMPLITUDE: f64 = 10_000.0;
/// Tone of symbol 0, in Goertzel bins of a symbol window (bins are 1000 / SYMBOL_MS Hz apart).
const BASE_BIN: usize = 15;
/// Printable ASCII characters are symbols 0..95.
const CHAR_SYMBOLS: usize = 95;
const START: usize = CHAR_SYMBOLS;
const END: usize = CHAR_SYMBOLS + 1;
const SYMBOLS: usize = CHAR_SYMBOLS + 2;

fn symbol_hz(symbol: usize) -> f64 {
    (BASE_BIN + symbol) as f64 * 1000.0 / f64::from(SYMBOL_MS)
}

fn char_symbol(c: char) -> usize {
    let c = match c {
        '\t' | '\n' | '\r' => ' ',
        ' '..='~' => c,
        _ => '?',
    };
    c as usize - ' ' as usize
}

/// Encodes `text` as test speech: PCM16 mono samples at [`SAMPLE_RATE`] that the simulator
/// transcribes back to `text`.
///
/// The result lasts `(chars + 2) × 30 ms`. To let server VAD end the turn, follow it with at
/// least `silence_duration_ms` (500 ms by default) of silence; with VAD off, append it and
/// send `input_audio_buffer.commit`.
///
/// ```
/// use realtime_agents::simulator::speech::encode_text;
/// let samples = encode_text("hi");
/// assert_eq!(samples.len(), 4 * 720);
/// // As bytes for `input_audio_buffer.append`:
/// let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
/// assert_eq!(bytes.len(), 4 * 1440);
/// ```
pub fn encode_text(text: &str) -> Vec<i16> {
    let per_symbol = (SAMPLE_RATE * SYMBOL_MS / 1000) as usize;
    let symbols: Vec<usize> = std::iter::once(START)
        .chain(text.chars().map(char_symbol))
        .chain(std::iter::once(END))
        .collect();
    let mut out = Vec::with_capacity(symbols.len() * per_symbol);
    for symbol in symbols {
        let step = 2.0 * PI * symbol_hz(symbol) / f64::from(SAMPLE_RATE);
        out.extend((0..per_symbol).map(|n| (AMPLITUDE * (step * n as f64).cos()).round() as i16));
    }
    out
}

/// Decodes audio produced by [`encode_text`] (possibly resampled to `sample_rate` and
/// surrounded by silence or low noise) back to its text.
///
/// Returns `None` when the audio does not start with an encoded utterance or when the
/// utterance is cut off before its end marker.
///
/// ```
/// use realtime_agents::simulator::speech::{decode_text, encode_text};
/// let mut audio = vec![0i16; 2400]; // 100 ms of silence first
/// audio.extend(encode_text("Book a table for 2"));
/// audio.extend(vec![0i16; 4800]);
/// assert_eq!(decode_text(&audio, 24_000).as_deref(), Some("Book a table for 2"));
/// assert_eq!(decode_text(&vec![0i16; 24_000], 24_000), None);
/// ```
pub fn decode_text(samples: &[i16], sample_rate: u32) -> Option<String> {
    let n = (sample_rate as usize * SYMBOL_MS as usize) / 1000;
    if n == 0 || samples.len() < 2 * n {
        return None;
    }
    let onset = samples
        .iter()
        .position(|&s| i32::from(s).abs() > (AMPLITUDE * 0.25) as i32)?;
    // Refine the alignment around the onset on the start symbol: the onset itself when it
    // gives a clean tone, else the cleanest of its neighbours.
    let mut best = (onset, -1.0);
    for delta in [0isize, -1, 1, -2, 2, -3, 3] {
        let Some(candidate) = onset.checked_add_signed(delta) else {
            continue;
        };
        if candidate + n > samples.len() {
            continue;
        }
        if let Some((START, dominance)) = strongest(&samples[candidate..candidate + n], sample_rate)
        {
            if dominance > best.1 {
                best = (candidate, dominance);
            }
            if dominance > 0.9 {
                break;
            }
        }
    }
    let (offset, dominance) = best;
    if dominance < 0.5 {
        return None;
    }
    let mut text = String::new();
    let mut pos = offset + n;
    // The last window may be a few samples short when the alignment is off by a little.
    while pos + n - n / 16 <= samples.len() {
        let window = &samples[pos..(pos + n).min(samples.len())];
        let (symbol, dominance) = strongest(window, sample_rate)?;
        if dominance < 0.5 {
            return None;
        }
        match symbol {
            END => return Some(text),
            START => return None,
            s => text.push(char::from(b' ' + s as u8)),
        }
        pos += n;
    }
    None
}

/// The symbol whose tone is strongest in `window`, and the share of the window's energy it
/// holds (1.0 for a clean tone).
fn strongest(window: &[i16], sample_rate: u32) -> Option<(usize, f64)> {
    let energy: f64 = window.iter().map(|&s| f64::from(s).powi(2)).sum();
    if energy <= 0.0 {
        return None;
    }
    let len = window.len() as f64;
    let mut best = (0, 0.0);
    for symbol in 0..SYMBOLS {
        let w = 2.0 * PI * symbol_hz(symbol) / f64::from(sample_rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in window {
            let s0 = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        if power > best.1 {
            best = (symbol, power);
        }
    }
    // A full-window tone of amplitude A has power (A·N/2)² and energy A²·N/2.
    Some((best.0, best.1 / (energy * len / 2.0)))
}

/// Synthesised speech-like audio for a text, with the start time of each word.
#[derive(Debug, Clone)]
pub(crate) struct Utterance {
    /// Mono PCM16 samples at the requested sample rate.
    pub samples: Vec<i16>,
    /// Each word (with its trailing punctuation) and the millisecond its audio starts.
    pub words: Vec<(f64, String)>,
}

/// Characters spoken per second (spaces included).
const CHARS_PER_SECOND: f64 = 14.0;
const SINE_TABLE_BITS: u32 = 11;
/// Samples in one period of a syllable's voiced waveform.
const PERIOD_TABLE: usize = 256;

struct Sine(Vec<f32>);

impl Sine {
    fn new() -> Self {
        let len = 1usize << SINE_TABLE_BITS;
        Self(
            (0..len)
                .map(|i| (2.0 * PI * i as f64 / len as f64).sin() as f32)
                .collect(),
        )
    }
    /// sin(2π·phase) for phase in cycles.
    fn at(&self, phase: f64) -> f64 {
        let frac = phase - phase.floor();
        f64::from(self.0[(frac * self.0.len() as f64) as usize & (self.0.len() - 1)])
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Formant centres (F1, F2) in Hz of a vowel letter.
fn formants(vowel: char) -> (f64, f64) {
    match vowel {
        'a' => (750.0, 1250.0),
        'e' => (500.0, 1850.0),
        'i' => (320.0, 2250.0),
        'o' => (500.0, 950.0),
        'u' => (350.0, 850.0),
        _ => (420.0, 1500.0),
    }
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y')
}

/// Synthesises deterministic speech-like audio for `text`: voiced syllables (a fundamental
/// between 110 and 220 Hz chosen from `voice`, harmonics shaped by a vowel formant envelope,
/// a falling or, for questions, rising intonation), short noise bursts for consonants and
/// silent gaps between words, at about 14 characters per second.
pub(crate) fn synthesize(text: &str, voice: &str, sample_rate: u32) -> Utterance {
    let sine = Sine::new();
    let rate = f64::from(sample_rate);
    let char_secs = 1.0 / CHARS_PER_SECOND;
    let base_f0 = 110.0 + (fnv1a(voice.as_bytes()) % 111) as f64;
    let mut seed = fnv1a(text.as_bytes()) | 1;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let total_chars: usize = text.chars().count().max(1);
    let mut samples: Vec<i16> =
        Vec::with_capacity((total_chars as f64 * char_secs * rate) as usize);
    let mut timings = Vec::with_capacity(words.len());
    let mut chars_done = 0usize;
    let mut phase = 0.0f64;
    for word in words {
        timings.push((samples.len() as f64 * 1000.0 / rate, word.to_string()));
        let letters: Vec<char> = word.to_lowercase().chars().collect();
        let word_len = (letters.len() as f64 * char_secs * rate) as usize;
        // Syllables: one per vowel group (at least one per word).
        let mut nuclei: Vec<char> = Vec::new();
        let mut prev_vowel = false;
        for &c in &letters {
            let v = is_vowel(c);
            if v && !prev_vowel {
                nuclei.push(c);
            }
            prev_vowel = v;
        }
        if nuclei.is_empty() {
            nuclei.push('e');
        }
        let syllable_len = (word_len / nuclei.len()).max(1);
        let question = word.ends_with('?');
        for (si, &vowel) in nuclei.iter().enumerate() {
            let (f1, f2) = formants(vowel);
            let jitter = 1.0 + 0.06 * noise();
            let f0_at = |t: f64| {
                // Intonation: declines over the utterance, rises on a question's last word.
                let progress = (chars_done as f64
                    + (si as f64 + t) * letters.len() as f64 / nuclei.len() as f64)
                    / total_chars as f64;
                let mut f0 = base_f0 * jitter * (1.08 - 0.16 * progress);
                if question {
                    f0 *= 1.0 + 0.25 * ((si as f64 + t) / nuclei.len() as f64);
                }
                f0
            };
            // One period of the voiced waveform, from the vowel's formants: harmonics
            // weighted once per syllable, then read as a wavetable.
            let mid_f0 = f0_at(0.5);
            let mut period = vec![0.0f64; PERIOD_TABLE];
            for h in (1..=12usize).take_while(|&h| mid_f0 * h as f64 <= 3400.0) {
                let fh = mid_f0 * h as f64;
                let weight = (1.0
                    + 2.5 * (-((fh - f1) / 160.0).powi(2)).exp()
                    + 1.6 * (-((fh - f2) / 220.0).powi(2)).exp())
                    / h as f64;
                for (j, v) in period.iter_mut().enumerate() {
                    *v += weight * sine.at((h * j) as f64 / PERIOD_TABLE as f64);
                }
            }
            let mut step = 0.0;
            for i in 0..syllable_len {
                let t = i as f64 / syllable_len as f64;
                if i % 120 == 0 {
                    // The pitch glides in 5 ms steps.
                    step = f0_at(t) / rate;
                }
                phase += step;
                if phase >= 1.0 {
                    phase -= 1.0;
                }
                let position = phase * PERIOD_TABLE as f64;
                let (index, frac) = (position as usize % PERIOD_TABLE, position.fract());
                let voiced =
                    period[index] * (1.0 - frac) + period[(index + 1) % PERIOD_TABLE] * frac;
                // Envelope: a short consonant-like onset then a voiced nucleus.
                let attack = (t / 0.12).min(1.0);
                let release = ((1.0 - t) / 0.2).min(1.0);
                let env = sine.at(attack / 4.0) * sine.at(release / 4.0);
                let consonant = if t < 0.18 {
                    (1.0 - t / 0.18) * 0.35 * noise()
                } else {
                    0.0
                };
                let sample = 2600.0 * env * voiced + 2400.0 * consonant;
                samples.push(sample.clamp(-32_000.0, 32_000.0) as i16);
            }
        }
        chars_done += letters.len() + 1;
        // The gap after the word: one character, longer after punctuation.
        let pause = match word.chars().last() {
            Some('.' | '!' | '?') => 3.0,
            Some(',' | ';' | ':') => 2.0,
            _ => 1.0,
        };
        samples.extend(std::iter::repeat_n(0, (pause * char_secs * rate) as usize));
    }
    Utterance {
        samples,
        words: timings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_offsets_and_noise() {
        let text = "Hello, World! 42 ~{}";
        for lead in [0usize, 1, 7, 480, 1001] {
            let mut audio = vec![0i16; lead];
            audio.extend(encode_text(text));
            audio.extend(vec![0i16; 500]);
            assert_eq!(
                decode_text(&audio, SAMPLE_RATE).as_deref(),
                Some(text),
                "lead {lead}"
            );
        }
        let mut noisy = encode_text("noisy");
        for (i, s) in noisy.iter_mut().enumerate() {
            *s = s.saturating_add(((i * 7919) % 601) as i16 - 300);
        }
        assert_eq!(decode_text(&noisy, SAMPLE_RATE).as_deref(), Some("noisy"));
    }

    #[test]
    fn survives_decimation_to_8k() {
        let audio = encode_text("Call me at 5");
        let down: Vec<i16> = audio
            .chunks(3)
            .map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / c.len() as i32) as i16)
            .collect();
        assert_eq!(decode_text(&down, 8_000).as_deref(), Some("Call me at 5"));
    }

    #[test]
    fn cut_or_foreign_audio_is_not_decoded() {
        let audio = encode_text("cut here");
        assert_eq!(decode_text(&audio[..audio.len() - 720], SAMPLE_RATE), None);
        let speech = synthesize("Hello there, how are you?", "alloy", SAMPLE_RATE);
        assert_eq!(decode_text(&speech.samples, SAMPLE_RATE), None);
    }

    #[test]
    fn synthesis_is_deterministic_and_paced() {
        let a = synthesize("Hello! I'm a simulated assistant.", "alloy", SAMPLE_RATE);
        let b = synthesize("Hello! I'm a simulated assistant.", "alloy", SAMPLE_RATE);
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.words.len(), 5);
        assert_eq!(a.words[0], (0.0, "Hello!".to_string()));
        let secs = a.samples.len() as f64 / f64::from(SAMPLE_RATE);
        assert!((2.0..3.5).contains(&secs), "{secs}");
        assert!(a.samples.iter().any(|&s| s.unsigned_abs() > 3000));
        let c = synthesize("Hello! I'm a simulated assistant.", "ash", 8_000);
        assert_ne!(c.samples.len(), a.samples.len());
    }
}
