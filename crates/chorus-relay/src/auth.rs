//! Device authentication: Ed25519 challenge → short-lived session token.
//!
//! A device proves it holds the key registered for it by signing a fresh random
//! challenge ([`crate::api::auth_message`]); it gets back a random bearer token
//! valid for [`crate::limits::Limits::session_ttl`]. The relay keeps only the
//! SHA-256 of each token, in memory: a restart logs everyone out (they re-sign for
//! free) and nothing secret is ever written to disk or logs. Revoking a device
//! drops its sessions at once; other processes do the same when they hear the
//! revocation (see [`crate::store::Event::DeviceRevoked`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::api::Id32;
use crate::clock::duration_ms;
use crate::error::ApiError;
use crate::limits::{CHALLENGE_TTL, MAX_PENDING_CHALLENGES, MAX_SESSIONS};

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

#[derive(Default)]
struct Tables {
    challenges: HashMap<[u8; 32], Pending>,
    /// Keyed by SHA-256 of the token.
    sessions: HashMap<[u8; 32], Session>,
}

/// Challenges and sessions held by this process.
#[derive(Default)]
pub struct Auth {
    tables: Mutex<Tables>,
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
    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps half-updated in a
        // way that matters (each update is a single insert or remove).
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a challenge for a device; `429` when too many are outstanding.
    pub fn challenge(
        &self,
        log_id: Id32,
        device_id: Id32,
        now: i64,
    ) -> Result<(Id32, i64), ApiError> {
        let c = random32()?;
        let expires_ms = now + duration_ms(CHALLENGE_TTL);
        let mut t = self.tables();
        if t.challenges.len() >= MAX_PENDING_CHALLENGES {
            t.challenges.retain(|_, p| p.expires_ms > now);
            if t.challenges.len() >= MAX_PENDING_CHALLENGES {
                return Err(ApiError::rate_limited());
            }
        }
        t.challenges.insert(
            c,
            Pending {
                log_id,
                device_id,
                expires_ms,
            },
        );
        Ok((Id32(c), expires_ms))
    }

    /// Takes a challenge (each is answered at most once) if it has not expired.
    pub fn take_challenge(&self, challenge: &Id32, now: i64) -> Option<(Id32, Id32)> {
        let p = self.tables().challenges.remove(&challenge.0)?;
        (p.expires_ms > now).then_some((p.log_id, p.device_id))
    }

    /// Creates a session; returns the token (shown once) and its expiry.
    pub fn issue(
        &self,
        log_id: Id32,
        device_id: Id32,
        now: i64,
        ttl_ms: i64,
    ) -> Result<(String, i64), ApiError> {
        let token = hex::encode(random32()?);
        let expires_ms = now.saturating_add(ttl_ms);
        let mut t = self.tables();
        if t.sessions.len() >= MAX_SESSIONS {
            t.sessions.retain(|_, s| s.expires_ms > now);
            if t.sessions.len() >= MAX_SESSIONS {
                return Err(ApiError::rate_limited());
            }
        }
        t.sessions.insert(
            token_key(&token),
            Session {
                log_id,
                device_id,
                expires_ms,
            },
        );
        Ok((token, expires_ms))
    }

    /// The live session for a token key.
    pub fn session(&self, key: &[u8; 32], now: i64) -> Option<Session> {
        let mut t = self.tables();
        match t.sessions.get(key) {
            Some(s) if s.expires_ms > now => Some(*s),
            Some(_) => {
                t.sessions.remove(key);
                None
            }
            None => None,
        }
    }

    /// Drops every session of a device.
    pub fn revoke(&self, log_id: Id32, device_id: Id32) {
        self.tables()
            .sessions
            .retain(|_, s| !(s.log_id == log_id && s.device_id == device_id));
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

    #[test]
    fn pending_challenges_at_bound_then_refused_until_some_expire() {
        let auth = Auth::default();
        let (log, dev) = (Id32([1; 32]), Id32([2; 32]));
        for _ in 0..MAX_PENDING_CHALLENGES {
            assert!(auth.challenge(log, dev, 0).is_ok());
        }
        let refused = auth.challenge(log, dev, 0).err().map(|e| e.code);
        assert_eq!(refused, Some("rate_limited"));
        let later = crate::clock::duration_ms(CHALLENGE_TTL);
        assert!(auth.challenge(log, dev, later).is_ok());
    }

    #[test]
    fn sessions_at_bound_then_refused_until_some_expire() {
        let auth = Auth::default();
        let (log, dev) = (Id32([1; 32]), Id32([2; 32]));
        for _ in 0..MAX_SESSIONS {
            assert!(auth.issue(log, dev, 0, 10).is_ok());
        }
        assert_eq!(
            auth.issue(log, dev, 0, 10).err().map(|e| e.code),
            Some("rate_limited")
        );
        assert!(auth.issue(log, dev, 10, 10).is_ok());
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
