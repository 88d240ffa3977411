//! The proof: nothing lost, nothing invented. 1000 clients come and go at random, send numbered
//! messages at random rates and leave in every way there is, while others connect; afterwards the
//! report shows, for each client, one connect, then every message it finished sending exactly once
//! and in order, then one disconnect with the right reason, and the online counts add up.
//!
//! Bounded: 1000 clients, each living at most a few seconds, started over about ten seconds; the
//! whole test stops at `DEADLINE`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

use common::xorshift::XorShift;
use common::{Chatd, Report, report_body, report_lines};

const CLIENTS: usize = 1000;
/// Clients that, at the end, have a backlog waiting in their sockets when the server shuts down.
const BACKLOGGED: usize = 20;
/// Lines each of them has waiting: about 1.5 MB, several turns of reading one client.
const BACKLOG_LINES: usize = 40_000;
const DEADLINE: Duration = Duration::from_secs(120);

/// Every way a client can leave, and the reason the server must report for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exit,
    Close,
    HalfClose,
    /// Writes a burst and drops the socket at once: what a killed process does.
    DropMidBurst,
    Reset,
    Kicked,
    Timeout,
    Slow,
    /// Still connected at the shutdown, with lines waiting unread in its socket.
    Shutdown,
}

impl Ending {
    fn pick(roll: u64) -> Ending {
        match roll % 40 {
            0 => Ending::Slow,
            1..=3 => Ending::Timeout,
            4..=8 => Ending::Kicked,
            9..=13 => Ending::Reset,
            14..=18 => Ending::DropMidBurst,
            19..=25 => Ending::HalfClose,
            26..=32 => Ending::Close,
            _ => Ending::Exit,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Ending::Exit => "exit",
            Ending::Close | Ending::HalfClose | Ending::DropMidBurst => "closed",
            Ending::Reset => "reset",
            Ending::Kicked => "kicked",
            Ending::Timeout => "timeout",
            Ending::Slow => "slow",
            Ending::Shutdown => "shutdown",
        }
    }
}

/// What one client did, as it saw it.
#[derive(Debug)]
struct Record {
    peer: String,
    sent: Vec<String>,
    ending: Ending,
}

