use super::*;

/// The snapshot accessors both ends of a channel have.
macro_rules! snapshots {
    () => {
        /// How many items the queue holds.
        pub fn capacity(&self) -> u64 {
            self.chan.queue.capacity()
        }

        /// Items in the queue (a snapshot).
        pub fn len(&self) -> u64 {
            self.chan.queue.len()
        }

        /// Whether the queue holds no item (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.chan.queue.is_empty()
        }

        /// Whether the queue is full (a snapshot).
        pub fn is_full(&self) -> bool {
            self.chan.queue.is_full()
        }
    };
}

/// The words one side sleeps on (docs/design.md §7): the waiter flag and the futex counter.
struct Sleepers {
    flag: AtomicU64,
    counter: AtomicU32,
}

impl Sleepers {
    fn new() -> Self {
        Sleepers {
            flag: AtomicU64::new(0),
            counter: AtomicU32::new(0),
        }
    }

    fn words(&self) -> WakeWords<'_> {
        WakeWords {
            flag: &self.flag,
            counter: &self.counter,
        }
    }
}

/// What the handles of one channel share.
struct Chan<T> {
    queue: LocalQueue<T>,
    /// Live `LocalSender`s; at 0, receivers report the queue closed once it is empty.
    senders: AtomicU64,
    /// Live `LocalReceiver`s; at 0, a full queue stays full, so senders stop waiting.
    receivers: AtomicU64,
    /// Receivers sleep here until an item is sent (or the last sender goes).
    items: Sleepers,
    /// Senders sleep here until a slot is freed (or the last receiver goes).
    space: Sleepers,
    /// The process could not register for the sleepers' barrier: wakers use a real fence.
    strong_fence: bool,
}

const FUTEX: SysFutex = SysFutex::PRIVATE;

impl<T> Chan<T> {
    /// After a send, or when the last sender goes: wakes sleeping receivers, if any.
    fn wake_receivers(&self) {
        wait::wake_after_publish(self.items.words(), &FUTEX, self.strong_fence);
    }

    /// After a receive, or when the last receiver goes: wakes sleeping senders, if any.
    fn wake_senders(&self) {
        wait::wake_after_publish(self.space.words(), &FUTEX, self.strong_fence);
    }
}

/// A blocking send's side of the one blocking loop (docs/design.md §7): no periodic check, as
/// every receiver wakes the senders when it goes.
struct Sending<'a, T> {
    chan: &'a Chan<T>,
    /// The item, until it is sent or handed back.
    item: Option<T>,
}

impl<T> wait::Attempt for Sending<'_, T> {
    type Out = std::result::Result<(), SendError<T>>;
    const CHECK_PERIOD: Option<Duration> = None;

    #[inline]
    fn attempt(&mut self) -> Option<Self::Out> {
        let chan = self.chan;
        let item = self.item.take().expect("held until the wait ends");
        match chan.queue.try_send(item) {
            Ok(()) => {
                chan.wake_receivers();
                Some(Ok(()))
            }
            // ORDERING: Acquire pairs with the Release decrement of the last receiver.
            Err(SendError::Full(back)) if chan.receivers.load(Ordering::Acquire) == 0 => {
                Some(Err(SendError::Full(back)))
            }
            Err(SendError::Full(back)) => {
                self.item = Some(back);
                None
            }
            Err(other) => Some(Err(other)),
        }
    }

    /// Sleeps on the space words unless a slot is free or every receiver has gone.
    fn sleep(&mut self, timeout: Option<Duration>) {
        let chan = self.chan;
        wait::sleep(chan.space.words(), &FUTEX, timeout, || {
            // ORDERING: as in `attempt`.
            !chan.queue.is_full() || chan.receivers.load(Ordering::Acquire) == 0
        });
    }
}

/// A blocking receive's side of the one blocking loop (docs/design.md §7): no periodic check,
/// as every sender wakes the receivers when it goes.
struct Receiving<'a, T> {
    rx: &'a LocalReceiver<T>,
}

