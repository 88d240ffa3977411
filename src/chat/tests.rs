//! The chat's policy, checked in-process: clients on in-memory streams, lines handed to the chat
//! as the loop's reads would, and what each client received read back from its stream.
use std::cell::RefCell;
use std::io::{self, Read, Write};

use mio::{Interest, Poll, Registry, Token};

use super::*;
use crate::config::Limits;
use crate::console::Command;
use crate::ids::Peer;

/// One end of an in-memory client: what the server wrote to it, what it has for the server to
/// read, whether its writes fail, and how often it was read.
#[derive(Default)]
struct Pipe {
    got: Vec<u8>,
    to_server: Vec<u8>,
    reset: bool,
    reads: usize,
}

#[derive(Clone, Default)]
struct MemStream(Rc<RefCell<Pipe>>);

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut pipe = self.0.borrow_mut();
        pipe.reads += 1;
        if pipe.to_server.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(pipe.to_server.len());
        buf[..n].copy_from_slice(&pipe.to_server[..n]);
        pipe.to_server.drain(..n);
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut pipe = self.0.borrow_mut();
        if pipe.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        pipe.got.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl mio::event::Source for MemStream {
    fn register(&mut self, _: &Registry, _: Token, _: Interest) -> io::Result<()> {
        Ok(())
    }

    fn reregister(&mut self, _: &Registry, _: Token, _: Interest) -> io::Result<()> {
        Ok(())
    }

    fn deregister(&mut self, _: &Registry) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for MemStream {
    fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }

    fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let pipe = self.0.borrow();
        if pipe.to_server.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(pipe.to_server.len());
        buf[..n].copy_from_slice(&pipe.to_server[..n]);
        Ok(n)
    }
}

/// A chat and its registry, with the clients' ends kept for the test.
struct Room {
    chat: Chat,
    clients: Clients<MemStream>,
    poll: Poll,
    ends: Vec<(usize, ConnId, MemStream)>,
}

impl Room {
    fn new(relay: bool) -> Room {
        Room::with_max_queue(relay, 1 << 20)
    }

    fn with_max_queue(relay: bool, max_queue: usize) -> Room {
        Room {
            chat: Chat::new(Some("hello"), relay),
            clients: Clients::new(Limits {
                max_clients: 100,
                max_line: 1024,
                max_queue,
                flood: None,
            }),
            poll: Poll::new().unwrap(),
            ends: Vec::new(),
        }
    }

    /// Seats a client and gives its index among the ends.
    fn join(&mut self) -> usize {
        let stream = MemStream::default();
        let peer = Peer(([127, 0, 0, 1], 5000 + self.ends.len() as u16).into());
        let (key, id) = self
            .clients
            .open(stream.clone(), peer, self.poll.registry())
            .unwrap();
        self.chat.join(&mut self.clients, key);
        self.ends.push((key, id, stream));
        self.ends.len() - 1
    }

    /// Client `who` says `text`, as a read would hand it over.
    fn say(&mut self, who: usize, text: &str) {
        let (key, id, _) = self.ends[who];
        let label: Rc<str> = Rc::from("label");
        let line = Line {
            text: text.as_bytes(),
            dropped: 0,
        };
        if self
            .chat
            .hear(&mut report::messages(), key, id, &label, line)
        {
            self.chat.exit(self.clients.get_mut(key).unwrap());
        }
        self.chat.act(&mut self.clients);
    }

    fn command(&mut self, line: &str) {
        let command = crate::console::parse(line).unwrap().unwrap();
        self.chat.command(&mut self.clients, command);
    }

