//! The client side of WebSocket framing (RFC 6455 §5), over the socket [`handshake`] opened.
//!
//! A voice session's connection is idle most of its life and busy in short bursts, so this
//! framing keeps no buffer of its own while nothing is in flight:
//! - A read goes into a buffer shared by every connection on the thread. A read that holds one
//!   whole frame copies out its payload alone; one that holds several copies them once into an
//!   allocation that their messages share; the start of a frame still arriving is kept by the
//!   connection, in a buffer sized for the frame. Nothing is kept once returned.
//! - Frames to send are encoded (masked) into a second shared buffer and written from there;
//!   only what the socket does not take at once is kept by the connection until it is written.
//!
//! The server's frames are checked as the RFC asks of a client: no mask, no reserved bits or
//! opcodes, whole control frames of at most 125 bytes, continuation frames only inside a
//! fragmented message, text in UTF-8, and no message over the configured limit (refused from
//! its header, before its payload is read). A ping is answered with a pong, a close frame
//! with a close frame. A broken rule ends the connection with a close frame whose code says
//! why (1002, 1007 or 1009), and a [`WsError`].
//!
//! [`handshake`]: super::handshake

use std::cell::Cell;
use std::fmt;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Utf8Bytes;

const OP_CONTINUE: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What one read asks the socket for at most. A 20 ms audio delta is about 1.4 KB, so a read
/// takes a burst of them at once.
const READ_SIZE: usize = 16 << 10;
/// Frames are taken from the send queue and encoded in batches of about this many bytes; the
/// rest waits in the queue (where the connection bounds it) while the socket pushes back.
const WRITE_BATCH: usize = 64 << 10;
/// A shared buffer that grew past this (for a large frame) is not kept for the next one.
const SCRATCH_KEEP: usize = 256 << 10;

thread_local! {
    /// Where reads land first.
    static READ_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// Where frames are encoded before they are written.
    static WRITE_SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Takes the thread's `slot` buffer (empty) for the duration of `f`. A nested use, which the
/// socket calls made under `f` cannot cause, would only get a fresh buffer.
fn with_scratch<R>(
    slot: &'static std::thread::LocalKey<Cell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    // Stored empty (below), or fresh.
    let mut buf = slot.take();
    let out = f(&mut buf);
    if buf.capacity() <= SCRATCH_KEEP {
        buf.clear();
        slot.set(buf);
    }
    out
}

/// A message (or control frame) from the server.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    Text(Utf8Bytes),
    /// A binary message (its payload is not kept: no backend sends one).
    Binary,
    Ping,
    Pong,
    /// The server closes, with its code and reason if it gave them. The close frame that
    /// answers it is already on its way.
    Close(Option<(u16, String)>),
}

/// Why the connection cannot go on.
#[derive(Debug)]
pub(crate) enum WsError {
    /// The socket failed.
    Io(io::Error),
    /// A message over the limit (its size as far as known: a frame's from its header, a
    /// fragmented message's so far).
    TooLarge { size: u64, max: usize },
    /// A text message that is not UTF-8.
    Utf8,
    /// The server broke the framing rules.
    Protocol(&'static str),
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::TooLarge { size, max } => write!(f, "message of {size} bytes, over {max}"),
            Self::Utf8 => f.write_str("text message not in UTF-8"),
            Self::Protocol(why) => f.write_str(why),
        }
    }
}

impl WsError {
    /// The close code that tells the server what went wrong.
    fn close_code(&self) -> Option<u16> {
        match self {
            Self::Io(_) => None,
            Self::TooLarge { .. } => Some(1009),
            Self::Utf8 => Some(1007),
            Self::Protocol(_) => Some(1002),
        }
    }
}

/// Where the closing handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// Our close frame is queued or sent.
    Sent,
    /// The server's close frame arrived (and ours answers it, or answered it): nothing more is
    /// read.
    Received,
}

/// A frame's header, parsed.
struct Header {
    fin: bool,
    opcode: u8,
    /// The header's own length.
    len: usize,
    payload: u64,
}

