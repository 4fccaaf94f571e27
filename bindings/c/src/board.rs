//! The board: the latest value of each of N cells, set and read by index or by key.

use std::ffi::c_char;

use shmbus::{Board, BoardBuilder, BoardReader, BoardWriter};

use crate::args::{self, apply_open_flags, OPEN_FLAGS};
use crate::status::{guard, Failure, ShmbusStatus};

/// A board handle (opaque). Made by `shmbus_board_create` or `shmbus_board_open`, freed by
/// `shmbus_board_free`; writers and readers made from it outlive it. It may be used by several
/// threads at once.
pub struct ShmbusBoard {
    board: Board,
}

/// A board writer (opaque; at most 32 live at once, across processes). Made by
/// `shmbus_board_writer`, freed (detached) by `shmbus_board_writer_free`. One thread at a time.
pub struct ShmbusBoardWriter {
    board: Board,
    writer: BoardWriter,
}

/// A board reader (opaque), with its own copy buffer. Made by `shmbus_board_reader`, freed by
/// `shmbus_board_reader_free`. One thread at a time.
pub struct ShmbusBoardReader {
    board: Board,
    reader: BoardReader,
}

/// A board's shape, as `shmbus_board_info` reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmbusBoardInfo {
    /// Number of cells.
    pub cells: usize,
    /// Largest value a cell holds, in bytes.
    pub value_size: usize,
    /// The value type's size: 0 for raw bytes (a typed board has a Rust `Pod` type, and only
    /// Rust writers).
    pub type_size: u32,
    /// Whether the cells have key names.
    pub has_keys: bool,
    /// Whether any writer is attached.
    pub has_writers: bool,
    /// Whether this handle mapped the board read-only.
    pub read_only: bool,
}

/// A value read from a cell, as `shmbus_board_get` reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ShmbusValue {
    /// Whether the cell was ever set; when false the other fields are 0 and `data` is NULL.
    pub found: bool,
    /// How many updates the cell has had (1 for the first value).
    pub version: u64,
    /// When it was set: `CLOCK_MONOTONIC_COARSE`, in nanoseconds.
    pub stamp_ns: u64,
    /// The value's bytes, in the reader's own buffer: valid until the reader's next read or its
    /// `_free`.
    pub data: *const u8,
    /// The value's length in bytes.
    pub len: usize,
}

/// Creates a board of `cells` cells (0: as many as keys) of up to `value_size` bytes each
/// (0: 64), with `nkeys` key names (`keys` may be NULL when `nkeys` is 0; at most `cells`, each
/// unique, 1 to 56 bytes) and permission bits `mode` (0: `0600`). `flags` must be 0. On success
/// `*out` is the new handle.
///
/// Errors: `NULL_ARGUMENT` (also a NULL key), `INVALID_ARGUMENT` (a name or key not UTF-8),
/// `INVALID_NAME`, `INVALID_CONFIG` (cells out of range, a bad or repeated key, ...),
/// `ALREADY_EXISTS`, `PERMISSION_DENIED`, `NO_SPACE`, `IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `keys` is NULL or points to `nkeys` pointers, each
/// NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_create(
    name: *const c_char,
    cells: usize,
    value_size: usize,
    keys: *const *const c_char,
    nkeys: usize,
    flags: u32,
    mode: u32,
    out: *mut *mut ShmbusBoard,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        let out = args::out_arg(out, "out")?;
        args::check_flags(flags, 0)?;
        let mode = args::mode_arg(mode)?;
        let keys: Vec<&str> = if nkeys == 0 {
            Vec::new()
        } else if keys.is_null() {
            return Err(Failure::null("keys"));
        } else {
            if nkeys > isize::MAX as usize / std::mem::size_of::<*const c_char>() {
                return Err(Failure::invalid(format!(
                    "{nkeys} keys: more than any array"
                )));
            }
            // SAFETY: not NULL; the caller promises `nkeys` pointers there.
            let ptrs = unsafe { std::slice::from_raw_parts(keys, nkeys) };
            ptrs.iter()
                // SAFETY: the caller promises each NULL or a NUL-terminated string.
                .map(|&k| unsafe { args::str_arg(k, "keys[i]") })
                .collect::<Result<_, _>>()?
        };
        let mut b = BoardBuilder::new(name);
        if cells != 0 {
            b = b.cells(cells);
        }
        if value_size != 0 {
            b = b.value_size(value_size);
        }
        if !keys.is_empty() {
            b = b.keys(&keys);
        }
        if let Some(mode) = mode {
            b = b.permissions(mode);
        }
        let board = b.create()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusBoard { board })) };
        Ok(())
    })
}

