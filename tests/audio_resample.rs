//! Streaming resampling: chunking never changes the result, nothing is lost, and downsampling
//! is band-limited.

use std::f32::consts::TAU;

use realtime_agents::audio::{ResampleOptions, ResampleQuality, StreamResampler};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

fn sine(freq: f32, rate: u32, frames: usize, amp: f32) -> Vec<f32> {
    (0..frames)
        .map(|i| amp * (TAU * freq * i as f32 / rate as f32).sin())
        .collect()
}

/// Deterministic chunk sizes in 1..=2000.
fn random_chunks(total: usize, seed: u64) -> Vec<usize> {
    let mut x = seed;
    let mut left = total;
    let mut out = Vec::new();
    while left > 0 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = ((x >> 33) as usize % 2000 + 1).min(left);
        out.push(n);
        left -= n;
    }
    out
}

fn resample_chunked(rs: &mut StreamResampler, input: &[f32], sizes: &[usize]) -> Vec<f32> {
    let mut out = Vec::new();
    let mut pos = 0;
    for &n in sizes {
        let before = out.len();
        let got = rs.push(&input[pos..pos + n], &mut out);
        assert_eq!(got, out.len() - before, "push reports what it appended");
        pos += n;
    }
    rs.flush(&mut out);
    out
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt()
}

/// Estimated frequency from zero crossings.
fn frequency(x: &[f32], rate: u32) -> f32 {
    let crossings = x
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    crossings as f32 / 2.0 / (x.len() as f32 / rate as f32)
}

#[test]
fn chunking_does_not_change_the_output() {
    for in_rate in [48_000, 44_100] {
        let input = sine(1_000.0, in_rate, in_rate as usize * 2, 0.5); // 2 s
        let mut whole = StreamResampler::new(in_rate, 24_000).unwrap();
        let reference = resample_chunked(&mut whole, &input, &[input.len()]);
        let expected_len = (input.len() as u64 * 24_000).div_ceil(u64::from(in_rate)) as usize;
        assert_eq!(
            reference.len(),
            expected_len,
            "{in_rate}: no frame lost or added"
        );

        for seed in 1..=5 {
            let mut rs = StreamResampler::new(in_rate, 24_000).unwrap();
            let out = resample_chunked(&mut rs, &input, &random_chunks(input.len(), seed));
            assert_eq!(out, reference, "{in_rate} Hz, seed {seed}");
        }

        // Steady state (away from the edges): still a 1 kHz tone at the same level.
        let mid = &reference[2_400..reference.len() - 2_400];
        let f = frequency(mid, 24_000);
        assert!((f - 1_000.0).abs() < 2.0, "{in_rate}: {f} Hz");
        let level = rms(mid) / (0.5 / 2f32.sqrt());
        assert!((level - 1.0).abs() < 0.01, "{in_rate}: level {level}");
    }
}

#[test]
fn matches_rubatos_own_whole_clip_processing() {
    // rubato's `process_all` trims the delay and pads the tail itself; the streaming wrapper
    // must agree sample for sample.
    for (in_rate, out_rate) in [
        (48_000, 24_000),
        (44_100, 24_000),
        (24_000, 8_000),
        (8_000, 24_000),
    ] {
        let input = sine(440.0, in_rate, 12_345, 0.7);
        let mut rs = StreamResampler::new(in_rate, out_rate).unwrap();
        let chunk = rs.chunk_frames();
        let mut fft = Fft::<f32>::new(
            in_rate as usize,
            out_rate as usize,
            chunk,
            1,
            FixedSync::Input,
        )
        .unwrap();
        let adapter = InterleavedSlice::new(&input, 1, input.len()).unwrap();
        let whole = fft
            .process_all(&adapter, input.len(), None)
            .unwrap()
            .take_data();

        let out = resample_chunked(&mut rs, &input, &random_chunks(input.len(), 42));
        assert_eq!(out.len(), whole.len(), "{in_rate}->{out_rate}");
        let max_diff = out
            .iter()
            .zip(&whole)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            max_diff < 1e-6,
            "{in_rate}->{out_rate}: differs by {max_diff}"
        );
    }
}

