//! The scenarios: what each one runs, its time budget, and one function per scenario that drives a
//! freshly started server and turns what happened into a `Row`.
//!
//! Deliberately not here: socket handling (`clients.rs`), starting servers (`targets.rs`), or
//! printing (`report.rs`).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::clients::{self, Audience, HoldReport, IngestLoad, Pace};
use crate::net::{self, End};
use crate::procfs;
use crate::report::{self, Row, Status};
use crate::room::{LINE_LEN, Room, SeatReport};
use crate::targets::{Chatd, Kind, LogCounts, Ncat, NcatMode, POLL_FILE, Sink, Target};
use crate::tls::{self, TlsLoad};

/// One kind of load with its size.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// `clients` clients send `total_lines` lines of `line_len` bytes between them, flat out.
    Ingest {
        clients: usize,
        line_len: usize,
        total_lines: u64,
        /// What chatd runs with beyond the defaults (chatd rows only).
        variant: Variant,
    },
    /// `clients` clients connect and stay.
    Hold { clients: usize },
    /// `workers` workers connect, read the greeting and close, in a loop, for `duration`.
    Churn { workers: usize, duration: Duration },
    /// `clients` clients listen while the operator broadcasts `rate` lines a second for
    /// `duration`.
    Broadcast {
        clients: usize,
        rate: u32,
        duration: Duration,
    },
    /// `clients` clients take their seats in the chat room (chatd `--relay`, ncat `--chat`), then
    /// talk as `load` says.
    Relay {
        clients: usize,
        load: RelayLoad,
        /// What chatd runs with beyond `--relay` (chatd rows only).
        variant: Variant,
    },
    /// chatd with a TLS listener and rustls clients (`tls.rs`).
    Tls { load: TlsLoad },
}

/// An ingest or relay row's chatd: as it starts by default, or with one feature on, to price it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Default,
    /// `--log-format json`: what the JSON reports cost beside the text ones.
    Json,
    /// `--metrics 127.0.0.1:0` with nobody scraping: what the counters cost.
    Metrics,
    /// `--max-rate` at its default (in the room: 20 lines/s, burst 200) rather than 0: what flood
    /// control costs a room whose members stay under it.
    MaxRate,
    /// `--relay` for an ingest row: one member alone in the room, whose lines go to nobody; the
    /// baseline of the ` bus` ingest row.
    Room,
    /// `--bus` to a nats-server with no other instance in the room: what sharing costs.
    Bus,
    /// Two chatd processes with `--reuse-port --bus` on one port, one room: the kernel spreads
    /// the clients, so members are split over the two instances.
    Pair,
}

/// What the relay room's clients do once seated.
#[derive(Debug, Clone, Copy)]
pub enum RelayLoad {
    /// Nothing: the row times the seating.
    Seat,
    /// Every client sends `rate` lines a second for `duration`, the sends evenly spread; each
    /// line carries its send time.
    Paced { rate: f64, duration: Duration },
    /// Every client sends `lines` lines as fast as its socket takes them, while every client
    /// reads as fast as it can. A count, not a time: chatd reads its senders whatever its
    /// recipients' queues hold, so an open-ended flood only grows the queues until clients are
    /// dropped `slow` (at C=100 with a 64 MiB `--max-queue`, within seconds).
    Unthrottled { lines: u64 },
    /// One more client bursts `bytes` of empty lines into the seated room (every member reading
    /// and discarding), and `newcomers` clients connect one after another meanwhile: how long each
    /// waits for its greeting. A turn's work is bounded, so the burst must not hold them up.
    Burst { bytes: usize, newcomers: usize },
}

