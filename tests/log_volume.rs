//! Reports cannot silently fill the disk: the log file is rotated at `--log-max-size` (default
//! 1 GiB), keeping one older file, so reports take at most twice the cap on disk however fast a
//! client makes them.

mod common;

use std::fs;

use common::{Chatd, Client};

/// A client sending empty lines as fast as it can (each one a report of about 45 bytes) makes far
/// more than the cap: the file is moved to `.1` when the next write would pass it, cut only between
/// whole lines, and neither file ever passes the cap.
#[test]
fn the_log_file_is_rotated_at_its_cap_between_whole_lines() {
    let dir = std::env::temp_dir().join(format!("chatd-log-volume-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("chatd.log");
    let cap = 100_000;
    let mut chatd = Chatd::spawn(&[
        "--log-file",
        path.to_str().expect("utf-8 path"),
        "--log-max-size",
        &cap.to_string(),
    ]);
    let mut client = Client::connect(chatd.addr());
    // About 1 MB of reports: ten times the cap.
    client.send(&[b'\n'; 20_000]);
    client.send_line("the last line");
    chatd.expect_report("the last line");
    chatd.expect_report("reached --log-max-size (100000 bytes)");
    chatd.send_console("/quit");
    assert_eq!(chatd.wait_exit().code(), Some(0));

    let newest = fs::read_to_string(&path).expect("the log file");
    let older = fs::read_to_string(dir.join("chatd.log.1")).expect("the rotated file");
    for (name, text) in [("chatd.log", &newest), ("chatd.log.1", &older)] {
        assert!(text.len() <= cap, "{name} holds {} bytes", text.len());
        assert!(text.ends_with('\n'), "{name} ends in a cut line");
        assert!(
            text.lines()
                .all(|line| line.contains(" [INFO] ") || line.contains(" [WARN] ")),
            "{name} holds a cut line"
        );
    }
    assert!(older.len() > cap / 2, "the rotated file was nearly full");
    assert!(newest.contains("stopped"));
    assert!(newest.contains("the last line") || older.contains("the last line"));
    let _ = fs::remove_dir_all(&dir);
}
