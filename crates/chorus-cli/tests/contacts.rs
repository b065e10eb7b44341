#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Managing contacts end to end with real processes (the relay binary, one `chorus`
//! home per device): renaming and blocking go through the identity's log, so every
//! device of the identity agrees.

use std::path::Path;

mod common;
use common::*;

fn names(home: &Path) -> Vec<String> {
    json(home, &["contacts", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_rename_on_one_device_shows_on_its_sibling_and_a_refused_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, laptop, phone, bob) = alice_on_two_devices_with_bob(dir.path());
    let carol = dir.path().join("carol");
    ok(&carol, &["init", "--relay", &relay.url, "--name", "carol"]);
    let address = json(&carol, &["status", "--json"])["address"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&laptop, &["contact", "add", &address, "--name", "Carol"]);
    ok(&bob, &["send", "alice", "hi from bob"]);

    let out = ok(&laptop, &["contact", "rename", "BOB", "Robert"]);
    assert!(out.contains("Renamed \"bob\" to \"Robert\""), "{out}");
    assert_eq!(names(&laptop), ["Carol", "Robert"]);

    // The phone learns it from the log: the conversation is Robert's there too.
    let out = ok(&phone, &["sync"]);
    assert!(out.contains("Robert: hi from bob"), "{out}");
    assert_eq!(names(&phone), ["Carol", "Robert"]);
    assert_eq!(texts(&phone, "robert"), [(false, "hi from bob".to_owned())]);
    let e = fails(&phone, &["history", "bob"], 3);
    assert!(e.contains("unknown contact \"bob\""), "{e}");
    let e = fails(&phone, &["contact", "rename", "bob", "Bobby"], 3);
    assert!(e.contains("unknown contact \"bob\""), "{e}");

    // Refusals, each one line with its code, and nothing changed on either device.
    let e = fails(&phone, &["contact", "rename", "Robert", "carol"], 7);
    assert!(e.contains("already called \"Carol\""), "{e}");
    for empty in ["", "   "] {
        let e = fails(&phone, &["contact", "rename", "Robert", empty], 6);
        assert!(e.contains("contact name: must not be empty"), "{e}");
    }
    let e = fails(&phone, &["contact", "rename", "Robert", &"n".repeat(65)], 6);
    assert!(e.contains("too large: 65 bytes, limit 64"), "{e}");
    let out = chorus(&phone, &["contact", "rename", "Robert"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<NEW_NAME>"));
    ok(&laptop, &["sync"]);
    for home in [&laptop, &phone] {
        assert_eq!(names(home), ["Carol", "Robert"], "{}", home.display());
    }

    // The conversation goes on under the new name, both ways.
    ok(&laptop, &["send", "robert", "hi Robert"]);
    assert!(ok(&bob, &["sync"]).contains("alice: hi Robert"));
    drop(relay);
}

#[test]
fn a_blocked_contact_is_dropped_on_every_device_until_unblocked() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, laptop, phone, bob) = alice_on_two_devices_with_bob(dir.path());
    ok(&bob, &["send", "alice", "before the block"]);
    for home in [&laptop, &phone] {
        assert!(ok(home, &["sync"]).contains("bob: before the block"));
    }

    let out = ok(&laptop, &["contact", "block", "Bob"]);
    assert!(out.contains("Blocked \"bob\" on all your devices"), "{out}");
    assert!(ok(&laptop, &["contact", "block", "bob"]).contains("already blocked"));
    let e = fails(&laptop, &["contact", "block", "nobody"], 3);
    assert!(e.contains("unknown contact \"nobody\""), "{e}");
    ok(&bob, &["send", "alice", "while blocked"]);
    for home in [&phone, &laptop] {
        let out = chorus(home, &["sync"]);
        assert!(out.status.success());
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(!shown.contains("while blocked"), "{shown}");
        assert!(ok(home, &["contacts"]).contains("BLOCKED"));
        assert_eq!(json(home, &["contacts", "--json"])[0]["blocked"], true);
        assert!(
            !texts(home, "bob").iter().any(|(_, t)| t == "while blocked"),
            "{}",
            home.display()
        );
    }

    // Unblocked on the phone: new messages are shown on both devices again, what was
    // sent meanwhile stays dropped.
    let out = ok(&phone, &["contact", "unblock", "bob"]);
    assert!(out.contains("Unblocked \"bob\""), "{out}");
    ok(&bob, &["send", "alice", "after the unblock"]);
    for home in [&laptop, &phone] {
        let out = ok(home, &["sync"]);
        assert!(out.contains("bob: after the unblock"), "{out}");
        assert_eq!(json(home, &["contacts", "--json"])[0]["blocked"], false);
        let texts: Vec<String> = texts(home, "bob").into_iter().map(|(_, t)| t).collect();
        assert_eq!(texts, ["before the block", "after the unblock"]);
    }
    drop(relay);
}

/// `verify --mark` on one device shows the contact verified on every device; a roll of
/// the contact's identity key clears it everywhere (the mark names the key compared),
/// until it is compared and marked again; `--unmark` removes it everywhere.
#[test]
fn a_verified_mark_is_on_every_device_until_the_contacts_identity_key_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, laptop, phone, bob) = alice_on_two_devices_with_bob(dir.path());
    let verified = |home: &Path| {
        let v = json(home, &["verify", "bob", "--json"])["verified"].clone();
        let listed = json(home, &["contacts", "--json"])[0]["verified"].clone();
        assert_eq!(v, listed, "verify and contacts agree");
        v.as_bool().unwrap()
    };
    assert!(!verified(&laptop));
    // Bad input: one line each, nothing marked.
    assert!(fails(&laptop, &["verify", "nobody", "--mark"], 3).contains("nobody"));
    let both = chorus(&laptop, &["verify", "bob", "--mark", "--unmark"]);
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
    assert!(!verified(&laptop));

    let before = json(&laptop, &["verify", "bob", "--mark", "--json"]);
    assert_eq!(before["verified"], true);
    ok(&phone, &["sync"]);
    assert!(verified(&phone));
    let out = ok(&phone, &["verify", "bob"]);
    assert!(out.contains("Marked verified"), "{out}");

    // Bob rolls his identity key: alice's devices hear it with his next message, and
    // the mark no longer holds on either (another safety number, not compared).
    ok(&bob, &["identity", "roll", "--yes"]);
    ok(&bob, &["send", "alice", "after the roll"]);
    for home in [&laptop, &phone] {
        ok(home, &["sync"]);
        assert!(!verified(home), "{}", home.display());
    }
    let after = json(&laptop, &["verify", "bob", "--json"]);
    assert_ne!(after["safety_number"], before["safety_number"]);

    // Compared again on the phone, unmarked on the laptop: the last writer wins.
    ok(&phone, &["verify", "bob", "--mark"]);
    ok(&laptop, &["sync"]);
    assert!(verified(&laptop));
    ok(&laptop, &["verify", "bob", "--unmark"]);
    ok(&phone, &["sync"]);
    assert!(!verified(&phone));

    // Marks are kept under the contact, not under the key it has now: blocked after
    // the roll, bob is listed BLOCKED (the list once looked under the new key).
    ok(&laptop, &["contact", "block", "bob"]);
    assert_eq!(json(&laptop, &["contacts", "--json"])[0]["blocked"], true);
}

