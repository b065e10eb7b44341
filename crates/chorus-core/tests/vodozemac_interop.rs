//! External oracle: the Chorus ratchet tree, driven under its Olm v1 profile, exchanges
//! messages with vodozemac 0.11.1 in both directions.
//!
//! The other side of every exchange is vodozemac, an audited implementation nobody here
//! wrote, so a bug that both of our sides would share cannot pass: every key, KDF label,
//! header field and MAC byte has to agree with vodozemac's. Schedules come from seeded
//! RNGs (vodozemac draws its own keys from the OS, which changes key bytes but never the
//! schedule). See `docs/olm-interop.md` for what is matched and what is not.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;

use chorus_core::olm_compat::{
    OLM_MAX_MESSAGE_GAP, OLM_MAX_RECEIVING_CHAINS, OLM_MAX_SKIPPED_PER_CHAIN, OlmCiphertext,
    OlmError, OlmMessageType, OlmSession,
};
use chorus_crypto::{IdentityDhPublic, IdentityDhSecret, OneTimePrekeyPublic, OneTimePrekeySecret};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account, OlmMessage, Session, SessionConfig};

/// A message as it travels: vodozemac's `(message_type, bytes)` parts.
type Parts = (usize, Vec<u8>);

// ------------------------------------------------------------------------- peers

/// One end of a conversation, whichever implementation it is.
trait Peer {
    fn encrypt(&mut self, plaintext: &[u8]) -> Parts;
    fn decrypt(&mut self, message: &Parts) -> Result<Vec<u8>, String>;
    fn name(&self) -> &'static str;
}

struct Chorus {
    session: OlmSession,
    rng: StdRng,
}

impl Peer for Chorus {
    fn encrypt(&mut self, plaintext: &[u8]) -> Parts {
        let m = self.session.encrypt(plaintext, &mut self.rng).unwrap();
        (m.message_type as usize, m.bytes)
    }

    fn decrypt(&mut self, (t, bytes): &Parts) -> Result<Vec<u8>, String> {
        let message_type = match t {
            0 => OlmMessageType::PreKey,
            _ => OlmMessageType::Normal,
        };
        self.session
            .decrypt(&OlmCiphertext {
                message_type,
                bytes: bytes.clone(),
            })
            .map(|p| p.to_vec())
            .map_err(|e| e.to_string())
    }

    fn name(&self) -> &'static str {
        "chorus"
    }
}

struct Vodozemac(Session);

impl Peer for Vodozemac {
    fn encrypt(&mut self, plaintext: &[u8]) -> Parts {
        self.0.encrypt(plaintext).unwrap().to_parts()
    }

    fn decrypt(&mut self, (t, bytes): &Parts) -> Result<Vec<u8>, String> {
        let m = OlmMessage::from_parts(*t, bytes).map_err(|e| e.to_string())?;
        self.0.decrypt(&m).map_err(|e| e.to_string())
    }

    fn name(&self) -> &'static str {
        "vodozemac"
    }
}

/// The ratchet key and chain index of a message, read with vodozemac's decoder (so the
/// schedule never trusts our own parser).
fn header(parts: &Parts) -> ([u8; 32], u64) {
    match OlmMessage::from_parts(parts.0, &parts.1).unwrap() {
        OlmMessage::Normal(m) => (m.ratchet_key().to_bytes(), m.chain_index()),
        OlmMessage::PreKey(p) => (
            p.message().ratchet_key().to_bytes(),
            p.message().chain_index(),
        ),
    }
}

fn plaintext(rng: &mut StdRng, tag: &str) -> Vec<u8> {
    // Lengths around AES block boundaries, including empty and exactly one block: the tag,
    // then random bytes, cut to length.
    let len = [0, 1, 15, 16, 17, 31, 32, 33, 100, 257][rng.random_range(0..10)];
    let mut p = tag.as_bytes().to_vec();
    while p.len() < len {
        p.push(rng.random());
    }
    p.truncate(len);
    p
}

// ---------------------------------------------------------------- session set-up

struct ChorusKeys {
    identity: IdentityDhSecret,
    one_time: OneTimePrekeySecret,
}

fn vodozemac_account_with_otk() -> (Account, Curve25519PublicKey) {
    let mut account = Account::new();
    account.generate_one_time_keys(1);
    let otk = *account.one_time_keys().values().next().unwrap();
    account.mark_keys_as_published();
    (account, otk)
}

fn identity_of(account: &Account) -> IdentityDhPublic {
    IdentityDhPublic::from_bytes(account.curve25519_key().to_bytes())
}

