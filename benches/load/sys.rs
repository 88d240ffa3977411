//! What the harness reads from the operating system: the open-files limit, a process's (or
//! thread's) CPU time and resident memory from /proc, whether a port is listening, and the machine.
//!
//! Deliberately not here: sockets or child processes; every function is a read of /proc or one
//! system call, and none of them panics.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

/// Raises the soft RLIMIT_NOFILE to the hard limit, so the harness (and every child it spawns
/// after this, which inherits it) can hold as many sockets as the machine allows. Returns the
/// soft limit in force afterwards.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass, which lives for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    limit.rlim_cur
}

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

/// The calling thread's kernel id, for `thread_cpu`.
pub fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
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
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
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

/// The full path of `name` if it is an executable file on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
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
