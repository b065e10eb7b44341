//! An Olm v1-compatible profile of the ratchet engine, to check it against vodozemac.
//!
//! Chorus's ratchet tree is new code; Olm's Double Ratchet is the same algorithm, and
//! vodozemac is an audited implementation of it that nobody here wrote. This module drives
//! the *unchanged* [`Tree`] under [`Profile::Olm`] (KDF labels `OLM_ROOT` / `OLM_RATCHET`,
//! no X3DH prefix) and speaks Olm's wire format, so a test can exchange messages with
//! vodozemac in both directions. A bug in the tree that both of our sides share cannot pass
//! such a test: the other side is always vodozemac.
//!
//! What is matched (details and the few gaps in `docs/olm-interop.md`):
//! - **3DH**: `S = DH(IK_A, OTK_B) ‖ DH(EK_A, IK_B) ‖ DH(EK_A, OTK_B)`,
//!   `R0 ‖ C0 = HKDF(0, S, "OLM_ROOT")`; the initiator's first chain comes straight from it.
//! - **Ratchet**: `HKDF(R, DH, "OLM_RATCHET")`, chains `HMAC(C, 0x01)` / `HMAC(C, 0x02)`;
//!   a new peer ratchet key always builds on our newest key (Olm headers name no parent).
//! - **Messages**: version byte 3, protobuf-style fields, AES-256-CBC + HMAC-SHA256 over
//!   the encoded message truncated to 8 bytes ([`chorus_crypto::olm`]); pre-key messages
//!   until the first message is received.
//! - **Limits**: Olm's acceptance rules are mirrored index-only ([`ChainMirror`]): 5
//!   receiving chains, 40 skipped keys per chain, a gap of at most 2000. The tree keeps
//!   more (it is built for forks), so the mirror refuses first whatever vodozemac would.
//!
//! Receiving is plan → verify MAC → decrypt → commit, as in [`crate::Session`]: a message
//! that fails anywhere changes nothing.

use std::collections::VecDeque;
use std::fmt;

use chorus_crypto::olm::{self, MAC_LEN};
use chorus_crypto::{
    CryptoRng, EphemeralPublic, EphemeralSecret, HandshakeSecret, IdentityDhPublic,
    IdentityDhSecret, KdfLabel, OneTimePrekeyPublic, OneTimePrekeySecret, RatchetPublic,
    RatchetSecret,
};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::tree::{Incoming, Profile, Tree};

/// Olm v1's message version byte (truncated 8-byte MAC), for normal and pre-key messages.
pub const OLM_VERSION: u8 = 3;

/// Receiving chains Olm keeps; a sixth evicts the oldest (vodozemac `MAX_RECEIVING_CHAINS`).
pub const OLM_MAX_RECEIVING_CHAINS: usize = 5;

/// Skipped message keys Olm keeps per receiving chain, newest first (`MAX_MESSAGE_KEYS`).
pub const OLM_MAX_SKIPPED_PER_CHAIN: usize = 40;

/// Largest accepted distance between a chain's next index and a message's (`MAX_MESSAGE_GAP`).
pub const OLM_MAX_MESSAGE_GAP: u64 = 2000;

/// Evicted receiving chains we remember, so a late message on one is refused as Olm would
/// refuse it (Olm has forgotten the chain; the tree may still hold it). Twice the tree's
/// node window: by then the tree has long pruned the node too.
pub const OLM_RETIRED_CHAINS: usize = 2 * crate::MAX_TREE_NODES;

/// Olm's message types, as carried next to the bytes (vodozemac `OlmMessage::to_parts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OlmMessageType {
    /// A pre-key message: the session's keys wrapping a normal message (type 0).
    PreKey = 0,
    /// A normal message (type 1).
    Normal = 1,
}

/// An encoded Olm message and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OlmCiphertext {
    /// How to decode `bytes`.
    pub message_type: OlmMessageType,
    /// The encoded message.
    pub bytes: Vec<u8>,
}

/// The three public keys that identify an Olm session (vodozemac `SessionKeys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OlmSessionKeys {
    /// The initiator's identity key.
    pub identity_key: IdentityDhPublic,
    /// The initiator's single-use base key.
    pub base_key: EphemeralPublic,
    /// The responder's one-time key the session consumed.
    pub one_time_key: OneTimePrekeyPublic,
}

