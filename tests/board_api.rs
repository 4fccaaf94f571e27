//! Boards through the public API, in one process: values and versions, keys, typed values, the
//! in-place fill, and every kind of bad input as its own error.

use shmbus_testkit as support;

use shmbus::bytemuck::{Pod, Zeroable};
use shmbus::{Board, BoardBuilder, Bus, BusBuilder, Error};
use support::make;
use support::park::park;
use support::{assert_wrong_kind, TestBus};

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[bytemuck(crate = "shmbus::bytemuck")]
#[repr(C)]
struct Pose {
    x: f64,
    y: f64,
    t: u64,
}

#[test]
fn each_cell_holds_its_latest_value_and_counts_its_updates() {
    let name = TestBus::new("board-latest");
    let board = make::board(&name, 5, 20);
    assert_eq!((board.cells(), board.value_size()), (5, 20));
    let mut w = board.writer().unwrap();
    let mut r = Board::open_read_only(name.name()).unwrap().reader();
    assert!(r.read(4).unwrap().is_none(), "never set");
    assert_eq!(r.version(4).unwrap(), 0);
    assert_eq!(w.set_bytes(4, b"one").unwrap(), 1);
    assert_eq!(w.set_bytes(4, b"second value").unwrap(), 2);
    assert_eq!(w.set_bytes(0, &[7; 20]).unwrap(), 1);
    let v = r.read(4).unwrap().unwrap();
    assert_eq!((v.version(), v.bytes()), (2, &b"second value"[..]));
    assert!(v.age() < std::time::Duration::from_secs(3600));
    assert_eq!(r.get(0).unwrap().unwrap().value, vec![7; 20]);
    assert!(!r.changed_since(4, 2).unwrap());
    w.set_bytes(4, b"").unwrap();
    assert!(r.changed_since(4, 2).unwrap());
    assert_eq!(r.get(4).unwrap().unwrap().value, b"");
    let mut seen = Vec::new();
    r.scan(|i, v| seen.push((i, v.unwrap().map(|v| v.version()))));
    assert_eq!(
        seen,
        [(0, Some(1)), (1, None), (2, None), (3, None), (4, Some(3))]
    );
}

#[test]
fn keys_are_stored_for_lookups_and_default_the_cell_count() {
    let name = TestBus::new("board-keys");
    BoardBuilder::new(name.name())
        .keys(&["left_knee", "right_knee", "hip"])
        .create()
        .unwrap();
    let board = Board::open(name.name()).unwrap();
    assert_eq!(board.cells(), 3);
    assert!(board.has_keys());
    assert_eq!(board.key(1).as_deref(), Some("right_knee"));
    assert_eq!(board.index_of("hip"), Some(2));
    assert_eq!(board.index_of("elbow"), None);
    assert_eq!(board.key(3), None);
}

#[test]
fn typed_values_round_trip_and_another_type_is_refused() {
    let name = TestBus::new("board-typed");
    let board = BoardBuilder::new(name.name())
        .value_type::<Pose>()
        .type_name("Pose")
        .cells(300)
        .create()
        .unwrap();
    assert_eq!(board.value_size(), std::mem::size_of::<Pose>());
    let mut w = board.writer().unwrap();
    let p = Pose {
        x: 1.5,
        y: -2.0,
        t: 9,
    };
    assert_eq!(w.set(299, &p).unwrap(), 1);
    let opened = BoardBuilder::new(name.name())
        .value_type::<Pose>()
        .type_name("Pose")
        .open()
        .unwrap();
    let got = opened.reader().get(299).unwrap().unwrap();
    assert_eq!((got.version, got.value), (1, p));
    let err = BoardBuilder::new(name.name())
        .value_type::<[u64; 3]>()
        .open()
        .unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err}");
    // A raw handle reads any board, but may not write a typed one.
    let raw = Board::open(name.name()).unwrap();
    assert_eq!(
        raw.reader().read(299).unwrap().unwrap().bytes(),
        shmbus::bytemuck::bytes_of(&p)
    );
    assert!(matches!(raw.writer(), Err(Error::TypeMismatch { .. })));
}

#[test]
fn a_value_built_in_place_is_committed_whole_and_a_panicking_fill_changes_nothing() {
    let board = make::in_process_board(2, 40);
    let mut w = board.writer().unwrap();
    let mut r = board.reader();
    let (v, n) = w
        .set_with(1, |v| {
            v.push(b"abc").unwrap();
            v.push(&[1u8; 20]).unwrap();
            v.push(b"xyz").unwrap();
            v.len()
        })
        .unwrap();
    assert_eq!((v, n), (1, 26));
    let mut want = b"abc".to_vec();
    want.extend([1u8; 20]);
    want.extend(b"xyz");
    assert_eq!(r.read(1).unwrap().unwrap().bytes(), &want[..]);
    let too_long = w.set_with(1, |v| v.push(&[0; 41])).unwrap();
    assert!(matches!(
        too_long.1,
        Err(Error::ValueTooLarge {
            len: 41,
            size: 40,
            ..
        })
    ));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = w.set_with(1, |v| {
            v.push(b"half").unwrap();
            panic!("fill fails");
        });
    }));
    assert!(panicked.is_err());
    let v = r.read(1).unwrap().unwrap();
    assert_eq!(v.version(), 2, "the empty value of the failed push counted");
    assert_eq!(v.bytes(), b"", "nothing of the panicking fill");
    assert_eq!(
        w.set_bytes(1, b"after").unwrap(),
        3,
        "the cell was given back"
    );
}

