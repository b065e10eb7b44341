//! The key of one file sent with a message (issue 15 item 4).
//!
//! A file is encrypted on the sending device under a fresh random key, in parts of
//! a fixed plaintext size, with the STREAM construction of Hoang, Reyhanitabar,
//! Rogaway and Vizár (RustCrypto's `aead-stream`, `StreamBE32` over AES-256-GCM):
//! every part's nonce carries its index and whether it is the last part, so parts
//! cannot be reordered, dropped, repeated or cut short without the reader noticing,
//! and both ends hold one part in memory at a time. The associated data is the
//! file's locator on the relay, so a part opens only as the part of this file.
//!
//! The key, the plaintext's SHA-256 ([`FileDigest`]) and the locator travel inside
//! the message; the relay holds only the parts.

use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::{Aes256Gcm, KeyInit};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;

/// The associated data's label, before the locator.
const FILE_AD_LABEL: &[u8] = b"Chorus_File_v1";

/// A file's key. Secret: boxed, zeroized on drop, no `Debug`.
pub struct FileKey(Box<Zeroizing<[u8; 32]>>);

impl ZeroizeOnDrop for FileKey {}

impl FileKey {
    /// A fresh random key (one per file: the nonces restart at zero in every file).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = Box::new(Zeroizing::new([0u8; 32]));
        rng.fill_bytes(&mut k[..]);
        Self(k)
    }

    /// The key from its bytes (as a message carries them).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Box::new(Zeroizing::new(*bytes)))
    }

    /// The bytes, for the message. The copy is wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(**self.0)
    }

    fn stream(&self) -> StreamBE32<Aes256Gcm> {
        let aead = Aes256Gcm::new((&**self.0).into());
        // A key is used for one file only, so the nonce prefix may be constant.
        StreamBE32::from_aead(aead, &Default::default())
    }

    /// Encrypts part `index` of the file at `locator` in place (`last`: the file's
    /// final part), appending the tag.
    pub fn seal_part(
        &self,
        locator: &[u8; 32],
        index: u32,
        last: bool,
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        self.stream()
            .encrypt_in_place(index, last, &ad(locator), buf)
            .map_err(|_| CryptoError::AuthenticationFailed)
    }

    /// Opens what [`Self::seal_part`] made for the same locator, index and `last`;
    /// anything else (another file's part, another position, a part cut short or
    /// changed) fails and leaves `buf` unusable.
    pub fn open_part(
        &self,
        locator: &[u8; 32],
        index: u32,
        last: bool,
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        self.stream()
            .decrypt_in_place(index, last, &ad(locator), buf)
            .map_err(|_| CryptoError::AuthenticationFailed)
    }
}

fn ad(locator: &[u8; 32]) -> Vec<u8> {
    [FILE_AD_LABEL, &locator[..]].concat()
}

/// The SHA-256 of a file's plaintext, computed as the parts go by.
#[derive(Clone, Default)]
pub struct FileDigest(Sha256);

impl FileDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything added.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn sealed(k: &FileKey, locator: &[u8; 32], index: u32, last: bool, text: &[u8]) -> Vec<u8> {
        let mut buf = text.to_vec();
        k.seal_part(locator, index, last, &mut buf).unwrap();
        buf
    }

    #[test]
    fn a_part_opens_only_at_its_place_in_its_file_under_its_key() {
        let mut rng = StdRng::seed_from_u64(9);
        let k = FileKey::generate(&mut rng);
        let (here, there) = ([1; 32], [2; 32]);
        let part = sealed(&k, &here, 3, false, b"part three");
        let open = |k: &FileKey, locator, index, last, bytes: &[u8]| {
            let mut buf = bytes.to_vec();
            k.open_part(locator, index, last, &mut buf).map(|()| buf)
        };
        assert_eq!(open(&k, &here, 3, false, &part).unwrap(), b"part three");
        // Moved to another place, made the last, put in another file, opened under
        // another key, changed or cut short: refused.
        assert!(open(&k, &here, 2, false, &part).is_err());
        assert!(open(&k, &here, 3, true, &part).is_err());
        assert!(open(&k, &there, 3, false, &part).is_err());
        assert!(open(&FileKey::generate(&mut rng), &here, 3, false, &part).is_err());
        let mut changed = part.clone();
        changed[0] ^= 1;
        assert!(open(&k, &here, 3, false, &changed).is_err());
        assert!(open(&k, &here, 3, false, &part[..part.len() - 1]).is_err());
        assert!(open(&k, &here, 3, false, &[]).is_err());
        let again = FileKey::from_bytes(&k.to_bytes());
        assert_eq!(open(&again, &here, 3, false, &part).unwrap(), b"part three");
    }

    #[test]
    fn the_digest_does_not_depend_on_how_the_file_is_cut() {
        let mut whole = FileDigest::new();
        whole.update(b"hello world");
        let mut parts = FileDigest::new();
        parts.update(b"hello");
        parts.update(b" world");
        assert_eq!(whole.finish(), parts.finish());
    }
}
