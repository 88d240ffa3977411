//! Nicknames in the `--relay` room: which names a member may take, who holds each one, and the
//! names held for a minute for the address that just left with them.
//!
//! A name is 1 to 32 ASCII letters, digits, `_` or `-`, and two names that differ only in ASCII
//! case are the same name. ASCII only is the whole defence against look-alikes: no letter of
//! another script can be in a name, so `ѕerver` (with a Cyrillic `ѕ`) is refused, never taken for
//! `server`. Every claim and release goes through [`Names`], so a registry shared by several
//! servers has one place to hook into.
//!
//! Deliberately not here: the room's lines, announcements and reports (`chat.rs`, `room.rs`), and
//! the clock: callers pass `now`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ids::ConnId;

/// Whether `name` may be a nickname: 1 to 32 ASCII letters, digits, `_` or `-`.
pub fn valid(name: &[u8]) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Names no member may take: the room speaks as `server`.
pub fn reserved(name: &str) -> bool {
    name.eq_ignore_ascii_case("server")
}

/// Where a member sits: its slot and its never-reused id.
pub type Seat = (usize, ConnId);

/// Why a name could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not 1 to 32 ASCII letters, digits, `_` or `-`.
    Invalid,
    /// Another member has it, or it is `server`.
    Taken,
    /// Its last holder left less than `HOLD` ago from another address.
    Held,
}

/// The names in use and the names held after a leave.
#[derive(Debug, Default)]
pub struct Names {
    /// Every name in use, in lower case, with the seat of the member that has it. At most one
    /// entry per member: a rename releases the old name.
    taken: HashMap<Box<str>, Seat>,
    /// Names asked for across instances (`--bus`) and not answered yet, with the seat that asked:
    /// nobody else here may take them meanwhile, and they are nobody's name yet.
    pending: HashMap<Box<str>, Seat>,
    /// Names freed by a leave, in lower case, with the address that had them and until when only
    /// that address may take them back.
    held: HashMap<Box<str>, Hold>,
    /// The same holds in the order they began (all last `HOLD`, so the front ends first); a name
    /// freed twice is here twice, and only the entry whose time matches `held` ends its hold.
    order: VecDeque<(Box<str>, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    from: IpAddr,
    until: Instant,
}

impl Names {
    /// Member `seat`, from address `from` and called `old`, takes the name `new` at `now`; its old
    /// name is free from then on. Renaming to one's own name in another case is allowed; so is
    /// taking a name the member has reserved.
    pub fn claim(
        &mut self,
        seat: Seat,
        old: &str,
        new: &str,
        from: IpAddr,
        now: Instant,
    ) -> Result<(), Refused> {
        let key = self.check(seat, new, from, now)?;
        if !old.eq_ignore_ascii_case(new) {
            self.free(seat.1, old);
        }
        self.pending.remove(&key);
        self.taken.insert(key, seat);
        Ok(())
    }

    /// Member `seat` asks for `new` while other instances are asked too (`--bus`): checked as
    /// `claim` checks, then kept aside, so that nobody here takes it meanwhile, while the member
    /// keeps its old name (and `/msg` finds it by that one). `claim` then takes it, or
    /// `unreserve` lets it go.
    pub fn reserve(
        &mut self,
        seat: Seat,
        new: &str,
        from: IpAddr,
        now: Instant,
    ) -> Result<(), Refused> {
        let key = self.check(seat, new, from, now)?;
        self.pending.insert(key, seat);
        Ok(())
    }

    /// Lets go of what member `id` reserved as `name` (refused elsewhere, or the member left).
    pub fn unreserve(&mut self, id: ConnId, name: &str) {
        let key = fold(name);
        if self
            .pending
            .get(&key)
            .is_some_and(|&(_, holder)| holder == id)
        {
            self.pending.remove(&key);
        }
    }

    /// Whether member `seat`, from `from`, may take `new` at `now`: its folded key if so (a hold
    /// for its own address ends: the hold has done its work).
    fn check(
        &mut self,
        seat: Seat,
        new: &str,
        from: IpAddr,
        now: Instant,
    ) -> Result<Box<str>, Refused> {
        if !valid(new.as_bytes()) {
            return Err(Refused::Invalid);
        }
        if reserved(new) {
            return Err(Refused::Taken);
        }
        let key = fold(new);
        let other = |holder: Option<&Seat>| holder.is_some_and(|&holder| holder != seat);
        if other(self.taken.get(&key)) || other(self.pending.get(&key)) {
            return Err(Refused::Taken);
        }
        self.expire(now);
        if let Some(hold) = self.held.get(&key) {
            if hold.from != from {
                return Err(Refused::Held);
            }
            self.held.remove(&key);
        }
        Ok(key)
    }

