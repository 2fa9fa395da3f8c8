//! The `points-server` configuration: flags, `POINTS_*` environment variables, and an
//! optional TOML file (`--config`), in that order of precedence, over built-in defaults.

use crate::engine::{EngineOptions, StoreConfig};
use anyhow::Context as _;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Which store keeps the journals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded SQLite in the data directory (the default).
    Sqlite,
    /// PostgreSQL at `database_url`.
    Postgres,
    /// In memory, lost at exit (tests and demos).
    Memory,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags and environment. Every setting is optional here so that the TOML file can fill
/// what neither gives.
#[derive(Clone, Debug, Default, clap::Parser)]
#[command(
    name = "points-server",
    version,
    about = "The points ledger gRPC server."
)]
pub struct Args {
    /// A TOML file with any of the settings below (snake_case keys, e.g. `listen`).
    #[arg(long, env = "POINTS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on [default: 127.0.0.1:50051].
    #[arg(long, env = "POINTS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory of the embedded SQLite store [default: ./points-data].
    #[arg(long, env = "POINTS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL connection string, e.g. postgres://points@db/points; selects the
    /// PostgreSQL store.
    #[arg(long, env = "POINTS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Store kind [default: sqlite, or postgres when --database-url is given].
    #[arg(long, env = "POINTS_STORE", value_enum)]
    pub store: Option<StoreKind>,
    /// Address to serve Prometheus metrics on [default: 127.0.0.1:9464].
    #[arg(long, env = "POINTS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve no metrics.
    #[arg(long, env = "POINTS_NO_METRICS")]
    pub no_metrics: bool,
    /// Log format [default: text].
    #[arg(long, env = "POINTS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. "info" or "points_grpc=debug" [default: info; RUST_LOG also works].
    #[arg(long, env = "POINTS_LOG")]
    pub log: Option<String>,
    /// Most requests committed in one transaction [default: 256].
    #[arg(long, env = "POINTS_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Entries between ledger checkpoints [default: the engine's].
    #[arg(long, env = "POINTS_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Seconds between expiry sweeps; 0 turns the sweep off [default: 3600].
    #[arg(long, env = "POINTS_EXPIRY_SWEEP_SECS")]
    pub expiry_sweep_secs: Option<u64>,
    /// Seconds to let in-flight calls finish on SIGTERM/SIGINT [default: 30].
    #[arg(long, env = "POINTS_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// PEM certificate chain to serve TLS with (needs --tls-key).
    #[arg(long, env = "POINTS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "POINTS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that client certificates must chain to: turns on mutual TLS.
    #[arg(long, env = "POINTS_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Entries between signed disclosure checkpoints; 0 signs only on demand [default: 1000].
    #[arg(long, env = "POINTS_CHECKPOINT_EVERY")]
    pub checkpoint_every: Option<u64>,
    /// Address to serve the public board (read-only web page and JSON) on; none by default.
    #[arg(long, env = "POINTS_BOARD_LISTEN")]
    pub board_listen: Option<SocketAddr>,
    /// Calls handled at once before more are refused RESOURCE_EXHAUSTED; 0: no limit
    /// [default: 4096].
    #[arg(long, env = "POINTS_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Calls a second each API key may make on average; 0: no limit [default: 0].
    #[arg(long, env = "POINTS_RATE_LIMIT_PER_KEY")]
    pub rate_limit_per_key: Option<u32>,
    /// Calls an API key may make at once before its rate applies [default: the rate].
    #[arg(long, env = "POINTS_RATE_BURST_PER_KEY")]
    pub rate_burst_per_key: Option<u32>,
    /// The longest any call may take (and the deadline of calls without grpc-timeout), in
    /// milliseconds [default: 30000].
    #[arg(long, env = "POINTS_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
}

/// The TOML file: the same settings, snake_case.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    store: Option<StoreKind>,
    metrics_listen: Option<SocketAddr>,
    no_metrics: Option<bool>,
    log_format: Option<LogFormat>,
    log: Option<String>,
    max_batch: Option<usize>,
    snapshot_every: Option<u64>,
    expiry_sweep_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    checkpoint_every: Option<u64>,
    board_listen: Option<SocketAddr>,
    max_in_flight: Option<usize>,
    rate_limit_per_key: Option<u32>,
    rate_burst_per_key: Option<u32>,
    request_timeout_ms: Option<u64>,
}

