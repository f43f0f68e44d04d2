//! An OpenAI-Realtime-compatible server on loopback, for offline development and tests; it
//! speaks OpenAI's Live API too (see [Live mode](#live-mode-v1livesessions)).
//!
//! [`Simulator`] speaks the GA WebSocket protocol (`session.created`, `session.update`,
//! conversation items, server VAD, responses with streamed audio and transcripts, function
//! calls, cancellation, truncation, errors) with deterministic, rule-based behaviour, so a
//! client, this crate's session or the official Python Agents SDK can hold a whole
//! conversation, tool calls included, without a network or an API key.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::{SinkExt, StreamExt};
//! use realtime_agents::simulator::Simulator;
//! use serde_json::{Value, json};
//! use tokio_tungstenite::tungstenite::Message;
//!
//! let sim = Simulator::builder().speed(0.0).start().await?;
//! let (mut ws, _) = tokio_tungstenite::connect_async(sim.url()).await?;
//! for event in [
//!     json!({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}),
//!     json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
//!            "content": [{"type": "input_text", "text": "Hello!"}]}}),
//!     json!({"type": "response.create"}),
//! ] {
//!     ws.send(Message::text(event.to_string())).await?;
//! }
//! let mut text = String::new();
//! while let Some(frame) = ws.next().await {
//!     let event: Value = serde_json::from_str(frame?.to_text()?)?;
//!     match event["type"].as_str() {
//!         Some("response.output_text.delta") => text.push_str(event["delta"].as_str().unwrap()),
//!         Some("response.done") => break,
//!         _ => {}
//!     }
//! }
//! assert_eq!(text, "Hello! I'm a simulated assistant. How can I help you today?");
//! assert_eq!(sim.client_events().len(), 3);
//! # Ok(())
//! # }
//! ```
//!
//! # Behaviour
//!
//! One tokio task serves each connection; every server event carries a unique `event_id`
//! (`event_<n>`), items are `item_<n>`, responses `resp_<n>`, calls `call_<n>` (numbered per
//! connection; item numbers already used by items the client created are skipped). Errors
//! are `error` events (type `invalid_request_error`) that echo the offending client
//! `event_id`; the connection stays open.
//!
//! * **Handshake**: any path and query (`?model=`, `?call_id=`); the model defaults to
//!   `gpt-realtime`. The `realtime` subprotocol is selected when offered. With
//!   [`SimulatorBuilder::require_api_key`], the upgrade is refused with HTTP 401 and an
//!   OpenAI-style JSON body unless `Authorization: Bearer <key>`, `api-key: <key>` or the
//!   subprotocol `openai-insecure-api-key.<key>` carries the key.
//! * **Session**: starts as the GA default (audio out, PCM 24 kHz both ways, voice `alloy`,
//!   `server_vad` with threshold 0.5, 300 ms prefix padding, 500 ms silence, no
//!   transcription, no tools). `session.update` needs `session.type: "realtime"`, rejects
//!   unknown parameters (e.g. the beta `input_audio_format`, code `unknown_parameter`),
//!   deep-merges the rest (`null` clears: `turn_detection: null` turns VAD off), and
//!   refuses a new voice once this connection produced audio (`cannot_update_voice`).
//! * **Server VAD** (`server_vad` or `semantic_vad`): energy detection on 20 ms frames; a
//!   frame is speech when its RMS exceeds `32768 × 10^((−60 + 50 × threshold) / 20)`
//!   (−35 dBFS at the default 0.5). Speech start → `input_audio_buffer.speech_started` (and
//!   cancels an active response with reason `turn_detected` when `interrupt_response`);
//!   `silence_duration_ms` of silence (semantic VAD: 250/500/900 ms for high/auto/low
//!   eagerness) → `speech_stopped`, `committed`, the user item, its transcription when
//!   `audio.input.transcription` is set, and a response when `create_response` (queued
//!   behind an active one). `idle_timeout_ms` (server VAD) fires
//!   `input_audio_buffer.timeout_triggered` that long after a completed response without
//!   speech, then commits an empty user turn and answers "Are you still there?".
//! * **Transcription**: audio made with [`speech::encode_text`] is transcribed to its text;
//!   any other audio to a description such as `"(2.4 seconds of audio)"`.
//! * **Responses** stream one message, or function calls. Audio is speech-like synthesis
//!   (PCM16 24 kHz, or G.711 at 8 kHz when the output format says so) in 20 ms deltas, each
//!   transcript delta (one word) sent just before the audio where that word starts, paced
//!   in real time divided by [`SimulatorBuilder::speed`]. Text responses
//!   (`output_modalities: ["text"]`) stream one word per `response.output_text.delta`.
//!   A response that only calls functions ends with `response.done` right after the last
//!   call, or [`SimulatorBuilder::tool_response_done_delay`] later.
//!   Only one response may be active: another `response.create` fails with
//!   `conversation_already_has_active_response`. `response.cancel` ends the message as
//!   `incomplete` and the response as `cancelled` (`client_cancelled`). A numeric
//!   `max_output_tokens` (a text token per 4 characters, an audio token per 50 ms) cuts the
//!   message: status `incomplete`, reason `max_output_tokens`.
//! * **Truncation**: only assistant audio items (`unsupported_content_type`, "Only model output
//!   audio messages can be truncated"), and not past the audio produced ("Audio content of
//!   Xms is already shorter than Yms"). As on the real API, the audio is cut at
//!   `audio_end_ms` and the part's transcript is deleted: `conversation.item.truncated`
//!   carries none, and the item as retrieved (`conversation.item.retrieved`) or echoed later
//!   shows `"transcript": ""`, even for words heard before the cut. The simulated model no
//!   longer sees those words either (they leave the context's token count). A message
//!   truncated while still streaming keeps streaming until it ends or is cancelled; its
//!   `response.*` events report what was generated, its `conversation.item.done` the stored
//!   item, without a transcript.
//!
//! # What the simulated assistant says
//!
//! Decided from the last conversation item (or the response's `input`), with the response's
//! `instructions`, `tools` and `tool_choice` overriding the session's:
//!
//! 1. A user message (its text, or its audio's transcript) that **matches function tools**
//!    becomes one function call per matching tool, all in one response (only the first with
//!    `parallel_tool_calls: false`). A tool matches when a word of its name equals a word of
//!    the message, or its singular/plural with an `s`. The name is split on `_`, `-`, `.`
//!    and camelCase, lowercased, and these generic words are dropped: get, set, fetch,
//!    lookup, look, find, search, query, retrieve, check, list, show, create, update, make,
//!    do, run, call, send, the, a, an, to, for, of, in, on, and, or, by, with, from, my,
//!    transfer, agent, tool, current, info, information, data. So "What's the weather in
//!    Paris?" calls `get_weather`, and "transfer me to billing" calls
//!    `transfer_to_billing_agent`. `tool_choice: "none"` disables calls, `"required"` calls
//!    the first tool when none matches, `{"type":"function","name":…}` calls that tool.
//!    **Arguments**, for each property of the tool's JSON-schema `parameters`: strings take
//!    the capitalised word(s) right after "in", "for", "of", "at", "about" or "to" ("Paris",
//!    "New York"), else the last capitalised word that does not start a sentence; string
//!    enums take the first option named in the text; integers and numbers take the first
//!    number in the text. A property is included when a value was found; required
//!    properties always are (`""`, the first enum option, `0`, `false`, `[]` or `{}`).
//! 2. Otherwise, instructions containing `Always answer: <X>` make it say X (up to the end
//!    of that line).
//! 3. After `function_call_output` items: "Here is what I found: \<outputs\>." (JSON outputs
//!    flattened to `key: value` text).
//! 4. A user message with the word "hello", "hi" or "hey": "Hello! I'm a simulated
//!    assistant. How can I help you today?"; with "story": a long deterministic story
//!    (about 40 s of speech); anything else: "You said: \<text\>." (an empty message:
//!    "I see. How can I help you?")
//! 5. With no items: the greeting; after anything else: "Is there anything else I can help
//!    you with?"

