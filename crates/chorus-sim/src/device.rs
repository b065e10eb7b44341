//! One simulated device: the core's state machine, driven by simulated I/O.
//!
//! A device holds what the client's store holds — the folded [`Constellation`], a
//! session per contact, pending sends, the outbox, its mailbox cursor — and decides
//! with the same core calls the client makes: [`Constellation::plan_send`] for a send,
//! [`Constellation::seal_batch`] for every append, [`Constellation::fold_page`] for every
//! page of the log (its own records included), [`chorus_core::route::after_failure`]
//! when an envelope does not open. What the client does with sockets and SQLite, it does
//! with [`Request`]s to the simulated relay, one at a time, as the client's fold lock
//! serializes its own.
//!
//! Everything a step changes is "persisted" when the step ends: a crash loses only the
//! request in flight (and the wake-ups it was waiting for), as the client's transactions
//! lose nothing committed.
//!
//! Who encrypts and who reads the contact's mailbox is the core's decision
//! ([`Constellation::send_role`], [`Constellation::reads_contacts`]): under `leader` and
//! `primary` a device that does not encrypt appends a `ForwardRequested` for what is
//! typed on it and keeps it pending; the primary appends a `Received` for every message
//! it decrypts (the fan-out). Under `per-device` a device sends one copy per contact
//! device on its own pairwise sessions ([`crate::pairwise`]), then logs the transcript.
//!
//! Roster changes the user asks for (a link approved, a device revoked) are signed on
//! the roster as folded when they are appended; once a revocation is folded, the core
//! says a rotation is due ([`Constellation::rotation_due`]) and any current device
//! appends it, and each device takes the new epoch key from its own sealed box
//! ([`chorus_core::open_epoch_key`]). The next send heals the session
//! ([`Constellation::plan_send`]). A revoked device's stolen state is driven by
//! [`Device::clone_request`]: the attacker's sends, which the contact must refuse once
//! the heal is through.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use chorus_core::route::{Failure, Next, after_failure};
use chorus_core::{
    Appendable, Constellation, Effect, EncryptedMessage, LocalIdentity, LogError, MessageKind,
    Outcome, Outgoing, Pending, Recipient, Record, Role, RosterSigner, Session, Sessions, Strategy,
    open_epoch_key, seal_send,
};
use chorus_crypto::{DeviceDhPublic, DeviceDhSecret, DevicePublicKey, EpochKey};
use chorus_wire::{Envelope, EventKind, FirstMessage, Payload, SecretBytes, SentMessage};
use rand::rngs::StdRng;

use crate::pairwise::PerDevice;
use crate::relay::{Letter, Reply, Request, Stored};

/// How long a sibling waits before posting an envelope another device logged
/// (the client's `--deliver-after` default).
pub const SIBLING_DELIVERY_MS: u64 = 30_000;

/// The relay URL every identity's log is on; a contact's mailbox elsewhere is posted
/// through the outbox.
pub const HOME: &str = "https://home.sim";
/// Where a contact's mailbox is when sends are not bundled.
pub const ELSEWHERE: &str = "https://elsewhere.sim";

/// The message index in a text the ledger made (`m<index>.…`).
pub fn message_index(text: &str) -> Option<usize> {
    text.strip_prefix('m')?.split('.').next()?.parse().ok()
}

/// The mailbox id the world gives mailbox `index` (what a `Sent` event names).
pub fn mailbox_id(index: usize) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(index as u64 + 1).to_be_bytes());
    id
}

/// Events of one kind per append, at most (forward requests, fanned-out messages).
pub const EVENTS_PER_APPEND: usize = 16;

/// What a device is waiting for.
#[derive(Clone, Debug)]
pub enum Op {
    /// An append of a send (the message's ledger index).
    Send(usize),
    /// An append of forward requests (`leader`, `primary`).
    Forward,
    /// An append of `Received` events for this many fanned-out messages (`primary`).
    FanOut(usize),
    /// An append of a roster entry (a link or a revocation).
    Roster,
    /// An append of an epoch rotation.
    Rotate,
    /// An append of `Delivered` for an envelope.
    Delivered([u8; 16]),
    /// A page of the log.
    ReadLog,
    /// A page of the mailbox.
    ReadMailbox,
    /// A post of an outbox envelope.
    Post([u8; 16]),
    /// `per-device`: the contact's device list.
    List,
    /// `per-device`: a message's copies.
    PostCopies([u8; 16]),
}

/// A message typed on this device (or, under `leader` and `primary`, on a sibling that
/// asked for it to be sent), not yet in the log as sent.
#[derive(Clone, Debug)]
pub struct PendingSend {
    /// The message's ledger index (its text is `m<index>`).
    pub msg: usize,
    /// Chosen once: a re-encryption after a lost race keeps it.
    pub envelope_id: [u8; 16],
    /// When typed (its device's clock).
    pub typed_ms: u64,
    /// The text.
    pub text: String,
    /// A `ForwardRequested` for it is in the log (folded here).
    pub requested: bool,
}

/// An envelope logged but not known delivered.
#[derive(Clone, Debug)]
pub struct OutboxEntry {
    /// The contact's mailbox (the world's index).
    pub mailbox: usize,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// The device that logged it.
    pub author: [u8; 32],
    /// When it was logged (its author's clock).
    pub at_ms: u64,
}

