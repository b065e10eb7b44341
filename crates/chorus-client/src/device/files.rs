//! Files sent with messages (issue 15 item 4).
//!
//! Sending: the file is read one part ([`FILE_PART_LEN`]) at a time, hashed,
//! encrypted under a fresh key (`chorus_crypto::FileKey`, STREAM over AES-256-GCM)
//! and stored on our home relay under a random locator; then a message carrying the
//! [`Attachment`] (relay, locator, key, digest, name, size, type, expiry) goes the way
//! every message goes: a pending send, the `Sent` record in the log (so every sibling
//! holds the file's key too), the envelope.
//!
//! Saving: any device holding the message — every device of the reader, every
//! sibling of the sender — fetches the parts from the relay the attachment names
//! (a relay a contact named: checked against the URL policy like any other), opens
//! each at its place (a part moved, changed, cut short, or a file cut after any part
//! fails to open), checks the size of every part and the digest of the whole, and
//! only then moves the file into place. Nothing is written where the person asked
//! unless the whole file checked out. Memory holds one part at a time either way.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chorus_crypto::{FileDigest, FileKey};
use chorus_relay_api::Id32;
use chorus_wire::limits::{FILE_PART_LEN, MAX_FILE_LEN, MAX_MEDIA_TYPE_LEN};
use chorus_wire::{Attachment, check_file_name, normalize_display_name};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{Device, SendOutcome};
use crate::relay::RelayClient;
use crate::store::{body, row};
use crate::{ClientError, FileInfo};

/// How long we ask the relay to keep a file (it keeps it no longer than its own bound,
/// and the message says when it goes).
pub const FILE_KEEP_MS: i64 = 30 * 24 * 3600 * 1000;

/// Shortest file id `chorus save` takes (the ids `chorus files` shows are 8 digits).
pub const MIN_FILE_ID_LEN: usize = 4;

/// Why a file could not be sent or saved. Each says whose doing it is: the person's
/// (a path, an id), the file's (too large, changed), the relay's (missing, damaged).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file to send cannot be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The path given.
        path: PathBuf,
        /// What the system said.
        reason: String,
    },
    /// The file is over [`MAX_FILE_LEN`].
    #[error("{path} is {size} bytes; a message carries files of at most {max} bytes")]
    TooLarge {
        /// The path given.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// Its name cannot travel as a file name.
    #[error("cannot send {path}: its name {reason}")]
    BadName {
        /// The path given.
        path: PathBuf,
        /// What is wrong with the name.
        reason: String,
    },
    /// The file grew or shrank while it was read.
    #[error("{0} changed while it was being sent; nothing was sent")]
    Changed(PathBuf),
    /// No file in the history has this id.
    #[error("no file {0}: `chorus files` lists them")]
    Unknown(String),
    /// The id is the start of several files' ids.
    #[error("{0} is the start of more than one file's id; give more of it")]
    Ambiguous(String),
    /// The relay deleted it (its time was up).
    #[error("{name} has expired: the relay that held it has deleted it")]
    Expired {
        /// The file's name.
        name: String,
        /// When it expired (milliseconds since the Unix epoch).
        expires_ms: u64,
    },
    /// The relay does not have it though its time is not up.
    #[error("the relay no longer has {0}")]
    Missing(String),
    /// What the relay gave does not open or does not match the message: refused.
    #[error("{0} as the relay gave it is damaged or was changed: refused, nothing was written")]
    Tampered(String),
    /// The destination exists.
    #[error("{0} exists; give another path")]
    Exists(PathBuf),
    /// The destination cannot be written.
    #[error("cannot write {path}: {reason}")]
    Unwritable {
        /// The path.
        path: PathBuf,
        /// What the system said.
        reason: String,
    },
}

/// A file in the history, as `chorus files` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// The conversation.
    pub contact: String,
    /// Sent by us.
    pub outgoing: bool,
    /// The sender's clock.
    pub sent_ms: i64,
    /// The message's text (a caption, maybe empty).
    pub caption: String,
    /// The file.
    #[serde(flatten)]
    pub file: FileInfo,
}

