//! Handoffs: letting one agent pass the conversation to another.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::model::ToolSpec;
use crate::{RealtimeAgent, RunContext};

type OnHandoff =
    Arc<dyn Fn(RunContext, String) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A transfer to another agent, offered to the model as a `transfer_to_<agent>` function.
///
/// When the model calls it, the session switches agents on the same connection: it reports a
/// handoff event, sends the new agent's instructions and tools, answers the call and asks for a
/// response. Voice and audio formats set by the run configuration stay as they are.
///
/// ```
/// use realtime_agents::{Handoff, RealtimeAgent};
/// let billing = RealtimeAgent::new("Billing Agent").instructions("Help with invoices.");
/// let triage = RealtimeAgent::new("Triage")
///     .handoff(Handoff::new(billing).description("Questions about invoices and payments."));
/// assert_eq!(triage.handoffs()[0].tool_name(), "transfer_to_billing_agent");
/// ```
#[derive(Clone)]
pub struct Handoff {
    agent: Arc<RealtimeAgent>,
    tool_name: String,
    description: String,
    enabled: bool,
    on_handoff: Option<OnHandoff>,
}

impl fmt::Debug for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoff")
            .field("agent", &self.agent.name())
            .field("tool_name", &self.tool_name)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// `transfer_to_` plus the agent name in snake case.
fn default_tool_name(agent: &str) -> String {
    let mut name = String::from("transfer_to_");
    let mut last_underscore = true;
    for c in agent.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
            last_underscore = false;
        } else if !last_underscore {
            name.push('_');
            last_underscore = true;
        }
    }
    name.trim_end_matches('_').to_owned()
}

impl Handoff {
    /// A handoff to `agent` with the default tool name and description.
    pub fn new(agent: impl Into<Arc<RealtimeAgent>>) -> Self {
        let agent = agent.into();
        let description = match agent.handoff_description_text() {
            Some(d) => format!(
                "Handoff to the {} agent to handle the request. {d}",
                agent.name()
            ),
            None => format!(
                "Handoff to the {} agent to handle the request.",
                agent.name()
            ),
        };
        Self {
            tool_name: default_tool_name(agent.name()),
            description,
            agent,
            enabled: true,
            on_handoff: None,
        }
    }

    /// Overrides the tool name.
    #[must_use]
    pub fn tool_name_override(mut self, name: impl Into<String>) -> Self {
        self.tool_name = name.into();
        self
    }

    /// Overrides the description the model sees.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Hides the handoff from the model when `false`.
    #[must_use]
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Runs `f` with the run context and the call's JSON arguments before switching; an `Err`
    /// keeps the current agent and is reported to the model.
    #[must_use]
    pub fn on_handoff<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(RunContext, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.on_handoff = Some(Arc::new(move |ctx, args| f(ctx, args).boxed()));
        self
    }

    /// The function name the model calls.
    pub fn tool_name(&self) -> &str {
        &self.tool_name
    }

    /// The agent this hands off to.
    pub fn agent(&self) -> &Arc<RealtimeAgent> {
        &self.agent
    }

    /// Whether the model is offered this handoff.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// How the model sees the handoff.
    pub fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.tool_name.clone(),
            description: self.description.clone(),
            parameters: serde_json::json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false}),
        }
    }

    pub(crate) fn invoke(
        &self,
        ctx: RunContext,
        arguments: String,
    ) -> BoxFuture<'static, Result<(), String>> {
        match &self.on_handoff {
            Some(f) => f(ctx, arguments),
            None => async { Ok(()) }.boxed(),
        }
    }
}

impl From<RealtimeAgent> for Handoff {
    fn from(agent: RealtimeAgent) -> Self {
        Self::new(agent)
    }
}

impl From<Arc<RealtimeAgent>> for Handoff {
    fn from(agent: Arc<RealtimeAgent>) -> Self {
        Self::new(agent)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tool_names_are_snake_case() {
        assert_eq!(
            super::default_tool_name("Billing Agent"),
            "transfer_to_billing_agent"
        );
        assert_eq!(super::default_tool_name("FAQ-bot!"), "transfer_to_faq_bot");
    }
}
