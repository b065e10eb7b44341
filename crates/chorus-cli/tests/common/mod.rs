//! Shared helpers for the end-to-end tests: the relay as a real process and the
//! `chorus` binary run against device homes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const CHORUS: &str = env!("CARGO_BIN_EXE_chorus");

pub struct Relay {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
}

impl Relay {
    pub fn start(data: &Path, listen: &str) -> Relay {
        Self::start_with(data, listen, &[])
    }

    /// [`Relay::start`] with more `relay serve` flags.
    pub fn start_with(data: &Path, listen: &str, flags: &[&str]) -> Relay {
        let mut child = Command::new(CHORUS)
            .args(["relay", "serve", "--listen", listen, "--no-rate-limits"])
            .args(flags)
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected relay output {line:?}"))
            .to_owned();
        Relay {
            child,
            url: format!("http://{addr}"),
            data: data.to_owned(),
        }
    }

    /// Stops the relay; returns what `start` needs to bring it back on the same port
    /// and SQLite file.
    pub fn stop(mut self) -> (PathBuf, String) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        (
            self.data.clone(),
            self.url.trim_start_matches("http://").to_owned(),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn chorus(home: &Path, args: &[&str]) -> Output {
    Command::new(CHORUS)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("CHORUS_HOME")
        .env_remove("CHORUS_FAILPOINT")
        .output()
        .unwrap()
}

/// Runs and requires success; returns stdout.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let out = chorus(home, args);
    assert!(
        out.status.success(),
        "chorus {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and requires failure with `code` and exactly one `error:` line on stderr.
pub fn fails(home: &Path, args: &[&str], code: i32) -> String {
    let out = chorus(home, args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "chorus {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    stderr
}

pub fn json(home: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(home, args)).unwrap()
}

pub fn texts(home: &Path, contact: &str) -> Vec<(bool, String)> {
    json(home, &["history", contact, "--json", "--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["outgoing"].as_bool().unwrap(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Runs `chorus send CONTACT TEXT` with the `after-persist` failpoint and kills it with
/// SIGKILL once it stopped there (after the `Sent` append, before the post).
pub fn send_and_kill_9(home: &Path, contact: &str, text: &str) {
    send_and_kill_9_at("after-persist", home, contact, text);
}

/// Runs `chorus send CONTACT TEXT` with the failpoint `at` and kills it with SIGKILL
/// once it is reached.
pub fn send_and_kill_9_at(at: &str, home: &Path, contact: &str, text: &str) {
    kill_9_at(at, home, &["send", contact, text]);
}

/// Runs `chorus ARGS` on `home` with the failpoint `at` and kills it with SIGKILL once
/// it is reached (the failpoint says so on stderr, then waits).
pub fn kill_9_at(at: &str, home: &Path, args: &[&str]) {
    let mut child = Command::new(CHORUS)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("CHORUS_HOME")
        .env("CHORUS_FAILPOINT", at)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains(&format!("failpoint {at} reached")), "{line}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Starts `chorus link new` on `new` (with `--yes`: the test compares nothing on a
/// screen) and returns the process, its stdout lines (those before the code already
/// read, then the rest) and the code it showed.
pub fn start_link_new(
    new: &Path,
    relay: &Relay,
    name: &str,
    failpoint: Option<&str>,
) -> (Child, impl Iterator<Item = String>, String) {
    let mut before = Vec::new();
    let mut command = Command::new(CHORUS);
    command
        .arg("--home")
        .arg(new)
        .args([
            "link",
            "new",
            "--relay",
            &relay.url,
            "--device-name",
            name,
            "--no-qr",
            "--yes",
        ])
        .env_remove("CHORUS_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(point) = failpoint {
        command.env("CHORUS_FAILPOINT", point);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| l.unwrap());
    let code = loop {
        let line = lines.next().expect("link new printed no code");
        if let Some(code) = line.trim().strip_prefix("chorus link approve ") {
            break code.to_owned();
        }
        before.push(line);
    };
    (child, before.into_iter().chain(lines), code)
}

/// Runs `chorus link approve CODE` on `existing` and types into it the number the new
/// device shows, read off `new_lines` (its stdout) as a user reads it off its screen.
/// Returns the approver's output and the new device's lines read meanwhile.
pub fn approve(
    existing: &Path,
    code: &str,
    new_lines: &mut impl Iterator<Item = String>,
) -> (std::process::Output, Vec<String>) {
    approve_with(existing, code, new_lines, &[])
}

/// [`approve`] with more arguments for the approver (before the subcommand).
pub fn approve_with(
    existing: &Path,
    code: &str,
    new_lines: &mut impl Iterator<Item = String>,
    extra: &[&str],
) -> (std::process::Output, Vec<String>) {
    let mut approver = Command::new(CHORUS)
        .arg("--home")
        .arg(existing)
        .args(extra)
        .args(["link", "approve", code])
        .env_remove("CHORUS_HOME")
        .env_remove("CHORUS_FAILPOINT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut read = Vec::new();
    let sas = loop {
        let line = new_lines.next().expect("link new showed no number");
        read.push(line.clone());
        let digits: String = line.chars().filter(char::is_ascii_digit).collect();
        if line.starts_with("  ") && digits.len() == 9 {
            break digits;
        }
    };
    writeln!(approver.stdin.take().unwrap(), "{sas}").unwrap();
    (approver.wait_with_output().unwrap(), read)
}

/// Links a new home into `existing`'s identity through the two commands, as a user
/// would; returns what `link new` printed besides its code.
pub fn link(existing: &Path, new: &Path, relay: &Relay, name: &str) -> Vec<String> {
    let (mut child, mut lines, code) = start_link_new(new, relay, name, None);
    let (approved, read) = approve(existing, &code, &mut lines);
    let out = String::from_utf8_lossy(&approved.stdout);
    assert!(
        approved.status.success() && out.contains("Approved"),
        "{out} {}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let rest: Vec<String> = read.into_iter().chain(lines).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "link new failed: {rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("Linked")), "{rest:?}");
    rest
}

/// A relay, alice on a laptop and a linked phone, and bob, a contact of alice's on
/// both devices (through an invitation the laptop made).
pub fn alice_on_two_devices_with_bob(dir: &Path) -> (Relay, PathBuf, PathBuf, PathBuf) {
    let relay = Relay::start(&dir.join("relay"), "127.0.0.1:0");
    let (laptop, phone, bob) = (dir.join("laptop"), dir.join("phone"), dir.join("bob"));
    ok(&laptop, &["init", "--relay", &relay.url, "--name", "alice"]);
    ok(&bob, &["init", "--relay", &relay.url, "--name", "bob"]);
    link(&laptop, &phone, &relay, "phone");
    let code = ok(&laptop, &["invite", "--no-qr"]).trim().to_owned();
    ok(&bob, &["accept", &code]);
    assert!(ok(&laptop, &["sync"]).contains("new contact \"bob\""));
    ok(&phone, &["sync"]);
    // bob reads alice's answer: from now on he writes ratchet messages to the mailbox
    // alice made for him (not first messages, which name their sender).
    ok(&bob, &["sync"]);
    (relay, laptop, phone, bob)
}

/// Runs `sql` on the relay's SQLite file while it runs (a dishonest relay).
pub fn on_relay_db(relay: &Relay, sql: &str) {
    let db = relay.data.join("chorus-relay.sqlite");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}", db.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
        assert!(
            sql.starts_with("CREATE") || done.rows_affected() > 0,
            "{sql} changed nothing"
        );
    });
}
