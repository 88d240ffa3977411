//! `--password-file`: a client is asked `password:` and seated only once its first line matches;
//! a wrong one, none in time or an overlong one is `refused <peer> (auth)`, never a connect or a
//! message; over plain TCP and over TLS; read again on a headless SIGHUP.

mod common;
#[path = "support/tls_clients.rs"]
mod tls_clients;

use std::path::Path;

use common::{Chatd, Client};
use tls_clients::{Certs, Tool, spawn_tls};

/// The right password (with telnet's CR LF) seats the client: only then its `connect`, its
/// greeting, and the line it sent in the same packet as the password is its first message. The
/// password is never reported.
#[test]
fn the_right_password_seats_the_client() {
    let dir = Dir::new("right");
    let mut chatd = Chatd::spawn(&["--password-file", &dir.password("sekret\n")]);
    let mut client = Client::connect_quiet(chatd.addr());
    assert_eq!(client.read_line(), "password:");
    client.send(b"sekret\r\nfirst words\n");
    assert!(client.read_line().contains("welcome"));
    chatd.expect_body(&format!("connect {} #1 (1 online)", client.peer()));
    chatd.expect_body(&format!("message {} #1: first words", client.peer()));
    assert_eq!(chatd.seen_count("sekret"), 0, "{:?}", chatd.seen());
}

/// A wrong password is told `access denied` and closed, reported `refused <peer> (auth)` only:
/// no id, no connect, no disconnect, and the attempt is never a message.
#[test]
fn a_wrong_password_is_refused_and_never_reported() {
    let dir = Dir::new("wrong");
    let mut chatd = Chatd::spawn(&["--password-file", &dir.password("sekret")]);
    for attempt in ["guess\n", "sekret2\n", "\n", "sekre\n"] {
        let mut client = Client::connect_quiet(chatd.addr());
        assert_eq!(client.read_line(), "password:");
        client.send(attempt.as_bytes());
        assert_eq!(client.read_to_end(), "access denied\n");
        chatd.expect_body(&format!("refused {} (auth)", client.peer()));
    }
    // An overlong line is refused without waiting for its end.
    let mut client = Client::connect_quiet(chatd.addr());
    client.read_line();
    client.send(&[b'x'; 4096]);
    chatd.expect_body(&format!("refused {} (auth)", client.peer()));
    // A client that passes afterwards is #1: the refused ones never had an id.
    let mut client = Client::connect_quiet(chatd.addr());
    client.read_line();
    client.send_line("sekret");
    chatd.expect_body(&format!("connect {} #1 (1 online)", client.peer()));
    for kind in ["message ", "disconnect ", "guess"] {
        assert_eq!(chatd.seen_count(kind), 0, "{:?}", chatd.seen());
    }
}

/// A client that gives no password within `--auth-timeout` is refused `auth` (its half line is
/// not taken after a `--line-timeout` longer than that).
#[test]
fn no_password_in_time_is_refused() {
    let dir = Dir::new("timeout");
    let mut chatd = Chatd::spawn(&[
        "--password-file",
        &dir.password("sekret"),
        "--auth-timeout",
        "1",
        "--line-timeout",
        "60000",
    ]);
    let mut client = Client::connect_quiet(chatd.addr());
    assert_eq!(client.read_line(), "password:");
    client.send(b"sek"); // Half a password, then nothing.
    chatd.expect_body(&format!("refused {} (auth)", client.peer()));
    assert_eq!(client.read_to_end(), "access denied\n");
    assert_eq!(chatd.seen_count("connect "), 0, "{:?}", chatd.seen());
}

/// Over TLS the prompt comes after the handshake: `openssl s_client` with the right password is
/// seated as `tls`; with a wrong one it is refused `auth`.
#[test]
fn the_password_over_tls() {
    let certs = Certs::new("password");
    let dir = Dir::new("tls");
    let (mut chatd, tls) = spawn_tls(&certs, &["--password-file", &dir.password("sekret")]);
    let mut right = Tool::s_client(tls);
    right.expect_line("password:");
    right.send_line("sekret");
    right.expect_line("welcome");
    chatd.expect_report("#1 tls (1 online)");
    right.send_line("secure words");
    chatd.expect_report("#1: secure words");

    let mut wrong = Tool::s_client(tls);
    wrong.expect_line("password:");
    wrong.send_line("nope");
    wrong.expect_line("access denied");
    chatd.expect_report("(auth)");
    assert_eq!(chatd.seen_count("nope"), 0, "{:?}", chatd.seen());
    assert_eq!(chatd.seen_count("connect "), 1, "{:?}", chatd.seen());
}

