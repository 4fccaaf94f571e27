//! Bad input and hostile peers: corrupt and truncated segments (fuzzed), forged versions,
//! lengths and cursors written by another process, hostile names, planted symlinks and FIFOs,
//! foreign files, old-ABI and other-kind segments, foreign owners, loose permissions, and writes
//! through a consumer's read-only mapping.
//!
//! The promise under test (docs/design.md §1, §10): a typed error or a valid bus, valid messages or
//! counted losses — never a panic, an out-of-bounds access, a SIGBUS or an endless wait.

use shmbus_testkit as support;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shmbus::layout::SegmentKind;
use shmbus::{Bus, BusBuilder, Error, Recv, Start};
use support::forge::{get_word, plant, segment_bytes, set_word, Forger};
use support::make;
use support::{assert_wrong_kind, env, make_payload, say, ChildProc, Rng, TestBus};

/// The test that child processes run.
const CHILD: &str = "child_entry";

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[
        ("umask-create", umask_create),
        ("ro-write", write_through_read_only_mapping),
    ]);
}

/// Sets umask UMASK, creates bus BUS with permissions PERM.
fn umask_create() {
    let umask: u32 = env("UMASK");
    let perm: u32 = env("PERM");
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    BusBuilder::new(&env::<String>("BUS"))
        .permissions(perm)
        .create()
        .expect("create");
    say("created");
}

/// Opens bus BUS read-only, reports the protection of its mapping, then writes through it (which
/// must kill this process with SIGSEGV).
fn write_through_read_only_mapping() {
    let name: String = env("BUS");
    let bus = Bus::open_read_only(&name).expect("open read-only");
    let path = shmbus::inspect::segment_path(&name);
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let line = maps
        .lines()
        .find(|l| l.ends_with(path.to_str().expect("utf-8 path")))
        .expect("the segment is mapped");
    let mut fields = line.split_whitespace();
    let range = fields.next().expect("range");
    let perms = fields.next().expect("perms");
    say(&format!("perms {perms}"));
    let start = usize::from_str_radix(range.split('-').next().expect("start"), 16).expect("hex");
    // SAFETY: deliberately invalid: `start` is the first byte of a mapping made with PROT_READ
    // only, so this store faults (SIGSEGV) before it can change anything; surviving it is the
    // failure this child exists to detect.
    unsafe { std::ptr::write_volatile(start as *mut u64, 0xdead_beef) };
    say("wrote through a read-only mapping");
    drop(bus);
}

/// A valid header page, as `BusBuilder::create` writes it, and the size of its segment.
fn template(slots: u64, capacity: usize) -> (Vec<u8>, u64) {
    header_of(|name| {
        BusBuilder::new(name)
            .slots(slots)
            .capacity(capacity)
            .type_name("hostile::Template")
            .create()
    })
}

/// The header page and segment size of a bus that `create` makes under the name it is given.
fn header_of<T: shmbus::Payload>(
    create: impl FnOnce(&str) -> shmbus::Result<Bus<T>>,
) -> (Vec<u8>, u64) {
    let name = TestBus::new("template");
    let bus = create(name.name()).expect("create");
    let bytes = segment_bytes(&name);
    drop(bus);
    let size = bytes.len() as u64;
    (bytes[..4096].to_vec(), size)
}

/// Header words worth mutating: every field that is checked, and some that are not.
const FIELD_WORDS: [usize; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 128];

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1 << 32),
        Just(u32::MAX as u64),
        (0u32..64).prop_map(|b| 1u64 << b),
        (0u32..64).prop_map(|b| (1u64 << b).wrapping_sub(1)),
        (0u32..64).prop_map(|b| (1u64 << b).wrapping_add(1)),
        (0u64..5000),
        any::<u64>(),
    ]
}

/// A mutation of the template: (word, value) stores, an optional byte flip, and a file size.
#[derive(Debug, Clone)]
struct Mutation {
    stores: Vec<(usize, u64)>,
    flip: Option<(usize, u8)>,
    size: SizeChoice,
}

