//! Boards across processes: a checksummed stress (writer processes updating cells while reader
//! processes check every value they copy), and a writer killed with SIGKILL while inside an
//! update, which must leave the previous value readable and the cell repairable.
//!
//! Every process is real: this test binary re-executes itself (`child_entry`) in the role named
//! by `SHMBUS_TEST_ROLE`. Values check themselves (writer and cell, counter, a body derived from
//! both, FNV-1a), so a torn value cannot go unnoticed.
//!
//! `SHMBUS_BOARD_READS` sets the reads per reader process (default 200 000, two readers);
//! `SHMBUS_BOARD_READS=5000000` makes the 10^7 reads of the release checklist.

use shmbus_testkit as support;

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shmbus::{Board, Error};
use support::make;
use support::{check_payload, env, field, make_payload, role, say, ChildProc, Rng, TestBus};

const CHILD: &str = "child_entry";
const CELLS: usize = 8;
const VALUE: usize = 100;
const LIMIT: Duration = Duration::from_secs(120);

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[
        ("writer", writer),
        ("reader", reader),
        ("dier", dier),
        ("sole_dier", sole_dier),
    ]);
}

/// The id stored in a value: writer in the high half, cell in the low half.
fn value_id(writer: u64, cell: usize) -> u64 {
    writer << 32 | cell as u64
}

/// Sets random cells to checksummed values of random lengths until told to stop on stdin, then
/// reports how many updates it made to each cell.
fn writer() {
    let board = Board::open(&env::<String>("BOARD")).expect("open board");
    let mut w = board.writer().expect("attach writer");
    let id: u64 = env("ID");
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().lock().lines().next();
        s2.store(true, Ordering::Relaxed);
    });
    say("attached");
    let mut rng = Rng::new(id);
    let mut sets = [0u64; CELLS];
    let mut buf = [0u8; VALUE];
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let cell = rng.below(CELLS as u64) as usize;
        let len = 24 + rng.below((VALUE - 23) as u64) as usize;
        make_payload(&mut buf[..len], value_id(id, cell), k);
        match w.set_bytes(cell, &buf[..len]) {
            Ok(_) => sets[cell] += 1,
            Err(Error::CellHeld { .. }) => {}
            Err(e) => panic!("set: {e}"),
        }
        k += 1;
    }
    let counts: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, n)| format!("c{i}={n}"))
        .collect();
    say(&format!("done {}", counts.join(" ")));
}

/// Reads random cells, checking each value whole, of its own cell, and versions never going
/// back; reports reads, torn values, busy results and the changes it saw.
fn reader() {
    let board = Board::open_read_only(&env::<String>("BOARD")).expect("open board");
    let mut r = board.reader();
    let reads: u64 = env("READS");
    let mut rng = Rng::new(env::<u64>("SEED"));
    let mut last = [(0u64, 0u64, 0u64); CELLS];
    let (mut torn, mut busy, mut changes, mut backwards) = (0u64, 0u64, 0u64, 0u64);
    say("ready");
    for _ in 0..reads {
        let cell = rng.below(CELLS as u64) as usize;
        match r.read(cell) {
            Ok(Some(v)) => {
                let Some((id, k)) = check_payload(v.bytes()) else {
                    torn += 1;
                    continue;
                };
                if id as u32 as usize != cell {
                    torn += 1;
                    continue;
                }
                let (version, lid, lk) = last[cell];
                if v.version() < version {
                    backwards += 1;
                } else if v.version() == version && (id, k) != (lid, lk) {
                    // The same version must be the same value.
                    torn += 1;
                } else if v.version() > version {
                    changes += 1;
                }
                last[cell] = (v.version(), id, k);
            }
            Ok(None) => {}
            Err(Error::CellBusy { .. }) => busy += 1,
            Err(e) => panic!("read: {e}"),
        }
    }
    say(&format!(
        "done reads={reads} torn={torn} busy={busy} changes={changes} backwards={backwards}"
    ));
}

