//! Playback positions acknowledged by the far end (a page's playback worklet, a carrier's
//! `mark` echoes), as a [`PlaybackTracker`].

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::PlaybackTracker;
use crate::audio::AudioFormat;

/// Items remembered at once: the one playing and a few before it (older acknowledgements
/// arrive late, never for long).
const REMEMBERED: usize = 8;

/// A [`PlaybackTracker`] that knows only what the listener's side confirmed it played.
///
/// The gateway makes one per call. Audio the session delivered counts as unplayed (0 ms)
/// until an acknowledgement says otherwise; acknowledgements only move forward, and those for
/// items the session never delivered (or forgot after an interruption) are ignored, so a
/// client cannot make the tracker grow. The session clamps the answer to the audio it
/// received, as it does for any tracker.
///
/// ```
/// use realtime_agents::PlaybackTracker;
/// use realtime_agents::audio::AudioFormat;
/// use realtime_agents::gateway::AckPlaybackTracker;
///
/// let tracker = AckPlaybackTracker::new();
/// assert!(!tracker.acknowledge("item_1", 0, 200)); // never delivered: ignored
/// tracker.on_audio_delivered("item_1", 0, 8_000, AudioFormat::G711_ULAW);
/// assert_eq!(tracker.played_ms("item_1", 0), Some(0));
/// assert!(tracker.acknowledge("item_1", 0, 400));
/// assert!(tracker.acknowledge("item_1", 0, 300)); // late echo: stays at 400
/// assert_eq!(tracker.played_ms("item_1", 0), Some(400));
/// tracker.on_interrupted();
/// assert_eq!(tracker.played_ms("item_1", 0), None);
/// ```
#[derive(Debug, Default)]
pub struct AckPlaybackTracker {
    items: Mutex<VecDeque<Acked>>,
}

#[derive(Debug)]
struct Acked {
    item_id: String,
    content_index: u32,
    played_ms: u64,
}

impl AckPlaybackTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The listener has played `played_ms` of `(item_id, content_index)`. Returns `false`
    /// (and changes nothing) for an item the session has not delivered or has forgotten.
    pub fn acknowledge(&self, item_id: &str, content_index: u32, played_ms: u64) -> bool {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        match items
            .iter_mut()
            .find(|a| a.item_id == item_id && a.content_index == content_index)
        {
            Some(acked) => {
                acked.played_ms = acked.played_ms.max(played_ms);
                true
            }
            None => false,
        }
    }
}

impl PlaybackTracker for AckPlaybackTracker {
    fn on_audio_delivered(
        &self,
        item_id: &str,
        content_index: u32,
        _bytes: usize,
        _format: AudioFormat,
    ) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        // Most chunks belong to the newest item.
        if items
            .back()
            .is_some_and(|a| a.item_id == item_id && a.content_index == content_index)
            || items
                .iter()
                .any(|a| a.item_id == item_id && a.content_index == content_index)
        {
            return;
        }
        if items.len() == REMEMBERED {
            items.pop_front();
        }
        items.push_back(Acked {
            item_id: item_id.to_owned(),
            content_index,
            played_ms: 0,
        });
    }

    fn played_ms(&self, item_id: &str, content_index: u32) -> Option<u64> {
        let items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        items
            .iter()
            .find(|a| a.item_id == item_id && a.content_index == content_index)
            .map(|a| a.played_ms)
    }

    fn on_interrupted(&self) {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
