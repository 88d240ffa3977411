//! Console parsing on any text: it returns a command, a mistake or nothing, and never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let _ = chatd::parse_console_line(&line);
});
