//! The client registry: every connection, the never-reused ids, and the loop's per-client marks
//! (pending reads, output to see to, failed writes, armed timers).
//!
//! Client `k` is registered with the poll as `Token(CLIENT_BASE + k)` ([`token`], [`key_of`]).
//! One rule lives here for everyone: slab keys (and so tokens) are reused, ids never are. Anything
//! kept across turns names a client by `(key, ConnId)`, and [`Clients::slot`] gives it back only
//! while the slot still holds that client. Every send goes through here, so that a client with
//! output, a slow one and a broken one are each put on the list the loop sees to, exactly once.
//!
//! Deliberately not here: the poll, timers, reading, or what a line means (that is `chat.rs`).

use std::collections::VecDeque;
use std::rc::Rc;

use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::config::Limits;
use crate::connection::{Connection, NotQueued, Stream};
use crate::ids::{ConnId, Peer, Reason};
use crate::report;
use crate::socket::Socket;
use crate::stats::Stats;

pub struct Clients<S = Socket> {
    slab: Slab<Client<S>>,
    /// The id the next client gets; ids are never reused.
    next_id: u64,
    lists: Lists,
    limits: Limits,
    /// What the clients already removed did.
    gone: Gone,
}

struct Client<S> {
    conn: Connection<S>,
    marks: Marks,
}

/// The loop's work lists. Each entry pairs the slot with the id, so that an entry for a client
/// that left (its slot perhaps taken by a newcomer) is skipped.
#[derive(Default)]
struct Lists {
    /// Clients with output to flush or that are closing: seen to at the end of the turn.
    dirty: VecDeque<(usize, ConnId)>,
    /// Clients that stopped at their read budget, or closing ones still to be heard out: read
    /// again next turn without waiting for an event (readiness is edge-triggered, so none would
    /// come).
    pending: Vec<(usize, ConnId)>,
    /// Clients with input that the turn's budget left unread: read next turn before `pending`, so
    /// that clients that keep spending their whole budget cannot starve them.
    waiting: Vec<(usize, ConnId)>,
    /// Clients whose write failed: heard out and closed by the loop, once, later in the turn.
    broken: VecDeque<(usize, ConnId)>,
}

impl Lists {
    /// Puts a client on the list of clients to see to (once), on the list of broken ones if its
    /// write failed, and on the list to read if it is closing and still to be heard out.
    fn see_to<S: Stream>(&mut self, key: usize, client: &mut Client<S>) {
        let Client { conn, marks } = client;
        if !mem_set(&mut marks.dirty) {
            self.dirty.push_back((key, conn.id()));
        }
        if conn.is_broken() && !mem_set(&mut marks.broken) {
            self.broken.push_back((key, conn.id()));
        }
        if conn.wants_reread() && !mem_set(&mut marks.pending) {
            self.pending.push((key, conn.id()));
        }
    }
}

/// Which of the loop's lists and timers a client is in, so that it is in each at most once.
#[derive(Debug, Default)]
pub struct Marks {
    pending: bool,
    dirty: bool,
    broken: bool,
    /// A line timer is armed for it.
    line_timer: bool,
    /// It is closing and its grace timer is armed.
    linger_timer: bool,
    /// It is held back by `--max-rate` and the timer that reads it again is armed.
    flood_timer: bool,
}

impl<S: Stream> Clients<S> {
    pub fn new(limits: Limits) -> Clients<S> {
        Clients {
            slab: Slab::new(),
            next_id: 1,
            lists: Lists::default(),
            limits,
            gone: Gone::default(),
        }
    }

    /// The client figures of `/stats` and `/metrics`: those of the clients gone, plus those of
    /// the clients here now. Walks every client: for a scrape, never for a line.
    pub fn stats(&self, stats: &mut Stats) {
        stats.online = self.slab.len() as u64;
        stats.accepted = self.next_id - 1;
        stats.disconnects = self.gone.disconnects;
        let mut totals = self.gone.totals;
        let mut queued = 0;
        for (_, client) in &self.slab {
            add(&mut totals, &client.conn);
            queued += client.conn.bytes().2 as u64;
        }
        [
            stats.messages_in,
            stats.lines_out,
            stats.bytes_in,
            stats.bytes_out,
        ] = totals;
        stats.queue_bytes = queued;
    }

    /// Whether `--max-clients` connections are held, with `guests` not yet admitted: the next
    /// one is refused.
    pub fn is_full(&self, guests: usize) -> bool {
        self.slab.len() + guests >= self.limits.max_clients
    }

    /// Registers a new client's socket with the poll and seats it; gives its slot and id.
    pub fn open(
        &mut self,
        mut stream: S,
        peer: Peer,
        registry: &Registry,
    ) -> std::io::Result<(usize, ConnId)> {
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        registry.register(&mut stream, token(key), Interest::READABLE)?;
        let id = ConnId(self.next_id);
        self.next_id += 1;
        let label = report::label(peer, id).into();
        let conn = Connection::new(stream, id, peer, label, &self.limits);
        entry.insert(Client {
            conn,
            marks: Marks::default(),
        });
        Ok((key, id))
    }

