//! What one chatd says to the others on the bus: a frame per room line, encoded as one header line
//! of space-separated words and, for text, the member's raw bytes after it.
//!
//! ```text
//! chatd1 <node> <seq> <online> msg <id> <peer> <name>\n<text bytes>
//! chatd1 <node> <seq> <online> join <id> <peer> <name>
//! chatd1 <node> <seq> <online> left <id> <peer> <name> <reason>
//! chatd1 <node> <seq> <online> nick <id> <peer> <old> <new>
//! chatd1 <node> <seq> <online> all\n<text bytes>
//! chatd1 <node> <seq> <online> to <id> <peer> <name> <to-name> [<sent>]\n<text bytes>
//! chatd1 <node> <seq> <online> beat
//! chatd1 <node> <seq> <online> hello
//! chatd1 <node> <seq> <online> roll\n<id> <name>\n<id> <name>...
//! ```
//!
//! `seq` numbers the frames one instance publishes (from 1, one more each, whether or not the
//! frame made it onto the bus), so that receivers see what core NATS lost; a `beat` carries the
//! last number used, so a loss at the end shows too. A `to` frame (`/msg`) is for the member called
//! `<to-name>` alone, and carries a NATS reply subject that the instance delivering it answers;
//! `<sent>` is when its member sent it (unix milliseconds), so that the receiver drops one that
//! comes after its sender was told it was not delivered (a frame without it, from an older chatd,
//! is delivered whenever it comes; an older chatd refuses a frame with it as malformed, and its
//! sender is told so).
//! An instance says `hello` when it joins the bus (and joins again), and every instance answers a
//! `hello` with its `roll`, its members' ids and names (in frames of at most `MAX_ROLL`), so that
//! `/who` lists members that said nothing since. `online` is the publisher's own member count.
//! Names, peers, nodes and reasons never hold a space or a newline (names are checked by the room,
//! nodes by `--node`), and the text is sent raw: each receiver escapes it as it escapes a local
//! member's, so the line is the same everywhere.
//!
//! Deliberately not here: the NATS connection (`bus/link.rs`) or what a frame causes (`chat.rs`).
//! Pure: no I/O, no clock.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;

/// One frame off the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The publishing instance (`--node`).
    pub node: String,
    pub seq: u64,
    /// Members on the publishing instance when it published.
    pub online: u64,
    pub what: What,
}

/// What a frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A member's line, relayed to everyone: `<name>: <text>`.
    Message(Member, Vec<u8>),
    Join(Member),
    Left(Member, String),
    Nick(Member, String),
    /// The operator's `/all`.
    All(Vec<u8>),
    /// A member's `/msg`: the text for the member called `.1` (a name, or `#<id>@<node>`) alone,
    /// sent at `.3` (unix milliseconds; `None` from an older chatd).
    To(Member, String, Vec<u8>, Option<u64>),
    /// "Still here": the count and the last number used.
    Beat,
    /// Just joined the bus: every other instance answers with its `Roll`.
    Hello,
    /// Some of the publisher's members, by `#id` and name.
    Roll(Vec<(u64, String)>),
}

/// A member of another instance, as that instance names it to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its `#id` on its own instance.
    pub id: u64,
    /// Its address, as its instance reports it.
    pub peer: String,
    /// Its name in the room: chosen with /nick, else `#<id>@<node>`.
    pub name: String,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Encodes a frame about to be published by `node` as number `seq`.
pub fn encode(node: &str, seq: u64, online: u64, what: &What) -> Vec<u8> {
    let text_len = match what {
        What::Message(_, text) | What::All(text) | What::To(_, _, text, _) => text.len(),
        _ => 0,
    };
    let mut out = Vec::with_capacity(64 + text_len);
    // Written straight into `out` (a write to a Vec cannot fail): a member's line is one frame,
    // so this is on the room's per-line path.
    let head = |out: &mut Vec<u8>, kind: std::fmt::Arguments| {
        let _ = write!(out, "{MAGIC} {node} {seq} {online} {kind}");
    };
    match what {
        What::Message(m, text) => {
            head(&mut out, format_args!("msg {} {} {}", m.id, m.peer, m.name));
            out.push(b'\n');
            out.extend_from_slice(text);
        }
        What::Join(m) => head(
            &mut out,
            format_args!("join {} {} {}", m.id, m.peer, m.name),
        ),
        What::Left(m, reason) => head(
            &mut out,
            format_args!("left {} {} {} {reason}", m.id, m.peer, m.name),
        ),
        What::Nick(m, new) => head(
            &mut out,
            format_args!("nick {} {} {} {new}", m.id, m.peer, m.name),
        ),
        What::All(text) => {
            head(&mut out, format_args!("all"));
            out.push(b'\n');
            out.extend_from_slice(text);
        }
        What::To(m, to, text, sent) => {
            let sent = sent.map(|ms| format!(" {ms}")).unwrap_or_default();
            head(
                &mut out,
                format_args!("to {} {} {} {to}{sent}", m.id, m.peer, m.name),
            );
            out.push(b'\n');
            out.extend_from_slice(text);
        }
        What::Beat => head(&mut out, format_args!("beat")),
        What::Hello => head(&mut out, format_args!("hello")),
        What::Roll(members) => {
            head(&mut out, format_args!("roll"));
            for (id, name) in members {
                let _ = write!(out, "\n{id} {name}");
            }
        }
    }
    out
}