#[test]
fn readers_never_see_a_torn_value_while_writer_processes_update_cells() {
    if role().is_some() {
        return;
    }
    let name = TestBus::new("board-stress");
    make::board(&name, CELLS, VALUE);
    let reads: u64 = support::env_or("SHMBUS_BOARD_READS", 200_000);
    let board = ("BOARD", name.name().to_owned());
    let mut writers: Vec<ChildProc> = (1..=2u64)
        .map(|id| ChildProc::spawn(CHILD, "writer", &[board.clone(), ("ID", id.to_string())]))
        .collect();
    for w in &mut writers {
        w.expect_line("attached");
    }
    let mut seeds = Rng::from_env("board stress");
    let mut readers: Vec<ChildProc> = (0..2)
        .map(|_| {
            ChildProc::spawn(
                CHILD,
                "reader",
                &[
                    board.clone(),
                    ("READS", reads.to_string()),
                    ("SEED", seeds.next().to_string()),
                ],
            )
        })
        .collect();
    let mut total_changes = 0;
    for r in &mut readers {
        r.expect_line("ready");
    }
    for r in &mut readers {
        let line = r.next_line().expect("reader result");
        eprintln!("reader: {line}");
        assert_eq!(field(&line, "reads"), reads);
        assert_eq!(field(&line, "torn"), 0, "torn values: {line}");
        assert_eq!(field(&line, "backwards"), 0, "versions went back: {line}");
        total_changes += field(&line, "changes");
        r.wait_success(LIMIT);
    }
    let mut sets = [0u64; CELLS];
    for w in &mut writers {
        w.tell("stop");
        let line = w.next_line().expect("writer result");
        for (i, n) in sets.iter_mut().enumerate() {
            *n += field(&line, &format!("c{i}"));
        }
        w.wait_success(LIMIT);
    }
    assert!(
        total_changes > 0,
        "the readers never saw an update land: nothing was tested"
    );
    let r = Board::open_read_only(name.name()).unwrap().reader();
    for (i, n) in sets.iter().enumerate() {
        assert_eq!(
            r.version(i).unwrap(),
            *n,
            "cell {i}: every update counted once"
        );
    }
}

