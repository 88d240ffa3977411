//! What this instance knows of the others in the room: per node, the last frame number seen (so
//! that a lost frame is a reported gap, never silent), its member count, when it was last heard
//! from, and the names of its members seen so far.
//!
//! A node not heard from for `NODE_TTL` (three of its beats missed) counts no more: its members
//! leave the global count and `/who`. One heard from again (or first heard from by a frame that is
//! not its `hello` or `roll`) has members this instance does not know of: the room is asked for
//! its rolls (`wants_roll`), at most once a `BEAT`. Pure: the caller passes the time.
//!
//! Deliberately not here: the connection (`bus/link.rs`) or what a frame says to members.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::wire::{Frame, What};

/// The other instances of the room, as their frames tell.
#[derive(Debug, Default)]
pub struct Nodes {
    nodes: HashMap<String, Node>,
    /// When this instance last said `hello` (asked every instance for its roll).
    hello: Option<Instant>,
}

#[derive(Debug)]
struct Node {
    seq: u64,
    online: u64,
    seen: Instant,
    /// Its members seen so far (joins, renames, messages), by `#id`, until they leave.
    names: BTreeMap<u64, String>,
    /// Heard from after it was forgotten (or first by a frame other than its `hello` or `roll`),
    /// and not asked for its roll since: `names` may lack members that said nothing since.
    unrolled: bool,
}

/// How a frame's number follows the node's last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next one, or the first heard from that node.
    InOrder,
    /// Frames `from..=to` never arrived.
    Gap { from: u64, to: u64 },
    /// The number went back: the node started again; nothing is known of what it lost.
    Restarted,
    /// Past `MAX_NODES`: ignored.
    TooMany,
}

impl Nodes {
    /// Takes in a frame heard at `now`.
    pub fn see(&mut self, frame: &Frame, now: Instant) -> Seen {
        let new = !self.nodes.contains_key(&frame.node);
        if new {
            self.nodes
                .retain(|_, node| now.duration_since(node.seen) < NODE_TTL);
            if self.nodes.len() >= MAX_NODES {
                return Seen::TooMany;
            }
        }
        // What the other nodes' names leave of `MAX_NAMES` (silent ones too: they hold memory).
        let others: usize = (self.nodes.iter())
            .filter(|&(name, _)| *name != frame.node)
            .map(|(_, node)| node.names.len())
            .sum();
        let room = MAX_NAMES.saturating_sub(others);
        let fresh = || Node {
            seq: 0,
            online: 0,
            seen: now,
            names: BTreeMap::new(),
            unrolled: false,
        };
        let node = self.nodes.entry(frame.node.clone()).or_insert_with(fresh);
        let expired = now.duration_since(node.seen) >= NODE_TTL;
        // A beat repeats the last number used; anything else uses a new one.
        // (A forged number may be the last there is: the next one saturates, never overflows.)
        let next = if frame.what == What::Beat {
            node.seq
        } else {
            node.seq.saturating_add(1)
        };
        // Numbers are checked across a silence too: frames lost while the bus was down show as a
        // gap when the node is heard again.
        let seen = if node.seq == 0 {
            Seen::InOrder
        } else if frame.seq < next {
            node.names.clear();
            Seen::Restarted
        } else if frame.seq > next {
            let to = if frame.what == What::Beat {
                frame.seq
            } else {
                frame.seq - 1
            };
            Seen::Gap {
                from: node.seq.saturating_add(1),
                to,
            }
        } else {
            Seen::InOrder
        };
        if expired {
            node.names.clear();
        }
        match frame.what {
            // It says who it has (a `hello` is followed by its roll).
            What::Roll(_) | What::Hello => node.unrolled = false,
            _ if new || expired => node.unrolled = true,
            _ => {}
        }
        node.seq = frame.seq;
        node.online = frame.online;
        node.seen = now;
        match &frame.what {
            What::Message(m, _) | What::Join(m) | What::To(m, ..) => {
                remember(&mut node.names, room, m.id, &m.name)
            }
            What::Nick(m, new) => remember(&mut node.names, room, m.id, new),
            What::Left(m, _) => {
                node.names.remove(&m.id);
            }
            What::Roll(members) => {
                for (id, name) in members {
                    remember(&mut node.names, room, *id, name);
                }
            }
            What::All(_) | What::Beat | What::Hello => {}
        }
        seen
    }

