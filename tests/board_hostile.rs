//! Boards under bad input: state words, copies, lengths, keys, the producer table and the board
//! word forged by another process. The promise (docs/design.md §12): a typed error or a usable
//! board, values as committed — never a panic, a value longer than the value size, a forged
//! value reported as committed, or an update that does not return.

use shmbus_testkit as support;

use std::time::{Duration, Instant};

use shmbus::{Board, BoardBuilder, Error};
use support::forge::Forger;
use support::make;
use support::{Rng, TestBus};

/// Word offsets of a board of 5 cells of 24-byte values with keys (docs/design.md §12): the
/// board word, the producer table, and cells of 24 words (state, two copies of 5, keys).
const BOARD_HEADER_WORD: usize = 15;
const PRODUCER_TABLE: std::ops::Range<usize> = 256..256 + 32 * 8;
const CELL_WORDS: usize = 24;

/// Random forgeries of every word a board's protocol reads (state words, copies, lengths,
/// stamps, keys, claim and pid words of the producer table, the board word), then every
/// operation: never a panic, never a call that does not return, never a value longer than the
/// value size, and an update the writer reports committed is the value read right after it
/// (never a forged one). repro_kinds_hostile.rs found the holder panic this guards against.
#[test]
fn random_board_forgeries_never_panic_hang_or_deliver_a_forged_value() {
    let name = TestBus::new("board-forged-random");
    let board = BoardBuilder::new(name.name())
        .cells(5)
        .value_size(24)
        .keys(&["k0", "k1", "k2"])
        .create()
        .expect("create");
    {
        let mut w = board.writer().expect("attach");
        for i in 0..5 {
            w.set_bytes(i, &[i as u8; 20]).expect("set");
        }
    }
    let forger = Forger::new(&name);
    let cells_end = 512 + 8 * CELL_WORDS;
    assert_eq!(
        forger.words().len(),
        cells_end,
        "the layout this test forges"
    );
    let mut rng = Rng::from_env("board_forgeries");
    let (mut committed, mut refused) = (0u32, std::collections::BTreeMap::<String, u32>::new());
    let started = Instant::now();
    for round in 0..600u64 {
        for _ in 0..1 + rng.below(4) {
            let w = match rng.below(10) {
                // State words, most of all.
                0..=4 => 512 + rng.below(8) as usize * CELL_WORDS,
                5..=7 => 512 + rng.below(8 * CELL_WORDS as u64) as usize,
                8 => PRODUCER_TABLE.start + rng.below(PRODUCER_TABLE.len() as u64) as usize,
                _ => BOARD_HEADER_WORD,
            };
            let old = forger.load(w);
            let v = match rng.below(8) {
                0 => rng.next(),
                1 => rng.below(64),
                2 => u64::MAX - rng.below(3),
                // A state word: version, current copy, busy, any holder field.
                3 => rng.below(1 << 20) << 8 | rng.below(64) << 2 | rng.below(4),
                4 => old & !0xfc | rng.below(64) << 2,
                5 => old | 1,
                _ => old ^ (1 << rng.below(64)),
            };
            forger.store(w, v);
        }
        let what = format!("round {round}");
        let bounded = |t: Instant, op: &str| {
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{what}: {op} did not return"
            );
        };
        let mut note = |e: &Error| {
            let kind = format!("{e:?}");
            let kind = kind.split([' ', '{', '(']).next().unwrap_or("").to_owned();
            *refused.entry(kind).or_default() += 1;
        };
        let t = Instant::now();
        let opened = Board::open(name.name());
        bounded(t, "open");
        let b = match opened {
            Ok(b) => b,
            Err(e) => {
                assert!(
                    e.is_corrupt() || matches!(e, Error::NotInitialised { .. }),
                    "{what}: {e}"
                );
                note(&e);
                // The board word is the only one open reads: put it back.
                forger.store(BOARD_HEADER_WORD, 5 | 64 << 32);
                continue;
            }
        };
        let mut rd = b.reader();
        for i in 0..b.cells() {
            let t = Instant::now();
            match rd.read(i) {
                Ok(Some(v)) => assert!(v.bytes().len() <= b.value_size(), "{what}"),
                Ok(None) => {}
                Err(e) => {
                    assert!(
                        matches!(e, Error::CellBusy { .. } | Error::BoardCorrupt { .. }),
                        "{what}: {e}"
                    );
                    note(&e);
                }
            }
            bounded(t, "read");
            let _ = (b.key(i), rd.version(i));
        }
        let t = Instant::now();
        let attached = b.writer();
        bounded(t, "writer");
        let mut w = attached.unwrap_or_else(|e| panic!("{what}: attach: {e}"));
        for i in 0..b.cells() {
            let value = [round as u8 ^ i as u8; 24];
            let len = 1 + (round as usize + i) % 24;
            let t = Instant::now();
            let set = w.set_bytes(i, &value[..len]);
            bounded(t, "set_bytes");
            match set {
                Ok(version) => {
                    committed += 1;
                    let v = rd.read(i).unwrap_or_else(|e| panic!("{what}: read: {e}"));
                    let v = v.unwrap_or_else(|| panic!("{what}: cell {i} empty after a set"));
                    assert_eq!(
                        (v.version(), v.bytes()),
                        (version, &value[..len]),
                        "{what}: cell {i} is not the value just committed"
                    );
                }
                Err(e) => {
                    assert!(
                        matches!(e, Error::CellHeld { .. } | Error::BoardCorrupt { .. }),
                        "{what}: {e}"
                    );
                    note(&e);
                    // A version forged to its limit refuses every update for good: put the
                    // cell back as a fresh board has it, so later rounds keep writing.
                    forger.store(512 + i * CELL_WORDS, 0);
                }
            }
        }
    }
    eprintln!(
        "600 board forgery rounds in {:?}: {committed} updates committed, refused {refused:?}",
        started.elapsed()
    );
    assert!(
        committed > 1000,
        "the writer was refused too often: {refused:?}"
    );
}

