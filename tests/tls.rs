//! TLS listeners with real TLS clients (`openssl s_client`, `ncat --ssl`, `socat OPENSSL:`)
//! against a certificate each test makes with `openssl req`; the handshake's deadline; what is
//! refused on each port; and the certificate and key checked at start.

mod common;

#[path = "support/tls_clients.rs"]
mod tls_clients;

use std::io::Write;
use std::net::TcpStream;

use common::{Client, report_body, report_lines, run_to_failure};
use tls_clients::{Certs, Tool, spawn_tls};

/// A plain client and an `openssl s_client` one talk in one `--relay` room: each reads the other's
/// line, and the TLS one is reported `tls`.
#[test]
fn tls_and_plain_clients_chat_in_one_room() {
    let certs = Certs::new("room");
    let (mut chatd, tls) = spawn_tls(&certs, &["--relay"]);
    let mut s_client = Tool::s_client(tls);
    s_client.expect_line("welcome");
    let connect = chatd.expect_report("connect ");
    assert!(
        report_body(&connect).ends_with(" #1 tls (1 online)"),
        "{connect}"
    );

    let mut plain = Client::connect(chatd.addr());
    chatd.expect_body(&format!("connect {} #2 (2 online)", plain.peer()));
    s_client.send_line("hello from tls");
    chatd.expect_report("#1: hello from tls");
    let relayed = read_until(&mut plain, "hello from tls");
    assert!(relayed.starts_with("#1: "), "{relayed}");
    plain.send_line("hello from plain");
    s_client.expect_line("#2: hello from plain");
}

/// `ncat --ssl` (which does not verify) is greeted and heard.
#[test]
fn ncat_ssl_client_is_served() {
    let certs = Certs::new("ncat");
    let (mut chatd, tls) = spawn_tls(&certs, &[]);
    let port = tls.port().to_string();
    let mut ncat = Tool::spawn("ncat", &["--ssl", "127.0.0.1", &port]);
    ncat.expect_line("welcome");
    ncat.send_line("over ncat");
    chatd.expect_report("tls (1 online)");
    chatd.expect_report(": over ncat");
}

/// `socat` verifies the certificate against the test's own (its CA), and is served.
#[test]
fn socat_verifies_the_test_certificate() {
    let certs = Certs::new("socat");
    let (mut chatd, tls) = spawn_tls(&certs, &[]);
    let target = format!("OPENSSL:{tls},cafile={}", certs.cert.display());
    let mut socat = Tool::spawn("socat", &["-", &target]);
    socat.expect_line("welcome");
    socat.send_line("over socat");
    chatd.expect_report(": over socat");
    chatd.send_console("/all hello verified");
    socat.expect_line("hello verified");
}

/// A client that connects to the TLS port and never finishes its handshake (nothing at all, or
/// half a ClientHello) is refused after `--handshake-timeout`, never seated.
#[test]
fn a_stalled_handshake_times_out() {
    let certs = Certs::new("stall");
    let (mut chatd, tls) = spawn_tls(&certs, &["--handshake-timeout", "1"]);
    let silent = TcpStream::connect(tls).expect("connect");
    let mut half = TcpStream::connect(tls).expect("connect");
    // A handshake record header announcing 512 bytes, and only 4 of them.
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .expect("send");
    for client in [&silent, &half] {
        let peer = client.local_addr().expect("addr");
        chatd.expect_body(&format!("refused {peer} (tls: handshake timeout)"));
    }
    assert_eq!(chatd.seen_count("connect "), 0, "{:?}", chatd.seen());
}

