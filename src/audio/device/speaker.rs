//! Speaker playback.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SizedSample};
use tokio::sync::mpsc;

use super::{
    AudioDeviceEvent, DeviceInfo, EVENT_CAPACITY, ErrorFlags, MODEL_RATE, SampleFormat,
    StreamDirection, StreamRequest, build_with_fallback, choose_config, device_error,
    error_callback, find_device, info,
};
use crate::audio::playback::{Prebuffer, RecentOutput};
use crate::audio::{AudioError, DeviceErrorKind, FramePlaybackTracker, StreamResampler, pcm};

/// How to open a [`Speaker`].
///
/// ```
/// use realtime_agents::audio::{SampleFormat, SpeakerConfig};
/// use std::time::Duration;
/// let config = SpeakerConfig::default()
///     .prebuffer(Duration::from_millis(60))
///     .device_sample_format(SampleFormat::F32);
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
pub struct SpeakerConfig {
    device: Option<String>,
    request: StreamRequest,
    input_rate: u32,
    prebuffer: Duration,
    ring: Duration,
    idle_flush: Duration,
    start_paused: bool,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            device: None,
            request: StreamRequest::default(),
            input_rate: MODEL_RATE,
            prebuffer: Duration::from_millis(40),
            ring: Duration::from_millis(500),
            idle_flush: Duration::from_millis(30),
            start_paused: false,
        }
    }
}

impl SpeakerConfig {
    /// Device id or name (default: the host's default output).
    pub fn device(mut self, name: impl Into<String>) -> Self {
        self.device = Some(name.into());
        self
    }

    /// Play at this device rate (default: the device's preferred rate, usually 48 kHz).
    pub fn device_sample_rate(mut self, rate: u32) -> Self {
        self.request.sample_rate = Some(rate);
        self
    }

    /// Play on this many channels (mono is copied to each; default: the device's preference).
    pub fn device_channels(mut self, channels: u16) -> Self {
        self.request.channels = Some(channels);
        self
    }

    /// Play in this sample format (default: the device's preference).
    pub fn device_sample_format(mut self, format: SampleFormat) -> Self {
        self.request.sample_format = Some(format);
        self
    }

    /// Device buffer (period) size in frames (default: 20 ms).
    pub fn buffer_frames(mut self, frames: u32) -> Self {
        self.request.buffer_frames = Some(frames);
        self
    }

    /// Rate of the audio pushed with [`Speaker::push_pcm16`] (default 24 kHz).
    pub fn input_rate(mut self, rate: u32) -> Self {
        self.input_rate = rate;
        self
    }

    /// Audio queued before playback starts, and again after an underrun (default 40 ms).
    pub fn prebuffer(mut self, prebuffer: Duration) -> Self {
        self.prebuffer = prebuffer;
        self
    }

    /// Capacity of the lock-free ring between the feeder thread and the callback
    /// (default 500 ms; more audio waits in the feeder).
    pub fn ring(mut self, ring: Duration) -> Self {
        self.ring = ring;
        self
    }

    /// When no audio was pushed for this long and the queue is nearly empty, the audio still
    /// held by the resampler is pushed out (default 30 ms). [`Speaker::end_of_stream`] does it
    /// at once.
    pub fn idle_flush(mut self, idle: Duration) -> Self {
        self.idle_flush = idle;
        self
    }

    /// Open the device without starting the stream; call [`Speaker::play`] to start
    /// (default: start at once, playing silence until audio arrives).
    pub fn start_paused(mut self, paused: bool) -> Self {
        self.start_paused = paused;
        self
    }
}

/// Counters of a [`Speaker`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
pub struct SpeakerStats {
    /// Audio frames (device rate) written to the device.
    pub played_frames: u64,
    /// Silence frames written (prebuffering, underruns, idle).
    pub silence_frames: u64,
    /// Frames dropped by [`Speaker::clear`].
    pub discarded_frames: u64,
    /// Times the queue ran dry while playing.
    pub underruns: u64,
    /// Data callbacks so far.
    pub callbacks: u64,
    /// Errors reported by the backend (xruns included).
    pub errors: u64,
    /// Frames waiting in the ring and the feeder (device rate).
    pub queued_frames: u64,
}