/// TLS settings of the gRPC port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA for client certificates (mutual TLS), if any.
    pub client_ca: Option<PathBuf>,
}

/// The settled configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC address.
    pub listen: SocketAddr,
    /// Where the journals live.
    pub store: StoreConfig,
    /// Metrics address, if served.
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log: String,
    /// Engine tuning.
    pub engine: EngineOptions,
    /// Seconds between expiry sweeps (0: off).
    pub expiry_sweep_secs: u64,
    /// Shutdown grace period in seconds.
    pub shutdown_grace_secs: u64,
    /// TLS, when configured.
    pub tls: Option<TlsFiles>,
    /// Entries between signed disclosure checkpoints (0: on demand only).
    pub checkpoint_every: u64,
    /// The public board's address, if served.
    pub board_listen: Option<SocketAddr>,
    /// Load shedding and deadlines.
    pub overload: crate::overload::OverloadOptions,
}

impl Args {
    /// Merges flags and environment over the file over the defaults.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let database_url = self.database_url.or(file.database_url);
        let kind = self
            .store
            .or(file.store)
            .unwrap_or(if database_url.is_some() {
                StoreKind::Postgres
            } else {
                StoreKind::Sqlite
            });
        let store = match kind {
            StoreKind::Memory => StoreConfig::Memory,
            StoreKind::Sqlite => StoreConfig::Sqlite {
                dir: self
                    .data_dir
                    .or(file.data_dir)
                    .unwrap_or_else(|| PathBuf::from("./points-data")),
            },
            StoreKind::Postgres => StoreConfig::Postgres {
                url: database_url
                    .context("the postgres store needs --database-url (POINTS_DATABASE_URL)")?,
            },
        };
        let defaults = EngineOptions::default();
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
            self.tls_client_ca.or(file.tls_client_ca),
        ) {
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None, None) => None,
            _ => anyhow::bail!("TLS needs both --tls-cert and --tls-key"),
        };
        let no_metrics = self.no_metrics || file.no_metrics.unwrap_or(false);
        Ok(Config {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 50051))),
            store,
            metrics_listen: (!no_metrics).then(|| {
                self.metrics_listen
                    .or(file.metrics_listen)
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9464)))
            }),
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            log: self
                .log
                .or(file.log)
                .or_else(|| std::env::var("RUST_LOG").ok())
                .unwrap_or_else(|| "info".to_owned()),
            engine: EngineOptions {
                max_batch: self
                    .max_batch
                    .or(file.max_batch)
                    .unwrap_or(defaults.max_batch),
                snapshot_every: self
                    .snapshot_every
                    .or(file.snapshot_every)
                    .unwrap_or(defaults.snapshot_every),
                ..defaults
            },
            expiry_sweep_secs: self
                .expiry_sweep_secs
                .or(file.expiry_sweep_secs)
                .unwrap_or(3600),
            shutdown_grace_secs: self
                .shutdown_grace_secs
                .or(file.shutdown_grace_secs)
                .unwrap_or(30),
            tls,
            checkpoint_every: self
                .checkpoint_every
                .or(file.checkpoint_every)
                .unwrap_or(1000),
            board_listen: self.board_listen.or(file.board_listen),
            overload: {
                let defaults = crate::overload::OverloadOptions::default();
                let rate_per_key = self
                    .rate_limit_per_key
                    .or(file.rate_limit_per_key)
                    .unwrap_or(defaults.rate_per_key);
                crate::overload::OverloadOptions {
                    max_in_flight: self
                        .max_in_flight
                        .or(file.max_in_flight)
                        .unwrap_or(defaults.max_in_flight),
                    rate_per_key,
                    burst_per_key: self
                        .rate_burst_per_key
                        .or(file.rate_burst_per_key)
                        .unwrap_or(rate_per_key),
                    request_timeout: std::time::Duration::from_millis(
                        self.request_timeout_ms
                            .or(file.request_timeout_ms)
                            .unwrap_or(30_000)
                            .max(1),
                    ),
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("points.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:6000\"\ndata_dir = \"/tmp/x\"\nexpiry_sweep_secs = 5\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "points-server",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:7000",
        ]);
        let config = args.resolve().unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(
            config.store,
            StoreConfig::Sqlite {
                dir: PathBuf::from("/tmp/x")
            }
        );
        assert_eq!(config.expiry_sweep_secs, 5);
        assert_eq!(config.metrics_listen.map(|a| a.port()), Some(9464));
    }
}
