//! The OpenAI Realtime API (GA) over WebSocket: the public model and its builder (here), the
//! wire protocol ([`protocol`]) and `response.create` sequencing ([`sequencer`]). The socket is
//! the shared transport's ([`crate::transport`]).

mod protocol;
mod sequencer;

use std::fmt;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use self::protocol::Protocol;
use super::{RealtimeConnection, RealtimeModel, SessionSettings};
use crate::Result;
use crate::protocol::ClientEvent;
use crate::transport::{Connection, Options, strip_query};

const DEFAULT_MODEL: &str = "gpt-realtime";
const DEFAULT_BASE_URL: &str = "wss://api.openai.com/v1/realtime";
#[derive(Clone)]
struct Config {
    url: Option<String>,
    model: String,
    call_id: Option<String>,
    transport: Options,
}

/// The URL is shown without its query (keys travel there too); keys and header values are
/// redacted.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url.as_deref().map(strip_query))
            .field("model", &self.model)
            .field("call_id", &self.call_id)
            .field("transport", &self.transport)
            .finish()
    }
}

/// The OpenAI Realtime API over WebSocket.
///
/// Defaults: `wss://api.openai.com/v1/realtime?model=gpt-realtime`, the key from the builder or
/// `OPENAI_API_KEY`, a 10 s handshake timeout and a ping every 20 s. With custom headers (for
/// Azure's `api-key`), the headers are sent as given and no `Authorization` header is added.
/// The key never appears in `Debug` output, logs or errors.
///
/// ```no_run
/// use realtime_agents::model::OpenAIRealtimeWebSocketModel;
/// // The real API (key from OPENAI_API_KEY):
/// let openai = OpenAIRealtimeWebSocketModel::new();
/// // Azure OpenAI:
/// let azure = OpenAIRealtimeWebSocketModel::builder()
///     .url("wss://my-resource.openai.azure.com/openai/v1/realtime?model=gpt-realtime")
///     .header("api-key", "...")
///     .build();
/// // A local simulator:
/// let local = OpenAIRealtimeWebSocketModel::builder().url("ws://127.0.0.1:8765/v1/realtime").build();
/// ```
#[derive(Debug, Clone)]
pub struct OpenAIRealtimeWebSocketModel {
    config: Arc<Config>,
}

impl Default for OpenAIRealtimeWebSocketModel {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenAIRealtimeWebSocketModel {
    /// The real API with default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for custom URLs, keys, headers and timeouts.
    pub fn builder() -> OpenAIRealtimeWebSocketModelBuilder {
        OpenAIRealtimeWebSocketModelBuilder {
            config: Config {
                url: None,
                model: DEFAULT_MODEL.to_owned(),
                call_id: None,
                transport: Options::default(),
            },
        }
    }
}

/// Builder for [`OpenAIRealtimeWebSocketModel`].
#[derive(Debug, Clone)]
#[must_use]
pub struct OpenAIRealtimeWebSocketModelBuilder {
    config: Config,
}

impl OpenAIRealtimeWebSocketModelBuilder {
    /// Connects to this URL instead of the OpenAI endpoint (Azure, proxies, simulators). The
    /// `model` query parameter is added when the URL has none.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = Some(url.into());
        self
    }

    /// The model name (default `gpt-realtime`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.model = model.into();
        self
    }

    /// Attaches to an existing SIP or WebRTC call instead of starting a new conversation.
    /// Audio formats are then left as the call negotiated them.
    pub fn call_id(mut self, call_id: impl Into<String>) -> Self {
        self.config.call_id = Some(call_id.into());
        self
    }

    crate::transport::transport_setters!("OpenAIRealtimeWebSocketModel");

    /// The finished model.
    pub fn build(self) -> OpenAIRealtimeWebSocketModel {
        OpenAIRealtimeWebSocketModel {
            config: Arc::new(self.config),
        }
    }
}

impl RealtimeModel for OpenAIRealtimeWebSocketModel {
    fn connect(
        &self,
        settings: SessionSettings,
    ) -> BoxFuture<'static, Result<Box<dyn RealtimeConnection>>> {
        let config = self.config.clone();
        async move {
            let url = endpoint(&config);
            let key_required = config.url.is_none();
            let ws =
                crate::transport::open(&url, &config.transport, key_required, &["model"]).await?;
            let proto = Protocol::new(config.clone());
            let session = proto.session_config(&settings, true);
            let mut connection = Connection::new(ws, proto, &config.transport);
            connection.q.push_text(
                ClientEvent::SessionUpdate {
                    event_id: None,
                    session,
                }
                .to_json(),
            );
            let connection: Box<dyn RealtimeConnection> = Box::new(connection);
            Ok(connection)
        }
        .boxed()
    }

    /// The `model` of the URL's query when it has one, else the builder's.
    fn model_name(&self) -> Option<String> {
        let from_url = self.config.url.as_deref().and_then(|url| {
            let (_, query) = url.split_once('?')?;
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("model="))
        });
        Some(from_url.unwrap_or(&self.config.model).to_owned())
    }
}

