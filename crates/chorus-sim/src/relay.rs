//! The relay, in memory: what `chorus-relay` promises its devices, and nothing more.
//!
//! A log per identity — gap-free seqs, the author stamped from the connection, atomic
//! batches, guards `(stream tag, expected version)` — and mailboxes kept as logs that
//! every device of the owner reads with its own cursor, posts idempotent by envelope
//! id. A bundled append stores its records and its envelope together or neither
//! (`RelayStore::append_bundle`). Storage is durable: a restart drops what is in flight
//! (the network's business), never what was stored. The relay conformance suite checks
//! the real backends against the same rules.

use std::collections::{BTreeMap, BTreeSet};

use chorus_core::Appendable;

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
            Request::ReadLog { .. } | Request::ReadMailbox { .. } => 0,
        }
    }
}

fn record_size(r: &Appendable) -> usize {
    r.ciphertext.len() + r.nonce.len() + r.guard.map_or(0, |(t, _)| t.len() + 8)
}

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
    /// A page of a mailbox: `(seq, envelope id, bytes)`.
    Mail(Vec<(u64, [u8; 16], Vec<u8>)>),
}

impl Reply {
    /// Bytes the reply carries.
    pub fn size(&self) -> usize {
        match self {
            Reply::Log(records) => records.iter().map(|s| record_size(&s.record)).sum(),
            Reply::Mail(entries) => entries.iter().map(|(_, _, b)| b.len()).sum(),
            Reply::Appended(_) | Reply::GuardFailed | Reply::Posted => 0,
        }
    }
}

#[derive(Default)]
struct Log {
    records: Vec<Stored>,
    streams: BTreeMap<[u8; 32], i64>,
}

#[derive(Default)]
struct Mailbox {
    entries: Vec<(u64, [u8; 16], Vec<u8>)>,
    ids: BTreeSet<[u8; 16]>,
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
    /// A dishonest relay: every guard passes (the log's verification must catch it).
    pub ignore_guards: bool,
}

impl Relay {
    /// A relay with `logs` logs and `mailboxes` mailboxes, all empty.
    pub fn new(logs: usize, mailboxes: usize) -> Self {
        Self {
            logs: (0..logs).map(|_| Log::default()).collect(),
            mailboxes: (0..mailboxes).map(|_| Mailbox::default()).collect(),
            ignore_guards: false,
        }
    }

    /// Serves one request from `author`.
    pub fn handle(&mut self, author: [u8; 32], request: &Request) -> (Reply, Changed) {
        match request {
            Request::Append { log, records, post } => {
                let Some(l) = self.logs.get_mut(*log) else {
                    return (Reply::GuardFailed, Changed::Nothing);
                };
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
                    self.post(*mailbox, *id, bytes);
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
                let grew = self.post(*mailbox, *envelope_id, bytes);
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
                    m.entries.iter().skip(start).take(PAGE).cloned().collect()
                });
                (Reply::Mail(page), Changed::Nothing)
            }
        }
    }

    /// Stores an envelope unless one with its id is there; whether it was new.
    fn post(&mut self, mailbox: usize, id: [u8; 16], bytes: &[u8]) -> bool {
        let Some(m) = self.mailboxes.get_mut(mailbox) else {
            return false;
        };
        if !m.ids.insert(id) {
            return false;
        }
        let seq = m.entries.len() as u64 + 1;
        m.entries.push((seq, id, bytes.to_vec()));
        true
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

    /// Every envelope of a mailbox, in order.
    pub fn mailbox(&self, mailbox: usize) -> &[(u64, [u8; 16], Vec<u8>)] {
        self.mailboxes
            .get(mailbox)
            .map_or(&[], |m| m.entries.as_slice())
    }
}
