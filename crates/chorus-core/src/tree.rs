//! The ratchet tree: Double Ratchet state that several replicas can share and merge.
//!
//! Signal's Double Ratchet keeps one sending and one receiving chain. Chorus keeps every
//! DH ratchet step as a **node** keyed by its ratchet public key, with the parent named
//! by the message header ("this key builds on your key X"). A linear conversation is a
//! path; when two replicas of one identity step from the same node without coordination
//! the path forks, and because a child's keys depend only on its parent's root key and
//! the two DH keys, the receiver derives *both* branches (DESIGN §5).
//!
//! Node derivation: `(root_child, chain_child) = KDF_RK(root_parent, DH(child, parent))`.
//! The responder's signed prekey is the tree's first node (its root key is the handshake
//! secret), so the initiator's first ratchet key is an ordinary child of it.
//!
//! Properties the rest of the crate relies on:
//! - **Receiving is deterministic.** It reads no randomness and no clock; two copies of
//!   one state that receive the same messages end byte-identical.
//! - **Receiving is plan-then-commit.** [`Tree::plan_receive`] derives keys without
//!   touching the tree; only after the AEAD verifies does [`Tree::commit`] apply the
//!   plan, so a forged or replayed message changes nothing.
//! - **The sending DH step is lazy.** A new key pair is drawn at send time, on top of the
//!   chosen peer node; receiving never draws randomness.
//! - **Branch choice** when the tree has forks: walk from the oldest node, at each fork
//!   prefer the child the other side acknowledged (built on), then the longest chain
//!   (subtree height, then messages), then the lexicographically smallest key. A
//!   replica can hold a node without its parent (a sibling's send built on a peer key
//!   this replica has not read): of several roots the walk starts from the one whose
//!   subtree reaches deepest, so it continues the identity's newest step instead of
//!   stepping from a peer key the peer may have deleted.
//! - **Bounded.** Skipped keys, forward jumps and nodes are capped by the constants in
//!   [`crate::consts`]. Our private keys older than the acknowledged generation minus
//!   [`HONOR_FLOOR_LAG`] are deleted, and the oldest key we keep is announced to the
//!   peer as `honor_floor`; the peer's announced floor stops us building on its older keys.
//!   Symmetrically every header names, as `peer_floor`, the oldest of the peer's keys we
//!   still hold a root for (all we could build on): the peer deletes its older ones.
//! - **Healing after a revocation** ([`Tree::begin_heal`]). A revoked device holds a copy
//!   of this tree: it could continue our open chain, or fork from a peer key whose root
//!   it holds, and the peer would accept either (forks are legitimate here). So every
//!   sending chain is closed and our next node, the **anchor**, is a fresh DH step. Once
//!   the peer builds on the anchor's branch, every node outside it loses its keys: the
//!   peer's announced floor (`honor_floor`) moves to the anchor, so the peer stops
//!   building on keys the revoked device holds, and our `peer_floor` moves to the peer's
//!   first key on the branch, so the peer deletes every key of its own the revoked
//!   device could build on. Healing takes one round trip and one more message.

use std::collections::{BTreeMap, VecDeque};

use chorus_crypto::{
    ChainKey, CryptoRng, KdfLabel, MessageKey, RatchetPublic, RatchetSecret, RemoteChainKey,
    RemoteMessageKey, RootKey,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SessionError;
use crate::consts::{
    HONOR_FLOOR_LAG, MAX_FORWARD_JUMP, MAX_SKIPPED_KEYS, MAX_TREE_NODES, MAX_TREE_STUBS,
};

/// Which KDF labels the tree uses.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Profile {
    /// Chorus v1.
    Chorus,
    /// Olm v1 (vodozemac interoperability checks only).
    #[cfg_attr(not(feature = "olm-compat"), allow(dead_code))]
    Olm,
}

