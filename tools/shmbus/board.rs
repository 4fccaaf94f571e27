//! Boards in the inspector: `shmbus create NAME --kind board`, `shmbus set` and `shmbus board`.
//!
//! Every key and value read from a segment is escaped before it is printed.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use shmbus::{inspect, Board, BoardBuilder};

use crate::{text, CmdResult, Failure};

/// `shmbus create NAME --kind board [--cells N] [--size BYTES] [--keys a,b] [--mode M]`.
pub(crate) fn create(
    name: &str,
    cells: Option<usize>,
    size: usize,
    keys: &[String],
    mode: u32,
    json: bool,
) -> CmdResult {
    if cells.is_none() && keys.is_empty() {
        return Err(Failure(
            "a board needs a number of cells: --cells N, or --keys a,b,... (one cell per key)"
                .into(),
        ));
    }
    let mut b = BoardBuilder::new(name)
        .value_size(size)
        .keys(keys)
        .permissions(mode);
    if let Some(n) = cells {
        b = b.cells(n);
    }
    let board = b.create()?;
    if json {
        return crate::print_json(&serde_json::json!({
            "name": board.name(),
            "kind": "board",
            "cells": board.cells(),
            "value_size": board.value_size(),
            "keys": board.has_keys(),
            "mode": format!("{mode:04o}"),
            "path": inspect::segment_path(board.name()),
        }));
    }
    writeln!(
        io::stdout(),
        "created board {}: {} cells of {} bytes{}, mode {:04o}, {}",
        board.name(),
        board.cells(),
        board.value_size(),
        if board.has_keys() { ", with keys" } else { "" },
        mode,
        inspect::segment_path(board.name()).display()
    )?;
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct SetArgs {
    /// The board name.
    name: String,
    /// The cell: its index, or its key name.
    cell: String,
    /// The value: text (UTF-8 bytes), or hexadecimal with --hex.
    value: String,
    /// The value is hexadecimal (`48656c6c6f`; spaces allowed).
    #[arg(long)]
    hex: bool,
    /// Print the result as one JSON object ({"name", "cell", "version", "len"}) instead of
    /// text.
    #[arg(long)]
    json: bool,
    /// Open the board even if it is writable by other users (its mode lets them write).
    #[arg(long)]
    accept_shared_write: bool,
    /// Open the board even if it belongs to another user.
    #[arg(long)]
    accept_other_owner: bool,
}

fn parse_hex(s: &str) -> Result<Vec<u8>, Failure> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(Failure(format!(
            "hex value has an odd number of digits ({})",
            digits.len()
        )));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| {
                    Failure(format!(
                        "{:?} is not a hex byte",
                        String::from_utf8_lossy(pair)
                    ))
                })
        })
        .collect()
}

/// A cell given as an index or a key name.
fn cell_index(board: &Board, cell: &str) -> Result<usize, Failure> {
    if let Ok(i) = cell.parse::<usize>() {
        return Ok(i);
    }
    board.index_of(cell).ok_or_else(|| {
        Failure(format!(
            "board {:?} has no cell named {cell:?}",
            board.name()
        ))
    })
}

pub(crate) fn set(a: &SetArgs) -> CmdResult {
    let mut b = BoardBuilder::new(&a.name);
    if a.accept_shared_write {
        b = b.accept_shared_write();
    }
    if a.accept_other_owner {
        b = b.accept_other_owner();
    }
    let board = b.open()?;
    let value = if a.hex {
        parse_hex(&a.value)?
    } else {
        a.value.as_bytes().to_vec()
    };
    let index = cell_index(&board, &a.cell)?;
    let mut w = board.writer()?;
    let version = w.set_bytes(index, &value)?;
    if a.json {
        return crate::print_json(&serde_json::json!({
            "name": a.name,
            "cell": index,
            "version": version,
            "len": value.len(),
        }));
    }
    writeln!(
        io::stdout(),
        "cell {index}: version {version}, {} bytes",
        value.len()
    )?;
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct BoardArgs {
    /// The board name.
    name: String,
    /// One JSON object per cell, one array per line.
    #[arg(long)]
    json: bool,
    /// Print the table again every interval until q (on a terminal) or Ctrl-C (redrawn in
    /// place on a terminal).
    #[arg(long)]
    watch: bool,
    /// Time between two tables with --watch, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    interval_ms: u64,
    /// Print values as hexadecimal.
    #[arg(long)]
    hex: bool,
}

/// One cell as printed.
#[derive(Serialize)]
struct Row {
    index: usize,
    key: Option<String>,
    /// Updates so far (0: never set).
    version: u64,
    /// Milliseconds since the value was set.
    age_ms: Option<u64>,
    len: Option<usize>,
    /// The value, escaped text (or hex with --hex).
    value: Option<String>,
    error: Option<String>,
}

fn rows(board: &Board, hex: bool) -> Vec<Row> {
    let mut reader = board.reader();
    let mut out = Vec::with_capacity(board.cells());
    reader.scan(|index, v| {
        let mut row = Row {
            index,
            key: board.key(index).map(|k| text::sanitize(&k)),
            version: 0,
            age_ms: None,
            len: None,
            value: None,
            error: None,
        };
        match v {
            Ok(Some(v)) => {
                row.version = v.version();
                row.age_ms = Some(v.age().as_millis() as u64);
                row.len = Some(v.bytes().len());
                row.value = Some(if hex {
                    text::hex(v.bytes())
                } else {
                    text::escape_payload(v.bytes())
                });
            }
            Ok(None) => {}
            Err(e) => row.error = Some(text::sanitize(&e.to_string())),
        }
        out.push(row);
    });
    out
}

fn print_table(out: &mut impl Write, board: &Board, rows: &[Row]) -> io::Result<()> {
    writeln!(
        out,
        "board {}: {} cells of {} bytes, type {}",
        text::sanitize(board.name()),
        board.cells(),
        board.value_size(),
        text::sanitize(&board.value_type().to_string())
    )?;
    writeln!(out, "INDEX\tKEY\tVERSION\tAGE\tVALUE")?;
    for r in rows {
        let age = r
            .age_ms
            .map_or("-".into(), |ms| text::duration(Duration::from_millis(ms)));
        let value = match (&r.value, &r.error) {
            (_, Some(e)) => format!("error: {e}"),
            (Some(v), None) => v.clone(),
            (None, None) => "-".into(),
        };
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}",
            r.index,
            r.key.as_deref().unwrap_or("-"),
            r.version,
            age,
            value
        )?;
    }
    Ok(())
}

