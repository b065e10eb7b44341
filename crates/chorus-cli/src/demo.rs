//! `chorus demo`: the whole story on an embedded relay, with every step checked.
//!
//! A relay on an ephemeral loopback port with a temporary SQLite file; two identities in
//! temporary homes — alice on three devices (laptop, phone, tablet), bob on two — linked
//! with short codes compared on both screens; an invitation; messages from and to any
//! device; two of alice's devices sending at the same moment; bob's phone offline, then
//! catching up; one history on all five devices; safety numbers compared. Each step
//! prints what each device saw, and the command exits 0 only if every check passed.

use std::net::SocketAddr;
use std::path::Path;

use chorus_client::link::link_locally;
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
            Event::Message(m) if m.outgoing => {
                println!("    {who} learns it sent to {}: {:?}", m.contact, m.text);
            }
            Event::Message(m) => {
                println!("    {who} receives from {}: {:?}", m.contact, m.text); // {:?} escapes
                texts.push(m.text.clone());
            }
            Event::DeviceLinked { name, by } => {
                println!("    {who} sees: device {name:?} linked by {by:?}");
            }
            Event::DeviceRelinked { name, by } => {
                println!("    {who} sees: device {name:?} linked again by {by:?}");
            }
            Event::DeviceRevoked { name, by, .. } => {
                println!("    {who} sees: device {name:?} revoked by {by:?}");
            }
            Event::SessionReset { contact } => {
                println!("    {who} sees: {contact:?} started a new session");
            }
            Event::SecurityChanged { primary_root, .. } => {
                println!("    {who} sees: security level changed (primary-root: {primary_root})");
            }
            Event::IdentityRolled { fingerprint, .. } => {
                println!("    {who} sees: the identity rolled its key (fingerprint {fingerprint})");
            }
            Event::ContactRolled {
                contact,
                safety_number,
            } => println!(
                "    {who} sees: {contact} rolled their identity key, signed by their previous key (safety number {safety_number})"
            ),
            Event::ContactCompromised { contact } => {
                println!("    {who} sees: {contact}'s previous key signed two different rolls");
            }
            Event::ContactRemoved { contact } => println!("    {who} sees: {contact:?} removed"),
            Event::TimerChanged { contact, secs, .. } => {
                println!("    {who} sees: {contact:?} set disappearing messages to {secs}s");
            }
            Event::ContactRenamed { was, now, .. } => {
                println!("    {who} sees: {was:?} is now {now:?}");
            }
            Event::Request { name, text, .. } => {
                println!("    {who} sees: message request from {name:?}: {text:?}");
            }
            Event::Rejected { reason } => println!("    {who} skipped {reason}"),
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

async fn init(
    dir: &Path,
    home: &str,
    url: &str,
    name: &str,
    device: &str,
) -> Result<Device, Failure> {
    Device::init_with(
        &dir.join(home),
        Unlock::KeyFile,
        url,
        name,
        device,
        chorus_wire::SecurityLevel::SharedRoot,
        Options::default(),
    )
    .await
    .map_err(fail)
}

/// `chorus link new` on the new device and `chorus link approve` on `existing`, with
/// the SAS compared by the demo instead of a person.
async fn link(
    existing: &Device,
    dir: &Path,
    home: &str,
    name: &str,
    c: &mut Checks,
) -> Result<Device, Failure> {
    let (device, new_sas, approver_sas) = link_locally(
        existing,
        &dir.join(home),
        name,
        Unlock::KeyFile,
        Options::default(),
    )
    .await
    .map_err(fail)?;
    println!(
        "    {name} shows {new_sas}; {}'s approving device shows {approver_sas}",
        existing.name()
    );
    c.check(
        &format!("both screens show the same code for {name}"),
        new_sas == approver_sas,
    );
    Ok(device)
}

async fn sync_all(devices: &[&Device]) -> Result<(), Failure> {
    for d in devices {
        d.sync().await.map_err(fail)?;
    }
    Ok(())
}

async fn transcript(d: &Device, contact: &str) -> Result<Vec<(bool, String)>, Failure> {
    Ok(d.history(contact, 1000)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|m| (m.outgoing, m.text))
        .collect())
}

