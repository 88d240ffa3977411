//! The signals chatd answers, as events on the loop, and the exit that does not wait for the loop.
//!
//! SIGINT and SIGTERM stop the server; SIGHUP is the operator's terminal going away (a shutdown)
//! or, headless, a reload; SIGUSR1 reopens the log file; the others whose default would end the
//! process (SIGALRM, SIGUSR2, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGXFSZ, SIGXCPU, SIGSTKFLT and
//! the real-time signals) are reported and ignored. SIGQUIT keeps its default (a core dump on
//! purpose), as do the signals of a fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS).
//!
//! The handler itself counts SIGINT and SIGTERM: the second one ends the process at once, even if
//! the loop never saw the first (stuck writing to a pipe nobody reads, or to a paused terminal).
//!
//! Deliberately not here: what a shutdown or a reload does (the loop's phases, the logger).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mio::{Interest, Registry, Token};
use signal_hook::consts::{
    SIGALRM, SIGHUP, SIGINT, SIGIO, SIGPROF, SIGTERM, SIGUSR1, SIGUSR2, SIGVTALRM, SIGXFSZ,
};
use signal_hook_mio::v1_0::Signals;

use crate::console;

/// A signal, as the loop acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM: shut down.
    Stop(&'static str),
    /// SIGHUP: the terminal hung up, or a reload when headless.
    Hangup,
    /// SIGUSR1: reopen the log file.
    ReopenLog,
    /// A signal whose default would end the process, taken and ignored, by name.
    Ignored(std::borrow::Cow<'static, str>),
}

pub struct Interrupts {
    signals: Signals,
    /// Set when the shutdown begins: a SIGINT or SIGTERM then exits at once, from the handler.
    exit_now: Arc<AtomicBool>,
}

impl Interrupts {
    /// Installs the handlers and registers them with the poll as `token`.
    pub fn install(registry: &Registry, token: Token) -> io::Result<Interrupts> {
        let mut signals = Signals::new(
            [SIGINT, SIGTERM, SIGHUP, SIGUSR1]
                .into_iter()
                .chain(IGNORED.iter().map(|&(signal, _)| signal)),
        )?;
        // Each on its own and best effort: a runtime may keep some for itself (valgrind does),
        // and chatd must still start.
        for signal in realtime() {
            let _ = signals.add_signal(signal);
        }
        let exit_now = Arc::new(AtomicBool::new(false));
        exit_on_second_interrupt(&exit_now)?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(Interrupts { signals, exit_now })
    }

    /// The signals that arrived since the last call.
    pub fn pending(&mut self) -> Vec<Signal> {
        self.signals
            .pending()
            .filter_map(|signal| match signal {
                SIGINT => Some(Signal::Stop("SIGINT")),
                SIGTERM => Some(Signal::Stop("SIGTERM")),
                SIGHUP => Some(Signal::Hangup),
                SIGUSR1 => Some(Signal::ReopenLog),
                other => IGNORED
                    .iter()
                    .find(|&&(signal, _)| signal == other)
                    .map(|&(_, name)| Signal::Ignored(name.into()))
                    .or_else(|| {
                        let offset = other - libc::SIGRTMIN();
                        Some(Signal::Ignored(format!("SIGRTMIN+{offset}").into()))
                    }),
            })
            .collect()
    }

    /// The flag that makes the next SIGINT or SIGTERM end the process at once: for the console
    /// thread, which sets it as soon as it reads `/quit`.
    pub fn quitting(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.exit_now)
    }

    /// From now on the first SIGINT or SIGTERM ends the process in the signal handler itself,
    /// even if the loop is stuck (say, on a terminal paused with Ctrl-S).
    pub fn exit_on_next_interrupt(&self) {
        self.exit_now.store(true, Ordering::SeqCst);
    }
}

/// The signals taken only so that they do not end the process.
const IGNORED: [(i32, &str); 9] = [
    (SIGALRM, "SIGALRM"),
    (SIGUSR2, "SIGUSR2"),
    (SIGVTALRM, "SIGVTALRM"),
    (SIGPROF, "SIGPROF"),
    (SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (SIGXFSZ, "SIGXFSZ"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGSTKFLT, "SIGSTKFLT"),
];

/// The real-time signals (SIGRTMIN to SIGRTMAX, as the C library reserves none of them for
/// itself): their default ends the process, so they are taken and ignored too.
fn realtime() -> std::ops::RangeInclusive<i32> {
    libc::SIGRTMIN()..=libc::SIGRTMAX()
}

/// Makes the second SIGINT or SIGTERM (or the first, once `armed` is set) end the process at once,
/// with exit code 130 (as a shell reports a process ended by SIGINT; 143 for SIGTERM) and one line
/// on stderr. It runs in the signal handler, so it works whatever the loop is doing.
fn exit_on_second_interrupt(armed: &Arc<AtomicBool>) -> io::Result<()> {
    let seen = Arc::new(AtomicUsize::new(0));
    for (signal, code) in [(SIGINT, 130), (SIGTERM, 143)] {
        let (armed, seen) = (Arc::clone(armed), Arc::clone(&seen));
        let action = move || {
            let earlier = seen.fetch_add(1, Ordering::SeqCst);
            if earlier > 0 || armed.load(Ordering::SeqCst) {
                const LINE: &[u8] = b"chatd: second interrupt: exiting now\n";
                // The line editor's raw mode must not outlive the process.
                console::restore_terminal();
                // SAFETY: write(2) and _exit(2) are async-signal-safe; LINE is a static buffer.
                unsafe {
                    libc::write(2, LINE.as_ptr().cast(), LINE.len());
                    libc::_exit(code);
                }
            }
        };
        // SAFETY: the action only touches atomics, writes to stderr and exits, all of which are
        // allowed in a signal handler; it allocates nothing and takes no lock.
        unsafe { signal_hook::low_level::register(signal, action) }?;
    }
    Ok(())
}
