//! One run: two identities, their devices, a relay and a network, on a virtual clock.
//!
//! Everything happens as events in one queue ordered by (time, insertion): a message
//! typed, a request reaching the relay, a reply or a push reaching a device, a timeout,
//! a fault. Every random choice is drawn from streams seeded from the run's seed (the
//! network's, the workload's, each device's), so a seed replays byte for byte:
//! [`Outcome::trace`] hashes every event processed.
//!
//! The run has a window in which messages are typed and faults strike, then a calm in
//! which the network is perfect and every device comes back, and ends once every device
//! has read everything and has nothing left to do (or at a deadline, which is a
//! failure: no convergence). The checks in `check.rs` run on every step and at the end.
//!
//! A revocation ([`FaultKind::Revoke`]) steals a device's state: the device stops, a
//! sibling appends the revocation, and a clone of the stolen state sends to the
//! contact every [`CLONE_EVERY_MS`] until [`CLONE_UNTIL_MS`] after the window, on its
//! chain and on fresh DH steps (under `per-device`, on its pairwise sessions). After
//! the window the world types a message each way and one more ([`HEAL_TRAFFIC_MS`]),
//! the round trip and message the heal takes, so the check that no contact accepts the
//! clone after the heal is tested in every run with a revocation.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use chorus_core::{
    Constellation, Contact, LocalIdentity, MemoryPrekeyStore, Parts, Roster, RosterSigner,
    initiate, respond,
};
use chorus_crypto::{DeviceDhSecret, DevicePublicKey, DeviceSigningKey, EpochKey};
use chorus_wire::{PrekeyBundle, SecurityLevel};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use sha2::{Digest, Sha256};

use crate::check::Ledger;
use crate::device::{Device, ELSEWHERE, HOME, Op, Peer, RosterChange, Status};
use crate::faults::{Fault, FaultKind, Faults, schedule};
use crate::pairwise::PerDevice;
use crate::relay::{Changed, Relay, Reply, Request};
use crate::{Config, Outcome, SimError, Stats};

/// A request with no reply after this long is given up on and retried (ms).
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;
/// An idle device looks at the relay this often without a push (ms).
pub const POLL_MS: u64 = 5_000;
/// After the window, how long the run may take to settle before it counts as not
/// converging (ms).
pub const SETTLE_MS: u64 = 600_000;
/// How long after a device is stolen a sibling revokes it (ms): the user notices. More
/// than the clock skew, so the stolen device's last own messages are older than its
/// revocation on every clock.
pub const REVOKE_AFTER_MS: u64 = 10_000;
/// How often a revoked device's clone sends (ms).
pub const CLONE_EVERY_MS: u64 = 3_000;
/// Until when after the window the clone sends (ms): past the heal traffic.
pub const CLONE_UNTIL_MS: u64 = 90_000;
/// When after the window the heal traffic is typed: the revoked device's identity, its
/// contact, the identity again (ms).
pub const HEAL_TRAFFIC_MS: [u64; 3] = [5_000, 25_000, 45_000];

enum Ev {
    Type {
        msg: usize,
    },
    Wake {
        dev: usize,
    },
    AtRelay {
        dev: usize,
        req: u64,
        request: Request,
        copy: bool,
    },
    AtDevice {
        dev: usize,
        req: u64,
        reply: Reply,
    },
    Push {
        dev: usize,
        log: bool,
        mail: bool,
    },
    Timeout {
        dev: usize,
        req: u64,
    },
    Fault(usize),
    Restart {
        dev: usize,
    },
    CloneSends,
    Revoke {
        dev: usize,
    },
}

impl Ev {
    fn tag(&self) -> (u8, usize) {
        match self {
            Ev::Type { msg } => (0, *msg),
            Ev::Wake { dev } => (1, *dev),
            Ev::AtRelay { dev, .. } => (2, *dev),
            Ev::AtDevice { dev, .. } => (3, *dev),
            Ev::Push { dev, .. } => (4, *dev),
            Ev::Timeout { dev, .. } => (5, *dev),
            Ev::Fault(i) => (6, *i),
            Ev::Restart { dev } => (7, *dev),
            Ev::CloneSends => (8, 0),
            Ev::Revoke { dev } => (9, *dev),
        }
    }
}

/// A request in flight, kept so a reply can be matched to what was sent.
struct InFlight {
    op: Op,
    request: Request,
    sent_ms: u64,
}

/// A revocation under way: the device stolen, what its clone sent.
struct Revocation {
    /// The stolen device (world index): its state is the clone's.
    clone: usize,
    /// Clone messages sent.
    sent: u64,
}

