//! The OpenAI Realtime GA wire protocol: typed client and server events.
