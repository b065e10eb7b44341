//! Identity keys and prekeys: what a contact fetches before the first message.
//!
//! Decoding a bundle verifies every signature under the bundle's root key before the
//! bundle exists as a value: "parse, don't validate". Whether that root key is the one
//! the user expects (safety number, invitation) is the caller's decision.

use chorus_crypto::{
    IdentityDhPublic, OneTimePrekeyPublic, PqPrekeyPublic, RootPublicKey, RootSigningKey,
    Signature, SignedPrekeyPublic,
};
use prost::Message;

use crate::error::field;
use crate::limits::{MAX_BUNDLE_LEN, MAX_PREKEY_LEN};
use crate::{WireError, decode_bounded, proto};

/// Signature contexts (domain separation) for everything the root key signs on the wire.
pub mod contexts {
    /// Root over the identity DH key.
    pub const IDENTITY_DH: &[u8] = b"Chorus_IdentityDh_v1";
    /// Root over `id (BE) || signed prekey`.
    pub const SIGNED_PREKEY: &[u8] = b"Chorus_SignedPrekey_v1";
    /// Root over `id (BE) || last_resort || PQ prekey`.
    pub const PQ_PREKEY: &[u8] = b"Chorus_PqPrekey_v1";
}

/// An identity's public keys, with the root's signature over the DH key verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityKeys {
    /// The root key: the identity itself.
    pub root: RootPublicKey,
    /// The identity DH key used in handshakes.
    pub dh: IdentityDhPublic,
    signature: Signature,
}

impl IdentityKeys {
    /// Signs `dh` with `root` and bundles the public keys.
    pub fn sign(root: &RootSigningKey, dh: IdentityDhPublic) -> Self {
        let signature = root.sign(contexts::IDENTITY_DH, dh.as_bytes());
        Self {
            root: root.public_key(),
            dh,
            signature,
        }
    }

    pub(crate) fn from_proto(p: &proto::IdentityKeys) -> Result<Self, WireError> {
        let root = field("identity.root_key", RootPublicKey::from_slice(&p.root_key))?;
        let dh = field(
            "identity.identity_dh_key",
            IdentityDhPublic::from_slice(&p.identity_dh_key),
        )?;
        let signature = field(
            "identity.identity_dh_signature",
            Signature::from_slice(&p.identity_dh_signature),
        )?;
        root.verify(contexts::IDENTITY_DH, dh.as_bytes(), &signature)
            .map_err(|_| WireError::BadSignature("identity DH key"))?;
        Ok(Self {
            root,
            dh,
            signature,
        })
    }

    pub(crate) fn to_proto(&self) -> proto::IdentityKeys {
        proto::IdentityKeys {
            root_key: self.root.as_bytes().to_vec(),
            identity_dh_key: self.dh.as_bytes().to_vec(),
            identity_dh_signature: self.signature.as_bytes().to_vec(),
        }
    }

    /// Canonical bytes binding this identity into associated data: root ‖ DH key.
    pub fn ad_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(self.root.as_bytes());
        out[32..].copy_from_slice(self.dh.as_bytes());
        out
    }
}

fn id_and_key(id: u32, key: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(4 + key.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(key);
    m
}

/// A signed X25519 prekey, signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPrekey {
    /// The owner's id for this prekey.
    pub id: u32,
    /// The prekey.
    pub key: SignedPrekeyPublic,
    signature: Signature,
}

impl SignedPrekey {
    /// Signs a prekey with the root key.
    pub fn sign(root: &RootSigningKey, id: u32, key: SignedPrekeyPublic) -> Self {
        let signature = root.sign(contexts::SIGNED_PREKEY, &id_and_key(id, key.as_bytes()));
        Self { id, key, signature }
    }

    pub(crate) fn from_proto(
        p: &proto::SignedPrekey,
        root: &RootPublicKey,
    ) -> Result<Self, WireError> {
        let key = field(
            "signed_prekey.public_key",
            SignedPrekeyPublic::from_slice(&p.public_key),
        )?;
        let signature = field(
            "signed_prekey.signature",
            Signature::from_slice(&p.signature),
        )?;
        root.verify(
            contexts::SIGNED_PREKEY,
            &id_and_key(p.id, key.as_bytes()),
            &signature,
        )
        .map_err(|_| WireError::BadSignature("signed prekey"))?;
        Ok(Self {
            id: p.id,
            key,
            signature,
        })
    }

    pub(crate) fn to_proto(&self) -> proto::SignedPrekey {
        proto::SignedPrekey {
            id: self.id,
            public_key: self.key.as_bytes().to_vec(),
            signature: self.signature.as_bytes().to_vec(),
        }
    }
}

