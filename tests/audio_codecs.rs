//! Formats, PCM conversions, G.711 and the telephony transcoder, through the public API.

use std::f32::consts::TAU;

use realtime_agents::audio::g711::{self, G711Law, Transcoder};
use realtime_agents::audio::{AudioFormat, pcm};

fn sine(freq: f32, rate: u32, frames: usize, amp: f32) -> Vec<f32> {
    (0..frames)
        .map(|i| amp * (TAU * freq * i as f32 / rate as f32).sin())
        .collect()
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt()
}

/// Level of `freq` in `x` (Goertzel), as the amplitude of a sine.
fn tone_level(x: &[f32], rate: u32, freq: f32) -> f32 {
    let w = TAU * freq / rate as f32;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let coeff = 2.0 * f64::from(w.cos());
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    (2.0 * power.sqrt() / x.len() as f64) as f32
}

#[test]
fn session_format_drives_the_byte_maths() {
    // 20 ms packets: 960 bytes of PCM16 at 24 kHz, 160 bytes of G.711.
    for (format, bytes) in [
        (AudioFormat::PCM16_24K, 960),
        (AudioFormat::G711_ULAW, 160),
        (AudioFormat::G711_ALAW, 160),
        (AudioFormat::Pcm16 { rate: 16_000 }, 640),
    ] {
        assert_eq!(format.ms_to_bytes(20), bytes, "{format:?}");
        assert_eq!(format.bytes_to_ms(bytes), 20.0, "{format:?}");
    }
    assert_eq!(
        G711Law::from_format(AudioFormat::G711_ULAW),
        Some(G711Law::Ulaw)
    );
    assert_eq!(G711Law::Alaw.format(), AudioFormat::G711_ALAW);
    assert_eq!(G711Law::from_format(AudioFormat::PCM16_24K), None);
}

#[test]
fn pcm16_bytes_round_trip_through_f32() {
    let samples: Vec<i16> = (i16::MIN..=i16::MAX).step_by(7).collect();
    let bytes = pcm::i16_to_pcm16_vec(&samples);
    let mut f = vec![0.0; samples.len()];
    assert_eq!(pcm::pcm16_to_f32_into(&bytes, &mut f), samples.len());
    let mut back = vec![0u8; bytes.len()];
    assert_eq!(pcm::f32_to_pcm16_into(&f, &mut back), samples.len());
    assert_eq!(back, bytes);
    // Out-of-range floats clamp instead of wrapping.
    assert_eq!(
        pcm::f32_to_pcm16_vec(&[1.7, -3.0]),
        pcm::i16_to_pcm16_vec(&[i16::MAX, i16::MIN])
    );
}

#[test]
fn stereo_device_audio_downmixes_to_mono() {
    let left = sine(440.0, 48_000, 480, 0.5);
    let stereo: Vec<f32> = left.iter().flat_map(|s| [*s, -*s]).collect();
    assert!(pcm::downmix_f32_vec(&stereo, 2).iter().all(|s| *s == 0.0));
    let same: Vec<f32> = left.iter().flat_map(|s| [*s, *s]).collect();
    assert_eq!(pcm::downmix_f32_vec(&same, 2), left);
    let i: Vec<i16> = vec![1000, 3000, -5, -7, 0, 1];
    assert_eq!(pcm::downmix_i16_vec(&i, 2), [2000, -6, 1]);
}

#[test]
fn g711_full_scale_and_silence() {
    let mut codes = [0u8; 3];
    g711::ulaw_encode(&[0, i16::MAX, i16::MIN], &mut codes);
    assert_eq!(codes, [0xFF, 0x80, 0x00]);
    g711::alaw_encode(&[0, i16::MAX, i16::MIN], &mut codes);
    assert_eq!(codes, [0xD5, 0xAA, 0x2A]);
    let mut lin = [0i16; 3];
    g711::ulaw_decode(&[0xFF, 0x80, 0x00], &mut lin);
    assert_eq!(lin, [0, 32124, -32124]);
    g711::alaw_decode(&[0xD5, 0xAA, 0x2A], &mut lin);
    assert_eq!(lin, [8, 32256, -32256]);
    // The decode tables are plain constants.
    assert_eq!(g711::ULAW_DECODE_TABLE[0x80], 32124);
    assert_eq!(g711::ALAW_DECODE_TABLE[0xD5], 8);
}