#[derive(Debug, Clone)]
enum SizeChoice {
    Exact,
    Delta(i64),
    Any(u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let store = (
        prop::sample::select(FIELD_WORDS.to_vec()),
        interesting_u64(),
    );
    let size = prop_oneof![
        3 => Just(SizeChoice::Exact),
        2 => prop::sample::select(vec![-4096i64, -64, -8, -1, 1, 8, 64, 4096]).prop_map(SizeChoice::Delta),
        1 => prop_oneof![Just(0u64), Just(4095), Just(4096), any::<u64>()].prop_map(SizeChoice::Any),
    ];
    (
        prop::collection::vec(store, 0..4),
        prop::option::of((0usize..4096, 1u8..=255)),
        size,
    )
        .prop_map(|(stores, flip, size)| Mutation { stores, flip, size })
}

fn apply(m: &Mutation, header: &mut [u8], valid_size: u64) -> u64 {
    for &(w, v) in &m.stores {
        set_word(header, w, v);
    }
    if let Some((i, x)) = m.flip {
        header[i] ^= x;
    }
    match m.size {
        SizeChoice::Exact => valid_size,
        SizeChoice::Delta(d) => valid_size.saturating_add_signed(d),
        SizeChoice::Any(s) => s,
    }
}

/// What every accepted header must satisfy, whatever the input was.
fn check_accepted(
    slots: u64,
    stride: u64,
    capacity: usize,
    size: u64,
) -> Result<(), TestCaseError> {
    prop_assert!(slots.is_power_of_two() && slots <= shmbus::layout::MAX_SLOTS);
    prop_assert!(stride % 64 == 0 && stride > 0);
    prop_assert!(capacity > 0 && capacity as u64 + 16 <= stride);
    prop_assert_eq!(
        Some(size),
        slots.checked_mul(stride).and_then(|b| b.checked_add(4096))
    );
    Ok(())
}

#[test]
fn template_header_is_accepted() {
    let (header, size) = template(64, 100);
    assert_eq!(
        shmbus::layout::validate_header_bytes(&header, size).expect("accepted"),
        (64, 128, 100)
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 100_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// 100,000 headers through the same checks `open` runs: mutated valid ones and fully random
    /// ones, against exact, shifted and arbitrary file sizes.
    #[test]
    fn corrupt_headers_give_typed_faults_or_consistent_geometry(
        m in mutation(),
        random in prop::option::weighted(0.2, prop::collection::vec(any::<u8>(), 0..160)),
    ) {
        static TEMPLATE: std::sync::OnceLock<(Vec<u8>, u64)> = std::sync::OnceLock::new();
        let (tpl, valid_size) = TEMPLATE.get_or_init(|| template(64, 100));
        let mut header = tpl.clone();
        if let Some(r) = &random {
            // Fully random leading bytes (every checked field lives in the first 104), the rest
            // zero, as if the segment held another program's data.
            header.iter_mut().for_each(|b| *b = 0);
            header[..r.len()].copy_from_slice(r);
        }
        let size = apply(&m, &mut header, *valid_size);
        if let Ok((slots, stride, capacity)) = shmbus::layout::validate_header_bytes(&header, size) {
            check_accepted(slots, stride, capacity, size)?;
        }
    }
}

/// Exercises an opened (hence accepted) bus: a message must go through it intact.
fn use_accepted_bus(bus: &Bus) {
    let mut rx = bus.subscribe(Start::Next);
    let mut tx = match bus.publisher() {
        Ok(tx) => tx,
        // A corrupt type fingerprint is only found when a raw publisher checks it.
        Err(Error::ReadOnly { .. } | Error::ProducerExists { .. } | Error::TypeMismatch { .. }) => {
            return
        }
        Err(e) => panic!("publisher on an accepted bus: {e}"),
    };
    let msg = vec![0x5a; bus.capacity().min(24)];
    let seq = tx
        .publish_bytes(&msg)
        .expect("fits")
        .expect("single producer");
    match rx.try_recv() {
        Recv::Message(m) => assert_eq!((m.seq(), m.bytes()), (seq, &msg[..])),
        other => panic!("accepted bus lost a message: {other:?}"),
    }
}

#[test]
fn hundreds_of_corrupt_segments_in_dev_shm_open_with_typed_errors() {
    let (tpl, valid_size) = template(64, 100);
    let cases: u64 = support::env_or("SHMBUS_HOSTILE_SEGMENTS", 300);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases as u32,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let name = TestBus::new("corrupt");
    let accepted = std::cell::Cell::new(0u32);
    let errors = std::cell::RefCell::new(std::collections::BTreeMap::<String, u32>::new());
    let started = Instant::now();
    runner
        .run(&mutation(), |m| {
            let mut header = tpl.clone();
            // A magic of 0 makes openers wait 100 ms for a creator; keep the run short.
            let mut m = m;
            m.stores.retain(|&(w, v)| !(w == 0 && v == 0));
            // Real files stay small: /dev/shm is memory.
            let size = apply(&m, &mut header, valid_size).min(1 << 20);
            plant(&name, &header, size);
            for builder in [
                BusBuilder::new(name.name()),
                BusBuilder::new(name.name()).read_only(),
            ] {
                let t = Instant::now();
                match builder.open() {
                    Ok(bus) => {
                        accepted.set(accepted.get() + 1);
                        use_accepted_bus(&bus);
                    }
                    Err(e) => {
                        let kind = format!("{e:?}");
                        let kind = kind.split([' ', '{', '(']).next().unwrap_or("").to_owned();
                        *errors.borrow_mut().entry(kind).or_default() += 1;
                    }
                }
                prop_assert!(
                    t.elapsed() < Duration::from_secs(2),
                    "open took {:?}",
                    t.elapsed()
                );
            }
            Ok(())
        })
        .unwrap();
    let (accepted, errors) = (accepted.get(), errors.into_inner());
    eprintln!(
        "{cases} planted segments in {:?}: {accepted} opens accepted, errors {errors:?}",
        started.elapsed()
    );
    assert!(
        errors.len() >= 3,
        "the fuzzer reached too few checks: {errors:?}"
    );
}

#[test]
fn truncated_and_oversized_segments_are_refused_before_mapping() {
    let (tpl, size) = template(64, 100);
    let name = TestBus::new("trunc");
    for (len, want_truncated) in [
        (0, true),
        (8, true),
        (4095, true),
        (4096, true),
        (size - 1, true),
    ] {
        plant(&name, &tpl, len);
        let res = Bus::open(name.name());
        assert!(
            matches!(res, Err(Error::Truncated { .. })) == want_truncated,
            "{len} bytes: {res:?}"
        );
    }
    plant(&name, &tpl, size + 64);
    let res = Bus::open(name.name());
    assert!(
        matches!(res, Err(Error::SizeMismatch { size: s, expected, .. }) if s == size + 64 && expected == size),
        "{res:?}"
    );
}

const CURSOR_WORD: usize = 128;
const SLOTS_WORD: usize = 512;

/// A bus of 8 slots of 64 bytes (stride 128 bytes = 16 words) with messages 0..count published.
fn published_bus(tag: &str, count: u64) -> (TestBus, Bus, shmbus::Publisher) {
    let name = TestBus::new(tag);
    let bus = make::bus(&name, 8, 64);
    let mut tx = bus.publisher().expect("attach");
    for k in 0..count {
        let mut buf = [0u8; 40];
        make_payload(&mut buf, 1, k);
        tx.publish_bytes(&buf).expect("fits");
    }
    (name, bus, tx)
}

fn slot_word(seq: u64) -> usize {
    SLOTS_WORD + (seq as usize % 8) * 16
}

#[test]
fn forged_length_beyond_capacity_is_counted_lost_never_read() {
    let (name, _bus, _tx) = published_bus("forged-len", 3);
    let forger = Forger::new(&name);
    let rx_bus = Bus::open_read_only(name.name()).expect("open");
    let mut rx = rx_bus.subscribe(Start::Oldest);
    for len in [65u64, 1 << 20, u32::MAX as u64 - 1] {
        // Length word of sequence 1, keeping its writer tag bits.
        let w = slot_word(1) + 1;
        let meta = forger.load(w);
        forger.store(w, (meta & !0xffff_ffff) | len);
        let mut rx2 = rx_bus.subscribe(Start::Sequence(1));
        assert!(
            matches!(rx2.try_recv(), Recv::Lapped { lost: 1 }),
            "len {len}"
        );
        assert!(matches!(rx2.try_recv(), Recv::Message(m) if m.seq() == 2));
    }
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.seq() == 0));
    assert!(matches!(rx.try_recv(), Recv::Lapped { lost: 1 }));
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.seq() == 2));
    assert!(matches!(rx.try_recv(), Recv::Empty));
}

