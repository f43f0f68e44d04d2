//! A conformance kit for backends: drives a [`RealtimeModel`] through the
//! [backend contract](super) and names every violation.
//!
//! [`run`] uses the model directly, through [`RealtimeModel::connect`] and
//! [`RealtimeConnection`], without a session, one fresh connection per [`Step`]:
//!
//! 1. [`Connect`](Step::Connect): the connection opens and reports `SessionUpdated` (in a
//!    declared output format) before any command.
//! 2. [`TextTurn`](Step::TextTurn): two user messages that ask for responses; each is echoed
//!    as a user item with its text and a non-empty id, and each response is started, says
//!    something (text or audio, every audio item ended by `AudioDone`) and ends
//!    `Completed`, with a new response id.
//! 3. [`ToolRoundTrip`](Step::ToolRoundTrip): with a tool in the settings, a prompt that
//!    triggers it gives a `FunctionCall` of that tool with a JSON object as arguments;
//!    its output and `CreateResponse` (nothing, for a backend that [replies by
//!    itself](Capabilities::auto_tool_reply)) give a response that says something.
//! 4. [`Interrupt`](Step::Interrupt): an interrupt with nothing active changes nothing; an
//!    interrupt during a long answer (with a cut at the audio received, when the backend
//!    truncates) ends that response `Cancelled`, nothing of it follows, and the connection
//!    answers again afterwards.
//! 5. [`History`](Step::History): a message without `respond` is echoed and starts nothing;
//!    `CreateItem` is echoed with the same id; `CreateItem` at a position and `DeleteItem`
//!    are answered.
//! 6. [`Close`](Step::Close): `poll_close` finishes, then `poll_event` gives at most a
//!    `Closed { error: None }` and `Ready(None)`, and `send` fails with `SessionClosed`.
//!
//! Throughout, every event is checked against the rules of the contract: one response at a
//! time, exactly one `ResponseDone` per response, nothing of a response after its end, no
//! reused response ids, whole audio samples, no `Error` events, nothing after `Closed`.
//! Steps and checks that need a capability the connection does not declare are skipped.
//!
//! The kit's prompts and tool are [`Options`]; the defaults suit the OpenAI Realtime API and
//! the [simulator](crate::simulator). A backend that triggers tools differently gets its own
//! prompt.
//!
//! ```
//! use realtime_agents::model::conformance::{self, Options};
//! use realtime_agents::testing::{Reply, ScriptedModel};
//! use serde_json::json;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A scripted backend that calls the kit's tool when asked about the weather.
//! let model = ScriptedModel::new().responder(|request| {
//!     if !request.tool_outputs.is_empty() {
//!         Reply::speech("It is sunny.")
//!     } else if request.user_text.as_deref().is_some_and(|t| t.contains("weather")) {
//!         Reply::call("get_weather", json!({"city": "Paris"}))
//!     } else {
//!         Reply::speech("Hello there, how can I help you today?")
//!     }
//! });
//! let report = conformance::run(&model, &Options::default()).await;
//! assert!(report.passed(), "{report}");
//! # }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    AudioCut, Capabilities, ModelCommand, ModelEvent, RealtimeConnection, RealtimeModel,
    ResponseStatus, SessionSettings, ToolSpec, Usage,
};
use crate::audio::AudioFormat;
use crate::items::{RealtimeItem, Role};
use crate::protocol::Modality;
use crate::{Error, Result};

/// How many recent events a violation quotes.
const RECENT: usize = 8;

/// What the kit sends, and how long it waits.
///
/// ```
/// use std::time::Duration;
/// use realtime_agents::model::{SessionSettings, ToolSpec, conformance::Options};
/// use serde_json::json;
///
/// // A backend that calls a tool when the user names it.
/// let options = Options::default()
///     .tool(
///         ToolSpec {
///             name: "lookup_order".into(),
///             description: "Finds an order.".into(),
///             parameters: json!({"type": "object", "properties": {"id": {"type": "string"}}}),
///         },
///         r#"lookup_order {"id": "4711"}"#,
///     )
///     .timeout(Duration::from_secs(30));
/// assert_eq!(options.tool.name, "lookup_order");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The settings every connection opens with (the kit adds its tool to a copy for the
    /// tool step). Default: empty, so the backend's defaults.
    pub settings: SessionSettings,
    /// A user message any backend answers (default `"Hello!"`).
    pub text_prompt: String,
    /// The tool of the tool step (default `get_weather(city)`).
    pub tool: ToolSpec,
    /// A user message that makes the backend call [`tool`](Self::tool) (default "What's the
    /// weather in Paris?").
    pub tool_prompt: String,
    /// What the tool returns (default `{"temperature_c": 21, "sky": "clear"}`).
    pub tool_output: String,
    /// A user message answered at length, to interrupt (default "Please tell me a long
    /// story.").
    pub long_prompt: String,
    /// How long any expected event may take (default 10 s).
    pub timeout: Duration,
    /// How long the kit listens to be sure that nothing comes (default 300 ms).
    pub quiet: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            settings: SessionSettings::default(),
            text_prompt: "Hello!".to_owned(),
            tool: ToolSpec {
                name: "get_weather".to_owned(),
                description: "The current weather in a city.".to_owned(),
                parameters: json!({
                    "type": "object",
                    "properties": {"city": {"type": "string", "description": "The city."}},
                    "required": ["city"],
                    "additionalProperties": false
                }),
            },
            tool_prompt: "What's the weather in Paris?".to_owned(),
            tool_output: json!({"temperature_c": 21, "sky": "clear"}).to_string(),
            long_prompt: "Please tell me a long story.".to_owned(),
            timeout: Duration::from_secs(10),
            quiet: Duration::from_millis(300),
        }
    }
}