/// Opens an existing board of any value type. `flags`: `SHMBUS_READ_ONLY` (readers only),
/// `SHMBUS_ACCEPT_OTHER_OWNER`, `SHMBUS_ACCEPT_SHARED_WRITE`. On success `*out` is the new
/// handle.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, and those of opening any segment (see
/// `shmbus_bus_open`).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_open(
    name: *const c_char,
    flags: u32,
    out: *mut *mut ShmbusBoard,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `name`.
        let name = unsafe { args::str_arg(name, "name") }?;
        let out = args::out_arg(out, "out")?;
        args::check_flags(flags, OPEN_FLAGS)?;
        let board = apply_open_flags!(BoardBuilder::new(name), flags).open()?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(ShmbusBoard { board })) };
        Ok(())
    })
}

/// Frees a board handle. NULL does nothing.
///
/// # Safety
/// `board` is NULL or a board handle not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_free(board: *mut ShmbusBoard) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(board) }
}

/// Fills `*out` with the board's shape.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `board` is NULL or a live board handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_info(
    board: *const ShmbusBoard,
    out: *mut ShmbusBoardInfo,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `board`.
        let b = &unsafe { args::handle(board, "board") }?.board;
        let out = args::out_arg(out, "out")?;
        let info = ShmbusBoardInfo {
            cells: b.cells(),
            value_size: b.value_size(),
            type_size: b.value_type().size,
            has_keys: b.has_keys(),
            has_writers: b.has_writers(),
            read_only: b.is_read_only(),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, info) };
        Ok(())
    })
}

/// The index of the cell named `key`.
fn index_of(board: &Board, key: &str) -> Result<usize, Failure> {
    board.index_of(key).ok_or_else(|| {
        Failure::new(
            ShmbusStatus::KeyNotFound,
            format!("board {:?} has no cell named {key:?}", board.name()),
        )
    })
}

/// The index of the cell named `key`, in `*index`.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (not UTF-8), `KEY_NOT_FOUND`.
///
/// # Safety
/// `board` is NULL or a live board handle; `key` is NULL or a NUL-terminated string; `index`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_index_of(
    board: *const ShmbusBoard,
    key: *const c_char,
    index: *mut usize,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `board`.
        let b = &unsafe { args::handle(board, "board") }?.board;
        // SAFETY: the caller's contract for `key`.
        let key = unsafe { args::str_arg(key, "key") }?;
        let out = args::out_arg(index, "index")?;
        let i = index_of(b, key)?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, i) };
        Ok(())
    })
}

/// Attaches a writer of raw bytes. On success `*out` is the new writer.
///
/// Errors: `NULL_ARGUMENT`, `READ_ONLY`, `TOO_MANY_PRODUCERS` (32 writers live),
/// `TYPE_MISMATCH` (a typed board: only Rust writers of its type may write it).
///
/// # Safety
/// `board` is NULL or a live board handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_writer(
    board: *const ShmbusBoard,
    out: *mut *mut ShmbusBoardWriter,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `board`.
        let b = &unsafe { args::handle(board, "board") }?.board;
        let out = args::out_arg(out, "out")?;
        let writer = b.writer()?;
        let w = ShmbusBoardWriter {
            board: b.clone(),
            writer,
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(w)) };
        Ok(())
    })
}

/// Detaches and frees a board writer. NULL does nothing.
///
/// # Safety
/// `writer` is NULL or a board writer not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_writer_free(writer: *mut ShmbusBoardWriter) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(writer) }
}

/// Sets cell `index` to the `len` bytes at `data`. If `version` is not NULL, `*version` is the
/// cell's new version.
///
/// Errors: `NULL_ARGUMENT`, `CELL_OUT_OF_RANGE`, `VALUE_TOO_LARGE`, `CELL_HELD` (another live
/// writer holds the cell; try again), `CORRUPT`, `USED_AFTER_FORK`.
///
/// # Safety
/// `writer` is NULL or a live board writer used by no other thread now; `data` is NULL or points
/// to `len` readable bytes; `version` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_set(
    writer: *mut ShmbusBoardWriter,
    index: usize,
    data: *const u8,
    len: usize,
    version: *mut u64,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `writer`.
        let w = unsafe { args::handle_mut(writer, "writer") }?;
        // SAFETY: the caller's contract for `data`.
        let bytes = unsafe { args::bytes_arg(data, len, "data") }?;
        let v = w.writer.set_bytes(index, bytes)?;
        // SAFETY: the caller promises `version` NULL or writable.
        unsafe { args::put_opt(version, v) };
        Ok(())
    })
}

