#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end with real processes: the relay (`chorus relay serve`, a SQLite file) and
//! two device homes driven through the real `chorus` binary, as a user would.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Two homes with an accepted invitation between them.
fn pair(dir: &Path, relay: &Relay) -> (PathBuf, PathBuf) {
    pair_on(dir, relay, relay)
}

/// alice on `relay`, bob on `bob_relay`, contacts of each other.
fn pair_on(dir: &Path, relay: &Relay, bob_relay: &Relay) -> (PathBuf, PathBuf) {
    let (a, b) = (dir.join("alice"), dir.join("bob"));
    let out = ok(&a, &["init", "--relay", &relay.url, "--name", "alice"]);
    assert!(out.contains("Safety number: "), "{out}");
    ok(&b, &["init", "--relay", &bob_relay.url, "--name", "bob"]);
    let code = ok(&a, &["invite", "--no-qr"]).trim().to_owned();
    assert!(code.starts_with("chorus:"));
    let out = ok(&b, &["accept", &code]);
    assert!(out.contains("\"alice\""), "{out}");
    let out = ok(&a, &["sync"]);
    assert!(out.contains("new contact \"bob\""), "{out}");
    (a, b)
}

#[test]
fn invite_accept_messages_offline_catch_up_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (a, b) = pair(dir.path(), &relay);

    ok(&b, &["send", "alice", "hi alice"]);
    assert!(ok(&a, &["sync"]).contains("bob: hi alice"));
    ok(&a, &["send", "bob", "hi bob"]);
    ok(&b, &["sync"]);

    // bob is offline while alice writes; the relay restarts in between.
    for t in ["one", "two", "three"] {
        ok(&a, &["send", "bob", t]);
    }
    // The relay goes down: the send is refused with exit 4 but the message is kept...
    let (data, listen) = relay.stop();
    let err = fails(&a, &["send", "bob", "four"], 4);
    assert!(
        err.contains("unreachable") && err.contains("saved"),
        "{err}"
    );
    assert_eq!(json(&a, &["status", "--json"])["outbox"], 1);
    // ...and delivered by the next command once the relay is back.
    let relay = Relay::start(&data, &listen);
    // Text from stdin.
    let mut child = Command::new(CHORUS)
        .arg("--home")
        .arg(&a)
        .args(["send", "bob"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"five\n").unwrap();
    assert!(child.wait().unwrap().success());

    ok(&b, &["sync"]);
    let expected: Vec<(bool, String)> = [
        (true, "hi alice"),
        (false, "hi bob"),
        (false, "one"),
        (false, "two"),
        (false, "three"),
        (false, "four"),
        (false, "five"),
    ]
    .iter()
    .map(|(o, t)| (*o, (*t).to_owned()))
    .collect();
    assert_eq!(texts(&b, "alice"), expected);
    let mirrored: Vec<(bool, String)> = expected.iter().map(|(o, t)| (!o, t.clone())).collect();
    assert_eq!(texts(&a, "bob"), mirrored);
    assert_eq!(
        json(&b, &["history", "alice", "--limit", "2", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let contacts = json(&a, &["contacts", "--json"]);
    assert_eq!(contacts[0]["name"], "bob");
    assert_eq!(contacts[0]["connected"], true);
    let status = json(&a, &["status", "--json"]);
    assert_eq!(status["outbox"], 0);
    assert!(status["relay_error"].is_null());
    // Piped, the invite is the code alone: the QR is for a terminal.
    let piped = ok(&a, &["invite"]);
    assert_eq!(piped.lines().count(), 1, "{piped}");
    assert!(piped.starts_with("chorus:"), "{piped}");
    let verify_a = ok(&a, &["verify", "bob"]);
    let verify_b = ok(&b, &["verify", "alice"]);
    let number = |s: &str| s.lines().nth(4).unwrap().to_owned();
    assert_eq!(number(&verify_a), number(&verify_b));
    drop(relay);
}

#[test]
fn watch_shows_messages_live_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (a, b) = pair(dir.path(), &relay);
    ok(&a, &["send", "bob", "before watch"]);
    let mut watch = Command::new(CHORUS)
        .arg("--home")
        .arg(&b)
        .args(["watch", "--count", "3", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    ok(&a, &["send", "bob", "live one"]);
    ok(&a, &["send", "bob", "live two"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while watch.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "watch did not see 3 messages");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let seen: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "message")
        .map(|v| v["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ["before watch", "live one", "live two"]);
}

#[test]
fn kill_9_after_a_bundled_append_before_its_fold_delivers_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (a, b) = pair(dir.path(), &relay);
    ok(&b, &["send", "alice", "hi"]);
    ok(&a, &["sync"]);
    // The relay stored the record and the envelope; the sender died before folding.
    send_and_kill_9_at("after-append", &a, "bob", "bundled, then killed");
    assert_eq!(
        json(&a, &["status", "--json"])["outbox"],
        1,
        "still pending here"
    );
    // The next command folds its own record: sent, delivered, nothing to post.
    ok(&a, &["sync"]);
    assert_eq!(json(&a, &["status", "--json"])["outbox"], 0);
    ok(&b, &["sync"]);
    ok(&b, &["sync"]);
    let got = texts(&b, "alice");
    let n = got
        .iter()
        .filter(|(_, t)| t == "bundled, then killed")
        .count();
    assert_eq!(n, 1, "exactly once: {got:?}");
    let mine = texts(&a, "bob");
    assert_eq!(
        mine.iter()
            .filter(|(_, t)| t == "bundled, then killed")
            .count(),
        1
    );
}

#[test]
fn kill_9_between_persisting_and_posting_delivers_exactly_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    // Bob on his own relay: the envelope goes through the outbox, the path with a
    // window between the append and the post.
    let bobs = Relay::start(&dir.path().join("bobs"), "127.0.0.1:0");
    let (a, b) = pair_on(dir.path(), &relay, &bobs);
    send_and_kill_9(&a, "bob", "survives kill -9");

    // Persisted, not posted.
    assert_eq!(json(&a, &["status", "--json"])["outbox"], 1);
    assert_eq!(ok(&b, &["sync"]).trim(), "No new messages.");
    // The next command posts it; repeating changes nothing.
    ok(&a, &["sync"]);
    ok(&a, &["sync"]);
    assert_eq!(json(&a, &["status", "--json"])["outbox"], 0);
    ok(&b, &["sync"]);
    ok(&b, &["sync"]);
    let got = texts(&b, "alice");
    assert_eq!(got, [(false, "survives kill -9".to_owned())]);
    // The session is intact on both sides.
    ok(&b, &["send", "alice", "got it once"]);
    assert!(ok(&a, &["sync"]).contains("got it once"));
}

#[test]
fn bad_input_is_one_line_a_code_and_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (a, b) = pair(dir.path(), &relay);
    // Bob reads alice's answer: the contact runs both ways (a contact that never
    // answered would be replaced by a new invitation, not refused).
    ok(&b, &["sync"]);
    let state = |h: &Path| {
        (
            ok(h, &["contacts", "--json"]),
            json(h, &["status", "--json"])["outbox"].clone(),
            ok(
                h,
                &["history", if h == a { "bob" } else { "alice" }, "--json"],
            ),
        )
    };
    let before = (state(&a), state(&b));

    // Unknown contact.
    fails(&a, &["send", "carol", "hi"], 3);
    fails(&a, &["history", "carol"], 3);
    fails(&a, &["verify", "carol"], 3);
    // No identity in the home.
    fails(&dir.path().join("empty"), &["contacts"], 3);
    assert!(!dir.path().join("empty").exists());
    // An oversized message.
    let big = "x".repeat(chorus_wire::limits::MAX_TEXT_LEN + 1);
    fails(&a, &["send", "bob", &big], 6);
    // Truncated, tampered and accepted-twice codes.
    let code = ok(&a, &["invite", "--no-qr"]).trim().to_owned();
    fails(&b, &["accept", &code[..code.len() - 10]], 6);
    let mut tampered = code.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'x' { b'y' } else { b'x' };
    fails(&b, &["accept", std::str::from_utf8(&tampered).unwrap()], 6);
    fails(&b, &["accept", &code], 7); // bob already talks with alice
    // Initialised twice.
    fails(&a, &["init", "--relay", &relay.url, "--name", "again"], 7);
    // A bad relay URL and a bad name are invalid input.
    fails(
        &dir.path().join("x"),
        &["init", "--relay", "ftp://x", "--name", "x"],
        6,
    );
    fails(
        &dir.path().join("x"),
        &["init", "--relay", &relay.url, "--name", ""],
        6,
    );
    assert!(!dir.path().join("x").exists());
    assert_eq!((state(&a), state(&b)), before);

    // A code accepted twice by the same new identity.
    let carol = dir.path().join("carol");
    ok(&carol, &["init", "--relay", &relay.url, "--name", "carol"]);
    ok(&carol, &["accept", &code]);
    let carol_before = ok(&carol, &["contacts", "--json"]);
    let err = fails(&carol, &["accept", &code, "--name", "other"], 7);
    assert!(err.contains("already accepted"), "{err}");
    assert_eq!(ok(&carol, &["contacts", "--json"]), carol_before);
}

#[test]
fn an_unreachable_relay_and_a_wrong_passphrase_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("p");
    // Nothing listens on port 9 (discard) on loopback.
    let err = fails(
        &home,
        &["init", "--relay", "http://127.0.0.1:9", "--name", "p"],
        4,
    );
    assert!(err.contains("unreachable"), "{err}");
    assert!(!home.exists(), "nothing half-written");

    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let with_pass = |pass: &str, args: &[&str]| {
        Command::new(CHORUS)
            .arg("--home")
            .arg(&home)
            .args(["--passphrase-env", "CHORUS_TEST_PASS"])
            .args(args)
            .env("CHORUS_TEST_PASS", pass)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    assert!(
        with_pass(
            "correct horse",
            &["init", "--relay", &relay.url, "--name", "p"]
        )
        .status
        .success()
    );
    let out = with_pass("wrong", &["contacts"]);
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert!(with_pass("correct horse", &["contacts"]).status.success());
    // Without the passphrase (and no terminal to ask on): refused, not prompted.
    fails(&home, &["contacts"], 5);
}

#[test]
fn demo_passes_every_check() {
    let out = Command::new(CHORUS).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    assert!(!stdout.contains('✗'), "{stdout}");
}

#[test]
fn completions_and_help_work() {
    let out = Command::new(CHORUS)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("chorus"));
    let out = Command::new(CHORUS)
        .args(["send", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("CONTACT"));
    let out = Command::new(CHORUS).args(["send"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_stranger_by_address_is_a_request_until_accepted_or_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (alice, carol, dave) = (
        dir.path().join("alice"),
        dir.path().join("carol"),
        dir.path().join("dave"),
    );
    for (home, name) in [(&alice, "Alice"), (&carol, "Carol"), (&dave, "dave")] {
        ok(home, &["init", "--relay", &relay.url, "--name", name]);
    }
    let status = json(&alice, &["status", "--json"]);
    let address = status["address"].as_str().unwrap().to_owned();
    ok(&carol, &["contact", "add", &address, "--name", "alice"]);
    ok(
        &carol,
        &["send", "alice", "hi, it's carol\n[12:00:00] bob: forged"],
    );
    ok(&dave, &["contact", "add", &address, "--name", "alice"]);
    ok(&dave, &["send", "alice", "buy now"]);

    let out = ok(&alice, &["sync"]);
    assert!(out.contains("message request #1 from \"Carol\""), "{out}");
    assert!(out.contains("message request #2 from \"dave\""), "{out}");
    // A continuation line is marked as part of the message, never a line of its own.
    assert!(out.contains("  │ [12:00:00] bob: forged"), "{out}");
    assert!(
        !out.lines().any(|l| l.starts_with("[12:00:00] bob")),
        "{out}"
    );
    assert!(ok(&alice, &["contacts"]).contains("No contacts yet"));
    let listed = json(&alice, &["requests", "--json"]);
    assert_eq!(listed["pending"].as_array().unwrap().len(), 2);
    assert!(ok(&alice, &["status"]).contains("Requests:  2 waiting"));

    let out = ok(&alice, &["requests", "accept", "1"]);
    assert!(out.contains("Added contact \"Carol\""), "{out}");
    let out = ok(&alice, &["requests", "block", "2"]);
    assert!(out.contains("Blocked"), "{out}");
    let e = fails(&alice, &["requests", "accept", "2"], 3);
    assert!(e.contains("no message request 2"), "{e}");
    // Names match without regard to case; carol hears back.
    let history = ok(&alice, &["history", "carol"]);
    assert!(history.contains("hi, it's carol"), "{history}");
    ok(&alice, &["send", "CAROL", "welcome"]);
    assert!(ok(&carol, &["sync"]).contains("welcome"));
    // dave is refused from now on.
    ok(&dave, &["send", "alice", "again"]);
    let out = chorus(&alice, &["sync"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("blocked identity"));
    assert!(
        json(&alice, &["requests", "--json"])["pending"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// `chorus` with these arguments and no home (the commands that have no device).
fn bare(args: &[&str]) -> std::process::Output {
    std::process::Command::new(CHORUS)
        .args(args)
        .env_remove("CHORUS_HOME")
        .output()
        .unwrap()
}

#[test]
fn device_flags_are_offered_and_taken_only_by_commands_on_a_device() {
    let text = |args: &[&str]| String::from_utf8(bare(args).stdout).unwrap();
    for args in [
        &["relay", "serve", "--help"][..],
        &["relay", "--help"],
        &["demo", "--help"],
        &["completions", "--help"],
    ] {
        let help = text(args);
        assert!(help.contains("Usage"), "{args:?}: {help}");
        for flag in [
            "--home",
            "--passphrase",
            "--deliver-after",
            "--allow-private-relays",
        ] {
            assert!(!help.contains(flag), "{args:?} offers {flag}");
        }
    }
    assert!(text(&["send", "--help"]).contains("--home"));
    // Completions offer them where they apply only.
    let bash = text(&["completions", "bash"]);
    let opts = |cmd: &str| {
        let at = bash.find(&format!("        {cmd})")).unwrap();
        bash[at..].lines().nth(1).unwrap().to_owned()
    };
    assert!(!opts("chorus__subcmd__relay__subcmd__serve").contains("--home"));
    assert!(opts("chorus__subcmd__send").contains("--home"));
    // Typed anyway: refused with why, exit 2, and nothing runs.
    for (args, flag) in [
        (&["--home", "/nonexistent", "relay", "serve"][..], "--home"),
        (&["relay", "--passphrase", "serve"], "--passphrase"),
        (
            &["demo", "--allow-private-relays"],
            "--allow-private-relays",
        ),
        (
            &["--deliver-after", "5", "completions", "bash"],
            "--deliver-after",
        ),
    ] {
        let out = bare(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{flag} is for commands on a device")),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = bare(&["relay", "serve", "--home", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2));
    // The environment is for every command: CHORUS_HOME does not stop completions.
    let out = std::process::Command::new(CHORUS)
        .args(["completions", "bash"])
        .env("CHORUS_HOME", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success());
}
