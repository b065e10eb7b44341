//! What the chat screen shows, and what keys and the worker's updates do to it.
//!
//! Plain data and plain functions: no terminal, no network, no clock (the time comes in
//! with each key), so every rule here is tested without a screen.

use chorus_client::{ContactInfo, Message, Request};
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Messages of the open conversation the worker loads (older ones: `chorus history`).
pub(super) const SCROLLBACK: u32 = 500;
/// Bytes the input line holds (a message's own limit is checked when it is sent).
pub(super) const MAX_INPUT: usize = 64 * 1024;

/// What the screen asks the worker to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ask {
    /// This conversation is on screen (`None`: a request or nothing): load it, and
    /// mark it read while it is shown.
    Open(Option<String>),
    /// Send `text` to `contact`.
    Send { contact: String, text: String },
    /// Make request `id`'s sender a contact.
    Accept { id: i64, name: Option<String> },
    /// Drop request `id` and refuse its sender.
    BlockRequest { id: i64 },
    /// Block or unblock a contact on every device.
    Block { contact: String, block: bool },
    /// Show the safety number with `contact`; `mark` sets or clears the verified mark.
    Verify { contact: String, mark: Option<bool> },
    /// Set the conversation's disappearing-message timer (seconds, 0: off).
    Timer { contact: String, secs: u64 },
    /// Rename the contact on every device.
    Rename { contact: String, to: String },
    /// Send the file at `path` to `contact`.
    File { contact: String, path: String },
    /// Fetch file `id` into the current directory.
    Save { id: String },
    /// Show the identity's devices.
    Devices,
    /// Show a new invitation code.
    Invite,
    /// The user quits: answer [`Update::Done`] once every ask before this one is done.
    Quit,
}

/// What the worker tells the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Update {
    Contacts(Vec<ContactInfo>),
    Requests(Vec<Request>),
    History {
        contact: String,
        messages: Vec<Message>,
    },
    /// Connected and caught up (`Ok`), or why not.
    Link(Result<(), String>),
    Notice(String),
    Error(String),
    /// Text to show over the conversation until Esc (`/verify`, `/devices`, `/invite`).
    Panel {
        title: String,
        body: String,
    },
    /// Select this contact once it is listed (a request just accepted).
    Select(String),
    /// Every ask before [`Ask::Quit`] is done.
    Done,
}

/// One row of the list on the left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    Contact(String),
    Request(i64),
}

/// The status line: the last thing worth saying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Status {
    Notice(String),
    Error(String),
}

/// Text over the conversation until Esc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Panel {
    pub(super) title: String,
    pub(super) body: String,
}

/// The input line: text and a cursor (a byte offset on a char boundary).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Input {
    pub(super) text: String,
    pub(super) cursor: usize,
}

impl Input {
    fn insert(&mut self, s: &str) -> bool {
        if self.text.len() + s.len() > MAX_INPUT {
            return false;
        }
        self.text.insert_str(self.cursor, s);
        self.cursor += s.len();
        true
    }

    fn backspace(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
            self.text.remove(self.cursor);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    fn left(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
        }
    }

    fn right(&mut self) {
        if let Some(c) = self.text[self.cursor..].chars().next() {
            self.cursor += c.len_utf8();
        }
    }

    fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }
}

/// Everything on screen.
#[derive(Debug)]
pub(super) struct App {
    /// This identity's name.
    pub(super) me: String,
    pub(super) contacts: Vec<ContactInfo>,
    pub(super) requests: Vec<Request>,
    pub(super) selected: Option<Entry>,
    /// The open conversation's messages, and whose they are.
    pub(super) history: Vec<Message>,
    pub(super) history_of: Option<String>,
    /// Lines scrolled up from the newest.
    pub(super) scroll: usize,
    pub(super) input: Input,
    /// `None` until the worker first connects or fails.
    pub(super) link: Option<Result<(), String>>,
    pub(super) status: Option<Status>,
    pub(super) panel: Option<Panel>,
    pub(super) quit: bool,
    /// Quitting: waiting for what was asked before (a message being sent).
    pub(super) closing: bool,
    /// The time of the last key, for "today" in dates.
    pub(super) now_ms: i64,
    /// The conversation asked for on the command line, selected once it is listed.
    wanted: Option<String>,
}

