//! The harness's clients: senders that push lines as fast as the sockets take them (ingest), a
//! crowd that connects and stays (hold), workers that connect and leave in a loop (churn), and an
//! audience that times the operator's broadcasts (broadcast).
//!
//! Many clients are driven from one thread with non-blocking mio sockets; churn uses plain
//! blocking sockets on a few threads, which is simpler and is what a real client does. Every loop
//! here is bounded by a deadline or a stop flag, and every address is on loopback.
//!
//! Deliberately not here: starting servers, turning counts into figures, or what every socket
//! loop shares (connecting, reading, the deadline and server checks: `net.rs`).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as StdStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender as ChannelSender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chatd::LineDecoder;
use mio::net::TcpStream;
use mio::{Events, Interest, Token};

use crate::net::{
    End, MAX_LINE, Problems, STOP_CHECK, Watch, close_hard, connect, nanos_since, read_available,
    read_client, socket_from, source_for,
};
use crate::targets::Target;

// ---------------------------------------------------------------------------------------------
// Ingest

/// What the ingest clients send: each `lines_per_client` lines of `line_len` bytes (newline
/// included), the last one an END marker that names the client.
#[derive(Debug, Clone, Copy)]
pub struct IngestLoad {
    pub clients: usize,
    pub line_len: usize,
    pub lines_per_client: u64,
}

/// Connects at the pace of a server with a short listen backlog: at most `window` clients
/// connected and not yet accepted at a time, `accepted` saying how many it has accepted so far.
pub struct Pace {
    pub window: usize,
    pub accepted: Box<dyn Fn() -> usize + Send>,
}

/// The sending thread; it keeps its sockets open until `finish`, because a client that closed
/// with its greeting unread would reset the connection and could destroy lines not yet read.
pub struct Senders {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<SendReport>,
}

#[derive(Debug, Default)]
pub struct SendReport {
    pub lines_sent: u64,
    pub problems: Problems,
}

/// Connects every client (all at once, or at `pace`) and starts sending at once, on a thread of
/// its own.
pub fn start_senders(
    addr: SocketAddr,
    load: IngestLoad,
    pace: Option<Pace>,
) -> io::Result<Senders> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = thread::Builder::new().name("senders".into()).spawn({
        let stop = Arc::clone(&stop);
        move || run_senders(addr, load, pace.as_ref(), &stop)
    })?;
    Ok(Senders { stop, thread })
}

impl Senders {
    /// Stops sending, closes every client (with a reset, see `close_hard`) and says what was
    /// sent.
    pub fn finish(self) -> SendReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| {
            let mut report = SendReport::default();
            report.problems.add("sender thread", "panicked");
            report
        })
    }
}

/// The last line of ingest client `client`: filler, then `END` and the client's number, so the
/// log tail can recognise it from the end of a report line alone.
pub fn end_line(client: usize, line_len: usize) -> Vec<u8> {
    let marker = format!("END{client:05}");
    let mut line = b"load ".to_vec();
    line.resize(line_len.saturating_sub(marker.len() + 1), b'y');
    line.extend_from_slice(marker.as_bytes());
    line.push(b'\n');
    line
}

