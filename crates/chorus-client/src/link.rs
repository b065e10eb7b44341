//! Linking a new device into the identity (DESIGN §7).
//!
//! ```text
//! new device N                      relay channel                 existing device A
//! device keys, ephemeral E_n
//! code = relay, channel, E_n  ── shown; the user carries it to A ──▶  reads the code
//!                                  ◀── 1 commit = H(E_a)
//!   2 hello: N's device keys, a fresh nonce, name,
//!     signed by N's device key ──▶
//!                                  ◀── 3 reveal E_a
//! SAS(transcript) shown             both screens          SAS(transcript) shown
//! user compares: confirm ──▶ 4 confirm (or decline)   user compares (the digits are
//!                                                     typed back, or confirmed at the
//!                                                     prompt), waits for N's confirm:
//!                                                     roster entry (root-signed)
//!                                                     appended, device registered,
//!                                                     checkpoint blob
//!                                  ◀── 5 bundle sealed under LinkKey(DH(E_a, E_n), transcript)
//! opens the bundle, checks the root against the log's (its genesis's, or the last roll's), loads the checkpoint,
//! folds the log tail — and can send at once.
//! ```
//!
//! The code is authentic (the user carried it), but whoever else sees it (the relay,
//! someone looking at the screen) can talk on the channel. Both sides' contributions
//! are fixed before the other side's are revealed, on every attempt: A commits to
//! `E_a` before it sees N's hello and reveals it after; N's hello carries a fresh nonce
//! it chose after A's commitment. So a man in the middle must pick its key before it
//! can know the SAS it has to match — one guess in 10⁹ — even on a resumed link, whose
//! device keys and name an observer already knows from the first attempt. The hello is
//! signed by N's device key over the channel, the code's key and A's commitment: a
//! hello cannot claim a key its sender does not hold (such as an existing device's).
//! Either side may decline; the other learns it. The bundle opens only with `E_n`'s
//! secret, which never left N, and a bundle for a device the roster already holds is
//! also sealed to that device's roster key.
//!
//! Linking is idempotent: a device already in the roster is not added again, and the
//! relay's device registration is idempotent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chorus_core::RosterSigner;
use chorus_crypto::{
    DeviceDhPublic, DeviceDhSecret, DevicePublicKey, DeviceSigningKey, Entropy, EphemeralPublic,
    EphemeralSecret, EpochKey, HistoryKey, LinkKey, Sas,
};
use chorus_relay_api::Id32;
use chorus_wire::{
    Checkpoint, EventKind, IdentityKeys, LinkHello, LinkMessage, LinkStep, ProvisioningBundle,
    RosterEntry, SecurityLevel, check_display_name,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Device;
use crate::handle::{Options, failpoint};
use crate::identity::{IdentitySecrets, secret_bytes};
use crate::log::{APPEND_ATTEMPTS, Appended, Pending, ROSTER_STREAM};
use crate::relay::{Login, RelayClient, normalize_url};
use crate::store::log_state::{load_roster, roster_entry};
use crate::{ClientError, LINK_PENDING_FILE, Store, Unlock};

/// What every link code starts with.
pub const LINK_PREFIX: &str = "chorus-link:";
/// How long either side waits for the other (the relay drops the channel after 10 minutes).
pub const LINK_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest link code text accepted.
pub const MAX_LINK_CODE_LEN: usize =
    LINK_PREFIX.len() + (1 + 32 + 32 + chorus_wire::limits::MAX_RELAY_URL_LEN + 4).div_ceil(3) * 4;

/// Version 2: the hello carries a fresh nonce and a signature by the device key, and
/// the new device confirms (or declines) on the channel.
const LINK_VERSION: u8 = 2;
const CHECKSUM_LEN: usize = 4;
const POLL: Duration = Duration::from_millis(100);
const COMMIT_LABEL: &[u8] = b"chorus-link-commit-v1";
const TRANSCRIPT_LABEL: &[u8] = b"chorus-link-transcript-v3";
/// The bundle, sealed again to a re-linked device's roster key.
const RELINK_AD: &[u8] = b"chorus-link-relink-v2";
const BUNDLE_AD: &[u8] = b"chorus-link-bundle-v1";
const CHECKPOINT_AD: &[u8] = b"chorus-checkpoint-v2";

/// What a link code carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkCode {
    /// The identity's home relay (where the channel is).
    pub relay_url: String,
    /// The rendezvous channel.
    pub channel: [u8; 32],
    /// The new device's ephemeral key.
    pub ephemeral: [u8; 32],
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let d = Sha256::digest(bytes);
    [d[0], d[1], d[2], d[3]]
}

