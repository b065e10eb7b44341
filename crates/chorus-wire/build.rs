//! Compiles the wire schemas with protox (pure Rust; no protoc, no network).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/chorus.proto"], ["proto"])?;
    // Messages with secret fields get a hand-written Debug that prints only lengths
    // (`src/redacted.rs`): a derived one would print keys, sessions and plaintext.
    prost_build::Config::new()
        .skip_debug([
            "chorus.wire.v1.Sent",
            "chorus.wire.v1.ContactDetails",
            "chorus.wire.v1.PrekeySecret",
            "chorus.wire.v1.ProvisioningBundle",
            "chorus.wire.v1.CheckpointPrekey",
            "chorus.wire.v1.CheckpointContact",
        ])
        .compile_fds(fds)?;
    Ok(())
}
