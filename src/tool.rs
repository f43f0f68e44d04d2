//! Function tools: typed Rust functions the model can call.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::RealtimeAgent;
use crate::items::RealtimeItem;
use crate::model::ToolSpec;

/// The application state handed to [`RealtimeRunner::run`](crate::RealtimeRunner::run),
/// shared with tools, guardrails and dynamic instructions.
///
/// ```
/// use realtime_agents::RunContext;
/// struct Db { name: &'static str }
/// let ctx = RunContext::new(Db { name: "orders" });
/// assert_eq!(ctx.get::<Db>().map(|db| db.name), Some("orders"));
/// assert!(ctx.get::<String>().is_none());
/// ```
#[derive(Clone)]
pub struct RunContext(Arc<dyn Any + Send + Sync>);

impl RunContext {
    /// Wraps the application's state.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Arc::new(value))
    }

    /// The state, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for RunContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunContext")
    }
}

/// What a tool knows about the call it is answering.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolContext {
    /// The application state given to the runner.
    pub context: RunContext,
    /// The call id the model chose.
    pub call_id: String,
    /// The tool's name.
    pub tool_name: String,
    /// The raw JSON arguments.
    pub arguments: String,
    /// The agent that owns the tool.
    pub agent_name: String,
    /// The conversation as it was when the model made the call.
    pub history: Arc<[RealtimeItem]>,
}

/// A condition on the run context and the agent offering a tool or handoff.
pub(crate) type EnabledIf = Arc<dyn Fn(&RunContext, &RealtimeAgent) -> bool + Send + Sync>;

type ApprovalIf = Arc<dyn Fn(&ToolContext, &Value) -> bool + Send + Sync>;

#[derive(Clone)]
enum Approval {
    Never,
    Always,
    When(ApprovalIf),
}

type Handler =
    Arc<dyn Fn(ToolContext, Value) -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// A function the model can call.
///
/// Arguments are a `Deserialize + JsonSchema` type: the schema sent to the model is generated
/// from it (and made strict-mode compatible), and the model's JSON is parsed into it before
/// your function runs. The output is any `Serialize` value (a `String` is sent as is, anything
/// else as JSON). An `Err` is reported to the model as an error output and to the application
/// as an event; the session goes on.
///
/// ```
/// use realtime_agents::FunctionTool;
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Weather {
///     /// City name.
///     city: String,
/// }
///
/// let tool = FunctionTool::new("get_weather", "Current weather in a city.", |args: Weather| async move {
///     Ok::<_, String>(format!("Sunny, 22 degrees in {}", args.city))
/// });
/// assert_eq!(tool.name(), "get_weather");
/// assert_eq!(tool.spec().parameters["required"][0], "city");
/// ```
#[derive(Clone)]
pub struct FunctionTool {
    name: String,
    description: String,
    parameters: Value,
    timeout: Option<Duration>,
    handler: Handler,
    approval: Approval,
    enabled: Option<EnabledIf>,
    background: bool,
}

impl fmt::Debug for FunctionTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionTool")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("background", &self.background)
            .finish_non_exhaustive()
    }
}

impl FunctionTool {
    /// A tool from an async function of its arguments.
    pub fn new<A, F, Fut, O, E>(
        name: impl Into<String>,
        description: impl Into<String>,
        f: F,
    ) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        O: Serialize,
        E: fmt::Display,
    {
        Self::with_context(name, description, move |_ctx: ToolContext, args: A| f(args))
    }

