//! One peer: its socket, its id, its framing state, its output queue and its state.
//!
//! A `Connection` reads within a budget, queues lines, flushes what the socket takes and closes,
//! and returns outcomes. Deliberately not here: the slab, other clients, timers or reporting; the
//! server decides what an outcome means and what the operator reads.

use std::fmt;
use std::io::{self, Read};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Instant;

use mio::Interest;
use mio::net::TcpStream;

use crate::framing::{Line, LineDecoder};
use crate::queue::{self, OutQueue, Overflow};
use crate::report::Peer;

/// A client's number for the server's whole life: slab keys and tokens come back, ids never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a client left; `Display` gives the word in its `disconnect` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The client sent `exit`.
    Exit,
    /// The client closed its side (EOF).
    Closed,
    /// The connection was reset or failed.
    Reset,
    /// The operator used `/kick`.
    Kicked,
    /// The server shut down.
    Shutdown,
    /// The client did not read, and its output queue passed `--max-queue`.
    Slow,
    /// The client sent nothing for `--idle-timeout`.
    Timeout,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Exit => "exit",
            Reason::Closed => "closed",
            Reason::Reset => "reset",
            Reason::Kicked => "kicked",
            Reason::Shutdown => "shutdown",
            Reason::Slow => "slow",
            Reason::Timeout => "timeout",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    /// No more reading; what is queued is flushed, then the server reaps the client.
    Closing(Reason),
}

/// Why a line could not be queued.
#[derive(Debug)]
pub enum QueueError {
    /// The client does not read: its queue would pass `--max-queue`. The caller drops it `slow`.
    Overflow,
    /// Writing what was queued failed: the socket is broken.
    Failed(io::Error),
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
    Failed(io::Error),
}

pub struct Connection {
    stream: TcpStream,
    pub id: ConnId,
    pub peer: Peer,
    /// `PEER #ID`, as its message reports name it; shared with the callers that report them.
    pub label: Rc<str>,
    /// How the relay room calls it: `#ID` until it picks a nickname.
    pub name: Rc<str>,
    pub state: State,
    pub connected_at: Instant,
    /// When the last bytes arrived (or it connected): the line and idle timeouts count from here.
    pub last_input: Instant,
    pub lines_in: u64,
    pub lines_out: u64,
    decoder: LineDecoder,
    /// Lines queued for the client; holds no memory when empty.
    out: OutQueue,
    /// The cap on the queue's unsent bytes.
    max_queue: usize,
    /// The interest the socket is registered with, so the server reregisters only on a change.
    pub registered: Interest,
    /// Bookkeeping flags of the server's lists, so that a client is in each list at most once.
    pub flags: Flags,
}

/// Which of the server's per-turn lists and timers a connection is in.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flags {
    /// In `pending`: it stopped at its read budget.
    pub pending: bool,
    /// In `dirty`: it has output to flush or is closing.
    pub dirty: bool,
    /// A line timer is armed for it.
    pub line_timer: bool,
    /// It is closing and its grace timer is armed.
    pub linger_timer: bool,
}

impl Connection {
    pub fn new(
        stream: TcpStream,
        id: ConnId,
        peer: Peer,
        label: Rc<str>,
        max_line: usize,
        max_queue: usize,
    ) -> Self {
        let now = Instant::now();
        Connection {
            stream,
            id,
            peer,
            label,
            name: id.to_string().into(),
            state: State::Open,
            connected_at: now,
            last_input: now,
            lines_in: 0,
            lines_out: 0,
            decoder: LineDecoder::new(max_line),
            out: OutQueue::default(),
            max_queue,
            registered: Interest::READABLE,
            flags: Flags::default(),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads until the socket would block, the client closes or `budget` bytes have come in, using
    /// `buf` as scratch space, and hands every complete line to `on_line` in order.
    pub fn read(
        &mut self,
        buf: &mut [u8],
        budget: usize,
        mut on_line: impl FnMut(Line<'_>),
    ) -> ReadStatus {
        let mut total = 0;
        loop {
            if total >= budget {
                return ReadStatus::BudgetSpent;
            }
            match self.stream.read(buf) {
                Ok(0) => return ReadStatus::Eof,
                Ok(n) => {
                    total += n;
                    self.last_input = Instant::now();
                    let lines_in = &mut self.lines_in;
                    self.decoder.feed(&buf[..n], |line| {
                        *lines_in += 1;
                        on_line(line);
                    });
                }
                // Would block "errors" are the OS's way of saying: nothing more for now.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadStatus::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return ReadStatus::Failed(e),
            }
        }
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

    /// Queues `text` and a newline. Nothing is queued for a closing client.
    pub fn queue_line(&mut self, text: &[u8]) -> Result<(), QueueError> {
        self.queue(queue::line(text))
    }

    /// Queues a line (ending in `\n`) that may be shared with other clients. Nothing is queued for
    /// a closing client.
    pub fn queue(&mut self, line: Rc<[u8]>) -> Result<(), QueueError> {
        if self.state != State::Open {
            return Ok(());
        }
        // Before calling the client slow, try the write: the socket may take what is queued now
        // (a burst can fill the queue within one turn, before `before_sleep` has written any).
        if !self.out.fits(line.len(), self.max_queue) {
            self.flush().map_err(QueueError::Failed)?;
        }
        self.out
            .push(line, self.max_queue)
            .map_err(|Overflow| QueueError::Overflow)?;
        self.lines_out += 1;
        Ok(())
    }

    /// Writes queued lines until the socket would block or the queue is empty.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.write_to(&mut self.stream)
    }

    /// Whether everything queued has been written.
    pub fn is_flushed(&self) -> bool {
        self.out.is_empty()
    }

    /// Stops reading; what is queued still goes out. The first reason given is the one kept.
    pub fn close(&mut self, reason: Reason) {
        if self.state == State::Open {
            self.state = State::Closing(reason);
        }
    }

    /// Closes at once and forgets what is queued: for a client that cannot be written to.
    pub fn abort(&mut self, reason: Reason) {
        self.close(reason);
        self.drop_output();
    }

    /// Forgets what is queued (a closing client that did not take its last lines in time).
    pub fn drop_output(&mut self) {
        self.out.clear();
    }

    pub fn reason(&self) -> Option<Reason> {
        match self.state {
            State::Open => None,
            State::Closing(reason) => Some(reason),
        }
    }

    /// The interest the socket needs now: always readable, writable while output waits.
    pub fn interest(&self) -> Interest {
        if self.is_flushed() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }

    /// Ends the TCP session politely: a FIN after the queued bytes, and whatever the client still
    /// sent is read and discarded, because closing a socket with unread input makes Linux send a
    /// reset, which can destroy the goodbye line before the client reads it.
    /// A client that closed its side first has nothing more to send: dropping is enough.
    pub fn finish(mut self, buf: &mut [u8]) {
        if self.state == State::Closing(Reason::Closed) {
            return;
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        for _ in 0..FINISH_READS {
            match self.stream.read(buf) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}

/// How many reads `finish` spends discarding a closing client's input.
const FINISH_READS: usize = 4;
