//! Microphone capture and speaker playback through [cpal](https://docs.rs/cpal/0.18).
//!
//! # Real-time rules
//!
//! cpal calls the data callbacks on the OS audio thread with a hard deadline. Our callbacks
//! only move samples between the device buffer and a preallocated lock-free SPSC ring
//! ([`rtrb`](https://docs.rs/rtrb/0.4)), convert sample formats, and update atomics: **no
//! allocation, no locks, no blocking, no logging**. Everything else (resampling, PCM16
//! encoding, jitter-buffer refills, event delivery) happens outside the callback:
//!
//! * [`Microphone`]: callback → mono `f32` ring (device rate) → [`Microphone::next_chunk`]
//!   resamples to 24 kHz and cuts fixed-size PCM16 chunks on the async side;
//! * [`Speaker`]: [`Speaker::push_pcm16`] → feeder thread (resamples 24 kHz → device rate) →
//!   ring → callback (prebuffering, silence on underrun, flush on [`Speaker::clear`]), which
//!   reports played frames to a [`FramePlaybackTracker`].
//!
//! Device errors arrive as [`AudioDeviceEvent`]s on a channel ([`Microphone::take_events`],
//! [`Speaker::take_events`]); nothing panics. The error callback uses a non-blocking
//! `try_send` (dropped if the channel is full).
//!
//! # Headless use
//!
//! On Linux cpal uses ALSA. Without a sound card, point ALSA at a configuration that defines
//! the devices, e.g. `pcm.!default { type null }` in `~/.asoundrc` or a file named by
//! `ALSA_CONFIG_PATH`. ALSA's `null` device is unpaced: callbacks run thousands of times faster
//! than real time, which is fine for checking data paths but not timing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SizedSample};
use tokio::sync::mpsc;

use super::playback::{Prebuffer, RecentOutput};
use super::{AudioError, DeviceErrorKind, FramePlaybackTracker, StreamResampler, pcm};

/// The model's sample rate.
const MODEL_RATE: u32 = 24_000;
/// Capacity of the event channels.
const EVENT_CAPACITY: usize = 64;

/// Which way a device stream moves audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamDirection {
    /// Capture (microphone).
    Input,
    /// Playback (speaker).
    Output,
}

/// Something happened to a device stream.
///
/// ```no_run
/// # async fn demo() -> Result<(), realtime_agents::audio::AudioError> {
/// use realtime_agents::audio::{AudioDeviceEvent, Microphone, MicrophoneConfig};
/// let mut mic = Microphone::open(MicrophoneConfig::default())?;
/// let mut events = mic.take_events().expect("first call");
/// tokio::spawn(async move {
///     while let Some(event) = events.recv().await {
///         if let AudioDeviceEvent::Error { kind, message, .. } = event {
///             eprintln!("microphone: {kind}: {message}");
///         }
///     }
/// });
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AudioDeviceEvent {
    /// The backend reported an error. After a fatal one ([`DeviceErrorKind::is_fatal`]) the
    /// stream has stopped and must be reopened.
    Error {
        /// Which stream.
        direction: StreamDirection,
        /// What kind of error.
        kind: DeviceErrorKind,
        /// The backend's description.
        message: String,
    },
    /// The capture ring was full (the consumer did not read for a while); frames were lost.
    CaptureOverrun {
        /// Frames lost since the previous report.
        dropped_frames: u64,
    },
}

/// Sample formats a device stream can be opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SampleFormat {
    /// Signed 8-bit.
    I8,
    /// Signed 16-bit.
    I16,
    /// Signed 32-bit.
    I32,
    /// Unsigned 8-bit.
    U8,
    /// Unsigned 16-bit.
    U16,
    /// Unsigned 32-bit.
    U32,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
}

