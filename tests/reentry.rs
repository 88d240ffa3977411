//! Re-entry: a write that fails while a line is being relayed must not make chatd read the broken
//! client there and then (which relays that client's line, which fails on the next broken client,
//! and so on: K broken clients, a K-deep recursion and O(K²) write attempts). The failed write is
//! only a mark; the loop hears the client out and closes it once, at the end of the turn.
//!
//! "One busy turn" is made by stopping chatd (SIGSTOP) while the clients send and reset, then
//! letting it go on (SIGCONT): it finds everything at once. To see these tests fail on another
//! build, name it in `CHATD_BIN` (see `common::chatd_bin`).
//!
//! Deliberately not here: ordering without failed writes (`relay.rs`), or the chat's own tests on
//! in-memory streams (`src/chat.rs`).

mod common;

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use socket2::SockRef;

use common::{Chatd, WAIT, report_body, with_listen};

/// The crash from the issue: thousands of room members, each with its queue full to `--max-queue`,
/// send a line and reset in one busy turn, so that every relay meets members whose writes fail.
/// Under a 2 MiB stack (`ulimit -s 2048`) chatd must report every member's disconnect, and a
/// newcomer must be greeted within `MAX_BUSY` throughout: the loop is never busy for long.
///
/// (Before the fix, with the release build: 3000 members froze the loop for about 3 s; from about
/// 4000 on, chatd died of a stack overflow. `REENTRY_MEMBERS=N` runs it with N members.)
#[test]
fn members_resetting_in_one_busy_turn_are_all_reported_and_the_loop_never_stalls() {
    let _alone = alone();
    let members_wanted: usize = std::env::var("REENTRY_MEMBERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MEMBERS);
    raise_open_files_limit(members_wanted + 256);
    let max_queue = BURST_MAX_QUEUE.to_string();
    let args = with_listen(&["--relay", "--max-queue", &max_queue]);
    let mut command = Chatd::command(&args);
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: SMALL_STACK,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_STACK, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut chatd = Chatd::spawn_command(command, &args);
    let addr = chatd.addr();
    let mut members = fill_room(&mut chatd, members_wanted);
    let peers: HashSet<String> = members.iter().map(peer).collect();

    // The busy turn: chatd is stopped while every member sends its line and resets, so that it
    // finds all of them at once. Member #1's line, relayed, is exactly `--max-queue` bytes: it
    // fills every other member's queue, so no later line fits, and chatd tries to write to members
    // that have reset.
    stop(&chatd);
    for (i, member) in members.iter_mut().enumerate() {
        let line = match i {
            0 => filler(BURST_MAX_QUEUE),
            _ => format!("member {} was here", i + 1),
        };
        say_and_reset(member, &line);
    }
    members.clear(); // Every close is a reset.
    let burst = Instant::now();
    chatd.signal(libc::SIGCONT);

    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let done = Arc::clone(&done);
        thread::spawn(move || probe(addr, &done))
    };
    let mut gone = 0;
    let mut last = Duration::ZERO;
    let deadline = Instant::now() + BURST_WAIT;
    while gone < peers.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(line) = chatd.next_report(left) else {
            break; // Out of time, or chatd's stdout closed (it died).
        };
        let Some((peer, reason)) = disconnect(&line) else {
            continue;
        };
        if peers.contains(peer) {
            assert!(
                matches!(reason, "reset" | "closed" | "slow"),
                "unexpected reason: {line}"
            );
            gone += 1;
            last = burst.elapsed();
        }
    }
    done.store(true, Ordering::Relaxed);
    let probes = prober.join().expect("the probe thread");
    let status = chatd.try_exit_status();
    eprintln!(
        "{gone} of {} disconnects reported, the last {last:?} after the burst; newcomers \
         greeted after: {probes:?}",
        peers.len()
    );
    assert_eq!(
        gone,
        peers.len(),
        "not every member's disconnect was reported within {BURST_WAIT:?} (chatd: {status:?})"
    );
    let worst = probes.iter().map(|probe| match probe {
        Ok(latency) => *latency,
        Err(_) => Duration::MAX,
    });
    assert!(
        worst.max().is_some_and(|worst| worst < MAX_BUSY),
        "a newcomer waited {MAX_BUSY:?} or more for its greeting: {probes:?}"
    );
}

