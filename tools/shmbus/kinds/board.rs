//! Boards: the latest value of each of N cells. What `create`, `list`, `info` and `rm` do with
//! a board, and the table that `info` and `board` print (`set` and `board` are its own
//! commands).
//!
//! Every key and value read from a segment is escaped before it is printed.

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use shmbus::inspect::{self, Probe};
use shmbus::{Board, BoardBuilder};

use super::{Access, CreateArgs, Instead, Kind, ListRow, Liveness, Payloads, Report};
use crate::metrics::SegmentMetrics;
use crate::output::{CmdResult, Failure};
use crate::stalls::{self, Held};
use crate::text;

/// The board kind.
pub(crate) struct BoardKind;

/// Opens board `name` read-only, trusting any owner and mode (an inspector only reads).
pub(crate) fn open_for_inspection(name: &str) -> shmbus::Result<Board> {
    super::for_inspection!(BoardBuilder::new(name))
}

impl Kind for BoardKind {
    fn word(&self) -> &'static str {
        "board"
    }

    fn create_options(&self) -> &'static [&'static str] {
        &["--size", "--cells", "--keys", "--single-writer"]
    }

    fn create(&self, a: &CreateArgs) -> CmdResult {
        if a.cells.is_none() && a.keys.is_empty() {
            return Err(Failure(
                "a board needs a number of cells: --cells N, or --keys a,b,... (one cell per key)"
                    .into(),
            ));
        }
        let mut b = BoardBuilder::new(&a.name)
            .value_size(a.size.unwrap_or(shmbus::DEFAULT_BOARD_VALUE_SIZE))
            .keys(&a.keys)
            .permissions(a.mode);
        if let Some(n) = a.cells {
            b = b.cells(n);
        }
        if a.single_writer {
            b = b.single_writer();
        }
        let board = b.create()?;
        a.say_created(
            board.name(),
            serde_json::json!({
                "kind": "board",
                "cells": board.cells(),
                "value_size": board.value_size(),
                "keys": board.has_keys(),
                "single_writer": board.is_single_writer(),
            }),
            format!(
                "created board {}: {} cells of {} bytes{}{}",
                board.name(),
                board.cells(),
                board.value_size(),
                if board.has_keys() { ", with keys" } else { "" },
                if board.is_single_writer() {
                    ", one writer"
                } else {
                    ""
                },
            ),
        )
    }

    fn summarize(&self, p: &Probe) -> shmbus::Result<Box<dyn ListRow>> {
        Ok(Box::new(summary(p)?))
    }

    fn list_columns(&self) -> &'static str {
        "CELLS> VALUE> TYPE KEYS WRITERS CREATOR"
    }

    /// Its table, as `shmbus board NAME` prints it; as JSON, one object with the board's
    /// shape and its cells (as every kind's `info --json` is an object).
    fn report(
        &self,
        name: &str,
        sample_ms: Option<u64>,
        payloads: Payloads,
    ) -> Result<Report, Failure> {
        let board = open_for_inspection(name)?;
        // A second look, `sample_ms` later, only if the first found a writer holding a cell.
        let stalled = stalls::sample(Duration::from_millis(sample_ms.unwrap_or(200)), || {
            board.holds().into_iter().map(Held::from).collect()
        });
        let p = inspect::probe(name)?;
        let cells = rows(&board, false, payloads);
        let access = Access::of(name);
        let mut text = Vec::new();
        print_table(&mut text, &board, &cells)?;
        for s in &stalled {
            writeln!(text, "stalled: {}", s.line())?;
        }
        if let Some(a) = &access {
            writeln!(text, "access: {}", a.line())?;
        }
        Ok(Report {
            text: String::from_utf8_lossy(&text).into_owned(),
            json: text::json_line(&serde_json::json!({
                "name": name,
                "kind": "board",
                "path": inspect::segment_path(name),
                "summary": summary(&p)?,
                "access": access,
                "cells": cells,
                "stalled": stalled,
            })),
            failure: None,
        })
    }

    fn live_participants(&self, p: &Probe) -> Vec<String> {
        // A board says whether a writer is attached, not who.
        if p.has_live_participants().unwrap_or(false) {
            vec!["a live writer".into()]
        } else {
            Vec::new()
        }
    }

    fn stale_detail(&self, _: &Probe) -> String {
        "no writer attached".into()
    }

    fn instead(&self, name: &str) -> Instead {
        Instead {
            what: "a board",
            watch: format!("shmbus board {name} --watch"),
            publish: "shmbus set",
        }
    }
}