    /// Takes a client out for good (the loop reaps it at the end of a turn).
    pub fn remove(&mut self, key: usize, registry: &Registry) -> Option<Connection<S>> {
        let mut conn = self.slab.try_remove(key)?.conn;
        let _ = registry.deregister(conn.stream_mut());
        add(&mut self.gone.totals, &conn);
        if let Some(reason) = conn.reason() {
            self.gone.disconnects[reason.index()] += 1;
        }
        Some(conn)
    }

    /// Reregisters client `key` if the interest it needs changed (writable while output waits).
    /// If the poll refuses, the client is closed as `reset` and `false` returned: reap it.
    pub fn update_interest(&mut self, key: usize, registry: &Registry) -> bool {
        let Some(conn) = self.get_mut(key) else {
            return true;
        };
        let Some(interest) = conn.interest_change() else {
            return true;
        };
        let ok = registry
            .reregister(conn.stream_mut(), token(key), interest)
            .is_ok();
        if !ok {
            conn.abort(Reason::Reset);
        }
        ok
    }

    /// Every connection held, open or leaving: what "online" counts.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub fn get(&self, key: usize) -> Option<&Connection<S>> {
        self.slab.get(key).map(|client| &client.conn)
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut Connection<S>> {
        self.slab.get_mut(key).map(|client| &mut client.conn)
    }

    /// The client in slot `key`, if it is still the one with this `id` (slots are reused, ids
    /// never).
    pub fn slot(&mut self, key: usize, id: ConnId) -> Option<&mut Connection<S>> {
        self.slab
            .get_mut(key)
            .map(|client| &mut client.conn)
            .filter(|conn| conn.id() == id)
    }

    /// Whether slot `key` still holds the client with this `id`.
    pub fn holds(&self, key: usize, id: ConnId) -> bool {
        self.get(key).is_some_and(|conn| conn.id() == id)
    }

    /// The marks of the client in slot `key`, if it is still the one with this `id`.
    pub fn marks(&mut self, key: usize, id: ConnId) -> Option<&mut Marks> {
        self.slab
            .get_mut(key)
            .filter(|client| client.conn.id() == id)
            .map(|client| &mut client.marks)
    }

    /// The slot of the open client with this id. A scan, which is fine at typing speed.
    pub fn find(&self, id: ConnId) -> Option<usize> {
        self.open_ones()
            .find(|(_, conn)| conn.id() == id)
            .map(|(key, _)| key)
    }

    /// Every connection held, with its slot, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Connection<S>)> {
        self.slab.iter().map(|(key, client)| (key, &client.conn))
    }

    /// The slots of every connection held, taken now: the caller may change the registry.
    pub fn keys(&self) -> Vec<usize> {
        self.slab.iter().map(|(key, _)| key).collect()
    }

    /// The clients that are not leaving.
    pub fn open_ones(&self) -> impl Iterator<Item = (usize, &Connection<S>)> {
        self.iter().filter(|(_, conn)| conn.is_open())
    }

    /// Queues one line (shared, ending in `\n`) for client `key` and gives its address if the line
    /// was queued. A client whose queue would overflow is dropped `slow`; one whose write failed is
    /// left for the loop to hear out and close.
    pub fn send(&mut self, key: usize, line: Rc<[u8]>) -> Result<Peer, NotQueued> {
        let Some(client) = self.slab.get_mut(key) else {
            return Err(NotQueued::Leaving);
        };
        let result = deliver(client, line);
        let peer = client.conn.peer();
        self.lists.see_to(key, client);
        result.map(|()| peer)
    }

    /// Queues `line` for every open client but `except`, and says how many took it.
    pub fn send_all(&mut self, except: Option<usize>, line: &Rc<[u8]>) -> usize {
        let mut sent = 0;
        for (key, client) in &mut self.slab {
            if Some(key) == except || !client.conn.is_open() {
                continue;
            }
            if deliver(client, Rc::clone(line)).is_ok() {
                sent += 1;
            }
            self.lists.see_to(key, client);
        }
        sent
    }

    /// Closes client `key` for `reason`, after `farewell` (a line, ending in `\n`) if it can still
    /// take one.
    pub fn close(&mut self, key: usize, farewell: Option<Rc<[u8]>>, reason: Reason) {
        if let Some(conn) = self.get_mut(key) {
            if let Some(line) = farewell {
                let _ = conn.queue(line);
            }
            conn.close(reason);
            self.see_to(key);
        }
    }

    /// Client `(key, id)` had its grace period to take its last lines and did not: they are
    /// dropped (it may still be heard out).
    pub fn drop_output(&mut self, key: usize, id: ConnId) {
        if let Some(conn) = self.slot(key, id) {
            conn.drop_output();
            self.see_to(key);
        }
    }

    /// Writes what client `key` has queued and what the socket takes.
    pub fn flush(&mut self, key: usize) {
        if let Some(conn) = self.get_mut(key) {
            conn.flush();
            self.see_to(key);
        }
    }

    /// Puts client `key` on the lists the loop sees to: output or closing, and broken.
    pub fn see_to(&mut self, key: usize) {
        if let Some(client) = self.slab.get_mut(key) {
            self.lists.see_to(key, client);
        }
    }

    /// The next client to see to at the end of the turn (flush, reap, interest).
    pub fn next_dirty(&mut self) -> Option<usize> {
        while let Some((key, id)) = self.lists.dirty.pop_front() {
            if let Some(marks) = self.marks(key, id) {
                marks.dirty = false;
                return Some(key);
            }
        }
        None
    }

    /// Closes client `key`, whose write failed and who has been heard out (see
    /// `Connection::settle_broken`).
    pub fn settle(&mut self, key: usize) {
        if let Some(client) = self.slab.get_mut(key) {
            client.conn.settle_broken();
            client.marks.broken = false;
            self.lists.see_to(key, client);
        }
    }

    /// The next client whose write failed, to be heard out and then `settle`d.
    pub fn next_broken(&mut self) -> Option<usize> {
        while let Some((key, id)) = self.lists.broken.pop_front() {
            if self.marks(key, id).is_some() {
                return Some(key);
            }
        }
        None
    }

    /// Whether client `key` waits to be read again next turn.
    pub fn is_pending(&self, key: usize) -> bool {
        self.slab
            .get(key)
            .is_some_and(|client| client.marks.pending)
    }

    /// Remembers that client `key` stopped at its read budget.
    pub fn pend(&mut self, key: usize) {
        if let Some(Client { conn, marks }) = self.slab.get_mut(key)
            && !mem_set(&mut marks.pending)
        {
            self.lists.pending.push((key, conn.id()));
        }
    }

    /// Whether any client waits to be read again.
    pub fn any_pending(&self) -> bool {
        !self.lists.pending.is_empty() || !self.lists.waiting.is_empty()
    }

    /// Remembers that client `key` has input the turn's budget left unread: it goes first next
    /// turn.
    pub fn pend_unread(&mut self, key: usize) {
        if let Some(Client { conn, marks }) = self.slab.get_mut(key)
            && !mem_set(&mut marks.pending)
        {
            self.lists.waiting.push((key, conn.id()));
        }
    }

    /// The clients to read again now: those the last turn's budget left unread first, then those
    /// that stopped at their own budget or are being heard out.
    pub fn take_pending(&mut self) -> Vec<usize> {
        let mut pending = std::mem::take(&mut self.lists.waiting);
        pending.append(&mut self.lists.pending);
        pending
            .into_iter()
            .filter_map(|(key, id)| {
                let marks = self.marks(key, id)?;
                marks.pending = false;
                Some(key)
            })
            .collect()
    }
}