/// The client number if `report_body` (a `message` report) ends with an END marker.
pub fn end_marker(report_body: &[u8]) -> Option<usize> {
    let tail = &report_body[report_body.len().checked_sub(8)?..];
    let digits = tail.strip_prefix(b"END")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One ingest client: how far through its stream of `lines_per_client * line_len` bytes it is.
struct Sender {
    /// `None` once sending failed.
    stream: Option<TcpStream>,
    /// Whether the server may still send something (it has not closed its side).
    reading: bool,
    sent: u64,
    end: Vec<u8>,
}

fn run_senders(
    addr: SocketAddr,
    load: IngestLoad,
    pace: Option<&Pace>,
    stop: &AtomicBool,
) -> SendReport {
    let mut report = SendReport::default();
    let Some(mut poll) = report.problems.new_poll() else {
        return report;
    };
    let line_len = load.line_len as u64;
    let total = load.lines_per_client * line_len;
    let body_len = total.saturating_sub(line_len);
    let body = body_chunk(load.line_len);

    let mut senders = Vec::with_capacity(load.clients);
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 4096];
    let mut next = 0; // The next client to connect.
    while !stop.load(Ordering::Relaxed) {
        // An overflowing listen backlog turns into dropped SYNs, SYN cookies and resets, so a
        // server with a short one (ncat's is 10) gets its clients at the pace it accepts them.
        while next < load.clients && pace.is_none_or(|p| next < (p.accepted)() + p.window) {
            let token = Token(senders.len());
            let interest = Interest::READABLE | Interest::WRITABLE;
            match connect(&poll, token, interest, addr, source_for(next)) {
                Ok(stream) => senders.push(Sender {
                    stream: Some(stream),
                    reading: true,
                    sent: 0,
                    end: end_line(next, load.line_len),
                }),
                Err(e) => report.problems.add("connect", e),
            }
            next += 1;
        }
        let wait = if next < load.clients {
            PACE_CHECK
        } else {
            STOP_CHECK
        };
        if !report.problems.poll(&mut poll, &mut events, Some(wait)) {
            break;
        }
        for event in &events {
            let Some(sender) = senders.get_mut(event.token().0) else {
                continue;
            };
            let Some(stream) = sender.stream.as_mut() else {
                continue;
            };
            // The greeting (and anything else) is read and dropped. A server may close its
            // side and still read ours (ncat does so to its first client at once, its stdin
            // being empty), so the end of what it sends is no reason to stop sending.
            let mut step = Ok(());
            if event.is_readable() && sender.reading {
                match read_available(&mut *stream, &mut scratch, |_| {}) {
                    Ok(reading) => sender.reading = reading,
                    Err(e) => step = Err(e),
                }
            }
            if step.is_ok() && event.is_writable() {
                step = sender.pump(&body, body_len, total);
            }
            if let Err(e) = step {
                report.problems.add("send", e);
                sender.stream = None;
            }
        }
    }
    report.lines_sent = senders.iter().map(|s| s.sent / line_len).sum();
    for stream in senders.iter().filter_map(|s| s.stream.as_ref()) {
        close_hard(stream);
    }
    report
}

