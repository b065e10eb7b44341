//! Device authentication: Ed25519 challenge → short-lived session token.
//!
//! A device proves it holds the key registered for it by signing a fresh random
//! challenge ([`crate::api::auth_message`]); it gets back a random bearer token
//! valid for [`crate::limits::Limits::session_ttl`]. The relay keeps only the
//! SHA-256 of each token, in memory: a restart logs everyone out (they re-sign for
//! free) and nothing secret is ever written to disk or logs. Revoking a device
//! drops its sessions at once; other processes do the same when they hear the
//! revocation (see [`crate::store::Event::DeviceRevoked`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::api::Id32;
use crate::clock::duration_ms;
use crate::error::ApiError;
use crate::limits::{
    CHALLENGE_TTL, MAX_PENDING_CHALLENGES, MAX_PENDING_CHALLENGES_PER_DEVICE, MAX_SESSIONS,
    MAX_SESSIONS_PER_DEVICE,
};

/// An authenticated device's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// The log the device belongs to.
    pub log_id: Id32,
    /// The device.
    pub device_id: Id32,
    /// When the token stops working.
    pub expires_ms: i64,
}

#[derive(Clone, Copy)]
struct Pending {
    log_id: Id32,
    device_id: Id32,
    expires_ms: i64,
}

/// A device, as the per-device caps count them.
type Owner = (Id32, Id32);

/// What a [`Table`] holds: something of one device that expires.
trait Held: Copy {
    fn owner(&self) -> Owner;
    fn expires_ms(&self) -> i64;
}

impl Held for Pending {
    fn owner(&self) -> Owner {
        (self.log_id, self.device_id)
    }
    fn expires_ms(&self) -> i64 {
        self.expires_ms
    }
}

impl Held for Session {
    fn owner(&self) -> Owner {
        (self.log_id, self.device_id)
    }
    fn expires_ms(&self) -> i64 {
        self.expires_ms
    }
}

/// Entries by 32-byte key, bounded in total and per device: a device at its cap
/// loses its oldest entry to a new one, so it can never hold more than its share,
/// and the total bound only ever refuses when many devices are busy at once.
struct Table<V> {
    entries: HashMap<[u8; 32], V>,
    /// Each device's keys, oldest first (at most its cap).
    by_owner: HashMap<Owner, VecDeque<[u8; 32]>>,
    max_total: usize,
    max_per_owner: usize,
}

impl<V: Held> Table<V> {
    fn new(max_total: usize, max_per_owner: usize) -> Self {
        Table {
            entries: HashMap::new(),
            by_owner: HashMap::new(),
            max_total,
            // A cap of 0 would refuse everything; one entry is the least useful.
            max_per_owner: max_per_owner.max(1),
        }
    }

    /// Adds an entry, first dropping its device's oldest if the device is at its
    /// cap; `429` if the table is full of live entries.
    fn insert(&mut self, key: [u8; 32], value: V, now: i64) -> Result<(), ApiError> {
        let owner = value.owner();
        if let Some(keys) = self.by_owner.get_mut(&owner) {
            while keys.len() >= self.max_per_owner {
                if let Some(oldest) = keys.pop_front() {
                    self.entries.remove(&oldest);
                }
            }
        }
        if self.entries.len() >= self.max_total {
            self.expire(now);
            if self.entries.len() >= self.max_total {
                return Err(ApiError::rate_limited());
            }
        }
        self.entries.insert(key, value);
        self.by_owner.entry(owner).or_default().push_back(key);
        Ok(())
    }

    fn get(&self, key: &[u8; 32]) -> Option<V> {
        self.entries.get(key).copied()
    }

    fn remove(&mut self, key: &[u8; 32]) -> Option<V> {
        let value = self.entries.remove(key)?;
        let owner = value.owner();
        if let Some(keys) = self.by_owner.get_mut(&owner) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
        Some(value)
    }

    fn remove_owner(&mut self, owner: Owner) {
        for key in self.by_owner.remove(&owner).unwrap_or_default() {
            self.entries.remove(&key);
        }
    }

