//! `shmbus-bridge import`: frames from a zenoh key, accounted by the [`Ledger`] and published
//! into a local bus (docs/design.md §16).

use std::time::Duration;

use clap::Args;
use serde_json::json;
use shmbus::{Bus, BusBuilder, Publisher, DEFAULT_RAW_CAPACITY, DEFAULT_SLOTS};
use zenoh::handlers::FifoChannel;
use zenoh::Wait as _;

use crate::error::BridgeError;
use crate::ledger::{Ledger, Totals};
use crate::net::NetArgs;
use crate::stats::{self, Reporter};
use crate::wire::{self, Frame, Shape};

/// The longest wait for a sample between looks at the stop flag and the timers.
const TICK: Duration = Duration::from_millis(100);
/// How long the importer hears nothing before it says again what it waits for.
const QUIET: Duration = Duration::from_secs(10);
/// Samples zenoh may queue for the importer before its reception waits (backpressure, which a
/// reliable, blocking exporter feels; a dropping one drops).
const QUEUE: usize = 1024;

/// Flags of `import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The local bus to publish into (created with the exported bus's shape if absent)
    pub name: String,
    #[command(flatten)]
    pub net: NetArgs,
    /// Slot count of the local bus, if it is created [default: the exported bus's; 1024 with
    /// --size alone]
    #[arg(long, value_name = "N")]
    pub slots: Option<u64>,
    /// Slot capacity of the local bus in bytes, if it is created [default: the exported bus's;
    /// 240 with --slots alone]. Larger messages are counted lost at the importer
    #[arg(long, value_name = "BYTES")]
    pub size: Option<usize>,
    /// Seconds between statistics lines (0: only the final one)
    #[arg(long, default_value_t = 10.0)]
    pub stats_every: f64,
    /// Statistics as JSON, one object per line on stdout
    #[arg(long)]
    pub json: bool,
}

/// The local bus and its publisher, once known.
struct Local {
    publisher: Publisher,
    capacity: usize,
    created: bool,
    /// The local bus's identity as an exporter would name it (`export::source_id`).
    source: u64,
}

/// Opens the local bus, or creates it with `shape` (raw messages: the library publishes typed
/// messages only through their Rust type, so a typed bus is carried as its bytes).
fn local_bus(name: &str, slots: u64, capacity: usize, exact: bool) -> Result<Local, BridgeError> {
    let (bus, created) = match Bus::open(name) {
        Ok(bus) => (bus, false),
        Err(shmbus::Error::NotFound { .. }) => {
            let bus = BusBuilder::new(name)
                .slots(slots)
                .capacity(capacity)
                .create()
                .map_err(BridgeError::bus(name))?;
            (bus, true)
        }
        Err(e) => return Err(BridgeError::bus(name)(e)),
    };
    if exact && (bus.slots() != slots || bus.capacity() != capacity) {
        return Err(BridgeError::ShapeMismatch {
            name: name.to_owned(),
            slots: bus.slots(),
            capacity: bus.capacity(),
            want_slots: slots,
            want_capacity: capacity,
        });
    }
    if !exact && bus.capacity() < capacity {
        return Err(BridgeError::TooSmall {
            name: name.to_owned(),
            slots: bus.slots(),
            capacity: bus.capacity(),
            wanted: capacity,
        });
    }
    let publisher = bus.publisher().map_err(BridgeError::bus(name))?;
    Ok(Local {
        capacity: bus.capacity(),
        source: crate::export::source_id(&bus),
        publisher,
        created,
    })
}

fn fields(
    args: &ImportArgs,
    key: &str,
    t: &Totals,
    last: bool,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("role".into(), json!("import"));
    m.insert("bus".into(), json!(args.name));
    m.insert("key".into(), json!(key));
    m.insert("published".into(), json!(t.published));
    m.insert("received".into(), json!(t.received));
    m.insert("lost".into(), json!(t.lost()));
    m.insert("lost_at_exporter".into(), json!(t.lost_at_exporter));
    m.insert("lost_in_transit".into(), json!(t.lost_in_transit));
    m.insert("lost_in_restart".into(), json!(t.lost_in_restart));
    m.insert("lost_at_importer".into(), json!(t.lost_at_importer));
    m.insert("duplicates".into(), json!(t.duplicates));
    m.insert("malformed".into(), json!(t.malformed));
    m.insert("restarts".into(), json!(t.restarts));
    m.insert("sources".into(), json!(t.sources));
    m.insert("exporters".into(), json!(t.exporters));
    m.insert("final".into(), json!(last));
    m
}