impl Sender {
    /// Writes until the socket would block or everything is sent: first the body lines, served
    /// from one repeated chunk, then the END line.
    fn pump(&mut self, body: &[u8], body_len: u64, total: u64) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        while self.sent < total {
            let slice = if self.sent < body_len {
                // The chunk holds whole lines, so any offset into the body maps onto it.
                let at = (self.sent % body.len() as u64) as usize;
                let left = usize::try_from(body_len - self.sent).unwrap_or(usize::MAX);
                &body[at..body.len().min(at + left)]
            } else {
                &self.end[(self.sent - body_len) as usize..]
            };
            match stream.write(slice) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // The handshake is still going: its WRITABLE event comes when it is done.
                Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// About 64 KiB of identical printable lines of `line_len` bytes, so each write hands the kernel
/// a large buffer and chatd has nothing to escape.
fn body_chunk(line_len: usize) -> Vec<u8> {
    let mut line = b"load ".to_vec();
    line.resize(line_len.max(6) - 1, b'x');
    line.push(b'\n');
    line.repeat((64 * 1024 / line.len()).max(1))
}

// ---------------------------------------------------------------------------------------------
// Hold

/// How a hold run went. The clients are handed back open, so the caller can read the server's
/// memory with them all connected and choose when they close.
pub struct HoldReport {
    /// Connections made (the connect call succeeded).
    pub connected: usize,
    /// Clients the server has served: greeted, or (ncat) whose hello line it wrote out.
    pub served: usize,
    /// Clients told `server full` instead of a greeting.
    pub refused: usize,
    pub problems: Problems,
    /// From the first connect until every client was served.
    pub elapsed: Duration,
    /// `Done` once every client that connected was served (or failed for a reason in
    /// `problems`).
    pub end: End,
    pub clients: Vec<TcpStream>,
}

/// The line each hold client sends to a server that greets nobody (ncat), so that the server's
/// output shows it was accepted and read; fixed-length, so bytes out / HELLO_LEN = clients served.
fn hello(i: usize) -> Vec<u8> {
    format!("hello {:06}\n", i % 1_000_000).into_bytes()
}

/// One held client's progress.
struct Held {
    stream: TcpStream,
    /// The greeting so far; `None` once the client is settled (served or failed).
    greeting: Option<LineDecoder>,
}

/// Connects `n` clients to the target, keeping at most `window` waiting to be served at a time,
/// and returns once every one of them is served, or at `deadline`.
pub fn hold(target: &mut Target, n: usize, window: usize, deadline: Instant) -> HoldReport {
    let addr = target.addr();
    let greets = target.greets();
    let start = Instant::now();
    let mut report = HoldReport {
        connected: 0,
        served: 0,
        refused: 0,
        problems: Problems::default(),
        elapsed: Duration::ZERO,
        end: End::Done,
        clients: Vec::new(),
    };
    let Some(mut poll) = report.problems.new_poll() else {
        return report;
    };
    let mut held: Vec<Held> = Vec::with_capacity(n);
    let mut failed = 0;
    let mut connecting = true;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 4096];
    let mut watch = Watch::new(deadline);
    loop {
        if !greets {
            // ncat greets nobody: its output file says how many hellos it has read.
            let written = target.lines_taken(HELLO_LEN) as usize;
            report.served = written.min(held.len());
        }
        let settled = report.served + report.refused + failed;
        // More in flight than the listen backlog holds would drop SYNs, and each dropped SYN
        // waits a whole second for its retransmit: that would time the harness, not the server.
        while connecting && held.len() < n && held.len().saturating_sub(settled) < window {
            let i = held.len();
            let interest = Interest::READABLE | Interest::WRITABLE;
            match connect(&poll, Token(i), interest, addr, source_for(i)) {
                Ok(stream) => held.push(Held {
                    stream,
                    greeting: Some(LineDecoder::new(MAX_LINE)),
                }),
                // Typically EMFILE or EADDRNOTAVAIL: hold what we have and say so.
                Err(e) => {
                    report.problems.add(&format!("connect #{i}"), e);
                    connecting = false;
                }
            }
        }
        if (held.len() == n || !connecting) && settled >= held.len() {
            break;
        }
        let wait = if greets {
            STOP_CHECK
        } else {
            NCAT_OUTPUT_CHECK
        };
        let problems = &mut report.problems;
        if let Err(end) = watch.poll(target, problems, &mut poll, &mut events, wait) {
            report.end = end;
            break;
        }
        for event in &events {
            let i = event.token().0;
            let Some(client) = held.get_mut(i) else {
                continue;
            };
            let Some(greeting) = client.greeting.as_mut() else {
                continue; // Settled already.
            };
            let step = if greets {
                read_greeting(&mut client.stream, greeting, &mut scratch)
            } else if event.is_writable() {
                send_hello(&mut client.stream, &hello(i))
            } else {
                Ok(None)
            };
            match step {
                Ok(None) => continue,
                Ok(Some(First::Welcome)) => report.served += 1,
                Ok(Some(First::ServerFull)) => report.refused += 1,
                // Served once ncat's output shows the line (counted at the top of the loop).
                Ok(Some(First::HelloSent)) => {}
                Err(e) => {
                    report.problems.add(&format!("client #{i}"), e);
                    failed += 1;
                }
            }
            client.greeting = None;
        }
    }
    report.elapsed = start.elapsed();
    report.connected = held.len();
    report.clients = held.into_iter().map(|client| client.stream).collect();
    report
}

/// What a held client's first exchange came to.
enum First {
    Welcome,
    ServerFull,
    HelloSent,
}

/// Reads towards the first line; `Some` once it is complete.
fn read_greeting(
    stream: &mut TcpStream,
    greeting: &mut LineDecoder,
    scratch: &mut [u8],
) -> io::Result<Option<First>> {
    let mut first = None;
    while first.is_none() {
        match stream.read(scratch) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed, no greeting",
                ));
            }
            Ok(n) => greeting.feed(&scratch[..n], |line| {
                first.get_or_insert(if line.text == b"server full" {
                    First::ServerFull
                } else {
                    First::Welcome
                });
            }),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(first)
}

/// Writes the hello line once the connection is up (it fits any empty send buffer).
fn send_hello(stream: &mut TcpStream, line: &[u8]) -> io::Result<Option<First>> {
    match stream.write(line) {
        Ok(n) if n == line.len() => Ok(Some(First::HelloSent)),
        Ok(_) => Err(io::Error::new(ErrorKind::WriteZero, "short hello write")),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::NotConnected) => Ok(None),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Churn

#[derive(Debug, Default)]
pub struct ChurnReport {
    /// Whole cycles: connected, greeting read (if the server greets), closed.
    pub cycles: u64,
    /// Connections made, whole cycles or not: each should be one connect and one disconnect.
    pub connected: u64,
    pub problems: Problems,
    pub elapsed: Duration,
}

/// `workers` threads each connect, read the greeting (if `greets`) and close, in a loop, for
/// `duration`.
pub fn churn(addr: SocketAddr, workers: usize, duration: Duration, greets: bool) -> ChurnReport {
    let start = Instant::now();
    let end = start + duration;
    let mut report = ChurnReport::default();
    let mut threads = Vec::with_capacity(workers);
    for w in 0..workers {
        // Workers spread over a few source addresses: the closing side keeps each port in
        // TIME_WAIT for a minute, and hundreds of thousands of cycles would otherwise run one
        // address out of ephemeral ports. Not 127.0.0.1, where later servers listen: a new
        // listener on a port a TIME_WAIT entry still names would see SYNs land on that entry.
        let source = Ipv4Addr::new(127, 0, 0, 2 + (w % CHURN_SOURCES) as u8);
        let spawned = thread::Builder::new()
            .name(format!("churn-{w}"))
            .spawn(move || churn_worker(addr, source, end, greets));
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => report.problems.add("spawn worker", e),
        }
    }
    for thread in threads {
        match thread.join() {
            Ok(part) => {
                report.cycles += part.cycles;
                report.connected += part.connected;
                report.problems.merge(part.problems);
            }
            Err(_) => report.problems.add("worker", "panicked"),
        }
    }
    report.elapsed = start.elapsed();
    report
}

