//! chatd can always be stopped, and no signal ends it by surprise: a second SIGINT or SIGTERM
//! ends it even while its loop is stuck writing to a pipe nobody reads; SIGHUP is a graceful
//! shutdown when the console is a terminal and a log reopen when headless; SIGUSR1 reopens the log
//! file; SIGALRM and the like are ignored. And a client whose machine vanished is probed (TCP
//! keepalive), so it cannot hold its slot forever.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use common::{Chatd, Client, WAIT, chatd_bin};

/// Whether process `pid` is blocked writing to a pipe (`pipe_write`, or `anon_pipe_write` on
/// newer kernels).
fn blocked_on_pipe(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("pipe_write"))
}

/// Bytes written to a pipe and not read yet (FIONREAD works on either end).
fn unread_in_pipe(pipe: &impl std::os::fd::AsRawFd) -> i32 {
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at a live local; the
    // descriptor is the pipe's, open for as long as `pipe` is.
    let ok = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut bytes) } == 0;
    if ok { bytes } else { 0 }
}

/// Whether `signal` is pending for process `pid` (SigPnd or ShdPnd in /proc/PID/status).
fn is_pending(pid: u32, signal: i32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().any(|line| {
        let mask = line
            .strip_prefix("SigPnd:")
            .or_else(|| line.strip_prefix("ShdPnd:"));
        mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & (1 << (signal - 1)) != 0)
    })
}

/// stdout is a pipe that is never read (`chatd | less` with less stopped): once the pipe is full
/// the loop blocks in `write` and never sees a signal. The second SIGINT (or SIGTERM) still ends
/// chatd at once, from the signal handler; so does the first after `/quit` was typed.
#[test]
fn a_second_interrupt_ends_chatd_even_when_stdout_is_never_read() {
    // (signal, exit code, whether `/quit` is typed first: then one signal is enough)
    for (signal, code, quit) in [
        (libc::SIGINT, 130, false),
        (libc::SIGTERM, 143, false),
        (libc::SIGINT, 130, true),
    ] {
        let mut child = std::process::Command::new(chatd_bin())
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chatd");
        let pid = child.id();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        while !line.contains("listening on ") {
            line.clear();
            assert!(stdout.read_line(&mut line).expect("read stdout") > 0);
        }
        let port: u16 = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        // From here on nobody reads stdout. A client's lines fill the pipe with reports.
        let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let talk = format!("{}\n", "r".repeat(60)).repeat(4000);
        let deadline = Instant::now() + WAIT;
        while !blocked_on_pipe(pid) {
            assert!(
                Instant::now() < deadline,
                "chatd never blocked on its stdout"
            );
            client.write_all(talk.as_bytes()).expect("send");
            thread::sleep(Duration::from_millis(10));
        }
        if quit {
            // Typed while the loop is stuck: the console thread reads it all the same.
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"/quit\n").expect("type /quit");
            let deadline = Instant::now() + WAIT;
            while unread_in_pipe(&stdin) > 0 {
                assert!(Instant::now() < deadline, "the console never read /quit");
                thread::sleep(Duration::from_millis(1));
            }
            child.stdin = Some(stdin);
        }
        for _ in 0..if quit { 1 } else { 2 } {
            // SAFETY: kill only sends a signal to our own child, which we have not reaped.
            assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
            // A signal sent while the same one is still pending is merged into it: wait until the
            // handler has taken this one (as a person's two Ctrl-C are apart).
            let deadline = Instant::now() + WAIT;
            while is_pending(pid, signal) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
        }
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "signal {signal} twice did not end chatd"
            );
            thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(
            status.code(),
            Some(code),
            "exit code after signal {signal} twice"
        );
        let mut stderr = String::new();
        let _ =
            std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr);
        assert!(
            stderr.contains("second interrupt: exiting now"),
            "stderr: {stderr}"
        );
    }
}

