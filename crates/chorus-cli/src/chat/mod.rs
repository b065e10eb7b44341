//! `chorus chat`: a terminal chat screen over one device.
//!
//! The screen never waits on the network. The parts, one per file:
//! - [`state`]: what is on screen and what a key or an update does to it — plain data,
//!   no I/O, tested without a terminal;
//! - [`view`]: draws that state with ratatui (tested on ratatui's test backend);
//! - [`worker`]: holds the device; follows the relay, does what the screen asks and
//!   sends back what changed.
//!
//! This file wires them: the terminal (raw mode, the alternate screen, bracketed paste
//! so a paste is text and never a command), a thread that reads the keyboard, and the
//! loop. The terminal is restored on every way out: a quit, Ctrl-C (a key in raw mode),
//! SIGINT or SIGTERM, an error, and a panic (ratatui's hook restores it before the
//! message is printed). Protocol decisions stay in the client and the core.

mod state;
mod view;
mod worker;

use std::io::IsTerminal;

use chorus_client::Device;
use ratatui::crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use ratatui::crossterm::execute;
use tokio::sync::mpsc;

use crate::exit::{self, Failure};
use state::{App, Update};

/// Runs the chat screen on `device` until the user quits; `open` names the
/// conversation to show first.
pub(crate) async fn run(device: &Device, open: Option<String>) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(Failure::usage(
            "`chorus chat` needs a terminal; scripts use `send`, `watch` and `history`",
        ));
    }
    let open = match open {
        Some(given) => Some(device.resolve_contact(&given).await?),
        None => None,
    };
    let (ask_tx, ask_rx) = mpsc::unbounded_channel();
    let (update_tx, mut update_rx) = mpsc::unbounded_channel::<Update>();
    let (key_tx, mut key_rx) = mpsc::unbounded_channel();

    let mut terminal = ratatui::try_init()
        .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot set up the terminal: {e}")))?;
    let _ = execute!(std::io::stdout(), EnableBracketedPaste);
    // The keyboard blocks: a thread of its own, ending when the screen is gone.
    std::thread::spawn(move || {
        while let Ok(event) = ratatui::crossterm::event::read() {
            if key_tx.send(event).is_err() {
                break;
            }
        }
    });

    let mut app = App::new(device.name(), open, now_ms());
    let stop = signalled();
    let screen = async {
        // Listening from the start: a signal between two keys is not lost.
        tokio::pin!(stop);
        // Quitting waits for what was asked before, this long at most.
        let mut deadline = None;
        loop {
            let mut max_scroll = 0;
            terminal
                .draw(|frame| max_scroll = view::draw(frame, &app))
                .map_err(|e| Failure::new(exit::INTERNAL, format!("cannot draw: {e}")))?;
            app.scroll = app.scroll.min(max_scroll);
            if app.quit {
                return Ok(());
            }
            if app.closing && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + CLOSING);
            }
            let asks = tokio::select! {
                Some(event) = key_rx.recv() => {
                    let mut asks = app.terminal(event, now_ms());
                    // Keys that came together are handled before the next draw.
                    while let Ok(event) = key_rx.try_recv() {
                        asks.extend(app.terminal(event, now_ms()));
                    }
                    asks
                }
                Some(update) = update_rx.recv() => app.update(update),
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if deadline.is_some() => return Ok(()),
            };
            for ask in asks {
                let _ = ask_tx.send(ask);
            }
        }
    };
    let result = tokio::select! {
        r = screen => r,
        () = worker::run(device, ask_rx, update_tx) => Ok(()),
    };
    let _ = execute!(std::io::stdout(), DisableBracketedPaste);
    ratatui::restore();
    if let Ok(n @ 1..) = device.unsent().await {
        eprintln!(
            "note: {n} message(s) not with the relay yet; the next `chorus chat`, `send`, `sync` or `watch` sends them"
        );
    }
    result
}

/// How long quitting waits for what was asked before (a message being sent).
const CLOSING: std::time::Duration = std::time::Duration::from_secs(10);

/// SIGINT or SIGTERM.
async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The wall clock in milliseconds (for "today" in dates and "last seen").
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
