//! Contacts: invitations, accepting them, adding by address, first sessions,
//! listing, read markers and safety numbers.

use chorus_core::{Recipient, initiate, sent_event};
use chorus_crypto::{Fingerprint, InvitationSecret, SafetyNumber};
use chorus_relay_api::Id32;
use chorus_wire::{
    ContactDetails, EventKind, Hello, IdentityKeys, Invitation, MailboxId, Payload, PrekeyBundle,
    SecretBytes, SignedPrekey, check_display_name, normalize_display_name,
};

use super::{ContactInfo, Device, Introduction, SendOutcome, Verification};
use crate::code::Code;
use crate::log::{APPEND_ATTEMPTS, Appended, PREKEY_STREAM, Pending, session_stream};
use crate::prekeys::{Generator, Purpose};
use crate::relay::{MailboxUse, RelayClient};
use crate::store::contacts::contact_named_by;
use crate::store::log_state::session_stream_version;
use crate::store::prekeys as store_prekeys;
use crate::{ClientError, code};

/// How long we ask our relay to keep an invitation (it keeps it no longer than it
/// keeps files). The one-time prekeys it names are kept as long as they are unused.
pub const INVITATION_KEEP_MS: i64 = 30 * 24 * 3600 * 1000;

impl Device {
    /// Creates an invitation code: the identity's keys, the current signed prekey, a
    /// fresh one-time X25519 and ML-KEM prekey, and a fresh one-time mailbox for the
    /// answer. The private halves and the mailbox are in the log before the code exists,
    /// so any device of the identity can answer. The invitation is sealed under a fresh
    /// secret and stored on our relay; the code (`code::encode_short`) carries only the
    /// relay and the secret.
    pub async fn invite(&self) -> Result<String, ClientError> {
        let me = self.me();
        let root = me.identity.root().ok_or(ClientError::NotPrimary(
            "create invitations (prekeys are root-signed)",
        ))?;
        let mailbox = Id32(self.random());
        self.relay
            .register_mailbox(mailbox, MailboxUse::Invitation)
            .await?;
        self.sync_log().await?;
        for _ in 0..APPEND_ATTEMPTS {
            let mut conn = self.store.pool().acquire().await?;
            let (signed, _) = store_prekeys::current_directory_keys(&mut conn).await?;
            let signed = signed.ok_or_else(|| ClientError::Corrupt("no signed prekey".into()))?;
            let next_id = store_prekeys::next_prekey_id(&mut conn).await?;
            let mut keys =
                Generator::new(next_id, root, &*self.options.entropy, Purpose::Invitation);
            drop(conn);
            let bundle = PrekeyBundle {
                identity: self.me().identity.keys().clone(),
                signed_prekey: SignedPrekey::decode(&signed, &self.me().identity.keys().root)?,
                one_time_prekey: Some(keys.one_time()?),
                pq_prekey: keys.pq(false)?,
            };
            let events = keys
                .into_events(Some(mailbox.0))
                .into_iter()
                .map(|k| Pending::guarded(k, PREKEY_STREAM.to_vec(), None))
                .collect();
            if self.append(events).await?.0 == Appended::Done {
                let invitation = Invitation {
                    bundle,
                    relay_url: self.me().relay_url.clone(),
                    mailbox: MailboxId(mailbox.0),
                    name: Some(self.me().name.clone()),
                };
                return self.publish_invitation(&invitation).await;
            }
        }
        Err(ClientError::Contended)
    }

    /// Accepts an invitation code: starts the session and sends our hello (our mailbox
    /// for them) to the invitation's mailbox. Returns the contact's alias.
    pub async fn accept(
        &self,
        code_text: &str,
        alias: Option<&str>,
    ) -> Result<(String, SendOutcome), ClientError> {
        let invitation = match code::decode(code_text)? {
            Code::Full(invitation) => *invitation,
            Code::Short { relay_url, secret } => self.fetch_invitation(&relay_url, &secret).await?,
        };
        if let Some(contact) = self
            .store
            .contact_by_invitation(&invitation.mailbox.0)
            .await?
        {
            return Err(ClientError::AlreadyAccepted { contact });
        }
        let relay_url = self.url_policy().check(&invitation.relay_url)?;
        let suggested = invitation.name.clone();
        let (contact, outcome) = self
            .establish(
                &invitation.bundle,
                alias.map(str::to_owned).or(suggested),
                relay_url,
                invitation.mailbox,
                Some(invitation.mailbox),
            )
            .await?;
        let standing = self
            .store
            .contact_standing(self.store.pool(), &contact)
            .await?;
        match standing.and_then(|(_, failed)| failed) {
            Some(_) => Err(ClientError::InvitationSpent { contact }),
            None => Ok((contact, outcome)),
        }
    }

