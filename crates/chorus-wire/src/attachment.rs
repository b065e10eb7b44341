//! A file sent with a message: where its encrypted parts lie and how to open them.
//!
//! The sender encrypts the file under a fresh key in parts of [`FILE_PART_LEN`] bytes
//! (`chorus_crypto::FileKey`) and uploads them to its relay under a random locator;
//! the message carries this record, so every device of the reader — and every
//! sibling of the sender, through the `Sent` record in its log — can fetch and open
//! the file. The relay sees only the parts, their number and sizes.
//!
//! The record comes from a contact (inside a message) or a sibling (inside a log
//! event): every field is checked as untrusted. The name in particular is only a
//! suggestion: it must be one plain file name (no directory, no control or invisible
//! characters), and the reader still decides where it goes.

use zeroize::Zeroizing;

use crate::invitation::check_relay_url;
use crate::limits::{FILE_PART_LEN, MAX_FILE_LEN, MAX_FILE_NAME_LEN, MAX_MEDIA_TYPE_LEN};
use crate::{WireError, fixed, is_invisible, proto};

/// A file a message carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The relay holding the parts (the sender's home relay).
    pub relay_url: String,
    /// Where the parts lie on that relay (random: whoever knows it may fetch them).
    pub locator: [u8; 32],
    /// The file's key (secret: wiped on drop, never printed).
    pub key: Zeroizing<[u8; 32]>,
    /// The SHA-256 of the plaintext.
    pub digest: [u8; 32],
    /// The sender's name for the file: one plain file name.
    pub name: String,
    /// The plaintext's length, at most [`MAX_FILE_LEN`].
    pub size: u64,
    /// The media type (`type/subtype`), as the sender guessed it.
    pub media_type: String,
    /// When the relay deletes the parts (milliseconds since the Unix epoch).
    pub expires_ms: u64,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("media_type", &self.media_type)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

impl Attachment {
    /// How many parts the file is cut into (an empty file is one empty part).
    pub fn parts(&self) -> u32 {
        parts_of(self.size)
    }

    /// Checks every field.
    pub fn check(&self) -> Result<(), WireError> {
        check_relay_url("attachment.relay_url", &self.relay_url)?;
        check_file_name("attachment.name", &self.name)?;
        check_media_type(&self.media_type)?;
        if self.size > MAX_FILE_LEN {
            return Err(WireError::TooLarge {
                what: "file",
                max: usize::try_from(MAX_FILE_LEN).unwrap_or(usize::MAX),
                actual: usize::try_from(self.size).unwrap_or(usize::MAX),
            });
        }
        Ok(())
    }

    pub(crate) fn from_proto(a: &proto::Attachment) -> Result<Self, WireError> {
        let out = Self {
            relay_url: a.relay_url.clone(),
            locator: fixed("attachment.locator", &a.locator)?,
            key: Zeroizing::new(fixed("attachment.key", &a.key)?),
            digest: fixed("attachment.digest", &a.digest)?,
            name: a.name.clone(),
            size: a.size,
            media_type: a.media_type.clone(),
            expires_ms: a.expires_ms,
        };
        out.check()?;
        Ok(out)
    }

    pub(crate) fn to_proto(&self) -> proto::Attachment {
        proto::Attachment {
            relay_url: self.relay_url.clone(),
            locator: self.locator.to_vec(),
            key: self.key.to_vec(),
            digest: self.digest.to_vec(),
            name: self.name.clone(),
            size: self.size,
            media_type: self.media_type.clone(),
            expires_ms: self.expires_ms,
        }
    }

    /// The encoding, for the local store (secret: wiped on drop).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        use prost::Message;
        let mut p = self.to_proto();
        let out = Zeroizing::new(p.encode_to_vec());
        zeroize::Zeroize::zeroize(&mut p.key);
        out
    }

    /// Decodes what [`Self::encode`] made, checking every field.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut p: proto::Attachment = crate::decode_bounded(
            "attachment",
            bytes,
            2048 + MAX_FILE_NAME_LEN + MAX_MEDIA_TYPE_LEN,
        )?;
        let out = Self::from_proto(&p);
        zeroize::Zeroize::zeroize(&mut p.key);
        out
    }
}