impl Options {
    /// Sets [`settings`](Self::settings).
    ///
    /// ```
    /// use realtime_agents::model::{SessionSettings, conformance::Options};
    /// let options = Options::default().settings(SessionSettings::new().instructions("Be brief."));
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn settings(mut self, settings: SessionSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Sets [`text_prompt`](Self::text_prompt).
    ///
    /// ```
    /// let options = realtime_agents::model::conformance::Options::default().text_prompt("Hi");
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn text_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.text_prompt = prompt.into();
        self
    }

    /// Sets the [tool](Self::tool) and the [prompt](Self::tool_prompt) that triggers it.
    ///
    /// ```
    /// use realtime_agents::model::{ToolSpec, conformance::Options};
    /// let tool = ToolSpec { name: "ping".into(), description: "Pings.".into(), parameters: serde_json::json!({"type": "object"}) };
    /// let options = Options::default().tool(tool, "ping {}");
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn tool(mut self, tool: ToolSpec, prompt: impl Into<String>) -> Self {
        self.tool = tool;
        self.tool_prompt = prompt.into();
        self
    }

    /// Sets [`tool_output`](Self::tool_output).
    ///
    /// ```
    /// let options = realtime_agents::model::conformance::Options::default().tool_output("pong");
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn tool_output(mut self, output: impl Into<String>) -> Self {
        self.tool_output = output.into();
        self
    }

    /// Sets [`long_prompt`](Self::long_prompt).
    ///
    /// ```
    /// let options = realtime_agents::model::conformance::Options::default().long_prompt("Tell me a story");
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn long_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.long_prompt = prompt.into();
        self
    }

    /// Sets [`timeout`](Self::timeout).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = realtime_agents::model::conformance::Options::default().timeout(Duration::from_secs(30));
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`quiet`](Self::quiet).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = realtime_agents::model::conformance::Options::default().quiet(Duration::from_millis(100));
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn quiet(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }
}

/// A step of the kit (see the [module docs](self)).
///
/// ```
/// use realtime_agents::model::conformance::Step;
/// assert_eq!(Step::ToolRoundTrip.to_string(), "tool round trip");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Opening a connection.
    Connect,
    /// Two text turns.
    TextTurn,
    /// A function call and the response to its output.
    ToolRoundTrip,
    /// Interrupting: idle, and during a long answer.
    Interrupt,
    /// Echoes of user messages, created and deleted items.
    History,
    /// Closing.
    Close,
}

impl Step {
    /// Every step, in the order [`run`] takes them.
    ///
    /// ```
    /// use realtime_agents::model::conformance::Step;
    /// assert_eq!(Step::ALL.first(), Some(&Step::Connect));
    /// assert_eq!(Step::ALL.last(), Some(&Step::Close));
    /// ```
    pub const ALL: [Step; 6] = [
        Step::Connect,
        Step::TextTurn,
        Step::ToolRoundTrip,
        Step::Interrupt,
        Step::History,
        Step::Close,
    ];
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Connect => "connect",
            Step::TextTurn => "text turn",
            Step::ToolRoundTrip => "tool round trip",
            Step::Interrupt => "interrupt",
            Step::History => "history",
            Step::Close => "close",
        })
    }
}

/// A broken rule: in which step, what the contract expected, and what came instead.
///
/// ```
/// use realtime_agents::model::conformance::{Step, Violation};
/// let v = Violation::new(Step::TextTurn, "ResponseDone with status Completed", "ResponseDone(r1, Failed)");
/// assert_eq!(v.to_string(), "[text turn] expected ResponseDone with status Completed; got ResponseDone(r1, Failed)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    /// The step it happened in.
    pub step: Step,
    /// What the contract asks for.
    pub expected: String,
    /// What the backend did.
    pub got: String,
}

impl Violation {
    /// A violation.
    ///
    /// ```
    /// use realtime_agents::model::conformance::{Step, Violation};
    /// let v = Violation::new(Step::Close, "Ready(None)", "Pending");
    /// assert_eq!(v.step, Step::Close);
    /// ```
    pub fn new(step: Step, expected: impl Into<String>, got: impl Into<String>) -> Self {
        Self {
            step,
            expected: expected.into(),
            got: got.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] expected {}; got {}",
            self.step, self.expected, self.got
        )
    }
}

/// How a step went.
///
/// ```
/// use realtime_agents::model::conformance::Outcome;
/// assert!(Outcome::Passed.is_passed());
/// assert!(!Outcome::Skipped("no tools".into()).is_passed());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// No violation.
    Passed,
    /// At least one violation.
    Failed,
    /// Not run, and why (a capability the backend does not declare).
    Skipped(String),
}

impl Outcome {
    /// Whether the step ran without violations.
    ///
    /// ```
    /// assert!(!realtime_agents::model::conformance::Outcome::Failed.is_passed());
    /// ```
    pub fn is_passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }
}

