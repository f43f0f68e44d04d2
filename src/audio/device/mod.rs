//! Microphone capture and speaker playback through [cpal](https://docs.rs/cpal/0.18).
//!
//!
//! The design notes (real-time rules, headless use) are in the [`audio`](crate::audio) module
//! documentation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait};
use tokio::sync::mpsc;

use super::{AudioError, DeviceErrorKind};

/// The model's sample rate.
const MODEL_RATE: u32 = 24_000;
/// Capacity of the event channels.
const EVENT_CAPACITY: usize = 64;

/// Which way a device stream moves audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
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
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
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
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
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
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
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
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
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
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
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
) -> Result<(cpal::StreamConfig, cpal::SampleFormat), AudioError> {
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
    Ok((config, chosen.sample_format()))
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
            other => Err($crate::audio::AudioError::Device {
                kind: $crate::audio::DeviceErrorKind::UnsupportedConfig,
                message: format!("sample format {other} is not supported"),
            }),
        }
    };
}

mod microphone;
mod speaker;

pub use microphone::{Microphone, MicrophoneConfig};
pub use speaker::{Speaker, SpeakerConfig, SpeakerStats};
