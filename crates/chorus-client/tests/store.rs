//! The encrypted local store against a real SQLite file in a temporary home.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use chorus_client::{KEY_FILE, STORE_FILE, Store, StoreError, Unlock};
use chorus_core::{LocalIdentity, MemoryPrekeyStore, Session, initiate, respond};
use chorus_wire::PrekeyBundle;
use rand::SeedableRng;
use rand::rngs::StdRng;
use zeroize::Zeroizing;

fn sessions() -> (Session, Session, StdRng) {
    let mut rng = StdRng::seed_from_u64(5);
    let a = LocalIdentity::generate(&mut rng);
    let b = LocalIdentity::generate(&mut rng);
    let mut store = MemoryPrekeyStore::default();
    let bundle = PrekeyBundle {
        identity: b.keys().clone(),
        signed_prekey: store.new_signed_prekey(&b, &mut rng).unwrap(),
        one_time_prekey: Some(store.new_one_time_prekey(&mut rng)),
        pq_prekey: store.new_pq_prekey(&b, true, &mut rng).unwrap(),
    };
    let mut alice = initiate(&a, &bundle, &mut rng).unwrap();
    let m = alice.encrypt(b"hi", &mut rng).unwrap();
    let bob = respond(&b, &store, &m.bytes).unwrap().session;
    (alice, bob, rng)
}

fn pass(p: &str) -> Unlock {
    Unlock::Passphrase(Zeroizing::new(p.to_owned()))
}

async fn open_pass(home: &std::path::Path, p: &str) -> Result<Store, StoreError> {
    Store::open_with_costs(home, pass(p), 64, 1).await
}

#[tokio::test]
async fn a_session_survives_a_reopen_and_keeps_working() {
    let home = tempfile::tempdir().unwrap();
    let (mut alice, mut bob, mut rng) = sessions();
    {
        let store = Store::open(home.path(), Unlock::KeyFile).await.unwrap();
        store.save_session("bob", &alice).await.unwrap();
    }
    let store = Store::open(home.path(), Unlock::KeyFile).await.unwrap();
    assert_eq!(store.contacts().await.unwrap(), vec!["bob".to_owned()]);
    let mut loaded = store.load_session("bob").await.unwrap().unwrap();
    assert_eq!(*loaded.snapshot(), *alice.snapshot());
    let m = loaded.encrypt(b"after reopen", &mut rng).unwrap();
    assert_eq!(&bob.decrypt(&m).unwrap()[..], b"after reopen");
    let _ = alice.encrypt(b"x", &mut rng).unwrap();
    assert!(store.load_session("carol").await.unwrap().is_none());
}

#[cfg(unix)]
#[tokio::test]
async fn the_key_file_is_private_and_a_readable_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    drop(Store::open(home.path(), Unlock::KeyFile).await.unwrap());
    let key = home.path().join(KEY_FILE);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        Store::open(home.path(), Unlock::KeyFile).await,
        Err(StoreError::InsecureKeyFile { mode: 0o644, .. })
    ));
}

#[tokio::test]
async fn a_missing_key_file_is_named_not_replaced() {
    let home = tempfile::tempdir().unwrap();
    drop(Store::open(home.path(), Unlock::KeyFile).await.unwrap());
    std::fs::remove_file(home.path().join(KEY_FILE)).unwrap();
    assert!(matches!(
        Store::open(home.path(), Unlock::KeyFile).await,
        Err(StoreError::MissingKeyFile(_))
    ));
    assert!(
        !home.path().join(KEY_FILE).exists(),
        "a new key must not be invented for an existing store"
    );
}

#[tokio::test]
async fn a_wrong_passphrase_is_refused_and_the_right_one_opens() {
    let home = tempfile::tempdir().unwrap();
    let (alice, _, _) = sessions();
    open_pass(home.path(), "correct horse")
        .await
        .unwrap()
        .save_session("bob", &alice)
        .await
        .unwrap();
    assert!(matches!(
        open_pass(home.path(), "battery staple").await,
        Err(StoreError::WrongKey)
    ));
    assert!(matches!(
        Store::open(home.path(), Unlock::KeyFile).await,
        Err(StoreError::WrongUnlockMethod {
            expected: "passphrase",
            given: "key file"
        })
    ));
    let store = open_pass(home.path(), "correct horse").await.unwrap();
    assert!(store.load_session("bob").await.unwrap().is_some());
}

