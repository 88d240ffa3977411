//! The limits a client cannot push past (`--max-line`, `--max-queue`, `--idle-timeout`, the
//! open-files limit) and the log file going bad: each trips the way the README says, and the server
//! goes on serving everyone else.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::{Chatd, Client, report_body, with_listen};

/// A client that sends 100 MB without a newline costs the server at most `--max-line` of buffer:
/// one message with the first 65536 bytes and the count of the rest, and RSS stays small.
#[test]
fn a_100_mb_line_is_one_truncated_message_in_bounded_memory() {
    // A long line timeout, so that a pause of the sender on a busy machine cannot split the line.
    let mut chatd = Chatd::spawn(&["--line-timeout", "60000"]);
    let addr = chatd.addr();
    let rss_before = chatd.rss_bytes();
    let sender = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let chunk = vec![b'z'; 1 << 20];
        for _ in 0..100 {
            stream.write_all(&chunk).expect("send a megabyte");
        }
        stream.write_all(b"\nafter\n").expect("send the newline");
        stream
    });
    let line = chatd.expect_report("#1: zzz");
    let stream = sender.join().expect("sender thread");
    let peer = stream.local_addr().expect("local address");
    let dropped = 100 * (1 << 20) - 65536;
    let expected = format!(
        "message {peer} #1: {}... [+{dropped} bytes]",
        "z".repeat(65536)
    );
    assert!(
        report_body(&line) == expected,
        "the truncated message was {} bytes long",
        line.len()
    );
    chatd.expect_report("#1: after");
    let grown = chatd.rss_bytes().saturating_sub(rss_before);
    assert!(grown < 16 << 20, "RSS grew by {grown} bytes for one client");
}

/// A client that never reads while the operator floods it is dropped `slow` once its queue passes
/// `--max-queue`; another client is served throughout, and memory stays bounded.
#[test]
fn a_client_that_never_reads_is_dropped_slow() {
    let mut chatd = Chatd::spawn(&["--max-queue", "200000"]);
    let _sleeper = Client::connect_quiet(chatd.addr());
    chatd.expect_report("connect ");
    let mut other = Client::connect(chatd.addr());
    chatd.expect_report("#2 (2 online)");
    let text = "x".repeat(60_000);
    // Socket buffers take a few megabytes first; 500 lines are 30 MB, far past them and the cap.
    for _ in 0..500 {
        chatd.send_console(&format!("/to 1 {text}"));
    }
    chatd.expect_report("#1 slow (1 online)");
    chatd.send_console("/to 2 still there?");
    assert_eq!(other.read_line(), "still there?");
    let rss = chatd.rss_bytes();
    assert!(rss < 64 << 20, "RSS is {rss} bytes");
}

/// With `--idle-timeout`, a silent client is told and disconnected `timeout`, while a client that
/// keeps talking for longer than the timeout stays.
#[test]
fn idle_clients_time_out_and_talkers_stay() {
    let mut chatd = Chatd::spawn(&["--idle-timeout", "1"]);
    let mut talker = Client::connect(chatd.addr());
    chatd.expect_report("#1 (1 online)");
    let mut silent = Client::connect(chatd.addr());
    chatd.expect_report("#2 (2 online)");
    for i in 0..6 {
        // The talker's pace, not a wait: six lines 300 ms apart span 1.8 s, past the timeout.
        thread::sleep(Duration::from_millis(300));
        talker.send_line(&format!("line {i}"));
        chatd.expect_report(&format!("#1: line {i}"));
    }
    assert_eq!(silent.read_line(), "disconnected: idle for too long");
    assert_eq!(silent.read_to_end(), "");
    // The report may have come while the talker's lines were awaited.
    if chatd.seen_count("#2 timeout") == 0 {
        chatd.expect_report("#2 timeout");
    }
    assert_eq!(chatd.seen_count("#2 timeout (1 online)"), 1);
    talker.send_line("still here");
    chatd.expect_report("#1: still here");
    assert_eq!(chatd.seen_count("#1 timeout"), 0);
}

/// Out of descriptors, accept fails: one warning, no busy loop, existing clients keep chatting,
/// and the clients left waiting are accepted by themselves once descriptors free up.
#[test]
fn out_of_descriptors_warns_once_and_recovers() {
    let args = with_listen(&["--max-clients", "1000"]);
    let mut command = Chatd::command(&args);
    common::limit_open_files(&mut command, 40);
    let mut chatd = Chatd::spawn_command(command, &args);
    let addr = chatd.addr();
    // More clients than descriptors: the kernel completes their handshakes into the backlog.
    let mut clients: Vec<Client> = (0..50).map(|_| Client::connect_quiet(addr)).collect();
    let warning = chatd.expect_report("accept failed");
    assert!(warning.contains("Too many open files"), "{warning}");
    let accepted = chatd.seen_count("connect ");
    assert!(accepted > 10 && accepted < 50, "{accepted} accepted");

    // The loop is not spinning on the failing accept: a second of wall time costs little CPU.
    let cpu = chatd.cpu_time();
    thread::sleep(Duration::from_secs(1)); // A measuring window, not a wait for an event.
    let spent = chatd.cpu_time() - cpu;
    assert!(
        spent < Duration::from_millis(300),
        "{spent:?} of CPU in one idle second"
    );

    // Existing clients still chat.
    assert!(clients[0].read_line().contains("welcome"));
    clients[0].send_line("still served");
    chatd.expect_report("#1: still served");

    // Free descriptors: the waiting clients are accepted and greeted.
    let waiting = clients.split_off(accepted);
    clients.truncate(5);
    for mut client in waiting {
        assert!(client.read_line().contains("welcome"));
    }
    chatd.expect_report("accepting again");
    let warnings = chatd.seen_count("accept failed");
    assert_eq!(warnings, 1, "warned {warnings} times");
}

/// A log file that cannot be written (`/dev/full`) gets one clear warning on stdout, and the
/// server goes on reporting there.
#[test]
fn unwritable_log_file_warns_once_and_goes_on() {
    let mut chatd = Chatd::spawn(&["--log-file", "/dev/full"]);
    chatd.expect_report("cannot write log file /dev/full");
    for i in 0..3 {
        let mut client = Client::connect(chatd.addr());
        client.send_line("hello");
        chatd.expect_report(&format!("#{}: hello", i + 1));
    }
    assert_eq!(chatd.seen_count("cannot write log file"), 1);
}

/// When the log file's directory is removed mid-run, the server says so once and goes on.
#[test]
fn removed_log_directory_warns_and_goes_on() {
    let dir = std::env::temp_dir().join(format!("chatd-test-logdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("make a log directory");
    let path = dir.join("chatd.log");
    let mut chatd = Chatd::spawn(&["--log-file", path.to_str().expect("utf-8 path")]);
    let mut client = Client::connect(chatd.addr());
    chatd.expect_report("connect ");
    std::fs::remove_dir_all(&dir).expect("remove the log directory");
    // The server looks at the path at most once a second, when it has something to write.
    for i in 0.. {
        client.send_line(&format!("line {i}"));
        let line = chatd.expect(
            |l| l.contains(&format!("#1: line {i}")) || l.contains("is gone"),
            "the next line or the warning",
            common::WAIT,
        );
        if line.contains("is gone") {
            break;
        }
        assert!(i < 100, "no warning after {i} lines");
        thread::sleep(Duration::from_millis(100)); // The client's pace.
    }
    client.send_line("after the warning");
    chatd.expect_report("#1: after the warning");
}
