//! The recovery code of a `primary-root` identity (DESIGN §3, issue 13 item 5).
//!
//! In `primary-root` the root key lives on one device; losing it would mean a new
//! identity. At `init` the primary shows a recovery code once: [`RECOVERY_CODE_LEN`]
//! random bytes (160 bits), which the person writes down. Two things derive from it:
//!
//! * the **slot**, a public 32-byte name under which the relay keeps the identity's
//!   recovery kit (the relay learns the slot, never the code: the slot is a one-way
//!   derivation, and guessing a code means guessing 160 bits);
//! * the **recovery key**, an X25519 key pair. The kit (the root key and what a new
//!   device needs to be the identity) is sealed to its public half by the primary, and
//!   every device seals the log's current epoch key to it whenever that key changes, so
//!   the device that recovers can read the log from the latest recovery checkpoint on.
//!   Sealed boxes address it as they address a device, so it is a [`DeviceDhSecret`]:
//!   the key of a device that exists only on paper until the day it is needed.

use rand_core::CryptoRng;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::kdf_label::expand32;
use crate::x25519::DeviceDhSecret;

/// Random bytes in a recovery code (160 bits: more than the 128 the design asks for).
pub const RECOVERY_CODE_LEN: usize = 20;

const SLOT_INFO: &[u8] = b"Chorus_RecoverySlot_v1";
const DH_INFO: &[u8] = b"Chorus_RecoveryKey_v1";

/// A recovery code's secret bytes. Secret: boxed, zeroized on drop, no `Debug`.
pub struct RecoveryCode(Box<Zeroizing<[u8; RECOVERY_CODE_LEN]>>);

impl ZeroizeOnDrop for RecoveryCode {}

impl RecoveryCode {
    /// A fresh random code.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = Box::new(Zeroizing::new([0u8; RECOVERY_CODE_LEN]));
        rng.fill_bytes(&mut k[..]);
        Self(k)
    }

    /// The code from its bytes (as the person typed them, decoded).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != RECOVERY_CODE_LEN {
            return Err(CryptoError::InvalidLength {
                what: "recovery code",
                expected: RECOVERY_CODE_LEN,
                actual: bytes.len(),
            });
        }
        let mut k = Box::new(Zeroizing::new([0u8; RECOVERY_CODE_LEN]));
        k.copy_from_slice(bytes);
        Ok(Self(k))
    }

    /// The bytes, to show as text once. The copy is wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<[u8; RECOVERY_CODE_LEN]> {
        Zeroizing::new(**self.0)
    }

    fn expand(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        expand32(&self.0[..], info)
    }

    /// The public name of the identity's recovery kit at its relay.
    pub fn slot(&self) -> [u8; 32] {
        *self.expand(SLOT_INFO)
    }

    /// The recovery key: the kit and the epoch keys are sealed to its public half.
    pub fn key(&self) -> DeviceDhSecret {
        DeviceDhSecret::from_secret_bytes(&self.expand(DH_INFO))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn the_slot_and_the_key_are_fixed_by_the_code_and_differ_between_codes() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = RecoveryCode::generate(&mut rng);
        let again = RecoveryCode::from_slice(&a.to_bytes()[..]).unwrap();
        assert_eq!(a.slot(), again.slot());
        assert_eq!(a.key().public_key(), again.key().public_key());
        let b = RecoveryCode::generate(&mut rng);
        assert_ne!(a.slot(), b.slot());
        assert_ne!(a.key().public_key(), b.key().public_key());
        // The slot names the kit publicly; it must not be the key.
        assert_ne!(&a.slot(), a.key().public_key().as_bytes());
    }

    #[test]
    fn a_code_of_the_wrong_length_is_refused() {
        assert!(matches!(
            RecoveryCode::from_slice(&[0u8; RECOVERY_CODE_LEN - 1]),
            Err(CryptoError::InvalidLength { actual: 19, .. })
        ));
    }
}
