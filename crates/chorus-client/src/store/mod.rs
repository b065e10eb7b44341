//! The device's local store: one SQLite file per device home, every secret sealed.
//!
//! SQLite only ever sees ciphertext for secret values: each is sealed with
//! [`StoreKey`] (AES-256-GCM, fresh nonce) under associated data that names its row, so a
//! value copied into another row fails to open. The key comes from a key file in the home
//! (created with mode 0600, refused if group- or world-readable) or from a passphrase via
//! Argon2id (the salt lives in the store). A sealed check value tells a wrong passphrase
//! or key file apart from a corrupt row.
//!
//! Writes are single SQLite transactions in WAL mode with `synchronous=FULL`: once a save
//! returns, a `kill -9` cannot lose it, and a crash mid-save leaves the previous value.
//! `secure_delete` is on: a superseded or deleted row's bytes are zeroed in the file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use chorus_core::{Session, SessionError};
use chorus_crypto::{
    CryptoError, Entropy, EntropyRng, PASSPHRASE_SALT_LEN, StoreKey, SystemEntropy,
};
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use zeroize::Zeroizing;

pub(crate) mod body;
mod checkpoint;
pub(crate) mod contacts;
mod fold;
pub(crate) use fold::Folder;
pub(crate) mod history;
mod history_archive;
pub(crate) mod identity;
pub(crate) mod log_state;
pub(crate) mod mailboxes;
pub(crate) mod outbox;
pub(crate) mod per_device;
pub(crate) mod prekeys;
mod presence;
pub(crate) mod requests;

/// File name of the store inside a device home.
pub const STORE_FILE: &str = "chorus.sqlite";
/// Marks a device home whose link is in progress (no secrets in it: the device's keys
/// are sealed in the store).
pub const LINK_PENDING_FILE: &str = "link.pending";
/// File name of the key file inside a device home.
pub const KEY_FILE: &str = "store.key";
/// Longest contact name the store accepts.
pub const MAX_CONTACT_NAME_LEN: usize = 256;

const CHECK_AD: &[u8] = b"chorus-store/key-check/v1";
const CHECK_PLAINTEXT: &[u8] = b"chorus local store";

