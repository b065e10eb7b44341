//! The Chorus protocol core, sans I/O.
//!
//! Everything here is a pure state machine: the caller passes in bytes received, random
//! number generators, and (later) the time; it gets back bytes to send, plaintexts and
//! state to persist. No sockets, clock, RNG or disk are touched inside, so the same code
//! runs under the real client, the tests, the fuzzers and the deterministic simulator.
//!
//! This crate holds the hybrid handshake ([`initiate`], [`respond`]) and the
//! [`Session`], whose Double Ratchet state is a *tree* of DH steps (see `tree.rs`) so that
//! several devices of one identity can share it and merge forks.
//!
//! ```
//! use chorus_core::{LocalIdentity, MemoryPrekeyStore, initiate, respond};
//! use chorus_wire::PrekeyBundle;
//! use rand::SeedableRng;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! let (alice, bob) = (LocalIdentity::generate(&mut rng), LocalIdentity::generate(&mut rng));
//!
//! // Bob publishes a bundle.
//! let mut bob_prekeys = MemoryPrekeyStore::default();
//! let bundle = PrekeyBundle {
//!     identity: bob.keys().clone(),
//!     signed_prekey: bob_prekeys.new_signed_prekey(&bob, &mut rng).unwrap(),
//!     one_time_prekey: Some(bob_prekeys.new_one_time_prekey(&mut rng)),
//!     pq_prekey: bob_prekeys.new_pq_prekey(&bob, true, &mut rng).unwrap(),
//! };
//! // Alice fetches it (decoding verifies every signature) and writes first.
//! let bundle = PrekeyBundle::decode(&bundle.encode()).unwrap();
//! let mut alice_session = initiate(&alice, &bundle, &mut rng).unwrap();
//! let first = alice_session.encrypt(b"hello Bob", &mut rng).unwrap();
//!
//! // Bob answers; the responder reads no randomness.
//! let mut answered = respond(&bob, &bob_prekeys, &first.bytes).unwrap();
//! bob_prekeys.consume(&answered.consumed);
//! assert_eq!(&answered.plaintext[..], b"hello Bob");
//! let reply = answered.session.encrypt(b"hi Alice", &mut rng).unwrap();
//! assert_eq!(&alice_session.decrypt(&reply).unwrap()[..], b"hi Alice");
//! ```

mod append;
mod chain;
mod consts;
mod epoch;
mod error;
mod fold;
pub mod handshakes;
mod lease;
mod lww;
#[cfg(feature = "olm-compat")]
pub mod olm_compat;
pub mod per_device;
mod pqxdh;
mod record;
mod role;
pub mod roll;
mod roster;
pub mod route;
mod send;
mod session;
mod tree;
mod wiped;

pub use append::{Appendable, Pending};
pub use chain::{StreamHead, chain_next, check_head, check_stream, record_hash};
pub use chorus_wire::Strategy;
pub use consts::{
    HONOR_FLOOR_LAG, MAX_FIRST_MESSAGE_COUNTER, MAX_FORWARD_JUMP, MAX_SKIPPED_KEYS, MAX_TREE_NODES,
    MAX_TREE_STUBS,
};
pub use epoch::{EpochKeyError, open_epoch_key};
pub use error::SessionError;
pub use fold::{
    Constellation, Contact, EPOCH_LIFETIME_MS, Effect, Folded, HistoryEntry, Outcome,
    PREKEY_STREAM, PROFILE_REGISTER, Parts, RELAYS_REGISTER, ROSTER_STREAM, Record,
    STRATEGY_REGISTER, Sessions, blocked_register, contact_name_register, device_name_register,
    relinked_register, session_stream, timer_register, verified_register,
};
pub use lease::{LEASE_MAX_SKEW_MS, LEASE_MS, LEASE_RENEW_MS, LEASE_STREAM, Lease};
pub use lww::{LamportClock, Lww, Stamp};
pub use pqxdh::{
    ConsumedPrekeys, LocalIdentity, MemoryPrekeyStore, PrekeyPrivate, PrekeyStore, Responded,
    initiate, respond,
};
pub use record::{LogError, RecordContext, SealedRecord, open_event, seal_event};
pub use role::Role;
pub use roster::{
    MAX_DEVICES, RolledSecrets, Roster, RosterDevice, RosterError, RosterSigner,
    open_shared_identity, open_shared_root,
};
pub use send::{
    FirstContact, Guarded, Outgoing, Proposal, Recipient, propose_contact, seal_send, sent_event,
};
pub use session::{EncryptedMessage, MessageKind, SNAPSHOT_VERSION, SendDelta, Session};
pub use wiped::encode_wiped;