impl SampleFormat {
    fn to_cpal(self) -> cpal::SampleFormat {
        match self {
            Self::I8 => cpal::SampleFormat::I8,
            Self::I16 => cpal::SampleFormat::I16,
            Self::I32 => cpal::SampleFormat::I32,
            Self::U8 => cpal::SampleFormat::U8,
            Self::U16 => cpal::SampleFormat::U16,
            Self::U32 => cpal::SampleFormat::U32,
            Self::F32 => cpal::SampleFormat::F32,
            Self::F64 => cpal::SampleFormat::F64,
        }
    }

    fn from_cpal(f: cpal::SampleFormat) -> Option<Self> {
        Some(match f {
            cpal::SampleFormat::I8 => Self::I8,
            cpal::SampleFormat::I16 => Self::I16,
            cpal::SampleFormat::I32 => Self::I32,
            cpal::SampleFormat::U8 => Self::U8,
            cpal::SampleFormat::U16 => Self::U16,
            cpal::SampleFormat::U32 => Self::U32,
            cpal::SampleFormat::F32 => Self::F32,
            cpal::SampleFormat::F64 => Self::F64,
            _ => return None,
        })
    }

    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

/// A device as listed by [`input_devices`] / [`output_devices`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// Stable backend id (for ALSA, the PCM name such as `default` or `hw:CARD=PCH,DEV=0`).
    pub id: String,
    /// Human-readable name.
    pub name: String,
}

/// Lists capture devices of the default host.
///
/// ```no_run
/// for d in realtime_agents::audio::input_devices()? {
///     println!("{} ({})", d.name, d.id);
/// }
/// # Ok::<(), realtime_agents::audio::AudioError>(())
/// ```
pub fn input_devices() -> Result<Vec<DeviceInfo>, AudioError> {
    let host = cpal::default_host();
    let devices = host.input_devices().map_err(device_error)?;
    Ok(devices.map(|d| info(&d)).collect())
}

/// Lists playback devices of the default host.
///
/// ```no_run
/// let names: Vec<_> = realtime_agents::audio::output_devices()?.into_iter().map(|d| d.id).collect();
/// # Ok::<(), realtime_agents::audio::AudioError>(())
/// ```
pub fn output_devices() -> Result<Vec<DeviceInfo>, AudioError> {
    let host = cpal::default_host();
    let devices = host.output_devices().map_err(device_error)?;
    Ok(devices.map(|d| info(&d)).collect())
}

fn info(d: &cpal::Device) -> DeviceInfo {
    let id = d.id().map(|i| i.id().to_owned()).unwrap_or_default();
    let name = d
        .description()
        .map(|desc| desc.name().to_owned())
        .unwrap_or_else(|_| id.clone());
    DeviceInfo { id, name }
}

fn map_kind(kind: cpal::ErrorKind) -> DeviceErrorKind {
    use cpal::ErrorKind as K;
    match kind {
        K::DeviceNotAvailable => DeviceErrorKind::DeviceNotAvailable,
        K::DeviceBusy => DeviceErrorKind::DeviceBusy,
        K::DeviceChanged => DeviceErrorKind::DeviceChanged,
        K::StreamInvalidated => DeviceErrorKind::StreamInvalidated,
        K::UnsupportedConfig | K::UnsupportedOperation | K::InvalidInput => {
            DeviceErrorKind::UnsupportedConfig
        }
        K::PermissionDenied => DeviceErrorKind::PermissionDenied,
        K::Xrun => DeviceErrorKind::Xrun,
        K::RealtimeDenied => DeviceErrorKind::RealtimeDenied,
        K::HostUnavailable => DeviceErrorKind::HostUnavailable,
        _ => DeviceErrorKind::Other,
    }
}

fn device_error(e: cpal::Error) -> AudioError {
    AudioError::Device {
        kind: map_kind(e.kind()),
        message: e.to_string(),
    }
}

