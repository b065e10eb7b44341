//! ML-KEM-768 for the post-quantum half of the hybrid handshake.
//!
//! `ml-kem` is pre-1.0 and unaudited, so it stays behind these types: the rest of the
//! workspace sees only `PqPrekeySecret`, `PqPrekeyPublic`, `KemCiphertext` and
//! `KemSharedSecret`, and the handshake combines the KEM secret with X25519 outputs, so
//! a broken KEM alone does not break a session.

use core::fmt;

use ml_kem::array::Array;
use ml_kem::{Decapsulate, DecapsulationKey, Encapsulate, EncapsulationKey, KeyExport, MlKem768};
use rand_core::CryptoRng;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::serde_fixed::serde_secret;

/// Length of an ML-KEM-768 encapsulation (public) key.
pub const KEM_PUBLIC_KEY_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
const SEED_LEN: usize = 64;

/// An ML-KEM-768 prekey (decapsulation key), stored as its 64-byte seed.
///
/// Secret: boxed, zeroized on drop, no `Debug`.
pub struct PqPrekeySecret(Box<Zeroizing<[u8; SEED_LEN]>>);

impl ZeroizeOnDrop for PqPrekeySecret {}

impl PqPrekeySecret {
    /// Generates a fresh key pair.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Box::new(Zeroizing::new([0u8; SEED_LEN]));
        rng.fill_bytes(&mut seed[..]);
        Self(seed)
    }

    fn decapsulation_key(&self) -> DecapsulationKey<MlKem768> {
        DecapsulationKey::<MlKem768>::from_seed(Array::from(**self.0))
    }

    /// The public (encapsulation) key.
    pub fn public_key(&self) -> PqPrekeyPublic {
        let bytes = self.decapsulation_key().encapsulation_key().to_bytes();
        let mut out = Box::new([0u8; KEM_PUBLIC_KEY_LEN]);
        out.copy_from_slice(&bytes);
        PqPrekeyPublic(out)
    }

    /// Recovers the shared secret from a ciphertext. ML-KEM uses implicit rejection, so
    /// a tampered ciphertext yields an unrelated secret and the handshake's AEAD fails.
    pub fn decapsulate(&self, ciphertext: &KemCiphertext) -> KemSharedSecret {
        let ct = Array::from(*ciphertext.0);
        let ss = self.decapsulation_key().decapsulate(&ct);
        let mut out = Box::new(Zeroizing::new([0u8; 32]));
        out.copy_from_slice(&ss);
        KemSharedSecret(out)
    }

    fn secret_bytes(&self) -> &[u8; SEED_LEN] {
        &self.0
    }

    fn from_secret_box(bytes: &[u8; SEED_LEN]) -> Self {
        Self(Box::new(Zeroizing::new(*bytes)))
    }
}

serde_secret!(PqPrekeySecret, SEED_LEN);

/// An ML-KEM-768 encapsulation key, signed by the root key when published.
#[derive(Clone, PartialEq, Eq)]
pub struct PqPrekeyPublic(Box<[u8; KEM_PUBLIC_KEY_LEN]>);

impl PqPrekeyPublic {
    /// Parses and validates an encapsulation key received from the wire.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; KEM_PUBLIC_KEY_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "ML-KEM-768 public key",
                expected: KEM_PUBLIC_KEY_LEN,
                actual: bytes.len(),
            })?;
        EncapsulationKey::<MlKem768>::new(&Array::from(arr))
            .map_err(|_| CryptoError::InvalidPublicKey("ML-KEM-768"))?;
        Ok(Self(Box::new(arr)))
    }

    /// The encapsulation key bytes.
    pub fn as_bytes(&self) -> &[u8; KEM_PUBLIC_KEY_LEN] {
        &self.0
    }

    /// Encapsulates a fresh shared secret to this key.
    pub fn encapsulate<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> Result<(KemCiphertext, KemSharedSecret), CryptoError> {
        let ek = EncapsulationKey::<MlKem768>::new(&Array::from(*self.0))
            .map_err(|_| CryptoError::InvalidPublicKey("ML-KEM-768"))?;
        let (ct, ss) = ek.encapsulate_with_rng(rng);
        let mut ct_out = Box::new([0u8; KEM_CIPHERTEXT_LEN]);
        ct_out.copy_from_slice(&ct);
        let mut ss_out = Box::new(Zeroizing::new([0u8; 32]));
        ss_out.copy_from_slice(&ss);
        Ok((KemCiphertext(ct_out), KemSharedSecret(ss_out)))
    }
}

impl fmt::Debug for PqPrekeyPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PqPrekeyPublic({})",
            crate::display::short_hex(&self.0[..])
        )
    }
}

/// An ML-KEM-768 ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct KemCiphertext(Box<[u8; KEM_CIPHERTEXT_LEN]>);

impl KemCiphertext {
    /// Parses a slice that must be exactly [`KEM_CIPHERTEXT_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; KEM_CIPHERTEXT_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "ML-KEM-768 ciphertext",
                expected: KEM_CIPHERTEXT_LEN,
                actual: bytes.len(),
            })?;
        Ok(Self(Box::new(arr)))
    }

    /// The ciphertext bytes.
    pub fn as_bytes(&self) -> &[u8; KEM_CIPHERTEXT_LEN] {
        &self.0
    }
}

impl fmt::Debug for KemCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KemCiphertext({})",
            crate::display::short_hex(&self.0[..])
        )
    }
}

/// The 32-byte secret both sides of an encapsulation share. Secret: no `Debug`.
pub struct KemSharedSecret(pub(crate) Box<Zeroizing<[u8; 32]>>);

impl ZeroizeOnDrop for KemSharedSecret {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn encapsulation_and_decapsulation_agree() {
        let mut rng = StdRng::seed_from_u64(11);
        let sk = PqPrekeySecret::generate(&mut rng);
        let pk = PqPrekeyPublic::from_slice(sk.public_key().as_bytes()).unwrap();
        let (ct, ss) = pk.encapsulate(&mut rng).unwrap();
        assert_eq!(*sk.decapsulate(&ct).0, *ss.0);
    }

    #[test]
    fn a_tampered_ciphertext_yields_a_different_secret() {
        let mut rng = StdRng::seed_from_u64(12);
        let sk = PqPrekeySecret::generate(&mut rng);
        let (ct, ss) = sk.public_key().encapsulate(&mut rng).unwrap();
        let mut bytes = *ct.as_bytes();
        bytes[0] ^= 1;
        let tampered = KemCiphertext::from_slice(&bytes).unwrap();
        assert_ne!(*sk.decapsulate(&tampered).0, *ss.0);
    }

    #[test]
    fn a_short_public_key_is_rejected_with_its_length() {
        assert_eq!(
            PqPrekeyPublic::from_slice(&[0u8; 10]),
            Err(CryptoError::InvalidLength {
                what: "ML-KEM-768 public key",
                expected: 1184,
                actual: 10
            })
        );
    }
}
