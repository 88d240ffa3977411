//! The operator's console, typed into the child's stdin: `/to`, `@id`, `/all`, bare replies, `//`,
//! `/list`, `/kick` and `/help`, the one-line warnings for mistakes, and serving on after stdin ends.

mod common;

use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::{Chatd, Client, WAIT, report_body, with_listen};

/// `/to <id> <text>` sends the text as a line to that client only, and the console confirms it
/// with the client's id and address.
#[test]
fn to_sends_a_line_to_one_client() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(2);
    chatd.send_console("/to 2 hello there");
    chatd.expect_body(&format!("sent to #2 {}", clients[1].peer()));
    assert_eq!(clients[1].read_line(), "hello there");
    // #1 got nothing: the next line it reads is the next one sent to it.
    assert_served(&mut chatd, &mut clients[0], 1);
}

/// `@<id> <text>` is the short form of `/to`; the text is sent as typed, inner spaces and all.
#[test]
fn at_id_sends_a_line_to_one_client() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(2);
    chatd.send_console("@1 hi  you, #2 too");
    chatd.expect_body(&format!("sent to #1 {}", clients[0].peer()));
    assert_eq!(clients[0].read_line(), "hi  you, #2 too");
    assert_served(&mut chatd, &mut clients[1], 2);
}

/// An id may be written `#7` as well as `7`, as `/list` and the reports show it, in `/to`, `@` and
/// `/kick`.
#[test]
fn ids_may_be_written_with_a_hash() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(2);
    let peer = clients[0].peer();
    chatd.send_console("/to #1 one");
    chatd.expect_body(&format!("sent to #1 {peer}"));
    assert_eq!(clients[0].read_line(), "one");
    chatd.send_console("@#1 two");
    chatd.expect_body(&format!("sent to #1 {peer}"));
    assert_eq!(clients[0].read_line(), "two");
    chatd.send_console("/kick #1");
    chatd.expect_body(&format!("disconnect {peer} #1 kicked (1 online)"));
    assert_eq!(clients[0].read_line(), KICKED);
    assert_served(&mut chatd, &mut clients[1], 2);
}

/// `/all <text>` sends the line to every connected client and says how many it went to.
#[test]
fn all_sends_to_every_client() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(3);
    chatd.send_console("/all hello everyone");
    chatd.expect_body("sent to all (3 clients)");
    for client in &mut clients {
        assert_eq!(client.read_line(), "hello everyone");
    }
}

/// A line not starting with `/` or `@` goes to the client whose message was reported last, and the
/// target moves when another client speaks.
#[test]
fn bare_line_replies_to_the_last_speaker() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(2);
    let (peer1, peer2) = (clients[0].peer(), clients[1].peer());

    clients[0].send_line("question from one");
    chatd.expect_body(&format!("message {peer1} #1: question from one"));
    chatd.send_console("answer for one");
    chatd.expect_body(&format!("replied to #1 {peer1} (last to speak)"));
    assert_eq!(clients[0].read_line(), "answer for one");

    clients[1].send_line("question from two");
    chatd.expect_body(&format!("message {peer2} #2: question from two"));
    chatd.send_console("answer for two");
    chatd.expect_body(&format!("replied to #2 {peer2} (last to speak)"));
    assert_eq!(clients[1].read_line(), "answer for two");

    // #1 did not get the second answer: the next line it reads is the next one sent to it.
    assert_served(&mut chatd, &mut clients[0], 1);
}

/// `//text` replies to the last speaker with a line starting with a single `/`, so the operator can
/// send text that would otherwise read as a command.
#[test]
fn double_slash_replies_with_a_line_starting_with_slash() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(1);
    let peer = clients[0].peer();
    clients[0].send_line("where is the password file?");
    chatd.expect_body(&format!("message {peer} #1: where is the password file?"));
    chatd.send_console("//etc/passwd");
    chatd.expect_body(&format!("replied to #1 {peer} (last to speak)"));
    assert_eq!(clients[0].read_line(), "/etc/passwd");
    chatd.send_console("//quit");
    chatd.expect_body(&format!("replied to #1 {peer} (last to speak)"));
    assert_eq!(clients[0].read_line(), "/quit");
    assert_served(&mut chatd, &mut clients[0], 1);
}

