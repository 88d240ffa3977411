//! Reading chatd's report lines, `HH:MM:SS [LEVEL] body`: the body apart from the logger's prefix,
//! what kind of report it is, and the fields of the reports the tests and the load bench look
//! inside (`listening on`, `connect`, `message`, `command`, `disconnect`, `refused`).
//!
//! Shared by `tests/common` (and through it `tests/soak.rs` and the other tests) and
//! `benches/load.rs`, each including this file with `#[path]`, so that the report formats of
//! `src/report.rs` are read in one place. Deliberately not here: waiting for lines
//! (`tests/common`), counting them in a log file (`benches/load/targets.rs`), or any I/O; nothing
//! here panics on a line it cannot read, it says `None`.

// Each includer uses its own part: the tests want bodies and fields, the bench kinds and reasons.
#![allow(dead_code)]

use std::net::SocketAddr;

/// A report line's body: the text after the logger's `HH:MM:SS [LEVEL] `, or the whole line if it
/// has no such prefix.
pub fn body(line: &str) -> &str {
    body_start(line.as_bytes()).map_or(line, |start| &line[start..])
}

/// [`body`] for a line read as bytes (a log file is followed without checking its UTF-8); `None`
/// if the line has no prefix.
pub fn body_bytes(line: &[u8]) -> Option<&[u8]> {
    body_start(line).map(|start| &line[start..])
}

/// Where the body starts: after the first `] `, if it is within the prefix's length. Only the
/// prefix is searched, so a long line costs no more than a short one, and a `]` in the body (an
/// IPv6 peer `[::1]:PORT`) is never taken for the prefix's.
fn body_start(line: &[u8]) -> Option<usize> {
    let close = line.iter().take(PREFIX_MAX).position(|&b| b == b']')?;
    (line.get(close + 1) == Some(&b' ')).then_some(close + 2)
}

/// What a report body says, as far as anyone here reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Listening,
    Connect,
    Message,
    /// One of the `--relay` room's commands (`/nick`, `/who`, `/msg`, `/help`) from a member: a
    /// line it sent and the server heard, as a message is.
    Command,
    Disconnect,
    Refused,
}

/// The kind of report `body` is, from its first word alone: cheap enough for every line of a log
/// of millions (the load bench counts messages this way while it measures).
pub fn kind(body: &[u8]) -> Option<Kind> {
    KINDS
        .into_iter()
        .find(|kind| body.starts_with(kind.prefix().as_bytes()))
}

/// Every kind, messages first: they are nearly every line of a busy log.
const KINDS: [Kind; 6] = [
    Kind::Message,
    Kind::Connect,
    Kind::Command,
    Kind::Disconnect,
    Kind::Refused,
    Kind::Listening,
];

impl Kind {
    /// The words a body of this kind starts with.
    fn prefix(self) -> &'static str {
        match self {
            Kind::Listening => "listening on ",
            Kind::Connect => "connect ",
            Kind::Message => "message ",
            Kind::Command => "command ",
            Kind::Disconnect => "disconnect ",
            Kind::Refused => "refused ",
        }
    }
}

/// For a `--log-format json` line: the kind of its `event`, read from that field alone (it comes
/// early in the line), without parsing the rest.
pub fn json_kind(line: &[u8]) -> Option<Kind> {
    let event = json_str(line, b"event")?;
    KINDS
        .into_iter()
        .find(|kind| kind.prefix().as_bytes().strip_suffix(b" ") == Some(event))
        .or_else(|| (event == b"listening").then_some(Kind::Listening))
}

