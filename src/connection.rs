//! One peer: its socket, its id, its framing state, its output queue and its state.
//!
//! A `Connection` reads within a budget, queues lines, flushes what the socket takes and closes,
//! and returns outcomes. A failed write is kept as a state (`is_broken`) rather than handled on
//! the spot: the loop resolves it once per turn, so that writing to one client never leads to
//! reading another. Deliberately not here: the slab, other clients, timers or reporting; the
//! registry and the chat decide what an outcome means and what the operator reads.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use mio::Interest;

use crate::config::Limits;
use crate::flood::Bucket;
use crate::framing::LineDecoder;
use crate::ids::{ConnId, Peer, Reason};
use crate::queue::{OutQueue, Overflow};
use crate::socket::Socket;
pub use crate::stream::Stream;
use crate::telnet::Telnet;

mod input;

mod hearing;

use hearing::HEAR_OUT_CAP;

mod closing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// No more reading; what is queued is flushed, then the server reaps the client.
    Closing(Reason),
}

/// Why a line was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotQueued {
    /// The client is closing: it gets nothing more.
    Leaving,
    /// The client does not read: its queue would pass `--max-queue`.
    Overflow,
    /// A write to the client failed: its socket is broken.
    Broken,
}

/// How a read ended.
#[derive(Debug)]
pub enum ReadStatus {
    /// The socket has nothing more for now.
    Drained,
    /// The per-turn budget ran out with bytes possibly still waiting: resume next turn.
    BudgetSpent,
    /// The client is over `--max-rate`: its socket is left unread, input perhaps still waiting,
    /// until its bucket has tokens again (`bucket().wake_at()`).
    Throttled,
    /// The client closed its side.
    Eof,
    /// The read failed (typically a reset).
    Failed,
    /// The first bytes on a plain connection were a TLS handshake: the client was told so with a
    /// TLS alert, and nothing it sent is heard.
    TlsOnPlain,
}

pub struct Connection<S = Socket> {
    stream: S,
    id: ConnId,
    peer: Peer,
    /// `PEER #ID`, as its message reports name it; shared with the callers that report them.
    label: Rc<str>,
    /// How the relay room calls it: `#ID` until it picks a nickname.
    name: Rc<str>,
    state: State,
    /// Closing, but its socket is still read: what it sent before the server closed it (kick,
    /// shutdown, timeout, slow, a failed write) is heard, up to `HEAR_OUT_CAP` bytes, until the
    /// socket has no more, the client closes, or its grace period ends.
    hearing: bool,
    /// Bytes read since it began closing, against `HEAR_OUT_CAP`.
    heard_out: usize,
    /// Bytes it sent that were not heard (read past `HEAR_OUT_CAP`, then what `finish` reads or
    /// finds left in the socket): reported dropped once, as it is reaped.
    discarded: usize,
    /// While hearing out: the last read found the socket empty. One empty read is not the end:
    /// on loopback, what the client's kernel still holds arrives a moment after a read makes room
    /// for it, so the socket is read once more a turn later before the hearing ends.
    quiet: bool,
    connected_at: Instant,
    /// When it began closing.
    closed_at: Option<Instant>,
    /// When the last bytes arrived (or it connected): the line and idle timeouts count from here.
    last_input: Instant,
    lines_in: u64,
    lines_out: u64,
    /// Bytes read from the socket, for `/metrics`.
    bytes_in: u64,
    decoder: LineDecoder,
    /// Its telnet commands, if it sends any: stripped from what it says, answered.
    telnet: Telnet,
    /// It has ended a line with a newline: its unfinished lines wait for the next one, not for
    /// `--line-timeout`.
    ends_lines: bool,
    /// Lines queued for the client; holds no memory when empty.
    out: OutQueue,
    /// The cap on the queue's unsent bytes.
    max_queue: usize,
    /// Set by the first failed write: nothing more is written, and the loop, once per turn, hears
    /// what the client sent and then closes it (see `settle_broken`).
    write_error: Option<io::ErrorKind>,
    /// Its output was given up on (a failed write, or no time left): what the stream itself still
    /// holds (TLS records) is not waited for either.
    output_dropped: bool,
    /// The interest the socket is registered with, so the server reregisters only on a change.
    registered: Interest,
    /// `--max-rate`: the token bucket on its lines, if on (boxed: nothing held when off).
    flood: Option<Box<Bucket>>,
}

