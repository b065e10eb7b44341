//! What a history row or a pending send seals: the message's text, and the file sent
//! with it.
//!
//! A message without a file seals its UTF-8 text, as every store has always done. A
//! message with a file seals `0xFF`, the attachment's length (four bytes, big endian),
//! the attachment (`chorus_wire::Attachment::encode`, its key included: the sealed row
//! is the only place this device keeps it) and the text. No UTF-8 text starts with
//! `0xFF`, so both read back without a migration.

use chorus_wire::Attachment;
use zeroize::Zeroizing;

use crate::ClientError;

/// Marks a body with a file.
const WITH_FILE: u8 = 0xFF;

/// The sealed form of `text` and `file`.
pub(crate) fn encode(text: &str, file: Option<&Attachment>) -> Zeroizing<Vec<u8>> {
    let Some(file) = file else {
        return Zeroizing::new(text.as_bytes().to_vec());
    };
    let a = file.encode();
    let mut out = Zeroizing::new(Vec::with_capacity(5 + a.len() + text.len()));
    out.push(WITH_FILE);
    out.extend_from_slice(&u32::try_from(a.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&a);
    out.extend_from_slice(text.as_bytes());
    out
}

/// Reads what [`encode`] made.
pub(crate) fn decode(bytes: &[u8]) -> Result<(String, Option<Attachment>), ClientError> {
    let corrupt = || ClientError::Corrupt("a message body".into());
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| corrupt());
    match bytes.split_first() {
        Some((&WITH_FILE, rest)) => {
            let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
            let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| corrupt())?;
            if rest.len() < len {
                return Err(corrupt());
            }
            let (a, t) = rest.split_at(len);
            let file = Attachment::decode(a).map_err(|_| corrupt())?;
            Ok((text(t)?, Some(file)))
        }
        _ => Ok((text(bytes)?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_reads_back_with_or_without_a_file_and_a_cut_one_is_corrupt() {
        assert_eq!(decode(&encode("hi", None)).unwrap(), ("hi".into(), None));
        assert_eq!(decode(&encode("", None)).unwrap(), (String::new(), None));
        let file = Attachment {
            relay_url: "http://127.0.0.1:1".into(),
            locator: [1; 32],
            key: Zeroizing::new([2; 32]),
            digest: [3; 32],
            name: "a.txt".into(),
            size: 5,
            media_type: "text/plain".into(),
            expires_ms: 7,
        };
        let body = encode("caption", Some(&file));
        assert_eq!(
            decode(&body).unwrap(),
            ("caption".into(), Some(file.clone()))
        );
        assert_eq!(decode(&body[..body.len() - 3]).unwrap().0, "capt");
        assert!(decode(&body[..20]).is_err());
        assert!(decode(&[WITH_FILE, 0, 0]).is_err());
        assert!(decode(&[0xC3]).is_err(), "not UTF-8");
    }
}
