//! The operator's console: the stdin thread, and the parser for what the operator types.
//!
//! The thread only reads: each line goes into a channel and wakes the loop through its `Waker`, and
//! at end of file (or a read error) it says so once and ends, dropping its sender. It never prints;
//! stdout belongs to the loop thread. `parse` is pure: a line in, a [`Command`] or a
//! [`ParseError`] out.
//!
//! When stdin and stdout are both the operator's terminal, a line editor takes the place of the
//! plain stdin thread (`console/editor.rs`): it draws the reports above the line being typed,
//! shows in its prompt where a bare line goes (`console/prompt.rs`), and gets each turn's reports
//! from the loop through a hand-off that never makes the loop wait (`console/mailbox.rs`).
//!
//! Deliberately not here: sockets, the clients, or what a command does (that is `chat.rs`).

use std::fmt;
use std::io::{self, BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread;

use mio::Waker;

use crate::access::Cidr;
use crate::ids::ConnId;

mod editor;
mod mailbox;
mod prompt;

pub(crate) use editor::starts_with_ignoring_case;
pub use editor::{finish as finish_editor, mailbox_for_terminal, restore_terminal};
pub use mailbox::Mailbox;
pub use prompt::Target;

/// What the stdin thread hands to the loop.
#[derive(Debug)]
pub enum ConsoleInput {
    /// One line, without its line ending (invalid UTF-8 replaced).
    Line(String),
    /// One line typed in the line editor (read with [`parse_typed`]), and the client its prompt
    /// showed when the operator began typing it: a bare line goes there (`None`: nobody had
    /// spoken), never to whoever spoke since.
    Typed { line: String, to: Option<ConnId> },
    /// The line editor asks, for Tab, which open clients have an id starting with `prefix` (or,
    /// in the room, a name starting with it, in any case): at most `MAX_COMPLETIONS`, as (id,
    /// room name), into `reply`.
    Complete {
        prefix: String,
        reply: Sender<Vec<(ConnId, Option<String>)>>,
    },
    /// A line longer than `MAX_CONSOLE_LINE`, thrown away.
    TooLong,
    /// stdin is finished: `None` at end of file, or the error that ended it.
    Closed(Option<io::Error>),
}

/// The loop's end of the console: what the stdin thread read, until stdin closes.
pub struct Console {
    /// `None` before `start` and once the console has closed, so it is never polled again.
    rx: Option<Receiver<ConsoleInput>>,
    /// The line editor's hand-off, when the console is one: the loop tells it where the prompt
    /// points (the terminal sink hands it the reports).
    editor: Option<&'static Mailbox>,
}

impl Console {
    /// No console yet.
    pub fn closed() -> Console {
        Console {
            rx: None,
            editor: None,
        }
    }

    /// Starts the stdin thread, which wakes the loop through `waker` for everything it sends. A
    /// `/quit` it reads sets `quitting` at once, before the loop sees it, so that a signal then
    /// ends the process even while the loop is stuck (see `signals.rs`). When the logger draws on
    /// the operator's terminal through a line editor's hand-off (`mailbox_for_terminal`), the
    /// thread is that line editor.
    pub fn start(waker: Arc<Waker>, quitting: Arc<AtomicBool>) -> io::Result<Console> {
        let (tx, rx) = mpsc::channel();
        if let Some(mailbox) = editor::mailbox() {
            match editor::spawn(tx.clone(), Arc::clone(&waker), Arc::clone(&quitting)) {
                Ok(()) => {
                    return Ok(Console {
                        rx: Some(rx),
                        editor: Some(mailbox),
                    });
                }
                // No editor after all (the terminal refused raw mode): the plain console, and
                // the sink writes the reports itself, as the mailbox stays detached.
                Err(_) => mailbox.close(),
            }
        }
        spawn(tx, waker, quitting)?;
        Ok(Console {
            rx: Some(rx),
            editor: None,
        })
    }

    /// The line editor's hand-off, if the console is one.
    pub fn editor(&self) -> Option<&'static Mailbox> {
        self.editor
    }

    /// The next input, without waiting; `Closed` comes once, then nothing more. Wakes coalesce
    /// (one event may stand for many lines), so the loop calls this until it gives `None`.
    pub fn next(&mut self) -> Option<ConsoleInput> {
        let input = match self.rx.as_ref()?.try_recv() {
            Ok(input) => input,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => ConsoleInput::Closed(None),
        };
        if matches!(input, ConsoleInput::Closed(_)) {
            self.rx = None;
        }
        Some(input)
    }
}

