//! The relay conformance suite: every scenario runs over real HTTP against both
//! storage backends (SQLite always, PostgreSQL when `CHORUS_TEST_POSTGRES_URL` is
//! set), so the two stores cannot drift apart. Scenario names say the hazard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chorus_relay::Limits;
use chorus_relay::limits::*;
use chorus_wire::{RosterBody, SecurityLevel};
use common::{
    Backend, Device, Hex32, Relay, START_MS, authorize, genesis, record, revocation, root,
    roster_entry,
};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

both_backends!(
    a_page_asked_for_in_binary_is_the_json_page,
    a_secondary_cannot_revoke_the_primary_or_add_devices_without_the_root,
    once_the_root_revoked_the_primary_its_key_lets_nobody_in,
    the_recovery_slot_is_read_by_its_name_alone_and_keeps_one_checkpoint,
    a_device_without_the_root_cannot_replace_the_recovery_slot,
    after_a_roll_only_the_new_root_authorizes_and_the_old_one_cannot_roll_again,
    a_withdrawn_directory_entry_hands_out_nothing_and_stays_the_logs,
    limits_made_up_device_ids_get_no_challenge,
    a_flooded_intro_mailbox_still_takes_first_contacts,
    a_used_invitation_mailbox_refuses_a_second_sender,
    limits_envelope_and_record_quotas_per_log_at_bound_then_refused,
    limits_sockets_per_device_at_bound_then_refused,
    log_append_and_read_round_trip_with_author_stamped,
    racing_guarded_appends_have_one_winner_per_version_and_no_gaps,
    failed_guard_appends_nothing_and_names_current_versions,
    a_bundled_send_stores_its_record_and_envelope_together_or_neither,
    an_append_under_a_stale_epoch_is_refused_whole_with_or_without_its_envelope,
    two_people_sending_each_other_bundles_at_once_never_deadlock,
    append_batch_at_bound_is_accepted_and_one_over_changes_nothing,
    records_are_paged_up_to_the_page_bound,
    trim_waits_for_every_current_device_cursor,
    revocation_cuts_access_including_the_live_websocket,
    every_protected_endpoint_requires_a_valid_token,
    session_for_one_log_is_forbidden_on_another,
    forged_or_replayed_challenge_answers_are_refused,
    device_count_at_bound_then_refused,
    mailbox_post_is_idempotent_by_envelope_id,
    mailbox_envelopes_expire_after_ttl,
    mailbox_depth_at_bound_then_full,
    mailbox_post_rate_at_bound_then_limited,
    batched_read_across_mailboxes_and_push_of_envelopes,
    concurrent_prekey_fetches_never_share_a_one_time_key,
    prekey_fetch_rate_at_bound_then_limited,
    blob_quota_and_size_bounds,
    limits_file_parts_are_fetched_by_locator_within_quota_and_expire,
    limits_file_fetch_rate_at_bound_then_limited,
    rendezvous_channel_lives_ten_minutes_and_is_gone_after_close,
    presence_is_visible_to_siblings_and_fades,
    malformed_input_gets_a_code_and_changes_nothing,
    mailboxes_per_log_at_bound_then_refused,
    append_rate_at_bound_then_limited,
    unauthenticated_creation_rate_at_bound_then_limited,
    limits_log_of_max_size_records_is_read_in_pages_under_max_page_bytes,
    limits_batch_read_amplification_is_refused_and_bounded_by_bytes,
    limits_one_device_logging_in_repeatedly_cannot_lock_out_another,
    limits_filling_the_rate_table_does_not_reset_an_exhausted_bucket,
    clients_behind_a_trusted_proxy_have_their_own_budget,
    forged_forwarded_for_from_a_direct_client_is_ignored,
    per_device_posts_must_name_the_listed_devices_and_each_copy_reaches_only_its_device,
    a_device_list_must_be_the_roots_grow_and_name_current_devices,
);

/// Opens a rendezvous channel as if from behind a proxy that says `forwarded`.
async fn open_channel_forwarded(r: &Relay, id: u64, forwarded: &str) -> StatusCode {
    r.http
        .post(format!("{}/v1/rendezvous", r.base))
        .header("content-type", "application/json")
        .header("x-forwarded-for", forwarded)
        .body(json!({ "channel_id": Hex32::from_u64(id).0 }).to_string())
        .send()
        .await
        .unwrap()
        .status()
}

fn open_rate_of_two(trusted_proxies: Vec<chorus_relay::proxy::Cidr>) -> Limits {
    Limits {
        open_rate: chorus_relay::Rate {
            per_sec: 1.0,
            burst: 2.0,
        },
        trusted_proxies,
        ..Limits::default()
    }
}

async fn clients_behind_a_trusted_proxy_have_their_own_budget(b: Backend) {
    // The test client connects from 127.0.0.1: it plays the proxy.
    let limits = open_rate_of_two(vec!["127.0.0.0/8".parse().unwrap()]);
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    assert_eq!(
        open_channel_forwarded(&r, 1, "203.0.113.1").await,
        StatusCode::CREATED
    );
    assert_eq!(
        open_channel_forwarded(&r, 2, "203.0.113.1").await,
        StatusCode::CREATED
    );
    assert_eq!(
        open_channel_forwarded(&r, 3, "203.0.113.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The attack this stops: one client behind the proxy spending everyone's budget.
    assert_eq!(
        open_channel_forwarded(&r, 4, "203.0.113.2").await,
        StatusCode::CREATED
    );
    // Only the hop the proxy appended counts; what the client wrote before it does not.
    assert_eq!(
        open_channel_forwarded(&r, 5, "198.51.100.9, 203.0.113.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn forged_forwarded_for_from_a_direct_client_is_ignored(b: Backend) {
    let Some(r) = Relay::with_limits(b, open_rate_of_two(Vec::new())).await else {
        return;
    };
    assert_eq!(
        open_channel_forwarded(&r, 1, "203.0.113.1").await,
        StatusCode::CREATED
    );
    assert_eq!(
        open_channel_forwarded(&r, 2, "203.0.113.2").await,
        StatusCode::CREATED
    );
    assert_eq!(
        open_channel_forwarded(&r, 3, "203.0.113.3").await,
        StatusCode::TOO_MANY_REQUESTS,
        "a client cannot pick its own rate-limit key"
    );
    // Honest use goes on once the bucket refills.
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(open_channel_forwarded(&r, 3, "").await, StatusCode::CREATED);
}

/// Ciphertext bytes in a page of records or envelopes (`field` holds hex).
fn page_bytes(items: &[Value], field: &str) -> usize {
    items
        .iter()
        .map(|x| x[field].as_str().unwrap().len() / 2)
        .sum()
}

/// A page must fit well under tungstenite's 16 MiB frame and the client's 64 MiB cap.
const PAGE_JSON_CEILING: usize = 16 * 1024 * 1024;

async fn limits_log_of_max_size_records_is_read_in_pages_under_max_page_bytes(b: Backend) {
    let Some(r) = Relay::with_limits(b, Limits::default().unlimited_rates()).await else {
        return;
    };
    let (log, _, tok) = r.identity(40).await;
    // The attack: a log of the largest records, which a page of 256 used to carry
    // all at once (32 MiB of ciphertext, > 64 MiB of JSON).
    let per_page = MAX_PAGE_BYTES / MAX_RECORD_BYTES;
    let per_append = MAX_APPEND_BYTES / MAX_RECORD_BYTES;
    let total = 2 * per_page + 6;
    let big = |i: usize| json!({ "epoch": 1, "nonce": "00", "ciphertext": hex::encode(vec![i as u8; MAX_RECORD_BYTES]) });
    for start in (0..total).step_by(per_append) {
        let recs = (start..total.min(start + per_append)).map(big).collect();
        let (s, v) = r.append(&log, &tok, recs).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // Over HTTP: several pages, each within the byte bound, nothing lost.
    let (mut after, mut sizes) = (0usize, Vec::new());
    loop {
        let path = format!("/v1/logs/{}/records?after={after}&limit={MAX_PAGE}", log.0);
        let (s, v) = r.get(&path, Some(&tok)).await;
        assert_eq!(s, StatusCode::OK);
        let recs = v["records"].as_array().unwrap();
        assert!(page_bytes(recs, "ciphertext") <= MAX_PAGE_BYTES);
        assert!(v.to_string().len() < PAGE_JSON_CEILING);
        for rec in recs {
            after += 1;
            assert_eq!(rec["seq"], json!(after));
            assert_eq!(
                rec["ciphertext"].as_str().unwrap()[..2],
                hex::encode([(after - 1) as u8])
            );
        }
        sizes.push(recs.len());
        if v["more"] == json!(false) {
            break;
        }
    }
    assert_eq!(
        sizes,
        vec![per_page, per_page, 6],
        "the first pages fill the bound exactly"
    );
    assert_eq!(after, total);
    // Pushed on a WebSocket catching up from 0: the same pages.
    let mut ws = ws_connect_query(&r, &log, &tok, "?after=0").await;
    let (mut seen, mut pushes) = (0usize, Vec::new());
    while seen < total {
        let p = next_text(&mut ws).await;
        assert_eq!(p["type"], json!("records"));
        let recs = p["records"].as_array().unwrap();
        assert!(page_bytes(recs, "ciphertext") <= MAX_PAGE_BYTES);
        assert!(p.to_string().len() < PAGE_JSON_CEILING);
        for rec in recs {
            seen += 1;
            assert_eq!(rec["seq"], json!(seen));
        }
        pushes.push(recs.len());
    }
    assert_eq!(pushes, vec![per_page, per_page, 6]);
    // Honest use goes on: a small append is pushed and read.
    let (s, _) = r.append(&log, &tok, vec![record("small", None)]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        next_text(&mut ws).await["records"][0]["seq"],
        json!(total + 1)
    );
    let _ = ws.send(Message::Close(None)).await;
}

async fn limits_batch_read_amplification_is_refused_and_bounded_by_bytes(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(41).await;
    let a = mailbox(&r, &log, &tok, 4100).await;
    let m = mailbox(&r, &log, &tok, 4101).await;
    let fill = MAX_BATCH_READ_BYTES / MAX_ENVELOPE_BYTES;
    let big = "x".repeat(MAX_ENVELOPE_BYTES);
    for i in 0..fill + 6 {
        assert_eq!(post_env(&r, &a, i as u8, &big).await.0, StatusCode::OK);
    }
    for i in 0..10 {
        assert_eq!(post_env(&r, &m, i, &big).await.0, StatusCode::OK);
    }
    let read = format!("/v1/logs/{}/mailboxes/read", log.0);
    let batch = |list: &[(&Hex32, usize)]| {
        json!({
            "mailboxes": list.iter().map(|(m, after)| json!({ "mailbox_id": m.0, "after": after })).collect::<Vec<_>>(),
            "limit": MAX_PAGE,
        })
    };
    // The attack: one mailbox listed many times multiplies the answer.
    let (s, v) = r.post(&read, Some(&tok), batch(&[(&a, 0), (&a, 0)])).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("duplicate_mailbox"))
    );
    // One mailbox's page stops at the byte bound, exactly.
    let (s, v) = r
        .get(
            &format!(
                "/v1/logs/{}/mailboxes/{}/envelopes?limit={MAX_PAGE}",
                log.0, a.0
            ),
            Some(&tok),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let envs = v["envelopes"].as_array().unwrap();
    assert_eq!(page_bytes(envs, "payload"), MAX_PAGE_BYTES);
    assert_eq!((envs.len(), v["more"].clone()), (fill, json!(true)));
    // A batch shares one byte budget across its mailboxes, in request order.
    let (s, v) = r.post(&read, Some(&tok), batch(&[(&m, 0), (&a, 0)])).await;
    assert_eq!(s, StatusCode::OK);
    let res = v["results"].as_array().unwrap();
    let counts: Vec<(usize, Value)> = res
        .iter()
        .map(|p| (p["envelopes"].as_array().unwrap().len(), p["more"].clone()))
        .collect();
    assert_eq!(counts, vec![(10, json!(false)), (fill - 10, json!(true))]);
    let all: Vec<Value> = res
        .iter()
        .flat_map(|p| p["envelopes"].as_array().unwrap().clone())
        .collect();
    assert_eq!(page_bytes(&all, "payload"), MAX_BATCH_READ_BYTES);
    assert!(v.to_string().len() < PAGE_JSON_CEILING);
    // The rest follows on the next read: nothing lost, nothing repeated.
    let (s, v) = r
        .post(&read, Some(&tok), batch(&[(&m, 10), (&a, fill - 10)]))
        .await;
    assert_eq!(s, StatusCode::OK);
    let res = v["results"].as_array().unwrap();
    assert!(res[0]["envelopes"].as_array().unwrap().is_empty());
    let rest = res[1]["envelopes"].as_array().unwrap();
    let seqs: Vec<i64> = rest.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        ((fill - 9) as i64..=(fill + 6) as i64).collect::<Vec<_>>()
    );
    assert_eq!(
        (res[0]["more"].clone(), res[1]["more"].clone()),
        (json!(false), json!(false))
    );
}

async fn limits_one_device_logging_in_repeatedly_cannot_lock_out_another(b: Backend) {
    // Small tables so the attack is quick; the per-device caps are the real ones.
    let table = 4 * MAX_SESSIONS_PER_DEVICE;
    let limits = Limits {
        max_sessions: table,
        max_pending_challenges: table,
        ..Limits::default().unlimited_rates()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, d1, first) = r.identity(42).await;
    let (log2, d2) = (Hex32::from_seed(43), Device::new(43));
    r.create_log(&log2, &d2).await;
    // The attack: one device logs in more often than the whole table holds ...
    let mut tokens = vec![first];
    for _ in 0..table + MAX_SESSIONS_PER_DEVICE {
        if let Ok(t) = r.try_login(&log, &d1).await {
            tokens.push(t);
        }
    }
    // ... and leaves as many challenges unanswered as the challenge table holds.
    let ask = json!({ "log_id": log.0, "device_id": d1.id });
    let mut challenges = Vec::new();
    for _ in 0..table {
        let (s, v) = r.post("/v1/auth/challenge", None, ask.clone()).await;
        if s == StatusCode::OK {
            challenges.push(v["challenge"].as_str().unwrap().to_string());
        }
    }
    // Another device still logs in.
    let (s, v) = r
        .post(
            "/v1/auth/challenge",
            None,
            json!({ "log_id": log2.0, "device_id": d2.id }),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "challenge table locked by one device: {v}"
    );
    let tok2 = r.try_login(&log2, &d2).await;
    assert!(tok2.is_ok(), "session table locked by one device: {tok2:?}");
    // The attacker keeps only its newest sessions and challenges.
    let info = format!("/v1/logs/{}", log.0);
    let (old, newest) = tokens.split_at(tokens.len() - MAX_SESSIONS_PER_DEVICE);
    for t in newest {
        assert_eq!(r.get(&info, Some(t)).await.0, StatusCode::OK);
    }
    for t in old {
        assert_eq!(r.get(&info, Some(t)).await.0, StatusCode::UNAUTHORIZED);
    }
    let answer = |c: &str| {
        let c: chorus_relay::api::Id32 = c.parse().unwrap();
        let (l, d) = (log.0.parse().unwrap(), d1.id.parse().unwrap());
        let sig =
            ed25519_dalek::Signer::sign(&d1.key, &chorus_relay::api::auth_message(&c, &l, &d));
        json!({ "challenge": c.to_string(), "signature": hex::encode(sig.to_bytes()) })
    };
    let oldest = challenges.len() - MAX_PENDING_CHALLENGES_PER_DEVICE - 1;
    let (s, _) = r
        .post("/v1/auth/session", None, answer(&challenges[oldest]))
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "forgotten when a newer one was issued"
    );
    let (s, _) = r
        .post("/v1/auth/session", None, answer(&challenges[oldest + 1]))
        .await;
    assert_eq!(s, StatusCode::OK, "the newest ones are kept");
}

/// Issue 11 item 8: the per-device caps bound what one *registered* device holds,
/// but a challenge was issued for any device id, so made-up ids (free to make)
/// filled the challenge table and locked every device out of logging in.
async fn limits_made_up_device_ids_get_no_challenge(b: Backend) {
    let table = 8;
    let limits = Limits {
        max_pending_challenges: table,
        ..Limits::default().unlimited_rates()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, d1, _) = r.identity(46).await;
    for seed in 0..2 * table as u8 {
        let made_up = Device::new(seed);
        let (s, v) = r
            .post(
                "/v1/auth/challenge",
                None,
                json!({ "log_id": log.0, "device_id": made_up.id }),
            )
            .await;
        assert_eq!(
            (s, v["error"].clone()),
            (StatusCode::UNAUTHORIZED, json!("unauthorized"))
        );
    }
    // Nor for a device of a log that does not exist.
    let (s, _) = r
        .post(
            "/v1/auth/challenge",
            None,
            json!({ "log_id": Hex32::from_seed(47).0, "device_id": d1.id }),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        r.try_login(&log, &d1).await.is_ok(),
        "the real device still logs in"
    );
}

/// Issue 11 item 8: one token opened any number of sockets.
async fn limits_sockets_per_device_at_bound_then_refused(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(48).await;
    let mut open = Vec::new();
    for _ in 0..MAX_SOCKETS_PER_DEVICE {
        open.push(ws_connect(&r, &log, &tok).await);
    }
    let url = format!("{}/v1/logs/{}/ws", r.ws_base, log.0);
    let refused = |url: String| async {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {tok}").parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => 101,
        }
    };
    assert_eq!(refused(url.clone()).await, 429, "one socket over the bound");
    // Closing one gives its slot back.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    let mut status = 0;
    for _ in 0..50 {
        status = refused(url.clone()).await;
        if status == 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 101, "a closed socket's slot is free again");
}

async fn limits_filling_the_rate_table_does_not_reset_an_exhausted_bucket(b: Backend) {
    let table = 32;
    let limits = Limits {
        max_rate_buckets: table,
        mailbox_post_rate: chorus_relay::Rate {
            per_sec: 1.0,
            burst: 4.0,
        },
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(44).await;
    let m = mailbox(&r, &log, &tok, 4400).await;
    for i in 0..4 {
        assert_eq!(post_env(&r, &m, i, "x").await.0, StatusCode::OK);
    }
    assert_eq!(
        post_env(&r, &m, 4, "x").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The attack: touch more keys than the table holds (posts to unregistered
    // mailboxes are refused, but each takes a bucket) to make it forget ours.
    for i in 0..2 * table as u64 {
        let (s, _) = post_env(&r, &Hex32::from_u64(90_000 + i), 0, "x").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (s, v) = post_env(&r, &m, 4, "x").await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!("rate_limited")),
        "the exhausted bucket was forgotten"
    );
    // Honest use goes on once the bucket refills.
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(post_env(&r, &m, 4, "x").await.0, StatusCode::OK);
}

async fn mailboxes_per_log_at_bound_then_refused(b: Backend) {
    let limits = Limits {
        max_mailboxes_per_log: 3,
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(26).await;
    for i in 0..3 {
        mailbox(&r, &log, &tok, 100 + i).await;
    }
    mailbox(&r, &log, &tok, 100).await; // re-registering is idempotent, not a new one
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/mailboxes", log.0),
            Some(&tok),
            json!({ "mailbox_id": Hex32::from_u64(200).0 }),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("too_many_mailboxes"))
    );
}

async fn append_rate_at_bound_then_limited(b: Backend) {
    let limits = Limits {
        append_rate: chorus_relay::Rate {
            per_sec: 2.0,
            burst: 3.0,
        },
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(27).await;
    for _ in 0..3 {
        assert_eq!(
            r.append(&log, &tok, vec![record("x", None)]).await.0,
            StatusCode::OK
        );
    }
    let (s, v) = r.append(&log, &tok, vec![record("x", None)]).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!("rate_limited"))
    );
    assert_eq!(head(&r, &log, &tok).await, 3);
    r.clock.advance(Duration::from_millis(500));
    assert_eq!(
        r.append(&log, &tok, vec![record("x", None)]).await.0,
        StatusCode::OK
    );
}

async fn unauthenticated_creation_rate_at_bound_then_limited(b: Backend) {
    let limits = Limits {
        open_rate: chorus_relay::Rate {
            per_sec: 1.0,
            burst: 2.0,
        },
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let create = |i: u64| json!({ "channel_id": Hex32::from_u64(i).0 });
    assert_eq!(
        r.post("/v1/rendezvous", None, create(1)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        r.post("/v1/rendezvous", None, create(2)).await.0,
        StatusCode::CREATED
    );
    let (s, v) = r.post("/v1/rendezvous", None, create(3)).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!("rate_limited"))
    );
    let dev = Device::new(28);
    let (s, _) = r
        .post(
            "/v1/logs",
            None,
            json!({ "log_id": Hex32::from_seed(28).0, "genesis": "", "device_id": dev.id }),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "log creation shares the per-IP budget"
    );
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(
        r.post("/v1/rendezvous", None, create(3)).await.0,
        StatusCode::CREATED
    );
}

async fn head(r: &Relay, log: &Hex32, token: &str) -> i64 {
    let (s, v) = r.get(&format!("/v1/logs/{}", log.0), Some(token)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["head_seq"].as_i64().unwrap()
}

async fn log_append_and_read_round_trip_with_author_stamped(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, dev, tok) = r.identity(1).await;
    let (s, v) = r
        .append(
            &log,
            &tok,
            vec![record("a", None), record("b", Some(("s", 0)))],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["seqs"], json!([1, 2]));
    let (s, v) = r
        .get(&format!("/v1/logs/{}/records?after=0", log.0), Some(&tok))
        .await;
    assert_eq!(s, StatusCode::OK);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["author"], json!(dev.id));
    assert_eq!(recs[1]["ciphertext"], json!(hex::encode("b")));
    assert_eq!(recs[1]["guard"]["expected_version"], json!(0));
    assert_eq!(v["head_seq"], json!(2));
    assert_eq!(v["more"], json!(false));
    let (_, info) = r.get(&format!("/v1/logs/{}", log.0), Some(&tok)).await;
    let genesis = genesis(&log, &dev, SecurityLevel::SharedRoot);
    assert_eq!(info["genesis"], json!(genesis));
    // Creating the same log again is a conflict.
    let (s, v) = r
        .post(
            "/v1/logs",
            None,
            json!({ "log_id": log.0, "genesis": genesis, "device_id": dev.id }),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("log_exists"))
    );
}