/// (a) Chorus initiator → vodozemac responder. Alice sends `first` pre-key messages; the
/// one at `opener` creates Bob's session; the rest are returned undelivered.
fn chorus_to_vodozemac(
    seed: u64,
    first: usize,
    opener: usize,
) -> (Chorus, Vodozemac, Vec<(Parts, Vec<u8>)>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let alice_identity = IdentityDhSecret::generate(&mut rng);
    let (mut bob, otk) = vodozemac_account_with_otk();
    let session = OlmSession::outbound(
        &alice_identity,
        &identity_of(&bob),
        &OneTimePrekeyPublic::from_bytes(otk.to_bytes()),
        &mut rng,
    )
    .unwrap();
    let mut alice = Chorus { session, rng };
    let mut sent: Vec<_> = (0..first)
        .map(|i| {
            let p = plaintext(&mut alice.rng, &format!("pre-key {i}"));
            (alice.encrypt(&p), p)
        })
        .collect();
    for (m, _) in &sent {
        assert_eq!(
            m.0, 0,
            "the initiator sends pre-key messages until it hears back"
        );
    }
    let (opening, p) = sent.remove(opener);
    let OlmMessage::PreKey(pre) = OlmMessage::from_parts(opening.0, &opening.1).unwrap() else {
        panic!("expected a pre-key message");
    };
    let alice_curve = Curve25519PublicKey::from_bytes(*alice_identity.public_key().as_bytes());
    let created = bob
        .create_inbound_session(SessionConfig::version_1(), alice_curve, &pre)
        .unwrap();
    assert_eq!(created.plaintext, p);
    // Both sides name the same session.
    let ours = alice.session.session_keys();
    let theirs = created.session.session_keys();
    assert_eq!(ours.identity_key.as_bytes(), theirs.identity_key.as_bytes());
    assert_eq!(ours.base_key.as_bytes(), theirs.base_key.as_bytes());
    assert_eq!(ours.one_time_key.as_bytes(), theirs.one_time_key.as_bytes());
    (alice, Vodozemac(created.session), sent)
}

/// (b) vodozemac initiator → Chorus responder, shaped like [`chorus_to_vodozemac`].
fn vodozemac_to_chorus(
    seed: u64,
    first: usize,
    opener: usize,
) -> (Vodozemac, Chorus, Vec<(Parts, Vec<u8>)>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let bob_keys = ChorusKeys {
        identity: IdentityDhSecret::generate(&mut rng),
        one_time: OneTimePrekeySecret::generate(&mut rng),
    };
    let alice_account = Account::new();
    let session = alice_account
        .create_outbound_session(
            SessionConfig::version_1(),
            Curve25519PublicKey::from_bytes(*bob_keys.identity.public_key().as_bytes()),
            Curve25519PublicKey::from_bytes(*bob_keys.one_time.public_key().as_bytes()),
        )
        .unwrap();
    let mut alice = Vodozemac(session);
    let mut sent: Vec<_> = (0..first)
        .map(|i| {
            let p = plaintext(&mut rng, &format!("pre-key {i}"));
            (alice.encrypt(&p), p)
        })
        .collect();
    let (opening, p) = sent.remove(opener);
    assert_eq!(opening.0, 0);
    let (session, got) = OlmSession::inbound(
        &bob_keys.identity,
        &bob_keys.one_time,
        &identity_of(&alice_account),
        &opening.1,
    )
    .unwrap();
    assert_eq!(&got[..], &p[..]);
    let ours = session.session_keys();
    let theirs = alice.0.session_keys();
    assert_eq!(ours.identity_key.as_bytes(), theirs.identity_key.as_bytes());
    assert_eq!(ours.base_key.as_bytes(), theirs.base_key.as_bytes());
    assert_eq!(ours.one_time_key.as_bytes(), theirs.one_time_key.as_bytes());
    (alice, Chorus { session, rng }, sent)
}

// ------------------------------------------------------------------ conversation

/// A message in flight toward one side.
struct InFlight {
    parts: Parts,
    plaintext: Vec<u8>,
    /// Rounds it has already been held back.
    held: u32,
}

/// Olm's receive window, as the schedule tracks it from vodozemac-decoded headers: the
/// newest index delivered per chain, chains in first-seen order. A message outside the
/// window is counted as lost rather than delivered (Olm would have discarded its key).
#[derive(Default)]
struct Window {
    chains: VecDeque<([u8; 32], u64)>,
}

impl Window {
    fn admits(&self, key: &[u8; 32], index: u64) -> bool {
        match self.chains.iter().position(|(k, _)| k == key) {
            // Conservative: a skipped key within 40 of the newest is always kept.
            Some(pos) => {
                let newest = self.chains[pos].1;
                pos + OLM_MAX_RECEIVING_CHAINS >= self.chains.len()
                    && index + (OLM_MAX_SKIPPED_PER_CHAIN as u64) > newest
            }
            None => index < OLM_MAX_MESSAGE_GAP,
        }
    }

