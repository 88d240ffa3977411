//! Property tests of the pure parts, over inputs no one would think to write by hand: framing is
//! the same however a stream is split into reads, escaping never lets a control character through,
//! and console parsing never panics.

use chatd::escape;
use chatd::{Line, LineDecoder};
use proptest::prelude::*;

/// Decodes `stream` read in pieces cut at `cuts`, then takes the partial line: every message as
/// `(text, dropped)`.
fn decode(stream: &[u8], cuts: &[usize], max_line: usize) -> Vec<(Vec<u8>, usize)> {
    let mut decoder = LineDecoder::new(max_line);
    let mut lines = Vec::new();
    let mut push = |line: Line<'_>| lines.push((line.text.to_vec(), line.dropped));
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut start = 0;
    for cut in cuts.into_iter().chain([stream.len()]) {
        decoder.feed(&stream[start..cut], &mut push);
        start = cut;
    }
    decoder.take_partial(&mut push);
    lines
}

/// Bytes with plenty of newlines and carriage returns, so that lines are short and many.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![3 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r')],
        0..400,
    )
}

fn is_forbidden(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

proptest! {
    /// Any byte stream split into reads in any way gives the same messages as read whole.
    #[test]
    fn framing_ignores_how_reads_are_split(
        stream in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        max_line in 1usize..64,
    ) {
        prop_assert_eq!(decode(&stream, &cuts, max_line), decode(&stream, &[], max_line));
    }

    /// Messages never hold a newline or exceed `max_line`, and kept plus dropped bytes account for
    /// every byte of the stream but the line endings.
    #[test]
    fn framing_keeps_within_max_line_and_loses_nothing_uncounted(
        stream in stream(),
        max_line in 1usize..64,
    ) {
        let lines = decode(&stream, &[], max_line);
        let mut accounted = 0;
        for (text, dropped) in &lines {
            prop_assert!(text.len() <= max_line);
            prop_assert!(!text.contains(&b'\n'));
            accounted += text.len() + dropped;
        }
        let newlines = stream.iter().filter(|&&b| b == b'\n').count();
        let crlfs = stream.windows(2).filter(|w| w == b"\r\n").count();
        prop_assert_eq!(accounted, stream.len() - newlines - crlfs);
    }

    /// Escaping never outputs a control character (but tab), a newline or a bidi control, for
    /// any bytes.
    #[test]
    fn escaping_never_outputs_a_control_character(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = escape(&bytes);
        prop_assert!(!text.chars().any(is_forbidden), "{:?}", text);
    }

    /// Safe text comes out unchanged.
    #[test]
    fn escaping_keeps_safe_text(text in "\\PC*") {
        prop_assume!(!text.chars().any(is_forbidden));
        prop_assert_eq!(escape(text.as_bytes()), text.as_str());
    }

    /// Console parsing never panics, whatever the operator types.
    #[test]
    fn console_parsing_never_panics(line in "(/|@|//)?[a-z0-9# @/\\PC]{0,40}") {
        let _ = chatd::parse_console_line(&line);
    }

    /// Console parsing of arbitrary Unicode never panics either.
    #[test]
    fn console_parsing_never_panics_on_any_string(line in any::<String>()) {
        let _ = chatd::parse_console_line(&line);
    }
}
