#![cfg(feature = "audio")]
//! Device tests against ALSA's userspace `null` and `file` PCMs, configured by the tests
//! themselves (see `support/alsa`): they need `libasound2` but no sound card, server or kernel
//! module. ALSA's `null`/`file` devices are unpaced (callbacks run far faster than real time), so
//! these tests check data paths and counters, never timing.

#[path = "support/alsa/mod.rs"]
mod alsa;

use std::f32::consts::TAU;
use std::path::Path;
use std::time::{Duration, Instant};

use realtime_agents::PlaybackTracker;
use realtime_agents::audio::{
    AudioDeviceEvent, AudioError, AudioFormat, Microphone, MicrophoneConfig, SampleFormat, Speaker,
    SpeakerConfig, StreamResampler, input_devices, output_devices, pcm,
};

/// A tone at `rate` that never starts with an exact zero, so the start is easy to find.
fn tone(freq: f32, rate: u32, frames: usize, amp: f32) -> Vec<f32> {
    (0..frames)
        .map(|i| amp * (TAU * freq * i as f32 / rate as f32 + 0.5).sin())
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Deterministic pseudo-random chunk sizes, like WebSocket deltas of varying length.
fn chunk_sizes(total: usize, seed: u64) -> Vec<usize> {
    let mut x = seed;
    let mut sizes = Vec::new();
    let mut left = total;
    while left > 0 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = ((x >> 33) as usize % 1500 + 1).min(left);
        sizes.push(n);
        left -= n;
    }
    sizes
}

/// Like `assert_eq!` on long buffers, but reports where they diverge instead of printing both.
#[track_caller]
fn assert_same<T: PartialEq + std::fmt::Debug>(got: &[T], expected: &[T], what: &str) {
    if let Some(i) = got.iter().zip(expected).position(|(a, b)| a != b) {
        let ctx = |v: &[T]| format!("{:?}", &v[i.saturating_sub(4)..(i + 4).min(v.len())]);
        panic!(
            "{what}: first difference at {i} of {}: got {} expected {}",
            expected.len(),
            ctx(got),
            ctx(expected)
        );
    }
    assert_eq!(got.len(), expected.len(), "{what}: lengths differ");
}

/// The non-zero samples of PCM16 bytes: what was played, without the padding silence.
fn non_silent_i16(bytes: &[u8]) -> Vec<i16> {
    pcm::pcm16_to_i16_vec(bytes)
        .into_iter()
        .filter(|&s| s != 0)
        .collect()
}

fn read_out(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("out.raw")).expect("the file PCM wrote out.raw")
}

#[test]
fn devices_are_listed_and_selectable_by_id_or_name() {
    let Some(_dir) = alsa::sandbox("devices_are_listed_and_selectable_by_id_or_name", |_| {})
    else {
        return;
    };
    let outputs = output_devices().unwrap();
    assert!(outputs.iter().any(|d| d.id == "rta_out"), "{outputs:?}");
    assert!(input_devices().unwrap().iter().any(|d| d.id == "rta_in"));

    let by_name = outputs
        .iter()
        .find(|d| d.id == "null")
        .unwrap()
        .name
        .clone();
    let speaker = Speaker::open(SpeakerConfig::default().device(by_name)).unwrap();
    assert_eq!(speaker.device().id, "null");
    drop(speaker);

    let speaker = Speaker::open(SpeakerConfig::default()).unwrap();
    assert_eq!(speaker.device().id, "default");

    let err = Speaker::open(SpeakerConfig::default().device("no such device")).unwrap_err();
    assert!(matches!(err, AudioError::DeviceNotFound(_)), "{err}");
}

