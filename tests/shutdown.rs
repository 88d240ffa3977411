//! Stopping: `/quit`, SIGTERM and SIGINT shut down gracefully, the listeners close first, a second
//! SIGINT cuts the drain short, and a client that does not read is dropped `slow`.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;

use socket2::{Domain, Protocol, Socket, Type};

use common::{Chatd, Client, WAIT, report_body, with_listen};

/// `/quit` with three clients attached: `shutting down (/quit)`, each client gets `server shutting
/// down` then end of file and is reported `shutdown`, then `stopped` and exit code 0.
#[test]
fn quit_tells_every_client_and_stops() {
    let mut chatd = Chatd::spawn(&[]);
    let clients = chatd.connect_clients(3);
    chatd.send_console("/quit");
    assert_graceful_shutdown(&mut chatd, clients, "/quit");
}

/// SIGTERM with clients attached shuts down as gracefully as `/quit`.
#[test]
fn sigterm_tells_every_client_and_stops() {
    let mut chatd = Chatd::spawn(&[]);
    let clients = chatd.connect_clients(3);
    chatd.signal(libc::SIGTERM);
    assert_graceful_shutdown(&mut chatd, clients, "SIGTERM");
}

/// A single SIGINT shuts down as gracefully as `/quit`, with exit code 0, not 130.
#[test]
fn sigint_tells_every_client_and_stops() {
    let mut chatd = Chatd::spawn(&[]);
    let clients = chatd.connect_clients(2);
    chatd.signal(libc::SIGINT);
    assert_graceful_shutdown(&mut chatd, clients, "SIGINT");
}

/// With the console closed (stdin at end of file), SIGTERM still stops chatd gracefully, as the
/// `console closed` line promises.
#[test]
fn headless_chatd_stops_on_sigterm() {
    let mut chatd = Chatd::spawn_with(&with_listen(&[]), Stdio::null());
    chatd.expect_report("console closed (stdin at end of file)");
    let clients = chatd.connect_clients(1);
    chatd.signal(libc::SIGTERM);
    assert_graceful_shutdown(&mut chatd, clients, "SIGTERM");
}

/// By the time `shutting down` is reported the listeners are closed. While chatd is still
/// draining a client that does not read, a new connect to its address is refused by the kernel
/// (so there is no greeting and nothing to read), and chatd reports no connect for it.
///
/// This holds as long as no other process binds the freed port in the moment between the report
/// and the connect, which tests picking ports with `:0` make vanishingly unlikely.
#[test]
fn stops_accepting_once_shutdown_begins() {
    let mut chatd = Chatd::spawn(&["--max-queue", HUGE_QUEUE]);
    let addr = chatd.addr();
    let (_stuck, _) = connect_stuck(&mut chatd, 1);
    pile_up(&mut chatd, 1, PILE_LINES);
    chatd.signal(libc::SIGTERM);
    chatd.expect_body("shutting down (SIGTERM)");
    match TcpStream::connect(addr) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "connect: {e}"),
        Ok(stream) => panic!(
            "connect from {:?} succeeded after shutting down",
            stream.local_addr()
        ),
    }
    let lines = reports_until(&mut chatd, "stopped");
    assert!(
        !lines.iter().any(|line| line.starts_with("connect ")),
        "a connect after shutting down: {lines:#?}"
    );
    assert_eq!(chatd.wait_exit().code(), Some(0));
}

/// The drain waits for a client that does not read only so long: chatd gives up on it, reports it
/// `shutdown` like the others, and stops with exit code 0. A client that reads is let go at once.
#[test]
fn drain_gives_up_on_a_client_that_never_reads() {
    let mut chatd = Chatd::spawn(&["--max-queue", HUGE_QUEUE]);
    let (_stuck, stuck_peer) = connect_stuck(&mut chatd, 1);
    let mut reader = Client::connect(chatd.addr());
    let reader_peer = reader.peer();
    chatd.expect_body(&format!("connect {reader_peer} #2 (2 online)"));
    pile_up(&mut chatd, 1, PILE_LINES);
    chatd.send_console("/quit");
    chatd.expect_body("shutting down (/quit)");
    assert_eq!(reader.read_line(), SHUTTING_DOWN);
    assert_eq!(reader.read_to_end(), "");
    chatd.expect_body(&format!("disconnect {reader_peer} #2 shutdown (1 online)"));
    chatd.expect_body(&format!("disconnect {stuck_peer} #1 shutdown (0 online)"));
    chatd.expect_body("stopped");
    assert_eq!(chatd.wait_exit().code(), Some(0));
}

/// A second SIGINT while the shutdown is still draining a client that does not read exits with
/// code 130 at once (saying `second interrupt: exiting now` on stderr), from the signal handler:
/// without waiting out the drain, so the stuck client is never reported and `stopped` never comes.
#[test]
fn second_sigint_during_drain_exits_at_once_with_130() {
    let mut chatd = Chatd::spawn(&["--max-queue", HUGE_QUEUE]);
    let (_stuck, _) = connect_stuck(&mut chatd, 1);
    pile_up(&mut chatd, 1, PILE_LINES);
    chatd.signal(libc::SIGINT);
    chatd.expect_body("shutting down (SIGINT)");
    // Only after the first is handled: two signals sent together may arrive as one.
    chatd.signal(libc::SIGINT);
    assert_eq!(chatd.wait_exit().code(), Some(130));
    assert_eq!(
        chatd.seen_count("] disconnect "),
        0,
        "the drain ran before the second interrupt"
    );
    assert_eq!(
        chatd.seen_count("] stopped"),
        0,
        "the drain finished before the second interrupt"
    );
}

