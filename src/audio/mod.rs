//! Audio helpers: formats, conversions, G.711, streaming resampling, playback tracking and (with
//! the `audio` feature) microphone and speaker devices.
//!
//! Nothing here knows about sessions; the session only uses [`AudioFormat`] for its
//! byte-to-milliseconds maths and a [`PlaybackTracker`](crate::PlaybackTracker) (for example
//! [`FramePlaybackTracker`]) to learn how much audio the user heard.
//!
//! | module | what |
//! |---|---|
//! | [`pcm`] | PCM16 LE bytes ↔ `i16` / `f32`, clamping, mono downmix |
//! | [`g711`] | μ-law / A-law codecs and an 8 kHz ↔ 24 kHz [`Transcoder`](g711::Transcoder) |
//! | [`StreamResampler`] | rubato-based resampling of arbitrarily chunked streams |
//! | [`JitterBuffer`], [`FramePlaybackTracker`] | playout buffering, played-position tracking |
//! | `Microphone`, `Speaker` (feature `audio`) | cpal devices with lock-free callbacks |
//!
//! Without the `audio` feature none of this needs a system library.

mod error;
mod format;
pub mod g711;
pub mod pcm;
mod playback;
mod resample;

#[cfg(feature = "audio")]
mod device;

pub use error::{AudioError, DeviceErrorKind};
pub use format::AudioFormat;
pub use playback::{FramePlaybackTracker, JitterBuffer, JitterStats};
pub use resample::{ResampleOptions, ResampleQuality, StreamResampler};

#[cfg(feature = "audio")]
pub use device::{
    AudioDeviceEvent, DeviceInfo, Microphone, MicrophoneConfig, SampleFormat, Speaker,
    SpeakerConfig, SpeakerStats, StreamDirection, input_devices, output_devices,
};