/// What one step found.
///
/// ```
/// use realtime_agents::model::conformance::{Outcome, Step, StepReport};
/// let report = StepReport::new(Step::Interrupt, Outcome::Skipped("cannot cancel".into()));
/// assert!(report.violations.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepReport {
    /// The step.
    pub step: Step,
    /// How it went.
    pub outcome: Outcome,
    /// The rules it broke.
    pub violations: Vec<Violation>,
    /// Remarks that are not violations (a "should" not met, a race that left a check
    /// unexercised).
    pub notes: Vec<String>,
}

impl StepReport {
    /// A report without violations or notes.
    ///
    /// ```
    /// use realtime_agents::model::conformance::{Outcome, Step, StepReport};
    /// assert!(StepReport::new(Step::Close, Outcome::Passed).notes.is_empty());
    /// ```
    pub fn new(step: Step, outcome: Outcome) -> Self {
        Self {
            step,
            outcome,
            violations: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// What [`run`] found: the connection's capabilities and a report per step. Its `Display`
/// lists every step, violation and note.
///
/// ```
/// # use realtime_agents::model::conformance::{self, Options, Step};
/// # use realtime_agents::testing::{Reply, ScriptedModel};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let model = ScriptedModel::new().responder(|_| Reply::text("Hi"));
/// let report = conformance::run(&model, &Options::default()).await;
/// // This backend never calls the tool:
/// assert!(!report.passed());
/// let tool = report.step(Step::ToolRoundTrip).unwrap();
/// assert!(tool.violations[0].expected.contains("FunctionCall"));
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Report {
    /// What the first connection reported (`None` when it could not connect).
    pub capabilities: Option<Capabilities>,
    /// One report per step, in order.
    pub steps: Vec<StepReport>,
}

impl Report {
    /// Whether no step found a violation.
    ///
    /// ```
    /// use realtime_agents::model::conformance::Report;
    /// # fn check(report: Report) {
    /// assert!(report.passed(), "{report}");
    /// # }
    /// ```
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.violations.is_empty())
    }

    /// Every violation, in step order.
    ///
    /// ```
    /// # fn check(report: realtime_agents::model::conformance::Report) {
    /// for violation in report.violations() {
    ///     eprintln!("{violation}");
    /// }
    /// # }
    /// ```
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.steps.iter().flat_map(|s| s.violations.iter())
    }

    /// The report of one step.
    ///
    /// ```
    /// # use realtime_agents::model::conformance::{Report, Step};
    /// # fn check(report: Report) {
    /// let close = report.step(Step::Close);
    /// # let _ = close;
    /// # }
    /// ```
    pub fn step(&self, step: Step) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.step == step)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let violations = self.violations().count();
        if violations == 0 {
            writeln!(f, "conformance: passed")?;
        } else {
            writeln!(f, "conformance: {violations} violation(s)")?;
        }
        for step in &self.steps {
            match &step.outcome {
                Outcome::Passed => writeln!(f, "  {}: passed", step.step)?,
                Outcome::Failed => writeln!(f, "  {}: FAILED", step.step)?,
                Outcome::Skipped(why) => writeln!(f, "  {}: skipped ({why})", step.step)?,
            }
            for violation in &step.violations {
                writeln!(
                    f,
                    "    - expected {}; got {}",
                    violation.expected, violation.got
                )?;
            }
            for note in &step.notes {
                writeln!(f, "    note: {note}")?;
            }
        }
        Ok(())
    }
}

/// Drives `model` through the contract, one fresh connection per [`Step`], and reports what
/// it found. Never panics on what the backend does.
///
/// ```
/// use realtime_agents::model::conformance::{self, Options};
/// use realtime_agents::simulator::Simulator;
/// use realtime_agents::model::OpenAIRealtimeWebSocketModel;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> realtime_agents::Result<()> {
/// let sim = Simulator::builder().speed(0.0).start().await?;
/// let model = OpenAIRealtimeWebSocketModel::builder().url(sim.url()).build();
/// let report = conformance::run(&model, &Options::default()).await;
/// assert!(report.passed(), "{report}");
/// # Ok(()) }
/// ```
pub async fn run(model: &dyn RealtimeModel, options: &Options) -> Report {
    let mut report = Report {
        capabilities: None,
        steps: Vec::new(),
    };
    for step in Step::ALL {
        let skip = match (&report.capabilities, step) {
            (None, Step::Connect) => None,
            (None, _) => Some("no connection could be opened".to_owned()),
            (Some(caps), step) => skip_reason(caps, step),
        };
        let result = match skip {
            Some(why) => StepReport::new(step, Outcome::Skipped(why)),
            None => run_step(model, options, step, &mut report.capabilities).await,
        };
        report.steps.push(result);
    }
    report
}

/// Why a step cannot run on a backend with these capabilities.
fn skip_reason(caps: &Capabilities, step: Step) -> Option<String> {
    match step {
        Step::ToolRoundTrip if !caps.function_calls => {
            Some("the backend declares function_calls: false".to_owned())
        }
        Step::Interrupt if !caps.response_cancel => {
            Some("the backend declares response_cancel: false".to_owned())
        }
        _ => None,
    }
}