fn gain_db(in_rate: u32, out_rate: u32, freq: f32, quality: ResampleQuality) -> f32 {
    let input = sine(freq, in_rate, in_rate as usize, 0.5);
    let mut rs = StreamResampler::with_options(
        in_rate,
        out_rate,
        ResampleOptions::default().quality(quality),
    )
    .unwrap();
    let out = resample_chunked(&mut rs, &input, &random_chunks(input.len(), 3));
    let edge = out_rate as usize / 10;
    let mid = &out[edge..out.len() - edge];
    20.0 * (rms(mid) / rms(&input)).log10()
}

#[test]
fn downsampling_to_8k_removes_what_would_alias() {
    // Above the 4 kHz Nyquist of the phone line: must not fold back into the voice band.
    for freq in [4_400.0, 5_000.0, 6_000.0, 9_000.0] {
        for (q, floor) in [
            (ResampleQuality::Fft, -60.0),
            (ResampleQuality::Sinc, -50.0),
        ] {
            let db = gain_db(24_000, 8_000, freq, q);
            println!("{q:?} {freq} Hz: {db:.1} dB");
            assert!(db < floor, "{q:?}: {freq} Hz only {db:.1} dB down");
        }
    }
    // The telephone voice band (300–3400 Hz) passes.
    for freq in [300.0, 1_000.0, 3_000.0, 3_400.0] {
        let db = gain_db(24_000, 8_000, freq, ResampleQuality::Fft);
        println!("Fft {freq} Hz: {db:.2} dB");
        assert!(db.abs() < 0.1, "{freq} Hz: {db:.2} dB");
    }
    // Documented limitation: polynomial interpolation has no anti-aliasing filter.
    assert!(gain_db(24_000, 8_000, 6_000.0, ResampleQuality::Fast) > -6.0);
}

#[test]
fn reset_starts_a_fresh_stream() {
    let input = sine(700.0, 48_000, 5_000, 0.5);
    let mut fresh = StreamResampler::new(48_000, 24_000).unwrap();
    let expected = resample_chunked(&mut fresh, &input, &[input.len()]);

    let mut rs = StreamResampler::new(48_000, 24_000).unwrap();
    let mut junk = Vec::new();
    rs.push(&sine(3_000.0, 48_000, 1_234, 0.9), &mut junk); // interrupted utterance
    rs.reset();
    assert_eq!(rs.pending_frames(), 0);
    assert_eq!(
        resample_chunked(&mut rs, &input, &random_chunks(input.len(), 9)),
        expected
    );
}

#[test]
fn interleaved_stereo_keeps_channels_apart() {
    let left = sine(500.0, 44_100, 4_410, 0.5);
    let right = sine(1_500.0, 44_100, 4_410, 0.25);
    let stereo: Vec<f32> = left
        .iter()
        .zip(&right)
        .flat_map(|(l, r)| [*l, *r])
        .collect();
    let mut rs =
        StreamResampler::with_options(44_100, 24_000, ResampleOptions::default().channels(2))
            .unwrap();
    let mut out = Vec::new();
    for chunk in stereo.chunks(333) {
        // Odd chunk lengths split frames: the half frame waits for the next push.
        rs.push(chunk, &mut out);
    }
    rs.flush(&mut out);
    assert_eq!(out.len(), 2 * 2_400);
    let l: Vec<f32> = out.iter().step_by(2).copied().collect();
    let r: Vec<f32> = out.iter().skip(1).step_by(2).copied().collect();
    assert!((frequency(&l[240..2_160], 24_000) - 500.0).abs() < 10.0);
    assert!((frequency(&r[240..2_160], 24_000) - 1_500.0).abs() < 10.0);
}

#[test]
fn every_quality_is_chunking_invariant_and_exact_length() {
    for q in [
        ResampleQuality::Fft,
        ResampleQuality::Sinc,
        ResampleQuality::Fast,
    ] {
        for (i, o) in [(48_000, 24_000), (24_000, 44_100), (24_000, 8_000)] {
            let input = sine(440.0, i, 9_999, 0.5);
            let opts = ResampleOptions::default().quality(q);
            let mut a = StreamResampler::with_options(i, o, opts).unwrap();
            let mut b = StreamResampler::with_options(i, o, opts).unwrap();
            let whole = resample_chunked(&mut a, &input, &[input.len()]);
            let chunked = resample_chunked(&mut b, &input, &random_chunks(input.len(), 77));
            assert_eq!(
                whole.len(),
                (9_999u64 * u64::from(o)).div_ceil(u64::from(i)) as usize
            );
            assert_eq!(whole, chunked, "{q:?} {i}->{o}");
        }
    }
}
