//! A Twilio Media Streams client that behaves like Twilio: it streams the caller's μ-law
//! audio in real time (20 ms frames, silence between utterances), "plays" the gateway's audio
//! in real time and echoes each `mark` once the audio sent before it has played, and on
//! `clear` drops its buffer and echoes every pending mark at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const FRAME: usize = 160;
const SILENCE: u8 = 0xFF;

/// What the client saw and did.
#[derive(Debug, Default)]
pub struct CallLog {
    /// Every `media` frame from the gateway: arrival time and payload size.
    pub media: Vec<(Instant, usize)>,
    /// Marks received from the gateway.
    pub marks: usize,
    /// Mark echoes sent: name, position (ms of audio played since the last `clear`) and
    /// whether `clear` provoked it.
    pub echoes: Vec<Echo>,
    /// When each `clear` arrived, with the audio played since the previous one (ms).
    pub clears: Vec<(Instant, u64)>,
    /// Unexpected messages (anything but media, mark, clear) or decoding failures.
    pub unexpected: Vec<String>,
    /// The close frame's code, once the gateway closed the socket.
    pub closed: Option<Option<u16>>,
    /// When the client started sending each utterance.
    pub said: Vec<Instant>,
}

#[derive(Debug, Clone)]
pub struct Echo {
    pub at: Instant,
    pub name: String,
    pub position_ms: u64,
    pub cleared: bool,
}

impl CallLog {
    pub fn media_frames(&self) -> usize {
        self.media.len()
    }
}

enum Queued {
    Frame,
    Mark(String),
}

/// Commands to the call task.
pub enum Command {
    Say(Vec<u8>),
    Dtmf(&'static str),
    Stop,
    /// Sends a raw frame as is.
    Raw(Message),
    /// Drops the connection without `stop` or a close frame.
    Vanish,
}

/// A caller on the line.
pub struct TwilioCall {
    pub log: Arc<Mutex<CallLog>>,
    commands: mpsc::UnboundedSender<Command>,
    pub task: tokio::task::JoinHandle<()>,
}

impl TwilioCall {
    /// Connects to `url` (the gateway's `/twilio/stream`), sends `connected` and `start`, and
    /// starts streaming silence.
    pub async fn connect(url: &str, call_sid: &str) -> TwilioCall {
        Self::connect_with(url, call_sid, None, json!({ "callSid": call_sid })).await
    }

