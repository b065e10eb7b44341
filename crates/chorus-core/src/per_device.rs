//! The `per-device` strategy's decisions (Signal's Sesame), sans I/O.
//!
//! Under `per-device` each of our devices keeps its own pairwise session with each of
//! a contact's devices, and a message goes out as one copy per contact device in one
//! relay post. Nothing here is shared through the log: a pairwise session belongs to
//! one device (it is not escrowed, so a lost device takes its sessions with it, as in
//! Signal), and the siblings learn what was sent from the `Sent` record as under every
//! strategy.
//!
//! The client and the simulator ask this module, never decide themselves:
//! - [`accept_list`]: whether a contact's signed device list may replace the one held
//!   (a relay replaying an older list must not bring a revoked device back, and two
//!   different lists under one serial are an identity that equivocates);
//! - [`plan_send`]: which devices get a copy, which need a session opened first, and
//!   which sessions retire because their device left the list or started over;
//! - [`after_refusal`]: what a relay's `device_mismatch` answer means — fetch the list
//!   again and send once more, as one step, at most [`MAX_MISMATCH_RETRIES`] times;
//! - [`Pairwise::accepts`]: a retired session still decrypts what the relay took
//!   before it retired (copies in flight), for [`STALE_SESSION_MS`] (the relay's
//!   mailbox lifetime), then it is dropped. What the relay took after — a revoked
//!   device, or a copy of its state, still sending — is refused.
//!
//! What a contact learns under `per-device` is by design more than under the other
//! strategies: how many devices the identity has, when one is added or removed, and
//! which device sent each message (the copy names its sender).

use std::collections::BTreeMap;

use chorus_crypto::CryptoRng;
use chorus_crypto::RootSigningKey;
use chorus_wire::{
    DeviceList, Envelope, Hello, ListedDevice, Mismatch, Payload, RemovedDevice, WireError,
};
use sha2::{Digest, Sha256};

use crate::{EncryptedMessage, MessageKind, Roster, Session, SessionError};

/// How long a retired pairwise session still decrypts: the relay's default mailbox
/// lifetime (`chorus_relay::limits`, 30 days), so a copy posted on it before it
/// retired is read whenever the device comes back within the lifetime.
pub const STALE_SESSION_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// How many times one send fetches the list again after a `device_mismatch` before it
/// gives up (the list changing under every retry is a contact linking and revoking
/// devices as fast as we post, or a relay that lies).
pub const MAX_MISMATCH_RETRIES: usize = 3;

/// Where a device publishes its own prekey bundle: derived from the identity's log
/// and the device, so a sibling that signs the list names it without being told.
pub fn prekey_address(log_id: &[u8; 32], device: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"Chorus_PerDeviceAddress_v1")
        .chain_update(log_id)
        .chain_update(device)
        .finalize()
        .into()
}

/// The device list our identity publishes, before it is signed ([`own_list`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnList {
    /// Grows with every device added, revoked or published.
    pub serial: u64,
    /// The current devices that published their bundle.
    pub devices: Vec<ListedDevice>,
    /// The revoked devices, each with when it was revoked.
    pub removed: Vec<RemovedDevice>,
}

impl OwnList {
    /// Signs it with the identity's root, as of `issued_ms` (the signer's clock).
    pub fn sign(self, root: &RootSigningKey, issued_ms: u64) -> Result<DeviceList, WireError> {
        DeviceList::sign(root, self.serial, issued_ms, self.devices, self.removed)
    }
}

