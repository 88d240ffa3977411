//! How a connection ends: closing for a reason, hearing out what it sent, settling a failed
//! write, and the polite end of the TCP (and TLS) session. More `impl Connection`, split from
//! `connection.rs` by what it decides.

use std::io;
use std::time::Instant;

use mio::Interest;

use super::{Connection, FINISH_BYTES, State};
use crate::ids::Reason;
use crate::stream::Stream;

impl<S: Stream> Connection<S> {
    /// Closes a client whose write failed, once what it sent has been heard: `reset`, or `closed`
    /// if the read saw its FIN and the write saw a broken pipe, not a reset. A reset that the write
    /// took leaves the read only an EOF to see; it was a reset all the same.
    ///
    /// What it sent before the failure may still wait in the socket: unless it already closed, it
    /// is heard out like a client the server closes.
    pub fn settle_broken(&mut self) {
        let Some(kind) = self.write_error.take() else {
            return;
        };
        if kind == io::ErrorKind::ConnectionReset && self.state == State::Closing(Reason::Closed) {
            self.state = State::Closing(Reason::Reset);
        }
        let unheard = self.is_heard();
        self.abort(Reason::Reset);
        self.hearing = unheard;
    }

    /// Stops serving; what is queued still goes out. The first reason given is the one kept. A
    /// client the server closes (kick, shutdown, timeout, slow) is heard out first: see `hearing`.
    pub fn close(&mut self, reason: Reason) {
        if self.state == State::Open {
            self.state = State::Closing(reason);
            self.hearing = reason.hears_out();
            self.closed_at = Some(Instant::now());
        }
    }

    /// Closes at once and forgets what is queued: for a client that cannot be written to.
    pub fn abort(&mut self, reason: Reason) {
        self.close(reason);
        self.drop_output();
    }

    /// Forgets what is queued (a closing client that did not take its last lines in time).
    pub fn drop_output(&mut self) {
        self.out.clear();
        self.output_dropped = true;
    }

    /// The interest the socket needs now, if it differs from what it is registered with; the
    /// caller reregisters. Always readable, writable while output waits.
    pub fn interest_change(&mut self) -> Option<Interest> {
        let wanted = if self.is_flushed() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        (wanted != self.registered).then(|| {
            self.registered = wanted;
            wanted
        })
    }

    /// Ends the TCP session politely: a FIN after the queued bytes, and whatever the client still
    /// sent is read and discarded, because closing a socket with unread input makes Linux send a
    /// reset, which can destroy the goodbye line before the client reads it.
    /// A client that closed its side first has nothing more to send: dropping is enough.
    /// Gives every byte it sent that was not heard (`discarded`, these reads and what is still
    /// left in the socket included), so that they are reported once, not lost silently.
    pub fn finish(&mut self, buf: &mut [u8]) -> usize {
        if self.state != State::Closing(Reason::Closed) {
            self.stream.close_notify();
            let _ = self.stream.shutdown_write();
            // Bounded in bytes, not reads: a TLS read gives one record's plaintext (16 KiB) at
            // most, and stopping mid-record would leave ciphertext in rustls that `unread` cannot
            // see: bytes the client sent, neither heard nor counted.
            let mut taken = 0;
            while taken < FINISH_BYTES {
                match self.stream.read(buf) {
                    Ok(n) if n > 0 => {
                        self.discarded += n;
                        taken += n;
                    }
                    _ => break,
                }
            }
            self.discarded += self.stream.unread();
        }
        self.discarded
    }
}
