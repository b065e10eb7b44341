//! `relay-bench`: append+read throughput and latency of the relay, beside the
//! storage ceiling measured in the same run on the same database.
//!
//! For each backend (SQLite always; PostgreSQL with `--postgres URL`) and each
//! client count (default 1, 8, 64) it runs two loops for `--seconds`:
//!
//! * **raw** — each client does a plain sqlx `INSERT … RETURNING id` then
//!   `SELECT` by id on the relay's own pool and database: what the database does
//!   one commit at a time, with no HTTP, JSON, auth or guards.
//! * **relay** — each client (its own log and device session) appends one
//!   128-byte record over HTTP and reads it back (`GET records?after=seq-1`).
//!
//! One operation is one write plus one read of it in both loops. Client and relay
//! share the process and the machine's cores, which handicaps the relay, not the
//! baseline. Results are printed as a Markdown table for `docs/benchmarks.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chorus_relay::api::{Id32, auth_message};
use chorus_relay::{AppState, Limits, PostgresStore, RelayStore, SqliteStore, SystemClock};
use clap::Parser;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor};

#[derive(Parser)]
#[command(about = "Relay append+read throughput and latency against a raw sqlx baseline")]
struct Args {
    /// PostgreSQL admin URL; a scratch database is created and dropped.
    #[arg(long, env = "CHORUS_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Client counts.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// Database connections in the relay's pool (also used by the raw loop).
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// PostgreSQL group-commit workers (default: the store's own choice).
    #[arg(long)]
    pg_append_workers: Option<usize>,
}

#[derive(Clone)]
enum RawPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RawPool {
    async fn op(&self, client: i64, payload: &[u8]) -> Result<()> {
        match self {
            RawPool::Sqlite(p) => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO bench_raw (client, payload) VALUES ($1, $2) RETURNING id",
                )
                .bind(client)
                .bind(payload)
                .fetch_one(p)
                .await?;
                let _: Vec<u8> = sqlx::query_scalar("SELECT payload FROM bench_raw WHERE id = $1")
                    .bind(id)
                    .fetch_one(p)
                    .await?;
            }
            RawPool::Postgres(p) => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO bench_raw (client, payload) VALUES ($1, $2) RETURNING id",
                )
                .bind(client)
                .bind(payload)
                .fetch_one(p)
                .await?;
                let _: Vec<u8> = sqlx::query_scalar("SELECT payload FROM bench_raw WHERE id = $1")
                    .bind(id)
                    .fetch_one(p)
                    .await?;
            }
        }
        Ok(())
    }
}

