//! The console as a line editor: chatd runs on a real terminal (a tmux pane), and the tests type
//! into it and read the screen, while real clients talk to it over TCP. The reports are read from
//! `--log-file`, which the editor does not change.

mod common;

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, WAIT, chatd_bin};
use socket2::{Domain, Protocol, Socket, Type};

/// Reports keep coming while the operator types: they are drawn above the input line, which is
/// never cut; and the line, sent, goes to the client the prompt showed when typing began, though
/// another client has spoken since.
#[test]
fn a_half_typed_line_survives_a_hundred_reports_and_goes_where_the_prompt_said() {
    let tty = Tty::spawn(&[]);
    let mut alice = tty.client();
    alice.send_line("hi operator");
    tty.wait_prompt("to #1>");
    tty.type_text("half typed reply");
    tty.wait_prompt("to #1> half typed reply");
    let mut bob = tty.client();
    let burst: String = (0..100).map(|i| format!("report {i}\n")).collect();
    bob.send(burst.as_bytes());
    tty.wait_log("#2: report 99");
    let screen = tty.wait_drawn("the hundredth report", |s| s.contains("#2: report 99"));
    assert_eq!(prompt_line(&screen), "to #1> half typed reply", "{screen}");
    assert_eq!(screen.matches("half typed").count(), 1, "{screen}");
    for row in screen.lines().filter(|row| row.contains("report ")) {
        assert!(
            row.contains("[INFO] message 127.0.0.1:") && !row.contains("half"),
            "a report row was cut or mixed: {row:?}\n{screen}"
        );
    }
    tty.keys(&["Enter"]);
    tty.wait_log("] sent to #1 ");
    assert_eq!(alice.read_line(), "half typed reply");
    tty.wait_prompt("to #2>");
}

/// The prompt follows the last client to speak; blank lines and room commands (`/who`, `/nick`)
/// do not count as speaking. `/to <id>` holds the target whoever speaks, `/last` lets it follow
/// again.
#[test]
fn the_prompt_follows_the_last_speaker_and_a_sticky_target_holds() {
    let tty = Tty::spawn(&["--relay"]);
    tty.wait_prompt("nobody has spoken>");
    let mut alice = tty.client();
    alice.send_line("hello");
    tty.wait_prompt("to #1>");
    let mut bob = tty.client();
    bob.send_line("hi");
    tty.wait_prompt("to #2>");
    for line in ["", "   ", "/who", "/nick alice"] {
        alice.send_line(line);
    }
    // The prompt drawn under a report reflects at least the turn that report came in.
    let screen = tty.wait_drawn("the nick report", |s| s.contains("is now alice"));
    assert_eq!(prompt_line(&screen), "to #2>", "{screen}");

    tty.type_text("/to 1");
    tty.keys(&["Enter"]);
    tty.wait_log("bare lines now go to #1");
    tty.wait_prompt("to #1 alice (fixed)>");
    bob.send_line("me again");
    let screen = tty.wait_drawn("bob's message", |s| s.contains("#2: me again"));
    assert_eq!(prompt_line(&screen), "to #1 alice (fixed)>", "{screen}");
    tty.type_text("for alice only");
    tty.keys(&["Enter"]);
    tty.wait_log("] sent to #1 ");
    alice.read_until("for alice only");

    tty.type_text("/last");
    tty.keys(&["Enter"]);
    tty.wait_log("bare lines now go to the last to speak");
    tty.wait_prompt("to #2>");

    // `/help` names them.
    tty.type_text("/help");
    tty.keys(&["Enter"]);
    tty.wait_log("/to, /last");
}

