//! G.711 μ-law and A-law (ITU-T G.711), the 8 kHz telephony codecs, and a [`Transcoder`]
//! between a phone line and the model's 24 kHz PCM16.
//!
//! Encoding follows the ITU-T G.711 reference (the classic Sun Microsystems `g711.c`, also used
//! by Python's `audioop` and SoX): 16-bit linear in, 8-bit code out, with μ-law clipping at
//! ±32124 and A-law at ±32256. Decoding is a lookup in a 256-entry `const` table.
//!
//! ```
//! use realtime_agents::audio::g711;
//! assert_eq!(g711::ulaw_encode_sample(0), 0xFF);
//! assert_eq!(g711::alaw_encode_sample(0), 0xD5);
//! assert_eq!(g711::ulaw_decode_sample(0x80), 32124);
//! assert_eq!(g711::alaw_decode_sample(0xAA), 32256);
//! ```

use std::time::Duration;

use super::resample::StreamResampler;
use super::{AudioError, AudioFormat, pcm};

/// The telephony sample rate of G.711.
pub const G711_RATE: u32 = 8_000;

/// The model's PCM16 sample rate.
const MODEL_RATE: u32 = 24_000;

/// Encodes one 16-bit linear sample as μ-law.
///
/// ```
/// assert_eq!(realtime_agents::audio::g711::ulaw_encode_sample(i16::MAX), 0x80);
/// assert_eq!(realtime_agents::audio::g711::ulaw_encode_sample(i16::MIN), 0x00);
/// ```
#[inline]
pub const fn ulaw_encode_sample(sample: i16) -> u8 {
    const CLIP: i32 = 8159;
    const BIAS: i32 = 0x84 >> 2;
    // 14-bit magnitude plus sign; the sign selects the final bit inversion.
    let mut v = (sample as i32) >> 2;
    let mask: u8 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    if v > CLIP {
        v = CLIP;
    }
    v += BIAS;
    // Segment = position of the highest set bit above bit 5 (v is in 33..=8192).
    let bits = 32 - (v as u32).leading_zeros();
    let seg = bits.saturating_sub(6);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let code = ((seg << 4) as i32 | ((v >> (seg + 1)) & 0xF)) as u8;
    code ^ mask
}

/// Encodes one 16-bit linear sample as A-law.
///
/// ```
/// assert_eq!(realtime_agents::audio::g711::alaw_encode_sample(i16::MAX), 0xAA);
/// assert_eq!(realtime_agents::audio::g711::alaw_encode_sample(i16::MIN), 0x2A);
/// ```
#[inline]
pub const fn alaw_encode_sample(sample: i16) -> u8 {
    // 13-bit magnitude; negative values use one's complement magnitude per G.711.
    let mut v = (sample as i32) >> 3;
    let mask: u8 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let bits = 32 - (v as u32).leading_zeros();
    let seg = bits.saturating_sub(5);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let quant = if seg < 2 {
        (v >> 1) & 0xF
    } else {
        (v >> seg) & 0xF
    };
    (((seg << 4) as i32 | quant) as u8) ^ mask
}

const fn ulaw_decode_calc(code: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !code;
    let t = ((((u & 0x0F) as i32) << 3) + BIAS) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

const fn alaw_decode_calc(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_decode_calc(i as u8)
        } else {
            ulaw_decode_calc(i as u8)
        };
        i += 1;
    }
    table
}

/// μ-law code → 16-bit linear sample.
pub const ULAW_DECODE_TABLE: [i16; 256] = build_table(false);

/// A-law code → 16-bit linear sample.
pub const ALAW_DECODE_TABLE: [i16; 256] = build_table(true);

/// Decodes one μ-law code.
///
/// ```
/// assert_eq!(realtime_agents::audio::g711::ulaw_decode_sample(0xFF), 0);
/// ```
#[inline]
pub const fn ulaw_decode_sample(code: u8) -> i16 {
    ULAW_DECODE_TABLE[code as usize]
}

