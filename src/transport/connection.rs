//! One WebSocket connection to a backend, generic over its wire protocol: the socket half that
//! every backend shares.
//!
//! A [`WireProtocol`] turns [`ModelCommand`]s into queued text frames and server text frames
//! into [`ModelEvent`]s; [`Connection`] owns the socket and does the rest: write batching (frames
//! queued together go out in one write and one flush), read gating (the socket is read only when
//! its read side woke, see [`Wakes`]), the keep-alive, binary and close frames, read and close
//! errors, and closing. Adding a backend means writing its protocol, not a connection.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::handshake::Socket;
use super::open::Options;
use super::websocket::{Frame, WsError};
use crate::model::{Capabilities, ModelCommand, ModelEvent, RealtimeConnection};
use crate::wake::Wakes;
use crate::{Error, Result};

/// What a protocol hands the connection: frames to write, events to return, and whether the
/// connection should end.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    frames: VecDeque<String>,
    frame_bytes: usize,
    /// Events not yet returned by `poll_event`.
    pub(crate) events: VecDeque<ModelEvent>,
    /// Set by the protocol to end the connection (`Some(None)`: as asked; `Some(Some(e))`: with
    /// an error), e.g. on a terminal server event.
    end: Option<Option<Error>>,
}

impl Queues {
    /// Queues a text frame.
    pub(crate) fn push_text(&mut self, text: String) {
        self.frame_bytes += text.len();
        self.frames.push_back(text);
    }

    /// Queues an event.
    pub(crate) fn event(&mut self, event: ModelEvent) {
        self.events.push_back(event);
    }

    /// Bytes of the frames waiting to be written.
    pub(crate) fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Gives back the queues' buffers while they are empty. They grow with the first frames
    /// and events and would otherwise stay with the connection for its whole life.
    fn release_idle(&mut self) {
        if self.events.is_empty() && self.events.capacity() != 0 {
            self.events = VecDeque::new();
        }
        if self.frames.is_empty() && self.frames.capacity() != 0 {
            self.frames = VecDeque::new();
        }
    }

    /// Room the frame queue holds (for tests of its release).
    #[cfg(test)]
    pub(crate) fn frames_capacity(&self) -> usize {
        self.frames.capacity()
    }

    /// Drops the frames waiting to be written.
    pub(crate) fn clear_frames(&mut self) {
        self.frames.clear();
        self.frame_bytes = 0;
    }

    /// Asks the connection to end after the events queued so far (`error: None` for an end the
    /// client asked for). The first request wins.
    pub(crate) fn end(&mut self, error: Option<Error>) {
        if self.end.is_none() {
            self.end = Some(error);
        }
    }
}

/// A backend's wire protocol: the part of a connection that knows its messages.
///
/// Everything is synchronous and socket-free, so that a protocol is tested and benchmarked
/// without a socket.
pub(crate) trait WireProtocol: Send + 'static {
    /// Turns a command into frames (and, for commands the server never echoes, events).
    fn command(&mut self, command: ModelCommand, q: &mut Queues);

    /// Handles one text frame from the server.
    fn on_text(&mut self, text: Utf8Bytes, q: &mut Queues);

    /// Called before queued frames are written: a protocol that holds a frame back until the
    /// last moment (to fold later commands into it) queues it now.
    #[inline]
    fn before_write(&mut self, _q: &mut Queues) {}

    /// The application closes the connection: queue what the server should get first. Returns
    /// `true` to wait (reading) until the protocol calls [`Queues::end`] before the close frame
    /// goes out, as a protocol with a closing handshake of its own does; the session bounds
    /// the wait.
    fn on_close(&mut self, _q: &mut Queues) -> bool {
        false
    }

    /// What the backend supports (the connection's
    /// [`capabilities`](RealtimeConnection::capabilities)).
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

/// Keep-alive: a ping every `interval`; when one goes unanswered for `timeout`, the server is
/// reported gone.
///
/// Any frame received is proof of life, not only a pong. The deadline is checked only after
/// the socket was read dry: when the session was busy waiting for the application, the frames
/// (and the pong) that arrived meanwhile are still in the socket's buffers, and are read first.
/// A frozen server is thus reported at most `interval + timeout` after its last frame.
///
/// One timer serves both: it is set for the next ping, and while a ping is unanswered for its
/// deadline. The connection polls it only when it fired (its own wake-up source) or was just
/// set, not on every pass: a busy connection passes once per frame.
struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// When the unanswered ping went out (no frame since).
    sent: Option<tokio::time::Instant>,
    /// The timer fired or was set again: poll it (to act, or to register its waker).
    due: bool,
}

/// What the keep-alive wants done.
enum KeepAliveStep {
    /// Nothing until its timer fires.
    Idle,
    /// Send a ping.
    Ping,
    /// A ping went unanswered for the timeout.
    Expired,
}

