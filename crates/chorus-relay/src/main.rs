//! `chorus-relay`: the relay binary, thin glue over the `chorus_relay` library.
//!
//! `chorus-relay serve` with no flags listens on 127.0.0.1:7470 with a SQLite file
//! in the working directory; `--database postgres://…` switches to PostgreSQL. The
//! flags live in [`chorus_relay::serve::ServeArgs`], shared with `chorus relay serve`.
//! Logs are structured (tracing; `--log-format json` for machines) and never contain
//! tokens or payloads. Once listening it prints `listening on ADDR` on stdout.

use chorus_relay::serve::ServeArgs;
use clap::{Parser, Subcommand};

/// mimalloc, as in the `chorus` binary (ARCHITECTURE.md, "mimalloc in the binaries").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "chorus-relay",
    version,
    about = "The Chorus relay: stores and forwards ciphertext"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the relay API.
    Serve(ServeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Serve(serve) = Cli::parse().command;
    serve.init_logging();
    serve.serve().await
}
