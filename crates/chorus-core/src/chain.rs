//! The log, verified against the relay rather than trusted (DESIGN §4).
//!
//! The relay orders the identity's log and enforces stream guards, but it is not
//! trusted to do either honestly. Three checks let devices catch it:
//!
//! - **Streams are hash chains.** A guarded record names the hash of the record before
//!   it in its stream ([`ChainLink::stream_prev`]) and carries the version it expects.
//!   A reader accepts it only if its own fold of that stream is at that version and
//!   ends at that hash ([`check_stream`]). A relay that lets two devices append at one
//!   version (two `Sent` records on one message key) gets the second refused by every
//!   device, its author included, which then re-does it.
//! - **The log is a hash chain.** Every device computes [`chain_next`] over every
//!   record the relay shows it, in seq order, refused or not; devices shown the same
//!   log hold the same chain hash at every seq.
//! - **Authors say where they stood.** Every record names the last seq its author
//!   had folded and the chain hash there ([`ChainLink::head`]). A reader whose chain
//!   differs at that seq was shown another history than the author — a relay that
//!   equivocates, drops or reorders records for some devices — and says so
//!   ([`check_head`]); the record is refused.
//!
//! The record hash covers everything the relay stores in the clear beside the
//! ciphertext and the ciphertext itself, so it is the same for every honest reader.

use chorus_wire::ChainLink;
use sha2::{Digest, Sha256};

use crate::record::LogError;

/// A record's hash: what its successor in a stream names and what the log chain
/// covers. `guard` is the stored `(stream tag, expected version)`.
pub fn record_hash(
    log_id: &[u8; 32],
    epoch: u32,
    author: &[u8; 32],
    guard: Option<(&[u8], i64)>,
    nonce: &[u8],
    ciphertext: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"chorus-log-record-hash-v1");
    h.update(log_id);
    h.update(epoch.to_be_bytes());
    h.update(author);
    match guard {
        None => h.update([0]),
        Some((tag, version)) => {
            h.update([1]);
            h.update((tag.len() as u64).to_be_bytes());
            h.update(tag);
            h.update(version.to_be_bytes());
        }
    }
    h.update((nonce.len() as u64).to_be_bytes());
    h.update(nonce);
    h.update(ciphertext);
    h.finalize().into()
}

/// The log chain after the record at `seq` (hash `record`), from the chain before it
/// (`None` before the first record).
pub fn chain_next(prev: Option<&[u8; 32]>, seq: u64, record: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"chorus-log-chain-v1");
    h.update(prev.unwrap_or(&[0; 32]));
    h.update(seq.to_be_bytes());
    h.update(record);
    h.finalize().into()
}

/// A stream as folded: the next version it expects and the hash of its last record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamHead {
    /// The version the next record must be guarded at.
    pub version: i64,
    /// The hash of the record that took the last version (`None` at version 0).
    pub head: Option<[u8; 32]>,
}

impl StreamHead {
    /// The stream after a record with hash `record` was folded on it.
    pub fn advanced(self, record: [u8; 32]) -> Self {
        Self {
            version: self.version.saturating_add(1),
            head: Some(record),
        }
    }
}

/// Checks a guarded record (at `version`, naming `link.stream_prev`) against its
/// stream as folded.
pub fn check_stream(folded: StreamHead, version: i64, link: &ChainLink) -> Result<(), LogError> {
    if version != folded.version {
        return Err(LogError::StreamVersion {
            folded: folded.version,
            record: version,
        });
    }
    if link.stream_prev != folded.head {
        return Err(LogError::StreamPredecessor);
    }
    Ok(())
}

/// Checks the head an author claims against this device's chain. `seq` is the
/// record's own; `ours(s)` is this device's chain hash at `s`, `None` where it cannot
/// know (below a checkpoint it was linked from).
pub fn check_head(
    link: &ChainLink,
    seq: u64,
    ours: impl FnOnce(u64) -> Option<[u8; 32]>,
) -> Result<(), LogError> {
    let Some((at, claimed)) = link.head else {
        return Ok(());
    };
    if at >= seq {
        return Err(LogError::HeadAhead { head: at, seq });
    }
    match ours(at) {
        Some(hash) if hash != claimed => Err(LogError::Equivocation { seq: at }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(prev: Option<[u8; 32]>, head: Option<(u64, [u8; 32])>) -> ChainLink {
        ChainLink {
            stream_prev: prev,
            head,
        }
    }

    #[test]
    fn a_stream_accepts_only_its_next_version_after_its_own_head() {
        let start = StreamHead::default();
        assert_eq!(check_stream(start, 0, &link(None, None)), Ok(()));
        let one = start.advanced([1; 32]);
        assert_eq!(check_stream(one, 1, &link(Some([1; 32]), None)), Ok(()));
        // Two records at one version: the second finds the stream moved on.
        assert_eq!(
            check_stream(one, 0, &link(None, None)),
            Err(LogError::StreamVersion {
                folded: 1,
                record: 0
            })
        );
        // The right version after another record than this device folded.
        assert_eq!(
            check_stream(one, 1, &link(Some([2; 32]), None)),
            Err(LogError::StreamPredecessor)
        );
        assert!(check_stream(one, 2, &link(Some([1; 32]), None)).is_err());
    }

    #[test]
    fn a_head_is_checked_where_this_device_knows_the_chain() {
        let ours = chain_next(None, 1, &[9; 32]);
        let at = |s: u64| (s == 1).then_some(ours);
        assert_eq!(check_head(&link(None, Some((1, ours))), 2, at), Ok(()));
        assert_eq!(
            check_head(&link(None, Some((1, [0; 32]))), 2, at),
            Err(LogError::Equivocation { seq: 1 })
        );
        assert_eq!(
            check_head(&link(None, Some((2, ours))), 2, at),
            Err(LogError::HeadAhead { head: 2, seq: 2 })
        );
        // Below what this device can know (a checkpoint): nothing to compare.
        assert_eq!(
            check_head(&link(None, Some((0, [0; 32]))), 2, |_| None),
            Ok(())
        );
        assert_eq!(check_head(&link(None, None), 2, at), Ok(()));
    }

    #[test]
    fn the_chain_and_the_record_hash_cover_every_field() {
        let base = record_hash(&[1; 32], 1, &[2; 32], Some((b"t", 3)), b"n", b"c");
        for other in [
            record_hash(&[9; 32], 1, &[2; 32], Some((b"t", 3)), b"n", b"c"),
            record_hash(&[1; 32], 2, &[2; 32], Some((b"t", 3)), b"n", b"c"),
            record_hash(&[1; 32], 1, &[9; 32], Some((b"t", 3)), b"n", b"c"),
            record_hash(&[1; 32], 1, &[2; 32], Some((b"u", 3)), b"n", b"c"),
            record_hash(&[1; 32], 1, &[2; 32], Some((b"t", 4)), b"n", b"c"),
            record_hash(&[1; 32], 1, &[2; 32], None, b"n", b"c"),
            record_hash(&[1; 32], 1, &[2; 32], Some((b"t", 3)), b"m", b"c"),
            record_hash(&[1; 32], 1, &[2; 32], Some((b"t", 3)), b"n", b"d"),
        ] {
            assert_ne!(base, other);
        }
        let one = chain_next(None, 1, &base);
        assert_ne!(chain_next(Some(&one), 2, &base), chain_next(None, 2, &base));
        assert_ne!(
            chain_next(Some(&one), 2, &base),
            chain_next(Some(&one), 3, &base)
        );
    }
}