/// How the store key is obtained.
pub enum Unlock {
    /// A 32-byte key file in the device home, created on first use.
    KeyFile,
    /// A passphrase, stretched with Argon2id.
    Passphrase(Zeroizing<String>),
}

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key file or passphrase does not open this store.
    #[error("wrong passphrase or key file for this store")]
    WrongKey,
    /// The store was created with the other unlock method.
    #[error("this store is protected by a {expected}, not a {given}")]
    WrongUnlockMethod {
        /// How the store was created.
        expected: &'static str,
        /// What was offered.
        given: &'static str,
    },
    /// The key file is readable by other users.
    #[error("key file {path} is readable by other users (mode {mode:o}); run `chmod 600` on it")]
    InsecureKeyFile {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An empty passphrase: it would protect nothing (anyone could open the store).
    #[error("the passphrase is empty; choose one, or use a key file (leave out --passphrase)")]
    EmptyPassphrase,
    /// The store exists but its key file is gone.
    #[error("the store exists but its key file {0} is missing")]
    MissingKeyFile(PathBuf),
    /// A stored value failed to authenticate or decode: the file was modified.
    #[error("stored {0} is corrupt or was tampered with")]
    Corrupt(String),
    /// A contact name is empty or too long.
    #[error("invalid contact name: {0}")]
    InvalidContact(&'static str),
    /// A session snapshot was refused by the core.
    #[error("session state: {0}")]
    Session(#[from] SessionError),
    /// The key could not be derived.
    #[error("key derivation: {0}")]
    Crypto(#[from] CryptoError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An open, unlocked local store.
///
/// Holds the store key: `Debug` prints only the path.
pub struct Store {
    pool: SqlitePool,
    key: StoreKey,
    path: PathBuf,
    /// Draws the nonce of every sealed value.
    entropy: Arc<dyn Entropy>,
    /// Transactions committed on this store's connections (explicit or single
    /// statement), counted by SQLite's commit hook: each is a durable write (an
    /// fsync under `synchronous=FULL`), the unit the sender-cost bench counts.
    commits: Arc<std::sync::atomic::AtomicU64>,
    /// The identity as a fold just rewrote it (the root moved, or the identity
    /// rolled), for the device to take up in memory (`Device::me`).
    changed_identity: std::sync::Mutex<Option<chorus_core::LocalIdentity>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Unlock {
    fn name(&self) -> &'static str {
        match self {
            Unlock::KeyFile => "key file",
            Unlock::Passphrase(_) => "passphrase",
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `home`.
    pub async fn open(home: &Path, unlock: Unlock) -> Result<Self, StoreError> {
        Self::open_with_costs(
            home,
            unlock,
            chorus_crypto::ARGON2_MEMORY_KIB,
            chorus_crypto::ARGON2_ITERATIONS,
        )
        .await
    }

    /// As [`open`](Self::open) with explicit Argon2id costs (tests use small ones).
    pub async fn open_with_costs(
        home: &Path,
        unlock: Unlock,
        memory_kib: u32,
        iterations: u32,
    ) -> Result<Self, StoreError> {
        Self::open_with_entropy(
            home,
            unlock,
            memory_kib,
            iterations,
            Arc::new(SystemEntropy),
        )
        .await
    }

    /// As [`open_with_costs`](Self::open_with_costs), drawing the key file, the
    /// passphrase salt and every nonce from `entropy`.
    pub async fn open_with_entropy(
        home: &Path,
        unlock: Unlock,
        memory_kib: u32,
        iterations: u32,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Self, StoreError> {
        if matches!(&unlock, Unlock::Passphrase(p) if p.is_empty()) {
            return Err(StoreError::EmptyPassphrase);
        }
        create_private_dir(home)?;
        let path = home.join(STORE_FILE);
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // Deleted and superseded rows (spent session snapshots, used prekeys) are
            // overwritten with zeros, not left in free pages for whoever reads the file.
            .pragma("secure_delete", "ON")
            // Reads through a memory map (a bound, not an allocation): the fold's index
            // lookups copy from the page cache without a `pread` per database page.
            .pragma("mmap_size", "268435456")
            .pragma("wal_autocheckpoint", "8192");
        // No idle reaping or connection lifetime: a local file needs neither, and
        // sqlx 0.9.0's maintenance task can read its idle count mid-update (release
        // pushes, then counts; a concurrent pop subtracts first), wrap it, and spin a
        // runtime worker forever — seen as a CLI command hanging at 100% CPU. Without
        // both timeouts the task is never started.
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = commits.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(move |conn, _| {
                let counter = counter.clone();
                Box::pin(async move {
                    conn.lock_handle().await?.set_commit_hook(move || {
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        true // go on with the commit
                    });
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;

        let method: Option<Vec<u8>> = meta(&pool, "unlock").await?;
        let fresh = method.is_none();
        if let Some(m) = method.as_deref().filter(|m| *m != unlock.name().as_bytes()) {
            let expected = if m == b"passphrase" {
                "passphrase"
            } else {
                "key file"
            };
            return Err(StoreError::WrongUnlockMethod {
                expected,
                given: unlock.name(),
            });
        }
        let mut rng = entropy.rng();
        let key = match &unlock {
            Unlock::KeyFile => key_file(home, fresh, &mut rng)?,
            Unlock::Passphrase(p) => {
                let salt = match meta(&pool, "kdf_salt").await? {
                    Some(s) => <[u8; PASSPHRASE_SALT_LEN]>::try_from(s.as_slice())
                        .map_err(|_| StoreError::Corrupt("key derivation salt".into()))?,
                    None => {
                        let mut s = [0u8; PASSPHRASE_SALT_LEN];
                        rand_core::Rng::fill_bytes(&mut rng, &mut s);
                        s
                    }
                };
                let key =
                    StoreKey::from_passphrase_with(p.as_bytes(), &salt, memory_kib, iterations)?;
                if fresh {
                    set_meta(&pool, "kdf_salt", &salt).await?;
                }
                key
            }
        };
        if fresh {
            let check = key.seal(CHECK_AD, CHECK_PLAINTEXT, &mut rng);
            let mut tx = pool.begin().await?;
            for (k, v) in [
                ("unlock", unlock.name().as_bytes()),
                ("key_check", check.as_slice()),
            ] {
                sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
                    .bind(k)
                    .bind(v)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        } else {
            let check = meta(&pool, "key_check")
                .await?
                .ok_or_else(|| StoreError::Corrupt("key check".into()))?;
            match key.open(CHECK_AD, &check) {
                Ok(p) if p.as_slice() == CHECK_PLAINTEXT => {}
                _ => return Err(StoreError::WrongKey),
            }
        }
        Ok(Self {
            pool,
            key,
            path,
            entropy,
            commits,
            changed_identity: std::sync::Mutex::new(None),
        })
    }

    /// How many transactions this store has committed since it was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Persists a session atomically (sealed, with its generation as the high-water
    /// mark). Call it before anything the session produced leaves the device.
    pub async fn save_session(&self, contact: &str, session: &Session) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.put_session(&mut conn, contact, session).await
    }

    /// Loads a session, refusing a snapshot older than the generation last saved.
    pub async fn load_session(&self, contact: &str) -> Result<Option<Session>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        self.get_session(&mut conn, contact).await
    }

    /// [`save_session`](Self::save_session) inside a caller's transaction.
    pub(crate) async fn put_session(
        &self,
        conn: &mut SqliteConnection,
        contact: &str,
        session: &Session,
    ) -> Result<(), StoreError> {
        check_contact(contact)?;
        let snapshot = session.snapshot();
        let sealed = self.seal(
            "session",
            &row::session(contact, session.generation()),
            &snapshot,
        );
        let generation = i64::try_from(session.generation())
            .map_err(|_| StoreError::Corrupt("generation".into()))?;
        sqlx::query(
            "INSERT INTO sessions (contact, generation, sealed) VALUES ($1, $2, $3)
             ON CONFLICT(contact) DO UPDATE SET generation = excluded.generation, sealed = excluded.sealed",
        )
        .bind(contact)
        .bind(generation)
        .bind(sealed)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// [`load_session`](Self::load_session) inside a caller's transaction.
    pub(crate) async fn get_session(
        &self,
        conn: &mut SqliteConnection,
        contact: &str,
    ) -> Result<Option<Session>, StoreError> {
        check_contact(contact)?;
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT generation, sealed FROM sessions WHERE contact = $1")
                .bind(contact)
                .fetch_optional(&mut *conn)
                .await?;
        let Some((generation, sealed)) = row else {
            return Ok(None);
        };
        let known =
            u64::try_from(generation).map_err(|_| StoreError::Corrupt("generation".into()))?;
        let snapshot = self.open_sealed("session", &row::session(contact, known), &sealed)?;
        Ok(Some(Session::restore(&snapshot, known)?))
    }

    /// Keeps a session with `contact` that stopped being current as read-only since
    /// `since_ms` (`id`: the log seq that made it so), dropping the contact's oldest
    /// beyond [`MAX_STALE_SESSIONS`](chorus_core::handshakes::MAX_STALE_SESSIONS).
    pub(crate) async fn put_stale_session(
        &self,
        conn: &mut SqliteConnection,
        contact: &str,
        id: i64,
        since_ms: i64,
        session: &Session,
    ) -> Result<(), StoreError> {
        check_contact(contact)?;
        let generation = i64::try_from(session.generation())
            .map_err(|_| StoreError::Corrupt("generation".into()))?;
        let sealed = self.seal(
            "stale_session",
            &row::stale_session(id, contact, since_ms, session.generation()),
            &session.snapshot(),
        );
        sqlx::query(
            "INSERT INTO stale_sessions (id, contact, since_ms, generation, sealed)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT(id) DO UPDATE SET generation = excluded.generation, sealed = excluded.sealed",
        )
        .bind(id)
        .bind(contact)
        .bind(since_ms)
        .bind(generation)
        .bind(sealed)
        .execute(&mut *conn)
        .await?;
        let keep = i64::try_from(chorus_core::handshakes::MAX_STALE_SESSIONS).unwrap_or(i64::MAX);
        sqlx::query(
            "DELETE FROM stale_sessions WHERE contact = $1 AND id NOT IN
             (SELECT id FROM stale_sessions WHERE contact = $1 ORDER BY id DESC LIMIT $2)",
        )
        .bind(contact)
        .bind(keep)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The read-only sessions with `contact` that have not drained by `now_ms`, newest
    /// first (`(id, since_ms, session)`); drained ones are deleted here.
    pub(crate) async fn stale_sessions(
        &self,
        conn: &mut SqliteConnection,
        contact: &str,
        now_ms: i64,
    ) -> Result<Vec<(i64, i64, Session)>, StoreError> {
        check_contact(contact)?;
        let rows: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, since_ms, generation, sealed FROM stale_sessions
             WHERE contact = $1 ORDER BY id DESC",
        )
        .bind(contact)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::new();
        for (id, since_ms, generation, sealed) in rows {
            if chorus_core::handshakes::drained(since_ms, now_ms) {
                sqlx::query("DELETE FROM stale_sessions WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                continue;
            }
            let known =
                u64::try_from(generation).map_err(|_| StoreError::Corrupt("generation".into()))?;
            let snapshot = self.open_sealed(
                "stale_session",
                &row::stale_session(id, contact, since_ms, known),
                &sealed,
            )?;
            out.push((id, since_ms, Session::restore(&snapshot, known)?));
        }
        Ok(out)
    }

    /// Contacts with a stored session, in name order.
    pub async fn contacts(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT contact FROM sessions ORDER BY contact")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// A write transaction that takes SQLite's write lock at once (`BEGIN IMMEDIATE`), so
    /// that two processes on one home (say `watch` and `send`) serialise their
    /// read-modify-write of a session instead of one overwriting the other.
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Moves everything committed into the main file and empties the write-ahead log
    /// (`wal_checkpoint(TRUNCATE)`). With `secure_delete`, this is what makes
    /// superseded values (spent session snapshots, used prekeys) unrecoverable from
    /// the files: until then, older page images live on in the WAL. Best effort: a
    /// reader in another process may keep part of the log for now.
    pub async fn compact(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The connection pool, for reads.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Seals a value for the row `table/id`.
    pub(crate) fn seal(&self, table: &str, id: &str, plaintext: &[u8]) -> Vec<u8> {
        self.key
            .seal(&row_ad(table, id), plaintext, &mut self.entropy.rng())
    }

    /// Opens a value sealed for the row `table/id`; any mismatch is [`StoreError::Corrupt`].
    pub(crate) fn open_sealed(
        &self,
        table: &str,
        id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.key
            .open(&row_ad(table, id), sealed)
            .map_err(|_| StoreError::Corrupt(format!("{table} {id:?}")))
    }

    /// Removes contact `alias` (root `root`) and what is kept of them: the conversation,
    /// queued sends and envelopes, sessions, the mailbox we read for them, what is known
    /// of their identity rolls and devices. Kept: the handshakes seen from them (a
    /// replayed first message stays refused) and the identity's registers (a block
    /// outlives the removal).
    pub(crate) async fn remove_contact(
        &self,
        conn: &mut SqliteConnection,
        root: &[u8; 32],
        alias: &str,
    ) -> Result<(), StoreError> {
        for table in [
            "sessions",
            "stale_sessions",
            "messages",
            "pending_sends",
            "outbox",
            "mailboxes",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE contact = $1"
            )))
            .bind(alias)
            .execute(&mut *conn)
            .await?;
        }
        for table in [
            "contact_rolls",
            "contact_device_lists",
            "pairwise_sessions",
            "contact_dropped_devices",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE contact = $1"
            )))
            .bind(&root[..])
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query("DELETE FROM contacts WHERE name = $1")
            .bind(alias)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Renames a contact everywhere it is named, re-sealing the values bound to its
    /// alias (sessions, read-only sessions, history, queued sends) under the new one.
    pub(crate) async fn rename_contact(
        &self,
        conn: &mut SqliteConnection,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        check_contact(from)?;
        check_contact(to)?;
        if let Some(session) = self.get_session(conn, from).await? {
            sqlx::query("DELETE FROM sessions WHERE contact = $1")
                .bind(from)
                .execute(&mut *conn)
                .await?;
            self.put_session(conn, to, &session).await?;
        }
        let stale: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, since_ms, generation, sealed FROM stale_sessions WHERE contact = $1",
        )
        .bind(from)
        .fetch_all(&mut *conn)
        .await?;
        for (id, since_ms, generation, sealed) in stale {
            let known =
                u64::try_from(generation).map_err(|_| StoreError::Corrupt("generation".into()))?;
            let old = row::stale_session(id, from, since_ms, known);
            let plain = self.open_sealed("stale_session", &old, &sealed)?;
            let new = row::stale_session(id, to, since_ms, known);
            sqlx::query("UPDATE stale_sessions SET contact = $1, sealed = $2 WHERE id = $3")
                .bind(to)
                .bind(self.seal("stale_session", &new, &plain))
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        for (table, label) in [("messages", "message"), ("pending_sends", "pending_send")] {
            let outgoing = if table == "messages" { "outgoing" } else { "1" };
            let rows: Vec<(Vec<u8>, bool, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT envelope_id, {outgoing}, sealed FROM {table} WHERE contact = $1"
            )))
            .bind(from)
            .fetch_all(&mut *conn)
            .await?;
            for (id, outgoing, sealed) in rows {
                let plain = self.open_sealed(label, &row::message(&id, from, outgoing), &sealed)?;
                let resealed = self.seal(label, &row::message(&id, to, outgoing), &plain);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET contact = $1, sealed = $2 WHERE envelope_id = $3"
                )))
                .bind(to)
                .bind(resealed)
                .bind(&id)
                .execute(&mut *conn)
                .await?;
            }
        }
        for table in ["outbox", "mailboxes", "contacts"] {
            let column = if table == "contacts" {
                "name"
            } else {
                "contact"
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET {column} = $1 WHERE {column} = $2"
            )))
            .bind(to)
            .bind(from)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Where the store file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn row_ad(table: &str, id: &str) -> Vec<u8> {
    format!("chorus-store/{table}/{id}").into_bytes()
}

/// What a sealed value is bound to, beyond its table: the row's key and every plain
/// column that gives the sealed value its meaning. A disk attacker who swaps sealed
/// values between rows, or edits one of these columns (a message's contact or
/// direction, a session's generation, a prekey's kind, last-resort flag or purpose),
/// makes the value fail to open, which is reported as corruption.
///
/// What binding cannot stop: putting back a whole older row (every column and its
/// sealed value together). The session generation check catches a rolled-back
/// session only against a newer generation the device still has.
pub(crate) mod row {
    /// A session of `contact` at `generation`.
    pub(crate) fn session(contact: &str, generation: u64) -> String {
        format!("{}/{generation}", hex::encode(contact))
    }

    /// A read-only session of `contact` (made so by log seq `id` at `since_ms`).
    pub(crate) fn stale_session(id: i64, contact: &str, since_ms: i64, generation: u64) -> String {
        format!("{id}/{}/{since_ms}/{generation}", hex::encode(contact))
    }

    /// A history message (or a pending send) with `contact`, by envelope id.
    pub(crate) fn message(envelope_id: &[u8], contact: &str, outgoing: bool) -> String {
        format!(
            "{}/{}/{}",
            hex::encode(envelope_id),
            hex::encode(contact),
            u8::from(outgoing)
        )
    }

    /// A private prekey and what it may be used for.
    pub(crate) fn prekey(id: i64, kind: &str, last_resort: bool, purpose: &str) -> String {
        format!("{id}/{kind}/{}/{purpose}", u8::from(last_resort))
    }

    /// The session of the message request from `root`, at `generation`.
    pub(crate) fn request(root: &[u8; 32], generation: u64) -> String {
        format!("{}/{generation}", hex::encode(root))
    }

    /// A held message of the request `request`.
    pub(crate) fn request_message(envelope_id: &[u8], request: i64) -> String {
        format!("{}/{request}", hex::encode(envelope_id))
    }
}

fn check_contact(contact: &str) -> Result<(), StoreError> {
    if contact.is_empty() {
        return Err(StoreError::InvalidContact("empty"));
    }
    if contact.len() > MAX_CONTACT_NAME_LEN {
        return Err(StoreError::InvalidContact("longer than 256 bytes"));
    }
    Ok(())
}

async fn meta(pool: &SqlitePool, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await?)
}

async fn set_meta(pool: &SqlitePool, key: &str, value: &[u8]) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
        .bind(key)
        .bind(value)
        .execute(pool)
        .await?;
    Ok(())
}

/// Creates the home with mode 0700 if it does not exist. An existing directory keeps
/// its permissions (it may be the user's own home); the secrets in it are sealed anyway.
pub(crate) fn create_private_dir(home: &Path) -> Result<(), StoreError> {
    if home.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(home)?;
    Ok(())
}

/// Reads the key file, or creates it (mode 0600, never overwriting) for a new store.
fn key_file(home: &Path, create: bool, rng: &mut EntropyRng<'_>) -> Result<StoreKey, StoreError> {
    let path = home.join(KEY_FILE);
    if !path.exists() {
        if !create {
            return Err(StoreError::MissingKeyFile(path));
        }
        let key = StoreKey::generate(rng);
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&path)?;
        f.write_all(&key.to_key_file())?;
        f.sync_all()?;
        return Ok(key);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::InsecureKeyFile { path, mode });
        }
    }
    let bytes = Zeroizing::new(fs::read(&path)?);
    Ok(StoreKey::from_key_file(&bytes)?)
}
