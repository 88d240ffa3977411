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
//! The loop's timers are in `server/timing.rs`, and the operator's side (console, signals,
//! shutdown, metrics scrapes) in `server/control.rs`: more `impl Server`, split by concern.
//!
//! Deliberately not here: what a line or a command causes (`chat.rs`), byte parsing
//! (`framing.rs`), report text (`report.rs`), or anything that blocks.

use std::io::{self, IsTerminal};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Token, Waker};

use crate::access::Access;
use crate::chat::{self, Chat};
use crate::clients::{self, CLIENT_BASE, Clients, Marks};
use crate::config::Config;
use crate::connection::ReadStatus;
use crate::console::Console;
use crate::gate::{self, Gate};
use crate::listeners::{BindError, Listeners};
use crate::metrics::Metrics;
use crate::password::PasswordFile;
use crate::report;
use crate::signals::Interrupts;
use crate::systemd::{self, Notifier, Passed};
use crate::timers::{Due, Timers};

mod access;
mod across;
mod admission;
mod control;
mod timing;

use across::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Shutting down: no listeners; clients flush their last line until they are gone or until
    /// their `Due::Linger` grace runs out.
    Draining,
}

pub struct Server {
    poll: Poll,
    /// Listener `i` is registered as `Token(LISTENER_BASE + i)`.
    listeners: Listeners,
    /// Every client; slot `k` is registered as `Token(CLIENT_BASE + k)`.
    clients: Clients,
    /// Clients not yet admitted: TLS handshakes and password prompts (`gate.rs`).
    gate: Gate,
    chat: Chat,
    waker: Arc<Waker>,
    /// What the operator types, from the stdin thread.
    console: Console,
    /// Where the line editor's prompt was last told bare lines go (`None`: not told yet).
    console_aim: Option<Option<chat::Aim>>,
    interrupts: Interrupts,
    timers: Timers,
    /// The one read buffer, shared by all clients.
    read_buf: Box<[u8]>,
    /// What is left of this turn's work (`TURN_BUDGET`): once spent, clients with input wait for
    /// the next turn, so that accepts, the console and timers come round within a bounded time.
    work_left: usize,
    phase: Phase,
    line_timeout: Duration,
    idle_timeout: Option<Duration>,
    keepalive: Option<Duration>,
    /// Whether stdin is a terminal: then SIGHUP means the operator is gone.
    console_is_terminal: bool,
    /// sd_notify: READY, STATUS, STOPPING, WATCHDOG; off when not under systemd.
    notifier: Notifier,
    /// The online count last sent as `STATUS=`, so a status goes out only on a change, at most
    /// once a turn.
    status_sent: Option<usize>,
    /// Half of systemd's `WATCHDOG_USEC`: how often `Due::Watchdog` sends `WATCHDOG=1`.
    watchdog: Option<Duration>,
    /// Who may connect: the rules, the bans, the per-address counts and the connect rate.
    access: Access,
    /// `--metrics`: the HTTP listener and its scrapes.
    metrics: Option<Metrics>,
    /// The loop's own figures for `/stats` and `/metrics` (the clients keep theirs).
    counts: LoopCounts,
    /// `--bus`: the room's link to the other instances.
    bus: Option<Span>,
}

/// What only the loop sees: turns, time busy, refusals. Plain integers, added to once per turn or
/// per refusal.
#[derive(Debug, Default)]
struct LoopCounts {
    turns: u64,
    busy: Duration,
    refused_full: u64,
    refused_error: u64,
    /// Clients that failed the TLS handshake (or sent TLS to a plain port).
    refused_tls: u64,
    /// Clients that failed the password.
    refused_auth: u64,
}

