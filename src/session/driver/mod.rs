//! The session task: owns the connection, the history, running tools and guardrails.

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{PlaybackTracker, RealtimeSessionEvent};
use crate::audio::AudioFormat;
use crate::guardrail::GuardrailResult;
use crate::items::{History, ItemStatus, MessageItem, RealtimeItem, Role, Upsert};
use crate::model::{
    AudioCut, ModelCommand, ModelEvent, RealtimeConnection, SessionSettings, Usage, UserMessage,
};
use crate::runner::RealtimeRunConfig;
use crate::tool::ToolContext;
use crate::{Error, OutputGuardrail, RealtimeAgent, RunContext};

/// How long `close` waits for the peer to acknowledge the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A request from a handle to the session task.
#[derive(Debug)]
pub(crate) enum Command {
    Model(ModelCommand),
    Interrupt,
    UpdateAgent(Arc<RealtimeAgent>),
    History(oneshot::Sender<Vec<RealtimeItem>>),
}

/// What the session task shares with the runner.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) config: RealtimeRunConfig,
    pub(crate) context: RunContext,
    pub(crate) tracker: Arc<dyn PlaybackTracker>,
}

/// The session settings for `agent`: the run configuration's settings (voice, formats, turn
/// detection...) with the agent's instructions and tools on top. Once the model has spoken, the
/// voice is left out so that the server never sees an attempt to change it.
pub(crate) async fn agent_settings(
    shared: &Shared,
    agent: &RealtimeAgent,
    audio_started: bool,
) -> crate::Result<SessionSettings> {
    let mut settings = shared.config.settings.clone();
    settings.instructions = Some(agent.resolve_instructions(&shared.context).await);
    let mut tools: Vec<_> = agent.tools().iter().map(|t| t.spec()).collect();
    tools.extend(
        agent
            .handoffs()
            .iter()
            .filter(|h| h.is_enabled())
            .map(|h| h.spec()),
    );
    let mut names = HashSet::new();
    if let Some(dup) = tools.iter().find(|t| !names.insert(t.name.as_str())) {
        return Err(Error::Config(format!(
            "agent `{}` has two tools named `{}`",
            agent.name(),
            dup.name
        )));
    }
    settings.tools = Some(tools);
    if audio_started {
        settings.voice = None;
    } else if let Some(voice) = agent.agent_voice() {
        settings.voice = Some(voice.clone());
    }
    Ok(settings)
}

/// The audio item the application is (or was last) playing.
#[derive(Debug)]
struct Playing {
    response_id: String,
    item_id: String,
    content_index: u32,
    bytes: usize,
}

/// Tool calls of one response: one `response.create` once all are answered.
#[derive(Debug, Default)]
struct Batch {
    running: usize,
    answered: usize,
    response_done: bool,
}

struct ToolDone {
    call_id: String,
    tool: String,
    arguments: String,
    response_id: String,
    agent: String,
    result: Result<String, String>,
    handoff: Option<Arc<RealtimeAgent>>,
}

/// Transcript of the current response, as the output guardrails see it.
#[derive(Debug, Default)]
struct GuardText {
    response_id: String,
    text: String,
    checked: usize,
    running: bool,
}

struct GuardDone {
    response_id: String,
    text: String,
    results: Vec<GuardrailResult>,
    failures: Vec<String>,
}

enum Step {
    Command(Command),
    Model(ModelEvent),
    Tool(ToolDone),
    Guard(GuardDone),
    Close,
}

/// The session task.
pub(crate) struct Driver {
    conn: Box<dyn RealtimeConnection>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<RealtimeSessionEvent>,
    cancel: CancellationToken,
    shared: Shared,
    agent: Arc<RealtimeAgent>,
    response_agent: Option<Arc<RealtimeAgent>>,
    history: History,
    tools: FuturesUnordered<BoxFuture<'static, ToolDone>>,
    tool_aborts: HashMap<String, AbortHandle>,
    calls_seen: HashSet<String>,
    batches: HashMap<String, Batch>,
    guardrails: FuturesUnordered<BoxFuture<'static, GuardDone>>,
    guard: GuardText,
    blocked_response: Option<String>,
    output_format: AudioFormat,
    server_interrupts: bool,
    active_response: Option<String>,
    playing: Option<Playing>,
    audio_started: bool,
    usage: Usage,
    turn_span: tracing::Span,
    stopped: bool,
}

