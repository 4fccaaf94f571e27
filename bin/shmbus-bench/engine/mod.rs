//! The measurement engine: the timed loops every experiment runs, over any transport. Each
//! transport supplies a small trait ([`publish::Sink`] for a producer, [`pingpong::Poll`] for the
//! receiving half of a ping-pong end, [`consume::Source`] for a consumer); the loops are generic
//! over it, so they are monomorphised per transport and stay as tight as if written for one.
//!
//! Layers of the bench: `proto` (messages, phases, what a child says) and `c2c` (the floor every
//! latency is compared with) below this engine; the experiments (`latency`, `fanout`, `throughput`, `mp`, `records`, `peer`, ...) above it, each
//! setting up its transport and calling in here; `child` and `main` on top, dispatching to them.

pub mod consume;
pub mod pingpong;
pub mod publish;
