//! The chat: what a client's line, an operator's command, a join and a leave cause, and every
//! line the server itself says to clients.
//!
//! It works on the client registry and decides: who is reported, who gets which line, who is
//! closed and why. It reads no socket and knows no poll, so its policy is tested here, in-process,
//! on clients whose streams are buffers. With `--relay` the lines members send are acted on after
//! each read (`act`, in `chat/members.rs`), in the order they came; the room's own texts and
//! parsing are in `room.rs`, and who may take which name in `names.rs`.
//!
//! Deliberately not here: reading, flushing, timers or the phases of a shutdown (that is the
//! loop's, `server.rs`), and report formatting (`report.rs`).

use std::rc::Rc;
use std::time::Instant;

use crate::bus::What;
use crate::clients::Clients;
use crate::connection::{Connection, ReadStatus, Stream};
use crate::escape::push_cut_marker;
use crate::framing::Line;
use crate::ids::{ConnId, Reason};
use crate::names::Names;
use crate::queue;
use crate::report;
use crate::room::{self, Said};

pub struct Chat {
    /// The line every newcomer gets first, shared by every queue.
    greeting: Rc<[u8]>,
    /// With `--relay`: one room, where members hear each other.
    relay: bool,
    /// The client, as (slot, id), that last said something to the operator: the target of a
    /// bare console line. Not a blank line, not `/nick` or `/who` in the room.
    last_speaker: Option<(usize, ConnId)>,
    /// The client the line editor's `/to <id>` chose for bare lines, if any, as (slot, id).
    sticky: Option<(usize, ConnId)>,
    /// In the room: what members said since the chat last acted, as (slot, id, what), in order.
    said: Vec<(usize, ConnId, Said)>,
    /// Room lines queued for a member, once per recipient (`/stats`, `/metrics`).
    relay_deliveries: u64,
    /// In the room: who has which nickname, and the names held after a leave.
    names: Names,
    /// With `--bus`: the room goes on in other instances.
    across: Option<Across>,
}

impl Chat {
    /// Room lines queued for a member so far, once per recipient.
    pub fn relay_deliveries(&self) -> u64 {
        self.relay_deliveries
    }

    /// A chat that greets with `greeting`, or with the default welcome for its mode.
    pub fn new(greeting: Option<&str>, relay: bool) -> Chat {
        let greeting = match (greeting, relay) {
            (Some(text), _) => text,
            (None, false) => DEFAULT_GREETING,
            (None, true) => DEFAULT_ROOM_GREETING,
        };
        Chat {
            greeting: match relay {
                true => room::server_says(greeting.as_bytes()),
                false => queue::line(greeting.as_bytes()),
            },
            relay,
            relay_deliveries: 0,
            last_speaker: None,
            sticky: None,
            said: Vec::new(),
            names: Names::default(),
            across: None,
        }
    }

    /// The room is shared with other instances (`--bus`); this one is `node`.
    pub fn span(&mut self, node: &str) {
        self.across = Some(Across::new(node));
    }

    /// The work one heard line causes, beyond its bytes, with `members` connected: its report,
    /// and in the room one delivery to every other member (or one announcement, or one scan of the
    /// room for a `/nick` or `/who`). The loop's read budget counts it, so that a member flooding
    /// a big room with empty lines does a bounded amount of fan-out per turn.
    pub fn line_cost(&self, members: usize) -> usize {
        if self.relay { 1 + members } else { 1 }
    }

    /// A client was seated in slot `key`: it is reported and greeted, and in the room it is told
    /// who else is there and the others are told it joined.
    pub fn join<S: Stream>(&mut self, clients: &mut Clients<S>, key: usize) {
        let Some(conn) = clients.get(key) else {
            return;
        };
        report::connect(conn.peer(), conn.id(), conn.is_tls(), clients.len());
        self.share(|node| What::Join(across::member(conn, node)));
        let name = Rc::clone(conn.name());
        // A greeting longer than --max-queue is not sent; the client is still served.
        let _ = clients.send(key, Rc::clone(&self.greeting));
        if self.relay {
            let others = clients
                .open_ones()
                .filter(|&(other, _)| other != key)
                .map(|(_, conn)| &**conn.name());
            let remote = self.remote_names();
            let who = room::who(others.chain(remote.iter().copied()));
            let _ = clients.send(key, who);
            let online = clients.len() + self.remote_online();
            clients.send_all(Some(key), &room::joined(&name, online));
        }
    }

    /// One message from client `id` in slot `key`, labelled `label` in reports: it is reported
    /// (in `messages`, the reports of the read it came in; in the room, one of the room's commands
    /// is reported as a `command`), its sender becomes the target of the operator's bare replies,
    /// and in the room anything but `exit` is kept for `act`. Returns whether it was `exit`, which
    /// the caller's `read_ended` then ends the session for. This is the per-line hot path: no
    /// registry, no allocation outside the room.
    pub fn hear(
        &mut self,
        messages: &mut report::Messages,
        key: usize,
        id: ConnId,
        label: &str,
        line: Line<'_>,
    ) -> bool {
        let exit = line.text == b"exit" && line.dropped == 0;
        if !self.relay || exit {
            messages.message(label, line.text, line.dropped);
            if speaks(line.text) {
                self.last_speaker = Some((key, id));
            }
            return exit;
        }
        self.hear_in_room(messages, key, id, label, line);
        false
    }

