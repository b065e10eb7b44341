//! `per-device` (Signal's Sesame) on this device: publishing its own bundle and the
//! identity's device list, sending a message as one copy per contact device, and
//! reading a copy. The decisions — which list to accept, which sessions to open,
//! retire or drop, what a refusal means, what the identity's list is — are
//! `chorus_core::per_device`'s; this module fetches, persists and posts.
//!
//! Order on a send, so that a crash anywhere loses nothing and never uses a message
//! key twice: the pairwise sessions move and the copies are stored (one local
//! transaction, holding the store's write lock from reading the sessions to writing
//! them) *before* the copies leave; a retry posts the same copies; the log learns of
//! the send (`Sent`, transcript only, for the siblings' histories) after the relay
//! has it. A refusal (`device_mismatch`) drops the copies — their keys never reached
//! the wire — and the send plans again on the list the relay holds now.
//!
//! Toward a contact that publishes no device list (it does not run `per-device`) a
//! device sends on the identity's shared session, as `sequenced` does: both sides
//! must run `per-device` for it to apply (docs/strategies.md).

use std::collections::BTreeMap;

use chorus_core::per_device::{
    self, MAX_MISMATCH_RETRIES, Pairwise, PeerSessions, Refused, accept_list, after_refusal,
    dropped, first_copy, plan_send,
};
use chorus_core::{Strategy, initiate, respond};
use chorus_crypto::{PqPrekeySecret, RootPublicKey, SignedPrekeySecret};
use chorus_relay_api::{
    DeviceCopy, EnvelopeOut, HexBytes, Id16, Id32, PostDeviceEnvelopesRequest,
    PublishPrekeysRequest,
};
use chorus_wire::{
    DeviceList, EventKind, IdentityKeys, ListedDevice, Payload, PqPrekey, PrekeyBundle,
    SecretBytes, SentMessage, SignedPrekey,
};
use sqlx::SqliteConnection;

use super::Device;
use crate::log::Pending;
use crate::relay::{RelayClient, RelayError};
use crate::store::contacts::ContactRow;
use crate::store::history::PendingSend;
use crate::store::per_device::{PQ_ID, PairwiseRow, SIGNED_ID};
use crate::{ClientError, Event};

/// What one send's plan fetched before taking the store's lock: a bundle per contact
/// device to open a session with.
type Fetched = BTreeMap<[u8; 32], PrekeyBundle>;

impl Device {
    /// Under `per-device`: this device's own bundle is published at its address, and
    /// the identity's device list at the home relay names every current device whose
    /// bundle is there. Needs the root key (every device holds it in `shared-root`).
    pub(crate) async fn publish_per_device(&self) -> Result<(), ClientError> {
        if self.strategy().await? != Strategy::PerDevice {
            return Ok(());
        }
        let me = self.me();
        let root = me
            .identity
            .root()
            .ok_or(ClientError::StrategyNeedsSharedRoot(Strategy::PerDevice))?;
        let (log_id, device) = (self.log.keys.log_id.0, self.log.keys.device);
        let prekeys = match self.store.device_prekeys().await? {
            Some(p) => p,
            None => {
                // Private halves are stored before the public ones are published.
                let signed = SignedPrekeySecret::generate(&mut self.rng());
                let signed_public = SignedPrekey::sign(root, SIGNED_ID, signed.public_key());
                let pq = PqPrekeySecret::generate(&mut self.rng());
                let pq_public = PqPrekey::sign(root, PQ_ID, pq.public_key(), true);
                self.store
                    .put_device_prekeys((signed, signed_public.encode()), (pq, pq_public.encode()))
                    .await?;
                self.store
                    .device_prekeys()
                    .await?
                    .ok_or_else(|| ClientError::Corrupt("device prekeys".into()))?
            }
        };
        // A list naming every device of this roster is at the relay: nothing to do
        // (a sync then costs no request here until a device is added or revoked).
        let full = self
            .log
            .with_state(|s| per_device::own_list(s.roster(), &log_id, |_| true).serial)
            .await?;
        if self.store.listed_serial().await? == Some(full) {
            return Ok(());
        }
        let ours = per_device::prekey_address(&log_id, &device);
        if self.relay.prekey_count(Id32(ours)).await.is_err() {
            let keys = PublishPrekeysRequest {
                signed_prekey: Some(HexBytes(prekeys.signed_public.clone())),
                pq_last_resort: Some(HexBytes(prekeys.pq_public.clone())),
                ..PublishPrekeysRequest::default()
            };
            self.relay.publish_prekeys(Id32(ours), &keys).await?;
        }
        // Which siblings have published (a contact cannot open a session with a device
        // whose bundle is not there yet): the relay's word, about our own addresses.
        let roster: Vec<[u8; 32]> = self
            .log
            .with_state(|s| {
                s.roster()
                    .devices()
                    .iter()
                    .map(|d| *d.key.as_bytes())
                    .collect()
            })
            .await?;
        let mut published = Vec::new();
        for d in roster {
            let address = per_device::prekey_address(&log_id, &d);
            if d == device || self.relay.prekey_count(Id32(address)).await.is_ok() {
                published.push(d);
            }
        }
        let own = self
            .log
            .with_state(|s| per_device::own_list(s.roster(), &log_id, |d| published.contains(d)))
            .await?;
        let serial = own.serial;
        let list = own.sign(root, self.now_u64())?;
        match self.relay.put_device_list(list.encode()).await {
            // A sibling published this list (or a newer one) first.
            Err(e) if e.code() == Some("stale_device_list") => {}
            r => r?,
        }
        if serial == full {
            self.store.set_listed_serial(serial).await?;
        }
        Ok(())
    }

