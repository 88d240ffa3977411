//! Framing and escaping on any bytes, split into reads at any points: the same messages as one
//! read, none longer than the cap, and nothing unsafe for a terminal after escaping.

#![no_main]

use chatd::{Line, LineDecoder};
use chatd::escape;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
    }
});

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
