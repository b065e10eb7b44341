//! The relay's request and response bodies (JSON), and their decoders.
//!
//! Bytes travel as lowercase hex strings (raw bytes in the binary answers of
//! [`crate::binary`]); ids are fixed-size and checked by type
//! ([`Id32`], [`Id16`]). Every request body goes through [`decode`], which parses
//! the JSON into a typed request and then applies that request's bounds
//! ([`Validate`]): a handler only ever sees a value that is already known to be
//! within limits ("parse, don't validate"). Decoders never panic; the fuzz targets
//! in `fuzz/fuzz_targets/relay_*.rs` feed them arbitrary bytes.
//! `docs/relay-api.md` documents every body.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

use crate::limits::*;
use crate::refusal::Refusal;

/// A 32-byte id (log, device key, mailbox, prekey address, blob, channel), hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id32(pub [u8; 32]);

/// A 16-byte id (envelope), hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id16(pub [u8; 16]);

/// Opaque bytes, hex.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HexBytes(pub Vec<u8>);

impl std::fmt::Debug for Id32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Short, like a fingerprint: enough to correlate log lines.
        write!(f, "{}…", hex::encode(&self.0[..4]))
    }
}

impl std::fmt::Display for Id32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for Id16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}…", hex::encode(&self.0[..4]))
    }
}

impl std::fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl std::str::FromStr for Id32 {
    type Err = Refusal;
    fn from_str(s: &str) -> Result<Self, Refusal> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| Refusal::invalid("bad_id"))?;
        Ok(Id32(out))
    }
}

impl Id32 {
    /// Parses a path segment, answering `400 bad_id` on anything but 64 hex digits.
    pub fn parse(s: &str) -> Result<Self, Refusal> {
        s.parse()
    }
}

// Hex in a human-readable format (JSON), raw bytes in a binary one
// ([`crate::binary`]): one type, two encodings.
macro_rules! hex_serde {
    ($t:ident, $n:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex::encode(self.0))
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                    let mut out = [0u8; $n];
                    hex::decode_to_slice(s.as_bytes(), &mut out).map_err(|_| {
                        serde::de::Error::custom(concat!("expected ", $n, " hex bytes"))
                    })?;
                    return Ok($t(out));
                }
                d.deserialize_bytes(BytesVisitor)?
                    .try_into()
                    .map($t)
                    .map_err(|_| serde::de::Error::custom(concat!("expected ", $n, " bytes")))
            }
        }
    };
}
hex_serde!(Id32, 32);
hex_serde!(Id16, 16);

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            hex::decode(s.as_bytes())
                .map(HexBytes)
                .map_err(|_| serde::de::Error::custom("expected hex"))
        } else {
            d.deserialize_byte_buf(BytesVisitor).map(HexBytes)
        }
    }
}

/// Reads a byte string from a binary format.
struct BytesVisitor;

impl serde::de::Visitor<'_> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}

/// Bounds a decoded request must meet.
pub trait Validate {
    /// Checks every bound, naming the first one broken.
    fn validate(&self) -> Result<(), Refusal>;
}

/// Decodes a JSON request body and checks its bounds.
///
/// Malformed JSON is `400 malformed`; a broken bound is `400` with the bound's
/// code; a body over [`MAX_BODY_BYTES`] is `413 body_too_large`.
pub fn decode<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, Refusal> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Refusal::too_large("body_too_large"));
    }
    let value: T = serde_json::from_slice(bytes).map_err(|_| Refusal::malformed())?;
    value.validate()?;
    Ok(value)
}

fn check(ok: bool, code: &'static str) -> Result<(), Refusal> {
    if ok {
        Ok(())
    } else {
        Err(Refusal::invalid(code))
    }
}

// ---------------------------------------------------------------- auth

/// `POST /v1/auth/challenge`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The log the device belongs to.
    pub log_id: Id32,
    /// The device's Ed25519 public key.
    pub device_id: Id32,
}

impl Validate for ChallengeRequest {
    fn validate(&self) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Answer to a challenge request.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// 32 random bytes to sign.
    pub challenge: Id32,
    /// When the challenge stops being accepted.
    pub expires_ms: i64,
}

/// `POST /v1/auth/session`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The challenge being answered.
    pub challenge: Id32,
    /// Ed25519 signature over [`auth_message`].
    pub signature: HexBytes,
}

impl Validate for SessionRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(self.signature.0.len() == 64, "bad_signature")
    }
}

/// Answer to a session request.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionResponse {
    /// Bearer token for `Authorization: Bearer <token>`.
    pub token: String,
    /// When the token stops working.
    pub expires_ms: i64,
}

