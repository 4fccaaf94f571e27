//! Word access to a mapped journal file: every shared access is an atomic word load or store at
//! an 8-aligned, bounds-checked offset (docs/design.md §13), as in the bus (§3).

use std::sync::atomic::{fence, AtomicU64, Ordering};

use memmap2::MmapRaw;

/// A mapping of a journal file, seen as words. Never a `&[u8]`: other processes change the bytes.
#[derive(Clone, Copy)]
pub(crate) struct Words<'a> {
    map: &'a MmapRaw,
}

impl<'a> Words<'a> {
    pub(crate) fn new(map: &'a MmapRaw) -> Self {
        Words { map }
    }

    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// The word at byte `off`, or `None` if `off` is unaligned or the word is not inside the
    /// mapping.
    pub(crate) fn word(&self, off: u64) -> Option<&'a AtomicU64> {
        let end = off.checked_add(8)?;
        if off % 8 != 0 || end > self.len() {
            return None;
        }
        // SAFETY: `off` is 8-aligned within a page-aligned mapping and `off + 8` is inside it
        // (checked above), so the pointer is valid and aligned for an `AtomicU64`, which has the
        // size and alignment of `u64`. The mapping outlives `'a`, and no `&[u8]` or `&mut` to it
        // exists anywhere (it is only reached through this type). Other processes change the
        // file only through atomic word stores (docs/design.md §13), so every access to these
        // bytes is atomic: no data race. A file truncated under the mapping by another process is
        // the documented exception (SIGBUS), as for buses (docs/design.md §10).
        Some(unsafe { &*(self.map.as_ptr().add(off as usize) as *const AtomicU64) })
    }

    /// Relaxed load of the word at `off`.
    pub(crate) fn load(&self, off: u64) -> Option<u64> {
        Some(self.word(off)?.load(Ordering::Relaxed))
    }

    /// Relaxed store of `v` at `off` (a writable mapping only).
    pub(crate) fn store(&self, off: u64, v: u64) -> Option<()> {
        self.word(off)?.store(v, Ordering::Relaxed);
        Some(())
    }

    /// Release store of `v` at `off` (a writable mapping only).
    pub(crate) fn store_release(&self, off: u64, v: u64) -> Option<()> {
        self.word(off)?.store(v, Ordering::Release);
        Some(())
    }

    /// Acquire load of the word at `off`, as a Relaxed load and an Acquire fence, which is sound
    /// on read-only mappings.
    pub(crate) fn load_acquire(&self, off: u64) -> Option<u64> {
        let v = self.load(off)?;
        fence(Ordering::Acquire);
        Some(v)
    }

    /// Copies `len` bytes starting at the 8-aligned `off` with Relaxed word loads.
    pub(crate) fn copy(&self, off: u64, len: usize, out: &mut Vec<u8>) -> Option<()> {
        out.clear();
        out.reserve(len);
        let mut at = off;
        while out.len() < len {
            let w = self.load(at)?.to_le_bytes();
            let take = (len - out.len()).min(8);
            out.extend_from_slice(&w[..take]);
            at += 8;
        }
        Some(())
    }
}