#[test]
fn g711_signal_to_noise_on_speech_levels() {
    // A -20 dBFS tone keeps ~38 dB SNR through either law (the G.711 design target).
    let x = sine(1_000.0, 8_000, 8_000, 0.1);
    let lin: Vec<i16> = x.iter().map(|s| pcm::f32_to_i16(*s)).collect();
    for law in [G711Law::Ulaw, G711Law::Alaw] {
        let y = law.decode_vec(&law.encode_vec(&lin));
        let err: Vec<f32> = lin
            .iter()
            .zip(&y)
            .map(|(a, b)| f32::from(a - b) / 32768.0)
            .collect();
        let snr = 20.0 * (rms(&x) / rms(&err)).log10();
        assert!(snr > 35.0, "{law:?}: SNR {snr:.1} dB");
    }
}

#[test]
fn transcoder_phone_to_model_upsamples_a_call() {
    let mut tc = Transcoder::new(G711Law::Ulaw).unwrap();
    // One second of a 1 kHz tone from the phone, in 20 ms packets.
    let phone: Vec<i16> = sine(1_000.0, 8_000, 8_000, 0.5)
        .iter()
        .map(|s| pcm::f32_to_i16(*s))
        .collect();
    let codes = G711Law::Ulaw.encode_vec(&phone);
    let mut model = Vec::new();
    for packet in codes.chunks(160) {
        tc.to_model(packet, &mut model);
    }
    tc.flush_to_model(&mut model);
    assert_eq!(model.len(), 48_000, "1 s of 24 kHz PCM16");
    let x = pcm::pcm16_to_f32_vec(&model);
    let mid = &x[2_400..21_600];
    assert!((tone_level(mid, 24_000, 1_000.0) - 0.5).abs() < 0.01);
    assert!(tc.latency_to_model().as_millis() <= 15);
}

#[test]
fn transcoder_model_to_phone_filters_before_encoding() {
    let mut tc = Transcoder::new(G711Law::Alaw).unwrap();
    // The model's 24 kHz output with a 1 kHz voice component and a 6 kHz component that a
    // naive decimator would fold down to 2 kHz.
    let voice = sine(1_000.0, 24_000, 24_000, 0.4);
    let hiss = sine(6_000.0, 24_000, 24_000, 0.3);
    let mixed: Vec<f32> = voice.iter().zip(&hiss).map(|(a, b)| a + b).collect();
    let bytes = pcm::f32_to_pcm16_vec(&mixed);
    let mut phone = Vec::new();
    // Deltas of odd byte length are fine: the dangling byte waits for the next one.
    for delta in bytes.chunks(1_001) {
        tc.to_phone(delta, &mut phone);
    }
    tc.flush_to_phone(&mut phone);
    assert_eq!(phone.len(), 8_000, "1 s of 8 kHz G.711");
    let y: Vec<f32> = G711Law::Alaw
        .decode_vec(&phone)
        .iter()
        .map(|s| pcm::i16_to_f32(*s))
        .collect();
    let mid = &y[800..7_200];
    assert!((tone_level(mid, 8_000, 1_000.0) - 0.4).abs() < 0.02);
    let alias = tone_level(mid, 8_000, 2_000.0);
    assert!(alias < 0.003, "6 kHz folded into 2 kHz at {alias}");
}

#[test]
fn transcoder_reset_drops_buffered_model_audio() {
    let mut tc = Transcoder::new(G711Law::Ulaw).unwrap();
    let mut phone = Vec::new();
    tc.to_phone(&pcm::f32_to_pcm16_vec(&[0.5; 100]), &mut phone); // less than a chunk
    assert!(phone.is_empty());
    tc.reset_to_phone(); // barge-in
    tc.flush_to_phone(&mut phone);
    assert!(phone.is_empty(), "nothing of the interrupted audio is left");
}