/// Decodes one A-law code.
///
/// ```
/// assert_eq!(realtime_agents::audio::g711::alaw_decode_sample(0xD5), 8);
/// ```
#[inline]
pub const fn alaw_decode_sample(code: u8) -> i16 {
    ALAW_DECODE_TABLE[code as usize]
}

/// Encodes `samples` as μ-law into `out`; returns the number of samples encoded
/// (the shorter of the two lengths).
///
/// ```
/// let mut out = [0u8; 2];
/// assert_eq!(realtime_agents::audio::g711::ulaw_encode(&[0, -32768], &mut out), 2);
/// assert_eq!(out, [0xFF, 0x00]);
/// ```
pub fn ulaw_encode(samples: &[i16], out: &mut [u8]) -> usize {
    G711Law::Ulaw.encode_into(samples, out)
}

/// Decodes μ-law `codes` into `out`; returns the number of samples decoded.
///
/// ```
/// let mut out = [0i16; 1];
/// realtime_agents::audio::g711::ulaw_decode(&[0x80], &mut out);
/// assert_eq!(out, [32124]);
/// ```
pub fn ulaw_decode(codes: &[u8], out: &mut [i16]) -> usize {
    G711Law::Ulaw.decode_into(codes, out)
}

/// Encodes `samples` as A-law into `out`; returns the number of samples encoded.
///
/// ```
/// let mut out = [0u8; 1];
/// realtime_agents::audio::g711::alaw_encode(&[0], &mut out);
/// assert_eq!(out, [0xD5]);
/// ```
pub fn alaw_encode(samples: &[i16], out: &mut [u8]) -> usize {
    G711Law::Alaw.encode_into(samples, out)
}

/// Decodes A-law `codes` into `out`; returns the number of samples decoded.
///
/// ```
/// let mut out = [0i16; 1];
/// realtime_agents::audio::g711::alaw_decode(&[0x2A], &mut out);
/// assert_eq!(out, [-32256]);
/// ```
pub fn alaw_decode(codes: &[u8], out: &mut [i16]) -> usize {
    G711Law::Alaw.decode_into(codes, out)
}

/// One of the two G.711 companding laws.
///
/// ```
/// use realtime_agents::audio::{AudioFormat, g711::G711Law};
/// let law = G711Law::from_format(AudioFormat::G711_ALAW).unwrap();
/// let codes = law.encode_vec(&[0, 1000, -1000]);
/// let back = law.decode_vec(&codes);
/// assert!(back.iter().zip([0, 1000, -1000]).all(|(a, b)| (a - b).abs() <= 16));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// μ-law (PCMU): North America, Japan.
    Ulaw,
    /// A-law (PCMA): Europe and most of the rest of the world.
    Alaw,
}

impl G711Law {
    /// The law of a G.711 [`AudioFormat`]; `None` for PCM.
    pub fn from_format(format: AudioFormat) -> Option<Self> {
        match format {
            AudioFormat::G711Ulaw => Some(Self::Ulaw),
            AudioFormat::G711Alaw => Some(Self::Alaw),
            AudioFormat::Pcm16 { .. } => None,
        }
    }

    /// The matching wire format.
    pub fn format(self) -> AudioFormat {
        match self {
            Self::Ulaw => AudioFormat::G711Ulaw,
            Self::Alaw => AudioFormat::G711Alaw,
        }
    }

    /// The code for digital silence (`0xFF` μ-law, `0xD5` A-law).
    pub fn silence(self) -> u8 {
        self.encode_sample(0)
    }

