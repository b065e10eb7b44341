//! A device: the identity in the local store, driven against its relay.
//!
//! Every state change follows one rule: **persist, then act**. Sending encrypts with
//! the session, then commits — in one SQLite transaction — the advanced session, the
//! history entry and the envelope in the outbox; only then is the envelope posted. A
//! `kill -9` before the commit loses nothing the user was told was sent (they were not
//! told) and the message key was never used on the wire; a `kill -9` after it leaves the
//! envelope in the outbox, and the next run posts the *same* bytes under the *same*
//! envelope id, which the relay stores once. Receiving is symmetric: the decrypted
//! message, the advanced session and the mailbox cursor are committed together.
//!
//! Transactions are `BEGIN IMMEDIATE`, so two processes on one home (`watch` in one
//! terminal, `send` in another) never overwrite each other's session state.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chorus_core::{
    EncryptedMessage, MessageKind, Roster, SendDelta, handshakes, initiate, respond,
};
use chorus_crypto::{EpochKey, Fingerprint, SafetyNumber};
use chorus_relay_api::{EnvelopeOut, HexBytes, Id16, Id32, PublishPrekeysRequest, Push};
use chorus_wire::{
    ContactDetails, DirectoryEntry, Envelope, EventKind, FirstMessage, Hello, IdentityKeys,
    InitialMessage, Invitation, MailboxId, OneTimePrekey, Payload, PqPrekey, PrekeyBundle,
    SecretBytes, SecurityLevel, SentMessage, SignedPrekey, check_display_name, check_text,
    normalize_display_name,
};
use futures::StreamExt;
use serde::Serialize;
use sqlx::SqliteConnection;

use crate::contacts::contact_named_by;
pub use crate::event::{Event, Message};
pub use crate::handle::{Clock, Device, Options, SIBLING_DELIVERY, SystemClock};
pub(crate) use crate::handle::{LogKeys, failpoint};
use crate::identity::{Address, IdentitySecrets, Me, directory_address, local_identity};
use crate::log::{
    APPEND_ATTEMPTS, Appended, PREKEY_STREAM, Pending, seal_epoch_key, session_stream,
    stream_version,
};
use crate::prekeys::{self, Generator, LoadedPrekeys, ONE_TIME_BATCH, Purpose, REPLENISH_BELOW};
use crate::relay::{Backoff, Login, MailboxUse, RelayClient, RelayError, UrlPolicy, normalize_url};
use crate::store::row;
use crate::{ClientError, LINK_PENDING_FILE, STORE_FILE, Store, Unlock, code};

/// Envelopes read per mailbox per request while catching up.
pub const SYNC_PAGE: u32 = 100;
/// The log epoch (rotated by revocation, which comes with the revocation issue).
const EPOCH: u32 = 1;
/// How often `watch` retries a non-empty outbox.
pub const OUTBOX_RETRY: Duration = Duration::from_secs(30);
/// How often `watch` checks the directory's prekey supply and rotation schedule.
pub const PREKEY_CHECK: Duration = Duration::from_secs(3600);
/// `Delivered` events per append: the relay's batch bound.
use chorus_relay_api::limits::MAX_APPEND_BATCH;
/// Mailboxes whose outbox rows are posted at once.
pub const OUTBOX_PARALLEL: usize = 8;
/// How long an outbox row for a contact's relay waits after its first failure.
pub const OUTBOX_FIRST_DELAY: Duration = Duration::from_secs(5);
/// The longest wait between two tries of one outbox row.
pub const OUTBOX_MAX_DELAY: Duration = Duration::from_secs(3600);
/// Mailboxes per batched read: the relay's bound.
use chorus_relay_api::limits::MAX_BATCH_MAILBOXES as MAILBOXES_PER_READ;

/// A contact as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContactInfo {
    /// The local alias.
    pub name: String,
    /// Their fingerprint (the digits of their safety number half).
    pub fingerprint: String,
    /// Their home relay.
    pub relay_url: String,
    /// Whether a message from them has arrived: the conversation runs both ways (until
    /// then our messages are initial messages to their invitation or address).
    pub connected: bool,
    /// When they were added.
    pub added_ms: i64,
    /// Messages from them not yet read on any device of this identity.
    pub unread: i64,
    /// Why they can never answer, if so (their invitation had been used by someone
    /// else). Accepting a new invitation from them, or their writing to us, replaces it.
    pub failed: Option<String>,
}

/// A device of the identity, as `chorus devices` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// The name it was linked with.
    pub name: String,
    /// Its key, shortened (hex, 8 bytes).
    pub id: String,
    /// When it was added (the approving device's clock).
    pub added_ms: u64,
    /// When the relay last heard from it (kept 90 s, in memory only); `None`: not recently.
    pub last_seen_ms: Option<i64>,
    /// When it was last linked again, if it was (the approving device's clock).
    pub relinked_ms: Option<u64>,
    /// Whether it is the device running this command.
    pub this_device: bool,
}

/// What became of a sent message.
#[derive(Debug)]
pub struct SendOutcome {
    /// The envelope id.
    pub envelope_id: [u8; 16],
    /// `None`: the relay accepted it. `Some`: it is saved in the outbox and will be
    /// posted by the next `send`, `sync` or `watch`.
    pub queued: Option<RelayError>,
}

/// What `chorus status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The identity's name.
    pub name: String,
    /// `fingerprint@relay`.
    pub address: String,
    /// The home relay.
    pub relay_url: String,
    /// `None` if reachable, else why not.
    pub relay_error: Option<String>,
    /// Envelopes saved but not yet accepted by a relay.
    pub outbox: i64,
    /// Outbox rows whose last try failed: why, and when the next try is.
    pub outbox_failing: Vec<OutboxProblem>,
    /// Message requests from strangers waiting for an answer (`chorus requests`).
    pub requests: i64,
    /// Mailboxes read, with their cursors.
    pub mailboxes: Vec<MailboxStatus>,
    /// Private prekeys held.
    pub prekeys: prekeys::PrekeyCounts,
    /// One-time prekeys left in the directory (when the relay is reachable).
    pub directory_one_time: Option<i64>,
    /// `shared-root` or `primary-root`.
    pub security: &'static str,
    /// Whether this device holds the root key (every device in `shared-root`, the
    /// primary in `primary-root`): it can link devices and create invitations.
    pub holds_root: bool,
}

/// An outbox row that failed, as `chorus status` shows it.
#[derive(Debug, Serialize)]
pub struct OutboxProblem {
    /// The contact it is for.
    pub contact: String,
    /// The relay it goes to.
    pub relay_url: String,
    /// Failed tries so far.
    pub attempts: i64,
    /// The last failure.
    pub error: String,
    /// When the next try is due (a contact's relay; the home relay's rows are tried on
    /// every sync).
    pub next_attempt_ms: i64,
}

/// One mailbox's cursor.
#[derive(Debug, Serialize)]
pub struct MailboxStatus {
    /// `intro`, `invitation` or `contact`.
    pub kind: String,
    /// The contact it belongs to, if any.
    pub contact: Option<String>,
    /// Envelopes processed up to this relay seq.
    pub after_seq: i64,
}

/// Safety numbers side by side.
#[derive(Debug)]
pub struct Verification {
    /// Our fingerprint.
    pub ours: Fingerprint,
    /// Theirs.
    pub theirs: Fingerprint,
    /// The combined number both sides compare.
    pub safety_number: SafetyNumber,
}

/// `identity`: name, relay URL, log id, intro mailbox, sealed secrets.
type IdentityRow = (String, String, Vec<u8>, Vec<u8>, Vec<u8>);
/// `contacts`: name, root key, relay URL, send mailbox, receive mailbox, hello acknowledged.
type ContactTuple = (String, Vec<u8>, String, Vec<u8>, Vec<u8>, bool);
/// Why a contact whose invitation someone else had used can never answer.
const INVITATION_SPENT: &str = "their invitation had already been used by someone else";