/// The device list our identity publishes, from the roster: every current device
/// that has `published` its bundle (a contact cannot open a session with one that has
/// not), at its derived address, and every revoked device with the revoking entry's
/// clock (a contact device that never held the list that first dropped it still
/// retires it as of then). The serial grows with every device added or revoked
/// (the roster's next index, high bits) and with every device that publishes its
/// bundle since (how many are listed, low bits), so the newest view always wins and
/// two siblings with one view sign one list. A device's generation is always 0: a
/// device reinstalled is a new device here.
pub fn own_list(
    roster: &Roster,
    log_id: &[u8; 32],
    published: impl Fn(&[u8; 32]) -> bool,
) -> OwnList {
    let devices: Vec<ListedDevice> = roster
        .devices()
        .iter()
        .filter(|d| published(d.key.as_bytes()))
        .map(|d| ListedDevice {
            device: *d.key.as_bytes(),
            prekey_address: prekey_address(log_id, d.key.as_bytes()),
            generation: 0,
        })
        .collect();
    let serial = roster.next_index().saturating_mul(256) + devices.len() as u64;
    // The roster never holds more devices, revoked ones included, than a list names.
    let room = chorus_wire::limits::MAX_LISTED_DEVICES.saturating_sub(devices.len());
    let removed = roster
        .revoked()
        .iter()
        .rev()
        .take(room)
        .map(|(key, at)| RemovedDevice {
            device: *key.as_bytes(),
            generation: 0,
            removed_ms: *at,
        })
        .collect();
    OwnList {
        serial,
        devices,
        removed,
    }
}

/// When `list` says `device` stopped reading new copies: when it was revoked, if the
/// list names that (the roster's revocation entry: one time, whichever sibling signs
/// the list and whichever later list a contact device comes back to), else when the
/// list was signed; never later than `now_ms` (a signer's clock ahead must not keep a
/// removed device readable).
pub fn left_at(list: &DeviceList, device: &[u8; 32], now_ms: u64) -> u64 {
    list.removed()
        .iter()
        .find(|r| r.device == *device)
        .map_or(list.issued_ms, |r| r.removed_ms)
        .min(now_ms)
}

/// Encrypts `text` (and the file sent with it) for one contact device on the pairwise `session` (which moves on by
/// one message) into the envelope the relay stores for that device alone, with our
/// `hello` until the contact is known to have it (as on the shared session).
pub fn encrypt_copy<R: CryptoRng + ?Sized>(
    session: &mut Session,
    sender_device: [u8; 32],
    (text, file): (&str, Option<&chorus_wire::Attachment>),
    sent_ms: u64,
    hello: Option<Hello>,
    rng: &mut R,
) -> Result<Vec<u8>, SessionError> {
    let payload = Payload {
        sent_ms,
        text: text.to_owned(),
        hello,
        rolls: Vec::new(),
        roll_seen: None,
        name: None,
        timer: None,
        file: file.cloned(),
    }
    .encode()?;
    let m = session.encrypt(&payload, rng)?;
    Ok(Envelope::Copy {
        sender_device,
        initial: m.kind == MessageKind::Initial,
        message: m.bytes,
    }
    .encode())
}

/// Decrypts a copy on its pairwise session: a ratchet copy, or an initial one on the
/// session its first initial copy opened ([`crate::respond`] opens it; the sender keeps
/// sending initial copies until it hears back).
pub fn open_copy(
    session: &mut Session,
    initial: bool,
    message: Vec<u8>,
) -> Result<Payload, SessionError> {
    let kind = match initial {
        true => MessageKind::Initial,
        false => MessageKind::Ratchet,
    };
    let plain = session.decrypt(&EncryptedMessage {
        kind,
        bytes: message,
    })?;
    Ok(Payload::decode(&plain)?)
}

/// Sessions kept with one contact device besides the one sent on. Two devices that
/// write to each other first at the same moment each open a session (Sesame's
/// simultaneous initiation); each reads the other's, so both are kept, and the one a
/// copy arrives on becomes the one sent on — the two devices converge on one.
pub const MAX_PREVIOUS_SESSIONS: usize = 4;

/// The sessions with one contact device: the first is sent on, the rest still read.
pub struct PeerSessions {
    sessions: Vec<Session>,
}

impl PeerSessions {
    /// One session, sent on.
    pub fn new(session: Session) -> Self {
        Self {
            sessions: vec![session],
        }
    }

    /// From stored sessions, the one sent on first (`None` if there are none).
    pub fn from_sessions(sessions: Vec<Session>) -> Option<Self> {
        (!sessions.is_empty()).then_some(Self { sessions })
    }

    /// Every session, the one sent on first.
    pub fn sessions(&self) -> &[Session] {
        &self.sessions
    }

    /// The session to send on.
    pub fn current(&mut self) -> &mut Session {
        &mut self.sessions[0]
    }

