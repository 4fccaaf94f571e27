//! # shmbus-ffi: the C API of shmbus
//!
//! Every kind of shmbus segment from C and C++: buses (publish, publish in place, subscribe with
//! a start position and lap policy, receive with the sequence number and the exact lap count,
//! the readiness descriptor), queues, records, boards and lanes, and `shmbus_list` for tools. The
//! header is `include/shmbus.h`, generated from this crate by cbindgen (`tests/header.rs` fails
//! when it is stale).
//!
//! The rules every function follows:
//!
//! - It returns a [`ShmbusStatus`] (`SHMBUS_STATUS_OK`, 0, or a stable code per kind of error);
//!   [`shmbus_last_error_message`] gives the text of the last failure on the calling thread.
//!   The `_free` functions return nothing: they cannot fail, and take NULL.
//! - Handles are opaque pointers from a constructor, each freed once with its `_free`.
//! - Pointer arguments are checked: NULL where a value is needed is
//!   `SHMBUS_STATUS_NULL_ARGUMENT`, a string that is not UTF-8, an enum value or flag outside
//!   its set, or a length beyond any buffer is `SHMBUS_STATUS_INVALID_ARGUMENT`. What cannot be
//!   checked (a dangling or foreign pointer, a buffer shorter than its length) is the caller's to
//!   get right, as each function's `# Safety` says.
//! - No panic crosses the boundary: one is caught and returned as `SHMBUS_STATUS_PANIC`.
//! - Received bytes are copied out of shared memory into the receiving handle's own buffer and
//!   stay valid until that handle's next receive; a lanes consumer's records alone are read in
//!   place, in the lane, until acknowledged (see `ShmbusLaneReceived`).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

mod args;
mod board;
mod bus;
mod lanes;
mod list;
mod queue;
mod ready;
mod received;
mod records;
mod status;

use std::ffi::c_char;

pub use args::{
    SHMBUS_ACCEPT_OTHER_OWNER, SHMBUS_ACCEPT_SHARED_WRITE, SHMBUS_MULTI_PRODUCER,
    SHMBUS_NO_STALL_BOUND, SHMBUS_READ_ONLY,
};
pub use board::*;
pub use bus::*;
pub use lanes::*;
pub use list::*;
pub use queue::*;
pub use received::{ShmbusEvent, ShmbusLapPolicy, ShmbusReceived, ShmbusStart};
pub use records::*;
pub use status::{shmbus_last_error_message, shmbus_status_name, ShmbusStatus};

use status::guard;

/// Removes a segment of any kind from `/dev/shm`. Processes that have it open keep their
/// mapping; the name is free for a new segment at once.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (not UTF-8), `INVALID_NAME`, `NOT_FOUND`,
/// `PERMISSION_DENIED`, `IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmbus_remove(name: *const c_char) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        // Every kind's remove is the segment layer's one remove.
        shmbus::Bus::remove(name)?;
        Ok(())
    })
}

/// The version of this library, as `"MAJOR.MINOR.PATCH"`. A static string, never NULL.
#[no_mangle]
pub extern "C" fn shmbus_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the header promises about threads: segment handles may be shared by threads, every
    /// other handle may move to another thread (and is used by one at a time).
    #[test]
    fn handles_are_as_thread_safe_as_the_header_says() {
        fn shared<T: Send + Sync>() {}
        fn movable<T: Send>() {}
        shared::<ShmbusBus>();
        shared::<ShmbusQueue>();
        shared::<ShmbusRecords>();
        shared::<ShmbusBoard>();
        shared::<ShmbusLanes>();
        movable::<ShmbusPublisher>();
        movable::<ShmbusSubscriber>();
        movable::<ShmbusQueueSender>();
        movable::<ShmbusQueueReceiver>();
        movable::<ShmbusRecordPublisher>();
        movable::<ShmbusRecordSubscriber>();
        movable::<ShmbusBoardWriter>();
        movable::<ShmbusBoardReader>();
        movable::<ShmbusLanePublisher>();
        movable::<ShmbusLaneConsumer>();
    }
}