async fn racing_guarded_appends_have_one_winner_per_version_and_no_gaps(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, dev, _) = r.identity(2).await;
    const CLIENTS: usize = 8;
    const VERSIONS: i64 = 12;
    let r = std::sync::Arc::new(r);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (r, log) = (r.clone(), log.clone());
        let dev = Device::new(2);
        let _ = &dev;
        tasks.push(tokio::spawn(async move {
            let tok = r.login(&log, &dev).await;
            let mut wins = Vec::new();
            let mut version = 0i64;
            while version < VERSIONS {
                let rec = record(&format!("c{c}v{version}"), Some(("session", version)));
                // An unguarded record rides along: it must never get a seq if the guard fails.
                let (s, v) = r.append(&log, &tok, vec![rec, record("side", None)]).await;
                match s {
                    StatusCode::OK => {
                        wins.push(version);
                        version += 1;
                    }
                    StatusCode::CONFLICT => {
                        assert_eq!(v["error"], json!("guard_failed"));
                        version = v["failed"][0]["current_version"].as_i64().unwrap();
                    }
                    other => panic!("unexpected {other}: {v}"),
                }
            }
            wins
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(
        all,
        (0..VERSIONS).collect::<Vec<_>>(),
        "exactly one winner per version"
    );
    let tok = r.login(&log, &dev).await;
    let (_, v) = r
        .get(
            &format!("/v1/logs/{}/records?after=0&limit=256", log.0),
            Some(&tok),
        )
        .await;
    let recs = v["records"].as_array().unwrap();
    let seqs: Vec<i64> = recs.iter().map(|x| x["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=2 * VERSIONS).collect::<Vec<_>>(), "no seq gaps");
    let versions: Vec<i64> = recs
        .iter()
        .filter_map(|x| x["guard"]["expected_version"].as_i64())
        .collect();
    assert_eq!(versions, (0..VERSIONS).collect::<Vec<_>>());
}

async fn failed_guard_appends_nothing_and_names_current_versions(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(3).await;
    let (s, _) = r
        .append(
            &log,
            &tok,
            vec![record("x", Some(("a", 0))), record("y", Some(("a", 1)))],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "one batch may guard a stream twice");
    let (s, v) = r
        .append(
            &log,
            &tok,
            vec![
                record("p", Some(("b", 0))),
                record("q", Some(("a", 0))),
                record("z", Some(("c", 5))),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"], json!("guard_failed"));
    let failed = v["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["index"], json!(1));
    assert_eq!(failed[0]["stream_tag"], json!(hex::encode("a")));
    assert_eq!(failed[0]["current_version"], json!(2));
    assert_eq!(failed[1]["current_version"], json!(0));
    assert_eq!(head(&r, &log, &tok).await, 2, "nothing appended");
    // Stream b was not moved by the refused batch.
    let (s, _) = r
        .append(&log, &tok, vec![record("p", Some(("b", 0)))])
        .await;
    assert_eq!(s, StatusCode::OK);
}

/// The payloads `mailbox` holds, as hex.
async fn inbox(r: &Relay, log: &Hex32, tok: &str, mailbox: &Hex32) -> Vec<String> {
    let path = format!(
        "/v1/logs/{}/mailboxes/{}/envelopes?after=0",
        log.0, mailbox.0
    );
    let (s, v) = r.get(&path, Some(tok)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"].as_str().unwrap().to_owned())
        .collect()
}

/// A bundled append: guarded records and one envelope for a mailbox on this relay.
async fn bundle(
    r: &Relay,
    log: &Hex32,
    tok: &str,
    version: i64,
    mailbox: &Hex32,
    id: u8,
    payload: &str,
) -> (StatusCode, Value) {
    r.post(
        &format!("/v1/logs/{}/append", log.0),
        Some(tok),
        json!({
            "records": [record(&format!("sent {id}"), Some(("session", version)))],
            "post": {
                "mailbox_id": mailbox.0,
                "envelope_id": hex::encode([id; 16]),
                "payload": hex::encode(payload),
            },
        }),
    )
    .await
}

async fn a_bundled_send_stores_its_record_and_envelope_together_or_neither(b: Backend) {
    let limits = Limits {
        mailbox_depth: 2,
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (alice, _, a_tok) = r.identity(40).await;
    let (bob, _, b_tok) = r.identity(41).await;
    let m = mailbox(&r, &bob, &b_tok, 40).await;
    let (s, v) = bundle(&r, &alice, &a_tok, 0, &m, 1, "one").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["seqs"], json!([1]));
    assert_eq!(v["posted"], json!({ "seq": 1, "duplicate": false }));
    assert_eq!(inbox(&r, &bob, &b_tok, &m).await, vec![hex::encode("one")]);

    // A stale guard: neither the record nor the envelope.
    let (s, v) = bundle(&r, &alice, &a_tok, 0, &m, 2, "two").await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("guard_failed"))
    );
    assert_eq!(
        inbox(&r, &bob, &b_tok, &m).await,
        vec![hex::encode("one")],
        "no envelope for a lost race"
    );
    assert_eq!(head(&r, &alice, &a_tok).await, 1);

    // A post the relay refuses: no record, and the stream did not move.
    let (s, v) = bundle(&r, &alice, &a_tok, 1, &Hex32::from_u64(4040), 2, "two").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(
        head(&r, &alice, &a_tok).await,
        1,
        "no record without its envelope"
    );
    assert_eq!(post_env(&r, &m, 3, "three").await.0, StatusCode::OK);
    let (s, v) = bundle(&r, &alice, &a_tok, 1, &m, 4, "four").await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::INSUFFICIENT_STORAGE, json!("mailbox_full"))
    );
    assert_eq!(head(&r, &alice, &a_tok).await, 1);
    assert_eq!(inbox(&r, &bob, &b_tok, &m).await.len(), 2);
    // An envelope over the bound is refused before anything is looked at.
    let big = "x".repeat(MAX_ENVELOPE_BYTES + 1);
    let (s, v) = bundle(&r, &alice, &a_tok, 1, &m, 5, &big).await;
    assert!(s.is_client_error(), "{s} {v}");
    assert_eq!(v["error"], json!("envelope_too_large"));
    assert_eq!(head(&r, &alice, &a_tok).await, 1);

    // The same envelope again (a retry after a lost answer) is stored once.
    let (s, v) = bundle(&r, &alice, &a_tok, 1, &m, 1, "one").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["posted"], json!({ "seq": 1, "duplicate": true }));
    assert_eq!(head(&r, &alice, &a_tok).await, 2);
    assert_eq!(inbox(&r, &bob, &b_tok, &m).await.len(), 2);
}

async fn two_people_sending_each_other_bundles_at_once_never_deadlock(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (alice, _, a_tok) = r.identity(42).await;
    let (bob, _, b_tok) = r.identity(43).await;
    let to_bob = mailbox(&r, &bob, &b_tok, 42).await;
    let to_alice = mailbox(&r, &alice, &a_tok, 43).await;
    const SENDS: u8 = 20;
    let r = std::sync::Arc::new(r);
    // Each bundle locks its author's log and the recipient's (whose envelope bytes
    // it counts): in opposite orders, two senders would each wait for the other.
    let sender = |log: Hex32, tok: String, to: Hex32| {
        let r = r.clone();
        tokio::spawn(async move {
            for i in 0..SENDS {
                let (s, v) = bundle(&r, &log, &tok, i64::from(i), &to, i, "x").await;
                assert_eq!(s, StatusCode::OK, "{v}");
            }
        })
    };
    let a = sender(alice.clone(), a_tok.clone(), to_bob.clone());
    let b2 = sender(bob.clone(), b_tok.clone(), to_alice.clone());
    a.await.unwrap();
    b2.await.unwrap();
    assert_eq!(
        inbox(&r, &bob, &b_tok, &to_bob).await.len(),
        usize::from(SENDS)
    );
    assert_eq!(
        inbox(&r, &alice, &a_tok, &to_alice).await.len(),
        usize::from(SENDS)
    );
    assert_eq!(head(&r, &alice, &a_tok).await, i64::from(SENDS));
    assert_eq!(head(&r, &bob, &b_tok).await, i64::from(SENDS));
}

/// An unguarded record sealed under `epoch`.
fn at_epoch(ciphertext: &str, epoch: i64) -> Value {
    let mut r = record(ciphertext, None);
    r["epoch"] = json!(epoch);
    r
}

/// Asserts a `409 stale_epoch` naming the record and where the log (or the batch
/// before it) is.
fn assert_stale(s: StatusCode, v: &Value, index: usize, epoch: i64, current: i64) {
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        v,
        &json!({
            "error": "stale_epoch",
            "index": index,
            "epoch": epoch,
            "current_epoch": current,
            "message": format!(
                "the log moved to epoch {current}: read the log before appending under epoch {epoch}"
            ),
        })
    );
}

async fn an_append_under_a_stale_epoch_is_refused_whole_with_or_without_its_envelope(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (alice, dev, a_tok) = r.identity(44).await;
    let (bob, _, b_tok) = r.identity(45).await;
    let m = mailbox(&r, &bob, &b_tok, 44).await;
    let (s, v) = r
        .append(&alice, &a_tok, vec![at_epoch("a", 1), at_epoch("b", 1)])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The rotation after a revocation: everything from here on is epoch 2.
    let (s, v) = r.append(&alice, &a_tok, vec![at_epoch("rotate", 2)]).await;
    assert_eq!((s, v["seqs"].clone()), (StatusCode::OK, json!([3])), "{v}");

    // The hazard: a device that has not read the rotation seals under epoch 1, whose
    // key the revoked device holds. Refused, and nothing lands after the rotation.
    let (s, v) = r.append(&alice, &a_tok, vec![at_epoch("late", 1)]).await;
    assert_stale(s, &v, 0, 1, 2);
    assert_eq!(head(&r, &alice, &a_tok).await, 3, "nothing appended");

    // The same as a bundled send: neither the record nor the envelope.
    let bundled = |epoch: i64, id: u8| {
        json!({
            "records": [at_epoch(&format!("sent {id}"), epoch)],
            "post": {
                "mailbox_id": m.0,
                "envelope_id": hex::encode([id; 16]),
                "payload": hex::encode(format!("envelope {id}")),
            },
        })
    };
    let path = format!("/v1/logs/{}/append", alice.0);
    let (s, v) = r.post(&path, Some(&a_tok), bundled(1, 1)).await;
    assert_stale(s, &v, 0, 1, 2);
    assert!(
        inbox(&r, &bob, &b_tok, &m).await.is_empty(),
        "no envelope beside a stale record"
    );
    assert_eq!(head(&r, &alice, &a_tok).await, 3);

    // Under the current epoch, plain and bundled appends go on.
    let (s, v) = r.append(&alice, &a_tok, vec![at_epoch("c", 2)]).await;
    assert_eq!((s, v["seqs"].clone()), (StatusCode::OK, json!([4])), "{v}");
    let (s, v) = r.post(&path, Some(&a_tok), bundled(2, 2)).await;
    assert_eq!((s, v["seqs"].clone()), (StatusCode::OK, json!([5])), "{v}");
    assert_eq!(
        inbox(&r, &bob, &b_tok, &m).await,
        vec![hex::encode("envelope 2")]
    );

    // Within a batch epochs never go back either: 2 then 1 is refused whole.
    let (s, v) = r
        .append(&alice, &a_tok, vec![at_epoch("d", 2), at_epoch("e", 1)])
        .await;
    assert_stale(s, &v, 1, 1, 2);
    // 3 then 2: the second is stale against the first, not the log.
    let (s, v) = r
        .append(&alice, &a_tok, vec![at_epoch("f", 3), at_epoch("g", 2)])
        .await;
    assert_stale(s, &v, 1, 2, 3);
    assert_eq!(head(&r, &alice, &a_tok).await, 5);
    // ... and the refused batch did not move the log's epoch.
    let (s, v) = r.append(&alice, &a_tok, vec![at_epoch("h", 2)]).await;
    assert_eq!((s, v["seqs"].clone()), (StatusCode::OK, json!([6])), "{v}");

    // In one group commit, each job is judged after the jobs before it: a rotation
    // to 3 makes the next job's epoch 2 stale; the one after it, at 3, goes in.
    let (log_id, author) = (alice.0.parse().unwrap(), dev.id.parse().unwrap());
    let job = |epoch: i64| chorus_relay::store::AppendJob {
        log_id,
        author,
        records: vec![chorus_relay::api::RecordIn {
            epoch,
            nonce: chorus_relay::api::HexBytes(vec![0]),
            ciphertext: chorus_relay::api::HexBytes(vec![epoch as u8]),
            guard: None,
        }],
        max_records: u64::MAX,
    };
    let out = r
        .state
        .store()
        .append_group(&[job(3), job(2), job(3)])
        .await
        .unwrap();
    assert_eq!(out[0], Ok(vec![7]));
    assert!(
        matches!(
            out[1],
            Err(chorus_relay::store::AppendRejection::StaleEpoch {
                index: 0,
                epoch: 2,
                current: 3
            })
        ),
        "{:?}",
        out[1]
    );
    assert_eq!(out[2], Ok(vec![8]));
    assert_eq!(head(&r, &alice, &a_tok).await, 8);

    // Epochs move one at a time: a record two past the log's is refused whole (a
    // device skipping ahead would leave the log at an epoch nobody holds a key to).
    let (s, v) = r
        .append(&alice, &a_tok, vec![at_epoch("i", 3), at_epoch("j", 5)])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        (
            v["error"].clone(),
            v["index"].clone(),
            v["current_epoch"].clone()
        ),
        (json!("epoch_jump"), json!(1), json!(3))
    );
    assert_eq!(head(&r, &alice, &a_tok).await, 8);
}

async fn append_batch_at_bound_is_accepted_and_one_over_changes_nothing(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(4).await;
    let share = "x".repeat(MAX_APPEND_BYTES / MAX_APPEND_BATCH);
    let (s, v) = r
        .append(&log, &tok, vec![record(&share, None); MAX_APPEND_BATCH])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["seqs"].as_array().unwrap().len(), MAX_APPEND_BATCH);
    // The byte bound over all records of one append: at it, and one byte over.
    let big = "x".repeat(MAX_RECORD_BYTES);
    let at_bytes = vec![record(&big, None); MAX_APPEND_BYTES / MAX_RECORD_BYTES];
    let (s, v) = r.append(&log, &tok, at_bytes.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut over = at_bytes;
    over.push(record("x", None));
    let (s, v) = r.append(&log, &tok, over).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("batch_too_large"))
    );
    let (s, v) = r
        .append(&log, &tok, vec![record("x", None); MAX_APPEND_BATCH + 1])
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("batch_too_large"))
    );
    let (s, v) = r
        .append(&log, &tok, vec![record(&format!("{big}x"), None)])
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("record_too_large"))
    );
    let (s, v) = r.append(&log, &tok, vec![]).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("empty_batch"))
    );
    assert_eq!(
        head(&r, &log, &tok).await,
        (MAX_APPEND_BATCH + MAX_APPEND_BYTES / MAX_RECORD_BYTES) as i64
    );
}