#[derive(Debug, Default)]
struct OutputShared {
    /// Frames the feeder wrote into the ring, total.
    written: AtomicU64,
    /// Frames the callback took out of the ring (played or discarded), total.
    read: AtomicU64,
    /// The callback discards ring frames below this position (set by `clear`).
    discard_until: AtomicU64,
    /// Ring position where the current utterance ends (prebuffer does not wait past it).
    eos_at: AtomicU64,
    /// Frames waiting in the feeder.
    backlog: AtomicU64,
    silence: AtomicU64,
    discarded: AtomicU64,
    underruns: AtomicU64,
    callbacks: AtomicU64,
}

enum Command {
    Audio(Vec<f32>),
    Clear,
    EndOfStream,
}

/// Speaker playback of 24 kHz mono audio (by default) with a jitter buffer and frame-accurate
/// playback tracking.
///
/// * [`push_pcm16`](Self::push_pcm16) / [`push_f32`](Self::push_f32) queue audio without
///   blocking; a feeder thread resamples it to the device rate and fills a lock-free ring;
/// * the callback waits for the prebuffer, plays, pads underruns with silence, and reports
///   audio frames it wrote, minus those still in the device buffer (from cpal's
///   `playback − callback` timestamps), to [`tracker`](Self::tracker);
/// * [`clear`](Self::clear) drops everything queued (barge-in: call it on the session's
///   `AudioInterrupted` event).
///
/// ```no_run
/// # fn demo(delta: &[u8]) -> Result<(), realtime_agents::audio::AudioError> {
/// use realtime_agents::audio::{Speaker, SpeakerConfig};
/// let speaker = Speaker::open(SpeakerConfig::default())?;
/// let tracker = speaker.tracker(); // give this to the session as its PlaybackTracker
/// speaker.push_pcm16(delta); // on each audio delta
/// speaker.clear(); // on AudioInterrupted
/// # let _ = tracker; Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
pub struct Speaker {
    stream: cpal::Stream,
    commands: Option<std_mpsc::Sender<Command>>,
    feeder: Option<JoinHandle<()>>,
    shared: Arc<OutputShared>,
    errors: Arc<ErrorFlags>,
    tracker: Arc<FramePlaybackTracker>,
    events_rx: Option<mpsc::Receiver<AudioDeviceEvent>>,
    device: DeviceInfo,
    config: cpal::StreamConfig,
    format: cpal::SampleFormat,
    input_rate: u32,
    resampler_latency: Duration,
}

impl std::fmt::Debug for Speaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speaker")
            .field("device", &self.device)
            .field("config", &self.config)
            .field("format", &self.format)
            .field("input_rate", &self.input_rate)
            .finish_non_exhaustive()
    }
}

impl Speaker {
    /// Opens and starts a playback stream (silent until audio is pushed).
    pub fn open(config: SpeakerConfig) -> Result<Self, AudioError> {
        if config.input_rate == 0 {
            return Err(AudioError::InvalidParameter(
                "input rate must be positive".into(),
            ));
        }
        let device = find_device(config.device.as_deref(), StreamDirection::Output)?;
        let info = info(&device);
        let (stream_config, format) = choose_config(
            &device,
            StreamDirection::Output,
            config.request,
            Duration::from_millis(20),
        )?;
        let rate = stream_config.sample_rate;
        let to_frames = |d: Duration| (u128::from(rate) * d.as_nanos() / 1_000_000_000) as usize;
        let ring_frames = to_frames(config.ring).max(rate as usize / 20);
        let prebuffer = to_frames(config.prebuffer).min(ring_frames / 2);
        let shared = Arc::new(OutputShared::default());
        let errors = Arc::new(ErrorFlags::default());
        let tracker = Arc::new(FramePlaybackTracker::new(rate));
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let resampler = StreamResampler::new(config.input_rate, rate)?;
        let resampler_latency = resampler.latency();

        let ((stream, producer), stream_config) = build_with_fallback(stream_config, |cfg| {
            // A fresh ring per attempt: a failed build drops its half.
            let (producer, consumer) = rtrb::RingBuffer::<f32>::new(ring_frames);
            let cb = OutputCallback {
                consumer,
                channels: usize::from(cfg.channels.max(1)),
                rate: u128::from(cfg.sample_rate),
                prebuffer: Prebuffer::new(prebuffer),
                recent: RecentOutput::new(),
                read: 0,
                last_discard: 0,
                shared: shared.clone(),
                tracker: tracker.clone(),
            };
            let err_cb = error_callback(StreamDirection::Output, events_tx.clone(), errors.clone());
            let stream =
                with_sample_type!(format, T => build_output::<T>(&device, cfg, cb, err_cb))?;
            Ok((stream, producer))
        })?;

        let (tx, rx) = std_mpsc::channel();
        let feeder = Feeder {
            commands: rx,
            producer,
            resampler,
            backlog: Vec::new(),
            backlog_pos: 0,
            scratch: Vec::new(),
            stream_in: 0,
            stream_out: 0,
            last_audio: Instant::now(),
            eos_pending: false,
            idle_flush: config.idle_flush,
            low_water: prebuffer.max(rate as usize / 100) as u64,
            shared: shared.clone(),
            tracker: tracker.clone(),
        };
        let feeder = std::thread::Builder::new()
            .name("speaker-feeder".into())
            .spawn(move || feeder.run())
            .map_err(|e| AudioError::Device {
                kind: DeviceErrorKind::Other,
                message: format!("could not start the feeder thread: {e}"),
            })?;
        if !config.start_paused {
            stream.play().map_err(device_error)?;
        }
        Ok(Self {
            stream,
            commands: Some(tx),
            feeder: Some(feeder),
            shared,
            errors,
            tracker,
            events_rx: Some(events_rx),
            device: info,
            config: stream_config,
            format,
            input_rate: config.input_rate,
            resampler_latency,
        })
    }

