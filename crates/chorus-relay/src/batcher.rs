//! Group commit for log appends.
//!
//! Each commit of a durable database costs an fsync (milliseconds on a disk);
//! committing every append on its own caps throughput at one append per fsync no
//! matter how many clients wait. Instead, append requests queue here, and a worker
//! takes everything queued (up to [`MAX_GROUP_COMMIT`]) and hands it to
//! [`RelayStore::append_group`]: one transaction, one fsync, many appends, each
//! still accepted or refused on its own. Under light load a group has one request
//! and adds no delay; under heavy load groups grow and throughput rises above what
//! the database does one commit at a time. Nobody is answered before their
//! group is durable. Waking other relay processes is the store's job, inside the
//! group's transaction (PostgreSQL `NOTIFY` is delivered at commit), so it costs
//! no extra round trip; this module wakes this process's sockets.

use std::sync::Arc;

use tokio::sync::{Mutex, broadcast, mpsc, oneshot};

use crate::error::{StoreError, StoreResult};
use crate::limits::{APPEND_QUEUE_DEPTH, MAX_GROUP_COMMIT};
use crate::store::{AppendJob, AppendOutcome, Event, RelayStore};

struct Pending {
    job: AppendJob,
    reply: oneshot::Sender<StoreResult<AppendOutcome>>,
}

/// Handle to the group-commit workers.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Pending>,
}

impl Batcher {
    /// Starts [`RelayStore::append_workers`] workers.
    pub fn start(store: Arc<dyn RelayStore>, bus: broadcast::Sender<Event>) -> Self {
        let (queue, rx) = mpsc::channel(APPEND_QUEUE_DEPTH);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..store.append_workers().max(1) {
            tokio::spawn(worker(store.clone(), rx.clone(), bus.clone()));
        }
        Batcher { queue }
    }

    /// Appends one job, returning once its group is committed.
    pub async fn append(&self, job: AppendJob) -> StoreResult<AppendOutcome> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Internal(sqlx::Error::PoolClosed);
        self.queue
            .send(Pending { job, reply })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn worker(
    store: Arc<dyn RelayStore>,
    rx: Arc<Mutex<mpsc::Receiver<Pending>>>,
    bus: broadcast::Sender<Event>,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(p) => batch.push(p),
                None => return,
            }
            while batch.len() < MAX_GROUP_COMMIT {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        }
        let (jobs, replies): (Vec<AppendJob>, Vec<_>) =
            batch.into_iter().map(|p| (p.job, p.reply)).unzip();
        match store.append_group(&jobs).await {
            Ok(outcomes) => {
                let mut events: Vec<Event> = Vec::new();
                for (job, outcome) in jobs.iter().zip(&outcomes) {
                    let Ok(seqs) = outcome else { continue };
                    let Some(&head) = seqs.last() else { continue };
                    let same_log = events.iter_mut().find(
                        |e| matches!(e, Event::LogAppended { log_id, .. } if *log_id == job.log_id),
                    );
                    match same_log {
                        Some(Event::LogAppended { head_seq, .. }) => {
                            *head_seq = head.max(*head_seq)
                        }
                        _ => events.push(Event::LogAppended {
                            log_id: job.log_id,
                            head_seq: head,
                        }),
                    }
                }
                for e in &events {
                    let _ = bus.send(e.clone());
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = jobs.len(), "group commit failed");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Internal(sqlx::Error::WorkerCrashed)));
                }
            }
        }
    }
}