/// Tab completes a command, a client's id after `/to`, and in the room a name after `@` into
/// that member's id; Up recalls the session's last line.
#[test]
fn tab_completes_commands_ids_and_names() {
    let tty = Tty::spawn(&["--relay"]);
    let mut alice = tty.client();
    alice.send_line("/nick alice");
    tty.wait_log("is now alice");
    tty.type_text("/ki");
    tty.keys(&["Tab"]);
    tty.wait_prompt("nobody has spoken> /kick");
    tty.keys(&["C-u"]);
    tty.type_text("/to ");
    tty.keys(&["Tab"]);
    tty.wait_prompt("nobody has spoken> /to 1");
    tty.keys(&["C-u"]);
    tty.type_text("@al");
    tty.keys(&["Tab"]);
    tty.wait_prompt("nobody has spoken> @1");
    tty.type_text("hi");
    tty.keys(&["Enter"]);
    tty.wait_log("] sent to #1 ");
    alice.read_until("hi");
    // The session's history: Up brings the line back.
    tty.keys(&["Up"]);
    tty.wait_prompt("nobody has spoken> @1 hi");
}

/// If the client the prompt showed leaves before Enter, nothing is sent (not to whoever spoke
/// since), and the console says so.
#[test]
fn a_line_for_a_client_that_left_is_not_sent() {
    let tty = Tty::spawn(&[]);
    let mut alice = tty.client();
    alice.send_line("hi");
    tty.wait_prompt("to #1>");
    tty.type_text("bye alice");
    let mut bob = tty.client();
    bob.send_line("I am here too");
    drop(alice);
    tty.wait_log("disconnect ");
    tty.keys(&["Enter"]);
    tty.wait_log("console: #1 has left; nothing sent");
    let log = tty.log();
    assert!(
        !log.contains("] sent to") && !log.contains("] replied to"),
        "{log}"
    );
    tty.wait_prompt("to #2>");
}

/// A burst of 10 000 reports in one go reaches the screen (and the log, every one, in order)
/// without cutting the line being typed.
#[test]
fn ten_thousand_reports_in_a_burst_are_drawn_above_the_line() {
    let tty = Tty::spawn(&[]);
    let mut alice = tty.client();
    tty.type_text("still here");
    let burst: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
    alice.send(burst.as_bytes());
    tty.wait_log("#1: line 9999");
    let screen = tty.wait_drawn("the last line", |s| s.contains("#1: line 9999"));
    // Typing began before anyone spoke: the line keeps that prompt.
    assert_eq!(
        prompt_line(&screen),
        "nobody has spoken> still here",
        "{screen}"
    );
    let log = tty.log();
    let heard: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split_once("#1: line ").map(|(_, n)| n))
        .collect();
    let expected: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    assert_eq!(heard, expected);
}

/// Ctrl-C in the editor is still SIGINT for the server: a graceful shutdown, exit 0, and the
/// terminal back in its normal mode.
#[test]
fn ctrl_c_in_the_editor_shuts_down_and_gives_the_terminal_back() {
    let tty = Tty::spawn(&[]);
    let mut alice = tty.client();
    tty.type_text("some half line");
    tty.keys(&["C-c"]);
    tty.wait_log("shutting down (SIGINT)");
    tty.wait_log("] stopped");
    assert_eq!(alice.read_to_end(), "server shutting down\n");
    let screen = tty.wait_screen("the exit", |s| s.contains("chatd exited"));
    assert!(screen.contains("chatd exited 0"), "{screen}");
    tty.wait_screen("the terminal's mode", |s| s.contains("mode icanon"));
}

/// A second Ctrl-C while the shutdown waits on a client that does not read exits at once with
/// 130, as a second SIGINT does, and the terminal is still given back.
#[test]
fn a_second_ctrl_c_exits_at_once_and_gives_the_terminal_back() {
    // --max-rate 0: the talker floods the room on purpose.
    let tty = Tty::spawn(&["--relay", "--max-queue", "100000000", "--max-rate", "0"]);
    let _stuck = connect_stuck(tty.addr());
    tty.wait_log("#1 (1 online)");
    let mut talker = tty.client();
    // 9 MB for the member that does not read: more than loopback's buffers hold.
    let line = format!("{}\n", "x".repeat(999));
    for _ in 0..9_000 {
        talker.send(line.as_bytes());
    }
    tty.wait_until_log("the 9000th line", |log| {
        log.matches("#2: xxx").count() >= 9_000
    });
    tty.keys(&["C-c"]);
    tty.wait_log("shutting down (SIGINT)");
    tty.keys(&["C-c"]);
    let screen = tty.wait_screen("the exit", |s| s.contains("chatd exited"));
    assert!(screen.contains("chatd exited 130"), "{screen}");
    tty.wait_screen("the terminal's mode", |s| s.contains("mode icanon"));
    assert!(!tty.log().contains("] stopped"));
}