async fn run_step(
    model: &dyn RealtimeModel,
    options: &Options,
    step: Step,
    capabilities: &mut Option<Capabilities>,
) -> StepReport {
    let mut settings = options.settings.clone();
    if step == Step::ToolRoundTrip {
        settings.tools = Some(vec![options.tool.clone()]);
    }
    let connect = tokio::time::timeout(options.timeout, model.connect(settings)).await;
    let conn = match connect {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => return failed(step, "a connection", format!("an error: {error}")),
        Err(_) => {
            let got = format!("no connection within {:?}", options.timeout);
            return failed(step, "a connection", got);
        }
    };
    let caps = conn.capabilities();
    capabilities.get_or_insert_with(|| caps.clone());
    let mut probe = Probe::new(step, conn, caps, options);
    match step {
        Step::Connect => probe.connect().await,
        Step::TextTurn => probe.text_turn().await,
        Step::ToolRoundTrip => probe.tool_round_trip().await,
        Step::Interrupt => probe.interrupt().await,
        Step::History => probe.history().await,
        Step::Close => probe.close_step().await,
    }
    if step != Step::Close {
        probe.close_quietly().await;
    }
    probe.finish()
}

fn failed(step: Step, expected: &str, got: String) -> StepReport {
    let mut report = StepReport::new(step, Outcome::Failed);
    report.violations.push(Violation::new(step, expected, got));
    report
}

/// A short description of an event, for violations.
fn describe(event: &ModelEvent) -> String {
    match event {
        ModelEvent::SessionUpdated { output_format, .. } => {
            format!("SessionUpdated({output_format:?})")
        }
        ModelEvent::ResponseStarted { response_id } => format!("ResponseStarted({response_id})"),
        ModelEvent::ResponseDone {
            response_id,
            status,
            ..
        } => format!("ResponseDone({response_id}, {status:?})"),
        ModelEvent::Audio {
            response_id, data, ..
        } => format!("Audio({response_id}, {} bytes)", data.len()),
        ModelEvent::AudioDone { item_id, .. } => format!("AudioDone({item_id})"),
        ModelEvent::TranscriptDelta { delta, .. } => format!("TranscriptDelta({delta:?})"),
        ModelEvent::InputTranscriptDelta { delta, .. } => {
            format!("InputTranscriptDelta({delta:?})")
        }
        ModelEvent::InputTranscriptCompleted { transcript, .. } => {
            format!("InputTranscriptCompleted({transcript:?})")
        }
        ModelEvent::Item(item) => match item {
            RealtimeItem::Message(m) => format!(
                "Item({:?} message {}, {:?}, {:?})",
                m.role,
                m.item_id,
                m.status,
                m.text()
            ),
            RealtimeItem::ToolCall(t) => format!("Item(call {} of {})", t.item_id, t.name),
        },
        ModelEvent::ItemDeleted { item_id } => format!("ItemDeleted({item_id})"),
        ModelEvent::FunctionCall {
            name, arguments, ..
        } => format!("FunctionCall({name}, {arguments})"),
        ModelEvent::SpeechStarted { .. } => "SpeechStarted".to_owned(),
        ModelEvent::SpeechStopped { .. } => "SpeechStopped".to_owned(),
        ModelEvent::InputAudioTimeout { .. } => "InputAudioTimeout".to_owned(),
        ModelEvent::Error(error) => format!("Error({error})"),
        ModelEvent::Raw(_) => "Raw".to_owned(),
        ModelEvent::Closed { error: None } => "Closed(None)".to_owned(),
        ModelEvent::Closed { error: Some(error) } => format!("Closed({error})"),
    }
}

/// A fresh item id for items the kit creates (at most 32 characters).
fn kit_item_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("item_kit{}x{n}", std::process::id())
}

/// One response, as received.
struct Response {
    id: String,
    status: ResponseStatus,
    usage: Option<Usage>,
    /// Its events from `ResponseStarted` to `ResponseDone`, both included.
    events: Vec<ModelEvent>,
}

impl Response {
    fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                ModelEvent::TranscriptDelta { delta, .. } => Some(delta.as_str()),
                _ => None,
            })
            .collect()
    }

    fn audio_bytes(&self) -> usize {
        self.events
            .iter()
            .map(|e| match e {
                ModelEvent::Audio { data, .. } => data.len(),
                _ => 0,
            })
            .sum()
    }
}

/// One connection under test, with the rules every event must follow.
struct Probe<'a> {
    step: Step,
    conn: Box<dyn RealtimeConnection>,
    caps: Capabilities,
    options: &'a Options,
    violations: Vec<Violation>,
    notes: Vec<String>,
    /// Every event so far.
    log: Vec<ModelEvent>,
    recent: VecDeque<String>,
    closed: bool,
    ended: bool,
    session_updated: bool,
    format: AudioFormat,
    started: HashSet<String>,
    /// Responses started and not ended.
    active: HashSet<String>,
    ended_responses: HashSet<String>,
}

impl<'a> Probe<'a> {
    fn new(
        step: Step,
        conn: Box<dyn RealtimeConnection>,
        caps: Capabilities,
        options: &'a Options,
    ) -> Self {
        Self {
            step,
            conn,
            caps,
            options,
            violations: Vec::new(),
            notes: Vec::new(),
            log: Vec::new(),
            recent: VecDeque::new(),
            closed: false,
            ended: false,
            session_updated: false,
            format: options.settings.output_format.unwrap_or_default(),
            started: HashSet::new(),
            active: HashSet::new(),
            ended_responses: HashSet::new(),
        }
    }

    fn finish(self) -> StepReport {
        let outcome = if self.violations.is_empty() {
            Outcome::Passed
        } else {
            Outcome::Failed
        };
        StepReport {
            step: self.step,
            outcome,
            violations: self.violations,
            notes: self.notes,
        }
    }

    fn violation(&mut self, expected: impl Into<String>, got: impl Into<String>) {
        self.violations
            .push(Violation::new(self.step, expected, got));
    }

    fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    fn recent(&self) -> String {
        if self.recent.is_empty() {
            "no events".to_owned()
        } else {
            let recent: Vec<&str> = self.recent.iter().map(String::as_str).collect();
            format!("last events: {}", recent.join(", "))
        }
    }

    fn send(&mut self, command: ModelCommand) -> bool {
        let what = format!("{command:?}");
        match self.conn.send(command) {
            Ok(()) => true,
            Err(error) => {
                let shown: String = what.chars().take(60).collect();
                self.violation(
                    format!("send({shown}…) to queue the command"),
                    format!("{error}"),
                );
                false
            }
        }
    }

    /// The next event before `deadline`; `None` at the deadline or after the end.
    async fn next(&mut self, deadline: Instant) -> Option<ModelEvent> {
        if self.ended {
            return None;
        }
        let conn = &mut self.conn;
        let polled = tokio::time::timeout_at(deadline, poll_fn(|cx| conn.poll_event(cx))).await;
        match polled {
            Ok(Some(event)) => {
                self.check(&event);
                if self.recent.len() == RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back(describe(&event));
                self.log.push(event.clone());
                Some(event)
            }
            Ok(None) => {
                self.ended = true;
                if !self.closed {
                    self.violation("Closed before poll_event gives Ready(None)", "Ready(None)");
                }
                None
            }
            Err(_) => None,
        }
    }

    /// The rules every event follows.
    fn check(&mut self, event: &ModelEvent) {
        if self.closed {
            self.violation("nothing after Closed", describe(event));
            return;
        }
        match event {
            ModelEvent::SessionUpdated { output_format, .. } => {
                self.session_updated = true;
                self.format = *output_format;
                if self.caps.audio_output && !self.caps.supports_output_format(*output_format) {
                    self.violation(
                        format!(
                            "an output format among the declared {:?}",
                            self.caps.output_formats
                        ),
                        describe(event),
                    );
                }
            }
            ModelEvent::ResponseStarted { response_id } => {
                if response_id.is_empty() || !self.started.insert(response_id.clone()) {
                    self.violation("a new, non-empty response id", describe(event));
                }
                if let Some(other) = self.active.iter().next().cloned() {
                    self.violation(
                        format!("one response at a time (ResponseDone of {other} first)"),
                        describe(event),
                    );
                }
                self.active.insert(response_id.clone());
            }
            ModelEvent::ResponseDone { response_id, .. } => {
                if !self.active.remove(response_id) {
                    let why = if self.ended_responses.contains(response_id) {
                        "a second ResponseDone"
                    } else {
                        "a ResponseDone without ResponseStarted"
                    };
                    self.violation(
                        "exactly one ResponseDone per started response",
                        format!("{why}: {}", describe(event)),
                    );
                }
                self.ended_responses.insert(response_id.clone());
            }
            ModelEvent::Audio {
                response_id, data, ..
            } => {
                self.check_in_response(response_id, event);
                let sample = self.format.bytes_per_sample() as usize;
                if data.is_empty() || data.len() % sample != 0 {
                    self.violation(
                        format!("audio in whole {:?} samples", self.format),
                        describe(event),
                    );
                }
            }
            ModelEvent::TranscriptDelta { response_id, .. } => {
                self.check_in_response(response_id, event)
            }
            ModelEvent::FunctionCall {
                response_id,
                call_id,
                ..
            } => {
                let delegated = self.caps.delegated_tools && response_id.is_empty();
                if !delegated {
                    self.check_in_response(response_id, event);
                }
                if call_id.is_empty() {
                    self.violation("a non-empty call id", describe(event));
                }
            }
            ModelEvent::Error(_) => {
                self.violation("no Error event", describe(event));
            }
            ModelEvent::Closed { error } => {
                self.closed = true;
                if let Some(error) = error {
                    self.violation(
                        "the connection to stay open until the kit closes it",
                        format!("Closed({error})"),
                    );
                }
            }
            _ => {}
        }
    }

    fn check_in_response(&mut self, response_id: &str, event: &ModelEvent) {
        if !self.active.contains(response_id) {
            let why = if self.ended_responses.contains(response_id) {
                "after its ResponseDone"
            } else {
                "outside any started response"
            };
            self.violation(
                "outputs only between their response's ResponseStarted and ResponseDone",
                format!("{} {why}", describe(event)),
            );
        }
    }

    /// Reads events until `pick` takes one; a violation naming `expected` when none comes.
    async fn expect<T>(
        &mut self,
        expected: &str,
        mut pick: impl FnMut(&ModelEvent) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + self.options.timeout;
        loop {
            match self.next(deadline).await {
                Some(event) => {
                    if let Some(found) = pick(&event) {
                        return Some(found);
                    }
                }
                None => {
                    let why = if self.ended {
                        "the connection ended".to_owned()
                    } else {
                        format!("nothing within {:?}", self.options.timeout)
                    };
                    let got = format!("{why} ({})", self.recent());
                    self.violation(expected, got);
                    return None;
                }
            }
        }
    }

    /// Listens for [`Options::quiet`]: any event `bad` picks is a violation of `expected`.
    async fn quiet(&mut self, expected: &str, bad: impl Fn(&ModelEvent) -> bool) {
        let deadline = Instant::now() + self.options.quiet;
        while let Some(event) = self.next(deadline).await {
            if bad(&event) {
                self.violation(expected, describe(&event));
            }
        }
    }