#[test]
fn a_new_profile_name_reaches_every_device_and_each_contact_with_the_next_message() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, laptop, phone, bob) = alice_on_two_devices_with_bob(dir.path());
    // carol calls alice by a name of her own.
    let carol = dir.path().join("carol");
    ok(&carol, &["init", "--relay", &relay.url, "--name", "carol"]);
    let code = ok(&laptop, &["invite", "--no-qr"]).trim().to_owned();
    ok(&carol, &["accept", &code, "--name", "Ally"]);
    ok(&laptop, &["sync"]);
    ok(&carol, &["sync"]);
    // Both have heard alice's name once (a message says it).
    ok(&laptop, &["send", "bob", "hi bob"]);
    ok(&laptop, &["send", "carol", "hi carol"]);
    ok(&bob, &["sync"]);
    ok(&carol, &["sync"]);

    // Refused: nothing changes.
    for bad in ["", "  "] {
        let e = fails(&laptop, &["profile", "set", "--name", bad], 6);
        assert!(e.contains("name: must not be empty"), "{e}");
    }
    let e = fails(&laptop, &["profile", "set", "--name", &"n".repeat(65)], 6);
    assert!(e.contains("limit 64"), "{e}");
    assert_eq!(ok(&phone, &["profile"]).trim(), "Name: alice");

    let out = ok(&laptop, &["profile", "set", "--name", "Alice B."]);
    assert!(
        out.contains("You are now \"Alice B.\" (was \"alice\")"),
        "{out}"
    );
    // The phone takes it from the log.
    assert_eq!(ok(&phone, &["profile"]).trim(), "Name: Alice B.");

    // Contacts learn it with the next message, sent here from the phone.
    ok(&phone, &["send", "bob", "new name"]);
    ok(&phone, &["send", "carol", "new name"]);
    let out = ok(&bob, &["sync"]);
    assert!(out.contains("* alice is now Alice B."), "{out}");
    assert!(out.contains("Alice B.: new name"), "{out}");
    assert_eq!(names(&bob), ["Alice B."]);
    // carol keeps her own name for alice.
    let out = ok(&carol, &["sync"]);
    assert!(
        out.contains("* alice is now Alice B. (you call them Ally)"),
        "{out}"
    );
    assert_eq!(names(&carol), ["Ally"]);
    // Said once: the next message is not news.
    ok(&laptop, &["send", "bob", "again"]);
    let out = ok(&bob, &["sync"]);
    assert!(!out.contains("is now"), "{out}");
    assert_eq!(
        texts(&bob, "Alice B.").last().unwrap(),
        &(false, "again".to_owned())
    );
}

