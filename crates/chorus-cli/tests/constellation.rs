#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Several devices per identity, end to end with real processes: the relay binary and
//! one `chorus` home per device, linked with `chorus link new` / `chorus link approve`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

mod common;
use common::*;

/// A relay, alice on a laptop and a linked phone, and bob (not yet contacts).
fn alice_on_two_devices_and_bob(dir: &Path) -> (Relay, PathBuf, PathBuf, PathBuf) {
    let relay = Relay::start(&dir.join("relay"), "127.0.0.1:0");
    let (laptop, phone, bob) = (dir.join("laptop"), dir.join("phone"), dir.join("bob"));
    ok(&laptop, &["init", "--relay", &relay.url, "--name", "alice"]);
    ok(&bob, &["init", "--relay", &relay.url, "--name", "bob"]);
    link(&laptop, &phone, &relay, "phone");
    (relay, laptop, phone, bob)
}

fn history(home: &Path, contact: &str) -> Vec<(bool, String)> {
    texts(home, contact)
}

/// The conversation with `contact` on the first of `devices`, after checking that it
/// holds `len` messages, none twice, and that every other device shows the same one in
/// the same order.
fn one_history(devices: &[PathBuf], contact: &str, len: usize) -> Vec<(bool, String)> {
    let reference = history(&devices[0], contact);
    assert_eq!(reference.len(), len, "nothing lost, nothing duplicated");
    let mut unique = reference.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), len);
    for home in &devices[1..] {
        assert_eq!(history(home, contact), reference, "{}", home.display());
    }
    reference
}

/// The contact's view mirrors ours: one identity on each side, every message of every
/// device read.
fn mirrors(ours: &[(bool, String)], theirs: &[(bool, String)]) {
    let mut a = ours.to_vec();
    let mut b: Vec<(bool, String)> = theirs.iter().map(|(o, t)| (!o, t.clone())).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn three_devices_and_two_devices_send_concurrently_and_agree_on_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let alice: Vec<PathBuf> = (1..=3)
        .map(|i| dir.path().join(format!("alice{i}")))
        .collect();
    let bob: Vec<PathBuf> = (1..=2)
        .map(|i| dir.path().join(format!("bob{i}")))
        .collect();
    ok(
        &alice[0],
        &[
            "init",
            "--relay",
            &relay.url,
            "--name",
            "alice",
            "--device-name",
            "laptop",
        ],
    );
    ok(&bob[0], &["init", "--relay", &relay.url, "--name", "bob"]);
    link(&alice[0], &alice[1], &relay, "phone");
    link(&alice[0], &alice[2], &relay, "tablet");
    link(&bob[0], &bob[1], &relay, "bob's phone");
    let devices = json(&alice[2], &["devices", "--json"]);
    let names: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["laptop", "phone", "tablet"]);

    let code = ok(&alice[1], &["invite", "--no-qr"]);
    ok(&bob[1], &["accept", code.trim()]);
    for home in alice.iter().chain(&bob) {
        ok(home, &["sync"]);
    }
    for home in &alice {
        assert_eq!(json(home, &["contacts", "--json"])[0]["name"], "bob");
    }

    // All five devices send at once: 40 messages each.
    let mut senders = Vec::new();
    for (i, home) in alice.iter().chain(&bob).enumerate() {
        let home = home.clone();
        let to = if i < 3 { "bob" } else { "alice" };
        senders.push(thread::spawn(move || {
            for n in 0..40 {
                ok(&home, &["send", to, &format!("device {i} message {n}")]);
            }
        }));
    }
    for s in senders {
        s.join().unwrap();
    }
    // A fourth device joins mid-conversation and sends at once.
    let laptop2 = dir.path().join("alice4");
    link(&alice[0], &laptop2, &relay, "desktop");
    assert_eq!(json(&laptop2, &["contacts", "--json"])[0]["name"], "bob");
    ok(&laptop2, &["send", "bob", "hello from the desktop"]);

    for _ in 0..2 {
        for home in alice.iter().chain(&bob).chain([&laptop2]) {
            ok(home, &["sync"]);
        }
    }
    let reference = one_history(&alice, "bob", 201);
    let at_bob = one_history(&bob, "alice", 201);
    mirrors(&reference, &at_bob);
    // The desktop, linked mid-conversation, brought the history with it: the same
    // conversation, in the same order, as every other device.
    assert_eq!(history(&laptop2, "bob"), reference);
}

#[test]
fn a_device_killed_right_after_its_sent_append_is_delivered_once_by_a_sibling() {
    let dir = tempfile::tempdir().unwrap();
    // Bob on another relay: the envelope goes through the outbox (a bundled send to
    // a contact on our own relay is delivered with its record).
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let bobs = Relay::start(&dir.path().join("bobs"), "127.0.0.1:0");
    let (laptop, phone, bob) = (
        dir.path().join("laptop"),
        dir.path().join("phone"),
        dir.path().join("bob"),
    );
    ok(&laptop, &["init", "--relay", &relay.url, "--name", "alice"]);
    ok(&bob, &["init", "--relay", &bobs.url, "--name", "bob"]);
    link(&laptop, &phone, &relay, "phone");
    let code = ok(&bob, &["invite", "--no-qr"]);
    ok(&laptop, &["accept", code.trim()]);
    ok(&bob, &["sync"]);
    ok(&phone, &["sync"]);

    // The laptop dies right after its Sent event is in the log, before posting.
    send_and_kill_9(&laptop, "bob", "the laptop died here");
    assert_eq!(
        ok(&bob, &["sync"]).trim(),
        "No new messages.",
        "not posted yet"
    );

    // Too early: the phone leaves the laptop's message to the laptop for a while.
    ok(&phone, &["sync", "--deliver-after", "3600"]);
    assert_eq!(json(&phone, &["status", "--json"])["outbox"], 1);
    assert_eq!(ok(&bob, &["sync"]).trim(), "No new messages.");
    // After the wait the phone delivers it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(&phone, &["sync", "--deliver-after", "1"]);
    assert_eq!(json(&phone, &["status", "--json"])["outbox"], 0);
    // The laptop comes back: it sees the delivery and posts nothing again.
    ok(&laptop, &["sync"]);
    assert_eq!(json(&laptop, &["status", "--json"])["outbox"], 0);
    ok(&bob, &["sync"]);
    ok(&bob, &["sync"]);
    let got: Vec<(bool, String)> = texts(&bob, "alice");
    assert_eq!(
        got,
        [(false, "the laptop died here".to_owned())],
        "exactly once"
    );
    // The conversation goes on from either device.
    ok(&phone, &["send", "bob", "and the phone goes on"]);
    ok(&bob, &["sync"]);
    assert_eq!(texts(&bob, "alice").len(), 2);
}

