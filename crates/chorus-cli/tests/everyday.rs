#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The everyday things a new user meets first, with real processes: hints, piped
//! codes, one-line errors with the README's exit codes, a relay on `localhost`, what
//! `sync` and `watch` say.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::*;

/// Runs `chorus --home HOME ARGS` with `input` on stdin.
fn with_stdin(home: &Path, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(CHORUS)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("CHORUS_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_new_user_is_told_the_next_step_and_piped_codes_work() {
    let dir = tempfile::tempdir().unwrap();
    // `--listen` takes a host name.
    let relay = Relay::start(&dir.path().join("relay"), "localhost:0");
    assert!(relay.url.starts_with("http://127.0.0.1:"), "{}", relay.url);
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    let out = ok(&alice, &["init", "--relay", &relay.url, "--name", "alice"]);
    assert!(out.contains("chorus invite"), "{out}");
    assert!(out.contains("chorus link new"), "{out}");
    ok(&bob, &["init", "--relay", &relay.url, "--name", "bob"]);

    // The device is named after the host unless told otherwise.
    let host = gethostname::gethostname().into_string().unwrap();
    let devices = json(&alice, &["devices", "--json"]);
    assert_eq!(devices[0]["name"], host.trim());

    // `invite | accept -`: piped, the code alone (no QR), and accept reads it.
    let code = ok(&alice, &["invite"]);
    assert_eq!(code.lines().count(), 1, "no QR when piped: {code}");
    let accepted = with_stdin(
        &bob,
        &["accept", "-", "--name", "Alice Smith"],
        code.as_bytes(),
    );
    let out = String::from_utf8_lossy(&accepted.stdout);
    assert!(accepted.status.success(), "{out}");
    // A name with a space is quoted in the hint, so it can be pasted.
    assert!(out.contains("`chorus verify \"Alice Smith\"`"), "{out}");

    // An empty sync says so.
    ok(&alice, &["sync"]);
    assert_eq!(ok(&alice, &["sync"]).trim(), "No new messages.");
}

#[test]
fn refusals_are_one_line_with_the_documented_code_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, laptop, phone, bob) = alice_on_two_devices_with_bob(dir.path());
    let history = ok(&laptop, &["history", "bob", "--json"]);

    // Whitespace alone is not a message (6), from an argument or from stdin.
    let e = fails(&laptop, &["send", "bob", " \t "], 6);
    assert!(e.contains("empty (or only whitespace)"), "{e}");
    let out = with_stdin(&laptop, &["send", "bob"], b"  \n\n");
    assert_eq!(out.status.code(), Some(6));
    // Input that is not UTF-8 is invalid input (6), one line.
    let out = with_stdin(&laptop, &["send", "bob"], b"caf\xe9");
    assert_eq!(out.status.code(), Some(6));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim(), "error: stdin is not UTF-8 text");
    // A link code pasted into `accept` says where it goes.
    let e = fails(&bob, &["accept", "chorus-link:AAAA"], 6);
    assert!(e.contains("chorus link approve"), "{e}");
    assert_eq!(ok(&laptop, &["history", "bob", "--json"]), history);

    // A relay that cannot be reached: one line, the cause, not the HTTP client's chain.
    let dead = dir.path().join("dead");
    let e = fails(
        &dead,
        &["init", "--relay", "http://127.0.0.1:9", "--name", "x"],
        4,
    );
    assert!(e.contains("relay http://127.0.0.1:9 is unreachable"), "{e}");
    assert!(!e.contains("error sending request"), "{e}");

    // A port already taken is not "relay unreachable": 7, one line.
    let taken = relay.url.trim_start_matches("http://").to_owned();
    let out = Command::new(CHORUS)
        .args(["relay", "serve", "--listen", &taken, "--data-dir"])
        .arg(dir.path().join("relay2"))
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("binding {taken}")), "{stderr}");

    // What a sibling sent shows which conversation it is in.
    ok(&phone, &["send", "bob", "from the phone"]);
    let out = ok(&laptop, &["sync"]);
    assert!(out.contains("alice → bob: from the phone"), "{out}");
}

