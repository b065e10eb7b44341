//! A dishonest relay, end to end: an HTTP wrapper in front of the real relay that
//! serves one device a history the others do not share — a record dropped, two
//! reordered, one doubled — or acknowledges that device's append and throws it away
//! (a fork). Every other request passes through untouched. The devices run their
//! ordinary `sync` and `append`; each lie is caught by the head that the next
//! record of another author names (`chorus_core::chain`), and said loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chorus_relay_api::{AppendRequest, AppendResponse, RecordOut, RecordsPage};
use chorus_wire::EventKind;

use crate::log::Pending;
use crate::testing::{device, relay, sibling};
use crate::{Device, Event};

/// What the wrapper shows its device, from seq `from` on (records before are real).
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// Nothing: a transparent proxy.
    None,
    /// The record at `from` is hidden; later ones move up so that no gap shows.
    Drop,
    /// The records at `from` and `from + 1` change places.
    Reorder,
    /// The record at `from` is shown twice.
    Double,
    /// The device's appends are acknowledged at the head and never stored.
    Swallow,
    /// The records from `from` on are padded to the largest record: a page far over
    /// what an honest relay sends (`MAX_PAGE_BYTES`), which a client reading pages
    /// ahead would hold several of.
    Bloat,
}

#[derive(Clone)]
struct Wrapper {
    upstream: String,
    http: reqwest::Client,
    lie: Arc<Mutex<(Lie, i64)>>,
}

impl Wrapper {
    fn lie(&self) -> (Lie, i64) {
        *self.lie.lock().unwrap()
    }

    async fn upstream(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.upstream))
            .body(body);
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
            if let Some(v) = headers.get(&name) {
                req = req.header(name, v);
            }
        }
        req.send().await.unwrap()
    }

    /// The whole log as the relay stores it.
    async fn real_log(&self, log_path: &str, headers: &HeaderMap) -> Vec<RecordOut> {
        let mut all: Vec<RecordOut> = Vec::new();
        loop {
            let after = all.last().map_or(0, |r| r.seq);
            let path = format!("{log_path}/records?after={after}&limit=256");
            let page: RecordsPage = self
                .upstream(Method::GET, &path, headers, Bytes::new())
                .await
                .json()
                .await
                .unwrap();
            let more = page.more;
            all.extend(page.records);
            if !more {
                return all;
            }
        }
    }

    /// The log as this device is shown it, renumbered without gaps.
    fn view(&self, mut log: Vec<RecordOut>) -> Vec<RecordOut> {
        let (lie, from) = self.lie();
        let at = log.iter().position(|r| r.seq == from);
        match (lie, at) {
            (Lie::Drop, Some(i)) => {
                log.remove(i);
            }
            (Lie::Reorder, Some(i)) if i + 1 < log.len() => log.swap(i, i + 1),
            (Lie::Double, Some(i)) => {
                let copy = log[i].clone();
                log.insert(i + 1, copy);
            }
            (Lie::Bloat, Some(i)) => {
                for r in &mut log[i..] {
                    r.ciphertext
                        .0
                        .resize(chorus_relay_api::limits::MAX_RECORD_BYTES, 0);
                }
            }
            _ => {}
        }
        for (r, seq) in log.iter_mut().zip(1..) {
            r.seq = seq;
        }
        log
    }
}

async fn forward(State(w): State<Wrapper>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path().to_owned();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let (lie, _) = w.lie();
    if let Some(log_path) = path.strip_suffix("/records")
        && parts.method == Method::GET
        && !matches!(lie, Lie::None | Lie::Swallow)
    {
        let param = |name: &str| {
            parts.uri.query().unwrap_or("").split('&').find_map(|kv| {
                kv.strip_prefix(name)
                    .and_then(|v| v.strip_prefix('='))
                    .map(|v| v.parse::<i64>().unwrap())
            })
        };
        let after = param("after").unwrap_or(0);
        let limit = usize::try_from(param("limit").unwrap_or(64)).unwrap();
        let view = w.view(w.real_log(log_path, &parts.headers).await);
        let head_seq = view.last().map_or(0, |r| r.seq);
        let records: Vec<RecordOut> = view
            .into_iter()
            .filter(|r| r.seq > after)
            .take(limit)
            .collect();
        let more = records.last().is_some_and(|r| r.seq < head_seq);
        let page = RecordsPage {
            records,
            head_seq,
            first_seq: 1,
            more,
        };
        return axum::Json(page).into_response();
    }
    if let Some(log_path) = path.strip_suffix("/append")
        && parts.method == Method::POST
        && matches!(lie, Lie::Swallow)
    {
        let req: AppendRequest = serde_json::from_slice(&body).unwrap();
        let head = w.real_log(log_path, &parts.headers).await.len() as i64;
        let seqs = (1..=req.records.len() as i64).map(|i| head + i).collect();
        return axum::Json(AppendResponse { seqs, posted: None }).into_response();
    }
    let answer = w
        .upstream(
            parts.method,
            &format!("{path}{query}"),
            &parts.headers,
            body,
        )
        .await;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    (status, answer.bytes().await.unwrap()).into_response()
}