#[test]
fn a_device_offline_for_100_messages_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, laptop, phone, bob) = alice_on_two_devices_and_bob(dir.path());
    let code = ok(&laptop, &["invite", "--no-qr"]);
    ok(&bob, &["accept", code.trim()]);
    ok(&laptop, &["sync"]);
    // The phone is offline (runs nothing) while 100 messages go both ways.
    for n in 0..50 {
        ok(&laptop, &["send", "bob", &format!("a{n}")]);
        ok(&bob, &["send", "alice", &format!("b{n}")]);
    }
    ok(&laptop, &["sync"]);
    ok(&phone, &["sync"]);
    let on_phone = history(&phone, "bob");
    assert_eq!(on_phone.len(), 100);
    assert_eq!(on_phone, history(&laptop, "bob"));
    // And it can send at once.
    ok(&phone, &["send", "bob", "back online"]);
    assert!(ok(&bob, &["sync"]).contains("back online"));
}

#[test]
fn bad_link_commands_are_one_line_a_code_and_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let laptop = dir.path().join("laptop");
    ok(&laptop, &["init", "--relay", &relay.url, "--name", "alice"]);
    let roster = |h: &Path| {
        json(h, &["devices", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let before = roster(&laptop);
    let e = fails(&laptop, &["link", "approve", "chorus-link:AAAA"], 6);
    assert!(e.contains("invalid link code"), "{e}");
    let e = fails(&laptop, &["link", "approve", "chorus:AAAA"], 6);
    assert!(e.contains("does not start with"), "{e}");
    // A code for a channel that does not exist (expired) is refused.
    let expired = chorus_client::link::LinkCode {
        relay_url: relay.url.clone(),
        channel: [9; 32],
        ephemeral: [9; 32],
    }
    .encode();
    let e = fails(&laptop, &["link", "approve", &expired], 7);
    assert!(e.contains("expired"), "{e}");
    // `link new` into a home that already holds an identity.
    let e = fails(&laptop, &["link", "new", "--relay", &relay.url, "--yes"], 7);
    assert!(e.contains("already holds"), "{e}");
    assert_eq!(roster(&laptop), before);
    assert_eq!(before.len(), 1);
}

#[test]
fn primary_root_keeps_the_root_on_the_first_device_and_says_what_the_others_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (laptop, phone, bob) = (
        dir.path().join("laptop"),
        dir.path().join("phone"),
        dir.path().join("bob"),
    );
    let out = ok(
        &laptop,
        &[
            "init",
            "--relay",
            &relay.url,
            "--name",
            "alice",
            "--security",
            "primary-root",
        ],
    );
    assert!(out.contains("primary-root"), "{out}");
    ok(&bob, &["init", "--relay", &relay.url, "--name", "bob"]);
    link(&laptop, &phone, &relay, "phone");
    assert!(ok(&laptop, &["status"]).contains("this device holds the root key"));
    let status = ok(&phone, &["status"]);
    assert!(status.contains("primary-root"), "{status}");
    assert!(
        status.contains("root key is on the primary device"),
        "{status}"
    );

    // The phone cannot create invitations or approve links: one line, exit 7.
    let e = fails(&phone, &["invite", "--no-qr"], 7);
    assert!(e.contains("only the primary device"), "{e}");
    let code = chorus_client::link::LinkCode {
        relay_url: relay.url.clone(),
        channel: [9; 32],
        ephemeral: [9; 32],
    }
    .encode();
    let e = fails(&phone, &["link", "approve", &code], 7);
    assert!(e.contains("only the primary device"), "{e}");
    assert_eq!(
        json(&laptop, &["devices", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let e = fails(&phone, &["devices", "revoke", "laptop", "--yes"], 7);
    assert!(e.contains("only the primary device"), "{e}");

    // Everything else it does as the identity.
    let code = ok(&bob, &["invite", "--no-qr"]);
    ok(&phone, &["accept", code.trim(), "--name", "bob"]);
    ok(&phone, &["send", "bob", "from the primary-root phone"]);
    assert!(ok(&bob, &["sync"]).contains("from the primary-root phone"));
    ok(&laptop, &["sync"]);
    assert_eq!(history(&laptop, "bob"), history(&phone, "bob"));
}

#[test]
fn link_new_killed_after_the_approval_resumes_as_the_same_device() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (laptop, phone) = (dir.path().join("laptop"), dir.path().join("phone"));
    ok(&laptop, &["init", "--relay", &relay.url, "--name", "alice"]);
    // The laptop approves (the phone enters the roster and the bundle is sent); the
    // phone is killed with SIGKILL right after it received the bundle.
    let (mut child, mut stdout, code) =
        start_link_new(&phone, &relay, "phone", Some("link-bundle-received"));
    assert!(approve(&laptop, &code, &mut stdout).0.status.success());
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains("failpoint link-bundle-received reached"),
        "{line}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let devices = |h: &Path| json(h, &["devices", "--json"]).as_array().unwrap().len();
    assert_eq!(devices(&laptop), 2);
    // The phone's home is a link in progress: one line, exit 7.
    let e = fails(&phone, &["status"], 7);
    assert!(e.contains("did not finish"), "{e}");
    // Running the same command again finishes it — as the same device.
    let out = link(&laptop, &phone, &relay, "phone");
    assert!(out.iter().any(|l| l.contains("Resuming")), "{out:?}");
    assert_eq!(devices(&laptop), 2, "one phone, not two");
    assert_eq!(devices(&phone), 2);
}

#[test]
fn link_approve_needs_the_typed_number_and_either_side_learns_of_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (laptop, phone) = (dir.path().join("laptop"), dir.path().join("phone"));
    ok(&laptop, &["init", "--relay", &relay.url, "--name", "alice"]);
    let devices = |h: &Path| json(h, &["devices", "--json"]).as_array().unwrap().len();

    // A wrong number: nothing is approved, and the new device is told so.
    let (mut child, mut lines, code) = start_link_new(&phone, &relay, "phone", None);
    let mut approver = Command::new(CHORUS)
        .arg("--home")
        .arg(&laptop)
        .args(["link", "approve", &code])
        .env_remove("CHORUS_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the new device shows its number, then type another one.
    assert!(lines.any(|l| l.starts_with("Compare this number")));
    writeln!(approver.stdin.take().unwrap(), "123 456 789").unwrap();
    let out = approver.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{e}");
    assert!(e.contains("nothing was approved"), "{e}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(7));
    assert!(stderr.contains("the other device declined"), "{stderr}");
    assert_eq!(devices(&laptop), 1);

    // No way to type the number (stdin closed, not a terminal): it says so and what
    // to do; the new device is told.
    let (mut child, mut lines, code) = start_link_new(&phone, &relay, "phone", None);
    let e = fails(&laptop, &["link", "approve", &code], 7);
    assert!(e.contains("stdin is not a terminal"), "{e}");
    assert!(e.contains("pipe in the digits"), "{e}");
    assert!(lines.any(|l| l.starts_with("Compare this number")));
    assert_eq!(child.wait().unwrap().code(), Some(7));
    assert_eq!(devices(&laptop), 1);

    // The new device without --yes and without a terminal: it says so, and the
    // approving device learns that it declined.
    let mut new = Command::new(CHORUS)
        .arg("--home")
        .arg(&phone)
        .args([
            "link",
            "new",
            "--relay",
            &relay.url,
            "--device-name",
            "phone",
            "--no-qr",
        ])
        .env_remove("CHORUS_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut new_lines = BufReader::new(new.stdout.take().unwrap())
        .lines()
        .map(|l| l.unwrap());
    let code = new_lines
        .find_map(|l| {
            l.trim()
                .strip_prefix("chorus link approve ")
                .map(str::to_owned)
        })
        .unwrap();
    let (out, _) = approve(&laptop, &code, &mut new_lines);
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{e}");
    assert!(e.contains("the other device declined"), "{e}");
    let new_out = new.wait_with_output().unwrap();
    let ne = String::from_utf8_lossy(&new_out.stderr);
    assert!(
        ne.contains("stdin is not a terminal") && ne.contains("--yes"),
        "{ne}"
    );
    assert_eq!(devices(&laptop), 1);
    // And an honest attempt still links.
    link(&laptop, &phone, &relay, "phone");
    assert_eq!(devices(&laptop), 2);
}

#[test]
fn devices_revoke_names_the_device_asks_and_shuts_it_out_while_the_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, laptop, phone, bob) = alice_on_two_devices_and_bob(dir.path());
    let tablet = dir.path().join("tablet");
    link(&laptop, &tablet, &relay, "tablet");
    let devices = |home: &Path| {
        json(home, &["devices", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(devices(&laptop).len(), 3);

    // Refusals are one line and change nothing: no terminal to ask on and no --yes, a
    // device that does not exist, the device running the command.
    let e = fails(&laptop, &["devices", "revoke", "tablet"], 7);
    assert!(e.contains("--yes"), "{e}");
    fails(&laptop, &["devices", "revoke", "watch", "--yes"], 3);
    let own = json(&laptop, &["devices", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["this_device"].as_bool().unwrap())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = fails(&laptop, &["devices", "revoke", &own, "--yes"], 7);
    assert!(e.contains("another device"), "{e}");
    assert_eq!(devices(&laptop).len(), 3);

    let out = ok(&laptop, &["devices", "revoke", "Tablet", "--yes"]);
    assert!(out.contains("Revoked \"tablet\""), "{out}");
    let heard = ok(&phone, &["sync"]);
    assert!(heard.contains("device \"tablet\" was revoked"), "{heard}");
    assert!(!devices(&phone).contains(&"tablet".to_owned()));

    // The tablet is told it was removed, with its own exit code, whatever it runs.
    for args in [&["sync"][..], &["devices"][..]] {
        let e = fails(&tablet, args, 9);
        assert!(e.contains("removed from its identity"), "{e}");
    }

    // The others carry on.
    let code = ok(&bob, &["invite", "--no-qr"]);
    ok(&phone, &["accept", code.trim(), "--name", "bob"]);
    ok(&laptop, &["sync"]);
    ok(
        &laptop,
        &["send", "bob", "from the laptop, after the tablet"],
    );
    assert!(ok(&bob, &["sync"]).contains("from the laptop, after the tablet"));
    ok(&phone, &["sync"]);
    assert_eq!(history(&laptop, "bob"), history(&phone, "bob"));

    // Both remaining devices folded everything (the revoked tablet does not count):
    // the relay lets go of the log, and nothing of the history goes with it.
    let out = ok(&laptop, &["sync", "--compact", "--json"]);
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let kept = last["log_kept_from_seq"].as_i64().unwrap();
    assert!(kept > 10, "the log was trimmed up to seq {kept}");
    assert_eq!(history(&laptop, "bob"), history(&phone, "bob"));
    ok(&phone, &["send", "bob", "after the compaction"]);
    assert!(ok(&bob, &["sync"]).contains("after the compaction"));
}

#[test]
fn a_revoke_killed_before_the_renewal_is_finished_by_the_next_device_that_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, laptop, phone, bob) = alice_on_two_devices_and_bob(dir.path());
    let tablet = dir.path().join("tablet");
    link(&laptop, &tablet, &relay, "tablet");
    let code = ok(&bob, &["invite", "--no-qr"]);
    ok(&phone, &["accept", code.trim(), "--name", "bob"]);
    ok(&laptop, &["sync"]);
    let mailboxes = |h: &Path| {
        json(h, &["status", "--json"])["mailboxes"]
            .as_array()
            .unwrap()
            .len()
    };
    let signed = |h: &Path| json(h, &["status", "--json"])["prekeys"]["signed"].clone();
    ok(&phone, &["sync"]);
    let (before, signed_before) = (mailboxes(&phone), signed(&phone));

    // The laptop is killed after the revocation and the key rotation, before it
    // replaces the prekeys and the mailboxes the tablet knew.
    kill_9_at(
        "revoke-before-renewal",
        &laptop,
        &["devices", "revoke", "tablet", "--yes"],
    );

    // The phone finishes it when it syncs (a new mailbox for bob), and only once: the
    // laptop, syncing after it, renews nothing more.
    let heard = ok(&phone, &["sync"]);
    assert!(heard.contains("device \"tablet\" was revoked"), "{heard}");
    assert_eq!(mailboxes(&phone), before + 1);
    assert_ne!(
        signed(&phone),
        signed_before,
        "the signed prekey was replaced"
    );
    ok(&laptop, &["sync"]);
    ok(&phone, &["sync"]);
    assert_eq!(mailboxes(&laptop), before + 1);
    assert_eq!(mailboxes(&phone), before + 1);

    // Bob moves to the new mailbox with the next message and is heard there.
    ok(&phone, &["send", "bob", "after the revocation"]);
    assert!(ok(&bob, &["sync"]).contains("after the revocation"));
    ok(&bob, &["send", "alice", "to the new mailbox"]);
    assert!(ok(&laptop, &["sync"]).contains("to the new mailbox"));
}

/// Runs `chorus recover` in `home` with `code` on stdin.
fn recover(home: &Path, relay: &Relay, code: &str) -> std::process::Output {
    let mut child = Command::new(CHORUS)
        .arg("--home")
        .arg(home)
        .args([
            "recover",
            "--relay",
            &relay.url,
            "--device-name",
            "new laptop",
        ])
        .env_remove("CHORUS_HOME")
        .env_remove("CHORUS_FAILPOINT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{code}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_recovery_code_makes_a_new_primary_after_the_primary_is_destroyed() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (laptop, phone, bob, new) = (
        dir.path().join("laptop"),
        dir.path().join("phone"),
        dir.path().join("bob"),
        dir.path().join("new"),
    );
    let out = ok(
        &laptop,
        &[
            "init",
            "--relay",
            &relay.url,
            "--name",
            "alice",
            "--security",
            "primary-root",
            "--no-qr",
        ],
    );
    let mut lines = out.lines();
    lines.find(|l| l.starts_with("Recovery code"));
    let code = lines.next().unwrap().trim().to_owned();
    assert_eq!(code.len(), 47, "eight groups of five: {out}");
    ok(&bob, &["init", "--relay", &relay.url, "--name", "bob"]);
    link(&laptop, &phone, &relay, "phone");
    let invite = ok(&laptop, &["invite", "--no-qr"]);
    ok(&bob, &["accept", invite.trim(), "--name", "alice"]);
    ok(&laptop, &["sync"]);
    ok(&laptop, &["send", "bob", "before the loss"]);
    assert!(ok(&bob, &["sync"]).contains("before the loss"));
    ok(&phone, &["sync"]);

    // The laptop is destroyed.
    std::fs::remove_dir_all(&laptop).unwrap();

    // A code nobody has, and a typo in the real one: refused, nothing created.
    let nobody = chorus_client::device::recovery::encode_code(
        &chorus_crypto::RecoveryCode::from_slice(&[7; chorus_crypto::RECOVERY_CODE_LEN]).unwrap(),
    );
    let wrong = recover(&new, &relay, &nobody);
    assert_eq!(wrong.status.code(), Some(3), "{wrong:?}");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no identity at this relay"));
    let typo = format!(
        "{}{}",
        if code.starts_with('A') { "C" } else { "A" },
        &code[1..]
    );
    let typo = recover(&new, &relay, &typo);
    assert_eq!(typo.status.code(), Some(6), "{typo:?}");
    assert!(!new.exists(), "a refused code creates nothing");

    let done = recover(&new, &relay, &code.to_lowercase());
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(out.contains("primary now"), "{out}");
    assert!(out.contains("Revoked the lost primary"), "{out}");
    let devices = json(&new, &["devices", "--json"]);
    let names: Vec<(&str, bool)> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap(), d["primary"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("phone", false), ("new laptop", true)]);
    let status = ok(&new, &["status"]);
    assert!(
        status.contains("this device holds the root key"),
        "{status}"
    );
    assert!(status.contains("a recovery code is set"), "{status}");
    assert!(ok(&phone, &["status"]).contains("a recovery code is set"));
    assert!(ok(&bob, &["status"]).contains("no recovery code"));
    assert_eq!(history(&new, "bob"), [(true, "before the loss".to_owned())]);

    // The new primary and the phone carry on; Bob hears both.
    ok(&new, &["send", "bob", "I am back"]);
    ok(&phone, &["send", "bob", "so is the phone"]);
    let got = ok(&bob, &["sync"]);
    assert!(
        got.contains("I am back") && got.contains("so is the phone"),
        "{got}"
    );
    assert_eq!(
        json(&phone, &["devices", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The old code still opens the identity's slot: a second recovery elsewhere
    // would work too, so a new code can be made (and the old one stops working).
    let fresh = ok(&new, &["security", "recovery-code", "--no-qr"]);
    assert!(fresh.contains("Recovery code"), "{fresh}");
    let stale = recover(&dir.path().join("later"), &relay, &code);
    assert_eq!(stale.status.code(), Some(3), "{stale:?}");
}

#[test]
fn security_set_moves_the_root_to_the_primary_and_back_to_every_device() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, laptop, phone, _bob) = alice_on_two_devices_and_bob(dir.path());
    ok(&phone, &["invite", "--no-qr"]);
    let out = ok(&laptop, &["security", "set", "primary-root", "--no-qr"]);
    assert!(out.contains("this device is the primary"), "{out}");
    assert!(
        out.contains("Recovery code"),
        "a code is shown when there was none: {out}"
    );
    let again = ok(&laptop, &["security", "set", "primary-root", "--no-qr"]);
    assert!(again.contains("already is primary-root"), "{again}");
    let seen = ok(&phone, &["sync"]);
    assert!(seen.contains("no longer holds the root key"), "{seen}");
    let e = fails(&phone, &["invite", "--no-qr"], 7);
    assert!(e.contains("only the primary device"), "{e}");
    let e = fails(&phone, &["security", "set", "shared-root"], 7);
    assert!(e.contains("only the primary device"), "{e}");
    let bad = chorus(&phone, &["security", "set", "middle-root"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error: {bad:?}");

    ok(&laptop, &["security", "set", "shared-root"]);
    let seen = ok(&phone, &["sync"]);
    assert!(seen.contains("this device holds the root key"), "{seen}");
    ok(&phone, &["invite", "--no-qr"]);
    assert!(ok(&phone, &["status"]).contains("shared-root"));
}

#[test]
fn link_new_brings_the_history_resumes_it_after_a_kill_and_no_history_brings_none() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, laptop, _phone, bob) = alice_on_two_devices_and_bob(dir.path());
    let invite = ok(&laptop, &["invite", "--no-qr"]);
    ok(&bob, &["accept", invite.trim(), "--name", "alice"]);
    ok(&laptop, &["sync"]);
    for i in 0..4 {
        ok(&laptop, &["send", "bob", &format!("alice {i}")]);
        ok(&bob, &["sync"]);
        ok(&bob, &["send", "alice", &format!("bob {i}")]);
        ok(&laptop, &["sync"]);
    }
    let before = history(&laptop, "bob");
    assert_eq!(before.len(), 8);

    // The tablet stops (kill -9) right after importing its first history chunk.
    let tablet = dir.path().join("tablet");
    let (mut child, mut lines, code) =
        start_link_new(&tablet, &relay, "tablet", Some("link-history-chunk"));
    let (approved, _) = approve_with(
        &laptop,
        &code,
        &mut lines,
        &["--history-chunk-bytes", "150"],
    );
    assert!(approved.status.success(), "{approved:?}");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("failpoint link-history-chunk reached") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "link new ended early"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = history(&tablet, "bob");
    assert!(
        !partial.is_empty() && partial.len() < before.len(),
        "one chunk in: {partial:?}"
    );
    // The next sync imports the rest: the same conversation, in the same order.
    ok(&tablet, &["sync"]);
    assert_eq!(history(&tablet, "bob"), before);

    // A device linked with --no-history starts at the link.
    let watch = dir.path().join("watch");
    let (mut child, mut lines, code) = {
        let mut before = Vec::new();
        let mut child = Command::new(CHORUS)
            .arg("--home")
            .arg(&watch)
            .args([
                "link",
                "new",
                "--relay",
                &relay.url,
                "--device-name",
                "watch",
                "--no-qr",
                "--yes",
                "--no-history",
            ])
            .env_remove("CHORUS_HOME")
            .env_remove("CHORUS_FAILPOINT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(|l| l.unwrap());
        let code = loop {
            let line = lines.next().unwrap();
            if let Some(code) = line.trim().strip_prefix("chorus link approve ") {
                break code.to_owned();
            }
            before.push(line);
        };
        (child, lines, code)
    };
    let (approved, _) = approve(&laptop, &code, &mut lines);
    assert!(approved.status.success(), "{approved:?}");
    assert!(child.wait().unwrap().success());
    assert!(history(&watch, "bob").is_empty());
}

#[test]
fn identity_roll_asks_moves_the_fingerprint_and_the_contact_sees_a_new_safety_number() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, laptop, phone, bob) = alice_on_two_devices_and_bob(dir.path());
    let code = ok(&laptop, &["invite", "--no-qr"]);
    ok(&bob, &["accept", code.trim(), "--name", "alice"]);
    ok(&laptop, &["sync"]);
    let number = |home: &Path, contact: &str| {
        let out = ok(home, &["verify", contact]);
        let lines: Vec<&str> = out.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with("Safety number"))
            .unwrap();
        lines[at + 1].to_owned()
    };
    let before = number(&bob, "alice");
    let address = |home: &Path| json(home, &["status", "--json"])["address"].clone();
    let old_address = address(&laptop);

    // Without a terminal to ask on and without --yes: one line, nothing changes.
    let e = fails(&laptop, &["identity", "roll"], 7);
    assert!(e.contains("--yes"), "{e}");
    assert_eq!(address(&laptop), old_address);

    let out = ok(&laptop, &["identity", "roll", "--yes"]);
    assert!(out.contains("Rolled the identity key"), "{out}");
    assert_ne!(address(&laptop), old_address);
    let heard = ok(&phone, &["sync"]);
    assert!(
        heard.contains("the identity rolled its root key"),
        "{heard}"
    );
    assert_eq!(address(&phone), address(&laptop));

    // Bob hears it with the next message, whichever device sends it, and the
    // conversation goes on under a new safety number, the same on both sides.
    ok(&phone, &["send", "bob", "after the roll"]);
    let heard = ok(&bob, &["sync"]);
    assert!(
        heard.contains("rolled their identity key (signed by their previous key)"),
        "{heard}"
    );
    assert!(heard.contains("after the roll"), "{heard}");
    let after = number(&bob, "alice");
    assert_ne!(after, before);
    assert!(heard.contains(&after), "the new number is shown: {heard}");
    assert_eq!(number(&laptop, "bob"), after);
}

#[test]
fn a_roll_killed_before_the_relay_heard_of_it_is_finished_by_the_next_roll() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, laptop, phone, _bob) = alice_on_two_devices_and_bob(dir.path());
    let address = |home: &Path| json(home, &["status", "--json"])["address"].clone();
    // The laptop is killed after the roll is in the log, before the relay is shown it.
    kill_9_at("roll-before-relay", &laptop, &["identity", "roll", "--yes"]);
    let first = address(&laptop);

    // Rolled again before any device finished the first: the relay is shown both
    // rolls in order, and only the last root signs from then on.
    let out = ok(&laptop, &["identity", "roll", "--yes"]);
    assert!(out.contains("Rolled the identity key"), "{out}");
    assert_ne!(address(&laptop), first);
    ok(&phone, &["sync"]);
    assert_eq!(address(&phone), address(&laptop));
    // The new root signs device changes at the relay: a device links.
    let tablet = dir.path().join("tablet");
    link(&laptop, &tablet, &relay, "tablet");
    assert_eq!(address(&tablet), address(&laptop));
}

/// Alice on three devices under `strategy` (set at `init` on the first) and bob, as
/// contacts who have exchanged one message each way.
fn three_devices_under(dir: &Path, strategy: &str) -> (Relay, Vec<PathBuf>, PathBuf) {
    let relay = Relay::start(&dir.join("relay"), "127.0.0.1:0");
    let alice: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("alice{i}"))).collect();
    let bob = dir.join("bob");
    let out = ok(
        &alice[0],
        &[
            "init",
            "--relay",
            &relay.url,
            "--name",
            "alice",
            "--device-name",
            "first device",
            "--strategy",
            strategy,
        ],
    );
    assert!(out.contains(&format!("Strategy:      {strategy}")), "{out}");
    ok(&bob, &["init", "--relay", &relay.url, "--name", "bob"]);
    link(&alice[0], &alice[1], &relay, "phone");
    link(&alice[0], &alice[2], &relay, "tablet");
    let code = ok(&alice[1], &["invite", "--no-qr"]);
    ok(&bob, &["accept", code.trim()]);
    ok(&bob, &["send", "alice", "hi alice"]);
    for home in alice.iter().chain([&bob]) {
        ok(home, &["sync"]);
    }
    (relay, alice, bob)
}

