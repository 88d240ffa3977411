//! The relay room's clients: a crowd that takes its seats in a chat room (chatd `--relay`, ncat
//! `--chat`), then either talks at a fixed pace, each line carrying its send time, or talks as fast
//! as the sockets take it.
//!
//! One `Room` is the whole crowd, on one mio `Poll`. Seating and the unthrottled run are driven
//! from the calling thread alone; the paced run adds one sender thread that sleeps until each
//! line is due, while the calling thread reads. Every client has TCP_NODELAY, as chat clients
//! do, and nothing else (no TCP_QUICKACK). Every loop is bounded by a deadline and every address
//! is on loopback.
//!
//! Deliberately not here: starting servers, turning counts into figures and checks, or what
//! every socket loop shares (`net.rs`).

use std::io::{self, ErrorKind, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chatd::LineDecoder;
use memchr::memmem;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::net::{
    End, MAX_LINE, Problems, STOP_CHECK, Watch, close_hard, connect, nanos_since, read_available,
    read_client, source_for,
};
use crate::targets::{Kind, Target};
use crate::xorshift::XorShift;

/// How a server speaks to the room, which decides how its lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A greeting, then `◆ nobody else is online` or `◆ <n> online: <names>`; later
    /// `◆ <name> joined (<n> online)`, `◆ <name> left (<reason>)` and `<name>: <text>`.
    Chatd,
    /// No greeting; to everyone, on each arrival, `<announce> <ip> is connected as <userN>.` and
    /// `<announce> already connected: nobody.` (or a list); `<announce> <userN> is
    /// disconnected.`; relayed text is each read chunk prefixed with `<userN> `, not each line.
    Ncat,
}

/// What one line a client read means.
#[derive(Debug, PartialEq, Eq)]
enum Heard<'a> {
    /// The line that says who was online on arrival: how many others.
    Who(usize),
    /// Someone arrived.
    Joined,
    /// Someone left.
    Left,
    /// Any other announcement (or chatd's greeting).
    Other,
    /// A relayed line's text, without the sender's name.
    Said(&'a [u8]),
}

impl Dialect {
    pub fn of(kind: Kind) -> Dialect {
        match kind {
            Kind::Ncat => Dialect::Ncat,
            Kind::Chatd | Kind::Sink => Dialect::Chatd,
        }
    }

    /// Reads one line; `first` says whether it is the first the client got (chatd's greeting).
    fn hear(self, line: &[u8], first: bool) -> Heard<'_> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self {
            Dialect::Chatd => {
                if first {
                    return Heard::Other;
                }
                let Some(rest) = line.strip_prefix("◆ ".as_bytes()) else {
                    return Heard::Said(after(line, b": ").unwrap_or(line));
                };
                if rest == b"nobody else is online" {
                    return Heard::Who(0);
                }
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                if digits > 0 && rest[digits..].starts_with(b" online: ") {
                    return number(&rest[..digits]).map_or(Heard::Other, Heard::Who);
                }
                if memmem::find(rest, b" joined (").is_some() {
                    Heard::Joined
                } else if memmem::find(rest, b" left (").is_some() {
                    Heard::Left
                } else {
                    Heard::Other
                }
            }
            Dialect::Ncat => {
                let Some(rest) = line.strip_prefix(b"<announce> ") else {
                    // A chunk's first line carries `<userN> `; the other lines of the chunk don't.
                    let text = line
                        .strip_prefix(b"<user")
                        .and_then(|rest| after(rest, b"> "))
                        .unwrap_or(line);
                    return Heard::Said(text);
                };
                if let Some(list) = rest.strip_prefix(b"already connected: ") {
                    return Heard::Who(if list == b"nobody." {
                        0
                    } else {
                        memmem::find_iter(list, b", ").count() + 1
                    });
                }
                if memmem::find(rest, b" is connected as ").is_some() {
                    Heard::Joined
                } else if rest.ends_with(b" is disconnected.") {
                    Heard::Left
                } else {
                    Heard::Other
                }
            }
        }
    }
}

