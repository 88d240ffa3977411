//! The `--relay` room: every line relayed to everyone else as `<name>: <text>`, arrivals and
//! departures announced, `/nick`, `/who` and unknown commands answered privately, the operator's
//! `/all` speaking as `server`, and a member that stops reading dropped `slow` without holding up
//! the others.
//!
//! A member's next line is always checked exactly, so "never received" is shown by the line that
//! comes instead: the sender of a message, or of a command that must not be relayed, says something
//! else next, and that must be the very next line the others get.
//!
//! Deliberately not here: what is relayed without `--relay` (`messages.rs`), or speed.

mod common;

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use common::{Chatd, WAIT};

/// Three members hear each other's messages under the sender's name, and nobody hears their own:
/// each sender's next line is the next member's message, not an echo.
#[test]
fn members_hear_each_other_by_name_but_never_themselves() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b, mut c] = fill_room::<3>(&mut chatd);
    let peer_a = a.peer();

    a.say("one");
    chatd.expect_body(&format!("message {peer_a} #1: one"));
    b.expect("#1: one");
    c.expect("#1: one");
    b.say("two");
    a.expect("#2: two");
    c.expect("#2: two");
    c.say("three");
    a.expect("#3: three");
    b.expect("#3: three");
    // c's turn to hear without having heard itself.
    a.say("four");
    b.expect("#1: four");
    c.expect("#1: four");
}

/// A newcomer is told who is online right after the greeting, and everyone already there is told
/// that it joined and how many are online now.
#[test]
fn arrivals_are_announced_and_newcomers_told_who_is_online() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let mut a = Member::connect(chatd.addr());
    a.expect("◆ nobody else is online");
    let mut b = Member::connect(chatd.addr());
    b.expect("◆ 1 online: #1");
    a.expect("◆ #2 joined (2 online)");
    let mut c = Member::connect(chatd.addr());
    c.expect("◆ 2 online: #1, #2");
    a.expect("◆ #3 joined (3 online)");
    b.expect("◆ #3 joined (3 online)");
    chatd.expect_body(&format!("connect {} #3 (3 online)", c.peer()));
    // The newcomer was not told of its own arrival: its next line is someone else's message.
    a.say("hi c");
    c.expect("#1: hi c");
}

/// `/nick` renames: the others are told, the renamer is told, the operator's log says so, and
/// later messages and `/who` carry the new name.
#[test]
fn nick_renames_and_is_announced_confirmed_and_reported() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b, mut c] = fill_room::<3>(&mut chatd);
    let peer_a = a.peer();

    a.say("/nick alice");
    a.expect("◆ you are now alice");
    b.expect("◆ #1 is now alice");
    c.expect("◆ #1 is now alice");
    chatd.expect_body(&format!("nick {peer_a} #1: #1 is now alice"));

    a.say("hello");
    b.expect("alice: hello");
    c.expect("alice: hello");
    c.say("/who");
    c.expect("◆ 3 online: alice, #2, #3");

    // A second rename is announced from the current name, and a longest name (32) is allowed.
    let long = "A_very-long_name-of_32_chars_xyz";
    assert_eq!(long.len(), 32);
    a.say(&format!("/nick  {long} "));
    a.expect(&format!("◆ you are now {long}"));
    b.expect(&format!("◆ alice is now {long}"));
    c.expect(&format!("◆ alice is now {long}"));
    chatd.expect_body(&format!("nick {peer_a} #1: alice is now {long}"));
    a.say("again");
    b.expect(&format!("{long}: again"));
    c.expect(&format!("{long}: again"));

    // A rename counts from the very next line, even within the same write.
    b.send(b"before\n/nick bob\nafter\n");
    b.expect("◆ you are now bob");
    for other in [&mut a, &mut c] {
        other.expect("#2: before");
        other.expect("◆ #2 is now bob");
        other.expect("bob: after");
    }
}

/// A name that is not 1 to 32 ASCII letters, digits, `_` or `-` is refused, to the asker only,
/// with a line that says so, and the asker keeps its name: letters of other scripts too (`小明`),
/// so that a look-alike (`ѕerver` with a Cyrillic `ѕ`) can never pass for another name.
#[test]
fn bad_nick_is_refused_privately() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    let bad_name = "◆ a name is 1 to 32 ASCII letters (a-z, A-Z), digits, _ or -";
    let too_long = format!("/nick {}", "x".repeat(33));
    let tries: [&[u8]; 9] = [
        "/nick 小明".as_bytes(),
        "/nick ѕerver".as_bytes(),
        b"/nick",
        b"/nick ",
        b"/nick bob smith",
        b"/nick #2",
        b"/nick b\xc3\xb8b",
        b"/nick b\xffb",
        too_long.as_bytes(),
    ];
    for line in tries {
        a.send(&[line, b"\n"].concat());
        a.expect(bad_name);
    }
    // None of it reached b, and a is still #1.
    a.say("still me");
    b.expect("#1: still me");
    b.say("/who");
    b.expect("◆ 2 online: #1, #2");
}