/// Each of alice's devices sends `each` messages to bob at once; returns what each
/// `send` printed.
fn all_send_at_once(alice: &[PathBuf], each: usize) -> Vec<String> {
    let senders: Vec<_> = alice
        .iter()
        .enumerate()
        .map(|(i, home)| {
            let home = home.clone();
            thread::spawn(move || {
                (0..each)
                    .map(|n| ok(&home, &["send", "bob", &format!("device {i} message {n}")]))
                    .collect::<Vec<_>>()
                    .join("")
            })
        })
        .collect();
    senders.into_iter().map(|s| s.join().unwrap()).collect()
}

/// Bob answers, then every device syncs twice; alice's devices show one history, and
/// bob's mirrors it.
fn agree_on_one_history(alice: &[PathBuf], bob: &Path, len: usize) {
    ok(bob, &["sync"]);
    ok(bob, &["send", "alice", "got them all"]);
    for _ in 0..2 {
        for home in alice.iter().map(PathBuf::as_path).chain([bob]) {
            ok(home, &["sync"]);
        }
    }
    let reference = one_history(alice, "bob", len);
    mirrors(&reference, &one_history(&[bob.to_path_buf()], "alice", len));
}

#[test]
fn leaderless_three_devices_send_at_once_fork_the_ratchet_and_agree_on_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, alice, bob) = three_devices_under(dir.path(), "leaderless");
    // A linked device folds the choice from the log.
    assert_eq!(ok(&alice[2], &["strategy"]).trim(), "leaderless");
    // Three devices send at once, waiting on no guard: 15 messages each.
    all_send_at_once(&alice, 15);
    agree_on_one_history(&alice, &bob, 47);
    // Back to sequenced, for every device.
    ok(&alice[1], &["strategy", "sequenced"]);
    ok(&alice[0], &["sync"]);
    assert_eq!(ok(&alice[0], &["strategy"]).trim(), "sequenced");
}

