//! The key that encrypts a device's local store at rest.
//!
//! A device's secrets (identity keys, sessions, prekeys) live in its local SQLite file,
//! each value sealed with AES-256-GCM under this key and a fresh random nonce, with
//! associated data naming the row it belongs to (so a sealed value cannot be moved to
//! another row unnoticed). The key comes either from a key file (32 random bytes, kept
//! with mode 0600 by the client) or from a passphrase through Argon2id.

use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::CryptoRng;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::aead::{NONCE_LEN, TAG_LEN, gcm_open, gcm_seal};

/// Argon2id memory cost in KiB (64 MiB: OWASP's first recommended configuration).
pub const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes.
pub const ARGON2_ITERATIONS: u32 = 3;
/// Length of the random salt stored beside a passphrase-protected store.
pub const PASSPHRASE_SALT_LEN: usize = 16;
/// Bytes [`StoreKey::seal`] adds: the nonce and the tag.
pub const STORE_SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The local store's encryption key.
///
/// Secret: boxed, zeroized on drop, no `Debug`.
pub struct StoreKey(Box<Zeroizing<[u8; 32]>>);

impl ZeroizeOnDrop for StoreKey {}

impl StoreKey {
    /// A fresh random key (for a new key file).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = Box::new(Zeroizing::new([0u8; 32]));
        rng.fill_bytes(&mut k[..]);
        Self(k)
    }

    /// Reads a key file's contents, which must be exactly 32 bytes.
    pub fn from_key_file(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::InvalidLength {
                what: "store key file",
                expected: 32,
                actual: bytes.len(),
            });
        }
        let mut k = Box::new(Zeroizing::new([0u8; 32]));
        k.copy_from_slice(bytes);
        Ok(Self(k))
    }

    /// The bytes to write to a key file. The copy is zeroized when dropped.
    pub fn to_key_file(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_vec())
    }

    /// Derives the key from a passphrase and the store's salt with Argon2id
    /// ([`ARGON2_MEMORY_KIB`], [`ARGON2_ITERATIONS`], one lane).
    pub fn from_passphrase(
        passphrase: &[u8],
        salt: &[u8; PASSPHRASE_SALT_LEN],
    ) -> Result<Self, CryptoError> {
        Self::from_passphrase_with(passphrase, salt, ARGON2_MEMORY_KIB, ARGON2_ITERATIONS)
    }

    /// As [`from_passphrase`](Self::from_passphrase) with explicit costs (tests use small ones).
    pub fn from_passphrase_with(
        passphrase: &[u8],
        salt: &[u8; PASSPHRASE_SALT_LEN],
        memory_kib: u32,
        iterations: u32,
    ) -> Result<Self, CryptoError> {
        let params = Params::new(memory_kib, iterations, 1, Some(32))
            .map_err(|_| CryptoError::KeyDerivation("invalid Argon2id cost parameters"))?;
        let mut k = Box::new(Zeroizing::new([0u8; 32]));
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, salt, &mut k[..])
            .map_err(|_| CryptoError::KeyDerivation("Argon2id refused the passphrase or salt"))?;
        Ok(Self(k))
    }

    /// Seals `plaintext` for the row named by `ad`: nonce ‖ ciphertext ‖ tag.
    pub fn seal<R: CryptoRng + ?Sized>(&self, ad: &[u8], plaintext: &[u8], rng: &mut R) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut body = plaintext.to_vec();
        gcm_seal(&self.0, &nonce, ad, &mut body);
        let mut out = Vec::with_capacity(NONCE_LEN + body.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    /// Opens a value sealed by [`seal`](Self::seal) for the same row.
    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < STORE_SEAL_OVERHEAD {
            return Err(CryptoError::CiphertextTooShort {
                minimum: STORE_SEAL_OVERHEAD,
                actual: sealed.len(),
            });
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        let mut buf = Zeroizing::new(body.to_vec());
        gcm_open(&self.0, &n, ad, &mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn a_sealed_value_opens_only_for_its_own_row_and_key() {
        let mut rng = StdRng::seed_from_u64(1);
        let key = StoreKey::generate(&mut rng);
        let sealed = key.seal(b"sessions/alice", b"state", &mut rng);
        assert_eq!(sealed.len(), 5 + STORE_SEAL_OVERHEAD);
        assert_eq!(&key.open(b"sessions/alice", &sealed).unwrap()[..], b"state");
        assert_eq!(
            key.open(b"sessions/bob", &sealed).unwrap_err(),
            CryptoError::AuthenticationFailed
        );
        let other = StoreKey::generate(&mut rng);
        assert_eq!(
            other.open(b"sessions/alice", &sealed).unwrap_err(),
            CryptoError::AuthenticationFailed
        );
    }

    #[test]
    fn a_key_file_round_trips_and_a_wrong_length_is_refused() {
        let mut rng = StdRng::seed_from_u64(2);
        let key = StoreKey::generate(&mut rng);
        let again = StoreKey::from_key_file(&key.to_key_file()).unwrap();
        let sealed = key.seal(b"", b"x", &mut rng);
        assert_eq!(&again.open(b"", &sealed).unwrap()[..], b"x");
        assert_eq!(
            StoreKey::from_key_file(&[0u8; 31]).err(),
            Some(CryptoError::InvalidLength {
                what: "store key file",
                expected: 32,
                actual: 31
            })
        );
    }

    #[test]
    fn the_same_passphrase_and_salt_give_the_same_key_and_another_passphrase_does_not() {
        let salt = [7u8; PASSPHRASE_SALT_LEN];
        let mut rng = StdRng::seed_from_u64(3);
        let a = StoreKey::from_passphrase_with(b"correct horse", &salt, 64, 1).unwrap();
        let b = StoreKey::from_passphrase_with(b"correct horse", &salt, 64, 1).unwrap();
        let c = StoreKey::from_passphrase_with(b"battery staple", &salt, 64, 1).unwrap();
        let sealed = a.seal(b"meta", b"check", &mut rng);
        assert!(b.open(b"meta", &sealed).is_ok());
        assert_eq!(
            c.open(b"meta", &sealed).unwrap_err(),
            CryptoError::AuthenticationFailed
        );
    }

    #[test]
    fn argon2_costs_below_its_minimum_are_refused() {
        let salt = [7u8; PASSPHRASE_SALT_LEN];
        assert_eq!(
            StoreKey::from_passphrase_with(b"x", &salt, 1, 1).err(),
            Some(CryptoError::KeyDerivation(
                "invalid Argon2id cost parameters"
            ))
        );
    }

    #[test]
    fn a_truncated_value_is_refused_with_its_length() {
        let mut rng = StdRng::seed_from_u64(4);
        let key = StoreKey::generate(&mut rng);
        assert_eq!(
            key.open(b"", &[0u8; 10]).unwrap_err(),
            CryptoError::CiphertextTooShort {
                minimum: STORE_SEAL_OVERHEAD,
                actual: 10
            }
        );
    }
}
