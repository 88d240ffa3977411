//! Access control against the real binary: `--allow`/`--deny` and their files, IPv4-mapped
//! peers, `--max-per-ip`, `--max-connect-rate`, the console's `/ban`, `/bans` and `/unban`, the
//! rule files read again on SIGHUP, and every refusal as one `refused <peer> (<why>)` report that
//! never comes with an id or a `connect`.
//!
//! Clients from other loopback addresses (127.0.0.2, ...) are bound with socket2 before they
//! connect, so one machine can play several addresses.

mod common;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;

use socket2::{Domain, Socket, Type};

use common::{Chatd, Client, run_to_failure};

/// A client from `local` (an IP address), connected to `addr`, nothing read yet.
#[track_caller]
fn connect_from(local: &str, addr: SocketAddr) -> Client {
    let local: SocketAddr = format!("{local}:0").parse().expect("a local address");
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    socket.bind(&local.into()).expect("bind the client");
    socket.connect(&addr.into()).expect("connect to chatd");
    Client::from_stream(TcpStream::from(socket))
}

/// A client from `local` that is let in: it reads the greeting.
#[track_caller]
fn admitted_from(local: &str, addr: SocketAddr) -> Client {
    let mut client = connect_from(local, addr);
    let greeting = client.read_line();
    assert!(greeting.contains("welcome"), "greeting was {greeting:?}");
    client
}

/// Asserts that the server closed `client` without sending it a byte: an end of file, or a reset
/// (a connection closed unread may be reset).
#[track_caller]
fn closed_silently(client: &mut Client) {
    let mut buf = [0; 64];
    match client.stream().try_clone().expect("clone").read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "the refused client read {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the refused client was not closed: {e}"),
    }
}

/// A file of its own for this test, with `text` in it.
fn rule_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatd-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the rule file");
    path
}

/// A client in a --deny block is closed at once, before any greeting, and the operator sees
/// `refused <peer> (denied)`: no id, no `connect`, nothing online.
#[test]
fn deny_closes_a_client_at_once_without_a_greeting() {
    let mut chatd = Chatd::spawn(&["--deny", "127.0.0.1"]);
    let mut client = Client::connect_quiet(chatd.addr());
    chatd.expect_body(&format!("refused {} (denied)", client.peer()));
    closed_silently(&mut client);
    chatd.send_console("/list");
    chatd.expect_body("0 online");
    assert_eq!(chatd.seen_count("] connect "), 0, "{:?}", chatd.seen());
}

/// ncat's rule: with an allow given, a client in no allow block is refused; one in an allow
/// block and a deny block is refused too; one in an allow block only is let in.
#[test]
fn allow_lets_in_only_its_blocks_and_deny_wins_over_allow() {
    let mut chatd = Chatd::spawn(&["--allow", "127.0.0.0/30", "--deny", "127.0.0.2"]);
    let addr = chatd.addr();
    let member = admitted_from("127.0.0.1", addr);
    chatd.expect_body(&format!("connect {} #1 (1 online)", member.peer()));
    for local in ["127.0.0.2", "127.0.0.9"] {
        let mut client = connect_from(local, addr);
        chatd.expect_body(&format!("refused {} (denied)", client.peer()));
        closed_silently(&mut client);
    }
    // Only the refused ones had no id: the next client is #2.
    let next = admitted_from("127.0.0.3", addr);
    chatd.expect_body(&format!("connect {} #2 (2 online)", next.peer()));
}

/// An IPv4 client of a dual-stack `[::]` listener arrives as `::ffff:a.b.c.d`: IPv4 rules still
/// match it, and an IPv6 rule matches an IPv6 client.
#[test]
fn ipv4_mapped_peers_match_ipv4_rules() {
    let mut chatd = Chatd::spawn(&["--listen", "[::]:0", "--deny", "127.0.0.1", "--deny", "::1"]);
    let port = chatd.addr().port();
    let mut v4 = Client::connect_quiet(SocketAddr::from(([127, 0, 0, 1], port)));
    chatd.expect_body(&format!("refused {} (denied)", v4.peer()));
    closed_silently(&mut v4);
    let mut v6 = Client::connect_quiet(format!("[::1]:{port}").parse().unwrap());
    chatd.expect_body(&format!("refused {} (denied)", v6.peer()));
    closed_silently(&mut v6);
    let other = admitted_from("127.0.0.2", SocketAddr::from(([127, 0, 0, 1], port)));
    chatd.expect_body(&format!("connect {} #1 (1 online)", other.peer()));
}

