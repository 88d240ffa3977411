//! The room across instances (`--bus`): what this instance shares of its room, and what a frame
//! from another instance causes here. A frame is delivered to the local members exactly as the
//! line would be if its sender were local (same text, same escaping, once each); unnamed members
//! of other instances are `#<id>@<node>`.
//!
//! Deliberately not here: the bus itself (`bus.rs`), or when frames are published (the loop drains
//! `outbox` once a turn).

use std::collections::HashMap;
use std::time::Instant;

use super::Chat;
use super::private::Ask;
use crate::bus::wire::MAX_ROLL;
use crate::bus::{Frame, Member, NameOp, Nodes, Seen, What};
use crate::clients::Clients;
use crate::connection::{Connection, Stream};
use crate::report;
use crate::room;

/// The room's reach beyond this instance.
#[derive(Debug)]
pub struct Across {
    /// This instance's `--node`.
    pub(super) node: String,
    /// What the other instances said of themselves.
    nodes: Nodes,
    /// Frames to publish, in the order they happened, each with the number of the `/msg` it
    /// carries; the loop takes them each turn.
    pub(super) outbox: Vec<(What, Option<u64>)>,
    /// This instance's `/msg`s on their way, by number (at most `MAX_ASKS`).
    pub(super) asks: HashMap<u64, Ask>,
    /// The number of the last `/msg` sent on.
    pub(super) next_ask: u64,
    /// Reply subjects of other instances' `/msg`s delivered here; the loop takes them each turn.
    pub(super) answers: Vec<String>,
    /// Whether names are claimed in the bus's key-value bucket (connected, with JetStream).
    pub(super) names_shared: bool,
    /// Claims and releases for the bucket, in order; the loop takes them each turn.
    pub(super) name_ops: Vec<NameOp>,
}

impl Across {
    pub fn new(node: &str) -> Across {
        Across {
            node: node.to_owned(),
            nodes: Nodes::default(),
            outbox: Vec::new(),
            asks: HashMap::new(),
            next_ask: 0,
            answers: Vec::new(),
            names_shared: false,
            name_ops: Vec::new(),
        }
    }
}

impl Chat {
    /// Frames to publish since the last call, in order.
    pub fn take_outbox(&mut self, into: &mut Vec<(What, Option<u64>)>) {
        if let Some(across) = &mut self.across {
            into.append(&mut across.outbox);
        }
    }

    /// Reply subjects of the `/msg`s delivered here since the last call.
    pub fn take_answers(&mut self, into: &mut Vec<String>) {
        if let Some(across) = &mut self.across {
            into.append(&mut across.answers);
        }
    }

    /// Claims and releases of names since the last call, in order.
    pub fn take_name_ops(&mut self, into: &mut Vec<NameOp>) {
        if let Some(across) = &mut self.across {
            into.append(&mut across.name_ops);
        }
    }

    /// Whether `/nick` claims names in the bus's bucket (while it is up) or checks what this
    /// instance knows (while it is not).
    pub fn share_names(&mut self, on: bool) {
        if let Some(across) = &mut self.across {
            across.names_shared = on;
        }
    }

    /// Joined the bus (again): says `hello`, so that the others tell this one who they have, and
    /// tells them who is here (members who joined while the bus was away too).
    pub fn hello<S: Stream>(&mut self, clients: &Clients<S>) {
        if let Some(across) = &mut self.across {
            across.nodes.said_hello(Instant::now());
        }
        self.share(|_| What::Hello);
        self.roll(clients);
    }

    /// Tells the other instances who is here, in frames of at most `MAX_ROLL` members.
    fn roll<S: Stream>(&mut self, clients: &Clients<S>) {
        let Some(across) = &mut self.across else {
            return;
        };
        let mut members = Vec::new();
        for (_, conn) in clients.open_ones() {
            let m = member(conn, &across.node);
            members.push((m.id, m.name));
            if members.len() == MAX_ROLL {
                across
                    .outbox
                    .push((What::Roll(std::mem::take(&mut members)), None));
            }
        }
        if !members.is_empty() {
            across.outbox.push((What::Roll(members), None));
        }
    }

    /// Queues `what` for the other instances, if the room has any.
    pub(super) fn share(&mut self, what: impl FnOnce(&str) -> What) {
        if let Some(across) = &mut self.across {
            let what = what(&across.node);
            across.outbox.push((what, None));
        }
    }