/// Finds a device by id or name, or the default one.
fn find_device(name: Option<&str>, direction: StreamDirection) -> Result<cpal::Device, AudioError> {
    let host = cpal::default_host();
    let Some(name) = name else {
        let d = match direction {
            StreamDirection::Input => host.default_input_device(),
            StreamDirection::Output => host.default_output_device(),
        };
        return d.ok_or_else(|| AudioError::DeviceNotFound("no default device".into()));
    };
    let devices = host.devices().map_err(device_error)?;
    let mut by_name = None;
    for d in devices {
        let DeviceInfo { id, name: n } = info(&d);
        if id == name {
            return Ok(d);
        }
        if n == name && by_name.is_none() {
            by_name = Some(d);
        }
    }
    by_name.ok_or_else(|| AudioError::DeviceNotFound(name.to_owned()))
}

/// What the caller asked for; `None` = the device's preference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct StreamRequest {
    sample_rate: Option<u32>,
    channels: Option<u16>,
    sample_format: Option<SampleFormat>,
    buffer_frames: Option<u32>,
}

/// Picks a stream configuration: the device default unless the request pins something, and a
/// fixed buffer size when the device supports it (ALSA's default can be huge).
fn choose_config(
    device: &cpal::Device,
    direction: StreamDirection,
    req: StreamRequest,
    default_buffer: Duration,
) -> Result<
    (
        cpal::StreamConfig,
        cpal::SampleFormat,
        cpal::SupportedBufferSize,
    ),
    AudioError,
> {
    let (default, ranges) = match direction {
        StreamDirection::Input => (
            device.default_input_config(),
            device
                .supported_input_configs()
                .map(|r| r.collect::<Vec<_>>()),
        ),
        StreamDirection::Output => (
            device.default_output_config(),
            device
                .supported_output_configs()
                .map(|r| r.collect::<Vec<_>>()),
        ),
    };
    let default = default.ok();
    let usable = |f: cpal::SampleFormat| SampleFormat::from_cpal(f).is_some();
    let wants = |rate: u32, channels: u16, format: cpal::SampleFormat| {
        req.sample_rate.is_none_or(|r| r == rate)
            && req.channels.is_none_or(|c| c == channels)
            && req.sample_format.is_none_or(|f| f.to_cpal() == format)
            && usable(format)
    };
    let chosen = match &default {
        Some(d) if wants(d.sample_rate(), d.channels(), d.sample_format()) => Some(*d),
        _ => {
            let ranges = ranges.map_err(device_error)?;
            let preferred_rate = req
                .sample_rate
                .or(default.as_ref().map(|d| d.sample_rate()))
                .unwrap_or(48_000);
            ranges
                .into_iter()
                .filter(|r| {
                    req.channels.is_none_or(|c| c == r.channels())
                        && req
                            .sample_format
                            .is_none_or(|f| f.to_cpal() == r.sample_format())
                        && usable(r.sample_format())
                })
                .find_map(|r| match req.sample_rate {
                    Some(rate) => r.try_with_sample_rate(rate),
                    None => r
                        .try_with_sample_rate(preferred_rate)
                        .or_else(|| r.try_with_standard_sample_rate()),
                })
        }
    };
    let chosen = chosen.ok_or_else(|| AudioError::Device {
        kind: DeviceErrorKind::UnsupportedConfig,
        message: format!("no supported {direction:?} configuration matches {req:?}"),
    })?;
    let mut config = chosen.config();
    let frames = req.buffer_frames.unwrap_or_else(|| {
        (u128::from(config.sample_rate) * default_buffer.as_nanos() / 1_000_000_000) as u32
    });
    config.buffer_size = match chosen.buffer_size() {
        cpal::SupportedBufferSize::Range { min, max } => {
            cpal::BufferSize::Fixed(frames.clamp(*min, *max))
        }
        cpal::SupportedBufferSize::Unknown => cpal::BufferSize::Fixed(frames),
    };
    Ok((config, chosen.sample_format(), *chosen.buffer_size()))
}

