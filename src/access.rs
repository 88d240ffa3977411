//! Who may connect: CIDR blocks, the `--allow`/`--deny` rules (ncat's: a host in both is denied;
//! with any allow, a host in none is refused), the console's bans, the count of connections per
//! address (`--max-per-ip`) and the connect rate per address (`--max-connect-rate`).
//!
//! An address is what the client's socket says, IPv4-mapped IPv6 (`::ffff:a.b.c.d`, a dual-stack
//! listener's IPv4 peer) taken as the IPv4 address it stands for, so IPv4 rules match it. For the
//! counts, an IPv4 client is its own address and an IPv6 client its /64: one machine usually holds
//! a whole /64, so counting single IPv6 addresses would count nothing.
//!
//! A leaf: it imports nothing of the crate's. Everything here is pure (the time is passed in) but
//! [`RuleSource::load`] (`access/files.rs`), which reads the two rule files the operator named.
//!
//! Deliberately not here: sockets, reports, or when a rule is checked (the loop does that right
//! after `accept`, before the connection has any buffer).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Instant;

/// A block of addresses, `ADDR/PREFIX`; a bare address is a block of one (/32 or /128). Kept with
/// the host bits cleared, and IPv4-mapped IPv6 blocks of /96 or longer as the IPv4 block they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// Why a CIDR could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    Address,
    Prefix,
    PrefixTooLong { max: u8 },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Address => write!(f, "not an IPv4 or IPv6 address"),
            CidrError::Prefix => write!(f, "the prefix length after / is not a number"),
            CidrError::PrefixTooLong { max } => write!(f, "the prefix length is more than {max}"),
        }
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Address)?;
        let max = max_prefix(addr);
        let prefix = match prefix {
            None => u16::from(max),
            // Digits only: `u16::from_str` would also take a leading `+`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u16>().map_err(|_| CidrError::Prefix)?
            }
            Some(_) => return Err(CidrError::Prefix),
        };
        match u8::try_from(prefix) {
            Ok(prefix) if prefix <= max => Ok(Cidr::new(addr, prefix)),
            _ => Err(CidrError::PrefixTooLong { max }),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Cidr {
    /// The block of `prefix` bits around `addr`; `prefix` is at most the address's length.
    fn new(addr: IpAddr, prefix: u8) -> Cidr {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => (
                IpAddr::V4(Ipv4Addr::from_bits(v6.to_bits() as u32)),
                prefix - 96,
            ),
            addr => (addr, prefix),
        };
        let net = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask32(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask128(prefix))),
        };
        Cidr { net, prefix }
    }

    /// The one address `ip` as a block (/32 or /128).
    pub fn host(ip: IpAddr) -> Cidr {
        let ip = canonical(ip);
        Cidr::new(ip, max_prefix(ip))
    }

    /// What a client at `ip` is counted as: its IPv4 address, or its IPv6 /64.
    pub fn bucket(ip: IpAddr) -> Cidr {
        match canonical(ip) {
            ip @ IpAddr::V4(_) => Cidr::new(ip, 32),
            ip @ IpAddr::V6(_) => Cidr::new(ip, 64),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                ip.to_bits() & mask32(self.prefix) == net.to_bits()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                ip.to_bits() & mask128(self.prefix) == net.to_bits()
            }
            _ => false,
        }
    }
}

/// `ip`, with an IPv4-mapped IPv6 address taken as the IPv4 address it stands for.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        ip => ip,
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// The `--allow` and `--deny` blocks, from the command line and the files together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub allow: Blocks,
    pub deny: Blocks,
}

impl Rules {
    /// ncat's rule: denied if in any deny block (even if also allowed); else admitted if no allow
    /// is given or it is in an allow block.
    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.deny.contains(ip) {
            return false;
        }
        self.allow.is_empty() || self.allow.contains(ip)
    }
}

/// A list of blocks, indexed for matching: one set of networks per prefix length in use, so a
/// check costs one hash lookup per distinct length (a handful), however long the list (a
/// blocklist of a million addresses is one length).
#[derive(Debug, Clone, Default)]
pub struct Blocks {
    list: Vec<Cidr>,
    /// (IPv4?, prefix length, the networks' bits).
    sets: Vec<(bool, u8, HashSet<u128>)>,
}

impl From<Vec<Cidr>> for Blocks {
    fn from(list: Vec<Cidr>) -> Blocks {
        let mut sets: Vec<(bool, u8, HashSet<u128>)> = Vec::new();
        for cidr in &list {
            let (v4, bits) = family_bits(cidr.net);
            match sets
                .iter_mut()
                .find(|(f, p, _)| (*f, *p) == (v4, cidr.prefix))
            {
                Some((_, _, set)) => {
                    set.insert(bits);
                }
                None => sets.push((v4, cidr.prefix, HashSet::from([bits]))),
            }
        }
        Blocks { list, sets }
    }
}

impl PartialEq for Blocks {
    fn eq(&self, other: &Blocks) -> bool {
        self.list == other.list
    }
}

impl Eq for Blocks {}

