//! Shortcuts for the benchmarks (feature `bench`, off by default; the CLI never enables
//! it). They build in seconds what a user builds in months — a thousand contacts, a log
//! of a hundred thousand events — through the same event, append and fold code as the
//! user-facing calls, so what the benchmarks then measure (catch-up, linking) runs on
//! states made the real way.
//!
//! Not for applications: [`Device::bench_burst`] escrows messages without posting them.

use chorus_relay_api::Id32;
use chorus_wire::{EventKind, MailboxId, PrekeyBundle};

use super::Device;
use crate::ClientError;
use crate::log::{Appended, Pending, session_stream};

impl Device {
    /// Adds a contact from a prekey bundle at hand (no directory fetch): the session,
    /// the guarded `ContactUpserted` + `Sent` pair and the hello, as `accept` does. The
    /// hello goes to a fresh mailbox registered at the home relay.
    pub async fn bench_add_contact(
        &self,
        bundle: &PrekeyBundle,
        alias: &str,
    ) -> Result<(), ClientError> {
        let mailbox = Id32(self.random());
        self.relay
            .register_mailbox(mailbox, crate::relay::MailboxUse::Contact)
            .await?;
        let relay_url = self.me().relay_url.clone();
        self.establish(
            bundle,
            Some(alias.to_owned()),
            relay_url,
            MailboxId(mailbox.0),
            None,
        )
        .await?;
        Ok(())
    }

    /// Escrows `messages` sends of `text` to `contact` as the send path does — each
    /// encrypted on the session as the previous one left it, its `Sent` guarded on the
    /// session stream — each followed by its `Delivered`, `per_append` messages per
    /// atomic append (two records each). With `post`, each envelope is then posted to
    /// the contact's mailbox (a backlog for them to receive); without, it is not.
    pub async fn bench_burst(
        &self,
        contact: &str,
        text: &str,
        messages: usize,
        per_append: usize,
        post: bool,
    ) -> Result<(), ClientError> {
        let unknown = || ClientError::UnknownContact(contact.to_owned());
        let mut left = messages;
        while left > 0 {
            let n = left.min(per_append.max(1));
            let mut conn = self.store.pool().acquire().await?;
            let row = self
                .store
                .contact_row(&mut *conn, contact)
                .await?
                .ok_or_else(unknown)?;
            let mut session = self
                .store
                .get_session(&mut conn, contact)
                .await?
                .ok_or_else(unknown)?;
            drop(conn);
            let stream = session_stream(&row.root);
            let mut events = Vec::with_capacity(2 * n);
            let mut delivered = Vec::with_capacity(n);
            let mut posts = Vec::new();
            for _ in 0..n {
                let envelope_id: [u8; 16] = self.random();
                let sent = self.encrypt_sent(&row, &mut session, envelope_id, text)?;
                if let (true, EventKind::Sent(s)) = (post, &sent) {
                    posts.push((Id32(s.mailbox), envelope_id, s.envelope.clone()));
                }
                events.push(Pending::guarded(sent, stream.clone(), None));
                delivered.push(Pending::free(EventKind::Delivered { envelope_id }));
            }
            events.extend(delivered);
            if self.append(events).await?.0 != Appended::Done {
                return Err(ClientError::Contended);
            }
            for (mailbox, id, envelope) in posts {
                self.relay
                    .post_envelope(mailbox, chorus_relay_api::Id16(id), envelope)
                    .await?;
            }
            left -= n;
        }
        Ok(())
    }
}

impl Device {
    /// Puts `messages` history entries (`text`, alternating direction, spread over
    /// `contacts`) straight into the store, as months of conversation leave it: the
    /// history a link carries. Only the history table (sealed as every entry is); no
    /// log record, no envelope.
    pub async fn bench_history(
        &self,
        contacts: &[String],
        messages: usize,
        text: &str,
    ) -> Result<(), ClientError> {
        use crate::store::history::{HistoryRow, insert_history};
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let mut rows = Vec::with_capacity(1000);
        for i in 0..messages {
            let alias = &contacts[i % contacts.len().max(1)];
            let envelope_id: [u8; 16] = self.random();
            let outgoing = i.is_multiple_of(2);
            let at = now - i64::try_from(messages - i).unwrap_or(0);
            rows.push(HistoryRow {
                sealed: self.store.seal(
                    "message",
                    &crate::store::row::message(&envelope_id, alias, outgoing),
                    text.as_bytes(),
                ),
                alias: alias.clone(),
                outgoing,
                envelope_id,
                sent_ms: at,
                stored_ms: at,
                position: i64::try_from(i).unwrap_or(0),
                event: None,
            });
            if rows.len() == 1000 {
                insert_history(&mut tx, &rows).await?;
                rows.clear();
            }
        }
        insert_history(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(())
    }
}