/// A client waiting at the prompt counts against `--max-clients` (the next one is `server
/// full`) but not as online.
#[test]
fn guests_count_against_max_clients() {
    let dir = Dir::new("full");
    let password = dir.password("sekret");
    let mut chatd = Chatd::spawn(&["--password-file", &password, "--max-clients", "1"]);
    let mut guest = Client::connect_quiet(chatd.addr());
    assert_eq!(guest.read_line(), "password:");
    let mut second = Client::connect_quiet(chatd.addr());
    assert_eq!(second.read_line(), "server full");
    chatd.expect_body(&format!("refused {} (server full)", second.peer()));
    guest.send_line("sekret");
    chatd.expect_body(&format!("connect {} #1 (1 online)", guest.peer()));
}

/// `/ban` refuses the clients of that address still at the gate, at the prompt or in the middle
/// of their handshake, `refused <peer> (banned)`: they are never seated past the ban (they were
/// once: the ban kicked only those already seated, and the prompt's right answer then seated it).
#[test]
fn a_ban_refuses_guests_at_the_gate() {
    let certs = Certs::new("ban-guests");
    let dir = Dir::new("ban");
    let (mut chatd, tls) = spawn_tls(&certs, &["--password-file", &dir.password("sekret")]);
    let mut guest = Client::connect_quiet(chatd.addr());
    assert_eq!(guest.read_line(), "password:");
    let shaking = std::net::TcpStream::connect(tls).expect("connect to the TLS port");
    let shaking_peer = shaking.local_addr().expect("local addr").to_string();
    chatd.send_console("/ban 127.0.0.1");
    chatd.expect_body("banned 127.0.0.1/32 until /unban (kicking 0 clients)");
    chatd.expect_body(&format!("refused {} (banned)", guest.peer()));
    chatd.expect_body(&format!("refused {shaking_peer} (banned)"));
    assert_eq!(
        guest.read_to_end(),
        "",
        "closed at the ban, told nothing more"
    );
    assert_eq!(chatd.seen_count("connect "), 0, "{:?}", chatd.seen());
}

/// A headless SIGHUP reads the password file again: the new password works and the old one
/// no longer does; a file that cannot be read then keeps the password in force.
#[test]
fn sighup_rereads_the_password_file() {
    let dir = Dir::new("sighup");
    let path = dir.password("old");
    let mut chatd = Chatd::spawn(&["--password-file", &path]);
    std::fs::write(&path, "new\n").expect("write");
    chatd.signal(libc::SIGHUP);
    chatd.expect_report("password file");
    let try_password = |chatd: &mut Chatd, password: &str| {
        let mut client = Client::connect_quiet(chatd.addr());
        assert_eq!(client.read_line(), "password:");
        client.send_line(password);
        let answer = client.read_line();
        if answer.contains("welcome") {
            chatd.expect_report(&format!("connect {} ", client.peer()));
        } else {
            chatd.expect_body(&format!("refused {} (auth)", client.peer()));
        }
        answer.contains("welcome")
    };
    assert!(!try_password(&mut chatd, "old"));
    assert!(try_password(&mut chatd, "new"));
    std::fs::remove_file(&path).expect("remove");
    chatd.signal(libc::SIGHUP);
    chatd.expect_report("the old password stays");
    assert!(try_password(&mut chatd, "new"));
}

/// A telnet client's password line is heard as its lines are once seated: its commands taken out
/// and answered before the greeting (`DO BINARY` at its first command, `WILL TIMING-MARK`, an
/// option refused), `CR LF`, `CR NUL` and a bare `CR` each end it, and the telnet state carries
/// on: the `NUL` or `LF` after its `CR` is not part of the first message. (They were refused, or
/// waited for a `LF` until `--auth-timeout`.)
#[test]
fn a_telnet_password_line_is_heard_as_lines_are() {
    let dir = Dir::new("telnet");
    let password = dir.password("sekrit\n");
    let mut chatd = Chatd::spawn(&["--password-file", &password, "--line-timeout", "60000"]);
    let cases: [(&[u8], &[u8], &[u8]); 4] = [
        // IAC BRK + DO TIMING-MARK (telnet's Ctrl-\), then CR LF.
        (
            b"\xff\xf3\xff\xfd\x06sekrit\r\n",
            b"\xff\xfd\x00\xff\xfb\x06",
            b"",
        ),
        // DO TTYPE, refused.
        (b"\xff\xfd\x18sekrit\r\n", b"\xff\xfd\x00\xff\xfc\x18", b""),
        // WILL BINARY (asked for at once: no answer of its own), then CR NUL.
        (b"\xff\xfb\x00sekrit\r\0", b"\xff\xfd\x00", b""),
        // A bare CR, its LF in the client's next packet.
        (b"\xff\xfb\x00sekrit\r", b"\xff\xfd\x00", b"\n"),
    ];
    for (id, (sent, answers, after)) in cases.into_iter().enumerate() {
        let mut client = Client::connect_quiet(chatd.addr());
        assert_eq!(client.read_line(), "password:");
        client.send(sent);
        let received = read_raw_until(&client, b"\n");
        assert!(
            received.starts_with(answers) && received.ends_with(b"\n"),
            "{sent:x?}: {received:x?}"
        );
        let greeting = String::from_utf8_lossy(&received[answers.len()..]).into_owned();
        assert!(greeting.contains("welcome"), "{sent:x?}: {greeting:?}");
        client.send(after);
        client.send(b"first words\r\n");
        let peer = client.peer();
        chatd.expect_body(&format!("message {peer} #{}: first words", id + 1));
        assert_eq!(
            chatd.seen_count(&format!("{peer} #")),
            2,
            "{:#?}",
            chatd.seen()
        );
    }
    assert_eq!(chatd.seen_count("sekrit"), 0, "{:?}", chatd.seen());
}

