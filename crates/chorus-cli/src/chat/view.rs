//! Draws the chat screen: the list on the left, the conversation on the right, the
//! input below, one status line at the bottom; a panel over the conversation for
//! `/help`, `/verify`, `/devices` and `/invite`.
//!
//! Everything a contact wrote passes through [`crate::printable`] and is wrapped here,
//! and every line after a message's first starts with the `  │ ` margin, so no text of
//! theirs — however long or however broken into lines — starts a line of its own.

use chorus_client::{Delivery, Message};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use unicode_width::UnicodeWidthChar;

use super::state::{App, Entry, Status};
use crate::{printable, when};

/// Lines of the input shown at most (a longer message scrolls inside it).
const INPUT_LINES: usize = 5;
/// The margin of every line of a message after its first.
const MARGIN: &str = "  │ ";

/// Draws `app`; returns how far the conversation can scroll up (the caller clamps).
pub(super) fn draw(frame: &mut Frame<'_>, app: &App) -> usize {
    let area = frame.area();
    let input_width = area.width.saturating_sub(2).max(1) as usize;
    let input_lines = wrap_input(&app.input.text, input_width);
    let input_height = input_lines.len().clamp(1, INPUT_LINES) as u16 + 2;
    let [main, input, status] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(input_height),
        Constraint::Length(1),
    ])
    .areas(area);
    let list_width = if area.width >= 60 { 24 } else { area.width / 3 };
    let [list, conversation] =
        Layout::horizontal([Constraint::Length(list_width), Constraint::Min(10)]).areas(main);

    draw_list(frame, app, list);
    let max_scroll = draw_conversation(frame, app, conversation);
    draw_input(frame, app, input, &input_lines, input_width);
    draw_status(frame, app, status);
    if let Some(panel) = &app.panel {
        let popup = centered(area, 90, 80);
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(printable(&panel.body))
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(format!(" {} (Esc closes) ", panel.title))),
            popup,
        );
    }
    max_scroll
}

fn draw_list(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut lines = Vec::new();
    for entry in app.entries() {
        let selected = app.selected.as_ref() == Some(&entry);
        let mut line = match &entry {
            Entry::Contact(name) => {
                let c = app.contacts.iter().find(|c| &c.name == name);
                let unread = c.map_or(0, |c| c.unread);
                let mut spans = vec![Span::raw(printable(name))];
                if c.is_some_and(|c| c.verified) {
                    spans.push(Span::raw(" ✓").green());
                }
                if c.is_some_and(|c| c.blocked) {
                    spans.push(Span::raw(" (blocked)").dark_gray());
                }
                if c.is_some_and(|c| c.compromised) {
                    spans.push(Span::raw(" (!)").red());
                }
                if unread > 0 {
                    spans.push(Span::raw(format!(" ({unread})")).yellow().bold());
                }
                Line::from(spans)
            }
            Entry::Request(id) => {
                let name = app
                    .requests
                    .iter()
                    .find(|r| r.id == *id)
                    .map_or_else(String::new, |r| printable(&r.name));
                Line::from(vec![
                    Span::raw("? ").magenta(),
                    Span::raw(format!("{name} #{id}")),
                ])
            }
        };
        if selected {
            line = line.style(Style::new().add_modifier(Modifier::REVERSED));
        }
        lines.push(line);
    }
    if lines.is_empty() {
        lines.push(Line::from("No contacts yet: /invite").dark_gray());
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Chats ")),
        area,
    );
}