/// Runs an importer until SIGINT or SIGTERM.
pub fn run(args: &ImportArgs) -> Result<(), BridgeError> {
    let key = args.net.key(&args.name)?;
    if let Some(s) = args.slots {
        if !s.is_power_of_two() {
            return Err(BridgeError::Usage(format!(
                "--slots {s}: the slot count must be a power of two"
            )));
        }
    }
    // A segment of that name that is not a bus is refused before any network: the importer
    // would otherwise wait for frames, silently, and fail only when the first one came.
    match shmbus::inspect::probe(&args.name) {
        Ok(p) if p.kind != shmbus::layout::SegmentKind::Bus => {
            return Err(BridgeError::Usage(format!(
                "{:?} is a {} segment: import publishes into a bus (give another name)",
                args.name,
                p.kind.name()
            )));
        }
        _ => {}
    }
    let exact = args.slots.is_some() || args.size.is_some();
    let mut local = if exact {
        Some(local_bus(
            &args.name,
            args.slots.unwrap_or(DEFAULT_SLOTS),
            args.size.unwrap_or(DEFAULT_RAW_CAPACITY),
            true,
        )?)
    } else {
        None
    };
    stats::install_stop_handler()?;
    let session = args.net.open()?;
    let subscriber = session
        .declare_subscriber(key.clone())
        .with(FifoChannel::new(QUEUE))
        .wait()
        .map_err(BridgeError::zenoh("declare the subscriber"))?;
    let source = args.net.describe_peers();
    eprintln!(
        "shmbus-bridge: importing key {} into bus {}; waiting for an exporter ({source})",
        key.as_str(),
        args.name
    );
    // Said again while nothing arrives, so that a dead endpoint does not look like a quiet bus.
    let mut heard = std::time::Instant::now();
    let mut ledger = Ledger::default();
    let mut reporter = Reporter::new(args.json, args.stats_every);
    let mut result = Ok(());
    while !stats::stopping() {
        if reporter.due() {
            reporter.report(&fields(args, key.as_str(), &ledger.totals(), false));
        }
        let sample = match subscriber.recv_timeout(TICK) {
            Ok(Some(s)) => s,
            Ok(None) => {
                if heard.elapsed() >= QUIET {
                    eprintln!(
                        "shmbus-bridge: nothing on key {} for {} s; waiting for an exporter ({source})",
                        key.as_str(),
                        QUIET.as_secs()
                    );
                    heard = std::time::Instant::now();
                }
                continue;
            }
            Err(_) => break,
        };
        heard = std::time::Instant::now();
        let bytes = sample.payload().to_bytes();
        let frame = match wire::decode(&bytes) {
            Ok(f) => f,
            Err(_) => {
                ledger.malformed();
                continue;
            }
        };
        if local.is_none() {
            match local_bus(
                &args.name,
                frame.shape.slots,
                frame.shape.capacity as usize,
                false,
            ) {
                Ok(l) => {
                    if l.created {
                        eprintln!(
                            "shmbus-bridge: created bus {} ({} slots of {} bytes) for {}",
                            args.name,
                            frame.shape.slots,
                            frame.shape.capacity,
                            describe(&frame.shape)
                        );
                    }
                    local = Some(l);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let Some(l) = local.as_mut() else { break };
        if frame.origin.source == l.source {
            // The exporter on this key reads the very bus we would publish into: each import
            // would be exported again, and the importer's publishes would lap its producer.
            result = Err(BridgeError::Usage(format!(
                "bus {} is the bus exported on key {}: importing it into itself would loop; \
                 on one host, import into another bus name (with --key {} to keep the key)",
                args.name,
                key.as_str(),
                key.as_str()
            )));
            break;
        }
        deliver(&mut ledger, l, &frame);
    }
    reporter.report(&fields(args, key.as_str(), &ledger.totals(), true));
    drop(subscriber);
    let _ = session.close().wait();
    result
}

/// Accounts for a frame and publishes into the local bus what it tells: first the losses it
/// reveals upstream (a gap, a loss frame), as lost sequences that subscribers count, then its
/// new messages; a message the local bus refuses is published as a loss too. So every local
/// subscriber's `received + lost` balances against the source's sequence (docs/design.md §16).
fn deliver(ledger: &mut Ledger, local: &mut Local, frame: &Frame<'_>) {
    let before = ledger.totals().lost();
    let range = ledger.admit(frame);
    local
        .publisher
        .publish_loss(ledger.totals().lost() - before);
    for m in &frame.messages[range] {
        if m.len() > local.capacity || local.publisher.publish_bytes(m).is_err() {
            ledger.refused_locally(1);
            local.publisher.publish_loss(1);
        }
    }
}

fn describe(s: &Shape) -> String {
    if s.type_size == 0 {
        "byte messages".into()
    } else {
        format!("messages of type {} ({} bytes)", s.type_name, s.type_size)
    }
}
