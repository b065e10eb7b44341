//! Exit codes: one per kind of fault, so scripts can tell "fix your input" from
//! "try again later". Documented in the README.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | internal error or corrupt local store |
//! | 2 | usage: bad flags or arguments (clap), unreadable input, a file that cannot be read or written |
//! | 3 | not found: no identity in the home, unknown contact, message request, address or file; a file that expired |
//! | 4 | relay: unreachable or refused (a message is kept in the outbox), or a file it gave that does not check out |
//! | 5 | wrong passphrase or key file, or the other unlock method |
//! | 6 | invalid input: bad invitation code, address or relay URL (or one a contact gave that this device will not contact), a link code given to `accept`, oversized, empty or whitespace-only message, stdin that is not UTF-8, bad or ambiguous name, a file over the size limit |
//! | 7 | conflict: already initialised, invitation already accepted, contact exists, link code expired or used, link not confirmed, a removal not confirmed, a file that changed while sent or a destination that exists; `relay serve`: the address is in use |
//! | 8 | `chorus demo`: a check failed |
//! | 9 | this device was removed from its identity (revoked by another device): link it again in a new home |

use chorus_client::{ClientError, StoreError};

pub const INTERNAL: u8 = 1;
pub const USAGE: u8 = 2;
pub const NOT_FOUND: u8 = 3;
pub const RELAY: u8 = 4;
pub const LOCKED: u8 = 5;
pub const INVALID: u8 = 6;
pub const CONFLICT: u8 = 7;
pub const DEMO_FAILED: u8 = 8;
pub const REMOVED: u8 = 9;

/// A failed command: its exit code and the one line printed on stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        use ClientError as E;
        let code = match &e {
            E::NotInitialized(_)
            | E::UnknownContact(_)
            | E::UnknownRequest(_)
            | E::UnknownDevice(_)
            | E::UnknownAddress
            | E::UnknownRecoveryCode => NOT_FOUND,
            E::Relay(
                chorus_client::RelayError::BadUrl(_)
                | chorus_client::RelayError::ForbiddenUrl { .. },
            ) => INVALID,
            E::Relay(chorus_client::RelayError::NotRegistered { .. }) => REMOVED,
            E::File(f) => {
                use chorus_client::FileError as F;
                match f {
                    F::Unreadable { .. } | F::Unwritable { .. } => USAGE,
                    F::TooLarge { .. } | F::BadName { .. } | F::Ambiguous(_) => INVALID,
                    F::Unknown(_) | F::Expired { .. } | F::Missing(_) => NOT_FOUND,
                    F::Tampered(_) => RELAY,
                    F::Changed(_) | F::Exists(_) => CONFLICT,
                }
            }
            E::Relay(_) => RELAY,
            E::Store(StoreError::WrongKey | StoreError::WrongUnlockMethod { .. })
            | E::Store(StoreError::MissingKeyFile(_) | StoreError::InsecureKeyFile { .. }) => {
                LOCKED
            }
            E::Store(StoreError::EmptyPassphrase)
            | E::BadCode { .. }
            | E::BadAddress { .. }
            | E::AddressMismatch
            | E::EmptyMessage
            | E::Wire(_)
            | E::Log(_)
            | E::EpochKey(_)
            | E::BadLinkCode { .. }
            | E::BadRecoveryCode { .. }
            | E::RecoveryProtocol(_)
            | E::LinkProtocol(_)
            | E::LinkWrongIdentity
            | E::AmbiguousContact { .. }
            | E::AmbiguousDevice { .. }
            | E::Rejected(_)
            | E::StrategyNeedsSharedRoot(_)
            | E::DeviceList(_)
            | E::Refused(_) => INVALID,
            E::LinkExpired
            | E::LinkCodeUsed
            | E::LinkRefused(_)
            | E::LinkCancelled
            | E::LinkDeclined => CONFLICT,
            E::AlreadyInitialized(_)
            | E::LinkUnfinished(_)
            | E::NotPrimary(_)
            | E::RevokeThisDevice
            | E::AlreadyAccepted { .. }
            | E::InvitationSpent { .. }
            | E::AlreadyContact { .. }
            | E::ContactNameTaken(_)
            | E::NameInUse(_)
            | E::OwnIdentity
            | E::RolledMeanwhile
            | E::Contended => CONFLICT,
            E::Session(_) | E::Store(_) | E::Corrupt(_) => INTERNAL,
        };
        Self::new(code, e.to_string())
    }
}
