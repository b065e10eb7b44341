//! Plaintext padding to fixed buckets (ISO/IEC 7816-4: a `0x80` marker, then zeros).
//!
//! Contacts and relays see only which bucket a message falls into, never its length.

use crate::WireError;
use crate::limits::{MAX_PLAINTEXT_LEN, PADDING_BUCKETS};

/// Pads `plaintext` to the smallest bucket that holds it plus the marker byte.
pub fn pad(plaintext: &[u8]) -> Result<Vec<u8>, WireError> {
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(WireError::TooLarge {
            what: "plaintext",
            max: MAX_PLAINTEXT_LEN,
            actual: plaintext.len(),
        });
    }
    let need = plaintext.len() + 1;
    let bucket = PADDING_BUCKETS
        .iter()
        .copied()
        .find(|b| *b >= need)
        .unwrap_or(need);
    let mut out = Vec::with_capacity(bucket + chorus_crypto::TAG_LEN);
    out.extend_from_slice(plaintext);
    out.push(0x80);
    out.resize(bucket, 0);
    Ok(out)
}

/// Removes the padding added by [`pad`], checking the buffer is a bucket size.
pub fn unpad(padded: &[u8]) -> Result<&[u8], WireError> {
    if !PADDING_BUCKETS.contains(&padded.len()) {
        return Err(WireError::BadPadding);
    }
    let end = padded
        .iter()
        .rposition(|b| *b != 0)
        .ok_or(WireError::BadPadding)?;
    if padded[end] != 0x80 {
        return Err(WireError::BadPadding);
    }
    Ok(&padded[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_map_to_buckets_at_every_boundary() {
        assert_eq!(pad(b"").unwrap().len(), 64);
        assert_eq!(pad(&[1; 63]).unwrap().len(), 64);
        assert_eq!(pad(&[1; 64]).unwrap().len(), 128);
        assert_eq!(pad(&[1; MAX_PLAINTEXT_LEN]).unwrap().len(), 65536);
    }

    #[test]
    fn a_plaintext_one_byte_over_the_limit_is_rejected() {
        assert_eq!(
            pad(&vec![0; MAX_PLAINTEXT_LEN + 1]),
            Err(WireError::TooLarge {
                what: "plaintext",
                max: MAX_PLAINTEXT_LEN,
                actual: MAX_PLAINTEXT_LEN + 1
            })
        );
    }

    #[test]
    fn padding_round_trips_even_with_trailing_zero_bytes_in_the_plaintext() {
        let msg = [0u8, 1, 0, 0];
        assert_eq!(unpad(&pad(&msg).unwrap()).unwrap(), msg);
    }

    #[test]
    fn malformed_padding_is_rejected() {
        assert_eq!(unpad(&[0u8; 64]), Err(WireError::BadPadding));
        assert_eq!(unpad(&[0x80u8; 63]), Err(WireError::BadPadding));
        let mut bad = vec![0u8; 64];
        bad[10] = 0x7f;
        assert_eq!(unpad(&bad), Err(WireError::BadPadding));
    }
}