impl Profile {
    fn label(self) -> &'static KdfLabel {
        match self {
            Profile::Chorus => &KdfLabel::CHORUS,
            Profile::Olm => &KdfLabel::OLM,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    Ours,
    Theirs,
}

/// One DH ratchet step.
#[derive(Serialize, Deserialize)]
pub(crate) struct Node {
    side: Side,
    parent: Option<RatchetPublic>,
    /// Distance from the handshake: ours and theirs alternate, so parity tells the side.
    depth: u32,
    /// Our private key (ours only); deleted below our honor floor.
    secret: Option<RatchetSecret>,
    /// Root key after this step: needed to derive children, deleted once none may come.
    root: Option<RootKey>,
    /// Our sending chain (ours only); closed when we step again.
    sending: Option<ChainKey>,
    /// The peer's chain (theirs only); closed once the peer moved on and we skipped to
    /// the length it announced.
    receiving: Option<RemoteChainKey>,
    /// Messages on this chain: sent (ours), or highest counter + 1 received (theirs).
    length: u32,
    /// Ours: the length of our previous chain, announced in headers.
    previous_length: u32,
}

/// A sibling's sending node from a ratchet delta, checked, not yet applied.
pub(crate) struct SendingNode {
    key: RatchetPublic,
    node: Node,
}

/// What the sender needs to build one message.
pub(crate) struct Outgoing {
    pub sender: RatchetPublic,
    pub parent: Option<RatchetPublic>,
    pub previous_chain_length: u32,
    pub honor_floor: Option<RatchetPublic>,
    pub peer_floor: Option<RatchetPublic>,
    pub key: MessageKey,
}

/// A received header, as the tree needs it.
pub(crate) struct Incoming {
    pub sender: RatchetPublic,
    /// `None`: the profile's headers carry no parent (Olm): our newest node is meant.
    pub parent: Option<RatchetPublic>,
    pub counter: u32,
    /// `None` when the profile does not announce it.
    pub previous_chain_length: Option<u32>,
    pub honor_floor: Option<RatchetPublic>,
    pub peer_floor: Option<RatchetPublic>,
}

type Skips = Vec<(u32, RemoteMessageKey)>;

/// Where healing after a revocation stands (see the module docs).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
enum Heal {
    /// Nothing to heal.
    #[default]
    Settled,
    /// Every sending chain is closed; our next node is the anchor.
    Pending,
    /// Our first node after the revocation: once the peer builds on its branch,
    /// everything outside it is forgotten.
    Anchored(RatchetPublic),
}

enum PlanKind {
    Skipped,
    Advance {
        chain: RemoteChainKey,
        skipped: Skips,
    },
    NewNode {
        node: Node,
        skipped: Skips,
        previous: Option<(RatchetPublic, Skips)>,
    },
}

/// Keys derived for one received message, not yet applied.
pub(crate) struct ReceivePlan {
    sender: RatchetPublic,
    counter: u32,
    honor_floor: Option<RatchetPublic>,
    peer_floor: Option<RatchetPublic>,
    kind: PlanKind,
    key: RemoteMessageKey,
}

impl ReceivePlan {
    pub(crate) fn key(&self) -> &RemoteMessageKey {
        &self.key
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Tree {
    profile: Profile,
    nodes: BTreeMap<RatchetPublic, Node>,
    skipped: BTreeMap<(RatchetPublic, u32), RemoteMessageKey>,
    /// Insertion order of skipped keys, for evicting the oldest. May hold entries already
    /// used; compacted when it grows past twice the cap.
    skipped_order: VecDeque<(RatchetPublic, u32)>,
    /// Depth of the oldest peer node the peer still accepts replies on.
    peer_floor: u32,
    /// Depth of the oldest node of ours the peer still builds on.
    built_on_from: u32,
    heal: Heal,
    /// The peer's heal anchor whose branch alone we keep ([`Tree::keep_only_branch`]):
    /// a sibling's send built off it, folded later, is kept without its keys, as the
    /// cut would have left it had it come first (every replica ends the same).
    cut: Option<RatchetPublic>,
    /// Cached result of the branch-choice walk; derived, so not persisted.
    #[serde(skip)]
    head: Option<RatchetPublic>,
    /// Cached [`Tree::our_floor`]; derived, so not persisted.
    #[serde(skip)]
    floor: Option<RatchetPublic>,
    /// Cached [`Tree::their_floor`]; derived, so not persisted.
    #[serde(skip)]
    their_floor: Option<RatchetPublic>,
}

/// A tree as snapshots of format version 2 stored it (before a heal's anchor cut off
/// the branches beside it), so that sessions stored then still open.
#[derive(Deserialize)]
pub(crate) struct TreeV2 {
    profile: Profile,
    nodes: BTreeMap<RatchetPublic, Node>,
    skipped: BTreeMap<(RatchetPublic, u32), RemoteMessageKey>,
    skipped_order: VecDeque<(RatchetPublic, u32)>,
    peer_floor: u32,
    built_on_from: u32,
    heal: Heal,
}

impl From<TreeV2> for Tree {
    fn from(t: TreeV2) -> Self {
        let mut tree = Self {
            nodes: t.nodes,
            skipped: t.skipped,
            skipped_order: t.skipped_order,
            peer_floor: t.peer_floor,
            built_on_from: t.built_on_from,
            heal: t.heal,
            ..Self::empty(t.profile)
        };
        tree.refresh();
        tree
    }
}

/// A tree as snapshots of format version 1 stored it (before healing after a
/// revocation), so that sessions stored then still open.
#[derive(Deserialize)]
pub(crate) struct TreeV1 {
    profile: Profile,
    nodes: BTreeMap<RatchetPublic, Node>,
    skipped: BTreeMap<(RatchetPublic, u32), RemoteMessageKey>,
    skipped_order: VecDeque<(RatchetPublic, u32)>,
    peer_floor: u32,
}

impl From<TreeV1> for Tree {
    fn from(t: TreeV1) -> Self {
        let mut tree = Self {
            nodes: t.nodes,
            skipped: t.skipped,
            skipped_order: t.skipped_order,
            peer_floor: t.peer_floor,
            ..Self::empty(t.profile)
        };
        tree.refresh();
        tree
    }
}

impl Tree {
    fn empty(profile: Profile) -> Self {
        Self {
            profile,
            nodes: BTreeMap::new(),
            skipped: BTreeMap::new(),
            skipped_order: VecDeque::new(),
            peer_floor: 0,
            built_on_from: 0,
            heal: Heal::Settled,
            cut: None,
            head: None,
            floor: None,
            their_floor: None,
        }
    }

    /// Initiator (Chorus): the responder's signed prekey is the first node, carrying the
    /// handshake's root key. Our first message steps on top of it.
    pub(crate) fn for_initiator(
        profile: Profile,
        signed_prekey: RatchetPublic,
        root: RootKey,
    ) -> Self {
        let mut t = Self::empty(profile);
        t.nodes
            .insert(signed_prekey, Node::theirs(None, 0, Some(root), None));
        t.refresh();
        t
    }

    /// Responder (Chorus): our signed prekey is the first node.
    pub(crate) fn for_responder(
        profile: Profile,
        signed_prekey: RatchetSecret,
        root: RootKey,
    ) -> Self {
        let mut t = Self::empty(profile);
        let public = signed_prekey.public_key();
        t.nodes
            .insert(public, Node::ours(None, 0, signed_prekey, root, None, 0));
        t.refresh();
        t
    }

    /// A first node of ours seeded straight from a handshake (Olm's initiator).
    #[cfg_attr(not(feature = "olm-compat"), allow(dead_code))]
    pub(crate) fn seeded_ours(
        profile: Profile,
        secret: RatchetSecret,
        root: RootKey,
        chain: ChainKey,
    ) -> Self {
        let mut t = Self::empty(profile);
        let public = secret.public_key();
        t.nodes
            .insert(public, Node::ours(None, 1, secret, root, Some(chain), 0));
        t.refresh();
        t
    }

    /// A first node of theirs seeded straight from a handshake (Olm's responder).
    #[cfg_attr(not(feature = "olm-compat"), allow(dead_code))]
    pub(crate) fn seeded_theirs(
        profile: Profile,
        public: RatchetPublic,
        root: RootKey,
        chain: RemoteChainKey,
    ) -> Self {
        let mut t = Self::empty(profile);
        t.nodes
            .insert(public, Node::theirs(None, 1, Some(root), Some(chain)));
        t.refresh();
        t
    }

    /// Restores the derived parts after deserialization.
    pub(crate) fn refresh(&mut self) {
        self.head = self.walk();
        // While a heal waits for the peer, the anchor is announced as the floor: the
        // peer stops building on its siblings, which the revoked device holds.
        self.floor = match self.heal {
            Heal::Anchored(anchor) => Some(anchor),
            _ => self.our_floor(),
        };
        self.their_floor = self.their_floor();
    }

    // ------------------------------------------------------------------ sending

    /// Draws the next message key, taking a DH step first if the chosen head is the
    /// peer's (or our head chain is closed).
    pub(crate) fn next_sending_key<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
    ) -> Result<Outgoing, SessionError> {
        let head = self.head.ok_or(SessionError::NotReady)?;
        let sender = match self.nodes.get(&head) {
            Some(n) if n.side == Side::Ours && n.sending.is_some() => head,
            Some(n) if n.side == Side::Theirs && n.root.is_some() => self.step_from(head, rng)?,
            Some(n) if n.side == Side::Ours => {
                // The chosen chain is closed (we stepped away from it, or state was
                // restored from a stale snapshot). Continue the sibling we opened
                // instead, if any; otherwise fork a fresh sibling from the same peer node
                // rather than reuse a key.
                let parent = n.parent;
                let open_sibling = self
                    .nodes
                    .iter()
                    .find(|(_, s)| {
                        s.side == Side::Ours && s.sending.is_some() && s.parent == parent
                    })
                    .map(|(k, _)| *k);
                match open_sibling {
                    Some(k) => k,
                    None => {
                        // The peer node it built on, if we still can build on it;
                        // otherwise (pruned, or a chain seeded by the handshake) the
                        // newest one we can.
                        let from = parent
                            .filter(|p| self.nodes.get(p).is_some_and(|p| p.root.is_some()))
                            .or_else(|| self.newest_buildable_peer_node())
                            .ok_or(SessionError::NotReady)?;
                        self.step_from(from, rng)?
                    }
                }
            }
            _ => {
                let fallback = self
                    .newest_buildable_peer_node()
                    .ok_or(SessionError::NotReady)?;
                self.step_from(fallback, rng)?
            }
        };
        // The floor is announced as the very node we send on only by a heal's anchor
        // (the peer then keeps that branch alone, [`Tree::keep_only_branch`]): outside
        // a heal, when every older key of ours is gone, nothing is announced rather
        // than look like one. (A session's first key, the initiator's only one, is
        // announced: the peer tells it apart by what it was built on.)
        let honor_floor = match (self.floor, self.heal) {
            (Some(f), Heal::Anchored(_)) => Some(f),
            (Some(f), _) if f == sender && self.built_on_a_step(&f) => None,
            (f, _) => f,
        };
        let peer_floor = self.their_floor;
        let node = self.nodes.get_mut(&sender).ok_or(SessionError::NotReady)?;
        let chain = node.sending.as_mut().ok_or(SessionError::NotReady)?;
        let key = chain.next_message_key();
        node.length = chain.index();
        Ok(Outgoing {
            sender,
            parent: node.parent,
            previous_chain_length: node.previous_length,
            honor_floor,
            peer_floor,
            key,
        })
    }

    fn newest_buildable_peer_node(&self) -> Option<RatchetPublic> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.side == Side::Theirs && n.root.is_some())
            .max_by_key(|(k, n)| (n.depth, n.length, std::cmp::Reverse(**k)))
            .map(|(k, _)| *k)
    }