fn endpoint(config: &Config) -> String {
    let base = config.url.as_deref().unwrap_or(DEFAULT_BASE_URL);
    let (key, value) = match &config.call_id {
        Some(call_id) => ("call_id", call_id.as_str()),
        None => ("model", config.model.as_str()),
    };
    if base.contains(&format!("{key}=")) {
        base.to_owned()
    } else {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}{key}={value}")
    }
}

/// Benchmark hooks: the OpenAI transport's frame handling without a socket. Not a stable API;
/// `benches/session.rs` uses it to time the decode and encode steps alone.
#[doc(hidden)]
pub mod bench {
    use tokio_tungstenite::tungstenite::Utf8Bytes;

    use super::*;
    use crate::model::{ModelCommand, ModelEvent};
    use crate::transport::{Queues, WireProtocol};

    /// The protocol state of one connection.
    ///
    /// ```
    /// use realtime_agents::model::{ModelCommand, ModelEvent, bench::Wire};
    /// let mut wire = Wire::new();
    /// let frame = r#"{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"AAAA"}"#;
    /// let mut events = Vec::new();
    /// wire.decode(frame.into(), &mut events);
    /// assert!(matches!(&events[1], ModelEvent::Audio { data, .. } if data.len() == 3));
    /// let bytes = wire.encode(ModelCommand::Audio { audio: vec![0u8; 960].into(), commit: false });
    /// assert_eq!(bytes, 1280 + 47);
    /// ```
    #[derive(Debug)]
    pub struct Wire(Protocol, Queues);

    impl Default for Wire {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Wire {
        /// A fresh connection's state.
        pub fn new() -> Self {
            let model = OpenAIRealtimeWebSocketModel::builder()
                .url("ws://127.0.0.1:1/v1/realtime")
                .build();
            Self(Protocol::new(model.config), Queues::default())
        }

        /// Handles one server text frame as a connection does; its events go to `out`.
        pub fn decode(&mut self, frame: Utf8Bytes, out: &mut Vec<ModelEvent>) {
            self.0.on_text(frame, &mut self.1);
            out.extend(self.1.events.drain(..));
        }

        /// Handles one command as a connection does and drops the frames it queued; returns
        /// their total size.
        pub fn encode(&mut self, command: ModelCommand) -> usize {
            self.0.command(command, &mut self.1);
            let bytes = self.1.frame_bytes();
            self.1.clear_frames();
            bytes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelEvent;
    use std::time::Duration;

    type ServerSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

    /// A loopback WebSocket server that accepts one connection and hands it to `serve`; its URL.
    async fn serve_one<F, Fut>(serve: F) -> String
    where
        F: FnOnce(ServerSocket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let ws = tokio_tungstenite::accept_async(stream)
                .await
                .expect("handshake");
            serve(ws).await;
        });
        url
    }

    /// A connection to `url` with a ping every `interval`, `timeout` to answer.
    async fn connect(url: &str, interval: Duration, timeout: Duration) -> Connection<Protocol> {
        let model = OpenAIRealtimeWebSocketModel::builder()
            .url(url)
            .api_key("sk-test")
            .ping(Some(interval), timeout)
            .build();
        let config = model.config.clone();
        let ws = crate::transport::open(url, &config.transport, false, &[])
            .await
            .expect("open");
        Connection::new(ws, Protocol::new(config.clone()), &config.transport)
    }

    #[tokio::test]
    async fn a_connection_gives_back_its_queues_buffers_between_turns_and_at_a_quiet_ping() {
        use futures::{SinkExt as _, StreamExt as _};
        use tokio_tungstenite::tungstenite::Message;
        let url = serve_one(|mut ws| async move {
            let created = r#"{"type":"session.created","event_id":"e1","session":{"type":"realtime","id":"s1","object":"realtime.session","model":"gpt-realtime"}}"#;
            ws.send(Message::text(created)).await.expect("send");
            // Reading answers the client's pings. A `response.cancel` is answered with a
            // `response.done`; a `response.create` with a frame that ends no turn.
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let answer = if text.contains(r#""type":"response.cancel""#) {
                    r#"{"type":"response.done","event_id":"e2","response":{"id":"r1","status":"cancelled","output":[]}}"#
                } else if text.contains(r#""type":"response.create""#) {
                    r#"{"type":"rate_limits.updated","event_id":"e3","rate_limits":[]}"#
                } else {
                    continue;
                };
                ws.send(Message::text(answer)).await.expect("send");
            }
        })
        .await;
        // The first ping is due at 300 ms: the first two releases come before it.
        let mut conn = connect(&url, Duration::from_millis(300), Duration::from_secs(5)).await;
        let next_until = async |conn: &mut Connection<Protocol>,
                                wanted: fn(&ModelEvent) -> bool| loop {
            let polled = tokio::time::timeout(
                Duration::from_secs(5),
                std::future::poll_fn(|cx| conn.poll_event(cx)),
            )
            .await;
            match polled {
                Ok(Some(event)) if wanted(&event) => return,
                Ok(Some(_)) => {}
                other => panic!("the connection hung or ended: {other:?}"),
            }
        };
        let quiet_for = async |conn: &mut Connection<Protocol>, ms: u64| {
            let quiet = tokio::time::timeout(
                Duration::from_millis(ms),
                std::future::poll_fn(|cx| conn.poll_event(cx)),
            )
            .await;
            assert!(quiet.is_err(), "no event while quiet: {quiet:?}");
        };
        let held =
            |conn: &Connection<Protocol>| (conn.q.events.capacity(), conn.q.frames_capacity());