/// The binary answer (`chorus_relay_api::binary`) is the same page as the JSON one,
/// given only to a client that asks; anyone else still reads JSON.
async fn a_page_asked_for_in_binary_is_the_json_page(b: Backend) {
    use chorus_relay::api::{RecordsPage, binary};
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(5).await;
    let (s, _) = r
        .append(
            &log,
            &tok,
            vec![record("one", Some(("s", 0))), record("two", None)],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let url = format!("{}/v1/logs/{}/records?after=0", r.base, log.0);
    let fetch = |accept: &'static str| {
        r.http
            .get(&url)
            .bearer_auth(&tok)
            .header("accept", accept)
            .send()
    };
    let resp = fetch(binary::MEDIA_TYPE).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], binary::MEDIA_TYPE);
    let page: RecordsPage = binary::decode(&resp.bytes().await.unwrap()).unwrap();
    let (_, json) = r
        .get(&format!("/v1/logs/{}/records?after=0", log.0), Some(&tok))
        .await;
    assert_eq!(page.records.len(), 2);
    assert_eq!(serde_json::to_value(&page).unwrap(), json);
    for other in [
        "application/json",
        "*/*",
        "application/vnd.chorus.page.v2+postcard",
    ] {
        let resp = fetch(other).await.unwrap();
        assert_eq!(
            resp.headers()["content-type"],
            "application/json",
            "{other}"
        );
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(v, json, "{other}");
    }
}

async fn records_are_paged_up_to_the_page_bound(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(5).await;
    let total = MAX_PAGE as usize + 44;
    for chunk in 0..total.div_ceil(MAX_APPEND_BATCH) {
        let n = MAX_APPEND_BATCH.min(total - chunk * MAX_APPEND_BATCH);
        let (s, _) = r.append(&log, &tok, vec![record("r", None); n]).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, v) = r
        .get(
            &format!("/v1/logs/{}/records?after=0&limit={MAX_PAGE}", log.0),
            Some(&tok),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["records"].as_array().unwrap().len(), MAX_PAGE as usize);
    assert_eq!(v["more"], json!(true));
    let (_, v) = r
        .get(
            &format!("/v1/logs/{}/records?after={MAX_PAGE}", log.0),
            Some(&tok),
        )
        .await;
    assert_eq!(v["records"].as_array().unwrap().len(), 44);
    assert_eq!(v["records"][0]["seq"], json!(MAX_PAGE + 1));
    assert_eq!(v["more"], json!(false));
    let (_, v) = r
        .get(&format!("/v1/logs/{}/records", log.0), Some(&tok))
        .await;
    assert_eq!(
        v["records"].as_array().unwrap().len(),
        DEFAULT_PAGE as usize
    );
    let (s, v) = r
        .get(
            &format!("/v1/logs/{}/records?after=0&limit={}", log.0, MAX_PAGE + 1),
            Some(&tok),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("limit_too_large"))
    );
    let (s, v) = r
        .get(&format!("/v1/logs/{}/records?after=-1", log.0), Some(&tok))
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_after"))
    );
}

async fn trim_waits_for_every_current_device_cursor(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(6).await;
    let d2 = Device::new(60);
    let (s, _) = r.add_device(&log, &tok, &d2).await;
    assert_eq!(s, StatusCode::CREATED);
    let tok2 = r.login(&log, &d2).await;
    r.append(&log, &tok, vec![record("r", None); 10]).await;
    let cursor = format!("/v1/logs/{}/cursor", log.0);
    let trim = format!("/v1/logs/{}/trim", log.0);
    let (s, v) = r.post(&cursor, Some(&tok), json!({ "seq": 8 })).await;
    assert_eq!((s, v["cursor"].clone()), (StatusCode::OK, json!(8)));
    let (s, v) = r.post(&cursor, Some(&tok), json!({ "seq": 3 })).await;
    assert_eq!(v["cursor"], json!(8), "cursors never move back ({s})");
    let (s, v) = r.post(&cursor, Some(&tok), json!({ "seq": 11 })).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("cursor_ahead"))
    );
    let (s, v) = r.post(&trim, Some(&tok), json!({ "below_seq": 5 })).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("not_acknowledged"))
    );
    assert_eq!(v["min_cursor"], json!(0));
    r.post(&cursor, Some(&tok2), json!({ "seq": 5 })).await;
    let (s, v) = r.post(&trim, Some(&tok), json!({ "below_seq": 5 })).await;
    assert_eq!((s, v["first_seq"].clone()), (StatusCode::OK, json!(5)));
    let (_, v) = r
        .get(&format!("/v1/logs/{}/records?after=0", log.0), Some(&tok))
        .await;
    assert_eq!(v["first_seq"], json!(5));
    assert_eq!(v["records"][0]["seq"], json!(5));
    assert_eq!(v["records"].as_array().unwrap().len(), 6);
    // A revoked device no longer holds trimming back.
    r.revoke_device(&log, &tok, &d2, &root()).await;
    let (s, _) = r.post(&trim, Some(&tok), json!({ "below_seq": 8 })).await;
    assert_eq!(s, StatusCode::OK);
}

async fn ws_connect(
    r: &Relay,
    log: &Hex32,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    ws_connect_query(r, log, token, "").await
}