/// Sets the cell named `key`: as `shmbus_board_set`, and `KEY_NOT_FOUND` when no cell has the
/// name.
///
/// # Safety
/// As `shmbus_board_set`; `key` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_set_key(
    writer: *mut ShmbusBoardWriter,
    key: *const c_char,
    data: *const u8,
    len: usize,
    version: *mut u64,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `writer`.
        let w = unsafe { args::handle_mut(writer, "writer") }?;
        // SAFETY: the caller's contract for `key`.
        let key = unsafe { args::str_arg(key, "key") }?;
        // SAFETY: the caller's contract for `data`.
        let bytes = unsafe { args::bytes_arg(data, len, "data") }?;
        let index = index_of(&w.board, key)?;
        let v = w.writer.set_bytes(index, bytes)?;
        // SAFETY: the caller promises `version` NULL or writable.
        unsafe { args::put_opt(version, v) };
        Ok(())
    })
}

/// Makes a reader. On success `*out` is the new reader.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
/// `board` is NULL or a live board handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_reader(
    board: *const ShmbusBoard,
    out: *mut *mut ShmbusBoardReader,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `board`.
        let b = &unsafe { args::handle(board, "board") }?.board;
        let out = args::out_arg(out, "out")?;
        let r = ShmbusBoardReader {
            board: b.clone(),
            reader: b.reader(),
        };
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, args::into_handle(r)) };
        Ok(())
    })
}

/// Frees a board reader. NULL does nothing.
///
/// # Safety
/// `reader` is NULL or a board reader not freed before.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_reader_free(reader: *mut ShmbusBoardReader) {
    // SAFETY: the caller's contract.
    unsafe { args::free_handle(reader) }
}

fn read(reader: &mut BoardReader, index: usize) -> Result<ShmbusValue, Failure> {
    Ok(match reader.read(index)? {
        Some(v) => ShmbusValue {
            found: true,
            version: v.version(),
            stamp_ns: v.stamp_ns(),
            data: v.bytes().as_ptr(),
            len: v.bytes().len(),
        },
        None => ShmbusValue {
            found: false,
            version: 0,
            stamp_ns: 0,
            data: std::ptr::null(),
            len: 0,
        },
    })
}

/// Reads cell `index`'s latest intact value (never torn; never waits for a writer) into
/// `*out`; `out->found` is false if it was never set.
///
/// Errors: `NULL_ARGUMENT`, `CELL_OUT_OF_RANGE`, `CELL_BUSY` (updated during each of 64 copies;
/// try again), `CORRUPT`.
///
/// # Safety
/// `reader` is NULL or a live board reader used by no other thread now; `out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_get(
    reader: *mut ShmbusBoardReader,
    index: usize,
    out: *mut ShmbusValue,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `reader`.
        let r = unsafe { args::handle_mut(reader, "reader") }?;
        let out = args::out_arg(out, "out")?;
        let v = read(&mut r.reader, index)?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, v) };
        Ok(())
    })
}

/// Reads the cell named `key`: as `shmbus_board_get`, and `KEY_NOT_FOUND` when no cell has the
/// name.
///
/// # Safety
/// As `shmbus_board_get`; `key` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmbus_board_get_key(
    reader: *mut ShmbusBoardReader,
    key: *const c_char,
    out: *mut ShmbusValue,
) -> ShmbusStatus {
    guard(|| {
        // SAFETY: the caller's contract for `reader`.
        let r = unsafe { args::handle_mut(reader, "reader") }?;
        // SAFETY: the caller's contract for `key`.
        let key = unsafe { args::str_arg(key, "key") }?;
        let out = args::out_arg(out, "out")?;
        let index = index_of(&r.board, key)?;
        let v = read(&mut r.reader, index)?;
        // SAFETY: checked not NULL; the caller promises it writable.
        unsafe { args::put(out, v) };
        Ok(())
    })
}
