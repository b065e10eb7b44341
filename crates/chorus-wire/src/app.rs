//! The application layer: what the client wraps around ratchet messages (an
//! [`Envelope`] in a mailbox), what it puts inside them (a [`Payload`]), and what an
//! identity publishes in its relay's prekey directory (a [`DirectoryEntry`]).
//!
//! Nothing here names a device — a contact sees one identity however many devices send
//! for it — except [`Envelope::Copy`], which only the `per-device` strategy sends, and
//! which names its sender's device by design. Every decoder bounds its input before
//! parsing and checks every field.

use prost::Message;

use crate::Attachment;
use crate::error::field;
use crate::invitation::{MailboxId, check_relay_url};
use crate::limits::{
    MAX_CAPTION_LEN, MAX_DIRECTORY_ENTRY_LEN, MAX_DISPLAY_NAME_LEN, MAX_ENVELOPE_LEN,
    MAX_INITIAL_MESSAGE_LEN, MAX_PAYLOAD_ROLLS, MAX_PLAINTEXT_LEN, MAX_RATCHET_MESSAGE_LEN,
    MAX_TEXT_LEN, MAX_TIMER_SECS,
};
use crate::prekeys::{IdentityKeys, SignedPrekey};
use crate::roll::IdentityRoll;
use crate::{WIRE_VERSION, WireError, check_version, decode_bounded, proto};
use chorus_crypto::RootPublicKey;

/// One encrypted message as a mailbox holds it. The inner bytes are decoded (and their
/// bounds checked) by the core when it decrypts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Envelope {
    /// An initial message: the sender has not yet heard back.
    Initial(Vec<u8>),
    /// A ratchet message.
    Ratchet(Vec<u8>),
    /// `per-device`: one device's copy of a message, on the pairwise session between
    /// the sending device and the reading one.
    Copy {
        /// The sending device's key.
        sender_device: [u8; 32],
        /// The pairwise session's first message (an initial message), else a ratchet
        /// message.
        initial: bool,
        /// The message.
        message: Vec<u8>,
    },
}

impl Envelope {
    /// Decodes an envelope.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::Envelope = decode_bounded("envelope", bytes, MAX_ENVELOPE_LEN)?;
        check_version("envelope", p.version)?;
        let body = p.body.ok_or(WireError::MissingField("envelope.body"))?;
        let bounded = |initial: bool, bytes: Vec<u8>| {
            let (what, max) = match initial {
                true => ("initial message", MAX_INITIAL_MESSAGE_LEN),
                false => ("ratchet message", MAX_RATCHET_MESSAGE_LEN),
            };
            if bytes.is_empty() {
                return Err(WireError::MissingField("envelope.body"));
            }
            if bytes.len() > max {
                return Err(WireError::TooLarge {
                    what,
                    max,
                    actual: bytes.len(),
                });
            }
            Ok(bytes)
        };
        match body {
            proto::envelope::Body::Initial(b) => Ok(Self::Initial(bounded(true, b)?)),
            proto::envelope::Body::Ratchet(b) => Ok(Self::Ratchet(bounded(false, b)?)),
            proto::envelope::Body::Copy(c) => Ok(Self::Copy {
                sender_device: crate::fixed("envelope.copy.sender_device", &c.sender_device)?,
                initial: c.initial,
                message: bounded(c.initial, c.message)?,
            }),
        }
    }

    /// Encodes the envelope.
    pub fn encode(&self) -> Vec<u8> {
        let body = match self {
            Self::Initial(b) => proto::envelope::Body::Initial(b.clone()),
            Self::Ratchet(b) => proto::envelope::Body::Ratchet(b.clone()),
            Self::Copy {
                sender_device,
                initial,
                message,
            } => proto::envelope::Body::Copy(proto::DeviceCopy {
                sender_device: sender_device.to_vec(),
                initial: *initial,
                message: message.clone(),
            }),
        };
        proto::Envelope {
            version: WIRE_VERSION,
            body: Some(body),
        }
        .encode_to_vec()
    }
}

/// Where to write back to the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's home relay.
    pub relay_url: String,
    /// A mailbox the sender created for this contact only.
    pub mailbox: MailboxId,
    /// The sender's display name (a suggestion).
    pub name: String,
}

