//! Receiving in place (docs/design.md §6, "Reading in place"): a caller's closure runs over the
//! slot itself, through a [`SlotView`] whose every access is an atomic word load, and the
//! seqlock's re-check after the closure decides whether what it saw was a whole message.
//!
//! A writer may be storing into the slot while the closure reads it (that is what a lap is), so
//! the view is never a `&[u8]`: a reference into memory another thread writes is a data race,
//! undefined behaviour whatever the result is then used for. Relaxed atomic loads of the same
//! words race with nothing; a torn view is possible, and is detected and discarded, never
//! delivered.

use std::marker::PhantomData;

use crate::bus::ring::{Polled, Visit};
use crate::segment::payload::{Payload, Raw};
use crate::sync::{AtomicU64, Ordering};

/// A message seen in place, inside the closure of [`crate::Subscriber::recv_with`] and its
/// siblings: every read is an atomic load of the live slot, so a writer that laps the
/// subscriber during the closure makes the view show a mix of two messages, never undefined
/// behaviour. Whether the view was whole is known only when the closure has returned: the
/// receive then reports [`Viewed::Message`] (it was) or [`Viewed::Lapped`] (it may not have
/// been, and the closure's value is dropped).
///
/// Words are the payload's bytes in groups of 8, in native byte order (word `i` is
/// `u64::from_ne_bytes(bytes[8i..8i+8])`); bytes past the message's length, in its last word,
/// read as zero.
pub struct SlotView<'a, T: Payload = Raw> {
    /// The message's words: exactly `len.div_ceil(8)` of the slot's payload words.
    words: &'a [AtomicU64],
    len: usize,
    _type: PhantomData<fn() -> T>,
}

impl<T: Payload> Clone for SlotView<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Payload> Copy for SlotView<'_, T> {}

impl<T: Payload> std::fmt::Debug for SlotView<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotView").field("len", &self.len).finish()
    }
}

impl<'a, T: Payload> SlotView<'a, T> {
    /// `words` holds at least `len.div_ceil(8)` words; `None` if it does not (never, for a
    /// length the ring checked against the capacity).
    fn new(words: &'a [AtomicU64], len: usize) -> Option<Self> {
        Some(SlotView {
            words: words.get(..len.div_ceil(8))?,
            len,
            _type: PhantomData,
        })
    }

    /// The message's length in bytes (read once, before the closure ran; checked against the
    /// slot's capacity, and against the type's size on a typed bus).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of words the message spans, `len().div_ceil(8)`.
    pub fn word_count(&self) -> usize {
        self.words.len()
    }

    /// Word `i` of the message (an atomic load), or `None` past its last word.
    #[inline]
    pub fn load_word(&self, i: usize) -> Option<u64> {
        let w = self.words.get(i)?.load(Ordering::Relaxed);
        Some(if i + 1 == self.words.len() {
            w & self.tail_mask()
        } else {
            w
        })
    }

    /// The message's words in order, each an atomic load made when the iterator reaches it.
    #[inline]
    pub fn words(&self) -> Words<'a> {
        let (full, last) = match self.words.split_last() {
            Some((last, full)) => (full, Some(last)),
            None => (self.words, None),
        };
        Words {
            full: full.iter(),
            last,
            tail_mask: self.tail_mask(),
        }
    }

    /// Copies the message's first `min(len(), dst.len())` bytes into `dst` (atomic word loads);
    /// returns how many.
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        let n = self.len.min(dst.len());
        self.load_bytes(0, &mut dst[..n]);
        n
    }

    /// The `size_of::<U>()` bytes at byte `offset` (any alignment) as a `U`, or `None` if they
    /// do not lie within the message. With [`core::mem::offset_of!`], one field of a typed
    /// message: `view.read_at::<u64>(offset_of!(Quote, bid))`.
    #[inline]
    pub fn read_at<U: bytemuck::Pod>(&self, offset: usize) -> Option<U> {
        let end = offset.checked_add(std::mem::size_of::<U>())?;
        if end > self.len {
            return None;
        }
        let mut u = U::zeroed();
        self.load_bytes(offset, bytemuck::bytes_of_mut(&mut u));
        Some(u)
    }

    /// The 8 bytes at byte `offset` (any alignment) as a little-endian `u64`, or `None` if they
    /// do not lie within the message.
    #[inline]
    pub fn read_u64_le(&self, offset: usize) -> Option<u64> {
        self.read_at::<[u8; 8]>(offset).map(u64::from_le_bytes)
    }

    /// Bytes `offset..offset + dst.len()` (within the message) into `dst`, one atomic load per
    /// word they touch.
    fn load_bytes(&self, offset: usize, dst: &mut [u8]) {
        let mut pos = offset;
        for chunk in dst.chunks_mut(8) {
            // At most two words per chunk of 8: the rest of one word, then the start of the next.
            let mut filled = 0;
            while filled < chunk.len() {
                let (i, skip) = (pos / 8, pos % 8);
                let Some(w) = self.words.get(i) else {
                    return;
                };
                let bytes = w.load(Ordering::Relaxed).to_ne_bytes();
                let take = (8 - skip).min(chunk.len() - filled);
                chunk[filled..filled + take].copy_from_slice(&bytes[skip..skip + take]);
                filled += take;
                pos += take;
            }
        }
    }

    /// The mask that keeps the message's bytes of its last word (all of them if it is full).
    #[inline]
    fn tail_mask(&self) -> u64 {
        let r = self.len % 8;
        if r == 0 {
            return u64::MAX;
        }
        let mut m = [0u8; 8];
        m[..r].fill(0xff);
        u64::from_ne_bytes(m)
    }
}

