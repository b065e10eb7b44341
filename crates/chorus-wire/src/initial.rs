//! The initial (handshake) message: the initiator's identity, ephemeral key, the ids of
//! the prekeys it used, the ML-KEM ciphertext and the first ratchet message.
//!
//! Nothing here is signed: a tampered field changes the derived secret, and the inner
//! ratchet message — whose associated data binds both identities — then fails to open.

use chorus_crypto::{EphemeralPublic, KemCiphertext};
use prost::Message;

use crate::error::field;
use crate::limits::MAX_INITIAL_MESSAGE_LEN;
use crate::prekeys::IdentityKeys;
use crate::ratchet::RatchetMessage;
use crate::{WIRE_VERSION, WireError, check_version, decode_bounded, proto};

/// A parsed initial message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMessage {
    /// The initiator's identity (root signature over its DH key verified).
    pub sender: IdentityKeys,
    /// The initiator's ephemeral (base) key.
    pub ephemeral: EphemeralPublic,
    /// Which of the responder's signed prekeys was used.
    pub signed_prekey_id: u32,
    /// Which one-time prekey was used, if any.
    pub one_time_prekey_id: Option<u32>,
    /// Which PQ prekey was used.
    pub pq_prekey_id: u32,
    /// The ML-KEM-768 ciphertext.
    pub kem_ciphertext: KemCiphertext,
    /// The first ratchet message.
    pub message: RatchetMessage,
}

impl InitialMessage {
    /// Decodes and checks an initial message.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::InitialMessage =
            decode_bounded("initial message", bytes, MAX_INITIAL_MESSAGE_LEN)?;
        check_version("initial message", p.version)?;
        let sender = IdentityKeys::from_proto(
            p.sender
                .as_ref()
                .ok_or(WireError::MissingField("initial.sender"))?,
        )?;
        Ok(Self {
            sender,
            ephemeral: field(
                "initial.ephemeral_key",
                EphemeralPublic::from_slice(&p.ephemeral_key),
            )?,
            signed_prekey_id: p.signed_prekey_id,
            one_time_prekey_id: p.one_time_prekey_id,
            pq_prekey_id: p.pq_prekey_id,
            kem_ciphertext: field(
                "initial.kem_ciphertext",
                KemCiphertext::from_slice(&p.kem_ciphertext),
            )?,
            message: RatchetMessage::decode(&p.message)?,
        })
    }

    /// Encodes the message; `message` is an already-encoded [`RatchetMessage`].
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        sender: &IdentityKeys,
        ephemeral: &EphemeralPublic,
        signed_prekey_id: u32,
        one_time_prekey_id: Option<u32>,
        pq_prekey_id: u32,
        kem_ciphertext: &KemCiphertext,
        message: &[u8],
    ) -> Vec<u8> {
        proto::InitialMessage {
            version: WIRE_VERSION,
            sender: Some(sender.to_proto()),
            ephemeral_key: ephemeral.as_bytes().to_vec(),
            signed_prekey_id,
            one_time_prekey_id,
            pq_prekey_id,
            kem_ciphertext: kem_ciphertext.as_bytes().to_vec(),
            message: message.to_vec(),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_initial_message_over_the_limit_is_not_parsed() {
        let big = vec![0u8; MAX_INITIAL_MESSAGE_LEN + 1];
        assert_eq!(
            InitialMessage::decode(&big),
            Err(WireError::TooLarge {
                what: "initial message",
                max: MAX_INITIAL_MESSAGE_LEN,
                actual: MAX_INITIAL_MESSAGE_LEN + 1
            })
        );
    }

    #[test]
    fn the_largest_legal_ratchet_message_fits_in_an_initial_message() {
        // handshake fields: identity (~140 B), ephemeral 32 B, KEM ciphertext 1,088 B, ids
        let handshake = 140 + 32 + chorus_crypto::KEM_CIPHERTEXT_LEN + 32;
        assert!(crate::limits::MAX_RATCHET_MESSAGE_LEN + handshake <= MAX_INITIAL_MESSAGE_LEN);
    }
}
