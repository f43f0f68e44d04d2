//! The bridge between one carrier media stream and one session.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures::StreamExt as _;
use futures::stream::SplitStream;
use tokio::time::Instant;
use tracing::{Instrument as _, Span, debug, info, warn};

use super::carrier::{CarrierEvent, CarrierFrame, CarrierMessage, CarrierSerializer, StreamStart};
use super::playback::AckPlaybackTracker;
use super::socket::{Sink, close, send};
use super::state::Permit;
use super::{CallInfo, GatewayEvent, Inner, Transport, metrics};
use crate::audio::AudioFormat;
use crate::audio::g711::G711Law;
use crate::{RealtimeSession, RealtimeSessionEvent as E, RealtimeSessionHandle};

/// One outbound frame is this long.
const FRAME: Duration = Duration::from_millis(20);
/// Gaps in the caller's audio longer than this are filled with silence, up to [`MAX_GAP_MS`].
const GAP_TOLERANCE_MS: u64 = 40;
const MAX_GAP_MS: u64 = 10_000;

type Source = SplitStream<WebSocket>;

/// Serves one carrier media stream until it stops, the session ends or the drain deadline.
pub(crate) async fn serve(
    socket: WebSocket,
    serializer: Box<dyn CarrierSerializer>,
    gateway: Arc<Inner>,
    permit: Permit,
) {
    let transport = Transport::Carrier(serializer.name());
    let call = CallInfo::new(transport);
    let span = tracing::info_span!(
        "call",
        call_id = %call.call_id,
        transport = %transport,
        carrier_call_id = tracing::field::Empty,
        stream_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let call_id = call.call_id.clone();
    let outcome = run(socket, serializer, &gateway, call, &span)
        .instrument(span.clone())
        .await;
    gateway.call_ended(&span, call_id, transport, outcome, started);
    drop(permit);
}

async fn run(
    socket: WebSocket,
    mut serializer: Box<dyn CarrierSerializer>,
    gateway: &Arc<Inner>,
    mut call: CallInfo,
    span: &Span,
) -> &'static str {
    let transport = call.transport;
    let (mut sink, mut source) = socket.split();
    info!("media stream connected");
    let start = match wait_for_start(&mut source, serializer.as_mut(), gateway).await {
        Ok(start) => start,
        Err(outcome) => {
            close(&mut sink, 1008, "no stream start").await;
            return outcome;
        }
    };
    span.record("stream_id", start.stream_id.as_str());
    if let Some(id) = &start.call_id {
        span.record("carrier_call_id", id.as_str());
    }
    call.carrier_call_id = start.call_id.clone();
    call.stream_id = Some(start.stream_id.clone());
    call.parameters = start.parameters.clone();
    if let (Some(secret), "twilio") = (&gateway.stream_secret, transport.as_str()) {
        let token = start.parameters.get("token").map(String::as_str);
        let call_sid = start.call_id.as_deref().unwrap_or_default();
        if let Err(why) = token.map_or(Err("no token"), |t| {
            super::auth::check_stream_token(secret, call_sid, t)
        }) {
            warn!(
                why,
                "refusing the stream: its start has no valid token for its callSid"
            );
            metrics::error(transport, "stream_token");
            close(&mut sink, 1008, "invalid stream token").await;
            return "refused_token";
        }
    }
    if let Some(verify) = &gateway.verify_stream {
        if !verify(&start) {
            warn!("refusing the stream: its start did not pass the stream check");
            metrics::error(transport, "stream_check");
            close(&mut sink, 1008, "stream check failed").await;
            return "refused_token";
        }
    }
    let format = start.format.unwrap_or_else(|| serializer.format());
    if G711Law::from_format(format).is_none() && format != AudioFormat::PCM16_24K {
        warn!(
            ?format,
            "closing the call: the stream's audio format is not one a session speaks"
        );
        metrics::error(transport, "format");
        close(&mut sink, 1003, "unsupported audio format").await;
        return "protocol_error";
    }

    let tracker = Arc::new(AckPlaybackTracker::new());
    let session = match gateway.recipe.open(&call, format, tracker.clone()).await {
        Ok(session) => session,
        Err(error) => {
            warn!(%error, "could not start the session");
            metrics::error(transport, "session_start");
            close(&mut sink, 1011, "the assistant is unavailable").await;
            return "session_error";
        }
    };
    info!(?format, "session started");
    gateway.emit(GatewayEvent::CallStarted { call: call.clone() });
    let handle = session.handle();
    if gateway.options.greet {
        let _ = handle.create_response().await;
    }
    let mut bridge = Bridge {
        transport,
        call_id: call.call_id.clone(),
        gateway: gateway.clone(),
        serializer,
        handle: handle.clone(),
        tracker,
        out: Outbound::new(format, gateway.options.outbound_lead),
        marks: VecDeque::new(),
        mark_seq: 0,
        mark_interval_ms: gateway.options.mark_interval.as_millis() as u64,
        last_mark_ms: 0,
        interrupted: VecDeque::new(),
        next_timestamp: None,
        silence: G711Law::from_format(format).map_or(0, G711Law::silence),
        format,
        dtmf: String::new(),
        dtmf_deadline: None,
        speech_started: None,
        speech_stopped: None,
        warned_events: Vec::new(),
    };
    let outcome = bridge.pump(session, &mut sink, &mut source).await;
    handle.close().await;
    match outcome {
        "drained" => close(&mut sink, 1001, "server shutting down").await,
        "protocol_error" => close(&mut sink, 1007, "malformed frame").await,
        "caller_gone" => {}
        _ => close(&mut sink, 1000, "").await,
    }
    outcome
}

