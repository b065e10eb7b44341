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

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chorus_core::Roster;
use chorus_crypto::{EpochKey, Fingerprint, SafetyNumber};
use chorus_relay_api::{BundledPost, Id32};
use chorus_wire::{
    DirectoryEntry, EventKind, IdentityKeys, MailboxId, OneTimePrekey, PqPrekey, PrekeyBundle,
    SecurityLevel, check_display_name, normalize_display_name,
};
use serde::Serialize;

pub use crate::event::{Delivery, Event, FileInfo, Message};
pub use crate::handle::{Clock, HEARTBEAT, Options, SIBLING_DELIVERY, SystemClock};
use crate::identity::{Address, IdentitySecrets, Me, directory_address, local_identity};
use crate::log::{Appended, Log, LogKeys, Pending};
use crate::prekeys;
use crate::relay::{Backoff, Login, MailboxUse, RelayClient, RelayError, UrlPolicy, normalize_url};
use crate::store::identity::NewDevice;
use crate::{ClientError, LINK_PENDING_FILE, STORE_FILE, Store, Unlock};
pub use revoke::{FoundDevice, Revoked};
pub use roll::Rolled;

#[cfg(any(test, feature = "bench"))]
pub mod bench;
mod contacts;
pub mod files;
mod history;
mod outbox;
mod per_device;
mod prekey_supply;
mod profile;
mod receive;
pub mod recovery;
pub mod requests;
mod revoke;
mod roll;
mod security;
mod send;
mod status;
mod strategy;
mod timer;
mod watch;

/// A device: an unlocked store, its identity, its view of the identity's log and its
/// relay.
pub struct Device {
    pub(crate) store: Arc<Store>,
    /// Who this device is: read through [`Device::me`], which takes up an identity a
    /// fold rewrote (the root moved, or the identity rolled).
    me: std::sync::RwLock<Arc<Me>>,
    pub(crate) relay: RelayClient,
    pub(crate) options: Options,
    pub(crate) home: PathBuf,
    /// The log driver (it holds the log's keys and the folded state).
    pub(crate) log: Log,
    /// Sequenced sends that lost the race to a sibling and were encrypted again.
    pub(crate) lost_races: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("home", &self.home)
            .field("name", &self.me().name)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// This device's randomness as a `CryptoRng` ([`Options::entropy`]).
    pub(crate) fn rng(&self) -> chorus_crypto::EntropyRng<'_> {
        self.options.entropy.rng()
    }

    /// `N` random bytes from this device's [`Options::entropy`].
    pub(crate) fn random<const N: usize>(&self) -> [u8; N] {
        self.options.entropy.array()
    }
}

/// The log driver's operations, as the device's own (the device never folds or
/// appends any other way).
impl Device {
    /// Seals `events` and appends them in one atomic batch, then folds the log
    /// ([`Log::append_with`]).
    pub(crate) async fn append(
        &self,
        events: Vec<Pending>,
    ) -> Result<(Appended, Vec<Event>), ClientError> {
        self.log.append_with(events, None).await
    }

    /// [`Self::append`], with `post` stored by the relay in the same transaction.
    pub(crate) async fn append_with(
        &self,
        events: Vec<Pending>,
        post: Option<BundledPost>,
    ) -> Result<(Appended, Vec<Event>), ClientError> {
        self.log.append_with(events, post).await
    }

    /// Reads the log after the folded cursor and folds every record, in seq order.
    pub async fn sync_log(&self) -> Result<Vec<Event>, ClientError> {
        let mut events = self.log.sync_log().await?;
        // A revocation whose rotation never followed (its device stopped): any
        // device finishes it.
        events.extend(self.log.rotate_if_due().await?);
        // Best effort: an acknowledgement not made only holds compaction back.
        if let Err(e) = self.log.acknowledge().await {
            tracing::debug!(error = %e, "could not acknowledge the folded position");
        }
        Ok(events)
    }