    /// Sends `pending` as one copy per device of the contact, if it runs
    /// `per-device`; `Ok(false)` when it publishes no device list, or we still write to
    /// its invitation's mailbox (which takes one sender's envelopes, before it
    /// answered): the caller sends on the shared session.
    pub(super) async fn send_per_device(
        &self,
        pending: &PendingSend,
        row: &ContactRow,
    ) -> Result<bool, ClientError> {
        if row.invitation_claim.is_some() {
            return Ok(false);
        }
        let relay = RelayClient::foreign(&row.relay_url, self.options.backoff, self.url_policy())?;
        let mailbox = super::id32(&row.send_mailbox)?;
        let identity = self.contact_identity_keys(&pending.contact).await?;
        for attempt in 0..MAX_MISMATCH_RETRIES {
            let request = match self
                .store
                .pending_copies(self.store.pool(), &pending.envelope_id)
                .await?
            {
                // Encrypted before (a crash, an unreachable relay): the same bytes.
                Some(copies) => serde_json::from_slice(&copies)
                    .map_err(|_| ClientError::Corrupt("pending copies".into()))?,
                None => {
                    let Some(list) = contact_list(&relay, mailbox, &identity).await? else {
                        return Ok(false);
                    };
                    let fetched = self.fetch_bundles(&relay, row, &identity, &list).await?;
                    match self.seal_copies(pending, row, &list, &fetched).await? {
                        Some(request) => {
                            crate::handle::failpoint("after-copies");
                            request
                        }
                        // The store moved between fetching and locking: plan again.
                        None => continue,
                    }
                }
            };
            match relay.post_device_envelopes(mailbox, &request).await {
                Ok(_) => {
                    self.log_copies_sent(pending, row).await?;
                    return Ok(true);
                }
                Err(RelayError::DeviceMismatch { mismatch, .. }) => {
                    // Nothing was stored: these copies' keys never reached the wire.
                    let mut tx = self.store.begin().await?;
                    self.store
                        .set_pending_copies(&mut tx, &pending.envelope_id, None)
                        .await?;
                    tx.commit().await?;
                    tracing::debug!(?mismatch, "the contact's devices changed; planning again");
                    if let Refused::GiveUp(why) = after_refusal(&mismatch, attempt) {
                        return Err(ClientError::Rejected(why));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClientError::Rejected(
            "the contact's device list kept changing",
        ))
    }

    /// The contact's identity keys as pinned.
    pub(super) async fn contact_identity_keys(
        &self,
        contact: &str,
    ) -> Result<IdentityKeys, ClientError> {
        let (identity, _) = self
            .store
            .contact_identity(contact)
            .await?
            .ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?;
        Ok(IdentityKeys::decode(&identity)?)
    }

    /// The bundles of the listed devices this device has no current session with
    /// (fetched before the store's lock is taken: no network inside a transaction).
    async fn fetch_bundles(
        &self,
        relay: &RelayClient,
        row: &ContactRow,
        identity: &IdentityKeys,
        list: &DeviceList,
    ) -> Result<Fetched, ClientError> {
        let sessions = {
            let mut conn = self.store.pool().acquire().await?;
            self.meta_of(&mut conn, &row.root).await?
        };
        let plan = plan_send(list, &sessions, self.now_u64());
        let mut fetched = Fetched::new();
        for d in plan.open {
            fetched.insert(d.device, fetch_bundle(relay, identity, &d).await?);
        }
        Ok(fetched)
    }

    async fn meta_of(
        &self,
        conn: &mut SqliteConnection,
        contact: &[u8; 32],
    ) -> Result<BTreeMap<[u8; 32], Pairwise>, ClientError> {
        Ok(self
            .store
            .pairwise(conn, contact)
            .await?
            .into_iter()
            .map(|(d, r)| (d, r.meta))
            .collect())
    }

    /// Under the store's write lock: accepts the list, opens, retires and drops
    /// sessions as planned, encrypts a copy per listed device and stores the moved
    /// sessions with the copies. `None` if the plan needs a bundle not fetched (a
    /// concurrent send on this home moved the sessions first).
    async fn seal_copies(
        &self,
        pending: &PendingSend,
        row: &ContactRow,
        list: &DeviceList,
        fetched: &Fetched,
    ) -> Result<Option<PostDeviceEnvelopesRequest>, ClientError> {
        let now = self.now_u64();
        let mut tx = self.store.begin().await?;
        // Another process on this home may have encrypted it meanwhile.
        if let Some(copies) = self
            .store
            .pending_copies(&mut *tx, &pending.envelope_id)
            .await?
        {
            return Ok(Some(
                serde_json::from_slice(&copies)
                    .map_err(|_| ClientError::Corrupt("pending copies".into()))?,
            ));
        }
        let root = RootPublicKey::from_bytes(row.root)
            .map_err(|_| ClientError::Corrupt("contact root".into()))?;
        let held = self
            .store
            .contact_device_list(&mut tx, &row.root, &root)
            .await?;
        if accept_list(held.as_ref(), list).map_err(|e| ClientError::DeviceList(e.to_string()))? {
            self.store
                .put_contact_device_list(&mut tx, &row.root, list)
                .await?;
        }
        let mut sessions = self.store.pairwise(&mut tx, &row.root).await?;
        let metas = sessions.iter().map(|(d, r)| (*d, r.meta)).collect();
        let plan = plan_send(list, &metas, now);
        for d in &plan.open {
            let Some(bundle) = fetched.get(&d.device) else {
                return Ok(None);
            };
            let session = initiate(&self.me().identity, bundle, &mut self.rng())?;
            sessions.insert(
                d.device,
                PairwiseRow {
                    meta: Pairwise::current(d.generation),
                    sessions: PeerSessions::new(session),
                },
            );
        }
        for (d, at) in &plan.retire {
            if let Some(r) = sessions.get_mut(d) {
                r.meta.retired_ms = Some(*at);
            }
        }
        let me = self.log.keys.device;
        let sent_ms = u64::try_from(pending.created_ms).unwrap_or(0);
        let hello = self.hello_until_acked(row)?;
        let mut copies = Vec::with_capacity(plan.copies.len());
        for (device, generation) in &plan.copies {
            let r = sessions
                .get_mut(device)
                .ok_or_else(|| ClientError::Corrupt("a planned session is missing".into()))?;
            let bytes = per_device::encrypt_copy(
                r.sessions.current(),
                me,
                (&pending.text, pending.file.as_ref()),
                sent_ms,
                hello.clone(),
                &mut self.rng(),
            )?;
            copies.push(DeviceCopy {
                device: Id32(*device),
                generation: *generation,
                payload: HexBytes(bytes),
            });
        }
        for (device, r) in &sessions {
            if plan.drop.contains(device) {
                self.store.drop_pairwise(&mut tx, &row.root, device).await?;
            } else {
                self.store
                    .put_pairwise(&mut tx, &row.root, device, r)
                    .await?;
            }
        }
        let request = PostDeviceEnvelopesRequest {
            envelope_id: Id16(pending.envelope_id),
            copies,
        };
        let encoded = serde_json::to_vec(&request)
            .map_err(|_| ClientError::Corrupt("pending copies".into()))?;
        self.store
            .set_pending_copies(&mut tx, &pending.envelope_id, Some(&encoded))
            .await?;
        tx.commit().await?;
        Ok(Some(request))
    }

    /// The send, for the siblings' histories: the transcript alone, delivered (the
    /// relay has the copies). Folding it ends the pending row on every device.
    async fn log_copies_sent(
        &self,
        pending: &PendingSend,
        row: &ContactRow,
    ) -> Result<(), ClientError> {
        let sent = SentMessage {
            contact: row.root,
            envelope_id: pending.envelope_id,
            relay_url: row.relay_url.clone(),
            mailbox: super::id32(&row.send_mailbox)?.0,
            envelope: Vec::new(),
            sent_ms: u64::try_from(pending.created_ms).unwrap_or(0),
            text: pending.text.clone(),
            file: pending.file.clone(),
            ratchet_delta: SecretBytes::new(Vec::new()),
            bundled: true,
            per_device: true,
        };
        self.append(vec![Pending::free(EventKind::Sent(Box::new(sent)))])
            .await?;
        Ok(())
    }

    /// Reads a copy from one of the contact's devices. A first copy opens a pairwise
    /// session with that device, only if the contact's list (refreshed before the
    /// transaction, [`Self::refresh_device_list`]) names it; a later one decrypts on the
    /// session, or on a retired one if the relay took it before the retirement.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn receive_copy(
        &self,
        tx: &mut SqliteConnection,
        mailbox: &Id32,
        name: &str,
        sender_device: [u8; 32],
        initial: bool,
        message: Vec<u8>,
        envelope: &EnvelopeOut,
    ) -> Result<Vec<Event>, ClientError> {
        let now = self.now();
        let row = self
            .store
            .contact_row(&mut *tx, name)
            .await?
            .ok_or_else(|| ClientError::UnknownContact(name.to_owned()))?;
        let identity = self.contact_identity_keys(name).await?;
        let mut sessions = self.store.pairwise(&mut *tx, &row.root).await?;
        let received = u64::try_from(envelope.received_ms).unwrap_or(u64::MAX);
        let mut pairwise = sessions.remove(&sender_device);
        // On the sessions with that device: its later copies, and its further initial
        // copies until it heard back from this device.
        let read = match pairwise.as_mut() {
            Some(r) if r.meta.accepts(received, self.now_u64()) => {
                match r.sessions.open(initial, &message) {
                    Ok(payload) => Some(payload),
                    Err(e) if !initial => return Err(e.into()),
                    // A new handshake from that device: it wrote first too, or started over.
                    Err(_) => None,
                }
            }
            Some(_) if !initial => {
                return Err(ClientError::Rejected(
                    "a per-device copy from a device the contact removed",
                ));
            }
            _ => None,
        };
        let payload = match read {
            Some(payload) => payload,
            None if initial => {
                let list = self
                    .store
                    .contact_device_list(&mut *tx, &row.root, &identity.root)
                    .await?
                    .ok_or(ClientError::Rejected(
                        "a per-device copy from a contact without a device list",
                    ))?;
                let dropped = self
                    .store
                    .dropped_device(&mut *tx, &row.root, &sender_device)
                    .await?;
                // Listed now, or dropped after the relay took this copy.
                let Some(meta) =
                    first_copy(&list, dropped, &sender_device, received, self.now_u64())
                else {
                    return Err(ClientError::Rejected(
                        "a per-device copy from a device the contact does not list",
                    ));
                };
                let prekeys = self
                    .store
                    .device_prekeys()
                    .await?
                    .ok_or(ClientError::Rejected(
                        "a per-device copy before this device published",
                    ))?;
                let responded = respond(&self.me().identity, &prekeys, &message)?;
                if responded.session.their_identity().map(|k| k.root) != Some(identity.root) {
                    return Err(ClientError::Rejected(
                        "a per-device copy from another identity than the contact's",
                    ));
                }
                let payload = Payload::decode(&responded.plaintext)?;
                match pairwise.as_mut() {
                    // A handshake already taken, offered again (a replay under another
                    // envelope id): it must not start the session over nor show twice.
                    Some(r)
                        if r.sessions
                            .has_handshake(responded.session.handshake_base_key()) =>
                    {
                        return Err(ClientError::Rejected("a per-device first copy replayed"));
                    }
                    // Both devices wrote first at once (or it started over): both
                    // sessions are kept, and this one is sent on from now.
                    Some(r) => {
                        r.meta = meta;
                        r.sessions.adopt(responded.session);
                    }
                    None => {
                        pairwise = Some(PairwiseRow {
                            meta,
                            sessions: PeerSessions::new(responded.session),
                        });
                    }
                }
                payload
            }
            None => {
                return Err(ClientError::Rejected(
                    "a per-device copy on no session with its device",
                ));
            }
        };
        let pairwise = pairwise.ok_or_else(|| ClientError::Corrupt("pairwise session".into()))?;
        self.store
            .put_pairwise(&mut *tx, &row.root, &sender_device, &pairwise)
            .await?;
        let row = self.take_hello(tx, name, &payload, mailbox).await?;
        self.deliver(tx, name, &payload, envelope, now, &row).await
    }

    /// Before copies are read: the contact's newest device list (network, before the
    /// receiving transaction), so a device it just linked is known, and the sessions
    /// with devices it removed or that started over retire now: from here on they read
    /// only what the relay took before.
    pub(super) async fn refresh_device_list(&self, name: &str) -> Result<(), ClientError> {
        let Some(row) = self.store.contact_row(self.store.pool(), name).await? else {
            return Ok(());
        };
        let identity = self.contact_identity_keys(name).await?;
        let relay = RelayClient::foreign(&row.relay_url, self.options.backoff, self.url_policy())?;
        let mailbox = super::id32(&row.send_mailbox)?;
        let Some(list) = contact_list(&relay, mailbox, &identity).await? else {
            return Ok(());
        };
        let mut tx = self.store.begin().await?;
        let held = self
            .store
            .contact_device_list(&mut tx, &row.root, &identity.root)
            .await?;
        let now = self.now_u64();
        if accept_list(held.as_ref(), &list).map_err(|e| ClientError::DeviceList(e.to_string()))? {
            for gone in dropped(held.as_ref(), &list, now) {
                self.store
                    .put_dropped_device(
                        &mut tx,
                        &row.root,
                        &gone.device,
                        gone.generation,
                        gone.removed_ms,
                        now.saturating_sub(per_device::STALE_SESSION_MS),
                    )
                    .await?;
            }
            self.store
                .put_contact_device_list(&mut tx, &row.root, &list)
                .await?;
        }
        let mut sessions = self.store.pairwise(&mut tx, &row.root).await?;
        let metas = sessions.iter().map(|(d, r)| (*d, r.meta)).collect();
        let plan = plan_send(&list, &metas, now);
        for (device, at) in plan.retire {
            if let Some(r) = sessions.get_mut(&device) {
                r.meta.retired_ms = Some(at);
                self.store
                    .put_pairwise(&mut tx, &row.root, &device, r)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Current pairwise sessions this device holds (`chorus strategy`).
    pub async fn pairwise_sessions(&self) -> Result<i64, ClientError> {
        self.store.pairwise_count().await
    }

    fn now_u64(&self) -> u64 {
        u64::try_from(self.now()).unwrap_or(0)
    }
}

/// One contact device's bundle at its address, every signature checked under the
/// contact's root.
async fn fetch_bundle(
    relay: &RelayClient,
    identity: &IdentityKeys,
    device: &ListedDevice,
) -> Result<PrekeyBundle, ClientError> {
    let fetched = relay.fetch_prekeys(Id32(device.prekey_address)).await?;
    let missing = || ClientError::Rejected("a listed device without its bundle");
    Ok(PrekeyBundle {
        identity: identity.clone(),
        signed_prekey: SignedPrekey::decode(
            &fetched.signed_prekey.ok_or_else(missing)?.0,
            &identity.root,
        )?,
        one_time_prekey: None,
        pq_prekey: PqPrekey::decode(&fetched.pq.ok_or_else(missing)?.0, &identity.root)?,
    })
}

/// The contact's device list as its relay serves it, verified under the contact's
/// root; `None` when it publishes none (it does not run `per-device`).
async fn contact_list(
    relay: &RelayClient,
    mailbox: Id32,
    identity: &IdentityKeys,
) -> Result<Option<DeviceList>, ClientError> {
    match relay.device_list(mailbox).await {
        Ok(bytes) => Ok(Some(DeviceList::decode(&bytes, &identity.root)?)),
        Err(e) if e.code() == Some("no_device_list") => Ok(None),
        Err(e) => Err(e.into()),
    }
}
