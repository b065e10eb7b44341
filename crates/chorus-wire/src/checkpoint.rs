//! The checkpoint (DESIGN §4): a device's folded state at one log position, without
//! history — what a new device starts from instead of folding the whole log.
//!
//! The approving device exports it from its store, seals it under the epoch key and
//! stores it as a relay blob; the bundle names the blob. Only the identity's own devices
//! can open it, but it is still parsed as untrusted (a sibling can be buggy): the
//! version is checked, the size bounded before parsing and every fixed-size field
//! checked. Its rows mirror the store's tables; the store is the only code that fills or
//! reads them. Secret fields (private prekeys, session snapshots) are wiped on drop.

use prost::Message;
use zeroize::{Zeroize, Zeroizing};

use crate::limits::MAX_CHECKPOINT_LEN;
use crate::{WIRE_VERSION, WireError, check_len, check_version, fixed, proto};

pub use proto::{
    CheckpointContact, CheckpointHandshake, CheckpointMailbox, CheckpointOutbox, CheckpointPrekey,
    CheckpointRegister, CheckpointStream,
};

/// A parsed checkpoint. Build one with [`Checkpoint::new`] and fill its rows.
pub struct Checkpoint(proto::Checkpoint);

impl Checkpoint {
    /// An empty checkpoint at `applied_seq`.
    pub fn new(applied_seq: i64) -> Self {
        Self(proto::Checkpoint {
            version: WIRE_VERSION,
            applied_seq,
            ..Default::default()
        })
    }

    /// The rows.
    pub fn rows(&self) -> &proto::Checkpoint {
        &self.0
    }

    /// The rows, to fill.
    pub fn rows_mut(&mut self) -> &mut proto::Checkpoint {
        &mut self.0
    }