    /// Compacts the log: the relay deletes every record all current devices folded
    /// (ratchet deltas, transcripts, prekey secrets go with them); history stays in
    /// each device's store. Returns the lowest seq the relay still stores. `watch`
    /// runs it every [`PREKEY_CHECK`].
    pub async fn compact_log(&self) -> Result<i64, ClientError> {
        self.sync_log().await?;
        // The recovery state's checkpoint moves up first: the trim that follows is
        // never past it, so a recovering device can read the log from it.
        self.refresh_recovery().await?;
        self.log.compact().await
    }

    /// [`Self::sync_log`], telling `progress` the seq folded after each page.
    pub(crate) async fn sync_log_with(
        &self,
        progress: impl FnMut(u64),
    ) -> Result<Vec<Event>, ClientError> {
        self.log.sync_log_with(progress).await
    }
}

/// Envelopes read per mailbox per request while catching up.
pub const SYNC_PAGE: u32 = 100;

/// `Received` events per append (each may carry a 30,000-byte text): held messages
/// carried to the siblings when a request is accepted, and a primary's fan-out.
pub(crate) const RECEIVED_PER_APPEND: usize = 4;
/// The log's first epoch (a revocation rotates it: `chorus_core`'s `epoch` module).
const FIRST_EPOCH: u32 = 1;
/// How often `watch` retries a non-empty outbox.
pub const OUTBOX_RETRY: Duration = Duration::from_secs(30);
/// How often `watch` checks the directory's prekey supply and rotation schedule, and
/// compacts the log.
pub const PREKEY_CHECK: Duration = Duration::from_secs(3600);
/// Mailboxes whose outbox rows are posted at once.
pub const OUTBOX_PARALLEL: usize = 8;
/// How long an outbox row for a contact's relay waits after its first failure.
pub const OUTBOX_FIRST_DELAY: Duration = Duration::from_secs(5);
/// The longest wait between two tries of one outbox row.
pub const OUTBOX_MAX_DELAY: Duration = Duration::from_secs(3600);

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
    /// Their previous key signed two different identity rolls: compare the safety
    /// number again (`chorus contact verify`).
    pub compromised: bool,
    /// Blocked on every device of the identity (`chorus contact block`): their messages
    /// are dropped.
    pub blocked: bool,
    /// Marked verified on a device of the identity (`chorus verify --mark`) for the
    /// identity they have now (a roll of theirs clears it).
    pub verified: bool,
    /// The conversation's disappearing-message timer, in seconds (0: off).
    pub disappearing_secs: u64,
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
    /// Online now: the relay heard from it within its presence window (90 s).
    pub online: bool,
    /// When it was last seen online: now, or as this device last saw it (kept in this
    /// device's store; the relay keeps presence in memory only). `None`: never seen by
    /// this device.
    pub last_seen_ms: Option<i64>,
    /// When it was last linked again, if it was (the approving device's clock).
    pub relinked_ms: Option<u64>,
    /// Whether it is the device running this command.
    pub this_device: bool,
    /// `primary-root`: whether it is the primary (the device holding the root key).
    pub primary: bool,
}

/// What became of a sent message.
#[derive(Debug)]
pub struct SendOutcome {
    /// The envelope id.
    pub envelope_id: [u8; 16],
    /// `None`: the relay accepted it. `Some`: it is saved in the outbox and will be
    /// posted by the next `send`, `sync` or `watch`.
    pub queued: Option<RelayError>,
    /// Another device encrypts for the identity (`leader`, `primary`): the message is
    /// in the log, handed to the device named here, and pending until it sends it.
    pub forwarded_to: Option<String>,
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
    /// Whether the identity has a recovery code (`chorus recover` can bring it back
    /// if the primary is lost).
    pub recovery_code: bool,
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
    /// The contact is marked compromised (their previous key signed two different
    /// rolls): the safety number the roll not followed would give. Compare both with
    /// the contact.
    pub rival: Option<SafetyNumber>,
    /// Marked verified (`chorus verify --mark`, on any device of the identity) for the
    /// identity the contact has now.
    pub verified: bool,
}

