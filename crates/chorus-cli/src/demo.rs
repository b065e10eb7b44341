//! `chorus demo`: the whole story on an embedded relay, with every step checked.
//!
//! A relay on an ephemeral loopback port with a temporary SQLite file; two identities
//! (alice, bob) in temporary homes; an invitation; messages both ways; bob offline while
//! alice writes, then catching up; safety numbers compared. Each step prints what each
//! side saw, and the command exits 0 only if every check passed.

use std::net::SocketAddr;
use std::path::Path;

use chorus_client::{Device, Event, Options, Unlock};
use chorus_relay::serve::ServeArgs;

use crate::exit::{self, Failure};

struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool) {
        if ok {
            self.passed += 1;
            println!("    ✓ {what}");
        } else {
            self.failed.push(what.to_owned());
            println!("    ✗ {what}");
        }
    }
}

fn step(n: u32, title: &str) {
    println!();
    println!("{n}. {title}");
}

fn saw(who: &str, events: &[Event]) -> Vec<String> {
    let mut texts = Vec::new();
    for e in events {
        match e {
            Event::ContactAdded { contact } => println!("    {who} sees: new contact {contact:?}"),
            Event::Message(m) => {
                println!("    {who} receives from {}: {:?}", m.contact, m.text); // {:?} escapes
                texts.push(m.text.clone());
            }
            Event::Rejected { reason } => println!("    {who} skipped an envelope: {reason}"),
        }
    }
    texts
}

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::new(exit::DEMO_FAILED, format!("demo: {e}"))
}

pub async fn run() -> Result<(), Failure> {
    let dir = tempfile::tempdir().map_err(fail)?;
    let args = ServeArgs::embedded(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        dir.path().join("relay"),
    );
    let (listener, state) = args.bind().await.map_err(fail)?;
    let addr = listener.local_addr().map_err(fail)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(chorus_relay::run(listener, state, async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}");
    println!(
        "Chorus demo — relay on {url} (SQLite in {})",
        dir.path().display()
    );

    let result = story(&url, dir.path()).await;
    let _ = stop.send(());
    let _ = relay.await;
    let checks = result?;
    println!();
    if checks.failed.is_empty() {
        println!("All {} checks passed.", checks.passed);
        Ok(())
    } else {
        Err(Failure::new(
            exit::DEMO_FAILED,
            format!(
                "{} of {} checks failed: {}",
                checks.failed.len(),
                checks.passed + checks.failed.len(),
                checks.failed.join("; ")
            ),
        ))
    }
}

async fn story(url: &str, dir: &Path) -> Result<Checks, Failure> {
    let mut c = Checks {
        passed: 0,
        failed: Vec::new(),
    };
    step(1, "alice and bob each create an identity");
    let alice = Device::init(
        &dir.join("alice"),
        Unlock::KeyFile,
        url,
        "alice",
        Options::default(),
    )
    .await
    .map_err(fail)?;
    let bob = Device::init(
        &dir.join("bob"),
        Unlock::KeyFile,
        url,
        "bob",
        Options::default(),
    )
    .await
    .map_err(fail)?;
    println!("    alice: {}", alice.fingerprint());
    println!("    bob:   {}", bob.fingerprint());
    c.check(
        "two identities with different fingerprints",
        alice.fingerprint() != bob.fingerprint(),
    );

    step(2, "alice invites bob; bob accepts the code");
    let code = alice.invite().await.map_err(fail)?;
    println!(
        "    code: {}… ({} characters)",
        &code[..32.min(code.len())],
        code.len()
    );
    let (alias, outcome) = bob.accept(&code, None).await.map_err(fail)?;
    c.check("bob's hello reached the relay", outcome.queued.is_none());
    c.check("bob knows alice as \"alice\"", alias == "alice");
    let events = alice.sync().await.map_err(fail)?;
    saw("alice", &events);
    c.check(
        "alice learns of bob from his answer",
        events.contains(&Event::ContactAdded {
            contact: "bob".into(),
        }),
    );

    step(3, "messages both ways");
    send(&bob, "alice", "Hi Alice! Bob here.", &mut c).await?;
    let got = saw("alice", &alice.sync().await.map_err(fail)?);
    c.check("alice reads bob's message", got == ["Hi Alice! Bob here."]);
    send(&alice, "bob", "Hello Bob — got you.", &mut c).await?;
    let got = saw("bob", &bob.sync().await.map_err(fail)?);
    c.check("bob reads alice's reply", got == ["Hello Bob — got you."]);

    step(4, "bob goes offline; alice keeps writing");
    let offline = ["Are you there?", "I'll leave these here.", "Talk soon."];
    for text in offline {
        send(&alice, "bob", text, &mut c).await?;
    }
    let status = alice.status().await.map_err(fail)?;
    c.check(
        "alice's outbox is empty: the relay holds all three",
        status.outbox == 0,
    );

    step(5, "bob comes back and catches up");
    let got = saw("bob", &bob.sync().await.map_err(fail)?);
    c.check("bob receives all three, in order", got == offline);
    send(&bob, "alice", "Back now — read them all.", &mut c).await?;
    let got = saw("alice", &alice.sync().await.map_err(fail)?);
    c.check(
        "alice reads bob's answer",
        got == ["Back now — read them all."],
    );

    step(6, "both histories agree");
    let a = alice.history("bob", 100).await.map_err(fail)?;
    let b = bob.history("alice", 100).await.map_err(fail)?;
    for m in &a {
        let who = if m.outgoing { "alice" } else { "bob" };
        println!("    {who:>5}: {}", m.text);
    }
    let a_texts: Vec<(bool, &str)> = a.iter().map(|m| (m.outgoing, m.text.as_str())).collect();
    let b_texts: Vec<(bool, &str)> = b.iter().map(|m| (!m.outgoing, m.text.as_str())).collect();
    c.check(
        "six messages, the same order on both sides",
        a.len() == 6 && a_texts == b_texts,
    );

    step(7, "safety numbers");
    let va = alice.verify("bob").await.map_err(fail)?;
    let vb = bob.verify("alice").await.map_err(fail)?;
    println!("    alice sees: {}", va.safety_number);
    println!("    bob sees:   {}", vb.safety_number);
    c.check(
        "both sides compute the same safety number",
        va.safety_number.to_string() == vb.safety_number.to_string(),
    );
    Ok(c)
}

async fn send(from: &Device, to: &str, text: &str, c: &mut Checks) -> Result<(), Failure> {
    println!("    {} sends to {to}: {text:?}", from.name());
    let outcome = from.send(to, text).await.map_err(fail)?;
    if let Some(e) = &outcome.queued {
        c.check(
            &format!("{}'s message was accepted by the relay ({e})", from.name()),
            false,
        );
    }
    Ok(())
}