impl App {
    pub(super) fn new(me: String, wanted: Option<String>, now_ms: i64) -> Self {
        App {
            me,
            contacts: Vec::new(),
            requests: Vec::new(),
            selected: None,
            history: Vec::new(),
            history_of: None,
            scroll: 0,
            input: Input::default(),
            link: None,
            status: None,
            panel: None,
            quit: false,
            closing: false,
            now_ms,
            wanted,
        }
    }

    /// The rows of the list: contacts, then requests.
    pub(super) fn entries(&self) -> Vec<Entry> {
        self.contacts
            .iter()
            .map(|c| Entry::Contact(c.name.clone()))
            .chain(self.requests.iter().map(|r| Entry::Request(r.id)))
            .collect()
    }

    /// The contact whose conversation is selected.
    pub(super) fn contact(&self) -> Option<&ContactInfo> {
        match &self.selected {
            Some(Entry::Contact(name)) => self.contacts.iter().find(|c| &c.name == name),
            _ => None,
        }
    }

    /// The request selected.
    pub(super) fn request(&self) -> Option<&Request> {
        match &self.selected {
            Some(Entry::Request(id)) => self.requests.iter().find(|r| r.id == *id),
            _ => None,
        }
    }

    /// A terminal event: returns what to ask the worker.
    pub(super) fn terminal(&mut self, event: Event, now_ms: i64) -> Vec<Ask> {
        self.now_ms = now_ms;
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key),
            // A paste is text, never a command: newlines stay in the input, nothing is sent.
            Event::Paste(text) => {
                let text = text.replace("\r\n", "\n").replace('\r', "\n");
                if !self.input.insert(&text) {
                    self.error("the paste is too long for one message");
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Ask> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('c' | 'd') if ctrl => self.close(),
            KeyCode::Esc => {
                self.panel = None;
                Vec::new()
            }
            // A new line in the message: Alt-Enter, Ctrl-J (what a terminal sends for
            // Ctrl-Enter is not always told apart from Enter).
            KeyCode::Enter if alt => self.typed("\n"),
            KeyCode::Char('j') if ctrl => self.typed("\n"),
            KeyCode::Enter => self.enter(),
            KeyCode::Tab => self.step(1),
            KeyCode::BackTab => self.step(-1),
            KeyCode::Char('n') if ctrl => self.step(1),
            KeyCode::Char('p') if ctrl => self.step(-1),
            KeyCode::Down if self.input.text.is_empty() => self.step(1),
            KeyCode::Up if self.input.text.is_empty() => self.step(-1),
            KeyCode::PageUp => {
                self.scroll = self.scroll.saturating_add(10);
                Vec::new()
            }
            KeyCode::PageDown => {
                self.scroll = self.scroll.saturating_sub(10);
                Vec::new()
            }
            KeyCode::Backspace => {
                self.input.backspace();
                Vec::new()
            }
            KeyCode::Delete => {
                self.input.delete();
                Vec::new()
            }
            KeyCode::Left => {
                self.input.left();
                Vec::new()
            }
            KeyCode::Right => {
                self.input.right();
                Vec::new()
            }
            KeyCode::Home => {
                self.input.cursor = 0;
                Vec::new()
            }
            KeyCode::End => {
                self.input.cursor = self.input.text.len();
                self.scroll = 0;
                Vec::new()
            }
            KeyCode::Char('u') if ctrl => {
                self.input.take();
                Vec::new()
            }
            KeyCode::Char(c) if !ctrl => self.typed(c.encode_utf8(&mut [0; 4])),
            _ => Vec::new(),
        }
    }

    /// Quits once what was asked before is done (a message typed just before is sent,
    /// not cut off); asked twice, at once.
    fn close(&mut self) -> Vec<Ask> {
        if self.closing {
            self.quit = true;
            return Vec::new();
        }
        self.closing = true;
        self.notice("quitting once what you asked is done (Ctrl-C again: now)");
        vec![Ask::Quit]
    }

