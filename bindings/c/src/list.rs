//! `shmbus_list`: the segments in `/dev/shm`, for tools.

use std::ffi::{c_char, CString};

use shmbus::inspect;

use crate::args;
use crate::status::{guard, Failure, ShmbusStatus};

/// The kind of a listed segment.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmbusKind {
    /// Not known: the file is not named like a segment, or its header could not be read
    /// (`status` and `error` say why).
    Unknown = 0,
    /// A broadcast bus.
    Bus = 1,
    /// A work queue.
    Queue = 2,
    /// A records segment.
    Records = 3,
    /// A board.
    Board = 4,
    /// A lanes segment.
    Lanes = 5,
}

/// One file of `/dev/shm`, as `shmbus_list_get` reports it. The strings belong to the list and
/// stay valid until `shmbus_list_free`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmbusListEntry {
    /// The file's name in `/dev/shm` (`shmbus.NAME` for segments).
    pub file_name: *const c_char,
    /// The segment name, NULL for a file not named like a segment.
    pub name: *const c_char,
    /// The kind the header records; `UNKNOWN` when it could not be read.
    pub kind: ShmbusKind,
    /// `OK` when the header was read; otherwise why not (as opening would fail).
    pub status: ShmbusStatus,
    /// The error's message when `status` is not `OK`; NULL otherwise.
    pub error: *const c_char,
    /// File size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Pid of the process that created the segment (0 when the header was not read).
    pub creator_pid: u32,
    /// Whether that process still runs (pid and start time both match).
    pub creator_alive: bool,
}

struct Entry {
    file_name: CString,
    name: Option<CString>,
    error: Option<CString>,
    c: ShmbusListEntry,
}

/// A listing of `/dev/shm` (opaque), made by `shmbus_list`, freed by `shmbus_list_free`.
pub struct ShmbusList {
    entries: Vec<Entry>,
}

fn cstring(s: String) -> CString {
    CString::new(s.replace('\0', "\u{fffd}")).expect("every NUL was just replaced")
}

fn kind_of(word: u32) -> ShmbusKind {
    match word {
        1 => ShmbusKind::Bus,
        2 => ShmbusKind::Queue,
        3 => ShmbusKind::Records,
        4 => ShmbusKind::Board,
        5 => ShmbusKind::Lanes,
        _ => ShmbusKind::Unknown,
    }
}

fn entry(e: inspect::Entry) -> Entry {
    let mut c = ShmbusListEntry {
        file_name: std::ptr::null(),
        name: std::ptr::null(),
        kind: ShmbusKind::Unknown,
        status: ShmbusStatus::Ok,
        error: std::ptr::null(),
        size: e.size,
        mode: e.mode & 0o7777,
        uid: e.uid,
        creator_pid: 0,
        creator_alive: false,
    };
    let mut error = None;
    match e.segment {
        Some(Ok(probe)) => {
            c.kind = kind_of(probe.header.kind_word);
            c.creator_pid = probe.header.creator_pid;
            c.creator_alive = probe.creator_alive();
        }
        Some(Err(err)) => {
            let f = Failure::from(err);
            c.status = f.status;
            error = Some(cstring(f.into_message()));
        }
        None => {}
    }
    Entry {
        file_name: cstring(e.file_name),
        name: e.name.map(cstring),
        error,
        c,
    }
}

/// Lists `/dev/shm`: every `shmbus.*` segment with its kind (or why its header could not be
/// read) and, with `include_foreign`, every other file too. On success `*out` is the listing.
///
/// Errors: `NULL_ARGUMENT`, `IO` (the directory could not be read).
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_list(
    include_foreign: bool,
    out: *mut *mut ShmbusList,
) -> ShmbusStatus {
    guard(|| {
        let out = args::out_arg(out, "out")?;
        let found = inspect::list(include_foreign)
            .map_err(|e| Failure::new(ShmbusStatus::Io, format!("reading /dev/shm failed: {e}")))?;
        let mut entries: Vec<Entry> = found.into_iter().map(entry).collect();
        for e in &mut entries {
            // The CStrings' heap buffers do not move when the Vec or the Entry does.
            e.c.file_name = e.file_name.as_ptr();
            e.c.name = e.name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
            e.c.error = e.error.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
        }
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusList { entries })) };
        Ok(())
    })
}

/// The number of entries of a listing, in `*len`.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `list` is NULL or a live listing; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_list_len(list: *const ShmbusList, len: *mut usize) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `list`.
        let l = unsafe { args::handle(list, "list") }?;
        let out = args::out_arg(len, "len")?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, l.entries.len()) };
        Ok(())
    })
}

/// Entry `index` of a listing, in `*out` (its strings valid until `shmbus_list_free`).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (`index` not below the length).
///
/// # Safety
/// `list` is NULL or a live listing; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_list_get(
    list: *const ShmbusList,
    index: usize,
    out: *mut ShmbusListEntry,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `list`.
        let l = unsafe { args::handle(list, "list") }?;
        let out = args::out_arg(out, "out")?;
        let e = l.entries.get(index).ok_or_else(|| {
            Failure::invalid(format!(
                "index {index}: the listing has {} entries",
                l.entries.len()
            ))
        })?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, e.c) };
        Ok(())
    })
}

/// Frees a listing and its strings. NULL does nothing.
///
/// # Safety
/// `list` is NULL or a listing not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_list_free(list: *mut ShmbusList) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(list) }
}
