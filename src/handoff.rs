//! Handoffs: letting one agent pass the conversation to another.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::ToolSpec;
use crate::tool::{EnabledIf, strict_schema};
use crate::{RealtimeAgent, RunContext};

type OnHandoff =
    Arc<dyn Fn(RunContext, String) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

type MakeAgent = Arc<dyn Fn() -> Arc<RealtimeAgent> + Send + Sync>;

/// Where a handoff goes: an agent, or a function that builds it when the handoff happens.
#[derive(Clone)]
enum Target {
    Agent(Arc<RealtimeAgent>),
    Lazy(MakeAgent),
}

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
///
/// Agents that hand off to each other (a cycle) use [`Handoff::lazy`]: the target is built
/// only when the handoff happens.
///
/// ```
/// use realtime_agents::{Handoff, RealtimeAgent};
/// fn triage() -> RealtimeAgent {
///     RealtimeAgent::new("Triage").handoff(Handoff::lazy("Billing", billing))
/// }
/// fn billing() -> RealtimeAgent {
///     RealtimeAgent::new("Billing").handoff(Handoff::lazy("Triage", triage))
/// }
/// assert_eq!(triage().handoffs()[0].tool_name(), "transfer_to_billing");
/// assert_eq!(billing().handoffs()[0].agent_name(), "Triage");
/// ```
#[derive(Clone)]
pub struct Handoff {
    target: Target,
    agent_name: String,
    tool_name: String,
    description: String,
    parameters: Value,
    enabled: bool,
    enabled_if: Option<EnabledIf>,
    on_handoff: Option<OnHandoff>,
}

impl fmt::Debug for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoff")
            .field("agent", &self.agent_name)
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

fn default_description(agent: &str, extra: Option<&str>) -> String {
    match extra {
        Some(d) => format!("Handoff to the {agent} agent to handle the request. {d}"),
        None => format!("Handoff to the {agent} agent to handle the request."),
    }
}

impl Handoff {
    fn with_target(target: Target, agent_name: String, description: String) -> Self {
        Self {
            tool_name: default_tool_name(&agent_name),
            description,
            target,
            agent_name,
            parameters: strict_schema(serde_json::json!({"type": "object", "properties": {}})),
            enabled: true,
            enabled_if: None,
            on_handoff: None,
        }
    }

    /// A handoff to `agent`, named `transfer_to_<agent name in snake case>`, described with the
    /// agent's [`handoff_description`](RealtimeAgent::handoff_description).
    pub fn new(agent: impl Into<Arc<RealtimeAgent>>) -> Self {
        let agent = agent.into();
        let description = default_description(agent.name(), agent.handoff_description_text());
        let name = agent.name().to_owned();
        Self::with_target(Target::Agent(agent), name, description)
    }

    /// A handoff to the agent named `agent_name` that `make` builds when the handoff happens,
    /// so that agents can hand off to each other. `make` must build an agent with that name.
    pub fn lazy<F, A>(agent_name: impl Into<String>, make: F) -> Self
    where
        F: Fn() -> A + Send + Sync + 'static,
        A: Into<Arc<RealtimeAgent>>,
    {
        let agent_name = agent_name.into();
        let description = default_description(&agent_name, None);
        Self::with_target(
            Target::Lazy(Arc::new(move || make().into())),
            agent_name,
            description,
        )
    }

    /// Overrides the function name the model sees.
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

    /// Offers or hides the handoff (hidden handoffs are not sent to the model).
    #[must_use]
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Offers the handoff only while `check` holds for the run context and the agent offering
    /// it. Evaluated when settings are sent and again when the model calls it.
    ///
    /// ```
    /// use realtime_agents::{Handoff, RealtimeAgent, RunContext};
    /// struct Hours { open: bool }
    /// let sales = RealtimeAgent::new("Sales");
    /// let handoff = Handoff::new(sales)
    ///     .enabled_if(|ctx: &RunContext, _from| ctx.get::<Hours>().is_some_and(|h| h.open));
    /// assert!(handoff.is_enabled(&RunContext::new(Hours { open: true }), &RealtimeAgent::new("Triage")));
    /// assert!(!handoff.is_enabled(&RunContext::new(Hours { open: false }), &RealtimeAgent::new("Triage")));
    /// ```
    #[must_use]
    pub fn enabled_if<F>(mut self, check: F) -> Self
    where
        F: Fn(&RunContext, &RealtimeAgent) -> bool + Send + Sync + 'static,
    {
        self.enabled_if = Some(Arc::new(check));
        self
    }