    /// Reads a copy on whichever session it belongs to; that one is sent on from now.
    pub fn open(&mut self, initial: bool, message: &[u8]) -> Result<Payload, SessionError> {
        let mut first_error = None;
        for i in 0..self.sessions.len() {
            match open_copy(&mut self.sessions[i], initial, message.to_vec()) {
                Ok(payload) => {
                    let s = self.sessions.remove(i);
                    self.sessions.insert(0, s);
                    return Ok(payload);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(SessionError::WrongSession))
    }

    /// Whether a first copy with this handshake was taken already (a replay).
    pub fn has_handshake(&self, base_key: Option<[u8; 32]>) -> bool {
        base_key.is_some()
            && self
                .sessions
                .iter()
                .any(|s| s.handshake_base_key() == base_key)
    }

    /// A session a first copy from that device opened: sent on from now, the others
    /// kept to read (at most [`MAX_PREVIOUS_SESSIONS`]).
    pub fn adopt(&mut self, session: Session) {
        self.sessions.insert(0, session);
        self.sessions.truncate(MAX_PREVIOUS_SESSIONS + 1);
    }
}

/// Why a contact's device list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// The list is older than one already accepted (the relay, or whoever served it,
    /// replays an old list).
    #[error("device list {offered} is older than {held}, already accepted")]
    Rollback {
        /// The serial offered.
        offered: u64,
        /// The serial held.
        held: u64,
    },
    /// Another list under the serial already accepted: the identity signed two.
    #[error("two different device lists under serial {0}")]
    Equivocation(u64),
}

/// Whether `offered` may replace `held` (the list last accepted for this contact):
/// `Ok(true)` to replace it, `Ok(false)` when it is the same list.
pub fn accept_list(held: Option<&DeviceList>, offered: &DeviceList) -> Result<bool, ListError> {
    let Some(held) = held else {
        return Ok(true);
    };
    match offered.serial.cmp(&held.serial) {
        std::cmp::Ordering::Less => Err(ListError::Rollback {
            offered: offered.serial,
            held: held.serial,
        }),
        std::cmp::Ordering::Equal if offered == held => Ok(false),
        std::cmp::Ordering::Equal => Err(ListError::Equivocation(offered.serial)),
        std::cmp::Ordering::Greater => Ok(true),
    }
}

/// One pairwise session's bookkeeping (the session itself is the caller's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pairwise {
    /// The contact device's generation the session was opened with.
    pub generation: u32,
    /// When it retired (its device left the list or started over); `None`: current.
    pub retired_ms: Option<u64>,
}

impl Pairwise {
    /// A current session.
    pub fn current(generation: u32) -> Self {
        Self {
            generation,
            retired_ms: None,
        }
    }

    /// Whether it may decrypt, at `now_ms`, a copy the relay took at `received_ms`:
    /// always while current; once retired, only a copy the relay took before the
    /// retirement, and only within [`STALE_SESSION_MS`] of it.
    pub fn accepts(&self, received_ms: u64, now_ms: u64) -> bool {
        match self.retired_ms {
            None => true,
            Some(r) => received_ms <= r && !self.expired(now_ms),
        }
    }

    /// Whether a retired session is past [`STALE_SESSION_MS`] (to be deleted).
    pub fn expired(&self, now_ms: u64) -> bool {
        self.retired_ms
            .is_some_and(|r| now_ms >= r.saturating_add(STALE_SESSION_MS))
    }
}

/// The devices `offered` (accepted after `held`) no longer lists: those `held` listed
/// and those `offered` names as removed, each with its generation and when it stopped
/// reading new copies ([`left_at`]; the caller keeps the earliest it heard of). A
/// first copy such a device sent before then is still read ([`first_copy`]): a device
/// of ours offline through a revocation reads what the revoked device wrote before it.
pub fn dropped(held: Option<&DeviceList>, offered: &DeviceList, now_ms: u64) -> Vec<RemovedDevice> {
    let was_held = held
        .map(|h| h.devices())
        .unwrap_or_default()
        .iter()
        .filter(|d| offered.get(&d.device).is_none())
        .map(|d| (d.device, d.generation));
    let named = offered.removed().iter().map(|r| (r.device, r.generation));
    let mut out: Vec<RemovedDevice> = was_held
        .chain(named)
        .map(|(device, generation)| RemovedDevice {
            device,
            generation,
            removed_ms: left_at(offered, &device, now_ms),
        })
        .collect();
    out.sort();
    out.dedup_by_key(|r| r.device);
    out
}