async fn ws_connect_query(
    r: &Relay,
    log: &Hex32,
    token: &str,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("{}/v1/logs/{}/ws{query}", r.ws_base, log.0)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws
}

async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("push in time");
        match msg {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a push, got {other:?}"),
        }
    }
}

async fn revocation_cuts_access_including_the_live_websocket(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, d1, tok1) = r.identity(7).await;
    let d2 = Device::new(70);
    let devices = format!("/v1/logs/{}/devices", log.0);
    let (s, _) = r.add_device(&log, &tok1, &d2).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = r.add_device(&log, &tok1, &d2).await;
    assert_eq!(s, StatusCode::OK, "registering twice is idempotent");
    let tok2 = r.login(&log, &d2).await;
    let mut ws = ws_connect(&r, &log, &tok2).await;
    r.append(&log, &tok1, vec![record("hello", None)]).await;
    let push = next_text(&mut ws).await;
    assert_eq!(push["type"], json!("records"));
    assert_eq!(push["records"][0]["seq"], json!(1));
    assert_eq!(push["records"][0]["author"], json!(d1.id));

    let (s, _) = r.revoke_device(&log, &tok1, &d2, &root()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // The socket closes at once with the revocation code.
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return Some(u16::from(f.code)),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("socket closed promptly");
    assert_eq!(closed, Some(4003));
    let (s, _) = r
        .get(&format!("/v1/logs/{}/records", log.0), Some(&tok2))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = r.append(&log, &tok2, vec![record("x", None)]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        r.try_login(&log, &d2).await.is_err(),
        "a revoked key cannot log in again"
    );
    let (s, v) = r.add_device(&log, &tok1, &d2).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("device_revoked"))
    );
    let (s, v) = r.revoke_device(&log, &tok1, &d1, &root()).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("last_device"))
    );
    let (_, v) = r.get(&devices, Some(&tok1)).await;
    assert!(v["devices"][1]["revoked_ms"].is_i64());
}

async fn every_protected_endpoint_requires_a_valid_token(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, _) = r.identity(8).await;
    let l = &log.0;
    let x = Hex32::from_seed(9).0;
    let table: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/logs/{l}"), None),
        (
            Method::POST,
            format!("/v1/logs/{l}/append"),
            Some(json!({ "records": [record("a", None)] })),
        ),
        (Method::GET, format!("/v1/logs/{l}/records?after=0"), None),
        (
            Method::POST,
            format!("/v1/logs/{l}/cursor"),
            Some(json!({ "seq": 0 })),
        ),
        (
            Method::POST,
            format!("/v1/logs/{l}/trim"),
            Some(json!({ "below_seq": 1 })),
        ),
        (Method::GET, format!("/v1/logs/{l}/devices"), None),
        (
            Method::POST,
            format!("/v1/logs/{l}/devices"),
            Some(json!({ "device_id": Device::new(1).id, "authorization": "00" })),
        ),
        (
            Method::POST,
            format!("/v1/logs/{l}/devices/{x}/revoke"),
            Some(json!({ "authorization": "00" })),
        ),
        (
            Method::POST,
            format!("/v1/logs/{l}/mailboxes"),
            Some(json!({ "mailbox_id": x })),
        ),
        (
            Method::POST,
            format!("/v1/logs/{l}/mailboxes/read"),
            Some(json!({ "mailboxes": [{ "mailbox_id": x }] })),
        ),
        (
            Method::GET,
            format!("/v1/logs/{l}/mailboxes/{x}/envelopes"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/logs/{l}/prekeys/{x}"),
            Some(json!({ "one_time": ["01"] })),
        ),
        (Method::GET, format!("/v1/logs/{l}/prekeys/{x}/count"), None),
        (Method::PUT, format!("/v1/logs/{l}/blobs/{x}"), None),
        (Method::GET, format!("/v1/logs/{l}/blobs/{x}"), None),
        (Method::DELETE, format!("/v1/logs/{l}/blobs/{x}"), None),
        (Method::GET, format!("/v1/logs/{l}/presence"), None),
        (Method::POST, format!("/v1/logs/{l}/presence"), None),
        (Method::GET, format!("/v1/logs/{l}/ws"), None),
    ];
    let wrong = hex::encode([0x5a; 32]);
    for (method, path, body) in &table {
        for token in [None, Some(wrong.as_str()), Some("not even hex")] {
            let (s, v) = r.call(method.clone(), path, token, body.clone()).await;
            assert_eq!(
                s,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}: {v}"
            );
            assert_eq!(v["error"], json!("unauthorized"));
        }
    }
    // Nothing changed.
    let tok = r.login(&log, &Device::new(8)).await;
    assert_eq!(head(&r, &log, &tok).await, 0);
}

async fn session_for_one_log_is_forbidden_on_another(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log_a, _, _) = r.identity(10).await;
    let (_, _, tok_b) = r.identity(11).await;
    let (s, v) = r.append(&log_a, &tok_b, vec![record("x", None)]).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    let (s, _) = r
        .get(&format!("/v1/logs/{}/records", log_a.0), Some(&tok_b))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