/// What follows the first `separator` in `line`.
fn after<'a>(line: &'a [u8], separator: &[u8]) -> Option<&'a [u8]> {
    let at = memmem::find(line, separator)?;
    Some(&line[at + separator.len()..])
}

/// ASCII digits as a number; `None` if empty, not digits, or too large.
fn number(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.saturating_mul(10).saturating_add(usize::from(b - b'0')))
    })
}

/// One client of the room, apart from its socket.
#[derive(Debug)]
struct Member {
    /// Its unfinished line.
    lines: LineDecoder,
    seat: Seat,
}

impl Default for Member {
    fn default() -> Member {
        Member {
            lines: LineDecoder::new(MAX_LINE),
            seat: Seat::default(),
        }
    }
}

/// How far a member is through taking its seat.
#[derive(Debug, Default)]
struct Seat {
    /// Whether a line has arrived yet (chatd's first line is the greeting).
    greeted: bool,
    /// Others online when it arrived, from its who-line.
    who: Option<usize>,
    /// Arrivals of later clients it has still to be told about.
    owed: usize,
    /// Failed: read error or closed by the server.
    gone: bool,
}

/// The whole crowd: every socket on one `Poll`, registered for reading and writing.
pub struct Room {
    poll: Poll,
    events: Events,
    streams: Vec<TcpStream>,
    members: Vec<Member>,
    dialect: Dialect,
    /// Where every time stamp of the room counts from.
    epoch: Instant,
    buf: Vec<u8>,
    pub problems: Problems,
    /// Announcements of someone leaving, over every client: none is expected. (The unthrottled
    /// run reads no lines, only counts them: there, any announcement counts, as nobody joins.)
    pub departures: u64,
}

/// How the seating went.
#[derive(Debug)]
pub struct SeatReport {
    pub connected: usize,
    /// Clients that got their who-line.
    pub seated: usize,
    /// From the first connect until every client had its who-line.
    pub seated_after: Option<Duration>,
    /// ... and until every client had been told of everyone who came after it.
    pub joins_after: Option<Duration>,
    /// Join announcements delivered, and owed still (to seated clients).
    pub joins_seen: u64,
    pub joins_owed: u64,
    /// Bytes the clients read while taking their seats.
    pub bytes_read: u64,
    pub end: End,
}