/// The soak run: see the file's doc.
#[test]
fn soak_nothing_lost_nothing_invented() {
    // Its backlogged clients flood on purpose: flood control (off without --relay anyway) is
    // not what this tests.
    let mut chatd = Chatd::spawn(&[
        "--max-rate",
        "0",
        "--idle-timeout",
        "2",
        "--max-queue",
        "65536",
        "--line-timeout",
        "60000",
    ]);
    let addr = chatd.addr();
    let started = Instant::now();
    let finished = Arc::new(AtomicUsize::new(0));
    // Set by the report reader when a client's disconnect is seen, for clients that wait for it.
    let gone: Arc<Vec<AtomicBool>> =
        Arc::new((0..CLIENTS).map(|_| AtomicBool::new(false)).collect());

    let handles: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (finished, gone) = (Arc::clone(&finished), Arc::clone(&gone));
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let record = run_client(addr, k, &gone[k]);
                    finished.fetch_add(1, Ordering::SeqCst);
                    record
                })
                .expect("spawn a client thread")
        })
        .collect();

    // Read reports as they come, acting as the operator for clients that ask to be kicked or
    // flooded, until every client has finished and been reported gone.
    let mut lines = Vec::new();
    let mut disconnects = 0;
    let mut id_of = HashMap::new();
    while finished.load(Ordering::SeqCst) < CLIENTS || disconnects < CLIENTS {
        assert!(
            started.elapsed() < DEADLINE,
            "soak did not finish: {disconnects} disconnects"
        );
        let Some(line) = chatd.next_report(Duration::from_millis(200)) else {
            continue;
        };
        let body = report_body(&line).to_owned();
        match report_lines::parse(&body) {
            Some(Report::Message { id, text, .. }) => {
                if let Some(k) = text
                    .strip_prefix('c')
                    .and_then(|t| t.split(' ').next())
                    .and_then(|k| k.parse::<usize>().ok())
                {
                    id_of.entry(k).or_insert(id);
                }
                if text.ends_with(" kick me") {
                    chatd.send_console(&format!("/kick {id}"));
                } else if text.ends_with(" flood me") {
                    let flood = "f".repeat(60_000);
                    for _ in 0..100 {
                        chatd.send_console(&format!("/to {id} {flood}"));
                    }
                }
            }
            Some(Report::Disconnect { id, .. }) => {
                disconnects += 1;
                if let Some((&k, _)) = id_of.iter().find(|(_, i)| **i == id) {
                    gone[k].store(true, Ordering::SeqCst);
                }
            }
            _ => {}
        }
        lines.push(body);
    }
    let mut records: Vec<Record> = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();

    // The shutdown meets a backlog: the server is held (SIGSTOP) while some clients write into
    // their sockets, `/quit` is typed, and it goes on (SIGCONT). Every line must be heard.
    let mut backlogged = Vec::new();
    for j in 0..BACKLOGGED {
        let k = CLIENTS + j;
        let mut stream = TcpStream::connect(addr).expect("connect");
        let peer = stream.local_addr().expect("local address").to_string();
        let mut greeting = String::new();
        BufReader::new(stream.try_clone().expect("clone"))
            .read_line(&mut greeting)
            .expect("greeting");
        let hello = format!("c{k} hello");
        stream
            .write_all(format!("{hello}\n").as_bytes())
            .expect("send");
        backlogged.push((k, stream, peer, vec![hello]));
    }
    while id_of.len() < CLIENTS + BACKLOGGED {
        assert!(
            started.elapsed() < DEADLINE,
            "backlogged clients were not heard"
        );
        if let Some(line) = chatd.next_report(Duration::from_millis(200)) {
            let body = report_body(&line).to_owned();
            if let Some(Report::Message { id, text, .. }) = report_lines::parse(&body)
                && let Some(k) = text.strip_prefix('c').and_then(|t| t.split(' ').next())
            {
                id_of.entry(k.parse().expect("client number")).or_insert(id);
            }
            lines.push(body);
        }
    }
    chatd.signal(libc::SIGSTOP);
    for (k, stream, _, sent) in &mut backlogged {
        let mut burst = String::new();
        for i in 0..BACKLOG_LINES {
            let text = format!("c{k} b{i} waiting for the shutdown");
            burst.push_str(&text);
            burst.push('\n');
            sent.push(text);
        }
        stream
            .write_all(burst.as_bytes())
            .expect("write the backlog");
    }
    chatd.send_console("/quit");
    chatd.signal(libc::SIGCONT);
    loop {
        assert!(started.elapsed() < DEADLINE, "the shutdown did not finish");
        let Some(line) = chatd.next_report(Duration::from_millis(200)) else {
            continue;
        };
        let body = report_body(&line).to_owned();
        let stopped = body == "stopped";
        lines.push(body);
        if stopped {
            break;
        }
    }
    assert_eq!(chatd.wait_exit().code(), Some(0));
    for (_, _, peer, sent) in backlogged {
        records.push(Record {
            peer,
            sent,
            ending: Ending::Shutdown,
        });
    }

    check(&lines, &records, &id_of);
}

/// Checks the whole report against what the clients did.
fn check(lines: &[String], records: &[Record], id_of: &HashMap<usize, u64>) {
    let mut online = 0usize;
    let mut connects: HashMap<u64, String> = HashMap::new();
    let mut messages: HashMap<u64, Vec<String>> = HashMap::new();
    let mut reasons: HashMap<u64, String> = HashMap::new();
    for body in lines {
        let Some(report) = report_lines::parse(body) else {
            assert!(
                report_lines::kind(body.as_bytes()).is_none(),
                "malformed report {body:?}"
            );
            continue;
        };
        match report {
            Report::Connect {
                peer,
                id,
                online: count,
            } => {
                online += 1;
                assert_eq!(count, online, "online count in {body:?}");
                assert!(
                    connects.insert(id, peer.to_owned()).is_none(),
                    "second connect for #{id}"
                );
            }
            // Every line a client finished is heard once, as a message or (in the room, where
            // this test does not go) as one of the room's commands.
            Report::Message { id, text, .. } | Report::Command { id, text, .. } => {
                assert!(
                    connects.contains_key(&id),
                    "message before connect: {body:?}"
                );
                assert!(
                    !reasons.contains_key(&id),
                    "message after disconnect: {body:?}"
                );
                messages.entry(id).or_default().push(text.to_owned());
            }
            Report::Disconnect {
                id,
                reason,
                online: count,
                ..
            } => {
                online -= 1;
                assert_eq!(count, online, "online count in {body:?}");
                assert!(
                    reasons.insert(id, reason.to_owned()).is_none(),
                    "second disconnect for #{id}"
                );
            }
            Report::Listening(_) | Report::Refused { .. } => {}
        }
    }
    assert_eq!(connects.len(), CLIENTS + BACKLOGGED, "connects");
    assert_eq!(reasons.len(), CLIENTS + BACKLOGGED, "disconnects");
    assert_eq!(online, 0);

    for (k, record) in records.iter().enumerate() {
        let id = *id_of
            .get(&k)
            .unwrap_or_else(|| panic!("client {k} ({record:?}) was never heard"));
        assert_eq!(connects[&id], record.peer, "client {k}'s address");
        let heard = messages.remove(&id).unwrap_or_default();
        if record.ending == Ending::Reset {
            // A reset may destroy lines still in the server's receive queue: a prefix, in order.
            assert!(
                record.sent.starts_with(&heard),
                "client {k} reset: heard {heard:?} of {:?}",
                record.sent
            );
        } else {
            assert_eq!(
                heard, record.sent,
                "client {k}'s messages ({:?})",
                record.ending
            );
        }
        assert_eq!(
            reasons[&id],
            record.ending.reason(),
            "client {k}'s disconnect reason"
        );
    }
    assert!(
        messages.is_empty(),
        "messages from unknown clients: {messages:?}"
    );
}

