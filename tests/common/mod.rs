//! The test harness: the real `chatd` binary as a child process, and plain TCP clients.
//!
//! `Chatd::spawn` starts the binary on `127.0.0.1:0`, reads the real address from its
//! `listening on` line, and feeds its stdout to a channel from a reader thread, so a test waits for
//! the report it expects with a deadline instead of sleeping. The child is killed on drop.
//!
//! The /proc readers (`procfs`), the reading of report lines (`report_lines`, with
//! `report_body`) and the soak test's generator (`xorshift`) come from `tests/support`, shared
//! with the load bench.
//!
//! Deliberately not here: sleeps used as waits, fixed ports, or `#[test]`s.

#![allow(dead_code)] // Each test binary uses its own part of the harness.

#[path = "../support/procfs.rs"]
mod procfs;
#[path = "../support/report_lines.rs"]
pub mod report_lines;
#[path = "../support/xorshift.rs"]
pub mod xorshift;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // Not every test binary reads report fields.
pub use report_lines::{Report, body as report_body};

/// How long a test waits for anything before it fails: generous, since CI machines are busy.
pub const WAIT: Duration = Duration::from_secs(10);

/// The lines a child's pipe (chatd's or a client's stdout, nats-server's stderr) gives, read by a
/// thread, invalid UTF-8 (telnet's answers, a client's raw bytes) made lossy rather than ending
/// them; the sender is dropped when the pipe closes.
pub fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches('\n')
                .to_owned();
            if tx.send(text).is_err() {
                break;
            }
            line.clear();
        }
    });
    lines
}

/// A running `chatd`.
pub struct Chatd {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line read so far, for failure messages.
    seen: Vec<String>,
    /// The real address of each listener, in `--listen` order.
    pub addrs: Vec<SocketAddr>,
}

impl Chatd {
    /// Starts `chatd` listening on `127.0.0.1:0` with `args` added, its console on a pipe.
    #[track_caller]
    pub fn spawn(args: &[&str]) -> Chatd {
        Chatd::spawn_with(&with_listen(args), Stdio::piped())
    }

    /// Starts `chatd` with exactly `args` and the given stdin, and waits for every listener.
    #[track_caller]
    pub fn spawn_with(args: &[&str], stdin: Stdio) -> Chatd {
        let mut command = Chatd::command(args);
        command.stdin(stdin);
        Chatd::spawn_command(command, args)
    }

    /// The command that runs `chatd` with `args`, for a test that needs to set more on it.
    pub fn command(args: &[&str]) -> Command {
        let mut command = Command::new(chatd_bin());
        command.args(args).stdin(Stdio::piped());
        command
    }

