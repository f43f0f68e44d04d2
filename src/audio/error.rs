//! The error type of the audio helpers.

use std::fmt;

/// What went wrong in an audio helper or device.
///
/// Kept separate from [`crate::Error`]: audio runs beside a session, not inside it.
///
/// ```
/// use realtime_agents::audio::{AudioError, StreamResampler};
/// let err = StreamResampler::new(0, 24_000).unwrap_err();
/// assert!(matches!(err, AudioError::InvalidParameter(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// A rate, channel count, duration or buffer size is out of range.
    #[error("invalid audio parameter: {0}")]
    InvalidParameter(String),
    /// The resampler could not be built or failed.
    #[error("resampler error: {0}")]
    Resampler(String),
    /// No device matched the requested name (or there is no default device).
    #[error("audio device not found: {0}")]
    DeviceNotFound(String),
    /// The audio backend reported an error.
    #[error("audio device error ({kind}): {message}")]
    Device {
        /// What kind of failure.
        kind: DeviceErrorKind,
        /// The backend's description.
        message: String,
    },
}

/// The kind of an audio device failure, independent of the audio backend.
///
/// ```
/// use realtime_agents::audio::DeviceErrorKind;
/// assert!(DeviceErrorKind::DeviceNotAvailable.is_fatal());
/// assert!(!DeviceErrorKind::Xrun.is_fatal());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceErrorKind {
    /// The device disappeared (unplugged, driver gone).
    DeviceNotAvailable,
    /// The device is in use by someone else.
    DeviceBusy,
    /// The system rerouted the stream to another device.
    DeviceChanged,
    /// The stream must be rebuilt.
    StreamInvalidated,
    /// The requested configuration is not supported.
    UnsupportedConfig,
    /// Access to the device was refused.
    PermissionDenied,
    /// A buffer underrun or overrun: some audio was lost or padded (a glitch).
    Xrun,
    /// The audio thread could not get real-time priority.
    RealtimeDenied,
    /// The audio host (ALSA, CoreAudio, ...) is unavailable.
    HostUnavailable,
    /// Anything else.
    Other,
}

impl DeviceErrorKind {
    /// Whether the stream stopped for good and must be reopened.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            Self::DeviceNotAvailable | Self::StreamInvalidated | Self::HostUnavailable
        )
    }
}

impl fmt::Display for DeviceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::DeviceNotAvailable => "device not available",
            Self::DeviceBusy => "device busy",
            Self::DeviceChanged => "device changed",
            Self::StreamInvalidated => "stream invalidated",
            Self::UnsupportedConfig => "unsupported configuration",
            Self::PermissionDenied => "permission denied",
            Self::Xrun => "buffer underrun/overrun",
            Self::RealtimeDenied => "real-time priority denied",
            Self::HostUnavailable => "audio host unavailable",
            Self::Other => "other",
        };
        f.write_str(s)
    }
}