//!
//! # Live mode (`/v1/live/sessions`)
//!
//! The same server speaks OpenAI's Live API ([`Simulator::live_url`]; the
//! [`live`](crate::model::live) backend's protocol), with the same rules deciding what the
//! model says:
//!
//! * **Handshake**: any path with a `live` segment (`/v1/live/sessions`) is Live; no query is
//!   needed and none is read. The client speaks first: the first event must be
//!   `session.start` (anything else gets an `error`, code `session_not_started`), answered by
//!   `session.started` with the resolved session (`id` `sess_live_<n>`, `expires_at` an hour
//!   on, `status: "active"`, format, voice `marin` by default, delegation `client` by default,
//!   instructions, input). The config is strict: an unknown field is an `error`
//!   (`unknown_parameter`, `param` `session.<field>`), so is a missing `model`
//!   (`missing_required_parameter`), and the session does not start.
//! * **Audio**: `session.input_audio.append` in the session's format (PCM 16 or 24 kHz, G.711
//!   at 8 kHz). The same energy detection as the Realtime simulator's server VAD (−35 dBFS,
//!   500 ms of silence ends speech) finds the user's turns; audio made with
//!   [`speech::encode_text`] is transcribed to its text (other
//!   audio to a description such as `"(2.4 seconds of audio)"`), sent when the turn ends as
//!   `session.input_transcript.delta` fragments (one word each, with their own leading spaces,
//!   `start_ms`/`end_ms` on the input timeline). While muted
//!   (`session.input_audio.mute` → `session.input_audio.muted`), the model hears nothing.
//! * **Speech**: the simulated model answers each user turn with the rules above. An
//!   utterance is `session.output_audio.delta`s of 20 ms with `session.output_transcript.delta`
//!   words just before their audio, paced by [`SimulatorBuilder::speed`], followed by one
//!   second of silence in 100 ms deltas (digital zeros): the real output track is continuous;
//!   this one carries silence only after speech, enough for a client to see the utterance end.
//!   Then `session.usage.updated` (whole seconds since the start). Audio deltas carry an
//!   `event_id` too, unlike the real API's.
//! * **Barge-in**: the model keeps talking while the user speaks and stops once it has heard
//!   them out: when the user's turn ends, its transcript goes out, the rest of the current
//!   utterance is dropped (its silence still follows) and the model answers.
//! * **Appends** (`session.{instructions,thinking,commentary}.append`, `delegation_id`
//!   required, possibly `null`) are acknowledged with `*.appended` (`start_ms`/`end_ms` on the
//!   output timeline). Instructions extend the instructions (`Always answer:` applies);
//!   thinking `user: <text>` is a typed user turn (other thinking is silent context);
//!   commentary with a delegation's id answers it ("Here is what I found: …"); commentary
//!   with `null` makes the model speak now, answering the conversation so far.
//! * **Client delegation** (the default): a user turn whose words match a tool named in the
//!   instructions line `Delegate to the application, as one task, requests for: a, b` (as the
//!   shared rules match tools: "What's the weather in Paris?" matches `get_weather`) is
//!   delegated: `session.delegation.created` (`target: "client"`, id `item_<n>`), and the
//!   spoken acknowledgement "Okay, let me check." The model says the commentary that answers it.
//! * **Responses delegation**: the tools are `delegation.responses.tools`; a matching turn is
//!   delegated (`target: "responses"`, with a `response_id`) and the backend's stream comes in
//!   `response.event`s (`response.created`, one `response.output_item.done` function call per
//!   call with the shared rules' arguments, `response.completed` with usage). Outputs come back
//!   as `response.item.create` (`function_call_output`) and `response.create` (both need
//!   Responses delegation, as on the real API); the latter runs the continuation
//!   (`response.created`, `response.completed`) and the spoken result. `session.update` may
//!   change the tools, never the delegation type (`immutable_field_update`).
//! * **Close**: `session.close` → `session.closed` (`reason: "close_requested"`, the session,
//!   the usage), then the simulator closes the socket. Errors are `error` events (`type`
//!   `invalid_request_error`, `client_event_id` echoing the command's `event_id`); the session
//!   goes on.

