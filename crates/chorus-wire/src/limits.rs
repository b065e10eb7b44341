//! Named size limits for everything this crate decodes. Each has a test at the bound.
//!
//! The limits are generous for text messaging and tight enough that a hostile peer
//! cannot make a decoder allocate much: prost allocates at most the input size, and the
//! input size is checked first.

/// Plaintext padding buckets. A message's padded size reveals only its bucket.
pub const PADDING_BUCKETS: [usize; 11] = [
    64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
];
/// Largest plaintext a ratchet message can carry (one byte of the top bucket is the padding marker).
pub const MAX_PLAINTEXT_LEN: usize = 65536 - 1;
/// Largest encoded ratchet header (keys, counters, nonce and framing need ~130 bytes).
pub const MAX_HEADER_LEN: usize = 256;
/// Largest encoded ratchet message: top bucket + AEAD tag + header + framing.
pub const MAX_RATCHET_MESSAGE_LEN: usize = 65536 + 16 + MAX_HEADER_LEN + 32;
/// Largest encoded initial (handshake) message: a ratchet message plus handshake keys and
/// the ML-KEM-768 ciphertext.
pub const MAX_INITIAL_MESSAGE_LEN: usize = MAX_RATCHET_MESSAGE_LEN + 2048;
/// Largest encoded prekey bundle (the ML-KEM-768 key is 1,184 bytes).
pub const MAX_BUNDLE_LEN: usize = 4096;
/// Largest encoded invitation.
pub const MAX_INVITATION_LEN: usize = MAX_BUNDLE_LEN + 1024;
/// Longest relay URL in an invitation.
pub const MAX_RELAY_URL_LEN: usize = 512;