/// A name someone else has (in any case) and the reserved `server` are refused as taken, to the
/// asker only.
#[test]
fn taken_or_reserved_nick_is_refused_privately() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b, mut c] = fill_room::<3>(&mut chatd);
    a.say("/nick alice");
    a.expect("◆ you are now alice");
    b.expect("◆ #1 is now alice");
    c.expect("◆ #1 is now alice");

    for name in ["alice", "ALICE", "Alice", "server", "Server", "SERVER"] {
        b.say(&format!("/nick {name}"));
        b.expect(&format!("◆ the name {name} is taken"));
    }
    // Nobody else heard any of it, and b is still #2.
    b.say("still #2");
    a.expect("#2: still #2");
    c.expect("#2: still #2");
}

/// A name is free again once its holder has renamed or left.
#[test]
fn name_given_up_is_free_again() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b, mut c] = fill_room::<3>(&mut chatd);
    a.say("/nick alice");
    a.expect("◆ you are now alice");
    b.expect("◆ #1 is now alice");
    c.expect("◆ #1 is now alice");
    a.say("/nick alicia");
    a.expect("◆ you are now alicia");
    b.expect("◆ alice is now alicia");
    c.expect("◆ alice is now alicia");

    b.say("/nick Alice");
    b.expect("◆ you are now Alice");
    a.expect("◆ #2 is now Alice");
    c.expect("◆ #2 is now Alice");

    b.say("exit");
    b.expect("◆ goodbye");
    b.expect_closed();
    chatd.expect_report("#2 exit (2 online)");
    c.say("/nick alice");
    c.expect("◆ Alice left (exit)");
    c.expect("◆ you are now alice");
    a.expect("◆ Alice left (exit)");
    a.expect("◆ #3 is now alice");
}

/// Leaving is announced to everyone left, in its place among the other lines, with the leaver's
/// name and the reason from the disconnect report: `exit`, `closed`, `kicked` and `reset`.
#[test]
fn leaving_is_announced_with_the_reason() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [
        mut watcher,
        mut prompter,
        mut exits,
        mut closes,
        mut kicked,
        resets,
    ] = fill_room::<6>(&mut chatd);

    // `exit`, from a member with a nickname: announced by name, and `exit` itself is not relayed.
    exits.say("/nick carol");
    exits.expect("◆ you are now carol");
    watcher.expect("◆ #3 is now carol");
    prompter.expect("◆ #3 is now carol");
    let peer = exits.peer();
    exits.say("exit");
    exits.expect("◆ goodbye");
    exits.expect_closed();
    chatd.expect_body(&format!("disconnect {peer} #3 exit (5 online)"));
    // Each departure is followed by a line from someone else, which must come after it.
    prompter.say("after exit");
    watcher.expect("◆ carol left (exit)");
    watcher.expect("#2: after exit");
    prompter.expect("◆ carol left (exit)");
    // The next to leave read everything first: closing a socket with unread input resets it, so
    // `closes` would leave as `reset`.
    for member in [&mut closes, &mut kicked] {
        member.expect("◆ #3 is now carol");
        member.expect("◆ carol left (exit)");
        member.expect("#2: after exit");
    }

    let peer = closes.peer();
    drop(closes);
    chatd.expect_body(&format!("disconnect {peer} #4 closed (4 online)"));
    prompter.say("after close");
    watcher.expect("◆ #4 left (closed)");
    watcher.expect("#2: after close");
    prompter.expect("◆ #4 left (closed)");
    kicked.expect("◆ #4 left (closed)");
    kicked.expect("#2: after close");

    let peer = kicked.peer();
    chatd.send_console("/kick 5");
    kicked.expect("◆ you were disconnected by the operator");
    kicked.expect_closed();
    chatd.expect_body(&format!("disconnect {peer} #5 kicked (3 online)"));
    prompter.say("after kick");
    watcher.expect("◆ #5 left (kicked)");
    watcher.expect("#2: after kick");
    prompter.expect("◆ #5 left (kicked)");

    // SO_LINGER 0: the close is a reset.
    let peer = resets.peer();
    SockRef::from(resets.stream())
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(resets);
    chatd.expect_body(&format!("disconnect {peer} #6 reset (2 online)"));
    prompter.say("after reset");
    watcher.expect("◆ #6 left (reset)");
    watcher.expect("#2: after reset");
    prompter.expect("◆ #6 left (reset)");
}