    /// Member `id`, called `name`, left from address `from` at `now`: the name is free, but for
    /// `HOLD` only `from` may take it. (A `#<id>` name is nobody's to hold.)
    pub fn release(&mut self, id: ConnId, name: &str, from: IpAddr, now: Instant) {
        if !self.free(id, name) {
            return;
        }
        self.expire(now);
        if self.order.len() >= MAX_HELD {
            // Bounded memory whatever the churn: the oldest hold ends early.
            self.end_oldest();
        }
        let key = fold(name);
        let until = now + HOLD;
        self.held.insert(key.clone(), Hold { from, until });
        self.order.push_back((key, until));
    }

    /// The seat of the member called `name` (in any case), if one is.
    pub fn holder(&self, name: &str) -> Option<Seat> {
        self.taken.get(&*fold(name)).copied()
    }

    /// Takes `name` off member `id` without a hold (a name it waited for and did not get, or lost
    /// to another instance).
    pub fn forget(&mut self, id: ConnId, name: &str) {
        self.free(id, name);
    }

    /// Takes `name` off member `id`, if it is the one that has it; says whether it was.
    fn free(&mut self, id: ConnId, name: &str) -> bool {
        let key = fold(name);
        match self.taken.get(&key) {
            Some(&(_, holder)) if holder == id => self.taken.remove(&key).is_some(),
            _ => false,
        }
    }

    /// Ends every hold due by `now`.
    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(_, until)| *until <= now) {
            self.end_oldest();
        }
    }

    fn end_oldest(&mut self) {
        if let Some((key, until)) = self.order.pop_front()
            && self.held.get(&key).is_some_and(|hold| hold.until == until)
        {
            self.held.remove(&key);
        }
    }
}

/// A name as names are compared: in ASCII lower case.
fn fold(name: &str) -> Box<str> {
    name.to_ascii_lowercase().into_boxed_str()
}