/// Whether a first copy from `device`, which the relay took at `received_ms`, may open
/// a session at `now_ms`, and its bookkeeping if so: a device `list` names opens a
/// current one; a device a later list dropped ([`dropped`]: its generation and when)
/// opens a retired one, under the rule every retired session reads by
/// ([`Pairwise::accepts`]: a copy the relay took before the drop, and only within
/// [`STALE_SESSION_MS`] of it); anything else is refused (a revoked device, or its
/// clone, starting a session).
///
/// The relay's `received_ms` is trusted here as it is for every retired session: a
/// relay that backdates a revoked device's copy gets it read, for at most
/// [`STALE_SESSION_MS`] after the drop.
pub fn first_copy(
    list: &DeviceList,
    dropped: Option<(u32, u64)>,
    device: &[u8; 32],
    received_ms: u64,
    now_ms: u64,
) -> Option<Pairwise> {
    if let Some(listed) = list.get(device) {
        return Some(Pairwise::current(listed.generation));
    }
    let (generation, at) = dropped?;
    let retired = Pairwise {
        generation,
        retired_ms: Some(at),
    };
    retired.accepts(received_ms, now_ms).then_some(retired)
}

/// What one send does, from the contact's list and our sessions with its devices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendPlan {
    /// Every listed device, each to get a copy: (device, generation).
    pub copies: Vec<([u8; 32], u32)>,
    /// Listed devices without a current session at their generation: fetch their
    /// bundle (at their prekey address) and open one before encrypting.
    pub open: Vec<ListedDevice>,
    /// Current sessions whose device left the list or started over, with when each
    /// stops reading new copies: when the identity revoked it, if the list says, or
    /// signed the list (what the relay took before is in flight and still read, for
    /// [`STALE_SESSION_MS`]), never later than now (a signer's clock ahead must not
    /// keep a removed device readable).
    pub retire: Vec<([u8; 32], u64)>,
    /// Retired sessions past [`STALE_SESSION_MS`]: delete.
    pub drop: Vec<[u8; 32]>,
}

/// The plan of one send to a contact whose list is `list`, holding `sessions` (keyed
/// by the contact's device id; a device has at most one session here — its newest).
pub fn plan_send(
    list: &DeviceList,
    sessions: &BTreeMap<[u8; 32], Pairwise>,
    now_ms: u64,
) -> SendPlan {
    let mut plan = SendPlan {
        copies: list.pairs(),
        ..SendPlan::default()
    };
    for listed in list.devices() {
        match sessions.get(&listed.device) {
            Some(s) if s.retired_ms.is_none() && s.generation == listed.generation => {}
            _ => plan.open.push(*listed),
        }
    }
    for (device, s) in sessions {
        let still_listed = list
            .get(device)
            .is_some_and(|l| l.generation == s.generation);
        if s.retired_ms.is_none() && !still_listed {
            plan.retire.push((*device, left_at(list, device, now_ms)));
        } else if s.expired(now_ms) {
            plan.drop.push(*device);
        }
    }
    plan
}

/// What to do after the relay refused a post with `device_mismatch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Fetch the contact's list again, plan again ([`plan_send`]) and post once more.
    Refetch,
    /// Stop: the list kept changing ([`MAX_MISMATCH_RETRIES`]), or the relay named a
    /// mismatch the list it serves does not explain — the post stays queued and the
    /// user is told.
    GiveUp(&'static str),
}

/// The decision after the relay answered `mismatch` to a post planned on the list
/// then held, on the `attempt`-th try (0 first).
pub fn after_refusal(mismatch: &Mismatch, attempt: usize) -> Refused {
    if attempt + 1 >= MAX_MISMATCH_RETRIES {
        return Refused::GiveUp("the contact's device list kept changing");
    }
    if mismatch.is_empty() {
        return Refused::GiveUp("the relay refused a post that matched the device list");
    }
    // A post planned on `list` names exactly its devices, so the relay holds another
    // list: the newer one it will serve.
    Refused::Refetch
}