// Shared by every protocol: the accept loop and handle (here), the connection loop and its
// `Machine` seam (`connection`), what the model hears (`hearing`), decides (`brain`) and says
// (`speech`, `voice`), and the events a connection writes (`outgoing`).
mod brain;
mod connection;
mod hearing;
mod outgoing;
pub mod speech;
mod voice;
// One folder per wire protocol.
mod live;
mod realtime;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// State shared by the accept loop, the connections and the [`Simulator`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    speed: f64,
    tool_done_delay: Duration,
    record: bool,
    stamp_audio: bool,
    api_key: Option<String>,
    events: Mutex<Vec<Value>>,
    connections: AtomicUsize,
}

impl Shared {
    /// Unpaced, not recording: for the state machines' unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Self {
            speed: 0.0,
            tool_done_delay: Duration::ZERO,
            record: false,
            stamp_audio: false,
            api_key: None,
            events: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
        }
    }

    /// Whether client events are kept for [`Simulator::client_events`].
    fn recording(&self) -> bool {
        self.record
    }

    /// Keeps a client event for [`Simulator::client_events`] (when recording).
    fn record(&self, event: Value) {
        if !self.record {
            return;
        }
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
}

/// A running simulated Realtime API server on loopback.
///
/// It shuts down when dropped (or with [`shutdown`](Self::shutdown)), closing open
/// connections with close code 1001. See the [module docs](self) for its behaviour.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::StreamExt;
/// use realtime_agents::simulator::Simulator;
///
/// let sim = Simulator::start().await?;
/// assert!(sim.url().starts_with("ws://127.0.0.1:"));
/// let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?model=gpt-realtime", sim.url())).await?;
/// let first: serde_json::Value = serde_json::from_str(ws.next().await.unwrap()?.to_text()?)?;
/// assert_eq!(first["type"], "session.created");
/// assert_eq!(sim.connections(), 1);
/// sim.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with an OS-assigned port and the default
    /// configuration (real-time pacing, no API key required).
    pub async fn start() -> crate::Result<Simulator> {
        Self::builder().start().await
    }

    /// A builder to configure the address, pacing and authentication.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder::default()
    }

    /// The WebSocket URL to connect to: `ws://127.0.0.1:PORT/v1/realtime`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// The WebSocket URL of its OpenAI Live API mode: `ws://127.0.0.1:PORT/v1/live/sessions`
    /// (the [`live`](crate::model::live) backend's; see the Live module docs for what it does).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> realtime_agents::Result<()> {
    /// let sim = realtime_agents::simulator::Simulator::start().await?;
    /// assert!(sim.live_url().ends_with("/v1/live/sessions"));
    /// # Ok(()) }
    /// ```
    pub fn live_url(&self) -> String {
        format!("ws://{}/v1/live/sessions", self.addr)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every client event received so far (parsed JSON, including invalid or unknown
    /// events), over all connections, in order of arrival. Empty when recording was turned
    /// off with [`SimulatorBuilder::record_client_events`].
    pub fn client_events(&self) -> Vec<Value> {
        self.shared
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many WebSocket connections were accepted so far (refused upgrades not counted).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes every connection (close code 1001) and waits for the server
    /// tasks to end.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Configures and starts a [`Simulator`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> realtime_agents::Result<()> {
/// use realtime_agents::simulator::Simulator;
/// let sim = Simulator::builder()
///     .addr("127.0.0.1:0".parse().unwrap())
///     .speed(4.0) // audio streams 4x faster than real time
///     .require_api_key("sk-sim-test")
///     .start()
///     .await?;
/// assert_eq!(sim.local_addr().ip().to_string(), "127.0.0.1");
/// # Ok(())
/// # }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct SimulatorBuilder {
    addr: SocketAddr,
    speed: f64,
    tool_done_delay: Duration,
    api_key: Option<String>,
    record: bool,
    stamp_audio: bool,
}

impl Default for SimulatorBuilder {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            speed: 1.0,
            tool_done_delay: Duration::ZERO,
            api_key: None,
            record: true,
            stamp_audio: false,
        }
    }
}

