//! PostgreSQL's two group-commit paths, each raced directly through the store:
//! the optimistic path (conditional writes, retried when a head moved) and the
//! row-locking fallback. Both must give exactly one winner per stream version and
//! gap-free seqs, and both refuse a job under an epoch older than the log's. Needs `CHORUS_TEST_POSTGRES_URL`; skipped (with a message)
//! otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use chorus_relay::api::{Guard, HexBytes, Id32, RecordIn};
use chorus_relay::store::{AppendJob, AppendRejection, RelayStore};
use chorus_relay::{PostgresStore, StoreError};
use common::{Backend, TestDb};

async fn race(attempts: usize) {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let store: Arc<PostgresStore> = Arc::new(
        PostgresStore::connect(&db.url(), 8)
            .await
            .unwrap()
            .with_optimistic_attempts(attempts),
    );
    let (log, dev) = (Id32([7; 32]), Id32([8; 32]));
    store.create_log(log, b"g", dev, 0).await.unwrap();
    const VERSIONS: i64 = 10;
    let mut tasks = Vec::new();
    for c in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins = 0;
            let mut v = 0;
            while v < VERSIONS {
                let rec = |g: bool| RecordIn {
                    epoch: 0,
                    nonce: HexBytes(vec![c]),
                    ciphertext: HexBytes(vec![c, v as u8]),
                    guard: g.then(|| Guard {
                        stream_tag: HexBytes(b"s".to_vec()),
                        expected_version: v,
                    }),
                };
                // Each call is its own group; two jobs per group exercise in-group ordering.
                let jobs = vec![
                    AppendJob {
                        log_id: log,
                        author: dev,
                        records: vec![rec(true)],
                        max_records: u64::MAX,
                    },
                    AppendJob {
                        log_id: log,
                        author: dev,
                        records: vec![rec(false)],
                        max_records: u64::MAX,
                    },
                ];
                let out = store
                    .append_group(&jobs)
                    .await
                    .map_err(|e: StoreError| e.to_string())
                    .unwrap();
                match &out[0] {
                    Ok(_) => {
                        wins += 1;
                        v += 1;
                    }
                    Err(AppendRejection::Guards(f)) => v = f[0].current_version,
                    Err(e) => panic!("{e:?}"),
                }
                assert!(out[1].is_ok());
            }
            wins
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, VERSIONS, "one winner per version");
    let page = store.read_records(log, 0, 1000, usize::MAX).await.unwrap();
    let seqs: Vec<i64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=page.head_seq).collect::<Vec<_>>(), "gap-free");
    let guarded: Vec<i64> = page
        .records
        .iter()
        .filter_map(|r| r.guard.as_ref().map(|g| g.expected_version))
        .collect();
    assert_eq!(guarded, (0..VERSIONS).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_group_commit_races_to_one_winner_per_version() {
    race(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_group_commit_races_to_one_winner_per_version() {
    race(0).await;
}

/// One group on one log: epoch 1, a rotation to 2, a job still under 1 (refused), one
/// under 2, one skipping to 4 (refused); then a later group under 1 (refused: the
/// epoch was stored).
async fn stale_epoch(attempts: usize) {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let store = PostgresStore::connect(&db.url(), 4)
        .await
        .unwrap()
        .with_optimistic_attempts(attempts);
    let (log, dev) = (Id32([7; 32]), Id32([8; 32]));
    store.create_log(log, b"g", dev, 0).await.unwrap();
    let job = |epoch: i64| AppendJob {
        log_id: log,
        author: dev,
        records: vec![RecordIn {
            epoch,
            nonce: HexBytes(vec![0]),
            ciphertext: HexBytes(vec![1]),
            guard: None,
        }],
        max_records: u64::MAX,
    };
    let out = store
        .append_group(&[job(1), job(2), job(1), job(2), job(4)])
        .await
        .unwrap();
    let stale = Err(AppendRejection::StaleEpoch {
        index: 0,
        epoch: 1,
        current: 2,
    });
    let jump = Err(AppendRejection::EpochJump {
        index: 0,
        epoch: 4,
        current: 2,
    });
    assert_eq!(
        out,
        vec![Ok(vec![1]), Ok(vec![2]), stale.clone(), Ok(vec![3]), jump]
    );
    let out = store.append_group(&[job(1)]).await.unwrap();
    assert_eq!(out, vec![stale]);
    assert_eq!(store.log_info(log).await.unwrap().unwrap().head_seq, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_group_commit_refuses_a_stale_epoch() {
    stale_epoch(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_group_commit_refuses_a_stale_epoch() {
    stale_epoch(0).await;
}