#[test]
fn forged_versions_and_cursors_give_laps_not_hangs() {
    let (name, _bus, mut tx) = published_bus("forged-ver", 4);
    let forger = Forger::new(&name);
    let rx_bus = Bus::open_read_only(name.name()).expect("open");
    // A version far in the future: the reader was "lapped", resyncs and goes on.
    let mut rx = rx_bus.subscribe(Start::Oldest);
    forger.store(slot_word(0), u64::MAX - 1);
    let mut lost = 0;
    let mut got = Vec::new();
    for _ in 0..10 {
        match rx.try_recv() {
            Recv::Message(m) => got.push(m.seq()),
            Recv::Lapped { lost: n } => lost += n,
            Recv::Empty => break,
            Recv::Closed => unreachable!("try_recv never reports Closed"),
        }
    }
    assert!(
        lost >= 1 && got.iter().all(|&s| s > 0 && s < 4),
        "{got:?} lost {lost}"
    );
    // A slot stuck odd (a forged "being written") with newer messages: skipped after the stall
    // timeout, not waited on forever.
    let mut rx = rx_bus.subscribe(Start::Sequence(2));
    forger.store(slot_word(2), 2 * 2 + 1);
    let t = Instant::now();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(5)),
        Recv::Lapped { lost: 1 }
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.seq() == 3));
    // Cursors forged far ahead, to the top of the range, and behind: every call returns.
    for c in [1u64 << 40, u64::MAX, u64::MAX / 2 + 7, 0] {
        forger.store(CURSOR_WORD, c);
        let mut rx = rx_bus.subscribe(Start::Oldest);
        for _ in 0..4 {
            let _ = rx.recv_timeout(Duration::from_millis(20));
        }
        let _ = rx_bus.subscribe(Start::Last(5)).try_recv();
    }
    // The producer owns the cursor and keeps publishing; the bus is usable again.
    forger.store(CURSOR_WORD, 4);
    let mut rx = rx_bus.subscribe(Start::Next);
    tx.publish_bytes(b"after").expect("fits");
    let Recv::Message(m) = rx.recv_timeout(Duration::from_secs(5)) else {
        panic!("no message after the forgery")
    };
    assert_eq!(m.bytes(), b"after");
}

