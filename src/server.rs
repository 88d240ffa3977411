//! The event loop: one thread, one `mio::Poll`, the listeners, every client socket, the console
//! and the signals. It does the I/O and the mechanics; the chat (`chat.rs`) decides.
//!
//! A turn is: poll, dispatch each event by token (the console, signals, accepts, and for a client
//! first the read, then the write), read again the clients that stopped at their read budget, fire
//! due timers, then `before_sleep`: hear out and close the clients whose write failed, write
//! queued output, ask for WRITABLE only for what is left, reap the clients that are done, and flush
//! the reports. Clients leave the registry only in `before_sleep`, so no slot is reused while a
//! batch of events may still name it.
//!
//! Nothing re-enters: `hear` is the one place a client is read, and it is called only from the
//! top of a turn's steps, never from a send. A failed write is a mark on the client, resolved once
//! in `before_sleep` (`settle`), so that writing to one client never leads to reading another.
//!
//! Deliberately not here: what a line or a command causes (`chat.rs`), byte parsing
//! (`framing.rs`), report text (`report.rs`), or anything that blocks.

use std::fmt;
use std::io::{self, Read, Write};
use std::mem;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use socket2::{Domain, Protocol, Socket, Type};

use crate::chat::{self, Chat};
use crate::clients::Clients;
use crate::config::Config;
use crate::connection::ReadStatus;
use crate::console::{self, Command, ConsoleInput};
use crate::ids::{ConnId, Peer, Reason};
use crate::report;
use crate::timers::{Due, Timers};

/// Why the server could not start: one line for the operator.
#[derive(Debug)]
pub enum BindError {
    /// A listener: prints as `cannot listen on ADDR: REASON`.
    Listen { addr: SocketAddr, source: io::Error },
    /// The poll, the waker or the signals: the OS refused the event loop itself.
    Setup(io::Error),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            BindError::Setup(source) => write!(f, "cannot set up the event loop: {source}"),
        }
    }
}

impl std::error::Error for BindError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Shutting down: no listeners; clients flush their last line until they are gone or until
    /// their `Due::Linger` grace runs out.
    Draining,
}

pub struct Server {
    poll: Poll,
    /// Listener `i` is registered as `Token(LISTENER_BASE + i)`; emptied at shutdown.
    listeners: Vec<TcpListener>,
    /// Every client; slot `k` is registered as `Token(CLIENT_BASE + k)`.
    clients: Clients,
    chat: Chat,
    waker: Arc<Waker>,
    /// Lines from the stdin thread; `None` once the console has closed, so it is never polled
    /// again.
    console: Option<Receiver<ConsoleInput>>,
    signals: Signals,
    timers: Timers,
    /// The one read buffer, shared by all clients.
    read_buf: Box<[u8]>,
    phase: Phase,
    /// Set when the shutdown begins: a SIGINT then exits at once, from the signal handler.
    interrupt_exits: Arc<AtomicBool>,
    /// Set from the first failed `accept` (out of descriptors) until one succeeds again.
    accept_paused: bool,
    /// Whether a `Due::AcceptRetry` is armed; there is never more than one.
    accept_retry_armed: bool,
    /// Listeners that stopped at their accept budget: accepted from again next turn.
    pending_listeners: Vec<usize>,
    max_clients: usize,
    line_timeout: Duration,
    idle_timeout: Option<Duration>,
}

