//! Double Ratchet key schedule: root key, chain keys and message keys.
//!
//! Root KDF: HKDF-SHA256 with the root key as salt and a DH output as input, expanded to
//! 64 bytes (new root key ‖ chain key) under a profile label. Chain KDF: HMAC-SHA256
//! keyed by the chain key, with input `0x01` for the message key and `0x02` for the next
//! chain key (Signal's specification; Olm uses the same constants).
//!
//! SHA-256 has no hardware help on the reference machine, so HMAC calls dominate the
//! symmetric cost: a chain step keys HMAC once and clones the keyed state for both
//! outputs, saving two of eight SHA-256 compressions per message.
//!
//! Our sending chain ([`ChainKey`], yielding [`MessageKey`]) and a peer's receiving chain
//! ([`RemoteChainKey`], yielding [`RemoteMessageKey`]) are distinct types, so a sending
//! key can never open a message and a receiving key can never seal one.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::kdf_label::KdfLabel;
use crate::serde_fixed::serde_secret;
use crate::x25519::DhOutput;

type HmacSha256 = Hmac<Sha256>;
type Key = Box<Zeroizing<[u8; 32]>>;

const MESSAGE_KEY_SEED: u8 = 0x01;
const CHAIN_KEY_SEED: u8 = 0x02;

fn boxed(bytes: &[u8]) -> Key {
    let mut k = Box::new(Zeroizing::new([0u8; 32]));
    k.copy_from_slice(bytes);
    k
}

/// Splits 64 bytes of KDF output into two 32-byte keys.
pub(crate) fn split64(okm: &[u8; 64]) -> (Key, Key) {
    (boxed(&okm[..32]), boxed(&okm[32..]))
}

/// The root key of a ratchet node: input to every DH step taken on top of it.
///
/// Secret: boxed, zeroized on drop, no `Debug`.
pub struct RootKey(Key);

impl ZeroizeOnDrop for RootKey {}

impl RootKey {
    pub(crate) fn from_key(key: Key) -> Self {
        Self(key)
    }

    fn step(&self, dh: &DhOutput, label: &KdfLabel) -> (Key, Key) {
        let hk = Hkdf::<Sha256>::new(Some(&self.0[..]), &dh.0[..]);
        let mut okm = Zeroizing::new([0u8; 64]);
        // 64 bytes is far below HKDF-SHA256's 8160-byte limit; this cannot fail.
        #[allow(clippy::expect_used)]
        hk.expand(label.ratchet, &mut okm[..])
            .expect("64 bytes is a valid HKDF length");
        split64(&okm)
    }

    /// DH step for a chain we will send on: `(root', chain) = KDF_RK(root, dh)`.
    pub fn step_sending(&self, dh: &DhOutput, label: &KdfLabel) -> (RootKey, ChainKey) {
        let (root, chain) = self.step(dh, label);
        (
            RootKey(root),
            ChainKey(Chain {
                key: chain,
                index: 0,
            }),
        )
    }

    /// DH step for a chain the peer sends on.
    pub fn step_receiving(&self, dh: &DhOutput, label: &KdfLabel) -> (RootKey, RemoteChainKey) {
        let (root, chain) = self.step(dh, label);
        (
            RootKey(root),
            RemoteChainKey(Chain {
                key: chain,
                index: 0,
            }),
        )
    }

    fn secret_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn from_secret_box(bytes: &[u8; 32]) -> Self {
        Self(boxed(bytes))
    }
}

serde_secret!(RootKey, 32);

#[derive(Clone)]
struct Chain {
    key: Key,
    index: u32,
}

impl Chain {
    /// Returns the message key at the current index and moves to the next one.
    fn step(&mut self) -> (Key, u32) {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        #[allow(clippy::expect_used)]
        let keyed = HmacSha256::new_from_slice(&self.key[..]).expect("HMAC takes any key length");
        let mut message = keyed.clone();
        message.update(&[MESSAGE_KEY_SEED]);
        let mut next = keyed;
        next.update(&[CHAIN_KEY_SEED]);
        let mk = boxed(&message.finalize().into_bytes());
        let index = self.index;
        self.key = boxed(&next.finalize().into_bytes());
        self.index = self.index.wrapping_add(1);
        (mk, index)
    }
}

/// Serialized form of a chain: 32 key bytes then the big-endian index.
fn chain_bytes(chain: &Chain) -> Zeroizing<[u8; 36]> {
    let mut out = Zeroizing::new([0u8; 36]);
    out[..32].copy_from_slice(&chain.key[..]);
    out[32..].copy_from_slice(&chain.index.to_be_bytes());
    out
}

fn chain_from_bytes(bytes: &[u8; 36]) -> Chain {
    let mut idx = [0u8; 4];
    idx.copy_from_slice(&bytes[32..]);
    Chain {
        key: boxed(&bytes[..32]),
        index: u32::from_be_bytes(idx),
    }
}

