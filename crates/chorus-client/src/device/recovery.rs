//! Recovering a `primary-root` identity from its recovery code (DESIGN §3; issue 13,
//! item 5).
//!
//! In `primary-root` only the primary device holds the root key, so losing it would
//! lose the identity. `chorus init --security primary-root` therefore shows a recovery
//! code once ([`RecoveryCode`]: 160 random bits and a 40-bit check, in eight groups of
//! five letters and digits). From the code derive a public *slot* name and an X25519
//! *recovery key*:
//!
//! ```text
//! primary, once          relay's recovery slot (by slot name)      any device, each epoch
//! root sealed to key ──▶  kit                                       ◀── state: the provisioning
//! RecoveryKeySet(key)     state ─▶ checkpoint blob of the log           bundle without the root,
//!   in the roster                                                       sealed to the key, and a
//!                                                                       fresh checkpoint
//! ```
//!
//! `chorus recover` on a new device reads the slot without a session (whoever holds the
//! code can name it; nobody else can), opens the kit and the state with the recovery
//! key, opens the checkpoint with the epoch key in the state, and checks that all of it
//! is one identity. Only then does it create its home, authorize itself with the root
//! key (a root-signed `DeviceAuthorized`, which the relay accepts through the slot and
//! every fold accepts as the device's own first record), take the primary's place
//! (`PrimaryMoved`) and revoke the lost primary, which rotates the epoch key and renews
//! prekeys and mailboxes as any revocation does. A wrong code finds no slot and changes
//! nothing anywhere.
//!
//! A device writes the state whenever it holds a newer epoch key than the last state it
//! wrote, and before every compaction (whose trim point is then never past the state's
//! checkpoint), so the recovering device can always read the log from the state on.
//! What the code gives is what the primary held: whoever has it can become the
//! identity. It is shown once and never stored.

use std::sync::Arc;

use chorus_core::{Roster, RosterSigner};
use chorus_crypto::{
    DeviceDhPublic, DeviceDhSecret, DevicePublicKey, DeviceSigningKey, EpochKey, RECOVERY_CODE_LEN,
    RecoveryCode, RootSigningKey,
};
use chorus_relay_api::Id32;
use chorus_wire::{EventKind, IdentityKeys, ProvisioningBundle};
use data_encoding::BASE32_NOPAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Device, Revoked};
use crate::identity::IdentitySecrets;
use crate::link::{CatchUp, mark_pending, open_checkpoint, open_pending_home};
use crate::log::{APPEND_ATTEMPTS, Appended, Pending, ROSTER_STREAM};
use crate::relay::{Login, RelayClient, normalize_url};
use crate::store::log_state::load_roster;
use crate::{ClientError, Options, Unlock};

/// Characters per group of a recovery code as shown.
const GROUP: usize = 5;
/// Check bytes after the code's random bytes: a typo is caught before any request.
const CHECK_LEN: usize = 5;
/// Characters in a recovery code, without the dashes.
const CODE_CHARS: usize = (RECOVERY_CODE_LEN + CHECK_LEN) * 8 / 5;
/// Longest recovery code text accepted (spaces and dashes included), checked first.
pub const MAX_RECOVERY_CODE_LEN: usize = 128;

const CHECK_LABEL: &[u8] = b"chorus-recovery-code-check-v1\0";
const KIT_AD: &[u8] = b"chorus-recovery-kit-v1\0";
const STATE_AD: &[u8] = b"chorus-recovery-state-v1\0";

fn check(bytes: &[u8]) -> [u8; CHECK_LEN] {
    let d = Sha256::new()
        .chain_update(CHECK_LABEL)
        .chain_update(bytes)
        .finalize();
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&d[..CHECK_LEN]);
    out
}

/// What a sealed kit or state is bound to: its role and the identity's log.
fn ad(role: &[u8], log_id: &Id32) -> Vec<u8> {
    [role, &log_id.0[..]].concat()
}