/// `outbox`: envelope id, relay URL, mailbox, envelope, our claim on it (an invitation's).
type OutboxRow = (Vec<u8>, String, Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// What posting one queue did: the envelope ids posted, and the row that failed.
type QueueOutcome = (Vec<[u8; 16]>, Option<([u8; 16], RelayError)>);

/// One mailbox's due outbox rows, oldest first.
struct OutboxQueue {
    relay_url: String,
    mailbox: Id32,
    /// Envelope id, bytes, and our claim on the mailbox if it is an invitation's.
    rows: Vec<([u8; 16], Vec<u8>, Option<Id16>)>,
}

/// How long an outbox row waits after its `attempts`-th failure on a contact's relay:
/// [`OUTBOX_FIRST_DELAY`], doubling, at most [`OUTBOX_MAX_DELAY`].
pub fn outbox_delay(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    OUTBOX_FIRST_DELAY
        .saturating_mul(1u32 << doublings)
        .min(OUTBOX_MAX_DELAY)
}
/// `messages`: outgoing, envelope id, sent, stored, sealed text, the table it is sealed for.
type MessageRow = (bool, Vec<u8>, i64, i64, Vec<u8>, String);

/// The contact row.
pub(crate) struct ContactRow {
    #[allow(dead_code)]
    name: String,
    pub(crate) root: [u8; 32],
    relay_url: String,
    send_mailbox: Vec<u8>,
    recv_mailbox: Vec<u8>,
    hello_acked: bool,
}

fn id32(bytes: &[u8]) -> Result<Id32, ClientError> {
    <[u8; 32]>::try_from(bytes)
        .map(Id32)
        .map_err(|_| ClientError::Corrupt("mailbox id".into()))
}

impl Device {
    /// Whether `home` holds a device (a store with an identity; not a link still in
    /// progress).
    pub fn exists(home: &Path) -> bool {
        home.join(STORE_FILE).exists() && !Self::link_unfinished(home)
    }

    /// Whether `home` holds a device whose link has not finished (see [`crate::link`]).
    pub fn link_unfinished(home: &Path) -> bool {
        home.join(LINK_PENDING_FILE).exists()
    }

    /// Creates an identity with this device as its first device (`shared-root`).
    pub async fn init(
        home: &Path,
        unlock: Unlock,
        relay_url: &str,
        name: &str,
        options: Options,
    ) -> Result<Self, ClientError> {
        Self::init_with(
            home,
            unlock,
            relay_url,
            name,
            "first device",
            SecurityLevel::SharedRoot,
            options,
        )
        .await
    }

    /// Creates an identity: its log on the relay (the signed roster genesis naming this
    /// device), its epoch key, its intro mailbox, its store, and its first prekeys and
    /// profile as log events. Relay calls come first, so a refused or unreachable relay
    /// leaves no store behind; if anything fails after the store was created, it is
    /// removed.
    pub async fn init_with(
        home: &Path,
        unlock: Unlock,
        relay_url: &str,
        name: &str,
        device_name: &str,
        level: SecurityLevel,
        options: Options,
    ) -> Result<Self, ClientError> {
        let (name, device_name) = (
            &normalize_display_name(name),
            &normalize_display_name(device_name),
        );
        check_display_name("name", name)?;
        check_display_name("device name", device_name)?;
        let relay_url = normalize_url(relay_url)?;
        if Self::exists(home) {
            return Err(ClientError::AlreadyInitialized(home.to_owned()));
        }
        if Self::link_unfinished(home) {
            return Err(ClientError::LinkUnfinished(home.to_owned()));
        }
        let root = chorus_crypto::RootSigningKey::generate(&mut options.entropy.rng());
        let dh = chorus_crypto::IdentityDhSecret::generate(&mut options.entropy.rng());
        let secrets = IdentitySecrets {
            keys: IdentityKeys::sign(&root, dh.public_key()).encode(),
            root: Some(root),
            dh,
            device: chorus_crypto::DeviceSigningKey::generate(&mut options.entropy.rng()),
            device_dh: chorus_crypto::DeviceDhSecret::generate(&mut options.entropy.rng()),
        };
        let log_id = Id32(options.entropy.array());
        let intro = Id32(options.entropy.array());
        let device_id = Id32(*secrets.device.public_key().as_bytes());
        let now = options.clock.now_ms();
        let genesis = Roster::genesis(
            secrets
                .root
                .as_ref()
                .ok_or(ClientError::Corrupt("root key".into()))?,
            log_id.0,
            secrets.device.public_key(),
            secrets.device_dh.public_key(),
            level,
            device_name,
            u64::try_from(now).unwrap_or(0),
        )
        .map_err(|e| ClientError::Corrupt(format!("roster genesis: {e}")))?;
        let relay = RelayClient::new(&relay_url, options.backoff)?;
        relay
            .create_log(log_id, genesis.as_bytes().to_vec(), device_id)
            .await?;
        let epoch_key = EpochKey::generate(&mut options.entropy.rng());
        // The relay client keeps its own copy of the device key (wiped on drop).
        let login_key = IdentitySecrets::from_bytes(&secrets.to_bytes()?)?.device;
        let relay = relay.with_login(Login {
            log_id,
            device: Arc::new(login_key),
        });
        relay.register_mailbox(intro, MailboxUse::Intro).await?;
        let created = !home.exists();
        let result = async {
            let store = options.open_store(home, unlock).await?;
            let device = Self::create_store(
                store,
                home,
                &relay_url,
                name,
                log_id,
                intro,
                secrets,
                epoch_key,
                &[genesis.as_bytes().to_vec()],
                0,
                relay,
                options,
                None,
            )
            .await?;
            device
                .append(vec![
                    Pending::free(EventKind::ProfileUpdated {
                        name: name.to_owned(),
                    }),
                    Pending::free(EventKind::RelaysUpdated {
                        relays: vec![device.me.relay_url.clone()],
                    }),
                ])
                .await?;
            device.maintain_prekeys().await?;
            Ok::<_, ClientError>(device)
        }
        .await;
        if result.is_err() {
            remove_store(home, created);
        }
        result
    }

    /// Writes this device into `store` in one transaction: identity, log keys, roster,
    /// intro mailbox and, for a linked device, the checkpoint it starts from (a pending
    /// link's keys are removed in the same transaction).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn create_store(
        store: Store,
        home: &Path,
        relay_url: &str,
        name: &str,
        log_id: Id32,
        intro: Id32,
        secrets: IdentitySecrets,
        epoch_key: EpochKey,
        roster: &[Vec<u8>],
        applied_seq: i64,
        relay: RelayClient,
        options: Options,
        checkpoint: Option<&crate::link::Checkpoint>,
    ) -> Result<Self, ClientError> {
        let now = options.clock.now_ms();
        let sealed_secrets = secrets.to_bytes()?;
        let mut tx = store.begin().await?;
        sqlx::query(
            "INSERT INTO identity (id, name, relay_url, log_id, intro_mailbox, sealed, created_ms)
             VALUES (1, $1, $2, $3, $4, $5, $6)",
        )
        .bind(name)
        .bind(relay_url)
        .bind(&log_id.0[..])
        .bind(&intro.0[..])
        .bind(store.seal("identity", "1", &sealed_secrets))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO constellation (id, applied_seq, epoch, sealed) VALUES (1, $1, $2, $3)",
        )
        .bind(applied_seq)
        .bind(i64::from(EPOCH))
        .bind(seal_epoch_key(&store, &epoch_key))
        .execute(&mut *tx)
        .await?;
        for (i, entry) in roster.iter().enumerate() {
            sqlx::query("INSERT INTO roster (idx, entry) VALUES ($1, $2)")
                .bind(i64::try_from(i).unwrap_or(i64::MAX))
                .bind(entry)
                .execute(&mut *tx)
                .await?;
        }
        insert_mailbox(&mut tx, &intro.0, "intro", None, now).await?;
        if let Some(checkpoint) = checkpoint {
            checkpoint.import(&store, &mut tx).await?;
        }
        sqlx::query("DELETE FROM pending_link")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Self::assemble(
            store,
            home,
            options,
            (name.to_owned(), relay_url.to_owned(), intro),
            secrets,
            (log_id, EPOCH, epoch_key),
            relay,
        )
    }

    /// The device value from what its store holds: `identity` is (name, relay URL,
    /// intro mailbox), `log` is (log id, epoch, epoch key).
    fn assemble(
        store: Store,
        home: &Path,
        options: Options,
        identity: (String, String, Id32),
        secrets: IdentitySecrets,
        log: (Id32, u32, EpochKey),
        relay: RelayClient,
    ) -> Result<Self, ClientError> {
        let IdentitySecrets {
            root,
            keys,
            dh,
            device,
            device_dh,
        } = secrets;
        let (name, relay_url, intro_mailbox) = identity;
        let (log_id, epoch, key) = log;
        Ok(Device {
            store,
            me: Me {
                name,
                relay_url,
                intro_mailbox,
                identity: local_identity(root, &keys, dh)?,
                device_dh,
            },
            relay,
            options,
            home: home.to_owned(),
            log: LogKeys {
                log_id,
                epoch,
                key,
                device: *device.public_key().as_bytes(),
            },
            fold: Default::default(),
            lost_races: Default::default(),
        })
    }

    /// Opens an existing identity.
    pub async fn open(home: &Path, unlock: Unlock, options: Options) -> Result<Self, ClientError> {
        if Self::link_unfinished(home) {
            return Err(ClientError::LinkUnfinished(home.to_owned()));
        }
        if !Self::exists(home) {
            return Err(ClientError::NotInitialized(home.to_owned()));
        }
        let store = options.open_store(home, unlock).await?;
        let row: Option<IdentityRow> = sqlx::query_as(
            "SELECT name, relay_url, log_id, intro_mailbox, sealed FROM identity WHERE id = 1",
        )
        .fetch_optional(store.pool())
        .await?;
        let Some((name, relay_url, log_id, intro, sealed)) = row else {
            return Err(ClientError::NotInitialized(home.to_owned()));
        };
        let (epoch, sealed_key): (i64, Vec<u8>) =
            sqlx::query_as("SELECT epoch, sealed FROM constellation WHERE id = 1")
                .fetch_one(store.pool())
                .await?;
        let raw = store.open_sealed("constellation", "1", &sealed_key)?;
        let raw: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::Corrupt("epoch key".into()))?;
        let epoch_key = EpochKey::from_bytes(&raw);
        let plain = store.open_sealed("identity", "1", &sealed)?;
        let log_id = id32(&log_id)?;
        // The relay client keeps its own copy of the device key (wiped on drop).
        let relay = RelayClient::new(&relay_url, options.backoff)?.with_login(Login {
            log_id,
            device: Arc::new(IdentitySecrets::from_bytes(&plain)?.device),
        });
        let epoch = u32::try_from(epoch).map_err(|_| ClientError::Corrupt("epoch".into()))?;
        Self::assemble(
            store,
            home,
            options,
            (name, relay_url, id32(&intro)?),
            IdentitySecrets::from_bytes(&plain)?,
            (log_id, epoch, epoch_key),
            relay,
        )
    }

    /// The identity's display name.
    pub fn name(&self) -> &str {
        &self.me.name
    }

    /// The identity's fingerprint (its half of every safety number).
    pub fn fingerprint(&self) -> Fingerprint {
        self.me.fingerprint()
    }

    /// `fingerprint@relay`, for `chorus contact add`.
    pub fn address(&self) -> String {
        self.me.address()
    }

    /// The home relay.
    pub fn relay_url(&self) -> &str {
        &self.me.relay_url
    }

    /// The home relay's client, logged in as this device (for tools and tests).
    pub fn relay(&self) -> &RelayClient {
        &self.relay
    }

    /// How many sends by this process lost the race to a sibling and were encrypted
    /// again on the winner's state (diagnostics, tests and benchmarks).
    pub fn lost_races(&self) -> u64 {
        self.lost_races.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The device home.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Which relays others may point this device at.
    pub(crate) fn url_policy(&self) -> UrlPolicy {
        if self.options.allow_private_relays {
            UrlPolicy::PERMISSIVE
        } else {
            UrlPolicy::for_home(&self.me.relay_url)
        }
    }

    pub(crate) fn now(&self) -> i64 {
        self.options.clock.now_ms()
    }

    // ------------------------------------------------------------------ prekeys

    /// Keeps the directory supplied: rotates the signed and last-resort prekeys when
    /// due, replenishes one-time prekeys below [`REPLENISH_BELOW`], republishes the
    /// directory entry, and deletes replaced keys past their grace period. New private
    /// halves go into the log (guarded on the prekey stream, so two devices never mint
    /// the same ids) and are folded before any public half is published.
    ///
    /// In `primary-root` only the primary device (the root's holder) mints and
    /// publishes; on the others this does nothing.
    pub async fn maintain_prekeys(&self) -> Result<(), ClientError> {
        let Some(root) = self.me.identity.root() else {
            return Ok(());
        };
        let address = self.me.directory_address();
        let remote = match self.relay.prekey_count(address).await {
            Ok(c) => Some(c),
            Err(e) if e.code() == Some("not_found") => None,
            Err(e) => return Err(e.into()),
        };
        let mut request = PublishPrekeysRequest::default();
        self.sync_log().await?;
        for _ in 0..APPEND_ATTEMPTS {
            request = PublishPrekeysRequest::default();
            let now = self.now();
            let mut conn = self.store.pool().acquire().await?;
            let rotate = match prekeys::current_signed(&mut conn).await? {
                None => true,
                Some((_, created)) => prekeys::rotation_due(created, now),
            };
            let mut keys =
                Generator::new(&mut conn, root, &*self.options.entropy, Purpose::Directory).await?;
            drop(conn);
            if rotate {
                keys.signed()?;
                keys.pq(true)?;
            }
            if remote.as_ref().is_none_or(|c| c.one_time < REPLENISH_BELOW) {
                for _ in 0..ONE_TIME_BATCH {
                    request.one_time.push(HexBytes(keys.one_time()?.encode()));
                }
            }
            if remote
                .as_ref()
                .is_none_or(|c| c.one_time_pq < REPLENISH_BELOW)
            {
                for _ in 0..ONE_TIME_BATCH {
                    request.one_time_pq.push(HexBytes(keys.pq(false)?.encode()));
                }
            }
            let events: Vec<Pending> = keys
                .into_events(None)
                .into_iter()
                .map(|k| Pending::guarded(k, PREKEY_STREAM.to_vec(), None))
                .collect();
            if events.is_empty() || self.append(events).await?.0 == Appended::Done {
                break;
            }
            request = PublishPrekeysRequest::default();
        }
        let mut tx = self.store.begin().await?;
        let (signed, last_resort) = prekeys::current_directory_keys(&mut tx).await?;
        let signed = signed.ok_or_else(|| ClientError::Corrupt("no signed prekey".into()))?;
        let entry = DirectoryEntry {
            identity: self.me.identity.keys().clone(),
            signed_prekey: SignedPrekey::decode(&signed, &self.me.identity.keys().root)?,
            intro_mailbox: MailboxId(self.me.intro_mailbox.0),
        };
        request.signed_prekey = Some(HexBytes(entry.encode()));
        request.pq_last_resort = last_resort.map(HexBytes);
        prekeys::purge_retired(&mut tx, self.now()).await?;
        tx.commit().await?;
        self.relay.publish_prekeys(address, &request).await?;
        Ok(())
    }

    // ------------------------------------------------------------------ contacts

    /// Creates an invitation code: the identity's keys, the current signed prekey, a
    /// fresh one-time X25519 and ML-KEM prekey, and a fresh one-time mailbox for the
    /// answer. The private halves and the mailbox are in the log before the code exists,
    /// so any device of the identity can answer.
    pub async fn invite(&self) -> Result<String, ClientError> {
        let root = self.me.identity.root().ok_or(ClientError::NotPrimary(
            "create invitations (prekeys are root-signed)",
        ))?;
        let mailbox = Id32(self.random());
        self.relay
            .register_mailbox(mailbox, MailboxUse::Invitation)
            .await?;
        self.sync_log().await?;
        for _ in 0..APPEND_ATTEMPTS {
            let mut conn = self.store.pool().acquire().await?;
            let (signed, _) = prekeys::current_directory_keys(&mut conn).await?;
            let signed = signed.ok_or_else(|| ClientError::Corrupt("no signed prekey".into()))?;
            let mut keys =
                Generator::new(&mut conn, root, &*self.options.entropy, Purpose::Invitation)
                    .await?;
            drop(conn);
            let bundle = PrekeyBundle {
                identity: self.me.identity.keys().clone(),
                signed_prekey: SignedPrekey::decode(&signed, &self.me.identity.keys().root)?,
                one_time_prekey: Some(keys.one_time()?),
                pq_prekey: keys.pq(false)?,
            };
            let events = keys
                .into_events(Some(mailbox.0))
                .into_iter()
                .map(|k| Pending::guarded(k, PREKEY_STREAM.to_vec(), None))
                .collect();
            if self.append(events).await?.0 == Appended::Done {
                return Ok(code::encode(&Invitation {
                    bundle,
                    relay_url: self.me.relay_url.clone(),
                    mailbox: MailboxId(mailbox.0),
                    name: Some(self.me.name.clone()),
                }));
            }
        }
        Err(ClientError::Contended)
    }

    /// Accepts an invitation code: starts the session and sends our hello (our mailbox
    /// for them) to the invitation's mailbox. Returns the contact's alias.
    pub async fn accept(
        &self,
        code_text: &str,
        alias: Option<&str>,
    ) -> Result<(String, SendOutcome), ClientError> {
        let invitation = code::decode(code_text)?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT name FROM contacts WHERE invitation = $1")
                .bind(&invitation.mailbox.0[..])
                .fetch_optional(self.store.pool())
                .await?;
        if let Some(contact) = existing {
            return Err(ClientError::AlreadyAccepted { contact });
        }
        let relay_url = self.url_policy().check(&invitation.relay_url)?;
        let suggested = invitation.name.clone();
        let (contact, outcome) = self
            .establish(
                &invitation.bundle,
                alias.map(str::to_owned).or(suggested),
                relay_url,
                invitation.mailbox,
                Some(invitation.mailbox),
            )
            .await?;
        let failed: Option<String> =
            sqlx::query_scalar("SELECT failed FROM contacts WHERE name = $1")
                .bind(&contact)
                .fetch_optional(self.store.pool())
                .await?
                .flatten();
        match failed {
            Some(_) => Err(ClientError::InvitationSpent { contact }),
            None => Ok((contact, outcome)),
        }
    }

    /// Adds a contact by address (`fingerprint@relay`) through the relay's prekey
    /// directory, and sends our hello to their intro mailbox.
    pub async fn add_contact(
        &self,
        address: &str,
        alias: Option<&str>,
    ) -> Result<(String, SendOutcome), ClientError> {
        let intro = Introduction::fetch(address, self.options.backoff, self.url_policy()).await?;
        let fallback = format!("contact-{}", &intro.address.digits[..5]);
        self.establish(
            &intro.bundle,
            Some(alias.map_or(fallback, str::to_owned)),
            intro.address.relay_url,
            intro.mailbox,
            None,
        )
        .await
    }

    pub(crate) async fn establish(
        &self,
        bundle: &PrekeyBundle,
        alias: Option<String>,
        relay_url: String,
        send_mailbox: MailboxId,
        invitation: Option<MailboxId>,
    ) -> Result<(String, SendOutcome), ClientError> {
        if bundle.identity.root == self.me.identity.keys().root {
            return Err(ClientError::OwnIdentity);
        }
        let root = *bundle.identity.root.as_bytes();
        let known = contact_named_by(self.store.pool(), &root).await?;
        if let Some(name) = known {
            // A contact who never answered (or never can: their invitation had been
            // used) does not block a new introduction: its session is replaced.
            let stale: Option<(bool, Option<String>)> =
                sqlx::query_as("SELECT answered, failed FROM contacts WHERE name = $1")
                    .bind(&name)
                    .fetch_optional(self.store.pool())
                    .await?;
            return match stale {
                Some((false, _) | (_, Some(_))) => {
                    let mut conn = self.store.pool().acquire().await?;
                    let tag = self.log.key.stream_tag(&session_stream(&root));
                    let at = stream_version(&mut conn, &tag).await?;
                    drop(conn);
                    self.start_session(bundle, name, relay_url, send_mailbox, invitation, at)
                        .await
                }
                _ => Err(ClientError::AlreadyContact { contact: name }),
            };
        }
        let alias = alias.map_or_else(
            || {
                format!(
                    "contact-{}",
                    &Fingerprint::of(&bundle.identity.root).digits()[..5]
                )
            },
            |a| normalize_display_name(&a),
        );
        check_display_name("contact name", &alias)?;
        if self.contact_row(self.store.pool(), &alias).await?.is_some() {
            return Err(ClientError::ContactNameTaken(alias));
        }
        self.start_session(bundle, alias, relay_url, send_mailbox, invitation, 0)
            .await
    }

    /// Initiates a session with `bundle`'s identity and sends our hello on it: a new
    /// contact `alias` (`at` 0), or a replacement of the session of the known
    /// contact `alias` (`at`: its session stream's version).
    async fn start_session(
        &self,
        bundle: &PrekeyBundle,
        alias: String,
        relay_url: String,
        send_mailbox: MailboxId,
        invitation: Option<MailboxId>,
        at: i64,
    ) -> Result<(String, SendOutcome), ClientError> {
        let mut session = initiate(&self.me.identity, bundle, &mut self.rng())?;
        let snapshot = session.snapshot();
        let recv = Id32(self.random());
        self.relay
            .register_mailbox(recv, MailboxUse::Contact)
            .await?;
        let now = self.now();
        let payload = Payload {
            sent_ms: u64::try_from(now).unwrap_or(0),
            text: String::new(),
            hello: Some(self.hello(&recv.0)),
        }
        .encode()?;
        let (message, delta) = session.encrypt_escrowed(&payload, &mut self.rng())?;
        let envelope_id: [u8; 16] = self.random();
        let root = *bundle.identity.root.as_bytes();
        let stream = session_stream(&root);
        let created = EventKind::ContactUpserted {
            contact: root,
            name: alias.clone(),
            details: Some(Box::new(ContactDetails {
                identity: bundle.identity.clone(),
                relay_url: relay_url.clone(),
                send_mailbox: send_mailbox.0,
                recv_mailbox: recv.0,
                invitation: invitation.map(|m| m.0),
                session: SecretBytes::new(snapshot.to_vec()),
                first: None,
                consumed_prekeys: Vec::new(),
                added_ms: u64::try_from(now).unwrap_or(0),
                read_only: false,
            })),
        };
        let sent = sent_event(
            root,
            envelope_id,
            &relay_url,
            send_mailbox.0,
            &message,
            now,
            "",
            &delta,
        );
        let (outcome, _) = self
            .append(vec![
                Pending::guarded(created, stream.clone(), Some(at)),
                Pending::guarded(sent, stream, Some(at + 1)),
            ])
            .await?;
        let folded = contact_named_by(self.store.pool(), &root).await?;
        let alias = match (outcome, folded) {
            (Appended::Done, Some(name)) => name,
            (_, Some(contact)) => return Err(ClientError::AlreadyContact { contact }),
            (_, None) => return Err(ClientError::Contended),
        };
        let queued = self.flush_one(&envelope_id).await;
        Ok((
            alias,
            SendOutcome {
                envelope_id,
                queued,
            },
        ))
    }

    /// Our hello for a contact: where to write to us.
    fn hello(&self, recv_mailbox: &[u8; 32]) -> Hello {
        Hello {
            relay_url: self.me.relay_url.clone(),
            mailbox: MailboxId(*recv_mailbox),
            name: self.me.name.clone(),
        }
    }

    /// The contact a name given by the user means: the alias itself, or else the one
    /// alias equal to it ignoring case (`bob` finds "Bob"). Several such aliases are
    /// [`ClientError::AmbiguousContact`], none is [`ClientError::UnknownContact`].
    pub async fn resolve_contact(&self, given: &str) -> Result<String, ClientError> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM contacts ORDER BY name")
            .fetch_all(self.store.pool())
            .await?;
        if names.iter().any(|n| n == given) {
            return Ok(given.to_owned());
        }
        let wanted = normalize_display_name(given).to_lowercase();
        let mut candidates: Vec<String> = names
            .into_iter()
            .filter(|n| n.to_lowercase() == wanted)
            .collect();
        match candidates.len() {
            0 => Err(ClientError::UnknownContact(given.to_owned())),
            1 => Ok(candidates.remove(0)),
            _ => Err(ClientError::AmbiguousContact {
                given: given.to_owned(),
                candidates,
            }),
        }
    }

    /// The contacts, by name.
    pub async fn contacts(&self) -> Result<Vec<ContactInfo>, ClientError> {
        type Row = (String, Vec<u8>, String, bool, i64, i64, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT c.name, c.identity, c.relay_url, c.answered, c.added_ms,
                    (SELECT COUNT(*) FROM messages m
                     WHERE m.contact = c.name AND m.outgoing = 0 AND m.sent_ms > c.read_up_to),
                    c.failed
             FROM contacts c ORDER BY c.name",
        )
        .fetch_all(self.store.pool())
        .await?;
        rows.into_iter()
            .map(
                |(name, identity, relay_url, connected, added_ms, unread, failed)| {
                    let keys = IdentityKeys::decode(&identity)?;
                    Ok(ContactInfo {
                        name,
                        fingerprint: Fingerprint::of(&keys.root).to_string(),
                        relay_url,
                        connected,
                        added_ms,
                        unread,
                        failed,
                    })
                },
            )
            .collect()
    }

    /// Marks every message from `contact` received so far as read — on every device of
    /// the identity (a `Read` event in the log; the marker only moves forward).
    pub async fn mark_read(&self, contact: &str) -> Result<(), ClientError> {
        let contact = &self.resolve_contact(contact).await?;
        let row: Option<(Vec<u8>, i64, Option<i64>)> = sqlx::query_as(
            "SELECT c.root_key, c.read_up_to,
                    (SELECT MAX(sent_ms) FROM messages m WHERE m.contact = c.name AND m.outgoing = 0)
             FROM contacts c WHERE c.name = $1",
        )
        .bind(contact)
        .fetch_optional(self.store.pool())
        .await?;
        let (root, read, newest) =
            row.ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?;
        let Some(newest) = newest.filter(|n| *n > read) else {
            return Ok(());
        };
        let contact: [u8; 32] = root
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::Corrupt("contact key".into()))?;
        self.append(vec![Pending::free(EventKind::Read {
            contact,
            up_to: u64::try_from(newest).unwrap_or(0),
        })])
        .await?;
        Ok(())
    }

    /// Safety numbers for a contact.
    pub async fn verify(&self, contact: &str) -> Result<Verification, ClientError> {
        let contact = &self.resolve_contact(contact).await?;
        let identity: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT identity FROM contacts WHERE name = $1")
                .bind(contact)
                .fetch_optional(self.store.pool())
                .await?;
        let identity = identity.ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?;
        let theirs = IdentityKeys::decode(&identity)?;
        let ours = &self.me.identity.keys().root;
        Ok(Verification {
            ours: Fingerprint::of(ours),
            theirs: Fingerprint::of(&theirs.root),
            safety_number: SafetyNumber::new(ours, &theirs.root),
        })
    }

    pub(crate) async fn contact_row<'e, E: sqlx::SqliteExecutor<'e>>(
        &self,
        executor: E,
        name: &str,
    ) -> Result<Option<ContactRow>, ClientError> {
        let row: Option<ContactTuple> = sqlx::query_as(
            "SELECT name, root_key, relay_url, send_mailbox, recv_mailbox, hello_acked FROM contacts WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(executor)
        .await?;
        row.map(
            |(name, root, relay_url, send_mailbox, recv_mailbox, hello_acked)| {
                Ok(ContactRow {
                    name,
                    root: root
                        .as_slice()
                        .try_into()
                        .map_err(|_| ClientError::Corrupt("contact key".into()))?,
                    relay_url,
                    send_mailbox,
                    recv_mailbox,
                    hello_acked,
                })
            },
        )
        .transpose()
    }

    // ------------------------------------------------------------------ sending

    /// Sends a text message. The text is kept (sealed) as a pending send first; it is
    /// encrypted only inside the sequenced append of its `Sent` event (DESIGN §6), then
    /// posted. If the home relay is unreachable the message waits, unencrypted by any
    /// ratchet key, and the next `send`, `sync` or `watch` sends it.
    pub async fn send(&self, contact: &str, text: &str) -> Result<SendOutcome, ClientError> {
        let contact = &self.resolve_contact(contact).await?;
        check_text(text)?;
        if text.is_empty() {
            return Err(ClientError::EmptyMessage);
        }
        if self
            .contact_row(self.store.pool(), contact)
            .await?
            .is_none()
        {
            return Err(ClientError::UnknownContact(contact.to_owned()));
        }
        let envelope_id: [u8; 16] = self.random();
        sqlx::query(
            "INSERT INTO pending_sends (envelope_id, contact, sealed, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&envelope_id[..])
        .bind(contact)
        .bind(self.store.seal(
            "pending_send",
            &row::message(&envelope_id, contact, true),
            text.as_bytes(),
        ))
        .bind(self.now())
        .execute(self.store.pool())
        .await?;
        let queued = self.flush_one(&envelope_id).await;
        Ok(SendOutcome {
            envelope_id,
            queued,
        })
    }

    /// Appends a `Sent` event for every pending send, oldest first.
    async fn send_pending(&self) -> Result<(), ClientError> {
        let pending: Vec<(Vec<u8>, String, Vec<u8>)> = sqlx::query_as(
            "SELECT envelope_id, contact, sealed FROM pending_sends ORDER BY created_ms, rowid",
        )
        .fetch_all(self.store.pool())
        .await?;
        for (id, contact, sealed) in pending {
            let envelope_id = <[u8; 16]>::try_from(id.as_slice())
                .map_err(|_| ClientError::Corrupt("pending send id".into()))?;
            let text = self.store.open_sealed(
                "pending_send",
                &row::message(&envelope_id, &contact, true),
                &sealed,
            )?;
            let text = String::from_utf8(text.to_vec())
                .map_err(|_| ClientError::Corrupt("pending send".into()))?;
            self.send_sequenced(&contact, envelope_id, &text).await?;
        }
        Ok(())
    }

    /// The sequenced send: encrypt on the session as folded at version `v`, append
    /// `Sent` guarded on `(session, v)`; if a sibling appended first, fold its send and
    /// encrypt again on top of it (the losing ciphertext is never used).
    async fn send_sequenced(
        &self,
        contact: &str,
        envelope_id: [u8; 16],
        text: &str,
    ) -> Result<(), ClientError> {
        for _ in 0..APPEND_ATTEMPTS {
            let mut tx = self.store.begin().await?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM messages WHERE envelope_id = $1")
                    .bind(&envelope_id[..])
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                return Ok(());
            }
            let row = self
                .contact_row(&mut *tx, contact)
                .await?
                .ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?;
            let stream = session_stream(&row.root);
            let version = stream_version(&mut tx, &self.log.key.stream_tag(&stream)).await?;
            let mut session = self
                .store
                .get_session(&mut tx, contact)
                .await?
                .ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?;
            // Nothing of this transaction is kept: the state moves only by the fold.
            drop(tx);
            let sent = self.encrypt_sent(&row, &mut session, envelope_id, text)?;
            if self
                .append(vec![Pending::guarded(sent, stream, Some(version))])
                .await?
                .0
                == Appended::Done
            {
                failpoint("after-persist");
                return Ok(());
            }
            self.lost_races
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!("a sibling sent first; encrypting again on its state");
        }
        Err(ClientError::Contended)
    }

    /// Encrypts `text` on `session` (which moves on by one send) into the `Sent` event
    /// that escrows it: transcript, ratchet delta and the exact envelope.
    pub(crate) fn encrypt_sent(
        &self,
        row: &ContactRow,
        session: &mut chorus_core::Session,
        envelope_id: [u8; 16],
        text: &str,
    ) -> Result<EventKind, ClientError> {
        let now = self.now();
        let mailbox = |m: &[u8]| {
            <[u8; 32]>::try_from(m).map_err(|_| ClientError::Corrupt("mailbox id".into()))
        };
        let recv = mailbox(&row.recv_mailbox)?;
        let payload = Payload {
            sent_ms: u64::try_from(now).unwrap_or(0),
            text: text.to_owned(),
            hello: (!row.hello_acked).then(|| self.hello(&recv)),
        }
        .encode()?;
        let (message, delta) = session.encrypt_escrowed(&payload, &mut self.rng())?;
        Ok(sent_event(
            row.root,
            envelope_id,
            &row.relay_url,
            mailbox(&row.send_mailbox)?,
            &message,
            now,
            text,
            &delta,
        ))
    }

    /// Adds a history entry unless one with this envelope id exists; returns whether it
    /// was added.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_message(
        &self,
        tx: &mut SqliteConnection,
        contact: &str,
        outgoing: bool,
        envelope_id: &[u8],
        text: &str,
        sent_ms: i64,
        stored_ms: i64,
        position: i64,
    ) -> Result<bool, ClientError> {
        let id = row::message(envelope_id, contact, outgoing);
        let done = sqlx::query(
            "INSERT OR IGNORE INTO messages (contact, outgoing, envelope_id, sent_ms, stored_ms, sealed, position)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(contact)
        .bind(outgoing)
        .bind(envelope_id)
        .bind(sent_ms)
        .bind(stored_ms)
        .bind(self.store.seal("message", &id, text.as_bytes()))
        .bind(position)
        .execute(&mut *tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Registers at the home relay the mailboxes created for new contacts while
    /// receiving (no network call runs inside a transaction). A mailbox the relay
    /// refuses stays unregistered and is tried again next time; it never stops the
    /// others (or the outbox).
    async fn register_pending(&self) -> Result<Vec<RelayError>, ClientError> {
        let pending: Vec<(Vec<u8>, String)> =
            sqlx::query_as("SELECT mailbox_id, kind FROM mailboxes WHERE registered = 0")
                .fetch_all(self.store.pool())
                .await?;
        let mut errors = Vec::new();
        for (m, kind) in pending {
            match self
                .relay
                .register_mailbox(id32(&m)?, MailboxUse::from_kind(&kind))
                .await
            {
                Ok(_) => {
                    sqlx::query("UPDATE mailboxes SET registered = 1 WHERE mailbox_id = $1")
                        .bind(&m)
                        .execute(self.store.pool())
                        .await?;
                }
                Err(e @ RelayError::Unreachable { .. }) => {
                    errors.push(e);
                    break;
                }
                Err(e) => errors.push(e),
            }
        }
        Ok(errors)
    }

    /// Posts the outbox, oldest first (so earlier queued messages keep their order),
    /// and reports whether `envelope_id` is now with the relay (`None`) or still queued.
    async fn flush_one(&self, envelope_id: &[u8; 16]) -> Option<RelayError> {
        let mut errors = match self.flush_outbox().await {
            Ok(errors) => errors,
            Err(e) => vec![RelayError::BadResponse {
                url: self.me.relay_url.clone(),
                reason: e.to_string(),
            }],
        };
        let still_queued: Result<Option<i64>, _> = sqlx::query_scalar(
            "SELECT 1 FROM outbox WHERE envelope_id = $1
             UNION ALL SELECT 1 FROM pending_sends WHERE envelope_id = $1",
        )
        .bind(&envelope_id[..])
        .fetch_optional(self.store.pool())
        .await;
        match still_queued {
            Ok(None) => None,
            _ => Some(errors.pop().unwrap_or_else(|| RelayError::BadResponse {
                url: self.me.relay_url.clone(),
                reason: "the envelope is still queued".into(),
            })),
        }
    }

    /// Sends what is pending, then posts the outbox: every envelope this device
    /// appended, and a sibling's once it has waited [`Options::sibling_delivery`] (the
    /// sibling may have died after its `Sent` append). Each posted envelope gets a
    /// `Delivered` event, which removes it from every device's outbox. Posting is
    /// idempotent by envelope id, so two devices delivering one envelope deliver it
    /// once.
    ///
    /// One mailbox's envelopes go in order, one at a time; different mailboxes go at
    /// once, up to [`OUTBOX_PARALLEL`], so a slow or dead relay holds up only its own
    /// rows. A row that fails on a contact's relay waits before its next try
    /// ([`outbox_delay`], doubling up to [`OUTBOX_MAX_DELAY`]); rows for the home relay
    /// are tried on every flush (it is the relay every command needs anyway). The
    /// errors are returned and kept with their rows for `chorus status`.
    pub async fn flush_outbox(&self) -> Result<Vec<RelayError>, ClientError> {
        let relay_errors = |e: ClientError| match e {
            ClientError::Relay(e) => Ok(vec![e]),
            other => Err(other),
        };
        if let Err(e) = self.sync_log().await {
            return relay_errors(e);
        }
        if let Err(e) = self.send_pending().await {
            return relay_errors(e);
        }
        // A queued hello may name a mailbox not yet registered: register first.
        let mut errors = self.register_pending().await?;
        let now = self.now();
        let patience = i64::try_from(self.options.sibling_delivery.as_millis()).unwrap_or(i64::MAX);
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT o.envelope_id, o.relay_url, o.mailbox_id, o.envelope, c.invitation_claim
             FROM outbox o LEFT JOIN contacts c ON c.name = o.contact AND c.invitation = o.mailbox_id
             WHERE (o.author IS NULL OR o.author = $1 OR o.created_ms <= $2)
               AND (o.next_attempt_ms <= $3 OR o.relay_url = $4)
             ORDER BY o.created_ms, o.rowid",
        )
        .bind(&self.log.device[..])
        .bind(now.saturating_sub(patience))
        .bind(now)
        .bind(&self.me.relay_url)
        .fetch_all(self.store.pool())
        .await?;
        // One queue per mailbox, in first-seen order.
        let mut queues: Vec<OutboxQueue> = Vec::new();
        for (envelope_id, relay_url, mailbox, envelope, claim) in rows {
            let id = <[u8; 16]>::try_from(envelope_id.as_slice())
                .map_err(|_| ClientError::Corrupt("envelope id".into()))?;
            let claim = claim
                .map(|c| <[u8; 16]>::try_from(c.as_slice()).map(Id16))
                .transpose()
                .map_err(|_| ClientError::Corrupt("invitation claim".into()))?;
            let mailbox = id32(&mailbox)?;
            let row = (id, envelope, claim);
            match queues
                .iter_mut()
                .find(|q| q.mailbox == mailbox && q.relay_url == relay_url)
            {
                Some(q) => q.rows.push(row),
                None => queues.push(OutboxQueue {
                    relay_url,
                    mailbox,
                    rows: vec![row],
                }),
            }
        }
        let results: Vec<QueueOutcome> =
            futures::stream::iter(queues.into_iter().map(|q| self.post_queue(q)))
                .buffer_unordered(OUTBOX_PARALLEL)
                .collect()
                .await;
        let mut delivered = Vec::new();
        for (posted, failed) in results {
            delivered.extend(posted);
            if let Some((id, e)) = failed {
                // Someone else answered this invitation first: nothing queued for it
                // can ever arrive, and the contact can never answer.
                if e.code() == Some("mailbox_spent") && self.invitation_spent(&id).await? {
                    errors.push(e);
                    continue;
                }
                let attempts: i64 = sqlx::query_scalar(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2
                     WHERE envelope_id = $1 RETURNING attempts",
                )
                .bind(&id[..])
                .bind(e.to_string())
                .fetch_optional(self.store.pool())
                .await?
                .unwrap_or(0);
                let delay = i64::try_from(outbox_delay(attempts).as_millis()).unwrap_or(i64::MAX);
                sqlx::query("UPDATE outbox SET next_attempt_ms = $2 WHERE envelope_id = $1")
                    .bind(&id[..])
                    .bind(now.saturating_add(delay))
                    .execute(self.store.pool())
                    .await?;
                errors.push(e);
            }
        }
        for chunk in delivered.chunks(MAX_APPEND_BATCH) {
            let events = chunk
                .iter()
                .map(|id| Pending::free(EventKind::Delivered { envelope_id: *id }))
                .collect();
            if let Err(e) = self.append(events).await {
                // Posted but not yet marked: the next flush posts the same bytes again,
                // which the relay stores once, and marks them.
                errors.extend(relay_errors(e)?);
            }
        }
        Ok(errors)
    }

    /// The invitation `envelope_id` was posted to had been used by someone else: the
    /// contact is marked failed, and what was queued for that mailbox is dropped.
    /// False (nothing changed) unless the mailbox is the contact's invitation.
    async fn invitation_spent(&self, envelope_id: &[u8; 16]) -> Result<bool, ClientError> {
        let mut tx = self.store.begin().await?;
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as("SELECT contact, mailbox_id FROM outbox WHERE envelope_id = $1")
                .bind(&envelope_id[..])
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((contact, mailbox)) = row {
            let marked =
                sqlx::query("UPDATE contacts SET failed = $1 WHERE name = $2 AND invitation = $3")
                    .bind(INVITATION_SPENT)
                    .bind(&contact)
                    .bind(&mailbox)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            // Only an invitation's mailbox is single-use: any other relay saying so
            // is wrong, and the rows stay to be retried.
            if marked == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM outbox WHERE contact = $1 AND mailbox_id = $2")
                .bind(&contact)
                .bind(&mailbox)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Posts one mailbox's queue in order, stopping at the first failure (the rows
    /// behind it keep their order). Returns what was posted and the failure.
    async fn post_queue(&self, queue: OutboxQueue) -> QueueOutcome {
        let mut posted = Vec::new();
        let client = if queue.relay_url == self.me.relay_url {
            Ok(self.relay.clone())
        } else {
            // The row's own backoff does the retrying: one try per flush.
            let once = Backoff {
                attempts: 1,
                ..self.options.backoff
            };
            RelayClient::foreign(&queue.relay_url, once, self.url_policy())
        };
        for (id, envelope, claim) in queue.rows {
            let result = match &client {
                Ok(c) => c
                    .post_claimed(queue.mailbox, Id16(id), envelope, claim)
                    .await
                    .map(|_| ()),
                Err(e) => Err(RelayError::ForbiddenUrl {
                    url: queue.relay_url.clone(),
                    reason: match e {
                        RelayError::ForbiddenUrl { reason, .. } => reason,
                        _ => "not a relay URL",
                    },
                }),
            };
            match result {
                Ok(()) => posted.push(id),
                Err(e) => return (posted, Some((id, e))),
            }
        }
        (posted, None)
    }

    // ------------------------------------------------------------------ receiving

    /// Folds the log, reads every mailbox to its end and processes what arrived, then
    /// posts the outbox.
    pub async fn sync(&self) -> Result<Vec<Event>, ClientError> {
        let _ = self.relay.heartbeat().await;
        let mut events = self.sync_log().await?;
        // Receiving first: nothing queued for others can hold up what arrived.
        loop {
            let cursors: Vec<(Vec<u8>, i64)> =
                sqlx::query_as("SELECT mailbox_id, after_seq FROM mailboxes ORDER BY rowid")
                    .fetch_all(self.store.pool())
                    .await?;
            let (mut more, mut progressed) = (false, false);
            for chunk in cursors.chunks(MAILBOXES_PER_READ) {
                let chunk = chunk
                    .iter()
                    .map(|(m, a)| Ok((id32(m)?, *a)))
                    .collect::<Result<Vec<_>, ClientError>>()?;
                let pages = self.relay.read_mailboxes(&chunk, SYNC_PAGE).await?;
                for page in pages.results {
                    more |= page.more;
                    progressed |= !page.envelopes.is_empty();
                    events.extend(self.process_page(page.mailbox_id, &page.envelopes).await?);
                }
            }
            // `more` with empty pages would loop forever: the relay is not trusted to end it.
            if !(more && progressed) {
                break;
            }
        }
        self.flush_outbox().await?;
        // Spent session snapshots out of the files (best effort).
        let _ = self.store.compact().await;
        Ok(events)
    }

    /// Processes a page of envelopes from one mailbox: those that are plain messages on
    /// a known session are received together in one transaction (each inside its own
    /// savepoint, the cursor moved once), so a backlog costs a commit per page, not per
    /// message. The first envelope that needs more (a new contact, the log folded
    /// first, a refusal) ends the batch and goes through [`Self::process`] alone.
    async fn process_page(
        &self,
        mailbox: Id32,
        envelopes: &[EnvelopeOut],
    ) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        let mut rest = envelopes;
        while let Some(first) = rest.first() {
            let (taken, batch) = self.receive_batch(mailbox, rest).await?;
            events.extend(batch);
            if taken == 0 {
                events.extend(self.process(mailbox, first).await?);
                rest = &rest[1..];
            } else {
                rest = &rest[taken..];
            }
        }
        Ok(events)
    }

    /// Receives envelopes from the front of `envelopes` in one transaction while each
    /// is a plain message; returns how many were taken (their cursor committed).
    async fn receive_batch(
        &self,
        mailbox: Id32,
        envelopes: &[EnvelopeOut],
    ) -> Result<(usize, Vec<Event>), ClientError> {
        let mut tx = self.store.begin().await?;
        let row: Option<(String, Option<String>, i64)> =
            sqlx::query_as("SELECT kind, contact, after_seq FROM mailboxes WHERE mailbox_id = $1")
                .bind(&mailbox.0[..])
                .fetch_optional(&mut *tx)
                .await?;
        let Some((kind, contact, mut after)) = row else {
            // Not ours (any more): nothing to do for any of them.
            return Ok((envelopes.len(), Vec::new()));
        };
        if let ("contact", Some(name)) = (kind.as_str(), &contact) {
            return self
                .receive_messages(tx, mailbox, name, after, envelopes)
                .await;
        }
        let (mut taken, mut events) = (0, Vec::new());
        for envelope in envelopes {
            if envelope.seq <= after {
                taken += 1;
                continue;
            }
            let mut one = sqlx::Acquire::begin(&mut *tx).await?;
            match self
                .receive(&mut one, &mailbox, &kind, contact.clone(), envelope)
                .await
            {
                Ok(Received::Done(e)) => {
                    one.commit().await?;
                    events.extend(e);
                    after = envelope.seq;
                    taken += 1;
                }
                Err(e @ (ClientError::Store(_) | ClientError::Corrupt(_))) => return Err(e),
                // Anything else is settled one envelope at a time.
                Ok(Received::NewContact(_)) | Err(_) => {
                    one.rollback().await?;
                    break;
                }
            }
        }
        if taken > 0 {
            sqlx::query(
                "UPDATE mailboxes SET after_seq = $1 WHERE mailbox_id = $2 AND after_seq < $1",
            )
            .bind(after)
            .bind(&mailbox.0[..])
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok((taken, events))
    }

    /// The common case of a backlog: ratchet messages in a contact's mailbox. The
    /// session and the contact are read once, the messages decrypted in memory, and the
    /// history, the session, the contact's flags and the cursor written once. An
    /// envelope this path does not take as it is — not a ratchet message, not for the
    /// current session, carrying a hello, or not a valid payload — ends the batch with
    /// the session as it was before it (restored from the snapshot taken before
    /// decrypting), and goes through [`Self::process`] alone.
    async fn receive_messages(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
        mailbox: Id32,
        name: &str,
        mut after: i64,
        envelopes: &[EnvelopeOut],
    ) -> Result<(usize, Vec<Event>), ClientError> {
        let Some(mut session) = self.store.get_session(&mut tx, name).await? else {
            return Ok((0, Vec::new()));
        };
        let Some(row) = self.contact_row(&mut *tx, name).await? else {
            return Ok((0, Vec::new()));
        };
        let now = self.now();
        let (mut taken, mut events, mut history) = (0, Vec::new(), Vec::new());
        for envelope in envelopes {
            if envelope.seq <= after {
                taken += 1;
                continue;
            }
            let Ok(Envelope::Ratchet(bytes)) = Envelope::decode(&envelope.payload.0) else {
                break;
            };
            let (before, known) = (session.snapshot(), session.generation());
            let message = EncryptedMessage {
                kind: MessageKind::Ratchet,
                bytes,
            };
            let Ok(plaintext) = session.decrypt(&message) else {
                break;
            };
            let payload = match Payload::decode(&plaintext) {
                Ok(p) if p.hello.is_none() => p,
                _ => {
                    session = chorus_core::Session::restore(&before, known)?;
                    break;
                }
            };
            taken += 1;
            after = envelope.seq;
            if payload.text.is_empty() {
                continue;
            }
            let sent_ms = i64::try_from(payload.sent_ms).unwrap_or(i64::MAX);
            events.push(Some(Event::Message(Message {
                contact: name.to_owned(),
                outgoing: false,
                text: payload.text.clone(),
                sent_ms,
                stored_ms: now,
            })));
            history.push(crate::history::HistoryRow {
                alias: name.to_owned(),
                outgoing: false,
                envelope_id: envelope.envelope_id.0,
                sealed: self.store.seal(
                    "message",
                    &row::message(&envelope.envelope_id.0, name, false),
                    payload.text.as_bytes(),
                ),
                sent_ms,
                stored_ms: now,
                position: envelope.seq,
                event: Some(events.len() - 1),
            });
        }
        if taken == 0 {
            return Ok((0, Vec::new()));
        }
        crate::history::insert_and_tell(&mut tx, &history, &mut events).await?;
        self.store.put_session(&mut tx, name, &session).await?;
        let acked = row.hello_acked || row.recv_mailbox == mailbox.0;
        sqlx::query("UPDATE contacts SET hello_acked = $1, answered = 1 WHERE name = $2")
            .bind(acked)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE mailboxes SET after_seq = $1 WHERE mailbox_id = $2 AND after_seq < $1")
            .bind(after)
            .bind(&mailbox.0[..])
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((taken, events.into_iter().flatten().collect()))
    }

    /// Processes one envelope from one of our mailboxes, exactly once: the decrypted
    /// result, the session and the cursor are committed together, and an envelope at
    /// or below the cursor is skipped. A stranger's first message becomes a contact
    /// through the log (guarded, so when several devices read it at once exactly one
    /// creation and one hello reply win). A reply built on a ratchet key from a
    /// sibling's send this device has not folded yet is retried once after folding the
    /// log.
    pub async fn process(
        &self,
        mailbox: Id32,
        envelope: &EnvelopeOut,
    ) -> Result<Vec<Event>, ClientError> {
        let mut folded_log = false;
        loop {
            let mut tx = self.store.begin().await?;
            let row: Option<(String, Option<String>, i64)> = sqlx::query_as(
                "SELECT kind, contact, after_seq FROM mailboxes WHERE mailbox_id = $1",
            )
            .bind(&mailbox.0[..])
            .fetch_optional(&mut *tx)
            .await?;
            let Some((kind, contact, after)) = row else {
                return Ok(Vec::new());
            };
            if envelope.seq <= after {
                return Ok(Vec::new());
            }
            let events = match self
                .receive(&mut tx, &mailbox, &kind, contact, envelope)
                .await
            {
                Ok(Received::Done(events)) => events,
                Ok(Received::NewContact(proposal)) => {
                    drop(tx);
                    // Whoever wins, the contact (with this first message) is folded now.
                    let events = match self.append(proposal).await {
                        Ok((_, events)) => events,
                        Err(e) if e.is_transient() => return Err(e),
                        // Refused for a reason that will not change (too large, refused
                        // by the relay): retrying would stop every envelope behind it.
                        Err(e) => rejected(&e),
                    };
                    tx = self.store.begin().await?;
                    events
                }
                Err(ClientError::Session(chorus_core::SessionError::UnknownParent))
                    if !folded_log =>
                {
                    drop(tx);
                    self.sync_log().await?;
                    folded_log = true;
                    continue;
                }
                Err(e @ (ClientError::Store(_) | ClientError::Corrupt(_))) => return Err(e),
                Err(ClientError::Session(chorus_core::SessionError::DuplicateOrExpired {
                    ..
                })) => {
                    // Already applied — typically a first message a sibling turned into
                    // the contact (its session, folded from the log, already used the
                    // key). Nothing to report; only the cursor moves.
                    drop(tx);
                    tx = self.store.begin().await?;
                    Vec::new()
                }
                Err(e) => {
                    // Bad bytes from the network: roll back whatever was started, then
                    // advance the cursor alone so the envelope is not retried forever.
                    drop(tx);
                    tx = self.store.begin().await?;
                    rejected(&e)
                }
            };
            sqlx::query(
                "UPDATE mailboxes SET after_seq = $1 WHERE mailbox_id = $2 AND after_seq < $1",
            )
            .bind(envelope.seq)
            .bind(&mailbox.0[..])
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            if events
                .iter()
                .any(|e| matches!(e, Event::ContactAdded { .. } | Event::SessionReset { .. }))
            {
                self.flush_outbox().await?;
            }
            return Ok(events);
        }
    }

    async fn receive(
        &self,
        tx: &mut SqliteConnection,
        mailbox: &Id32,
        kind: &str,
        contact: Option<String>,
        envelope: &EnvelopeOut,
    ) -> Result<Received, ClientError> {
        let now = self.now();
        let message = match Envelope::decode(&envelope.payload.0)? {
            Envelope::Initial(bytes) => EncryptedMessage {
                kind: MessageKind::Initial,
                bytes,
            },
            Envelope::Ratchet(bytes) => EncryptedMessage {
                kind: MessageKind::Ratchet,
                bytes,
            },
        };
        // Which contact: the mailbox's owner, or (first messages) the sender's identity.
        let name = match (kind, contact, &message.kind) {
            ("contact", Some(name), _) => Some(name),
            ("contact", None, _) => return Err(ClientError::Corrupt("mailbox owner".into())),
            (_, _, MessageKind::Ratchet) => {
                return Err(ClientError::Rejected(
                    "a ratchet message in an introduction mailbox",
                ));
            }
            (_, used, MessageKind::Initial) => {
                let initial = InitialMessage::decode(&message.bytes)?;
                let root = *initial.sender.root.as_bytes();
                // Claimed, not yet authenticated: enough to drop, never to accept.
                if self.is_blocked(tx, &root).await? {
                    return Err(ClientError::Rejected(
                        "a first message from a blocked identity",
                    ));
                }
                let known = contact_named_by(&mut *tx, &root).await?;
                if known.is_none() && used.is_some() {
                    return Err(ClientError::Rejected("this invitation was already used"));
                }
                if known.is_none() && kind == "intro" {
                    // A stranger: held as a message request on this device, nothing more.
                    let events = self
                        .hold_request(tx, &root, &message, envelope, now)
                        .await?;
                    return Ok(Received::Done(events));
                }
                known
            }
        };
        let Some(name) = name else {
            // Someone answering one of our invitations: a contact at once.
            let first = self.open_first_contact(tx, &message, envelope).await?;
            let name = first.hello.name.clone();
            return Ok(Received::NewContact(self.contact_proposal(
                first,
                name,
                Some(mailbox.0),
                0,
                false,
            )?));
        };
        let mut session = self
            .store
            .get_session(tx, &name)
            .await?
            .ok_or_else(|| ClientError::UnknownContact(name.clone()))?;
        let plaintext = match session.decrypt(&message) {
            Ok(plaintext) => plaintext,
            Err(e) => {
                return self
                    .receive_off_current(tx, mailbox, kind, &name, &session, &message, envelope, e)
                    .await;
            }
        };
        let payload = Payload::decode(&plaintext)?;
        if let Some(hello) = &payload.hello {
            let relay_url = self.url_policy().check(&hello.relay_url)?;
            sqlx::query("UPDATE contacts SET send_mailbox = $1, relay_url = $2 WHERE name = $3")
                .bind(&hello.mailbox.0[..])
                .bind(&relay_url)
                .bind(&name)
                .execute(&mut *tx)
                .await?;
        }
        let row = self
            .contact_row(&mut *tx, &name)
            .await?
            .ok_or_else(|| ClientError::UnknownContact(name.clone()))?;
        let acked = row.hello_acked || row.recv_mailbox == mailbox.0;
        sqlx::query("UPDATE contacts SET hello_acked = $1, answered = 1 WHERE name = $2")
            .bind(acked)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        let events = self.deliver(tx, &name, &payload, envelope, now).await?;
        self.store.put_session(tx, &name, &session).await?;
        Ok(Received::Done(events))
    }

    /// A received message's text into the history (once per envelope).
    async fn deliver(
        &self,
        tx: &mut SqliteConnection,
        name: &str,
        payload: &Payload,
        envelope: &EnvelopeOut,
        now: i64,
    ) -> Result<Vec<Event>, ClientError> {
        let sent_ms = i64::try_from(payload.sent_ms).unwrap_or(i64::MAX);
        if payload.text.is_empty()
            || !self
                .insert_message(
                    tx,
                    name,
                    false,
                    &envelope.envelope_id.0,
                    &payload.text,
                    sent_ms,
                    now,
                    envelope.seq,
                )
                .await?
        {
            return Ok(Vec::new());
        }
        Ok(vec![Event::Message(Message {
            contact: name.to_owned(),
            outgoing: false,
            text: payload.text.clone(),
            sent_ms,
            stored_ms: now,
        })])
    }

    /// A message from a contact that its current session cannot read: one already on
    /// its way on a session that stopped being current (read until it drains), or a
    /// new handshake from the contact, settled by `chorus_core::handshakes` and
    /// proposed to the log with the decision; else the current session's `error`.
    #[allow(clippy::too_many_arguments)]
    async fn receive_off_current(
        &self,
        tx: &mut SqliteConnection,
        mailbox: &Id32,
        kind: &str,
        name: &str,
        current: &chorus_core::Session,
        message: &EncryptedMessage,
        envelope: &EnvelopeOut,
        error: chorus_core::SessionError,
    ) -> Result<Received, ClientError> {
        let now = self.now();
        for (id, since_ms, mut stale) in self.store.stale_sessions(tx, name, now).await? {
            match stale.decrypt(message) {
                Ok(plaintext) => {
                    self.store
                        .put_stale_session(tx, name, id, since_ms, &stale)
                        .await?;
                    // Only the text: a read-only session's hello moves nothing.
                    let payload = Payload::decode(&plaintext)?;
                    return Ok(Received::Done(
                        self.deliver(tx, name, &payload, envelope, now).await?,
                    ));
                }
                // The handshake a sibling already settled into this session.
                Err(e @ chorus_core::SessionError::DuplicateOrExpired { .. }) => {
                    return Err(e.into());
                }
                Err(_) => {}
            }
        }
        if message.kind != MessageKind::Initial
            || !matches!(error, chorus_core::SessionError::WrongSession)
        {
            return Err(error.into());
        }
        let first = self.open_first_contact(tx, message, envelope).await?;
        let theirs = *first.identity.root.as_bytes();
        // Only the contact this mailbox is for may start over in it: the relay knows
        // every mailbox id, and anyone else would become a contact past the requests.
        if contact_named_by(&mut *tx, &theirs).await?.as_deref() != Some(name) {
            return Err(ClientError::Rejected(
                "a first message from someone else in a contact's mailbox",
            ));
        }
        // A first message taken before, put back (the relay keeps and can repost
        // every envelope): it would move the conversation back onto an old session.
        let base_key = *InitialMessage::decode(&message.bytes)?.ephemeral.as_bytes();
        if crate::contacts::handshake_seen(tx, &theirs, &base_key).await? {
            return Err(ClientError::Rejected("a replayed first message"));
        }
        let failed: Option<String> =
            sqlx::query_scalar("SELECT failed FROM contacts WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
        let settled = handshakes::settle(
            handshakes::CurrentSession {
                awaiting_reply: current.awaiting_reply(),
                failed: failed.is_some(),
            },
            self.me.identity.keys().root.as_bytes(),
            &theirs,
        );
        let at = stream_version(tx, &self.log.key.stream_tag(&session_stream(&theirs))).await?;
        let invitation = (kind == "invitation").then_some(mailbox.0);
        Ok(Received::NewContact(self.contact_proposal(
            first,
            name.to_owned(),
            invitation,
            at,
            settled == handshakes::Settled::KeepCurrent,
        )?))
    }

    /// A first message from someone who is not a contact, authenticated by the
    /// handshake: the session after it, who sent it, where to answer. Nothing is
    /// written here.
    pub(crate) async fn open_first_contact(
        &self,
        tx: &mut SqliteConnection,
        message: &EncryptedMessage,
        envelope: &EnvelopeOut,
    ) -> Result<FirstContact, ClientError> {
        let initial = InitialMessage::decode(&message.bytes)?;
        let ids: Vec<u32> = [
            Some(initial.signed_prekey_id),
            initial.one_time_prekey_id,
            Some(initial.pq_prekey_id),
        ]
        .into_iter()
        .flatten()
        .collect();
        let loaded = LoadedPrekeys::load(&self.store, tx, &ids).await?;
        let responded = respond(&self.me.identity, &loaded, &message.bytes)?;
        let payload = Payload::decode(&responded.plaintext)?;
        let mut hello = payload
            .hello
            .ok_or(ClientError::Rejected("a first message without a hello"))?;
        // Where we will answer, chosen by the sender: checked before anything is kept.
        hello.relay_url = self.url_policy().check(&hello.relay_url)?;
        let identity = responded
            .session
            .their_identity()
            .cloned()
            .ok_or_else(|| ClientError::Corrupt("session identity".into()))?;
        Ok(FirstContact {
            session: responded.session,
            identity,
            hello,
            first: FirstMessage {
                envelope_id: envelope.envelope_id.0,
                sent_ms: payload.sent_ms,
                text: payload.text,
            },
            consumed: prekeys::consumed_ids(&responded.consumed),
        })
    }

    /// The events that make `first` a contact called `name` (with its session after
    /// the first message, and the message itself) and answer with our hello, guarded
    /// at versions `at` and `at + 1` of the contact's session stream: when several
    /// devices propose at once exactly one creation and one reply win. `at` is 0 for
    /// a new contact; for a known one it is the stream's version, and the session
    /// replaces the current one, or (`read_only`: the handshake lost, see
    /// `chorus_core::handshakes`) is only kept to read, with no reply.
    pub(crate) fn contact_proposal(
        &self,
        first: FirstContact,
        name: String,
        invitation: Option<[u8; 32]>,
        at: i64,
        read_only: bool,
    ) -> Result<Vec<Pending>, ClientError> {
        let now = self.now();
        let FirstContact {
            mut session,
            identity,
            hello,
            first,
            consumed,
        } = first;
        let root = *identity.root.as_bytes();
        // Registered at the relay only once the contact is in the log (`register_pending`,
        // before the hello naming it is posted).
        let recv: [u8; 32] = self.random();
        let snapshot = session.snapshot();
        let reply = Payload {
            sent_ms: u64::try_from(now).unwrap_or(0),
            text: String::new(),
            hello: Some(self.hello(&recv)),
        }
        .encode()?;
        let (answer, delta) = session.encrypt_escrowed(&reply, &mut self.rng())?;
        let stream = session_stream(&root);
        let created = EventKind::ContactUpserted {
            contact: root,
            name,
            details: Some(Box::new(ContactDetails {
                identity,
                relay_url: hello.relay_url.clone(),
                send_mailbox: hello.mailbox.0,
                recv_mailbox: recv,
                invitation,
                session: SecretBytes::new(snapshot.to_vec()),
                first: Some(first),
                consumed_prekeys: consumed,
                added_ms: u64::try_from(now).unwrap_or(0),
                read_only,
            })),
        };
        if read_only {
            return Ok(vec![Pending::guarded(created, stream, Some(at))]);
        }
        let sent = sent_event(
            root,
            self.random(),
            &hello.relay_url,
            hello.mailbox.0,
            &answer,
            now,
            "",
            &delta,
        );
        Ok(vec![
            Pending::guarded(created, stream.clone(), Some(at)),
            Pending::guarded(sent, stream, Some(at + 1)),
        ])
    }

    /// The last `limit` messages with a contact, oldest first.
    pub async fn history(&self, contact: &str, limit: u32) -> Result<Vec<Message>, ClientError> {
        let contact = &self.resolve_contact(contact).await?;
        if self
            .contact_row(self.store.pool(), contact)
            .await?
            .is_none()
        {
            return Err(ClientError::UnknownContact(contact.to_owned()));
        }
        // One order on every device: the sender's clock, then direction, then the
        // position in the mailbox (incoming) or the log (outgoing). Messages still
        // waiting for the log (relay unreachable) come last.
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT outgoing, envelope_id, sent_ms, stored_ms, sealed, tbl FROM (
               SELECT * FROM (
                 SELECT outgoing, envelope_id, sent_ms, stored_ms, sealed, 'message' AS tbl,
                        0 AS pending, position FROM messages WHERE contact = $1
                 UNION ALL
                 SELECT 1, envelope_id, created_ms, created_ms, sealed, 'pending_send',
                        1, 0 FROM pending_sends WHERE contact = $1
               ) ORDER BY pending DESC, sent_ms DESC, outgoing DESC, position DESC LIMIT $2
             ) ORDER BY pending ASC, sent_ms ASC, outgoing ASC, position ASC",
        )
        .bind(contact)
        .bind(i64::from(limit))
        .fetch_all(self.store.pool())
        .await?;
        rows.into_iter()
            .map(
                |(outgoing, envelope_id, sent_ms, stored_ms, sealed, table)| {
                    let text = self.store.open_sealed(
                        &table,
                        &row::message(&envelope_id, contact, outgoing),
                        &sealed,
                    )?;
                    Ok(Message {
                        contact: contact.to_owned(),
                        outgoing,
                        text: String::from_utf8(text.to_vec())
                            .map_err(|_| ClientError::Corrupt("message text".into()))?,
                        sent_ms,
                        stored_ms,
                    })
                },
            )
            .collect()
    }

    /// The identity's devices, from the roster as folded, with the relay's presence.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        let _ = self.relay.heartbeat().await;
        // Current without a separate sync (offline: as last folded).
        if let Err(e) = self.sync_log().await
            && !e.is_transient()
        {
            return Err(e);
        }
        let presence = self.relay.presence().await.ok();
        let mut conn = self.store.pool().acquire().await?;
        let roster = crate::log::load_roster(&mut conn, &self.log.log_id).await?;
        let mut relinked = std::collections::HashMap::new();
        for d in roster.devices() {
            let at: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT value FROM registers WHERE name = $1")
                    .bind(chorus_core::relinked_register(d.key.as_bytes()))
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some(at) = at.and_then(|v| <[u8; 8]>::try_from(v).ok()) {
                relinked.insert(*d.key.as_bytes(), u64::from_be_bytes(at));
            }
        }
        Ok(roster
            .devices()
            .iter()
            .map(|d| {
                let key = *d.key.as_bytes();
                DeviceInfo {
                    relinked_ms: relinked.get(&key).copied(),
                    name: d.name.clone(),
                    id: hex::encode(&key[..8]),
                    added_ms: d.added_ms,
                    last_seen_ms: presence.as_ref().and_then(|p| {
                        p.devices
                            .iter()
                            .find(|x| x.device_id.0 == key)
                            .map(|x| x.last_seen_ms)
                    }),
                    this_device: key == self.log.device,
                }
            })
            .collect())
    }

    /// Relay reachability, outbox, cursors and prekeys.
    pub async fn status(&self) -> Result<Status, ClientError> {
        let relay_error = self.relay.health().await.err().map(|e| e.to_string());
        let outbox: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM outbox) + (SELECT COUNT(*) FROM pending_sends)",
        )
        .fetch_one(self.store.pool())
        .await?;
        let failing: Vec<(String, String, i64, String, i64)> = sqlx::query_as(
            "SELECT contact, relay_url, attempts, last_error, next_attempt_ms FROM outbox
             WHERE last_error IS NOT NULL ORDER BY created_ms, rowid",
        )
        .fetch_all(self.store.pool())
        .await?;
        let requests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests")
            .fetch_one(self.store.pool())
            .await?;
        let mailboxes: Vec<(String, Option<String>, i64)> =
            sqlx::query_as("SELECT kind, contact, after_seq FROM mailboxes ORDER BY rowid")
                .fetch_all(self.store.pool())
                .await?;
        let mut conn = self.store.pool().acquire().await?;
        let prekeys = prekeys::counts(&mut conn).await?;
        let security = match crate::log::load_roster(&mut conn, &self.log.log_id)
            .await?
            .level()
        {
            SecurityLevel::SharedRoot => "shared-root",
            SecurityLevel::PrimaryRoot => "primary-root",
        };
        let directory_one_time = if relay_error.is_none() {
            self.relay
                .prekey_count(self.me.directory_address())
                .await
                .ok()
                .map(|c| c.one_time)
        } else {
            None
        };
        Ok(Status {
            name: self.me.name.clone(),
            address: self.address(),
            relay_url: self.me.relay_url.clone(),
            relay_error,
            outbox,
            outbox_failing: failing
                .into_iter()
                .map(
                    |(contact, relay_url, attempts, error, next_attempt_ms)| OutboxProblem {
                        contact,
                        relay_url,
                        attempts,
                        error,
                        next_attempt_ms,
                    },
                )
                .collect(),
            requests,
            mailboxes: mailboxes
                .into_iter()
                .map(|(kind, contact, after_seq)| MailboxStatus {
                    kind,
                    contact,
                    after_seq,
                })
                .collect(),
            prekeys,
            directory_one_time,
            security,
            holds_root: self.holds_root(),
        })
    }

    /// Whether this device holds the identity's root key (see [`Status::holds_root`]).
    pub fn holds_root(&self) -> bool {
        self.me.identity.root().is_some()
    }

    /// Follows the push channel: catches up, then processes envelopes as they arrive,
    /// reconnecting with backoff when the connection drops. `on_event` returns `false`
    /// to stop. Connection problems are reported through `on_error` and retried.
    pub async fn watch(
        &self,
        mut on_event: impl FnMut(&Event) -> bool,
        mut on_error: impl FnMut(&ClientError),
    ) -> Result<(), ClientError> {
        let mut failures = 0u32;
        loop {
            let mut push = match self.relay.connect_push().await {
                Ok(p) => p,
                Err(e) => {
                    on_error(&e.into());
                    tokio::time::sleep(
                        self.options
                            .backoff
                            .delay(failures)
                            .max(Duration::from_millis(100)),
                    )
                    .await;
                    failures = failures.saturating_add(1);
                    continue;
                }
            };
            // Subscribed first, then caught up: nothing falls in between.
            match self.sync().await {
                Ok(events) => {
                    for e in &events {
                        if !on_event(e) {
                            return Ok(());
                        }
                    }
                }
                Err(e) => {
                    on_error(&e);
                    continue;
                }
            }
            failures = 0;
            let _ = self.maintain_prekeys().await.map_err(|e| on_error(&e));
            // Timers while connected: retry the outbox, keep the directory supplied.
            let mut outbox_tick = tokio::time::interval(OUTBOX_RETRY);
            let mut prekey_tick = tokio::time::interval(PREKEY_CHECK);
            outbox_tick.reset();
            prekey_tick.reset();
            loop {
                let events = tokio::select! {
                    next = push.next() => match next {
                        None => break,
                        Some(Ok(Push::Envelopes { mailbox_id, envelopes })) => {
                            self.process_pushed(mailbox_id, &envelopes).await
                        }
                        // A sibling appended: fold (its sends show up as ours).
                        Some(Ok(Push::Records { .. })) => self.sync_log().await,
                        Some(Err(e)) => Err(e.into()),
                    },
                    _ = outbox_tick.tick() => self.flush_outbox().await.map(|_| Vec::new()),
                    _ = prekey_tick.tick() => self.maintain_prekeys().await.map(|()| Vec::new()),
                };
                match events {
                    Ok(events) => {
                        for e in &events {
                            if !on_event(e) {
                                return Ok(());
                            }
                        }
                    }
                    Err(e) => {
                        on_error(&e);
                        break;
                    }
                }
            }
        }
    }

    /// Pushed envelopes are processed directly when they continue the cursor; after a
    /// gap (a reconnect, an expiry) the mailbox is read over HTTP instead.
    async fn process_pushed(
        &self,
        mailbox: Id32,
        envelopes: &[EnvelopeOut],
    ) -> Result<Vec<Event>, ClientError> {
        let after: Option<i64> =
            sqlx::query_scalar("SELECT after_seq FROM mailboxes WHERE mailbox_id = $1")
                .bind(&mailbox.0[..])
                .fetch_optional(self.store.pool())
                .await?;
        let Some(after) = after else {
            return Ok(Vec::new());
        };
        let contiguous = envelopes
            .iter()
            .find(|e| e.seq > after)
            .is_none_or(|first| Some(first.seq) == after.checked_add(1));
        if !contiguous {
            return self.sync().await;
        }
        let mut events = Vec::new();
        for e in envelopes {
            events.extend(self.process(mailbox, e).await?);
        }
        Ok(events)
    }
}

