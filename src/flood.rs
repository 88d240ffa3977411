//! Flood control: a token bucket on what a client sends, lines and bytes (`--max-rate`,
//! `--burst`), and the rule that ends a flood (`--flood-timeout`).
//!
//! A client may send `burst` lines and `burst` KiB at once, then `rate` lines and `rate` KiB a
//! second. Past either, its socket is left unread (the kernel's window then makes the sender wait:
//! nothing is lost or reordered) until the bucket has tokens again; a client held back without a
//! break for the whole timeout is flooding, and the loop drops it.
//!
//! Two counts, refilled by one clock: lines, because each costs the room a fan-out whatever its
//! size, and bytes, because a line may be up to `--max-line` long (and what is cut off a longer
//! one, or an unfinished line, is read all the same). Counting lines alone let 200 lines of 64 KiB
//! through as one burst: 13 MB, enough to drop every member that reads at a normal pace `slow`.
//! A KiB a token keeps a person's paste (a screenful is 200 lines of 80 bytes, 16 KB) within the
//! line count, and a whole `--max-line` line (64 KiB) within the default burst's 200 KiB.
//!
//! Pure: no I/O and no clock. The caller passes `now`, reads no more than the allowance, spends
//! what it read, and says when a read stopped at an empty bucket (`hold`) or emptied the socket
//! (`caught_up`). Deliberately not here: reading, timers, or what dropping a client involves.

use std::time::{Duration, Instant};

/// `--max-rate`, `--burst` and `--flood-timeout`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// One token's worth of time: a line and `BYTES_PER_TOKEN` bytes come back this often.
    interval: Duration,
    /// The most line tokens the bucket holds (and KiB of byte tokens): what a client may send at
    /// once.
    burst: u32,
    /// How many tokens a held client waits for before it is read again: enough that a fast rate
    /// does not wake the loop for every line (at most `WAKES_PER_SECOND` times a second).
    step: u32,
    /// How long a client may be held back without a break before it is dropped.
    timeout: Duration,
}

impl Rate {
    /// `per_second` lines (and KiB) a second after `burst` at once (both at least 1), or `None`
    /// when `per_second` is 0 (no limit).
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

    /// The most byte tokens the bucket holds.
    fn burst_bytes(&self) -> u64 {
        u64::from(self.burst) * BYTES_PER_TOKEN
    }
}

/// What a client may send now: the read takes no more lines, nor bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub lines: usize,
    pub bytes: usize,
}

impl Allowance {
    /// Whether it may send nothing: one of the two counts is spent.
    pub fn is_spent(&self) -> bool {
        self.lines == 0 || self.bytes == 0
    }
}

/// One client's bucket, and whether its input is being held back.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: Rate,
    /// Line tokens at `at`, at most `burst`.
    lines: u32,
    /// Byte tokens at `at`, at most `burst` KiB. Both counts earn a token (a KiB for this one)
    /// each `interval` since `at` (less than one `interval` ago unless both are full).
    bytes: u64,
    at: Instant,
    /// Since when its reads keep stopping at an empty bucket with input still waiting.
    held_since: Option<Instant>,
}