impl LinkCode {
    /// The text form: prefix, then base64url of version ‖ channel ‖ key ‖ URL ‖ checksum.
    pub fn encode(&self) -> String {
        let mut bytes = vec![LINK_VERSION];
        bytes.extend_from_slice(&self.channel);
        bytes.extend_from_slice(&self.ephemeral);
        bytes.extend_from_slice(self.relay_url.as_bytes());
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum);
        format!("{LINK_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parses a link code; every refusal says what is wrong.
    pub fn decode(text: &str) -> Result<Self, ClientError> {
        let bad = |reason: &'static str| ClientError::BadLinkCode { reason };
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if text.len() > MAX_LINK_CODE_LEN {
            return Err(bad("it is longer than any link code"));
        }
        let body = text
            .strip_prefix(LINK_PREFIX)
            .ok_or(bad("it does not start with \"chorus-link:\""))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad("it is not valid base64url (truncated or mistyped?)"))?;
        if bytes.len() < 1 + 32 + 32 + 1 + CHECKSUM_LEN {
            return Err(bad("it is truncated"));
        }
        let (content, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if checksum(content) != sum {
            return Err(bad("its checksum does not match (truncated or altered)"));
        }
        if content[0] != LINK_VERSION {
            return Err(bad("it is from an unsupported version"));
        }
        let channel: [u8; 32] = content[1..33]
            .try_into()
            .map_err(|_| bad("it is truncated"))?;
        let ephemeral: [u8; 32] = content[33..65]
            .try_into()
            .map_err(|_| bad("it is truncated"))?;
        EphemeralPublic::from_slice(&ephemeral).map_err(|_| bad("its key is invalid"))?;
        let url =
            std::str::from_utf8(&content[65..]).map_err(|_| bad("its relay URL is not text"))?;
        let relay_url = normalize_url(url).map_err(|_| bad("its relay URL is invalid"))?;
        Ok(Self {
            relay_url,
            channel,
            ephemeral,
        })
    }
}

/// What the SAS and the link key are computed over.
fn transcript(
    channel: &[u8; 32],
    new_eph: &[u8; 32],
    commit: &[u8],
    hello: &[u8],
    approver_eph: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(TRANSCRIPT_LABEL);
    for part in [&channel[..], &new_eph[..], commit, hello, &approver_eph[..]] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

fn commitment(eph: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(COMMIT_LABEL)
        .chain_update(eph)
        .finalize()
        .into()
}

/// Waits for the first channel message after `after` that is not one of `own` (this
/// side's own steps): it must be `step` (returns its seq, the message and its bytes as
/// posted, which the transcript covers) or say the other side declined.
async fn wait_for(
    relay: &RelayClient,
    channel: Id32,
    after: i64,
    step: LinkStep,
    own: &[LinkStep],
    timeout: Duration,
) -> Result<(i64, LinkMessage, Vec<u8>), ClientError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut after = after;
    loop {
        let page = relay
            .channel_read(channel, after)
            .await
            .map_err(|e| match e.code() {
                Some("not_found") => ClientError::LinkExpired,
                _ => ClientError::Relay(e),
            })?;
        let read_from = after;
        for m in page.messages.into_iter().filter(|m| m.seq > read_from) {
            let message = LinkMessage::decode(&m.payload.0)
                .map_err(|_| ClientError::LinkProtocol("a malformed channel message"))?;
            after = m.seq;
            if own.contains(&message.step()) {
                continue;
            }
            if message.step() == LinkStep::Decline {
                return Err(ClientError::LinkDeclined);
            }
            if message.step() != step {
                return Err(ClientError::LinkProtocol(
                    "an unexpected channel message (was this code used before?)",
                ));
            }
            return Ok((m.seq, message, m.payload.0));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ClientError::LinkExpired);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Checks a new device's hello as the approving device does (the encoding, device
/// keys, name, and the signature over the channel, the code's key and `commit`);
/// returns the name. For fuzzing and tools: the approver calls the same check.
pub fn verify_hello(hello: &[u8], code: &LinkCode, commit: &[u8]) -> Result<String, ClientError> {
    let commit: [u8; 32] = commit
        .try_into()
        .map_err(|_| ClientError::LinkProtocol("a malformed commitment"))?;
    verified_hello(hello, &code.channel, &code.ephemeral, &commit).map(|h| h.name)
}

/// Parses a hello and checks its signature by the device key it names: proof that its
/// sender holds that key and said this on this channel, after this commitment.
fn verified_hello(
    bytes: &[u8],
    channel: &[u8; 32],
    new_eph: &[u8; 32],
    commit: &[u8; 32],
) -> Result<LinkHello, ClientError> {
    let LinkMessage::Hello(hello) = LinkMessage::decode(bytes)
        .map_err(|_| ClientError::LinkProtocol("a malformed device announcement"))?
    else {
        return Err(ClientError::LinkProtocol("a malformed device announcement"));
    };
    hello.verify(channel, new_eph, commit).map_err(|_| {
        ClientError::LinkProtocol("the new device's announcement is not signed by the key it names")
    })?;
    Ok(hello)
}

// ------------------------------------------------------------------ new device

/// The new device's side, before the approver answered: the code is ready to show.
pub struct LinkOffer {
    relay: RelayClient,
    code: LinkCode,
    ephemeral: EphemeralSecret,
    device: DeviceSigningKey,
    device_dh: DeviceDhSecret,
    device_name: String,
    home: PathBuf,
    store: Store,
    resumed: bool,
    entropy: Arc<dyn Entropy>,
    /// `link new --no-history`: the hello asks for no history.
    skip_history: bool,
}

/// Marks `home` as a link in progress, or clears the mark.
pub(crate) fn mark_pending(home: &Path, pending: bool) -> Result<(), ClientError> {
    let path = home.join(LINK_PENDING_FILE);
    let done = if pending {
        std::fs::write(path, b"")
    } else {
        std::fs::remove_file(path)
    };
    done.map_err(|e| ClientError::Store(crate::StoreError::Io(e)))
}

/// Opens (creating if need be) the store of a device still becoming the identity
/// (linking or recovering), marked as a link in progress until the store holds the
/// identity: a home is never a store without an identity and without the mark (which
/// would look like a device and could not be resumed).
pub(crate) async fn open_pending_home(
    home: &Path,
    unlock: Unlock,
    options: &Options,
) -> Result<Store, ClientError> {
    crate::store::create_private_dir(home)?;
    mark_pending(home, true)?;
    let store = options.open_store(home, unlock).await?;
    if store.identity().await?.is_some() {
        // It committed, then stopped before clearing its mark.
        mark_pending(home, false)?;
        return Err(ClientError::AlreadyInitialized(home.to_owned()));
    }
    Ok(store)
}

/// The new device's own keys while its link is pending (sealed in its store).
#[derive(Serialize, Deserialize)]
struct PendingKeys {
    device: DeviceSigningKey,
    device_dh: DeviceDhSecret,
}

/// The new device's side after both keys are known: the SAS is ready to compare.
pub struct LinkPending {
    offer: LinkOffer,
    sas: Sas,
    key: LinkKey,
    after: i64,
}

impl LinkOffer {
    /// Prepares this device in `home` and opens a rendezvous channel at the relay.
    ///
    /// The device's keys are sealed into its store (and `home` marked as a link in
    /// progress) before the code exists: if the link is interrupted at any point — even
    /// after the approver added the device to the roster — running this again offers
    /// the same device, so the roster never gains a second one. A resumed offer keeps
    /// the name it was first made with.
    pub async fn new(
        home: &Path,
        unlock: Unlock,
        relay_url: &str,
        device_name: &str,
        options: &Options,
    ) -> Result<Self, ClientError> {
        let device_name = &chorus_wire::normalize_display_name(device_name);
        check_display_name("device name", device_name)?;
        let relay_url = normalize_url(relay_url)?;
        if Device::exists(home) {
            return Err(ClientError::AlreadyInitialized(home.to_owned()));
        }
        let relay = RelayClient::new(&relay_url, options.backoff)?;
        let store = open_pending_home(home, unlock, options).await?;
        let (keys, device_name, resumed) = match store.pending_link().await? {
            Some((url, name, plain)) if url == relay_url => {
                let keys: PendingKeys = postcard::from_bytes(&plain)
                    .map_err(|_| ClientError::Corrupt("pending link keys".into()))?;
                (keys, name, true)
            }
            // None yet, or for another identity's relay: a new device.
            _ => {
                let keys = PendingKeys {
                    device: DeviceSigningKey::generate(&mut options.entropy.rng()),
                    device_dh: DeviceDhSecret::generate(&mut options.entropy.rng()),
                };
                store
                    .put_pending_link(
                        &relay_url,
                        device_name,
                        &secret_bytes(&keys)?,
                        options.clock.now_ms(),
                    )
                    .await?;
                (keys, device_name.to_owned(), false)
            }
        };
        let channel: [u8; 32] = options.entropy.array();
        relay.create_channel(Id32(channel)).await?;
        let ephemeral = EphemeralSecret::generate(&mut options.entropy.rng());
        Ok(Self {
            code: LinkCode {
                relay_url: relay.url().to_owned(),
                channel,
                ephemeral: *ephemeral.public_key().as_bytes(),
            },
            relay,
            ephemeral,
            device: keys.device,
            device_dh: keys.device_dh,
            device_name,
            home: home.to_owned(),
            store,
            resumed,
            skip_history: false,
            entropy: options.entropy.clone(),
        })
    }

    /// Asks the approving device for no history (`link new --no-history`): the new
    /// device's history starts at the link.
    pub fn without_history(self) -> Self {
        Self {
            skip_history: true,
            ..self
        }
    }

    /// Whether this offer resumes an interrupted link (same device keys and name).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The name this device will have in the roster.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The code to show (text; the CLI also draws it as a QR code).
    pub fn code(&self) -> String {
        self.code.encode()
    }

    /// Waits for an existing device to take the code: its commitment, then (after
    /// this device's keys went out) its key. Returns the state with the SAS to compare.
    pub async fn wait_for_approver(self, timeout: Duration) -> Result<LinkPending, ClientError> {
        let channel = Id32(self.code.channel);
        let (seq, commit, _) =
            wait_for(&self.relay, channel, 0, LinkStep::Commit, &[], timeout).await?;
        let LinkMessage::Commit(commit) = commit else {
            return Err(ClientError::LinkProtocol("a malformed commitment"));
        };
        // A fresh nonce on every attempt, chosen after the commitment: the approver's
        // key was fixed before anything here could be predicted.
        let hello = LinkMessage::Hello(LinkHello {
            skip_history: self.skip_history,
            ..LinkHello::sign(
                &self.device,
                self.device_dh.public_key(),
                self.entropy.array(),
                &self.device_name,
                &self.code.channel,
                &self.code.ephemeral,
                &commit,
            )
        })
        .encode();
        self.relay.channel_post(channel, hello.clone()).await?;
        let (seq, reveal, _) = wait_for(
            &self.relay,
            channel,
            seq,
            LinkStep::Reveal,
            &[LinkStep::Hello],
            timeout,
        )
        .await?;
        let LinkMessage::Reveal(approver) = reveal else {
            return Err(ClientError::LinkProtocol("a malformed key"));
        };
        if commitment(&approver) != commit {
            return Err(ClientError::LinkProtocol(
                "the approving device's key does not match its commitment",
            ));
        }
        let approver_pub = EphemeralPublic::from_slice(&approver)
            .map_err(|_| ClientError::LinkProtocol("an invalid key"))?;
        let hash = transcript(
            &self.code.channel,
            &self.code.ephemeral,
            &commit,
            &hello,
            &approver,
        );
        let dh = self
            .ephemeral
            .diffie_hellman(&approver_pub)
            .map_err(|_| ClientError::LinkProtocol("an invalid key"))?;
        Ok(LinkPending {
            sas: Sas::from_transcript(&hash),
            key: LinkKey::derive(&dh, &hash),
            after: seq,
            offer: self,
        })
    }
}

/// What a new device is catching up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The history archive: `done` and `total` count chunks.
    History,
    /// The log after the checkpoint: `done` and `total` count records.
    Log,
}

/// Progress of a new device's catch-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUp {
    /// What is being caught up on.
    pub stage: Stage,
    /// Records folded so far.
    pub done: u64,
    /// Records to fold in all.
    pub total: u64,
}

impl LinkPending {
    /// The short authentication string to compare with the approving device's.
    pub fn sas(&self) -> Sas {
        self.sas
    }

