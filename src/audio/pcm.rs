//! PCM16 little-endian bytes, `i16` and `f32` samples, and channel downmixing.
//!
//! The Realtime API speaks signed 16-bit little-endian mono PCM (`audio/pcm`, 24 kHz); audio
//! devices and resamplers prefer `f32` in `[-1.0, 1.0]`. The `*_into` functions write into a
//! caller-provided buffer and never allocate; they convert as many samples as fit in both the
//! input and the output and return that count. The `*_vec` functions are allocating
//! conveniences.
//!
//! Conversions use the scale `i16::MIN ..= i16::MAX` ↔ `-1.0 ..= 32767/32768`, so every `i16`
//! survives an `i16 → f32 → i16` round trip exactly; `f32 → i16` rounds and clamps.
//!
//! ```
//! use realtime_agents::audio::pcm;
//! let bytes = pcm::i16_to_pcm16_vec(&[0, 1000, -32768]);
//! assert_eq!(bytes, [0x00, 0x00, 0xE8, 0x03, 0x00, 0x80]);
//! let f = pcm::pcm16_to_f32_vec(&bytes);
//! assert_eq!(f[2], -1.0);
//! assert_eq!(pcm::f32_to_pcm16_vec(&f), bytes);
//! ```

/// Converts one `i16` sample to `f32` in `[-1.0, 1.0)`.
///
/// ```
/// assert_eq!(realtime_agents::audio::pcm::i16_to_f32(-32768), -1.0);
/// ```
#[inline]
pub fn i16_to_f32(sample: i16) -> f32 {
    f32::from(sample) / 32768.0
}

/// Converts one `f32` sample to `i16`, rounding to nearest and clamping out-of-range values
/// (NaN becomes 0).
///
/// ```
/// use realtime_agents::audio::pcm::f32_to_i16;
/// assert_eq!(f32_to_i16(1.5), i16::MAX);
/// assert_eq!(f32_to_i16(-1.0), i16::MIN);
/// assert_eq!(f32_to_i16(0.5), 16384);
/// ```
#[inline]
pub fn f32_to_i16(sample: f32) -> i16 {
    // Round half away from zero by hand: `f32::round` is a libm call on baseline x86-64 and
    // dominated the cost. `as` truncates, saturates and maps NaN to 0: exactly the clamp we
    // want.
    let v = sample * 32768.0;
    (if v >= 0.0 { v + 0.5 } else { v - 0.5 }) as i16
}

/// Decodes PCM16 LE `bytes` into `out`; returns the number of samples written.
///
/// A trailing odd byte is ignored.
///
/// ```
/// let mut out = [0i16; 2];
/// let n = realtime_agents::audio::pcm::pcm16_to_i16_into(&[0x01, 0x00, 0xFF, 0xFF], &mut out);
/// assert_eq!((n, out), (2, [1, -1]));
/// ```
pub fn pcm16_to_i16_into(bytes: &[u8], out: &mut [i16]) -> usize {
    let mut n = 0;
    for (pair, o) in bytes.chunks_exact(2).zip(out.iter_mut()) {
        *o = i16::from_le_bytes([pair[0], pair[1]]);
        n += 1;
    }
    n
}

/// Decodes PCM16 LE `bytes` into `f32` samples in `out`; returns the number of samples written.
///
/// ```
/// let mut out = [0f32; 1];
/// assert_eq!(realtime_agents::audio::pcm::pcm16_to_f32_into(&[0x00, 0x40], &mut out), 1);
/// assert_eq!(out[0], 0.5);
/// ```
pub fn pcm16_to_f32_into(bytes: &[u8], out: &mut [f32]) -> usize {
    let mut n = 0;
    for (pair, o) in bytes.chunks_exact(2).zip(out.iter_mut()) {
        *o = i16_to_f32(i16::from_le_bytes([pair[0], pair[1]]));
        n += 1;
    }
    n
}

/// Encodes `samples` as PCM16 LE into `out`; returns the number of samples written
/// (`2 ×` that many bytes).
///
/// ```
/// let mut out = [0u8; 4];
/// assert_eq!(realtime_agents::audio::pcm::i16_to_pcm16_into(&[1, -2], &mut out), 2);
/// assert_eq!(out, [0x01, 0x00, 0xFE, 0xFF]);
/// ```
pub fn i16_to_pcm16_into(samples: &[i16], out: &mut [u8]) -> usize {
    let mut n = 0;
    for (s, o) in samples.iter().zip(out.chunks_exact_mut(2)) {
        o.copy_from_slice(&s.to_le_bytes());
        n += 1;
    }
    n
}

/// Encodes `f32` samples as PCM16 LE into `out` (rounding and clamping); returns the number of
/// samples written.
///
/// ```
/// let mut out = [0u8; 2];
/// assert_eq!(realtime_agents::audio::pcm::f32_to_pcm16_into(&[2.0], &mut out), 1);
/// assert_eq!(i16::from_le_bytes(out), i16::MAX);
/// ```
pub fn f32_to_pcm16_into(samples: &[f32], out: &mut [u8]) -> usize {
    let mut n = 0;
    for (s, o) in samples.iter().zip(out.chunks_exact_mut(2)) {
        o.copy_from_slice(&f32_to_i16(*s).to_le_bytes());
        n += 1;
    }
    n
}