    /// Encodes one sample.
    #[inline]
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Self::Ulaw => ulaw_encode_sample(sample),
            Self::Alaw => alaw_encode_sample(sample),
        }
    }

    /// Decodes one code.
    #[inline]
    pub fn decode_sample(self, code: u8) -> i16 {
        self.table()[code as usize]
    }

    fn table(self) -> &'static [i16; 256] {
        match self {
            Self::Ulaw => &ULAW_DECODE_TABLE,
            Self::Alaw => &ALAW_DECODE_TABLE,
        }
    }

    /// Encodes `samples` into `out`; returns the number encoded.
    pub fn encode_into(self, samples: &[i16], out: &mut [u8]) -> usize {
        let n = samples.len().min(out.len());
        // One match per call, not per sample.
        match self {
            Self::Ulaw => {
                for (s, o) in samples.iter().zip(out.iter_mut()) {
                    *o = ulaw_encode_sample(*s);
                }
            }
            Self::Alaw => {
                for (s, o) in samples.iter().zip(out.iter_mut()) {
                    *o = alaw_encode_sample(*s);
                }
            }
        }
        n
    }

    /// Decodes `codes` into `out`; returns the number decoded.
    pub fn decode_into(self, codes: &[u8], out: &mut [i16]) -> usize {
        let table = self.table();
        let n = codes.len().min(out.len());
        for (c, o) in codes.iter().zip(out.iter_mut()) {
            *o = table[*c as usize];
        }
        n
    }

    /// Encodes `f32` samples (`[-1, 1]`, clamped) into `out`; returns the number encoded.
    pub fn encode_f32_into(self, samples: &[f32], out: &mut [u8]) -> usize {
        let n = samples.len().min(out.len());
        for (s, o) in samples.iter().zip(out.iter_mut()) {
            *o = self.encode_sample(pcm::f32_to_i16(*s));
        }
        n
    }

    /// Decodes `codes` into `f32` samples in `out`; returns the number decoded.
    pub fn decode_f32_into(self, codes: &[u8], out: &mut [f32]) -> usize {
        let table = self.table();
        let n = codes.len().min(out.len());
        for (c, o) in codes.iter().zip(out.iter_mut()) {
            *o = pcm::i16_to_f32(table[*c as usize]);
        }
        n
    }

    /// Encodes into a new `Vec`.
    pub fn encode_vec(self, samples: &[i16]) -> Vec<u8> {
        let mut out = vec![0; samples.len()];
        self.encode_into(samples, &mut out);
        out
    }

    /// Decodes into a new `Vec`.
    pub fn decode_vec(self, codes: &[u8]) -> Vec<i16> {
        let mut out = vec![0; codes.len()];
        self.decode_into(codes, &mut out);
        out
    }
}

/// Converts between a G.711 phone line (8 kHz) and the model's PCM16 (24 kHz, LE, mono).
///
/// Two independent directions, each with its own [`StreamResampler`] (band-limited FFT
/// resampling, so 24 kHz → 8 kHz does not alias):
///
/// * [`to_model`](Self::to_model): decode G.711, upsample 8 → 24 kHz, emit PCM16 bytes for
///   `input_audio_buffer.append`;
/// * [`to_phone`](Self::to_phone): PCM16 from the model, downsample 24 → 8 kHz, encode G.711.
///
/// Call [`reset_to_phone`](Self::reset_to_phone) on barge-in (drops buffered model audio) and
/// [`flush_to_phone`](Self::flush_to_phone) when a response's audio is complete (pushes out the
/// last few ms held by the resampler). Scratch buffers are reused between calls.
///
/// ```
/// use realtime_agents::audio::g711::{G711Law, Transcoder};
///
/// let mut tc = Transcoder::new(G711Law::Ulaw)?;
/// let mut pcm = Vec::new();
/// tc.to_model(&[0xFF; 160], &mut pcm); // 20 ms from the phone
/// tc.flush_to_model(&mut pcm);
/// assert_eq!(pcm.len(), 960); // 20 ms at 24 kHz, 2 bytes a sample
///
/// let mut phone = Vec::new();
/// tc.to_phone(&pcm, &mut phone);
/// tc.flush_to_phone(&mut phone);
/// assert_eq!(phone.len(), 160);
/// # Ok::<(), realtime_agents::audio::AudioError>(())
/// ```
#[derive(Debug)]
pub struct Transcoder {
    law: G711Law,
    up: StreamResampler,
    down: StreamResampler,
    /// Decoded input of the current call.
    scratch_in: Vec<f32>,
    /// Resampled output of the current call.
    scratch_out: Vec<f32>,
    /// An odd trailing PCM16 byte carried to the next `to_phone` call.
    carry: Option<u8>,
}