    fn expire(&mut self, now: i64) {
        let dead: Vec<[u8; 32]> = self
            .entries
            .iter()
            .filter(|(_, v)| v.expires_ms() <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in dead {
            self.remove(&key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

struct Tables {
    challenges: Table<Pending>,
    /// Keyed by SHA-256 of the token.
    sessions: Table<Session>,
}

/// Challenges and sessions held by this process.
pub struct Auth {
    tables: Mutex<Tables>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth::new(MAX_SESSIONS, MAX_PENDING_CHALLENGES)
    }
}

/// 32 bytes from the OS.
pub(crate) fn random32() -> Result<[u8; 32], ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(&e))?;
    Ok(b)
}

/// SHA-256 of a token string, the key under which its session is held.
pub(crate) fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// Empty tables holding at most `max_sessions` sessions and `max_challenges`
    /// outstanding challenges, and per device at most [`MAX_SESSIONS_PER_DEVICE`]
    /// and [`MAX_PENDING_CHALLENGES_PER_DEVICE`].
    pub fn new(max_sessions: usize, max_challenges: usize) -> Self {
        Auth {
            tables: Mutex::new(Tables {
                challenges: Table::new(max_challenges, MAX_PENDING_CHALLENGES_PER_DEVICE),
                sessions: Table::new(max_sessions, MAX_SESSIONS_PER_DEVICE),
            }),
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps half-updated in a
        // way that matters (a key missing from a device's list is only forgotten
        // early, and a listed key that is gone is skipped).
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a challenge for a device, forgetting that device's oldest one if it
    /// has [`MAX_PENDING_CHALLENGES_PER_DEVICE`]; `429` when too many are
    /// outstanding in all.
    pub fn challenge(
        &self,
        log_id: Id32,
        device_id: Id32,
        now: i64,
    ) -> Result<(Id32, i64), ApiError> {
        let c = random32()?;
        let expires_ms = now + duration_ms(CHALLENGE_TTL);
        let pending = Pending {
            log_id,
            device_id,
            expires_ms,
        };
        self.tables().challenges.insert(c, pending, now)?;
        Ok((Id32(c), expires_ms))
    }

    /// Takes a challenge (each is answered at most once) if it has not expired.
    pub fn take_challenge(&self, challenge: &Id32, now: i64) -> Option<(Id32, Id32)> {
        let p = self.tables().challenges.remove(&challenge.0)?;
        (p.expires_ms > now).then_some((p.log_id, p.device_id))
    }

    /// Creates a session, dropping the device's oldest if it has
    /// [`MAX_SESSIONS_PER_DEVICE`]; returns the token (shown once) and its expiry.
    pub fn issue(
        &self,
        log_id: Id32,
        device_id: Id32,
        now: i64,
        ttl_ms: i64,
    ) -> Result<(String, i64), ApiError> {
        let token = hex::encode(random32()?);
        let expires_ms = now.saturating_add(ttl_ms);
        let session = Session {
            log_id,
            device_id,
            expires_ms,
        };
        self.tables()
            .sessions
            .insert(token_key(&token), session, now)?;
        Ok((token, expires_ms))
    }

    /// The live session for a token key.
    pub fn session(&self, key: &[u8; 32], now: i64) -> Option<Session> {
        let mut t = self.tables();
        match t.sessions.get(key) {
            Some(s) if s.expires_ms > now => Some(s),
            Some(_) => {
                t.sessions.remove(key);
                None
            }
            None => None,
        }
    }

    /// Drops every session of a device.
    pub fn revoke(&self, log_id: Id32, device_id: Id32) {
        self.tables().sessions.remove_owner((log_id, device_id));
    }
}

/// Extractor: the request carries `Authorization: Bearer <token>` for a live
/// session, else `401 unauthorized`.
#[derive(Clone, Copy, Debug)]
pub struct Authed {
    /// The session.
    pub session: Session,
    /// SHA-256 of the token (to re-check a long-lived WebSocket).
    pub key: [u8; 32],
}

impl Authed {
    /// The session, if it is for `log_id`; else `403 forbidden`.
    pub fn for_log(&self, log_id: &Id32) -> Result<Session, ApiError> {
        if &self.session.log_id == log_id {
            Ok(self.session)
        } else {
            Err(ApiError::forbidden())
        }
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(ApiError::unauthorized)?;
        let key = token_key(token.trim());
        let session = state
            .auth()
            .session(&key, state.now())
            .ok_or_else(ApiError::unauthorized)?;
        Ok(Authed { session, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_is_answered_at_most_once() {
        let auth = Auth::default();
        let (c, _) = auth
            .challenge(Id32([1; 32]), Id32([2; 32]), 0)
            .ok()
            .unwrap_or((Id32([0; 32]), 0));
        assert!(auth.take_challenge(&c, 1).is_some());
        assert!(auth.take_challenge(&c, 1).is_none());
    }

    #[test]
    fn an_expired_challenge_is_refused() {
        let auth = Auth::default();
        let (c, exp) = auth
            .challenge(Id32([1; 32]), Id32([2; 32]), 0)
            .ok()
            .unwrap_or((Id32([0; 32]), 0));
        assert!(auth.take_challenge(&c, exp).is_none());
    }

    fn device(i: usize) -> Id32 {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&(i as u64).to_le_bytes());
        Id32(d)
    }

    #[test]
    fn pending_challenges_at_bound_then_refused_until_some_expire() {
        let auth = Auth::default();
        let log = Id32([1; 32]);
        for i in 0..MAX_PENDING_CHALLENGES {
            assert!(auth.challenge(log, device(i), 0).is_ok());
        }
        let refused = auth.challenge(log, device(usize::MAX), 0).err();
        assert_eq!(refused.map(|e| e.code), Some("rate_limited"));
        let later = crate::clock::duration_ms(CHALLENGE_TTL);
        assert!(auth.challenge(log, device(usize::MAX), later).is_ok());
    }

    #[test]
    fn sessions_at_bound_then_refused_until_some_expire() {
        let auth = Auth::default();
        let log = Id32([1; 32]);
        for i in 0..MAX_SESSIONS {
            assert!(auth.issue(log, device(i), 0, 10).is_ok());
        }
        let refused = auth.issue(log, device(usize::MAX), 0, 10).err();
        assert_eq!(refused.map(|e| e.code), Some("rate_limited"));
        assert!(auth.issue(log, device(usize::MAX), 10, 10).is_ok());
    }

    #[test]
    fn one_device_filling_the_tables_keeps_only_its_newest_and_locks_nobody_out() {
        let auth = Auth::default();
        let (log, dev) = (Id32([1; 32]), Id32([2; 32]));
        let mut tokens = Vec::new();
        for _ in 0..MAX_SESSIONS + 1 {
            tokens.push(auth.issue(log, dev, 0, 1000).ok().unwrap_or_default().0);
            assert!(auth.challenge(log, dev, 0).is_ok());
        }
        let t = auth.tables();
        assert_eq!(t.sessions.len(), MAX_SESSIONS_PER_DEVICE);
        assert_eq!(t.challenges.len(), MAX_PENDING_CHALLENGES_PER_DEVICE);
        drop(t);
        let (old, newest) = tokens.split_at(tokens.len() - MAX_SESSIONS_PER_DEVICE);
        assert!(auth.session(&token_key(&old[old.len() - 1]), 1).is_none());
        assert!(
            newest
                .iter()
                .all(|t| auth.session(&token_key(t), 1).is_some())
        );
        assert!(auth.issue(log, Id32([3; 32]), 0, 1000).is_ok());
        assert!(auth.challenge(log, Id32([3; 32]), 0).is_ok());
    }

    #[test]
    fn sessions_expire_and_revocation_drops_them() {
        let auth = Auth::default();
        let (log, dev) = (Id32([1; 32]), Id32([2; 32]));
        let (tok, exp) = auth.issue(log, dev, 0, 1000).ok().unwrap_or_default();
        let key = token_key(&tok);
        assert!(auth.session(&key, 999).is_some());
        assert!(auth.session(&key, exp).is_none());
        let (tok, _) = auth.issue(log, dev, 0, 1000).ok().unwrap_or_default();
        auth.revoke(log, dev);
        assert!(auth.session(&token_key(&tok), 1).is_none());
    }
}