    fn record(&mut self, key: [u8; 32], index: u64) {
        match self.chains.iter_mut().find(|(k, _)| *k == key) {
            Some((_, newest)) => *newest = (*newest).max(index),
            None => self.chains.push_back((key, index)),
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    delivered: usize,
    /// Dropped by the network.
    lost: usize,
    /// Not delivered because Olm's limits say the key is already gone.
    expired: usize,
    replays_rejected: usize,
}

struct Side<'a> {
    peer: &'a mut dyn Peer,
    inbox: Vec<InFlight>,
    window: Window,
    tally: Tally,
    /// Replays of delivered messages to try later.
    delivered_log: Vec<Parts>,
}

/// Delivers one side's inbox: drops some, holds some back for a later round, and hands
/// the rest over in order, reversed or shuffled. Every delivered message must decrypt to
/// exactly its plaintext; every replay must be refused.
fn deliver(to: &mut Side<'_>, rng: &mut StdRng, from: &str) {
    let mut now = Vec::new();
    let mut later = Vec::new();
    for mut m in to.inbox.drain(..) {
        let roll = rng.random_range(0..100);
        if roll < 8 {
            to.tally.lost += 1;
        } else if roll < 20 && m.held < 2 {
            m.held += 1;
            later.push(m);
        } else {
            now.push(m);
        }
    }
    match rng.random_range(0..3) {
        0 => {}
        1 => now.reverse(),
        _ => now.shuffle(rng),
    }
    for m in now {
        let (key, index) = header(&m.parts);
        if !to.window.admits(&key, index) {
            to.tally.expired += 1;
            continue;
        }
        let got = to.peer.decrypt(&m.parts).unwrap_or_else(|e| {
            panic!(
                "{} could not decrypt {from}'s message (chain index {index}): {e}",
                to.peer.name()
            )
        });
        assert_eq!(
            got,
            m.plaintext,
            "{} decrypted the wrong plaintext",
            to.peer.name()
        );
        to.window.record(key, index);
        to.tally.delivered += 1;
        to.delivered_log.push(m.parts);
        if rng.random_range(0..100) < 3 {
            let i = rng.random_range(0..to.delivered_log.len());
            let replay = to.delivered_log[i].clone();
            assert!(
                to.peer.decrypt(&replay).is_err(),
                "{} accepted a replay",
                to.peer.name()
            );
            to.tally.replays_rejected += 1;
        }
    }
    to.inbox = later;
}

/// Runs `rounds` rounds in which each side sends a batch (sometimes both before reading,
/// sometimes one stays silent) and then reads whatever the network hands it.
fn converse(
    a: &mut dyn Peer,
    b: &mut dyn Peer,
    pending_for_b: Vec<(Parts, Vec<u8>)>,
    seed: u64,
    rounds: usize,
) -> (Tally, Tally) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sa = Side {
        peer: a,
        inbox: Vec::new(),
        window: Window::default(),
        tally: Tally::default(),
        delivered_log: Vec::new(),
    };
    let mut sb = Side {
        peer: b,
        inbox: pending_for_b
            .into_iter()
            .map(|(parts, plaintext)| InFlight {
                parts,
                plaintext,
                held: 0,
            })
            .collect(),
        window: Window::default(),
        tally: Tally::default(),
        delivered_log: Vec::new(),
    };
    for r in 0..rounds {
        // Each side sends 0..=12 messages; silence means the peer keeps its chain.
        send_batch(&mut sa, &mut sb.inbox, &mut rng, &format!("a r{r}"));
        send_batch(&mut sb, &mut sa.inbox, &mut rng, &format!("b r{r}"));
        // Who reads first varies, so DH steps cross in both orders.
        if rng.random_bool(0.5) {
            deliver(&mut sb, &mut rng, "a");
            deliver(&mut sa, &mut rng, "b");
        } else {
            deliver(&mut sa, &mut rng, "b");
            deliver(&mut sb, &mut rng, "a");
        }
    }
    // Flush: everything still held back arrives.
    for side in [&mut sa, &mut sb] {
        for m in &mut side.inbox {
            m.held = 2;
        }
    }
    deliver(&mut sb, &mut rng, "a");
    deliver(&mut sa, &mut rng, "b");
    (sa.tally, sb.tally)
}