/// Builds a stream with the requested fixed buffer, falling back to the backend's default
/// buffer size if the fixed one is refused.
fn build_with_fallback<S>(
    mut config: cpal::StreamConfig,
    build: impl Fn(cpal::StreamConfig) -> Result<S, AudioError>,
) -> Result<(S, cpal::StreamConfig), AudioError> {
    match build(config) {
        Ok(s) => Ok((s, config)),
        Err(AudioError::Device {
            kind: DeviceErrorKind::UnsupportedConfig,
            ..
        }) if config.buffer_size != cpal::BufferSize::Default => {
            config.buffer_size = cpal::BufferSize::Default;
            build(config).map(|s| (s, config))
        }
        Err(e) => Err(e),
    }
}

/// The error callback: count, flag fatal errors, forward without blocking.
fn error_callback(
    direction: StreamDirection,
    events: mpsc::Sender<AudioDeviceEvent>,
    errors: Arc<ErrorFlags>,
) -> impl FnMut(cpal::Error) + Send + 'static {
    move |err: cpal::Error| {
        let kind = map_kind(err.kind());
        errors.count.fetch_add(1, Ordering::Relaxed);
        if kind == DeviceErrorKind::Xrun {
            errors.xruns.fetch_add(1, Ordering::Relaxed);
        }
        if kind.is_fatal() {
            errors.fatal.store(true, Ordering::Release);
        }
        let _ = events.try_send(AudioDeviceEvent::Error {
            direction,
            kind,
            message: err.to_string(),
        });
    }
}

#[derive(Debug, Default)]
struct ErrorFlags {
    count: AtomicU64,
    xruns: AtomicU64,
    fatal: AtomicBool,
}

macro_rules! with_sample_type {
    ($format:expr, $t:ident => $body:expr) => {
        match $format {
            cpal::SampleFormat::I8 => {
                type $t = i8;
                $body
            }
            cpal::SampleFormat::I16 => {
                type $t = i16;
                $body
            }
            cpal::SampleFormat::I32 => {
                type $t = i32;
                $body
            }
            cpal::SampleFormat::U8 => {
                type $t = u8;
                $body
            }
            cpal::SampleFormat::U16 => {
                type $t = u16;
                $body
            }
            cpal::SampleFormat::U32 => {
                type $t = u32;
                $body
            }
            cpal::SampleFormat::F32 => {
                type $t = f32;
                $body
            }
            cpal::SampleFormat::F64 => {
                type $t = f64;
                $body
            }
            other => Err(AudioError::Device {
                kind: DeviceErrorKind::UnsupportedConfig,
                message: format!("sample format {other} is not supported"),
            }),
        }
    };
}

// ------------------------------------------------------------------------------------------
// Microphone

/// How to open a [`Microphone`].
///
/// ```
/// use realtime_agents::audio::MicrophoneConfig;
/// use std::time::Duration;
/// let config = MicrophoneConfig::default()
///     .device("default")
///     .chunk(Duration::from_millis(40));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MicrophoneConfig {
    device: Option<String>,
    request: StreamRequest,
    chunk: Duration,
    output_rate: u32,
    ring: Duration,
}

impl Default for MicrophoneConfig {
    fn default() -> Self {
        Self {
            device: None,
            request: StreamRequest::default(),
            chunk: Duration::from_millis(20),
            output_rate: MODEL_RATE,
            ring: Duration::from_secs(2),
        }
    }
}

impl MicrophoneConfig {
    /// Device id or name (default: the host's default input).
    pub fn device(mut self, name: impl Into<String>) -> Self {
        self.device = Some(name.into());
        self
    }

    /// Capture at this device rate (default: the device's preferred rate, usually 48 kHz).
    pub fn device_sample_rate(mut self, rate: u32) -> Self {
        self.request.sample_rate = Some(rate);
        self
    }

    /// Capture this many channels (downmixed to mono; default: the device's preference).
    pub fn device_channels(mut self, channels: u16) -> Self {
        self.request.channels = Some(channels);
        self
    }

