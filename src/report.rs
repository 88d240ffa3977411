//! Everything the operator reads: logger setup, the report lines and the console's replies.
//!
//! Every line goes through `log` so that reports and console replies come out whole and in one
//! order, on stdout and, with `--log-file`, in that file too; all but one: the per-line message
//! report goes straight to the same sinks without `log` (see [`Messages`]), into the same buffer,
//! so the order holds. Client text is escaped (`escape.rs`) before it reaches a sink, so no client can
//! put a control character on the operator's screen. docs/design.md says how a report travels
//! from here to the terminal, a pipe and the log file.
//!
//! The console's answers are in `report/console.rs`, the terminal sink in `report/terminal.rs`.
//!
//! Deliberately not here: deciding who gets what or when a client is closed (that is `chat.rs`).

use std::fmt;
use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record, info, warn};
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode, WriteLogger};

use crate::escape::{escape_into, push_cut_marker};
use crate::ids::{ConnId, Peer, Reason};
use crate::logfile::{self, LogFile};
use crate::logger::{Held, LogFormat, LogTime, TurnLogger};

mod bus;
mod console;
mod service;
mod terminal;

pub use bus::*;
pub use console::*;
pub use service::*;
use terminal::{Out, Terminal, TurnText};

/// Starts the logger: on a terminal, simplelog's coloured `TermLogger` (one write per line, for
/// people); into a pipe or a file, the `TurnLogger` (formatted once, written once per loop turn).
/// With `log_file`, that file is appended to by a `TurnLogger` too, rotated at `log_max_size`.
/// `format` json goes to stdout even when it is a terminal. `time` (`--log-time`) applies to every
/// sink; left out, a terminal and stdout alone show `HH:MM:SS` (as ever), and the log file or a
/// json log get the RFC 3339 date and time, which stdout then shares (one line is made for both).
///
/// `level` filters every line but the ones a script needs to find the server (`listening on`),
/// which are shown at any level but `off`.
pub fn init_logging(
    level: LevelFilter,
    log_file: Option<&Path>,
    log_max_size: Option<u64>,
    format: LogFormat,
    time: Option<LogTime>,
) -> io::Result<()> {
    let file = match log_file {
        Some(path) => Some(LogFile::open(path, log_max_size).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open log file {}: {e}", path.display()),
            )
        })?),
        None => None,
    };
    // The sinks pass everything the gate lets through: the gate alone applies `level`.
    let sink_level = if level == LevelFilter::Off {
        LevelFilter::Off
    } else {
        level.max(LevelFilter::Info)
    };
    let terminal = io::stdout().is_terminal() && format == LogFormat::Text;
    let term = terminal.then(|| {
        let mut config = ConfigBuilder::new();
        // Local time is read once here, while the process has one thread (the `time` crate
        // refuses later); if it cannot be had, reports carry UTC.
        let _ = config.set_time_offset_to_local();
        let stamp = match time {
            None | Some(LogTime::Clock) => "HH:MM:SS ".len(),
            Some(LogTime::Rfc3339) => {
                // simplelog's RFC 3339 time is local, with as many fraction digits as it needs:
                // wrapping counts the longest it can be.
                config.set_time_format_rfc3339();
                "2026-11-30T12:00:01.123456789+01:00 ".len()
            }
            Some(LogTime::None) => {
                config.set_time_level(LevelFilter::Off);
                0
            }
        };
        let out = match crate::console::mailbox_for_terminal() {
            // The console will be a line editor: reports are drawn above the line being typed.
            Some(mailbox) => {
                let text = TurnText::default();
                Out::Editor {
                    logger: WriteLogger::new(sink_level, config.build(), text.clone()),
                    text,
                    mailbox,
                    colour: colour_wanted(),
                }
            }
            None => Out::Term(TermLogger::new(
                sink_level,
                config.build(),
                TerminalMode::Stdout,
                ColorChoice::Auto,
            )),
        };
        Terminal { out, stamp }
    });
    let turn_time = time.unwrap_or(if file.is_some() || format == LogFormat::Json {
        LogTime::Rfc3339
    } else {
        LogTime::Clock
    });
    let turn = (!terminal || file.is_some())
        .then(|| TurnLogger::new(sink_level, format, turn_time, !terminal, file));
    install(Gate { level, term, turn }, sink_level)
}

/// For the benchmarks: reports made as for a pipe, at level `info`, and written nowhere, so that
/// what is measured is their making.
#[doc(hidden)]
pub fn init_logging_nowhere() -> io::Result<()> {
    let turn = TurnLogger::new(
        LevelFilter::Info,
        LogFormat::Text,
        LogTime::Clock,
        false,
        None,
    );
    install(
        Gate {
            level: LevelFilter::Info,
            term: None,
            turn: Some(turn),
        },
        LevelFilter::Info,
    )
}

