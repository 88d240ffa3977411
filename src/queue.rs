//! A client's output queue: whole lines waiting to be written, shared between recipients and
//! capped in bytes.
//!
//! A line is an `Rc<[u8]>` ending in `\n`. A line relayed to a thousand clients is encoded once and
//! each queue holds a reference to it, so delivery costs no copy and no allocation per recipient.
//! Writing gathers up to `MAX_SLICES` lines into one `write_vectored`. An empty queue holds at
//! most a small ring.
//!
//! The cap counts what a queue really holds: each line's bytes plus `LINE_OVERHEAD` for its slot
//! in the ring and its share of the line's allocation, so a client sent many tiny lines cannot
//! hold many times `--max-queue`. The line being written (the front one) is not counted against
//! the cap, so an empty queue takes any line: one long line, escaped to up to four times
//! `--max-line`, never makes every member of a room slow when `--max-queue` is small.
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
    /// What the lines behind the front one cost against the cap: bytes plus `LINE_OVERHEAD` each.
    waiting: usize,
    /// Bytes written so far, over the queue's life (for `/metrics`): kept by `clear`.
    written: u64,
}

/// The line would take the queue past its cap.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

impl OutQueue {
    /// Queues `line` unless what waits behind the front line would pass `cap`.
    pub fn push(&mut self, line: Rc<[u8]>, cap: usize) -> Result<(), Overflow> {
        if !self.fits(line.len(), cap) {
            return Err(Overflow);
        }
        if !self.lines.is_empty() {
            self.waiting += cost(line.len());
        }
        self.lines.push_back(line);
        Ok(())
    }

    /// Whether a line of `bytes` more stays within `cap` (always, on an empty queue).
    pub fn fits(&self, bytes: usize, cap: usize) -> bool {
        self.lines.is_empty() || self.waiting + cost(bytes) <= cap
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// What the queue holds, counted as the cap counts it (the front line included).
    pub fn held(&self) -> usize {
        let front = self.lines.front().map_or(0, |line| cost(line.len()));
        self.waiting + front
    }

    /// Forgets every line and gives back the memory.
    pub fn clear(&mut self) {
        *self = OutQueue {
            written: self.written,
            ..OutQueue::default()
        };
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
        self.written += written as u64;
        while let Some(front) = self.lines.front() {
            let left = front.len() - self.offset;
            if written < left {
                self.offset += written;
                return;
            }
            written -= left;
            self.offset = 0;
            self.lines.pop_front();
            // The next line is now the one being written: it leaves the count of what waits.
            if let Some(next) = self.lines.front() {
                self.waiting -= cost(next.len());
            }
        }
    }
}

/// What a line of `bytes` costs against the cap.
fn cost(bytes: usize) -> usize {
    bytes + LINE_OVERHEAD
}

/// What a queued line holds besides its bytes: its slot in the ring (16 bytes, up to twice that
/// while the ring grows by doubling) and the shared line's header and allocator rounding (about
/// 32 bytes, paid once however many queues hold the line). Counted in full for every queue, so a
/// queue's real memory stays below what it is charged.
pub const LINE_OVERHEAD: usize = 64;

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
        let cap = 2 * (6 + LINE_OVERHEAD);
        // An empty queue takes any line, however long: the cap counts what waits behind it.
        queue.push(line(&[b'x'; 1000]), cap).unwrap();
        queue.push(line(b"12345"), cap).unwrap();
        queue.push(line(b"12345"), cap).unwrap();
        assert_eq!(queue.push(line(b"12345"), cap), Err(Overflow));
        assert_eq!(queue.held(), 1001 + 3 * LINE_OVERHEAD + 12);
        let mut out = Trickle {
            got: Vec::new(),
            step: 1000,
            budget: 1001,
        };
        queue.write_to(&mut out).unwrap();
        // The long line left the queue and the first `12345` is the one being written, so one
        // more five-byte line fits again.
        queue.push(line(b"abcd"), cap).unwrap();
        assert_eq!(queue.push(line(b"abcd"), cap), Err(Overflow));
        out.budget = usize::MAX;
        queue.write_to(&mut out).unwrap();
        assert_eq!(&out.got[1001..], b"12345\n12345\nabcd\n");
        assert!(queue.is_empty());
        assert_eq!(queue.held(), 0);
    }
}