/// A recipient whose write fails while a burst from several senders is relayed does not reorder
/// what the others receive: a reading member gets each sender's lines in the order sent, in each
/// of several rounds.
///
/// In one busy turn, member #1's line fills every queue, #2 sends lines 1 to 4, and the other
/// members send a line each and reset. When #3, the reader, gets its first line, chatd has read
/// #2's four lines and is relaying them, its writes to the other members failing: #2 then sends
/// lines 5 to 8 and resets, so that a write to #2 fails while its lines 2 to 4 wait to be relayed.
/// (Before the fix, #3 got 1, 5, 6, 7, 8, 2, 3, 4: the failed write read #2 on the spot.)
#[test]
fn a_failing_recipient_does_not_reorder_what_the_others_receive() {
    let _alone = alone();
    raise_open_files_limit(ORDER_MEMBERS + 256);
    for round in 1..=ORDER_ROUNDS {
        let max_queue = ORDER_MAX_QUEUE.to_string();
        let mut chatd = Chatd::spawn(&["--relay", "--max-queue", &max_queue]);
        let mut members = fill_room(&mut chatd, ORDER_MEMBERS);
        let rest = members.split_off(3);
        let [mut first, mut sender, reader]: [TcpStream; 3] =
            members.try_into().expect("three members");

        stop(&chatd);
        say_and_reset(&mut first, &filler(ORDER_MAX_QUEUE));
        drop(first);
        say(&mut sender, "s 1\ns 2\ns 3\ns 4");
        for (i, mut member) in rest.into_iter().enumerate() {
            say_and_reset(&mut member, &format!("member {} was here", i + 4));
        }
        let (woke, first_line) = mpsc::channel();
        let listener = thread::spawn(move || listen(reader, &woke));
        chatd.signal(libc::SIGCONT);

        let woken = first_line.recv_timeout(WAIT);
        say_and_reset(&mut sender, "s 5\ns 6\ns 7\ns 8");
        drop(sender);
        assert!(woken.is_ok(), "round {round}: the reader got nothing");
        let heard = listener.join().expect("the reader thread");
        let order: Vec<&str> = heard
            .iter()
            .filter_map(|line| line.strip_prefix("#2: s "))
            .collect();
        assert_eq!(
            order,
            ["1", "2", "3", "4", "5", "6", "7", "8"],
            "round {round}: #2's lines as #3 got them (last line {:?})",
            heard.last()
        );
    }
}

/// Members in the burst test.
const MEMBERS: usize = 3000;
/// `--max-queue` in the burst test: room for the list of who is online (about 7 bytes a member)
/// that each newcomer gets.
const BURST_MAX_QUEUE: usize = 32 * 1024;
/// chatd's stack in the burst test, as `ulimit -s 2048` gives.
const SMALL_STACK: libc::rlim_t = 2 * 1024 * 1024;
/// Members that join before they all drain what the room sent them.
const JOIN_BATCH: usize = 250;
/// How long every member's disconnect may take to be reported after the burst.
const BURST_WAIT: Duration = Duration::from_secs(30);
/// How often a newcomer checks that the loop is serving.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Newcomers at most, so the probe stops even if nobody tells it to.
const MAX_PROBES: usize = 400;
/// The longest a newcomer may wait for its greeting: the loop's longest busy stretch. The burst's
/// turn tells each of the 3000 leaves to everyone still there (about 4.5 million queue offers):
/// about 0.2 s for the release build and 0.6 to 1.2 s for the unoptimized one that `cargo test`
/// builds, on the 2-core machine with other work running. Before the fix the release build froze
/// for about 3 s (and an unoptimized one far longer, or overflowed its stack), so the bound for
/// the debug build is 3 s: it still fails on the bug, and not on a busy machine.
const MAX_BUSY: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(3)
} else {
    Duration::from_secs(1)
};
/// Members in each round of the order test: the relays that find writes failing last long enough
/// for #2's reset to come in the middle of them.
const ORDER_MEMBERS: usize = 1000;
/// `--max-queue` in the order test: room for the list of who is online.
const ORDER_MAX_QUEUE: usize = 16 * 1024;
const ORDER_ROUNDS: usize = 3;
/// Lines the reader takes at most before it gives up.
const MAX_HEARD: usize = 100_000;

/// Keeps the tests of this file from running at the same time: each loads both cores, and one
/// measures how long the loop is busy.
fn alone() -> MutexGuard<'static, ()> {
    static ALONE: Mutex<()> = Mutex::new(());
    ALONE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connects `n` members to a fresh room. They join in batches; after each batch every member reads