/// A name's value in the bucket while it is held after a leave: for `from` until `until`
/// (seconds since 1970).
pub fn hold(from: IpAddr, until: u64) -> String {
    format!("held {from} {until}")
}

/// The address and end of a hold written by `hold`; `None` for any other value (a member's).
pub fn read_hold(value: &[u8]) -> Option<(IpAddr, u64)> {
    let value = std::str::from_utf8(value).ok()?;
    let mut words = value.strip_prefix("held ")?.split(' ');
    let from = words.next()?.parse().ok()?;
    let until = words.next()?.parse().ok()?;
    words.next().is_none().then_some((from, until))
}

/// Reads one frame; anything not written by `encode` is `Malformed`, never a panic.
pub fn decode(payload: &[u8]) -> Result<Frame, Malformed> {
    let (head, text) = match payload.iter().position(|&b| b == b'\n') {
        Some(at) => (&payload[..at], Some(&payload[at + 1..])),
        None => (payload, None),
    };
    let head = std::str::from_utf8(head).map_err(|_| Malformed("header is not UTF-8"))?;
    if head.len() > MAX_HEADER {
        return Err(Malformed("header too long"));
    }
    // Nodes, peers, names and reasons reach reports and members' screens: printable ASCII only.
    if !head.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(Malformed("header is not printable ASCII"));
    }
    let words = &mut head.split(' ');
    if next(words) != Some(MAGIC) {
        return Err(Malformed("not a chatd frame"));
    }
    let node = next(words).ok_or(Malformed("no node"))?.to_owned();
    let seq = number(next(words))?;
    let online = number(next(words))?;
    let kind = next(words).ok_or(Malformed("no kind"))?;
    let what = match (kind, text) {
        ("msg", Some(text)) => What::Message(member(words)?, text.to_vec()),
        ("join", None) => What::Join(member(words)?),
        ("left", None) => {
            let m = member(words)?;
            What::Left(m, next(words).ok_or(Malformed("no reason"))?.to_owned())
        }
        ("nick", None) => {
            let m = member(words)?;
            What::Nick(m, next(words).ok_or(Malformed("no new name"))?.to_owned())
        }
        ("all", Some(text)) => What::All(text.to_vec()),
        ("to", Some(text)) => {
            let m = member(words)?;
            let to = next(words).ok_or(Malformed("no recipient"))?.to_owned();
            let sent = next(words).map(|w| number(Some(w))).transpose()?;
            What::To(m, to, text.to_vec(), sent)
        }
        ("beat", None) => What::Beat,
        ("hello", None) => What::Hello,
        ("roll", Some(text)) => What::Roll(roll(text)?),
        _ => return Err(Malformed("unknown kind")),
    };
    if next(words).is_some() {
        return Err(Malformed("trailing words"));
    }
    Ok(Frame {
        node,
        seq,
        online,
        what,
    })
}

/// Cuts the text of `frame` (a member's line, a `/msg`, an `/all`) to `max_line` bytes and marks
/// it `... [+N bytes]`, as a local member's longer line is: no frame puts on a member's screen a
/// line longer than a local member could send (nor makes every queue hold it). A text that an
/// instance already cut at the same `--max-line` passes as it is: `CUT_MARK_ROOM` is left for its
/// mark.
pub fn cut(frame: &mut Frame, max_line: usize) {
    let (What::Message(_, text) | What::All(text) | What::To(_, _, text, _)) = &mut frame.what
    else {
        return;
    };
    if text.len() <= max_line.saturating_add(CUT_MARK_ROOM) {
        return;
    }
    let dropped = text.len() - max_line;
    text.truncate(max_line);
    let mut mark = String::new();
    crate::escape::push_cut_marker(&mut mark, dropped);
    text.extend_from_slice(mark.as_bytes());
}

/// The next word; an empty one (two spaces in a row) is none.
fn next<'a>(words: &mut std::str::Split<'a, char>) -> Option<&'a str> {
    words.next().filter(|w| !w.is_empty())
}

fn member(words: &mut std::str::Split<'_, char>) -> Result<Member, Malformed> {
    let id = number(next(words))?;
    let peer = next(words).ok_or(Malformed("no peer"))?.to_owned();
    let name = next(words).ok_or(Malformed("no name"))?.to_owned();
    Ok(Member { id, peer, name })
}

