//! Where randomness comes from, passed in rather than read.
//!
//! Every key, nonce and id the client and the relay draw comes from an [`Entropy`]
//! they were given: [`SystemEntropy`] (the operating system) in use, or
//! [`SeededEntropy`] (a ChaCha stream from a 32-byte seed) in tests and the simulator,
//! so that a whole device, or a whole run of devices and a relay, can be replayed
//! byte for byte from one seed. A seeded source is predictable by construction: it
//! is for reproducing runs, never for real keys.
//!
//! [`Entropy::rng`] adapts a source to the `CryptoRng` the primitives take.

use std::convert::Infallible;
use std::sync::Mutex;

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use rand_core::{Rng, TryCryptoRng, TryRng, UnwrapErr};

/// A source of random bytes, shared by everything one device (or relay) does.
pub trait Entropy: Send + Sync {
    /// Fills `out` with random bytes.
    fn fill(&self, out: &mut [u8]);
}

impl dyn Entropy + '_ {
    /// This source as a `CryptoRng` for the primitives.
    pub fn rng(&self) -> EntropyRng<'_> {
        EntropyRng(self)
    }

    /// `N` random bytes.
    pub fn array<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }
}

/// The operating system's generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn fill(&self, out: &mut [u8]) {
        UnwrapErr(SysRng).fill_bytes(out);
    }
}

/// A deterministic stream (ChaCha12, `rand`'s `StdRng`) from a seed: the same seed
/// gives the same bytes in the same order. For tests and the simulator only.
pub struct SeededEntropy(Mutex<StdRng>);

impl SeededEntropy {
    /// The stream of `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        Self(Mutex::new(StdRng::from_seed(seed)))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, out: &mut [u8]) {
        // A poisoned lock only means another thread panicked mid-draw; the stream
        // itself is still a stream.
        let mut rng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rng.fill_bytes(out);
    }
}

impl std::fmt::Debug for SeededEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeededEntropy(..)")
    }
}

/// An [`Entropy`] borrowed as a `CryptoRng`.
pub struct EntropyRng<'a>(&'a dyn Entropy);

impl TryRng for EntropyRng<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

// Sound as long as the source is: the system's always, a seeded one by contract
// only in tests.
impl TryCryptoRng for EntropyRng<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_stream_and_another_seed_another() {
        let (a, b, c) = (
            SeededEntropy::new([7; 32]),
            SeededEntropy::new([7; 32]),
            SeededEntropy::new([8; 32]),
        );
        let (a, b, c): (&dyn Entropy, &dyn Entropy, &dyn Entropy) = (&a, &b, &c);
        let x: [u8; 64] = a.array();
        assert_eq!(x, b.array::<64>());
        assert_ne!(x, c.array::<64>());
        // The stream moves on.
        assert_ne!(x, a.array::<64>());
    }

    #[test]
    fn system_entropy_is_not_constant() {
        let s: &dyn Entropy = &SystemEntropy;
        assert_ne!(s.array::<32>(), s.array::<32>());
    }
}
