//! Every bound of the ratchet engine, named. Each has a test that hits it.
//!
//! The skipped-key and forward-jump limits are libsignal's (`MAX_MESSAGE_KEYS`,
//! `MAX_FORWARD_JUMPS`): they bound what a peer can make us store and compute, while
//! tolerating realistic loss and reordering.

/// Skipped message keys kept per session; beyond this the oldest is evicted.
pub const MAX_SKIPPED_KEYS: usize = 2_000;

/// Largest gap accepted between a chain's next expected counter and a message's counter.
/// Deriving a key costs two HMACs, so this bounds the work one message can cause.
pub const MAX_FORWARD_JUMP: u32 = 25_000;

/// Ratchet tree nodes kept per session (the "window"). Older nodes (smallest depth) are
/// pruned first; a message on a pruned node can only use keys already skipped. Our own
/// nodes the peer has not built on yet are not counted (a device catching up applies
/// its siblings' sends before the answers to them; see `Tree::prune_window`).
pub const MAX_TREE_NODES: usize = 32;

/// Peer nodes pruned from the window while our key they were derived from is still
/// held, kept as key-only stubs so that none of their messages is taken again (a wide
/// fork: leaderless siblings each stepping from one of our keys). Past this, the
/// shallowest stub goes (and a message replayed on it would be read again).
pub const MAX_TREE_STUBS: usize = 256;

/// How many of our own generations behind the newest one the peer has acknowledged we
/// keep private keys for, so a peer replica that lags one step can still reply.
/// Everything older is deleted (forward secrecy) and announced via `honor_floor`.
pub const HONOR_FLOOR_LAG: u32 = 1;

/// Largest ratchet counter a *first* message (the one that creates a session) may carry.
/// An honest initiator's first message that arrives first has counter 0 (mailboxes keep
/// order); a few more allow for messages lost before the relay. Without this bound a
/// stranger makes the responder derive and keep up to [`MAX_SKIPPED_KEYS`] keys for a
/// session it never asked for, and the snapshot grows past what the log can carry.
pub const MAX_FIRST_MESSAGE_COUNTER: u32 = 8;
