//! Fingerprints and safety numbers.
//!
//! An identity's fingerprint is derived from its root public key only (device keys
//! change; the identity does not). Like Signal's, it is an iterated hash (5,200 rounds
//! of SHA-512), which makes grinding a look-alike key expensive, shown as 30 digits.
//! A safety number for a pair of identities is both fingerprints, ordered so both sides
//! see the same 60 digits.

use core::fmt;

use sha2::{Digest, Sha512};

use crate::ed25519::RootPublicKey;

const ITERATIONS: usize = 5200;
const VERSION: [u8; 2] = [0, 1];

/// The 30-digit fingerprint of one identity.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint([u8; 30]);

impl Fingerprint {
    /// Computes the fingerprint of an identity's root key.
    pub fn of(root: &RootPublicKey) -> Self {
        let mut hash = Sha512::new()
            .chain_update(VERSION)
            .chain_update(root.as_bytes())
            .chain_update(b"Chorus_Fingerprint")
            .finalize();
        for _ in 0..ITERATIONS {
            hash = Sha512::new()
                .chain_update(hash)
                .chain_update(root.as_bytes())
                .finalize();
        }
        let mut out = [0u8; 30];
        out.copy_from_slice(&hash[..30]);
        Self(out)
    }

    /// The 30 digits, no spaces (used in addresses `digits@relay`).
    pub fn digits(&self) -> String {
        self.0
            .chunks(5)
            .map(|c| {
                let v = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                format!("{:05}", v % 100_000)
            })
            .collect()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.digits();
        for (i, chunk) in d.as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(core::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The safety number two identities compare out of band: 60 digits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SafetyNumber {
    first: Fingerprint,
    second: Fingerprint,
}

impl SafetyNumber {
    /// Both parties compute the same number regardless of who is "ours".
    pub fn new(ours: &RootPublicKey, theirs: &RootPublicKey) -> Self {
        let (a, b) = (Fingerprint::of(ours), Fingerprint::of(theirs));
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        Self { first, second }
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.first, self.second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RootSigningKey;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn both_parties_compute_the_same_safety_number() {
        let mut rng = StdRng::seed_from_u64(31);
        let a = RootSigningKey::generate(&mut rng).public_key();
        let b = RootSigningKey::generate(&mut rng).public_key();
        assert_eq!(SafetyNumber::new(&a, &b), SafetyNumber::new(&b, &a));
        assert_eq!(SafetyNumber::new(&a, &b).to_string().len(), 60 + 11);
        assert_ne!(Fingerprint::of(&a), Fingerprint::of(&b));
        assert_eq!(Fingerprint::of(&a).digits().len(), 30);
    }
}