async fn forged_or_replayed_challenge_answers_are_refused(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, dev, _) = r.identity(12).await;
    let (_, v) = r
        .post(
            "/v1/auth/challenge",
            None,
            json!({ "log_id": log.0, "device_id": dev.id }),
        )
        .await;
    let challenge = v["challenge"].as_str().unwrap().to_string();
    // Signed by the wrong key.
    let other = Device::new(99);
    use ed25519_dalek::Signer;
    let c: chorus_relay::api::Id32 = challenge.parse().unwrap();
    let msg =
        chorus_relay::api::auth_message(&c, &log.0.parse().unwrap(), &dev.id.parse().unwrap());
    let bad = other.key.sign(&msg);
    let (s, _) = r
        .post(
            "/v1/auth/session",
            None,
            json!({ "challenge": challenge, "signature": hex::encode(bad.to_bytes()) }),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The challenge was consumed by the failed attempt: the right signature is now too late.
    let good = dev.key.sign(&msg);
    let (s, _) = r
        .post(
            "/v1/auth/session",
            None,
            json!({ "challenge": challenge, "signature": hex::encode(good.to_bytes()) }),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // An unknown device cannot log in.
    assert!(r.try_login(&log, &Device::new(98)).await.is_err());
    // An expired session stops working.
    let tok = r.login(&log, &dev).await;
    r.clock.advance(DEFAULT_SESSION_TTL);
    let (s, _) = r.get(&format!("/v1/logs/{}", log.0), Some(&tok)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A challenge answered after its lifetime is refused.
    let (_, v) = r
        .post(
            "/v1/auth/challenge",
            None,
            json!({ "log_id": log.0, "device_id": dev.id }),
        )
        .await;
    let c: chorus_relay::api::Id32 = v["challenge"].as_str().unwrap().parse().unwrap();
    let late = dev.key.sign(&chorus_relay::api::auth_message(
        &c,
        &log.0.parse().unwrap(),
        &dev.id.parse().unwrap(),
    ));
    r.clock.advance(chorus_relay::limits::CHALLENGE_TTL);
    let (s, _) = r
        .post(
            "/v1/auth/session",
            None,
            json!({ "challenge": c.to_string(), "signature": hex::encode(late.to_bytes()) }),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

async fn device_count_at_bound_then_refused(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(13).await;
    let path = format!("/v1/logs/{}/devices", log.0);
    let device = |seed: u8| {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let id = hex::encode(key.verifying_key().to_bytes());
        Device { key, id }
    };
    for i in 1..MAX_DEVICES_PER_LOG {
        let (s, v) = r.add_device(&log, &tok, &device(i as u8)).await;
        assert_eq!(s, StatusCode::CREATED, "device {i}: {v}");
    }
    let (s, v) = r.add_device(&log, &tok, &device(200)).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("too_many_devices"))
    );
    let not_a_point = (0..=255u8)
        .map(|b| {
            let mut k = [0u8; 32];
            k[0] = b;
            k
        })
        .find(|k| ed25519_dalek::VerifyingKey::from_bytes(k).is_err())
        .unwrap();
    let (s, v) = r
        .post(
            &path,
            Some(&tok),
            json!({ "device_id": hex::encode(not_a_point), "authorization": "00" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "not a valid Ed25519 point: {v}");
}

/// Issue 11 item 7: a session token proves only that the caller is *some* current
/// device. Before device credentials needed a roster entry signed by the root, a
/// secondary (or a thief holding one) revoked the primary with its token alone and
/// locked it out for good.
async fn a_secondary_cannot_revoke_the_primary_or_add_devices_without_the_root(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let log = Hex32::from_seed(41);
    let primary = Device::new(41);
    let create =
        |g: String, dev: &Device| json!({ "log_id": log.0, "genesis": g, "device_id": dev.id });
    // A genesis must be the root's, for this log, naming the creating device.
    let other_log = genesis(&Hex32::from_seed(42), &primary, SecurityLevel::PrimaryRoot);
    let self_signed = roster_entry(
        &log,
        &RosterBody::Genesis {
            root: chorus_crypto::RootPublicKey::from_bytes(root().verifying_key().to_bytes())
                .unwrap(),
            device: primary.public(),
            device_dh: chorus_crypto::DeviceDhPublic::from_slice(&[9; 32]).unwrap(),
            level: SecurityLevel::PrimaryRoot,
            name: "first".into(),
        },
        &primary.key,
    );
    for bad in [other_log, self_signed, "00".into()] {
        let (s, v) = r.post("/v1/logs", None, create(bad, &primary)).await;
        assert_eq!(
            (s, v["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("bad_genesis"))
        );
    }
    let g = genesis(&log, &primary, SecurityLevel::PrimaryRoot);
    let (s, v) = r
        .post("/v1/logs", None, create(g.clone(), &Device::new(43)))
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_genesis"))
    );
    let (s, _) = r.post("/v1/logs", None, create(g, &primary)).await;
    assert_eq!(s, StatusCode::CREATED);
    let tok1 = r.login(&log, &primary).await;
    // In primary-root the primary's own key may sign, as the root may.
    let phone = Device::new(44);
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/devices", log.0),
            Some(&tok1),
            json!({ "device_id": phone.id, "authorization": authorize(&log, &phone, &primary.key) }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let tok2 = r.login(&log, &phone).await;

    // The attack: the phone, with its valid token, revokes the primary.
    let (s, v) = r.revoke_device(&log, &tok2, &primary, &phone.key).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::FORBIDDEN, json!("not_authorized"))
    );
    // Nor by an authorization of another kind, device or log.
    let path = format!("/v1/logs/{}/devices/{}/revoke", log.0, primary.id);
    for proof in [
        authorize(&log, &primary, &root()),
        revocation(&log, &phone, &root()),
        revocation(&Hex32::from_seed(42), &primary, &root()),
        "0a00".into(),
    ] {
        let (s, v) = r
            .post(&path, Some(&tok2), json!({ "authorization": proof }))
            .await;
        assert_eq!(
            (s, v["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("bad_authorization"))
        );
    }
    let (s, v) = r.call(Method::POST, &path, Some(&tok2), None).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("malformed"))
    );
    // Nor may the primary revoke itself: only the root moves away from it.
    let (s, v) = r.revoke_device(&log, &tok1, &primary, &primary.key).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("irrevocable"))
    );
    // The phone cannot let in a device of its choosing either.
    let rogue = Device::new(45);
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/devices", log.0),
            Some(&tok2),
            json!({ "device_id": rogue.id, "authorization": authorize(&log, &rogue, &phone.key) }),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::FORBIDDEN, json!("not_authorized"))
    );
    assert!(r.try_login(&log, &rogue).await.is_err());

    // The primary still works; its genesis stands as its own authorization (a
    // re-link of the first device), and it can revoke the phone.
    let tok1 = r.login(&log, &primary).await;
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/devices", log.0),
            Some(&tok1),
            json!({ "device_id": primary.id, "authorization": genesis(&log, &primary, SecurityLevel::PrimaryRoot) }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = r
        .append(&log, &tok1, vec![record("still here", None)])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = r.revoke_device(&log, &tok1, &phone, &primary.key).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(r.try_login(&log, &phone).await.is_err());
}

/// Issue 13 item 5: after a recovery the root revokes the lost primary. In
/// `primary-root` the primary's own key also signs device credentials, so a thief
/// holding the lost primary kept letting devices of its choosing into the log until
/// the relay stopped honouring a revoked primary's signature.
async fn once_the_root_revoked_the_primary_its_key_lets_nobody_in(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let log = Hex32::from_seed(46);
    let primary = Device::new(46);
    let g = genesis(&log, &primary, SecurityLevel::PrimaryRoot);
    let (s, _) = r
        .post(
            "/v1/logs",
            None,
            json!({ "log_id": log.0, "genesis": g, "device_id": primary.id }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let tok1 = r.login(&log, &primary).await;
    let recovered = Device::new(47);
    let (s, v) = r.add_device(&log, &tok1, &recovered).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let tok2 = r.login(&log, &recovered).await;
    // The recovered device, holding the root, revokes the lost primary.
    let (s, v) = r.revoke_device(&log, &tok2, &primary, &root()).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    // The thief's device, signed in by the lost primary's key.
    let rogue = Device::new(48);
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/devices", log.0),
            Some(&tok2),
            json!({ "device_id": rogue.id, "authorization": authorize(&log, &rogue, &primary.key) }),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::FORBIDDEN, json!("not_authorized"))
    );
    assert!(r.try_login(&log, &rogue).await.is_err());
    // The root still lets devices in.
    let (s, v) = r.add_device(&log, &tok2, &rogue).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// The recovery slot: set by a device of the log, read without a session by its name
/// (which only the recovery code gives), and a device registers through it only on a
/// root-signed proof. A newer state deletes the checkpoint the older one named; a
/// wrong name, a foreign log's slot, a state naming no blob and bad input are refused
/// and change nothing.
async fn the_recovery_slot_is_read_by_its_name_alone_and_keeps_one_checkpoint(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(49).await;
    let slot = Hex32::from_u64(4901);
    let kit = hex::encode([7u8; 80]);
    let kit_path = format!("/v1/logs/{}/recovery", log.0);
    let put_kit = |mut body: Value| {
        // Every kit goes with the root-signed entry naming its slot.
        let named = Hex32(body["slot"].as_str().unwrap().to_owned());
        let kit = hex::decode(body["kit"].as_str().unwrap()).unwrap();
        body["authorization"] = json!(recovery_key_set(&log, &named, &kit, &root()));
        r.call(Method::PUT, &kit_path, Some(&tok), Some(body))
    };
    let (s, v) = put_kit(json!({ "slot": slot.0, "kit": "" })).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_recovery_kit"))
    );
    let (s, v) = put_kit(
        json!({ "slot": slot.0, "kit": hex::encode(vec![1u8; MAX_RECOVERY_KIT_BYTES + 1]) }),
    )
    .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_recovery_kit"))
    );
    let (s, _) = r.get(&format!("/v1/recovery/{}", slot.0), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was set by the refusals");
    let (s, v) = put_kit(json!({ "slot": slot.0, "kit": kit })).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = r.get(&format!("/v1/recovery/{}", slot.0), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["log_id"].clone(), v["kit"].clone(), v["state"].clone()),
        (json!(log.0), json!(kit), Value::Null)
    );
    let (s, _) = r
        .get(&format!("/v1/recovery/{}", Hex32::from_u64(4902).0), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Another log cannot take the slot.
    let (other, _, other_tok) = r.identity(50).await;
    let (s, v) = r
        .call(
            Method::PUT,
            &format!("/v1/logs/{}/recovery", other.0),
            Some(&other_tok),
            Some(json!({ "slot": slot.0, "kit": kit, "authorization":
                    recovery_key_set(&other, &slot, &hex::decode(&kit).unwrap(), &root()) })),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("slot_taken"))
    );

    // A state must name a blob of the log; a newer one deletes the older checkpoint.
    let blob = |i: u64| format!("/v1/logs/{}/blobs/{}", log.0, Hex32::from_u64(i).0);
    let state_path = format!("/v1/logs/{}/recovery/state", log.0);
    let state = |c: u64| json!({ "state": hex::encode([c as u8; 100]), "checkpoint": Hex32::from_u64(c).0 });
    let (s, _) = r
        .call(Method::PUT, &state_path, Some(&tok), Some(state(1)))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no such blob");
    let (s, _) = r.raw(Method::PUT, &blob(1), Some(&tok), vec![1; 300]).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = r
        .call(Method::PUT, &state_path, Some(&tok), Some(state(1)))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let checkpoint = format!("/v1/recovery/{}/checkpoint", slot.0);
    let (s, _) = r.raw(Method::GET, &checkpoint, None, vec![]).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the checkpoint is read by the slot's name"
    );
    let (s, _) = r.raw(Method::PUT, &blob(2), Some(&tok), vec![2; 300]).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = r
        .call(Method::PUT, &state_path, Some(&tok), Some(state(2)))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = r.raw(Method::GET, &blob(1), Some(&tok), vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the older checkpoint is gone");
    let (_, v) = r.get(&format!("/v1/recovery/{}", slot.0), None).await;
    assert_eq!(
        (v["state"].clone(), v["checkpoint"].clone()),
        (json!(hex::encode([2u8; 100])), json!(Hex32::from_u64(2).0))
    );
    let (s, v) = r
        .call(
            Method::PUT,
            &state_path,
            Some(&tok),
            Some(json!({ "state": "", "checkpoint": Hex32::from_u64(2).0 })),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_recovery_state"))
    );
    let (s, _) = r.call(Method::PUT, &state_path, None, Some(state(2))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Registering through the slot: only on a root-signed proof for that device.
    let newcomer = Device::new(51);
    let via = format!("/v1/recovery/{}/devices", slot.0);
    let (s, v) = r
        .post(&via, None, json!({ "device_id": newcomer.id, "authorization": authorize(&log, &newcomer, &newcomer.key) }))
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::FORBIDDEN, json!("not_authorized"))
    );
    let (s, _) = r
        .post(&format!("/v1/recovery/{}/devices", Hex32::from_u64(4902).0), None, json!({ "device_id": newcomer.id, "authorization": authorize(&log, &newcomer, &root()) }))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a wrong slot name lets nobody in");
    assert!(r.try_login(&log, &newcomer).await.is_err());
    let (s, v) = r
        .post(&via, None, json!({ "device_id": newcomer.id, "authorization": authorize(&log, &newcomer, &root()) }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    r.login(&log, &newcomer).await;

    // A new kit replaces the slot: the old name reads nothing, the checkpoint goes.
    let (s, _) = put_kit(json!({ "slot": Hex32::from_u64(4903).0, "kit": kit })).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = r.get(&format!("/v1/recovery/{}", slot.0), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = r.raw(Method::GET, &blob(2), Some(&tok), vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The recovery slot is where a lost primary's identity comes back from. Any current
/// device could replace it (a secondary in `primary-root`, or a thief holding one), so
/// the code the person wrote down silently stopped working: the relay took a slot from
/// a session alone. It now needs the root-signed `RecoveryKeySet` entry naming that
/// slot.
async fn a_device_without_the_root_cannot_replace_the_recovery_slot(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, dev, tok) = r.identity(52).await;
    let slot = Hex32::from_u64(5201);
    let path = format!("/v1/logs/{}/recovery", log.0);
    let kit = hex::encode([7u8; 80]);
    let entry = |slot: &Hex32, signer: &ed25519_dalek::SigningKey| {
        recovery_key_set(&log, slot, &[7u8; 80], signer)
    };
    // The attack: a session alone.
    let (s, v) = r
        .call(
            Method::PUT,
            &path,
            Some(&tok),
            Some(json!({ "slot": slot.0, "kit": kit })),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("malformed")),
        "{v}"
    );
    // Signed by the device's own key, naming another slot, or of another kind.
    let put = |authorization: String| {
        r.call(
            Method::PUT,
            &path,
            Some(&tok),
            Some(json!({ "slot": slot.0, "kit": kit, "authorization": authorization })),
        )
    };
    let (s, v) = put(entry(&slot, &dev.key)).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::FORBIDDEN, json!("not_authorized"))
    );
    for proof in [
        entry(&Hex32::from_u64(5202), &root()),
        authorize(&log, &dev, &root()),
        "0a00".into(),
    ] {
        let (s, v) = put(proof).await;
        assert_eq!(
            (s, v["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("bad_authorization"))
        );
    }
    let (s, _) = r.get(&format!("/v1/recovery/{}", slot.0), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was set by the refusals");
    let (s, v) = put(entry(&slot, &root())).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    // A state is written (any device may)...
    let blob = format!("/v1/logs/{}/blobs/{}", log.0, Hex32::from_u64(5203).0);
    let (s, _) = r.raw(Method::PUT, &blob, Some(&tok), vec![1; 50]).await;
    assert_eq!(s, StatusCode::OK);
    let state = json!({ "state": hex::encode([5u8; 60]), "checkpoint": Hex32::from_u64(5203).0 });
    let (s, _) = r
        .call(
            Method::PUT,
            &format!("{path}/state"),
            Some(&tok),
            Some(state),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // ...and the root-signed entry, which every device holds in its roster, is replayed
    // with another kit: a device without the root must not swap the kit.
    let (s, v) = r
        .call(
            Method::PUT,
            &path,
            Some(&tok),
            Some(json!({ "slot": slot.0, "kit": hex::encode([8u8; 80]), "authorization": entry(&slot, &root()) })),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_authorization")),
        "{v}"
    );
    // Replaying it with the same kit changes nothing: the state stays.
    let (s, _) = put(entry(&slot, &root())).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = r.get(&format!("/v1/recovery/{}", slot.0), None).await;
    assert_eq!(
        (v["kit"].clone(), v["state"].clone()),
        (json!(kit), json!(hex::encode([5u8; 60])))
    );
}

/// The `RecoveryKeySet` roster entry of `log` naming `slot` and `kit`, signed by `signer`.
/// `chorus identity roll`: a thief holding the old root (a stolen `shared-root` device)
/// could go on adding devices of its own after the owner rolled, were the relay still
/// taking the genesis's root. After the roll only the new root signs device changes,
/// and the old root cannot roll the log somewhere else either.
async fn after_a_roll_only_the_new_root_authorizes_and_the_old_one_cannot_roll_again(b: Backend) {
    use chorus_crypto::{IdentityDhSecret, RootSigningKey};
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, dev, tok) = r.identity(53).await;
    let path = format!("/v1/logs/{}/root", log.0);
    let key = |seed: u8| RootSigningKey::from_secret_bytes(&[seed; 32]);
    let dalek = |seed: u8| ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    // `root()` is the genesis's root.
    let roll = |from: u8, to: u8| {
        let keys = chorus_wire::IdentityKeys::sign(
            &key(to),
            IdentityDhSecret::from_secret_bytes(&[to; 32]).public_key(),
        );
        RosterBody::RootRolled {
            roll: chorus_wire::IdentityRoll::sign(&key(from), &key(to), keys),
        }
    };
    let put = |authorization: String| {
        r.call(
            Method::PUT,
            &path,
            Some(&tok),
            Some(json!({ "authorization": authorization })),
        )
    };
    // Refused, changing nothing: a roll whose entry another key signed, a roll from
    // a root that is not the log's, an entry of another kind, bytes that are no entry.
    for (proof, code) in [
        (
            roster_entry(&log, &roll(0xaa, 0xbb), &dev.key),
            "bad_authorization",
        ),
        (
            roster_entry(&log, &roll(0xcc, 0xbb), &dalek(0xcc)),
            "not_authorized",
        ),
        (
            authorize(&log, &Device::new(54), &root()),
            "bad_authorization",
        ),
        ("0a00".into(), "bad_authorization"),
    ] {
        let (s, v) = put(proof).await;
        assert_eq!(v["error"], json!(code), "{s} {v}");
    }
    let (s, v) = r.add_device(&log, &tok, &Device::new(54)).await;
    assert_eq!(s, StatusCode::CREATED, "the genesis root still signs: {v}");

    let rolled = roster_entry(&log, &roll(0xaa, 0xbb), &root());
    let (s, v) = put(rolled.clone()).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = put(rolled).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "a retry changes nothing: {v}");

    // The thief, with the old root: no device, no roll of its own.
    let rogue = Device::new(55);
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/devices", log.0),
            Some(&tok),
            json!({ "device_id": rogue.id, "authorization": authorize(&log, &rogue, &root()) }),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::FORBIDDEN, json!("not_authorized"))
    );
    let (s, v) = put(roster_entry(&log, &roll(0xaa, 0xdd), &root())).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::FORBIDDEN, json!("not_authorized"))
    );
    // The new root signs device changes, and rolls on.
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/devices", log.0),
            Some(&tok),
            json!({ "device_id": rogue.id, "authorization": authorize(&log, &rogue, &dalek(0xbb)) }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = put(roster_entry(&log, &roll(0xbb, 0xee), &dalek(0xbb))).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = r.revoke_device(&log, &tok, &rogue, &dalek(0xbb)).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::FORBIDDEN, json!("not_authorized"))
    );
    let (s, v) = r.revoke_device(&log, &tok, &rogue, &dalek(0xee)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
}

fn recovery_key_set(
    log: &Hex32,
    slot: &Hex32,
    kit: &[u8],
    signer: &ed25519_dalek::SigningKey,
) -> String {
    use sha2::{Digest, Sha256};
    roster_entry(
        log,
        &RosterBody::RecoveryKeySet {
            key: chorus_crypto::DeviceDhPublic::from_slice(&[9; 32]).unwrap(),
            slot: hex::decode(&slot.0).unwrap().try_into().unwrap(),
            kit: Sha256::digest(kit).into(),
        },
        signer,
    )
}

async fn mailbox(r: &Relay, log: &Hex32, tok: &str, seed: u64) -> Hex32 {
    let m = Hex32::from_u64(seed);
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/mailboxes", log.0),
            Some(tok),
            json!({ "mailbox_id": m.0 }),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    m
}

async fn post_env(r: &Relay, m: &Hex32, id: u8, payload: &str) -> (StatusCode, Value) {
    r.post(
        &format!("/v1/mailboxes/{}/envelopes", m.0),
        None,
        json!({ "envelope_id": hex::encode([id; 16]), "payload": hex::encode(payload) }),
    )
    .await
}

