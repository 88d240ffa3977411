//! Nothing the server heard is lost: a client the server closes (shutdown, `/kick`, `slow`) is
//! heard out first, everything its socket already holds, up to 4 MiB, over as many turns as that
//! takes; past that, what it sent is counted and reported dropped; and a line it was in the middle
//! of is reported `(cut)`, never as a whole message.
//!
//! A backlog is made for real: the server is stopped (SIGSTOP), the client writes into the
//! kernel's buffers, the closing event is queued (a signal, a console line), and the server is
//! continued (SIGCONT), so the close meets a socket full of complete lines.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;

use common::{Chatd, Client, WAIT, report_body};

/// Lines in a backlog: 1.2 MB, several turns' worth of reading, well below the 4 MiB cap.
const BACKLOG_LINES: usize = 40_000;

/// `c<i> ` and padding: 30 bytes with its newline.
fn numbered(i: usize) -> String {
    format!("c{i:06} {}", "x".repeat(21))
}

/// Writes `bytes` to `stream` while the server is stopped; fails clearly if the kernel will not
/// buffer them (the test needs them all in the socket before the server runs again).
#[track_caller]
fn write_while_stopped(stream: &TcpStream, bytes: Vec<u8>) {
    let mut writer = stream.try_clone().expect("clone the client's socket");
    let (done, wait) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(writer.write_all(&bytes));
    });
    match wait.recv_timeout(WAIT) {
        Ok(result) => result.expect("write the backlog"),
        Err(_) => panic!("the kernel would not buffer the backlog while chatd was stopped"),
    }
}

/// Asserts that `heard` is `sent`, naming the first difference (the lists are long).
#[track_caller]
fn assert_heard(heard: &[String], sent: &[String]) {
    if let Some(at) = (0..heard.len().min(sent.len())).find(|&i| heard[i] != sent[i]) {
        panic!("line {at}: heard {:?}, sent {:?}", heard[at], sent[at]);
    }
    assert_eq!(heard.len(), sent.len(), "lines heard, lines sent");
}

