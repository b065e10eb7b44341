//! Chorus key types and cryptographic building blocks.
//!
//! This is the only crate in the workspace that touches raw secret key bytes. Every
//! other crate handles keys through the role types defined here, so the compiler stops
//! a root key from being used as a ratchet key, a sending chain from decrypting, or a
//! prekey from being logged.
//!
//! Rules that hold for every secret type in this crate:
//! - the key material lives in a `Box` and is zeroized when dropped;
//! - there is no `Debug`, `Display` or `Clone` for a raw secret (types that *hold*
//!   secrets print only their public parts, and a snapshot test proves it);
//! - randomness is always passed in (`&mut impl CryptoRng`), never read from the OS here;
//! - serialization exists only so the encrypted local store can persist state.
//!
//! The primitives themselves come from RustCrypto and dalek; nothing here implements a
//! cipher, hash or curve by hand.

mod aead;
mod display;
mod ed25519;
mod entropy;
mod epoch_key;
mod error;
mod file_key;
mod fingerprint;
mod handshake;
mod history_key;
mod invitation_secret;
mod kdf_label;
mod kem;
mod link_key;
#[doc(hidden)]
pub mod no_debug;
#[cfg(feature = "olm")]
pub mod olm;
mod ratchet;
mod recovery;
mod sas;
mod sealed_box;
mod serde_fixed;
mod store_key;
mod x25519;

pub use aead::{Aes256GcmCipher, MessageCipher, NONCE_LEN, Nonce, TAG_LEN};
pub use ed25519::{
    DevicePublicKey, DeviceSigningKey, RootPublicKey, RootSigningKey, SIGNATURE_LEN, Signature,
    domain_message,
};
pub use entropy::{Entropy, EntropyRng, SeededEntropy, SystemEntropy};
pub use epoch_key::EpochKey;
pub use error::CryptoError;
pub use file_key::{FileDigest, FileKey};
pub use fingerprint::{Fingerprint, SafetyNumber};
pub use handshake::HandshakeSecret;
pub use history_key::HistoryKey;
pub use invitation_secret::{INVITATION_SECRET_LEN, InvitationSecret};
pub use kdf_label::KdfLabel;
pub use kem::{
    KEM_CIPHERTEXT_LEN, KEM_PUBLIC_KEY_LEN, KemCiphertext, KemSharedSecret, PqPrekeyPublic,
    PqPrekeySecret,
};
pub use link_key::LinkKey;
pub use ratchet::{ChainKey, MessageKey, RemoteChainKey, RemoteMessageKey, RootKey};
pub use recovery::{RECOVERY_CODE_LEN, RecoveryCode};
pub use sas::Sas;
pub use sealed_box::{SEALED_BOX_OVERHEAD, open_sealed, seal};
pub use store_key::{
    ARGON2_ITERATIONS, ARGON2_MEMORY_KIB, PASSPHRASE_SALT_LEN, STORE_SEAL_OVERHEAD, StoreKey,
};
pub use x25519::{
    DeviceDhPublic, DeviceDhSecret, DhOutput, DhPublic, EphemeralPublic, EphemeralSecret,
    IdentityDhPublic, IdentityDhSecret, OneTimePrekeyPublic, OneTimePrekeySecret, RatchetPublic,
    RatchetSecret, SignedPrekeyPublic, SignedPrekeySecret,
};

/// Re-exported so callers name the same RNG traits this crate requires.
pub use rand_core::{CryptoRng, Rng};

/// Length of every X25519 and Ed25519 public key, and of every symmetric key here.
pub const KEY_LEN: usize = 32;