/// Plain text and random bytes sent to the TLS port are refused as `tls: not TLS` (or another
/// TLS reason), with no connect and no message; the server goes on serving TLS clients.
#[test]
fn garbage_on_the_tls_port_is_refused() {
    let certs = Certs::new("garbage-tls");
    let (mut chatd, tls) = spawn_tls(&certs, &[]);
    let garbage: [&[u8]; 3] = [
        b"hello, plain text\n",
        &[0xff, 0x00, 0x13, 0x37, 0x0a, 0x16, 0x03],
        &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
    ];
    for bytes in garbage {
        let mut client = TcpStream::connect(tls).expect("connect");
        let peer = client.local_addr().expect("addr");
        client.write_all(bytes).expect("send");
        let line = chatd.expect_report(&format!("refused {peer} (tls: "));
        assert!(!line.contains("timeout"), "{line}");
    }
    let mut s_client = Tool::s_client(tls);
    s_client.expect_line("welcome");
    s_client.send_line("still served");
    chatd.expect_report(": still served");
    assert_eq!(chatd.seen_count("message "), 1, "{:?}", chatd.seen());
    assert_eq!(chatd.seen_count("connect "), 1, "{:?}", chatd.seen());
}

/// A TLS client on the plain port gets a TLS alert and is refused; its ClientHello is never
/// reported as a message, but counted as dropped. Random bytes on the plain port are messages, as ever.
#[test]
fn tls_on_the_plain_port_is_refused() {
    let certs = Certs::new("garbage-plain");
    let (mut chatd, _tls) = spawn_tls(&certs, &[]);
    let plain = chatd.addr();
    let mut s_client = Tool::spawn(
        "openssl",
        &["s_client", "-quiet", "-connect", &plain.to_string()],
    );
    let refused = chatd.expect_report("(tls on the plain port)");
    let peer = report_lines::parse(report_body(&refused));
    assert!(
        matches!(peer, Some(report_lines::Report::Refused { .. })),
        "{refused}"
    );
    // It was seated as a plain client: the hello it sent is counted, not lost without a word.
    chatd.expect_report(" bytes not heard");
    chatd.expect_report(" reset (0 online)");
    s_client.wait_gone();
    assert_eq!(chatd.seen_count("message "), 0, "{:?}", chatd.seen());
}

/// A TLS client refused before its handshake (`--max-per-ip`, `--max-clients`) gets a fatal
/// access_denied alert, which openssl shows, not the plain line a plain client is told: that
/// arrived inside its handshake (openssl: `wrong version number`). Reported as ever.
#[test]
fn a_tls_client_refused_before_its_handshake_gets_an_alert() {
    for (flag, why) in [
        ("--max-per-ip", "per-ip limit"),
        ("--max-clients", "server full"),
    ] {
        let certs = Certs::new("refused-alert");
        let (mut chatd, tls) = spawn_tls(&certs, &[flag, "1"]);
        let mut first = Tool::s_client(tls);
        first.expect_line("welcome");
        let mut second = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &tls.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run openssl s_client");
        let mut stderr = second.stderr.take().expect("piped stderr");
        let (tx, told) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            let _ = tx.send(text);
        });
        chatd.expect_report(&format!("({why})"));
        // Its stdin stays open: s_client ends because the server ended the session.
        let told = told
            .recv_timeout(common::WAIT)
            .expect("s_client ends by itself");
        let _ = second.kill();
        let _ = second.wait();
        assert!(!told.contains("wrong version number"), "{flag}: {told}");
        assert!(told.contains("alert access denied"), "{flag}: {told}");
        assert_eq!(chatd.seen_count("connect "), 1, "{:?}", chatd.seen());
    }
}

/// A missing or unreadable certificate or key, or one that is not PEM, is one line on stderr
/// naming the file, and exit code 1, before anything is served.
#[test]
fn a_bad_certificate_or_key_stops_chatd_at_start() {
    let certs = Certs::new("bad");
    let junk = certs.dir.join("junk.pem");
    std::fs::write(&junk, "not a pem file\n").expect("write junk");
    let missing = certs.dir.join("missing.pem");
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let cases = [
        (missing.to_str().unwrap(), key, "--tls-cert"),
        (cert, missing.to_str().unwrap(), "--tls-key"),
        (junk.to_str().unwrap(), key, "--tls-cert"),
        (cert, junk.to_str().unwrap(), "--tls-key"),
        // A certificate given as the key: no private key in it.
        (cert, cert, "--tls-key"),
    ];
    for (cert, key, flag) in cases {
        let args = [
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ];
        let (code, stderr) = run_to_failure(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with(&format!("chatd: {flag}")), "{stderr}");
    }
}

