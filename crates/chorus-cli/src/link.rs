//! `chorus link new` and `chorus link approve`: prompts, spinner and progress bar around
//! [`chorus_client::link`].

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use chorus_client::link::{CatchUp, LINK_TIMEOUT, LinkOffer};
use chorus_client::{ClientError, Device};
use indicatif::{ProgressBar, ProgressStyle};

use crate::exit::Failure;
use crate::{Cli, cli_options, home, print_qr, printable, unlock};

/// Asks the user to compare the SAS; `--yes` answers for them.
fn confirm(sas: &str, yes: bool) -> Result<(), Failure> {
    println!();
    println!("  {sas}");
    println!();
    if yes {
        println!("Confirmed with --yes.");
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::LinkCancelled.into());
    }
    print!("Does the other screen show exactly this number? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::usage(format!("cannot read the answer: {e}")))?;
    match answer.trim() {
        "y" | "Y" | "yes" => Ok(()),
        _ => Err(ClientError::LinkCancelled.into()),
    }
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
) -> Result<(), Failure> {
    let home = home(cli)?;
    if Device::exists(&home) {
        return Err(ClientError::AlreadyInitialized(home).into());
    }
    let unlock = unlock(cli, !Device::link_unfinished(&home))?;
    let offer = LinkOffer::new(&home, unlock, relay, name, &cli_options(cli)).await?;
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
    confirm(&pending.sas().to_string(), yes)?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("catching up {bar:30} {pos}/{len} records")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let device = pending
        .finish(cli_options(cli), LINK_TIMEOUT, |p: CatchUp| {
            bar.set_length(p.total);
            bar.set_position(p.done);
        })
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

pub(crate) async fn approve(device: &Device, code: &str, yes: bool) -> Result<(), Failure> {
    let wait = spinner("exchanging keys with the new device…");
    let approval = device.approve_link(code).await;
    wait.finish_and_clear();
    let approval = approval?;
    println!(
        "Device {:?} asks to join. Compare this number with the one on its screen:",
        printable(approval.device_name())
    );
    confirm(&approval.sas().to_string(), yes)?;
    approval.confirm().await?;
    println!("Approved. The new device is catching up.");
    Ok(())
}
