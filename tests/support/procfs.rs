//! Everything the tests and the load bench read from /proc: a process's (or thread's) CPU time,
//! its resident memory and open descriptors, whether a process or a listening port exists, the
//! kernel's listen-queue overflow count, and the machine.
//!
//! Shared by `tests/common` and `benches/load.rs`, each including this file with `#[path]`, so
//! that there is one reader of each /proc file. Deliberately not here: system calls (rlimits,
//! thread ids: `benches/load/sys.rs`), or panics: every reader returns `None` (or `false`) when
//! the file is missing or not as expected, and the caller decides what that means.

// Each includer uses its own part: the tests read memory and CPU, the bench reads everything.
#![allow(dead_code)]

use std::fs;
use std::time::Duration;

/// User plus system CPU time of process `pid`, from /proc/PID/stat.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    cpu_from_stat(&format!("/proc/{pid}/stat"))
}

/// User and system CPU time of process `pid`, apart: how much of its work was the kernel's.
pub fn process_cpu_split(pid: u32) -> Option<(Duration, Duration)> {
    times_from_stat(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU time of thread `tid` of this process, from /proc/self/task/TID/stat.
pub fn thread_cpu(tid: i32) -> Option<Duration> {
    cpu_from_stat(&format!("/proc/self/task/{tid}/stat"))
}

fn cpu_from_stat(path: &str) -> Option<Duration> {
    let (user, system) = times_from_stat(path)?;
    Some(user + system)
}

/// utime and stime from a stat file.
fn times_from_stat(path: &str) -> Option<(Duration, Duration)> {
    let stat = fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may hold spaces or ')': count fields after the last.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // After the name: state is field 3, utime field 14 and stime field 15 (man 5 proc).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    let time =
        |ticks: u64| Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / ticks_per_second);
    Some((time(utime), time(stime)))
}

/// Resident memory of process `pid` in bytes, from VmRSS in /proc/PID/status.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The most resident memory process `pid` has had, in bytes, from VmHWM in /proc/PID/status.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// A `/proc/PID/status` field given in kB, in bytes.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// How many descriptors process `pid` has open, from /proc/PID/fd.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Whether a process `pid` exists (running, or a zombie not yet reaped).
pub fn process_exists(pid: u32) -> bool {
    fs::exists(format!("/proc/{pid}")).unwrap_or(false)
}

/// The kernel's count of connections dropped because a listen queue was full (TcpExt
/// ListenOverflows in /proc/net/netstat), for the whole network namespace.
pub fn listen_overflows() -> Option<u64> {
    let netstat = fs::read_to_string("/proc/net/netstat").ok()?;
    // Two lines per group: `TcpExt: Name1 Name2 ...`, then `TcpExt: value1 value2 ...`.
    let mut tcp_ext = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (tcp_ext.next()?, tcp_ext.next()?);
    let column = names
        .split_whitespace()
        .position(|name| name == "ListenOverflows")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

/// Whether some socket listens on 127.0.0.1:`port`, read from /proc/net/tcp, so that waiting for
/// a child server to come up sends no traffic (a probing connect would count as a client).
pub fn is_listening(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    // Lines look like `0: 0100007F:1F90 00000000:0000 0A ...`: local address in hex (little-endian
    // IPv4 on x86), then the remote address, then the state, where 0A is LISTEN.
    let wanted = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(wanted.as_str()) && fields.nth(1) == Some("0A")
    })
}

/// What the numbers were measured on.
pub struct Machine {
    pub cpus: usize,
    pub model: String,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("model name"))
                    .and_then(|rest| rest.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Machine {
            cpus,
            model,
            kernel,
        }
    }
}