/// `/list` prints how many are online, then one line per client with its id, address, age, the
/// messages it sent and the lines queued to it (the greeting included), and nothing more.
#[test]
fn list_shows_each_client_with_its_counts() {
    let mut chatd = spawn();
    chatd.send_console("/list");
    assert_eq!(next_report(&mut chatd), "0 online");
    assert_nothing_more(&mut chatd);

    let mut clients = chatd.connect_clients(2);
    let (peer1, peer2) = (clients[0].peer(), clients[1].peer());
    for text in ["one", "two"] {
        clients[0].send_line(text);
        chatd.expect_body(&format!("message {peer1} #1: {text}"));
    }
    chatd.send_console("/to 1 noted");
    chatd.expect_body(&format!("sent to #1 {peer1}"));
    // Read, or closing it with the line unread would make the kernel reset the connection.
    assert_eq!(clients[0].read_line(), "noted");

    chatd.send_console("/list");
    assert_eq!(next_report(&mut chatd), "2 online");
    let mut entries = [next_report(&mut chatd), next_report(&mut chatd)];
    assert_nothing_more(&mut chatd);
    entries.sort();
    assert_list_entry(&entries[0], &format!("#1 {peer1}"), "2 in, 2 out");
    assert_list_entry(&entries[1], &format!("#2 {peer2}"), "0 in, 1 out");

    drop(clients.remove(0));
    chatd.expect_body(&format!("disconnect {peer1} #1 closed (1 online)"));
    chatd.send_console("/list");
    assert_eq!(next_report(&mut chatd), "1 online");
    let entry = next_report(&mut chatd);
    assert_list_entry(&entry, &format!("#2 {peer2}"), "0 in, 1 out");
    assert_nothing_more(&mut chatd);
}

/// `/kick <id>` tells the client it was disconnected by the operator, closes it, and reports the
/// disconnect as `kicked`; the other clients are not disturbed.
#[test]
fn kick_disconnects_a_client_with_a_notice() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(2);
    let peer = clients[0].peer();
    chatd.send_console("/kick 1");
    assert_eq!(clients[0].read_line(), KICKED);
    assert_eq!(clients[0].read_to_end(), "");
    chatd.expect_body(&format!("disconnect {peer} #1 kicked (1 online)"));
    assert_served(&mut chatd, &mut clients[1], 2);
}

/// `/help` prints `commands:` and one line for each command, and nothing more.
#[test]
fn help_lists_every_command() {
    let mut chatd = spawn();
    chatd.send_console("/help");
    assert_eq!(next_report(&mut chatd), "commands:");
    let lines: Vec<String> = (0..HELP_SYNTAX.len())
        .map(|_| next_report(&mut chatd))
        .collect();
    assert_nothing_more(&mut chatd);
    for syntax in HELP_SYNTAX {
        let naming: Vec<&String> = lines
            .iter()
            .filter(|line| line.trim_start().starts_with(syntax))
            .collect();
        assert_eq!(
            naming.len(),
            1,
            "one help line should start with {syntax:?}: {lines:#?}"
        );
    }
    assert!(lines.iter().any(|line| line.contains("@<id> <text>")));
    assert!(lines.iter().any(|line| line.contains("//text")));
}

/// An unknown command prints one warning naming it and pointing at `/help`, and changes nothing.
#[test]
fn unknown_command_prints_one_warning_and_changes_nothing() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(1);
    for (line, name) in [
        ("/foo", "/foo"),
        ("/foo bar baz", "/foo"),
        ("/TO 1 hi", "/TO"),
        ("/quitnow", "/quitnow"),
        ("/", "/"),
    ] {
        assert_mistake(
            &mut chatd,
            line,
            &format!("console: unknown command {name} (try /help)"),
        );
    }
    assert_served(&mut chatd, &mut clients[0], 1);
}