/// Why an Olm operation failed. Peer faults never change the session.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum OlmError {
    /// The message bytes are not a well-formed Olm message.
    ///
    /// Raised if a field is truncated, has the wrong wire type or key length, or is missing.
    #[error("malformed Olm message: {0}")]
    Malformed(&'static str),
    /// The message has a version this profile does not speak.
    ///
    /// Raised for anything but [`OLM_VERSION`] (Olm v2's version 4 is not supported).
    #[error("unsupported Olm message version {0}, expected {OLM_VERSION}")]
    UnsupportedVersion(u8),
    /// The MAC did not verify, or the plaintext padding was invalid.
    #[error("Olm message authentication failed")]
    InvalidMac,
    /// Too many keys would have to be skipped (actual gap, Olm's limit).
    #[error("message gap too big: {0}, limit {1}")]
    TooBigMessageGap(u64, u64),
    /// The message's key was used already, or Olm would have discarded it.
    ///
    /// Raised for a replay, or a message older than the 40 newest skipped keys of its chain.
    #[error("missing message key for chain index {0}")]
    MissingMessageKey(u64),
    /// A pre-key message names another session's keys.
    #[error("pre-key message belongs to another session")]
    WrongSession,
    /// The pre-key message's sender identity is not the one the caller expected.
    #[error("pre-key message identity key does not match the expected one")]
    MismatchedIdentityKey,
    /// The pre-key message names a one-time key other than the one given.
    #[error("pre-key message names a different one-time key")]
    MismatchedOneTimeKey,
    /// The ratchet engine refused the message or the send (see [`SessionError`]).
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// An Olm v1 session over the Chorus ratchet tree.
///
/// Holds secrets: `Debug` prints only the public session keys.
pub struct OlmSession {
    tree: Tree,
    keys: OlmSessionKeys,
    /// Once a message authenticated, we send normal messages instead of pre-key ones.
    received: bool,
    chains: ChainMirror,
}

impl fmt::Debug for OlmSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OlmSession")
            .field("keys", &self.keys)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl OlmSession {
    /// Starts a session to a peer's identity key and one of its one-time keys (Olm's
    /// `create_outbound_session`). Draws the base key and the first ratchet key.
    pub fn outbound<R: CryptoRng + ?Sized>(
        our_identity: &IdentityDhSecret,
        their_identity: &IdentityDhPublic,
        their_one_time_key: &OneTimePrekeyPublic,
        rng: &mut R,
    ) -> Result<Self, OlmError> {
        let base = EphemeralSecret::generate(rng);
        let ratchet = RatchetSecret::generate(rng);
        let invalid = |e| OlmError::Session(SessionError::InvalidKey(e));
        let mut s = HandshakeSecret::new(KdfLabel::OLM);
        s.mix_dh(
            &our_identity
                .diffie_hellman(their_one_time_key)
                .map_err(invalid)?,
        );
        s.mix_dh(&base.diffie_hellman(their_identity).map_err(invalid)?);
        s.mix_dh(&base.diffie_hellman(their_one_time_key).map_err(invalid)?);
        let (root, chain) = s.into_initiator_keys();
        Ok(Self {
            tree: Tree::seeded_ours(Profile::Olm, ratchet, root, chain),
            keys: OlmSessionKeys {
                identity_key: our_identity.public_key(),
                base_key: base.public_key(),
                one_time_key: *their_one_time_key,
            },
            received: false,
            chains: ChainMirror::default(),
        })
    }

    /// Accepts a session from its first pre-key message (Olm's `create_inbound_session`):
    /// returns the session and the first plaintext. Nothing is created unless the message
    /// authenticates; the caller then deletes the one-time key.
    pub fn inbound(
        our_identity: &IdentityDhSecret,
        our_one_time_key: &OneTimePrekeySecret,
        their_identity: &IdentityDhPublic,
        pre_key_message: &[u8],
    ) -> Result<(Self, Zeroizing<Vec<u8>>), OlmError> {
        let pre = PreKeyMessage::parse(pre_key_message)?;
        if pre.keys.identity_key != *their_identity {
            return Err(OlmError::MismatchedIdentityKey);
        }
        if pre.keys.one_time_key != our_one_time_key.public_key() {
            return Err(OlmError::MismatchedOneTimeKey);
        }
        let inner = Message::parse(pre.message)?;
        let invalid = |e| OlmError::Session(SessionError::InvalidKey(e));
        let mut s = HandshakeSecret::new(KdfLabel::OLM);
        s.mix_dh(
            &our_one_time_key
                .diffie_hellman(their_identity)
                .map_err(invalid)?,
        );
        s.mix_dh(
            &our_identity
                .diffie_hellman(&pre.keys.base_key)
                .map_err(invalid)?,
        );
        s.mix_dh(
            &our_one_time_key
                .diffie_hellman(&pre.keys.base_key)
                .map_err(invalid)?,
        );
        let (root, chain) = s.into_responder_keys();
        let mut session = Self {
            tree: Tree::seeded_theirs(Profile::Olm, inner.ratchet_key, root, chain),
            keys: pre.keys,
            // Olm's responder holds a receiving chain from the start: it never sends
            // pre-key messages.
            received: true,
            chains: ChainMirror::default(),
        };
        session
            .chains
            .push(inner.ratchet_key, ChainState::default());
        let plaintext = session.decrypt_message(&inner)?;
        Ok((session, plaintext))
    }

    /// The keys that identify this session.
    pub fn session_keys(&self) -> OlmSessionKeys {
        self.keys
    }

    /// Whether a message from the peer has authenticated (after which we send normal
    /// messages).
    pub fn has_received_message(&self) -> bool {
        self.received
    }

    /// Encrypts one message: a pre-key message until we have received one, like Olm.
    /// Draws a new ratchet key only when the peer has moved on since our last send.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<OlmCiphertext, OlmError> {
        let out = self.tree.next_sending_key(rng)?;
        let ciphertext = olm::encrypt(&out.key, plaintext);
        let mut bytes = encode_message(&out.sender, out.key.index(), &ciphertext);
        let tag = olm::mac(&out.key, &bytes);
        bytes.extend_from_slice(&tag);
        if self.received {
            return Ok(OlmCiphertext {
                message_type: OlmMessageType::Normal,
                bytes,
            });
        }
        Ok(OlmCiphertext {
            message_type: OlmMessageType::PreKey,
            bytes: encode_pre_key(&self.keys, &bytes),
        })
    }

    /// Decrypts a normal or pre-key message. On any error the session is unchanged.
    pub fn decrypt(&mut self, message: &OlmCiphertext) -> Result<Zeroizing<Vec<u8>>, OlmError> {
        match message.message_type {
            OlmMessageType::Normal => self.decrypt_message(&Message::parse(&message.bytes)?),
            OlmMessageType::PreKey => {
                let pre = PreKeyMessage::parse(&message.bytes)?;
                if pre.keys != self.keys {
                    return Err(OlmError::WrongSession);
                }
                self.decrypt_message(&Message::parse(pre.message)?)
            }
        }
    }

    fn decrypt_message(&mut self, m: &Message<'_>) -> Result<Zeroizing<Vec<u8>>, OlmError> {
        let verdict = self.chains.check(&m.ratchet_key, m.chain_index)?;
        let counter = u32::try_from(m.chain_index)
            .map_err(|_| OlmError::TooBigMessageGap(m.chain_index, OLM_MAX_MESSAGE_GAP))?;
        let plan = self.tree.plan_receive(&Incoming {
            sender: m.ratchet_key,
            // Olm headers name no parent: a new ratchet key builds on our newest one.
            parent: None,
            counter,
            previous_chain_length: None,
            honor_floor: None,
            peer_floor: None,
        })?;
        let plaintext = olm::decrypt(plan.key(), m.mac_input, m.mac, m.ciphertext)
            .map_err(|_| OlmError::InvalidMac)?;
        self.tree.commit(plan);
        self.chains.commit(verdict);
        self.received = true;
        Ok(plaintext)
    }
}

