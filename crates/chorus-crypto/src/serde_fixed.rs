//! Serde helpers for fixed-size byte arrays, used by the secret and public key types.
//!
//! Secrets are deserialized straight into their boxed, zeroize-on-drop home; the only
//! other copy is the caller's input buffer, which the encrypted store zeroizes.

use core::fmt;
use serde::de::{Error, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

pub(crate) fn deserialize_into<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
    out: &mut [u8; N],
) -> Result<(), D::Error> {
    struct FixedVisitor<'a, const N: usize>(&'a mut [u8; N]);

    impl<'de, const N: usize> Visitor<'de> for FixedVisitor<'_, N> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<(), E> {
            if v.len() != N {
                return Err(E::invalid_length(v.len(), &self));
            }
            self.0.copy_from_slice(v);
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            for i in 0..N {
                let byte = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(i, &self))?;
                self.0[i] = byte;
            }
            Ok(())
        }
    }

    deserializer.deserialize_bytes(FixedVisitor(out))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    let mut out = [0u8; N];
    deserialize_into(deserializer, &mut out)?;
    Ok(out)
}

/// Implements `Serialize`/`Deserialize` for a type wrapping a public `[u8; N]`.
macro_rules! serde_public {
    ($ty:ident, $n:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::serde_fixed::serialize::<S, { $n }>(&self.0, s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::serde_fixed::deserialize::<D, { $n }>(d).map($ty)
            }
        }
    };
}

/// Implements `Serialize`/`Deserialize` for a type wrapping a `Box<Zeroizing-ish [u8; N]>`
/// secret exposed through `fn secret_bytes(&self) -> &[u8; N]` and `fn from_secret_box`.
macro_rules! serde_secret {
    ($ty:ident, $n:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::serde_fixed::serialize::<S, { $n }>(self.secret_bytes(), s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut boxed = Box::new(zeroize::Zeroizing::new([0u8; $n]));
                $crate::serde_fixed::deserialize_into::<D, { $n }>(d, &mut boxed)?;
                Ok($ty::from_secret_box(&boxed))
            }
        }
    };
}

pub(crate) use {serde_public, serde_secret};
