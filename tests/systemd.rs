//! chatd under systemd, without systemd: the test hands chatd a listening socket as fd 3 with
//! `LISTEN_FDS=1` and `LISTEN_PID` set to chatd's own pid (socket activation, sd_listen_fds(3)),
//! and reads the sd_notify datagrams on a `NOTIFY_SOCKET` of its own. Also through
//! `systemd-socket-activate` when it is installed.
//!
//! `LISTEN_PID` must be the pid of the process that reads it, which the test cannot know before
//! the fork, and a `pre_exec` closure may only make async-signal-safe calls (not `setenv`). So
//! the child is `/bin/sh -c 'LISTEN_PID=$$ exec "$0" "$@"' chatd ARGS...`: the shell sets its own
//! pid, then becomes chatd, keeping it; `pre_exec` only `dup2`s the socket to fd 3.

mod common;

use std::ffi::OsString;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Chatd, Client, WAIT, chatd_bin};

/// The passed socket is served (its address reported `listening on`, a client greeted through
/// it), the default `--listen` is not bound, and systemd hears READY=1 with the status, the online
/// count when it changes, and STOPPING=1 at the shutdown.
#[test]
fn serves_the_passed_socket_and_notifies_systemd() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let passed = listener.local_addr().expect("addr");
    let mut notify = NotifySocket::path();
    let command = activated(
        Fd3::Socket(&listener),
        &[("NOTIFY_SOCKET", &notify.name())],
        &[],
    );
    let mut chatd = Chatd::spawn_command(command, &[]);
    assert_eq!(chatd.addr(), passed, "the passed socket is the one served");
    chatd.expect_report("accepting at most");
    assert_eq!(
        chatd.seen_count("listening on"),
        1,
        "the default --listen is not bound"
    );
    let ready = notify.expect("READY=1");
    assert!(ready.contains("STATUS=0 online"), "{ready:?}");

    let client = Client::connect(passed);
    chatd.expect_body(&format!("connect {} #1 (1 online)", client.peer()));
    notify.expect("STATUS=1 online");

    chatd.signal(libc::SIGTERM);
    notify.expect("STOPPING=1");
    assert!(chatd.wait_exit().success());
}

/// With WATCHDOG_USEC set, WATCHDOG=1 comes from the loop's timer every half interval (here
/// 100 ms), to an abstract-namespace notify socket (`@name`).
#[test]
fn watchdog_keepalives_come_every_half_interval() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut notify = NotifySocket::abstract_name();
    let env = [
        ("NOTIFY_SOCKET", &*notify.name()),
        ("WATCHDOG_USEC", "200000"),
    ];
    let command = activated(Fd3::Socket(&listener), &env, &[]);
    let _chatd = Chatd::spawn_command(command, &[]);
    notify.expect("READY=1");
    let first = Instant::now();
    notify.expect("WATCHDOG=1");
    for _ in 0..3 {
        notify.expect("WATCHDOG=1");
    }
    // Three periods of 100 ms at least between the first and the fourth: paced, not a flood.
    let span = first.elapsed();
    assert!(span >= Duration::from_millis(250), "4 pings in {span:?}");
}

/// An explicit `--listen` is served beside the passed socket (documented in README.md).
#[test]
fn explicit_listen_is_served_beside_the_passed_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let passed = listener.local_addr().expect("addr");
    let args = ["--listen", "127.0.0.1:0"];
    let command = activated(Fd3::Socket(&listener), &[], &args);
    let mut chatd = Chatd::spawn_command(command, &args);
    let line = chatd.expect_report("listening on ");
    let bound: SocketAddr = common::report_body(&line)["listening on ".len()..]
        .parse()
        .expect("an address");
    assert_eq!(chatd.addr(), passed, "the passed socket comes first");
    assert_ne!(bound, passed);
    for addr in [passed, bound] {
        let client = Client::connect(addr);
        chatd.expect_report(&format!("connect {} #", client.peer()));
        drop(client);
    }
}

