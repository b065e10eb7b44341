//! One device's `per-device` state (Signal's Sesame), driven by the same core calls the
//! client makes (`chorus_core::per_device`): its own prekeys, its sessions with the
//! contact's devices (never in the log), the contact's list as accepted, and the copies
//! of each pending message once encrypted (kept, as the client keeps them, until the
//! relay has them). The device (`device.rs`) asks it what to request next and hands it
//! the relay's answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chorus_core::per_device::{
    self, Pairwise, PeerSessions, accept_list, dropped, first_copy, plan_send,
};
use chorus_core::{LocalIdentity, MemoryPrekeyStore, initiate, respond};
use chorus_wire::{DeviceList, Envelope, Payload, PrekeyBundle};
use rand::rngs::StdRng;

/// A message's copies: `(device, generation, bytes)`.
pub type Copies = Vec<([u8; 32], u32, Vec<u8>)>;

/// What a device keeps for `per-device`.
pub struct PerDevice {
    identity: Arc<LocalIdentity>,
    prekeys: MemoryPrekeyStore,
    sessions: BTreeMap<[u8; 32], (Pairwise, PeerSessions)>,
    list: Option<DeviceList>,
    /// Devices a newer list dropped: their generation, and when they stopped.
    dropped: BTreeMap<[u8; 32], (u32, u64)>,
    bundles: BTreeMap<[u8; 32], PrekeyBundle>,
    /// The contact's list was fetched since the last post.
    pub fresh: bool,
    /// A page of copies read, waiting for the contact's list: every page is read
    /// against a list fetched after it (the client fetches it once per page of copies),
    /// so a copy from a device the list does not name is refused, never waited on.
    pub held: Vec<crate::relay::Letter>,
    /// Encrypted copies per pending envelope id.
    pub copies: BTreeMap<[u8; 16], Copies>,
    /// Messages whose copies the relay has, their `Sent` not yet folded.
    pub posted: BTreeSet<[u8; 16]>,
    /// Posts refused for a changed device set.
    pub mismatches: u64,
}

impl PerDevice {
    /// A device's state with its own prekeys (the bundle it published).
    pub fn new(identity: Arc<LocalIdentity>, prekeys: MemoryPrekeyStore) -> Self {
        Self {
            identity,
            prekeys,
            sessions: BTreeMap::new(),
            list: None,
            dropped: BTreeMap::new(),
            bundles: BTreeMap::new(),
            fresh: false,
            held: Vec::new(),
            copies: BTreeMap::new(),
            posted: BTreeSet::new(),
            mismatches: 0,
        }
    }

    /// Takes the contact's list as the relay served it, with its devices' bundles, at
    /// `now_ms`: sessions with devices it dropped retire as of when it was issued (from
    /// then on they read only what the relay took before), as the client's refresh does.
    pub fn take_list(
        &mut self,
        list: DeviceList,
        bundles: crate::relay::Bundles,
        now_ms: u64,
    ) -> Result<(), String> {
        if accept_list(self.list.as_ref(), &list).map_err(|e| e.to_string())? {
            let metas = self.sessions.iter().map(|(d, (m, _))| (*d, *m)).collect();
            let plan = plan_send(&list, &metas, now_ms);
            for (d, at) in &plan.retire {
                if let Some((m, _)) = self.sessions.get_mut(d) {
                    m.retired_ms = Some(*at);
                }
            }
            for d in dropped(self.list.as_ref(), &list, now_ms) {
                let e = self
                    .dropped
                    .entry(d.device)
                    .or_insert((d.generation, d.removed_ms));
                e.1 = e.1.min(d.removed_ms);
            }
            self.list = Some(list);
        }
        self.bundles.extend(bundles);
        self.fresh = true;
        Ok(())
    }

    /// Encrypts a copy of `text` per listed device, opening, retiring and dropping
    /// sessions as the core plans; `None` when a bundle is missing (fetch the list).
    pub fn seal(
        &mut self,
        me: [u8; 32],
        text: &str,
        sent_ms: u64,
        now_ms: u64,
        rng: &mut StdRng,
    ) -> Result<Option<Copies>, String> {
        let list = self.list.clone().ok_or("no device list for the contact")?;
        let metas = self.sessions.iter().map(|(d, (m, _))| (*d, *m)).collect();
        let plan = plan_send(&list, &metas, now_ms);
        for d in &plan.open {
            let Some(bundle) = self.bundles.get(&d.device) else {
                self.fresh = false;
                return Ok(None);
            };
            let s = initiate(&self.identity, bundle, rng).map_err(|e| e.to_string())?;
            self.sessions.insert(
                d.device,
                (Pairwise::current(d.generation), PeerSessions::new(s)),
            );
        }
        for (d, at) in &plan.retire {
            if let Some((m, _)) = self.sessions.get_mut(d) {
                m.retired_ms = Some(*at);
            }
        }
        for d in &plan.drop {
            self.sessions.remove(d);
        }
        let mut copies = Vec::with_capacity(plan.copies.len());
        for (device, generation) in plan.copies {
            let (_, s) = self
                .sessions
                .get_mut(&device)
                .ok_or("a planned session is missing")?;
            let bytes = per_device::encrypt_copy(s.current(), me, (text, None), sent_ms, None, rng)
                .map_err(|e| e.to_string())?;
            copies.push((device, generation, bytes));
        }
        Ok(Some(copies))
    }

    /// Reads a copy the relay took at `received_ms`, at `now_ms`, against the list
    /// fetched after it. A session retired (its device dropped from the list) reads
    /// only what the relay took before the list was issued.
    pub fn open(&mut self, bytes: &[u8], received_ms: u64, now_ms: u64) -> Result<Payload, String> {
        let Ok(Envelope::Copy {
            sender_device,
            initial,
            message,
        }) = Envelope::decode(bytes)
        else {
            return Err("not a per-device copy".into());
        };
        if let Some((m, s)) = self.sessions.get_mut(&sender_device) {
            if !m.accepts(received_ms, now_ms) {
                if !initial {
                    return Err("a copy from a device the contact removed".into());
                }
            } else {
                match s.open(initial, &message) {
                    Ok(p) => return Ok(p),
                    Err(e) if !initial => return Err(e.to_string()),
                    Err(_) => {}
                }
            }
        } else if !initial {
            return Err("a copy on no session with its device".into());
        }
        let list = self.list.as_ref().ok_or("no device list for the contact")?;
        let dropped = self.dropped.get(&sender_device).copied();
        let Some(meta) = first_copy(list, dropped, &sender_device, received_ms, now_ms) else {
            return Err("a copy from a device the contact does not list".into());
        };
        let r = respond(&self.identity, &self.prekeys, &message).map_err(|e| e.to_string())?;
        let payload = Payload::decode(&r.plaintext).map_err(|e| e.to_string())?;
        match self.sessions.get_mut(&sender_device) {
            Some((_, s)) if s.has_handshake(r.session.handshake_base_key()) => {
                return Err("a first copy replayed".into());
            }
            Some((m, s)) => {
                *m = meta;
                s.adopt(r.session);
            }
            None => {
                let s = PeerSessions::new(r.session);
                self.sessions.insert(sender_device, (meta, s));
            }
        }
        Ok(payload)
    }

    /// A message's `Sent` folded: nothing of it is kept.
    pub fn done(&mut self, envelope_id: &[u8; 16]) {
        self.copies.remove(envelope_id);
        self.posted.remove(envelope_id);
    }
}