/// Reads until the carrier's `start`.
async fn wait_for_start(
    source: &mut Source,
    serializer: &mut dyn CarrierSerializer,
    gateway: &Inner,
) -> Result<StreamStart, &'static str> {
    let deadline = Instant::now() + gateway.options.start_timeout;
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout_at(deadline, source.next()) => match frame {
                Ok(frame) => frame,
                Err(_) => {
                    warn!("closing the call: no `start` within {:?}", gateway.options.start_timeout);
                    return Err("protocol_error");
                }
            },
            _ = gateway.state.hard_stop.cancelled() => return Err("drained"),
        };
        let event = match frame {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                warn!("caller vanished before the stream started");
                return Err("caller_gone");
            }
            Some(Ok(Message::Text(text))) => serializer.decode(CarrierFrame::Text(text.as_str())),
            Some(Ok(Message::Binary(data))) => serializer.decode(CarrierFrame::Binary(&data)),
            Some(Ok(_)) => continue,
        };
        match event {
            Ok(CarrierEvent::Start(start)) => return Ok(start),
            Ok(CarrierEvent::Connected) => debug!("carrier connected"),
            Ok(CarrierEvent::Stop) => {
                info!("stream stopped before it started");
                return Err("completed");
            }
            Ok(other) => debug!(?other, "ignored before `start`"),
            Err(error) => {
                warn!(%error, "closing the call: malformed frame from the carrier");
                metrics::error(Transport::Carrier(serializer.name()), "malformed");
                return Err("protocol_error");
            }
        }
    }
}

/// A marker sent after a frame: when it comes back, `end_ms` of the item has been played.
#[derive(Debug)]
struct PendingMark {
    name: String,
    item_id: Arc<str>,
    content_index: u32,
    end_ms: u64,
}