/// Something the device showed or observed, for the world's checks.
#[derive(Clone, Debug)]
pub enum Seen {
    /// A message shown in the history (outgoing from the fold, incoming decrypted).
    Shown {
        /// The text.
        text: String,
        /// Outgoing.
        outgoing: bool,
    },
    /// An incoming envelope refused for good on this device.
    Undecryptable {
        /// The id it was posted under.
        id: [u8; 16],
        /// Why.
        why: String,
    },
    /// A record the fold refused (an honest relay and honest siblings never cause one).
    Refused(String),
}

/// Where a device stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Running.
    Up,
    /// Crashed; restarts at this time (ms).
    Down(u64),
    /// Gone for good.
    Destroyed,
    /// Stolen and revoked: only its clone acts on its state.
    Revoked,
}

/// A roster change the user asked this device for (`link approve`, `devices
/// revoke`), signed on the roster as folded when it is appended, so a change another
/// device made first is built on.
#[derive(Clone, Debug)]
pub enum RosterChange {
    /// Authorize a new device.
    Link {
        /// Its signing key.
        key: DevicePublicKey,
        /// Its X25519 key (epoch keys are sealed to it).
        dh: DeviceDhPublic,
        /// Its name.
        name: String,
    },
    /// Revoke a device.
    Revoke(DevicePublicKey),
}

/// The contact this device talks to, as the world set it up.
#[derive(Clone)]
pub struct Peer {
    /// The contact's root key (names its session stream).
    pub root: [u8; 32],
    /// The contact's mailbox we post to.
    pub send_mailbox: usize,
    /// Its relay URL (decides bundling).
    pub relay_url: &'static str,
    /// Our mailbox the contact posts to.
    pub recv_mailbox: usize,
}

/// One device.
pub struct Device {
    /// The identity (index in the world).
    pub ident: usize,
    /// Its device key.
    pub key: [u8; 32],
    /// Running, crashed or destroyed.
    pub status: Status,
    /// Unreachable from the relay until then (ms).
    pub partitioned_until: u64,
    /// Added to the world's clock for every time this device writes.
    pub skew_ms: i64,
    identity: Arc<LocalIdentity>,
    dh: DeviceDhSecret,
    state: Constellation,
    epoch_key: EpochKey,
    sessions: BTreeMap<[u8; 32], Session>,
    peer: Peer,
    /// Typed, not yet logged (persisted, as the client's pending sends).
    pub pending: VecDeque<PendingSend>,
    /// Logged, not known delivered.
    /// In log order: one mailbox's envelopes are posted oldest first, as the client's
    /// outbox does.
    pub outbox: Vec<([u8; 16], OutboxEntry)>,
    /// Envelopes this device posted, awaiting their `Delivered`.
    delivered_due: BTreeSet<[u8; 16]>,
    /// Messages decrypted here for siblings that do not read the mailbox (`primary`),
    /// with their mailbox seq, not yet in the log.
    fanout: VecDeque<(FirstMessage, u64)>,
    mail_cursor: u64,
    /// Envelope ids in the history.
    history: BTreeSet<[u8; 16]>,
    /// The envelope at the cursor waits for a fold (`after_failure`'s `FoldAndRetry`).
    retry_after_fold: bool,
    /// The request in flight: its id and what it is for (lost on a crash).
    pub inflight: Option<(u64, Op)>,
    log_dirty: bool,
    mail_dirty: bool,
    /// The log was read to its end since the last send (leaderless reads before it
    /// sends).
    synced: bool,
    /// The mailbox was read to its end since the last send.
    read_mail: bool,
    rng: StdRng,
    /// Guard conflicts met (a sibling sent first).
    pub conflicts: u64,
    /// Messages handed to another device to send (`ForwardRequested` appended).
    pub forwarded: u64,
    /// Messages written to the log for the siblings (`Received` appended).
    pub fanned_out: u64,
    /// A roster change to append.
    pub roster_change: Option<RosterChange>,
    /// The device it authorized is in the folded roster: the world starts it.
    pub linked: Option<[u8; 32]>,
    /// The device it revoked is out of the folded roster: the world shows the relay.
    pub revoked: Option<[u8; 32]>,
    /// Messages sent (planned) here — the ledger's index and the envelope id — and
    /// whether each went on a session whose heal after a revocation was through (the
    /// world's clone check starts there; never under `per-device`).
    pub heals: Vec<(usize, [u8; 16], bool)>,
    /// What went wrong that a correct core never does (the world turns each into a
    /// violation).
    pub problems: Vec<String>,
    /// `per-device`: this device's own prekeys and sessions with the contact's devices.
    pub per_device: Option<PerDevice>,
}