    /// Queues PCM16 LE mono audio at the input rate (24 kHz by default). Never blocks.
    pub fn push_pcm16(&self, bytes: &[u8]) {
        self.push_f32_vec(pcm::pcm16_to_f32_vec(bytes));
    }

    /// Queues `f32` mono audio at the input rate. Never blocks.
    pub fn push_f32(&self, samples: &[f32]) {
        self.push_f32_vec(samples.to_vec());
    }

    fn push_f32_vec(&self, samples: Vec<f32>) {
        if samples.is_empty() {
            return;
        }
        self.send(Command::Audio(samples));
    }

    fn send(&self, cmd: Command) {
        if let Some(tx) = &self.commands {
            // Fails only if the feeder is gone (shutting down); nothing to do then.
            let _ = tx.send(cmd);
        }
    }

    /// Barge-in: drops all queued audio (in the feeder, the resampler and the ring) and
    /// re-arms prebuffering. Audio pushed after this call plays normally. The dropped frames
    /// are reported to the tracker as discarded.
    pub fn clear(&self) {
        // Effective at the next callback for what already reached the ring; the feeder drops
        // the rest (audio pushed before this call but not yet resampled) when it gets the
        // command.
        let written = self.shared.written.load(Ordering::Acquire);
        self.shared
            .discard_until
            .fetch_max(written, Ordering::AcqRel);
        self.send(Command::Clear);
    }

    /// The current utterance is complete: pushes out the audio held by the resampler and plays
    /// the tail without waiting for the prebuffer target.
    pub fn end_of_stream(&self) {
        self.send(Command::EndOfStream);
    }

    /// The playback tracker fed by this speaker (rate = device rate). Hand it to the session.
    pub fn tracker(&self) -> Arc<FramePlaybackTracker> {
        self.tracker.clone()
    }

    /// The device in use.
    pub fn device(&self) -> &DeviceInfo {
        &self.device
    }

    /// The device's playback rate in Hz.
    pub fn device_sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// The device's channel count.
    pub fn device_channels(&self) -> u16 {
        self.config.channels
    }

    /// The device sample format.
    pub fn device_sample_format(&self) -> Option<SampleFormat> {
        SampleFormat::from_cpal(self.format)
    }

    /// Rate of pushed audio in Hz.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Worst-case delay added by resampling to the device rate.
    pub fn resampler_latency(&self) -> Duration {
        self.resampler_latency
    }

    /// Counters so far.
    pub fn stats(&self) -> SpeakerStats {
        let s = &self.shared;
        let written = s.written.load(Ordering::Acquire);
        let read = s.read.load(Ordering::Acquire);
        SpeakerStats {
            played_frames: self.tracker.played_frames(),
            silence_frames: s.silence.load(Ordering::Acquire),
            discarded_frames: s.discarded.load(Ordering::Acquire),
            underruns: s.underruns.load(Ordering::Acquire),
            callbacks: s.callbacks.load(Ordering::Acquire),
            errors: self.errors.count.load(Ordering::Acquire),
            queued_frames: written.saturating_sub(read) + s.backlog.load(Ordering::Acquire),
        }
    }