        // Configured, and nothing waits: between turns.
        conn.q
            .push_text(r#"{"type":"session.update","session":{"type":"realtime"}}"#.into());
        next_until(&mut conn, |e| {
            matches!(e, ModelEvent::SessionUpdated { .. })
        })
        .await;
        assert!(held(&conn).0 > 0 && held(&conn).1 > 0);
        quiet_for(&mut conn, 30).await;
        assert_eq!(held(&conn), (0, 0));

        // A response ended: between turns again.
        let cancel = serde_json::json!({"type": "response.cancel"});
        conn.send(crate::model::ModelCommand::Raw(cancel))
            .expect("send");
        next_until(&mut conn, |e| matches!(e, ModelEvent::ResponseDone { .. })).await;
        assert!(held(&conn).0 > 0 && held(&conn).1 > 0);
        quiet_for(&mut conn, 30).await;
        assert_eq!(held(&conn), (0, 0));

        // A turn left open: the command still reaches the server (its answer comes back), and
        // only the keep-alive's ping gives the buffers back.
        conn.send(crate::model::ModelCommand::CreateResponse)
            .expect("send");
        next_until(&mut conn, |e| matches!(e, ModelEvent::Raw(_))).await;
        assert!(held(&conn).0 > 0 && held(&conn).1 > 0);
        quiet_for(&mut conn, 1_000).await;
        assert_eq!(held(&conn), (0, 0));
    }

    #[tokio::test]
    async fn pings_go_out_while_frames_stream_in_and_a_server_gone_silent_is_reported() {
        use futures::{SinkExt as _, StreamExt as _};
        use tokio_tungstenite::tungstenite::Message;
        let (pings_tx, mut pings) = tokio::sync::mpsc::unbounded_channel();
        let url = serve_one(|mut ws| async move {
            // A frame every 10 ms for 600 ms; the pings that come meanwhile are answered.
            let frame = r#"{"type":"rate_limits.updated","event_id":"e","rate_limits":[]}"#;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for _ in 0..60 {
                tokio::select! {
                    _ = tick.tick() => ws.send(Message::text(frame)).await.expect("send"),
                    Some(Ok(message)) = ws.next() => {
                        if matches!(message, Message::Ping(_)) {
                            let _ = pings_tx.send(());
                        }
                    }
                }
            }
            // Then silent: nothing sent, nothing read (no pong), the socket kept open.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(ws);
        })
        .await;
        let mut conn = connect(&url, Duration::from_millis(100), Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let ended = loop {
            let polled = tokio::time::timeout(
                Duration::from_secs(5),
                std::future::poll_fn(|cx| conn.poll_event(cx)),
            )
            .await;
            match polled {
                Ok(Some(ModelEvent::Closed { error })) => break error,
                Ok(Some(_)) => {}
                other => panic!("the connection hung or ended without a reason: {other:?}"),
            }
        };
        let elapsed = started.elapsed();
        let mut pinged = 0;
        while pings.try_recv().is_ok() {
            pinged += 1;
        }
        assert!(pinged >= 4, "a ping every 100 ms while busy, got {pinged}");
        assert!(
            matches!(&ended, Some(crate::Error::Timeout(m)) if m.contains("after a ping")),
            "{ended:?}"
        );
        // Silent from 0.6 s: the next ping within 100 ms, then 200 ms to answer.
        assert!(
            elapsed < Duration::from_secs(3),
            "reported after {elapsed:?}"
        );
    }

