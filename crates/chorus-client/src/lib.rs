//! The Chorus client: drives the sans-I/O core with real I/O.
//!
//! A [`Device`] is one device home: the encrypted local [`Store`] (one SQLite file,
//! every secret sealed), the identity in it, and the home relay ([`relay`]: HTTP with
//! retries and backoff, WebSocket push). Everything the device changes goes through
//! the core and is committed to the store before anything it produced leaves the
//! device (see [`device`] for the persist-then-act rule and what a `kill -9` can and
//! cannot lose). The `chorus` binary is thin glue over this API.
//!
//! ```no_run
//! # async fn example() -> Result<(), chorus_client::ClientError> {
//! use chorus_client::{Device, Options, Unlock};
//! use std::path::Path;
//!
//! let alice = Device::init(Path::new("/tmp/alice"), Unlock::KeyFile,
//!     "http://127.0.0.1:7470", "alice", Options::default()).await?;
//! let bob = Device::init(Path::new("/tmp/bob"), Unlock::KeyFile,
//!     "http://127.0.0.1:7470", "bob", Options::default()).await?;
//! let code = alice.invite().await?;
//! let (contact, _) = bob.accept(&code, None).await?;
//! bob.send(&contact, "hello").await?;
//! for event in alice.sync().await? {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! A runnable version: `cargo run -p chorus-client --example two_devices`.

#[cfg(any(test, feature = "bench"))]
pub use device::bench;
pub mod code;
pub mod device;
#[cfg(test)]
mod dishonest_relay_tests;
mod event;
mod handle;
#[cfg(test)]
mod history_tests;
mod identity;
pub mod link;
pub mod log;
pub mod prekeys;
#[cfg(test)]
mod recovery_tests;
pub mod relay;
#[cfg(test)]
mod roll_tests;
mod store;
#[cfg(test)]
mod strategy_tests;
#[cfg(test)]
mod testing;

pub use device::files::{FileEntry, FileError};
pub use device::requests::{self, Request, RequestMessage, Requests};
pub use device::{
    Clock, ContactInfo, Delivery, Device, DeviceInfo, Event, FileInfo, Introduction, Message,
    Options, SendOutcome, Status, SystemClock, Verification,
};
pub use identity::Address;
pub use relay::{Backoff, RelayError, UrlPolicy};
pub use store::{
    KEY_FILE, LINK_PENDING_FILE, MAX_CONTACT_NAME_LEN, STORE_FILE, Store, StoreError, Unlock,
};

use std::path::PathBuf;

