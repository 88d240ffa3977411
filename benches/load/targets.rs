//! The servers under load: the real `chatd` binary as a child process, the bare sink (a minimal mio
//! server on a thread of the harness, the ceiling), and `ncat` as a child process. Each is started
//! fresh for one row and stopped when dropped, so no child outlives its row or the harness.
//!
//! Deliberately not here: the clients, or what a scenario counts as done; this file only says how
//! far a server has got (lines taken, clients accepted) and what it cost (CPU, memory).

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chatd::LineDecoder;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use crate::net::{MAX_LINE, read_available};
use crate::report_lines::{self, Report};
use crate::{procfs, sys};

/// Which server a row measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chatd,
    Sink,
    Ncat,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Chatd => "chatd",
            Kind::Sink => "sink",
            Kind::Ncat => "ncat",
        }
    }
}

/// How ncat is run: `-l -k` writes what every client sends to a file (ingest, hold); `--broker`
/// relays between clients (churn); `--chat` is its chat room, the counterpart of chatd `--relay`
/// (relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcatMode {
    Listen,
    Broker,
    Chat,
}

/// One running server.
pub enum Target {
    Chatd(Chatd),
    Sink(Sink),
    Ncat(Ncat),
}

impl Target {
    pub fn kind(&self) -> Kind {
        match self {
            Target::Chatd(_) => Kind::Chatd,
            Target::Sink(_) => Kind::Sink,
            Target::Ncat(_) => Kind::Ncat,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::Chatd(chatd) => chatd.addr,
            Target::Sink(sink) => sink.addr,
            Target::Ncat(ncat) => ncat.addr,
        }
    }

    /// Whether each client gets a line on connect (ncat says nothing).
    pub fn greets(&self) -> bool {
        !matches!(self, Target::Ncat(_))
    }

    /// CPU time the server has used so far: the child process, or the sink's own thread.
    pub fn cpu(&self) -> Option<Duration> {
        match self {
            Target::Chatd(chatd) => procfs::process_cpu(chatd.child.id()),
            Target::Sink(sink) => procfs::thread_cpu(sink.stats.tid.load(Ordering::Relaxed)),
            Target::Ncat(ncat) => procfs::process_cpu(ncat.child.id()),
        }
    }

    /// The server process's CPU time so far, user and system apart; `None` for the sink.
    pub fn cpu_split(&self) -> Option<(Duration, Duration)> {
        match self {
            Target::Chatd(chatd) => procfs::process_cpu_split(chatd.child.id()),
            Target::Sink(_) => None,
            Target::Ncat(ncat) => procfs::process_cpu_split(ncat.child.id()),
        }
    }

    /// Resident memory of the server process; `None` for the sink, which shares the harness's.
    pub fn rss(&self) -> Option<u64> {
        match self {
            Target::Chatd(chatd) => procfs::rss_bytes(chatd.child.id()),
            Target::Sink(_) => None,
            Target::Ncat(ncat) => procfs::rss_bytes(ncat.child.id()),
        }
    }

    /// Lines of `line_len` bytes the server has taken in so far: chatd's `message` reports, the
    /// sink's newline count, or ncat's output file size in lines.
    pub fn lines_taken(&mut self, line_len: usize) -> u64 {
        match self {
            Target::Chatd(chatd) => {
                chatd.log.catch_up();
                chatd.log.counts.messages
            }
            Target::Sink(sink) => sink.stats.lines.load(Ordering::Relaxed),
            Target::Ncat(ncat) => ncat.output_len() / line_len.max(1) as u64,
        }
    }

    /// For a server with a short listen backlog (ncat's is 10), a counter of the clients it has
    /// accepted so far, so clients can be connected at its pace; `None` for the others.
    pub fn accepted_counter(&self) -> Option<Box<dyn Fn() -> usize + Send>> {
        let Target::Ncat(ncat) = self else {
            return None;
        };
        // Each accepted client is one more open descriptor.
        let (pid, idle) = (ncat.child.id(), ncat.idle_fds);
        Some(Box::new(move || {
            procfs::open_fds(pid).map_or(0, |fds| fds.saturating_sub(idle))
        }))
    }

    /// Why the server is no longer running, if it has stopped (ncat aborts past ~1017 clients).
    pub fn exited(&mut self) -> Option<String> {
        let child = match self {
            Target::Chatd(chatd) => &mut chatd.child,
            Target::Sink(_) => return None,
            Target::Ncat(ncat) => &mut ncat.child,
        };
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited ({status})", self.kind().name())),
            Ok(None) => None,
            Err(e) => Some(format!("cannot check the child: {e}")),
        }
    }
}