impl Driver {
    pub(crate) fn new(
        conn: Box<dyn RealtimeConnection>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<RealtimeSessionEvent>,
        shared: Shared,
        agent: Arc<RealtimeAgent>,
    ) -> Self {
        let output_format = shared.config.settings.output_format.unwrap_or_default();
        Self {
            conn,
            commands,
            events,
            cancel: CancellationToken::new(),
            shared,
            agent,
            response_agent: None,
            history: History::default(),
            tools: FuturesUnordered::new(),
            tool_aborts: HashMap::new(),
            calls_seen: HashSet::new(),
            batches: HashMap::new(),
            guardrails: FuturesUnordered::new(),
            guard: GuardText::default(),
            blocked_response: None,
            output_format,
            server_interrupts: true,
            active_response: None,
            playing: None,
            audio_started: false,
            usage: Usage::default(),
            turn_span: tracing::Span::none(),
            stopped: false,
        }
    }

    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    pub(crate) async fn run(self) {
        let span = tracing::info_span!("realtime_session", agent = %self.agent.name());
        self.run_inner().instrument(span).await
    }

    async fn run_inner(mut self) {
        tracing::info!("session started");
        while !self.stopped {
            let step = tokio::select! {
                _ = self.cancel.cancelled() => Step::Close,
                _ = self.events.closed() => Step::Close,
                command = self.commands.recv() => command.map_or(Step::Close, Step::Command),
                event = poll_fn(|cx| self.conn.poll_event(cx)) => match event {
                    Some(event) => Step::Model(event),
                    None => Step::Close,
                },
                Some(done) = self.tools.next(), if !self.tools.is_empty() => Step::Tool(done),
                Some(done) = self.guardrails.next(), if !self.guardrails.is_empty() => Step::Guard(done),
            };
            match step {
                Step::Command(command) => self.on_command(command).await,
                Step::Model(event) => self.on_model_event(event).await,
                Step::Tool(done) => self.on_tool_done(done).await,
                Step::Guard(done) => self.on_guardrails_done(done).await,
                Step::Close => self.close(None).await,
            }
        }
        for abort in self.tool_aborts.values() {
            abort.abort();
        }
        tracing::info!("session ended");
    }

    async fn emit(&mut self, event: RealtimeSessionEvent) {
        if self.events.send(event).await.is_err() {
            self.stopped = true;
        }
    }

    async fn send(&mut self, command: ModelCommand) {
        if let Err(error) = self.conn.send(command) {
            self.emit(RealtimeSessionEvent::Error { error }).await;
        }
    }

