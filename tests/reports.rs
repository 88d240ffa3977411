//! Where reports go and how they look: stdout without colour codes when it is a pipe, the same
//! lines appended to `--log-file` within the turn, and one client's flood never starving another.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::{Chatd, Client, WAIT};

/// Every report also lands in `--log-file`, appended after what the file already held, without
/// waiting for more traffic or for the server to exit.
#[test]
fn log_file_gets_every_report_appended() {
    let path = temp_path("log-file-appended");
    fs::write(&path, "an earlier run\n").expect("seed the log file");
    let mut chatd = Chatd::spawn(&["--log-file", path.to_str().expect("utf-8 path")]);
    let mut client = Client::connect(chatd.addr());
    client.send_line("written down");
    let line = chatd.expect_report("message ");
    // The server now idles in poll(); the line must already be in the file.
    wait_for_file_line(&path, &line);
    let text = fs::read_to_string(&path).expect("read the log file");
    assert!(text.starts_with("an earlier run\n"), "log file: {text}");
    assert!(text.contains("listening on "), "log file: {text}");
    assert!(
        text.contains(&format!("connect {} #1 (1 online)", client.peer())),
        "log file: {text}"
    );
    let _ = fs::remove_file(&path);
}

/// A log file that cannot be opened stops the server at start with one clear line.
#[test]
fn unopenable_log_file_is_one_clear_line() {
    let (code, stderr) = common::run_to_failure(&[
        "--listen",
        "127.0.0.1:0",
        "--log-file",
        "/nonexistent-dir/chatd.log",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.contains("cannot open log file /nonexistent-dir/chatd.log"),
        "stderr: {stderr}"
    );
}

/// Into a pipe, reports carry no colour codes or any other control character.
#[test]
fn piped_reports_have_no_colour_codes() {
    let mut chatd = Chatd::spawn(&[]);
    let mut client = Client::connect(chatd.addr());
    client.send_line("plain");
    let mut lines = chatd.collect_until("#1: plain");
    chatd.send_console("/nonsense");
    lines.extend(chatd.collect_until("console: unknown command"));
    for line in &lines {
        assert!(
            !line.chars().any(|c| c.is_control()),
            "control character in {line:?}"
        );
        assert!(line.contains("] "), "no logger prefix in {line:?}");
    }
}

/// A client that sends without pause cannot starve the others: a second client's line is
/// reported while the first one's flood is still being read.
#[test]
fn a_flooding_client_does_not_starve_the_others() {
    let mut chatd = Chatd::spawn(&[]);
    let addr = chatd.addr();
    let flood = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let chunk = "flood flood flood flood flood flood flood flood flood flood\n".repeat(1000);
        // Bounded: 60 MB at most, and stop once the server has closed us at the end of the test.
        for _ in 0..1000 {
            if stream.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"flood-done\n");
    });
    chatd.expect_report("#1: flood");
    let mut quiet = Client::connect(addr);
    quiet.send_line("ping");
    let seen = chatd.collect_until("#2: ping");
    assert!(
        !seen.iter().any(|line| line.contains("flood-done")),
        "the second client was heard only after the whole flood"
    );
    chatd.send_console("/kick 1");
    chatd.expect_report("#1 kicked");
    flood.join().expect("flood thread");
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("chatd-test-{name}-{}.log", std::process::id()))
}

/// Waits until `path` holds a line equal to `line`.
#[track_caller]
fn wait_for_file_line(path: &Path, line: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{line:?} never reached {}; it holds:\n{text}",
            path.display()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// `--log-level warn` keeps the warnings and the `listening on` line that scripts read to find the
/// port, and drops the INFO reports.
#[test]
fn listening_on_survives_a_quieter_log_level() {
    let mut chatd = Chatd::spawn(&["--log-level", "warn"]);
    let mut client = Client::connect(chatd.addr());
    client.send_line("not shown");
    chatd.send_console("/nonsense");
    chatd.expect_report("[WARN] console: ");
    assert_eq!(chatd.seen_count("listening on "), 1);
    assert_eq!(chatd.seen_count("[INFO] listening on "), 1);
    assert_eq!(chatd.seen_count("connect "), 0);
    assert_eq!(chatd.seen_count("not shown"), 0);
}

/// Counts of one are singular: `accepting at most 1 client`, `sent to all (1 client)`.
#[test]
fn one_client_is_singular() {
    let mut chatd = Chatd::spawn(&["--max-clients", "1"]);
    chatd.expect_body("accepting at most 1 client");
    let mut client = Client::connect(chatd.addr());
    chatd.send_console("/all hi");
    chatd.expect_body("sent to all (1 client)");
    assert_eq!(client.read_line(), "hi");
}