#[test]
fn a_removed_contact_is_gone_from_every_device_and_can_be_added_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, laptop, phone, bob) = alice_on_two_devices_with_bob(dir.path());
    ok(&bob, &["send", "alice", "hello"]);
    ok(&laptop, &["sync"]);
    ok(&phone, &["sync"]);

    // Refused, nothing changed: no confirmation without a terminal, an unknown name.
    let e = fails(&laptop, &["contact", "remove", "bob"], 7);
    assert!(e.contains("--yes"), "{e}");
    fails(&laptop, &["contact", "remove", "nobody", "--yes"], 3);
    assert_eq!(names(&laptop), ["bob"]);

    let out = ok(&laptop, &["contact", "remove", "BOB", "--yes"]);
    assert!(out.contains("Removed \"bob\""), "{out}");
    assert!(names(&laptop).is_empty());
    fails(&laptop, &["history", "bob"], 3);
    // The phone takes it from the log: the contact and the conversation are gone.
    let out = ok(&phone, &["sync"]);
    assert!(out.contains("contact \"bob\" was removed"), "{out}");
    assert!(names(&phone).is_empty());
    fails(&phone, &["send", "bob", "still there?"], 3);

    // What bob sends now is read by no device of alice's.
    ok(&bob, &["send", "alice", "are you there?"]);
    for home in [&laptop, &phone] {
        let out = ok(home, &["sync"]);
        assert!(!out.contains("are you there"), "{out}");
    }

    // Both sides start again with a new invitation: a new conversation everywhere.
    ok(&bob, &["contact", "remove", "alice", "--yes"]);
    let code = ok(&laptop, &["invite", "--no-qr"]).trim().to_owned();
    ok(&bob, &["accept", &code]);
    ok(&bob, &["send", "alice", "hi again"]);
    let out = ok(&laptop, &["sync"]);
    assert!(out.contains("new contact \"bob\""), "{out}");
    assert!(out.contains("bob: hi again"), "{out}");
    let out = ok(&phone, &["sync"]);
    assert!(out.contains("bob: hi again"), "{out}");
    ok(&phone, &["send", "bob", "welcome back"]);
    let out = ok(&bob, &["sync"]);
    assert!(out.contains("alice: welcome back"), "{out}");
    ok(&laptop, &["sync"]);
    assert_eq!(
        texts(&laptop, "bob"),
        [
            (false, "hi again".to_owned()),
            (true, "welcome back".to_owned())
        ]
    );
}

