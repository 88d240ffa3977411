//! Flood control: a token bucket on the lines a client sends (`--max-rate`, `--burst`), and the
//! rule that ends a flood (`--flood-timeout`).
//!
//! A client may send `burst` lines at once, then `rate` lines a second. Past that its socket is
//! left unread (the kernel's window then makes the sender wait: nothing is lost or reordered) until
//! the bucket has tokens again; a client held back without a break for the whole timeout is
//! flooding, and the loop drops it.
//!
//! Pure: no I/O and no clock. The caller passes `now`, reads no more lines than the allowance, and
//! says when a read stopped at an empty bucket (`hold`) or emptied the socket (`caught_up`).
//! Deliberately not here: reading, timers, or what dropping a client involves.

use std::time::{Duration, Instant};

/// `--max-rate`, `--burst` and `--flood-timeout`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// One line's worth of time: a token comes back this often.
    interval: Duration,
    /// The most tokens the bucket holds: lines a client may send at once.
    burst: u32,
    /// How many tokens a held client waits for before it is read again: enough that a fast rate
    /// does not wake the loop for every line (at most `WAKES_PER_SECOND` times a second).
    step: u32,
    /// How long a client may be held back without a break before it is dropped.
    timeout: Duration,
}

impl Rate {
    /// `per_second` lines a second after `burst` at once (both at least 1), or `None` when
    /// `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32, timeout: Duration) -> Option<Rate> {
        let per_second = per_second.min(MAX_RATE);
        if per_second == 0 {
            return None;
        }
        let burst = burst.max(1);
        Some(Rate {
            interval: Duration::from_secs(1) / per_second,
            burst,
            step: (per_second / WAKES_PER_SECOND).clamp(1, burst),
            timeout,
        })
    }
}

/// One client's bucket, and whether its input is being held back.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: Rate,
    /// Tokens at `at`; the time since `at` (less than one `interval` unless full) is on its way to
    /// the next token.
    tokens: u32,
    at: Instant,
    /// Since when its reads keep stopping at an empty bucket with input still waiting.
    held_since: Option<Instant>,
}

impl Bucket {
    /// A full bucket: a newcomer may send `burst` lines at once.
    pub fn new(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: rate.burst,
            at: now,
            held_since: None,
        }
    }

    /// How many lines the client may send now. A full bucket's clock stands still: its next
    /// token comes one interval after the first line it is allowed now.
    pub fn allowance(&mut self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.at);
        let interval = self.rate.interval.as_nanos().max(1);
        let earned = u32::try_from(elapsed.as_nanos() / interval).unwrap_or(u32::MAX);
        if earned >= self.rate.burst - self.tokens {
            self.tokens = self.rate.burst;
            self.at = now;
        } else if earned > 0 {
            self.tokens += earned;
            self.at += self.rate.interval * earned;
        }
        self.tokens
    }

    /// The client's read took `lines` lines (at most the allowance).
    pub fn spend(&mut self, lines: u32) {
        self.tokens = self.tokens.saturating_sub(lines);
    }

    /// Its read stopped at an empty bucket, with input perhaps still waiting: it is held back
    /// from now, unless it already was.
    pub fn hold(&mut self, now: Instant) {
        self.held_since.get_or_insert(now);
    }

    /// Its socket had nothing more within its allowance: whatever it sent is taken, it is held
    /// back no more.
    pub fn caught_up(&mut self) {
        self.held_since = None;
    }

    /// When to read a held client again: once `step` tokens are back, or when its flood timeout
    /// ends, whichever comes first.
    pub fn wake_at(&self) -> Instant {
        let missing = self.rate.step.saturating_sub(self.tokens);
        let refilled = self.at + self.rate.interval * missing;
        match self.held_since {
            Some(since) => refilled.min(since + self.rate.timeout),
            None => refilled,
        }
    }

    /// Whether it has been held back without a break for the whole `--flood-timeout` at `now`:
    /// it is flooding.
    pub fn is_overdue(&self, now: Instant) -> bool {
        self.held_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.rate.timeout)
    }
}