/// What a device signs to prove it holds its key: the challenge, the log id and the
/// device id, under the signature context [`AUTH_CONTEXT`]. The client signs it with
/// `DeviceSigningKey::sign(AUTH_CONTEXT, …)` and the relay verifies it with
/// `DevicePublicKey::verify(AUTH_CONTEXT, …)`: one construction for both ends.
pub fn auth_payload(challenge: &Id32, log_id: &Id32, device_id: &Id32) -> Vec<u8> {
    [&challenge.0[..], &log_id.0, &device_id.0].concat()
}

/// The domain of a relay login signature.
pub const AUTH_CONTEXT: &[u8] = b"chorus-relay-auth-v1";

/// The exact bytes a login signature covers ([`auth_payload`] under
/// [`AUTH_CONTEXT`]), for signers that hold a raw Ed25519 key (tests, the load tool).
pub fn auth_message(challenge: &Id32, log_id: &Id32, device_id: &Id32) -> Vec<u8> {
    chorus_crypto::domain_message(AUTH_CONTEXT, &auth_payload(challenge, log_id, device_id))
}

// ---------------------------------------------------------------- log

/// `POST /v1/logs`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLogRequest {
    /// Client-chosen random log id.
    pub log_id: Id32,
    /// The root-signed roster genesis (opaque to the relay).
    pub genesis: HexBytes,
    /// The first device's Ed25519 public key.
    pub device_id: Id32,
}

impl Validate for CreateLogRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(
            self.genesis.0.len() <= MAX_GENESIS_BYTES,
            "record_too_large",
        )
    }
}

/// `GET /v1/logs/{log}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogInfoResponse {
    /// The log id.
    pub log_id: Id32,
    /// The roster genesis given at creation.
    pub genesis: HexBytes,
    /// Highest seq assigned (0 when empty).
    pub head_seq: i64,
    /// Lowest seq still stored (records below were trimmed).
    pub first_seq: i64,
    /// The root key the identity last rolled to (`PUT …/root`); absent: the genesis's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Id32>,
}

/// A concurrency guard: accept only if the stream is at this version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// Opaque stream tag (an HMAC of the stream name under the epoch key).
    pub stream_tag: HexBytes,
    /// The version the appender built on; the stream moves to this + 1.
    pub expected_version: i64,
}

/// One record in an append.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordIn {
    /// Log epoch the ciphertext is under.
    pub epoch: i64,
    /// AEAD nonce.
    pub nonce: HexBytes,
    /// Event ciphertext.
    pub ciphertext: HexBytes,
    /// Optional guard.
    #[serde(default)]
    pub guard: Option<Guard>,
}

/// `POST /v1/logs/{log}/append`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// Records, appended all or none.
    pub records: Vec<RecordIn>,
    /// An envelope to post with the records, atomically (the bundled send): both
    /// are stored or neither is. Any refusal of the post refuses the append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<BundledPost>,
}

/// The envelope of a bundled send, for a mailbox on this relay.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundledPost {
    /// The mailbox.
    pub mailbox_id: Id32,
    /// As in [`PostEnvelopeRequest`].
    pub envelope_id: Id16,
    /// As in [`PostEnvelopeRequest`].
    pub payload: HexBytes,
    /// As in [`PostEnvelopeRequest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Id16>,
}

impl Validate for AppendRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(!self.records.is_empty(), "empty_batch")?;
        check(self.records.len() <= MAX_APPEND_BATCH, "batch_too_large")?;
        let total: usize = self.records.iter().map(|r| r.ciphertext.0.len()).sum();
        check(total <= MAX_APPEND_BYTES, "batch_too_large")?;
        if let Some(p) = &self.post {
            check(
                p.payload.0.len() <= MAX_ENVELOPE_BYTES,
                "envelope_too_large",
            )?;
        }
        for r in &self.records {
            check(r.epoch >= 0, "bad_epoch")?;
            check(r.nonce.0.len() <= MAX_NONCE_BYTES, "nonce_too_large")?;
            check(r.ciphertext.0.len() <= MAX_RECORD_BYTES, "record_too_large")?;
            if let Some(g) = &r.guard {
                check(
                    !g.stream_tag.0.is_empty() && g.stream_tag.0.len() <= MAX_STREAM_TAG_BYTES,
                    "bad_stream_tag",
                )?;
                check(g.expected_version >= 0, "bad_version")?;
            }
        }
        Ok(())
    }
}

/// Answer to an accepted append.
#[derive(Debug, Serialize, Deserialize)]
pub struct AppendResponse {
    /// The seq given to each record, in order (consecutive).
    pub seqs: Vec<i64>,
    /// The bundled envelope, as a post would have answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posted: Option<PostEnvelopeResponse>,
}