    /// A tool from an async function of the call's [`ToolContext`] and its arguments.
    ///
    /// ```
    /// use realtime_agents::{FunctionTool, ToolContext};
    /// use schemars::JsonSchema;
    /// use serde::Deserialize;
    ///
    /// struct Orders(Vec<&'static str>);
    /// #[derive(Deserialize, JsonSchema)]
    /// struct Lookup { order: u32 }
    ///
    /// let tool = FunctionTool::with_context("order_status", "Status of an order.", |ctx: ToolContext, a: Lookup| async move {
    ///     let orders = ctx.context.get::<Orders>().ok_or("no order database")?;
    ///     orders.0.get(a.order as usize).copied().ok_or("unknown order")
    /// });
    /// # let _ = tool;
    /// ```
    pub fn with_context<A, F, Fut, O, E>(
        name: impl Into<String>,
        description: impl Into<String>,
        f: F,
    ) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        F: Fn(ToolContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        O: Serialize,
        E: fmt::Display,
    {
        let name = name.into();
        let tool_name = name.clone();
        let handler: Handler = Arc::new(move |ctx, args| match serde_json::from_value::<A>(args) {
            Err(e) => {
                let message = format!("invalid arguments for `{tool_name}`: {e}");
                async move { Err(message) }.boxed()
            }
            Ok(args) => {
                let fut = f(ctx, args);
                async move {
                    match fut.await {
                        Ok(output) => Ok(output_text(&output)),
                        Err(e) => Err(e.to_string()),
                    }
                }
                .boxed()
            }
        });
        Self {
            name,
            description: description.into(),
            parameters: strict_schema(schemars::schema_for!(A).to_value()),
            timeout: None,
            handler,
            approval: Approval::Never,
            enabled: None,
            background: false,
        }
    }

    /// A tool with a hand-written JSON schema whose function receives the raw JSON arguments.
    ///
    /// ```
    /// use realtime_agents::FunctionTool;
    /// let echo = FunctionTool::from_json_schema(
    ///     "echo", "Repeats the text.",
    ///     serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
    ///     |args: serde_json::Value| async move { Ok::<_, String>(args["text"].clone()) },
    /// );
    /// assert_eq!(echo.spec().parameters["additionalProperties"], false);
    /// ```
    pub fn from_json_schema<F, Fut, O, E>(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
        f: F,
    ) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        O: Serialize,
        E: fmt::Display,
    {
        let handler: Handler = Arc::new(move |_ctx, args| {
            let fut = f(args);
            async move {
                fut.await
                    .map(|o| output_text(&o))
                    .map_err(|e| e.to_string())
            }
            .boxed()
        });
        Self {
            name: name.into(),
            description: description.into(),
            parameters: strict_schema(parameters),
            timeout: None,
            handler,
            approval: Approval::Never,
            enabled: None,
            background: false,
        }
    }

    /// Fails the call with a timeout error if it runs longer than `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requires (or not) the application's approval before every call: the session emits
    /// [`ToolApprovalRequired`](crate::RealtimeSessionEvent::ToolApprovalRequired) and waits
    /// for [`approve_tool_call`](crate::RealtimeSessionHandle::approve_tool_call) or
    /// [`reject_tool_call`](crate::RealtimeSessionHandle::reject_tool_call).
    ///
    /// ```
    /// use realtime_agents::FunctionTool;
    /// let tool = FunctionTool::from_json_schema("refund", "Refund the order.", serde_json::json!({}),
    ///     |_| async { Ok::<_, String>("refunded") })
    ///     .needs_approval(true);
    /// ```
    #[must_use]
    pub fn needs_approval(mut self, required: bool) -> Self {
        self.approval = if required {
            Approval::Always
        } else {
            Approval::Never
        };
        self
    }

    /// Requires approval when `check` says so, given the call and its parsed arguments.
    /// Arguments that are not valid JSON always require approval (fail closed).
    ///
    /// ```
    /// use realtime_agents::FunctionTool;
    /// let tool = FunctionTool::from_json_schema("refund", "Refund an amount.", serde_json::json!({}),
    ///     |_| async { Ok::<_, String>("refunded") })
    ///     .needs_approval_if(|_call, args| args["amount"].as_f64().unwrap_or(f64::MAX) > 50.0);
    /// ```
    #[must_use]
    pub fn needs_approval_if<F>(mut self, check: F) -> Self
    where
        F: Fn(&ToolContext, &Value) -> bool + Send + Sync + 'static,
    {
        self.approval = Approval::When(Arc::new(check));
        self
    }

    /// Offers the tool only while `check` holds. It is evaluated when the agent's settings are
    /// sent (session start, handoff, `update_agent`) and again when the model calls the tool;
    /// a call to a disabled tool gets an error output and the tool does not run.
    ///
    /// ```
    /// use realtime_agents::{FunctionTool, RunContext};
    /// struct Caller { verified: bool }
    /// let tool = FunctionTool::from_json_schema("balance", "Account balance.", serde_json::json!({}),
    ///     |_| async { Ok::<_, String>("42 EUR") })
    ///     .enabled_if(|ctx: &RunContext, _agent| ctx.get::<Caller>().is_some_and(|c| c.verified));
    /// ```
    #[must_use]
    pub fn enabled_if<F>(mut self, check: F) -> Self
    where
        F: Fn(&RunContext, &RealtimeAgent) -> bool + Send + Sync + 'static,
    {
        self.enabled = Some(Arc::new(check));
        self
    }

    /// Makes the tool's output a background result: it is added to the conversation without
    /// asking the model for a new response (the model sees it on its next turn).
    ///
    /// ```
    /// use realtime_agents::FunctionTool;
    /// let tool = FunctionTool::from_json_schema("log_note", "Save a note.", serde_json::json!({}),
    ///     |_| async { Ok::<_, String>("saved") })
    ///     .background();
    /// assert!(tool.is_background());
    /// ```
    #[must_use]
    pub fn background(mut self) -> Self {
        self.background = true;
        self
    }

    /// Whether the tool's outputs are background results.
    pub fn is_background(&self) -> bool {
        self.background
    }

    /// Whether the tool is offered to `agent`'s model in this run.
    pub fn is_enabled(&self, ctx: &RunContext, agent: &RealtimeAgent) -> bool {
        self.enabled.as_ref().is_none_or(|check| check(ctx, agent))
    }

    /// Whether this call needs the application's approval (fails closed on invalid JSON).
    pub(crate) fn requires_approval(&self, call: &ToolContext) -> bool {
        match &self.approval {
            Approval::Never => false,
            Approval::Always => true,
            Approval::When(check) => match parse_arguments(&call.arguments) {
                Ok(args) => check(call, &args),
                Err(_) => true,
            },
        }
    }

    /// How the model sees the tool.
    pub fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: self.parameters.clone(),
        }
    }

    /// Runs the tool on raw JSON arguments: `Ok(output)` or `Err(message)` for the model.
    pub(crate) fn invoke(&self, ctx: ToolContext) -> BoxFuture<'static, Result<String, String>> {
        let args = match parse_arguments(&ctx.arguments) {
            Ok(args) => args,
            Err(e) => {
                let message = format!("arguments for `{}` are not valid JSON: {e}", self.name);
                return async move { Err(message) }.boxed();
            }
        };
        let fut = (self.handler)(ctx, args);
        match self.timeout {
            None => fut,
            Some(limit) => async move {
                tokio::time::timeout(limit, fut)
                    .await
                    .unwrap_or_else(|_| Err(format!("timed out after {limit:?}")))
            }
            .boxed(),
        }
    }
}