/// The fastest `--max-rate` taken: a token every microsecond.
pub const MAX_RATE: u32 = 1_000_000;
/// At fast rates, a held client is read again this many times a second, several lines at a time.
const WAKES_PER_SECOND: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate::new(per_second, burst, Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn zero_is_no_limit() {
        assert_eq!(Rate::new(0, 200, ms(10)), None);
    }

    /// A newcomer may send its whole burst at once, and not one line more.
    #[test]
    fn a_full_bucket_allows_the_burst_then_nothing() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(20, 200), t0);
        assert_eq!(bucket.allowance(t0), 200);
        bucket.spend(200);
        assert_eq!(bucket.allowance(t0), 0);
        assert_eq!(bucket.allowance(t0 + ms(49)), 0);
        // Full for a while before the burst: the time it stood full earns nothing.
        let later = t0 + Duration::from_secs(60);
        let mut idle = Bucket::new(rate(20, 200), t0);
        assert_eq!(idle.allowance(later), 200);
        idle.spend(200);
        assert_eq!(idle.allowance(later + ms(49)), 0);
    }

    /// Tokens come back at the rate, fractions of an interval are kept, and the bucket never
    /// holds more than the burst.
    #[test]
    fn tokens_come_back_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(20, 200), t0);
        bucket.spend(200);
        assert_eq!(bucket.allowance(t0 + ms(50)), 1);
        assert_eq!(bucket.allowance(t0 + ms(120)), 2);
        // The 20 ms left over from 120 ms count towards the next token.
        assert_eq!(bucket.allowance(t0 + ms(150)), 3);
        bucket.spend(3);
        assert_eq!(bucket.allowance(t0 + ms(150)), 0);
        assert_eq!(bucket.allowance(t0 + ms(1150)), 20);
        assert_eq!(bucket.allowance(t0 + Duration::from_secs(3600)), 200);
        // Full, the clock stands still: spending one brings it back one interval later.
        let t1 = t0 + Duration::from_secs(3600);
        bucket.spend(1);
        assert_eq!(bucket.allowance(t1 + ms(49)), 199);
        assert_eq!(bucket.allowance(t1 + ms(50)), 200);
    }

    /// Over a long run a client sending flat out gets burst + rate x time lines, no more.
    #[test]
    fn a_steady_flood_gets_the_burst_plus_the_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(20, 200), t0);
        let mut taken = 0;
        for tick in 0..=10_000 {
            let now = t0 + ms(tick);
            let lines = bucket.allowance(now);
            bucket.spend(lines);
            taken += lines;
        }
        assert_eq!(taken, 200 + 20 * 10);
    }

    /// A held client is woken when its next token is back, and dropped only once it has been
    /// held for the whole timeout without catching up.
    #[test]
    fn held_past_the_timeout_without_a_break_is_a_flood() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(20, 200), t0);
        bucket.spend(200);
        bucket.hold(t0);
        assert_eq!(bucket.wake_at(), t0 + ms(50));
        // Each wake takes a token and finds more input waiting: still held, since t0.
        for tick in 1..200 {
            let now = t0 + ms(50 * tick);
            assert_eq!(bucket.allowance(now), 1);
            bucket.spend(1);
            bucket.hold(now);
            assert!(!bucket.is_overdue(now), "at {tick}");
        }
        let end = t0 + Duration::from_secs(10);
        assert!(bucket.wake_at() <= end);
        assert!(bucket.is_overdue(end));
        // A client that catches up starts afresh.
        bucket.caught_up();
        assert!(!bucket.is_overdue(end + Duration::from_secs(60)));
        bucket.hold(end);
        assert!(!bucket.is_overdue(end + ms(9999)));
        assert!(bucket.is_overdue(end + Duration::from_secs(10)));
    }

    /// The timeout wakes a held client even when its next tokens are further off.
    #[test]
    fn the_timeout_wakes_before_a_slow_refill() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(Rate::new(1, 5, ms(300)).unwrap(), t0);
        bucket.spend(5);
        bucket.hold(t0);
        assert_eq!(bucket.wake_at(), t0 + ms(300));
    }

    /// At a fast rate a held client is woken for several lines at a time, not for each.
    #[test]
    fn fast_rates_wake_for_several_lines_at_a_time() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(1000, 5000), t0);
        bucket.spend(5000);
        assert_eq!(bucket.wake_at(), t0 + ms(50));
        assert_eq!(bucket.allowance(t0 + ms(50)), 50);
        // A burst smaller than a step wakes when the bucket is full.
        let mut small = Bucket::new(rate(1000, 10), t0);
        small.spend(10);
        assert_eq!(small.wake_at(), t0 + ms(10));
        // The fastest rate still has an interval of a microsecond.
        let mut fastest = Bucket::new(rate(u32::MAX, 1), t0);
        fastest.spend(1);
        assert_eq!(fastest.allowance(t0 + Duration::from_micros(1)), 1);
    }
}
