//! Function calls: tools, approvals, handoffs, and one `response.create` per batch of outputs.

use std::sync::Arc;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tracing::Instrument as _;

use super::Driver;
use crate::hooks::HookDecision;
use crate::model::ModelCommand;
use crate::tool::ToolContext;
use crate::{Error, FunctionTool, RealtimeAgent, RealtimeSessionEvent, Result};

/// What the model hears when a call is rejected without a message.
const NOT_APPROVED: &str = "Tool execution was not approved.";

/// Tool calls of one response: one `response.create` once all are answered.
#[derive(Debug, Default)]
pub(super) struct Batch {
    running: usize,
    /// Some answered output asks for a response (not only background results).
    respond: bool,
    pub(super) response_done: bool,
}

/// A call waiting for the application's decision.
pub(super) struct PendingApproval {
    tool: FunctionTool,
    ctx: ToolContext,
}

/// How a call ended.
pub(super) enum Outcome {
    /// The tool's output.
    Output(String),
    /// The tool failed; the model gets `Error: <message>`, the application an error event.
    Failed(String),
    /// The call was rejected (by the application or a hook); the model gets the message.
    Rejected(String),
}

pub(super) struct ToolDone {
    call_id: String,
    tool: String,
    arguments: String,
    batch: String,
    agent: String,
    outcome: Outcome,
    background: bool,
    handoff: Option<Arc<RealtimeAgent>>,
}

/// Runs a function tool with the hooks around it.
async fn run_tool(
    tool: FunctionTool,
    ctx: ToolContext,
    hooks: Option<Arc<dyn crate::hooks::RealtimeHooks>>,
) -> Outcome {
    if let Some(hooks) = &hooks {
        if let HookDecision::Reject(message) = hooks.before_tool(&ctx).await {
            return Outcome::Rejected(message);
        }
    }
    let result = tool.invoke(ctx.clone()).await;
    if let Some(hooks) = &hooks {
        if let HookDecision::Reject(message) = hooks.after_tool(&ctx, &result).await {
            return Outcome::Rejected(message);
        }
    }
    match result {
        Ok(output) => Outcome::Output(output),
        Err(message) => Outcome::Failed(message),
    }
}

impl Driver {
    fn tool_context(
        &self,
        agent: &RealtimeAgent,
        call_id: &str,
        name: &str,
        arguments: &str,
    ) -> ToolContext {
        ToolContext {
            context: self.shared.context.clone(),
            call_id: call_id.to_owned(),
            tool_name: name.to_owned(),
            arguments: arguments.to_owned(),
            agent_name: agent.name().to_owned(),
            history: Arc::from(self.history.items()),
        }
    }

