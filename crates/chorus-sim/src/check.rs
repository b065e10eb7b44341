//! The invariants, checked on every step and at the end of a run.
//!
//! On every step: a message is shown at most once per device, only on the devices of
//! the two identities it is between, with the text that was typed; no envelope is
//! refused for good by a device that should read it; no log record is refused (the
//! relay and the siblings are honest here); no AEAD key and nonce pair is used for two
//! envelopes, and — where the strategy promises it — no message key is used twice.
//!
//! At the end: every message that reached the log is shown on every surviving device
//! of both identities; a message typed on a device still alive reached the log; the
//! devices of each identity hold the same folded state and the same session; the
//! contact received exactly one envelope per message, whatever the device count, and
//! (but under `leaderless`) no fork of the ratchet, which one device never makes.
//!
//! A revoked device's clone: no contact device shows a clone message once its heal is
//! through — for the shared session, once it showed a message sent on a session whose
//! heal had settled (the peer built on the anchor; that message carries the floors that
//! close every key the clone holds); under `per-device`, once it took the identity's list
//! without the device, for every copy the relay took after that list was issued. What
//! the clone gets shown before the heal is counted; its refused envelopes are expected.

use std::collections::{BTreeMap, BTreeSet};

use chorus_wire::{Envelope, InitialMessage, RatchetHeader, RatchetMessage};

use crate::device::{Device, Seen, message_index};
use crate::relay::Relay;
use crate::{Stats, Strategy};

/// What the checks keep of a ratchet header: `(sender key, counter, parent key)`.
type Header = ([u8; 32], u32, Option<[u8; 32]>);

struct Msg {
    from: usize,
    choice: usize,
    text: String,
    typed: Option<(usize, u64)>,
    others_down: bool,
    unavailable: bool,
    escrowed: bool,
    /// Device → when shown.
    shown: BTreeMap<usize, u64>,
    /// When first shown on a device of the contact.
    received_ms: Option<u64>,
    /// Sent on a session whose heal after a revocation was through.
    heals: bool,
    /// Its envelope id (as last planned).
    envelope: Option<[u8; 16]>,
}

/// A stolen device's clone and what came of it.
#[derive(Default)]
struct CloneRun {
    /// The identity it was stolen from.
    ident: usize,
    /// Its envelopes (copies) as posted: id → (clone message number, relay time).
    posted: BTreeMap<[u8; 16], (u64, u64)>,
    /// Per mailbox, envelopes posted (the contact's count check leaves them out).
    per_mailbox: BTreeMap<usize, u64>,
    /// `per-device`: when the identity's list says the device was removed.
    removed_ms: Option<u64>,
    /// Contact device → when its heal was through.
    healed: BTreeMap<usize, u64>,
    /// Ratchet keys the clone sent on, and the `(key, counter)` pairs it used.
    keys: BTreeSet<[u8; 32]>,
    /// The identity's ratchet keys sent on before the device was revoked: the clone
    /// holds their private halves (a stolen device reads the log, where every
    /// secret is escrowed, until its revocation).
    held: BTreeSet<[u8; 32]>,
    /// The revocation is in the log.
    revoked: bool,
    /// The identity's envelopes logged before the revocation (their keys are held).
    logged: BTreeSet<[u8; 16]>,
    /// The identity's heal anchor reached the contact's mailbox.
    anchored: bool,
    /// The contact's envelopes built on a key the clone holds, posted after the
    /// anchor: its device, which had not read the anchor yet, built on a key the
    /// identity cut at the heal — from the relay's side indistinguishable from a
    /// clone's forgery on that key, so refused.
    cut: BTreeSet<[u8; 16]>,
    used: BTreeSet<([u8; 32], u32)>,
    /// The contact keys its new steps were built on, with the length each announced
    /// for the chain before (the contact closes that chain there, as for any step).
    steps: BTreeSet<([u8; 32], u32)>,
    /// Messages of the two identities the clone made unreadable before the heal (it
    /// used their message keys first, or the contact built them on its branch).
    stolen: u64,
    /// Clone envelopes shown before the heal.
    accepted: u64,
    /// Clone envelopes refused.
    refused: u64,
    /// Contact devices alive at the end whose heal never went through.
    unhealed: u64,
}