#[test]
fn speaker_plays_pcm16_bit_exact_and_tracker_follows_consumed_frames() {
    let Some(dir) = alsa::sandbox(
        "speaker_plays_pcm16_bit_exact_and_tracker_follows_consumed_frames",
        |_| {},
    ) else {
        return;
    };
    // 24 kHz mono i16 on the device: no resampling, so the file must hold our exact bytes.
    let speaker = Speaker::open(
        SpeakerConfig::default()
            .device("rta_out")
            .device_sample_rate(24_000)
            .device_channels(1)
            .device_sample_format(SampleFormat::I16),
    )
    .unwrap();
    assert_eq!(speaker.resampler_latency(), Duration::ZERO);
    let tracker = speaker.tracker();
    assert_eq!(tracker.rate(), 24_000);

    let audio = pcm::f32_to_pcm16_vec(&tone(440.0, 24_000, 7_200, 0.5)); // 300 ms
    // The session delivers all 300 ms...
    let mut offset = 0;
    let sizes = chunk_sizes(audio.len() / 2, 7);
    for n in &sizes {
        tracker.on_audio_delivered("item_1", 0, n * 2, AudioFormat::PCM16_24K);
    }
    assert_eq!(tracker.played_ms("item_1", 0), Some(0));

    // ...but the app has only pushed the first 100 ms to the speaker so far: what was played
    // is bounded by what the device consumed, not by what was delivered or by wall clock.
    let first = 2_400 * 2;
    speaker.push_pcm16(&audio[..first]);
    wait_for("the first 100 ms to play", Duration::from_secs(10), || {
        tracker.played_ms("item_1", 0) == Some(100)
    });
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(tracker.played_ms("item_1", 0), Some(100));
    assert_eq!(tracker.played_frames(), 2_400);

    // The rest, in delta-sized pieces.
    offset += first;
    for n in chunk_sizes((audio.len() - offset) / 2, 11) {
        speaker.push_pcm16(&audio[offset..offset + n * 2]);
        offset += n * 2;
    }
    wait_for("all 300 ms to play", Duration::from_secs(10), || {
        tracker.played_ms("item_1", 0) == Some(300)
    });
    let stats = speaker.stats();
    assert_eq!(stats.played_frames, 7_200);
    assert_eq!(stats.discarded_frames, 0);
    assert!(stats.callbacks > 0 && stats.silence_frames > 0, "{stats:?}");
    drop(speaker);

    // The device plays silence while it waits for audio: before, between and after the
    // pushes (on an unpaced device even between deltas). Every audio sample must arrive
    // exactly once, in order.
    let got = non_silent_i16(&read_out(&dir));
    assert_same(
        &got,
        &non_silent_i16(&audio),
        "device received exactly the pushed PCM16",
    );
}

#[test]
fn speaker_resamples_and_converts_to_the_device_format() {
    let Some(dir) = alsa::sandbox(
        "speaker_resamples_and_converts_to_the_device_format",
        |_| {},
    ) else {
        return;
    };
    // A typical device: 48 kHz stereo f32.
    let speaker = Speaker::open(
        SpeakerConfig::default()
            .device("rta_out")
            .device_sample_rate(48_000)
            .device_channels(2)
            .device_sample_format(SampleFormat::F32),
    )
    .unwrap();
    let input = tone(1_000.0, 24_000, 4_800, 0.4); // 200 ms
    for chunk in input.chunks(480) {
        speaker.push_f32(chunk);
    }
    speaker.end_of_stream();
    let tracker = speaker.tracker();
    wait_for("200 ms at 48 kHz", Duration::from_secs(10), || {
        tracker.played_frames() == 9_600
    });
    drop(speaker);

    // What the speaker should have produced: the same streaming resampler, flushed.
    let mut expected = Vec::new();
    let mut rs = StreamResampler::new(24_000, 48_000).unwrap();
    rs.push(&input, &mut expected);
    rs.flush(&mut expected);
    assert_eq!(expected.len(), 9_600);

    let out = read_out(&dir);
    let frames: Vec<[f32; 2]> = out
        .chunks_exact(8)
        .map(|b| {
            [
                f32::from_le_bytes(b[..4].try_into().unwrap()),
                f32::from_le_bytes(b[4..].try_into().unwrap()),
            ]
        })
        .collect();
    assert!(
        frames.iter().all(|[l, r]| l == r),
        "mono copied to both channels"
    );
    let got: Vec<f32> = frames.iter().map(|f| f[0]).filter(|&s| s != 0.0).collect();
    let expected: Vec<f32> = expected.into_iter().filter(|&s| s != 0.0).collect();
    assert_same(&got, &expected, "bit-exact resampled audio");
}