    /// `hear` in the room: the line parsed, reported as a message or a command, and kept for
    /// `Chat::act`. Kept out of `hear`, whose headless path is the per-line hot path.
    #[inline(never)]
    fn hear_in_room(
        &mut self,
        messages: &mut report::Messages,
        key: usize,
        id: ConnId,
        label: &str,
        line: Line<'_>,
    ) {
        let mut said = room::parse(line.text);
        if said.is_command() {
            report::command(label, line.text, line.dropped);
        } else {
            messages.message(label, line.text, line.dropped);
        }
        // A room command is not someone talking to the operator.
        if matches!(said, Said::Text(_)) && speaks(line.text) {
            self.last_speaker = Some((key, id));
        }
        if let (Said::Text(text) | Said::Msg { text, .. }, 1..) = (&mut said, line.dropped) {
            // The room reads what the operator reads, the cut included.
            let mut mark = String::new();
            push_cut_marker(&mut mark, line.dropped);
            text.extend_from_slice(mark.as_bytes());
        }
        self.said.push((key, id, said));
    }

    /// A line the client was in the middle of when the server closed it: reported (and relayed)
    /// with a `(cut)` mark, never as a whole message, and never taken as a command.
    fn hear_cut(&mut self, key: usize, id: ConnId, label: &str, line: Line<'_>) {
        report::message_cut(label, line.text, line.dropped);
        if self.relay {
            let mut text = Vec::with_capacity(line.text.len() + CUT.len());
            text.extend_from_slice(line.text);
            if line.dropped > 0 {
                let mut mark = String::new();
                push_cut_marker(&mut mark, line.dropped);
                text.extend_from_slice(mark.as_bytes());
            }
            text.extend_from_slice(CUT);
            self.said.push((key, id, Said::Text(text)));
        }
    }

    /// Hears client `key`'s unfinished line, if it has one: as a message of its own when the
    /// client ended it (EOF, a reset, the line timeout), or marked `(cut)` when the server closed
    /// the client in the middle of it (`cut`).
    pub fn hear_partial<S: Stream>(&mut self, key: usize, conn: &mut Connection<S>, cut: bool) {
        let (id, label) = (conn.id(), Rc::clone(conn.label()));
        if cut {
            return conn.take_partial(|line| self.hear_cut(key, id, &label, line));
        }
        let mut exit = false;
        let mut messages = report::messages();
        conn.take_partial(|line| exit = self.hear(&mut messages, key, id, &label, line));
        if exit {
            self.exit(conn);
        }
    }

    /// Hears what is left of client `key` as it is reaped: a line it was in the middle of is cut
    /// if the server closed it.
    pub fn hear_last<S: Stream>(&mut self, key: usize, conn: &mut Connection<S>) {
        let cut = conn.reason().is_some_and(Reason::cuts) || conn.is_capped();
        self.hear_partial(key, conn, cut);
    }

    /// Stops hearing out closing client `key`: its unfinished line is cut, and what it sent past
    /// what was heard is counted (reported dropped, once, as it is reaped).
    fn stop_hearing<S: Stream>(&mut self, key: usize, conn: &mut Connection<S>) {
        if !conn.is_hearing() {
            return;
        }
        self.hear_last(key, conn);
        conn.stop_hearing();
    }

    /// A read of client `key` ended with `status`, after the client said `exit` if `exit`: it
    /// leaves by `exit`; at EOF its unfinished line is a message now (the lab's client sends a
    /// bare `exit` and closes at once) and it leaves `closed`; a failed read is a `reset`.
    pub fn read_ended<S: Stream>(
        &mut self,
        key: usize,
        conn: &mut Connection<S>,
        status: &ReadStatus,
        exit: bool,
    ) {
        if exit {
            self.exit(conn);
        }
        match status {
            ReadStatus::BudgetSpent => {}
            // A client held back by `--max-rate` is read again when its bucket refills (the
            // loop's timer); one the server closed is heard out no further than its rate: the
            // rest is counted dropped.
            ReadStatus::Throttled => self.stop_hearing(key, conn),
            // Once empty twice in a row (a turn apart), a closing client has been heard out; one
            // past the cap is read, and what it sends counted, until it closes or its grace ends.
            ReadStatus::Drained
                if conn.is_hearing() && (conn.first_quiet() || conn.is_capped()) => {}
            ReadStatus::Drained => self.stop_hearing(key, conn),
            ReadStatus::Eof => {
                self.hear_partial(key, conn, conn.is_capped());
                self.stop_hearing(key, conn);
                conn.close(Reason::Closed);
            }
            // Its last words count (the lab's client sends a bare `exit` and closes, which is a
            // reset when it left a line of ours unread).
            ReadStatus::Failed => {
                self.hear_partial(key, conn, conn.is_capped());
                self.stop_hearing(key, conn);
                conn.abort(Reason::Reset);
            }
            // Nothing it sent is a message; the report says why it goes.
            ReadStatus::TlsOnPlain => {
                report::refused(conn.peer(), TLS_ON_PLAIN);
                self.stop_hearing(key, conn);
                conn.abort(Reason::Reset);
            }
        }
    }

