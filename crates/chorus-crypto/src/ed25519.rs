//! Ed25519 signing keys: the identity's root key and each device's own key.
//!
//! Every signature is domain-separated: the signed bytes are `context || 0x00 || message`,
//! so a signature made for one purpose (a signed prekey) can never be replayed as
//! another (a roster entry). Verification uses `verify_strict` (no malleable encodings).

use core::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use zeroize::ZeroizeOnDrop;

use crate::CryptoError;
use crate::serde_fixed::{serde_public, serde_secret};

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// Wraps 64 signature bytes.
    pub const fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses a slice that must be exactly 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        <[u8; SIGNATURE_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidLength {
                what: "signature",
                expected: SIGNATURE_LEN,
                actual: bytes.len(),
            })
    }

    /// The signature bytes.
    pub const fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", crate::display::short_hex(&self.0))
    }
}

serde_public!(Signature, SIGNATURE_LEN);

/// The bytes an Ed25519 signature with a domain `context` covers: `context ‖ 0x00 ‖
/// message`. Every `sign`/`verify` here goes through it; it is public for peers that
/// hold a raw key (test harnesses, load tools) and must produce the same bytes.
pub fn domain_message(context: &[u8], message: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + 1 + message.len());
    m.extend_from_slice(context);
    m.push(0);
    m.extend_from_slice(message);
    m
}

fn verify(
    key: &[u8; 32],
    context: &[u8],
    message: &[u8],
    sig: &Signature,
    role: &'static str,
) -> Result<(), CryptoError> {
    let vk = VerifyingKey::from_bytes(key).map_err(|_| CryptoError::InvalidPublicKey(role))?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    vk.verify_strict(&domain_message(context, message), &sig)
        .map_err(|_| CryptoError::BadSignature)
}

macro_rules! ed25519_role {
    ($role:literal, $(#[$sdoc:meta])* $secret:ident, $(#[$pdoc:meta])* $public:ident) => {
        $(#[$sdoc])*
        ///
        /// Secret: boxed, zeroized on drop, no `Debug`.
        pub struct $secret(Box<SigningKey>);

        impl ZeroizeOnDrop for $secret {}

        impl $secret {
            /// Generates a fresh key from the given RNG.
            pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
                Self(Box::new(SigningKey::generate(rng)))
            }

            /// The public half.
            pub fn public_key(&self) -> $public {
                $public(self.0.verifying_key().to_bytes())
            }

            /// Signs `context || 0x00 || message`.
            pub fn sign(&self, context: &[u8], message: &[u8]) -> Signature {
                Signature(self.0.sign(&domain_message(context, message)).to_bytes())
            }

            fn secret_bytes(&self) -> &[u8; 32] {
                self.0.as_bytes()
            }

            /// The 32 secret bytes, for a sealed wire format that carries the key
            /// (the provisioning bundle). The copy is wiped on drop.
            pub fn to_secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
                // Filled in place: `Zeroizing::new(*bytes)` would build the copy in a
                // temporary first, a stack slot nothing wipes.
                let mut out = zeroize::Zeroizing::new([0u8; 32]);
                out.copy_from_slice(self.secret_bytes());
                out
            }

            /// The key from its 32 secret bytes (the inverse of `to_secret_bytes`).
            pub fn from_secret_bytes(bytes: &[u8; 32]) -> Self {
                Self::from_secret_box(bytes)
            }

            fn from_secret_box(bytes: &[u8; 32]) -> Self {
                Self(Box::new(SigningKey::from_bytes(bytes)))
            }
        }

        serde_secret!($secret, 32);

        $(#[$pdoc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $public([u8; 32]);

        impl $public {
            /// Parses 32 bytes, rejecting those that are not a valid Ed25519 point.
            pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, CryptoError> {
                VerifyingKey::from_bytes(&bytes).map_err(|_| CryptoError::InvalidPublicKey($role))?;
                Ok(Self(bytes))
            }

            /// Parses a slice that must be exactly 32 bytes and a valid point.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
                let arr = <[u8; 32]>::try_from(bytes).map_err(|_| CryptoError::InvalidLength {
                    what: $role,
                    expected: 32,
                    actual: bytes.len(),
                })?;
                Self::from_bytes(arr)
            }

            /// The public key bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Verifies a signature made with [`sign`](#method.sign) under the same context.
            pub fn verify(&self, context: &[u8], message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
                verify(&self.0, context, message, signature, $role)
            }
        }

        impl fmt::Debug for $public {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($public), crate::display::short_hex(&self.0))
            }
        }

        impl serde::Serialize for $public {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                crate::serde_fixed::serialize::<S, 32>(&self.0, s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $public {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes = crate::serde_fixed::deserialize::<D, 32>(d)?;
                Self::from_bytes(bytes).map_err(serde::de::Error::custom)
            }
        }
    };
}

ed25519_role!(
    "root",
    /// The identity's root key. Its fingerprint is the safety number; it signs the
    /// roster, the identity DH key and prekeys.
    RootSigningKey,
    /// Public half of [`RootSigningKey`]: what contacts pin.
    RootPublicKey
);
ed25519_role!(
    "device",
    /// A device's own signing key. It never leaves the device; it authenticates the
    /// device to the relay and to its siblings.
    DeviceSigningKey,
    /// Public half of [`DeviceSigningKey`].
    DevicePublicKey
);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn a_signature_verifies_only_under_its_own_context() {
        let mut rng = StdRng::seed_from_u64(7);
        let root = RootSigningKey::generate(&mut rng);
        let sig = root.sign(b"ctx-a", b"hello");
        let public = root.public_key();
        assert!(public.verify(b"ctx-a", b"hello", &sig).is_ok());
        assert_eq!(
            public.verify(b"ctx-b", b"hello", &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            public.verify(b"ctx-a", b"hellp", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn an_invalid_point_is_rejected_as_a_public_key() {
        // y = 2 is not on the curve.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        assert_eq!(
            RootPublicKey::from_bytes(bytes),
            Err(CryptoError::InvalidPublicKey("root"))
        );
    }

    #[test]
    fn a_signing_key_survives_a_serde_round_trip() {
        let mut rng = StdRng::seed_from_u64(8);
        let k = DeviceSigningKey::generate(&mut rng);
        let bytes = postcard::to_allocvec(&k).unwrap();
        let k2: DeviceSigningKey = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(k.public_key(), k2.public_key());
    }
}
