//! Status codes, the thread-local error message, and the guard every exported function runs its
//! body in (argument checks, `catch_unwind`).

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a call did. Every function of the C API returns one (the `_free` functions excepted,
/// which cannot fail). `SHMBUS_STATUS_OK` is 0; the other values are stable: a new kind of
/// error gets a new number, and no number changes meaning. After any status but OK,
/// `shmbus_last_error_message()` tells the details on the calling thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmbusStatus {
    /// The call did what it says.
    Ok = 0,
    /// A pointer argument that may not be NULL was NULL.
    NullArgument = 1,
    /// An argument is out of its range: a string that is not UTF-8, an unknown enum value or
    /// flag, a length past `PTRDIFF_MAX`.
    InvalidArgument = 2,
    /// A send found the queue full (now, or until its timeout). Nothing was sent.
    Full = 3,
    /// A multi-producer publish was dropped (its sequence number is counted lost by
    /// subscribers); see the Rust `Publisher::publish_bytes`.
    Dropped = 4,
    /// No cell of the board has that key.
    KeyNotFound = 5,
    /// The segment name breaks the naming rule (1 to 200 characters of `[A-Za-z0-9._-]`, not
    /// starting with `.`).
    InvalidName = 10,
    /// No segment of that name exists.
    NotFound = 11,
    /// A segment of that name exists already.
    AlreadyExists = 12,
    /// The operating system refused access to the segment.
    PermissionDenied = 13,
    /// The segment's path is a symbolic link, FIFO, directory or device, not a regular file.
    NotRegularFile = 14,
    /// The segment belongs to another user (open with `SHMBUS_ACCEPT_OTHER_OWNER` to trust it).
    ForeignOwner = 15,
    /// The segment is writable by other users (open with `SHMBUS_ACCEPT_SHARED_WRITE` to trust
    /// it).
    InsecureMode = 16,
    /// The segment is smaller than its header or than its header implies.
    Truncated = 17,
    /// The segment is larger than shmbus ever makes one.
    TooLarge = 18,
    /// Not a shmbus segment (its magic is another program's).
    BadMagic = 19,
    /// The segment's creator did not finish initialising it.
    NotInitialised = 20,
    /// The segment was made by a version of shmbus with another ABI or layout revision.
    AbiMismatch = 21,
    /// The segment is another kind (a queue opened as a bus, ...).
    WrongKind = 22,
    /// The segment's header is inconsistent: damaged, or written by a hostile process.
    Corrupt = 23,
    /// `open_or_create` found the segment with another shape than the one asked for.
    GeometryMismatch = 24,
    /// The segment carries a typed message (a Rust `Pod` type) that this handle cannot take:
    /// a board writer of raw bytes on a typed board.
    TypeMismatch = 25,
    /// The message is longer than a slot (or record, or queue item) holds.
    MessageTooLarge = 26,
    /// The segment is typed and the message is not exactly the type's size.
    WrongMessageSize = 27,
    /// A single-producer segment already has a live producer.
    ProducerExists = 28,
    /// The segment has as many live producers (or board writers) as it supports.
    TooManyProducers = 29,
    /// The queue has as many live senders and receivers as it supports.
    TooManyParticipants = 30,
    /// The handle was opened read-only and cannot write.
    ReadOnly = 31,
    /// The board has no cell of that index.
    CellOutOfRange = 32,
    /// The value is longer than a board cell holds.
    ValueTooLarge = 33,
    /// Another live writer holds the board cell; try again.
    CellHeld = 34,
    /// The board cell changed during every read attempt; try again.
    CellBusy = 35,
    /// A creation parameter is out of range (slot count, sizes, keys...).
    InvalidConfig = 36,
    /// `/dev/shm` has no room for the segment.
    NoSpace = 37,
    /// The handle was attached by the parent of this process before `fork(2)`; attach a new one
    /// in this process.
    UsedAfterFork = 38,
    /// Any other operating-system error (the message names the step and the errno text).
    Io = 39,
    /// Every lane of the lanes segment is held by a producer (or still being drained).
    LanesFull = 40,
    /// The lanes segment has a live consumer already (one at a time).
    ConsumerExists = 41,
    /// An error of the library that this version of the C API has no code for.
    Other = 98,
    /// The library panicked; the panic was caught at the boundary. A bug: please report it with
    /// the message.
    Panic = 99,
}

