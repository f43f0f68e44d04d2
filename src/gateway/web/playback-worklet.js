// Assistant playback: a ring buffer of the session's PCM (24 kHz), resampled to the context's
// rate on the way out, that reports how much of each item it has actually played and drops
// everything on a flush (barge-in).
//
// Messages in: {type:'audio', itemId, contentIndex, samples: Int16Array}, {type:'end'},
// {type:'flush'}. Messages out: {type:'played', itemId, contentIndex, ms} about every 50 ms
// while playing, and {type:'flushed', itemId, contentIndex, ms, droppedMs} after a flush.
const SOURCE_RATE = 24000;
const CAPACITY = SOURCE_RATE * 60; // one minute ahead at most
const PREBUFFER = SOURCE_RATE * 0.06; // start after 60 ms queued (or at the end of an item)

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(CAPACITY);
    this.written = 0; // source samples ever written
    this.read = 0; // source position ever read (fractional)
    this.step = SOURCE_RATE / sampleRate;
    this.segments = []; // {itemId, contentIndex, start} in write order
    this.waiting = true; // prebuffering
    this.ended = false; // the current item's audio is complete
    this.overflow = 0;
    this.playedSamples = 0; // source samples actually played, all items
    this.sinceReport = 0;
    this.lastReported = '';
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === 'audio') {
      const last = this.segments[this.segments.length - 1];
      if (!last || last.itemId !== msg.itemId || last.contentIndex !== msg.contentIndex) {
        this.segments.push({ itemId: msg.itemId, contentIndex: msg.contentIndex, start: this.written });
        if (this.segments.length > 16) this.segments.shift();
      }
      this.ended = false;
      const s = msg.samples;
      const room = CAPACITY - (this.written - Math.floor(this.read));
      const n = Math.min(s.length, room);
      this.overflow += s.length - n;
      for (let i = 0; i < n; i++) this.ring[(this.written + i) % CAPACITY] = s[i] / 32768;
      this.written += n;
    } else if (msg.type === 'end') {
      this.ended = true;
    } else if (msg.type === 'flush') {
      const pos = this.position();
      const droppedMs = ((this.written - Math.floor(this.read)) * 1000) / SOURCE_RATE;
      this.read = this.written;
      this.segments = [];
      this.waiting = true;
      this.port.postMessage({ type: 'flushed', ...pos, droppedMs });
    }
  }

  // The item playing now and how much of it has been played.
  position() {
    const at = Math.floor(this.read);
    for (let k = this.segments.length - 1; k >= 0; k--) {
      const seg = this.segments[k];
      if (seg.start <= at) {
        return { itemId: seg.itemId, contentIndex: seg.contentIndex, ms: Math.floor(((at - seg.start) * 1000) / SOURCE_RATE) };
      }
    }
    return { itemId: null, contentIndex: 0, ms: 0 };
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const buffered = this.written - this.read;
    if (this.waiting && (buffered >= PREBUFFER || (this.ended && buffered > 0))) this.waiting = false;
    let i = 0;
    if (!this.waiting) {
      for (; i < out.length; i++) {
        const idx = Math.floor(this.read);
        if (idx + 1 >= this.written) break;
        const frac = this.read - idx;
        const a = this.ring[idx % CAPACITY], b = this.ring[(idx + 1) % CAPACITY];
        out[i] = a + (b - a) * frac;
        this.read += this.step;
        this.playedSamples += this.step;
      }
      if (i < out.length) {
        // Ran dry: play out the last sample of an ended item, then wait for more.
        if (this.ended && this.written - this.read > 0) this.read = this.written;
        this.waiting = true;
      }
    }
    for (; i < out.length; i++) out[i] = 0;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 20) {
      this.sinceReport = 0;
      const pos = this.position();
      const key = pos.itemId + ':' + pos.contentIndex + ':' + pos.ms;
      if (pos.itemId !== null && key !== this.lastReported) {
        this.lastReported = key;
        this.port.postMessage({ type: 'played', ...pos, totalMs: Math.floor((this.playedSamples * 1000) / SOURCE_RATE) });
      }
    }
    return true;
  }
}

registerProcessor('playback-processor', PlaybackProcessor);