impl Variant {
    /// How the row's name says it: nothing, ` json` or ` metrics`.
    fn suffix(self) -> &'static str {
        match self {
            Variant::Default => "",
            Variant::Json => " json",
            Variant::Metrics => " metrics",
            Variant::MaxRate => " max-rate=20",
            Variant::Room => " relay",
            Variant::Bus => " bus",
            Variant::Pair => " 2 procs",
        }
    }
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Ingest { .. } => "ingest",
            Scenario::Hold { .. } => "hold",
            Scenario::Churn { .. } => "churn",
            Scenario::Broadcast { .. } => "broadcast",
            Scenario::Relay { .. } => "relay",
            Scenario::Tls { .. } => "tls",
        }
    }

    pub fn params(&self) -> String {
        match self {
            Scenario::Ingest {
                clients,
                line_len,
                variant,
                ..
            } => {
                let size = match line_len {
                    1024 => "1KiB".to_owned(),
                    _ => format!("{line_len}B"),
                };
                format!("C={clients} {size}{}", variant.suffix())
            }
            Scenario::Hold { clients } => format!("N={clients}"),
            Scenario::Tls { load } => load.params(),
            Scenario::Churn { workers, .. } => format!("P={workers}"),
            Scenario::Broadcast { clients, rate, .. } => format!("C={clients} {rate}/s"),
            Scenario::Relay {
                clients,
                load,
                variant,
            } => {
                let load = match load {
                    RelayLoad::Seat => "seat".to_owned(),
                    RelayLoad::Paced { rate, .. } => format!("{rate}/s"),
                    RelayLoad::Unthrottled { .. } => "unthrottled".to_owned(),
                    RelayLoad::Burst { bytes, .. } => format!("burst {}KiB", bytes / 1024),
                };
                format!("C={clients} {load}{}", variant.suffix())
            }
        }
    }

    fn variant(&self) -> Variant {
        match self {
            Scenario::Ingest { variant, .. } | Scenario::Relay { variant, .. } => *variant,
            _ => Variant::Default,
        }
    }

    /// The most a row may take before it is cut off as TIMEOUT: generous, since the point is to
    /// bound a stuck run, not to judge a slow one.
    fn budget(&self, quick: bool) -> Duration {
        let base = if quick { 15 } else { 60 };
        match self {
            Scenario::Ingest { .. } | Scenario::Hold { .. } => Duration::from_secs(base),
            Scenario::Relay { load, .. } => match load {
                RelayLoad::Seat | RelayLoad::Unthrottled { .. } | RelayLoad::Burst { .. } => {
                    Duration::from_secs(base)
                }
                RelayLoad::Paced { duration, .. } => *duration + Duration::from_secs(base / 2),
            },
            Scenario::Churn { duration, .. } | Scenario::Broadcast { duration, .. } => {
                *duration + Duration::from_secs(base / 2)
            }
            Scenario::Tls { load } => match load {
                TlsLoad::Handshakes { duration, .. } => *duration + Duration::from_secs(base / 2),
                _ => Duration::from_secs(base),
            },
        }
    }

    /// ncat's mode for this scenario: the broker for churn, the chat room for relay, a plain
    /// listener otherwise.
    fn ncat_mode(&self) -> NcatMode {
        match self {
            Scenario::Churn { .. } => NcatMode::Broker,
            Scenario::Relay { .. } => NcatMode::Chat,
            _ => NcatMode::Listen,
        }
    }

    /// chatd's flags for this scenario beyond where to listen and log. The rows are load, not
    /// people: every one runs with `--max-rate 0` (flood control off; without `--relay` that is
    /// the default anyway), but the `max-rate=20` twins, which price it.
    fn chatd_args(&self) -> &'static [&'static str] {
        match self {
            // Every line goes to every other client at once: a client's queue may hold a
            // backlog of the whole row, well past the 1 MiB default, before the reader gets to it.
            Scenario::Relay {
                load: RelayLoad::Unthrottled { .. },
                ..
            } => &[
                "--relay",
                "--max-queue",
                UNTHROTTLED_MAX_QUEUE,
                "--max-rate",
                "0",
            ],
            Scenario::Relay {
                variant: Variant::Json,
                ..
            } => &["--relay", "--log-format", "json", "--max-rate", "0"],
            Scenario::Relay {
                variant: Variant::MaxRate,
                ..
            } => &["--relay"],
            Scenario::Relay { .. } => &["--relay", "--max-rate", "0"],
            Scenario::Ingest {
                variant: Variant::Json,
                ..
            } => &["--log-format", "json", "--max-rate", "0"],
            Scenario::Ingest {
                variant: Variant::Metrics,
                ..
            } => &["--metrics", "127.0.0.1:0", "--max-rate", "0"],
            // The bus needs the room; `spawn_bus` adds `--bus`.
            Scenario::Ingest {
                variant: Variant::Room | Variant::Bus,
                ..
            } => &["--relay", "--max-rate", "0"],
            _ => &["--max-rate", "0"],
        }
    }
}

/// What every row needs from the run.
pub struct Context {
    /// The run's temporary directory; each row works in a subdirectory it removes afterwards.
    pub dir: PathBuf,
    /// ncat's path, if it is installed.
    pub ncat: Option<PathBuf>,
    pub quick: bool,
}

/// Runs `scenario` against a fresh `kind` server and reports it as one row.
pub fn run(scenario: &Scenario, kind: Kind, context: &Context, index: usize) -> Row {
    let mut row = Row::new(scenario.name(), scenario.params(), kind);
    let dir = context.dir.join(format!("{index:02}-{}", kind.name()));
    if let Err(e) = fs::create_dir_all(&dir) {
        row.end(
            Status::Failed,
            format!("cannot create {}: {e}", dir.display()),
        );
        return row;
    }
    if let Scenario::Ingest { .. } = scenario {
        // Every line goes to a log file: the earlier rows' gigabytes are written back to disk
        // first, so that their writeback does not throttle this row (it made a row that ran after
        // the 1 KiB rows four times as costly per line as the same row run alone).
        // SAFETY: sync(2) has no preconditions and touches no memory of ours.
        unsafe { libc::sync() };
    }
    if let Scenario::Tls { load } = scenario {
        // chatd only: the others speak no TLS. The row starts its own chatd, with a certificate.
        // SAFETY: as above.
        unsafe { libc::sync() };
        tls::run(*load, &dir, scenario.budget(context.quick), &mut row);
        let _ = fs::remove_dir_all(&dir);
        return row;
    }
    let overflows_before = procfs::listen_overflows();
    match start(kind, scenario, context, &dir) {
        Ok(target) => {
            let budget = scenario.budget(context.quick);
            match *scenario {
                Scenario::Ingest {
                    clients,
                    line_len,
                    total_lines,
                    variant,
                } => {
                    let load = IngestLoad {
                        clients,
                        line_len,
                        lines_per_client: (total_lines / clients as u64).max(1),
                    };
                    ingest(target, load, variant, budget, &mut row);
                }
                Scenario::Hold { clients } => hold(target, clients, budget, &mut row),
                Scenario::Churn { workers, duration } => {
                    churn(target, workers, duration, budget, &mut row);
                }
                Scenario::Broadcast {
                    clients,
                    rate,
                    duration,
                } => broadcast(target, clients, rate, duration, budget, &mut row),
                Scenario::Relay {
                    clients,
                    load,
                    variant,
                } => relay(target, clients, load, variant, budget, &mut row),
                Scenario::Tls { .. } => {} // Run above.
            }
        }
        Err(Start::Skipped(why)) => row.end(Status::Skipped, why),
        Err(Start::Failed(why)) => row.end(Status::Failed, why),
    }
    // The target is gone by now: every child of this row has been killed and reaped.
    let _ = fs::remove_dir_all(&dir);
    // A full listen queue drops SYNs, and each dropped SYN costs its client a second: a slow row
    // with this note measured the backlog, not the loop.
    if let (Some(before), Some(after)) = (overflows_before, procfs::listen_overflows())
        && after > before
    {
        row.note(format!(
            "the kernel dropped {} connection attempts on a full listen queue (ListenOverflows); \
             each waits ~1 s for its SYN to be sent again",
            after - before
        ));
    }
    row
}