#[cfg(test)]
mod tests {
    use chorus_crypto::RootSigningKey;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn root() -> RootSigningKey {
        RootSigningKey::generate(&mut StdRng::seed_from_u64(7))
    }

    fn dev(b: u8, generation: u32) -> ListedDevice {
        ListedDevice {
            device: [b; 32],
            prekey_address: [b; 32],
            generation,
        }
    }

    fn list(serial: u64, devices: &[ListedDevice]) -> DeviceList {
        DeviceList::sign(&root(), serial, 5, devices.to_vec(), vec![]).unwrap()
    }

    /// One device's side: its identity, its own prekeys, its published bundle.
    fn device(
        rng: &mut StdRng,
    ) -> (
        crate::LocalIdentity,
        crate::MemoryPrekeyStore,
        chorus_wire::PrekeyBundle,
    ) {
        let id = crate::LocalIdentity::generate(rng);
        let mut prekeys = crate::MemoryPrekeyStore::default();
        let bundle = chorus_wire::PrekeyBundle {
            identity: id.keys().clone(),
            signed_prekey: prekeys.new_signed_prekey(&id, rng).unwrap(),
            one_time_prekey: None,
            pq_prekey: prekeys.new_pq_prekey(&id, true, rng).unwrap(),
        };
        (id, prekeys, bundle)
    }

    fn copy_message(bytes: &[u8]) -> (bool, Vec<u8>) {
        match Envelope::decode(bytes).unwrap() {
            Envelope::Copy {
                initial, message, ..
            } => (initial, message),
            _ => panic!("not a copy"),
        }
    }

    /// Two devices that write to each other first at the same moment each open a
    /// session; each reads the other's first copy, and from their next messages on both
    /// send on one session. Before both were kept, the second first copy replaced the
    /// session the device had sent on, and the peer's answers on it were unreadable.
    #[test]
    fn two_devices_writing_first_at_once_keep_both_sessions_and_converge_on_one() {
        let mut rng = StdRng::seed_from_u64(9);
        let (a, a_prekeys, a_bundle) = device(&mut rng);
        let (b, b_prekeys, b_bundle) = device(&mut rng);
        let mut at_a = PeerSessions::new(crate::initiate(&a, &b_bundle, &mut rng).unwrap());
        let mut at_b = PeerSessions::new(crate::initiate(&b, &a_bundle, &mut rng).unwrap());
        let a0 = encrypt_copy(at_a.current(), [1; 32], ("a0", None), 0, None, &mut rng).unwrap();
        let b0 = encrypt_copy(at_b.current(), [2; 32], ("b0", None), 0, None, &mut rng).unwrap();
        // Each reads the other's first copy: not on its own session, so a new one.
        for (side, ours, prekeys, copy) in [
            (&mut at_a, &a, &a_prekeys, &b0),
            (&mut at_b, &b, &b_prekeys, &a0),
        ] {
            let (initial, message) = copy_message(copy);
            assert!(initial && side.open(initial, &message).is_err());
            let r = crate::respond(ours, prekeys, &message).unwrap();
            assert!(!side.has_handshake(r.session.handshake_base_key()));
            side.adopt(r.session);
            assert_eq!(side.sessions().len(), 2);
        }
        // Three rounds each way: every copy is read, and they settle on one session.
        for round in 0..3 {
            let text = format!("a{round}");
            let m =
                encrypt_copy(at_a.current(), [1; 32], (&text, None), 0, None, &mut rng).unwrap();
            let (initial, message) = copy_message(&m);
            assert_eq!(at_b.open(initial, &message).unwrap().text, text);
            let text = format!("b{round}");
            let m =
                encrypt_copy(at_b.current(), [2; 32], (&text, None), 0, None, &mut rng).unwrap();
            let (initial, message) = copy_message(&m);
            assert_eq!(at_a.open(initial, &message).unwrap().text, text);
        }
        // Settled: a copy on the session sent on is read on the one read first.
        let m = encrypt_copy(
            at_a.current(),
            [1; 32],
            ("settled", None),
            0,
            None,
            &mut rng,
        )
        .unwrap();
        let (initial, message) = copy_message(&m);
        assert!(open_copy(&mut at_b.sessions[0], initial, message).is_ok());
    }

