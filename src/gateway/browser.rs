//! The browser socket: binary PCM both ways, JSON control and events.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{Instrument as _, debug, info, warn};

use super::playback::AckPlaybackTracker;
use super::socket::{Sink, close, send};
use super::state::Permit;
use super::{CallInfo, GatewayEvent, Inner, Transport, metrics};
use crate::audio::AudioFormat;
use crate::{RealtimeSessionEvent as E, RealtimeSessionHandle};

/// The session's audio format on the browser socket.
pub(crate) const FORMAT: AudioFormat = AudioFormat::PCM16_24K;
const TRANSPORT: Transport = Transport::Browser;

/// A control message from the page.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    /// The playback worklet has played `played_ms` of the item.
    Played {
        item_id: String,
        #[serde(default)]
        content_index: u32,
        played_ms: u64,
    },
    /// A typed message.
    Message { text: String },
    /// Stop the assistant.
    Interrupt,
}

/// Serves one browser socket until the page leaves, the session ends or the drain deadline.
pub(crate) async fn serve(socket: WebSocket, gateway: Arc<Inner>, permit: Permit) {
    let call = CallInfo::new(TRANSPORT);
    let span = tracing::info_span!("call", call_id = %call.call_id, transport = %TRANSPORT);
    let started = Instant::now();
    let call_id = call.call_id.clone();
    let outcome = run(socket, &gateway, call).instrument(span.clone()).await;
    gateway.call_ended(&span, call_id, TRANSPORT, outcome, started);
    drop(permit);
}

async fn run(socket: WebSocket, gateway: &Arc<Inner>, call: CallInfo) -> &'static str {
    let (mut sink, mut source) = socket.split();
    let tracker = Arc::new(AckPlaybackTracker::new());
    let mut session = match gateway.recipe.open(&call, FORMAT, tracker.clone()).await {
        Ok(session) => session,
        Err(error) => {
            warn!(%error, "could not start the session");
            metrics::error(TRANSPORT, "session_start");
            let _ = send_json(
                &mut sink,
                json!({"type": "closed", "reason": "the assistant is unavailable"}),
            )
            .await;
            close(&mut sink, 1011, "the assistant is unavailable").await;
            return "session_error";
        }
    };
    info!("browser session started");
    gateway.emit(GatewayEvent::CallStarted { call: call.clone() });
    let handle = session.handle();
    let ready =
        json!({"type": "ready", "call_id": call.call_id, "sample_rate": FORMAT.sample_rate()});
    if send_json(&mut sink, ready).await.is_err() {
        handle.close().await;
        return "caller_gone";
    }
    if gateway.options.greet {
        let _ = handle.create_response().await;
    }
    let mut page = Page {
        handle: handle.clone(),
        tracker,
        audio_item: None,
        speech_started: None,
        speech_stopped: None,
        warned: Vec::new(),
    };
    let hard_stop = gateway.state.hard_stop.clone();
    let outcome = loop {
        let step = tokio::select! {
            biased;
            _ = hard_stop.cancelled() => {
                info!("drain deadline: closing the call");
                let _ = send_json(&mut sink, json!({"type": "closed", "reason": "server shutting down"})).await;
                Err("drained")
            }
            frame = source.next() => page.on_frame(frame).await,
            event = session.next() => match event {
                Some(event) => page.on_session_event(event, &mut sink).await,
                None => Err("session_error"),
            },
        };
        if let Err(outcome) = step {
            break outcome;
        }
    };
    handle.close().await;
    match outcome {
        "drained" => close(&mut sink, 1001, "server shutting down").await,
        "protocol_error" => close(&mut sink, 1007, "malformed message").await,
        _ => close(&mut sink, 1000, "").await,
    }
    outcome
}

struct Page {
    handle: RealtimeSessionHandle,
    tracker: Arc<AckPlaybackTracker>,
    /// The item whose audio the page is receiving (announced before its first binary frame).
    audio_item: Option<(String, u32)>,
    speech_started: Option<Instant>,
    speech_stopped: Option<Instant>,
    warned: Vec<String>,
}

