//! The console's answers to the operator: confirmations, warnings, `/list`, `/stats` and `/help`.
//!
//! Deliberately not here: parsing what the operator typed (`console.rs`) or acting on it
//! (`chat.rs`).

use std::fmt;
use std::time::Duration;

use log::{info, warn};

use super::Count;
use crate::access::Cidr;
use crate::console::ParseError;
use crate::ids::{ConnId, Peer, Reason};
use crate::stats::Stats;

/// `/stats`: the figures `GET /metrics` serves, in one line.
pub fn stats(s: &Stats) {
    let [exit, closed, reset, kicked, shutdown, slow, timeout, flood] = s.disconnects;
    let [denied, banned, per_ip, rate] = s.refused_access;
    info!(
        event = "stats",
        online = s.online,
        connections_accepted = s.accepted,
        refused_full = s.refused_full,
        refused_error = s.refused_error,
        refused_denied = denied,
        refused_banned = banned,
        refused_per_ip = per_ip,
        refused_connect_rate = rate,
        refused_tls = s.refused_tls,
        refused_auth = s.refused_auth,
        disconnects_exit = exit,
        disconnects_closed = closed,
        disconnects_reset = reset,
        disconnects_kicked = kicked,
        disconnects_shutdown = shutdown,
        disconnects_slow = slow,
        disconnects_timeout = timeout,
        disconnects_flood = flood,
        messages_in = s.messages_in,
        bytes_in = s.bytes_in,
        lines_out = s.lines_out,
        bytes_out = s.bytes_out,
        relay_deliveries = s.relay_deliveries,
        queue_bytes = s.queue_bytes,
        timers_armed = s.timers,
        loop_turns = s.turns,
        loop_busy_seconds:% = format_args!("{:.6}", s.busy.as_secs_f64());
        "stats: {} online; {} accepted, refused {} full {} error {denied} denied {banned} banned {per_ip} per-ip {rate} rate {} tls {} auth; disconnects exit {exit} closed \
         {closed} reset {reset} kicked {kicked} shutdown {shutdown} slow {slow} timeout {timeout} \
         flood {flood}; \
         in {} messages {} bytes; out {} lines {} bytes; {} relay deliveries; {} bytes queued; \
         {} timers; {} turns, {:.3} s busy",
        s.online,
        s.accepted,
        s.refused_full,
        s.refused_error,
        s.refused_tls,
        s.refused_auth,
        s.messages_in,
        s.bytes_in,
        s.lines_out,
        s.bytes_out,
        s.relay_deliveries,
        s.queue_bytes,
        s.timers,
        s.turns,
        s.busy.as_secs_f64()
    );
}

pub fn console_sent(id: ConnId, peer: Peer) {
    info!(event = "console_sent", id = id.0, peer:% = peer; "sent to {id} {peer}");
}

pub fn console_replied(id: ConnId, peer: Peer) {
    info!(event = "console_replied", id = id.0, peer:% = peer; "replied to {id} {peer} (last to speak)");
}

pub fn console_sent_all(count: usize) {
    info!(event = "console_sent_all", count = count; "sent to all ({})", Count(count, "client"));
}

pub fn console_error(error: &ParseError) {
    warn!(event = "console_error", error:% = error; "console: {error}");
}

pub fn console_too_long(limit: u64) {
    warn!(event = "console_too_long", limit = limit; "console: line longer than {limit} bytes ignored");
}

/// The client could not take the operator's line: it stopped reading and is dropped `slow`.
pub fn console_not_sent_slow(id: ConnId) {
    warn!(event = "console_not_sent", id = id.0, reason = "slow"; "console: {id} could not take the line and is dropped (slow)");
}

/// Writing to the client failed: its connection is gone, and its disconnect follows.
pub fn console_not_sent_broken(id: ConnId) {
    warn!(event = "console_not_sent", id = id.0, reason = "broken"; "console: {id} could not take the line: its connection failed");
}

pub fn console_no_client(id: ConnId) {
    warn!(event = "console_no_client", id = id.0; "console: no client {id} is connected (try /list)");
}

/// The line editor's bare line was for a client that left before Enter: nothing is sent.
pub fn console_target_left(id: ConnId) {
    warn!(event = "console_target_left", id = id.0; "console: {id} has left; nothing sent");
}

/// The line editor's `/to <id>`: bare lines go to that client from now on.
pub fn console_sticky(id: ConnId) {
    info!(event = "console_sticky", id = id.0; "bare lines now go to {id} (/last: to the last to speak)");
}

/// The line editor's `/to` or `/last`: bare lines follow the last to speak again.
pub fn console_following() {
    info!(event = "console_following"; "bare lines now go to the last to speak");
}

pub fn console_nobody_spoke() {
    warn!(event = "console_nobody_spoke"; "console: no client has spoken yet; use /to <id> <text> or /all <text>");
}

pub fn console_list_header(online: usize) {
    info!(event = "list", online = online; "{online} online");
}