const MAX_NAME: usize = 32;
/// How long a name freed by a leave stays its last address's.
pub const HOLD: Duration = Duration::from_secs(60);
/// The most names held at once: past it, the oldest hold ends early.
const MAX_HELD: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn seat(n: u64) -> Seat {
        (n as usize, ConnId(n))
    }

    #[test]
    fn checks_names() {
        assert!(valid(b"bob_the-2nd"));
        assert!(valid(&[b'a'; 32]));
        assert!(!valid(&[b'a'; 33]));
        assert!(!valid(b""));
        assert!(!valid(b"bob smith"));
        assert!(!valid(b"#3"));
        assert!(!valid("bøb".as_bytes()));
        assert!(!valid("小明".as_bytes()));
        // A Cyrillic `ѕ` (U+0455) is no ASCII letter: `ѕerver` can never pass for `server`.
        assert!(!valid("ѕerver".as_bytes()));
        assert!(reserved("Server"));
    }

    #[test]
    fn a_name_is_one_members_in_any_case() {
        let (mut names, now) = (Names::default(), Instant::now());
        assert_eq!(names.claim(seat(1), "#1", "alice", HOME, now), Ok(()));
        assert_eq!(
            names.claim(seat(2), "#2", "ALICE", HOME, now),
            Err(Refused::Taken)
        );
        assert_eq!(
            names.claim(seat(2), "#2", "server", HOME, now),
            Err(Refused::Taken)
        );
        assert_eq!(
            names.claim(seat(2), "#2", "ѕerver", HOME, now),
            Err(Refused::Invalid)
        );
        assert_eq!(names.holder("Alice"), Some(seat(1)));
        // Her own name in another case, then a new one: the old one is free at once.
        assert_eq!(names.claim(seat(1), "alice", "Alice", HOME, now), Ok(()));
        assert_eq!(names.holder("alice"), Some(seat(1)));
        assert_eq!(names.claim(seat(1), "Alice", "alicia", HOME, now), Ok(()));
        assert_eq!(names.holder("alice"), None);
        assert_eq!(names.claim(seat(2), "#2", "alice", AWAY, now), Ok(()));
    }

    /// A name asked of the other instances (`--bus`) is nobody's yet, and nobody else's here
    /// either; granted, it is taken and the old one freed; refused, it is free again.
    #[test]
    fn a_reserved_name_waits_for_the_answer() {
        let (mut names, now) = (Names::default(), Instant::now());
        assert_eq!(names.claim(seat(1), "#1", "alice", HOME, now), Ok(()));
        assert_eq!(names.reserve(seat(1), "bob", HOME, now), Ok(()));
        assert_eq!(names.holder("bob"), None, "not hers until granted");
        assert_eq!(
            names.holder("alice"),
            Some(seat(1)),
            "still alice meanwhile"
        );
        assert_eq!(
            names.claim(seat(2), "#2", "BOB", HOME, now),
            Err(Refused::Taken)
        );
        assert_eq!(
            names.reserve(seat(2), "bob", HOME, now),
            Err(Refused::Taken)
        );
        // A second /nick before the first is answered: both wait, each on its own answer.
        assert_eq!(names.reserve(seat(1), "carol", HOME, now), Ok(()));
        names.unreserve(seat(1).1, "carol");
        assert_eq!(names.claim(seat(2), "#2", "carol", HOME, now), Ok(()));
        // Granted: bob is hers, alice free.
        assert_eq!(names.claim(seat(1), "alice", "bob", HOME, now), Ok(()));
        assert_eq!(names.holder("bob"), Some(seat(1)));
        assert_eq!(names.holder("alice"), None);
        // Someone else's unreserve does nothing.
        assert_eq!(names.reserve(seat(1), "dave", HOME, now), Ok(()));
        names.unreserve(seat(2).1, "dave");
        assert_eq!(
            names.reserve(seat(2), "dave", HOME, now),
            Err(Refused::Taken)
        );
    }

    #[test]
    fn a_name_left_with_is_held_for_its_address_for_a_minute() {
        let (mut names, now) = (Names::default(), Instant::now());
        names.claim(seat(1), "#1", "alice", HOME, now).unwrap();
        names.release(ConnId(1), "alice", HOME, now);
        assert_eq!(names.holder("alice"), None);
        let soon = now + HOLD - Duration::from_millis(1);
        assert_eq!(
            names.claim(seat(2), "#2", "Alice", AWAY, soon),
            Err(Refused::Held)
        );
        // After the minute anyone may take it.
        assert_eq!(
            names.claim(seat(2), "#2", "alice", AWAY, now + HOLD),
            Ok(())
        );
        assert_eq!(names.held.len(), 0);

        // Her own address takes it back at once, and its hold is over.
        names.release(ConnId(2), "alice", AWAY, now + HOLD);
        assert_eq!(
            names.claim(seat(3), "#3", "alice", AWAY, now + HOLD),
            Ok(())
        );
        assert_eq!(names.held.len(), 0);
    }

    #[test]
    fn a_name_left_with_twice_is_held_from_the_second_leave() {
        let (mut names, now) = (Names::default(), Instant::now());
        names.claim(seat(1), "#1", "bob", HOME, now).unwrap();
        names.release(ConnId(1), "bob", HOME, now);
        let later = now + HOLD / 2;
        names.claim(seat(2), "#2", "bob", HOME, later).unwrap();
        names.release(ConnId(2), "bob", HOME, later);
        // The first leave's entry ends, but not the second's hold.
        assert_eq!(
            names.claim(seat(3), "#3", "bob", AWAY, now + HOLD),
            Err(Refused::Held)
        );
        assert_eq!(
            names.claim(seat(3), "#3", "bob", AWAY, later + HOLD),
            Ok(())
        );
    }

    #[test]
    fn unnamed_and_stale_releases_hold_nothing() {
        let (mut names, now) = (Names::default(), Instant::now());
        names.release(ConnId(1), "#1", HOME, now);
        names.claim(seat(2), "#2", "carol", HOME, now).unwrap();
        // Not the holder: nothing happens.
        names.release(ConnId(3), "carol", HOME, now);
        assert_eq!(names.holder("carol"), Some(seat(2)));
        assert_eq!(names.held.len(), 0);
    }

    #[test]
    fn holds_are_bounded_whatever_the_churn() {
        let (mut names, now) = (Names::default(), Instant::now());
        for n in 0..(MAX_HELD as u64 + 500) {
            let name = format!("n{n}");
            names.claim(seat(n), "#0", &name, HOME, now).unwrap();
            names.release(ConnId(n), &name, HOME, now);
        }
        assert_eq!(names.held.len(), MAX_HELD);
        assert!(names.order.len() <= MAX_HELD);
        // The oldest holds ended early; the newest still hold.
        assert_eq!(names.claim(seat(1), "#1", "n0", AWAY, now), Ok(()));
        let newest = format!("n{}", MAX_HELD + 499);
        assert_eq!(
            names.claim(seat(2), "#2", &newest, AWAY, now),
            Err(Refused::Held)
        );
    }
}