impl Device {
    /// Sends the file at `path` to `contact`, with `caption` (maybe empty): encrypts
    /// and uploads it part by part (`on_progress(bytes done, bytes in all)` after each),
    /// then sends the message that carries its key. Refused before anything is
    /// uploaded: an unknown contact, a file over [`MAX_FILE_LEN`], a name that cannot
    /// travel.
    pub async fn send_file(
        &self,
        contact: &str,
        path: &Path,
        caption: &str,
        on_progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<SendOutcome, ClientError> {
        let contact = self.resolve_contact(contact).await?;
        if self
            .store
            .contact_row(self.store.pool(), &contact)
            .await?
            .is_none()
        {
            return Err(ClientError::UnknownContact(contact));
        }
        chorus_wire::check_caption(caption)?;
        let (mut reader, size, name) = open_to_send(path)?;
        let media_type = match mime_guess::from_path(path).first() {
            Some(m) if m.essence_str().len() <= MAX_MEDIA_TYPE_LEN => m.essence_str().to_owned(),
            _ => "application/octet-stream".to_owned(),
        };
        let key = FileKey::generate(&mut self.rng());
        let locator: [u8; 32] = self.random();
        let parts = chorus_wire::parts_of(size);
        let ask = self.now().saturating_add(FILE_KEEP_MS);
        let (mut digest, mut done, mut expires_ms) = (FileDigest::new(), 0u64, ask);
        let mut buf = Zeroizing::new(Vec::with_capacity(FILE_PART_LEN + 16));
        for part in 0..parts {
            buf.clear();
            let read = (&mut reader)
                .take(FILE_PART_LEN as u64)
                .read_to_end(&mut buf)
                .map_err(|e| unreadable(path, &e))?;
            let last = part + 1 == parts;
            if (!last && read != FILE_PART_LEN) || (last && done + read as u64 != size) {
                return Err(FileError::Changed(path.to_owned()).into());
            }
            digest.update(&buf);
            key.seal_part(&locator, part, last, &mut buf)
                .map_err(|_| ClientError::Corrupt("a file part".into()))?;
            let put = self
                .relay
                .put_file_part(Id32(locator), part, buf.to_vec(), ask)
                .await?;
            expires_ms = expires_ms.min(put.expires_ms);
            done += read as u64;
            on_progress(done, size);
        }
        // Anything after the size we read first: the file changed under us.
        if reader
            .read(&mut [0u8; 1])
            .map_err(|e| unreadable(path, &e))?
            != 0
        {
            return Err(FileError::Changed(path.to_owned()).into());
        }
        let file = Attachment {
            relay_url: self.me().relay_url.clone(),
            locator,
            key: key.to_bytes(),
            digest: digest.finish(),
            name,
            size,
            media_type,
            expires_ms: u64::try_from(expires_ms).unwrap_or(0),
        };
        let envelope_id = self.queue(&contact, caption, Some(file)).await?;
        self.send_queued(envelope_id).await
    }

    /// Every file in the history (of every conversation), newest first.
    pub async fn files(&self) -> Result<Vec<FileEntry>, ClientError> {
        self.expire_messages().await?;
        // Contact, outgoing, envelope id, sent, sealed body.
        type Row = (String, bool, Vec<u8>, i64, Vec<u8>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT contact, outgoing, envelope_id, sent_ms, sealed FROM messages
             ORDER BY sent_ms DESC, id DESC",
        )
        .fetch_all(self.store.pool())
        .await?;
        let mut out = Vec::new();
        for (contact, outgoing, envelope_id, sent_ms, sealed) in rows {
            let (caption, file) = self.open_message(&contact, outgoing, &envelope_id, &sealed)?;
            if let Some(file) = file {
                out.push(FileEntry {
                    file: FileInfo::of(&envelope_id, &file),
                    contact,
                    outgoing,
                    sent_ms,
                    caption,
                });
            }
        }
        Ok(out)
    }

    /// Fetches file `id` (as [`Self::files`] shows it, or a unique start of it of at
    /// least [`MIN_FILE_ID_LEN`] digits), checks it and writes it to `dest` — into it,
    /// under the file's name (a leading dot made `_`), if `dest` is a directory. Never
    /// replaces a file, and
    /// writes nothing unless the whole file checked out. Returns where it went.
    pub async fn save_file(
        &self,
        id: &str,
        dest: &Path,
        on_progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<PathBuf, ClientError> {
        let file = self.find_file(id).await?;
        let dest = match dest.is_dir() {
            true => dest.join(on_disk(&file.name)),
            false => dest.to_owned(),
        };
        if dest.exists() {
            return Err(FileError::Exists(dest).into());
        }
        if u64::try_from(self.now()).unwrap_or(0) >= file.expires_ms {
            return Err(expired(&file));
        }
        let relay = RelayClient::foreign(&file.relay_url, self.options.backoff, self.url_policy())?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let unwritable = |e: std::io::Error| FileError::Unwritable {
            path: dest.clone(),
            reason: e.to_string(),
        };
        // Beside the destination, so the final move is a rename; deleted if dropped.
        let mut out = tempfile::Builder::new()
            .prefix(".chorus-save-")
            .tempfile_in(&dir)
            .map_err(unwritable)?;
        let key = FileKey::from_bytes(&file.key);
        let parts = file.parts();
        let (mut digest, mut done) = (FileDigest::new(), 0u64);
        let tampered = || ClientError::from(FileError::Tampered(file.name.clone()));
        for part in 0..parts {
            let mut buf = Zeroizing::new(match relay.file_part(Id32(file.locator), part).await {
                Ok(b) => b,
                Err(e) => return Err(fetch_error(&file, e, self.now())),
            });
            let last = part + 1 == parts;
            key.open_part(&file.locator, part, last, &mut buf)
                .map_err(|_| tampered())?;
            let expected = match last {
                false => FILE_PART_LEN as u64,
                true => file.size - done,
            };
            if buf.len() as u64 != expected {
                return Err(tampered());
            }
            digest.update(&buf);
            out.write_all(&buf).map_err(unwritable)?;
            done += expected;
            on_progress(done, file.size);
        }
        if digest.finish() != file.digest {
            return Err(tampered());
        }
        out.as_file().sync_all().map_err(unwritable)?;
        // `persist_noclobber`: a file that appeared meanwhile is not replaced either.
        out.persist_noclobber(&dest)
            .map_err(|e| match e.error.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    ClientError::from(FileError::Exists(dest.clone()))
                }
                _ => unwritable(e.error).into(),
            })?;
        Ok(dest)
    }