    fn typed(&mut self, s: &str) -> Vec<Ask> {
        if !self.input.insert(s) {
            self.error("the message is too long");
        }
        Vec::new()
    }

    /// Moves the selection `by` rows (wrapping) and opens what it lands on.
    fn step(&mut self, by: isize) -> Vec<Ask> {
        let entries = self.entries();
        if entries.is_empty() {
            return Vec::new();
        }
        let at = self
            .selected
            .as_ref()
            .and_then(|s| entries.iter().position(|e| e == s));
        let len = entries.len() as isize;
        let next = match at {
            Some(i) => (i as isize + by).rem_euclid(len),
            None => 0,
        };
        self.select(entries[next as usize].clone())
    }

    fn select(&mut self, entry: Entry) -> Vec<Ask> {
        if self.selected.as_ref() == Some(&entry) {
            return Vec::new();
        }
        self.scroll = 0;
        self.panel = None;
        let open = match &entry {
            Entry::Contact(name) => Some(name.clone()),
            Entry::Request(_) => None,
        };
        if self.history_of != open {
            self.history.clear();
            self.history_of = None;
        }
        self.selected = Some(entry);
        vec![Ask::Open(open)]
    }

    /// Enter: a command, or a message to the open conversation.
    fn enter(&mut self) -> Vec<Ask> {
        if self.input.text.trim().is_empty() {
            // Whitespace is not a message; keep what was typed.
            return Vec::new();
        }
        if self.input.text.starts_with('/') && !self.input.text.starts_with("//") {
            let line = self.input.take();
            return self.command(line.trim());
        }
        let Some(contact) = self.contact().map(|c| c.name.clone()) else {
            self.error("select a contact first (Tab), or answer the request: /accept or /block");
            return Vec::new();
        };
        let mut text = self.input.take();
        // "//" escapes a message that starts with a slash.
        if text.starts_with("//") {
            text.remove(0);
        }
        self.scroll = 0;
        vec![Ask::Send { contact, text }]
    }

