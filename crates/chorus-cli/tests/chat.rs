#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `chorus chat` tested as a person uses it: each chat screen runs in its own tmux
//! session (a real terminal, 80×24), keys are typed with `send-keys`, the screen is
//! read with `capture-pane`, against a real relay with two identities and a linked
//! device. tmux must be installed (`.ci/run` installs it from Debian's packages and sets
//! `CHORUS_TEST_TMUX=required`, which makes its absence a failure, not a skip).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// How long a screen may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(30);

/// One tmux server (its own socket) for a test; one session per screen.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// `None` when tmux is not installed and not required.
    fn new(dir: &Path) -> Option<Tmux> {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            if std::env::var("CHORUS_TEST_TMUX").as_deref() == Ok("required") {
                panic!("tmux is required (CHORUS_TEST_TMUX=required) and not installed");
            }
            eprintln!("skipped: tmux is not installed (.ci/run installs it)");
            return None;
        }
        Some(Tmux {
            socket: dir.join("tmux.sock"),
        })
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `chorus --home HOME chat ARGS` in session `name`, 80×24, in the
    /// directory that holds HOME. When chorus exits, the pane says how, and stays.
    fn chat(&self, name: &str, home: &Path, args: &[&str]) {
        let command = format!(
            "{CHORUS} --home '{}' chat {}; echo \"chat exited with $?\"; sleep 600",
            home.display(),
            args.join(" ")
        );
        self.tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "80",
            "-y",
            "24",
            "-c",
            home.parent().unwrap().to_str().unwrap(),
            &command,
        ]);
    }

    /// Types `text` literally.
    fn type_text(&self, name: &str, text: &str) {
        self.tmux(&["send-keys", "-t", name, "-l", text]);
    }

    /// Presses a key by tmux's name (`Enter`, `Tab`, `C-c`, `M-Enter`, `Escape`).
    fn press(&self, name: &str, key: &str) {
        self.tmux(&["send-keys", "-t", name, key]);
    }

    /// Pastes `text` as a terminal does (bracketed, if the program asked for it).
    fn paste(&self, name: &str, text: &str) {
        self.tmux(&["set-buffer", "-b", "p", text]);
        self.tmux(&["paste-buffer", "-p", "-b", "p", "-t", name]);
    }

    fn screen(&self, name: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-t", name])
    }

    /// Waits until the screen shows `needle`; returns it.
    fn wait_for(&self, name: &str, needle: &str) -> String {
        self.wait_until(name, needle, |s| s.contains(needle))
    }

    fn wait_until(&self, name: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen(name);
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{name}'s screen never showed {what:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// Whether `screen` shows the message `text` with `note` after it (on its line, or on
/// the next when it did not fit).
fn noted(screen: &str, text: &str, note: &str) -> bool {
    let lines: Vec<&str> = screen.lines().collect();
    lines.iter().enumerate().any(|(i, l)| {
        l.contains(text) && (l.contains(note) || lines.get(i + 1).is_some_and(|n| n.contains(note)))
    })
}

fn unread(home: &Path, contact: &str) -> i64 {
    json(home, &["contacts", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == contact)
        .unwrap_or_else(|| panic!("no contact {contact}"))["unread"]
        .as_i64()
        .unwrap()
}

#[test]
fn two_identities_chat_on_screen_and_every_device_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::new(dir.path()) else {
        return;
    };
    let (relay, laptop, phone, bob) = alice_on_two_devices_with_bob(dir.path());
    ok(&bob, &["send", "alice", "hi alice, before the chat"]);
    ok(&phone, &["sync"]);
    assert_eq!(unread(&phone, "bob"), 1);

    // alice's chat opens bob's conversation: the message is there, and shown is read
    // on every device (the phone's count clears once it folds the log).
    tmux.chat("alice", &laptop, &["bob"]);
    let screen = tmux.wait_for("alice", "bob: hi alice, before the chat");
    assert!(screen.contains("Chats"), "{screen}");
    tmux.wait_for("alice", "online");
    let start = Instant::now();
    while unread(&phone, "bob") != 0 {
        assert!(
            start.elapsed() < PATIENCE,
            "the phone still counts it unread"
        );
        std::thread::sleep(Duration::from_millis(200));
        ok(&phone, &["sync"]);
    }

    // A message typed on alice's screen appears on bob's, marked sent on hers.
    tmux.chat("bob", &bob, &["alice"]);
    tmux.wait_for("bob", "alice");
    tmux.type_text("alice", "hello from the chat screen");
    tmux.press("alice", "Enter");
    tmux.wait_for("bob", "alice: hello from the chat screen");
    tmux.wait_until("alice", "the message marked sent", |s| {
        noted(s, "alice: hello from the chat screen", "✓")
    });

    // bob answers on two lines (Alt-Enter): one message, its second line behind the
    // margin on alice's screen.
    tmux.type_text("bob", "line one");
    tmux.press("bob", "M-Enter");
    tmux.type_text("bob", "line two");
    tmux.press("bob", "Enter");
    let screen = tmux.wait_for("alice", "bob: line one");
    tmux.wait_for("alice", "│ line two");
    assert!(!screen.contains("bob: line two"), "{screen}");

    // A paste is text: its newline and its "/quit" neither send nor quit.
    tmux.paste("alice", "pasted one\n/quit");
    tmux.wait_for("alice", "/quit");
    assert!(!tmux.screen("bob").contains("pasted one"));
    tmux.press("alice", "C-u");
    tmux.wait_until("alice", "the input cleared", |s| !s.contains("pasted one"));

    // /verify shows the safety number; Esc closes it.
    tmux.type_text("alice", "/verify");
    tmux.press("alice", "Enter");
    tmux.wait_for("alice", "Safety number with bob");
    tmux.press("alice", "Escape");
    tmux.wait_until("alice", "the panel closed", |s| {
        !s.contains("Safety number")
    });

    // /file sends a file; bob's screen shows it, and /save fetches it where he runs.
    let files = dir.path().join("alice-files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("plan.txt"), "the plan, in a file").unwrap();
    tmux.type_text(
        "alice",
        &format!("/file {}", files.join("plan.txt").display()),
    );
    tmux.press("alice", "Enter");
    tmux.wait_for("bob", "[file] plan.txt");
    tmux.wait_for("alice", "[file] plan.txt");
    let id = json(&bob, &["files", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tmux.type_text("bob", &format!("/save {id}"));
    tmux.press("bob", "Enter");
    tmux.wait_for("bob", "saved");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("plan.txt")).unwrap(),
        "the plan, in a file"
    );

    // The relay goes away: alice's screen says so and still takes a message, which waits
    // (pending) and is sent when the relay is back.
    let (data, addr) = relay.stop();
    tmux.wait_for("alice", "offline");
    tmux.type_text("alice", "written while the relay was down");
    tmux.press("alice", "Enter");
    tmux.wait_until("alice", "the message pending", |s| {
        noted(s, "written while the relay was down", "not sent yet")
    });
    let _relay = Relay::start(&data, &addr);
    tmux.wait_for("bob", "alice: written while the relay was down");
    tmux.wait_until("alice", "the message marked sent", |s| {
        noted(s, "written while the relay was down", "✓")
    });

    // The screen follows a resize, and Ctrl-C restores the terminal and exits 0.
    tmux.tmux(&["resize-window", "-t", "alice", "-x", "100", "-y", "30"]);
    tmux.wait_for("alice", "Message to bob");
    tmux.press("alice", "C-c");
    let screen = tmux.wait_for("alice", "chat exited with 0");
    assert!(
        !screen.contains("Chats"),
        "the chat screen was left: {screen}"
    );
    tmux.press("bob", "C-c");
    tmux.wait_for("bob", "chat exited with 0");

    // Both histories, and the phone's, hold the conversation.
    let expected = [
        (false, "hi alice, before the chat".to_owned()),
        (true, "hello from the chat screen".to_owned()),
        (false, "line one\nline two".to_owned()),
        (true, String::new()),
        (true, "written while the relay was down".to_owned()),
    ];
    assert_eq!(texts(&laptop, "bob"), expected);
    ok(&phone, &["sync"]);
    assert_eq!(texts(&phone, "bob"), expected);
    let theirs: Vec<(bool, String)> = expected.iter().map(|(o, t)| (!o, t.clone())).collect();
    assert_eq!(texts(&bob, "alice"), theirs);
}

#[test]
fn a_message_request_is_answered_from_the_chat_screen() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::new(dir.path()) else {
        return;
    };
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let (alice, carol) = (dir.path().join("alice"), dir.path().join("carol"));
    ok(&alice, &["init", "--relay", &relay.url, "--name", "alice"]);
    ok(&carol, &["init", "--relay", &relay.url, "--name", "carol"]);
    let address = json(&alice, &["status", "--json"])["address"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&carol, &["contact", "add", &address, "--name", "alice"]);
    ok(
        &carol,
        &["send", "alice", "hello, we met at the conference"],
    );

    tmux.chat("alice", &alice, &[]);
    // No contacts: the request is the only row, selected, with its message.
    let screen = tmux.wait_for("alice", "Message request from carol");
    assert!(
        screen.contains("carol: hello, we met at the conference"),
        "{screen}"
    );
    // Enter on a request sends nothing.
    tmux.type_text("alice", "hi?");
    tmux.press("alice", "Enter");
    tmux.wait_for("alice", "select a contact first");
    tmux.press("alice", "C-u");
    tmux.type_text("alice", "/accept Carol C.");
    tmux.press("alice", "Enter");
    tmux.wait_for("alice", "Carol C. is a contact now");
    tmux.wait_for("alice", "Message to Carol C.");
    tmux.type_text("alice", "nice to hear from you");
    tmux.press("alice", "Enter");
    tmux.press("alice", "C-c");
    tmux.wait_for("alice", "chat exited with 0");

    let out = ok(&carol, &["sync"]);
    assert!(out.contains("alice: nice to hear from you"), "{out}");
    assert_eq!(
        texts(&alice, "Carol C."),
        [
            (false, "hello, we met at the conference".to_owned()),
            (true, "nice to hear from you".to_owned())
        ]
    );
}

#[test]
fn chat_without_a_terminal_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), "127.0.0.1:0");
    let alice = dir.path().join("alice");
    ok(&alice, &["init", "--relay", &relay.url, "--name", "alice"]);
    let e = fails(&alice, &["chat"], 2);
    assert!(e.contains("needs a terminal"), "{e}");
}
