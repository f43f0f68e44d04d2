//! Microphone capture.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, Sample, SizedSample};
use tokio::sync::mpsc;

use super::{
    AudioDeviceEvent, DeviceInfo, EVENT_CAPACITY, ErrorFlags, MODEL_RATE, SampleFormat,
    StreamDirection, StreamRequest, build_with_fallback, choose_config, device_error,
    error_callback, find_device, info,
};
use crate::audio::{AudioError, StreamResampler, pcm};

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
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
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
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
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
        let (stream_config, format) = choose_config(
            &device,
            StreamDirection::Input,
            config.request,
            Duration::from_millis(10),
        )?;
        let rate = stream_config.sample_rate;
        let ring_frames = ((u128::from(rate) * config.ring.as_nanos() / 1_000_000_000) as usize)
            .max(rate as usize / 10);
        let shared = Arc::new(InputShared::default());
        let errors = Arc::new(ErrorFlags::default());
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);

        let ((stream, consumer), stream_config) = build_with_fallback(stream_config, |cfg| {
            // A fresh ring per attempt: a failed build drops its half.
            let (producer, consumer) = rtrb::RingBuffer::<f32>::new(ring_frames);
            let err_cb = error_callback(StreamDirection::Input, events_tx.clone(), errors.clone());
            let stream = with_sample_type!(format, T => build_input::<T>(
                &device, cfg, producer, shared.clone(), err_cb
            ))?;
            Ok((stream, consumer))
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