    /// Seals `invitation` under a fresh secret, stores it on our relay for
    /// [`INVITATION_KEEP_MS`] (or as long as the relay keeps files), and returns the
    /// short code that finds and opens it.
    async fn publish_invitation(&self, invitation: &Invitation) -> Result<String, ClientError> {
        let secret = InvitationSecret::generate(&mut self.rng());
        let locator = secret.locator();
        let mut sealed = invitation.encode();
        secret
            .key()
            .seal_part(&locator, 0, true, &mut sealed)
            .map_err(|_| ClientError::Corrupt("an invitation".into()))?;
        let until = self.now().saturating_add(INVITATION_KEEP_MS);
        self.relay
            .put_file_part(Id32(locator), 0, sealed, until)
            .await?;
        Ok(code::encode_short(&invitation.relay_url, &secret))
    }

    /// The invitation a short code names: fetched from the relay the code names (a
    /// relay someone else named: checked like any), opened under the code's secret.
    async fn fetch_invitation(
        &self,
        relay_url: &str,
        secret: &InvitationSecret,
    ) -> Result<Invitation, ClientError> {
        let relay = RelayClient::foreign(relay_url, self.options.backoff, self.url_policy())?;
        let locator = secret.locator();
        let mut sealed = relay
            .file_part(Id32(locator), 0)
            .await
            .map_err(|e| match e.code() {
                Some("not_found" | "expired") => ClientError::BadCode {
                    reason: "its invitation is no longer on its relay (it expired); ask for a new one",
                },
                _ => ClientError::Relay(e),
            })?;
        secret
            .key()
            .open_part(&locator, 0, true, &mut sealed)
            .map_err(|_| ClientError::BadCode {
                reason: "its relay gave something other than the invitation it names",
            })?;
        Ok(Invitation::decode(&sealed)?)
    }

    /// Adds a contact by address (`fingerprint@relay`) through the relay's prekey
    /// directory, and sends our hello to their intro mailbox.
    pub async fn add_contact(
        &self,
        address: &str,
        alias: Option<&str>,
    ) -> Result<(String, SendOutcome), ClientError> {
        let intro = Introduction::fetch(address, self.options.backoff, self.url_policy()).await?;
        let fallback = format!("contact-{}", &intro.address.digits[..5]);
        self.establish(
            &intro.bundle,
            Some(alias.map_or(fallback, str::to_owned)),
            intro.address.relay_url,
            intro.mailbox,
            None,
        )
        .await
    }

    pub(crate) async fn establish(
        &self,
        bundle: &PrekeyBundle,
        alias: Option<String>,
        relay_url: String,
        send_mailbox: MailboxId,
        invitation: Option<MailboxId>,
    ) -> Result<(String, SendOutcome), ClientError> {
        if bundle.identity.root == self.me().identity.keys().root {
            return Err(ClientError::OwnIdentity);
        }
        let root = *bundle.identity.root.as_bytes();
        let known = contact_named_by(self.store.pool(), &root).await?;
        if let Some(name) = known {
            // A contact who never answered (or never can: their invitation had been
            // used) does not block a new introduction: its session is replaced.
            let standing = self
                .store
                .contact_standing(self.store.pool(), &name)
                .await?;
            return match standing {
                Some((false, _) | (_, Some(_))) => {
                    let mut conn = self.store.pool().acquire().await?;
                    let at = session_stream_version(&mut conn, &self.store, &root).await?;
                    drop(conn);
                    self.start_session(bundle, name, relay_url, send_mailbox, invitation, at)
                        .await
                }
                _ => Err(ClientError::AlreadyContact { contact: name }),
            };
        }
        let alias = alias.map_or_else(
            || {
                format!(
                    "contact-{}",
                    &Fingerprint::of(&bundle.identity.root).digits()[..5]
                )
            },
            |a| normalize_display_name(&a),
        );
        check_display_name("contact name", &alias)?;
        if self
            .store
            .contact_row(self.store.pool(), &alias)
            .await?
            .is_some()
        {
            return Err(ClientError::ContactNameTaken(alias));
        }
        // A new contact's stream is at 0, or where a removal of them left it.
        let mut conn = self.store.pool().acquire().await?;
        let at =
            session_stream_version(&mut conn, &self.store, bundle.identity.root.as_bytes()).await?;
        drop(conn);
        self.start_session(bundle, alias, relay_url, send_mailbox, invitation, at)
            .await
    }

