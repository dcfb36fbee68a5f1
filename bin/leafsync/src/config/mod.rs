//! The daemon's configuration: a TOML file (every key optional, defaults documented in
//! `config/leafsync.toml`) merged with command-line flags into one validated [`Config`]; only a
//! validated config builds components.
//!
//! `sections.rs` holds the file's schema, one struct per `[section]`, each with a `validate`
//! returning the typed settings of `settings.rs`, which convert into the crates' configs.

mod sections;
mod settings;
#[cfg(test)]
mod tests;

use std::{
    fmt::Display,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use leafsync_p2p::chain::ChainSpec;

pub(crate) use self::{
    sections::{ElSection, FileConfig},
    settings::{LeafdbSettings, NetworkSettings, PivotSource, SyncSettings, SyncSources},
};

/// Default admin JSON-RPC address: loopback only, so nothing outside the machine can add peers.
pub(crate) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8647";

/// Where `leafsync status` looks for the admin JSON-RPC by default.
pub(crate) const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8647";

/// Why a configuration was rejected. Every variant names the file (or the flag) and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type, …); the parser's
    /// message names the key, the line and the reason.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is well-formed but unusable.
    #[error("{origin}: `{key}`: {reason}")]
    Invalid {
        /// The file, or `command line (--flag)` for a value a flag set.
        origin: String,
        /// The key, e.g. `p2p.static_peers[1]`.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Flags that override the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct RunFlags {
    /// The TOML configuration file.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Overrides `datadir`.
    #[arg(long)]
    pub(crate) datadir: Option<PathBuf>,
    /// Overrides `chain`.
    #[arg(long)]
    pub(crate) chain: Option<String>,
    /// Overrides `p2p.port`.
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// Overrides `p2p.bootnodes` (comma-separated ENRs).
    #[arg(long, value_delimiter = ',')]
    pub(crate) bootnodes: Option<Vec<String>>,
    /// Overrides `el.rpc`.
    #[arg(long)]
    pub(crate) el_rpc: Option<String>,
    /// Overrides `metrics.listen` (e.g. 127.0.0.1:9403).
    #[arg(long)]
    pub(crate) metrics: Option<String>,
    /// Overrides `log.level`.
    #[arg(long)]
    pub(crate) log: Option<String>,
}

impl RunFlags {
    /// `(key, flag)` for each key a flag sets (those [`FileConfig::load`] applies).
    pub(crate) fn keys(&self) -> Vec<(&'static str, &'static str)> {
        [
            (self.datadir.is_some(), "datadir", "--datadir"),
            (self.chain.is_some(), "chain", "--chain"),
            (self.port.is_some(), "p2p.port", "--port"),
            (self.bootnodes.is_some(), "p2p.bootnodes", "--bootnodes"),
            (self.el_rpc.is_some(), "el.rpc", "--el-rpc"),
            (self.metrics.is_some(), "metrics.listen", "--metrics"),
            (self.log.is_some(), "log.level", "--log"),
        ]
        .into_iter()
        .filter_map(|(set, key, flag)| set.then_some((key, flag)))
        .collect()
    }
}

/// The validated configuration: typed values only (the file it came from is not kept).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Where the leafdb and the node key live.
    pub(crate) datadir: PathBuf,
    /// The chain, its genesis known.
    pub(crate) chain: ChainSpec,
    /// `[p2p]`.
    pub(crate) network: NetworkSettings,
    /// `[el]`: the execution client's URL and the genesis file to bootstrap from.
    pub(crate) el: ElSection,
    /// `[sync]`.
    pub(crate) sync: SyncSettings,
    /// `[serve]`.
    pub(crate) serve: leafsync_serve::ServeConfig,
    /// `serve.snap`: serve snap/1 from the leafdb's head.
    pub(crate) serve_snap: bool,
    /// `serve.leaf`: offer `leaf/1`.
    pub(crate) serve_leaf: bool,
    /// `[leafdb]`.
    pub(crate) leafdb: LeafdbSettings,
    /// Admin JSON-RPC address, if enabled.
    pub(crate) admin: Option<SocketAddr>,
    /// Metrics address, if enabled.
    pub(crate) metrics: Option<SocketAddr>,
    /// The tracing filter.
    pub(crate) log_level: String,
}

/// Where values come from (the file, or `defaults`), and which keys the command line's flags
/// set: every error names the flag when one set its key, else the file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    file: &'a str,
    /// `(key, flag)` for each key a flag set.
    flags: &'a [(&'static str, &'static str)],
}

impl Origin<'_> {
    /// `key` is unusable, because `reason`.
    pub(crate) fn invalid(&self, key: &str, reason: String) -> ConfigError {
        // `p2p.bootnodes[2]` is an item of the key `--bootnodes` sets.
        let base = key.split('[').next().unwrap_or(key);
        let origin = match self.flags.iter().find(|(k, _)| *k == base) {
            Some((_, flag)) => format!("command line ({flag})"),
            None => self.file.to_string(),
        };
        ConfigError::Invalid { origin, key: key.to_string(), reason }
    }

    /// Parses every string of the list `key`; an error names the item (`key[i]`).
    pub(crate) fn parse_list<T: FromStr, R: Display>(
        &self,
        key: &str,
        list: &[String],
        why: impl Fn(T::Err) -> R,
    ) -> Result<Vec<T>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, s)| {
                T::from_str(s).map_err(|e| self.invalid(&format!("{key}[{i}]"), why(e).to_string()))
            })
            .collect()
    }

    /// Each `(key, value)` must be at least 1.
    pub(crate) fn at_least_one(&self, values: &[(&str, u64)]) -> Result<(), ConfigError> {
        match values.iter().find(|(_, v)| *v == 0) {
            Some((key, _)) => Err(self.invalid(key, "must be at least 1".into())),
            None => Ok(()),
        }
    }

    /// Each `(key, value, most)` must be at most `most` (`unit` names what it counts).
    pub(crate) fn at_most(
        &self,
        values: &[(&str, u64, u64)],
        unit: &str,
    ) -> Result<(), ConfigError> {
        match values.iter().find(|(_, v, most)| v > most) {
            Some((key, v, most)) => {
                Err(self.invalid(key, format!("{v} is more than {most} {unit}, the most allowed")))
            }
            None => Ok(()),
        }
    }
}