/// Attaches a writer, starts an update of cell 2 with half a value pushed, says so, and waits
/// inside the update to be killed.
fn dier() {
    let board = Board::open(&env::<String>("BOARD")).expect("open board");
    let mut w = board.writer().expect("attach writer");
    let mut buf = [0u8; 64];
    make_payload(&mut buf, value_id(9, 2), 2);
    let _ = w.set_with(2, |v| {
        v.push(&buf[..32]).expect("fits");
        say("inside");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// The only writer of a single-writer board: starts an update of cell 2 with half a value
/// pushed, says so, and waits inside the update to be killed.
fn sole_dier() {
    let board = Board::open(&env::<String>("BOARD")).expect("open board");
    assert!(board.is_single_writer());
    let mut w = board.writer().expect("attach the only writer");
    let mut buf = [0u8; 64];
    make_payload(&mut buf, value_id(9, 2), 2);
    let _ = w.set_with(2, |v| {
        v.push(&buf[..32]).expect("fits");
        say("inside");
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// How the cell a dead writer held gets back in use.
#[derive(Clone, Copy)]
enum Repair {
    /// A writer that waits for the cell finds its holder dead and repairs it.
    ByWaitingWriter,
    /// A new writer attaches on the dead writer's producer entry and repairs it first.
    OnAttach,
}

fn crash_mid_update(how: Repair) {
    let name = TestBus::new("board-crash");
    let board = make::board(&name, 4, 64);
    let mut first = [0u8; 64];
    make_payload(&mut first, value_id(1, 2), 1);
    let mut w0 = board.writer().unwrap();
    assert_eq!(w0.set_bytes(2, &first).unwrap(), 1);
    let mut r = Board::open_read_only(name.name()).unwrap().reader();
    let mut child = ChildProc::spawn(CHILD, "dier", &[("BOARD", name.name().to_owned())]);
    child.expect_line("inside");

    // While the writer lives inside its update, readers get the previous value...
    let v = r.read(2).unwrap().unwrap();
    assert_eq!((v.version(), v.bytes()), (1, &first[..]));
    // ...and a live holder is never taken over: the other writer gives up after a bound.
    let err = w0.set_bytes(2, b"not now").unwrap_err();
    assert!(
        matches!(err, Error::CellHeld { index: 2, pid: Some(p), .. } if p as i32 == child.pid()),
        "{err}"
    );

    assert_eq!(child.kill9(), Some(libc::SIGKILL));
    let v = r.read(2).unwrap().unwrap();
    assert_eq!(
        (v.version(), v.bytes()),
        (1, &first[..]),
        "the previous value survives the death"
    );

    let mut next = [0u8; 64];
    make_payload(&mut next, value_id(1, 2), 3);
    let version = match how {
        Repair::ByWaitingWriter => w0.set_bytes(2, &next).unwrap(),
        Repair::OnAttach => {
            drop(w0);
            // The lowest free entry: the dead writer's (the parent's writer left entry 0 free
            // too; attach two so that one lands on it).
            let a = board.writer().unwrap();
            let mut b = board.writer().unwrap();
            assert_eq!(
                a.repaired() + b.repaired(),
                1,
                "the new owner of the dead entry repaired its cell"
            );
            b.set_bytes(2, &next).unwrap()
        }
    };
    assert_eq!(version, 2, "the dead update never counts");
    let v = r.read(2).unwrap().unwrap();
    assert_eq!((v.version(), v.bytes()), (2, &next[..]));
}

#[test]
fn a_writer_killed_mid_update_leaves_the_previous_value_and_a_waiting_writer_repairs_the_cell() {
    if role().is_some() {
        return;
    }
    crash_mid_update(Repair::ByWaitingWriter);
}

#[test]
fn a_writer_killed_mid_update_is_repaired_by_the_next_owner_of_its_entry() {
    if role().is_some() {
        return;
    }
    crash_mid_update(Repair::OnAttach);
}

#[test]
fn a_single_writer_killed_mid_set_leaves_the_previous_value_and_the_next_writer_repairs_it() {
    if role().is_some() {
        return;
    }
    let name = TestBus::new("board-sole-crash");
    let board = shmbus::BoardBuilder::new(name.name())
        .cells(4)
        .value_size(64)
        .single_writer()
        .create()
        .unwrap();
    let mut first = [0u8; 64];
    make_payload(&mut first, value_id(1, 2), 1);
    assert_eq!(board.writer().unwrap().set_bytes(2, &first).unwrap(), 1);
    let mut r = Board::open_read_only(name.name()).unwrap().reader();
    let mut child = ChildProc::spawn(CHILD, "sole_dier", &[("BOARD", name.name().to_owned())]);
    child.expect_line("inside");

    // The only writer lives inside its update: a second writer is refused, naming it...
    let err = board.writer().unwrap_err();
    assert!(
        matches!(err, Error::ProducerExists { pid: Some(p), .. } if p as i32 == child.pid()),
        "{err}"
    );
    // ...and readers get the previous value.
    let v = r.read(2).unwrap().unwrap();
    assert_eq!((v.version(), v.bytes()), (1, &first[..]));

    assert_eq!(child.kill9(), Some(libc::SIGKILL));
    let v = r.read(2).unwrap().unwrap();
    assert_eq!(
        (v.version(), v.bytes()),
        (1, &first[..]),
        "the previous value survives the death"
    );

    // The kernel dropped the dead writer's lock: the next writer attaches and repairs the cell
    // with its first update of it.
    let mut w = board.writer().unwrap();
    let mut next = [0u8; 64];
    make_payload(&mut next, value_id(1, 2), 3);
    assert_eq!(
        w.set_bytes(2, &next).unwrap(),
        2,
        "the dead update never counts"
    );
    assert_eq!(w.repaired(), 1);
    let v = r.read(2).unwrap().unwrap();
    assert_eq!((v.version(), v.bytes()), (2, &next[..]));
    check_payload(v.bytes()).expect("whole");
    assert_eq!(w.set_bytes(2, &first).unwrap(), 3);
    assert_eq!(w.repaired(), 1, "repaired once");
}