/// Starts the thread that reads stdin line by line and hands each line to the loop.
fn spawn(tx: Sender<ConsoleInput>, waker: Arc<Waker>, quitting: Arc<AtomicBool>) -> io::Result<()> {
    // A background job (`chatd &`) that reads its terminal gets SIGTTIN, which stops the whole
    // process, loop included. With SIGTTIN ignored the read fails with EIO instead, and only the
    // console closes.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGTTIN, libc::SIG_IGN) };
    thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            let stdin = io::stdin();
            let mut stdin = stdin.lock();
            let mut line = Vec::new();
            let end = loop {
                let input = match read_line(&mut stdin, &mut line) {
                    Ok(Some(input)) => input,
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                };
                if let ConsoleInput::Line(text) = &input
                    && matches!(parse(text), Some(Ok(Command::Quit)))
                {
                    quitting.store(true, Ordering::SeqCst);
                }
                if tx.send(input).is_err() {
                    return; // The loop has finished.
                }
                let _ = waker.wake();
            };
            let _ = tx.send(ConsoleInput::Closed(end));
            let _ = waker.wake();
        })?;
    Ok(())
}

/// Reads one line of at most `MAX_CONSOLE_LINE` bytes (without its newline), or `None` at end of
/// file. A longer line is
/// read to its end and thrown away whole: cut in pieces, its tail would become a command of its own
/// (a reply to whoever spoke last).
fn read_line(stdin: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Option<ConsoleInput>> {
    line.clear();
    let n = stdin.take(MAX_CONSOLE_LINE + 1).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') && n as u64 > MAX_CONSOLE_LINE {
        skip_line(stdin)?;
        return Ok(Some(ConsoleInput::TooLong));
    }
    let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
    Ok(Some(ConsoleInput::Line(
        text.strip_suffix('\r').unwrap_or(&text).to_owned(),
    )))
}

/// Reads and drops the rest of the current line.
fn skip_line(stdin: &mut impl BufRead) -> io::Result<()> {
    loop {
        let chunk = match stdin.fill_buf() {
            Ok([]) => return Ok(()),
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        match chunk.iter().position(|&b| b == b'\n') {
            Some(end) => {
                stdin.consume(end + 1);
                return Ok(());
            }
            None => {
                let len = chunk.len();
                stdin.consume(len);
            }
        }
    }
}

/// One thing the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/to <id> <text>` or `@<id> <text>`: one line to one client.
    To { id: ConnId, text: String },
    /// `/all <text>`: one line to every client.
    All(String),
    /// Any line not starting with `/` or `@`: to the client that spoke last.
    Reply(String),
    /// `/list`: who is connected.
    List,
    /// `/kick <id>`: disconnect a client.
    Kick(ConnId),
    /// `/quit`: graceful shutdown.
    Quit,
    /// `/help`: the commands.
    Help,
    /// `/stats`: the figures `/metrics` serves.
    Stats,
    /// `/ban <id|CIDR> [MINUTES]`: kick every client in the block and refuse it until the ban
    /// ends (`None`: never).
    Ban {
        target: BanTarget,
        minutes: Option<u64>,
    },
    /// `/bans`: the bans in force.
    Bans,
    /// `/unban <CIDR>`: lift a ban.
    Unban(Cidr),
    /// `/to <id>` without text, in the line editor: bare lines go to `#<id>` from now on.
    Stick(ConnId),
    /// `/to` alone or `/last`, in the line editor: bare lines go to the last to speak again.
    Follow,
}

/// Whom `/ban` bans: a connected client's address, or a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanTarget {
    Client(ConnId),
    Block(Cidr),
}

/// Why a console line was not a command; each prints as one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    UnknownCommand(String),
    /// The command needs a client id, and what followed was not one.
    BadId {
        usage: &'static str,
    },
    /// The command needs text after the id.
    NoText {
        usage: &'static str,
    },
    /// The command's arguments are not what it takes.
    Usage {
        usage: &'static str,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownCommand(name) => write!(f, "unknown command {name} (try /help)"),
            ParseError::BadId { usage }
            | ParseError::NoText { usage }
            | ParseError::Usage { usage } => {
                write!(f, "usage: {usage}")
            }
        }
    }
}