    /// Members of the other instances still heard from.
    pub(super) fn remote_online(&self) -> usize {
        match &self.across {
            Some(across) => across.nodes.online(Instant::now()) as usize,
            None => 0,
        }
    }

    /// The names of the members of other instances this one knows.
    pub(super) fn remote_names(&self) -> Vec<&str> {
        match &self.across {
            Some(across) => across.nodes.names(Instant::now()).collect(),
            None => Vec::new(),
        }
    }

    /// Whether a member of another instance is known by `name`.
    pub(super) fn remote_has(&self, name: &str) -> bool {
        self.across
            .as_ref()
            .is_some_and(|across| across.nodes.has_name(name, Instant::now()))
    }

    /// A frame from another instance: its numbering checked (a gap is reported), reported, and
    /// delivered to every local member as the line would be from a local sender.
    pub fn hear_across<S: Stream>(
        &mut self,
        clients: &mut Clients<S>,
        frame: Frame,
        reply: Option<&str>,
    ) {
        let Some(across) = &mut self.across else {
            return;
        };
        if !frame_is_clean(&frame) {
            return report::bus_malformed("a name or reason chatd would not send");
        }
        let now = Instant::now();
        match across.nodes.see(&frame, now) {
            Seen::InOrder => {}
            Seen::Gap { from, to } => report::bus_gap(&frame.node, from, to),
            Seen::Restarted => report::bus_restarted(&frame.node),
            Seen::TooMany => return report::bus_too_many_nodes(&frame.node),
        }
        // Back after a silence (a stopped process, a split): who it has is asked again.
        if across.nodes.wants_roll(&frame.node, now) {
            across.outbox.push((What::Hello, None));
        }
        let online = clients.len() + across.nodes.online(now) as usize;
        let node = &frame.node;
        let line = match &frame.what {
            What::Message(m, text) => {
                report::remote_message(node, &m.peer, m.id, text);
                room::message(&m.name, text)
            }
            What::Join(m) => {
                let label = report::remote_label(node, &m.peer, m.id);
                report::remote_join(&label, &m.name, online);
                room::joined(&m.name, online)
            }
            What::Left(m, reason) => {
                let label = report::remote_label(node, &m.peer, m.id);
                report::remote_left(&label, reason, online);
                room::left(&m.name, reason)
            }
            What::Nick(m, new) => {
                let label = report::remote_label(node, &m.peer, m.id);
                report::remote_nick(&label, &m.name, new);
                room::renamed(&m.name, new)
            }
            What::All(text) => {
                report::remote_all(node, text);
                room::from_server(&String::from_utf8_lossy(text))
            }
            What::To(..) => return self.hear_private(clients, &frame, reply),
            What::Hello => return self.roll(clients),
            What::Roll(_) | What::Beat => return,
        };
        let sent = clients.send_all(None, &line);
        self.relay_deliveries += sent as u64;
    }
}

/// Member `conn` as the other instances see it: its name, or `#<id>@<node>` while it has none.
pub(super) fn member<S: Stream>(conn: &Connection<S>, node: &str) -> Member {
    let name = conn.name();
    let name = if name.starts_with('#') {
        format!("{name}@{node}")
    } else {
        name.to_string()
    };
    Member {
        id: conn.id().0,
        peer: conn.peer().to_string(),
        name,
    }
}

/// Whether a frame's names and reason are ones chatd sends: a frame never puts on a member's
/// screen what a local member could not (a control character, the server's mark).
fn frame_is_clean(frame: &Frame) -> bool {
    let name = |name: &str| crate::names::valid(name.as_bytes()) || is_remote_name(name).is_some();
    match &frame.what {
        What::Message(m, _) | What::Join(m) => name(&m.name),
        What::To(m, to, ..) => name(&m.name) && name(to),
        What::Left(m, reason) => name(&m.name) && reason.bytes().all(|b| b.is_ascii_lowercase()),
        What::Nick(m, new) => name(&m.name) && name(new),
        What::Roll(members) => members.iter().all(|(_, m)| name(m)),
        What::All(_) | What::Beat | What::Hello => true,
    }
}

/// The node of `#<id>@<node>`, the name of an unnamed member across instances, if `name` is one.
pub(super) fn is_remote_name(name: &str) -> Option<&str> {
    let (id, node) = name.strip_prefix('#')?.split_once('@')?;
    let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    let node_ok = !node.is_empty()
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    (id_ok && node_ok).then_some(node)
}
