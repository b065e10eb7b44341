//! What a device appends: a batch of events made into the records the relay stores.
//!
//! Every record names where its author stands — the last seq it folded and the log chain
//! there (`ChainLink::head`) — and a guarded one the record before it in its stream
//! (`ChainLink::stream_prev`); its Lamport time follows the folded clock; it is sealed
//! under the epoch key with its log, epoch, author and guard as associated data
//! (`record.rs`). That is decided here once, for the client and the simulator alike:
//! both hand the result to a relay (a real one, or the simulator's) and fold what it
//! kept. Several events on one stream in a batch expect consecutive versions, each
//! naming the one before it.

use std::collections::HashMap;

use chorus_crypto::{CryptoRng, EpochKey};
use chorus_wire::{ChainLink, EventKind, LogEvent};

use crate::chain::{StreamHead, record_hash};
use crate::fold::Constellation;
use crate::record::{LogError, RecordContext, seal_event};
use crate::send::Guarded;

/// An event to append, with the stream it is guarded on and the version expected
/// (`None`: the version as folded when the batch is sealed). `Debug` shows the guard
/// only: the event may carry a message's text or session state.
#[derive(Clone, PartialEq, Eq)]
pub struct Pending {
    /// The event.
    pub kind: EventKind,
    /// The guard's stream name (before keying) and the version it expects.
    pub guard: Option<(Vec<u8>, Option<i64>)>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let guard = self
            .guard
            .as_ref()
            .map(|(stream, version)| (String::from_utf8_lossy(stream), version));
        f.debug_struct("Pending")
            .field("guard", &guard)
            .finish_non_exhaustive()
    }
}

impl From<Guarded> for Pending {
    fn from(g: Guarded) -> Self {
        Self::guarded(g.event, g.stream, Some(g.version))
    }
}

impl Pending {
    /// An unguarded event.
    pub fn free(kind: EventKind) -> Self {
        Self { kind, guard: None }
    }

    /// An event guarded on `stream` at `version` (`None`: as folded).
    pub fn guarded(kind: EventKind, stream: Vec<u8>, version: Option<i64>) -> Self {
        Self {
            kind,
            guard: Some((stream, version)),
        }
    }
}

/// A record ready for the relay: what it stores in the clear and the sealed event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appendable {
    /// The event's id (a fold of the log tells whether the record was kept).
    pub event_id: [u8; 16],
    /// The epoch it is sealed under (the next one for a rotation).
    pub epoch: u32,
    /// The guard: stream tag and expected version.
    pub guard: Option<([u8; 32], i64)>,
    /// The AEAD nonce.
    pub nonce: [u8; 12],
    /// The sealed event.
    pub ciphertext: Vec<u8>,
}

impl Constellation {
    /// Seals `events`, authored by `author` at `now_ms`, into the records of one
    /// atomic append on this folded state under `key` (the current epoch's). Draws
    /// each event id and nonce from `rng`. Refuses (and seals nothing) if an event
    /// breaks a rule every fold applies ([`LogError::Unsealable`]).
    pub fn seal_batch<R: CryptoRng + ?Sized>(
        &self,
        key: &EpochKey,
        author: [u8; 32],
        events: Vec<Pending>,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<Vec<Appendable>, LogError> {
        let head = self.head();
        let mut streams: HashMap<Vec<u8>, StreamHead> = HashMap::new();
        let mut out = Vec::with_capacity(events.len());
        for (i, p) in events.into_iter().enumerate() {
            let (guard, stream_prev) = match &p.guard {
                None => (None, None),
                Some((name, expected)) => {
                    let tag = key.stream_tag(name);
                    let folded = match streams.get(name) {
                        Some(s) => *s,
                        None => self.stream(&tag),
                    };
                    (Some((tag, expected.unwrap_or(folded.version))), folded.head)
                }
            };
            let mut event_id = [0u8; 16];
            rng.fill_bytes(&mut event_id);
            let event = LogEvent {
                event_id,
                lamport: self.lamport().saturating_add(1 + i as u64),
                timestamp_ms: now_ms,
                author,
                chain: ChainLink { stream_prev, head },
                kind: p.kind,
            };
            let rotation = matches!(event.kind, EventKind::EpochRotated(_));
            let epoch = self.epoch().saturating_add(u32::from(rotation));
            let context = RecordContext {
                log_id: *self.log_id(),
                epoch,
                author,
                guard: guard.as_ref().map(|(t, v)| (&t[..], *v)),
            };
            let sealed = seal_event(key, &context, &event, rng)?;
            if let (Some((name, _)), Some((_, version))) = (p.guard, guard) {
                // The next event on this stream in the batch follows this record.
                let hash = record_hash(
                    self.log_id(),
                    epoch,
                    &author,
                    guard.as_ref().map(|(t, v)| (&t[..], *v)),
                    &sealed.nonce,
                    &sealed.ciphertext,
                );
                let at = StreamHead {
                    version,
                    head: stream_prev,
                };
                streams.insert(name, at.advanced(hash));
            }
            out.push(Appendable {
                event_id,
                epoch,
                guard,
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
            });
        }
        Ok(out)
    }
}