    /// Capture in this sample format (default: the device's preference).
    pub fn device_sample_format(mut self, format: SampleFormat) -> Self {
        self.request.sample_format = Some(format);
        self
    }

    /// Device buffer (period) size in frames (default: 10 ms).
    pub fn buffer_frames(mut self, frames: u32) -> Self {
        self.request.buffer_frames = Some(frames);
        self
    }

    /// Duration of each chunk yielded by [`Microphone::next_chunk`] (default 20 ms).
    pub fn chunk(mut self, chunk: Duration) -> Self {
        self.chunk = chunk;
        self
    }

    /// Output sample rate of the chunks (default 24 kHz, the model's rate).
    pub fn output_rate(mut self, rate: u32) -> Self {
        self.output_rate = rate;
        self
    }

    /// How much captured audio the lock-free ring holds before frames are dropped
    /// (default 2 s).
    pub fn ring(mut self, ring: Duration) -> Self {
        self.ring = ring;
        self
    }
}

#[derive(Debug, Default)]
struct InputShared {
    captured: AtomicU64,
    overrun: AtomicU64,
    callbacks: AtomicU64,
}

/// Microphone capture: mono PCM16 LE chunks at 24 kHz (by default), ready for
/// `input_audio_buffer.append`.
///
/// The callback downmixes to mono `f32` and pushes into a lock-free ring; [`next_chunk`]
/// (async) / [`try_next_chunk`] drain the ring, resample to the output rate and cut chunks of
/// exactly the configured duration. The stream starts playing when opened; dropping the
/// microphone stops it.
///
/// [`next_chunk`]: Self::next_chunk
/// [`try_next_chunk`]: Self::try_next_chunk
///
/// ```no_run
/// # async fn demo() -> Result<(), realtime_agents::audio::AudioError> {
/// use realtime_agents::audio::{Microphone, MicrophoneConfig};
/// let mut mic = Microphone::open(MicrophoneConfig::default())?;
/// while let Some(chunk) = mic.next_chunk().await {
///     assert_eq!(chunk.len(), 960); // 20 ms of 24 kHz PCM16
///     // session.append_audio(chunk)...
/// }
/// # Ok(()) }
/// ```
pub struct Microphone {
    stream: cpal::Stream,
    consumer: rtrb::Consumer<f32>,
    resampler: StreamResampler,
    resampled: Vec<f32>,
    chunk_samples: usize,
    poll: Duration,
    shared: Arc<InputShared>,
    errors: Arc<ErrorFlags>,
    events_tx: mpsc::Sender<AudioDeviceEvent>,
    events_rx: Option<mpsc::Receiver<AudioDeviceEvent>>,
    reported_overrun: u64,
    device: DeviceInfo,
    config: cpal::StreamConfig,
    format: cpal::SampleFormat,
}

impl std::fmt::Debug for Microphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microphone")
            .field("device", &self.device)
            .field("config", &self.config)
            .field("format", &self.format)
            .field("resampler", &self.resampler)
            .finish_non_exhaustive()
    }
}

impl Microphone {
    /// Opens and starts a capture stream.
    pub fn open(config: MicrophoneConfig) -> Result<Self, AudioError> {
        if config.chunk.is_zero() || config.output_rate == 0 {
            return Err(AudioError::InvalidParameter(
                "chunk duration and output rate must be positive".into(),
            ));
        }
        let device = find_device(config.device.as_deref(), StreamDirection::Input)?;
        let info = info(&device);
        let (stream_config, format, _) = choose_config(
            &device,
            StreamDirection::Input,
            config.request,
            Duration::from_millis(10),
        )?;
        let rate = stream_config.sample_rate;
        let ring_frames = ((u128::from(rate) * config.ring.as_nanos() / 1_000_000_000) as usize)
            .max(rate as usize / 10);
        let (producer, consumer) = rtrb::RingBuffer::<f32>::new(ring_frames);
        let shared = Arc::new(InputShared::default());
        let errors = Arc::new(ErrorFlags::default());
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);

