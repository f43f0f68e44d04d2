//! The bounded queues between a session's task and the rest of the application: events from
//! the task to the application's stream ([`RealtimeSession`]), commands from any number of
//! handles ([`RealtimeSessionHandle`]) to the task.
//!
//! A tokio `mpsc` channel would do, but it allocates a block of 32 slots for every channel up
//! front (5 KiB for events, 2 KiB for commands) and keeps it for the session's life. These
//! queues grow with what is waiting: a new session holds no queue memory, and a burst that grew
//! a queue past 32 slots gives them back once the reader has caught up. The hot path is one
//! uncontended lock on each side; writers that wait for room wait on a tokio [`Notify`], woken
//! one per value read, in the order they started waiting.
//!
//! [`RealtimeSession`]: super::RealtimeSession
//! [`RealtimeSessionHandle`]: super::RealtimeSessionHandle

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// Slots a drained queue keeps: enough for the usual one or two values in flight.
const KEEP: usize = 4;
/// A drained queue with more slots than this gives them back. Below it, a reader that keeps
/// catching up with a fast writer would otherwise free and regrow the same few slots over and
/// over.
const SHRINK_ABOVE: usize = 32;

struct State<T> {
    queue: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver_alive: bool,
    /// The reader, waiting for a value.
    receiver: Option<Waker>,
    /// Writers waiting for room.
    waiting: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Told, once per value read, while writers wait for room; told all when the reader goes.
    room: Notify,
    /// Told when the reader goes away.
    gone: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue of at most `capacity` values.
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            senders: 1,
            receiver_alive: true,
            receiver: None,
            waiting: 0,
        }),
        room: Notify::new(),
        gone: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// Why [`Sender::try_send`] gave the value back.
pub(crate) enum TrySendError<T> {
    /// The queue holds `capacity` values.
    Full(T),
    /// The reader is gone.
    Closed,
}

/// What [`Sender::offer`] did with a value.
enum Offer<T> {
    Queued,
    Full(T),
    Closed(T),
}