    #[test]
    fn an_older_list_or_a_second_list_under_one_serial_is_refused() {
        let l2 = list(2, &[dev(1, 0), dev(2, 0)]);
        assert_eq!(accept_list(None, &l2), Ok(true));
        assert_eq!(accept_list(Some(&l2), &l2), Ok(false));
        assert_eq!(
            accept_list(Some(&l2), &list(1, &[dev(1, 0), dev(2, 0), dev(3, 0)])),
            Err(ListError::Rollback {
                offered: 1,
                held: 2
            })
        );
        assert_eq!(
            accept_list(Some(&l2), &list(2, &[dev(1, 0)])),
            Err(ListError::Equivocation(2))
        );
        assert_eq!(accept_list(Some(&l2), &list(3, &[dev(1, 0)])), Ok(true));
    }

    #[test]
    fn a_plan_opens_sessions_for_new_and_restarted_devices_and_retires_the_rest() {
        let l = list(5, &[dev(1, 0), dev(2, 1), dev(4, 0)]);
        let sessions = BTreeMap::from([
            ([1; 32], Pairwise::current(0)), // unchanged
            ([2; 32], Pairwise::current(0)), // restarted: generation 1 now
            ([3; 32], Pairwise::current(0)), // left the list
            (
                [4; 32],
                Pairwise {
                    generation: 0,
                    retired_ms: Some(0), // retired earlier: reopened
                },
            ),
        ]);
        let plan = plan_send(&l, &sessions, 10);
        assert_eq!(plan.copies, vec![([1; 32], 0), ([2; 32], 1), ([4; 32], 0)]);
        assert_eq!(plan.open, vec![dev(2, 1), dev(4, 0)]);
        // Retired as of the list's signing, or now if its signer's clock is ahead.
        assert_eq!(plan.retire, vec![([2; 32], 5), ([3; 32], 5)]);
        assert_eq!(
            plan_send(&l, &sessions, 3).retire,
            vec![([2; 32], 3), ([3; 32], 3)]
        );
        assert!(plan.drop.is_empty());
    }

    #[test]
    fn a_retired_session_reads_what_was_in_flight_until_the_mailbox_lifetime_ends() {
        let l = list(1, &[dev(1, 0)]);
        let retired = Pairwise {
            generation: 0,
            retired_ms: Some(1_000),
        };
        assert!(Pairwise::current(0).accepts(u64::MAX, u64::MAX));
        assert!(retired.accepts(1_000, 1_000 + STALE_SESSION_MS - 1));
        assert!(!retired.accepts(1_000, 1_000 + STALE_SESSION_MS));
        // Taken by the relay after the retirement: a revoked device still sending.
        assert!(!retired.accepts(1_001, 1_002));
        let sessions = BTreeMap::from([([1; 32], Pairwise::current(0)), ([9; 32], retired)]);
        assert!(
            plan_send(&l, &sessions, 1_000 + STALE_SESSION_MS - 1)
                .drop
                .is_empty()
        );
        assert_eq!(
            plan_send(&l, &sessions, 1_000 + STALE_SESSION_MS).drop,
            vec![[9; 32]]
        );
    }

    #[test]
    fn a_refusal_refetches_until_the_retry_bound_then_gives_up() {
        let m = Mismatch {
            missing: vec![[2; 32]],
            ..Mismatch::default()
        };
        for attempt in 0..MAX_MISMATCH_RETRIES - 1 {
            assert_eq!(after_refusal(&m, attempt), Refused::Refetch);
        }
        assert!(matches!(
            after_refusal(&m, MAX_MISMATCH_RETRIES - 1),
            Refused::GiveUp(_)
        ));
        assert!(matches!(
            after_refusal(&Mismatch::default(), 0),
            Refused::GiveUp(_)
        ));
    }