impl KeepAlive {
    fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            timer: Box::pin(tokio::time::sleep(interval)),
            sent: None,
            due: true,
        }
    }

    /// A frame arrived: the server is alive. The next ping is due `interval` after the last.
    fn alive(&mut self) {
        if let Some(sent) = self.sent.take() {
            self.timer.as_mut().reset(sent + self.interval);
            self.due = true;
        }
    }

    /// `check`: the socket was read dry after an expiry; judge the server even if the timer
    /// did not wake the connection since.
    fn poll(&mut self, cx: &mut Context<'_>, check: bool) -> KeepAliveStep {
        if !self.due && !check {
            return KeepAliveStep::Idle;
        }
        self.due = false;
        if self.timer.as_mut().poll(cx).is_pending() {
            return KeepAliveStep::Idle;
        }
        if self.sent.is_some() {
            return KeepAliveStep::Expired;
        }
        let now = tokio::time::Instant::now();
        self.sent = Some(now);
        self.timer.as_mut().reset(now + self.timeout);
        // Registers the deadline's waker at the next poll.
        self.due = true;
        KeepAliveStep::Ping
    }
}

/// One connection: a socket and a protocol.
pub(crate) struct Connection<P> {
    ws: Socket,
    pub(crate) proto: P,
    pub(crate) q: Queues,
    keepalive: Option<KeepAlive>,
    max_send_queue: usize,
    /// Frames were taken for writing but the socket has not taken (or flushed) all of them.
    flush_pending: bool,
    /// A response ended or the session was (re)configured: once nothing waits, the session is
    /// between turns, and the queues give their buffers back.
    between_turns: bool,
    /// Whether the socket's read side woke since reading last came up empty: only then is a
    /// read tried (an empty try still costs a system call, and the session polls the
    /// connection after every frame it sends). And whether the keep-alive's timer fired.
    wakes: Wakes<2>,
    closing: bool,
    /// Closing waits for the protocol's own closing handshake to end.
    close_wait: bool,
    finished: bool,
}

/// The socket's read side, a source of [`Connection::wakes`].
const READ: u32 = 1;
/// The keep-alive's timer, the other source of [`Connection::wakes`].
const TIMER: u32 = 1 << 1;

impl<P: WireProtocol> Connection<P> {
    pub(crate) fn new(ws: Socket, proto: P, options: &Options) -> Self {
        let keepalive = options
            .ping_interval
            .map(|every| KeepAlive::new(every, options.ping_timeout));
        Self {
            ws,
            proto,
            q: Queues::default(),
            keepalive,
            max_send_queue: options.max_send_queue,
            flush_pending: false,
            between_turns: false,
            wakes: Wakes::new(),
            closing: false,
            close_wait: false,
            finished: false,
        }
    }

    fn finish(&mut self, error: Option<Error>) {
        if !self.finished {
            self.finished = true;
            self.q.clear_frames();
            self.q.events.push_back(ModelEvent::Closed { error });
        }
    }

    /// Writes queued frames until the socket pushes back; all frames queued together go out
    /// in one write.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        self.proto.before_write(&mut self.q);
        let q = &mut self.q;
        let polled = self.ws.poll_send(cx, || {
            let text = q.frames.pop_front()?;
            q.frame_bytes = q.frame_bytes.saturating_sub(text.len());
            Some(text)
        });
        self.flush_pending = polled.is_pending();
        match polled {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Nothing to read or return: between turns, the queues' buffers go back (the next turn
    /// makes them again, once per turn rather than once per frame).
    fn idle(&mut self) -> Poll<Option<ModelEvent>> {
        if std::mem::take(&mut self.between_turns) {
            self.q.release_idle();
        }
        Poll::Pending
    }

    /// Handles one frame (or the end of the stream) read from the socket.
    fn on_frame(&mut self, polled: Option<Result<Frame, WsError>>) {
        match polled {
            Some(Ok(frame)) => match frame {
                Frame::Text(text) => {
                    self.proto.on_text(text, &mut self.q);
                    if let Some(error) = self.q.end.take() {
                        self.finish(error);
                    }
                }
                Frame::Close(frame) => {
                    let error = (!self.closing).then(|| close_error(frame));
                    self.finish(error);
                }
                Frame::Binary => self.q.events.push_back(ModelEvent::Error(Error::Protocol(
                    "unexpected binary frame from the server".into(),
                ))),
                Frame::Ping | Frame::Pong => {}
            },
            Some(Err(e)) => {
                let error = (!self.closing).then(|| read_error(e));
                self.finish(error);
            }
            None => {
                let error = (!self.closing).then(|| Error::Closed {
                    code: None,
                    reason: "connection dropped without a close frame".into(),
                });
                self.finish(error);
            }
        }
    }
}

/// What a close frame (or its absence) means for the session.
fn close_error(frame: Option<(u16, String)>) -> Error {
    match frame {
        Some((code, reason)) => Error::Closed {
            code: Some(code),
            reason,
        },
        None => Error::Closed {
            code: None,
            reason: "closed by the server".into(),
        },
    }
}

/// What a failed read means for the session (the connection is unusable after any of them).
fn read_error(e: WsError) -> Error {
    match e {
        WsError::TooLarge { size, max } => Error::Protocol(format!(
            "server message too large: {size} bytes, over the limit of {max} bytes \
             (max_frame_size); connection closed"
        )),
        WsError::Utf8 => {
            Error::Protocol("server text message is not valid UTF-8; connection closed".into())
        }
        WsError::Protocol(why) => Error::Protocol(format!(
            "server broke the WebSocket protocol ({why}); connection closed"
        )),
        WsError::Io(e) => Error::Closed {
            code: None,
            reason: format!("connection lost: {e}"),
        },
    }
}

impl<P: WireProtocol> RealtimeConnection for Connection<P> {
    fn send(&mut self, command: ModelCommand) -> Result<()> {
        if self.finished || self.closing {
            return Err(Error::SessionClosed);
        }
        if self.q.frame_bytes > self.max_send_queue {
            return Err(Error::Protocol(format!(
                "send queue over {} bytes: the server is not reading",
                self.max_send_queue
            )));
        }
        self.proto.command(command, &mut self.q);
        Ok(())
    }

