//! `--log-format json`: every report is one JSON object on a line, as docs/log-format.md lists
//! them. One test per event kind reads that kind back with serde_json from a session that makes
//! them all (shared by the tests, run once); `jq` reads a whole log of a busier session, and gives
//! back every client's text as the text format shows it.
//!
//! The kinds the shared session cannot make on demand each get a chatd of their own:
//! `unheard` (a kicked client's backlog past 4 MiB, sent while chatd is stopped),
//! `console_not_sent` (the operator's `/to` to a client that does not read), and
//! `accept_failed`, `metrics_accept_failed` and `accepting_again` (out of descriptors under a low
//! RLIMIT_NOFILE). `loop_failed` cannot be provoked: the unit tests in src/logger.rs check the
//! objects of the same code with serde_json. `stats` and `metrics_listening` are read back in
//! tests/metrics.rs.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{OnceLock, mpsc};
use std::thread;

use serde_json::Value;

use common::xorshift::XorShift;
use common::{Chatd, Client, WAIT};

/// What the shared session logged: every stdout line parsed, and the log file's lines.
struct Session {
    objects: Vec<Value>,
    file_lines: Vec<String>,
}

/// Runs the session once for all the tests: every event kind chatd can be made to report.
fn session() -> &'static Session {
    static SESSION: OnceLock<Session> = OnceLock::new();
    SESSION.get_or_init(run_session)
}

fn run_session() -> Session {
    let dir = temp_dir("session");
    let log = dir.join("chatd.log");
    let missing = dir.join("no-notify-socket");
    let log_arg = log.to_str().expect("utf-8 path");
    let deny = dir.join("deny");
    fs::write(&deny, "192.0.2.0/24\n").expect("the deny file");
    let args = [
        "--deny-file",
        deny.to_str().expect("utf-8 path"),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--log-file",
        log_arg,
        "--relay",
        "--max-clients",
        "2",
        "--line-timeout",
        "60000",
    ];
    let mut command = Chatd::command(&args);
    command.env("NOTIFY_SOCKET", &missing);
    let mut chatd = Chatd::spawn_command(command, &args);
    let event = |name: &str| format!("\"event\":\"{name}\"");

    chatd.send_console("anyone?");
    chatd.expect_report(&event("console_nobody_spoke"));
    chatd.send_console("/to 9 nobody");
    chatd.expect_report(&event("console_no_client"));
    chatd.send_console("/frobnicate");
    chatd.expect_report(&event("console_error"));
    chatd.send_console(&"x".repeat(70_000));
    chatd.expect_report(&event("console_too_long"));

    let mut alice = Client::connect(chatd.addr());
    chatd.expect_report(&event("connect"));
    alice.read_line(); // The greeting.
    alice.send_line("/nick alice");
    chatd.expect_report(&event("nick"));
    alice.send(b"say \"hi\" \\ \x1b[2J\tand \xff\n");
    chatd.expect_report(&event("message"));
    let mut bob = Client::connect(chatd.addr());
    chatd.expect_report("(2 online)");
    let _carol = Client::connect_quiet(chatd.addr());
    chatd.expect_report(&event("refused"));

    chatd.send_console("/to 1 hello alice");
    chatd.expect_report(&event("console_sent"));
    chatd.send_console("and welcome");
    chatd.expect_report(&event("console_replied"));
    chatd.send_console("/all hello all");
    chatd.expect_report(&event("console_sent_all"));
    chatd.send_console("/list");
    chatd.expect_report(&event("list_entry"));
    chatd.send_console("/help");
    chatd.expect_report(&event("help"));
    chatd.signal(libc::SIGUSR2);
    chatd.expect_report(&event("signal_ignored"));
    chatd.signal(libc::SIGUSR1);
    chatd.expect_report(&event("reopen_log"));
    chatd.send_console("/ban 10.9.0.0/16 5");
    chatd.expect_report(&event("banned"));
    chatd.send_console("/ban 10.8.0.0/16");
    chatd.expect_report(&event("banned"));
    chatd.send_console("/bans");
    chatd.expect_report(&event("bans"));
    chatd.expect_report("\"cidr\":\"10.8.0.0/16\"");
    chatd.send_console("/unban 10.9.0.0/16");
    chatd.expect_report(&event("unbanned"));
    chatd.send_console("/unban 10.9.0.0/16");
    chatd.expect_report(&event("console_no_ban"));
    chatd.signal(libc::SIGHUP);
    chatd.expect_report(&event("rules_reloaded"));
    fs::write(&deny, "192.0.2.0/33\n").expect("the deny file");
    chatd.signal(libc::SIGHUP);
    chatd.expect_report(&event("rules_not_reloaded"));

    // An unfinished line when the operator kicks its client: reported cut.
    bob.send(b"half a li");
    chatd.send_console("/kick 2");
    chatd.expect_report("\"cut\":true");
    chatd.expect_report("\"reason\":\"kicked\"");
    drop(alice); // With input unread: a reset.
    chatd.expect_report("\"online\":0");
    chatd.send_console("/quit");
    assert_eq!(chatd.wait_exit().code(), Some(0));

    let objects = chatd
        .seen()
        .iter()
        .map(|line| parse(line))
        .collect::<Vec<_>>();
    let file_lines = fs::read_to_string(&log)
        .expect("the log file")
        .lines()
        .map(str::to_owned)
        .collect();
    let _ = fs::remove_dir_all(&dir);
    Session {
        objects,
        file_lines,
    }
}

