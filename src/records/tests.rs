//! Unit tests of the records protocol over heap segments.

use crate::records::{RecordRecv, RecordsBuilder};
use crate::subscriber::Start;

#[test]
fn records_round_trip_with_types_and_sizes() {
    let r = RecordsBuilder::new("t").bytes(4096).in_process().unwrap();
    let mut tx = r.publisher().unwrap();
    let mut rx = r.subscribe(Start::Oldest);
    for len in [0usize, 1, 7, 8, 9, 100, 1008] {
        let bytes: Vec<u8> = (0..len).map(|i| i as u8 ^ len as u8).collect();
        let seq = tx.publish_record(len as u32, &bytes).unwrap();
        match rx.try_recv() {
            RecordRecv::Record(m) => {
                assert_eq!(
                    (m.seq(), m.type_id(), m.bytes()),
                    (seq, len as u32, &bytes[..])
                );
            }
            other => panic!("expected record {seq}, got {other:?}"),
        }
    }
    assert!(matches!(rx.try_recv(), RecordRecv::Empty));
}
