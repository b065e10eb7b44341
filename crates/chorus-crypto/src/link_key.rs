//! The key of one device-linking channel (DESIGN §7).
//!
//! The new device's ephemeral X25519 key travels in the link code (which the user
//! carries from one screen to the other); the approving device's ephemeral key arrives
//! over the relay's rendezvous channel after a commitment to it. Both derive this key
//! from the DH of the two ephemeral keys and the hash of the channel transcript, so the
//! provisioning bundle sealed under it opens only on the device that showed the code and
//! only for the transcript whose SAS the user compared.

use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::aead::{open_with_nonce, seal_with_nonce};
use crate::x25519::DhOutput;

const INFO: &[u8] = b"Chorus_LinkKey_v1";

/// The linking channel's key. Secret: boxed, zeroized on drop, no `Debug`.
pub struct LinkKey(Box<Zeroizing<[u8; 32]>>);

impl ZeroizeOnDrop for LinkKey {}

impl LinkKey {
    /// Derives the key from the ephemeral DH and the transcript hash.
    pub fn derive(dh: &DhOutput, transcript_hash: &[u8; 32]) -> Self {
        let mut out = Box::new(Zeroizing::new([0u8; 32]));
        // 32 bytes is far below HKDF-SHA256's output limit; this cannot fail.
        #[allow(clippy::expect_used)]
        Hkdf::<Sha256>::new(Some(transcript_hash), &dh.0[..])
            .expand(INFO, &mut out[..])
            .expect("32 bytes is a valid HKDF length");
        Self(out)
    }

    /// Seals: returns nonce ‖ ciphertext ‖ tag.
    pub fn seal<R: CryptoRng + ?Sized>(&self, ad: &[u8], plaintext: &[u8], rng: &mut R) -> Vec<u8> {
        seal_with_nonce(&self.0, ad, plaintext, rng)
    }

    /// Opens what [`Self::seal`] produced with the same associated data.
    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        open_with_nonce(&self.0, ad, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EphemeralSecret;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn both_sides_derive_one_key_and_the_transcript_binds_it() {
        let mut rng = StdRng::seed_from_u64(5);
        let (a, b) = (
            EphemeralSecret::generate(&mut rng),
            EphemeralSecret::generate(&mut rng),
        );
        let ka = LinkKey::derive(&a.diffie_hellman(&b.public_key()).unwrap(), &[1; 32]);
        let kb = LinkKey::derive(&b.diffie_hellman(&a.public_key()).unwrap(), &[1; 32]);
        let sealed = ka.seal(b"ad", b"bundle", &mut rng);
        assert_eq!(&kb.open(b"ad", &sealed).unwrap()[..], b"bundle");
        assert!(kb.open(b"other", &sealed).is_err());
        let other = LinkKey::derive(&b.diffie_hellman(&a.public_key()).unwrap(), &[2; 32]);
        assert!(other.open(b"ad", &sealed).is_err());
        assert!(kb.open(b"ad", &sealed[..20]).is_err());
    }
}
