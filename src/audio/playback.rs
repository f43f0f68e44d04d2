//! Playback: a jitter buffer, and a [`PlaybackTracker`] that counts what the output really
//! played.
//!
//! The Realtime API streams assistant audio faster than real time, and the user interrupts
//! whenever they like. On an interruption the session truncates the assistant's item at the
//! point the user actually heard, which is neither "what was received" nor "wall clock since
//! the first delta": it is what the output device consumed, minus what is still sitting in the
//! device's buffer. [`FramePlaybackTracker`] computes exactly that from counters the output
//! updates (lock-free, so the audio callback can do it), and [`JitterBuffer`] smooths bursty
//! arrival into a steady stream for outputs that pull at a fixed pace.
//!
//!
//! See [`FramePlaybackTracker`] for how to wire it up.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::AudioFormat;
use crate::PlaybackTracker;

/// Counters of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterStats {
    /// Frames currently queued.
    pub buffered_frames: usize,
    /// Waiting to reach the prebuffer target (outputting silence).
    pub prebuffering: bool,
    /// Times the buffer ran dry while playing (not counted after
    /// [`end_of_stream`](JitterBuffer::end_of_stream)).
    pub underruns: u64,
    /// Audio frames handed out.
    pub played_frames: u64,
    /// Silence frames handed out (prebuffering and underruns).
    pub silence_frames: u64,
    /// Frames rejected because the buffer was full.
    pub overflow_frames: u64,
    /// Frames dropped by [`clear`](JitterBuffer::clear).
    pub cleared_frames: u64,
}

/// The start/stop logic of a jitter buffer, independent of where the samples live (a
/// `VecDeque` in [`JitterBuffer`], a lock-free ring in the device speaker).
#[derive(Debug, Clone)]
pub(crate) struct Prebuffer {
    target: usize,
    armed: bool,
    waited: usize,
    end_of_stream: bool,
}

/// What to output for one pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Audio frames to take from the queue; the rest of the request is silence.
    pub audio: usize,
    /// The queue ran dry while playing.
    pub underrun: bool,
}

impl Prebuffer {
    pub(crate) fn new(target: usize) -> Self {
        Self {
            target,
            armed: true,
            waited: 0,
            end_of_stream: false,
        }
    }

    /// Decides how many of `available` queued frames to play into a request of `want` frames.
    ///
    /// Playback starts once `target` frames are queued, or once some audio has waited for
    /// `target` frames of output time (a short utterance must not wait forever), or right away
    /// after end of stream. Running dry re-arms the prebuffer.
    pub(crate) fn plan(&mut self, available: usize, want: usize) -> Plan {
        if self.armed {
            let ready = available >= self.target.max(1)
                || (available > 0 && (self.end_of_stream || self.waited >= self.target));
            if !ready {
                if available > 0 {
                    self.waited += want;
                }
                return Plan {
                    audio: 0,
                    underrun: false,
                };
            }
            self.armed = false;
            self.waited = 0;
        }
        let audio = available.min(want);
        let mut underrun = false;
        if audio < want {
            self.armed = true;
            self.waited = 0;
            underrun = !self.end_of_stream;
            self.end_of_stream = false;
        }
        Plan { audio, underrun }
    }

    pub(crate) fn end_of_stream(&mut self) {
        self.end_of_stream = true;
    }

    pub(crate) fn reset(&mut self) {
        self.armed = true;
        self.waited = 0;
        self.end_of_stream = false;
    }

    pub(crate) fn is_armed(&self) -> bool {
        self.armed
    }
}

/// A playout buffer: absorbs bursty arrival, waits for a prebuffer target before starting,
/// and pads underruns with silence (re-arming the prebuffer), so a fixed-pace consumer (a sound
/// card, a 20 ms telephony pacer) always gets a full buffer.
///
/// Mono samples of any `Copy + Default` type; silence is `T::default()` (so use decoded PCM,
/// not G.711 codes). Not thread-safe by itself: the device speaker implements the same logic
/// over a lock-free ring.
///
/// ```
/// use realtime_agents::audio::JitterBuffer;
/// use std::time::Duration;
///
/// // 8 kHz, start after 40 ms (320 samples).
/// let mut jb = JitterBuffer::<i16>::new(8_000, Duration::from_millis(40));
/// let mut frame = [0i16; 160]; // 20 ms pacer
/// jb.push(&[7; 200]);
/// assert_eq!(jb.pop(&mut frame), 0); // still prebuffering: silence
/// jb.push(&[7; 200]);
/// assert_eq!(jb.pop(&mut frame), 160); // 400 queued >= 320: playing
/// jb.clear(); // barge-in
/// assert!(jb.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct JitterBuffer<T = f32> {
    buf: VecDeque<T>,
    rate: u32,
    max_frames: Option<usize>,
    prebuffer: Prebuffer,
    stats: JitterStats,
}