/// One client WebSocket.
pub(crate) struct WebSocket<S> {
    io: S,
    /// Bytes read but not yet returned, whole frames first (and maybe the start of one); the
    /// messages returned from them are slices of the same allocation. Empty between frames.
    ready: Bytes,
    /// The start of a frame whose rest is being read into it. Empty (no allocation) otherwise.
    partial: BytesMut,
    /// A fragmented message being put together: whether it is text, and its payload so far.
    fragments: Option<(bool, Vec<u8>)>,
    /// Encoded frames the socket has not taken yet. No allocation while empty.
    wr: Vec<u8>,
    wr_pos: usize,
    /// Written but not yet flushed (a TLS stream holds its records until flushed).
    flush: bool,
    max_message: usize,
    closing: Closing,
    /// The socket is shut for writing.
    shut: bool,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("buffered", &(self.ready.len() + self.partial.len()))
            .field("unwritten", &(self.wr.len() - self.wr_pos))
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// A WebSocket over `io`, whose upgrade is done; `read` is what was read past the upgrade's
    /// response (the first frames, if the server sent them at once). Messages over
    /// `max_message` bytes end the connection.
    pub(crate) fn new(io: S, read: Vec<u8>, max_message: usize) -> Self {
        Self {
            io,
            ready: read.into(),
            partial: BytesMut::new(),
            fragments: None,
            wr: Vec::new(),
            wr_pos: 0,
            flush: false,
            max_message,
            closing: Closing::Open,
            shut: false,
        }
    }

