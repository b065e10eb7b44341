//! HTTP handlers: decode, authorise, rate-limit, call the store, answer.
//!
//! Handlers are thin. Bodies are read as bytes under a size limit and decoded by
//! [`crate::api::decode`] (never axum's `Json`, whose rejections are free text);
//! queries and paths go through extractors that answer `400 malformed`/`bad_id`.
//! Authorisation is the [`Authed`] extractor plus a check that the session's log is
//! the log in the path. Every write that anyone may make is rate-limited.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chorus_crypto::{DevicePublicKey, Signature};
use serde_json::json;
use tower_http::timeout::TimeoutLayer;

use crate::AppState;
use crate::api::*;
use crate::auth::{self, Authed};
use crate::authority::{Authority, Change, Roll};
use crate::clock::duration_ms;
use crate::error::ApiError;
use crate::extract::{Bulk, ClientIp, Q, Segs};
use crate::limits::{
    MAX_BATCH_READ_BYTES, MAX_BODY_BYTES, MAX_DEVICES_PER_LOG, MAX_FILE_PART_BYTES, MAX_FILE_PARTS,
    MAX_PAGE, MAX_PAGE_BYTES, MAX_PREKEYS_STORED, RENDEZVOUS_TTL, REQUEST_TIMEOUT,
};
use crate::page;
use crate::ratelimit::Kind;
use crate::store::{
    AppendJob, AppendRejection, DeviceAdded, DevicePost, EnvelopePost, Event, FilePart,
    MailboxPolicy,
};

type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn router(state: AppState) -> Router {
    let blob_limit = state.limits().max_blob_bytes;
    let json_routes = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/session", post(session))
        .route("/v1/logs", post(create_log))
        .route("/v1/logs/{log}", get(log_info))
        .route("/v1/logs/{log}/append", post(append))
        .route("/v1/logs/{log}/records", get(read_records))
        .route("/v1/logs/{log}/cursor", post(ack_cursor))
        .route("/v1/logs/{log}/trim", post(trim))
        .route("/v1/logs/{log}/devices", get(list_devices).post(add_device))
        .route(
            "/v1/logs/{log}/devices/{device}/revoke",
            post(revoke_device),
        )
        .route("/v1/logs/{log}/root", put(roll_root))
        .route("/v1/logs/{log}/recovery", put(put_recovery_kit))
        .route("/v1/logs/{log}/recovery/state", put(put_recovery_state))
        .route("/v1/recovery/{slot}", get(recovery_slot))
        .route("/v1/recovery/{slot}/devices", post(recover_device))
        .route("/v1/recovery/{slot}/checkpoint", get(recovery_checkpoint))
        .route("/v1/logs/{log}/mailboxes", post(register_mailbox))
        .route("/v1/logs/{log}/mailboxes/read", post(batch_read))
        .route(
            "/v1/logs/{log}/mailboxes/{mailbox}/envelopes",
            get(read_envelopes),
        )
        .route(
            "/v1/logs/{log}/prekeys/{address}",
            post(publish_prekeys).delete(withdraw_prekeys),
        )
        .route("/v1/logs/{log}/prekeys/{address}/count", get(count_prekeys))
        .route("/v1/logs/{log}/presence", get(presence).post(heartbeat))
        .route("/v1/logs/{log}/ws", get(crate::ws::upgrade))
        .route("/v1/mailboxes/{mailbox}/envelopes", post(post_envelope))
        .route("/v1/logs/{log}/device-list", put(put_device_list))
        .route(
            "/v1/mailboxes/{mailbox}/device-list",
            get(mailbox_device_list),
        )
        .route(
            "/v1/mailboxes/{mailbox}/device-envelopes",
            post(post_device_envelopes),
        )
        .route("/v1/prekeys/{address}/fetch", post(fetch_prekeys))
        .route("/v1/rendezvous", post(create_channel))
        .route("/v1/rendezvous/{channel}", delete(close_channel))
        .route(
            "/v1/rendezvous/{channel}/messages",
            get(read_channel).post(post_channel),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let blob_routes = Router::new()
        .route(
            "/v1/logs/{log}/blobs/{blob}",
            get(get_blob).put(put_blob).delete(delete_blob),
        )
        .layer(DefaultBodyLimit::max(blob_limit));
    let file_routes = Router::new()
        .route("/v1/logs/{log}/files/{locator}/{part}", put(put_file_part))
        .route("/v1/files/{locator}/{part}", get(get_file_part))
        .layer(DefaultBodyLimit::max(MAX_FILE_PART_BYTES));
    json_routes
        .merge(blob_routes)
        .merge(file_routes)
        .fallback(|| async { ApiError::not_found() })
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

// ---------------------------------------------------------------- extractors

/// A request body read under the route's size limit.
pub(crate) struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large("body_too_large")
                } else {
                    ApiError::malformed()
                }
            })
    }
}