    /// The receiver of device events; `Some` on the first call only.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<AudioDeviceEvent>> {
        self.events_rx.take()
    }

    /// Whether a fatal device error stopped the stream.
    pub fn is_stopped(&self) -> bool {
        self.errors.fatal.load(Ordering::Acquire)
    }

    /// Pauses the device stream (queued audio stays queued).
    pub fn pause(&self) -> Result<(), AudioError> {
        self.stream.pause().map_err(device_error)
    }

    /// Resumes the device stream.
    pub fn play(&self) -> Result<(), AudioError> {
        self.stream.play().map_err(device_error)
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        // Closing the channel stops the feeder; the stream stops when dropped after this.
        self.commands = None;
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
    }
}

/// The state the output callback owns. Allocated before the stream starts.
struct OutputCallback {
    consumer: rtrb::Consumer<f32>,
    channels: usize,
    rate: u128,
    prebuffer: Prebuffer,
    recent: RecentOutput,
    read: u64,
    last_discard: u64,
    shared: Arc<OutputShared>,
    tracker: Arc<FramePlaybackTracker>,
}

impl OutputCallback {
    /// Real-time: no allocation, no locks, no blocking.
    fn fill<T: SizedSample + FromSample<f32>>(
        &mut self,
        data: &mut [T],
        info: &cpal::OutputCallbackInfo,
    ) {
        let frames = data.len() / self.channels;

        // Barge-in: skip what was queued before the clear.
        let discard_until = self.shared.discard_until.load(Ordering::Acquire);
        if discard_until != self.last_discard {
            self.last_discard = discard_until;
            self.prebuffer.reset();
        }
        if discard_until > self.read {
            let skip = ((discard_until - self.read) as usize).min(self.consumer.slots());
            if let Ok(chunk) = self.consumer.read_chunk(skip) {
                chunk.commit_all();
                self.read += skip as u64;
                self.shared
                    .discarded
                    .fetch_add(skip as u64, Ordering::Relaxed);
                self.tracker.record_discarded(skip as u64);
            }
        }

        let available = self.consumer.slots();
        let eos = self.shared.eos_at.load(Ordering::Acquire);
        if eos > self.read && eos - self.read <= available as u64 {
            self.prebuffer.end_of_stream();
        }
        let plan = self.prebuffer.plan(available, frames);

        let mut out = data.chunks_exact_mut(self.channels);
        if plan.audio > 0
            && let Ok(chunk) = self.consumer.read_chunk(plan.audio)
        {
            let (a, b) = chunk.as_slices();
            for (s, frame) in a.iter().chain(b).zip(&mut out) {
                frame.fill(T::from_sample(*s));
            }
            chunk.commit_all();
        }
        for frame in out {
            frame.fill(T::EQUILIBRIUM);
        }
        self.read += plan.audio as u64;

        // Audio still inside the device: the backend's queue before this buffer plus this
        // buffer, counting only audio frames (not padding silence).
        let ts = info.timestamp();
        let delay = ts.playback.duration_since(ts.callback);
        let delay_frames = (delay.as_nanos() * self.rate / 1_000_000_000) as u64;
        self.recent.push(frames, plan.audio);
        let unheard = self.recent.audio_in_last(delay_frames + frames as u64);
        self.tracker.set_output_latency_frames(unheard);
        self.tracker.record_played(plan.audio as u64);

        let s = &self.shared;
        s.read.store(self.read, Ordering::Release);
        s.silence
            .fetch_add((frames - plan.audio) as u64, Ordering::Relaxed);
        s.underruns
            .fetch_add(u64::from(plan.underrun), Ordering::Relaxed);
        s.callbacks.fetch_add(1, Ordering::Relaxed);
    }
}

fn build_output<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut cb: OutputCallback,
    err_cb: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream, AudioError>
where
    T: SizedSample + FromSample<f32>,
{
    device
        .build_output_stream::<T, _, _>(
            config,
            move |data: &mut [T], info: &cpal::OutputCallbackInfo| cb.fill(data, info),
            err_cb,
            None,
        )
        .map_err(device_error)
}

