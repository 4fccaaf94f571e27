//! Journals through the library API: what is appended reads back, also while it is written, a
//! recorder killed at random instants leaves a clean prefix, and damaged files give typed errors.

use shmbus_testkit as support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmbus::journal::{Entry, Journal, JournalShape, ENTRY_HEADER_BYTES};
use shmbus::{Error, ProducerMode, TypeInfo};
use support::{check_payload, make_payload, say, ChildProc, Rng};

const CAPACITY: u64 = 200;

/// A directory of its own, removed on drop: in /dev/shm when there is one (the fuzzer writes
/// thousands of files; a disk-backed temporary directory makes that I/O bound), else in the
/// system's temporary directory.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!("journal-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temporary directory");
        TempDir(p)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shape() -> JournalShape {
    JournalShape {
        slots: 64,
        capacity: CAPACITY,
        mode: ProducerMode::Multi,
        message_type: TypeInfo::raw(),
    }
}

/// Entry `k` of the deterministic stream the writers here append: every 7th is a loss of
/// `k % 5 + 1`, the others self-checking messages of 24..=CAPACITY bytes (and a few empty ones
/// are covered by `empty_and_full_payloads_round_trip`).
fn nth_entry(k: u64) -> Entry {
    if k % 7 == 6 {
        return Entry::Lost {
            first: k * 10,
            count: k % 5 + 1,
        };
    }
    let len = support::payload_len(1, k, CAPACITY as usize);
    let mut bytes = vec![0; len];
    make_payload(&mut bytes, k, k);
    Entry::Message {
        seq: k * 10,
        ts_ns: 1_000_000 + k,
        bytes,
    }
}

fn append(w: &mut shmbus::journal::JournalWriter, e: &Entry) {
    match e {
        Entry::Message { seq, ts_ns, bytes } => w.append_message(*seq, *ts_ns, bytes),
        Entry::Lost { first, count } => w.append_loss(*first, *count),
    }
    .expect("append")
}

fn read_all(path: &Path) -> Vec<Entry> {
    let mut j = Journal::open(path).expect("open journal");
    j.entries().collect::<Result<_, _>>().expect("entries read")
}

#[test]
fn appended_entries_read_back_in_order_across_growth() {
    let dir = TempDir::new("jr-grow");
    let path = dir.file("a.journal");
    let want: Vec<Entry> = (0..3000).map(nth_entry).collect();
    let mut w = Journal::create_with_chunk(&path, &shape(), 4096).expect("create");
    for e in &want {
        append(&mut w, e);
    }
    let grown = std::fs::metadata(&path).unwrap().len();
    assert!(
        grown > 4096 * 8,
        "the file grew past its first chunk ({grown} bytes)"
    );
    {
        let j = Journal::open(&path).unwrap();
        assert!(j.recorder_alive(), "the writer holds the journal");
        assert!(!j.is_closed());
    }
    w.finish().expect("finish");

    let mut j = Journal::open(&path).unwrap();
    assert_eq!(j.info().shape, shape());
    assert!(j.is_closed(), "finish marks the journal closed");
    assert!(!j.recorder_alive(), "nobody holds the journal after finish");
    let got: Vec<Entry> = j.entries().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want);
    let s = j.summary().unwrap();
    let messages = want
        .iter()
        .filter(|e| matches!(e, Entry::Message { .. }))
        .count() as u64;
    assert_eq!(s.messages, messages);
    assert_eq!(s.loss_entries, want.len() as u64 - messages);
    assert_eq!(s.first_seq, Some(0));
    assert_eq!(s.torn_tail_bytes, 0);
}

