//! Jitter buffer and frame-based playback tracking, driven by a simulated sound card (a loop
//! that pulls fixed periods), so the tests are exact and independent of wall clock.

use std::sync::Arc;
use std::time::Duration;

use realtime_agents::PlaybackTracker;
use realtime_agents::audio::{AudioFormat, FramePlaybackTracker, JitterBuffer, pcm};

const RATE: u32 = 24_000;
const PERIOD: usize = 240; // 10 ms
const DEVICE_PERIODS: usize = 2; // frames still queued in the "hardware" after a callback

/// A fake output device: pulls a period from the jitter buffer, reports played audio frames
/// and the audio still queued in its two-period hardware buffer.
struct FakeDevice {
    jitter: JitterBuffer<f32>,
    tracker: Arc<FramePlaybackTracker>,
    /// Audio frames in each of the last periods, newest last.
    queued: Vec<usize>,
    out: Vec<f32>,
}

impl FakeDevice {
    fn new(prebuffer_ms: u64) -> Self {
        Self {
            jitter: JitterBuffer::new(RATE, Duration::from_millis(prebuffer_ms)),
            tracker: Arc::new(FramePlaybackTracker::new(RATE)),
            queued: Vec::new(),
            out: Vec::new(),
        }
    }

    /// What the app does with an audio delta: the session tells the tracker, the app queues it.
    fn deliver(&mut self, item: &str, bytes: &[u8]) {
        self.tracker
            .on_audio_delivered(item, 0, bytes.len(), AudioFormat::PCM16_24K);
        self.jitter.push(&pcm::pcm16_to_f32_vec(bytes));
    }

    /// The app's reaction to `AudioInterrupted`.
    fn clear(&mut self) {
        let dropped = self.jitter.clear();
        self.tracker.record_discarded(dropped as u64);
    }

    fn run_periods(&mut self, n: usize) {
        for _ in 0..n {
            let mut buf = [0.0f32; PERIOD];
            let audio = self.jitter.pop(&mut buf);
            self.out.extend_from_slice(&buf);
            self.queued.push(audio);
            if self.queued.len() > DEVICE_PERIODS {
                self.queued.remove(0);
            }
            let unheard: usize = self.queued.iter().sum();
            self.tracker.set_output_latency_frames(unheard as u64);
            self.tracker.record_played(audio as u64);
        }
    }
}

fn speech(ms: usize, value: f32) -> Vec<u8> {
    pcm::f32_to_pcm16_vec(&vec![value; ms * RATE as usize / 1000])
}

#[test]
fn played_ms_is_what_reached_the_listener_not_what_arrived() {
    let mut dev = FakeDevice::new(40);
    // The server sends a whole second in a burst, as the Realtime API does.
    for delta in speech(1_000, 0.1).chunks(2_400) {
        dev.deliver("item_a", delta);
    }
    assert_eq!(dev.tracker.played_ms("item_a", 0), Some(0));

    dev.run_periods(30); // 300 ms of device time
    // 300 ms handed to the device, the last 20 ms still in its buffer.
    assert_eq!(dev.tracker.played_ms("item_a", 0), Some(280));

    dev.run_periods(100); // well past the end: everything heard, never more than delivered
    assert_eq!(dev.tracker.played_ms("item_a", 0), Some(1_000));
    assert_eq!(dev.jitter.stats().underruns, 1, "ran dry once, at the end");
}

#[test]
fn barge_in_truncates_at_the_heard_point_and_the_next_item_lines_up() {
    let mut dev = FakeDevice::new(40);
    for delta in speech(1_000, 0.1).chunks(2_400) {
        dev.deliver("item_a", delta);
    }
    dev.run_periods(25);

    // The user speaks: the session reads the truncation point, then reports the interruption.
    let audio_end_ms = dev.tracker.played_ms("item_a", 0).unwrap();
    assert_eq!(audio_end_ms, 230);
    dev.tracker.on_interrupted();
    // The app gets AudioInterrupted a moment later (one more period played meanwhile).
    dev.run_periods(1);
    dev.clear();
    // The interrupted item keeps the position the session used.
    assert_eq!(dev.tracker.played_ms("item_a", 0), Some(230));

    // The answer to the interruption.
    for delta in speech(200, 0.2).chunks(960) {
        dev.deliver("item_b", delta);
    }
    dev.run_periods(10);
    // b started right away (200 ms queued > 40 ms prebuffer); 100 ms handed over, 20 queued.
    assert_eq!(dev.tracker.played_ms("item_b", 0), Some(80));
    assert_eq!(dev.tracker.played_ms("item_a", 0), Some(230));

    // The device never played item_a after the clear (0.1 → 3277 as i16).
    let after_clear = &dev.out[26 * PERIOD..];
    assert!(after_clear.iter().all(|&s| s != pcm::i16_to_f32(3277)));
}