/// The real `chatd`, its console on a pipe, stdout and `--log-file` in files of its own directory.
pub struct Chatd {
    child: Child,
    console: Option<ChildStdin>,
    pub addr: SocketAddr,
    /// The `--log-file`, read incrementally.
    pub log: LogTail,
    /// With `--bus`: the nats-server and a second chatd on the same port, stopped with this one.
    companions: Vec<Child>,
    /// The row's directory: `stdout.log`, and the second chatd's in `b/`.
    dir: PathBuf,
}

impl Chatd {
    /// Starts the binary on `127.0.0.1:0` with `args` added (e.g. `--relay`) and waits for its
    /// `listening on` line in stdout.log.
    pub fn spawn(dir: &Path, args: &[&str]) -> io::Result<Chatd> {
        let stdout_path = dir.join("stdout.log");
        let log_path = dir.join("chatd.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
        command
            .args(["--listen", "127.0.0.1:0", "--log-file"])
            .arg(&log_path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(dir.join("stderr.log"))?);
        die_with_parent(&mut command);
        let mut child = command.spawn()?;
        let console = child.stdin.take();
        let addr = match wait_for_listening(&mut child, &stdout_path) {
            Ok(addr) => addr,
            Err(e) => {
                stop(&mut child);
                let stderr = fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                return Err(io::Error::new(e.kind(), format!("{e} {}", stderr.trim())));
            }
        };
        // chatd opens its log file before it binds, so the file is there by now.
        let log = match LogTail::open(&log_path) {
            Ok(log) => log,
            Err(e) => {
                stop(&mut child);
                let why = format!("cannot open {}: {e}", log_path.display());
                return Err(io::Error::new(e.kind(), why));
            }
        };
        Ok(Chatd {
            child,
            console,
            addr,
            log,
            companions: Vec::new(),
            dir: dir.to_owned(),
        })
    }

    /// Starts a nats-server on a free port, then chatd with `args` and `--bus` to it; with `pair`,
    /// both with `--reuse-port`, and a second chatd on the first one's port, in the same room
    /// (the kernel spreads the clients between them). Waits until each says `bus connected`.
    pub fn spawn_bus(dir: &Path, args: &[&str], pair: bool) -> io::Result<Chatd> {
        let nats_log = dir.join("nats.log");
        let mut command = Command::new(NATS_SERVER);
        command
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .stdout(Stdio::null())
            .stderr(File::create(&nats_log)?);
        die_with_parent(&mut command);
        let mut nats = command.spawn()?;
        let listening = "Listening for client connections on ";
        let port = match wait_for_text(&mut nats, &nats_log, listening) {
            Ok(line) => line.rsplit(':').next().unwrap_or("").trim().to_owned(),
            Err(e) => {
                stop(&mut nats);
                return Err(e);
            }
        };
        let url = format!("nats://127.0.0.1:{port}");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--bus", &url, "--node", "a"]);
        if pair {
            all.push("--reuse-port");
        }
        let mut chatd = match Chatd::spawn(dir, &all) {
            Ok(chatd) => chatd,
            Err(e) => {
                stop(&mut nats);
                return Err(e);
            }
        };
        chatd.companions.push(nats);
        wait_for_text(&mut chatd.child, &dir.join("stdout.log"), "bus connected")?;
        if pair {
            let second = dir.join("b");
            fs::create_dir_all(&second)?;
            let addr = chatd.addr.to_string();
            let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
            command
                .args(["--listen", &addr, "--log-file"])
                .arg(second.join("chatd.log"))
                .args(args)
                .args(["--reuse-port", "--bus", &url, "--node", "b"])
                .stdin(Stdio::piped())
                .stdout(File::create(second.join("stdout.log"))?)
                .stderr(File::create(second.join("stderr.log"))?);
            die_with_parent(&mut command);
            let mut b = command.spawn()?;
            let up = wait_for_text(&mut b, &second.join("stdout.log"), "bus connected");
            chatd.companions.push(b);
            up?;
        }
        Ok(chatd)
    }

    /// With `--bus`: every `bus ...` warning both instances wrote (lines not shared, gaps, a slow
    /// consumer), so that a row says what the bus lost, and that it was counted.
    pub fn bus_warnings(&self) -> Vec<String> {
        let mut found = Vec::new();
        for path in [
            self.dir.join("stdout.log"),
            self.dir.join("b").join("stdout.log"),
        ] {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let node = if path.parent() == Some(self.dir.as_path()) {
                "a"
            } else {
                "b"
            };
            for line in text.lines() {
                if line.contains("[WARN] bus") {
                    found.push(format!("{node}: {}", report_lines::body(line)));
                }
            }
        }
        found
    }

    /// Types one line at the operator's console.
    pub fn console_line(&mut self, line: &str) -> io::Result<()> {
        let console = self
            .console
            .as_mut()
            .ok_or_else(|| io::Error::new(ErrorKind::BrokenPipe, "console closed"))?;
        // One write per line: the pipe is unbuffered, so the line is chatd's to read at once.
        console.write_all(format!("{line}\n").as_bytes())
    }
}

impl Drop for Chatd {
    fn drop(&mut self) {
        self.console = None;
        stop(&mut self.child);
        for child in self.companions.iter_mut().rev() {
            stop(child);
        }
    }
}

/// Polls `path` (a child's output) until a line holds `needle`, and returns that line.
fn wait_for_text(child: &mut Child, path: &Path, needle: &str) -> io::Result<String> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|line| line.contains(needle)) {
            return Ok(line.to_owned());
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "exited before {needle:?} ({status})"
            )));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!("no {needle:?}"),
            ));
        }
        thread::sleep(POLL_FILE);
    }
}