#[test]
fn random_forgeries_never_panic_hang_or_overrun_a_slot() {
    let (name, bus, mut tx) = published_bus("forged-random", 20);
    let forger = Forger::new(&name);
    let capacity = bus.capacity();
    let mut rng = Rng::from_env("random_forgeries");
    let words = 4096 / 8 + 8 * 16;
    let started = Instant::now();
    for round in 0..300 {
        for _ in 0..1 + rng.below(6) {
            // Mostly slot words (versions, lengths, payload), sometimes the cursor.
            let w = if rng.below(8) == 0 {
                CURSOR_WORD
            } else {
                SLOTS_WORD + rng.below((words - SLOTS_WORD) as u64) as usize
            };
            let v = match rng.below(5) {
                0 => rng.next(),
                1 => rng.below(64),
                2 => u64::MAX - rng.below(3),
                3 => 2 * rng.below(64) + 1,
                _ => forger.load(w) ^ (1 << rng.below(64)),
            };
            forger.store(w, v);
        }
        let mut rx = bus.subscribe(match rng.below(3) {
            0 => Start::Oldest,
            1 => Start::Last(rng.below(10)),
            _ => Start::Sequence(rng.below(40)),
        });
        for _ in 0..10 {
            let t = Instant::now();
            match rx.recv_timeout(Duration::from_millis(1)) {
                Recv::Message(m) => assert!(m.bytes().len() <= capacity, "round {round}"),
                Recv::Lapped { .. } | Recv::Empty | Recv::Closed => {}
            }
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "round {round}: a receive hung"
            );
        }
        if round % 10 == 0 {
            // Producers keep working on a forged ring (their own cursor, unaffected).
            tx.publish_bytes(b"still here").expect("fits");
        }
    }
    eprintln!("300 forgery rounds in {:?}", started.elapsed());
}