/// A departure reaches the others at once, even when nothing else happens in the room: it must
/// not wait in their queues for some later, unrelated event to flush them.
#[test]
fn departure_is_announced_without_waiting_for_other_traffic() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut watcher, mut exits, mut closes, mut kicked] = fill_room::<4>(&mut chatd);

    exits.say("exit");
    exits.expect("◆ goodbye");
    exits.expect_closed();
    watcher.expect("◆ #2 left (exit)");
    // Read before closing, or the close would be a reset.
    closes.expect("◆ #2 left (exit)");

    drop(closes);
    watcher.expect("◆ #3 left (closed)");

    kicked.expect("◆ #2 left (exit)");
    kicked.expect("◆ #3 left (closed)");
    chatd.send_console("/kick 4");
    kicked.expect("◆ you were disconnected by the operator");
    kicked.expect_closed();
    watcher.expect("◆ #4 left (kicked)");
}

/// A member dropped for saying nothing for `--idle-timeout` is announced as `timeout`.
#[test]
fn idle_member_is_announced_as_timed_out() {
    let mut chatd = Chatd::spawn(&["--relay", "--idle-timeout", "1"]);
    let [mut idle, mut talker] = fill_room::<2>(&mut chatd);
    let peer = idle.peer();
    // The talker keeps itself from timing out by talking, and listens between its lines; the
    // first thing it hears must be the news.
    let deadline = Instant::now() + WAIT;
    let mut said = 0;
    let news = loop {
        assert!(Instant::now() < deadline, "no news of #1 within {WAIT:?}");
        talker.say("still here");
        said += 1;
        if let Some(line) = talker.next_line_within(Duration::from_millis(200)) {
            break line;
        }
    };
    assert_eq!(news, "◆ #1 left (timeout)");
    chatd.expect_body(&format!("disconnect {peer} #1 timeout (1 online)"));
    // The idle member heard the talker until it was told why it is being closed.
    for _ in 0..said {
        let line = idle.next_line();
        if line == "disconnected: idle for too long" {
            idle.expect_closed();
            return;
        }
        assert_eq!(line, "#2: still here");
    }
    idle.expect("◆ disconnected: idle for too long");
    idle.expect_closed();
}

/// Lines sent before `exit` in the same write are relayed; `exit` and anything after it are not.
#[test]
fn exit_is_not_relayed_nor_anything_after_it() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    a.send(b"last words\nexit\nsneaky\n");
    a.expect("◆ goodbye");
    a.expect_closed();
    b.expect("#1: last words");
    b.expect("◆ #1 left (exit)");
    chatd.expect_report("#1 exit (1 online)");
    assert_eq!(chatd.seen_count(": sneaky"), 0);
}

/// A last line without a newline, sent just before closing, is relayed before the departure.
#[test]
fn unfinished_last_line_is_relayed_before_the_departure() {
    let mut chatd = Chatd::spawn(&["--relay", "--line-timeout", "60000"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    a.send(b"no newline here");
    a.stream().shutdown(Shutdown::Write).expect("half-close");
    b.expect("#1: no newline here");
    b.expect("◆ #1 left (closed)");
}

/// An unfinished line is relayed once `--line-timeout` passes without more bytes.
#[test]
fn unfinished_line_is_relayed_after_the_line_timeout() {
    let mut chatd = Chatd::spawn(&["--relay", "--line-timeout", "50"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    a.send(b"typing slowly");
    b.expect("#1: typing slowly");
}

/// `/who` lists everyone online, the asker included, to the asker only.
#[test]
fn who_lists_everyone_to_the_asker_only() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b, mut c] = fill_room::<3>(&mut chatd);
    b.say("/nick bob");
    b.expect("◆ you are now bob");
    a.expect("◆ #2 is now bob");
    c.expect("◆ #2 is now bob");

    a.say("/who");
    a.expect("◆ 3 online: #1, bob, #3");
    a.say("after who");
    b.expect("#1: after who");
    c.expect("#1: after who");

    // Someone who left is no longer listed.
    let peer_c = c.peer();
    drop(c);
    chatd.expect_body(&format!("disconnect {peer_c} #3 closed (2 online)"));
    b.say("/who");
    b.expect("◆ #3 left (closed)");
    b.expect("◆ 2 online: #1, bob");
}

/// A line starting with `//` is relayed with one slash taken off, so members can say `/...`.
#[test]
fn double_slash_relays_a_line_starting_with_slash() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    a.say("//etc/passwd is a file");
    b.expect("#1: /etc/passwd is a file");
    a.say("//nick bob");
    b.expect("#1: /nick bob");
    a.say("///");
    b.expect("#1: //");
    // Not a rename: a is still #1.
    b.say("/who");
    b.expect("◆ 2 online: #1, #2");
}

/// Any other `/...` line is answered privately with a hint and is not relayed, though the
/// operator still sees it.
#[test]
fn unknown_command_is_answered_privately_and_not_relayed() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b, mut c] = fill_room::<3>(&mut chatd);
    let peer_a = a.peer();
    let hint = "(try /help; start a line with // to say /...)";
    for (line, command) in [
        ("/xyz foo bar", "/xyz"),
        ("/whoami", "/whoami"),
        ("/NICK bob", "/NICK"),
        ("/", "/"),
        ("/ nick bob", "/"),
    ] {
        a.say(line);
        a.expect(&format!("◆ unknown command {command} {hint}"));
        chatd.expect_body(&format!("message {peer_a} #1: {line}"));
    }
    a.say("normal");
    b.expect("#1: normal");
    c.expect("#1: normal");
    // And nobody was renamed by `/NICK` or `/ nick`.
    c.say("/who");
    c.expect("◆ 3 online: #1, #2, #3");
}