/// Every message of the run and what happened to it.
pub(crate) struct Ledger {
    strategy: Strategy,
    msgs: Vec<Msg>,
    /// `(sender key, counter)` → the envelope that used that message key.
    keys: BTreeMap<([u8; 32], u32), [u8; 16]>,
    /// `(sender key, counter, nonce)` → the envelope.
    nonces: BTreeMap<([u8; 32], u32, [u8; 12]), [u8; 16]>,
    /// Envelope ids per mailbox.
    posted: BTreeMap<usize, BTreeSet<[u8; 16]>>,
    /// `per-device`: the devices each message's copies went to, by envelope id.
    copied: BTreeMap<[u8; 16], BTreeSet<[u8; 32]>>,
    /// Peer ratchet key built on → our ratchet keys built on it (two or more: a fork).
    children: BTreeMap<[u8; 32], BTreeSet<[u8; 32]>>,
    /// Each envelope's ratchet header.
    headers: BTreeMap<[u8; 16], Header>,
    forks: u64,
    key_reuse: u64,
    lost: u64,
    stranded: u64,
    duplicated: u64,
    clone: Option<CloneRun>,
    violations: Vec<String>,
}

impl Ledger {
    pub(crate) fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            msgs: Vec::new(),
            keys: BTreeMap::new(),
            nonces: BTreeMap::new(),
            posted: BTreeMap::new(),
            copied: BTreeMap::new(),
            children: BTreeMap::new(),
            headers: BTreeMap::new(),
            forks: 0,
            key_reuse: 0,
            lost: 0,
            stranded: 0,
            duplicated: 0,
            clone: None,
            violations: Vec::new(),
        }
    }

    /// A message identity `from` will type; `length` picks its size. Its index.
    pub(crate) fn plan(&mut self, from: usize, length: usize) -> usize {
        let i = self.msgs.len();
        self.msgs.push(Msg {
            from,
            choice: length.wrapping_mul(7919).wrapping_add(i),
            text: format!("m{i}.{}", ".".repeat(length * 40)),
            typed: None,
            others_down: false,
            unavailable: false,
            escrowed: false,
            shown: BTreeMap::new(),
            received_ms: None,
            heals: false,
            envelope: None,
        });
        i
    }

    /// Message `msg` was planned (a send may be planned again after a lost race: the
    /// last plan is what was sent) on a session whose heal was through, or not.
    pub(crate) fn heals(&mut self, msg: usize, envelope: [u8; 16], healed: bool) {
        if let Some(m) = self.msgs.get_mut(msg) {
            m.heals = healed;
            m.envelope = Some(envelope);
        }
    }

    /// A device of identity `ident` was stolen: its clone starts sending, holding the
    /// private half of every key the identity sent on until it is revoked.
    pub(crate) fn stolen(&mut self, _dev: usize, ident: usize) {
        let held = self
            .posted
            .get(&(1 - ident))
            .into_iter()
            .flatten()
            .filter_map(|id| self.headers.get(id).map(|(sender, ..)| *sender))
            .collect();
        self.clone = Some(CloneRun {
            ident,
            held,
            ..CloneRun::default()
        });
    }

    /// The stolen device's revocation is in the log: from here on the identity's new
    /// keys are out of the clone's reach, but for sends logged before.
    pub(crate) fn revoked(&mut self) {
        let Some(c) = self.clone.as_mut() else {
            return;
        };
        c.revoked = true;
        c.logged = self
            .msgs
            .iter()
            .filter(|m| m.from == c.ident && m.escrowed)
            .filter_map(|m| m.envelope)
            .collect();
    }

    /// The clone's envelope (or copy) `id`, its message `n`, reached a mailbox at
    /// `received_ms` (the relay's clock).
    pub(crate) fn clone_posted(&mut self, id: [u8; 16], n: u64, received_ms: u64, bytes: &[u8]) {
        let Some(c) = self.clone.as_mut() else {
            return;
        };
        if c.posted.insert(id, (n, received_ms)).is_none() {
            *c.per_mailbox.entry(1 - c.ident).or_default() += 1;
        }
        if let Some(h) = header(bytes) {
            c.keys.insert(*h.sender.as_bytes());
            c.used.insert((*h.sender.as_bytes(), h.counter));
            if let Some(p) = h.parent {
                c.steps.insert((*p.as_bytes(), h.previous_chain_length));
            }
        }
    }

    /// Whether the envelope posted under `id` was made unreadable by the clone before
    /// the heal: the clone spent its message key first; or it was built on one of the
    /// clone's keys (the contact answered the clone's fork before it knew of the
    /// theft: that message is the clone's, as with any stolen session state, and
    /// the heal takes it back from the next message on); or the clone stepped from
    /// the contact's key built on its chain, announcing that chain shorter than the
    /// identity went on with (the contact closes a chain where a new step says it
    /// ended, as Double Ratchet does).
    fn stolen_by_clone(&self, id: &[u8; 16]) -> bool {
        let (Some(c), Some((sender, counter, parent))) = (&self.clone, self.headers.get(id)) else {
            return false;
        };
        let closed = c.steps.iter().any(|(p, length)| {
            *counter >= *length
                && self
                    .headers
                    .values()
                    .any(|(s, _, pp)| s == p && *pp == Some(*sender))
        });
        closed
            || c.used.contains(&(*sender, *counter))
            || parent.is_some_and(|p| c.keys.contains(&p))
            || c.cut.contains(id)
    }

    /// `per-device`: the identity's list without the stolen device was published,
    /// naming it removed as of `removed_ms`.
    pub(crate) fn list_without_clone(&mut self, removed_ms: u64) {
        if let Some(c) = self.clone.as_mut() {
            c.removed_ms.get_or_insert(removed_ms);
        }
    }

    /// `per-device`: contact device `dev` took the list without the stolen device.
    pub(crate) fn healed(&mut self, dev: usize, now: u64) {
        if let Some(c) = self.clone.as_mut() {
            c.healed.entry(dev).or_insert(now);
        }
    }

    /// A contact device showed the clone's message `n`.
    fn clone_shown(&mut self, dev: usize, n: u64, now: u64) {
        let Some(c) = self.clone.as_mut() else {
            self.violation(format!(
                "device {dev} showed a clone's message with no clone"
            ));
            return;
        };
        let healed = c.healed.get(&dev).is_some_and(|&t| t <= now);
        // Under `per-device` a copy the relay took before the list says the device
        // was removed is still its device's to read.
        let after_list = match (self.strategy, c.removed_ms) {
            (Strategy::PerDevice, Some(removed)) => {
                c.posted.values().any(|&(m, at)| m == n && at > removed)
            }
            (Strategy::PerDevice, None) => false,
            _ => true,
        };
        if healed && after_list {
            self.violation(format!(
                "device {dev} accepted the revoked device's clone (clone.{n}) after the heal"
            ));
        } else {
            c.accepted += 1;
        }
    }

    pub(crate) fn text(&self, msg: usize) -> String {
        self.msgs
            .get(msg)
            .map(|m| m.text.clone())
            .unwrap_or_default()
    }

    pub(crate) fn from(&self, msg: usize) -> usize {
        self.msgs.get(msg).map_or(0, |m| m.from)
    }

    pub(crate) fn device_choice(&self, msg: usize) -> usize {
        self.msgs.get(msg).map_or(0, |m| m.choice)
    }

    pub(crate) fn unavailable(&mut self, msg: usize) {
        if let Some(m) = self.msgs.get_mut(msg) {
            m.unavailable = true;
        }
    }

    pub(crate) fn typed(&mut self, msg: usize, dev: usize, now: u64, others_down: bool) {
        if let Some(m) = self.msgs.get_mut(msg) {
            m.typed = Some((dev, now));
            m.others_down = others_down;
        }
    }

    pub(crate) fn escrowed(&mut self, msg: usize) {
        if let Some(m) = self.msgs.get_mut(msg) {
            m.escrowed = true;
        }
    }

    /// A device linked from `from`: it brings `from`'s history (the link's import).
    pub(crate) fn linked(&mut self, new: usize, from: usize) {
        for m in &mut self.msgs {
            if let Some(&at) = m.shown.get(&from) {
                m.shown.insert(new, at);
            }
        }
    }

    pub(crate) fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    pub(crate) fn violations(&self) -> &[String] {
        &self.violations
    }

    /// `per-device`: the relay took a message's copies for `devices` (the list it
    /// held: a copy for another set is refused).
    pub(crate) fn copied(&mut self, envelope: [u8; 16], devices: impl Iterator<Item = [u8; 32]>) {
        self.copied.entry(envelope).or_default().extend(devices);
    }

    /// An envelope reached a mailbox (first time or again).
    pub(crate) fn posted(&mut self, mailbox: usize, id: [u8; 16], bytes: &[u8]) {
        self.posted.entry(mailbox).or_default().insert(id);
        let Some(h) = header(bytes) else {
            self.violation(format!(
                "an envelope that does not parse reached mailbox {mailbox}"
            ));
            return;
        };
        let sender = *h.sender.as_bytes();
        let nonce = *h.nonce.as_bytes();
        self.headers
            .insert(id, (sender, h.counter, h.parent.map(|p| *p.as_bytes())));
        // A fork is two of an identity's keys built on one key of the shared session.
        // `per-device` copies are on pairwise sessions: two devices opening sessions
        // with one device's bundle build on its one signed prekey, and are no fork.
        // A heal's anchor, a fresh step announced as its own floor, forks by design
        // (after a revocation): the contact learns a device was revoked, not how many
        // there are.
        let copy = matches!(Envelope::decode(bytes), Ok(Envelope::Copy { .. }));
        let anchor = h.honor_floor == Some(h.sender);
        if let Some(c) = self.clone.as_mut() {
            if mailbox == 1 - c.ident && (!c.revoked || c.logged.contains(&id)) {
                c.held.insert(sender);
            }
            if anchor && mailbox == 1 - c.ident {
                c.anchored = true;
            }
            if c.anchored
                && mailbox == c.ident
                && h.parent.is_some_and(|p| c.held.contains(p.as_bytes()))
            {
                c.cut.insert(id);
            }
        }
        // What the contact built on a clone's key before the heal is the clone's.
        let on_clone = h.parent.is_some_and(|p| {
            self.clone
                .as_ref()
                .is_some_and(|c| c.keys.contains(p.as_bytes()))
        });
        if let Some(parent) = h.parent.filter(|_| !copy && !anchor && !on_clone) {
            let children = self.children.entry(*parent.as_bytes()).or_default();
            if children.insert(sender) && children.len() == 2 {
                self.forks += 1;
            }
        }
        if let Some(other) = self.nonces.insert((sender, h.counter, nonce), id)
            && other != id
        {
            self.violation(format!(
                "key/nonce pair used for two envelopes ({} and {})",
                hex::encode(other),
                hex::encode(id)
            ));
        }
        if let Some(other) = self.keys.insert((sender, h.counter), id)
            && other != id
        {
            self.key_reuse += 1;
            if self.strategy == Strategy::Sequenced {
                self.violation(format!(
                    "message key used for two envelopes ({} and {}): the sequencing failed",
                    hex::encode(other),
                    hex::encode(id)
                ));
            }
        }
    }

    /// A device showed or refused something.
    pub(crate) fn seen(&mut self, dev: usize, ident: usize, seen: Seen, now: u64) {
        match seen {
            Seen::Shown {
                text,
                outgoing: false,
            } if text.starts_with("clone.") => {
                let n = text["clone.".len()..].parse().unwrap_or(u64::MAX);
                self.clone_shown(dev, n, now);
            }
            Seen::Shown { text, outgoing } => {
                let Some(i) = message_index(&text).filter(|&i| i < self.msgs.len()) else {
                    self.violation(format!("device {dev} showed a text nobody typed: {text:?}"));
                    return;
                };
                let m = &mut self.msgs[i];
                let expected = if outgoing { m.from } else { 1 - m.from };
                if ident != expected || m.text != text {
                    self.violation(format!(
                        "device {dev} showed m{i} as {} on the wrong side",
                        if outgoing { "sent" } else { "received" }
                    ));
                    return;
                }
                if m.shown.insert(dev, now).is_some() {
                    self.duplicated += 1;
                    self.violation(format!("m{i} shown twice on device {dev}"));
                    return;
                }
                if outgoing {
                    // Shown as sent: its record is in the log.
                    m.escrowed = true;
                }
                if !outgoing && m.received_ms.is_none() {
                    m.received_ms = Some(now);
                }
                // The shared session: a message sent after the heal settled closes
                // every key the clone holds on the device that reads it.
                if !outgoing
                    && m.heals
                    && self.strategy != Strategy::PerDevice
                    && let Some(c) = self.clone.as_mut()
                    && c.ident == m.from
                {
                    c.healed.entry(dev).or_insert(now);
                }
            }
            Seen::Undecryptable { id, .. }
                if self
                    .clone
                    .as_ref()
                    .is_some_and(|c| c.posted.contains_key(&id)) =>
            {
                if let Some(c) = self.clone.as_mut() {
                    c.refused += 1;
                }
            }
            // Counted with the messages at the end.
            Seen::Undecryptable { id, .. } if self.stolen_by_clone(&id) => {}
            Seen::Undecryptable { why, .. } => self.violation(format!(
                "device {dev} could not decrypt an envelope for good: {why}"
            )),
            Seen::Refused(why) => {
                self.violation(format!("device {dev} refused a log record: {why}"))
            }
        }
    }

    /// The end-of-run checks.
    pub(crate) fn check_end(
        &mut self,
        members: &[Vec<usize>; 2],
        live: &[(usize, &Device)],
        relay: &Relay,
    ) -> bool {
        let alive: BTreeSet<usize> = live.iter().map(|(i, _)| *i).collect();
        // Under `primary`, an identity whose primary (its first device, which set the
        // strategy) is destroyed neither sends nor reads any more: by design, not a
        // fault of the run. What that strands is counted, not failed.
        let orphaned: BTreeSet<usize> = (0..2)
            .filter(|&i| {
                self.strategy == Strategy::Primary
                    && members[i].first().is_some_and(|p| !alive.contains(p))
            })
            .flat_map(|i| members[i].iter().copied())
            .collect();
        let mut problems = Vec::new();
        let (mut lost, mut stranded) = (0, 0);
        let mut one_state = true;
        for (i, m) in self.msgs.iter().enumerate() {
            let Some((dev, _)) = m.typed else { continue };
            if !m.escrowed {
                if orphaned.contains(&dev) {
                    stranded += 1;
                } else if alive.contains(&dev) {
                    problems.push(format!("m{i}, typed on device {dev} (alive), never sent"));
                }
                continue;
            }
            // `per-device`: a contact device the sender's list did not name yet (linked
            // after the copies were posted) was sent none, as in Signal.
            let copied = m.envelope.and_then(|e| self.copied.get(&e));
            let not_copied = |d: &usize| {
                members[1 - m.from].contains(d)
                    && copied
                        .is_some_and(|c| live.iter().any(|(i, x)| i == d && !c.contains(&x.key)))
            };
            let (orphans, missing): (Vec<usize>, Vec<usize>) = members
                .iter()
                .flatten()
                .copied()
                .filter(|d| alive.contains(d) && !m.shown.contains_key(d) && !not_copied(d))
                .partition(|d| orphaned.contains(d));
            if !missing.is_empty() && m.envelope.is_some_and(|e| self.stolen_by_clone(&e)) {
                if let Some(c) = self.clone.as_mut() {
                    c.stolen += 1;
                }
            } else if !missing.is_empty() {
                lost += 1;
                problems.push(format!("m{i} lost: never shown on devices {missing:?}"));
            } else if !orphans.is_empty() {
                stranded += 1;
            }
        }
        for (ident, devs) in members.iter().enumerate() {
            let folded: BTreeSet<_> = live
                .iter()
                .filter(|(i, _)| devs.contains(i))
                .map(|(_, d)| d.digest())
                .collect();
            // Under `primary` only the primary decrypts: its siblings' copies of the
            // session move with its sends alone, and are not compared.
            let sessions: BTreeSet<_> = live
                .iter()
                .filter(|(i, d)| devs.contains(i) && d.reads_mail())
                .map(|(_, d)| d.session_digest())
                .collect();
            if folded.len() > 1 || sessions.len() > 1 {
                one_state = false;
                problems.push(format!(
                    "identity {ident}'s devices did not converge: {} folded states, {} ratchet states",
                    folded.len(),
                    sessions.len()
                ));
            }
            // The contact's mailbox holds one envelope per message sent to it (under
            // `per-device`, one per device of the contact: it sees the count by design).
            let sent_to = self
                .msgs
                .iter()
                .filter(|m| m.escrowed && 1 - m.from == ident)
                .count() as u64;
            let cloned = self
                .clone
                .as_ref()
                .and_then(|c| c.per_mailbox.get(&ident))
                .copied()
                .unwrap_or(0);
            let received = relay.mailbox_len(ident) - cloned;
            if self.strategy != Strategy::PerDevice && received != sent_to {
                problems.push(format!(
                    "identity {ident} received {received} envelopes for {sent_to} messages",
                ));
            }
        }
        // What the contact sees must be what one device could have sent. Under every
        // strategy but `leaderless`, one device never builds two ratchet keys on one
        // key of the contact's: a fork would tell the contact several devices sent.
        // (`leaderless` takes a fresh key per message, so one device forks too.)
        if self.strategy != Strategy::Leaderless && self.forks > 0 {
            problems.push(format!(
                "the contact saw {} forks: sends of several devices, told apart",
                self.forks
            ));
        }
        if let Some(c) = self.clone.as_mut() {
            c.unhealed = members[1 - c.ident]
                .iter()
                .filter(|d| alive.contains(d) && !c.healed.contains_key(d))
                .count() as u64;
        }
        self.lost += lost;
        self.stranded += stranded;
        self.violations.extend(problems);
        one_state
    }

    /// Adds the run's message counts to `stats`.
    pub(crate) fn fill(&self, stats: &mut Stats, alive: &BTreeSet<usize>) {
        if let Some(c) = &self.clone {
            stats.clone_sent += c
                .posted
                .values()
                .map(|(n, _)| n)
                .collect::<BTreeSet<_>>()
                .len() as u64;
            stats.clone_accepted += c.accepted;
            stats.clone_refused += c.refused;
            stats.clone_unhealed += c.unhealed;
            stats.stolen_by_clone += c.stolen;
        }
        stats.key_reuse += self.key_reuse;
        stats.forks += self.forks;
        stats.lost += self.lost;
        stats.stranded += self.stranded;
        stats.duplicated += self.duplicated;
        for m in &self.msgs {
            if m.unavailable {
                stats.unavailable += 1;
                continue;
            }
            let Some((dev, typed_ms)) = m.typed else {
                continue;
            };
            stats.typed += 1;
            if m.others_down {
                stats.typed_while_down += 1;
            }
            if !m.escrowed {
                // A run stopped at a violation leaves messages unsent on live devices:
                // only those of a destroyed device are dropped with it.
                if !alive.contains(&dev) {
                    stats.dropped_with_device += 1;
                }
                continue;
            }
            if let Some(at) = m.received_ms {
                stats.delivered += 1;
                stats.latency_ms.push(at.saturating_sub(typed_ms));
                if m.others_down {
                    stats.delivered_while_down += 1;
                }
            }
        }
    }
}

/// The ratchet header an envelope carries.
fn header(bytes: &[u8]) -> Option<RatchetHeader> {
    match Envelope::decode(bytes).ok()? {
        Envelope::Ratchet(b) => RatchetMessage::decode(&b).ok().map(|m| m.header),
        Envelope::Initial(b) => InitialMessage::decode(&b).ok().map(|m| m.message.header),
        Envelope::Copy {
            initial: true,
            message,
            ..
        } => InitialMessage::decode(&message)
            .ok()
            .map(|m| m.message.header),
        Envelope::Copy { message, .. } => RatchetMessage::decode(&message).ok().map(|m| m.header),
    }
}