/// A one-time X25519 prekey (unsigned, as in X3DH: it only adds forward secrecy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneTimePrekey {
    /// The owner's id for this prekey.
    pub id: u32,
    /// The prekey.
    pub key: OneTimePrekeyPublic,
}

/// A signed ML-KEM-768 prekey, one-time or last-resort, signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PqPrekey {
    /// The owner's id for this prekey.
    pub id: u32,
    /// The encapsulation key.
    pub key: PqPrekeyPublic,
    /// Whether this is the long-lived fallback rather than a one-time key.
    pub last_resort: bool,
    signature: Signature,
}

fn pq_signed_bytes(id: u32, last_resort: bool, key: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(5 + key.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.push(u8::from(last_resort));
    m.extend_from_slice(key);
    m
}

impl PqPrekey {
    /// Signs a PQ prekey with the root key.
    pub fn sign(root: &RootSigningKey, id: u32, key: PqPrekeyPublic, last_resort: bool) -> Self {
        let signature = root.sign(
            contexts::PQ_PREKEY,
            &pq_signed_bytes(id, last_resort, key.as_bytes()),
        );
        Self {
            id,
            key,
            last_resort,
            signature,
        }
    }

    fn from_proto(p: &proto::PqPrekey, root: &RootPublicKey) -> Result<Self, WireError> {
        let key = field(
            "pq_prekey.public_key",
            PqPrekeyPublic::from_slice(&p.public_key),
        )?;
        let signature = field("pq_prekey.signature", Signature::from_slice(&p.signature))?;
        root.verify(
            contexts::PQ_PREKEY,
            &pq_signed_bytes(p.id, p.last_resort, key.as_bytes()),
            &signature,
        )
        .map_err(|_| WireError::BadSignature("PQ prekey"))?;
        Ok(Self {
            id: p.id,
            key,
            last_resort: p.last_resort,
            signature,
        })
    }

    fn to_proto(&self) -> proto::PqPrekey {
        proto::PqPrekey {
            id: self.id,
            public_key: self.key.as_bytes().to_vec(),
            signature: self.signature.as_bytes().to_vec(),
            last_resort: self.last_resort,
        }
    }
}

/// Everything an initiator needs from the directory, every signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeyBundle {
    /// The responder's identity.
    pub identity: IdentityKeys,
    /// The current signed prekey.
    pub signed_prekey: SignedPrekey,
    /// A one-time prekey, if the relay had one left.
    pub one_time_prekey: Option<OneTimePrekey>,
    /// A one-time PQ prekey, or the last-resort one.
    pub pq_prekey: PqPrekey,
}

impl PrekeyBundle {
    /// Decodes and verifies a bundle.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::PrekeyBundle = decode_bounded("prekey bundle", bytes, MAX_BUNDLE_LEN)?;
        Self::from_proto(&p)
    }

    pub(crate) fn from_proto(p: &proto::PrekeyBundle) -> Result<Self, WireError> {
        let identity = IdentityKeys::from_proto(
            p.identity
                .as_ref()
                .ok_or(WireError::MissingField("bundle.identity"))?,
        )?;
        let signed_prekey = SignedPrekey::from_proto(
            p.signed_prekey
                .as_ref()
                .ok_or(WireError::MissingField("bundle.signed_prekey"))?,
            &identity.root,
        )?;
        let one_time_prekey = match &p.one_time_prekey {
            None => None,
            Some(o) => Some(OneTimePrekey {
                id: o.id,
                key: field(
                    "one_time_prekey.public_key",
                    OneTimePrekeyPublic::from_slice(&o.public_key),
                )?,
            }),
        };
        let pq_prekey = PqPrekey::from_proto(
            p.pq_prekey
                .as_ref()
                .ok_or(WireError::MissingField("bundle.pq_prekey"))?,
            &identity.root,
        )?;
        Ok(Self {
            identity,
            signed_prekey,
            one_time_prekey,
            pq_prekey,
        })
    }

    pub(crate) fn to_proto(&self) -> proto::PrekeyBundle {
        proto::PrekeyBundle {
            identity: Some(self.identity.to_proto()),
            signed_prekey: Some(self.signed_prekey.to_proto()),
            one_time_prekey: self.one_time_prekey.as_ref().map(|o| proto::OneTimePrekey {
                id: o.id,
                public_key: o.key.as_bytes().to_vec(),
            }),
            pq_prekey: Some(self.pq_prekey.to_proto()),
        }
    }

    /// Encodes the bundle.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }
}

