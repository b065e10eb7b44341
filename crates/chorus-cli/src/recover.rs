//! `chorus recover` and the recovery code `init --security primary-root` shows: thin
//! glue over `chorus_client::device::recovery`.

use chorus_client::Device;
use chorus_client::device::recovery::recover;
use chorus_client::link::CatchUp;

use crate::exit::Failure;
use crate::{Cli, cli_options, print_qr, printable, read_stdin, unlock};

/// Shows a new recovery code once, with its QR.
pub(crate) async fn show_new_code(device: &Device, no_qr: bool) -> Result<(), Failure> {
    let code = device.set_up_recovery().await?;
    if !no_qr {
        print_qr(&code);
    }
    println!("Recovery code (shown once; write it down and keep it apart from your devices):");
    println!("  {}", &*code);
    println!(
        "If this device is lost, `chorus recover` on a new device with this code makes it \
         your primary. Whoever has the code can become you; a new code (`chorus security \
         recovery-code`) replaces it."
    );
    Ok(())
}

/// Reads the code from stdin and becomes the identity in this home.
pub(crate) async fn run(cli: &Cli, relay: &str, device_name: &str) -> Result<(), Failure> {
    let home = crate::home(cli)?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("Type the recovery code, then Enter and Ctrl-D:");
    }
    let code = zeroize::Zeroizing::new(read_stdin()?);
    let bar = crate::link::catch_up_bar();
    let recovered = recover(
        &home,
        unlock(cli, true)?,
        relay,
        &code,
        device_name,
        cli_options(cli),
        |p: CatchUp| crate::link::show(&bar, p),
    )
    .await;
    bar.finish_and_clear();
    let recovered = recovered?;
    println!(
        "Recovered {:?}: this device is its primary now (safety number {}).",
        recovered.device.name(),
        recovered.device.fingerprint()
    );
    if let Some(r) = recovered.revoked {
        println!(
            "Revoked the lost primary {:?} ({}): it no longer sends or reads anything new.",
            printable(&r.name),
            r.id
        );
    }
    Ok(())
}