/// Why a server did not start.
enum Start {
    Skipped(String),
    Failed(String),
}

fn start(kind: Kind, scenario: &Scenario, context: &Context, dir: &Path) -> Result<Target, Start> {
    let failed = |e: std::io::Error| Start::Failed(format!("{} did not start: {e}", kind.name()));
    match kind {
        Kind::Chatd => match scenario.variant() {
            Variant::Bus | Variant::Pair => {
                let pair = scenario.variant() == Variant::Pair;
                Chatd::spawn_bus(dir, scenario.chatd_args(), pair)
            }
            _ => Chatd::spawn(dir, scenario.chatd_args()),
        }
        .map(Target::Chatd)
        .map_err(failed),
        Kind::Sink => Sink::spawn().map(Target::Sink).map_err(failed),
        Kind::Ncat => match &context.ncat {
            None => Err(Start::Skipped("ncat is not on PATH".into())),
            Some(ncat) => Ncat::spawn(ncat, scenario.ncat_mode(), dir)
                .map(Target::Ncat)
                .map_err(failed),
        },
    }
}

/// Lines/s and MB/s from the first connect until the server has taken the last line (chatd: its
/// last `message` report is in the log file), and the server's CPU time per million lines.
/// The row's note on the bus: its `bus` warnings (lines not shared, gaps), or that there were none.
fn bus_note(chatd: &Chatd, row: &mut Row) {
    let warnings = chatd.bus_warnings();
    match warnings.len() {
        0 => row.note("bus: no line lost or not shared (no `bus` warning)"),
        n => row.note(format!(
            "bus: {n} warnings: {}",
            warnings[..n.min(4)].join("; ")
        )),
    }
}

fn ingest(mut target: Target, load: IngestLoad, variant: Variant, budget: Duration, row: &mut Row) {
    let expected = load.lines_per_client * load.clients as u64;
    // ncat's listen backlog is 10: more clients than that connecting at once get reset.
    let pace = target.accepted_counter().map(|accepted| Pace {
        window: SHORT_BACKLOG_WINDOW,
        accepted,
    });
    let cpu_before = target.cpu();
    let start = Instant::now();
    let senders = match clients::start_senders(target.addr(), load, pace) {
        Ok(senders) => senders,
        Err(e) => return row.end(Status::Failed, format!("cannot start the senders: {e}")),
    };
    let (mut taken, mut progress_at) = (0, start);
    let outcome = loop {
        let now_taken = target.lines_taken(load.line_len);
        let now = Instant::now();
        if now_taken >= expected {
            break Ok(now - start);
        }
        if now_taken > taken {
            (taken, progress_at) = (now_taken, now);
        }
        if now - start >= budget {
            break Err((Status::Timeout, format!("over the {budget:?} budget")));
        }
        // A run that stopped moving will not finish: say so now rather than at the budget.
        if now - progress_at >= STALL {
            break Err((Status::Timeout, format!("no progress for {STALL:?}")));
        }
        if let Some(why) = target.exited() {
            break Err((Status::Failed, why));
        }
        thread::sleep(POLL_FILE);
    };
    let cpu = cpu_used(cpu_before, target.cpu());
    let taken = target.lines_taken(load.line_len);
    let log = match &target {
        Target::Chatd(chatd) => Some(chatd.log.counts.clone()),
        Target::Sink(_) | Target::Ncat(_) => None,
    };
    if let (Target::Chatd(chatd), Variant::Bus) = (&target, variant) {
        bus_note(chatd, row);
    }
    // The server goes before its clients reset their connections: nothing it does from here on
    // is measured.
    drop(target);
    let sent = senders.finish();
    if let Some(problems) = sent.problems.summary() {
        row.note(problems);
    }
    let elapsed = match outcome {
        Ok(elapsed) => elapsed,
        Err((status, why)) => {
            let sent = sent.lines_sent;
            let why = format!("{why}: {taken} of {expected} lines taken, {sent} sent");
            return row.end(status, why);
        }
    };
    let seconds = elapsed.as_secs_f64();
    let lines = expected as f64;
    row.figure("lines_per_s", lines / seconds, "lines/s");
    let megabytes = lines * load.line_len as f64 / 1e6;
    row.figure("mb_per_s", megabytes / seconds, "MB/s");
    if let Some(cpu) = cpu {
        row.figure("cpu_s_per_m_lines", cpu / (lines / 1e6), "CPU-s/M-lines");
    }
    row.figure("seconds", seconds, "s");
    match log {
        Some(counts) => {
            let clients = load.clients;
            let ends = format!("END markers reported: {} of {clients} clients", counts.ends);
            row.check(counts.ends == clients as u64, ends);
            let messages = format!("message reports: {} of {expected}", counts.messages);
            row.check(counts.messages == expected, messages);
        }
        None => row.check(
            taken == expected,
            format!("lines taken: {taken} of {expected}"),
        ),
    }
}

