//! Hostile and broken clients: resets, half-closes, killed processes, slowloris and binary garbage.
//! Each is reported once and correctly, and nobody else notices.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use common::{Chatd, Client, WAIT, report_body};

/// A client that resets (SO_LINGER 0) in the middle of a line: what it sent is reported, the
/// unfinished line as a message of its own, then one `reset` disconnect.
#[test]
fn reset_mid_line_reports_what_arrived_then_reset() {
    // A long line timeout, so the unfinished line can only come out at the disconnect.
    let mut chatd = Chatd::spawn(&["--line-timeout", "60000"]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    client.send(b"whole line\nhalf a li");
    chatd.expect_body(&format!("message {peer} #1: whole line"));
    SockRef::from(client.stream())
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(client);
    let lines = chatd.collect_until(&format!("disconnect {peer} #1 reset (0 online)"));
    let bodies: Vec<&str> = lines.iter().map(|l| report_body(l)).collect();
    assert_eq!(
        bodies,
        [
            format!("message {peer} #1: half a li"),
            format!("disconnect {peer} #1 reset (0 online)")
        ]
    );
}

/// A client that half-closes (shuts down its write side) still receives everything the server had
/// queued for it, including a queue far larger than the socket buffers, before the server closes.
#[test]
fn half_closed_client_receives_everything_queued() {
    let mut chatd = Chatd::spawn(&["--max-queue", "100000000"]);
    // A small receive window, set before the handshake, so the server must queue most of it.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&chatd.addr().into()).expect("connect");
    let mut client = Client::from_stream(socket.into());
    assert!(client.read_line().contains("welcome"));
    let peer = client.peer();
    chatd.expect_report("connect ");
    let line = "q".repeat(60_000);
    for _ in 0..40 {
        chatd.send_console(&format!("/to 1 {line}"));
        chatd.expect_report("sent to #1");
    }
    client.send(b"last words");
    client
        .stream()
        .shutdown(Shutdown::Write)
        .expect("half-close");
    let rest = client.read_to_end();
    assert_eq!(
        rest.len(),
        40 * 60_001,
        "bytes received after the half-close"
    );
    assert!(rest.lines().all(|l| l == line));
    let lines = chatd.collect_until(&format!("disconnect {peer} #1 closed (0 online)"));
    assert!(
        lines
            .iter()
            .any(|l| report_body(l) == format!("message {peer} #1: last words"))
    );
}

/// A client process killed with data in flight is one disconnect, and others keep chatting.
#[test]
fn killed_client_with_data_in_flight() {
    let mut chatd = Chatd::spawn(&[]);
    let mut bystander = Client::connect(chatd.addr());
    chatd.expect_report("#1 (1 online)");
    let mut nc = Command::new("nc")
        .args(["127.0.0.1", &chatd.addr().port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run nc (install netcat-openbsd)");
    let mut stdin = nc.stdin.take().expect("nc stdin");
    let feeder = thread::spawn(move || {
        let chunk = "chatter chatter chatter\n".repeat(1000);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline && stdin.write_all(chunk.as_bytes()).is_ok() {}
    });
    chatd.expect_report("#2: chatter");
    nc.kill().expect("kill nc");
    nc.wait().expect("reap nc");
    let line = chatd.expect_report("disconnect ");
    assert!(
        line.contains(" #2 closed (1 online)") || line.contains(" #2 reset (1 online)"),
        "{line}"
    );
    feeder.join().expect("feeder thread");
    bystander.send_line("still chatting");
    chatd.expect_report("#1: still chatting");
    assert_eq!(chatd.seen_count("disconnect "), 1);
}

/// 1000 slowloris clients trickling a byte every 300 ms: the server stays cheap in CPU and memory,
/// and an ordinary client is served all along.
#[test]
fn slowloris_clients_cost_little_and_others_are_served() {
    let mut chatd = Chatd::spawn(&[]);
    let addr = chatd.addr();
    let mut trickle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    chatd.expect_report("(1000 online)");
    let mut normal = Client::connect(addr);
    chatd.expect_report("(1001 online)");

    let cpu_before = chatd.cpu_time();
    let started = Instant::now();
    for round in 0..10 {
        for stream in &mut trickle {
            stream.write_all(b"s").expect("trickle a byte");
        }
        normal.send_line(&format!("round {round}"));
        chatd.expect_report(&format!("#1001: round {round}"));
        chatd.send_console(&format!("/to 1001 pong {round}"));
        assert_eq!(normal.read_line(), format!("pong {round}"));
        thread::sleep(Duration::from_millis(300)); // The slowloris pace.
    }
    let wall = started.elapsed();
    let cpu = chatd.cpu_time() - cpu_before;
    assert!(cpu < wall / 2, "{cpu:?} CPU in {wall:?} of slowloris");
    let rss = chatd.rss_bytes();
    assert!(rss < 64 << 20, "RSS {rss} bytes with 1001 clients");
    // Drain the slowloris clients' greetings so that closing them is an orderly EOF.
    for stream in &mut trickle {
        let mut greeting = [0u8; 128];
        let _ = stream.read(&mut greeting);
    }
}

/// Binary garbage from many clients at once: every report line is whole, well-formed and free of
/// control characters, whatever the bytes. Half the clients send no 0xFF and are heard to the
/// end; in the other half's garbage, 0xFF starts telnet commands, and `IAC IP` (Ctrl-C) among them
/// makes the client leave, with what it sent after counted as `dropped`.
#[test]
fn binary_garbage_never_breaks_a_report_line() {
    let mut chatd = Chatd::spawn(&["--max-line", "300"]);
    let addr = chatd.addr();
    let senders: Vec<_> = (0..8u64)
        .map(|seed| {
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("connect");
                let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut bytes = vec![0u8; 256 * 1024];
                for byte in &mut bytes {
                    // xorshift64: reproducible garbage, about one newline in 256 bytes.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *byte = (state >> 24) as u8;
                    if seed % 2 == 0 && *byte == 0xff {
                        *byte = 0xfe;
                    }
                }
                stream.write_all(&bytes).expect("send garbage");
                stream
                    .write_all(b"\nend of garbage\n")
                    .expect("send the end");
                stream.shutdown(Shutdown::Write).expect("half-close");
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("sender thread");
    }
    let mut disconnects = 0;
    while disconnects < 8 {
        let line = chatd.expect(|_| true, "a report", WAIT);
        let raw_control = line.chars().any(|c| c.is_control() && c != '\t');
        assert!(!raw_control, "control character in {line:?}");
        let body = report_body(&line);
        let known = [
            "listening on ",
            "accepting at most ",
            "connect ",
            "message ",
            "disconnect ",
            "dropped ",
        ];
        assert!(
            known.iter().any(|k| body.starts_with(k)),
            "unexpected report {line:?}"
        );
        if body.starts_with("disconnect ") {
            disconnects += 1;
        }
    }
    assert!(chatd.seen_count(": end of garbage") >= 4);
}