/// Whether the line editor colours each report's level, as `TermLogger`'s `ColorChoice::Auto`
/// decides for the terminal: unless `NO_COLOR` is set or `TERM` is unset or `dumb`.
fn colour_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none()
        && std::env::var_os("TERM").is_some_and(|term| term != "dumb")
}

fn install(gate: Gate, max_level: LevelFilter) -> io::Result<()> {
    // The gate lives as long as the process: `log` needs it `'static`, and so does `message`,
    // which reaches it through `GATE` rather than through `log`.
    let gate: &'static Gate = Box::leak(Box::new(gate));
    log::set_logger(gate).map_err(io::Error::other)?;
    log::set_max_level(max_level);
    // `set_logger` succeeds once, so this is the first and only `set`.
    let _ = GATE.set(gate);
    Ok(())
}

/// The installed gate, for the per-line message reports; unset until `init_logging` (as in the
/// unit tests, which report nowhere).
static GATE: OnceLock<&'static Gate> = OnceLock::new();

/// The installed logger: applies `--log-level`, lets the lines marked `ALWAYS` through at any
/// level but `off`, and hands each record to each sink: the terminal and the turn's buffer (for a
/// pipe and the log file).
struct Gate {
    level: LevelFilter,
    term: Option<Terminal>,
    turn: Option<TurnLogger>,
}

impl Log for Gate {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
            || (metadata.target() == ALWAYS && self.level != LevelFilter::Off)
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            if let Some(term) = &self.term {
                term.log(record);
            }
            if let Some(turn) = &self.turn {
                turn.log(record);
            }
        }
    }

    fn flush(&self) {
        if let Some(term) = &self.term {
            term.flush();
        }
        if let Some(turn) = &self.turn {
            turn.flush();
        }
    }
}

/// The target of the lines shown at any `--log-level` but `off`.
const ALWAYS: &str = "chatd::always";

/// Writes out whatever reports are buffered. The loop calls it once per turn and on every exit.
pub fn flush() {
    log::logger().flush();
    let troubles = logfile::take_trouble();
    if !troubles.is_empty() {
        for trouble in troubles {
            warn!(event = "log_file_trouble"; "{trouble}");
        }
        log::logger().flush();
    }
}

/// Shown at any level but `off`: scripts read it to find the port.
pub fn listening(addr: SocketAddr, tls: bool) {
    if tls {
        log::log!(target: ALWAYS, Level::Info, event = "listening", addr:% = addr, tls = true; "listening on {addr} tls");
    } else {
        log::log!(target: ALWAYS, Level::Info, event = "listening", addr:% = addr; "listening on {addr}");
    }
}

/// Shown at any level but `off`, as `listening on` is: scripts read it to find the port.
pub fn metrics_listening(addr: SocketAddr) {
    log::log!(target: ALWAYS, Level::Info, event = "metrics_listening", addr:% = addr; "metrics on {addr}");
}

pub fn max_clients(max: usize) {
    info!(event = "max_clients", max = max; "accepting at most {}", Count(max, "client"));
}

pub fn connect(peer: Peer, id: ConnId, tls: bool, online: usize) {
    let over = if tls { " tls" } else { "" };
    info!(event = "connect", id = id.0, peer:% = peer, tls = tls, online = online; "connect {peer} {id}{over} ({online} online)");
}

/// A label's `PEER` and the number of its `#ID`, for the fields of a JSON report.
fn label_parts(label: &str) -> (&str, u64) {
    match label.rsplit_once(" #") {
        Some((peer, id)) => (peer, id.parse().unwrap_or(0)),
        None => (label, 0),
    }
}

/// How a client is named in its message reports, `PEER #ID`: formatted once, when it connects.
pub fn label(peer: Peer, id: ConnId) -> String {
    format!("{peer} {id}")
}

/// The message reports of one client's read, taken when the read begins and dropped when it ends
/// (`report::messages()`).
///
/// This is the per-line hot path, and it bypasses `log`: no `fmt::Arguments`, no thread-local, no
/// dispatch through the gate's sinks, no lock per line. Into a pipe and the log file, the turn's
/// buffer is held for the read and each line is copied into it (`logger::Held`); a report `log`
/// brings meanwhile is taken in before the next line, so every report keeps its place. A terminal
/// still gets each line as a `log` record, from simplelog's `TermLogger` (which writes one record at
/// a time anyway), broken into rows when longer than the terminal is wide (`Terminal`).
pub struct Messages {
    /// The turn's buffer, for a pipe and the log file; `None` without them or below level `info`.
    turn: Option<Held<'static>>,
    /// The terminal; `None` without one or below level `info`.
    term: Option<&'static Terminal>,
    /// Where a line for the terminal is made, kept for the read.
    term_line: String,
}