async fn mailbox_post_is_idempotent_by_envelope_id(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(14).await;
    let m = mailbox(&r, &log, &tok, 1).await;
    let (s, v) = post_env(&r, &m, 1, "hi").await;
    assert_eq!(
        (s, v.clone()),
        (StatusCode::OK, json!({ "seq": 1, "duplicate": false }))
    );
    let (s, v) = post_env(&r, &m, 1, "hi").await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({ "seq": 1, "duplicate": true }))
    );
    let (s, v) = post_env(&r, &m, 1, "different").await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("envelope_conflict"))
    );
    let (s, v) = post_env(&r, &m, 2, "second").await;
    assert_eq!((s, v["seq"].clone()), (StatusCode::OK, json!(2)));
    let (_, v) = r
        .get(
            &format!("/v1/logs/{}/mailboxes/{}/envelopes?after=0", log.0, m.0),
            Some(&tok),
        )
        .await;
    let envs = v["envelopes"].as_array().unwrap();
    assert_eq!(envs.len(), 2);
    assert_eq!(envs[0]["payload"], json!(hex::encode("hi")));
    // Unregistered mailbox: nobody to deliver to.
    let (s, _) = post_env(&r, &Hex32::from_u64(777), 1, "x").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Another log cannot claim or read it.
    let (log2, _, tok2) = r.identity(15).await;
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/mailboxes", log2.0),
            Some(&tok2),
            json!({ "mailbox_id": m.0 }),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("mailbox_taken"))
    );
    let (s, _) = r
        .get(
            &format!("/v1/logs/{}/mailboxes/{}/envelopes", log2.0, m.0),
            Some(&tok2),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn mailbox_envelopes_expire_after_ttl(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, dev, tok) = r.identity(16).await;
    let m = mailbox(&r, &log, &tok, 2).await;
    post_env(&r, &m, 1, "old").await;
    r.clock.advance(Duration::from_secs(24 * 3600));
    post_env(&r, &m, 2, "newer").await;
    r.clock
        .advance(DEFAULT_MAILBOX_TTL - Duration::from_secs(24 * 3600));
    // The first envelope is past its TTL, but the log's only device has not read it:
    // a device offline for longer than the TTL misses nothing.
    let swept = r.state.sweep().await.unwrap();
    assert_eq!(
        swept.envelopes, 0,
        "kept for the device that has not read it"
    );
    let tok = r.login(&log, &dev).await;
    let read = format!("/v1/logs/{}/mailboxes/{}/envelopes", log.0, m.0);
    let (_, v) = r.get(&read, Some(&tok)).await;
    assert_eq!(v["envelopes"].as_array().unwrap().len(), 2, "{v}");
    // The device reads past it (a batch read from its cursor says how far it got).
    let batch = |after: i64| json!({ "mailboxes": [{ "mailbox_id": m.0, "after": after }] });
    let batch_read = format!("/v1/logs/{}/mailboxes/read", log.0);
    let (s, _) = r.post(&batch_read, Some(&tok), batch(1)).await;
    assert_eq!(s, StatusCode::OK);
    let swept = r.state.sweep().await.unwrap();
    assert_eq!(swept.envelopes, 1, "expired and read past by every device");
    let (_, v) = r.get(&read, Some(&tok)).await;
    let envs = v["envelopes"].as_array().unwrap();
    assert_eq!(envs.len(), 1, "{v}");
    assert_eq!(envs[0]["seq"], json!(2));
    // The second expires in turn, but its reader has not passed it either.
    r.clock.advance(Duration::from_secs(24 * 3600));
    let tok = r.login(&log, &dev).await;
    assert_eq!(r.state.sweep().await.unwrap().envelopes, 0);
    // A cursor never moves back.
    let (s, _) = r.post(&batch_read, Some(&tok), batch(2)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = r.post(&batch_read, Some(&tok), batch(1)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r.state.sweep().await.unwrap().envelopes, 1);
    let (_, v) = r.get(&read, Some(&tok)).await;
    assert!(v["envelopes"].as_array().unwrap().is_empty(), "{v}");
    // Seqs keep rising after expiry; ids of swept envelopes may be reused.
    let (_, v) = post_env(&r, &m, 1, "again").await;
    assert_eq!(v["seq"], json!(3));
}

async fn mailbox_depth_at_bound_then_full(b: Backend) {
    let limits = Limits {
        mailbox_depth: 5,
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(17).await;
    let m = mailbox(&r, &log, &tok, 3).await;
    for i in 0..5 {
        let (s, _) = post_env(&r, &m, i, "x").await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, v) = post_env(&r, &m, 9, "x").await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::INSUFFICIENT_STORAGE, json!("mailbox_full"))
    );
    let (s, _) = post_env(&r, &m, 0, "x").await;
    assert_eq!(
        s,
        StatusCode::OK,
        "a duplicate of a stored envelope is still accepted"
    );
    r.clock.advance(DEFAULT_MAILBOX_TTL);
    let (s, _) = post_env(&r, &m, 9, "x").await;
    assert_eq!(s, StatusCode::OK, "expired envelopes no longer count");
}

async fn mailbox_post_rate_at_bound_then_limited(b: Backend) {
    let limits = Limits {
        mailbox_post_rate: chorus_relay::Rate {
            per_sec: 1.0,
            burst: 4.0,
        },
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(18).await;
    let m = mailbox(&r, &log, &tok, 4).await;
    for i in 0..4 {
        assert_eq!(post_env(&r, &m, i, "x").await.0, StatusCode::OK);
    }
    let (s, v) = post_env(&r, &m, 4, "x").await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!("rate_limited"))
    );
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(post_env(&r, &m, 4, "x").await.0, StatusCode::OK);
    let (_, v) = r
        .get(
            &format!("/v1/logs/{}/mailboxes/{}/envelopes", log.0, m.0),
            Some(&tok),
        )
        .await;
    assert_eq!(
        v["envelopes"].as_array().unwrap().len(),
        5,
        "the refused post stored nothing"
    );
}