// ------------------------------------------------------------------ Olm's limits

/// Olm's view of one receiving chain, without keys: which indices it could still open.
#[derive(Default, Clone)]
struct ChainState {
    next: u64,
    /// Indices whose keys Olm keeps, oldest first, at most [`OLM_MAX_SKIPPED_PER_CHAIN`].
    skipped: VecDeque<u64>,
}

impl ChainState {
    fn push_skipped(&mut self, index: u64) {
        if self.skipped.len() == OLM_MAX_SKIPPED_PER_CHAIN {
            self.skipped.pop_front();
        }
        self.skipped.push_back(index);
    }
}

/// Mirrors vodozemac's receiving-chain bookkeeping index by index, so we refuse exactly
/// what it refuses even though the tree would still hold the key.
#[derive(Default)]
struct ChainMirror {
    /// Newest last, at most [`OLM_MAX_RECEIVING_CHAINS`].
    chains: VecDeque<(RatchetPublic, ChainState)>,
    /// Chains evicted from `chains`, newest last, at most [`OLM_RETIRED_CHAINS`].
    retired: VecDeque<RatchetPublic>,
}

/// What receiving one message will do to the mirror, applied only once it authenticated.
struct Verdict {
    key: RatchetPublic,
    state: ChainState,
}

impl ChainMirror {
    fn check(&self, key: &RatchetPublic, index: u64) -> Result<Verdict, OlmError> {
        let current = self.chains.iter().find(|(k, _)| k == key).map(|(_, c)| c);
        let state = match current {
            Some(c) => c.clone(),
            // Olm has forgotten this chain: it would derive a new one from our newest
            // ratchet key, and the MAC would fail.
            None if self.retired.contains(key) => return Err(OlmError::InvalidMac),
            None => ChainState::default(),
        };
        let gap = index.saturating_sub(state.next);
        if gap > OLM_MAX_MESSAGE_GAP {
            return Err(OlmError::TooBigMessageGap(gap, OLM_MAX_MESSAGE_GAP));
        }
        let mut state = state;
        if index < state.next {
            let before = state.skipped.len();
            state.skipped.retain(|i| *i != index);
            if state.skipped.len() == before {
                return Err(OlmError::MissingMessageKey(index));
            }
        } else {
            // Olm keeps only the keys within 40 of the message; older ones are skipped
            // over without being stored.
            let first = state
                .next
                .max(index.saturating_sub(OLM_MAX_SKIPPED_PER_CHAIN as u64));
            for i in first..index {
                state.push_skipped(i);
            }
            state.next = index + 1;
        }
        Ok(Verdict { key: *key, state })
    }