impl Transcoder {
    /// A transcoder for `law` at 8 kHz ↔ 24 kHz.
    pub fn new(law: G711Law) -> Result<Self, AudioError> {
        Ok(Self {
            law,
            up: StreamResampler::new(G711_RATE, MODEL_RATE)?,
            down: StreamResampler::new(MODEL_RATE, G711_RATE)?,
            scratch_in: Vec::with_capacity(MODEL_RATE as usize / 10),
            scratch_out: Vec::with_capacity(MODEL_RATE as usize / 10),
            carry: None,
        })
    }

    /// The companding law.
    pub fn law(&self) -> G711Law {
        self.law
    }

    /// Worst-case delay of the phone → model direction (chunking plus filter).
    pub fn latency_to_model(&self) -> Duration {
        self.up.latency()
    }

    /// Worst-case delay of the model → phone direction (chunking plus filter).
    pub fn latency_to_phone(&self) -> Duration {
        self.down.latency()
    }

    /// Phone → model: decodes G.711 `codes`, upsamples to 24 kHz and appends PCM16 LE bytes to
    /// `out`. Returns the number of bytes appended.
    pub fn to_model(&mut self, codes: &[u8], out: &mut Vec<u8>) -> usize {
        self.scratch_in.clear();
        let table = self.law.table();
        self.scratch_in
            .extend(codes.iter().map(|c| pcm::i16_to_f32(table[*c as usize])));
        self.scratch_out.clear();
        self.up.push(&self.scratch_in, &mut self.scratch_out);
        let before = out.len();
        pcm::extend_pcm16_from_f32(out, &self.scratch_out);
        out.len() - before
    }

    /// Phone → model end of stream: appends the audio held by the resampler.
    pub fn flush_to_model(&mut self, out: &mut Vec<u8>) -> usize {
        self.scratch_out.clear();
        self.up.flush(&mut self.scratch_out);
        let before = out.len();
        pcm::extend_pcm16_from_f32(out, &self.scratch_out);
        out.len() - before
    }

    /// Model → phone: takes PCM16 LE bytes at 24 kHz, downsamples to 8 kHz and appends G.711
    /// codes to `out`. Returns the number of codes appended.
    pub fn to_phone(&mut self, pcm16: &[u8], out: &mut Vec<u8>) -> usize {
        self.scratch_in.clear();
        let mut bytes = pcm16;
        if let (Some(lo), Some((&hi, rest))) = (self.carry, bytes.split_first()) {
            self.scratch_in
                .push(pcm::i16_to_f32(i16::from_le_bytes([lo, hi])));
            self.carry = None;
            bytes = rest;
        }
        pcm::extend_f32_from_pcm16(&mut self.scratch_in, bytes);
        if bytes.len() % 2 == 1 {
            self.carry = bytes.last().copied();
        }
        self.scratch_out.clear();
        self.down.push(&self.scratch_in, &mut self.scratch_out);
        self.encode_out(out)
    }

    /// Model → phone end of stream: appends the codes held by the resampler.
    pub fn flush_to_phone(&mut self, out: &mut Vec<u8>) -> usize {
        self.carry = None;
        self.scratch_out.clear();
        self.down.flush(&mut self.scratch_out);
        self.encode_out(out)
    }

    /// Barge-in: drops model audio buffered for the phone.
    pub fn reset_to_phone(&mut self) {
        self.carry = None;
        self.down.reset();
    }

    /// Drops phone audio buffered for the model.
    pub fn reset_to_model(&mut self) {
        self.up.reset();
    }

