//! `chorus`: the command line, thin glue over [`chorus_client`].
//!
//! Each subcommand parses its arguments (clap), opens the device home, calls one client
//! method, and prints the result — text for people, `--json` for scripts. Errors are one
//! line on stderr and a documented exit code (see [`exit`]); nothing here decides
//! protocol behaviour.

mod chat;
mod demo;
mod exit;
mod link;
mod recover;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chorus_client::{ClientError, Delivery, Device, Event, Message, Options, StoreError, Unlock};
use chorus_relay::serve::ServeArgs;
use clap::{CommandFactory, Parser, Subcommand};
use zeroize::Zeroizing;

use crate::exit::Failure;
pub(crate) use crate::options as cli_options;

/// mimalloc, not the system allocator: folding a log and receiving a backlog
/// allocate buffers for every field of every record, and with glibc's malloc about a
/// fifth of the folding thread went to `malloc`/`free`; mimalloc made a 100,000-event
/// catch-up 1.2–1.3× faster (ARCHITECTURE.md, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Chorus: end-to-end encrypted messaging where your devices are one identity.
#[derive(Parser)]
#[command(name = "chorus", version, propagate_version = true)]
struct Cli {
    /// Device home (store and key file). Default: the platform data directory.
    #[arg(long, global = true, env = "CHORUS_HOME")]
    home: Option<PathBuf>,
    /// Read the store passphrase from this environment variable (instead of a key file).
    #[arg(long, global = true, value_name = "VAR")]
    passphrase_env: Option<String>,
    /// Protect a new store with a passphrase asked at the prompt (instead of a key file).
    #[arg(long, global = true)]
    passphrase: bool,
    /// Seconds to wait before delivering a message another of your devices sent but
    /// did not deliver (it may have died right after sending).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    deliver_after: u64,
    /// Let contacts' hellos, invitations and addresses name relays on loopback, private
    /// or link-local hosts or over plain http (test setups only; by default only what
    /// your own home relay is).
    #[arg(long, global = true)]
    allow_private_relays: bool,
    /// Bytes per history chunk when this device approves a link (tests: several chunks
    /// from a short history).
    #[arg(long, global = true, hide = true, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..=4_194_304))]
    history_chunk_bytes: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

/// `chorus init --security`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Security {
    /// The root key on every device.
    SharedRoot,
    /// The root key on this device only.
    PrimaryRoot,
}

/// `--strategy`: how this identity's devices send as one (`docs/strategies.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StrategyArg {
    /// Any device sends; a sibling's send at the same moment makes it encrypt again.
    Sequenced,
    /// Any device sends without waiting; simultaneous sends fork the ratchet.
    Leaderless,
    /// The device holding a lease in the log sends for the others; when it goes
    /// away, the next device to send takes the lease over.
    Leader,
    /// This device sends and reads for the others, which hand it their messages
    /// (set it on another device to move the role there).
    Primary,
    /// Signal's model: contacts see every device (not built yet).
    PerDevice,
}

