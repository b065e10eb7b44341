//! The continuity statement of an identity roll (`chorus identity roll`).
//!
//! An identity rolls its root key after losing a device that held it. Its contacts must
//! be able to tell the roll from an impostor's new key, so the statement is signed by
//! the root it replaces (continuity: "the identity you knew moves here"), and by the new
//! root too (whoever presents the new key holds its secret: nobody can claim a key
//! someone else rolled to). Both sign the same fixed-length bytes, so nothing depends on
//! how prost re-encodes.
//!
//! Decoding verifies both signatures and the new identity's own DH signature before the
//! value exists. Whether the statement follows from the root a contact pinned, and what
//! to do when two statements from one root disagree, is the core's decision
//! (`chorus_core::roll`).

use chorus_crypto::{RootPublicKey, RootSigningKey, Signature};
use prost::Message;

use crate::error::field;
use crate::prekeys::IdentityKeys;
use crate::{WireError, proto};

/// Signature context of the statement.
pub const IDENTITY_ROLL_CONTEXT: &[u8] = b"Chorus_IdentityRoll_v1";

/// A verified identity roll: `old_root` hands the identity over to `new_identity`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRoll {
    /// The root key the identity leaves.
    pub old_root: RootPublicKey,
    /// The identity's new public keys (root and DH, the DH key signed by the root).
    pub new_identity: IdentityKeys,
    old_signature: Signature,
    new_signature: Signature,
}

/// The 96 bytes both roots sign.
fn signed_bytes(old_root: &RootPublicKey, new: &IdentityKeys) -> [u8; 96] {
    let mut out = [0u8; 96];
    out[..32].copy_from_slice(old_root.as_bytes());
    out[32..].copy_from_slice(&new.ad_bytes());
    out
}

impl IdentityRoll {
    /// The statement that `old` hands the identity to `new` (whose root is `new_root`).
    pub fn sign(old: &RootSigningKey, new_root: &RootSigningKey, new: IdentityKeys) -> Self {
        let old_root = old.public_key();
        let bytes = signed_bytes(&old_root, &new);
        Self {
            old_signature: old.sign(IDENTITY_ROLL_CONTEXT, &bytes),
            new_signature: new_root.sign(IDENTITY_ROLL_CONTEXT, &bytes),
            old_root,
            new_identity: new,
        }
    }

    pub(crate) fn from_proto(p: &proto::IdentityRoll) -> Result<Self, WireError> {
        let old_root = field(
            "identity_roll.old_root_key",
            RootPublicKey::from_slice(&p.old_root_key),
        )?;
        let new_identity = IdentityKeys::from_proto(
            p.new_identity
                .as_ref()
                .ok_or(WireError::MissingField("identity_roll.new_identity"))?,
        )?;
        if new_identity.root == old_root {
            return Err(WireError::InvalidText {
                field: "identity_roll.new_identity",
                reason: "must be another root key than the old one",
            });
        }
        let old_signature = field(
            "identity_roll.old_signature",
            Signature::from_slice(&p.old_signature),
        )?;
        let new_signature = field(
            "identity_roll.new_signature",
            Signature::from_slice(&p.new_signature),
        )?;
        let bytes = signed_bytes(&old_root, &new_identity);
        old_root
            .verify(IDENTITY_ROLL_CONTEXT, &bytes, &old_signature)
            .map_err(|_| WireError::BadSignature("identity roll (by the previous root key)"))?;
        new_identity
            .root
            .verify(IDENTITY_ROLL_CONTEXT, &bytes, &new_signature)
            .map_err(|_| WireError::BadSignature("identity roll (by the new root key)"))?;
        Ok(Self {
            old_root,
            new_identity,
            old_signature,
            new_signature,
        })
    }

    pub(crate) fn to_proto(&self) -> proto::IdentityRoll {
        proto::IdentityRoll {
            old_root_key: self.old_root.as_bytes().to_vec(),
            new_identity: Some(self.new_identity.to_proto()),
            old_signature: self.old_signature.as_bytes().to_vec(),
            new_signature: self.new_signature.as_bytes().to_vec(),
        }
    }

    /// Decodes a statement on its own (as the fuzz target and tests see it).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::IdentityRoll =
            crate::decode_bounded("identity roll", bytes, crate::limits::MAX_IDENTITY_ROLL_LEN)?;
        Self::from_proto(&p)
    }

    /// Encodes the statement on its own.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_crypto::IdentityDhSecret;

    fn roll(seed: u8) -> (RootSigningKey, RootSigningKey, IdentityRoll) {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed.into());
        let old = RootSigningKey::generate(&mut rng);
        let new = RootSigningKey::generate(&mut rng);
        let keys = IdentityKeys::sign(&new, IdentityDhSecret::generate(&mut rng).public_key());
        let r = IdentityRoll::sign(&old, &new, keys);
        (old, new, r)
    }

    #[test]
    fn a_roll_decodes_as_signed() {
        let (_, _, r) = roll(1);
        assert_eq!(IdentityRoll::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn a_roll_not_signed_by_the_previous_root_is_refused() {
        let (_, new, r) = roll(2);
        // An impostor signs "from" the victim's root with a key of its own.
        let (impostor, _, _) = roll(3);
        let forged = IdentityRoll::sign(&impostor, &new, r.new_identity.clone());
        let mut p = forged.to_proto();
        p.old_root_key = r.old_root.as_bytes().to_vec();
        assert_eq!(
            IdentityRoll::decode(&p.encode_to_vec()),
            Err(WireError::BadSignature(
                "identity roll (by the previous root key)"
            ))
        );
    }

    #[test]
    fn a_roll_to_a_key_whose_secret_is_not_held_is_refused() {
        let (old, _, r) = roll(4);
        // The old root "rolls" to somebody else's identity keys.
        let (_, other, _) = roll(5);
        let mut p = IdentityRoll::sign(&old, &other, r.new_identity.clone()).to_proto();
        p.new_signature = r.to_proto().new_signature;
        p.new_identity = Some(roll(6).2.new_identity.to_proto());
        assert!(IdentityRoll::decode(&p.encode_to_vec()).is_err());
        let mut p = r.to_proto();
        p.new_signature = vec![0; 64];
        assert_eq!(
            IdentityRoll::decode(&p.encode_to_vec()),
            Err(WireError::BadSignature(
                "identity roll (by the new root key)"
            ))
        );
    }

    #[test]
    fn a_roll_to_the_same_root_is_refused() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        let old = RootSigningKey::generate(&mut rng);
        let keys = IdentityKeys::sign(&old, IdentityDhSecret::generate(&mut rng).public_key());
        let r = IdentityRoll::sign(&old, &old, keys);
        assert!(matches!(
            IdentityRoll::decode(&r.encode()),
            Err(WireError::InvalidText { .. })
        ));
    }

    #[test]
    fn an_oversized_roll_is_not_parsed() {
        let bytes = vec![0u8; crate::limits::MAX_IDENTITY_ROLL_LEN + 1];
        assert!(matches!(
            IdentityRoll::decode(&bytes),
            Err(WireError::TooLarge { .. })
        ));
    }
}
