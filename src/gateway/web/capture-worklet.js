// Microphone capture: the context's rate (44.1 or 48 kHz, whatever the device runs at) to
// PCM16 mono at the session's rate (24 kHz), posted in 20 ms chunks (transferred, not copied).
//
// Downsampling low-passes first (a 31-tap windowed sinc at 45% of the output rate), then
// interpolates linearly at the output positions. The filter and interpolation state carry
// over between render quanta, so chunk boundaries leave no clicks.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const outRate = (options.processorOptions && options.processorOptions.outRate) || 24000;
    this.step = sampleRate / outRate; // input samples per output sample
    this.chunk = Math.round(outRate / 50); // 20 ms
    this.out = new Int16Array(this.chunk);
    this.filled = 0;
    this.pos = 0; // next output position, in input samples relative to the block start
    this.prev = 0; // last filtered sample of the previous block
    // Low-pass taps (only when downsampling).
    this.taps = null;
    if (this.step > 1) {
      const n = 31, fc = (0.45 * outRate) / sampleRate, mid = (n - 1) / 2;
      const taps = new Float32Array(n);
      let sum = 0;
      for (let i = 0; i < n; i++) {
        const x = i - mid;
        const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
        const window = 0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (n - 1));
        taps[i] = sinc * window;
        sum += taps[i];
      }
      for (let i = 0; i < n; i++) taps[i] /= sum;
      this.taps = taps;
      this.history = new Float32Array(n - 1);
    }
    this.filtered = new Float32Array(128);
  }

  filter(input) {
    if (!this.taps) return input;
    const n = this.taps.length, h = this.history, out = this.filtered.length >= input.length
      ? this.filtered : (this.filtered = new Float32Array(input.length));
    for (let i = 0; i < input.length; i++) {
      let acc = 0;
      // Taps over [history | input] ending at input[i].
      for (let k = 0; k < n; k++) {
        const j = i - k;
        acc += this.taps[k] * (j >= 0 ? input[j] : h[h.length + j]);
      }
      out[i] = acc;
    }
    // Keep the last n-1 input samples.
    const keep = h.length;
    if (input.length >= keep) {
      h.set(input.subarray(input.length - keep));
    } else {
      h.copyWithin(0, input.length);
      h.set(input, keep - input.length);
    }
    return out.subarray(0, input.length);
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.out[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.filled === this.chunk) {
      this.port.postMessage(this.out.buffer, [this.out.buffer]);
      this.out = new Int16Array(this.chunk);
      this.filled = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel || channel.length === 0) return true;
    const y = this.filter(channel);
    const n = y.length;
    // Output positions in [-1, n-1): index -1 is the previous block's last sample.
    while (this.pos < n - 1) {
      const i = Math.floor(this.pos), frac = this.pos - i;
      const a = i < 0 ? this.prev : y[i];
      const b = y[i + 1];
      this.emit(a + (b - a) * frac);
      this.pos += this.step;
    }
    this.pos -= n;
    this.prev = y[n - 1];
    return true;
  }
}

registerProcessor('capture-processor', CaptureProcessor);
