//! The shared WebSocket transport: what every connection to a Realtime backend goes through,
//! from the opening handshake on, kept apart from any one backend's protocol.
//!
//! [`handshake`] upgrades the socket (with no secret in any log line), [`open`] adds the
//! credentials, socket options and timeout, [`websocket`] is the framing (RFC 6455), which
//! keeps no buffers while nothing is in flight, and [`connection`] is the connection itself,
//! generic over a backend's [`WireProtocol`]: write batching, read gating, the keep-alive,
//! close. A backend is a protocol (`src/model/<backend>/`) and a model that opens a
//! [`Connection`] with it.

mod connection;
pub(crate) mod handshake;
mod open;
mod websocket;

pub(crate) use connection::{Connection, Queues, WireProtocol};
pub(crate) use open::{Options, Secret, open, strip_query, transport_setters};