/// Two sockets, LISTEN_FDNAMES=chat:metrics: fd 3 is the chat listener (a client greeted), fd 4
/// the metrics listener, reported `metrics on ADDR` and answering `GET /metrics` (with `curl`).
#[test]
fn a_socket_named_metrics_is_the_metrics_listener() {
    let chat = TcpListener::bind("127.0.0.1:0").expect("bind");
    let metrics = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (chat_addr, metrics_addr) = (
        chat.local_addr().expect("addr"),
        metrics.local_addr().expect("addr"),
    );
    let env = [("LISTEN_FDNAMES", "chat:metrics")];
    let command = activated_two([&chat, &metrics], &env, &[]);
    let mut chatd = Chatd::spawn_command(command, &[]);
    chatd.expect_body(&format!("metrics on {metrics_addr}"));
    chatd.expect_report("accepting at most");
    assert_eq!(chatd.addr(), chat_addr);
    assert_eq!(
        chatd.seen_count("listening on"),
        1,
        "fd 4 is not a chat listener"
    );

    let client = Client::connect(chat_addr); // Reads the greeting.
    chatd.expect_body(&format!("connect {} #1 (1 online)", client.peer()));

    let output = Command::new("curl")
        .args(["-sS", "-w", "\\n%{http_code}"])
        .arg(format!("http://{metrics_addr}/metrics"))
        .output()
        .expect("curl is installed (apt-get install curl; .ci/run does)");
    assert!(output.status.success(), "curl: {output:?}");
    let body = String::from_utf8_lossy(&output.stdout);
    assert!(body.ends_with("\n200"), "{body}");
    assert!(body.contains("\nchatd_clients_online 1\n"), "{body}");
}

/// The other order (metrics:chat), and a raw GET on the metrics socket: names, not positions,
/// decide; an unknown name (`chat` here, or anything else) is a chat listener.
#[test]
fn names_not_positions_decide() {
    let metrics = TcpListener::bind("127.0.0.1:0").expect("bind");
    let chat = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (chat_addr, metrics_addr) = (
        chat.local_addr().expect("addr"),
        metrics.local_addr().expect("addr"),
    );
    let env = [("LISTEN_FDNAMES", "metrics:anything")];
    let command = activated_two([&metrics, &chat], &env, &[]);
    let mut chatd = Chatd::spawn_command(command, &[]);
    chatd.expect_body(&format!("metrics on {metrics_addr}"));
    chatd.expect_report("accepting at most");
    assert_eq!(chatd.addr(), chat_addr);
    let mut stream = TcpStream::connect(metrics_addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut answer = String::new();
    let _ = io::Read::read_to_string(&mut stream, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("\nchatd_clients_online 0\n"), "{answer}");
}

/// A socket named `tls` is refused at start with one clear line and exit code 1; so are a second
/// `metrics` socket, names that do not match the count, and a `metrics` socket beside `--metrics`.
#[test]
fn refused_names_are_one_clear_line() {
    let one = TcpListener::bind("127.0.0.1:0").expect("bind");
    let two = TcpListener::bind("127.0.0.1:0").expect("bind");
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "chat:tls",
            &[],
            "chatd: socket activation: fd 4 is named tls, but chatd serves TLS only on --tls-listen, not on a passed socket\n",
        ),
        (
            "metrics:metrics",
            &[],
            "chatd: socket activation: fd 4 is a second socket named metrics; chatd serves one\n",
        ),
        (
            "chat",
            &[],
            "chatd: socket activation: LISTEN_FDNAMES names 1 sockets but LISTEN_FDS=2\n",
        ),
        (
            "chat:metrics",
            &["--metrics", "127.0.0.1:0"],
            "chatd: socket activation: a socket named metrics was passed and --metrics 127.0.0.1:0 given; use one\n",
        ),
    ];
    for (names, args, expected) in cases {
        let env = [("LISTEN_FDNAMES", names)];
        let (code, stderr) = run_to_exit(activated_two([&one, &two], &env, args));
        assert_eq!(code, Some(1), "{names}: {stderr}");
        assert_eq!(stderr, expected, "{names}");
    }
}

/// LISTEN_PID naming another process: the variables are not for chatd, fd 3 is left alone, and the
/// `--listen` addresses are served as without systemd.
#[test]
fn sockets_for_another_pid_are_not_taken() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let passed = listener.local_addr().expect("addr");
    // `env` overrides the LISTEN_PID the shell sets, then becomes chatd.
    let argv = ["env".into(), "LISTEN_PID=1".into(), chatd_bin()]
        .into_iter()
        .chain(["--listen".into(), "127.0.0.1:0".into()]);
    let command = launch(Fd3::Socket(&listener), &[], argv);
    let mut chatd = Chatd::spawn_command(command, &["--listen"]);
    chatd.expect_report("accepting at most");
    assert_eq!(chatd.seen_count("listening on"), 1);
    assert_ne!(chatd.addr(), passed);
    let client = Client::connect(chatd.addr());
    chatd.expect_body(&format!("connect {} #1 (1 online)", client.peer()));
}