impl Room {
    /// Connects `n` clients to `target`, at most `window` of them connected and not yet told who is
    /// online at a time, and reads until every client knows of every other, or until `deadline`.
    pub fn seat(
        target: &mut Target,
        n: usize,
        window: usize,
        deadline: Instant,
    ) -> io::Result<(Room, SeatReport)> {
        let mut report = SeatReport {
            connected: 0,
            seated: 0,
            seated_after: None,
            joins_after: None,
            joins_seen: 0,
            joins_owed: 0,
            bytes_read: 0,
            end: End::Done,
        };
        let mut room = Room {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            streams: Vec::with_capacity(n),
            members: Vec::with_capacity(n),
            dialect: Dialect::of(target.kind()),
            epoch: Instant::now(),
            buf: vec![0; READ_BUF],
            problems: Problems::default(),
            departures: 0,
        };
        let addr = target.addr();
        let start = Instant::now();
        let mut failed = 0;
        let mut owed: u64 = 0;
        let mut connecting = true;
        let mut watch = Watch::new(deadline);
        loop {
            let settled = report.seated + failed;
            while connecting
                && room.streams.len() < n
                && room.streams.len().saturating_sub(settled) < window
            {
                let i = room.streams.len();
                let interest = Interest::READABLE | Interest::WRITABLE;
                let registered = connect(&room.poll, Token(i), interest, addr, source_for(i))
                    .and_then(|stream| {
                        stream.set_nodelay(true)?;
                        Ok(stream)
                    });
                match registered {
                    Ok(stream) => {
                        room.streams.push(stream);
                        room.members.push(Member::default());
                    }
                    Err(e) => {
                        room.problems.add(&format!("connect #{i}"), e);
                        connecting = false;
                    }
                }
            }
            let now = Instant::now();
            let all_in = (room.streams.len() == n || !connecting) && settled >= room.streams.len();
            if all_in && report.seated_after.is_none() {
                report.seated_after = Some(now - start);
            }
            if all_in && owed == 0 {
                report.joins_after = Some(now - start);
                break;
            }
            if let Err(end) = room.wait(&mut watch, target) {
                report.end = match end {
                    End::TimedOut(_) => End::TimedOut(format!(
                        "{} of {n} clients seated, {owed} join announcements undelivered",
                        report.seated
                    )),
                    end => end,
                };
                break;
            }
            for event in &room.events {
                let i = event.token().0;
                let (Some(stream), Some(member)) = (room.streams.get(i), room.members.get_mut(i))
                else {
                    continue;
                };
                if member.seat.gone || !event.is_readable() {
                    continue;
                }
                let dialect = room.dialect;
                let seat = &mut member.seat;
                let (mut who, mut joins, mut left) = (None, 0, 0);
                let read = read_lines(
                    stream,
                    &mut member.lines,
                    &mut room.buf,
                    room.epoch,
                    &mut report.bytes_read,
                    |line, _| {
                        let first = !std::mem::replace(&mut seat.greeted, true);
                        match dialect.hear(line, first) {
                            Heard::Who(others) if seat.who.is_none() && who.is_none() => {
                                who = Some(others);
                            }
                            // Arrivals before its own who-line are its own (ncat tells
                            // everyone, the newcomer first).
                            Heard::Joined if seat.who.is_some() || who.is_some() => joins += 1,
                            Heard::Left => left += 1,
                            _ => {}
                        }
                    },
                );
                room.departures += left;
                if let Some(others) = who {
                    seat.who = Some(others);
                    seat.owed = n.saturating_sub(1 + others);
                    owed += seat.owed as u64;
                    report.seated += 1;
                }
                let counted = joins.min(seat.owed);
                seat.owed -= counted;
                owed -= counted as u64;
                report.joins_seen += joins as u64;
                if let Err(e) = read {
                    room.problems.add(&format!("client #{i}"), e);
                    seat.gone = true;
                    owed -= seat.owed as u64;
                    seat.owed = 0;
                    if seat.who.is_none() {
                        failed += 1;
                    }
                }
            }
        }
        report.connected = room.streams.len();
        report.joins_owed = owed;
        Ok((room, report))
    }

    /// The watch's checks, then one wait for the room's events.
    fn wait(&mut self, watch: &mut Watch, target: &mut Target) -> Result<(), End> {
        let (poll, events) = (&mut self.poll, &mut self.events);
        watch.poll(target, &mut self.problems, poll, events, STOP_CHECK)
    }

    /// Reads and throws away whatever reaches any member until `stop` is set (so that nobody is
    /// dropped `slow` while something else is measured); gives the bytes read.
    pub fn drain(&mut self, stop: &AtomicBool) -> u64 {
        let mut bytes = 0;
        while !stop.load(Ordering::SeqCst) {
            if self
                .poll
                .poll(&mut self.events, Some(Duration::from_millis(20)))
                .is_err()
            {
                continue;
            }
            for event in self.events.iter() {
                if let Some(stream) = self.streams.get(event.token().0) {
                    let _ = read_available(stream, &mut self.buf, |data| {
                        bytes += data.len() as u64;
                    });
                }
            }
        }
        bytes
    }

    /// Clients in the room.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Closes every client with a reset (see `close_hard`).
    pub fn close(self) {
        for stream in &self.streams {
            close_hard(stream);
        }
    }
}