    /// The next response, from its start to its end.
    async fn response(&mut self, expected: &str) -> Option<Response> {
        let what = format!("ResponseStarted of {expected}");
        let id = self
            .expect(&what, |e| match e {
                ModelEvent::ResponseStarted { response_id } => Some(response_id.clone()),
                _ => None,
            })
            .await?;
        let from = self.log.len() - 1;
        let what = format!("ResponseDone of {expected} ({id})");
        let (status, usage) = self
            .expect(&what, |e| match e {
                ModelEvent::ResponseDone {
                    response_id,
                    status,
                    usage,
                } if *response_id == id => Some((*status, *usage)),
                _ => None,
            })
            .await?;
        Some(Response {
            id,
            status,
            usage,
            events: self.log[from..].to_vec(),
        })
    }

    /// A response that said something and completed.
    fn check_answer(&mut self, response: &Response, expected: &str) {
        if response.status != ResponseStatus::Completed {
            self.violation(
                format!("{expected} to end Completed"),
                format!("ResponseDone({}, {:?})", response.id, response.status),
            );
        }
        if response.text().trim().is_empty() && response.audio_bytes() == 0 {
            self.violation(
                format!("{expected} to say something (TranscriptDelta or Audio)"),
                format!("nothing in {}", response.id),
            );
        }
        // Every audio item ends with AudioDone after its last chunk.
        let mut open: HashMap<&str, bool> = HashMap::new();
        for event in &response.events {
            match event {
                ModelEvent::Audio { item_id, .. } => {
                    open.insert(item_id, true);
                }
                ModelEvent::AudioDone { item_id, .. } => {
                    open.insert(item_id, false);
                }
                _ => {}
            }
        }
        let mut unfinished: Vec<&str> = open
            .iter()
            .filter(|(_, open)| **open)
            .map(|(id, _)| *id)
            .collect();
        unfinished.sort_unstable();
        if !unfinished.is_empty() {
            self.violation(
                "AudioDone after each audio item's last chunk, before ResponseDone",
                format!("no AudioDone for {}", unfinished.join(", ")),
            );
        }
        let items = response.events.iter().any(|e| {
            matches!(e, ModelEvent::Item(RealtimeItem::Message(m)) if m.role == Role::Assistant)
        });
        if !items && !response.text().is_empty() {
            self.note(format!(
                "response {} sent no Item for its message (a should: the history keeps it in progress)",
                response.id
            ));
        }
        if let Some(usage) = response.usage {
            if usage.total_tokens < usage.input_tokens.saturating_add(usage.output_tokens) {
                self.note(format!(
                    "response {}: total_tokens {} is less than input {} + output {}",
                    response.id, usage.total_tokens, usage.input_tokens, usage.output_tokens
                ));
            }
        }
    }

    /// Checks that the user message `text` was echoed as a user item (looking at every event
    /// since `from`), reading more events if it has not come yet.
    async fn check_echo(&mut self, from: usize, text: &str) {
        let is_echo = |e: &ModelEvent| match e {
            ModelEvent::Item(RealtimeItem::Message(m)) => {
                m.role == Role::User && m.text() == text && !m.item_id.is_empty()
            }
            _ => false,
        };
        if self.log[from..].iter().any(is_echo) {
            return;
        }
        let expected = format!("an Item echoing the user message {text:?} (role user, an id)");
        self.expect(&expected, |e| is_echo(e).then_some(())).await;
    }

    async fn wait_session_updated(&mut self) {
        if !self.session_updated {
            self.expect("SessionUpdated before any command", |e| {
                matches!(e, ModelEvent::SessionUpdated { .. }).then_some(())
            })
            .await;
        }
    }

    async fn connect(&mut self) {
        self.wait_session_updated().await;
        if let Some(wanted) = self.options.settings.output_format {
            if self.session_updated && self.format != wanted {
                let got = format!("SessionUpdated({:?})", self.format);
                self.violation(format!("the output format asked for ({wanted:?})"), got);
            }
        }
    }

    fn ask(&mut self, text: &str) -> usize {
        let from = self.log.len();
        self.send(ModelCommand::UserMessage {
            message: text.into(),
            respond: true,
        });
        from
    }

    async fn text_turn(&mut self) {
        self.wait_session_updated().await;
        let prompt = self.options.text_prompt.clone();
        for turn in ["the first text turn", "the second text turn"] {
            let from = self.ask(&prompt);
            let Some(response) = self.response(turn).await else {
                return;
            };
            self.check_answer(&response, turn);
            self.check_echo(from, &prompt).await;
        }
    }

