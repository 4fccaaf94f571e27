//! `fork(2)` with live handles (docs/design.md §10, "Fork"): a forked child gives up its
//! parent's kernel locks, so a dead parent reads as dead whatever its children do; a publisher
//! inherited by a child refuses to write under its parent's producer entry; and a readiness
//! handle inherited by a child drops without panicking.
// Real processes and fork: not under loom or miri.
#![cfg(not(loom))]

use shmbus_testkit as support;

use std::time::Duration;

use shmbus::{Bus, BusBuilder, Recv, Start};
use support::make;
use support::{await_cond, say, ChildProc, TestBus};

const CHILD: &str = "child_entry";
const LIMIT: Duration = Duration::from_secs(20);

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[
        ("fork_then_exit", fork_then_exit),
        ("publish_in_fork", publish_in_fork),
        ("drop_readiness_in_fork", drop_readiness_in_fork),
        ("other_kinds_in_fork", other_kinds_in_fork),
    ]);
}

/// Forks; the grandchild runs `body` (async-signal-safe work only) and `_exit`s with its
/// result; returns the grandchild's pid.
fn fork_with(body: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: the child runs only `body`, which does no allocation or locking the parent's
    // other threads could hold, and leaves through `_exit` (no destructors, no atexit).
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            let code = body();
            // SAFETY: ends the child at once, as after any fork.
            unsafe { libc::_exit(code) }
        }
        pid => pid,
    }
}

/// The exit code of child `pid`.
fn exit_code(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is ours to write.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child ended by a signal: {status:#x}"
    );
    libc::WEXITSTATUS(status)
}

/// Attaches a multi producer to BUS, forks a grandchild that waits for SIGKILL, prints its pid
/// and exits: the producer's process is then dead while its child lives.
fn fork_then_exit() {
    let bus = Bus::open(&std::env::var("BUS").expect("BUS")).unwrap();
    let _tx = bus.publisher().unwrap();
    let pid = fork_with(|| loop {
        // SAFETY: `pause` only waits for a signal (the test sends SIGKILL).
        unsafe { libc::pause() };
    });
    say(&format!("grandchild={pid}"));
}

/// Attaches a typed publisher, forks, and has the grandchild publish through it.
fn publish_in_fork() {
    let bus = BusBuilder::new(&std::env::var("BUS").expect("BUS"))
        .message_type::<u64>()
        .open()
        .unwrap();
    let mut tx = bus.publisher().unwrap();
    let raw = Bus::open(&std::env::var("RAW").expect("RAW")).unwrap();
    let mut raw_tx = raw.publisher().unwrap();
    assert_eq!(tx.publish(&1), Some(0), "the parent publishes");
    let pid = fork_with(|| {
        let typed_refused = tx.publish(&2).is_none();
        // The byte API says why (its error allocates: the test harness's other thread is
        // blocked on a channel, not in the allocator, so that is sound here).
        let raw_refused = matches!(
            raw_tx.publish_bytes(b"x"),
            Err(shmbus::Error::UsedAfterFork { .. })
        );
        i32::from(!typed_refused) + 2 * i32::from(!raw_refused)
    });
    say(&format!("grandchild_exit={}", exit_code(pid)));
    assert_eq!(tx.publish(&3), Some(1), "the parent still publishes");
}

/// Makes a readiness handle, forks, and has the grandchild drop it.
fn drop_readiness_in_fork() {
    let bus = Bus::open(&std::env::var("BUS").expect("BUS")).unwrap();
    let rx = bus.subscribe(Start::Next).into_readiness().unwrap();
    let pid = fork_with(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(rx)));
        i32::from(r.is_err())
    });
    say(&format!("grandchild_exit={}", exit_code(pid)));
}

/// Attaches to a records segment, a board and a queue (with one item in it), forks, and has the
/// grandchild use each attachment: every one must refuse.
fn other_kinds_in_fork() {
    let env = |k: &str| std::env::var(k).expect(k);
    let records = shmbus::records::Records::open(&env("RECORDS")).unwrap();
    let mut rec_tx = records.publisher().unwrap();
    let board = shmbus::Board::open(&env("BOARD")).unwrap();
    let mut writer = board.writer().unwrap();
    let queue = shmbus::Queue::open(&env("QUEUE")).unwrap();
    let mut q_tx = queue.sender().unwrap();
    let mut q_rx = queue.receiver().unwrap();
    q_tx.try_send(b"parent's").unwrap();
    let pid = fork_with(|| {
        let mut failed = 0;
        if !matches!(
            rec_tx.publish_bytes(b"x"),
            Err(shmbus::Error::UsedAfterFork { .. })
        ) {
            failed |= 1;
        }
        if !matches!(
            writer.set_bytes(0, b"x"),
            Err(shmbus::Error::UsedAfterFork { .. })
        ) {
            failed |= 2;
        }
        if !matches!(
            q_tx.try_send(b"child's"),
            Err(shmbus::SendError::UsedAfterFork(_))
        ) {
            failed |= 4;
        }
        if q_rx.try_recv().is_some() || q_rx.recv().is_some() {
            failed |= 8;
        }
        failed
    });
    say(&format!("grandchild_exit={}", exit_code(pid)));
    // The parent's attachments work on.
    assert_eq!(q_rx.try_recv(), Some(&b"parent's"[..]));
    rec_tx.publish_bytes(b"parent's").unwrap();
    writer.set_bytes(0, b"parent's").unwrap();
}

