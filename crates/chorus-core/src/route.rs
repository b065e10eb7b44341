//! Where an envelope that arrived in one of the identity's mailboxes goes: the
//! receive decision, taken here once for every device.
//!
//! The client reads an envelope, decodes its kind and says what it knows — the kind
//! of mailbox and the contact it belongs to (or that spent it), and for a first
//! message whether its claimed sender is blocked or already a contact, facts it reads
//! in the transaction that will store the result. [`route`] decides; the client does
//! what it is told: decrypt on that contact's session, hold a message request, make a
//! contact through the log, or refuse.
//!
//! A first message's sender is *claimed*, not yet authenticated (the handshake has not
//! run): enough to drop it — blocked, or an invitation someone else already used —
//! never to accept it. Accepting happens only after the handshake authenticates the
//! sender ([`crate::respond`]), and a new contact only through the log, guarded, so
//! that when several devices read the same first message exactly one creation wins.
//!
//! A blocked identity reaches us nowhere: its first messages are refused in every
//! mailbox (a new invitation, the address, or its own contact mailbox, where a new
//! handshake would make us answer it), and what its session reads is dropped
//! ([`delivery`]).

/// The kinds of mailbox an identity reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxKind {
    /// Made for one contact: they write ratchet messages (and a new handshake) here.
    Contact,
    /// One of our invitations: whoever answers it first becomes a contact at once.
    Invitation,
    /// The identity's public address: strangers write here and are held as requests.
    Intro,
}

impl MailboxKind {
    /// The kind as a store names it (`contact`, `invitation`, `intro`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "contact" => Some(Self::Contact),
            "invitation" => Some(Self::Invitation),
            "intro" => Some(Self::Intro),
            _ => None,
        }
    }
}

/// What arrived, with the facts the decision needs about its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrived<'a> {
    /// A ratchet message: only a contact's mailbox takes one.
    Ratchet,
    /// A first message (a handshake), from a claimed identity.
    Initial {
        /// The claimed sender is blocked.
        blocked: bool,
        /// The claimed sender is already a contact, under this alias.
        known: Option<&'a str>,
    },
}

/// What to do with an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Decrypt it on this contact's session (a new handshake from a known contact
    /// included: `chorus_core::handshakes` settles it there).
    Session(String),
    /// Someone answering one of our invitations: open the handshake and propose the
    /// contact to the log.
    NewContact,
    /// A stranger at our address: held as a message request on this device.
    Request,
    /// Refused; the mailbox's cursor moves past it.
    Refused(Refusal),
}

/// Why an envelope is refused, and who is at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The store names no contact for one of its contact mailboxes (our fault: a
    /// corrupt store).
    #[error("a contact mailbox with no contact")]
    OwnerMissing,
    /// The sender's: ratchet messages go to a contact's own mailbox.
    #[error("a ratchet message in an introduction mailbox")]
    RatchetInIntroduction,
    /// The sender is blocked.
    #[error("a first message from a blocked identity")]
    Blocked,
    /// The invitation was answered already, by someone else.
    #[error("this invitation was already used")]
    InvitationUsed,
}

/// Decides where an envelope that arrived in a mailbox of `kind` goes; `owner` is the
/// contact the store names for the mailbox (the one it was made for, or the one that
/// spent an invitation).
pub fn route(kind: MailboxKind, owner: Option<&str>, arrived: Arrived<'_>) -> Route {
    match (kind, arrived) {
        (_, Arrived::Initial { blocked: true, .. }) => Route::Refused(Refusal::Blocked),
        (MailboxKind::Contact, _) => match owner {
            Some(owner) => Route::Session(owner.to_owned()),
            None => Route::Refused(Refusal::OwnerMissing),
        },
        (MailboxKind::Invitation | MailboxKind::Intro, Arrived::Ratchet) => {
            Route::Refused(Refusal::RatchetInIntroduction)
        }
        (
            _,
            Arrived::Initial {
                known: Some(alias), ..
            },
        ) => Route::Session(alias.to_owned()),
        (_, Arrived::Initial { known: None, .. }) if owner.is_some() => {
            Route::Refused(Refusal::InvitationUsed)
        }
        (MailboxKind::Intro, Arrived::Initial { known: None, .. }) => Route::Request,
        (MailboxKind::Invitation, Arrived::Initial { known: None, .. }) => Route::NewContact,
    }
}

/// What becomes of a message a contact's session has read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Into the history, and shown.
    Show,
    /// Dropped: kept nowhere, shown nowhere.
    Drop,
}

/// Decides what becomes of a message from a contact that its session read: dropped
/// while the contact is blocked (`blocked`, the register as this device folded it from
/// the identity's log, so every device decides alike). The session still reads it —
/// its keys move on, and the contact's new route or identity roll is taken — so that
/// unblocking takes the conversation up where it is; what was sent while blocked stays
/// dropped.
pub fn delivery(blocked: bool) -> Delivery {
    match blocked {
        true => Delivery::Drop,
        false => Delivery::Show,
    }
}

