//! Short authentication strings for linking a device.
//!
//! Both devices derive the SAS from the same transcript (both ephemeral keys and the
//! channel parameters) and the user compares them. A man-in-the-middle who substituted a
//! key would have to find a substitute whose transcript gives the same SAS *before* the
//! user compares; the linking protocol commits to the approving side's key before it
//! learns the other's, which leaves a single guess at 10⁻⁹.

use hkdf::Hkdf;
use sha2::Sha256;

const INFO: &[u8] = b"Chorus_SAS_v1";

/// A 9-digit short authentication string, shown as `123 456 789`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Sas(u32);

impl Sas {
    /// Derives the SAS from a transcript both sides hold.
    pub fn from_transcript(transcript: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(None, transcript);
        let mut okm = [0u8; 8];
        // 8 bytes is a valid HKDF length; this cannot fail.
        #[allow(clippy::expect_used)]
        hk.expand(INFO, &mut okm)
            .expect("8 bytes is a valid HKDF length");
        // 64 uniform bits reduced mod 10^9: bias below 2^-34.
        Self((u64::from_be_bytes(okm) % 1_000_000_000) as u32)
    }

    /// The SAS as a number below 10⁹.
    pub fn value(&self) -> u32 {
        self.0
    }
}

impl core::fmt::Display for Sas {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:03} {:03} {:03}",
            v / 1_000_000,
            (v / 1000) % 1000,
            v % 1000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_transcript_gives_the_same_sas_and_another_does_not() {
        let a = Sas::from_transcript(b"transcript");
        assert_eq!(a, Sas::from_transcript(b"transcript"));
        assert_ne!(a, Sas::from_transcript(b"transcripu"));
        let shown = a.to_string();
        assert_eq!(shown.len(), 11);
        assert!(shown.chars().all(|c| c.is_ascii_digit() || c == ' '));
    }
}
