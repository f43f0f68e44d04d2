//! Streaming sample-rate conversion on top of [rubato](https://docs.rs/rubato/5).
//!
//! See [`StreamResampler`] for the design and latency figures.

use std::fmt;
use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Indexing, PolynomialDegree, Resampler,
    SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

use super::AudioError;

/// Which rubato resampler a [`StreamResampler`] uses.
///
/// ```
/// use realtime_agents::audio::{ResampleOptions, ResampleQuality, StreamResampler};
/// let rs = StreamResampler::with_options(
///     24_000,
///     48_000,
///     ResampleOptions::default().quality(ResampleQuality::Fast),
/// )?;
/// assert!(rs.delay_frames() < 10);
/// # Ok::<(), realtime_agents::audio::AudioError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ResampleQuality {
    /// Synchronous FFT resampler (`rubato::Fft`): high quality with a proper anti-aliasing
    /// filter, cheapest per sample, delay of half an FFT block. The default.
    #[default]
    Fft,
    /// Asynchronous sinc interpolation (`rubato::Async::new_sinc`, 128 taps, linear): band
    /// limited like `Fft`, slower, slightly shorter delay.
    Sinc,
    /// Cubic polynomial interpolation (`rubato::Async::new_poly`): almost no delay, no
    /// anti-aliasing. Fine for upsampling; aliases when downsampling.
    Fast,
}

/// Options for [`StreamResampler::with_options`].
///
/// ```
/// use realtime_agents::audio::{ResampleOptions, StreamResampler};
/// let rs = StreamResampler::with_options(44_100, 24_000, ResampleOptions::default().channels(2))?;
/// assert_eq!(rs.channels(), 2);
/// # Ok::<(), realtime_agents::audio::AudioError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct ResampleOptions {
    channels: usize,
    chunk_frames: Option<usize>,
    quality: ResampleQuality,
}

impl Default for ResampleOptions {
    fn default() -> Self {
        Self {
            channels: 1,
            chunk_frames: None,
            quality: ResampleQuality::Fft,
        }
    }
}

impl ResampleOptions {
    /// Number of interleaved channels (default 1).
    pub fn channels(mut self, channels: usize) -> Self {
        self.channels = channels;
        self
    }

    /// Input frames per internal chunk (default: 10 ms of input, at least 160 output frames).
    /// Smaller chunks lower the chunking latency and, for [`ResampleQuality::Fft`], shrink the
    /// FFT block, which lowers the filter delay and widens the filter's transition band.
    pub fn chunk_frames(mut self, frames: usize) -> Self {
        self.chunk_frames = Some(frames);
        self
    }

    /// Resampler type (default [`ResampleQuality::Fft`]).
    pub fn quality(mut self, quality: ResampleQuality) -> Self {
        self.quality = quality;
        self
    }
}

enum Engine {
    /// Equal rates: frames are copied through.
    Passthrough,
    Rubato(Box<dyn Resampler<f32>>),
}

