//! Two identities talking through a relay, using chorus-client as a library.
//!
//! Starts a relay in this process (loopback, a temporary SQLite file), creates two
//! device homes, exchanges an invitation and a few messages, and prints what each side
//! received. `cargo run -p chorus-client --example two_devices`.

use std::net::SocketAddr;

use chorus_client::{Device, Event, Options, Unlock};
use chorus_relay::serve::ServeArgs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (listener, state) = ServeArgs::embedded(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        dir.path().join("relay"),
    )
    .bind()
    .await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(chorus_relay::run(listener, state, std::future::pending()));

    let alice = Device::init(
        &dir.path().join("alice"),
        Unlock::KeyFile,
        &url,
        "alice",
        Options::default(),
    )
    .await?;
    let bob = Device::init(
        &dir.path().join("bob"),
        Unlock::KeyFile,
        &url,
        "bob",
        Options::default(),
    )
    .await?;

    let code = alice.invite().await?;
    let (contact, _) = bob.accept(&code, None).await?;
    bob.send(&contact, "Hello from bob").await?;

    for event in alice.sync().await? {
        match event {
            Event::ContactAdded { contact } => println!("alice: new contact {contact}"),
            Event::Message(m) => println!("alice: {} says {:?}", m.contact, m.text),
            Event::SessionReset { contact } => println!("alice: {contact} started a new session"),
            Event::DeviceLinked { name, by } => println!("alice: device {name} linked by {by}"),
            Event::DeviceRelinked { name, by } => {
                println!("alice: device {name} linked again by {by}")
            }
            Event::DeviceRevoked { name, by, .. } => {
                println!("alice: device {name} revoked by {by}")
            }
            Event::Request { name, text, .. } => {
                println!("alice: message request from {name}: {text:?}")
            }
            Event::SecurityChanged { primary_root, .. } => {
                println!("alice: security changed (primary-root: {primary_root})")
            }
            Event::IdentityRolled { .. }
            | Event::ContactRolled { .. }
            | Event::ContactCompromised { .. }
            | Event::ContactRenamed { .. }
            | Event::ContactRemoved { .. }
            | Event::TimerChanged { .. } => println!("alice: {event:?}"),
            Event::Rejected { reason } => println!("alice: skipped an envelope: {reason}"),
        }
    }
    alice.send("bob", "Hi bob, alice here").await?;
    for event in bob.sync().await? {
        if let Event::Message(m) = event {
            println!("bob: {} says {:?}", m.contact, m.text);
        }
    }
    let v = alice.verify("bob").await?;
    println!("safety number: {}", v.safety_number);
    Ok(())
}
