//! Agents: instructions, tools, handoffs and guardrails under a name.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::protocol::Voice;
use crate::{FunctionTool, Handoff, OutputGuardrail, RunContext};

type DynamicInstructions = Arc<dyn Fn(RunContext) -> BoxFuture<'static, String> + Send + Sync>;

#[derive(Clone)]
enum Instructions {
    Static(String),
    Dynamic(DynamicInstructions),
}

/// A voice agent: what it is told, what it can do, whom it can hand over to.
///
/// Built with chained setters; cheap to clone.
///
/// ```
/// use realtime_agents::{FunctionTool, RealtimeAgent};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct City { city: String }
///
/// let agent = RealtimeAgent::new("Assistant")
///     .instructions("You are a friendly voice assistant. Keep answers short.")
///     .tool(FunctionTool::new("get_weather", "Weather in a city.", |a: City| async move {
///         Ok::<_, String>(format!("Sunny in {}", a.city))
///     }))
///     .voice("marin");
/// assert_eq!(agent.name(), "Assistant");
/// assert_eq!(agent.tools().len(), 1);
/// ```
#[derive(Clone)]
pub struct RealtimeAgent {
    name: String,
    instructions: Instructions,
    tools: Vec<FunctionTool>,
    handoffs: Vec<Handoff>,
    output_guardrails: Vec<OutputGuardrail>,
    voice: Option<Voice>,
    handoff_description: Option<String>,
}

impl fmt::Debug for RealtimeAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeAgent")
            .field("name", &self.name)
            .field(
                "tools",
                &self
                    .tools
                    .iter()
                    .map(FunctionTool::name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "handoffs",
                &self
                    .handoffs
                    .iter()
                    .map(Handoff::tool_name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "output_guardrails",
                &self
                    .output_guardrails
                    .iter()
                    .map(OutputGuardrail::name)
                    .collect::<Vec<_>>(),
            )
            .field("voice", &self.voice)
            .finish_non_exhaustive()
    }
}

impl RealtimeAgent {
    /// An agent with a name and no instructions.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            instructions: Instructions::Static(String::new()),
            tools: Vec::new(),
            handoffs: Vec::new(),
            output_guardrails: Vec::new(),
            voice: None,
            handoff_description: None,
        }
    }

    /// Fixed instructions.
    #[must_use]
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Instructions::Static(instructions.into());
        self
    }

    /// Instructions computed from the run context each time the agent becomes active.
    ///
    /// ```
    /// use realtime_agents::{RealtimeAgent, RunContext};
    /// struct User { name: String }
    /// let agent = RealtimeAgent::new("Concierge").dynamic_instructions(|ctx: RunContext| async move {
    ///     let name = ctx.get::<User>().map(|u| u.name.clone()).unwrap_or_default();
    ///     format!("Greet {name} by name.")
    /// });
    /// # let _ = agent;
    /// ```
    #[must_use]
    pub fn dynamic_instructions<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(RunContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = String> + Send + 'static,
    {
        self.instructions = Instructions::Dynamic(Arc::new(move |ctx| f(ctx).boxed()));
        self
    }

    /// Adds a tool.
    #[must_use]
    pub fn tool(mut self, tool: FunctionTool) -> Self {
        self.tools.push(tool);
        self
    }

    /// Adds a handoff (an agent converts into one with default settings).
    #[must_use]
    pub fn handoff(mut self, handoff: impl Into<Handoff>) -> Self {
        self.handoffs.push(handoff.into());
        self
    }

    /// Adds an output guardrail.
    #[must_use]
    pub fn output_guardrail(mut self, guardrail: OutputGuardrail) -> Self {
        self.output_guardrails.push(guardrail);
        self
    }

    /// The voice for this agent. The API cannot change voice once the model has spoken, so it
    /// applies only if this agent is active before the session's first audio.
    #[must_use]
    pub fn voice(mut self, voice: impl Into<Voice>) -> Self {
        self.voice = Some(voice.into());
        self
    }

    /// Extra text for the description of handoffs to this agent.
    #[must_use]
    pub fn handoff_description(mut self, description: impl Into<String>) -> Self {
        self.handoff_description = Some(description.into());
        self
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The agent's tools.
    pub fn tools(&self) -> &[FunctionTool] {
        &self.tools
    }

    /// The agent's handoffs.
    pub fn handoffs(&self) -> &[Handoff] {
        &self.handoffs
    }

    /// The agent's output guardrails.
    pub fn output_guardrails(&self) -> &[OutputGuardrail] {
        &self.output_guardrails
    }

    /// The agent's own voice, if any.
    pub fn agent_voice(&self) -> Option<&Voice> {
        self.voice.as_ref()
    }

    /// The extra text for handoff descriptions, if any.
    pub fn handoff_description_text(&self) -> Option<&str> {
        self.handoff_description.as_deref()
    }

    /// The instructions for this run context.
    pub async fn resolve_instructions(&self, ctx: &RunContext) -> String {
        match &self.instructions {
            Instructions::Static(s) => s.clone(),
            Instructions::Dynamic(f) => f(ctx.clone()).await,
        }
    }
}