impl<T> wait::Attempt for Receiving<'_, T> {
    type Out = Option<T>;
    const CHECK_PERIOD: Option<Duration> = None;

    #[inline]
    fn attempt(&mut self) -> Option<Option<T>> {
        if let Some(item) = self.rx.try_recv() {
            return Some(Some(item));
        }
        // ORDERING: Acquire pairs with the Release decrement of the last sender: every item
        // sent happens before this load, so the last look below finds any left.
        if self.rx.chan.senders.load(Ordering::Acquire) == 0 {
            return Some(self.rx.try_recv());
        }
        None
    }

    /// Sleeps on the item words unless an item is there or every sender has gone.
    fn sleep(&mut self, timeout: Option<Duration>) {
        let chan = &*self.rx.chan;
        wait::sleep(chan.items.words(), &FUTEX, timeout, || {
            // ORDERING: as in `attempt`.
            !chan.queue.is_empty() || chan.senders.load(Ordering::Acquire) == 0
        });
    }
}

impl<T> LocalQueue<T> {
    /// A queue of `capacity` items (a power of two) behind a sending and a receiving
    /// handle, both cloneable, that can also wait.
    ///
    /// ```
    /// let (tx, rx) = shmbus::LocalQueue::channel(64)?;
    /// let worker = std::thread::spawn(move || rx.iter().map(|s: String| s.len()).sum::<usize>());
    /// for job in ["a", "bb", "ccc"] {
    ///     tx.send(job.to_owned()).unwrap();
    /// }
    /// drop(tx); // the worker's iterator ends once the queue is empty
    /// assert_eq!(worker.join().unwrap(), 6);
    /// # Ok::<(), shmbus::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`LocalQueue::new`].
    pub fn channel(capacity: u64) -> Result<(LocalSender<T>, LocalReceiver<T>)> {
        let chan = Arc::new(Chan {
            queue: LocalQueue::new(capacity)?,
            senders: AtomicU64::new(1),
            receivers: AtomicU64::new(1),
            items: Sleepers::new(),
            space: Sleepers::new(),
            strong_fence: !wait::register_producer_process(),
        });
        Ok((
            LocalSender {
                chan: chan.clone(),
                wait: Wait::default(),
            },
            LocalReceiver {
                chan,
                wait: Wait::default(),
            },
        ))
    }
}

/// The sending side of a [`LocalQueue::channel`]. Cloneable; when the last clone is dropped,
/// receivers see the queue closed once they have taken what it holds.
pub struct LocalSender<T> {
    chan: Arc<Chan<T>>,
    wait: Wait,
}

/// The receiving side of a [`LocalQueue::channel`]: each item it receives, no other receiver
/// receives. Cloneable; when the last clone is dropped, senders stop waiting for room.
pub struct LocalReceiver<T> {
    chan: Arc<Chan<T>>,
    wait: Wait,
}

impl<T> Clone for LocalSender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        LocalSender {
            chan: self.chan.clone(),
            wait: self.wait,
        }
    }
}

impl<T> Clone for LocalReceiver<T> {
    fn clone(&self) -> Self {
        self.chan.receivers.fetch_add(1, Ordering::Relaxed);
        LocalReceiver {
            chan: self.chan.clone(),
            wait: self.wait,
        }
    }
}

impl<T> Drop for LocalSender<T> {
    fn drop(&mut self) {
        // ORDERING: Release pairs with the receivers' Acquire load of the count: a receiver
        // that sees 0 sees every item this sender sent.
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.wake_receivers();
        }
    }
}

impl<T> Drop for LocalReceiver<T> {
    fn drop(&mut self) {
        // ORDERING: Release pairs with the senders' Acquire load of the count.
        if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.wake_senders();
        }
    }
}

impl<T> std::fmt::Debug for LocalSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSender")
            .field("queue", &self.chan.queue)
            .finish()
    }
}

impl<T> std::fmt::Debug for LocalReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalReceiver")
            .field("queue", &self.chan.queue)
            .finish()
    }
}