/// what the room sent it so far (the greeting, who is online, the arrivals), so the kernel holds
/// little and chatd's queues are empty once all are in. Member `i` has id `#i+1`.
#[track_caller]
fn fill_room(chatd: &mut Chatd, n: usize) -> Vec<TcpStream> {
    let mut members: Vec<TcpStream> = Vec::with_capacity(n);
    let mut buf = vec![0; 64 * 1024];
    while members.len() < n {
        let batch = JOIN_BATCH.min(n - members.len());
        for _ in 0..batch {
            let member = TcpStream::connect(chatd.addr()).expect("connect a member");
            member.set_nonblocking(true).expect("nonblocking");
            members.push(member);
        }
        let joined = members.len();
        chatd.expect_report(&format!(" #{joined} ({joined} online)"));
        for member in &mut members {
            drain(member, &mut buf);
        }
    }
    assert_eq!(chatd.seen_count("disconnect "), 0, "a member left early");
    for member in &members {
        member.set_nonblocking(false).expect("blocking");
    }
    members
}

/// How chatd sees a member: `IP:PORT`.
fn peer(member: &TcpStream) -> String {
    member.local_addr().expect("local addr").to_string()
}

/// Member #1's line that, relayed as `#1: <line>`, is exactly `max_queue` bytes.
fn filler(max_queue: usize) -> String {
    "f".repeat(max_queue - "#1: \n".len())
}

#[track_caller]
fn say(member: &mut TcpStream, lines: &str) {
    member
        .write_all(format!("{lines}\n").as_bytes())
        .expect("send to chatd");
}

/// Sends `lines`, then closes with a reset (SO_LINGER 0) once the socket is dropped.
#[track_caller]
fn say_and_reset(member: &mut TcpStream, lines: &str) {
    say(member, lines);
    SockRef::from(&*member)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}

/// Stops chatd (SIGSTOP) and waits until it has: what arrives meanwhile, it finds all at once.
#[track_caller]
fn stop(chatd: &Chatd) {
    chatd.signal(libc::SIGSTOP);
    let mut status = 0;
    // SAFETY: waitpid writes only `status`; WUNTRACED reports the stop without reaping the child.
    let pid = unsafe { libc::waitpid(chatd.pid(), &mut status, libc::WUNTRACED) };
    assert!(
        pid == chatd.pid() && libc::WIFSTOPPED(status),
        "chatd did not stop: waitpid gave {pid}, status {status:#x}"
    );
}

/// Reads lines until `* #2 left`, the end of the stream, an error or `MAX_HEARD` lines; tells
/// `woke` when the first one comes.
fn listen(reader: TcpStream, woke: &mpsc::Sender<()>) -> Vec<String> {
    let _ = reader.set_read_timeout(Some(WAIT));
    let mut reader = BufReader::new(reader);
    let mut heard = Vec::new();
    while heard.len() < MAX_HEARD {
        let mut line = String::new();
        if !matches!(reader.read_line(&mut line), Ok(1..)) {
            break;
        }
        if heard.is_empty() {
            let _ = woke.send(());
        }
        let last = line.starts_with("◆ #2 left");
        heard.push(line.trim_end_matches('\n').to_owned());
        if last {
            break;
        }
    }
    heard
}

/// Reads what `member` has waiting, without blocking.
#[track_caller]
fn drain(member: &mut TcpStream, buf: &mut [u8]) {
    for _ in 0..1000 {
        match member.read(buf) {
            Ok(0) => panic!("chatd closed a member"),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("a member's read failed: {e}"),
        }
    }
    panic!("a member had more than 1000 reads waiting");
}

/// Connects a newcomer every `PROBE_EVERY` until `done`, and gives how long each waited for its
/// greeting (or why it got none).
fn probe(addr: SocketAddr, done: &AtomicBool) -> Vec<Result<Duration, String>> {
    let mut results = Vec::new();
    for _ in 0..MAX_PROBES {
        if done.load(Ordering::Relaxed) {
            break;
        }
        let start = Instant::now();
        let greeted = TcpStream::connect(addr).and_then(|stream| {
            stream.set_read_timeout(Some(WAIT))?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line)?;
            match line.contains("welcome") {
                true => Ok(start.elapsed()),
                false => Err(io::Error::other(format!("greeting was {line:?}"))),
            }
        });
        results.push(greeted.map_err(|e| e.to_string()));
        // Pacing between newcomers, not a wait for anything.
        thread::sleep(PROBE_EVERY);
    }
    results
}

/// The peer and reason of a `disconnect` report.
fn disconnect(line: &str) -> Option<(&str, &str)> {
    let mut words = report_body(line).strip_prefix("disconnect ")?.split(' ');
    let peer = words.next()?;
    let _id = words.next()?;
    Some((peer, words.next()?))
}

/// Raises this process's soft limit on open files (chatd inherits it) to at least `wanted`, if the
/// hard limit allows; fails the test if it does not.
fn raise_open_files_limit(wanted: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let wanted = wanted as libc::rlim_t;
        if limit.rlim_cur < wanted {
            assert!(
                limit.rlim_max >= wanted,
                "open files limited to {}, the test needs {wanted}",
                limit.rlim_max
            );
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}
