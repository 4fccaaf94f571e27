//! Real OS processes on one bus: this test binary re-executes itself as producer and consumer
//! children (`child_entry`). Every payload carries its producer, counter and checksum, so a torn,
//! duplicated or reordered message cannot go unnoticed.

use shmbus_testkit as support;

use std::time::{Duration, Instant};

use shmbus::{Bus, BusBuilder, Recv, Start, Wait};
use support::make;
use support::{check_payload, env, field, make_payload, say, ChildProc, TestBus};

const CHILD: &str = "child_entry";

/// Entry point of child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    support::run_role(&[("producer", producer), ("consumer", consumer)]);
}

fn bus_name() -> String {
    std::env::var("BUS").expect("BUS")
}

/// Publishes COUNT checksummed messages of LEN bytes as producer ID.
fn producer() {
    let bus = Bus::open(&bus_name()).unwrap();
    let mut tx = bus.publisher().unwrap();
    let (id, count, len) = (env::<u64>("ID"), env::<u64>("COUNT"), env::<usize>("LEN"));
    let mut buf = vec![0u8; len];
    for c in 0..count {
        make_payload(&mut buf, id, c);
        tx.publish_bytes(&buf).unwrap();
        if c % 64 == 0 {
            // Let consumers on this 2-core machine run now and then.
            std::thread::yield_now();
        }
    }
    say(&format!(
        "published={} dropped={}",
        tx.stats().published,
        tx.stats().dropped
    ));
}

/// Reads from sequence 0 until TOTAL sequence numbers are accounted for (received or lost),
/// checking every payload; stalls for STALL_US every STALL_EVERY messages if asked.
fn consumer() {
    let bus = Bus::open_read_only(&bus_name()).unwrap();
    let mut rx = bus.subscribe(Start::Sequence(0)).wait_strategy(Wait::Yield);
    let total = env::<u64>("TOTAL");
    let producers = env::<usize>("PRODUCERS");
    let stall_every = std::env::var("STALL_EVERY")
        .ok()
        .map(|v| v.parse::<u64>().unwrap());
    let mut last_counter = vec![None::<u64>; producers];
    let (mut received, mut lost, mut torn, mut disorder, mut last_seq) =
        (0u64, 0u64, 0u64, 0u64, None::<u64>);
    let deadline = Instant::now() + Duration::from_secs(60);
    while received + lost < total && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Recv::Message(m) => {
                received += 1;
                if last_seq.is_some_and(|s| m.seq() <= s) {
                    disorder += 1;
                }
                last_seq = Some(m.seq());
                match check_payload(m.bytes()) {
                    Some((p, c)) if (p as usize) < producers => {
                        if last_counter[p as usize].is_some_and(|l| c <= l) {
                            disorder += 1;
                        }
                        last_counter[p as usize] = Some(c);
                    }
                    _ => torn += 1,
                }
                if stall_every.is_some_and(|n| received % n == 0) {
                    // Deliberately slow consumer (not synchronisation): fall behind the producer.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Recv::Lapped { lost: n } => lost += n,
            Recv::Empty | Recv::Closed => {}
        }
    }
    let s = rx.stats();
    assert_eq!(
        (s.received, s.lost),
        (received, lost),
        "subscriber counters agree with what it returned"
    );
    say(&format!(
        "received={received} lost={lost} torn={torn} disorder={disorder} laps={}",
        s.laps
    ));
}

/// Each child's result line (`key=value ...`; read a figure with [`field`]).
struct Run {
    producers: Vec<String>,
    consumers: Vec<String>,
}

fn run(bus: &TestBus, producers: u64, count: u64, len: usize, consumers: &[Option<u64>]) -> Run {
    let total = producers * count;
    let common = |extra: Vec<(&'static str, String)>| {
        let mut env = vec![
            ("BUS", bus.name().to_owned()),
            ("TOTAL", total.to_string()),
            ("PRODUCERS", producers.to_string()),
        ];
        env.extend(extra);
        env
    };
    let cons: Vec<_> = consumers
        .iter()
        .map(|stall| {
            let extra = stall
                .map(|n| vec![("STALL_EVERY", n.to_string())])
                .unwrap_or_default();
            ChildProc::spawn(CHILD, "consumer", &common(extra))
        })
        .collect();
    let prods: Vec<_> = (0..producers)
        .map(|id| {
            let env = common(vec![
                ("ID", id.to_string()),
                ("COUNT", count.to_string()),
                ("LEN", len.to_string()),
            ]);
            ChildProc::spawn(CHILD, "producer", &env)
        })
        .collect();
    let collect = |children: Vec<ChildProc>| {
        children
            .into_iter()
            .map(|mut c| {
                let line = c.next_line().expect("child's result line");
                c.wait_success(Duration::from_secs(120));
                line
            })
            .collect::<Vec<_>>()
    };
    Run {
        producers: collect(prods),
        consumers: collect(cons),
    }
}

#[test]
fn one_producer_three_consumer_processes_lose_nothing_with_a_large_ring() {
    let t = TestBus::new("mp-fanout");
    let count = 30_000;
    let _bus = make::bus(&t, 1 << 15, 64);
    let r = run(&t, 1, count, 64, &[None, None, None]);
    assert_eq!(field(&r.producers[0], "published"), count);
    for c in &r.consumers {
        assert_eq!(
            (
                field(c, "received"),
                field(c, "lost"),
                field(c, "torn"),
                field(c, "disorder")
            ),
            (count, 0, 0, 0),
            "{c:?}"
        );
    }
}

#[test]
fn slow_consumer_process_loses_messages_but_never_gets_a_torn_one() {
    let t = TestBus::new("mp-slow");
    let count = 40_000;
    let _bus = make::bus(&t, 64, 200);
    let r = run(&t, 1, count, 200, &[Some(50)]);
    let c = &r.consumers[0];
    assert!(
        field(c, "lost") > 0,
        "a consumer sleeping 2 ms every 50 messages on a 64-slot ring must be lapped: {c:?}"
    );
    assert!(field(c, "laps") > 0);
    assert_eq!((field(c, "torn"), field(c, "disorder")), (0, 0), "{c:?}");
    assert_eq!(
        field(c, "received") + field(c, "lost"),
        count,
        "every sequence number accounted for: {c:?}"
    );
}

#[test]
fn producer_processes_on_a_multi_producer_bus_deliver_at_most_once_in_order() {
    let t = TestBus::new("mp-multi");
    let count = 15_000;
    let _bus = BusBuilder::new(t.name())
        .slots(1 << 16)
        .capacity(48)
        .multi_producer()
        .create()
        .unwrap();
    let r = run(&t, 2, count, 48, &[None, None]);
    let published: u64 = r.producers.iter().map(|p| field(p, "published")).sum();
    assert_eq!(published, 2 * count);
    for c in &r.consumers {
        assert_eq!((field(c, "torn"), field(c, "disorder")), (0, 0), "{c:?}");
        assert_eq!(field(c, "received") + field(c, "lost"), 2 * count, "{c:?}");
        assert_eq!(
            field(c, "lost"),
            0,
            "a 64k ring holds all 30k messages: {c:?}"
        );
    }
}