fn line_value(line: &str, key: &str) -> i64 {
    line.strip_prefix(key)
        .and_then(|v| v.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("expected {key}=N, got {line:?}"))
}

#[test]
fn a_dead_producer_reads_dead_while_its_forked_child_lives() {
    let name = TestBus::new("fork-locks");
    let bus = BusBuilder::new(name.name())
        .multi_producer()
        .create()
        .unwrap();
    let mut child = ChildProc::spawn(CHILD, "fork_then_exit", &[("BUS", name.0.clone())]);
    let line = child.next_line().expect("the child reports its grandchild");
    let grandchild = line_value(&line, "grandchild") as libc::pid_t;
    child.wait_success(LIMIT);
    // The producer's process is dead; its forked child, which inherited the lock descriptor,
    // lives and must not keep the producer alive (it gives the descriptor up right after the
    // fork, which may run a moment after its parent is gone).
    let mut dead = false;
    let deadline = std::time::Instant::now() + LIMIT;
    while !dead && std::time::Instant::now() < deadline {
        dead = bus.producers().is_empty();
        std::thread::yield_now();
    }
    // SAFETY: kills the grandchild this test made (it only waits for a signal).
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
    assert!(
        dead,
        "a dead producer reads alive while its forked child lives"
    );
    let mut rx = bus.subscribe(Start::Next);
    await_cond(LIMIT, "the bus reports closed", || {
        matches!(rx.recv_timeout(Duration::from_millis(50)), Recv::Closed)
    });
}

#[test]
fn a_publisher_inherited_across_fork_refuses_to_publish() {
    let name = TestBus::new("fork-publish");
    let bus = BusBuilder::new(name.name())
        .message_type::<u64>()
        .create()
        .unwrap();
    let mut rx = bus.subscribe(Start::Oldest);
    let raw_name = TestBus::new("fork-publish-raw");
    let raw = BusBuilder::new(raw_name.name()).create().unwrap();
    let mut raw_rx = raw.subscribe(Start::Oldest);
    let mut child = ChildProc::spawn(
        CHILD,
        "publish_in_fork",
        &[("BUS", name.0.clone()), ("RAW", raw_name.0.clone())],
    );
    let line = child.next_line().expect("the child reports");
    assert_eq!(
        line_value(&line, "grandchild_exit"),
        0,
        "the forked child's publish was refused"
    );
    child.wait_success(LIMIT);
    let mut got = Vec::new();
    while let Recv::Message(m) = rx.try_recv() {
        got.push((m.seq(), *m));
    }
    assert_eq!(got, [(0, 1), (1, 3)], "only the parent's messages");
    assert!(
        matches!(raw_rx.try_recv(), Recv::Empty),
        "nothing on the raw bus"
    );
}

#[test]
fn a_readiness_handle_inherited_across_fork_drops_without_panicking() {
    let name = TestBus::new("fork-readiness");
    let _bus = BusBuilder::new(name.name()).create().unwrap();
    let mut child = ChildProc::spawn(CHILD, "drop_readiness_in_fork", &[("BUS", name.0.clone())]);
    let line = child.next_line().expect("the child reports");
    assert_eq!(
        line_value(&line, "grandchild_exit"),
        0,
        "dropping the inherited readiness handle panicked"
    );
    child.wait_success(LIMIT);
}

#[test]
fn records_board_and_queue_handles_inherited_across_fork_refuse() {
    let r = TestBus::new("fork-records");
    let _records = shmbus::records::RecordsBuilder::new(r.name())
        .create()
        .unwrap();
    let b = TestBus::new("fork-board");
    let _board = shmbus::BoardBuilder::new(b.name())
        .cells(2)
        .create()
        .unwrap();
    let q = TestBus::new("fork-queue");
    let queue = make::queue(&q, 8, 16);
    let mut child = ChildProc::spawn(
        CHILD,
        "other_kinds_in_fork",
        &[
            ("RECORDS", r.0.clone()),
            ("BOARD", b.0.clone()),
            ("QUEUE", q.0.clone()),
        ],
    );
    let line = child.next_line().expect("the child reports");
    assert_eq!(
        line_value(&line, "grandchild_exit"),
        0,
        "bits: 1 records published, 2 board written, 4 queue sent, 8 queue received"
    );
    child.wait_success(LIMIT);
    assert!(
        queue.is_empty(),
        "the parent took its own item; the child took none"
    );
}
