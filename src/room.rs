//! The `--relay` room: what a client's line asks of the room, and every line the room sends to
//! clients (relayed and private messages, announcements, replies to `/nick`, `/who`, `/msg` and
//! `/help`).
//!
//! Relayed text is escaped exactly as the operator's reports are, so no client can put a control
//! character on another client's terminal. Every line the server says starts with `MARK` (`◆`),
//! which no member's text can carry unescaped. Each line is built once, as a shareable `Rc<[u8]>`.
//!
//! Deliberately not here: who receives a line (that is `chat.rs`), which names may be taken
//! (`names.rs`), or any socket.

use std::rc::Rc;

use crate::escape::escape_into;
use crate::queue;

/// What a client's line means in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// Text for everyone else (a leading `//` already turned into `/`).
    Text(Vec<u8>),
    /// `/nick NAME`.
    Nick(Vec<u8>),
    /// `/who`.
    Who,
    /// `/msg NAME text`: `text` for the member called `to` alone. Either may be empty (then the
    /// asker is told how it goes).
    Msg { to: Vec<u8>, text: Vec<u8> },
    /// `/help`.
    Help,
    /// Any other `/...` line: not relayed.
    Unknown(Vec<u8>),
}

/// Reads one client line.
pub fn parse(line: &[u8]) -> Said {
    if let Some(rest) = line.strip_prefix(b"/") {
        if rest.starts_with(b"/") {
            return Said::Text(rest.to_vec());
        }
        let (command, arg) = match rest.iter().position(|&b| b == b' ') {
            Some(space) => (&rest[..space], &rest[space + 1..]),
            None => (rest, &b""[..]),
        };
        return match command {
            b"nick" => Said::Nick(arg.trim_ascii().to_vec()),
            b"who" => Said::Who,
            b"msg" => {
                let arg = arg.trim_ascii_start();
                let (to, text) = match arg.iter().position(|&b| b == b' ') {
                    Some(space) => (&arg[..space], arg[space + 1..].trim_ascii_start()),
                    None => (arg, &b""[..]),
                };
                Said::Msg {
                    to: to.to_vec(),
                    text: text.to_vec(),
                }
            }
            b"help" => Said::Help,
            _ => Said::Unknown(line.to_vec()),
        };
    }
    Said::Text(line.to_vec())
}

impl Said {
    /// Whether it is one of the room's commands, which the operator sees reported as a `command`
    /// rather than a `message`. An unknown `/...` line is reported as the message it may have
    /// been meant as.
    pub fn is_command(&self) -> bool {
        matches!(
            self,
            Said::Nick(_) | Said::Who | Said::Msg { .. } | Said::Help
        )
    }
}

/// `<name>: <text>`, the text escaped.
pub fn message(name: &str, text: &[u8]) -> Rc<[u8]> {
    let mut line = String::with_capacity(name.len() + 2 + text.len() + 1);
    line.push_str(name);
    line.push_str(": ");
    escape_into(&mut line, text);
    line.push('\n');
    Rc::from(line.into_bytes())
}

/// The operator's `/all` in the room: `◆ server: <text>`, escaped like a member's.
pub fn from_server(text: &str) -> Rc<[u8]> {
    message(&format!("{MARK} server"), text.as_bytes())
}

/// The operator's line to one member (`/to`, a bare reply): `◆ server (to you): <text>`.
pub fn to_you(text: &str) -> Rc<[u8]> {
    message(&format!("{MARK} server (to you)"), text.as_bytes())
}

/// A member's `/msg` as its one recipient reads it: `<from> (to you): <text>`, the text escaped.
pub fn private(from: &str, text: &[u8]) -> Rc<[u8]> {
    let mut label = String::with_capacity(from.len() + 9);
    label.push_str(from);
    label.push_str(" (to you)");
    message(&label, text)
}

/// A line the server says in the room: `◆ <text>`.
pub fn server_says(text: &[u8]) -> Rc<[u8]> {
    let mut line = Vec::with_capacity(MARK.len() + 1 + text.len() + 1);
    line.extend_from_slice(MARK.as_bytes());
    line.push(b' ');
    line.extend_from_slice(text);
    line.push(b'\n');
    line.into()
}

