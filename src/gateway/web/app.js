// The gateway's voice page: microphone -> capture worklet -> binary PCM16 24 kHz frames on
// the socket; binary frames from the socket -> playback worklet, which reports what it has
// played (sent back as {"type":"played"}) and flushes on {"type":"interrupted"}.
//
// Query parameters: ?autostart=1 starts without a click (needs an autoplay policy that allows
// it); ?raw=1 turns off echo cancellation, noise suppression and gain control (for a fake
// microphone fed from a file, or a headset).
//
// window.__voiceTest exposes the page's state for automated tests and debugging.
(() => {
  'use strict';
  const params = new URLSearchParams(location.search);
  const raw = params.get('raw') === '1';

  // getUserMedia constraints. A speakerphone needs echo cancellation, or the assistant hears
  // itself and interrupts itself; noise suppression and gain control help server VAD. Mono is
  // all the session takes. No sampleRate: browsers capture at the device rate and the capture
  // worklet resamples (Firefox refuses to mix contexts of different rates).
  const constraints = {
    audio: {
      channelCount: 1,
      echoCancellation: !raw,
      noiseSuppression: !raw,
      autoGainControl: !raw,
    },
  };

  const state = (window.__voiceTest = {
    state: 'idle',
    callId: null,
    transcript: [], // {role, itemId, text}
    tools: [], // {tool, callId, arguments, output, isError}
    reports: [], // playback reports sent: {itemId, contentIndex, ms}
    interrupts: [], // {itemId, serverPlayedMs, lastReportMs, flushedMs, droppedMs}
    playedMs: 0, // total assistant audio played
    receivedMs: 0, // total assistant audio received
    micChunks: 0,
    errors: [],
    closedReason: null,
  });

  const $ = (id) => document.getElementById(id);
  const setStatus = (s) => { state.state = s; $('status').textContent = s; };

  let ctx = null, ws = null, capture = null, playback = null, stream = null;
  let audioItem = null; // {itemId, contentIndex} of the binary frames that follow
  const lines = new Map(); // itemId -> element

  function line(role, itemId, text) {
    let el = itemId && lines.get(itemId);
    let entry = itemId && state.transcript.find((t) => t.itemId === itemId);
    if (!el) {
      el = document.createElement('div');
      el.className = 'line ' + role;
      $('transcript').appendChild(el);
      if (itemId) lines.set(itemId, el);
      entry = { role, itemId, text: '' };
      state.transcript.push(entry);
    }
    entry.text += text;
    el.textContent = entry.text;
  }

  function toolLine(t) {
    const el = document.createElement('div');
    el.className = 'line tool';
    el.textContent = t.output === undefined
      ? `→ ${t.tool}(${t.arguments})`
      : `← ${t.tool}: ${t.output}`;
    $('transcript').appendChild(el);
  }

  function onControl(msg) {
    switch (msg.type) {
      case 'ready':
        state.callId = msg.call_id;
        setStatus('connected');
        startMicrophone(msg.sample_rate).catch((e) => fail('microphone: ' + e));
        break;
      case 'audio':
        audioItem = { itemId: msg.item_id, contentIndex: msg.content_index };
        break;
      case 'audio_end':
        playback.port.postMessage({ type: 'end' });
        break;
      case 'interrupted': {
        const last = state.reports.filter((r) => r.itemId === msg.item_id).pop();
        state.interrupts.push({
          itemId: msg.item_id,
          serverPlayedMs: msg.played_ms,
          lastReportMs: last ? last.ms : null,
          flushedMs: null,
          droppedMs: null,
        });
        audioItem = null;
        playback.port.postMessage({ type: 'flush' });
        const el = lines.get(msg.item_id);
        if (el) el.classList.add('cut');
        break;
      }
      case 'transcript_delta':
        line(msg.role, msg.item_id, msg.delta);
        break;
      case 'user_transcript':
        line('user', msg.item_id, msg.transcript);
        break;
      case 'tool_start': {
        const t = { tool: msg.tool, callId: msg.call_id, arguments: msg.arguments };
        state.tools.push(t);
        toolLine(t);
        break;
      }
      case 'tool_end': {
        const t = state.tools.find((x) => x.callId === msg.call_id);
        if (t) { t.output = msg.output; t.isError = msg.is_error; toolLine(t); }
        break;
      }
      case 'speech_started':
        setStatus('listening');
        break;
      case 'agent_start':
        setStatus('speaking');
        break;
      case 'agent_end':
        setStatus('connected');
        break;
      case 'error':
        state.errors.push(msg.message);
        break;
      case 'closed':
        state.closedReason = msg.reason;
        break;
      default:
        break; // newer server, older page: ignore
    }
  }

  function onPlayback(msg) {
    if (msg.type === 'played') {
      // The worklet counts what it handed to the output; what is audible lags by the
      // output latency, so report that much less (the safe side for truncation).
      const latencyMs = Math.round(((ctx.outputLatency || 0) + (ctx.baseLatency || 0)) * 1000);
      const ms = Math.max(0, msg.ms - latencyMs);
      const report = { itemId: msg.itemId, contentIndex: msg.contentIndex, ms };
      state.reports.push(report);
      if (state.reports.length > 500) state.reports.shift();
      state.playedMs = msg.totalMs;
      if (ws && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ type: 'played', item_id: msg.itemId, content_index: msg.contentIndex, played_ms: ms }));
      }
    } else if (msg.type === 'flushed') {
      const cut = state.interrupts[state.interrupts.length - 1];
      if (cut) { cut.flushedMs = msg.ms; cut.droppedMs = msg.droppedMs; }
    }
  }

  async function startMicrophone(rate) {
    stream = await navigator.mediaDevices.getUserMedia(constraints);
    const source = ctx.createMediaStreamSource(stream);
    capture = new AudioWorkletNode(ctx, 'capture-processor', { processorOptions: { outRate: rate } });
    capture.port.onmessage = (e) => {
      state.micChunks++;
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(e.data);
    };
    source.connect(capture);
    setStatus('listening');
  }

  async function start() {
    $('start').disabled = true;
    $('stop').disabled = false;
    setStatus('starting');
    try {
      ctx = new AudioContext({ latencyHint: 'interactive' });
      await ctx.audioWorklet.addModule('/capture-worklet.js');
      await ctx.audioWorklet.addModule('/playback-worklet.js');
      playback = new AudioWorkletNode(ctx, 'playback-processor', { outputChannelCount: [1] });
      playback.port.onmessage = (e) => onPlayback(e.data);
      playback.connect(ctx.destination);
      if (ctx.state !== 'running') await ctx.resume();
    } catch (e) {
      return fail('audio: ' + e);
    }
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (e) => {
      if (typeof e.data === 'string') {
        let msg;
        try { msg = JSON.parse(e.data); } catch (_) { return; }
        onControl(msg);
      } else if (audioItem) {
        const samples = new Int16Array(e.data);
        state.receivedMs += (samples.length * 1000) / 24000;
        playback.port.postMessage({ type: 'audio', itemId: audioItem.itemId, contentIndex: audioItem.contentIndex, samples }, [samples.buffer]);
      }
    };
    ws.onclose = (e) => {
      setStatus(e.code === 1000 || e.code === 1001 ? 'ended' : 'ended (' + (e.reason || e.code) + ')');
      stop(false);
    };
    ws.onerror = () => state.errors.push('socket error');
  }

  function stop(closeSocket = true) {
    $('start').disabled = false;
    $('stop').disabled = true;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    if (capture) capture.disconnect();
    capture = null;
    if (closeSocket && ws) ws.close(1000);
  }

  function fail(message) {
    state.errors.push(message);
    setStatus('error: ' + message);
  }

  $('start').onclick = start;
  $('stop').onclick = () => stop(true);
  $('typed').onsubmit = (e) => {
    e.preventDefault();
    const text = $('text').value.trim();
    if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: 'message', text }));
    line('user', null, text);
    $('text').value = '';
  };
  if (params.get('autostart') === '1') start();
})();