/// What `list` reports about a board.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub(crate) struct BoardSummary {
    pub(crate) cells: usize,
    /// Largest value in bytes.
    pub(crate) value_size: usize,
    pub(crate) value_type: String,
    /// Whether the cells have key names.
    pub(crate) keys: bool,
    /// Whether a live writer is attached.
    pub(crate) writers_alive: bool,
    pub(crate) creator_pid: u32,
    pub(crate) creator_alive: bool,
    /// No live writer and the creator gone.
    pub(crate) stale: bool,
    pub(crate) segment_size: u64,
}

/// The summary of a probed board, opened read-only (any owner and mode: an inspector only reads).
pub(crate) fn summary(p: &inspect::Probe) -> shmbus::Result<BoardSummary> {
    let board = BoardBuilder::new(&p.name)
        .read_only()
        .accept_other_owner()
        .accept_shared_write()
        .open()?;
    let writers_alive = board.has_writers();
    let creator_alive = p.creator_alive();
    Ok(BoardSummary {
        cells: board.cells(),
        value_size: board.value_size(),
        value_type: board.value_type().to_string(),
        keys: board.has_keys(),
        writers_alive,
        creator_pid: p.header.creator_pid,
        creator_alive,
        stale: !writers_alive && !creator_alive,
        segment_size: p.header.segment_size,
    })
}

/// `shmbus info` of a board: its table, as `shmbus board NAME` prints it; with `json`, one
/// object with the board's shape and its cells (as every kind's `info --json` is an object).
pub(crate) fn info(name: &str, json: bool) -> CmdResult {
    if json {
        let board = BoardBuilder::new(name)
            .read_only()
            .accept_other_owner()
            .accept_shared_write()
            .open()?;
        let p = inspect::probe(name)?;
        return crate::print_json(&serde_json::json!({
            "name": name,
            "kind": "board",
            "path": inspect::segment_path(name),
            "summary": summary(&p)?,
            "access": crate::info::Access::of(name),
            "cells": rows(&board, false),
        }));
    }
    show(&BoardArgs {
        name: name.to_owned(),
        json,
        watch: false,
        interval_ms: 500,
        hex: false,
    })?;
    if let Some(a) = crate::info::Access::of(name) {
        writeln!(io::stdout(), "access: {}", a.line())?;
    }
    Ok(())
}

pub(crate) fn show(a: &BoardArgs) -> CmdResult {
    let board = BoardBuilder::new(&a.name)
        .read_only()
        .accept_other_owner()
        .accept_shared_write()
        .open()?;
    let terminal = io::stdout().is_terminal();
    let mut keys = if a.watch {
        Some(crate::keys::QuitKeys::new()?)
    } else {
        None
    };
    loop {
        let rows = rows(&board, a.hex);
        let mut out = io::stdout().lock();
        if a.json {
            writeln!(out, "{}", text::json_line(&rows))?;
        } else {
            if a.watch && terminal {
                // Home and clear: the table is redrawn in place.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            print_table(&mut out, &board, &rows)?;
            if a.watch && terminal && keys.as_ref().is_some_and(|k| k.active()) {
                writeln!(out, "\n(q to quit)")?;
            }
        }
        out.flush()?;
        drop(out);
        let Some(keys) = keys.as_mut() else {
            return Ok(());
        };
        if keys.wait(Duration::from_millis(a.interval_ms))? {
            return Ok(());
        }
    }
}