/// Reads chatd's `listening on 127.0.0.1:PORT` line from its stdout file, polling with a deadline:
/// the file is written once per loop turn, so the line appears within milliseconds of binding.
fn wait_for_listening(child: &mut Child, stdout_path: &Path) -> io::Result<SocketAddr> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        let text = fs::read_to_string(stdout_path).unwrap_or_default();
        let listening = text.lines().find_map(report_lines::listening_addr);
        if let Some(addr) = listening {
            return Ok(addr);
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "chatd exited before listening ({status})"
            )));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "no `listening on` line from chatd",
            ));
        }
        thread::sleep(POLL_FILE);
    }
}

/// chatd's log file, read from where the last read stopped: only new bytes are looked at, so
/// following millions of reports costs one pass over them.
pub struct LogTail {
    file: File,
    buf: Vec<u8>,
    /// An unfinished last line, kept until its newline arrives (a turn's write may end mid-line
    /// when the logger's buffer fills).
    lines: LineDecoder,
    pub counts: LogCounts,
}

/// What the log has reported so far.
#[derive(Debug, Default, Clone)]
pub struct LogCounts {
    pub messages: u64,
    pub connects: u64,
    pub disconnects: u64,
    /// Disconnects for `slow`: a client's queue passed `--max-queue`.
    pub slow: u64,
    pub refused: u64,
    /// Distinct ingest END markers seen (see `clients::end_marker`), by client index.
    pub ends: u64,
    pub end_seen: Vec<bool>,
}

impl LogTail {
    fn open(path: &Path) -> io::Result<LogTail> {
        Ok(LogTail {
            file: File::open(path)?,
            buf: vec![0; READ_CHUNK],
            lines: LineDecoder::new(MAX_LINE),
            counts: LogCounts::default(),
        })
    }

    /// Reads and counts everything appended since the last call.
    pub fn catch_up(&mut self) {
        loop {
            let n = match self.file.read(&mut self.buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // The decoder finds newlines with memchr, many bytes at a time: this thread shares two
            // cores with the server and the senders, and a million-line run is over 100 MB of log.
            let counts = &mut self.counts;
            self.lines
                .feed(&self.buf[..n], |line| counts.count(line.text));
        }
    }
}

impl LogCounts {
    /// Counts one report line, `HH:MM:SS [LEVEL] body`.
    fn count(&mut self, line: &[u8]) {
        if line.first() == Some(&b'{') {
            return self.count_json(line);
        }
        let Some(body) = report_lines::body_bytes(line) else {
            return;
        };
        match report_lines::kind(body) {
            // A line heard: a message, or in the room one of its commands (the bench sends none).
            Some(report_lines::Kind::Message | report_lines::Kind::Command) => {
                self.messages += 1;
                self.end_marker(body);
            }
            Some(report_lines::Kind::Connect) => self.connects += 1,
            Some(report_lines::Kind::Disconnect) => {
                self.disconnects += 1;
                // Read in full only here: disconnects are few, messages are most of the log.
                let report = std::str::from_utf8(body).ok().and_then(report_lines::parse);
                if let Some(Report::Disconnect { reason: "slow", .. }) = report {
                    self.slow += 1;
                }
            }
            Some(report_lines::Kind::Refused) => self.refused += 1,
            Some(report_lines::Kind::Listening) | None => {}
        }
    }
}

impl LogCounts {
    /// Counts a client's END line, once per client, if `text` ends in one.
    fn end_marker(&mut self, text: &[u8]) {
        if let Some(client) = crate::clients::end_marker(text) {
            if self.end_seen.len() <= client {
                self.end_seen.resize(client + 1, false);
            }
            if !std::mem::replace(&mut self.end_seen[client], true) {
                self.ends += 1;
            }
        }
    }