    /// The user said the codes differ (or no): the approving device learns it and
    /// authorizes nothing. The home stays a link in progress (`link new` resumes it).
    pub async fn decline(self) -> Result<(), ClientError> {
        self.offer
            .relay
            .channel_post(Id32(self.offer.code.channel), LinkMessage::Decline.encode())
            .await?;
        Ok(())
    }

    /// The user confirmed that both screens show the same number: tells the
    /// approving device, which authorizes nothing before it hears this.
    pub async fn confirm(self) -> Result<LinkConfirmed, ClientError> {
        self.offer
            .relay
            .channel_post(Id32(self.offer.code.channel), LinkMessage::Confirm.encode())
            .await?;
        Ok(LinkConfirmed(self))
    }
}

/// A new device whose user confirmed the SAS: waiting for the bundle.
pub struct LinkConfirmed(LinkPending);

impl LinkConfirmed {
    /// Waits for the bundle, checks it against the identity's log, creates this
    /// device's store from the checkpoint and folds the log tail. The device can send
    /// as soon as this returns.
    ///
    /// Until the device is written (one transaction), a failure leaves `home` as a
    /// link in progress that [`LinkOffer::new`] resumes; after that, a failure while
    /// folding the tail leaves a working device that catches up on its next sync.
    pub async fn finish(
        self,
        options: Options,
        timeout: Duration,
        mut progress: impl FnMut(CatchUp),
    ) -> Result<Device, ClientError> {
        let LinkPending {
            offer, key, after, ..
        } = self.0;
        let home = offer.home;
        let channel = Id32(offer.code.channel);
        let (_, sealed, _) = wait_for(
            &offer.relay,
            channel,
            after,
            LinkStep::Bundle,
            &[LinkStep::Confirm],
            timeout,
        )
        .await?;
        let LinkMessage::Bundle(sealed) = sealed else {
            return Err(ClientError::LinkProtocol("a malformed bundle"));
        };
        failpoint("link-bundle-received");
        let mut ad = BUNDLE_AD.to_vec();
        ad.extend_from_slice(&offer.code.channel);
        let plain = key.open(&ad, &sealed).map_err(|_| {
            ClientError::LinkProtocol("the bundle does not open (wrong channel or tampered)")
        })?;
        // A device the roster already held gets its bundle sealed to its own key too.
        let plain = match plain.split_first() {
            Some((&0, rest)) => Zeroizing::new(rest.to_vec()),
            Some((&1, rest)) => chorus_crypto::open_sealed(
                &offer.device_dh,
                &[RELINK_AD, &offer.code.channel[..]].concat(),
                rest,
            )
            .map_err(|_| {
                ClientError::LinkProtocol("the bundle does not open with this device's key")
            })?,
            _ => return Err(ClientError::LinkProtocol("a malformed bundle")),
        };
        let bundle = ProvisioningBundle::decode(&plain)
            .map_err(|_| ClientError::LinkProtocol("a malformed bundle"))?;
        let log_id = Id32(bundle.log_id);
        let device_id = *offer.device.public_key().as_bytes();
        // The identity's keys must be signed by a root, and a root key sent along must
        // be that root.
        let identity_keys = IdentityKeys::decode(&bundle.identity_keys)
            .map_err(|_| ClientError::LinkProtocol("the bundle's identity keys do not verify"))?;
        if bundle
            .root
            .as_ref()
            .is_some_and(|r| r.public_key() != identity_keys.root)
            || identity_keys.dh != bundle.dh.public_key()
        {
            return Err(ClientError::LinkWrongIdentity);
        }
        let secrets = IdentitySecrets {
            root: bundle.root,
            keys: bundle.identity_keys,
            dh: bundle.dh,
            device: offer.device,
            device_dh: offer.device_dh,
        };
        let login_key = IdentitySecrets::from_bytes(&secrets.to_bytes()?)?.device;
        let relay = offer.relay.with_login(Login {
            log_id,
            device: std::sync::Arc::new(login_key),
        });
        // The root in the bundle must be the root of the log this device was added to:
        // the genesis's, or the last it rolled to (the relay says which, and the
        // checkpoint's roster below must end at it).
        let info = relay.log_info().await?;
        let genesis = RosterEntry::decode(&info.genesis.0)?;
        let log_root = match (&genesis.body, info.root) {
            (_, Some(rolled)) => rolled.0,
            (chorus_wire::RosterBody::Genesis { root, .. }, None) => *root.as_bytes(),
            _ => {
                return Err(ClientError::LinkProtocol(
                    "the log's first entry is not a genesis",
                ));
            }
        };
        if log_root != *identity_keys.root.as_bytes() {
            return Err(ClientError::LinkWrongIdentity);
        }
        let epoch_key = EpochKey::from_bytes(&bundle.epoch_key);
        let blob = relay.get_blob(Id32(bundle.checkpoint)).await?;
        let checkpoint = open_checkpoint(&epoch_key, &bundle.checkpoint, &blob)?;
        let roster = chorus_core::Roster::validate_chain(log_id.0, &checkpoint.rows().roster)
            .map_err(|_| ClientError::LinkProtocol("the checkpoint's roster does not validate"))?;
        let me = DevicePublicKey::from_bytes(device_id)
            .map_err(|_| ClientError::Corrupt("device key".into()))?;
        if *roster.root() != identity_keys.root {
            return Err(ClientError::LinkWrongIdentity);
        }
        if !roster.is_authorized(&me) || checkpoint.rows().roster.first() != Some(&info.genesis.0) {
            return Err(ClientError::LinkProtocol(
                "the checkpoint's roster does not name this device",
            ));
        }
        let total =
            u64::try_from(info.head_seq.saturating_sub(checkpoint.rows().applied_seq)).unwrap_or(0);
        let device = Device::create_store(
            offer.store,
            &home,
            &bundle.relay_url,
            &bundle.name,
            log_id,
            Id32(bundle.intro_mailbox),
            secrets,
            (bundle.epoch, epoch_key),
            &checkpoint.rows().roster,
            checkpoint.rows().applied_seq,
            relay,
            options,
            Some(&checkpoint),
        )
        .await?;
        if let Some(key) = &bundle.history_key {
            // Noted before the link is done: from here an interruption resumes the
            // import at the next chunk (on the next sync).
            device
                .store
                .put_history_import(&HistoryKey::from_bytes(key), &bundle.history)
                .await?;
        }
        mark_pending(&home, false)?;
        device
            .import_history(|done, total| {
                progress(CatchUp {
                    stage: Stage::History,
                    done,
                    total,
                });
            })
            .await?;
        device
            .catch_up_log(checkpoint.rows().applied_seq, total, &mut progress)
            .await?;
        // The checkpoint holds session snapshots (ratchet keys as of the link): once
        // imported it must not outlive its use at the relay. Best effort — a failure
        // leaves it sealed under the epoch key until the blob is replaced or deleted.
        let _ = device.relay.delete_blob(Id32(bundle.checkpoint)).await;
        let _ = device.relay.channel_delete(channel).await;
        device.sync().await?;
        Ok(device)
    }
}

/// Both sides of a link in one process (the demo, tests and benchmarks): `existing`
/// approves a new device created in `home`. Returns the new device and the SAS each side
/// showed — comparing them is the caller's job, as it is the user's.
pub async fn link_locally(
    existing: &Device,
    home: &std::path::Path,
    name: &str,
    unlock: Unlock,
    options: Options,
) -> Result<(Device, Sas, Sas), ClientError> {
    let offer = LinkOffer::new(home, unlock, &existing.relay_url(), name, &options).await?;
    let code = offer.code();
    let waiting = tokio::spawn(async move { offer.wait_for_approver(LINK_TIMEOUT).await });
    let approval = existing.approve_link(&code).await?;
    let pending = waiting
        .await
        .map_err(|_| ClientError::LinkProtocol("the new device's task failed"))??;
    let (new_sas, approver_sas) = (pending.sas(), approval.sas());
    if new_sas != approver_sas {
        return Err(ClientError::LinkCancelled);
    }
    // Each side confirms on its own screen; the approver waits for the new device's.
    let confirmed = pending.confirm().await?;
    approval.confirm().await?;
    let device = confirmed.finish(options, LINK_TIMEOUT, |_| {}).await?;
    Ok((device, new_sas, approver_sas))
}

// ------------------------------------------------------------- approving device

/// An approval in progress on an existing device: the SAS is ready to compare.
pub struct Approval<'a> {
    device: &'a Device,
    channel: [u8; 32],
    sas: Sas,
    key: LinkKey,
    new_device: DevicePublicKey,
    new_dh: DeviceDhPublic,
    name: String,
    /// The new device asked for the history.
    history: bool,
    /// The seq of the new device's hello: its confirmation comes after it.
    hello_seq: i64,
}