fn forge_board_word(t: &TestBus, word: u64) {
    Forger::new(t).store(BOARD_HEADER_WORD, word);
}

#[test]
fn a_forged_board_word_is_a_corrupt_board() {
    let name = TestBus::new("board-forged");
    make::board(&name, 5, 8);
    // 5 cells take room for 8; anything that does not round up to 8 is refused. The board word
    // is written before the magic, so a published board with none (0) is corrupt too, never
    // "still being created".
    for word in [9u64, 4, 1 << 32 | 5, 64 << 32 | 5, 0] {
        forge_board_word(&name, word);
        let err = Board::open(name.name()).unwrap_err();
        assert!(
            matches!(err, Error::BoardCorrupt { .. }),
            "{word:#x}: {err}"
        );
        assert!(err.is_corrupt());
    }
    forge_board_word(&name, 8);
    assert_eq!(Board::open(name.name()).unwrap().cells(), 8);
}

/// Word of cell 0's state: the cells start after the 4096-byte header.
const CELL0_STATE: usize = 512;

/// repro_kinds_board_forged_holder: a state word whose holder field (bits 2..8) names an entry
/// beyond the 32-entry producer table (or a busy word with no holder) is no writer's hold:
/// `set_bytes` neither panics (indexing the table with it) nor reports `CellHeld` forever; it
/// gives the cell back and writes it.
#[test]
fn a_forged_holder_beyond_the_producer_table_is_given_back_not_followed() {
    for (cells, holder) in [(1usize, 40u64), (64, 40), (1, 33), (1, 63), (1, 0)] {
        let name = TestBus::new("board-holder");
        let board = make::board(&name, cells, 8);
        let forger = Forger::new(&name);
        let mut w = board.writer().unwrap();
        assert_eq!(w.set_bytes(0, b"v1").unwrap(), 1);
        drop(w);
        let s = forger.load(CELL0_STATE);
        // Keep the version and the current-copy bit; busy, holder field `holder`.
        forger.store(CELL0_STATE, s & !0xff | s & 0b10 | holder << 2 | 1);
        let mut rd = board.reader();
        let v = rd.read(0).unwrap().expect("set");
        assert_eq!((v.version(), v.bytes()), (1, &b"v1"[..]), "still readable");
        let mut w = board.writer().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.set_bytes(0, b"v2")));
        let r = r.unwrap_or_else(|_| panic!("{cells} cells, holder {holder}: set_bytes panicked"));
        assert_eq!(r.unwrap(), 2, "{cells} cells, holder {holder}");
        let v = rd.read(0).unwrap().expect("set");
        assert_eq!((v.version(), v.bytes()), (2, &b"v2"[..]));
        assert_eq!(forger.load(CELL0_STATE) & 0xfd, 0, "free, no holder");
    }
}

/// A version at the top of its 56 bits cannot be raised: the update is refused as a corrupt
/// board instead of committing a version that wraps to 0 ("never set").
#[test]
fn a_forged_version_at_its_limit_is_a_corrupt_board_not_a_wrapped_one() {
    let name = TestBus::new("board-seq-limit");
    let board = make::board(&name, 1, 8);
    let forger = Forger::new(&name);
    let mut w = board.writer().unwrap();
    w.set_bytes(0, b"v1").unwrap();
    let s = forger.load(CELL0_STATE);
    forger.store(CELL0_STATE, u64::MAX << 8 | s & 0b10);
    let err = w.set_bytes(0, b"v2").unwrap_err();
    assert!(matches!(err, Error::BoardCorrupt { .. }), "{err}");
    let mut rd = board.reader();
    let v = rd.read(0).unwrap().expect("set");
    assert_eq!((v.version(), v.bytes()), ((1 << 56) - 1, &b"v1"[..]));
}