impl Bucket {
    /// A full bucket: a newcomer may send `burst` lines (and KiB) at once.
    pub fn new(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            rate,
            lines: rate.burst,
            bytes: rate.burst_bytes(),
            at: now,
            held_since: None,
        }
    }

    /// How many lines and bytes the client may send now. A full bucket's clock stands still:
    /// its next token comes one interval after the first it spends now.
    pub fn allowance(&mut self, now: Instant) -> Allowance {
        let elapsed = now.saturating_duration_since(self.at);
        let interval = self.rate.interval.as_nanos().max(1);
        let earned = u32::try_from(elapsed.as_nanos() / interval).unwrap_or(u32::MAX);
        if earned > 0 {
            let full_bytes = self.rate.burst_bytes();
            let missing_bytes = (full_bytes - self.bytes).div_ceil(BYTES_PER_TOKEN);
            let missing = u64::from(self.rate.burst - self.lines).max(missing_bytes);
            if u64::from(earned) >= missing {
                self.lines = self.rate.burst;
                self.bytes = full_bytes;
                self.at = now;
            } else {
                self.lines = self.lines.saturating_add(earned).min(self.rate.burst);
                self.bytes = (self.bytes + u64::from(earned) * BYTES_PER_TOKEN).min(full_bytes);
                self.at += self.rate.interval * earned;
            }
        }
        Allowance {
            lines: self.lines as usize,
            bytes: usize::try_from(self.bytes).unwrap_or(usize::MAX),
        }
    }

    /// The client's read took `lines` lines and `bytes` bytes (at most the allowance).
    pub fn spend(&mut self, lines: usize, bytes: usize) {
        let lines = u32::try_from(lines).unwrap_or(u32::MAX);
        self.lines = self.lines.saturating_sub(lines);
        self.bytes = self.bytes.saturating_sub(bytes as u64);
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

    /// Whether it is held back: input may wait unread in its socket.
    pub fn is_held(&self) -> bool {
        self.held_since.is_some()
    }

    /// When to read a held client again: once both counts have `step` tokens back, or when its
    /// flood timeout ends, whichever comes first.
    pub fn wake_at(&self) -> Instant {
        let step = self.rate.step;
        let missing_bytes = (u64::from(step) * BYTES_PER_TOKEN)
            .saturating_sub(self.bytes)
            .div_ceil(BYTES_PER_TOKEN);
        let missing = step.saturating_sub(self.lines).max(missing_bytes as u32);
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
/// The bytes one byte token stands for: the bucket holds `burst` KiB and earns `rate` KiB a
/// second, whatever the lines they make.
pub const BYTES_PER_TOKEN: u64 = 1024;
/// At fast rates, a held client is read again this many times a second, several lines at a time.
const WAKES_PER_SECOND: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The lines it may send now (the tests of lines spend no bytes).
    fn lines(bucket: &mut Bucket, now: Instant) -> u32 {
        bucket.allowance(now).lines as u32
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
        assert_eq!(lines(&mut bucket, t0), 200);
        bucket.spend(200, 0);
        assert_eq!(lines(&mut bucket, t0), 0);
        assert_eq!(lines(&mut bucket, t0 + ms(49)), 0);
        // Full for a while before the burst: the time it stood full earns nothing.
        let later = t0 + Duration::from_secs(60);
        let mut idle = Bucket::new(rate(20, 200), t0);
        assert_eq!(lines(&mut idle, later), 200);
        idle.spend(200, 0);
        assert_eq!(lines(&mut idle, later + ms(49)), 0);
    }

    /// Tokens come back at the rate, fractions of an interval are kept, and the bucket never
    /// holds more than the burst.
    #[test]
    fn tokens_come_back_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(20, 200), t0);
        bucket.spend(200, 0);
        assert_eq!(lines(&mut bucket, t0 + ms(50)), 1);
        assert_eq!(lines(&mut bucket, t0 + ms(120)), 2);
        // The 20 ms left over from 120 ms count towards the next token.
        assert_eq!(lines(&mut bucket, t0 + ms(150)), 3);
        bucket.spend(3, 0);
        assert_eq!(lines(&mut bucket, t0 + ms(150)), 0);
        assert_eq!(lines(&mut bucket, t0 + ms(1150)), 20);
        assert_eq!(lines(&mut bucket, t0 + Duration::from_secs(3600)), 200);
        // Full, the clock stands still: spending one brings it back one interval later.
        let t1 = t0 + Duration::from_secs(3600);
        bucket.spend(1, 0);
        assert_eq!(lines(&mut bucket, t1 + ms(49)), 199);
        assert_eq!(lines(&mut bucket, t1 + ms(50)), 200);
    }

    /// Over a long run a client sending flat out gets burst + rate x time lines, no more.
    #[test]
    fn a_steady_flood_gets_the_burst_plus_the_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(20, 200), t0);
        let mut taken = 0;
        for tick in 0..=10_000 {
            let now = t0 + ms(tick);
            let lines = lines(&mut bucket, now);
            bucket.spend(lines as usize, 0);
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
        bucket.spend(200, 0);
        bucket.hold(t0);
        assert_eq!(bucket.wake_at(), t0 + ms(50));
        // Each wake takes a token and finds more input waiting: still held, since t0.
        for tick in 1..200 {
            let now = t0 + ms(50 * tick);
            assert_eq!(lines(&mut bucket, now), 1);
            bucket.spend(1, 0);
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
        bucket.spend(5, 0);
        bucket.hold(t0);
        assert_eq!(bucket.wake_at(), t0 + ms(300));
    }

    /// At a fast rate a held client is woken for several lines at a time, not for each.
    #[test]
    fn fast_rates_wake_for_several_lines_at_a_time() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(1000, 5000), t0);
        bucket.spend(5000, 0);
        assert_eq!(bucket.wake_at(), t0 + ms(50));
        assert_eq!(lines(&mut bucket, t0 + ms(50)), 50);
        // A burst smaller than a step wakes when the bucket is full.
        let mut small = Bucket::new(rate(1000, 10), t0);
        small.spend(10, 0);
        assert_eq!(small.wake_at(), t0 + ms(10));
        // The fastest rate still has an interval of a microsecond.
        let mut fastest = Bucket::new(rate(u32::MAX, 1), t0);
        fastest.spend(1, 0);
        assert_eq!(lines(&mut fastest, t0 + Duration::from_micros(1)), 1);
    }

    /// The hostile tester's flood: 200 lines of 64 KiB are within the line count, not the bytes.
    /// The default burst takes three of them at once, then the bucket is spent with most lines
    /// left; what comes back is a KiB an interval.
    #[test]
    fn long_lines_are_held_back_by_their_bytes() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(20, 200), t0);
        let burst = bucket.allowance(t0);
        assert_eq!(
            burst,
            Allowance {
                lines: 200,
                bytes: 200 * 1024
            }
        );
        let line = 64 * 1024 + 1;
        bucket.spend(3, 3 * line);
        let left = bucket.allowance(t0);
        assert_eq!(
            left,
            Allowance {
                lines: 197,
                bytes: 200 * 1024 - 3 * line
            }
        );
        // The read takes what is left of the fourth line; the rest waits.
        bucket.spend(0, left.bytes);
        assert!(bucket.allowance(t0).is_spent());
        assert!(bucket.allowance(t0 + ms(49)).is_spent());
        assert_eq!(bucket.allowance(t0 + ms(50)).bytes, 1024);
        assert_eq!(bucket.allowance(t0 + ms(1000)).bytes, 20 * 1024);
    }

    /// What people send is within the burst at once: a screenful of 200 lines of 80 bytes, or
    /// a few long lines of some KiB, or one line as long as the default `--max-line`.
    #[test]
    fn a_paste_is_never_held_back() {
        let t0 = Instant::now();
        for (lines, each) in [(200, 81), (5, 4096), (1, 64 * 1024)] {
            let mut bucket = Bucket::new(rate(20, 200), t0);
            let allowance = bucket.allowance(t0);
            assert!(allowance.lines >= lines && allowance.bytes >= lines * each);
        }
    }

    /// Bytes spent in any amounts come back a KiB an interval; the clock stands still only once
    /// both counts are full.
    #[test]
    fn bytes_come_back_a_kib_an_interval_up_to_the_burst() {
        let t0 = Instant::now();
        let full = Allowance {
            lines: 200,
            bytes: 200 * 1024,
        };
        let mut bucket = Bucket::new(rate(20, 200), t0);
        bucket.spend(1, 1500);
        assert_eq!(bucket.allowance(t0 + ms(49)).bytes, 200 * 1024 - 1500);
        // The line is back, the bytes not yet all: the clock goes on.
        assert_eq!(
            bucket.allowance(t0 + ms(50)),
            Allowance {
                lines: 200,
                bytes: 200 * 1024 - 476
            }
        );
        assert_eq!(bucket.allowance(t0 + ms(99)).bytes, 200 * 1024 - 476);
        assert_eq!(bucket.allowance(t0 + ms(100)), full);
        // Full at 100 ms: spending one byte brings it back one interval later.
        bucket.spend(0, 1);
        assert_eq!(bucket.allowance(t0 + ms(149)).bytes, 200 * 1024 - 1);
        assert_eq!(bucket.allowance(t0 + ms(150)), full);
    }

    /// Over a long run a client sending one endless line flat out (no newline: an unfinished
    /// line costs its bytes as they are read) gets the burst's KiB plus the rate's, no more.
    #[test]
    fn a_steady_stream_of_bytes_gets_the_burst_plus_the_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(20, 200), t0);
        let mut taken = 0;
        for tick in 0..=10_000 {
            let bytes = bucket.allowance(t0 + ms(tick)).bytes.min(700);
            bucket.spend(0, bytes);
            taken += bytes;
        }
        // Taken, or earned and still to take (reads of 700 bytes lag behind the last KiB).
        let left = bucket.allowance(t0 + ms(10_000)).bytes;
        assert!(left < 1024);
        assert_eq!(taken + left, (200 + 20 * 10) * 1024);
    }

    /// A client held on its bytes, with lines to spare, is woken when `step` KiB are back.
    #[test]
    fn a_client_held_on_its_bytes_wakes_when_they_are_back() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(rate(20, 200), t0);
        bucket.spend(1, 200 * 1024);
        bucket.hold(t0);
        assert!(bucket.is_held());
        assert_eq!(bucket.wake_at(), t0 + ms(50));
        let mut fast = Bucket::new(rate(1000, 5000), t0);
        fast.spend(0, 5000 * 1024 - 100);
        assert_eq!(fast.wake_at(), t0 + ms(50));
        assert_eq!(fast.allowance(t0 + ms(50)).bytes, 100 + 50 * 1024);
    }
}
