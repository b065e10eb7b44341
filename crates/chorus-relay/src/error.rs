//! Errors: what the store can refuse, and what a client is told.
//!
//! Every refusal becomes an HTTP status and a short machine-readable code
//! (`{"error":"mailbox_full"}`), sometimes with facts the client needs to recover
//! (the current versions of failed guards). Internal failures are logged with
//! their details and answered with a bare `500 {"error":"internal"}`: a relay
//! never tells a client how its database broke.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Why the store refused an operation (all but [`StoreError::Internal`] are the
/// client's doing or a conflict it can resolve).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The log, device, mailbox, blob, address or channel does not exist.
    #[error("not found")]
    NotFound,
    /// A log with this id already exists.
    #[error("log already exists")]
    LogExists,
    /// The device was revoked; it can never be registered again.
    #[error("device revoked")]
    DeviceRevoked,
    /// The log already has the maximum number of devices.
    #[error("too many devices")]
    TooManyDevices,
    /// Revoking this device would leave the log without a current device.
    #[error("cannot revoke the last device")]
    LastDevice,
    /// Trimming is refused: some current device has not acknowledged the seq.
    #[error("not acknowledged by every device (lowest cursor {min_cursor})")]
    NotAcknowledged {
        /// The lowest cursor among current devices.
        min_cursor: i64,
    },
    /// A cursor past the log head.
    #[error("cursor {seq} is past the head {head}")]
    CursorAhead {
        /// The requested cursor.
        seq: i64,
        /// The log head.
        head: i64,
    },
    /// The recovery slot is another log's.
    #[error("recovery slot taken")]
    SlotTaken,
    /// The mailbox id is registered to another log.
    #[error("mailbox registered elsewhere")]
    MailboxTaken,
    /// The log already has the maximum number of mailboxes.
    #[error("too many mailboxes")]
    TooManyMailboxes,
    /// The mailbox holds its maximum number of unexpired envelopes.
    #[error("mailbox full")]
    MailboxFull,
    /// The log's mailboxes hold their quota of unexpired envelope bytes.
    #[error("the log's envelope quota is used up")]
    EnvelopeQuotaExceeded,
    /// A single-use mailbox (an invitation) already took another sender's envelope.
    #[error("the invitation was already used")]
    MailboxSpent,
    /// The envelope id was posted before with different bytes.
    #[error("envelope id reused with different content")]
    EnvelopeConflict,
    /// The blob would take the log over its quota.
    #[error("blob quota exceeded ({used} of {quota} bytes used)")]
    QuotaExceeded {
        /// Bytes in use before this blob.
        used: i64,
        /// The quota.
        quota: i64,
    },
    /// The file locator holds another log's file.
    #[error("file locator in use by another log")]
    FileTaken,
    /// The file part's time is up (the sweep has not deleted it yet).
    #[error("file expired")]
    FileExpired,
    /// The prekey address belongs to another log.
    #[error("address registered elsewhere")]
    AddressTaken,
    /// The address would hold more than the maximum one-time prekeys.
    #[error("too many prekeys stored")]
    TooManyPrekeys,
    /// The login table (challenges or sessions) holds its bound of live rows.
    #[error("too many logins outstanding")]
    TooManyLogins,
    /// The channel id is in use.
    #[error("channel exists")]
    ChannelExists,
    /// The channel holds its maximum number of messages.
    #[error("channel full")]
    ChannelFull,
    /// The mailbox's identity publishes no device list (it does not run `per-device`).
    #[error("no device list")]
    NoDeviceList,
    /// A device list whose serial is not above the stored one.
    #[error("device list older than the stored one")]
    StaleDeviceList,
    /// A per-device post's device set is not the identity's device list.
    #[error("device set differs from the list")]
    DeviceMismatch(chorus_wire::Mismatch),
    /// The database failed.
    #[error("database error: {0}")]
    Internal(#[from] sqlx::Error),
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short machine-readable code, stable across versions.
    pub code: &'static str,
    /// Extra facts for the client (never internal details).
    pub detail: Option<Value>,
}

impl ApiError {
    /// An error with no detail.
    pub fn new(status: StatusCode, code: &'static str) -> Self {
        ApiError {
            status,
            code,
            detail: None,
        }
    }