#[tokio::test]
async fn secrets_never_reach_the_file_in_the_clear_and_a_moved_row_does_not_open() {
    let home = tempfile::tempdir().unwrap();
    let (alice, bob, _) = sessions();
    let store = Store::open(home.path(), Unlock::KeyFile).await.unwrap();
    store.save_session("bob", &alice).await.unwrap();
    store.save_session("carol", &bob).await.unwrap();
    // The snapshot (which holds private keys) must not appear in the database file.
    drop(store);
    let raw = std::fs::read(home.path().join(STORE_FILE)).unwrap();
    let wal = std::fs::read(home.path().join(format!("{STORE_FILE}-wal"))).unwrap_or_default();
    let snap = alice.snapshot();
    // Bytes from inside the ratchet tree (private keys and chain keys live there).
    let probe = &snap[40..72];
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(probe.len()).any(|w| w == probe),
            "session bytes found in the clear"
        );
    }
    // Copy Carol's sealed row over Bob's: the row-binding associated data refuses it.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        home.path().join(STORE_FILE).display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE sessions SET sealed = (SELECT sealed FROM sessions WHERE contact = 'carol') WHERE contact = 'bob'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let store = Store::open(home.path(), Unlock::KeyFile).await.unwrap();
    assert!(matches!(
        store.load_session("bob").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(store.load_session("carol").await.unwrap().is_some());
}

#[tokio::test]
async fn an_older_snapshot_put_under_a_newer_generation_does_not_open() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", home.path().join(STORE_FILE).display());
    let (mut alice, _, mut rng) = sessions();
    let store = Store::open(home.path(), Unlock::KeyFile).await.unwrap();
    store.save_session("bob", &alice).await.unwrap();
    let old_generation = alice.generation();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let old_sealed: Vec<u8> =
        sqlx::query_scalar("SELECT sealed FROM sessions WHERE contact = 'bob'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let _ = alice.encrypt(b"advances the generation", &mut rng).unwrap();
    store.save_session("bob", &alice).await.unwrap();
    // Put the old sealed snapshot back under the newer generation (what restoring an old
    // backup of the value, or a lost write, would leave): using it would reuse keys.
    sqlx::query("UPDATE sessions SET sealed = $1 WHERE contact = 'bob'")
        .bind(&old_sealed)
        .execute(&pool)
        .await
        .unwrap();
    // The sealed value is bound to the generation it was saved with: under another
    // generation it does not even open.
    match store.load_session("bob").await {
        Err(StoreError::Corrupt(what)) => assert!(what.contains("session"), "{what}"),
        other => panic!("expected a corrupt session, got {other:?}"),
    }
    // The limit of binding, stated as a test: a whole older row (its generation and
    // its value together) opens — nothing in the row can tell an old copy from the
    // current one (ARCHITECTURE.md, "what the local store binds").
    sqlx::query("UPDATE sessions SET generation = $1 WHERE contact = 'bob'")
        .bind(i64::try_from(old_generation).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let restored = store.load_session("bob").await.unwrap().unwrap();
    assert_eq!(restored.generation(), old_generation);
}

#[tokio::test]
async fn contact_names_are_bounded() {
    let home = tempfile::tempdir().unwrap();
    let (alice, _, _) = sessions();
    let store = Store::open(home.path(), Unlock::KeyFile).await.unwrap();
    assert!(matches!(
        store.save_session("", &alice).await,
        Err(StoreError::InvalidContact("empty"))
    ));
    let long = "x".repeat(chorus_client::MAX_CONTACT_NAME_LEN + 1);
    assert!(matches!(
        store.save_session(&long, &alice).await,
        Err(StoreError::InvalidContact(_))
    ));
    let max = "x".repeat(chorus_client::MAX_CONTACT_NAME_LEN);
    store.save_session(&max, &alice).await.unwrap();
}

#[tokio::test]
async fn an_empty_passphrase_is_refused_and_creates_nothing() {
    let home = tempfile::tempdir().unwrap();
    let e = Store::open(home.path(), pass("")).await.unwrap_err();
    assert!(matches!(e, StoreError::EmptyPassphrase), "{e}");
    assert!(e.to_string().contains("key file"), "says what to do: {e}");
    assert!(!home.path().join(STORE_FILE).exists());
}

#[tokio::test]
async fn a_superseded_session_leaves_no_copy_in_the_file() {
    // A disk thief with the key file (it sits beside the store) must not find spent
    // chain keys in free pages: the old sealed snapshot is overwritten, not just
    // unlinked.
    let home = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", home.path().join(STORE_FILE).display());
    let (mut alice, _, mut rng) = sessions();
    let store = Store::open(home.path(), Unlock::KeyFile).await.unwrap();
    store.save_session("bob", &alice).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let old: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM sessions WHERE contact = 'bob'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    for _ in 0..3 {
        let _ = alice.encrypt(b"advance", &mut rng).unwrap();
        store.save_session("bob", &alice).await.unwrap();
    }
    store.compact().await.unwrap();
    drop(store);
    let mut bytes = std::fs::read(home.path().join(STORE_FILE)).unwrap();
    if let Ok(wal) = std::fs::read(home.path().join(format!("{STORE_FILE}-wal"))) {
        bytes.extend(wal);
    }
    let needle = &old[old.len() - 32..];
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "the superseded snapshot is still in the file"
    );
}