#[test]
fn clear_drops_queued_audio_and_reports_it_discarded() {
    let Some(dir) = alsa::sandbox("clear_drops_queued_audio_and_reports_it_discarded", |_| {})
    else {
        return;
    };
    let speaker = Speaker::open(
        SpeakerConfig::default()
            .device("rta_out")
            .device_sample_rate(24_000)
            .device_channels(1)
            .device_sample_format(SampleFormat::I16)
            .ring(Duration::from_secs(2))
            .start_paused(true),
    )
    .unwrap();
    let tracker = speaker.tracker();

    // A second of the interrupted answer is queued (in the ring) when the user barges in.
    let stale = pcm::f32_to_pcm16_vec(&vec![0.25; 24_000]);
    tracker.on_audio_delivered("old", 0, stale.len(), AudioFormat::PCM16_24K);
    speaker.push_pcm16(&stale);
    wait_for("the ring to fill", Duration::from_secs(10), || {
        speaker.stats().queued_frames == 24_000
    });
    std::thread::sleep(Duration::from_millis(20));
    tracker.on_interrupted();
    speaker.clear();

    // The next answer plays; nothing of the old one does.
    let fresh = pcm::f32_to_pcm16_vec(&tone(300.0, 24_000, 2_400, 0.5));
    tracker.on_audio_delivered("new", 0, fresh.len(), AudioFormat::PCM16_24K);
    speaker.push_pcm16(&fresh);
    speaker.play().unwrap();
    wait_for("the new answer to play", Duration::from_secs(10), || {
        tracker.played_ms("new", 0) == Some(100)
    });
    assert_eq!(tracker.played_ms("old", 0), Some(0));
    assert_eq!(tracker.discarded_frames(), 24_000);
    assert_eq!(tracker.played_frames(), 2_400);
    assert_eq!(speaker.stats().queued_frames, 0);
    drop(speaker);

    let out = read_out(&dir);
    let stale_sample = pcm::f32_to_pcm16_vec(&[0.25]);
    assert!(
        !out.chunks_exact(2).any(|s| s == stale_sample.as_slice()),
        "stale audio reached the device"
    );
    assert_same(
        &non_silent_i16(&out),
        &non_silent_i16(&fresh),
        "only the fresh answer was played",
    );
}

#[test]
fn speaker_pushes_out_the_resampler_tail_when_input_stops() {
    let Some(_dir) = alsa::sandbox(
        "speaker_pushes_out_the_resampler_tail_when_input_stops",
        |_| {},
    ) else {
        return;
    };
    let speaker = Speaker::open(
        SpeakerConfig::default()
            .device("rta_out")
            .device_sample_rate(48_000)
            .device_channels(1)
            .device_sample_format(SampleFormat::I16),
    )
    .unwrap();
    let tracker = speaker.tracker();
    let audio = pcm::f32_to_pcm16_vec(&tone(500.0, 24_000, 2_500, 0.5)); // 104.2 ms
    tracker.on_audio_delivered("item", 0, audio.len(), AudioFormat::PCM16_24K);
    speaker.push_pcm16(&audio);
    // No end_of_stream(): the last chunk and the filter tail still come out once the input
    // has been idle for a moment, so the whole item is heard.
    wait_for("the whole item to play", Duration::from_secs(10), || {
        tracker.played_frames() == 5_000
    });
    wait_for("the item to be heard", Duration::from_secs(10), || {
        tracker.played_ms("item", 0) == Some(104)
    });
}

#[test]
fn devices_can_move_between_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<Microphone>();
    send::<Speaker>();
    sync::<Speaker>();
}

/// 1 kHz at 48 kHz stereo i16 (left = right), one second, as the `rta_in` capture source.
fn write_capture_source(dir: &Path) {
    let mono = tone(1_000.0, 48_000, 48_000, 0.5);
    let mut bytes = Vec::with_capacity(mono.len() * 4);
    for s in &mono {
        let b = pcm::f32_to_i16(*s).to_le_bytes();
        bytes.extend_from_slice(&b);
        bytes.extend_from_slice(&b);
    }
    std::fs::write(dir.join("in.raw"), bytes).unwrap();
}

