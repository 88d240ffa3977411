//! The headless logger: every report formatted once, into one buffer that the loop writes to
//! stdout and to the log file once per turn.
//!
//! simplelog's `WriteLogger` formats each record again for each destination and formats the time
//! for every record; at line rate that is most of the server's work. `TurnLogger` is a `log::Log`
//! that keeps simplelog's line format (`HH:MM:SS [LEVEL] body`) but formats the time once per loop
//! turn (the first report after a flush), and formats the rest of a record once for both
//! destinations. On a terminal, simplelog's own `TermLogger` still draws the coloured lines.
//!
//! The per-line message report does not come through `log` at all. For one client's read the loop
//! holds the turn's buffer ([`TurnLogger::hold`], one lock), and [`Held::message`] copies the
//! turn's `HH:MM:SS [INFO] message ` head, the client's label and its escaped text straight into
//! it: no lock, no formatting and no dispatch per line. A record `log` brings while the buffer is
//! held is taken in before the next line, so every report keeps its place.
//!
//! Deliberately not here: what a report says (`report.rs`), and the log file's own troubles
//! (`logfile.rs`).

use std::io::{self, Write};
use std::mem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::escape::{escape_into_buffer, push_cut_marker};
use crate::logfile::LogFile;

pub struct TurnLogger {
    level: LevelFilter,
    /// Set when a record lands in `Inner::buf` while the turn's buffer is held: the holder takes
    /// it in before its next line. Only a hint for speed: the holder takes in everything when it
    /// puts the buffer back, and a record from the holder's own thread is seen at once.
    waiting: AtomicBool,
    inner: Mutex<Inner>,
}

struct Inner {
    /// This turn's formatted records, not yet written. While the buffer is held (`held > 0`), the
    /// records that arrive meanwhile, for the holder to take in after its lines.
    buf: Vec<u8>,
    /// Where a message that needs escaping is escaped before it is copied into the buffer; kept
    /// between turns, and lent with the buffer.
    scratch: Vec<u8>,
    /// How many [`Held`] buffers are out: one during a client's read (a nested one, were there
    /// any, is put back before the outer one).
    held: usize,
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
            waiting: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                buf: Vec::with_capacity(FLUSH_AT),
                scratch: Vec::new(),
                held: 0,
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
        if inner.held > 0 {
            // It goes after the lines already in the held buffer.
            self.waiting.store(true, Ordering::Relaxed);
        } else if inner.buf.len() >= FLUSH_AT {
            // A turn that reports a great deal is written in parts, so the buffer stays bounded.
            inner.write_out();
        }
    }

    /// Writes the turn out; the next report reads the clock. While the buffer is held (the loop
    /// does not flush then) what is here waits for it, so that nothing is written out of order.
    fn flush(&self) {
        let mut inner = self.lock();
        if inner.held == 0 {
            inner.write_out();
        }
        inner.stamp_stale = true;
    }
}

impl TurnLogger {
    /// Takes the turn's buffer out, for message reports written without a lock per line, until
    /// the [`Held`] is dropped. The clock is read here if the turn has not read it yet.
    pub fn hold(&self) -> Held<'_> {
        let mut inner = self.lock();
        if inner.stamp_stale {
            inner.refresh_stamp();
        }
        inner.held += 1;
        Held {
            logger: self,
            buf: mem::take(&mut inner.buf),
            head: inner.head,
            scratch: mem::take(&mut inner.scratch),
        }
    }
}

/// The turn's buffer, held by the loop while it hears one client: message reports are copied
/// into it with no lock. Dropping it puts it back, followed by any record `log` brought meanwhile.
pub struct Held<'a> {
    logger: &'a TurnLogger,
    buf: Vec<u8>,
    /// `HH:MM:SS [INFO] message `, this turn's.
    head: [u8; HEAD.len()],
    scratch: Vec<u8>,
}

