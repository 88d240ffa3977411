//! The headless logger: every report formatted once, into one buffer that the loop writes to
//! stdout and to the log file once per turn.
//!
//! simplelog's `WriteLogger` formats each record again for each destination and formats the time
//! for every record; at line rate that is most of the server's work. `TurnLogger` is a `log::Log`
//! that keeps simplelog's line format (`HH:MM:SS [LEVEL] body`, `--log-format text`) but formats
//! the time once per loop turn (the first report after a flush), and formats the rest of a record
//! once for both destinations. With `--log-format json` each record is one JSON object instead
//! (docs/log-format.md): its fields are the record's key-values (`log`'s `kv`), `event` first, and
//! its `msg` the text line's body. On a terminal, simplelog's own `TermLogger` still draws the
//! coloured lines.
//!
//! The per-line message report does not come through `log` at all. For one client's read the loop
//! holds the turn's buffer ([`TurnLogger::hold`], one lock), and [`Held::message`] copies the
//! turn's head (`HH:MM:SS [INFO] message `, or its JSON counterpart), the client's label and its escaped text straight into
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

use crate::clock::{clock, local_utc_offset, rfc3339};
use crate::escape::{escape_into_buffer, push_cut_marker};
use crate::json::{json_escape_into, json_record, needs_json_escape};
use crate::logfile::LogFile;

/// `--log-format`: how a report is written to a pipe and the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `TIME [LEVEL] body`, as simplelog writes it.
    Text,
    /// One JSON object per line (docs/log-format.md).
    Json,
}

/// `--log-time`: the time that begins a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTime {
    /// `HH:MM:SS`, local time.
    Clock,
    /// `2026-11-30T12:00:01.123Z`: UTC, to the millisecond.
    Rfc3339,
    /// No time: the journal stamps each line itself.
    None,
}

pub struct TurnLogger {
    level: LevelFilter,
    format: LogFormat,
    time: LogTime,
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
    /// The current turn's time and the head of a message report: its stamp begins every record,
    /// and the whole of it every message report.
    head: Head,
    /// Set by each flush: the next report reads the clock.
    stamp_stale: bool,
    /// Seconds east of UTC, read once at start.
    utc_offset: i64,
    stdout: Option<io::Stdout>,
    file: Option<LogFile>,
}

impl TurnLogger {
    /// A logger writing to stdout (if `stdout`) and to `file` (if any), in `format` with the time
    /// as `time` says.
    pub fn new(
        level: LevelFilter,
        format: LogFormat,
        time: LogTime,
        stdout: bool,
        file: Option<LogFile>,
    ) -> TurnLogger {
        TurnLogger {
            level,
            format,
            time,
            waiting: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                buf: Vec::with_capacity(FLUSH_AT),
                scratch: Vec::new(),
                held: 0,
                head: Head::EMPTY,
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
            inner.refresh_stamp(self.format, self.time);
        }
        let Inner {
            buf, head, scratch, ..
        } = &mut *inner;
        buf.extend_from_slice(head.stamp());
        match self.format {
            LogFormat::Text => {
                buf.extend_from_slice(level_tag(record.level()));
                match record.args().as_str() {
                    Some(text) => buf.extend_from_slice(text.as_bytes()),
                    None => {
                        let _ = buf.write_fmt(*record.args());
                    }
                }
            }
            LogFormat::Json => json_record(buf, scratch, record),
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
            inner.refresh_stamp(self.format, self.time);
        }
        inner.held += 1;
        Held {
            logger: self,
            buf: mem::take(&mut inner.buf),
            head: inner.head,
            json: self.format == LogFormat::Json,
            json_label: (String::new(), Vec::new()),
            scratch: mem::take(&mut inner.scratch),
        }
    }
}

/// The turn's buffer, held by the loop while it hears one client: message reports are copied
/// into it with no lock. Dropping it puts it back, followed by any record `log` brought meanwhile.
pub struct Held<'a> {
    logger: &'a TurnLogger,
    buf: Vec<u8>,
    /// `HH:MM:SS [INFO] message `, or its JSON counterpart: this turn's.
    head: Head,
    /// `--log-format json`.
    json: bool,
    /// For json: the label last seen (a read's lines are all one client's) and its fields,
    /// `"id":ID,"peer":"PEER","text":"`.
    json_label: (String, Vec<u8>),
    scratch: Vec<u8>,
}