/// The speaker's feeder thread: resamples pushed audio and keeps the ring topped up.
struct Feeder {
    commands: std_mpsc::Receiver<Command>,
    producer: rtrb::Producer<f32>,
    resampler: StreamResampler,
    /// Resampled audio waiting for room in the ring.
    backlog: Vec<f32>,
    backlog_pos: usize,
    scratch: Vec<f32>,
    /// Input and output frames of the current utterance (since the last flush/reset).
    stream_in: u64,
    stream_out: u64,
    last_audio: Instant,
    eos_pending: bool,
    idle_flush: Duration,
    low_water: u64,
    shared: Arc<OutputShared>,
    tracker: Arc<FramePlaybackTracker>,
}

impl Feeder {
    const POLL: Duration = Duration::from_millis(2);

    fn run(mut self) {
        loop {
            // Poll while there is work pending (backlog to write, a resampler tail to flush);
            // otherwise sleep until the next command.
            let busy =
                self.backlog_pos < self.backlog.len() || self.stream_in > 0 || self.eos_pending;
            let received = if busy {
                self.commands.recv_timeout(Self::POLL)
            } else {
                self.commands
                    .recv()
                    .map_err(|_| std_mpsc::RecvTimeoutError::Disconnected)
            };
            match received {
                Ok(cmd) => self.handle(cmd),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            // Take everything already sent before writing, so a clear drops audio queued
            // ahead of it without it ever reaching the ring.
            loop {
                match self.commands.try_recv() {
                    Ok(cmd) => self.handle(cmd),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => return,
                }
            }
            self.maybe_idle_flush();
            self.write_ring();
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Audio(samples) => {
                self.last_audio = Instant::now();
                self.stream_in += samples.len() as u64;
                self.scratch.clear();
                self.stream_out += self.resampler.push(&samples, &mut self.scratch) as u64;
                self.backlog.extend_from_slice(&self.scratch);
            }
            Command::Clear => {
                // Everything pushed so far that has not reached the ring is dropped here;
                // what is in the ring is skipped by the callback.
                let in_backlog = (self.backlog.len() - self.backlog_pos) as u64;
                let expected = (self.stream_in * u64::from(self.resampler.out_rate()))
                    .div_ceil(u64::from(self.resampler.in_rate()));
                let in_resampler = expected.saturating_sub(self.stream_out);
                self.tracker.record_discarded(in_backlog + in_resampler);
                self.shared
                    .discarded
                    .fetch_add(in_backlog, Ordering::Relaxed);
                self.backlog.clear();
                self.backlog_pos = 0;
                self.resampler.reset();
                self.stream_in = 0;
                self.stream_out = 0;
                self.eos_pending = false;
                let written = self.shared.written.load(Ordering::Acquire);
                self.shared
                    .discard_until
                    .fetch_max(written, Ordering::AcqRel);
            }
            Command::EndOfStream => self.flush_resampler(),
        }
        self.publish_backlog();
    }

    fn flush_resampler(&mut self) {
        self.scratch.clear();
        self.resampler.flush(&mut self.scratch);
        self.backlog.extend_from_slice(&self.scratch);
        self.stream_in = 0;
        self.stream_out = 0;
        self.eos_pending = true;
    }

    fn maybe_idle_flush(&mut self) {
        if self.stream_in == 0 || self.last_audio.elapsed() < self.idle_flush {
            return;
        }
        let queued = self
            .shared
            .written
            .load(Ordering::Acquire)
            .saturating_sub(self.shared.read.load(Ordering::Acquire))
            + (self.backlog.len() - self.backlog_pos) as u64;
        if queued <= self.low_water {
            self.flush_resampler();
            self.publish_backlog();
        }
    }

    fn write_ring(&mut self) {
        if self.backlog_pos < self.backlog.len() {
            let (done, _) = self
                .producer
                .push_partial_slice(&self.backlog[self.backlog_pos..]);
            let n = done.len();
            self.backlog_pos += n;
            self.shared.written.fetch_add(n as u64, Ordering::AcqRel);
            if self.backlog_pos == self.backlog.len() {
                self.backlog.clear();
                self.backlog_pos = 0;
            } else if self.backlog_pos > self.backlog.len() / 2 {
                self.backlog.drain(..self.backlog_pos);
                self.backlog_pos = 0;
            }
            self.publish_backlog();
        }
        if self.eos_pending && self.backlog_pos == self.backlog.len() {
            self.eos_pending = false;
            let written = self.shared.written.load(Ordering::Acquire);
            self.shared.eos_at.store(written, Ordering::Release);
        }
    }

    fn publish_backlog(&self) {
        self.shared.backlog.store(
            (self.backlog.len() - self.backlog_pos) as u64,
            Ordering::Release,
        );
    }
}