    fn commit(&mut self, verdict: Verdict) {
        match self.chains.iter_mut().find(|(k, _)| *k == verdict.key) {
            Some((_, c)) => *c = verdict.state,
            None => self.push(verdict.key, verdict.state),
        }
    }

    fn push(&mut self, key: RatchetPublic, state: ChainState) {
        if self.chains.len() == OLM_MAX_RECEIVING_CHAINS
            && let Some((old, _)) = self.chains.pop_front()
        {
            if self.retired.len() == OLM_RETIRED_CHAINS {
                self.retired.pop_front();
            }
            self.retired.push_back(old);
        }
        self.chains.push_back((key, state));
    }
}

// ------------------------------------------------------------------- wire format

const TAG_RATCHET_KEY: u64 = 1;
const TAG_CHAIN_INDEX: u64 = 2;
const TAG_CIPHERTEXT: u64 = 4;

const TAG_ONE_TIME_KEY: u64 = 1;
const TAG_BASE_KEY: u64 = 2;
const TAG_IDENTITY_KEY: u64 = 3;
const TAG_MESSAGE: u64 = 4;

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_FIXED32: u64 = 5;

/// A decoded normal message, borrowing from the received bytes.
struct Message<'a> {
    ratchet_key: RatchetPublic,
    chain_index: u64,
    ciphertext: &'a [u8],
    /// The exact received bytes the MAC covers (version byte and payload).
    mac_input: &'a [u8],
    mac: &'a [u8],
}

impl<'a> Message<'a> {
    /// `version ‖ payload ‖ mac[8]`; the payload holds ratchet key (1), chain index (2)
    /// and ciphertext (4).
    fn parse(bytes: &'a [u8]) -> Result<Self, OlmError> {
        let version = *bytes.first().ok_or(OlmError::Malformed("empty message"))?;
        if version != OLM_VERSION {
            return Err(OlmError::UnsupportedVersion(version));
        }
        if bytes.len() < MAC_LEN + 2 {
            return Err(OlmError::Malformed("message too short"));
        }
        let (mac_input, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let (mut ratchet_key, mut chain_index, mut ciphertext) = (None, None, None);
        for field in Fields(&mac_input[1..]) {
            match field? {
                (TAG_RATCHET_KEY, Value::Bytes(b)) => ratchet_key = Some(b),
                (TAG_CHAIN_INDEX, Value::Varint(v)) => chain_index = Some(v),
                (TAG_CIPHERTEXT, Value::Bytes(b)) => ciphertext = Some(b),
                (TAG_RATCHET_KEY | TAG_CHAIN_INDEX | TAG_CIPHERTEXT, _) => {
                    return Err(OlmError::Malformed("field has the wrong wire type"));
                }
                _ => {}
            }
        }
        Ok(Self {
            ratchet_key: RatchetPublic::from_slice(
                ratchet_key.ok_or(OlmError::Malformed("no ratchet key"))?,
            )
            .map_err(|_| OlmError::Malformed("ratchet key is not 32 bytes"))?,
            chain_index: chain_index.ok_or(OlmError::Malformed("no chain index"))?,
            ciphertext: ciphertext.ok_or(OlmError::Malformed("no ciphertext"))?,
            mac_input,
            mac,
        })
    }
}

/// A decoded pre-key message: the session keys and the embedded normal message.
struct PreKeyMessage<'a> {
    keys: OlmSessionKeys,
    message: &'a [u8],
}