fn churn_worker(addr: SocketAddr, source: Ipv4Addr, end: Instant, greets: bool) -> ChurnReport {
    let mut report = ChurnReport::default();
    let mut scratch = [0u8; 512];
    while Instant::now() < end {
        let socket = match socket_from(Some(source)) {
            Ok(socket) => socket,
            Err(e) => {
                report.problems.add("socket", e);
                thread::sleep(ERROR_PAUSE);
                continue;
            }
        };
        if let Err(e) = socket.connect_timeout(&addr.into(), IO_WAIT) {
            report.problems.add("connect", e);
            thread::sleep(ERROR_PAUSE);
            continue;
        }
        report.connected += 1;
        let mut stream = StdStream::from(socket);
        let cycle = if greets {
            read_line_blocking(&mut stream, &mut scratch)
        } else {
            Ok(())
        };
        match cycle {
            Ok(()) => report.cycles += 1,
            Err(e) => report.problems.add("greeting", e),
        }
        // Dropping the stream closes it: a FIN, with nothing unread left behind.
    }
    report
}

/// Reads until a newline arrives, within IO_WAIT for each read.
fn read_line_blocking(stream: &mut StdStream, scratch: &mut [u8]) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_WAIT))?;
    loop {
        match stream.read(scratch) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed, no greeting",
                ));
            }
            Ok(n) if scratch[..n].contains(&b'\n') => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Broadcast

/// Clients that wait for the operator's numbered `/all` lines and time when the last of them gets
/// each one.
pub struct Audience {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<BroadcastReport>,
    progress: Receiver<Stage>,
}

/// What the audience thread tells the harness as it goes.
#[derive(Debug)]
enum Stage {
    /// Every client is connected and greeted: the broadcasts can start.
    Ready,
    /// Every line has reached every client.
    Done,
}

#[derive(Debug, Default)]
pub struct BroadcastReport {
    /// Per line that reached every client: nanoseconds from the console write (the time in the
    /// line) to the read of the last client to get it.
    pub latencies_ns: Vec<u64>,
    /// The same to the first client to get it: the server's reaction alone, without the fan-out.
    pub first_latencies_ns: Vec<u64>,
    /// Lines that some client never got.
    pub incomplete: usize,
    pub greeted: usize,
    pub problems: Problems,
}

/// Per broadcast line: how many clients have it, and the latest arrival.
#[derive(Debug, Default, Clone, Copy)]
struct Arrivals {
    clients: usize,
    first_ns: u64,
    last_ns: u64,
}

impl Audience {
    /// Connects `clients` clients on a thread of their own; `lines` numbered lines are expected,
    /// each `<seq> <ns since epoch>`.
    pub fn start(
        addr: SocketAddr,
        clients: usize,
        lines: usize,
        epoch: Instant,
    ) -> io::Result<Audience> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, progress) = mpsc::channel();
        let thread = thread::Builder::new().name("audience".into()).spawn({
            let stop = Arc::clone(&stop);
            move || run_audience(addr, clients, lines, epoch, &stop, &tx)
        })?;
        Ok(Audience {
            stop,
            thread,
            progress,
        })
    }

    /// Waits until every client is greeted; false at the deadline or if the thread gave up.
    pub fn wait_ready(&self, deadline: Instant) -> bool {
        self.wait_for(deadline, |stage| matches!(stage, Stage::Ready))
    }

    /// Waits until every line reached every client; false at the deadline.
    pub fn wait_done(&self, deadline: Instant) -> bool {
        self.wait_for(deadline, |stage| matches!(stage, Stage::Done))
    }

    fn wait_for(&self, deadline: Instant, wanted: impl Fn(&Stage) -> bool) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.progress.recv_timeout(left) {
                Ok(stage) if wanted(&stage) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Stops listening, closes the clients and returns the timings.
    pub fn finish(self) -> BroadcastReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| {
            let mut report = BroadcastReport::default();
            report.problems.add("audience thread", "panicked");
            report
        })
    }
}