        let producer = std::sync::Mutex::new(Some(producer));
        let (stream, stream_config) = build_with_fallback(stream_config, |cfg| {
            // The producer moves into whichever build attempt succeeds.
            let Some(producer) = producer.lock().ok().and_then(|mut p| p.take()) else {
                return Err(AudioError::InvalidParameter("stream already built".into()));
            };
            let err_cb = error_callback(StreamDirection::Input, events_tx.clone(), errors.clone());
            with_sample_type!(format, T => build_input::<T>(
                &device, cfg, producer, shared.clone(), err_cb
            ))
        })?;
        stream.play().map_err(device_error)?;

        let out_rate = config.output_rate;
        let resampler = StreamResampler::new(rate, out_rate)?;
        let chunk_samples =
            ((u128::from(out_rate) * config.chunk.as_nanos() / 1_000_000_000) as usize).max(1);
        let poll = (config.chunk / 4).clamp(Duration::from_millis(1), Duration::from_millis(10));
        Ok(Self {
            stream,
            consumer,
            resampled: Vec::with_capacity(chunk_samples * 4 + resampler.max_output_frames(4096)),
            resampler,
            chunk_samples,
            poll,
            shared,
            errors,
            events_tx,
            events_rx: Some(events_rx),
            reported_overrun: 0,
            device: info,
            config: stream_config,
            format,
        })
    }

    /// The device in use.
    pub fn device(&self) -> &DeviceInfo {
        &self.device
    }

    /// The device's capture rate in Hz.
    pub fn device_sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// The device's channel count (downmixed to mono).
    pub fn device_channels(&self) -> u16 {
        self.config.channels
    }

    /// The device sample format.
    pub fn device_sample_format(&self) -> Option<SampleFormat> {
        SampleFormat::from_cpal(self.format)
    }

    /// Output rate of the chunks in Hz.
    pub fn output_rate(&self) -> u32 {
        self.resampler.out_rate()
    }

    /// Bytes in each chunk (`2 ×` samples).
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_samples * 2
    }

    /// Worst-case resampling delay between capture and output.
    pub fn resampler_latency(&self) -> Duration {
        self.resampler.latency()
    }

    /// Frames captured by the device callback so far.
    pub fn captured_frames(&self) -> u64 {
        self.shared.captured.load(Ordering::Acquire)
    }

    /// Frames dropped because the ring was full.
    pub fn overrun_frames(&self) -> u64 {
        self.shared.overrun.load(Ordering::Acquire)
    }

    /// Errors reported by the backend so far (xruns included).
    pub fn error_count(&self) -> u64 {
        self.errors.count.load(Ordering::Acquire)
    }

    /// The receiver of device events; `Some` on the first call only.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<AudioDeviceEvent>> {
        self.events_rx.take()
    }

    /// Whether a fatal device error stopped the stream.
    pub fn is_stopped(&self) -> bool {
        self.errors.fatal.load(Ordering::Acquire)
    }

    /// Pauses capture.
    pub fn pause(&self) -> Result<(), AudioError> {
        self.stream.pause().map_err(device_error)
    }

    /// Resumes capture.
    pub fn play(&self) -> Result<(), AudioError> {
        self.stream.play().map_err(device_error)
    }

    /// Drops captured audio not yet returned (e.g. after muting).
    pub fn discard_buffered(&mut self) {
        let n = self.consumer.slots();
        if let Ok(chunk) = self.consumer.read_chunk(n) {
            chunk.commit_all();
        }
        self.resampler.reset();
        self.resampled.clear();
    }

    /// The next chunk if one is ready, without waiting.
    pub fn try_next_chunk(&mut self) -> Option<Vec<u8>> {
        self.drain_ring();
        if self.resampled.len() < self.chunk_samples {
            return None;
        }
        let chunk = pcm::f32_to_pcm16_vec(&self.resampled[..self.chunk_samples]);
        self.resampled.drain(..self.chunk_samples);
        Some(chunk)
    }

    /// Waits for the next chunk of PCM16 LE mono audio at the output rate. `None` once the
    /// stream stopped with a fatal error (see [`take_events`](Self::take_events)).
    ///
    /// Polls the ring every quarter chunk (1–10 ms): the audio callback cannot wake a task
    /// without risking a lock.
    pub async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(chunk) = self.try_next_chunk() {
                return Some(chunk);
            }
            if self.is_stopped() {
                return None;
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    fn drain_ring(&mut self) {
        let n = self.consumer.slots();
        if n > 0
            && let Ok(chunk) = self.consumer.read_chunk(n)
        {
            let (a, b) = chunk.as_slices();
            self.resampler.push(a, &mut self.resampled);
            self.resampler.push(b, &mut self.resampled);
            chunk.commit_all();
        }
        let overrun = self.shared.overrun.load(Ordering::Acquire);
        if overrun > self.reported_overrun {
            let _ = self.events_tx.try_send(AudioDeviceEvent::CaptureOverrun {
                dropped_frames: overrun - self.reported_overrun,
            });
            self.reported_overrun = overrun;
        }
    }
}