/// One client's life: connect, say hello, send numbered messages at a random pace, then leave the
/// way its number says.
fn run_client(addr: SocketAddr, k: usize, gone: &AtomicBool) -> Record {
    let mut rng = XorShift(k as u64 + 1);
    thread::sleep(Duration::from_millis(rng.below(10_000))); // Staggered arrivals.
    let ending = Ending::pick(rng.next());
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    if ending == Ending::Slow {
        // A small window, set before the handshake, so the flood backs up into the server.
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    }
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let peer = stream.local_addr().expect("local address").to_string();
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("greeting");
    let mut writer = stream;
    let mut sent = Vec::new();
    let mut say = |writer: &mut TcpStream, text: String| {
        writer
            .write_all(format!("{text}\n").as_bytes())
            .expect("send");
        sent.push(text);
    };

    say(&mut writer, format!("c{k} hello"));
    let count = rng.below(30);
    let pause = 5 + rng.below(150);
    for j in 0..count {
        say(
            &mut writer,
            format!("c{k} m{j} {}", "x".repeat(rng.below(80) as usize)),
        );
        thread::sleep(Duration::from_millis(rng.below(pause)));
    }
    match ending {
        Ending::Exit => {
            say(&mut writer, "exit".to_owned());
            assert!(
                read_rest(&mut reader).ends_with("goodbye\n"),
                "client {k}: no goodbye"
            );
        }
        Ending::Close => drop(writer),
        Ending::HalfClose => {
            writer.shutdown(Shutdown::Write).expect("half-close");
            read_rest(&mut reader);
        }
        Ending::DropMidBurst => {
            for j in 0..20 {
                say(&mut writer, format!("c{k} burst {j}"));
            }
            drop(writer);
        }
        Ending::Reset => {
            // Give the last line time to be read; a reset may destroy what is still unread.
            thread::sleep(Duration::from_millis(200));
            SockRef::from(&writer)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER 0");
            drop(writer);
        }
        Ending::Kicked => {
            say(&mut writer, format!("c{k} kick me"));
            read_rest(&mut reader);
        }
        Ending::Timeout => {
            let rest = read_rest(&mut reader);
            assert!(
                rest.ends_with("disconnected: idle for too long\n"),
                "client {k}: got {rest:?}"
            );
        }
        Ending::Shutdown => unreachable!("picked only for the backlogged clients at the end"),
        Ending::Slow => {
            say(&mut writer, format!("c{k} flood me"));
            // Lines sent while the operator floods it: still in its socket, most likely, when it
            // is dropped `slow`; they are heard all the same.
            for j in 0..20 {
                say(&mut writer, format!("c{k} after {j}"));
            }
            // Never read; wait (bounded) until the server has dropped us.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !gone.load(Ordering::SeqCst) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
    Record { peer, sent, ending }
}

fn read_rest(reader: &mut BufReader<TcpStream>) -> String {
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    String::from_utf8_lossy(&rest).into_owned()
}
