//! Lifecycle hooks: observe a session at every step, and veto where that makes sense.
//!
//! Implement [`RealtimeHooks`] (every method has a default that does nothing) and install it
//! with [`RealtimeRunConfig::hooks`](crate::RealtimeRunConfig::hooks). The session calls:
//!
//! | hook | when | a [`HookDecision::Reject`] does |
//! |---|---|---|
//! | [`on_agent_start`](RealtimeHooks::on_agent_start) | a response starts | – |
//! | [`on_agent_end`](RealtimeHooks::on_agent_end) | a response ends | – |
//! | [`before_tool`](RealtimeHooks::before_tool) | before a function tool runs (after approval) | the tool does not run; the message is its output |
//! | [`after_tool`](RealtimeHooks::after_tool) | after it ran, before its output is sent | the message replaces the output |
//! | [`on_handoff`](RealtimeHooks::on_handoff) | before the session switches agents | the agent stays; the message is the transfer's output |
//! | [`before_send`](RealtimeHooks::before_send) | before each command goes to the model | the command is not sent |
//! | [`on_model_event`](RealtimeHooks::on_model_event) | for each event from the model, before the session handles it | the session ignores the event |
//!
//! The synchronous hooks run on the session task: keep them quick (spawn slow work).
//! `before_tool` and `after_tool` are async and run in the tool's own task.
//!
//! ```
//! use futures::future::BoxFuture;
//! use realtime_agents::hooks::{HookDecision, RealtimeHooks};
//! use realtime_agents::{RealtimeAgent, RealtimeRunConfig, RunContext, ToolContext};
//!
//! #[derive(Debug)]
//! struct Audit;
//!
//! impl RealtimeHooks for Audit {
//!     fn on_agent_start(&self, _ctx: &RunContext, agent: &RealtimeAgent) {
//!         println!("{} is speaking", agent.name());
//!     }
//!     fn before_tool<'a>(&'a self, tool: &'a ToolContext) -> BoxFuture<'a, HookDecision> {
//!         Box::pin(async move {
//!             if tool.tool_name == "delete_account" {
//!                 HookDecision::reject("Deleting accounts is not allowed on this line.")
//!             } else {
//!                 HookDecision::Continue
//!             }
//!         })
//!     }
//! }
//!
//! let config = RealtimeRunConfig::new().hooks(Audit);
//! ```

use futures::future::BoxFuture;

use crate::model::{ModelCommand, ModelEvent};
use crate::{RealtimeAgent, RunContext, ToolContext};

/// What a hook decided.
///
/// ```
/// use realtime_agents::hooks::HookDecision;
/// assert_eq!(HookDecision::reject("no"), HookDecision::Reject("no".into()));
/// assert!(HookDecision::Continue.is_continue());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HookDecision {
    /// Go on as usual.
    #[default]
    Continue,
    /// Stop this step; the message explains why (see the table in [`crate::hooks`]).
    Reject(String),
}

impl HookDecision {
    /// A rejection with this message.
    pub fn reject(message: impl Into<String>) -> Self {
        Self::Reject(message.into())
    }

    /// Whether the step goes on.
    pub fn is_continue(&self) -> bool {
        matches!(self, Self::Continue)
    }
}

/// Session lifecycle hooks. Every method has a default that does nothing; see [`crate::hooks`].
pub trait RealtimeHooks: Send + Sync + std::fmt::Debug + 'static {
    /// A response by `agent` started.
    fn on_agent_start(&self, ctx: &RunContext, agent: &RealtimeAgent) {
        let _ = (ctx, agent);
    }

    /// A response by `agent` ended (completed, cancelled or failed).
    fn on_agent_end(&self, ctx: &RunContext, agent: &RealtimeAgent) {
        let _ = (ctx, agent);
    }

    /// A function tool is about to run. Rejecting skips it and sends the message as its output.
    fn before_tool<'a>(&'a self, tool: &'a ToolContext) -> BoxFuture<'a, HookDecision> {
        let _ = tool;
        Box::pin(async { HookDecision::Continue })
    }

    /// A function tool ran (`result` is its output or error text). Rejecting replaces the
    /// output with the message.
    fn after_tool<'a>(
        &'a self,
        tool: &'a ToolContext,
        result: &'a Result<String, String>,
    ) -> BoxFuture<'a, HookDecision> {
        let _ = (tool, result);
        Box::pin(async { HookDecision::Continue })
    }

    /// The model asked to hand off from `from` to `to`. Rejecting keeps `from` and sends the
    /// message as the transfer call's output.
    fn on_handoff(
        &self,
        ctx: &RunContext,
        from: &RealtimeAgent,
        to: &RealtimeAgent,
    ) -> HookDecision {
        let _ = (ctx, from, to);
        HookDecision::Continue
    }

    /// A command is about to be sent to the model. Rejecting drops it.
    fn before_send(&self, command: &ModelCommand) -> HookDecision {
        let _ = command;
        HookDecision::Continue
    }

    /// An event arrived from the model. Rejecting makes the session ignore it.
    fn on_model_event(&self, event: &ModelEvent) -> HookDecision {
        let _ = event;
        HookDecision::Continue
    }
}

/// Shared hooks: install an `Arc` and keep a clone to read what they recorded.
impl<T: RealtimeHooks + ?Sized> RealtimeHooks for std::sync::Arc<T> {
    fn on_agent_start(&self, ctx: &RunContext, agent: &RealtimeAgent) {
        (**self).on_agent_start(ctx, agent)
    }
    fn on_agent_end(&self, ctx: &RunContext, agent: &RealtimeAgent) {
        (**self).on_agent_end(ctx, agent)
    }
    fn before_tool<'a>(&'a self, tool: &'a ToolContext) -> BoxFuture<'a, HookDecision> {
        (**self).before_tool(tool)
    }
    fn after_tool<'a>(
        &'a self,
        tool: &'a ToolContext,
        result: &'a Result<String, String>,
    ) -> BoxFuture<'a, HookDecision> {
        (**self).after_tool(tool, result)
    }
    fn on_handoff(
        &self,
        ctx: &RunContext,
        from: &RealtimeAgent,
        to: &RealtimeAgent,
    ) -> HookDecision {
        (**self).on_handoff(ctx, from, to)
    }
    fn before_send(&self, command: &ModelCommand) -> HookDecision {
        (**self).before_send(command)
    }
    fn on_model_event(&self, event: &ModelEvent) -> HookDecision {
        (**self).on_model_event(event)
    }
}