#[test]
fn watch_says_when_it_reconnected_and_repeats_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    ok(&alice, &["init", "--relay", &relay.url, "--name", "alice"]);
    ok(&bob, &["init", "--relay", &relay.url, "--name", "bob"]);
    let code = ok(&alice, &["invite", "--no-qr"]).trim().to_owned();
    ok(&bob, &["accept", &code]);
    ok(&alice, &["sync"]);

    let mut watch = Command::new(CHORUS)
        .arg("--home")
        .arg(&alice)
        .args(["watch", "--count", "1"])
        .env_remove("CHORUS_HOME")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its stderr, line by line, as it comes.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(watch.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (data, addr) = relay.stop();
    // Several retries fail meanwhile (the backoff starts at a fraction of a second).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _relay = Relay::start(&data, &addr);
    let mut lines = Vec::new();
    while lines
        .last()
        .is_none_or(|l: &String| !l.starts_with("reconnected"))
    {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("watch never said it reconnected: {lines:?}"));
        lines.push(line);
    }
    ok(&bob, &["send", "alice", "after the outage"]);
    let out = watch.wait_with_output().unwrap();
    lines.extend(rx.try_iter());
    assert!(out.status.success(), "{lines:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bob: after the outage"),
        "{out:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("warning: relay")),
        "{lines:?}"
    );
    assert!(
        lines.windows(2).all(|w| w[0] != w[1]),
        "an error repeated: {lines:?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("reconnected to the relay; caught up"),
        "{lines:?}"
    );
    // No colour codes when stderr is not a terminal.
    assert!(!lines.iter().any(|l| l.contains('\u{1b}')), "{lines:?}");
}

#[test]
fn a_message_queued_while_the_relay_is_away_keeps_the_time_it_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, laptop, _phone, bob) = alice_on_two_devices_with_bob(dir.path());
    let now = || {
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    };
    let (data, addr) = relay.stop();
    let written = now();
    let e = fails(&laptop, &["send", "bob", "written offline"], 4);
    assert!(e.contains("saved and will be delivered"), "{e}");
    // Pending in the history meanwhile, with the reason it waits.
    let history = json(&laptop, &["history", "bob", "--json"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["delivery"]["state"], "pending", "{last}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _relay = Relay::start(&data, &addr);
    let back = now();
    ok(&laptop, &["sync"]);
    let out = ok(&bob, &["sync"]);
    assert!(out.contains("alice: written offline"), "{out}");
    for (home, contact) in [(&laptop, "bob"), (&bob, "alice")] {
        let history = json(home, &["history", contact, "--json"]);
        let m = history
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["text"] == "written offline")
            .unwrap()
            .clone();
        let sent = m["sent_ms"].as_i64().unwrap();
        assert!(written <= sent && sent < back, "{written} {sent} {back}");
    }
    let history = json(&laptop, &["history", "bob", "--json"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["delivery"]["state"], "sent", "{last}");
}

#[test]
fn a_device_renamed_on_one_device_is_renamed_on_all() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, laptop, phone, _bob) = alice_on_two_devices_with_bob(dir.path());
    let names = |home: &Path| -> Vec<String> {
        json(home, &["devices", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Refused, nothing changed: an unknown device, an empty or too long name.
    fails(&laptop, &["devices", "rename", "tablet", "x"], 3);
    fails(&laptop, &["devices", "rename", "phone", "  "], 6);
    fails(&laptop, &["devices", "rename", "phone", &"n".repeat(65)], 6);
    assert!(names(&phone).contains(&"phone".to_owned()));

    let out = ok(&laptop, &["devices", "rename", "PHONE", "old phone"]);
    assert!(
        out.contains("Renamed the device \"phone\" to \"old phone\""),
        "{out}"
    );
    for home in [&laptop, &phone] {
        let listed = names(home);
        assert!(listed.contains(&"old phone".to_owned()), "{listed:?}");
        assert!(!listed.contains(&"phone".to_owned()), "{listed:?}");
    }
    // The new name finds it; the old one no longer does.
    ok(&phone, &["devices", "rename", "old phone", "phone 2"]);
    fails(&laptop, &["devices", "rename", "old phone", "x"], 3);
    assert!(names(&laptop).contains(&"phone 2".to_owned()));
}
