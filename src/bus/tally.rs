//! A report that can come in bursts (NATS says "slow consumer" once a message it dropped: 70 times
//! in a second), said at most once every `every`, with the number of events it stands for. The
//! first event is said at once; those within `every` of a report are counted, and said together
//! when it has passed (at the next event, or when the caller looks: `due`).
//!
//! Deliberately not here: what is reported, or the timer that calls `due`. Pure: the caller
//! passes the time.

use std::time::{Duration, Instant};

/// Events counted since the last report.
#[derive(Debug)]
pub struct Tally {
    every: Duration,
    /// When the last report was said.
    said: Option<Instant>,
    /// Events since then.
    count: u64,
}

impl Tally {
    pub fn new(every: Duration) -> Tally {
        Tally {
            every,
            said: None,
            count: 0,
        }
    }

    /// One more event at `now`: the number to report now, if it is time.
    pub fn add(&mut self, now: Instant) -> Option<u64> {
        self.count = self.count.saturating_add(1);
        self.due(now)
    }

    /// The events counted and not said, if `every` has passed since the last report.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        let recent = (self.said).is_some_and(|said| now.duration_since(said) < self.every);
        if self.count == 0 || recent {
            return None;
        }
        self.said = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_said_once_then_counted_until_its_time() {
        let t = Instant::now();
        let every = Duration::from_secs(5);
        let mut tally = Tally::new(every);
        assert_eq!(tally.due(t), None);
        assert_eq!(tally.add(t), Some(1), "the first is said at once");
        for ms in 1..70 {
            assert_eq!(tally.add(t + Duration::from_millis(ms * 10)), None);
        }
        assert_eq!(tally.due(t + every / 2), None);
        assert_eq!(tally.due(t + every), Some(69));
        assert_eq!(tally.due(t + 3 * every), None, "nothing new");
        // Quiet past `every`: the next one is said at once again.
        assert_eq!(tally.add(t + 3 * every), Some(1));
        assert_eq!(tally.add(t + 3 * every), None);
        assert_eq!(tally.add(t + 4 * every), Some(2));
    }
}
