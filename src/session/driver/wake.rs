//! Which of the session task's sources woke it, so that each pass polls only those.
//!
//! The session task waits on several sources at once: the connection, the command channel,
//! running tools, running guardrails and the session's life (close, cancellation, time limit,
//! the application dropping its stream). A `select!` over all of them polls every source on
//! every wake-up, and most wake-ups (one per audio chunk each way) concern one source. Here
//! each source is polled with a waker of its own that records its bit before waking the task,
//! and the task's loop polls a source only when its bit is set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// The connection to the model.
pub(super) const CONNECTION: u32 = 1;
/// The command channel from the handles.
pub(super) const COMMANDS: u32 = 1 << 1;
/// Running tool calls.
pub(super) const TOOLS: u32 = 1 << 2;
/// Running guardrail checks.
pub(super) const GUARDRAILS: u32 = 1 << 3;
/// Close, cancellation, the time limit, the application dropping its stream.
pub(super) const LIFE: u32 = 1 << 4;
/// The deadline of the microphone audio batch.
pub(super) const MIC: u32 = 1 << 5;
const SOURCES: usize = 6;
const ALL: u32 = (1 << SOURCES) - 1;

struct Shared {
    ready: AtomicU32,
    task: AtomicWaker,
}

struct Source {
    shared: Arc<Shared>,
    bit: u32,
}

impl Wake for Source {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.ready.fetch_or(self.bit, Ordering::Release);
        self.shared.task.wake();
    }
}

/// The ready set and one waker per source.
pub(super) struct Wakes {
    shared: Arc<Shared>,
    wakers: [Waker; SOURCES],
}

impl Wakes {
    /// Every source starts ready, so that the first pass polls (and registers) all of them.
    pub(super) fn new() -> Self {
        let shared = Arc::new(Shared {
            ready: AtomicU32::new(ALL),
            task: AtomicWaker::new(),
        });
        let wakers = std::array::from_fn(|i| {
            Waker::from(Arc::new(Source {
                shared: shared.clone(),
                bit: 1 << i,
            }))
        });
        Self { shared, wakers }
    }

    /// A context whose waker marks `source` ready.
    pub(super) fn context(&self, source: u32) -> Context<'_> {
        Context::from_waker(&self.wakers[source.trailing_zeros() as usize])
    }

    /// Polls `source` again on the next pass (it had more than one pass's worth of work, or
    /// something new was added to it).
    pub(super) fn mark(&self, sources: u32) {
        self.shared.ready.fetch_or(sources, Ordering::Release);
    }

    /// Waits until at least one source is ready and takes the ready set.
    pub(super) async fn wait(&self) -> u32 {
        // Counts against the task's cooperative budget, so that a source that stays ready
        // cannot keep the task from yielding to the runtime.
        tokio::task::consume_budget().await;
        std::future::poll_fn(|cx| {
            self.shared.task.register(cx.waker());
            match self.shared.ready.swap(0, Ordering::Acquire) {
                0 => Poll::Pending,
                ready => Poll::Ready(ready),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    #[tokio::test]
    async fn reports_only_the_sources_that_woke() {
        let wakes = Wakes::new();
        assert_eq!(
            wakes.wait().await,
            ALL,
            "everything is polled once at first"
        );
        assert_eq!(wakes.wait().now_or_never(), None);

        wakes.context(TOOLS).waker().wake_by_ref();
        let owned = wakes.context(LIFE).waker().clone();
        owned.wake();
        assert_eq!(wakes.wait().await, TOOLS | LIFE);

        wakes.mark(COMMANDS);
        assert_eq!(wakes.wait().await, COMMANDS);
        assert_eq!(wakes.wait().now_or_never(), None);
    }

    #[tokio::test]
    async fn a_wake_from_another_task_resumes_the_waiter() {
        let wakes = Arc::new(Wakes::new());
        wakes.wait().await;
        let waker = wakes.context(CONNECTION).waker().clone();
        let waiter = {
            let wakes = wakes.clone();
            tokio::spawn(async move { wakes.wait().await })
        };
        tokio::task::yield_now().await;
        waker.wake();
        let ready = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(ready, CONNECTION);
    }
}
