//! `chorus recover` and the recovery code `init --security primary-root` shows: thin
//! glue over `chorus_client::device::recovery`.

use chorus_client::Device;
use chorus_client::device::recovery::{MAX_RECOVERY_CODE_LEN, recover};
use chorus_client::link::CatchUp;

use crate::exit::Failure;
use crate::{Cli, cli_options, print_qr, printable, unlock};

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
    // Read straight into a buffer that is wiped: the code is the identity.
    let mut code = zeroize::Zeroizing::new(String::new());
    std::io::Read::read_to_string(
        &mut std::io::Read::take(std::io::stdin(), MAX_RECOVERY_CODE_LEN as u64 + 2),
        &mut code,
    )
    .map_err(|e| Failure::usage(format!("cannot read the recovery code from stdin: {e}")))?;
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