fn send_batch(from: &mut Side<'_>, to: &mut Vec<InFlight>, rng: &mut StdRng, tag: &str) {
    for i in 0..rng.random_range(0..=12) {
        let p = plaintext(rng, &format!("{tag} m{i}"));
        to.push(InFlight {
            parts: from.peer.encrypt(&p),
            plaintext: p,
            held: 0,
        });
    }
}

const ROUNDS: usize = 80;

#[test]
fn chorus_initiator_and_vodozemac_responder_exchange_hundreds_of_messages() {
    let (mut alice, mut bob, pending) = chorus_to_vodozemac(11, 6, 3);
    // Until Bob answers, Alice's messages stay pre-key messages; Bob's are normal ones.
    let reply = bob.encrypt(b"first reply");
    assert_eq!(reply.0, 1, "the responder sends normal messages");
    assert_eq!(alice.decrypt(&reply).unwrap(), b"first reply");
    assert_eq!(
        alice.encrypt(b"now normal").0,
        1,
        "pre-key messages stop once answered"
    );
    let (to_alice, to_bob) = converse(&mut alice, &mut bob, pending, 12, ROUNDS);
    eprintln!("vodozemac→chorus {to_alice:?}, chorus→vodozemac {to_bob:?}");
    assert!(to_alice.delivered >= 250 && to_bob.delivered >= 250);
    assert!(to_alice.delivered + to_bob.delivered >= 500);
}

#[test]
fn vodozemac_initiator_and_chorus_responder_exchange_hundreds_of_messages() {
    let (mut alice, mut bob, pending) = vodozemac_to_chorus(21, 6, 4);
    let reply = bob.encrypt(b"first reply");
    assert_eq!(reply.0, 1, "the responder sends normal messages");
    assert_eq!(alice.decrypt(&reply).unwrap(), b"first reply");
    assert_eq!(alice.encrypt(b"now normal").0, 1);
    let (to_alice, to_bob) = converse(&mut alice, &mut bob, pending, 22, ROUNDS);
    eprintln!("chorus→vodozemac {to_alice:?}, vodozemac→chorus {to_bob:?}");
    assert!(to_alice.delivered >= 250 && to_bob.delivered >= 250);
    assert!(to_alice.delivered + to_bob.delivered >= 500);
}

#[test]
fn pre_key_messages_arrive_late_and_out_of_order_at_both_responders() {
    // The responder answers before most of the initiator's pre-key messages arrive.
    let (mut alice, mut bob, mut pending) = chorus_to_vodozemac(31, 10, 9);
    let reply = bob.encrypt(b"early reply");
    assert_eq!(alice.decrypt(&reply).unwrap(), b"early reply");
    pending.reverse();
    for (m, p) in &pending {
        assert_eq!(bob.decrypt(m).unwrap(), *p);
    }

    let (mut alice, mut bob, mut pending) = vodozemac_to_chorus(32, 10, 9);
    let reply = bob.encrypt(b"early reply");
    assert_eq!(alice.decrypt(&reply).unwrap(), b"early reply");
    pending.reverse();
    for (m, p) in &pending {
        assert_eq!(bob.decrypt(m).unwrap(), *p);
    }
}

// --------------------------------------------------------------- negative tests

fn flip_last_byte(parts: &Parts) -> Parts {
    let mut bad = parts.clone();
    if let Some(b) = bad.1.last_mut() {
        *b ^= 0x01;
    }
    bad
}

#[test]
fn a_flipped_mac_byte_is_rejected_and_the_session_stays_usable() {
    let (mut vodo, mut chorus, _) = vodozemac_to_chorus(41, 1, 0);
    let r = chorus.encrypt(b"established");
    vodo.decrypt(&r).unwrap();

    // The first message of a new chain: a structural plan that must not be committed.
    let m = vodo.encrypt(b"new chain");
    assert_eq!(m.0, 1);
    assert!(chorus.decrypt(&flip_last_byte(&m)).is_err());
    assert_eq!(chorus.decrypt(&m).unwrap(), b"new chain");

    // On a chain we already know.
    let m = vodo.encrypt(b"same chain");
    let err = chorus.session.decrypt(&OlmCiphertext {
        message_type: OlmMessageType::Normal,
        bytes: flip_last_byte(&m).1,
    });
    assert_eq!(err.err(), Some(OlmError::InvalidMac));
    assert_eq!(chorus.decrypt(&m).unwrap(), b"same chain");
    let back = chorus.encrypt(b"still fine");
    assert_eq!(vodo.decrypt(&back).unwrap(), b"still fine");

    // A tampered opening pre-key message creates no session.
    let mut rng = StdRng::seed_from_u64(42);
    let keys = ChorusKeys {
        identity: IdentityDhSecret::generate(&mut rng),
        one_time: OneTimePrekeySecret::generate(&mut rng),
    };
    let account = Account::new();
    let mut out = Vodozemac(
        account
            .create_outbound_session(
                SessionConfig::version_1(),
                Curve25519PublicKey::from_bytes(*keys.identity.public_key().as_bytes()),
                Curve25519PublicKey::from_bytes(*keys.one_time.public_key().as_bytes()),
            )
            .unwrap(),
    );
    let opening = out.encrypt(b"hello");
    let bad = OlmSession::inbound(
        &keys.identity,
        &keys.one_time,
        &identity_of(&account),
        &flip_last_byte(&opening).1,
    );
    assert_eq!(bad.err(), Some(OlmError::InvalidMac));
    let (_, p) = OlmSession::inbound(
        &keys.identity,
        &keys.one_time,
        &identity_of(&account),
        &opening.1,
    )
    .unwrap();
    assert_eq!(&p[..], b"hello");
}