/// A client that never reads, whose queued output passes `--max-queue`, is dropped and reported
/// `slow`, while another client goes on being served both ways.
#[test]
fn slow_client_is_dropped_and_others_are_served() {
    let mut chatd = Chatd::spawn(&["--max-queue", "100000"]);
    let (_stuck, stuck_peer) = connect_stuck(&mut chatd, 1);
    let mut other = Client::connect(chatd.addr());
    let other_peer = other.peer();
    chatd.expect_body(&format!("connect {other_peer} #2 (2 online)"));

    // The kernel's socket buffers take some megabytes before chatd's own queue starts to grow, so
    // keep sending until chatd gives up on the client, within a bound.
    let text = "x".repeat(LONG_LINE);
    let mut dropped = None;
    for _ in 0..MAX_SENDS {
        chatd.send_console(&format!("/to 1 {text}"));
        let line = chatd.expect(
            |line| {
                let body = report_body(line);
                body.starts_with("sent to #1 ") || body.starts_with("disconnect ")
            },
            "sent to #1 or a disconnect",
            WAIT,
        );
        if report_body(&line).starts_with("disconnect ") {
            dropped = Some(report_body(&line).to_owned());
            break;
        }
    }
    assert_eq!(
        dropped.as_deref(),
        Some(format!("disconnect {stuck_peer} #1 slow (1 online)").as_str()),
        "after {MAX_SENDS} lines of {LONG_LINE} bytes"
    );

    other.send_line("am I still here?");
    chatd.expect_body(&format!("message {other_peer} #2: am I still here?"));
    chatd.send_console("/to 2 yes");
    chatd.expect_body(&format!("sent to #2 {other_peer}"));
    assert_eq!(other.read_line(), "yes");
}

/// Checks a graceful shutdown already triggered by `cause`: every client reads `server shutting
/// down` then end of file, each is reported `shutdown` once with the count going down to 0, then
/// `stopped`, and chatd exits with code 0.
#[track_caller]
fn assert_graceful_shutdown(chatd: &mut Chatd, clients: Vec<Client>, cause: &str) {
    chatd.expect_body(&format!("shutting down ({cause})"));
    let peers: Vec<String> = clients.iter().map(Client::peer).collect();
    for mut client in clients {
        assert_eq!(client.read_line(), SHUTTING_DOWN);
        assert_eq!(client.read_to_end(), "");
    }
    let lines = reports_until(chatd, "stopped");
    let disconnects: Vec<&String> = lines
        .iter()
        .filter(|line| line.starts_with("disconnect "))
        .collect();
    assert_eq!(disconnects.len(), peers.len(), "{lines:#?}");
    let mut reported = vec![false; peers.len()];
    for (i, line) in disconnects.iter().enumerate() {
        let online = peers.len() - 1 - i;
        let which = peers.iter().enumerate().position(|(k, peer)| {
            **line == format!("disconnect {peer} #{} shutdown ({online} online)", k + 1)
        });
        match which {
            Some(k) if !reported[k] => reported[k] = true,
            _ => panic!("unexpected {line:?} for clients {peers:?}; {lines:#?}"),
        }
    }
    assert_eq!(chatd.wait_exit().code(), Some(0));
}

/// Connects a client that never reads and has a small receive buffer, so what chatd sends it
/// piles up in chatd's queue; checks it is reported as `#id`, the only one online.
#[track_caller]
fn connect_stuck(chatd: &mut Chatd, id: u64) -> (TcpStream, String) {
    let addr: SocketAddr = chatd.addr();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .expect("create a socket");
    socket
        .set_recv_buffer_size(STUCK_RECV_BUFFER)
        .expect("set SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect to chatd");
    let stream: TcpStream = socket.into();
    let peer = stream.local_addr().expect("local addr").to_string();
    chatd.expect_body(&format!("connect {peer} #{id} (1 online)"));
    (stream, peer)
}

/// Has the operator send `lines` long lines to client `id`, waiting for each confirmation, so that
/// several megabytes wait for a client that does not read.
#[track_caller]
fn pile_up(chatd: &mut Chatd, id: u64, lines: usize) {
    let text = "x".repeat(LONG_LINE);
    for _ in 0..lines {
        chatd.send_console(&format!("/to {id} {text}"));
        chatd.expect_report(&format!("sent to #{id} "));
    }
}

/// The bodies of chatd's reports from now until (and with) the one that is exactly `body`.
#[track_caller]
fn reports_until(chatd: &mut Chatd, body: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let line = chatd.expect(|_| true, body, WAIT);
        bodies.push(report_body(&line).to_owned());
        if report_body(&line) == body {
            return bodies;
        }
    }
}

const SHUTTING_DOWN: &str = "server shutting down";
/// A `--max-queue` no test reaches, so a client that does not read is kept, not dropped `slow`.
const HUGE_QUEUE: &str = "100000000";
/// The stuck client's SO_RCVBUF: the kernel takes it as a hint and keeps it small.
const STUCK_RECV_BUFFER: usize = 4096;
/// One operator line: long, but under the console's 64 KiB line limit.
const LONG_LINE: usize = 60_000;
/// Lines piled up for a stuck client: 9 MB, past the most that loopback's socket buffers hold
/// (tcp_wmem's 4 MB maximum and a small receive window), so its queue cannot drain.
const PILE_LINES: usize = 150;
/// How many long lines the slow-client test sends at most before it gives up waiting for `slow`.
const MAX_SENDS: usize = 500;