    /// The attachment of the file whose id starts with `id`.
    async fn find_file(&self, id: &str) -> Result<Attachment, ClientError> {
        let id = id.trim().to_ascii_lowercase();
        if id.len() < MIN_FILE_ID_LEN || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(FileError::Unknown(id).into());
        }
        self.expire_messages().await?;
        let rows: Vec<(String, bool, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT contact, outgoing, envelope_id, sealed FROM messages
             WHERE substr(lower(hex(envelope_id)), 1, $2) = $1",
        )
        .bind(&id)
        .bind(i64::try_from(id.len()).unwrap_or(32))
        .fetch_all(self.store.pool())
        .await?;
        let mut found = Vec::new();
        for (contact, outgoing, envelope_id, sealed) in rows {
            if let (_, Some(file)) = self.open_message(&contact, outgoing, &envelope_id, &sealed)? {
                found.push(file);
            }
        }
        match found.len() {
            0 => Err(FileError::Unknown(id).into()),
            1 => Ok(found.remove(0)),
            _ => Err(FileError::Ambiguous(id).into()),
        }
    }

    fn open_message(
        &self,
        contact: &str,
        outgoing: bool,
        envelope_id: &[u8],
        sealed: &[u8],
    ) -> Result<(String, Option<Attachment>), ClientError> {
        let opened = self.store.open_sealed(
            "message",
            &row::message(envelope_id, contact, outgoing),
            sealed,
        )?;
        body::decode(&opened)
    }
}