impl Page {
    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, axum::Error>>,
    ) -> Result<(), &'static str> {
        let text = match frame {
            None | Some(Ok(Message::Close(_))) => {
                info!("the page left");
                return Err("completed");
            }
            Some(Err(error)) => {
                warn!(%error, "caller vanished: socket error");
                return Err("caller_gone");
            }
            Some(Ok(Message::Binary(audio))) => {
                if audio.len() % 2 != 0 {
                    warn!(
                        bytes = audio.len(),
                        "closing the call: odd-sized PCM16 frame"
                    );
                    metrics::error(TRANSPORT, "malformed");
                    return Err("protocol_error");
                }
                return self
                    .handle
                    .send_audio(audio, false)
                    .await
                    .map_err(|_| "session_error");
            }
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => return Ok(()),
        };
        let message: ClientMessage = match serde_json::from_str(text.as_str()) {
            Ok(message) => message,
            Err(error) => {
                // Well-formed JSON with a type we do not know is tolerated; anything else is not.
                if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text.as_str()) {
                    if let Some(kind) = map.get("type").and_then(Value::as_str) {
                        if !matches!(kind, "played" | "message" | "interrupt") {
                            if !self.warned.iter().any(|w| w == kind) && self.warned.len() < 32 {
                                warn!(
                                    kind,
                                    "ignoring an unknown message from the page (logged once per kind)"
                                );
                                metrics::error(TRANSPORT, "unknown_event");
                                self.warned.push(kind.to_owned());
                            }
                            return Ok(());
                        }
                    }
                }
                warn!(%error, "closing the call: malformed message from the page");
                metrics::error(TRANSPORT, "malformed");
                return Err("protocol_error");
            }
        };
        match message {
            ClientMessage::Played {
                item_id,
                content_index,
                played_ms,
            } => {
                if !self.tracker.acknowledge(&item_id, content_index, played_ms) {
                    debug!(played_ms, "playback report for an item no longer playing");
                }
            }
            ClientMessage::Message { text } => {
                let _ = self.handle.send_message(text).await;
            }
            ClientMessage::Interrupt => {
                let _ = self.handle.interrupt().await;
            }
        }
        Ok(())
    }

    async fn on_session_event(&mut self, event: E, sink: &mut Sink) -> Result<(), &'static str> {
        let message = match event {
            E::Audio {
                item_id,
                content_index,
                data,
                ..
            } => {
                if let Some(at) = self.speech_stopped.take() {
                    metrics::first_audio(TRANSPORT, at.elapsed());
                }
                if !matches!(&self.audio_item, Some((id, ci)) if *id == item_id && *ci == content_index)
                {
                    let announce = json!({"type": "audio", "item_id": item_id, "content_index": content_index});
                    send_json(sink, announce).await?;
                    self.audio_item = Some((item_id, content_index));
                }
                return send(sink, Message::Binary(data)).await;
            }
            E::AudioEnd {
                item_id,
                content_index,
                ..
            } => json!({"type": "audio_end", "item_id": item_id, "content_index": content_index}),
            E::AudioInterrupted {
                item_id,
                content_index,
                played_ms,
                ..
            } => {
                self.audio_item = None;
                if let Some(at) = self.speech_started.take() {
                    metrics::barge_in(TRANSPORT, at.elapsed());
                }
                json!({"type": "interrupted", "item_id": item_id, "content_index": content_index, "played_ms": played_ms})
            }
            E::TranscriptDelta {
                role,
                item_id,
                delta,
                ..
            } => {
                json!({"type": "transcript_delta", "role": role, "item_id": item_id, "delta": delta})
            }
            E::UserTranscript {
                item_id,
                transcript,
                ..
            } => json!({"type": "user_transcript", "item_id": item_id, "transcript": transcript}),
            E::ToolStart {
                tool,
                call_id,
                arguments,
                ..
            } => {
                info!(tool = %tool, "tool call");
                json!({"type": "tool_start", "tool": tool, "call_id": call_id, "arguments": arguments})
            }
            E::ToolEnd {
                tool,
                call_id,
                output,
                is_error,
                ..
            } => {
                json!({"type": "tool_end", "tool": tool, "call_id": call_id, "output": output, "is_error": is_error})
            }
            E::InputSpeechStarted { item_id, .. } => {
                self.speech_started = Some(Instant::now());
                json!({"type": "speech_started", "item_id": item_id})
            }
            E::InputSpeechStopped { item_id, .. } => {
                self.speech_stopped = Some(Instant::now());
                json!({"type": "speech_stopped", "item_id": item_id})
            }
            E::AgentStart { agent, .. } => json!({"type": "agent_start", "agent": agent}),
            E::AgentEnd { agent, .. } => {
                metrics::turn(TRANSPORT);
                json!({"type": "agent_end", "agent": agent})
            }
            E::Handoff { from, to, .. } => json!({"type": "handoff", "from": from, "to": to}),
            E::Error { error, .. } => {
                warn!(%error, "session error");
                metrics::error(TRANSPORT, "session");
                json!({"type": "error", "message": error.to_string()})
            }
            E::Closed { error, .. } => {
                let reason = match &error {
                    Some(error) => {
                        warn!(%error, "the session ended");
                        error.to_string()
                    }
                    None => "closed".to_owned(),
                };
                let _ = send_json(sink, json!({"type": "closed", "reason": reason})).await;
                return Err(if error.is_some() {
                    "session_error"
                } else {
                    "completed"
                });
            }
            _ => return Ok(()),
        };
        send_json(sink, message).await
    }
}

async fn send_json(sink: &mut Sink, value: Value) -> Result<(), &'static str> {
    send(sink, Message::Text(value.to_string().into())).await
}