/// One listening client: its unfinished line, and whether its greeting is in.
struct Listener {
    stream: TcpStream,
    lines: LineDecoder,
    greeted: bool,
}

fn run_audience(
    addr: SocketAddr,
    n: usize,
    lines: usize,
    epoch: Instant,
    stop: &AtomicBool,
    progress: &ChannelSender<Stage>,
) -> BroadcastReport {
    let mut report = BroadcastReport::default();
    let Some(mut poll) = report.problems.new_poll() else {
        return report;
    };
    let mut arrivals = vec![Arrivals::default(); lines];
    let mut complete = 0;
    let mut listeners: Vec<Listener> = Vec::with_capacity(n);
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut ready_sent = false;
    while !stop.load(Ordering::Relaxed) {
        // Connect in a window, as hold does, so the backlog never overflows.
        while listeners.len() < n && listeners.len() - report.greeted < AUDIENCE_WINDOW {
            let i = listeners.len();
            match connect(&poll, Token(i), Interest::READABLE, addr, source_for(i)) {
                Ok(stream) => listeners.push(Listener {
                    stream,
                    lines: LineDecoder::new(MAX_LINE),
                    greeted: false,
                }),
                Err(e) => {
                    report.problems.add("connect", e);
                    return report;
                }
            }
        }
        if !ready_sent && report.greeted == n {
            ready_sent = true;
            let _ = progress.send(Stage::Ready);
        }
        if !report
            .problems
            .poll(&mut poll, &mut events, Some(STOP_CHECK))
        {
            break;
        }
        for event in &events {
            let Some(listener) = listeners.get_mut(event.token().0) else {
                continue;
            };
            let read = read_client(&listener.stream, &mut buf, |data| {
                // One clock reading per read: every line in it arrived together.
                let now_ns = nanos_since(epoch);
                listener.lines.feed(data, |line| {
                    if !listener.greeted {
                        listener.greeted = true;
                        report.greeted += 1;
                        return;
                    }
                    let Some((seq, sent_ns)) = parse_broadcast(line.text) else {
                        return;
                    };
                    let Some(entry) = arrivals.get_mut(seq) else {
                        return;
                    };
                    entry.clients += 1;
                    let latency = now_ns.saturating_sub(sent_ns);
                    if entry.clients == 1 {
                        entry.first_ns = latency;
                    }
                    entry.last_ns = entry.last_ns.max(latency);
                    if entry.clients == n {
                        complete += 1;
                    }
                });
            });
            if let Err(e) = read {
                report.problems.add("read", e);
                let _ = poll.registry().deregister(&mut listener.stream);
            }
        }
        if ready_sent && complete == lines {
            let _ = progress.send(Stage::Done);
            // Keep reading until told to stop, so no client closes on unread bytes meanwhile.
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(STOP_CHECK);
            }
        }
    }
    for listener in &listeners {
        close_hard(&listener.stream);
    }
    for entry in arrivals {
        if entry.clients == n {
            report.latencies_ns.push(entry.last_ns);
            report.first_latencies_ns.push(entry.first_ns);
        } else {
            report.incomplete += 1;
        }
    }
    report
}

/// `<seq> <ns>` as the clients receive an `/all <seq> <ns>` console line.
fn parse_broadcast(line: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let (seq, ns) = text.split_once(' ')?;
    Some((seq.parse().ok()?, ns.trim_end_matches('\r').parse().ok()?))
}

/// The length of every `hello` line.
const HELLO_LEN: usize = 13;
/// Source addresses churn workers spread over.
const CHURN_SOURCES: usize = 4;
/// Clients the audience has waiting for a greeting at once.
const AUDIENCE_WINDOW: usize = 256;
/// How often paced senders look again at how many clients the server has accepted.
const PACE_CHECK: Duration = Duration::from_millis(1);
/// How often the hold loop looks at ncat's output file while waiting for hellos.
const NCAT_OUTPUT_CHECK: Duration = Duration::from_millis(2);
/// The longest a churn worker waits for a connect or a greeting.
const IO_WAIT: Duration = Duration::from_secs(2);
/// A churn worker's pause after an error, so a failing server is not hammered in a hot loop.
const ERROR_PAUSE: Duration = Duration::from_millis(1);
