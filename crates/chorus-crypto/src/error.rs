//! One error type for the primitive layer. Callers map these into their own,
//! protocol-level errors that say who was at fault.

/// A failure of a cryptographic check or a malformed key.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// A key had the wrong length.
    ///
    /// Raised if bytes offered as a key are not exactly the size the key type needs.
    #[error("invalid {what} length: expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// Which kind of key or value was being parsed.
        what: &'static str,
        /// The length that type requires.
        expected: usize,
        /// The length that was offered.
        actual: usize,
    },
    /// A public key was not a valid point.
    ///
    /// Raised if Ed25519 public key bytes do not decode, or an X25519 exchange with a
    /// low-order point produced the all-zero shared secret.
    #[error("invalid {0} public key")]
    InvalidPublicKey(&'static str),
    /// A signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// An AEAD tag or MAC did not verify: the ciphertext, key, nonce or associated data differ.
    #[error("authentication failed (wrong key, tampered ciphertext or associated data)")]
    AuthenticationFailed,
    /// A key derivation was refused its parameters or inputs.
    ///
    /// Raised if Argon2id rejects its cost parameters, the passphrase or the salt.
    #[error("key derivation failed: {0}")]
    KeyDerivation(&'static str),
    /// The ciphertext is shorter than the fixed overhead of its format.
    #[error("ciphertext too short: {actual} bytes, at least {minimum} needed")]
    CiphertextTooShort {
        /// Minimum length the format needs.
        minimum: usize,
        /// Length offered.
        actual: usize,
    },
}
