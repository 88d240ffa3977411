//! What the harness asks of the operating system outside /proc: a higher open-files limit, the
//! calling thread's id (for `procfs::thread_cpu`), and where a program is on PATH.
//!
//! Deliberately not here: reads of /proc (`tests/support/procfs.rs`, shared with the tests),
//! sockets or child processes; none of these functions panics.

use std::path::PathBuf;

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

/// The calling thread's kernel id, for `procfs::thread_cpu`.
pub fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// The full path of `name` if it is an executable file on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