impl Held<'_> {
    /// The message report `HH:MM:SS [INFO] message LABEL: TEXT`, `TEXT` being the client's bytes
    /// escaped and `dropped` the bytes cut at `--max-line`: the line `log` would make of it, made
    /// by copying bytes. This is the per-line hot path.
    pub fn message(&mut self, label: &str, text: &[u8], dropped: usize) {
        if self.logger.waiting.load(Ordering::Relaxed) {
            self.take_waiting();
        }
        let buf = &mut self.buf;
        buf.reserve(HEAD.len() + label.len() + 2 + text.len() + 1);
        buf.extend_from_slice(&self.head);
        buf.extend_from_slice(label.as_bytes());
        buf.extend_from_slice(b": ");
        escape_into_buffer(buf, &mut self.scratch, text);
        if dropped > 0 {
            push_cut_marker(buf, dropped);
        }
        buf.push(b'\n');
        // A read that reports a great deal is written in parts, so the buffer stays bounded.
        if buf.len() >= FLUSH_AT {
            self.write_out();
        }
    }

    /// Takes in the records that arrived since the last line, after it.
    #[cold]
    fn take_waiting(&mut self) {
        let mut inner = self.logger.lock();
        self.buf.append(&mut inner.buf);
        self.logger.waiting.store(false, Ordering::Relaxed);
    }

    fn write_out(&mut self) {
        let mut inner = self.logger.lock();
        self.buf.append(&mut inner.buf);
        self.logger.waiting.store(false, Ordering::Relaxed);
        inner.write(&self.buf);
        self.buf.clear();
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut inner = self.logger.lock();
        // What `log` brought while the buffer was out follows the lines written in it.
        self.buf.append(&mut inner.buf);
        inner.buf = mem::take(&mut self.buf);
        inner.scratch = mem::take(&mut self.scratch);
        inner.held -= 1;
        // An outer holder, if any, takes it all in before its next line.
        let waiting = inner.held > 0 && !inner.buf.is_empty();
        self.logger.waiting.store(waiting, Ordering::Relaxed);
        if inner.held == 0 && inner.buf.len() >= FLUSH_AT {
            inner.write_out();
        }
    }
}

impl Inner {
    fn write_out(&mut self) {
        let buf = mem::take(&mut self.buf);
        self.write(&buf);
        self.buf = buf;
        self.buf.clear();
    }

    /// One write of `bytes` to each sink.
    fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        // Errors are not reported here: stdout that is gone has no reader, and the log file
        // notes its own trouble for the loop to report.
        if let Some(stdout) = &self.stdout {
            let _ = stdout.lock().write_all(bytes);
        }
        if let Some(file) = &mut self.file {
            let _ = file.write_all(bytes);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The turn's lines with the time cut off, in buffer order.
    fn lines(logger: &TurnLogger) -> Vec<String> {
        String::from_utf8_lossy(&logger.lock().buf)
            .lines()
            .map(|line| line[STAMP..].to_owned())
            .collect()
    }

    fn record(logger: &TurnLogger, text: &str) {
        logger.log(
            &Record::builder()
                .args(format_args!("{text}"))
                .level(Level::Info)
                .build(),
        );
    }

    #[test]
    fn a_message_report_is_the_line_log_would_make() {
        let logger = TurnLogger::new(LevelFilter::Info, false, None);
        let mut held = logger.hold();
        held.message("1.2.3.4:5 #6", b"hi\x1b there", 0);
        held.message("1.2.3.4:5 #6", b"cut", 12);
        drop(held);
        record(&logger, "message 1.2.3.4:5 #6: hi\\x1b there");
        let lines = lines(&logger);
        assert_eq!(lines[0], "[INFO] message 1.2.3.4:5 #6: hi\\x1b there");
        assert_eq!(lines[1], "[INFO] message 1.2.3.4:5 #6: cut... [+12 bytes]");
        assert_eq!(lines[0], lines[2]);
    }

    /// A record `log` brings while the buffer is held keeps its place among the held lines, and so
    /// do the lines of a hold nested in another.
    #[test]
    fn records_made_while_the_buffer_is_held_keep_their_place() {
        let logger = TurnLogger::new(LevelFilter::Info, false, None);
        record(&logger, "before");
        let mut outer = logger.hold();
        outer.message("a", b"one", 0);
        record(&logger, "between");
        outer.message("a", b"two", 0);
        let mut inner = logger.hold();
        record(&logger, "before inner");
        inner.message("b", b"three", 0);
        drop(inner);
        record(&logger, "after inner");
        // The loop does not flush while it holds the buffer; if it did, nothing may jump ahead.
        logger.flush();
        outer.message("a", b"four", 0);
        drop(outer);
        record(&logger, "after");
        assert_eq!(
            lines(&logger),
            [
                "[INFO] before",
                "[INFO] message a: one",
                "[INFO] between",
                "[INFO] message a: two",
                "[INFO] before inner",
                "[INFO] message b: three",
                "[INFO] after inner",
                "[INFO] message a: four",
                "[INFO] after",
            ]
        );
    }
}