impl FileConfig {
    /// Reads and parses a file (no validation beyond the schema).
    pub(crate) fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(path, &text)
    }

    /// The file as TOML, every key with its value (optional keys that are not set left out),
    /// which [`Self::parse`] reads back to the same file: what `check-config` prints. Fails only
    /// for a path that is not UTF-8 (a `--datadir` flag may give one), naming `origin`.
    pub(crate) fn to_toml(&self, origin: &str) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Invalid {
            origin: origin.to_string(),
            key: "datadir, el.genesis".into(),
            reason: format!("cannot be written as TOML: {e}"),
        })
    }

    /// Parses TOML text attributed to `path`.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: parse_message(&e, text),
        })
    }

    /// The file with the flags applied: a flag overrides its key ([`RunFlags::keys`]).
    fn with_flags(mut self, flags: &RunFlags) -> Self {
        if let Some(v) = &flags.datadir {
            self.datadir.clone_from(v);
        }
        if let Some(v) = &flags.chain {
            self.chain.clone_from(v);
        }
        if let Some(v) = flags.port {
            self.p2p.port = v;
        }
        if let Some(v) = &flags.bootnodes {
            self.p2p.bootnodes = Some(v.clone());
        }
        if let Some(v) = &flags.el_rpc {
            self.el.rpc = Some(v.clone());
        }
        if let Some(v) = &flags.metrics {
            self.metrics.listen.clone_from(v);
        }
        if let Some(v) = &flags.log {
            self.log.level.clone_from(v);
        }
        self
    }

    /// Loads the file named by the flags (the defaults without one) and applies the flags;
    /// returns it with its origin for errors.
    pub(crate) fn load(flags: &RunFlags) -> Result<(Self, String), ConfigError> {
        let (file, origin) = match &flags.config {
            Some(path) => (Self::read(path)?, path.display().to_string()),
            None => (Self::default(), "defaults".to_string()),
        };
        Ok((file.with_flags(flags), origin))
    }
}

/// A TOML error in one line: where (line and column, from its span in `text`), that line (which
/// names the key), and the parser's reason; not the multi-line excerpt of its `Display`.
fn parse_message(e: &toml::de::Error, text: &str) -> String {
    let reason = e.message().trim_end().replace('\n', " ");
    let Some(start) = e.span().map(|span| span.start.min(text.len())) else { return reason };
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let source = text[line_start..].lines().next().unwrap_or("").trim();
    format!("line {line}, column {column} (`{source}`): {reason}")
}

impl Config {
    /// Loads the file named by the flags (if any), applies the flags and validates; an error in
    /// a value a flag set names the flag.
    pub(crate) fn load(flags: &RunFlags) -> Result<Self, ConfigError> {
        let (file, origin) = FileConfig::load(flags)?;
        Self::validate_with_flags(file, &origin, &flags.keys())
    }

    /// Checks every section and keeps the typed values; errors name `origin`.
    pub(crate) fn validate(file: FileConfig, origin: &str) -> Result<Self, ConfigError> {
        Self::validate_with_flags(file, origin, &[])
    }

    /// [`Self::validate`], where `flags` lists the keys the command line set (`(key, flag)`):
    /// an error in one of them names the flag rather than the file.
    pub(crate) fn validate_with_flags(
        file: FileConfig,
        origin: &str,
        flags: &[(&'static str, &'static str)],
    ) -> Result<Self, ConfigError> {
        let o = Origin { file: origin, flags };
        let chain = file.chain_spec(&o)?;
        let mut network = file.p2p.validate(&chain, &o)?;
        let el = file.el.validate(&o)?;
        network.el_peer = el.peer(&o)?;
        let mut sync = file.sync.validate(&chain, &el, &o)?;
        file.serve.validate(&file.sync, &mut sync, &o)?;
        // The execution client speaks eth/69 (and snap/1), never leaf/1: without eth it would
        // refuse every session.
        if network.el_peer.is_some() && !file.serve.snap && !sync.sources.snap {
            let reason = "the execution client speaks eth/69, not leaf/1: set `serve.snap = true` \
                          or list \"snap\" in `sync.sources` to speak eth/69 with it";
            return Err(o.invalid("el.enode", reason.into()));
        }
        let log_level = file.log.validate(&o)?;
        let leafdb = file.leafdb.validate(&o)?;
        // An empty path is the current directory (`/` under systemd): the leafdb and the node
        // key would land wherever the daemon was started.
        if file.datadir.as_os_str().is_empty() {
            return Err(o.invalid("datadir", "is empty: name the node's data directory".into()));
        }
        Ok(Self {
            admin: file.admin.validate("admin", &o)?,
            metrics: file.metrics.validate("metrics", &o)?,
            serve: file.serve.serve_config(),
            serve_snap: file.serve.snap,
            serve_leaf: file.serve.leaf,
            datadir: file.datadir,
            chain,
            network,
            el,
            sync,
            leafdb,
            log_level,
        })
    }
}
