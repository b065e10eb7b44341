//! Invitation codes as text: `chorus:` followed by base64url (no padding) of the code's
//! bytes and a 4-byte SHA-256 checksum.
//!
//! `invite` prints the short form: a tag byte, the 16-byte [`InvitationSecret`] and the
//! inviter's relay URL — about 65 characters, a QR that fits an 80×24 terminal. The
//! invitation itself (prekey bundle, mailbox, name) lies sealed on that relay under a
//! locator and key derived from the secret ([`chorus_crypto::InvitationSecret`]):
//! `accept` fetches it, and it opens only under the code's secret, so the relay can
//! withhold it but not change it. The long form — the whole encoded [`Invitation`] —
//! is still accepted.
//!
//! The checksum catches truncation and typos with a precise message before any parsing;
//! it is not a security measure (anyone can recompute it). Authenticity comes from the
//! signatures inside the bundle and, against a swapped code, from comparing safety
//! numbers (`chorus verify`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chorus_crypto::{INVITATION_SECRET_LEN, InvitationSecret};
use chorus_wire::Invitation;
use chorus_wire::limits::{MAX_INVITATION_LEN, MAX_RELAY_URL_LEN};
use sha2::{Digest, Sha256};

use crate::ClientError;

/// What every code starts with.
pub const CODE_PREFIX: &str = "chorus:";
const CHECKSUM_LEN: usize = 4;
/// The first byte of a short code. An encoded `Invitation` never starts with it (it
/// would be protobuf field 0).
const SHORT_TAG: u8 = 0x01;

/// A code as given: where to fetch the invitation (what `invite` prints), or the whole
/// invitation (the long form).
pub enum Code {
    /// The relay holding the sealed invitation, and the secret that finds and opens it.
    Short {
        /// The inviter's relay.
        relay_url: String,
        /// The code's secret.
        secret: InvitationSecret,
    },
    /// The whole invitation.
    Full(Box<Invitation>),
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Short { relay_url, .. } => write!(f, "Code::Short({relay_url:?}, ..)"),
            Self::Full(i) => f.debug_tuple("Code::Full").field(i).finish(),
        }
    }
}

/// Longest code text accepted (checked before decoding).
pub const MAX_CODE_LEN: usize =
    CODE_PREFIX.len() + (MAX_INVITATION_LEN + CHECKSUM_LEN).div_ceil(3) * 4;

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let d = Sha256::digest(bytes);
    [d[0], d[1], d[2], d[3]]
}

/// The long text form of an invitation (the whole invitation).
pub fn encode(invitation: &Invitation) -> String {
    with_checksum(invitation.encode())
}

/// The short text form: the relay holding the sealed invitation, and the secret.
pub fn encode_short(relay_url: &str, secret: &InvitationSecret) -> String {
    let mut bytes = vec![SHORT_TAG];
    bytes.extend_from_slice(&secret.to_bytes()[..]);
    bytes.extend_from_slice(relay_url.as_bytes());
    with_checksum(bytes)
}

fn with_checksum(mut bytes: Vec<u8>) -> String {
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);
    format!("{CODE_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Parses a code: prefix, base64, checksum, then the short form's fields or the
/// invitation's own checks.
pub fn decode(code: &str) -> Result<Code, ClientError> {
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
    match invitation.split_first() {
        Some((&SHORT_TAG, rest)) => decode_short(rest),
        _ => Ok(Code::Full(Box::new(Invitation::decode(invitation)?))),
    }
}

fn decode_short(bytes: &[u8]) -> Result<Code, ClientError> {
    let bad = |reason: &'static str| ClientError::BadCode { reason };
    let (secret, url) = bytes
        .split_first_chunk::<INVITATION_SECRET_LEN>()
        .ok_or(bad("it is truncated"))?;
    let relay_url = std::str::from_utf8(url).map_err(|_| bad("its relay URL is not text"))?;
    if relay_url.len() > MAX_RELAY_URL_LEN
        || !(relay_url.starts_with("http://") || relay_url.starts_with("https://"))
    {
        return Err(bad("it names no relay URL (http:// or https://)"));
    }
    Ok(Code::Short {
        relay_url: relay_url.to_owned(),
        secret: InvitationSecret::from_bytes(secret),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_code_is_short_and_round_trips_and_a_bad_one_says_why() {
        let secret = InvitationSecret::from_bytes(&[7; INVITATION_SECRET_LEN]);
        let code = encode_short("https://relay.example.org", &secret);
        assert!(code.len() < 80, "{} characters: {code}", code.len());
        let Code::Short {
            relay_url,
            secret: back,
        } = decode(&code).unwrap()
        else {
            panic!("a short code decodes short");
        };
        assert_eq!(relay_url, "https://relay.example.org");
        assert_eq!(back.to_bytes(), secret.to_bytes());
        // Cut, changed, or naming no relay: refused with why.
        let cut = &code[..code.len() - 3];
        assert!(matches!(decode(cut), Err(ClientError::BadCode { .. })));
        let no_url = with_checksum([&[SHORT_TAG][..], &[1; INVITATION_SECRET_LEN]].concat());
        assert!(matches!(
            decode(&no_url),
            Err(ClientError::BadCode { reason }) if reason.contains("relay URL")
        ));
        let short_secret = with_checksum(vec![SHORT_TAG, 1, 2]);
        assert!(matches!(
            decode(&short_secret),
            Err(ClientError::BadCode {
                reason: "it is truncated"
            })
        ));
        let file_url = with_checksum(
            [
                &[SHORT_TAG][..],
                &[1; INVITATION_SECRET_LEN],
                b"file:///etc/passwd",
            ]
            .concat(),
        );
        assert!(decode(&file_url).is_err());
    }
}
