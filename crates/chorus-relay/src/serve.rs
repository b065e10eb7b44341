//! `serve`: the relay's command-line configuration and startup, shared by the
//! `chorus-relay` binary and `chorus relay serve` (and `chorus demo`'s embedded relay).
//!
//! Every flag has an environment-variable equivalent (`CHORUS_RELAY_*`), so the same
//! binary configures from a unit file or a container.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::proxy::Cidr;
use crate::{AppState, Limits, PostgresStore, Rate, RelayStore, SqliteStore, SystemClock, limits};

/// Name of the SQLite file created in the data directory.
pub const SQLITE_FILE: &str = "chorus-relay.sqlite";

/// How logs are written.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--listen`: an IP address and port, or a host name and port (the first address it
/// resolves to, IPv4 first: `localhost` is 127.0.0.1).
fn listen_address(given: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = given.parse() {
        return Ok(addr);
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(given)
        .map_err(|e| format!("expected IP:PORT or HOST:PORT ({e})"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{given} resolves to no address"))
}

/// `serve` flags.
#[derive(Parser, Clone)]
pub struct ServeArgs {
    /// Address to listen on: IP:PORT or HOST:PORT, e.g. localhost:7470 (port 0 picks a
    /// free port).
    #[arg(long, env = "CHORUS_RELAY_LISTEN", value_parser = listen_address,
          default_value_t = SocketAddr::from(([127, 0, 0, 1], crate::DEFAULT_PORT)))]
    pub listen: SocketAddr,
    /// Directory for the SQLite database (ignored with a PostgreSQL --database).
    #[arg(long, env = "CHORUS_RELAY_DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,
    /// Database URL: postgres://… for PostgreSQL, sqlite:… for a SQLite file;
    /// unset means <data-dir>/chorus-relay.sqlite.
    #[arg(long, env = "CHORUS_RELAY_DATABASE")]
    pub database: Option<String>,
    /// Database connections in the pool.
    #[arg(long, env = "CHORUS_RELAY_DB_CONNECTIONS", default_value_t = 8)]
    pub db_connections: u32,
    /// How long mailbox envelopes are kept, in seconds.
    #[arg(long, env = "CHORUS_RELAY_MAILBOX_TTL_SECS", default_value_t = limits::DEFAULT_MAILBOX_TTL.as_secs())]
    pub mailbox_ttl_secs: u64,
    /// Most unexpired envelopes per mailbox.
    #[arg(long, env = "CHORUS_RELAY_MAILBOX_DEPTH", default_value_t = limits::DEFAULT_MAILBOX_DEPTH)]
    pub mailbox_depth: u32,
    /// Most mailboxes per log.
    #[arg(long, env = "CHORUS_RELAY_MAX_MAILBOXES", default_value_t = limits::DEFAULT_MAX_MAILBOXES_PER_LOG)]
    pub max_mailboxes: usize,
    /// Session token lifetime, in seconds.
    #[arg(long, env = "CHORUS_RELAY_SESSION_TTL_SECS", default_value_t = limits::DEFAULT_SESSION_TTL.as_secs())]
    pub session_ttl_secs: u64,
    /// Largest blob, in bytes.
    #[arg(long, env = "CHORUS_RELAY_MAX_BLOB_BYTES", default_value_t = limits::DEFAULT_MAX_BLOB_BYTES)]
    pub max_blob_bytes: usize,
    /// Blob bytes per log.
    #[arg(long, env = "CHORUS_RELAY_BLOB_QUOTA_BYTES", default_value_t = limits::DEFAULT_BLOB_QUOTA_BYTES)]
    pub blob_quota_bytes: u64,
    /// Unexpired envelope bytes per log, over all its mailboxes.
    #[arg(long, env = "CHORUS_RELAY_ENVELOPE_QUOTA_BYTES", default_value_t = limits::DEFAULT_ENVELOPE_QUOTA_BYTES)]
    pub envelope_quota_bytes: u64,
    /// Unexpired file bytes per log (files sent with messages).
    #[arg(long, env = "CHORUS_RELAY_FILE_QUOTA_BYTES", default_value_t = limits::DEFAULT_FILE_QUOTA_BYTES)]
    pub file_quota_bytes: u64,
    /// Longest a file sent with a message is kept, in seconds.
    #[arg(long, env = "CHORUS_RELAY_MAX_FILE_TTL_SECS", default_value_t = limits::DEFAULT_MAX_FILE_TTL.as_secs())]
    pub max_file_ttl_secs: u64,
    /// Stored records per log.
    #[arg(long, env = "CHORUS_RELAY_MAX_RECORDS", default_value_t = limits::DEFAULT_MAX_RECORDS_PER_LOG)]
    pub max_records: u64,
    /// Envelope posts per second per mailbox and source address (burst is 10×).
    #[arg(long, env = "CHORUS_RELAY_MAILBOX_RATE", default_value_t = limits::DEFAULT_MAILBOX_POST_RATE.per_sec)]
    pub mailbox_rate: f64,
    /// Appends per second per device (burst is 10×).
    #[arg(long, env = "CHORUS_RELAY_APPEND_RATE", default_value_t = limits::DEFAULT_APPEND_RATE.per_sec)]
    pub append_rate: f64,
    /// Prekey bundle fetches per second per address (burst is 20×).
    #[arg(long, env = "CHORUS_RELAY_PREKEY_FETCH_RATE", default_value_t = limits::DEFAULT_PREKEY_FETCH_RATE.per_sec)]
    pub prekey_fetch_rate: f64,
    /// File part fetches per second per client IP (burst is 10×).
    #[arg(long, env = "CHORUS_RELAY_FILE_FETCH_RATE", default_value_t = limits::DEFAULT_FILE_FETCH_RATE.per_sec)]
    pub file_fetch_rate: f64,
    /// Unauthenticated creations per second per client IP (burst is 10×).
    #[arg(long, env = "CHORUS_RELAY_OPEN_RATE", default_value_t = limits::DEFAULT_OPEN_RATE.per_sec)]
    pub open_rate: f64,
    /// A reverse proxy (address or CIDR range) whose `X-Forwarded-For` names the
    /// client for per-IP limits; repeatable (comma-separated in the variable).
    /// Without it the TCP peer is the client, and `X-Forwarded-For` is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "CHORUS_RELAY_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<Cidr>,
    /// Disable every rate limit (load tests only).
    #[arg(long, env = "CHORUS_RELAY_NO_RATE_LIMITS")]
    pub no_rate_limits: bool,
    /// Log format.
    #[arg(long, env = "CHORUS_RELAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn rate(per_sec: f64, burst_factor: f64) -> Rate {
    Rate {
        per_sec,
        burst: per_sec * burst_factor,
    }
}

impl ServeArgs {
    /// Defaults with the given listen address and data directory (the embedded relay).
    pub fn embedded(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let mut args = Self::parse_from(["serve"]);
        args.listen = listen;
        args.data_dir = data_dir;
        args.database = None;
        args
    }

    /// The configured limits.
    pub fn limits(&self) -> Limits {
        let l = Limits {
            mailbox_ttl: Duration::from_secs(self.mailbox_ttl_secs),
            mailbox_depth: self.mailbox_depth,
            max_mailboxes_per_log: self.max_mailboxes,
            session_ttl: Duration::from_secs(self.session_ttl_secs),
            max_blob_bytes: self.max_blob_bytes,
            blob_quota_bytes: self.blob_quota_bytes,
            envelope_quota_bytes: self.envelope_quota_bytes,
            file_quota_bytes: self.file_quota_bytes,
            max_file_ttl: Duration::from_secs(self.max_file_ttl_secs),
            max_records_per_log: self.max_records,
            mailbox_post_rate: rate(self.mailbox_rate, 10.0),
            append_rate: rate(self.append_rate, 10.0),
            prekey_fetch_rate: rate(self.prekey_fetch_rate, 20.0),
            open_rate: rate(self.open_rate, 10.0),
            file_fetch_rate: rate(self.file_fetch_rate, 10.0),
            trusted_proxies: self.trusted_proxy.clone(),
            ..Limits::default()
        };
        if self.no_rate_limits {
            l.unlimited_rates()
        } else {
            l
        }
    }

    /// Opens the configured database.
    pub async fn store(&self) -> anyhow::Result<Arc<dyn RelayStore>> {
        match &self.database {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let store = PostgresStore::connect(url, self.db_connections)
                    .await
                    .context("connecting to PostgreSQL")?;
                Ok(Arc::new(store))
            }
            Some(url) if url.starts_with("sqlite:") => {
                let store = SqliteStore::open_url(url, self.db_connections)
                    .await
                    .context("opening SQLite database")?;
                Ok(Arc::new(store))
            }
            Some(_) => anyhow::bail!("--database must be a postgres:// or sqlite: URL"),
            None => {
                std::fs::create_dir_all(&self.data_dir)
                    .with_context(|| format!("creating {}", self.data_dir.display()))?;
                let path = self.data_dir.join(SQLITE_FILE);
                let store = SqliteStore::open(&path, self.db_connections)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?;
                Ok(Arc::new(store))
            }
        }
    }
    /// Opens the store and binds the listener: after this, `crate::run` serves.
    pub async fn bind(&self) -> anyhow::Result<(TcpListener, AppState)> {
        let store = self.store().await?;
        let backend = store.backend();
        let state = AppState::new(store, Arc::new(SystemClock), self.limits())
            .await
            .context("starting relay")?;
        let listener = TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("binding {}", self.listen))?;
        tracing::info!(addr = %listener.local_addr()?, backend, "relay listening");
        Ok((listener, state))
    }

    /// Installs the tracing subscriber (stderr, `RUST_LOG` filter, default `info`).
    pub fn init_logging(&self) {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        // Colours only for a person at a terminal: a log file or a pipe gets plain text.
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
        match self.log_format {
            LogFormat::Text => logs.init(),
            LogFormat::Json => logs.json().init(),
        }
    }

    /// Serves until Ctrl-C or SIGTERM, printing `listening on ADDR` on stdout once bound
    /// (tests and scripts read it to find an ephemeral port).
    pub async fn serve(&self) -> anyhow::Result<()> {
        let (listener, state) = self.bind().await?;
        println!("listening on {}", listener.local_addr()?);
        crate::run(listener, state, async {
            shutdown_signal().await;
            tracing::info!("shutting down");
        })
        .await?;
        Ok(())
    }
}

