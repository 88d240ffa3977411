//! Flood control (`--max-rate`, `--burst`, `--flood-timeout`): the one who floods is slowed, then
//! dropped `flood`; the others never pay for it. On by default in the room, off without it, off
//! with `--max-rate 0`; the operator's lines and the server's announcements are never limited.
//!
//! Deliberately not here: the bucket's arithmetic (unit tests in `src/flood.rs`), or speed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{Chatd, Client, WAIT, report_body};

/// The issue's scenario, with the room's defaults (20 lines/s, a burst of 200, 10 s): one member
/// sends 8 MB of lines as fast as it can while another reads line by line at about 2 000 lines a
/// second, as a script would. The reader gets every line chatd took from the flooder, in order,
/// and is never dropped `slow`; the flooder is slowed to the rate (TCP makes it wait: it cannot
/// even hand its 8 MB to the kernel) and, as it keeps on, dropped `flood`, told so, its backlog
/// reported dropped and never relayed; the room is told it left.
#[test]
fn a_flooder_is_slowed_then_dropped_and_a_polite_reader_gets_every_line() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let mut polite = Client::connect(chatd.addr());
    assert_eq!(polite.read_line(), "◆ nobody else is online");
    let flooder = TcpStream::connect(chatd.addr()).expect("connect the flooder");
    let flooder_peer = flooder.local_addr().expect("local addr").to_string();
    chatd.expect_report(&format!("connect {flooder_peer} #2"));
    assert_eq!(polite.read_line(), "◆ #2 joined (2 online)");

    // The flooder reads what it is sent (greeting, who, farewell) on a thread of its own...
    let mut inbox = flooder.try_clone().expect("clone");
    let told = thread::spawn(move || {
        let mut got = Vec::new();
        let _ = inbox.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    });
    // ... and writes 8 MB as fast as the socket takes it, on another.
    let mut outbox = flooder.try_clone().expect("clone");
    let started = Instant::now();
    let writer = thread::spawn(move || {
        let lines: String = (0..FLOOD_LINES).map(flood_line).collect();
        let bytes = lines.as_bytes();
        let mut written = 0;
        while written < bytes.len() {
            match outbox.write(&bytes[written..]) {
                Ok(n) if n > 0 => written += n,
                _ => break,
            }
        }
        written
    });

    // The polite reader: one line at a time, at most 2 000 a second.
    let mut relayed = 0;
    loop {
        let line = polite.read_line();
        if line == "◆ #2 left (flood)" {
            break;
        }
        let expected = format!("#2: {}", flood_line(relayed));
        assert_eq!(
            format!("{line}\n"),
            expected,
            "line {relayed} missing or out of order"
        );
        relayed += 1;
        let due = started + Duration::from_secs_f64(relayed as f64 / POLITE_LINES_PER_S);
        thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let took = started.elapsed();

    // Slowed: the burst, then the rate, for the timeout (and some slack for a busy machine).
    let most = 200 + 20 * (took.as_secs() as usize + 2);
    assert!(
        (200..=most).contains(&relayed),
        "{relayed} lines relayed in {took:?}"
    );
    assert!(took >= Duration::from_secs(10), "dropped after {took:?}");
    let seen = chatd.collect_until(&format!("disconnect {flooder_peer} #2 flood (1 online)"));
    let heard = seen
        .iter()
        .filter(|line| report_body(line).starts_with(&format!("message {flooder_peer} #2: ")))
        .count();
    assert_eq!(heard, relayed, "what chatd heard is what the room got");
    let prefix = format!("dropped {flooder_peer} #2: ");
    let dropped: usize = seen
        .iter()
        .find_map(|line| report_body(line).strip_prefix(&prefix))
        .and_then(|rest| rest.strip_suffix(" bytes not heard"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `dropped` report for the flooder in {seen:?}"));
    let written = writer.join().expect("the writer");
    eprintln!(
        "relayed {relayed} lines in {took:?}; the flooder wrote {written} B, {dropped} B dropped"
    );
    assert!(dropped > 0);
    assert!(
        written < FLOOD_LINES * FLOOD_LINE_LEN,
        "the flooder wrote all its {written} bytes: nothing held it back"
    );
    assert!(relayed * FLOOD_LINE_LEN + dropped <= written);
    flooder_told_and_reader_kept(told, &mut polite, &chatd);
}

/// The hostile tester's flood, at the room's defaults: one member sends 200 lines of 64 KiB as
/// fast as it can (13 MB, yet only its burst in lines) while another reads at 250 KB/s. The burst
/// bounds bytes too (200 KiB, then 20 KiB a second), so the reader gets every line chatd took, in
/// order, and is never dropped `slow` (counting lines alone, chatd took the 13 MB at once and
/// dropped the reader within a second); the flooder is held back and, as it keeps on, dropped
/// `flood`: the line it was held in the middle of is cut, its backlog counted dropped.
#[test]
fn long_lines_are_held_back_by_their_bytes_and_a_polite_reader_is_not_dropped() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let mut polite = Client::connect(chatd.addr());
    assert_eq!(polite.read_line(), "◆ nobody else is online");
    let flooder = TcpStream::connect(chatd.addr()).expect("connect the flooder");
    let flooder_peer = flooder.local_addr().expect("local addr").to_string();
    chatd.expect_report(&format!("connect {flooder_peer} #2"));
    assert_eq!(polite.read_line(), "◆ #2 joined (2 online)");
    let told = read_all(&flooder);
    let lines: String = (0..LONG_LINES).map(long_line).collect();
    let started = Instant::now();
    let writer = write_all(&flooder, lines.into_bytes());

    // The polite reader: 250 KB a second, line by line.
    let (mut relayed, mut cut, mut received) = (0, 0, 0);
    loop {
        let line = polite.read_line();
        received += line.len() + 1;
        if line == "◆ #2 left (flood)" {
            break;
        }
        let expected = long_line(relayed);
        let expected = expected.trim_end();
        let text = line
            .strip_prefix("#2: ")
            .unwrap_or_else(|| panic!("{:?}", head(&line)));
        if let Some(part) = text.strip_suffix(" (cut)") {
            // Where it was held when it was dropped.
            assert!(
                expected.starts_with(part),
                "line {relayed} cut: {:?}",
                head(part)
            );
            cut = part.len();
            continue;
        }
        assert!(
            cut == 0 && text == expected,
            "line {relayed} missing or out of order: {:?}",
            head(text)
        );
        relayed += 1;
        let due = started + Duration::from_secs_f64(received as f64 / POLITE_BYTES_PER_S);
        thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let took = started.elapsed();

    // Held back: 200 KiB at once, then 20 KiB a second for the timeout (and some slack).
    let taken = relayed * LONG_LINE_LEN + cut;
    let most = (200 + 20 * (took.as_secs() as usize + 2)) * 1024;
    assert!(taken <= most, "{taken} bytes relayed in {took:?}");
    assert!(took >= Duration::from_secs(10), "dropped after {took:?}");
    let seen = chatd.collect_until(&format!("disconnect {flooder_peer} #2 flood (1 online)"));
    let heard = seen
        .iter()
        .filter_map(|line| report_body(line).strip_prefix(&format!("message {flooder_peer} #2: ")))
        .filter(|text| !text.ends_with(" (cut)"))
        .count();
    assert_eq!(heard, relayed, "what chatd heard is what the room got");
    let dropped = dropped_bytes(&seen, &flooder_peer, 2);
    let written = writer.join().expect("the writer");
    eprintln!("relayed {taken} B in {took:?}; the flooder wrote {written} B, {dropped} B dropped");
    assert!(dropped > 0);
    assert!(taken + dropped <= written);
    assert!(
        written < LONG_LINES * LONG_LINE_LEN,
        "nothing held the flooder back"
    );
    flooder_told_and_reader_kept(told, &mut polite, &chatd);
}

/// Bytes without a newline are charged as they are read: a member sending 4 MB of one endless
/// line is held back to the rate's KiB (it used to be read at once, the line cut at `--max-line`
/// and the rest thrown away, for free) and dropped `flood`. While it is held in the middle of its
/// line, the line timeout does not cut the line in pieces: its rest waits unread (here a KiB
/// comes back every 200 ms, past the 100 ms line timeout). The room sees one line, cut.
#[test]
fn an_endless_line_is_held_back_by_its_bytes_not_cut_into_messages() {
    let args = ["--relay", "--max-rate", "5", "--flood-timeout", "2"];
    let mut chatd = Chatd::spawn(&args);
    let mut reader = Client::connect(chatd.addr());
    assert_eq!(reader.read_line(), "◆ nobody else is online");
    let flooder = TcpStream::connect(chatd.addr()).expect("connect the flooder");
    let flooder_peer = flooder.local_addr().expect("local addr").to_string();
    assert_eq!(reader.read_line(), "◆ #2 joined (2 online)");
    let told = read_all(&flooder);
    let started = Instant::now();
    let writer = write_all(&flooder, vec![b'x'; 4_000_000]);

    let line = reader.read_line();
    let took = started.elapsed();
    let (kept, cut) = line
        .strip_prefix("#2: ")
        .and_then(|text| text.strip_suffix(" bytes] (cut)"))
        .and_then(|text| text.split_once("... [+"))
        .unwrap_or_else(|| panic!("not one cut line: {:?}", head(&line)));
    assert_eq!(kept, "x".repeat(65_536));
    let taken = kept.len() + cut.parse::<usize>().expect("a count");
    assert!(took >= Duration::from_secs(2), "dropped after {took:?}");
    let most = (200 + 5 * (took.as_secs() as usize + 2)) * 1024;
    assert!(taken <= most, "{taken} bytes taken in {took:?}");
    assert_eq!(reader.read_line(), "◆ #2 left (flood)");
    let seen = chatd.collect_until(&format!("disconnect {flooder_peer} #2 flood (1 online)"));
    let dropped = dropped_bytes(&seen, &flooder_peer, 2);
    let written = writer.join().expect("the writer");
    assert!(dropped > 0);
    assert!(taken + dropped <= written);
    let told = told.join().expect("the flooder's reader");
    assert!(told.ends_with("◆ disconnected: flooding\n"), "{told:?}");
}

/// A member that sends more than its burst at once, then stops, is held back, not dropped: every
/// line is relayed, in order, spread over the time the rate takes (here 150 lines at 100 a second
/// after a burst of 50: about a second).
#[test]
fn a_member_over_its_burst_is_held_back_then_caught_up_not_dropped() {
    let args = [
        "--relay",
        "--max-rate",
        "100",
        "--burst",
        "50",
        "--flood-timeout",
        "5",
    ];
    let chatd = Chatd::spawn(&args);
    let mut reader = Client::connect(chatd.addr());
    assert_eq!(reader.read_line(), "◆ nobody else is online");
    let mut paster = Client::connect(chatd.addr());
    assert_eq!(reader.read_line(), "◆ #2 joined (2 online)");
    let paste: String = (0..150).map(|i| format!("pasted {i}\n")).collect();
    let started = Instant::now();
    paster.send(paste.as_bytes());
    for i in 0..150 {
        assert_eq!(reader.read_line(), format!("#2: pasted {i}"));
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "150 lines in {took:?}");
    // Still a member: the others hear it, and it hears them.
    paster.send_line("still here");
    assert_eq!(reader.read_line(), "#2: still here");
    reader.send_line("so am I");
    // Past its own join's lines (greeting, who) and its 150 lines' absence of echo.
    let heard = (0..4)
        .map(|_| paster.read_line())
        .find(|line| line.starts_with("#1: "));
    assert_eq!(heard.as_deref(), Some("#1: so am I"));
    assert_eq!(chatd.seen_count(" flood ("), 0);
}

/// A telnet client ends lines with a bare `CR` or `CR NUL` as well as `LF`: such lines are held
/// to the rate like any others. 150 lines after a burst of 50 at 100 a second take a second, even
/// when the telnet command that makes chatd take `CR` as a line end comes in the same packet
/// (counting `\n` alone let all 150 through at once).
#[test]
fn lines_ended_by_a_bare_cr_are_held_to_the_rate_too() {
    let args = ["--relay", "--max-rate", "100", "--burst", "50"];
    let chatd = Chatd::spawn(&args);
    let mut reader = Client::connect(chatd.addr());
    assert_eq!(reader.read_line(), "◆ nobody else is online");
    for ending in ["\r", "\r\0"] {
        let mut paster = Client::connect(chatd.addr());
        assert!(reader.read_line().ends_with(" joined (2 online)"));
        // IAC WONT ECHO: it speaks telnet from here on.
        let mut paste = vec![0xFF, 0xFC, 0x01];
        for i in 0..150 {
            paste.extend_from_slice(format!("pasted {i}{ending}").as_bytes());
        }
        let started = Instant::now();
        paster.send(&paste);
        for i in 0..150 {
            let line = reader.read_line();
            assert!(line.ends_with(&format!(": pasted {i}")), "{line:?}");
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{ending:?}: 150 lines in {took:?}"
        );
        drop(paster);
        assert!(reader.read_line().contains(" left ("));
    }
}

/// The operator's lines and the server's announcements are not limited: with `--max-rate 1
/// --burst 1`, 100 `/all` lines and 20 arrivals reach a member within the test's wait (at one a
/// second they would take minutes), the member held back over its own rate included.
#[test]
fn operator_lines_and_announcements_are_not_rate_limited() {
    let args = [
        "--relay",
        "--max-rate",
        "1",
        "--burst",
        "1",
        "--flood-timeout",
        "60",
    ];
    let mut chatd = Chatd::spawn(&args);
    let mut member = Client::connect(chatd.addr());
    assert_eq!(member.read_line(), "◆ nobody else is online");
    // Over its own rate: held back with lines waiting.
    member.send(b"one\ntwo\nthree\n");
    chatd.expect_report("#1: one");
    for i in 0..100 {
        chatd.send_console(&format!("/all notice {i}"));
    }
    let others: Vec<Client> = (0..20).map(|_| Client::connect(chatd.addr())).collect();
    let mut notices = 0;
    let mut joins = 0;
    let deadline = Instant::now() + WAIT;
    while notices < 100 || joins < 20 {
        assert!(
            Instant::now() < deadline,
            "{notices} notices, {joins} joins"
        );
        let line = member.read_line();
        if line.starts_with("◆ server: notice ") {
            assert_eq!(line, format!("◆ server: notice {notices}"));
            notices += 1;
        } else if line.contains(" joined (") {
            joins += 1;
        } else if !line.starts_with("◆ #") {
            panic!("unexpected {line:?}");
        }
    }
    drop(others);
}

/// Without `--relay` flood control is off by default (taking lines as fast as they come is the
/// job there), and `--max-rate 0` turns it off in the room: 2 000 lines at once are all heard at
/// once (at 20 a second they would take 90 s).
#[test]
fn flood_control_is_off_without_relay_and_with_max_rate_0() {
    let lines: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    for args in [&[][..], &["--relay", "--max-rate", "0"][..]] {
        let mut chatd = Chatd::spawn(args);
        let mut client = Client::connect(chatd.addr());
        client.send(lines.as_bytes());
        chatd.expect_report(&format!("{} #1: line 1999", client.peer()));
        assert_eq!(chatd.seen_count(" flood ("), 0);
    }
}

/// `--max-rate` applies without `--relay` when given: a client that keeps sending past it is
/// dropped `flood` after `--flood-timeout`, told why, and what it sent past the rate is counted,
/// not heard.
#[test]
fn max_rate_without_relay_drops_a_client_that_keeps_on() {
    let args = ["--max-rate", "10", "--burst", "10", "--flood-timeout", "1"];
    let mut chatd = Chatd::spawn(&args);
    let client = TcpStream::connect(chatd.addr()).expect("connect");
    let peer = client.local_addr().expect("local addr").to_string();
    let mut reader = BufReader::new(client.try_clone().expect("clone"));
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("greeting");
    let lines: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    (&client).write_all(lines.as_bytes()).expect("send");
    let seen = chatd.collect_until(&format!("disconnect {peer} #1 flood (0 online)"));
    let heard: Vec<&str> = seen
        .iter()
        .filter_map(|line| report_body(line).strip_prefix(&format!("message {peer} #1: ")))
        .collect();
    // The burst, then about 10 a second for the second it was held.
    assert!((10..100).contains(&heard.len()), "{} heard", heard.len());
    for (i, text) in heard.iter().enumerate() {
        assert_eq!(*text, format!("line {i}"));
    }
    let dropped = format!("dropped {peer} #1: ");
    assert!(
        seen.iter()
            .any(|line| report_body(line).starts_with(&dropped))
    );
    let mut farewell = String::new();
    reader.read_line(&mut farewell).expect("farewell");
    assert_eq!(farewell, "disconnected: flooding\n");
}

/// A member kicked while held back over its rate is heard out no faster than its rate: what waits
/// in its socket is not relayed but counted, once: the lines heard and the bytes reported dropped
/// add up to exactly what it sent.
#[test]
fn a_held_member_kicked_is_not_heard_past_its_rate_and_its_backlog_counted_once() {
    let args = [
        "--relay",
        "--max-rate",
        "1",
        "--burst",
        "2",
        "--flood-timeout",
        "60",
    ];
    let mut chatd = Chatd::spawn(&args);
    let mut held = Client::connect(chatd.addr());
    let peer = held.peer();
    let mut reader = Client::connect(chatd.addr());
    assert_eq!(reader.read_line(), "◆ 1 online: #1");
    let lines: String = (0..100).map(|i| format!("line {i}\n")).collect();
    held.send(lines.as_bytes());
    assert_eq!(reader.read_line(), "#1: line 0");
    assert_eq!(reader.read_line(), "#1: line 1");
    chatd.send_console("/kick 1");
    let seen = chatd.collect_until(&format!("disconnect {peer} #1 kicked (1 online)"));
    // At most one more line came back to the bucket meanwhile.
    let mut relayed = 2;
    loop {
        let line = reader.read_line();
        if line == "◆ #1 left (kicked)" {
            break;
        }
        assert_eq!(line, format!("#1: line {relayed}"));
        relayed += 1;
    }
    assert!(relayed <= 4, "{relayed} lines relayed");
    let heard: usize = (0..relayed).map(|i| format!("line {i}\n").len()).sum();
    let prefix = format!("dropped {peer} #1: ");
    let dropped: usize = seen
        .iter()
        .find_map(|line| report_body(line).strip_prefix(&prefix))
        .and_then(|rest| rest.strip_suffix(" bytes not heard"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `dropped` report in {seen:?}"));
    assert_eq!(heard + dropped, lines.len());
}

/// Reads what `stream` is sent until it closes, on a thread of its own.
fn read_all(stream: &TcpStream) -> thread::JoinHandle<String> {
    let mut inbox = stream.try_clone().expect("clone");
    thread::spawn(move || {
        let mut got = Vec::new();
        let _ = inbox.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    })
}

/// Writes `bytes` to `stream` as fast as it takes them, on a thread of its own, until done or
/// refused; the thread returns how many it wrote.
fn write_all(stream: &TcpStream, bytes: Vec<u8>) -> thread::JoinHandle<usize> {
    let mut outbox = stream.try_clone().expect("clone");
    thread::spawn(move || {
        let mut written = 0;
        while written < bytes.len() {
            match outbox.write(&bytes[written..]) {
                Ok(n) if n > 0 => written += n,
                _ => break,
            }
        }
        written
    })
}

/// The bytes reported `dropped` for client `#id` at `peer` in `seen`.
#[track_caller]
fn dropped_bytes(seen: &[String], peer: &str, id: usize) -> usize {
    let prefix = format!("dropped {peer} #{id}: ");
    seen.iter()
        .find_map(|line| report_body(line).strip_prefix(&prefix))
        .and_then(|rest| rest.strip_suffix(" bytes not heard"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `dropped` report for #{id} in {} reports", seen.len()))
}

/// The start of a long line, for a failure's message.
fn head(text: &str) -> String {
    text.chars().take(80).collect()
}

/// One long flood line: numbered, 64 KiB with its newline.
fn long_line(i: usize) -> String {
    format!("long {i:03} {}\n", "l".repeat(LONG_LINE_LEN - 10))
}

/// One flood line: numbered, 64 bytes with its newline.
fn flood_line(i: usize) -> String {
    format!("flood {i:07} {}\n", "f".repeat(FLOOD_LINE_LEN - 15))
}

const FLOOD_LINE_LEN: usize = 64;
/// 8 MB of flood lines.
const FLOOD_LINES: usize = 8_000_000 / FLOOD_LINE_LEN;
const POLITE_LINES_PER_S: f64 = 2000.0;
const LONG_LINE_LEN: usize = 64 * 1024;
/// The default burst, in lines.
const LONG_LINES: usize = 200;
const POLITE_BYTES_PER_S: f64 = 250_000.0;

/// The flooder was told it was dropped for flooding (what its reader thread read), and the polite
/// reader is still in the room and was never dropped `slow`.
#[track_caller]
fn flooder_told_and_reader_kept(
    told: thread::JoinHandle<String>,
    polite: &mut Client,
    chatd: &Chatd,
) {
    let told = told.join().expect("the flooder's reader");
    assert!(told.ends_with("◆ disconnected: flooding\n"), "{told:?}");
    polite.send_line("/who");
    assert_eq!(polite.read_line(), "◆ 1 online: #1");
    assert_eq!(chatd.seen_count(" slow ("), 0);
}
