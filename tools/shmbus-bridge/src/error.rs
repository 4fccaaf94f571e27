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
            reason: reason(&e),
        }
    }
}

/// A zenoh error's text for users: without the locations in zenoh's own source that zenoh
/// appends (` at /path/to/zenoh-x.y/src/file.rs:123.`), which say nothing to them.
pub fn reason(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find(" at ") {
        let after = &rest[i + 4..];
        let token_end = after.find(char::is_whitespace).unwrap_or(after.len());
        let token = after[..token_end].trim_end_matches('.');
        let is_location = token
            .rsplit_once(".rs:")
            .is_some_and(|(_, line)| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()));
        if is_location {
            out.push_str(&rest[..i]);
            rest = &after[token_end..];
        } else {
            out.push_str(&rest[..i + 4]);
            rest = after;
        }
    }
    out.push_str(rest);
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn zenoh_source_locations_are_left_out() {
        assert_eq!(
            super::reason(&"Can not create a new TCP listener bound to tcp/127.0.0.1:1: \
                 Permission denied (os error 13) at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/zenoh-link-tcp-1.10.2/src/unicast.rs:389."),
            "Can not create a new TCP listener bound to tcp/127.0.0.1:1: Permission denied (os error 13)"
        );
        assert_eq!(
            super::reason(&"a at b look at this.rs:x"),
            "a at b look at this.rs:x",
            "only real source locations are removed"
        );
    }
}