/// Reads what `stream` has until it would block, calling `on_line` with each whole line and the
/// time (ns since `epoch`) of the read that completed it, and adding the bytes to `bytes`. `Err`
/// once the server has closed or the read failed.
fn read_lines(
    stream: &TcpStream,
    lines: &mut LineDecoder,
    buf: &mut [u8],
    epoch: Instant,
    bytes: &mut u64,
    mut on_line: impl FnMut(&[u8], u64),
) -> io::Result<()> {
    read_client(stream, buf, |data| {
        *bytes += data.len() as u64;
        // One clock reading per read: every line in it arrived together.
        let now_ns = nanos_since(epoch);
        lines.feed(data, |line| on_line(line.text, now_ns));
    })
}

// ---------------------------------------------------------------------------------------------
// Paced

/// How the paced run went.
#[derive(Debug, Default)]
pub struct PacedReport {
    /// Lines the senders wrote.
    pub sent: u64,
    /// Relayed lines received, and how many there should have been: each sent line times the
    /// other clients.
    pub deliveries: u64,
    pub expected: u64,
    /// Relayed lines that came out of order for their sender, or a second time.
    pub misordered: u64,
    /// Relayed lines that could not be read as `<sender> <seq> <ns>`.
    pub unreadable: u64,
    /// Per delivery: receive time minus send time.
    pub latencies_ns: Vec<u64>,
    /// Per line that reached every other client: the latency of its first delivery and of its
    /// last. The gap between them is the fan-out, one recipient after another.
    pub first_ns: Vec<u64>,
    pub last_ns: Vec<u64>,
    /// From the first send to the last delivery.
    pub elapsed: Duration,
    /// Sends that started more than a millisecond late (the sender thread overslept).
    pub late_sends: u64,
    pub end: Option<End>,
}