#[test]
fn several_items_in_one_response_are_tracked_separately() {
    let mut dev = FakeDevice::new(0);
    dev.deliver("a", &speech(100, 0.1));
    dev.deliver("b", &speech(100, 0.2));
    dev.deliver("a2", &speech(50, 0.3));
    dev.run_periods(17); // 170 ms handed over, 150 ms heard
    assert_eq!(dev.tracker.played_ms("a", 0), Some(100));
    assert_eq!(dev.tracker.played_ms("b", 0), Some(50));
    assert_eq!(dev.tracker.played_ms("a2", 0), Some(0));
    assert_eq!(dev.tracker.played_ms("missing", 0), None);
}

#[test]
fn gaps_in_delivery_do_not_count_as_playback() {
    let mut dev = FakeDevice::new(20);
    dev.deliver("a", &speech(50, 0.1));
    dev.run_periods(20); // 50 ms of audio then 150 ms of silence (underrun)
    assert_eq!(dev.tracker.played_ms("a", 0), Some(50));
    dev.deliver("a", &speech(50, 0.1)); // the rest arrives late
    dev.run_periods(3); // prebuffer 20 ms is met at once: 30 ms handed over, 20 ms queued
    assert_eq!(dev.tracker.played_ms("a", 0), Some(60));
    let stats = dev.jitter.stats();
    assert!(
        stats.underruns >= 1 && stats.silence_frames > 0,
        "{stats:?}"
    );
}

#[test]
fn telephony_pacer_gets_full_frames_with_silence_on_underrun() {
    // 8 kHz, 20 ms frames to a phone gateway, 60 ms prebuffer.
    let mut jb = JitterBuffer::<i16>::new(8_000, Duration::from_millis(60));
    let mut frame = [0i16; 160];
    jb.push(&[100; 320]); // 40 ms arrived
    assert_eq!(jb.pop(&mut frame), 0, "still below the prebuffer");
    assert!(frame.iter().all(|&s| s == 0));
    jb.push(&[100; 320]); // 80 ms queued
    for _ in 0..4 {
        assert_eq!(jb.pop(&mut frame), 160);
    }
    assert_eq!(jb.pop(&mut frame), 0, "dry: silence and re-armed");
    assert!(jb.is_prebuffering());
    jb.push(&[5; 50]);
    jb.end_of_stream(); // last words of the answer: no need to wait for 60 ms
    assert_eq!(jb.pop(&mut frame), 50);
    assert_eq!(&frame[48..52], &[5, 5, 0, 0]);
    let stats = jb.stats();
    assert_eq!(
        (stats.played_frames, stats.underruns),
        (690, 1),
        "{stats:?}"
    );
}

#[test]
fn tracker_is_updated_from_another_thread_without_locks() {
    let tracker = Arc::new(FramePlaybackTracker::new(48_000));
    tracker.on_audio_delivered("x", 0, 96_000, AudioFormat::PCM16_24K); // 2 s
    let audio_thread = {
        let t = tracker.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                t.set_output_latency_frames(960);
                t.record_played(480);
            }
            t.set_output_latency_frames(0);
        })
    };
    let mut last = 0;
    while !audio_thread.is_finished() {
        let now = tracker.played_ms("x", 0).unwrap();
        assert!(now >= last, "played position went backwards");
        last = now;
    }
    audio_thread.join().unwrap();
    assert_eq!(tracker.played_ms("x", 0), Some(2_000));
}