impl Device {
    /// Takes a link code shown by a new device: commits to a key, reads the new
    /// device's keys, reveals the key. Returns the approval with the SAS to compare;
    /// nothing is authorized until [`Approval::confirm`].
    pub async fn approve_link(&self, code: &str) -> Result<Approval<'_>, ClientError> {
        let code = LinkCode::decode(code)?;
        if self.me().identity.root().is_none() {
            return Err(ClientError::NotPrimary("link new devices"));
        }
        if normalize_url(&code.relay_url)? != self.me().relay_url {
            return Err(ClientError::LinkProtocol(
                "the code is for another relay than this identity's home",
            ));
        }
        let channel = Id32(code.channel);
        let eph = EphemeralSecret::generate(&mut self.rng());
        let eph_pub = *eph.public_key().as_bytes();
        let commit = commitment(&eph_pub);
        let existing = self
            .relay
            .channel_read(channel, 0)
            .await
            .map_err(|e| match e.code() {
                Some("not_found") => ClientError::LinkExpired,
                _ => ClientError::Relay(e),
            })?;
        if !existing.messages.is_empty() {
            return Err(ClientError::LinkCodeUsed);
        }
        self.relay
            .channel_post(channel, LinkMessage::Commit(commit).encode())
            .await?;
        let (hello_seq, _, hello) = wait_for(
            &self.relay,
            channel,
            0,
            LinkStep::Hello,
            &[LinkStep::Commit],
            LINK_TIMEOUT,
        )
        .await?;
        let LinkHello {
            device: new_device,
            dh: new_dh,
            name,
            skip_history,
            ..
        } = verified_hello(&hello, &code.channel, &code.ephemeral, &commit)?;
        self.relay
            .channel_post(channel, LinkMessage::Reveal(eph_pub).encode())
            .await?;
        let new_eph = EphemeralPublic::from_slice(&code.ephemeral)
            .map_err(|_| ClientError::LinkProtocol("an invalid key"))?;
        let hash = transcript(&code.channel, &code.ephemeral, &commit, &hello, &eph_pub);
        let dh = eph
            .diffie_hellman(&new_eph)
            .map_err(|_| ClientError::LinkProtocol("an invalid key"))?;
        Ok(Approval {
            device: self,
            channel: code.channel,
            sas: Sas::from_transcript(&hash),
            key: LinkKey::derive(&dh, &hash),
            new_device,
            new_dh,
            name,
            history: !skip_history,
            hello_seq,
        })
    }
}