/// What receiving one envelope produced.
/// A first message from someone who is not a contact yet, authenticated.
pub(crate) struct FirstContact {
    /// The responder session after the message.
    pub(crate) session: chorus_core::Session,
    /// Who sent it.
    pub(crate) identity: IdentityKeys,
    /// Where to answer (its relay URL checked against our [`UrlPolicy`]).
    pub(crate) hello: Hello,
    /// The message.
    pub(crate) first: FirstMessage,
    /// The prekeys it used (deleted once the contact is in the log).
    pub(crate) consumed: Vec<u32>,
}

/// What the directory publishes for an address: everything a first message needs.
#[derive(Debug)]
pub struct Introduction {
    /// The address it was fetched for.
    pub address: Address,
    /// The identity's prekey bundle, every signature checked.
    pub bundle: PrekeyBundle,
    /// The identity's intro mailbox, where first messages go.
    pub mailbox: MailboxId,
}

impl Introduction {
    /// Fetches the bundle published at `address` (`digits@relay`) and checks that its
    /// identity is the one the digits name.
    pub async fn fetch(
        address: &str,
        backoff: Backoff,
        policy: UrlPolicy,
    ) -> Result<Self, ClientError> {
        let address = Address::from_str(address)?;
        let relay = RelayClient::foreign(&address.relay_url, backoff, policy)?;
        let fetched = relay
            .fetch_prekeys(directory_address(&address.digits))
            .await
            .map_err(|e| match e.code() {
                Some("not_found") => ClientError::UnknownAddress,
                _ => ClientError::Relay(e),
            })?;
        let entry =
            DirectoryEntry::decode(&fetched.signed_prekey.ok_or(ClientError::UnknownAddress)?.0)?;
        if Fingerprint::of(&entry.identity.root).digits() != address.digits {
            return Err(ClientError::AddressMismatch);
        }
        let root = entry.identity.root;
        let bundle = PrekeyBundle {
            one_time_prekey: fetched
                .one_time
                .map(|b| OneTimePrekey::decode(&b.0))
                .transpose()?,
            pq_prekey: PqPrekey::decode(&fetched.pq.ok_or(ClientError::UnknownAddress)?.0, &root)?,
            identity: entry.identity,
            signed_prekey: entry.signed_prekey,
        };
        Ok(Self {
            address,
            bundle,
            mailbox: entry.intro_mailbox,
        })
    }
}

