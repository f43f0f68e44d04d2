//! A scripted OpenAI-Realtime-style server on 127.0.0.1 for integration tests.
//!
//! It records every client event and lets each test decide what the server says, either in
//! reaction to a client event (the script) or at any time (`send`).
#![allow(dead_code)]

pub mod script;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use realtime_agents::model::OpenAIRealtimeWebSocketModel;
use realtime_agents::{RealtimeSession, RealtimeSessionEvent};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What the server does next on its connection.
#[derive(Debug, Clone)]
pub enum Out {
    Json(Value),
    Text(String),
    Close(u16, String),
    Drop,
}

type Script = Arc<dyn Fn(&Value, &Responder) + Send + Sync>;

/// Lets a script answer.
#[derive(Clone)]
pub struct Responder {
    tx: mpsc::UnboundedSender<Out>,
}

impl Responder {
    pub fn send(&self, event: Value) {
        let _ = self.tx.send(Out::Json(event));
    }
    pub fn send_all(&self, events: impl IntoIterator<Item = Value>) {
        events.into_iter().for_each(|e| self.send(e));
    }
    pub fn raw(&self, text: &str) {
        let _ = self.tx.send(Out::Text(text.into()));
    }
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.tx.send(Out::Close(code, reason.into()));
    }
    pub fn drop_connection(&self) {
        let _ = self.tx.send(Out::Drop);
    }
}

pub struct ScriptedServer {
    pub url: String,
    received: Arc<Mutex<Vec<Value>>>,
    changed: watch::Receiver<usize>,
    responder: Arc<Mutex<Option<Responder>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedServer {
    /// Starts a server that answers `session.update` with `session.updated` and otherwise runs
    /// `script` on every client event.
    pub async fn start(script: impl Fn(&Value, &Responder) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("addr"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (changed_tx, changed) = watch::channel(0usize);
        let responder = Arc::new(Mutex::new(None));
        let script: Script = Arc::new(script);
        let task = tokio::spawn({
            let received = received.clone();
            let responder = responder.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                        continue;
                    };
                    let (mut sink, mut source) = ws.split();
                    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
                    let out = Responder { tx };
                    *responder.lock().unwrap() = Some(out.clone());
                    out.send(session_created());
                    loop {
                        tokio::select! {
                            next = rx.recv() => match next {
                                Some(Out::Json(v)) => { if sink.send(Message::text(v.to_string())).await.is_err() { break } }
                                Some(Out::Text(t)) => { if sink.send(Message::text(t)).await.is_err() { break } }
                                Some(Out::Close(code, reason)) => {
                                    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                                    let _ = sink.send(Message::Close(Some(frame))).await;
                                    break;
                                }
                                Some(Out::Drop) | None => break,
                            },
                            msg = source.next() => match msg {
                                Some(Ok(Message::Text(text))) => {
                                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                                    {
                                        let mut r = received.lock().unwrap();
                                        r.push(value.clone());
                                        let _ = changed_tx.send(r.len());
                                    }
                                    if value["type"] == "session.update" {
                                        out.send(json!({"type": "session.updated", "event_id": "ev_su", "session": value["session"].clone()}));
                                    }
                                    script(&value, &out);
                                }
                                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                                Some(Ok(_)) => {}
                            },
                        }
                    }
                }
            }
        });
        Self {
            url,
            received,
            changed,
            responder,
            task,
        }
    }

    /// A model pointed at this server.
    pub fn model(&self) -> OpenAIRealtimeWebSocketModel {
        OpenAIRealtimeWebSocketModel::builder()
            .url(self.url.clone())
            .api_key("sk-test-secret")
            .build()
    }

    /// Sends a server event on the current connection.
    pub fn send(&self, event: Value) {
        if let Some(r) = self.responder.lock().unwrap().as_ref() {
            r.send(event);
        }
    }

    pub fn responder(&self) -> Responder {
        self.responder
            .lock()
            .unwrap()
            .clone()
            .expect("no connection yet")
    }

    /// Every client event so far.
    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// The client events of this type so far.
    pub fn received_of(&self, kind: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|v| v["type"] == kind)
            .collect()
    }

    /// The types of client events received, in order, without audio appends.
    pub fn types(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter_map(|v| v["type"].as_str().map(str::to_owned))
            .filter(|t| t != "input_audio_buffer.append")
            .collect()
    }

    /// Waits until `n` client events of this type arrived; panics after 5 s.
    pub async fn wait_for(&self, kind: &str, n: usize) -> Vec<Value> {
        let mut changed = self.changed.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.received_of(kind);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out waiting for {n} `{kind}`; received: {:?}",
                    self.types()
                );
            }
        }
    }
}

