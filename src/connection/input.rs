//! A connection's input: reading within a budget, telnet commands taken out and answered, and
//! the bytes framed into lines (more `impl Connection`).

use std::io;
use std::rc::Rc;
use std::time::Instant;

use super::{Connection, HEAR_OUT_CAP, ReadStatus, Stream};
use crate::framing::Line;
use crate::telnet::Telnet;

impl<S: Stream> Connection<S> {
    /// Reads until the socket would block, the client closes or `budget` is spent, using `buf` as
    /// scratch space, and hands every complete line to `on_line` in order. Telnet commands are
    /// taken out of each read's bytes first, and their answers queued (see `telnet.rs`).
    ///
    /// `budget` counts work, not bytes: every byte read costs one, every line `per_line` more (in
    /// the room, one for each member it goes to). Each read asks for no more bytes than the budget
    /// left could pay for as lines, so a read never causes more work than the budget allows.
    ///
    /// A closing client that was heard out up to `HEAR_OUT_CAP` is still read to the end, but
    /// what it sends is only counted (`discarded`), so that it is reported, not silently lost.
    ///
    /// Under `--max-rate` a read takes no more lines, nor bytes, than the bucket allows, leaving
    /// the rest in the socket (`Stream::read_lines`), and stops `Throttled` once the bucket is
    /// spent.
    pub fn read(
        &mut self,
        buf: &mut [u8],
        budget: &mut usize,
        per_line: usize,
        mut on_line: impl FnMut(Line<'_>),
    ) -> ReadStatus {
        loop {
            if *budget == 0 {
                return ReadStatus::BudgetSpent;
            }
            let discarding = self.hearing && self.is_capped();
            // Headless (a line costs at most one more than its bytes), read what the budget left
            // covers in bytes, overshooting by at most as much again; in the room, no more bytes
            // than the budget could pay for as lines.
            let affordable = if per_line <= 1 {
                *budget
            } else {
                *budget / (1 + per_line)
            };
            // The first read takes at least two bytes, so that a TLS hello on the plain port is
            // seen as one whatever the budget left.
            let least = if self.bytes_in == 0 { 2 } else { 1 };
            let mut want = buf.len().min(affordable.max(least));
            if discarding {
                want = buf.len().min(*budget);
            } else if self.hearing {
                want = want.min(HEAR_OUT_CAP - self.heard_out);
            }
            let read = match self.flood.as_deref_mut().filter(|_| !discarding) {
                None => self.stream.read(&mut buf[..want]),
                Some(bucket) => {
                    let now = Instant::now();
                    let allowance = bucket.allowance(now);
                    if allowance.is_spent() {
                        bucket.hold(now);
                        return ReadStatus::Throttled;
                    }
                    // Every byte read is charged, whether it ends a line, is cut off a long one
                    // or waits in an unfinished one. A telnet client's bare `CR` ends a line as
                    // its `LF` does.
                    let want = want.min(allowance.bytes);
                    let cr = self.telnet.speaks_or_may();
                    self.stream
                        .read_lines(&mut buf[..want], allowance.lines, cr)
                }
            };
            if let Ok(n) = read {
                self.bytes_in += n as u64;
            }
            match read {
                Ok(0) => {
                    self.input_ended();
                    return ReadStatus::Eof;
                }
                Ok(n) if discarding => {
                    self.quiet = false;
                    self.discarded += n;
                    *budget = budget.saturating_sub(n);
                }
                Ok(n)
                    if self.bytes_in == n as u64
                        && is_tls_record(&buf[..n])
                        && !self.stream.is_tls() =>
                {
                    // A TLS client on the plain port: a handshake_failure alert tells it, and its
                    // hello is not taken for a message.
                    let _ = self.stream.write(crate::tls::TLS_ALERT);
                    self.discarded += n;
                    return ReadStatus::TlsOnPlain;
                }
                Ok(n) => {
                    if self.hearing {
                        self.heard_out += n;
                        self.quiet = false;
                    }
                    self.last_input = Instant::now();
                    let mut answers = Vec::new();
                    let (lead, kept) = self.telnet.filter(&mut buf[..n], &mut answers);
                    if !answers.is_empty() {
                        self.answer(answers);
                    }
                    let mut lines: usize = 0;
                    let mut count = |line: Line<'_>| {
                        lines += 1;
                        on_line(line);
                    };
                    if let Some(byte) = lead {
                        self.decoder.feed(&[byte], &mut count);
                    }
                    self.decoder.feed(&buf[..kept], &mut count);
                    self.lines_in += lines as u64;
                    self.ends_lines |= lines > 0;
                    if let Some(bucket) = &mut self.flood {
                        bucket.spend(lines, n);
                    }
                    let work = n.saturating_add(per_line.saturating_mul(lines));
                    *budget = budget.saturating_sub(work);
                }
                // Would block "errors" are the OS's way of saying: nothing more for now.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(bucket) = &mut self.flood {
                        bucket.caught_up();
                    }
                    return ReadStatus::Drained;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.input_ended();
                    return ReadStatus::Failed;
                }
            }
        }
    }

    /// Queues what the client's telnet commands are owed, whatever its state: a closing telnet
    /// client that waits for its timing mark shows nothing until it gets it. A client that does
    /// not read fills its queue with answers as with anything else: past `--max-queue` they are
    /// dropped, so the queue stays bounded, and the next line sent to it makes it `slow`.
    fn answer(&mut self, answers: Vec<u8>) {
        if self.write_error.is_none() {
            let _ = self.out.push(Rc::from(answers), self.max_queue);
        }
    }

    /// The client's input ended (EOF, a reset): a 0xFF that ended its last read is text, no
    /// command byte will follow it. (Not at the line timeout: the command may still come.)
    fn input_ended(&mut self) {
        if let Some(byte) = self.telnet.take_stray_iac() {
            // Not a newline: it completes no line.
            self.decoder.feed(&[byte], |_| {});
        }
    }

    /// The line timeout fired for a client that does not speak telnet: a 0xFF that ended its
    /// last read is the last byte of the line now handed out (a literal 0xFF), not the start of
    /// a command that would come a timeout later.
    pub fn line_timed_out(&mut self) {
        if !self.telnet.speaks() {
            self.input_ended();
        }
    }

    /// Takes over what the gate learnt from the password line (`gate::Passed`): the telnet state
    /// (what was negotiated, a `CR` whose `LF` or `NUL` is still to come), and whether the line
    /// ended with a newline, which makes it a client whose lines wait for their newline.
    pub fn carry_over(&mut self, telnet: Telnet, ends_lines: bool, heard: u64) {
        self.telnet = telnet;
        self.ends_lines = ends_lines;
        // Counted as read from it; and its first bytes are not looked at again for a TLS hello
        // (a first message starting 0x16 0x03 is text).
        self.bytes_in = heard;
    }

    /// Whether the client pressed Ctrl-C in telnet: it leaves as with `exit`.
    pub fn is_interrupted(&self) -> bool {
        self.telnet.interrupted()
    }

    /// Whether its unfinished line waits for the newline, as the line of a client that has
    /// ended one with a newline, or speaks telnet (whose Enter always sends one), rather than
    /// becoming a message after `--line-timeout` (bounded by `--max-line` and `--idle-timeout`).
    pub fn waits_for_newline(&self) -> bool {
        self.ends_lines || self.telnet.speaks()
    }

    /// Whether bytes of an unfinished line are waiting, a 0xFF held by the telnet filter
    /// included (text, if no command byte follows before the line timeout).
    pub fn has_partial(&self) -> bool {
        self.decoder.has_partial() || self.telnet.holds_iac()
    }

    /// Hands out the unfinished line as a message of its own, if there is one.
    pub fn take_partial(&mut self, on_line: impl FnOnce(Line<'_>)) {
        // A message like any other: it costs a line (its bytes were charged as they were read).
        if let (Some(bucket), true) = (&mut self.flood, self.decoder.has_partial()) {
            bucket.spend(1, 0);
        }
        let lines_in = &mut self.lines_in;
        self.decoder.take_partial(|line| {
            *lines_in += 1;
            on_line(line);
        });
    }

    /// Forgets the unfinished line: the client has left, and what it sent after leaving is not
    /// heard, only counted.
    pub fn discard_partial(&mut self) {
        self.discarded += self.decoder.discard_partial();
    }

    /// Counts `bytes` it sent as not heard: lines that came after its `exit` in the same read.
    pub fn not_heard(&mut self, bytes: usize) {
        self.discarded += bytes;
    }
}

/// Whether `bytes`, the first a client sent, open a TLS handshake record (content type 22, version
/// 3.x): what a TLS client sends first, and no line of text starts with.
fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16, 0x03, ..])
}
