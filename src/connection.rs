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
use crate::framing::{Line, LineDecoder};
use crate::ids::{ConnId, Peer, Reason};
use crate::queue::{OutQueue, Overflow};
use crate::socket::Socket;
pub use crate::stream::Stream;

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
    /// Bytes it sent that were not heard (read past `HEAR_OUT_CAP`, left in the socket when the
    /// hearing ended, read by `finish`): reported dropped once, as it is reaped.
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
            out: OutQueue::default(),
            // A TLS stream's own send buffer is part of --max-queue.
            max_queue,
            write_error: None,
            output_dropped: false,
            registered: Interest::READABLE,
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

    /// Whether it is closing and still being heard out.
    pub fn is_hearing(&self) -> bool {
        self.hearing
    }

    /// Whether it is to be read again next turn without waiting for an event: while heard out,
    /// but not once it is past the cap and its socket was found empty (then its next bytes bring
    /// an event, and the grace timer ends the wait).
    pub fn wants_reread(&self) -> bool {
        self.hearing && !(self.quiet && self.is_capped())
    }

    /// A read found its socket empty while hearing it out: whether that was the first time in a
    /// row (look again next turn) rather than the second (it is heard out).
    pub fn first_quiet(&mut self) -> bool {
        !std::mem::replace(&mut self.quiet, true)
    }

    /// Whether hearing it out reached `HEAR_OUT_CAP`: the line it was in the middle of is cut.
    pub fn is_capped(&self) -> bool {
        self.heard_out >= HEAR_OUT_CAP
    }

    /// Stops hearing a closing client; what still waits in its socket is counted as not heard,
    /// beside what was read past `HEAR_OUT_CAP` (reported once, by `finish`).
    pub fn stop_hearing(&mut self) {
        if std::mem::replace(&mut self.hearing, false) {
            self.discarded += self.stream.unread();
        }
    }

    /// Reads until the socket would block, the client closes or `budget` is spent, using `buf` as
    /// scratch space, and hands every complete line to `on_line` in order.
    ///
    /// `budget` counts work, not bytes: every byte read costs one, every line `per_line` more (in
    /// the room, one for each member it goes to). Each read asks for no more bytes than the budget
    /// left could pay for as lines, so a read never causes more work than the budget allows.
    ///
    /// A closing client that was heard out up to `HEAR_OUT_CAP` is still read to the end, but
    /// what it sends is only counted (`discarded`), so that it is reported, not silently lost.
    pub fn read(
        &mut self,
        buf: &mut [u8],
        budget: &mut usize,
        per_line: usize,
        mut on_line: impl FnMut(Line<'_>),
    ) -> ReadStatus {
        loop {
            if *budget == 0 {
                return ReadStatus::BudgetSpent;
            }
            let discarding = self.hearing && self.is_capped();
            // Headless (a line costs at most one more than its bytes), read what the budget left
            // covers in bytes, overshooting by at most as much again; in the room, no more bytes
            // than the budget could pay for as lines.
            let affordable = if per_line <= 1 {
                *budget
            } else {
                *budget / (1 + per_line)
            };
            let mut want = buf.len().min(affordable.max(1));
            if discarding {
                want = buf.len().min(*budget);
            } else if self.hearing {
                want = want.min(HEAR_OUT_CAP - self.heard_out);
            }
            let read = self.stream.read(&mut buf[..want]);
            if let Ok(n) = read {
                self.bytes_in += n as u64;
            }
            match read {
                Ok(0) => return ReadStatus::Eof,
                Ok(n) if discarding => {
                    self.quiet = false;
                    self.discarded += n;
                    *budget = budget.saturating_sub(n);
                }
                Ok(n) if self.bytes_in == n as u64 && is_tls_record(&buf[..n]) => {
                    if !self.stream.is_tls() {
                        // A TLS client on the plain port: a handshake_failure alert tells it, and
                        // its hello is not taken for a message.
                        let _ = self.stream.write(crate::tls::TLS_ALERT);
                        self.discarded += n;
                        return ReadStatus::TlsOnPlain;
                    }
                    self.take(buf, n, budget, per_line, &mut on_line);
                }
                Ok(n) => self.take(buf, n, budget, per_line, &mut on_line),
                // Would block "errors" are the OS's way of saying: nothing more for now.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadStatus::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadStatus::Failed,
            }
        }
    }

    /// Frames `n` bytes read into `buf` and hands out the complete lines, counting their work.
    fn take(
        &mut self,
        buf: &[u8],
        n: usize,
        budget: &mut usize,
        per_line: usize,
        on_line: &mut impl FnMut(Line<'_>),
    ) {
        if self.hearing {
            self.heard_out += n;
            self.quiet = false;
        }
        self.last_input = Instant::now();
        let mut lines: usize = 0;
        self.decoder.feed(&buf[..n], |line| {
            lines += 1;
            on_line(line);
        });
        self.lines_in += lines as u64;
        let work = n.saturating_add(per_line.saturating_mul(lines));
        *budget = budget.saturating_sub(work);
    }

    /// Whether bytes of an unfinished line are waiting.
    pub fn has_partial(&self) -> bool {
        self.decoder.has_partial()
    }

    /// Hands out the unfinished line as a message of its own, if there is one.
    pub fn take_partial(&mut self, on_line: impl FnOnce(Line<'_>)) {
        let lines_in = &mut self.lines_in;
        self.decoder.take_partial(|line| {
            *lines_in += 1;
            on_line(line);
        });
    }

    /// Forgets the unfinished line: the client has left, and what it sent after leaving is not
    /// heard.
    pub fn discard_partial(&mut self) {
        self.decoder.discard_partial();
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

/// Whether `bytes`, the first a client sent, open a TLS handshake record (content type 22, version
/// 3.x): what a TLS client sends first, and no line of text starts with.
fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16, 0x03, ..])
}

/// How many reads `finish` spends discarding a closing client's input.
const FINISH_READS: usize = 4;
/// The most a closing client is heard out: bytes read after the server closed it. Past it, what
/// is left is counted and reported as dropped.
pub const HEAR_OUT_CAP: usize = 4 * 1024 * 1024;
/// The longest a closing client is heard out (below the cap), counted from its close.
pub const HEAR_OUT_TIME: std::time::Duration = std::time::Duration::from_secs(10);