pub fn session_created() -> Value {
    json!({"type": "session.created", "event_id": "ev_sc", "session": {
        "type": "realtime", "id": "sess_1", "object": "realtime.session", "model": "gpt-realtime",
        "output_modalities": ["audio"], "instructions": "",
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": null,
                      "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                         "silence_duration_ms": 500, "create_response": true, "interrupt_response": true}},
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0}
        },
        "tools": [], "tool_choice": "auto"
    }})
}

/// Server events for the parts of a response.
pub mod ev {
    use super::*;

    pub fn response_created(id: &str) -> Value {
        json!({"type": "response.created", "event_id": format!("ev_{id}_c"), "response": {"id": id, "object": "realtime.response", "status": "in_progress", "output": []}})
    }

    pub fn response_done(id: &str, status: &str) -> Value {
        json!({"type": "response.done", "event_id": format!("ev_{id}_d"), "response": {"id": id, "object": "realtime.response", "status": status, "output": [],
            "usage": {"total_tokens": 30, "input_tokens": 10, "output_tokens": 20,
                      "input_token_details": {"text_tokens": 10, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0},
                      "output_token_details": {"text_tokens": 5, "audio_tokens": 15}}}})
    }

    pub fn assistant_item(item_id: &str, prev: Option<&str>, status: &str) -> Value {
        json!({"type": "conversation.item.added", "event_id": format!("ev_{item_id}_a"), "previous_item_id": prev,
               "item": {"id": item_id, "object": "realtime.item", "type": "message", "role": "assistant", "status": status,
                        "content": [{"type": "output_audio", "transcript": null}]}})
    }

    pub fn user_text_item(item_id: &str, prev: Option<&str>, text: &str) -> Value {
        json!({"type": "conversation.item.added", "event_id": format!("ev_{item_id}_a"), "previous_item_id": prev,
               "item": {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                        "content": [{"type": "input_text", "text": text}]}})
    }

    /// What the real server answers to a client's `conversation.item.create` of a user text
    /// message: the item, as added, under `item_id`.
    pub fn echo_user_message(create: &Value, item_id: &str) -> Option<Value> {
        let item = &create["item"];
        if create["type"] != "conversation.item.create" || item["role"] != "user" {
            return None;
        }
        let text = item["content"][0]["text"].as_str().unwrap_or("");
        Some(user_text_item(item_id, None, text))
    }

    pub fn transcript_delta(resp: &str, item_id: &str, delta: &str) -> Value {
        json!({"type": "response.output_audio_transcript.delta", "event_id": "ev_td", "response_id": resp, "item_id": item_id,
               "output_index": 0, "content_index": 0, "delta": delta})
    }

    /// `ms` milliseconds of PCM16 24 kHz audio (value 1000) in one delta.
    pub fn audio_delta(resp: &str, item_id: &str, ms: usize) -> Value {
        let bytes: Vec<u8> = std::iter::repeat_n(1000i16.to_le_bytes(), ms * 24)
            .flatten()
            .collect();
        json!({"type": "response.output_audio.delta", "event_id": "ev_ad", "response_id": resp, "item_id": item_id,
               "output_index": 0, "content_index": 0, "delta": base64::engine::general_purpose::STANDARD.encode(bytes)})
    }

    pub fn audio_done(resp: &str, item_id: &str) -> Value {
        json!({"type": "response.output_audio.done", "event_id": "ev_adn", "response_id": resp, "item_id": item_id,
               "output_index": 0, "content_index": 0})
    }

    pub fn function_call(
        resp: &str,
        item_id: &str,
        call_id: &str,
        name: &str,
        args: &str,
    ) -> Value {
        json!({"type": "response.output_item.done", "event_id": format!("ev_{call_id}"), "response_id": resp, "output_index": 0,
               "item": {"id": item_id, "object": "realtime.item", "type": "function_call", "status": "completed",
                        "call_id": call_id, "name": name, "arguments": args}})
    }

    pub fn function_call_item(
        item_id: &str,
        prev: Option<&str>,
        call_id: &str,
        name: &str,
        args: &str,
    ) -> Value {
        json!({"type": "conversation.item.added", "event_id": format!("ev_{item_id}_a"), "previous_item_id": prev,
               "item": {"id": item_id, "object": "realtime.item", "type": "function_call", "status": "completed",
                        "call_id": call_id, "name": name, "arguments": args}})
    }

    pub fn speech_started(item_id: &str) -> Value {
        json!({"type": "input_audio_buffer.speech_started", "event_id": "ev_ss", "audio_start_ms": 1000, "item_id": item_id})
    }

    pub fn error(code: &str, message: &str, event_id: Option<&str>) -> Value {
        json!({"type": "error", "event_id": "ev_err", "error": {"type": "invalid_request_error", "code": code, "message": message, "param": null, "event_id": event_id}})
    }
}

