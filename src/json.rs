//! JSON for `--log-format json`: a `log` record as the rest of a JSON object, and text as the
//! inside of a JSON string (RFC 8259), written into byte buffers.
//!
//! Deliberately not here: which fields a report has (`report.rs`) or the turn's buffer
//! (`logger.rs`).

use std::io::Write;

use log::Record;
use log::kv::{self, Key, Value, VisitSource};

use crate::escape::every_byte;

/// A record as the rest of a JSON object, after its stamp: `"level"`, the record's key-values
/// (`event` first, by the habit of `report.rs`; `"event":"log"` if it has none), and `"msg"`, the
/// text line's body.
pub fn json_record(buf: &mut Vec<u8>, scratch: &mut Vec<u8>, record: &Record<'_>) {
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

/// Whether `text` holds a byte a JSON string must escape (checked at memory speed, as escape.rs
/// checks printable text).
pub fn needs_json_escape(text: &[u8]) -> bool {
    !every_byte(text, |b| !is_json_special(b))
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
