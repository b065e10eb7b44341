//! Invitation codes as text: `chorus:` followed by base64url (no padding) of the encoded
//! [`Invitation`] and a 4-byte SHA-256 checksum.
//!
//! The checksum catches truncation and typos with a precise message before any parsing;
//! it is not a security measure (anyone can recompute it). Authenticity comes from the
//! signatures inside the bundle and, against a swapped code, from comparing safety
//! numbers (`chorus verify`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chorus_wire::Invitation;
use chorus_wire::limits::MAX_INVITATION_LEN;
use sha2::{Digest, Sha256};

use crate::ClientError;

/// What every code starts with.
pub const CODE_PREFIX: &str = "chorus:";
const CHECKSUM_LEN: usize = 4;

/// Longest code text accepted (checked before decoding).
pub const MAX_CODE_LEN: usize =
    CODE_PREFIX.len() + (MAX_INVITATION_LEN + CHECKSUM_LEN).div_ceil(3) * 4;

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let d = Sha256::digest(bytes);
    [d[0], d[1], d[2], d[3]]
}

/// The text form of an invitation.
pub fn encode(invitation: &Invitation) -> String {
    let mut bytes = invitation.encode();
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);
    format!("{CODE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Parses a code: prefix, base64, checksum, then the invitation's own checks.
pub fn decode(code: &str) -> Result<Invitation, ClientError> {
    let bad = |reason: &'static str| ClientError::BadCode { reason };
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() > MAX_CODE_LEN {
        return Err(bad("it is longer than any invitation code"));
    }
    let body = code
        .strip_prefix(CODE_PREFIX)
        .ok_or(bad("it does not start with \"chorus:\""))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| bad("it is not valid base64url (truncated or mistyped?)"))?;
    if bytes.len() <= CHECKSUM_LEN {
        return Err(bad("it is truncated"));
    }
    let (invitation, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if checksum(invitation) != sum {
        return Err(bad("its checksum does not match (truncated or altered)"));
    }
    Invitation::decode(invitation).map_err(ClientError::Wire)
}