pub(crate) struct World {
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    next_event: u64,
    next_req: u64,
    devices: Vec<Device>,
    /// The identities (their roots authorize linked devices).
    ids: Vec<Arc<LocalIdentity>>,
    /// Devices at the start (those past it were linked mid-run).
    initial_devices: usize,
    /// Devices per identity (world indices).
    members: [Vec<usize>; 2],
    relay: Relay,
    relay_down_until: u64,
    lossy: Vec<(u64, u64, f64)>,
    faults: Faults,
    schedule: Vec<Fault>,
    destroy_pending: BTreeSet<usize>,
    /// Devices being linked: their X25519 secrets, until they start.
    linking: BTreeMap<[u8; 32], DeviceDhSecret>,
    revocation: Option<Revocation>,
    net: StdRng,
    inflight: BTreeMap<u64, InFlight>,
    poll_at: Vec<Option<u64>>,
    pub(crate) ledger: Ledger,
    window_ms: u64,
    trace: Sha256,
    stats: Stats,
}

/// The two identities, their devices, and which devices are whose.
type Setup = (Vec<Arc<LocalIdentity>>, Vec<Device>, [Vec<usize>; 2]);

/// The two identities' keys and first sessions, and each device's state.
fn setup(config: &Config, rng: &mut StdRng) -> Result<Setup, SimError> {
    let bug = |what: &str| {
        let what = what.to_owned();
        move |e: &dyn std::fmt::Display| SimError::Setup(format!("{what}: {e}"))
    };
    let counts = [config.devices.0, config.devices.1];
    let bundled = rng.random_bool(0.5);
    // Identity keys, and one session between them (Alice initiated; one round trip).
    let ids: Vec<Arc<LocalIdentity>> = (0..2)
        .map(|_| Arc::new(LocalIdentity::generate(rng)))
        .collect();
    let mut prekeys = MemoryPrekeyStore::default();
    let bundle = PrekeyBundle {
        identity: ids[1].keys().clone(),
        signed_prekey: prekeys
            .new_signed_prekey(&ids[1], rng)
            .map_err(|e| bug("a signed prekey")(&e))?,
        one_time_prekey: Some(prekeys.new_one_time_prekey(rng)),
        pq_prekey: prekeys
            .new_pq_prekey(&ids[1], false, rng)
            .map_err(|e| bug("a PQ prekey")(&e))?,
    };
    let bundle = PrekeyBundle::decode(&bundle.encode()).map_err(|e| bug("our bundle")(&e))?;
    let mut alice = initiate(&ids[0], &bundle, rng).map_err(|e| bug("the handshake")(&e))?;
    let first = alice
        .encrypt(b"hello", rng)
        .map_err(|e| bug("the first message")(&e))?;
    let mut bob = respond(&ids[1], &prekeys, &first.bytes)
        .map_err(|e| bug("the answer")(&e))?
        .session;
    let reply = bob.encrypt(b"hi", rng).map_err(|e| bug("the reply")(&e))?;
    alice
        .decrypt(&reply)
        .map_err(|e| bug("the reply opens")(&e))?;
    let sessions = [alice, bob];
    let peer_roots = [
        *ids[1].keys().root.as_bytes(),
        *ids[0].keys().root.as_bytes(),
    ];

    let mut devices = Vec::new();
    let mut members: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for ident in 0..2 {
        let mut log_id = [0u8; 32];
        rng.fill_bytes(&mut log_id);
        let keys: Vec<DeviceSigningKey> = (0..counts[ident])
            .map(|_| DeviceSigningKey::generate(rng))
            .collect();
        let dhs: Vec<DeviceDhSecret> = (0..counts[ident])
            .map(|_| DeviceDhSecret::generate(rng))
            .collect();
        let root = ids[ident]
            .root()
            .ok_or_else(|| SimError::Setup("an identity without its root".into()))?;
        let genesis = Roster::genesis(
            root,
            log_id,
            keys[0].public_key(),
            dhs[0].public_key(),
            SecurityLevel::SharedRoot,
            "device 0",
            0,
        )
        .map_err(|e| bug("a genesis")(&e))?;
        let mut roster =
            Roster::from_genesis(log_id, &genesis).map_err(|e| bug("our genesis")(&e))?;
        let mut entries = vec![genesis.as_bytes().to_vec()];
        for (i, (k, d)) in keys.iter().zip(&dhs).enumerate().skip(1) {
            let e = roster
                .authorize(
                    &RosterSigner::Root(root),
                    k.public_key(),
                    d.public_key(),
                    &format!("device {i}"),
                    0,
                )
                .map_err(|e| bug("an authorization")(&e))?;
            roster.apply(&e).map_err(|e| bug("our authorization")(&e))?;
            entries.push(e.as_bytes().to_vec());
        }
        let mut epoch = [0u8; 32];
        rng.fill_bytes(&mut epoch);
        let (recv, send) = (ident, 1 - ident);
        for (key, dh) in keys.iter().zip(dhs) {
            let contact = Contact {
                alias: "peer".into(),
                read_up_to: 0,
            };
            let state = Constellation::restore(Parts::fresh(
                log_id,
                1,
                entries.clone(),
                vec![(peer_roots[ident], contact)],
            ))
            .map_err(|e| bug("our roster")(&e))?;
            let s = &sessions[ident];
            let session = chorus_core::Session::restore(&s.snapshot(), s.generation())
                .map_err(|e| bug("a session copy")(&e))?;
            members[ident].push(devices.len());
            devices.push(Device::new(
                ident,
                *key.public_key().as_bytes(),
                ids[ident].clone(),
                dh,
                state,
                EpochKey::from_bytes(&epoch),
                session,
                Peer {
                    root: peer_roots[ident],
                    send_mailbox: send,
                    relay_url: if bundled { HOME } else { ELSEWHERE },
                    recv_mailbox: recv,
                },
                StdRng::seed_from_u64(rng.random()),
            ));
        }
    }
    Ok((ids, devices, members))
}

