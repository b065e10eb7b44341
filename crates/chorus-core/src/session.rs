//! A session with one contact: the ratchet tree plus the identities it binds.
//!
//! Every message's associated data is `initiator identity ‖ responder identity ‖ header
//! bytes as received`. Plaintext is padded to a bucket before encryption and the nonce is
//! fresh randomness, so every output depends only on the state and the RNG passed in.
//!
//! **Persistence and stale snapshots.** Every mutation bumps [`Session::generation`].
//! The caller persists the snapshot and remembers the newest generation it persisted
//! (outside the snapshot). [`Session::restore`] refuses a snapshot older than that with
//! [`SessionError::StaleSnapshot`] — it could re-send on spent message keys — and changes
//! nothing. If the older snapshot is all there is, [`Session::restore_stale`] recovers it
//! safely: every sending chain is closed, so the next message takes a fresh DH step (a
//! new key pair, a fork sibling the peer accepts) and no message key is used twice.

use std::fmt;

use chorus_crypto::{
    Aes256GcmCipher, CryptoRng, EphemeralPublic, KemCiphertext, MessageCipher, Nonce,
};
use chorus_wire::{
    IdentityKeys, InitialMessage, RatchetHeader, RatchetMessage, limits::MAX_PLAINTEXT_LEN, pad,
    unpad,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::tree::{Incoming, Tree};

/// Format version of [`Session::snapshot`].
pub const SNAPSHOT_VERSION: u8 = 3;

/// Format version of [`SendDelta`].
const DELTA_VERSION: u8 = 1;

/// The ratchet state one send left behind, for sibling devices: a version byte, whether
/// the contact had answered, and our sending node (private key, root, chain key).
/// Secret: escrow it only sealed (under the log's epoch key). No `Debug`.
pub struct SendDelta(Zeroizing<Vec<u8>>);

impl SendDelta {
    /// The encoded delta.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Splits a [`SendDelta`] into whether the contact had answered and the node.
/// A delta's flags byte: the contact had answered.
const DELTA_ANSWERED: u8 = 1;
/// A delta's flags byte: the send is a heal's anchor (its first message announced the
/// node as our floor, and the contact cut to it).
const DELTA_ANCHOR: u8 = 2;

/// A delta's flags and node.
struct Delta<'a> {
    answered: bool,
    anchor: bool,
    node: &'a [u8],
}

fn parse_delta(delta: &[u8]) -> Result<Delta<'_>, SessionError> {
    let corrupt = |why: &str| SessionError::CorruptSnapshot(format!("ratchet delta: {why}"));
    let [version, flags, node @ ..] = delta else {
        return Err(corrupt("truncated"));
    };
    if *version != DELTA_VERSION {
        return Err(corrupt("unsupported version"));
    }
    if flags & !(DELTA_ANSWERED | DELTA_ANCHOR) != 0 {
        return Err(corrupt("bad flag"));
    }
    Ok(Delta {
        answered: flags & DELTA_ANSWERED != 0,
        anchor: flags & DELTA_ANCHOR != 0,
        node,
    })
}

/// How a message must be handed to the receiver's [`Session::decrypt`] (carried by the
/// transport next to the bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageKind {
    /// An [`InitialMessage`]: handshake fields plus the first ratchet message.
    Initial,
    /// A plain [`RatchetMessage`].
    Ratchet,
}

/// An encrypted message and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedMessage {
    /// How to decode it.
    pub kind: MessageKind,
    /// The encoded message.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Role {
    Initiator,
    Responder,
}

/// The handshake fields an initiator repeats until the responder answers.
#[derive(Serialize, Deserialize)]
pub(crate) struct PendingInitial {
    pub ephemeral: EphemeralPublic,
    pub signed_prekey_id: u32,
    pub one_time_prekey_id: Option<u32>,
    pub pq_prekey_id: u32,
    pub kem_ciphertext: Vec<u8>,
}

