//! Audio formats spoken on the wire and the byte/time maths that goes with them.

use serde::{Deserialize, Serialize};

/// An audio format of the Realtime API.
///
/// Serialises to the GA wire shape: `{"type":"audio/pcm","rate":24000}`,
/// `{"type":"audio/pcmu"}` or `{"type":"audio/pcma"}`.
///
/// ```
/// use realtime_agents::audio::AudioFormat;
/// assert_eq!(AudioFormat::PCM16_24K.bytes_to_ms(960), 20.0);
/// assert_eq!(AudioFormat::G711_ULAW.bytes_to_ms(160), 20.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AudioFormat {
    /// Signed 16-bit little-endian mono PCM at `rate` Hz (the API accepts 24 kHz).
    #[serde(rename = "audio/pcm")]
    Pcm16 {
        /// Sample rate in Hz.
        #[serde(default = "default_rate")]
        rate: u32,
    },
    /// G.711 μ-law, 8 kHz, one byte per sample (telephony in North America and Japan).
    #[serde(rename = "audio/pcmu")]
    G711Ulaw,
    /// G.711 A-law, 8 kHz, one byte per sample (telephony elsewhere).
    #[serde(rename = "audio/pcma")]
    G711Alaw,
}

fn default_rate() -> u32 {
    24_000
}

impl Default for AudioFormat {
    fn default() -> Self {
        Self::PCM16_24K
    }
}

impl AudioFormat {
    /// The model's native format: PCM16, 24 kHz, mono.
    pub const PCM16_24K: Self = Self::Pcm16 { rate: 24_000 };
    /// G.711 μ-law at 8 kHz.
    pub const G711_ULAW: Self = Self::G711Ulaw;
    /// G.711 A-law at 8 kHz.
    pub const G711_ALAW: Self = Self::G711Alaw;

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        match self {
            Self::Pcm16 { rate } => *rate,
            Self::G711Ulaw | Self::G711Alaw => 8_000,
        }
    }

    /// Bytes per (mono) sample.
    pub fn bytes_per_sample(&self) -> u32 {
        match self {
            Self::Pcm16 { .. } => 2,
            Self::G711Ulaw | Self::G711Alaw => 1,
        }
    }

    /// Bytes per second of audio.
    pub fn bytes_per_second(&self) -> u32 {
        self.sample_rate() * self.bytes_per_sample()
    }

    /// Duration in milliseconds of `bytes` bytes of audio.
    pub fn bytes_to_ms(&self, bytes: usize) -> f64 {
        bytes as f64 * 1000.0 / f64::from(self.bytes_per_second())
    }

    /// Number of bytes in `ms` milliseconds of audio (whole samples).
    pub fn ms_to_bytes(&self, ms: u64) -> usize {
        let samples = ms * u64::from(self.sample_rate()) / 1000;
        (samples * u64::from(self.bytes_per_sample())) as usize
    }
}