impl<T: bytemuck::Pod> SlotView<'_, T> {
    /// The whole message as its type, by atomic word loads into a value on the stack (a typed
    /// bus delivers only messages of exactly `size_of::<T>()` bytes). For one field, see
    /// [`SlotView::read_at`].
    #[inline]
    pub fn load(&self) -> T {
        let mut t = T::zeroed();
        self.load_bytes(0, bytemuck::bytes_of_mut(&mut t));
        t
    }
}

/// The iterator of [`SlotView::words`].
#[derive(Clone, Debug)]
pub struct Words<'a> {
    /// The words before the last: loaded as they are.
    full: std::slice::Iter<'a, AtomicU64>,
    /// The last word, masked to the message's length.
    last: Option<&'a AtomicU64>,
    tail_mask: u64,
}

impl Iterator for Words<'_> {
    type Item = u64;

    #[inline]
    fn next(&mut self) -> Option<u64> {
        match self.full.next() {
            Some(w) => Some(w.load(Ordering::Relaxed)),
            None => Some(self.last.take()?.load(Ordering::Relaxed) & self.tail_mask),
        }
    }

    /// One tight loop over the full words, then the last: what `sum`, `fold` and `for_each`
    /// use.
    #[inline]
    fn fold<B, G: FnMut(B, u64) -> B>(self, init: B, mut g: G) -> B {
        let mut acc = init;
        for w in self.full {
            acc = g(acc, w.load(Ordering::Relaxed));
        }
        match self.last {
            Some(w) => g(acc, w.load(Ordering::Relaxed) & self.tail_mask),
            None => acc,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.full.len() + usize::from(self.last.is_some());
        (n, Some(n))
    }
}

impl ExactSizeIterator for Words<'_> {}

/// One result of receiving in place ([`crate::Subscriber::recv_with`] and its siblings): the
/// variants of [`crate::Recv`], with the closure's value in place of the message.
#[must_use = "a `Lapped` result means the closure's view was not a message"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewed<R> {
    /// The closure saw a whole message, sequence `seq`, and returned `value`.
    Message {
        /// The message's sequence number.
        seq: u64,
        /// What the closure returned.
        value: R,
    },
    /// Nothing new (only from [`crate::Subscriber::try_recv_with`] and an expired
    /// [`crate::Subscriber::recv_timeout_with`]); the closure did not run.
    Empty,
    /// Exactly `lost` sequence numbers were skipped, as [`crate::Recv::Lapped`]. If the closure
    /// ran in this call, a writer overwrote the slot while it read, so what it saw may be torn:
    /// its value was dropped, and whatever it did besides returning it must be thrown away too.
    Lapped {
        /// How many sequence numbers were skipped.
        lost: u64,
    },
    /// As [`crate::Recv::Closed`]; the closure did not run.
    Closed,
}

impl<R> Viewed<R> {
    /// The closure's value, if it saw a whole message.
    pub fn value(self) -> Option<R> {
        match self {
            Viewed::Message { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// The in-place visitor: runs the caller's closure over the slot, at most once, on a length the
/// reader will deliver; keeps its value for the caller to take if the read then reports a
/// message (docs/design.md §6, "Reading in place").
pub(crate) struct InPlace<'s, T, F, R> {
    f: Option<F>,
    out: Option<R>,
    /// `Some(n)`: only messages of exactly `n` bytes are delivered (a typed bus), so the
    /// closure never sees another length.
    exact_len: Option<usize>,
    /// The subscriber's copy buffer, for a resync's probe.
    scratch: &'s mut [u64],
    _type: PhantomData<fn() -> T>,
}

impl<'s, T: Payload, F: FnOnce(SlotView<'_, T>) -> R, R> InPlace<'s, T, F, R> {
    pub(crate) fn new(f: F, exact_len: Option<usize>, scratch: &'s mut [u64]) -> Self {
        InPlace {
            f: Some(f),
            out: None,
            exact_len,
            scratch,
            _type: PhantomData,
        }
    }

    /// The receive's result for poll result `p`: the closure's value only with a message,
    /// dropped otherwise (it ran on a read that then found the slot overwritten). A message
    /// always comes with a value: the visitor runs on every read that can report one (it
    /// refuses only lengths that the reader does not deliver either).
    pub(crate) fn into_viewed(self, p: Polled) -> Viewed<R> {
        match p {
            Polled::Message { seq, .. } => Viewed::Message {
                seq,
                value: self
                    .out
                    .expect("a read that reports a message ran the closure on it"),
            },
            Polled::Empty | Polled::Idle => Viewed::Empty,
            Polled::Lapped { lost } => Viewed::Lapped { lost },
            Polled::Closed => Viewed::Closed,
        }
    }
}

impl<T: Payload, F: FnOnce(SlotView<'_, T>) -> R, R> Visit for InPlace<'_, T, F, R> {
    #[inline]
    fn visit(&mut self, payload: &[AtomicU64], len: u64, capacity: usize) {
        // A length the reader will not deliver (past the capacity: forged or torn; not this
        // type's size) is never shown to the closure: the read reports it lost or lapped.
        if len > capacity as u64 || self.exact_len.is_some_and(|n| n as u64 != len) {
            return;
        }
        let Some(view) = SlotView::new(payload, len as usize) else {
            return;
        };
        if let Some(f) = self.f.take() {
            self.out = Some(f(view));
        }
    }

    fn scratch(&mut self) -> &mut [u64] {
        self.scratch
    }
}
