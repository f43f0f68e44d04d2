//! Realtime voice agents over the OpenAI Realtime API or any backend.
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audio;
mod error;
pub mod protocol;
mod session;
pub mod simulator;

pub use error::{Error, Result, ServerError};
pub use session::{PlaybackTracker, WallClockPlaybackTracker};