#[test]
fn leader_three_devices_send_at_once_through_the_lease_holder_and_agree_on_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, alice, bob) = three_devices_under(dir.path(), "leader");
    // Nobody has sent since the strategy was set: no lease yet.
    let shown = ok(&alice[2], &["strategy"]);
    assert!(shown.contains("leader (no lease holds"), "{shown}");
    let printed = all_send_at_once(&alice, 10);
    // One device took the lease and encrypted; the others handed their messages to it.
    let holder = ok(&alice[0], &["strategy"]);
    let named = ["first device", "phone", "tablet"]
        .into_iter()
        .find(|d| holder.contains(&format!("held by \"{d}\"")))
        .unwrap_or_else(|| panic!("no holder in {holder:?}"));
    let handed = printed.iter().filter(|p| p.contains("Handed to")).count();
    assert!(handed >= 1, "every device encrypted: {printed:?}");
    assert!(
        printed
            .iter()
            .filter(|p| p.contains("Handed to"))
            .all(|p| p.contains(&format!("Handed to \"{named}\""))),
        "{printed:?}"
    );
    // The holder sends what it was handed when it syncs.
    agree_on_one_history(&alice, &bob, 32);
}

#[test]
fn primary_three_devices_send_at_once_through_the_primary_and_agree_on_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, alice, bob) = three_devices_under(dir.path(), "primary");
    assert_eq!(
        ok(&alice[1], &["strategy"]).trim(),
        "primary (the primary is \"first device\")"
    );
    let printed = all_send_at_once(&alice, 10);
    // Only the primary encrypts: the phone and the tablet hand every message to it.
    assert!(!printed[0].contains("Handed to"), "{}", printed[0]);
    for p in &printed[1..] {
        assert_eq!(p.matches("Handed to \"first device\"").count(), 10, "{p}");
    }
    // Until the primary syncs, a message handed over shows as not sent yet on every
    // sibling that folded the request.
    ok(&alice[2], &["send", "bob", "waits for the primary"]);
    ok(&alice[1], &["sync"]);
    let pending = |home: &Path| -> Vec<String> {
        json(home, &["history", "bob", "--json", "--limit", "1000"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["pending"] == true)
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    for home in &alice[1..] {
        assert!(
            pending(home).contains(&"waits for the primary".to_owned()),
            "{}",
            home.display()
        );
    }
    // The siblings never read bob's messages themselves: the primary logs each one.
    agree_on_one_history(&alice, &bob, 33);
    for home in &alice {
        assert_eq!(pending(home), Vec::<String>::new(), "{}", home.display());
    }
    // Set on the tablet, the role moves there.
    ok(&alice[2], &["strategy", "primary"]);
    ok(&alice[0], &["sync"]);
    assert_eq!(
        ok(&alice[0], &["strategy"]).trim(),
        "primary (the primary is \"tablet\")"
    );
    let out = ok(&alice[0], &["send", "bob", "now through the tablet"]);
    assert!(out.contains("Handed to \"tablet\""), "{out}");
    ok(&alice[2], &["sync"]);
    ok(&bob, &["sync"]);
    assert!(
        history(&bob, "alice").contains(&(false, "now through the tablet".to_owned())),
        "{:?}",
        history(&bob, "alice")
    );
}

#[test]
fn per_device_three_devices_send_at_once_on_their_own_sessions_and_agree_on_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, alice, bob) = three_devices_under(dir.path(), "per-device");
    // Both sides must run it: bob too (until then alice sends on the shared session).
    ok(&bob, &["strategy", "per-device"]);
    for home in &alice {
        assert!(ok(home, &["strategy"]).starts_with("per-device"));
    }
    let printed = all_send_at_once(&alice, 10);
    // Nobody hands anything over: every device encrypts for itself.
    assert!(
        printed.iter().all(|p| !p.contains("Handed to")),
        "{printed:?}"
    );
    agree_on_one_history(&alice, &bob, 32);
    // Each of alice's devices holds its own session with bob's one device, and bob's
    // device one with each of alice's: the device count is what bob sees, by design.
    let sessions = |home: &Path| ok(home, &["strategy"]);
    for home in &alice {
        assert!(
            sessions(home).contains("holds 1 sessions with contacts' devices"),
            "{}",
            sessions(home)
        );
    }
    assert!(
        sessions(&bob).contains("holds 3 sessions with contacts' devices"),
        "{}",
        sessions(&bob)
    );
    // A contact that does not run per-device still talks to alice, on the shared
    // session (it publishes no device list).
    let carol = dir.path().join("carol");
    ok(&carol, &["init", "--relay", &relay.url, "--name", "carol"]);
    let code = ok(&alice[2], &["invite", "--no-qr"]);
    ok(&carol, &["accept", code.trim()]);
    ok(&carol, &["send", "alice", "hello from sequenced"]);
    ok(&alice[0], &["sync"]);
    ok(&alice[0], &["send", "carol", "hello back"]);
    ok(&carol, &["sync"]);
    assert!(
        history(&carol, "alice").contains(&(false, "hello back".to_owned())),
        "{:?}",
        history(&carol, "alice")
    );
    for home in &alice {
        ok(home, &["sync"]);
        assert_eq!(
            history(home, "carol"),
            vec![
                (false, "hello from sequenced".to_owned()),
                (true, "hello back".to_owned())
            ],
            "{}",
            home.display()
        );
    }
}