#[test]
fn hostile_names_are_rejected_everywhere() {
    let long = "a".repeat(201);
    for bad in [
        "", ".", "..", "../etc", "/", "a/b", ".hidden", "a\0b", "é", "名前", "a b", "a\nb", "x*",
        &long,
    ] {
        for (what, res) in [
            ("create", BusBuilder::new(bad).create().map(drop)),
            ("open", Bus::open(bad).map(drop)),
            (
                "open_or_create",
                BusBuilder::new(bad).open_or_create().map(drop),
            ),
            ("remove", Bus::remove(bad)),
        ] {
            assert!(
                matches!(res, Err(Error::InvalidName { .. })),
                "{what}({bad:?}) gave {res:?}"
            );
        }
    }
    let name = TestBus::new("n");
    let ok = format!("{}{}", name.name(), "z".repeat(200 - name.name().len()));
    let bus = BusBuilder::new(&ok)
        .create()
        .expect("a 200-character name is fine");
    drop(bus);
    Bus::remove(&ok).expect("remove");
}

#[test]
fn planted_symlinks_are_never_followed() {
    let name = TestBus::new("symlink");
    let real = TestBus::new("symlink-target");
    let victim = std::path::PathBuf::from(format!("/dev/shm/rel-victim-{}", std::process::id()));
    struct Rm(std::path::PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _victim_guard = Rm(victim.clone());
    std::fs::write(&victim, b"precious").expect("victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let before = std::fs::metadata(&victim).expect("stat");
    // A symlink to a plain file.
    std::os::unix::fs::symlink(&victim, name.path()).expect("plant symlink");
    assert!(matches!(
        BusBuilder::new(name.name()).create(),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        BusBuilder::new(name.name()).open(),
        Err(Error::NotRegularFile { .. })
    ));
    assert!(Bus::open_read_only(name.name()).is_err());
    assert!(BusBuilder::new(name.name()).open_or_create().is_err());
    let after = std::fs::metadata(&victim).expect("stat");
    assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
    assert_eq!(
        (after.len(), after.mode(), after.mtime_nsec()),
        (before.len(), before.mode(), before.mtime_nsec())
    );
    // A symlink to a real, valid bus is refused too: opening never follows the path.
    let _target = BusBuilder::new(real.name()).create().expect("create");
    std::fs::remove_file(name.path()).expect("unlink symlink");
    std::os::unix::fs::symlink(real.path(), name.path()).expect("plant symlink");
    assert!(matches!(
        Bus::open(name.name()),
        Err(Error::NotRegularFile { .. })
    ));
    assert!(matches!(
        shmbus::inspect::open_for_inspection(name.name()),
        Err(Error::NotRegularFile { .. })
    ));
}

#[test]
fn a_squatted_name_is_already_exists_and_left_untouched() {
    let name = TestBus::new("squat");
    let mut f = File::create(name.path()).expect("squat");
    f.write_all(&[0xab; 5000]).expect("write");
    std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o666)).expect("chmod");
    assert!(matches!(
        BusBuilder::new(name.name()).create(),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        BusBuilder::new(name.name()).open_or_create(),
        Err(Error::InsecureMode { mode: 0o666, .. })
    ));
    assert!(matches!(
        BusBuilder::new(name.name()).accept_shared_write().open(),
        Err(Error::BadMagic { .. })
    ));
    assert_eq!(std::fs::read(name.path()).expect("read"), vec![0xab; 5000]);
}