macro_rules! chain_type {
    ($(#[$doc:meta])* $name:ident, $mk:ident) => {
        $(#[$doc])*
        ///
        /// Secret: boxed, zeroized on drop, no `Debug`.
        pub struct $name(Chain);

        impl ZeroizeOnDrop for $name {}

        impl $name {
            /// Index of the next message key this chain will yield.
            pub fn index(&self) -> u32 {
                self.0.index
            }

            /// Yields the message key at [`index`](Self::index) and advances the chain;
            /// the consumed chain key is overwritten (forward secrecy).
            pub fn next_message_key(&mut self) -> $mk {
                let (key, index) = self.0.step();
                $mk { key, index }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::serde_fixed::serialize::<S, 36>(&chain_bytes(&self.0), s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut buf = Zeroizing::new([0u8; 36]);
                crate::serde_fixed::deserialize_into::<D, 36>(d, &mut buf)?;
                Ok(Self(chain_from_bytes(&buf)))
            }
        }

        $(#[$doc])*
        pub struct $mk {
            pub(crate) key: Key,
            index: u32,
        }

        impl ZeroizeOnDrop for $mk {}

        impl $mk {
            /// The chain index this key was derived at.
            pub fn index(&self) -> u32 {
                self.index
            }
        }

        impl serde::Serialize for $mk {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::serde_fixed::serialize::<S, 36>(
                    &chain_bytes(&Chain { key: self.key.clone(), index: self.index }),
                    s,
                )
            }
        }

        impl<'de> serde::Deserialize<'de> for $mk {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut buf = Zeroizing::new([0u8; 36]);
                crate::serde_fixed::deserialize_into::<D, 36>(d, &mut buf)?;
                let chain = chain_from_bytes(&buf);
                Ok(Self { key: chain.key, index: chain.index })
            }
        }
    };
}

chain_type!(
    /// Our sending chain on one ratchet node.
    ChainKey,
    MessageKey
);
chain_type!(
    /// The peer's sending chain on one of their ratchet nodes, as we track it.
    RemoteChainKey,
    RemoteMessageKey
);

impl RemoteChainKey {
    /// An independent copy, used to derive ahead without committing (a message is only
    /// committed to the state once its AEAD tag verifies).
    pub fn duplicate(&self) -> Self {
        Self(self.0.clone())
    }
}

impl RemoteMessageKey {
    /// An independent copy (a skipped key is copied out for a decryption attempt and only
    /// removed from the store once the message authenticates).
    pub fn duplicate(&self) -> Self {
        Self {
            key: self.key.clone(),
            index: self.index,
        }
    }
}

impl ChainKey {
    /// Builds a sending chain directly from a handshake output (the Olm profile's first
    /// chain comes from the 3DH secret, not from a DH step).
    pub(crate) fn from_key(key: Key) -> Self {
        Self(Chain { key, index: 0 })
    }
}

impl RemoteChainKey {
    pub(crate) fn from_key(key: Key) -> Self {
        Self(Chain { key, index: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RatchetSecret, kdf_label::KdfLabel};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn advancing_a_chain_increments_its_index() {
        let mut chain = ChainKey::from_key(boxed(&[7u8; 32]));
        assert_eq!(chain.index(), 0);
        let mk = chain.next_message_key();
        assert_eq!((mk.index(), chain.index()), (0, 1));
    }

    #[test]
    fn sending_and_receiving_chains_from_one_step_yield_the_same_keys() {
        let mut rng = StdRng::seed_from_u64(5);
        let a = RatchetSecret::generate(&mut rng);
        let b = RatchetSecret::generate(&mut rng);
        let root = RootKey::from_key(boxed(&[1u8; 32]));
        let (ra, mut send) = root.step_sending(
            &a.diffie_hellman(&b.public_key()).unwrap(),
            &KdfLabel::CHORUS,
        );
        let (rb, mut recv) = root.step_receiving(
            &b.diffie_hellman(&a.public_key()).unwrap(),
            &KdfLabel::CHORUS,
        );
        assert_eq!(ra.secret_bytes(), rb.secret_bytes());
        for _ in 0..3 {
            assert_eq!(*send.next_message_key().key, *recv.next_message_key().key);
        }
    }

    #[test]
    fn chain_keys_match_the_hmac_definition() {
        // message key = HMAC(ck, 0x01), next chain key = HMAC(ck, 0x02)
        let ck = [9u8; 32];
        let mut chain = ChainKey::from_key(boxed(&ck));
        let mk = chain.next_message_key();
        let mut m = HmacSha256::new_from_slice(&ck).unwrap();
        m.update(&[1]);
        assert_eq!(&mk.key[..], &m.finalize().into_bytes()[..]);
        let mut n = HmacSha256::new_from_slice(&ck).unwrap();
        n.update(&[2]);
        assert_eq!(&chain.0.key[..], &n.finalize().into_bytes()[..]);
    }

    #[test]
    fn labels_separate_profiles() {
        let mut rng = StdRng::seed_from_u64(6);
        let a = RatchetSecret::generate(&mut rng);
        let b = RatchetSecret::generate(&mut rng);
        let dh = a.diffie_hellman(&b.public_key()).unwrap();
        let root = RootKey::from_key(boxed(&[1u8; 32]));
        let (r1, _) = root.step_sending(&dh, &KdfLabel::CHORUS);
        let (r2, _) = root.step_sending(&dh, &KdfLabel::OLM);
        assert_ne!(r1.secret_bytes(), r2.secret_bytes());
    }
}