impl Server {
    /// Serves the sockets systemd passed (`passed`, from [`crate::take_passed_listeners`]: its
    /// chat listeners, and its `metrics` socket in place of `--metrics`), binds every `--listen`
    /// address (the default only when neither is given), and sets up the poll, the waker, the
    /// signals and sd_notify. Reports one `listening on` line per listener with its real address.
    pub fn bind(config: &Config, passed: Passed) -> Result<Server, BindError> {
        let Passed {
            chat: inherited,
            metrics: passed_metrics,
        } = passed;
        // The files first: a bad one is one line, before any `listening on`.
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(crate::tls::load(cert, key).map_err(|e| BindError::File(e.to_string()))?)
            }
            _ => None,
        };
        let password = match &config.password_file {
            Some(path) => {
                Some(PasswordFile::load(path).map_err(|e| BindError::File(e.to_string()))?)
            }
            None => None,
        };
        let (notifier, trouble) = Notifier::from_env();
        if let Some(e) = trouble {
            report::notify_failed(&e);
        }
        let poll = Poll::new().map_err(BindError::Setup)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(BindError::Setup)?;
        let interrupts = Interrupts::install(poll.registry(), SIGNALS).map_err(BindError::Setup)?;
        let tokens = LISTENER_BASE..CLIENT_BASE;
        let addrs = config.listen_addrs(inherited.len());
        let registry = poll.registry();
        let tls_addrs = &config.tls_listen;
        let (backlog, reuse_port) = (config.backlog, config.reuse_port);
        let listeners = Listeners::bind(
            inherited, &addrs, tls_addrs, backlog, reuse_port, registry, tokens,
        )?;
        let watchdog = systemd::watchdog_period().filter(|_| notifier.is_on());
        let metrics = match (passed_metrics, config.metrics) {
            (Some(listener), _) => {
                Some(Metrics::adopt(listener, registry).map_err(BindError::Setup)?)
            }
            (None, Some(addr)) => Some(
                Metrics::bind(addr, registry)
                    .map_err(|source| BindError::Listen { addr, source })?,
            ),
            (None, None) => None,
        };
        let limits = config.limits();
        report::max_clients(limits.max_clients);
        let waker = Arc::new(waker);
        let mut chat = Chat::new(config.greeting.as_deref(), config.relay);
        let bus = Span::start(config, &mut chat, &waker).map_err(BindError::Setup)?;
        Ok(Server {
            poll,
            listeners,
            clients: Clients::new(limits),
            gate: Gate::new(
                tls,
                password,
                config.handshake_timeout(),
                config.auth_timeout(),
                config.line_timeout(),
                limits.max_queue,
            ),
            chat,
            waker,
            console: Console::closed(),
            console_aim: None,
            interrupts,
            timers: Timers::default(),
            read_buf: vec![0; READ_BUFFER].into_boxed_slice(),
            work_left: TURN_BUDGET,
            phase: Phase::Running,
            line_timeout: config.line_timeout(),
            idle_timeout: config.idle_timeout(),
            keepalive: config.keepalive(),
            console_is_terminal: io::stdin().is_terminal(),
            watchdog,
            notifier,
            status_sent: None,
            metrics,
            access: config.access(),
            counts: LoopCounts::default(),
            bus,
        })
    }

    /// Serves until a shutdown (`/quit`, SIGINT, SIGTERM, SIGHUP on a terminal) has finished.
    pub fn run(mut self) -> io::Result<()> {
        self.console = Console::start(Arc::clone(&self.waker), self.interrupts.quitting())?;
        report::flush(); // The `listening on` lines, before the first wait.
        self.notify(&format!("READY=1\nSTATUS={}", control::status(0)));
        self.status_sent = Some(0);
        if let Some(period) = self.watchdog {
            self.timers.arm(Instant::now() + period, Due::Watchdog);
        }

        let mut events = Events::with_capacity(EVENTS_PER_TURN);
        loop {
            // The shutdown is complete once every client is told, flushed (or given up on after
            // its grace period) and reported.
            if self.phase == Phase::Draining && self.clients.is_empty() {
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
            let woke = Instant::now();
            // The clients left over from last turn go first, so a busy one cannot starve them.
            self.work_left = TURN_BUDGET;
            self.resume_pending();
            for event in events.iter() {
                self.dispatch(event);
            }
            self.fire_timers();
            self.before_sleep();
            self.counts.turns += 1;
            self.counts.busy += woke.elapsed();
        }
    }

    /// Zero while clients or listeners wait to be read again, else until the next timer (or
    /// forever).
    fn poll_timeout(&self) -> Option<Duration> {
        let bus_waiting = self.bus.as_ref().is_some_and(Span::is_waiting);
        if self.clients.any_pending()
            || self.listeners.any_pending()
            || self.gate.any_pending()
            || bus_waiting
        {
            return Some(Duration::ZERO);
        }
        let next = self.timers.next_deadline()?;
        Some(next.saturating_duration_since(Instant::now()))
    }

    fn dispatch(&mut self, event: &Event) {
        match event.token() {
            WAKER => {
                self.drain_console();
                self.drain_bus();
            }
            SIGNALS => self.drain_signals(),
            token if Metrics::owns(token) => self.scrape_event(token, event),
            token if gate::owns(token) => {
                let key = gate::key_of(token);
                if let Some(serial) = self.gate.serial(key) {
                    self.guest_event(key, serial);
                }
            }
            token => match clients::key_of(token) {
                None => self.accept(token.0 - LISTENER_BASE),
                Some(key) => {
                    // Read first: if the write then fails, what the client sent is already heard.
                    // A client waiting in `pending` is read there, within its budget for the turn.
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    if readable && !self.clients.is_pending(key) {
                        self.hear(key);
                    }
                    if event.is_writable() || event.is_write_closed() {
                        self.clients.flush(key);
                    }
                }
            },
        }
    }

    /// Reads client `key` within its budget, if this turn has work left, and hands every line to
    /// the chat, then lets the chat act on them.
    fn hear(&mut self, key: usize) {
        if self.work_left == 0 {
            if self.clients.get(key).is_some_and(|conn| conn.is_heard()) {
                self.clients.pend_unread(key);
            }
            return;
        }
        self.hear_now(key);
    }

    /// Reads client `key` within its budget (`CLIENT_BUDGET`, counted in work: bytes, and lines
    /// times the members they go to) and hands every line to the chat, then lets the chat act on
    /// them. The one place a client is read; it is never called from a send, so reading one client
    /// never happens inside reading another.
    fn hear_now(&mut self, key: usize) {
        let per_line = self.chat.line_cost(self.clients.len());
        let Some(conn) = self.clients.get_mut(key).filter(|conn| conn.is_heard()) else {
            return; // Sporadic events for a client reaped or done: ignore them.
        };
        let (id, label) = (conn.id(), Rc::clone(conn.label()));
        let chat = &mut self.chat;
        let mut exit = false;
        let mut after_exit = 0;
        let mut budget = CLIENT_BUDGET;
        // The read's message reports are copied into the turn's buffer, held for the read.
        let mut messages = report::messages();
        let status = conn.read(&mut self.read_buf, &mut budget, per_line, |line| {
            // Whatever follows `exit` is not heard, only counted: the client has left.
            if exit {
                after_exit += line.text.len() + line.dropped + 1;
            } else {
                exit = chat.hear(&mut messages, key, id, &label, line);
            }
        });
        drop(messages);
        conn.not_heard(after_exit);
        self.work_left = self.work_left.saturating_sub(CLIENT_BUDGET - budget);
        // Ctrl-C in telnet is leaving, as `exit` is.
        chat.read_ended(key, conn, &status, exit || conn.is_interrupted());
        self.clients.see_to(key);
        match status {
            ReadStatus::BudgetSpent => self.clients.pend(key),
            ReadStatus::Throttled => self.hold_back(key, id),
            _ => {}
        }
        self.arm_line_timer(key, id);
        self.chat.act(&mut self.clients);
    }

    fn resume_pending(&mut self) {
        for index in self.listeners.take_pending() {
            self.accept(index);
        }
        for key in self.clients.take_pending() {
            self.hear(key);
        }
        for (key, serial) in self.gate.take_pending() {
            self.guest_event(key, serial);
        }
        if self.bus.as_ref().is_some_and(Span::is_waiting) {
            self.drain_bus();
        }
    }

    /// The end of a turn: hear out and close the clients whose write failed, write what is queued,
    /// ask for WRITABLE only for what is left, reap the clients that are closing and done, and put
    /// this turn's reports on screen and disk. Reaping a client in the room tells the others, which
    /// queues more output: go round until nothing is left to see to.
    fn before_sleep(&mut self) {
        loop {
            if let Some(key) = self.clients.next_broken() {
                // Its write failed (typically the client is gone): what it sent before is still in
                // the socket and is heard first, so its lines are reported and an EOF can make the
                // reason `closed`; then it is closed (and heard out over later turns if more
                // waits).
                self.hear_now(key);
                self.clients.settle(key);
            } else if let Some(key) = self.clients.next_dirty() {
                self.tend(key);
            } else {
                break;
            }
        }
        self.share_out();
        self.notify_status();
        self.aim_console();
        report::flush();
    }

    /// Flushes one client, reaps it if it is closing and done, and sets its interest.
    fn tend(&mut self, key: usize) {
        let Some(conn) = self.clients.get_mut(key) else {
            return;
        };
        conn.flush();
        let (id, closing) = (conn.id(), !conn.is_open());
        let done = conn.is_flushed() && !conn.is_hearing();
        if conn.is_broken() {
            return self.clients.see_to(key); // Settled first, then seen to again.
        } else if closing && done {
            return self.reap(key);
        }
        if !self.clients.update_interest(key, self.poll.registry()) {
            return self.reap(key);
        }
        if closing && self.clients.marks(key, id).is_some_and(Marks::arm_linger) {
            self.timers
                .arm(Instant::now() + GRACE, Due::Linger(key, id));
        }
    }

    /// Removes a closing client: its unfinished line is heard, then the chat reports it gone.
    fn reap(&mut self, key: usize) {
        if let Some(conn) = self.clients.get_mut(key) {
            self.chat.hear_last(key, conn);
        }
        self.chat.act(&mut self.clients);
        let Some(mut conn) = self.clients.remove(key, self.poll.registry()) else {
            return;
        };
        self.access.left(conn.peer().0.ip());
        let unheard = conn.finish(&mut self.read_buf);
        if unheard > 0 {
            report::unheard(conn.label(), unheard);
        }
        let running = self.phase == Phase::Running;
        self.chat.leave(&mut self.clients, &conn, running);
        // Timers are dropped lazily, when they fire; with a long --idle-timeout and many short
        // visits the dead ones could pile up, so sweep them once they outnumber the living.
        if self.timers.len() > 2 * self.clients.len() + TIMER_SWEEP_SLACK {
            let clients = &self.clients;
            self.timers.sweep(|key, id| clients.holds(key, id));
        }
    }
}

const WAKER: Token = Token(0);
const SIGNALS: Token = Token(1);
/// Listener `i` is `Token(LISTENER_BASE + i)`, below the clients' tokens.
const LISTENER_BASE: usize = 2;

/// The work one client's read may cause in a turn before the others get their go: a byte read
/// costs one, a line one more for each member it goes to (`Chat::line_cost`). Without the room,
/// 128 KiB of input; in a room of 1 000, about 130 lines.
const CLIENT_BUDGET: usize = 128 * 1024;
/// The work a turn does before the clients with input left wait for the next one (they go first
/// then). Bounds how long accepts, the console and timers wait, whatever clients send.
const TURN_BUDGET: usize = 512 * 1024;
const READ_BUFFER: usize = 64 * 1024;
const EVENTS_PER_TURN: usize = 1024;
/// How long a closing client's output may take to drain, at shutdown and otherwise.
const GRACE: Duration = Duration::from_secs(2);
/// Timers beyond twice the clients that are tolerated before dead ones are swept.
const TIMER_SWEEP_SLACK: usize = 1024;