/// `per-device`: a device's own prekeys, and the bundle it publishes.
fn per_device_state(
    id: &Arc<LocalIdentity>,
    rng: &mut StdRng,
) -> Result<(PerDevice, PrekeyBundle), String> {
    let mut prekeys = MemoryPrekeyStore::default();
    let bundle = PrekeyBundle {
        identity: id.keys().clone(),
        signed_prekey: prekeys
            .new_signed_prekey(id, rng)
            .map_err(|e| format!("a device's signed prekey: {e}"))?,
        one_time_prekey: None,
        pq_prekey: prekeys
            .new_pq_prekey(id, true, rng)
            .map_err(|e| format!("a device's PQ prekey: {e}"))?,
    };
    Ok((PerDevice::new(id.clone(), prekeys), bundle))
}

/// `per-device`: every device's own prekeys (the bundle it publishes) and each
/// identity's signed device list, at the relay before the run starts.
fn per_device_setup(
    ids: &[Arc<LocalIdentity>],
    devices: &mut [Device],
    members: &[Vec<usize>; 2],
    relay: &mut Relay,
    rng: &mut StdRng,
) -> Result<(), SimError> {
    let bug = |what: &str, e: &dyn std::fmt::Display| SimError::Setup(format!("{what}: {e}"));
    for (ident, devs) in members.iter().enumerate() {
        let id = &ids[ident];
        let root = id
            .root()
            .ok_or_else(|| SimError::Setup("an identity without its root".into()))?;
        let (mut listed, mut bundles) = (Vec::new(), Vec::new());
        for &dev in devs {
            let d = &mut devices[dev];
            let (pd, bundle) = per_device_state(id, rng).map_err(SimError::Setup)?;
            listed.push(chorus_wire::ListedDevice {
                device: d.key,
                prekey_address: chorus_core::per_device::prekey_address(d.log_id(), &d.key),
                generation: 0,
            });
            bundles.push((d.key, bundle));
            d.per_device = Some(pd);
        }
        let list = chorus_wire::DeviceList::sign(root, 1, 0, listed, Vec::new())
            .map_err(|e| bug("a device list", &e))?;
        relay.publish(ident, list, bundles);
    }
    // The two identities talked before the run (the shared session is set up): each
    // device holds the contact's list as it was then.
    for (ident, devs) in members.iter().enumerate() {
        let (reply, _) = relay.handle([0; 32], &Request::DeviceList { mailbox: 1 - ident }, 0);
        let Reply::DeviceList(Some((list, bundles))) = reply else {
            return Err(SimError::Setup("a contact's device list".into()));
        };
        for &dev in devs {
            if let Some(pd) = devices[dev].per_device.as_mut() {
                pd.take_list(list.clone(), bundles.clone(), 0)
                    .map_err(|e| bug("the contact's list", &e))?;
                pd.fresh = false;
            }
        }
    }
    Ok(())
}