#[tokio::test]
async fn microphone_yields_24k_mono_chunks_resampled_outside_the_callback() {
    let Some(dir) = alsa::sandbox(
        "microphone_yields_24k_mono_chunks_resampled_outside_the_callback",
        write_capture_source,
    ) else {
        return;
    };
    let mut mic = Microphone::open(
        MicrophoneConfig::default()
            .device("rta_in")
            .device_sample_rate(48_000)
            .device_channels(2)
            .device_sample_format(SampleFormat::I16)
            .chunk(Duration::from_millis(20)),
    )
    .unwrap();
    assert_eq!(mic.device_sample_rate(), 48_000);
    assert_eq!(mic.device_channels(), 2);
    assert_eq!(mic.output_rate(), 24_000);
    assert_eq!(mic.chunk_bytes(), 960);
    let mut events = mic.take_events().unwrap();

    let mut captured = Vec::new();
    for _ in 0..20 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), mic.next_chunk())
            .await
            .expect("a chunk in time")
            .expect("stream alive");
        assert_eq!(chunk.len(), 960, "20 ms of 24 kHz PCM16");
        captured.extend_from_slice(&chunk);
    }

    // Expected: the source downmixed, resampled 48k -> 24k by the same streaming resampler.
    let source = std::fs::read(dir.join("in.raw")).unwrap();
    let mono: Vec<f32> = pcm::pcm16_to_f32_vec(&source)
        .chunks_exact(2)
        .map(|lr| (lr[0] + lr[1]) * 0.5)
        .collect();
    let mut rs = StreamResampler::new(48_000, 24_000).unwrap();
    let mut expected = Vec::new();
    rs.push(&mono, &mut expected);
    let expected = pcm::f32_to_pcm16_vec(&expected[..captured.len() / 2]);
    assert_same(
        &captured,
        &expected,
        "captured audio is the resampled source",
    );

    // And it is a 1 kHz tone: 2 zero crossings per ms.
    let samples = pcm::pcm16_to_i16_vec(&captured[4_800..]); // skip the filter warm-up
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    let ms = samples.len() as f64 / 24.0;
    assert!(
        (crossings as f64 / ms - 2.0).abs() < 0.05,
        "{crossings} in {ms} ms"
    );

    // The unpaced null device overfills the 2 s ring while we read slowly: reported as an
    // event, and capture keeps going.
    wait_for("an overrun", Duration::from_secs(10), || {
        mic.overrun_frames() > 0
    });
    let _ = mic.try_next_chunk();
    let event = tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(event, AudioDeviceEvent::CaptureOverrun { dropped_frames } if dropped_frames > 0)
    );
    assert!(!mic.is_stopped());
}

#[tokio::test]
async fn microphone_chunk_duration_is_configurable() {
    let Some(_dir) = alsa::sandbox("microphone_chunk_duration_is_configurable", |_| {}) else {
        return;
    };
    // The plain null device, at whatever the device prefers.
    let mut mic =
        Microphone::open(MicrophoneConfig::default().chunk(Duration::from_millis(40))).unwrap();
    assert_eq!(mic.chunk_bytes(), 1_920);
    for _ in 0..5 {
        let chunk = mic.next_chunk().await.unwrap();
        assert_eq!(chunk.len(), 1_920);
    }
    assert!(mic.captured_frames() > 0);
}

#[test]
fn unopenable_device_is_an_error_not_a_panic() {
    let Some(_dir) = alsa::sandbox("unopenable_device_is_an_error_not_a_panic", |_| {}) else {
        return;
    };
    let err = Speaker::open(SpeakerConfig::default().device("rta_broken")).unwrap_err();
    assert!(matches!(err, AudioError::Device { .. }), "{err:?}");
    let err = Microphone::open(MicrophoneConfig::default().device("rta_broken")).unwrap_err();
    assert!(matches!(err, AudioError::Device { .. }), "{err:?}");
}
