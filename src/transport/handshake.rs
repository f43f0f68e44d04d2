//! The client side of the WebSocket opening handshake (RFC 6455 §4.1), done here rather than by
//! tungstenite, whose client handshake `log`s the raw upgrade request, credentials included,
//! at TRACE.
//!
//! Nothing here logs, formats or returns what it sends: the request (its URL query and headers
//! may carry keys) only goes to the socket. A refused upgrade's body is returned for the caller
//! to redact (a gateway may echo the request there); [`HandshakeError`]'s `Display` and `Debug`
//! never show it.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use tokio_util::either::Either;

use super::websocket::WebSocket;

/// An open client WebSocket, over TCP or TLS.
pub(crate) type Socket = WebSocket<Stream>;

/// The bytes under a client WebSocket: TCP, or TLS over TCP.
///
/// The TLS state lives in a box of its own. (`tokio_tungstenite::MaybeTlsStream` keeps it
/// inline: 1,112 bytes in every connection, where a plain TCP stream needs 40.)
pub(crate) type Stream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// The response head may be this long at most (a real one is well under 1 KiB).
const MAX_HEAD: usize = 16 << 10;
/// How many response headers are parsed at most.
const MAX_HEADERS: usize = 64;
/// How much of a refused upgrade's body is kept.
const MAX_BODY: usize = 64 << 10;
/// How long the rest of a refused upgrade's body may take to arrive after its head.
const BODY_TIMEOUT: Duration = Duration::from_secs(1);
/// Sent when the caller's headers have no `User-Agent`.
const DEFAULT_USER_AGENT: &str = concat!("realtime-agents-rust/", env!("CARGO_PKG_VERSION"));
/// Headers the handshake writes itself; the caller's are skipped.
const OWN_HEADERS: [HeaderName; 5] = [
    header::HOST,
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
];

/// Why an upgrade failed. No variant holds what was sent; `Display` and `Debug` show neither
/// the URL nor a refusal's body.
pub(crate) enum HandshakeError {
    /// The URL cannot be connected to (the reason names no part of it).
    Url(&'static str),
    /// The TLS client could not be set up.
    Tls(rustls::Error),
    /// Connecting, the TLS handshake, or a read or write of the upgrade failed.
    Io(&'static str, std::io::Error),
    /// The server's answer is not a valid WebSocket upgrade.
    Invalid(&'static str),
    /// The server's answer is not HTTP.
    Malformed(httparse::Error),
    /// The server refused the upgrade with this status. `body` is the start of its body (at
    /// most 64 KiB, de-chunked), unredacted.
    Refused { status: u16, body: Vec<u8> },
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(why) => write!(f, "unusable URL: {why}"),
            Self::Tls(e) => write!(f, "TLS setup failed: {e}"),
            Self::Io(during, e) => write!(f, "{during}: {e}"),
            Self::Invalid(why) => write!(f, "invalid upgrade response: {why}"),
            Self::Malformed(e) => write!(f, "malformed upgrade response: {e}"),
            Self::Refused { status, body } => {
                write!(
                    f,
                    "upgrade refused: HTTP {status} ({} bytes of body)",
                    body.len()
                )
            }
        }
    }
}

/// The same as `Display`: a derived `Debug` would show a refusal's body.
impl fmt::Debug for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandshakeError({self})")
    }
}

/// Opens a client WebSocket to a `ws:` or `wss:` `url`: TCP (no Nagle delay), TLS with rustls
/// and the webpki roots for `wss:`, then the HTTP/1.1 upgrade with `headers` (those the
/// handshake writes itself, `Host`, `Upgrade`, `Connection`, `Sec-WebSocket-Key` and
/// `Sec-WebSocket-Version`, are skipped, so that a request built by tungstenite's
/// `IntoClientRequest` can hand over its headers as they are). A `User-Agent` is added when
/// `headers` has none. If `headers` offers subprotocols, the server must pick one of them.
/// Server messages over `max_message` bytes will end the connection.
///
/// It takes as long as the server lets it: the caller bounds it with a timeout.
pub(crate) async fn connect(
    url: &str,
    headers: &HeaderMap,
    max_message: usize,
) -> Result<Socket, HandshakeError> {
    let target = Target::parse(url)?;
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| HandshakeError::Io("TCP connect failed", e))?;
    tcp.set_nodelay(true)
        .map_err(|e| HandshakeError::Io("TCP setup failed", e))?;
    let mut stream = if target.tls {
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| HandshakeError::Url("the host is not a valid TLS server name"))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| HandshakeError::Io("TLS handshake failed", e))?;
        Either::Right(Box::new(tls))
    } else {
        Either::Left(tcp)
    };
    let key = generate_key();
    let request = upgrade_request(&target, &key, headers);
    let sent = async {
        stream.write_all(&request).await?;
        stream.flush().await
    };
    sent.await
        .map_err(|e| HandshakeError::Io("sending the upgrade request failed", e))?;
    drop(request);
    let (head, rest) = read_head(&mut stream).await?;
    if head.status != 101 {
        let body = refusal_body(&mut stream, &head, rest).await;
        return Err(HandshakeError::Refused {
            status: head.status,
            body,
        });
    }
    head.check_upgrade(&key, headers)?;
    Ok(WebSocket::new(stream, rest, max_message))
}