    /// Adds client-facing detail.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// `400 malformed`: the body or query could not be decoded.
    pub fn malformed() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed")
    }

    /// `400 <code>`: a decoded value broke a bound or rule.
    pub fn invalid(code: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code)
    }

    /// `401 unauthorized`: missing, unknown or expired session token.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized")
    }

    /// `403 forbidden`: authenticated, but not for this resource.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden")
    }

    /// `404 not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found")
    }

    /// `413 body_too_large`.
    pub fn too_large(code: &'static str) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code)
    }

    /// `429 rate_limited`.
    pub fn rate_limited() -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    }

    /// `500 internal`, after logging `what` (never sent to the client).
    pub fn internal(what: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal")
    }
}

impl From<chorus_relay_api::Refusal> for ApiError {
    fn from(r: chorus_relay_api::Refusal) -> Self {
        use chorus_relay_api::RefusalKind;
        match r.kind {
            RefusalKind::Malformed => ApiError::malformed(),
            RefusalKind::Invalid => ApiError::invalid(r.code),
            RefusalKind::TooLarge => ApiError::too_large(r.code),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        use StatusCode as S;
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::LogExists => ApiError::new(S::CONFLICT, "log_exists"),
            StoreError::DeviceRevoked => ApiError::new(S::CONFLICT, "device_revoked"),
            StoreError::TooManyDevices => ApiError::new(S::CONFLICT, "too_many_devices"),
            StoreError::LastDevice => ApiError::new(S::CONFLICT, "last_device"),
            StoreError::NotAcknowledged { min_cursor } => {
                ApiError::new(S::CONFLICT, "not_acknowledged")
                    .with_detail(json!({ "min_cursor": min_cursor }))
            }
            StoreError::CursorAhead { head, .. } => {
                ApiError::new(S::BAD_REQUEST, "cursor_ahead").with_detail(json!({ "head": head }))
            }
            StoreError::MailboxTaken => ApiError::new(S::CONFLICT, "mailbox_taken"),
            StoreError::SlotTaken => ApiError::new(S::CONFLICT, "slot_taken"),
            StoreError::TooManyMailboxes => ApiError::new(S::CONFLICT, "too_many_mailboxes"),
            StoreError::MailboxFull => ApiError::new(S::INSUFFICIENT_STORAGE, "mailbox_full"),
            StoreError::EnvelopeQuotaExceeded => {
                ApiError::new(S::INSUFFICIENT_STORAGE, "envelope_quota_exceeded")
            }
            StoreError::MailboxSpent => ApiError::new(S::GONE, "mailbox_spent"),
            StoreError::EnvelopeConflict => ApiError::new(S::CONFLICT, "envelope_conflict"),
            StoreError::QuotaExceeded { used, quota } => {
                ApiError::new(S::INSUFFICIENT_STORAGE, "quota_exceeded")
                    .with_detail(json!({ "used": used, "quota": quota }))
            }
            StoreError::AddressTaken => ApiError::new(S::CONFLICT, "address_taken"),
            StoreError::FileTaken => ApiError::new(S::CONFLICT, "file_taken"),
            StoreError::FileExpired => ApiError::new(S::GONE, "expired"),
            StoreError::TooManyPrekeys => ApiError::new(S::CONFLICT, "too_many_prekeys"),
            StoreError::TooManyLogins => ApiError::rate_limited(),
            StoreError::ChannelExists => ApiError::new(S::CONFLICT, "channel_exists"),
            StoreError::ChannelFull => ApiError::new(S::CONFLICT, "channel_full"),
            StoreError::NoDeviceList => ApiError::new(S::NOT_FOUND, "no_device_list"),
            StoreError::StaleDeviceList => ApiError::new(S::CONFLICT, "stale_device_list"),
            StoreError::DeviceMismatch(m) => {
                let hex = |v: &[[u8; 32]]| v.iter().map(hex::encode).collect::<Vec<_>>();
                ApiError::new(S::CONFLICT, "device_mismatch").with_detail(json!({
                    "missing": hex(&m.missing),
                    "extra": hex(&m.extra),
                    "stale": hex(&m.stale),
                }))
            }
            StoreError::Internal(e) => ApiError::internal(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code });
        if let (Some(Value::Object(extra)), Some(obj)) = (self.detail, body.as_object_mut()) {
            obj.extend(extra);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_error_response_has_no_details() {
        let e: ApiError = StoreError::Internal(sqlx::Error::PoolTimedOut).into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code, "internal");
        assert!(e.detail.is_none());
    }
}