fn allow(state: &AppState, kind: Kind, key: [u8; 32]) -> ApiResult<()> {
    let l = state.limits();
    let rate = match kind {
        Kind::MailboxPost => l.mailbox_post_rate,
        Kind::Append => l.append_rate,
        Kind::PrekeyFetch => l.prekey_fetch_rate,
        Kind::Open => l.open_rate,
        Kind::FileFetch => l.file_fetch_rate,
    };
    if state.rate().allow(kind, key, rate, state.now()) {
        Ok(())
    } else {
        Err(ApiError::rate_limited())
    }
}

fn page_limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(crate::limits::DEFAULT_PAGE).min(MAX_PAGE)
}

// ---------------------------------------------------------------- auth

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "ok": true, "backend": state.store().backend() }))
}

async fn challenge(
    State(state): State<AppState>,
    ip: ClientIp,
    Body(body): Body,
) -> ApiResult<Json<ChallengeResponse>> {
    let req: ChallengeRequest = decode(&body)?;
    allow(&state, Kind::Open, ip.key())?;
    // Only a current device gets a challenge: the table holds nothing for keys
    // that could never log in, so made-up device ids cannot fill it.
    let (challenge, expires_ms) = auth::challenge(&state, req.log_id, req.device_id).await?;
    Ok(Json(ChallengeResponse {
        challenge,
        expires_ms,
    }))
}

async fn session(
    State(state): State<AppState>,
    Body(body): Body,
) -> ApiResult<Json<SessionResponse>> {
    let req: SessionRequest = decode(&body)?;
    let challenged = auth::take_challenge(&state, &req.challenge)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let (log_id, device_id) = (challenged.log_id, challenged.device_id);
    let key = DevicePublicKey::from_bytes(device_id.0).map_err(|_| ApiError::unauthorized())?;
    let sig = Signature::from_slice(&req.signature.0).map_err(|_| ApiError::unauthorized())?;
    key.verify(
        AUTH_CONTEXT,
        &auth_payload(&req.challenge, &log_id, &device_id),
        &sig,
    )
    .map_err(|_| ApiError::unauthorized())?;
    // The device is checked again as the session is stored, under the log's lock.
    let (token, expires_ms) = auth::issue(&state, log_id, device_id).await?;
    tracing::debug!(log = ?log_id, device = ?device_id, "session issued");
    Ok(Json(SessionResponse { token, expires_ms }))
}

// ---------------------------------------------------------------- log

async fn create_log(
    State(state): State<AppState>,
    ip: ClientIp,
    Body(body): Body,
) -> ApiResult<Response> {
    let req: CreateLogRequest = decode(&body)?;
    DevicePublicKey::from_bytes(req.device_id.0)
        .map_err(|_| ApiError::invalid("bad_device_key"))?;
    allow(&state, Kind::Open, ip.key())?;
    // The genesis must be the identity's, for this log, naming this device: it is
    // what every later device change is checked against.
    let authority = Authority::from_genesis(req.log_id, &req.genesis.0)?;
    if authority.first_device() != req.device_id {
        return Err(ApiError::invalid("bad_genesis"));
    }
    state
        .store()
        .create_log(req.log_id, &req.genesis.0, req.device_id, state.now())
        .await?;
    tracing::info!(log = ?req.log_id, "log created");
    Ok((StatusCode::CREATED, Json(json!({ "log_id": req.log_id }))).into_response())
}