/// Every message report body of client `label` among `lines`, in order.
fn messages_of(lines: &[String], label: &str) -> Vec<String> {
    let prefix = format!("message {label}: ");
    lines
        .iter()
        .filter_map(|line| report_body(line).strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

fn backlog() -> (Vec<String>, Vec<u8>) {
    backlog_of(BACKLOG_LINES)
}

/// `count` numbered lines, and the bytes that send them.
fn backlog_of(count: usize) -> (Vec<String>, Vec<u8>) {
    let lines: Vec<String> = (0..count).map(numbered).collect();
    let mut bytes = Vec::new();
    for line in &lines {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    (lines, bytes)
}

/// SIGTERM meets 40 000 complete lines waiting in a client's socket: every one is reported, in
/// order, then the client is told and leaves `shutdown`.
#[test]
fn shutdown_hears_every_line_already_sent() {
    let mut chatd = Chatd::spawn(&[]);
    let mut client = Client::connect(chatd.addr());
    let label = format!("{} #1", client.peer());
    chatd.expect_report(&format!("connect {label}"));
    let (lines, bytes) = backlog();
    chatd.signal(libc::SIGSTOP);
    write_while_stopped(client.stream(), bytes);
    chatd.signal(libc::SIGTERM);
    chatd.signal(libc::SIGCONT);
    let seen = chatd.collect_until(&format!("disconnect {label} shutdown"));
    assert_heard(&messages_of(&seen, &label), &lines);
    assert!(client.read_to_end().ends_with("server shutting down\n"));
    assert_eq!(chatd.wait_exit().code(), Some(0));
}

/// `/kick` meets a backlog: every line is heard before the client leaves `kicked`, and an
/// unfinished line after them is reported `(cut)`, not as a whole message.
#[test]
fn kick_hears_every_line_already_sent_and_cuts_the_unfinished_one() {
    let mut chatd = Chatd::spawn(&[]);
    let client = Client::connect(chatd.addr());
    let label = format!("{} #1", client.peer());
    chatd.expect_report(&format!("connect {label}"));
    let (lines, mut bytes) = backlog();
    bytes.extend_from_slice(b"half a li");
    chatd.signal(libc::SIGSTOP);
    write_while_stopped(client.stream(), bytes);
    chatd.send_console("/kick 1");
    chatd.signal(libc::SIGCONT);
    let seen = chatd.collect_until(&format!("disconnect {label} kicked"));
    let mut expected = lines;
    expected.push("half a li (cut)".to_owned());
    assert_heard(&messages_of(&seen, &label), &expected);
}

/// A member that never reads is dropped `slow` while lines it sent still wait in its socket:
/// they are heard, every one, before it leaves.
#[test]
fn a_slow_client_is_heard_out_before_it_leaves() {
    // Both clients flood on purpose, to fill the member's socket and queue: --max-rate 0
    // (tests/flood.rs is about flood control).
    let args = ["--relay", "--max-queue", "4096", "--max-rate", "0"];
    let mut chatd = Chatd::spawn(&args);
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    // A small window, set before the handshake, so what the room sends it backs up into the
    // server at once.
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.set_send_buffer_size(8 << 20).expect("SO_SNDBUF");
    socket.connect(&chatd.addr().into()).expect("connect");
    let slow = Client::from_stream(socket.into());
    let label = format!("{} #1", slow.peer());
    chatd.expect_report(&format!("connect {label}"));
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_send_buffer_size(8 << 20).expect("SO_SNDBUF");
    socket.connect(&chatd.addr().into()).expect("connect");
    let talker = Client::from_stream(socket.into());
    chatd.expect_report(&format!("connect {} #2", talker.peer()));
    // 6 MB: more than is read in the turns it takes the room's flood to fill the member's socket.
    let (lines, bytes) = backlog_of(200_000);
    chatd.signal(libc::SIGSTOP);
    write_while_stopped(slow.stream(), bytes);
    // 7 MB for the room: more than the slow member's socket (whose send buffer grows to 4 MB)
    // and `--max-queue` take.
    let flood = format!("{}\n", "t".repeat(99)).repeat(70_000);
    write_while_stopped(talker.stream(), flood.into_bytes());
    chatd.signal(libc::SIGCONT);
    let seen = chatd.collect_until(&format!("disconnect {label} slow"));
    assert_heard(&messages_of(&seen, &label), &lines);
}

/// Hearing out stops at 4 MiB: what the client sent past it is read, counted and reported
/// `dropped`, never relayed or lost silently. Every byte it sent is accounted for: the lines
/// heard, the one cut at the cap, and the bytes reported dropped.
#[test]
fn hearing_out_stops_at_4_mib_and_reports_the_rest_dropped() {
    let mut chatd = Chatd::spawn(&[]);
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_send_buffer_size(8 << 20).expect("SO_SNDBUF");
    socket.connect(&chatd.addr().into()).expect("connect");
    let client = Client::from_stream(socket.into());
    let label = format!("{} #1", client.peer());
    chatd.expect_report(&format!("connect {label}"));
    // 6 MB: past the cap, and within what the kernel buffers with an 8 MB send buffer.
    let line = format!("{}\n", "y".repeat(99));
    let sent = line.repeat(60_000).into_bytes();
    let total = sent.len();
    chatd.signal(libc::SIGSTOP);
    write_while_stopped(client.stream(), sent);
    chatd.send_console("/kick 1");
    chatd.signal(libc::SIGCONT);
    let seen = chatd.collect_until(&format!("disconnect {label} kicked"));
    let heard = messages_of(&seen, &label);
    let whole = heard
        .iter()
        .filter(|text| !text.ends_with(" (cut)"))
        .count();
    let cut: Vec<_> = heard
        .iter()
        .filter(|text| text.ends_with(" (cut)"))
        .collect();
    // Up to 4 MiB heard after the close, besides what was read before it (a turn or two).
    assert!(whole * line.len() <= 5 << 20, "heard {whole} lines");
    assert!(heard[..whole].iter().all(|text| text.len() == 99));
    assert_eq!(cut.len(), 1, "one line cut at the cap: {cut:?}");
    let cut_bytes = cut[0].len() - " (cut)".len();
    let dropped_prefix = format!("dropped {label}: ");
    let dropped: usize = seen
        .iter()
        .find_map(|line| report_body(line).strip_prefix(&dropped_prefix))
        .and_then(|rest| rest.strip_suffix(" bytes not heard"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `dropped` report in {:?}", &seen[seen.len() - 3..]));
    assert_eq!(whole * line.len() + cut_bytes + dropped, total);
}