pub fn joined(name: &str, online: usize) -> Rc<[u8]> {
    queue::line(format!("{MARK} {name} joined ({online} online)").as_bytes())
}

pub fn left(name: &str, reason: impl std::fmt::Display) -> Rc<[u8]> {
    queue::line(format!("{MARK} {name} left ({reason})").as_bytes())
}

pub fn renamed(old: &str, new: &str) -> Rc<[u8]> {
    queue::line(format!("{MARK} {old} is now {new}").as_bytes())
}

pub fn you_are(name: &str) -> Rc<[u8]> {
    queue::line(format!("{MARK} you are now {name}").as_bytes())
}

/// `◆ <n> online: a, b, c`, naming at most `MAX_WHO` (`... and <k> more`): the reply is the
/// asker's alone, and a big room must not make it big.
pub fn who<'a>(names: impl Iterator<Item = &'a str>) -> Rc<[u8]> {
    let names: Vec<&str> = names.collect();
    let shown = &names[..names.len().min(MAX_WHO)];
    let more = match names.len() - shown.len() {
        0 => String::new(),
        k => format!(", and {k} more"),
    };
    match names.len() {
        0 => queue::line(format!("{MARK} nobody else is online").as_bytes()),
        n => queue::line(format!("{MARK} {n} online: {}{more}", shown.join(", ")).as_bytes()),
    }
}

pub fn bad_name() -> Rc<[u8]> {
    queue::line(
        format!("{MARK} a name is 1 to 32 ASCII letters (a-z, A-Z), digits, _ or -").as_bytes(),
    )
}

pub fn name_taken(name: &str) -> Rc<[u8]> {
    queue::line(format!("{MARK} the name {name} is taken").as_bytes())
}

/// A member's name was claimed on another instance while the bus was away.
pub fn name_lost(name: &str) -> Rc<[u8]> {
    queue::line(
        format!("{MARK} the name {name} was taken elsewhere while the room was split").as_bytes(),
    )
}

/// A name whose holder left less than a minute ago, from another address.
pub fn name_held(name: &str) -> Rc<[u8]> {
    queue::line(
        format!("{MARK} the name {name} was in use until just now: it is kept for its last holder for a minute")
            .as_bytes(),
    )
}

/// `/msg` to a name nobody here has (the name escaped, and echoed at most `MAX_ECHO` bytes).
pub fn no_such_name(name: &[u8]) -> Rc<[u8]> {
    let mut text = format!("{MARK} nobody here is called ");
    push_echo(&mut text, name);
    text.push_str(" (try /who)");
    queue::line(text.as_bytes())
}

/// `/msg` to a member of another instance that did not answer in time (the bus stuck, or that
/// instance stopped): not delivered, and never will be (the name escaped, echoed as above).
pub fn no_answer(name: &[u8]) -> Rc<[u8]> {
    let mut text = format!("{MARK} no answer for /msg ");
    push_echo(&mut text, name);
    text.push_str(": not delivered");
    queue::line(text.as_bytes())
}

/// `/msg` without a name or without text.
pub fn msg_usage() -> Rc<[u8]> {
    queue::line(format!("{MARK} usage: /msg NAME text").as_bytes())
}

/// `/help`: the room's commands, in one line.
pub fn help() -> Rc<[u8]> {
    queue::line(format!("{MARK} {HELP}").as_bytes())
}

pub fn unknown_command(line: &[u8]) -> Rc<[u8]> {
    let mut text = format!("{MARK} unknown command ");
    let command = line.split(|&b| b == b' ').next().unwrap_or_default();
    push_echo(&mut text, command);
    text.push_str(" (try /help; start a line with // to say /...)");
    queue::line(text.as_bytes())
}

