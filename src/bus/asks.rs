//! The bus thread's `/msg`s waiting for an answer: each is answered by the instance that delivered
//! it, or given up after `ASK_TIMEOUT`. Bounded: past `MAX_ASKS` waiting, a new one is refused (and
//! its member told nobody was reached) rather than kept.
//!
//! Deliberately not here: who sent it or what the member is told (`chat/private.rs`). Pure: the
//! caller passes the time.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// The wall clock in unix milliseconds, as a `/msg` frame carries its send time.
pub fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether a `/msg` sent at `sent` (unix milliseconds, the sender's clock) and come at `now` (this
/// instance's) is too late to deliver: its sender may have been told it was not delivered by the
/// time this instance's answer reaches it. (Instances sharing a room keep their clocks in step.)
pub fn too_late(sent: u64, now: u64) -> bool {
    u128::from(now.saturating_sub(sent)) > MSG_FRESH.as_millis()
}

/// How long a `/msg` waits for the instance that has the member to answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// The oldest a `/msg` may be when it comes and still be delivered: half the sender's wait, so
/// that the answer has the other half to get back (and a clock a little out of step does not
/// matter). The sender is told "not delivered" `ASK_TIMEOUT` after it sent at the earliest (the
/// bus thread starts its wait as it takes the frame, and the loop's own deadline is later), so a
/// `/msg` its sender was told failed is never delivered, unless the answer took over a second.
pub const MSG_FRESH: Duration = Duration::from_secs(1);
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
    fn a_msg_older_than_half_the_wait_is_too_late() {
        let sent = 1_764_578_400_000;
        assert!(!too_late(sent, sent));
        assert!(!too_late(sent, sent + 1000));
        assert!(too_late(sent, sent + 1001));
        assert!(too_late(sent, sent + 11_000));
        // A receiver's clock a little behind the sender's.
        assert!(!too_late(sent, sent - 50));
        let t = UNIX_EPOCH + Duration::from_millis(sent);
        assert_eq!(unix_ms(t), sent);
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
