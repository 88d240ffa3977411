//! `--metrics ADDR`: `GET /metrics` answers Prometheus text (fetched with `curl`, the Debian
//! package, and parsed here), with figures that follow what clients did; anything else gets 404,
//! 405, 400 or 431; a scrape is held to the limits clients are (connections, request size, time);
//! and `/stats` on the console prints the same figures.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Chatd, Client, WAIT, report_body, report_lines, run_to_failure};

/// Starts chatd with `--metrics 127.0.0.1:0` and `args`; gives it and the metrics address.
#[track_caller]
fn spawn(args: &[&str]) -> (Chatd, SocketAddr) {
    let mut all = vec!["--metrics", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut chatd = Chatd::spawn(&all);
    let line = chatd.expect_report("metrics on ");
    let addr = match line.starts_with('{') {
        true => report_lines::json_str(line.as_bytes(), b"addr")
            .and_then(|addr| std::str::from_utf8(addr).ok())
            .and_then(|addr| addr.parse().ok()),
        false => report_body(&line)
            .strip_prefix("metrics on ")
            .and_then(|addr| addr.parse().ok()),
    }
    .unwrap_or_else(|| panic!("no address in {line:?}"));
    (chatd, addr)
}

/// `curl -sS URL` with `args`: its stdout, and the HTTP status from `-w`.
#[track_caller]
fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed (apt-get install curl; .ci/run does)");
    assert!(output.status.success(), "curl: {output:?}");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let (body, code) = text.rsplit_once('\n').expect("the status line from -w");
    (code.parse().expect("a status"), body.to_owned())
}

/// Prometheus text read back: `name{labels}` → value, checking that every sample follows a
/// `# TYPE` line of its metric and every value is a number.
#[track_caller]
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            typed = Some(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let base = name.split('{').next().unwrap_or(name);
        assert_eq!(typed.as_deref(), Some(base), "{line} has no # TYPE");
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            samples.insert(name.to_owned(), value).is_none(),
            "{line} twice"
        );
    }
    samples
}

#[track_caller]
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (code, body) = curl(&format!("http://{addr}/metrics"), &[]);
    assert_eq!(code, 200, "{body}");
    parse(&body)
}

/// The figures follow what happened: two members joined a room, one sent two lines that went to
/// the other, one left; a third was refused past `--max-clients`.
#[test]
fn metrics_count_what_clients_did() {
    let (mut chatd, addr) = spawn(&["--relay", "--max-clients", "2"]);
    let before = scrape(addr);
    assert_eq!(before["chatd_clients_online"], 0.0);
    assert_eq!(before["chatd_connections_accepted_total"], 0.0);

    let mut a = Client::connect(chatd.addr());
    let mut b = Client::connect(chatd.addr());
    a.read_line();
    b.read_line();
    chatd.expect_report("(2 online)");
    let _refused = Client::connect_quiet(chatd.addr());
    chatd.expect_report("refused");
    a.send_line("one");
    a.send_line("two");
    chatd.expect_report(": two");
    drop(b);
    chatd.expect_report("(1 online)");

    let m = scrape(addr);
    assert_eq!(m["chatd_clients_online"], 1.0);
    assert_eq!(m["chatd_connections_accepted_total"], 2.0);
    assert_eq!(m["chatd_connections_refused_total{reason=\"full\"}"], 1.0);
    assert_eq!(m["chatd_connections_refused_total{reason=\"error\"}"], 0.0);
    for reason in ["denied", "banned", "per_ip", "connect_rate"] {
        assert_eq!(
            m[&format!("chatd_connections_refused_total{{reason=\"{reason}\"}}")],
            0.0
        );
    }
    assert_eq!(m["chatd_connections_refused_total{reason=\"tls\"}"], 0.0);
    assert_eq!(m["chatd_connections_refused_total{reason=\"auth\"}"], 0.0);
    let gone: f64 = ["closed", "reset"]
        .iter()
        .map(|r| m[&format!("chatd_disconnects_total{{reason=\"{r}\"}}")])
        .sum();
    assert_eq!(gone, 1.0);
    assert_eq!(m["chatd_disconnects_total{reason=\"kicked\"}"], 0.0);
    assert_eq!(m["chatd_messages_in_total"], 2.0);
    assert_eq!(m["chatd_bytes_in_total"], 8.0); // "one\ntwo\n"
    assert_eq!(m["chatd_relay_deliveries_total"], 2.0);
    // At least: two greetings, b's join announced to a, two relayed lines, b's leaving.
    assert!(m["chatd_lines_out_total"] >= 6.0);
    assert!(m["chatd_bytes_out_total"] > 0.0);
    assert_eq!(m["chatd_queue_bytes"], 0.0);
    assert!(m["chatd_timers_armed"] >= 1.0); // This scrape's own.
    assert!(m["chatd_loop_turns_total"] > before["chatd_loop_turns_total"]);
    assert!(m["chatd_loop_busy_seconds_total"] > 0.0);
}