/// The plaintext of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The sender's clock (milliseconds since the Unix epoch), for display only.
    pub sent_ms: u64,
    /// The message text; empty for a pure control message.
    pub text: String,
    /// Present until the sender knows the contact has it.
    pub hello: Option<Hello>,
    /// The sender's identity rolls, oldest first (at most
    /// [`MAX_PAYLOAD_ROLLS`](crate::limits::MAX_PAYLOAD_ROLLS)), until the contact
    /// answers with the last one's root in `roll_seen`.
    pub rolls: Vec<IdentityRoll>,
    /// The root key the reader now holds for the sender: the answer to a message that
    /// carried rolls (the sender stops sending them).
    pub roll_seen: Option<RootPublicKey>,
    /// The sender's display name (`chorus profile set --name`), in every message, so a
    /// contact learns a new one with the next message. At most
    /// [`MAX_DISPLAY_NAME_LEN`] bytes, not empty.
    pub name: Option<String>,
    /// The conversation's disappearing-message timer as the sender holds it (`None`
    /// until one was ever set).
    pub timer: Option<Timer>,
    /// A file sent with the message (the text is then its caption, maybe empty).
    pub file: Option<Attachment>,
}

/// A conversation's disappearing-message timer. Of two settings the later one wins
/// (by `set_ms`, then the longer `secs`), so both sides and all their devices agree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    /// When it was set, on the setter's clock (milliseconds since the Unix epoch).
    pub set_ms: u64,
    /// Messages sent from then on disappear this long after they were sent; 0: off.
    /// At most [`MAX_TIMER_SECS`].
    pub secs: u64,
}

impl Timer {
    /// Checks the bound.
    pub fn check(self, field: &'static str) -> Result<Self, WireError> {
        if self.secs > MAX_TIMER_SECS {
            return Err(WireError::InvalidText {
                field,
                reason: "a disappearing-message timer over 28 days",
            });
        }
        Ok(self)
    }

    pub(crate) fn from_proto(
        t: &proto::DisappearingTimer,
        field: &'static str,
    ) -> Result<Self, WireError> {
        Timer {
            set_ms: t.set_ms,
            secs: t.secs,
        }
        .check(field)
    }

    pub(crate) fn to_proto(self) -> proto::DisappearingTimer {
        proto::DisappearingTimer {
            secs: self.secs,
            set_ms: self.set_ms,
        }
    }
}

impl Payload {
    /// Decodes a payload (already unpadded and authenticated by the ratchet).
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::Payload = decode_bounded("payload", bytes, MAX_PLAINTEXT_LEN)?;
        check_version("payload", p.version)?;
        check_text(&p.text)?;
        let hello = match p.hello {
            None => None,
            Some(h) => {
                check_relay_url("hello.relay_url", &h.relay_url)?;
                check_display_name("hello.name", &h.name)?;
                Some(Hello {
                    mailbox: MailboxId::from_slice("hello.mailbox_id", &h.mailbox_id)?,
                    relay_url: h.relay_url,
                    name: h.name,
                })
            }
        };
        if p.rolls.len() > MAX_PAYLOAD_ROLLS {
            return Err(WireError::InvalidText {
                field: "payload.rolls",
                reason: "more identity rolls than a payload carries",
            });
        }
        let rolls = p
            .rolls
            .iter()
            .map(IdentityRoll::from_proto)
            .collect::<Result<_, _>>()?;
        let roll_seen = match p.roll_seen.is_empty() {
            true => None,
            false => Some(field(
                "payload.roll_seen",
                RootPublicKey::from_slice(&p.roll_seen),
            )?),
        };
        let name = match p.name.is_empty() {
            true => None,
            false => {
                check_display_name("payload.name", &p.name)?;
                Some(p.name)
            }
        };
        let timer = p
            .timer
            .as_ref()
            .map(|t| Timer::from_proto(t, "payload.timer"))
            .transpose()?;
        let file = p.file.as_ref().map(Attachment::from_proto).transpose()?;
        if file.is_some() {
            check_caption(&p.text)?;
        }
        Ok(Self {
            sent_ms: p.sent_ms,
            text: p.text,
            hello,
            rolls,
            roll_seen,
            name,
            timer,
            file,
        })
    }

    /// Encodes the payload, refusing a text or hello over its bound (so nothing
    /// oversized is ever encrypted).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        check_text(&self.text)?;
        let hello = match &self.hello {
            None => None,
            Some(h) => {
                check_relay_url("hello.relay_url", &h.relay_url)?;
                check_display_name("hello.name", &h.name)?;
                Some(proto::Hello {
                    relay_url: h.relay_url.clone(),
                    mailbox_id: h.mailbox.0.to_vec(),
                    name: h.name.clone(),
                })
            }
        };
        if self.rolls.len() > MAX_PAYLOAD_ROLLS {
            return Err(WireError::InvalidText {
                field: "payload.rolls",
                reason: "more identity rolls than a payload carries",
            });
        }
        if let Some(name) = &self.name {
            check_display_name("payload.name", name)?;
        }
        if let Some(t) = self.timer {
            t.check("payload.timer")?;
        }
        if let Some(f) = &self.file {
            f.check()?;
            check_caption(&self.text)?;
        }
        Ok(proto::Payload {
            version: WIRE_VERSION,
            sent_ms: self.sent_ms,
            text: self.text.clone(),
            hello,
            rolls: self.rolls.iter().map(IdentityRoll::to_proto).collect(),
            roll_seen: self
                .roll_seen
                .map(|r| r.as_bytes().to_vec())
                .unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
            timer: self.timer.map(Timer::to_proto),
            file: self.file.as_ref().map(Attachment::to_proto),
        }
        .encode_to_vec())
    }
}

