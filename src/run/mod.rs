//! Starting sessions: options for one session, saved sessions to resume, one-shot runs and
//! background runs.

mod dispatch;
mod oneshot;
mod options;
mod snapshot;

pub use dispatch::{RunHandle, RunStatus};
pub use oneshot::OneShotResult;
pub use options::SessionOptions;
pub use snapshot::SessionSnapshot;
