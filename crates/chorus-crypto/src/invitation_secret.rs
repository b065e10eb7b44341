//! The secret of a short invitation code (issue 15: a code that fits a QR on an 80×24
//! terminal).
//!
//! An invitation (the inviter's prekey bundle, mailbox and name: ~2 KB) no longer
//! travels in the code. The inviter seals it like a one-part file
//! ([`crate::FileKey`]) under a key derived from a fresh 16-byte secret and stores it
//! on its relay under a locator derived from the same secret; the code carries only
//! the relay and the secret. Whoever holds the code finds, opens and authenticates the
//! invitation; the relay, which never sees the secret, can withhold it but not read or
//! change it.

use rand_core::CryptoRng;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::FileKey;
use crate::kdf_label::expand32;

/// Bytes of an invitation secret (128 bits).
pub const INVITATION_SECRET_LEN: usize = 16;

const LOCATOR_INFO: &[u8] = b"Chorus_InvitationLocator_v1";
const KEY_INFO: &[u8] = b"Chorus_InvitationKey_v1";

/// A short invitation code's secret. Secret: boxed, zeroized on drop, no `Debug`.
pub struct InvitationSecret(Box<Zeroizing<[u8; INVITATION_SECRET_LEN]>>);

impl ZeroizeOnDrop for InvitationSecret {}

impl InvitationSecret {
    /// A fresh random secret (one per invitation).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut s = Box::new(Zeroizing::new([0u8; INVITATION_SECRET_LEN]));
        rng.fill_bytes(&mut s[..]);
        Self(s)
    }

    /// The secret from its bytes (as a code carries them).
    pub fn from_bytes(bytes: &[u8; INVITATION_SECRET_LEN]) -> Self {
        Self(Box::new(Zeroizing::new(*bytes)))
    }

    /// The bytes, for the code. The copy is wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<[u8; INVITATION_SECRET_LEN]> {
        Zeroizing::new(**self.0)
    }

    /// Where the sealed invitation lies on the relay.
    pub fn locator(&self) -> [u8; 32] {
        *expand32(&self.0[..], LOCATOR_INFO)
    }

    /// The key the invitation is sealed under (as the one part of a file).
    pub fn key(&self) -> FileKey {
        FileKey::from_bytes(&expand32(&self.0[..], KEY_INFO))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn the_locator_and_key_follow_from_the_secret_alone() {
        let mut rng = StdRng::seed_from_u64(5);
        let s = InvitationSecret::generate(&mut rng);
        let again = InvitationSecret::from_bytes(&s.to_bytes());
        assert_eq!(s.locator(), again.locator());
        let mut sealed = b"invitation".to_vec();
        s.key()
            .seal_part(&s.locator(), 0, true, &mut sealed)
            .unwrap();
        again
            .key()
            .open_part(&again.locator(), 0, true, &mut sealed)
            .unwrap();
        assert_eq!(sealed, b"invitation");
        let other = InvitationSecret::generate(&mut rng);
        assert_ne!(other.locator(), s.locator());
        assert_ne!(
            s.locator(),
            *s.key().to_bytes(),
            "two derivations, two values"
        );
    }
}