/// One `/list` line; `name` is how the room calls the client (with `--relay`), `leaving` the
/// reason of a client that is closing and not yet gone.
pub fn console_list_entry(
    id: ConnId,
    peer: Peer,
    name: Option<&str>,
    age: Duration,
    (lines_in, lines_out): (u64, u64),
    leaving: Option<Reason>,
) {
    // A name is ASCII letters, digits, `_` and `-`, or `#<id>`: nothing to escape.
    let (named, name) = (Named(name), name.unwrap_or_default());
    match leaving {
        None => info!(
            event = "list_entry", id = id.0, peer:% = peer, name = name, age_secs = age.as_secs(),
            lines_in = lines_in, lines_out = lines_out;
            "{id} {peer}{named} connected {} ago, {lines_in} in, {lines_out} out",
            Age(age)
        ),
        Some(reason) => info!(
            event = "list_entry", id = id.0, peer:% = peer, name = name, age_secs = age.as_secs(),
            lines_in = lines_in, lines_out = lines_out, leaving:% = reason;
            "{id} {peer}{named} connected {} ago, {lines_in} in, {lines_out} out, leaving ({reason})",
            Age(age)
        ),
    }
}

/// ` (NAME)` after a `/list` entry's address, or nothing without a name.
struct Named<'a>(Option<&'a str>);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " ({name})"),
            None => Ok(()),
        }
    }
}

/// `/help`; in the line editor (`editor`), with its own commands too.
pub fn console_help(editor: bool) {
    let extra = if editor { EDITOR_HELP } else { &[] };
    for line in HELP.iter().chain(extra) {
        info!(event = "help"; "{line}");
    }
}

/// `/ban`: the block, for how long, and how many clients it kicked.
pub fn banned(cidr: Cidr, minutes: Option<u64>, kicked: usize) {
    let kicked_n = Count(kicked, "client");
    match minutes {
        Some(m) => info!(
            event = "banned", cidr:% = cidr, minutes = m, kicked = kicked;
            "banned {cidr} for {} (kicking {kicked_n})", Count(m as usize, "minute")
        ),
        None => info!(
            event = "banned", cidr:% = cidr, kicked = kicked;
            "banned {cidr} until /unban (kicking {kicked_n})"
        ),
    }
}

pub fn bans_header(count: usize) {
    info!(event = "bans", count = count; "{}", Count(count, "ban"));
}

/// One `/bans` line: the block, and the time its ban has left (`None`: until /unban).
pub fn ban_entry(cidr: Cidr, left: Option<Duration>) {
    match left {
        Some(left) => info!(
            event = "ban_entry", cidr:% = cidr, left_secs = left.as_secs();
            "ban {cidr}: {} left", Age(left)
        ),
        None => info!(event = "ban_entry", cidr:% = cidr; "ban {cidr}: until /unban"),
    }
}

pub fn unbanned(cidr: Cidr) {
    info!(event = "unbanned", cidr:% = cidr; "unbanned {cidr}");
}

pub fn console_no_ban(cidr: Cidr) {
    warn!(event = "console_no_ban", cidr:% = cidr; "console: no ban on {cidr} (try /bans)");
}

/// A connection's age as `1h02m03s`, `2m03s` or `3s`.
struct Age(Duration);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        match (h, m) {
            (0, 0) => write!(f, "{s}s"),
            (0, _) => write!(f, "{m}m{s:02}s"),
            _ => write!(f, "{h}h{m:02}m{s:02}s"),
        }
    }
}

/// The console's `/help`; README.md lists the same commands.
const HELP: &[&str] = &[
    "commands:",
    "  /to <id> <text>   send <text> to client #<id> (also: @<id> <text>)",
    "  /all <text>       send <text> to every client",
    "  <text>            reply to the client that spoke last (//text sends /text)",
    "  /list             list clients: id, address, name (--relay), time connected, messages in and out",
    "  /kick <id>        disconnect client #<id>",
    "  /ban <id|CIDR> [MINUTES]  kick and refuse a client's address or a block, for MINUTES or until /unban",
    "  /bans             the bans in force and the time each has left",
    "  /unban <CIDR>     lift a ban",
    "  /stats            the server's figures (what --metrics serves)",
    "  /quit             shut down: tell every client, flush, exit (so do SIGINT and SIGTERM)",
    "  /help             this list",
];

/// The line editor's own commands, after `HELP`; README.md lists them too.
const EDITOR_HELP: &[&str] = &[
    "  /to <id>          bare lines go to client #<id> from now on (the prompt shows where)",
    "  /to, /last        bare lines go to the client that spoke last again",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_ages() {
        assert_eq!(Age(Duration::from_secs(5)).to_string(), "5s");
        assert_eq!(Age(Duration::from_secs(125)).to_string(), "2m05s");
        assert_eq!(Age(Duration::from_secs(3725)).to_string(), "1h02m05s");
    }
}
