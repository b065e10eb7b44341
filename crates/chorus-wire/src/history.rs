//! History archives (issue 13 item 6): the conversation history a device hands to a
//! device being linked, in chunks.
//!
//! The approving device reads its history in order, packs it into chunks of about
//! [`HISTORY_CHUNK_TARGET`] bytes, seals each under a fresh archive key and uploads it as
//! a blob; the provisioning bundle carries the key and the blob ids (at most
//! [`MAX_HISTORY_CHUNKS`]). The new device imports the chunks one by one (each in one
//! transaction, so an interrupted link resumes where it stopped). A chunk comes from a
//! sibling, which can be buggy: it is parsed as untrusted, bounded before parsing, every
//! fixed-size field and every text checked. Message texts are wiped with the encoding.

use prost::Message;
use zeroize::Zeroizing;

use crate::limits::{MAX_HISTORY_CHUNK_LEN, MAX_HISTORY_ITEMS};
use crate::{
    WIRE_VERSION, WireError, check_display_name, check_len, check_text, check_version, fixed, proto,
};

/// What the exporter aims for per chunk (encoded): large enough that 100,000 messages
/// are a handful of blobs, small enough that a resumed import redoes little.
pub const HISTORY_CHUNK_TARGET: usize = 1024 * 1024;

/// One history entry, as every device stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryItem {
    /// The contact's alias.
    pub contact: String,
    /// Sent by the identity.
    pub outgoing: bool,
    /// The envelope id (one entry per envelope, on every device).
    pub envelope_id: [u8; 16],
    /// The sender's clock.
    pub sent_ms: i64,
    /// When the exporting device stored it.
    pub stored_ms: i64,
    /// The position that orders it after `sent_ms` and direction (mailbox or log seq).
    pub position: i64,
    /// The text.
    pub text: String,
    /// The file sent with it.
    pub file: Option<crate::Attachment>,
}

/// One chunk of a history archive.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HistoryChunk {
    /// The entries, in the exporter's order.
    pub items: Vec<HistoryItem>,
}

impl HistoryItem {
    /// The encoded size this item adds to a chunk (for the exporter's cut).
    pub fn encoded_len(&self) -> usize {
        to_proto(self).encoded_len() + 4
    }
}

fn to_proto(i: &HistoryItem) -> proto::HistoryItem {
    proto::HistoryItem {
        contact: i.contact.clone(),
        outgoing: i.outgoing,
        envelope_id: i.envelope_id.to_vec(),
        sent_ms: i.sent_ms,
        stored_ms: i.stored_ms,
        position: i.position,
        text: i.text.clone(),
        file: i.file.as_ref().map(crate::Attachment::to_proto),
    }
}

impl HistoryChunk {
    /// The encoding (secret: wiped on drop).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let p = proto::HistoryChunk {
            version: WIRE_VERSION,
            items: self.items.iter().map(to_proto).collect(),
        };
        let mut out = Zeroizing::new(Vec::with_capacity(p.encoded_len()));
        let _ = p.encode(&mut *out);
        out
    }

    /// Parses a chunk: size first, then version, then every entry.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        check_len("history chunk", bytes, MAX_HISTORY_CHUNK_LEN)?;
        let p = proto::HistoryChunk::decode(bytes).map_err(|e| WireError::Malformed {
            what: "history chunk",
            reason: e.to_string(),
        })?;
        check_version("history chunk", p.version)?;
        if p.items.len() > MAX_HISTORY_ITEMS {
            return Err(WireError::InvalidText {
                field: "history_chunk.items",
                reason: "too many entries",
            });
        }
        let items = p
            .items
            .into_iter()
            .map(|i| {
                check_display_name("history_item.contact", &i.contact)?;
                check_text(&i.text)?;
                Ok(HistoryItem {
                    envelope_id: fixed("history_item.envelope_id", &i.envelope_id)?,
                    contact: i.contact,
                    outgoing: i.outgoing,
                    sent_ms: i.sent_ms,
                    stored_ms: i.stored_ms,
                    position: i.position,
                    file: i
                        .file
                        .as_ref()
                        .map(crate::Attachment::from_proto)
                        .transpose()?,
                    text: i.text,
                })
            })
            .collect::<Result<_, WireError>>()?;
        Ok(Self { items })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn item(n: u8) -> HistoryItem {
        HistoryItem {
            contact: "bob".into(),
            outgoing: n.is_multiple_of(2),
            envelope_id: [n; 16],
            sent_ms: i64::from(n) * 1000,
            stored_ms: i64::from(n) * 1001,
            position: i64::from(n),
            text: format!("message {n}"),
            file: None,
        }
    }

    #[test]
    fn a_chunk_round_trips_and_bad_ones_are_refused_by_field() {
        let chunk = HistoryChunk {
            items: (0..10).map(item).collect(),
        };
        assert_eq!(HistoryChunk::decode(&chunk.encode()).unwrap(), chunk);
        let short = proto::HistoryChunk {
            version: WIRE_VERSION,
            items: vec![proto::HistoryItem {
                envelope_id: vec![1; 15],
                ..to_proto(&item(1))
            }],
        }
        .encode_to_vec();
        assert!(matches!(
            HistoryChunk::decode(&short),
            Err(WireError::InvalidText {
                field: "history_item.envelope_id",
                ..
            })
        ));
        let future = proto::HistoryChunk {
            version: 9,
            items: vec![],
        }
        .encode_to_vec();
        assert!(matches!(
            HistoryChunk::decode(&future),
            Err(WireError::UnsupportedVersion { version: 9, .. })
        ));
        let huge = vec![0u8; MAX_HISTORY_CHUNK_LEN + 1];
        assert!(matches!(
            HistoryChunk::decode(&huge),
            Err(WireError::TooLarge { .. })
        ));
    }
}
