//! The bounds of the relay contract: what one request may carry and one answer may
//! hold. Both ends import them from here — the relay refuses past them, the client
//! never builds a request past them — so they cannot drift apart. Where a bound is a
//! wire format's own (an envelope, a prekey), it is that format's constant.
//!
//! Operational bounds an operator tunes (TTLs, quotas, rates) are the relay's own
//! (`chorus_relay::limits`).

/// Largest JSON request body. An append batch at [`MAX_APPEND_BYTES`], hex-encoded,
/// must fit: 1 MiB × 2 (hex) = 2 MiB, plus framing.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024 + 64 * 1024;

/// Most ciphertext bytes in one atomic append (all records together): 64 records of
/// 16 KiB, or a few of the largest.
pub const MAX_APPEND_BYTES: usize = 1024 * 1024;

/// Most records in one atomic append. A device appends a handful of events per
/// user action; 64 leaves room for catch-up bursts without letting one request hold
/// the log's write lock for long.
pub const MAX_APPEND_BATCH: usize = 64;

/// Largest record ciphertext. Most events are small; the largest is a `Sent` event
/// carrying the largest envelope (64 KiB) with its transcript. Snapshots go to blobs.
pub const MAX_RECORD_BYTES: usize = 128 * 1024;

/// Largest roster genesis given when a log is created (a signed entry is ~300 bytes).
pub const MAX_GENESIS_BYTES: usize = 16 * 1024;

/// Largest signed roster entry given to add or revoke a device (one is ~250 bytes
/// plus a device name of at most 64 bytes).
pub const MAX_AUTHORIZATION_BYTES: usize = 4 * 1024;

/// Largest sealed recovery kit (the root key in a sealed box is 80 bytes).
pub const MAX_RECOVERY_KIT_BYTES: usize = 1024;

/// Largest sealed recovery state (a provisioning bundle, at most 8 KiB, in a sealed box).
pub const MAX_RECOVERY_STATE_BYTES: usize = 9 * 1024;

/// Largest per-record AEAD nonce (AES-GCM uses 12 bytes, XChaCha 24).
pub const MAX_NONCE_BYTES: usize = 32;

/// Largest stream tag (an HMAC-SHA256 output is 32 bytes).
pub const MAX_STREAM_TAG_BYTES: usize = 32;

/// Most records (or envelopes) returned by one page of a read.
pub const MAX_PAGE: u32 = 256;

/// Page size when the client does not ask for one.
pub const DEFAULT_PAGE: u32 = 100;

/// Most ciphertext (or envelope payload) bytes in one page of records or
/// envelopes, over HTTP or pushed on a WebSocket. Hex doubles it and each item adds
/// at most ~400 bytes of JSON framing, so a full page is under
/// 2 × 4 MiB + [`MAX_PAGE`] × 400 B ≈ 8.1 MiB of JSON: well inside the client's
/// 64 MiB answer cap and tungstenite's default 16 MiB frame and 64 MiB message
/// limits, and small enough that a few concurrent reads cannot exhaust memory.
/// It still holds a full page of 16 KiB records (256 × 16 KiB = 4 MiB), 32 of the
/// largest records or 64 of the largest envelopes. A page always holds at least
/// one item, so an item is never stuck behind the bound (none is larger than it).
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Most envelope payload bytes in one batched mailbox read, across all its
/// mailboxes: the batch is one answer, so it gets the same budget as one page.
/// Without it, 64 mailboxes × 256 envelopes × 64 KiB would be 1 GiB per request.
pub const MAX_BATCH_READ_BYTES: usize = MAX_PAGE_BYTES;

/// Most mailboxes in one batched read.
pub const MAX_BATCH_MAILBOXES: usize = 64;

/// Largest envelope payload posted to a mailbox (padded messages are far smaller;
/// attachments go to blobs).
pub const MAX_ENVELOPE_BYTES: usize = chorus_wire::limits::MAX_ENVELOPE_LEN;

/// Largest single published prekey (an ML-KEM-768 public key is 1184 bytes plus a
/// 64-byte signature and a little framing).
pub const MAX_PREKEY_BYTES: usize = chorus_wire::limits::MAX_PREKEY_LEN;

/// Most one-time prekeys (of each kind) in one publish request.
pub const MAX_PREKEYS_PER_PUBLISH: usize = 100;

/// Largest rendezvous message (a provisioning bundle without the checkpoint, which
/// travels as a blob).
pub const MAX_RENDEZVOUS_MESSAGE_BYTES: usize = chorus_wire::limits::MAX_LINK_MESSAGE_LEN;

/// Most envelope payload bytes in one per-device post, all copies together: a long
/// message to many devices is several times one envelope, and the post, hex-encoded,
/// must fit [`MAX_BODY_BYTES`].
pub const MAX_DEVICE_POST_BYTES: usize = 1024 * 1024;

/// Largest file part: a full part of a file's plaintext and its tag (the file
/// format's own bound, `chorus_wire::limits::MAX_FILE_PART_LEN`).
pub const MAX_FILE_PART_BYTES: usize = chorus_wire::limits::MAX_FILE_PART_LEN;