/// Starts the message reports of one read (see [`Messages`]).
pub fn messages() -> Messages {
    match GATE.get() {
        Some(gate) if gate.level >= LevelFilter::Info => Messages {
            turn: gate.turn.as_ref().map(TurnLogger::hold),
            term: gate.term.as_ref(),
            term_line: String::new(),
        },
        _ => Messages {
            turn: None,
            term: None,
            term_line: String::new(),
        },
    }
}

impl Messages {
    /// One message from the client labelled `label`; `dropped` bytes past `--max-line` are
    /// counted, not shown. Inlined into `Chat::hear`: the per-line hot path.
    #[inline]
    pub fn message(&mut self, label: &str, text: &[u8], dropped: usize) {
        if let Some(turn) = &mut self.turn {
            turn.message(label, text, dropped);
        }
        if let Some(term) = self.term {
            message_to_terminal(term, &mut self.term_line, label, text, dropped);
        }
    }
}

/// The message report as `log::info!` would hand it to the terminal, from this module; made in
/// `line`.
#[inline(never)]
fn message_to_terminal(
    term: &Terminal,
    line: &mut String,
    label: &str,
    text: &[u8],
    dropped: usize,
) {
    line.clear();
    line.push_str("message ");
    line.push_str(label);
    line.push_str(": ");
    escape_into(line, text);
    if dropped > 0 {
        push_cut_marker(line, dropped);
    }
    term.log(
        &Record::builder()
            .args(format_args!("{line}"))
            .level(Level::Info)
            .target(module_path!())
            .module_path_static(Some(module_path!()))
            .file_static(Some(file!()))
            .line(Some(line!()))
            .build(),
    );
}

/// A line its client was in the middle of when the server closed it: never shown as whole.
pub fn message_cut(label: &str, text: &[u8], dropped: usize) {
    let mut line = String::with_capacity(label.len() + text.len() + 24);
    escape_into(&mut line, text);
    if dropped > 0 {
        push_cut_marker(&mut line, dropped);
    }
    let (peer, id) = label_parts(label);
    info!(event = "message", id = id, peer = peer, text = line.as_str(), dropped = dropped, cut = true; "message {label}: {line} (cut)");
}

/// One of the room's commands (`/nick`, `/who`, `/msg`, `/help`) from a member: reported as what
/// it is, not as a chat message. Not the hot path: the room's ordinary lines are messages.
pub fn command(label: &str, text: &[u8], dropped: usize) {
    let mut line = String::with_capacity(text.len() + 24);
    escape_into(&mut line, text);
    if dropped > 0 {
        push_cut_marker(&mut line, dropped);
    }
    let (peer, id) = label_parts(label);
    info!(event = "command", id = id, peer = peer, text = line.as_str(), dropped = dropped; "command {label}: {line}");
}

/// What a client the server closed sent past what chatd hears of it (`HEAR_OUT_CAP`, or the end
/// of its grace period): counted, never relayed.
pub fn unheard(label: &str, bytes: usize) {
    let (peer, id) = label_parts(label);
    info!(event = "unheard", id = id, peer = peer, bytes = bytes; "dropped {label}: {bytes} bytes not heard");
}

pub fn disconnect(peer: Peer, id: ConnId, reason: Reason, online: usize) {
    info!(event = "disconnect", id = id.0, peer:% = peer, reason:% = reason, online = online; "disconnect {peer} {id} {reason} ({online} online)");
}

pub fn renamed(label: &str, old: &str, new: &str) {
    let (peer, id) = label_parts(label);
    info!(event = "nick", id = id, peer = peer, old = old, new = new; "nick {label}: {old} is now {new}");
}

pub fn refused(peer: Peer, why: &str) {
    info!(event = "refused", peer:% = peer, reason = why; "refused {peer} ({why})");
}

/// `1 client`, `2 clients`.
struct Count(usize, &'static str);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Count(n, noun) = *self;
        write!(f, "{n} {noun}{}", if n == 1 { "" } else { "s" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_the_singular_and_plural() {
        assert_eq!(Count(1, "client").to_string(), "1 client");
        assert_eq!(Count(0, "client").to_string(), "0 clients");
        assert_eq!(Count(2, "client").to_string(), "2 clients");
    }
}
