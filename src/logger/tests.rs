use log::kv::Value;

use super::*;
use crate::json::json_escape_into;

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