struct Bridge {
    transport: Transport,
    call_id: String,
    gateway: Arc<Inner>,
    serializer: Box<dyn CarrierSerializer>,
    handle: RealtimeSessionHandle,
    tracker: Arc<AckPlaybackTracker>,
    out: Outbound,
    /// Markers sent and not echoed yet, oldest first. Cleared on barge-in: the echoes that
    /// `clear` provokes then match nothing and are ignored.
    marks: VecDeque<PendingMark>,
    mark_seq: u64,
    mark_interval_ms: u64,
    /// Position of the last marker sent in the current item.
    last_mark_ms: u64,
    /// Items cut by a barge-in (their late audio is dropped).
    interrupted: VecDeque<String>,
    /// Where the caller's next chunk should start, from the carrier's timestamps.
    next_timestamp: Option<u64>,
    silence: u8,
    format: AudioFormat,
    dtmf: String,
    dtmf_deadline: Option<Instant>,
    speech_started: Option<Instant>,
    speech_stopped: Option<Instant>,
    warned_events: Vec<String>,
}

enum Step {
    Continue,
    End(&'static str),
}

impl Bridge {
    async fn pump(
        &mut self,
        mut session: RealtimeSession,
        sink: &mut Sink,
        source: &mut Source,
    ) -> &'static str {
        let hard_stop = self.gateway.state.hard_stop.clone();
        loop {
            let send_at = self.out.next_send_at();
            let step = tokio::select! {
                biased;
                _ = hard_stop.cancelled() => {
                    info!("drain deadline: closing the call");
                    Step::End("drained")
                }
                // Frames due go first: pacing is the one deadline here.
                _ = sleep_until(send_at) => self.send_due(sink).await,
                frame = source.next() => self.on_frame(frame).await,
                event = session.next() => match event {
                    Some(event) => self.on_session_event(event, sink).await,
                    None => Step::End("session_error"),
                },
                _ = sleep_until(self.dtmf_deadline) => {
                    self.flush_dtmf().await;
                    Step::Continue
                }
            };
            if let Step::End(outcome) = step {
                return outcome;
            }
        }
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Step {
        let decoded = match frame {
            None => {
                warn!("caller vanished: the socket ended without `stop`");
                return Step::End("caller_gone");
            }
            Some(Err(error)) => {
                warn!(%error, "caller vanished: socket error without `stop`");
                return Step::End("caller_gone");
            }
            Some(Ok(Message::Close(_))) => {
                warn!("caller vanished: close frame without `stop`");
                return Step::End("caller_gone");
            }
            Some(Ok(Message::Text(text))) => {
                self.serializer.decode(CarrierFrame::Text(text.as_str()))
            }
            Some(Ok(Message::Binary(data))) => self.serializer.decode(CarrierFrame::Binary(&data)),
            Some(Ok(_)) => return Step::Continue,
        };
        let event = match decoded {
            Ok(event) => event,
            Err(error) => {
                warn!(%error, "closing the call: malformed frame from the carrier");
                metrics::error(self.transport, "malformed");
                return Step::End("protocol_error");
            }
        };
        match event {
            CarrierEvent::Media {
                audio,
                timestamp_ms,
            } => self.on_media(audio, timestamp_ms).await,
            CarrierEvent::Mark { name } => {
                self.on_mark(&name);
                Step::Continue
            }
            CarrierEvent::Dtmf { digit } => {
                self.on_dtmf(digit).await;
                Step::Continue
            }
            CarrierEvent::Stop => {
                info!("carrier stopped the stream");
                Step::End("completed")
            }
            CarrierEvent::Connected | CarrierEvent::Start(_) => {
                debug!("repeated connected/start ignored");
                Step::Continue
            }
            CarrierEvent::Other { event } => {
                if !self.warned_events.contains(&event) {
                    warn!(event = %event, "ignoring an unknown carrier event (logged once per kind)");
                    metrics::error(self.transport, "unknown_event");
                    if self.warned_events.len() < 32 {
                        self.warned_events.push(event);
                    }
                }
                Step::Continue
            }
        }
    }