impl SimulatorBuilder {
    /// The address to listen on (default `127.0.0.1:0`, an OS-assigned port).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Audio pacing: `1.0` streams audio in real time (the default), `4.0` four times faster,
    /// `0.0` unpaced (as fast as the socket takes it, yielding between deltas). Negative or
    /// non-finite values mean unpaced.
    pub fn speed(mut self, speed: f64) -> Self {
        self.speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            0.0
        };
        self
    }

    /// Delays `response.done` of a response that only made function calls by `delay` after
    /// the last call's `response.function_call_arguments.done` and `response.output_item.done`
    /// (default zero: it follows at once). Real servers trail by a few milliseconds, so a client
    /// must run the tool on the call's events, not wait for `response.done`; this makes such a
    /// wait show. The delay is wall-clock time, also when [`speed`](Self::speed) is `0.0`.
    ///
    /// Until `response.done` the response is still active, as on the real API: another
    /// `response.create` fails with `conversation_already_has_active_response`, while a
    /// `function_call_output` item can already be created, and `response.cancel` cancels.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> realtime_agents::Result<()> {
    /// use std::time::Duration;
    /// use realtime_agents::simulator::Simulator;
    /// let sim = Simulator::builder()
    ///     .speed(0.0)
    ///     .tool_response_done_delay(Duration::from_millis(50))
    ///     .start()
    ///     .await?;
    /// # drop(sim); Ok(())
    /// # }
    /// ```
    pub fn tool_response_done_delay(mut self, delay: Duration) -> Self {
        self.tool_done_delay = delay;
        self
    }

    /// Refuses the WebSocket upgrade with HTTP 401 and a JSON error body unless the client
    /// presents `key` as `Authorization: Bearer <key>`, `api-key: <key>` or the subprotocol
    /// `openai-insecure-api-key.<key>`.
    pub fn require_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Whether to keep every client event for [`Simulator::client_events`] (default `true`).
    /// Turn it off for long-running servers: audio appends add up to about 65 kB a second.
    pub fn record_client_events(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// For load tests: writes the send time over the first 12 bytes of every audio delta
    /// (default `false`), so that a client can tell how long the delta took to reach it with
    /// [`audio_stamp`]. The stamp is taken as the frame is handed to the socket. The audio is
    /// otherwise unchanged (the stamp replaces 6 samples of PCM16, a click).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> realtime_agents::Result<()> {
    /// use realtime_agents::simulator::Simulator;
    /// let sim = Simulator::builder().stamp_audio(true).record_client_events(false).start().await?;
    /// # drop(sim); Ok(())
    /// # }
    /// ```
    pub fn stamp_audio(mut self, stamp: bool) -> Self {
        self.stamp_audio = stamp;
        self
    }

    /// Binds the address and starts serving.
    ///
    /// Fails with [`Error::Connect`] if the address cannot be bound.
    pub async fn start(self) -> crate::Result<Simulator> {
        let url = format!("ws://{}/v1/realtime", self.addr);
        let bind_error = |e: std::io::Error| Error::Connect {
            url: url.clone(),
            status: None,
            message: format!("could not bind the simulator: {e}"),
        };
        let listener = TcpListener::bind(self.addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let shared = Arc::new(Shared {
            speed: self.speed,
            tool_done_delay: self.tool_done_delay,
            record: self.record,
            stamp_audio: self.stamp_audio,
            api_key: self.api_key,
            events: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, shared.clone(), cancel.clone()));
        tracing::debug!("simulator listening on {addr}");
        Ok(Simulator {
            addr,
            shared,
            cancel,
            task: Some(task),
        })
    }
}

/// The send time a simulator started with [`SimulatorBuilder::stamp_audio`] wrote into an
/// audio delta's bytes, or `None` for unstamped audio.
///
/// ```
/// use realtime_agents::simulator::audio_stamp;
/// let mut pcm = vec![0u8; 960];
/// assert_eq!(audio_stamp(&pcm), None);
/// pcm[..8].copy_from_slice(&1_700_000_000_000_000u64.to_le_bytes());
/// pcm[8..12].copy_from_slice(b"RTA1");
/// let sent = audio_stamp(&pcm).unwrap();
/// assert_eq!(sent.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 1_700_000_000);
/// ```
pub fn audio_stamp(audio: &[u8]) -> Option<std::time::SystemTime> {
    let head = audio.get(..outgoing::STAMP_LEN)?;
    if head[8..] != outgoing::STAMP_MAGIC {
        return None;
    }
    let mut micros = [0u8; 8];
    micros.copy_from_slice(&head[..8]);
    std::time::UNIX_EPOCH.checked_add(Duration::from_micros(u64::from_le_bytes(micros)))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection::serve(stream, shared.clone(), cancel.child_token()));
                }
                Err(e) => {
                    tracing::warn!("simulator: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // The connections saw the cancellation too: give them a moment to send close frames.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}
