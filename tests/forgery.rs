//! No member can forge what the others read. In the room every line from the server starts with
//! `◆`, and that mark is escaped wherever it appears in a member's text; so however a member pads
//! its text to wrap on another member's terminal, at any width, no row of it starts like a server
//! line. Checked by rendering what a member received with a terminal emulator (pyte, from
//! Debian's python3-pyte) at sixteen widths from 40 to 250 columns, with text padded to wrap at
//! every width in that range.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Chatd, Client};

/// The Python that has pyte: Debian's, when another one (pyenv) comes first on the PATH.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
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
    let mut chatd = Chatd::spawn(&["--relay"]);
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

    let mut render = Command::new(python())
        .args(["-c", RENDER])
        .args(WIDTHS.map(|width| width.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3 (with pyte: apt install python3-pyte)");
    render
        .stdin
        .take()
        .expect("stdin")
        .write_all(&received)
        .expect("feed the renderer");
    let output = render.wait_with_output().expect("the renderer's output");
    assert!(
        output.status.success(),
        "the renderer failed (is python3-pyte installed?)"
    );
    let rows = String::from_utf8(output.stdout).expect("utf-8 rows");
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