    async fn tool_round_trip(&mut self) {
        self.wait_session_updated().await;
        let prompt = self.options.tool_prompt.clone();
        let tool = self.options.tool.name.clone();
        self.ask(&prompt);
        let Some(response) = self.response("the response to the tool prompt").await else {
            return;
        };
        let calls: Vec<(String, String, String)> = response
            .events
            .iter()
            .filter_map(|e| match e {
                ModelEvent::FunctionCall {
                    call_id,
                    name,
                    arguments,
                    ..
                } => Some((call_id.clone(), name.clone(), arguments.clone())),
                _ => None,
            })
            .collect();
        let ours: Vec<&(String, String, String)> =
            calls.iter().filter(|(_, name, _)| *name == tool).collect();
        if ours.is_empty() {
            let got: Vec<String> = calls.iter().map(|(_, n, _)| n.clone()).collect();
            self.violation(
                format!("a FunctionCall of `{tool}` in the response to {prompt:?}"),
                if got.is_empty() {
                    format!("no call; the response said {:?}", response.text())
                } else {
                    format!("calls of {}", got.join(", "))
                },
            );
            return;
        }
        for (call_id, _, arguments) in &ours {
            let parsed: Option<Value> = serde_json::from_str(arguments).ok();
            if !parsed.as_ref().is_some_and(Value::is_object) {
                self.violation(
                    "the call's arguments as a JSON object",
                    format!("{arguments:?} (call {call_id})"),
                );
            }
            let item = response.events.iter().any(|e| {
                matches!(e, ModelEvent::Item(RealtimeItem::ToolCall(t)) if t.call_id == *call_id)
            });
            if !item {
                self.note(format!(
                    "call {call_id} came without its Item (a should: the history records calls by it)"
                ));
            }
        }
        if response.status != ResponseStatus::Completed {
            self.violation(
                "the response with the call to end Completed",
                format!("ResponseDone({}, {:?})", response.id, response.status),
            );
        }
        let output = self.options.tool_output.clone();
        for (call_id, ..) in &calls {
            self.send(ModelCommand::ToolOutput {
                call_id: call_id.clone(),
                output: output.clone(),
                respond: false,
            });
        }
        if !self.caps.auto_tool_reply {
            self.send(ModelCommand::CreateResponse);
        }
        let expected = "the response to the tool output";
        let Some(answer) = self.response(expected).await else {
            return;
        };
        self.check_answer(&answer, expected);
        let repeated = answer.events.iter().any(|e| {
            matches!(e, ModelEvent::FunctionCall { call_id, .. } if calls.iter().any(|(c, ..)| c == call_id))
        });
        if repeated {
            self.violation(
                "no call id repeated after its output",
                "the same call id again",
            );
        }
    }

    async fn interrupt(&mut self) {
        self.wait_session_updated().await;
        // Nothing active: nothing happens.
        self.send(ModelCommand::Interrupt {
            cancel_response: true,
            cut: None,
        });
        self.quiet("an interrupt with nothing active to change nothing", |e| {
            matches!(
                e,
                ModelEvent::ResponseStarted { .. }
                    | ModelEvent::ResponseDone { .. }
                    | ModelEvent::Closed { .. }
            )
        })
        .await;
        // During a long answer: cancelled, and nothing of it after its end.
        let prompt = self.options.long_prompt.clone();
        self.ask(&prompt);
        let Some(id) = self
            .expect("ResponseStarted of the long answer", |e| match e {
                ModelEvent::ResponseStarted { response_id } => Some(response_id.clone()),
                _ => None,
            })
            .await
        else {
            return;
        };
        // Wait for audio to cut when the backend truncates and speaks; else for any output.
        let modalities = self.options.settings.output_modalities.as_deref();
        let text_only = modalities == Some(&[Modality::Text][..]);
        let want_audio = self.caps.truncation && self.caps.audio_output && !text_only;
        let first = self
            .expect("the long answer to start saying something", |e| match e {
                ModelEvent::Audio {
                    response_id,
                    item_id,
                    content_index,
                    data,
                } if *response_id == id => {
                    Some(Some((item_id.clone(), *content_index, data.len())))
                }
                ModelEvent::TranscriptDelta { response_id, .. }
                    if *response_id == id && !want_audio =>
                {
                    Some(None)
                }
                ModelEvent::ResponseDone { response_id, .. } if *response_id == id => Some(None),
                _ => None,
            })
            .await;
        if self.ended_responses.contains(&id) {
            self.violation(
                "a long answer, still going when it starts saying something",
                format!("{id} ended before any audio or text"),
            );
            return;
        }
        let cut = match first.flatten() {
            Some((item_id, content_index, bytes)) if self.caps.truncation => {
                let heard = (self.format.bytes_to_ms(bytes) / 2.0).floor() as u64;
                (heard > 0).then_some(AudioCut {
                    item_id,
                    content_index,
                    audio_end_ms: heard,
                })
            }
            _ => None,
        };
        let sent_cut = cut.is_some();
        self.send(ModelCommand::Interrupt {
            cancel_response: true,
            cut,
        });
        let what = format!("ResponseDone of the interrupted answer ({id})");
        let Some(status) = self
            .expect(&what, |e| match e {
                ModelEvent::ResponseDone {
                    response_id,
                    status,
                    ..
                } if *response_id == id => Some(*status),
                _ => None,
            })
            .await
        else {
            return;
        };
        match status {
            ResponseStatus::Cancelled => {}
            ResponseStatus::Completed => self.note(format!(
                "{id} completed before the interrupt took effect: cancellation was not exercised \
                 (use a longer long_prompt)"
            )),
            other => self.violation(
                "the interrupted answer to end Cancelled",
                format!("ResponseDone({id}, {other:?})"),
            ),
        }
        if !sent_cut && self.caps.truncation {
            self.note("no audio to cut: truncation was not exercised");
        }
        // Outputs of the cancelled response after its end are caught by `check`.
        self.quiet("nothing more of the interrupted answer", |_| false)
            .await;
        // The connection still answers.
        let prompt = self.options.text_prompt.clone();
        self.ask(&prompt);
        let expected = "the response after the interrupt";
        if let Some(response) = self.response(expected).await {
            self.check_answer(&response, expected);
        }
    }

