//! A deadline queue: the loop's poll timeout and the per-client timers that have expired.
//!
//! Entries are never removed early: a timer that is no longer wanted is skipped when it fires,
//! because its client is gone (the `ConnId` no longer matches its slot) or no longer needs it.
//! That keeps arming O(log n) and avoids any scan of every client on every turn.
//!
//! Deliberately not here: what a timer means; the server decides that when one fires.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::connection::ConnId;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// An unfinished line may be due as a message.
    Line,
    /// A closing client's output may have had long enough to drain.
    Linger,
}

/// One armed timer for the client in slab slot `key` with id `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    pub at: Instant,
    pub key: usize,
    pub id: ConnId,
    pub kind: TimerKind,
}

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
}

impl Timers {
    pub fn arm(&mut self, timer: Timer) {
        self.heap.push(Reverse(timer));
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(timer)| timer.at)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse(timer)) if timer.at <= now => self.heap.pop().map(|Reverse(timer)| timer),
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
        let timer = |ms, key| Timer {
            at: now + Duration::from_millis(ms),
            key,
            id: ConnId(key as u64),
            kind: TimerKind::Line,
        };
        let mut timers = Timers::default();
        timers.arm(timer(30, 3));
        timers.arm(timer(10, 1));
        timers.arm(timer(20, 2));
        assert_eq!(
            timers.next_deadline(),
            Some(now + Duration::from_millis(10))
        );
        assert_eq!(timers.pop_due(now), None);
        let due: Vec<usize> =
            std::iter::from_fn(|| timers.pop_due(now + Duration::from_millis(25)))
                .map(|t| t.key)
                .collect();
        assert_eq!(due, [1, 2]);
        assert_eq!(
            timers.next_deadline(),
            Some(now + Duration::from_millis(30))
        );
    }
}
