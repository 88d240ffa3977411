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

use log::kv::{self, Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::escape::{escape_into_buffer, push_cut_marker};
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
    /// by copying bytes. This is the per-line hot path.
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

/// `HH:MM:SS` of `secs` (local seconds since the epoch) into `out`; its length.
fn clock(out: &mut [u8; 24], secs: i64) -> usize {
    let of_day = secs.rem_euclid(86_400);
    let [h0, h1] = two_digits(of_day / 3600);
    let [m0, m1] = two_digits(of_day / 60 % 60);
    let [s0, s1] = two_digits(of_day % 60);
    out[..8].copy_from_slice(&[h0, h1, b':', m0, m1, b':', s0, s1]);
    8
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `since_epoch` (UTC) into `out`; its length.
fn rfc3339(out: &mut [u8; 24], since_epoch: std::time::Duration) -> usize {
    let secs = since_epoch.as_secs() as i64;
    let (year, month, day) = civil_date(secs.div_euclid(86_400));
    let mut time = [0u8; 24];
    clock(&mut time, secs);
    let millis = since_epoch.subsec_millis();
    let year = year.clamp(0, 9999);
    let [y0, y1] = two_digits(year / 100);
    let [y2, y3] = two_digits(year % 100);
    let [mo0, mo1] = two_digits(month);
    let [d0, d1] = two_digits(day);
    out[..11].copy_from_slice(&[y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b'T']);
    out[11..19].copy_from_slice(&time[..8]);
    let ms = [
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ];
    out[19..24].copy_from_slice(&ms);
    24
}

fn two_digits(n: i64) -> [u8; 2] {
    [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A record as the rest of a JSON object, after its stamp: `"level"`, the record's key-values
/// (`event` first, by the habit of `report.rs`; `"event":"log"` if it has none), and `"msg"`, the
/// text line's body.
fn json_record(buf: &mut Vec<u8>, scratch: &mut Vec<u8>, record: &Record<'_>) {
    buf.extend_from_slice(b"\"level\":\"");
    buf.extend_from_slice(record.level().as_str().to_ascii_lowercase().as_bytes());
    buf.extend_from_slice(b"\",");
    let mut fields = JsonFields {
        buf,
        scratch,
        any: false,
    };
    let _ = record.key_values().visit(&mut fields);
    let JsonFields { buf, scratch, any } = fields;
    if !any {
        buf.extend_from_slice(b"\"event\":\"log\",");
    }
    buf.extend_from_slice(b"\"msg\":\"");
    scratch.clear();
    match record.args().as_str() {
        Some(text) => scratch.extend_from_slice(text.as_bytes()),
        None => {
            let _ = scratch.write_fmt(*record.args());
        }
    }
    json_escape_into(buf, scratch);
    buf.extend_from_slice(b"\"}");
}

/// Writes each key-value of a record as `"key":value,`: numbers and booleans bare, anything else
/// as a JSON string of its `Display`.
struct JsonFields<'a> {
    buf: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    any: bool,
}

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        self.any = true;
        let buf = &mut *self.buf;
        buf.push(b'"');
        json_escape_into(buf, key.as_str().as_bytes());
        buf.extend_from_slice(b"\":");
        if let Some(n) = value.to_u64() {
            let _ = write!(buf, "{n}");
        } else if let Some(n) = value.to_i64() {
            let _ = write!(buf, "{n}");
        } else if let Some(b) = value.to_bool() {
            let _ = write!(buf, "{b}");
        } else {
            self.scratch.clear();
            let _ = write!(self.scratch, "{value}");
            buf.push(b'"');
            json_escape_into(buf, self.scratch);
            buf.push(b'"');
        }
        buf.push(b',');
        Ok(())
    }
}

/// Whether `text` holds a byte a JSON string must escape.
fn needs_json_escape(text: &[u8]) -> bool {
    // As escape.rs's `is_printable_ascii`: blocks tested without a branch per byte, which the
    // compiler vectorises; a line of up to 64 bytes is two blocks that may overlap, with no loop.
    if text.len() > 64
        && let Some(last) = text.last_chunk::<32>()
    {
        let (blocks, _) = text.as_chunks::<32>();
        return blocks.iter().any(any_json_special) | any_json_special(last);
    }
    if let (Some(first), Some(last)) = (text.first_chunk::<32>(), text.last_chunk::<32>()) {
        return any_json_special(first) | any_json_special(last);
    }
    if let (Some(first), Some(last)) = (text.first_chunk::<16>(), text.last_chunk::<16>()) {
        return any_json_special(first) | any_json_special(last);
    }
    if let (Some(first), Some(last)) = (text.first_chunk::<8>(), text.last_chunk::<8>()) {
        return any_json_special(first) | any_json_special(last);
    }
    text.iter().any(|&b| is_json_special(b))
}

/// Whether a block holds a byte JSON escapes, with no early exit, so that it vectorises.
#[inline(always)]
fn any_json_special<const N: usize>(block: &[u8; N]) -> bool {
    block.iter().fold(false, |any, &b| any | is_json_special(b))
}

#[inline(always)]
fn is_json_special(b: u8) -> bool {
    (b == b'"') | (b == b'\\') | (b < 0x20)
}

/// Appends `text`, valid UTF-8, as the inside of a JSON string: `"` and `\` escaped, control
/// characters as `\n`, `\t` or `\u00XX` (RFC 8259, section 7). The report text chatd escapes
/// for a terminal holds no control character but tab; the rest is for any other text.
pub fn json_escape_into(buf: &mut Vec<u8>, text: &[u8]) {
    if !needs_json_escape(text) {
        return buf.extend_from_slice(text);
    }
    for &b in text {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            0..0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 15)]);
            }
            _ => buf.push(b),
        }
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

