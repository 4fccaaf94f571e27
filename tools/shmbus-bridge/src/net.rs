//! The zenoh side shared by `export` and `import`: flags, configuration and the session.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, ValueEnum};
use zenoh::config::{Config, EndPoint};
use zenoh::key_expr::OwnedKeyExpr;
use zenoh::qos::{CongestionControl, Reliability};
use zenoh::{Session, Wait};

use crate::error::BridgeError;

/// Flags that choose how the bridge reaches zenoh.
#[derive(Args, Clone, Debug, Default)]
pub struct NetArgs {
    /// Zenoh key expression to publish on or subscribe to [default: shmbus/NAME]. An importer
    /// into a bus of another name than the exported one gives the exporter's key
    #[arg(long, value_name = "KEYEXPR")]
    pub key: Option<String>,
    /// Listen on this zenoh endpoint (repeatable), e.g. tcp/0.0.0.0:7447. Any --listen or
    /// --connect turns multicast scouting off, so only the endpoints given are used
    #[arg(long, value_name = "ENDPOINT")]
    pub listen: Vec<String>,
    /// Connect to this zenoh endpoint (repeatable), e.g. tcp/192.0.2.7:7447
    #[arg(long, value_name = "ENDPOINT")]
    pub connect: Vec<String>,
    /// A zenoh configuration file (JSON5); --listen and --connect override its endpoints.
    /// Without it (and without endpoints) zenoh's default peer configuration applies: it finds
    /// other peers by multicast scouting
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl NetArgs {
    /// The key: `--key`, or `shmbus/NAME`.
    pub fn key(&self, bus: &str) -> Result<OwnedKeyExpr, BridgeError> {
        let key = self.key.clone().unwrap_or_else(|| format!("shmbus/{bus}"));
        OwnedKeyExpr::from_str(&key).map_err(|e| BridgeError::Key {
            key,
            reason: crate::error::reason(&e),
        })
    }

    /// Where the peers are looked for, for messages: the endpoints, or how zenoh finds them.
    pub fn describe_peers(&self) -> String {
        let mut parts = Vec::new();
        if !self.connect.is_empty() {
            parts.push(format!("connecting to {}", self.connect.join(", ")));
        }
        if !self.listen.is_empty() {
            parts.push(format!("listening on {}", self.listen.join(", ")));
        }
        if parts.is_empty() {
            parts.push(match &self.config {
                Some(path) => format!("peers as {} configures them", path.display()),
                None => "finding peers by multicast scouting".to_owned(),
            });
        }
        parts.join("; ")
    }

    /// The zenoh configuration: the file (or zenoh's defaults), then the flags.
    pub fn config(&self) -> Result<Config, BridgeError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path).map_err(|e| BridgeError::ConfigFile {
                path: path.clone(),
                reason: crate::error::reason(&e),
            })?,
            None => Config::default(),
        };
        for (what, list) in [("listen", &self.listen), ("connect", &self.connect)] {
            if list.is_empty() {
                continue;
            }
            for e in list {
                EndPoint::from_str(e).map_err(|err| BridgeError::Endpoint {
                    endpoint: e.clone(),
                    reason: crate::error::reason(&err),
                })?;
            }
            let json = serde_json::to_string(list).expect("a list of strings serialises");
            config
                .insert_json5(&format!("{what}/endpoints"), &json)
                .map_err(|err| BridgeError::Endpoint {
                    endpoint: list.join(","),
                    reason: crate::error::reason(&err),
                })?;
        }
        if !self.listen.is_empty() || !self.connect.is_empty() {
            config
                .insert_json5("scouting/multicast/enabled", "false")
                .map_err(BridgeError::zenoh("turn multicast scouting off"))?;
        }
        Ok(config)
    }

    /// Opens the zenoh session.
    pub fn open(&self) -> Result<Session, BridgeError> {
        zenoh::open(self.config()?)
            .wait()
            .map_err(BridgeError::zenoh("open the session"))
    }
}

/// `--reliable` or `--best-effort`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ReliabilityArg {
    /// Retransmitted by zenoh's reliable channel: no loss in transit while the link holds.
    #[default]
    Reliable,
    /// Sent once: cheaper, and losses in transit show as sequence gaps.
    BestEffort,
}

impl From<ReliabilityArg> for Reliability {
    fn from(r: ReliabilityArg) -> Self {
        match r {
            ReliabilityArg::Reliable => Reliability::Reliable,
            ReliabilityArg::BestEffort => Reliability::BestEffort,
        }
    }
}

/// `--congestion`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum CongestionArg {
    /// Wait for room in zenoh's queue: a slow importer slows the exporter, which may then be
    /// lapped on its own bus (counted there, never hidden).
    #[default]
    Block,
    /// Drop a sample when zenoh's queue is full: the importer counts the gap as lost in transit.
    Drop,
}

impl From<CongestionArg> for CongestionControl {
    fn from(c: CongestionArg) -> Self {
        match c {
            CongestionArg::Block => CongestionControl::Block,
            CongestionArg::Drop => CongestionControl::Drop,
        }
    }
}
