//! Opening a backend's WebSocket: credentials, socket options and the handshake's timeout,
//! with nothing secret in any log line, error or `Debug` output.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::handshake::{self, HandshakeError, Socket};
use crate::{Error, Result};

/// Sent as `User-Agent`.
const USER_AGENT: &str = concat!("realtime-agents-rust/", env!("CARGO_PKG_VERSION"));

/// A secret that never shows in `Debug` output.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Arc<str>);

impl Secret {
    pub(crate) fn new(value: String) -> Self {
        Self(value.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What every backend's connection is opened and kept alive with: credentials, timeouts and
/// limits. Keys and header values are redacted in `Debug` output.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) api_key: Option<Secret>,
    pub(crate) headers: Vec<(String, Secret)>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) ping_timeout: Duration,
    pub(crate) max_frame_size: usize,
    pub(crate) max_send_queue: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api_key: None,
            headers: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Duration::from_secs(20),
            max_frame_size: 16 << 20,
            max_send_queue: 8 << 20,
        }
    }
}

/// The URL as shown in logs and errors: without its query (keys travel there too).
pub(crate) fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

/// Opens the WebSocket at `url`. Without custom headers, `Authorization: Bearer` carries the
/// key (the builder's, or `OPENAI_API_KEY`); a missing key is an error only when `key_required`
/// (the real API, not a custom URL). With custom headers, they are sent as given and no
/// `Authorization` header is added. `public_query` names the query parameters that are not
/// secret (kept in a refusal's body).
pub(crate) async fn open(
    url: &str,
    options: &Options,
    key_required: bool,
    public_query: &[&str],
) -> Result<Socket> {
    let shown = strip_query(url);
    let connect_error = |status: Option<u16>, message: String| Error::Connect {
        url: shown.clone(),
        status,
        message,
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| connect_error(None, e.to_string()))?;
    let headers = request.headers_mut();
    let header = |value: &str| {
        HeaderValue::from_str(value).map_err(|_| Error::Config("invalid header value".into()))
    };
    if options.headers.is_empty() {
        let key = match &options.api_key {
            Some(key) => Some(key.0.to_string()),
            None => std::env::var("OPENAI_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
        };
        match key {
            Some(key) => {
                let mut value = header(&format!("Bearer {key}"))?;
                value.set_sensitive(true);
                headers.insert("authorization", value);
            }
            None if key_required => {
                return Err(Error::Config(
                    "no API key: set OPENAI_API_KEY or call `api_key`".into(),
                ));
            }
            None => {}
        }
    } else {
        for (name, value) in &options.headers {
            let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::Config(format!("invalid header name `{name}`")))?;
            let mut value = header(&value.0)?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
    }
    headers.insert("user-agent", HeaderValue::from_static(USER_AGENT));
    // `max_frame_size` bounds what the server sends; what the client sends is bounded by
    // `max_send_queue` (what waits to be written), never refused for its size.
    let handshake = handshake::connect(url, request.headers(), options.max_frame_size);
    match tokio::time::timeout(options.handshake_timeout, handshake).await {
        Err(_) => Err(Error::Timeout(format!(
            "connecting to {shown} took over {:?}",
            options.handshake_timeout
        ))),
        Ok(Err(HandshakeError::Refused { status, body })) => {
            let body = String::from_utf8_lossy(&body);
            // Hide our credentials before cutting, so that no fragment of one survives.
            let body =
                refusal_redactor(options, url, public_query).redact_string(body.into_owned());
            Err(connect_error(
                Some(status),
                body.chars().take(500).collect(),
            ))
        }
        Ok(Err(e)) => Err(connect_error(None, e.to_string())),
        Ok(Ok(ws)) => {
            tracing::debug!(url = %shown, "connected");
            Ok(ws)
        }
    }
}

/// Every credential a connection attempt may have sent: the key, custom header values, the
/// environment's key and the URL's query values (but the public ones, such as the model name).
/// A refused upgrade's body can echo them back (proxies and gateways do), and it ends up in
/// [`Error::Connect`].
fn refusal_redactor(options: &Options, url: &str, public_query: &[&str]) -> crate::Redactor {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    crate::Redactor::new(
        options
            .api_key
            .iter()
            .chain(options.headers.iter().map(|(_, value)| value))
            .map(|secret| secret.0.to_string())
            .chain(std::env::var("OPENAI_API_KEY").ok())
            .chain(
                query
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .filter(|(name, _)| !public_query.contains(name))
                    .map(|(_, v)| v.to_owned()),
            ),
    )
}

/// The builder methods every WebSocket backend shares (credentials, timeouts, limits), for a
/// builder whose `config.transport` is an [`Options`]. `$model` names the model type as a path
/// below `realtime_agents::model` (for the examples).
macro_rules! transport_setters {
    ($model:literal) => {
        /// The API key (default: `OPENAI_API_KEY`). It never shows in `Debug` output, logs or
        /// errors.
        ///
        /// ```
        #[doc = concat!("let model = realtime_agents::model::", $model, "::builder().api_key(\"sk-test\").build();")]
        /// assert!(!format!("{model:?}").contains("sk-test"));
        /// ```
        pub fn api_key(mut self, key: impl Into<String>) -> Self {
            self.config.transport.api_key = Some($crate::transport::Secret::new(key.into()));
            self
        }

        /// Adds a header (Azure's `api-key`, a gateway's). With any custom header, no
        /// `Authorization` header is added; values never show in `Debug` output.
        ///
        /// ```
        #[doc = concat!("let model = realtime_agents::model::", $model, "::builder().header(\"api-key\", \"az-test\").build();")]
        /// assert!(!format!("{model:?}").contains("az-test"));
        /// ```
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.config
                .transport
                .headers
                .push((name.into(), $crate::transport::Secret::new(value.into())));
            self
        }

        /// How long the connection and WebSocket handshake may take (default 10 s).
        ///
        /// ```
        #[doc = concat!("let model = realtime_agents::model::", $model, "::builder()")]
        ///     .handshake_timeout(std::time::Duration::from_secs(5))
        ///     .build();
        /// # let _ = model;
        /// ```
        pub fn handshake_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.config.transport.handshake_timeout = timeout;
            self
        }

        /// Keep-alive (default: a ping every 20 s, 20 s to answer); `interval: None` disables it.
        ///
        /// Any frame from the server counts as proof of life, not only a pong, and time the
        /// session spends waiting for the application to read its events never counts against
        /// the server: frames that arrived meanwhile are read before the server is judged. A
        /// server that stops sending anything (a frozen process, a network black hole) is
        /// reported at most `interval + timeout` after its last frame (40 s with the defaults),
        /// with no action from the application: as
        /// [`Reconnecting`](crate::RealtimeSessionEvent::Reconnecting) when a
        /// [`ReconnectPolicy`](crate::ReconnectPolicy) is set, otherwise as the final
        /// [`Closed`](crate::RealtimeSessionEvent::Closed) with an
        /// [`Error::Timeout`](crate::Error::Timeout).
        ///
        /// ```
        /// use std::time::Duration;
        /// // Notice a dead server within 15 s (a ping every 10 s, 5 s to answer).
        #[doc = concat!("let model = realtime_agents::model::", $model, "::builder()")]
        ///     .ping(Some(Duration::from_secs(10)), Duration::from_secs(5))
        ///     .build();
        /// # let _ = model;
        /// ```
        pub fn ping(mut self, interval: Option<std::time::Duration>, timeout: std::time::Duration) -> Self {
            self.config.transport.ping_interval = interval;
            self.config.transport.ping_timeout = timeout;
            self
        }

        /// Largest accepted frame (default 16 MiB). Larger frames close the connection with an
        /// error.
        ///
        /// ```
        #[doc = concat!("let model = realtime_agents::model::", $model, "::builder().max_frame_size(1 << 20).build();")]
        /// # let _ = model;
        /// ```
        pub fn max_frame_size(mut self, bytes: usize) -> Self {
            self.config.transport.max_frame_size = bytes;
            self
        }

        /// How many bytes of frames may wait to be written (default 8 MiB), when the server
        /// or the network takes them slower than the application sends.
        ///
        /// Past it the session holds the application's commands back: they wait in the
        /// session's command queue (256), and then `send_audio` and the other sends wait for
        /// room, until the socket drains. Nothing is dropped. A server that stops reading and
        /// sending altogether is still ended by the keep-alive ([`ping`](Self::ping)).
        ///
        /// ```
        #[doc = concat!("let model = realtime_agents::model::", $model, "::builder().max_send_queue(1 << 20).build();")]
        /// # let _ = model;
        /// ```
        pub fn max_send_queue(mut self, bytes: usize) -> Self {
            self.config.transport.max_send_queue = bytes;
            self
        }
    };
}

pub(crate) use transport_setters;