#[test]
fn created_segments_have_exactly_the_asked_mode_whatever_the_umask() {
    for (umask, perm) in [
        (0o000, 0o600),
        (0o077, 0o640),
        (0o022, 0o600),
        (0o000, 0o644),
    ] {
        let name = TestBus::new("umask");
        let mut child = ChildProc::spawn(
            CHILD,
            "umask-create",
            &[
                ("BUS", name.name().to_owned()),
                ("UMASK", umask.to_string()),
                ("PERM", perm.to_string()),
            ],
        );
        child.expect_line("created");
        child.wait_success(Duration::from_secs(30));
        let mode = std::fs::symlink_metadata(name.path()).expect("stat").mode() & 0o7777;
        assert_eq!(mode, perm, "umask {umask:03o}");
    }
}

#[test]
fn consumers_map_read_only_and_a_write_through_it_faults() {
    let name = TestBus::new("ro");
    let bus = BusBuilder::new(name.name()).create().expect("create");
    let mut tx = bus.publisher().expect("attach");
    // A read-only consumer reads fine, and cannot publish.
    let ro = Bus::open_read_only(name.name()).expect("open read-only");
    assert!(ro.is_read_only());
    let mut rx = ro.subscribe(Start::Next);
    tx.publish_bytes(b"hello").expect("fits");
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"hello"));
    assert!(matches!(ro.publisher(), Err(Error::ReadOnly { .. })));
    // Its mapping really is read-only: a stray write kills the writer, not the bus.
    let mut child = ChildProc::spawn(CHILD, "ro-write", &[("BUS", name.name().to_owned())]);
    let perms = child.next_line().expect("mapping protection");
    assert!(perms.starts_with("perms r-"), "{perms}");
    assert!(!perms.contains('w'), "{perms}");
    let status = child.wait_status(Duration::from_secs(30));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}");
    assert_eq!(child.next_line(), None, "the write went through");
    tx.publish_bytes(b"after").expect("fits");
    assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"after"));
}

#[test]
fn foreign_owner_and_shared_write_segments_are_refused_unless_accepted() {
    let name = TestBus::new("trust");
    let bus = BusBuilder::new(name.name()).create().expect("create");
    drop(bus);
    let path = name.path();
    for (mode, refused) in [
        (0o666, true),
        (0o620, true),
        (0o602, true),
        (0o644, false),
        (0o400, false),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let res = Bus::open_read_only(name.name());
        if refused {
            assert!(
                matches!(res, Err(Error::InsecureMode { mode: m, .. }) if m == mode),
                "{mode:o}: {res:?}"
            );
            BusBuilder::new(name.name())
                .read_only()
                .accept_shared_write()
                .open()
                .expect("accepted explicitly");
        } else {
            res.expect("no group or other write bit");
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot chown a segment to another user; ForeignOwner not tested");
        return;
    }
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
    let res = Bus::open_read_only(name.name());
    assert!(
        matches!(
            res,
            Err(Error::ForeignOwner {
                owner: 65534,
                ours: 0,
                ..
            })
        ),
        "{res:?}"
    );
    assert!(matches!(
        Bus::open(name.name()),
        Err(Error::ForeignOwner { .. })
    ));
    let bus = BusBuilder::new(name.name())
        .read_only()
        .accept_other_owner()
        .open()
        .expect("accepted explicitly");
    assert!(matches!(
        bus.subscribe(Start::Oldest).try_recv(),
        Recv::Empty
    ));
}

/// Runs `f` on another thread and returns its result, failing (rather than hanging) the test if
/// it takes longer than `limit`.
fn within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("{what} did not return within {limit:?} ({e})"))
}

