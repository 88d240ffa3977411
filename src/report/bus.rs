//! The reports of `--bus`: the link coming and going, what was not shared or never arrived, and
//! what members of other instances did, labelled `<node>/<peer> #<id>`.

use log::{info, warn};

use crate::escape::escape_into;

/// A member of another instance in reports: `<node>/<peer> #<id>`.
pub fn remote_label(node: &str, peer: &str, id: u64) -> String {
    format!("{node}/{peer} #{id}")
}

/// A line a member of another instance sent: `message <node>/<peer> #<id>: <text>`.
pub fn remote_message(node: &str, peer: &str, id: u64, text: &[u8]) {
    let mut line = String::with_capacity(text.len() + 8);
    escape_into(&mut line, text);
    let peer = format!("{node}/{peer}");
    info!(event = "message", id = id, peer = peer.as_str(), node = node, text = line.as_str(); "message {peer} #{id}: {line}");
}

/// A member of another instance's `/msg` delivered here: `command <node>/<peer> #<id>: /msg <to>
/// <text>`, the remote form of the sender's own `command` report.
pub fn remote_command(node: &str, peer: &str, id: u64, to: &str, text: &[u8]) {
    let mut line = String::with_capacity(text.len() + to.len() + 8);
    line.push_str("/msg ");
    line.push_str(to);
    line.push(' ');
    escape_into(&mut line, text);
    let peer = format!("{node}/{peer}");
    info!(event = "command", id = id, peer = peer.as_str(), node = node, text = line.as_str(), dropped = 0; "command {peer} #{id}: {line}");
}

pub fn remote_join(label: &str, name: &str, online: usize) {
    info!(event = "remote_join", who = label, name = name, online = online; "joined {label} as {name} ({online} online)");
}

pub fn remote_left(label: &str, reason: &str, online: usize) {
    info!(event = "remote_left", who = label, reason = reason, online = online; "left {label} {reason} ({online} online)");
}

pub fn remote_nick(label: &str, old: &str, new: &str) {
    info!(event = "remote_nick", who = label, old = old, new = new; "nick {label}: {old} is now {new}");
}

/// Another instance's operator said `/all`.
pub fn remote_all(node: &str, text: &[u8]) {
    let mut line = String::with_capacity(text.len() + 8);
    escape_into(&mut line, text);
    info!(event = "remote_all", node = node, text = line.as_str(); "all from {node}: {line}");
}

/// A `/msg` for a member here came `late_ms` after it was sent, past `asks::MSG_FRESH`: dropped,
/// since its sender is told it was not delivered.
pub fn bus_msg_late(node: &str, peer: &str, id: u64, to: &str, late_ms: u64) {
    let peer = format!("{node}/{peer}");
    let secs = late_ms as f64 / 1000.0;
    warn!(event = "bus_msg_late", id = id, peer = peer.as_str(), node = node, to = to, late_ms = late_ms; "bus: dropped a /msg from {peer} #{id} to {to}: it came {secs:.1} s after it was sent, and its sender is told it was not delivered");
}

pub fn bus_connected(unshared: u64) {
    match unshared {
        0 => info!(event = "bus_connected", unshared = 0; "bus connected"),
        n => {
            warn!(event = "bus_connected", unshared = n; "bus connected; {n} lines were not shared while it was away")
        }
    }
}

pub fn bus_unavailable(reason: &str) {
    warn!(event = "bus_unavailable", reason = reason; "bus unavailable: {reason}; retrying");
}

pub fn bus_lost() {
    warn!(event = "bus_lost"; "bus lost; serving locally, reconnecting");
}

/// The outbound queue was full: lines the bus thread never got.
pub fn bus_behind(unshared: u64) {
    warn!(event = "bus_behind", unshared = unshared; "bus behind: {unshared} lines not shared");
}

/// Frames `from..=to` of `node` never arrived.
pub fn bus_gap(node: &str, from: u64, to: u64) {
    let n = to - from + 1;
    warn!(event = "bus_gap", node = node, from = from, to = to, lines = n; "bus gap: {n} lines from {node} never arrived (#{from} to #{to})");
}

pub fn bus_restarted(node: &str) {
    info!(event = "bus_restarted", node = node; "bus: {node} started again");
}

pub fn bus_malformed(why: &str) {
    warn!(event = "bus_malformed", reason = why; "bus: ignored a message that is not a chatd frame ({why})");
}

/// NATS dropped lines for this instance, `times` times since the last such report (said at most
/// once every 5 s).
pub fn bus_slow_consumer(times: u64) {
    match times {
        1 => {
            warn!(event = "bus_slow_consumer", times = 1; "bus: NATS dropped lines for this instance (it read too slowly)")
        }
        n => {
            warn!(event = "bus_slow_consumer", times = n; "bus: NATS dropped lines for this instance {n} times since the last report (it read too slowly)")
        }
    }
}

pub fn bus_too_many_nodes(node: &str) {
    warn!(event = "bus_too_many_nodes", node = node; "bus: too many instances; ignoring {node}");
}

/// Whether names are claimed in the bus's key-value bucket (`None`: they are).
pub fn bus_names(trouble: Option<&str>) {
    match trouble {
        None => info!(event = "bus_names", shared = true; "bus: names are claimed across the room"),
        Some(why) => {
            warn!(event = "bus_names", shared = false, reason = why; "bus: names are not claimed across the room ({why}); each instance checks what it knows")
        }
    }
}

/// A name held here was claimed elsewhere while the bus was away.
pub fn bus_name_lost(name: &str) {
    warn!(event = "bus_name_lost", name = name; "bus: the name {name} was claimed elsewhere while the bus was away");
}