impl<'a> PreKeyMessage<'a> {
    /// `version ‖ payload`; the payload holds one-time key (1), base key (2), identity
    /// key (3) and the embedded message (4). It has no MAC of its own: the embedded
    /// message authenticates, and the keys are bound through the 3DH.
    fn parse(bytes: &'a [u8]) -> Result<Self, OlmError> {
        let version = *bytes.first().ok_or(OlmError::Malformed("empty message"))?;
        if version != OLM_VERSION {
            return Err(OlmError::UnsupportedVersion(version));
        }
        let mut f = [None; 4];
        for field in Fields(&bytes[1..]) {
            match field? {
                (tag @ 1..=4, Value::Bytes(b)) => {
                    f[(tag - 1) as usize] = Some(b);
                }
                (1..=4, _) => return Err(OlmError::Malformed("field has the wrong wire type")),
                _ => {}
            }
        }
        let key = |i: u64, what: &'static str| -> Result<[u8; 32], OlmError> {
            f[(i - 1) as usize]
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(OlmError::Malformed(what))
        };
        Ok(Self {
            keys: OlmSessionKeys {
                one_time_key: OneTimePrekeyPublic::from_bytes(key(
                    TAG_ONE_TIME_KEY,
                    "one-time key missing or not 32 bytes",
                )?),
                base_key: EphemeralPublic::from_bytes(key(
                    TAG_BASE_KEY,
                    "base key missing or not 32 bytes",
                )?),
                identity_key: IdentityDhPublic::from_bytes(key(
                    TAG_IDENTITY_KEY,
                    "identity key missing or not 32 bytes",
                )?),
            },
            message: f[(TAG_MESSAGE - 1) as usize]
                .ok_or(OlmError::Malformed("no embedded message"))?,
        })
    }
}

/// `version ‖ payload` of a normal message, without its MAC (which covers exactly this).
fn encode_message(ratchet_key: &RatchetPublic, index: u32, ciphertext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 2 + 32 + 1 + 5 + 1 + 5 + ciphertext.len() + MAC_LEN);
    out.push(OLM_VERSION);
    put_bytes(&mut out, TAG_RATCHET_KEY, ratchet_key.as_bytes());
    // The chain index is a `required` field: encoded even when 0.
    put_varint(&mut out, (TAG_CHAIN_INDEX << 3) | WIRE_VARINT);
    put_varint(&mut out, u64::from(index));
    put_bytes(&mut out, TAG_CIPHERTEXT, ciphertext);
    out
}

