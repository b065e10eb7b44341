//! Ratchet messages: an encoded header and the ciphertext it authenticates.
//!
//! The header travels as a nested `bytes` field so the receiver feeds the *exact* bytes
//! it received into the AEAD's associated data; nothing is ever re-encoded to verify.

use chorus_crypto::{Nonce, RatchetPublic};
use prost::Message;

use crate::error::field;
use crate::limits::{MAX_HEADER_LEN, MAX_RATCHET_MESSAGE_LEN};
use crate::{WIRE_VERSION, WireError, check_version, decode_bounded, proto};

/// A parsed ratchet header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatchetHeader {
    /// The sender's ratchet key: the tree node this message's chain belongs to.
    pub sender: RatchetPublic,
    /// The receiver's ratchet key the sender's node builds on; `None` for a node seeded
    /// directly from a handshake.
    pub parent: Option<RatchetPublic>,
    /// How many messages the sender sent on its previous node.
    pub previous_chain_length: u32,
    /// This message's index in the sender's chain.
    pub counter: u32,
    /// The AEAD nonce.
    pub nonce: Nonce,
    /// The oldest of the sender's ratchet keys it still accepts replies on.
    pub honor_floor: Option<RatchetPublic>,
    /// The oldest of the *receiver's* ratchet keys the sender still builds on: the
    /// receiver may delete the private keys of its older ones. After a revocation it
    /// names the receiver's first key built on the sender's healed branch, so nothing
    /// the revoked device knew is honoured any more.
    pub peer_floor: Option<RatchetPublic>,
}

fn optional_key(name: &'static str, bytes: &[u8]) -> Result<Option<RatchetPublic>, WireError> {
    if bytes.is_empty() {
        Ok(None)
    } else {
        field(name, RatchetPublic::from_slice(bytes)).map(Some)
    }
}

impl RatchetHeader {
    /// Decodes a header (the bytes inside a [`RatchetMessage`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::RatchetHeader = decode_bounded("ratchet header", bytes, MAX_HEADER_LEN)?;
        check_version("ratchet header", p.version)?;
        Ok(Self {
            sender: field(
                "header.sender_ratchet_key",
                RatchetPublic::from_slice(&p.sender_ratchet_key),
            )?,
            parent: optional_key("header.parent_key", &p.parent_key)?,
            previous_chain_length: p.previous_chain_length,
            counter: p.counter,
            nonce: field("header.nonce", Nonce::from_slice(&p.nonce))?,
            honor_floor: optional_key("header.honor_floor", &p.honor_floor)?,
            peer_floor: optional_key("header.peer_floor", &p.peer_floor)?,
        })
    }

    /// Encodes the header.
    pub fn encode(&self) -> Vec<u8> {
        proto::RatchetHeader {
            version: WIRE_VERSION,
            sender_ratchet_key: self.sender.as_bytes().to_vec(),
            parent_key: self
                .parent
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default(),
            previous_chain_length: self.previous_chain_length,
            counter: self.counter,
            nonce: self.nonce.as_bytes().to_vec(),
            honor_floor: self
                .honor_floor
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default(),
            peer_floor: self
                .peer_floor
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default(),
        }
        .encode_to_vec()
    }
}

/// A parsed ratchet message: the header as received, parsed, and the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatchetMessage {
    /// The exact header bytes received: the AEAD's associated data.
    pub header_bytes: Vec<u8>,
    /// The parsed header.
    pub header: RatchetHeader,
    /// Ciphertext ‖ tag.
    pub ciphertext: Vec<u8>,
}

impl RatchetMessage {
    /// Decodes a message and its header.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::RatchetMessage =
            decode_bounded("ratchet message", bytes, MAX_RATCHET_MESSAGE_LEN)?;
        if p.ciphertext.is_empty() {
            return Err(WireError::MissingField("message.ciphertext"));
        }
        let header = RatchetHeader::decode(&p.header)?;
        Ok(Self {
            header_bytes: p.header,
            header,
            ciphertext: p.ciphertext,
        })
    }

    /// Encodes a message from already-encoded header bytes (the same bytes that went into
    /// the associated data) and the ciphertext.
    pub fn encode(header_bytes: &[u8], ciphertext: &[u8]) -> Vec<u8> {
        proto::RatchetMessage {
            header: header_bytes.to_vec(),
            ciphertext: ciphertext.to_vec(),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RatchetHeader {
        RatchetHeader {
            sender: RatchetPublic::from_bytes([1; 32]),
            parent: Some(RatchetPublic::from_bytes([2; 32])),
            previous_chain_length: 3,
            counter: 4,
            nonce: Nonce::from_slice(&[5; 12]).unwrap(),
            honor_floor: Some(RatchetPublic::from_bytes([6; 32])),
            peer_floor: Some(RatchetPublic::from_bytes([7; 32])),
        }
    }

    #[test]
    fn the_largest_header_fits_under_its_limit() {
        let mut h = header();
        h.previous_chain_length = u32::MAX;
        h.counter = u32::MAX;
        assert!(h.encode().len() <= MAX_HEADER_LEN);
    }

    #[test]
    fn a_message_exactly_at_the_limit_parses_and_one_byte_more_does_not() {
        let hb = header().encode();
        // Find a ciphertext length that makes the encoding exactly the limit.
        let mut len = MAX_RATCHET_MESSAGE_LEN - hb.len() - 8;
        loop {
            let enc = RatchetMessage::encode(&hb, &vec![7; len]);
            if enc.len() == MAX_RATCHET_MESSAGE_LEN {
                assert!(RatchetMessage::decode(&enc).is_ok());
                let over = RatchetMessage::encode(&hb, &vec![7; len + 1]);
                assert!(matches!(
                    RatchetMessage::decode(&over),
                    Err(WireError::TooLarge { .. })
                ));
                break;
            }
            assert!(enc.len() < MAX_RATCHET_MESSAGE_LEN, "overshot the limit");
            len += 1;
        }
    }

    #[test]
    fn a_wrong_version_is_named() {
        let mut p = proto::RatchetHeader::decode(&header().encode()[..]).unwrap();
        p.version = 2;
        assert_eq!(
            RatchetHeader::decode(&p.encode_to_vec()),
            Err(WireError::UnsupportedVersion {
                what: "ratchet header",
                version: 2
            })
        );
    }

    #[test]
    fn a_short_sender_key_names_its_field() {
        let mut p = proto::RatchetHeader::decode(&header().encode()[..]).unwrap();
        p.sender_ratchet_key.pop();
        assert!(matches!(
            RatchetHeader::decode(&p.encode_to_vec()),
            Err(WireError::InvalidField {
                field: "header.sender_ratchet_key",
                ..
            })
        ));
    }
}
