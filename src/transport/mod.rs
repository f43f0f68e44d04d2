//! The shared WebSocket transport: what every connection to a Realtime backend goes through,
//! from the opening handshake on, kept apart from any one backend's protocol.

pub(crate) mod handshake;