    /// [`connect`](Self::connect) with an `X-Twilio-Signature` on the upgrade and the
    /// `customParameters` of `start`.
    pub async fn connect_with(
        url: &str,
        call_sid: &str,
        signature: Option<&str>,
        parameters: Value,
    ) -> TwilioCall {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
                .unwrap();
        if let Some(signature) = signature {
            request
                .headers_mut()
                .insert("X-Twilio-Signature", signature.parse().unwrap());
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect to the gateway");
        let stream_sid = format!("MZ{call_sid}");
        ws.send(Message::text(
            json!({"event":"connected","protocol":"Call","version":"1.0.0"}).to_string(),
        ))
        .await
        .unwrap();
        ws.send(Message::text(
            json!({"event":"start","sequenceNumber":"1","streamSid":stream_sid,
                "start":{"streamSid":stream_sid,"accountSid":"AC0","callSid":call_sid,
                    "tracks":["inbound"],"customParameters":parameters,
                    "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}})
            .to_string(),
        ))
        .await
        .unwrap();
        let log = Arc::new(Mutex::new(CallLog::default()));
        let (commands, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(ws, stream_sid, log.clone(), rx));
        TwilioCall {
            log,
            commands,
            task,
        }
    }

    pub fn say(&self, ulaw: Vec<u8>) {
        let _ = self.commands.send(Command::Say(ulaw));
    }

    pub fn dtmf(&self, digit: &'static str) {
        let _ = self.commands.send(Command::Dtmf(digit));
    }

    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
    }

    pub fn raw(&self, message: Message) {
        let _ = self.commands.send(Command::Raw(message));
    }

    pub fn vanish(&self) {
        let _ = self.commands.send(Command::Vanish);
    }

    pub fn with_log<T>(&self, f: impl FnOnce(&CallLog) -> T) -> T {
        f(&self.log.lock().unwrap())
    }

    /// Waits for the call task to end (the socket closed).
    pub async fn finished(self, limit: Duration) {
        tokio::time::timeout(limit, self.task)
            .await
            .expect("the call did not end in time")
            .unwrap();
    }
}

async fn run(
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    stream_sid: String,
    log: Arc<Mutex<CallLog>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let (mut tx, mut rx) = ws.split();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut speech: VecDeque<u8> = VecDeque::new();
    let mut playback: VecDeque<Queued> = VecDeque::new();
    let mut played_since_clear = 0u64;
    let mut seq = 2u64;
    let mut chunk = 0u64;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut stopped = false;
    let mut echoes: Vec<(String, bool)> = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick(), if !stopped => {
                // Caller audio: the next 20 ms of speech, or silence.
                let frame: Vec<u8> = (0..FRAME).map(|_| speech.pop_front().unwrap_or(SILENCE)).collect();
                chunk += 1;
                seq += 1;
                let media = json!({"event":"media","sequenceNumber":seq.to_string(),"streamSid":stream_sid,
                    "media":{"track":"inbound","chunk":chunk.to_string(),
                        "timestamp":(started.elapsed().as_millis() as u64).to_string(),
                        "payload":b64.encode(&frame)}});
                if tx.send(Message::text(media.to_string())).await.is_err() {
                    // The gateway closed: stop talking, but read on to see its close frame.
                    stopped = true;
                }
                // Playback: one frame per tick; marks right behind played audio come back.
                if matches!(playback.front(), Some(Queued::Frame)) {
                    playback.pop_front();
                    played_since_clear += 20;
                }
                while let Some(Queued::Mark(_)) = playback.front() {
                    let Some(Queued::Mark(name)) = playback.pop_front() else { unreachable!() };
                    echoes.push((name, false));
                }
            }
            command = commands.recv() => match command {
                Some(Command::Say(audio)) => {
                    log.lock().unwrap().said.push(Instant::now());
                    speech.extend(audio);
                }
                Some(Command::Dtmf(digit)) => {
                    seq += 1;
                    let dtmf = json!({"event":"dtmf","streamSid":stream_sid,"sequenceNumber":seq.to_string(),
                        "dtmf":{"track":"inbound_track","digit":digit}});
                    let _ = tx.send(Message::text(dtmf.to_string())).await;
                }
                Some(Command::Stop) => {
                    seq += 1;
                    let stop = json!({"event":"stop","sequenceNumber":seq.to_string(),"streamSid":stream_sid,
                        "stop":{"accountSid":"AC0","callSid":"CA"}});
                    let _ = tx.send(Message::text(stop.to_string())).await;
                    stopped = true;
                }
                Some(Command::Raw(message)) => { let _ = tx.send(message).await; }
                Some(Command::Vanish) | None => return, // dropping both halves drops the TCP connection
            },
            message = rx.next() => {
                let Some(Ok(message)) = message else {
                    log.lock().unwrap().closed.get_or_insert(None);
                    break;
                };
                let text = match message {
                    Message::Text(text) => text,
                    Message::Close(frame) => {
                        log.lock().unwrap().closed = Some(frame.map(|f| u16::from(f.code)));
                        break;
                    }
                    Message::Binary(_) => {
                        log.lock().unwrap().unexpected.push("binary frame".into());
                        continue;
                    }
                    _ => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    log.lock().unwrap().unexpected.push(format!("not JSON: {text}"));
                    continue;
                };
                let mut log = log.lock().unwrap();
                if v["streamSid"] != stream_sid.as_str() {
                    log.unexpected.push(format!("wrong streamSid: {v}"));
                }
                match v["event"].as_str() {
                    Some("media") => {
                        let payload = v["media"]["payload"].as_str().unwrap_or_default();
                        match b64.decode(payload) {
                            Ok(audio) => {
                                log.media.push((Instant::now(), audio.len()));
                                playback.push_back(Queued::Frame);
                            }
                            Err(_) => log.unexpected.push("bad base64".into()),
                        }
                    }
                    Some("mark") => {
                        log.marks += 1;
                        let name = v["mark"]["name"].as_str().unwrap_or_default().to_owned();
                        if playback.is_empty() {
                            echoes.push((name, false)); // nothing buffered: echoed at once
                        } else {
                            playback.push_back(Queued::Mark(name));
                        }
                    }
                    Some("clear") => {
                        log.clears.push((Instant::now(), played_since_clear));
                        for queued in playback.drain(..) {
                            if let Queued::Mark(name) = queued {
                                echoes.push((name, true));
                            }
                        }
                        played_since_clear = 0;
                    }
                    _ => log.unexpected.push(format!("unexpected event: {v}")),
                }
            }
        }
        // Send the echoes the step produced, recording the position each one stands for.
        for (name, cleared) in echoes.drain(..) {
            seq += 1;
            let echo = json!({"event":"mark","streamSid":stream_sid,"sequenceNumber":seq.to_string(),
                "mark":{"name":name}});
            log.lock().unwrap().echoes.push(Echo {
                at: Instant::now(),
                name,
                position_ms: played_since_clear,
                cleared,
            });
            if tx.send(Message::text(echo.to_string())).await.is_err() {
                stopped = true;
            }
        }
    }
}