/// Relayed text is escaped exactly like the operator's report: terminal escape sequences, other
/// control characters, bidi overrides and invalid UTF-8 arrive as visible `\xNN` / `\u{NNNN}`.
#[test]
fn relayed_text_is_escaped_like_the_reports() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    let peer = a.peer();
    let cases: [(&[u8], &str); 5] = [
        (b"\x1b[2J\x1b[Hgotcha\x07", r"\x1b[2J\x1b[Hgotcha\x07"),
        (b"ok\xfe\xff!", r"ok\xfe\xff!"),
        (b"\xc0\xaf half \xc3", r"\xc0\xaf half \xc3"),
        ("abc\u{202e}def".as_bytes(), r"abc\u{202e}def"),
        (b"a\rb\x7f\tc", "a\\x0db\\x7f\tc"),
    ];
    for (sent, shown) in cases {
        a.send(&[sent, b"\n"].concat());
        b.expect(&format!("#1: {shown}"));
        chatd.expect_body(&format!("message {peer} #1: {shown}"));
    }
    // The name in an unknown command's answer is escaped too.
    a.send(b"/x\x1b[31m y\n");
    a.expect(r"◆ unknown command /x\x1b[31m (try /help; start a line with // to say /...)");
}

/// A line longer than `--max-line` is relayed cut, with the count of dropped bytes, as reported.
#[test]
fn long_line_is_relayed_cut_like_the_report() {
    let mut chatd = Chatd::spawn(&["--relay", "--max-line", "10"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    let peer = a.peer();
    a.say("0123456789abcdef");
    b.expect("#1: 0123456789... [+6 bytes]");
    chatd.expect_body(&format!("message {peer} #1: 0123456789... [+6 bytes]"));
}

/// The operator's `/all` reaches every member as `◆ server: <text>`, and `/to` its one member as
/// `◆ server (to you): <text>`, both escaped like members' text.
#[test]
fn operator_all_speaks_as_server_to_everyone() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b, mut c] = fill_room::<3>(&mut chatd);
    chatd.send_console("/all hello everyone");
    chatd.expect_body("sent to all (3 clients)");
    for member in [&mut a, &mut b, &mut c] {
        member.expect("◆ server: hello everyone");
    }
    chatd.send_console("/all \x1b[31mred");
    for member in [&mut a, &mut b, &mut c] {
        member.expect(r"◆ server: \x1b[31mred");
    }
    // `/to` is escaped the same way (it used to send the operator's bytes raw).
    chatd.send_console("/to 2 \x1b[2J\u{202e}cleared");
    b.expect(r"◆ server (to you): \x1b[2J\u{202e}cleared");
}

/// The operator's `/to` and bare reply reach one member only, marked as the server's.
#[test]
fn operator_to_and_reply_stay_private() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    let peer_a = a.peer();
    chatd.send_console("/to 1 psst");
    chatd.expect_body(&format!("sent to #1 {peer_a}"));
    a.expect("◆ server (to you): psst");
    chatd.send_console("@1 psst again");
    chatd.expect_body(&format!("sent to #1 {peer_a}"));
    a.expect("◆ server (to you): psst again");

    let peer_b = b.peer();
    b.say("question");
    a.expect("#2: question");
    chatd.expect_body(&format!("message {peer_b} #2: question"));
    chatd.send_console("answer");
    chatd.expect_body(&format!("replied to #2 {peer_b} (last to speak)"));
    b.expect("◆ server (to you): answer");

    // Neither reached the other: their next line is this one.
    chatd.send_console("/all the end");
    a.expect("◆ server: the end");
    b.expect("◆ server: the end");
}

