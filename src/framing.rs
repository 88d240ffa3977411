//! Bytes in, lines out: the chat protocol's framing.
//!
//! A message is a line ending in `\n`; a `\r` just before the `\n` is dropped, and empty lines are
//! messages too. A line longer than `max_line` keeps its first `max_line` bytes and counts the
//! rest, which are thrown away up to the newline, so a client can never make us hold more than
//! `max_line` bytes of an unfinished line (the idea of tokio-util's
//! `LinesCodec::new_with_max_length`).
//!
//! This module is pure: no I/O, no clock, no logging. The caller says when an unfinished line is
//! due (line timeout, EOF, close) by calling [`LineDecoder::take_partial`].

/// One framed message, borrowed from the bytes that carried it or from the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The message without its line ending, cut to at most `max_line` bytes.
    pub text: &'a [u8],
    /// How many bytes of the message were cut off and thrown away.
    pub dropped: usize,
}

/// Splits a byte stream into lines, however the stream is split into reads.
#[derive(Debug)]
pub struct LineDecoder {
    /// The kept bytes of the unfinished line: never more than `max_line`, nor is its capacity. Its
    /// memory is released whenever a line completes, so an idle client costs no buffer.
    partial: Vec<u8>,
    /// Bytes of the unfinished line past `max_line`, counted and thrown away.
    dropped: usize,
    /// Whether the last byte received for the unfinished line was `\r`, which we need to know when
    /// that byte was among the dropped ones.
    ends_in_cr: bool,
    max_line: usize,
}

impl LineDecoder {
    /// A decoder that keeps at most `max_line` bytes of any line (at least one).
    pub fn new(max_line: usize) -> LineDecoder {
        LineDecoder {
            partial: Vec::new(),
            dropped: 0,
            ends_in_cr: false,
            max_line: max_line.max(1),
        }
    }

