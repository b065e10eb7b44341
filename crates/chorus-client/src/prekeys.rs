//! Prekeys: minting them, and the lifecycle that keeps the directory supplied (their
//! rows are in [`crate::store::prekeys`]).
//!
//! * One-time prekeys (X25519 and ML-KEM) are published in batches and **replenished**
//!   when the relay's count drops below [`REPLENISH_BELOW`]. A private one-time key is
//!   deleted only when a first message consumed it: the relay may hand out any key it
//!   still holds.
//! * The signed prekey and the last-resort PQ prekey are **rotated** every
//!   [`SIGNED_PREKEY_LIFETIME`]. The replaced private halves are kept for
//!   [`RETIRED_PREKEY_GRACE`] (longer than a mailbox keeps an envelope), so a first
//!   message built on the old bundle can still be answered.
//! * Private halves are persisted **before** the public halves are published: the relay
//!   never hands out a key this device could lose.

use std::time::Duration;

use chorus_core::{ConsumedPrekeys, PrekeyPrivate};
use chorus_crypto::{
    Entropy, OneTimePrekeySecret, PqPrekeySecret, RootSigningKey, SignedPrekeySecret,
};
use chorus_wire::limits::MAX_PREKEYS_PER_EVENT;
use chorus_wire::{
    EventKind, OneTimePrekey, PqPrekey, PrekeyKind, PrekeySecret, SecretBytes, SignedPrekey,
};

use crate::ClientError;
use crate::identity::secret_bytes;
pub use crate::store::prekeys::PrekeyCounts;
pub(crate) use crate::store::prekeys::Purpose;

/// One-time prekeys of each kind published per batch: the relay's per-request bound.
pub const ONE_TIME_BATCH: usize = chorus_relay_api::limits::MAX_PREKEYS_PER_PUBLISH;
/// Publish a new batch when fewer than this many one-time prekeys are left.
pub const REPLENISH_BELOW: i64 = 25;
/// How long a signed (and last-resort PQ) prekey is the current one.
pub const SIGNED_PREKEY_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a replaced signed or last-resort prekey is kept: longer than the relay keeps
/// an envelope (30 days by default), so every first message can still be answered.
pub const RETIRED_PREKEY_GRACE: Duration = Duration::from_secs(35 * 24 * 3600);

/// Generates prekeys in memory. Nothing is stored here: the private halves go into the
/// log as `PrekeysCreated` events ([`Generator::into_events`]), and the fold stores them
/// on every device — before any public half is published (escrow before use).
pub(crate) struct Generator<'a> {
    root: &'a RootSigningKey,
    entropy: &'a dyn Entropy,
    purpose: Purpose,
    next_id: u32,
    keys: Vec<PrekeySecret>,
}

impl<'a> Generator<'a> {
    /// Ids start at `next_id` ([`crate::store::prekeys::next_prekey_id`]); minting is
    /// guarded on the prekey stream, so a sibling minting the same ids at once loses the
    /// append and retries.
    pub(crate) fn new(
        next_id: u32,
        root: &'a RootSigningKey,
        entropy: &'a dyn Entropy,
        purpose: Purpose,
    ) -> Self {
        Self {
            root,
            entropy,
            purpose,
            next_id,
            keys: Vec::new(),
        }
    }

    fn push(
        &mut self,
        kind: PrekeyKind,
        last_resort: bool,
        secret: &PrekeyPrivate,
        public: Vec<u8>,
    ) -> Result<u32, ClientError> {
        let id = self.next_id;
        self.next_id = self
            .next_id
            .checked_add(1)
            .ok_or_else(|| ClientError::Corrupt("prekey ids exhausted".into()))?;
        self.keys.push(PrekeySecret {
            id,
            kind,
            last_resort,
            invitation: self.purpose == Purpose::Invitation,
            public,
            secret: SecretBytes::new(secret_bytes(secret)?.to_vec()),
        });
        Ok(id)
    }

    /// A new signed prekey.
    pub(crate) fn signed(&mut self) -> Result<SignedPrekey, ClientError> {
        let secret = SignedPrekeySecret::generate(&mut self.entropy.rng());
        let public = SignedPrekey::sign(self.root, self.next_id, secret.public_key());
        self.push(
            PrekeyKind::Signed,
            false,
            &PrekeyPrivate::Signed(secret),
            public.encode(),
        )?;
        Ok(public)
    }

    /// A new one-time X25519 prekey.
    pub(crate) fn one_time(&mut self) -> Result<OneTimePrekey, ClientError> {
        let secret = OneTimePrekeySecret::generate(&mut self.entropy.rng());
        let public = OneTimePrekey {
            id: self.next_id,
            key: secret.public_key(),
        };
        self.push(
            PrekeyKind::OneTime,
            false,
            &PrekeyPrivate::OneTime(secret),
            public.encode(),
        )?;
        Ok(public)
    }

    /// A new ML-KEM prekey (one-time, or the last-resort fallback).
    pub(crate) fn pq(&mut self, last_resort: bool) -> Result<PqPrekey, ClientError> {
        let secret = PqPrekeySecret::generate(&mut self.entropy.rng());
        let public = PqPrekey::sign(self.root, self.next_id, secret.public_key(), last_resort);
        self.push(
            PrekeyKind::Pq,
            last_resort,
            &PrekeyPrivate::Pq(secret),
            public.encode(),
        )?;
        Ok(public)
    }

    /// The `PrekeysCreated` events carrying every key minted, at most
    /// [`MAX_PREKEYS_PER_EVENT`] each; the invitation mailbox rides on the first.
    pub(crate) fn into_events(self, invitation_mailbox: Option<[u8; 32]>) -> Vec<EventKind> {
        let mut out = Vec::new();
        let mut keys = self.keys;
        while !keys.is_empty() {
            let rest = keys.split_off(keys.len().min(MAX_PREKEYS_PER_EVENT));
            out.push(EventKind::PrekeysCreated {
                keys,
                invitation_mailbox: if out.is_empty() {
                    invitation_mailbox
                } else {
                    None
                },
            });
            keys = rest;
        }
        out
    }
}

/// The one-time prekey ids a first message used.
pub(crate) fn consumed_ids(consumed: &ConsumedPrekeys) -> Vec<u32> {
    [consumed.one_time_prekey, consumed.pq_prekey]
        .into_iter()
        .flatten()
        .collect()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether the current signed prekey is due for rotation at `now_ms`.
pub(crate) fn rotation_due(created_ms: i64, now_ms: i64) -> bool {
    now_ms.saturating_sub(created_ms) >= ms(SIGNED_PREKEY_LIFETIME)
}

/// Replaced prekeys retired before this time at `now_ms` are past their grace period.
pub(crate) fn retired_before(now_ms: i64) -> i64 {
    now_ms.saturating_sub(ms(RETIRED_PREKEY_GRACE))
}