/// A member that stops reading while another talks is dropped `slow` once its queue passes
/// `--max-queue`; the others receive every line in order, and are told it left.
#[test]
fn member_that_stops_reading_is_dropped_slow_and_others_get_everything() {
    // The talker floods the room on purpose, to fill the silent member's queue: not flood control's
    // business here (--max-rate 0; tests/flood.rs is about that).
    let mut chatd = Chatd::spawn(&["--relay", "--max-queue", "65536", "--max-rate", "0"]);
    // A small receive window, set before the handshake (after it, the window shrinks under data
    // in flight and TCP stalls), so the server's queue for it fills soon.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&chatd.addr().into()).expect("connect");
    let mut slow = Member::from_stream(socket.into());
    slow.expect("◆ nobody else is online");
    let slow_peer = slow.peer();
    let mut talker = Member::connect(chatd.addr());
    talker.expect("◆ 1 online: #1");
    let mut listener = Member::connect(chatd.addr());
    listener.expect("◆ 2 online: #1, #2");
    talker.expect("◆ #3 joined (3 online)");
    // From here on, `slow` reads nothing.

    // The talker sends in batches well under --max-queue, and waits until the listener has them
    // all, so the listener (which reads) can never be the one whose queue overflows.
    let filler = "x".repeat(1000);
    let mut sent = 0;
    let mut next = 0;
    let mut dropped = false;
    let mut rounds_after = 0;
    while rounds_after < 2 {
        assert!(
            sent < MAX_SLOW_LINES,
            "{sent} lines of 1 KB and #1 was never dropped"
        );
        let batch: String = (sent..sent + SLOW_BATCH)
            .map(|k| format!("line {k} {filler}\n"))
            .collect();
        talker.send(batch.as_bytes());
        sent += SLOW_BATCH;
        while next < sent {
            let line = listener.next_line();
            if line == "◆ #1 left (slow)" {
                assert!(!dropped, "#1 left twice");
                dropped = true;
                continue;
            }
            assert_eq!(
                line,
                format!("#2: line {next} {filler}"),
                "line {next} is wrong or out of order"
            );
            next += 1;
        }
        if dropped {
            rounds_after += 1;
        }
    }
    chatd.expect_body(&format!("disconnect {slow_peer} #1 slow (2 online)"));
    talker.expect("◆ #1 left (slow)");
    // Both are still served.
    listener.say("done");
    talker.expect("#3: done");
    drop(slow);
}

/// A member that reads is not dropped `slow` when another sends a burst that its socket buffers
/// could take at once: the server tries the write before deciding a queue is too long. (Here 10 KB
/// in one write, with `--max-queue 4096`, to a member whose buffers are empty.)
#[test]
fn member_that_reads_is_not_dropped_by_a_burst_its_buffers_can_take() {
    let mut chatd = Chatd::spawn(&["--relay", "--max-queue", "4096"]);
    let [mut talker, mut listener] = fill_room::<2>(&mut chatd);
    let filler = "y".repeat(90);
    let burst: String = (0..100)
        .map(|k| format!("burst {k:03} {filler}\n"))
        .collect();
    talker.send(burst.as_bytes());
    for k in 0..100 {
        listener.expect(&format!("#1: burst {k:03} {filler}"));
    }
    talker.say("done");
    listener.expect("#1: done");
    // Every report up to the last line heard, before counting in them.
    chatd.expect_body(&format!("message {} #1: done", talker.peer()));
    assert_eq!(chatd.seen_count(" slow ("), 0);
}

/// Two hundred members each send twenty lines at once: every member receives exactly the others'
/// 3980 lines, each sender's in the order sent, and none of its own.
#[test]
fn two_hundred_members_each_hear_everyone_else_in_order() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let members = fill_room::<CROWD>(&mut chatd);
    let deadline = Instant::now() + CROWD_DEADLINE;
    let start = Arc::new(Barrier::new(CROWD));
    let threads: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, mut member)| {
            let start = Arc::clone(&start);
            let id = i + 1;
            thread::spawn(move || {
                start.wait();
                for j in 0..PER_MEMBER {
                    member.say(&format!("c{id} m{j}"));
                }
                // next[s]: the number of the next line expected from member #s.
                let mut next = vec![0; CROWD + 1];
                for _ in 0..(CROWD - 1) * PER_MEMBER {
                    let line = member.next_line();
                    assert!(Instant::now() < deadline, "#{id}: out of time");
                    let (sender, j) = parse_crowd_line(&line)
                        .unwrap_or_else(|| panic!("#{id} got an unexpected line {line:?}"));
                    assert_ne!(sender, id, "#{id} heard its own line {line:?}");
                    assert_eq!(
                        j, next[sender],
                        "#{id}: line {j} of #{sender} came when {} was due",
                        next[sender]
                    );
                    next[sender] += 1;
                }
                member
            })
        })
        .collect();
    let mut members = Vec::new();
    let mut failures = Vec::new();
    for thread in threads {
        match thread.join() {
            Ok(member) => members.push(member),
            Err(panic) => failures.push(panic_message(panic)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} members failed, first: {}",
        failures.len(),
        failures[0]
    );
    // Nothing more was on its way: the next line each member gets is the operator's.
    chatd.send_console("/all that is all");
    chatd.expect_body(&format!("sent to all ({CROWD} clients)"));
    for member in &mut members {
        member.expect("◆ server: that is all");
    }
}