/// A guard that failed, in a `409 guard_failed` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FailedGuard {
    /// Index of the record in the batch.
    pub index: usize,
    /// The stream tag.
    pub stream_tag: HexBytes,
    /// What the record expected.
    pub expected_version: i64,
    /// Where the stream actually is (counting earlier records of the same batch).
    pub current_version: i64,
}

/// A stored record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordOut {
    /// Gap-free position in the log.
    pub seq: i64,
    /// Epoch.
    pub epoch: i64,
    /// Author device, stamped by the relay from the session.
    pub author: Id32,
    /// AEAD nonce.
    pub nonce: HexBytes,
    /// Ciphertext.
    pub ciphertext: HexBytes,
    /// The guard the record was appended under.
    pub guard: Option<Guard>,
}

/// `GET /v1/logs/{log}/records?after=&limit=`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordsPage {
    /// Records with seq > after, ascending.
    pub records: Vec<RecordOut>,
    /// Highest seq in the log.
    pub head_seq: i64,
    /// Lowest seq still stored; if `after + 1 < first_seq` the client must start
    /// from a checkpoint.
    pub first_seq: i64,
    /// Whether more records follow this page.
    pub more: bool,
}

/// Paging query for record and envelope reads.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Return items with seq strictly greater than this.
    #[serde(default)]
    pub after: i64,
    /// Page size, at most [`MAX_PAGE`].
    #[serde(default)]
    pub limit: Option<u32>,
}

impl PageQuery {
    /// The page size to use, or `400 limit_too_large` / `bad_after`.
    pub fn page(&self) -> Result<u32, Refusal> {
        check(self.after >= 0, "bad_after")?;
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        check(limit >= 1, "bad_limit")?;
        check(limit <= MAX_PAGE, "limit_too_large")?;
        Ok(limit)
    }
}

/// `POST /v1/logs/{log}/cursor`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorRequest {
    /// Highest seq this device has durably applied.
    pub seq: i64,
}

impl Validate for CursorRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(self.seq >= 0, "bad_seq")
    }
}

/// `POST /v1/logs/{log}/trim`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrimRequest {
    /// Delete records with seq below this (a checkpoint's seq).
    pub below_seq: i64,
}

impl Validate for TrimRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(self.below_seq >= 0, "bad_seq")
    }
}

/// Answer to a trim.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrimResponse {
    /// Lowest seq still stored.
    pub first_seq: i64,
}

// ---------------------------------------------------------------- devices

/// `POST /v1/logs/{log}/devices`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddDeviceRequest {
    /// The new device's Ed25519 public key.
    pub device_id: Id32,
    /// The signed roster entry (`DeviceAuthorized`) that adds it, signed by the
    /// identity's root (or the primary in `primary-root`) as the genesis names it.
    pub authorization: HexBytes,
}

impl Validate for AddDeviceRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(
            self.authorization.0.len() <= MAX_AUTHORIZATION_BYTES,
            "record_too_large",
        )
    }
}

/// `POST /v1/logs/{log}/devices/{device}/revoke`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeDeviceRequest {
    /// The signed roster entry (`DeviceRevoked`) that revokes the device, signed as
    /// for [`AddDeviceRequest::authorization`].
    pub authorization: HexBytes,
}

impl Validate for RevokeDeviceRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(
            self.authorization.0.len() <= MAX_AUTHORIZATION_BYTES,
            "record_too_large",
        )
    }
}

/// `PUT /v1/logs/{log}/root`: the identity rolled its root key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollRootRequest {
    /// The roster entry (`RootRolled`) signed by the log's current root: from then on
    /// only the root it names authorizes device changes.
    pub authorization: HexBytes,
}

impl Validate for RollRootRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(
            self.authorization.0.len() <= MAX_AUTHORIZATION_BYTES,
            "record_too_large",
        )
    }
}

/// A device as listed.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DeviceOut {
    /// Ed25519 public key.
    pub device_id: Id32,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
    /// Its acknowledged cursor.
    pub cursor: i64,
}

/// `GET /v1/logs/{log}/devices`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DevicesResponse {
    /// Every device ever registered, in registration order.
    pub devices: Vec<DeviceOut>,
}

// ---------------------------------------------------------------- mailboxes