async fn log_info(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
) -> ApiResult<Json<LogInfoResponse>> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let info = state
        .store()
        .log_info(log_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(LogInfoResponse {
        log_id,
        genesis: HexBytes(info.genesis),
        head_seq: info.head_seq,
        first_seq: info.first_seq,
        root: info
            .root
            .map(|r| <[u8; 32]>::try_from(r).map(Id32))
            .transpose()
            .map_err(|_| ApiError::internal(&"a stored root is not a key"))?,
    }))
}

async fn append(
    State(state): State<AppState>,
    authed: Authed,
    ip: ClientIp,
    Segs(log): Segs<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let log_id = Id32::parse(&log)?;
    let s = authed.for_log(&log_id)?;
    let req: AppendRequest = decode(&body)?;
    allow(&state, Kind::Append, s.device_id.0)?;
    let job = AppendJob {
        log_id,
        author: s.device_id,
        records: req.records,
        max_records: state.limits().max_records_per_log,
    };
    let Some(post) = req.post else {
        return match state.batcher().append(job).await? {
            Ok(seqs) => Ok(Json(AppendResponse { seqs, posted: None }).into_response()),
            Err(refused) => Err(append_refused(refused)),
        };
    };
    // The bundled send: the post is limited as any post is, and it is stored with
    // the records in one transaction (outside the group commit: it is one request
    // either way, and a refused post must take its records with it).
    allow(&state, Kind::MailboxPost, ip.key_for(&post.mailbox_id.0))?;
    let post = envelope_post(
        &state,
        post.mailbox_id,
        post.envelope_id,
        post.claim,
        post.payload,
    );
    let (seqs, posted) = match state.store().append_bundle(&job, &post).await? {
        Ok(done) => done,
        Err(refused) => return Err(append_refused(refused)),
    };
    let mut events = Vec::with_capacity(2);
    if let Some(&head_seq) = seqs.last() {
        events.push(Event::LogAppended { log_id, head_seq });
    }
    if !posted.duplicate {
        events.push(Event::MailboxPosted {
            log_id: posted.log_id,
            mailbox_id: post.mailbox_id,
            seq: posted.seq,
        });
    }
    state.emit(events).await;
    Ok(Json(AppendResponse {
        seqs,
        posted: Some(PostEnvelopeResponse {
            seq: posted.seq,
            duplicate: posted.duplicate,
        }),
    })
    .into_response())
}

/// The answer to a refused append.
fn append_refused(refused: AppendRejection) -> ApiError {
    match refused {
        AppendRejection::NoLog => ApiError::not_found(),
        AppendRejection::NotCurrent => ApiError::forbidden(),
        AppendRejection::Quota => {
            ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "record_quota_exceeded")
        }
        AppendRejection::Guards(failed) => ApiError::new(StatusCode::CONFLICT, "guard_failed")
            .with_detail(json!({ "failed": failed })),
        AppendRejection::StaleEpoch {
            index,
            epoch,
            current,
        } => ApiError::new(StatusCode::CONFLICT, "stale_epoch").with_detail(json!({
            "index": index,
            "epoch": epoch,
            "current_epoch": current,
            "message": format!(
                "the log moved to epoch {current}: read the log before appending under epoch {epoch}"
            ),
        })),
        AppendRejection::EpochJump {
            index,
            epoch,
            current,
        } => ApiError::new(StatusCode::BAD_REQUEST, "epoch_jump").with_detail(json!({
            "index": index,
            "epoch": epoch,
            "current_epoch": current,
            "message": format!(
                "a record under epoch {epoch} cannot follow epoch {current}: epochs move one at a time"
            ),
        })),
    }
}

/// A post under this relay's limits, expiring after the mailbox TTL from now.
fn envelope_post(
    state: &AppState,
    mailbox_id: Id32,
    envelope_id: Id16,
    claim: Option<Id16>,
    payload: HexBytes,
) -> EnvelopePost {
    let now = state.now();
    EnvelopePost {
        mailbox_id,
        envelope_id,
        claim,
        payload: payload.0,
        recipient: None,
        now,
        expires_ms: now.saturating_add(duration_ms(state.limits().mailbox_ttl)),
        max_depth: state.limits().mailbox_depth,
        quota: state.limits().envelope_quota_bytes,
    }
}

async fn read_records(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    Q(q): Q<PageQuery>,
    bulk: Bulk,
) -> ApiResult<Response> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let limit = q.page()?;
    Ok(bulk.answer(&page::records(&state, log_id, q.after, limit).await?))
}

