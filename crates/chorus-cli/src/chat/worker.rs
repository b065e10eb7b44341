//! The chat's background half: everything that touches the store or the network.
//!
//! Three loops share the device, polled together (one task, no threads): the relay's
//! push channel (`Device::watch`, which also retries the outbox and reconnects), the
//! screen's asks, one at a time, and a refresh that reads what the screen shows from
//! the store — at once after anything happened, and every [`REFRESH`] for what a
//! sibling changed through the log (a read marker, a rename). A slow relay delays the
//! ask in flight, never the screen.
//!
//! What is shown is read: while a conversation is on screen and has unread messages,
//! the refresh moves the identity's read marker (`Device::mark_read`), which every
//! device folds.

use std::cell::RefCell;
use std::time::Duration;

use chorus_client::{Device, Event};
use tokio::sync::{Notify, mpsc};

use super::state::{Ask, SCROLLBACK, Update};
use crate::{printable, when};

/// How often the screen's data is read again when nothing was heard.
const REFRESH: Duration = Duration::from_secs(1);

/// Runs until `asks` closes (the screen quit).
pub(super) async fn run(
    device: &Device,
    mut asks: mpsc::UnboundedReceiver<Ask>,
    out: mpsc::UnboundedSender<Update>,
) {
    let open: RefCell<Option<String>> = RefCell::new(None);
    let dirty = Notify::new();
    let tell = |u: Update| {
        let _ = out.send(u);
    };

    let watch = async {
        let result = device
            .watch(
                |e| {
                    if let Some(n) = notice(e) {
                        tell(n);
                    }
                    dirty.notify_one();
                    true
                },
                |link| {
                    tell(Update::Link(link.map_err(ToString::to_string)));
                    dirty.notify_one();
                },
            )
            .await;
        if let Err(e) = result {
            tell(Update::Error(format!("stopped following the relay: {e}")));
        }
        std::future::pending::<()>().await;
    };

    let answer = async {
        while let Some(ask) = asks.recv().await {
            if let Ask::Open(contact) = ask {
                *open.borrow_mut() = contact;
            } else if ask == Ask::Quit {
                // Asks are answered in order: everything before this one is done.
                tell(Update::Done);
            } else {
                handle(device, ask, &tell, || dirty.notify_one()).await;
            }
            dirty.notify_one();
        }
    };

    let refresh = async {
        let mut shown = Shown::default();
        loop {
            let contact = open.borrow().clone();
            if let Err(e) = shown.refresh(device, contact, &tell).await {
                tell(Update::Error(e.to_string()));
            }
            tokio::select! {
                () = dirty.notified() => {}
                () = tokio::time::sleep(REFRESH) => {}
            }
        }
    };

    tokio::select! {
        () = answer => {}
        () = watch => {}
        () = refresh => {}
    }
}

/// What was last sent to the screen: only changes are sent again.
#[derive(Default)]
struct Shown {
    contacts: Option<Vec<chorus_client::ContactInfo>>,
    requests: Option<Vec<chorus_client::Request>>,
    history: Option<(String, Vec<chorus_client::Message>)>,
    /// The last read marker that could not be moved (not tried again until it changes).
    unmarked: Option<(String, i64)>,
}

