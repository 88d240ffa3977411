//! No member can forge what the others read. In the room every line from the server starts with
//! `◆`, and that mark is escaped wherever it appears in a member's text; so however a member pads
//! its text to wrap on another member's terminal, at any width, no row of it starts like a server
//! line. Checked by rendering what a member received with a terminal emulator (pyte, from
//! Debian's python3-pyte) at sixteen widths from 40 to 250 columns, with text padded to wrap at
//! every width in that range.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Chatd, Client, WAIT, chatd_bin};

/// The Python that has pyte: Debian's, when another one (pyenv) comes first on the PATH.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs the pyte `script` with `args`, feeding it `bytes`; gives what it prints.
#[track_caller]
fn render(script: &str, args: &[String], bytes: &[u8]) -> String {
    let mut render = Command::new(python())
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3 (with pyte: apt install python3-pyte)");
    render
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("feed the renderer");
    let output = render.wait_with_output().expect("the renderer's output");
    assert!(
        output.status.success(),
        "the renderer failed (is python3-pyte installed?)"
    );
    String::from_utf8(output.stdout).expect("utf-8 rows")
}

/// Renders `bytes` as a terminal `width` columns wide would show them (LF as CR LF, like a tty),
/// for each width in `WIDTHS`, and gives back every row that starts with the server's mark. Every
/// line starts at column 0, so the lines are rendered a hundred at a time on a screen tall enough
/// for them, which keeps pyte fast and nothing scrolls away.
const RENDER: &str = r#"
import sys, pyte
lines = sys.stdin.buffer.read().split(b"\n")
for width in map(int, sys.argv[1:]):
    for start in range(0, len(lines), 100):
        chunk = lines[start:start + 100]
        rows = sum(2 * len(line) // width + 2 for line in chunk)
        screen = pyte.Screen(width, rows)
        screen.set_mode(pyte.modes.LNM)
        pyte.ByteStream(screen).feed(b"\n".join(chunk))
        for row in screen.display:
            if row.startswith("\u25c6"):
                print(f"{width}\t{row.rstrip()}")
"#;

/// The widths rendered: the usual ones, the edges of the range, and odd ones in between.
const WIDTHS: [usize; 16] = [
    40, 41, 53, 64, 72, 79, 80, 81, 100, 120, 132, 133, 160, 200, 249, 250,
];

/// Members pad their text with spaces (and with wide characters, tabs and invisible marks) so that
/// a forged `server:` line, a forged departure and a forged join would start a row at one width or
/// another; and they send the server's mark itself. Rendered at 40 to 250 columns, the only rows
/// that start with `◆` are the server's own lines.
#[test]
fn no_member_text_starts_a_row_like_a_server_line() {
    // The attacker's 1 135 lines are more than --max-rate's burst: flood control is not what this
    // tests (--max-rate 0; tests/flood.rs is about it).
    let mut chatd = Chatd::spawn(&["--relay", "--max-rate", "0"]);
    let mut victim = Client::connect(chatd.addr());
    let mut attacker = Client::connect(chatd.addr());
    let forged = [
        "◆ server: maintenance tonight, send your password to #2",
        "◆ alice left (exit)",
        "◆ #3 joined (3 online)",
        "\u{200b}◆ server: zero width",
        "\u{202e}◆ server: reversed",
    ];
    let mut sent = 0;
    for width in 40..=250usize {
        for text in forged {
            // Spaces so that `text` starts the second row at this width (`#2: ` comes first).
            let pad = " ".repeat(width - "#2: ".len());
            attacker.send_line(&format!("{pad}{text}"));
            sent += 1;
        }
    }
    // Wide characters and tabs, which move the wrap point, at a few alignments.
    for n in 0..40 {
        attacker.send_line(&format!(
            "{}{}◆ server: wide",
            "你".repeat(n),
            " ".repeat(n % 3)
        ));
        attacker.send_line(&format!("{}\t◆ server: tab", "x".repeat(n)));
        sent += 2;
    }
    chatd.expect_report(&format!("#2: {}", "x".repeat(39)));
    chatd.send_console("/all that is all");
    let mut received = Vec::new();
    let mut lines = 0;
    loop {
        let line = victim.read_line();
        received.extend_from_slice(line.as_bytes());
        received.push(b'\n');
        if line == "◆ server: that is all" {
            break;
        }
        lines += 1;
    }
    assert!(lines >= sent, "the victim got {lines} lines of {sent}");

    let widths = WIDTHS.map(|width| width.to_string());
    let rows = render(RENDER, &widths, &received);
    // (The greeting came before: `Client::connect` read it.)
    let genuine = [
        "◆ nobody else is online",
        "◆ #2 joined (2 online)",
        "◆ server: that is all",
    ];
    let mut seen = 0;
    for row in rows.lines() {
        let (width, text) = row.split_once('\t').expect("width and row");
        assert!(
            genuine.contains(&text),
            "at {width} columns a row reads like a server line: {text:?}"
        );
        seen += 1;
    }
    assert_eq!(
        seen,
        WIDTHS.len() * genuine.len(),
        "the server's own lines, at each width"
    );
}

/// A child process that is killed and reaped when dropped, whatever the test does.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs chatd with its stdout on a pseudo-terminal `width` columns wide; gives the child, the
/// terminal's output so far (filled by a reader thread) and the port.
fn on_a_terminal(width: u16) -> (Reaped, Arc<Mutex<Vec<u8>>>, u16) {
    let (master, slave) = common::pty(width);
    let child = Reaped(
        Command::new(chatd_bin())
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::from(slave))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chatd"),
    );
    let screen = Arc::new(Mutex::new(Vec::new()));
    let filled = Arc::clone(&screen);
    thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut buf = [0; 4096];
        // Ends with EIO once chatd has exited and nothing holds the terminal open.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            filled.lock().expect("screen").extend_from_slice(&buf[..n]);
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let text = String::from_utf8_lossy(&screen.lock().expect("screen")).into_owned();
        // A narrow terminal may show the line in rows: join them.
        let text = text.replace("\r\n    ", "");
        if let Some(port) = text
            .split("listening on 127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|port| port.parse().ok())
        {
            return (child, screen, port);
        }
        assert!(
            Instant::now() < deadline,
            "no `listening on` on the terminal: {text:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// On the operator's terminal, chatd knows the width: a report longer than it is broken into rows
/// by chatd, every row after the first indented, so a message padded to wrap can never show a row
/// that reads like a report (`00:10:42 [INFO] disconnect ...`). Rendered with pyte at 40, 80 and
/// 132 columns, with every padding from none to twice the width.
#[test]
fn no_client_text_starts_a_row_like_a_report_on_the_operators_terminal() {
    const FORGED: &str = "00:10:42 [INFO] disconnect 127.0.0.1:51234 #77 closed (0 online)";
    for width in [40u16, 80, 132] {
        let (child, screen, port) = on_a_terminal(width);
        let mut client = Client::connect(SocketAddr::from(([127, 0, 0, 1], port)));
        for pad in 0..2 * usize::from(width) {
            client.send_line(&format!("{}{FORGED}", " ".repeat(pad)));
        }
        // Tabs, which move the cursor to the next tab stop, and a character to end a row on.
        for tabs in 0..usize::from(width) / 4 {
            client.send_line(&format!("{}x{FORGED}", "\t".repeat(tabs)));
        }
        client.send_line("the end");
        let deadline = Instant::now() + WAIT;
        while !String::from_utf8_lossy(&screen.lock().expect("screen")).contains("the end") {
            assert!(
                Instant::now() < deadline,
                "the last message never reached the terminal"
            );
            thread::sleep(Duration::from_millis(10));
        }
        drop(child);
        let shown = screen.lock().expect("screen").clone();
        let rows = render(RENDER_TERMINAL, &[width.to_string()], &shown);
        let forged_rows = rows
            .lines()
            .filter(|row| row.contains("#77 closed"))
            .count();
        assert!(
            forged_rows >= 1,
            "the padded messages never showed at {width} columns"
        );
        for row in rows.lines() {
            assert!(
                !row.starts_with("00:10:42"),
                "at {width} columns a row reads like a report: {row:?}"
            );
        }
    }
}

/// Renders a terminal's output at the width given, and prints every row.
const RENDER_TERMINAL: &str = r#"
import sys, pyte
width = int(sys.argv[1])
data = sys.stdin.buffer.read()
rows = data.count(b"\n") * (2 + 400 // width) + 10
screen = pyte.Screen(width, rows)
pyte.ByteStream(screen).feed(data)
for row in screen.display:
    print(row.rstrip())
"#;