async fn ack_cursor(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    Body(body): Body,
) -> ApiResult<Json<serde_json::Value>> {
    let log_id = Id32::parse(&log)?;
    let s = authed.for_log(&log_id)?;
    let req: CursorRequest = decode(&body)?;
    let cursor = state
        .store()
        .ack_cursor(log_id, s.device_id, req.seq)
        .await?;
    Ok(Json(json!({ "cursor": cursor })))
}

async fn trim(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    Body(body): Body,
) -> ApiResult<Json<TrimResponse>> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let req: TrimRequest = decode(&body)?;
    let first_seq = state.store().trim(log_id, req.below_seq).await?;
    Ok(Json(TrimResponse { first_seq }))
}

// ---------------------------------------------------------------- devices

async fn list_devices(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
) -> ApiResult<Json<DevicesResponse>> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let devices = state
        .store()
        .devices(log_id)
        .await?
        .into_iter()
        .map(|d| DeviceOut {
            device_id: d.device_id,
            revoked_ms: d.revoked_ms,
            cursor: d.cursor,
        })
        .collect();
    Ok(Json(DevicesResponse { devices }))
}

async fn add_device(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let req: AddDeviceRequest = decode(&body)?;
    register_device(&state, log_id, req).await
}

/// A device recovering the identity registers itself, without a session: it names
/// the recovery slot (only the code's holder can) and shows a root-signed
/// `DeviceAuthorized` for itself, the same proof any device registration needs.
async fn recover_device(
    State(state): State<AppState>,
    ip: ClientIp,
    Segs(slot): Segs<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let found = slot_named(&state, &ip, &slot).await?;
    let req: AddDeviceRequest = decode(&body)?;
    register_device(&state, found.log_id, req).await
}

/// Registers a device on a proof the log's authority accepts.
async fn register_device(
    state: &AppState,
    log_id: Id32,
    req: AddDeviceRequest,
) -> ApiResult<Response> {
    DevicePublicKey::from_bytes(req.device_id.0)
        .map_err(|_| ApiError::invalid("bad_device_key"))?;
    authority(state, log_id)
        .await?
        .check(Change::Add, req.device_id, &req.authorization.0)?;
    let added = state
        .store()
        .add_device(log_id, req.device_id, MAX_DEVICES_PER_LOG, state.now())
        .await?;
    let status = match added {
        DeviceAdded::Added => StatusCode::CREATED,
        DeviceAdded::AlreadyPresent => StatusCode::OK,
    };
    Ok((status, Json(json!({ "device_id": req.device_id }))).into_response())
}