/// `/stats` prints the figures `/metrics` serves, by the same names.
#[test]
fn stats_on_the_console_prints_the_same_figures() {
    let (mut chatd, addr) = spawn(&[]);
    let mut client = Client::connect(chatd.addr());
    client.send_line("hello");
    chatd.expect_report(": hello");
    let m = scrape(addr);
    chatd.send_console("/stats");
    let line = chatd.expect_report("stats: ");
    let body = report_body(&line);
    assert!(
        body.starts_with(
            "stats: 1 online; 1 accepted, refused 0 full 0 error 0 denied 0 banned 0 per-ip 0 rate 0 tls 0 auth;"
        ),
        "{body}"
    );
    assert!(body.contains("; in 1 messages 6 bytes;"), "{body}");
    assert!(
        body.contains("disconnects exit 0 closed 0 reset 0"),
        "{body}"
    );
    let lines_out = m["chatd_lines_out_total"];
    assert!(
        body.contains(&format!("; out {lines_out} lines ")),
        "{body}"
    );

    // And as JSON, one field per figure.
    let (mut chatd, _) = spawn(&["--log-format", "json"]);
    chatd.send_console("/stats");
    let line = chatd.expect_report("\"event\":\"stats\"");
    let stats: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    for field in [
        "online",
        "connections_accepted",
        "disconnects_slow",
        "loop_turns",
    ] {
        assert!(stats[field].is_u64(), "{field} in {line}");
    }
}

/// Only `GET /metrics` is served: another path is 404, another method 405 (saying `Allow: GET`),
/// bytes that are not HTTP 400, a request past 8 KiB 431. The server goes on serving.
#[test]
fn anything_else_is_refused() {
    let (_chatd, addr) = spawn(&[]);
    assert_eq!(curl(&format!("http://{addr}/"), &[]).0, 404);
    assert_eq!(curl(&format!("http://{addr}/metricsx"), &[]).0, 404);
    let (code, _) = curl(&format!("http://{addr}/metrics"), &["-X", "POST"]);
    assert_eq!(code, 405);
    let (code, _) = curl(&format!("http://{addr}/metrics"), &["-I"]);
    assert_eq!(code, 405); // HEAD
    assert!(raw(addr, b"\x16\x03\x01 not http\r\n\r\n").starts_with("HTTP/1.1 400 "));
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert!(raw(addr, huge.as_bytes()).starts_with("HTTP/1.1 431 "));
    assert_eq!(scrape(addr)["chatd_clients_online"], 0.0);
}

/// Sends `request` on a raw connection and reads the answer to the end.
#[track_caller]
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    // The server may answer and close before it has read it all (431): a write error then is
    // what the answer already says.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// At most 16 scrapes at once: a 17th connection is closed at once, and once the others go,
/// scrapes are served again. A scrape that sends nothing is dropped after its 10 s.
#[test]
fn scrapes_are_held_to_limits() {
    let (_chatd, addr) = spawn(&[]);
    let idle: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let mut extra = TcpStream::connect(addr).expect("connect");
    extra.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0; 16];
    // Closed at once: end of file (or a reset), not a read timeout.
    match extra.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
    }

    let started = Instant::now();
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    assert_eq!(first.read(&mut buf).expect("end of file"), 0);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(8), "dropped after {waited:?}");
    drop(idle);
    assert_eq!(scrape(addr)["chatd_clients_online"], 0.0);
}

/// A `--metrics` address that cannot be bound is one clear line and exit code 1.
#[test]
fn a_busy_metrics_address_is_one_clear_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, stderr) = run_to_failure(&["--listen", "127.0.0.1:0", "--metrics", &addr]);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim(),
        format!("chatd: cannot listen on {addr}: Address already in use (os error 98)")
    );
}
