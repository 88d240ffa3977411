//! Talking: many clients at once, the lab's Python client and the real client programs README.md
//! recommends (`nc -N`, `ncat`, `socat -`, `telnet`), both directions at once, and how `exit` ends
//! a session (bare, before a close, and with lines after it).

#[path = "support/client_commands.rs"]
mod client_commands;
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::Shutdown;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use client_commands::{ClientCommand, NC_N, NCAT, SOCAT, TELNET};
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

/// `nc -N`, as README.md's "Run it" says to type it, works as a client: it shows the greeting and
/// the operator's line, its lines are heard, and `exit` gets `goodbye` and closes the connection.
#[test]
fn netcat_is_a_working_client() {
    chat_through(&NC_N);
}

/// `ncat`, the same session.
#[test]
fn ncat_is_a_working_client() {
    chat_through(&NCAT);
}

/// `socat -`, the same session; it exits by itself once the server has closed.
#[test]
fn socat_is_a_working_client() {
    chat_through(&SOCAT);
}

/// `telnet`, the same session; it exits by itself once the server has closed. (On a terminal, with
/// Ctrl-C and non-ASCII text: tests/telnet.rs.)
#[test]
fn telnet_is_a_working_client() {
    chat_through(&TELNET);
}

/// Ctrl-D (the end of the client's stdin) in `nc -N`, `ncat` and `socat -` closes the connection:
/// the server reports the client gone, `closed`, and the client exits. (Plain `nc` without `-N`
/// would keep the connection open: the reason README.md says `nc -N`.)
#[test]
fn ctrl_d_in_nc_n_ncat_and_socat_is_reported_closed() {
    let mut chatd = Chatd::spawn(&[]);
    for (i, command) in [NC_N, NCAT, SOCAT].iter().enumerate() {
        let id = i + 1;
        let mut client = ClientProcess::spawn(command, chatd.addr().port());
        client.expect_greeting();
        let peer = connected_peer(&mut chatd, id);
        client.write_line("leaving by Ctrl-D");
        chatd.expect_body(&format!("message {peer} #{id}: leaving by Ctrl-D"));
        client.close_stdin();
        chatd.expect_body(&format!("disconnect {peer} #{id} closed (0 online)"));
        client.expect_end();
        client.expect_exit();
    }
}

/// One session through a real client program: greeting, a line each way, then `exit`. A client
/// that does not end by itself when the server closes is then given the end of its stdin, as the
/// person's Ctrl-D.
#[track_caller]
fn chat_through(command: &ClientCommand) {
    let mut chatd = Chatd::spawn(&[]);
    let mut client = ClientProcess::spawn(command, chatd.addr().port());
    client.expect_greeting();
    let peer = connected_peer(&mut chatd, 1);

    let hello = format!("hello from {}", command.name);
    client.write_line(&hello);
    chatd.expect_body(&format!("message {peer} #1: {hello}"));

    chatd.send_console("/to 1 reply");
    chatd.expect_body(&format!("sent to #1 {peer}"));
    assert_eq!(client.read_line(), "reply");

    client.write_line("exit");
    assert_eq!(client.read_line(), "goodbye");
    chatd.expect_body(&format!("disconnect {peer} #1 exit (0 online)"));
    if !command.ends_by_itself {
        // nc and ncat do not notice the server's close while their stdin is open: they exit at
        // the person's next line or Ctrl-D.
        client.close_stdin();
    }
    client.expect_end();
    client.expect_exit();
}

/// Waits for client `#id`'s connect report, `connect 127.0.0.1:PORT #<id> (1 online)`, and returns
/// its address as the server saw it.
#[track_caller]
fn connected_peer(chatd: &mut Chatd, id: usize) -> String {
    let connect = chatd.expect_report("connect 127.0.0.1:");
    let Some(Report::Connect { peer, .. }) = report_lines::parse(report_body(&connect)) else {
        panic!("no address in {connect:?}");
    };
    let peer = peer.to_owned();
    assert_eq!(
        report_body(&connect),
        format!("connect {peer} #{id} (1 online)")
    );
    peer
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

/// A client program as a child, its stdin on a pipe and its stdout read by a thread.
struct ClientProcess {
    name: &'static str,
    banner: &'static [&'static str],
    child: Child,
    stdin: Option<ChildStdin>,
    /// The client's stdout, line by line; the sender is dropped when its stdout closes.
    lines: Receiver<String>,
}

impl ClientProcess {
    #[track_caller]
    fn spawn(command: &ClientCommand, port: u16) -> ClientProcess {
        command.require();
        let ClientCommand {
            name,
            program,
            package,
            ..
        } = *command;
        let mut child = Command::new(program)
            .args((command.args)(port))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // telnet's `Connection closed by foreign host.` goes to stderr: not checked.
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}; install {package}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let lines = common::lines_of(stdout);
        ClientProcess {
            name,
            banner: command.banner,
            child,
            stdin,
            lines,
        }
    }

    /// Reads the client's own banner, if it has one, then the server's greeting.
    #[track_caller]
    fn expect_greeting(&mut self) {
        for &expected in self.banner {
            assert_eq!(self.read_line(), expected, "{}'s banner", self.name);
        }
        let greeting = self.read_line();
        assert!(
            greeting.contains("welcome"),
            "no greeting in {}: {greeting:?}",
            self.name
        );
    }

    #[track_caller]
    fn write_line(&mut self, text: &str) {
        let name = self.name;
        let stdin = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{name}'s stdin is closed"));
        writeln!(stdin, "{text}").unwrap_or_else(|e| panic!("write to {name}'s stdin: {e}"));
        stdin
            .flush()
            .unwrap_or_else(|e| panic!("flush {name}'s stdin: {e}"));
    }

    /// Ends the client's stdin, as Ctrl-D does.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line the client printed, failing the test if none comes in time.
    #[track_caller]
    fn read_line(&mut self) -> String {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(e) => panic!("no line from {} within {WAIT:?}: {e}", self.name),
        }
    }

    /// Waits for the client's stdout to close, with nothing more printed.
    #[track_caller]
    fn expect_end(&mut self) {
        match self.lines.recv_timeout(WAIT) {
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            Ok(line) => panic!("{} printed {line:?} after the server closed", self.name),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "{} still running {WAIT:?} after the server closed",
                    self.name
                )
            }
        }
    }

    /// Waits for the client to exit and checks it succeeded.
    #[track_caller]
    fn expect_exit(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("try_wait {}: {e}", self.name));
            if let Some(status) = status {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit after its stdout closed",
                self.name
            );
            // Polling a child's exit status: there is no report line to wait for here.
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CLIENTS: usize = 50;
const PER_CLIENT: usize = 20;
const DUPLEX_LINES: usize = 500;

/// Lines a client sends after its `exit`, in the same packet, are not heard (it has left) but
/// counted: `dropped <peer> #<id>: <n> bytes not heard`, the line after it and the unfinished one.
#[test]
fn what_follows_exit_is_counted_not_lost() {
    let mut chatd = Chatd::spawn(&[]);
    let mut client = Client::connect(chatd.addr());
    client.send(b"one\nexit\nafter exit\nunfinished");
    let peer = client.peer();
    chatd.expect_body(&format!("message {peer} #1: one"));
    chatd.expect_body(&format!("message {peer} #1: exit"));
    // "after exit\n" and "unfinished": 21 bytes.
    chatd.expect_body(&format!("dropped {peer} #1: 21 bytes not heard"));
    chatd.expect_body(&format!("disconnect {peer} #1 exit (0 online)"));
    assert_eq!(chatd.seen_count("after exit"), 0, "{:?}", chatd.seen());
}