/// Reads lines until one contains `needle`, and gives it.
#[track_caller]
fn read_until(client: &mut Client, needle: &str) -> String {
    loop {
        let line = client.read_line();
        if line.contains(needle) {
            return line;
        }
    }
}

/// chatd ends a TLS session it closes with close_notify, on `/kick` and at shutdown: Python's
/// `ssl` (which tells a clean close from a bare TCP EOF) reads a clean end after the last line.
#[test]
fn kick_and_shutdown_send_close_notify() {
    let certs = Certs::new("close-notify");
    let (mut chatd, tls) = spawn_tls(&certs, &[]);
    let mut kicked = Tool::spawn("/usr/bin/python3", &["-c", CLOSE_WATCHER, &tls.to_string()]);
    kicked.expect_line("welcome");
    chatd.expect_report("#1 tls (1 online)");
    chatd.send_console("/kick 1");
    kicked.expect_line("you were disconnected by the operator");
    kicked.expect_line("clean end");
    let mut told = Tool::spawn("/usr/bin/python3", &["-c", CLOSE_WATCHER, &tls.to_string()]);
    told.expect_line("welcome");
    chatd.expect_report("#2 tls (1 online)");
    chatd.send_console("/quit");
    told.expect_line("server shutting down");
    told.expect_line("clean end");
}

/// A TLS client in Python that prints each line it receives, then `clean end` after a
/// close_notify or `bare end` after a TCP EOF without one.
const CLOSE_WATCHER: &str = r#"
import socket, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
# OpenSSL 3 takes a bare EOF for a clean end unless told not to.
ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
s = ctx.wrap_socket(socket.create_connection((host, int(port))), suppress_ragged_eofs=False)
buf = b""
try:
    while True:
        data = s.recv(4096)
        if not data:
            end = "clean end"
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            print(line.decode(), flush=True)
except ssl.SSLEOFError:
    end = "bare end"
print(end, flush=True)
"#;

/// After the handshake, bytes that are not a valid TLS record get rustls's alert and the client
/// is `reset`; what it sent properly before is heard.
#[test]
fn a_corrupt_record_after_the_handshake_is_a_reset() {
    let certs = Certs::new("corrupt");
    let (mut chatd, tls) = spawn_tls(&certs, &[]);
    let mut client = Tool::spawn("/usr/bin/python3", &["-c", CORRUPTER, &tls.to_string()]);
    client.expect_line("welcome");
    chatd.expect_report("#1: before the garbage");
    let disconnect = chatd.expect_report("disconnect ");
    assert!(disconnect.ends_with(" #1 reset (0 online)"), "{disconnect}");
    client.wait_gone();
}

/// A TLS client that reads nothing is dropped `slow` once its queue and rustls's send buffer
/// together pass `--max-queue`: rustls holds no more than its share.
#[test]
fn a_tls_client_that_never_reads_is_dropped_slow() {
    let certs = Certs::new("slow");
    let (mut chatd, tls) = spawn_tls(&certs, &["--max-queue", "65536"]);
    let mut client = Tool::spawn("/usr/bin/python3", &["-c", SLEEPER, &tls.to_string()]);
    client.expect_line("connected");
    chatd.expect_report("#1 tls (1 online)");
    // 4 MB: far past the queue, rustls's share and what the sockets hold with a 4 KiB window.
    let line = "x".repeat(1000);
    for _ in 0..4000 {
        chatd.send_console(&format!("/all {line}"));
    }
    chatd.expect_report(" #1 slow (0 online)");
}

