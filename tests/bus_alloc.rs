//! Publishing and receiving never touch the heap: a counting global allocator proves it.

use shmbus_testkit as support;

use shmbus::{BusBuilder, Recv, Start};
use support::alloc::{allocations_during, Counting};
use support::TestBus;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn publish_and_receive_paths_do_not_allocate() {
    for multi in [false, true] {
        let name = TestBus::new("alloc");
        let b = BusBuilder::new(name.name()).slots(64).capacity(512);
        let bus = if multi {
            b.multi_producer().create()
        } else {
            b.create()
        }
        .unwrap();
        let mut tx = bus.publisher().unwrap();
        let mut rx = bus.subscribe(Start::Oldest);
        let payload = [7u8; 512];
        let ((received, lost), allocations) = allocations_during(|| {
            let (mut received, mut lost) = (0u64, 0u64);
            for i in 0..10_000usize {
                tx.publish_bytes(&payload[..8 + i % 500]).unwrap();
                tx.publish_with(|w| w.push(&payload[..64]).unwrap());
                for _ in 0..3 {
                    match rx.try_recv() {
                        Recv::Message(m) => {
                            assert_eq!(m.bytes()[0], 7);
                            received += 1;
                        }
                        Recv::Lapped { lost: n } => lost += n,
                        Recv::Empty => {}
                        Recv::Closed => unreachable!("try_recv never reports closed"),
                    }
                }
            }
            (received, lost)
        });
        assert_eq!(
            allocations, 0,
            "multi={multi}: allocations on the hot paths"
        );
        assert!(received > 0);
        assert_eq!(received + lost, 20_000);
    }
}
