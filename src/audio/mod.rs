//! Audio helpers: formats, conversions and playback tracking.
//!
//! Nothing here knows about sessions; the session only uses [`AudioFormat`] for its
//! byte-to-milliseconds maths.

mod format;

pub use format::AudioFormat;