    /// Initiates a session with `bundle`'s identity and sends our hello on it: a new
    /// contact `alias` (`at` 0), or a replacement of the session of the known
    /// contact `alias` (`at`: its session stream's version).
    pub(super) async fn start_session(
        &self,
        bundle: &PrekeyBundle,
        alias: String,
        relay_url: String,
        send_mailbox: MailboxId,
        invitation: Option<MailboxId>,
        at: i64,
    ) -> Result<(String, SendOutcome), ClientError> {
        let mut session = initiate(&self.me().identity, bundle, &mut self.rng())?;
        let snapshot = session.snapshot();
        let recv = Id32(self.random());
        self.relay
            .register_mailbox(recv, MailboxUse::Contact)
            .await?;
        let now = self.now();
        let payload = Payload {
            sent_ms: u64::try_from(now).unwrap_or(0),
            text: String::new(),
            hello: Some(self.hello(&recv.0)),
            rolls: Vec::new(),
            roll_seen: None,
            name: None,
            timer: None,
            file: None,
        }
        .encode()?;
        let (message, delta) = session.encrypt_escrowed(&payload, &mut self.rng())?;
        let envelope_id: [u8; 16] = self.random();
        let root = *bundle.identity.root.as_bytes();
        let stream = session_stream(&root);
        let created = EventKind::ContactUpserted {
            contact: root,
            name: alias.clone(),
            details: Some(Box::new(ContactDetails {
                identity: bundle.identity.clone(),
                relay_url: relay_url.clone(),
                send_mailbox: send_mailbox.0,
                recv_mailbox: recv.0,
                invitation: invitation.map(|m| m.0),
                session: SecretBytes::new(snapshot.to_vec()),
                first: None,
                consumed_prekeys: Vec::new(),
                added_ms: u64::try_from(now).unwrap_or(0),
                read_only: false,
            })),
        };
        let to = Recipient {
            root,
            relay_url: &relay_url,
            mailbox: send_mailbox.0,
        };
        let now_ms = u64::try_from(now).unwrap_or(0);
        let sent = sent_event(&to, envelope_id, &message, now_ms, ("", None), &delta);
        let (outcome, _) = self
            .append(vec![
                Pending::guarded(created, stream.clone(), Some(at)),
                Pending::guarded(sent, stream, Some(at + 1)),
            ])
            .await?;
        let folded = contact_named_by(self.store.pool(), &root).await?;
        let alias = match (outcome, folded) {
            (Appended::Done, Some(name)) => name,
            (_, Some(contact)) => return Err(ClientError::AlreadyContact { contact }),
            (_, None) => return Err(ClientError::Contended),
        };
        let queued = self.flush_one(&envelope_id).await;
        Ok((
            alias,
            SendOutcome {
                envelope_id,
                queued,
                forwarded_to: None,
            },
        ))
    }

    /// Our hello for a contact: where to write to us.
    pub(super) fn hello(&self, recv_mailbox: &[u8; 32]) -> Hello {
        Hello {
            relay_url: self.me().relay_url.clone(),
            mailbox: MailboxId(*recv_mailbox),
            name: self.me().name.clone(),
        }
    }