    /// Writes out what is queued, as the loop's `before_sleep` does, and gives what client
    /// `who` has received so far, line by line.
    fn received(&mut self, who: usize) -> Vec<String> {
        for key in self.clients.keys() {
            self.clients.get_mut(key).unwrap().flush();
        }
        let got = self.ends[who].2.0.borrow().got.clone();
        String::from_utf8(got)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn reason(&self, who: usize) -> Option<Reason> {
        self.clients.get(self.ends[who].0).unwrap().reason()
    }
}

#[test]
fn a_bare_line_replies_to_whoever_spoke_last() {
    let mut room = Room::new(false);
    let (a, b) = (room.join(), room.join());
    room.say(a, "question one");
    room.say(b, "question two");
    room.command("the answer");
    assert_eq!(room.received(a), ["hello"]);
    assert_eq!(room.received(b), ["hello", "the answer"]);
    room.say(a, "again");
    room.command("to you");
    assert_eq!(room.received(a), ["hello", "to you"]);
}

#[test]
fn kick_and_exit_close_with_their_line_and_reason() {
    let mut room = Room::new(false);
    let (a, b) = (room.join(), room.join());
    room.command("/kick 1");
    assert_eq!(room.reason(a), Some(Reason::Kicked));
    assert_eq!(
        room.received(a),
        ["hello", "you were disconnected by the operator"]
    );
    room.say(b, "exit");
    assert_eq!(room.reason(b), Some(Reason::Exit));
    assert_eq!(room.received(b), ["hello", "goodbye"]);
    // Gone or leaving: neither is an open client any more.
    room.command("/to 2 anyone there?");
    assert_eq!(room.received(b), ["hello", "goodbye"]);
}

#[test]
fn the_room_announces_joins_renames_and_leaves() {
    let mut room = Room::new(true);
    let a = room.join();
    let b = room.join();
    assert_eq!(
        room.received(a),
        [
            "◆ hello",
            "◆ nobody else is online",
            "◆ #2 joined (2 online)"
        ]
    );
    assert_eq!(room.received(b), ["◆ hello", "◆ 1 online: #1"]);
    room.say(b, "/nick bob");
    room.say(a, "/nick BOB");
    room.say(a, "/nick server");
    room.say(a, "hi bob");
    room.command("/all maintenance at ten");
    assert_eq!(
        room.received(a)[3..],
        [
            "◆ #2 is now bob",
            "◆ the name BOB is taken",
            "◆ the name server is taken",
            "◆ server: maintenance at ten"
        ]
    );
    assert_eq!(
        room.received(b)[2..],
        [
            "◆ you are now bob",
            "#1: hi bob",
            "◆ server: maintenance at ten"
        ]
    );
    room.say(b, "exit");
    let (key, _, _) = room.ends[b];
    let gone = room.clients.remove(key, room.poll.registry()).unwrap();
    room.chat.leave(&mut room.clients, &gone, true);
    assert_eq!(room.received(a).last().unwrap(), "◆ bob left (exit)");
}

/// Relaying to a member whose write fails only marks it: the chat never reads it (the loop
/// hears it out later, once), so what the others receive keeps each sender's order.
#[test]
fn a_failed_write_is_marked_and_never_read_in_the_middle_of_a_relay() {
    // A small queue: a relayed line that does not fit makes the queue try a write at once.
    let mut room = Room::with_max_queue(true, 64);
    let (a, broken, c, watcher) = (room.join(), room.join(), room.join(), room.join());
    room.received(watcher);
    {
        let mut pipe = room.ends[broken].2.0.borrow_mut();
        pipe.reset = true;
        pipe.to_server.extend_from_slice(b"from the broken one\n");
    }
    // Bursts from two senders, interleaved, with the broken member among the recipients.
    for n in 0..50 {
        room.say(a, &format!("a{n}"));
        room.say(c, &format!("c{n}"));
    }
    let (key, _, stream) = &room.ends[broken];
    assert_eq!(stream.0.borrow().reads, 0, "the broken member was read");
    assert_eq!(room.clients.next_broken(), Some(*key));
    assert_eq!(room.clients.next_broken(), None, "marked once");
    let got = room.received(watcher);
    let from = |who: &str| -> Vec<String> {
        got.iter()
            .filter_map(|line| line.strip_prefix(who).map(str::to_owned))
            .collect()
    };
    let expect = |p: &str| (0..50).map(|n| format!("{p}{n}")).collect::<Vec<_>>();
    assert_eq!(from("#1: "), expect("a"));
    assert_eq!(from("#3: "), expect("c"));
}

/// A `/msg` cut at `--max-line` reaches its one member with the cut counted, as the operator's
/// report shows it; one to a member on its way out is not delivered, and the sender is told.
#[test]
fn a_private_message_is_cut_like_a_relayed_one_and_never_reaches_a_leaver() {
    let mut room = Room::new(true);
    let (a, b, c) = (room.join(), room.join(), room.join());
    room.say(b, "/nick bob");
    let (key, id, _) = room.ends[a];
    let line = Line {
        text: b"/msg bob 0123456789",
        dropped: 7,
    };
    assert!(
        !room
            .chat
            .hear(&mut report::messages(), key, id, "label", line)
    );
    room.chat.act(&mut room.clients);
    assert_eq!(
        room.received(b).last().unwrap(),
        "#1 (to you): 0123456789... [+7 bytes]"
    );

    room.say(b, "exit");
    room.say(a, "/msg bob are you there");
    assert_eq!(
        room.received(a).last().unwrap(),
        "◆ nobody here is called bob (try /who)"
    );
    assert_eq!(room.received(b).last().unwrap(), "◆ goodbye");
    // And c heard none of it but the rename.
    assert_eq!(room.received(c)[2..], ["◆ #2 is now bob"]);
}

/// Under `--max-rate`, a read takes no more lines than the bucket holds and leaves the rest in the
/// socket, whole and in order, however the lines are cut; an empty bucket reads nothing at all.
#[test]
fn a_read_over_the_rate_takes_the_allowance_and_leaves_the_rest_unread() {
    let rate = crate::flood::Rate::new(1, 3, std::time::Duration::from_secs(10));
    let limits = Limits {
        max_clients: 1,
        max_line: 1024,
        max_queue: 1 << 20,
        flood: rate,
    };
    let stream = MemStream::default();
    let peer = Peer(([127, 0, 0, 1], 5000).into());
    let mut conn = Connection::new(stream.clone(), ConnId(1), peer, Rc::from("label"), &limits);
    let long = "x".repeat(1000);
    let sent = format!("one\ntwo\n{long}\nfour\nfive\n");
    stream.0.borrow_mut().to_server = sent.clone().into_bytes();
    let mut buf = [0; 64 * 1024];
    let mut heard = Vec::new();
    let mut read = |conn: &mut Connection<MemStream>, heard: &mut Vec<String>| {
        let mut budget = 1 << 20;
        conn.read(&mut buf, &mut budget, 1, |line| {
            heard.push(String::from_utf8_lossy(line.text).into_owned())
        })
    };
    assert!(matches!(read(&mut conn, &mut heard), ReadStatus::Throttled));
    assert_eq!(heard, ["one", "two", long.as_str()]);
    let left = stream.0.borrow().to_server.clone();
    assert_eq!(left, b"four\nfive\n", "the rest waits in the socket");
    let reads = stream.0.borrow().reads;
    assert!(matches!(read(&mut conn, &mut heard), ReadStatus::Throttled));
    assert_eq!(
        stream.0.borrow().reads,
        reads,
        "an empty bucket reads nothing"
    );
    assert_eq!(heard.len(), 3);
}

#[test]
fn blank_lines_and_room_commands_do_not_make_a_last_speaker() {
    let mut room = Room::new(true);
    let (a, b) = (room.join(), room.join());
    room.say(a, "question");
    for line in ["", "  \t", "/who", "/nick bob", "/frobnicate"] {
        room.say(b, line);
    }
    room.command("the answer");
    assert!(
        room.received(a)
            .iter()
            .any(|line| line.ends_with("the answer"))
    );
    assert!(
        !room
            .received(b)
            .iter()
            .any(|line| line.ends_with("the answer"))
    );
    // Without the room, `/nick` is just text for the operator; a blank line still is not.
    let mut plain = Room::new(false);
    let (a, b) = (plain.join(), plain.join());
    plain.say(a, "question");
    plain.say(b, "");
    plain.command("to a");
    plain.say(b, "/nick bob");
    plain.command("to b");
    assert_eq!(plain.received(a), ["hello", "to a"]);
    assert_eq!(plain.received(b), ["hello", "to b"]);
}

#[test]
fn the_editor_aims_at_a_sticky_target_or_the_last_speaker() {
    let mut room = Room::new(false);
    let (a, b) = (room.join(), room.join());
    let id = |who: usize, room: &Room| room.ends[who].1;
    assert_eq!(room.chat.aim(&mut room.clients), None);
    room.say(a, "hi");
    assert_eq!(
        room.chat.aim(&mut room.clients).map(|aim| aim.0),
        Some(id(a, &room))
    );
    let b_id = id(b, &room);
    room.chat.command(&mut room.clients, Command::Stick(b_id));
    room.say(a, "again");
    let aim = room.chat.aim(&mut room.clients).unwrap();
    assert!(target(&aim).sticky);
    assert_eq!(aim.0, b_id);
    // A typed line goes where the prompt showed, whoever spoke since.
    room.chat.reply_to(&mut room.clients, Some(b_id), "for b");
    room.chat.command(&mut room.clients, Command::Follow);
    assert_eq!(
        room.chat.aim(&mut room.clients).map(|aim| aim.0),
        Some(id(a, &room))
    );
    assert_eq!(room.received(b), ["hello", "for b"]);
    // Gone: shown as such, and nothing is sent.
    let (key, a_id, _) = room.ends[a];
    room.clients.close(key, None, Reason::Kicked);
    assert!(target(&room.chat.aim(&mut room.clients).unwrap()).gone);
    room.chat.reply_to(&mut room.clients, Some(a_id), "lost");
    assert_eq!(room.received(a), ["hello"]);
}

/// Under `--max-rate`, a read takes no more bytes than the bucket holds either: of one long
/// unfinished line, a burst of 1 takes a KiB and leaves the rest in the socket.
#[test]
fn a_read_over_the_rate_takes_no_more_bytes_than_the_allowance() {
    let rate = crate::flood::Rate::new(1, 1, std::time::Duration::from_secs(10));
    let limits = Limits {
        max_clients: 1,
        max_line: 1 << 20,
        max_queue: 1 << 20,
        flood: rate,
    };
    let stream = MemStream::default();
    let peer = Peer(([127, 0, 0, 1], 5000).into());
    let mut conn = Connection::new(stream.clone(), ConnId(1), peer, Rc::from("label"), &limits);
    stream.0.borrow_mut().to_server = vec![b'x'; 3000];
    let mut buf = [0; 64 * 1024];
    let mut budget = 1 << 20;
    let status = conn.read(&mut buf, &mut budget, 1, |_| panic!("no line ended"));
    assert!(matches!(status, ReadStatus::Throttled));
    assert_eq!(stream.0.borrow().to_server.len(), 3000 - 1024);
    assert!(conn.has_partial() && conn.is_held_back());
}