/// Connect rate until every client is served, the server's memory per client, and whether each
/// client got its greeting.
fn hold(mut target: Target, n: usize, budget: Duration, row: &mut Row) {
    let idle_rss = target.rss();
    // Keep fewer connections in flight than the server's listen backlog: chatd's is 4096, the
    // sink's 1024, ncat's 10.
    let window = match target.kind() {
        Kind::Ncat => SHORT_BACKLOG_WINDOW,
        Kind::Chatd | Kind::Sink => 256,
    };
    let deadline = Instant::now() + budget;
    let held = clients::hold(&mut target, n, window, deadline);
    judge_hold(&mut target, &held, n, idle_rss, deadline, row);
    // The server goes first, so it spends no time on the resets that close the clients.
    drop(target);
    for client in &held.clients {
        net::close_hard(client);
    }
}

/// The figures and checks of a hold run, with every client still connected.
fn judge_hold(
    target: &mut Target,
    held: &HoldReport,
    n: usize,
    idle_rss: Option<u64>,
    deadline: Instant,
    row: &mut Row,
) {
    if let Some(problems) = held.problems.summary() {
        row.note(problems);
    }
    let progress = format!(
        "{} of {n} clients connected, {} served",
        held.connected, held.served
    );
    match &held.end {
        End::Done => {}
        // The progress says what the row's budget was not enough for.
        End::TimedOut(_) => return row.end(Status::Timeout, progress),
        End::ServerGone(why) => return row.end(Status::Failed, format!("{why}; {progress}")),
    }
    if held.served == 0 {
        return row.end(Status::Failed, progress);
    }
    // chatd's own view: its connect reports, which also show it is done with the accepts before
    // its memory is read.
    if let Target::Chatd(chatd) = target {
        let wanted = held.served + held.refused;
        let counts = wait_for_log(chatd, deadline, |c| c.connects + c.refused >= wanted as u64);
        row.check(
            counts.connects == held.served as u64,
            format!("connect reports: {} of {}", counts.connects, held.served),
        );
    }
    let rss = target.rss();
    let served = held.served as f64;
    let rate = served / held.elapsed.as_secs_f64();
    row.figure("clients_per_s", rate, "clients/s");
    match (idle_rss, rss) {
        (Some(idle), Some(full)) => {
            let per_client = full.saturating_sub(idle) as f64 / served / 1024.0;
            row.figure("rss_kib_per_client", per_client, "KiB/client");
            row.figure("rss_mib", full as f64 / (1 << 20) as f64, "MiB-RSS");
        }
        _ => row.note("no RSS of its own (runs inside the harness)"),
    }
    if target.greets() {
        let greeted = format!(
            "greeted: {} of {n} clients ({} told `server full`)",
            held.served, held.refused
        );
        row.check(held.served == n, greeted);
    } else {
        let written = format!("hello lines written out: {} of {n}", held.served);
        row.check(held.served == n, written);
        row.note("ncat sends no greeting: a client counts as served once ncat wrote its line");
    }
}

/// Connections per second for `workers` workers, and whether the server saw every one come and
/// go.
fn churn(target: Target, workers: usize, duration: Duration, budget: Duration, row: &mut Row) {
    let greets = target.greets();
    let churned = clients::churn(target.addr(), workers, duration, greets);
    if let Some(problems) = churned.problems.summary() {
        row.note(problems);
    }
    if churned.cycles == 0 {
        return row.end(Status::Failed, "no connection completed");
    }
    row.figure(
        "conn_per_s",
        churned.cycles as f64 / churned.elapsed.as_secs_f64(),
        "conn/s",
    );
    row.figure("connections", churned.connected as f64, "connections");
    let deadline = Instant::now() + budget.saturating_sub(duration);
    match target {
        Target::Chatd(mut chatd) => {
            let wanted = churned.connected;
            let counts = wait_for_log(&mut chatd, deadline, |c| {
                c.connects >= wanted && c.disconnects >= wanted
            });
            row.check(
                counts.connects == wanted && counts.disconnects == wanted,
                format!(
                    "reports for {wanted} connections: {} connect, {} disconnect",
                    counts.connects, counts.disconnects
                ),
            );
        }
        Target::Sink(sink) => {
            let stats = &sink.stats;
            let closed = || stats.closed.load(Ordering::Relaxed);
            while closed() < churned.connected && Instant::now() < deadline {
                thread::sleep(POLL_FILE);
            }
            let accepted = stats.accepted.load(Ordering::Relaxed);
            row.check(
                accepted == churned.connected && closed() == churned.connected,
                format!(
                    "{} connections: {accepted} accepted, {} closed",
                    churned.connected,
                    closed()
                ),
            );
        }
        Target::Ncat(_) => {
            row.note(
                "ncat --broker sends no greeting (a cycle is connect and close) and counts nothing",
            );
        }
    }
}

