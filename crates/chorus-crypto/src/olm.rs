//! Olm v1 message keys, for the vodozemac interoperability profile only.
//!
//! Olm expands each message key with HKDF-SHA256 (info `OLM_KEYS`) into an AES-256 key,
//! an HMAC-SHA256 key and a CBC IV; messages are AES-256-CBC with PKCS#7 padding and
//! carry an HMAC-SHA256 over the encoded message, truncated to 8 bytes. This module
//! exists so Chorus's ratchet engine can be checked against an audited implementation
//! it did not write; Chorus itself never uses these keys.

use aes::Aes256;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::ratchet::{MessageKey, RemoteMessageKey};

/// Olm v1's truncated MAC length.
pub const MAC_LEN: usize = 8;

struct Expanded(Zeroizing<[u8; 80]>);

impl Expanded {
    fn new(message_key: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(&[0]), message_key);
        let mut okm = Zeroizing::new([0u8; 80]);
        // 80 bytes is a valid HKDF length; this cannot fail.
        #[allow(clippy::expect_used)]
        hk.expand(b"OLM_KEYS", &mut okm[..])
            .expect("80 bytes is a valid HKDF length");
        Self(okm)
    }

    fn cipher_keys(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 16]>) {
        let mut key = Zeroizing::new([0u8; 32]);
        let mut iv = Zeroizing::new([0u8; 16]);
        key.copy_from_slice(&self.0[..32]);
        iv.copy_from_slice(&self.0[64..80]);
        (key, iv)
    }

    fn mac(&self, message: &[u8]) -> [u8; MAC_LEN] {
        // HMAC accepts any key length; this cannot fail.
        #[allow(clippy::expect_used)]
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0[32..64]).expect("HMAC takes any key length");
        mac.update(message);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

/// Encrypts a plaintext under a sending message key (AES-256-CBC, PKCS#7).
pub fn encrypt(key: &MessageKey, plaintext: &[u8]) -> Vec<u8> {
    let k = Expanded::new(&key.key);
    let (aes_key, iv) = k.cipher_keys();
    let cipher = cbc::Encryptor::<Aes256>::new((&*aes_key).into(), (&*iv).into());
    cipher.encrypt_padded_vec::<Pkcs7>(plaintext)
}

/// The truncated MAC over an encoded message, under a sending message key.
pub fn mac(key: &MessageKey, encoded: &[u8]) -> [u8; MAC_LEN] {
    Expanded::new(&key.key).mac(encoded)
}

/// Verifies the truncated MAC, then decrypts.
pub fn decrypt(
    key: &RemoteMessageKey,
    encoded: &[u8],
    tag: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let k = Expanded::new(&key.key);
    if !bool::from(k.mac(encoded).ct_eq(tag)) {
        return Err(CryptoError::AuthenticationFailed);
    }
    let (aes_key, iv) = k.cipher_keys();
    let cipher = cbc::Decryptor::<Aes256>::new((&*aes_key).into(), (&*iv).into());
    cipher
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::AuthenticationFailed)
}
