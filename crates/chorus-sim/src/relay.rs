//! The relay, in memory: what `chorus-relay` promises its devices, and nothing more.
//!
//! A log per identity — gap-free seqs, the author stamped from the connection, atomic
//! batches, guards `(stream tag, expected version)` — and mailboxes kept as logs that
//! every device of the owner reads with its own cursor, posts idempotent by envelope
//! id. A bundled append stores its records and its envelope together or neither
//! (`RelayStore::append_bundle`). Under `per-device` it keeps each identity's signed
//! device list and each device's bundle, takes a message's copies all or none —
//! refusing a set that is not the list with the missing, extra and stale devices —
//! and serves each copy to its device alone. Epochs move forward one at a time (a
//! record under an older epoch than the log's is refused: its author has not read the
//! rotation yet), and a revoked device's appends are refused. Storage is durable: a restart drops what
//! is in flight (the network's business), never what was stored. The relay
//! conformance suite checks the real backends against the same rules.

use std::collections::{BTreeMap, BTreeSet};

use chorus_core::Appendable;
use chorus_wire::{DeviceList, Mismatch, PrekeyBundle};

/// Records served per log read (the real relay's page is bounded too).
pub const PAGE: usize = 64;

/// A record as stored: what the relay sees.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Position in the log, from 1.
    pub seq: u64,
    /// The author, stamped from the authenticated connection.
    pub author: [u8; 32],
    /// Epoch, guard, nonce, ciphertext, as appended (the event id is the device's
    /// secret; the relay never reads it).
    pub record: Appendable,
}

/// A request a device sends.
#[derive(Clone, Debug)]
pub enum Request {
    /// Append a batch, atomically, guards checked; with `post`, the envelope goes with it.
    Append {
        /// The identity's log.
        log: usize,
        /// The records.
        records: Vec<Appendable>,
        /// A bundled envelope: `(mailbox, envelope id, bytes)`.
        post: Option<(usize, [u8; 16], Vec<u8>)>,
    },
    /// Read the log from a seq.
    ReadLog {
        /// The identity's log.
        log: usize,
        /// The first seq wanted.
        from: u64,
    },
    /// Post an envelope (idempotent by envelope id).
    Post {
        /// The mailbox.
        mailbox: usize,
        /// The envelope id.
        envelope_id: [u8; 16],
        /// The envelope.
        bytes: Vec<u8>,
    },
    /// Read a mailbox from a seq.
    ReadMailbox {
        /// The mailbox.
        mailbox: usize,
        /// The first seq wanted.
        from: u64,
    },
    /// `per-device`: the device list of the identity owning a mailbox, with the
    /// bundles of its devices (the client fetches each bundle on its own; one request
    /// here).
    DeviceList {
        /// The mailbox.
        mailbox: usize,
    },
    /// `per-device`: one message, a copy per device: `(device, generation, bytes)`.
    PostCopies {
        /// The mailbox.
        mailbox: usize,
        /// The message's envelope id.
        envelope_id: [u8; 16],
        /// The copies.
        copies: Vec<([u8; 32], u32, Vec<u8>)>,
    },
}

impl Request {
    /// Bytes the request carries (payloads only: the same measure for every strategy).
    pub fn size(&self) -> usize {
        match self {
            Request::Append { records, post, .. } => {
                records.iter().map(record_size).sum::<usize>()
                    + post.as_ref().map_or(0, |(_, _, b)| b.len())
            }
            Request::Post { bytes, .. } => bytes.len(),
            Request::PostCopies { copies, .. } => copies.iter().map(|(_, _, b)| b.len()).sum(),
            Request::ReadLog { .. } | Request::ReadMailbox { .. } | Request::DeviceList { .. } => 0,
        }
    }
}