impl Approval<'_> {
    /// The short authentication string to compare with the new device's.
    pub fn sas(&self) -> Sas {
        self.sas
    }

    /// The name the new device gave itself.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// The user said the codes differ (or no): the new device learns it, nothing is
    /// authorized.
    pub async fn decline(self) -> Result<(), ClientError> {
        self.device
            .relay
            .channel_post(Id32(self.channel), LinkMessage::Decline.encode())
            .await?;
        Ok(())
    }

    /// After the user confirmed the SAS: waits for the new device's user to confirm
    /// too, then authorizes the device in the roster (once), registers it at the
    /// relay, writes a checkpoint and sends the sealed bundle.
    pub async fn confirm(self) -> Result<(), ClientError> {
        let d = self.device;
        wait_for(
            &d.relay,
            Id32(self.channel),
            self.hello_seq,
            LinkStep::Confirm,
            &[LinkStep::Reveal],
            LINK_TIMEOUT,
        )
        .await?;
        let mut done = false;
        let mut relink = None;
        let mut authorization: Option<Vec<u8>> = None;
        let mut level = SecurityLevel::SharedRoot;
        d.sync_log().await?;
        for _ in 0..APPEND_ATTEMPTS {
            let mut conn = d.store.pool().acquire().await?;
            let roster = load_roster(&mut conn, &d.log.keys.log_id).await?;
            drop(conn);
            level = roster.level();
            if let Some(known) = roster.devices().iter().find(|r| r.key == self.new_device) {
                // A re-link (a resumed link, or a device set up again with its keys):
                // the bundle is sealed to the key the roster holds for it as well,
                // and the relay is shown the entry that let it in.
                relink = Some(known.dh);
                let mut conn = d.store.pool().acquire().await?;
                authorization = roster_entry(&mut conn, known.added_index).await?;
                done = true;
                break;
            }
            let held = d.me();
            let root = held
                .identity
                .root()
                .ok_or(ClientError::NotPrimary("link new devices"))?;
            let entry = roster
                .authorize(
                    &RosterSigner::Root(root),
                    self.new_device,
                    self.new_dh,
                    &self.name,
                    u64::try_from(d.now()).unwrap_or(0),
                )
                .map_err(|e| ClientError::LinkRefused(e.to_string()))?;
            let (outcome, _) = d
                .append(vec![Pending::guarded(
                    EventKind::Roster {
                        entry: entry.as_bytes().to_vec(),
                    },
                    ROSTER_STREAM.to_vec(),
                    None,
                )])
                .await?;
            if outcome == Appended::Done {
                authorization = Some(entry.as_bytes().to_vec());
                done = true;
                break;
            }
        }
        let (true, Some(authorization)) = (done, authorization) else {
            return Err(ClientError::Contended);
        };
        // The relay registers the device only on the root-signed entry.
        d.relay
            .add_device(Id32(*self.new_device.as_bytes()), &authorization)
            .await?;
        if relink.is_some() {
            // Every device shows the re-link: a device set up again with its keys is
            // worth a look if nobody in the household did it.
            d.append(vec![Pending::free(EventKind::Relinked {
                device: *self.new_device.as_bytes(),
            })])
            .await?;
        }
        // `primary-root`: the root stays on this (the primary) device.
        let bundle = d
            .provisioning_bundle(level == SecurityLevel::SharedRoot, self.history)
            .await?;
        self.post_bundle(&bundle, relink.as_ref()).await
    }

    /// Seals the bundle under the link key (and first to `relink`, the roster's key
    /// for a device it already holds) and posts it on the channel.
    async fn post_bundle(
        &self,
        bundle: &ProvisioningBundle,
        relink: Option<&DeviceDhPublic>,
    ) -> Result<(), ClientError> {
        let bundle = bundle.encode();
        let plain = match relink {
            None => Zeroizing::new([&[0u8][..], &bundle[..]].concat()),
            Some(dh) => {
                let sealed = chorus_crypto::seal(
                    dh,
                    &[RELINK_AD, &self.channel[..]].concat(),
                    &bundle,
                    &mut self.device.rng(),
                )
                .map_err(|_| {
                    ClientError::LinkProtocol("the roster's key for the device is invalid")
                })?;
                Zeroizing::new([&[1u8][..], &sealed[..]].concat())
            }
        };
        let mut ad = BUNDLE_AD.to_vec();
        ad.extend_from_slice(&self.channel);
        let sealed = self.key.seal(&ad, &plain, &mut self.device.rng());
        self.device
            .relay
            .channel_post(Id32(self.channel), LinkMessage::Bundle(sealed).encode())
            .await?;
        Ok(())
    }
}