/// Room for the longest head: `{"ts":"2026-11-30T12:00:01.123Z",` (33 bytes) and
/// `"level":"info","event":"message",` (33).
const HEAD_MAX: usize = 72;

/// The longest text head: `2026-11-30T12:00:01.123Z [INFO] message `.
const TEXT_HEAD_MAX: usize = 40;

/// Buffered bytes at which a record writes the buffer out before the turn ends.
const FLUSH_AT: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// The turn's lines with the time cut off, in buffer order.
    fn lines(logger: &TurnLogger) -> Vec<String> {
        String::from_utf8_lossy(&logger.lock().buf)
            .lines()
            .map(|line| line["HH:MM:SS ".len()..].to_owned())
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
        let logger = TurnLogger::new(
            LevelFilter::Info,
            LogFormat::Text,
            LogTime::Clock,
            false,
            None,
        );
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
        let logger = TurnLogger::new(
            LevelFilter::Info,
            LogFormat::Text,
            LogTime::Clock,
            false,
            None,
        );
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

    fn json_logger() -> TurnLogger {
        TurnLogger::new(
            LevelFilter::Info,
            LogFormat::Json,
            LogTime::Rfc3339,
            false,
            None,
        )
    }

    fn json_lines(logger: &TurnLogger) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&logger.lock().buf)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// Every byte a client can send comes out of a JSON message report as the text format's
    /// escaped text, and a JSON parser reads it back.
    #[test]
    fn a_json_message_report_parses_back_to_the_text_formats_text() {
        let logger = json_logger();
        let mut held = logger.hold();
        let all: Vec<u8> = (0..=255).collect();
        let texts: [&[u8]; 5] = [
            b"hi",
            b"say \"x\" \\ y\tz",
            &all,
            "七 ✓ \u{202e}".as_bytes(),
            b"cut",
        ];
        for text in texts {
            held.message(
                "127.0.0.1:5000 #3",
                text,
                if text == b"cut" { 7 } else { 0 },
            );
        }
        held.message("[::1]:5 #12", b"v6", 0);
        drop(held);
        let lines = json_lines(&logger);
        for (line, text) in lines.iter().zip(texts) {
            let mut want = crate::escape::escape(text).into_owned();
            if text == b"cut" {
                push_cut_marker(&mut want, 7);
            }
            assert_eq!(line["text"], want.as_str());
            assert_eq!(line["event"], "message");
            assert_eq!(line["level"], "info");
            assert_eq!(line["id"], 3);
            assert_eq!(line["peer"], "127.0.0.1:5000");
        }
        assert_eq!(lines[4]["dropped"], 7);
        assert_eq!(lines[5]["peer"], "[::1]:5");
        assert_eq!(lines[5]["id"], 12);
    }

    /// A record's key-values become the object's fields, `msg` its text, escaped as JSON wants.
    #[test]
    fn a_json_record_carries_its_fields_and_text() {
        let logger = json_logger();
        logger.log(
            &Record::builder()
                .args(format_args!("nick a: \"q\\\" is now \u{1}"))
                .level(Level::Warn)
                .key_values(&[("event", "nick"), ("old", "\"q\\")])
                .build(),
        );
        logger.log(
            &Record::builder()
                .args(format_args!("plain"))
                .level(Level::Error)
                .key_values(&[("online", 3u64)])
                .build(),
        );
        logger.log(
            &Record::builder()
                .args(format_args!("bare"))
                .level(Level::Info)
                .build(),
        );
        let lines = json_lines(&logger);
        assert_eq!(lines[0]["event"], "nick");
        assert_eq!(lines[0]["level"], "warn");
        assert_eq!(lines[0]["old"], "\"q\\");
        assert_eq!(lines[0]["msg"], "nick a: \"q\\\" is now \u{1}");
        assert_eq!(lines[1]["online"], 3);
        assert_eq!(lines[1]["level"], "error");
        assert_eq!(lines[2]["event"], "log");
        let ts = lines[2]["ts"].as_str().unwrap_or_default();
        assert_eq!(ts.len(), "2026-11-30T12:00:01.123Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    }

    /// `loop_failed`, which no test can provoke (the event loop's own poll failing): the record
    /// main.rs makes (`event`, and `error` captured by Display) is an `error` object with both
    /// fields and the text line as `msg`.
    #[test]
    fn a_loop_failed_record_is_an_error_object() {
        let logger = json_logger();
        let error = io::Error::from_raw_os_error(libc::EBADF);
        let kvs: [(&str, Value<'_>); 2] = [
            ("event", Value::from("loop_failed")),
            ("error", Value::from_display(&error)),
        ];
        logger.log(
            &Record::builder()
                .args(format_args!("event loop failed: {error}"))
                .level(Level::Error)
                .key_values(&kvs)
                .build(),
        );
        let lines = json_lines(&logger);
        assert_eq!(lines[0]["event"], "loop_failed");
        assert_eq!(lines[0]["level"], "error");
        assert_eq!(lines[0]["error"], error.to_string());
        assert_eq!(lines[0]["msg"], format!("event loop failed: {error}"));
    }

    /// `json_escape_into` against serde_json: every control character, quotes, backslashes and
    /// multi-byte UTF-8 read back as they went in.
    #[test]
    fn json_escapes_read_back_with_serde_json() {
        let mut text: String = (0u8..0x80).map(char::from).collect();
        text.push_str("\"\\ 七 ✓ é");
        let mut out = b"\"".to_vec();
        json_escape_into(&mut out, text.as_bytes());
        out.push(b'"');
        let back: String = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, text);
    }

    /// The block check finds a byte JSON escapes at every place in texts of every length up to
    /// three blocks, as the byte-at-a-time definition does.
    #[test]
    fn json_escape_check_matches_the_definition_at_every_length_and_place() {
        for len in 0..100 {
            for place in 0..len {
                for odd in [b'"', b'\\', b'\t', 0x01, 0x1f] {
                    let mut text = vec![b'a'; len];
                    text[place] = odd;
                    assert!(needs_json_escape(&text), "{len} {place} {odd}");
                }
            }
            assert!(!needs_json_escape(&vec![b' '; len]));
            assert!(!needs_json_escape("é".repeat(len / 2).as_bytes()));
        }
    }

    #[test]
    fn rfc3339_stamps_have_the_date() {
        let mut out = [0u8; 24];
        let len = rfc3339(&mut out, std::time::Duration::from_millis(0));
        assert_eq!(&out[..len], b"1970-01-01T00:00:00.000Z");
        // `date -u -d 2026-11-30T12:00:01 +%s` is 1796040001.
        rfc3339(
            &mut out,
            std::time::Duration::from_millis(1_796_040_001_123),
        );
        assert_eq!(&out, b"2026-11-30T12:00:01.123Z");
        rfc3339(&mut out, std::time::Duration::from_secs(951_782_400)); // a leap day
        assert_eq!(&out[..10], b"2000-02-29");
    }

    #[test]
    fn heads_in_every_format() {
        let at = std::time::Duration::from_millis(1_796_040_001_123);
        let head = |format, time| {
            let head = Head::new(format, time, at, 3600);
            String::from_utf8_lossy(head.all()).into_owned()
        };
        assert_eq!(
            head(LogFormat::Text, LogTime::Clock),
            "13:00:01 [INFO] message "
        );
        assert_eq!(
            head(LogFormat::Text, LogTime::Rfc3339),
            "2026-11-30T12:00:01.123Z [INFO] message "
        );
        assert_eq!(head(LogFormat::Text, LogTime::None), "[INFO] message ");
        assert_eq!(
            head(LogFormat::Json, LogTime::Rfc3339),
            "{\"ts\":\"2026-11-30T12:00:01.123Z\",\"level\":\"info\",\"event\":\"message\","
        );
        assert_eq!(
            head(LogFormat::Json, LogTime::None),
            "{\"level\":\"info\",\"event\":\"message\","
        );
    }
}