/// A relay, and alice and bob each on one device under `per-device` (not contacts yet).
fn alice_and_bob_per_device(dir: &Path) -> (Relay, PathBuf, PathBuf) {
    let relay = Relay::start(&dir.join("relay"), "127.0.0.1:0");
    let (alice, bob) = (dir.join("alice"), dir.join("bob"));
    for (home, name) in [(&alice, "alice"), (&bob, "bob")] {
        ok(
            home,
            &[
                "init",
                "--relay",
                &relay.url,
                "--name",
                name,
                "--strategy",
                "per-device",
            ],
        );
    }
    (relay, alice, bob)
}

/// The clone under `per-device`: a device of bob's that bob revoked still holds its
/// session with alice's devices and the identity's keys, and posts to alice's mailbox
/// (no credential needed). Once bob's device list no longer names it, alice reads
/// nothing more from it, and what it sent before the revocation stays readable.
///
/// Alice's phone is offline through two changes of bob's list — the revocation, then
/// a tablet linked — and comes back to the second: the list names when the stolen
/// device was revoked, so the phone refuses what it posted in between too (retired as
/// of the newer list's signing, it read it).
#[test]
fn per_device_a_revoked_device_still_sending_is_refused_once_its_identity_lists_it_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, alice, bob) = alice_and_bob_per_device(dir.path());
    let stolen = dir.path().join("stolen");
    let phone = dir.path().join("phone");
    link(&bob, &stolen, &relay, "stolen");
    link(&alice, &phone, &relay, "phone");
    let code = ok(&alice, &["invite", "--no-qr"]);
    ok(&bob, &["accept", code.trim()]);
    ok(&alice, &["sync"]);
    ok(&alice, &["send", "bob", "welcome"]);
    for home in [&phone, &bob, &stolen, &alice] {
        ok(home, &["sync"]);
    }
    ok(&stolen, &["send", "alice", "before the theft"]);
    for home in [&alice, &phone] {
        ok(home, &["sync"]);
    }
    ok(&bob, &["devices", "revoke", "stolen", "--yes"]);
    ok(&bob, &["sync"]);
    // The revoked device sends anyway: its copies reach alice's mailbox (the log,
    // which would tell its siblings, no longer takes its records).
    let _ = chorus(&stolen, &["send", "alice", "after the theft"]);
    ok(&alice, &["sync"]);
    // Bob links a tablet: his list changes again before the phone is back.
    let tablet = dir.path().join("tablet");
    link(&bob, &tablet, &relay, "tablet");
    ok(&tablet, &["sync"]);
    ok(&bob, &["sync"]);
    ok(&phone, &["sync"]);
    for home in [&alice, &phone] {
        let shown = history(home, "bob");
        assert!(
            shown.contains(&(false, "before the theft".to_owned())),
            "{}: {shown:?}",
            home.display()
        );
        assert!(
            !shown.contains(&(false, "after the theft".to_owned())),
            "{}: {shown:?}",
            home.display()
        );
    }
    // Bob's remaining devices still reach alice's.
    ok(&tablet, &["send", "alice", "from the tablet"]);
    for home in [&alice, &phone] {
        ok(home, &["sync"]);
        assert!(history(home, "bob").contains(&(false, "from the tablet".to_owned())));
    }
}

