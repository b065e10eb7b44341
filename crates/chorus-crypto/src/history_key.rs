//! The key of one history archive (issue 13 item 6).
//!
//! When a device is linked, the approving device packs the conversation history into
//! chunks, seals each under a fresh archive key and uploads them as blobs of the log;
//! the key travels in the provisioning bundle. Its own key rather than the epoch key,
//! so a link interrupted midway resumes after a rotation, and so the archive's
//! ciphertexts are bound to nothing else the log holds.

use rand_core::CryptoRng;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::aead::{open_with_nonce, seal_with_nonce};

/// A history archive's key. Secret: boxed, zeroized on drop, no `Debug`.
pub struct HistoryKey(Box<Zeroizing<[u8; 32]>>);

impl ZeroizeOnDrop for HistoryKey {}

impl HistoryKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = Box::new(Zeroizing::new([0u8; 32]));
        rng.fill_bytes(&mut k[..]);
        Self(k)
    }

    /// The key from its bytes (as the bundle carries them).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Box::new(Zeroizing::new(*bytes)))
    }

    /// The bytes, for the bundle. The copy is wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(**self.0)
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
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn a_chunk_opens_only_under_its_key_and_associated_data() {
        let mut rng = StdRng::seed_from_u64(3);
        let k = HistoryKey::generate(&mut rng);
        let sealed = k.seal(b"blob 1", b"history", &mut rng);
        assert_eq!(&k.open(b"blob 1", &sealed).unwrap()[..], b"history");
        assert!(k.open(b"blob 2", &sealed).is_err());
        let other = HistoryKey::generate(&mut rng);
        assert!(other.open(b"blob 1", &sealed).is_err());
        assert!(k.open(b"blob 1", &sealed[..10]).is_err());
        let again = HistoryKey::from_bytes(&k.to_bytes());
        assert_eq!(&again.open(b"blob 1", &sealed).unwrap()[..], b"history");
    }
}