/// The members of a `roll`: lines of `<id> <name>`, names printable ASCII.
fn roll(text: &[u8]) -> Result<Vec<(u64, String)>, Malformed> {
    let text = std::str::from_utf8(text).map_err(|_| Malformed("roll is not UTF-8"))?;
    let mut members = Vec::new();
    for line in text.split('\n') {
        let (id, name) = line.split_once(' ').ok_or(Malformed("bad roll line"))?;
        if members.len() >= MAX_ROLL
            || name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Malformed("bad roll"));
        }
        members.push((number(Some(id))?, name.to_owned()));
    }
    Ok(members)
}

fn number(word: Option<&str>) -> Result<u64, Malformed> {
    word.and_then(|w| w.parse().ok())
        .ok_or(Malformed("bad number"))
}

/// The first word of every frame: the format's name and version.
const MAGIC: &str = "chatd1";
/// The most members in one `roll` frame.
pub const MAX_ROLL: usize = 1000;
/// The longest header read: nodes, names, peers and reasons are short.
const MAX_HEADER: usize = 512;
/// What a text may hold past `--max-line`: the longest `... [+N bytes]` mark (20 digits).
const CUT_MARK_ROOM: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Member {
        Member {
            id: 7,
            peer: "127.0.0.1:5000".into(),
            name: "#7@a".into(),
        }
    }

    #[test]
    fn every_kind_reads_back() {
        let kinds = [
            What::Message(bob(), b"hi \x1b[2J\xff there".to_vec()),
            What::Message(bob(), Vec::new()),
            What::Join(bob()),
            What::Left(bob(), "closed".into()),
            What::Nick(bob(), "bob".into()),
            What::All(b"hello all".to_vec()),
            What::To(
                bob(),
                "alice".into(),
                b"psst \x1b".to_vec(),
                Some(1_764_578_400_123),
            ),
            What::To(bob(), "alice".into(), b"from an older chatd".to_vec(), None),
            What::Beat,
            What::Hello,
            What::Roll(vec![(7, "#7@a".into()), (8, "carol".into())]),
        ];
        for what in kinds {
            let frame = decode(&encode("a.1", 42, 3, &what)).unwrap();
            assert_eq!(
                frame,
                Frame {
                    node: "a.1".into(),
                    seq: 42,
                    online: 3,
                    what
                }
            );
        }
    }

    #[test]
    fn a_text_past_max_line_is_cut_and_marked_once() {
        let mut frame = decode(&encode("a", 1, 1, &What::All(vec![b'x'; 100]))).unwrap();
        cut(&mut frame, 10);
        let mut want = vec![b'x'; 10];
        want.extend_from_slice(b"... [+90 bytes]");
        assert_eq!(frame.what, What::All(want.clone()));
        // Cut already (by an instance with the same --max-line): kept as it is.
        cut(&mut frame, 10);
        assert_eq!(frame.what, What::All(want));
        let mut beat = decode(&encode("a", 1, 1, &What::Beat)).unwrap();
        cut(&mut beat, 0);
        assert_eq!(beat.what, What::Beat);
    }

    #[test]
    fn a_hold_reads_back_and_a_members_value_is_no_hold() {
        let from: IpAddr = "::1".parse().unwrap();
        assert_eq!(read_hold(hold(from, 99).as_bytes()), Some((from, 99)));
        assert_eq!(read_hold(b"A 7"), None);
        assert_eq!(read_hold(b"held 127.0.0.1"), None);
        assert_eq!(read_hold(b"held 127.0.0.1 5 x"), None);
    }

    #[test]
    fn junk_is_malformed_not_a_panic() {
        for junk in [
            &b""[..],
            b"chatd1",
            b"chatd1 a x 1 beat",
            b"chatd1 a 1 1 msg 7 p n",
            b"chatd1 a 1 1 join 7 p",
            b"chatd1 a 1 1 to 7 p n\nno recipient",
            b"chatd1 a 1 1 to 7 p n bob",
            b"chatd1 a 1 1 to 7 p n bob soon\nhi",
            b"chatd1 a 1 1 to 7 p n bob 1 2\nhi",
            b"chatd1 a 1 1 roll\n7 ev\x1bil",
            b"chatd1 a 1 1 roll\n7",
            b"chatd1 a 1 1 roll\nx bob",
            b"chatd1 a 1 1 beat extra",
            b"chatd1 a 1 1 nope",
            b"chatd2 a 1 1 beat",
            b"\xff\xfe",
            b"chatd1  a 1 1 beat",
        ] {
            assert!(decode(junk).is_err(), "{junk:?}");
        }
        assert!(decode(&[b'a'; 10_000]).is_err());
    }
}