impl Held<'_> {
    /// The message report `HH:MM:SS [INFO] message LABEL: TEXT`, `TEXT` being the client's bytes
    /// escaped and `dropped` the bytes cut at `--max-line`: the line `log` would make of it, made
    /// by copying bytes. This is the per-line hot path (one call a line, kept out of line).
    #[inline(never)]
    pub fn message(&mut self, label: &str, text: &[u8], dropped: usize) {
        if self.logger.waiting.load(Ordering::Relaxed) {
            self.take_waiting();
        }
        if self.json {
            return self.message_json(label, text, dropped);
        }
        let buf = &mut self.buf;
        buf.reserve(TEXT_HEAD_MAX + label.len() + 2 + text.len() + 1);
        // The longest text head's worth is copied and the unused end cut off again: a copy of a
        // constant length measured cheaper than one of the head's own (callgrind.sh).
        buf.extend_from_slice(&self.head.bytes[..TEXT_HEAD_MAX]);
        buf.truncate(buf.len() - (TEXT_HEAD_MAX - self.head.len));
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

    /// The message report as a JSON object: `id`, `peer`, `text` (escaped as in the text format,
    /// then as JSON wants) and, for a line cut at `--max-line`, `dropped`.
    #[inline(never)]
    fn message_json(&mut self, label: &str, text: &[u8], dropped: usize) {
        // A read is one client's: its fields are made at its first line and kept for the rest.
        if self.json_label.0 != label {
            let (peer, id) = label.rsplit_once(" #").unwrap_or((label, "0"));
            let fields = &mut self.json_label.1;
            fields.clear();
            fields.extend_from_slice(b"\"id\":");
            fields.extend_from_slice(id.as_bytes());
            fields.extend_from_slice(b",\"peer\":\"");
            json_escape_into(fields, peer.as_bytes());
            fields.extend_from_slice(b"\",\"text\":\"");
            self.json_label.0.clear();
            self.json_label.0.push_str(label);
        }
        let buf = &mut self.buf;
        buf.reserve(HEAD_MAX + self.json_label.1.len() + 2 * text.len() + 32);
        buf.extend_from_slice(self.head.all());
        buf.extend_from_slice(&self.json_label.1);
        // Escaped for a terminal first, into the end of the buffer, then as JSON wants in place of
        // that, if it needs it.
        let start = buf.len();
        escape_into_buffer(buf, &mut self.scratch, text);
        if dropped > 0 {
            push_cut_marker(buf, dropped);
        }
        if needs_json_escape(&buf[start..]) {
            self.scratch.clear();
            self.scratch.extend_from_slice(&buf[start..]);
            buf.truncate(start);
            json_escape_into(buf, &self.scratch);
        }
        buf.push(b'"');
        if dropped > 0 {
            let _ = write!(buf, ",\"dropped\":{dropped}");
        }
        buf.extend_from_slice(b"}\n");
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

    fn refresh_stamp(&mut self, format: LogFormat, time: LogTime) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.head = Head::new(format, time, now, self.utc_offset);
        self.stamp_stale = false;
    }
}

/// A turn's stamp (the time as a record begins with it) followed by the rest of a message
/// report's head: `HH:MM:SS ` + `[INFO] message `, or `{"ts":"…",` + `"level":"info",…`.
#[derive(Clone, Copy)]
struct Head {
    /// Room for the longest head; the bytes past `len` are zero.
    bytes: [u8; HEAD_MAX],
    len: usize,
    /// The stamp's length: the first bytes of the head.
    stamp: usize,
}

impl Head {
    const EMPTY: Head = Head {
        bytes: [0; HEAD_MAX],
        len: 0,
        stamp: 0,
    };

    /// The head for `now` (since the Unix epoch), `utc_offset` seconds east of UTC for the clock.
    fn new(format: LogFormat, time: LogTime, now: std::time::Duration, utc_offset: i64) -> Head {
        let mut head = Head::EMPTY;
        let mut time_text = [0u8; 24];
        let time_len = match time {
            LogTime::Clock => clock(&mut time_text, now.as_secs() as i64 + utc_offset),
            LogTime::Rfc3339 => rfc3339(&mut time_text, now),
            LogTime::None => 0,
        };
        let time_text = &time_text[..time_len];
        match (format, time) {
            (LogFormat::Text, LogTime::None) => {}
            (LogFormat::Text, _) => head.push(&[time_text, b" "]),
            (LogFormat::Json, LogTime::None) => head.push(&[b"{"]),
            (LogFormat::Json, _) => head.push(&[b"{\"ts\":\"", time_text, b"\","]),
        }
        head.stamp = head.len;
        match format {
            LogFormat::Text => head.push(&[b"[INFO] message "]),
            LogFormat::Json => head.push(&[b"\"level\":\"info\",\"event\":\"message\","]),
        }
        head
    }

    fn push(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
            self.len += part.len();
        }
    }

    fn stamp(&self) -> &[u8] {
        &self.bytes[..self.stamp]
    }

    fn all(&self) -> &[u8] {
        &self.bytes[..self.len]
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

/// Room for the longest head: `{"ts":"2026-11-30T12:00:01.123Z",` (33 bytes) and
/// `"level":"info","event":"message",` (33).
const HEAD_MAX: usize = 72;

/// The longest text head: `2026-11-30T12:00:01.123Z [INFO] message `.
const TEXT_HEAD_MAX: usize = 40;

/// Buffered bytes at which a record writes the buffer out before the turn ends.
const FLUSH_AT: usize = 256 * 1024;

#[cfg(test)]
mod tests;
