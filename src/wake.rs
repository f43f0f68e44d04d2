//! Which of a task's wake-up sources woke it, so that the task polls only those.
//!
//! A task that waits on several sources at once (`select!`) polls every one of them on every
//! wake-up, even though most wake-ups concern one source. Here each source is polled with a
//! waker of its own that records the source's bit before waking the task, and the task asks
//! which bits are set. The session task uses one bit per source (connection, commands,
//! tools...); the OpenAI transport uses one for its socket's read side.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

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

/// The ready set and one waker for each of `N` sources (source `i` is bit `1 << i`). A
/// source's waker is made the first time the source is polled: a session that never runs a
/// tool never allocates one for its tools.
pub(crate) struct Wakes<const N: usize> {
    shared: Arc<Shared>,
    wakers: [OnceLock<Waker>; N],
}

impl<const N: usize> Wakes<N> {
    /// All the sources' bits.
    pub(crate) const ALL: u32 = ((1u64 << N) - 1) as u32;

    /// Every source starts ready, so that the first pass polls (and registers) all of them.
    pub(crate) fn new() -> Self {
        let shared = Arc::new(Shared {
            ready: AtomicU32::new(Self::ALL),
            task: AtomicWaker::new(),
        });
        Self {
            shared,
            wakers: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// A context whose waker marks `source` (a single bit) ready.
    pub(crate) fn context(&self, source: u32) -> Context<'_> {
        let waker = self.wakers[source.trailing_zeros() as usize].get_or_init(|| {
            Waker::from(Arc::new(Source {
                shared: self.shared.clone(),
                bit: source,
            }))
        });
        Context::from_waker(waker)
    }

    /// Polls `source` again on the next pass (it had more than one pass's worth of work, or
    /// something new was added to it).
    pub(crate) fn mark(&self, sources: u32) {
        self.shared.ready.fetch_or(sources, Ordering::Release);
    }

    /// Takes the ready set (maybe empty); `cx`'s task is woken when a source becomes ready.
    pub(crate) fn take(&self, cx: &Context<'_>) -> u32 {
        self.shared.task.register(cx.waker());
        self.shared.ready.swap(0, Ordering::Acquire)
    }

    /// Takes the ready set (maybe empty) without asking to be woken: sources that become ready
    /// from now on only set their bits, until the next [`take`](Self::take) or
    /// [`wait`](Self::wait). The session task's wake-up coalescing sleeps this way.
    pub(crate) fn take_quietly(&self) -> u32 {
        drop(self.shared.task.take());
        self.shared.ready.swap(0, Ordering::Acquire)
    }

    /// Waits until at least one source is ready and takes the ready set.
    pub(crate) async fn wait(&self) -> u32 {
        // Counts against the task's cooperative budget, so that a source that stays ready
        // cannot keep the task from yielding to the runtime.
        tokio::task::consume_budget().await;
        std::future::poll_fn(|cx| match self.take(cx) {
            0 => Poll::Pending,
            ready => Poll::Ready(ready),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    const TOOLS: u32 = 1 << 2;
    const LIFE: u32 = 1 << 4;
    const COMMANDS: u32 = 1 << 1;
    const CONNECTION: u32 = 1;
    const ALL: u32 = Wakes::<5>::ALL;

    #[tokio::test]
    async fn reports_only_the_sources_that_woke() {
        let wakes = Wakes::<5>::new();
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
    async fn sources_that_fire_after_a_quiet_take_do_not_wake_the_task() {
        use std::sync::atomic::AtomicUsize;
        let wakes = Arc::new(Wakes::<5>::new());
        wakes.wait().await;
        let polls = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (wakes, polls) = (wakes.clone(), polls.clone());
            tokio::spawn(async move {
                let first = wakes.wait().await;
                assert_eq!(wakes.take_quietly(), 0);
                let mut sleep =
                    std::pin::pin!(tokio::time::sleep(std::time::Duration::from_millis(100)));
                std::future::poll_fn(|cx| {
                    polls.fetch_add(1, Ordering::Relaxed);
                    sleep.as_mut().poll(cx)
                })
                .await;
                (first, wakes.take_quietly())
            })
        };
        tokio::task::yield_now().await;
        wakes.context(CONNECTION).waker().wake_by_ref();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        wakes.context(TOOLS).waker().wake_by_ref();
        let (first, second) = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(first, CONNECTION);
        assert_eq!(
            second, TOOLS,
            "the bit set during the sleep is kept for the next take"
        );
        assert_eq!(
            polls.load(Ordering::Relaxed),
            2,
            "polled when the sleep starts and when it ends, not when TOOLS fired"
        );
    }

    #[tokio::test]
    async fn a_wake_from_another_task_resumes_the_waiter() {
        let wakes = Arc::new(Wakes::<5>::new());
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