    #[test]
    fn endpoint_adds_model_or_call_id() {
        let mut config = OpenAIRealtimeWebSocketModel::new().config.as_ref().clone();
        assert_eq!(
            endpoint(&config),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
        config.url = Some("ws://127.0.0.1:1/v1/realtime?model=x".into());
        assert_eq!(endpoint(&config), "ws://127.0.0.1:1/v1/realtime?model=x");
        config.call_id = Some("rtc_1".into());
        assert_eq!(
            endpoint(&config),
            "ws://127.0.0.1:1/v1/realtime?model=x&call_id=rtc_1"
        );
    }

    #[test]
    fn model_name_prefers_the_urls_model() {
        let name = |model: OpenAIRealtimeWebSocketModel| model.model_name();
        assert_eq!(
            name(OpenAIRealtimeWebSocketModel::new()).as_deref(),
            Some("gpt-realtime")
        );
        let builder = || OpenAIRealtimeWebSocketModel::builder().model("gpt-realtime-mini");
        assert_eq!(
            name(builder().url("ws://127.0.0.1:1/v1/realtime").build()).as_deref(),
            Some("gpt-realtime-mini")
        );
        let url = "wss://x.example/openai/v1/realtime?api-version=1&model=gpt-realtime-2";
        assert_eq!(
            name(builder().url(url).build()).as_deref(),
            Some("gpt-realtime-2")
        );
    }

    /// The events one server frame gives, raw frame left out.
    fn decoded(frame: &str) -> Vec<String> {
        let mut events = Vec::new();
        bench::Wire::new().decode(frame.into(), &mut events);
        assert!(
            matches!(events.first(), Some(ModelEvent::Raw(_))),
            "{events:?}"
        );
        events[1..].iter().map(|e| format!("{e:?}")).collect()
    }

    #[test]
    fn transcript_and_text_deltas_read_in_one_pass_decode_as_any_frame_does() {
        let fields = r#""event_id":"e1","response_id":"r1","item_id":"i1","output_index":0,"content_index":1,"delta":" w\u00f6rd \"q\"""#;
        for t in [
            "response.output_audio_transcript.delta",
            "response.output_text.delta",
        ] {
            let fast = decoded(&format!(r#"{{"type":"{t}",{fields}}}"#));
            let general = decoded(&format!(r#"{{{fields},"type":"{t}"}}"#));
            assert_eq!(fast, general);
            assert!(fast[0].starts_with("TranscriptDelta {"), "{fast:?}");
            assert!(fast[0].contains(r#"delta: " wörd \"q\"""#), "{fast:?}");
            let duplicate = decoded(&format!(r#"{{"type":"{t}","type":"x",{fields}}}"#));
            assert!(
                duplicate[0].contains("duplicate field `type`"),
                "{duplicate:?}"
            );
        }
    }

    #[test]
    fn audio_deltas_read_in_one_pass_decode_as_any_frame_does() {
        let fields = r#""event_id":"e1","response_id":"r1","item_id":"i1","output_index":0,"content_index":2,"delta":"AAECAw==""#;
        // The server's order takes the one-pass way; `type` last takes the general one.
        let fast = decoded(&format!(
            r#"{{"type":"response.output_audio.delta",{fields}}}"#
        ));
        let general = decoded(&format!(
            r#"{{{fields},"type":"response.output_audio.delta"}}"#
        ));
        assert_eq!(fast, general);
        assert!(fast[0].starts_with("Audio {"), "{fast:?}");
        assert!(
            fast[0].contains("data: b\"\\0\\x01\\x02\\x03\""),
            "{fast:?}"
        );

        // Frames that start like one but are not: each says what the general way says.
        for (frame, says) in [
            (
                format!(r#"{{"type":"response.output_audio.delta","type":"x",{fields}}}"#),
                "duplicate field `type`",
            ),
            (
                r#"{"type":"response.output_audio.delta","event_id":7,"response_id":"r1","item_id":"i1","output_index":0,"content_index":0,"delta":""}"#.to_owned(),
                "invalid type: integer `7`",
            ),
            (
                r#"{"type":"response.output_audio.delta","response_id":"r1","item_id":"i1","output_index":0,"content_index":0}"#.to_owned(),
                "missing field `delta`",
            ),
            (
                format!(r#"{{"type":"response.output_audio.delta",{fields}}} trailing"#),
                "trailing characters",
            ),
        ] {
            let events = decoded(&frame);
            assert_eq!(events.len(), 1, "{frame}: {events:?}");
            assert!(events[0].starts_with("Error(") && events[0].contains(says), "{frame}: {events:?}");
        }
        // A longer type with the same start is another event.
        let other = decoded(&format!(
            r#"{{"type":"response.output_audio.delta_2",{fields}}}"#
        ));
        assert!(other.iter().all(|e| !e.starts_with("Audio {")), "{other:?}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let model = OpenAIRealtimeWebSocketModel::builder()
            .api_key("sk-secret-123")
            .header("api-key", "az-secret-456")
            .build();
        let shown = format!("{model:?}");
        assert!(
            !shown.contains("sk-secret-123") && !shown.contains("az-secret-456"),
            "{shown}"
        );
        assert!(shown.contains("[redacted]"));
    }
}
