//! Telnet and the other real clients, as people run them in a terminal: `telnet` (inetutils),
//! `nc -N`, `ncat` and `socat -`, each on a pseudo-terminal of its own, typing Chinese and emoji,
//! reading a reply, and leaving by Ctrl-C or `exit`; a room where they talk to each other; the
//! telnet answers byte for byte; and clients that type slowly.

#[path = "support/client_commands.rs"]
mod client_commands;
mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use client_commands::{ClientCommand, NC_N, NCAT, SOCAT, TELNET};
use common::{Chatd, Client, Report, WAIT, report_body, report_lines};

/// `telnet` on a terminal: its first line (Chinese, an emoji, and `✓` and `七`, which it mangles
/// into telnet commands before binary mode) is reported intact, it shows the operator's reply
/// (it would show nothing if its timing mark went unanswered), and Ctrl-C leaves: `goodbye` on
/// its screen, `exit` in the report, and telnet ends by itself.
#[test]
fn telnet_types_chinese_and_emoji_and_leaves_by_ctrl_c() {
    let mut chatd = Chatd::spawn(&[]);
    let mut telnet = Terminal::run(&TELNET, chatd.addr().port());
    telnet.expect("welcome");
    let peer = connected_peer(&mut chatd, 1);
    telnet.type_line("你好 😀 ✓ 七 Ï Ú Ü");
    chatd.expect_body(&format!("message {peer} #1: 你好 😀 ✓ 七 Ï Ú Ü"));
    chatd.send_console("/to 1 回复 🎉");
    telnet.expect("回复 🎉");
    // Binary now: 0x85 and 0x9D (х, 東), which telnet swallows or takes for its escape key
    // before, come through.
    telnet.type_line("х 東");
    chatd.expect_body(&format!("message {peer} #1: х 東"));
    telnet.type_bytes(b"\x03");
    telnet.expect("goodbye");
    chatd.expect_body(&format!("disconnect {peer} #1 exit (0 online)"));
    telnet.expect_exit();
    let messages = chatd.seen_count(&format!("message {peer} #1:"));
    assert_eq!(messages, 2, "{:#?}", chatd.seen());
}

/// `nc -N`, `ncat` and `socat -` on a terminal, the same session, leaving by `exit`: their text
/// is reported intact, they show the reply, and none of them ever receives a telnet byte (0xFF).
#[test]
fn nc_ncat_and_socat_type_chinese_and_emoji_and_leave_by_exit() {
    for command in [&NC_N, &NCAT, &SOCAT] {
        let mut chatd = Chatd::spawn(&[]);
        let mut client = Terminal::run(command, chatd.addr().port());
        client.expect("welcome");
        let peer = connected_peer(&mut chatd, 1);
        let said = format!("{} 说 你好 😀 ✓ 七", command.name);
        client.type_line(&said);
        chatd.expect_body(&format!("message {peer} #1: {said}"));
        chatd.send_console("/to 1 回复 🎉");
        client.expect("回复 🎉");
        client.type_line("exit");
        client.expect("goodbye");
        chatd.expect_body(&format!("disconnect {peer} #1 exit (0 online)"));
        let screen = client.screen();
        assert!(!screen.contains(&0xff), "{}: {screen:x?}", command.name);
    }
}

/// The issue's room: a `telnet`, an `nc -N` and an `ncat` client in one `--relay` room each say a
/// line of Chinese and emoji, and each sees the other two lines intact, on its own screen.
#[test]
fn telnet_nc_and_ncat_talk_in_one_room() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let port = chatd.addr().port();
    let mut clients = Vec::new();
    for (i, command) in [&TELNET, &NC_N, &NCAT].into_iter().enumerate() {
        let mut client = Terminal::run(command, port);
        client.expect("welcome");
        chatd.expect_report(&format!("#{} ({} online)", i + 1, i + 1));
        clients.push(client);
    }
    let lines = [
        "你好，我是 telnet ✓ 😀",
        "nc 在这里 🎉 七",
        "ncat 说 中文 👍🏽",
    ];
    for (i, line) in lines.iter().enumerate() {
        clients[i].type_line(line);
        chatd.expect_report(line);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        for (j, line) in lines.iter().enumerate() {
            if i != j {
                client.expect(&format!("#{}: {line}", j + 1));
            }
        }
    }
}