impl Room {
    /// Every client sends `rate` lines a second for `duration`, all sends evenly spread (with a
    /// little jitter) over the run, round robin over the clients; then the room waits up to
    /// `drain` for the last deliveries, or until `deadline`.
    pub fn paced(
        &mut self,
        target: &mut Target,
        rate: f64,
        duration: Duration,
        drain: Duration,
        deadline: Instant,
    ) -> PacedReport {
        let n = self.len();
        let mut report = PacedReport::default();
        if n < 2 {
            report.end = Some(End::TimedOut("fewer than two clients".into()));
            return report;
        }
        let total = (rate * n as f64 * duration.as_secs_f64()).round() as u64;
        let interval = Duration::from_secs_f64(1.0 / (rate * n as f64));
        let sent_total = AtomicU64::new(0);
        let sending = AtomicBool::new(true);
        let stop = AtomicBool::new(false);
        let Room {
            poll,
            events,
            streams,
            members,
            dialect,
            epoch,
            buf,
            problems,
            departures,
        } = self;
        let (streams, epoch, dialect) = (&*streams, *epoch, *dialect);
        // Per receiver and sender: the next sequence number expected.
        let mut next = vec![0u32; n * n];
        // Per line, by its place in the plan (`seq * n + sender`).
        let mut arrivals = vec![Arrival::default(); usize::try_from(total).unwrap_or(0)];
        let mut first_send_ns = u64::MAX;
        let mut bytes = 0;
        let mut last_receive_ns = 0;
        let start = Instant::now() + SEND_LEAD;
        thread::scope(|scope| {
            let sender = thread::Builder::new()
                .name("relay-senders".into())
                .spawn_scoped(scope, || {
                    let plan = Plan {
                        total,
                        interval,
                        start,
                        epoch,
                    };
                    let sent = send_paced(streams, &plan, &sent_total, &stop);
                    sending.store(false, Ordering::Release);
                    sent
                });
            let sender = match sender {
                Ok(sender) => sender,
                Err(e) => {
                    problems.add("spawn sender", e);
                    report.end = Some(End::TimedOut("no sender thread".into()));
                    return;
                }
            };
            let mut drain_until = None;
            let mut watch = Watch::new(deadline);
            loop {
                let now = Instant::now();
                if !sending.load(Ordering::Acquire) {
                    let sent = sent_total.load(Ordering::Relaxed);
                    if report.deliveries >= sent * (n as u64 - 1) {
                        break;
                    }
                    let until = *drain_until.get_or_insert(now + drain);
                    if now >= until.min(deadline) {
                        report.end = Some(End::TimedOut(format!(
                            "{} of {} deliveries within {drain:?} of the last send",
                            report.deliveries,
                            sent * (n as u64 - 1)
                        )));
                        break;
                    }
                }
                if let Err(end) = watch.poll(target, problems, poll, events, STOP_CHECK) {
                    report.end = Some(end);
                    break;
                }
                for event in events.iter() {
                    let r = event.token().0;
                    let (Some(stream), Some(member)) = (streams.get(r), members.get_mut(r)) else {
                        continue;
                    };
                    if member.seat.gone || !event.is_readable() {
                        continue;
                    }
                    let expected = &mut next[r * n..(r + 1) * n];
                    let read = read_lines(
                        stream,
                        &mut member.lines,
                        buf,
                        epoch,
                        &mut bytes,
                        |line, at| {
                            let text = match dialect.hear(line, false) {
                                Heard::Said(text) => text,
                                Heard::Left => {
                                    *departures += 1;
                                    return;
                                }
                                _ => return,
                            };
                            let Some((s, seq, sent_ns)) = parse_stamp(text) else {
                                report.unreadable += 1;
                                return;
                            };
                            let Some(slot) = expected.get_mut(s).filter(|_| s != r) else {
                                report.unreadable += 1;
                                return;
                            };
                            if seq == *slot {
                                *slot += 1;
                            } else {
                                report.misordered += 1;
                                *slot = (*slot).max(seq.saturating_add(1));
                            }
                            report.deliveries += 1;
                            let latency = at.saturating_sub(sent_ns);
                            report.latencies_ns.push(latency);
                            if let Some(arrival) = arrivals.get_mut(seq as usize * n + s) {
                                arrival.add(latency);
                            }
                            first_send_ns = first_send_ns.min(sent_ns);
                            last_receive_ns = last_receive_ns.max(at);
                        },
                    );
                    if let Err(e) = read {
                        problems.add(&format!("client #{r}"), e);
                        member.seat.gone = true;
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            match sender.join() {
                Ok(sent) => {
                    report.sent = sent.lines;
                    report.late_sends = sent.late;
                    problems.merge(sent.problems);
                }
                Err(_) => problems.add("sender thread", "panicked"),
            }
        });
        report.expected = report.sent * (n as u64 - 1);
        for arrival in arrivals.iter().filter(|a| a.count as usize == n - 1) {
            report.first_ns.push(arrival.first);
            report.last_ns.push(arrival.last);
        }
        report.elapsed = Duration::from_nanos(last_receive_ns.saturating_sub(first_send_ns));
        if report.end.is_none() {
            report.end = Some(End::Done);
        }
        report
    }
}

/// One paced line's deliveries so far.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    count: u32,
    /// The least and the greatest latency.
    first: u64,
    last: u64,
}

impl Default for Arrival {
    fn default() -> Arrival {
        Arrival {
            count: 0,
            first: u64::MAX,
            last: 0,
        }
    }
}

impl Arrival {
    fn add(&mut self, latency: u64) {
        self.count += 1;
        self.first = self.first.min(latency);
        self.last = self.last.max(latency);
    }
}

/// When the paced sends are due.
struct Plan {
    /// Lines in all; line `m` is client `m % n`'s number `m / n`.
    total: u64,
    /// Between one send and the next, over all clients.
    interval: Duration,
    start: Instant,
    epoch: Instant,
}

/// What the sender thread did.
struct Sent {
    lines: u64,
    /// Sends that started more than `LATE` after their time.
    late: u64,
    problems: Problems,
}

/// Sends the plan's lines, each when due: `<client> <seq> <send ns> xxx...`, LINE_LEN bytes with
/// its newline, counting them in `sent_total` as they go.
fn send_paced(
    streams: &[TcpStream],
    plan: &Plan,
    sent_total: &AtomicU64,
    stop: &AtomicBool,
) -> Sent {
    // The default timer slack of 50 us would bunch sends that are 100 us apart; this thread only
    // sleeps, so finer wake-ups cost little.
    // SAFETY: prctl with PR_SET_TIMERSLACK takes a plain number and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong);
    }
    let n = streams.len() as u64;
    let mut problems = Problems::default();
    let mut late = 0;
    let mut line = Vec::with_capacity(LINE_LEN);
    // The sends' jitter, the same on every run.
    let mut jitter = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut dead = vec![false; streams.len()];
    for m in 0..plan.total {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Due at (m + u) intervals, u uniform in [0, 1): evenly spread, in order, not in lockstep.
        let due = plan.start + plan.interval.mul_f64(m as f64 + jitter.fraction());
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        } else if now - due > LATE {
            late += 1;
        }
        let client = (m % n) as usize;
        if dead[client] {
            continue;
        }
        let sent_ns = nanos_since(plan.epoch);
        line.clear();
        let _ = write!(line, "{client} {} {sent_ns} ", m / n);
        line.resize(LINE_LEN - 1, b'x');
        line.push(b'\n');
        match write_whole(&streams[client], &line) {
            Ok(()) => {
                sent_total.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                problems.add(&format!("send #{client}"), e);
                dead[client] = true;
            }
        }
    }
    Sent {
        lines: sent_total.load(Ordering::Relaxed),
        late,
        problems,
    }
}

