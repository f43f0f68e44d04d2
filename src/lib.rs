#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
pub mod audio;
mod error;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod gateway;
pub mod guardrail;
mod handoff;
pub mod hooks;
pub mod items;
pub mod model;
pub mod protocol;
pub mod redact;
mod runner;
mod session;
pub mod simulator;
pub mod tool;
mod wake;

pub use agent::RealtimeAgent;
pub use error::{Error, Result, ServerError};
pub use guardrail::{GuardrailOutput, GuardrailResult, OutputGuardrail};
pub use handoff::Handoff;
pub use redact::Redactor;
pub use runner::{RealtimeRunConfig, RealtimeRunner, ReconnectPolicy};
pub use session::{
    PlaybackTracker, RealtimeSession, RealtimeSessionEvent, RealtimeSessionHandle,
    WallClockPlaybackTracker,
};
/// The token type taken by [`RealtimeRunConfig::cancellation_token`] (from `tokio-util`).
pub use tokio_util::sync::CancellationToken;
pub use tool::{FunctionTool, RunContext, ToolContext};