/// `POST /v1/logs/{log}/mailboxes`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterMailboxRequest {
    /// The random mailbox id handed to one contact.
    pub mailbox_id: Id32,
    /// A first-contact mailbox (intro, invitation): anyone may write to it, so when
    /// it is full its oldest envelope is dropped to make room rather than every
    /// later stranger being refused until envelopes expire.
    #[serde(default)]
    pub drop_oldest: bool,
    /// An invitation's mailbox: it takes envelopes from its first sender only
    /// (later posts must carry the first envelope's id as `claim`); anyone else
    /// gets `410 mailbox_spent`.
    #[serde(default)]
    pub single_use: bool,
}

impl Validate for RegisterMailboxRequest {
    fn validate(&self) -> Result<(), Refusal> {
        Ok(())
    }
}

/// `POST /v1/mailboxes/{mailbox}/envelopes`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostEnvelopeRequest {
    /// Sender-chosen id; posting the same id twice stores it once.
    pub envelope_id: Id16,
    /// The envelope bytes.
    pub payload: HexBytes,
    /// For a single-use mailbox: the id of the first envelope its sender posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Id16>,
}

impl Validate for PostEnvelopeRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(
            self.payload.0.len() <= MAX_ENVELOPE_BYTES,
            "envelope_too_large",
        )
    }
}

/// Answer to a post.
#[derive(Debug, Serialize, Deserialize)]
pub struct PostEnvelopeResponse {
    /// The envelope's seq in the mailbox.
    pub seq: i64,
    /// True if this envelope id was already stored (nothing changed).
    pub duplicate: bool,
}

/// A stored envelope.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EnvelopeOut {
    /// Position in the mailbox.
    pub seq: i64,
    /// Sender-chosen id.
    pub envelope_id: Id16,
    /// Bytes.
    pub payload: HexBytes,
    /// When the relay accepted it.
    pub received_ms: i64,
}

/// `GET /v1/logs/{log}/mailboxes/{mailbox}/envelopes`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnvelopesPage {
    /// The mailbox.
    pub mailbox_id: Id32,
    /// Unexpired envelopes with seq > after.
    pub envelopes: Vec<EnvelopeOut>,
    /// Whether more follow.
    pub more: bool,
}

/// One mailbox in a batched read.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxCursor {
    /// The mailbox.
    pub mailbox_id: Id32,
    /// Read envelopes after this seq.
    #[serde(default)]
    pub after: i64,
}

/// `POST /v1/logs/{log}/mailboxes/read`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchReadRequest {
    /// Mailboxes to read, each at most once (`400 duplicate_mailbox`).
    pub mailboxes: Vec<MailboxCursor>,
    /// Page size per mailbox.
    #[serde(default)]
    pub limit: Option<u32>,
}

impl Validate for BatchReadRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(!self.mailboxes.is_empty(), "empty_batch")?;
        check(
            self.mailboxes.len() <= MAX_BATCH_MAILBOXES,
            "batch_too_large",
        )?;
        for m in &self.mailboxes {
            check(m.after >= 0, "bad_after")?;
        }
        // One mailbox listed n times would be read n times into one answer.
        let mut ids: Vec<&Id32> = self.mailboxes.iter().map(|m| &m.mailbox_id).collect();
        ids.sort_unstable();
        check(ids.windows(2).all(|w| w[0] != w[1]), "duplicate_mailbox")?;
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        check(limit >= 1, "bad_limit")?;
        check(limit <= MAX_PAGE, "limit_too_large")
    }
}

/// Answer to a batched read.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchReadResponse {
    /// One page per requested mailbox, in request order.
    pub results: Vec<EnvelopesPage>,
}

// ---------------------------------------------------------------- per-device

/// `PUT /v1/logs/{log}/device-list`: the identity's signed device list (`per-device`),
/// replacing an older one. The relay checks it is signed by the log's root and that
/// its serial grows (`409 stale_device_list`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutDeviceListRequest {
    /// A `chorus_wire::DeviceList`.
    pub list: HexBytes,
}

impl Validate for PutDeviceListRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(
            self.list.0.len() <= chorus_wire::limits::MAX_DEVICE_LIST_LEN,
            "device_list_too_large",
        )
    }
}

/// `GET /v1/mailboxes/{mailbox}/device-list`: the device list of the identity that
/// owns the mailbox (`404 no_device_list` when it publishes none: it does not run
/// `per-device`).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DeviceListResponse {
    /// A `chorus_wire::DeviceList`, as its identity signed it.
    pub list: HexBytes,
}

/// One device's copy of a message in a [`PostDeviceEnvelopesRequest`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCopy {
    /// The recipient device.
    pub device: Id32,
    /// Its generation the copy was encrypted for.
    pub generation: u32,
    /// The envelope bytes.
    pub payload: HexBytes,
}

