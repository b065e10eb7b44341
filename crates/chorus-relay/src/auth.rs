//! Device authentication: Ed25519 challenge → short-lived session token.
//!
//! A device proves it holds the key registered for it by signing a fresh random
//! challenge ([`crate::api::auth_message`]); it gets back a random bearer token
//! valid for [`crate::limits::Limits::session_ttl`]. Challenges and sessions are
//! kept by the store ([`RelayStore::put_login`]), so every relay process over one
//! PostgreSQL database honours a token any of them issued; the relay keeps only
//! the SHA-256 of each token, so the database holds nothing that logs anyone in.
//! Issuing a session re-checks the device inside the transaction, under the
//! log's lock, in which a revocation deletes the device's sessions: a revocation
//! that lands while a login is under way cannot leave the revoked device with a
//! working token. Open sockets hear of a revocation at once (see
//! [`crate::store::Event::DeviceRevoked`]).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::api::Id32;
use crate::clock::duration_ms;
use crate::error::{ApiError, StoreError};
use crate::limits::{CHALLENGE_TTL, MAX_PENDING_CHALLENGES_PER_DEVICE, MAX_SESSIONS_PER_DEVICE};
use crate::store::{LoginCaps, LoginTable};

/// An authenticated device's session.
pub use crate::store::Login as Session;

/// SHA-256 of a token string, the key under which its session is held.
pub(crate) fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Issues a challenge for a current device, forgetting that device's oldest if
/// it has [`MAX_PENDING_CHALLENGES_PER_DEVICE`]; `401` for any other device id
/// (so made-up ids hold nothing), `429` when too many are outstanding in all.
pub(crate) async fn challenge(
    state: &AppState,
    log_id: Id32,
    device_id: Id32,
) -> Result<(Id32, i64), ApiError> {
    let c: [u8; 32] = state.random();
    let expires_ms = state.now() + duration_ms(CHALLENGE_TTL);
    let caps = LoginCaps {
        total: state.limits().max_pending_challenges,
        per_device: MAX_PENDING_CHALLENGES_PER_DEVICE,
    };
    let login = Session {
        log_id,
        device_id,
        expires_ms,
    };
    put(state, LoginTable::Challenges, c, login, caps).await?;
    Ok((Id32(c), expires_ms))
}

/// Takes a challenge (each is answered at most once) if it has not expired.
pub(crate) async fn take_challenge(
    state: &AppState,
    challenge: &Id32,
) -> Result<Option<Session>, ApiError> {
    Ok(state
        .store()
        .take_challenge(challenge.0, state.now())
        .await?)
}

/// Creates a session for a device that is current when it commits, dropping
/// the device's oldest if it has [`MAX_SESSIONS_PER_DEVICE`]; returns the token
/// (shown once) and its expiry.
pub(crate) async fn issue(
    state: &AppState,
    log_id: Id32,
    device_id: Id32,
) -> Result<(String, i64), ApiError> {
    let token = hex::encode(state.random::<32>());
    let expires_ms = state
        .now()
        .saturating_add(duration_ms(state.limits().session_ttl));
    let caps = LoginCaps {
        total: state.limits().max_sessions,
        per_device: MAX_SESSIONS_PER_DEVICE,
    };
    let login = Session {
        log_id,
        device_id,
        expires_ms,
    };
    put(state, LoginTable::Sessions, token_key(&token), login, caps).await?;
    Ok((token, expires_ms))
}

/// Stores a login row; unknown and revoked devices look the same from outside.
async fn put(
    state: &AppState,
    table: LoginTable,
    id: [u8; 32],
    login: Session,
    caps: LoginCaps,
) -> Result<(), ApiError> {
    match state
        .store()
        .put_login(table, id, login, caps, state.now())
        .await
    {
        Err(StoreError::NotFound) => Err(ApiError::unauthorized()),
        other => Ok(other?),
    }
}

/// The live session for a token key, wherever it was issued.
pub(crate) async fn session(state: &AppState, key: &[u8; 32]) -> Result<Option<Session>, ApiError> {
    Ok(state.store().session(*key, state.now()).await?)
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
        let session = session(state, &key)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        Ok(Authed { session, key })
    }
}