/// The text of a failure: a literal on the paths that must not allocate (a full queue in a
/// polling loop), formatted elsewhere.
pub(crate) enum Text {
    Static(&'static CStr),
    Owned(String),
}

/// A call's failure: the status it returns and the message it leaves for
/// `shmbus_last_error_message`.
pub(crate) struct Failure {
    pub(crate) status: ShmbusStatus,
    pub(crate) text: Text,
}

impl Failure {
    pub(crate) fn new(status: ShmbusStatus, message: impl Into<String>) -> Self {
        Failure {
            status,
            text: Text::Owned(message.into()),
        }
    }

    pub(crate) const fn fixed(status: ShmbusStatus, message: &'static CStr) -> Self {
        Failure {
            status,
            text: Text::Static(message),
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        Failure::new(
            ShmbusStatus::NullArgument,
            format!("argument `{what}` is NULL"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure::new(ShmbusStatus::InvalidArgument, message)
    }

    /// The message, as text.
    pub(crate) fn into_message(self) -> String {
        match self.text {
            Text::Static(s) => s.to_string_lossy().into_owned(),
            Text::Owned(s) => s,
        }
    }
}

/// The status of each library error. The library's enum is `#[non_exhaustive]`: a variant added
/// later is `Other` until it gets a code of its own.
fn status_of(e: &shmbus::Error) -> ShmbusStatus {
    use shmbus::Error as E;
    use ShmbusStatus as S;
    if e.is_corrupt() {
        return S::Corrupt;
    }
    match e {
        E::InvalidName { .. } => S::InvalidName,
        E::NotFound { .. } => S::NotFound,
        E::AlreadyExists { .. } => S::AlreadyExists,
        E::PermissionDenied { .. } => S::PermissionDenied,
        E::NotRegularFile { .. } => S::NotRegularFile,
        E::ForeignOwner { .. } => S::ForeignOwner,
        E::InsecureMode { .. } => S::InsecureMode,
        E::Truncated { .. } => S::Truncated,
        E::TooLarge { .. } => S::TooLarge,
        E::BadMagic { .. } => S::BadMagic,
        E::NotInitialised { .. } => S::NotInitialised,
        E::AbiMismatch { .. } | E::LayoutRevision { .. } => S::AbiMismatch,
        E::WrongKind { .. } => S::WrongKind,
        E::GeometryMismatch { .. } => S::GeometryMismatch,
        E::TypeMismatch { .. } => S::TypeMismatch,
        E::MessageTooLarge { .. } => S::MessageTooLarge,
        E::WrongMessageSize { .. } | E::ValueTypeMismatch { .. } => S::WrongMessageSize,
        E::ProducerExists { .. } => S::ProducerExists,
        E::TooManyProducers { .. } => S::TooManyProducers,
        E::TooManyParticipants { .. } => S::TooManyParticipants,
        E::ReadOnly { .. } => S::ReadOnly,
        E::CellOutOfRange { .. } => S::CellOutOfRange,
        E::ValueTooLarge { .. } => S::ValueTooLarge,
        E::CellHeld { .. } => S::CellHeld,
        E::CellBusy { .. } => S::CellBusy,
        E::InvalidConfig(_) => S::InvalidConfig,
        E::NoSpace { .. } => S::NoSpace,
        E::UsedAfterFork { .. } => S::UsedAfterFork,
        E::Io { .. } => S::Io,
        E::LanesFull { .. } => S::LanesFull,
        E::ConsumerExists { .. } => S::ConsumerExists,
        _ => S::Other,
    }
}

impl From<shmbus::Error> for Failure {
    fn from(e: shmbus::Error) -> Self {
        Failure::new(status_of(&e), e.to_string())
    }
}

/// What a failed call leaves behind, per thread.
enum Last {
    None,
    Static(&'static CStr),
    Owned(CString),
}

thread_local! {
    static LAST_ERROR: RefCell<Last> = const { RefCell::new(Last::None) };
}

fn set_last(text: Text) {
    let last = match text {
        Text::Static(s) => Last::Static(s),
        // A message from the library never holds a NUL (names are checked, errno texts have
        // none); replace one all the same rather than lose the message.
        Text::Owned(s) => Last::Owned(
            CString::new(s.replace('\0', "\u{fffd}")).expect("every NUL was just replaced"),
        ),
    };
    // `try_with`: a call made while the thread's locals are being destroyed loses the message
    // rather than panicking.
    let _ = LAST_ERROR.try_with(|l| *l.borrow_mut() = last);
}

/// Runs the body of an exported function: its failure becomes a status and the thread's
/// message, and a panic is caught here, at the boundary, and becomes `ShmbusStatus::Panic`.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> ShmbusStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ShmbusStatus::Ok,
        Ok(Err(failure)) => {
            let status = failure.status;
            set_last(failure.text);
            status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            set_last(Text::Owned(format!("shmbus panicked (a bug): {what}")));
            ShmbusStatus::Panic
        }
    }
}

/// Runs a `_free` function's drop, so that a panic in a destructor cannot cross the boundary
/// either (it is reported as the thread's last error message).
pub(crate) fn free_guard(body: impl FnOnce()) {
    let _ = guard(|| {
        body();
        Ok(())
    });
}

/// The message of the last call on this thread that did not return `SHMBUS_STATUS_OK`: what
/// failed, with the names and numbers involved (the same text as the Rust library's error).
/// An empty string if no call on this thread has failed yet. Never NULL. The pointer stays
/// valid until the next failing call on the same thread; copy the text to keep it.
#[no_mangle]
pub extern "C" fn shmbus_last_error_message() -> *const c_char {
    const EMPTY: &CStr = c"";
    LAST_ERROR
        .try_with(|l| match &*l.borrow() {
            Last::None => EMPTY.as_ptr(),
            Last::Static(s) => s.as_ptr(),
            // The CString lives in the thread-local until the next failure replaces it.
            Last::Owned(s) => s.as_ptr(),
        })
        .unwrap_or(EMPTY.as_ptr())
}

/// The name of a status value as written in this header (`"SHMBUS_STATUS_NOT_FOUND"`), for
/// logs; `"SHMBUS_STATUS_UNKNOWN"` for a number that is no status. Never NULL; a static string.
#[no_mangle]
pub extern "C" fn shmbus_status_name(status: i32) -> *const c_char {
    use ShmbusStatus as S;
    const ALL: &[(S, &CStr)] = &[
        (S::Ok, c"SHMBUS_STATUS_OK"),
        (S::NullArgument, c"SHMBUS_STATUS_NULL_ARGUMENT"),
        (S::InvalidArgument, c"SHMBUS_STATUS_INVALID_ARGUMENT"),
        (S::Full, c"SHMBUS_STATUS_FULL"),
        (S::Dropped, c"SHMBUS_STATUS_DROPPED"),
        (S::KeyNotFound, c"SHMBUS_STATUS_KEY_NOT_FOUND"),
        (S::InvalidName, c"SHMBUS_STATUS_INVALID_NAME"),
        (S::NotFound, c"SHMBUS_STATUS_NOT_FOUND"),
        (S::AlreadyExists, c"SHMBUS_STATUS_ALREADY_EXISTS"),
        (S::PermissionDenied, c"SHMBUS_STATUS_PERMISSION_DENIED"),
        (S::NotRegularFile, c"SHMBUS_STATUS_NOT_REGULAR_FILE"),
        (S::ForeignOwner, c"SHMBUS_STATUS_FOREIGN_OWNER"),
        (S::InsecureMode, c"SHMBUS_STATUS_INSECURE_MODE"),
        (S::Truncated, c"SHMBUS_STATUS_TRUNCATED"),
        (S::TooLarge, c"SHMBUS_STATUS_TOO_LARGE"),
        (S::BadMagic, c"SHMBUS_STATUS_BAD_MAGIC"),
        (S::NotInitialised, c"SHMBUS_STATUS_NOT_INITIALISED"),
        (S::AbiMismatch, c"SHMBUS_STATUS_ABI_MISMATCH"),
        (S::WrongKind, c"SHMBUS_STATUS_WRONG_KIND"),
        (S::Corrupt, c"SHMBUS_STATUS_CORRUPT"),
        (S::GeometryMismatch, c"SHMBUS_STATUS_GEOMETRY_MISMATCH"),
        (S::TypeMismatch, c"SHMBUS_STATUS_TYPE_MISMATCH"),
        (S::MessageTooLarge, c"SHMBUS_STATUS_MESSAGE_TOO_LARGE"),
        (S::WrongMessageSize, c"SHMBUS_STATUS_WRONG_MESSAGE_SIZE"),
        (S::ProducerExists, c"SHMBUS_STATUS_PRODUCER_EXISTS"),
        (S::TooManyProducers, c"SHMBUS_STATUS_TOO_MANY_PRODUCERS"),
        (
            S::TooManyParticipants,
            c"SHMBUS_STATUS_TOO_MANY_PARTICIPANTS",
        ),
        (S::ReadOnly, c"SHMBUS_STATUS_READ_ONLY"),
        (S::CellOutOfRange, c"SHMBUS_STATUS_CELL_OUT_OF_RANGE"),
        (S::ValueTooLarge, c"SHMBUS_STATUS_VALUE_TOO_LARGE"),
        (S::CellHeld, c"SHMBUS_STATUS_CELL_HELD"),
        (S::CellBusy, c"SHMBUS_STATUS_CELL_BUSY"),
        (S::InvalidConfig, c"SHMBUS_STATUS_INVALID_CONFIG"),
        (S::NoSpace, c"SHMBUS_STATUS_NO_SPACE"),
        (S::UsedAfterFork, c"SHMBUS_STATUS_USED_AFTER_FORK"),
        (S::Io, c"SHMBUS_STATUS_IO"),
        (S::LanesFull, c"SHMBUS_STATUS_LANES_FULL"),
        (S::ConsumerExists, c"SHMBUS_STATUS_CONSUMER_EXISTS"),
        (S::Other, c"SHMBUS_STATUS_OTHER"),
        (S::Panic, c"SHMBUS_STATUS_PANIC"),
    ];
    ALL.iter()
        .find(|(s, _)| *s as i32 == status)
        .map_or(c"SHMBUS_STATUS_UNKNOWN".as_ptr(), |(_, n)| n.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, ShmbusStatus::Panic);
        // SAFETY: the pointer is a NUL-terminated string owned by this thread's slot, which no
        // call replaces before the read.
        let text = unsafe { CStr::from_ptr(shmbus_last_error_message()) };
        assert_eq!(text.to_str().unwrap(), "shmbus panicked (a bug): boom");
    }

    #[test]
    fn every_status_has_its_header_name() {
        let name = |s: i32| {
            // SAFETY: shmbus_status_name returns static NUL-terminated strings.
            unsafe { CStr::from_ptr(shmbus_status_name(s)) }
                .to_str()
                .unwrap()
        };
        assert_eq!(name(0), "SHMBUS_STATUS_OK");
        assert_eq!(name(ShmbusStatus::Io as i32), "SHMBUS_STATUS_IO");
        assert_eq!(name(7), "SHMBUS_STATUS_UNKNOWN");
        assert_eq!(name(-1), "SHMBUS_STATUS_UNKNOWN");
    }
}
