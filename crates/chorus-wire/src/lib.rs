//! Chorus wire formats.
//!
//! Every message that crosses a trust boundary is defined in `proto/chorus.proto` and
//! compiled with prost (via protox: no `protoc`). This crate wraps each generated type in
//! a *parsed* type that can only exist once its input passed every check: size bounds
//! before parsing, exact key lengths, valid points, supported versions and — for signed
//! objects — signatures over the exact bytes received. Decoders return a typed
//! [`WireError`] and never panic.
//!
//! ```
//! use chorus_wire::{pad, unpad};
//! let padded = pad(b"hi").unwrap();
//! assert_eq!(padded.len(), 64);
//! assert_eq!(unpad(&padded).unwrap(), b"hi");
//! ```

mod app;
mod attachment;
mod checkpoint;
mod device_list;
mod error;
mod history;
mod initial;
mod invitation;
pub mod limits;
mod link;
mod log_event;
mod padding;
mod prekeys;
mod ratchet;
mod redacted;
mod roll;
mod roster;
mod strategy;

/// The generated protobuf types. Prefer the parsed wrappers exported at the crate root.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/chorus.wire.v1.rs"));
}

pub use app::{
    DirectoryEntry, Envelope, Hello, Payload, Timer, check_caption, check_display_name, check_text,
    is_invisible, normalize_display_name,
};
pub use attachment::{Attachment, check_file_name, parts_of};
pub use checkpoint::{
    Checkpoint, CheckpointContact, CheckpointHandshake, CheckpointMailbox, CheckpointOutbox,
    CheckpointPrekey, CheckpointRegister, CheckpointStream,
};
pub use device_list::{DEVICE_LIST_CONTEXT, DeviceList, ListedDevice, Mismatch, RemovedDevice};
pub use error::WireError;
pub use history::{HISTORY_CHUNK_TARGET, HistoryChunk, HistoryItem};
pub use initial::InitialMessage;
pub use invitation::{Invitation, MailboxId};
pub use link::{LINK_HELLO_CONTEXT, LinkHello, LinkMessage, LinkStep, ProvisioningBundle};
pub use log_event::{
    ChainLink, ContactDetails, EpochRotation, EventKind, FirstMessage, LogEvent, PrekeyKind,
    PrekeySecret, SealedKeys, SecretBytes, SentMessage,
};
pub use padding::{pad, unpad};
pub use prekeys::{IdentityKeys, OneTimePrekey, PqPrekey, PrekeyBundle, SignedPrekey, contexts};
pub use ratchet::{RatchetHeader, RatchetMessage};
pub use roll::{IDENTITY_ROLL_CONTEXT, IdentityRoll};
pub use roster::{ROSTER_CONTEXT, RosterBody, RosterEntry, SecurityLevel};
pub use strategy::Strategy;

/// The only wire version this build speaks.
pub const WIRE_VERSION: u32 = 1;

use prost::Message;

/// Refuses an input longer than `max` bytes.
pub(crate) fn check_len(what: &'static str, bytes: &[u8], max: usize) -> Result<(), WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            what,
            max,
            actual: bytes.len(),
        });
    }
    Ok(())
}

/// Bounds the input, then decodes a prost message.
pub(crate) fn decode_bounded<M: Message + Default>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<M, WireError> {
    check_len(what, bytes, max)?;
    M::decode(bytes).map_err(|e| WireError::Malformed {
        what,
        reason: e.to_string(),
    })
}

/// A fixed-length field (an id, a hash).
pub(crate) fn fixed<const N: usize>(
    field: &'static str,
    bytes: &[u8],
) -> Result<[u8; N], WireError> {
    <[u8; N]>::try_from(bytes).map_err(|_| WireError::InvalidText {
        field,
        reason: "wrong length",
    })
}

pub(crate) fn check_version(what: &'static str, version: u32) -> Result<(), WireError> {
    if version == WIRE_VERSION {
        Ok(())
    } else {
        Err(WireError::UnsupportedVersion { what, version })
    }
}