/// Collects session events until one matches `pred` (inclusive); panics after 10 s or if the
/// stream ends first, printing what was seen.
pub async fn until(
    session: &mut RealtimeSession,
    mut pred: impl FnMut(&RealtimeSessionEvent) -> bool,
) -> Vec<RealtimeSessionEvent> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = session.next().await {
            let done = pred(&event);
            seen.push(event);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    match found {
        Ok(true) => seen,
        Ok(false) => panic!("stream ended first; events: {seen:#?}"),
        Err(_) => panic!("timed out; events: {seen:#?}"),
    }
}

/// Everything the assistant said (transcript deltas), joined.
pub fn assistant_text(events: &[RealtimeSessionEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            RealtimeSessionEvent::TranscriptDelta {
                role: realtime_agents::items::Role::Assistant,
                delta,
                ..
            } => Some(delta.as_str()),
            _ => None,
        })
        .collect()
}

/// A simulator that answers at once (speed 0) and records the client events.
pub async fn recording_simulator() -> realtime_agents::simulator::Simulator {
    realtime_agents::simulator::Simulator::builder()
        .speed(0.0)
        .record_client_events(true)
        .start()
        .await
        .expect("simulator starts")
}

/// The client events `sim` received, once `ready` says they are all there (they arrive a
/// little after the session sent them); panics after 5 s.
pub async fn client_events(
    sim: &realtime_agents::simulator::Simulator,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..500 {
        let events = sim.client_events();
        if ready(&events) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("client events not ready: {:#?}", sim.client_events());
}

/// Collects the remaining events until the stream ends; panics after 5 s.
pub async fn until_end(session: &mut RealtimeSession) -> Vec<RealtimeSessionEvent> {
    tokio::time::timeout(Duration::from_secs(5), session.by_ref().collect::<Vec<_>>())
        .await
        .expect("the stream ends")
}

/// A loopback WebSocket server that sends whatever frames the test gives it (text, binary,
/// oversized, ...) on its current connection. It answers every connection with
/// `session.created` and records the client's text frames, like [`ScriptedServer`], but runs
/// no script.
pub struct FrameServer {
    pub url: String,
    frames: Arc<Mutex<Frames>>,
    received: Arc<Mutex<Vec<Message>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Where [`FrameServer::frame`] sends: the current connection, or, before the first one, a
/// list that the first connection gets right after `session.created`. (A session's `run()`
/// returns on the 101, which can be before the server has its side of the connection ready.)
#[derive(Default)]
struct Frames {
    current: Option<mpsc::UnboundedSender<Message>>,
    early: Vec<Message>,
}

impl Drop for FrameServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FrameServer {
    /// Starts the server.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("addr"));
        let frames: Arc<Mutex<Frames>> = Arc::default();
        let received: Arc<Mutex<Vec<Message>>> = Arc::default();
        let task = tokio::spawn({
            let frames = frames.clone();
            let received = received.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                        continue;
                    };
                    let (mut sink, mut source) = ws.split();
                    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
                    let _ = tx.send(Message::text(session_created().to_string()));
                    {
                        let mut frames = frames.lock().unwrap();
                        for frame in frames.early.drain(..) {
                            let _ = tx.send(frame);
                        }
                        frames.current = Some(tx);
                    }
                    loop {
                        tokio::select! {
                            next = rx.recv() => match next {
                                Some(frame) => { if sink.send(frame).await.is_err() { break } }
                                None => break,
                            },
                            msg = source.next() => match msg {
                                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                                Some(Ok(msg)) => received.lock().unwrap().push(msg),
                            },
                        }
                    }
                }
            }
        });
        Self {
            url,
            frames,
            received,
            task,
        }
    }

    /// A model pointed at this server, with the test key `sk-test-secret`.
    pub fn model(&self) -> OpenAIRealtimeWebSocketModel {
        OpenAIRealtimeWebSocketModel::builder()
            .url(self.url.clone())
            .api_key("sk-test-secret")
            .build()
    }

    /// Sends a frame on the current connection (dropped if it is gone; kept for the first
    /// connection if there has been none yet).
    pub fn frame(&self, frame: Message) {
        let mut frames = self.frames.lock().unwrap();
        match frames.current.as_ref() {
            Some(tx) => {
                let _ = tx.send(frame);
            }
            None => frames.early.push(frame),
        }
    }

    /// Sends a JSON server event as a text frame.
    pub fn send(&self, event: Value) {
        self.frame(Message::text(event.to_string()));
    }

    /// Every frame the client sent so far (close frames excluded).
    pub fn received(&self) -> Vec<Message> {
        self.received.lock().unwrap().clone()
    }
}