/// Time from writing `/all <seq> <ns>` at the console to the last of `clients` clients reading it.
fn broadcast(
    target: Target,
    clients: usize,
    rate: u32,
    duration: Duration,
    budget: Duration,
    row: &mut Row,
) {
    let Target::Chatd(mut chatd) = target else {
        return row.end(Status::Skipped, "only chatd has an operator console");
    };
    let lines = (f64::from(rate) * duration.as_secs_f64()).round() as usize;
    let epoch = Instant::now();
    let audience = match Audience::start(chatd.addr, clients, lines, epoch) {
        Ok(audience) => audience,
        Err(e) => return row.end(Status::Failed, format!("cannot start the clients: {e}")),
    };
    let deadline = epoch + budget;
    if !audience.wait_ready(deadline) {
        let report = audience.finish();
        let mut why = format!("only {} of {clients} clients greeted", report.greeted);
        if let Some(problems) = report.problems.summary() {
            why = format!("{why}; {problems}");
        }
        return row.end(Status::Timeout, why);
    }
    let start = Instant::now();
    for seq in 0..lines {
        // A fixed schedule: a late write is not made up for by crowding the next ones.
        let due = start + Duration::from_secs_f64(seq as f64 / f64::from(rate));
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let sent_ns = epoch.elapsed().as_nanos();
        if let Err(e) = chatd.console_line(&format!("/all {seq} {sent_ns}")) {
            let _ = audience.finish();
            return row.end(Status::Failed, format!("console write failed: {e}"));
        }
    }
    let done = audience.wait_done(deadline.max(Instant::now() + BROADCAST_DRAIN));
    let report = audience.finish();
    if let Some(problems) = report.problems.summary() {
        row.note(problems);
    }
    let last = Quantiles::of(report.latencies_ns);
    row.figure("p50_ms", last.ms(0.5), "ms-p50");
    row.figure("p99_ms", last.ms(0.99), "ms-p99");
    row.figure("max_ms", last.ms(1.0), "ms-max");
    // The first client's share: how long the loop takes to react, before the fan-out to the rest.
    let first = Quantiles::of(report.first_latencies_ns);
    row.figure("first_client_p50_ms", first.ms(0.5), "ms-p50-first-client");
    row.check(
        report.incomplete == 0,
        format!(
            "lines that reached all {clients} clients: {} of {lines}",
            lines - report.incomplete
        ),
    );
    if !done {
        row.end(
            Status::Timeout,
            "not every line reached every client in time",
        );
    }
}

/// The chat room: `clients` clients take their seats (each is told who is online and then of
/// everyone who comes after it), then talk as `load` says.
fn relay(
    mut target: Target,
    clients: usize,
    load: RelayLoad,
    variant: Variant,
    budget: Duration,
    row: &mut Row,
) {
    let pair_wait = variant == Variant::Pair;
    let deadline = Instant::now() + budget;
    // As hold: fewer clients waiting at once than the listen backlog (ncat's is 10).
    let window = match target.kind() {
        Kind::Ncat => SHORT_BACKLOG_WINDOW,
        Kind::Chatd | Kind::Sink => 256,
    };
    let cpu_before = target.cpu();
    let (mut room, seating) = match Room::seat(&mut target, clients, window, deadline) {
        Ok(seated) => seated,
        Err(e) => return row.end(Status::Failed, format!("cannot seat the clients: {e}")),
    };
    let cpu = cpu_used(cpu_before, target.cpu());
    let mut sent = 0;
    if judge_seating(&seating, clients, cpu, load, row) {
        sent = match load {
            RelayLoad::Seat => 0,
            RelayLoad::Paced { rate, duration } => {
                paced(&mut target, &mut room, rate, duration, deadline, row)
            }
            RelayLoad::Unthrottled { lines } => {
                unthrottled(&mut target, &mut room, lines, deadline, row)
            }
            RelayLoad::Burst { bytes, newcomers } => {
                burst(&target, &mut room, bytes, newcomers, row);
                drop(target);
                return room.close();
            }
        };
    }
    row.check(
        room.departures == 0,
        format!(
            "departures announced to the clients: {} (none expected)",
            room.departures
        ),
    );
    if let Target::Chatd(chatd) = &mut target {
        // chatd's own view: its reports catch up within a turn or two of the last delivery.
        let counts = wait_for_log(chatd, Instant::now() + LOG_CATCH_UP, |c| {
            (pair_wait || c.connects >= seating.connected as u64) && c.messages >= sent
        });
        // Two processes: this one reports only the connects it took (the other's are `joined`
        // lines), but every line once, its own members' and the other's.
        let pair = variant == Variant::Pair;
        row.check(
            pair || counts.connects == seating.connected as u64,
            format!(
                "connect reports: {} of {}",
                counts.connects, seating.connected
            ),
        );
        row.check(
            counts.messages == sent,
            format!("message reports: {} of {sent} lines sent", counts.messages),
        );
        if matches!(variant, Variant::Bus | Variant::Pair) {
            bus_note(chatd, row);
        }
        row.check(
            counts.slow == 0,
            format!(
                "clients dropped `slow` (queue past --max-queue): {}",
                counts.slow
            ),
        );
    }
    if let Some(problems) = room.problems.summary() {
        row.note(problems);
    }
    if row.server != Kind::Chatd && !matches!(load, RelayLoad::Unthrottled { .. }) {
        row.note("chatd/this divides times here (the first figure): below 1, chatd was faster");
    }
    // The server goes first, so it spends no time on the resets that close the clients.
    drop(target);
    room.close();
}

