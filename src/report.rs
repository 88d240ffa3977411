//! Everything the operator reads: logger setup, the report lines and the console's replies.
//!
//! Every line goes through `log` so that reports and console replies come out whole and in one
//! order, on stdout and, with `--log-file`, in that file too. Client text is escaped here, before
//! it reaches the logger, so no client can put a control character on the operator's screen.
//!
//! Deliberately not here: deciding who gets what or when a client is closed (that is `server.rs`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use log::{LevelFilter, info, warn};
use simplelog::{
    ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger, TerminalMode,
};

use crate::connection::{ConnId, Reason};
use crate::console::ParseError;
use crate::logfile::{self, LogFile};
use crate::logger::TurnLogger;

/// Starts the logger: on a terminal, simplelog's coloured `TermLogger` (one write per line, for
/// people); into a pipe or a file, the `TurnLogger` (formatted once, written once per loop turn).
/// With `log_file`, that file is appended to by a `TurnLogger` too.
pub fn init_logging(level: LevelFilter, log_file: Option<&Path>) -> io::Result<()> {
    let file = match log_file {
        Some(path) => Some(LogFile::open(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open log file {}: {e}", path.display()),
            )
        })?),
        None => None,
    };
    let terminal = io::stdout().is_terminal();
    let mut loggers: Vec<Box<dyn SharedLogger>> = Vec::new();
    if terminal {
        let mut config = ConfigBuilder::new();
        // Local time is read once here, while the process has one thread (the `time` crate
        // refuses later); if it cannot be had, reports carry UTC.
        let _ = config.set_time_offset_to_local();
        loggers.push(TermLogger::new(
            level,
            config.build(),
            TerminalMode::Stdout,
            ColorChoice::Auto,
        ));
    }
    if !terminal || file.is_some() {
        loggers.push(Box::new(TurnLogger::new(level, !terminal, file)));
    }
    CombinedLogger::init(loggers).map_err(io::Error::other)
}

/// Writes out whatever reports are buffered. The loop calls it once per turn and on every exit.
pub fn flush() {
    log::logger().flush();
    if let Some(trouble) = logfile::take_trouble() {
        warn!("{trouble}");
        log::logger().flush();
    }
}

/// A client's address as the operator reads it: an IPv4 client that reached an IPv6 listener is
/// shown as plain IPv4, not `[::ffff:a.b.c.d]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => write!(f, "{v4}:{}", v6.port()),
                None => write!(f, "{v6}"),
            },
            SocketAddr::V4(v4) => write!(f, "{v4}"),
        }
    }
}

pub fn listening(addr: SocketAddr) {
    info!("listening on {addr}");
}

pub fn max_clients(max: usize) {
    info!("accepting at most {max} clients");
}

pub fn connect(peer: Peer, id: ConnId, online: usize) {
    info!("connect {peer} {id} ({online} online)");
}

/// How a client is named in its message reports, `PEER #ID`: formatted once, when it connects.
pub fn label(peer: Peer, id: ConnId) -> String {
    format!("{peer} {id}")
}

/// One message from the client labelled `label`; `dropped` bytes past `--max-line` are counted,
/// not shown. This is the hot path: the line is built in a reused buffer, without `format!`.
pub fn message(label: &str, text: &[u8], dropped: usize) {
    LINE.with_borrow_mut(|line| {
        line.clear();
        line.push_str("message ");
        line.push_str(label);
        line.push_str(": ");
        escape_into(line, text);
        if dropped > 0 {
            line.push_str(&cut_marker(dropped));
        }
        info!("{line}");
    });
}

/// What follows a message cut at `--max-line`: `... [+N bytes]`.
pub fn cut_marker(dropped: usize) -> String {
    format!("... [+{dropped} bytes]")
}

