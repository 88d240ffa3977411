//! A client's output queue: whole lines waiting to be written, shared between recipients and
//! capped in bytes.
//!
//! A line is an `Rc<[u8]>` ending in `\n`. A line relayed to a thousand clients is encoded once and
//! each queue holds a reference to it, so delivery costs no copy and no allocation per recipient.
//! Writing gathers up to `MAX_SLICES` lines into one `write_vectored`. An empty queue holds at
//! most a small ring.
//!
//! Deliberately not here: sockets or readiness. `write_to` takes any `Write`, so the tests use a
//! writer that takes a few bytes at a time.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Lines waiting to be written.
#[derive(Debug, Default)]
pub struct OutQueue {
    lines: VecDeque<Rc<[u8]>>,
    /// Bytes of the front line already written.
    offset: usize,
    /// Bytes still to be written, over all lines.
    len: usize,
}

/// The line would take the queue past its cap.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

impl OutQueue {
    /// Queues `line` unless the unsent bytes would pass `cap`.
    pub fn push(&mut self, line: Rc<[u8]>, cap: usize) -> Result<(), Overflow> {
        if !self.fits(line.len(), cap) {
            return Err(Overflow);
        }
        self.len += line.len();
        self.lines.push_back(line);
        Ok(())
    }

    /// Whether `bytes` more stay within `cap`.
    pub fn fits(&self, bytes: usize, cap: usize) -> bool {
        self.len + bytes <= cap
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every line and gives back the memory.
    pub fn clear(&mut self) {
        *self = OutQueue::default();
    }

    /// Writes until the queue is empty or `out` would block.
    pub fn write_to(&mut self, out: &mut impl Write) -> io::Result<()> {
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (slice, line) in slices.iter_mut().zip(&self.lines) {
                let start = if count == 0 { self.offset } else { 0 };
                *slice = IoSlice::new(line.get(start..).unwrap_or_default());
                count += 1;
            }
            match out.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Keep a small ring for the next turn's lines; give a large one back.
        if self.lines.capacity() > KEEP_CAPACITY {
            self.clear();
        }
        self.offset = 0;
        Ok(())
    }

    fn advance(&mut self, mut written: usize) {
        self.len -= written.min(self.len);
        while let Some(front) = self.lines.front() {
            let left = front.len() - self.offset;
            if written < left {
                self.offset += written;
                return;
            }
            written -= left;
            self.offset = 0;
            self.lines.pop_front();
        }
    }
}

/// `text` and a newline, as one shareable line.
pub fn line(text: &[u8]) -> Rc<[u8]> {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text);
    bytes.push(b'\n');
    bytes.into()
}

/// Lines gathered into one `write_vectored` (Linux takes up to 1024).
const MAX_SLICES: usize = 256;
/// Ring capacity kept after the queue empties: a few lines' worth, so an idle client holds little
/// and a busy one does not allocate every turn.
const KEEP_CAPACITY: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `step` bytes per call, then would block after `budget` bytes.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.budget);
            if n == 0 && !buf.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.got.extend_from_slice(&buf[..n]);
            self.budget -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_every_line_in_order_however_the_writer_splits_them() {
        for step in [1, 3, 7, 100] {
            let mut queue = OutQueue::default();
            let shared = line(b"shared");
            for text in [&b"one"[..], b"two", b""] {
                queue.push(line(text), 1000).unwrap();
            }
            queue.push(Rc::clone(&shared), 1000).unwrap();
            let mut out = Trickle {
                got: Vec::new(),
                step,
                budget: 5,
            };
            queue.write_to(&mut out).unwrap();
            assert_eq!(out.got, b"one\nt");
            assert!(!queue.is_empty());
            out.budget = usize::MAX;
            queue.write_to(&mut out).unwrap();
            assert_eq!(out.got, b"one\ntwo\n\nshared\n");
            assert!(queue.is_empty());
        }
    }

    #[test]
    fn refuses_a_line_past_the_cap_and_counts_what_is_written() {
        let mut queue = OutQueue::default();
        queue.push(line(b"12345"), 10).unwrap();
        assert_eq!(queue.push(line(b"12345"), 10), Err(Overflow));
        let mut out = Trickle {
            got: Vec::new(),
            step: 4,
            budget: 4,
        };
        queue.write_to(&mut out).unwrap();
        // Four bytes left the queue, so a five-byte line fits again under the cap of 10.
        queue.push(line(b"abcd"), 10).unwrap();
        out.budget = usize::MAX;
        queue.write_to(&mut out).unwrap();
        assert_eq!(out.got, b"12345\nabcd\n");
    }
}