/// A resampler for a stream pushed in chunks of any size.
///
/// rubato resamples fixed-size chunks; audio arrives in chunks of any size (a device callback,
/// a WebSocket delta). This type sits in between: it accumulates input until the
/// resampler's next chunk is full, resamples into preallocated buffers, trims the resampler's
/// start-up delay so output sample *k* lines up with input time *k / out_rate*, and on
/// [`flush`](Self::flush) pads with silence to push out the tail. The result does not
/// depend on how the input was split: feeding one big chunk or a thousand small ones gives
/// the same samples, and after `flush` exactly `ceil(frames_in × out_rate / in_rate)` frames.
///
/// # Latency
///
/// Two things delay the output, both reported by the resampler:
///
/// * **chunking**: input waits until a chunk of [`chunk_frames`](Self::chunk_frames)
///   frames is complete (by default 10 ms of input, or 20 ms when downsampling to 8 kHz, so
///   that the FFT block is long enough for a sharp filter);
/// * **filtering**: the anti-aliasing filter needs look-ahead of
///   [`delay_frames`](Self::delay_frames) output frames.
///
/// With the default [`ResampleQuality::Fft`] the filter delay is half an FFT block (a block is
/// one chunk here). Defaults and worst-case [`latency`](Self::latency):
///
/// | conversion | chunk (input frames) | delay (output frames) | latency |
/// |---|---|---|---|
/// | 48 kHz → 24 kHz (microphone) | 480 (10 ms) | 120 (5 ms) | 15 ms |
/// | 44.1 kHz → 24 kHz (microphone) | 441 (10 ms) | 120 (5 ms) | 15 ms |
/// | 24 kHz → 48 kHz (speaker) | 240 (10 ms) | 240 (5 ms) | 15 ms |
/// | 24 kHz → 44.1 kHz (speaker) | 240 (10 ms) | 220 (5 ms) | 15 ms |
/// | 24 kHz → 8 kHz (to a phone) | 480 (20 ms) | 80 (10 ms) | 30 ms |
/// | 8 kHz → 24 kHz (from a phone) | 80 (10 ms) | 120 (5 ms) | 15 ms |
///
/// Choose a smaller [`chunk_frames`](ResampleOptions::chunk_frames) to trade filter sharpness
/// for latency (24 kHz → 8 kHz with 240-frame chunks: 15 ms, but 10 dB down at 3.4 kHz).
///
/// [`ResampleQuality::Fast`] (cubic interpolation, no anti-aliasing filter) delays by only a
/// couple of frames; use it for upsampling when latency matters more than the last bit of
/// quality, never for downsampling to 8 kHz.
///
/// ```
/// use realtime_agents::audio::StreamResampler;
///
/// let mut rs = StreamResampler::new(48_000, 24_000)?;
/// let mut out = Vec::new();
/// for chunk in vec![0.25f32; 4_800].chunks(333) {
///     rs.push(chunk, &mut out); // any chunk size
/// }
/// rs.flush(&mut out);
/// assert_eq!(out.len(), 2_400);
/// # Ok::<(), realtime_agents::audio::AudioError>(())
/// ```
///
/// # Quality
///
/// Measured with the defaults at 24 kHz → 8 kHz (phone lines): tones at 4.4, 5, 6 and 9 kHz,
/// which would fold back into the voice band, come out at least 64 dB down; 300 Hz–3.4 kHz
/// pass within 0.1 dB. At 48 kHz → 24 kHz the passband is flat to 11 kHz and 13 kHz is ~59 dB
/// down. [`ResampleQuality::Sinc`] is similar (≥ 56 dB); [`ResampleQuality::Fast`] does not
/// filter at all (a 6 kHz tone folds to 2 kHz at full level).
///
/// # Buffers
///
/// All buffers are allocated in the constructor; [`push`](Self::push) and
/// [`flush`](Self::flush) only append to the caller's `Vec`, so they do not allocate once that
/// `Vec` has capacity (see [`max_output_frames`](Self::max_output_frames)). Keep one resampler
/// per stream for the stream's lifetime; call [`reset`](Self::reset) when the stream is cut
/// (barge-in) so stale filter state does not leak into the next utterance.
pub struct StreamResampler {
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    quality: ResampleQuality,
    engine: Engine,
    chunk_frames: usize,
    /// Input waiting for a complete chunk, `chunk_frames * channels` samples long.
    pending: Vec<f32>,
    pending_len: usize,
    /// Output of one rubato call, `output_frames_max * channels` samples long.
    scratch: Vec<f32>,
    scratch_frames: usize,
    delay: usize,
    to_trim: usize,
    frames_in: u64,
    frames_out: u64,
}

impl fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamResampler")
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .field("channels", &self.channels)
            .field("quality", &self.quality)
            .field("chunk_frames", &self.chunk_frames)
            .field("delay_frames", &self.delay)
            .field("pending_frames", &self.pending_frames())
            .finish()
    }
}