    /// Whether to say `hello` now, so that every instance answers with its roll: `node` was heard
    /// from again after it was forgotten, and has not been asked since; at most once a `BEAT`
    /// (one `hello` asks every instance), so a node that comes and goes cannot make a storm of
    /// rolls. A node still to ask when it is too soon is asked at its next frame (a beat).
    pub fn wants_roll(&mut self, node: &str, now: Instant) -> bool {
        let Some(node) = self.nodes.get_mut(node) else {
            return false;
        };
        let recent = (self.hello).is_some_and(|at| now.duration_since(at) < BEAT);
        if !node.unrolled || recent {
            return false;
        }
        node.unrolled = false;
        self.hello = Some(now);
        true
    }

    /// This instance said `hello` at `now` (joining the bus, or asking as `wants_roll` said).
    pub fn said_hello(&mut self, now: Instant) {
        self.hello = Some(now);
    }

    /// Members on the other instances still heard from.
    pub fn online(&self, now: Instant) -> u64 {
        self.live(now).map(|node| node.online).sum()
    }

    /// The names of the members of the other instances seen so far.
    pub fn names(&self, now: Instant) -> impl Iterator<Item = &str> {
        self.live(now)
            .flat_map(|node| node.names.values().map(String::as_str))
    }

    /// Whether a member of another instance is known by `name` (any case).
    pub fn has_name(&self, name: &str, now: Instant) -> bool {
        self.names(now)
            .any(|known| known.eq_ignore_ascii_case(name))
    }

    fn live(&self, now: Instant) -> impl Iterator<Item = &Node> {
        self.nodes
            .values()
            .filter(move |node| now.duration_since(node.seen) < NODE_TTL)
    }
}

/// Keeps member `id`'s name, if the node has fewer than `room` or already has it.
fn remember(names: &mut BTreeMap<u64, String>, room: usize, id: u64, name: &str) {
    if names.len() < room || names.contains_key(&id) {
        names.insert(id, name.to_owned());
    }
}

