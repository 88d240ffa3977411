//! Talking: many clients at once, the lab's Python client and real netcat, both directions at
//! once, and how `exit` ends a session (bare, before a close, and with lines after it).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{Chatd, Client, Report, WAIT, report_body, report_lines};

/// Fifty clients sending at once, each in several writes, are each heard exactly once: every
/// message with the sender's own address and id, in the order it was sent, and not garbled.
#[test]
fn concurrent_clients_are_each_heard_once_in_order() {
    let mut chatd = Chatd::spawn(&[]);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let client = Client::connect(chatd.addr());
        chatd.expect_body(&format!(
            "connect {} #{} ({} online)",
            client.peer(),
            i + 1,
            i + 1
        ));
        clients.push(client);
    }
    // Who each sender is, as the server must show it: client `i` has id `i + 1`.
    let senders: HashMap<(String, u64), usize> = clients
        .iter()
        .enumerate()
        .map(|(i, client)| ((client.peer(), i as u64 + 1), i))
        .collect();

    let start = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                client.stream().set_nodelay(true).expect("set TCP_NODELAY");
                let text: String = (0..PER_CLIENT).map(|j| format!("c{i} m{j}\n")).collect();
                start.wait();
                // Cut the stream at places that are not line ends, so lines straddle writes.
                for chunk in text.as_bytes().chunks(7 + i % 11) {
                    client.send(chunk);
                }
                client
            })
        })
        .collect();

    let deadline = Instant::now() + WAIT;
    let mut next = [0usize; CLIENTS];
    for _ in 0..CLIENTS * PER_CLIENT {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = chatd.expect(
            |line| report_body(line).starts_with("message "),
            "a message",
            left,
        );
        let body = report_body(&line);
        let Some(Report::Message { peer, id, text }) = report_lines::parse(body) else {
            panic!("malformed message report {body:?}");
        };
        let i = *senders
            .get(&(peer.to_owned(), id))
            .unwrap_or_else(|| panic!("message from an unknown sender: {body:?}"));
        assert_eq!(
            text,
            format!("c{i} m{}", next[i]),
            "client {i}'s message {} is wrong or out of order: {body:?}",
            next[i]
        );
        next[i] += 1;
    }
    assert!(next.iter().all(|&n| n == PER_CLIENT), "counts: {next:?}");

    // Nothing more comes: no message is reported twice, late.
    let mut clients: Vec<Client> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    clients[0].send_line("sentinel");
    let peer = clients[0].peer();
    let lines = chatd.collect_until(&format!("message {peer} #1: sentinel"));
    let extra: Vec<&String> = lines
        .iter()
        .filter(|line| report_body(line).starts_with("message "))
        .collect();
    assert_eq!(extra.len(), 1, "messages after all were heard: {extra:#?}");
}

