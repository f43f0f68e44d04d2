//! The crate's error type.

/// A specialised `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error reported by the server in an `error` event.
///
/// The session stays open after a server error: it is delivered as
/// [`RealtimeSessionEvent::Error`](crate::RealtimeSessionEvent::Error).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ServerError {
    /// Error class, e.g. `invalid_request_error`.
    pub kind: String,
    /// Machine-readable code, e.g. `conversation_already_has_active_response`.
    pub code: Option<String>,
    /// Human-readable message.
    pub message: String,
    /// The parameter the error refers to, if any.
    pub param: Option<String>,
    /// The `event_id` of the client event that caused the error, if any.
    pub event_id: Option<String>,
}

impl ServerError {
    /// Builds a server error from its class and message.
    ///
    /// ```
    /// let e = realtime_agents::ServerError::new("invalid_request_error", "bad");
    /// assert_eq!(e.message, "bad");
    /// ```
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            ..Self::default()
        }
    }

    /// Sets the machine-readable code.
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} ({code}): {}", self.kind, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

/// Everything that can go wrong in a realtime session.
///
/// Match on the variant to decide what to do; new variants may be added.
/// No variant ever carries an API key: URLs and messages are redacted.
///
/// ```
/// use realtime_agents::Error;
/// let err = Error::Closed { code: Some(1001), reason: "maximum duration reached".into() };
/// assert!(err.to_string().contains("1001"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (e.g. no API key, duplicate tool names).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The WebSocket could not be opened. `status` is the HTTP status of a refused upgrade
    /// (401 for bad credentials).
    #[error("could not connect to {url}{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Connect {
        /// The URL without its query string.
        url: String,
        /// HTTP status of a refused upgrade.
        status: Option<u16>,
        /// What went wrong (the response body for a refused upgrade).
        message: String,
    },
    /// The server reported an error.
    #[error("server error: {0}")]
    Server(ServerError),
    /// The connection closed. `code` and `reason` come from the close frame, when there was one.
    #[error("connection closed{}{}", code.map(|c| format!(" with code {c}")).unwrap_or_default(), if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Closed {
        /// WebSocket close code.
        code: Option<u16>,
        /// Close reason.
        reason: String,
    },
    /// A message from the server could not be understood, or I/O failed mid-session.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A tool failed, panicked or does not exist.
    #[error("tool `{name}` failed: {message}")]
    Tool {
        /// Tool name as the model called it.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// An output guardrail failed to run (it panicked or was cancelled). The response was
    /// not checked by it.
    #[error("guardrail `{name}` failed: {message}")]
    Guardrail {
        /// Guardrail name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// An operation did not finish in time (a tool, or the session's `max_duration`).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The session was cancelled from outside: by the run's
    /// [cancellation token](crate::RealtimeRunConfig::cancellation_token), its
    /// [`cancel_check`](crate::RealtimeRunConfig::cancel_check), or
    /// [`RealtimeSessionHandle::cancel`](crate::RealtimeSessionHandle::cancel). `reason` is
    /// what the canceller said.
    ///
    /// ```
    /// let e = realtime_agents::Error::Cancelled { reason: "caller hung up".into() };
    /// assert_eq!(e.to_string(), "cancelled: caller hung up");
    /// ```
    #[error("cancelled: {reason}")]
    Cancelled {
        /// Why, in the canceller's words.
        reason: String,
    },
    /// A backend broke the contract of [`RealtimeConnection`](crate::model::RealtimeConnection)
    /// (an event out of order, a response that never started...). The session reports it and
    /// goes on as best it can.
    #[error("backend broke its contract: {0}")]
    Contract(String),
    /// The session spent more than its [`Budget`](crate::cost::Budget)
    /// ([`RealtimeRunConfig::budget`](crate::RealtimeRunConfig::budget)) and was ended after
    /// the response that crossed it. `tokens` is what the session used (input plus output),
    /// `cost_usd` what that cost at the runner's prices (`None` when they have no price for
    /// the model).
    ///
    /// ```
    /// use realtime_agents::{Error, cost::Budget};
    /// let e = Error::BudgetExceeded { budget: Budget::tokens(1_000), tokens: 1_250, cost_usd: None };
    /// assert_eq!(e.to_string(), "budget of 1000 tokens exceeded: 1250 tokens used");
    /// let e = Error::BudgetExceeded { budget: Budget::usd(0.01), tokens: 900, cost_usd: Some(0.0123) };
    /// assert_eq!(e.to_string(), "budget of $0.0100 exceeded: 900 tokens used, $0.0123");
    /// ```
    #[error("budget of {budget} exceeded: {tokens} tokens used{}", cost_usd.map(|c| format!(", ${c:.4}")).unwrap_or_default())]
    BudgetExceeded {
        /// The budget that was exceeded.
        budget: crate::cost::Budget,
        /// Tokens the session used, input plus output.
        tokens: u64,
        /// What they cost in US dollars, when the model has a price.
        cost_usd: Option<f64>,
    },
    /// The session is closed; nothing more can be sent.
    #[error("session is closed")]
    SessionClosed,
}

impl Error {
    /// The same error with every configured secret replaced in its texts.
    pub(crate) fn redacted(self, redactor: &crate::Redactor) -> Self {
        if redactor.is_empty() {
            return self;
        }
        let r = |text: String| redactor.redact_string(text);
        match self {
            Self::Config(m) => Self::Config(r(m)),
            Self::Connect {
                url,
                status,
                message,
            } => Self::Connect {
                url: r(url),
                status,
                message: r(message),
            },
            Self::Server(mut e) => {
                e.message = r(e.message);
                e.param = e.param.map(r);
                Self::Server(e)
            }
            Self::Closed { code, reason } => Self::Closed {
                code,
                reason: r(reason),
            },
            Self::Protocol(m) => Self::Protocol(r(m)),
            Self::Tool { name, message } => Self::Tool {
                name,
                message: r(message),
            },
            Self::Guardrail { name, message } => Self::Guardrail {
                name,
                message: r(message),
            },
            Self::Timeout(m) => Self::Timeout(r(m)),
            Self::Cancelled { reason } => Self::Cancelled { reason: r(reason) },
            Self::Contract(m) => Self::Contract(r(m)),
            other => other,
        }
    }
}