/// The call's arguments as JSON (empty arguments are an empty object).
fn parse_arguments(arguments: &str) -> serde_json::Result<Value> {
    if arguments.trim().is_empty() {
        Ok(Value::Object(Default::default()))
    } else {
        serde_json::from_str(arguments)
    }
}

fn output_text<O: Serialize>(output: &O) -> String {
    match serde_json::to_value(output) {
        Ok(Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(e) => format!("unserializable tool output: {e}"),
    }
}

/// Makes a JSON schema acceptable to OpenAI's strict function calling: every object lists all
/// its properties as required and allows no others (optional fields stay nullable), and
/// annotations the API ignores are dropped.
///
/// ```
/// use serde_json::json;
/// let s = realtime_agents::tool::strict_schema(json!({
///     "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Args",
///     "type": "object", "properties": {"a": {"type": "string"}, "b": {"type": ["integer", "null"]}},
///     "required": ["a"]
/// }));
/// assert_eq!(s, json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": ["integer", "null"]}},
///     "required": ["a", "b"], "additionalProperties": false}));
/// ```
pub fn strict_schema(mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
    }
    make_strict(&mut schema);
    if schema.get("type").is_none() && schema.get("properties").is_none() {
        schema = serde_json::json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false});
    }
    schema
}

fn make_strict(node: &mut Value) {
    match node {
        Value::Object(obj) => {
            if let Some(Value::Object(props)) = obj.get("properties") {
                let names: Vec<Value> = props.keys().cloned().map(Value::String).collect();
                obj.insert("required".into(), Value::Array(names));
                obj.insert("additionalProperties".into(), Value::Bool(false));
            } else if obj.get("type").and_then(Value::as_str) == Some("object") {
                obj.entry("properties")
                    .or_insert_with(|| Value::Object(Default::default()));
                obj.insert("required".into(), Value::Array(Vec::new()));
                obj.insert("additionalProperties".into(), Value::Bool(false));
            }
            if let Some(one_of) = obj.remove("oneOf") {
                obj.insert("anyOf".into(), one_of);
            }
            obj.remove("format");
            for (_, child) in obj.iter_mut() {
                make_strict(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(make_strict),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Nested {
        inner: Inner,
        note: Option<String>,
    }
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn nested_schema_is_strict_everywhere() {
        let tool = FunctionTool::new("n", "d", |_: Nested| async { Ok::<_, String>("ok") });
        let p = tool.spec().parameters;
        assert_eq!(p["additionalProperties"], false);
        assert_eq!(p["required"], serde_json::json!(["inner", "note"]));
        let text = p.to_string();
        assert!(
            !text.contains("\"format\"") && !text.contains("$schema"),
            "{text}"
        );
        // Every object node forbids extra properties.
        fn check(v: &Value) {
            if let Some(o) = v.as_object() {
                if o.contains_key("properties") {
                    assert_eq!(o["additionalProperties"], false, "{v}");
                }
                o.values().for_each(check);
            }
        }
        check(&p);
    }

    #[tokio::test]
    async fn invalid_arguments_and_timeouts_are_errors() {
        let ctx = |args: &str| ToolContext {
            context: RunContext::new(()),
            call_id: "c".into(),
            tool_name: "n".into(),
            arguments: args.into(),
            agent_name: "a".into(),
            history: Arc::from(Vec::new()),
        };
        let tool = FunctionTool::new(
            "n",
            "d",
            |i: Inner| async move { Ok::<_, String>(i.count * 2) },
        );
        assert_eq!(tool.invoke(ctx(r#"{"count": 21}"#)).await, Ok("42".into()));
        assert!(
            tool.invoke(ctx("{not json"))
                .await
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            tool.invoke(ctx(r#"{"count": "x"}"#))
                .await
                .unwrap_err()
                .contains("invalid arguments")
        );
        let slow = FunctionTool::new("slow", "d", |_: Inner| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, String>("late")
        })
        .timeout(Duration::from_millis(10));
        assert!(
            slow.invoke(ctx(r#"{"count": 1}"#))
                .await
                .unwrap_err()
                .contains("timed out")
        );
    }
}