/// What a telnet client is sent, byte for byte: nothing before its first command; then a request
/// for binary input, `WILL TIMING-MARK` for each `DO TIMING-MARK`, options refused; its commands
/// never reach the report, and its `CR NUL`, bare `CR` and `CR LF` each end one line.
#[test]
fn telnet_commands_are_answered_and_stripped() {
    let mut chatd = Chatd::spawn(&["--line-timeout", "60000"]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    // A stray 0xFF that is no command, from a client that never spoke telnet: text, unanswered.
    client.send(b"plain \xff!\n");
    chatd.expect_body(&format!("message {peer} #1: plain \\xff!"));
    // DO ECHO, WILL NAWS, a NAWS subnegotiation, DO TM; a line split by a command.
    client.send(
        b"\xff\xfd\x01\xff\xfb\x1fone\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0 two\xff\xfd\x06\r\n",
    );
    chatd.expect_body(&format!("message {peer} #1: one two"));
    chatd.send_console("/to 1 after");
    let mut received = Vec::new();
    while !received.ends_with(b"after\n") {
        let mut buf = [0; 256];
        let n = client
            .stream()
            .try_clone()
            .expect("clone")
            .read(&mut buf)
            .expect("read the answers");
        assert!(n > 0, "closed; received {received:x?}");
        received.extend_from_slice(&buf[..n]);
    }
    let answers: &[u8] = b"\xff\xfd\x00\xff\xfc\x01\xff\xfe\x1f\xff\xfb\x06after\n";
    assert_eq!(received, answers);
    // NVT line ends now, also split across writes.
    client.send(b"a\r\0b\rc\r");
    chatd.expect_body(&format!("message {peer} #1: c"));
    client.send(b"\nd\r\n");
    chatd.expect_body(&format!("message {peer} #1: d"));
    client.send(b"\xff\xf4\xff\xfd\x06");
    chatd.expect_body(&format!("disconnect {peer} #1 exit (0 online)"));
    let texts: Vec<String> = chatd
        .seen()
        .iter()
        .filter_map(|line| match report_lines::parse(report_body(line)) {
            Some(Report::Message { text, .. }) => Some(text.to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["plain \\xff!", "one two", "a", "b", "c", "d"]);
}

/// Slow typists: once a client has ended a line with a newline, its next line waits for the
/// newline however slowly it comes (`exit` a character at a time, a `CR` and its `LF` split by a
/// pause), while a client that never sent one still has its bytes heard after `--line-timeout`.
#[test]
fn a_client_that_ended_a_line_waits_for_its_newline() {
    let mut chatd = Chatd::spawn(&["--line-timeout", "30"]);
    let mut slow = Client::connect(chatd.addr());
    let mut clock = Client::connect(chatd.addr());
    let (peer, clock_peer) = (slow.peer(), clock.peer());
    slow.send(b"first\n");
    chatd.expect_body(&format!("message {peer} #1: first"));
    for (n, part) in [&b"hello\r"[..], b"\n", b"e", b"x", b"i"]
        .iter()
        .enumerate()
    {
        slow.send(part);
        // The other client's bytes without a newline are heard after the line timeout: by then
        // the slow client's own line timer would have fired too.
        clock.send(format!("tick {n}").as_bytes());
        chatd.expect_body(&format!("message {clock_peer} #2: tick {n}"));
    }
    slow.send(b"t\n");
    chatd.expect_body(&format!("disconnect {peer} #1 exit (1 online)"));
    let texts: Vec<&str> = chatd
        .seen()
        .iter()
        .map(|line| report_body(line))
        .filter_map(|body| body.strip_prefix(&format!("message {peer} #1: ")))
        .collect();
    assert_eq!(texts, ["first", "hello", "exit"]);
}

/// `--max-rate` counts a telnet client's lines as it ends them: 150 lines pasted with bare `CR`
/// or `CR NUL` line ends (NVT), over a burst of 50 at 100 lines a second, take a second to reach
/// the room, as `CR LF` lines do, not all at once.
#[test]
fn flood_control_holds_for_telnet_line_ends() {
    let args = [
        "--relay",
        "--max-rate",
        "100",
        "--burst",
        "50",
        "--flood-timeout",
        "5",
    ];
    for end in [&b"\r"[..], b"\r\0"] {
        let chatd = Chatd::spawn(&args);
        let mut reader = Client::connect(chatd.addr());
        assert_eq!(reader.read_line(), "◆ nobody else is online");
        let mut paster = Client::connect(chatd.addr());
        assert_eq!(reader.read_line(), "◆ #2 joined (2 online)");
        // A telnet NOP first: it speaks telnet, so a bare `CR` ends its lines.
        let mut paste = b"\xff\xf1".to_vec();
        for i in 0..150 {
            paste.extend_from_slice(format!("pasted {i}").as_bytes());
            paste.extend_from_slice(end);
        }
        let started = Instant::now();
        paster.send(&paste);
        for i in 0..150 {
            assert_eq!(reader.read_line(), format!("#2: pasted {i}"), "{end:?}");
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{end:?}: 150 lines in {took:?}"
        );
    }
}

/// A stray 0xFF that is a client's last byte before its EOF is text like any other stray 0xFF:
/// heard in its last line, not lost waiting for a command byte that never comes.
#[test]
fn a_last_stray_0xff_before_eof_is_heard() {
    let mut chatd = Chatd::spawn(&[]);
    for (id, sent, heard) in [(1, &b"x\xff"[..], "x\\xff"), (2, b"y\n\xff", "\\xff")] {
        let mut client = Client::connect(chatd.addr());
        let peer = client.peer();
        client.send(sent);
        client
            .stream()
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        chatd.expect_body(&format!("disconnect {peer} #{id} closed (0 online)"));
        let last = chatd
            .seen()
            .iter()
            .rev()
            .find_map(|line| report_body(line).strip_prefix(&format!("message {peer} #{id}: ")))
            .map(str::to_owned);
        assert_eq!(last.as_deref(), Some(heard), "{:#?}", chatd.seen());
    }
}

/// A 0xFF that ends a read when the line timeout comes, from a client that has not shown it speaks
/// telnet, is the last byte of the line the timeout hands out (`hello\xff`), not the first of
/// the next message; from a client that speaks telnet it is held: the command byte may follow.
#[test]
fn a_trailing_0xff_at_the_line_timeout_is_heard_in_its_line() {
    let mut chatd = Chatd::spawn(&["--line-timeout", "30"]);
    let mut plain = Client::connect(chatd.addr());
    let mut speaker = Client::connect(chatd.addr());
    let (peer, speaker_peer) = (plain.peer(), speaker.peer());
    plain.send(b"hello\xff");
    chatd.expect_body(&format!("message {peer} #1: hello\\xff"));
    // A telnet NOP first: it speaks telnet, and its lines wait for their newline.
    speaker.send(b"\xff\xf1split\xff");
    plain.send(b"world");
    chatd.expect_body(&format!("message {peer} #1: world"));
    speaker.send(b"\xfd\x06 command\r\n");
    chatd.expect_body(&format!("message {speaker_peer} #2: split command"));
    let mut answers = [0; 6];
    speaker
        .stream()
        .try_clone()
        .expect("clone")
        .read_exact(&mut answers)
        .expect("the answers");
    assert_eq!(&answers, b"\xff\xfd\x00\xff\xfb\x06");
    let texts: Vec<&str> = chatd
        .seen()
        .iter()
        .filter_map(|line| report_body(line).strip_prefix("message "))
        .collect();
    assert_eq!(texts.len(), 3, "{texts:#?}");
}

/// `--password-file` with the real telnet: Ctrl-\ pressed after connecting, as README advises
/// (telnet sends `IAC BRK IAC DO TIMING-MARK`), then the password is seated (it was refused
/// `auth`: the commands were taken for password bytes); and a password with Chinese typed with
/// no Ctrl-\ (bytes telnet's 7-bit mode turns into commands) is put back and seated too. What
/// each types next is its first message.
#[test]
fn telnet_passes_the_password_prompt() {
    let dir = std::env::temp_dir().join(format!("chatd-telnet-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("password");
    std::fs::write(&path, "七 sekrit ✓\n").expect("write the password file");
    let mut chatd = Chatd::spawn(&["--password-file", path.to_str().expect("UTF-8 path")]);
    for (id, ctrl_backslash) in [(1, true), (2, false)] {
        let mut telnet = Terminal::run(&TELNET, chatd.addr().port());
        telnet.expect("password:");
        if ctrl_backslash {
            telnet.type_bytes(b"\x1c");
        }
        telnet.type_line("七 sekrit ✓");
        telnet.expect("welcome");
        let peer = connected_peer(&mut chatd, id);
        telnet.type_line("你好 after");
        chatd.expect_body(&format!("message {peer} #{id}: 你好 after"));
    }
    assert_eq!(chatd.seen_count("sekrit"), 0, "{:#?}", chatd.seen());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits for client `#id`'s connect report and returns its address as the server saw it.
#[track_caller]
fn connected_peer(chatd: &mut Chatd, id: usize) -> String {
    let connect = chatd.expect_report(&format!(" #{id} ("));
    let Some(Report::Connect { peer, .. }) = report_lines::parse(report_body(&connect)) else {
        panic!("no address in {connect:?}");
    };
    peer.to_owned()
}

/// A client program running on a pseudo-terminal of its own, as its controlling terminal (so
/// Ctrl-C is a signal, as for a person), with everything it shows collected by a thread.
struct Terminal {
    name: &'static str,
    child: Child,
    master: File,
    screen: Arc<Mutex<Vec<u8>>>,
    /// How far `expect` has looked: each expectation is met by output after the previous one.
    seen: usize,
}

impl Terminal {
    #[track_caller]
    fn run(command: &ClientCommand, port: u16) -> Terminal {
        command.require();
        let ClientCommand { name, program, .. } = *command;
        let (master, slave) = common::pty(200);
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        let mut process = Command::new(program);
        process
            .args((command.args)(port))
            .stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: setsid and ioctl are async-signal-safe, as pre_exec requires; the closure
        // touches nothing but its own stdin, the terminal.
        unsafe {
            process.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = process
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        drop(slave);
        let master = File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let filled = Arc::clone(&screen);
        let mut reader = master.try_clone().expect("dup the master");
        thread::spawn(move || {
            let mut buf = [0; 4096];
            // Ends with EIO once the client has exited and nothing holds the terminal open.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                filled.lock().expect("screen").extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            name,
            child,
            master,
            screen,
            seen: 0,
        }
    }

    /// Types `text` and Enter.
    #[track_caller]
    fn type_line(&mut self, text: &str) {
        self.type_bytes(format!("{text}\r").as_bytes());
    }

    #[track_caller]
    fn type_bytes(&mut self, bytes: &[u8]) {
        self.master
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("type into {}: {e}", self.name));
    }

    /// Everything the client has shown so far.
    fn screen(&self) -> Vec<u8> {
        self.screen.lock().expect("screen").clone()
    }

    /// Waits until the client shows `text` after what earlier expectations matched.
    #[track_caller]
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            let shown =
                String::from_utf8_lossy(&screen[self.seen.min(screen.len())..]).into_owned();
            if let Some(at) = shown.find(text) {
                // Lossy decoding may change lengths: count from the raw bytes instead.
                let before = shown[..at + text.len()].len();
                self.seen += before.min(screen.len() - self.seen);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never showed {text:?}; it showed {shown:?}",
                self.name
            );
            // The screen is filled by a thread: there is no event to wait for.
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the client to exit by itself.
    #[track_caller]
    fn expect_exit(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