    fn encode_out(&mut self, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        out.resize(before + self.scratch_out.len(), 0);
        self.law
            .encode_f32_into(&self.scratch_out, &mut out[before..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a, to compare whole code tables against a reference without embedding them.
    fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
        bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    // Reference hashes computed with CPython's `audioop.lin2ulaw/lin2alaw/ulaw2lin/alaw2lin`
    // (the same Sun reference code) over every i16 and every code.
    #[test]
    fn matches_reference_implementation_on_every_value() {
        let all = i16::MIN..=i16::MAX;
        assert_eq!(
            fnv1a(all.clone().map(ulaw_encode_sample)),
            0xd5ee_23f7_d0ff_ae91
        );
        assert_eq!(fnv1a(all.map(alaw_encode_sample)), 0xf030_666e_b780_cf25);
        let le = |t: &[i16; 256]| t.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<_>>();
        assert_eq!(fnv1a(le(&ULAW_DECODE_TABLE)), 0xb91e_65d6_8481_a1a8);
        assert_eq!(fnv1a(le(&ALAW_DECODE_TABLE)), 0x693a_40ca_62a3_d2a5);
    }

    #[test]
    fn spot_vectors() {
        // (linear, μ-law, decoded μ, A-law, decoded A) from audioop.
        for (x, u, du, a, da) in [
            (0i16, 0xFFu8, 0i16, 0xD5u8, 8i16),
            (-1, 0x7E, -8, 0x55, -8),
            (100, 0xF2, 104, 0xD3, 104),
            (-1000, 0x4E, -988, 0x7A, -1008),
            (4000, 0xAF, 4092, 0x9A, 4032),
            (-12345, 0x17, -12412, 0x3D, -12544),
            (30000, 0x82, 30076, 0xA8, 30208),
            (32767, 0x80, 32124, 0xAA, 32256),
            (-32768, 0x00, -32124, 0x2A, -32256),
        ] {
            assert_eq!(ulaw_encode_sample(x), u, "μ-law {x}");
            assert_eq!(ulaw_decode_sample(u), du, "μ-law {u:#x}");
            assert_eq!(alaw_encode_sample(x), a, "A-law {x}");
            assert_eq!(alaw_decode_sample(a), da, "A-law {a:#x}");
        }
    }

    #[test]
    fn round_trip_error_is_half_a_quantisation_step() {
        for law in [G711Law::Ulaw, G711Law::Alaw] {
            let clip: i32 = if law == G711Law::Ulaw { 32124 } else { 32256 };
            let mut prev = i16::MIN;
            for x in i16::MIN..=i16::MAX {
                let y = law.decode_sample(law.encode_sample(x));
                // Companding is monotonic.
                assert!(y >= prev, "{law:?} not monotonic at {x}");
                prev = y;
                let (x, y) = (i32::from(x), i32::from(y));
                if x.abs() > clip {
                    assert_eq!(y, clip * x.signum(), "{law:?} clip at {x}");
                    continue;
                }
                // Quantisation steps double per segment (the code's bits 4..=6): 8..=1024
                // for μ-law, 16..=1024 for A-law. Error ≤ half a step, plus the sign/bias
                // asymmetry around zero.
                let code = law.encode_sample(x as i16);
                let step = match law {
                    G711Law::Ulaw => 8 << ((!code & 0x70) >> 4),
                    G711Law::Alaw => 16 << (((code ^ 0x55) & 0x70) >> 4).saturating_sub(1),
                };
                assert!(
                    (x - y).abs() <= step / 2 + 4,
                    "{law:?} {x} -> {y}, step {step}"
                );
            }
        }
    }

    #[test]
    fn slices_and_vecs_agree() {
        let samples: Vec<i16> = (0..160)
            .map(|i| ((i * 401) % 65536 - 32768) as i16)
            .collect();
        for law in [G711Law::Ulaw, G711Law::Alaw] {
            let codes = law.encode_vec(&samples);
            let mut short = [0u8; 10];
            assert_eq!(law.encode_into(&samples, &mut short), 10);
            assert_eq!(short, codes[..10]);
            let mut f = vec![0f32; 160];
            law.decode_f32_into(&codes, &mut f);
            let mut again = vec![0u8; 160];
            law.encode_f32_into(&f, &mut again);
            assert_eq!(again, codes, "{law:?} decode/encode is idempotent");
        }
        assert_eq!(G711Law::Ulaw.silence(), 0xFF);
        assert_eq!(G711Law::Alaw.silence(), 0xD5);
    }
}
