//! Starting the session behind one call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::audio::AudioFormat;
use crate::model::{RealtimeModel, SessionSettings};
use crate::{
    PlaybackTracker, RealtimeAgent, RealtimeRunConfig, RealtimeRunner, RealtimeSession,
    SessionOptions,
};

use super::Transport;

/// What a call is, for tools (it is the session's run context: in a
/// [`FunctionTool::with_context`](crate::FunctionTool::with_context) tool,
/// `ctx.context.get::<CallInfo>()`), gateway events and logs.
///
/// ```
/// use realtime_agents::gateway::{CallInfo, Transport};
/// let call = CallInfo::new(Transport::Carrier("twilio"));
/// assert!(call.call_id.starts_with("call-"));
/// assert_eq!(call.carrier_call_id, None);
/// let mut call = call;
/// call.parameters.insert("token".into(), "s3cret".into());
/// assert!(!format!("{call:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallInfo {
    /// The gateway's id for the call, unique within the process (`call-…`); on every log line
    /// of the call (the `call_id` field of its span).
    pub call_id: String,
    /// Where the call came from.
    pub transport: Transport,
    /// The carrier's id for the call (Twilio `CallSid`, Telnyx `call_control_id`), once known.
    pub carrier_call_id: Option<String>,
    /// The carrier's id for the media stream (Twilio `streamSid`), once known.
    pub stream_id: Option<String>,
    /// Parameters the call was started with (Twilio `<Parameter>`s, `customParameters`).
    /// They may hold tokens: `Debug` shows their names only.
    pub parameters: BTreeMap<String, String>,
}

impl std::fmt::Debug for CallInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallInfo")
            .field("call_id", &self.call_id)
            .field("transport", &self.transport)
            .field("carrier_call_id", &self.carrier_call_id)
            .field("stream_id", &self.stream_id)
            .field("parameters", &self.parameters.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CallInfo {
    /// A call with a fresh id and nothing else known yet.
    pub fn new(transport: Transport) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Self {
            call_id: format!("call-{started:x}-{n}"),
            transport,
            carrier_call_id: None,
            stream_id: None,
            parameters: BTreeMap::new(),
        }
    }
}

/// What every call's session is made of: one runner for all calls, with each call's own
/// audio format, playback tracker and context as per-session options.
#[derive(Debug, Clone)]
pub(crate) struct SessionRecipe {
    runner: RealtimeRunner,
}

impl SessionRecipe {
    pub(crate) fn new(
        agent: Arc<RealtimeAgent>,
        model: Arc<dyn RealtimeModel>,
        config: RealtimeRunConfig,
        settings: SessionSettings,
    ) -> Self {
        let config = config.settings(settings);
        Self {
            runner: RealtimeRunner::new(agent)
                .shared_model(model)
                .config(config),
        }
    }

    /// Starts the session of one call: audio in `format` both ways, playback positions from
    /// `tracker`, `call` as the run context.
    pub(crate) async fn open(
        &self,
        call: &CallInfo,
        format: AudioFormat,
        tracker: Arc<dyn PlaybackTracker>,
    ) -> crate::Result<RealtimeSession> {
        let formats = SessionSettings::new()
            .input_format(format)
            .output_format(format);
        let options = SessionOptions::new()
            .context(call.clone())
            .settings(formats)
            .playback_tracker(tracker);
        self.runner.start(options).await
    }
}