/// A command with a missing or malformed id, or without its text, prints one usage warning for
/// that command, and changes nothing: nothing is sent, nobody is kicked.
#[test]
fn bad_usage_prints_one_warning_and_changes_nothing() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(1);
    for (line, usage) in [
        ("/to", "/to <id> <text>"),
        ("/to x hi", "/to <id> <text>"),
        ("/to -1 hi", "/to <id> <text>"),
        ("/to 1", "/to <id> <text>"),
        ("/to 1   ", "/to <id> <text>"),
        ("@1", "@<id> <text>"),
        ("@ hi", "@<id> <text>"),
        ("@one hi", "@<id> <text>"),
        ("/kick", "/kick <id>"),
        ("/kick one", "/kick <id>"),
        ("/kick 1 2", "/kick <id>"),
        ("/all", "/all <text>"),
        ("/all    ", "/all <text>"),
    ] {
        assert_mistake(&mut chatd, line, &format!("console: usage: {usage}"));
    }
    assert_served(&mut chatd, &mut clients[0], 1);
}

/// An id nobody has, or one whose client has left (ids are never reused), prints one warning
/// pointing at `/list`, and changes nothing.
#[test]
fn unknown_id_prints_one_warning_and_changes_nothing() {
    let mut chatd = spawn();
    let gone = Client::connect(chatd.addr());
    let gone_peer = gone.peer();
    chatd.expect_body(&format!("connect {gone_peer} #1 (1 online)"));
    drop(gone);
    chatd.expect_body(&format!("disconnect {gone_peer} #1 closed (0 online)"));
    let mut client = Client::connect(chatd.addr());
    chatd.expect_body(&format!("connect {} #2 (1 online)", client.peer()));

    for (line, id) in [
        ("/to 9 hi", 9),
        ("/to #9 hi", 9),
        ("@9 hi", 9),
        ("/kick 9", 9),
        ("/to 1 hi", 1),
        ("/kick 1", 1),
    ] {
        assert_mistake(
            &mut chatd,
            line,
            &format!("console: no client #{id} is connected (try /list)"),
        );
    }
    assert_served(&mut chatd, &mut client, 2);
}

/// A bare reply (or `//` reply) before any client has spoken prints one warning suggesting `/to`
/// or `/all`, and sends nothing.
#[test]
fn reply_before_anyone_spoke_prints_one_warning() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(1);
    for line in ["hello?", "//etc"] {
        chatd.send_console(line);
        let report = next_line(&mut chatd);
        assert!(report.contains("[WARN] "), "after {line:?}: {report:?}");
        assert!(
            report_body(&report).starts_with("console: no client has spoken yet; "),
            "after {line:?}: {report:?}"
        );
    }
    assert_served(&mut chatd, &mut clients[0], 1);
}

/// A bare reply after the last speaker has left prints one warning naming it, and is not sent to
/// anyone else.
#[test]
fn reply_after_the_last_speaker_left_prints_one_warning() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(2);
    let peer = clients[0].peer();
    clients[0].send_line("exit");
    assert_eq!(clients[0].read_line(), "goodbye");
    chatd.expect_body(&format!("disconnect {peer} #1 exit (1 online)"));
    assert_mistake(
        &mut chatd,
        "are you still there?",
        "console: no client #1 is connected (try /list)",
    );
    assert_served(&mut chatd, &mut clients[1], 2);
}

/// Blank console lines, empty or only whitespace, print nothing and send nothing.
#[test]
fn blank_console_lines_do_nothing() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(1);
    clients[0].send_line("hi");
    chatd.expect_body(&format!("message {} #1: hi", clients[0].peer()));
    for line in ["", "   ", "\t", " \t "] {
        chatd.send_console(line);
    }
    assert_nothing_more(&mut chatd);
    assert_served(&mut chatd, &mut clients[0], 1);
}

/// A console line just under the console's 64 KiB limit is sent whole, as one line.
#[test]
fn long_console_line_is_sent_whole() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(1);
    let text = "y".repeat(LONG_LINE);
    chatd.send_console(&format!("/to 1 {text}"));
    chatd.expect_body(&format!("sent to #1 {}", clients[0].peer()));
    assert_eq!(clients[0].read_line(), text);
    assert_served(&mut chatd, &mut clients[0], 1);
}