/// Over TLS too: `openssl s_client` sending telnet's Ctrl-\ (`IAC BRK IAC DO TIMING-MARK`) before
/// the password is seated, its commands answered inside the session.
#[test]
fn a_telnet_password_line_over_tls() {
    let certs = Certs::new("telnet-password");
    let dir = Dir::new("telnet-tls");
    let (mut chatd, tls) = spawn_tls(&certs, &["--password-file", &dir.password("sekrit")]);
    let mut client = Tool::s_client(tls);
    client.expect_line("password:");
    client.send_bytes(b"\xff\xf3\xff\xfd\x06sekrit\r\0");
    client.expect_line("welcome");
    chatd.expect_report("#1 tls (1 online)");
    client.send_bytes(b"over tls\r\0");
    chatd.expect_report("#1: over tls");
    assert_eq!(chatd.seen_count("message "), 1, "{:#?}", chatd.seen());
}

/// A client whose password line ended with a newline has sent a newline: from the start, its
/// unfinished line waits for the newline however slowly it is typed (`hello` a letter at a
/// time was 6 messages through `--line-timeout`).
#[test]
fn a_password_line_makes_a_client_that_ends_lines() {
    let dir = Dir::new("ends-lines");
    let password = dir.password("sekrit");
    let mut chatd = Chatd::spawn(&["--password-file", &password, "--line-timeout", "30"]);
    // The clock: a chatd of its own, with the same line timeout, hears bytes without a newline
    // after it.
    let mut clock_chatd = Chatd::spawn(&["--line-timeout", "30"]);
    let mut clock = Client::connect(clock_chatd.addr());
    let mut slow = Client::connect_quiet(chatd.addr());
    assert_eq!(slow.read_line(), "password:");
    slow.send(b"sekrit\n");
    assert!(slow.read_line().contains("welcome"));
    let (peer, clock_peer) = (slow.peer(), clock.peer());
    for (n, part) in ["h", "e", "l", "l", "o"].iter().enumerate() {
        slow.send(part.as_bytes());
        clock.send(format!("tick {n}").as_bytes());
        clock_chatd.expect_body(&format!("message {clock_peer} #1: tick {n}"));
        // A loop turn of the slow client's chatd after that: its line timer, if armed, has
        // fired by then.
        chatd.send_console("/list");
        chatd.expect_body("1 online");
    }
    slow.send(b"\n");
    chatd.expect_body(&format!("message {peer} #1: hello"));
    let count = chatd.seen_count(&format!("message {peer} #1:"));
    assert_eq!(count, 1, "{:#?}", chatd.seen());
}

/// The lab's client, which sends `sekrit` without a newline, is seated once `--line-timeout`
/// passes with nothing more, as its lines are heard once seated; a wrong one is refused then.
#[test]
fn a_password_without_a_newline_is_taken_after_the_line_timeout() {
    let dir = Dir::new("no-newline");
    let password = dir.password("sekrit");
    let mut chatd = Chatd::spawn(&["--password-file", &password, "--line-timeout", "50"]);
    let mut client = Client::connect_quiet(chatd.addr());
    assert_eq!(client.read_line(), "password:");
    client.send(b"sekrit");
    assert!(client.read_line().contains("welcome"));
    chatd.expect_body(&format!("connect {} #1 (1 online)", client.peer()));
    client.send(b"hello");
    chatd.expect_body(&format!("message {} #1: hello", client.peer()));
    let mut wrong = Client::connect_quiet(chatd.addr());
    assert_eq!(wrong.read_line(), "password:");
    wrong.send(b"sekri");
    assert_eq!(wrong.read_to_end(), "access denied\n");
    chatd.expect_body(&format!("refused {} (auth)", wrong.peer()));
}