/// How often an instance says it is still there (`beat`).
pub const BEAT: Duration = Duration::from_secs(2);
/// A node silent this long is gone.
const NODE_TTL: Duration = Duration::from_secs(7);
/// The most instances tracked: a bound on what frames can make this one hold.
const MAX_NODES: usize = 256;
/// The most names kept of all the other instances together (`/who` shows at most 100 anyway):
/// what forged rolls can make this one hold, and what a `/who` or a newcomer's who-line goes
/// through. (Per instance, `MAX_NODES` of them made 16 million, 1.6 GiB and 0.6 s a `/who`.)
const MAX_NAMES: usize = 65_536;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::wire::{MAX_ROLL, Member};

    fn frame(node: &str, seq: u64, what: What) -> Frame {
        Frame {
            node: node.into(),
            seq,
            online: 2,
            what,
        }
    }

    fn said(id: u64, name: &str) -> What {
        let member = Member {
            id,
            peer: "p".into(),
            name: name.into(),
        };
        What::Message(member, b"x".to_vec())
    }

    #[test]
    fn gaps_are_seen_in_messages_and_beats() {
        let now = Instant::now();
        let mut nodes = Nodes::default();
        assert_eq!(nodes.see(&frame("a", 5, said(1, "x")), now), Seen::InOrder);
        assert_eq!(nodes.see(&frame("a", 6, said(1, "x")), now), Seen::InOrder);
        assert_eq!(nodes.see(&frame("a", 6, What::Beat), now), Seen::InOrder);
        let gap = Seen::Gap { from: 7, to: 8 };
        assert_eq!(nodes.see(&frame("a", 9, said(1, "x")), now), gap);
        let gap = Seen::Gap { from: 10, to: 12 };
        assert_eq!(nodes.see(&frame("a", 12, What::Beat), now), gap);
        assert_eq!(
            nodes.see(&frame("a", 1, said(1, "x")), now),
            Seen::Restarted
        );
        assert_eq!(nodes.see(&frame("b", 1, What::Beat), now), Seen::InOrder);
    }

    #[test]
    fn the_last_number_there_is_never_overflows() {
        let now = Instant::now();
        let mut nodes = Nodes::default();
        nodes.see(&frame("a", 1, said(1, "x")), now);
        let gap = Seen::Gap {
            from: 2,
            to: u64::MAX - 1,
        };
        assert_eq!(nodes.see(&frame("a", u64::MAX, said(1, "x")), now), gap);
        assert_eq!(
            nodes.see(&frame("a", u64::MAX, What::Beat), now),
            Seen::InOrder
        );
        assert_eq!(
            nodes.see(&frame("a", u64::MAX, said(1, "x")), now),
            Seen::InOrder
        );
        assert_eq!(
            nodes.see(&frame("a", 1, said(1, "x")), now),
            Seen::Restarted
        );
    }

    #[test]
    fn the_names_of_all_nodes_together_are_bounded() {
        let now = Instant::now();
        let mut nodes = Nodes::default();
        for node in 0..3 {
            for part in 0..(MAX_NAMES / MAX_ROLL / 2 + 1) as u64 {
                let ids = (part * MAX_ROLL as u64)..((part + 1) * MAX_ROLL as u64);
                let roll = What::Roll(ids.map(|id| (id, format!("n{node}x{id}"))).collect());
                nodes.see(&frame(&format!("node{node}"), part + 1, roll), now);
            }
        }
        assert_eq!(nodes.names(now).count(), MAX_NAMES);
    }

    #[test]
    fn counts_and_names_of_live_nodes_only() {
        let now = Instant::now();
        let mut nodes = Nodes::default();
        nodes.see(&frame("a", 1, said(1, "#1@a")), now);
        nodes.see(&frame("a", 2, said(2, "bob")), now);
        nodes.see(&frame("b", 1, said(1, "#1@b")), now + NODE_TTL / 2);
        assert_eq!(nodes.online(now + NODE_TTL / 2), 4);
        assert!(nodes.has_name("BOB", now));
        let mut member = Member {
            id: 2,
            peer: "p".into(),
            name: "bob".into(),
        };
        nodes.see(
            &frame("a", 3, What::Nick(member.clone(), "rob".into())),
            now,
        );
        assert!(!nodes.has_name("bob", now) && nodes.has_name("rob", now));
        member.name = "rob".into();
        nodes.see(&frame("a", 4, What::Left(member, "exit".into())), now);
        assert!(!nodes.has_name("rob", now));
        let later = now + NODE_TTL;
        assert_eq!(nodes.online(later), 2);
        assert_eq!(nodes.names(later).collect::<Vec<_>>(), ["#1@b"]);
    }

    #[test]
    fn a_node_heard_again_after_it_was_forgotten_is_asked_for_its_roll_once_a_beat() {
        let t = Instant::now();
        let mut nodes = Nodes::default();
        nodes.said_hello(t);
        // Its roll answers this instance's hello: nothing to ask.
        nodes.see(&frame("a", 1, What::Roll(vec![(1, "alice".into())])), t);
        assert!(!nodes.wants_roll("a", t + BEAT));
        // First heard by a beat (its roll not come): asked, but not within a beat of the hello.
        nodes.see(&frame("b", 1, What::Beat), t);
        assert!(!nodes.wants_roll("b", t));
        assert!(nodes.wants_roll("b", t + BEAT));
        assert!(!nodes.wants_roll("b", t + 3 * BEAT), "asked twice");
        // Silent past its time: forgotten, and asked again when heard, once a beat at most.
        let back = t + BEAT + NODE_TTL;
        nodes.see(&frame("a", 1, What::Beat), back);
        nodes.see(&frame("b", 1, What::Beat), back);
        assert_eq!(nodes.names(back).count(), 0);
        assert!(nodes.wants_roll("a", back));
        assert!(!nodes.wants_roll("b", back), "one hello a beat at most");
        // That hello asked b too: its roll says who it has, and it is not asked again.
        nodes.see(&frame("b", 2, What::Roll(vec![(2, "bob".into())])), back);
        assert!(!nodes.wants_roll("b", back + BEAT));
        assert_eq!(nodes.names(back).collect::<Vec<_>>(), ["bob"]);
    }

    #[test]
    fn a_roll_tells_the_names_of_members_that_said_nothing() {
        let now = Instant::now();
        let mut nodes = Nodes::default();
        let roll = What::Roll(vec![(1, "alice".into()), (2, "#2@a".into())]);
        assert_eq!(nodes.see(&frame("a", 1, roll), now), Seen::InOrder);
        assert_eq!(nodes.names(now).collect::<Vec<_>>(), ["alice", "#2@a"]);
        let member = Member {
            id: 1,
            peer: "p".into(),
            name: "alice".into(),
        };
        nodes.see(&frame("a", 2, What::Left(member, "exit".into())), now);
        assert_eq!(nodes.names(now).collect::<Vec<_>>(), ["#2@a"]);
    }
}
