//! The event loop: one thread, one `mio::Poll`, the listeners, every client, the console and the
//! signals, and the decisions about what each event, line and command causes.
//!
//! A turn is: poll, dispatch each event by token, resume clients that stopped at their read budget,
//! fire due timers, then `before_sleep` (flush output, reap closing clients, flush the reports).
//! Clients leave the slab only in `before_sleep`, so no slot is reused while a batch of events may
//! still name it; anything kept across turns pairs the slab key with the client's `ConnId`.
//!
//! Deliberately not here: byte parsing (`framing.rs`), escaping and report text (`report.rs`), or
//! anything that blocks.

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
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::connection::{ConnId, Connection, QueueError, ReadStatus, Reason, State};
use crate::console::{self, Command, ConsoleInput};
use crate::framing::Line;
use crate::queue;
use crate::report::{self, Peer};
use crate::room::{self, Said};
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
    /// Every client; slab key `k` is registered as `Token(CLIENT_BASE + k)`.
    clients: Slab<Connection>,
    /// The id the next client gets; ids are never reused.
    next_id: u64,
    waker: Arc<Waker>,
    /// Lines from the stdin thread; `None` once the console has closed, so it is never polled
    /// again.
    console: Option<Receiver<ConsoleInput>>,
    signals: Signals,
    timers: Timers,
    /// Clients that stopped at their read budget: read again next turn without waiting for an event
    /// (readiness is edge-triggered, so none would come).
    pending: Vec<(usize, ConnId)>,
    /// Clients with output to flush or that are closing: seen to in `before_sleep`.
    dirty: Vec<(usize, ConnId)>,
    /// The one read buffer, shared by all clients.
    read_buf: Box<[u8]>,
    /// What hearing clients' lines changed, kept apart from `clients` so that it can be updated
    /// while one of them is being read.
    heard: Heard,
    phase: Phase,
    /// Set when the shutdown begins: a SIGINT then exits at once, from the signal handler.
    interrupt_exits: Arc<AtomicBool>,
    /// Set from the first failed `accept` (out of descriptors) until one succeeds again.
    accept_paused: bool,
    /// Whether a `Due::AcceptRetry` is armed; there is never more than one.
    accept_retry_armed: bool,
    /// Listeners that stopped at their accept budget: accepted from again next turn.
    pending_listeners: Vec<usize>,
    /// The greeting line, shared by every client's queue.
    greeting: Rc<[u8]>,
    max_clients: usize,
    max_line: usize,
    max_queue: usize,
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
            clients: Slab::new(),
            next_id: 1,
            waker: Arc::new(waker),
            console: None,
            signals,
            timers: Timers::default(),
            pending: Vec::new(),
            dirty: Vec::new(),
            read_buf: vec![0; READ_BUFFER].into_boxed_slice(),
            heard: Heard {
                last_speaker: None,
                room: config.relay.then(Vec::new),
            },
            phase: Phase::Running,
            interrupt_exits,
            accept_paused: false,
            accept_retry_armed: false,
            pending_listeners: Vec::new(),
            greeting: queue::line(config.greeting().as_bytes()),
            max_clients,
            max_line: config.max_line(),
            max_queue: config.max_queue(),
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

    /// Zero while clients wait to be read again, else until the next timer (or forever).
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.pending.is_empty() || !self.pending_listeners.is_empty() {
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
                let pending = self.clients.get(key).is_some_and(|conn| conn.flags.pending);
                if (event.is_readable() || event.is_read_closed() || event.is_error()) && !pending {
                    self.on_readable(key);
                }
                if event.is_writable() || event.is_write_closed() {
                    self.on_writable(key);
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

    fn admit(&mut self, mut stream: TcpStream, peer: Peer) {
        if self.clients.len() >= self.max_clients {
            let _ = stream.write(SERVER_FULL);
            let _ = stream.shutdown(Shutdown::Write);
            // Closing with unread input would send a reset, which can destroy the line.
            let _ = stream.read(&mut self.read_buf);
            report::refused(peer, "server full");
            return;
        }
        // In the room, a newcomer is told who is there, after the greeting.
        let who = self
            .heard
            .room
            .is_some()
            .then(|| room::who(self.open_clients().map(|(_, c)| &*c.name)));
        // Chat lines are small and interactive: send them now, not after the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, client_token(key), Interest::READABLE)
        {
            report::refused(peer, &e.to_string());
            return;
        }
        let id = ConnId(self.next_id);
        self.next_id += 1;
        let label = report::label(peer, id).into();
        let mut conn = Connection::new(stream, id, peer, label, self.max_line, self.max_queue);
        // A greeting longer than --max-queue is not sent; the client is still served.
        let _ = conn.queue(Rc::clone(&self.greeting));
        if let Some(who) = who {
            let _ = conn.queue(who);
        }
        mark_dirty(&mut self.dirty, key, &mut conn);
        if let Some(idle) = self.idle_timeout {
            self.timers.arm(conn.last_input + idle, Due::Idle(key, id));
        }
        let name = Rc::clone(&conn.name);
        entry.insert(conn);
        report::connect(peer, id, self.clients.len());
        if self.heard.room.is_some() {
            self.relay(Some(key), room::joined(&name, self.clients.len()));
        }
    }

    fn on_readable(&mut self, key: usize) {
        let Some(conn) = self.clients.get_mut(key) else {
            return; // Sporadic events for a client reaped earlier: ignore them.
        };
        if conn.state != State::Open {
            return;
        }
        let (label, id) = (Rc::clone(&conn.label), conn.id);
        let heard = &mut self.heard;
        let mut exit = false;
        let status = conn.read(&mut self.read_buf, READ_BUDGET, |line| {
            // Whatever follows `exit` is not heard: the client has left.
            if !exit {
                exit = on_line(&label, key, id, line, heard);
            }
        });
        if exit {
            leave(conn);
        }
        match status {
            ReadStatus::Drained => {}
            ReadStatus::BudgetSpent => {
                if !conn.flags.pending {
                    conn.flags.pending = true;
                    self.pending.push((key, id));
                }
            }
            ReadStatus::Eof => {
                // The unfinished line is a message now: the lab's client sends a bare `exit` and
                // closes at once.
                hear_partial(conn, key, &mut self.heard);
                conn.close(Reason::Closed);
            }
            ReadStatus::Failed(_) => conn.abort(Reason::Reset),
        }
        if conn.state != State::Open {
            mark_dirty(&mut self.dirty, key, conn);
        } else if conn.has_partial() && !conn.flags.line_timer {
            conn.flags.line_timer = true;
            let at = conn.last_input + self.line_timeout;
            self.timers.arm(at, Due::Line(key, id));
        }
        self.hear_room();
    }

    fn on_writable(&mut self, key: usize) {
        if let Some(conn) = self.clients.get_mut(key) {
            match conn.flush() {
                Ok(()) => mark_dirty(&mut self.dirty, key, conn),
                Err(error) => self.on_write_error(key, &error),
            }
        }
    }

    /// A write failed (typically the client is gone): what it sent before is still in the socket
    /// and is heard first, so its lines are reported and an EOF makes the reason `closed`.
    fn on_write_error(&mut self, key: usize, error: &io::Error) {
        self.on_readable(key);
        if let Some(conn) = self.clients.get_mut(key) {
            // The write took the reset's error, which leaves the read only an EOF to see: it was a
            // reset all the same. (A reset after the client's own FIN shows as EPIPE: `closed`.)
            if error.kind() == io::ErrorKind::ConnectionReset
                && conn.reason() == Some(Reason::Closed)
            {
                conn.state = State::Closing(Reason::Reset);
            }
            conn.abort(Reason::Reset);
            mark_dirty(&mut self.dirty, key, conn);
        }
    }

    fn resume_pending(&mut self) {
        for index in mem::take(&mut self.pending_listeners) {
            self.accept(index);
        }
        for (key, id) in mem::take(&mut self.pending) {
            if let Some(conn) = slot(&mut self.clients, key, id) {
                conn.flags.pending = false;
                self.on_readable(key);
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(due) = self.timers.pop_due(now) {
            match due {
                Due::Line(key, id) => self.on_line_timer(key, id, now),
                Due::Idle(key, id) => self.on_idle_timer(key, id, now),
                Due::Linger(key, id) => {
                    if let Some(conn) = slot(&mut self.clients, key, id) {
                        // It had its grace period to take its last lines and did not.
                        conn.drop_output();
                        mark_dirty(&mut self.dirty, key, conn);
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
        let Some(conn) = slot(&mut self.clients, key, id) else {
            return; // The client is gone: the timer went with it.
        };
        conn.flags.line_timer = false;
        if conn.state != State::Open || !conn.has_partial() {
            return;
        }
        // Bytes came in since the timer was armed: wait out the rest.
        let due = conn.last_input + self.line_timeout;
        if due > now {
            conn.flags.line_timer = true;
            self.timers.arm(due, Due::Line(key, id));
            return;
        }
        conn.flags.line_timer = true; // So that the read below arms no second timer.
        let silent = self.still_silent(key, id);
        let Some(conn) = slot(&mut self.clients, key, id) else {
            return;
        };
        conn.flags.line_timer = false;
        if conn.state != State::Open || !conn.has_partial() {
            return;
        }
        if !silent {
            conn.flags.line_timer = true;
            self.timers
                .arm(conn.last_input + self.line_timeout, Due::Line(key, id));
            return;
        }
        if hear_partial(conn, key, &mut self.heard) {
            mark_dirty(&mut self.dirty, key, conn);
        }
        self.hear_room();
    }

    /// A client that has sent nothing for `--idle-timeout` is told and closed.
    fn on_idle_timer(&mut self, key: usize, id: ConnId, now: Instant) {
        let (Some(idle), Some(conn)) = (self.idle_timeout, slot(&mut self.clients, key, id)) else {
            return;
        };
        if conn.state != State::Open {
            return;
        }
        let due = conn.last_input + idle;
        if due > now {
            self.timers.arm(due, Due::Idle(key, id));
            return;
        }
        let silent = self.still_silent(key, id);
        let Some(conn) = slot(&mut self.clients, key, id).filter(|c| c.state == State::Open) else {
            return;
        };
        if !silent {
            self.timers.arm(conn.last_input + idle, Due::Idle(key, id));
            return;
        }
        let _ = conn.queue_line(IDLE);
        conn.close(Reason::Timeout);
        mark_dirty(&mut self.dirty, key, conn);
    }

    /// Reads what client `key` has waiting and says whether nothing came. A timer that measures
    /// silence must not fire on bytes that arrived during a long turn and wait unread in the
    /// socket (no event announces them until the next poll).
    fn still_silent(&mut self, key: usize, id: ConnId) -> bool {
        let Some(before) = slot(&mut self.clients, key, id).map(|conn| conn.last_input) else {
            return false;
        };
        self.on_readable(key);
        slot(&mut self.clients, key, id).is_some_and(|conn| conn.last_input == before)
    }

    /// The end of a turn: write what is queued, ask for WRITABLE only for what is left, reap the
    /// clients that are closing and done, and put this turn's reports on screen and disk.
    fn before_sleep(&mut self) {
        // Reaping a client in the room tells the others, which queues more output: go round
        // until nothing is left to see to.
        while !self.dirty.is_empty() {
            let mut dirty = mem::take(&mut self.dirty);
            for (key, id) in dirty.drain(..) {
                self.tend(key, id);
            }
            // Keep the list's memory for the next turn.
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
        }
        report::flush();
    }

    /// Flushes one client, reaps it if it is closing and done, and sets its interest.
    fn tend(&mut self, key: usize, id: ConnId) {
        let Some(conn) = slot(&mut self.clients, key, id) else {
            return;
        };
        conn.flags.dirty = false;
        if let Err(error) = conn.flush() {
            // Marks it dirty again: reaped in the next round.
            self.on_write_error(key, &error);
            return;
        }
        if conn.state != State::Open && conn.is_flushed() {
            self.reap(key);
            return;
        }
        if conn.state != State::Open && !conn.flags.linger_timer {
            conn.flags.linger_timer = true;
            self.timers
                .arm(Instant::now() + GRACE, Due::Linger(key, id));
        }
        let interest = conn.interest();
        if interest != conn.registered {
            conn.registered = interest;
            let registry = self.poll.registry();
            if registry
                .reregister(conn.stream(), client_token(key), interest)
                .is_err()
            {
                conn.abort(Reason::Reset);
                self.reap(key);
            }
        }
    }

    /// Removes a closing client: its unfinished line is reported, then its disconnect.
    fn reap(&mut self, key: usize) {
        if let Some(conn) = self.clients.get_mut(key) {
            hear_partial(conn, key, &mut self.heard);
        }
        self.hear_room();
        let Some(mut conn) = self.clients.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(conn.stream());
        let reason = conn.reason().unwrap_or(Reason::Closed);
        report::disconnect(conn.peer, conn.id, reason, self.clients.len());
        // Timers are dropped lazily, when they fire; with a long --idle-timeout and many short
        // visits the dead ones could pile up, so sweep them once they outnumber the living.
        if self.timers.len() > 2 * self.clients.len() + TIMER_SWEEP_SLACK {
            let clients = &self.clients;
            self.timers.retain(|due| match due {
                Due::Line(key, id) | Due::Idle(key, id) | Due::Linger(key, id) => {
                    clients.get(key).is_some_and(|conn| conn.id == id)
                }
                Due::AcceptRetry => true,
            });
        }
        let name = Rc::clone(&conn.name);
        conn.finish(&mut self.read_buf);
        if self.heard.room.is_some() && self.phase == Phase::Running {
            self.relay(None, room::left(&name, reason));
        }
    }

    /// In relay mode, acts on what was heard: relays text to everyone else, and answers `/nick`,
    /// `/who` and unknown commands. Runs after each read, in the order the lines came.
    fn hear_room(&mut self) {
        let Some(said) = self.heard.room.as_mut().filter(|said| !said.is_empty()) else {
            return;
        };
        let mut said = mem::take(said);
        for (key, id, what) in said.drain(..) {
            let Some(sender) = slot(&mut self.clients, key, id) else {
                continue;
            };
            let name = Rc::clone(&sender.name);
            // A client on its way out may still be heard, but its commands are moot.
            if sender.state != State::Open && !matches!(what, Said::Text(_)) {
                continue;
            }
            match what {
                Said::Text(text) => self.relay(Some(key), room::message(&name, &text)),
                Said::Nick(new) => self.rename(key, &new),
                Said::Who => {
                    let names = self.open_clients().map(|(_, conn)| &*conn.name);
                    let line = room::who(names);
                    self.send(key, line);
                }
                Said::Unknown(line) => {
                    self.send(key, room::unknown_command(&line));
                }
            }
        }
        // Keep the list's memory for the next read.
        if let Some(empty) = self.heard.room.as_mut().filter(|said| said.is_empty()) {
            *empty = said;
        }
    }

    /// Queues `line` for every open client but `except`. A client whose queue overflows is
    /// dropped `slow` (and announced when reaped); nobody else waits for it.
    fn relay(&mut self, except: Option<usize>, line: Rc<[u8]>) {
        let mut failed = Vec::new();
        for (key, conn) in &mut self.clients {
            if Some(key) == except || conn.state != State::Open {
                continue;
            }
            match conn.queue(Rc::clone(&line)) {
                Ok(()) => {}
                Err(QueueError::Overflow) => conn.abort(Reason::Slow),
                Err(QueueError::Failed(error)) => failed.push((key, error)),
            }
            mark_dirty(&mut self.dirty, key, conn);
        }
        for (key, error) in failed {
            self.on_write_error(key, &error);
        }
    }

    /// `/nick NAME` from client `key`: checked, reported, announced, confirmed.
    fn rename(&mut self, key: usize, new: &[u8]) {
        let new = match std::str::from_utf8(new) {
            Ok(new) if room::valid_name(new.as_bytes()) => new,
            _ => {
                self.send(key, room::bad_name());
                return;
            }
        };
        let taken = room::reserved(new)
            || self
                .open_clients()
                .any(|(other, conn)| other != key && conn.name.eq_ignore_ascii_case(new));
        if taken {
            self.send(key, room::name_taken(new));
            return;
        }
        let Some(conn) = self.clients.get_mut(key) else {
            return;
        };
        let old = mem::replace(&mut conn.name, Rc::from(new));
        report::renamed(&conn.label, &old, new);
        self.relay(Some(key), room::renamed(&old, new));
        self.send(key, room::you_are(new));
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

    fn execute(&mut self, command: Command) {
        match command {
            Command::To { id, text } => self.send_text(id, &text, report::console_sent),
            Command::Reply(text) => match self.heard.last_speaker {
                None => report::console_nobody_spoke(),
                Some(id) => self.send_text(id, &text, report::console_replied),
            },
            Command::All(text) => {
                // Encoded once, shared by every queue.
                let line = match self.heard.room {
                    Some(_) => room::from_server(&text),
                    None => queue::line(text.as_bytes()),
                };
                let keys: Vec<usize> = self.open_clients().map(|(key, _)| key).collect();
                let sent = keys
                    .into_iter()
                    .filter(|&key| self.send(key, Rc::clone(&line)).is_some())
                    .count();
                report::console_sent_all(sent);
            }
            Command::List => {
                let now = Instant::now();
                report::console_list_header(self.open_clients().count());
                for (_, conn) in self.open_clients() {
                    let age = now.saturating_duration_since(conn.connected_at);
                    report::console_list_entry(
                        conn.id,
                        conn.peer,
                        age,
                        conn.lines_in,
                        conn.lines_out,
                    );
                }
            }
            Command::Kick(id) => match self.find(id) {
                Some(key) => {
                    // What it sent before the kick is heard, not dropped with the socket.
                    self.on_readable(key);
                    if let Some(conn) = self.clients.get_mut(key) {
                        let _ = conn.queue_line(KICKED);
                        conn.close(Reason::Kicked);
                        mark_dirty(&mut self.dirty, key, conn);
                    }
                }
                None => report::console_no_client(id),
            },
            Command::Quit => self.begin_shutdown("/quit"),
            Command::Help => report::console_help(),
        }
    }

    /// The operator's line for client `id`, confirmed with `confirm`; the operator is told if the
    /// client is not there or could not take it.
    fn send_text(&mut self, id: ConnId, text: &str, confirm: fn(ConnId, Peer)) {
        let Some(key) = self.find(id) else {
            return report::console_no_client(id);
        };
        match self.send(key, queue::line(text.as_bytes())) {
            Some(peer) => confirm(id, peer),
            None => report::console_not_sent(id),
        }
    }

    /// Queues one line (shared, ending in `\n`) for client `key`; a client whose queue overflows is
    /// dropped `slow`. Returns the client's address if the line was queued.
    fn send(&mut self, key: usize, line: Rc<[u8]>) -> Option<Peer> {
        let conn = self.clients.get_mut(key)?;
        let peer = conn.peer;
        match conn.queue(line) {
            Ok(()) => {
                mark_dirty(&mut self.dirty, key, conn);
                Some(peer)
            }
            Err(QueueError::Overflow) => {
                conn.abort(Reason::Slow);
                mark_dirty(&mut self.dirty, key, conn);
                None
            }
            Err(QueueError::Failed(error)) => {
                self.on_write_error(key, &error);
                None
            }
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
        let keys: Vec<usize> = self.clients.iter().map(|(key, _)| key).collect();
        for key in keys {
            // What a client sent before the shutdown is heard, not dropped with the socket.
            self.on_readable(key);
            if let Some(conn) = self.clients.get_mut(key) {
                let _ = conn.queue_line(SHUTTING_DOWN);
                conn.close(Reason::Shutdown);
                mark_dirty(&mut self.dirty, key, conn);
            }
        }
        // Each client that cannot flush at once gets its `Due::Linger` grace in `tend`.
        self.phase = Phase::Draining;
    }

    /// The slot of the open client with this id. A scan, which is fine at typing speed.
    fn find(&self, id: ConnId) -> Option<usize> {
        self.open_clients()
            .find(|(_, conn)| conn.id == id)
            .map(|(key, _)| key)
    }

    fn open_clients(&self) -> impl Iterator<Item = (usize, &Connection)> {
        self.clients
            .iter()
            .filter(|(_, conn)| conn.state == State::Open)
    }
}

/// What hearing a line changes beyond the client that sent it.
struct Heard {
    /// The client whose message was reported last: the target of a bare console line.
    last_speaker: Option<ConnId>,
    /// With `--relay`: what clients said since the room last heard, as (slot, id, what), in order.
    room: Option<Vec<(usize, ConnId, Said)>>,
}

/// The one place that decides what a client's message causes: it is reported, its sender becomes
/// the target of the operator's bare replies, `exit` ends the session, and in relay mode anything
/// else goes to the room. Returns whether it was `exit`.
fn on_line(label: &str, key: usize, id: ConnId, line: Line<'_>, heard: &mut Heard) -> bool {
    report::message(label, line.text, line.dropped);
    heard.last_speaker = Some(id);
    let exit = line.text == b"exit" && line.dropped == 0;
    if let Some(room) = heard.room.as_mut().filter(|_| !exit) {
        let mut said = room::parse(line.text);
        if let (Said::Text(text), 1..) = (&mut said, line.dropped) {
            // The room reads what the operator reads, the cut included.
            text.extend_from_slice(report::cut_marker(line.dropped).as_bytes());
        }
        room.push((key, id, said));
    }
    exit
}

/// Hears the client's unfinished line as a message of its own, if it has one (at EOF, after the
/// line timeout, when it is reaped). Returns whether it was `exit`, which the client has then left
/// by.
fn hear_partial(conn: &mut Connection, key: usize, heard: &mut Heard) -> bool {
    let (label, id) = (Rc::clone(&conn.label), conn.id);
    let mut exit = false;
    conn.take_partial(|line| exit = on_line(&label, key, id, line, heard));
    if exit {
        leave(conn);
    }
    exit
}

/// The client said `exit`: a goodbye line, then the session closes once it is flushed. Whatever it
/// sent after `exit` is not heard.
fn leave(conn: &mut Connection) {
    conn.discard_partial();
    let _ = conn.queue_line(GOODBYE);
    conn.close(Reason::Exit);
}

/// The client in slot `key`, if it is still the one with this `id` (slots are reused, ids never).
fn slot(clients: &mut Slab<Connection>, key: usize, id: ConnId) -> Option<&mut Connection> {
    clients.get_mut(key).filter(|conn| conn.id == id)
}

/// Puts a client on the list `before_sleep` sees to, once.
fn mark_dirty(dirty: &mut Vec<(usize, ConnId)>, key: usize, conn: &mut Connection) {
    if !conn.flags.dirty {
        conn.flags.dirty = true;
        dirty.push((key, conn.id));
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

const SERVER_FULL: &[u8] = b"server full\n";
const GOODBYE: &[u8] = b"goodbye";
const KICKED: &[u8] = b"you were disconnected by the operator";
const SHUTTING_DOWN: &[u8] = b"server shutting down";
const IDLE: &[u8] = b"disconnected: idle for too long";