impl Device {
    /// Everything another device needs to be this identity as of now: this device's
    /// state exported as a checkpoint, sealed under the current epoch key into a fresh
    /// blob at the relay, and the bundle that names it (with the root key only if
    /// `with_root`). For a device being linked, and for the recovery slot.
    pub(crate) async fn provisioning_bundle(
        &self,
        with_root: bool,
        with_history: bool,
    ) -> Result<ProvisioningBundle, ClientError> {
        let checkpoint_id: [u8; 32] = self.random();
        let (epoch, epoch_key) = self.log.epoch_key().await?;
        let checkpoint = self.store.export_checkpoint().await?;
        if self.log.epoch_key().await?.0 != epoch {
            // The log's key rotated while the checkpoint was taken: the reader would
            // hold a key of another epoch than its state. Run it again.
            return Err(ClientError::Contended);
        }
        let sealed = seal_checkpoint(
            &checkpoint,
            &epoch_key,
            &checkpoint_id,
            &*self.options.entropy,
        );
        self.relay.put_blob(Id32(checkpoint_id), sealed).await?;
        let IdentitySecrets { root, keys, dh, .. } = stored_secrets(self).await?;
        let (history_key, history) = match with_history {
            true => {
                let (key, ids) = self.export_history().await?;
                (Some(key.to_bytes()), ids)
            }
            false => (None, Vec::new()),
        };
        Ok(ProvisioningBundle {
            history_key,
            history,
            log_id: self.log.keys.log_id.0,
            relay_url: self.me().relay_url.clone(),
            name: self.me().name.clone(),
            intro_mailbox: self.me().intro_mailbox.0,
            root: root.filter(|_| with_root),
            identity_keys: keys,
            dh,
            epoch,
            epoch_key: epoch_key.to_bytes(),
            checkpoint: checkpoint_id,
        })
    }
}