/// Posts an envelope as if from `source` (through a trusted proxy).
async fn post_from(r: &Relay, m: &Hex32, source: &str, id: u8) -> (StatusCode, Value) {
    let resp = r
        .http
        .post(format!("{}/v1/mailboxes/{}/envelopes", r.base, m.0))
        .header("x-forwarded-for", source)
        .json(&json!({ "envelope_id": hex::encode([id; 16]), "payload": hex::encode([id; 100]) }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Issue 11 item 3: the intro mailbox is public. Before, the post rate was one
/// bucket per mailbox (one stranger emptied it for every other sender) and a full
/// intro mailbox refused every first contact until envelopes expired (30 days).
async fn a_flooded_intro_mailbox_still_takes_first_contacts(b: Backend) {
    let limits = Limits {
        mailbox_depth: 8,
        mailbox_post_rate: chorus_relay::Rate {
            per_sec: 1.0,
            burst: 4.0,
        },
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(19).await;
    let intro = Hex32::from_u64(19);
    let (s, _) = r
        .post(
            &format!("/v1/logs/{}/mailboxes", log.0),
            Some(&tok),
            json!({ "mailbox_id": intro.0, "drop_oldest": true }),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // One source floods: it gets its burst, then is limited ...
    let mut id = 0u8;
    for _ in 0..4 {
        id += 1;
        assert_eq!(
            post_from(&r, &intro, "203.0.113.1", id).await.0,
            StatusCode::OK
        );
    }
    id += 1;
    let (s, v) = post_from(&r, &intro, "203.0.113.1", id).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!("rate_limited"))
    );
    // ... which leaves every other sender's budget alone.
    for source in ["198.51.100.7", "198.51.100.8"] {
        for _ in 0..4 {
            id += 1;
            assert_eq!(post_from(&r, &intro, source, id).await.0, StatusCode::OK);
        }
    }
    // The mailbox is over its depth of 8: the oldest made room, nothing was refused.
    let friend = id + 1;
    assert_eq!(
        post_from(&r, &intro, "192.0.2.50", friend).await.0,
        StatusCode::OK
    );
    let (_, v) = r
        .get(
            &format!("/v1/logs/{}/mailboxes/{}/envelopes", log.0, intro.0),
            Some(&tok),
        )
        .await;
    let held: Vec<Value> = v["envelopes"].as_array().unwrap().clone();
    assert_eq!(held.len(), 8, "a first-contact mailbox holds its depth");
    assert_eq!(
        held.last().unwrap()["envelope_id"],
        json!(hex::encode([friend; 16])),
        "the newest first contact is there"
    );
    assert_eq!(held[0]["seq"], json!(6), "the five oldest were dropped");
    // A contact's mailbox still refuses when full (the sender retries; nothing is lost).
    let m = mailbox(&r, &log, &tok, 20).await;
    for i in 0..8u8 {
        assert_eq!(
            post_from(&r, &m, &format!("192.0.2.{i}"), i).await.0,
            StatusCode::OK
        );
    }
    let (s, v) = post_from(&r, &m, "192.0.2.99", 99).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::INSUFFICIENT_STORAGE, json!("mailbox_full"))
    );
}

/// Issue 11 item 8: per-log quotas. Depth alone let one log's mailboxes hold
/// 4,096 × 10,000 envelopes, and nothing bounded a log's records.
async fn limits_envelope_and_record_quotas_per_log_at_bound_then_refused(b: Backend) {
    let limits = Limits {
        envelope_quota_bytes: 250,
        max_records_per_log: 5,
        ..Limits::default().unlimited_rates()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(21).await;
    let (m1, m2) = (
        mailbox(&r, &log, &tok, 21).await,
        mailbox(&r, &log, &tok, 22).await,
    );
    // 100 bytes each: two fit in 250, across mailboxes; the third does not.
    assert_eq!(post_from(&r, &m1, "192.0.2.1", 1).await.0, StatusCode::OK);
    assert_eq!(post_from(&r, &m2, "192.0.2.1", 2).await.0, StatusCode::OK);
    let (s, v) = post_from(&r, &m2, "192.0.2.1", 3).await;
    assert_eq!(
        (s, v["error"].clone()),
        (
            StatusCode::INSUFFICIENT_STORAGE,
            json!("envelope_quota_exceeded")
        )
    );
    // Expired envelopes give their bytes back when swept, once the log's device has
    // read past them (until then they wait for it, counted in the quota).
    r.clock.advance(DEFAULT_MAILBOX_TTL);
    r.state.sweep().await.unwrap();
    let (s, _) = post_from(&r, &m2, "192.0.2.1", 3).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "unread: still counted");
    let tok = r.login(&log, &Device::new(21)).await;
    let read = json!({ "mailboxes": [
        { "mailbox_id": m1.0, "after": 1 },
        { "mailbox_id": m2.0, "after": 1 },
    ] });
    let (s, _) = r
        .post(
            &format!("/v1/logs/{}/mailboxes/read", log.0),
            Some(&tok),
            read,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    r.state.sweep().await.unwrap();
    assert_eq!(post_from(&r, &m2, "192.0.2.1", 3).await.0, StatusCode::OK);
    // Records: five fit, a batch that would make six is refused whole.
    let (s, _) = r.append(&log, &tok, vec![record("r", None); 4]).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = r.append(&log, &tok, vec![record("r", None); 2]).await;
    assert_eq!(
        (s, v["error"].clone()),
        (
            StatusCode::INSUFFICIENT_STORAGE,
            json!("record_quota_exceeded")
        )
    );
    assert_eq!(
        head(&r, &log, &tok).await,
        4,
        "the refused batch stored nothing"
    );
    let (s, _) = r.append(&log, &tok, vec![record("r", None)]).await;
    assert_eq!(s, StatusCode::OK);
    // Trimming frees room.
    r.post(
        &format!("/v1/logs/{}/cursor", log.0),
        Some(&tok),
        json!({ "seq": 5 }),
    )
    .await;
    let (s, _) = r
        .post(
            &format!("/v1/logs/{}/trim", log.0),
            Some(&tok),
            json!({ "below_seq": 3 }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = r.append(&log, &tok, vec![record("r", None); 2]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn batched_read_across_mailboxes_and_push_of_envelopes(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(19).await;
    let ms: Vec<Hex32> =
        futures::future::join_all((10..13).map(|i| mailbox(&r, &log, &tok, i))).await;
    let mut ws = ws_connect(&r, &log, &tok).await;
    for (i, m) in ms.iter().enumerate() {
        for j in 0..=i as u8 {
            post_env(&r, m, j, &format!("m{i}e{j}")).await;
        }
    }
    let mut pushed: BTreeMap<String, usize> = BTreeMap::new();
    while pushed.values().sum::<usize>() < 6 {
        let p = next_text(&mut ws).await;
        assert_eq!(p["type"], json!("envelopes"));
        *pushed
            .entry(p["mailbox_id"].as_str().unwrap().to_string())
            .or_default() += p["envelopes"].as_array().unwrap().len();
    }
    assert_eq!(pushed.len(), 3);
    let body = json!({
        "mailboxes": ms.iter().map(|m| json!({ "mailbox_id": m.0, "after": 0 })).collect::<Vec<_>>(),
        "limit": 2
    });
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/mailboxes/read", log.0),
            Some(&tok),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let res = v["results"].as_array().unwrap();
    let counts: Vec<usize> = res
        .iter()
        .map(|x| x["envelopes"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, vec![1, 2, 2]);
    assert_eq!(res[2]["more"], json!(true));
    let too_many: Vec<Value> = (0..=MAX_BATCH_MAILBOXES)
        .map(|_| json!({ "mailbox_id": ms[0].0 }))
        .collect();
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/mailboxes/read", log.0),
            Some(&tok),
            json!({ "mailboxes": too_many }),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("batch_too_large"))
    );
    let all: Vec<Hex32> = futures::future::join_all(
        (10..10 + MAX_BATCH_MAILBOXES as u64).map(|i| mailbox(&r, &log, &tok, i)),
    )
    .await;
    let at_bound: Vec<Value> = all.iter().map(|m| json!({ "mailbox_id": m.0 })).collect();
    let (s, _) = r
        .post(
            &format!("/v1/logs/{}/mailboxes/read", log.0),
            Some(&tok),
            json!({ "mailboxes": at_bound }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let _ = ws.send(Message::Close(None)).await;
}

/// After a roll the directory entry at the old fingerprint's address is withdrawn: a
/// first message to it could never be answered. It hands out nothing from then on, and
/// the address stays the log's: a thief holding the old root cannot claim it from a log
/// of its own. Another log cannot withdraw it.
async fn a_withdrawn_directory_entry_hands_out_nothing_and_stays_the_logs(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(56).await;
    let (other, _, other_tok) = r.identity(57).await;
    let addr = Hex32::from_u64(5601);
    let entry = format!("/v1/logs/{}/prekeys/{}", log.0, addr.0);
    let publish =
        json!({ "signed_prekey": "5350", "pq_last_resort": "4c52", "one_time": ["01", "02"] });
    let (s, v) = r.post(&entry, Some(&tok), publish.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let fetch = format!("/v1/prekeys/{}/fetch", addr.0);
    let (s, _) = r.post(&fetch, None, json!({})).await;
    assert_eq!(s, StatusCode::OK);
    // Not another log's to withdraw; an address nobody holds is not found either.
    let (s, _) = r
        .call(
            Method::DELETE,
            &format!("/v1/logs/{}/prekeys/{}", other.0, addr.0),
            Some(&other_tok),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = r.post(&fetch, None, json!({})).await;
    assert_eq!(s, StatusCode::OK, "the refusal changed nothing");

    let (s, v) = r.call(Method::DELETE, &entry, Some(&tok), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, _) = r.post(&fetch, None, json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, v) = r.get(&format!("{entry}/count"), Some(&tok)).await;
    assert_eq!(v, json!({ "one_time": 0, "one_time_pq": 0 }));
    // Still the log's: another log cannot publish there.
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/prekeys/{}", other.0, addr.0),
            Some(&other_tok),
            publish,
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("address_taken"))
    );
}

async fn concurrent_prekey_fetches_never_share_a_one_time_key(b: Backend) {
    let limits = Limits::default().unlimited_rates();
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(20).await;
    let addr = Hex32::from_u64(42);
    let keys: Vec<String> = (0..40u32).map(|i| hex::encode(i.to_be_bytes())).collect();
    let pq: Vec<String> = (0..5u32)
        .map(|i| hex::encode((1000 + i).to_be_bytes()))
        .collect();
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/prekeys/{}", log.0, addr.0),
            Some(&tok),
            json!({ "signed_prekey": "5350", "pq_last_resort": "4c52", "one_time": keys, "one_time_pq": pq }),
        )
        .await;
    assert_eq!(
        (s, v.clone()),
        (StatusCode::OK, json!({ "one_time": 40, "one_time_pq": 5 }))
    );
    let r = std::sync::Arc::new(r);
    let fetches = futures::future::join_all((0..48).map(|_| {
        let (r, addr) = (r.clone(), addr.clone());
        tokio::spawn(async move {
            r.post(&format!("/v1/prekeys/{}/fetch", addr.0), None, json!({}))
                .await
        })
    }))
    .await;
    let mut seen = HashSet::new();
    let (mut none, mut last_resort) = (0, 0);
    for f in fetches {
        let (s, v) = f.unwrap();
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["signed_prekey"], json!("5350"));
        match v["one_time"].as_str() {
            Some(k) => assert!(
                seen.insert(k.to_string()),
                "one-time key {k} handed out twice"
            ),
            None => none += 1,
        }
        if v["pq_is_last_resort"] == json!(true) {
            assert_eq!(v["pq"], json!("4c52"));
            last_resort += 1;
        }
    }
    assert_eq!((seen.len(), none, last_resort), (40, 8, 43));
    let (_, v) = r
        .get(
            &format!("/v1/logs/{}/prekeys/{}/count", log.0, addr.0),
            Some(&tok),
        )
        .await;
    assert_eq!(v, json!({ "one_time": 0, "one_time_pq": 0 }));
    let (s, _) = r
        .post(
            &format!("/v1/prekeys/{}/fetch", Hex32::from_u64(43).0),
            None,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Another log cannot publish under this address.
    let (log2, _, tok2) = r.identity(21).await;
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/prekeys/{}", log2.0, addr.0),
            Some(&tok2),
            json!({ "one_time": ["01"] }),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("address_taken"))
    );
    // Storage bound per address.
    let full: Vec<String> = (0..MAX_PREKEYS_PER_PUBLISH)
        .map(|_| "01".to_string())
        .collect();
    for _ in 0..(MAX_PREKEYS_STORED as usize / MAX_PREKEYS_PER_PUBLISH) {
        let (s, v) = r
            .post(
                &format!("/v1/logs/{}/prekeys/{}", log.0, addr.0),
                Some(&tok),
                json!({ "one_time": full }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/prekeys/{}", log.0, addr.0),
            Some(&tok),
            json!({ "one_time": ["01"] }),
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("too_many_prekeys"))
    );
    // After a revocation the identity withdraws every one-time key at once and
    // publishes new ones (a full store included): only the new ones are handed out.
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/prekeys/{}", log.0, addr.0),
            Some(&tok),
            json!({ "one_time": ["aa", "bb"], "one_time_pq": ["cc"], "replace_one_time": true }),
        )
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({ "one_time": 2, "one_time_pq": 1 }))
    );
    let (_, v) = r
        .post(&format!("/v1/prekeys/{}/fetch", addr.0), None, json!({}))
        .await;
    assert!(
        ["aa", "bb"].contains(&v["one_time"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(v["pq"], json!("cc"));
}

async fn prekey_fetch_rate_at_bound_then_limited(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(22).await;
    let addr = Hex32::from_u64(44);
    r.post(
        &format!("/v1/logs/{}/prekeys/{}", log.0, addr.0),
        Some(&tok),
        json!({ "signed_prekey": "01" }),
    )
    .await;
    for _ in 0..DEFAULT_PREKEY_FETCH_RATE.burst as usize {
        let (s, _) = r
            .post(&format!("/v1/prekeys/{}/fetch", addr.0), None, json!({}))
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, _) = r
        .post(&format!("/v1/prekeys/{}/fetch", addr.0), None, json!({}))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

async fn blob_quota_and_size_bounds(b: Backend) {
    let limits = Limits {
        blob_quota_bytes: 1000,
        max_blob_bytes: 700,
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(23).await;
    let blob = |i: u64| format!("/v1/logs/{}/blobs/{}", log.0, Hex32::from_u64(i).0);
    let (s, v) = r.raw(Method::PUT, &blob(1), Some(&tok), vec![1; 600]).await;
    assert_eq!((s, v["used"].clone()), (StatusCode::OK, json!(600)));
    let (s, v) = r.raw(Method::PUT, &blob(2), Some(&tok), vec![2; 401]).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::INSUFFICIENT_STORAGE, json!("quota_exceeded"))
    );
    let (s, v) = r.raw(Method::PUT, &blob(2), Some(&tok), vec![2; 400]).await;
    assert_eq!(
        (s, v["used"].clone()),
        (StatusCode::OK, json!(1000)),
        "exactly at quota"
    );
    let (s, v) = r.raw(Method::PUT, &blob(3), Some(&tok), vec![3; 701]).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("body_too_large"))
    );
    let (s, _) = r.raw(Method::PUT, &blob(1), Some(&tok), vec![9; 300]).await;
    assert_eq!(s, StatusCode::OK, "replacing frees the old size");
    let resp = r
        .http
        .get(format!("{}{}", r.base, blob(1)))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().to_vec(), vec![9; 300]);
    let (s, _) = r.call(Method::DELETE, &blob(1), Some(&tok), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = r.get(&blob(1), Some(&tok)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = r.raw(Method::PUT, &blob(3), Some(&tok), vec![3; 600]).await;
    assert_eq!((s, v["used"].clone()), (StatusCode::OK, json!(1000)));
}

/// Files sent with messages: a device of the log stores encrypted parts under a
/// locator; anyone who knows the locator fetches them without a session (the reader
/// is not of this log); another log cannot add to or replace the file; the part size,
/// the log's file quota and the longest time kept are bounds; an expired part says so
/// until the sweep deletes it (and gives its bytes back to the quota).
async fn limits_file_parts_are_fetched_by_locator_within_quota_and_expire(b: Backend) {
    let limits = Limits {
        file_quota_bytes: 3000,
        max_file_ttl: Duration::from_secs(3600),
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(31).await;
    let (other_log, _, other_tok) = r.identity(32).await;
    let locator = Hex32::from_u64(77);
    let now = START_MS;
    let put = |log: &Hex32, part: &str, expires: i64| {
        format!(
            "/v1/logs/{}/files/{}/{part}?expires_ms={expires}",
            log.0, locator.0
        )
    };
    let get = |part: &str| format!("/v1/files/{}/{part}", locator.0);
    let (s, v) = r
        .raw(
            Method::PUT,
            &put(&log, "0", now + 60_000),
            Some(&tok),
            vec![1; 1500],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["used"].clone(), v["expires_ms"].clone()),
        (json!(1500), json!(now + 60_000))
    );
    // Asked to keep it longer than its bound: the relay says when it will delete it.
    let (s, v) = r
        .raw(
            Method::PUT,
            &put(&log, "1", now + 10 * 3_600_000),
            Some(&tok),
            vec![2; 1500],
        )
        .await;
    assert_eq!(
        (s, v["expires_ms"].clone()),
        (StatusCode::OK, json!(now + 3_600_000))
    );
    assert_eq!(v["used"], json!(3000), "exactly at quota");
    // The smallest part counts MIN_FILE_PART_CHARGE: over the quota.
    let (s, v) = r
        .raw(
            Method::PUT,
            &put(&log, "2", now + 60_000),
            Some(&tok),
            vec![3; 16],
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::INSUFFICIENT_STORAGE, json!("quota_exceeded"))
    );
    // Fetched by anyone, no token needed.
    let resp = r
        .http
        .get(format!("{}{}", r.base, get("0")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), vec![1; 1500]);
    let (s, _) = r.get(&get("2"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Another log cannot add a part to the file, or replace one.
    for part in ["0", "5"] {
        let (s, v) = r
            .raw(
                Method::PUT,
                &put(&other_log, part, now + 60_000),
                Some(&other_tok),
                vec![9; 20],
            )
            .await;
        assert_eq!(
            (s, v["error"].clone()),
            (StatusCode::CONFLICT, json!("file_taken"))
        );
    }
    // Nor may it write through its session under this log.
    let (s, _) = r
        .raw(
            Method::PUT,
            &put(&log, "3", now + 60_000),
            Some(&other_tok),
            vec![9; 20],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Bad input: changes nothing.
    let big = vec![0; chorus_relay_api::limits::MAX_FILE_PART_BYTES + 1];
    let (s, v) = r
        .raw(Method::PUT, &put(&log, "0", now + 60_000), Some(&tok), big)
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("body_too_large"))
    );
    let (s, v) = r
        .raw(
            Method::PUT,
            &put(&log, "0", now + 60_000),
            Some(&tok),
            vec![1; 15],
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("too_small"))
    );
    let last = (MAX_FILE_PARTS - 1).to_string();
    let (s, v) = r
        .raw(
            Method::PUT,
            &put(&other_log, &last, now + 60_000),
            Some(&other_tok),
            vec![1; 16],
        )
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("file_taken")),
        "the last index is an index"
    );
    let past = MAX_FILE_PARTS.to_string();
    for part in ["-1", "x", "4294967296", "+1", past.as_str()] {
        let (s, v) = r
            .raw(
                Method::PUT,
                &put(&log, part, now + 60_000),
                Some(&tok),
                vec![1; 16],
            )
            .await;
        assert_eq!(
            (s, v["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("bad_id")),
            "{part}"
        );
        let (s, v) = r.get(&get(part), None).await;
        assert_eq!(
            (s, v["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("bad_id")),
            "{part}"
        );
    }
    let (s, v) = r
        .raw(Method::PUT, &put(&log, "0", now), Some(&tok), vec![1; 16])
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("expired"))
    );
    let no_expiry = format!("/v1/logs/{}/files/{}/0", log.0, locator.0);
    let (s, v) = r
        .raw(Method::PUT, &no_expiry, Some(&tok), vec![1; 16])
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("malformed"))
    );
    let (s, v) = r
        .raw(
            Method::PUT,
            &put(&log, "0", now + 60_000),
            None,
            vec![1; 16],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let resp = r
        .http
        .get(format!("{}{}", r.base, get("0")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.bytes().await.unwrap().to_vec(),
        vec![1; 1500],
        "unchanged"
    );
    // Expired: said so until swept, then gone, and its bytes count no more.
    r.clock.advance(Duration::from_secs(61));
    let (s, v) = r.get(&get("0"), None).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::GONE, json!("expired"))
    );
    assert_eq!(r.state.sweep().await.unwrap().file_parts, 1);
    let (s, _) = r.get(&get("0"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = r
        .raw(
            Method::PUT,
            &put(&log, "2", now + 120_000),
            Some(&tok),
            vec![3; 1500],
        )
        .await;
    assert_eq!((s, v["used"].clone()), (StatusCode::OK, json!(3000)));
}

/// File parts need no session, so their fetches are bounded per client address.
async fn limits_file_fetch_rate_at_bound_then_limited(b: Backend) {
    let limits = Limits {
        file_fetch_rate: chorus_relay::Rate {
            per_sec: 1.0,
            burst: 3.0,
        },
        ..Limits::default()
    };
    let Some(r) = Relay::with_limits(b, limits).await else {
        return;
    };
    let (log, _, tok) = r.identity(33).await;
    let locator = Hex32::from_u64(78);
    let path = format!(
        "/v1/logs/{}/files/{}/0?expires_ms={}",
        log.0,
        locator.0,
        START_MS + 60_000
    );
    let (s, _) = r.raw(Method::PUT, &path, Some(&tok), vec![1; 100]).await;
    assert_eq!(s, StatusCode::OK);
    let get = format!("/v1/files/{}/0", locator.0);
    for _ in 0..3 {
        assert_eq!(r.get(&get, None).await.0, StatusCode::OK);
    }
    assert_eq!(r.get(&get, None).await.0, StatusCode::TOO_MANY_REQUESTS);
    r.clock.advance(Duration::from_secs(1));
    assert_eq!(r.get(&get, None).await.0, StatusCode::OK);
}

async fn rendezvous_channel_lives_ten_minutes_and_is_gone_after_close(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let ch = Hex32::from_u64(5);
    let (s, _) = r
        .post("/v1/rendezvous", None, json!({ "channel_id": ch.0 }))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = r
        .post("/v1/rendezvous", None, json!({ "channel_id": ch.0 }))
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("channel_exists"))
    );
    let msgs = format!("/v1/rendezvous/{}/messages", ch.0);
    for i in 0..MAX_RENDEZVOUS_MESSAGES {
        let (s, v) = r
            .post(
                &msgs,
                None,
                json!({ "payload": hex::encode(format!("m{i}")) }),
            )
            .await;
        assert_eq!((s, v["seq"].clone()), (StatusCode::OK, json!(i + 1)));
    }
    let (s, v) = r.post(&msgs, None, json!({ "payload": "00" })).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::CONFLICT, json!("channel_full"))
    );
    let (_, v) = r.get(&format!("{msgs}?after=6"), None).await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
    let (s, _) = r
        .call(
            Method::DELETE,
            &format!("/v1/rendezvous/{}", ch.0),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = r.get(&msgs, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "gone after use");
    // A channel expires after ten minutes, and its id can then be reused.
    let ch2 = Hex32::from_u64(6);
    r.post("/v1/rendezvous", None, json!({ "channel_id": ch2.0 }))
        .await;
    let msgs2 = format!("/v1/rendezvous/{}/messages", ch2.0);
    r.clock.advance(RENDEZVOUS_TTL - Duration::from_millis(1));
    assert_eq!(
        r.post(&msgs2, None, json!({ "payload": "01" })).await.0,
        StatusCode::OK
    );
    r.clock.advance(Duration::from_millis(1));
    assert_eq!(r.get(&msgs2, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        r.post(&msgs2, None, json!({ "payload": "01" })).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(r.state.sweep().await.unwrap().channels, 1);
    let (s, _) = r
        .post("/v1/rendezvous", None, json!({ "channel_id": ch2.0 }))
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

async fn presence_is_visible_to_siblings_and_fades(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, d1, tok1) = r.identity(24).await;
    let d2 = Device::new(240);
    r.add_device(&log, &tok1, &d2).await;
    let tok2 = r.login(&log, &d2).await;
    let path = format!("/v1/logs/{}/presence", log.0);
    assert_eq!(
        r.call(Method::POST, &path, Some(&tok1), None).await.0,
        StatusCode::NO_CONTENT
    );
    r.clock.advance(Duration::from_secs(1));
    let (_, v) = r.get(&path, Some(&tok2)).await;
    assert_eq!(v["devices"][0]["device_id"], json!(d1.id));
    r.clock.advance(PRESENCE_TTL);
    let (_, v) = r.get(&path, Some(&tok2)).await;
    assert!(v["devices"].as_array().unwrap().is_empty());
}

async fn malformed_input_gets_a_code_and_changes_nothing(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(25).await;
    let append = format!("/v1/logs/{}/append", log.0);
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"{".to_vec(), StatusCode::BAD_REQUEST, "malformed"),
        (b"".to_vec(), StatusCode::BAD_REQUEST, "malformed"),
        (b"[]".to_vec(), StatusCode::BAD_REQUEST, "malformed"),
        (br#"{"records":[{"epoch":0,"nonce":"zz","ciphertext":""}]}"#.to_vec(), StatusCode::BAD_REQUEST, "malformed"),
        (br#"{"records":[{"epoch":-1,"nonce":"","ciphertext":""}]}"#.to_vec(), StatusCode::BAD_REQUEST, "bad_epoch"),
        (
            br#"{"records":[{"epoch":0,"nonce":"","ciphertext":"","guard":{"stream_tag":"","expected_version":0}}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_stream_tag",
        ),
        (vec![b' '; MAX_BODY_BYTES + 1], StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        (vec![0xff, 0xfe, 0x00], StatusCode::BAD_REQUEST, "malformed"),
    ];
    for (body, status, code) in cases {
        let (s, v) = r.raw(Method::POST, &append, Some(&tok), body).await;
        assert_eq!((s, v["error"].clone()), (status, json!(code)));
    }
    let (s, v) = r.get("/v1/logs/zz/records", Some(&tok)).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_id"))
    );
    let (s, v) = r
        .get(&format!("/v1/logs/{}/records?after=x", log.0), Some(&tok))
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("malformed"))
    );
    let (s, v) = r.get("/v1/nope", None).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    let (s, v) = r.post("/v1/mailboxes/00/envelopes", None, json!({})).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_id"))
    );
    assert_eq!(head(&r, &log, &tok).await, 0);
    let (s, v) = r.get("/v1/health", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["backend"],
        json!(match b {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    );
}

/// Issue 11 item 15: an invitation accepted by a second person looked accepted to
/// them ("Added contact") while its envelopes were dropped unread. A single-use
/// mailbox takes its first sender only: anyone else learns at once that the
/// invitation was spent, and the first sender goes on writing with its claim.
async fn a_used_invitation_mailbox_refuses_a_second_sender(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, _, tok) = r.identity(23).await;
    let invitation = Hex32::from_u64(23);
    let (s, _) = r
        .post(
            &format!("/v1/logs/{}/mailboxes", log.0),
            Some(&tok),
            json!({ "mailbox_id": invitation.0, "drop_oldest": true, "single_use": true }),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let path = format!("/v1/mailboxes/{}/envelopes", invitation.0);
    let post = |id: u8, claim: Option<u8>| {
        let mut body =
            json!({ "envelope_id": hex::encode([id; 16]), "payload": hex::encode([id]) });
        if let Some(c) = claim {
            body["claim"] = json!(hex::encode([c; 16]));
        }
        r.post(&path, None, body)
    };
    // The first sender, and a re-post of its envelope.
    assert_eq!(post(1, None).await.0, StatusCode::OK);
    let (s, v) = post(1, None).await;
    assert_eq!((s, v["duplicate"].clone()), (StatusCode::OK, json!(true)));
    // A second sender, with no claim or a wrong one: spent, and nothing stored.
    for claim in [None, Some(9)] {
        let (s, v) = post(2, claim).await;
        assert_eq!(
            (s, v["error"].clone()),
            (StatusCode::GONE, json!("mailbox_spent")),
            "{claim:?}"
        );
    }
    // The first sender writes on, naming its first envelope.
    assert_eq!(post(3, Some(1)).await.0, StatusCode::OK);
    let (_, v) = r
        .get(
            &format!(
                "/v1/logs/{}/mailboxes/{}/envelopes?after=0",
                log.0, invitation.0
            ),
            Some(&tok),
        )
        .await;
    let got: Vec<Value> = v["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"].clone())
        .collect();
    assert_eq!(got, [json!("01"), json!("03")]);
}

