//! Decoding errors. Every variant names the message or field at fault; all of them mean
//! the *sender* (or the network) produced bad bytes, never a local bug.

use chorus_crypto::CryptoError;

/// Why bytes from the network were rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The input exceeds the named size limit; it was not parsed.
    #[error("{what} too large: {actual} bytes, limit {max}")]
    TooLarge {
        /// The message or field.
        what: &'static str,
        /// The limit.
        max: usize,
        /// The size offered.
        actual: usize,
    },
    /// The bytes are not a valid protobuf encoding of the message.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// The message.
        what: &'static str,
        /// prost's description.
        reason: String,
    },
    /// A required field is absent or empty.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A field holds a key or value of the wrong size or an invalid point.
    #[error("invalid field {field}: {source}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// The underlying check that failed.
        source: CryptoError,
    },
    /// A signature over the named object does not verify under the identity's root key.
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    /// The sender speaks a version this build does not.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// The message.
        what: &'static str,
        /// The version offered.
        version: u32,
    },
    /// Padded plaintext does not end in a valid padding marker.
    #[error("invalid padding")]
    BadPadding,
    /// A text field is not valid (UTF-8, scheme, or length).
    #[error("invalid {field}: {reason}")]
    InvalidText {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

pub(crate) fn field<T>(field: &'static str, r: Result<T, CryptoError>) -> Result<T, WireError> {
    r.map_err(|source| WireError::InvalidField { field, source })
}