fn build_input<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut producer: rtrb::Producer<f32>,
    shared: Arc<InputShared>,
    err_cb: impl FnMut(cpal::Error) + Send + 'static,
) -> Result<cpal::Stream, AudioError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let scale = 1.0 / channels as f32;
    // Real-time callback: no allocation, no locks, no blocking.
    let data_cb = move |data: &[T], _info: &cpal::InputCallbackInfo| {
        let frames = data.len() / channels;
        let room = producer.slots().min(frames);
        if let Ok(chunk) = producer.write_chunk_uninit(room) {
            chunk.fill_from_iter(
                data.chunks_exact(channels)
                    .map(|frame| frame.iter().map(|s| f32::from_sample(*s)).sum::<f32>() * scale),
            );
        }
        shared.captured.fetch_add(frames as u64, Ordering::Release);
        if room < frames {
            shared
                .overrun
                .fetch_add((frames - room) as u64, Ordering::Release);
        }
        shared.callbacks.fetch_add(1, Ordering::Relaxed);
    };
    device
        .build_input_stream::<T, _, _>(config, data_cb, err_cb, None)
        .map_err(device_error)
}

// ------------------------------------------------------------------------------------------
// Speaker

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
        let (stream_config, format, _) = choose_config(
            &device,
            StreamDirection::Output,
            config.request,
            Duration::from_millis(20),
        )?;
        let rate = stream_config.sample_rate;
        let to_frames = |d: Duration| (u128::from(rate) * d.as_nanos() / 1_000_000_000) as usize;
        let ring_frames = to_frames(config.ring).max(rate as usize / 20);
        let prebuffer = to_frames(config.prebuffer).min(ring_frames / 2);
        let (producer, consumer) = rtrb::RingBuffer::<f32>::new(ring_frames);
        let shared = Arc::new(OutputShared::default());
        let errors = Arc::new(ErrorFlags::default());
        let tracker = Arc::new(FramePlaybackTracker::new(rate));
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let resampler = StreamResampler::new(config.input_rate, rate)?;
        let resampler_latency = resampler.latency();

        let consumer = std::sync::Mutex::new(Some(consumer));
        let (stream, stream_config) = build_with_fallback(stream_config, |cfg| {
            let Some(consumer) = consumer.lock().ok().and_then(|mut c| c.take()) else {
                return Err(AudioError::InvalidParameter("stream already built".into()));
            };
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
            with_sample_type!(format, T => build_output::<T>(&device, cfg, cb, err_cb))
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
            match self.commands.recv_timeout(Self::POLL) {
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