#[track_caller]
fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// The session's objects of one event kind, at least one; each has the fields every report has
/// (`ts` in RFC 3339 UTC, `level`, `event`, and `msg` but for `message`) and `fields`, with
/// numbers where a number belongs.
#[track_caller]
fn reports(kind: &str, fields: &[(&str, Type)]) -> Vec<&'static Value> {
    let found: Vec<&Value> = session()
        .objects
        .iter()
        .filter(|object| object["event"] == kind)
        .collect();
    assert!(!found.is_empty(), "no {kind:?} report");
    for object in &found {
        let ts = object["ts"].as_str().expect("ts");
        assert!(
            ts.len() == 24 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
            "{ts}"
        );
        assert!(
            matches!(object["level"].as_str(), Some("info" | "warn" | "error")),
            "{object}"
        );
        if kind != "message" || object.get("cut").is_some() {
            assert!(object["msg"].is_string(), "{object}");
        }
        for (field, ty) in fields {
            let value = &object[*field];
            let ok = match ty {
                Type::Number => value.is_u64(),
                Type::Text => value.is_string(),
                Type::Bool => value.is_boolean(),
            };
            assert!(ok, "{kind}: {field} should be {ty:?} in {object}");
        }
    }
    found
}

#[derive(Debug, Clone, Copy)]
enum Type {
    Number,
    Text,
    Bool,
}
use Type::{Bool, Number, Text};

/// `listening`: the address, which scripts read.
#[test]
fn event_listening() {
    let found = reports("listening", &[("addr", Text)]);
    assert!(
        found[0]["addr"]
            .as_str()
            .unwrap_or("")
            .starts_with("127.0.0.1:")
    );
}

#[test]
fn event_max_clients() {
    let found = reports("max_clients", &[("max", Number)]);
    assert_eq!(found[0]["max"], 2);
}

#[test]
fn event_notify_failed() {
    reports("notify_failed", &[("error", Text)]);
}

#[test]
fn event_connect() {
    let found = reports(
        "connect",
        &[
            ("id", Number),
            ("peer", Text),
            ("tls", Bool),
            ("online", Number),
        ],
    );
    assert_eq!(found[0]["tls"], false);
    assert_eq!(found[0]["id"], 1);
    assert_eq!(found[0]["online"], 1);
}

/// `message`: `text` is exactly what the text format shows (the client's bytes escaped), with
/// quotes, backslashes and tabs escaped for JSON on top.
#[test]
fn event_message() {
    let found = reports("message", &[("id", Number), ("peer", Text), ("text", Text)]);
    let sent = b"say \"hi\" \\ \x1b[2J\tand \xff";
    assert!(
        found
            .iter()
            .any(|m| m["text"] == *chatd::escape(sent) && m["id"] == 1),
        "{found:?}"
    );
    let cut = found.iter().find(|m| m["cut"] == true).expect("a cut line");
    assert_eq!(cut["text"], "half a li");
    assert_eq!(cut["id"], 2);
}

