//! `shmbus set` and `shmbus board`: a board's cells, set one at a time and shown as a table.
//!
//! Every key and value read from a segment is escaped before it is printed.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use shmbus::{Board, BoardBuilder};

use crate::keys::QuitKeys;
use crate::kinds::{board, trusting, Payloads, Trust};
use crate::output::{CmdResult, Failure};
use crate::text;

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
    #[command(flatten)]
    trust: Trust,
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
    let board = trusting!(BoardBuilder::new(&a.name), a.trust).open()?;
    let value = if a.hex {
        text::parse_hex(&a.value).map_err(Failure)?
    } else {
        a.value.as_bytes().to_vec()
    };
    let index = cell_index(&board, &a.cell)?;
    let mut w = board.writer()?;
    let version = w.set_bytes(index, &value)?;
    if a.json {
        return crate::output::print_json(&serde_json::json!({
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

pub(crate) fn show(a: &BoardArgs) -> CmdResult {
    let board = board::open_for_inspection(&a.name)?;
    let terminal = io::stdout().is_terminal();
    let mut keys = if a.watch {
        Some(QuitKeys::new()?)
    } else {
        None
    };
    loop {
        let rows = board::rows(&board, a.hex, Payloads::Shown);
        let mut out = io::stdout().lock();
        if a.json {
            writeln!(out, "{}", text::json_line(&rows))?;
        } else {
            if a.watch && terminal {
                // Home and clear: the table is redrawn in place.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            board::print_table(&mut out, &board, &rows)?;
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