/// Clients that close right after their handshake, unread records waiting (the greeting or the
/// session tickets then fail to go out: their kernel answers with a reset): each is `reset`, and the loop goes on serving. It once went round
/// forever within a turn, at full CPU and deaf to everyone and to SIGTERM: the write failure was
/// settled, then rustls's unsent records failed again on the next flush, and so on.
#[test]
fn clients_that_reset_after_the_handshake_do_not_stall_the_loop() {
    let certs = Certs::new("reset-after-handshake");
    let (mut chatd, tls) = spawn_tls(&certs, &[]);
    let mut resetter = Tool::spawn("/usr/bin/python3", &["-c", RESETTER, &tls.to_string()]);
    resetter.expect_line("done");
    // The loop still serves: a plain client is greeted and heard.
    let mut plain = Client::connect(chatd.addr());
    plain.send_line("still served");
    chatd.expect_report("still served");
    // Every one of them was seated and reported gone (`reset` when its kernel answered the
    // greeting with a reset, which most runs see a few times; `closed` when the close won the race).
    let gone = chatd.seen_count(" reset (") + chatd.seen_count(" closed (");
    assert_eq!(gone, 100, "{:?}", chatd.seen());
}

/// 100 TLS clients in turn that finish the handshake and at once close, unread records waiting
/// (the kernel answers what chatd sends next with a reset); prints `stuck at <i>` if one of them gets no answer (the server no longer serves), else `done`.
const RESETTER: &str = r#"
import socket, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for i in range(100):
    raw = socket.create_connection((host, int(port)), timeout=3)
    try:
        s = ctx.wrap_socket(raw)
    except OSError:
        print("stuck at", i, flush=True)
        sys.exit(1)
    s.close()
print("done", flush=True)
"#;

/// A TLS member dropped `flood` has every byte it sent accounted for: what was heard plus what is
/// reported `dropped` is what it wrote (80 KB, all in chatd's socket by then). Counting stopped
/// after four reads once (a TLS read gives at most a record), and the records rustls had begun to
/// read were neither heard nor counted.
#[test]
fn a_tls_flooder_dropped_has_every_byte_counted() {
    let certs = Certs::new("tls-flood");
    let args = [
        "--relay",
        "--max-rate",
        "10",
        "--burst",
        "20",
        "--flood-timeout",
        "2",
    ];
    let (mut chatd, tls) = spawn_tls(&certs, &args);
    let mut flooder = Tool::spawn("/usr/bin/python3", &["-c", TLS_FLOODER, &tls.to_string()]);
    flooder.expect_line("sent 82000");
    let seen = chatd.collect_until(" flood (0 online)");
    let heard: usize = seen
        .iter()
        .map(|line| report_body(line))
        .filter(|body| body.starts_with("message "))
        .filter_map(|body| body.split_once(" #1: "))
        .map(|(_, text)| text.len() + 1)
        .sum();
    let dropped: usize = seen
        .iter()
        .map(|line| report_body(line))
        .find(|body| body.starts_with("dropped "))
        .and_then(|body| body.rsplit(": ").next())
        .and_then(|rest| rest.strip_suffix(" bytes not heard"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `dropped` report in {seen:?}"));
    assert_eq!(heard + dropped, 82_000, "heard {heard} + dropped {dropped}");
}

/// Writes 2 000 lines of 41 bytes (82 000 B) over TLS, says so, then waits to be closed.
const TLS_FLOODER: &str = r#"
import socket, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, int(port))))
data = b"".join(b"flood line %05d padding padding padding\n" % i for i in range(2000))
s.sendall(data)
print("sent", len(data), flush=True)
try:
    while s.recv(4096):
        pass
except OSError:
    pass
"#;

/// A TLS client that says one line, then writes garbage on the raw socket.
const CORRUPTER: &str = r#"
import socket, ssl, sys, time
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, int(port))))
print(s.recv(4096).decode().strip(), flush=True)
s.sendall(b"before the garbage\n")
time.sleep(0.2)
socket.socket.sendall(s, b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
try:
    while s.recv(4096):
        pass
except (ssl.SSLError, OSError):
    pass
"#;

/// A TLS client that finishes its handshake and then never reads.
const SLEEPER: &str = r#"
import socket, ssl, sys, time
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection((host, int(port)))
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s = ctx.wrap_socket(raw)
print("connected", flush=True)
time.sleep(60)
"#;