/// How long an outbox row waits after its `attempts`-th failure on a contact's relay:
/// [`OUTBOX_FIRST_DELAY`], doubling, at most [`OUTBOX_MAX_DELAY`].
pub fn outbox_delay(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    OUTBOX_FIRST_DELAY
        .saturating_mul(1u32 << doublings)
        .min(OUTBOX_MAX_DELAY)
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
                (FIRST_EPOCH, epoch_key),
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
                        relays: vec![device.me().relay_url.clone()],
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
        (epoch, epoch_key): (u32, EpochKey),
        roster: &[Vec<u8>],
        applied_seq: i64,
        relay: RelayClient,
        options: Options,
        checkpoint: Option<&chorus_wire::Checkpoint>,
    ) -> Result<Self, ClientError> {
        let sealed_secrets = secrets.to_bytes()?;
        store
            .create_device(NewDevice {
                name,
                relay_url,
                log_id,
                intro,
                secrets: &sealed_secrets,
                epoch,
                epoch_key: &epoch_key,
                roster,
                applied_seq,
                checkpoint,
                now: options.clock.now_ms(),
            })
            .await?;
        Self::assemble(
            store,
            home,
            options,
            (name.to_owned(), relay_url.to_owned(), intro),
            secrets,
            log_id,
            relay,
        )
    }

    /// The device value from what its store holds: `identity` is (name, relay URL,
    /// intro mailbox); the log's epoch and key are read with its folded state.
    fn assemble(
        store: Store,
        home: &Path,
        options: Options,
        identity: (String, String, Id32),
        secrets: IdentitySecrets,
        log_id: Id32,
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
        let store = Arc::new(store);
        let log = Log::new(
            LogKeys {
                log_id,
                device: *device.public_key().as_bytes(),
                dh: device_dh,
            },
            store.clone(),
            relay.clone(),
            options.entropy.clone(),
            options.clock.clone(),
        );
        Ok(Device {
            store: store.clone(),
            me: std::sync::RwLock::new(Arc::new(Me {
                name,
                relay_url,
                intro_mailbox,
                identity: local_identity(root, &keys, dh)?,
            })),
            relay,
            options,
            home: home.to_owned(),
            log,
            lost_races: Default::default(),
        })
    }

    /// Who this device is now: the identity as the last fold left it.
    pub(crate) fn me(&self) -> Arc<Me> {
        if let Some(identity) = self.store.take_changed_identity() {
            let mut me = self
                .me
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *me = Arc::new(Me {
                name: me.name.clone(),
                relay_url: me.relay_url.clone(),
                intro_mailbox: me.intro_mailbox,
                identity,
            });
            return me.clone();
        }
        self.me
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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
        let Some(row) = store.identity().await? else {
            return Err(ClientError::NotInitialized(home.to_owned()));
        };
        let log_id = id32(&row.log_id)?;
        // The relay client keeps its own copy of the device key (wiped on drop).
        let relay = RelayClient::new(&row.relay_url, options.backoff)?.with_login(Login {
            log_id,
            device: Arc::new(IdentitySecrets::from_bytes(&row.secrets)?.device),
        });
        let (name, relay_url, intro) = (row.name, row.relay_url, row.intro_mailbox);
        let plain = row.secrets;
        Self::assemble(
            store,
            home,
            options,
            (name, relay_url, id32(&intro)?),
            IdentitySecrets::from_bytes(&plain)?,
            log_id,
            relay,
        )
    }

    /// The identity's display name.
    pub fn name(&self) -> String {
        self.me().name.clone()
    }

    /// The identity's fingerprint (its half of every safety number).
    pub fn fingerprint(&self) -> Fingerprint {
        self.me().fingerprint()
    }

    /// `fingerprint@relay`, for `chorus contact add`.
    pub fn address(&self) -> String {
        self.me().address()
    }

    /// The home relay.
    pub fn relay_url(&self) -> String {
        self.me().relay_url.clone()
    }

    /// The home relay's client, logged in as this device (for tools and tests).
    pub fn relay(&self) -> &RelayClient {
        &self.relay
    }

    /// Transactions this device's store has committed since it was opened.
    pub fn local_commits(&self) -> u64 {
        self.store.commits()
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
            UrlPolicy::for_home(&self.me().relay_url)
        }
    }

    pub(crate) fn now(&self) -> i64 {
        self.options.clock.now_ms()
    }
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
#[path = "../handshake_tests.rs"]
mod handshake_tests;