thread_local! {
    /// The buffer `message` builds its line in, kept between calls.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

pub fn disconnect(peer: Peer, id: ConnId, reason: Reason, online: usize) {
    info!("disconnect {peer} {id} {reason} ({online} online)");
}

pub fn renamed(label: &str, old: &str, new: &str) {
    info!("nick {label}: {old} is now {new}");
}

pub fn refused(peer: Peer, why: &str) {
    info!("refused {peer} ({why})");
}

pub fn accept_failed(error: &io::Error) {
    warn!("accept failed: {error}; accepting again shortly");
}

pub fn accepting_again() {
    info!("accepting again");
}

pub fn console_closed(error: Option<&io::Error>) {
    match error {
        None => info!(
            "console closed (stdin at end of file); still serving, stop with SIGINT or SIGTERM"
        ),
        Some(e) => warn!("console closed (stdin: {e}); still serving, stop with SIGINT or SIGTERM"),
    }
}

pub fn console_sent(id: ConnId, peer: Peer) {
    info!("sent to {id} {peer}");
}

pub fn console_replied(id: ConnId, peer: Peer) {
    info!("replied to {id} {peer} (last to speak)");
}

pub fn console_sent_all(count: usize) {
    info!("sent to all ({count} clients)");
}

pub fn console_error(error: &ParseError) {
    warn!("console: {error}");
}

pub fn console_too_long(limit: u64) {
    warn!("console: line longer than {limit} bytes ignored");
}

pub fn console_not_sent(id: ConnId) {
    warn!("console: {id} could not take the line and is dropped (slow)");
}

pub fn console_no_client(id: ConnId) {
    warn!("console: no client {id} is connected (try /list)");
}

pub fn console_nobody_spoke() {
    warn!("console: no client has spoken yet; use /to <id> <text> or /all <text>");
}

pub fn console_list_header(online: usize) {
    info!("{online} online");
}

pub fn console_list_entry(id: ConnId, peer: Peer, age: Duration, lines_in: u64, lines_out: u64) {
    info!(
        "{id} {peer} connected {} ago, {lines_in} in, {lines_out} out",
        Age(age)
    );
}

pub fn console_help() {
    for line in HELP {
        info!("{line}");
    }
}

pub fn shutting_down(cause: &str) {
    info!("shutting down ({cause})");
}

pub fn stopped() {
    info!("stopped");
}

/// Makes client bytes safe for a terminal and a log line. Valid UTF-8 is kept as it is, except that
/// control characters other than tab (C0, DEL, C1), the bidi embeddings, overrides and isolates
/// (U+202A-U+202E, U+2066-U+2069) and the Unicode line and paragraph separators become `\xNN` or
/// `\u{NNNN}`; invalid UTF-8 bytes become `\xNN`. The result never holds a newline or an escape
/// sequence, so a client can neither move the cursor nor forge a report line.
pub fn escape(bytes: &[u8]) -> Cow<'_, str> {
    if let Some(text) = plain(bytes) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    escape_into(&mut out, bytes);
    Cow::Owned(out)
}

/// Appends `bytes`, escaped as [`escape`] says, to `out`.
pub fn escape_into(out: &mut String, bytes: &[u8]) {
    if let Some(text) = plain(bytes) {
        out.push_str(text);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if !is_unsafe(c) {
                out.push(c);
            } else if let Ok(byte) = u8::try_from(c) {
                push_hex_byte(out, byte);
            } else {
                out.push_str("\\u{");
                let code = c as u32;
                let digits = (32 - code.leading_zeros()).div_ceil(4);
                for shift in (0..digits).rev() {
                    out.push(char::from(HEX[(code >> (4 * shift) & 0xf) as usize]));
                }
                out.push('}');
            }
        }
        for &byte in chunk.invalid() {
            push_hex_byte(out, byte);
        }
    }
}

/// Appends `\xNN`.
fn push_hex_byte(out: &mut String, byte: u8) {
    out.push_str("\\x");
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xf)]));
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as text if they need no escaping: printable ASCII and tabs (the common case, checked
/// eight bytes at a time), or valid UTF-8 without a character to escape.
fn plain(bytes: &[u8]) -> Option<&str> {
    if is_printable_ascii(bytes) {
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.chars().any(is_unsafe)).then_some(text)
}

/// Whether every byte is in `0x20..=0x7e` or a tab. A word at a time: the classic bit tricks flag
/// a word holding a byte below 0x20 or above 0x7e, and only such a word is looked at byte by byte
/// (it may just hold a tab).
fn is_printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let printable = |b: &u8| (0x20..0x7f).contains(b) || *b == b'\t';
    let (words, rest) = bytes.as_chunks::<8>();
    for word in words {
        let w = u64::from_le_bytes(*word);
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let above_tilde = (w.wrapping_add(ONES) | w) & HIGH;
        if below_space | above_tilde != 0 && !word.iter().all(printable) {
            return false;
        }
    }
    rest.iter().all(printable)
}

fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// A connection's age as `1h02m03s`, `2m03s` or `3s`.
struct Age(Duration);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        match (h, m) {
            (0, 0) => write!(f, "{s}s"),
            (0, _) => write!(f, "{m}m{s:02}s"),
            _ => write!(f, "{h}h{m:02}m{s:02}s"),
        }
    }
}

/// The console's `/help`; README.md lists the same commands.
const HELP: &[&str] = &[
    "commands:",
    "  /to <id> <text>   send <text> to client #<id> (also: @<id> <text>)",
    "  /all <text>       send <text> to every client",
    "  <text>            reply to the client that spoke last (//text sends /text)",
    "  /list             list clients: id, address, time connected, messages in and out",
    "  /kick <id>        disconnect client #<id>",
    "  /quit             shut down: tell every client, flush, exit (so do SIGINT and SIGTERM)",
    "  /help             this list",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_and_unicode_text_borrowed() {
        for text in [
            "hello, world",
            "tab\there",
            "你好，世界",
            "emoji 🎉 and accents: café",
            "",
        ] {
            assert!(matches!(escape(text.as_bytes()), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(escape(b"\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
        assert_eq!(escape(b"a\rb\nc\0d\x7f"), "a\\x0db\\x0ac\\x00d\\x7f");
        assert_eq!(escape("c1:\u{85}\u{9b}".as_bytes()), "c1:\\x85\\x9b");
    }

    #[test]
    fn escapes_bidi_controls_and_line_separators() {
        assert_eq!(escape("abc\u{202e}def".as_bytes()), "abc\\u{202e}def");
        assert_eq!(
            escape("\u{2066}x\u{2069}".as_bytes()),
            "\\u{2066}x\\u{2069}"
        );
        assert_eq!(escape("a\u{2028}b".as_bytes()), "a\\u{2028}b");
    }

    #[test]
    fn escapes_invalid_utf8_bytes() {
        assert_eq!(escape(b"ok\xff\xfe"), "ok\\xff\\xfe");
        // Overlong encoding of '/' and a lone continuation byte.
        assert_eq!(escape(b"\xc0\xaf\x80"), "\\xc0\\xaf\\x80");
        // A truncated multi-byte sequence next to a valid one.
        assert_eq!(
            escape(
                "é".as_bytes()
                    .split_last()
                    .map(|(_, head)| head)
                    .unwrap_or_default()
            ),
            "\\xc3"
        );
    }

    #[test]
    fn printable_ascii_check_matches_the_plain_definition() {
        let printable = |b: u8| (0x20..0x7f).contains(&b) || b == b'\t';
        for b in 0..=255u8 {
            for at in 0..17 {
                let mut bytes = vec![b'a'; 17];
                bytes[at] = b;
                assert_eq!(
                    is_printable_ascii(&bytes),
                    printable(b),
                    "byte {b:#04x} at {at}"
                );
            }
        }
    }

    #[test]
    fn escaped_text_has_no_control_characters_for_any_byte() {
        for b in 0..=255u8 {
            let bytes = [b'x', b, b'y'];
            let text = escape(&bytes);
            assert!(!text.chars().any(is_unsafe), "byte {b:#04x} gave {text:?}");
        }
    }

    #[test]
    fn shows_mapped_ipv4_peers_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4000"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Peer(mapped).to_string(), "127.0.0.1:4000");
        let v6: SocketAddr = "[::1]:4000".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Peer(v6).to_string(), "[::1]:4000");
    }

    #[test]
    fn formats_ages() {
        assert_eq!(Age(Duration::from_secs(5)).to_string(), "5s");
        assert_eq!(Age(Duration::from_secs(125)).to_string(), "2m05s");
        assert_eq!(Age(Duration::from_secs(3725)).to_string(), "1h02m05s");
    }
}
