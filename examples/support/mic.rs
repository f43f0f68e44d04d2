//! The microphone traffic of the load harnesses (`loadtest`, `vs_python`): one 12-second cycle
//! of PCM16 24 kHz speech made with the simulator's `speech::encode_text`, as 20 ms chunks.

#![allow(dead_code)] // Each harness uses its own subset.

use std::time::Duration;

use bytes::Bytes;
use realtime_agents::simulator::speech;

/// 20 ms of PCM16 at 24 kHz.
pub const CHUNK_BYTES: usize = 960;
pub const CHUNK: Duration = Duration::from_millis(20);
/// Sessions one microphone pacer task feeds.
pub const PACER_GROUP: usize = 64;

/// One cycle of microphone audio, as 20 ms chunks: half a second of silence, "Tell me a story
/// please", 4.5 s of silence (the story plays), "What's the weather in Paris?" (barges in and
/// calls the tool), then silence to the end of the 12 s cycle. Session `i` starts at chunk
/// `(i * 7919) % len`.
pub fn microphone_cycle() -> Vec<Bytes> {
    let silence = |ms: usize| vec![0i16; ms * 24];
    let mut samples = silence(500);
    samples.extend(speech::encode_text("Tell me a story please"));
    samples.extend(silence(4_500));
    samples.extend(speech::encode_text("What's the weather in Paris?"));
    let cycle = 12_000 * 24;
    samples.resize(cycle.max(samples.len() + 600 * 24), 0);
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    bytes
        .chunks(CHUNK_BYTES)
        .map(|c| {
            let mut chunk = c.to_vec();
            chunk.resize(CHUNK_BYTES, 0);
            Bytes::from(chunk)
        })
        .collect()
}

/// Where session `i` starts in a cycle of `len` chunks.
pub fn start_offset(i: usize, len: usize) -> usize {
    (i * 7919) % len.max(1)
}
