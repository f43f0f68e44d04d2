//! How much of the assistant's audio the user has actually heard.
//!
//! On an interruption the session tells the server where the user cut the assistant off
//! (`conversation.item.truncate`), so the model forgets what was never heard. The position comes
//! from a [`PlaybackTracker`]. The default, [`WallClockPlaybackTracker`], assumes playback starts
//! when the first audio chunk is delivered and runs in real time; apps that buffer audio (a jitter
//! buffer, a sound card, a phone line) should report what the output really consumed.

use std::sync::Mutex;
use std::time::Instant;

use crate::audio::AudioFormat;

/// Reports how much of each assistant audio item has been played.
///
/// The session calls [`on_audio_delivered`](Self::on_audio_delivered) for every audio chunk it
/// hands to the application, [`played_ms`](Self::played_ms) when it needs to truncate, and
/// [`on_interrupted`](Self::on_interrupted) after an interruption. Implementations are shared
/// between the session task and the audio output (`Arc`), so they take `&self`.
///
/// ```
/// use realtime_agents::{PlaybackTracker, audio::AudioFormat};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// A tracker fed by a phone gateway's playback acknowledgements.
/// #[derive(Default)]
/// struct Acked(AtomicU64);
///
/// impl PlaybackTracker for Acked {
///     fn on_audio_delivered(&self, _item: &str, _content: u32, _bytes: usize, _f: AudioFormat) {}
///     fn played_ms(&self, _item: &str, _content: u32) -> Option<u64> {
///         Some(self.0.load(Ordering::Relaxed))
///     }
///     fn on_interrupted(&self) {
///         self.0.store(0, Ordering::Relaxed);
///     }
/// }
/// ```
pub trait PlaybackTracker: Send + Sync + 'static {
    /// The session delivered `bytes` bytes of audio in `format` for `(item_id, content_index)`.
    fn on_audio_delivered(
        &self,
        item_id: &str,
        content_index: u32,
        bytes: usize,
        format: AudioFormat,
    );

    /// Milliseconds of `(item_id, content_index)` played so far, or `None` if the tracker knows
    /// nothing of that item. The session clamps the answer to the audio it received.
    fn played_ms(&self, item_id: &str, content_index: u32) -> Option<u64>;

    /// Playback was interrupted; whatever was queued has been (or must be) discarded.
    fn on_interrupted(&self);
}

/// The default tracker: elapsed wall-clock time since the first chunk of the current item.
///
/// ```
/// use realtime_agents::{PlaybackTracker, WallClockPlaybackTracker, audio::AudioFormat};
/// let t = WallClockPlaybackTracker::default();
/// assert_eq!(t.played_ms("item_1", 0), None);
/// t.on_audio_delivered("item_1", 0, 960, AudioFormat::PCM16_24K);
/// assert!(t.played_ms("item_1", 0).is_some());
/// ```
#[derive(Debug, Default)]
pub struct WallClockPlaybackTracker {
    current: Mutex<Option<(String, u32, Instant)>>,
}

impl PlaybackTracker for WallClockPlaybackTracker {
    fn on_audio_delivered(
        &self,
        item_id: &str,
        content_index: u32,
        _bytes: usize,
        _format: AudioFormat,
    ) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let same =
            matches!(&*current, Some((id, idx, _)) if id == item_id && *idx == content_index);
        if !same {
            *current = Some((item_id.to_owned(), content_index, Instant::now()));
        }
    }

    fn played_ms(&self, item_id: &str, content_index: u32) -> Option<u64> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match &*current {
            Some((id, idx, start)) if id == item_id && *idx == content_index => {
                Some(start.elapsed().as_millis() as u64)
            }
            _ => None,
        }
    }

    fn on_interrupted(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl std::fmt::Debug for dyn PlaybackTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlaybackTracker")
    }
}
