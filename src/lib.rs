#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
pub mod audio;
mod config;
pub mod cost;
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
mod run;
mod runner;
mod session;
pub mod simulator;
pub mod testing;
pub mod tool;
mod transport;
mod wake;

pub use agent::RealtimeAgent;
pub use config::{RealtimeRunConfig, ReconnectPolicy};
pub use error::{Error, Result, ServerError};
pub use guardrail::{GuardrailOutput, GuardrailResult, OutputGuardrail};
pub use handoff::Handoff;
pub use redact::Redactor;
pub use run::{OneShotResult, RunHandle, RunStatus, SessionOptions, SessionSnapshot};
pub use runner::RealtimeRunner;
pub use session::turn;
pub use session::{
    HandoffRecord, PlaybackTracker, RealtimeSession, RealtimeSessionEvent, RealtimeSessionHandle,
    ResponseEnd, ResponseRecord, ToolCallRecord, TurnCause, TurnResult, TurnStatus, TurnTimings,
    WallClockPlaybackTracker,
};
/// The token type taken by [`RealtimeRunConfig::cancellation_token`] and
/// [`SessionOptions::cancellation_token`] (from `tokio-util`).
pub use tokio_util::sync::CancellationToken;
pub use tool::{FunctionTool, RunContext, ToolContext};