impl From<StrategyArg> for chorus_wire::Strategy {
    fn from(s: StrategyArg) -> Self {
        use chorus_wire::Strategy as S;
        match s {
            StrategyArg::Sequenced => S::Sequenced,
            StrategyArg::Leaderless => S::Leaderless,
            StrategyArg::Leader => S::Leader,
            StrategyArg::Primary => S::Primary,
            StrategyArg::PerDevice => S::PerDevice,
        }
    }
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; `relay serve`'s flags are the large one"
)]
enum Command {
    /// Run a relay.
    Relay {
        #[command(flatten)]
        no_device: NoDevice,
        #[command(subcommand)]
        command: RelayCommand,
    },
    /// Create this device's identity on a relay; prints its safety number.
    Init {
        /// The home relay, e.g. http://127.0.0.1:7470.
        #[arg(long)]
        relay: String,
        /// Your display name (contacts see it as a suggested alias).
        #[arg(long)]
        name: String,
        /// This device's name, as `chorus devices` lists it (default: the host name).
        #[arg(long)]
        device_name: Option<String>,
        /// Where the root key lives: on every device (any device can link devices and
        /// create invitations), or only on this one (the others cannot sign for the
        /// identity). `primary-root` shows a recovery code once: with it, `chorus
        /// recover` makes a new device the primary if this one is lost.
        #[arg(long, value_enum, default_value = "shared-root")]
        security: Security,
        /// How the identity's devices send as one (`chorus strategy` changes it later).
        #[arg(long, value_enum, default_value = "sequenced")]
        strategy: StrategyArg,
        /// Print the recovery code without a QR.
        #[arg(long)]
        no_qr: bool,
    },
    /// Become your identity on this new device with the recovery code that `init
    /// --security primary-root` showed (read from stdin, never an argument): this
    /// device becomes the primary and the lost primary is revoked. A wrong code
    /// changes nothing.
    Recover {
        /// The identity's home relay, e.g. http://127.0.0.1:7470.
        #[arg(long)]
        relay: String,
        /// This device's name, as `chorus devices` lists it (default: the host name).
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Show the identity's multi-device strategy, or set it for every device.
    Strategy {
        /// The strategy to use from now on.
        #[arg(value_enum)]
        set: Option<StrategyArg>,
    },
    /// The identity's security settings.
    Security {
        #[command(subcommand)]
        command: SecurityCommand,
    },
    /// The identity's root key.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Link another device into this identity (run `link new` on the new device first).
    Link {
        #[command(subcommand)]
        command: LinkCommand,
    },
    /// List this identity's devices (or revoke one).
    Devices {
        #[command(subcommand)]
        command: Option<DevicesCommand>,
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print an invitation code (text and QR) for one new contact.
    Invite {
        /// Print only the code, no QR.
        #[arg(long)]
        no_qr: bool,
    },
    /// Accept an invitation code ("-" reads it from stdin).
    Accept {
        /// The code, starting with "chorus:".
        code: String,
        /// What to call the contact (default: the name in the code).
        #[arg(long)]
        name: Option<String>,
    },
    /// Manage contacts.
    Contact {
        #[command(subcommand)]
        command: ContactCommand,
    },
    /// Your profile: the display name your devices and your contacts show.
    Profile {
        #[command(subcommand)]
        command: Option<ProfileCommand>,
    },
    /// Message requests: strangers who wrote to your address. Nothing is sent to them,
    /// and they are not contacts, until you accept.
    Requests {
        #[command(subcommand)]
        command: Option<RequestsCommand>,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List contacts.
    Contacts {
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Send a message (TEXT, or stdin when omitted), or a file with `--file`.
    Send {
        /// The contact's alias.
        contact: String,
        /// The text (with `--file`: the file's caption, none when omitted).
        text: Option<String>,
        /// A file to send: encrypted on this device, stored on your relay until it
        /// expires, and fetched by every device of the contact and of yours.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Files sent and received, newest first (`chorus save ID` fetches one).
    Files {
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Fetch a file (ID as `chorus files` shows it), check it, and write it to PATH
    /// (a directory: under the file's name; default: the current directory). Never
    /// replaces a file.
    Save {
        /// The file's id (or a unique start of it, at least 4 digits).
        id: String,
        /// Where to write it.
        path: Option<PathBuf>,
    },
    /// Show the conversation with a contact, oldest first.
    History {
        /// The contact's alias.
        contact: String,
        /// How many of the latest messages.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// A chat screen: your conversations and message requests, live, with an input
    /// line (needs a terminal; `/help` inside lists the keys and commands).
    Chat {
        /// The conversation to open first (default: the first listed).
        contact: Option<String>,
    },
    /// Fetch and show new messages once.
    Sync {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Then compact the log: the relay deletes every record all of this identity's
        /// devices have folded (message history stays on each device). `watch` does
        /// this hourly.
        #[arg(long)]
        compact: bool,
    },
    /// Show incoming messages live (WebSocket), reconnecting when the relay goes away.
    Watch {
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Relay reachability, pending outbox, mailbox cursors, prekeys.
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show the safety numbers to compare with a contact; mark them verified.
    Verify {
        /// The contact's alias.
        contact: String,
        /// You compared the safety number with them: mark the contact verified on all
        /// your devices (until their identity key changes).
        #[arg(long, conflicts_with = "unmark")]
        mark: bool,
        /// Remove the verified mark on all your devices.
        #[arg(long)]
        unmark: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print shell completions.
    Completions {
        #[command(flatten)]
        no_device: NoDevice,
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Run a whole scenario on an embedded relay and check every step.
    Demo {
        #[command(flatten)]
        no_device: NoDevice,
    },
}

/// The commands that have no device (`relay`, `completions`, `demo`) hold a hidden
/// stand-in for each of `Cli`'s global device flags: clap does not offer a global flag
/// where an argument of its id exists, so their help and completions do not list them,
/// and [`refuse_device_flags`] refuses one given anyway.
#[derive(clap::Args)]
struct NoDevice {
    #[arg(long, hide = true)]
    home: Option<PathBuf>,
    #[arg(long, hide = true)]
    passphrase_env: Option<String>,
    #[arg(long, hide = true)]
    passphrase: bool,
    #[arg(long, hide = true)]
    deliver_after: Option<u64>,
    #[arg(long, hide = true)]
    allow_private_relays: bool,
    #[arg(long, hide = true)]
    history_chunk_bytes: Option<u64>,
}

/// `Cli`'s global flags, which only commands on a device use.
const DEVICE_FLAGS: [&str; 6] = [
    "home",
    "passphrase_env",
    "passphrase",
    "deliver_after",
    "allow_private_relays",
    "history_chunk_bytes",
];

/// A device flag typed for a command that has no device is refused (an environment
/// variable such as `CHORUS_HOME` is not: it is there for every command).
fn refuse_device_flags(m: &clap::ArgMatches) -> Result<(), Failure> {
    let Some((name, sub)) = m.subcommand() else {
        return Ok(());
    };
    if !matches!(name, "relay" | "completions" | "demo") {
        return Ok(());
    }
    let typed = |m: &clap::ArgMatches, id: &str| {
        m.ids().any(|i| i.as_str() == id)
            && m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
    };
    match DEVICE_FLAGS
        .iter()
        .find(|id| typed(m, id) || typed(sub, id))
    {
        None => Ok(()),
        Some(id) => Err(Failure::usage(format!(
            "--{} is for commands on a device; `chorus {name}` does not take it",
            id.replace('_', "-")
        ))),
    }
}

#[derive(Subcommand)]
enum RelayCommand {
    /// Serve the relay API (SQLite in the working directory by default).
    Serve(ServeArgs),
}

#[derive(Subcommand)]
enum LinkCommand {
    /// On the NEW device: show a link code, wait for an existing device to approve it,
    /// compare the codes, then catch up. The home must not hold an identity yet.
    New {
        /// The identity's home relay (the one `chorus status` shows on the other device).
        #[arg(long)]
        relay: String,
        /// This device's name, as `chorus devices` lists it (default: the host name).
        #[arg(long)]
        device_name: Option<String>,
        /// Print only the code, no QR.
        #[arg(long)]
        no_qr: bool,
        /// Do not ask here: only after you compared the number on both screens yourself
        /// (the approving device still asks its user to type it).
        #[arg(long)]
        yes: bool,
        /// Bring no conversation history: this device's history starts now.
        #[arg(long)]
        no_history: bool,
    },
    /// On an EXISTING device: approve a link code shown by the new device. You type the
    /// 9-digit number the new device shows (read from stdin; scripts pipe it in).
    Approve {
        /// The code, starting with "chorus-link:".
        code: String,
    },
}

impl Security {
    fn name(self) -> &'static str {
        match self {
            Security::SharedRoot => "shared-root",
            Security::PrimaryRoot => "primary-root",
        }
    }
}

#[derive(Subcommand)]
enum SecurityCommand {
    /// Change where the root key lives. `primary-root` keeps it on this device only
    /// (the others delete theirs; a recovery code is shown if the identity has none);
    /// `shared-root` gives it to every device. Needs the root key.
    Set {
        #[arg(value_enum)]
        level: Security,
        /// Print a recovery code without a QR.
        #[arg(long)]
        no_qr: bool,
    },
    /// Show a new recovery code (the primary only); the previous code stops working.
    RecoveryCode {
        /// Print the code without a QR.
        #[arg(long)]
        no_qr: bool,
    },
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Move the identity to a new root key (after revoking a device that held the old
    /// one). Contacts keep the conversation: each is shown, with your next message,
    /// that the new key is signed by the previous one, and gets a new safety number.
    /// Needs the root key (in primary-root, the primary).
    Roll {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Rename a device of this identity (this one too) on all your devices.
    Rename {
        /// The device's name or the start of its id (4+ hex digits), as `chorus
        /// devices` lists it.
        device: String,
        /// The new name (at most 64 bytes).
        new_name: String,
    },
    /// Remove a device from this identity for good (a lost or sold phone): every
    /// device refuses its records from now on and the relay no longer lets it in.
    /// Run it on another device of the identity (in primary-root, the primary).
    Revoke {
        /// The device's name or the start of its id (4+ hex digits), as `chorus
        /// devices` lists it.
        device: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Change your display name on all your devices; each contact is told with your
    /// next message to them (their name for you follows, unless they chose their own).
    Set {
        /// The new name (at most 64 bytes).
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum RequestsCommand {
    /// Make the sender a contact on all your devices and answer them.
    Accept {
        /// The request's number, as `chorus requests` lists it.
        id: i64,
        /// What to call the contact (default: the name they gave).
        #[arg(long)]
        name: Option<String>,
    },
    /// Drop the request on all your devices and refuse the sender's first messages.
    Block {
        /// The request's number, as `chorus requests` lists it.
        id: i64,
    },
}

#[derive(Subcommand)]
enum ContactCommand {
    /// Add a contact by address (fingerprint@relay) through the relay's directory.
    Add {
        /// DIGITS@RELAY, as `chorus status` prints it.
        address: String,
        /// What to call the contact.
        #[arg(long)]
        name: Option<String>,
    },
    /// Rename a contact on all your devices.
    Rename {
        /// The contact's name, as `chorus contacts` lists it.
        name: String,
        /// The new name (at most 64 bytes; not another contact's).
        new_name: String,
    },
    /// Remove a contact and your conversation with them from all your devices (after a
    /// confirmation). To talk again, exchange a new invitation.
    Remove {
        /// The contact's name, as `chorus contacts` lists it.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Show or set the conversation's disappearing-message timer, for all your devices
    /// and the contact (told with your next message): messages sent from then on are
    /// deleted that long after they were sent, on every device.
    Timer {
        /// The contact's name, as `chorus contacts` lists it.
        name: String,
        /// 30s, 5m, 1h, 1d, 1w (at most 4w), or off.
        #[arg(value_parser = parse_timer)]
        duration: Option<u64>,
    },
    /// Block a contact on all your devices: their messages are dropped from now on, and
    /// they cannot reach you through a new invitation or your address.
    Block {
        /// The contact's name, as `chorus contacts` lists it.
        name: String,
    },
    /// Unblock a contact on all your devices: their new messages are shown again (what
    /// they sent while blocked stays dropped).
    Unblock {
        /// The contact's name, as `chorus contacts` lists it.
        name: String,
    },
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    if let Err(f) = refuse_device_flags(&matches) {
        eprintln!("error: {}", f.message);
        return ExitCode::from(f.code);
    }
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    if let Command::Relay {
        command: RelayCommand::Serve(args),
        ..
    } = &cli.command
    {
        args.init_logging();
    } else if matches!(cli.command, Command::Chat { .. }) {
        // Nothing may write to the terminal under the chat screen: no log output.
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn home(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(h) = &cli.home {
        return Ok(h.clone());
    }
    directories::ProjectDirs::from("org", "chorus", "chorus")
        .map(|d| d.data_dir().to_owned())
        .ok_or_else(|| Failure::usage("cannot find a data directory; pass --home DIR"))
}

fn unlock(cli: &Cli, creating: bool) -> Result<Unlock, Failure> {
    if let Some(var) = &cli.passphrase_env {
        let value = std::env::var(var)
            .map_err(|_| Failure::usage(format!("environment variable {var} is not set")))?;
        return Ok(Unlock::Passphrase(Zeroizing::new(value)));
    }
    if cli.passphrase {
        return prompt(creating);
    }
    Ok(Unlock::KeyFile)
}

fn prompt(creating: bool) -> Result<Unlock, Failure> {
    let read = |label: &str| {
        rpassword::prompt_password(label)
            .map(Zeroizing::new)
            .map_err(|e| Failure::usage(format!("cannot read the passphrase: {e}")))
    };
    let first = read("Passphrase: ")?;
    if creating && *read("Passphrase (again): ")? != *first {
        return Err(Failure::usage("the passphrases differ"));
    }
    Ok(Unlock::Passphrase(first))
}

fn options(cli: &Cli) -> Options {
    Options {
        sibling_delivery: std::time::Duration::from_secs(cli.deliver_after),
        allow_private_relays: cli.allow_private_relays,
        history_chunk_bytes: cli
            .history_chunk_bytes
            .and_then(|b| usize::try_from(b).ok())
            .unwrap_or(chorus_wire::HISTORY_CHUNK_TARGET),
        ..Options::default()
    }
}

async fn open(cli: &Cli) -> Result<Device, Failure> {
    let home = home(cli)?;
    match Device::open(&home, unlock(cli, false)?, options(cli)).await {
        // A passphrase store opened without one: ask, if someone is there to answer.
        Err(ClientError::Store(StoreError::WrongUnlockMethod {
            expected: "passphrase",
            ..
        })) if std::io::stdin().is_terminal() && cli.passphrase_env.is_none() => {
            Ok(Device::open(&home, prompt(false)?, options(cli)).await?)
        }
        other => Ok(other?),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Relay {
            command: RelayCommand::Serve(args),
            ..
        } => args.serve().await.map_err(|e| {
            // Not "relay unreachable": this is the relay, and it could not start.
            let taken = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
            });
            Failure::new(
                if taken {
                    exit::CONFLICT
                } else {
                    exit::INTERNAL
                },
                format!("{e:#}"),
            )
        }),
        Command::Init {
            relay,
            name,
            device_name,
            security,
            strategy,
            no_qr,
        } => {
            let home = home(&cli)?;
            let strategy = chorus_wire::Strategy::from(*strategy);
            if strategy == chorus_wire::Strategy::PerDevice && *security == Security::PrimaryRoot {
                // Refused before anything is created.
                return Err(ClientError::StrategyNeedsSharedRoot(strategy).into());
            }
            let device = Device::init_with(
                &home,
                unlock(&cli, true)?,
                relay,
                name,
                &device_name.clone().unwrap_or_else(host_name),
                match security {
                    Security::SharedRoot => chorus_wire::SecurityLevel::SharedRoot,
                    Security::PrimaryRoot => chorus_wire::SecurityLevel::PrimaryRoot,
                },
                options(&cli),
            )
            .await?;
            if strategy != chorus_wire::Strategy::Sequenced {
                device.set_strategy(strategy).await?;
            }
            println!("Created identity {:?} in {}", device.name(), home.display());
            if strategy != chorus_wire::Strategy::Sequenced {
                println!("Strategy:      {strategy}");
            }
            if *security == Security::PrimaryRoot {
                println!(
                    "Security:      primary-root (the root key stays on this device: only it links devices and creates invitations)"
                );
            }
            println!("Safety number: {}", device.fingerprint());
            println!("Address:       {}", device.address());
            if *security == Security::PrimaryRoot {
                recover::show_new_code(&device, *no_qr).await?;
            }
            println!();
            println!(
                "Next: `chorus invite` makes a code for a contact (or give them your address),"
            );
            println!(
                "      `chorus link new --relay {relay}` on another device of yours, then `chorus link approve` here,"
            );
            println!("      `chorus chat` to talk.");
            Ok(())
        }
        Command::Recover { relay, device_name } => {
            let name = device_name.clone().unwrap_or_else(host_name);
            recover::run(&cli, relay, &name).await
        }
        Command::Strategy { set: None } => {
            let device = open(&cli).await?;
            device.sync_log().await?;
            let strategy = device.strategy().await?;
            match (strategy, device.sending_device().await?) {
                (chorus_wire::Strategy::Leader, Some(d)) => {
                    println!("{strategy} (the lease is held by {d:?})")
                }
                (chorus_wire::Strategy::Leader, None) => {
                    println!("{strategy} (no lease holds: the next device to send takes it)")
                }
                (chorus_wire::Strategy::Primary, Some(d)) => {
                    println!("{strategy} (the primary is {d:?})")
                }
                (chorus_wire::Strategy::PerDevice, _) => println!(
                    "{strategy} (this device holds {} sessions with contacts' devices)",
                    device.pairwise_sessions().await?
                ),
                _ => println!("{strategy}"),
            }
            Ok(())
        }
        Command::Strategy { set: Some(s) } => {
            let device = open(&cli).await?;
            let strategy = chorus_wire::Strategy::from(*s);
            match device.set_strategy(strategy).await?.0 {
                true => println!(
                    "Strategy is now {strategy} on every device (each follows when it syncs)."
                ),
                false => println!("The identity already uses {strategy}."),
            }
            Ok(())
        }
        Command::Security {
            command: SecurityCommand::Set { level, no_qr },
        } => {
            let device = open(&cli).await?;
            let changed = device
                .set_security(match level {
                    Security::SharedRoot => chorus_wire::SecurityLevel::SharedRoot,
                    Security::PrimaryRoot => chorus_wire::SecurityLevel::PrimaryRoot,
                })
                .await?;
            match (level, changed) {
                (_, false) => println!("The identity already is {}.", level.name()),
                (Security::SharedRoot, true) => {
                    println!("shared-root: every device receives the root key when it syncs next.")
                }
                (Security::PrimaryRoot, true) => println!(
                    "primary-root: this device is the primary; the others delete their root key when they sync next."
                ),
            }
            if *level == Security::PrimaryRoot && !device.has_recovery_code().await? {
                recover::show_new_code(&device, *no_qr).await?;
            }
            Ok(())
        }
        Command::Security {
            command: SecurityCommand::RecoveryCode { no_qr },
        } => {
            let device = open(&cli).await?;
            recover::show_new_code(&device, *no_qr).await
        }
        Command::Identity {
            command: IdentityCommand::Roll { yes },
        } => {
            let device = open(&cli).await?;
            if !ask(
                "Roll the identity to a new root key? Your fingerprint, address and every safety number change; contacts see that the previous key signed the new one.",
                *yes,
                "stdin is not a terminal: run the command again with --yes",
            )? {
                return Err(Failure::new(exit::CONFLICT, "not rolled"));
            }
            let rolled = device.roll_identity().await?;
            println!("Rolled the identity key, signed by the previous one.");
            println!("New fingerprint: {}", rolled.fingerprint);
            println!("New address:     {}", rolled.address);
            println!(
                "Contacts are told with your next message to each; compare the new safety number with `chorus verify CONTACT`."
            );
            Ok(())
        }
        Command::Invite { no_qr } => {
            let device = open(&cli).await?;
            let code = device.invite().await?;
            // A QR is for a screen; piped (`invite | accept -`), the code alone.
            if !no_qr && std::io::stdout().is_terminal() {
                print_qr(&code);
                println!("Invitation code (give it to one person; it works once):");
            }
            println!("{code}");
            Ok(())
        }
        Command::Link {
            command:
                LinkCommand::New {
                    relay,
                    device_name,
                    no_qr,
                    yes,
                    no_history,
                },
        } => {
            let name = device_name.clone().unwrap_or_else(host_name);
            link::new(&cli, relay, &name, *no_qr, *yes, *no_history).await
        }
        Command::Link {
            command: LinkCommand::Approve { code },
        } => {
            let device = open(&cli).await?;
            link::approve(&device, code).await
        }
        Command::Devices {
            command: Some(DevicesCommand::Revoke { device: given, yes }),
            ..
        } => {
            let device = open(&cli).await?;
            let found = device.device_to_revoke(given).await?;
            let short = &found.id[..16];
            if !found.revoked
                && !ask(
                    &format!(
                        "Revoke the device {:?} ({short})? It will no longer send or read anything new as this identity.",
                        printable(&found.name)
                    ),
                    *yes,
                    "stdin is not a terminal: check the device with `chorus devices` and run the command again with --yes",
                )?
            {
                return Err(Failure::new(exit::CONFLICT, "not revoked"));
            }
            let revoked = device.revoke_device(&found.id).await?;
            if revoked.already {
                println!(
                    "{:?} ({}) was already revoked; the relay has the proof again.",
                    printable(&revoked.name),
                    revoked.id
                );
            } else {
                println!(
                    "Revoked {:?} ({}) on all your devices; the relay no longer lets it in.",
                    printable(&revoked.name),
                    revoked.id
                );
                if device.root_is_shared().await? {
                    println!(
                        "It held the identity's root key: consider `chorus identity roll` to move to a new one."
                    );
                }
            }
            Ok(())
        }
        Command::Devices {
            command:
                Some(DevicesCommand::Rename {
                    device: given,
                    new_name,
                }),
            ..
        } => {
            let device = open(&cli).await?;
            let (was, now) = device.rename_device(given, new_name).await?;
            match was == now {
                true => println!("The device is already called {:?}.", printable(&now)),
                false => println!(
                    "Renamed the device {:?} to {:?} on all your devices.",
                    printable(&was),
                    printable(&now)
                ),
            }
            Ok(())
        }
        Command::Devices { json, .. } => {
            let device = open(&cli).await?;
            let devices = device.devices().await?;
            if *json {
                print_json(&devices)?;
            } else {
                for d in devices {
                    let seen = match (d.online, d.last_seen_ms) {
                        (true, _) => "online now".to_owned(),
                        (false, Some(ms)) => format!("last seen {}", clock(ms)),
                        (false, None) => "not seen online from this device".to_owned(),
                    };
                    let me = match (d.this_device, d.primary) {
                        (true, true) => "  (this device, primary)",
                        (true, false) => "  (this device)",
                        (false, true) => "  (primary)",
                        (false, false) => "",
                    };
                    let relinked = match d.relinked_ms {
                        Some(ms) => {
                            format!("  re-linked {}", clock(i64::try_from(ms).unwrap_or(0)))
                        }
                        None => String::new(),
                    };
                    println!(
                        "{:<20} {}  added {}{relinked}  {seen}{me}",
                        printable(&d.name),
                        d.id,
                        clock(i64::try_from(d.added_ms).unwrap_or(0))
                    );
                }
            }
            Ok(())
        }
        Command::Accept { code, name } => {
            let device = open(&cli).await?;
            let code = if code == "-" {
                read_stdin()?
            } else {
                code.clone()
            };
            if code.trim_start().starts_with("chorus-link:") {
                return Err(Failure::new(
                    exit::INVALID,
                    "this is a link code, for a device of yours: run `chorus link approve CODE` on a device that already holds your identity",
                ));
            }
            let (contact, outcome) = device.accept(&code, name.as_deref()).await?;
            println!(
                "Added contact {contact:?}; compare safety numbers with `chorus verify {}`.",
                quoted(&contact)
            );
            report_queued(outcome)
        }
        Command::Contact {
            command: ContactCommand::Add { address, name },
        } => {
            let device = open(&cli).await?;
            let (contact, outcome) = device.add_contact(address, name.as_deref()).await?;
            println!(
                "Added contact {contact:?}; compare safety numbers with `chorus verify {}`.",
                quoted(&contact)
            );
            report_queued(outcome)
        }
        Command::Contact {
            command: ContactCommand::Rename { name, new_name },
        } => {
            let device = open(&cli).await?;
            let (from, to) = device.rename_contact(name, new_name).await?;
            match from == to {
                true => println!("{:?} is already called so.", printable(&to)),
                false => println!(
                    "Renamed {:?} to {:?} on all your devices.",
                    printable(&from),
                    printable(&to)
                ),
            }
            Ok(())
        }
        Command::Contact {
            command: ContactCommand::Timer { name, duration },
        } => {
            let device = open(&cli).await?;
            match duration {
                None => {
                    device.sync_log().await?;
                    let (name, timer) = device.timer(name).await?;
                    match timer.filter(|t| t.secs > 0) {
                        Some(t) => println!(
                            "Messages with {:?} disappear {} after they are sent.",
                            printable(&name),
                            duration_text(t.secs)
                        ),
                        None => println!("Messages with {:?} do not disappear.", printable(&name)),
                    }
                }
                Some(secs) => {
                    let (name, _) = device.set_timer(name, *secs).await?;
                    match secs {
                        0 => println!(
                            "Messages with {:?} no longer disappear, on all your devices; they are told with your next message.",
                            printable(&name)
                        ),
                        s => println!(
                            "Messages with {:?} now disappear {} after they are sent, on all your devices and theirs (told with your next message).",
                            printable(&name),
                            duration_text(*s)
                        ),
                    }
                }
            }
            Ok(())
        }
        Command::Contact {
            command: ContactCommand::Remove { name, yes },
        } => {
            let device = open(&cli).await?;
            let contact = device.resolve_contact(name).await?;
            if !ask(
                &format!(
                    "Remove {:?} and your whole conversation with them from all your devices?",
                    printable(&contact)
                ),
                *yes,
                "stdin is not a terminal: run the command again with --yes",
            )? {
                return Err(Failure::new(exit::CONFLICT, "not removed"));
            }
            let removed = device.remove_contact(&contact).await?;
            println!(
                "Removed {:?} and the conversation from all your devices. To talk again, exchange a new invitation.",
                printable(&removed)
            );
            Ok(())
        }
        Command::Contact {
            command: ContactCommand::Block { name } | ContactCommand::Unblock { name },
        } => {
            let block = matches!(
                cli.command,
                Command::Contact {
                    command: ContactCommand::Block { .. }
                }
            );
            let device = open(&cli).await?;
            let (contact, changed) = device.block_contact(name, block).await?;
            let contact = printable(&contact);
            match (block, changed) {
                (true, true) => println!(
                    "Blocked {contact:?} on all your devices: their messages are dropped until `chorus contact unblock {}`.",
                    quoted(&contact)
                ),
                (false, true) => println!(
                    "Unblocked {contact:?} on all your devices: their new messages are shown again."
                ),
                (true, false) => println!("{contact:?} is already blocked."),
                (false, false) => println!("{contact:?} is not blocked."),
            }
            Ok(())
        }
        Command::Profile { command: None } => {
            let device = open(&cli).await?;
            device.sync_log().await?;
            println!("Name: {}", printable(&device.profile_name().await?));
            Ok(())
        }
        Command::Profile {
            command: Some(ProfileCommand::Set { name }),
        } => {
            let device = open(&cli).await?;
            let (was, now) = device.set_profile_name(name).await?;
            match was == now {
                true => println!("Your name already is {:?}.", printable(&now)),
                false => println!(
                    "You are now {:?} (was {:?}) on all your devices; each contact is told with your next message to them.",
                    printable(&now),
                    printable(&was)
                ),
            }
            Ok(())
        }
        Command::Requests { command, json } => {
            let device = open(&cli).await?;
            match command {
                None => {
                    // Catch up first, so the list is current.
                    for e in device.sync().await? {
                        if let Event::Rejected { reason } = e {
                            eprintln!("warning: skipped {reason}");
                        }
                    }
                    let r = device.requests().await?;
                    if *json {
                        print_json(&r)?;
                    } else {
                        if r.pending.is_empty() {
                            println!("No message requests.");
                        }
                        for q in &r.pending {
                            println!(
                                "#{:<3} {} ({}), {} message(s):",
                                q.id,
                                printable(&q.name),
                                q.fingerprint,
                                q.messages.len()
                            );
                            for m in &q.messages {
                                println!("{}", message_lines(clock(m.sent_ms), &q.name, &m.text));
                            }
                        }
                        if r.dropped > 0 {
                            println!("{} older request(s) were dropped to make room.", r.dropped);
                        }
                        if !r.pending.is_empty() {
                            println!(
                                "Answer with `chorus requests accept N` or `chorus requests block N`."
                            );
                        }
                    }
                }
                Some(RequestsCommand::Accept { id, name }) => {
                    let contact = device.accept_request(*id, name.as_deref()).await?;
                    println!(
                        "Added contact {contact:?}; compare safety numbers with `chorus verify {}`.",
                        quoted(&contact)
                    );
                }
                Some(RequestsCommand::Block { id }) => {
                    let name = device.block_request(*id).await?;
                    println!("Blocked {:?} on all your devices.", printable(&name));
                }
            }
            Ok(())
        }
        Command::Contacts { json } => {
            let device = open(&cli).await?;
            let contacts = device.contacts().await?;
            if *json {
                print_json(&contacts)?;
            } else if contacts.is_empty() {
                println!("No contacts yet: `chorus invite` or `chorus contact add ADDRESS`.");
            } else {
                for c in contacts {
                    let state = match (&c.failed, c.connected, c.unread) {
                        _ if c.compromised => {
                            "  (COMPROMISED: compare safety numbers, `chorus verify`)".to_owned()
                        }
                        (Some(why), _, _) => format!("  (failed: {why})"),
                        (None, false, _) => "  (waiting for reply)".to_owned(),
                        (None, true, 0) => String::new(),
                        (None, true, n) => format!("  ({n} unread)"),
                    };
                    let blocked = match c.blocked {
                        true => "  (BLOCKED: their messages are dropped)",
                        false => "",
                    };
                    let verified = match c.verified {
                        true => "  (verified)",
                        false => "",
                    };
                    let disappearing = match c.disappearing_secs {
                        0 => String::new(),
                        s => format!("  (disappearing: {})", duration_text(s)),
                    };
                    println!(
                        "{:<20} {}  {}{state}{blocked}{verified}{disappearing}",
                        c.name, c.fingerprint, c.relay_url
                    );
                }
            }
            Ok(())
        }
        Command::Send {
            contact,
            text,
            file: None,
        } => {
            let device = open(&cli).await?;
            let text = match text {
                Some(t) => t.clone(),
                None => read_stdin()?,
            };
            let outcome = device.send(contact, &text).await?;
            report_queued(outcome)
        }
        Command::Send {
            contact,
            text,
            file: Some(path),
        } => {
            let device = open(&cli).await?;
            let bar = transfer_bar("sending");
            let outcome = device
                .send_file(
                    contact,
                    path,
                    text.as_deref().unwrap_or(""),
                    &mut |done, all| show_transfer(&bar, done, all),
                )
                .await;
            bar.finish_and_clear();
            report_queued(outcome?)
        }
        Command::Files { json } => {
            let device = open(&cli).await?;
            let files = device.files().await?;
            if *json {
                return print_json(&files);
            }
            if files.is_empty() {
                println!("No files yet. Send one with `chorus send CONTACT --file PATH`.");
            }
            for f in &files {
                let who = match f.outgoing {
                    true => format!("to {}", f.contact),
                    false => format!("from {}", f.contact),
                };
                println!(
                    "{}  {}  {}  {}  {}{}",
                    f.file.id,
                    when(f.sent_ms, chat::now_ms(), false),
                    printable(&who),
                    printable(&f.file.name),
                    indicatif::HumanBytes(f.file.size),
                    expiry_note(f.file.expires_ms),
                );
            }
            Ok(())
        }
        Command::Save { id, path } => {
            let device = open(&cli).await?;
            let bar = transfer_bar("fetching");
            let dest = path.clone().unwrap_or_else(|| PathBuf::from("."));
            let saved = device
                .save_file(id, &dest, &mut |done, all| show_transfer(&bar, done, all))
                .await;
            bar.finish_and_clear();
            println!("Saved {}", quoted(&saved?.display().to_string()));
            Ok(())
        }
        Command::History {
            contact,
            limit,
            json,
        } => {
            let device = open(&cli).await?;
            let messages = device.history(contact, *limit).await?;
            // Shown is read, on every device (offline, it stays unread for now).
            if let Err(e) = device.mark_read(contact).await {
                eprintln!("note: not marked as read on your other devices: {e}");
            }
            if *json {
                print_json(&messages)?;
            } else {
                for m in &messages {
                    print_message(m, &device.name(), false);
                }
            }
            Ok(())
        }
        Command::Sync { json, compact } => {
            let device = open(&cli).await?;
            let events = device.sync().await?;
            for e in &events {
                print_event(e, *json, &device.name())?;
            }
            if events.is_empty() && !json {
                println!("No new messages.");
            }
            if *compact {
                let first = device.compact_log().await?;
                match json {
                    true => println!("{}", serde_json::json!({ "log_kept_from_seq": first })),
                    false => println!(
                        "log compacted: the relay keeps records from seq {first} (a device that has not caught up holds the rest)"
                    ),
                }
            }
            Ok(())
        }
        Command::Watch { count, json } => {
            let device = open(&cli).await?;
            let mut seen = 0u64;
            let mut failure = None;
            let mut last_problem: Option<String> = None;
            device
                .watch(
                    |e| {
                        if let Err(f) = print_event(e, *json, &device.name()) {
                            failure = Some(f);
                            return false;
                        }
                        if matches!(e, Event::Message(_)) {
                            seen += 1;
                        }
                        count.is_none_or(|c| seen < c)
                    },
                    // One line per new problem, not one per retry; one when it heals.
                    |link| match link {
                        Err(e) => {
                            let e = e.to_string();
                            if last_problem.as_deref() != Some(e.as_str()) {
                                eprintln!("warning: {e}; retrying");
                            }
                            last_problem = Some(e);
                        }
                        Ok(()) => {
                            if last_problem.take().is_some() {
                                eprintln!("reconnected to the relay; caught up");
                            }
                        }
                    },
                )
                .await?;
            failure.map_or(Ok(()), Err)
        }
        Command::Status { json } => {
            let device = open(&cli).await?;
            let s = device.status().await?;
            if *json {
                print_json(&s)?;
            } else {
                println!("Identity:  {}", s.name);
                println!("Address:   {}", s.address);
                match &s.relay_error {
                    None => println!("Relay:     {} (reachable)", s.relay_url),
                    Some(e) => println!("Relay:     {} (UNREACHABLE: {e})", s.relay_url),
                }
                println!(
                    "Security:  {}{}",
                    s.security,
                    if s.holds_root {
                        " (this device holds the root key)"
                    } else {
                        " (the root key is on the primary device)"
                    }
                );
                println!(
                    "Recovery:  {}",
                    if s.recovery_code {
                        "a recovery code is set (`chorus recover` on a new device)"
                    } else {
                        "no recovery code (`chorus security recovery-code` on the primary)"
                    }
                );
                println!("Outbox:    {} pending", s.outbox);
                for p in &s.outbox_failing {
                    println!(
                        "  to {} via {}: {} failed tries, last: {}; next try at {}",
                        p.contact,
                        p.relay_url,
                        p.attempts,
                        p.error,
                        clock(p.next_attempt_ms)
                    );
                }
                if s.requests > 0 {
                    println!("Requests:  {} waiting (`chorus requests`)", s.requests);
                }
                println!(
                    "Prekeys:   {} signed, {} one-time, {} post-quantum held; {} one-time in the directory",
                    s.prekeys.signed,
                    s.prekeys.one_time,
                    s.prekeys.pq,
                    s.directory_one_time
                        .map_or_else(|| "?".to_owned(), |n| n.to_string())
                );
                println!("Mailboxes:");
                for m in &s.mailboxes {
                    println!(
                        "  {:<10} {:<20} read up to {}",
                        m.kind,
                        m.contact.as_deref().unwrap_or("-"),
                        m.after_seq
                    );
                }
            }
            Ok(())
        }
        Command::Verify {
            contact,
            mark,
            unmark,
            json,
        } => {
            let device = open(&cli).await?;
            if *mark || *unmark {
                let (name, changed) = device.mark_verified(contact, *mark).await?;
                let what = if *mark { "verified" } else { "not verified" };
                match changed {
                    true => eprintln!("{name} is now marked {what} on all your devices."),
                    false => eprintln!("{name} was already marked {what}."),
                }
            }
            let v = device.verify(contact).await?;
            if *json {
                return print_json(&serde_json::json!({
                    "ours": v.ours.to_string(),
                    "theirs": v.theirs.to_string(),
                    "safety_number": v.safety_number.to_string(),
                    "rival_safety_number": v.rival.as_ref().map(ToString::to_string),
                    "verified": v.verified,
                }));
            }
            println!("{:<10} {}", device.name(), v.ours);
            println!("{:<10} {}", contact, v.theirs);
            println!();
            println!("Safety number (the same on both sides):");
            println!("{}", v.safety_number);
            println!();
            match v.verified {
                true => println!("Marked verified: you compared it with {contact}."),
                false => println!(
                    "Compare it with {contact} in person or over a call you trust, then `chorus verify {} --mark`.",
                    quoted(contact)
                ),
            }
            if let Some(rival) = v.rival {
                println!();
                println!(
                    "WARNING: {contact}'s previous key signed two different new keys: one of them is not {contact}'s (a device of theirs was stolen with the key)."
                );
                println!("The other key's safety number:");
                println!("{rival}");
                println!(
                    "If neither matches what {contact} reads to you, stop writing to them here and exchange a new invitation in person."
                );
            }
            Ok(())
        }
        Command::Completions { shell, .. } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "chorus",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Demo { .. } => demo::run().await,
        Command::Chat { contact } => {
            let device = open(&cli).await?;
            chat::run(&device, contact.clone()).await
        }
    }
}

/// A code as a terminal QR, two modules per character cell, with a quiet zone of two
/// modules (scanners read that from a screen; the standard four would cost an 80×24
/// terminal two lines). Level L: the most data per symbol. An invitation code is ~70
/// characters (version 4: 33 modules, 37 columns by 19 lines); one naming a relay URL
/// of up to ~50 characters is version 5 (41 × 21). A code too long for any QR gets
/// text only.
fn print_qr(code: &str) {
    match qr_text(code) {
        Ok(image) => println!("{image}"),
        Err(e) => eprintln!("note: no QR for this code ({e}); use the text"),
    }
}

fn qr_text(code: &str) -> Result<String, qrcode::types::QrError> {
    let qr = qrcode::QrCode::with_error_correction_level(code.as_bytes(), qrcode::EcLevel::L)?;
    let image = qr
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(false)
        .build();
    // Light modules are spaces: two modules of them on each side, one line (two
    // modules) above and below.
    let width = image.lines().map(|l| l.chars().count()).max().unwrap_or(0) + 4;
    let blank = " ".repeat(width);
    let body = image.lines().map(|l| format!("  {l}  "));
    Ok(std::iter::once(blank.clone())
        .chain(body)
        .chain(std::iter::once(blank))
        .collect::<Vec<_>>()
        .join("\n"))
}

fn report_queued(outcome: chorus_client::SendOutcome) -> Result<(), Failure> {
    if let Some(device) = &outcome.forwarded_to {
        println!(
            "Handed to {device:?}, which sends for this identity; it is sent when that device syncs."
        );
    }
    match outcome.queued {
        None => Ok(()),
        Some(e) => Err(Failure::new(
            exit::RELAY,
            format!(
                "{e}; the message is saved and will be delivered by the next send, sync or watch"
            ),
        )),
    }
}

fn read_stdin() -> Result<String, Failure> {
    let mut s = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut s)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => {
                Failure::new(exit::INVALID, "stdin is not UTF-8 text")
            }
            _ => Failure::usage(format!("cannot read stdin: {e}")),
        })?;
    Ok(s.trim_end_matches(['\n', '\r']).to_owned())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(exit::INTERNAL, e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn print_event(e: &Event, json: bool, me: &str) -> Result<(), Failure> {
    if json {
        let s =
            serde_json::to_string(e).map_err(|e| Failure::new(exit::INTERNAL, e.to_string()))?;
        println!("{s}");
    } else {
        match e {
            Event::ContactAdded { contact } => println!("* new contact {contact:?}"),
            Event::DeviceLinked { name, by } => println!(
                "* new device {:?} linked to your identity by {:?} (see `chorus devices`)",
                printable(name),
                printable(by)
            ),
            Event::DeviceRevoked {
                name,
                by,
                this_device: false,
            } => println!(
                "* device {:?} was revoked by {:?}",
                printable(name),
                printable(by)
            ),
            Event::DeviceRevoked {
                by,
                this_device: true,
                ..
            } => println!(
                "* this device was revoked by {:?}: it is no longer part of the identity",
                printable(by)
            ),
            Event::DeviceRelinked { name, by } => println!(
                "* device {:?} was linked again by {:?} (see `chorus devices`)",
                printable(name),
                printable(by)
            ),
            Event::SecurityChanged {
                primary_root,
                this_device_holds_root,
            } => println!(
                "* the identity is {} now; this device {} the root key",
                if *primary_root {
                    "primary-root"
                } else {
                    "shared-root"
                },
                if *this_device_holds_root {
                    "holds"
                } else {
                    "no longer holds"
                }
            ),
            Event::IdentityRolled {
                fingerprint,
                this_device_holds_root,
            } => println!(
                "* the identity rolled its root key: new fingerprint {fingerprint}{}",
                if *this_device_holds_root {
                    ""
                } else {
                    " (held by the primary)"
                }
            ),
            Event::ContactRolled {
                contact,
                safety_number,
            } => {
                println!(
                    "* {:?} rolled their identity key (signed by their previous key). New safety number:",
                    printable(contact)
                );
                println!("  {safety_number}");
            }
            Event::TimerChanged { contact, secs, .. } => match secs {
                0 => println!("* {} turned disappearing messages off", printable(contact)),
                s => println!(
                    "* {} set disappearing messages: {} after they are sent",
                    printable(contact),
                    duration_text(*s)
                ),
            },
            Event::ContactRemoved { contact } => println!(
                "* contact {:?} was removed, with the conversation, on all your devices",
                printable(contact)
            ),
            Event::ContactRenamed { contact, was, now } => match contact == now {
                true => println!("* {} is now {}", printable(was), printable(now)),
                false => println!(
                    "* {} is now {} (you call them {})",
                    printable(was),
                    printable(now),
                    printable(contact)
                ),
            },
            Event::ContactCompromised { contact } => println!(
                "* WARNING: {:?}'s previous key signed two different new keys: one is not theirs. Compare safety numbers again: `chorus verify {}`",
                printable(contact),
                quoted(&printable(contact))
            ),
            Event::Message(m) if m.read && !m.outgoing => {
                print_message(m, me, true);
                println!("  (already read on another of your devices)");
            }
            Event::Message(m) => print_message(m, me, true),
            Event::SessionReset { contact } => println!(
                "* {:?} started a new session (reinstalled, restored a backup, or wrote to you at the same time); the conversation goes on in it",
                printable(contact)
            ),
            Event::Request {
                request,
                name,
                text,
            } => {
                println!(
                    "* message request #{request} from {:?} (not a contact; `chorus requests` to answer):",
                    printable(name)
                );
                println!("{}", message_lines("        ".into(), name, text));
            }
            Event::Rejected { reason } => eprintln!("warning: skipped {reason}"),
        }
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// One message; `to` names the contact on ours ("alice → bob"), where the conversation
/// is not otherwise clear (`sync`, `watch`).
fn print_message(m: &Message, me: &str, to: bool) {
    let who = match (m.outgoing, to) {
        (true, true) => format!("{me} → {}", m.contact),
        (true, false) => me.to_owned(),
        (false, _) => m.contact.clone(),
    };
    let lines = message_lines(clock(m.sent_ms), &who, &shown_text(m));
    match delivery_note(m) {
        Some(note) => println!("{lines}\n  ({note})"),
        None => println!("{lines}"),
    }
}

/// A progress bar for a file on its way (drawn only on a terminal).
fn transfer_bar(what: &str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(0)
        .with_style(
            indicatif::ProgressStyle::with_template(
                "{msg:9} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        )
        .with_message(what.to_owned())
}

fn show_transfer(bar: &indicatif::ProgressBar, done: u64, all: u64) {
    bar.set_length(all);
    bar.set_position(done);
}

/// "  (expired)" or "  (until DATE)": how long a file can still be fetched.
fn expiry_note(expires_ms: u64) -> String {
    let expires_ms = i64::try_from(expires_ms).unwrap_or(i64::MAX);
    let now = chat::now_ms();
    match expires_ms <= now {
        true => "  (expired)".into(),
        false => format!("  (until {})", when(expires_ms, now, false)),
    }
}

/// A message's text as shown: a file it carries first (its name, size and how to
/// fetch it), then the text.
pub(crate) fn shown_text(m: &Message) -> String {
    match &m.file {
        None => m.text.clone(),
        Some(f) => {
            let line = format!(
                "[file] {} ({}) · chorus save {}",
                f.name,
                indicatif::HumanBytes(f.size),
                f.id
            );
            match m.text.is_empty() {
                true => line,
                false => format!("{line}\n{}", m.text),
            }
        }
    }
}

/// What to say of an outgoing message that has not reached the contact's relay.
pub(crate) fn delivery_note(m: &Message) -> Option<String> {
    match &m.delivery {
        Some(Delivery::Pending) => Some("not sent yet".into()),
        Some(Delivery::Sending) => Some("sending".into()),
        Some(Delivery::Failed { reason }) => Some(format!(
            "not delivered yet: {}; retrying",
            printable(reason)
        )),
        Some(Delivery::Sent) | None => None,
    }
}

/// One message as terminal lines: `[time] who: first line`, then every further line of
/// the text behind a `  │ ` margin. A line of a message can never start like a message
/// of its own, so a sender cannot forge lines from someone else.
fn message_lines(time: String, who: &str, text: &str) -> String {
    let mut lines = printable(text)
        .split('\n')
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter();
    let mut out = format!(
        "[{time}] {}: {}",
        printable(who),
        lines.next().unwrap_or_default()
    );
    for line in lines {
        out.push_str("\n  │ ");
        out.push_str(&line);
    }
    out
}

/// Message text as it may reach a terminal: a contact controls these bytes, so control
/// characters (escape sequences that could rewrite the screen or the title) and
/// invisible or text-direction characters (which could make the text pass for
/// someone else's) become U+FFFD; newlines and tabs stay. `--json` output is escaped by the encoder instead.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (c.is_control() && c != '\n' && c != '\t') || chorus_wire::is_invisible(c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// `contact timer`'s duration: a number and a unit (s, m, h, d, w), or `off` (0).
pub(crate) fn parse_timer(given: &str) -> Result<u64, String> {
    if given == "off" {
        return Ok(0);
    }
    let split = given
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{given:?}: give a unit, e.g. 30s, 5m, 1h, 1d, 1w, or off"))?;
    let (n, unit) = given.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{given:?}: expected a number and a unit, e.g. 1d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{given:?}: the unit is s, m, h, d or w")),
    };
    let secs = n.saturating_mul(unit);
    if secs == 0 || secs > chorus_wire::limits::MAX_TIMER_SECS {
        return Err(format!("{given:?}: from 1s to 4w (or off)"));
    }
    Ok(secs)
}

/// A timer for people: the largest unit that divides it.
pub(crate) fn duration_text(secs: u64) -> String {
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// This machine's host name, as a device's default name ("device" if it has none that
/// is text).
fn host_name() -> String {
    let name = gethostname::gethostname();
    match name.to_str().map(str::trim) {
        Some(n) if !n.is_empty() => n.chars().take(64).collect(),
        _ => "device".to_owned(),
    }
}

/// A name as it can be pasted into a shell command: in double quotes when it holds
/// anything but letters, digits and `-_.@` (a space, a quote, a `$`).
pub(crate) fn quoted(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return name.to_owned();
    }
    let escaped: String = name
        .chars()
        .flat_map(|c| match c {
            '"' | '\\' | '$' | '`' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

/// `HH:MM:SS` (UTC) of a millisecond timestamp, with the date before it when it is not
/// today.
fn clock(ms: i64) -> String {
    when(ms, chat::now_ms(), true)
}

/// A millisecond timestamp as the time of day (UTC; `HH:MM:SS`, or `HH:MM` without
/// `seconds`), with the date before it when it is not the day of `now_ms`.
pub(crate) fn when(ms: i64, now_ms: i64, seconds: bool) -> String {
    const DAY_MS: i64 = 86_400_000;
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    let time = match seconds {
        true => format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60),
        false => format!("{:02}:{:02}", s / 3600, (s / 60) % 60),
    };
    let day = ms.div_euclid(DAY_MS);
    if day == now_ms.div_euclid(DAY_MS) {
        return time;
    }
    // Day 0 of the Unix epoch is Julian day 2,440,588.
    match i32::try_from(day + 2_440_588).map(time::Date::from_julian_day) {
        Ok(Ok(date)) => format!("{date} {time}"),
        _ => time,
    }
}

/// Asks `question` on the terminal; `yes` (`--yes`) answers for the user. Without a
/// terminal (a script) nothing is asked: the answer must be given with `--yes`, and
/// `without_terminal` says how.
fn ask(question: &str, yes: bool, without_terminal: &str) -> Result<bool, Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(exit::CONFLICT, without_terminal.to_owned()));
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::usage(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invitation_code_and_its_qr_fit_an_80_by_24_terminal() {
        let secret = chorus_crypto::InvitationSecret::from_bytes(&[9; 16]);
        // A relay URL of 50 characters: the longest the docs say fits.
        let url = format!("https://{}.example.org", "relay".repeat(6));
        assert_eq!(url.len(), 50);
        let code = chorus_client::code::encode_short(&url, &secret);
        assert!(code.len() < 150, "{} characters", code.len());
        let qr = qr_text(&code).unwrap();
        let width = qr.lines().map(|l| l.chars().count()).max().unwrap();
        // The QR, the line above the code and the code itself (wrapped at 80).
        let height = qr.lines().count() + 1 + code.len().div_ceil(80);
        assert!(width <= 80 && height <= 24, "{width}×{height}");
        // With a usual relay URL: what the README says (~70 characters, 37 × 19).
        let code = chorus_client::code::encode_short("https://relay.example.org", &secret);
        let qr = qr_text(&code).unwrap();
        let width = qr.lines().map(|l| l.chars().count()).max().unwrap();
        assert_eq!((code.len(), width, qr.lines().count()), (69, 37, 19));
    }

    #[test]
    fn control_characters_from_a_contact_never_reach_the_terminal() {
        assert_eq!(
            printable("hi\u{1b}]0;pwned\u{7}\r!"),
            "hi\u{fffd}]0;pwned\u{fffd}\u{fffd}!"
        );
        assert_eq!(printable("line one\n\tline two"), "line one\n\tline two");
        assert_eq!(printable("\u{9b}31m"), "\u{fffd}31m"); // C1 CSI
    }

    #[test]
    fn a_multi_line_message_cannot_forge_a_line_from_someone_else() {
        let shown = message_lines(
            "14:00:00".into(),
            "mallory",
            "line one\n[15:00:00] bob: forged line\r\n\u{202e}evil",
        );
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "[14:00:00] mallory: line one");
        // Every continuation line is marked as part of mallory's message.
        assert!(lines[1..].iter().all(|l| l.starts_with("  │ ")), "{shown}");
        assert_eq!(lines[1], "  │ [15:00:00] bob: forged line\u{fffd}");
        assert!(!shown.lines().skip(1).any(|l| l.starts_with('[')));
    }

    #[test]
    fn timers_are_a_number_and_a_unit_within_four_weeks() {
        assert_eq!(parse_timer("30s"), Ok(30));
        assert_eq!(parse_timer("1d"), Ok(86_400));
        assert_eq!(parse_timer("4w"), Ok(28 * 86_400));
        assert_eq!(parse_timer("off"), Ok(0));
        for bad in [
            "",
            "1",
            "d",
            "0s",
            "5w",
            "1y",
            "-1d",
            "1.5h",
            "99999999999999999999s",
        ] {
            assert!(parse_timer(bad).is_err(), "{bad}");
        }
        assert_eq!(duration_text(86_400), "1d");
        assert_eq!(duration_text(90), "90s");
        assert_eq!(duration_text(7 * 86_400), "1w");
    }

    #[test]
    fn names_in_hints_can_be_pasted_into_a_shell() {
        assert_eq!(quoted("bob"), "bob");
        assert_eq!(quoted("Carol Smith"), "\"Carol Smith\"");
        assert_eq!(quoted("a\"b$c"), "\"a\\\"b\\$c\"");
        assert_eq!(quoted(""), "\"\"");
    }

    #[test]
    fn times_are_utc_with_the_date_when_not_today() {
        assert_eq!(when(0, 0, true), "00:00:00");
        assert_eq!(when(86_399_999, 0, true), "23:59:59");
        assert_eq!(when(86_399_999, 0, false), "23:59");
        assert_eq!(when(1_800_000_000_000, 1_800_000_000_000, true), "08:00:00");
        assert_eq!(when(1_800_000_000_000, 0, true), "2027-01-15 08:00:00");
        assert_eq!(when(86_400_000, 0, false), "1970-01-02 00:00");
    }
}