    /// Runs `f` with the raw JSON arguments when the handoff happens. An `Err` cancels the
    /// handoff: the current agent stays and the model gets the error as the call's output.
    #[must_use]
    pub fn on_handoff<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(RunContext, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.on_handoff = Some(Arc::new(move |ctx, args| f(ctx, args).boxed()));
        self
    }

    /// Asks the model for a typed input with the handoff (its JSON schema comes from `T`, made
    /// strict) and runs `f` with it when the handoff happens. Arguments that do not parse as
    /// `T`, or an `Err` from `f`, cancel the handoff: the current agent stays and the model
    /// gets the error as the call's output.
    ///
    /// ```
    /// use realtime_agents::{Handoff, RealtimeAgent, RunContext};
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Escalation { reason: String }
    ///
    /// let handoff = Handoff::new(RealtimeAgent::new("Supervisor"))
    ///     .on_handoff_with_input(|_ctx: RunContext, input: Escalation| async move {
    ///         println!("escalated: {}", input.reason);
    ///         Ok(())
    ///     });
    /// assert_eq!(handoff.spec().parameters["required"], serde_json::json!(["reason"]));
    /// ```
    #[must_use]
    pub fn on_handoff_with_input<T, F, Fut>(mut self, f: F) -> Self
    where
        T: DeserializeOwned + JsonSchema + Send + 'static,
        F: Fn(RunContext, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.parameters = strict_schema(schemars::schema_for!(T).to_value());
        let tool_name = self.tool_name.clone();
        self.on_handoff = Some(Arc::new(
            move |ctx, args: String| match serde_json::from_str::<T>(&args) {
                Ok(input) => f(ctx, input).boxed(),
                Err(e) => {
                    let message = format!("invalid input for `{tool_name}`: {e}");
                    async move { Err(message) }.boxed()
                }
            },
        ));
        self
    }

    /// The function name the model sees.
    pub fn tool_name(&self) -> &str {
        &self.tool_name
    }

    /// The name of the agent this handoff goes to.
    pub fn agent_name(&self) -> &str {
        &self.agent_name
    }

    /// The agent this handoff goes to (built now for [`Handoff::lazy`]).
    pub fn resolve(&self) -> Arc<RealtimeAgent> {
        match &self.target {
            Target::Agent(agent) => agent.clone(),
            Target::Lazy(make) => make(),
        }
    }

    /// Whether the handoff is offered by `from` in this run.
    pub fn is_enabled(&self, ctx: &RunContext, from: &RealtimeAgent) -> bool {
        self.enabled
            && self
                .enabled_if
                .as_ref()
                .is_none_or(|check| check(ctx, from))
    }

    /// How the model sees the handoff.
    pub fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.tool_name.clone(),
            description: self.description.clone(),
            parameters: self.parameters.clone(),
        }
    }

    /// Runs the `on_handoff` callback (if any).
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
    use super::*;

    #[test]
    fn tool_names_are_snake_case() {
        assert_eq!(
            default_tool_name("Billing Agent"),
            "transfer_to_billing_agent"
        );
        assert_eq!(default_tool_name("FAQ-bot!"), "transfer_to_faq_bot");
    }

    #[test]
    fn default_parameters_are_an_empty_strict_object() {
        let spec = Handoff::new(RealtimeAgent::new("X")).spec();
        assert_eq!(
            spec.parameters,
            serde_json::json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false})
        );
    }

    #[tokio::test]
    async fn typed_input_is_validated() {
        #[derive(serde::Deserialize, JsonSchema)]
        struct Input {
            reason: String,
        }
        let handoff = Handoff::new(RealtimeAgent::new("X")).on_handoff_with_input(
            |_ctx, input: Input| async move {
                if input.reason.is_empty() {
                    Err("empty reason".to_owned())
                } else {
                    Ok(())
                }
            },
        );
        let ctx = RunContext::new(());
        assert_eq!(
            handoff
                .invoke(ctx.clone(), r#"{"reason":"refund"}"#.into())
                .await,
            Ok(())
        );
        let err = handoff
            .invoke(ctx.clone(), r#"{"why":1}"#.into())
            .await
            .unwrap_err();
        assert!(err.contains("invalid input for `transfer_to_x`"), "{err}");
        assert_eq!(
            handoff.invoke(ctx, r#"{"reason":""}"#.into()).await,
            Err("empty reason".into())
        );
    }
}
