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
//!
//! # Devices (feature `audio`)
//!
//! ## Real-time rules
//!
//! cpal calls the data callbacks on the OS audio thread with a hard deadline. Our callbacks
//! only move samples between the device buffer and a preallocated lock-free SPSC ring
//! ([`rtrb`](https://docs.rs/rtrb/0.4)), convert sample formats, and update atomics: **no
//! allocation, no locks, no blocking, no logging**. Everything else (resampling, PCM16
//! encoding, jitter-buffer refills, event delivery) happens outside the callback:
//!
//! * `Microphone`: callback → mono `f32` ring (device rate) → `Microphone::next_chunk`
//!   resamples to 24 kHz and cuts fixed-size PCM16 chunks on the async side;
//! * `Speaker`: `Speaker::push_pcm16` → feeder thread (resamples 24 kHz → device rate) →
//!   ring → callback (prebuffering, silence on underrun, flush on `Speaker::clear`), which
//!   reports played frames to a [`FramePlaybackTracker`].
//!
//! Device errors arrive as `AudioDeviceEvent`s on a channel (`Microphone::take_events`,
//! `Speaker::take_events`); nothing panics. The error callback uses a non-blocking
//! `try_send` (dropped if the channel is full).
//!
//! ## Headless use
//!
//! On Linux cpal uses ALSA. Without a sound card, point ALSA at a configuration that defines
//! the devices, e.g. `pcm.!default { type null }` in `~/.asoundrc` or a file named by
//! `ALSA_CONFIG_PATH`. ALSA's `null` device is unpaced: callbacks run thousands of times faster
//! than real time, which is fine for checking data paths but not timing.

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
#[cfg_attr(docsrs, doc(cfg(feature = "audio")))]
pub use device::{
    AudioDeviceEvent, DeviceInfo, Microphone, MicrophoneConfig, SampleFormat, Speaker,
    SpeakerConfig, SpeakerStats, StreamDirection, input_devices, output_devices,
};