/// Checks a message text against [`MAX_TEXT_LEN`].
pub fn check_text(text: &str) -> Result<(), WireError> {
    crate::check_len("message text", text.as_bytes(), MAX_TEXT_LEN)
}

/// Checks the text of a message that carries a file against [`MAX_CAPTION_LEN`].
pub fn check_caption(text: &str) -> Result<(), WireError> {
    crate::check_len("caption", text.as_bytes(), MAX_CAPTION_LEN)
}

/// Whether `c` changes how the text around it looks without being seen itself:
/// bidirectional embeddings, overrides, isolates and marks, zero-width characters and
/// other invisible fillers. In a name they let "bob" followed by a zero-width space, or
/// a name reversed by U+202E, pass for someone else.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// A name as the user typed it, in the form every name is kept and compared in: NFC,
/// without surrounding white space. Check the result with [`check_display_name`].
pub fn normalize_display_name(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.trim().nfc().collect()
}

/// Checks a display name: 1 to [`MAX_DISPLAY_NAME_LEN`] bytes, in NFC, without
/// surrounding white space, control characters or invisible ones ([`is_invisible`]).
/// Our own names go through [`normalize_display_name`] first; a peer's name that is
/// not already normal was crafted, and is refused.
pub fn check_display_name(field: &'static str, name: &str) -> Result<(), WireError> {
    if name.is_empty() {
        return Err(WireError::InvalidText {
            field,
            reason: "must not be empty",
        });
    }
    if name.len() > MAX_DISPLAY_NAME_LEN {
        return Err(WireError::TooLarge {
            what: "display name",
            max: MAX_DISPLAY_NAME_LEN,
            actual: name.len(),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(WireError::InvalidText {
            field,
            reason: "must not contain control characters",
        });
    }
    if name.chars().any(is_invisible) {
        return Err(WireError::InvalidText {
            field,
            reason: "must not contain invisible or text-direction characters",
        });
    }
    if name != name.trim() || !unicode_normalization::is_nfc(name) {
        return Err(WireError::InvalidText {
            field,
            reason: "must be in normal form (NFC) without surrounding spaces",
        });
    }
    Ok(())
}

/// What an identity publishes in its relay's prekey directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The identity (its root key's fingerprint is the address).
    pub identity: IdentityKeys,
    /// The current signed prekey, signed by the root.
    pub signed_prekey: SignedPrekey,
    /// Where first messages from strangers go.
    pub intro_mailbox: MailboxId,
}

impl DirectoryEntry {
    /// Decodes an entry, verifying the signed prekey under the entry's root key.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::DirectoryEntry =
            decode_bounded("directory entry", bytes, MAX_DIRECTORY_ENTRY_LEN)?;
        check_version("directory entry", p.version)?;
        let identity = IdentityKeys::from_proto(
            p.identity
                .as_ref()
                .ok_or(WireError::MissingField("directory.identity"))?,
        )?;
        let signed_prekey = SignedPrekey::from_proto(
            p.signed_prekey
                .as_ref()
                .ok_or(WireError::MissingField("directory.signed_prekey"))?,
            &identity.root,
        )?;
        let intro_mailbox =
            MailboxId::from_slice("directory.intro_mailbox_id", &p.intro_mailbox_id)?;
        Ok(Self {
            identity,
            signed_prekey,
            intro_mailbox,
        })
    }

    /// Encodes the entry.
    pub fn encode(&self) -> Vec<u8> {
        proto::DirectoryEntry {
            version: WIRE_VERSION,
            identity: Some(self.identity.to_proto()),
            signed_prekey: Some(self.signed_prekey.to_proto()),
            intro_mailbox_id: self.intro_mailbox.0.to_vec(),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::PADDING_BUCKETS;
    use crate::prekeys::tests::bundle;

    fn hello() -> Hello {
        Hello {
            relay_url: format!(
                "https://{}",
                "r".repeat(crate::limits::MAX_RELAY_URL_LEN - 8)
            ),
            mailbox: MailboxId([7; 32]),
            name: "n".repeat(MAX_DISPLAY_NAME_LEN),
        }
    }

    #[test]
    fn the_largest_payload_fits_the_second_largest_padding_bucket() {
        // So that an initial message around it stays under the relay's 64 KiB envelope
        // bound (the largest bucket plus handshake overhead would not).
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let mut roll = || {
            let (old, new) = (
                chorus_crypto::RootSigningKey::generate(&mut rng),
                chorus_crypto::RootSigningKey::generate(&mut rng),
            );
            let dh = chorus_crypto::IdentityDhSecret::generate(&mut rng).public_key();
            IdentityRoll::sign(&old, &new, IdentityKeys::sign(&new, dh))
        };
        let p = Payload {
            file: Some(largest_attachment()),
            sent_ms: u64::MAX,
            text: "x".repeat(MAX_CAPTION_LEN),
            hello: Some(hello()),
            rolls: (0..MAX_PAYLOAD_ROLLS).map(|_| roll()).collect(),
            roll_seen: Some(chorus_crypto::RootSigningKey::generate(&mut rng).public_key()),
            name: Some("n".repeat(MAX_DISPLAY_NAME_LEN)),
            timer: Some(Timer {
                set_ms: u64::MAX,
                secs: MAX_TIMER_SECS,
            }),
        };
        let bytes = p.encode().unwrap();
        assert!(
            bytes.len() < PADDING_BUCKETS[PADDING_BUCKETS.len() - 2],
            "{}",
            bytes.len()
        );
        assert_eq!(Payload::decode(&bytes).unwrap(), p);
    }

    fn largest_attachment() -> Attachment {
        use crate::limits::{
            MAX_FILE_LEN, MAX_FILE_NAME_LEN, MAX_MEDIA_TYPE_LEN, MAX_RELAY_URL_LEN,
        };
        let url = format!("https://{}", "r".repeat(MAX_RELAY_URL_LEN - 8));
        Attachment {
            relay_url: url,
            locator: [1; 32],
            key: zeroize::Zeroizing::new([2; 32]),
            digest: [3; 32],
            name: "n".repeat(MAX_FILE_NAME_LEN),
            size: MAX_FILE_LEN,
            media_type: format!("a/{}", "b".repeat(MAX_MEDIA_TYPE_LEN - 2)),
            expires_ms: u64::MAX,
        }
    }

    #[test]
    fn a_file_in_a_payload_is_checked_both_ways() {
        let mut p = Payload {
            file: Some(largest_attachment()),
            sent_ms: 1,
            text: String::new(),
            hello: None,
            rolls: Vec::new(),
            roll_seen: None,
            name: None,
            timer: None,
        };
        assert_eq!(Payload::decode(&p.encode().unwrap()).unwrap(), p);
        let good = p.encode().unwrap();
        // A caption over its bound (a text that alone would be fine): refused.
        p.text = "x".repeat(MAX_CAPTION_LEN + 1);
        assert!(matches!(
            p.encode(),
            Err(WireError::TooLarge {
                what: "caption",
                ..
            })
        ));
        let mut raw = proto::Payload::decode(&good[..]).unwrap();
        raw.text = p.text.clone();
        assert!(Payload::decode(&raw.encode_to_vec()).is_err());
        p.text = "x".repeat(MAX_CAPTION_LEN);
        assert!(p.encode().is_ok(), "at the bound");
        if let Some(f) = p.file.as_mut() {
            f.name = "../../.ssh/authorized_keys".into();
        }
        assert!(p.encode().is_err(), "never encrypted");
        // The same payload built by hand, as a dishonest sender would: refused on read.
        let mut raw = proto::Payload::decode(&good[..]).unwrap();
        if let Some(f) = raw.file.as_mut() {
            f.name = "../../.ssh/authorized_keys".into();
        }
        assert!(matches!(
            Payload::decode(&raw.encode_to_vec()),
            Err(WireError::InvalidText {
                field: "attachment.name",
                ..
            })
        ));
    }

    #[test]
    fn a_display_name_in_a_payload_is_bounded_both_ways_and_empty_means_unsaid() {
        let mut p = Payload {
            file: None,
            sent_ms: 1,
            text: "hi".into(),
            hello: None,
            rolls: Vec::new(),
            roll_seen: None,
            name: Some("Alice B.".into()),
            timer: None,
        };
        assert_eq!(Payload::decode(&p.encode().unwrap()).unwrap(), p);
        p.name = Some("n".repeat(MAX_DISPLAY_NAME_LEN + 1));
        assert!(p.encode().is_err());
        let over = proto::Payload {
            version: WIRE_VERSION,
            sent_ms: 1,
            text: "hi".into(),
            name: "n".repeat(MAX_DISPLAY_NAME_LEN + 1),
            ..Default::default()
        }
        .encode_to_vec();
        let e = Payload::decode(&over).unwrap_err();
        assert!(e.to_string().contains("display name"), "{e}");
        let unsaid = proto::Payload {
            version: WIRE_VERSION,
            sent_ms: 1,
            text: "hi".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(Payload::decode(&unsaid).unwrap().name, None);
        // Control characters are not a name.
        let control = proto::Payload {
            version: WIRE_VERSION,
            sent_ms: 1,
            name: "a\u{1b}[2J".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert!(Payload::decode(&control).is_err());
    }

    #[test]
    fn a_timer_over_28_days_is_refused_both_ways() {
        let mut p = Payload {
            file: None,
            sent_ms: 1,
            text: "hi".into(),
            hello: None,
            rolls: Vec::new(),
            roll_seen: None,
            name: None,
            timer: Some(Timer {
                set_ms: 5,
                secs: MAX_TIMER_SECS,
            }),
        };
        assert_eq!(Payload::decode(&p.encode().unwrap()).unwrap(), p);
        p.timer = Some(Timer {
            set_ms: 5,
            secs: MAX_TIMER_SECS + 1,
        });
        assert!(p.encode().is_err());
        let over = proto::Payload {
            version: WIRE_VERSION,
            sent_ms: 1,
            timer: Some(proto::DisappearingTimer {
                secs: MAX_TIMER_SECS + 1,
                set_ms: 5,
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let e = Payload::decode(&over).unwrap_err();
        assert!(e.to_string().contains("payload.timer"), "{e}");
    }

    #[test]
    fn a_text_one_byte_over_the_limit_is_refused_both_ways() {
        let mut p = Payload {
            file: None,
            sent_ms: 1,
            text: "x".repeat(MAX_TEXT_LEN + 1),
            hello: None,
            rolls: Vec::new(),
            roll_seen: None,
            name: None,
            timer: None,
        };
        let err = WireError::TooLarge {
            what: "message text",
            max: MAX_TEXT_LEN,
            actual: MAX_TEXT_LEN + 1,
        };
        assert_eq!(p.encode(), Err(err.clone()));
        let raw = proto::Payload {
            version: WIRE_VERSION,
            sent_ms: 1,
            text: p.text.clone(),
            ..proto::Payload::default()
        }
        .encode_to_vec();
        assert_eq!(Payload::decode(&raw), Err(err));
        p.text.pop();
        assert!(p.encode().is_ok());
    }

    #[test]
    fn display_names_are_bounded_and_printable() {
        assert!(check_display_name("n", &"n".repeat(MAX_DISPLAY_NAME_LEN)).is_ok());
        assert!(matches!(
            check_display_name("n", &"n".repeat(MAX_DISPLAY_NAME_LEN + 1)),
            Err(WireError::TooLarge { .. })
        ));
        assert!(check_display_name("n", "").is_err());
        assert!(check_display_name("n", "evil\u{1b}[2J").is_err());
    }

    #[test]
    fn names_that_imitate_another_are_refused_and_ours_are_normalised() {
        for fake in [
            "bob\u{200b}",         // zero-width space
            "\u{202e}bob",         // right-to-left override
            "bo\u{2066}b\u{2069}", // isolate
            "b\u{feff}ob",         // zero-width no-break space
            "bob ",                // trailing space
            "be\u{301}",           // "bé" decomposed (NFD)
        ] {
            assert!(
                matches!(
                    check_display_name("hello.name", fake),
                    Err(WireError::InvalidText {
                        field: "hello.name",
                        ..
                    })
                ),
                "{fake:?} passed"
            );
        }
        assert_eq!(normalize_display_name("  be\u{301} "), "b\u{e9}");
        assert!(check_display_name("n", &normalize_display_name("  be\u{301} ")).is_ok());
        assert!(check_display_name("n", "Zoë 🎉").is_ok());
    }

    #[test]
    fn an_envelope_round_trips_and_an_empty_or_oversized_body_is_refused() {
        let e = Envelope::Ratchet(vec![1, 2, 3]);
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        assert_eq!(
            Envelope::decode(&Envelope::Initial(Vec::new()).encode()),
            Err(WireError::MissingField("envelope.body"))
        );
        let big = Envelope::Ratchet(vec![0; MAX_RATCHET_MESSAGE_LEN + 1]).encode();
        assert!(matches!(
            Envelope::decode(&big),
            Err(WireError::TooLarge { .. })
        ));
        let none = proto::Envelope {
            version: WIRE_VERSION,
            body: None,
        }
        .encode_to_vec();
        assert_eq!(
            Envelope::decode(&none),
            Err(WireError::MissingField("envelope.body"))
        );
    }

    #[test]
    fn a_device_copy_round_trips_and_its_sender_and_bounds_are_checked() {
        let copy = |initial, message: Vec<u8>| Envelope::Copy {
            sender_device: [7; 32],
            initial,
            message,
        };
        for initial in [true, false] {
            let e = copy(initial, vec![1; 9]);
            assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        }
        assert_eq!(
            Envelope::decode(&copy(false, Vec::new()).encode()),
            Err(WireError::MissingField("envelope.body"))
        );
        // Bounded like any envelope (and its message like the kind it names).
        assert!(matches!(
            Envelope::decode(&copy(true, vec![0; MAX_ENVELOPE_LEN]).encode()),
            Err(WireError::TooLarge { .. })
        ));
        let short = proto::Envelope {
            version: WIRE_VERSION,
            body: Some(proto::envelope::Body::Copy(proto::DeviceCopy {
                sender_device: vec![7; 31],
                initial: false,
                message: vec![1],
            })),
        }
        .encode_to_vec();
        assert!(matches!(
            Envelope::decode(&short),
            Err(WireError::InvalidText { .. })
        ));
    }

    #[test]
    fn a_directory_entry_round_trips_and_a_foreign_signed_prekey_is_refused() {
        let b = bundle(1);
        let entry = DirectoryEntry {
            identity: b.identity.clone(),
            signed_prekey: b.signed_prekey.clone(),
            intro_mailbox: MailboxId([3; 32]),
        };
        assert_eq!(DirectoryEntry::decode(&entry.encode()).unwrap(), entry);
        let other = bundle(2);
        let forged = DirectoryEntry {
            signed_prekey: other.signed_prekey,
            ..entry
        };
        assert_eq!(
            DirectoryEntry::decode(&forged.encode()),
            Err(WireError::BadSignature("signed prekey"))
        );
    }
}
