//! `chorus link new` and `chorus link approve`: prompts, spinner and progress bar around
//! [`chorus_client::link`].

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use chorus_client::link::{CatchUp, LINK_TIMEOUT, LinkOffer, Stage};
use chorus_client::{ClientError, Device};
use indicatif::{ProgressBar, ProgressStyle};

use crate::exit::Failure;
use crate::{Cli, cli_options, home, print_qr, printable, unlock};

/// Why a comparison could not be asked, and what to do instead.
const NO_TERMINAL: &str = "cannot ask you to compare the numbers: stdin is not a terminal";

/// On the new device: asks the user whether both screens show `sas`; `--yes` answers
/// for them (the approving device still needs its user to type the number).
fn confirm(sas: &str, yes: bool) -> Result<bool, Failure> {
    println!();
    println!("  {sas}");
    println!();
    if yes {
        println!("Confirmed with --yes.");
    }
    crate::ask(
        "Does the other screen show exactly this number?",
        yes,
        &format!(
            "{NO_TERMINAL}; compare them on both screens yourself and run `chorus link new` again with --yes"
        ),
    )
}

/// On the approving device: the user types the number the new device shows (read
/// from stdin: a terminal, or a pipe for scripts). There is no "yes" here — approving
/// is giving away the identity's keys, and only the typed digits prove the screens
/// were compared. `Ok(false)`: the digits differ.
fn typed_sas(sas: &str) -> Result<bool, Failure> {
    if std::io::stdin().is_terminal() {
        print!("Type the number the new device shows: ");
        let _ = std::io::stdout().flush();
    } else {
        println!("Reading the number the new device shows from stdin…");
    }
    let mut typed = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut typed)
        .map_err(|e| Failure::usage(format!("cannot read the number: {e}")))?;
    if read == 0 {
        return Err(Failure::new(
            crate::exit::CONFLICT,
            format!(
                "{NO_TERMINAL} and stdin is closed; run `chorus link approve` in a terminal, or pipe in the digits the new device shows"
            ),
        ));
    }
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    Ok(!digits(&typed).is_empty() && digits(&typed) == digits(sas))
}

/// The bar a new device shows while it catches up.
pub(crate) fn catch_up_bar() -> ProgressBar {
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg:10} {bar:30} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// Shows `p` on `bar`: history chunks first, then log records.
pub(crate) fn show(bar: &ProgressBar, p: CatchUp) {
    bar.set_message(match p.stage {
        Stage::History => "history",
        Stage::Log => "log",
    });
    bar.set_length(p.total);
    bar.set_position(p.done);
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub(crate) async fn new(
    cli: &Cli,
    relay: &str,
    name: &str,
    no_qr: bool,
    yes: bool,
    no_history: bool,
) -> Result<(), Failure> {
    let home = home(cli)?;
    if Device::exists(&home) {
        return Err(ClientError::AlreadyInitialized(home).into());
    }
    let unlock = unlock(cli, !Device::link_unfinished(&home))?;
    let mut offer = LinkOffer::new(&home, unlock, relay, name, &cli_options(cli)).await?;
    if no_history {
        offer = offer.without_history();
    }
    if offer.resumed() {
        println!(
            "Resuming the unfinished link of this device ({:?}).",
            printable(offer.device_name())
        );
    }
    let code = offer.code();
    if !no_qr {
        print_qr(&code);
    }
    println!("On a device of your identity, run:");
    println!("  chorus link approve {code}");
    let wait = spinner("waiting for the approving device (10 minutes)…");
    let pending = offer.wait_for_approver(LINK_TIMEOUT).await;
    wait.finish_and_clear();
    let pending = pending?;
    println!("Compare this number with the one on the approving device:");
    let confirmed = confirm(&pending.sas().to_string(), yes);
    if !matches!(confirmed, Ok(true)) {
        // Whatever the reason, the approving device learns it and authorizes nothing.
        let _ = pending.decline().await;
        confirmed?;
        return Err(ClientError::LinkCancelled.into());
    }
    let pending = pending.confirm().await?;
    let bar = catch_up_bar();
    let device = pending
        .finish(cli_options(cli), LINK_TIMEOUT, |p: CatchUp| show(&bar, p))
        .await;
    bar.finish_and_clear();
    let device = device?;
    println!(
        "Linked: this device is now {:?} (safety number {}).",
        device.name(),
        device.fingerprint()
    );
    Ok(())
}

pub(crate) async fn approve(device: &Device, code: &str) -> Result<(), Failure> {
    let wait = spinner("exchanging keys with the new device…");
    let approval = device.approve_link(code).await;
    wait.finish_and_clear();
    let approval = approval?;
    println!(
        "Device {:?} asks to join this identity. It shows a 9-digit number.",
        printable(approval.device_name())
    );
    let typed = typed_sas(&approval.sas().to_string());
    if !matches!(typed, Ok(true)) {
        let _ = approval.decline().await;
        typed?;
        return Err(Failure::new(
            crate::exit::CONFLICT,
            "the number typed is not the one this device computed: someone else may be on the link; nothing was approved (run `chorus link new` again on the new device)",
        ));
    }
    let wait = spinner("waiting for the new device's user to confirm…");
    let confirmed = approval.confirm().await;
    wait.finish_and_clear();
    confirmed?;
    println!("Approved. The new device is catching up.");
    Ok(())
}