#[test]
fn a_planted_fifo_is_refused_promptly_by_every_open_path() {
    let name = TestBus::new("fifo");
    nix::unistd::mkfifo(
        &name.path(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    let limit = Duration::from_secs(5);
    let n = name.name().to_owned();
    type Open = fn(&str) -> Result<(), Error>;
    let paths: [(&str, Open); 6] = [
        ("Bus::open", |n| Bus::open(n).map(drop)),
        ("Bus::open_read_only", |n| Bus::open_read_only(n).map(drop)),
        ("open_or_create", |n| {
            BusBuilder::new(n).open_or_create().map(drop)
        }),
        ("typed open", |n| {
            BusBuilder::new(n)
                .message_type::<u64>()
                .read_only()
                .open()
                .map(drop)
        }),
        ("open_for_inspection", |n| {
            shmbus::inspect::open_for_inspection(n).map(drop)
        }),
        ("create", |n| BusBuilder::new(n).create().map(drop)),
    ];
    for (what, open) in paths {
        let n = n.clone();
        let res = within(limit, what, move || open(&n));
        match what {
            "create" => assert!(
                matches!(res, Err(Error::AlreadyExists { .. })),
                "{what}: {res:?}"
            ),
            _ => assert!(
                matches!(
                    res,
                    Err(Error::NotRegularFile {
                        found: "a FIFO",
                        ..
                    })
                ),
                "{what}: {res:?}"
            ),
        }
    }
    let msg = within(limit, "Display", {
        let n = n.clone();
        move || Bus::open(&n).unwrap_err().to_string()
    });
    assert!(msg.contains("is a FIFO, not a regular file"), "{msg}");
    let checks = within(limit, "inspect::checks", {
        let n = n.clone();
        move || shmbus::inspect::checks(&n)
    });
    let regular = checks
        .iter()
        .find(|c| c.name == "regular file")
        .expect("a regular-file check");
    assert_eq!(
        regular.status,
        shmbus::inspect::CheckStatus::Fail,
        "{checks:?}"
    );
    assert!(checks
        .iter()
        .skip_while(|c| c.name != "regular file")
        .skip(1)
        .all(|c| c.status == shmbus::inspect::CheckStatus::Skipped));
    let entries = within(limit, "inspect::list", || shmbus::inspect::list(false)).expect("list");
    let entry = entries
        .iter()
        .find(|e| e.name.as_deref() == Some(n.as_str()))
        .expect("the FIFO is listed");
    assert!(
        matches!(entry.segment, Some(Err(Error::NotRegularFile { .. }))),
        "{:?}",
        entry.segment
    );
}

#[test]
fn a_short_text_file_is_not_a_shmbus_segment() {
    let name = TestBus::new("text");
    for text in [
        &b"hello\n"[..],
        b"SHMBUT",
        b"x",
        b"a text file, nothing more\n",
    ] {
        plant(&name, text, text.len() as u64);
        for res in [
            Bus::open(name.name()).map(drop),
            Bus::open_read_only(name.name()).map(drop),
            shmbus::inspect::open_for_inspection(name.name()).map(drop),
        ] {
            let Err(e) = res else {
                panic!("{text:?} opened")
            };
            assert!(matches!(e, Error::BadMagic { .. }), "{text:?}: {e:?}");
            assert!(e.to_string().contains("not a shmbus segment"), "{e}");
        }
        let checks = shmbus::inspect::checks(name.name());
        let magic = checks
            .iter()
            .find(|c| c.name == "magic")
            .expect("magic check");
        assert_eq!(
            magic.status,
            shmbus::inspect::CheckStatus::Fail,
            "{checks:?}"
        );
    }
    // The start of a real header, cut short, is a truncated segment, not a foreign one.
    let (tpl, _) = template(8, 8);
    for len in [3u64, 8, 100] {
        plant(&name, &tpl, len);
        let res = Bus::open(name.name());
        assert!(
            matches!(res, Err(Error::Truncated { size, expected: 4096, .. }) if size == len),
            "{len}: {res:?}"
        );
    }
}

/// Plants a segment of the template's size whose header is `tpl` with `(word, value)` stores.
fn plant_forged(name: &TestBus, tpl: &(Vec<u8>, u64), stores: &[(usize, u64)]) {
    let mut header = tpl.0.clone();
    for &(w, v) in stores {
        set_word(&mut header, w, v);
    }
    plant(name, &header, tpl.1);
}

#[test]
fn a_version_1_segment_is_an_abi_mismatch() {
    let tpl = template(8, 8);
    let name = TestBus::new("abi1");
    let abi_mode = get_word(&tpl.0, 1);
    plant_forged(&name, &tpl, &[(1, (abi_mode & !0xffff_ffff) | 1)]);
    let res = Bus::open_read_only(name.name());
    assert!(
        matches!(
            res,
            Err(Error::AbiMismatch {
                found: 1,
                expected: 2,
                ..
            })
        ),
        "{res:?}"
    );
    let checks = shmbus::inspect::checks(name.name());
    let abi = checks
        .iter()
        .find(|c| c.name == "ABI version")
        .expect("ABI check");
    assert_eq!(abi.status, shmbus::inspect::CheckStatus::Fail, "{checks:?}");
}

#[test]
fn a_typed_open_refuses_slots_smaller_than_the_type() {
    let tpl = header_of(|n| {
        BusBuilder::new(n)
            .message_type::<[u64; 4]>()
            .type_name("hostile::Quad")
            .create()
    });
    let name = TestBus::new("small-slots");
    // Capacity word forged from 32 down to 16: still inside the 64-byte stride, so only the type
    // check can catch it.
    plant_forged(&name, &tpl, &[(4, 16)]);
    let typed = BusBuilder::new(name.name())
        .message_type::<[u64; 4]>()
        .type_name("hostile::Quad")
        .open();
    assert!(
        matches!(
            typed,
            Err(Error::CapacityBelowType {
                capacity: 16,
                size: 32,
                ..
            })
        ),
        "{typed:?}"
    );
    let raw = Bus::open_read_only(name.name());
    assert!(
        matches!(raw, Err(Error::CapacityBelowType { .. })),
        "a bus whose slots cannot hold its own type is refused however it is opened: {raw:?}"
    );
    // Unforged, the same bus opens.
    plant_forged(&name, &tpl, &[]);
    BusBuilder::new(name.name())
        .message_type::<[u64; 4]>()
        .type_name("hostile::Quad")
        .open()
        .expect("the original header opens");
}

#[test]
fn another_kind_of_segment_is_wrong_kind_not_corrupt() {
    let tpl = template(8, 8);
    let name = TestBus::new("kind");
    plant_forged(&name, &tpl, &[(12, SegmentKind::Queue.to_word() as u64)]);
    let err = Bus::open(name.name()).unwrap_err();
    assert_wrong_kind(&err, "queue", "bus");
    assert!(!err.is_corrupt());
    assert!(
        err.to_string()
            .contains(&format!("{:?} is a queue, not a bus", name.name())),
        "{err}"
    );
    plant_forged(&name, &tpl, &[(12, 99)]);
    let err = Bus::open(name.name()).unwrap_err();
    assert!(
        matches!(err, Error::UnknownKind { word: 99, .. }),
        "{err:?}"
    );
    assert!(err.is_corrupt());
}

#[test]
fn the_inspector_fails_the_same_step_with_the_same_error_as_open() {
    use shmbus::inspect::CheckStatus;
    let tpl = template(8, 8);
    let name = TestBus::new("same-step");
    let abi_mode = get_word(&tpl.0, 1);
    let cases: [(&str, &dyn Fn()); 7] = [
        ("magic", &|| plant(&name, b"text\n", 5)),
        ("size >= header", &|| plant(&name, &tpl.0, 100)),
        ("ABI version", &|| {
            plant_forged(&name, &tpl, &[(1, abi_mode + 1)])
        }),
        ("kind", &|| plant_forged(&name, &tpl, &[(12, 3)])),
        ("geometry", &|| plant_forged(&name, &tpl, &[(3, 96)])),
        ("size matches", &|| plant(&name, &tpl.0, tpl.1 + 4096)),
        // A 64-byte message type recorded for 8-byte slots.
        ("type", &|| plant_forged(&name, &tpl, &[(6, 64 | 8 << 32)])),
    ];
    for (step, plant) in cases {
        plant();
        let err = shmbus::inspect::open_for_inspection(name.name()).unwrap_err();
        let checks = shmbus::inspect::checks(name.name());
        let failed: Vec<_> = checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .collect();
        assert_eq!(failed.len(), 1, "{step}: {checks:?}");
        assert_eq!(
            (failed[0].name, failed[0].detail.as_str()),
            (step, err.to_string().as_str())
        );
    }
}