#[test]
fn empty_and_full_payloads_round_trip_and_oversized_ones_are_refused() {
    let dir = TempDir::new("jr-edge");
    let path = dir.file("e.journal");
    let mut w = Journal::create(&path, &shape()).unwrap();
    let full: Vec<u8> = (0..CAPACITY as u8).collect();
    w.append_message(1, 2, b"").unwrap();
    w.append_message(3, 4, &full).unwrap();
    let err = w
        .append_message(5, 6, &[0; CAPACITY as usize + 1])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                len: 201,
                capacity: 200
            }
        ),
        "{err}"
    );
    assert!(matches!(w.append_loss(7, 0), Err(Error::InvalidConfig(_))));
    drop(w);
    assert_eq!(
        read_all(&path),
        vec![
            Entry::Message {
                seq: 1,
                ts_ns: 2,
                bytes: vec![]
            },
            Entry::Message {
                seq: 3,
                ts_ns: 4,
                bytes: full
            },
        ]
    );
}

#[test]
fn creating_over_an_existing_file_is_refused_and_leaves_it_alone() {
    let dir = TempDir::new("jr-exists");
    let path = dir.file("taken");
    std::fs::write(&path, b"precious").unwrap();
    let err = Journal::create(&path, &shape()).unwrap_err();
    assert!(
        matches!(&err, Error::JournalIo { op: "create", .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn follower_reads_entries_as_a_writer_commits_them() {
    let dir = TempDir::new("jr-follow");
    let path = dir.file("f.journal");
    let mut w = Journal::create_with_chunk(&path, &shape(), 4096).unwrap();
    let mut follower = Journal::open(&path).unwrap().follow();
    assert_eq!(follower.poll().unwrap(), None, "nothing committed yet");
    const N: u64 = 4000;
    let writer = std::thread::spawn(move || {
        for k in 0..N {
            append(&mut w, &nth_entry(k));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut k = 0;
    while k < N {
        match follower.poll().expect("follow") {
            Some(e) => {
                assert_eq!(e, nth_entry(k), "entry {k}");
                k += 1;
            }
            None => {
                assert!(Instant::now() < deadline, "follower stuck at entry {k}");
                std::thread::yield_now();
            }
        }
    }
    writer.join().unwrap();
    assert_eq!(follower.poll().unwrap(), None);
    assert!(follower.journal().is_closed());
}

#[test]
fn a_created_bus_has_the_recorded_shape_and_type() {
    let bus = support::TestBus::new("jr-shape");
    let recorded = JournalShape {
        slots: 128,
        capacity: 16,
        mode: ProducerMode::Multi,
        message_type: TypeInfo {
            name: "Tick".into(),
            size: 16,
            align: 8,
        },
    };
    let created = recorded.create_bus(bus.name()).unwrap();
    assert_eq!(JournalShape::of(&created), recorded);
    shmbus::BusBuilder::new(bus.name())
        .message_type::<[u64; 2]>()
        .type_name("Tick")
        .open()
        .expect("a typed program opens the created bus");
    assert!(matches!(
        recorded.create_bus(bus.name()),
        Err(Error::AlreadyExists { .. })
    ));
}

// ---- recorder killed at random instants ----

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[("appender", appender)]);
}

/// Creates the journal, says so, then appends the deterministic stream until killed.
fn appender() {
    let path: String = support::env("JOURNAL");
    let mut w = Journal::create_with_chunk(&path, &shape(), 4096).expect("create");
    say("ready");
    for k in 0.. {
        append(&mut w, &nth_entry(k));
    }
}

#[test]
fn a_recorder_killed_at_any_instant_leaves_a_journal_that_reads_to_a_clean_prefix() {
    let dir = TempDir::new("jr-kill");
    let mut rng = Rng::from_env("journal kill trials");
    let mut longest = 0;
    for trial in 0..200 {
        let path = dir.file(&format!("k{trial}.journal"));
        let mut child = ChildProc::spawn(
            "child_entry",
            "appender",
            &[("JOURNAL", path.display().to_string())],
        );
        child.expect_line("ready");
        // The instant of the kill, not a synchronisation: anywhere in the first ~2 ms of
        // appending, which crosses many chunk growths.
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        child.kill9();

        let mut j = Journal::open(&path).expect("a killed recorder's journal opens");
        assert!(
            !j.recorder_alive(),
            "the kernel dropped the dead recorder's lock"
        );
        assert!(!j.is_closed(), "a killed recorder never closed its journal");
        let mut k = 0;
        for e in j.entries() {
            let e = e.unwrap_or_else(|err| panic!("trial {trial}, entry {k}: {err}"));
            if let Entry::Message { bytes, .. } = &e {
                assert_eq!(
                    check_payload(bytes),
                    Some((k, k)),
                    "trial {trial}: entry {k} is torn"
                );
            }
            assert_eq!(e, nth_entry(k), "trial {trial}: entry {k} differs");
            k += 1;
        }
        let s = j.summary().unwrap();
        assert!(
            s.torn_tail_bytes <= ENTRY_HEADER_BYTES + CAPACITY.next_multiple_of(8),
            "a torn tail is at most one entry: {} bytes",
            s.torn_tail_bytes
        );
        longest = longest.max(k);
        std::fs::remove_file(&path).unwrap();
    }
    assert!(longest > 0, "some trial appended entries before its kill");
}

// ---- damaged files ----

fn expect_typed(result: Result<(), Error>, what: &str) {
    if let Err(e) = result {
        assert!(
            matches!(
                e,
                Error::NotAJournal { .. }
                    | Error::JournalVersion { .. }
                    | Error::CorruptJournal { .. }
            ),
            "{what}: unexpected error kind {e:?}"
        );
    }
}

/// Opens and reads a whole file; any error is returned.
fn read_everything(path: &Path) -> Result<(), Error> {
    let mut j = Journal::open(path)?;
    for e in j.entries() {
        if let Entry::Message { bytes, .. } = e? {
            assert!(
                bytes.len() as u64 <= j_capacity(path),
                "a message longer than the capacity"
            );
        }
    }
    Journal::open(path)?.summary()?;
    Ok(())
}

/// The capacity the header records (the bound every message must respect), or the maximum if
/// the header itself is unreadable.
fn j_capacity(path: &Path) -> u64 {
    Journal::open(path).map_or(u64::MAX, |j| j.info().shape.capacity)
}

#[test]
fn damaged_journals_give_typed_errors_never_a_panic() {
    let dir = TempDir::new("jr-fuzz");
    let good = dir.file("good.journal");
    let mut w = Journal::create_with_chunk(&good, &shape(), 4096).unwrap();
    for k in 0..40 {
        append(&mut w, &nth_entry(k));
    }
    drop(w);
    let original = std::fs::read(&good).unwrap();
    let end = {
        let mut j = Journal::open(&good).unwrap();
        j.summary().unwrap().end as usize
    };
    let path = dir.file("bad.journal");
    let mut rng = Rng::from_env("journal fuzz");
    let mut errors = 0;
    let cases = 12_000;
    for case in 0..cases {
        let mut bytes = original.clone();
        match case % 6 {
            // A few random bytes of the header.
            0 => {
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(400) as usize;
                    bytes[i] = rng.next() as u8;
                }
            }
            // A random word of the header set to an extreme value.
            1 => {
                let i = rng.below(50) as usize * 8;
                let v = [0, 1, u64::MAX, 1 << 63, rng.next()][rng.below(5) as usize];
                bytes[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            // Random bytes among the entries.
            2 | 3 => {
                for _ in 0..1 + rng.below(4) {
                    let i = 4096 + rng.below((end - 4096) as u64 + 64) as usize;
                    bytes[i] = rng.next() as u8;
                }
            }
            // An entry word replaced by a plausible marker with a random kind and length.
            4 => {
                let i = 4096 + rng.below(((end - 4096) / 8) as u64) as usize * 8;
                let v = 0x4A45u64 << 48 | rng.below(4) << 32 | rng.below(1 << 12);
                bytes[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            // Truncated anywhere.
            _ => bytes.truncate(rng.below(end as u64 + 64) as usize),
        }
        std::fs::write(&path, &bytes).unwrap();
        let r = read_everything(&path);
        errors += r.is_err() as u32;
        expect_typed(r, &format!("case {case}"));
    }
    assert!(
        errors > cases / 10,
        "the fuzzer damaged something ({errors} errors)"
    );
}

#[test]
fn each_kind_of_bad_file_has_its_own_error() {
    let dir = TempDir::new("jr-bad");
    let good = dir.file("good.journal");
    let mut w = Journal::create(&good, &shape()).unwrap();
    w.append_message(0, 0, b"x").unwrap();
    drop(w);
    let original = std::fs::read(&good).unwrap();
    let path = dir.file("bad");
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = original.clone();
        f(&mut b);
        std::fs::write(&path, &b).unwrap();
        Journal::open(&path).and_then(|mut j| j.summary().map(|_| ()))
    };

    let e = with(&|b| b.clear()).unwrap_err();
    assert!(matches!(e, Error::NotAJournal { .. }), "{e}");
    let e = with(&|b| b[..8].copy_from_slice(b"SHMBUS\0\x01")).unwrap_err();
    assert!(e.to_string().contains("not a shmbus journal"), "{e}");
    let e = with(&|b| b[..8].fill(0)).unwrap_err();
    assert!(e.to_string().contains("incomplete"), "{e}");
    let e = with(&|b| b[8] = 9).unwrap_err();
    assert!(
        matches!(
            e,
            Error::JournalVersion {
                found: 9,
                expected: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = with(&|b| b.truncate(100)).unwrap_err();
    assert!(
        matches!(e, Error::CorruptJournal { offset: 100, .. }),
        "{e}"
    );
    let e = with(&|b| b[16..24].copy_from_slice(&3u64.to_le_bytes())).unwrap_err();
    assert!(e.to_string().contains("slot count 3"), "{e}");
    // The one entry's marker claims more bytes than the capacity.
    let e = with(&|b| b[4096..4100].copy_from_slice(&1000u32.to_le_bytes())).unwrap_err();
    assert!(
        matches!(e, Error::CorruptJournal { offset: 4096, .. }),
        "{e}"
    );
    // The entry runs past the end of a file cut inside it.
    let e = with(&|b| b.truncate(4096 + 16)).unwrap_err();
    assert!(e.to_string().contains("runs past the end"), "{e}");

    let e = Journal::open(&dir.0).unwrap_err();
    assert!(e.to_string().contains("a directory"), "{e}");
    let fifo = dir.file("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let e = Journal::open(&fifo).unwrap_err();
    assert!(e.to_string().contains("a FIFO"), "{e}");
    let e = Journal::open(dir.file("missing")).unwrap_err();
    assert!(matches!(e, Error::JournalIo { op: "open", .. }), "{e}");
}

#[test]
fn a_torn_tail_is_ignored_and_measured() {
    let dir = TempDir::new("jr-torn");
    let path = dir.file("t.journal");
    let mut w = Journal::create(&path, &shape()).unwrap();
    w.append_message(5, 6, b"whole").unwrap();
    let end = w.len();
    drop(w);
    // What a recorder killed between its payload stores and its marker leaves.
    let mut b = std::fs::read(&path).unwrap();
    b[end as usize + 8..end as usize + 16].copy_from_slice(&6u64.to_le_bytes());
    b[end as usize + 24..end as usize + 29].copy_from_slice(b"parti");
    std::fs::write(&path, &b).unwrap();
    let mut j = Journal::open(&path).unwrap();
    let got: Vec<Entry> = j.entries().collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), 1);
    let s = j.summary().unwrap();
    assert_eq!((s.end, s.torn_tail_bytes), (end, 32));
}

// ---- durability: checksums and sync policies ----

/// A self-checking payload of `len` bytes for entry `k`, every byte non-zero.
fn nonzero_payload(k: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (k as usize * 31 + i * 7) as u8 | 1)
        .collect()
}

#[test]
fn a_payload_page_lost_in_a_power_failure_is_a_checksum_error_not_a_message() {
    // What a machine crash can leave: the page holding an entry's marker reached the disk, the
    // next page (the rest of its payload) did not and reads back as zeros.
    let dir = TempDir::new("jr-power");
    let path = dir.file("p.journal");
    let big = JournalShape {
        capacity: 8192,
        ..shape()
    };
    let mut w = Journal::create_with_chunk(&path, &big, 4096).unwrap();
    let mut starts = Vec::new();
    for k in 0..3 {
        starts.push(w.len());
        w.append_message(k, 1000 + k, &nonzero_payload(k, 3000))
            .unwrap();
    }
    let ends = [starts[1], starts[2], w.len()];
    drop(w);
    let damaged = starts[1];
    let marker_page = damaged / 4096;
    let tail_page = (ends[1] - 1) / 4096;
    assert!(tail_page > marker_page, "entry 1 spans two pages");
    let mut image = std::fs::read(&path).unwrap();
    let p = tail_page as usize * 4096;
    image[p..p + 4096].fill(0);
    std::fs::write(&path, &image).unwrap();

    let mut j = Journal::open(&path).unwrap();
    let got: Vec<Result<Entry, Error>> = j.entries().collect();
    assert_eq!(
        got.len(),
        2,
        "entry 0, then the error, then nothing: {got:?}"
    );
    assert_eq!(
        got[0].as_ref().unwrap(),
        &Entry::Message {
            seq: 0,
            ts_ns: 1000,
            bytes: nonzero_payload(0, 3000)
        }
    );
    match &got[1] {
        Err(Error::CorruptJournal { offset, reason, .. }) => {
            assert_eq!(*offset, damaged);
            assert!(reason.contains("checksum mismatch"), "{reason}");
        }
        other => panic!("entry 1 must be a checksum error, got {other:?}"),
    }
    let e = j.summary().unwrap_err();
    assert!(
        matches!(e, Error::CorruptJournal { offset, .. } if offset == damaged),
        "{e}"
    );
    // A follower stops there too, and keeps reporting it.
    let mut f = Journal::open(&path).unwrap().follow();
    assert!(matches!(f.poll(), Ok(Some(Entry::Message { seq: 0, .. }))));
    for _ in 0..2 {
        let e = f.poll().unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
    }
}

#[test]
fn every_damaged_byte_of_an_entry_is_an_error_never_a_wrong_entry() {
    let dir = TempDir::new("jr-flip");
    let good = dir.file("good.journal");
    let mut w = Journal::create(&good, &shape()).unwrap();
    // Payload lengths that are whole words: every byte of these entries is covered.
    w.append_message(7, 8, &nonzero_payload(1, 40)).unwrap();
    w.append_loss(8, 2).unwrap();
    w.append_message(10, 11, &nonzero_payload(2, 16)).unwrap();
    let end = w.len();
    drop(w);
    let want = read_all(&good);
    assert_eq!(want.len(), 3);
    let original = std::fs::read(&good).unwrap();
    let path = dir.file("bad.journal");
    for i in 4096..end as usize {
        for bit in [0x01u8, 0x80] {
            let mut b = original.clone();
            b[i] ^= bit;
            std::fs::write(&path, &b).unwrap();
            let mut j = Journal::open(&path).unwrap();
            let got: Vec<Result<Entry, Error>> = j.entries().collect();
            let bad = got.iter().position(Result::is_err);
            let bad = bad.unwrap_or_else(|| panic!("byte {i} ^ {bit:#x}: no error, read {got:?}"));
            assert!(
                matches!(got[bad], Err(Error::CorruptJournal { .. })),
                "byte {i}: {:?}",
                got[bad]
            );
            for (k, e) in got[..bad].iter().enumerate() {
                assert_eq!(e.as_ref().unwrap(), &want[k], "byte {i}: entry {k} intact");
            }
        }
    }
}

#[test]
fn a_version_1_journal_is_refused_with_a_version_error() {
    let dir = TempDir::new("jr-v1");
    let path = dir.file("v1.journal");
    let mut w = Journal::create(&path, &shape()).unwrap();
    w.append_message(0, 0, b"old").unwrap();
    drop(w);
    let mut b = std::fs::read(&path).unwrap();
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    let e = Journal::open(&path).unwrap_err();
    assert!(
        matches!(
            e,
            Error::JournalVersion {
                found: 1,
                expected: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("format version 1"), "{e}");
}

#[test]
fn sync_policies_parse_and_name_themselves() {
    use shmbus::journal::{SyncPolicy, DEFAULT_SYNC_INTERVAL};
    assert_eq!("none".parse(), Ok(SyncPolicy::None));
    assert_eq!("every".parse(), Ok(SyncPolicy::Every));
    assert_eq!(
        "interval".parse(),
        Ok(SyncPolicy::Interval(DEFAULT_SYNC_INTERVAL))
    );
    let e = "always".parse::<SyncPolicy>().unwrap_err();
    assert!(e.contains("none, interval or every"), "{e}");
    assert_eq!(SyncPolicy::default(), SyncPolicy::None);
    assert_eq!(SyncPolicy::Every.to_string(), "every");
    assert_eq!(
        SyncPolicy::Interval(Duration::from_millis(250)).to_string(),
        "interval (250ms)"
    );
}

#[test]
fn sync_every_syncs_each_entry_before_append_returns() {
    use shmbus::journal::{JournalOptions, SyncPolicy};
    let dir = TempDir::new("jr-every");
    let path = dir.file("e.journal");
    let opts = JournalOptions::new()
        .chunk_bytes(4096)
        .sync(SyncPolicy::Every);
    let mut w = Journal::create_with(&path, &shape(), &opts).unwrap();
    assert_eq!(w.sync_policy(), SyncPolicy::Every);
    assert_eq!((w.syncs(), w.synced_len()), (0, 4096));
    // Across growth of the file too (4 KiB chunks).
    for k in 0..100 {
        append(&mut w, &nth_entry(k));
        assert_eq!(
            w.synced_len(),
            w.len(),
            "entry {k} synced before append returned"
        );
        assert_eq!(w.syncs(), k + 1);
    }
    assert!(w.len() > 3 * 4096, "the file grew");
    w.finish().unwrap();
    let mut j = Journal::open(&path).unwrap();
    assert!(j.is_closed());
    assert_eq!(
        j.summary().unwrap().messages + j.summary().unwrap().loss_entries,
        100
    );
}

#[test]
fn sync_none_and_interval_sync_only_when_asked_or_due() {
    use shmbus::journal::{JournalOptions, SyncPolicy};
    let dir = TempDir::new("jr-none");

    let path = dir.file("n.journal");
    let mut w = Journal::create_with(&path, &shape(), &JournalOptions::new()).unwrap();
    assert_eq!(w.sync_policy(), SyncPolicy::None);
    for k in 0..20 {
        append(&mut w, &nth_entry(k));
    }
    assert_eq!((w.syncs(), w.synced_len()), (0, 4096), "none: no sync");
    assert!(!w.sync_if_due().unwrap(), "sync_if_due is for Interval");
    w.flush().unwrap();
    assert_eq!((w.syncs(), w.synced_len()), (1, w.len()), "flush syncs");
    w.flush().unwrap();
    assert_eq!(w.syncs(), 1, "nothing new: no second msync");
    w.finish().unwrap();

    // A period that cannot pass during the test: nothing is synced by appending.
    let path = dir.file("long.journal");
    let opts = JournalOptions::new().sync(SyncPolicy::Interval(Duration::from_secs(3600)));
    let mut w = Journal::create_with(&path, &shape(), &opts).unwrap();
    for k in 0..20 {
        append(&mut w, &nth_entry(k));
    }
    assert!(!w.sync_if_due().unwrap());
    assert_eq!((w.syncs(), w.synced_len()), (0, 4096), "period not over");
    drop(w);

    // A period that is always over: every append syncs, and an idle writer has nothing to sync.
    let path = dir.file("zero.journal");
    let opts = JournalOptions::new().sync(SyncPolicy::Interval(Duration::ZERO));
    let mut w = Journal::create_with(&path, &shape(), &opts).unwrap();
    assert!(!w.sync_if_due().unwrap(), "nothing appended yet");
    for k in 0..20 {
        append(&mut w, &nth_entry(k));
        assert_eq!(w.synced_len(), w.len());
    }
    assert_eq!(w.syncs(), 20);
    assert!(!w.sync_if_due().unwrap(), "everything already synced");
    w.finish().unwrap();
    assert_eq!(read_all(&path).len(), 20);
}