/// `POST /v1/mailboxes/{mailbox}/device-envelopes`: one message, a copy per device of
/// the mailbox's identity. The named set must be the identity's device list exactly,
/// or nothing is stored and the answer is `409 device_mismatch` with a
/// [`DeviceMismatch`]. Each copy is stored under [`copy_id`], readable only by its
/// device; posting the same copies again stores nothing new.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostDeviceEnvelopesRequest {
    /// Sender-chosen id of the message.
    pub envelope_id: Id16,
    /// One copy per device.
    pub copies: Vec<DeviceCopy>,
}

impl Validate for PostDeviceEnvelopesRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(!self.copies.is_empty(), "empty_batch")?;
        check(
            self.copies.len() <= chorus_wire::limits::MAX_LISTED_DEVICES,
            "batch_too_large",
        )?;
        let mut total = 0usize;
        for c in &self.copies {
            check(
                c.payload.0.len() <= MAX_ENVELOPE_BYTES,
                "envelope_too_large",
            )?;
            total += c.payload.0.len();
        }
        check(total <= MAX_DEVICE_POST_BYTES, "envelope_too_large")?;
        let mut devices: Vec<&Id32> = self.copies.iter().map(|c| &c.device).collect();
        devices.sort_unstable();
        check(devices.windows(2).all(|w| w[0] != w[1]), "duplicate_device")
    }
}

/// The body of `409 device_mismatch`: how the named set differs from the list, so the
/// sender fetches what is missing, drops what is extra, starts the stale over and
/// posts again.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeviceMismatch {
    /// Always `device_mismatch`.
    pub error: String,
    /// Listed devices the post did not name.
    pub missing: Vec<Id32>,
    /// Named devices the list does not hold.
    pub extra: Vec<Id32>,
    /// Named devices the list holds at another generation.
    pub stale: Vec<Id32>,
}

/// The envelope id a device's copy of message `envelope` is stored under: distinct
/// per device, the same on every retry.
pub fn copy_id(envelope: Id16, device: &Id32) -> Id16 {
    let mut out = envelope.0;
    for (o, d) in out.iter_mut().zip(device.0.iter()) {
        *o ^= d;
    }
    Id16(out)
}

// ---------------------------------------------------------------- prekeys

/// `POST /v1/logs/{log}/prekeys/{address}`: adds to what is stored.
#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PublishPrekeysRequest {
    /// Replaces the signed prekey (bytes include the root signature).
    #[serde(default)]
    pub signed_prekey: Option<HexBytes>,
    /// Replaces the last-resort PQ prekey.
    #[serde(default)]
    pub pq_last_resort: Option<HexBytes>,
    /// Adds one-time X25519 prekeys.
    #[serde(default)]
    pub one_time: Vec<HexBytes>,
    /// Adds one-time PQ prekeys.
    #[serde(default)]
    pub one_time_pq: Vec<HexBytes>,
    /// Withdraws every one-time prekey (of both kinds) the directory still holds for
    /// the address before adding these: after a device is revoked, none of the keys it
    /// knew the private halves of is handed out again.
    #[serde(default)]
    pub replace_one_time: bool,
}

impl Validate for PublishPrekeysRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(
            self.one_time.len() <= MAX_PREKEYS_PER_PUBLISH,
            "batch_too_large",
        )?;
        check(
            self.one_time_pq.len() <= MAX_PREKEYS_PER_PUBLISH,
            "batch_too_large",
        )?;
        let all = self
            .signed_prekey
            .iter()
            .chain(self.pq_last_resort.iter())
            .chain(self.one_time.iter())
            .chain(self.one_time_pq.iter());
        for k in all {
            check(
                !k.0.is_empty() && k.0.len() <= MAX_PREKEY_BYTES,
                "bad_prekey",
            )?;
        }
        Ok(())
    }
}

/// `GET /v1/prekeys/{address}`: one bundle; consumes one one-time key of each kind.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PrekeyBundle {
    /// The signed prekey.
    pub signed_prekey: Option<HexBytes>,
    /// One one-time X25519 prekey, or none when exhausted.
    pub one_time: Option<HexBytes>,
    /// A one-time PQ prekey, or the last-resort one when exhausted.
    pub pq: Option<HexBytes>,
    /// True when `pq` is the last-resort key.
    pub pq_is_last_resort: bool,
}

/// `GET /v1/logs/{log}/prekeys/{address}/count`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PrekeyCount {
    /// One-time X25519 prekeys left.
    pub one_time: i64,
    /// One-time PQ prekeys left.
    pub one_time_pq: i64,
}

// ---------------------------------------------------------------- blobs