    fn step_from<R: CryptoRng + ?Sized>(
        &mut self,
        peer: RatchetPublic,
        rng: &mut R,
    ) -> Result<RatchetPublic, SessionError> {
        let label = self.profile.label();
        let p = self.nodes.get(&peer).ok_or(SessionError::NotReady)?;
        let root = p.root.as_ref().ok_or(SessionError::NotReady)?;
        let secret = RatchetSecret::generate(rng);
        let public = secret.public_key();
        let dh = secret
            .diffie_hellman(&peer)
            .map_err(SessionError::InvalidKey)?;
        let (root, chain) = root.step_sending(&dh, label);
        let depth = p.depth + 1;
        let previous_length = p
            .parent
            .and_then(|g| self.nodes.get(&g))
            .filter(|g| g.side == Side::Ours)
            .map_or(0, |g| g.length);
        // Forward secrecy: we never send on an older chain again.
        for n in self.nodes.values_mut() {
            n.sending = None;
        }
        self.nodes.insert(
            public,
            Node::ours(
                Some(peer),
                depth,
                secret,
                root,
                Some(chain),
                previous_length,
            ),
        );
        if self.heal == Heal::Pending {
            self.heal = Heal::Anchored(public);
        }
        self.prune_window();
        self.refresh();
        Ok(public)
    }