/// The code as a person copies it: eight groups of five (`ABCDE-FGH23-…`).
pub fn encode_code(code: &RecoveryCode) -> Zeroizing<String> {
    let secret = code.to_bytes();
    let mut bytes = Zeroizing::new(Vec::with_capacity(RECOVERY_CODE_LEN + CHECK_LEN));
    bytes.extend_from_slice(&secret[..]);
    bytes.extend_from_slice(&check(&secret[..]));
    let text = Zeroizing::new(BASE32_NOPAD.encode(&bytes));
    let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS + CODE_CHARS / GROUP));
    for (i, c) in text.chars().enumerate() {
        if i > 0 && i % GROUP == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// Parses a code as typed: case, spaces and dashes do not matter, and the digits a
/// person may read for the letters they look like (0 for O, 1 for I, 8 for B) are
/// taken as those letters.
pub fn decode_code(text: &str) -> Result<RecoveryCode, ClientError> {
    let bad = |reason: &'static str| ClientError::BadRecoveryCode { reason };
    if text.len() > MAX_RECOVERY_CODE_LEN {
        return Err(bad("too long"));
    }
    let mut chars = Zeroizing::new(String::with_capacity(CODE_CHARS));
    for c in text.chars() {
        match c.to_ascii_uppercase() {
            ' ' | '-' | '\t' | '\n' | '\r' => {}
            '0' => chars.push('O'),
            '1' => chars.push('I'),
            '8' => chars.push('B'),
            c @ ('A'..='Z' | '2'..='7') => chars.push(c),
            _ => return Err(bad("only letters and the digits 2 to 7 appear in a code")),
        }
    }
    if chars.len() != CODE_CHARS {
        return Err(bad(
            "a recovery code has 40 characters (eight groups of five)",
        ));
    }
    let bytes = Zeroizing::new(
        BASE32_NOPAD
            .decode(chars.as_bytes())
            .map_err(|_| bad("not a recovery code"))?,
    );
    let (secret, sum) = bytes.split_at(RECOVERY_CODE_LEN);
    if check(secret)[..] != *sum {
        return Err(bad(
            "a character is wrong (the code's check does not match)",
        ));
    }
    RecoveryCode::from_slice(secret).map_err(|_| bad("not a recovery code"))
}

impl Device {
    /// Creates a recovery code for this identity and returns it, to be shown once:
    /// the root key sealed to the code's recovery key goes to the relay's slot, the
    /// key's public half into the roster, and a first state is written. A new code
    /// replaces the old one, which stops working. Needs the root key (the primary in
    /// `primary-root`).
    pub async fn set_up_recovery(&self) -> Result<Zeroizing<String>, ClientError> {
        let me = self.me();
        let root = me
            .identity
            .root()
            .ok_or(ClientError::NotPrimary("set up recovery"))?;
        let code = RecoveryCode::generate(&mut self.rng());
        let key = code.key().public_key();
        let kit = self.seal_kit(&key, root)?;
        let kit_hash: [u8; 32] = Sha256::digest(&kit).into();
        // The slot first: a roster naming a key whose slot is missing would have every
        // device fail to write its state. The relay takes it on the root-signed entry
        // (built on the roster as folded; the one appended is built again if the roster
        // moved meanwhile, naming the same key and slot).
        let now = u64::try_from(self.now()).unwrap_or(0);
        self.sync_log().await?;
        let proof = self
            .roster()
            .await?
            .set_recovery_key(root, key, (code.slot(), kit_hash), now)
            .map_err(|e| ClientError::Corrupt(format!("roster: {e}")))?;
        self.relay
            .put_recovery_kit(Id32(code.slot()), kit, proof.as_bytes())
            .await?;
        self.append_roster_change(|roster| {
            let entry = roster
                .set_recovery_key(root, key, (code.slot(), kit_hash), now)
                .map_err(|e| ClientError::Corrupt(format!("roster: {e}")))?;
            Ok(vec![EventKind::Roster {
                entry: entry.as_bytes().to_vec(),
            }])
        })
        .await?;
        self.refresh_recovery().await?;
        Ok(encode_code(&code))
    }

    /// The kit: `root` sealed to the recovery key.
    pub(crate) fn seal_kit(
        &self,
        key: &DeviceDhPublic,
        root: &RootSigningKey,
    ) -> Result<Vec<u8>, ClientError> {
        chorus_crypto::seal(
            key,
            &ad(KIT_AD, &self.log.keys.log_id),
            &root.to_secret_bytes()[..],
            &mut self.rng(),
        )
        .map_err(|_| ClientError::Corrupt("recovery key".into()))
    }

    /// Writes the recovery state as of now (if the identity has a recovery key): the
    /// provisioning bundle without the root, sealed to the recovery key, naming a fresh
    /// checkpoint. Returns whether there was a key to write it for.
    pub(crate) async fn refresh_recovery(&self) -> Result<bool, ClientError> {
        let Some(key) = self.roster().await?.recovery_key().copied() else {
            return Ok(false);
        };
        let bundle = self.provisioning_bundle(false, false).await?;
        let sealed = chorus_crypto::seal(
            &key,
            &ad(STATE_AD, &self.log.keys.log_id),
            &bundle.encode(),
            &mut self.rng(),
        )
        .map_err(|_| ClientError::Corrupt("recovery key".into()))?;
        self.relay
            .put_recovery_state(sealed, Id32(bundle.checkpoint))
            .await?;
        self.store.set_recovery_written(bundle.epoch).await?;
        Ok(true)
    }

    /// [`Self::refresh_recovery`] when this device holds a newer epoch key than the
    /// last state it wrote (after a rotation), so the state always opens the log.
    pub(crate) async fn refresh_recovery_if_due(&self) -> Result<(), ClientError> {
        if self.roster().await?.recovery_key().is_none() {
            return Ok(());
        }
        let (epoch, _) = self.log.epoch_key().await?;
        if self.store.recovery_written().await? < Some(epoch) {
            self.refresh_recovery().await?;
        }
        Ok(())
    }

    /// Whether the identity has a recovery code (a recovery key in the roster).
    pub async fn has_recovery_code(&self) -> Result<bool, ClientError> {
        Ok(self.roster().await?.recovery_key().is_some())
    }

    /// Appends the roster change `plan` decides on the roster as folded: its records
    /// in one atomic append, the first guarded on the roster stream, deciding again on
    /// the new roster whenever another device changed it first. No records: nothing to
    /// do.
    pub(crate) async fn append_roster_change(
        &self,
        mut plan: impl FnMut(&Roster) -> Result<Vec<EventKind>, ClientError>,
    ) -> Result<(), ClientError> {
        for _ in 0..APPEND_ATTEMPTS {
            self.sync_log().await?;
            let mut records = plan(&self.roster().await?)?.into_iter();
            let Some(first) = records.next() else {
                return Ok(());
            };
            let pending = std::iter::once(Pending::guarded(first, ROSTER_STREAM.to_vec(), None))
                .chain(records.map(Pending::free))
                .collect();
            if self.append(pending).await?.0 == Appended::Done {
                return Ok(());
            }
        }
        Err(ClientError::Contended)
    }

    /// The roster as folded.
    pub(crate) async fn roster(&self) -> Result<Roster, ClientError> {
        let mut conn = self.store.pool().acquire().await?;
        load_roster(&mut conn, &self.log.keys.log_id).await
    }

    /// After a recovery: authorizes this device (unless the roster already holds it),
    /// makes it the primary, and revokes the primary it replaces.
    async fn take_over(
        &self,
        root: &RootSigningKey,
        (me, me_dh, name): (DevicePublicKey, DeviceDhPublic, &str),
    ) -> Result<Option<Revoked>, ClientError> {
        let mut lost = None;
        let now = u64::try_from(self.now()).unwrap_or(0);
        let refused = |e: chorus_core::RosterError| ClientError::LinkRefused(e.to_string());
        self.append_roster_change(|roster| {
            let mut roster = roster.clone();
            lost = roster.primary().copied().filter(|p| *p != me);
            let mut entries = Vec::new();
            if !roster.is_authorized(&me) {
                let e = roster
                    .authorize(&RosterSigner::Root(root), me, me_dh, name, now)
                    .map_err(refused)?;
                roster.apply(&e).map_err(refused)?;
                entries.push(e);
            }
            if lost.is_some() {
                entries.push(roster.move_primary(root, me, now).map_err(refused)?);
            }
            // The entries chain, and nothing another device appends lands between them.
            Ok(entries
                .iter()
                .map(|e| EventKind::Roster {
                    entry: e.as_bytes().to_vec(),
                })
                .collect())
        })
        .await?;
        match lost {
            Some(lost) => Ok(Some(
                self.revoke_device(&hex::encode(lost.as_bytes())).await?,
            )),
            None => Ok(None),
        }
    }
}

/// A device that recovered its identity.
pub struct Recovered {
    /// The device, primary now.
    pub device: Device,
    /// The primary it replaced, revoked (`None` if this device was already it).
    pub revoked: Option<Revoked>,
}

/// What the slot gave, checked to be one identity.
struct Found {
    log_id: Id32,
    root: RootSigningKey,
    bundle: ProvisioningBundle,
    checkpoint: chorus_wire::Checkpoint,
    roster: Roster,
}

/// Reads and checks the slot the code names; changes nothing.
async fn find(relay: &RelayClient, code: &RecoveryCode) -> Result<Found, ClientError> {
    let slot = Id32(code.slot());
    let found = relay
        .recovery_slot(slot)
        .await
        .map_err(|e| match e.code() {
            Some("not_found") => ClientError::UnknownRecoveryCode,
            _ => ClientError::Relay(e),
        })?;
    let key = code.key();
    let log_id = found.log_id;
    let root = chorus_crypto::open_sealed(&key, &ad(KIT_AD, &log_id), &found.kit.0)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(&b[..]).ok().map(Zeroizing::new))
        .map(|b| RootSigningKey::from_secret_bytes(&b))
        .ok_or(ClientError::RecoveryProtocol(
            "the recovery kit does not open with this code",
        ))?;
    let state = found.state.ok_or(ClientError::RecoveryProtocol(
        "no device has written the recovery state yet (run `chorus sync` on one)",
    ))?;
    let plain =
        chorus_crypto::open_sealed(&key, &ad(STATE_AD, &log_id), &state.0).map_err(|_| {
            ClientError::RecoveryProtocol("the recovery state does not open with this code")
        })?;
    let bundle = ProvisioningBundle::decode(&plain)
        .map_err(|_| ClientError::RecoveryProtocol("a malformed recovery state"))?;
    let keys = IdentityKeys::decode(&bundle.identity_keys)
        .map_err(|_| ClientError::RecoveryProtocol("the identity keys do not verify"))?;
    if bundle.log_id != log_id.0
        || keys.root != root.public_key()
        || keys.dh != bundle.dh.public_key()
    {
        return Err(ClientError::RecoveryProtocol(
            "the recovery kit and state are not one identity",
        ));
    }
    let sealed = relay.recovery_checkpoint(slot).await?;
    let checkpoint = open_checkpoint(
        &EpochKey::from_bytes(&bundle.epoch_key),
        &bundle.checkpoint,
        &sealed,
    )?;
    let roster = Roster::validate_chain(log_id.0, &checkpoint.rows().roster)
        .map_err(|_| ClientError::RecoveryProtocol("the checkpoint's roster does not validate"))?;
    if *roster.root() != root.public_key() {
        return Err(ClientError::RecoveryProtocol(
            "the checkpoint is another identity's",
        ));
    }
    Ok(Found {
        log_id,
        root,
        bundle,
        checkpoint,
        roster,
    })
}

