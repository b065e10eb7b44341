//! Key derivation for the hybrid (PQXDH-style) handshake.
//!
//! The handshake's DH outputs and the KEM secret are concatenated in a fixed order and
//! fed to HKDF-SHA256. Following X3DH/PQXDH, Chorus prefixes 32 `0xFF` bytes (so the
//! input can never collide with an XEdDSA-style key derivation); the Olm profile does
//! not, to match Olm's 3DH.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::kdf_label::KdfLabel;
use crate::kem::KemSharedSecret;
use crate::ratchet::{ChainKey, RemoteChainKey, RootKey, split64};
use crate::x25519::DhOutput;

/// Accumulates handshake secrets in order, then derives the first root key.
///
/// Secret: zeroized on drop, no `Debug`.
pub struct HandshakeSecret {
    ikm: Zeroizing<Vec<u8>>,
    label: KdfLabel,
}

impl ZeroizeOnDrop for HandshakeSecret {}

impl HandshakeSecret {
    /// Starts a handshake secret under a profile's labels.
    pub fn new(label: KdfLabel) -> Self {
        // Reserve once so the buffer never reallocates and leaves an unzeroized copy.
        let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 6));
        if label.x3dh_prefix {
            ikm.extend_from_slice(&[0xFF; 32]);
        }
        Self { ikm, label }
    }

    /// Appends one DH output.
    pub fn mix_dh(&mut self, dh: &DhOutput) {
        self.ikm.extend_from_slice(&dh.0[..]);
    }

    /// Appends the KEM shared secret.
    pub fn mix_kem(&mut self, ss: &KemSharedSecret) {
        self.ikm.extend_from_slice(&ss.0[..]);
    }

    fn expand(&self) -> Zeroizing<[u8; 64]> {
        let hk = Hkdf::<Sha256>::new(None, &self.ikm);
        let mut okm = Zeroizing::new([0u8; 64]);
        // 64 bytes is far below HKDF-SHA256's output limit; this cannot fail.
        #[allow(clippy::expect_used)]
        hk.expand(self.label.handshake, &mut okm[..])
            .expect("64 bytes is a valid HKDF length");
        okm
    }

    /// Chorus: the first root key (the rest of the 64 bytes is unused). The first chain
    /// comes from the initiator's first DH ratchet step on the responder's signed prekey.
    pub fn into_root_key(self) -> RootKey {
        let (root, _) = split64(&self.expand());
        RootKey::from_key(root)
    }

    /// Olm: root key and the initiator's first sending chain, straight from the 3DH.
    pub fn into_initiator_keys(self) -> (RootKey, ChainKey) {
        let (root, chain) = split64(&self.expand());
        (RootKey::from_key(root), ChainKey::from_key(chain))
    }

    /// Olm: root key and the initiator's first chain as the responder tracks it.
    pub fn into_responder_keys(self) -> (RootKey, RemoteChainKey) {
        let (root, chain) = split64(&self.expand());
        (RootKey::from_key(root), RemoteChainKey::from_key(chain))
    }
}