    /// Serializes our sending node `key` as it is now: the ratchet delta a send hands to
    /// sibling devices (DESIGN §6). Contains the node's private key, root and chain key.
    pub(crate) fn export_sending(&self, key: &RatchetPublic) -> Option<Zeroizing<Vec<u8>>> {
        let node = self.nodes.get(key).filter(|n| n.side == Side::Ours)?;
        crate::encode_wiped(&[], &(key, node))
    }

    /// Checks a sibling's ratchet delta — our sending node as the sibling left it after
    /// sending — changing nothing: the node to put ([`Tree::put_sending`]), or `None`
    /// for a delta we already hold. Sends are sequenced (guarded log appends), so a
    /// delta is always the newest sending state.
    ///
    /// The node's parent may be a peer key this device has not received yet (the sibling
    /// read the peer's message first); it arrives through the mailbox and is derived as
    /// usual, and the two orders give the same tree.
    pub(crate) fn check_sending(&self, bytes: &[u8]) -> Result<Option<SendingNode>, SessionError> {
        let (key, node): (RatchetPublic, Node) = postcard::from_bytes(bytes)
            .map_err(|e| SessionError::CorruptSnapshot(format!("ratchet delta: {e}")))?;
        if node.side != Side::Ours || node.sending.is_none() || node.secret.is_none() {
            return Err(SessionError::CorruptSnapshot(
                "ratchet delta is not an open sending node".into(),
            ));
        }
        // A delta advancing a chain we hold carries the secret we already checked
        // against its key: comparing secrets saves a scalar multiplication per send
        // on the fold's hot path (DESIGN §4; docs/benchmarks.md).
        let known = self.nodes.get(&key).is_some_and(|n| same_secret(n, &node));
        if !known && node.secret.as_ref().map(RatchetSecret::public_key) != Some(key) {
            return Err(SessionError::CorruptSnapshot(
                "ratchet delta key does not match its secret".into(),
            ));
        }
        if let Some(existing) = self.nodes.get(&key) {
            if existing.side != Side::Ours {
                return Err(SessionError::CorruptSnapshot(
                    "ratchet delta names a peer key".into(),
                ));
            }
            if existing.length >= node.length {
                return Ok(None);
            }
        }
        Ok(Some(SendingNode { key, node }))
    }

    /// Puts a delta [`Tree::check_sending`] accepted: like the sibling's own send, it
    /// closes every other sending chain.
    pub(crate) fn put_sending(&mut self, delta: SendingNode) {
        let SendingNode { key, mut node } = delta;
        for n in self.nodes.values_mut() {
            n.sending = None;
        }
        if self.off_the_cut(node.parent) {
            node.secret = None;
            node.root = None;
            node.sending = None;
        }
        self.nodes.insert(key, node);
        if self.heal == Heal::Pending {
            self.heal = Heal::Anchored(key);
        }
        self.prune_window();
        self.refresh();
    }

    /// Whether `key` is the anchor of a heal that waits for the peer.
    pub(crate) fn anchored_on(&self, key: &RatchetPublic) -> bool {
        self.heal == Heal::Anchored(*key)
    }

    /// A sibling's send just put was no anchor (planned before it knew of the
    /// revocation): the heal still waits for one, and the chain that send left open is
    /// closed, so the next send steps afresh and announces itself.
    pub(crate) fn keep_heal_pending(&mut self) {
        self.close_sending();
        self.heal = Heal::Pending;
        self.refresh();
    }

    /// Whether a heal began and its anchor is not taken yet (the next send takes it).
    pub(crate) fn heal_pending(&self) -> bool {
        self.heal == Heal::Pending
    }

    /// Whether no heal waits: none began, or the peer built on the anchor's branch.
    pub(crate) fn heal_settled(&self) -> bool {
        self.heal == Heal::Settled
    }

    /// A device of this identity was revoked, holding a copy of this tree: close every
    /// sending chain, so the next send takes a fresh DH step, and make that step the
    /// anchor of the heal (see the module docs).
    pub(crate) fn begin_heal(&mut self) {
        self.close_sending();
        self.heal = Heal::Pending;
    }

    /// Closes every sending chain, so the next send takes a fresh DH step. Used when a
    /// snapshot may be older than state that already sent (its chains may be spent).
    pub(crate) fn close_sending(&mut self) {
        for n in self.nodes.values_mut() {
            n.sending = None;
        }
    }