    /// The contact a name given by the user means: the alias itself, or else the one
    /// alias equal to it ignoring case (`bob` finds "Bob"). Several such aliases are
    /// [`ClientError::AmbiguousContact`], none is [`ClientError::UnknownContact`].
    pub async fn resolve_contact(&self, given: &str) -> Result<String, ClientError> {
        let names = self.store.contact_names().await?;
        if names.iter().any(|n| n == given) {
            return Ok(given.to_owned());
        }
        let wanted = normalize_display_name(given).to_lowercase();
        let mut candidates: Vec<String> = names
            .into_iter()
            .filter(|n| n.to_lowercase() == wanted)
            .collect();
        match candidates.len() {
            0 => Err(ClientError::UnknownContact(given.to_owned())),
            1 => Ok(candidates.remove(0)),
            _ => Err(ClientError::AmbiguousContact {
                given: given.to_owned(),
                candidates,
            }),
        }
    }

    /// The contacts, by name.
    pub async fn contacts(&self) -> Result<Vec<ContactInfo>, ClientError> {
        self.expire_messages().await?;
        let listed = self.store.contact_list().await?;
        let mut conn = self.store.pool().acquire().await?;
        let mut contacts = Vec::with_capacity(listed.len());
        for (name, identity, relay_url, connected, added_ms, unread, failed, compromised) in listed
        {
            let keys = IdentityKeys::decode(&identity)?;
            // Marks are kept under the contact's root (its id here), which a roll of
            // theirs does not change; `keys` are the identity it has now.
            let (blocked, verified, timer) = match self.store.contact_row(&mut *conn, &name).await?
            {
                Some(row) => (
                    self.is_blocked(&mut conn, &row.root).await?,
                    self.is_verified(&mut conn, &row.root, &keys).await?,
                    super::timer::held_timer(&mut conn, &row.root).await?,
                ),
                None => (false, false, None),
            };
            contacts.push(ContactInfo {
                name,
                fingerprint: Fingerprint::of(&keys.root).to_string(),
                relay_url,
                connected,
                added_ms,
                unread,
                failed,
                compromised,
                blocked,
                verified,
                disappearing_secs: timer.map_or(0, |t| t.secs),
            });
        }
        Ok(contacts)
    }

    /// Renames contact `given` to `new_name` on every device of the identity: a rename
    /// in the log (`ContactUpserted` without details), the last writer wins. Returns the
    /// old and the new name. A name that is empty, too long ([`check_display_name`]) or
    /// another contact's (ignoring case) is refused, and nothing changes.
    pub async fn rename_contact(
        &self,
        given: &str,
        new_name: &str,
    ) -> Result<(String, String), ClientError> {
        let to = normalize_display_name(new_name);
        check_display_name("contact name", &to)?;
        // The names as every device has them now: a sibling may have renamed since.
        self.sync_log().await?;
        let from = self.resolve_contact(given).await?;
        let wanted = to.to_lowercase();
        if let Some(other) = self
            .store
            .contact_names()
            .await?
            .into_iter()
            .find(|n| *n != from && n.to_lowercase() == wanted)
        {
            return Err(ClientError::NameInUse(other));
        }
        if from == to {
            return Ok((from, to));
        }
        let root = self.contact_root(&from).await?;
        self.append(vec![Pending::free(EventKind::ContactUpserted {
            contact: root,
            name: to.clone(),
            details: None,
        })])
        .await?;
        // A sibling gave the name to another contact meanwhile: the fold kept the old one.
        match contact_named_by(self.store.pool(), &root).await? {
            Some(now) if now == to => Ok((from, to)),
            _ => Err(ClientError::NameInUse(to)),
        }
    }

    /// Removes contact `given` and the conversation from every device of the identity (a
    /// `ContactRemoved` event, guarded on the contact's session stream: a send to them
    /// at the same moment either comes before it or is refused). Their later messages
    /// are not read; to talk again, exchange a new invitation (or they write to your
    /// address, a message request). A block stays. Returns the name they had.
    pub async fn remove_contact(&self, given: &str) -> Result<String, ClientError> {
        self.sync_log().await?;
        let name = self.resolve_contact(given).await?;
        let root = self.contact_root(&name).await?;
        self.append(vec![Pending::guarded(
            EventKind::ContactRemoved { contact: root },
            session_stream(&root),
            None,
        )])
        .await?;
        Ok(name)
    }

