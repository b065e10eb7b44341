//! The HKDF info labels that tell one protocol profile's derivations from another's:
//! used by the handshake (first root key) and by every ratchet step; and the one
//! 32-byte expansion the keys derived from one secret share ([`expand32`]).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// HKDF-SHA256 of `ikm` (no salt) expanded to 32 bytes under `info`: one key of
/// several derived from one secret (an epoch key's, a recovery code's, an invitation's).
pub(crate) fn expand32(ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's output limit; this cannot fail.
    #[allow(clippy::expect_used)]
    Hkdf::<Sha256>::new(None, ikm)
        .expand(info, &mut out[..])
        .expect("32 bytes is a valid HKDF length");
    out
}

/// HKDF info labels of one protocol profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfLabel {
    /// Info for the handshake secret → first root key.
    pub handshake: &'static [u8],
    /// Info for every DH ratchet step.
    pub ratchet: &'static [u8],
    /// Whether the handshake input starts with 32 `0xFF` bytes (X3DH's `F`).
    pub x3dh_prefix: bool,
}

impl KdfLabel {
    /// Chorus v1.
    pub const CHORUS: KdfLabel = KdfLabel {
        handshake: b"Chorus_PQXDH_X25519_MLKEM768_SHA256_v1",
        ratchet: b"Chorus_Ratchet_v1",
        x3dh_prefix: true,
    };
    /// Olm v1, as implemented by libolm and vodozemac.
    pub const OLM: KdfLabel = KdfLabel {
        handshake: b"OLM_ROOT",
        ratchet: b"OLM_RATCHET",
        x3dh_prefix: false,
    };
}
