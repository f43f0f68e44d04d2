//! The realtime session: one task that owns the connection and all session state.

mod playback;

pub use playback::{PlaybackTracker, WallClockPlaybackTracker};