/// Converts `i16` samples to `f32` into `out`; returns the number written.
///
/// ```
/// let mut out = [0f32; 1];
/// realtime_agents::audio::pcm::i16_to_f32_into(&[16384], &mut out);
/// assert_eq!(out[0], 0.5);
/// ```
pub fn i16_to_f32_into(samples: &[i16], out: &mut [f32]) -> usize {
    let n = samples.len().min(out.len());
    for (s, o) in samples.iter().zip(out.iter_mut()) {
        *o = i16_to_f32(*s);
    }
    n
}

/// Converts `f32` samples to `i16` into `out` (rounding and clamping); returns the number written.
///
/// ```
/// let mut out = [0i16; 1];
/// realtime_agents::audio::pcm::f32_to_i16_into(&[-2.0], &mut out);
/// assert_eq!(out[0], i16::MIN);
/// ```
pub fn f32_to_i16_into(samples: &[f32], out: &mut [i16]) -> usize {
    let n = samples.len().min(out.len());
    for (s, o) in samples.iter().zip(out.iter_mut()) {
        *o = f32_to_i16(*s);
    }
    n
}

/// Decodes PCM16 LE bytes into a new `Vec<i16>`.
///
/// ```
/// assert_eq!(realtime_agents::audio::pcm::pcm16_to_i16_vec(&[0xFF, 0x7F]), [i16::MAX]);
/// ```
pub fn pcm16_to_i16_vec(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|p| i16::from_le_bytes([p[0], p[1]]))
        .collect()
}

/// Decodes PCM16 LE bytes into a new `Vec<f32>`.
///
/// ```
/// assert_eq!(realtime_agents::audio::pcm::pcm16_to_f32_vec(&[0x00, 0xC0]), [-0.5]);
/// ```
pub fn pcm16_to_f32_vec(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|p| i16_to_f32(i16::from_le_bytes([p[0], p[1]])))
        .collect()
}

/// Encodes `i16` samples as PCM16 LE into a new `Vec<u8>`.
///
/// ```
/// assert_eq!(realtime_agents::audio::pcm::i16_to_pcm16_vec(&[256]), [0x00, 0x01]);
/// ```
pub fn i16_to_pcm16_vec(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    extend_pcm16_from_i16(&mut out, samples);
    out
}

/// Encodes `f32` samples as PCM16 LE into a new `Vec<u8>` (rounding and clamping).
///
/// ```
/// assert_eq!(realtime_agents::audio::pcm::f32_to_pcm16_vec(&[0.0]), [0, 0]);
/// ```
pub fn f32_to_pcm16_vec(samples: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    extend_pcm16_from_f32(&mut out, samples);
    out
}

/// Appends `i16` samples as PCM16 LE to `out` (no allocation once `out` has the capacity).
///
/// ```
/// let mut buf = vec![9u8];
/// realtime_agents::audio::pcm::extend_pcm16_from_i16(&mut buf, &[1]);
/// assert_eq!(buf, [9, 1, 0]);
/// ```
pub fn extend_pcm16_from_i16(out: &mut Vec<u8>, samples: &[i16]) {
    out.reserve(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

/// Appends `f32` samples as PCM16 LE to `out` (rounding and clamping).
///
/// ```
/// let mut buf = Vec::new();
/// realtime_agents::audio::pcm::extend_pcm16_from_f32(&mut buf, &[-1.0]);
/// assert_eq!(buf, [0x00, 0x80]);
/// ```
pub fn extend_pcm16_from_f32(out: &mut Vec<u8>, samples: &[f32]) {
    out.reserve(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&f32_to_i16(*s).to_le_bytes());
    }
}

/// Appends PCM16 LE bytes decoded to `f32` to `out`. A trailing odd byte is ignored.
///
/// ```
/// let mut buf = vec![1.0f32];
/// realtime_agents::audio::pcm::extend_f32_from_pcm16(&mut buf, &[0x00, 0x40]);
/// assert_eq!(buf, [1.0, 0.5]);
/// ```
pub fn extend_f32_from_pcm16(out: &mut Vec<f32>, bytes: &[u8]) {
    out.reserve(bytes.len() / 2);
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|p| i16_to_f32(i16::from_le_bytes([p[0], p[1]]))),
    );
}

