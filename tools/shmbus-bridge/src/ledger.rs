//! The importer's loss accounting (docs/design.md §16): per exported bus ("source"), the next
//! source sequence expected; every sequence from the first one seen on is counted exactly once,
//! as received or as lost in one of four places.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::wire::{Frame, Kind};

/// The importer's counters, over every source. `received + lost() == published`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Source sequences accounted for: from the first one seen per source to the next expected.
    pub published: u64,
    /// Messages published into the local bus.
    pub received: u64,
    /// Lost on the exporting host: the exporter was lapped on its bus (loss frames).
    pub lost_at_exporter: u64,
    /// Lost between the hosts: sequence gaps within one exporter instance's stream.
    pub lost_in_transit: u64,
    /// Lost while no exporter ran: the gap between an exporter's last sequence and where the
    /// next instance of the same source began.
    pub lost_in_restart: u64,
    /// Lost on this host: the message did not fit the local bus's slots.
    pub lost_at_importer: u64,
    /// Messages that arrived again (a restarted exporter re-reading old messages, or two
    /// exporters of one bus): dropped, not counted as received.
    pub duplicates: u64,
    /// Samples that are no valid frame: dropped.
    pub malformed: u64,
    /// New exporter instances of a source already seen.
    pub restarts: u64,
    /// Exported buses seen.
    pub sources: u64,
    /// Exporter instances seen.
    pub exporters: u64,
}

impl Totals {
    /// Every loss, wherever it happened.
    pub fn lost(&self) -> u64 {
        self.lost_at_exporter + self.lost_in_transit + self.lost_in_restart + self.lost_at_importer
    }
}

#[derive(Debug)]
struct Source {
    /// The first sequence seen.
    start: u64,
    /// The next sequence expected: every one below it is counted.
    expected: u64,
    /// The instance whose frame came last.
    instance: u64,
}

/// Accounting state of an importer.
#[derive(Debug, Default)]
pub struct Ledger {
    sources: HashMap<u64, Source>,
    instances: HashSet<u64>,
    totals: Totals,
}

impl Ledger {
    /// The counters.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// A sample that did not decode.
    pub fn malformed(&mut self) {
        self.totals.malformed += 1;
    }

    /// `n` admitted messages that the local bus refused: lost at the importer, not received.
    pub fn refused_locally(&mut self, n: u64) {
        self.totals.received -= n;
        self.totals.lost_at_importer += n;
    }

    /// Accounts for a frame; returns the indexes of its messages to publish (those not seen
    /// before), which are counted received.
    pub fn admit(&mut self, f: &Frame<'_>) -> Range<usize> {
        let t = &mut self.totals;
        let new_instance = self.instances.insert(f.origin.instance);
        if new_instance {
            t.exporters += 1;
        }
        let src = self.sources.entry(f.origin.source).or_insert_with(|| {
            t.sources += 1;
            Source {
                start: f.seq,
                expected: f.seq,
                instance: f.origin.instance,
            }
        });
        let switched = src.instance != f.origin.instance;
        if switched && new_instance {
            t.restarts += 1;
        }
        src.instance = f.origin.instance;
        // A frame that begins past the expected sequence reveals a gap: within one instance's
        // stream it was lost in transit; at a new instance's first frame, while none ran.
        if f.seq > src.expected {
            let gap = f.seq - src.expected;
            if switched && new_instance {
                t.lost_in_restart += gap;
            } else {
                t.lost_in_transit += gap;
            }
            src.expected = f.seq;
        }
        let deliver = match f.kind {
            Kind::Hello => 0..0,
            Kind::Loss => {
                let end = f.seq + f.lost;
                if end > src.expected {
                    t.lost_at_exporter += end - src.expected;
                    src.expected = end;
                }
                0..0
            }
            Kind::Data => {
                let n = f.messages.len() as u64;
                let end = f.seq + n;
                let seen = (src.expected - f.seq).min(n);
                t.duplicates += seen;
                t.received += n - seen;
                src.expected = src.expected.max(end);
                seen as usize..n as usize
            }
        };
        t.published = self.sources.values().map(|s| s.expected - s.start).sum();
        deliver
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, Encoder, Origin, Shape};

