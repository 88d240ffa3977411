//! What every socket loop of the harness shares: the non-blocking connect that registers the new
//! client with the loop's `Poll`, the read until `WouldBlock`, the checks between two waits (the
//! row's deadline, the server's exit), how a loop ended (`End`), and the errors it met
//! (`Problems`).
//!
//! Deliberately not here: what a loop does with its clients (`clients.rs`, `room.rs`) or how a
//! server runs (`targets.rs`); and no figure is computed here.

use std::fmt::Display;
use std::io::{self, ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::targets::Target;

/// Errors of one kind of work, counted, with the first one kept to show.
#[derive(Debug, Default)]
pub struct Problems {
    pub count: u64,
    pub first: Option<String>,
}

impl Problems {
    /// A new `Poll`, or `None` with the error noted.
    pub fn new_poll(&mut self) -> Option<Poll> {
        Poll::new().map_err(|e| self.add("poll", e)).ok()
    }

    /// One `poll`, with an interrupted wait counted as an empty one; false (and the error noted)
    /// when polling itself failed.
    pub fn poll(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> bool {
        match poll.poll(events, timeout) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                self.add("poll", e);
                false
            }
            _ => true,
        }
    }

    pub fn add(&mut self, what: &str, error: impl Display) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(format!("{what}: {error}"));
        }
    }

    pub fn merge(&mut self, other: Problems) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    /// `"N errors, first: ..."`, or `None` when there were none.
    pub fn summary(&self) -> Option<String> {
        let first = self.first.as_deref().unwrap_or("?");
        (self.count > 0).then(|| format!("{} client errors, first: {first}", self.count))
    }
}

/// How a phase of a client loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Done,
    /// Out of time; what was still missing.
    TimedOut(String),
    /// The server stopped (ncat aborts past ~1017 clients), or polling failed; why.
    ServerGone(String),
}

/// The checks a client loop makes before each wait for events: the phase's deadline, and whether
/// the server still runs.
pub struct Watch {
    deadline: Instant,
    /// When the server was last looked at: every SERVER_CHECK, not every turn, as each look is
    /// a system call and a turn may be a few microseconds.
    last_check: Instant,
}

impl Watch {
    pub fn new(deadline: Instant) -> Watch {
        Watch {
            deadline,
            last_check: Instant::now(),
        }
    }

    /// Checks the deadline and the server, then waits up to `wait` for `events`; `Err` with how
    /// the phase ended if it must stop (`TimedOut` says the budget is spent: a caller with more to
    /// say says it instead).
    pub fn poll(
        &mut self,
        target: &mut Target,
        problems: &mut Problems,
        poll: &mut Poll,
        events: &mut Events,
        wait: Duration,
    ) -> Result<(), End> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(End::TimedOut("over the row's budget".into()));
        }
        if now - self.last_check >= SERVER_CHECK {
            self.last_check = now;
            if let Some(why) = target.exited() {
                return Err(End::ServerGone(why));
            }
        }
        if !problems.poll(poll, events, Some(wait)) {
            return Err(End::ServerGone("poll failed".into()));
        }
        Ok(())
    }
}

/// A non-blocking connect to `dst`, from `source` if given (else the kernel's choice, 127.0.0.1),
/// registered with `poll` under `token` for `interest`.
pub fn connect(
    poll: &Poll,
    token: Token,
    interest: Interest,
    dst: SocketAddr,
    source: Option<Ipv4Addr>,
) -> io::Result<TcpStream> {
    let socket = socket_from(source)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&dst.into()) {
        Ok(()) => {}
        // The handshake finishes later; the first WRITABLE event says it has.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let mut stream = TcpStream::from_std(socket.into());
    poll.registry().register(&mut stream, token, interest)?;
    Ok(stream)
}

/// A TCP socket, bound to `source` if given.
pub fn socket_from(source: Option<Ipv4Addr>) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = source {
        // A plain bind() picks the port at once, and a port so picked serves one connection in
        // all; IP_BIND_ADDRESS_NO_PORT leaves the choice to connect(), per destination, as when
        // not binding at all. A kernel without it just spends ports faster.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads an int from the pointer for the length given; `one` lives for
        // the call and the descriptor is ours.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket.bind(&SocketAddr::from((ip, 0)).into())?;
    }
    Ok(socket)
}

/// The source address of the `i`th of many concurrent clients: the kernel's choice (127.0.0.1)
/// for the first `CLIENTS_PER_SOURCE`, then 127.0.0.2, 127.0.0.3, ... One source address has only
/// ~28 000 ephemeral ports for one destination, and long before they run out connect() slows
/// down: it tries the even half of the range first, one port at a time, so once that half is taken
/// every connect scans all of it (at 19 900 clients from one address, 4 000 connects/s instead of
/// 40 000, all of it the harness's kernel time).
pub fn source_for(i: usize) -> Option<Ipv4Addr> {
    match i / CLIENTS_PER_SOURCE {
        0 => None,
        block => Some(Ipv4Addr::new(127, 0, 0, 1 + (block % 250) as u8)),
    }
}

/// Makes the coming close of `stream` a reset rather than a FIN, so that neither side keeps the
/// connection in TIME_WAIT for a minute. Used only once a row has its figures: tens of thousands
/// of TIME_WAIT entries would slow later rows, whose servers may be given the same ports, and a
/// SYN that lands on a TIME_WAIT entry waits a second for its retransmit.
pub fn close_hard(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Reads from a non-blocking `stream` until it would block, handing each read's bytes to
/// `on_read`. `Ok(true)` then, `Ok(false)` once the peer has closed, or the read's error. Edge-
/// triggered readiness comes once for all that is waiting, so a reader that stopped early would
/// not hear of the rest.
pub fn read_available(
    mut stream: impl Read,
    buf: &mut [u8],
    mut on_read: impl FnMut(&[u8]),
) -> io::Result<bool> {
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(false),
            Ok(n) => on_read(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// [`read_available`] for a client, to which the server closing is an error.
pub fn read_client(
    stream: impl Read,
    buf: &mut [u8],
    on_read: impl FnMut(&[u8]),
) -> io::Result<()> {
    if read_available(stream, buf, on_read)? {
        Ok(())
    } else {
        Err(io::Error::new(ErrorKind::UnexpectedEof, "server closed"))
    }
}

/// Nanoseconds from `epoch` until now: the clients' time stamps.
pub fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The most of one line the harness keeps (`LineDecoder` cuts a line there): far more than any
/// line a scenario sends or a server writes, so that no line is ever cut.
pub const MAX_LINE: usize = 1 << 20;
/// How long a poll waits before looking at the stop flag, the deadline and the server again.
pub const STOP_CHECK: Duration = Duration::from_millis(20);
/// How often a loop checks that the server is still running.
pub const SERVER_CHECK: Duration = Duration::from_millis(50);
/// Concurrent clients per source address before the next 127.0.0.x is used.
const CLIENTS_PER_SOURCE: usize = 5_000;