/// LISTEN_FDS=1 with no fd 3 open: one clear line on stderr and exit code 1, not a hang.
#[test]
fn listen_fds_without_the_descriptor_is_one_clear_line() {
    let (code, stderr) = run_to_exit(activated(Fd3::Closed, &[], &[]));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "chatd: socket activation: LISTEN_FDS=1 but fd 3 is not open\n"
    );
}

/// A descriptor that is not a listening TCP socket (here /dev/null) is refused the same way.
#[test]
fn a_passed_descriptor_that_is_not_a_listener_is_refused() {
    let file = std::fs::File::open("/dev/null").expect("open /dev/null");
    let (code, stderr) = run_to_exit(activated(Fd3::Other(file.as_raw_fd()), &[], &[]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("chatd: socket activation: fd 3 is not a listening TCP socket: ")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    // A connected (not listening) TCP socket, too.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (code, stderr) = run_to_exit(activated(Fd3::Other(stream.as_raw_fd()), &[], &[]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("SO_ACCEPTCONN is 0"), "{stderr}");
}

/// A notify socket nobody listens on: one warning, and chatd serves all the same.
#[test]
fn a_refusing_notify_socket_is_one_warning() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let missing = NotifySocket::unused_path();
    let env = [("NOTIFY_SOCKET", missing.to_str().expect("UTF-8 path"))];
    let command = activated(Fd3::Socket(&listener), &env, &[]);
    let mut chatd = Chatd::spawn_command(command, &[]);
    // Reported at startup, before the `listening on` line the harness waits for.
    let warning = format!("systemd notify: NOTIFY_SOCKET={}: ", missing.display());
    assert_eq!(chatd.seen_count(&warning), 1);
    assert_eq!(chatd.seen_count("no more notifications"), 1);
    let client = Client::connect(chatd.addr());
    chatd.expect_body(&format!("connect {} #1 (1 online)", client.peer()));
    assert_eq!(chatd.seen_count("systemd notify"), 1);
}

/// `systemd-socket-activate` (systemd's own tool for this) starts chatd on a socket it passes on:
/// it waits for the first connection, then execs chatd, which serves that connection.
#[test]
fn systemd_socket_activate_starts_chatd() {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        println!("systemd-socket-activate is not installed: test skipped");
        return;
    }
    // systemd-socket-activate cannot listen on port 0; it takes over the sockets passed to it,
    // so it gets ours the way chatd does, and passes it on.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let passed = listener.local_addr().expect("addr");
    let mut notify = NotifySocket::path();
    let argv = [
        "systemd-socket-activate".into(),
        "-E".into(),
        format!("NOTIFY_SOCKET={}", notify.name()).into(),
        chatd_bin(),
    ];
    // Its own chatter ("Listening on ...") kept off the test's output.
    let command = launch(
        Fd3::Socket(&listener),
        &[("SYSTEMD_LOG_LEVEL", "warning")],
        argv,
    );
    // The connection that makes it start chatd, queued before chatd exists.
    let stream = TcpStream::connect(passed).expect("connect");
    let mut chatd = Chatd::spawn_command(command, &[]);
    assert_eq!(chatd.addr(), passed);
    let mut client = Client::from_stream(stream);
    assert!(client.read_line().contains("welcome"));
    chatd.expect_body(&format!("connect {} #1 (1 online)", client.peer()));
    notify.expect("READY=1");
    chatd.signal(libc::SIGTERM);
    notify.expect("STOPPING=1");
    assert!(chatd.wait_exit().success());
}

/// What the child finds as fd 3.
enum Fd3<'a> {
    Socket(&'a TcpListener),
    Other(RawFd),
    /// Nothing: fd 3 is closed.
    Closed,
}

/// `/bin/sh -c 'LISTEN_PID=$$ exec "$0" "$@"' chatd ARGS` with `LISTEN_FDS=1`, `env` set and `fd3`
/// as fd 3, its stdin piped.
fn activated(fd3: Fd3, env: &[(&str, &str)], args: &[&str]) -> Command {
    let argv = std::iter::once(chatd_bin()).chain(args.iter().map(Into::into));
    launch(fd3, env, argv)
}

