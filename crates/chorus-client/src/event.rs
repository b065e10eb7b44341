//! What receiving reports: new contacts, messages, devices that joined, requests and
//! refusals. Plain data, shown by the CLI and serialised by `--json`.

use serde::Serialize;

/// Something that happened while receiving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Someone answered an invitation or wrote to our address: a new contact.
    ContactAdded {
        /// The alias given to them.
        contact: String,
    },
    /// A message, in or out.
    Message(Message),
    /// The contact started a new session with us (reinstalled, restored an old
    /// backup, or wrote to us at the same time as we wrote to them), and the
    /// conversation moved to it. The old session is only read for messages already
    /// on their way, for `STALE_SESSION_DRAIN`.
    SessionReset {
        /// The contact.
        contact: String,
    },
    /// A device joined this identity (a roster entry folded from the log).
    DeviceLinked {
        /// Its name.
        name: String,
        /// The device that approved it.
        by: String,
    },
    /// A device was revoked (a root-signed roster entry folded from the log): from here
    /// on no device accepts its records, and the relay no longer lets it in.
    DeviceRevoked {
        /// Its name.
        name: String,
        /// The device that revoked it.
        by: String,
        /// Whether it is this device: then nothing more can be done here.
        this_device: bool,
    },
    /// The identity's security level changed (`chorus security set`).
    SecurityChanged {
        /// Now `primary-root` (else `shared-root`).
        primary_root: bool,
        /// Whether this device holds the root key from now on.
        this_device_holds_root: bool,
    },
    /// The identity rolled its root key (`chorus identity roll`, here or on a sibling):
    /// a new fingerprint, and a new safety number with every contact, who are told in
    /// their next message from us.
    IdentityRolled {
        /// The new fingerprint.
        fingerprint: String,
        /// Whether this device holds the new root key.
        this_device_holds_root: bool,
    },
    /// A contact rolled their identity key, signed by their previous key: the
    /// conversation goes on, with a new safety number to compare.
    ContactRolled {
        /// The contact.
        contact: String,
        /// The new safety number.
        safety_number: String,
    },
    /// A contact set the conversation's disappearing-message timer (this identity
    /// adopts it on every device).
    TimerChanged {
        /// The contact.
        contact: String,
        /// Messages disappear this long after they were sent; 0: off.
        secs: u64,
        /// When they set it (their clock).
        set_ms: u64,
    },
    /// A contact was removed, with the conversation, on every device of the identity
    /// (`chorus contact remove`, here or on a sibling).
    ContactRemoved {
        /// The name they had.
        contact: String,
    },
    /// A contact told a new display name (`chorus profile set --name` on their side).
    /// Where our name for them was their old one, it followed.
    ContactRenamed {
        /// What we call them now.
        contact: String,
        /// The name they had.
        was: String,
        /// The name they have now.
        now: String,
    },
    /// A contact's previous key signed two different rolls: one is not theirs (a
    /// device of theirs was stolen with the key). Their keys move no more until the
    /// safety number is compared again (`chorus contact verify`).
    ContactCompromised {
        /// The contact.
        contact: String,
    },
    /// A device the identity already held was linked again (reinstalled with its
    /// keys, or an interrupted link resumed). Worth a look if nobody here did it.
    DeviceRelinked {
        /// Its name.
        name: String,
        /// The device that approved it.
        by: String,
    },
    /// A stranger wrote to the identity's address: a message request, held until a
    /// device accepts or blocks it (`chorus requests`).
    Request {
        /// The request's id on this device.
        request: i64,
        /// The name they gave.
        name: String,
        /// The message.
        text: String,
    },
    /// An envelope or log record that could not be accepted (forged, replayed, for a
    /// used invitation, from outside the roster): skipped, nothing changed but the
    /// cursor.
    Rejected {
        /// What was skipped ("an envelope: …" or "log record N: …") and why.
        reason: String,
    },
}

/// One history entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// The contact.
    pub contact: String,
    /// Sent by us.
    pub outgoing: bool,
    /// The text.
    pub text: String,
    /// The sender's clock.
    pub sent_ms: i64,
    /// When this device stored it.
    pub stored_ms: i64,
    /// Already read on one of the identity's devices: every outgoing message, and an
    /// incoming one at or before the contact's read marker. A device catching up shows
    /// such a message, but not as new.
    pub read: bool,
    /// Not in the log yet: waiting for the relay, or (`leader`, `primary`) for the
    /// device that sends for the identity (history only; every event is of a message
    /// in the log or received).
    pub pending: bool,
    /// How far an outgoing message got, as this device knows it (history only: `None`
    /// for incoming messages and in events).
    pub delivery: Option<Delivery>,
    /// The file sent with it (`text` is then its caption, maybe empty).
    pub file: Option<FileInfo>,
}

/// A file sent with a message, as shown (its key stays in the store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    /// What `chorus save` takes: the first 8 hex digits of the message's envelope id.
    pub id: String,
    /// The sender's name for it.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Its media type, as the sender guessed it.
    pub media_type: String,
    /// When the sender's relay deletes it (milliseconds since the Unix epoch).
    pub expires_ms: u64,
}

impl FileInfo {
    /// How a message (envelope `envelope_id`) shows the file it carries.
    pub(crate) fn of(envelope_id: &[u8], file: &chorus_wire::Attachment) -> Self {
        Self {
            id: file_id(envelope_id),
            name: file.name.clone(),
            size: file.size,
            media_type: file.media_type.clone(),
            expires_ms: file.expires_ms,
        }
    }
}

/// A file's id: the first 8 hex digits of its message's envelope id.
pub(crate) fn file_id(envelope_id: &[u8]) -> String {
    hex::encode(envelope_id.get(..4).unwrap_or(envelope_id))
}

/// How far an outgoing message got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Delivery {
    /// Not in the log yet: the home relay could not be reached, or (`leader`,
    /// `primary`) the device that sends for the identity has not sent it. It keeps the
    /// time it was written.
    Pending,
    /// Encrypted and in the log; the contact's relay has not taken it yet.
    Sending,
    /// The contact's relay has taken it (or another of our devices sent it).
    Sent,
    /// Posting it failed; it is retried on its own schedule.
    Failed {
        /// The last failure.
        reason: String,
    },
}