impl IdentityKeys {
    /// Decodes and verifies identity keys on their own.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::IdentityKeys = decode_bounded("identity keys", bytes, MAX_BUNDLE_LEN)?;
        Self::from_proto(&p)
    }

    /// Encodes the identity keys.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }
}

impl SignedPrekey {
    /// Decodes a signed prekey on its own, verifying it under `root`.
    pub fn decode(bytes: &[u8], root: &RootPublicKey) -> Result<Self, WireError> {
        let p: proto::SignedPrekey = decode_bounded("signed prekey", bytes, MAX_PREKEY_LEN)?;
        Self::from_proto(&p, root)
    }

    /// Encodes the prekey on its own.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }
}

impl OneTimePrekey {
    /// Decodes a one-time prekey as published on its own in the directory.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::OneTimePrekey = decode_bounded("one-time prekey", bytes, MAX_PREKEY_LEN)?;
        Ok(Self {
            id: p.id,
            key: field(
                "one_time_prekey.public_key",
                OneTimePrekeyPublic::from_slice(&p.public_key),
            )?,
        })
    }

    /// Encodes the prekey on its own.
    pub fn encode(&self) -> Vec<u8> {
        proto::OneTimePrekey {
            id: self.id,
            public_key: self.key.as_bytes().to_vec(),
        }
        .encode_to_vec()
    }
}

impl PqPrekey {
    /// Decodes a PQ prekey published on its own, verifying it under `root`.
    pub fn decode(bytes: &[u8], root: &RootPublicKey) -> Result<Self, WireError> {
        let p: proto::PqPrekey = decode_bounded("PQ prekey", bytes, MAX_PREKEY_LEN)?;
        Self::from_proto(&p, root)
    }

    /// Encodes the prekey on its own.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chorus_crypto::{
        IdentityDhSecret, OneTimePrekeySecret, PqPrekeySecret, SignedPrekeySecret,
    };
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    pub(crate) fn bundle(seed: u64) -> PrekeyBundle {
        let mut rng = StdRng::seed_from_u64(seed);
        let root = RootSigningKey::generate(&mut rng);
        let dh = IdentityDhSecret::generate(&mut rng).public_key();
        PrekeyBundle {
            identity: IdentityKeys::sign(&root, dh),
            signed_prekey: SignedPrekey::sign(
                &root,
                7,
                SignedPrekeySecret::generate(&mut rng).public_key(),
            ),
            one_time_prekey: Some(OneTimePrekey {
                id: 9,
                key: OneTimePrekeySecret::generate(&mut rng).public_key(),
            }),
            pq_prekey: PqPrekey::sign(
                &root,
                3,
                PqPrekeySecret::generate(&mut rng).public_key(),
                true,
            ),
        }
    }

    #[test]
    fn a_bundle_round_trips() {
        let b = bundle(1);
        assert_eq!(PrekeyBundle::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn a_prekey_signed_by_another_root_is_rejected() {
        let mut b = bundle(1).to_proto();
        let other = bundle(2).to_proto();
        b.signed_prekey = other.signed_prekey;
        assert_eq!(
            PrekeyBundle::from_proto(&b),
            Err(WireError::BadSignature("signed prekey"))
        );
        let mut b = bundle(1).to_proto();
        b.pq_prekey = other.pq_prekey;
        assert_eq!(
            PrekeyBundle::from_proto(&b),
            Err(WireError::BadSignature("PQ prekey"))
        );
    }

    #[test]
    fn flipping_the_last_resort_flag_breaks_the_signature() {
        let mut b = bundle(1).to_proto();
        if let Some(pq) = b.pq_prekey.as_mut() {
            pq.last_resort = false;
        }
        assert_eq!(
            PrekeyBundle::from_proto(&b),
            Err(WireError::BadSignature("PQ prekey"))
        );
    }

    #[test]
    fn a_bundle_over_the_limit_is_not_parsed() {
        let big = vec![0u8; MAX_BUNDLE_LEN + 1];
        assert_eq!(
            PrekeyBundle::decode(&big),
            Err(WireError::TooLarge {
                what: "prekey bundle",
                max: MAX_BUNDLE_LEN,
                actual: MAX_BUNDLE_LEN + 1
            })
        );
    }

    #[test]
    fn a_bundle_without_identity_names_the_missing_field() {
        let mut b = bundle(1).to_proto();
        b.identity = None;
        assert_eq!(
            PrekeyBundle::decode(&b.encode_to_vec()),
            Err(WireError::MissingField("bundle.identity"))
        );
    }
}
