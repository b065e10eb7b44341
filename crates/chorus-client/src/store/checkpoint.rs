//! The checkpoint's rows (DESIGN §4 "Checkpoint"): this device's folded state read in
//! one consistent cut, and written into a new device's store.
//!
//! The byte format is `chorus_wire::Checkpoint`; sealing it and carrying it to the new
//! device is the link protocol's job. Only this file maps it to and from tables.

use chorus_core::Session;
use chorus_wire::{
    Checkpoint, CheckpointContact, CheckpointHandshake, CheckpointMailbox, CheckpointOutbox,
    CheckpointPrekey, CheckpointRegister, CheckpointStream,
};
use sqlx::SqliteConnection;

use super::{Store, StoreError, row};

/// `registers`: name, lamport, timestamp, author, event id, value.
type RegisterRow = (String, i64, i64, Vec<u8>, Vec<u8>, Vec<u8>);
/// `mailboxes`: id, kind, contact, cursor, registered, created.
type MailboxRow = (Vec<u8>, String, Option<String>, i64, bool, i64);

#[derive(sqlx::FromRow)]
struct PrekeyRow {
    id: i64,
    kind: String,
    last_resort: bool,
    purpose: String,
    public: Vec<u8>,
    sealed: Vec<u8>,
    created_ms: i64,
    retired_ms: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    name: String,
    root_key: Vec<u8>,
    identity: Vec<u8>,
    relay_url: String,
    send_mailbox: Vec<u8>,
    recv_mailbox: Vec<u8>,
    hello_acked: bool,
    answered: bool,
    invitation: Option<Vec<u8>>,
    invitation_claim: Option<Vec<u8>>,
    failed: Option<String>,
    added_ms: i64,
    read_up_to: i64,
    roll_acked: Option<Vec<u8>>,
    roll_answer: Option<Vec<u8>>,
    compromised: Option<Vec<u8>>,
}