/// A Double Ratchet session with one contact.
///
/// Holds secrets: `Debug` prints only public facts (role, the contact's root key,
/// generation, tree size).
#[derive(Serialize, Deserialize)]
pub struct Session {
    tree: Tree,
    role: Role,
    /// Encoded identity keys; kept as received so the AD uses exact bytes.
    ours: Vec<u8>,
    theirs: Vec<u8>,
    pending: Option<PendingInitial>,
    /// Responder: the initiator's base key, to recognise its repeated initial messages.
    base_key: Option<EphemeralPublic>,
    generation: u64,
    /// The roster's revocation count this session last healed for.
    healed: u64,
    /// `initiator ‖ responder` identity bytes; derived, not persisted.
    #[serde(skip)]
    ad_prefix: Vec<u8>,
    #[serde(skip)]
    their_keys: Option<IdentityKeys>,
}

/// A session as snapshots of format version 2 stored it (its tree kept no cut).
#[derive(Deserialize)]
struct SessionV2 {
    tree: crate::tree::TreeV2,
    role: Role,
    ours: Vec<u8>,
    theirs: Vec<u8>,
    pending: Option<PendingInitial>,
    base_key: Option<EphemeralPublic>,
    generation: u64,
    healed: u64,
}

impl From<SessionV2> for Session {
    fn from(s: SessionV2) -> Self {
        Self {
            tree: s.tree.into(),
            role: s.role,
            ours: s.ours,
            theirs: s.theirs,
            pending: s.pending,
            base_key: s.base_key,
            generation: s.generation,
            healed: s.healed,
            ad_prefix: Vec::new(),
            their_keys: None,
        }
    }
}

/// A session as snapshots of format version 1 stored it (before healing after a
/// revocation): it had healed for no revocation.
#[derive(Deserialize)]
struct SessionV1 {
    tree: crate::tree::TreeV1,
    role: Role,
    ours: Vec<u8>,
    theirs: Vec<u8>,
    pending: Option<PendingInitial>,
    base_key: Option<EphemeralPublic>,
    generation: u64,
}

impl From<SessionV1> for Session {
    fn from(s: SessionV1) -> Self {
        Self {
            tree: s.tree.into(),
            role: s.role,
            ours: s.ours,
            theirs: s.theirs,
            pending: s.pending,
            base_key: s.base_key,
            generation: s.generation,
            healed: 0,
            ad_prefix: Vec::new(),
            their_keys: None,
        }
    }
}

impl Session {
    pub(crate) fn new(
        tree: Tree,
        role: Role,
        ours: IdentityKeys,
        theirs: IdentityKeys,
        pending: Option<PendingInitial>,
        base_key: Option<EphemeralPublic>,
    ) -> Self {
        let mut s = Self {
            tree,
            role,
            ours: ours.encode(),
            theirs: theirs.encode(),
            pending,
            base_key,
            generation: 0,
            healed: 0,
            ad_prefix: Vec::new(),
            their_keys: Some(theirs),
        };
        s.derive(Some(ours));
        s
    }

    fn derive(&mut self, ours: Option<IdentityKeys>) {
        let ours = ours.or_else(|| IdentityKeys::decode(&self.ours).ok());
        if self.their_keys.is_none() {
            self.their_keys = IdentityKeys::decode(&self.theirs).ok();
        }
        let (Some(o), Some(t)) = (ours, self.their_keys.as_ref()) else {
            return;
        };
        let (first, second) = match self.role {
            Role::Initiator => (o.ad_bytes(), t.ad_bytes()),
            Role::Responder => (t.ad_bytes(), o.ad_bytes()),
        };
        self.ad_prefix = [first, second].concat();
        self.tree.refresh();
    }

    fn ad(&self, header: &[u8]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(self.ad_prefix.len() + header.len());
        ad.extend_from_slice(&self.ad_prefix);
        ad.extend_from_slice(header);
        ad
    }