/// In the room, a member's `/nick` (`/who`, `/msg`, `/help`) is a `command`, with the whole line.
#[test]
fn event_command() {
    let found = reports(
        "command",
        &[
            ("id", Number),
            ("peer", Text),
            ("text", Text),
            ("dropped", Number),
        ],
    );
    assert_eq!(found[0]["text"], "/nick alice");
    assert_eq!(found[0]["id"], 1);
    assert_eq!(
        found[0]["msg"].as_str().map(|m| m.starts_with("command ")),
        Some(true)
    );
    // It is not a message too.
    let messages = reports("message", &[("text", Text)]);
    assert!(
        messages.iter().all(|m| m["text"] != "/nick alice"),
        "{messages:?}"
    );
}

#[test]
fn event_nick() {
    let found = reports("nick", &[("id", Number), ("old", Text), ("new", Text)]);
    assert_eq!(found[0]["new"], "alice");
}

#[test]
fn event_refused() {
    let found = reports("refused", &[("peer", Text), ("reason", Text)]);
    assert_eq!(found[0]["reason"], "server full");
}

/// `/ban`: the block, its minutes (only for a timed ban) and how many it kicked.
#[test]
fn event_banned() {
    let found = reports("banned", &[("cidr", Text), ("kicked", Number)]);
    assert_eq!(found[0]["cidr"], "10.9.0.0/16");
    assert_eq!(found[0]["minutes"], 5);
    assert!(found[1].get("minutes").is_none(), "{}", found[1]);
}

/// `/bans`: a head line with the count, then one object per ban; `left_secs` only for a timed
/// one.
#[test]
fn event_bans_and_ban_entry() {
    assert_eq!(reports("bans", &[("count", Number)])[0]["count"], 2);
    let found = reports("ban_entry", &[("cidr", Text)]);
    assert!(found[0]["left_secs"].as_u64().is_some_and(|s| s <= 300));
    assert!(found[1].get("left_secs").is_none(), "{}", found[1]);
}

#[test]
fn event_unbanned_and_console_no_ban() {
    assert_eq!(
        reports("unbanned", &[("cidr", Text)])[0]["cidr"],
        "10.9.0.0/16"
    );
    assert_eq!(
        reports("console_no_ban", &[("cidr", Text)])[0]["cidr"],
        "10.9.0.0/16"
    );
}

/// SIGHUP, headless: the rule files read again, with the counts; or the error, the old rules kept.
#[test]
fn event_rules_reloaded_and_rules_not_reloaded() {
    let found = reports("rules_reloaded", &[("allow", Number), ("deny", Number)]);
    assert_eq!(found[0]["deny"], 1);
    let found = reports("rules_not_reloaded", &[("error", Text)]);
    let error = found[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("deny:1: bad entry \"192.0.2.0/33\""),
        "{error}"
    );
}

#[test]
fn event_disconnect() {
    let found = reports(
        "disconnect",
        &[
            ("id", Number),
            ("peer", Text),
            ("reason", Text),
            ("online", Number),
        ],
    );
    let reasons: Vec<&str> = found.iter().filter_map(|d| d["reason"].as_str()).collect();
    assert_eq!(reasons, ["kicked", "reset"]);
}

#[test]
fn event_console_sent() {
    reports("console_sent", &[("id", Number), ("peer", Text)]);
}

#[test]
fn event_console_replied() {
    reports("console_replied", &[("id", Number), ("peer", Text)]);
}

#[test]
fn event_console_sent_all() {
    let found = reports("console_sent_all", &[("count", Number)]);
    assert_eq!(found[0]["count"], 2);
}

#[test]
fn event_console_error() {
    let found = reports("console_error", &[("error", Text)]);
    assert_eq!(found[0]["level"], "warn");
}

#[test]
fn event_console_too_long() {
    reports("console_too_long", &[("limit", Number)]);
}

#[test]
fn event_console_no_client() {
    let found = reports("console_no_client", &[("id", Number)]);
    assert_eq!(found[0]["id"], 9);
}

#[test]
fn event_console_nobody_spoke() {
    reports("console_nobody_spoke", &[]);
}

/// `/list`: a `list` object with the count, then one `list_entry` per client.
#[test]
fn event_list() {
    let found = reports("list", &[("online", Number)]);
    assert_eq!(found[0]["online"], 2);
    let entries = reports(
        "list_entry",
        &[
            ("id", Number),
            ("peer", Text),
            ("name", Text),
            ("age_secs", Number),
            ("lines_in", Number),
            ("lines_out", Number),
        ],
    );
    assert_eq!(entries.len(), 2);
    // The session is a room: each entry names its client.
    assert_eq!(entries[0]["name"], "alice");
    assert_eq!(entries[1]["name"], "#2");
}