    fn has_room(&self) -> bool {
        self.q.frame_bytes <= self.max_send_queue
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ModelEvent>> {
        // The keep-alive's deadline passed: read the socket dry before judging the server.
        let mut check = false;
        loop {
            if let Some(event) = self.q.events.pop_front() {
                if matches!(
                    event,
                    ModelEvent::ResponseDone { .. } | ModelEvent::SessionUpdated { .. }
                ) {
                    self.between_turns = true;
                }
                return Poll::Ready(Some(event));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            if let Err(e) = self.poll_write(cx) {
                self.finish(Some(Error::Protocol(format!("write failed: {e}"))));
                continue;
            }
            let ready = self.wakes.take(cx);
            if let Some(keepalive) = &mut self.keepalive {
                keepalive.due |= ready & TIMER != 0;
            }
            let polled = if ready & READ != 0 || check {
                self.ws.poll_next(&mut self.wakes.context(READ))
            } else {
                Poll::Pending
            };
            if polled.is_ready() {
                // There may be more: read again on the next poll.
                self.wakes.mark(READ);
                if let Some(keepalive) = &mut self.keepalive {
                    keepalive.alive();
                }
                check = false;
            }
            let Poll::Ready(polled) = polled else {
                // Nothing more to read: only the keep-alive's timer is left.
                let Some(keepalive) = &mut self.keepalive else {
                    return self.idle();
                };
                match keepalive.poll(&mut self.wakes.context(TIMER), check) {
                    KeepAliveStep::Idle => return self.idle(),
                    KeepAliveStep::Ping => {
                        // A ping is due every `interval`, busy or not: a session that went
                        // quiet has no use for its queues' buffers any more.
                        self.q.release_idle();
                        self.ws.queue_ping();
                    }
                    KeepAliveStep::Expired if check => {
                        let timeout = keepalive.timeout;
                        self.finish(Some(Error::Timeout(format!(
                            "the server sent nothing for {timeout:?} after a ping"
                        ))));
                    }
                    KeepAliveStep::Expired => check = true,
                }
                continue;
            };
            self.on_frame(polled);
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.proto.capabilities()
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.closing {
            self.closing = true;
            if !self.finished {
                self.close_wait = self.proto.on_close(&mut self.q);
            }
        }
        if self.finished {
            return Poll::Ready(());
        }
        if !self.q.frames.is_empty() || (self.close_wait && self.flush_pending) {
            if self.poll_write(cx).is_err() {
                return Poll::Ready(());
            }
            if !self.q.frames.is_empty() {
                return Poll::Pending;
            }
        }
        // The protocol's closing handshake: read until the protocol ends the connection.
        // Events are no longer wanted (the session reports the close itself).
        while self.close_wait {
            if self.q.end.take().is_some() {
                self.close_wait = false;
                break;
            }
            match self.ws.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(Frame::Text(text)))) => {
                    self.proto.on_text(text, &mut self.q);
                    self.q.events.clear();
                }
                Poll::Ready(other) => {
                    self.on_frame(other);
                    self.q.events.clear();
                    if self.finished {
                        return Poll::Ready(());
                    }
                }
            }
        }
        match self.ws.poll_close(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                self.finished = true;
                Poll::Ready(())
            }
        }
    }
}
