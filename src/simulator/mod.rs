//! An OpenAI-Realtime-compatible server on loopback, for offline development and tests.