/// The event for an envelope refused for good: only its cursor moves.
fn rejected(e: &ClientError) -> Vec<Event> {
    tracing::warn!(error = %e, "envelope rejected");
    vec![Event::Rejected {
        reason: format!("an envelope: {e}"),
    }]
}

enum Received {
    /// Applied in the caller's transaction.
    Done(Vec<Event>),
    /// A new contact: these events must be appended (outside any transaction).
    NewContact(Vec<Pending>),
}

/// A `Sent` event for one encrypted message.
#[allow(clippy::too_many_arguments)]
fn sent_event(
    contact: [u8; 32],
    envelope_id: [u8; 16],
    relay_url: &str,
    mailbox: [u8; 32],
    message: &EncryptedMessage,
    now: i64,
    text: &str,
    delta: &SendDelta,
) -> EventKind {
    let envelope = match message.kind {
        MessageKind::Initial => Envelope::Initial(message.bytes.clone()),
        MessageKind::Ratchet => Envelope::Ratchet(message.bytes.clone()),
    }
    .encode();
    EventKind::Sent(Box::new(SentMessage {
        contact,
        envelope_id,
        relay_url: relay_url.to_owned(),
        mailbox,
        envelope,
        sent_ms: u64::try_from(now).unwrap_or(0),
        text: text.to_owned(),
        ratchet_delta: SecretBytes::new(delta.as_bytes().to_vec()),
    }))
}

async fn insert_mailbox(
    tx: &mut SqliteConnection,
    mailbox: &[u8],
    kind: &str,
    contact: Option<&str>,
    now: i64,
) -> Result<(), ClientError> {
    sqlx::query(
        "INSERT INTO mailboxes (mailbox_id, kind, contact, created_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(mailbox)
    .bind(kind)
    .bind(contact)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Removes what a failed `init` created, so a retry starts clean.
pub(crate) fn remove_store(home: &Path, created_home: bool) {
    for f in [
        STORE_FILE,
        "chorus.sqlite-wal",
        "chorus.sqlite-shm",
        crate::KEY_FILE,
        crate::LINK_PENDING_FILE,
    ] {
        let _ = std::fs::remove_file(home.join(f));
    }
    if created_home {
        let _ = std::fs::remove_dir(home);
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod handshake_tests;