    fn command(&mut self, line: &str) -> Vec<Ask> {
        let (name, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let contact = self.contact().map(|c| c.name.clone());
        let request = self.request().map(|r| r.id);
        match (name, contact, request) {
            ("/help" | "/?", _, _) => {
                self.panel = Some(Panel {
                    title: "Help".into(),
                    body: HELP.into(),
                });
                Vec::new()
            }
            ("/quit" | "/q", _, _) => self.close(),
            ("/devices", _, _) => vec![Ask::Devices],
            ("/invite", _, _) => vec![Ask::Invite],
            ("/verify", Some(contact), _) => {
                let mark = match rest {
                    "" => None,
                    "mark" => Some(true),
                    "unmark" => Some(false),
                    _ => {
                        self.error("usage: /verify [mark|unmark]");
                        return Vec::new();
                    }
                };
                vec![Ask::Verify { contact, mark }]
            }
            ("/timer", Some(contact), _) => match crate::parse_timer(rest) {
                Ok(secs) => vec![Ask::Timer { contact, secs }],
                Err(e) => {
                    self.error(&format!("/timer {e}"));
                    Vec::new()
                }
            },
            ("/rename", Some(contact), _) if !rest.is_empty() => vec![Ask::Rename {
                contact,
                to: rest.to_owned(),
            }],
            ("/file", Some(contact), _) if !rest.is_empty() => vec![Ask::File {
                contact,
                path: rest.to_owned(),
            }],
            ("/save", _, _) if !rest.is_empty() => vec![Ask::Save {
                id: rest.to_owned(),
            }],
            ("/accept", _, Some(id)) => vec![Ask::Accept {
                id,
                name: (!rest.is_empty()).then(|| rest.to_owned()),
            }],
            ("/block", _, Some(id)) => vec![Ask::BlockRequest { id }],
            ("/block" | "/unblock", Some(contact), _) => vec![Ask::Block {
                contact,
                block: name == "/block",
            }],
            ("/verify" | "/block" | "/unblock" | "/timer" | "/rename" | "/file", None, _) => {
                self.error(&format!("{name}: select a contact first"));
                Vec::new()
            }
            ("/accept", _, None) => {
                self.error("/accept: select a message request first");
                Vec::new()
            }
            _ => {
                self.error(&format!("unknown command {name}: /help lists them"));
                Vec::new()
            }
        }
    }

    /// An update from the worker: returns what to ask it in turn.
    pub(super) fn update(&mut self, update: Update) -> Vec<Ask> {
        match update {
            Update::Contacts(contacts) => {
                self.contacts = contacts;
                self.reselect()
            }
            Update::Requests(requests) => {
                self.requests = requests;
                self.reselect()
            }
            Update::History { contact, messages } => {
                if self.contact().map(|c| &c.name) == Some(&contact) {
                    self.history = messages;
                    self.history_of = Some(contact);
                }
                Vec::new()
            }
            Update::Link(link) => {
                if let (Some(Err(_)), Ok(())) = (&self.link, &link) {
                    self.notice("reconnected to the relay");
                }
                self.link = Some(link);
                Vec::new()
            }
            Update::Notice(n) => {
                self.notice(&n);
                Vec::new()
            }
            Update::Error(e) => {
                self.error(&e);
                Vec::new()
            }
            Update::Panel { title, body } => {
                self.panel = Some(Panel { title, body });
                Vec::new()
            }
            // Once it is listed (the list may come after).
            Update::Done => {
                self.quit = true;
                Vec::new()
            }
            Update::Select(name) => {
                self.wanted = Some(name);
                self.reselect()
            }
        }
    }

    /// After the list changed: the wanted conversation once it is there; a selection
    /// that went away (a renamed contact, an answered request) moves to the first row.
    fn reselect(&mut self) -> Vec<Ask> {
        let entries = self.entries();
        if let Some(wanted) = &self.wanted
            && let Some(c) = self
                .contacts
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(wanted))
        {
            let entry = Entry::Contact(c.name.clone());
            self.wanted = None;
            return self.select(entry);
        }
        match &self.selected {
            Some(s) if entries.contains(s) => Vec::new(),
            _ => match entries.first() {
                Some(first) => self.select(first.clone()),
                None => {
                    self.selected = None;
                    Vec::new()
                }
            },
        }
    }

    fn notice(&mut self, text: &str) {
        self.status = Some(Status::Notice(text.to_owned()));
    }

    fn error(&mut self, text: &str) {
        self.status = Some(Status::Error(text.to_owned()));
    }
}

/// `/help`.
pub(super) const HELP: &str = "\
Enter          send the message (a line starting with / is a command; // sends a /)
Alt-Enter      a new line in the message (or Ctrl-J); pasted text is never sent by itself
Tab, Shift-Tab the next or previous conversation (or Ctrl-N, Ctrl-P; Up, Down when empty)
PgUp, PgDn     scroll the conversation; End goes back to the newest
Esc            close this panel
Ctrl-C         quit (also /quit)

