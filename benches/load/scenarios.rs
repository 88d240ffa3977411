//! The scenarios: what each one runs, its time budget, and one function per scenario that drives a
//! freshly started server and turns what happened into a `Row`.
//!
//! Deliberately not here: socket handling (`clients.rs`), starting servers (`targets.rs`), or
//! printing (`report.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::clients::{self, Audience, HoldEnd, HoldReport, IngestLoad, Pace};
use crate::report::{Row, Status};
use crate::sys;
use crate::targets::{Chatd, Kind, LogCounts, Ncat, NcatMode, POLL_FILE, Sink, Target};

/// One kind of load with its size.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// `clients` clients send `total_lines` lines of `line_len` bytes between them, flat out.
    Ingest {
        clients: usize,
        line_len: usize,
        total_lines: u64,
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
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Ingest { .. } => "ingest",
            Scenario::Hold { .. } => "hold",
            Scenario::Churn { .. } => "churn",
            Scenario::Broadcast { .. } => "broadcast",
        }
    }

    pub fn params(&self) -> String {
        match self {
            Scenario::Ingest {
                clients, line_len, ..
            } => match line_len {
                1024 => format!("C={clients} 1KiB"),
                _ => format!("C={clients} {line_len}B"),
            },
            Scenario::Hold { clients } => format!("N={clients}"),
            Scenario::Churn { workers, .. } => format!("P={workers}"),
            Scenario::Broadcast { clients, rate, .. } => format!("C={clients} {rate}/s"),
        }
    }

    /// The most a row may take before it is cut off as TIMEOUT: generous, since the point is to
    /// bound a stuck run, not to judge a slow one.
    fn budget(&self, quick: bool) -> Duration {
        let base = if quick { 15 } else { 60 };
        match self {
            Scenario::Ingest { .. } | Scenario::Hold { .. } => Duration::from_secs(base),
            Scenario::Churn { duration, .. } | Scenario::Broadcast { duration, .. } => {
                *duration + Duration::from_secs(base / 2)
            }
        }
    }

    /// ncat's mode for this scenario: the broker for churn, a plain listener otherwise.
    fn ncat_mode(&self) -> NcatMode {
        match self {
            Scenario::Churn { .. } => NcatMode::Broker,
            _ => NcatMode::Listen,
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
    let overflows_before = sys::listen_overflows();
    match start(kind, scenario.ncat_mode(), context, &dir) {
        Ok(target) => {
            let budget = scenario.budget(context.quick);
            match *scenario {
                Scenario::Ingest {
                    clients,
                    line_len,
                    total_lines,
                } => {
                    let load = IngestLoad {
                        clients,
                        line_len,
                        lines_per_client: (total_lines / clients as u64).max(1),
                    };
                    ingest(target, load, budget, &mut row);
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
            }
        }
        Err(Start::Skipped(why)) => row.end(Status::Skipped, why),
        Err(Start::Failed(why)) => row.end(Status::Failed, why),
    }
    // The target is gone by now: every child of this row has been killed and reaped.
    let _ = fs::remove_dir_all(&dir);
    // A full listen queue drops SYNs, and each dropped SYN costs its client a second: a slow row
    // with this note measured the backlog, not the loop.
    if let (Some(before), Some(after)) = (overflows_before, sys::listen_overflows())
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

fn start(kind: Kind, mode: NcatMode, context: &Context, dir: &Path) -> Result<Target, Start> {
    let failed = |e: std::io::Error| Start::Failed(format!("{} did not start: {e}", kind.name()));
    match kind {
        Kind::Chatd => Chatd::spawn(dir).map(Target::Chatd).map_err(failed),
        Kind::Sink => Sink::spawn().map(Target::Sink).map_err(failed),
        Kind::Ncat => match &context.ncat {
            None => Err(Start::Skipped("ncat is not on PATH".into())),
            Some(ncat) => Ncat::spawn(ncat, mode, dir)
                .map(Target::Ncat)
                .map_err(failed),
        },
    }
}

/// Lines/s and MB/s from the first connect until the server has taken the last line (chatd: its
/// last `message` report is in the log file), and the server's CPU time per million lines.
fn ingest(mut target: Target, load: IngestLoad, budget: Duration, row: &mut Row) {
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
        clients::close_hard(client);
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
        HoldEnd::Done => {}
        HoldEnd::TimedOut => return row.end(Status::Timeout, progress),
        HoldEnd::ServerGone(why) => return row.end(Status::Failed, format!("{why}; {progress}")),
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