    async fn on_media(&mut self, audio: Vec<u8>, timestamp_ms: Option<u64>) -> Step {
        if let (Some(at), Some(expected)) = (timestamp_ms, self.next_timestamp) {
            // Some calls carry no silent chunks: fill the gap so turn detection sees silence.
            let gap = at.saturating_sub(expected);
            if gap > GAP_TOLERANCE_MS && self.format != AudioFormat::PCM16_24K {
                let fill = self.format.ms_to_bytes(gap.min(MAX_GAP_MS));
                debug!(
                    gap_ms = gap,
                    "filling a gap in the caller's audio with silence"
                );
                if self
                    .handle
                    .send_audio(vec![self.silence; fill], false)
                    .await
                    .is_err()
                {
                    return Step::End("session_error");
                }
            }
        }
        if let Some(at) = timestamp_ms {
            self.next_timestamp = Some(at + self.format.bytes_to_ms(audio.len()) as u64);
        }
        match self.handle.send_audio(audio, false).await {
            Ok(()) => Step::Continue,
            Err(_) => Step::End("session_error"),
        }
    }

    fn on_mark(&mut self, name: &str) {
        let Some(position) = self.marks.iter().position(|m| m.name == name) else {
            debug!(name, "mark echo for flushed audio ignored");
            return;
        };
        // Echoes come back in order: this one covers every earlier marker too.
        for mark in self.marks.drain(..=position) {
            self.tracker
                .acknowledge(&mark.item_id, mark.content_index, mark.end_ms);
        }
    }

    async fn on_dtmf(&mut self, digit: String) {
        info!(digit = %digit, "DTMF");
        self.gateway.emit(GatewayEvent::Dtmf {
            call_id: self.call_id.clone(),
            digit: digit.clone(),
        });
        let Some(gap) = self.gateway.options.dtmf_to_model else {
            return;
        };
        if self.dtmf.len() < 64 {
            self.dtmf.push_str(&digit);
        }
        if digit == "#" {
            self.flush_dtmf().await;
        } else {
            self.dtmf_deadline = Some(Instant::now() + gap);
        }
    }

    /// Tells the model the digits pressed since the last flush, as one user message.
    async fn flush_dtmf(&mut self) {
        self.dtmf_deadline = None;
        if self.dtmf.is_empty() {
            return;
        }
        let digits = std::mem::take(&mut self.dtmf);
        let _ = self.handle.send_message(format!("DTMF: {digits}")).await;
    }

    async fn on_session_event(&mut self, event: E, sink: &mut Sink) -> Step {
        match event {
            E::Audio {
                item_id,
                content_index,
                data,
                ..
            } => {
                if self.interrupted.contains(&item_id) {
                    return Step::Continue;
                }
                self.out.push(&item_id, content_index, &data, self.silence);
            }
            E::AudioEnd {
                item_id,
                content_index,
                ..
            } => {
                // Everything of the item left already: mark its end now.
                let all_sent =
                    !self.out.seal(self.silence) && self.out.current_is(&item_id, content_index);
                let end_ms = self.out.item_end_ms();
                if all_sent && end_ms > self.last_mark_ms {
                    let item: Arc<str> = Arc::from(item_id.as_str());
                    if self
                        .send_mark(sink, item, content_index, end_ms)
                        .await
                        .is_err()
                    {
                        return Step::End("caller_gone");
                    }
                }
            }
            E::AudioInterrupted {
                item_id, played_ms, ..
            } => {
                debug!(played_ms, "barge-in: flushing the caller's playback");
                self.out.clear();
                self.marks.clear();
                self.last_mark_ms = 0;
                if self.interrupted.len() == 8 {
                    self.interrupted.pop_front();
                }
                self.interrupted.push_back(item_id);
                if let Some(clear) = self.serializer.clear() {
                    if self.send(sink, clear).await.is_err() {
                        return Step::End("caller_gone");
                    }
                }
                if let Some(at) = self.speech_started.take() {
                    metrics::barge_in(self.transport, at.elapsed());
                }
            }
            E::InputSpeechStarted { .. } => self.speech_started = Some(Instant::now()),
            E::InputSpeechStopped { .. } => self.speech_stopped = Some(Instant::now()),
            E::AgentEnd { .. } => metrics::turn(self.transport),
            E::ToolStart { tool, .. } => info!(tool = %tool, "tool call"),
            E::ToolEnd { tool, is_error, .. } => debug!(tool = %tool, is_error, "tool done"),
            E::UserTranscript { transcript, .. } => debug!(%transcript, "caller said"),
            E::Error { error, .. } => {
                warn!(%error, "session error");
                metrics::error(self.transport, "session");
            }
            E::Closed { error, .. } => {
                return match error {
                    Some(error) => {
                        warn!(%error, "the session ended");
                        Step::End("session_error")
                    }
                    None => Step::End("completed"),
                };
            }
            _ => {}
        }
        Step::Continue
    }

