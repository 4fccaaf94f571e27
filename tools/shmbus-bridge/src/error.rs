//! The bridge's one error type: what went wrong, with the names and numbers a user needs.

use std::path::PathBuf;

/// Why `shmbus-bridge` stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A bus operation failed (the library's error says which check and why).
    #[error("bus {name}: {source}")]
    Bus {
        /// The bus.
        name: String,
        /// The library's error.
        #[source]
        source: shmbus::Error,
    },
    /// An endpoint given with `--listen` or `--connect` does not parse.
    #[error("bad endpoint {endpoint:?}: {reason} (expected e.g. tcp/127.0.0.1:7447)")]
    Endpoint {
        /// As given.
        endpoint: String,
        /// zenoh's reason.
        reason: String,
    },
    /// The `--config` file cannot be read or parsed.
    #[error("zenoh config file {}: {reason}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// zenoh's reason.
        reason: String,
    },
    /// A key expression that zenoh refuses.
    #[error("bad key expression {key:?}: {reason}")]
    Key {
        /// As given.
        key: String,
        /// zenoh's reason.
        reason: String,
    },
    /// A zenoh operation failed (opening the session, declaring a publisher or subscriber).
    #[error("zenoh: {what}: {reason}")]
    Zenoh {
        /// What the bridge was doing.
        what: &'static str,
        /// zenoh's reason.
        reason: String,
    },
    /// The local bus of an importer cannot take the exported messages.
    #[error(
        "bus {name} has {slots} slots of {capacity} bytes, but the exported bus carries messages \
         of up to {wanted} bytes: remove it, import into another name, or give --size to accept \
         losing the larger messages"
    )]
    TooSmall {
        /// The local bus.
        name: String,
        /// Its slot count.
        slots: u64,
        /// Its capacity.
        capacity: usize,
        /// The exported bus's capacity.
        wanted: usize,
    },
    /// The local bus exists with another shape than `--slots`/`--size` ask for.
    #[error(
        "bus {name} has {slots} slots of {capacity} bytes, not the {want_slots} slots of \
         {want_capacity} bytes that --slots/--size ask for"
    )]
    ShapeMismatch {
        /// The local bus.
        name: String,
        /// Its slot count.
        slots: u64,
        /// Its capacity.
        capacity: usize,
        /// The slot count asked for.
        want_slots: u64,
        /// The capacity asked for.
        want_capacity: usize,
    },
    /// A bad command-line value that clap cannot check.
    #[error("{0}")]
    Usage(String),
    /// Installing the signal handlers failed.
    #[error("cannot install the SIGINT/SIGTERM handlers: {0}")]
    Signals(std::io::Error),
}

impl BridgeError {
    /// Wraps a library error with the bus it concerns.
    pub fn bus(name: &str) -> impl FnOnce(shmbus::Error) -> Self + '_ {
        move |source| BridgeError::Bus {
            name: name.to_owned(),
            source,
        }
    }

    /// Wraps a zenoh error with what the bridge was doing.
    pub fn zenoh(what: &'static str) -> impl FnOnce(zenoh::Error) -> Self {
        move |e| BridgeError::Zenoh {
            what,
            reason: e.to_string(),
        }
    }
}