/// `/msg NAME text` reaches the member of that name (in any case, or `#<id>` for one without a
/// name) alone, as `<from> (to you): <text>`, escaped like any relayed line; it is not echoed to
/// its sender, and the operator sees it as a `command`.
#[test]
fn msg_reaches_one_member_only() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b, mut c] = fill_room::<3>(&mut chatd);
    let (peer_a, peer_c) = (a.peer(), c.peer());
    a.say("/nick alice");
    a.expect("◆ you are now alice");
    for member in [&mut b, &mut c] {
        member.expect("◆ #1 is now alice");
    }
    b.say("/nick bob");
    b.expect("◆ you are now bob");
    for member in [&mut a, &mut c] {
        member.expect("◆ #2 is now bob");
    }

    a.send(b"/msg BOB psst \x1b[2J secret\n");
    b.expect(r"alice (to you): psst \x1b[2J secret");
    chatd.expect_body(&format!(
        r"command {peer_a} #1: /msg BOB psst \x1b[2J secret"
    ));
    // From a member without a name, and to one by its `#<id>`.
    c.say("/msg alice from c");
    a.expect("#3 (to you): from c");
    chatd.expect_body(&format!("command {peer_c} #3: /msg alice from c"));
    a.say("/msg #3 back");
    c.expect("alice (to you): back");

    // Nobody else heard either, and neither came back to its sender: each member's next line is
    // this one.
    b.say("public");
    a.expect("bob: public");
    c.expect("bob: public");
    a.say("public too");
    b.expect("alice: public too");
    c.expect("alice: public too");
    assert_eq!(
        chatd.seen_count("message"),
        0,
        "a /msg was reported as a message"
    );
}

/// A `/msg` to a name nobody here has, or without a name or text, gets one line back and reaches
/// nobody.
#[test]
fn msg_to_unknown_name_is_one_line_error() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    b.say("/nick bob");
    b.expect("◆ you are now bob");
    a.expect("◆ #2 is now bob");
    for (line, answer) in [
        ("/msg zed hello", "◆ nobody here is called zed (try /who)"),
        ("/msg #9 hello", "◆ nobody here is called #9 (try /who)"),
        // #2 is called bob now.
        ("/msg #2 hello", "◆ nobody here is called #2 (try /who)"),
        (
            "/msg server hello",
            "◆ nobody here is called server (try /who)",
        ),
        ("/msg bob", "◆ usage: /msg NAME text"),
        ("/msg bob   ", "◆ usage: /msg NAME text"),
        ("/msg", "◆ usage: /msg NAME text"),
        (
            "/msg \x1b[2J hi",
            r"◆ nobody here is called \x1b[2J (try /who)",
        ),
    ] {
        a.say(line);
        a.expect(answer);
    }
    // None of it reached bob.
    a.say("done");
    b.expect("#1: done");
}

/// The room's greeting and its `/help` tell of `/msg`.
#[test]
fn greeting_and_help_tell_of_msg() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    let greeting = a.heard.front().cloned().unwrap_or_default();
    assert!(greeting.contains("/msg NAME text"), "{greeting:?}");
    assert!(greeting.contains("/help"), "{greeting:?}");
    a.say("/help");
    a.expect(
        "◆ commands: /nick NAME (1 to 32 ASCII letters, digits, _ or -), /who, \
         /msg NAME text (to that member alone), /help, exit to leave; start a line with // to say \
         /...",
    );
    a.say("after help");
    b.expect("#1: after help");
}

