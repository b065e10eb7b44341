//! How public values appear in `Debug` output and logs: short, never whole keys.

/// First 4 bytes as hex: how public keys appear in `Debug` output and logs.
pub(crate) fn short_hex(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}