    /// The peer's oldest ratchet key we still hold the root of: the oldest we could
    /// build on, announced as `peer_floor`.
    fn their_floor(&self) -> Option<RatchetPublic> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.side == Side::Theirs && n.root.is_some())
            .min_by_key(|(k, n)| (n.depth, **k))
            .map(|(k, _)| *k)
    }

    /// Our oldest ratchet key that still has its private half.
    fn our_floor(&self) -> Option<RatchetPublic> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.side == Side::Ours && n.secret.is_some())
            .min_by_key(|(k, n)| (n.depth, **k))
            .map(|(k, _)| *k)
    }

    // ---------------------------------------------------------------- receiving

    /// Derives the key for a received message without changing the tree.
    pub(crate) fn plan_receive(&self, msg: &Incoming) -> Result<ReceivePlan, SessionError> {
        let plan = |kind, key| ReceivePlan {
            sender: msg.sender,
            counter: msg.counter,
            honor_floor: msg.honor_floor,
            peer_floor: msg.peer_floor,
            kind,
            key,
        };
        if let Some(key) = self.skipped.get(&(msg.sender, msg.counter)) {
            return Ok(plan(PlanKind::Skipped, key.duplicate()));
        }
        if let Some(node) = self.nodes.get(&msg.sender) {
            if node.side == Side::Ours {
                // A peer can never send on our key: reflected or forged.
                return Err(SessionError::AuthenticationFailed);
            }
            let chain = node
                .receiving
                .as_ref()
                .ok_or(SessionError::DuplicateOrExpired {
                    counter: msg.counter,
                })?;
            if msg.counter < chain.index() {
                return Err(SessionError::DuplicateOrExpired {
                    counter: msg.counter,
                });
            }
            let (chain, skipped, key) = derive_to(chain.duplicate(), msg.counter)?;
            return Ok(plan(PlanKind::Advance { chain, skipped }, key));
        }

        // A node we have not seen: derive it from the parent it names. A key that one of
        // *their* nodes names as its parent cannot be theirs (sides alternate): refuse.
        // Our own nodes may name it — a sibling's ratchet delta arrives before the peer
        // message it built on. A pruned peer node cannot come back this way: the window
        // prunes the shallowest nodes first, so its parent (ours, shallower) is gone too
        // and the derivation below fails with `UnknownParent`.
        if self
            .nodes
            .values()
            .any(|n| n.parent == Some(msg.sender) && n.side == Side::Theirs)
        {
            return Err(SessionError::AuthenticationFailed);
        }
        let parent_key = match msg.parent {
            Some(p) => p,
            None => self.newest_own_node().ok_or(SessionError::UnknownParent)?,
        };
        let parent = self
            .nodes
            .get(&parent_key)
            .ok_or(SessionError::UnknownParent)?;
        if parent.side != Side::Ours {
            return Err(SessionError::UnknownParent);
        }
        let (Some(secret), Some(root)) = (parent.secret.as_ref(), parent.root.as_ref()) else {
            return Err(SessionError::UnknownParent);
        };
        // After a heal's anchor cut us to its branch, a new key of the peer's must be
        // built on that branch as far as we know: a key of ours held without its
        // parent (a sibling's send) was spared by the cut, and may hang off a copy's
        // fork we never read.
        if let Some(cut) = self.cut.filter(|c| self.nodes.contains_key(c))
            && !self.descends_from(parent_key, cut)
        {
            return Err(SessionError::UnknownParent);
        }
        let dh = secret
            .diffie_hellman(&msg.sender)
            .map_err(SessionError::InvalidKey)?;
        let (child_root, chain) = root.step_receiving(&dh, self.profile.label());

        // The peer's previous chain: keep keys for its unreceived messages, close the chain.
        let previous = match (parent.parent, msg.previous_chain_length) {
            (Some(g), Some(pn)) => match self.nodes.get(&g) {
                Some(gn) if gn.side == Side::Theirs => match gn.receiving.as_ref() {
                    Some(gc) if pn > gc.index() => {
                        let (_, mut skips, last) = derive_to(gc.duplicate(), pn - 1)?;
                        skips.push((pn - 1, last));
                        Some((g, skips))
                    }
                    Some(_) => Some((g, Vec::new())),
                    None => None,
                },
                _ => None,
            },
            _ => None,
        };

        let (chain, skipped, key) = derive_to(chain, msg.counter)?;
        let node = Node::theirs(
            Some(parent_key),
            parent.depth + 1,
            Some(child_root),
            Some(chain),
        );
        Ok(plan(
            PlanKind::NewNode {
                node,
                skipped,
                previous,
            },
            key,
        ))
    }

    fn newest_own_node(&self) -> Option<RatchetPublic> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.side == Side::Ours && n.secret.is_some())
            .max_by_key(|(k, n)| (n.depth, std::cmp::Reverse(**k)))
            .map(|(k, _)| *k)
    }

    /// Applies a plan whose message authenticated.
    pub(crate) fn commit(&mut self, plan: ReceivePlan) {
        let ReceivePlan {
            sender,
            counter,
            honor_floor,
            peer_floor,
            kind,
            key: _,
        } = plan;
        let mut structural = false;
        match kind {
            PlanKind::Skipped => {
                self.skipped.remove(&(sender, counter));
            }
            PlanKind::Advance { chain, skipped } => {
                let mut parent = None;
                if let Some(n) = self.nodes.get_mut(&sender) {
                    n.receiving = Some(chain);
                    n.length = n.length.max(counter.saturating_add(1));
                    parent = n.parent;
                }
                // A chain's length only matters to branch choice when it has siblings.
                structural |= self
                    .nodes
                    .iter()
                    .any(|(k, n)| *k != sender && n.parent == parent);
                self.store_skipped(sender, skipped);
            }
            PlanKind::NewNode {
                mut node,
                skipped,
                previous,
            } => {
                node.length = counter.saturating_add(1);
                let parent = node.parent;
                self.nodes.insert(sender, node);
                if let Some((g, skips)) = previous {
                    if let Some(gn) = self.nodes.get_mut(&g) {
                        gn.receiving = None;
                    }
                    self.store_skipped(g, skips);
                }
                self.store_skipped(sender, skipped);
                structural = true;
                if let (Heal::Anchored(anchor), Some(parent)) = (self.heal, parent)
                    && self.descends_from(parent, anchor)
                {
                    self.settle_heal(anchor);
                }
            }
        }
        if let Some(floor) = honor_floor
            && self.apply_peer_floor(floor)
        {
            structural = true;
            // The floor is the node this message came on: a heal's anchor (outside a
            // heal the floor lags two steps behind, but for a session's first key,
            // which has nothing beside it). The peer builds on nothing else any more.
            if sender == floor {
                self.keep_only_branch(floor);
            }
        }
        if let Some(floor) = peer_floor {
            structural |= self.apply_built_on_from(floor);
        }
        if structural {
            self.apply_our_floor();
            self.prune_window();
            self.refresh();
        }
    }

    fn store_skipped(&mut self, node: RatchetPublic, keys: Skips) {
        for (index, key) in keys {
            if self.skipped.insert((node, index), key).is_none() {
                self.skipped_order.push_back((node, index));
            }
        }
        while self.skipped.len() > MAX_SKIPPED_KEYS {
            match self.skipped_order.pop_front() {
                Some(oldest) => {
                    self.skipped.remove(&oldest);
                }
                None => break,
            }
        }
        if self.skipped_order.len() > 2 * MAX_SKIPPED_KEYS {
            let skipped = &self.skipped;
            self.skipped_order.retain(|k| skipped.contains_key(k));
        }
    }

    /// Returns whether anything changed.
    fn apply_peer_floor(&mut self, floor: RatchetPublic) -> bool {
        let Some(depth) = raise(&self.nodes, &floor, Side::Theirs, &mut self.peer_floor) else {
            return false;
        };
        // The floor's siblings are below it too: a heal's anchor is announced as the
        // floor so the peer stops building on the fork the revoked device holds. The
        // peer sends only on its newest chain, at or above its floor, so the chains
        // below it are closed as well (their skipped keys stay): nobody continues one,
        // not even a revoked device that holds a copy of it.
        for (k, n) in &mut self.nodes {
            if n.side == Side::Theirs && (n.depth < depth || (n.depth == depth && *k != floor)) {
                n.root = None;
                n.receiving = None;
            }
        }
        true
    }

    /// The peer announced as its floor the very node this message came on — which it
    /// does for a heal's anchor only ([`Tree::next_sending_key`]) —: it builds on that
    /// branch alone. Every node off the branch loses its keys — the peer's their
    /// chains and roots, ours their private halves and chains, the keys the anchor was
    /// built on included — so nothing sent off the branch is read, and nothing new can
    /// be built off it. (A session's first key, built on the responder's seed, which
    /// has no parent, is left alone: it is the initiator's only key.)
    ///
    /// This is what makes a heal hold while a copy of the peer's old state (a revoked
    /// device) is still sending: from the anchor's first message on we refuse the
    /// copy's forks from our keys it knew, stop building on a fork of the copy's that
    /// we took before (which would keep our answers the copy's to read and the peer's
    /// devices locked out), and take a fresh step of our own on the anchor. Outside a
    /// heal the floor is the peer's oldest key, behind the node it sends on.
    fn keep_only_branch(&mut self, floor: RatchetPublic) {
        if !self.built_on_a_step(&floor) {
            return;
        }
        self.cut = Some(floor);
        let off: Vec<RatchetPublic> = self
            .nodes
            .keys()
            .filter(|k| self.off_branch(**k, floor))
            .copied()
            .collect();
        for k in off {
            if let Some(n) = self.nodes.get_mut(&k) {
                match n.side {
                    Side::Theirs => n.receiving = None,
                    Side::Ours => {
                        n.secret = None;
                        n.sending = None;
                    }
                }
                n.root = None;
            }
        }
    }

    /// The peer builds only on our nodes from `floor`'s depth on: deletes the keys of
    /// our older ones. Returns whether anything changed. An open sending chain keeps its
    /// node's keys (a sibling's delta carries them); its successor replaces it.
    fn apply_built_on_from(&mut self, floor: RatchetPublic) -> bool {
        let Some(depth) = raise(&self.nodes, &floor, Side::Ours, &mut self.built_on_from) else {
            return false;
        };
        for n in self.nodes.values_mut() {
            if n.side == Side::Ours && n.depth < depth && n.sending.is_none() {
                n.secret = None;
                n.root = None;
            }
        }
        true
    }

    /// Whether a node of ours built on `parent` is off the branch a heal's anchor of the
    /// peer's cut to ([`Tree::keep_only_branch`]); never while the parent is unread.
    fn off_the_cut(&self, parent: Option<RatchetPublic>) -> bool {
        match (self.cut, parent) {
            (Some(cut), Some(p)) => self.nodes.contains_key(&cut) && self.off_branch(p, cut),
            _ => false,
        }
    }

    /// Whether `key` was built on a node that is itself a ratchet step (has a parent),
    /// not on the seed of the session (the responder's signed prekey).
    fn built_on_a_step(&self, key: &RatchetPublic) -> bool {
        let parent_of = |k: &RatchetPublic| {
            self.nodes.get(k).and_then(|n| {
                n.parent
                    .filter(|p| self.nodes.get(p).is_some_and(|pn| pn.depth < n.depth))
            })
        };
        parent_of(key).and_then(|p| parent_of(&p)).is_some()
    }

    /// Whether `key` is `anchor` or below it.
    fn descends_from(&self, key: RatchetPublic, anchor: RatchetPublic) -> bool {
        let mut at = Some(key);
        // Depth strictly decreases towards the root, so this ends.
        while let Some(k) = at {
            if k == anchor {
                return true;
            }
            at = self.nodes.get(&k).and_then(|n| {
                n.parent
                    .filter(|p| self.nodes.get(p).is_some_and(|pn| pn.depth < n.depth))
            });
        }
        false
    }

    /// Whether `key` is known to be off `anchor`'s branch: its ancestry reaches the root
    /// of the tree without passing `anchor`. A node held without its parent (a
    /// sibling's send built on a peer key not read here yet), or whose ancestors were
    /// pruned, is not: what it hangs off is unknown, and cutting it here but not on a
    /// replica that read its parent first would leave the two apart.
    fn off_branch(&self, key: RatchetPublic, anchor: RatchetPublic) -> bool {
        let mut at = key;
        // Depth strictly decreases towards the root, so this ends.
        loop {
            if at == anchor {
                return false;
            }
            let Some(n) = self.nodes.get(&at) else {
                return false;
            };
            match n.parent {
                None => return true,
                Some(p) => match self.nodes.get(&p) {
                    Some(pn) if pn.depth < n.depth => at = p,
                    _ => return false,
                },
            }
        }
    }

    /// The peer built on the anchor's branch: every node outside it, which the revoked
    /// device may hold, loses its keys — ours their private halves (so our announced
    /// floor moves to the anchor), the peer's their roots (so our `peer_floor` moves to
    /// the peer's first key on the branch).
    fn settle_heal(&mut self, anchor: RatchetPublic) {
        let outside: Vec<RatchetPublic> = self
            .nodes
            .keys()
            .filter(|k| self.off_branch(**k, anchor))
            .copied()
            .collect();
        for k in outside {
            if let Some(n) = self.nodes.get_mut(&k) {
                n.root = None;
                n.secret = None;
                n.sending = None;
            }
        }
        self.heal = Heal::Settled;
    }

    /// The depth of our deepest node the peer has built on.
    fn acknowledged(&self) -> Option<u32> {
        self.nodes
            .values()
            .filter(|n| n.side == Side::Theirs)
            .filter_map(|n| n.parent.and_then(|p| self.nodes.get(&p)))
            .filter(|p| p.side == Side::Ours)
            .map(|p| p.depth)
            .max()
    }

    /// Deletes our private keys older than the acknowledged generation minus the lag.
    fn apply_our_floor(&mut self) {
        let Some(acked) = self.acknowledged() else {
            return;
        };
        let keep_from = acked.saturating_sub(2 * HONOR_FLOOR_LAG);
        for n in self.nodes.values_mut() {
            if n.side == Side::Ours && n.depth < keep_from {
                n.secret = None;
                n.root = None;
                n.sending = None;
            }
        }
    }

    /// Keeps the tree within [`MAX_TREE_NODES`], dropping the shallowest nodes first.
    /// Our nodes deeper than any the peer has built on are not counted and stay: they
    /// are our own sends (a peer cannot make us create them), and a device coming back
    /// after months applies its siblings' sends from the log before it reads the
    /// peer's answers to them, so dropping them — or the peer's answers while they are
    /// many — would make those answers undecryptable. They count once the peer builds
    /// on them. A peer node pruned here never comes back: its parent (ours, shallower,
    /// built on) goes before it or has lost its private key to the floor.
    fn prune_window(&mut self) {
        let acknowledged = self.acknowledged().unwrap_or(0);
        // Our nodes that still hold their private key are the ones we honour replies
        // on (the floor): never pruned here, or a wide fork of the peer's (leaderless
        // siblings each stepping from our one key) would prune the key they all build
        // on.
        let mut counted: Vec<(u32, RatchetPublic)> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.side == Side::Theirs || (n.depth <= acknowledged && n.secret.is_none())
            })
            .map(|(k, n)| (n.depth, *k))
            .collect();
        let Some(excess) = counted.len().checked_sub(MAX_TREE_NODES) else {
            return;
        };
        counted.sort_unstable();
        // Beyond the stubs' budget the shallowest go for good.
        let removed = excess.saturating_sub(MAX_TREE_STUBS);
        for (i, (_, k)) in counted.into_iter().take(excess).enumerate() {
            let derivable = self.nodes.get(&k).is_some_and(|n| {
                n.side == Side::Theirs
                    && n.parent
                        .and_then(|p| self.nodes.get(&p))
                        .is_some_and(|p| p.secret.is_some() && p.root.is_some())
            });
            if derivable && i >= removed {
                // Its parent could derive it again, and with it every message on
                // it: keep the key as a stub that refuses them.
                if let Some(n) = self.nodes.get_mut(&k) {
                    n.root = None;
                    n.receiving = None;
                }
            } else {
                self.nodes.remove(&k);
            }
        }
    }

    // ------------------------------------------------------------ branch choice

    fn walk(&self) -> Option<RatchetPublic> {
        struct W {
            key: RatchetPublic,
            parent: Option<usize>,
            depth: u32,
            length: u32,
            height: u32,
            acked: bool,
            /// The subtree holds a node we can go on from (our open chain, or a peer
            /// key we hold the root of): a branch whose keys were all deleted (a heal
            /// cut it off) is never chosen over one that can still be used.
            live: bool,
            /// The subtree holds our open sending chain (the newest send, ours or a
            /// sibling's): of several roots, the one to go on from.
            sending: bool,
        }
        // One allocation, indices instead of maps: this runs on every structural change.
        let mut w: Vec<W> = self
            .nodes
            .iter()
            .map(|(k, n)| W {
                key: *k,
                parent: None,
                depth: n.depth,
                length: n.length,
                height: 0,
                acked: false,
                live: match n.side {
                    Side::Ours => n.sending.is_some(),
                    Side::Theirs => n.root.is_some(),
                },
                sending: n.side == Side::Ours && n.sending.is_some(),
            })
            .collect();
        for (i, n) in self.nodes.values().enumerate() {
            // Depth strictly increases from parent to child, so the links followed here
            // can never form a cycle, whatever keys a peer presents.
            w[i].parent = n
                .parent
                .and_then(|p| w.binary_search_by(|x| x.key.cmp(&p)).ok())
                .filter(|&pi| w[pi].depth < n.depth);
        }
        let mut order: Vec<usize> = (0..w.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(w[i].depth));
        for &i in &order {
            if let Some(p) = w[i].parent {
                let h = w[i].height + 1;
                let (live, sending) = (w[i].live, w[i].sending);
                w[p].acked = true;
                w[p].height = w[p].height.max(h);
                w[p].live |= live;
                w[p].sending |= sending;
            }
        }
        let score = |x: &W| {
            (
                x.live,
                x.acked,
                x.height,
                x.length,
                std::cmp::Reverse(x.key),
            )
        };
        let best = |parent: Option<usize>| {
            (0..w.len())
                .filter(|&i| w[i].parent == parent)
                .max_by(|&a, &b| score(&w[a]).cmp(&score(&w[b])))
        };
        // Several roots: a sibling's delta built on a peer key this replica has not
        // read yet is held without its parent. Start from the root whose subtree
        // reaches deepest — the newest step the identity took — never from an older
        // chain whose peer keys the peer may have deleted since.
        let reach = |x: &W| x.depth.saturating_add(x.height);
        // While a heal waits for the peer to build on its anchor, we go on from the
        // anchor's branch only: a peer key beside it may be one the revoked device can
        // build on too, and the peer, told the anchor is our floor, has cut it off. A
        // sibling's send held without the peer key it built on (read elsewhere, on the
        // anchor's branch by then) starts a tree of its own, and may be chosen too.
        let anchor = match self.heal {
            Heal::Anchored(anchor) => w.binary_search_by(|x| x.key.cmp(&anchor)).ok(),
            _ => None,
        };
        let root_of = |mut i: usize| {
            while let Some(p) = w[i].parent {
                i = p;
            }
            i
        };
        let anchor_root = anchor.map(root_of);
        let rank = |i: usize| (w[i].sending, w[i].live, reach(&w[i]), score(&w[i]));
        let mut cur = (0..w.len())
            .filter(|&i| match (anchor, anchor_root) {
                (Some(a), Some(r)) => i == a || (w[i].parent.is_none() && i != r),
                _ => w[i].parent.is_none(),
            })
            .max_by(|&a, &b| rank(a).cmp(&rank(b)))?;
        while let Some(next) = best(Some(cur)) {
            cur = next;
        }
        Some(w[cur].key)
    }

    // ------------------------------------------------------------- inspection

    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Whether we still hold the private key and root of our node `key`, i.e. whether a
    /// peer's new ratchet key built on it can be accepted.
    pub(crate) fn accepts_children_of(&self, key: &RatchetPublic) -> bool {
        self.nodes
            .get(key)
            .is_some_and(|n| n.side == Side::Ours && n.secret.is_some() && n.root.is_some())
    }

    pub(crate) fn skipped_count(&self) -> usize {
        self.skipped.len()
    }

    /// The ratchet key the next message would be sent on, if no step is needed.
    pub(crate) fn head(&self) -> Option<RatchetPublic> {
        self.head
    }
}