/// A console line past the console's 64 KiB limit never spills into another client's
/// conversation: whatever becomes of the line typed for #1, #2 (who spoke last, so the target of a
/// bare reply) gets none of it.
#[test]
fn overlong_console_line_is_not_sent_to_another_client() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(2);
    let peer2 = clients[1].peer();
    clients[1].send_line("I spoke last");
    chatd.expect_body(&format!("message {peer2} #2: I spoke last"));
    let overlong = format!("/to 1 {} meant for #1 only", "x".repeat(MAX_CONSOLE_LINE));
    chatd.send_console(&overlong);
    chatd.send_console("/to 2 probe for #2");
    chatd.expect_body(&format!("sent to #2 {peer2}"));
    assert_eq!(
        clients[1].read_line(),
        "probe for #2",
        "#2 was sent part of a line typed for #1"
    );
}

/// With stdin at end of file from the start, chatd says the console is closed and how to stop it,
/// and goes on serving: a client connects, talks and leaves.
#[test]
fn stdin_at_eof_reports_console_closed_and_keeps_serving() {
    let mut chatd = Chatd::spawn_with(&with_listen(&[]), Stdio::null());
    chatd.expect_body(CONSOLE_CLOSED);
    assert_chat_works(&mut chatd, 1);
}

/// With stdin at end of file, chatd waits for clients without spinning.
#[test]
fn stdin_at_eof_does_not_spin() {
    let mut chatd = Chatd::spawn_with(&with_listen(&[]), Stdio::null());
    chatd.expect_body(CONSOLE_CLOSED);
    let client = Client::connect(chatd.addr());
    chatd.expect_body(&format!("connect {} #1 (1 online)", client.peer()));
    assert_idle(&chatd);
}

/// Closing stdin while clients are connected reports the console closed and changes nothing for
/// the clients: the connected one and a new one are both served.
#[test]
fn closing_the_console_mid_run_keeps_serving() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(1);
    assert_served(&mut chatd, &mut clients[0], 1);
    chatd.close_console();
    chatd.expect_body(CONSOLE_CLOSED);
    let peer = clients[0].peer();
    clients[0].send_line("still here after the console closed");
    chatd.expect_body(&format!(
        "message {peer} #1: still here after the console closed"
    ));
    assert_chat_works(&mut chatd, 2);
}

/// After stdin closes mid-run, chatd waits for clients without spinning.
#[test]
fn closing_the_console_mid_run_does_not_spin() {
    let mut chatd = spawn();
    let mut clients = chatd.connect_clients(1);
    assert_served(&mut chatd, &mut clients[0], 1);
    chatd.close_console();
    chatd.expect_body(CONSOLE_CLOSED);
    assert_idle(&chatd);
}

/// Starts chatd with its console on a pipe, and reads its start-up lines, so the next line read is
/// the answer to whatever the test does first.
#[track_caller]
fn spawn() -> Chatd {
    let mut chatd = Chatd::spawn(&[]);
    chatd.expect_report("accepting at most ");
    chatd
}

/// The next line chatd prints, whatever it is.
#[track_caller]
fn next_line(chatd: &mut Chatd) -> String {
    chatd.expect(|_| true, "any report", WAIT)
}

/// The body of the next line chatd prints.
#[track_caller]
fn next_report(chatd: &mut Chatd) -> String {
    report_body(&next_line(chatd)).to_owned()
}

/// Types `line` and checks that the very next line chatd prints is the warning `warning`.
#[track_caller]
fn assert_mistake(chatd: &mut Chatd, line: &str, warning: &str) {
    chatd.send_console(line);
    let report = next_line(chatd);
    assert!(report.contains("[WARN] "), "after {line:?}: {report:?}");
    assert_eq!(report_body(&report), warning, "after {line:?}");
}