impl Device {
    /// Folds the log after a checkpoint at `applied`, telling `progress` how many of
    /// the `total` records after it are folded (a new device's catch-up).
    pub(crate) async fn catch_up_log(
        &self,
        applied: i64,
        total: u64,
        progress: &mut impl FnMut(CatchUp),
    ) -> Result<(), ClientError> {
        progress(CatchUp {
            stage: Stage::Log,
            done: 0,
            total,
        });
        let start = u64::try_from(applied).unwrap_or(0);
        self.sync_log_with(|now| {
            let done = now.saturating_sub(start);
            progress(CatchUp {
                stage: Stage::Log,
                done,
                total: total.max(done),
            });
        })
        .await?;
        Ok(())
    }
}

/// The identity secrets as stored (a copy for the bundle, wiped on drop).
async fn stored_secrets(d: &Device) -> Result<IdentitySecrets, ClientError> {
    let row = d
        .store
        .identity()
        .await?
        .ok_or_else(|| ClientError::Corrupt("identity".into()))?;
    IdentitySecrets::from_bytes(&row.secrets)
}

// ------------------------------------------------------------------ checkpoint

/// Seals a checkpoint under the epoch key, bound to its blob id.
fn seal_checkpoint(
    checkpoint: &Checkpoint,
    key: &EpochKey,
    id: &[u8; 32],
    entropy: &dyn Entropy,
) -> Vec<u8> {
    let (nonce, ct) = key.seal(
        &[CHECKPOINT_AD, id].concat(),
        &checkpoint.encode(),
        &mut entropy.rng(),
    );
    [&nonce[..], &ct].concat()
}

/// Opens the checkpoint in blob `id`.
pub(crate) fn open_checkpoint(
    key: &EpochKey,
    id: &[u8; 32],
    sealed: &[u8],
) -> Result<Checkpoint, ClientError> {
    if sealed.len() < 12 {
        return Err(ClientError::LinkProtocol("a truncated checkpoint"));
    }
    let (nonce, ct) = sealed.split_at(12);
    let plain = key
        .open(&[CHECKPOINT_AD, id].concat(), nonce, ct)
        .map_err(|_| ClientError::LinkProtocol("the checkpoint does not open (tampered?)"))?;
    Checkpoint::decode(&plain).map_err(|_| ClientError::LinkProtocol("a malformed checkpoint"))
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