/// Writes all of `line`, waiting a little when the socket is full (it never should be at these
/// rates), for at most `FULL_WAIT`.
fn write_whole(mut stream: &TcpStream, mut line: &[u8]) -> io::Result<()> {
    let give_up = Instant::now() + FULL_WAIT;
    while !line.is_empty() {
        match stream.write(line) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => line = &line[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < give_up => {
                thread::sleep(Duration::from_micros(50));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `<client> <seq> <ns>` at the start of a relayed text.
fn parse_stamp(text: &[u8]) -> Option<(usize, u32, u64)> {
    let mut fields = text.split(|&b| b == b' ');
    let client = number(fields.next()?)?;
    let seq = u32::try_from(number(fields.next()?)?).ok()?;
    let ns = u64::try_from(number(fields.next()?)?).ok()?;
    Some((client, seq, ns))
}

// ---------------------------------------------------------------------------------------------
// Unthrottled

/// How the unthrottled run went.
#[derive(Debug)]
pub struct FloodReport {
    pub sent: u64,
    /// Newlines received by all clients: every one is a relayed line, no one joins or leaves.
    pub deliveries: u64,
    pub expected: u64,
    /// From the first write until the last delivery.
    pub elapsed: Duration,
    pub end: End,
}

impl Room {
    /// Every client writes `lines` lines of LINE_LEN bytes as fast as its socket takes them, while
    /// every client reads as fast as it can; until every line has reached every other client, no
    /// progress came for `stall`, or `deadline`.
    pub fn flood(
        &mut self,
        target: &mut Target,
        lines: u64,
        stall: Duration,
        deadline: Instant,
    ) -> FloodReport {
        let n = self.len();
        let total = lines * LINE_LEN as u64;
        let chunk = flood_chunk();
        // Lines are only counted, not read, so an announcement is found by its start instead.
        let announcement = memmem::Finder::new(match self.dialect {
            Dialect::Chatd => &b"\n* "[..],
            Dialect::Ncat => &b"<announce> "[..],
        });
        let mut sent = vec![0u64; n];
        let mut report = FloodReport {
            sent: 0,
            deliveries: 0,
            expected: lines * n as u64 * (n as u64).saturating_sub(1),
            elapsed: Duration::ZERO,
            end: End::Done,
        };
        let start = Instant::now();
        let mut last_read = start;
        let mut progress_at = start;
        let mut watch = Watch::new(deadline);
        // Edge-triggered: the sockets have been writable all along, so no event will say so now.
        for (i, stream) in self.streams.iter().enumerate() {
            if let Err(e) = pump(stream, &mut sent[i], total, &chunk) {
                self.problems.add(&format!("send #{i}"), e);
                self.members[i].seat.gone = true;
            }
        }
        loop {
            let now = Instant::now();
            if report.deliveries >= report.expected {
                break;
            }
            if now - progress_at >= stall {
                report.end = End::TimedOut(format!("no progress for {stall:?}"));
                break;
            }
            if let Err(end) = self.wait(&mut watch, target) {
                report.end = end;
                break;
            }
            for event in &self.events {
                let i = event.token().0;
                let (Some(stream), Some(member)) = (self.streams.get(i), self.members.get_mut(i))
                else {
                    continue;
                };
                if member.seat.gone {
                    continue;
                }
                let mut step = Ok(());
                if event.is_readable() {
                    match count_lines(stream, &mut self.buf, &announcement) {
                        Ok((0, _)) => {}
                        Ok((got, announced)) => {
                            report.deliveries += got - announced;
                            self.departures += announced;
                            last_read = Instant::now();
                            progress_at = last_read;
                        }
                        Err(e) => step = Err(e),
                    }
                }
                if step.is_ok() && event.is_writable() && sent[i] < total {
                    step = pump(stream, &mut sent[i], total, &chunk);
                }
                if let Err(e) = step {
                    self.problems.add(&format!("client #{i}"), e);
                    member.seat.gone = true;
                }
            }
        }
        report.sent = sent.iter().map(|&bytes| bytes / LINE_LEN as u64).sum();
        report.elapsed = last_read - start;
        report
    }
}

/// Writes the next bytes of a client's `total`, from `chunk`, until the socket would block.
fn pump(mut stream: &TcpStream, sent: &mut u64, total: u64, chunk: &[u8]) -> io::Result<()> {
    while *sent < total {
        // The chunk holds whole lines, so any offset into the stream maps onto it.
        let at = (*sent % chunk.len() as u64) as usize;
        let left = usize::try_from(total - *sent).unwrap_or(usize::MAX);
        match stream.write(&chunk[at..chunk.len().min(at + left)]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => *sent += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until the socket would block and counts the newlines, and the announcements among them,
/// nothing else: the reader must not be what limits the room. `Err` once the server closed.
fn count_lines(
    stream: &TcpStream,
    buf: &mut [u8],
    announcement: &memmem::Finder<'_>,
) -> io::Result<(u64, u64)> {
    let (mut lines, mut announced) = (0, 0);
    read_client(stream, buf, |data| {
        lines += memchr::memchr_iter(b'\n', data).count() as u64;
        // (One that starts a read is missed; the log's check of `slow` still sees it.)
        announced += announcement.find_iter(data).count() as u64;
    })?;
    Ok((lines, announced))
}

/// About 64 KiB of identical printable lines of LINE_LEN bytes.
fn flood_chunk() -> Vec<u8> {
    let mut line = b"flood ".to_vec();
    line.resize(LINE_LEN - 1, b'z');
    line.push(b'\n');
    line.repeat(64 * 1024 / LINE_LEN)
}

/// Bytes of every line a client of the room sends, newline included.
pub const LINE_LEN: usize = 40;
/// The read buffer: large, so a backlog of relayed lines comes in few reads.
const READ_BUF: usize = 256 * 1024;
/// How far ahead of the first paced send the sender thread is started.
const SEND_LEAD: Duration = Duration::from_millis(20);
/// A paced send this much past its time counts as late.
const LATE: Duration = Duration::from_millis(1);
/// The longest a paced send waits for room in a full socket.
const FULL_WAIT: Duration = Duration::from_secs(1);
