//! Named size limits for everything this crate decodes. Each has a test at the bound.
//!
//! The limits are generous for text messaging and tight enough that a hostile peer
//! cannot make a decoder allocate much: prost allocates at most the input size, and the
//! input size is checked first.

/// Plaintext padding buckets. A message's padded size reveals only its bucket.
pub const PADDING_BUCKETS: [usize; 11] = [
    64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
];
/// Largest plaintext a ratchet message can carry (one byte of the top bucket is the padding marker).
pub const MAX_PLAINTEXT_LEN: usize = 65536 - 1;
/// Largest encoded ratchet header (keys, counters, nonce and framing need ~130 bytes).
pub const MAX_HEADER_LEN: usize = 256;
/// Largest encoded ratchet message: top bucket + AEAD tag + header + framing.
pub const MAX_RATCHET_MESSAGE_LEN: usize = 65536 + 16 + MAX_HEADER_LEN + 32;
/// Largest encoded initial (handshake) message: a ratchet message plus handshake keys and
/// the ML-KEM-768 ciphertext.
pub const MAX_INITIAL_MESSAGE_LEN: usize = MAX_RATCHET_MESSAGE_LEN + 2048;
/// Largest encoded prekey bundle (the ML-KEM-768 key is 1,184 bytes).
pub const MAX_BUNDLE_LEN: usize = 4096;
/// Largest encoded invitation.
pub const MAX_INVITATION_LEN: usize = MAX_BUNDLE_LEN + 1024;
/// Longest relay URL in an invitation.
pub const MAX_RELAY_URL_LEN: usize = 512;

/// Largest envelope (what a mailbox holds); equal to the relay's envelope bound.
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024;

/// Longest message text in bytes. Chosen so that the largest payload (the text, a
/// hello and [`MAX_PAYLOAD_ROLLS`] identity rolls) pads to the 32 KiB bucket: with the
/// handshake's overhead an initial message stays under [`MAX_ENVELOPE_LEN`].
pub const MAX_TEXT_LEN: usize = 30_000;

/// Largest encoded identity roll (two root keys, a DH key, three signatures: ~310 bytes).
pub const MAX_IDENTITY_ROLL_LEN: usize = 512;

/// Most identity rolls one payload carries: the sender's latest, so a contact that
/// missed up to three rolls still follows the chain; one further behind must compare
/// safety numbers again.
pub const MAX_PAYLOAD_ROLLS: usize = 4;

/// Longest display name (an identity's self-chosen name, a contact alias), in bytes.
pub const MAX_DISPLAY_NAME_LEN: usize = 64;

/// Longest disappearing-message timer, in seconds (four weeks, as Signal's).
pub const MAX_TIMER_SECS: u64 = 28 * 24 * 3600;

/// Largest directory entry (identity keys, signed prekey, intro mailbox).
pub const MAX_DIRECTORY_ENTRY_LEN: usize = 1024;

/// Largest single prekey as published in the directory (ML-KEM key + signature + id).
pub const MAX_PREKEY_LEN: usize = 2048;

/// Largest signed roster entry (keys, a name, a signature).
pub const MAX_ROSTER_ENTRY_LEN: usize = 1024;

/// Largest log event plaintext. The largest event is a `Sent` carrying the largest
/// envelope and the largest text (~97 KiB); the relay's record bound (128 KiB) leaves
/// room for the AEAD tag.
pub const MAX_LOG_EVENT_LEN: usize = 128 * 1024 - 64;

/// Largest ratchet delta in a `Sent` event (one ratchet node: ~200 bytes).
pub const MAX_RATCHET_DELTA_LEN: usize = 1024;

/// Largest session snapshot in a `ContactUpserted` event. A new contact's session is a
/// few nodes (~3 KiB with the pending handshake fields).
pub const MAX_CONTACT_SESSION_LEN: usize = 32 * 1024;

/// Most private prekeys in one `PrekeysCreated` event (64 ML-KEM keys with their signed
/// public halves are ~85 KiB).
pub const MAX_PREKEYS_PER_EVENT: usize = 64;

/// Most relay URLs in one identity's relay list.
pub const MAX_RELAYS: usize = 8;

/// Largest message on a link rendezvous channel (a sealed provisioning bundle is the
/// largest, well under this; the checkpoint travels as a blob).
pub const MAX_LINK_MESSAGE_LEN: usize = 64 * 1024;

/// Largest encoded provisioning bundle.
pub const MAX_PROVISIONING_BUNDLE_LEN: usize = 8 * 1024;

/// Largest encoded checkpoint (the relay's default largest blob).
pub const MAX_CHECKPOINT_LEN: usize = 16 * 1024 * 1024;

/// Most devices an epoch key is sealed to in one rotation (the roster's own bound on
/// devices ever, `chorus_core::MAX_DEVICES`).
pub const MAX_EPOCH_KEY_RECIPIENTS: usize = 64;

/// Most contacts' mailboxes one `MailboxesReplaced` event moves (more go in several
/// events of one append): 1,024 pairs of 32-byte ids stay far below a record's size.
pub const MAX_REPLACED_MAILBOXES: usize = 1024;

/// A sealed epoch key: an ephemeral X25519 key, the 32-byte key and the AEAD tag.
pub const SEALED_EPOCH_KEY_LEN: usize = 32 + 32 + 16;

/// Largest history chunk (encoded): the exporter aims at 1 MiB; a chunk is one blob.
pub const MAX_HISTORY_CHUNK_LEN: usize = 4 * 1024 * 1024;

/// Most entries in one history chunk.
pub const MAX_HISTORY_ITEMS: usize = 65_536;

/// Most history chunks a provisioning bundle names (their ids must fit in the bundle).
pub const MAX_HISTORY_CHUNKS: usize = 128;

/// Most devices in a signed device list (`per-device`): the roster's own bound on
/// devices ever (`chorus_core::MAX_DEVICES`).
pub const MAX_LISTED_DEVICES: usize = 64;

/// Largest encoded device list: [`MAX_LISTED_DEVICES`] entries of two 32-byte ids and
/// a generation (~75 bytes each with framing), a root key and a signature.
pub const MAX_DEVICE_LIST_LEN: usize = 8 * 1024;

/// Largest file a message carries (`chorus send --file`): large enough for photos,
/// documents and short videos, small enough that one person cannot fill a relay's
/// file quota with a handful of sends.
pub const MAX_FILE_LEN: u64 = 100 * 1024 * 1024;

/// A file's plaintext is encrypted in parts of this many bytes (the last may be
/// shorter): both ends hold one part in memory at a time, and an interrupted
/// transfer loses at most one part.
pub const FILE_PART_LEN: usize = 256 * 1024;

/// Most bytes of one encrypted file part: a full part and its 16-byte tag.
pub const MAX_FILE_PART_LEN: usize = FILE_PART_LEN + 16;

/// Longest file name a message carries (the common file-system limit).
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Longest media type (the longest registered ones are under 100 bytes; a sender
/// with a longer one says `application/octet-stream`).
pub const MAX_MEDIA_TYPE_LEN: usize = 127;

/// Longest text of a message that carries a file (its caption): [`MAX_TEXT_LEN`] less
/// room for the largest attachment, so the largest such message still fits the
/// padding bucket below the largest (`app::tests`).
pub const MAX_CAPTION_LEN: usize = MAX_TEXT_LEN - 2000;