/// Answer to a blob put.
#[derive(Debug, Serialize, Deserialize)]
pub struct BlobPutResponse {
    /// Bytes this log now uses.
    pub used: i64,
    /// The log's quota.
    pub quota: i64,
}

// ---------------------------------------------------------------- files

/// `PUT /v1/logs/{log}/files/{locator}/{part}?expires_ms=…`: when the sender would
/// like the part deleted. The relay keeps it no longer than its own bound, and says
/// when it will delete it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePutQuery {
    /// Milliseconds since the Unix epoch.
    pub expires_ms: i64,
}

/// Answer to a file part put.
#[derive(Debug, Serialize, Deserialize)]
pub struct FilePutResponse {
    /// When the relay deletes the part: the asked time, or its own bound if sooner.
    pub expires_ms: i64,
    /// File bytes the log now holds (unexpired parts).
    pub used: i64,
    /// The log's file quota.
    pub quota: i64,
}

// ---------------------------------------------------------------- recovery

/// `PUT /v1/logs/{log}/recovery`: the log's recovery slot (replacing any earlier one,
/// whose state and checkpoint go with it).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryKitRequest {
    /// The slot's public name, derived from the recovery code.
    pub slot: Id32,
    /// The root key sealed to the recovery key.
    pub kit: HexBytes,
    /// The root-signed roster entry (`RecoveryKeySet`) naming this slot: only the
    /// root's holder sets the slot.
    pub authorization: HexBytes,
}

impl Validate for RecoveryKitRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(
            !self.kit.0.is_empty() && self.kit.0.len() <= MAX_RECOVERY_KIT_BYTES,
            "bad_recovery_kit",
        )?;
        check(
            self.authorization.0.len() <= MAX_AUTHORIZATION_BYTES,
            "record_too_large",
        )
    }
}

/// `PUT /v1/logs/{log}/recovery/state`: what a recovering device needs besides the
/// root, as of a checkpoint already uploaded as a blob of the log. The relay deletes
/// the checkpoint the previous state named.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryStateRequest {
    /// The provisioning bundle (without the root) sealed to the recovery key.
    pub state: HexBytes,
    /// The blob holding the checkpoint the state names.
    pub checkpoint: Id32,
}

impl Validate for RecoveryStateRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(
            !self.state.0.is_empty() && self.state.0.len() <= MAX_RECOVERY_STATE_BYTES,
            "bad_recovery_state",
        )
    }
}

/// `GET /v1/recovery/{slot}` (no session: whoever knows the code can name the slot).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySlot {
    /// The identity's log.
    pub log_id: Id32,
    /// The root key sealed to the recovery key.
    pub kit: HexBytes,
    /// The latest state, once a device wrote one.
    pub state: Option<HexBytes>,
    /// The blob the state names (`GET /v1/recovery/{slot}/checkpoint` serves it).
    pub checkpoint: Option<Id32>,
}

// ---------------------------------------------------------------- rendezvous

/// `POST /v1/rendezvous`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    /// Random channel id (part of the link code).
    pub channel_id: Id32,
}

impl Validate for CreateChannelRequest {
    fn validate(&self) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Answer to a channel creation.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateChannelResponse {
    /// When the channel disappears.
    pub expires_ms: i64,
}

/// `POST /v1/rendezvous/{channel}/messages`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPostRequest {
    /// Message bytes (sealed by the linking devices).
    pub payload: HexBytes,
}

impl Validate for ChannelPostRequest {
    fn validate(&self) -> Result<(), Refusal> {
        check(
            self.payload.0.len() <= MAX_RENDEZVOUS_MESSAGE_BYTES,
            "message_too_large",
        )
    }
}

/// A channel message.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ChannelMessage {
    /// Position in the channel, from 1.
    pub seq: i64,
    /// Bytes.
    pub payload: HexBytes,
}

/// `GET /v1/rendezvous/{channel}/messages?after=`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChannelMessages {
    /// Messages after the given seq.
    pub messages: Vec<ChannelMessage>,
}

// ---------------------------------------------------------------- presence

/// A sibling's last heartbeat.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PresenceOut {
    /// The device.
    pub device_id: Id32,
    /// When its last heartbeat arrived.
    pub last_seen_ms: i64,
}

/// `GET /v1/logs/{log}/presence`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PresenceResponse {
    /// Devices heard from within the presence window.
    pub devices: Vec<PresenceOut>,
}

// ---------------------------------------------------------------- push

