//! Framing and escaping on any bytes, split into reads at any points: the same messages as one
//! read, none longer than the cap, and nothing unsafe for a terminal after escaping. The same
//! with telnet commands taken out first, as a connection does: the same messages and answers
//! however the stream is split. The fast
//! check that lets text through unescaped (printable ASCII a block at a time, then UTF-8) must say
//! what the scalar definition says, on every message and on the whole input.

#![no_main]

use std::borrow::Cow;

use chatd::escape;
use chatd::{Line, LineDecoder, Telnet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(kept_as_is(data), needs_no_escaping(data));
    // The first byte picks the cap, the second a read size; the rest is the stream.
    let [cap, step, stream @ ..] = data else {
        return;
    };
    let max_line = usize::from(*cap % 64) + 1;
    let step = usize::from(*step).max(1);

    let whole = decode(stream, stream.len().max(1), max_line);
    let split = decode(stream, step, max_line);
    assert_eq!(whole, split);
    for (text, _) in &whole {
        assert!(text.len() <= max_line);
        let shown = escape(text);
        assert!(!shown.chars().any(|c| c.is_control() && c != '\t'));
        assert_eq!(kept_as_is(text), needs_no_escaping(text));
    }

    let whole = telnet_then_decode(stream, stream.len().max(1), max_line);
    let split = telnet_then_decode(stream, step, max_line);
    assert_eq!(whole, split);
    assert!(whole.1.len() <= stream.len() + 3);
});

/// Lines, telnet answers and whether the client pressed Ctrl-C, for `stream` read `step` bytes at
/// a time through a telnet filter and a decoder.
fn telnet_then_decode(
    stream: &[u8],
    step: usize,
    max_line: usize,
) -> (Vec<(Vec<u8>, usize)>, Vec<u8>, bool) {
    let mut telnet = Telnet::default();
    let mut decoder = LineDecoder::new(max_line);
    let (mut lines, mut answers) = (Vec::new(), Vec::new());
    let mut push = |line: Line<'_>| lines.push((line.text.to_vec(), line.dropped));
    for chunk in stream.chunks(step) {
        let mut chunk = chunk.to_vec();
        let (lead, kept) = telnet.filter(&mut chunk, &mut answers);
        if let Some(byte) = lead {
            decoder.feed(&[byte], &mut push);
        }
        decoder.feed(&chunk[..kept], &mut push);
    }
    decoder.take_partial(&mut push);
    (lines, answers, telnet.interrupted())
}

/// Whether `escape` passed the bytes through untouched: its fast check said they need nothing.
fn kept_as_is(bytes: &[u8]) -> bool {
    matches!(escape(bytes), Cow::Borrowed(text) if text.as_bytes() == bytes)
}

/// The scalar definition, byte by byte and character by character: valid UTF-8 holding no control
/// character but tab, no line or paragraph separator, none of the room's server mark and the
/// diamonds like it, and no Unicode Cf (format) character but the zero-width joiner and
/// non-joiner (as `chatd::escape` documents; extend both together). A flag's tags are kept by the
/// escaping, but not by the fast check: they count here.
fn needs_no_escaping(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| {
        !text.chars().any(|c| {
            (c.is_control() && c != '\t')
                || matches!(c,
                    '\u{2028}' | '\u{2029}'
                    | '\u{25c6}' | '\u{25c8}' | '\u{2666}' | '\u{2b25}' | '\u{2b27}'
                    | '\u{2b29}' | '\u{2bc1}'
                    | '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
                    | '\u{890}'..='\u{891}' | '\u{8e2}' | '\u{180e}' | '\u{200b}'
                    | '\u{200e}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                    | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}'
                    | '\u{fff9}'..='\u{fffb}' | '\u{110bd}' | '\u{110cd}'
                    | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}'
                    | '\u{1d173}'..='\u{1d17a}' | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
        })
    })
}

fn decode(stream: &[u8], step: usize, max_line: usize) -> Vec<(Vec<u8>, usize)> {
    let mut decoder = LineDecoder::new(max_line);
    let mut lines = Vec::new();
    let mut push = |line: Line<'_>| lines.push((line.text.to_vec(), line.dropped));
    for chunk in stream.chunks(step) {
        decoder.feed(chunk, &mut push);
    }
    decoder.take_partial(&mut push);
    lines
}