impl World {
    pub(crate) fn new(config: &Config, seed: u64) -> Result<Self, SimError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let (ids, mut devices, members) = setup(config, &mut rng)?;
        let window_ms = config.window_ms;
        for d in &mut devices {
            if config.faults.skew_ms > 0 {
                let s = config.faults.skew_ms as i64;
                d.skew_ms = rng.random_range(-s..=s);
            }
        }
        // Never destroy an identity's last device; never revoke a `primary` identity's
        // primary (its first device): revoking it is moving the primary first.
        let destroyable: Vec<usize> = members
            .iter()
            .filter(|m| m.len() > 1)
            .flat_map(|m| m.iter().copied())
            .collect();
        let revocable: Vec<usize> = destroyable
            .iter()
            .copied()
            .filter(|d| {
                config.strategy != chorus_core::Strategy::Primary
                    || members.iter().all(|m| m.first() != Some(d))
            })
            .collect();
        let mut schedule = schedule(
            &config.faults,
            window_ms,
            devices.len(),
            &destroyable,
            &revocable,
            &mut rng,
        );
        if let Some(keep) = &config.keep {
            schedule = schedule
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep.contains(i))
                .map(|(_, f)| f)
                .collect();
        }
        let ndev = devices.len();
        let mut relay = Relay::new(2, 2);
        // The strategy is in each log before anything else: the first device sets it
        // (under `primary`, that makes it the primary), and every device folds it
        // before it sends.
        if config.strategy != chorus_core::Strategy::Sequenced {
            for (ident, m) in members.iter().enumerate() {
                let first = &mut devices[m[0]];
                let records = first
                    .seal(
                        vec![chorus_core::Pending::free(
                            chorus_wire::EventKind::StrategySet {
                                strategy: config.strategy,
                            },
                        )],
                        0,
                    )
                    .map_err(|e| SimError::Setup(format!("the strategy: {e}")))?;
                let append = Request::Append {
                    log: ident,
                    records,
                    post: None,
                };
                relay.handle(first.key, &append, 0);
            }
        }
        relay.ignore_guards = config.faults.relay_ignores_guards;
        if config.strategy == chorus_core::Strategy::PerDevice {
            per_device_setup(&ids, &mut devices, &members, &mut relay, &mut rng)?;
        }
        let mut w = Self {
            now: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_event: 0,
            next_req: 0,
            devices,
            ids,
            initial_devices: ndev,
            members,
            relay,
            relay_down_until: 0,
            lossy: Vec::new(),
            faults: config.faults.clone(),
            schedule: schedule.clone(),
            destroy_pending: BTreeSet::new(),
            linking: BTreeMap::new(),
            revocation: None,
            net: StdRng::seed_from_u64(rng.random()),
            inflight: BTreeMap::new(),
            poll_at: vec![None; ndev],
            ledger: Ledger::new(config.strategy),
            window_ms,
            trace: Sha256::new(),
            stats: Stats::default(),
        };
        // The workload: who types what, when; bursts of simultaneous sends.
        let mut work = StdRng::seed_from_u64(rng.random());
        let mut typed = 0;
        while typed < config.messages {
            let at = work.random_range(0..window_ms.max(1));
            let burst = if work.random_bool(0.2) {
                work.random_range(2..=4)
            } else {
                1
            };
            for _ in 0..burst.min(config.messages - typed) {
                let from = work.random_range(0..2usize);
                let msg = w.ledger.plan(from, work.random_range(0..8));
                w.push(at, Ev::Type { msg });
                typed += 1;
            }
        }
        for (i, f) in schedule.iter().enumerate() {
            w.push(f.at, Ev::Fault(i));
        }
        for dev in 0..ndev {
            w.push(0, Ev::Wake { dev });
        }
        Ok(w)
    }

    fn push(&mut self, at: u64, ev: Ev) {
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, ev);
        self.queue.push(Reverse((at, id)));
    }

    fn delay(&mut self) -> u64 {
        let (lo, hi) = if self.now >= self.window_ms {
            (5, 5)
        } else {
            self.faults.delay_ms
        };
        self.net.random_range(lo..=hi.max(lo))
    }

    /// Whether a message on the network is lost now.
    fn lost(&mut self) -> bool {
        if self.now >= self.window_ms {
            return false;
        }
        let windowed = self
            .lossy
            .iter()
            .filter(|(from, to, _)| (*from..*to).contains(&self.now))
            .map(|(_, _, p)| *p)
            .fold(0.0f64, f64::max);
        let p = windowed.max(self.faults.loss);
        p > 0.0 && self.net.random_bool(p.min(1.0))
    }

    fn reachable(&self, dev: usize) -> bool {
        self.devices[dev].partitioned_until <= self.now && self.devices[dev].status == Status::Up
    }

    /// Lets a device act: sends its next request, or sleeps until the next poll.
    fn kick(&mut self, dev: usize) {
        let now = self.now;
        let next = self.devices[dev].next_request(now);
        for p in std::mem::take(&mut self.devices[dev].problems) {
            self.ledger.violation(format!("device {dev}: {p}"));
        }
        for (msg, envelope, healed) in std::mem::take(&mut self.devices[dev].heals) {
            self.ledger.heals(msg, envelope, healed);
        }
        let Some((op, request)) = next else {
            if self.devices[dev].status == Status::Up
                && self.devices[dev].inflight.is_none()
                && self.poll_at[dev].is_none_or(|t| t <= now)
            {
                self.poll_at[dev] = Some(now + POLL_MS);
                self.push(now + POLL_MS, Ev::Wake { dev });
            }
            return;
        };
        let req = self.next_req;
        self.next_req += 1;
        self.devices[dev].inflight = Some((req, op.clone()));
        self.stats.requests += 1;
        self.stats.bytes_up += request.size() as u64;
        if matches!(op, Op::Send(_)) {
            self.stats.send_attempts += 1;
        }
        self.inflight.insert(
            req,
            InFlight {
                op,
                request: request.clone(),
                sent_ms: now,
            },
        );
        self.push(now + REQUEST_TIMEOUT_MS, Ev::Timeout { dev, req });
        if !self.reachable(dev) || self.lost() {
            return;
        }
        let d = self.delay();
        self.push(
            now + d,
            Ev::AtRelay {
                dev,
                req,
                request: request.clone(),
                copy: false,
            },
        );
        if self.now < self.window_ms
            && self.faults.duplication > 0.0
            && self.net.random_bool(self.faults.duplication)
        {
            let d = self.delay();
            self.push(
                now + d + 1,
                Ev::AtRelay {
                    dev,
                    req,
                    request,
                    copy: true,
                },
            );
        }
    }

    /// Runs to the end; returns the outcome.
    pub(crate) fn run(mut self) -> Outcome {
        let deadline = self.window_ms + SETTLE_MS;
        let mut converged_at = None;
        while let Some(Reverse((at, id))) = self.queue.pop() {
            let Some(ev) = self.events.remove(&id) else {
                continue;
            };
            self.now = at;
            if at > deadline {
                break;
            }
            let (k, who) = ev.tag();
            self.trace.update([k]);
            self.trace.update(at.to_be_bytes());
            self.trace.update((who as u64).to_be_bytes());
            self.step(ev);
            if at >= self.window_ms && self.settled() {
                converged_at = Some(at);
                break;
            }
        }
        self.finish(converged_at)
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Type { msg } => {
                let from = self.ledger.from(msg);
                let up: Vec<usize> = self.members[from]
                    .iter()
                    .copied()
                    .filter(|&d| self.devices[d].status == Status::Up)
                    .collect();
                if up.is_empty() {
                    self.ledger.unavailable(msg);
                    return;
                }
                let dev = up[self.ledger.device_choice(msg) % up.len()];
                let others_down = self.members[from].iter().any(|&d| {
                    d != dev && !matches!(self.devices[d].status, Status::Up | Status::Revoked)
                });
                self.ledger.typed(msg, dev, self.now, others_down);
                if dev >= self.initial_devices {
                    self.stats.typed_on_linked += 1;
                }
                let text = self.ledger.text(msg);
                self.devices[dev].type_message(msg, text, self.now);
                self.kick(dev);
            }
            Ev::Wake { dev } => {
                if self.poll_at[dev].is_some_and(|t| t <= self.now) {
                    self.poll_at[dev] = None;
                    self.devices[dev].poke(true, true);
                }
                self.kick(dev);
            }
            Ev::AtRelay {
                dev,
                req,
                request,
                copy,
            } => {
                if self.now < self.relay_down_until {
                    return;
                }
                let author = self.devices[dev].key;
                let (reply, changed) = self.relay.handle(author, &request, self.now);
                self.observe(&request, &reply, req);
                self.push_changes(changed);
                if copy || self.lost() || !self.reachable(dev) {
                    return;
                }
                self.stats.bytes_down += reply.size() as u64;
                let d = self.delay();
                self.push(self.now + d, Ev::AtDevice { dev, req, reply });
            }
            Ev::AtDevice { dev, req, reply } => {
                if self.devices[dev].inflight.as_ref().map(|(r, _)| *r) != Some(req) {
                    return; // a late reply to a request given up on
                }
                let Some(flight) = self.inflight.remove(&req) else {
                    return;
                };
                if let (Op::Send(_), Reply::Appended(_)) = (&flight.op, &reply)
                    && self.destroy_pending.remove(&dev)
                {
                    // Its new ratchet key is in the log and maybe in the contact's
                    // mailbox; the device never comes back.
                    self.devices[dev].status = Status::Destroyed;
                    self.devices[dev].inflight = None;
                    self.stats.destroyed += 1;
                    return;
                }
                self.stats.latency_rtt_ms += self.now - flight.sent_ms;
                if let Reply::DeviceList(Some((list, _))) = &reply {
                    self.took_list(dev, list);
                }
                let seen = self.devices[dev].on_reply(flight.op, &flight.request, reply, self.now);
                let ident = self.devices[dev].ident;
                for s in seen {
                    self.ledger.seen(dev, ident, s, self.now);
                }
                if let Some(key) = self.devices[dev].linked.take() {
                    self.start_linked(dev, key);
                }
                if let Some(key) = self.devices[dev].revoked.take() {
                    self.revoked(dev, key);
                }
                self.kick(dev);
            }
            Ev::Push { dev, log, mail } => {
                self.devices[dev].poke(log, mail);
                self.kick(dev);
            }
            Ev::Timeout { dev, req } => {
                // Whatever became of the device, the request is over.
                let pending = self.inflight.remove(&req).is_some();
                if pending && self.devices[dev].inflight.as_ref().map(|(r, _)| *r) == Some(req) {
                    self.devices[dev].inflight = None;
                    self.stats.timeouts += 1;
                    self.kick(dev);
                }
            }
            Ev::Fault(i) => self.fault(i),
            Ev::Restart { dev } => {
                if matches!(self.devices[dev].status, Status::Down(_)) {
                    self.devices[dev].restart();
                    self.kick(dev);
                }
            }
            Ev::CloneSends => self.clone_sends(),
            Ev::Revoke { dev } => self.revoke_stolen(dev),
        }
    }

    fn fault(&mut self, i: usize) {
        let Some(f) = self.schedule.get(i).cloned() else {
            return;
        };
        self.stats.faults += 1;
        match f.kind {
            FaultKind::Crash { device, down_ms } => {
                if self.devices[device].status == Status::Up {
                    let until = self.now + down_ms;
                    self.devices[device].status = Status::Down(until);
                    self.devices[device].inflight = None;
                    self.poll_at[device] = None;
                    self.push(until, Ev::Restart { dev: device });
                }
            }
            FaultKind::Partition { device, ms } => {
                let d = &mut self.devices[device];
                d.partitioned_until = d.partitioned_until.max(self.now + ms);
                let until = d.partitioned_until;
                self.push(until, Ev::Wake { dev: device });
            }
            FaultKind::RelayRestart { ms } => {
                self.relay_down_until = self.relay_down_until.max(self.now + ms);
            }
            FaultKind::Lossy { ms, percent } => {
                self.lossy
                    .push((self.now, self.now + ms, f64::from(percent) / 100.0));
            }
            FaultKind::DestroyAfterSend { device } => {
                // Never an identity's last device (a theft may have taken the other).
                let ident = self.devices[device].ident;
                let others = self.members[ident].iter().any(|&d| {
                    d != device
                        && !matches!(self.devices[d].status, Status::Destroyed | Status::Revoked)
                });
                if others {
                    self.destroy_pending.insert(device);
                }
            }
            FaultKind::Link { device } => self.link(device),
            FaultKind::Revoke { device } => self.revoke(device),
        }
    }

    /// `device` is stolen: it stops and its clone starts sending; a sibling revokes it
    /// [`REVOKE_AFTER_MS`] later; the heal traffic is typed after the window. Nothing
    /// happens if it has no sibling left to revoke it, or a device was stolen already in
    /// this run.
    fn revoke(&mut self, device: usize) {
        let ident = self.devices[device].ident;
        let siblings = self.members[ident]
            .iter()
            .filter(|&&d| d != device && !self.destroy_pending.contains(&d))
            .any(|&d| !matches!(self.devices[d].status, Status::Destroyed | Status::Revoked));
        if self.revocation.is_some()
            || !siblings
            || matches!(
                self.devices[device].status,
                Status::Destroyed | Status::Revoked
            )
        {
            return;
        }
        let d = &mut self.devices[device];
        d.status = Status::Revoked;
        d.inflight = None;
        self.poll_at[device] = None;
        self.destroy_pending.remove(&device);
        self.stats.revoked += 1;
        self.revocation = Some(Revocation {
            clone: device,
            sent: 0,
        });
        self.ledger.stolen(device, ident);
        for (at, from) in HEAL_TRAFFIC_MS.into_iter().zip([ident, 1 - ident, ident]) {
            let msg = self.ledger.plan(from, 0);
            self.push(self.window_ms + at, Ev::Type { msg });
        }
        self.push(self.now + CLONE_EVERY_MS, Ev::CloneSends);
        self.push(self.now + REVOKE_AFTER_MS, Ev::Revoke { dev: device });
    }

    /// A sibling revokes the stolen `device`: the first one up (later, if none is up
    /// now: the user tries again).
    fn revoke_stolen(&mut self, device: usize) {
        let ident = self.devices[device].ident;
        let by = self.members[ident].iter().copied().find(|&d| {
            d != device
                && self.devices[d].status == Status::Up
                && self.devices[d].roster_change.is_none()
                && !self.destroy_pending.contains(&d)
        });
        let Ok(key) = DevicePublicKey::from_bytes(self.devices[device].key) else {
            return;
        };
        match by {
            Some(by) => {
                self.devices[by].roster_change = Some(RosterChange::Revoke(key));
                self.kick(by);
            }
            None => self.push(self.now + POLL_MS, Ev::Revoke { dev: device }),
        }
    }

    /// The revocation is in the log, folded by the device that appended it: the relay
    /// is shown it (the device's credential is dropped) and, under `per-device`, the
    /// identity's list without the device is published, as of that device's clock.
    fn revoked(&mut self, by: usize, device: [u8; 32]) {
        let ident = self.devices[by].ident;
        self.relay.revoke(ident, device);
        self.ledger.revoked();
        if let Some(list) = self.publish_list(by, Vec::new()) {
            let removed = chorus_core::per_device::left_at(&list, &device, u64::MAX);
            self.ledger.list_without_clone(removed);
        }
    }

    /// `per-device`: device `by` publishes its identity's list as its roster stands
    /// (the devices whose bundle is at the relay, `bundles` first), as of its clock,
    /// as the client's sync does; the list.
    fn publish_list(
        &mut self,
        by: usize,
        bundles: Vec<([u8; 32], PrekeyBundle)>,
    ) -> Option<chorus_wire::DeviceList> {
        let d = &self.devices[by];
        if d.strategy() != chorus_core::Strategy::PerDevice {
            return None;
        }
        let root = self.ids.get(d.ident).and_then(|i| i.root())?;
        let issued_ms = d.now(self.now);
        let published =
            |k: &[u8; 32]| self.relay.has_bundle(k) || bundles.iter().any(|(b, _)| b == k);
        let own = chorus_core::per_device::own_list(d.roster(), d.log_id(), published);
        match own.sign(root, issued_ms) {
            Ok(list) => {
                self.relay.publish(d.ident, list.clone(), bundles);
                Some(list)
            }
            Err(e) => {
                self.ledger
                    .violation(format!("device {by} could not sign its list: {e}"));
                None
            }
        }
    }

    /// A device took a contact's list: under `per-device`, one without the stolen
    /// device is its heal.
    fn took_list(&mut self, dev: usize, list: &chorus_wire::DeviceList) {
        if let Some(r) = &self.revocation {
            let stolen = self.devices[r.clone].key;
            if self.devices[dev].ident != self.devices[r.clone].ident && list.get(&stolen).is_none()
            {
                self.ledger.healed(dev, self.now);
            }
        }
    }

    /// The clone sends once more: on its chain, then on a fresh DH step, by turns
    /// (`per-device`: a copy per contact device), straight to the relay.
    fn clone_sends(&mut self) {
        let Some(r) = self.revocation.as_mut() else {
            return;
        };
        let (dev, n) = (r.clone, r.sent);
        r.sent += 1;
        let now = self.now;
        let key = self.devices[dev].key;
        let text = format!("clone.{n}");
        if let Some(request) = self.devices[dev].clone_request(&text, n % 2 == 1, now) {
            let (reply, changed) = self.relay.handle(key, &request, now);
            match (&request, reply) {
                (_, Reply::Posted) => {
                    for (_, id, bytes) in request.envelopes() {
                        self.ledger.clone_posted(id, n, now, bytes);
                    }
                }
                (Request::PostCopies { mailbox, .. }, Reply::Mismatch(_)) => {
                    // The clone learns the contact's devices as anyone can.
                    let list = Request::DeviceList { mailbox: *mailbox };
                    let (reply, _) = self.relay.handle(key, &list, now);
                    self.devices[dev].clone_takes_list(reply);
                }
                _ => {}
            }
            self.push_changes(changed);
        }
        if now + CLONE_EVERY_MS <= self.window_ms + CLONE_UNTIL_MS {
            self.push(now + CLONE_EVERY_MS, Ev::CloneSends);
        }
    }

    /// `device` links a new sibling: it appends the root-signed authorization; once
    /// it has folded it, the new device starts from its state ([`Self::start_linked`]).
    fn link(&mut self, device: usize) {
        let ident = self.devices[device].ident;
        if self.devices[device].status != Status::Up
            || self.devices[device].roster_change.is_some()
            || self.members[ident].len() >= crate::MAX_DEVICES
        {
            return;
        }
        let mut rng = StdRng::seed_from_u64(self.net.random());
        let key = DeviceSigningKey::generate(&mut rng);
        let dh = DeviceDhSecret::generate(&mut rng);
        let name = format!("device {}", self.members[ident].len());
        self.devices[device].roster_change = Some(RosterChange::Link {
            key: key.public_key(),
            dh: dh.public_key(),
            name,
        });
        self.linking.insert(*key.public_key().as_bytes(), dh);
        self.kick(device);
    }

    /// Starts the device `linker` authorized, from `linker`'s state.
    fn start_linked(&mut self, linker: usize, key: [u8; 32]) {
        let rng = StdRng::seed_from_u64(self.net.random());
        let Some(dh) = self.linking.remove(&key) else {
            self.ledger.violation(format!(
                "device {linker} linked a device nobody was linking"
            ));
            return;
        };
        match self.devices[linker].linked_device(key, dh, rng) {
            Ok(mut d) => {
                let new = self.devices.len();
                let ident = d.ident;
                // `per-device`: the new device makes its own prekeys and publishes its
                // bundle, and with it the identity's list naming it (what its first
                // sync does). What its siblings were sent before is theirs alone.
                let mut bundle = None;
                if d.strategy() == chorus_core::Strategy::PerDevice {
                    let mut rng = StdRng::seed_from_u64(self.net.random());
                    match per_device_state(&self.ids[ident], &mut rng) {
                        Ok((pd, b)) => {
                            d.per_device = Some(pd);
                            bundle = Some(b);
                        }
                        Err(e) => self
                            .ledger
                            .violation(format!("a linked device's prekeys: {e}")),
                    }
                }
                self.devices.push(d);
                self.poll_at.push(None);
                self.members[ident].push(new);
                self.ledger.linked(new, linker);
                self.stats.linked += 1;
                if let Some(bundle) = bundle {
                    self.publish_list(new, vec![(key, bundle)]);
                }
                self.push(self.now, Ev::Wake { dev: new });
            }
            Err(e) => self.ledger.violation(format!(
                "device {linker} could not start a linked device: {e}"
            )),
        }
    }

    /// Pushes a wake-up to every device that reads what changed (the WebSocket).
    fn push_changes(&mut self, changed: Changed) {
        let (log, mailbox) = match changed {
            Changed::Nothing => return,
            Changed::Log(l, m) => (Some(l), m),
            Changed::Mailbox(m) => (None, Some(m)),
        };
        for dev in 0..self.devices.len() {
            let ident = self.devices[dev].ident;
            let l = log == Some(ident);
            // Mailbox `i` is identity `i`'s (the world's layout).
            let m = mailbox == Some(ident);
            if (l || m) && self.reachable(dev) && !self.lost() {
                let d = self.delay();
                self.push(
                    self.now + d,
                    Ev::Push {
                        dev,
                        log: l,
                        mail: m,
                    },
                );
            }
        }
    }

    /// What the relay saw, for the checks: every envelope posted, every send logged.
    fn observe(&mut self, request: &Request, reply: &Reply, req: u64) {
        if matches!(reply, Reply::Posted | Reply::Appended(_)) {
            for (mailbox, id, bytes) in request.envelopes() {
                self.ledger.posted(mailbox, id, bytes);
            }
        }
        if let (
            Request::PostCopies {
                envelope_id,
                copies,
                ..
            },
            Reply::Posted,
        ) = (request, reply)
        {
            self.ledger
                .copied(*envelope_id, copies.iter().map(|(d, ..)| *d));
        }
        if let (Request::Append { .. }, Reply::Appended(_)) = (request, reply)
            && let Some(InFlight {
                op: Op::Send(msg), ..
            }) = self.inflight.get(&req)
        {
            self.ledger.escrowed(*msg);
        }
    }

    /// Past the window: every device up and idle, having read the whole log and
    /// mailbox, nothing in flight.
    /// When the last disturbance ends: the window, or the clone's last send.
    fn quiet_from(&self) -> u64 {
        match self.revocation {
            Some(_) => self.window_ms + CLONE_UNTIL_MS,
            None => self.window_ms,
        }
    }

    fn settled(&self) -> bool {
        self.now >= self.quiet_from()
            && self.inflight.is_empty()
            && self.devices.iter().all(|d| match d.status {
                Status::Destroyed | Status::Revoked => true,
                Status::Down(_) => false,
                Status::Up => {
                    d.idle()
                        && d.applied() == self.relay.log_len(d.ident)
                        && (!d.reads_mail()
                            || d.mail_cursor() >= self.relay.mailbox_len_for(d.ident, &d.key))
                }
            })
    }

    fn finish(mut self, converged_at: Option<u64>) -> Outcome {
        let live: Vec<(usize, &Device)> = self
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| !matches!(d.status, Status::Destroyed | Status::Revoked))
            .collect();
        if converged_at.is_none() {
            self.ledger.violation(format!(
                "no convergence within {} s after the window",
                SETTLE_MS / 1000
            ));
        }
        let one_state = self.ledger.check_end(&self.members, &live, &self.relay);
        self.stats.converged = converged_at.is_some() && one_state;
        for (_, d) in &live {
            self.trace.update(d.digest());
            self.stats.conflicts += d.conflicts;
            self.stats.forwarded += d.forwarded;
            self.stats.fanned_out += d.fanned_out;
            self.stats.mismatches += d.per_device.as_ref().map_or(0, |p| p.mismatches);
        }
        for devs in &self.members {
            self.stats.lease_terms += live
                .iter()
                .filter(|(i, _)| devs.contains(i))
                .filter_map(|(_, d)| d.lease_term())
                .max()
                .unwrap_or(0);
        }
        let alive: BTreeSet<usize> = live.iter().map(|(i, _)| *i).collect();
        let quiet_from = self.quiet_from();
        let trace: [u8; 32] = self.trace.finalize().into();
        self.stats.converge_ms = converged_at.map(|t| t.saturating_sub(quiet_from));
        self.ledger.fill(&mut self.stats, &alive);
        Outcome {
            trace,
            stats: self.stats,
            violations: self.ledger.violations().to_vec(),
            schedule: self.schedule,
        }
    }
}