/// Why taking an envelope failed, as far as the decision below needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A reply built on a ratchet key this device has not folded yet (a sibling's send
    /// whose record it has not read).
    UnknownParent,
    /// Its message key was used already: the envelope was taken before (typically a
    /// first message a sibling turned into the contact, whose session came from the
    /// log), or is past the window of skipped keys.
    AlreadyTaken,
    /// This device could not read or write its own state, or reach its relay: nothing
    /// is decided yet.
    Transient,
    /// The envelope (or what it asked for) is bad and will stay bad.
    Bad,
}

impl Failure {
    /// The failure a session's refusal to decrypt is.
    pub fn of_session(e: &crate::SessionError) -> Self {
        match e {
            crate::SessionError::UnknownParent => Self::UnknownParent,
            crate::SessionError::DuplicateOrExpired { .. } => Self::AlreadyTaken,
            _ => Self::Bad,
        }
    }
}

/// What to do after a failure to take an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Fold the log and try the same envelope once more.
    FoldAndRetry,
    /// Move the cursor past it and say nothing (it was taken before).
    Skip,
    /// Move the cursor past it and report it refused: a refusal never blocks the
    /// envelopes behind it.
    Reject,
    /// Stop, moving nothing: the same envelope is taken again on the next read.
    Stop,
}

/// Decides what follows a failure; `folded` says whether the log was already folded
/// for this envelope (a retry happens once).
pub fn after_failure(failure: Failure, folded: bool) -> Next {
    match failure {
        Failure::UnknownParent if !folded => Next::FoldAndRetry,
        Failure::AlreadyTaken => Next::Skip,
        Failure::Transient => Next::Stop,
        Failure::UnknownParent | Failure::Bad => Next::Reject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [MailboxKind; 3] = [
        MailboxKind::Contact,
        MailboxKind::Invitation,
        MailboxKind::Intro,
    ];

    fn initial(blocked: bool, known: Option<&str>) -> Arrived<'_> {
        Arrived::Initial { blocked, known }
    }

    #[test]
    fn a_contact_mailbox_goes_to_its_owner_whatever_arrives_but_a_blocked_first_message() {
        for arrived in [
            Arrived::Ratchet,
            initial(false, None),
            initial(false, Some("carol")),
        ] {
            assert_eq!(
                route(MailboxKind::Contact, Some("bob"), arrived),
                Route::Session("bob".into()),
                "{arrived:?}"
            );
            assert_eq!(
                route(MailboxKind::Contact, None, arrived),
                Route::Refused(Refusal::OwnerMissing)
            );
        }
    }

    #[test]
    fn a_ratchet_message_outside_a_contact_mailbox_is_refused() {
        for kind in [MailboxKind::Invitation, MailboxKind::Intro] {
            for owner in [None, Some("bob")] {
                assert_eq!(
                    route(kind, owner, Arrived::Ratchet),
                    Route::Refused(Refusal::RatchetInIntroduction)
                );
            }
        }
    }

    #[test]
    fn a_blocked_sender_is_refused_before_anything_else_in_every_mailbox() {
        for kind in KINDS {
            for owner in [None, Some("bob")] {
                for known in [None, Some("bob")] {
                    assert_eq!(
                        route(kind, owner, initial(true, known)),
                        Route::Refused(Refusal::Blocked)
                    );
                }
            }
        }
    }

    #[test]
    fn a_known_sender_goes_to_its_session_a_stranger_to_a_request_or_a_new_contact() {
        for kind in [MailboxKind::Invitation, MailboxKind::Intro] {
            assert_eq!(
                route(kind, Some("someone"), initial(false, Some("bob"))),
                Route::Session("bob".into())
            );
            assert_eq!(
                route(kind, Some("someone"), initial(false, None)),
                Route::Refused(Refusal::InvitationUsed)
            );
        }
        assert_eq!(
            route(MailboxKind::Intro, None, initial(false, None)),
            Route::Request
        );
        assert_eq!(
            route(MailboxKind::Invitation, None, initial(false, None)),
            Route::NewContact
        );
    }

    #[test]
    fn a_blocked_contacts_message_is_dropped_and_shown_again_once_unblocked() {
        assert_eq!(delivery(true), Delivery::Drop);
        assert_eq!(delivery(false), Delivery::Show);
    }

    #[test]
    fn the_store_names_parse_and_nothing_else_does() {
        for (name, kind) in ["contact", "invitation", "intro"].into_iter().zip(KINDS) {
            assert_eq!(MailboxKind::parse(name), Some(kind));
        }
        for bad in ["", "Contact", "intro ", "address"] {
            assert_eq!(MailboxKind::parse(bad), None);
        }
    }

    #[test]
    fn a_failure_is_retried_once_after_folding_skipped_when_taken_before_and_else_refused() {
        assert_eq!(
            after_failure(Failure::UnknownParent, false),
            Next::FoldAndRetry
        );
        assert_eq!(after_failure(Failure::UnknownParent, true), Next::Reject);
        for folded in [false, true] {
            assert_eq!(after_failure(Failure::AlreadyTaken, folded), Next::Skip);
            assert_eq!(after_failure(Failure::Transient, folded), Next::Stop);
            assert_eq!(after_failure(Failure::Bad, folded), Next::Reject);
        }
    }
}