fn encode_pre_key(keys: &OlmSessionKeys, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 3 * 34 + 3 + message.len());
    out.push(OLM_VERSION);
    put_bytes(&mut out, TAG_ONE_TIME_KEY, keys.one_time_key.as_bytes());
    put_bytes(&mut out, TAG_BASE_KEY, keys.base_key.as_bytes());
    put_bytes(&mut out, TAG_IDENTITY_KEY, keys.identity_key.as_bytes());
    put_bytes(&mut out, TAG_MESSAGE, message);
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, tag: u64, bytes: &[u8]) {
    put_varint(out, (tag << 3) | WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width field: skipped, like any unknown field.
    Fixed,
}

/// Iterates the fields of a protobuf payload as prost reads them: unknown fields are
/// skipped, a repeated field's last value wins (callers overwrite), groups are refused.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, OlmError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .0
                .split_first()
                .ok_or(OlmError::Malformed("truncated varint"))?;
            self.0 = rest;
            if i == 9 && b > 1 {
                return Err(OlmError::Malformed("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(OlmError::Malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], OlmError> {
        let n = usize::try_from(n).map_err(|_| OlmError::Malformed("truncated field"))?;
        if n > self.0.len() {
            return Err(OlmError::Malformed("truncated field"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), OlmError> {
        let key = self.varint()?;
        let tag = key >> 3;
        if tag == 0 {
            return Err(OlmError::Malformed("field tag 0"));
        }
        let value = match key & 7 {
            WIRE_VARINT => Value::Varint(self.varint()?),
            WIRE_LEN => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            WIRE_FIXED64 => self.take(8).map(|_| Value::Fixed)?,
            WIRE_FIXED32 => self.take(4).map(|_| Value::Fixed)?,
            _ => return Err(OlmError::Malformed("unsupported wire type")),
        };
        Ok((tag, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), OlmError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = self.field();
        if item.is_err() {
            // Stop after the first error rather than resynchronising on garbage.
            self.0 = &[];
        }
        Some(item)
    }
}

#[cfg(test)]
// Test code: a failed unwrap is a failed test.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn message_encoding_matches_vodozemacs_reference_bytes() {
        // vodozemac's own `message::test::encode` vector.
        let key = RatchetPublic::from_bytes(*b"ratchetkeyhereprettyplease123456");
        let encoded = encode_message(&key, 2, b"ciphertext");
        assert_eq!(
            encoded,
            b"\x03\n\x20ratchetkeyhereprettyplease123456\x10\x02\"\nciphertext"
        );
        let mut with_mac = encoded.clone();
        with_mac.extend_from_slice(b"MACHEREE");
        let m = Message::parse(&with_mac).unwrap();
        assert_eq!(
            (m.chain_index, m.ciphertext, m.mac),
            (2, &b"ciphertext"[..], &b"MACHEREE"[..])
        );
        assert_eq!(m.mac_input, &encoded[..]);
    }

    #[test]
    fn a_zero_chain_index_is_still_encoded() {
        let key = RatchetPublic::from_bytes([7; 32]);
        let encoded = encode_message(&key, 0, b"c");
        assert_eq!(&encoded[35..37], &[0x10, 0x00]);
    }

    #[test]
    fn truncated_and_mistyped_fields_are_refused() {
        let key = RatchetPublic::from_bytes([7; 32]);
        let mut m = encode_message(&key, 300, b"ciphertext");
        m.extend_from_slice(&[0; MAC_LEN]);
        assert!(Message::parse(&m).is_ok());
        assert!(matches!(
            Message::parse(&m[..20]),
            Err(OlmError::Malformed(_))
        ));
        let mut wrong = m.clone();
        wrong[35] = (TAG_CHAIN_INDEX << 3 | WIRE_LEN) as u8;
        assert!(Message::parse(&wrong).is_err());
        let mut v4 = m;
        v4[0] = 4;
        assert_eq!(
            Message::parse(&v4).err(),
            Some(OlmError::UnsupportedVersion(4))
        );
    }

    #[test]
    fn the_mirror_keeps_only_the_newest_40_skipped_indices() {
        let mut mirror = ChainMirror::default();
        let k = RatchetPublic::from_bytes([1; 32]);
        let v = mirror.check(&k, 100).unwrap();
        mirror.commit(v);
        assert!(matches!(
            mirror.check(&k, 59),
            Err(OlmError::MissingMessageKey(59))
        ));
        assert!(mirror.check(&k, 60).is_ok());
        assert!(matches!(
            mirror.check(&k, 100),
            Err(OlmError::MissingMessageKey(100))
        ));
        assert!(matches!(
            mirror.check(&k, 101 + OLM_MAX_MESSAGE_GAP + 1),
            Err(OlmError::TooBigMessageGap(..))
        ));
        assert!(mirror.check(&k, 101 + OLM_MAX_MESSAGE_GAP).is_ok());
    }

    #[test]
    fn the_mirror_forgets_the_oldest_of_six_chains() {
        let mut mirror = ChainMirror::default();
        for i in 0..=OLM_MAX_RECEIVING_CHAINS as u8 {
            let v = mirror
                .check(&RatchetPublic::from_bytes([i; 32]), 3)
                .unwrap();
            mirror.commit(v);
        }
        assert_eq!(
            mirror.check(&RatchetPublic::from_bytes([0; 32]), 1).err(),
            Some(OlmError::InvalidMac)
        );
        assert!(mirror.check(&RatchetPublic::from_bytes([1; 32]), 1).is_ok());
    }
}