/// Becomes the identity whose recovery code `code` is, as a new device named
/// `device_name` in `home`: the primary, with the lost primary revoked. Everything the
/// relay holds is checked before `home` is created, so a wrong code (or a slot someone
/// tampered with) changes nothing. `progress` hears the catch-up from the checkpoint.
pub async fn recover(
    home: &std::path::Path,
    unlock: Unlock,
    relay_url: &str,
    code: &str,
    device_name: &str,
    options: Options,
    mut progress: impl FnMut(CatchUp),
) -> Result<Recovered, ClientError> {
    let device_name = &chorus_wire::normalize_display_name(device_name);
    chorus_wire::check_display_name("device name", device_name)?;
    let code = decode_code(code)?;
    let relay_url = normalize_url(relay_url)?;
    if Device::exists(home) {
        return Err(ClientError::AlreadyInitialized(home.to_owned()));
    }
    let relay = RelayClient::new(&relay_url, options.backoff)?;
    let Found {
        log_id,
        root,
        bundle,
        checkpoint,
        roster,
    } = find(&relay, &code).await?;
    // Checked: from here on this device becomes the identity.
    let device = DeviceSigningKey::generate(&mut options.entropy.rng());
    let device_dh = DeviceDhSecret::generate(&mut options.entropy.rng());
    let me = device.public_key();
    let me_dh = device_dh.public_key();
    let now = u64::try_from(options.clock.now_ms()).unwrap_or(0);
    // The relay registers this device on a root-signed entry for it, through the slot.
    let entry = roster
        .authorize(&RosterSigner::Root(&root), me, me_dh, device_name, now)
        .map_err(|e| ClientError::LinkRefused(e.to_string()))?;
    relay
        .recover_device(Id32(code.slot()), Id32(*me.as_bytes()), entry.as_bytes())
        .await?;
    // The checkpoint's roster (whose root is the kit's: `find`) starts at the log's
    // genesis: the identity's roots since, rolls included, are this log's.
    let (genesis, head) = log_genesis(&relay, log_id, &device).await?;
    if checkpoint.rows().roster.first() != Some(&genesis) {
        return Err(ClientError::RecoveryProtocol(
            "the log's genesis is not the checkpoint's",
        ));
    }
    // Only now the home: a refusal up to here leaves nothing on this machine.
    let store = open_pending_home(home, unlock, &options).await?;
    let secrets = IdentitySecrets {
        root: Some(root),
        keys: bundle.identity_keys,
        dh: bundle.dh,
        device,
        device_dh,
    };
    let login_key = IdentitySecrets::from_bytes(&secrets.to_bytes()?)?.device;
    let relay = relay.with_login(Login {
        log_id,
        device: Arc::new(login_key),
    });
    let applied = checkpoint.rows().applied_seq;
    let device = Device::create_store(
        store,
        home,
        &bundle.relay_url,
        &bundle.name,
        log_id,
        Id32(bundle.intro_mailbox),
        secrets,
        (bundle.epoch, EpochKey::from_bytes(&bundle.epoch_key)),
        &checkpoint.rows().roster,
        applied,
        relay,
        options,
        Some(&checkpoint),
    )
    .await?;
    mark_pending(home, false)?;
    let total = u64::try_from(head.saturating_sub(applied)).unwrap_or(0);
    device.catch_up_log(applied, total, &mut progress).await?;
    let held = device.me();
    let root = held
        .identity
        .root()
        .ok_or_else(|| ClientError::Corrupt("recovered root".into()))?;
    let revoked = device.take_over(root, (me, me_dh, device_name)).await?;
    device.refresh_recovery().await?;
    device.sync().await?;
    Ok(Recovered { device, revoked })
}

