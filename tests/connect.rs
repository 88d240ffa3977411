//! Connecting and leaving: the `listening on`, `connect`, `disconnect` and `refused` reports, ids,
//! addresses, and listen failures.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};

use common::{Chatd, Client, report_body, run_to_failure};

/// Each connect and disconnect is reported with the client's address and port as the client sees
/// its own socket, its id, and the number online.
#[test]
fn reports_connect_and_disconnect_with_address_and_port() {
    let mut chatd = Chatd::spawn(&[]);
    let client = Client::connect(chatd.addr());
    let peer = client.peer();
    chatd.expect_body(&format!("connect {peer} #1 (1 online)"));
    drop(client);
    chatd.expect_body(&format!("disconnect {peer} #1 closed (0 online)"));
}

/// Ids count up and are never reused, even though slab slots are.
#[test]
fn ids_are_never_reused() {
    let mut chatd = Chatd::spawn(&[]);
    for id in 1..=5 {
        let client = Client::connect(chatd.addr());
        chatd.expect_body(&format!("connect {} #{id} (1 online)", client.peer()));
        drop(client);
        chatd.expect_report(&format!("#{id} closed (0 online)"));
    }
}

/// More than five clients at once, each shown with its own port, and the online count adds up.
#[test]
fn many_clients_at_once_are_counted() {
    let mut chatd = Chatd::spawn(&[]);
    let clients: Vec<Client> = (0..8).map(|_| Client::connect(chatd.addr())).collect();
    for (i, client) in clients.iter().enumerate() {
        chatd.expect_body(&format!(
            "connect {} #{} ({} online)",
            client.peer(),
            i + 1,
            i + 1
        ));
    }
    for (i, client) in clients.into_iter().enumerate() {
        let peer = client.peer();
        drop(client);
        chatd.expect_body(&format!(
            "disconnect {peer} #{} closed ({} online)",
            i + 1,
            7 - i
        ));
    }
}

/// The client past `--max-clients` is told `server full`, closed and reported as refused; the
/// others are not disturbed.
#[test]
fn refuses_clients_past_max_clients() {
    let mut chatd = Chatd::spawn(&["--max-clients", "2"]);
    chatd.expect_report("accepting at most 2 clients");
    let mut first = Client::connect(chatd.addr());
    let _second = Client::connect(chatd.addr());
    let mut third = Client::connect_quiet(chatd.addr());
    assert_eq!(third.read_line(), "server full");
    assert_eq!(third.read_to_end(), "");
    chatd.expect_body(&format!("refused {} (server full)", third.peer()));
    first.send_line("still here");
    chatd.expect_report("#1: still here");
}

/// Without `--max-clients` the limit comes from the open-files limit and is printed at start.
#[test]
fn default_max_clients_follows_the_open_files_limit() {
    let mut chatd = Chatd::spawn(&[]);
    let line = chatd.expect_report("accepting at most ");
    let max: u64 = report_body(&line)
        .split(' ')
        .nth(3)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    assert!(
        max > 0 && max < limit.rlim_cur,
        "max clients {max} with open-files limit {}",
        limit.rlim_cur
    );
}

/// A `[::]` listener serves IPv4 clients too and shows them as plain IPv4; IPv6 clients are shown
/// as `[IPv6]:PORT`.
#[test]
fn dual_stack_listener_shows_ipv4_clients_as_ipv4() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 on this machine");
        return;
    }
    let mut chatd = Chatd::spawn(&["--listen", "[::]:0"]);
    let port = chatd.addr().port();
    let v4 = Client::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    chatd.expect_body(&format!("connect {} #1 (1 online)", v4.peer()));
    assert!(v4.peer().starts_with("127.0.0.1:"));
    let v6 = Client::connect(format!("[::1]:{port}").parse().expect("address"));
    assert!(v6.peer().starts_with("[::1]:"));
    chatd.expect_body(&format!("connect {} #2 (2 online)", v6.peer()));
}

/// `--listen` repeats: every listener is printed with its real address and serves clients.
#[test]
fn listens_on_every_address_given() {
    let mut chatd = Chatd::spawn(&["--listen", "127.0.0.1:0", "--listen", "127.0.0.2:0"]);
    assert_eq!(chatd.addrs.len(), 2);
    assert_ne!(chatd.addrs[0], chatd.addrs[1]);
    for addr in chatd.addrs.clone() {
        let client = Client::connect(addr);
        chatd.expect_report(&format!("connect {}", client.peer()));
    }
}

/// A port in use is one clear line on stderr naming the address and the OS reason, and a non-zero
/// exit; no panic.
#[test]
fn port_in_use_is_one_clear_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("address").to_string();
    let (code, stderr) = run_to_failure(&["--listen", &addr]);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("Address already in use"),
        "stderr: {stderr}"
    );
    // And nothing is listening in its place: the port still belongs to us.
    assert!(TcpStream::connect(&addr).is_ok());
}

/// An address this machine does not have fails the same way.
#[test]
fn unavailable_address_is_one_clear_line() {
    let (code, stderr) = run_to_failure(&["--listen", "192.0.2.1:0"]);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("chatd: cannot listen on 192.0.2.1:0: "),
        "stderr: {stderr}"
    );
}

/// A malformed address is refused by the command-line parser, naming the flag.
#[test]
fn malformed_address_is_a_usage_error() {
    let (code, stderr) = run_to_failure(&["--listen", "not-an-address"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--listen"), "stderr: {stderr}");
}