/// Reads one console line. Returns `None` for a blank line, which does nothing.
pub fn parse(line: &str) -> Option<Result<Command, ParseError>> {
    if line.trim().is_empty() {
        return None;
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Some(Ok(Command::Reply(format!("/{escaped}"))));
    }
    if let Some(rest) = line.strip_prefix('@') {
        return Some(to(rest, "@<id> <text>"));
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Some(Ok(Command::Reply(line.to_owned())));
    };
    let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(match name {
        "to" => to(args, "/to <id> <text>"),
        "all" => match args.trim_start() {
            "" => Err(ParseError::NoText {
                usage: "/all <text>",
            }),
            text => Ok(Command::All(text.to_owned())),
        },
        "kick" => match (id(args), args.trim().contains(' ')) {
            (Some(id), false) => Ok(Command::Kick(id)),
            _ => Err(ParseError::BadId {
                usage: "/kick <id>",
            }),
        },
        "list" => Ok(Command::List),
        "quit" => Ok(Command::Quit),
        "help" => Ok(Command::Help),
        "stats" => Ok(Command::Stats),
        "ban" => ban(args),
        "bans" => match args.trim() {
            "" => Ok(Command::Bans),
            _ => Err(ParseError::Usage { usage: "/bans" }),
        },
        "unban" => (args.trim().parse().map(Command::Unban)).map_err(|_| ParseError::Usage {
            usage: "/unban <CIDR>",
        }),
        _ => Err(ParseError::UnknownCommand(format!("/{name}"))),
    })
}

/// Reads one line typed in the line editor: as [`parse`], and `/to <id>` without text makes
/// `#<id>` the target of bare lines, `/to` alone or `/last` returns to the last to speak. (Into a
/// pipe these stay what they were: usage errors and an unknown command.)
pub fn parse_typed(line: &str) -> Option<Result<Command, ParseError>> {
    let trimmed = line.trim();
    if trimmed == "/to" || trimmed == "/last" {
        return Some(Ok(Command::Follow));
    }
    if let Some(args) = trimmed.strip_prefix("/to ")
        && let Some(id) = id(args).filter(|_| !args.trim().contains(' '))
    {
        return Some(Ok(Command::Stick(id)));
    }
    parse(line)
}

fn to(args: &str, usage: &'static str) -> Result<Command, ParseError> {
    let args = args.trim_start();
    let (id_text, text) = args.split_once(' ').unwrap_or((args, ""));
    let id = id(id_text).ok_or(ParseError::BadId { usage })?;
    match text.trim_start() {
        "" => Err(ParseError::NoText { usage }),
        text => Ok(Command::To {
            id,
            text: text.to_owned(),
        }),
    }
}

/// `/ban`'s arguments: an id (`7`, `#7`; a bare number is never an address) or a block, then
/// minutes, from 1 to `MAX_BAN_MINUTES`.
fn ban(args: &str) -> Result<Command, ParseError> {
    let usage = "/ban <id|CIDR> [MINUTES]";
    let words: Vec<&str> = args.split_whitespace().collect();
    let (target, minutes) = match words[..] {
        [target] => (target, None),
        [target, minutes] => (target, Some(minutes)),
        _ => return Err(ParseError::Usage { usage }),
    };
    let target = match (id(target), target.parse()) {
        (Some(id), _) => BanTarget::Client(id),
        (None, Ok(cidr)) => BanTarget::Block(cidr),
        (None, Err(_)) => return Err(ParseError::Usage { usage }),
    };
    match minutes.map(str::parse) {
        None => Ok(Command::Ban {
            target,
            minutes: None,
        }),
        Some(Ok(m @ 1..=MAX_BAN_MINUTES)) => Ok(Command::Ban {
            target,
            minutes: Some(m),
        }),
        Some(_) => Err(ParseError::Usage { usage }),
    }
}

/// A client id as the operator types it: `7` or `#7`.
fn id(text: &str) -> Option<ConnId> {
    let text = text.trim();
    text.strip_prefix('#')
        .unwrap_or(text)
        .parse()
        .ok()
        .map(ConnId)
}

/// The longest timed ban, ten years: an end that far off cannot overflow an `Instant`.
pub const MAX_BAN_MINUTES: u64 = 10 * 366 * 24 * 60;

/// The longest console line taken, in bytes without its newline.
pub const MAX_CONSOLE_LINE: u64 = 64 * 1024;

/// The most clients one Tab offers.
pub const MAX_COMPLETIONS: usize = 64;

#[cfg(test)]
mod tests;