impl<T> LocalSender<T> {
    /// Sets how `send` and `send_timeout` wait while the queue is full (default
    /// [`Wait::Sleep`]: receivers pay for a wake-up only while a sender sleeps).
    #[must_use]
    pub fn wait_strategy(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Sends `item` if the queue has room now; hands it back if it is full. Never blocks;
    /// makes a system call only to wake a sleeping receiver.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] with the item if the queue is full.
    pub fn try_send(&self, item: T) -> std::result::Result<(), SendError<T>> {
        self.chan.queue.try_send(item)?;
        self.chan.wake_receivers();
        Ok(())
    }

    /// Sends `item`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] with the item if the queue is full and every receiver has been
    /// dropped (nothing will ever make room).
    pub fn send(&self, item: T) -> std::result::Result<(), SendError<T>> {
        self.send_until(item, None)
    }

    /// Sends `item`, waiting at most `timeout` while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] with the item if the queue is still full when `timeout` has
    /// passed, or full with every receiver dropped.
    pub fn send_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), SendError<T>> {
        self.send_until(item, Instant::now().checked_add(timeout))
    }

    fn send_until(
        &self,
        item: T,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), SendError<T>> {
        let mut sending = Sending {
            chan: &self.chan,
            item: Some(item),
        };
        match wait::block(&mut sending, self.wait, deadline) {
            Some(done) => done,
            None => Err(SendError::Full(
                sending.item.take().expect("held until the wait ends"),
            )),
        }
    }

    /// Whether every receiver has been dropped: nothing will take the items sent from now.
    pub fn is_disconnected(&self) -> bool {
        // ORDERING: Acquire pairs with the Release decrement of the last receiver's drop.
        self.chan.receivers.load(Ordering::Acquire) == 0
    }

    snapshots!();
}

impl<T> LocalReceiver<T> {
    /// Sets how `recv` and `recv_timeout` wait while the queue is empty (default
    /// [`Wait::Sleep`]: senders pay for a wake-up only while a receiver sleeps).
    #[must_use]
    pub fn wait_strategy(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Receives the oldest item if there is one now. Never blocks; makes a system call only
    /// to wake a sleeping sender.
    pub fn try_recv(&self) -> Option<T> {
        let item = self.chan.queue.try_recv()?;
        self.chan.wake_senders();
        Some(item)
    }

    /// Receives the oldest item, waiting while the queue is empty. `None` once the queue
    /// is empty and every sender has been dropped (closed).
    pub fn recv(&self) -> Option<T> {
        self.recv_until(None)
    }

    /// Receives the oldest item, waiting at most `timeout` while the queue is empty. `None`
    /// if `timeout` passed, or the queue is closed ([`LocalReceiver::is_closed`] says
    /// which).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Option<T> {
        wait::block(&mut Receiving { rx: self }, self.wait, deadline).flatten()
    }

    /// Whether the queue is closed: every sender dropped and no item left.
    pub fn is_closed(&self) -> bool {
        // ORDERING: as in `Receiving::attempt`: after the count reads 0, emptiness is final.
        self.chan.senders.load(Ordering::Acquire) == 0 && self.chan.queue.is_empty()
    }

    /// A blocking iterator over received items; it ends when the queue is closed.
    pub fn iter(&self) -> LocalIter<'_, T> {
        LocalIter { rx: self }
    }

    /// A non-blocking iterator: the items in the queue now, then the end.
    pub fn try_iter(&self) -> LocalTryIter<'_, T> {
        LocalTryIter { rx: self }
    }

    snapshots!();
}

/// Blocking iterator made by [`LocalReceiver::iter`]: ends when the queue is closed.
#[derive(Debug)]
pub struct LocalIter<'a, T> {
    rx: &'a LocalReceiver<T>,
}

impl<T> Iterator for LocalIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.rx.recv()
    }
}

/// Non-blocking iterator made by [`LocalReceiver::try_iter`].
#[derive(Debug)]
pub struct LocalTryIter<'a, T> {
    rx: &'a LocalReceiver<T>,
}

impl<T> Iterator for LocalTryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.rx.try_recv()
    }
}
