//! A two-party conversation through the Chorus core, printed as a transcript.
//!
//! Alice fetches Bob's prekey bundle, runs the hybrid handshake, and both exchange
//! messages — including one delivered out of order and one lost — while the transcript
//! shows what each side sees on the wire (sizes, ratchet keys) and in the clear.
//!
//! `cargo run -p chorus-core --example conversation`

use chorus_core::{
    EncryptedMessage, LocalIdentity, MemoryPrekeyStore, MessageKind, Session, initiate, respond,
};
use chorus_crypto::SafetyNumber;
use chorus_wire::{InitialMessage, PrekeyBundle, RatchetMessage};
use rand::rngs::SysRng;
use rand_core::UnwrapErr;

fn wire(m: &EncryptedMessage) -> String {
    let header = match m.kind {
        MessageKind::Initial => InitialMessage::decode(&m.bytes).map(|i| i.message.header),
        MessageKind::Ratchet => RatchetMessage::decode(&m.bytes).map(|r| r.header),
    };
    match header {
        Ok(h) => format!(
            "{:?}, {} bytes, ratchet key {:?} #{}",
            m.kind,
            m.bytes.len(),
            h.sender,
            h.counter
        ),
        Err(e) => format!("undecodable: {e}"),
    }
}

fn read(who: &str, s: &mut Session, m: &EncryptedMessage) {
    match s.decrypt(m) {
        Ok(p) => println!("  {who} reads   {:?}", String::from_utf8_lossy(&p)),
        Err(e) => println!("  {who} refuses ({e})"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = UnwrapErr(SysRng);
    let alice_id = LocalIdentity::generate(&mut rng);
    let bob_id = LocalIdentity::generate(&mut rng);
    println!(
        "safety number: {}",
        SafetyNumber::new(&alice_id.keys().root, &bob_id.keys().root)
    );

    let mut prekeys = MemoryPrekeyStore::default();
    let bundle = PrekeyBundle {
        identity: bob_id.keys().clone(),
        signed_prekey: prekeys.new_signed_prekey(&bob_id, &mut rng)?,
        one_time_prekey: Some(prekeys.new_one_time_prekey(&mut rng)),
        pq_prekey: prekeys.new_pq_prekey(&bob_id, false, &mut rng)?,
    };
    let bundle = PrekeyBundle::decode(&bundle.encode())?;
    println!(
        "Bob's bundle verified ({} bytes, ML-KEM-768 + X25519)",
        bundle.encode().len()
    );

    let mut alice = initiate(&alice_id, &bundle, &mut rng)?;
    let m1 = alice.encrypt(b"Hi Bob, it's Alice.", &mut rng)?;
    println!("Alice sends  {}", wire(&m1));
    let mut answered = respond(&bob_id, &prekeys, &m1.bytes)?;
    prekeys.consume(&answered.consumed);
    println!(
        "  Bob reads   {:?} (one-time prekeys left: {})",
        String::from_utf8_lossy(&answered.plaintext),
        prekeys.one_time_count()
    );
    let bob = &mut answered.session;

    let r1 = bob.encrypt(b"Hello Alice!", &mut rng)?;
    let r2 = bob.encrypt(b"(this one arrives first)", &mut rng)?;
    let lost = bob.encrypt(b"(this one is lost)", &mut rng)?;
    let r3 = bob.encrypt(b"Still there?", &mut rng)?;
    for m in [&r1, &r2, &lost, &r3] {
        println!("Bob sends    {}", wire(m));
    }
    read("Alice", &mut alice, &r2);
    read("Alice", &mut alice, &r1);
    read("Alice", &mut alice, &r3);
    read("Alice", &mut alice, &r1);

    let a2 = alice.encrypt(b"Yes! New ratchet key, fresh DH step.", &mut rng)?;
    println!("Alice sends  {}", wire(&a2));
    read("Bob", bob, &a2);
    println!("state: Alice {:?}\n       Bob   {:?}", alice, bob);
    Ok(())
}