    fn shape() -> Shape {
        Shape {
            slots: 8,
            capacity: 16,
            type_size: 0,
            type_align: 1,
            type_name: "bytes".into(),
            mode: 1,
        }
    }

    fn enc(instance: u64, source: u64) -> Encoder {
        Encoder::new(Origin { instance, source }, shape())
    }

    fn data(e: &mut Encoder, seqs: Range<u64>) -> Vec<u8> {
        for s in seqs {
            e.push(s, &s.to_le_bytes());
        }
        e.take_data().unwrap()
    }

    fn admit(l: &mut Ledger, bytes: &[u8]) -> Range<usize> {
        l.admit(&decode(bytes).unwrap())
    }

    fn assert_balanced(l: &Ledger) {
        let t = l.totals();
        assert_eq!(t.received + t.lost(), t.published, "{t:?}");
    }

    #[test]
    fn an_unbroken_stream_is_all_received() {
        let mut l = Ledger::default();
        let mut e = enc(1, 10);
        admit(&mut l, &e.hello(5));
        assert_eq!(admit(&mut l, &data(&mut e, 5..9)), 0..4);
        assert_eq!(admit(&mut l, &data(&mut e, 9..10)), 0..1);
        let t = l.totals();
        assert_eq!((t.published, t.received, t.lost()), (5, 5, 0));
        assert_eq!((t.sources, t.exporters, t.restarts), (1, 1, 0));
    }

    #[test]
    fn a_gap_within_one_instance_is_lost_in_transit_and_a_loss_frame_at_the_exporter() {
        let mut l = Ledger::default();
        let mut e = enc(1, 10);
        admit(&mut l, &data(&mut e, 0..3));
        admit(&mut l, &data(&mut e, 5..6));
        admit(&mut l, &e.loss(6, 10));
        admit(&mut l, &e.hello(20));
        let t = l.totals();
        assert_eq!(
            (t.received, t.lost_in_transit, t.lost_at_exporter),
            (4, 2 + 4, 10)
        );
        assert_balanced(&l);
    }

    #[test]
    fn a_restarted_exporter_counts_the_gap_once_and_drops_what_it_resends() {
        let mut l = Ledger::default();
        admit(&mut l, &data(&mut enc(1, 10), 0..10));
        // Resumes later: the gap is a restart loss.
        let mut second = enc(2, 10);
        admit(&mut l, &second.hello(15));
        admit(&mut l, &data(&mut second, 15..17));
        // A third instance re-reads from the oldest: what was seen is dropped, the rest delivered.
        let mut third = enc(3, 10);
        assert_eq!(admit(&mut l, &data(&mut third, 12..20)), 5..8);
        let t = l.totals();
        assert_eq!((t.restarts, t.exporters, t.lost_in_restart), (2, 3, 5));
        assert_eq!((t.received, t.duplicates), (10 + 2 + 3, 5));
        assert_balanced(&l);
    }

    #[test]
    fn sources_are_accounted_separately() {
        let mut l = Ledger::default();
        admit(&mut l, &data(&mut enc(1, 10), 100..103));
        admit(&mut l, &data(&mut enc(2, 20), 0..2));
        let t = l.totals();
        assert_eq!(
            (t.sources, t.restarts, t.published, t.received),
            (2, 0, 5, 5)
        );
    }

    #[test]
    fn refusals_move_messages_from_received_to_lost_at_importer() {
        let mut l = Ledger::default();
        admit(&mut l, &data(&mut enc(1, 10), 0..4));
        l.refused_locally(1);
        let t = l.totals();
        assert_eq!((t.received, t.lost_at_importer), (3, 1));
        assert_balanced(&l);
    }

    #[test]
    fn a_late_loss_frame_below_the_expected_sequence_changes_nothing() {
        let mut l = Ledger::default();
        let mut e = enc(1, 10);
        admit(&mut l, &data(&mut e, 0..10));
        admit(&mut l, &e.loss(2, 3));
        let t = l.totals();
        assert_eq!((t.received, t.lost()), (10, 0));
    }
}
