//! Cost of the audio helpers per 20 ms chunk (one Realtime API audio delta or one telephony
//! packet). Run briefly with:
//! `cargo bench --bench audio -- --warm-up-time 1 --measurement-time 2`

use std::f32::consts::TAU;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use realtime_agents::audio::g711::{self, G711Law, Transcoder};
use realtime_agents::audio::{ResampleOptions, ResampleQuality, StreamResampler, pcm};

fn sine(rate: u32, frames: usize) -> Vec<f32> {
    (0..frames)
        .map(|i| 0.5 * (TAU * 440.0 * i as f32 / rate as f32).sin())
        .collect()
}

fn codecs(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec_20ms");
    let lin: Vec<i16> = sine(8_000, 160)
        .iter()
        .map(|s| pcm::f32_to_i16(*s))
        .collect();
    let ulaw = G711Law::Ulaw.encode_vec(&lin);
    let alaw = G711Law::Alaw.encode_vec(&lin);
    let mut codes = [0u8; 160];
    let mut samples = [0i16; 160];
    g.throughput(Throughput::Elements(160));
    g.bench_function("ulaw_encode_160", |b| {
        b.iter(|| g711::ulaw_encode(black_box(&lin), &mut codes))
    });
    g.bench_function("ulaw_decode_160", |b| {
        b.iter(|| g711::ulaw_decode(black_box(&ulaw), &mut samples))
    });
    g.bench_function("alaw_encode_160", |b| {
        b.iter(|| g711::alaw_encode(black_box(&lin), &mut codes))
    });
    g.bench_function("alaw_decode_160", |b| {
        b.iter(|| g711::alaw_decode(black_box(&alaw), &mut samples))
    });

    let bytes = pcm::f32_to_pcm16_vec(&sine(24_000, 480));
    let mut f = [0f32; 480];
    let mut back = [0u8; 960];
    g.throughput(Throughput::Elements(480));
    g.bench_function("pcm16_to_f32_480", |b| {
        b.iter(|| pcm::pcm16_to_f32_into(black_box(&bytes), &mut f))
    });
    g.bench_function("f32_to_pcm16_480", |b| {
        b.iter(|| pcm::f32_to_pcm16_into(black_box(&f), &mut back))
    });
    g.finish();
}

fn resampling(c: &mut Criterion) {
    let mut g = c.benchmark_group("resample_20ms");
    for (name, in_rate, out_rate, quality) in [
        ("48k_to_24k_fft", 48_000, 24_000, ResampleQuality::Fft),
        ("44k1_to_24k_fft", 44_100, 24_000, ResampleQuality::Fft),
        ("24k_to_8k_fft", 24_000, 8_000, ResampleQuality::Fft),
        ("24k_to_48k_fft", 24_000, 48_000, ResampleQuality::Fft),
        ("48k_to_24k_sinc", 48_000, 24_000, ResampleQuality::Sinc),
        ("24k_to_48k_fast", 24_000, 48_000, ResampleQuality::Fast),
    ] {
        let frames = in_rate as usize / 50;
        let input = sine(in_rate, frames);
        let mut rs = StreamResampler::with_options(
            in_rate,
            out_rate,
            ResampleOptions::default().quality(quality),
        )
        .unwrap();
        let mut out = Vec::with_capacity(rs.max_output_frames(frames));
        g.throughput(Throughput::Elements(frames as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                rs.push(black_box(&input), &mut out)
            })
        });
    }
    g.finish();
}

fn transcoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("transcode_20ms");
    let mut tc = Transcoder::new(G711Law::Ulaw).unwrap();
    let model = pcm::f32_to_pcm16_vec(&sine(24_000, 480));
    let phone = G711Law::Ulaw.encode_vec(&vec![1000; 160]);
    let mut out = Vec::with_capacity(4_096);
    g.bench_function("model_to_phone", |b| {
        b.iter(|| {
            out.clear();
            tc.to_phone(black_box(&model), &mut out)
        })
    });
    g.bench_function("phone_to_model", |b| {
        b.iter(|| {
            out.clear();
            tc.to_model(black_box(&phone), &mut out)
        })
    });
    g.finish();
}

criterion_group!(benches, codecs, resampling, transcoding);
criterion_main!(benches);