/// Where to connect, from the URL.
struct Target {
    tls: bool,
    /// For the TCP connection and the TLS server name: an IPv6 address without brackets.
    host: String,
    port: u16,
    /// The `Host` header: the URL's host and, when it names one, its port.
    authority: String,
    /// The request target: path and query.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, HandshakeError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| HandshakeError::Url("not a valid URL"))?;
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("wss") => true,
            Some(s) if s.eq_ignore_ascii_case("ws") => false,
            _ => return Err(HandshakeError::Url("the scheme is not ws or wss")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or(HandshakeError::Url("no host"))?;
        let authority = match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            Some(p) if p.starts_with('/') => p.to_owned(),
            Some(p) => format!("/{p}"),
            None => "/".to_owned(),
        };
        Ok(Self {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority,
            path,
        })
    }
}

/// The TLS client settings, made once: the ring provider, safe protocol versions and the
/// webpki roots.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, HandshakeError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, rustls::Error>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(HandshakeError::Tls)
}

/// The upgrade request's bytes. Header values went through `HeaderValue`, names through
/// `HeaderName` and the path through `Uri`, none of which let a CR or LF through.
fn upgrade_request(target: &Target, key: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(format!("GET {} HTTP/1.1\r\n", target.path).as_bytes());
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    line(b"Host", target.authority.as_bytes());
    line(b"Upgrade", b"websocket");
    line(b"Connection", b"Upgrade");
    line(b"Sec-WebSocket-Key", key.as_bytes());
    line(b"Sec-WebSocket-Version", b"13");
    if !headers.contains_key(header::USER_AGENT) {
        line(b"User-Agent", DEFAULT_USER_AGENT.as_bytes());
    }
    for (name, value) in headers {
        if !OWN_HEADERS.contains(name) {
            line(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The parts of a response head that the handshake looks at.
struct Head {
    status: u16,
    /// The minor HTTP version: 1 for HTTP/1.1.
    version: u8,
    headers: HeaderMap,
}

/// Reads until the end of the response head (at most [`MAX_HEAD`] bytes) and returns it with
/// whatever was read past it: the first WebSocket frames, or the start of a refusal's body.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Head, Vec<u8>), HandshakeError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let chunk_len = chunk.len();
    loop {
        let room = MAX_HEAD - buf.len();
        if room == 0 {
            return Err(HandshakeError::Invalid("the response head is over 16 KiB"));
        }
        let n = stream
            .read(&mut chunk[..room.min(chunk_len)])
            .await
            .map_err(|e| HandshakeError::Io("reading the upgrade response failed", e))?;
        if n == 0 {
            return Err(HandshakeError::Invalid(
                "the connection closed before the response head ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut parsed);
        let len = match response.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => len,
            Err(e) => return Err(HandshakeError::Malformed(e)),
        };
        let mut headers = HeaderMap::with_capacity(response.headers.len());
        for h in response.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| HandshakeError::Invalid("a header name is not valid"))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| HandshakeError::Invalid("a header value is not valid"))?;
            headers.append(name, value);
        }
        let head = Head {
            status: response.code.ok_or(HandshakeError::Invalid("no status"))?,
            version: response
                .version
                .ok_or(HandshakeError::Invalid("no version"))?,
            headers,
        };
        return Ok((head, buf.split_off(len)));
    }
}

impl Head {
    fn value(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// RFC 6455 §4.1, the client's checks of a 101 answer.
    fn check_upgrade(&self, key: &str, sent: &HeaderMap) -> Result<(), HandshakeError> {
        let invalid = |why| Err(HandshakeError::Invalid(why));
        if self.version != 1 {
            return invalid("a 101 answer must be HTTP/1.1");
        }
        if !self
            .value(header::UPGRADE)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        {
            return invalid("no `Upgrade: websocket`");
        }
        let upgrade_token = self
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
        if !upgrade_token {
            return invalid("no `Connection: Upgrade`");
        }
        if self.value(header::SEC_WEBSOCKET_ACCEPT) != Some(&derive_accept_key(key.as_bytes())) {
            return invalid("`Sec-WebSocket-Accept` does not match the key sent");
        }
        if self.headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS) {
            return invalid("the server chose an extension that was not offered");
        }
        let mut offered = sent
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .peekable();
        match self.value(header::SEC_WEBSOCKET_PROTOCOL) {
            Some(chosen) if !offered.any(|p| p == chosen.trim()) => {
                invalid("the server chose a subprotocol that was not offered")
            }
            None if offered.peek().is_some() => invalid("the server chose no subprotocol"),
            _ => Ok(()),
        }
    }
}

/// The body of a refused upgrade, from what came with its head and what follows within
/// [`BODY_TIMEOUT`]: as long as `Content-Length` says, to the last chunk of a chunked body, or
/// to the end of the connection, and at most [`MAX_BODY`] bytes.
async fn refusal_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: &Head,
    mut raw: Vec<u8>,
) -> Vec<u8> {
    let chunked = head
        .value(header::TRANSFER_ENCODING)
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = if matches!(head.status, 100..=199 | 204 | 304) {
        Some(0)
    } else if chunked {
        None
    } else {
        head.value(header::CONTENT_LENGTH)
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    // A chunked body's framing costs a few bytes per chunk beyond its data.
    let want = length.map_or(MAX_BODY + MAX_BODY / 8, |n| n.min(MAX_BODY));
    let done = |raw: &[u8]| raw.len() >= want || (chunked && dechunk(raw).1);
    let read = async {
        let mut chunk = [0u8; 4096];
        let chunk_len = chunk.len();
        while !done(&raw) {
            let room = (want - raw.len()).min(chunk_len);
            match stream.read(&mut chunk[..room]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(BODY_TIMEOUT, read).await;
    let mut body = if chunked { dechunk(&raw).0 } else { raw };
    body.truncate(want.min(MAX_BODY));
    body
}

/// The data of a chunked body as far as `raw` holds it, and whether its last chunk was seen.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    loop {
        let Ok(httparse::Status::Complete((start, size))) = httparse::parse_chunk_size(raw) else {
            return (data, false);
        };
        if size == 0 {
            return (data, true);
        }
        let rest = raw.get(start..).unwrap_or_default();
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        data.extend_from_slice(rest.get(..size).unwrap_or(rest));
        match rest.get(size.saturating_add(2)..) {
            Some(next) => raw = next,
            None => return (data, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    use crate::transport::websocket::Frame;

    const KEY: &str = "sk-unit-CANARY-5d1e";

    /// A server that reads one request head, hands it to the test, answers with what
    /// `answer` makes of the request's `Sec-WebSocket-Key`, and keeps the connection open.
    async fn raw_server(
        answer: impl Fn(&str) -> Vec<u8> + Send + 'static,
    ) -> (String, tokio::sync::oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "ws://{}/v1/realtime?model=m",
            listener.local_addr().unwrap()
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client closed mid-request");
                request.extend_from_slice(&buf[..n]);
            }
            let request = String::from_utf8(request).unwrap();
            let key = request
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap_or_default()
                .to_owned();
            stream.write_all(&answer(&key)).await.unwrap();
            let _ = tx.send(request);
            // Held open: the client must not need the connection's end to finish.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        (url, rx)
    }

    fn auth_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut value = HeaderValue::from_str(&format!("Bearer {KEY}")).unwrap();
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
        headers.insert(header::USER_AGENT, HeaderValue::from_static("test-agent"));
        // Handshake-owned: ignored.
        headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("bogus"));
        headers
    }

    /// The error of an upgrade that must fail.
    async fn failure(url: &str, headers: &HeaderMap) -> HandshakeError {
        match connect(url, headers, 1 << 20).await {
            Ok(_) => panic!("the upgrade should have failed"),
            Err(e) => e,
        }
    }

    fn accept(key: &str) -> String {
        derive_accept_key(key.as_bytes())
    }

    #[tokio::test]
    async fn a_refusal_returns_its_status_and_json_body() {
        let body =
            r#"{"error":{"message":"Incorrect API key provided.","code":"invalid_api_key"}}"#;
        let (url, request) = raw_server(move |_| {
            format!(
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .await;
        let error = failure(&url, &auth_headers()).await;
        let HandshakeError::Refused { status, body: got } = &error else {
            panic!("expected a refusal, got {error}");
        };
        assert_eq!(*status, 401);
        assert_eq!(got, body.as_bytes());
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(
                !shown.contains(KEY) && !shown.contains("Incorrect"),
                "{shown}"
            );
            assert!(shown.contains("401"), "{shown}");
        }

        let request = request.await.unwrap();
        let lines: Vec<&str> = request.lines().collect();
        assert_eq!(lines[0], "GET /v1/realtime?model=m HTTP/1.1");
        for expected in [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            "user-agent: test-agent",
            &format!("authorization: Bearer {KEY}"),
        ] {
            assert!(lines.contains(&expected), "no `{expected}` in {request}");
        }
        assert!(lines.iter().any(|l| l.starts_with("Host: 127.0.0.1:")));
        assert!(!request.contains("bogus"), "{request}");
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("Sec-WebSocket-Key"))
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn a_chunked_refusal_is_read_to_its_last_chunk() {
        let (url, _request) = raw_server(|_| {
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n\
              7\r\n{\"a\":\"b\r\n3\r\n\"}\n\r\n0\r\n\r\n"
                .to_vec()
        })
        .await;
        let error = failure(&url, &HeaderMap::new()).await;
        let HandshakeError::Refused { status, body } = error else {
            panic!("expected a refusal, got {error}");
        };
        assert_eq!(status, 403);
        assert_eq!(body, b"{\"a\":\"b\"}\n");
    }

    #[tokio::test]
    async fn a_refusal_body_is_cut_at_64_kib() {
        let (url, _request) = raw_server(|_| {
            let mut answer = b"HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\n\r\n".to_vec();
            answer.resize(answer.len() + 100_000, b'x');
            answer
        })
        .await;
        let error = failure(&url, &HeaderMap::new()).await;
        let HandshakeError::Refused { status: 500, body } = error else {
            panic!("expected a refusal, got {error}");
        };
        assert_eq!(body.len(), MAX_BODY);
    }

    #[tokio::test]
    async fn a_wrong_accept_key_fails_the_upgrade() {
        let (url, _request) = raw_server(|key| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                accept(&format!("{key}x"))
            )
            .into_bytes()
        })
        .await;
        let error = failure(&url, &auth_headers()).await;
        assert!(
            matches!(error, HandshakeError::Invalid(why) if why.contains("Sec-WebSocket-Accept")),
            "{error}"
        );
        assert!(!error.to_string().contains(KEY));
    }

    #[tokio::test]
    async fn frames_sent_with_the_101_are_not_lost() {
        let (url, _request) = raw_server(|key| {
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                accept(key)
            )
            .into_bytes();
            // An unmasked text frame, "hi", in the same write as the head.
            answer.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
            answer
        })
        .await;
        let mut socket = connect(&url, &auth_headers(), 1 << 20).await.unwrap();
        let next = std::future::poll_fn(|cx| socket.poll_next(cx));
        let frame = tokio::time::timeout(Duration::from_secs(5), next).await;
        assert!(
            matches!(&frame, Ok(Some(Ok(Frame::Text(t)))) if t.as_str() == "hi"),
            "{frame:?}"
        );
    }

    #[tokio::test]
    async fn a_garbled_answer_or_url_is_an_error() {
        let (url, _request) = raw_server(|_| b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()).await;
        let error = failure(&url, &HeaderMap::new()).await;
        assert!(matches!(error, HandshakeError::Malformed(_)), "{error}");
        for bad in ["http://127.0.0.1:1/", "ws:///path", "not a url"] {
            let error = failure(bad, &HeaderMap::new()).await;
            assert!(matches!(error, HandshakeError::Url(_)), "{bad}: {error}");
        }
    }

    #[test]
    fn dechunk_stops_at_what_it_has() {
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n"), (b"abc".to_vec(), true));
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nd"), (b"abcd".to_vec(), false));
        assert_eq!(dechunk(b"zz"), (Vec::new(), false));
        assert_eq!(dechunk(b"ffffffffffffffff\r\nab"), (b"ab".to_vec(), false));
    }
}