    /// The next message or control frame from the server. `None` once the server's close frame
    /// or an error was returned, or when the socket ended without a close frame (the caller
    /// tells these apart by what came before).
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame, WsError>>> {
        if self.closing == Closing::Received {
            return Poll::Ready(None);
        }
        let polled = self.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(e))) => {
                if let Some(code) = e.close_code() {
                    self.fail(cx, code);
                }
            }
            Poll::Ready(Some(Ok(Frame::Close(_)))) => {
                self.closing = Closing::Received;
                // Best effort: the answer goes out now if the socket takes it.
                let _ = self.poll_flush_queued(cx);
            }
            Poll::Ready(Some(Ok(Frame::Ping))) => {
                let _ = self.poll_flush_queued(cx);
            }
            _ => {}
        }
        polled
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame, WsError>>> {
        loop {
            // Frames already read: their messages are slices of the same allocation.
            if !self.ready.is_empty() {
                let ready = std::mem::take(&mut self.ready);
                let (frame, used) = match self.take_frames(&ready, |r| ready.slice(r)) {
                    Ok(taken) => taken,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                };
                if used < ready.len() {
                    if frame.is_some() {
                        self.ready = ready.slice(used..);
                    } else {
                        self.start_partial(&ready[used..]);
                    }
                }
                if let Some(frame) = frame {
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
            if self.partial.is_empty() {
                // Nothing kept: read into the thread's buffer.
                let polled = with_scratch(&READ_SCRATCH, |buf| {
                    buf.reserve(READ_SIZE);
                    match ready!(tokio_util::io::poll_read_buf(
                        Pin::new(&mut self.io),
                        cx,
                        buf
                    )) {
                        Err(e) => Poll::Ready(Err(WsError::Io(e))),
                        Ok(0) => Poll::Ready(Ok(None)),
                        Ok(_) => Poll::Ready(self.on_read(buf).map(Some)),
                    }
                });
                match ready!(polled) {
                    Err(e) => return Poll::Ready(Some(Err(e))),
                    Ok(None) => return Poll::Ready(None),
                    Ok(Some(Some(frame))) => return Poll::Ready(Some(Ok(frame))),
                    Ok(Some(None)) => {}
                }
            } else {
                // A frame is partly here: read the rest of it after it. Its header, once
                // whole, may break a rule.
                let header = match parse_header(&self.partial) {
                    Ok(header) => header,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                };
                let missing = match header {
                    Some(header) => match self.check_size(&header) {
                        Ok(()) => (header.len + header.payload as usize)
                            .saturating_sub(self.partial.len()),
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    },
                    None => 14,
                };
                self.partial.reserve(missing.max(READ_SIZE / 4));
                match ready!(tokio_util::io::poll_read_buf(
                    Pin::new(&mut self.io),
                    cx,
                    &mut self.partial
                )) {
                    Err(e) => return Poll::Ready(Some(Err(WsError::Io(e)))),
                    Ok(0) => return Poll::Ready(None),
                    Ok(_) => {}
                }
                if frame_len(&self.partial).is_some_and(|len| len <= self.partial.len()) {
                    self.ready = std::mem::take(&mut self.partial).freeze();
                }
            }
        }
    }

    /// What one read into the thread's buffer brought.
    fn on_read(&mut self, buf: &[u8]) -> Result<Option<Frame>, WsError> {
        match frame_len(buf) {
            // One whole frame, as paced traffic reads them: its payload is copied alone.
            Some(len) if len == buf.len() => {
                let (frame, _) = self.take_frames(buf, |r| Bytes::copy_from_slice(&buf[r]))?;
                Ok(frame)
            }
            // More than one frame: copied at once, returned in slices.
            Some(len) if len < buf.len() => {
                self.ready = Bytes::copy_from_slice(buf);
                Ok(None)
            }
            // The start of a frame (its header is checked before the rest is read).
            _ => {
                self.start_partial(buf);
                Ok(None)
            }
        }
    }

    /// Keeps the start of a frame, with room for the rest of it.
    fn start_partial(&mut self, bytes: &[u8]) {
        let want = frame_len(bytes).unwrap_or(0).min(self.max_message + 14);
        let mut partial = BytesMut::with_capacity(want.max(bytes.len() + READ_SIZE / 4));
        partial.extend_from_slice(bytes);
        self.partial = partial;
    }

    /// Takes whole frames from the start of `buf` until one makes a message (or a control
    /// frame) to return, or until only part of a frame is left. Returns it, if any, and how many
    /// bytes were used. `own` makes a message's payload from its range in `buf`.
    fn take_frames(
        &mut self,
        buf: &[u8],
        own: impl Fn(Range<usize>) -> Bytes,
    ) -> Result<(Option<Frame>, usize), WsError> {
        let mut used = 0;
        while let Some(header) = parse_header(&buf[used..])? {
            self.check_size(&header)?;
            let start = used + header.len;
            let end = start + header.payload as usize;
            if end > buf.len() {
                break;
            }
            used = end;
            if let Some(frame) = self.on_frame(&header, &buf[start..end], || own(start..end))? {
                return Ok((Some(frame), used));
            }
        }
        Ok((None, used))
    }

    /// Refuses a frame that would take its message over the limit, from its header alone.
    fn check_size(&self, header: &Header) -> Result<(), WsError> {
        let so_far = match (&self.fragments, header.opcode) {
            (Some((_, data)), OP_CONTINUE) => data.len() as u64,
            _ => 0,
        };
        let size = so_far.saturating_add(header.payload);
        if size > self.max_message as u64 {
            return Err(WsError::TooLarge {
                size,
                max: self.max_message,
            });
        }
        Ok(())
    }

    /// One whole frame: a message or a control frame to return, or a fragment kept.
    fn on_frame(
        &mut self,
        header: &Header,
        payload: &[u8],
        owned: impl FnOnce() -> Bytes,
    ) -> Result<Option<Frame>, WsError> {
        match header.opcode {
            OP_TEXT | OP_BINARY if self.fragments.is_some() => Err(WsError::Protocol(
                "a new message began inside a fragmented one",
            )),
            OP_TEXT | OP_BINARY if !header.fin => {
                self.fragments = Some((header.opcode == OP_TEXT, payload.to_vec()));
                Ok(None)
            }
            OP_TEXT => Ok(Some(Frame::Text(text(owned())?))),
            OP_BINARY => Ok(Some(Frame::Binary)),
            OP_CONTINUE => {
                let Some((_, data)) = &mut self.fragments else {
                    return Err(WsError::Protocol(
                        "a continuation frame with no message to continue",
                    ));
                };
                data.extend_from_slice(payload);
                if !header.fin {
                    return Ok(None);
                }
                let Some((is_text, data)) = self.fragments.take() else {
                    return Ok(None);
                };
                Ok(Some(if is_text {
                    Frame::Text(text(data.into())?)
                } else {
                    Frame::Binary
                }))
            }
            OP_PING => {
                if self.closing == Closing::Open {
                    self.queue(OP_PONG, payload);
                }
                Ok(Some(Frame::Ping))
            }
            OP_PONG => Ok(Some(Frame::Pong)),
            _ => {
                // OP_CLOSE: `parse_header` lets no other opcode through.
                let close = match payload {
                    [] => None,
                    [_] => return Err(WsError::Protocol("a close frame of one byte")),
                    [hi, lo, reason @ ..] => {
                        let reason = std::str::from_utf8(reason).map_err(|_| WsError::Utf8)?;
                        Some((u16::from_be_bytes([*hi, *lo]), reason.to_owned()))
                    }
                };
                if self.closing == Closing::Open {
                    // Echo the code, unless it is one that must not be sent.
                    let code = match close {
                        None => None,
                        Some((code, _)) if sendable(code) => Some(code),
                        Some(_) => Some(1002),
                    };
                    self.queue_close(code);
                }
                Ok(Some(Frame::Close(close)))
            }
        }
    }

    /// Queues a text frame. Frames are written by [`poll_send`](Self::poll_send).
    #[cfg(test)]
    pub(crate) fn queue_text(&mut self, text: &str) {
        self.queue(OP_TEXT, text.as_bytes());
    }

    /// Queues a ping (the keep-alive's).
    pub(crate) fn queue_ping(&mut self) {
        if self.closing == Closing::Open {
            self.queue(OP_PING, &[]);
        }
    }

    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        encode(&mut self.wr, opcode, payload);
    }

    /// Queues our close frame (once), with `code` if given.
    fn queue_close(&mut self, code: Option<u16>) {
        if self.closing != Closing::Open {
            return;
        }
        self.closing = Closing::Sent;
        match code {
            Some(code) => self.queue(OP_CLOSE, &code.to_be_bytes()),
            None => self.queue(OP_CLOSE, &[]),
        }
    }

    /// Tells the server why the connection ends, as far as the socket takes it now.
    fn fail(&mut self, cx: &mut Context<'_>, code: u16) {
        self.queue_close(Some(code));
        self.closing = Closing::Received;
        let _ = self.poll_flush_queued(cx);
    }

    /// Writes what is queued, then the text frames `next` hands out, in order, until the socket
    /// pushes back (`Pending`: what was encoded is kept; `next` is asked again on the next
    /// call) or until everything is written and flushed.
    pub(crate) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        mut next: impl FnMut() -> Option<String>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_flush_queued(cx))?;
            let Some(first) = next() else {
                return Poll::Ready(Ok(()));
            };
            // A batch encoded in the thread's buffer; what the socket does not take is kept.
            let polled = with_scratch(&WRITE_SCRATCH, |buf| {
                encode(buf, OP_TEXT, first.as_bytes());
                drop(first);
                while buf.len() < WRITE_BATCH {
                    let Some(text) = next() else { break };
                    encode(buf, OP_TEXT, text.as_bytes());
                }
                let mut pos = 0;
                let polled = write_all(&mut self.io, cx, buf, &mut pos);
                if pos > 0 {
                    self.flush = true;
                }
                if pos < buf.len() {
                    self.wr.extend_from_slice(&buf[pos..]);
                }
                polled
            });
            ready!(polled)?;
        }
    }

    /// Writes and flushes what is queued in the connection's own buffer.
    fn poll_flush_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.wr_pos < self.wr.len() {
            let polled = write_all(&mut self.io, cx, &self.wr, &mut self.wr_pos);
            self.flush = true;
            ready!(polled)?;
            self.wr = Vec::new();
            self.wr_pos = 0;
        }
        if self.flush {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Closes: our close frame (code 1000) after what is queued, then the socket's write side
    /// (for TLS, its `close_notify`). It does not wait for the server's close frame.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.queue_close(Some(1000));
        ready!(self.poll_flush_queued(cx))?;
        if !self.shut {
            ready!(Pin::new(&mut self.io).poll_shutdown(cx))?;
            self.shut = true;
        }
        Poll::Ready(Ok(()))
    }
}