    /// Encrypts one message. The plaintext is padded to its bucket first, so an oversized
    /// plaintext is refused before any key is drawn.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<EncryptedMessage, SessionError> {
        self.encrypt_inner(plaintext, rng).map(|(m, _)| m)
    }

    /// Encrypts one message and returns the ratchet delta that lets a sibling device
    /// continue from the state this send left (DESIGN §6): the sending node with its
    /// private key, root and chain key. The caller escrows the delta in the log *before*
    /// the message leaves (principle 3); siblings pass it to [`Session::apply_send_delta`].
    pub fn encrypt_escrowed<R: CryptoRng + ?Sized>(
        &mut self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<(EncryptedMessage, SendDelta), SessionError> {
        let (message, sender) = self.encrypt_inner(plaintext, rng)?;
        let node = self
            .tree
            .export_sending(&sender)
            .ok_or(SessionError::NotReady)?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(node.len() + 2));
        bytes.push(DELTA_VERSION);
        let mut flags = 0;
        if self.pending.is_none() {
            flags |= DELTA_ANSWERED;
        }
        if self.tree.anchored_on(&sender) {
            flags |= DELTA_ANCHOR;
        }
        bytes.push(flags);
        bytes.extend_from_slice(&node);
        Ok((message, SendDelta(bytes)))
    }

    /// A device of this identity was revoked (`revocations` counts the roster's
    /// revocations so far) and holds a copy of this session: close every sending chain,
    /// so the next send takes a fresh DH step, and heal from it (see [`crate::tree`]'s
    /// module docs). Returns whether this starts a heal (false: this session already
    /// healed for it).
    pub fn begin_heal(&mut self, revocations: u64) -> bool {
        if revocations <= self.healed {
            return false;
        }
        self.healed = revocations;
        self.tree.begin_heal();
        self.generation += 1;
        true
    }

    /// Whether the next send anchors a heal after `revocations` (the roster's count):
    /// it steps from the contact's newest key this replica holds, and the contact keeps
    /// that branch alone from then on. Read the contact's mailbox to its end first, or
    /// the anchor may build on a key the contact has moved past and cut its newer ones
    /// off (with every message of a sibling built on them).
    pub fn heal_due(&self, revocations: u64) -> bool {
        revocations > self.healed || self.tree.heal_pending()
    }

    /// How many of the roster's revocations this session has healed from for good: its
    /// heal anchored and the peer built on the anchor's branch (the sends after that
    /// carry the floors that make the peer refuse every key a revoked device holds).
    pub fn healed_through(&self) -> u64 {
        if self.tree.heal_settled() {
            self.healed
        } else {
            self.healed.saturating_sub(1)
        }
    }

    /// Makes the next send take a fresh DH step instead of continuing the open chain.
    /// Devices that send without coordinating (`leaderless`) each step on their own,
    /// so two of them never encrypt under one message key: a concurrent send forks the
    /// tree, which the peer merges, instead of spending a key the peer takes once.
    pub fn step_on_next_send(&mut self) {
        self.tree.close_sending();
        self.generation += 1;
    }

    /// [`Session::apply_send_delta`] for a delta folded after `revocations`
    /// revocations: the session first heals for any it has not, as the sending device
    /// did before it encrypted. A malformed delta changes nothing, the heal included.
    pub fn apply_send_delta_after(
        &mut self,
        delta: &[u8],
        revocations: u64,
    ) -> Result<bool, SessionError> {
        let d = parse_delta(delta)?;
        let checked = self.tree.check_sending(d.node)?;
        let healed = self.begin_heal(revocations);
        // A send planned before the revocation was folded, sequenced after it, is no
        // anchor: its first message did not announce itself as our floor, so the
        // contact did not cut to it. The heal still waits for one.
        let unanchored = !d.anchor && self.tree.heal_pending();
        let changed = self.put_delta(d.answered, checked);
        if unanchored {
            self.tree.keep_heal_pending();
        }
        Ok(changed || healed)
    }

    /// Applies a sibling device's [`SendDelta`]. Deltas of one session must be applied in
    /// the order the sends were sequenced (the log's order); received messages may be
    /// decrypted before or after, in any interleaving. Returns whether the state changed:
    /// a delta this session already holds (its own send, read back from the log) is a
    /// no-op. A malformed delta changes nothing.
    pub fn apply_send_delta(&mut self, delta: &[u8]) -> Result<bool, SessionError> {
        let d = parse_delta(delta)?;
        let checked = self.tree.check_sending(d.node)?;
        Ok(self.put_delta(d.answered, checked))
    }

    fn put_delta(&mut self, answered: bool, checked: Option<crate::tree::SendingNode>) -> bool {
        let Some(node) = checked else {
            return false;
        };
        self.tree.put_sending(node);
        if answered {
            self.pending = None;
        }
        self.generation += 1;
        true
    }

    /// A digest of the ratchet state, independent of the generation counter: two
    /// replicas that hold the same keys and chains give the same digest.
    pub fn state_digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        if let Some(tree) = crate::encode_wiped(&[], &self.tree) {
            h.update(&tree[..]);
        }
        h.update([u8::from(self.pending.is_some())]);
        h.update(self.healed.to_be_bytes());
        h.finalize().into()
    }

    fn encrypt_inner<R: CryptoRng + ?Sized>(
        &mut self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<(EncryptedMessage, chorus_crypto::RatchetPublic), SessionError> {
        let mut buf = pad(plaintext).map_err(|_| SessionError::PlaintextTooLarge {
            max: MAX_PLAINTEXT_LEN,
            actual: plaintext.len(),
        })?;
        let out = self.tree.next_sending_key(rng)?;
        let nonce = Nonce::random(rng);
        let header = RatchetHeader {
            sender: out.sender,
            parent: out.parent,
            previous_chain_length: out.previous_chain_length,
            counter: out.key.index(),
            nonce,
            honor_floor: out.honor_floor,
            peer_floor: out.peer_floor,
        }
        .encode();
        Aes256GcmCipher.seal(&out.key, &nonce, &self.ad(&header), &mut buf);
        let message = RatchetMessage::encode(&header, &buf);
        self.generation += 1;
        let sender = out.sender;
        match &self.pending {
            None => Ok((
                EncryptedMessage {
                    kind: MessageKind::Ratchet,
                    bytes: message,
                },
                sender,
            )),
            Some(p) => {
                let ours = IdentityKeys::decode(&self.ours)?;
                let ct = KemCiphertext::from_slice(&p.kem_ciphertext)
                    .map_err(SessionError::InvalidKey)?;
                let bytes = InitialMessage::encode(
                    &ours,
                    &p.ephemeral,
                    p.signed_prekey_id,
                    p.one_time_prekey_id,
                    p.pq_prekey_id,
                    &ct,
                    &message,
                );
                Ok((
                    EncryptedMessage {
                        kind: MessageKind::Initial,
                        bytes,
                    },
                    sender,
                ))
            }
        }
    }

    /// Decrypts one message. On any error the session is unchanged and stays usable.
    pub fn decrypt(
        &mut self,
        message: &EncryptedMessage,
    ) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        match message.kind {
            MessageKind::Ratchet => {
                let m = RatchetMessage::decode(&message.bytes)?;
                self.decrypt_parsed(&m)
            }
            MessageKind::Initial => {
                let m = InitialMessage::decode(&message.bytes)?;
                let ours_theirs = self.their_keys.as_ref().map(IdentityKeys::encode);
                if self.base_key != Some(m.ephemeral)
                    || ours_theirs.as_deref() != Some(&m.sender.encode()[..])
                {
                    return Err(SessionError::WrongSession);
                }
                self.decrypt_parsed(&m.message)
            }
        }
    }

    pub(crate) fn decrypt_parsed(
        &mut self,
        m: &RatchetMessage,
    ) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        let h = &m.header;
        let plan = self.tree.plan_receive(&Incoming {
            sender: h.sender,
            parent: h.parent,
            counter: h.counter,
            previous_chain_length: Some(h.previous_chain_length),
            honor_floor: h.honor_floor,
            peer_floor: h.peer_floor,
        })?;
        let mut buf = Zeroizing::new(m.ciphertext.clone());
        Aes256GcmCipher
            .open(plan.key(), &h.nonce, &self.ad(&m.header_bytes), &mut buf)
            .map_err(|_| SessionError::AuthenticationFailed)?;
        let plaintext = Zeroizing::new(unpad(&buf)?.to_vec());
        self.tree.commit(plan);
        self.pending = None;
        self.generation += 1;
        Ok(plaintext)
    }

    /// The contact's identity keys.
    pub fn their_identity(&self) -> Option<&IdentityKeys> {
        self.their_keys.as_ref()
    }

    /// For a session we answered: the initiator's base key, which names its
    /// handshake (a replayed first message carries the same one).
    pub fn handshake_base_key(&self) -> Option<[u8; 32]> {
        self.base_key.as_ref().map(|k| *k.as_bytes())
    }

    /// Whether our messages are still initial messages (no answer received yet).
    pub fn awaiting_reply(&self) -> bool {
        self.pending.is_some()
    }

    /// Bumped by every change; see the module docs on stale snapshots.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a contact's new ratchet key built on our ratchet key `key` can still be
    /// accepted (we hold its private half). Keys older than the honor floor are deleted.
    pub fn accepts_replies_on(&self, key: &chorus_crypto::RatchetPublic) -> bool {
        self.tree.accepts_children_of(key)
    }

    /// Skipped message keys currently held.
    pub fn skipped_keys(&self) -> usize {
        self.tree.skipped_count()
    }

    /// Ratchet tree nodes currently kept (at most [`MAX_TREE_NODES`](crate::MAX_TREE_NODES)).
    pub fn ratchet_nodes(&self) -> usize {
        self.tree.node_count()
    }

    /// The ratchet key the next message goes out on, if no DH step is due. Exposed for
    /// tests of branch choice.
    pub fn sending_ratchet_key(&self) -> Option<chorus_crypto::RatchetPublic> {
        self.tree.head()
    }

    /// Serializes the whole state: a version byte, then postcard. Contains secrets: store
    /// it only encrypted.
    pub fn snapshot(&self) -> Zeroizing<Vec<u8>> {
        // Serializing in-memory state with only supported types cannot fail.
        crate::encode_wiped(&[SNAPSHOT_VERSION], self).unwrap_or_default()
    }

    fn decode_snapshot(bytes: &[u8]) -> Result<Self, SessionError> {
        let (&version, body) = bytes
            .split_first()
            .ok_or_else(|| SessionError::CorruptSnapshot("empty".into()))?;
        let corrupt = |e: postcard::Error| SessionError::CorruptSnapshot(e.to_string());
        let mut s: Session = match version {
            SNAPSHOT_VERSION => postcard::from_bytes(body).map_err(corrupt)?,
            2 => postcard::from_bytes::<SessionV2>(body)
                .map_err(corrupt)?
                .into(),
            1 => postcard::from_bytes::<SessionV1>(body)
                .map_err(corrupt)?
                .into(),
            _ => return Err(SessionError::UnsupportedSnapshotVersion(version)),
        };
        s.derive(None);
        if s.their_keys.is_none() || s.ad_prefix.is_empty() {
            return Err(SessionError::CorruptSnapshot(
                "identity keys do not verify".into(),
            ));
        }
        Ok(s)
    }

    /// Restores a snapshot, refusing one older than `known_generation` (the newest
    /// generation the caller persisted).
    pub fn restore(bytes: &[u8], known_generation: u64) -> Result<Self, SessionError> {
        let s = Self::decode_snapshot(bytes)?;
        if s.generation < known_generation {
            return Err(SessionError::StaleSnapshot {
                snapshot: s.generation,
                known: known_generation,
            });
        }
        Ok(s)
    }

    /// Restores a snapshot known to be (or possibly be) stale, safely: all sending chains
    /// are closed, so the next message takes a fresh DH step and no message key is
    /// reused. The generation continues from `known_generation`.
    pub fn restore_stale(bytes: &[u8], known_generation: u64) -> Result<Self, SessionError> {
        let mut s = Self::decode_snapshot(bytes)?;
        s.tree.close_sending();
        s.generation = s.generation.max(known_generation) + 1;
        Ok(s)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("contact", &self.their_keys.as_ref().map(|k| k.root))
            .field("generation", &self.generation)
            .field("awaiting_reply", &self.pending.is_some())
            .field("skipped_keys", &self.tree.skipped_count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng;

    use super::*;

    /// Sessions stored before healing existed (format version 1) and before a heal's
    /// anchor could cut branches (version 2) still open, as they were, and go on.
    #[test]
    fn version_1_and_2_snapshots_still_open() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alice_id = crate::LocalIdentity::generate(&mut rng);
        let bob_id = crate::LocalIdentity::generate(&mut rng);
        let mut store = crate::MemoryPrekeyStore::default();
        let bundle = chorus_wire::PrekeyBundle {
            identity: bob_id.keys().clone(),
            signed_prekey: store.new_signed_prekey(&bob_id, &mut rng).unwrap(),
            one_time_prekey: Some(store.new_one_time_prekey(&mut rng)),
            pq_prekey: store.new_pq_prekey(&bob_id, false, &mut rng).unwrap(),
        };
        let mut alice = crate::initiate(&alice_id, &bundle, &mut rng).unwrap();
        let first = alice.encrypt(b"hi", &mut rng).unwrap();
        let bob = crate::respond(&bob_id, &store, &first.bytes)
            .unwrap()
            .session;

        // An older version is this one without the fields added since, all at their
        // defaults here (one zero byte each in postcard): version 2 lacks the tree's
        // last field; version 1 the tree's last three and the session's last.
        let older = |s: &Session, version: u8| {
            let now = s.snapshot();
            let tree_len = postcard::to_allocvec(&s.tree).unwrap().len();
            let body = &now[1..];
            let (tree_cut, session_cut) = match version {
                1 => (3, 1),
                _ => (1, 0),
            };
            assert!(body[tree_len - tree_cut..tree_len].iter().all(|&b| b == 0));
            assert!(body[body.len() - session_cut..].iter().all(|&b| b == 0));
            let mut old = vec![version];
            old.extend_from_slice(&body[..tree_len - tree_cut]);
            old.extend_from_slice(&body[tree_len..body.len() - session_cut]);
            old
        };
        for version in [1, 2] {
            let (a, b) = (older(&alice, version), older(&bob, version));
            let mut alice_restored = Session::restore(&a, alice.generation()).unwrap();
            let mut bob_restored = Session::restore(&b, bob.generation()).unwrap();
            assert_eq!(alice_restored.state_digest(), alice.state_digest());
            assert_eq!(bob_restored.state_digest(), bob.state_digest());
            let m = alice_restored.encrypt(b"again", &mut rng).unwrap();
            assert_eq!(&bob_restored.decrypt(&m).unwrap()[..], b"again");
            let reply = bob_restored.encrypt(b"hello", &mut rng).unwrap();
            assert_eq!(&alice_restored.decrypt(&reply).unwrap()[..], b"hello");
        }
        assert_eq!(
            Session::restore(&[SNAPSHOT_VERSION + 1, 0], 0).unwrap_err(),
            SessionError::UnsupportedSnapshotVersion(SNAPSHOT_VERSION + 1)
        );
    }
}