impl Blocks {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn as_slice(&self) -> &[Cidr] {
        &self.list
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v4, bits) = family_bits(canonical(ip));
        self.sets.iter().any(|&(family, prefix, ref set)| {
            if family != v4 {
                return false;
            }
            let mask = if v4 {
                u128::from(mask32(prefix))
            } else {
                mask128(prefix)
            };
            set.contains(&(bits & mask))
        })
    }
}

/// Whether `ip` is IPv4, and its bits.
fn family_bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (true, u128::from(v4.to_bits())),
        IpAddr::V6(v6) => (false, v6.to_bits()),
    }
}

/// Why a connection is turned away; `Display` is the report's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--allow`/`--deny`.
    Denied,
    /// A `/ban`.
    Banned,
    /// Over `--max-connect-rate`; `report` is set only for the first refusal of a run of them, so
    /// a reconnect loop costs the operator one line, not one per attempt.
    ConnectRate { report: bool },
    /// `--max-per-ip` connections from its address (or /64) are already seated.
    PerIp,
}

impl Refusal {
    /// Every reason's word, in the order `/stats` and `/metrics` count them.
    pub const NAMES: [&str; 4] = ["denied", "banned", "per-ip limit", "connect rate"];

    fn index(self) -> usize {
        match self {
            Refusal::Denied => 0,
            Refusal::Banned => 1,
            Refusal::PerIp => 2,
            Refusal::ConnectRate { .. } => 3,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Refusal::NAMES[self.index()])
    }
}

/// Everything that decides whether a new connection is let in.
#[derive(Debug, Default)]
pub struct Access {
    rules: Rules,
    /// Where `rules` came from, for [`Access::reload`].
    source: RuleSource,
    bans: Bans,
    /// `--max-per-ip`, and the seated connections per address (or /64); one entry per address
    /// with a client, so bounded by `--max-clients`.
    per_ip: Option<(u32, HashMap<Cidr, u32>)>,
    rate: Option<ConnectRate>,
    /// Refusals since start, by [`Refusal::index`].
    refused: [u64; Refusal::NAMES.len()],
}

impl Access {
    /// `rules` as read from `source` at start; `max_per_ip` and `connects_per_minute` if given.
    pub fn new(
        source: RuleSource,
        rules: Rules,
        max_per_ip: Option<u32>,
        connects_per_minute: Option<u32>,
    ) -> Access {
        Access {
            rules,
            source,
            bans: Bans::default(),
            per_ip: max_per_ip.map(|max| (max, HashMap::new())),
            rate: connects_per_minute.map(ConnectRate::new),
            refused: [0; Refusal::NAMES.len()],
        }
    }

    /// Reads the rule files again (`None` if there are none): the new rules replace the old
    /// ones whole, or, if a file is unreadable or has a bad entry, the old ones stay.
    pub fn reload(&mut self) -> Option<Result<&Rules, RuleError>> {
        if !self.source.has_files() {
            return None;
        }
        Some(self.source.load().map(|rules| {
            self.rules = rules;
            &self.rules
        }))
    }

    #[cfg(test)]
    fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    pub fn bans(&mut self) -> &mut Bans {
        &mut self.bans
    }

    /// Whether a connection from `ip` arriving at `now` may be seated. Checked in the order of
    /// cost to the server: the rules and bans, then the rate (which counts this attempt), then the
    /// connections already seated.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let verdict = self.judge(ip, now);
        if let Err(refusal) = verdict {
            self.refused[refusal.index()] += 1;
        }
        verdict
    }

    /// A connection let in before was refused after all (a guest at the gate when a `/ban` came).
    pub fn note_refused(&mut self, refusal: Refusal) {
        self.refused[refusal.index()] += 1;
    }

    /// Connections refused since start, by reason, in the order of [`Refusal::NAMES`] (each
    /// attempt, reported or not).
    pub fn refused(&self) -> [u64; Refusal::NAMES.len()] {
        self.refused
    }

    fn judge(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if !self.rules.admits(ip) {
            return Err(Refusal::Denied);
        }
        if self.bans.covers(ip, now) {
            return Err(Refusal::Banned);
        }
        if let Some(rate) = &mut self.rate {
            rate.check(ip, now)?;
        }
        if let Some((max, seated)) = &self.per_ip
            && seated.get(&Cidr::bucket(ip)).is_some_and(|n| n >= max)
        {
            return Err(Refusal::PerIp);
        }
        Ok(())
    }

    /// A connection from `ip` was seated.
    pub fn seated(&mut self, ip: IpAddr) {
        if let Some((_, seated)) = &mut self.per_ip {
            *seated.entry(Cidr::bucket(ip)).or_default() += 1;
        }
    }

    /// A seated connection from `ip` is gone.
    pub fn left(&mut self, ip: IpAddr) {
        if let Some((_, seated)) = &mut self.per_ip {
            let bucket = Cidr::bucket(ip);
            if let Some(n) = seated.get_mut(&bucket) {
                *n -= 1;
                if *n == 0 {
                    seated.remove(&bucket);
                }
            }
        }
    }
}

mod files;
mod limits;

pub use files::{RuleError, RuleSource, parse_list};
pub use limits::Bans;
use limits::ConnectRate;

#[cfg(test)]
mod tests;
