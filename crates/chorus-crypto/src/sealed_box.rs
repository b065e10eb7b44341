//! A sealed box to a device's X25519 key (ephemeral-static DH, HKDF, AES-256-GCM).
//!
//! Used to hand a device secrets it must hold and nobody else may read: the log's epoch
//! key on rotation, and the provisioning bundle when a device is linked. The sender is
//! anonymous at this layer; callers authenticate the content (a signed roster event, a
//! SAS-confirmed linking transcript) and bind context through the associated data.

use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::aead::{NONCE_LEN, TAG_LEN, gcm_open, gcm_seal};
use crate::x25519::{DeviceDhPublic, DeviceDhSecret, DhPublic, EphemeralPublic, EphemeralSecret};

/// Bytes a sealed box adds to its plaintext: the ephemeral public key and the tag.
pub const SEALED_BOX_OVERHEAD: usize = 32 + TAG_LEN;

const INFO: &[u8] = b"Chorus_SealedBox_v1";

fn box_keys(
    dh: &crate::DhOutput,
    eph: &[u8; 32],
    recipient: &[u8; 32],
) -> Zeroizing<[u8; 32 + NONCE_LEN]> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph);
    salt[32..].copy_from_slice(recipient);
    let hk = Hkdf::<Sha256>::new(Some(&salt), &dh.0[..]);
    let mut okm = Zeroizing::new([0u8; 32 + NONCE_LEN]);
    // 44 bytes is a valid HKDF-SHA256 output length; this cannot fail.
    #[allow(clippy::expect_used)]
    hk.expand(INFO, &mut okm[..])
        .expect("44 bytes is a valid HKDF length");
    okm
}

fn split(okm: &[u8; 32 + NONCE_LEN]) -> ([u8; 32], [u8; NONCE_LEN]) {
    let mut key = [0u8; 32];
    let mut nonce = [0u8; NONCE_LEN];
    key.copy_from_slice(&okm[..32]);
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// Seals `plaintext` so only the holder of `recipient`'s secret can open it.
pub fn seal<R: CryptoRng + ?Sized>(
    recipient: &DeviceDhPublic,
    ad: &[u8],
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, CryptoError> {
    let eph = EphemeralSecret::generate(rng);
    let eph_pub = eph.public_key();
    let dh = eph.diffie_hellman(recipient)?;
    let okm = box_keys(&dh, eph_pub.as_bytes(), recipient.dh_bytes());
    let (mut key, nonce) = split(&okm);
    let mut body = plaintext.to_vec();
    gcm_seal(&key, &nonce, ad, &mut body);
    zeroize::Zeroize::zeroize(&mut key);
    let mut out = Vec::with_capacity(32 + body.len());
    out.extend_from_slice(eph_pub.as_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens a box made by [`seal`] with the same associated data.
pub fn open_sealed(
    recipient: &DeviceDhSecret,
    ad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < SEALED_BOX_OVERHEAD {
        return Err(CryptoError::CiphertextTooShort {
            minimum: SEALED_BOX_OVERHEAD,
            actual: sealed.len(),
        });
    }
    let eph = EphemeralPublic::from_slice(&sealed[..32])?;
    let dh = recipient.diffie_hellman(&eph)?;
    let okm = box_keys(&dh, eph.as_bytes(), recipient.public_key().as_bytes());
    let (mut key, nonce) = split(&okm);
    let mut body = Zeroizing::new(sealed[32..].to_vec());
    let result = gcm_open(&key, &nonce, ad, &mut body);
    zeroize::Zeroize::zeroize(&mut key);
    result.map(|()| body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn only_the_recipient_with_matching_associated_data_opens_a_box() {
        let mut rng = StdRng::seed_from_u64(21);
        let alice = DeviceDhSecret::generate(&mut rng);
        let mallory = DeviceDhSecret::generate(&mut rng);
        let sealed = seal(&alice.public_key(), b"epoch-7", b"secret", &mut rng).unwrap();
        assert_eq!(sealed.len(), 6 + SEALED_BOX_OVERHEAD);
        assert_eq!(
            &open_sealed(&alice, b"epoch-7", &sealed).unwrap()[..],
            b"secret"
        );
        assert_eq!(
            open_sealed(&alice, b"epoch-8", &sealed).unwrap_err(),
            CryptoError::AuthenticationFailed
        );
        assert_eq!(
            open_sealed(&mallory, b"epoch-7", &sealed).unwrap_err(),
            CryptoError::AuthenticationFailed
        );
    }

    #[test]
    fn a_truncated_box_is_rejected_with_its_length() {
        let mut rng = StdRng::seed_from_u64(22);
        let alice = DeviceDhSecret::generate(&mut rng);
        assert_eq!(
            open_sealed(&alice, b"", &[0u8; 10]).unwrap_err(),
            CryptoError::CiphertextTooShort {
                minimum: SEALED_BOX_OVERHEAD,
                actual: 10
            }
        );
    }
}