    /// Closing client `(key, id)` had its grace period and did not finish: what is queued for it
    /// is dropped, and it is heard no more (what it still had unread is reported dropped).
    pub fn give_up<S: Stream>(&mut self, clients: &mut Clients<S>, key: usize, id: ConnId) {
        if let Some(conn) = clients.slot(key, id) {
            conn.drop_output();
            self.stop_hearing(key, conn);
            clients.see_to(key);
        }
        self.act(clients);
    }

    /// Client `key`'s unfinished line waited `--line-timeout` without more bytes: it is a message
    /// (with a 0xFF the telnet filter held, `Connection::line_timed_out`).
    pub fn line_timed_out<S: Stream>(&mut self, clients: &mut Clients<S>, key: usize) {
        if let Some(conn) = clients.get_mut(key) {
            conn.line_timed_out();
            self.hear_partial(key, conn, false);
            clients.see_to(key);
        }
        self.act(clients);
    }

    /// The client said `exit`: a goodbye line, then the session closes once it is flushed. Whatever
    /// it sent after `exit` is not heard.
    fn exit<S: Stream>(&self, conn: &mut Connection<S>) {
        conn.discard_partial();
        conn.stop_hearing();
        let _ = conn.queue(self.says(GOODBYE));
        conn.close(Reason::Exit);
    }

    /// A line the server says to a client: in the room, marked as the server's (`room::MARK`).
    fn says(&self, text: &[u8]) -> Rc<[u8]> {
        match self.relay {
            true => room::server_says(text),
            false => queue::line(text),
        }
    }

    /// A client left and was taken out of the registry: its disconnect is reported, and while the
    /// server runs, the room is told.
    pub fn leave<S: Stream>(
        &mut self,
        clients: &mut Clients<S>,
        gone: &Connection<S>,
        running: bool,
    ) {
        let reason = gone.reason().unwrap_or(Reason::Closed);
        report::disconnect(gone.peer(), gone.id(), reason, clients.len());
        self.share(|node| What::Left(across::member(gone, node), reason.to_string()));
        if self.relay {
            let from = gone.peer().0.ip().to_canonical();
            self.names
                .release(gone.id(), gone.name(), from, Instant::now());
            self.release(gone.name(), Some(from));
        }
        if self.relay && running {
            clients.send_all(None, &room::left(gone.name(), reason));
        }
    }

    /// Client `key` kept sending past `--max-rate` for `--flood-timeout`: it is told and closed,
    /// and what it sent past the rate is never heard (counted dropped as it is reaped).
    pub fn flood<S: Stream>(&self, clients: &mut Clients<S>, key: usize) {
        clients.close(key, Some(self.says(FLOODING)), Reason::Flood);
    }

    /// Client `key` has sent nothing for `--idle-timeout`: it is told and closed.
    pub fn time_out<S: Stream>(&self, clients: &mut Clients<S>, key: usize) {
        clients.close(key, Some(self.says(IDLE)), Reason::Timeout);
    }

    /// The server is shutting down: every client is told and closed.
    pub fn shut_down<S: Stream>(&self, clients: &mut Clients<S>) {
        let farewell = self.says(SHUTTING_DOWN);
        for key in clients.keys() {
            clients.close(key, Some(Rc::clone(&farewell)), Reason::Shutdown);
        }
    }
}

/// What a client past `--max-clients` reads before its connection closes.
pub const SERVER_FULL: &[u8] = b"server full\n";
const GOODBYE: &[u8] = b"goodbye";
/// Why a client that opened with a TLS handshake on the plain port is refused.
const TLS_ON_PLAIN: &str = "tls on the plain port";

/// Whether a line someone sent is talking (to the operator, for the reply target): a blank line (a
/// keepalive, a stray Enter) is not. The first byte decides for nearly every line.
#[inline]
fn speaks(text: &[u8]) -> bool {
    match text.first() {
        Some(&first) if first > b' ' => true,
        _ => blank_or_not(text),
    }
}

#[cold]
fn blank_or_not(text: &[u8]) -> bool {
    !text.iter().all(u8::is_ascii_whitespace)
}

/// What follows a line the server closed its sender in the middle of.
const CUT: &[u8] = b" (cut)";
const KICKED: &[u8] = b"you were disconnected by the operator";
const SHUTTING_DOWN: &[u8] = b"server shutting down";
const IDLE: &[u8] = b"disconnected: idle for too long";
const FLOODING: &[u8] = b"disconnected: flooding";
const DEFAULT_GREETING: &str =
    "welcome to chatd: type a line to talk to the operator, exit to leave";
const DEFAULT_ROOM_GREETING: &str = "welcome to chatd: what you type goes to everyone here; /nick NAME, /who, /msg NAME text (to one member only), /help, exit to leave";

mod across;
mod claims;
mod members;
mod operator;
mod private;
mod target;

use across::Across;
pub use target::{Aim, target};

#[cfg(test)]
mod tests;