impl ListRow for BoardSummary {
    fn cells(&self) -> Vec<String> {
        let b = self;
        vec![
            b.cells.to_string(),
            b.value_size.to_string(),
            text::sanitize(&b.value_type),
            if b.keys { "yes" } else { "no" }.into(),
            if b.writers_alive { "alive" } else { "none" }.into(),
            b.liveness.creator_cell(),
        ]
    }
    fn liveness(&self) -> &Liveness {
        &self.liveness
    }
    fn metrics(&self, m: &mut SegmentMetrics<'_>) {
        m.gauge("shmbus_board_cells", "Cells of the board.", self.cells);
        m.gauge(
            "shmbus_board_cells_written",
            "Cells of the board set at least once.",
            self.cells_written,
        );
        m.counter(
            "shmbus_board_updates_total",
            "Updates of all the board's cells since it was created.",
            self.updates,
        );
        m.gauge_by(
            "shmbus_participants_alive",
            super::PARTICIPANTS_HELP,
            ("role", "writer"),
            self.writers_alive,
        );
    }
}

/// The summary of a probed board, opened read-only.
fn summary(p: &Probe) -> shmbus::Result<BoardSummary> {
    let board = open_for_inspection(&p.name)?;
    let writers_alive = board.has_writers();
    let reader = board.reader();
    // A cell's version counts its updates; one that cannot be read counts as none.
    let versions: Vec<u64> = (0..board.cells())
        .map(|i| reader.version(i).unwrap_or(0))
        .collect();
    Ok(BoardSummary {
        cells_written: versions.iter().filter(|v| **v > 0).count(),
        updates: versions.iter().sum(),
        cells: board.cells(),
        value_size: board.value_size(),
        value_type: board.value_type().to_string(),
        keys: board.has_keys(),
        single_writer: board.is_single_writer(),
        writers_alive,
        liveness: Liveness::of(&p.header, writers_alive),
    })
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
    /// Whether the board takes one writer at a time.
    pub(crate) single_writer: bool,
    /// Cells set at least once.
    pub(crate) cells_written: usize,
    /// Updates of all cells since creation (the sum of their versions).
    pub(crate) updates: u64,
    /// Whether a live writer is attached.
    pub(crate) writers_alive: bool,
    #[serde(flatten)]
    pub(crate) liveness: Liveness,
}

/// One cell as printed.
#[derive(Serialize)]
pub(crate) struct CellRow {
    index: usize,
    key: Option<String>,
    /// Updates so far (0: never set).
    version: u64,
    /// Milliseconds since the value was set.
    age_ms: Option<u64>,
    len: Option<usize>,
    /// The value, escaped text (or hex with --hex); null when payloads are hidden.
    value: Option<String>,
    /// The value in hex; null when payloads are hidden.
    value_hex: Option<String>,
    error: Option<String>,
}

/// The cells of `board`; their values only if `payloads` shows them.
pub(crate) fn rows(board: &Board, hex: bool, payloads: Payloads) -> Vec<CellRow> {
    let mut reader = board.reader();
    let mut out = Vec::with_capacity(board.cells());
    reader.scan(|index, v| {
        let mut row = CellRow {
            index,
            key: board.key(index).map(|k| text::sanitize(&k)),
            version: 0,
            age_ms: None,
            len: None,
            value: None,
            value_hex: None,
            error: None,
        };
        match v {
            Ok(Some(v)) => {
                row.version = v.version();
                row.age_ms = Some(v.age().as_millis() as u64);
                row.len = Some(v.bytes().len());
                if payloads == Payloads::Shown {
                    row.value = Some(if hex {
                        text::hex(v.bytes())
                    } else {
                        text::escape_payload(v.bytes())
                    });
                    row.value_hex = Some(text::hex(v.bytes()));
                }
            }
            Ok(None) => {}
            Err(e) => row.error = Some(text::sanitize(&e.to_string())),
        }
        out.push(row);
    });
    out
}

pub(crate) fn print_table(out: &mut impl Write, board: &Board, rows: &[CellRow]) -> io::Result<()> {
    writeln!(
        out,
        "board {}: {} cells of {} bytes, type {}{}",
        text::sanitize(board.name()),
        board.cells(),
        board.value_size(),
        text::sanitize(&board.value_type().to_string()),
        if board.is_single_writer() {
            ", one writer at a time"
        } else {
            ""
        }
    )?;
    writeln!(out, "INDEX\tKEY\tVERSION\tAGE\tVALUE")?;
    for r in rows {
        let age = r
            .age_ms
            .map_or("-".into(), |ms| text::duration(Duration::from_millis(ms)));
        let value = match (&r.value, &r.error, r.len) {
            (_, Some(e), _) => format!("error: {e}"),
            (Some(v), None, _) => v.clone(),
            (None, None, Some(len)) => format!("({len} bytes, hidden)"),
            (None, None, None) => "-".into(),
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