/// Reads raw bytes from `client` (telnet answers are not UTF-8) until they end with `end`.
#[track_caller]
fn read_raw_until(client: &Client, end: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut stream = client.stream().try_clone().expect("clone");
    let mut received = Vec::new();
    while !received.ends_with(end) {
        let mut byte = [0; 1];
        match stream.read(&mut byte) {
            Ok(1) => received.push(byte[0]),
            other => panic!("{other:?} after {received:x?}"),
        }
    }
    received
}

/// A directory of the test's own for a password file.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("chatd-pw-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }

    /// Writes `text` as the password file and gives its path.
    fn password(&self, text: &str) -> String {
        let path = self.0.join("password");
        std::fs::write(&path, text).expect("write the password file");
        path_str(&path)
    }
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `/metrics` counts refusals at the gate by reason: `auth` for a wrong password, `tls` for a
/// failed handshake.
#[test]
fn gate_refusals_are_counted_in_metrics() {
    use std::io::{Read, Write};
    let certs = Certs::new("metrics");
    let dir = Dir::new("metrics");
    let password = dir.password("sekret");
    let more = ["--password-file", &password, "--metrics", "127.0.0.1:0"];
    let (mut chatd, tls) = spawn_tls(&certs, &more);
    let line = chatd.expect_report("metrics on ");
    let metrics = line.rsplit(' ').next().expect("an address").to_owned();
    let mut wrong = Client::connect_quiet(chatd.addr());
    wrong.read_line();
    wrong.send_line("guess");
    chatd.expect_report("(auth)");
    let mut garbage = std::net::TcpStream::connect(tls).expect("connect");
    garbage.write_all(b"not tls at all\n").expect("send");
    chatd.expect_report("(tls: ");
    let mut scrape = std::net::TcpStream::connect(&metrics).expect("connect to /metrics");
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut body = String::new();
    scrape.read_to_string(&mut body).expect("read /metrics");
    for sample in [
        "chatd_connections_refused_total{reason=\"auth\"} 1",
        "chatd_connections_refused_total{reason=\"tls\"} 1",
        "chatd_connections_accepted_total 0",
    ] {
        assert!(body.lines().any(|l| l == sample), "{sample} not in {body}");
    }
}

/// A client still at `password:` when chatd stops is refused `shutdown` (it never had an id, so
/// no disconnect), and does not hold up the stop.
#[test]
fn a_guest_at_the_prompt_is_refused_at_shutdown() {
    let dir = Dir::new("shutdown");
    let mut chatd = Chatd::spawn(&["--password-file", &dir.password("sekret")]);
    let mut client = Client::connect_quiet(chatd.addr());
    assert_eq!(client.read_line(), "password:");
    chatd.signal(libc::SIGTERM);
    chatd.expect_body(&format!("refused {} (shutdown)", client.peer()));
    let told = client.read_to_end();
    assert!(!told.contains("welcome"), "{told:?}");
    assert!(chatd.wait_exit().success());
    for kind in ["connect ", "disconnect "] {
        assert_eq!(chatd.seen_count(kind), 0, "{:?}", chatd.seen());
    }
}

/// The right password with no newline, then the end of the client's input: the unfinished line is
/// its password, as an unfinished line is a message once seated. The client is seated, then
/// leaves `closed`.
#[test]
fn a_password_ended_by_the_end_of_input_is_heard() {
    let dir = Dir::new("eof");
    let args = [
        "--password-file",
        &dir.password("sekret"),
        "--line-timeout",
        "60000",
    ];
    let mut chatd = Chatd::spawn(&args);
    let mut client = Client::connect_quiet(chatd.addr());
    assert_eq!(client.read_line(), "password:");
    client.send(b"sekret");
    client
        .stream()
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    chatd.expect_body(&format!("connect {} #1 (1 online)", client.peer()));
    chatd.expect_body(&format!(
        "disconnect {} #1 closed (0 online)",
        client.peer()
    ));
    assert_eq!(chatd.seen_count("refused"), 0, "{:?}", chatd.seen());
}

/// The first message after the password is text whatever its first bytes: only a client's very
/// first bytes are looked at for a TLS hello, and at the gate those were the password's.
#[test]
fn a_first_message_after_the_password_is_never_taken_for_tls() {
    let dir = Dir::new("tls-like");
    let mut chatd = Chatd::spawn(&["--password-file", &dir.password("sekret")]);
    let mut client = Client::connect_quiet(chatd.addr());
    assert_eq!(client.read_line(), "password:");
    client.send(b"sekret\n\x16\x03 looks like a handshake\n");
    chatd.expect_body(&format!(
        "message {} #1: \\x16\\x03 looks like a handshake",
        client.peer()
    ));
    assert_eq!(chatd.seen_count("plain port"), 0, "{:?}", chatd.seen());
}