/// `per-device`: copies sealed for bob's one device, then the sender killed before it
/// posted them; bob links a second device meanwhile. The stored copies are refused
/// (the device set changed: one missing), nothing of them is stored, and the retry
/// plans again on bob's new list as one step: both of bob's devices read the message.
#[test]
fn per_device_copies_for_an_old_device_set_are_refused_and_sent_again_to_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, alice, bob) = alice_and_bob_per_device(dir.path());
    let tablet = dir.path().join("tablet");
    let code = ok(&bob, &["invite", "--no-qr"]);
    ok(&alice, &["accept", code.trim()]);
    ok(&bob, &["sync"]);
    ok(&bob, &["send", "alice", "hi"]);
    ok(&alice, &["sync"]);
    send_and_kill_9_at("after-copies", &alice, "bob", "sealed for one device");
    link(&bob, &tablet, &relay, "tablet");
    ok(&tablet, &["sync"]);
    ok(&bob, &["sync"]);
    ok(&alice, &["sync"]);
    for home in [&bob, &tablet] {
        ok(home, &["sync"]);
        assert!(
            history(home, "alice").contains(&(false, "sealed for one device".to_owned())),
            "{}: {:?}",
            home.display(),
            history(home, "alice")
        );
    }
    assert_eq!(
        history(&alice, "bob").iter().filter(|(o, _)| *o).count(),
        1,
        "sent once: {:?}",
        history(&alice, "bob")
    );
}

#[test]
fn per_device_needs_the_root_on_every_device_and_a_bad_strategy_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let home = dir.path().join("alice");
    let init = |security: &str| {
        [
            "init",
            "--relay",
            &relay.url,
            "--name",
            "alice",
            "--security",
            security,
            "--strategy",
            "per-device",
        ]
        .map(str::to_owned)
    };
    let args = init("primary-root");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = fails(&home, &args, 6);
    assert!(err.contains("needs the root key on every device"), "{err}");
    // Nothing was created: the home holds no identity.
    assert!(fails(&home, &["strategy"], 3).contains("chorus init"));
    ok(
        &home,
        &[
            "init",
            "--relay",
            &relay.url,
            "--name",
            "alice",
            "--security",
            "primary-root",
            "--no-qr",
        ],
    );
    let err = fails(&home, &["strategy", "per-device"], 6);
    assert!(err.contains("needs the root key on every device"), "{err}");
    let out = chorus(&home, &["strategy", "multi-home"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'multi-home'"));
    assert_eq!(ok(&home, &["strategy"]).trim(), "sequenced");
}