    async fn history(&mut self) {
        self.wait_session_updated().await;
        let prompt = self.options.text_prompt.clone();
        let from = self.log.len();
        self.send(ModelCommand::UserMessage {
            message: prompt.as_str().into(),
            respond: false,
        });
        self.check_echo(from, &prompt).await;
        self.quiet("no response to a message sent without respond", |e| {
            matches!(e, ModelEvent::ResponseStarted { .. })
        })
        .await;
        if !self.caps.create_items {
            self.note("create_items: false, CreateItem not checked");
            return;
        }
        let first = self
            .create_item(Role::User, "A note from the conformance kit.", None)
            .await;
        if !self.caps.edit_items {
            self.note("edit_items: false, positioned CreateItem and DeleteItem not checked");
            return;
        }
        let second = self
            .create_item(Role::Assistant, "A reply placed by the kit.", Some(first))
            .await;
        self.send(ModelCommand::DeleteItem {
            item_id: second.clone(),
        });
        let expected = format!("ItemDeleted({second})");
        self.expect(&expected, |e| {
            matches!(e, ModelEvent::ItemDeleted { item_id } if *item_id == second).then_some(())
        })
        .await;
        self.quiet("no response to created items", |e| {
            matches!(e, ModelEvent::ResponseStarted { .. })
        })
        .await;
    }

    /// Creates a text item with a fresh id after `previous`, and expects its echo; returns
    /// the id.
    async fn create_item(&mut self, role: Role, text: &str, previous: Option<String>) -> String {
        let id = kit_item_id();
        let mut item = RealtimeItem::text(role, text);
        item.set_item_id(id.clone());
        self.send(ModelCommand::CreateItem {
            item: Box::new(item),
            previous_item_id: previous,
        });
        let expected = format!("an Item echoing the created item with its id {id}");
        self.expect(&expected, |e| {
            matches!(e, ModelEvent::Item(item) if item.item_id() == id).then_some(())
        })
        .await;
        id
    }

    async fn close_step(&mut self) {
        self.wait_session_updated().await;
        // Let whatever the connection says on its own arrive first.
        self.quiet("", |_| false).await;
        let timeout = self.options.timeout;
        let conn = &mut self.conn;
        let closed = tokio::time::timeout(timeout, poll_fn(|cx| conn.poll_close(cx))).await;
        if closed.is_err() {
            self.violation(
                "poll_close to finish",
                format!("still pending after {timeout:?}"),
            );
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut after = Vec::new();
        loop {
            let conn = &mut self.conn;
            match tokio::time::timeout_at(deadline, poll_fn(|cx| conn.poll_event(cx))).await {
                Ok(Some(event)) => after.push(event),
                Ok(None) => break,
                Err(_) => {
                    self.violation(
                        "poll_event after poll_close to be Ready",
                        "Pending for a second",
                    );
                    return;
                }
            }
            if after.len() > 1 {
                break;
            }
        }
        match after.as_slice() {
            [] | [ModelEvent::Closed { error: None }] => {}
            [ModelEvent::Closed { error: Some(error) }] => self.violation(
                "Closed { error: None } after a close the client asked for",
                format!("Closed({error})"),
            ),
            events => {
                let got: Vec<String> = events.iter().map(describe).collect();
                self.violation(
                    "at most Closed { error: None } after poll_close, then Ready(None)",
                    got.join(", "),
                );
            }
        }
        let conn = &mut self.conn;
        let again = tokio::time::timeout_at(
            Instant::now() + Duration::from_secs(1),
            poll_fn(|cx| conn.poll_event(cx)),
        )
        .await;
        if !matches!(again, Ok(None)) {
            self.violation(
                "Ready(None) again on the next poll",
                match again {
                    Ok(Some(event)) => describe(&event),
                    _ => "Pending".to_owned(),
                },
            );
        }
        match self.conn.send(ModelCommand::CreateResponse) {
            Err(Error::SessionClosed) => {}
            Err(error) => self.violation("send to fail with SessionClosed", format!("{error}")),
            Ok(()) => self.violation("send to fail with SessionClosed", "Ok(())"),
        }
        let conn = &mut self.conn;
        let again = tokio::time::timeout(timeout, poll_fn(|cx| conn.poll_close(cx))).await;
        if again.is_err() {
            self.violation("a second poll_close to be Ready", "Pending");
        }
        self.ended = true;
    }

    /// Closes the connection at the end of a step (not checked: the close step does that).
    async fn close_quietly(&mut self) {
        if !self.ended && !self.closed {
            let conn = &mut self.conn;
            let _ =
                tokio::time::timeout(self.options.timeout, poll_fn(|cx| conn.poll_close(cx))).await;
        }
    }
}

/// Runs [`run`] and turns a failed report into an error, for `?` in tests.
///
/// ```
/// use realtime_agents::model::conformance::{self, Options};
/// use realtime_agents::testing::{Reply, ScriptedModel};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let silent = ScriptedModel::new().responder(|_| Reply::text(""));
/// let error = conformance::check(&silent, &Options::default()).await.unwrap_err();
/// assert!(error.to_string().contains("to say something"));
/// # }
/// ```
pub async fn check(model: &dyn RealtimeModel, options: &Options) -> Result<Report> {
    let report = run(model, options).await;
    if report.passed() {
        Ok(report)
    } else {
        Err(Error::Protocol(format!(
            "the backend broke the contract:\n{report}"
        )))
    }
}
