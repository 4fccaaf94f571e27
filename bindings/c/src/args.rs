//! Checks of the arguments C gives: NULL pointers, strings, lengths, enum values, flags; and the
//! boxing of handles. Every exported function reads its arguments through these.

use std::ffi::{c_char, CStr};
use std::time::Duration;

use crate::status::Failure;

/// Open a segment read-only (subscribers and readers only).
pub const SHMBUS_READ_ONLY: u32 = 1;
/// Trust a segment owned by another user.
pub const SHMBUS_ACCEPT_OTHER_OWNER: u32 = 1 << 1;
/// Trust a segment writable by group or others.
pub const SHMBUS_ACCEPT_SHARED_WRITE: u32 = 1 << 2;
/// Create a bus that several producers may publish to at once.
pub const SHMBUS_MULTI_PRODUCER: u32 = 1 << 3;
/// Create a queue (or, with `SHMBUS_MULTI_PRODUCER`, a bus) without a stall bound: a
/// participant stopped mid-operation is waited for as long as it lives, and a queue's sends
/// publish with a plain store instead of a compare-and-swap (faster when one sender streams
/// items). Without it the library's default bound (1 s) applies.
pub const SHMBUS_NO_STALL_BOUND: u32 = 1 << 4;

/// A duration in whole nanoseconds, saturating (for the info structs' `_ns` fields).
pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The flags an open takes.
pub(crate) const OPEN_FLAGS: u32 =
    SHMBUS_READ_ONLY | SHMBUS_ACCEPT_OTHER_OWNER | SHMBUS_ACCEPT_SHARED_WRITE;

/// Refuses flags outside `allowed`.
pub(crate) fn check_flags(flags: u32, allowed: u32) -> Result<(), Failure> {
    if flags & !allowed != 0 {
        return Err(Failure::invalid(format!(
            "unknown flags {:#x} (this call takes {allowed:#x})",
            flags & !allowed
        )));
    }
    Ok(())
}

/// A segment name: not NULL, UTF-8 (the library then checks the naming rule).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that stays valid for the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string valid for the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| Failure::invalid(format!("argument `{what}` is not valid UTF-8")))
}

/// A byte buffer: NULL is allowed only with length 0.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes that stay valid and unwritten for the call.
pub(crate) unsafe fn bytes_arg<'a>(
    p: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!(
            "argument `{what}`: length {len} is larger than any buffer"
        )));
    }
    if p.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Failure::null(what))
        };
    }
    // SAFETY: not NULL, `len` within isize::MAX, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A handle argument, shared.
///
/// # Safety
/// `p` is NULL or a live handle of this type made by this library.
pub(crate) unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller promises NULL or a live handle.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// A handle argument, exclusive (a handle is used by one thread at a time; the header says
/// which handles may be shared).
///
/// # Safety
/// `p` is NULL or a live handle of this type made by this library, used by no other thread
/// during the call.
pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller promises NULL or a live handle that no other thread uses now.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// An output pointer that must not be NULL.
pub(crate) fn out_arg<T>(p: *mut T, what: &str) -> Result<*mut T, Failure> {
    if p.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(p)
    }
}

/// Writes `value` through an output pointer checked by [`out_arg`] (a raw write: the memory
/// may hold anything before, even an invalid enum value).
///
/// # Safety
/// `p` is not NULL and points to writable memory for a `T`, aligned.
pub(crate) unsafe fn put<T>(p: *mut T, value: T) {
    // SAFETY: the caller promises a writable, aligned place for a T.
    unsafe { p.write(value) }
}

/// Writes `value` through an optional output pointer (NULL: not wanted).
///
/// # Safety
/// `p` is NULL or points to writable memory for a `T`, aligned.
pub(crate) unsafe fn put_opt<T>(p: *mut T, value: T) {
    if !p.is_null() {
        // SAFETY: not NULL; the caller promises a writable, aligned place for a T.
        unsafe { p.write(value) }
    }
}

/// Boxes a handle for C.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Drops a handle made by [`into_handle`]; NULL does nothing.
///
/// # Safety
/// `p` is NULL or a handle made by [`into_handle`] and not freed before; no one uses it after.
pub(crate) unsafe fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        crate::status::free_guard(|| {
            // SAFETY: the caller promises a handle from Box::into_raw, freed once.
            drop(unsafe { Box::from_raw(p) })
        });
    }
}

/// How long a call may wait for what it needs (a queue's room or item, a lane's room): not at
/// all, up to a timeout in nanoseconds, or as long as it takes.
pub(crate) enum Waiting {
    Not,
    Until(u64),
    Forever,
}

/// A timeout in nanoseconds.
pub(crate) fn timeout(ns: u64) -> Duration {
    Duration::from_nanos(ns)
}

/// A mode argument: 0 for the default (`0600`), else permission bits.
pub(crate) fn mode_arg(mode: u32) -> Result<Option<u32>, Failure> {
    if mode & !0o777 != 0 {
        return Err(Failure::invalid(format!(
            "mode {mode:#o} has bits beyond the permission bits 0777"
        )));
    }
    Ok((mode != 0).then_some(mode))
}

/// Applies the trust and access flags of an open to any builder.
macro_rules! apply_open_flags {
    ($builder:expr, $flags:expr) => {{
        let mut b = $builder;
        if $flags & $crate::args::SHMBUS_READ_ONLY != 0 {
            b = b.read_only();
        }
        if $flags & $crate::args::SHMBUS_ACCEPT_OTHER_OWNER != 0 {
            b = b.accept_other_owner();
        }
        if $flags & $crate::args::SHMBUS_ACCEPT_SHARED_WRITE != 0 {
            b = b.accept_shared_write();
        }
        b
    }};
}
pub(crate) use apply_open_flags;