/// Opens a file to send: a regular file within [`MAX_FILE_LEN`], whose name can
/// travel. Returns the reader, its size and its name.
fn open_to_send(path: &Path) -> Result<(std::fs::File, u64, String), ClientError> {
    let file = std::fs::File::open(path).map_err(|e| unreadable(path, &e))?;
    let meta = file.metadata().map_err(|e| unreadable(path, &e))?;
    if !meta.is_file() {
        return Err(FileError::Unreadable {
            path: path.to_owned(),
            reason: "not a file".into(),
        }
        .into());
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            max: MAX_FILE_LEN,
        }
        .into());
    }
    let bad_name = |reason: String| FileError::BadName {
        path: path.to_owned(),
        reason,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad_name("is not UTF-8".into()))?;
    let name = normalize_display_name(name);
    check_file_name("file name", &name).map_err(|e| bad_name(e.to_string()))?;
    Ok((file, meta.len(), name))
}

/// The sender's name for a file as the name to save it under in a directory: a
/// leading dot becomes `_`, so a contact's file cannot arrive hidden, or as one of the
/// directory's configuration files (a `.profile` saved into a home directory that has
/// none would run at the next login). Anything else was checked on arrival
/// (`chorus_wire::check_file_name`: one plain name, nothing invisible).
fn on_disk(name: &str) -> String {
    match name.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => name.to_owned(),
    }
}

fn unreadable(path: &Path, e: &std::io::Error) -> ClientError {
    FileError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    }
    .into()
}

fn expired(file: &Attachment) -> ClientError {
    FileError::Expired {
        name: file.name.clone(),
        expires_ms: file.expires_ms,
    }
    .into()
}

/// What a failed fetch means: a relay that says the file expired, or does not have it
/// after its time, has deleted it; before its time it has lost it.
fn fetch_error(file: &Attachment, e: crate::RelayError, now: i64) -> ClientError {
    let due = u64::try_from(now).unwrap_or(0) >= file.expires_ms;
    match e.code() {
        Some("expired") => expired(file),
        Some("not_found") if due => expired(file),
        Some("not_found") => FileError::Missing(file.name.clone()).into(),
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str) -> crate::RelayError {
        crate::RelayError::Refused {
            url: "http://relay".into(),
            status: 404,
            code: code.into(),
        }
    }

    /// The relay's answers to a part fetch as the reader is told them (the CLI test
    /// reaches expiry through the message's own time first, so the relay's `410` and a
    /// `404` after the time are checked here).
    #[test]
    fn a_relay_that_deleted_a_file_says_expired_and_one_that_lost_it_says_missing() {
        let file = Attachment {
            relay_url: "http://relay".into(),
            locator: [1; 32],
            key: Zeroizing::new([2; 32]),
            digest: [3; 32],
            name: "a.txt".into(),
            size: 1,
            media_type: "text/plain".into(),
            expires_ms: 1_000,
        };
        let says = |code, now| fetch_error(&file, refused(code), now);
        assert!(matches!(
            says("expired", 500),
            ClientError::File(FileError::Expired { .. })
        ));
        assert!(matches!(
            says("not_found", 1_000),
            ClientError::File(FileError::Expired { .. })
        ));
        assert!(matches!(
            says("not_found", 999),
            ClientError::File(FileError::Missing(_))
        ));
        assert!(matches!(says("rate_limited", 500), ClientError::Relay(_)));
    }

    #[test]
    fn a_leading_dot_is_made_visible_and_nothing_else_changes() {
        assert_eq!(on_disk(".profile"), "_profile");
        assert_eq!(on_disk("..x"), "_.x");
        assert_eq!(on_disk("notes.txt"), "notes.txt");
    }
}
