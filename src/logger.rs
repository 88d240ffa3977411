//! The headless logger: every report formatted once, into one buffer that the loop writes to
//! stdout and to the log file once per turn.
//!
//! simplelog's `WriteLogger` formats each record again for each destination and formats the time
//! for every record; at line rate that is most of the server's work. `TurnLogger` is a `log::Log`
//! that keeps simplelog's line format (`HH:MM:SS [LEVEL] body`) but formats the time once per loop
//! turn (the first report after a flush), and formats the rest of a record once for both
//! destinations. On a terminal, simplelog's own `TermLogger` still draws the coloured lines.
//!
//! The per-line message report does not come through `log` at all: [`TurnLogger::message`] copies
//! the turn's `HH:MM:SS [INFO] message ` head, the client's label and its escaped text straight into
//! the same buffer, so it lands in order among the records `log` brings.
//!
//! Deliberately not here: what a report says (`report.rs`), and the log file's own troubles
//! (`logfile.rs`).

use std::io::{self, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::escape::{escape_into, push_cut_marker};
use crate::logfile::LogFile;

pub struct TurnLogger {
    level: LevelFilter,
    inner: Mutex<Inner>,
}

struct Inner {
    /// This turn's formatted records, not yet written.
    buf: Vec<u8>,
    /// `HH:MM:SS [INFO] message ` of the current turn: its first [`STAMP`] bytes begin every
    /// record, and the whole of it every message report.
    head: [u8; HEAD.len()],
    /// Set by each flush: the next report reads the clock.
    stamp_stale: bool,
    /// Seconds east of UTC, read once at start.
    utc_offset: i64,
    stdout: Option<io::Stdout>,
    file: Option<LogFile>,
}

impl TurnLogger {
    /// A logger writing to stdout (if `stdout`) and to `file` (if any).
    pub fn new(level: LevelFilter, stdout: bool, file: Option<LogFile>) -> TurnLogger {
        TurnLogger {
            level,
            inner: Mutex::new(Inner {
                buf: Vec::with_capacity(FLUSH_AT),
                head: *HEAD,
                stamp_stale: true,
                utc_offset: local_utc_offset(),
                stdout: stdout.then(io::stdout),
                file,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves a buffer of whole records: keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Log for TurnLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut inner = self.lock();
        if inner.stamp_stale {
            inner.refresh_stamp();
        }
        let Inner { buf, head, .. } = &mut *inner;
        buf.extend_from_slice(&head[..STAMP]);
        buf.extend_from_slice(level_tag(record.level()));
        match record.args().as_str() {
            Some(text) => buf.extend_from_slice(text.as_bytes()),
            None => {
                let _ = buf.write_fmt(*record.args());
            }
        }
        buf.push(b'\n');
        // A turn that reports a great deal is written in parts, so the buffer stays bounded.
        if inner.buf.len() >= FLUSH_AT {
            inner.write_out();
        }
    }

    fn flush(&self) {
        let mut inner = self.lock();
        inner.write_out();
        inner.stamp_stale = true;
    }
}

impl TurnLogger {
    /// The message report `HH:MM:SS [INFO] message LABEL: TEXT`, `TEXT` being the client's bytes
    /// escaped and `dropped` the bytes cut at `--max-line`: the same line `log` would make of it,
    /// made by copying bytes into the turn's buffer. This is the per-line hot path.
    pub fn message(&self, label: &str, text: &[u8], dropped: usize) {
        if self.level < LevelFilter::Info {
            return;
        }
        let mut inner = self.lock();
        if inner.stamp_stale {
            inner.refresh_stamp();
        }
        let Inner { buf, head, .. } = &mut *inner;
        buf.reserve(head.len() + label.len() + 2 + text.len() + 1);
        buf.extend_from_slice(head);
        buf.extend_from_slice(label.as_bytes());
        buf.extend_from_slice(b": ");
        escape_into(buf, text);
        if dropped > 0 {
            push_cut_marker(buf, dropped);
        }
        buf.push(b'\n');
        if buf.len() >= FLUSH_AT {
            inner.write_out();
        }
    }
}

impl Inner {
    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        // Errors are not reported here: stdout that is gone has no reader, and the log file
        // notes its own trouble for the loop to report.
        if let Some(stdout) = &self.stdout {
            let _ = stdout.lock().write_all(&self.buf);
        }
        if let Some(file) = &mut self.file {
            let _ = file.write_all(&self.buf);
        }
        self.buf.clear();
    }

    fn refresh_stamp(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let of_day = (now as i64 + self.utc_offset).rem_euclid(86_400);
        let digits = |n: i64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        let [h0, h1] = digits(of_day / 3600);
        let [m0, m1] = digits(of_day / 60 % 60);
        let [s0, s1] = digits(of_day % 60);
        self.head[..STAMP].copy_from_slice(&[h0, h1, b':', m0, m1, b':', s0, s1, b' ']);
        self.stamp_stale = false;
    }
}

/// simplelog's level text, and the space after it.
fn level_tag(level: Level) -> &'static [u8] {
    match level {
        Level::Error => b"[ERROR] ",
        Level::Warn => b"[WARN] ",
        Level::Info => b"[INFO] ",
        Level::Debug => b"[DEBUG] ",
        Level::Trace => b"[TRACE] ",
    }
}

/// The local offset from UTC in seconds, read once while the process has one thread (later a
/// change of the zone, e.g. daylight saving, is not seen, as in simplelog); 0 if unknown.
fn local_utc_offset() -> i64 {
    let now: libc::time_t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as libc::time_t);
    // SAFETY: an all-zero `tm` is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r writes only the `tm` we pass; both pointers live for the call.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}

/// The head of a message report, its time still to be filled in: the time, the level and the
/// word `message`, as `log` and `level_tag` would make them.
const HEAD: &[u8; 24] = b"00:00:00 [INFO] message ";

/// The length of `HH:MM:SS `, the time that begins the head.
const STAMP: usize = 9;

/// Buffered bytes at which a record writes the buffer out before the turn ends.
const FLUSH_AT: usize = 256 * 1024;