impl Store {
    /// Reads the folded state in one transaction (a consistent cut: the log cursor,
    /// the mailbox cursors and the sessions agree). Sealed rows are opened: the
    /// checkpoint carries their plaintext, and is itself sealed by the caller.
    pub(crate) async fn export_checkpoint(&self) -> Result<Checkpoint, StoreError> {
        let mut tx = self.begin().await?;
        type Row = (i64, i64, i64, i64, i64, i64);
        let (applied_seq, lamport, max_prekey_id, epoch_revoked, log_epoch, epoch_since_ms): Row = sqlx::query_as(
            "SELECT applied_seq, lamport, max_prekey_id, epoch_revoked, log_epoch, epoch_since_ms
             FROM constellation WHERE id = 1",
        )
        .fetch_one(&mut *tx)
        .await?;
        let mut c = Checkpoint::new(applied_seq);
        let r = c.rows_mut();
        r.lamport = lamport;
        r.epoch_revoked = u64::try_from(epoch_revoked).unwrap_or(0);
        r.log_epoch = u32::try_from(log_epoch).unwrap_or(u32::MAX);
        r.epoch_since_ms = u64::try_from(epoch_since_ms).unwrap_or(0);
        r.max_prekey_id = max_prekey_id;
        r.roster = sqlx::query_scalar("SELECT entry FROM roster ORDER BY idx")
            .fetch_all(&mut *tx)
            .await?;
        let streams: Vec<(Vec<u8>, i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT tag, version, head FROM streams")
                .fetch_all(&mut *tx)
                .await?;
        r.streams = streams
            .into_iter()
            .map(|(tag, version, head)| CheckpointStream {
                tag,
                version,
                head: head.unwrap_or_default(),
            })
            .collect();
        r.chain = sqlx::query_scalar("SELECT hash FROM log_chain WHERE seq = $1")
            .bind(applied_seq)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or_default();
        r.seen = sqlx::query_scalar("SELECT event_id FROM seen_events")
            .fetch_all(&mut *tx)
            .await?;
        let registers: Vec<RegisterRow> = sqlx::query_as(
            "SELECT name, lamport, timestamp_ms, author, event_id, value FROM registers",
        )
        .fetch_all(&mut *tx)
        .await?;
        r.registers = registers
            .into_iter()
            .map(
                |(name, lamport, timestamp_ms, author, event_id, value)| CheckpointRegister {
                    name,
                    lamport,
                    timestamp_ms,
                    author,
                    event_id,
                    value,
                },
            )
            .collect();
        let prekeys: Vec<PrekeyRow> = sqlx::query_as(
            "SELECT id, kind, last_resort, purpose, public, sealed, created_ms, retired_ms FROM prekeys",
        )
        .fetch_all(&mut *tx)
        .await?;
        for p in prekeys {
            let secret = self.open_sealed(
                "prekey",
                &row::prekey(p.id, &p.kind, p.last_resort, &p.purpose),
                &p.sealed,
            )?;
            r.prekeys.push(CheckpointPrekey {
                id: p.id,
                kind: p.kind,
                last_resort: p.last_resort,
                purpose: p.purpose,
                public: p.public,
                secret: secret.to_vec(),
                created_ms: p.created_ms,
                retired_ms: p.retired_ms,
            });
        }
        let contacts: Vec<ContactRow> = sqlx::query_as(
            "SELECT name, root_key, identity, relay_url, send_mailbox, recv_mailbox, hello_acked,
                    answered, invitation, invitation_claim, failed, added_ms, read_up_to,
                    roll_acked, roll_answer, compromised
             FROM contacts",
        )
        .fetch_all(&mut *tx)
        .await?;
        for k in contacts {
            let session = self
                .get_session(&mut tx, &k.name)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("session of {}", k.name)))?;
            let steps: Vec<(Vec<u8>, Vec<u8>)> =
                sqlx::query_as("SELECT old_root, new_root FROM contact_rolls WHERE contact = $1")
                    .bind(&k.root_key)
                    .fetch_all(&mut *tx)
                    .await?;
            r.contacts.push(CheckpointContact {
                session: session.snapshot().to_vec(),
                roll_acked: k.roll_acked,
                roll_answer: k.roll_answer,
                compromised: k.compromised,
                roll_steps: steps.into_iter().map(|(o, n)| [o, n].concat()).collect(),
                name: k.name,
                root_key: k.root_key,
                identity: k.identity,
                relay_url: k.relay_url,
                send_mailbox: k.send_mailbox,
                recv_mailbox: k.recv_mailbox,
                hello_acked: k.hello_acked,
                answered: k.answered,
                invitation: k.invitation,
                invitation_claim: k.invitation_claim,
                failed: k.failed,
                added_ms: k.added_ms,
                read_up_to: k.read_up_to,
            });
        }
        let mailboxes: Vec<MailboxRow> = sqlx::query_as(
            "SELECT mailbox_id, kind, contact, after_seq, registered, created_ms FROM mailboxes",
        )
        .fetch_all(&mut *tx)
        .await?;
        r.mailboxes = mailboxes
            .into_iter()
            .map(
                |(mailbox_id, kind, contact, after_seq, registered, created_ms)| {
                    CheckpointMailbox {
                        mailbox_id,
                        kind,
                        contact,
                        after_seq,
                        registered,
                        created_ms,
                    }
                },
            )
            .collect();
        type OutboxRow = (
            Vec<u8>,
            String,
            String,
            Vec<u8>,
            Vec<u8>,
            i64,
            Option<Vec<u8>>,
        );
        let outbox: Vec<OutboxRow> = sqlx::query_as(
            "SELECT envelope_id, contact, relay_url, mailbox_id, envelope, created_ms, author FROM outbox",
        )
        .fetch_all(&mut *tx)
        .await?;
        r.outbox = outbox
            .into_iter()
            .map(
                |(envelope_id, contact, relay_url, mailbox_id, envelope, created_ms, author)| {
                    CheckpointOutbox {
                        envelope_id,
                        contact,
                        relay_url,
                        mailbox_id,
                        envelope,
                        created_ms,
                        author,
                    }
                },
            )
            .collect();
        let handshakes: Vec<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT contact_root, base_key FROM handshakes")
                .fetch_all(&mut *tx)
                .await?;
        r.handshakes = handshakes
            .into_iter()
            .map(|(contact_root, base_key)| CheckpointHandshake {
                contact_root,
                base_key,
            })
            .collect();
        drop(tx);
        Ok(c)
    }

    /// Writes a checkpoint into a new device's store, inside the caller's transaction
    /// (secret values sealed to this store's key).
    pub(crate) async fn import_checkpoint(
        &self,
        tx: &mut SqliteConnection,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let c = checkpoint.rows();
        sqlx::query(
            "UPDATE constellation SET lamport = $1, max_prekey_id = $2, epoch_revoked = $3,
             log_epoch = MAX(epoch, $4), epoch_since_ms = $5 WHERE id = 1",
        )
        .bind(c.lamport)
        .bind(c.max_prekey_id)
        .bind(super::log_state::signed(c.epoch_revoked))
        .bind(i64::from(c.log_epoch))
        .bind(super::log_state::signed(c.epoch_since_ms))
        .execute(&mut *tx)
        .await?;
        for s in &c.streams {
            sqlx::query("INSERT INTO streams (tag, version, head) VALUES ($1, $2, $3)")
                .bind(&s.tag)
                .bind(s.version)
                .bind((!s.head.is_empty()).then_some(&s.head))
                .execute(&mut *tx)
                .await?;
        }
        if !c.chain.is_empty() {
            sqlx::query("INSERT INTO log_chain (seq, hash) VALUES ($1, $2)")
                .bind(c.applied_seq)
                .bind(&c.chain)
                .execute(&mut *tx)
                .await?;
        }
        super::log_state::insert_rows(
            tx,
            "INSERT INTO seen_events (event_id)",
            "",
            1,
            &c.seen,
            |q, id| q.bind(id),
        )
        .await?;
        for g in &c.registers {
            sqlx::query(
                "INSERT INTO registers (name, lamport, timestamp_ms, author, event_id, value)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&g.name)
            .bind(g.lamport)
            .bind(g.timestamp_ms)
            .bind(&g.author)
            .bind(&g.event_id)
            .bind(&g.value)
            .execute(&mut *tx)
            .await?;
        }
        for p in &c.prekeys {
            sqlx::query(
                "INSERT INTO prekeys (id, kind, last_resort, purpose, public, sealed, created_ms, retired_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(p.id)
            .bind(&p.kind)
            .bind(p.last_resort)
            .bind(&p.purpose)
            .bind(&p.public)
            .bind(self.seal(
                "prekey",
                &row::prekey(p.id, &p.kind, p.last_resort, &p.purpose),
                &p.secret,
            ))
            .bind(p.created_ms)
            .bind(p.retired_ms)
            .execute(&mut *tx)
            .await?;
        }
        for k in &c.contacts {
            sqlx::query(
                "INSERT INTO contacts (name, root_key, identity, relay_url, send_mailbox, recv_mailbox,
                   hello_acked, answered, invitation, invitation_claim, failed, added_ms, read_up_to,
                   roll_acked, roll_answer, compromised)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            )
            .bind(&k.name)
            .bind(&k.root_key)
            .bind(&k.identity)
            .bind(&k.relay_url)
            .bind(&k.send_mailbox)
            .bind(&k.recv_mailbox)
            .bind(k.hello_acked)
            .bind(k.answered)
            .bind(&k.invitation)
            .bind(&k.invitation_claim)
            .bind(&k.failed)
            .bind(k.added_ms)
            .bind(k.read_up_to)
            .bind(&k.roll_acked)
            .bind(&k.roll_answer)
            .bind(&k.compromised)
            .execute(&mut *tx)
            .await?;
            for step in &k.roll_steps {
                let (old, new) = step.split_at(32);
                sqlx::query(
                    "INSERT OR IGNORE INTO contact_rolls (contact, old_root, new_root)
                     VALUES ($1, $2, $3)",
                )
                .bind(&k.root_key)
                .bind(old)
                .bind(new)
                .execute(&mut *tx)
                .await?;
            }
            let session = Session::restore(&k.session, 0)?;
            self.put_session(tx, &k.name, &session).await?;
        }
        for h in &c.handshakes {
            sqlx::query(
                "INSERT OR IGNORE INTO handshakes (contact_root, base_key) VALUES ($1, $2)",
            )
            .bind(&h.contact_root)
            .bind(&h.base_key)
            .execute(&mut *tx)
            .await?;
        }
        for m in &c.mailboxes {
            sqlx::query(
                "INSERT OR REPLACE INTO mailboxes (mailbox_id, kind, contact, after_seq, registered, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&m.mailbox_id)
            .bind(&m.kind)
            .bind(&m.contact)
            .bind(m.after_seq)
            .bind(m.registered)
            .bind(m.created_ms)
            .execute(&mut *tx)
            .await?;
        }
        for o in &c.outbox {
            sqlx::query(
                "INSERT INTO outbox (envelope_id, contact, relay_url, mailbox_id, envelope, created_ms, author)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&o.envelope_id)
            .bind(&o.contact)
            .bind(&o.relay_url)
            .bind(&o.mailbox_id)
            .bind(&o.envelope)
            .bind(o.created_ms)
            .bind(&o.author)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}