/// Writes `buf[*pos..]` until the socket pushes back or all of it is written.
fn write_all<S: AsyncWrite + Unpin>(
    io: &mut S,
    cx: &mut Context<'_>,
    buf: &[u8],
    pos: &mut usize,
) -> Poll<io::Result<()>> {
    while *pos < buf.len() {
        match ready!(Pin::new(&mut *io).poll_write(cx, &buf[*pos..]))? {
            0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            n => *pos += n,
        }
    }
    Poll::Ready(Ok(()))
}

/// Whether a close code may be sent in a close frame (RFC 6455 §7.4).
fn sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn text(payload: Bytes) -> Result<Utf8Bytes, WsError> {
    Utf8Bytes::try_from(payload).map_err(|_| WsError::Utf8)
}

/// The length of the frame at the start of `buf`, header included, once its header is there
/// (`None` before, or for a header that breaks a rule).
fn frame_len(buf: &[u8]) -> Option<usize> {
    match parse_header(buf) {
        Ok(Some(h)) => usize::try_from(h.payload)
            .ok()
            .and_then(|payload| payload.checked_add(h.len)),
        _ => None,
    }
}

/// Parses the header at the start of `buf`: `None` until all of it is there.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, WsError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol(
            "reserved bits set with no extension agreed",
        ));
    }
    if b1 & 0x80 != 0 {
        return Err(WsError::Protocol("a masked frame from the server"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let (len, payload) = match b1 & 0x7F {
        126 => match rest {
            [a, b, ..] => (4, u64::from(u16::from_be_bytes([*a, *b]))),
            _ => return Ok(None),
        },
        127 => match rest {
            [a, b, c, d, e, f, g, h, ..] => {
                (10, u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]))
            }
            _ => return Ok(None),
        },
        n => (2, u64::from(n)),
    };
    match opcode {
        OP_CONTINUE | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return Err(WsError::Protocol("a fragmented control frame"));
            }
            if payload > 125 {
                return Err(WsError::Protocol("a control frame over 125 bytes"));
            }
        }
        _ => return Err(WsError::Protocol("a reserved opcode")),
    }
    Ok(Some(Header {
        fin,
        opcode,
        len,
        payload,
    }))
}

