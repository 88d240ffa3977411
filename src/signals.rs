//! The signals that stop the server: SIGINT and SIGTERM arrive as events on the loop, and once a
//! shutdown has begun a SIGINT ends the process from the signal handler itself.
//!
//! Deliberately not here: what a shutdown does (the loop's phases and the chat's farewells).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

pub struct Interrupts {
    signals: Signals,
    /// Set when the shutdown begins: a SIGINT then exits at once, from the signal handler.
    exit_now: Arc<AtomicBool>,
}

impl Interrupts {
    /// Installs the handlers and registers them with the poll as `token`.
    pub fn install(registry: &Registry, token: Token) -> io::Result<Interrupts> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let exit_now = Arc::new(AtomicBool::new(false));
        exit_on_interrupt_when(Arc::clone(&exit_now))?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(Interrupts { signals, exit_now })
    }

    /// The signals that arrived since the last call, as the shutdown's cause (`SIGINT`,
    /// `SIGTERM`).
    pub fn pending(&mut self) -> Vec<&'static str> {
        self.signals
            .pending()
            .filter_map(|signal| match signal {
                SIGINT => Some("SIGINT"),
                SIGTERM => Some("SIGTERM"),
                _ => None,
            })
            .collect()
    }

    /// From now on a SIGINT ends the process in the signal handler itself, even if the loop is
    /// stuck (say, on a terminal paused with Ctrl-S).
    pub fn exit_on_next_interrupt(&self) {
        self.exit_now.store(true, Ordering::SeqCst);
    }
}

/// Makes SIGINT end the process at once, with exit code 130 (as a shell reports a process ended
/// by SIGINT) and one line on stderr, whenever `armed` is set. It runs in the signal handler, so
/// it works even when the loop is stuck.
fn exit_on_interrupt_when(armed: Arc<AtomicBool>) -> io::Result<()> {
    let action = move || {
        if armed.load(Ordering::SeqCst) {
            const LINE: &[u8] = b"chatd: second interrupt: exiting now\n";
            // SAFETY: write(2) and _exit(2) are async-signal-safe; LINE is a static buffer.
            unsafe {
                libc::write(2, LINE.as_ptr().cast(), LINE.len());
                libc::_exit(130);
            }
        }
    };
    // SAFETY: the action only loads an atomic, writes to stderr and exits, all of which are
    // allowed in a signal handler; it allocates nothing and takes no lock.
    unsafe { signal_hook::low_level::register(SIGINT, action) }.map(|_| ())
}