/// Why a client operation failed. Each variant says whose fault it is: the user's
/// input, the local store, the relay, or bytes from the network.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The home holds no identity yet.
    #[error("no Chorus identity in {0}; run `chorus init` first")]
    NotInitialized(PathBuf),
    /// `init` on a home that already has one.
    #[error("{0} already holds a Chorus identity")]
    AlreadyInitialized(PathBuf),
    /// The home holds a device whose link was interrupted.
    #[error(
        "{0} holds a device whose link did not finish; run `chorus link new` again to finish it (or remove the directory)"
    )]
    LinkUnfinished(PathBuf),
    /// Another device rolled the identity key while this one was about to.
    #[error(
        "another device rolled the identity key meanwhile; nothing more to do (see `chorus status`)"
    )]
    RolledMeanwhile,
    /// `primary-root`: only the primary device holds the root key that this needs.
    #[error("in primary-root mode only the primary device can {0}")]
    NotPrimary(&'static str),
    /// No contact by that name.
    #[error("unknown contact {0:?} (see `chorus contacts`)")]
    UnknownContact(String),
    /// Several contacts' names match the one given, ignoring case.
    #[error("{given:?} could mean any of {candidates:?}; give the name exactly")]
    AmbiguousContact {
        /// The name given.
        given: String,
        /// The aliases it matches.
        candidates: Vec<String>,
    },
    /// No device of this identity by that name or id.
    #[error("no device {0:?} in this identity (see `chorus devices`)")]
    UnknownDevice(String),
    /// Several devices match the name or id given.
    #[error(
        "{given:?} could mean any of the devices {candidates:?}; give its id (`chorus devices`)"
    )]
    AmbiguousDevice {
        /// The name or id given.
        given: String,
        /// The devices it matches (name and id).
        candidates: Vec<String>,
    },
    /// A device cannot revoke itself: another device of the identity must.
    #[error(
        "this is the device running the command; revoke it from another device of the identity"
    )]
    RevokeThisDevice,
    /// No pending message request with that id.
    #[error("no message request {0} (see `chorus requests`)")]
    UnknownRequest(i64),
    /// The alias is in use.
    #[error("a contact named {0:?} already exists; choose another with --name")]
    ContactNameTaken(String),
    /// Another contact already has the name a rename asks for (compared ignoring case,
    /// so that a name given later means one contact). Raised by
    /// [`Device::rename_contact`]; nothing was changed.
    #[error("another contact is already called {0:?}; choose another name")]
    NameInUse(String),
    /// The identity is already a contact.
    #[error("already a contact, as {contact:?}")]
    AlreadyContact {
        /// The existing alias.
        contact: String,
    },
    /// Someone else answered this invitation first: it takes one person only.
    #[error("this invitation was already used by someone else; ask {contact:?} for a new one")]
    InvitationSpent {
        /// The contact it would have been.
        contact: String,
    },
    /// This invitation was accepted before.
    #[error("this invitation was already accepted (contact {contact:?})")]
    AlreadyAccepted {
        /// The contact it created.
        contact: String,
    },
    /// Our own invitation or address.
    #[error("that is this identity's own invitation or address")]
    OwnIdentity,
    /// An invitation code that does not parse.
    #[error("invalid invitation code: {reason}")]
    BadCode {
        /// What is wrong.
        reason: &'static str,
    },
    /// An address that does not parse.
    #[error("invalid address: {reason}")]
    BadAddress {
        /// What is wrong.
        reason: &'static str,
    },
    /// The directory has nothing at that address.
    #[error("no identity is published at that address")]
    UnknownAddress,
    /// The directory answered with an identity whose fingerprint is not the address's.
    #[error("the relay answered with a different identity than the address names")]
    AddressMismatch,
    /// An empty message, or one of whitespace only.
    #[error("the message is empty (or only whitespace)")]
    EmptyMessage,

    /// A multi-device strategy that needs the root key on every device.
    #[error(
        "strategy {0} needs the root key on every device: run `chorus security set shared-root` first"
    )]
    StrategyNeedsSharedRoot(chorus_core::Strategy),
    /// `per-device`: a contact's device list that must not replace the one held.
    #[error("refusing the contact's device list: {0}")]
    DeviceList(String),
    /// An envelope refused for a protocol reason.
    #[error("{0}")]
    Rejected(&'static str),
    /// An envelope the core's receive decision refuses (`chorus_core::route`).
    #[error("{0}")]
    Refused(#[from] chorus_core::route::Refusal),
    /// Bytes that fail their format's checks (an invitation, an envelope, a name, a
    /// message over its size limit).
    #[error("{0}")]
    Wire(#[from] chorus_wire::WireError),
    /// The core refused (a forged or replayed message, an unknown prekey).
    #[error("{0}")]
    Session(#[from] chorus_core::SessionError),
    /// The relay failed or refused.
    #[error("{0}")]
    Relay(#[from] RelayError),
    /// A file could not be sent or saved.
    #[error("{0}")]
    File(#[from] device::files::FileError),
    /// The local store could not be opened or used.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A link code that does not parse.
    #[error("invalid link code: {reason}")]
    BadLinkCode {
        /// What is wrong.
        reason: &'static str,
    },
    /// The link channel is gone (expired after 10 minutes, or already used and closed).
    #[error("the link code has expired or was already used; run `chorus link new` again")]
    LinkExpired,
    /// The link channel already holds another device's answer.
    #[error("this link code was already used; run `chorus link new` again on the new device")]
    LinkCodeUsed,
    /// The other side of a link broke the protocol (or someone interfered).
    #[error("linking failed: {0}")]
    LinkProtocol(&'static str),
    /// A recovery code that does not parse (a typo, a missing group).
    #[error("invalid recovery code: {reason}")]
    BadRecoveryCode {
        /// What is wrong.
        reason: &'static str,
    },
    /// No identity at this relay has this recovery code.
    #[error("no identity at this relay has this recovery code")]
    UnknownRecoveryCode,
    /// The recovery slot, or the log it points to, is not what the code's identity
    /// wrote (someone interfered, or the slot is not ready yet).
    #[error("recovery failed: {0}")]
    RecoveryProtocol(&'static str),
    /// The provisioning bundle names another identity than the log it points to.
    #[error("linking failed: the bundle is for another identity than its log")]
    LinkWrongIdentity,
    /// The roster refused the new device.
    #[error("linking refused: {0}")]
    LinkRefused(String),
    /// The user did not confirm the short authentication string.
    #[error("linking cancelled: the codes were not confirmed")]
    LinkCancelled,
    /// The other device's user declined (the codes differed, or they said no).
    #[error(
        "linking cancelled: the other device declined (the codes differed, or its user said no); nothing was changed"
    )]
    LinkDeclined,
    /// A guarded append kept losing to siblings (each retry folds their events first).
    #[error("the identity's other devices kept changing the same state; try again")]
    Contended,
    /// A log record was refused.
    #[error("{0}")]
    Log(#[from] chorus_core::LogError),
    /// A rotation of the log's epoch key that this device cannot take its key from (a
    /// sibling sealed it wrongly): the log after it stays unread until a device of the
    /// identity rotates again.
    #[error("{0}; another device of this identity must rotate the log's key again")]
    EpochKey(#[from] chorus_core::EpochKeyError),
    /// A stored value is not what this version wrote.
    #[error("local store: {0} is corrupt")]
    Corrupt(String),
}

impl ClientError {
    /// Whether the same operation may succeed later without anything else changing: the
    /// local store failed, or the relay was unreachable, overloaded or failing. Every
    /// other error is a refusal that repeating would only repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(_) | Self::Corrupt(_) | Self::Contended => true,
            Self::Relay(e) => e.retryable(),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for ClientError {
    fn from(e: sqlx::Error) -> Self {
        ClientError::Store(StoreError::Database(e))
    }
}