impl Node {
    fn ours(
        parent: Option<RatchetPublic>,
        depth: u32,
        secret: RatchetSecret,
        root: RootKey,
        sending: Option<ChainKey>,
        previous_length: u32,
    ) -> Self {
        Self {
            side: Side::Ours,
            parent,
            depth,
            secret: Some(secret),
            root: Some(root),
            sending,
            receiving: None,
            length: 0,
            previous_length,
        }
    }

    fn theirs(
        parent: Option<RatchetPublic>,
        depth: u32,
        root: Option<RootKey>,
        receiving: Option<RemoteChainKey>,
    ) -> Self {
        Self {
            side: Side::Theirs,
            parent,
            depth,
            secret: None,
            root,
            sending: None,
            receiving,
            length: 0,
            previous_length: 0,
        }
    }
}

/// A floor announced by the peer: the depth of `floor` if it is a node of `side`
/// deeper than `*mark`, which then moves to it; `None` (nothing moves) otherwise.
fn raise(
    nodes: &BTreeMap<RatchetPublic, Node>,
    floor: &RatchetPublic,
    side: Side,
    mark: &mut u32,
) -> Option<u32> {
    let depth = nodes.get(floor).filter(|n| n.side == side)?.depth;
    if depth <= *mark {
        return None;
    }
    *mark = depth;
    Some(depth)
}