#[test]
fn a_disappearing_timer_is_agreed_in_band_and_deletes_on_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, laptop, phone, bob) = alice_on_two_devices_with_bob(dir.path());
    ok(&bob, &["send", "alice", "before the timer"]);
    ok(&laptop, &["sync"]);

    // Refused, nothing set: no unit, over four weeks, zero.
    for bad in ["5", "5w", "0s", "soon"] {
        let out = chorus(&laptop, &["contact", "timer", "bob", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
    let out = ok(&laptop, &["contact", "timer", "bob"]);
    assert!(out.contains("do not disappear"), "{out}");

    let out = ok(&laptop, &["contact", "timer", "bob", "3s"]);
    assert!(out.contains("now disappear 3s after"), "{out}");
    // The phone takes it from the log; bob with the next message.
    let out = ok(&phone, &["contact", "timer", "bob"]);
    assert!(out.contains("disappear 3s after"), "{out}");
    ok(&phone, &["send", "bob", "this one vanishes"]);
    let out = ok(&bob, &["sync"]);
    assert!(
        out.contains("* alice set disappearing messages: 3s"),
        "{out}"
    );
    let listed = json(&bob, &["contacts", "--json"]);
    assert_eq!(listed[0]["disappearing_secs"], 3);
    // bob's answer is under the same timer, and says it (nothing new for alice).
    ok(&bob, &["send", "alice", "so does this"]);
    let out = ok(&laptop, &["sync"]);
    assert!(!out.contains("disappearing"), "{out}");
    assert!(out.contains("bob: so does this"), "{out}");

    // Time is up: gone from every device of both, what came before stays.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    ok(&phone, &["sync"]);
    for (home, contact) in [(&laptop, "bob"), (&phone, "bob"), (&bob, "alice")] {
        let left: Vec<String> = texts(home, contact).into_iter().map(|(_, t)| t).collect();
        assert_eq!(left, ["before the timer"], "{}", home.display());
    }

    // Off, from bob's side this time: alice adopts it with his next message.
    ok(&bob, &["contact", "timer", "alice", "off"]);
    ok(&bob, &["send", "alice", "this one stays"]);
    let out = ok(&laptop, &["sync"]);
    assert!(
        out.contains("* bob turned disappearing messages off"),
        "{out}"
    );
    ok(&phone, &["sync"]);
    assert!(ok(&phone, &["contact", "timer", "bob"]).contains("do not disappear"));
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let left: Vec<String> = texts(&laptop, "bob").into_iter().map(|(_, t)| t).collect();
    assert_eq!(left, ["before the timer", "this one stays"]);
}

#[test]
fn an_invitation_code_is_short_and_opens_only_as_its_relay_was_given_it() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| dir.path().join(n));
    for (home, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        ok(home, &["init", "--relay", &relay.url, "--name", name]);
    }
    let code = ok(&alice, &["invite", "--no-qr"]).trim().to_owned();
    assert!(code.len() < 150, "{} characters: {code}", code.len());
    // The relay holds the invitation sealed under the code's secret: a copy it changed
    // is refused, and nothing is added.
    on_relay_db(&relay, "CREATE TABLE honest AS SELECT * FROM file_parts");
    on_relay_db(
        &relay,
        "UPDATE file_parts SET data = substr(data, 1, 40) \
         || CASE WHEN substr(data, 41, 1) = x'00' THEN x'01' ELSE x'00' END \
         || substr(data, 42)",
    );
    let e = fails(&bob, &["accept", &code], 6);
    assert!(
        e.contains("gave something other than the invitation"),
        "{e}"
    );
    assert!(names(&bob).is_empty());
    on_relay_db(&relay, "DELETE FROM file_parts");
    on_relay_db(&relay, "INSERT INTO file_parts SELECT * FROM honest");
    ok(&bob, &["accept", &code]);
    assert!(ok(&alice, &["sync"]).contains("new contact \"bob\""));
    // An invitation the relay no longer holds says so.
    let code = ok(&alice, &["invite", "--no-qr"]).trim().to_owned();
    on_relay_db(&relay, "DELETE FROM file_parts");
    let e = fails(&carol, &["accept", &code], 6);
    assert!(e.contains("no longer on its relay"), "{e}");
    assert!(names(&carol).is_empty());
}