struct Stats {
    ops: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `op(client)` in a loop on `clients` tasks for `seconds`.
async fn drive<F, Fut>(clients: usize, seconds: f64, op: F) -> Result<Stats>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                op(c).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Stats {
        ops: all.len(),
        secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

/// One benchmark client: a log, a device and a session token.
struct Session {
    log: String,
    token: String,
}

/// A genesis of `log_id` naming `key` as the first device, signed by `key` as the
/// root too (the relay checks a genesis is its root's own).
fn genesis(key: &SigningKey, log_id: Id32) -> Result<Vec<u8>> {
    let public = key.verifying_key().to_bytes();
    let body = chorus_wire::RosterBody::Genesis {
        root: chorus_crypto::RootPublicKey::from_bytes(public)?,
        device: chorus_crypto::DevicePublicKey::from_bytes(public)?,
        device_dh: chorus_crypto::DeviceDhPublic::from_slice(&[9; 32])?,
        level: chorus_wire::SecurityLevel::SharedRoot,
        name: "bench".into(),
    };
    let entry = chorus_wire::RosterEntry::sign(log_id.0, 0, None, 0, &body, |bytes| {
        let mut m = chorus_wire::ROSTER_CONTEXT.to_vec();
        m.push(0);
        m.extend_from_slice(bytes);
        let sig = chorus_crypto::Signature::from_bytes(key.sign(&m).to_bytes());
        (public, sig)
    })?;
    Ok(entry.as_bytes().to_vec())
}

async fn setup_session(http: &reqwest::Client, base: &str, i: usize) -> Result<Session> {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed[31] = 0xbe;
    let key = SigningKey::from_bytes(&seed);
    let log_id = Id32(seed);
    let device_id = Id32(key.verifying_key().to_bytes());
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
    let r = post(
        "/v1/logs",
        json!({ "log_id": log_id, "genesis": hex::encode(genesis(&key, log_id)?), "device_id": device_id }),
    )
    .await?;
    if !r.status().is_success() {
        bail!("create log: {}", r.status());
    }
    let v: Value = post(
        "/v1/auth/challenge",
        json!({ "log_id": log_id, "device_id": device_id }),
    )
    .await?
    .json()
    .await?;
    let challenge: Id32 = v["challenge"]
        .as_str()
        .context("challenge")?
        .parse()
        .map_err(|_| anyhow::anyhow!("bad challenge"))?;
    let sig = key.sign(&auth_message(&challenge, &log_id, &device_id));
    let v: Value = post(
        "/v1/auth/session",
        json!({ "challenge": challenge, "signature": hex::encode(sig.to_bytes()) }),
    )
    .await?
    .json()
    .await?;
    Ok(Session {
        log: log_id.to_string(),
        token: v["token"].as_str().context("token")?.to_string(),
    })
}

async fn relay_op(
    http: reqwest::Client,
    base: Arc<String>,
    s: Arc<Session>,
    payload: Arc<String>,
) -> Result<()> {
    let body = json!({ "records": [{ "epoch": 1, "nonce": "000102030405060708090a0b", "ciphertext": payload.as_str() }] });
    let r = http
        .post(format!("{base}/v1/logs/{}/append", s.log))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("append: {}", r.status());
    }
    let v: Value = r.json().await?;
    let seq = v["seqs"][0].as_i64().context("seq")?;
    let r = http
        .get(format!(
            "{base}/v1/logs/{}/records?after={}&limit=1",
            s.log,
            seq - 1
        ))
        .bearer_auth(&s.token)
        .send()
        .await?;
    let v: Value = r.json().await?;
    if v["records"][0]["seq"].as_i64() != Some(seq) {
        bail!("read back failed");
    }
    Ok(())
}

async fn bench_backend(
    name: &str,
    store: Arc<dyn RelayStore>,
    raw: RawPool,
    args: &Args,
    rows: &mut Vec<String>,
) -> Result<()> {
    let limits = Limits::default().unlimited_rates();
    let state = AppState::new(store, Arc::new(SystemClock), limits).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = Arc::new(format!("http://{}", listener.local_addr()?));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(chorus_relay::run(listener, state, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let max = args.clients.iter().copied().max().unwrap_or(1);
    let mut sessions = Vec::new();
    for i in 0..max {
        sessions.push(Arc::new(setup_session(&http, &base, i).await?));
    }
    let payload = Arc::new(hex::encode([0x5au8; 128]));
    let raw_payload = Arc::new(vec![0x5au8; 128]);
    for &n in &args.clients {
        let rp = raw.clone();
        let pl = raw_payload.clone();
        let raw_stats = drive(n, args.seconds, move |c| {
            let (rp, pl) = (rp.clone(), pl.clone());
            async move { rp.op(c as i64, &pl).await }
        })
        .await?;
        let (h, b, ss, pl) = (
            http.clone(),
            base.clone(),
            sessions.clone(),
            payload.clone(),
        );
        let relay_stats = drive(n, args.seconds, move |c| {
            let s = ss.get(c).cloned();
            let (h, b, pl) = (h.clone(), b.clone(), pl.clone());
            async move { relay_op(h, b, s.context("session")?, pl).await }
        })
        .await?;
        let raw_tput = raw_stats.ops as f64 / raw_stats.secs;
        let relay_tput = relay_stats.ops as f64 / relay_stats.secs;
        for (mode, st) in [
            ("raw sqlx insert+select", &raw_stats),
            ("relay append+read (HTTP)", &relay_stats),
        ] {
            let row = format!(
                "| {name} | {mode} | {n} | {:.0} | {:.2} | {:.2} | {} |",
                st.ops as f64 / st.secs,
                st.p50_ms,
                st.p99_ms,
                if mode.starts_with("relay") {
                    format!("{:.0}%", 100.0 * relay_tput / raw_tput)
                } else {
                    "100%".into()
                }
            );
            println!("{row}");
            rows.push(row);
        }
    }
    let _ = stop.send(());
    let _ = server.await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_writer(std::io::stderr)
        .init();
    let mut rows = Vec::new();
    println!("| backend | loop | clients | ops/s | p50 ms | p99 ms | relay/raw |");
    println!("|---|---|---:|---:|---:|---:|---:|");

    // On the working directory's disk (a tmpfs /tmp would hide fsync costs).
    let dir = std::path::PathBuf::from(format!("relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("scratch dir")?;
    let sqlite = SqliteStore::open(&dir.join("bench.sqlite"), args.connections).await?;
    let raw = RawPool::Sqlite(sqlite.pool().clone());
    let result = bench_backend(
        "SQLite (WAL, synchronous=FULL)",
        Arc::new(sqlite),
        raw,
        &args,
        &mut rows,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;

    if let Some(admin) = &args.postgres {
        let name = format!("chorus_relay_bench_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        let url = match admin.rsplit_once('/') {
            Some((b, _)) => format!("{b}/{name}"),
            None => bail!("bad PostgreSQL URL"),
        };
        let result = async {
            let mut pg = PostgresStore::connect(&url, args.connections).await?;
            if let Some(w) = args.pg_append_workers {
                pg = pg.with_append_workers(w);
            }
            let raw = RawPool::Postgres(pg.pool().clone());
            bench_backend("PostgreSQL", Arc::new(pg), raw, &args, &mut rows).await
        }
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
        result?;
    } else {
        eprintln!("PostgreSQL skipped: pass --postgres URL");
    }
    Ok(())
}