async fn story(url: &str, dir: &Path) -> Result<Checks, Failure> {
    let mut c = Checks {
        passed: 0,
        failed: Vec::new(),
    };
    step(1, "alice and bob each create an identity on their laptops");
    let a_laptop = init(dir, "alice-laptop", url, "alice", "laptop").await?;
    let b_laptop = init(dir, "bob-laptop", url, "bob", "laptop").await?;
    println!("    alice: {}", a_laptop.fingerprint());
    println!("    bob:   {}", b_laptop.fingerprint());
    c.check(
        "two identities with different fingerprints",
        a_laptop.fingerprint() != b_laptop.fingerprint(),
    );

    step(
        2,
        "alice links her phone and tablet, bob his phone (codes compared on both screens)",
    );
    let a_phone = link(&a_laptop, dir, "alice-phone", "phone", &mut c).await?;
    let a_tablet = link(&a_laptop, dir, "alice-tablet", "tablet", &mut c).await?;
    let b_phone = link(&b_laptop, dir, "bob-phone", "phone", &mut c).await?;
    let devices = a_tablet.devices().await.map_err(fail)?;
    println!(
        "    alice's devices: {}",
        devices
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    c.check(
        "alice is one identity on three devices",
        devices.len() == 3
            && a_phone.fingerprint() == a_laptop.fingerprint()
            && a_tablet.fingerprint() == a_laptop.fingerprint(),
    );
    let alice = [&a_laptop, &a_phone, &a_tablet];
    let bob = [&b_laptop, &b_phone];

    step(3, "alice's phone invites bob; bob's phone accepts");
    let code = a_phone.invite().await.map_err(fail)?;
    let (alias, outcome) = b_phone.accept(&code, None).await.map_err(fail)?;
    c.check("bob's hello reached the relay", outcome.queued.is_none());
    c.check("bob knows alice as \"alice\"", alias == "alice");
    sync_all(&alice).await?;
    sync_all(&bob).await?;
    let mut everywhere = true;
    for d in alice {
        everywhere &= d
            .contacts()
            .await
            .map_err(fail)?
            .iter()
            .any(|x| x.name == "bob");
    }
    for d in bob {
        everywhere &= d.contacts().await.map_err(fail)?.len() == 1;
    }
    c.check(
        "every device of each side has the contact — bob sees ONE alice",
        everywhere,
    );

    step(4, "messages both ways, from and to any device");
    send(
        &b_laptop,
        "alice",
        "Hi Alice! Bob here, on my laptop.",
        &mut c,
    )
    .await?;
    let mut all = true;
    for (d, name) in alice.iter().zip(["laptop", "phone", "tablet"]) {
        let got = saw(&format!("alice's {name}"), &d.sync().await.map_err(fail)?);
        all &= got == ["Hi Alice! Bob here, on my laptop."];
    }
    c.check("all three of alice's devices read it, each on its own", all);
    send(
        &a_tablet,
        "bob",
        "Hello Bob — answering from my tablet.",
        &mut c,
    )
    .await?;
    let mut both = true;
    for (d, name) in bob.iter().zip(["laptop", "phone"]) {
        let got = saw(&format!("bob's {name}"), &d.sync().await.map_err(fail)?);
        both &= got == ["Hello Bob — answering from my tablet."];
    }
    c.check("both of bob's devices read the answer", both);

    step(5, "alice's laptop and phone send at the same moment");
    let (x, y) = tokio::join!(
        a_laptop.send("bob", "Laptop: same moment…"),
        a_phone.send("bob", "Phone: …same moment!")
    );
    c.check("both sends succeed", x.is_ok() && y.is_ok());
    let got = saw("bob's laptop", &b_laptop.sync().await.map_err(fail)?);
    c.check(
        "bob receives both, in one linear conversation",
        got.len() == 2,
    );

    step(
        6,
        "bob's phone is offline while alice writes; it catches up",
    );
    let offline = ["Are you there?", "I'll leave these here.", "Talk soon."];
    for (text, d) in offline.iter().zip(alice) {
        send(d, "bob", text, &mut c).await?;
    }
    let got = saw("bob's phone", &b_phone.sync().await.map_err(fail)?);
    let tail: Vec<&str> = got.iter().rev().take(3).rev().map(String::as_str).collect();
    c.check("bob's phone receives all three, in order", tail == offline);
    send(&b_phone, "alice", "Back now — read them all.", &mut c).await?;
    sync_all(&alice).await?;
    sync_all(&bob).await?;

    step(7, "all five devices agree on one history");
    let reference = transcript(&a_laptop, "bob").await?;
    for (out, text) in &reference {
        println!("    {:>5}: {text}", if *out { "alice" } else { "bob" });
    }
    let mut agree = reference.len() == 8;
    for d in &alice[1..] {
        agree &= transcript(d, "bob").await? == reference;
    }
    let mirrored: Vec<(bool, String)> = reference.iter().map(|(o, t)| (!o, t.clone())).collect();
    for d in bob {
        agree &= transcript(d, "alice").await? == mirrored;
    }
    c.check(
        "eight messages, the same order on every device of both sides",
        agree,
    );

    step(8, "safety numbers");
    let va = a_phone.verify("bob").await.map_err(fail)?;
    let vb = b_laptop.verify("alice").await.map_err(fail)?;
    println!("    alice's phone sees: {}", va.safety_number);
    println!("    bob's laptop sees:  {}", vb.safety_number);
    c.check(
        "both sides compute the same safety number, whatever the device",
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