    /// The encoding (secret: wiped on drop).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.0.encoded_len()));
        let _ = self.0.encode(&mut *out);
        out
    }

    /// Parses a checkpoint.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        check_len("checkpoint", bytes, MAX_CHECKPOINT_LEN)?;
        // Parsed into a value that wipes on drop from the first byte: rows parsed before
        // a malformed one are wiped too, not dropped as plain prost structs. (A row cut
        // off mid-parse, and the buffers a growing list leaves behind, are freed by
        // prost and the allocator unwiped: the limit of parsing into a library's types.)
        let mut c = Self(proto::Checkpoint::default());
        c.0.merge(bytes).map_err(|e| WireError::Malformed {
            what: "checkpoint",
            reason: e.to_string(),
        })?;
        let p = &c.0;
        check_version("checkpoint", p.version)?;
        if p.applied_seq < 0 {
            return Err(WireError::InvalidText {
                field: "checkpoint.applied_seq",
                reason: "negative",
            });
        }
        if p.roster.is_empty() {
            return Err(WireError::MissingField("checkpoint.roster"));
        }
        if !p.chain.is_empty() {
            fixed::<32>("checkpoint.chain", &p.chain)?;
        }
        for id in &p.seen {
            fixed::<16>("checkpoint.seen", id)?;
        }
        for s in &p.streams {
            if !s.head.is_empty() {
                fixed::<32>("checkpoint.streams.head", &s.head)?;
            }
        }
        for c in &p.contacts {
            fixed::<32>("checkpoint.contacts.root_key", &c.root_key)?;
            fixed::<32>("checkpoint.contacts.send_mailbox", &c.send_mailbox)?;
            fixed::<32>("checkpoint.contacts.recv_mailbox", &c.recv_mailbox)?;
            for k in [&c.roll_acked, &c.roll_answer].into_iter().flatten() {
                fixed::<32>("checkpoint.contacts.roll_acked/roll_answer", k)?;
            }
            if let Some(k) = &c.compromised {
                crate::IdentityKeys::decode(k)?;
            }
            for s in &c.roll_steps {
                fixed::<64>("checkpoint.contacts.roll_steps", s)?;
            }
        }
        for m in &p.mailboxes {
            fixed::<32>("checkpoint.mailboxes.mailbox_id", &m.mailbox_id)?;
        }
        for o in &p.outbox {
            fixed::<16>("checkpoint.outbox.envelope_id", &o.envelope_id)?;
            fixed::<32>("checkpoint.outbox.mailbox_id", &o.mailbox_id)?;
        }
        for h in &p.handshakes {
            fixed::<32>("checkpoint.handshakes.contact_root", &h.contact_root)?;
        }
        Ok(c)
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        for p in &mut self.0.prekeys {
            p.secret.zeroize();
        }
        for c in &mut self.0.contacts {
            c.session.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn secret_rows_do_not_print_their_secrets() {
        let contact = CheckpointContact {
            name: "bob".into(),
            session: vec![0xAB; 40],
            ..Default::default()
        };
        let prekey = CheckpointPrekey {
            id: 1,
            secret: vec![0xCD; 32],
            ..Default::default()
        };
        let bundle = proto::ProvisioningBundle {
            root_secret: vec![0xEF; 32],
            identity_dh_secret: vec![0xEE; 32],
            epoch_key: vec![0xED; 32],
            ..Default::default()
        };
        let sent = proto::Sent {
            text: "secret text".into(),
            ratchet_delta: vec![0xEC; 40],
            ..Default::default()
        };
        let prekey_secret = proto::PrekeySecret {
            secret: vec![0xEB; 32],
            ..Default::default()
        };
        let details = proto::ContactDetails {
            session: vec![0xEA; 40],
            ..Default::default()
        };
        for (shown, secret) in [
            (format!("{contact:?}"), "171, 171"),
            (format!("{prekey:?}"), "205, 205"),
            (format!("{bundle:?}"), "239, 239"),
            (format!("{bundle:?}"), "238, 238"),
            (format!("{bundle:?}"), "237, 237"),
            (format!("{sent:?}"), "secret text"),
            (format!("{sent:?}"), "236, 236"),
            (format!("{prekey_secret:?}"), "235, 235"),
            (format!("{details:?}"), "234, 234"),
        ] {
            assert!(!shown.contains(secret), "a secret printed: {shown}");
        }
        assert!(
            format!("{contact:?}").contains("<40 bytes>"),
            "the length is shown"
        );
    }

    #[test]
    fn a_checkpoint_round_trips_and_bad_ones_name_the_field() {
        let mut c = Checkpoint::new(7);
        c.rows_mut().roster.push(vec![1; 40]);
        c.rows_mut().contacts.push(CheckpointContact {
            name: "bob".into(),
            root_key: vec![2; 32],
            send_mailbox: vec![3; 32],
            recv_mailbox: vec![4; 32],
            session: vec![5; 100],
            ..Default::default()
        });
        let back = Checkpoint::decode(&c.encode()).unwrap();
        assert_eq!(back.rows(), c.rows());

        c.rows_mut().contacts[0].roll_steps.push(vec![6; 63]);
        assert!(matches!(
            Checkpoint::decode(&c.encode()),
            Err(WireError::InvalidText {
                field: "checkpoint.contacts.roll_steps",
                ..
            })
        ));
        c.rows_mut().contacts[0].roll_steps.clear();
        c.rows_mut().contacts[0].root_key.pop();
        assert!(matches!(
            Checkpoint::decode(&c.encode()),
            Err(WireError::InvalidText {
                field: "checkpoint.contacts.root_key",
                ..
            })
        ));
        let mut no_roster = Checkpoint::new(1);
        no_roster.rows_mut().seen.push(vec![0; 16]);
        assert_eq!(
            Checkpoint::decode(&no_roster.encode()).err(),
            Some(WireError::MissingField("checkpoint.roster"))
        );
        let huge = vec![0u8; MAX_CHECKPOINT_LEN + 1];
        assert!(matches!(
            Checkpoint::decode(&huge),
            Err(WireError::TooLarge { .. })
        ));
    }
}