/// Checks that chatd printed nothing since the last line read: a harmless unknown command is
/// typed, and its warning must be the very next line.
#[track_caller]
fn assert_nothing_more(chatd: &mut Chatd) {
    chatd.send_console(SENTINEL);
    assert_eq!(
        next_report(chatd),
        format!("console: unknown command {SENTINEL} (try /help)"),
        "chatd printed something before the sentinel's warning"
    );
}

/// Checks that client `id` is connected and served both ways, and that nothing was sent to it since
/// its last line read: the operator's next line is the very next thing it reads and the very next
/// report, and its own next message is reported next.
#[track_caller]
fn assert_served(chatd: &mut Chatd, client: &mut Client, id: u64) {
    let peer = client.peer();
    chatd.send_console(&format!("/to {id} probe for #{id}"));
    assert_eq!(next_report(chatd), format!("sent to #{id} {peer}"));
    assert_eq!(client.read_line(), format!("probe for #{id}"));
    client.send_line("still served");
    assert_eq!(
        next_report(chatd),
        format!("message {peer} #{id}: still served")
    );
}

/// A client connects as `#id` (the only one online), talks, says `exit` and is let go.
#[track_caller]
fn assert_chat_works(chatd: &mut Chatd, id: u64) {
    let mut client = Client::connect(chatd.addr());
    let peer = client.peer();
    chatd.expect_report(&format!("connect {peer} #{id} ("));
    client.send_line("anyone there?");
    chatd.expect_body(&format!("message {peer} #{id}: anyone there?"));
    client.send_line("exit");
    assert_eq!(client.read_line(), "goodbye");
    assert_eq!(client.read_to_end(), "");
    chatd.expect_report(&format!("disconnect {peer} #{id} exit ("));
}

/// Checks one `/list` entry: `<who> connected <age> ago, <counts>`, with an age like `0s`.
#[track_caller]
fn assert_list_entry(entry: &str, who: &str, counts: &str) {
    let age = entry
        .strip_prefix(&format!("{who} connected "))
        .and_then(|rest| rest.strip_suffix(&format!(" ago, {counts}")))
        .unwrap_or_else(|| panic!("{entry:?} is not `{who} connected <age> ago, {counts}`"));
    assert!(
        age.ends_with('s') && age.chars().any(|c| c.is_ascii_digit()),
        "age {age:?} in {entry:?}"
    );
}

/// Checks that chatd, idle, uses well under `MAX_BUSY` of one CPU. The sleep is the measurement
/// window, not a wait for anything: a loop that spins would burn most of it.
#[track_caller]
fn assert_idle(chatd: &Chatd) {
    let cpu_before = chatd.cpu_time();
    let started = Instant::now();
    thread::sleep(MEASURE);
    let used = chatd.cpu_time().saturating_sub(cpu_before);
    let window = started.elapsed();
    assert!(
        used.as_secs_f64() < window.as_secs_f64() * MAX_BUSY,
        "chatd used {used:?} of CPU in {window:?} while idle"
    );
}

const CONSOLE_CLOSED: &str =
    "console closed (stdin at end of file); still serving, stop with SIGINT or SIGTERM";
const KICKED: &str = "you were disconnected by the operator";
/// An unknown command, typed to mark a point in chatd's output.
const SENTINEL: &str = "/sentinel";
/// How each `/help` line after `commands:` starts, one per command.
const HELP_SYNTAX: [&str; 11] = [
    "/to <id> <text>",
    "/all <text>",
    "<text>",
    "/list",
    "/kick <id>",
    "/ban <id|CIDR> [MINUTES]",
    "/bans",
    "/unban <CIDR>",
    "/stats",
    "/quit",
    "/help",
];
/// The longest console line chatd reads in one piece.
const MAX_CONSOLE_LINE: usize = 64 * 1024;
/// A long operator line that still fits in one console line.
const LONG_LINE: usize = 60_000;
/// The window over which an idle chatd's CPU use is measured.
const MEASURE: Duration = Duration::from_secs(1);
/// The share of the window an idle chatd may use; a spinning loop uses nearly all of it.
const MAX_BUSY: f64 = 0.3;
