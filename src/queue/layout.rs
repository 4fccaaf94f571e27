//! The queue's own header words (docs/design.md §11, "Layout"): the consumers' head and the
//! space handshake, each on its own cache line, and the repair counters; and the role word of a
//! participant-table entry. The common words (the tail is the write cursor, the item handshake
//! the common wake words) are in the segment layer's header.

use crate::segment::header::{
    PE_KIND_OWN, PRODUCER_ENTRY_WORDS, W_KIND_OWN, W_PRODUCERS, W_WAITERS,
};

/// The head: the next position consumers claim.                      [own cache line, hot]
pub(crate) const W_Q_HEAD: usize = W_KIND_OWN;
/// Space wake word (futex, lo32 only): wakes producers sleeping on a full queue. [own line]
pub(crate) const W_Q_SPACE_WAKE: usize = 152;
/// Space waiter flag: non-zero while a producer may sleep on a full queue.
pub(crate) const W_Q_SPACE_WAITERS: usize = 153;
/// Positions skipped (claimed by producers that died before publishing).
pub(crate) const W_Q_SKIPPED: usize = 160;
/// Items lost (claimed by consumers that died before finishing).
pub(crate) const W_Q_LOST: usize = 161;
/// Positions passed because a live participant held them past the stall bound (receivers
/// passing a sender's position, senders routing around a receiver's slot), queue-wide.
pub(crate) const W_Q_PASSED: usize = 162;
/// The stall bound in ns (0: none, wait as long as the holder lives), written before the
/// magic publishes the segment and never again (docs/design.md §11, "Stalls").
pub(crate) const W_Q_STALL_BOUND: usize = 163;
/// The shared clock of a stall at the head: the position (+ 1; 0: none) and the coarse-clock
/// time (ns) the first receiver to look at it found it held, so that every receiver passes it
/// one bound after that first look, also one that was stopped meanwhile (§11, "Stalls").
pub(crate) const W_Q_HEAD_STALL: usize = 164;
/// The same for a stall at the tail (a receiver holding the slot senders need).
pub(crate) const W_Q_TAIL_STALL: usize = 166;
/// A participant-table entry's role word: 1 sender, 2 receiver.
pub(crate) const PE_ROLE: usize = PE_KIND_OWN;

const _: () = {
    assert!(W_Q_HEAD * 8 == 1152 && (W_Q_HEAD * 8) % 64 == 0);
    assert!(W_Q_SPACE_WAKE * 8 == 1216 && (W_Q_SPACE_WAKE * 8) % 64 == 0);
    assert!(W_Q_SPACE_WAITERS * 8 == 1224);
    assert!(W_Q_SKIPPED * 8 == 1280 && W_Q_LOST * 8 == 1288);
    assert!(W_Q_PASSED * 8 == 1296 && W_Q_STALL_BOUND * 8 == 1304);
    assert!(W_Q_HEAD_STALL * 8 == 1312 && W_Q_TAIL_STALL * 8 == 1328);
    assert!(W_WAITERS < W_Q_HEAD && W_Q_TAIL_STALL + 1 < W_PRODUCERS);
    assert!(PE_ROLE * 8 == 32 && PE_ROLE < PRODUCER_ENTRY_WORDS);
};