    /// Sends the frames that are due, each followed by a marker at the mark interval and at the
    /// end of its item.
    async fn send_due(&mut self, sink: &mut Sink) -> Step {
        while let Some(frame) = self.out.pop_due(Instant::now()) {
            if let Some(at) = self.speech_stopped.take() {
                metrics::first_audio(self.transport, at.elapsed());
            }
            let message = self.serializer.media(&frame.data);
            if self.send(sink, message).await.is_err() {
                return Step::End("caller_gone");
            }
            if frame.first_of_item {
                self.last_mark_ms = 0;
            }
            let mark_due =
                frame.last_of_item || frame.end_ms >= self.last_mark_ms + self.mark_interval_ms;
            if mark_due
                && self
                    .send_mark(sink, frame.item_id, frame.content_index, frame.end_ms)
                    .await
                    .is_err()
            {
                return Step::End("caller_gone");
            }
        }
        Step::Continue
    }

    async fn send_mark(
        &mut self,
        sink: &mut Sink,
        item_id: Arc<str>,
        content_index: u32,
        end_ms: u64,
    ) -> Result<(), ()> {
        self.mark_seq += 1;
        let name = format!("m{}", self.mark_seq);
        let Some(message) = self.serializer.mark(&name) else {
            // No markers: what was sent is the best guess of what was played.
            self.tracker.acknowledge(&item_id, content_index, end_ms);
            return Ok(());
        };
        self.send(sink, message).await?;
        self.last_mark_ms = end_ms;
        self.marks.push_back(PendingMark {
            name,
            item_id,
            content_index,
            end_ms,
        });
        Ok(())
    }

