//! Extractors for path segments and query strings whose rejection is the relay's own
//! `400 malformed` (axum's are free text), shared by the HTTP routes and the WebSocket,
//! and the client's address for rate limits.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

type ApiResult<T> = Result<T, ApiError>;

/// A query string decoded into `T`, or `400 malformed`.
pub(crate) struct Q<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|_| ApiError::malformed())
    }
}

/// Path segments as strings, or `400 malformed`.
pub(crate) struct Segs<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Segs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Segs(v))
            .map_err(|_| ApiError::malformed())
    }
}

/// The client's IP address: the TCP peer, or the address a trusted reverse proxy
/// forwarded ([`crate::proxy`]); absent when served without connection info.
pub(crate) struct ClientIp(Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientIp(crate::proxy::client_ip(
            peer,
            &parts.headers,
            &state.limits().trusted_proxies,
        )))
    }
}

impl ClientIp {
    /// The rate-limit key for this source writing to `target` (a mailbox, an
    /// address): one source's budget per target, so a busy target is not one
    /// bucket that any single sender can empty for everyone.
    pub(crate) fn key_for(&self, target: &[u8; 32]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::new()
            .chain_update(self.key())
            .chain_update(target)
            .finalize()
            .into()
    }

    /// The rate-limit key: the address, IPv6 per /64.
    pub(crate) fn key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        match self.0 {
            Some(IpAddr::V4(a)) => k[..4].copy_from_slice(&a.octets()),
            // Limit IPv6 per /64: one host gets a whole /64 for free.
            Some(IpAddr::V6(a)) => k[..8].copy_from_slice(&a.octets()[..8]),
            None => {}
        }
        k
    }
}

/// A bulk answer (a page of records or envelopes) in the encoding the client asked
/// for: [`crate::api::binary`] when its `Accept` names [`binary::MEDIA_TYPE`], JSON
/// otherwise (the readable default, for curl and older clients).
///
/// [`binary::MEDIA_TYPE`]: crate::api::binary::MEDIA_TYPE
pub(crate) struct Bulk {
    binary: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Bulk {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        let binary = parts
            .headers
            .get_all(axum::http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.split(';').next().map(str::trim) == Some(crate::api::binary::MEDIA_TYPE));
        Ok(Self { binary })
    }
}

impl Bulk {
    /// `value` as the answer.
    pub(crate) fn answer<T: serde::Serialize>(&self, value: &T) -> axum::response::Response {
        use axum::response::IntoResponse;
        if self.binary {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    crate::api::binary::MEDIA_TYPE,
                )],
                crate::api::binary::encode(value),
            )
                .into_response()
        } else {
            axum::Json(value).into_response()
        }
    }
}