/// The raw value of the string field `key` in a JSON line (escapes left as they are): enough for
/// the fields chatd writes without escapes (`event`, `addr`, `reason`, `peer`).
pub fn json_str<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    // On the stack, and found with memmem: the load bench reads millions of these lines on the
    // cores chatd runs on.
    let mut buf = [0u8; 64];
    let len = key.len() + 4;
    let pattern = buf.get_mut(..len)?;
    pattern[0] = b'"';
    pattern[1..=key.len()].copy_from_slice(key);
    pattern[key.len() + 1..].copy_from_slice(b"\":\"");
    let at = memchr::memmem::find(line, pattern)? + len;
    let rest = &line[at..];
    let end = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..end])
}

/// The address of a `listening` report, in either format.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    if line.starts_with('{') {
        if json_str(line.as_bytes(), b"event")? != b"listening" {
            return None;
        }
        return std::str::from_utf8(json_str(line.as_bytes(), b"addr")?)
            .ok()?
            .parse()
            .ok();
    }
    match parse(body(line))? {
        Report::Listening(addr) => Some(addr),
        _ => None,
    }
}

/// A report body read into its fields. `peer` is `IP:PORT` as the server saw the client, `id` the
/// number of its `#id`, `online` the count after the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report<'a> {
    /// `listening on ADDR`
    Listening(SocketAddr),
    /// `connect PEER #ID [tls] (N online)`
    Connect {
        peer: &'a str,
        id: u64,
        online: usize,
    },
    /// `message PEER #ID: TEXT`
    Message {
        peer: &'a str,
        id: u64,
        text: &'a str,
    },
    /// `command PEER #ID: TEXT`, `TEXT` the whole line (`/nick bob`)
    Command {
        peer: &'a str,
        id: u64,
        text: &'a str,
    },
    /// `disconnect PEER #ID REASON (N online)`
    Disconnect {
        peer: &'a str,
        id: u64,
        reason: &'a str,
        online: usize,
    },
    /// `refused PEER (WHY)`
    Refused { peer: &'a str, why: &'a str },
}

/// Reads a report body (see [`body`]); `None` if it is of no [`Kind`] or not well formed.
pub fn parse(body: &str) -> Option<Report<'_>> {
    let kind = kind(body.as_bytes())?;
    let rest = &body[kind.prefix().len()..];
    Some(match kind {
        // A TLS listener's ends in ` tls`.
        Kind::Listening => Report::Listening(rest.split(' ').next()?.parse().ok()?),
        Kind::Connect => {
            let (peer, id, online) = label(rest, " ")?;
            Report::Connect {
                peer,
                id,
                // A TLS client's says `tls` before the count.
                online: online_of(online.strip_prefix("tls ").unwrap_or(online))?,
            }
        }
        Kind::Message => {
            let (peer, id, text) = label(rest, ": ")?;
            Report::Message { peer, id, text }
        }
        Kind::Command => {
            let (peer, id, text) = label(rest, ": ")?;
            Report::Command { peer, id, text }
        }
        Kind::Disconnect => {
            let (peer, id, rest) = label(rest, " ")?;
            let (reason, online) = rest.split_once(' ')?;
            Report::Disconnect {
                peer,
                id,
                reason,
                online: online_of(online)?,
            }
        }
        Kind::Refused => {
            let (peer, why) = rest.split_once(' ')?;
            let why = why.strip_prefix('(')?.strip_suffix(')')?;
            Report::Refused { peer, why }
        }
    })
}

/// The client's label `PEER #ID` at the start of `text`, up to `separator`: the peer, the id's
/// number, and what follows the separator.
fn label<'a>(text: &'a str, separator: &str) -> Option<(&'a str, u64, &'a str)> {
    let (peer, rest) = text.split_once(' ')?;
    let (id, rest) = rest.split_once(separator)?;
    Some((peer, id.strip_prefix('#')?.parse().ok()?, rest))
}

/// `(N online)` as N.
fn online_of(text: &str) -> Option<usize> {
    text.strip_prefix('(')?
        .strip_suffix(" online)")?
        .parse()
        .ok()
}

/// The longest the logger's `HH:MM:SS [LEVEL] ` can be, with room to spare.
const PREFIX_MAX: usize = 40;