fn duration_to_frames(d: Duration, rate: u32) -> usize {
    (d.as_nanos() * u128::from(rate) / 1_000_000_000) as usize
}

impl<T: Copy + Default> JitterBuffer<T> {
    /// A buffer for `sample_rate` Hz that starts playing once `prebuffer` of audio is queued.
    /// Unbounded until [`with_max_buffer`](Self::with_max_buffer).
    pub fn new(sample_rate: u32, prebuffer: Duration) -> Self {
        Self {
            buf: VecDeque::new(),
            rate: sample_rate,
            max_frames: None,
            prebuffer: Prebuffer::new(duration_to_frames(prebuffer, sample_rate)),
            stats: JitterStats {
                prebuffering: true,
                ..JitterStats::default()
            },
        }
    }

    /// Caps the queue at `max` of audio (allocated up front); excess pushes are rejected and
    /// counted in [`JitterStats::overflow_frames`].
    #[must_use]
    pub fn with_max_buffer(mut self, max: Duration) -> Self {
        let frames = duration_to_frames(max, self.rate);
        self.buf.reserve(frames.saturating_sub(self.buf.len()));
        self.max_frames = Some(frames);
        self
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Queues `samples`; returns how many were accepted.
    pub fn push(&mut self, samples: &[T]) -> usize {
        let room = self
            .max_frames
            .map_or(samples.len(), |m| m.saturating_sub(self.buf.len()));
        let n = room.min(samples.len());
        self.buf.extend(&samples[..n]);
        self.stats.overflow_frames += (samples.len() - n) as u64;
        n
    }

    /// Fills all of `out`: queued audio once playing, silence while prebuffering or after an
    /// underrun. Returns the number of audio samples written (at the start of `out`).
    pub fn pop(&mut self, out: &mut [T]) -> usize {
        let plan = self.prebuffer.plan(self.buf.len(), out.len());
        for (o, s) in out.iter_mut().zip(self.buf.drain(..plan.audio)) {
            *o = s;
        }
        out[plan.audio..].fill(T::default());
        self.stats.played_frames += plan.audio as u64;
        self.stats.silence_frames += (out.len() - plan.audio) as u64;
        self.stats.underruns += u64::from(plan.underrun);
        plan.audio
    }

    /// Marks the end of an utterance: what is queued plays out without waiting for the
    /// prebuffer target, and running dry afterwards is not counted as an underrun.
    pub fn end_of_stream(&mut self) {
        self.prebuffer.end_of_stream();
    }

    /// Drops everything queued and re-arms prebuffering (barge-in). Returns the frames dropped.
    pub fn clear(&mut self) -> usize {
        let n = self.buf.len();
        self.buf.clear();
        self.prebuffer.reset();
        self.stats.cleared_frames += n as u64;
        n
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Audio queued, as a duration.
    pub fn buffered(&self) -> Duration {
        Duration::from_secs_f64(self.buf.len() as f64 / f64::from(self.rate.max(1)))
    }

    /// Waiting for the prebuffer target.
    pub fn is_prebuffering(&self) -> bool {
        self.prebuffer.is_armed()
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        JitterStats {
            buffered_frames: self.buf.len(),
            prebuffering: self.prebuffer.is_armed(),
            ..self.stats
        }
    }
}

/// Most segments kept by [`FramePlaybackTracker`]; the session only asks about recent items.
const MAX_SEGMENTS: usize = 256;

#[derive(Debug)]
struct Segment {
    item_id: String,
    content_index: u32,
    /// Position on the output timeline, in tracker frames.
    start: f64,
    end: f64,
    /// Played frames fixed at an interruption.
    frozen: Option<f64>,
}

#[derive(Debug, Default)]
struct Timeline {
    delivered_end: f64,
    segments: VecDeque<Segment>,
}

/// A [`PlaybackTracker`] driven by the frames an output actually consumed.
///
/// Every delivered chunk is placed on a timeline (in frames at the tracker's `rate`, normally
/// the output device's rate), in delivery order. The output advances a read head by the audio
/// frames it plays ([`record_played`](Self::record_played)) or drops
/// ([`record_discarded`](Self::record_discarded)); what the listener has heard is the read head
/// minus the audio still inside the device ([`set_output_latency_frames`](Self::set_output_latency_frames)).
/// `played_ms(item)` is the part of the item's span behind that point. Silence the output
/// inserts (prebuffering, underruns) is not counted, so pauses in delivery do not inflate it.
///
/// The output-side methods are lock-free (atomics only), safe to call from an audio callback.
/// The session-side methods take a short internal lock that the output never touches.
///
/// On [`on_interrupted`](PlaybackTracker::on_interrupted) the played position of every item
/// delivered so far is frozen, so queries about the interrupted item stay stable while the
/// output drops its queue.
///
/// # Wiring
///
/// * Give the session an `Arc<FramePlaybackTracker>` as its playback tracker. It calls
///   [`on_audio_delivered`](PlaybackTracker::on_audio_delivered) for each audio chunk,
///   [`played_ms`](PlaybackTracker::played_ms) to truncate, and
///   [`on_interrupted`](PlaybackTracker::on_interrupted) afterwards.
/// * Push every delivered chunk to the output, in order. The output reports
///   [`record_played`](FramePlaybackTracker::record_played) for audio frames it hands to the
///   device, [`record_discarded`](FramePlaybackTracker::record_discarded) for queued frames it
///   drops, and [`set_output_latency_frames`](FramePlaybackTracker::set_output_latency_frames)
///   for audio frames handed over but not audible yet. The `audio` feature's `Speaker` does all
///   three.
/// * When the session reports that audio was interrupted (`AudioInterrupted`), clear the
///   output (`Speaker::clear`, [`JitterBuffer::clear`]), so queued audio is dropped.
///
/// ```
/// use realtime_agents::{PlaybackTracker, audio::{AudioFormat, FramePlaybackTracker}};
///
/// let tracker = FramePlaybackTracker::new(24_000);
/// tracker.on_audio_delivered("item_1", 0, 48_000, AudioFormat::PCM16_24K); // 1 s
/// assert_eq!(tracker.played_ms("item_1", 0), Some(0));
///
/// // The output played 600 ms worth of frames; 100 ms of them are still in the device buffer.
/// tracker.record_played(14_400);
/// tracker.set_output_latency_frames(2_400);
/// assert_eq!(tracker.played_ms("item_1", 0), Some(500));
/// assert_eq!(tracker.played_ms("other", 0), None);
/// ```
#[derive(Debug)]
pub struct FramePlaybackTracker {
    rate: u32,
    played: AtomicU64,
    discarded: AtomicU64,
    latency: AtomicU64,
    timeline: Mutex<Timeline>,
}

impl FramePlaybackTracker {
    /// A tracker whose frame counters run at `rate` Hz (the output's sample rate).
    ///
    /// # Panics
    ///
    /// If `rate` is 0.
    pub fn new(rate: u32) -> Self {
        assert!(rate > 0, "FramePlaybackTracker rate must be positive");
        Self {
            rate,
            played: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            latency: AtomicU64::new(0),
            timeline: Mutex::new(Timeline::default()),
        }
    }

    /// Frames per second of the counters.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Output side: `frames` frames of delivered audio were handed to the device.
    /// Lock-free.
    pub fn record_played(&self, frames: u64) {
        self.played.fetch_add(frames, Ordering::Release);
    }

    /// Output side: `frames` frames of delivered audio were dropped without being played
    /// (queue cleared on barge-in). Lock-free.
    pub fn record_discarded(&self, frames: u64) {
        self.discarded.fetch_add(frames, Ordering::Release);
    }

    /// Output side: of the frames reported played, this many are not audible yet (still in the
    /// device buffer; count audio, not padding silence). Lock-free.
    pub fn set_output_latency_frames(&self, frames: u64) {
        self.latency.store(frames, Ordering::Release);
    }

    /// Output side: [`set_output_latency_frames`](Self::set_output_latency_frames) from a
    /// duration.
    pub fn set_output_latency(&self, latency: Duration) {
        self.set_output_latency_frames(duration_to_frames(latency, self.rate) as u64);
    }

    /// Frames reported played so far.
    pub fn played_frames(&self) -> u64 {
        self.played.load(Ordering::Acquire)
    }

    /// Frames reported discarded so far.
    pub fn discarded_frames(&self) -> u64 {
        self.discarded.load(Ordering::Acquire)
    }

    /// The latest output latency, in frames.
    pub fn output_latency_frames(&self) -> u64 {
        self.latency.load(Ordering::Acquire)
    }

    /// Frames delivered by the session so far, on the tracker's timeline.
    pub fn delivered_frames(&self) -> u64 {
        self.lock().delivered_end.round() as u64
    }

    /// The audible point on the timeline: frames played or discarded, minus the latency.
    pub fn heard_frames(&self) -> u64 {
        // Played first: a latency stored after this load belongs to a later callback and can
        // only make the answer smaller, which is the safe side for truncation.
        let played = self.played.load(Ordering::Acquire);
        let discarded = self.discarded.load(Ordering::Acquire);
        let latency = self.latency.load(Ordering::Acquire);
        (played + discarded).saturating_sub(latency)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timeline> {
        self.timeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn played_in(segment: &Segment, heard: f64) -> f64 {
        segment
            .frozen
            .unwrap_or_else(|| (heard - segment.start).clamp(0.0, segment.end - segment.start))
    }
}

impl PlaybackTracker for FramePlaybackTracker {
    fn on_audio_delivered(
        &self,
        item_id: &str,
        content_index: u32,
        bytes: usize,
        format: AudioFormat,
    ) {
        let samples = bytes as f64 / f64::from(format.bytes_per_sample());
        let frames = samples * f64::from(self.rate) / f64::from(format.sample_rate());
        let mut tl = self.lock();
        let start = tl.delivered_end;
        tl.delivered_end += frames;
        let end = tl.delivered_end;
        match tl.segments.back_mut() {
            Some(last)
                if last.frozen.is_none()
                    && last.item_id == item_id
                    && last.content_index == content_index =>
            {
                last.end = end;
            }
            _ => {
                if tl.segments.len() == MAX_SEGMENTS {
                    tl.segments.pop_front();
                }
                tl.segments.push_back(Segment {
                    item_id: item_id.to_owned(),
                    content_index,
                    start,
                    end,
                    frozen: None,
                });
            }
        }
    }

    fn played_ms(&self, item_id: &str, content_index: u32) -> Option<u64> {
        let heard = self.heard_frames() as f64;
        let tl = self.lock();
        let mut found = false;
        let mut frames = 0.0;
        for s in tl
            .segments
            .iter()
            .filter(|s| s.item_id == item_id && s.content_index == content_index)
        {
            found = true;
            frames += Self::played_in(s, heard);
        }
        found.then(|| (frames * 1000.0 / f64::from(self.rate)).floor() as u64)
    }

    fn on_interrupted(&self) {
        let heard = self.heard_frames() as f64;
        let mut tl = self.lock();
        for s in tl.segments.iter_mut() {
            if s.frozen.is_none() {
                s.frozen = Some(Self::played_in(s, heard));
            }
        }
    }
}

/// Remembers, for the last few output callbacks, how many frames each wrote and how many of
/// those were audio (audio first, then padding), to tell how much *audio* is among the frames
/// still queued in the device. Fixed size, no allocation: lives in the audio callback.
#[cfg_attr(not(feature = "audio"), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) struct RecentOutput {
    entries: [(u32, u32); 64],
    next: usize,
    len: usize,
}

#[cfg_attr(not(feature = "audio"), allow(dead_code))]
impl RecentOutput {
    pub(crate) fn new() -> Self {
        Self {
            entries: [(0, 0); 64],
            next: 0,
            len: 0,
        }
    }

    /// One callback wrote `total` frames, the first `audio` of them audio.
    pub(crate) fn push(&mut self, total: usize, audio: usize) {
        self.entries[self.next] = (total as u32, audio.min(total) as u32);
        self.next = (self.next + 1) % self.entries.len();
        self.len = (self.len + 1).min(self.entries.len());
    }

    /// Audio frames among the last `frames` frames written. Older than the history counts as
    /// already heard.
    pub(crate) fn audio_in_last(&self, mut frames: u64) -> u64 {
        let mut audio = 0;
        let n = self.entries.len();
        for i in 0..self.len {
            if frames == 0 {
                break;
            }
            let (total, a) = self.entries[(self.next + n - 1 - i) % n];
            let (total, a) = (u64::from(total), u64::from(a));
            if frames >= total {
                audio += a;
                frames -= total;
            } else {
                // Only the tail of this callback is still queued; its audio came first.
                audio += a.saturating_sub(total - frames);
                frames = 0;
            }
        }
        audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prebuffer_waits_then_plays_then_rearms() {
        let mut p = Prebuffer::new(100);
        assert_eq!(p.plan(50, 40).audio, 0);
        assert_eq!(p.plan(100, 40).audio, 40);
        assert_eq!(p.plan(60, 40).audio, 40);
        let plan = p.plan(20, 40);
        assert_eq!((plan.audio, plan.underrun), (20, true));
        assert!(p.is_armed());
        assert_eq!(p.plan(0, 40).audio, 0);
    }

    #[test]
    fn prebuffer_gives_up_waiting_for_a_short_utterance() {
        let mut p = Prebuffer::new(100);
        // 30 frames arrive and nothing more: play after 100 frames of waiting.
        assert_eq!(p.plan(30, 40).audio, 0);
        assert_eq!(p.plan(30, 40).audio, 0);
        assert_eq!(p.plan(30, 40).audio, 0);
        assert_eq!(p.plan(30, 40).audio, 30);
    }

    #[test]
    fn end_of_stream_releases_and_is_not_an_underrun() {
        let mut p = Prebuffer::new(100);
        p.end_of_stream();
        let plan = p.plan(30, 40);
        assert_eq!((plan.audio, plan.underrun), (30, false));
        // The flag is consumed: the next dry run is an underrun again.
        assert_eq!(p.plan(200, 40).audio, 40);
        assert!(p.plan(0, 40).underrun);
    }

    #[test]
    fn jitter_buffer_counts() {
        let mut jb = JitterBuffer::<f32>::new(1_000, Duration::from_millis(10))
            .with_max_buffer(Duration::from_millis(50));
        assert_eq!(jb.push(&[1.0; 60]), 50);
        let mut out = [9.0; 30];
        assert_eq!(jb.pop(&mut out), 30);
        assert_eq!(jb.pop(&mut out), 20);
        assert_eq!(out[19..21], [1.0, 0.0]);
        let s = jb.stats();
        assert_eq!(
            (
                s.played_frames,
                s.silence_frames,
                s.underruns,
                s.overflow_frames
            ),
            (50, 10, 1, 10)
        );
        assert!(s.prebuffering);
        jb.push(&[1.0; 5]);
        assert_eq!(jb.clear(), 5);
        assert_eq!(jb.stats().cleared_frames, 5);
        assert_eq!(jb.buffered(), Duration::ZERO);
    }

    #[test]
    fn tracker_maps_items_on_the_timeline() {
        let t = FramePlaybackTracker::new(48_000);
        // 100 ms of item A then 200 ms of item B, delivered at 24 kHz PCM16.
        t.on_audio_delivered("a", 0, 2_400, AudioFormat::PCM16_24K);
        t.on_audio_delivered("a", 0, 2_400, AudioFormat::PCM16_24K);
        t.on_audio_delivered("b", 0, 9_600, AudioFormat::PCM16_24K);
        assert_eq!(t.delivered_frames(), 14_400);
        t.record_played(7_200); // 150 ms at 48 kHz
        assert_eq!(t.played_ms("a", 0), Some(100));
        assert_eq!(t.played_ms("b", 0), Some(50));
        assert_eq!(t.played_ms("b", 1), None);
        t.set_output_latency(Duration::from_millis(20));
        assert_eq!(t.played_ms("b", 0), Some(30));
    }

    #[test]
    fn interruption_freezes_and_new_items_follow_the_discard() {
        let t = FramePlaybackTracker::new(8_000);
        t.on_audio_delivered("a", 0, 8_000, AudioFormat::G711_ULAW); // 1 s
        t.record_played(2_000);
        assert_eq!(t.played_ms("a", 0), Some(250));
        t.on_interrupted();
        // The output plays a little more, then drops the rest of "a".
        t.record_played(400);
        t.record_discarded(5_600);
        assert_eq!(t.played_ms("a", 0), Some(250));
        // The next item starts where "a" ended on the timeline, i.e. right at the read head.
        t.on_audio_delivered("b", 0, 800, AudioFormat::G711_ULAW);
        assert_eq!(t.played_ms("b", 0), Some(0));
        t.record_played(400);
        assert_eq!(t.played_ms("b", 0), Some(50));
    }

    #[test]
    fn recent_output_counts_audio_still_queued() {
        let mut r = RecentOutput::new();
        r.push(100, 100);
        r.push(100, 40); // underrun: 40 audio then 60 silence
        r.push(100, 0);
        assert_eq!(r.audio_in_last(100), 0);
        assert_eq!(r.audio_in_last(150), 0);
        assert_eq!(r.audio_in_last(180), 20);
        assert_eq!(r.audio_in_last(250), 90);
        assert_eq!(r.audio_in_last(10_000), 140);
    }
}
