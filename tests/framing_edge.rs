//! Framing and escaping at the edges, seen in the reports: line endings, empty lines, lines split
//! into tiny writes, unfinished lines (line timeout and EOF), hostile bytes, and `--max-line`.

mod common;

use std::net::Shutdown;

use common::{Chatd, Client, report_body};

/// `\r\n` endings are dropped, empty lines (with or without `\r`) are messages, and a lone `\r`
/// inside a line is shown as `\x0d`.
#[test]
fn crlf_is_stripped_and_empty_lines_are_messages() {
    let (lines, peer) = exchange(&[], b"one\r\n\n\r\ntwo\rthree\n");
    assert_eq!(
        message_texts(&lines, &peer),
        ["one", "", "", "two\\x0dthree", END],
        "reports: {lines:#?}"
    );
}

/// Lines sent one byte per segment (TCP_NODELAY), a `\r\n` split between segments included, are
/// each one message.
#[test]
fn a_line_split_into_single_bytes_is_one_message() {
    // A long line timeout, so only the framing decides where a message ends.
    let mut chatd = Chatd::spawn(&["--line-timeout", "60000"]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    client.stream().set_nodelay(true).expect("set TCP_NODELAY");
    for byte in b"hello, byte by byte\r\nsecond\n" {
        client.send(&[*byte]);
    }
    client.send_line(END);
    let lines = chatd.collect_until(&format!("message {peer} #1: {END}"));
    assert_eq!(
        message_texts(&lines, &peer),
        ["hello, byte by byte", "second", END],
        "reports: {lines:#?}"
    );
}

/// Bytes without a newline become a message once the line timeout passes with nothing more, and
/// the client goes on talking.
#[test]
fn unfinished_line_is_a_message_after_the_line_timeout() {
    let mut chatd = Chatd::spawn(&["--line-timeout", "50"]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    client.send(b"no newline here");
    chatd.expect_body(&format!("message {peer} #1: no newline here"));
    client.send_line("next");
    let lines = chatd.collect_until(&format!("message {peer} #1: next"));
    assert_eq!(
        message_texts(&lines, &peer),
        ["next"],
        "reports: {lines:#?}"
    );
}

/// Bytes without a newline followed by the client closing its side are a message, reported before
/// the `closed` disconnect.
#[test]
fn unfinished_line_is_a_message_at_eof() {
    // A long line timeout, so only the EOF can make the message.
    let mut chatd = Chatd::spawn(&["--line-timeout", "60000"]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    client.send(b"first\nlast words");
    client
        .stream()
        .shutdown(Shutdown::Write)
        .expect("half-close");
    let lines = chatd.collect_until(&format!("disconnect {peer} #1"));
    assert_eq!(
        message_texts(&lines, &peer),
        ["first", "last words"],
        "reports: {lines:#?}"
    );
    assert_eq!(
        report_body(lines.last().expect("a disconnect line")),
        format!("disconnect {peer} #1 closed (0 online)")
    );
}

/// Terminal escape sequences (clear screen, cursor home, set window title) are shown with `\x1b`
/// and `\x07`, so they cannot act on the operator's terminal.
#[test]
fn terminal_escape_sequences_are_shown_escaped() {
    assert_shown_as(&[
        (b"\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
        (b"\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        (b"red \x1b[31malert\x1b[0m", "red \\x1b[31malert\\x1b[0m"),
    ]);
}

/// Bytes that are not UTF-8 (stray bytes, an overlong `/`, a cut-off sequence) are shown as
/// lowercase `\xNN`, each byte on its own. (A 0xFF followed by 236 to 255 is a telnet command:
/// see tests/telnet.rs.)
#[test]
fn invalid_utf8_is_shown_as_hex_bytes() {
    assert_shown_as(&[
        (b"\xfe\xff!", "\\xfe\\xff!"),
        (b"overlong \xc0\xaf", "overlong \\xc0\\xaf"),
        (b"cut \xe4\xbd", "cut \\xe4\\xbd"),
        (b"\x80lone continuation", "\\x80lone continuation"),
    ]);
}

/// NUL, DEL, other C0 controls and the C1 controls (sent as UTF-8, e.g. U+009B as `c2 9b`) are
/// shown as `\xNN`; a tab is kept.
#[test]
fn nul_del_and_c1_controls_are_shown_escaped() {
    assert_shown_as(&[
        (b"a\0b", "a\\x00b"),
        (b"del\x7f", "del\\x7f"),
        (
            b"bell\x07 bs\x08 vt\x0b ff\x0c",
            "bell\\x07 bs\\x08 vt\\x0b ff\\x0c",
        ),
        ("csi \u{9b}2J".as_bytes(), "csi \\x9b2J"),
        ("nel \u{85}".as_bytes(), "nel \\x85"),
        (b"tab\there", "tab\there"),
    ]);
}

/// Bidi embeddings, overrides and isolates, and the Unicode line and paragraph separators, are
/// shown as `\u{NNNN}`, so a client cannot reorder or break the operator's line.
#[test]
fn bidi_controls_and_separators_are_shown_escaped() {
    assert_shown_as(&[
        ("abc\u{202e}fed".as_bytes(), "abc\\u{202e}fed"),
        (
            "\u{202a}\u{202b}\u{202c}\u{202d}".as_bytes(),
            "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
        ),
        (
            "\u{2066}x\u{2067}\u{2068}\u{2069}".as_bytes(),
            "\\u{2066}x\\u{2067}\\u{2068}\\u{2069}",
        ),
        ("a\u{2028}b\u{2029}c".as_bytes(), "a\\u{2028}b\\u{2029}c"),
    ]);
}

/// A carriage return cannot make a client's message look like another report: the fake
/// `disconnect` stays inside the message, after `\x0d`.
#[test]
fn a_client_cannot_forge_a_report_line() {
    let lines = assert_shown_as(&[(
        b"hi\rdisconnect 1.2.3.4:5 #9 exit",
        "hi\\x0ddisconnect 1.2.3.4:5 #9 exit",
    )]);
    assert!(
        !lines
            .iter()
            .any(|line| report_body(line).starts_with("disconnect 1.2.3.4:5")),
        "a forged report: {lines:#?}"
    );
}

/// Chinese, emoji and accented text pass through as they are.
#[test]
fn unicode_text_passes_through_unchanged() {
    let text = "你好，世界 🎉👍🏽 café naïve Ωmega";
    assert_shown_as(&[(text.as_bytes(), text)]);
}

/// With `--max-line 16` a longer line shows its first 16 bytes and `... [+N bytes]`, N being the
/// rest without the `\r\n`, and the line after it is whole.
#[test]
fn long_line_is_cut_at_max_line_and_the_rest_counted() {
    let (lines, peer) = exchange(
        &["--max-line", "16"],
        b"0123456789abcdefXYZ-rest\r\nnext line\n",
    );
    assert_eq!(
        message_texts(&lines, &peer),
        ["0123456789abcdef... [+8 bytes]", "next line", END],
        "reports: {lines:#?}"
    );
}

/// A line of exactly `--max-line` bytes is whole, with no count, even with a `\r\n` ending.
#[test]
fn line_of_exactly_max_line_bytes_is_whole() {
    let (lines, peer) = exchange(&["--max-line", "16"], b"0123456789abcdef\r\n");
    assert_eq!(
        message_texts(&lines, &peer),
        ["0123456789abcdef", END],
        "reports: {lines:#?}"
    );
}

/// A very long line sent in many writes is cut and counted the same, and the next line is whole.
#[test]
fn long_line_over_many_writes_is_cut_and_counted() {
    let mut chatd = Chatd::spawn(&["--max-line", "16", "--line-timeout", "60000"]);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    let long = vec![b'x'; 100_000];
    for chunk in long.chunks(4096) {
        client.send(chunk);
    }
    client.send(b"\r\nafter\n");
    client.send_line(END);
    let lines = chatd.collect_until(&format!("message {peer} #1: {END}"));
    assert_eq!(
        message_texts(&lines, &peer),
        [
            format!("{}... [+{} bytes]", "x".repeat(16), 100_000 - 16),
            "after".to_owned(),
            END.to_owned()
        ],
        "reports: {lines:#?}"
    );
}

/// Sends each case as one line and checks that the reports show exactly the expected texts, and
/// that no report line holds a raw control or bidi character. Returns the report lines.
#[track_caller]
fn assert_shown_as(cases: &[(&[u8], &str)]) -> Vec<String> {
    let mut bytes = Vec::new();
    for (sent, _) in cases {
        bytes.extend_from_slice(sent);
        bytes.push(b'\n');
    }
    let (lines, peer) = exchange(&[], &bytes);
    let mut expected: Vec<&str> = cases.iter().map(|(_, shown)| *shown).collect();
    expected.push(END);
    assert_eq!(
        message_texts(&lines, &peer),
        expected,
        "reports: {lines:#?}"
    );
    for line in &lines {
        assert!(
            !line.chars().any(is_unsafe),
            "raw control character in report line {line:?}"
        );
        // The harness reads stdout lossily: a raw invalid byte would show up as U+FFFD.
        assert!(!line.contains('\u{fffd}'), "raw invalid UTF-8 in {line:?}");
    }
    lines
}

/// Starts `chatd` with `args`, connects, sends `bytes` in one write and then the line [`END`], and
/// returns every report line up to that one, and the client's address.
#[track_caller]
fn exchange(args: &[&str], bytes: &[u8]) -> (Vec<String>, String) {
    let mut chatd = Chatd::spawn(args);
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    client.send(bytes);
    client.send_line(END);
    let lines = chatd.collect_until(&format!("message {peer} #1: {END}"));
    (lines, peer)
}

/// The texts of client #1's `message` reports among `lines`, in order.
fn message_texts(lines: &[String], peer: &str) -> Vec<String> {
    let prefix = format!("message {peer} #1: ");
    lines
        .iter()
        .filter_map(|line| report_body(line).strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// What must never reach the operator's terminal raw: controls other than tab, bidi controls and
/// the Unicode line and paragraph separators.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// The last line each test sends: once it is reported, everything before it has been.
const END: &str = "end of test";
