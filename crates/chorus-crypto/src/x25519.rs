//! X25519 keys, one pair of types per role.
//!
//! Every role (identity, signed prekey, one-time prekey, ephemeral, ratchet, device)
//! gets its own secret and public type, so a signed prekey cannot be passed where a
//! ratchet key is expected. All roles share one implementation through a macro.

use core::fmt;

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::serde_fixed::{serde_public, serde_secret};

/// The output of one Diffie-Hellman exchange. Secret: boxed, zeroized, no `Debug`.
pub struct DhOutput(pub(crate) Box<Zeroizing<[u8; 32]>>);

impl ZeroizeOnDrop for DhOutput {}

/// Any X25519 public key, whatever its role, can be the other side of a DH.
pub trait DhPublic {
    /// The 32 public key bytes.
    fn dh_bytes(&self) -> &[u8; 32];
}

fn exchange(
    secret: &StaticSecret,
    their: &[u8; 32],
    role: &'static str,
) -> Result<DhOutput, CryptoError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*their));
    if !shared.was_contributory() {
        return Err(CryptoError::InvalidPublicKey(role));
    }
    Ok(DhOutput(Box::new(Zeroizing::new(shared.to_bytes()))))
}

macro_rules! x25519_role {
    ($role:literal, $(#[$sdoc:meta])* $secret:ident, $(#[$pdoc:meta])* $public:ident) => {
        $(#[$sdoc])*
        ///
        /// Secret: boxed, zeroized on drop, no `Debug`.
        pub struct $secret(Box<StaticSecret>);

        impl ZeroizeOnDrop for $secret {}

        impl $secret {
            /// Generates a fresh key from the given RNG.
            pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
                Self(Box::new(StaticSecret::random_from_rng(rng)))
            }

            /// The public half.
            pub fn public_key(&self) -> $public {
                $public(PublicKey::from(&*self.0).to_bytes())
            }

            /// Diffie-Hellman with any X25519 public key; rejects low-order points.
            pub fn diffie_hellman(&self, their: &impl DhPublic) -> Result<DhOutput, CryptoError> {
                exchange(&self.0, their.dh_bytes(), $role)
            }

            fn secret_bytes(&self) -> &[u8; 32] {
                self.0.as_bytes()
            }

            /// The 32 secret bytes, for a sealed wire format that carries the key
            /// (the provisioning bundle). The copy is wiped on drop.
            pub fn to_secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
                zeroize::Zeroizing::new(*self.secret_bytes())
            }

            /// The key from its 32 secret bytes (the inverse of `to_secret_bytes`).
            pub fn from_secret_bytes(bytes: &[u8; 32]) -> Self {
                Self::from_secret_box(bytes)
            }

            fn from_secret_box(bytes: &[u8; 32]) -> Self {
                Self(Box::new(StaticSecret::from(*bytes)))
            }
        }

        serde_secret!($secret, 32);

        $(#[$pdoc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $public([u8; 32]);

        impl $public {
            /// Wraps 32 public key bytes received from the wire.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// Parses a slice that must be exactly 32 bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
                <[u8; 32]>::try_from(bytes).map(Self).map_err(|_| CryptoError::InvalidLength {
                    what: $role,
                    expected: 32,
                    actual: bytes.len(),
                })
            }

            /// The public key bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl DhPublic for $public {
            fn dh_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Debug for $public {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($public), crate::display::short_hex(&self.0))
            }
        }

        serde_public!($public, 32);
    };
}

x25519_role!(
    "identity DH",
    /// The identity's long-term X25519 key, shared by every device; used in handshakes.
    IdentityDhSecret,
    /// Public half of [`IdentityDhSecret`], signed by the root key.
    IdentityDhPublic
);
x25519_role!(
    "signed prekey",
    /// A medium-term X25519 prekey, signed by the root key and rotated on a schedule.
    SignedPrekeySecret,
    /// Public half of [`SignedPrekeySecret`].
    SignedPrekeyPublic
);
x25519_role!(
    "one-time prekey",
    /// An X25519 prekey the relay hands out at most once.
    OneTimePrekeySecret,
    /// Public half of [`OneTimePrekeySecret`].
    OneTimePrekeyPublic
);
x25519_role!(
    "ephemeral",
    /// The initiator's per-handshake X25519 key (the "base key").
    EphemeralSecret,
    /// Public half of [`EphemeralSecret`].
    EphemeralPublic
);
x25519_role!(
    "ratchet",
    /// Our side of one Double Ratchet DH step.
    RatchetSecret,
    /// A ratchet public key: ours as advertised, or theirs as received.
    RatchetPublic
);
x25519_role!(
    "device DH",
    /// A device's own X25519 key, which never leaves it; sealed boxes (epoch keys,
    /// provisioning bundles) are addressed to it.
    DeviceDhSecret,
    /// Public half of [`DeviceDhSecret`].
    DeviceDhPublic
);

impl SignedPrekeySecret {
    /// The responder's signed prekey is the root of its ratchet tree (Signal's
    /// specification: Bob's first ratchet key pair is his signed prekey).
    pub fn to_ratchet_secret(&self) -> RatchetSecret {
        RatchetSecret(Box::new(StaticSecret::from(*self.0.as_bytes())))
    }
}

impl SignedPrekeyPublic {
    /// The signed prekey as the first node of the initiator's view of the ratchet tree.
    pub const fn to_ratchet_public(&self) -> RatchetPublic {
        RatchetPublic(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn both_sides_of_an_exchange_agree() {
        let mut rng = StdRng::seed_from_u64(1);
        let a = RatchetSecret::generate(&mut rng);
        let b = IdentityDhSecret::generate(&mut rng);
        let ab = a.diffie_hellman(&b.public_key()).unwrap();
        let ba = b.diffie_hellman(&a.public_key()).unwrap();
        assert_eq!(*ab.0, *ba.0);
    }

    #[test]
    fn a_low_order_point_is_rejected() {
        let mut rng = StdRng::seed_from_u64(2);
        let a = RatchetSecret::generate(&mut rng);
        let zero = RatchetPublic::from_bytes([0u8; 32]);
        assert_eq!(
            a.diffie_hellman(&zero).err(),
            Some(CryptoError::InvalidPublicKey("ratchet"))
        );
    }

    #[test]
    fn public_key_from_a_short_slice_names_the_role() {
        let err = SignedPrekeyPublic::from_slice(&[1, 2, 3]).unwrap_err();
        assert_eq!(
            err,
            CryptoError::InvalidLength {
                what: "signed prekey",
                expected: 32,
                actual: 3
            }
        );
    }

    #[test]
    fn a_secret_survives_a_serde_round_trip() {
        let mut rng = StdRng::seed_from_u64(3);
        let a = RatchetSecret::generate(&mut rng);
        let bytes = postcard::to_allocvec(&a).unwrap();
        let b: RatchetSecret = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }
}