/// The lab's Python client: it reads the greeting, sends `hello` with no newline (heard after the
/// line timeout), gets the operator's bare reply, sends a bare `exit`, reads `goodbye` and the
/// close, and the server reports that it left with `exit`.
#[test]
fn lab_python_client_flow() {
    let mut chatd = Chatd::spawn(&[]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    chatd.expect_body(&format!("connect {peer} #1 (1 online)"));

    client.send(b"hello");
    chatd.expect_body(&format!("message {peer} #1: hello"));

    chatd.send_console("hi there");
    chatd.expect_body(&format!("replied to #1 {peer} (last to speak)"));
    assert_eq!(client.read_line(), "hi there");

    client.send(b"exit");
    assert_eq!(client.read_line(), "goodbye");
    assert_eq!(client.read_to_end(), "");
    chatd.expect_body(&format!("message {peer} #1: exit"));
    chatd.expect_body(&format!("disconnect {peer} #1 exit (0 online)"));
}

/// The real netcat (`nc`, netcat-openbsd) works as a client: it shows the greeting and the
/// operator's line, its lines are heard, and `exit` gets `goodbye` and closes the connection.
#[test]
fn netcat_is_a_working_client() {
    assert!(
        Path::new(NC).exists(),
        "{NC} is missing: install netcat-openbsd (apt-get install netcat-openbsd); CI installs it"
    );
    let mut chatd = Chatd::spawn(&[]);
    let mut nc = Netcat::spawn(&chatd.addr().port().to_string());

    assert!(nc.read_line().contains("welcome"), "no greeting in nc");
    let connect = chatd.expect_report("connect 127.0.0.1:");
    // `connect 127.0.0.1:PORT #1 (1 online)`: nc's own address, as the server saw it.
    let Some(Report::Connect { peer, .. }) = report_lines::parse(report_body(&connect)) else {
        panic!("no address in {connect:?}");
    };
    let peer = peer.to_owned();
    assert_eq!(
        report_body(&connect),
        format!("connect {peer} #1 (1 online)")
    );

    nc.write_line("hello from nc");
    chatd.expect_body(&format!("message {peer} #1: hello from nc"));

    chatd.send_console("/to 1 reply");
    chatd.expect_body(&format!("sent to #1 {peer}"));
    assert_eq!(nc.read_line(), "reply");

    nc.write_line("exit");
    assert_eq!(nc.read_line(), "goodbye");
    chatd.expect_body(&format!("disconnect {peer} #1 exit (0 online)"));
    // netcat-openbsd does not notice the server's close while its stdin is open: it exits at the
    // person's next line or Ctrl-D. Without -N it does not shut its side down at end of stdin
    // either, so it exits now only because the server has closed the connection.
    nc.close_stdin();
    nc.expect_end();
    nc.expect_exit();
}

/// Both directions at once: a client that keeps sending while the operator keeps sending to it
/// gets every operator line, and every one of its lines is heard, with neither side waiting for
/// the other.
#[test]
fn full_duplex_both_directions_arrive() {
    let mut chatd = Chatd::spawn(&[]);
    let client = Client::connect(chatd.addr());
    let peer = client.peer();
    chatd.expect_body(&format!("connect {peer} #1 (1 online)"));

    let mut writer = client.stream().try_clone().expect("clone the socket");
    let sender = thread::spawn(move || {
        for n in 0..DUPLEX_LINES {
            writer
                .write_all(format!("up {n}\n").as_bytes())
                .expect("send to chatd");
        }
    });
    let receiver = thread::spawn(move || {
        let mut client = client;
        (0..DUPLEX_LINES)
            .map(|_| client.read_line())
            .collect::<Vec<_>>()
    });
    for n in 0..DUPLEX_LINES {
        chatd.send_console(&format!("/to 1 down {n}"));
    }

    let deadline = Instant::now() + WAIT;
    for n in 0..DUPLEX_LINES {
        let want = format!("message {peer} #1: up {n}");
        let left = deadline.saturating_duration_since(Instant::now());
        let line = chatd.expect(
            |line| report_body(line).starts_with("message "),
            &want,
            left,
        );
        assert_eq!(report_body(&line), want);
    }
    sender.join().expect("sender thread");
    let received = receiver.join().expect("receiver thread");
    let expected: Vec<String> = (0..DUPLEX_LINES).map(|n| format!("down {n}")).collect();
    assert_eq!(received, expected);
}

/// A bare `exit` followed at once by a half-close is still `exit`: reported as a message, answered
/// with `goodbye`, and the disconnect reason is `exit`, not `closed`.
#[test]
fn bare_exit_then_half_close_is_an_exit() {
    let mut chatd = Chatd::spawn(&["--line-timeout", "60000"]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    client.send(b"exit");
    client
        .stream()
        .shutdown(Shutdown::Write)
        .expect("half-close");
    assert_eq!(client.read_line(), "goodbye");
    assert_eq!(client.read_to_end(), "");
    expect_left_by_exit(&mut chatd, &peer, &["exit"]);
}

/// A bare `exit` followed at once by a full close is still `exit`, though the goodbye cannot be
/// delivered.
#[test]
fn bare_exit_then_close_is_an_exit() {
    let mut chatd = Chatd::spawn(&["--line-timeout", "60000"]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    client.send(b"exit");
    drop(client);
    expect_left_by_exit(&mut chatd, &peer, &["exit"]);
}

/// Lines that follow `exit` in the same write, and an unfinished line after them, are not heard:
/// the client has left.
#[test]
fn lines_after_exit_in_the_same_write_are_not_reported() {
    let mut chatd = Chatd::spawn(&[]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    client.send(b"before\nexit\nafter\nlate");
    assert_eq!(client.read_line(), "goodbye");
    expect_left_by_exit(&mut chatd, &peer, &["before", "exit"]);
}

/// The same when the client closes its side right after: what followed `exit` is still not heard,
/// and the reason stays `exit`.
#[test]
fn lines_after_exit_before_a_half_close_are_not_reported() {
    let mut chatd = Chatd::spawn(&[]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    client.send(b"exit\nafter\nlate");
    client
        .stream()
        .shutdown(Shutdown::Write)
        .expect("half-close");
    assert_eq!(client.read_line(), "goodbye");
    expect_left_by_exit(&mut chatd, &peer, &["exit"]);
}

/// Waits for client #1's disconnect and checks that its messages up to it were exactly `texts`,
/// and that it left by `exit`.
#[track_caller]
fn expect_left_by_exit(chatd: &mut Chatd, peer: &str, texts: &[&str]) {
    let lines = chatd.collect_until(&format!("disconnect {peer} #1"));
    assert_eq!(message_texts(&lines, peer, 1), texts, "reports: {lines:#?}");
    assert_eq!(
        report_body(lines.last().expect("a disconnect line")),
        format!("disconnect {peer} #1 exit (0 online)")
    );
}

/// The texts of `message <peer> #<id>: <text>` reports among `lines`, in order.
fn message_texts(lines: &[String], peer: &str, id: u64) -> Vec<String> {
    let prefix = format!("message {peer} #{id}: ");
    lines
        .iter()
        .filter_map(|line| report_body(line).strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// `nc 127.0.0.1 PORT` as a child, its stdin on a pipe and its stdout read by a thread.
struct Netcat {
    child: Child,
    stdin: Option<ChildStdin>,
    /// nc's stdout, line by line; the sender is dropped when nc's stdout closes.
    lines: Receiver<String>,
}

impl Netcat {
    #[track_caller]
    fn spawn(port: &str) -> Netcat {
        let mut child = Command::new(NC)
            .args(["127.0.0.1", port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {NC}: {e}; install netcat-openbsd"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Netcat {
            child,
            stdin,
            lines,
        }
    }

    #[track_caller]
    fn write_line(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("nc's stdin is open");
        writeln!(stdin, "{text}").expect("write to nc's stdin");
        stdin.flush().expect("flush nc's stdin");
    }

    /// Ends nc's stdin, as Ctrl-D does.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line nc printed, failing the test if none comes in time.
    #[track_caller]
    fn read_line(&mut self) -> String {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(e) => panic!("no line from nc within {WAIT:?}: {e}"),
        }
    }

    /// Waits for nc's stdout to close, with nothing more printed.
    #[track_caller]
    fn expect_end(&mut self) {
        match self.lines.recv_timeout(WAIT) {
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            Ok(line) => panic!("nc printed {line:?} after goodbye"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("nc still running {WAIT:?} after goodbye and the end of its stdin")
            }
        }
    }

    /// Waits for nc to exit and checks it succeeded.
    #[track_caller]
    fn expect_exit(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait nc") {
                assert!(status.success(), "nc exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nc did not exit after its stdout closed"
            );
            // Polling a child's exit status: there is no report line to wait for here.
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Netcat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CLIENTS: usize = 50;
const PER_CLIENT: usize = 20;
const DUPLEX_LINES: usize = 500;
const NC: &str = "/usr/bin/nc";