/// Whether both nodes hold the same private key (compared in constant time).
fn same_secret(held: &Node, delta: &Node) -> bool {
    use subtle::ConstantTimeEq;
    match (&held.secret, &delta.secret) {
        (Some(a), Some(b)) => bool::from(a.to_secret_bytes().ct_eq(&*b.to_secret_bytes())),
        _ => false,
    }
}

/// Advances `chain` to `counter`, returning the chain after it, the keys skipped on the
/// way (at most [`MAX_SKIPPED_KEYS`], the newest), and the key at `counter`.
fn derive_to(
    mut chain: RemoteChainKey,
    counter: u32,
) -> Result<(RemoteChainKey, Skips, RemoteMessageKey), SessionError> {
    let jump = u64::from(counter) - u64::from(chain.index().min(counter));
    if jump > u64::from(MAX_FORWARD_JUMP) {
        return Err(SessionError::TooFarAhead {
            jump,
            max: MAX_FORWARD_JUMP,
        });
    }
    let mut skipped: VecDeque<(u32, RemoteMessageKey)> = VecDeque::new();
    while chain.index() < counter {
        let k = chain.next_message_key();
        skipped.push_back((k.index(), k));
        if skipped.len() > MAX_SKIPPED_KEYS {
            skipped.pop_front();
        }
    }
    let key = chain.next_message_key();
    Ok((chain, skipped.into(), key))
}