/// The seating's figures (a seat row) or note (other rows); whether every client was seated.
fn judge_seating(
    seating: &SeatReport,
    clients: usize,
    cpu: Option<f64>,
    load: RelayLoad,
    row: &mut Row,
) -> bool {
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let (seated_ms, joins_ms) = (ms(seating.seated_after), ms(seating.joins_after));
    if let RelayLoad::Seat = load {
        row.figure("seated_ms", seated_ms, "ms-seated");
        row.figure("all_joins_ms", joins_ms, "ms-all-joins");
        if let Some(cpu) = cpu {
            row.figure("cpu_ms", cpu * 1e3, "CPU-ms");
        }
        row.figure("mb_read", seating.bytes_read as f64 / 1e6, "MB-read");
        let pairs = (clients * clients.saturating_sub(1) / 2) as u64;
        row.check(
            seating.seated == clients && seating.joins_seen == pairs,
            format!(
                "who-lines: {} of {clients}; join announcements: {} of {pairs}",
                seating.seated, seating.joins_seen
            ),
        );
        if row.server == Kind::Chatd && clients == 1_000 {
            row.goal(
                seated_ms < 1_000.0,
                format!(
                    "seat 1000 clients in under 1 s: every who-line after {} ms, every join \
                     announcement after {} ms",
                    report::number(seated_ms),
                    report::number(joins_ms)
                ),
            );
        }
    } else if seating.end == End::Done {
        row.note(format!(
            "seated {clients} clients in {} ms (every join announcement after {} ms)",
            report::number(seated_ms),
            report::number(joins_ms)
        ));
    }
    let progress = format!(
        "{} of {clients} clients connected, {} seated, {} join announcements owed",
        seating.connected, seating.seated, seating.joins_owed
    );
    match &seating.end {
        End::Done if seating.seated == clients => true,
        End::Done => {
            row.end(Status::Failed, progress);
            false
        }
        End::TimedOut(why) => {
            row.end(Status::Timeout, format!("seating: {why}; {progress}"));
            false
        }
        End::ServerGone(why) => {
            row.end(Status::Failed, format!("seating: {why}; {progress}"));
            false
        }
    }
}

/// About 100 000 deliveries a second: latency quantiles over every delivery, deliveries/s, and
/// whether every line reached every other client once and in order. Returns the lines sent.
fn paced(
    target: &mut Target,
    room: &mut Room,
    rate: f64,
    duration: Duration,
    deadline: Instant,
    row: &mut Row,
) -> u64 {
    let (harness_before, cpu_before) = (harness_cpu(), target.cpu_split());
    let report = room.paced(target, rate, duration, PACED_DRAIN, deadline);
    let cpu = Usage::between(cpu_before, target.cpu_split());
    let harness = Usage::between(harness_before, harness_cpu());
    let latencies = Quantiles::of(report.latencies_ns);
    let p99 = latencies.ms(0.99);
    row.figure("p50_ms", latencies.ms(0.5), "ms-p50");
    row.figure("p99_ms", p99, "ms-p99");
    row.figure("p999_ms", latencies.ms(0.999), "ms-p99.9");
    row.figure("max_ms", latencies.ms(1.0), "ms-max");
    let seconds = report.elapsed.as_secs_f64();
    row.figure(
        "deliveries_per_s",
        report.deliveries as f64 / seconds,
        "deliveries/s",
    );
    // Per line: how soon its first recipient had it, and its last (the whole fan-out).
    let first = Quantiles::of(report.first_ns).ms(0.5);
    row.figure("first_recipient_p50_ms", first, "ms-p50-first-recipient");
    let last = Quantiles::of(report.last_ns).ms(0.5);
    row.figure("last_recipient_p50_ms", last, "ms-p50-last-recipient");
    row.check(
        report.deliveries == report.expected && report.misordered == 0 && report.unreadable == 0,
        format!(
            "every line to every other client once, in order: {} of {} deliveries, {} out of \
             order or repeated, {} unreadable",
            report.deliveries, report.expected, report.misordered, report.unreadable
        ),
    );
    let clients = room.len();
    let target_ms = match clients {
        10 => Some(0.5),
        100 => Some(2.0),
        1_000 => Some(5.0),
        _ => None,
    };
    if let (Kind::Chatd, Some(target_ms)) = (row.server, target_ms) {
        row.goal(
            p99 < target_ms,
            format!(
                "p99 under {target_ms} ms at C={clients}: {} ms",
                report::number(p99)
            ),
        );
    }
    row.note(format!(
        "{} lines sent in {} s, each to {} clients; CPU over the run: server {}, harness {} \
         (the harness's sender thread and every client's reads)",
        report.sent,
        report::number(seconds),
        clients - 1,
        cpu_text(cpu, seconds),
        cpu_text(harness, seconds),
    ));
    if report.late_sends > 0 {
        row.note(format!(
            "{} of {} sends left more than 1 ms after their time (the harness overslept)",
            report.late_sends, report.sent
        ));
    }
    if row.server == Kind::Ncat && report.unreadable > 0 {
        row.note("ncat relays each read chunk, not each line: a line split across reads is cut");
    }
    if let Some(end) = report.end {
        end_room(row, end);
    }
    report.sent
}

