//! Starting sessions: options for one session, and saved sessions to resume.

mod options;
mod snapshot;

pub use options::SessionOptions;
pub use snapshot::SessionSnapshot;
