//! What every receive fills in (`ShmbusReceived`), and the start position and lap policy of
//! bus and records subscribers.

use shmbus::{LapPolicy, Start};

use crate::status::Failure;

/// What a receive found.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmbusEvent {
    /// A whole message: `seq`, `data` and `len` say which and what.
    Message = 0,
    /// Nothing new now (`try_recv`), or nothing within the timeout (`recv_timeout`).
    Empty = 1,
    /// The subscriber fell behind (or a producer died mid-message): exactly `lost` sequence
    /// numbers were skipped; `seq` is the one it reads next. The subscriber stays usable.
    Lapped = 2,
    /// No producer (queue: no sender) is attached and everything has been received. Not final:
    /// a producer may attach later and the stream continues.
    Closed = 3,
}

/// The result of a receive (bus, records or queue). `data` points into the receiving handle's
/// own buffer, never into shared memory: the bytes stay valid and unchanged until the next
/// receive on the same handle or its `_free`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmbusReceived {
    /// What was found; the other fields are meaningful as its documentation says.
    pub event: ShmbusEvent,
    /// The record's type id (records only; 0 otherwise).
    pub type_id: u32,
    /// `Message`: the message's sequence number (0 for queue items, which have none).
    /// `Lapped`: the sequence number the subscriber reads next.
    pub seq: u64,
    /// `Lapped`: how many sequence numbers were skipped; 0 otherwise.
    pub lost: u64,
    /// `Message`: the message's bytes (never NULL, even for an empty message); NULL otherwise.
    pub data: *const u8,
    /// `Message`: the message's length in bytes; 0 otherwise.
    pub len: usize,
}

impl ShmbusReceived {
    pub(crate) fn message(seq: u64, type_id: u32, bytes: &[u8]) -> Self {
        ShmbusReceived {
            event: ShmbusEvent::Message,
            type_id,
            seq,
            lost: 0,
            data: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    pub(crate) fn lapped(lost: u64, next: u64) -> Self {
        ShmbusReceived {
            lost,
            seq: next,
            ..Self::nothing(ShmbusEvent::Lapped)
        }
    }

    pub(crate) fn nothing(event: ShmbusEvent) -> Self {
        ShmbusReceived {
            event,
            type_id: 0,
            seq: 0,
            lost: 0,
            data: std::ptr::null(),
            len: 0,
        }
    }
}

/// Where a new subscriber starts reading (the `start` argument of a subscribe).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmbusStart {
    /// Only messages published from now on.
    Next = 0,
    /// The oldest message still intact.
    Oldest = 1,
    /// The last `start_arg` messages (or as many as are intact), then what follows.
    Last = 2,
    /// Sequence number `start_arg` (if it was overwritten already, the first receive reports
    /// a lap).
    Sequence = 3,
}

/// Where a lapped subscriber resumes (the `lap_policy` argument of a subscribe).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmbusLapPolicy {
    /// At the oldest message still intact (if lapped again before reading it, at the newest).
    Oldest = 0,
    /// At the newest message already published.
    Newest = 1,
}

/// The start position from its C form (an enum value given as an integer, so that a value
/// outside the enum is an error rather than undefined behaviour).
pub(crate) fn start_arg(start: u32, arg: u64) -> Result<Start, Failure> {
    Ok(match start {
        s if s == ShmbusStart::Next as u32 => Start::Next,
        s if s == ShmbusStart::Oldest as u32 => Start::Oldest,
        s if s == ShmbusStart::Last as u32 => Start::Last(arg),
        s if s == ShmbusStart::Sequence as u32 => Start::Sequence(arg),
        other => {
            return Err(Failure::invalid(format!(
            "start {other} is none of SHMBUS_START_NEXT (0), _OLDEST (1), _LAST (2), _SEQUENCE (3)"
        )))
        }
    })
}

/// The lap policy from its C form.
pub(crate) fn lap_policy_arg(policy: u32) -> Result<LapPolicy, Failure> {
    Ok(match policy {
        p if p == ShmbusLapPolicy::Oldest as u32 => LapPolicy::Oldest,
        p if p == ShmbusLapPolicy::Newest as u32 => LapPolicy::Newest,
        other => {
            return Err(Failure::invalid(format!(
                "lap policy {other} is neither SHMBUS_LAP_POLICY_OLDEST (0) nor _NEWEST (1)"
            )))
        }
    })
}