/// Every client sends flat out while every client reads: deliveries/s, and the server's CPU per
/// delivery next to the harness's. Returns the lines sent.
fn unthrottled(
    target: &mut Target,
    room: &mut Room,
    lines: u64,
    deadline: Instant,
    row: &mut Row,
) -> u64 {
    let (harness_before, cpu_before) = (harness_cpu(), target.cpu_split());
    let report = room.flood(target, lines, STALL, deadline);
    let cpu = Usage::between(cpu_before, target.cpu_split());
    let harness = Usage::between(harness_before, harness_cpu());
    let seconds = report.elapsed.as_secs_f64();
    let deliveries = report.deliveries as f64;
    let rate = deliveries / seconds;
    let millions = deliveries / 1e6;
    row.figure("deliveries_per_s", rate, "deliveries/s");
    if let Some(cpu) = cpu {
        row.figure(
            "cpu_s_per_m_deliveries",
            cpu.total() / millions,
            "CPU-s/M-deliveries",
        );
    }
    if let Some(harness) = harness {
        row.figure(
            "harness_cpu_s_per_m_deliveries",
            harness.total() / millions,
            "harness-CPU-s/M-deliveries",
        );
    }
    row.figure("seconds", seconds, "s");
    row.check(
        report.deliveries == report.expected,
        format!(
            "deliveries: {} of {} ({} lines, each to every other client)",
            report.deliveries, report.expected, report.sent
        ),
    );
    let clients = room.len();
    if row.server == Kind::Chatd && (clients == 100 || clients == 1_000) {
        row.goal(
            rate >= 2e6,
            format!(
                "at least 2M deliveries/s at C={clients}: {}",
                report::number(rate)
            ),
        );
    }
    row.note(format!(
        "{lines} lines of {LINE_LEN} B from each client; CPU over the run: server {}, harness {} \
         (this process: every client's writes, and reads of every delivery)",
        cpu_text(cpu, seconds),
        cpu_text(harness, seconds),
    ));
    if row.server == Kind::Ncat {
        row.note(
            "ncat relays each read chunk as one piece, prefixed once, not line by line: with few \
             clients a chunk holds many lines, so its deliveries/s is not comparable there",
        );
    }
    end_room(row, report.end);
    report.sent
}

/// A member bursts `bytes` of empty lines while the rest of the room reads; `newcomers` clients
/// connect meanwhile, one at a time, and each one's wait for its greeting is a sample.
fn burst(target: &Target, room: &mut Room, bytes: usize, newcomers: usize, row: &mut Row) {
    use std::io::{BufRead, BufReader, Write};
    let addr = target.addr();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let connect = || -> std::io::Result<BufReader<std::net::TcpStream>> {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(BufReader::new(stream))
    };
    let outcome = thread::scope(|scope| {
        let drained = scope.spawn(|| room.drain(&stop));
        let measured = (|| -> std::io::Result<(Vec<u64>, f64)> {
            let mut flooder = connect()?;
            flooder.read_line(&mut String::new())?;
            let started = Instant::now();
            flooder.get_mut().write_all(&vec![b'\n'; bytes])?;
            let written_ms = started.elapsed().as_secs_f64() * 1e3;
            let mut waits = Vec::new();
            for _ in 0..newcomers {
                let asked = Instant::now();
                let mut newcomer = connect()?;
                let mut greeting = String::new();
                newcomer.read_line(&mut greeting)?;
                waits.push(u64::try_from(asked.elapsed().as_nanos()).unwrap_or(u64::MAX));
                thread::sleep(Duration::from_millis(20));
            }
            Ok((waits, written_ms))
        })();
        stop.store(true, Ordering::SeqCst);
        let _ = drained.join();
        measured
    });
    let (waits, written_ms) = match outcome {
        Ok(measured) => measured,
        Err(e) => return row.end(Status::Failed, format!("burst: {e}")),
    };
    let waits = Quantiles::of(waits);
    let (p50, max) = (waits.ms(0.5), waits.ms(1.0));
    row.figure("greeting_p50_ms", p50, "ms-p50-greeting");
    row.figure("greeting_max_ms", max, "ms-max-greeting");
    if row.server == Kind::Chatd {
        row.goal(
            max < 100.0,
            format!(
                "a newcomer greeted within 100 ms during the burst: {} ms at worst",
                report::number(max)
            ),
        );
    }
    row.note(format!(
        "one member wrote {} KiB of empty lines (its write returned after {} ms) into a room of \
         {} that reads and discards; {newcomers} newcomers connected one after another meanwhile",
        bytes / 1024,
        report::number(written_ms),
        room.len(),
    ));
}