/// --allow-file and --deny-file take one block per line, `#` comments and blank lines, together
/// with the blocks given on the command line.
#[test]
fn rule_files_take_comments_and_blank_lines() {
    let allow = rule_file(
        "allow-files",
        "# the team\n\n127.0.0.1   # me\n  127.0.0.4/30\n",
    );
    let deny = rule_file("deny-files", "127.0.0.5 # not this one\n");
    let mut chatd = Chatd::spawn(&[
        "--allow-file",
        allow.to_str().unwrap(),
        "--deny-file",
        deny.to_str().unwrap(),
        "--allow",
        "127.0.0.2",
    ]);
    let addr = chatd.addr();
    for (local, admitted) in [
        ("127.0.0.1", true),
        ("127.0.0.2", true),
        ("127.0.0.3", false),
        ("127.0.0.6", true),
        ("127.0.0.5", false),
    ] {
        if admitted {
            let client = admitted_from(local, addr);
            chatd.expect_report(&format!("connect {} #", client.peer()));
        } else {
            let mut client = connect_from(local, addr);
            chatd.expect_body(&format!("refused {} (denied)", client.peer()));
            closed_silently(&mut client);
        }
    }
}

/// A malformed block, on the command line or in a file, stops chatd at start with a usage error
/// (exit code 2) that names the entry, and for a file its path and line.
#[test]
fn a_malformed_block_is_a_usage_error_naming_it() {
    let (code, stderr) = run_to_failure(&["--allow", "10.0.0.0/33"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("10.0.0.0/33"), "{stderr}");
    let (code, stderr) = run_to_failure(&["--deny", "example.com"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("example.com"), "{stderr}");

    let bad = rule_file("bad", "# fine\n10.0.0.0/8\n10.0.0.0/8/8\n");
    let (code, stderr) = run_to_failure(&["--deny-file", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    let place = format!(
        "--deny-file {}:3: bad entry \"10.0.0.0/8/8\"",
        bad.display()
    );
    assert!(stderr.contains(&place), "{stderr}");

    let missing = bad.with_file_name("missing");
    let (code, stderr) = run_to_failure(&["--allow-file", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");

    for rate in ["0", "ten", "5/hour"] {
        let (code, stderr) = run_to_failure(&["--max-connect-rate", rate]);
        assert_eq!(code, Some(2), "{rate}: {stderr}");
    }
    let (code, stderr) = run_to_failure(&["--max-per-ip", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
}

/// Past --max-per-ip, one more connection from the same address is told why and closed, and the
/// operator sees `refused <peer> (per-ip limit)`; another address is not held back, and once one
/// of the address's clients leaves, it may connect again.
#[test]
fn max_per_ip_tells_the_extra_connection_and_frees_a_place_on_leaving() {
    let mut chatd = Chatd::spawn(&["--max-per-ip", "2"]);
    let addr = chatd.addr();
    let mut clients = chatd.connect_clients(2);
    let mut extra = Client::connect_quiet(addr);
    chatd.expect_body(&format!("refused {} (per-ip limit)", extra.peer()));
    assert_eq!(extra.read_line(), "too many connections from your address");
    assert_eq!(extra.read_to_end(), "");
    let other = admitted_from("127.0.0.2", addr);
    chatd.expect_body(&format!("connect {} #3 (3 online)", other.peer()));

    let gone = clients.pop().expect("two clients");
    gone.stream().shutdown(std::net::Shutdown::Write).unwrap();
    chatd.expect_report(" #2 closed (2 online)");
    let again = Client::connect(addr);
    chatd.expect_body(&format!("connect {} #4 (3 online)", again.peer()));
}

/// Past --max-connect-rate, a connection is closed at once without a greeting; a run of refused
/// attempts is reported once, so a reconnect loop floods neither the room nor the operator.
#[test]
fn connect_rate_refuses_without_a_greeting_and_reports_a_run_once() {
    let mut chatd = Chatd::spawn(&["--max-connect-rate", "3/min", "--relay"]);
    let addr = chatd.addr();
    let clients = chatd.connect_clients(3);
    drop(clients);
    for _ in 0..5 {
        let mut client = Client::connect_quiet(addr);
        closed_silently(&mut client);
    }
    // Another address has its own count.
    let other = admitted_from("127.0.0.2", addr);
    chatd.expect_report(&format!("connect {} #4", other.peer()));
    chatd.send_console("/list");
    chatd.expect_report("] 1 online");
    assert_eq!(chatd.seen_count("(connect rate)"), 1, "{:?}", chatd.seen());
    assert_eq!(chatd.seen_count("] connect "), 4, "{:?}", chatd.seen());
    // Every refused attempt is counted all the same.
    chatd.send_console("/stats");
    let stats = chatd.expect_report("stats: ");
    assert!(
        stats.contains("refused 0 full 0 error 0 denied 0 banned 0 per-ip 5 rate 0 tls 0 auth;"),
        "{stats}"
    );
}

/// `/ban <id>` kicks every client at that client's address and refuses the address until
/// `/unban`; `/ban <CIDR> MINUTES` does the same for a block, for a time; `/bans` lists both with
/// the time left; `/unban` lifts one; `/help` names the three.
#[test]
fn ban_kicks_refuses_lists_and_lifts() {
    let mut chatd = Chatd::spawn(&[]);
    let addr = chatd.addr();
    let mut clients = chatd.connect_clients(2);
    let bystander = admitted_from("127.0.0.2", addr);
    chatd.expect_report(&format!("connect {} #3", bystander.peer()));

    chatd.send_console("/ban 1");
    chatd.expect_body("banned 127.0.0.1/32 until /unban (kicking 2 clients)");
    for client in &mut clients {
        assert_eq!(client.read_line(), "you were disconnected by the operator");
    }
    chatd.expect_report(" #1 kicked");
    chatd.expect_report(" #2 kicked (1 online)");
    let mut refused = Client::connect_quiet(addr);
    chatd.expect_body(&format!("refused {} (banned)", refused.peer()));
    closed_silently(&mut refused);

    chatd.send_console("/ban 127.0.0.0/30 5");
    chatd.expect_body("banned 127.0.0.0/30 for 5 minutes (kicking 1 client)");
    chatd.expect_report(" #3 kicked (0 online)");
    chatd.send_console("/bans");
    chatd.expect_body("2 bans");
    chatd.expect_body("ban 127.0.0.1/32: until /unban");
    let line = chatd.expect_report("ban 127.0.0.0/30: ");
    assert!(line.ends_with("s left") && line.contains(": 4m5"), "{line}");

    chatd.send_console("/unban 127.0.0.1");
    chatd.expect_body("unbanned 127.0.0.1/32");
    chatd.send_console("/unban 10.0.0.0/8");
    chatd.expect_body("console: no ban on 10.0.0.0/8 (try /bans)");
    // The block's ban still holds 127.0.0.1.
    let mut refused = Client::connect_quiet(addr);
    chatd.expect_body(&format!("refused {} (banned)", refused.peer()));
    closed_silently(&mut refused);
    chatd.send_console("/unban 127.0.0.0/30");
    chatd.expect_body("unbanned 127.0.0.0/30");
    let back = Client::connect(addr);
    chatd.expect_body(&format!("connect {} #4 (1 online)", back.peer()));

    chatd.send_console("/ban 9");
    chatd.expect_body("console: no client #9 is connected (try /list)");
    chatd.send_console("/ban 10.0.0.0/33");
    chatd.expect_body("console: usage: /ban <id|CIDR> [MINUTES]");
    chatd.send_console("/help");
    for command in ["/ban <id|CIDR> [MINUTES]", "/bans ", "/unban <CIDR>"] {
        chatd.expect_report(command);
    }
}

/// Headless, SIGHUP reads the rule files again (and reopens the log file, as before): new rules
/// apply to the next connection; a file with a bad entry keeps the old rules, and the operator
/// is told which entry, where.
#[test]
fn sighup_rereads_rule_files_and_keeps_the_old_rules_on_a_bad_one() {
    let deny = rule_file("deny-reload", "");
    let mut chatd = Chatd::spawn(&["--deny-file", deny.to_str().unwrap()]);
    let addr = chatd.addr();
    let stays = Client::connect(addr);
    chatd.expect_report(&format!("connect {} #1", stays.peer()));

    std::fs::write(&deny, "# now\n127.0.0.1\n").unwrap();
    chatd.signal(libc::SIGHUP);
    chatd.expect_body("no log file to reopen (SIGHUP)");
    chatd.expect_body("rules reloaded (SIGHUP): 0 allow, 1 deny");
    let mut refused = Client::connect_quiet(addr);
    chatd.expect_body(&format!("refused {} (denied)", refused.peer()));
    closed_silently(&mut refused);

    std::fs::write(&deny, "127.0.0.2\nnonsense\n").unwrap();
    chatd.signal(libc::SIGHUP);
    let place = format!("--deny-file {}:2: bad entry \"nonsense\"", deny.display());
    let line = chatd.expect_report("rules not reloaded (SIGHUP): ");
    assert!(
        line.contains(&place) && line.ends_with("the old ones stay"),
        "{line}"
    );
    let mut refused = Client::connect_quiet(addr);
    chatd.expect_body(&format!("refused {} (denied)", refused.peer()));
    closed_silently(&mut refused);

    std::fs::write(&deny, "").unwrap();
    chatd.signal(libc::SIGHUP);
    chatd.expect_body("rules reloaded (SIGHUP): 0 allow, 0 deny");
    let back = Client::connect(addr);
    chatd.expect_body(&format!("connect {} #2 (2 online)", back.peer()));
    drop(stays);
}

/// In JSON, a refusal is `"event":"refused"` with its `reason` and `peer`, and no `id`.
#[test]
fn refusals_are_json_objects_with_a_reason() {
    let mut chatd = Chatd::spawn(&[
        "--log-format",
        "json",
        "--deny",
        "127.0.0.2",
        "--max-per-ip",
        "1",
    ]);
    let addr = chatd.addr();
    let _member = Client::connect(addr);
    chatd.expect_report("\"event\":\"connect\"");
    let mut denied = connect_from("127.0.0.2", addr);
    closed_silently(&mut denied);
    let line = chatd.expect_report("\"reason\":\"denied\"");
    let object: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(object["event"], "refused");
    assert_eq!(object["peer"], denied.peer());
    assert!(object.get("id").is_none(), "{object}");
    let mut extra = Client::connect_quiet(addr);
    assert_eq!(extra.read_line(), "too many connections from your address");
    let line = chatd.expect_report("\"reason\":\"per-ip limit\"");
    let object: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(object["event"], "refused");
}