impl Device {
    /// A device folded at the roster (seq 0), holding `session` for its one contact.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ident: usize,
        key: [u8; 32],
        identity: Arc<LocalIdentity>,
        dh: DeviceDhSecret,
        state: Constellation,
        epoch_key: EpochKey,
        session: Session,
        peer: Peer,
        rng: StdRng,
    ) -> Self {
        let mut sessions = BTreeMap::new();
        sessions.insert(peer.root, session);
        Self {
            ident,
            key,
            status: Status::Up,
            partitioned_until: 0,
            skew_ms: 0,
            identity,
            dh,
            state,
            epoch_key,
            sessions,
            peer,
            pending: VecDeque::new(),
            outbox: Vec::new(),
            delivered_due: BTreeSet::new(),
            fanout: VecDeque::new(),
            mail_cursor: 0,
            history: BTreeSet::new(),
            retry_after_fold: false,
            inflight: None,
            log_dirty: true,
            mail_dirty: true,
            synced: false,
            read_mail: false,
            rng,
            conflicts: 0,
            forwarded: 0,
            fanned_out: 0,
            roster_change: None,
            linked: None,
            revoked: None,
            heals: Vec::new(),
            problems: Vec::new(),
            per_device: None,
        }
    }

    /// This device's clock.
    pub fn now(&self, world_ms: u64) -> u64 {
        world_ms.saturating_add_signed(self.skew_ms)
    }

    /// A crash: the request in flight is forgotten; everything else was committed.
    /// On restart the device syncs everything, as the client does when it starts.
    pub fn restart(&mut self) {
        self.inflight = None;
        self.synced = false;
        self.read_mail = false;
        self.log_dirty = true;
        self.mail_dirty = true;
        self.retry_after_fold = false;
        if let Some(pd) = self.per_device.as_mut() {
            pd.held.clear();
        }
        self.status = Status::Up;
    }

    /// The relay said the log (or mailbox) grew.
    pub fn poke(&mut self, log: bool, mail: bool) {
        self.log_dirty |= log;
        self.mail_dirty |= mail;
        // The mailbox grew since it was last read to its end.
        self.read_mail &= !mail;
    }

    /// The user typed message `msg`.
    pub fn type_message(&mut self, msg: usize, text: String, world_ms: u64) {
        let mut envelope_id = [0u8; 16];
        rand::Rng::fill_bytes(&mut self.rng, &mut envelope_id);
        self.pending.push_back(PendingSend {
            msg,
            envelope_id,
            typed_ms: self.now(world_ms),
            text,
            requested: false,
        });
    }

    /// A new device of the same identity, starting where this one stands: its folded
    /// state, sessions, history and cursor (what a link's checkpoint and history
    /// import bring), nothing typed, its own key.
    pub fn linked_device(
        &self,
        key: [u8; 32],
        dh: DeviceDhSecret,
        rng: StdRng,
    ) -> Result<Self, String> {
        let copy = |s: &Session| {
            Session::restore(&s.snapshot(), s.generation()).map_err(|e| e.to_string())
        };
        let session = copy(
            self.sessions
                .get(&self.peer.root)
                .ok_or("no session with the contact")?,
        )?;
        let mut d = Self::new(
            self.ident,
            key,
            self.identity.clone(),
            dh,
            self.state.clone(),
            EpochKey::from_bytes(&self.epoch_key.to_bytes()),
            session,
            self.peer.clone(),
            rng,
        );
        d.mail_cursor = self.mail_cursor;
        d.history = self.history.clone();
        d.outbox = self.outbox.clone();
        Ok(d)
    }

    /// The identity's log id.
    pub fn log_id(&self) -> &[u8; 32] {
        self.state.log_id()
    }

    /// The roster as folded (to authorize a new device on).
    pub fn roster(&self) -> &chorus_core::Roster {
        self.state.roster()
    }

    /// The strategy in force, as this device folded the log.
    pub fn strategy(&self) -> Strategy {
        self.state.strategy()
    }

    /// Whether this device reads the contact's mailbox (all but a primary's siblings).
    pub fn reads_mail(&self) -> bool {
        self.state.reads_contacts(&self.key)
    }

    /// Seals `events` on the folded state, as this device, at `now_ms`.
    pub fn seal(&mut self, events: Vec<Pending>, now_ms: u64) -> Result<Vec<Appendable>, LogError> {
        self.state
            .seal_batch(&self.epoch_key, self.key, events, now_ms, &mut self.rng)
    }

    /// Whether the device has nothing left to do (nothing typed, logged-undelivered,
    /// or known unread). The world also checks that it has read everything there is.
    pub fn idle(&self) -> bool {
        // Under `primary`, a sibling's requests wait on the primary and nothing here
        // can change that; under `leader` a lease runs out, so waiting is not idle.
        let on_primary = self.state.primary().is_some_and(|p| p != self.key);
        self.pending.iter().all(|p| p.requested && on_primary)
            && self.roster_change.is_none()
            && self.fanout.is_empty()
            && self.outbox.is_empty()
            && self.delivered_due.is_empty()
            && self.per_device.as_ref().is_none_or(|p| p.held.is_empty())
            && !self.log_dirty
            && !self.mail_dirty
            && self.inflight.is_none()
    }

    /// How far the log is folded.
    pub fn applied(&self) -> u64 {
        self.state.applied()
    }

    /// How far the mailbox is read.
    pub fn mail_cursor(&self) -> u64 {
        self.mail_cursor
    }

    /// The folded state's digest (equal on every device of an identity that folded
    /// the same log).
    pub fn digest(&self) -> [u8; 32] {
        self.state.digest()
    }

    /// The leader lease's term as folded (`leader`).
    pub fn lease_term(&self) -> Option<u64> {
        self.state.lease().map(|l| l.term)
    }

    /// The contact session's digest.
    pub fn session_digest(&self) -> Option<[u8; 32]> {
        self.sessions
            .get(&self.peer.root)
            .map(Session::state_digest)
    }

    /// The next request, if any: sync the log when told it grew, send what is typed,
    /// read the mailbox, then deliver what the outbox holds.
    pub fn next_request(&mut self, world_ms: u64) -> Option<(Op, Request)> {
        if self.inflight.is_some() || self.status != Status::Up {
            return None;
        }
        let log = self.ident;
        if self.log_dirty {
            return Some((
                Op::ReadLog,
                Request::ReadLog {
                    log,
                    from: self.state.applied() + 1,
                },
            ));
        }
        let now = self.now(world_ms);
        if let Some(request) = self.fan_out(now) {
            return Some(request);
        }
        if let Some(request) = self.roster_request(now) {
            return Some(request);
        }
        // A revocation folded: the log moves to a key the revoked device never gets.
        if self.state.rotation_due(now) && self.state.roster().is_authorized_id(&self.key) {
            let rotation = self.state.plan_rotation(&self.epoch_key, &mut self.rng);
            if let Some(request) = self.append(Op::Rotate, vec![rotation.into()], now) {
                return Some(request);
            }
        }
        let reads_mail = self.reads_mail();
        let strategy = self.strategy();
        if strategy == Strategy::Leaderless && !self.pending.is_empty() {
            // Leaderless waits for no guard, but reads the log and the mailbox to
            // their ends before it sends (the client does the same; the design note's
            // "heuristics to avoid" forks): a device that sends on a stale state builds
            // on peer keys the peer may have deleted.
            if !self.synced {
                self.log_dirty = true;
                return Some((
                    Op::ReadLog,
                    Request::ReadLog {
                        log,
                        from: self.state.applied() + 1,
                    },
                ));
            }
            if !self.read_mail {
                return Some(self.read_mail_request());
            }
        }
        // A send that anchors a heal reads the contact's mailbox to its end first (the
        // core's `Session::heal_due`; the client does the same).
        let revocations = self.state.roster().revoked_count();
        let heal_due = strategy != Strategy::PerDevice
            && !self.pending.is_empty()
            && reads_mail
            && self
                .sessions
                .get(&self.peer.root)
                .is_some_and(|s| s.heal_due(revocations));
        if heal_due && !self.read_mail {
            return Some(self.read_mail_request());
        }
        // And what was logged before the anchor reaches the contact first, whoever
        // logged it (the client's `post_outbox` with no patience).
        if heal_due && let Some((id, e)) = self.outbox.first() {
            return Some(post_request(id, e));
        }
        if strategy == Strategy::PerDevice {
            if let Some(request) = self.per_device_request(now) {
                return Some(request);
            }
        } else {
            match self.state.send_role(&self.key, now) {
                Role::Forward { .. } => {
                    if let Some(request) = self.request_forwards(now) {
                        return Some(request);
                    }
                }
                role => {
                    let lease = match role {
                        Role::TakeLease(p) => Some(*p),
                        _ => None,
                    };
                    if let Some(p) = self.pending.front().cloned() {
                        match self.plan(&p, world_ms, lease) {
                            Ok(request) => return Some((Op::Send(p.msg), request)),
                            Err(why) => {
                                // The core refused to encrypt it: nothing else can come of
                                // it, and the run fails on it.
                                self.pending.pop_front();
                                self.problems
                                    .push(format!("m{} could not be sent: {why}", p.msg));
                            }
                        }
                    }
                }
            }
        }
        if self.mail_dirty && !reads_mail {
            self.mail_dirty = false;
        }
        if self.mail_dirty {
            return Some(self.read_mail_request());
        }
        if let Some(id) = self.delivered_due.iter().next().copied() {
            let records = self.state.seal_batch(
                &self.epoch_key,
                self.key,
                vec![Pending::free(EventKind::Delivered { envelope_id: id })],
                now,
                &mut self.rng,
            );
            let records = match records {
                Ok(r) => r,
                Err(e) => {
                    self.delivered_due.remove(&id);
                    self.problems
                        .push(format!("a Delivered record could not be sealed: {e}"));
                    return None;
                }
            };
            return Some((
                Op::Delivered(id),
                Request::Append {
                    log,
                    records,
                    post: None,
                },
            ));
        }
        let due = self.outbox.iter().find(|(_, e)| {
            e.author == self.key || now >= e.at_ms.saturating_add(SIBLING_DELIVERY_MS)
        });
        if let Some((id, e)) = due {
            return Some(post_request(id, e));
        }
        None
    }

    /// A read of the mailbox from the cursor (the read goes on until a page is empty).
    fn read_mail_request(&mut self) -> (Op, Request) {
        self.mail_dirty = true;
        (
            Op::ReadMailbox,
            Request::ReadMailbox {
                mailbox: self.peer.recv_mailbox,
                from: self.mail_cursor + 1,
            },
        )
    }

    /// The roster change asked for, signed on the roster as folded (a change another
    /// device made first is built on); dropped once the roster shows it made.
    fn roster_request(&mut self, now: u64) -> Option<(Op, Request)> {
        let change = self.roster_change.clone()?;
        let roster = self.state.roster();
        let done = match &change {
            RosterChange::Link { key, .. } => roster.is_authorized(key),
            RosterChange::Revoke(key) => roster.is_revoked(key),
        };
        if done {
            self.roster_change = None;
            return None;
        }
        let Some(root) = self.identity.root() else {
            self.roster_change = None;
            self.problems
                .push("a roster change on a device without the root".into());
            return None;
        };
        let signer = RosterSigner::Root(root);
        // Signed as of this device's clock (a revocation's is when the device stops
        // reading new copies under `per-device`).
        let at = self.now(now);
        let entry = match &change {
            RosterChange::Link { key, dh, name } => roster.authorize(&signer, *key, *dh, name, at),
            RosterChange::Revoke(key) => roster.revoke(&signer, *key, at),
        };
        match entry {
            Ok(e) => {
                let event = Pending::guarded(
                    EventKind::Roster {
                        entry: e.as_bytes().to_vec(),
                    },
                    chorus_core::ROSTER_STREAM.to_vec(),
                    None,
                );
                self.append(Op::Roster, vec![event], now)
            }
            Err(e) => {
                self.roster_change = None;
                self.problems.push(format!("a roster change: {e}"));
                None
            }
        }
    }

    /// A clone of this (stolen, revoked) device's state sends `text` to the contact as
    /// its code would: on its copy of the session — continuing its chain, or, with
    /// `fresh`, forking a new DH step from the contact's newest key it holds — or, under
    /// `per-device`, a copy per contact device on its pairwise sessions. Posted
    /// straight to the contact's mailbox (posts need no credential). `None` when the
    /// state sends nothing (a missing bundle, a session that will not encrypt).
    pub fn clone_request(&mut self, text: &str, fresh: bool, now: u64) -> Option<Request> {
        let mut envelope_id = [0u8; 16];
        rand::Rng::fill_bytes(&mut self.rng, &mut envelope_id);
        let mailbox = self.peer.send_mailbox;
        if let Some(pd) = self.per_device.as_mut() {
            pd.fresh = true;
            let copies = pd.seal(self.key, text, now, now, &mut self.rng).ok()??;
            return Some(Request::PostCopies {
                mailbox,
                envelope_id,
                copies,
            });
        }
        let session = self.sessions.get_mut(&self.peer.root)?;
        let event = seal_send(
            Outgoing {
                file: None,
                to: Recipient {
                    root: self.peer.root,
                    relay_url: self.peer.relay_url,
                    mailbox: mailbox_id(mailbox),
                },
                envelope_id,
                text,
                hello: None,
                rolls: Vec::new(),
                roll_seen: None,
                name: None,
                timer: None,
                now_ms: now,
                fresh_step: fresh,
            },
            session,
            &mut self.rng,
        )
        .ok()?;
        let EventKind::Sent(sent) = event else {
            return None;
        };
        Some(Request::Post {
            mailbox,
            envelope_id,
            bytes: sent.envelope,
        })
    }

    /// `per-device`: the contact's list as the relay serves it now, for the clone (it
    /// keeps sending to the devices listed).
    pub fn clone_takes_list(&mut self, reply: Reply) {
        if let (Some(pd), Reply::DeviceList(Some((list, bundles)))) =
            (self.per_device.as_mut(), reply)
        {
            let _ = pd.take_list(list, bundles, u64::MAX);
        }
    }

    /// `per-device`: the next request of the oldest pending send — the contact's list,
    /// its copies (sealed once, posted until the relay has them), then the `Sent`
    /// record (the transcript, for the siblings) — or the list a copy waits for.
    fn per_device_request(&mut self, now: u64) -> Option<(Op, Request)> {
        let mailbox = self.peer.send_mailbox;
        let pd = self.per_device.as_mut()?;
        let list = (Op::List, Request::DeviceList { mailbox });
        if !pd.held.is_empty() {
            return Some(list);
        }
        let p = self.pending.front().cloned()?;
        if pd.posted.contains(&p.envelope_id) {
            let sent = SentMessage {
                file: None,
                contact: self.peer.root,
                envelope_id: p.envelope_id,
                relay_url: self.peer.relay_url.to_owned(),
                mailbox: mailbox_id(mailbox),
                envelope: Vec::new(),
                sent_ms: p.typed_ms,
                text: p.text.clone(),
                ratchet_delta: SecretBytes::new(Vec::new()),
                bundled: true,
                per_device: true,
            };
            let event = Pending::free(EventKind::Sent(Box::new(sent)));
            return self.append(Op::Send(p.msg), vec![event], now);
        }
        if let Some(copies) = pd.copies.get(&p.envelope_id) {
            return Some((
                Op::PostCopies(p.envelope_id),
                Request::PostCopies {
                    mailbox,
                    envelope_id: p.envelope_id,
                    copies: copies.clone(),
                },
            ));
        }
        if !pd.fresh {
            return Some(list);
        }
        match pd.seal(self.key, &p.text, p.typed_ms, now, &mut self.rng) {
            Ok(Some(copies)) => {
                pd.copies.insert(p.envelope_id, copies.clone());
                // Pairwise sessions: no heal to be through.
                self.heals.push((p.msg, p.envelope_id, false));
                Some((
                    Op::PostCopies(p.envelope_id),
                    Request::PostCopies {
                        mailbox,
                        envelope_id: p.envelope_id,
                        copies,
                    },
                ))
            }
            Ok(None) => Some(list),
            Err(why) => {
                self.pending.pop_front();
                self.problems
                    .push(format!("m{} could not be sent: {why}", p.msg));
                None
            }
        }
    }

    /// The `ForwardRequested` events for what is pending and not yet asked for, as one
    /// append (`leader`, `primary`: another device encrypts).
    fn request_forwards(&mut self, now: u64) -> Option<(Op, Request)> {
        let events: Vec<Pending> = self
            .pending
            .iter()
            .filter(|p| !p.requested)
            .take(EVENTS_PER_APPEND)
            .map(|p| {
                Pending::free(EventKind::ForwardRequested {
                    contact: self.peer.root,
                    message: FirstMessage {
                        file: None,
                        envelope_id: p.envelope_id,
                        sent_ms: p.typed_ms,
                        text: p.text.clone(),
                    },
                })
            })
            .collect();
        if events.is_empty() {
            return None;
        }
        self.append(Op::Forward, events, now)
    }

    /// The `Received` events for what this device decrypted for its siblings, as one
    /// append (`primary`).
    fn fan_out(&mut self, now: u64) -> Option<(Op, Request)> {
        let events: Vec<Pending> = self
            .fanout
            .iter()
            .take(EVENTS_PER_APPEND)
            .map(|(message, position)| {
                Pending::free(EventKind::Received {
                    contact: self.peer.root,
                    message: message.clone(),
                    position: *position,
                })
            })
            .collect();
        if events.is_empty() {
            return None;
        }
        let n = events.len();
        self.append(Op::FanOut(n), events, now)
    }

    fn append(&mut self, op: Op, events: Vec<Pending>, now: u64) -> Option<(Op, Request)> {
        match self.seal(events, now) {
            Ok(records) => Some((
                op,
                Request::Append {
                    log: self.ident,
                    records,
                    post: None,
                },
            )),
            Err(e) => {
                self.problems
                    .push(format!("an append could not be sealed: {e}"));
                None
            }
        }
    }

    /// Plans a send on the folded state: the `Sent` record guarded at the folded
    /// version, bundled with its envelope when the contact's mailbox is at home, after
    /// the lease the core asked to take first (`leader`; the batch is atomic).
    fn plan(
        &mut self,
        p: &PendingSend,
        world_ms: u64,
        lease: Option<Pending>,
    ) -> Result<Request, String> {
        let leaderless = self.strategy() == Strategy::Leaderless;
        let session = self
            .sessions
            .get(&self.peer.root)
            .ok_or("no session with the contact")?;
        // The session moves on only through the fold of the record: plan on a copy.
        let mut scratch = Session::restore(&session.snapshot(), session.generation())
            .map_err(|e| e.to_string())?;
        let guarded = self
            .state
            .plan_send(
                &self.epoch_key,
                Outgoing {
                    file: None,
                    to: Recipient {
                        root: self.peer.root,
                        relay_url: self.peer.relay_url,
                        mailbox: mailbox_id(self.peer.send_mailbox),
                    },
                    envelope_id: p.envelope_id,
                    text: &p.text,
                    hello: None,
                    rolls: Vec::new(),
                    roll_seen: None,
                    name: None,
                    timer: None,
                    // A forwarded message keeps the time it was typed.
                    now_ms: p.typed_ms,
                    fresh_step: leaderless,
                },
                HOME,
                &mut scratch,
                &mut self.rng,
            )
            .map_err(|e| e.to_string())?;
        let revocations = self.state.roster().revoked_count();
        self.heals.push((
            p.msg,
            p.envelope_id,
            revocations > 0 && scratch.healed_through() >= revocations,
        ));
        let post = match &guarded.event {
            EventKind::Sent(sent) if sent.bundled => Some((
                self.peer.send_mailbox,
                sent.envelope_id,
                sent.envelope.clone(),
            )),
            _ => None,
        };
        // Sequenced: guarded on the session stream at the folded version, so a
        // sibling's send in between refuses it. Leaderless: no guard; a send planned
        // on the same state as a sibling's forks the ratchet (or reuses its message
        // key), and the tree merges what every device folds.
        let pending = match leaderless {
            true => Pending::free(guarded.event),
            false => Pending::from(guarded),
        };
        let records = self
            .seal(
                lease.into_iter().chain([pending]).collect(),
                self.now(world_ms),
            )
            .map_err(|e| e.to_string())?;
        Ok(Request::Append {
            log: self.ident,
            records,
            post,
        })
    }

    /// Takes the relay's answer to the request in flight; returns what it showed.
    pub fn on_reply(&mut self, op: Op, sent: &Request, reply: Reply, world_ms: u64) -> Vec<Seen> {
        self.inflight = None;
        let mut seen = Vec::new();
        match (op, reply) {
            (
                Op::Send(_)
                | Op::Delivered(_)
                | Op::Forward
                | Op::FanOut(_)
                | Op::Roster
                | Op::Rotate,
                Reply::GuardFailed,
            ) => {
                // A sibling got there first: fold its record, then decide again.
                self.conflicts += 1;
                self.log_dirty = true;
            }
            (_, Reply::StaleEpoch) => {
                // The log rotated since this device folded it: read the rotation, take
                // the new key, seal again.
                self.log_dirty = true;
            }
            (_, Reply::NotCurrent) => {
                self.problems
                    .push("the relay refused an append: not a current device".into());
            }
            (op, Reply::Appended(seqs)) => {
                if matches!(op, Op::Send(_)) {
                    self.synced = false;
                    self.read_mail = false;
                }
                // Fold our own records from the bytes sent when they come right after
                // the folded cursor (the client's `fold_own`); read the log otherwise.
                let follows = seqs
                    .iter()
                    .zip(1u64..)
                    .all(|(&s, i)| s == self.state.applied() + i);
                match sent {
                    Request::Append { records, .. } if follows => {
                        let page: Vec<Stored> = records
                            .iter()
                            .zip(&seqs)
                            .map(|(r, &seq)| Stored {
                                seq,
                                author: self.key,
                                record: r.clone(),
                            })
                            .collect();
                        seen.extend(self.fold(&page));
                    }
                    _ => self.log_dirty = true,
                }
                match op {
                    Op::Delivered(id) => {
                        self.delivered_due.remove(&id);
                    }
                    Op::FanOut(n) => {
                        self.fanout.drain(..n.min(self.fanout.len()));
                        self.fanned_out += n as u64;
                    }
                    Op::Forward => {
                        if let Request::Append { records, .. } = sent {
                            self.forwarded += records.len() as u64;
                        }
                    }
                    _ => {}
                }
            }
            (_, Reply::Log(page)) => {
                if page.is_empty() {
                    self.log_dirty = false;
                    self.synced = true;
                    if self.retry_after_fold {
                        // Caught up: the envelope at the cursor is taken once more.
                        self.mail_dirty = true;
                    }
                } else {
                    seen.extend(self.fold(&page));
                    self.log_dirty = true;
                }
            }
            (_, Reply::Mail(entries)) => {
                if entries.is_empty() {
                    self.mail_dirty = false;
                    self.read_mail = true;
                }
                if let Some(pd) = self.per_device.as_mut() {
                    // Read once the contact's list is fetched after the page.
                    pd.held = entries;
                    return seen;
                }
                for Letter { seq, id, bytes, .. } in entries {
                    if seq != self.mail_cursor + 1 {
                        break;
                    }
                    match self.receive(&bytes) {
                        Ok(payload) => {
                            self.mail_cursor = seq;
                            self.retry_after_fold = false;
                            if self.state.fans_out(&self.key) {
                                self.fanout.push_back((
                                    FirstMessage {
                                        file: None,
                                        envelope_id: id,
                                        sent_ms: payload.sent_ms,
                                        text: payload.text.clone(),
                                    },
                                    seq,
                                ));
                            }
                            if self.history.insert(id) {
                                seen.push(Seen::Shown {
                                    text: payload.text,
                                    outgoing: false,
                                });
                            }
                        }
                        Err(failure) => match after_failure(failure, self.retry_after_fold) {
                            Next::FoldAndRetry => {
                                self.retry_after_fold = true;
                                self.log_dirty = true;
                                break;
                            }
                            Next::Skip => {
                                self.mail_cursor = seq;
                                self.retry_after_fold = false;
                            }
                            Next::Reject => {
                                self.mail_cursor = seq;
                                self.retry_after_fold = false;
                                seen.push(Seen::Undecryptable {
                                    id,
                                    why: format!("{failure:?}"),
                                });
                            }
                            Next::Stop => break,
                        },
                    }
                }
            }
            (Op::Post(id), Reply::Posted) => {
                self.outbox.retain(|(e, _)| *e != id);
                self.delivered_due.insert(id);
            }
            (Op::List, Reply::DeviceList(list)) => {
                let now = self.now(world_ms);
                if let Some(pd) = self.per_device.as_mut() {
                    let taken = match list {
                        Some((list, bundles)) => pd.take_list(list, bundles, now),
                        None => Err("the contact publishes no device list".into()),
                    };
                    if let Err(why) = taken {
                        self.problems.push(format!("device list: {why}"));
                    }
                }
                let held = self
                    .per_device
                    .as_mut()
                    .map(|pd| std::mem::take(&mut pd.held))
                    .unwrap_or_default();
                seen.extend(self.read_copies(held, world_ms));
            }
            (Op::PostCopies(id), Reply::Posted) => {
                if let Some(pd) = self.per_device.as_mut() {
                    pd.posted.insert(id);
                    // The next send fetches the list again, as the client does.
                    pd.fresh = false;
                }
            }
            (Op::PostCopies(id), Reply::Mismatch(_)) => {
                if let Some(pd) = self.per_device.as_mut() {
                    // Nothing was stored: plan again on the list the relay holds now.
                    pd.copies.remove(&id);
                    pd.fresh = false;
                    pd.mismatches += 1;
                }
            }
            (_, _) => {}
        }
        seen
    }

    /// `per-device`: reads a page of copies against the contact's list fetched after
    /// it. Each device reads its own copies: the seqs between are other devices'.
    fn read_copies(&mut self, page: Vec<Letter>, world_ms: u64) -> Vec<Seen> {
        let now = self.now(world_ms);
        let mut seen = Vec::new();
        let Some(pd) = self.per_device.as_mut() else {
            return seen;
        };
        for Letter {
            seq,
            id,
            bytes,
            received_ms,
        } in page
        {
            if seq <= self.mail_cursor {
                continue;
            }
            self.mail_cursor = seq;
            match pd.open(&bytes, received_ms, now) {
                Ok(payload) => {
                    if self.history.insert(id) {
                        seen.push(Seen::Shown {
                            text: payload.text,
                            outgoing: false,
                        });
                    }
                }
                Err(why) => seen.push(Seen::Undecryptable { id, why }),
            }
        }
        seen
    }

    /// Decrypts an envelope from the contact on this device's copy of the session.
    fn receive(&mut self, bytes: &[u8]) -> Result<Payload, Failure> {
        let (kind, message) = match Envelope::decode(bytes).map_err(|_| Failure::Bad)? {
            Envelope::Initial(b) => (MessageKind::Initial, b),
            Envelope::Ratchet(b) => (MessageKind::Ratchet, b),
            // Copies are read by `PerDevice::open`, under `per-device` only.
            Envelope::Copy { .. } => return Err(Failure::Bad),
        };
        let session = self.sessions.get_mut(&self.peer.root).ok_or(Failure::Bad)?;
        let plain = session
            .decrypt(&EncryptedMessage {
                kind,
                bytes: message,
            })
            .map_err(|e| Failure::of_session(&e))?;
        Payload::decode(&plain).map_err(|_| Failure::Bad)
    }

    /// Folds a page through the core and keeps what it decided. The fold stops after
    /// a rotation: the rest of the page is opened again with the key the rotation
    /// sealed to this device.
    fn fold(&mut self, page: &[Stored]) -> Vec<Seen> {
        let records: Vec<Record<'_>> = page
            .iter()
            .map(|s| Record {
                seq: s.seq,
                epoch: s.record.epoch,
                author: s.author,
                guard: s.record.guard.as_ref().map(|(t, v)| (&t[..], *v)),
                nonce: &s.record.nonce,
                ciphertext: &s.record.ciphertext,
            })
            .collect();
        let mut seen = Vec::new();
        loop {
            let rotated = self.fold_part(&records, &mut seen);
            match rotated {
                Some(Ok(key)) => self.epoch_key = key,
                Some(Err(e)) => {
                    seen.push(Seen::Refused(format!("the rotation's key: {e}")));
                    return seen;
                }
                None => return seen,
            }
            if records.last().is_none_or(|r| r.seq <= self.state.applied()) {
                return seen;
            }
        }
    }

    /// Folds what of `records` this state has not, up to the first rotation; the key
    /// that rotation sealed to this device, if one ended the part.
    fn fold_part(
        &mut self,
        records: &[Record<'_>],
        seen: &mut Vec<Seen>,
    ) -> Option<Result<EpochKey, chorus_core::EpochKeyError>> {
        let applied = self.state.applied();
        let opened: Vec<_> = records
            .iter()
            .map(|r| match r.seq > applied {
                true => self.state.open(&self.epoch_key, r),
                false => Err(LogError::Undecryptable),
            })
            .collect();
        let mut sessions = Sessions::default();
        for root in self.state.sessions_needed(&opened) {
            if let Some(s) = self.sessions.get(&root)
                && let Ok(copy) = Session::restore(&s.snapshot(), s.generation())
            {
                sessions.insert(root, copy);
            }
        }
        let folded = match self
            .state
            .fold_page(&self.epoch_key, records, opened, &mut sessions)
        {
            Ok(f) => f,
            Err(e) => {
                seen.push(Seen::Refused(e.to_string()));
                return None;
            }
        };
        for (root, s) in sessions.changed() {
            if let Ok(copy) = Session::restore(&s.snapshot(), s.generation()) {
                self.sessions.insert(*root, copy);
            }
        }
        let mut rotated = None;
        for f in folded {
            match f.outcome {
                Outcome::Applied(effects) => {
                    for e in effects {
                        if let Effect::EpochRotated(r) = &e {
                            rotated =
                                Some(open_epoch_key(self.state.log_id(), &self.key, &self.dh, r));
                        }
                        self.apply(e, seen);
                    }
                }
                Outcome::Duplicate => {}
                Outcome::Refused(e) => seen.push(Seen::Refused(e.to_string())),
            }
        }
        rotated
    }

    fn apply(&mut self, effect: Effect, seen: &mut Vec<Seen>) {
        match effect {
            Effect::Message(h) => {
                if h.outgoing {
                    self.pending.retain(|p| p.envelope_id != h.envelope_id);
                    if let Some(pd) = self.per_device.as_mut() {
                        pd.done(&h.envelope_id);
                    }
                }
                // The history keeps one entry per envelope id, as the client's store
                // does (a send re-done after a lost answer logs the id twice).
                if !self.history.insert(h.envelope_id) {
                    return;
                }
                seen.push(Seen::Shown {
                    text: h.text,
                    outgoing: h.outgoing,
                });
            }
            Effect::Sent {
                sent,
                author,
                at_ms,
                ..
            } if !sent.bundled && !self.outbox.iter().any(|(e, _)| *e == sent.envelope_id) => {
                self.outbox.push((
                    sent.envelope_id,
                    OutboxEntry {
                        mailbox: self.peer.send_mailbox,
                        envelope: sent.envelope,
                        author,
                        at_ms,
                    },
                ));
            }
            Effect::DeviceAuthorized { device, .. }
                if matches!(&self.roster_change,
                    Some(RosterChange::Link { key, .. }) if *key.as_bytes() == device) =>
            {
                self.roster_change = None;
                self.linked = Some(device);
            }
            Effect::DeviceRevoked { device, .. } => {
                // The next send anchors a heal: it reads the mailbox to its end first,
                // from here on (the client reads it within the send).
                self.read_mail = false;
                if matches!(&self.roster_change,
                    Some(RosterChange::Revoke(key)) if *key.as_bytes() == device)
                {
                    self.roster_change = None;
                    self.revoked = Some(device);
                }
            }
            Effect::ForwardRequested { message, .. } => {
                // Every device keeps it pending until its `Sent` folds; the one that
                // encrypts sends it. A request repeated (its answer lost) or folded
                // after the send changes nothing.
                if let Some(p) = self
                    .pending
                    .iter_mut()
                    .find(|p| p.envelope_id == message.envelope_id)
                {
                    p.requested = true;
                } else if !self.history.contains(&message.envelope_id) {
                    self.pending.push_back(PendingSend {
                        msg: message_index(&message.text).unwrap_or(usize::MAX),
                        envelope_id: message.envelope_id,
                        typed_ms: message.sent_ms,
                        text: message.text,
                        requested: true,
                    });
                }
            }
            Effect::Delivered { envelope_id } => {
                self.outbox.retain(|(e, _)| *e != envelope_id);
                self.delivered_due.remove(&envelope_id);
            }
            _ => {}
        }
    }
}

/// A post of an outbox envelope.
fn post_request(id: &[u8; 16], e: &OutboxEntry) -> (Op, Request) {
    (
        Op::Post(*id),
        Request::Post {
            mailbox: e.mailbox,
            envelope_id: *id,
            bytes: e.envelope.clone(),
        },
    )
}
