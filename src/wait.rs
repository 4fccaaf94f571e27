//! How a blocking receive waits for the next message.

/// Wait strategy of [`crate::Subscriber::recv`] and [`crate::Subscriber::recv_timeout`]. Every
/// strategy first spins briefly; they differ in what they do after.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wait {
    /// Keep spinning: lowest latency, one core fully busy.
    Spin,
    /// Spin, then `sched_yield` between polls: low latency, and other threads on the core run.
    Yield,
    /// Spin, then sleep on the bus's futex word until a producer publishes. Producers pay for the
    /// wake-up only while somebody sleeps (a relaxed load of the sleeper count otherwise). A
    /// wake-up that races with falling asleep can be missed, so a sleep lasts at most 1 ms before
    /// the subscriber looks again. Needs a read-write handle: on a read-only one (which may not
    /// write the sleeper count) it becomes a poll every millisecond.
    #[default]
    Sleep,
}
