//! The bus thread's `/msg`s waiting for an answer: each is answered by the instance that delivered
//! it, or given up after `ASK_TIMEOUT`. Bounded: past `MAX_ASKS` waiting, a new one is refused (and
//! its member told nobody was reached) rather than kept.
//!
//! Deliberately not here: who sent it or what the member is told (`chat/private.rs`). Pure: the
//! caller passes the time.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// `/msg`s published and not yet answered.
#[derive(Debug, Default)]
pub struct Asks {
    /// In the order they began (all wait `ASK_TIMEOUT`, so the front ends first); an answered one
    /// stays here until its time, but is no longer in `waiting`.
    order: VecDeque<(Instant, u64)>,
    waiting: HashSet<u64>,
}

impl Asks {
    /// Starts waiting for `ask` at `now`; false if too many are waiting.
    pub fn start(&mut self, ask: u64, now: Instant) -> bool {
        if self.order.len() >= MAX_ASKS {
            return false;
        }
        self.waiting.insert(ask);
        self.order.push_back((now + ASK_TIMEOUT, ask));
        true
    }

    /// `ask` was answered (or given up): true if it was still waiting.
    pub fn end(&mut self, ask: u64) -> bool {
        self.waiting.remove(&ask)
    }

    /// When the oldest one is due, if any is kept.
    pub fn next_due(&self) -> Option<Instant> {
        self.order.front().map(|&(due, _)| due)
    }

    /// Takes off every one due by `now`; those still waiting go into `expired`.
    pub fn expire(&mut self, now: Instant, expired: &mut Vec<u64>) {
        while let Some(&(due, ask)) = self.order.front() {
            if due > now {
                break;
            }
            self.order.pop_front();
            if self.waiting.remove(&ask) {
                expired.push(ask);
            }
        }
    }
}

/// How long a `/msg` waits for the instance that has the member to answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// The most `/msg`s waiting at once (the loop keeps no more than this either).
pub const MAX_ASKS: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ask_is_answered_once_or_expires_once() {
        let t = Instant::now();
        let mut asks = Asks::default();
        assert!(asks.start(1, t) && asks.start(2, t));
        assert!(asks.end(1));
        assert!(!asks.end(1), "answered twice");
        let mut expired = Vec::new();
        asks.expire(t + ASK_TIMEOUT / 2, &mut expired);
        assert!(expired.is_empty());
        asks.expire(t + ASK_TIMEOUT, &mut expired);
        assert_eq!(expired, [2]);
        assert_eq!(asks.next_due(), None);
    }

    #[test]
    fn asks_are_bounded() {
        let t = Instant::now();
        let mut asks = Asks::default();
        for ask in 0..MAX_ASKS as u64 {
            assert!(asks.start(ask, t));
        }
        assert!(!asks.start(u64::MAX, t));
        let mut expired = Vec::new();
        asks.expire(t + ASK_TIMEOUT, &mut expired);
        assert_eq!(expired.len(), MAX_ASKS);
        assert!(asks.start(u64::MAX, t));
    }
}
