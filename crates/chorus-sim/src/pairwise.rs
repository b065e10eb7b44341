//! One device's `per-device` state (Signal's Sesame), driven by the same core calls the
//! client makes (`chorus_core::per_device`): its own prekeys, its sessions with the
//! contact's devices (never in the log), the contact's list as accepted, and the copies
//! of each pending message once encrypted (kept, as the client keeps them, until the
//! relay has them). The device (`device.rs`) asks it what to request next and hands it
//! the relay's answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chorus_core::per_device::{self, Pairwise, PeerSessions, accept_list, plan_send};
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
    bundles: BTreeMap<[u8; 32], PrekeyBundle>,
    /// The contact's list was fetched since the last post.
    pub fresh: bool,
    /// A copy from a device the held list does not name waits for the list.
    pub mail_wants_list: bool,
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
            bundles: BTreeMap::new(),
            fresh: false,
            mail_wants_list: false,
            copies: BTreeMap::new(),
            posted: BTreeSet::new(),
            mismatches: 0,
        }
    }

    /// Takes the contact's list as the relay served it, with its devices' bundles.
    pub fn take_list(
        &mut self,
        list: DeviceList,
        bundles: crate::relay::Bundles,
    ) -> Result<(), String> {
        if accept_list(self.list.as_ref(), &list).map_err(|e| e.to_string())? {
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
        for d in &plan.retire {
            if let Some((m, _)) = self.sessions.get_mut(d) {
                m.retired_ms = Some(plan.retire_at);
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
            let bytes = per_device::encrypt_copy(s.current(), me, text, sent_ms, None, rng)
                .map_err(|e| e.to_string())?;
            copies.push((device, generation, bytes));
        }
        Ok(Some(copies))
    }

    /// Reads a copy: `Ok(None)` when it comes from a device the held list does not
    /// name and the list was not fetched since (fetch it, then read again).
    pub fn open(&mut self, bytes: &[u8]) -> Result<Option<Payload>, String> {
        let Ok(Envelope::Copy {
            sender_device,
            initial,
            message,
        }) = Envelope::decode(bytes)
        else {
            return Err("not a per-device copy".into());
        };
        if let Some((_, s)) = self.sessions.get_mut(&sender_device) {
            match s.open(initial, &message) {
                Ok(p) => return Ok(Some(p)),
                Err(e) if !initial => return Err(e.to_string()),
                Err(_) => {}
            }
        } else if !initial {
            return Err("a copy on no session with its device".into());
        }
        let Some(listed) = self
            .list
            .as_ref()
            .and_then(|l| l.get(&sender_device))
            .copied()
        else {
            if self.fresh {
                return Err("a copy from a device the contact does not list".into());
            }
            self.mail_wants_list = true;
            return Ok(None);
        };
        let r = respond(&self.identity, &self.prekeys, &message).map_err(|e| e.to_string())?;
        let payload = Payload::decode(&r.plaintext).map_err(|e| e.to_string())?;
        match self.sessions.get_mut(&sender_device) {
            Some((_, s)) if s.has_handshake(r.session.handshake_base_key()) => {
                return Err("a first copy replayed".into());
            }
            Some((m, s)) => {
                *m = Pairwise::current(listed.generation);
                s.adopt(r.session);
            }
            None => {
                let s = PeerSessions::new(r.session);
                self.sessions
                    .insert(sender_device, (Pairwise::current(listed.generation), s));
            }
        }
        Ok(Some(payload))
    }

    /// A message's `Sent` folded: nothing of it is kept.
    pub fn done(&mut self, envelope_id: &[u8; 16]) {
        self.copies.remove(envelope_id);
        self.posted.remove(envelope_id);
    }
}
