//! Real-process tests of the `chorus-relay` binary: crash durability on the
//! SQLite file (`kill -9` mid-stream loses no acknowledged append, and a restart
//! resumes), zero-flag startup, and scale-out over one PostgreSQL database (a
//! WebSocket on process 1 is woken by an append made through process 2, via
//! `LISTEN/NOTIFY`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chorus_wire::SecurityLevel;
use common::{Backend, Device, Hex32, TestDb, authorize, genesis, record, revocation, root};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A relay child process; killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
    base: String,
    ws_base: String,
}

impl Proc {
    fn spawn(args: &[&str], dir: &std::path::Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chorus-relay"))
            .arg("serve")
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected: {line:?}"))
            .to_string();
        Proc {
            child,
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
        }
    }

    fn kill9(&mut self) {
        // Child::kill sends SIGKILL on Unix: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two relay processes over one fresh PostgreSQL database (none without one).
/// Fields drop in order: the processes are killed before the database goes.
struct TwoRelays {
    relay1: Proc,
    relay2: Proc,
    _dir: tempfile::TempDir,
    _db: TestDb,
}

impl TwoRelays {
    async fn start() -> Option<TwoRelays> {
        let db = TestDb::create(Backend::Postgres).await?;
        let dir = tempfile::tempdir().unwrap();
        let url = db.url();
        let args = ["--listen", "127.0.0.1:0", "--database", url.as_str()];
        Some(TwoRelays {
            relay1: Proc::spawn(&args, dir.path()),
            relay2: Proc::spawn(&args, dir.path()),
            _dir: dir,
            _db: db,
        })
    }
}

/// A minimal client for one device against a process.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base: base.to_string(),
        }
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let mut req = self.http.post(format!("{}{}", self.base, path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let s = resp.status();
        Ok((s, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{}", self.base, path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = resp.status();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, log: &Hex32, dev: &Device) -> String {
        let answer = self.challenge(log, dev).await;
        let (s, v) = self.answer(&answer).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// Asks for a challenge and signs it: the body that answers it.
    async fn challenge(&self, log: &Hex32, dev: &Device) -> Value {
        use ed25519_dalek::Signer;
        let (s, v) = self
            .post(
                "/v1/auth/challenge",
                None,
                json!({ "log_id": log.0, "device_id": dev.id }),
            )
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK, "{v}");
        let c: chorus_relay::api::Id32 = v["challenge"].as_str().unwrap().parse().unwrap();
        let msg =
            chorus_relay::api::auth_message(&c, &log.0.parse().unwrap(), &dev.id.parse().unwrap());
        let sig = dev.key.sign(&msg);
        json!({ "challenge": c.to_string(), "signature": hex::encode(sig.to_bytes()) })
    }

    /// Answers a challenge (from [`Client::challenge`]) for a session.
    async fn answer(&self, answer: &Value) -> (StatusCode, Value) {
        self.post("/v1/auth/session", None, answer.clone())
            .await
            .unwrap()
    }

    async fn add_device(&self, log: &Hex32, token: &str, dev: &Device) {
        let (s, v) = self
            .post(
                &format!("/v1/logs/{}/devices", log.0),
                Some(token),
                json!({ "device_id": dev.id, "authorization": authorize(log, dev, &root()) }),
            )
            .await
            .unwrap();
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    async fn revoke(&self, log: &Hex32, token: &str, dev: &Device) -> StatusCode {
        self.post(
            &format!("/v1/logs/{}/devices/{}/revoke", log.0, dev.id),
            Some(token),
            json!({ "authorization": revocation(log, dev, &root()) }),
        )
        .await
        .unwrap()
        .0
    }

    async fn create_log(&self, log: &Hex32, dev: &Device) {
        let (s, v) = self
            .post(
                "/v1/logs",
                None,
                json!({ "log_id": log.0, "genesis": genesis(log, dev, SecurityLevel::SharedRoot), "device_id": dev.id }),
            )
            .await
            .unwrap();
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    async fn all_records(&self, log: &Hex32, token: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let (s, v) = self
                .get(
                    &format!("/v1/logs/{}/records?after={after}&limit=256", log.0),
                    token,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let recs = v["records"].as_array().unwrap().clone();
            if let Some(last) = recs.last() {
                after = last["seq"].as_i64().unwrap();
            }
            out.extend(recs);
            if v["more"] != json!(true) {
                return out;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_appends_loses_no_acknowledged_record_and_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        ".",
        "--no-rate-limits",
    ];
    let mut relay = Proc::spawn(&args, dir.path());
    assert!(
        dir.path().join("chorus-relay.sqlite").exists(),
        "SQLite file in the data dir"
    );
    let client = Arc::new(Client::new(&relay.base));
    let log = Hex32::from_seed(1);
    let dev = Device::new(1);
    client.create_log(&log, &dev).await;
    let token = Arc::new(client.login(&log, &dev).await);

    // Four writers stream appends; every acknowledged (seq → ciphertext) is noted.
    let acked: Arc<Mutex<BTreeMap<i64, String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, token, acked, log) =
            (client.clone(), token.clone(), acked.clone(), log.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let ct = format!("w{w}-{i}");
                let body = json!({ "records": [record(&ct, None)] });
                match client
                    .post(&format!("/v1/logs/{}/append", log.0), Some(&token), body)
                    .await
                {
                    Ok((StatusCode::OK, v)) => {
                        let seq = v["seqs"][0].as_i64().unwrap();
                        acked.lock().await.insert(seq, hex::encode(&ct));
                    }
                    // The process died mid-request: unacknowledged, may or may not be stored.
                    _ => return,
                }
            }
        }));
    }
    // Let the stream run, then kill without warning.
    while acked.lock().await.len() < 150 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    relay.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().await.clone();

    let relay = Proc::spawn(&args, dir.path());
    let client = Client::new(&relay.base);
    let token = client.login(&log, &dev).await;
    let records = client.all_records(&log, &token).await;
    let stored: BTreeMap<i64, String> = records
        .iter()
        .map(|r| {
            (
                r["seq"].as_i64().unwrap(),
                r["ciphertext"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let seqs: Vec<i64> = stored.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "no gaps after the crash"
    );
    for (seq, ct) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(ct),
            "acknowledged seq {seq} lost or changed"
        );
    }
    // Serving resumes where the log ended.
    let (s, v) = client
        .post(
            &format!("/v1/logs/{}/append", log.0),
            Some(&token),
            json!({ "records": [record("after", None)] }),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["seqs"][0].as_i64().unwrap(), seqs.len() as i64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_flags_listens_on_the_default_port_with_sqlite_in_the_working_dir() {
    let dir = tempfile::tempdir().unwrap();
    // The default port may be taken on a shared machine; then this is not testable.
    if std::net::TcpListener::bind(("127.0.0.1", chorus_relay::DEFAULT_PORT)).is_err() {
        eprintln!("port {} busy; skipped", chorus_relay::DEFAULT_PORT);
        return;
    }
    let relay = Proc::spawn(&[], dir.path());
    assert_eq!(
        relay.base,
        format!("http://127.0.0.1:{}", chorus_relay::DEFAULT_PORT)
    );
    assert!(dir.path().join("chorus-relay.sqlite").exists());
    let v: Value = reqwest::get(format!("{}/v1/health", relay.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["backend"], json!("sqlite"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_database_wake_each_others_websockets() {
    let Some(two) = TwoRelays::start().await else {
        return;
    };
    let (relay1, relay2) = (&two.relay1, &two.relay2);
    let (c1, c2) = (Client::new(&relay1.base), Client::new(&relay2.base));
    let log = Hex32::from_seed(3);
    let (d1, d2) = (Device::new(3), Device::new(4));
    c1.create_log(&log, &d1).await;
    let t1 = c1.login(&log, &d1).await;
    let (s, _) = c1
        .post(
            &format!("/v1/logs/{}/devices", log.0),
            Some(&t1),
            json!({ "device_id": d2.id, "authorization": authorize(&log, &d2, &root()) }),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED);
    let mb = Hex32::from_u64(9);
    c1.post(
        &format!("/v1/logs/{}/mailboxes", log.0),
        Some(&t1),
        json!({ "mailbox_id": mb.0 }),
    )
    .await
    .unwrap();

    // Device 1 listens on relay 1.
    let mut req = format!("{}/v1/logs/{}/ws", relay1.ws_base, log.0)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {t1}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();

    // Device 2 appends through relay 2; a contact posts through relay 2.
    let t2 = c2.login(&log, &d2).await;
    let (s, _) = c2
        .post(
            &format!("/v1/logs/{}/append", log.0),
            Some(&t2),
            json!({ "records": [record("from-relay-2", None)] }),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    c2.post(
        &format!("/v1/mailboxes/{}/envelopes", mb.0),
        None,
        json!({ "envelope_id": hex::encode([1u8; 16]), "payload": "cafe" }),
    )
    .await
    .unwrap();

    let mut got_record = false;
    let mut got_envelope = false;
    while !(got_record && got_envelope) {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("woken across processes");
        let Some(Ok(Message::Text(t))) = msg else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        match v["type"].as_str() {
            Some("records") => {
                assert_eq!(
                    v["records"][0]["ciphertext"],
                    json!(hex::encode("from-relay-2"))
                );
                assert_eq!(v["records"][0]["author"], json!(d2.id));
                got_record = true;
            }
            Some("envelopes") => {
                assert_eq!(v["envelopes"][0]["payload"], json!("cafe"));
                got_envelope = true;
            }
            _ => panic!("unexpected push {v}"),
        }
    }

    // A revocation made through relay 2 closes device 2's socket on relay 1.
    let t2_on_1 = c1.login(&log, &d2).await;
    let mut req = format!("{}/v1/logs/{}/ws", relay1.ws_base, log.0)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {t2_on_1}").parse().unwrap(),
    );
    let (mut ws2, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let t1_on_2 = c2.login(&log, &d1).await;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/v1/logs/{}/devices/{}/revoke",
            relay2.base, log.0, d2.id
        ))
        .json(&json!({ "authorization": revocation(&log, &d2, &root()) }))
        .bearer_auth(&t1_on_2)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let code = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws2.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("closed across processes");
    assert_eq!(code, Some(4003));
    let (s, _) = c1
        .get(&format!("/v1/logs/{}/records", log.0), &t2_on_1)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Issue 11 item 9: behind a load balancer a device's requests reach different
/// relay processes. With challenges, sessions and presence held in each
/// process's memory, a token issued by one process was `401` at the other, a
/// challenge could only be answered where it was asked, and a sibling's
/// heartbeat showed only on the process it reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relay_processes_share_logins_and_presence() {
    let Some(two) = TwoRelays::start().await else {
        return;
    };
    let (relay1, relay2) = (&two.relay1, &two.relay2);
    let (c1, c2) = (Client::new(&relay1.base), Client::new(&relay2.base));
    let log = Hex32::from_seed(5);
    let (d1, d2) = (Device::new(5), Device::new(6));
    c1.create_log(&log, &d1).await;

    // A token issued by process 1 works at process 2 ...
    let t1 = c1.login(&log, &d1).await;
    let info = format!("/v1/logs/{}", log.0);
    let (s, v) = c2.get(&info, &t1).await;
    assert_eq!(s, StatusCode::OK, "token from process 1 at process 2: {v}");
    // ... and a challenge asked of process 1 is answered at process 2, once.
    let answer = c1.challenge(&log, &d1).await;
    let (s, v) = c2.answer(&answer).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "challenge from process 1 at process 2: {v}"
    );
    assert_eq!(c1.answer(&answer).await.0, StatusCode::UNAUTHORIZED);

    // A heartbeat through process 1 shows in presence through process 2.
    c1.add_device(&log, &t1, &d2).await;
    let t2 = c2.login(&log, &d2).await;
    let (s, _) = c1
        .post(
            &format!("/v1/logs/{}/presence", log.0),
            Some(&t2),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    let present = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (_, v) = c2.get(&format!("/v1/logs/{}/presence", log.0), &t1).await;
            if v["devices"][0]["device_id"] == json!(d2.id) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(present.is_ok(), "heartbeat through process 1 not seen at 2");

    // Revoking through process 2 ends the device's token at process 1, and
    // its presence.
    assert_eq!(c2.revoke(&log, &t1, &d2).await, StatusCode::NO_CONTENT);
    assert_eq!(c1.get(&info, &t2).await.0, StatusCode::UNAUTHORIZED);
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (_, v) = c1.get(&format!("/v1/logs/{}/presence", log.0), &t1).await;
            if v["devices"].as_array().is_some_and(|d| d.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "revoked device still present at process 1");
    // The identity keeps working across both.
    let (s, _) = c2
        .post(
            &format!("/v1/logs/{}/append", log.0),
            Some(&t1),
            json!({ "records": [record("after", None)] }),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c1.all_records(&log, &t1).await.len(), 1);
}

/// Issue 11 item 9: a login checked the device, then (after an await) issued
/// the token, while a revocation marked the device and then dropped its tokens;
/// a revocation landing between the two left the revoked device a working
/// token; and a token another process issued lived on there until that process
/// heard of the revocation. Here logins at process 2 race revocations through
/// process 1: whatever the interleaving, no token the revoked device holds works
/// once the revocation has been answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_a_revocation_never_leaves_a_working_token() {
    let Some(two) = TwoRelays::start().await else {
        return;
    };
    let (relay1, relay2) = (&two.relay1, &two.relay2);
    let (c1, c2) = (Client::new(&relay1.base), Client::new(&relay2.base));
    let mut issued = 0;
    for round in 0..24u8 {
        let log = Hex32::from_seed(100 + round);
        let (d1, d2) = (Device::new(100 + round), Device::new(200 + round));
        c1.create_log(&log, &d1).await;
        let t1 = c1.login(&log, &d1).await;
        c1.add_device(&log, &t1, &d2).await;
        let answers = [c2.challenge(&log, &d2).await, c2.challenge(&log, &d2).await];
        let (a, b, revoked) = tokio::join!(
            c2.answer(&answers[0]),
            c2.answer(&answers[1]),
            c1.revoke(&log, &t1, &d2)
        );
        assert_eq!(revoked, StatusCode::NO_CONTENT);
        for (s, v) in [a, b] {
            if s == StatusCode::OK {
                issued += 1;
                let token = v["token"].as_str().unwrap();
                let (s, v) = c2.get(&format!("/v1/logs/{}", log.0), token).await;
                assert_eq!(s, StatusCode::UNAUTHORIZED, "round {round}: {v}");
            }
        }
        // The identity keeps working.
        assert_eq!(
            c1.get(&format!("/v1/logs/{}", log.0), &t1).await.0,
            StatusCode::OK
        );
    }
    eprintln!("{issued} of 48 racing logins got a token before their revocation");
}