/// `/bin/sh -c 'LISTEN_PID=$$ exec "$0" "$@"' chatd ARGS` with `LISTEN_FDS=2`, the two
/// listeners as fds 3 and 4, `env` set (e.g. `LISTEN_FDNAMES`), its stdin piped.
fn activated_two(fds: [&TcpListener; 2], env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#])
        .arg(chatd_bin())
        .args(args)
        .env("LISTEN_FDS", "2")
        .envs(env.iter().copied())
        .stdin(Stdio::piped());
    let sources = fds.map(AsRawFd::as_raw_fd);
    // SAFETY: the closure makes only async-signal-safe calls (fcntl, dup2) and allocates nothing;
    // the listeners stay open in the parent until the child has been spawned. Each source is first
    // copied above fd 9, so that placing one on fd 3 cannot close the other.
    unsafe {
        command.pre_exec(move || {
            let mut high = [0; 2];
            for (slot, fd) in high.iter_mut().zip(sources) {
                *slot = libc::fcntl(fd, libc::F_DUPFD, 10);
                if *slot == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (target, fd) in (3..).zip(high) {
                if libc::dup2(fd, target) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    command
}

/// `/bin/sh -c 'LISTEN_PID=$$ exec "$0" "$@"' ARGV...`, as `activated` describes.
fn launch(fd3: Fd3, env: &[(&str, &str)], argv: impl IntoIterator<Item = OsString>) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#])
        .args(argv)
        .env("LISTEN_FDS", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::piped());
    let fd = match fd3 {
        Fd3::Socket(listener) => Some(listener.as_raw_fd()),
        Fd3::Other(fd) => Some(fd),
        Fd3::Closed => None,
    };
    // SAFETY: the closure makes only async-signal-safe calls (dup2, fcntl, close) and allocates
    // nothing; `fd` stays open in the parent until the child has been spawned.
    unsafe {
        command.pre_exec(move || {
            let ok = match fd {
                // dup2 onto itself would keep close-on-exec: clear it instead.
                Some(3) => libc::fcntl(3, libc::F_SETFD, 0) != -1,
                Some(fd) => libc::dup2(fd, 3) != -1,
                None => {
                    libc::close(3);
                    true
                }
            };
            if ok {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })
    };
    command
}

/// Runs `command` to its exit, failing if it takes longer than `WAIT`: its exit code and stderr.
#[track_caller]
fn run_to_exit(mut command: Command) -> (Option<i32>, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chatd did not exit within {WAIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
        .expect("read stderr");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (status.code(), stderr)
}

/// The test's end of sd_notify: a datagram socket chatd sends to.
struct NotifySocket {
    socket: UnixDatagram,
    /// The `NOTIFY_SOCKET` value: a path, or `@name`.
    name: String,
    /// The path to remove at the end, if it is one.
    path: Option<PathBuf>,
    /// Every datagram received so far, for failure messages.
    seen: Vec<String>,
}

impl NotifySocket {
    /// Bound to a fresh path in the temporary directory.
    fn path() -> NotifySocket {
        let path = NotifySocket::unused_path();
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        let name = path.to_str().expect("UTF-8 path").to_owned();
        NotifySocket {
            socket,
            name,
            path: Some(path),
            seen: Vec::new(),
        }
    }

    /// Bound to a fresh name in the abstract namespace.
    fn abstract_name() -> NotifySocket {
        let name = format!("chatd-notify-{}-{}", std::process::id(), unique());
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the notify socket");
        NotifySocket {
            socket,
            name: format!("@{name}"),
            path: None,
            seen: Vec::new(),
        }
    }

    /// A path in the temporary directory that nothing is bound to.
    fn unused_path() -> PathBuf {
        std::env::temp_dir().join(format!("chatd-notify-{}-{}", std::process::id(), unique()))
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    /// Waits for a datagram with a line that is exactly `state`, and returns the whole datagram.
    #[track_caller]
    fn expect(&mut self, state: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {state:?} within {WAIT:?}; seen: {:?}",
                self.seen
            );
            self.socket.set_read_timeout(Some(left)).expect("timeout");
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.seen.push(datagram.clone());
                    if datagram.lines().any(|line| line == state) {
                        return datagram;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A number not handed out before in this test binary.
fn unique() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