/// Appends one whole, masked frame to `out`.
fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    out.reserve(14 + len);
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask: [u8; 4] = rand::random();
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `data` with `mask`, repeated from `data`'s first byte.
fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use futures::{SinkExt as _, StreamExt as _};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    const LIMIT: usize = 1 << 20;

    async fn next<S: AsyncRead + AsyncWrite + Unpin>(
        ws: &mut WebSocket<S>,
    ) -> Option<Result<Frame, WsError>> {
        tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| ws.poll_next(cx)))
            .await
            .expect("a frame within 5 s")
    }

    async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>, texts: &[String]) {
        let mut texts = texts.iter().cloned();
        poll_fn(|cx| ws.poll_send(cx, || texts.next()))
            .await
            .expect("written");
    }

    /// Reads `texts` as text messages, in order.
    async fn expect_texts<S: AsyncRead + AsyncWrite + Unpin>(
        ws: &mut WebSocket<S>,
        texts: &[String],
    ) {
        for text in texts {
            let got = next(ws).await.unwrap().unwrap();
            assert_eq!(
                got,
                Frame::Text(text.as_str().into()),
                "{} bytes",
                text.len()
            );
        }
    }

    /// A server frame, unmasked.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xFFFF => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// The client's frames in `bytes`, unmasked: (opcode, payload). Panics on an unmasked one.
    fn client_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            assert!(bytes[0] & 0x80 != 0, "every client frame is whole");
            assert!(bytes[1] & 0x80 != 0, "every client frame is masked");
            let (len, at) = match bytes[1] & 0x7F {
                126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            let mask = &bytes[at..at + 4];
            let payload = bytes[at + 4..at + 4 + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            frames.push((bytes[0] & 0x0F, payload));
            bytes = &bytes[at + 4 + len..];
        }
        frames
    }

    fn pair(capacity: usize) -> (WebSocket<DuplexStream>, DuplexStream) {
        let (client, server) = tokio::io::duplex(capacity);
        (WebSocket::new(client, Vec::new(), LIMIT), server)
    }

    /// Everything the client wrote so far (it must have written something).
    async fn written(server: &mut DuplexStream) -> Vec<u8> {
        let mut buf = vec![0u8; 64 << 10];
        let n = tokio::time::timeout(Duration::from_secs(5), server.read(&mut buf))
            .await
            .expect("the client wrote")
            .unwrap();
        buf.truncate(n);
        buf
    }

    async fn loopback() -> (WebSocket<TcpStream>, WebSocketStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let server =
            WebSocketStream::from_raw_socket(accepted.unwrap().0, Role::Server, None).await;
        (WebSocket::new(client.unwrap(), Vec::new(), LIMIT), server)
    }

    #[tokio::test]
    async fn frames_of_every_length_cross_to_a_tungstenite_server_and_back() {
        let (mut ws, mut server) = loopback().await;
        let texts: Vec<String> = [0, 1, 125, 126, 127, 65_535, 65_536, 300_000]
            .iter()
            .map(|&n| (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect())
            .chain(["héllo ✓".to_owned()])
            .collect();
        send(&mut ws, &texts).await;
        for text in &texts {
            let got = server.next().await.unwrap().unwrap();
            assert_eq!(got, Message::text(text.clone()), "{} bytes", text.len());
        }
        // Back, all in one burst: most of them arrive in one read with the next ones.
        for text in &texts {
            server.feed(Message::text(text.clone())).await.unwrap();
        }
        server.flush().await.unwrap();
        expect_texts(&mut ws, &texts).await;
        assert_eq!(
            (ws.ready.len(), ws.partial.capacity(), ws.wr.capacity()),
            (0, 0, 0),
            "no buffer kept"
        );
    }

    /// The framing over TLS, as `wss:` runs it: a tungstenite server behind tokio-rustls, with
    /// a certificate from a test CA (`testdata/`).
    #[tokio::test]
    async fn frames_cross_tls_both_ways_and_the_close_arrives() {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use std::sync::Arc;

        let ca = CertificateDer::from_pem_slice(include_bytes!("testdata/ca.pem")).unwrap();
        let cert = CertificateDer::from_pem_slice(include_bytes!("testdata/server.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        // Echoes text messages; returns the close code it got.
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let mut ws = WebSocketStream::from_raw_socket(tls, Role::Server, None).await;
            while let Some(message) = ws.next().await {
                match message.unwrap() {
                    Message::Text(text) => ws.send(Message::Text(text)).await.unwrap(),
                    Message::Close(frame) => return frame.map(|f| u16::from(f.code)),
                    _ => {}
                }
            }
            None
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut ws = WebSocket::new(tls, Vec::new(), LIMIT);
        let texts: Vec<String> = [2, 1_400, 70_000, 300_000]
            .iter()
            .map(|&n| "é".repeat(n / 2))
            .collect();
        send(&mut ws, &texts).await;
        expect_texts(&mut ws, &texts).await;
        poll_fn(|cx| ws.poll_close(cx)).await.unwrap();
        let code = tokio::time::timeout(Duration::from_secs(5), server).await;
        assert_eq!(code.unwrap().unwrap(), Some(1000));
    }

    /// Frames of mixed sizes and kinds, flushed at uneven points, so that reads end anywhere:
    /// inside a header, inside a payload, between frames.
    #[tokio::test]
    async fn mixed_frames_split_anywhere_arrive_whole_and_in_order() {
        let (mut ws, mut server) = loopback().await;
        let sizes = [3usize, 10_050, 40, 0, 125, 126, 5_000, 1, 70_000, 300];
        let mut expected = Vec::new();
        for round in 0..30 {
            for (i, &size) in sizes.iter().enumerate() {
                let text: String = (0..size)
                    .map(|k| char::from(b'a' + ((k + i) % 26) as u8))
                    .collect();
                if (round + i) % 7 == 3 {
                    server.feed(Message::binary(vec![1u8; size])).await.unwrap();
                    expected.push(Frame::Binary);
                } else {
                    server.feed(Message::text(text.clone())).await.unwrap();
                    expected.push(Frame::Text(text.into()));
                }
                if (round * 3 + i) % 4 == 0 {
                    server.flush().await.unwrap();
                }
            }
        }
        server.flush().await.unwrap();
        for (n, want) in expected.iter().enumerate() {
            let got = next(&mut ws).await.unwrap().unwrap();
            assert!(&got == want, "frame {n}");
        }
        assert_eq!((ws.ready.len(), ws.partial.capacity()), (0, 0));
    }

    #[tokio::test]
    async fn a_burst_of_small_frames_is_read_in_order_and_then_released() {
        let (mut ws, mut server) = pair(1 << 20);
        let mut burst = Vec::new();
        for i in 0..500 {
            burst.extend(server_frame(
                true,
                OP_TEXT,
                format!("{{\"n\":{i}}}").as_bytes(),
            ));
        }
        server.write_all(&burst).await.unwrap();
        for i in 0..500 {
            let got = next(&mut ws).await.unwrap().unwrap();
            assert_eq!(got, Frame::Text(format!("{{\"n\":{i}}}").into()));
        }
        assert_eq!(
            (ws.ready.len(), ws.partial.capacity()),
            (0, 0),
            "the read-ahead is released once returned"
        );
    }

    #[tokio::test]
    async fn frames_arriving_a_byte_at_a_time_are_put_together() {
        let (mut ws, mut server) = pair(1 << 20);
        let text = "x".repeat(300);
        let mut bytes = server_frame(false, OP_TEXT, &text.as_bytes()[..100]);
        bytes.extend(server_frame(true, OP_PING, b"p"));
        bytes.extend(server_frame(true, OP_CONTINUE, &text.as_bytes()[100..]));
        let writer = tokio::spawn(async move {
            for byte in bytes {
                server.write_all(&[byte]).await.unwrap();
                tokio::task::yield_now().await;
            }
            server
        });
        // A control frame may come between a message's fragments.
        assert_eq!(next(&mut ws).await.unwrap().unwrap(), Frame::Ping);
        assert_eq!(
            next(&mut ws).await.unwrap().unwrap(),
            Frame::Text(text.as_str().into())
        );
        let mut server = writer.await.unwrap();
        // The ping was answered with its payload.
        assert_eq!(
            client_frames(&written(&mut server).await),
            [(OP_PONG, b"p".to_vec())]
        );
    }

    #[tokio::test]
    async fn a_close_frame_is_answered_with_its_code_and_ends_the_reads() {
        let (mut ws, mut server) = pair(1 << 20);
        let mut close = 1001u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"going away");
        server
            .write_all(&server_frame(true, OP_CLOSE, &close))
            .await
            .unwrap();
        server
            .write_all(&server_frame(true, OP_TEXT, b"after the close"))
            .await
            .unwrap();
        assert_eq!(
            next(&mut ws).await.unwrap().unwrap(),
            Frame::Close(Some((1001, "going away".into())))
        );
        assert!(
            next(&mut ws).await.is_none(),
            "nothing is read after a close"
        );
        assert_eq!(
            client_frames(&written(&mut server).await),
            [(OP_CLOSE, 1001u16.to_be_bytes().to_vec())]
        );
        // Closing now sends no second close frame.
        poll_fn(|cx| ws.poll_close(cx)).await.unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }

    #[tokio::test]
    async fn closing_sends_1000_after_the_queued_frames_then_shuts_the_socket() {
        let (mut ws, mut server) = pair(1 << 20);
        ws.queue_text("bye");
        ws.queue_ping();
        poll_fn(|cx| ws.poll_close(cx)).await.unwrap();
        let mut all = Vec::new();
        server.read_to_end(&mut all).await.unwrap();
        assert_eq!(
            client_frames(&all),
            [
                (OP_TEXT, b"bye".to_vec()),
                (OP_PING, Vec::new()),
                (OP_CLOSE, 1000u16.to_be_bytes().to_vec())
            ]
        );
    }

    #[tokio::test]
    async fn what_a_full_socket_does_not_take_is_kept_and_written_in_order() {
        // A 1 KiB pipe: a 100 KB batch goes out over many polls.
        let (mut ws, mut server) = pair(1 << 10);
        let texts: Vec<String> = (0..40).map(|i| format!("{i:04}").repeat(600)).collect();
        let expected = texts.clone();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            server.read_to_end(&mut all).await.unwrap();
            all
        });
        send(&mut ws, &texts).await;
        assert_eq!(ws.wr.capacity(), 0, "released once written");
        poll_fn(|cx| ws.poll_close(cx)).await.unwrap();
        let frames = client_frames(&reader.await.unwrap());
        assert_eq!(frames.len(), 41);
        for (frame, text) in frames.iter().zip(&expected) {
            assert_eq!(frame, &(OP_TEXT, text.as_bytes().to_vec()));
        }
    }

    #[tokio::test]
    async fn a_broken_rule_is_an_error_and_a_close_frame_with_its_code() {
        let long_ping = server_frame(true, OP_PING, &[0; 126]);
        let mut masked = server_frame(true, OP_TEXT, b"hi");
        masked[1] |= 0x80;
        let mut fragments_overlap = server_frame(false, OP_TEXT, b"a");
        fragments_overlap.extend(server_frame(true, OP_TEXT, b"b"));
        let mut too_large = vec![0x81, 127];
        too_large.extend_from_slice(&(LIMIT as u64 + 1).to_be_bytes());
        let mut fragments_too_large = server_frame(false, OP_TEXT, &vec![b'a'; LIMIT - 10]);
        fragments_too_large.extend(server_frame(true, OP_CONTINUE, &[b'a'; 11]));
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("masked", masked, 1002),
            ("reserved bit", vec![0xC1, 0x00], 1002),
            ("reserved opcode", vec![0x83, 0x00], 1002),
            ("fragmented ping", vec![0x09, 0x00], 1002),
            ("long ping", long_ping, 1002),
            (
                "lone continuation",
                server_frame(true, OP_CONTINUE, b"a"),
                1002,
            ),
            ("overlapping messages", fragments_overlap, 1002),
            ("one-byte close", server_frame(true, OP_CLOSE, &[3]), 1002),
            (
                "not UTF-8",
                server_frame(true, OP_TEXT, &[b'{', 0xFF, b'}']),
                1007,
            ),
            (
                "close reason not UTF-8",
                server_frame(true, OP_CLOSE, &[3, 232, 0xFF]),
                1007,
            ),
            // Refused from its header: the payload never comes.
            ("too large", too_large, 1009),
            ("fragments too large", fragments_too_large, 1009),
        ];
        for (case, bytes, code) in cases {
            let (mut ws, mut server) = pair(4 << 20);
            server.write_all(&bytes).await.unwrap();
            let error = match next(&mut ws).await {
                Some(Err(e)) => e,
                other => panic!("{case}: {other:?}"),
            };
            assert_eq!(error.close_code(), Some(code), "{case}: {error}");
            if let WsError::TooLarge { size, max } = error {
                assert_eq!((size, max), (LIMIT as u64 + 1, LIMIT), "{case}");
            }
            assert_eq!(
                client_frames(&written(&mut server).await),
                [(OP_CLOSE, code.to_be_bytes().to_vec())],
                "{case}"
            );
            assert!(next(&mut ws).await.is_none(), "{case}: nothing read after");
        }
    }

    #[tokio::test]
    async fn a_header_that_arrives_in_pieces_is_checked_once_whole() {
        let mut too_large = vec![0x81, 127];
        too_large.extend_from_slice(&u64::MAX.to_be_bytes());
        for (case, bytes, code) in [
            ("reserved bit", vec![0xC1, 0x05], 1002),
            ("masked", vec![0x81, 0x85], 1002),
            ("too large", too_large, 1009),
        ] {
            let (mut ws, mut server) = pair(1 << 10);
            server.write_all(&bytes[..1]).await.unwrap();
            // The first byte is read alone: no frame yet.
            let first =
                tokio::time::timeout(Duration::from_millis(50), poll_fn(|cx| ws.poll_next(cx)))
                    .await;
            assert!(first.is_err(), "{case}: {first:?}");
            server.write_all(&bytes[1..]).await.unwrap();
            let error = match next(&mut ws).await {
                Some(Err(e)) => e,
                other => panic!("{case}: {other:?}"),
            };
            assert_eq!(error.close_code(), Some(code), "{case}: {error}");
        }
    }

    #[tokio::test]
    async fn the_end_of_the_socket_is_the_end_of_the_frames() {
        let (mut ws, mut server) = pair(1 << 10);
        // Half a frame, then the end.
        server.write_all(&[0x81, 0x05, b'h', b'e']).await.unwrap();
        drop(server);
        assert!(next(&mut ws).await.is_none());
    }

    #[test]
    fn masking_is_the_same_at_every_length_and_undoes_itself() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut masked = data.clone();
            apply_mask(&mut masked, mask);
            let bytewise: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(masked, bytewise, "{len}");
            apply_mask(&mut masked, mask);
            assert_eq!(masked, data, "{len}");
        }
    }
}