/// chatd on a tmux pane of its own (a private tmux server), with `--log-file`; after it exits, the
/// pane shows its exit code and whether the terminal is back in canonical mode.
struct Tty {
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Tty {
    #[track_caller]
    fn spawn(args: &[&str]) -> Tty {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chatd-tty-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).expect("make a temporary directory");
        let (socket, log) = (dir.join("tmux"), dir.join("chatd.log"));
        let bin = chatd_bin();
        let script = format!(
            "'{}' --listen 127.0.0.1:0 --log-file '{}' {}; echo \"chatd exited $?\"; \
             echo \"mode $(stty -a | grep -o -- '-\\?icanon')\"; sleep 600",
            bin.to_string_lossy(),
            log.display(),
            args.join(" ")
        );
        let mut tty = Tty {
            dir,
            socket,
            log,
            port: 0,
        };
        tty.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "50",
            &script,
        ]);
        let line = tty.wait_log("listening on 127.0.0.1:");
        tty.port = line
            .rsplit(':')
            .next()
            .and_then(|port| port.trim().parse().ok())
            .expect("a port");
        tty
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A client, connected and reported.
    #[track_caller]
    fn client(&self) -> Client {
        let client = Client::connect(self.addr());
        let peer = client.peer();
        self.wait_log(&format!("connect {peer} "));
        client
    }

    #[track_caller]
    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(output.status.success(), "tmux {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Types `text` as it is, key by key.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "0", "-l", text]);
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "0"])
    }

    #[track_caller]
    fn wait_screen(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `done` with the input line drawn under it: between drawing new reports and
    /// drawing the prompt again, the screen's last row is a report.
    #[track_caller]
    fn wait_drawn(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.wait_screen(what, |s| {
            let prompt = prompt_line(s);
            done(s) && !prompt.contains("[INFO]") && prompt.contains('>')
        })
    }

    #[track_caller]
    fn wait_prompt(&self, prompt: &str) {
        self.wait_screen(&format!("prompt {prompt:?}"), |s| prompt_line(s) == prompt);
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first line of the log containing `needle`, once there is one.
    #[track_caller]
    fn wait_log(&self, needle: &str) -> String {
        let log = self.wait_until_log(needle, |log| log.contains(needle));
        log.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_default()
            .to_owned()
    }

    #[track_caller]
    fn wait_until_log(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if done(&log) {
                return log;
            }
            assert!(Instant::now() < deadline, "no {what:?} in the log:\n{log}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The screen's last row with anything on it: the editor's input line.
fn prompt_line(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|row| !row.trim().is_empty())
        .unwrap_or_default()
        .trim_end()
}

/// A client that never reads, with a small receive buffer, so what is queued for it stays queued.
fn connect_stuck(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .expect("create a socket");
    socket.set_recv_buffer_size(4096).expect("set SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect to chatd");
    let mut stream: TcpStream = socket.into();
    stream.flush().expect("flush");
    stream
}

trait ReadUntil {
    fn read_until(&mut self, needle: &str) -> String;
}

impl ReadUntil for Client {
    /// Reads lines until one contains `needle` (the client's read timeout bounds each).
    #[track_caller]
    fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = self.read_line();
            if line.contains(needle) {
                return line;
            }
            assert!(Instant::now() < deadline, "no {needle:?} for the client");
        }
    }
}