#[test]
fn bad_indexes_and_sizes_are_errors_with_the_numbers() {
    let board = make::in_process_board(3, 8);
    let mut w = board.writer().unwrap();
    let mut r = board.reader();
    assert!(matches!(
        w.set_bytes(3, b"x"),
        Err(Error::CellOutOfRange {
            index: 3,
            cells: 3,
            ..
        })
    ));
    assert!(matches!(
        r.read(usize::MAX),
        Err(Error::CellOutOfRange { cells: 3, .. })
    ));
    assert!(matches!(
        r.changed_since(7, 0),
        Err(Error::CellOutOfRange { .. })
    ));
    let err = w.set_bytes(0, b"nine byte").unwrap_err();
    assert!(
        matches!(
            err,
            Error::ValueTooLarge {
                len: 9,
                size: 8,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(r.version(0).unwrap(), 0, "a refused value changes nothing");
}

#[test]
fn bad_configurations_are_refused_before_anything_is_created() {
    let name = TestBus::new("board-config");
    let create = |b: BoardBuilder| b.create().unwrap_err();
    let b = || BoardBuilder::new(name.name());
    for err in [
        create(b()),
        create(b().cells(0)),
        create(b().cells(shmbus::MAX_CELLS + 1)),
        create(b().cells(1).value_size(0)),
        create(b().cells(1).keys(&["a", "b"])),
        create(b().keys(&["a", "a"])),
        create(b().keys(&[""])),
        create(b().keys(&["k".repeat(shmbus::KEY_MAX + 1)])),
    ] {
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    }
    assert!(!name.path().exists());
}

#[test]
fn a_bus_is_not_a_board_and_a_board_is_not_a_bus() {
    let bus = TestBus::new("board-kind-bus");
    BusBuilder::new(bus.name()).create().unwrap();
    let err = Board::open(bus.name()).unwrap_err();
    assert_wrong_kind(&err, "bus", "board");
    let board = TestBus::new("board-kind-board");
    BoardBuilder::new(board.name()).cells(2).create().unwrap();
    let err = Bus::open(board.name()).unwrap_err();
    assert_wrong_kind(&err, "board", "bus");
    assert!(matches!(
        Board::open("board-nobody-made-this"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        Board::open_read_only(board.name()).unwrap().writer(),
        Err(Error::ReadOnly { .. })
    ));
}

/// `open_or_create` creates a board that is not there, opens one of the same shape (keys
/// included), and refuses one of another shape with `GeometryMismatch`, leaving it as it was.
#[test]
fn open_or_create_creates_then_opens_the_same_board_and_refuses_another_shape() {
    let name = TestBus::new("board-ooc");
    let build = || {
        BoardBuilder::new(name.name())
            .keys(&["a", "b"])
            .value_size(16)
    };
    let first = build().open_or_create().unwrap();
    first.writer().unwrap().set_bytes(1, b"kept").unwrap();
    let again = build().open_or_create().unwrap();
    assert_eq!(again.index_of("b"), Some(1));
    assert_eq!(again.reader().get(1).unwrap().unwrap().value, b"kept");
    for other in [
        BoardBuilder::new(name.name())
            .keys(&["a", "c"])
            .value_size(16),
        BoardBuilder::new(name.name())
            .keys(&["a", "b"])
            .value_size(24),
        BoardBuilder::new(name.name()).cells(3).value_size(16),
    ] {
        let err = other.open_or_create().unwrap_err();
        assert!(matches!(err, Error::GeometryMismatch { .. }), "{err}");
    }
    let value = Board::open(name.name()).unwrap().reader().get(1).unwrap();
    assert_eq!(
        value.unwrap().value,
        b"kept",
        "the existing board is untouched"
    );
}

#[test]
fn a_single_writer_board_refuses_a_second_writer_while_the_first_lives() {
    let name = TestBus::new("board-sole");
    let board = BoardBuilder::new(name.name())
        .cells(3)
        .value_size(16)
        .single_writer()
        .create()
        .unwrap();
    let other = Board::open(name.name()).unwrap();
    assert!(board.is_single_writer() && other.is_single_writer());
    let mut w = board.writer().unwrap();
    assert_eq!(w.set_bytes(1, b"first").unwrap(), 1);
    for h in [&board, &other] {
        let err = h.writer().unwrap_err();
        assert!(
            matches!(err, Error::ProducerExists { pid: Some(p), .. } if p == std::process::id()),
            "{err}"
        );
    }
    drop(w);
    // Once the writer is gone, the next one attaches and carries on from the same versions.
    let mut w = other.writer().unwrap();
    assert_eq!(w.set_bytes(1, b"second").unwrap(), 2);
    assert_eq!(w.repaired(), 0, "nothing was left half-written");
    let v = board.reader().get(1).unwrap().unwrap();
    assert_eq!((v.version, v.value), (2, b"second".to_vec()));
}

#[test]
fn a_single_writer_board_holds_pod_values_and_their_versions() {
    let name = TestBus::new("board-sole-pod");
    let board = BoardBuilder::new(name.name())
        .keys(&["head", "hand"])
        .value_type::<Pose>()
        .single_writer()
        .create()
        .unwrap();
    let mut w = board.writer().unwrap().unstamped();
    let mut r = board.reader();
    for t in 1..=100u64 {
        let p = Pose {
            x: t as f64,
            y: -(t as f64),
            t,
        };
        assert_eq!(w.set(1, &p).unwrap(), t);
        let got = r.get(1).unwrap().unwrap();
        assert_eq!((got.version, got.value, got.stamp_ns), (t, p, 0));
    }
    assert!(r.read(0).unwrap().is_none(), "never set");
    // Stamped again by a writer that does not opt out.
    drop(w);
    let mut w = board.writer().unwrap();
    w.set(
        0,
        &Pose {
            x: 1.0,
            y: 2.0,
            t: 3,
        },
    )
    .unwrap();
    assert_ne!(r.get(0).unwrap().unwrap().stamp_ns, 0);
}

#[test]
fn open_or_create_with_another_number_of_writers_is_a_mismatch() {
    let name = TestBus::new("board-sole-mismatch");
    make::board(&name, 2, 8);
    let err = BoardBuilder::new(name.name())
        .cells(2)
        .value_size(8)
        .single_writer()
        .open_or_create()
        .unwrap_err();
    assert!(matches!(err, Error::GeometryMismatch { .. }), "{err}");
    assert!(err.to_string().contains("one writer"), "{err}");
}

/// A writer parked inside `set_with` (a thread, released by a channel) holds its cell: another
/// writer gets `CellHeld` naming this process, with a lower bound of the hold that is honest
/// (never more than the hold the test knows of) and that grows across its calls.
#[test]
fn a_writer_stopped_inside_an_update_is_reported_held_for_at_least_the_time_seen() {
    use std::time::Instant;
    let name = TestBus::new("board-held");
    let board = make::board(&name, 2, 16);
    let mut holder = board.writer().unwrap();
    let mut waiter = board.writer().unwrap();
    {
        let parked = park(move |gate| {
            holder
                .set_with(1, |v| {
                    v.push(b"half").unwrap();
                    gate.stop_here();
                })
                .map(|(version, ())| version)
        });
        let held_since = Instant::now();
        let held = |waiter: &mut shmbus::BoardWriter| {
            let start = Instant::now();
            let err = waiter.set_bytes(1, b"mine").unwrap_err();
            let end = Instant::now();
            match err {
                Error::CellHeld {
                    index: 1,
                    pid,
                    held_for,
                    ..
                } => {
                    assert_eq!(pid, Some(std::process::id()));
                    let msg = err.to_string();
                    assert!(
                        msg.contains("held for at least")
                            && msg.contains(&format!("by pid {}", std::process::id())),
                        "{msg}"
                    );
                    (start, held_for, end)
                }
                other => panic!("expected CellHeld, got {other}"),
            }
        };
        let (_, h1, end1) = held(&mut waiter);
        assert!(h1 > std::time::Duration::ZERO);
        assert!(h1 <= end1 - held_since, "more than the hold we know of");
        let (start2, h2, end2) = held(&mut waiter);
        assert!(
            h2 >= h1 + (start2 - end1),
            "counted from the first sight: {h1:?}, then {h2:?}"
        );
        assert!(h2 <= end2 - held_since, "more than the hold we know of");
        assert_eq!(parked.release().unwrap(), 1);
    }
    assert_eq!(waiter.set_bytes(1, b"mine").unwrap(), 2);
}

#[test]
fn holds_name_a_writer_mid_update_and_nothing_once_it_committed() {
    let t = TestBus::new("board-holds");
    let board = BoardBuilder::new(t.name()).cells(3).create().unwrap();
    let inspector = Board::open(t.name()).unwrap();
    let mut w = board.writer().unwrap();
    let index = w.producer_index();
    w.set_bytes(1, b"first").unwrap();
    assert_eq!(inspector.holds(), [], "a committed update holds nothing");
    // The fill stops inside: cell 1 is taken meanwhile.
    let writer = park(move |gate| {
        w.set_with(1, |v| {
            v.push(b"slow").unwrap();
            gate.stop_here();
        })
        .map(|(version, ())| version)
    });
    assert_eq!(
        inspector.holds(),
        [shmbus::CellHold {
            cell: 1,
            index,
            pid: std::process::id(),
            version: 1,
        }]
    );
    assert_eq!(writer.release().unwrap(), 2);
    assert_eq!(inspector.holds(), []);
}