/// A wrapper in front of `upstream` on a loopback port; its URL and its lie.
async fn wrapper(upstream: &str) -> (String, Arc<Mutex<(Lie, i64)>>) {
    let lie = Arc::new(Mutex::new((Lie::None, 0)));
    let state = Wrapper {
        upstream: upstream.to_owned(),
        http: reqwest::Client::new(),
        lie: lie.clone(),
    };
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, lie)
}

fn rename(name: &str) -> Vec<Pending> {
    vec![Pending::free(EventKind::ProfileUpdated {
        name: name.into(),
    })]
}

fn dishonesty(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Rejected { reason } if reason.contains("not keeping the log honestly") => {
                Some(reason.clone())
            }
            _ => None,
        })
        .collect()
}

async fn applied(d: &Device) -> i64 {
    sqlx::query_scalar("SELECT applied_seq FROM constellation")
        .fetch_one(d.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_wrapper_lying_to_one_device_is_caught_whatever_the_lie() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let phone = device(dir.path(), &url, "alice").await;
    let other = sibling(&phone, dir.path(), "other", crate::Options::default()).await;
    let lies = [Lie::Drop, Lie::Reorder, Lie::Double, Lie::Swallow];
    let mut lied_to = Vec::new();
    for (i, lie) in lies.iter().enumerate() {
        let mut d = sibling(
            &phone,
            dir.path(),
            &format!("d{i}"),
            crate::Options::default(),
        )
        .await;
        let (through, control) = wrapper(&url).await;
        d.relay = d.relay.rebased(&through);
        d.log.relay = d.relay.clone();
        lied_to.push((*lie, d, control));
    }
    for d in [&phone, &other] {
        d.sync_log().await.unwrap();
    }
    let at = applied(&phone).await;
    for (lie, d, control) in &lied_to {
        d.sync_log().await.unwrap();
        assert_eq!(applied(d).await, at, "honest so far");
        *control.lock().unwrap() = (*lie, at + 1);
    }
    // A from the phone, B from a sibling that had not folded A yet, C from the
    // phone, which had folded both (C names where the phone stood).
    phone.append(rename("a")).await.unwrap();
    other.append(rename("b")).await.unwrap();
    phone.sync_log().await.unwrap();
    phone.append(rename("c")).await.unwrap();

    for (lie, d, _) in &lied_to {
        let mut said = dishonesty(&d.sync_log().await.unwrap());
        if matches!(lie, Lie::Swallow) {
            // Its own append is swallowed (it folds it where the relay said); the
            // phone's next record names a head it cannot have.
            let before = applied(d).await;
            d.append(rename("lost")).await.unwrap();
            assert_eq!(applied(d).await, before + 1, "it believes the relay");
            phone.sync_log().await.unwrap();
            phone.append(rename("d")).await.unwrap();
            phone.append(rename("e")).await.unwrap();
            said = dishonesty(&d.sync_log().await.unwrap());
        }
        assert!(!said.is_empty(), "{lie:?} went unnoticed");
    }
    // The honest devices saw nothing wrong, and agree.
    for d in [&phone, &other] {
        assert!(dishonesty(&d.sync_log().await.unwrap()).is_empty());
    }
    assert_eq!(applied(&phone).await, applied(&other).await);
}

/// A relay that sends a page over the honest bound (here 5 MiB of records where an
/// honest page stops at `MAX_PAGE_BYTES`, 4 MiB) has the page refused whole: nothing
/// is folded, the cursor stays, and once it answers honestly the same records fold.
#[tokio::test]
async fn a_page_over_the_honest_bound_is_refused_whole_and_changes_nothing() {
    use chorus_relay_api::limits::{MAX_PAGE_BYTES, MAX_RECORD_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let phone = device(dir.path(), &url, "alice").await;
    let mut laptop = sibling(&phone, dir.path(), "laptop", crate::Options::default()).await;
    let (through, control) = wrapper(&url).await;
    laptop.relay = laptop.relay.rebased(&through);
    laptop.log.relay = laptop.relay.clone();
    laptop.sync_log().await.unwrap();
    let at = applied(&laptop).await;
    let renames = MAX_PAGE_BYTES / MAX_RECORD_BYTES + 8;
    let batch = (0..renames)
        .flat_map(|i| rename(&format!("alice {i}")))
        .collect();
    phone.append(batch).await.unwrap();
    *control.lock().unwrap() = (Lie::Bloat, at + 1);
    let refused = laptop.sync_log().await;
    assert!(
        matches!(&refused, Err(crate::ClientError::Relay(crate::RelayError::BadResponse { reason, .. })) if reason.contains("honest")),
        "{:?}",
        refused.map(|e| e.len())
    );
    assert_eq!(applied(&laptop).await, at, "nothing folded");
    *control.lock().unwrap() = (Lie::None, 0);
    laptop.sync_log().await.unwrap();
    assert_eq!(applied(&laptop).await, applied(&phone).await);
    let name = format!("alice {}", renames - 1);
    let slot = laptop.log.fold.lock().await;
    assert_eq!(
        slot.as_ref().unwrap().state.profile_name(),
        Some(name.as_str())
    );
}