/verify              the safety number to compare with the contact
/verify mark|unmark  mark them verified (or not) on all your devices
/devices             this identity's devices
/invite              an invitation code for one new contact
/block, /unblock     block or unblock the contact on all your devices
/timer 1d|off        disappearing messages in this conversation (30s, 5m, 1h, 1d, 1w)
/rename NAME         rename the contact on all your devices
/file PATH           send a file (encrypted here; every device of theirs and yours can fetch it)
/save ID             fetch a file into the current directory (its id is shown with it)
/accept [NAME]       make the selected message request a contact
/block               (on a request) drop it and refuse its sender";

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(name: &str, unread: i64) -> ContactInfo {
        ContactInfo {
            name: name.into(),
            fingerprint: String::new(),
            relay_url: String::new(),
            connected: true,
            added_ms: 0,
            unread,
            failed: None,
            compromised: false,
            blocked: false,
            verified: false,
            disappearing_secs: 0,
        }
    }

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
        Event::Key(KeyEvent::new(code, modifiers))
    }

    fn typed(app: &mut App, text: &str) -> Vec<Ask> {
        let mut asks = Vec::new();
        for c in text.chars() {
            asks.extend(app.terminal(key(KeyCode::Char(c), KeyModifiers::NONE), 0));
        }
        asks
    }

    fn enter(app: &mut App) -> Vec<Ask> {
        app.terminal(key(KeyCode::Enter, KeyModifiers::NONE), 0)
    }

    fn with_contacts(names: &[&str]) -> App {
        let mut app = App::new("alice".into(), None, 0);
        let asks = app.update(Update::Contacts(
            names.iter().map(|n| contact(n, 0)).collect(),
        ));
        assert_eq!(asks, vec![Ask::Open(Some(names[0].into()))]);
        app
    }

    #[test]
    fn enter_sends_to_the_open_conversation_and_clears_the_input() {
        let mut app = with_contacts(&["bob", "carol"]);
        assert!(typed(&mut app, "hi bob").is_empty());
        assert_eq!(
            enter(&mut app),
            vec![Ask::Send {
                contact: "bob".into(),
                text: "hi bob".into()
            }]
        );
        assert_eq!(app.input, Input::default());
    }

    #[test]
    fn a_paste_with_newlines_is_never_sent_by_itself() {
        let mut app = with_contacts(&["bob"]);
        let asks = app.terminal(Event::Paste("line one\r\nline two\n/quit\n".into()), 0);
        assert!(asks.is_empty());
        assert!(!app.quit);
        assert_eq!(app.input.text, "line one\nline two\n/quit\n");
        // Enter sends it as one message: it does not start with a slash.
        assert_eq!(
            enter(&mut app),
            vec![Ask::Send {
                contact: "bob".into(),
                text: "line one\nline two\n/quit\n".into()
            }]
        );
    }

    #[test]
    fn alt_enter_and_ctrl_j_add_a_line_instead_of_sending() {
        let mut app = with_contacts(&["bob"]);
        typed(&mut app, "a");
        assert!(
            app.terminal(key(KeyCode::Enter, KeyModifiers::ALT), 0)
                .is_empty()
        );
        typed(&mut app, "b");
        assert!(
            app.terminal(key(KeyCode::Char('j'), KeyModifiers::CONTROL), 0)
                .is_empty()
        );
        typed(&mut app, "c");
        assert_eq!(app.input.text, "a\nb\nc");
    }

    #[test]
    fn whitespace_alone_is_not_sent() {
        let mut app = with_contacts(&["bob"]);
        typed(&mut app, "   ");
        assert!(enter(&mut app).is_empty());
        assert_eq!(app.input.text, "   ");
    }

    #[test]
    fn tab_moves_through_contacts_then_requests_and_wraps() {
        let mut app = with_contacts(&["bob", "carol"]);
        app.update(Update::Requests(vec![Request {
            id: 7,
            name: "mallory".into(),
            fingerprint: String::new(),
            received_ms: 0,
            messages: Vec::new(),
        }]));
        let tab = || key(KeyCode::Tab, KeyModifiers::NONE);
        assert_eq!(
            app.terminal(tab(), 0),
            vec![Ask::Open(Some("carol".into()))]
        );
        assert_eq!(app.terminal(tab(), 0), vec![Ask::Open(None)]);
        assert_eq!(app.selected, Some(Entry::Request(7)));
        // On a request, Enter sends nothing; /accept answers it.
        typed(&mut app, "hello?");
        assert!(enter(&mut app).is_empty());
        assert!(matches!(app.status, Some(Status::Error(_))));
        app.input = Input::default();
        typed(&mut app, "/accept Mal");
        assert_eq!(
            enter(&mut app),
            vec![Ask::Accept {
                id: 7,
                name: Some("Mal".into())
            }]
        );
        assert_eq!(app.terminal(tab(), 0), vec![Ask::Open(Some("bob".into()))]);
    }

    #[test]
    fn commands_name_the_selected_contact_and_unknown_ones_are_refused() {
        let mut app = with_contacts(&["bob"]);
        typed(&mut app, "/verify mark");
        assert_eq!(
            enter(&mut app),
            vec![Ask::Verify {
                contact: "bob".into(),
                mark: Some(true)
            }]
        );
        typed(&mut app, "/block");
        assert_eq!(
            enter(&mut app),
            vec![Ask::Block {
                contact: "bob".into(),
                block: true
            }]
        );
        typed(&mut app, "/frobnicate");
        assert!(enter(&mut app).is_empty());
        assert_eq!(
            app.status,
            Some(Status::Error(
                "unknown command /frobnicate: /help lists them".into()
            ))
        );
        typed(&mut app, "//slash");
        assert_eq!(
            enter(&mut app),
            vec![Ask::Send {
                contact: "bob".into(),
                text: "/slash".into()
            }]
        );
    }

    #[test]
    fn timer_and_rename_name_the_open_conversation() {
        let mut app = with_contacts(&["bob"]);
        typed(&mut app, "/timer 1d");
        assert_eq!(
            enter(&mut app),
            vec![Ask::Timer {
                contact: "bob".into(),
                secs: 86_400
            }]
        );
        typed(&mut app, "/timer soon");
        assert!(enter(&mut app).is_empty());
        assert!(matches!(app.status, Some(Status::Error(_))));
        typed(&mut app, "/rename Robert B.");
        assert_eq!(
            enter(&mut app),
            vec![Ask::Rename {
                contact: "bob".into(),
                to: "Robert B.".into()
            }]
        );
    }

    #[test]
    fn the_conversation_asked_for_is_opened_once_listed() {
        let mut app = App::new("alice".into(), Some("Carol".into()), 0);
        let asks = app.update(Update::Contacts(vec![
            contact("bob", 0),
            contact("carol", 2),
        ]));
        assert_eq!(asks, vec![Ask::Open(Some("carol".into()))]);
        // A later list does not move the user's own choice back.
        app.terminal(key(KeyCode::Tab, KeyModifiers::NONE), 0);
        assert!(
            app.update(Update::Contacts(vec![
                contact("bob", 0),
                contact("carol", 0)
            ]))
            .is_empty()
        );
        assert_eq!(app.selected, Some(Entry::Contact("bob".into())));
    }

    #[test]
    fn history_for_another_conversation_than_the_open_one_is_ignored() {
        let mut app = with_contacts(&["bob", "carol"]);
        app.update(Update::History {
            contact: "carol".into(),
            messages: vec![Message {
                file: None,
                contact: "carol".into(),
                outgoing: false,
                text: "late".into(),
                sent_ms: 0,
                stored_ms: 0,
                read: false,
                pending: false,
                delivery: None,
            }],
        });
        assert!(app.history.is_empty());
    }

    #[test]
    fn the_input_holds_at_most_max_input_bytes() {
        let mut app = with_contacts(&["bob"]);
        app.terminal(Event::Paste("x".repeat(MAX_INPUT)), 0);
        assert_eq!(app.input.text.len(), MAX_INPUT);
        typed(&mut app, "y");
        assert_eq!(app.input.text.len(), MAX_INPUT);
        assert_eq!(
            app.status,
            Some(Status::Error("the message is too long".into()))
        );
    }

    #[test]
    fn editing_moves_by_characters_not_bytes() {
        let mut app = with_contacts(&["bob"]);
        typed(&mut app, "héllo");
        for _ in 0..4 {
            app.terminal(key(KeyCode::Left, KeyModifiers::NONE), 0);
        }
        app.terminal(key(KeyCode::Backspace, KeyModifiers::NONE), 0);
        app.terminal(key(KeyCode::Delete, KeyModifiers::NONE), 0);
        assert_eq!(app.input.text, "llo");
    }

    #[test]
    fn ctrl_c_quits_after_what_was_asked_and_twice_at_once() {
        let mut app = with_contacts(&["bob"]);
        let ctrl_c = || key(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.terminal(ctrl_c(), 0), vec![Ask::Quit]);
        assert!(!app.quit);
        app.update(Update::Done);
        assert!(app.quit);

        let mut app = with_contacts(&["bob"]);
        app.terminal(ctrl_c(), 0);
        assert!(app.terminal(ctrl_c(), 0).is_empty());
        assert!(app.quit);
    }
}