#[test]
fn event_help() {
    let found = reports("help", &[]);
    assert!(found.len() > 5);
}

#[test]
fn event_signal_ignored() {
    let found = reports("signal_ignored", &[("signal", Text)]);
    assert_eq!(found[0]["signal"], "SIGUSR2");
}

#[test]
fn event_reopen_log() {
    let found = reports("reopen_log", &[("cause", Text), ("reopened", Bool)]);
    assert_eq!(found[0]["reopened"], true);
}

#[test]
fn event_shutting_down_and_stopped() {
    let found = reports("shutting_down", &[("cause", Text)]);
    assert_eq!(found[0]["cause"], "/quit");
    reports("stopped", &[]);
}

/// Every kind above is in the schema, and the session made no kind the schema does not list.
#[test]
fn every_event_kind_is_documented() {
    let doc = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/log-format.md"))
        .expect("docs/log-format.md");
    let mut kinds = BTreeMap::new();
    for object in &session().objects {
        let kind = object["event"].as_str().expect("event").to_owned();
        *kinds.entry(kind).or_insert(0) += 1;
    }
    for kind in kinds.keys() {
        assert!(
            doc.contains(&format!("`{kind}`")),
            "{kind} is not in docs/log-format.md"
        );
    }
}

/// The log file holds the same objects as stdout, in the same order.
#[test]
fn the_log_file_gets_the_same_objects() {
    let session = session();
    let from_file: Vec<Value> = session.file_lines.iter().map(|l| parse(l)).collect();
    let events =
        |objects: &[Value]| -> Vec<Value> { objects.iter().map(|o| o["event"].clone()).collect() };
    assert_eq!(events(&from_file), events(&session.objects));
}

/// A console that closes is one object too, and so is a log file that cannot be written.
#[test]
fn event_console_closed_and_log_file_trouble() {
    let mut chatd = Chatd::spawn(&["--log-format", "json", "--log-file", "/dev/full"]);
    // The first turn's write (the `listening` line) already fails.
    let trouble = parse(&chatd.expect_report("\"event\":\"log_file_trouble\""));
    assert_eq!(trouble["level"], "warn");
    assert!(trouble["msg"].is_string());
    chatd.close_console();
    let closed = parse(&chatd.expect_report("\"event\":\"console_closed\""));
    assert_eq!(closed["level"], "info");
    chatd.signal(libc::SIGTERM);
    assert_eq!(chatd.wait_exit().code(), Some(0));
}

/// `--log-time none`: no `ts` (the journal stamps lines itself); `clock` in text keeps the
/// `HH:MM:SS` of a terminal.
#[test]
fn log_time_none_and_clock() {
    let mut chatd = Chatd::spawn(&["--log-format", "json", "--log-time", "none"]);
    let client = Client::connect(chatd.addr());
    let line = chatd.expect_report("\"event\":\"connect\"");
    assert!(
        line.starts_with("{\"level\":\"info\",\"event\":\"connect\","),
        "{line}"
    );
    assert!(parse(&line).get("ts").is_none(), "{line}");
    drop(client);

    let mut chatd = Chatd::spawn(&["--log-time", "none"]);
    let line = chatd.expect_report("accepting at most");
    assert!(line.starts_with("[INFO] accepting at most"), "{line}");
}