/// Runs one limit scenario against a receiver and returns the verdicts, so the same
/// scenario can be compared between vodozemac and Chorus receivers.
fn limit_verdicts(sender: &mut dyn Peer, receiver: &mut dyn Peer) -> Vec<bool> {
    // Start the sender on a fresh chain, so indices below are exact.
    let ack = receiver.encrypt(b"ack");
    sender.decrypt(&ack).unwrap();
    let mut verdicts = Vec::new();
    // 40 skipped keys per chain: after index 41 arrives first, index 0 is gone, 1 is kept.
    let batch: Vec<_> = (0..42)
        .map(|i| sender.encrypt(format!("k{i}").as_bytes()))
        .collect();
    verdicts.push(receiver.decrypt(&batch[41]).is_ok());
    verdicts.push(receiver.decrypt(&batch[0]).is_ok());
    verdicts.push(receiver.decrypt(&batch[1]).is_ok());
    verdicts.push(receiver.decrypt(&batch[40]).is_ok());
    // A replay is refused.
    verdicts.push(receiver.decrypt(&batch[40]).is_ok());
    // Gap limit: the receiver expects index 42 next, and `far[g]` is index 42 + g, so a
    // gap of 2001 is refused and a gap of 2000 accepted.
    let far: Vec<_> = (0..=OLM_MAX_MESSAGE_GAP + 1)
        .map(|_| sender.encrypt(b"far"))
        .collect();
    verdicts.push(
        receiver
            .decrypt(&far[OLM_MAX_MESSAGE_GAP as usize + 1])
            .is_ok(),
    );
    verdicts.push(receiver.decrypt(&far[OLM_MAX_MESSAGE_GAP as usize]).is_ok());
    verdicts
}

/// Six chains from the sender; the first chain's late message is refused once a sixth
/// chain pushed it out (Olm keeps five), the second chain's is still accepted.
fn chain_verdicts(sender: &mut dyn Peer, receiver: &mut dyn Peer) -> Vec<bool> {
    let mut late = Vec::new();
    for _ in 0..=OLM_MAX_RECEIVING_CHAINS {
        let first = sender.encrypt(b"first");
        late.push(sender.encrypt(b"late"));
        receiver.decrypt(&first).unwrap();
        let ack = receiver.encrypt(b"ack");
        sender.decrypt(&ack).unwrap();
    }
    late.iter().map(|m| receiver.decrypt(m).is_ok()).collect()
}

#[test]
fn olm_limits_are_enforced_identically_by_vodozemac_and_chorus() {
    // Chorus sends, vodozemac receives; then vodozemac sends, Chorus receives.
    let (mut c, mut v, _) = chorus_to_vodozemac(51, 1, 0);
    let vodozemac_receives = limit_verdicts(&mut c, &mut v);
    let (mut v, mut c, _) = vodozemac_to_chorus(52, 1, 0);
    let chorus_receives = limit_verdicts(&mut v, &mut c);
    assert_eq!(
        vodozemac_receives,
        vec![true, false, true, true, false, false, true]
    );
    assert_eq!(chorus_receives, vodozemac_receives);

    let (mut c, mut v, _) = chorus_to_vodozemac(53, 1, 0);
    let vodozemac_receives = chain_verdicts(&mut c, &mut v);
    let (mut v, mut c, _) = vodozemac_to_chorus(54, 1, 0);
    let chorus_receives = chain_verdicts(&mut v, &mut c);
    assert!(
        !vodozemac_receives[0],
        "the oldest of six chains is forgotten"
    );
    assert!(vodozemac_receives[1..].iter().all(|ok| *ok));
    assert_eq!(chorus_receives, vodozemac_receives);
}