    /// A contact device offline through two list changes — the revocation's, then a
    /// link's — never holds the list that dropped the stolen device. Retired as of the
    /// later list, the stolen device's session (and a first copy from it) would read
    /// what its clone posted in between.
    #[test]
    fn a_device_offline_through_two_list_changes_retires_as_of_the_first() {
        let (a, stolen, linked) = (dev(1, 0), dev(2, 0), dev(3, 0));
        let before = list(1, &[a, stolen]);
        // Revoked at 1_000 (the list then is never seen by the offline device), a new
        // device linked at 5_000: the list it comes back to names the removal.
        let gone = RemovedDevice {
            device: stolen.device,
            generation: 0,
            removed_ms: 1_000,
        };
        let after = DeviceList::sign(&root(), 3, 5_000, vec![a, linked], vec![gone]).unwrap();
        let clone_posted = 3_000;
        let sessions = BTreeMap::from([([2; 32], Pairwise::current(0))]);
        let plan = plan_send(&after, &sessions, 6_000);
        assert_eq!(plan.retire, vec![([2; 32], 1_000)]);
        let retired = Pairwise {
            generation: 0,
            retired_ms: Some(plan.retire[0].1),
        };
        assert!(
            !retired.accepts(clone_posted, 6_000),
            "the stolen device's session read its clone's copy"
        );
        // Whether the device held the list before, or never heard of the device.
        for held in [Some(&before), None] {
            assert_eq!(dropped(held, &after, 6_000), vec![gone]);
        }
        let gone = Some((0, 1_000));
        assert_eq!(
            first_copy(&after, gone, &stolen.device, clone_posted, 6_000),
            None,
            "a first copy from the clone opened a session"
        );
        // What the stolen device posted before it was revoked is still read.
        assert!(first_copy(&after, gone, &stolen.device, 1_000, 6_000).is_some());
        // The revocation's time, not the list's signing, even where a sibling whose
        // clock is behind signed the list "before" it: every list says one time.
        let skewed = DeviceList::sign(
            &root(),
            2,
            900,
            vec![a],
            vec![RemovedDevice {
                device: stolen.device,
                generation: 0,
                removed_ms: 1_000,
            }],
        )
        .unwrap();
        assert_eq!(left_at(&skewed, &stolen.device, 6_000), 1_000);
        assert_eq!(left_at(&skewed, &stolen.device, 950), 950);
    }

    #[test]
    fn a_dropped_device_opens_a_retired_session_for_what_the_relay_took_before_only() {
        let (a, b) = (dev(1, 0), dev(2, 0));
        let before = list(1, &[a, b]);
        let after = DeviceList::sign(&root(), 2, 1_000, vec![a], vec![]).unwrap();
        let at = |removed_ms| RemovedDevice {
            device: b.device,
            generation: 0,
            removed_ms,
        };
        // Dropped as of the new list's signing, never later than now.
        assert_eq!(dropped(Some(&before), &after, 5_000), vec![at(1_000)]);
        assert_eq!(dropped(Some(&before), &after, 700), vec![at(700)]);
        assert!(dropped(None, &after, 5_000).is_empty());
        assert!(dropped(Some(&after), &after, 5_000).is_empty());

        assert_eq!(
            first_copy(&after, None, &a.device, 9_999, 10_000),
            Some(Pairwise::current(0))
        );
        let gone = Some((b.generation, 1_000));
        assert_eq!(
            first_copy(&after, gone, &b.device, 1_000, 2_000),
            Some(Pairwise {
                generation: 0,
                retired_ms: Some(1_000)
            })
        );
        // After it was dropped (its clone), or never listed: refused.
        assert_eq!(first_copy(&after, gone, &b.device, 1_001, 2_000), None);
        assert_eq!(first_copy(&after, None, &b.device, 10, 2_000), None);
        assert_eq!(first_copy(&after, None, &[9; 32], 10, 2_000), None);
        // Read late, past the mailbox lifetime of a retired session: refused too.
        let late = 1_000 + STALE_SESSION_MS;
        assert_eq!(first_copy(&after, gone, &b.device, 1_000, late), None);
        assert!(first_copy(&after, gone, &b.device, 1_000, late - 1).is_some());
    }
}