    async fn send(&mut self, sink: &mut Sink, message: CarrierMessage) -> Result<(), ()> {
        let message = match message {
            CarrierMessage::Text(text) => Message::Text(text.into()),
            CarrierMessage::Binary(data) => Message::Binary(data),
        };
        send(sink, message).await.map_err(|_| ())
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One 20 ms frame for the caller.
#[derive(Debug)]
struct Frame {
    data: Vec<u8>,
    item_id: Arc<str>,
    content_index: u32,
    /// The item's audio up to the end of this frame (padding not counted), in ms.
    end_ms: u64,
    first_of_item: bool,
    last_of_item: bool,
}

/// The assistant's audio cut into fixed frames, paced from a monotonic clock.
///
/// `play_at` is when the next frame starts playing at the far end; a frame goes out `lead`
/// before that. The deadlines are absolute, so timer lateness never accumulates.
#[derive(Debug)]
struct Outbound {
    format: AudioFormat,
    frame_bytes: usize,
    lead: Duration,
    frames: VecDeque<Frame>,
    partial: Vec<u8>,
    /// The item being cut into frames, and its real bytes so far.
    item: Option<(Arc<str>, u32)>,
    item_bytes: usize,
    item_frames: usize,
    play_at: Instant,
}

impl Outbound {
    fn new(format: AudioFormat, lead: Duration) -> Self {
        let frame_bytes = format.ms_to_bytes(FRAME.as_millis() as u64);
        Self {
            format,
            frame_bytes,
            lead,
            frames: VecDeque::new(),
            partial: Vec::with_capacity(frame_bytes),
            item: None,
            item_bytes: 0,
            item_frames: 0,
            play_at: Instant::now(),
        }
    }

    fn current_is(&self, item_id: &str, content_index: u32) -> bool {
        matches!(&self.item, Some((id, ci)) if &**id == item_id && *ci == content_index)
    }

    fn item_end_ms(&self) -> u64 {
        self.format.bytes_to_ms(self.item_bytes) as u64
    }

    fn push(&mut self, item_id: &str, content_index: u32, mut data: &[u8], silence: u8) {
        if !self.current_is(item_id, content_index) {
            self.seal(silence);
            self.item = Some((Arc::from(item_id), content_index));
            self.item_bytes = 0;
            self.item_frames = 0;
        }
        if self.frames.is_empty() && self.play_at < Instant::now() {
            self.play_at = Instant::now();
        }
        while !data.is_empty() {
            let take = (self.frame_bytes - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() == self.frame_bytes {
                self.cut(self.frame_bytes, false);
            }
        }
    }

    /// Pads the item's last partial frame with silence and queues it; returns whether a
    /// frame was queued for the end of the item (so its marker goes with it).
    fn seal(&mut self, silence: u8) -> bool {
        if self.item.is_none() {
            return false;
        }
        if !self.partial.is_empty() {
            let real = self.partial.len();
            self.partial.resize(self.frame_bytes, silence);
            self.cut(real, true);
            return true;
        }
        match self.frames.back_mut() {
            Some(last)
                if self
                    .item
                    .as_ref()
                    .is_some_and(|(id, _)| *id == last.item_id) =>
            {
                last.last_of_item = true;
                true
            }
            _ => false,
        }
    }

    fn cut(&mut self, real_bytes: usize, last: bool) {
        let Some((item_id, content_index)) = self.item.clone() else {
            return;
        };
        self.item_bytes += real_bytes;
        self.item_frames += 1;
        let data = std::mem::replace(&mut self.partial, Vec::with_capacity(self.frame_bytes));
        self.frames.push_back(Frame {
            data,
            item_id,
            content_index,
            end_ms: self.item_end_ms(),
            first_of_item: self.item_frames == 1,
            last_of_item: last,
        });
    }

    fn next_send_at(&self) -> Option<Instant> {
        (!self.frames.is_empty())
            .then(|| self.play_at.checked_sub(self.lead).unwrap_or(self.play_at))
    }

    fn pop_due(&mut self, now: Instant) -> Option<Frame> {
        if self.frames.is_empty() || now + self.lead < self.play_at {
            return None;
        }
        let frame = self.frames.pop_front()?;
        // Behind (an underrun at the far end): the next frame plays as soon as it arrives.
        if self.play_at < now {
            self.play_at = now;
        }
        self.play_at += FRAME;
        Some(frame)
    }

    /// Barge-in: drop everything queued; the far end was flushed too.
    fn clear(&mut self) {
        self.frames.clear();
        self.partial.clear();
        self.item = None;
        self.item_bytes = 0;
        self.item_frames = 0;
        self.play_at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn frames_are_fixed_and_paced_with_a_lead() {
        let mut out = Outbound::new(AudioFormat::G711_ULAW, Duration::from_millis(60));
        out.push("a", 0, &[1; 1000], 0xff); // 6 frames + 40 bytes
        assert!(out.seal(0xff));
        assert_eq!(out.frames.len(), 7);
        let start = Instant::now();
        let mut sent = Vec::new();
        while let Some(at) = out.next_send_at() {
            tokio::time::sleep_until(at).await;
            while let Some(f) = out.pop_due(Instant::now()) {
                sent.push((Instant::now() - start, f));
            }
        }
        assert!(sent.iter().all(|(_, f)| f.data.len() == 160));
        // Four frames go at once (the one playing now and 60 ms of lead), then one every 20 ms.
        let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
        assert_eq!(times, [0, 0, 0, 0, 20, 40, 60]);
        let last = &sent[6].1;
        assert!(last.last_of_item);
        assert_eq!(last.end_ms, 125);
        assert_eq!(&last.data[40..], &[0xff; 120][..]);
    }
}