/// Headless, SIGHUP and SIGUSR1 both reopen the log file: after the file is renamed (as logrotate
/// does) and the signal sent, every later report is in a new file at the path, and the server
/// keeps serving.
#[test]
fn sighup_headless_and_sigusr1_reopen_the_log_file() {
    for (signal, name) in [(libc::SIGHUP, "SIGHUP"), (libc::SIGUSR1, "SIGUSR1")] {
        let dir = std::env::temp_dir().join(format!("chatd-reopen-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("chatd.log");
        let path_arg = path.to_str().expect("utf-8 path");
        let mut chatd = Chatd::spawn(&["--log-file", path_arg]);
        let mut client = Client::connect(chatd.addr());
        client.send_line("before the rotation");
        chatd.expect_report("before the rotation");
        fs::rename(&path, dir.join("chatd.log.1")).expect("rotate");
        chatd.signal(signal);
        chatd.expect_report(&format!("reopening the log file ({name})"));
        client.send_line("after the rotation");
        chatd.expect_report("after the rotation");
        chatd.send_console("/quit");
        assert_eq!(chatd.wait_exit().code(), Some(0));
        let old = fs::read_to_string(dir.join("chatd.log.1")).expect("the rotated file");
        let new = fs::read_to_string(&path).expect("the new file");
        assert!(old.contains("before the rotation") && !old.contains("after the rotation"));
        assert!(
            new.contains(&format!("reopening the log file ({name})"))
                && new.contains("after the rotation")
                && new.contains("stopped"),
            "new file: {new}"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Every rotation at `--log-max-size` is its own warning, also when one turn's reports fill the
/// file several times over (a client's burst of lines read in one turn): none is lost.
#[test]
fn every_rotation_in_one_turn_is_reported() {
    let dir = std::env::temp_dir().join(format!("chatd-rotations-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("chatd.log");
    let path_arg = path.to_str().expect("utf-8 path");
    let mut chatd = Chatd::spawn(&["--log-file", path_arg, "--log-max-size", "20000"]);
    let mut client = Client::connect(chatd.addr());
    // About 60 bytes a report: 2 000 lines in one write fill the 20 000 bytes about six times,
    // and chatd reads them in few turns, so one turn's reports rotate the file more than once.
    let burst: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    client.send(burst.as_bytes());
    chatd.expect_report("line 1999");
    chatd.expect_report("(rotation 3)");
    for k in 1..=3 {
        assert_eq!(
            chatd.seen_count(&format!("(rotation {k})")),
            1,
            "rotation {k}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

/// SIGALRM and the other signals whose default would end the process are reported and ignored:
/// clients go on being served.
#[test]
fn sigalrm_and_the_like_do_not_end_chatd() {
    let mut chatd = Chatd::spawn(&[]);
    let mut client = Client::connect(chatd.addr());
    for (signal, name) in [
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGSTKFLT, "SIGSTKFLT"),
        (libc::SIGRTMIN(), "SIGRTMIN+0"),
        (libc::SIGRTMIN() + 3, "SIGRTMIN+3"),
        (
            libc::SIGRTMAX(),
            &format!("SIGRTMIN+{}", libc::SIGRTMAX() - libc::SIGRTMIN()),
        ),
    ] {
        chatd.signal(signal);
        chatd.expect_body(&format!("ignored {name}"));
    }
    // Headless and without a log file, SIGHUP is a reload with nothing to reopen.
    chatd.signal(libc::SIGHUP);
    chatd.expect_body("no log file to reopen (SIGHUP)");
    client.send_line("still here");
    chatd.expect_report("still here");
    assert!(chatd.try_exit_status().is_none());
}

/// With the console on a terminal, SIGHUP means the operator's terminal is gone: a graceful
/// shutdown, clients told, exit 0.
#[test]
fn sighup_with_a_terminal_console_shuts_down_gracefully() {
    let (master, slave) = common::pty(80);
    let mut chatd = Chatd::spawn_with(&[], Stdio::from(slave));
    let mut client = Client::connect(chatd.addr());
    chatd.signal(libc::SIGHUP);
    chatd.expect_body("shutting down (SIGHUP)");
    assert!(client.read_to_end().ends_with("server shutting down\n"));
    assert_eq!(chatd.wait_exit().code(), Some(0));
    drop(master);
}

/// The server's side of a client's connection, from /proc/net/tcp: its timer kind (`tr`, 2 for
/// keepalive) and when the timer fires, in seconds.
fn server_side_timer(server_port: u16, client_port: u16) -> Option<(u32, u64)> {
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        if port_of(cols.get(1)?)? != server_port || port_of(cols.get(2)?)? != client_port {
            return None;
        }
        let (kind, when) = cols.get(5)?.split_once(':')?;
        // USER_HZ is 100 on Linux: the `when` field counts hundredths of a second.
        Some((
            kind.parse().ok()?,
            u64::from_str_radix(when, 16).ok()? / 100,
        ))
    })
}

/// Accepted sockets carry TCP keepalive (default: first probe after 60 s of silence), so a peer
/// that vanished without a FIN or a reset is found and reported `reset`; `--keepalive 0` turns it
/// off, and a value past the kernel's limit (32767 s) is a usage error, not silently ignored.
#[test]
fn keepalive_is_on_by_default_and_can_be_turned_off() {
    let (code, stderr) = common::run_to_failure(&["--keepalive", "32768"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--keepalive"), "{stderr}");
    for (args, expected) in [
        (&[][..], Some(60)),
        (&["--keepalive", "7"][..], Some(7)),
        (&["--keepalive", "0"][..], None),
    ] {
        let mut chatd = Chatd::spawn(args);
        let client = Client::connect(chatd.addr());
        chatd.expect_report("connect ");
        let server_port = chatd.addr().port();
        let client_port = client.stream().local_addr().expect("local addr").port();
        let (kind, when) =
            server_side_timer(server_port, client_port).expect("the server's socket");
        match expected {
            Some(secs) => {
                assert_eq!(kind, 2, "keepalive timer armed with {args:?}");
                assert!(
                    when <= secs && when + 5 >= secs,
                    "fires in {when} s, expected {secs}"
                );
            }
            None => assert_eq!(kind, 0, "no timer with {args:?}"),
        }
    }
}