/// The log's genesis and head, read with a session of the registered device.
async fn log_genesis(
    relay: &RelayClient,
    log_id: Id32,
    device: &DeviceSigningKey,
) -> Result<(Vec<u8>, i64), ClientError> {
    let copy = DeviceSigningKey::from_secret_bytes(&device.to_secret_bytes());
    let relay = relay.clone().with_login(Login {
        log_id,
        device: Arc::new(copy),
    });
    let info = relay.log_info().await?;
    Ok((info.genesis.0, info.head_seq))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_code_round_trips_as_typed_and_a_typo_is_caught() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
        let code = RecoveryCode::generate(&mut rng);
        let text = encode_code(&code);
        assert_eq!(text.len(), 8 * GROUP + 7);
        assert_eq!(text.split('-').count(), 8);
        let back = decode_code(&text.to_lowercase().replace('-', " ")).unwrap();
        assert_eq!(back.slot(), code.slot());
        // One character changed: the check catches it.
        let mut typo: Vec<char> = text.chars().collect();
        typo[3] = if typo[3] == 'A' { 'C' } else { 'A' };
        let typo: String = typo.into_iter().collect();
        assert!(matches!(
            decode_code(&typo),
            Err(ClientError::BadRecoveryCode { reason }) if reason.contains("wrong")
        ));
        assert!(matches!(
            decode_code(&text[..text.len() - 6]),
            Err(ClientError::BadRecoveryCode { reason }) if reason.contains("40 characters")
        ));
        assert!(matches!(
            decode_code("ABCDE-9BCDE"),
            Err(ClientError::BadRecoveryCode { reason }) if reason.contains("digits")
        ));
        assert!(matches!(
            decode_code(&"A".repeat(MAX_RECOVERY_CODE_LEN + 1)),
            Err(ClientError::BadRecoveryCode { reason: "too long" })
        ));
    }
}
