//! The bounded queue that carries a session's events from its task to the application's
//! stream: one producer (the session task), one consumer ([`RealtimeSession`]).
//!
//! A tokio `mpsc` channel would do, but it allocates a block of 32 events (5 KiB) for every
//! session up front and keeps it for the session's life. This queue holds what is waiting and
//! nothing more: an idle session holds no event memory, and what a burst grew is given back
//! once the application has caught up.
//!
//! [`RealtimeSession`]: super::RealtimeSession

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::RealtimeSessionEvent;

/// Slots a drained queue keeps: enough for the usual one or two events in flight.
const KEEP: usize = 4;

struct State {
    queue: VecDeque<RealtimeSessionEvent>,
    capacity: usize,
    sender_alive: bool,
    receiver_alive: bool,
    /// The consumer, waiting for an event.
    receiver: Option<Waker>,
    /// The producer, waiting for room.
    room: Option<Waker>,
    /// The producer, waiting for the consumer to go away.
    gone: Option<Waker>,
}

struct Shared(Mutex<State>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned state is still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps `slot` set to a waker for `cx`'s task, cloning only when it changed.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// A queue of at most `capacity` events.
pub(crate) fn channel(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared(Mutex::new(State {
        queue: VecDeque::new(),
        capacity: capacity.max(1),
        sender_alive: true,
        receiver_alive: true,
        receiver: None,
        room: None,
        gone: None,
    })));
    (Sender(shared.clone()), Receiver(shared))
}

/// Why [`Sender::try_send`] gave the event back.
pub(crate) enum TrySendError {
    /// The queue holds `capacity` events.
    Full(RealtimeSessionEvent),
    /// The application dropped its stream.
    Closed,
}

/// The session task's end.
pub(crate) struct Sender(Arc<Shared>);

impl Sender {
    /// Queues `event` if there is room and someone to read it.
    // The event comes back when the queue is full, as with `mpsc::Sender::try_send`.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, event: RealtimeSessionEvent) -> Result<(), TrySendError> {
        let mut state = self.0.lock();
        if !state.receiver_alive {
            return Err(TrySendError::Closed);
        }
        if state.queue.len() >= state.capacity {
            return Err(TrySendError::Full(event));
        }
        state.queue.push_back(event);
        let waker = state.receiver.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Waits until the queue has room (`true`) or the application dropped its stream
    /// (`false`).
    pub(crate) async fn room(&self) -> bool {
        std::future::poll_fn(|cx| {
            let mut state = self.0.lock();
            if !state.receiver_alive {
                Poll::Ready(false)
            } else if state.queue.len() < state.capacity {
                Poll::Ready(true)
            } else {
                register(&mut state.room, cx);
                Poll::Pending
            }
        })
        .await
    }

    /// Whether the application dropped its stream.
    pub(crate) fn is_closed(&self) -> bool {
        !self.0.lock().receiver_alive
    }

    /// Something to wait on for the application dropping its stream, that does not keep the
    /// queue open.
    pub(crate) fn gone(&self) -> Gone {
        Gone(self.0.clone())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.sender_alive = false;
        let waker = state.receiver.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// See [`Sender::gone`].
pub(crate) struct Gone(Arc<Shared>);

impl Gone {
    /// Resolves once the application dropped its stream.
    pub(crate) async fn wait(self) {
        std::future::poll_fn(|cx| {
            let mut state = self.0.lock();
            if state.receiver_alive {
                register(&mut state.gone, cx);
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }
}

/// The application's end.
pub(crate) struct Receiver(Arc<Shared>);

impl Receiver {
    /// The next event; `None` once the session task is gone and everything was read.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<RealtimeSessionEvent>> {
        let mut state = self.0.lock();
        match state.queue.pop_front() {
            Some(event) => {
                if state.queue.is_empty() && state.queue.capacity() > KEEP {
                    // Caught up after a burst: give its memory back.
                    state.queue.shrink_to(KEEP);
                }
                let waker = (state.queue.len() + 1 == state.capacity)
                    .then(|| state.room.take())
                    .flatten();
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
                Poll::Ready(Some(event))
            }
            None if !state.sender_alive => Poll::Ready(None),
            None => {
                register(&mut state.receiver, cx);
                Poll::Pending
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_alive = false;
        // Nobody will read them.
        let events = std::mem::take(&mut state.queue);
        let wakers = [state.room.take(), state.gone.take()];
        drop(state);
        drop(events);
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.0.lock();
        f.debug_struct("EventQueue")
            .field("waiting", &state.queue.len())
            .field("capacity", &state.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    fn event(n: usize) -> RealtimeSessionEvent {
        RealtimeSessionEvent::TranscriptDelta {
            role: crate::items::Role::Assistant,
            item_id: n.to_string(),
            content_index: 0,
            delta: String::new(),
        }
    }

    fn id(event: Option<RealtimeSessionEvent>) -> Option<String> {
        match event? {
            RealtimeSessionEvent::TranscriptDelta { item_id, .. } => Some(item_id),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn recv(rx: &mut Receiver) -> Option<RealtimeSessionEvent> {
        std::future::poll_fn(|cx| rx.poll_recv(cx)).await
    }

    #[tokio::test]
    async fn delivers_in_order_up_to_capacity_then_ends_when_the_sender_goes() {
        let (tx, mut rx) = channel(2);
        assert!(tx.try_send(event(1)).is_ok());
        assert!(tx.try_send(event(2)).is_ok());
        assert!(matches!(tx.try_send(event(3)), Err(TrySendError::Full(_))));
        assert!(tx.room().now_or_never().is_none(), "full: waits for room");
        assert_eq!(id(recv(&mut rx).await).as_deref(), Some("1"));
        assert_eq!(tx.room().now_or_never(), Some(true));
        assert!(tx.try_send(event(3)).is_ok());
        drop(tx);
        assert_eq!(id(recv(&mut rx).await).as_deref(), Some("2"));
        assert_eq!(id(recv(&mut rx).await).as_deref(), Some("3"));
        assert_eq!(id(recv(&mut rx).await), None);
    }

    #[tokio::test]
    async fn a_waiting_producer_and_the_gone_signal_wake_when_the_consumer_goes() {
        let (tx, rx) = channel(1);
        assert!(tx.try_send(event(1)).is_ok());
        let (room, signal, ()) = tokio::join!(tx.room(), tx.gone().wait(), async move {
            tokio::task::yield_now().await;
            drop(rx);
        });
        let () = signal;
        assert!(!room, "the consumer left: no room will come");
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(event(2)), Err(TrySendError::Closed)));
    }

    #[tokio::test]
    async fn a_waiting_consumer_is_woken_by_an_event() {
        let (tx, mut rx) = channel(4);
        let reader = tokio::spawn(async move { id(recv(&mut rx).await) });
        tokio::task::yield_now().await;
        assert!(tx.try_send(event(7)).is_ok());
        assert_eq!(reader.await.unwrap().as_deref(), Some("7"));
    }

    #[tokio::test]
    async fn memory_grown_by_a_burst_is_given_back_once_drained() {
        let (tx, mut rx) = channel(256);
        for n in 0..200 {
            assert!(tx.try_send(event(n)).is_ok());
        }
        assert!(tx.0.lock().queue.capacity() >= 200);
        for _ in 0..200 {
            recv(&mut rx).await;
        }
        assert!(tx.0.lock().queue.capacity() <= KEEP);
        let (_tx, _rx) = channel(256);
        assert_eq!(
            _tx.0.lock().queue.capacity(),
            0,
            "a new queue holds nothing"
        );
    }
}