    /// Blocks (`blocked`) or unblocks contact `given` on every device of the identity (a
    /// `Blocked` register in the log, the last writer wins). While blocked, every device
    /// drops the contact's messages (their sessions still read them, so unblocking takes
    /// the conversation up where it is) and refuses their first messages to a new
    /// invitation or to the address. Returns the contact's name and whether this changed
    /// anything (it was not already so).
    pub async fn block_contact(
        &self,
        given: &str,
        blocked: bool,
    ) -> Result<(String, bool), ClientError> {
        self.sync_log().await?;
        let name = self.resolve_contact(given).await?;
        let root = self.contact_root(&name).await?;
        let mut conn = self.store.pool().acquire().await?;
        let already = self.is_blocked(&mut conn, &root).await? == blocked;
        drop(conn);
        if already {
            return Ok((name, false));
        }
        self.append(vec![Pending::free(EventKind::Blocked {
            contact: root,
            blocked,
        })])
        .await?;
        Ok((name, true))
    }

    /// Marks contact `given` verified (`mark`) for the identity it has now, or removes
    /// the mark, on every device of the identity (a `Verified` register in the log, the
    /// last writer wins). The mark names the identity root whose safety number was
    /// compared: once the contact's identity rolls to another, no device shows it
    /// verified until it is compared and marked again. Returns the contact's name and
    /// whether this changed anything.
    pub async fn mark_verified(
        &self,
        given: &str,
        mark: bool,
    ) -> Result<(String, bool), ClientError> {
        self.sync_log().await?;
        let name = self.resolve_contact(given).await?;
        let root = self.contact_root(&name).await?;
        let keys = self.contact_identity_keys(&name).await?;
        let mut conn = self.store.pool().acquire().await?;
        let already = self.is_verified(&mut conn, &root, &keys).await? == mark;
        drop(conn);
        if already {
            return Ok((name, false));
        }
        self.append(vec![Pending::free(EventKind::Verified {
            contact: root,
            root: mark.then(|| *keys.root.as_bytes()),
        })])
        .await?;
        Ok((name, true))
    }

    /// Whether contact `root` is marked verified for the identity `keys` it has now.
    async fn is_verified(
        &self,
        conn: &mut sqlx::SqliteConnection,
        root: &[u8; 32],
        keys: &IdentityKeys,
    ) -> Result<bool, ClientError> {
        let value =
            crate::store::log_state::register(&mut *conn, &chorus_core::verified_register(root))
                .await?;
        Ok(value.as_deref() == Some(keys.root.as_bytes().as_slice()))
    }

    /// The root key of the contact called `name` exactly.
    pub(super) async fn contact_root(&self, name: &str) -> Result<[u8; 32], ClientError> {
        Ok(self
            .store
            .contact_row(self.store.pool(), name)
            .await?
            .ok_or_else(|| ClientError::UnknownContact(name.to_owned()))?
            .root)
    }

    /// Marks every message from `contact` received so far as read — on every device of
    /// the identity (a `Read` event in the log; the marker only moves forward).
    pub async fn mark_read(&self, contact: &str) -> Result<(), ClientError> {
        let contact = &self.resolve_contact(contact).await?;
        let (root, read, newest) = self
            .store
            .read_state(contact)
            .await?
            .ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?;
        let Some(newest) = newest.filter(|n| *n > read) else {
            return Ok(());
        };
        let contact: [u8; 32] = root
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::Corrupt("contact key".into()))?;
        self.append(vec![Pending::free(EventKind::Read {
            contact,
            up_to: u64::try_from(newest).unwrap_or(0),
        })])
        .await?;
        Ok(())
    }

    /// Safety numbers for a contact.
    pub async fn verify(&self, contact: &str) -> Result<Verification, ClientError> {
        let contact = &self.resolve_contact(contact).await?;
        let (identity, rival) = self
            .store
            .contact_identity(contact)
            .await?
            .ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?;
        let theirs = IdentityKeys::decode(&identity)?;
        let me = self.me();
        let ours = &me.identity.keys().root;
        let rival = rival
            .map(|r| IdentityKeys::decode(&r))
            .transpose()?
            .map(|r| SafetyNumber::new(ours, &r.root));
        let root = self.contact_root(contact).await?;
        let mut conn = self.store.pool().acquire().await?;
        let verified = self.is_verified(&mut conn, &root, &theirs).await?;
        Ok(Verification {
            ours: Fingerprint::of(ours),
            theirs: Fingerprint::of(&theirs.root),
            safety_number: SafetyNumber::new(ours, &theirs.root),
            rival,
            verified,
        })
    }
}