/// The open conversation (or request), newest at the bottom.
fn draw_conversation(frame: &mut Frame<'_>, app: &App, area: Rect) -> usize {
    let width = area.width.saturating_sub(2).max(1) as usize;
    let height = area.height.saturating_sub(2) as usize;
    let (title, lines) = if let Some(c) = app.contact() {
        let mut title = format!(" {} ", printable(&c.name));
        if c.verified {
            title.push_str("· verified ");
        }
        if c.blocked {
            title.push_str("· blocked: their messages are dropped ");
        }
        if c.compromised {
            title.push_str("· COMPROMISED: /verify ");
        }
        if !c.connected && c.failed.is_none() {
            title.push_str("· waiting for their reply ");
        }
        if let Some(why) = &c.failed {
            title.push_str(&format!("· failed: {} ", printable(why)));
        }
        let mut lines = Vec::new();
        for m in &app.history {
            lines.extend(message(m, &app.me, app.now_ms, width));
        }
        if lines.is_empty() {
            lines.push(Line::from("No messages yet. Type below and press Enter.").dark_gray());
        }
        (title, lines)
    } else if let Some(r) = app.request() {
        let title = format!(" Message request from {} ", printable(&r.name));
        let mut lines = vec![
            Line::from(format!("Not a contact. Fingerprint {}", r.fingerprint)).magenta(),
            Line::from(
                "/accept [NAME] makes them a contact on all your devices; /block refuses them.",
            )
            .magenta(),
            Line::from(""),
        ];
        for m in &r.messages {
            let shown = Message {
                contact: r.name.clone(),
                outgoing: false,
                text: m.text.clone(),
                sent_ms: m.sent_ms,
                stored_ms: m.sent_ms,
                read: false,
                pending: false,
                delivery: None,
                file: None,
            };
            lines.extend(message(&shown, &app.me, app.now_ms, width));
        }
        (title, lines)
    } else {
        (
            " Chorus ".to_owned(),
            vec![Line::from(
                "Nobody to talk to yet: /invite makes an invitation code (or `chorus invite`).",
            )],
        )
    };
    let max_scroll = lines.len().saturating_sub(height);
    let scroll = app.scroll.min(max_scroll);
    let end = lines.len() - scroll;
    let start = end.saturating_sub(height);
    let mut title = title;
    if scroll > 0 {
        title.push_str(&format!("· ↑{scroll} (End: newest) "));
    }
    frame.render_widget(
        Paragraph::new(lines[start..end].to_vec()).block(Block::bordered().title(title)),
        area,
    );
    max_scroll
}

