//! The load test: chatd under ingest, hold, churn and broadcast load, and as a chat room (relay),
//! next to a bare mio sink (the ceiling) and ncat, all from this one process over loopback.
//!
//! `cargo bench --bench load` runs everything (a few minutes); `-- --quick` is the smoke run CI
//! calls (about 30 s of scenarios). Other arguments without `--` keep only the rows whose scenario
//! and params start with one of them, e.g. `cargo bench --bench load -- --quick churn` or
//! `cargo bench --bench load -- 'relay C=1000'`; one ending in `$` keeps only the row it names in
//! full (`'ingest C=100 64B$'`, without its json and metrics twins).
//!
//! Each row starts a fresh server, drives it with a bounded number of clients for a bounded time
//! (a row that runs out of time says TIMEOUT and the run goes on), and stops it. The results go to
//! stdout as a table, to `target/load-report.json` and to `target/load-chart.svg`. The exit code is
//! 1 only when chatd itself misbehaved: it failed, or a check of its reports did not hold.
//!
//! The rows are load, not people: chatd runs every one with `--max-rate 0` (flood control off),
//! but the `max-rate=20` twins of the fixed-load relay rows at C=100 and C=1000, which run with
//! the room's default to show what flood control costs members who stay under it.
//!
//! Deliberately not here: anything but the plan and the output; see `load/*.rs`, and
//! `tests/support/*.rs` for the /proc and report-line readers the tests use too.

