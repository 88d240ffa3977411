//! Hearing out a closing client: what it sent before the server closed it is still read, up to
//! `HEAR_OUT_CAP` bytes and `HEAR_OUT_TIME`; past either, what is left is counted and reported
//! dropped (`Connection::finish`). More `impl Connection`, split off by what it decides.

use std::time::{Duration, Instant};

use super::{Connection, Stream};

impl<S: Stream> Connection<S> {
    /// Whether it is closing and still being heard out.
    pub fn is_hearing(&self) -> bool {
        self.hearing
    }

    /// Whether it is to be read again next turn without waiting for an event: while heard out,
    /// but not once it is past the cap and its socket was found empty (then its next bytes bring
    /// an event, and the grace timer ends the wait).
    pub fn wants_reread(&self) -> bool {
        self.hearing && !(self.quiet && self.is_capped())
    }

    /// A read found its socket empty while hearing it out: whether that was the first time in a
    /// row (look again next turn) rather than the second (it is heard out).
    pub fn first_quiet(&mut self) -> bool {
        !std::mem::replace(&mut self.quiet, true)
    }

    /// Whether hearing it out reached `HEAR_OUT_CAP`: the line it was in the middle of is cut.
    pub fn is_capped(&self) -> bool {
        self.heard_out >= HEAR_OUT_CAP
    }

    /// Stops hearing a closing client; what still waits in its socket is not read again but for
    /// `finish`, which counts it as not heard (once), beside what was read past `HEAR_OUT_CAP`.
    pub fn stop_hearing(&mut self) {
        self.hearing = false;
    }

    /// How much longer it may be heard out at `now`: a client being heard out below the cap gets
    /// up to `HEAR_OUT_TIME` from its close (a big backlog takes its time on a busy machine); one
    /// past the cap, or not being heard, gets nothing beyond the closing grace.
    pub fn hearing_time_left(&self, now: Instant) -> Option<Duration> {
        let closed_at = self
            .closed_at
            .filter(|_| self.hearing && !self.is_capped())?;
        let left = (closed_at + HEAR_OUT_TIME).saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }
}

/// The most a closing client is heard out: bytes read after the server closed it. Past it, what
/// is left is counted and reported as dropped.
pub const HEAR_OUT_CAP: usize = 4 * 1024 * 1024;
/// The longest a closing client is heard out (below the cap), counted from its close.
const HEAR_OUT_TIME: Duration = Duration::from_secs(10);