/// The identity rolled its root (`chorus identity roll`): on the `RootRolled` entry
/// signed by the current root, the log follows the new one. `409 root_moved` if another
/// roll landed in between.
async fn roll_root(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    Body(body): Body,
) -> ApiResult<StatusCode> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let req: RollRootRequest = decode(&body)?;
    let authority = authority(&state, log_id).await?;
    if let Roll::To(new) = authority.check_roll(&req.authorization.0)? {
        if !state
            .store()
            .roll_root(log_id, authority.roots(), new)
            .await?
        {
            return Err(ApiError::new(StatusCode::CONFLICT, "root_moved"));
        }
        tracing::info!(log = ?log_id, "identity rolled its root");
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn put_recovery_kit(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    Body(body): Body,
) -> ApiResult<StatusCode> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let req: RecoveryKitRequest = decode(&body)?;
    authority(&state, log_id)
        .await?
        .check_recovery(req.slot, &req.kit.0, &req.authorization.0)?;
    state
        .store()
        .put_recovery_kit(log_id, req.slot, &req.kit.0)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_recovery_state(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    Body(body): Body,
) -> ApiResult<StatusCode> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let req: RecoveryStateRequest = decode(&body)?;
    state
        .store()
        .put_recovery_state(log_id, &req.state.0, req.checkpoint)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn recovery_slot(
    State(state): State<AppState>,
    ip: ClientIp,
    Segs(slot): Segs<String>,
) -> ApiResult<Json<RecoverySlot>> {
    Ok(Json(slot_named(&state, &ip, &slot).await?))
}

/// The recovery slot named in the path (no session: the name is the proof of holding
/// the code), rate-limited per source as every open endpoint; `404` for a name no log
/// holds.
async fn slot_named(state: &AppState, ip: &ClientIp, slot: &str) -> ApiResult<RecoverySlot> {
    let slot = Id32::parse(slot)?;
    allow(state, Kind::Open, ip.key())?;
    state
        .store()
        .recovery(slot)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// The checkpoint blob the slot's state names (no session, as for the slot).
async fn recovery_checkpoint(
    State(state): State<AppState>,
    ip: ClientIp,
    Segs(slot): Segs<String>,
) -> ApiResult<Response> {
    let found = slot_named(&state, &ip, &slot).await?;
    let checkpoint = found.checkpoint.ok_or_else(ApiError::not_found)?;
    let data = state
        .store()
        .blob(found.log_id, checkpoint)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

async fn revoke_device(
    State(state): State<AppState>,
    authed: Authed,
    Segs((log, device)): Segs<(String, String)>,
    Body(body): Body,
) -> ApiResult<StatusCode> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let device_id = Id32::parse(&device)?;
    let req: RevokeDeviceRequest = decode(&body)?;
    authority(&state, log_id)
        .await?
        .check(Change::Revoke, device_id, &req.authorization.0)?;
    state
        .store()
        .revoke_device(log_id, device_id, state.now())
        .await?;
    // The store deleted the device's sessions; open sockets, here and in other
    // processes, close on the event.
    state.presence().forget(log_id, device_id);
    state
        .emit(vec![Event::DeviceRevoked { log_id, device_id }])
        .await;
    tracing::info!(log = ?log_id, device = ?device_id, "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The keys that may change `log_id`'s devices, from its stored genesis.
async fn authority(state: &AppState, log_id: Id32) -> ApiResult<Authority> {
    let info = state
        .store()
        .log_info(log_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let authority =
        Authority::from_genesis(log_id, &info.genesis)?.rolled_to(info.root.as_deref())?;
    let first = authority.first_device();
    let devices = state.store().devices(log_id).await?;
    if devices
        .iter()
        .any(|d| d.device_id == first && d.revoked_ms.is_some())
    {
        return Ok(authority.first_device_revoked());
    }
    Ok(authority)
}

// ---------------------------------------------------------------- mailboxes

async fn register_mailbox(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    Body(body): Body,
) -> ApiResult<StatusCode> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let req: RegisterMailboxRequest = decode(&body)?;
    state
        .store()
        .register_mailbox(
            log_id,
            req.mailbox_id,
            MailboxPolicy {
                drop_oldest: req.drop_oldest,
                single_use: req.single_use,
            },
            state.limits().max_mailboxes_per_log,
            state.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn post_envelope(
    State(state): State<AppState>,
    ip: ClientIp,
    Segs(mailbox): Segs<String>,
    Body(body): Body,
) -> ApiResult<Json<PostEnvelopeResponse>> {
    let mailbox_id = Id32::parse(&mailbox)?;
    let req: PostEnvelopeRequest = decode(&body)?;
    allow(&state, Kind::MailboxPost, ip.key_for(&mailbox_id.0))?;
    let post = envelope_post(&state, mailbox_id, req.envelope_id, req.claim, req.payload);
    let posted = state.store().post_envelope(&post).await?;
    Ok(posted_answer(&state, mailbox_id, posted).await)
}

/// Wakes the mailbox owner's devices for a new post, and answers the poster.
async fn posted_answer(
    state: &AppState,
    mailbox_id: Id32,
    posted: crate::store::Posted,
) -> Json<PostEnvelopeResponse> {
    if !posted.duplicate {
        state
            .emit(vec![Event::MailboxPosted {
                log_id: posted.log_id,
                mailbox_id,
                seq: posted.seq,
            }])
            .await;
    }
    Json(PostEnvelopeResponse {
        seq: posted.seq,
        duplicate: posted.duplicate,
    })
}

// ---------------------------------------------------------------- per-device

/// Stores the identity's signed device list: signed by the log's current root, every
/// listed device a current device of the log (`400 bad_device_list`), its serial above
/// the stored one (`409 stale_device_list`).
async fn put_device_list(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    Body(body): Body,
) -> ApiResult<StatusCode> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let req: PutDeviceListRequest = decode(&body)?;
    let (_, root) = authority(&state, log_id).await?.roots();
    let root = chorus_crypto::RootPublicKey::from_slice(&root)
        .map_err(|_| ApiError::invalid("bad_device_list"))?;
    let list = chorus_wire::DeviceList::decode(&req.list.0, &root)
        .map_err(|_| ApiError::invalid("bad_device_list"))?;
    let devices = state.store().devices(log_id).await?;
    let current = |id: &[u8; 32]| {
        devices
            .iter()
            .any(|d| d.device_id.0 == *id && d.revoked_ms.is_none())
    };
    if !list.devices().iter().all(|d| current(&d.device)) {
        return Err(ApiError::invalid("bad_device_list"));
    }
    state
        .store()
        .put_device_list(log_id, list.serial, &req.list.0, &list.pairs())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The device list of the identity owning a mailbox, for a contact about to post to
/// it. No session: whoever may post to the mailbox may ask.
async fn mailbox_device_list(
    State(state): State<AppState>,
    ip: ClientIp,
    Segs(mailbox): Segs<String>,
) -> ApiResult<Json<DeviceListResponse>> {
    let mailbox_id = Id32::parse(&mailbox)?;
    allow(&state, Kind::PrekeyFetch, ip.key_for(&mailbox_id.0))?;
    let list = state
        .store()
        .device_list(mailbox_id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_device_list"))?;
    Ok(Json(DeviceListResponse {
        list: HexBytes(list),
    }))
}

/// One message, a copy per device of the mailbox's identity, stored all or none.
async fn post_device_envelopes(
    State(state): State<AppState>,
    ip: ClientIp,
    Segs(mailbox): Segs<String>,
    Body(body): Body,
) -> ApiResult<Json<PostEnvelopeResponse>> {
    let mailbox_id = Id32::parse(&mailbox)?;
    let req: PostDeviceEnvelopesRequest = decode(&body)?;
    allow(&state, Kind::MailboxPost, ip.key_for(&mailbox_id.0))?;
    let post = DevicePost {
        post: envelope_post(
            &state,
            mailbox_id,
            req.envelope_id,
            None,
            HexBytes::default(),
        ),
        copies: req
            .copies
            .into_iter()
            .map(|c| (c.device, c.generation, c.payload.0))
            .collect(),
    };
    let posted = state.store().post_device_envelopes(&post).await?;
    Ok(posted_answer(&state, mailbox_id, posted).await)
}

async fn read_envelopes(
    State(state): State<AppState>,
    authed: Authed,
    Segs((log, mailbox)): Segs<(String, String)>,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<EnvelopesPage>> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let mailbox_id = Id32::parse(&mailbox)?;
    let limit = q.page()?;
    let (page, _) = page::envelopes(
        &state,
        (log_id, authed.session.device_id),
        mailbox_id,
        q.after,
        limit,
        MAX_PAGE_BYTES,
        true,
    )
    .await?;
    Ok(Json(page))
}

/// Reads the mailboxes in request order under one byte budget
/// ([`MAX_BATCH_READ_BYTES`]): once it is spent, the remaining pages are empty
/// with `more` telling whether envelopes wait (the ids are distinct, see
/// [`BatchReadRequest`], so the budget cannot be spent twice on one mailbox).
async fn batch_read(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    bulk: Bulk,
    Body(body): Body,
) -> ApiResult<Response> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let req: BatchReadRequest = decode(&body)?;
    let who = (log_id, authed.session.device_id);
    let limit = page_limit(req.limit);
    let mut left = MAX_BATCH_READ_BYTES;
    let mut results = Vec::with_capacity(req.mailboxes.len());
    for m in &req.mailboxes {
        let fresh = left == MAX_BATCH_READ_BYTES;
        let (page, bytes) =
            page::envelopes(&state, who, m.mailbox_id, m.after, limit, left, fresh).await?;
        left = left.saturating_sub(bytes);
        results.push(page);
    }
    // Where this device has read each mailbox up to: the sweep keeps what it has not.
    let cursors: Vec<(Id32, i64)> = req
        .mailboxes
        .iter()
        .map(|m| (m.mailbox_id, m.after))
        .collect();
    // Best effort: a cursor not noted only delays the sweep until the next read, and
    // must not cost the device the pages it asked for.
    if let Err(e) = state
        .store()
        .note_mailbox_cursors(log_id, authed.session.device_id, &cursors)
        .await
    {
        tracing::warn!(error = %e, "could not note mailbox cursors");
    }
    Ok(bulk.answer(&BatchReadResponse { results }))
}

// ---------------------------------------------------------------- prekeys

async fn publish_prekeys(
    State(state): State<AppState>,
    authed: Authed,
    Segs((log, address)): Segs<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<PrekeyCount>> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let address = Id32::parse(&address)?;
    let req: PublishPrekeysRequest = decode(&body)?;
    let count = state
        .store()
        .publish_prekeys(log_id, address, &req, MAX_PREKEYS_STORED, state.now())
        .await?;
    Ok(Json(count))
}

async fn fetch_prekeys(
    State(state): State<AppState>,
    ip: ClientIp,
    Segs(address): Segs<String>,
) -> ApiResult<Json<PrekeyBundle>> {
    let address = Id32::parse(&address)?;
    // Per source: one stranger fetching at the bound must not stop everyone else
    // from making first contact. A distributed drain of one-time prekeys leaves the
    // signed and last-resort prekeys, which PQXDH allows.
    allow(&state, Kind::PrekeyFetch, ip.key_for(&address.0))?;
    let bundle = state
        .store()
        .fetch_prekeys(address)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(bundle))
}

/// Empties the log's directory entry at an address it rolled away from (the address
/// stays the log's). `404` if the log holds no entry there.
async fn withdraw_prekeys(
    State(state): State<AppState>,
    authed: Authed,
    Segs((log, address)): Segs<(String, String)>,
) -> ApiResult<StatusCode> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let address = Id32::parse(&address)?;
    if !state
        .store()
        .withdraw_prekeys(log_id, address, state.now())
        .await?
    {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn count_prekeys(
    State(state): State<AppState>,
    authed: Authed,
    Segs((log, address)): Segs<(String, String)>,
) -> ApiResult<Json<PrekeyCount>> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let address = Id32::parse(&address)?;
    Ok(Json(state.store().count_prekeys(log_id, address).await?))
}

// ---------------------------------------------------------------- blobs

async fn put_blob(
    State(state): State<AppState>,
    authed: Authed,
    Segs((log, blob)): Segs<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<BlobPutResponse>> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let blob_id = Id32::parse(&blob)?;
    let limits = state.limits();
    if body.len() > limits.max_blob_bytes {
        return Err(ApiError::too_large("body_too_large"));
    }
    let used = state
        .store()
        .put_blob(log_id, blob_id, &body, limits.blob_quota_bytes, state.now())
        .await?;
    Ok(Json(BlobPutResponse {
        used,
        quota: i64::try_from(limits.blob_quota_bytes).unwrap_or(i64::MAX),
    }))
}

async fn get_blob(
    State(state): State<AppState>,
    authed: Authed,
    Segs((log, blob)): Segs<(String, String)>,
) -> ApiResult<Response> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let blob_id = Id32::parse(&blob)?;
    let data = state
        .store()
        .blob(log_id, blob_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

async fn delete_blob(
    State(state): State<AppState>,
    authed: Authed,
    Segs((log, blob)): Segs<(String, String)>,
) -> ApiResult<StatusCode> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let blob_id = Id32::parse(&blob)?;
    if state.store().delete_blob(log_id, blob_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

// ---------------------------------------------------------------- files

/// The index of a file's part in a path: decimal, below [`MAX_FILE_PARTS`].
fn part_index(part: &str) -> ApiResult<u32> {
    match part.parse::<u32>() {
        Ok(n) if part.bytes().all(|b| b.is_ascii_digit()) && n < MAX_FILE_PARTS => Ok(n),
        _ => Err(ApiError::invalid("bad_id")),
    }
}

/// A device stores one encrypted part of a file it sends; the part is kept until the
/// time the sender asks for, or the relay's own bound if sooner, and counts against
/// the log's file quota until then.
async fn put_file_part(
    State(state): State<AppState>,
    authed: Authed,
    Segs((log, locator, part)): Segs<(String, String, String)>,
    Q(q): Q<FilePutQuery>,
    Body(body): Body,
) -> ApiResult<Json<FilePutResponse>> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    let locator = Id32::parse(&locator)?;
    let part = part_index(&part)?;
    if body.len() > MAX_FILE_PART_BYTES {
        return Err(ApiError::too_large("body_too_large"));
    }
    // Every sealed part holds at least its tag.
    if body.len() < chorus_crypto::TAG_LEN {
        return Err(ApiError::invalid("too_small"));
    }
    let now = state.now();
    let limits = state.limits();
    if q.expires_ms <= now {
        return Err(ApiError::invalid("expired"));
    }
    let expires_ms = q
        .expires_ms
        .min(now.saturating_add(duration_ms(limits.max_file_ttl)));
    let used = state
        .store()
        .put_file_part(FilePart {
            log_id,
            locator,
            part,
            data: &body,
            expires_ms,
            quota: limits.file_quota_bytes,
        })
        .await?;
    Ok(Json(FilePutResponse {
        expires_ms,
        used,
        quota: i64::try_from(limits.file_quota_bytes).unwrap_or(i64::MAX),
    }))
}

/// Anyone who knows a file's locator (a reader of the message that carries it, on
/// any relay) fetches its parts: no session, since the reader is not of this log.
/// The locator is 32 random bytes, and every part is sealed under a key the relay
/// never sees.
async fn get_file_part(
    State(state): State<AppState>,
    ip: ClientIp,
    Segs((locator, part)): Segs<(String, String)>,
) -> ApiResult<Response> {
    let locator = Id32::parse(&locator)?;
    let part = part_index(&part)?;
    allow(&state, Kind::FileFetch, ip.key())?;
    let (data, expires_ms) = state
        .store()
        .file_part(locator, part)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if expires_ms <= state.now() {
        return Err(crate::error::StoreError::FileExpired.into());
    }
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

// ---------------------------------------------------------------- rendezvous

async fn create_channel(
    State(state): State<AppState>,
    ip: ClientIp,
    Body(body): Body,
) -> ApiResult<Response> {
    let req: CreateChannelRequest = decode(&body)?;
    allow(&state, Kind::Open, ip.key())?;
    let now = state.now();
    let expires_ms = now + duration_ms(RENDEZVOUS_TTL);
    state
        .store()
        .create_channel(req.channel_id, now, expires_ms)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateChannelResponse { expires_ms }),
    )
        .into_response())
}

async fn post_channel(
    State(state): State<AppState>,
    Segs(channel): Segs<String>,
    Body(body): Body,
) -> ApiResult<Json<serde_json::Value>> {
    let channel_id = Id32::parse(&channel)?;
    let req: ChannelPostRequest = decode(&body)?;
    let seq = state
        .store()
        .post_channel(channel_id, &req.payload.0, state.now())
        .await?;
    Ok(Json(json!({ "seq": seq })))
}

async fn read_channel(
    State(state): State<AppState>,
    Segs(channel): Segs<String>,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<ChannelMessages>> {
    let channel_id = Id32::parse(&channel)?;
    q.page()?;
    let messages = state
        .store()
        .read_channel(channel_id, q.after, state.now())
        .await?
        .into_iter()
        .map(|(seq, payload)| ChannelMessage {
            seq,
            payload: HexBytes(payload),
        })
        .collect();
    Ok(Json(ChannelMessages { messages }))
}

async fn close_channel(
    State(state): State<AppState>,
    Segs(channel): Segs<String>,
) -> ApiResult<StatusCode> {
    let channel_id = Id32::parse(&channel)?;
    if state.store().close_channel(channel_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

// ---------------------------------------------------------------- presence

async fn heartbeat(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
) -> ApiResult<StatusCode> {
    let log_id = Id32::parse(&log)?;
    let s = authed.for_log(&log_id)?;
    let now = state.now();
    if state.presence().beat(log_id, s.device_id, now) {
        // Other processes learn it through the bus; nothing is stored.
        state
            .publish(&[Event::Heartbeat {
                log_id,
                device_id: s.device_id,
                at_ms: now,
            }])
            .await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::rate_limited())
    }
}

async fn presence(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
) -> ApiResult<Json<PresenceResponse>> {
    let log_id = Id32::parse(&log)?;
    authed.for_log(&log_id)?;
    Ok(Json(PresenceResponse {
        devices: state.presence().list(log_id, state.now()),
    }))
}
