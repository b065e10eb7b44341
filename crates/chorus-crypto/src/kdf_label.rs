//! The HKDF info labels that tell one protocol profile's derivations from another's:
//! used by the handshake (first root key) and by every ratchet step.

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