    /// Starts `command` (made by [`Chatd::command`] with `args`) and waits for every listener.
    #[track_caller]
    pub fn spawn_command(mut command: Command, args: &[&str]) -> Chatd {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chatd");
        let lines = lines_of(child.stdout.take().expect("piped stdout"));
        let stdin = child.stdin.take();
        let mut chatd = Chatd {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            addrs: Vec::new(),
        };
        let listeners = args.iter().filter(|a| **a == "--listen").count().max(1);
        for _ in 0..listeners {
            let line = chatd.expect_report("listening on ");
            match report_lines::listening_addr(&line) {
                Some(addr) => chatd.addrs.push(addr),
                None => panic!("no address in {line:?}"),
            }
        }
        chatd
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a stdout line containing `needle` and returns it; lines before it are passed over.
    #[track_caller]
    pub fn expect_report(&mut self, needle: &str) -> String {
        self.expect_report_within(needle, WAIT)
    }

    #[track_caller]
    pub fn expect_report_within(&mut self, needle: &str, wait: Duration) -> String {
        self.expect(|line| line.contains(needle), needle, wait)
    }

    /// Waits for a report line whose body (the text after the logger's `HH:MM:SS [LEVEL] `) is
    /// exactly `body`.
    #[track_caller]
    pub fn expect_body(&mut self, body: &str) -> String {
        self.expect(|line| report_body(line) == body, body, WAIT)
    }

    /// Waits for the first line that satisfies `matches`, and returns it.
    #[track_caller]
    pub fn expect(&mut self, matches: impl Fn(&str) -> bool, what: &str, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no report matching {what:?} within {wait:?}; seen:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "chatd's stdout closed before {what:?}; seen:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// The next stdout line, if one comes within `wait`.
    pub fn next_report(&mut self, wait: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(wait).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Every line from now until (and with) the first one containing `needle`.
    #[track_caller]
    pub fn collect_until(&mut self, needle: &str) -> Vec<String> {
        let start = self.seen.len();
        self.expect_report(needle);
        self.seen[start..].to_vec()
    }

    /// Every stdout line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// How many stdout lines read so far contain `needle`.
    pub fn seen_count(&self, needle: &str) -> usize {
        self.seen
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Connects `n` clients to a fresh server, checking each one's `connect` report; client `i`
    /// has id `#i+1`.
    #[track_caller]
    pub fn connect_clients(&mut self, n: usize) -> Vec<Client> {
        (1..=n)
            .map(|id| {
                let client = Client::connect(self.addr());
                self.expect_body(&format!("connect {} #{id} ({id} online)", client.peer()));
                client
            })
            .collect()
    }

    /// Types one line at the operator's console.
    #[track_caller]
    pub fn send_console(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the console is open");
        writeln!(stdin, "{line}").expect("write to chatd's stdin");
        stdin.flush().expect("flush chatd's stdin");
    }

    /// Closes the console's stdin (end of file).
    pub fn close_console(&mut self) {
        self.stdin = None;
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the child.
    #[track_caller]
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill only sends a signal to our own child, which we have not yet reaped.
        assert_eq!(
            unsafe { libc::kill(self.pid(), signal) },
            0,
            "kill({signal})"
        );
    }

    /// Waits for the child to exit, reading the rest of its stdout.
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        // stdout closes when the process exits; then its status is there to collect.
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "chatd did not exit; seen:\n{}",
                self.seen.join("\n")
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The child's exit status if it has exited (e.g. killed by a signal), without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The child's resident memory now, from /proc.
    #[track_caller]
    pub fn rss_bytes(&self) -> u64 {
        procfs::rss_bytes(self.child.id()).expect("VmRSS in /proc/PID/status")
    }

    /// The most resident memory the child has had, from /proc.
    #[track_caller]
    pub fn peak_rss_bytes(&self) -> u64 {
        procfs::peak_rss_bytes(self.child.id()).expect("VmHWM in /proc/PID/status")
    }

    /// The child's CPU time so far (user + system), from /proc.
    #[track_caller]
    pub fn cpu_time(&self) -> Duration {
        procfs::process_cpu(self.child.id()).expect("CPU times in /proc/PID/stat")
    }
}

impl Drop for Chatd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `chatd` with `args` and stdin at end of file, expecting it to stop at once: its exit code
/// and its stderr.
#[track_caller]
pub fn run_to_failure(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(chatd_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run chatd");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "chatd panicked: {stderr}");
    (output.status.code(), stderr)
}

/// The binary under test: the one cargo built, or `$CHATD_BIN` if set. The override is for checking
/// that a test fails on another build (e.g. `CHATD_BIN=/path/to/old/chatd cargo test --test
/// reentry`); CI never sets it.
pub fn chatd_bin() -> std::ffi::OsString {
    std::env::var_os("CHATD_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_chatd").into())
}

/// `args` with `--listen 127.0.0.1:0` in front, unless they name a listener themselves.
pub fn with_listen<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = Vec::new();
    if !args.contains(&"--listen") {
        all.extend(["--listen", "127.0.0.1:0"]);
    }
    all.extend_from_slice(args);
    all
}

/// A plain TCP client with read timeouts, like a person at netcat.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects and reads the greeting.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        let mut client = Client::connect_quiet(addr);
        let greeting = client.read_line();
        assert!(greeting.contains("welcome"), "greeting was {greeting:?}");
        client
    }

    /// Connects without reading anything.
    #[track_caller]
    pub fn connect_quiet(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect to chatd"))
    }

    /// A client on a stream connected by other means.
    #[track_caller]
    pub fn from_stream(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(WAIT))
            .expect("set read timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// How the server sees this client: `IP:PORT`.
    pub fn peer(&self) -> String {
        self.stream().local_addr().expect("local addr").to_string()
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .expect("send to chatd");
    }

    #[track_caller]
    pub fn send_line(&mut self, text: &str) {
        self.send(format!("{text}\n").as_bytes());
    }

    /// Reads one line (without `\n`), failing the test if none comes in time.
    #[track_caller]
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("connection closed while waiting for a line"),
            Ok(_) => line.trim_end_matches('\n').to_owned(),
            Err(e) => panic!("no line from chatd: {e}"),
        }
    }

    /// Reads until the server closes the connection; returns what came before the close.
    #[track_caller]
    pub fn read_to_end(&mut self) -> String {
        let mut rest = String::new();
        self.reader
            .read_to_string(&mut rest)
            .expect("read until chatd closes");
        rest
    }
}

/// A pseudo-terminal `width` columns wide: its master and slave ends.
#[track_caller]
pub fn pty(width: u16) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 50,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors through the pointers, which point at live locals; the
    // winsize is read through a pointer to a live local; name and termios may be null.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(opened, 0, "openpty");
    // SAFETY: openpty just gave us these descriptors, and nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Makes `command`'s process start with at most `files` open descriptors (RLIMIT_NOFILE).
pub fn limit_open_files(command: &mut Command, files: libc::rlim_t) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires, and the closure touches only
    // its own copy of `files`.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: files,
                rlim_max: files,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