/// How many parts a file of `size` bytes is cut into.
pub fn parts_of(size: u64) -> u32 {
    let part = FILE_PART_LEN as u64;
    u32::try_from(size.div_ceil(part).max(1)).unwrap_or(u32::MAX)
}

/// Checks a file name: 1 to [`MAX_FILE_NAME_LEN`] bytes, one path component (no `/`
/// or `\`, not `.` or `..`), no control or invisible characters, no surrounding
/// white space — so a name shown or used as a file name is what it looks like.
pub fn check_file_name(field: &'static str, name: &str) -> Result<(), WireError> {
    let bad = |reason| Err(WireError::InvalidText { field, reason });
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(WireError::TooLarge {
            what: "file name",
            max: MAX_FILE_NAME_LEN,
            actual: name.len(),
        });
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return bad("must be a file name, not a path");
    }
    if name.chars().any(|c| c.is_control() || is_invisible(c)) {
        return bad("must not contain control, invisible or text-direction characters");
    }
    if name != name.trim() {
        return bad("must not start or end with white space");
    }
    Ok(())
}

fn check_media_type(t: &str) -> Result<(), WireError> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let ok = t.len() <= MAX_MEDIA_TYPE_LEN
        && t.split_once('/').is_some_and(|(a, b)| token(a) && token(b));
    if ok {
        Ok(())
    } else {
        Err(WireError::InvalidText {
            field: "attachment.media_type",
            reason: "must be a media type (type/subtype)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Attachment {
        Attachment {
            relay_url: "https://relay.example".into(),
            locator: [1; 32],
            key: Zeroizing::new([2; 32]),
            digest: [3; 32],
            name: "holiday.jpg".into(),
            size: 600_000,
            media_type: "image/jpeg".into(),
            expires_ms: 9,
        }
    }

    #[test]
    fn an_attachment_round_trips_and_never_prints_its_key() {
        let a = sample();
        assert_eq!(Attachment::decode(&a.encode()).unwrap(), a);
        assert_eq!(a.parts(), 3);
        let shown = format!("{a:?}");
        assert!(shown.contains("holiday.jpg"));
        assert!(!shown.contains("key") && !shown.contains("[2, 2"));
    }

    #[test]
    fn part_counts_cover_the_file() {
        let part = FILE_PART_LEN as u64;
        assert_eq!(parts_of(0), 1);
        assert_eq!(parts_of(1), 1);
        assert_eq!(parts_of(part), 1);
        assert_eq!(parts_of(part + 1), 2);
        assert_eq!(parts_of(MAX_FILE_LEN), 400);
    }

    #[test]
    fn a_name_that_is_a_path_or_hides_characters_is_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../../.bashrc",
            "dir/file",
            "c:\\windows",
            "a\nb",
            "evil\u{202E}gpj.exe",
            " padded",
            &"x".repeat(MAX_FILE_NAME_LEN + 1),
        ] {
            let a = Attachment {
                name: bad.to_owned(),
                ..sample()
            };
            assert!(a.check().is_err(), "{bad:?} passed");
            assert!(Attachment::decode(&a.encode()).is_err(), "{bad:?} decoded");
        }
        for good in ["notes.txt", ".hidden", "Résumé 2026.pdf", "x"] {
            check_file_name("t", good).unwrap();
        }
    }

    #[test]
    fn other_fields_are_checked() {
        let too_big = Attachment {
            size: MAX_FILE_LEN + 1,
            ..sample()
        };
        assert!(matches!(too_big.check(), Err(WireError::TooLarge { .. })));
        for t in ["", "image", "image/", "/jpeg", "image/jp eg", "a/b/c"] {
            let a = Attachment {
                media_type: t.to_owned(),
                ..sample()
            };
            assert!(a.check().is_err(), "{t:?} passed");
        }
        let mut p = sample().to_proto();
        p.key.pop();
        assert!(Attachment::from_proto(&p).is_err());
        let bad_url = Attachment {
            relay_url: "file:///etc/passwd".into(),
            ..sample()
        };
        assert!(bad_url.check().is_err());
    }
}