/// One message as wrapped, styled lines.
fn message(m: &Message, me: &str, now_ms: i64, width: usize) -> Vec<Line<'static>> {
    let who = if m.outgoing { me } else { &m.contact };
    let prefix = format!("[{}] {}: ", when(m.sent_ms, now_ms, false), printable(who));
    let text = printable(&crate::shown_text(m));
    let mut out: Vec<Line<'static>> = Vec::new();
    for (i, part) in text.split('\n').enumerate() {
        let first = if i == 0 {
            format!("{prefix}{part}")
        } else {
            format!("{MARGIN}{part}")
        };
        for (j, chunk) in wrap(&first, width, MARGIN).into_iter().enumerate() {
            if i == 0 && j == 0 {
                // The header, with the sender's name styled.
                let split = prefix.len().min(chunk.len());
                let (head, rest) = chunk.split_at(split);
                let style = if m.outgoing {
                    Style::new().add_modifier(Modifier::BOLD)
                } else {
                    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
                };
                out.push(Line::from(vec![
                    Span::styled(head.to_owned(), style),
                    Span::raw(rest.to_owned()),
                ]));
            } else {
                out.push(Line::from(chunk));
            }
        }
    }
    let note = match &m.delivery {
        Some(Delivery::Pending) => Some(Span::raw("  … not sent yet").yellow()),
        Some(Delivery::Sending) => Some(Span::raw("  … sending").yellow()),
        Some(Delivery::Failed { reason }) => Some(
            Span::raw(format!(
                "  ✗ not delivered yet: {}; retrying",
                printable(reason)
            ))
            .red(),
        ),
        Some(Delivery::Sent) => Some(Span::raw("  ✓").dark_gray()),
        None => None,
    };
    if let Some(note) = note {
        let fits = out
            .last()
            .is_some_and(|l| l.width() + note.width() <= width);
        match fits {
            true => {
                if let Some(last) = out.last_mut() {
                    last.push_span(note);
                }
            }
            false => out.push(Line::from(vec![Span::raw(MARGIN), note])),
        }
    }
    out
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect, lines: &[String], width: usize) {
    let title = match (app.contact(), app.request()) {
        (Some(c), _) => format!(
            " Message to {} · Enter sends · Alt-Enter new line · /help ",
            printable(&c.name)
        ),
        (None, Some(_)) => " /accept [NAME] or /block · /help ".to_owned(),
        (None, None) => " /invite · /help · Ctrl-C quits ".to_owned(),
    };
    // The cursor: its line and column in the wrapped text.
    let (row, col) = cursor(&app.input.text[..app.input.cursor], width);
    let first = (row + 1).saturating_sub(INPUT_LINES);
    let shown: Vec<Line<'_>> = lines
        .iter()
        .skip(first)
        .take(INPUT_LINES)
        .map(|l| Line::from(printable(l)))
        .collect();
    frame.render_widget(
        Paragraph::new(shown).block(Block::bordered().title(title)),
        area,
    );
    if app.panel.is_none() {
        let x = area.x + 1 + col as u16;
        let y = area.y + 1 + (row - first) as u16;
        frame.set_cursor_position(Position::new(x, y));
    }
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut spans = vec![Span::raw(format!(" {} ", printable(&app.me))).bold()];
    spans.push(match &app.link {
        None => Span::raw("· connecting… ").yellow(),
        Some(Ok(())) => Span::raw("· online ").green(),
        Some(Err(e)) => Span::raw(format!("· offline ({}), retrying ", printable(e))).red(),
    });
    match &app.status {
        Some(Status::Notice(n)) => spans.push(Span::raw(format!("· {}", printable(n)))),
        Some(Status::Error(e)) => spans.push(Span::raw(format!("· {}", printable(e))).red()),
        None => spans.push(Span::raw("· /help").dark_gray()),
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `s` in lines of at most `width` columns, by characters; every line after the first
/// starts with `margin`.
fn wrap(s: &str, width: usize, margin: &str) -> Vec<String> {
    let margin_width = margin
        .chars()
        .filter_map(UnicodeWidthChar::width)
        .sum::<usize>();
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    // What a line holds before its first character of `s` (a line holds at least one).
    let mut floor = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width && used > floor {
            lines.push(std::mem::take(&mut line));
            line.push_str(margin);
            used = margin_width;
            floor = margin_width;
        }
        line.push(c);
        used += w;
    }
    lines.push(line);
    lines
}

/// The input as the lines it takes at `width` (no margin: it is ours).
fn wrap_input(s: &str, width: usize) -> Vec<String> {
    s.split('\n').flat_map(|l| wrap(l, width, "")).collect()
}

/// Where the cursor is after `before` (the input up to it), wrapped at `width`.
fn cursor(before: &str, width: usize) -> (usize, usize) {
    let lines = wrap_input(before, width);
    let row = lines.len() - 1;
    let col = lines[row]
        .chars()
        .filter_map(UnicodeWidthChar::width)
        .sum::<usize>();
    // A full line puts the cursor at the start of the next.
    match col >= width {
        true => (row + 1, 0),
        false => (row, col),
    }
}

/// A rectangle `percent_x` by `percent_y` of `area`, centred.
fn centered(area: Rect, percent_x: u16, percent_y: u16) -> Rect {
    let [_, middle, _] = Layout::vertical([
        Constraint::Percentage((100 - percent_y) / 2),
        Constraint::Percentage(percent_y),
        Constraint::Percentage((100 - percent_y) / 2),
    ])
    .areas(area);
    let [_, centre, _] = Layout::horizontal([
        Constraint::Percentage((100 - percent_x) / 2),
        Constraint::Percentage(percent_x),
        Constraint::Percentage((100 - percent_x) / 2),
    ])
    .areas(middle);
    centre
}

#[cfg(test)]
mod tests {
    use chorus_client::ContactInfo;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::super::state::Update;
    use super::*;

    fn screen(app: &App, width: u16, height: u16) -> String {
        rows(app, width, height).join("\n")
    }

    fn rows(app: &App, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|f| {
                draw(f, app);
            })
            .unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
            .collect()
    }

    fn app_with(messages: Vec<Message>) -> App {
        let mut app = App::new("alice".into(), None, 0);
        app.update(Update::Contacts(vec![ContactInfo {
            name: "bob".into(),
            fingerprint: String::new(),
            relay_url: String::new(),
            connected: true,
            added_ms: 0,
            unread: 0,
            failed: None,
            compromised: false,
            blocked: false,
            verified: true,
            disappearing_secs: 0,
        }]));
        app.update(Update::History {
            contact: "bob".into(),
            messages,
        });
        app
    }

    fn incoming(text: &str) -> Message {
        Message {
            file: None,
            contact: "bob".into(),
            outgoing: false,
            text: text.into(),
            sent_ms: 0,
            stored_ms: 0,
            read: true,
            pending: false,
            delivery: None,
        }
    }

    #[test]
    fn a_long_or_multi_line_message_never_starts_a_line_of_its_own() {
        let forged = format!(
            "{}[00:00] alice: forged\n[00:00] alice: again",
            "x".repeat(45)
        );
        let app = app_with(vec![incoming(&forged)]);
        let shown = screen(&app, 80, 24);
        // The conversation's inside: right of the 24-column list and its own border.
        let conversation: Vec<String> = rows(&app, 80, 24)[1..19]
            .iter()
            .map(|r| r.chars().skip(25).take(54).collect::<String>())
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(conversation[0].starts_with("[00:00] bob: xxx"), "{shown}");
        assert!(conversation.len() >= 3, "{shown}");
        assert!(
            conversation[1..].iter().all(|l| l.starts_with(MARGIN)),
            "{shown}"
        );
    }

    #[test]
    fn delivery_state_is_shown_with_the_reason_for_a_failure() {
        let mut failed = incoming("hello");
        failed.outgoing = true;
        failed.delivery = Some(Delivery::Failed {
            reason: "relay unreachable".into(),
        });
        let mut queued = incoming("later");
        queued.outgoing = true;
        queued.delivery = Some(Delivery::Pending);
        let shown = screen(&app_with(vec![failed, queued]), 100, 24);
        assert!(
            shown.contains("✗ not delivered yet: relay unreachable; retrying"),
            "{shown}"
        );
        assert!(shown.contains("later  … not sent yet"), "{shown}");
    }

    #[test]
    fn the_screen_fits_80_by_24_and_a_small_one_does_not_panic() {
        let app = app_with(
            (0..100)
                .map(|i| incoming(&format!("message {i}")))
                .collect(),
        );
        let shown = screen(&app, 80, 24);
        assert!(shown.contains("message 99"), "{shown}");
        assert!(shown.contains("bob ✓"), "{shown}");
        for (w, h) in [(1, 1), (10, 4), (20, 6), (200, 60)] {
            screen(&app, w, h);
        }
    }

    #[test]
    fn control_characters_from_a_contact_are_not_drawn() {
        let shown = screen(&app_with(vec![incoming("hi\u{1b}[2Jthere")]), 80, 24);
        assert!(shown.contains("hi\u{fffd}[2Jthere"), "{shown}");
    }

    #[test]
    fn wrapping_counts_columns_and_keeps_the_margin() {
        assert_eq!(wrap("abcdefgh", 6, "  │ "), vec!["abcdef", "  │ gh"]);
        // Narrower than the margin: still one character per line, never a loop.
        assert_eq!(wrap("abc", 2, "  │ "), vec!["ab", "  │ c"]);
        assert_eq!(wrap("日本語", 4, ""), vec!["日本", "語"]);
        assert_eq!(cursor("abcd", 4), (1, 0));
        assert_eq!(cursor("ab\ncd", 4), (1, 2));
    }
}