impl StreamResampler {
    /// A mono resampler with default options (FFT, 10 ms chunks).
    ///
    /// Fails if a rate is 0.
    ///
    /// ```
    /// let rs = realtime_agents::audio::StreamResampler::new(24_000, 8_000)?;
    /// assert_eq!(rs.delay_frames(), 80);
    /// # Ok::<(), realtime_agents::audio::AudioError>(())
    /// ```
    pub fn new(in_rate: u32, out_rate: u32) -> Result<Self, AudioError> {
        Self::with_options(in_rate, out_rate, ResampleOptions::default())
    }

    /// A resampler with explicit options.
    ///
    /// Fails if a rate, the channel count or the chunk size is 0.
    ///
    /// ```
    /// use realtime_agents::audio::{ResampleOptions, StreamResampler};
    /// let rs = StreamResampler::with_options(48_000, 24_000, ResampleOptions::default().chunk_frames(960))?;
    /// assert_eq!(rs.chunk_frames(), 960);
    /// # Ok::<(), realtime_agents::audio::AudioError>(())
    /// ```
    pub fn with_options(
        in_rate: u32,
        out_rate: u32,
        options: ResampleOptions,
    ) -> Result<Self, AudioError> {
        if in_rate == 0 || out_rate == 0 {
            return Err(AudioError::InvalidParameter(format!(
                "sample rates must be positive (got {in_rate} -> {out_rate})"
            )));
        }
        let channels = options.channels;
        if channels == 0 {
            return Err(AudioError::InvalidParameter("0 channels".into()));
        }
        if in_rate == out_rate {
            return Ok(Self {
                in_rate,
                out_rate,
                channels,
                quality: options.quality,
                engine: Engine::Passthrough,
                chunk_frames: 1,
                pending: vec![0.0; channels],
                pending_len: 0,
                scratch: Vec::new(),
                scratch_frames: 0,
                delay: 0,
                to_trim: 0,
                frames_in: 0,
                frames_out: 0,
            });
        }
        let chunk_frames = options
            .chunk_frames
            .unwrap_or_else(|| default_chunk_frames(in_rate, out_rate));
        if chunk_frames == 0 {
            return Err(AudioError::InvalidParameter("chunk of 0 frames".into()));
        }
        let ratio = f64::from(out_rate) / f64::from(in_rate);
        let construction = |e: rubato::ResamplerConstructionError| {
            AudioError::Resampler(format!("{in_rate} Hz -> {out_rate} Hz: {e}"))
        };
        let resampler: Box<dyn Resampler<f32>> = match options.quality {
            ResampleQuality::Fft => Box::new(
                Fft::<f32>::new(
                    in_rate as usize,
                    out_rate as usize,
                    chunk_frames,
                    channels,
                    FixedSync::Input,
                )
                .map_err(construction)?,
            ),
            ResampleQuality::Sinc => {
                let params = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2)
                    .interpolation(SincInterpolationType::Linear);
                Box::new(
                    Async::<f32>::new_sinc(
                        ratio,
                        1.0,
                        &params,
                        chunk_frames,
                        channels,
                        FixedAsync::Input,
                    )
                    .map_err(construction)?,
                )
            }
            ResampleQuality::Fast => Box::new(
                Async::<f32>::new_poly(
                    ratio,
                    1.0,
                    PolynomialDegree::Cubic,
                    chunk_frames,
                    channels,
                    FixedAsync::Input,
                )
                .map_err(construction)?,
            ),
        };
        let scratch_frames = resampler.output_frames_max();
        let delay = resampler.output_delay();
        Ok(Self {
            in_rate,
            out_rate,
            channels,
            quality: options.quality,
            engine: Engine::Rubato(resampler),
            chunk_frames,
            pending: vec![0.0; chunk_frames * channels],
            pending_len: 0,
            scratch: vec![0.0; scratch_frames * channels],
            scratch_frames,
            delay,
            to_trim: delay,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Input rate in Hz.
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// Output rate in Hz.
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    /// Interleaved channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The resampler type in use (irrelevant when the rates are equal).
    pub fn quality(&self) -> ResampleQuality {
        self.quality
    }

    /// Input frames per internal chunk: output appears once a chunk is complete.
    /// 1 when the rates are equal.
    pub fn chunk_frames(&self) -> usize {
        self.chunk_frames
    }

    /// Filter delay in output frames: the resampler needs this much look-ahead before an input
    /// frame's output can be emitted. It is trimmed from the start of the output (so output
    /// stays aligned with input) and recovered by [`flush`](Self::flush). 0 when the rates are
    /// equal.
    pub fn delay_frames(&self) -> usize {
        self.delay
    }

    /// Worst-case time between pushing an input frame and its output appearing:
    /// `delay_frames / out_rate + chunk_frames / in_rate` (chunking) .
    ///
    /// ```
    /// let rs = realtime_agents::audio::StreamResampler::new(48_000, 24_000)?;
    /// assert_eq!(rs.latency().as_millis(), 15);
    /// # Ok::<(), realtime_agents::audio::AudioError>(())
    /// ```
    pub fn latency(&self) -> Duration {
        if matches!(self.engine, Engine::Passthrough) {
            return Duration::ZERO;
        }
        let secs = self.delay as f64 / f64::from(self.out_rate)
            + self.chunk_frames as f64 / f64::from(self.in_rate);
        Duration::from_secs_f64(secs)
    }

    /// Complete input frames waiting for the next chunk.
    pub fn pending_frames(&self) -> usize {
        self.pending_len / self.channels
    }

    /// Upper bound on the frames one [`push`](Self::push) of `input_frames` frames (or a
    /// [`flush`](Self::flush) when `input_frames` is 0) appends. Reserve
    /// `max_output_frames(n) * channels` in the output `Vec` to keep `push` allocation-free.
    pub fn max_output_frames(&self, input_frames: usize) -> usize {
        match self.engine {
            Engine::Passthrough => input_frames,
            Engine::Rubato(_) => {
                let chunks = (self.pending_frames() + input_frames).div_ceil(self.chunk_frames);
                // A flush may pump a few silent chunks to recover the delay.
                let flush_chunks =
                    (self.delay + self.scratch_frames).div_ceil(self.scratch_frames.max(1)) + 1;
                (chunks + flush_chunks) * self.scratch_frames
            }
        }
    }

    /// Resamples interleaved `input` and appends the frames that are ready to `out`; returns
    /// the number of frames appended. Any input length works; an incomplete trailing frame
    /// waits for the next call.
    ///
    /// ```
    /// let mut rs = realtime_agents::audio::StreamResampler::new(24_000, 48_000)?;
    /// let mut out = Vec::new();
    /// let mut got = rs.push(&[0.1; 100], &mut out); // less than a chunk
    /// got += rs.push(&[0.1; 140], &mut out); // completes the 240-frame chunk
    /// assert_eq!(got, out.len());
    /// assert_eq!(out.len(), 480 - rs.delay_frames());
    /// # Ok::<(), realtime_agents::audio::AudioError>(())
    /// ```
    pub fn push(&mut self, mut input: &[f32], out: &mut Vec<f32>) -> usize {
        let ch = self.channels;
        let before = out.len();
        if matches!(self.engine, Engine::Passthrough) {
            if self.pending_len > 0 {
                let take = (ch - self.pending_len).min(input.len());
                self.pending[self.pending_len..self.pending_len + take]
                    .copy_from_slice(&input[..take]);
                self.pending_len += take;
                input = &input[take..];
                if self.pending_len == ch {
                    out.extend_from_slice(&self.pending);
                    self.pending_len = 0;
                }
            }
            let whole = input.len() / ch * ch;
            out.extend_from_slice(&input[..whole]);
            let rest = &input[whole..];
            self.pending[..rest.len()].copy_from_slice(rest);
            self.pending_len = rest.len();
            let frames = (out.len() - before) / ch;
            self.frames_in += frames as u64;
            self.frames_out += frames as u64;
            return frames;
        }

        let chunk_samples = self.chunk_frames * ch;
        let mut produced = 0;
        while !input.is_empty() {
            if self.pending_len == 0 && input.len() >= chunk_samples {
                // Whole chunks straight from the caller's slice, no copy.
                let (chunk, rest) = input.split_at(chunk_samples);
                produced += self.process(Source::Input(chunk), None, out);
                input = rest;
                continue;
            }
            let take = (chunk_samples - self.pending_len).min(input.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&input[..take]);
            self.pending_len += take;
            input = &input[take..];
            if self.pending_len == chunk_samples {
                produced += self.process(Source::Pending, None, out);
                self.pending_len = 0;
            }
        }
        produced
    }

    /// End of stream: pushes out the pending input and the filter tail so that, in total since
    /// the last flush or reset, exactly `ceil(frames_in × out_rate / in_rate)` frames were
    /// produced; then resets for the next stream. Returns the frames appended.
    ///
    /// ```
    /// let mut rs = realtime_agents::audio::StreamResampler::new(44_100, 24_000)?;
    /// let mut out = Vec::new();
    /// rs.push(&[0.0; 1000], &mut out);
    /// rs.flush(&mut out);
    /// assert_eq!(out.len(), 545); // ceil(1000 * 24000 / 44100)
    /// # Ok::<(), realtime_agents::audio::AudioError>(())
    /// ```
    pub fn flush(&mut self, out: &mut Vec<f32>) -> usize {
        if matches!(self.engine, Engine::Passthrough) {
            // An incomplete frame cannot be emitted.
            self.reset();
            return 0;
        }
        let ch = self.channels;
        let before = out.len();
        let mut produced = 0;
        let pending_frames = self.pending_frames();
        if pending_frames > 0 {
            produced += self.process(Source::Pending, Some(pending_frames), out);
            self.pending_len = 0;
        }
        let expected =
            (self.frames_in * u64::from(self.out_rate)).div_ceil(u64::from(self.in_rate));
        // Pump silence until the delayed tail is out. Bounded: each call yields output frames.
        let mut guard = 0;
        while self.frames_out < expected && guard < 10_000 {
            produced += self.process(Source::Pending, Some(0), out);
            guard += 1;
        }
        if self.frames_out > expected {
            let extra = ((self.frames_out - expected) as usize).min(produced);
            out.truncate(out.len() - extra * ch);
            produced -= extra;
        }
        debug_assert_eq!(out.len() - before, produced * ch);
        self.reset();
        produced
    }

    /// Drops pending input and filter state (use on barge-in). The next push starts a fresh
    /// stream, with the start-up delay trimmed again.
    pub fn reset(&mut self) {
        if let Engine::Rubato(r) = &mut self.engine {
            r.reset();
        }
        self.pending_len = 0;
        self.to_trim = self.delay;
        self.frames_in = 0;
        self.frames_out = 0;
    }

    /// Runs one rubato call on a full chunk (or a partial one at flush) and appends the
    /// trimmed output.
    fn process(&mut self, src: Source<'_>, partial: Option<usize>, out: &mut Vec<f32>) -> usize {
        let ch = self.channels;
        let Engine::Rubato(resampler) = &mut self.engine else {
            return 0;
        };
        let data: &[f32] = match src {
            Source::Input(chunk) => chunk,
            Source::Pending => &self.pending,
        };
        // Sizes are fixed at construction, so the adapters and the call cannot fail; if rubato
        // ever disagrees, dropping a chunk beats panicking in an audio path.
        let Ok(input) = InterleavedSlice::new(data, ch, self.chunk_frames) else {
            return 0;
        };
        let Ok(mut output) = InterleavedSlice::new_mut(&mut self.scratch, ch, self.scratch_frames)
        else {
            return 0;
        };
        let indexing = partial.map(|n| Indexing::new().partial_len(n));
        let Ok((_, written)) =
            resampler.process_into_buffer(&input, &mut output, indexing.as_ref())
        else {
            debug_assert!(false, "rubato rejected a correctly sized chunk");
            return 0;
        };
        self.frames_in += partial.unwrap_or(self.chunk_frames) as u64;
        let skip = self.to_trim.min(written);
        self.to_trim -= skip;
        out.extend_from_slice(&self.scratch[skip * ch..written * ch]);
        let produced = written - skip;
        self.frames_out += produced as u64;
        produced
    }
}

/// 10 ms of input, or more when that would give fewer than 160 output frames per chunk: the
/// FFT block is the chunk, and a short block has a wide transition band (24 kHz → 8 kHz with
/// 10 ms blocks is already 10 dB down at 3.4 kHz; with 20 ms blocks it is flat).
fn default_chunk_frames(in_rate: u32, out_rate: u32) -> usize {
    let ten_ms = (in_rate as usize / 100).max(1);
    let for_160_out = (160 * u64::from(in_rate)).div_ceil(u64::from(out_rate)) as usize;
    ten_ms.max(for_160_out)
}

enum Source<'a> {
    Input(&'a [f32]),
    Pending,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_parameters() {
        assert!(StreamResampler::new(0, 8_000).is_err());
        assert!(
            StreamResampler::with_options(8_000, 16_000, ResampleOptions::default().channels(0))
                .is_err()
        );
        assert!(
            StreamResampler::with_options(
                8_000,
                16_000,
                ResampleOptions::default().chunk_frames(0)
            )
            .is_err()
        );
    }

    #[test]
    fn passthrough_keeps_partial_frames() {
        let mut rs =
            StreamResampler::with_options(24_000, 24_000, ResampleOptions::default().channels(2))
                .unwrap();
        let mut out = Vec::new();
        assert_eq!(rs.push(&[1.0, 2.0, 3.0], &mut out), 1);
        assert_eq!(rs.push(&[4.0], &mut out), 1);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(rs.latency(), Duration::ZERO);
    }

    #[test]
    fn documented_delays() {
        for (i, o, chunk, delay) in [
            (48_000, 24_000, 480, 120),
            (44_100, 24_000, 441, 120),
            (24_000, 48_000, 240, 240),
            (24_000, 44_100, 240, 220),
            (24_000, 8_000, 480, 80),
            (8_000, 24_000, 80, 120),
        ] {
            let rs = StreamResampler::new(i, o).unwrap();
            assert_eq!(
                (rs.chunk_frames(), rs.delay_frames()),
                (chunk, delay),
                "{i}->{o}"
            );
        }
    }

    #[test]
    fn flush_gives_exact_length_for_all_qualities() {
        for q in [
            ResampleQuality::Fft,
            ResampleQuality::Sinc,
            ResampleQuality::Fast,
        ] {
            let mut rs = StreamResampler::with_options(
                44_100,
                24_000,
                ResampleOptions::default().quality(q),
            )
            .unwrap();
            let mut out = Vec::new();
            rs.push(&vec![0.1; 12_345], &mut out);
            rs.flush(&mut out);
            assert_eq!(
                out.len(),
                (12_345u64 * 24_000).div_ceil(44_100) as usize,
                "{q:?}"
            );
            // Reset after flush: a second stream has the same length again.
            out.clear();
            rs.push(&vec![0.1; 12_345], &mut out);
            rs.flush(&mut out);
            assert_eq!(
                out.len(),
                (12_345u64 * 24_000).div_ceil(44_100) as usize,
                "{q:?}"
            );
        }
    }
}