/// Averages interleaved `f32` frames of `channels` channels into mono `out`; returns the number
/// of frames written. A trailing partial frame is ignored; `channels == 0` writes nothing.
///
/// ```
/// let stereo = [1.0, 0.0, 0.5, 0.5];
/// let mut mono = [0f32; 2];
/// assert_eq!(realtime_agents::audio::pcm::downmix_f32_into(&stereo, 2, &mut mono), 2);
/// assert_eq!(mono, [0.5, 0.5]);
/// ```
pub fn downmix_f32_into(interleaved: &[f32], channels: usize, out: &mut [f32]) -> usize {
    if channels == 0 {
        return 0;
    }
    if channels == 1 {
        let n = interleaved.len().min(out.len());
        out[..n].copy_from_slice(&interleaved[..n]);
        return n;
    }
    let scale = 1.0 / channels as f32;
    let mut n = 0;
    for (frame, o) in interleaved.chunks_exact(channels).zip(out.iter_mut()) {
        *o = frame.iter().sum::<f32>() * scale;
        n += 1;
    }
    n
}

/// Averages interleaved `i16` frames into mono `out` (rounding to nearest); returns the number
/// of frames written.
///
/// ```
/// let stereo = [100i16, 200, -32768, -32768];
/// let mut mono = [0i16; 2];
/// realtime_agents::audio::pcm::downmix_i16_into(&stereo, 2, &mut mono);
/// assert_eq!(mono, [150, -32768]);
/// ```
pub fn downmix_i16_into(interleaved: &[i16], channels: usize, out: &mut [i16]) -> usize {
    if channels == 0 {
        return 0;
    }
    let ch = channels as i64;
    let mut n = 0;
    for (frame, o) in interleaved.chunks_exact(channels).zip(out.iter_mut()) {
        let sum: i64 = frame.iter().map(|&s| i64::from(s)).sum();
        // Round half away from zero; the mean of i16 values always fits in i16.
        let mean = if sum >= 0 {
            (sum + ch / 2) / ch
        } else {
            (sum - ch / 2) / ch
        };
        *o = mean as i16;
        n += 1;
    }
    n
}

/// Averages interleaved `f32` frames into a new mono `Vec<f32>`.
///
/// ```
/// assert_eq!(realtime_agents::audio::pcm::downmix_f32_vec(&[0.2, 0.4], 2), [0.3]);
/// ```
pub fn downmix_f32_vec(interleaved: &[f32], channels: usize) -> Vec<f32> {
    let mut out = vec![0.0; interleaved.len().checked_div(channels).unwrap_or(0)];
    let n = downmix_f32_into(interleaved, channels, &mut out);
    out.truncate(n);
    out
}

/// Averages interleaved `i16` frames into a new mono `Vec<i16>`.
///
/// ```
/// assert_eq!(realtime_agents::audio::pcm::downmix_i16_vec(&[1, 3, 5, 7], 2), [2, 6]);
/// ```
pub fn downmix_i16_vec(interleaved: &[i16], channels: usize) -> Vec<i16> {
    let mut out = vec![0; interleaved.len().checked_div(channels).unwrap_or(0)];
    let n = downmix_i16_into(interleaved, channels, &mut out);
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_i16_survives_f32_round_trip() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(f32_to_i16(i16_to_f32(s)), s);
        }
    }

    #[test]
    fn f32_clamps_and_rounds() {
        assert_eq!(f32_to_i16(f32::NAN), 0);
        assert_eq!(f32_to_i16(f32::INFINITY), i16::MAX);
        assert_eq!(f32_to_i16(f32::NEG_INFINITY), i16::MIN);
        assert_eq!(f32_to_i16(1.0), i16::MAX);
        assert_eq!(f32_to_i16(0.4 / 32768.0), 0);
        assert_eq!(f32_to_i16(0.6 / 32768.0), 1);
    }

    #[test]
    fn byte_round_trip_and_partial_buffers() {
        let samples: Vec<i16> = (-300..300).map(|i| (i * 109) as i16).collect();
        let bytes = i16_to_pcm16_vec(&samples);
        assert_eq!(pcm16_to_i16_vec(&bytes), samples);
        assert_eq!(f32_to_pcm16_vec(&pcm16_to_f32_vec(&bytes)), bytes);

        // Output shorter than input: convert what fits.
        let mut short = [0i16; 3];
        assert_eq!(pcm16_to_i16_into(&bytes, &mut short), 3);
        assert_eq!(short, samples[..3]);
        // Odd byte count: the dangling byte is ignored.
        assert_eq!(pcm16_to_i16_vec(&bytes[..5]).len(), 2);
        let mut out = [0u8; 5];
        assert_eq!(i16_to_pcm16_into(&samples, &mut out), 2);
    }

    #[test]
    fn downmix_handles_odd_shapes() {
        assert!(downmix_f32_vec(&[1.0, 2.0], 0).is_empty());
        assert_eq!(downmix_f32_vec(&[1.0, 2.0, 3.0], 2), [1.5]);
        assert_eq!(downmix_i16_vec(&[-3, -4], 2), [-4]);
        assert_eq!(
            downmix_i16_vec(&[i16::MAX, i16::MAX, i16::MAX], 3),
            [i16::MAX]
        );
        assert_eq!(downmix_f32_vec(&[0.25, 0.5], 1), [0.25, 0.5]);
    }
}
