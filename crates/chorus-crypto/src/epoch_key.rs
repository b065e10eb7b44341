//! The constellation log's epoch key (DESIGN §3, §4).
//!
//! Every current device of an identity holds the epoch key; the relay never does. It
//! encrypts each log event with AES-256-GCM under a fresh random nonce (the record
//! carries the nonce), with associated data the caller builds from what the relay stores
//! beside the ciphertext (author, epoch, guard), so the relay cannot move a ciphertext to
//! another author, epoch or stream. It also names streams: a guard's `stream_tag` is an
//! HMAC of the stream name, so the relay enforces per-stream concurrency without learning
//! which contact a stream is.
//!
//! The two uses get independent keys, derived with HKDF-SHA256 from the epoch key.

use hmac::{Hmac, KeyInit, Mac};
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::aead::{NONCE_LEN, TAG_LEN, gcm_open, gcm_seal};
use crate::kdf_label::expand32;

const ENCRYPTION_INFO: &[u8] = b"Chorus_EpochKey_Encryption_v1";
const STREAM_TAG_INFO: &[u8] = b"Chorus_EpochKey_StreamTag_v1";
const COMMITMENT_INFO: &[u8] = b"Chorus_EpochKey_Commitment_v1";

/// The log epoch key.
///
/// Secret: boxed, zeroized on drop, no `Debug`.
pub struct EpochKey {
    raw: Box<Zeroizing<[u8; 32]>>,
    encryption: Box<Zeroizing<[u8; 32]>>,
    stream_tag: Box<Zeroizing<[u8; 32]>>,
}

impl ZeroizeOnDrop for EpochKey {}

fn derive(raw: &[u8; 32], info: &[u8]) -> Box<Zeroizing<[u8; 32]>> {
    Box::new(expand32(raw, info))
}

impl EpochKey {
    /// A fresh random epoch key (genesis, rotation).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut raw = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut raw[..]);
        Self::from_bytes(&raw)
    }

    /// The key from its 32 bytes (as opened from a sealed box addressed to this device).
    pub fn from_bytes(raw: &[u8; 32]) -> Self {
        Self {
            raw: Box::new(Zeroizing::new(*raw)),
            encryption: derive(raw, ENCRYPTION_INFO),
            stream_tag: derive(raw, STREAM_TAG_INFO),
        }
    }

    /// The 32 bytes, to seal to another device. The copy is zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(**self.raw)
    }

    /// Encrypts an event: returns the random nonce and ciphertext ‖ tag.
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        ad: &[u8],
        plaintext: &[u8],
        rng: &mut R,
    ) -> ([u8; NONCE_LEN], Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut body = plaintext.to_vec();
        gcm_seal(&self.encryption, &nonce, ad, &mut body);
        (nonce, body)
    }

    /// Decrypts an event sealed under this key with the same associated data.
    pub fn open(
        &self,
        ad: &[u8],
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| CryptoError::InvalidLength {
            what: "log record nonce",
            expected: NONCE_LEN,
            actual: nonce.len(),
        })?;
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::CiphertextTooShort {
                minimum: TAG_LEN,
                actual: ciphertext.len(),
            });
        }
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        gcm_open(&self.encryption, &nonce, ad, &mut buf)?;
        Ok(buf)
    }

    /// A public commitment to the key (a rotation carries it): every device checks the
    /// key it opened against it, so a sibling cannot hand devices different keys unseen.
    /// It reveals nothing of the key (an HKDF output under its own label).
    pub fn commitment(&self) -> [u8; 32] {
        **derive(&self.raw, COMMITMENT_INFO)
    }

    /// The opaque tag of a stream (e.g. one contact's session) for relay guards.
    pub fn stream_tag(&self, stream: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length; a 32-byte key cannot fail.
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.stream_tag[..])
            .expect("HMAC takes any key length");
        mac.update(stream);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn an_event_opens_only_under_its_key_and_associated_data() {
        let mut rng = StdRng::seed_from_u64(1);
        let k = EpochKey::generate(&mut rng);
        let (nonce, ct) = k.seal(b"author|epoch|guard", b"event", &mut rng);
        assert_eq!(
            &k.open(b"author|epoch|guard", &nonce, &ct).unwrap()[..],
            b"event"
        );
        assert!(k.open(b"other author", &nonce, &ct).is_err());
        assert!(
            EpochKey::generate(&mut rng)
                .open(b"author|epoch|guard", &nonce, &ct)
                .is_err()
        );
        let mut flipped = ct.clone();
        flipped[0] ^= 1;
        assert!(k.open(b"author|epoch|guard", &nonce, &flipped).is_err());
        assert!(k.open(b"a", &nonce[..11], &ct).is_err());
        assert!(k.open(b"a", &nonce, &ct[..TAG_LEN - 1]).is_err());
    }

    #[test]
    fn stream_tags_are_stable_per_key_and_differ_across_streams_and_epochs() {
        let mut rng = StdRng::seed_from_u64(2);
        let k = EpochKey::generate(&mut rng);
        let same = EpochKey::from_bytes(&k.to_bytes());
        assert_eq!(
            k.stream_tag(b"session/alice"),
            same.stream_tag(b"session/alice")
        );
        assert_ne!(k.stream_tag(b"session/alice"), k.stream_tag(b"session/bob"));
        let next = EpochKey::generate(&mut rng);
        assert_ne!(
            k.stream_tag(b"session/alice"),
            next.stream_tag(b"session/alice")
        );
        // The tag key is not the encryption key: a tag reveals nothing usable to decrypt.
        assert_ne!(&k.stream_tag(b"")[..], &k.encryption[..]);
        // The commitment names the key and nothing derived from it for another use.
        assert_eq!(k.commitment(), same.commitment());
        assert_ne!(k.commitment(), next.commitment());
        assert_ne!(&k.commitment()[..], &k.encryption[..]);
        assert_ne!(&k.commitment()[..], &k.stream_tag[..]);
    }
}
