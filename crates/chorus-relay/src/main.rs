//! `chorus-relay`: the relay binary, thin glue over the `chorus_relay` library.
//!
//! `chorus-relay serve` with no flags listens on 127.0.0.1:7470 with a SQLite file
//! in the working directory; `--database postgres://…` switches to PostgreSQL.
//! Every flag has an environment-variable equivalent (`CHORUS_RELAY_*`), so the
//! same binary configures from a unit file or a container. Logs are structured
//! (tracing; `--log-format json` for machines) and never contain tokens or
//! payloads. Once listening it prints `listening on ADDR` on stdout, which tests
//! and scripts use to find an ephemeral port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chorus_relay::{
    AppState, Limits, PostgresStore, Rate, RelayStore, SqliteStore, SystemClock, limits,
};
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Name of the SQLite file created in the data directory.
const SQLITE_FILE: &str = "chorus-relay.sqlite";

#[derive(Parser)]
#[command(
    name = "chorus-relay",
    version,
    about = "The Chorus relay: stores and forwards ciphertext"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the relay API.
    Serve(Serve),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Parser)]
struct Serve {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CHORUS_RELAY_LISTEN", default_value_t = SocketAddr::from(([127, 0, 0, 1], chorus_relay::DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Directory for the SQLite database (ignored with a PostgreSQL --database).
    #[arg(long, env = "CHORUS_RELAY_DATA_DIR", default_value = ".")]
    data_dir: PathBuf,
    /// Database URL: postgres://… for PostgreSQL, sqlite:… for a SQLite file;
    /// unset means <data-dir>/chorus-relay.sqlite.
    #[arg(long, env = "CHORUS_RELAY_DATABASE")]
    database: Option<String>,
    /// Database connections in the pool.
    #[arg(long, env = "CHORUS_RELAY_DB_CONNECTIONS", default_value_t = 8)]
    db_connections: u32,
    /// How long mailbox envelopes are kept, in seconds.
    #[arg(long, env = "CHORUS_RELAY_MAILBOX_TTL_SECS", default_value_t = limits::DEFAULT_MAILBOX_TTL.as_secs())]
    mailbox_ttl_secs: u64,
    /// Most unexpired envelopes per mailbox.
    #[arg(long, env = "CHORUS_RELAY_MAILBOX_DEPTH", default_value_t = limits::DEFAULT_MAILBOX_DEPTH)]
    mailbox_depth: u32,
    /// Most mailboxes per log.
    #[arg(long, env = "CHORUS_RELAY_MAX_MAILBOXES", default_value_t = limits::DEFAULT_MAX_MAILBOXES_PER_LOG)]
    max_mailboxes: usize,
    /// Session token lifetime, in seconds.
    #[arg(long, env = "CHORUS_RELAY_SESSION_TTL_SECS", default_value_t = limits::DEFAULT_SESSION_TTL.as_secs())]
    session_ttl_secs: u64,
    /// Largest blob, in bytes.
    #[arg(long, env = "CHORUS_RELAY_MAX_BLOB_BYTES", default_value_t = limits::DEFAULT_MAX_BLOB_BYTES)]
    max_blob_bytes: usize,
    /// Blob bytes per log.
    #[arg(long, env = "CHORUS_RELAY_BLOB_QUOTA_BYTES", default_value_t = limits::DEFAULT_BLOB_QUOTA_BYTES)]
    blob_quota_bytes: u64,
    /// Envelope posts per second per mailbox (burst is 10×).
    #[arg(long, env = "CHORUS_RELAY_MAILBOX_RATE", default_value_t = limits::DEFAULT_MAILBOX_POST_RATE.per_sec)]
    mailbox_rate: f64,
    /// Appends per second per device (burst is 10×).
    #[arg(long, env = "CHORUS_RELAY_APPEND_RATE", default_value_t = limits::DEFAULT_APPEND_RATE.per_sec)]
    append_rate: f64,
    /// Prekey bundle fetches per second per address (burst is 20×).
    #[arg(long, env = "CHORUS_RELAY_PREKEY_FETCH_RATE", default_value_t = limits::DEFAULT_PREKEY_FETCH_RATE.per_sec)]
    prekey_fetch_rate: f64,
    /// Unauthenticated creations per second per client IP (burst is 10×).
    #[arg(long, env = "CHORUS_RELAY_OPEN_RATE", default_value_t = limits::DEFAULT_OPEN_RATE.per_sec)]
    open_rate: f64,
    /// Disable every rate limit (load tests only).
    #[arg(long, env = "CHORUS_RELAY_NO_RATE_LIMITS")]
    no_rate_limits: bool,
    /// Log format.
    #[arg(long, env = "CHORUS_RELAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn rate(per_sec: f64, burst_factor: f64) -> Rate {
    Rate {
        per_sec,
        burst: per_sec * burst_factor,
    }
}

impl Serve {
    fn limits(&self) -> Limits {
        let l = Limits {
            mailbox_ttl: Duration::from_secs(self.mailbox_ttl_secs),
            mailbox_depth: self.mailbox_depth,
            max_mailboxes_per_log: self.max_mailboxes,
            session_ttl: Duration::from_secs(self.session_ttl_secs),
            max_blob_bytes: self.max_blob_bytes,
            blob_quota_bytes: self.blob_quota_bytes,
            mailbox_post_rate: rate(self.mailbox_rate, 10.0),
            append_rate: rate(self.append_rate, 10.0),
            prekey_fetch_rate: rate(self.prekey_fetch_rate, 20.0),
            open_rate: rate(self.open_rate, 10.0),
        };
        if self.no_rate_limits {
            l.unlimited_rates()
        } else {
            l
        }
    }

    async fn store(&self) -> anyhow::Result<Arc<dyn RelayStore>> {
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Command::Serve(serve) = cli.command;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match serve.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    let store = serve.store().await?;
    let backend = store.backend();
    let state = AppState::new(store, Arc::new(SystemClock), serve.limits())
        .await
        .context("starting relay")?;
    let listener = tokio::net::TcpListener::bind(serve.listen)
        .await
        .with_context(|| format!("binding {}", serve.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, backend, "relay listening");
    println!("listening on {addr}");
    chorus_relay::run(listener, state, async {
        shutdown_signal().await;
        tracing::info!("shutting down");
    })
    .await?;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (what service managers send).
async fn shutdown_signal() {
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