#[path = "load/clients.rs"]
mod clients;
#[path = "load/net.rs"]
mod net;
#[path = "../tests/support/procfs.rs"]
mod procfs;
#[path = "load/report.rs"]
mod report;
#[path = "../tests/support/report_lines.rs"]
mod report_lines;
#[path = "load/room.rs"]
mod room;
#[path = "load/scenarios.rs"]
mod scenarios;
#[path = "load/sys.rs"]
mod sys;
#[path = "load/targets.rs"]
mod targets;
#[path = "load/tls.rs"]
mod tls;
#[path = "../tests/support/xorshift.rs"]
mod xorshift;

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use report::RunInfo;
use scenarios::{Context, RelayLoad, Scenario, Variant};
use targets::Kind;
use tls::TlsLoad;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let command = args.join(" ");
    let quick = args.iter().any(|a| a == "--quick");
    // cargo passes `--bench` to a harness-less bench; flags other than --quick are ignored.
    let filters: Vec<&str> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();

    // Before any child is spawned: they inherit it, and chatd sizes --max-clients from it.
    let open_files = sys::raise_open_files_limit();
    let machine = procfs::Machine::read();
    println!(
        "{}",
        report::wrap_words("command: ", &command, report::HANG)
    );
    let machine_text = format!(
        "{} CPUs, {}, Linux {}; open-files limit {open_files}",
        machine.cpus, machine.model, machine.kernel
    );
    println!(
        "{}",
        report::wrap_words("machine: ", &machine_text, report::HANG)
    );

    let dir = match TempDir::create() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("load: cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let context = Context {
        dir: dir.0.clone(),
        ncat: sys::find_on_path("ncat"),
        quick,
    };
    if context.ncat.is_none() {
        println!("note: ncat is not on PATH; its rows are skipped");
    }
    println!("note: chatd runs with --max-rate 0 (load, not people) but in the max-rate=20 rows");

    let started = Instant::now();
    let mut rows = Vec::new();
    let plan = plan(quick, open_files);
    let plan = plan.into_iter().filter(|(scenario, _)| {
        let row = format!("{} {}", scenario.name(), scenario.params());
        // `ROW$` keeps that row alone: `ingest C=100 64B$` without its json and metrics twins.
        let keeps = |f: &&str| {
            f.strip_suffix('$')
                .map_or(row.starts_with(*f), |exact| row == exact)
        };
        filters.is_empty() || filters.iter().any(keeps)
    });
    for (index, (scenario, kind)) in plan.enumerate() {
        let row = scenarios::run(&scenario, kind, &context, index);
        // One line as each row finishes, so a long run shows where it is.
        let first = row.figures.first().map_or_else(String::new, |f| {
            format!(" {} {}", report::number(f.value), f.unit)
        });
        println!(
            "  done: {} {} {} {}{first}",
            row.scenario,
            row.params,
            row.server.name(),
            row.status.word()
        );
        rows.push(row);
    }
    drop(dir);

    println!();
    print!("{}", report::table(&rows));
    let info = RunInfo {
        command: &command,
        quick,
        machine: &machine,
        open_files,
        seconds: started.elapsed().as_secs_f64(),
    };
    println!("scenarios took {:.1} s", info.seconds);

    let target = target_dir();
    let json_path = target.join("load-report.json");
    match fs::create_dir_all(&target)
        .and_then(|()| fs::write(&json_path, report::json(&info, &rows)))
    {
        Ok(()) => println!("wrote {}", json_path.display()),
        Err(e) => println!("note: cannot write {}: {e}", json_path.display()),
    }
    let chart_path = target.join("load-chart.svg");
    match report::chart(&rows, &chart_path) {
        Ok(()) => println!("wrote {}", chart_path.display()),
        Err(e) => println!("note: cannot draw {}: {e}", chart_path.display()),
    }

    let trouble = rows.iter().filter(|row| row.chatd_trouble()).count();
    if trouble > 0 {
        println!("chatd misbehaved in {trouble} rows (see FAILED above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Every row of the run, in order: scenario and server. chatd first within a scenario, so the
/// table reads down from it to the servers it is compared with.
fn plan(quick: bool, open_files: u64) -> Vec<(Scenario, Kind)> {
    use Kind::{Chatd, Ncat, Sink};
    let mut plan = Vec::new();

    // Ingest: totals fixed per row, so rows with 1, 10 and 100 clients move the same bytes.
    let (small_total, large_total) = if quick {
        (1_000_000, 100_000)
    } else {
        (5_000_000, 500_000)
    };
    for (line_len, total_lines) in [(64, small_total), (1024, large_total)] {
        for clients in [1, 10, 100] {
            let scenario = Scenario::Ingest {
                clients,
                line_len,
                total_lines,
                variant: Variant::Default,
            };
            // The quick run compares one row: the most clients, the shortest lines.
            let compare = !quick || (clients == 100 && line_len == 64);
            let kinds: &[Kind] = if compare {
                &[Chatd, Sink, Ncat]
            } else {
                &[Chatd]
            };
            plan.extend(kinds.iter().map(|&kind| (scenario.clone(), kind)));
        }
    }

    // What JSON reports and idle metrics cost: the row that moves most lines, again with each.
    // And what `--bus` costs ingest with no other instance in the room (issue 13): the bus needs
    // the room, so one member alone in it sends, with the room and then with the bus.
    let priced = [
        (100, Variant::Json),
        (100, Variant::Metrics),
        (1, Variant::Room),
        (1, Variant::Bus),
    ];
    for (clients, variant) in priced {
        let scenario = Scenario::Ingest {
            clients,
            line_len: 64,
            total_lines: small_total,
            variant,
        };
        plan.push((scenario, Chatd));
    }

    // TLS, beside the plain rows: ingest as the C=100 64 B row, a hold of idle TLS clients (chatd's
    // memory per client), and full handshakes a second from 64 parallel clients.
    let tls_rows = [
        TlsLoad::Ingest {
            clients: 100,
            line_len: 64,
            total_lines: small_total,
        },
        TlsLoad::Hold {
            clients: (if quick { 1_000 } else { 10_000 }).min(
                usize::try_from(open_files.saturating_sub(HARNESS_RESERVE)).unwrap_or(usize::MAX),
            ),
        },
        TlsLoad::Handshakes {
            workers: 64,
            duration: Duration::from_secs(if quick { 3 } else { 10 }),
        },
    ];
    plan.extend(tls_rows.map(|load| (Scenario::Tls { load }, Chatd)));

    // Hold: as many as the open-files limit allows, keeping a reserve for the harness itself
    // (the server has the same limit and keeps 32 of it for itself).
    let most = usize::try_from(open_files.saturating_sub(HARNESS_RESERVE)).unwrap_or(usize::MAX);
    let wanted: &[usize] = if quick {
        &[1_000]
    } else {
        &[1_000, 10_000, usize::MAX]
    };
    let mut sizes: Vec<usize> = wanted.iter().map(|&n| n.min(most)).collect();
    sizes.dedup();
    for (i, &clients) in sizes.iter().enumerate() {
        plan.push((Scenario::Hold { clients }, Chatd));
        // Only the smallest is compared: the sink runs in this process and shares its
        // descriptors with the clients, and ncat stops near select()'s limit of 1024.
        if i == 0 {
            plan.push((Scenario::Hold { clients }, Sink));
            plan.push((Scenario::Hold { clients }, Ncat));
        }
    }
    if !quick && most >= 10_000 {
        // Show how ncat fails past its limit.
        plan.push((Scenario::Hold { clients: 10_000 }, Ncat));
    }

    // Churn.
    let duration = Duration::from_secs(if quick { 3 } else { 10 });
    for workers in [8, 64] {
        let scenario = Scenario::Churn { workers, duration };
        plan.push((scenario.clone(), Chatd));
        if !quick || workers == 64 {
            plan.push((scenario.clone(), Sink));
            plan.push((scenario, Ncat));
        }
    }

    // Broadcast: chatd only; the others have no console.
    let (rate, seconds) = if quick { (100, 2) } else { (200, 5) };
    plan.push((
        Scenario::Broadcast {
            clients: 1_000,
            rate,
            duration: Duration::from_secs(seconds),
        },
        Chatd,
    ));

    // Relay: the chat room, chatd --relay next to ncat --chat at every size.
    let (seat, sizes, seconds, deliveries): (usize, &[usize], u64, u64) = if quick {
        (100, &[100], 2, 10_000_000)
    } else {
        (1_000, &[10, 100, 1_000], 5, 30_000_000)
    };
    let relay_as = |clients, load, variant| Scenario::Relay {
        clients,
        load,
        variant,
    };
    let relay = |clients, load| relay_as(clients, load, Variant::Default);
    plan.push((relay(seat, RelayLoad::Seat), Chatd));
    plan.push((relay(seat, RelayLoad::Seat), Ncat));
    for &clients in sizes {
        // About 100 000 deliveries a second at every size: C senders, C - 1 recipients each.
        let rate = 100_000.0 / (clients * clients) as f64;
        // Long enough that every client sends at least once (C=1000 at 0.1/s: 10 s).
        let duration = Duration::from_secs(seconds).max(Duration::from_secs_f64(1.0 / rate));
        let load = RelayLoad::Paced { rate, duration };
        plan.push((relay(clients, load), Chatd));
        plan.push((relay(clients, load), Ncat));
        if clients == 100 {
            // What JSON reports cost in the room, and what `--bus` costs with no other instance
            // in the room (a nats-server on a free port): the same row with each.
            for variant in [Variant::Json, Variant::Bus] {
                plan.push((relay_as(clients, load, variant), Chatd));
            }
        }
        if clients == *sizes.last().unwrap_or(&0) {
            // The room over two processes on one port (`--reuse-port --bus`, the kernel splitting
            // the members between them): the cross-instance row beside the single-instance one.
            plan.push((relay_as(clients, load, Variant::Pair), Chatd));
        }
        if clients == 100 || clients == 1_000 {
            // What flood control costs members under it (10 and 0.1 lines/s each): the same row
            // with `--max-rate` at the room's default instead of 0.
            plan.push((relay_as(clients, load, Variant::MaxRate), Chatd));
        }
    }
    // A burst of empty lines in the biggest room: how long newcomers wait for their greeting.
    let burst = RelayLoad::Burst {
        bytes: 128 * 1024,
        newcomers: if quick { 3 } else { 10 },
    };
    plan.push((relay(seat, burst), Chatd));
    for &clients in sizes {
        let load = RelayLoad::Unthrottled {
            lines: scenarios::unthrottled_lines(clients, deliveries),
        };
        plan.push((relay(clients, load), Chatd));
        plan.push((relay(clients, load), Ncat));
        if clients == 100 {
            plan.push((relay_as(clients, load, Variant::Bus), Chatd));
        }
        if clients == *sizes.last().unwrap_or(&0) {
            plan.push((relay_as(clients, load, Variant::Pair), Chatd));
        }
    }
    plan
}

/// `CARGO_TARGET_DIR` if set, else the crate's `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

/// The run's scratch directory (server logs, ncat output), removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> std::io::Result<TempDir> {
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!("{TEMP_PREFIX}{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

/// Removes the scratch directories of earlier runs that were killed (Ctrl-C) before they could
/// clean up: an ingest row leaves hundreds of megabytes of log there.
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        // Only a directory whose run is over: no process of that id any more.
        if !pid.parse().is_ok_and(procfs::process_exists) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The scratch directory's name before the run's process id.
const TEMP_PREFIX: &str = "chatd-load-";
/// Descriptors the harness keeps for itself when sizing the largest hold.
const HARNESS_RESERVE: u64 = 100;