/// Starts a relay in this process on a free loopback port, over a SQLite file in
/// `data_dir`, with rate limits off: what tests, benchmarks and examples run against.
/// Returns its URL; it serves until the runtime stops.
pub async fn spawn_loopback(data_dir: PathBuf) -> anyhow::Result<String> {
    let mut args = ServeArgs::embedded(SocketAddr::from(([127, 0, 0, 1], 0)), data_dir);
    args.no_rate_limits = true;
    let (listener, state) = args.bind().await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(crate::run(listener, state, std::future::pending()));
    Ok(url)
}

/// Ctrl-C, or SIGTERM on Unix (what service managers send).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_are_repeatable_and_checked() {
        let args = ServeArgs::parse_from(["serve", "--trusted-proxy", "10.0.0.0/8"]);
        let more = ServeArgs::parse_from(["serve", "--trusted-proxy", "10.0.0.0/8,::1"]);
        assert_eq!(args.limits().trusted_proxies.len(), 1);
        assert_eq!(more.limits().trusted_proxies.len(), 2);
        assert!(
            ServeArgs::parse_from(["serve"])
                .limits()
                .trusted_proxies
                .is_empty()
        );
        assert!(ServeArgs::try_parse_from(["serve", "--trusted-proxy", "10.0.0.0/40"]).is_err());
    }

    #[test]
    fn listen_takes_a_host_name_or_an_address() {
        let listen =
            |s: &str| ServeArgs::try_parse_from(["serve", "--listen", s]).map(|a| a.listen);
        assert_eq!(
            listen("localhost:7470").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 7470))
        );
        assert_eq!(
            listen("[::1]:0").unwrap(),
            "[::1]:0".parse::<SocketAddr>().unwrap()
        );
        for bad in ["localhost", "7470", "localhost:http2", ""] {
            assert!(listen(bad).is_err(), "{bad}");
        }
    }
}