/// A message pushed on a device's WebSocket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Push {
    /// New log records, in seq order, with no gaps since the last push.
    Records {
        /// The records.
        records: Vec<RecordOut>,
    },
    /// New envelopes in one of the log's mailboxes.
    Envelopes {
        /// The mailbox.
        mailbox_id: Id32,
        /// The envelopes.
        envelopes: Vec<EnvelopeOut>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> String {
        hex::encode([b; 32])
    }

    #[test]
    fn append_batch_at_bound_decodes_and_one_over_is_refused() {
        let rec = r#"{"epoch":0,"nonce":"00","ciphertext":"ab"}"#;
        let body = |n: usize| format!(r#"{{"records":[{}]}}"#, vec![rec; n].join(","));
        assert!(decode::<AppendRequest>(body(MAX_APPEND_BATCH).as_bytes()).is_ok());
        let e = decode::<AppendRequest>(body(MAX_APPEND_BATCH + 1).as_bytes()).err();
        assert_eq!(e.map(|e| e.code), Some("batch_too_large"));
    }

    #[test]
    fn record_at_size_bound_decodes_and_one_over_is_refused() {
        let body = |n: usize| {
            format!(
                r#"{{"records":[{{"epoch":0,"nonce":"","ciphertext":"{}"}}]}}"#,
                "ab".repeat(n)
            )
        };
        assert!(decode::<AppendRequest>(body(MAX_RECORD_BYTES).as_bytes()).is_ok());
        let e = decode::<AppendRequest>(body(MAX_RECORD_BYTES + 1).as_bytes()).err();
        assert_eq!(e.map(|e| e.code), Some("record_too_large"));
    }

    #[test]
    fn nonce_and_stream_tag_at_bound_decode_and_one_over_is_refused() {
        let body = |nonce: usize, tag: usize| {
            format!(
                r#"{{"records":[{{"epoch":0,"nonce":"{}","ciphertext":"","guard":{{"stream_tag":"{}","expected_version":0}}}}]}}"#,
                "ab".repeat(nonce),
                "ab".repeat(tag)
            )
        };
        let code = |n, t| {
            decode::<AppendRequest>(body(n, t).as_bytes())
                .err()
                .map(|e| e.code)
        };
        assert_eq!(code(MAX_NONCE_BYTES, MAX_STREAM_TAG_BYTES), None);
        assert_eq!(code(MAX_NONCE_BYTES + 1, 1), Some("nonce_too_large"));
        assert_eq!(code(0, MAX_STREAM_TAG_BYTES + 1), Some("bad_stream_tag"));
    }

    #[test]
    fn full_batch_at_the_byte_bound_fits_the_body_limit() {
        let rec = format!(
            r#"{{"epoch":0,"nonce":"{}","ciphertext":"{}","guard":{{"stream_tag":"{}","expected_version":9223372036854775807}}}}"#,
            "ab".repeat(MAX_NONCE_BYTES),
            "ab".repeat(MAX_APPEND_BYTES / MAX_APPEND_BATCH),
            "ab".repeat(MAX_STREAM_TAG_BYTES)
        );
        let body = format!(
            r#"{{"records":[{}]}}"#,
            vec![rec; MAX_APPEND_BATCH].join(",")
        );
        assert!(body.len() <= MAX_BODY_BYTES);
        assert!(decode::<AppendRequest>(body.as_bytes()).is_ok());
    }

    #[test]
    fn per_device_posts_hit_their_bounds_and_one_over_is_refused() {
        let copy = |d: usize, bytes: usize| {
            format!(
                r#"{{"device":"{}","generation":0,"payload":"{}"}}"#,
                hex::encode([d as u8; 32]),
                "ab".repeat(bytes)
            )
        };
        let body = |copies: Vec<String>| {
            format!(
                r#"{{"envelope_id":"{}","copies":[{}]}}"#,
                hex::encode([1u8; 16]),
                copies.join(",")
            )
        };
        let code = |b: String| {
            decode::<PostDeviceEnvelopesRequest>(b.as_bytes())
                .err()
                .map(|e| e.code)
        };
        let n = chorus_wire::limits::MAX_LISTED_DEVICES;
        assert_eq!(code(body((0..n).map(|d| copy(d, 1)).collect())), None);
        assert_eq!(
            code(body((0..=n).map(|d| copy(d, 1)).collect())),
            Some("batch_too_large")
        );
        assert_eq!(code(body(Vec::new())), Some("empty_batch"));
        assert_eq!(
            code(body(vec![copy(1, 1), copy(1, 2)])),
            Some("duplicate_device")
        );
        assert_eq!(code(body(vec![copy(1, MAX_ENVELOPE_BYTES)])), None);
        assert_eq!(
            code(body(vec![copy(1, MAX_ENVELOPE_BYTES + 1)])),
            Some("envelope_too_large")
        );
        // All copies together: exactly the bound, then one byte over.
        let full = MAX_DEVICE_POST_BYTES / MAX_ENVELOPE_BYTES;
        let at: Vec<String> = (0..full).map(|d| copy(d, MAX_ENVELOPE_BYTES)).collect();
        assert_eq!(code(body(at.clone())), None);
        let mut over = at;
        over.push(copy(full, 1));
        assert_eq!(code(body(over)), Some("envelope_too_large"));
    }

    #[test]
    fn body_over_limit_is_refused_before_parsing() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let e = decode::<AppendRequest>(&big).err();
        assert_eq!(e.map(|e| e.code), Some("body_too_large"));
    }

    #[test]
    fn ids_must_be_exactly_32_hex_bytes() {
        let ok = format!(r#"{{"log_id":"{}","device_id":"{}"}}"#, id(1), id(2));
        assert!(decode::<ChallengeRequest>(ok.as_bytes()).is_ok());
        let short = format!(r#"{{"log_id":"{}","device_id":"00"}}"#, id(1));
        assert_eq!(
            decode::<ChallengeRequest>(short.as_bytes())
                .err()
                .map(|e| e.code),
            Some("malformed")
        );
        assert!(Id32::parse("zz").is_err());
        assert!(Id32::parse(&id(7)).is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let body = r#"{"seq":1,"extra":true}"#;
        assert!(decode::<CursorRequest>(body.as_bytes()).is_err());
    }

    #[test]
    fn page_limit_at_bound_is_accepted_and_one_over_refused() {
        let q = |limit| PageQuery {
            after: 0,
            limit: Some(limit),
        };
        assert_eq!(q(MAX_PAGE).page().ok(), Some(MAX_PAGE));
        assert_eq!(
            q(MAX_PAGE + 1).page().err().map(|e| e.code),
            Some("limit_too_large")
        );
        assert_eq!(q(0).page().err().map(|e| e.code), Some("bad_limit"));
    }

    #[test]
    fn prekey_publish_bounds() {
        let k = |n: usize| HexBytes(vec![1; n]);
        let mut r = PublishPrekeysRequest {
            one_time: vec![k(32); MAX_PREKEYS_PER_PUBLISH],
            pq_last_resort: Some(k(MAX_PREKEY_BYTES)),
            ..Default::default()
        };
        assert!(r.validate().is_ok());
        r.one_time.push(k(32));
        assert_eq!(r.validate().err().map(|e| e.code), Some("batch_too_large"));
        r.one_time.pop();
        r.pq_last_resort = Some(k(MAX_PREKEY_BYTES + 1));
        assert_eq!(r.validate().err().map(|e| e.code), Some("bad_prekey"));
    }

    #[test]
    fn envelope_and_channel_message_bounds() {
        let env = |n: usize| PostEnvelopeRequest {
            envelope_id: Id16([0; 16]),
            payload: HexBytes(vec![0; n]),
            claim: None,
        };
        assert!(env(MAX_ENVELOPE_BYTES).validate().is_ok());
        assert!(env(MAX_ENVELOPE_BYTES + 1).validate().is_err());
        let msg = |n: usize| ChannelPostRequest {
            payload: HexBytes(vec![0; n]),
        };
        assert!(msg(MAX_RENDEZVOUS_MESSAGE_BYTES).validate().is_ok());
        assert!(msg(MAX_RENDEZVOUS_MESSAGE_BYTES + 1).validate().is_err());
    }

    #[test]
    fn batch_read_bounds() {
        let req = |n: usize| BatchReadRequest {
            mailboxes: (0..n)
                .map(|i| MailboxCursor {
                    mailbox_id: Id32([i as u8; 32]),
                    after: 0,
                })
                .collect(),
            limit: None,
        };
        let code = |r: BatchReadRequest| r.validate().err().map(|e| e.code);
        assert_eq!(code(req(MAX_BATCH_MAILBOXES)), None);
        assert_eq!(code(req(MAX_BATCH_MAILBOXES + 1)), Some("batch_too_large"));
        assert_eq!(code(req(0)), Some("empty_batch"));
        let mut twice = req(3);
        twice.mailboxes[2].mailbox_id = twice.mailboxes[0].mailbox_id;
        assert_eq!(code(twice), Some("duplicate_mailbox"));
    }

    #[test]
    fn debug_of_ids_and_bytes_is_short() {
        assert_eq!(format!("{:?}", Id32([0xab; 32])), "abababab…");
        assert_eq!(format!("{:?}", HexBytes(vec![1, 2, 3])), "<3 bytes>");
    }
}
