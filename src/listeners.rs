//! The listening sockets: those systemd passed (socket activation), binding every `--listen`
//! address, and accepting within a budget, with the bookkeeping for when `accept` fails for want
//! of descriptors.
//!
//! Deliberately not here: what happens to an accepted connection (the loop seats it, the chat
//! greets it) or the timers (the loop arms the retry this module asks for).

use std::fmt;
use std::io::{self, Read, Write};
use std::mem;
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::ids::Peer;
use crate::report;
use crate::tls;

/// Why the server could not start: one line for the operator.
#[derive(Debug)]
pub enum BindError {
    /// A listener: prints as `cannot listen on ADDR: REASON`.
    Listen { addr: SocketAddr, source: io::Error },
    /// The poll, the waker or the signals: the OS refused the event loop itself.
    Setup(io::Error),
    /// A file the configuration names (TLS certificate or key, password file): one line.
    File(String),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            BindError::Setup(source) => write!(f, "cannot set up the event loop: {source}"),
            BindError::File(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for BindError {}

pub struct Listeners {
    /// Listener `i` is registered as `Token(base + i)`; emptied at shutdown.
    list: Vec<TcpListener>,
    /// Set from the first failed `accept` (out of descriptors) until one succeeds again.
    paused: bool,
    /// Whether the loop has a retry armed; there is never more than one.
    retry_armed: bool,
    /// Listeners that stopped at their accept budget: accepted from again next turn.
    pending: Vec<usize>,
    /// Listeners from this index on are `--tls-listen` ones.
    tls_from: usize,
}

/// What one `accept` gave.
pub enum Accepted {
    Client(TcpStream, Peer),
    /// Nothing more is waiting (or the listener is closed).
    Drained,
    /// `accept` failed (typically out of descriptors). No new readiness edge comes for the
    /// connections already queued, so the loop retries from a timer if `retry` is set.
    Failed {
        retry: bool,
    },
}

impl Listeners {
    /// Registers the listeners systemd passed (`inherited`, already listening and non-blocking),
    /// then binds and registers every address; listener `i` is the `i`th of `tokens`. Reports each
    /// one's real address once all are up (a script that reads `listening on` can rely on that).
    pub fn bind(
        inherited: Vec<std::net::TcpListener>,
        addrs: &[SocketAddr],
        tls_addrs: &[SocketAddr],
        backlog: u32,
        reuse_port: bool,
        registry: &Registry,
        tokens: std::ops::Range<usize>,
    ) -> Result<Listeners, BindError> {
        let tls_from = inherited.len() + addrs.len();
        let all: Vec<SocketAddr> = addrs.iter().chain(tls_addrs).copied().collect();
        let addrs = &all[..];
        if inherited.len() + addrs.len() > tokens.len() {
            let too_many = io::Error::new(io::ErrorKind::InvalidInput, "too many listeners");
            return Err(BindError::Setup(too_many));
        }
        let mut list = Vec::with_capacity(inherited.len() + addrs.len());
        for listener in inherited {
            let mut listener = TcpListener::from_std(listener);
            let token = Token(tokens.start + list.len());
            registry
                .register(&mut listener, token, Interest::READABLE)
                .map_err(BindError::Setup)?;
            list.push(listener);
        }
        for &addr in addrs {
            // An IPv6 wildcard listener also takes IPv4 (dual stack) unless an IPv4 listener on the
            // same port is asked for too, which it would otherwise collide with.
            let only_v6 = addr.is_ipv6()
                && addr.port() != 0
                && addrs
                    .iter()
                    .any(|other| other.is_ipv4() && other.port() == addr.port());
            let listen_error = |source| BindError::Listen { addr, source };
            let mut listener = listen(addr, backlog, only_v6, reuse_port).map_err(listen_error)?;
            registry
                .register(
                    &mut listener,
                    Token(tokens.start + list.len()),
                    Interest::READABLE,
                )
                .map_err(listen_error)?;
            list.push(listener);
        }
        for (index, listener) in list.iter().enumerate() {
            let addr = listener.local_addr().map_err(BindError::Setup)?;
            report::listening(addr, index >= tls_from);
        }
        Ok(Listeners {
            list,
            paused: false,
            retry_armed: false,
            pending: Vec::new(),
            tls_from,
        })
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether listener `index` is a `--tls-listen` one.
    pub fn is_tls(&self, index: usize) -> bool {
        index >= self.tls_from
    }

    /// Accepts one connection from listener `index`. The first failure of an episode is reported
    /// once, and so is the first success after it.
    pub fn accept(&mut self, index: usize) -> Accepted {
        let Some(listener) = self.list.get(index) else {
            return Accepted::Drained; // Closed at shutdown; a late event.
        };
        loop {
            match listener.accept() {
                Ok((stream, addr)) => {
                    if mem::take(&mut self.paused) {
                        report::accepting_again();
                    }
                    return Accepted::Client(stream, Peer(addr));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::Drained,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Typically EMFILE or ENFILE. Warn once per episode.
                    if !mem::replace(&mut self.paused, true) {
                        report::accept_failed(&e);
                    }
                    let retry = !mem::replace(&mut self.retry_armed, true);
                    return Accepted::Failed { retry };
                }
            }
        }
    }

    /// The loop's retry timer fired: the next failure may arm another.
    pub fn retry_fired(&mut self) {
        self.retry_armed = false;
    }

    /// Listener `index` stopped at its budget with connections possibly waiting.
    pub fn pend(&mut self, index: usize) {
        if !self.pending.contains(&index) {
            self.pending.push(index);
        }
    }

    pub fn any_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn take_pending(&mut self) -> Vec<usize> {
        mem::take(&mut self.pending)
    }

    /// Stops listening: the sockets are closed, and late events find nothing.
    pub fn close(&mut self, registry: &Registry) {
        self.pending.clear();
        for mut listener in self.list.drain(..) {
            let _ = registry.deregister(&mut listener);
        }
    }
}

/// Makes an accepted client's socket fit for chat: lines go out at once (no Nagle delay), and with
/// `keepalive` a silent connection is probed after that long, then every `KEEPALIVE_INTERVAL`,
/// `KEEPALIVE_PROBES` times, so a peer that vanished without a FIN or a reset is found. No
/// TCP_USER_TIMEOUT: it would also reset a live client that only paused reading (a suspended
/// `nc`) with output waiting; such a client is `--max-queue`'s. Failures are ignored: the client
/// is served all the same.
pub fn tune(stream: &TcpStream, keepalive: Option<Duration>) {
    let _ = stream.set_nodelay(true);
    let Some(idle) = keepalive else {
        return;
    };
    let socket = SockRef::from(stream);
    let probes = TcpKeepalive::new()
        .with_time(idle)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let _ = socket.set_tcp_keepalive(&probes);
}

const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 5;

/// Turns a connection away with one line, `why` in the report; one from a TLS listener with a
/// TLS alert instead: it reads whatever comes as TLS records, and a plain line would arrive inside
/// its handshake (openssl: "wrong version number").
pub fn refuse(
    mut stream: TcpStream,
    peer: Peer,
    line: &[u8],
    tls: bool,
    buf: &mut [u8],
    why: &str,
) {
    let _ = stream.write(if tls { tls::ACCESS_DENIED_ALERT } else { line });
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Closing with unread input sends a reset, which can destroy the line: read what has arrived
    // so far (what comes later may still cause one; the client is gone to us).
    let _ = stream.read(buf);
    report::refused(peer, why);
}

/// A non-blocking listener with our backlog (mio's own `bind` listens with 128, which a burst of
/// connects overflows) and SO_REUSEADDR, so a restart need not wait out TIME_WAIT; with
/// `--reuse-port` also SO_REUSEPORT, so other processes may listen on the same port and the kernel
/// spreads new connections between them.
fn listen(
    addr: SocketAddr,
    backlog: u32,
    only_v6: bool,
    reuse_port: bool,
) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(only_v6)?;
    }
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(TcpListener::from_std(socket.into()))
}