/// Lines per client for an unthrottled row of `clients` clients that makes about `deliveries`
/// deliveries in all (each line goes to the other `clients - 1`), but no more than the clients'
/// queues could hold at `--max-queue` if the server read every line before writing any: every
/// client reads, so a `slow` disconnect in these rows is a fault, never the plan.
pub fn unthrottled_lines(clients: usize, deliveries: u64) -> u64 {
    let others = clients.saturating_sub(1).max(1) as u64;
    let wanted = deliveries.div_ceil(clients as u64 * others);
    // A relayed line is the sent line behind `#<id>: `, and chatd charges each queued line 64
    // bytes besides (`queue::LINE_OVERHEAD`).
    let relayed = (LINE_LEN + RELAY_PREFIX_MAX + 64) as u64;
    let fits = UNTHROTTLED_MAX_QUEUE.parse::<u64>().unwrap_or(1 << 20) / (others * relayed);
    wanted.min(fits).max(1)
}

/// Ends the row as a room phase ended, unless it ended well.
fn end_room(row: &mut Row, end: End) {
    match end {
        End::Done => {}
        End::TimedOut(why) => row.end(Status::Timeout, why),
        End::ServerGone(why) => row.end(Status::Failed, why),
    }
}

/// CPU time a process used between two readings, user and kernel apart.
#[derive(Debug, Clone, Copy)]
struct Usage {
    user: f64,
    system: f64,
}

impl Usage {
    fn between(
        before: Option<(Duration, Duration)>,
        after: Option<(Duration, Duration)>,
    ) -> Option<Usage> {
        let ((user_before, system_before), (user, system)) = (before?, after?);
        Some(Usage {
            user: user.saturating_sub(user_before).as_secs_f64(),
            system: system.saturating_sub(system_before).as_secs_f64(),
        })
    }

    fn total(self) -> f64 {
        self.user + self.system
    }
}

/// The harness's own CPU time so far (this process: every client, and every thread).
fn harness_cpu() -> Option<(Duration, Duration)> {
    procfs::process_cpu_split(std::process::id())
}

/// `1.23 CPU-s (61% of a core, 80% of it in the kernel)`, or `n/a`.
fn cpu_text(usage: Option<Usage>, seconds: f64) -> String {
    let Some(usage) = usage else {
        return "n/a".to_owned();
    };
    let total = usage.total();
    let mut text = format!("{} CPU-s", report::number(total));
    if seconds > 0.0 && total > 0.0 {
        let _ = write!(
            text,
            " ({:.0}% of a core, {:.0}% of it in the kernel)",
            total / seconds * 100.0,
            usage.system / total * 100.0
        );
    }
    text
}

/// Sorted nanosecond samples.
struct Quantiles(Vec<u64>);

impl Quantiles {
    fn of(mut samples: Vec<u64>) -> Quantiles {
        samples.sort_unstable();
        Quantiles(samples)
    }

    /// The `q` quantile (nearest rank) in milliseconds; NaN without samples.
    fn ms(&self, q: f64) -> f64 {
        let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0.get(i).map_or(f64::NAN, |&ns| ns as f64 / 1e6)
    }
}

/// Reads chatd's log until `enough` holds or the deadline passes, and returns its counts.
fn wait_for_log(
    chatd: &mut Chatd,
    deadline: Instant,
    enough: impl Fn(&LogCounts) -> bool,
) -> LogCounts {
    loop {
        chatd.log.catch_up();
        if enough(&chatd.log.counts) || Instant::now() >= deadline {
            return chatd.log.counts.clone();
        }
        thread::sleep(POLL_FILE);
    }
}

/// CPU seconds between two readings, if both were had.
fn cpu_used(before: Option<Duration>, after: Option<Duration>) -> Option<f64> {
    Some(after?.saturating_sub(before?).as_secs_f64())
}

/// Clients connecting at once to a server whose listen backlog is 10 (ncat).
const SHORT_BACKLOG_WINDOW: usize = 8;
/// How long an ingest run may go without a single new line before it is called stuck.
const STALL: Duration = Duration::from_secs(10);
/// How long after the last broadcast the clients get to receive it.
const BROADCAST_DRAIN: Duration = Duration::from_secs(10);
/// How long after the last paced send the clients get to receive it.
const PACED_DRAIN: Duration = Duration::from_secs(5);
/// How long chatd's log may take to show the last reports once the clients have everything.
const LOG_CATCH_UP: Duration = Duration::from_secs(5);
/// `--max-queue` for the unthrottled relay rows: 64 MiB.
const UNTHROTTLED_MAX_QUEUE: &str = "67108864";
/// The most `#<id>: ` adds to a relayed line (ids up to 99 999, well past any row's clients).
const RELAY_PREFIX_MAX: usize = 8;
