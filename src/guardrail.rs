//! Output guardrails: checks on what the assistant says.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::RunContext;

/// The verdict of a guardrail.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GuardrailOutput {
    /// `true` stops the response.
    pub tripwire_triggered: bool,
    /// Why, for the application and the model's feedback message.
    pub info: serde_json::Value,
}

impl GuardrailOutput {
    /// The text is fine.
    pub fn pass() -> Self {
        Self {
            tripwire_triggered: false,
            info: serde_json::Value::Null,
        }
    }

    /// The text must be stopped, with a reason.
    pub fn trip(info: impl Into<serde_json::Value>) -> Self {
        Self {
            tripwire_triggered: true,
            info: info.into(),
        }
    }
}

/// The result of one guardrail run, as reported in
/// [`RealtimeSessionEvent::GuardrailTripped`](crate::RealtimeSessionEvent::GuardrailTripped).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GuardrailResult {
    /// The guardrail's name.
    pub name: String,
    /// Its verdict.
    pub output: GuardrailOutput,
}

type Check = Arc<dyn Fn(RunContext, String) -> BoxFuture<'static, GuardrailOutput> + Send + Sync>;

/// A check run on the assistant's transcript while it streams and once when the response ends.
///
/// When it trips, the session cancels the response, stops its audio, truncates what was heard
/// and tells the model why.
///
/// ```
/// use realtime_agents::{GuardrailOutput, OutputGuardrail};
/// let no_secrets = OutputGuardrail::new("no_secrets", |text: String| async move {
///     if text.contains("password") { GuardrailOutput::trip("mentions a password") } else { GuardrailOutput::pass() }
/// });
/// assert_eq!(no_secrets.name(), "no_secrets");
/// ```
#[derive(Clone)]
pub struct OutputGuardrail {
    name: String,
    check: Check,
}

impl fmt::Debug for OutputGuardrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputGuardrail")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OutputGuardrail {
    /// A guardrail from an async check of the text.
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = GuardrailOutput> + Send + 'static,
    {
        Self::with_context(name, move |_ctx, text| check(text))
    }

    /// A guardrail that also sees the run context.
    pub fn with_context<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn(RunContext, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = GuardrailOutput> + Send + 'static,
    {
        Self {
            name: name.into(),
            check: Arc::new(move |ctx, text| check(ctx, text).boxed()),
        }
    }

    /// The guardrail's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn run(&self, ctx: RunContext, text: String) -> BoxFuture<'static, GuardrailOutput> {
        (self.check)(ctx, text)
    }
}
