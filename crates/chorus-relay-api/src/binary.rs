//! The binary form of the relay's bulk answers: pages of log records and of
//! envelopes.
//!
//! JSON with hex-encoded bytes is the relay's readable default, but catching up a
//! long log is dominated by it: every byte of a record is hex-encoded by the relay,
//! scanned for escapes, and hex-decoded by the client (a quarter of the CPU of a
//! 40,000-event catch-up, docs/benchmarks.md). A client that sends
//! `Accept: ` [`MEDIA_TYPE`] gets the same value, from the same types, as
//! [`VERSION`] ‖ postcard: ids and byte strings as raw bytes, integers as varints.
//! One type definition serves both encodings ([`crate::HexBytes`] and the ids
//! serialize as hex only for a human-readable format), so the two cannot drift.
//!
//! The relay is untrusted: [`decode`] refuses an unknown version, a malformed body
//! and trailing bytes, never panics (fuzz target `relay_binary_page`), and leaves
//! every bound to the caller, exactly as for JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The media type a client asks for (`Accept`) and the relay labels the answer with
/// (`Content-Type`). The version is in the name and in the first byte.
pub const MEDIA_TYPE: &str = "application/vnd.chorus.page.v1+postcard";

/// The first byte of a binary answer.
pub const VERSION: u8 = 1;

/// Why a binary answer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BinaryError {
    /// The body was empty.
    #[error("empty binary answer")]
    Empty,
    /// A version this build does not read.
    #[error("binary answer version {0} (this build reads {VERSION})")]
    Version(u8),
    /// The body does not decode as the expected answer.
    #[error("malformed binary answer: {0}")]
    Malformed(String),
    /// Bytes after the answer.
    #[error("{0} bytes after the binary answer")]
    Trailing(usize),
}

/// Encodes an answer: [`VERSION`] ‖ postcard.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own answer types to a vector cannot fail (no maps with
    // non-string keys, no sequences of unknown length); an empty body would be
    // refused by the client as `Empty`, never misread.
    postcard::to_extend(value, vec![VERSION]).unwrap_or_default()
}

/// Decodes an answer [`encode`]d by the relay.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BinaryError> {
    let (&version, body) = bytes.split_first().ok_or(BinaryError::Empty)?;
    if version != VERSION {
        return Err(BinaryError::Version(version));
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| BinaryError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(BinaryError::Trailing(rest.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Guard, HexBytes, Id32, RecordOut, RecordsPage};

    fn page() -> RecordsPage {
        RecordsPage {
            records: vec![
                RecordOut {
                    seq: 7,
                    epoch: 1,
                    author: Id32([3; 32]),
                    nonce: HexBytes(vec![1; 24]),
                    ciphertext: HexBytes(vec![9; 300]),
                    guard: Some(Guard {
                        stream_tag: HexBytes(b"session/x".to_vec()),
                        expected_version: 4,
                    }),
                },
                RecordOut {
                    seq: 8,
                    epoch: 1,
                    author: Id32([4; 32]),
                    nonce: HexBytes(vec![2; 24]),
                    ciphertext: HexBytes(vec![]),
                    guard: None,
                },
            ],
            head_seq: 8,
            first_seq: 1,
            more: false,
        }
    }

    #[test]
    fn a_page_round_trips_and_equals_its_json_reading() {
        let page = page();
        let bytes = encode(&page);
        let back: RecordsPage = decode(&bytes).unwrap();
        assert_eq!(back.records, page.records);
        let json: RecordsPage =
            serde_json::from_slice(&serde_json::to_vec(&page).unwrap()).unwrap();
        assert_eq!(json.records, back.records);
        // Raw bytes, not hex: the ciphertext's 300 bytes take about 300 bytes.
        assert!(bytes.len() < 300 + 2 * (32 + 24) + 64, "{}", bytes.len());
    }

    #[test]
    fn bad_binary_answers_are_refused_by_name() {
        let bytes = encode(&page());
        assert_eq!(decode::<RecordsPage>(&[]).unwrap_err(), BinaryError::Empty);
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(
            decode::<RecordsPage>(&other).unwrap_err(),
            BinaryError::Version(2)
        );
        let mut long = bytes.clone();
        long.extend_from_slice(&[0, 0]);
        assert_eq!(
            decode::<RecordsPage>(&long).unwrap_err(),
            BinaryError::Trailing(2)
        );
        for cut in 1..bytes.len() {
            assert!(
                matches!(
                    decode::<RecordsPage>(&bytes[..cut]),
                    Err(BinaryError::Malformed(_) | BinaryError::Trailing(_))
                ),
                "a page cut at {cut} decoded"
            );
        }
        // An id must be 32 bytes.
        let mut short_id = bytes.clone();
        short_id[4] = 31;
        assert!(decode::<RecordsPage>(&short_id).is_err());
    }
}