/// What the clients that are gone did, for `/stats` and `/metrics`.
#[derive(Debug, Default)]
struct Gone {
    /// Lines in, lines out, bytes in, bytes out.
    totals: [u64; 4],
    /// By reason, in the order of `Reason::ALL`.
    disconnects: [u64; Reason::ALL.len()],
}

/// Adds one connection's lines in, lines out, bytes in and bytes out to `totals`.
fn add<S: Stream>(totals: &mut [u64; 4], conn: &Connection<S>) {
    let (lines_in, lines_out) = conn.counts();
    let (bytes_in, bytes_out, _) = conn.bytes();
    for (total, n) in totals
        .iter_mut()
        .zip([lines_in, lines_out, bytes_in, bytes_out])
    {
        *total += n;
    }
}

/// The poll token of client slot `key`.
pub fn token(key: usize) -> Token {
    Token(CLIENT_BASE + key)
}

/// The client slot a poll token stands for, if it is a client's.
pub fn key_of(token: Token) -> Option<usize> {
    token.0.checked_sub(CLIENT_BASE)
}

/// The first client token; the ones below are the loop's own (waker, signals, listeners).
pub const CLIENT_BASE: usize = 1024;

/// Queues `line` for one client; one whose queue would overflow is dropped `slow`.
fn deliver<S: Stream>(client: &mut Client<S>, line: Rc<[u8]>) -> Result<(), NotQueued> {
    let result = client.conn.queue(line);
    if result == Err(NotQueued::Overflow) {
        client.conn.abort(Reason::Slow);
    }
    result
}

impl Marks {
    /// Marks its line timer armed; `true` if it was not, so arm it now.
    pub fn arm_line(&mut self) -> bool {
        !mem_set(&mut self.line_timer)
    }

    /// Its line timer fired: a new one may be armed.
    pub fn disarm_line(&mut self) {
        self.line_timer = false;
    }

    /// Marks its flood timer armed (`armed`) or fired; `true` if it was not armed, so arm it now.
    pub fn set_flood_timer(&mut self, armed: bool) -> bool {
        !std::mem::replace(&mut self.flood_timer, armed)
    }

    /// Marks the closing client's grace timer armed; `true` if it was not, so arm it now.
    pub fn arm_linger(&mut self) -> bool {
        !mem_set(&mut self.linger_timer)
    }
}

/// Sets `flag` and says whether it was set already.
fn mem_set(flag: &mut bool) -> bool {
    std::mem::replace(flag, true)
}