/// The log file's default time is RFC 3339 with the date; stdout alone keeps `HH:MM:SS`.
#[test]
fn the_log_file_defaults_to_rfc3339_and_stdout_to_the_clock() {
    let mut chatd = Chatd::spawn(&[]);
    let line = chatd.expect_report("accepting at most");
    assert_eq!(line.find(" [INFO] "), Some("HH:MM:SS".len()), "{line}");
    drop(chatd);

    let dir = temp_dir("rfc3339");
    let log = dir.join("chatd.log");
    let mut chatd = Chatd::spawn(&["--log-file", log.to_str().expect("utf-8 path")]);
    chatd.send_console("/quit");
    assert_eq!(chatd.wait_exit().code(), Some(0));
    let text = fs::read_to_string(&log).expect("the log file");
    for line in text.lines() {
        let (stamp, _) = line.split_once(" [").expect("a stamp");
        assert!(
            stamp.len() == 24 && stamp.as_bytes()[10] == b'T' && stamp.ends_with('Z'),
            "{line}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

/// `jq` (the Debian package) reads a whole log of a busy room: several clients sending random
/// bytes (every control character, invalid UTF-8, quotes, backslashes), joining and leaving; and
/// the texts it gives back are the text format's, line for line.
#[test]
fn jq_reads_a_whole_log() {
    if Command::new("jq").arg("--version").output().is_err() {
        panic!("jq is not installed (apt-get install jq; .ci/run does)");
    }
    let dir = temp_dir("jq");
    let log = dir.join("chatd.log");
    let log_arg = log.to_str().expect("utf-8 path");
    let mut chatd = Chatd::spawn(&["--log-format", "json", "--log-file", log_arg, "--relay"]);
    let mut rng = XorShift(12);
    let mut sent = Vec::new();
    let mut clients: Vec<Client> = Vec::new();
    for round in 0..20 {
        let mut client = Client::connect(chatd.addr());
        client.read_line();
        for _ in 0..50 {
            let len = (rng.next() % 200) as usize;
            let mut line: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // No line breaks, no room command (a line starting with `/`), and no 0xFF, which
            // starts telnet commands (tests/telnet.rs).
            line.retain(|&b| b != b'\n' && b != b'\r' && b != 0xff);
            if line.first() == Some(&b'/') {
                line[0] = b'.';
            }
            line.push(b'\n');
            client.send(&line);
            line.pop();
            sent.push(line);
        }
        clients.push(client);
        if round % 3 == 2 {
            // One leaves, once all it sent is heard (its socket is dropped with input unread).
            let mut leaving = clients.remove(0);
            let bye = format!("bye from round {round}");
            leaving.send_line(&bye);
            chatd.expect_report(&bye);
            sent.push(bye.into_bytes());
        }
    }
    let last = format!("last line {}", sent.len());
    clients[0].send_line(&last);
    sent.push(last.clone().into_bytes());
    chatd.expect_report(&last);
    chatd.send_console("/list");
    chatd.send_console("/quit");
    assert_eq!(chatd.wait_exit().code(), Some(0));

    let all = Command::new("jq")
        .args(["-c", "."])
        .arg(&log)
        .output()
        .expect("jq");
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let objects = String::from_utf8_lossy(&all.stdout).lines().count();
    let lines = fs::read_to_string(&log).expect("the log").lines().count();
    assert_eq!(objects, lines, "jq read every line as one object");

    let texts = Command::new("jq")
        .args(["-r", r#"select(.event == "message") | .text"#])
        .arg(&log)
        .output()
        .expect("jq");
    assert!(texts.status.success());
    let texts = String::from_utf8(texts.stdout).expect("jq prints UTF-8");
    let mut got: Vec<&str> = texts.lines().collect();
    let mut want: Vec<String> = sent.iter().map(|l| chatd::escape(l).into_owned()).collect();
    // Clients send at once; each one's lines keep their order, not the lines of all.
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    let _ = fs::remove_dir_all(&dir);
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatd-json-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Waits for chatd's next report of `kind` and gives it parsed, with the fields every report has.
#[track_caller]
fn expect_event(chatd: &mut Chatd, kind: &str) -> Value {
    let line = chatd.expect_report(&format!("\"event\":\"{kind}\""));
    let object = parse(&line);
    assert_eq!(object["event"], kind, "{object}");
    let ts = object["ts"].as_str().expect("ts");
    assert!(ts.len() == 24 && ts.ends_with('Z'), "{ts}");
    assert!(object["msg"].is_string(), "{object}");
    object
}

/// `unheard`: a client kicked with a 6 MB backlog (written while chatd was stopped, as
/// tests/hearing.rs does) is heard out to 4 MiB; the rest is one `unheard` object with the
/// client's id and peer and a byte count that accounts for every byte past what was heard.
#[test]
fn event_unheard() {
    let args = ["--listen", "127.0.0.1:0", "--log-format", "json"];
    let mut chatd = Chatd::spawn(&args);
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_send_buffer_size(8 << 20).expect("SO_SNDBUF");
    socket.connect(&chatd.addr().into()).expect("connect");
    let client = Client::from_stream(socket.into());
    let connect = expect_event(&mut chatd, "connect");
    assert_eq!(connect["id"], 1);
    let line = format!("{}\n", "y".repeat(99));
    let sent = line.repeat(60_000).into_bytes();
    let total = sent.len();
    chatd.signal(libc::SIGSTOP);
    let mut writer = client.stream().try_clone().expect("clone");
    let (done, wait) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(writer.write_all(&sent));
    });
    match wait.recv_timeout(WAIT) {
        Ok(result) => result.expect("write the backlog"),
        Err(_) => panic!("the kernel would not buffer the backlog while chatd was stopped"),
    }
    chatd.send_console("/kick 1");
    chatd.signal(libc::SIGCONT);
    let unheard = expect_event(&mut chatd, "unheard");
    assert_eq!(unheard["level"], "info");
    assert_eq!(unheard["id"], 1);
    assert_eq!(unheard["peer"], client.peer());
    let bytes = unheard["bytes"].as_u64().expect("bytes is a number");
    let disconnect = expect_event(&mut chatd, "disconnect");
    assert_eq!(disconnect["reason"], "kicked");
    // Everything heard (whole lines and the one cut at the cap) plus `bytes` is what was sent.
    let heard: u64 = chatd
        .seen()
        .iter()
        .map(|line| parse(line))
        .filter(|object| object["event"] == "message")
        .map(|object| {
            let text = object["text"].as_str().expect("text").len() as u64;
            if object.get("cut").is_some() {
                text
            } else {
                text + 1
            }
        })
        .sum();
    assert_eq!(heard + bytes, total as u64, "{unheard}");
}

/// `console_not_sent`: the operator's `/to` lines to a client that reads nothing pile up past
/// `--max-queue`; the line that does not fit is not sent, reported with the id and `slow`, and
/// the client is dropped.
#[test]
fn event_console_not_sent() {
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--max-queue",
        "4096",
    ];
    let mut chatd = Chatd::spawn(&args);
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&chatd.addr().into()).expect("connect");
    let _client = Client::from_stream(socket.into()); // Never reads.
    expect_event(&mut chatd, "connect");
    // Far more than the kernel buffers between the two ends: the queue must overflow.
    let text = "z".repeat(30_000);
    for _ in 0..400 {
        chatd.send_console(&format!("/to 1 {text}"));
    }
    let not_sent = expect_event(&mut chatd, "console_not_sent");
    assert_eq!(not_sent["level"], "warn");
    assert_eq!(not_sent["id"], 1);
    assert_eq!(not_sent["reason"], "slow");
    let disconnect = expect_event(&mut chatd, "disconnect");
    assert_eq!(disconnect["reason"], "slow");
}

/// `accept_failed`, `metrics_accept_failed` and `accepting_again`: under RLIMIT_NOFILE 40, more
/// clients than descriptors make the chat listener's accept fail (one warning with the error),
/// a scrape then fails the metrics listener's accept too, and once the clients go chatd says it
/// accepts again.
#[test]
fn events_accept_failed_metrics_accept_failed_and_accepting_again() {
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--max-clients",
        "1000",
        "--metrics",
        "127.0.0.1:0",
    ];
    let mut command = Chatd::command(&args);
    common::limit_open_files(&mut command, 40);
    let mut chatd = Chatd::spawn_command(command, &args);
    let metrics = expect_event(&mut chatd, "metrics_listening");
    let metrics: SocketAddr = metrics["addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("an address");
    let addr = chatd.addr();
    let clients: Vec<Client> = (0..50).map(|_| Client::connect_quiet(addr)).collect();
    let failed = expect_event(&mut chatd, "accept_failed");
    assert_eq!(failed["level"], "warn");
    let error = failed["error"].as_str().expect("error is text");
    assert!(error.contains("Too many open files"), "{failed}");

    let _scrape = TcpStream::connect(metrics).expect("connect to metrics");
    let failed = expect_event(&mut chatd, "metrics_accept_failed");
    assert_eq!(failed["level"], "warn");
    let error = failed["error"].as_str().expect("error is text");
    assert!(error.contains("Too many open files"), "{failed}");

    drop(clients);
    let again = expect_event(&mut chatd, "accepting_again");
    assert_eq!(again["level"], "info");
    assert_eq!(chatd.seen_count("\"event\":\"accept_failed\""), 1);
}