impl Shown {
    async fn refresh(
        &mut self,
        device: &Device,
        open: Option<String>,
        tell: &impl Fn(Update),
    ) -> Result<(), chorus_client::ClientError> {
        let mut contacts = device.contacts().await?;
        if let Some(name) = &open {
            let unread = contacts
                .iter()
                .find(|c| &c.name == name)
                .map_or(0, |c| c.unread);
            if unread > 0 && self.unmarked.as_ref() != Some(&(name.clone(), unread)) {
                match device.mark_read(name).await {
                    Ok(()) => {
                        self.unmarked = None;
                        contacts = device.contacts().await?;
                    }
                    Err(e) => {
                        self.unmarked = Some((name.clone(), unread));
                        tell(Update::Error(format!(
                            "not marked read on your other devices: {e}"
                        )));
                    }
                }
            }
        }
        if self.contacts.as_ref() != Some(&contacts) {
            self.contacts = Some(contacts.clone());
            tell(Update::Contacts(contacts));
        }
        let requests = device.requests().await?.pending;
        if self.requests.as_ref() != Some(&requests) {
            self.requests = Some(requests.clone());
            tell(Update::Requests(requests));
        }
        if let Some(name) = open {
            let messages = match device.history(&name, SCROLLBACK).await {
                Ok(m) => m,
                // Renamed or removed meanwhile: the new list moves the selection.
                Err(chorus_client::ClientError::UnknownContact(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            let now = (name, messages);
            if self.history.as_ref() != Some(&now) {
                self.history = Some(now.clone());
                tell(Update::History {
                    contact: now.0,
                    messages: now.1,
                });
            }
        }
        Ok(())
    }
}

/// Does one ask; `queued` is called once a message is written (so the screen shows it
/// pending before the network is tried).
async fn handle(device: &Device, ask: Ask, tell: &impl Fn(Update), queued: impl Fn()) {
    let result = match ask {
        Ask::Open(_) | Ask::Quit => Ok(()),
        Ask::Send { contact, text } => match device.queue_message(&contact, &text).await {
            Err(e) => Err(format!("not sent: {e}")),
            Ok(id) => {
                queued();
                match device.send_queued(id).await {
                    Ok(outcome) => {
                        if let Some(to) = outcome.forwarded_to {
                            tell(Update::Notice(format!(
                                "handed to {}, which sends for this identity",
                                printable(&to)
                            )));
                        }
                        match outcome.queued {
                            Some(e) => Err(format!(
                                "{e}; the message is kept and sent when the relay is back"
                            )),
                            None => Ok(()),
                        }
                    }
                    Err(e) => Err(format!("{e}; the message is kept and sent later")),
                }
            }
        },
        Ask::Accept { id, name } => match device.accept_request(id, name.as_deref()).await {
            Ok(contact) => {
                tell(Update::Notice(format!(
                    "{} is a contact now: compare safety numbers with /verify",
                    printable(&contact)
                )));
                tell(Update::Select(contact));
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        Ask::BlockRequest { id } => match device.block_request(id).await {
            Ok(name) => {
                tell(Update::Notice(format!(
                    "blocked {} on all your devices",
                    printable(&name)
                )));
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        Ask::Block { contact, block } => match device.block_contact(&contact, block).await {
            Ok((name, changed)) => {
                let name = printable(&name);
                tell(Update::Notice(match (block, changed) {
                    (true, true) => format!("blocked {name} on all your devices"),
                    (false, true) => format!("unblocked {name} on all your devices"),
                    (true, false) => format!("{name} is already blocked"),
                    (false, false) => format!("{name} is not blocked"),
                }));
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        Ask::Verify { contact, mark } => verify(device, &contact, mark, tell).await,
        Ask::Timer { contact, secs } => match device.set_timer(&contact, secs).await {
            Ok((name, _)) => {
                tell(Update::Notice(match secs {
                    0 => format!("messages with {} no longer disappear", printable(&name)),
                    s => format!(
                        "messages with {} disappear {} after they are sent",
                        printable(&name),
                        crate::duration_text(s)
                    ),
                }));
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        Ask::File { contact, path } => {
            let path = std::path::PathBuf::from(path);
            let shown = printable(&path.display().to_string());
            tell(Update::Notice(format!("sending {shown}…")));
            match device.send_file(&contact, &path, "", &mut |_, _| {}).await {
                Ok(outcome) => {
                    tell(Update::Notice(format!("sent {shown}")));
                    match outcome.queued {
                        Some(e) => Err(format!(
                            "{e}; the message is kept and sent when the relay is back"
                        )),
                        None => Ok(()),
                    }
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Ask::Save { id } => {
            tell(Update::Notice(format!("fetching {}…", printable(&id))));
            match device
                .save_file(&id, std::path::Path::new("."), &mut |_, _| {})
                .await
            {
                Ok(path) => {
                    tell(Update::Notice(format!(
                        "saved {}",
                        printable(&path.display().to_string())
                    )));
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Ask::Rename { contact, to } => match device.rename_contact(&contact, &to).await {
            Ok((from, to)) => {
                tell(Update::Notice(format!(
                    "renamed {} to {} on all your devices",
                    printable(&from),
                    printable(&to)
                )));
                tell(Update::Select(to));
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        Ask::Devices => match device.devices().await {
            Ok(devices) => {
                let now = super::now_ms();
                let body = devices
                    .iter()
                    .map(|d| {
                        let seen = match (d.online, d.last_seen_ms) {
                            (true, _) => "online now".to_owned(),
                            (false, Some(ms)) => format!("last seen {}", when(ms, now, true)),
                            (false, None) => "not seen online".to_owned(),
                        };
                        let me = if d.this_device { " (this device)" } else { "" };
                        format!("{}{me}\n  {}  {seen}", printable(&d.name), &d.id[..16])
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                tell(Update::Panel {
                    title: "Your devices".into(),
                    body: format!("{body}\n\nLink another with `chorus link new` on it."),
                });
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        Ask::Invite => match device.invite().await {
            Ok(code) => {
                tell(Update::Panel {
                    title: "Invitation (works once)".into(),
                    body: format!(
                        "Give this code to one person; they run `chorus accept CODE`.\n\n{code}"
                    ),
                });
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
    };
    if let Err(e) = result {
        tell(Update::Error(e));
    }
}

async fn verify(
    device: &Device,
    contact: &str,
    mark: Option<bool>,
    tell: &impl Fn(Update),
) -> Result<(), String> {
    if let Some(mark) = mark {
        let (name, changed) = device
            .mark_verified(contact, mark)
            .await
            .map_err(|e| e.to_string())?;
        let what = if mark { "verified" } else { "not verified" };
        tell(Update::Notice(match changed {
            true => format!("{} is marked {what} on all your devices", printable(&name)),
            false => format!("{} was already marked {what}", printable(&name)),
        }));
    }
    let v = device.verify(contact).await.map_err(|e| e.to_string())?;
    let contact = printable(contact);
    let mut body = format!(
        "{:<10} {}\n{:<10} {}\n\nSafety number (the same on both sides):\n{}\n\n",
        printable(&device.name()),
        v.ours,
        contact,
        v.theirs,
        v.safety_number
    );
    body.push_str(&match v.verified {
        true => format!(
            "Marked verified: you compared it with {contact}. /verify unmark removes the mark."
        ),
        false => format!(
            "Compare it with {contact} in person or over a call you trust, then /verify mark."
        ),
    });
    if let Some(rival) = v.rival {
        body.push_str(&format!(
            "\n\nWARNING: {contact}'s previous key signed two different new keys; the other one's safety number:\n{rival}"
        ));
    }
    tell(Update::Panel {
        title: format!("Safety number with {contact}"),
        body,
    });
    Ok(())
}

/// What the status line says of something received (messages show in the list and the
/// conversation instead).
fn notice(e: &Event) -> Option<Update> {
    let p = |s: &str| printable(s);
    Some(match e {
        Event::Message(_) => return None,
        Event::ContactAdded { contact } => Update::Notice(format!("new contact {}", p(contact))),
        Event::Request { name, .. } => {
            Update::Notice(format!("message request from {} (not a contact)", p(name)))
        }
        Event::SessionReset { contact } => Update::Notice(format!(
            "{} started a new session; the conversation goes on",
            p(contact)
        )),
        Event::DeviceLinked { name, by } => {
            Update::Notice(format!("device {} linked by {}", p(name), p(by)))
        }
        Event::DeviceRelinked { name, by } => {
            Update::Notice(format!("device {} linked again by {}", p(name), p(by)))
        }
        Event::DeviceRevoked {
            this_device: true, ..
        } => Update::Error("this device was revoked: it is no longer part of the identity".into()),
        Event::DeviceRevoked { name, by, .. } => {
            Update::Notice(format!("device {} was revoked by {}", p(name), p(by)))
        }
        Event::SecurityChanged { primary_root, .. } => Update::Notice(format!(
            "the identity is {} now",
            if *primary_root {
                "primary-root"
            } else {
                "shared-root"
            }
        )),
        Event::IdentityRolled { .. } => Update::Notice("the identity rolled its root key".into()),
        Event::ContactRolled { contact, .. } => Update::Notice(format!(
            "{} rolled their identity key: compare the new safety number (/verify)",
            p(contact)
        )),
        Event::TimerChanged { contact, secs, .. } => Update::Notice(match secs {
            0 => format!("{} turned disappearing messages off", p(contact)),
            s => format!(
                "{} set disappearing messages: {}",
                p(contact),
                crate::duration_text(*s)
            ),
        }),
        Event::ContactRemoved { contact } => {
            Update::Notice(format!("{} was removed on all your devices", p(contact)))
        }
        Event::ContactRenamed { contact, was, now } => Update::Notice(match contact == now {
            true => format!("{} is now {}", p(was), p(now)),
            false => format!(
                "{} is now {} (you call them {})",
                p(was),
                p(now),
                p(contact)
            ),
        }),
        Event::ContactCompromised { contact } => Update::Error(format!(
            "{}'s previous key signed two different new keys: /verify",
            p(contact)
        )),
        Event::Rejected { reason } => Update::Error(format!("skipped {}", p(reason))),
    })
}