    /// Counts one `--log-format json` report line: its `event` field, and for a message the END
    /// marker at the end of its `text` (the line ends `...END0042"}`).
    fn count_json(&mut self, line: &[u8]) {
        match report_lines::json_kind(line) {
            Some(report_lines::Kind::Message | report_lines::Kind::Command) => {
                self.messages += 1;
                let text_end = line.strip_suffix(b"\"}").unwrap_or(line);
                self.end_marker(text_end);
            }
            Some(report_lines::Kind::Connect) => self.connects += 1,
            Some(report_lines::Kind::Disconnect) => {
                self.disconnects += 1;
                if report_lines::json_str(line, b"reason") == Some(b"slow") {
                    self.slow += 1;
                }
            }
            Some(report_lines::Kind::Refused) => self.refused += 1,
            Some(report_lines::Kind::Listening) | None => {}
        }
    }
}

/// The ceiling: accepts, writes a greeting, counts newlines, closes on EOF. Nothing is parsed,
/// reported or stored, so whatever chatd does beyond this is the price of being a chat server.
pub struct Sink {
    pub addr: SocketAddr,
    pub stats: Arc<SinkStats>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// What the sink has seen, shared with the harness.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub accepted: AtomicU64,
    pub closed: AtomicU64,
    pub lines: AtomicU64,
    /// The sink thread's kernel id, for its CPU time.
    pub tid: AtomicI32,
}

impl Sink {
    pub fn spawn() -> io::Result<Sink> {
        let mut listener = TcpListener::from_std(listen_fresh()?);
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, SINK_LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), SINK_WAKER)?);
        let stats = Arc::new(SinkStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started) = mpsc::channel();
        let thread = thread::Builder::new().name("sink".into()).spawn({
            let (stats, stop) = (Arc::clone(&stats), Arc::clone(&stop));
            move || {
                stats.tid.store(sys::current_tid(), Ordering::Relaxed);
                let _ = started_tx.send(());
                run_sink(poll, listener, &stats, &stop);
            }
        })?;
        // Its CPU time is read by thread id, so wait until the thread has said which it is.
        let _ = started.recv_timeout(START_WAIT);
        Ok(Sink {
            addr,
            stats,
            stop,
            waker,
            thread: Some(thread),
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_sink(mut poll: Poll, listener: TcpListener, stats: &SinkStats, stop: &AtomicBool) {
    let mut events = Events::with_capacity(1024);
    let mut clients = Slab::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, None)
            && e.kind() != ErrorKind::Interrupted
        {
            eprintln!("note: sink poll failed: {e}");
            return;
        }
        for event in &events {
            match event.token() {
                SINK_WAKER => {}
                SINK_LISTENER => accept_all(&poll, &listener, &mut clients, stats),
                Token(t) => {
                    let key = t - SINK_CLIENT_BASE;
                    let Some(stream) = clients.get_mut(key) else {
                        continue;
                    };
                    let read = read_available(stream, &mut buf, |data| {
                        let lines = data.iter().filter(|&&b| b == b'\n').count();
                        stats.lines.fetch_add(lines as u64, Ordering::Relaxed);
                    });
                    if !matches!(read, Ok(true)) {
                        let mut stream = clients.remove(key);
                        let _ = poll.registry().deregister(&mut stream);
                        stats.closed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

fn accept_all(
    poll: &Poll,
    listener: &TcpListener,
    clients: &mut Slab<mio::net::TcpStream>,
    stats: &SinkStats,
) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                // The greeting is a few bytes into an empty send buffer: one write takes it.
                let _ = stream.write(SINK_GREETING);
                let entry = clients.vacant_entry();
                let token = Token(SINK_CLIENT_BASE + entry.key());
                if poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE)
                    .is_ok()
                {
                    entry.insert(stream);
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // WouldBlock ends the drain; EMFILE and the like also end it, and the listener's next
            // edge retries. A sink only has to be a ceiling, not robust.
            Err(_) => return,
        }
    }
}

/// ncat as a child: `-l -k --recv-only` writing everything it receives to a file, `--broker`, or
/// `-l --chat`.
pub struct Ncat {
    child: Child,
    pub addr: SocketAddr,
    output: PathBuf,
    /// Descriptors open before any client came.
    idle_fds: usize,
}

impl Ncat {
    /// Starts `ncat` on a free port of 127.0.0.1 and waits until it listens.
    pub fn spawn(ncat: &Path, mode: NcatMode, dir: &Path) -> io::Result<Ncat> {
        // The port is picked by us and bound by ncat, so another process may take it in between:
        // try again on a fresh port then.
        let mut tries = 0;
        loop {
            tries += 1;
            match Ncat::spawn_on(ncat, mode, dir, free_port()?) {
                Err(e) if tries < NCAT_TRIES => eprintln!("note: {e}; trying another port"),
                spawned => return spawned,
            }
        }
    }

    fn spawn_on(ncat: &Path, mode: NcatMode, dir: &Path, port: u16) -> io::Result<Ncat> {
        let output = dir.join("ncat.out");
        let mut command = Command::new(ncat);
        match mode {
            NcatMode::Listen => command.args(["-l", "-k", "--recv-only"]),
            NcatMode::Broker => command.arg("--broker"),
            NcatMode::Chat => command.args(["-l", "--chat"]),
        };
        // ncat's default limit is 100 simultaneous connections; its real one is select()'s.
        command
            .args(["--max-conns", "100000", "127.0.0.1"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(File::create(&output)?)
            .stderr(File::create(dir.join("ncat.err"))?);
        die_with_parent(&mut command);
        let mut child = command.spawn()?;
        let deadline = Instant::now() + START_WAIT;
        while !procfs::is_listening(port) {
            let exited = child.try_wait()?;
            if exited.is_some() || Instant::now() >= deadline {
                stop(&mut child);
                let stderr = fs::read_to_string(dir.join("ncat.err")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "ncat did not start listening on port {port}: {}",
                    stderr.trim()
                )));
            }
            thread::sleep(POLL_FILE);
        }
        let idle_fds = procfs::open_fds(child.id()).unwrap_or(0);
        Ok(Ncat {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            output,
            idle_fds,
        })
    }

    /// Bytes ncat has written to its output file.
    pub fn output_len(&self) -> u64 {
        fs::metadata(&self.output).map_or(0, |meta| meta.len())
    }
}

impl Drop for Ncat {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A port of 127.0.0.1 that nothing is bound to now, for ncat to listen on.
fn free_port() -> io::Result<u16> {
    let addr = fresh_socket()?.local_addr()?;
    addr.as_socket()
        .map(|addr| addr.port())
        .ok_or_else(|| io::Error::other("bound to a non-IP address"))
}

/// A non-blocking listener for the sink on a fresh port.
fn listen_fresh() -> io::Result<std::net::TcpListener> {
    let socket = fresh_socket()?;
    socket.set_nonblocking(true)?;
    socket.listen(SINK_BACKLOG)?;
    Ok(socket.into())
}

/// A socket bound to a fresh port of 127.0.0.1. Bound without SO_REUSEADDR (which std and mio
/// listeners set), so the kernel picks a port that no TIME_WAIT entry still holds: ncat's own
/// bind would fail on such a port, and a SYN that meets a TIME_WAIT entry waits a second.
fn fresh_socket() -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    Ok(socket)
}

/// Kills and reaps a child; it may have exited already, which is fine.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Asks the kernel to SIGKILL the child if the harness dies first (a panic that aborts, Ctrl-C),
/// so no server is left holding a port and thousands of sockets. The harness spawns every child
/// from its main thread, whose exit is what the kernel watches.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe, as pre_exec requires, and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Debian's nats-server (`.ci/run` installs it).
const NATS_SERVER: &str = "/usr/sbin/nats-server";
/// How long a server may take to start listening.
const START_WAIT: Duration = Duration::from_secs(10);
/// How often a file written by a child is looked at again while waiting on it.
pub const POLL_FILE: Duration = Duration::from_millis(2);
const READ_CHUNK: usize = 1 << 20;
/// Ports tried before giving up on starting ncat.
const NCAT_TRIES: usize = 3;

const SINK_LISTENER: Token = Token(0);
const SINK_WAKER: Token = Token(1);
const SINK_CLIENT_BASE: usize = 2;
const SINK_GREETING: &[u8] = b"welcome to the sink\n";
/// The sink's listen backlog, as mio's own `bind` would set.
const SINK_BACKLOG: i32 = 1024;