/// `bytes` escaped, at most `MAX_ECHO` of them: a reply is the client's alone, not to be made big.
fn push_echo(text: &mut String, bytes: &[u8]) {
    if bytes.len() <= MAX_ECHO {
        return escape_into(text, bytes);
    }
    // Cut before a character the cut would split (a UTF-8 continuation byte starts the rest).
    let mut cut = MAX_ECHO;
    while cut > MAX_ECHO - 3 && bytes[cut] & 0xc0 == 0x80 {
        cut -= 1;
    }
    escape_into(text, &bytes[..cut]);
    text.push_str("...");
}

/// The room's commands, as `/help` gives them.
const HELP: &str = "commands: /nick NAME (1 to 32 ASCII letters, digits, _ or -), /who, \
     /msg NAME text (to that member alone), /help, exit to leave; start a line with // to say /...";
/// The most names `/who` and a newcomer's who-line list.
const MAX_WHO: usize = 100;
/// The most bytes of an unknown command echoed back.
const MAX_ECHO: usize = 32;

/// What every line from the server starts with in the room. A member's line starts with its name,
/// and this mark is escaped wherever it appears in a member's text (`escape.rs`), so however a
/// member pads its text, no row of it on another member's screen can start like a server line.
pub const MARK: &str = crate::escape::SERVER_MARK;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_lines() {
        assert_eq!(parse(b"hello"), Said::Text(b"hello".to_vec()));
        assert_eq!(parse(b"//etc"), Said::Text(b"/etc".to_vec()));
        assert_eq!(parse(b"/nick  bob "), Said::Nick(b"bob".to_vec()));
        assert_eq!(parse(b"/nick"), Said::Nick(Vec::new()));
        assert_eq!(parse(b"/who"), Said::Who);
        assert_eq!(parse(b"/quit now"), Said::Unknown(b"/quit now".to_vec()));
        let msg = |to: &[u8], text: &[u8]| Said::Msg {
            to: to.to_vec(),
            text: text.to_vec(),
        };
        assert_eq!(parse(b"/msg bob hi  there"), msg(b"bob", b"hi  there"));
        assert_eq!(parse(b"/msg   bob   hi"), msg(b"bob", b"hi"));
        assert_eq!(parse(b"/msg bob"), msg(b"bob", b""));
        assert_eq!(parse(b"/msg"), msg(b"", b""));
        assert_eq!(parse(b"/help"), Said::Help);
        assert!(parse(b"/who").is_command() && parse(b"/msg a b").is_command());
        assert!(!parse(b"/quit").is_command() && !parse(b"//who").is_command());
        assert_eq!(parse(b""), Said::Text(Vec::new()));
    }

    #[test]
    fn private_replies_stay_small_in_a_big_room() {
        let names: Vec<String> = (1..=150).map(|i| format!("#{i}")).collect();
        let line = who(names.iter().map(String::as_str));
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.starts_with("◆ 150 online: #1, #2, "), "{text}");
        assert!(text.ends_with(", #100, and 50 more\n"), "{text}");
        let long = [b'/'; 1]
            .iter()
            .chain([0xff; 65_536].iter())
            .copied()
            .collect::<Vec<u8>>();
        assert!(unknown_command(&long).len() < 250);
        assert!(no_such_name(&long).len() < 250);
    }

    /// The echo of a long command is cut before a character, never inside one (a cut `é` showed
    /// as `\xc3`).
    #[test]
    fn an_echo_is_cut_between_characters() {
        let command = format!("/zz{}", "é".repeat(20));
        let echo = String::from_utf8(unknown_command(command.as_bytes()).to_vec()).unwrap();
        assert!(
            echo.contains(&format!("/zz{}... (try", "é".repeat(14))),
            "{echo}"
        );
        assert!(!echo.contains("\\x"), "{echo}");
    }

    #[test]
    fn relayed_text_is_escaped() {
        assert_eq!(&*message("#1", b"hi\x1b[2J"), b"#1: hi\\x1b[2J\n");
        assert_eq!(
            &*unknown_command(b"/x\x07 y"),
            "◆ unknown command /x\\x07 (try /help; start a line with // to say /...)\n".as_bytes()
        );
        assert_eq!(
            &*private("bob", b"hi\x1b[2J"),
            b"bob (to you): hi\\x1b[2J\n"
        );
    }
}