impl<S: Stream> Connection<S> {
    /// A new open client; `label` is how its reports name it.
    pub fn new(stream: S, id: ConnId, peer: Peer, label: Rc<str>, limits: &Limits) -> Self {
        let now = Instant::now();
        let max_queue = limits.max_queue.saturating_sub(stream.reserved()).max(1);
        Connection {
            stream,
            id,
            peer,
            label,
            name: id.to_string().into(),
            state: State::Open,
            hearing: false,
            heard_out: 0,
            discarded: 0,
            quiet: false,
            connected_at: now,
            closed_at: None,
            last_input: now,
            lines_in: 0,
            lines_out: 0,
            bytes_in: 0,
            decoder: LineDecoder::new(limits.max_line),
            telnet: Telnet::default(),
            ends_lines: false,
            out: OutQueue::default(),
            // A TLS stream's own send buffer is part of --max-queue.
            max_queue,
            write_error: None,
            output_dropped: false,
            registered: Interest::READABLE,
            flood: limits.flood.map(|rate| Box::new(Bucket::new(rate, now))),
        }
    }

    pub fn id(&self) -> ConnId {
        self.id
    }

    pub fn peer(&self) -> Peer {
        self.peer
    }

    pub fn label(&self) -> &Rc<str> {
        &self.label
    }

    pub fn name(&self) -> &Rc<str> {
        &self.name
    }

    /// Takes a new name in the room and gives back the old one.
    pub fn rename(&mut self, name: Rc<str>) -> Rc<str> {
        std::mem::replace(&mut self.name, name)
    }

    pub fn connected_at(&self) -> Instant {
        self.connected_at
    }

    pub fn last_input(&self) -> Instant {
        self.last_input
    }

    /// Messages heard from it and lines queued for it.
    pub fn counts(&self) -> (u64, u64) {
        (self.lines_in, self.lines_out)
    }

    /// Bytes read, bytes written and bytes queued now (as the cap counts them), for `/metrics`.
    pub fn bytes(&self) -> (u64, u64, usize) {
        (self.bytes_in, self.out.written(), self.out.held())
    }

    /// Whether it came over TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Whether it is still being read and served (not closing).
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Why it is closing, if it is.
    pub fn reason(&self) -> Option<Reason> {
        match self.state {
            State::Open => None,
            State::Closing(reason) => Some(reason),
        }
    }

    /// Whether its socket is read: it is open, or closing and being heard out.
    pub fn is_heard(&self) -> bool {
        self.state == State::Open || self.hearing
    }

    /// Its token bucket, if `--max-rate` is on.
    pub fn bucket(&self) -> Option<&Bucket> {
        self.flood.as_deref()
    }

    /// Whether its bucket holds it back: input may wait unread in its socket.
    pub fn is_held_back(&self) -> bool {
        self.flood.as_deref().is_some_and(Bucket::is_held)
    }

    /// Queues a line (ending in `\n`) that may be shared with other clients.
    pub fn queue(&mut self, line: Rc<[u8]>) -> Result<(), NotQueued> {
        if self.write_error.is_some() {
            return Err(NotQueued::Broken);
        }
        if self.state != State::Open {
            return Err(NotQueued::Leaving);
        }
        // Before calling the client slow, try the write: the socket may take what is queued now
        // (a burst can fill the queue within one turn, before `before_sleep` has written any).
        if !self.out.fits(line.len(), self.max_queue) {
            self.flush();
            if self.write_error.is_some() {
                return Err(NotQueued::Broken);
            }
        }
        self.out
            .push(line, self.max_queue)
            .map_err(|Overflow| NotQueued::Overflow)?;
        self.lines_out += 1;
        Ok(())
    }

    /// Writes queued lines until the socket would block or the queue is empty. A failure is kept,
    /// not returned: see `is_broken`.
    pub fn flush(&mut self) {
        if self.write_error.is_some() {
            return;
        }
        // A TLS stream sends what it holds itself on `flush`; a TCP one holds nothing.
        let written =
            self.out
                .write_to(&mut self.stream)
                .and_then(|()| match self.stream.flush() {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    other => other,
                });
        if let Err(e) = written {
            self.write_error = Some(e.kind());
            self.drop_output();
        }
    }

    /// Whether a write failed and the failure is not settled yet. Such a client is written to no
    /// more; the loop hears it out and then closes it with `settle_broken`.
    pub fn is_broken(&self) -> bool {
        self.write_error.is_some()
    }

    /// Whether everything queued has been written (a TLS stream's own records included, unless
    /// its output was given up on).
    pub fn is_flushed(&self) -> bool {
        self.out.is_empty() && (self.output_dropped || !self.stream.has_backlog())
    }
}

/// How many bytes `finish` reads at most, discarding a closing client's input (what four reads of
/// the loop's 64 KiB buffer take).
const FINISH_BYTES: usize = 256 * 1024;