    pub(super) fn on_function_call(
        &mut self,
        call_id: String,
        name: String,
        arguments: String,
        response_id: String,
    ) -> impl Future<Output = ()> + Send + '_ {
        async move {
            if !self.calls_seen.insert(call_id.clone()) {
                // A call id is answered once: a repeated call never runs its tool twice.
                tracing::debug!(%call_id, "duplicate function call ignored");
                return;
            }
            let response_id = if self.caps.delegated_tools
                && self.active_response.as_deref() != Some(response_id.as_str())
                && !self.batches.contains_key(&response_id)
            {
                // Work delegated outside any response: the call is answered on its own.
                own_batch(&mut self.batches, &call_id)
            } else {
                response_id
            };
            let agent = self.agent.clone();
            let ctx_ref = &self.shared.context;
            if let Some(tool) = agent.tools().iter().find(|t| t.name() == name) {
                let ctx = self.tool_context(&agent, &call_id, &name, &arguments);
                if !tool.is_enabled(ctx_ref, &agent) {
                    let message = format!("tool `{name}` is not enabled");
                    return self
                        .start(ctx, response_id, fail(message), false, None)
                        .await;
                }
                if let Some(message) = self.always_rejected.get(&name).cloned() {
                    let message = message.unwrap_or_else(|| NOT_APPROVED.to_owned());
                    return self.finish_rejected(ctx, response_id, message).await;
                }
                if tool.requires_approval(&ctx) && !self.always_approved.contains(&name) {
                    tracing::info!(%call_id, tool = %name, "tool call awaits approval");
                    self.approvals.insert(
                        call_id.clone(),
                        PendingApproval {
                            tool: tool.clone(),
                            ctx,
                        },
                    );
                    return self
                        .emit(RealtimeSessionEvent::ToolApprovalRequired {
                            agent: agent.name().to_owned(),
                            tool: name,
                            call_id,
                            arguments,
                        })
                        .await;
                }
                return self.start_tool(tool.clone(), ctx, response_id).await;
            }
            let ctx = self.tool_context(&agent, &call_id, &name, &arguments);
            let handoff = agent
                .handoffs()
                .iter()
                .find(|h| h.tool_name() == name && h.is_enabled(ctx_ref, &agent));
            match handoff {
                Some(h) => {
                    let target = h.resolve();
                    let output = serde_json::json!({ "assistant": target.name() }).to_string();
                    let callback = h.invoke(self.shared.context.clone(), arguments);
                    let work = async move {
                        match callback.await {
                            Ok(()) => Outcome::Output(output),
                            Err(message) => Outcome::Failed(message),
                        }
                    }
                    .boxed();
                    self.start(ctx, response_id, work, false, Some(target))
                        .await
                }
                None => {
                    let message = format!("tool `{name}` does not exist");
                    self.start(ctx, response_id, fail(message), false, None)
                        .await
                }
            }
        }
    }

    /// Runs an approved (or approval-free) function tool.
    fn start_tool(
        &mut self,
        tool: FunctionTool,
        ctx: ToolContext,
        batch: String,
    ) -> impl Future<Output = ()> + Send + '_ {
        async move {
            self.emit(RealtimeSessionEvent::ToolStart {
                agent: ctx.agent_name.clone(),
                tool: ctx.tool_name.clone(),
                call_id: ctx.call_id.clone(),
                arguments: ctx.arguments.clone(),
            })
            .await;
            let background = tool.is_background();
            let work = run_tool(tool, ctx.clone(), self.shared.config.hooks.clone()).boxed();
            self.start(ctx, batch, work, background, None).await
        }
    }

    /// Spawns a call's work and tracks it in `batch`.
    fn start(
        &mut self,
        ctx: ToolContext,
        batch: String,
        work: BoxFuture<'static, Outcome>,
        background: bool,
        handoff: Option<Arc<RealtimeAgent>>,
    ) -> impl Future<Output = ()> + Send + '_ {
        async move {
            self.batches.entry(batch.clone()).or_default().running += 1;
            let span = tracing::info_span!(parent: &self.turn_span, "tool", tool = %ctx.tool_name, call_id = %ctx.call_id);
            let task = tokio::spawn(work.instrument(span));
            self.tool_aborts
                .insert(ctx.call_id.clone(), task.abort_handle());
            self.wakes.mark(super::wake::TOOLS);
            self.tools.get_or_insert_default().push(
                async move {
                    let outcome = match task.await {
                        Ok(outcome) => outcome,
                        Err(e) if e.is_panic() => Outcome::Failed("the tool panicked".to_owned()),
                        Err(_) => Outcome::Failed("the tool was cancelled".to_owned()),
                    };
                    ToolDone {
                        call_id: ctx.call_id,
                        tool: ctx.tool_name,
                        arguments: ctx.arguments,
                        batch,
                        agent: ctx.agent_name,
                        outcome,
                        background,
                        handoff,
                    }
                }
                .boxed(),
            );
        }
    }

    /// A rejected call: its message goes back as the output, in a batch of its own.
    fn finish_rejected(
        &mut self,
        ctx: ToolContext,
        batch: String,
        message: String,
    ) -> impl Future<Output = ()> + Send + '_ {
        async move {
            let work = async move { Outcome::Rejected(message) }.boxed();
            self.start(ctx, batch, work, false, None).await
        }
    }

    pub(super) async fn approve(&mut self, call_id: &str, always: bool) -> Result<()> {
        let pending = self.take_pending(call_id)?;
        if always {
            self.always_approved.insert(pending.ctx.tool_name.clone());
        }
        tracing::info!(%call_id, tool = %pending.ctx.tool_name, "tool call approved");
        let batch = own_batch(&mut self.batches, call_id);
        self.start_tool(pending.tool, pending.ctx, batch).await;
        Ok(())
    }

    pub(super) fn reject(
        &mut self,
        call_id: &str,
        always: bool,
        message: Option<String>,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            let pending = self.take_pending(call_id)?;
            let tool = pending.ctx.tool_name.clone();
            if always {
                self.always_rejected.insert(tool.clone(), message.clone());
            }
            tracing::info!(%call_id, %tool, "tool call rejected");
            let message = message.unwrap_or_else(|| NOT_APPROVED.to_owned());
            let batch = own_batch(&mut self.batches, call_id);
            self.finish_rejected(pending.ctx, batch, message).await;
            Ok(())
        }
    }

    fn take_pending(&mut self, call_id: &str) -> Result<PendingApproval> {
        self.approvals
            .remove(call_id)
            .ok_or_else(|| Error::Config(format!("no tool call `{call_id}` awaits approval")))
    }

    pub(super) fn on_tool_done(&mut self, done: ToolDone) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.tool_aborts.remove(&done.call_id);
            let mut outcome = done.outcome;
            let mut switched = false;
            if let (Some(target), Outcome::Output(_)) = (&done.handoff, &outcome) {
                let from = self.agent.clone();
                let veto = match &self.shared.config.hooks {
                    Some(hooks) => hooks.on_handoff(&self.shared.context, &from, target),
                    None => HookDecision::Continue,
                };
                match veto {
                    HookDecision::Reject(message) => outcome = Outcome::Rejected(message),
                    _ => {
                        self.agent = target.clone();
                        switched = true;
                        tracing::info!(from = %from.name(), to = %target.name(), "handoff");
                        self.emit(RealtimeSessionEvent::Handoff {
                            from: from.name().to_owned(),
                            to: target.name().to_owned(),
                        })
                        .await;
                        self.send_agent_settings().await;
                    }
                }
            }
            let redactor = &self.shared.config.redactor;
            let (Outcome::Output(text) | Outcome::Failed(text) | Outcome::Rejected(text)) =
                &mut outcome;
            *text = redactor.redact_string(std::mem::take(text));
            let (output, is_error) = match &outcome {
                Outcome::Output(output) => (output.clone(), false),
                Outcome::Failed(message) => (format!("Error: {message}"), true),
                Outcome::Rejected(message) => (message.clone(), true),
            };
            self.send(ModelCommand::ToolOutput {
                call_id: done.call_id.clone(),
                output: output.clone(),
                respond: false,
            })
            .await;
            if let Some(item) = self
                .history
                .set_tool_output(&done.call_id, &output)
                .cloned()
            {
                self.emit(RealtimeSessionEvent::HistoryUpdated { item })
                    .await;
            }
            if let Outcome::Failed(message) = &outcome {
                let error = Error::Tool {
                    name: done.tool.clone(),
                    message: message.clone(),
                };
                self.emit(RealtimeSessionEvent::Error { error }).await;
            }
            if switched {
                // A handoff reports `Handoff` instead of `ToolEnd`; its turn still records the call.
                self.turns.call_output(&done.call_id, &output, is_error);
            } else {
                self.emit(RealtimeSessionEvent::ToolEnd {
                    agent: done.agent,
                    tool: done.tool,
                    call_id: done.call_id,
                    arguments: done.arguments,
                    output,
                    is_error,
                })
                .await;
            }
            let batch = self.batches.entry(done.batch.clone()).or_default();
            batch.running = batch.running.saturating_sub(1);
            batch.respond |= !done.background;
            self.respond_if_batch_complete(&done.batch).await;
            self.end_idle_turns().await;
        })
    }

    /// One `response.create` per response's calls, once every call is answered (none when all
    /// outputs were background results).
    pub(super) async fn respond_if_batch_complete(&mut self, batch: &str) {
        let complete = self
            .batches
            .get(batch)
            .is_some_and(|b| b.response_done && b.running == 0);
        if complete {
            // The answer to these outputs belongs to the calls' turn.
            let owner = self.turns.batch_owner(batch);
            if let Some(batch) = self.batches.remove(batch) {
                if batch.respond && self.caps.auto_tool_reply {
                    // The backend answers tool outputs by itself: the turn awaits that answer.
                    self.turn_request(owner).await;
                } else if batch.respond {
                    self.turns.request_owner = owner;
                    self.send(ModelCommand::CreateResponse).await;
                }
            }
        }
    }
}

/// A batch for one call answered outside its response (after an approval).
fn own_batch(batches: &mut std::collections::HashMap<String, Batch>, call_id: &str) -> String {
    let key = format!("call:{call_id}");
    batches.entry(key.clone()).or_default().response_done = true;
    key
}

fn fail(message: String) -> BoxFuture<'static, Outcome> {
    async move { Outcome::Failed(message) }.boxed()
}