// ---------------------------------------------------------------- per-device

/// A device list of `log`'s devices `(device, generation)`, signed by `signer`.
fn device_list(serial: u64, devices: &[(&Device, u32)], signer: [u8; 32]) -> String {
    let signer = chorus_crypto::RootSigningKey::from_secret_bytes(&signer);
    let listed = devices
        .iter()
        .map(|(d, generation)| chorus_wire::ListedDevice {
            device: *d.public().as_bytes(),
            prekey_address: [generation.to_le_bytes()[0]; 32],
            generation: *generation,
        })
        .collect();
    hex::encode(
        chorus_wire::DeviceList::sign(&signer, serial, 0, listed, vec![])
            .unwrap()
            .encode(),
    )
}

async fn put_list(r: &Relay, log: &Hex32, tok: &str, list: &str) -> (StatusCode, Value) {
    r.call(
        Method::PUT,
        &format!("/v1/logs/{}/device-list", log.0),
        Some(tok),
        Some(json!({ "list": list })),
    )
    .await
}

async fn post_copies(
    r: &Relay,
    m: &Hex32,
    id: u8,
    copies: &[(&str, u32, &str)],
) -> (StatusCode, Value) {
    let copies: Vec<Value> = copies
        .iter()
        .map(|(device, generation, payload)| {
            json!({ "device": device, "generation": generation, "payload": hex::encode(payload) })
        })
        .collect();
    r.post(
        &format!("/v1/mailboxes/{}/device-envelopes", m.0),
        None,
        json!({ "envelope_id": hex::encode([id; 16]), "copies": copies }),
    )
    .await
}

fn sorted(mut ids: Vec<&str>) -> Value {
    ids.sort_unstable();
    json!(ids)
}

/// `per-device`: the relay keeps the identity's signed device list and refuses, storing
/// nothing, a post whose device set is not the list (naming what is missing, extra and
/// stale); each copy of an accepted post reaches only its device, over HTTP, the
/// batched read and the WebSocket.
async fn per_device_posts_must_name_the_listed_devices_and_each_copy_reaches_only_its_device(
    b: Backend,
) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, one, tok1) = r.identity(40).await;
    let two = Device::new(41);
    let (s, v) = r.add_device(&log, &tok1, &two).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let tok2 = r.login(&log, &two).await;
    let m = mailbox(&r, &log, &tok1, 40).await;

    // An unknown mailbox: nobody to ask about.
    let unknown = format!("/v1/mailboxes/{}/device-list", Hex32::from_u64(4040).0);
    let (s, v) = r.get(&unknown, None).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    // No list yet: the identity does not run per-device.
    let (s, v) = r
        .get(&format!("/v1/mailboxes/{}/device-list", m.0), None)
        .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::NOT_FOUND, json!("no_device_list"))
    );
    let (s, v) = post_copies(&r, &m, 1, &[(&one.id, 0, "x")]).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::NOT_FOUND, json!("no_device_list"))
    );

    let list = device_list(1, &[(&one, 0), (&two, 0)], [0xaa; 32]);
    let (s, v) = put_list(&r, &log, &tok1, &list).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = r
        .get(&format!("/v1/mailboxes/{}/device-list", m.0), None)
        .await;
    assert_eq!((s, v["list"].clone()), (StatusCode::OK, json!(list)));

    // Wrong sets are refused whole, each naming what differs.
    let stranger = Device::new(42);
    let (s, v) = post_copies(&r, &m, 1, &[(&one.id, 0, "a")]).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], json!("device_mismatch"));
    assert_eq!(
        (v["missing"].clone(), v["extra"].clone(), v["stale"].clone()),
        (json!([two.id]), json!([]), json!([]))
    );
    let (s, v) = post_copies(
        &r,
        &m,
        1,
        &[(&one.id, 1, "a"), (&two.id, 0, "b"), (&stranger.id, 0, "c")],
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        (v["missing"].clone(), v["extra"].clone(), v["stale"].clone()),
        (json!([]), json!([stranger.id]), json!([one.id]))
    );
    for tok in [&tok1, &tok2] {
        assert!(
            inbox(&r, &log, tok, &m).await.is_empty(),
            "a refused post stored nothing"
        );
    }
    // A device named twice is refused before the list is read.
    let (s, v) = post_copies(&r, &m, 1, &[(&one.id, 0, "a"), (&one.id, 0, "b")]).await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("duplicate_device"))
    );

    // The right set: each device reads its own copy and only it.
    let copies = [
        (one.id.as_str(), 0, "for one"),
        (two.id.as_str(), 0, "for two"),
    ];
    let (s, v) = post_copies(&r, &m, 1, &copies).await;
    assert_eq!(
        (s, v["duplicate"].clone()),
        (StatusCode::OK, json!(false)),
        "{v}"
    );
    let (s, v) = post_copies(&r, &m, 1, &copies).await;
    assert_eq!(
        (s, v["duplicate"].clone()),
        (StatusCode::OK, json!(true)),
        "{v}"
    );
    let (s, _) = post_env(&r, &m, 9, "for both").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        inbox(&r, &log, &tok1, &m).await,
        vec![hex::encode("for one"), hex::encode("for both")]
    );
    assert_eq!(
        inbox(&r, &log, &tok2, &m).await,
        vec![hex::encode("for two"), hex::encode("for both")]
    );
    let (s, v) = r
        .post(
            &format!("/v1/logs/{}/mailboxes/read", log.0),
            Some(&tok2),
            json!({ "mailboxes": [{ "mailbox_id": m.0 }] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let read: Vec<Value> = v["results"][0]["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"].clone())
        .collect();
    assert_eq!(
        read,
        vec![
            json!(hex::encode("for two")),
            json!(hex::encode("for both"))
        ]
    );

    // Pushed: a socket of device one gets its copy of the next post, not two's.
    let mut ws = ws_connect(&r, &log, &tok1).await;
    let copies = [
        (one.id.as_str(), 0, "one again"),
        (two.id.as_str(), 0, "two again"),
    ];
    let (s, _) = post_copies(&r, &m, 2, &copies).await;
    assert_eq!(s, StatusCode::OK);
    let pushed = loop {
        let v = next_text(&mut ws).await;
        if v["type"] == json!("envelopes") {
            break v;
        }
    };
    let payloads: Vec<Value> = pushed["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"].clone())
        .collect();
    assert!(
        payloads.contains(&json!(hex::encode("one again"))),
        "{pushed}"
    );
    assert!(
        !payloads.contains(&json!(hex::encode("two again"))),
        "{pushed}"
    );

    // The list moves on without device two: the stored post is still a duplicate, a
    // new one naming two is refused as extra.
    let (s, v) = put_list(&r, &log, &tok1, &device_list(2, &[(&one, 0)], [0xaa; 32])).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = post_copies(&r, &m, 2, &copies).await;
    assert_eq!(
        (s, v["duplicate"].clone()),
        (StatusCode::OK, json!(true)),
        "{v}"
    );
    let (s, v) = post_copies(&r, &m, 3, &copies).await;
    assert_eq!(
        (s, v["extra"].clone()),
        (StatusCode::CONFLICT, sorted(vec![&two.id])),
        "{v}"
    );
}

/// A device list is the identity's word, not a device's or the relay's: signed by the
/// log's root, naming only current devices, and never older than the one stored (a
/// replay of the list from before a revocation would bring the revoked device back).
async fn a_device_list_must_be_the_roots_grow_and_name_current_devices(b: Backend) {
    let Some(r) = Relay::start(b).await else {
        return;
    };
    let (log, one, tok) = r.identity(43).await;
    let two = Device::new(44);
    let (s, v) = r.add_device(&log, &tok, &two).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let bad = |s: StatusCode, v: &Value| {
        assert_eq!(
            (s, v["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("bad_device_list"))
        )
    };
    // Signed by another key than the root.
    let (s, v) = put_list(&r, &log, &tok, &device_list(1, &[(&one, 0)], [0xbb; 32])).await;
    bad(s, &v);
    // Naming a device the log does not hold.
    let (s, v) = put_list(
        &r,
        &log,
        &tok,
        &device_list(1, &[(&one, 0), (&Device::new(45), 0)], [0xaa; 32]),
    )
    .await;
    bad(s, &v);
    // Not a list at all.
    let (s, v) = put_list(&r, &log, &tok, "00ff").await;
    bad(s, &v);
    let (s, v) = put_list(
        &r,
        &log,
        &tok,
        &"00".repeat(chorus_wire::limits::MAX_DEVICE_LIST_LEN + 1),
    )
    .await;
    assert_eq!(
        (s, v["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("device_list_too_large"))
    );

    let v2 = device_list(2, &[(&one, 0), (&two, 0)], [0xaa; 32]);
    let (s, v) = put_list(&r, &log, &tok, &v2).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    for serial in [1, 2] {
        let (s, v) = put_list(
            &r,
            &log,
            &tok,
            &device_list(serial, &[(&one, 0)], [0xaa; 32]),
        )
        .await;
        assert_eq!(
            (s, v["error"].clone()),
            (StatusCode::CONFLICT, json!("stale_device_list"))
        );
    }
    // After two is revoked, a list still naming it is refused.
    let (s, v) = r.revoke_device(&log, &tok, &two, &root()).await;
    assert!(s.is_success(), "{v}");
    let (s, v) = put_list(
        &r,
        &log,
        &tok,
        &device_list(3, &[(&one, 0), (&two, 0)], [0xaa; 32]),
    )
    .await;
    bad(s, &v);
    // Nothing of the refused ones was stored.
    let m = mailbox(&r, &log, &tok, 43).await;
    let (_, v) = r
        .get(&format!("/v1/mailboxes/{}/device-list", m.0), None)
        .await;
    assert_eq!(v["list"], json!(v2));
}
