//! Errors of the session layer, grouped by who is at fault.
//!
//! A peer (or the network) fault never changes session state: the message is rejected,
//! the session stays usable, and the caller may keep the message to retry after catching
//! up (DESIGN principle 7). A caller fault is a misuse of the API. A state fault concerns
//! a persisted snapshot.

use chorus_crypto::CryptoError;
use chorus_wire::WireError;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SessionError {
    // ---- the peer or the network ----
    /// The message could not be decoded.
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
    /// Raised if the message's key was already used (a replay or duplicate) or evicted.
    #[error("duplicate or expired message (chain counter {counter})")]
    DuplicateOrExpired {
        /// The counter the message claimed.
        counter: u32,
    },
    /// Raised if a message skips more keys than [`MAX_FORWARD_JUMP`](crate::MAX_FORWARD_JUMP).
    #[error("message too far ahead: jump of {jump}, limit {max}")]
    TooFarAhead {
        /// Keys that would have to be derived.
        jump: u64,
        /// The limit.
        max: u32,
    },
    /// Raised if a first message (one that would create a session) claims a counter
    /// above [`MAX_FIRST_MESSAGE_COUNTER`](crate::MAX_FIRST_MESSAGE_COUNTER): it would
    /// make us keep that many skipped keys for a stranger.
    #[error("first message counter {counter} is above the limit {max}")]
    FirstMessageTooFarAhead {
        /// The counter the message claimed.
        counter: u32,
        /// The limit.
        max: u32,
    },
    /// Raised if the message builds on a ratchet key of ours we do not know (it may come
    /// from a sibling device we have not caught up with: keep it and retry later), or one
    /// we have already deleted.
    #[error("message builds on an unknown or deleted ratchet key")]
    UnknownParent,
    /// The AEAD (or MAC) did not verify: tampered, or a key mismatch.
    #[error("message authentication failed")]
    AuthenticationFailed,
    /// A key in the message is invalid (e.g. a low-order X25519 point).
    #[error("invalid key in message: {0}")]
    InvalidKey(CryptoError),
    /// Raised if an initial message names a prekey we do not hold (consumed or never issued).
    #[error("unknown {kind} prekey {id}")]
    UnknownPrekey {
        /// Which kind of prekey.
        kind: &'static str,
        /// Its id.
        id: u32,
    },
    /// Raised if an initial message belongs to another session than the one given.
    #[error("initial message does not belong to this session")]
    WrongSession,

    // ---- the caller ----
    /// Raised if the responder tries to send before it has received anything.
    #[error("session cannot send yet: nothing received from the initiator")]
    NotReady,
    /// Raised if a plaintext exceeds the wire limit.
    #[error("plaintext too large: {actual} bytes, limit {max}")]
    PlaintextTooLarge {
        /// The limit.
        max: usize,
        /// The size offered.
        actual: usize,
    },

    /// Raised if signing needs the identity's root key and this device does not hold
    /// it (`primary-root`: only the primary device does).
    #[error("this device does not hold the identity's root key")]
    NoRootKey,

    // ---- a persisted snapshot ----
    /// Raised if a snapshot is older than the newest state the caller knows of: using it
    /// would reuse message keys. See [`Session::restore_stale`](crate::Session::restore_stale).
    #[error("stale snapshot: generation {snapshot}, but generation {known} was already persisted")]
    StaleSnapshot {
        /// The snapshot's generation.
        snapshot: u64,
        /// The newest generation the caller knows.
        known: u64,
    },
    /// Raised if a snapshot does not decode.
    #[error("corrupt snapshot: {0}")]
    CorruptSnapshot(String),
    /// Raised if a snapshot has a format version this build does not read.
    #[error("unsupported snapshot version {0}")]
    UnsupportedSnapshotVersion(u8),
}
