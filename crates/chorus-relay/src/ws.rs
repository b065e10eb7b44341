//! Push: one WebSocket per device, carrying new log records and envelopes.
//!
//! The socket never carries anything the device could not read over HTTP; it
//! only saves polling. Events on the in-process bus (fed by local writes and, for
//! PostgreSQL, by other processes' `NOTIFY`) wake the socket, which then reads the
//! store from the last seq it pushed — so a missed or duplicated event can delay
//! a push but never lose or repeat a record. A revoked device's socket is closed
//! with [`CLOSE_REVOKED`] as soon as the revocation is heard (an event, from this
//! process or another), and the session is looked up in the store every
//! [`RECHECK`] and after notifications may have been lost, so a missed event costs
//! at most that long; an expired one is closed with [`CLOSE_EXPIRED`]. A store
//! lookup per socket per wake-up would double the database's work for busy logs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::api::{Id32, Push};
use crate::auth::Authed;
use crate::error::{ApiError, StoreResult};
use crate::extract::{Q, Segs};
use crate::limits::{MAX_PAGE, MAX_PAGE_BYTES, MAX_SOCKETS_PER_DEVICE};
use crate::page;
use crate::store::Event;

/// Close code sent when the device was revoked.
pub const CLOSE_REVOKED: u16 = 4003;
/// Close code sent when the session token expired.
pub const CLOSE_EXPIRED: u16 = 4001;
/// Close code sent when the relay shuts down ("going away").
pub const CLOSE_SHUTDOWN: u16 = 1001;
/// How often an idle socket re-checks its session.
const RECHECK: Duration = Duration::from_secs(5);

/// `?after=` for the socket: push log records after this seq (default: the head
/// at connection time, i.e. only new ones).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct WsQuery {
    #[serde(default)]
    after: Option<i64>,
}

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    authed: Authed,
    Segs(log): Segs<String>,
    Q(q): Q<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let log_id = Id32::parse(&log)?;
    let session = authed.for_log(&log_id)?;
    let slot = Sockets::claim(&state, (log_id, session.device_id))?;
    let info = state
        .store()
        .log_info(log_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let after = q.after.unwrap_or(info.head_seq).max(0);
    let mailboxes: HashMap<Id32, i64> =
        state.store().mailboxes(log_id).await?.into_iter().collect();
    Ok(ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        let mut pusher = Pusher {
            state,
            authed,
            log_id,
            after,
            mailboxes,
        };
        pusher.serve(socket).await;
    }))
}

/// Open sockets per device, bounded by [`MAX_SOCKETS_PER_DEVICE`].
#[derive(Default)]
pub(crate) struct Sockets(Mutex<HashMap<(Id32, Id32), usize>>);

/// One device's claim on a socket; gives it back when dropped (socket closed, or
/// the upgrade never completed).
pub(crate) struct SocketSlot {
    state: AppState,
    owner: (Id32, Id32),
}

impl Sockets {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<(Id32, Id32), usize>> {
        // A poisoned map still counts correctly: every change is one statement.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more socket of `owner`, or `429 too_many_sockets`.
    fn claim(state: &AppState, owner: (Id32, Id32)) -> Result<SocketSlot, ApiError> {
        let mut counts = state.sockets().counts();
        let n = counts.entry(owner).or_default();
        if *n >= MAX_SOCKETS_PER_DEVICE {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_sockets",
            ));
        }
        *n += 1;
        Ok(SocketSlot {
            state: state.clone(),
            owner,
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut counts = self.state.sockets().counts();
        if let Some(n) = counts.get_mut(&self.owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.owner);
            }
        }
    }
}

struct Pusher {
    state: AppState,
    authed: Authed,
    log_id: Id32,
    /// Last log seq pushed.
    after: i64,
    /// Last envelope seq pushed, per mailbox.
    mailboxes: HashMap<Id32, i64>,
}

enum Next {
    Continue,
    Close(u16, &'static str),
    Gone,
}

impl Pusher {
    async fn serve(&mut self, mut socket: WebSocket) {
        let mut bus = self.state.subscribe();
        let mut closing = self.state.closing();
        let mut tick = tokio::time::interval(RECHECK);
        // Catch up first if the client asked for older records.
        let mut next = self.push_records(&mut socket).await;
        while let Next::Continue = next {
            next = tokio::select! {
                ev = bus.recv() => self.on_event(ev, &mut socket).await,
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Next::Gone,
                    // Pings are answered by the socket itself; anything else
                    // from the client is ignored.
                    Some(Ok(_)) => Next::Continue,
                },
                _ = tick.tick() => self.check_session().await,
                _ = closing.changed() => Next::Close(CLOSE_SHUTDOWN, "shutdown"),
            };
        }
        if let Next::Close(code, reason) = next {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await;
        }
    }

