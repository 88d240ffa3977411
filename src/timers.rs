//! A deadline queue: every timer the loop has, which also sets the poll timeout.
//!
//! A timer that is no longer wanted stays in the queue and is skipped when it fires, because its
//! client is gone (the `ConnId` no longer matches its slot) or no longer needs it. That keeps
//! arming O(log n) and avoids any scan of every client on every turn; the loop sweeps dead timers
//! out (`sweep`) only when they come to outnumber the living clients.
//!
//! Deliberately not here: what a timer means; the server decides that when one fires.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::ids::ConnId;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Due {
    /// The client in slot `key` with this id may have an unfinished line due as a message.
    Line(usize, ConnId),
    /// The client may have been silent for `--idle-timeout`.
    Idle(usize, ConnId),
    /// The closing client's last lines have had their grace period (at shutdown too).
    Linger(usize, ConnId),
    /// The client held back by `--max-rate` has tokens again, or has been held for
    /// `--flood-timeout`.
    Flood(usize, ConnId),
    /// Time to try `accept` again after it failed.
    AcceptRetry,
    /// Time to tell systemd's watchdog the loop is alive (`WATCHDOG=1`).
    Watchdog,
    /// The `--metrics` scrape in this slot with this id has had its time.
    Scrape(usize, u64),
    /// The guest (a client not yet admitted: TLS handshake, password) in this slot with this
    /// serial may be past its deadline.
    Guest(usize, u64),
    /// This instance's `/msg` numbered so has had its time to be answered across the bus (kept by
    /// the loop too: a stuck bus thread keeps no time).
    Ask(u64),
}

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Due)>>,
}

impl Timers {
    pub fn arm(&mut self, at: Instant, due: Due) {
        self.heap.push(Reverse((at, due)));
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops the timers of clients that are gone: `alive` says whether slot `key` still holds the
    /// client with that id.
    pub fn sweep(&mut self, alive: impl Fn(usize, ConnId) -> bool) {
        self.heap.retain(|Reverse((_, due))| match *due {
            Due::Line(key, id)
            | Due::Idle(key, id)
            | Due::Linger(key, id)
            | Due::Flood(key, id) => alive(key, id),
            // A scrape's and a `/msg`'s timer fire within seconds anyway.
            // A guest's fires within its handshake or auth timeout, and guests are few.
            Due::AcceptRetry | Due::Watchdog | Due::Scrape(..) | Due::Guest(..) | Due::Ask(_) => {
                true
            }
        });
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Due> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, due))| due),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let now = Instant::now();
        let ms = |ms| now + Duration::from_millis(ms);
        let mut timers = Timers::default();
        timers.arm(ms(30), Due::AcceptRetry);
        timers.arm(ms(10), Due::Line(1, ConnId(1)));
        timers.arm(ms(20), Due::Idle(2, ConnId(2)));
        assert_eq!(timers.next_deadline(), Some(ms(10)));
        assert_eq!(timers.pop_due(now), None);
        let due: Vec<Due> = std::iter::from_fn(|| timers.pop_due(ms(25))).collect();
        assert_eq!(due, [Due::Line(1, ConnId(1)), Due::Idle(2, ConnId(2))]);
        assert_eq!(timers.next_deadline(), Some(ms(30)));
    }
}
