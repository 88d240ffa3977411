//! What changes while chatd runs: the console's bans and the connect-rate table.
//!
//! Deliberately not here: the rules and the checking order (`access.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{Cidr, Refusal};

/// The console's bans: each a block and when it ends (`None`: never). Only the operator adds
/// them, so the list is as long as the operator makes it; expired bans go at the next look.
#[derive(Debug, Default)]
pub struct Bans {
    list: Vec<Ban>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    pub cidr: Cidr,
    pub until: Option<Instant>,
}

impl Bans {
    /// Bans `cidr` until `until` (forever with `None`), replacing a ban on the same block.
    pub fn add(&mut self, cidr: Cidr, until: Option<Instant>) {
        self.list.retain(|ban| ban.cidr != cidr);
        self.list.push(Ban { cidr, until });
    }

    /// Lifts the ban on exactly `cidr`; whether there was one.
    pub fn remove(&mut self, cidr: Cidr) -> bool {
        let before = self.list.len();
        self.list.retain(|ban| ban.cidr != cidr);
        self.list.len() != before
    }

    /// The bans still in force at `now`, oldest first.
    pub fn current(&mut self, now: Instant) -> &[Ban] {
        self.list
            .retain(|ban| ban.until.is_none_or(|until| until > now));
        &self.list
    }

    pub(super) fn covers(&mut self, ip: IpAddr, now: Instant) -> bool {
        !self.list.is_empty() && self.current(now).iter().any(|ban| ban.cidr.contains(ip))
    }
}

/// `--max-connect-rate`: at most N connections a minute per address (or /64), as the generic cell
/// rate algorithm counts them: a burst of N, then one every minute / N. Each address is one
/// instant, its "theoretical arrival time"; an address whose instant has passed is as good as
/// new, so it need not be kept.
///
/// Memory is bounded whatever a scanner does: the table is two generations of at most
/// `RATE_TABLE_GENERATION` addresses each. A minute after it started, or when it is full, the
/// current one becomes the previous one and the previous one is forgotten. An address not seen
/// for a minute is good as new anyway, so rotating on time forgets nothing that matters; rotating
/// because the table is full (more than that many addresses within a minute) may forget an
/// address over the rate, which can then connect again: the table fails open, never grows.
#[derive(Debug)]
pub(super) struct ConnectRate {
    /// Minute / N: how far one connection moves an address's instant.
    interval: Duration,
    pub(super) current: HashMap<Cidr, Arrival>,
    pub(super) previous: HashMap<Cidr, Arrival>,
    rotated: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Arrival {
    /// When the address would be back to a full burst.
    at: Instant,
    /// Whether its last attempt was refused (and reported).
    refused: bool,
}

impl ConnectRate {
    pub(super) fn new(per_minute: u32) -> ConnectRate {
        ConnectRate {
            interval: RATE_WINDOW / per_minute.max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
            rotated: None,
        }
    }

    pub(super) fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let stale = self
            .rotated
            .is_none_or(|at| now.saturating_duration_since(at) >= RATE_WINDOW);
        if stale || self.current.len() >= RATE_TABLE_GENERATION {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = Some(now);
        }
        let key = Cidr::bucket(ip);
        let known = match self.current.get(&key) {
            Some(&arrival) => Some(arrival),
            None => self.previous.remove(&key),
        };
        let mut arrival = known.unwrap_or(Arrival {
            at: now,
            refused: false,
        });
        let at = arrival.at.max(now);
        // Let in while this connection keeps the address within one minute's worth of credit.
        let verdict = if (at + self.interval).saturating_duration_since(now) <= RATE_WINDOW {
            arrival = Arrival {
                at: at + self.interval,
                refused: false,
            };
            Ok(())
        } else {
            let report = !arrival.refused;
            arrival.refused = true;
            Err(Refusal::ConnectRate { report })
        };
        self.current.insert(key, arrival);
        verdict
    }
}

/// The rate's period: `--max-connect-rate` counts connections a minute.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses the rate table keeps per generation (two are kept): about 40 bytes each in the map.
pub(super) const RATE_TABLE_GENERATION: usize = 32 * 1024;