impl Server {
    /// Binds every `--listen` address and sets up the poll, the waker and the signals. Reports one
    /// `listening on` line per listener with its real address.
    pub fn bind(config: &Config) -> Result<Server, BindError> {
        let poll = Poll::new().map_err(BindError::Setup)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(BindError::Setup)?;
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(BindError::Setup)?;
        let interrupt_exits = Arc::new(AtomicBool::new(false));
        exit_on_interrupt_when(Arc::clone(&interrupt_exits)).map_err(BindError::Setup)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(BindError::Setup)?;

        if config.listen.len() > MAX_LISTENERS {
            let too_many =
                io::Error::new(io::ErrorKind::InvalidInput, "too many --listen addresses");
            return Err(BindError::Setup(too_many));
        }
        let mut listeners = Vec::with_capacity(config.listen.len());
        for (i, &addr) in config.listen.iter().enumerate() {
            // An IPv6 wildcard listener also takes IPv4 (dual stack) unless an IPv4 listener on the
            // same port is asked for too, which it would otherwise collide with.
            let only_v6 = addr.is_ipv6()
                && addr.port() != 0
                && config
                    .listen
                    .iter()
                    .any(|other| other.is_ipv4() && other.port() == addr.port());
            let listen_error = |source| BindError::Listen { addr, source };
            let mut listener = listen(addr, config.backlog, only_v6).map_err(listen_error)?;
            let token = Token(LISTENER_BASE + i);
            poll.registry()
                .register(&mut listener, token, Interest::READABLE)
                .map_err(listen_error)?;
            listeners.push(listener);
        }
        // Only once every listener is up: a script that reads `listening on` can rely on it.
        for listener in &listeners {
            match listener.local_addr() {
                Ok(local) => report::listening(local),
                Err(source) => return Err(BindError::Setup(source)),
            }
        }
        let max_clients = config.max_clients();
        report::max_clients(max_clients);

        Ok(Server {
            poll,
            listeners,
            clients: Clients::new(config.max_line(), config.max_queue()),
            chat: Chat::new(config.greeting.as_deref(), config.relay),
            waker: Arc::new(waker),
            console: None,
            signals,
            timers: Timers::default(),
            read_buf: vec![0; READ_BUFFER].into_boxed_slice(),
            phase: Phase::Running,
            interrupt_exits,
            accept_paused: false,
            accept_retry_armed: false,
            pending_listeners: Vec::new(),
            max_clients,
            line_timeout: config.line_timeout(),
            idle_timeout: config.idle_timeout(),
        })
    }

    /// Serves until a shutdown (`/quit`, SIGINT, SIGTERM) has finished.
    pub fn run(mut self) -> io::Result<()> {
        let (tx, rx) = mpsc::channel();
        console::spawn(tx, Arc::clone(&self.waker))?;
        self.console = Some(rx);
        report::flush(); // The `listening on` lines, before the first wait.

        let mut events = Events::with_capacity(EVENTS_PER_TURN);
        loop {
            if self.finished() {
                report::stopped();
                return Ok(());
            }
            if let Err(e) = self.poll.poll(&mut events, self.poll_timeout()) {
                // A signal landing during the wait interrupts it; the signal itself arrives as an
                // event on the next turn.
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                self.dispatch(event);
            }
            self.resume_pending();
            self.fire_timers();
            self.before_sleep();
        }
    }

    /// Whether the shutdown is complete: every client told, flushed (or given up on after the
    /// grace period) and reported.
    fn finished(&self) -> bool {
        self.phase == Phase::Draining && self.clients.is_empty()
    }