    async fn check_session(&self) -> Next {
        let now = self.state.now();
        match self.state.store().session(self.authed.key, now).await {
            Ok(Some(_)) => Next::Continue,
            Ok(None) if self.authed.session.expires_ms <= now => {
                Next::Close(CLOSE_EXPIRED, "session_expired")
            }
            Ok(None) => Next::Close(CLOSE_REVOKED, "revoked"),
            Err(e) => self.failed(e),
        }
    }

    async fn on_event(&mut self, ev: Result<Event, RecvError>, socket: &mut WebSocket) -> Next {
        let me = self.authed.session;
        match &ev {
            Ok(Event::DeviceRevoked { log_id, device_id })
                if *log_id == me.log_id && *device_id == me.device_id =>
            {
                return Next::Close(CLOSE_REVOKED, "revoked");
            }
            // Other logs' events wake every socket and cost nothing.
            Ok(Event::LogAppended { log_id, .. } | Event::MailboxPosted { log_id, .. })
                if *log_id != self.log_id =>
            {
                return Next::Continue;
            }
            Ok(Event::DeviceRevoked { .. } | Event::Heartbeat { .. }) => return Next::Continue,
            // Revocations may have been missed: ask the store.
            Ok(Event::Resync) | Err(_) => {
                if let Next::Close(c, r) = self.check_session().await {
                    return Next::Close(c, r);
                }
            }
            // This log's own traffic: revocations arrive as events, so only the
            // expiry is checked here, not the store.
            Ok(_) if me.expires_ms <= self.state.now() => {
                return Next::Close(CLOSE_EXPIRED, "session_expired");
            }
            Ok(_) => {}
        }
        match ev {
            Ok(Event::LogAppended { log_id, head_seq }) if log_id == self.log_id => {
                if head_seq > self.after {
                    return self.push_records(socket).await;
                }
                Next::Continue
            }
            Ok(Event::MailboxPosted {
                log_id, mailbox_id, ..
            }) if log_id == self.log_id => self.push_envelopes(socket, mailbox_id).await,
            Ok(Event::Resync) | Err(RecvError::Lagged(_)) => {
                let next = self.push_records(socket).await;
                if !matches!(next, Next::Continue) {
                    return next;
                }
                match self.state.store().mailboxes(self.log_id).await {
                    Ok(list) => {
                        for (m, _) in list {
                            let next = self.push_envelopes(socket, m).await;
                            if !matches!(next, Next::Continue) {
                                return next;
                            }
                        }
                        Next::Continue
                    }
                    Err(e) => self.failed(e),
                }
            }
            Err(RecvError::Closed) => Next::Close(CLOSE_SHUTDOWN, "shutdown"),
            Ok(_) => Next::Continue,
        }
    }

    fn failed(&self, e: crate::error::StoreError) -> Next {
        tracing::error!(error = %e, "push read failed");
        Next::Close(1011, "internal")
    }

    async fn push_records(&mut self, socket: &mut WebSocket) -> Next {
        loop {
            let page = match page::records(&self.state, self.log_id, self.after, MAX_PAGE).await {
                Ok(p) => p,
                Err(e) => return self.failed(e),
            };
            let Some(last) = page.records.last().map(|r| r.seq) else {
                return Next::Continue;
            };
            if send(
                socket,
                &Push::Records {
                    records: page.records,
                },
            )
            .await
            .is_err()
            {
                return Next::Gone;
            }
            self.after = last;
            if !page.more {
                return Next::Continue;
            }
        }
    }

    async fn push_envelopes(&mut self, socket: &mut WebSocket, mailbox_id: Id32) -> Next {
        loop {
            let after = self.mailboxes.get(&mailbox_id).copied().unwrap_or(0);
            let read = page::envelopes(
                &self.state,
                (self.log_id, self.authed.session.device_id),
                mailbox_id,
                after,
                MAX_PAGE,
                MAX_PAGE_BYTES,
                true,
            );
            let page = match read.await {
                Ok((p, _)) => p,
                Err(crate::error::StoreError::NotFound) => return Next::Continue,
                Err(e) => return self.failed(e),
            };
            let Some(last) = page.envelopes.last().map(|e| e.seq) else {
                return Next::Continue;
            };
            let more = page.more;
            let push = Push::Envelopes {
                mailbox_id,
                envelopes: page.envelopes,
            };
            if send(socket, &push).await.is_err() {
                return Next::Gone;
            }
            self.mailboxes.insert(mailbox_id, last);
            if !more {
                return Next::Continue;
            }
        }
    }
}

async fn send(socket: &mut WebSocket, push: &Push) -> StoreResult<()> {
    let text = serde_json::to_string(push)
        .map_err(|e| crate::error::StoreError::Internal(sqlx::Error::Protocol(e.to_string())))?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| crate::error::StoreError::Internal(sqlx::Error::PoolClosed))
}
