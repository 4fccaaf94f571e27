//! The measurement engine: the timed loops every experiment runs, over any transport. Each
//! transport supplies a small trait ([`pingpong::Link`] for a ping-pong end, [`publish::Sink`]
//! for a producer, [`consume::Source`] for a consumer); the loops are generic over it, so they
//! are monomorphised per transport and stay as tight as if written for one.
//!
//! Layers of the bench: `proto` (messages, phases, what a child says) below this engine; the
//! experiments (`latency`, `fanout`, `throughput`, `mp`, `records`, `peer`, ...) above it, each
//! setting up its transport and calling in here; `child` and `main` on top, dispatching to them.

pub mod consume;
pub mod pingpong;
pub mod publish;