    async fn close(&mut self, error: Option<Error>) {
        for abort in self.tool_aborts.values() {
            abort.abort();
        }
        if error.is_none() {
            let _ = tokio::time::timeout(CLOSE_GRACE, poll_fn(|cx| self.conn.poll_close(cx))).await;
        }
        if let Some(error) = &error {
            tracing::warn!(%error, "session closed by the connection");
            self.emit(RealtimeSessionEvent::Error {
                error: error.clone(),
            })
            .await;
        }
        // The consumer may be gone; never wait long on it here.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.events.send(RealtimeSessionEvent::Closed { error }),
        )
        .await;
        self.stopped = true;
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Model(command) => self.send(command).await,
            Command::Interrupt => self.interrupt(true).await,
            Command::UpdateAgent(agent) => {
                self.agent = agent;
                self.send_agent_settings().await;
            }
            Command::History(reply) => {
                let _ = reply.send(self.history.items().to_vec());
            }
        }
    }

    async fn send_agent_settings(&mut self) {
        match agent_settings(&self.shared, &self.agent, self.audio_started).await {
            Ok(settings) => {
                self.send(ModelCommand::UpdateSession(Box::new(settings)))
                    .await
            }
            Err(error) => self.emit(RealtimeSessionEvent::Error { error }).await,
        }
    }

    async fn on_model_event(&mut self, event: ModelEvent) {
        use RealtimeSessionEvent as E;
        match event {
            ModelEvent::Raw(raw) => {
                if self.shared.config.raw_events {
                    self.emit(E::Raw(raw)).await;
                }
            }
            ModelEvent::SessionUpdated {
                output_format,
                server_interrupts,
            } => {
                self.output_format = output_format;
                self.server_interrupts = server_interrupts;
            }
            ModelEvent::ResponseStarted { response_id } => {
                self.turn_span = tracing::info_span!("turn", response_id = %response_id, agent = %self.agent.name());
                self.turn_span
                    .in_scope(|| tracing::debug!("response started"));
                self.active_response = Some(response_id);
                self.response_agent = Some(self.agent.clone());
                let agent = self.agent.name().to_owned();
                self.emit(E::AgentStart { agent }).await;
            }
            ModelEvent::ResponseDone {
                response_id,
                status,
                usage,
            } => {
                self.turn_span
                    .in_scope(|| tracing::debug!(?status, "response done"));
                if self.active_response.as_deref() == Some(response_id.as_str()) {
                    self.active_response = None;
                }
                if let Some(usage) = usage {
                    self.usage += usage;
                    let total = self.usage;
                    self.emit(E::Usage {
                        response: usage,
                        total,
                    })
                    .await;
                }
                if self.guard.response_id == response_id {
                    self.check_guardrails(true);
                }
                let agent = self
                    .response_agent
                    .take()
                    .unwrap_or_else(|| self.agent.clone());
                self.emit(E::AgentEnd {
                    agent: agent.name().to_owned(),
                })
                .await;
                self.batches
                    .entry(response_id.clone())
                    .or_default()
                    .response_done = true;
                self.respond_if_batch_complete(&response_id).await;
                self.turn_span = tracing::Span::none();
            }
            ModelEvent::Audio {
                response_id,
                item_id,
                content_index,
                data,
            } => {
                if self.blocked_response.as_deref() == Some(response_id.as_str()) {
                    return;
                }
                self.audio_started = true;
                self.shared.tracker.on_audio_delivered(
                    &item_id,
                    content_index,
                    data.len(),
                    self.output_format,
                );
                match &mut self.playing {
                    Some(p) if p.item_id == item_id && p.content_index == content_index => {
                        p.bytes += data.len()
                    }
                    slot => {
                        *slot = Some(Playing {
                            response_id: response_id.clone(),
                            item_id: item_id.clone(),
                            content_index,
                            bytes: data.len(),
                        })
                    }
                }
                self.emit(E::Audio {
                    response_id,
                    item_id,
                    content_index,
                    data,
                })
                .await;
            }
            ModelEvent::AudioDone {
                item_id,
                content_index,
            } => {
                self.emit(E::AudioEnd {
                    item_id,
                    content_index,
                })
                .await
            }
            ModelEvent::TranscriptDelta {
                response_id,
                item_id,
                content_index,
                delta,
            } => {
                if self.blocked_response.as_deref() == Some(response_id.as_str()) {
                    return;
                }
                self.ensure_message(&item_id, Role::Assistant).await;
                self.history
                    .append_transcript(&item_id, content_index, Role::Assistant, &delta);
                self.guard_text(&response_id, &delta);
                self.emit(E::TranscriptDelta {
                    role: Role::Assistant,
                    item_id,
                    content_index,
                    delta,
                })
                .await;
            }
            ModelEvent::InputTranscriptDelta {
                item_id,
                content_index,
                delta,
            } => {
                self.ensure_message(&item_id, Role::User).await;
                self.history
                    .append_transcript(&item_id, content_index, Role::User, &delta);
                self.emit(E::TranscriptDelta {
                    role: Role::User,
                    item_id,
                    content_index,
                    delta,
                })
                .await;
            }
            ModelEvent::InputTranscriptCompleted {
                item_id,
                content_index,
                transcript,
            } => {
                self.ensure_message(&item_id, Role::User).await;
                self.history
                    .set_transcript(&item_id, content_index, Role::User, &transcript);
                if let Some(item) = self.history.get(&item_id).cloned() {
                    self.emit(E::HistoryUpdated { item }).await;
                }
                self.emit(E::UserTranscript {
                    item_id,
                    transcript,
                })
                .await;
            }
            ModelEvent::Item(item) => {
                let id = item.item_id().to_owned();
                let change = self.history.upsert(item);
                if let Some(item) = self.history.get(&id).cloned() {
                    let event = match change {
                        Upsert::Added => E::HistoryAdded { item },
                        Upsert::Updated => E::HistoryUpdated { item },
                    };
                    self.emit(event).await;
                }
            }
            ModelEvent::ItemDeleted { item_id } => {
                if self.history.remove(&item_id) {
                    self.emit(E::HistoryDeleted { item_id }).await;
                }
            }
            ModelEvent::FunctionCall {
                call_id,
                name,
                arguments,
                item_id: _,
                response_id,
            } => {
                self.on_function_call(call_id, name, arguments, response_id)
                    .await
            }
            ModelEvent::SpeechStarted {
                item_id,
                audio_start_ms,
            } => {
                self.emit(E::InputSpeechStarted {
                    item_id,
                    audio_start_ms,
                })
                .await;
                if self.server_interrupts {
                    // The server cancels its response itself; stop playback and truncate.
                    self.interrupt(false).await;
                }
            }
            ModelEvent::SpeechStopped {
                item_id,
                audio_end_ms,
            } => {
                self.emit(E::InputSpeechStopped {
                    item_id,
                    audio_end_ms,
                })
                .await
            }
            ModelEvent::InputAudioTimeout {
                item_id,
                audio_start_ms,
                audio_end_ms,
            } => {
                self.emit(E::InputAudioTimeout {
                    item_id,
                    audio_start_ms,
                    audio_end_ms,
                })
                .await
            }
            ModelEvent::Error(error) => {
                tracing::warn!(%error, "model error");
                self.emit(E::Error { error }).await
            }
            ModelEvent::Closed { error } => self.close(error).await,
        }
    }

    /// Makes sure a message item exists before text is appended to it, reporting it if new.
    async fn ensure_message(&mut self, item_id: &str, role: Role) {
        if self.history.get(item_id).is_none() {
            let item = RealtimeItem::Message(MessageItem {
                item_id: item_id.to_owned(),
                previous_item_id: None,
                role,
                content: Vec::new(),
                status: ItemStatus::InProgress,
            });
            self.history.upsert(item.clone());
            self.emit(RealtimeSessionEvent::HistoryAdded { item }).await;
        }
    }

    /// Stops local playback of the current item and says where to truncate it.
    async fn stop_playback(&mut self) -> Option<AudioCut> {
        let playing = self.playing.take()?;
        let received_ms = self.output_format.bytes_to_ms(playing.bytes) as u64;
        let played_ms = self
            .shared
            .tracker
            .played_ms(&playing.item_id, playing.content_index)
            .unwrap_or(0)
            .min(received_ms);
        let generating = self.active_response.as_deref() == Some(playing.response_id.as_str());
        if played_ms >= received_ms && !generating {
            // Everything was heard: nothing to cut, and no spurious truncate.
            return None;
        }
        self.shared.tracker.on_interrupted();
        self.emit(RealtimeSessionEvent::AudioInterrupted {
            item_id: playing.item_id.clone(),
            content_index: playing.content_index,
            played_ms,
        })
        .await;
        // Truncating at 0 ms before anything was heard is rejected by the API; leave it.
        (played_ms > 0).then_some(AudioCut {
            item_id: playing.item_id,
            content_index: playing.content_index,
            audio_end_ms: played_ms,
        })
    }

    async fn interrupt(&mut self, cancel_response: bool) {
        let cut = self.stop_playback().await;
        if cancel_response || cut.is_some() {
            self.send(ModelCommand::Interrupt {
                cancel_response,
                cut,
            })
            .await;
        }
    }

    async fn on_function_call(
        &mut self,
        call_id: String,
        name: String,
        arguments: String,
        response_id: String,
    ) {
        if !self.calls_seen.insert(call_id.clone()) {
            tracing::debug!(%call_id, "duplicate function call ignored");
            return;
        }
        self.batches.entry(response_id.clone()).or_default().running += 1;
        let agent = self.agent.clone();
        let ctx = ToolContext {
            context: self.shared.context.clone(),
            call_id: call_id.clone(),
            tool_name: name.clone(),
            arguments: arguments.clone(),
            agent_name: agent.name().to_owned(),
        };
        let mut is_tool = false;
        let (work, handoff): (BoxFuture<'static, Result<String, String>>, _) =
            if let Some(tool) = agent.tools().iter().find(|t| t.name() == name) {
                is_tool = true;
                (tool.invoke(ctx), None)
            } else if let Some(h) = agent
                .handoffs()
                .iter()
                .find(|h| h.is_enabled() && h.tool_name() == name)
            {
                let target = h.agent().clone();
                let output = serde_json::json!({ "assistant": target.name() }).to_string();
                let callback = h.invoke(self.shared.context.clone(), arguments.clone());
                (
                    async move { callback.await.map(|()| output) }.boxed(),
                    Some(target),
                )
            } else {
                let message = format!("tool `{name}` does not exist");
                (async move { Err(message) }.boxed(), None)
            };
        if is_tool {
            self.emit(RealtimeSessionEvent::ToolStart {
                agent: agent.name().to_owned(),
                tool: name.clone(),
                call_id: call_id.clone(),
                arguments: arguments.clone(),
            })
            .await;
        }
        let span =
            tracing::info_span!(parent: &self.turn_span, "tool", tool = %name, call_id = %call_id);
        let task = tokio::spawn(work.instrument(span));
        self.tool_aborts
            .insert(call_id.clone(), task.abort_handle());
        let agent_name = agent.name().to_owned();
        self.tools.push(
            async move {
                let result = match task.await {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => Err("the tool panicked".to_owned()),
                    Err(_) => Err("the tool was cancelled".to_owned()),
                };
                ToolDone {
                    call_id,
                    tool: name,
                    arguments,
                    response_id,
                    agent: agent_name,
                    result,
                    handoff,
                }
            }
            .boxed(),
        );
    }

    async fn on_tool_done(&mut self, done: ToolDone) {
        self.tool_aborts.remove(&done.call_id);
        let is_error = done.result.is_err();
        let output = match &done.result {
            Ok(output) => output.clone(),
            Err(message) => format!("Error: {message}"),
        };
        if let (Some(target), Ok(_)) = (&done.handoff, &done.result) {
            let from = self.agent.name().to_owned();
            self.agent = target.clone();
            tracing::info!(%from, to = %target.name(), "handoff");
            self.emit(RealtimeSessionEvent::Handoff {
                from,
                to: target.name().to_owned(),
            })
            .await;
            self.send_agent_settings().await;
        }
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
        if let Err(message) = &done.result {
            let error = Error::Tool {
                name: done.tool.clone(),
                message: message.clone(),
            };
            self.emit(RealtimeSessionEvent::Error { error }).await;
        }
        if done.handoff.is_none() {
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
        let batch = self.batches.entry(done.response_id.clone()).or_default();
        batch.running = batch.running.saturating_sub(1);
        batch.answered += 1;
        self.respond_if_batch_complete(&done.response_id).await;
    }

    /// One `response.create` per response's calls, once every call is answered.
    async fn respond_if_batch_complete(&mut self, response_id: &str) {
        let complete = self
            .batches
            .get(response_id)
            .is_some_and(|b| b.response_done && b.running == 0);
        if complete {
            if let Some(batch) = self.batches.remove(response_id) {
                if batch.answered > 0 {
                    self.send(ModelCommand::CreateResponse).await;
                }
            }
        }
    }

    /// The agent that started the current response (the current agent between responses).
    fn response_agent(&self) -> &RealtimeAgent {
        self.response_agent.as_deref().unwrap_or(&self.agent)
    }

    fn guardrail_set(&self) -> Vec<OutputGuardrail> {
        let mut all: Vec<OutputGuardrail> = self.response_agent().output_guardrails().to_vec();
        for g in &self.shared.config.output_guardrails {
            if !all.iter().any(|a| a.name() == g.name()) {
                all.push(g.clone());
            }
        }
        all
    }

    fn guard_text(&mut self, response_id: &str, delta: &str) {
        if self.response_agent().output_guardrails().is_empty()
            && self.shared.config.output_guardrails.is_empty()
        {
            return;
        }
        if self.guard.response_id != response_id {
            self.guard = GuardText {
                response_id: response_id.to_owned(),
                ..GuardText::default()
            };
        }
        self.guard.text.push_str(delta);
        if self.guard.text.len()
            >= self.guard.checked + self.shared.config.guardrail_debounce_chars.max(1)
        {
            self.check_guardrails(false);
        }
    }

    /// Runs the guardrails on the response's text so far (`last`: once more at its end).
    fn check_guardrails(&mut self, last: bool) {
        let fresh = self.guard.text.len() > self.guard.checked || (last && self.guard.checked == 0);
        if !fresh
            || (self.guard.running && !last)
            || self.blocked_response.as_deref() == Some(&self.guard.response_id)
        {
            return;
        }
        let guardrails = self.guardrail_set();
        if guardrails.is_empty() {
            return;
        }
        self.guard.checked = self.guard.text.len();
        self.guard.running = true;
        let text = self.guard.text.clone();
        let response_id = self.guard.response_id.clone();
        let ctx = self.shared.context.clone();
        self.guardrails.push(
            async move {
                let runs = guardrails.iter().map(|g| {
                    let task = tokio::spawn(g.run(ctx.clone(), text.clone()));
                    let name = g.name().to_owned();
                    async move { (name, task.await) }
                });
                let mut results = Vec::new();
                let mut failures = Vec::new();
                for (name, outcome) in futures::future::join_all(runs).await {
                    match outcome {
                        Ok(output) => results.push(GuardrailResult { name, output }),
                        Err(e) => failures.push(format!("guardrail `{name}` failed: {e}")),
                    }
                }
                GuardDone {
                    response_id,
                    text,
                    results,
                    failures,
                }
            }
            .boxed(),
        );
    }

    async fn on_guardrails_done(&mut self, done: GuardDone) {
        if self.guard.response_id == done.response_id {
            self.guard.running = false;
        }
        for failure in done.failures {
            self.emit(RealtimeSessionEvent::Error {
                error: Error::Protocol(failure),
            })
            .await;
        }
        let tripped: Vec<&str> = done
            .results
            .iter()
            .filter(|r| r.output.tripwire_triggered)
            .map(|r| r.name.as_str())
            .collect();
        if tripped.is_empty() || self.blocked_response.as_deref() == Some(done.response_id.as_str())
        {
            // Text that arrived while this check ran gets its own check.
            if self.guard.response_id == done.response_id && self.active_response.is_none() {
                self.check_guardrails(true);
            }
            return;
        }
        let feedback = format!(
            "Your last answer was stopped by the output guardrail(s) {}. Do not repeat it; apologise briefly and continue.",
            tripped.join(", ")
        );
        tracing::info!(response_id = %done.response_id, guardrails = ?tripped, "output guardrail tripped");
        self.blocked_response = Some(done.response_id.clone());
        self.emit(RealtimeSessionEvent::GuardrailTripped {
            response_id: done.response_id,
            results: done.results,
            text: done.text,
        })
        .await;
        self.interrupt(true).await;
        self.send(ModelCommand::UserMessage {
            message: UserMessage::text(feedback),
            respond: true,
        })
        .await;
    }
}