    /// Feeds `input`, calling `on_line` for each line it completes, in order. Bytes after the last
    /// newline are kept (up to the cap) until more input or [`take_partial`](Self::take_partial).
    pub fn feed(&mut self, input: &[u8], mut on_line: impl FnMut(Line<'_>)) {
        let mut rest = input;
        while let Some(at) = find_newline(rest) {
            let head = &rest[..at];
            rest = &rest[at + 1..];
            if self.is_empty() {
                // The whole line is in this chunk: hand it out without copying.
                let text = strip_cr(head);
                let kept = text.len().min(self.max_line);
                on_line(Line {
                    text: &text[..kept],
                    dropped: text.len() - kept,
                });
            } else {
                self.append(head);
                if self.ends_in_cr {
                    // The `\r` is the line's last byte: either the last one kept or the last
                    // dropped.
                    if self.dropped > 0 {
                        self.dropped -= 1;
                    } else {
                        self.partial.pop();
                    }
                }
                on_line(Line {
                    text: &self.partial,
                    dropped: self.dropped,
                });
                self.reset();
            }
        }
        self.append(rest);
    }

    /// Hands out the unfinished line, if there is one, as a message of its own (a `\r` at its end
    /// is kept: no newline followed it).
    pub fn take_partial(&mut self, on_line: impl FnOnce(Line<'_>)) {
        if !self.is_empty() {
            on_line(Line {
                text: &self.partial,
                dropped: self.dropped,
            });
            self.reset();
        }
    }

    /// Forgets the unfinished line; gives how many bytes it had (kept and dropped).
    pub fn discard_partial(&mut self) -> usize {
        let bytes = self.partial.len() + self.dropped;
        self.reset();
        bytes
    }

    /// Whether bytes of an unfinished line are waiting for their newline.
    pub fn has_partial(&self) -> bool {
        !self.is_empty()
    }

    fn is_empty(&self) -> bool {
        self.partial.is_empty() && self.dropped == 0
    }

    fn append(&mut self, bytes: &[u8]) {
        let Some(&last) = bytes.last() else {
            return;
        };
        let room = self.max_line - self.partial.len();
        let kept = bytes.len().min(room);
        // Grow as a `Vec` does (doubling), but never past `max_line`: the promise is that an
        // unfinished line holds at most `max_line` bytes, its allocation included.
        let needed = self.partial.len() + kept;
        if needed > self.partial.capacity() {
            let target = needed.max(2 * self.partial.capacity()).min(self.max_line);
            self.partial.reserve_exact(target - self.partial.len());
        }
        self.partial.extend_from_slice(&bytes[..kept]);
        self.dropped += bytes.len() - kept;
        self.ends_in_cr = last == b'\r';
    }

    fn reset(&mut self) {
        // Give the memory back: most clients are idle between lines (issue: RSS per idle client).
        self.partial = Vec::new();
        self.dropped = 0;
        self.ends_in_cr = false;
    }
}

/// The newline search. On x86-64, memchr's SSE2 searcher (SSE2 is in every x86-64 CPU) is called
/// directly and inlines here; `memchr::memchr` picks AVX2 at run time, through two calls more per
/// line, and for a 64-byte line those calls cost more than the search (callgrind: 75 instructions a
/// line through `memchr::memchr`, 35 this way).
#[inline]
fn find_newline(bytes: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(newline) = memchr::arch::x86_64::sse2::memchr::One::new(b'\n') {
        return newline.find(bytes);
    }
    memchr::memchr(b'\n', bytes)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_line_never_holds_more_than_max_line() {
        for max_line in [1, 100, 65_536] {
            let mut decoder = LineDecoder::new(max_line);
            for chunk in [40_000, 25_536, 1, 30_000, 7] {
                decoder.feed(&vec![b'x'; chunk], |_| {});
                assert!(decoder.partial.capacity() <= max_line);
            }
        }
    }

    /// Feeds `chunks` one by one and returns every line, then the partial, as (text, dropped).
    fn decode(max_line: usize, chunks: &[&[u8]]) -> Vec<(Vec<u8>, usize)> {
        let mut decoder = LineDecoder::new(max_line);
        let mut lines = Vec::new();
        let mut push = |line: Line<'_>| lines.push((line.text.to_vec(), line.dropped));
        for chunk in chunks {
            decoder.feed(chunk, &mut push);
        }
        decoder.take_partial(&mut push);
        lines
    }

    fn texts(lines: &[(Vec<u8>, usize)]) -> Vec<&[u8]> {
        lines.iter().map(|(text, _)| text.as_slice()).collect()
    }

    #[test]
    fn splits_lines_and_drops_crlf_endings() {
        let lines = decode(100, &[b"one\ntwo\r\n\nthree\r\n"]);
        assert_eq!(texts(&lines), [&b"one"[..], b"two", b"", b"three"]);
    }

    #[test]
    fn keeps_a_lone_cr_inside_a_line() {
        let lines = decode(100, &[b"a\rb\n\r\r\n"]);
        assert_eq!(texts(&lines), [&b"a\rb"[..], b"\r"]);
    }

    #[test]
    fn joins_a_line_split_across_reads() {
        let lines = decode(100, &[b"hel", b"lo\r", b"\nwor", b"ld\n"]);
        assert_eq!(texts(&lines), [&b"hello"[..], b"world"]);
    }

    #[test]
    fn unfinished_line_comes_out_only_when_taken() {
        let mut decoder = LineDecoder::new(100);
        let mut seen = 0;
        decoder.feed(b"exit", |_| seen += 1);
        assert_eq!(seen, 0);
        assert!(decoder.has_partial());
        let mut taken = Vec::new();
        decoder.take_partial(|line| taken = line.text.to_vec());
        assert_eq!(taken, b"exit");
        assert!(!decoder.has_partial());
        decoder.take_partial(|_| panic!("nothing is left to take"));
    }

    #[test]
    fn truncates_long_lines_and_counts_the_rest() {
        let lines = decode(4, &[b"abcdefgh\nxy\n"]);
        assert_eq!(lines, [(b"abcd".to_vec(), 4), (b"xy".to_vec(), 0)]);
    }

    #[test]
    fn truncates_long_lines_split_across_reads() {
        let lines = decode(4, &[b"ab", b"cdef", b"gh\r", b"\nok\n"]);
        assert_eq!(lines, [(b"abcd".to_vec(), 4), (b"ok".to_vec(), 0)]);
    }

    #[test]
    fn a_line_exactly_at_the_cap_followed_by_cr_is_whole() {
        let lines = decode(4, &[b"abcd\r", b"\n"]);
        assert_eq!(lines, [(b"abcd".to_vec(), 0)]);
    }

    #[test]
    fn never_holds_more_than_the_cap() {
        let mut decoder = LineDecoder::new(8);
        for _ in 0..1000 {
            decoder.feed(&[b'x'; 1000], |_| panic!("no newline was sent"));
            assert!(decoder.partial.len() <= 8);
        }
        let mut dropped = 0;
        decoder.feed(b"\n", |line| dropped = line.dropped);
        assert_eq!(dropped, 1_000_000 - 8);
    }

    #[test]
    fn any_split_gives_the_same_lines() {
        let stream: &[u8] = b"alpha\r\nbeta\n\ngamma-long-line\r\r\ndelta";
        let whole = decode(10, &[stream]);
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                let split = decode(10, &[&stream[..a], &stream[a..b], &stream[b..]]);
                assert_eq!(split, whole, "split at {a} and {b}");
            }
        }
    }
}