/// `/list` shows, in the room, how the room calls each client: its name, or `#<id>`.
#[test]
fn list_shows_names_in_the_room() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    let (peer_a, peer_b) = (a.peer(), b.peer());
    a.say("/nick alice");
    a.expect("◆ you are now alice");
    b.expect("◆ #1 is now alice");
    chatd.expect_report("is now alice");
    chatd.send_console("/list");
    chatd.expect_body("2 online");
    chatd.expect_report(&format!("#1 {peer_a} (alice) connected "));
    chatd.expect_report(&format!("#2 {peer_b} (#2) connected "));
}

/// The room's commands reach the operator as `command` reports, never as chat messages; a line
/// that only looks like one (`//who`, an unknown `/xyz`) is still a message, and so is `/nick`
/// without `--relay`.
#[test]
fn room_commands_are_reported_as_commands() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    let peer = a.peer();
    for line in ["/nick alice", "/who", "/msg #2 hi", "/help"] {
        a.say(line);
        chatd.expect_body(&format!("command {peer} #1: {line}"));
    }
    a.expect("◆ you are now alice");
    b.expect("◆ #1 is now alice");
    a.expect("◆ 2 online: alice, #2");
    b.expect("alice (to you): hi");
    assert!(a.next_line().starts_with("◆ commands: "));
    a.say("//who");
    chatd.expect_body(&format!("message {peer} #1: //who"));
    assert_eq!(chatd.seen_count("message"), 1, "{:?}", chatd.seen());

    let mut plain = Chatd::spawn(&[]);
    let mut client = common::Client::connect(plain.addr());
    client.send_line("/nick bob");
    plain.expect_body(&format!("message {} #1: /nick bob", client.peer()));
}

/// A name its holder left with is kept for a minute for the address it left from: a newcomer
/// from another address is refused it (in any case), while one from the same address may take it
/// back at once. (The minute running out is `names.rs`'s unit test.)
#[test]
fn name_left_with_is_held_for_its_address() {
    let mut chatd = Chatd::spawn(&["--relay"]);
    let [mut a, mut b] = fill_room::<2>(&mut chatd);
    a.say("/nick alice");
    a.expect("◆ you are now alice");
    b.expect("◆ #1 is now alice");
    a.say("exit");
    a.expect("◆ goodbye");
    a.expect_closed();
    b.expect("◆ alice left (exit)");

    // Another address on this machine: the loopback network is all of 127/8.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let elsewhere: SocketAddr = "127.0.0.2:0".parse().expect("address");
    socket.bind(&elsewhere.into()).expect("bind 127.0.0.2");
    socket
        .connect(&chatd.addr().into())
        .expect("connect from 127.0.0.2");
    let mut newcomer = Member::from_stream(socket.into());
    newcomer.expect("◆ 1 online: #2");
    b.expect("◆ #3 joined (2 online)");
    for name in ["alice", "ALICE"] {
        newcomer.say(&format!("/nick {name}"));
        newcomer.expect(&format!(
            "◆ the name {name} was in use until just now: it is kept for its last holder for a \
             minute"
        ));
    }
    // From the address she left from, it may be taken back.
    b.say("/nick alice");
    b.expect("◆ you are now alice");
    newcomer.expect("◆ #2 is now alice");
}

/// One person in the room: a TCP client that reads raw lines with a deadline and remembers the last
/// few, for failure messages. Lines that are not UTF-8 come back shown as escaped bytes, so they
/// can never equal an expected line.
struct Member {
    reader: BufReader<TcpStream>,
    /// Bytes of a line not finished when a read timed out.
    partial: Vec<u8>,
    /// The last lines received.
    heard: VecDeque<String>,
}

impl Member {
    /// Connects and reads the greeting.
    #[track_caller]
    fn connect(addr: SocketAddr) -> Member {
        Member::from_stream(TcpStream::connect(addr).expect("connect to chatd"))
    }

    /// A member on a stream connected by other means; reads the greeting.
    #[track_caller]
    fn from_stream(stream: TcpStream) -> Member {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let mut member = Member {
            reader: BufReader::new(stream),
            partial: Vec::new(),
            heard: VecDeque::new(),
        };
        let greeting = member.next_line();
        assert!(greeting.contains("welcome"), "greeting was {greeting:?}");
        member
    }

    /// How the server sees this member: `IP:PORT`.
    fn peer(&self) -> String {
        self.stream().local_addr().expect("local addr").to_string()
    }

    fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    #[track_caller]
    fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .expect("send to chatd");
    }

    /// Sends one line.
    #[track_caller]
    fn say(&mut self, text: &str) {
        self.send(format!("{text}\n").as_bytes());
    }

    /// Reads one line and checks that it is exactly `want`.
    #[track_caller]
    fn expect(&mut self, want: &str) {
        let line = self.next_line();
        if line != want {
            panic!(
                "expected {want:?}, got {line:?}; last lines heard:\n{}",
                self.history()
            );
        }
    }

    /// Waits for the server to close the connection, with nothing more before it.
    #[track_caller]
    fn expect_closed(&mut self) {
        match self.read_line(WAIT) {
            Ok(None) => {}
            Ok(Some(line)) => panic!("expected the close, got {line:?}"),
            Err(e) => panic!("expected the close, got {e}; heard:\n{}", self.history()),
        }
    }

    /// Reads one line (without `\n`), failing the test if none comes within `WAIT`.
    #[track_caller]
    fn next_line(&mut self) -> String {
        match self.read_line(WAIT) {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "connection closed while waiting for a line; heard:\n{}",
                self.history()
            ),
            Err(e) => panic!("no line within {WAIT:?} ({e}); heard:\n{}", self.history()),
        }
    }

    /// The next line if one comes within `wait`.
    #[track_caller]
    fn next_line_within(&mut self, wait: Duration) -> Option<String> {
        match self.read_line(wait) {
            Ok(Some(line)) => Some(line),
            Ok(None) => panic!("connection closed; heard:\n{}", self.history()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// One line, `None` at the close, or the read's error (a timeout after `wait`).
    fn read_line(&mut self, wait: Duration) -> io::Result<Option<String>> {
        self.stream().set_read_timeout(Some(wait))?;
        // A timeout can come mid-line: what arrived is kept in `partial` for the next call.
        if self.reader.read_until(b'\n', &mut self.partial)? == 0 && self.partial.is_empty() {
            return Ok(None);
        }
        if self.partial.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed mid-line",
            ));
        }
        self.partial.pop();
        let bytes = std::mem::take(&mut self.partial);
        let line = String::from_utf8(bytes)
            .unwrap_or_else(|e| format!("(not UTF-8) {}", e.as_bytes().escape_ascii()));
        if self.heard.len() == HISTORY {
            self.heard.pop_front();
        }
        self.heard.push_back(line.clone());
        Ok(Some(line))
    }

    fn history(&self) -> String {
        Vec::from(self.heard.clone()).join("\n")
    }
}

/// Connects `N` members to a fresh server (ids 1 to N, named `#1` to `#N`), checking every arrival
/// line on the way, so that each member's next line is whatever the test causes.
#[track_caller]
fn fill_room<const N: usize>(chatd: &mut Chatd) -> [Member; N] {
    let mut members: Vec<Member> = Vec::with_capacity(N);
    for id in 1..=N {
        let mut newcomer = Member::connect(chatd.addr());
        // The who-line names at most 100 of them.
        let others: Vec<String> = (1..id.min(101)).map(|other| format!("#{other}")).collect();
        newcomer.expect(&match (id - 1, id.saturating_sub(101)) {
            (0, _) => "◆ nobody else is online".to_owned(),
            (n, 0) => format!("◆ {n} online: {}", others.join(", ")),
            (n, more) => format!("◆ {n} online: {}, and {more} more", others.join(", ")),
        });
        for member in &mut members {
            member.expect(&format!("◆ #{id} joined ({id} online)"));
        }
        chatd.expect_body(&format!("connect {} #{id} ({id} online)", newcomer.peer()));
        members.push(newcomer);
    }
    match members.try_into() {
        Ok(members) => members,
        Err(_) => unreachable!("exactly N members were pushed"),
    }
}

/// `#<s>: c<s> m<j>` as `(s, j)`, checking that the name matches the sender in the text.
fn parse_crowd_line(line: &str) -> Option<(usize, usize)> {
    let (name, text) = line.split_once(": ")?;
    let sender: usize = name.strip_prefix('#')?.parse().ok()?;
    let (c, m) = text.split_once(' ')?;
    let in_text: usize = c.strip_prefix('c')?.parse().ok()?;
    let j = m.strip_prefix('m')?.parse().ok()?;
    (in_text == sender).then_some((sender, j))
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => match panic.downcast::<&str>() {
            Ok(message) => (*message).to_owned(),
            Err(_) => "(a panic without a message)".to_owned(),
        },
    }
}

/// Lines each member remembers for failure messages.
const HISTORY: usize = 20;
/// Lines the slow test's talker sends per batch (about 32 KB, half of its `--max-queue`).
const SLOW_BATCH: usize = 32;
/// Lines of 1 KB after which the non-reader must have been dropped: many times what the socket
/// buffers can hold (Linux autotunes a send buffer up to 4 MB by default).
const MAX_SLOW_LINES: usize = 50_000;
const CROWD: usize = 200;
const PER_MEMBER: usize = 20;
const CROWD_DEADLINE: Duration = Duration::from_secs(60);