    /// Zero while clients or listeners wait to be read again, else until the next timer (or
    /// forever).
    fn poll_timeout(&self) -> Option<Duration> {
        if self.clients.any_pending() || !self.pending_listeners.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = self.timers.next_deadline()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    fn dispatch(&mut self, event: &Event) {
        match event.token() {
            WAKER => self.drain_console(),
            SIGNALS => self.drain_signals(),
            Token(t) if t >= CLIENT_BASE => {
                let key = t - CLIENT_BASE;
                // Read first: if the write then fails, what the client sent is already heard.
                // A client waiting in `pending` is read there, within its budget for the turn.
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                if readable && !self.clients.is_pending(key) {
                    self.hear(key);
                }
                if event.is_writable() || event.is_write_closed() {
                    self.clients.flush(key);
                }
            }
            Token(t) => self.accept(t - LISTENER_BASE),
        }
    }

    /// Accepts until the listener would block, or up to `ACCEPT_BUDGET` connections a turn (a
    /// burst of joins must not hold up everyone else's traffic; the rest waits for the next turn).
    /// When accept fails for want of descriptors, no new readiness edge comes for the connections
    /// already queued, so a timer retries instead.
    fn accept(&mut self, index: usize) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listeners.get(index) else {
                return; // Closed at shutdown; a late event.
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    if mem::take(&mut self.accept_paused) {
                        report::accepting_again();
                    }
                    self.admit(stream, Peer(addr));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Typically EMFILE or ENFILE. Warn once per episode.
                    if !mem::replace(&mut self.accept_paused, true) {
                        report::accept_failed(&e);
                    }
                    if !mem::replace(&mut self.accept_retry_armed, true) {
                        self.timers
                            .arm(Instant::now() + ACCEPT_RETRY, Due::AcceptRetry);
                    }
                    return;
                }
            }
        }
        if !self.pending_listeners.contains(&index) {
            self.pending_listeners.push(index);
        }
    }

    /// Seats a new client and lets the chat greet it, or refuses it past `--max-clients`.
    fn admit(&mut self, mut stream: TcpStream, peer: Peer) {
        if self.clients.len() >= self.max_clients {
            let _ = stream.write(chat::SERVER_FULL);
            let _ = stream.shutdown(Shutdown::Write);
            // Closing with unread input sends a reset, which can destroy the line: read what has
            // arrived so far (what comes later may still cause one; the client is gone to us).
            let _ = stream.read(&mut self.read_buf);
            report::refused(peer, "server full");
            return;
        }
        // Chat lines are small and interactive: send them now, not after the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let token = client_token(self.clients.next_key());
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            report::refused(peer, &e.to_string());
            return;
        }
        let (key, id) = self.clients.open(stream, peer);
        if let Some(idle) = self.idle_timeout {
            self.timers.arm(Instant::now() + idle, Due::Idle(key, id));
        }
        self.chat.join(&mut self.clients, key);
    }

    /// Reads client `key` within its budget and hands every line to the chat, then lets the chat
    /// act on them. The one place a client is read; it is never called from a send, so reading one
    /// client never happens inside reading another.
    fn hear(&mut self, key: usize) {
        let Some(conn) = self.clients.get_mut(key).filter(|conn| conn.is_open()) else {
            return; // Sporadic events for a client reaped or closing: ignore them.
        };
        let (id, label) = (conn.id(), Rc::clone(conn.label()));
        let chat = &mut self.chat;
        let mut exit = false;
        let status = conn.read(&mut self.read_buf, READ_BUDGET, |line| {
            // Whatever follows `exit` is not heard: the client has left.
            if !exit {
                exit = chat.hear(key, id, &label, line);
            }
        });
        if exit {
            Chat::exit(conn);
        }
        match status {
            ReadStatus::Drained | ReadStatus::BudgetSpent => {}
            ReadStatus::Eof => {
                // The unfinished line is a message now: the lab's client sends a bare `exit` and
                // closes at once.
                chat.hear_partial(key, conn);
                conn.close(Reason::Closed);
            }
            ReadStatus::Failed => conn.abort(Reason::Reset),
        }
        let line_due =
            (conn.is_open() && conn.has_partial()).then(|| conn.last_input() + self.line_timeout);
        if matches!(status, ReadStatus::BudgetSpent) {
            self.clients.pend(key);
        }
        match line_due {
            None => self.clients.see_to(key),
            Some(at) => {
                if let Some(marks) = self.clients.marks(key, id)
                    && !mem::replace(&mut marks.line_timer, true)
                {
                    self.timers.arm(at, Due::Line(key, id));
                }
            }
        }
        self.chat.act(&mut self.clients);
    }

    fn resume_pending(&mut self) {
        for index in mem::take(&mut self.pending_listeners) {
            self.accept(index);
        }
        for key in self.clients.take_pending() {
            self.hear(key);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(due) = self.timers.pop_due(now) {
            match due {
                Due::Line(key, id) => self.on_line_timer(key, id, now),
                Due::Idle(key, id) => self.on_idle_timer(key, id, now),
                Due::Linger(key, id) => {
                    if let Some(conn) = self.clients.slot(key, id) {
                        // It had its grace period to take its last lines and did not.
                        conn.drop_output();
                        self.clients.see_to(key);
                    }
                }
                Due::AcceptRetry => {
                    // Still failing, `accept` arms the next retry itself.
                    self.accept_retry_armed = false;
                    for index in 0..self.listeners.len() {
                        self.accept(index);
                    }
                }
            }
        }
    }

    /// An unfinished line becomes a message once no bytes have come for `--line-timeout`.
    fn on_line_timer(&mut self, key: usize, id: ConnId, now: Instant) {
        let timeout = self.line_timeout;
        let silent = |conn: &crate::connection::Connection| {
            conn.is_open() && conn.has_partial() && conn.last_input() + timeout <= now
        };
        if self.clients.slot(key, id).is_some_and(|conn| silent(conn)) {
            // Bytes that arrived during a long turn wait unread in the socket (no event announces
            // them until the next poll): hear them first, or the line would be cut in two. The
            // timer's mark is still set, so this read arms no second timer.
            self.hear(key);
            if let Some(conn) = self.clients.slot(key, id).filter(|conn| silent(conn)) {
                self.chat.hear_partial(key, conn);
                self.clients.see_to(key);
                self.chat.act(&mut self.clients);
            }
        }
        // Bytes still unfinished (more came since the timer was armed): wait out the rest.
        let Some(conn) = self.clients.slot(key, id) else {
            return; // The client is gone: the timer went with it.
        };
        match (conn.is_open() && conn.has_partial()).then(|| conn.last_input() + timeout) {
            Some(at) => self.timers.arm(at, Due::Line(key, id)),
            None => {
                if let Some(marks) = self.clients.marks(key, id) {
                    marks.line_timer = false;
                }
            }
        }
    }

    /// A client that has sent nothing for `--idle-timeout` is told and closed.
    fn on_idle_timer(&mut self, key: usize, id: ConnId, now: Instant) {
        let Some(idle) = self.idle_timeout else {
            return;
        };
        let due = |clients: &mut Clients| {
            let conn = clients.slot(key, id).filter(|conn| conn.is_open())?;
            Some(conn.last_input() + idle)
        };
        if due(&mut self.clients).is_some_and(|at| at <= now) {
            // As for the line timer: bytes may wait unread after a long turn.
            self.hear(key);
        }
        match due(&mut self.clients) {
            Some(at) if at <= now => Chat::time_out(&mut self.clients, key),
            Some(at) => self.timers.arm(at, Due::Idle(key, id)),
            None => {}
        }
    }

    /// The end of a turn: hear out and close the clients whose write failed, write what is queued,
    /// ask for WRITABLE only for what is left, reap the clients that are closing and done, and put
    /// this turn's reports on screen and disk. Reaping a client in the room tells the others, which
    /// queues more output: go round until nothing is left to see to.
    fn before_sleep(&mut self) {
        loop {
            if let Some(key) = self.clients.next_broken() {
                self.settle(key);
            } else if let Some(key) = self.clients.next_dirty() {
                self.tend(key);
            } else {
                break;
            }
        }
        report::flush();
    }

    /// A write to client `key` failed (typically the client is gone): what it sent before is
    /// still in the socket and is heard first, so its lines are reported and an EOF can make the
    /// reason `closed`; then it is closed.
    fn settle(&mut self, key: usize) {
        self.hear(key);
        self.clients.settle(key);
    }

    /// Flushes one client, reaps it if it is closing and done, and sets its interest.
    fn tend(&mut self, key: usize) {
        let Some(conn) = self.clients.get_mut(key) else {
            return;
        };
        conn.flush();
        if conn.is_broken() {
            // Settled first (it is on the broken list now), then seen to again.
            self.clients.see_to(key);
            return;
        }
        let (id, closing) = (conn.id(), !conn.is_open());
        if closing && conn.is_flushed() {
            return self.reap(key);
        }
        if let Some(interest) = conn.interest_change() {
            let registry = self.poll.registry();
            if registry
                .reregister(conn.stream_mut(), client_token(key), interest)
                .is_err()
            {
                conn.abort(Reason::Reset);
                return self.reap(key);
            }
        }
        if closing
            && let Some(marks) = self.clients.marks(key, id)
            && !mem::replace(&mut marks.linger_timer, true)
        {
            self.timers
                .arm(Instant::now() + GRACE, Due::Linger(key, id));
        }
    }

    /// Removes a closing client: its unfinished line is heard, then the chat reports it gone.
    fn reap(&mut self, key: usize) {
        if let Some(conn) = self.clients.get_mut(key) {
            self.chat.hear_partial(key, conn);
        }
        self.chat.act(&mut self.clients);
        let Some(mut conn) = self.clients.remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(conn.stream_mut());
        let reason = conn.reason().unwrap_or(Reason::Closed);
        let (peer, id, name) = (conn.peer(), conn.id(), Rc::clone(conn.name()));
        conn.finish(&mut self.read_buf);
        let running = self.phase == Phase::Running;
        self.chat
            .leave(&mut self.clients, (peer, id, &name), reason, running);
        // Timers are dropped lazily, when they fire; with a long --idle-timeout and many short
        // visits the dead ones could pile up, so sweep them once they outnumber the living.
        if self.timers.len() > 2 * self.clients.len() + TIMER_SWEEP_SLACK {
            let clients = &self.clients;
            self.timers.retain(|due| match due {
                Due::Line(key, id) | Due::Idle(key, id) | Due::Linger(key, id) => {
                    clients.holds(key, id)
                }
                Due::AcceptRetry => true,
            });
        }
    }

    fn drain_console(&mut self) {
        // Wakes coalesce: one event may stand for many lines, so read until the channel is empty.
        while let Some(rx) = &self.console {
            match rx.try_recv() {
                Ok(ConsoleInput::Line(line)) => match console::parse(&line) {
                    Some(Ok(command)) => self.execute(command),
                    Some(Err(error)) => report::console_error(&error),
                    None => {}
                },
                Ok(ConsoleInput::TooLong) => report::console_too_long(console::MAX_CONSOLE_LINE),
                Ok(ConsoleInput::Closed(error)) => {
                    report::console_closed(error.as_ref());
                    self.console = None;
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    report::console_closed(None);
                    self.console = None;
                }
            }
        }
    }

    /// The loop's part of a command: `/quit` is a shutdown, and a client is heard out before it is
    /// kicked (what it sent before the kick is heard, not dropped with the socket); the chat does
    /// the rest.
    fn execute(&mut self, command: Command) {
        match command {
            Command::Quit => self.begin_shutdown("/quit"),
            Command::Kick(id) => {
                if let Some(key) = self.clients.find(id) {
                    self.hear(key);
                }
                self.chat.command(&mut self.clients, command);
            }
            command => self.chat.command(&mut self.clients, command),
        }
    }

    fn drain_signals(&mut self) {
        let signals: Vec<i32> = self.signals.pending().collect();
        for signal in signals {
            match signal {
                SIGINT => self.begin_shutdown("SIGINT"),
                SIGTERM => self.begin_shutdown("SIGTERM"),
                _ => {}
            }
        }
    }

    /// Stops accepting, hears and tells every client, and gives their queues `GRACE` to drain.
    /// Every trigger (`/quit`, SIGINT, SIGTERM) comes here, and only the first one counts.
    fn begin_shutdown(&mut self, cause: &str) {
        if self.phase != Phase::Running {
            return;
        }
        report::shutting_down(cause);
        // From now on a SIGINT ends the process in the signal handler itself, even if the loop is
        // stuck (say, on a terminal paused with Ctrl-S).
        self.interrupt_exits.store(true, Ordering::SeqCst);
        self.pending_listeners.clear();
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        // What a client sent before the shutdown is heard, not dropped with the socket.
        let keys: Vec<usize> = self.clients.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.hear(key);
        }
        Chat::shut_down(&mut self.clients);
        // Each client that cannot flush at once gets its `Due::Linger` grace in `tend`.
        self.phase = Phase::Draining;
    }
}