/// A writing end; clones write to the same queue.
pub(crate) struct Sender<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
    /// Queues `value` if there is room and someone to read it.
    // The value comes back when the queue is full, as with `mpsc::Sender::try_send`.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.offer(value, false) {
            Offer::Queued => Ok(()),
            Offer::Full(value) => Err(TrySendError::Full(value)),
            Offer::Closed(_) => Err(TrySendError::Closed),
        }
    }

    /// Queues `value` if it can; when the queue is full and `wait` is set, counts the caller
    /// as waiting for room (it then waits in [`wait_for_room`](Self::wait_for_room)).
    fn offer(&self, value: T, wait: bool) -> Offer<T> {
        let mut state = self.0.lock();
        if !state.receiver_alive {
            return Offer::Closed(value);
        }
        if state.queue.len() >= state.capacity {
            state.waiting += usize::from(wait);
            return Offer::Full(value);
        }
        state.queue.push_back(value);
        let waker = state.receiver.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Offer::Queued
    }

    /// Waits on `room` (enabled before the caller looked), then stops counting as waiting,
    /// also when the wait is dropped half-way (a `send` in a `select!` that lost).
    async fn wait_for_room(&self, notified: Pin<&mut tokio::sync::futures::Notified<'_>>) {
        struct Waiting<'a, T>(&'a Shared<T>);
        impl<T> Drop for Waiting<'_, T> {
            fn drop(&mut self) {
                self.0.lock().waiting -= 1;
            }
        }
        let _waiting = Waiting(&self.0);
        notified.await;
    }

    /// Queues `value`, waiting for room; gives it back if the reader is gone.
    pub(crate) async fn send(&self, mut value: T) -> Result<(), T> {
        loop {
            let notified = self.0.room.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before looking, so that room made in between is not missed.
            notified.as_mut().enable();
            match self.offer(value, true) {
                Offer::Queued => return Ok(()),
                Offer::Full(back) => value = back,
                Offer::Closed(back) => return Err(back),
            }
            self.wait_for_room(notified).await;
        }
    }

    /// Waits for room: `true` when there is some (for this writer's next
    /// [`try_send`](Self::try_send) if it is the only one), `false` when the reader is gone.
    pub(crate) async fn room(&self) -> bool {
        loop {
            let notified = self.0.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.0.lock();
                if !state.receiver_alive {
                    return false;
                }
                if state.queue.len() < state.capacity {
                    return true;
                }
                state.waiting += 1;
            }
            self.wait_for_room(notified).await;
        }
    }

    /// Whether the reader is gone.
    pub(crate) fn is_closed(&self) -> bool {
        !self.0.lock().receiver_alive
    }

    /// Resolves once the reader is gone.
    pub(crate) async fn closed(&self) {
        self.gone().wait().await;
    }

    /// Something to wait on for the reader going away, that does not count as a writer.
    pub(crate) fn gone(&self) -> Gone<T> {
        Gone(self.0.clone())
    }
}
impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Self(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.senders -= 1;
        let waker = (state.senders == 0)
            .then(|| state.receiver.take())
            .flatten();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// See [`Sender::gone`].
pub(crate) struct Gone<T>(Arc<Shared<T>>);

impl<T> Gone<T> {
    /// Resolves once the reader is gone.
    pub(crate) async fn wait(self) {
        let notified = self.0.gone.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before looking, so that a reader leaving in between is not missed.
        notified.as_mut().enable();
        if !self.0.lock().receiver_alive {
            return;
        }
        notified.await;
    }
}

/// The reading end.
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The next value; `None` once every writer is gone and everything was read.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.0.lock();
        match state.queue.pop_front() {
            Some(value) => {
                if state.queue.is_empty() && state.queue.capacity() > SHRINK_ABOVE {
                    // Caught up after a burst: give its memory back.
                    state.queue.shrink_to(KEEP);
                }
                let waiting = state.waiting > 0;
                drop(state);
                if waiting {
                    self.0.room.notify_one();
                }
                Poll::Ready(Some(value))
            }
            None if state.senders == 0 => Poll::Ready(None),
            None => {
                match &state.receiver {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => state.receiver = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_alive = false;
        // Nobody will read them.
        let values = std::mem::take(&mut state.queue);
        drop(state);
        drop(values);
        self.0.room.notify_waiters();
        self.0.gone.notify_waiters();
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueReceiver")
            .field("waiting", &self.0.lock().queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    async fn recv<T>(rx: &mut Receiver<T>) -> Option<T> {
        std::future::poll_fn(|cx| rx.poll_recv(cx)).await
    }

    #[tokio::test]
    async fn delivers_in_order_up_to_capacity_then_ends_when_the_writers_go() {
        let (tx, mut rx) = channel(2);
        let tx2 = tx.clone();
        assert!(tx.try_send(1).is_ok());
        assert!(tx2.try_send(2).is_ok());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert!(tx.room().now_or_never().is_none(), "full: waits for room");
        assert!(tx.send(3).now_or_never().is_none(), "full: send waits");
        assert_eq!(recv(&mut rx).await, Some(1));
        assert!(tx.try_send(3).is_ok());
        drop(tx);
        assert_eq!(recv(&mut rx).await, Some(2));
        assert_eq!(recv(&mut rx).await, Some(3));
        assert!(
            rx.poll_recv(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
        drop(tx2);
        assert_eq!(recv(&mut rx).await, None, "the last writer is gone");
    }

    #[tokio::test]
    async fn waiting_writers_are_served_in_order_as_room_comes() {
        let (tx, mut rx) = channel(1);
        assert!(tx.try_send(0).is_ok());
        let writers: Vec<_> = (1..=3)
            .map(|n| {
                let tx = tx.clone();
                tokio::spawn(async move { tx.send(n).await.is_ok() })
            })
            .collect();
        tokio::task::yield_now().await;
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(recv(&mut rx).await.unwrap());
        }
        assert_eq!(got, [0, 1, 2, 3]);
        for w in writers {
            assert!(w.await.unwrap());
        }
    }

    #[tokio::test]
    async fn waiting_writers_and_closed_wake_when_the_reader_goes() {
        let (tx, rx) = channel(1);
        assert!(tx.try_send(1).is_ok());
        let (room, sent, (), ()) =
            tokio::join!(tx.room(), tx.send(2), tx.gone().wait(), async move {
                tokio::task::yield_now().await;
                drop(rx);
            });
        assert!(!room, "the reader left: no room will come");
        assert_eq!(sent, Err(2), "the value comes back");
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Closed)));
        tx.closed().await;
    }

    #[tokio::test]
    async fn a_send_dropped_while_waiting_stops_counting_as_waiting() {
        let (tx, mut rx) = channel(1);
        assert!(tx.try_send(1).is_ok());
        assert!(
            tx.send(2).now_or_never().is_none(),
            "full: waits, then is dropped"
        );
        assert_eq!(tx.0.lock().waiting, 0);
        assert_eq!(recv(&mut rx).await, Some(1));
        assert!(tx.try_send(3).is_ok());
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_a_value() {
        let (tx, mut rx) = channel(4);
        let reader = tokio::spawn(async move { recv(&mut rx).await });
        tokio::task::yield_now().await;
        assert!(tx.try_send(7).is_ok());
        assert_eq!(reader.await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn memory_grown_by_a_burst_is_given_back_once_drained() {
        let (tx, mut rx) = channel(256);
        for n in 0..200 {
            assert!(tx.try_send(n).is_ok());
        }
        assert!(tx.0.lock().queue.capacity() >= 200);
        for _ in 0..200 {
            recv(&mut rx).await;
        }
        assert!(tx.0.lock().queue.capacity() <= KEEP);
        let (fresh, _rx) = channel::<u64>(256);
        assert_eq!(
            fresh.0.lock().queue.capacity(),
            0,
            "a new queue holds nothing"
        );
    }
}