impl Request {
    /// The envelopes the request stores if the relay takes it: `(mailbox, id, bytes)`,
    /// a `per-device` copy under its copy id.
    pub fn envelopes(&self) -> Vec<(usize, [u8; 16], &[u8])> {
        match self {
            Request::Append {
                post: Some((mailbox, id, bytes)),
                ..
            }
            | Request::Post {
                mailbox,
                envelope_id: id,
                bytes,
            } => vec![(*mailbox, *id, bytes.as_slice())],
            Request::PostCopies {
                mailbox,
                envelope_id,
                copies,
            } => copies
                .iter()
                .map(|(device, _, bytes)| {
                    (*mailbox, copy_id(envelope_id, device), bytes.as_slice())
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn record_size(r: &Appendable) -> usize {
    r.ciphertext.len() + r.nonce.len() + r.guard.map_or(0, |(t, _)| t.len() + 8)
}

/// Each listed device's bundle.
pub type Bundles = Vec<([u8; 32], PrekeyBundle)>;

/// The relay's answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Appended at these seqs.
    Appended(Vec<u64>),
    /// A guard failed: nothing stored.
    GuardFailed,
    /// A page of the log.
    Log(Vec<Stored>),
    /// Posted (or already there).
    Posted,
    /// A page of a mailbox.
    Mail(Vec<Letter>),
    /// A device list and its devices' bundles (`None`: the identity publishes none).
    DeviceList(Option<(DeviceList, Bundles)>),
    /// The copies did not name the list's devices: nothing stored.
    Mismatch(Mismatch),
    /// A record is sealed under an older epoch than the log's, or one more than one
    /// ahead: nothing stored (the author reads the rotation and seals again).
    StaleEpoch,
    /// The author is not a current device of the log (revoked): nothing stored.
    NotCurrent,
}

/// A mailbox entry as served.
#[derive(Clone, Debug)]
pub struct Letter {
    /// Its position in the mailbox, from 1.
    pub seq: u64,
    /// The envelope id it was posted under.
    pub id: [u8; 16],
    /// The envelope.
    pub bytes: Vec<u8>,
    /// When the relay took it (the relay's clock: the world's).
    pub received_ms: u64,
}

impl Reply {
    /// Bytes the reply carries.
    pub fn size(&self) -> usize {
        match self {
            Reply::Log(records) => records.iter().map(|s| record_size(&s.record)).sum(),
            Reply::Mail(entries) => entries.iter().map(|l| l.bytes.len()).sum(),
            Reply::DeviceList(list) => list.as_ref().map_or(0, |(l, bundles)| {
                l.encode().len() + bundles.iter().map(|(_, b)| b.encode().len()).sum::<usize>()
            }),
            Reply::Appended(_)
            | Reply::GuardFailed
            | Reply::Posted
            | Reply::Mismatch(_)
            | Reply::StaleEpoch
            | Reply::NotCurrent => 0,
        }
    }
}

#[derive(Default)]
struct Log {
    records: Vec<Stored>,
    streams: BTreeMap<[u8; 32], i64>,
    /// The newest epoch of a record stored.
    epoch: u32,
    /// Devices revoked (the relay was shown the signed revocation).
    revoked: BTreeSet<[u8; 32]>,
}

#[derive(Default)]
struct Mailbox {
    entries: Vec<Letter>,
    /// `per-device`: the one device an entry (by index) is for.
    recipients: BTreeMap<usize, [u8; 32]>,
    ids: BTreeSet<[u8; 16]>,
}

impl Mailbox {
    /// Whether `device` may read the entry at `index`.
    fn readable(&self, index: usize, device: &[u8; 32]) -> bool {
        self.recipients.get(&index).is_none_or(|r| r == device)
    }
}

/// What changed, so the world can push a wake-up to the devices that read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    /// Nothing stored.
    Nothing,
    /// A log grew (and the mailbox, if bundled).
    Log(usize, Option<usize>),
    /// A mailbox grew.
    Mailbox(usize),
}

/// The relay's storage.
pub struct Relay {
    logs: Vec<Log>,
    mailboxes: Vec<Mailbox>,
    /// `per-device`: each identity's device list (identity `i` owns mailbox `i`).
    lists: BTreeMap<usize, DeviceList>,
    /// `per-device`: each device's bundle.
    bundles: BTreeMap<[u8; 32], PrekeyBundle>,
    /// A dishonest relay: every guard passes (the log's verification must catch it).
    pub ignore_guards: bool,
}

impl Relay {
    /// A relay with `logs` logs and `mailboxes` mailboxes, all empty.
    pub fn new(logs: usize, mailboxes: usize) -> Self {
        Self {
            logs: (0..logs).map(|_| Log::default()).collect(),
            mailboxes: (0..mailboxes).map(|_| Mailbox::default()).collect(),
            lists: BTreeMap::new(),
            bundles: BTreeMap::new(),
            ignore_guards: false,
        }
    }

    /// Serves one request from `author`, at `now_ms`.
    pub fn handle(&mut self, author: [u8; 32], request: &Request, now_ms: u64) -> (Reply, Changed) {
        match request {
            Request::Append { log, records, post } => {
                let Some(l) = self.logs.get_mut(*log) else {
                    return (Reply::GuardFailed, Changed::Nothing);
                };
                if l.revoked.contains(&author) {
                    return (Reply::NotCurrent, Changed::Nothing);
                }
                // Epochs never go back, and move one at a time (a rotation starts the
                // next), across the batch too.
                let mut epoch = l.epoch;
                for r in records {
                    if r.epoch < epoch || r.epoch > epoch.saturating_add(1) {
                        return (Reply::StaleEpoch, Changed::Nothing);
                    }
                    epoch = r.epoch;
                }
                // Guards first, as the batch would see the streams (two records of one
                // batch on one stream expect consecutive versions).
                let mut streams = l.streams.clone();
                for r in records {
                    if let Some((tag, expected)) = r.guard {
                        let at = streams.entry(tag).or_insert(0);
                        if *at != expected && !self.ignore_guards {
                            return (Reply::GuardFailed, Changed::Nothing);
                        }
                        *at += 1;
                    }
                }
                l.streams = streams;
                l.epoch = epoch;
                let mut seqs = Vec::with_capacity(records.len());
                for r in records {
                    let seq = l.records.len() as u64 + 1;
                    l.records.push(Stored {
                        seq,
                        author,
                        record: r.clone(),
                    });
                    seqs.push(seq);
                }
                let mailbox = post.as_ref().map(|(mailbox, id, bytes)| {
                    self.post(*mailbox, *id, bytes, now_ms);
                    *mailbox
                });
                (Reply::Appended(seqs), Changed::Log(*log, mailbox))
            }
            Request::ReadLog { log, from } => {
                let page = self.logs.get(*log).map_or_else(Vec::new, |l| {
                    let start = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
                    l.records.iter().skip(start).take(PAGE).cloned().collect()
                });
                (Reply::Log(page), Changed::Nothing)
            }
            Request::Post {
                mailbox,
                envelope_id,
                bytes,
            } => {
                let grew = self.post(*mailbox, *envelope_id, bytes, now_ms);
                let changed = if grew {
                    Changed::Mailbox(*mailbox)
                } else {
                    Changed::Nothing
                };
                (Reply::Posted, changed)
            }
            Request::ReadMailbox { mailbox, from } => {
                let page = self.mailboxes.get(*mailbox).map_or_else(Vec::new, |m| {
                    let start = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
                    m.entries
                        .iter()
                        .enumerate()
                        .skip(start)
                        .filter(|(i, _)| m.readable(*i, &author))
                        .take(PAGE)
                        .map(|(_, e)| e.clone())
                        .collect()
                });
                (Reply::Mail(page), Changed::Nothing)
            }
            Request::DeviceList { mailbox } => {
                let list = self.lists.get(mailbox).map(|l| {
                    let bundles = l
                        .devices()
                        .iter()
                        .filter_map(|d| self.bundles.get(&d.device).map(|b| (d.device, b.clone())))
                        .collect();
                    (l.clone(), bundles)
                });
                (Reply::DeviceList(list), Changed::Nothing)
            }
            Request::PostCopies {
                mailbox,
                envelope_id,
                copies,
            } => {
                let Some(list) = self.lists.get(mailbox) else {
                    return (Reply::Mismatch(Mismatch::default()), Changed::Nothing);
                };
                let named: Vec<([u8; 32], u32)> = copies.iter().map(|(d, g, _)| (*d, *g)).collect();
                let ids: Vec<[u8; 16]> = copies
                    .iter()
                    .map(|(d, ..)| copy_id(envelope_id, d))
                    .collect();
                // A retry of copies stored before is a duplicate, list changed or not.
                let stored = self
                    .mailboxes
                    .get(*mailbox)
                    .is_some_and(|m| ids.iter().all(|id| m.ids.contains(id)));
                let mismatch = list.mismatch(&named);
                if !mismatch.is_empty() && !stored {
                    return (Reply::Mismatch(mismatch), Changed::Nothing);
                }
                let mut grew = false;
                for ((device, _, bytes), id) in copies.iter().zip(ids) {
                    grew |= self.post_for(*mailbox, id, bytes, Some(*device), now_ms);
                }
                let changed = if grew {
                    Changed::Mailbox(*mailbox)
                } else {
                    Changed::Nothing
                };
                (Reply::Posted, changed)
            }
        }
    }

    /// `per-device`: publishes identity `ident`'s device list and bundles (what each
    /// device does on its next sync; the world does it at once).
    pub fn publish(
        &mut self,
        ident: usize,
        list: DeviceList,
        bundles: Vec<([u8; 32], PrekeyBundle)>,
    ) {
        if self
            .lists
            .get(&ident)
            .is_none_or(|l| l.serial < list.serial)
        {
            self.lists.insert(ident, list);
        }
        self.bundles.extend(bundles);
    }

    /// `per-device`: whether `device` published its bundle.
    pub fn has_bundle(&self, device: &[u8; 32]) -> bool {
        self.bundles.contains_key(device)
    }

    /// Drops `device`'s credential for `log`: shown the signed revocation (the world
    /// does it once the revocation is in the log).
    pub fn revoke(&mut self, log: usize, device: [u8; 32]) {
        if let Some(l) = self.logs.get_mut(log) {
            l.revoked.insert(device);
        }
    }

    /// Stores an envelope unless one with its id is there; whether it was new.
    fn post(&mut self, mailbox: usize, id: [u8; 16], bytes: &[u8], now_ms: u64) -> bool {
        self.post_for(mailbox, id, bytes, None, now_ms)
    }

    /// [`Self::post`], readable only by `recipient` when named.
    fn post_for(
        &mut self,
        mailbox: usize,
        id: [u8; 16],
        bytes: &[u8],
        recipient: Option<[u8; 32]>,
        now_ms: u64,
    ) -> bool {
        let Some(m) = self.mailboxes.get_mut(mailbox) else {
            return false;
        };
        if !m.ids.insert(id) {
            return false;
        }
        if let Some(r) = recipient {
            m.recipients.insert(m.entries.len(), r);
        }
        let seq = m.entries.len() as u64 + 1;
        m.entries.push(Letter {
            seq,
            id,
            bytes: bytes.to_vec(),
            received_ms: now_ms,
        });
        true
    }

    /// The last seq of a mailbox that `device` may read (all of it, but for the
    /// `per-device` copies of other devices).
    pub fn mailbox_len_for(&self, mailbox: usize, device: &[u8; 32]) -> u64 {
        self.mailboxes.get(mailbox).map_or(0, |m| {
            (0..m.entries.len())
                .rev()
                .find(|i| m.readable(*i, device))
                .map_or(0, |i| i as u64 + 1)
        })
    }

    /// The length of a log.
    pub fn log_len(&self, log: usize) -> u64 {
        self.logs.get(log).map_or(0, |l| l.records.len() as u64)
    }

    /// The length of a mailbox.
    pub fn mailbox_len(&self, mailbox: usize) -> u64 {
        self.mailboxes
            .get(mailbox)
            .map_or(0, |m| m.entries.len() as u64)
    }
}

/// The id a device's copy of message `envelope` is stored under (the relay contract's).
pub(crate) fn copy_id(envelope: &[u8; 16], device: &[u8; 32]) -> [u8; 16] {
    chorus_relay_api::copy_id(
        chorus_relay_api::Id16(*envelope),
        &chorus_relay_api::Id32(*device),
    )
    .0
}