/// Makes SIGINT end the process at once, with exit code 130 (as a shell reports a process ended
/// by SIGINT) and one line on stderr, whenever `armed` is set. It runs in the signal handler, so
/// it works even when the loop is stuck.
fn exit_on_interrupt_when(armed: Arc<AtomicBool>) -> io::Result<()> {
    let action = move || {
        if armed.load(Ordering::SeqCst) {
            const LINE: &[u8] = b"chatd: second interrupt: exiting now\n";
            // SAFETY: write(2) and _exit(2) are async-signal-safe; LINE is a static buffer.
            unsafe {
                libc::write(2, LINE.as_ptr().cast(), LINE.len());
                libc::_exit(130);
            }
        }
    };
    // SAFETY: the action only loads an atomic, writes to stderr and exits, all of which are
    // allowed in a signal handler; it allocates nothing and takes no lock.
    unsafe { signal_hook::low_level::register(SIGINT, action) }.map(|_| ())
}

/// A non-blocking listener with our backlog (mio's own `bind` listens with 128, which a burst of
/// connects overflows) and SO_REUSEADDR, so a restart need not wait out TIME_WAIT.
fn listen(addr: SocketAddr, backlog: u32, only_v6: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(only_v6)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(TcpListener::from_std(socket.into()))
}

fn client_token(key: usize) -> Token {
    Token(CLIENT_BASE + key)
}

const WAKER: Token = Token(0);
const SIGNALS: Token = Token(1);
const LISTENER_BASE: usize = 2;
const CLIENT_BASE: usize = 1024;
const MAX_LISTENERS: usize = CLIENT_BASE - LISTENER_BASE;

/// Bytes read from one client per turn before the others get their go.
const READ_BUDGET: usize = 256 * 1024;
const READ_BUFFER: usize = 64 * 1024;
const EVENTS_PER_TURN: usize = 1024;
/// How long a closing client's output may take to drain, at shutdown and otherwise.
const GRACE: Duration = Duration::from_secs(2);
/// Timers beyond twice the clients that are tolerated before dead ones are swept.
const TIMER_SWEEP_SLACK: usize = 1024;
/// Connections accepted from one listener per turn.
const ACCEPT_BUDGET: usize = 256;
/// How soon to try `accept` again after it failed (typically out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
