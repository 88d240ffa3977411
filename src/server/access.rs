//! The loop's part of access control: screening a connection right after `accept`, the console's
//! `/ban`, `/bans` and `/unban`, and reading the rule files again on SIGHUP. What is let in is
//! decided in `access.rs`; this file only acts on it.

use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::Server;
use crate::access::{Cidr, Refusal};
use crate::console::{BanTarget, Command};
use crate::ids::Peer;
use crate::listeners;
use crate::report;

impl Server {
    /// Checks a connection just accepted against the rules, the bans, the connect rate and the
    /// per-address limit, before anything is allocated for it or read from it. Gives the stream
    /// back if it may go on to be seated; else it is closed and reported here. `tls`: it came to
    /// a TLS listener (told with a TLS alert, not a line).
    pub(super) fn screen(&mut self, stream: TcpStream, peer: Peer, tls: bool) -> Option<TcpStream> {
        let refusal = match self.access.check(peer.0.ip(), Instant::now()) {
            Ok(()) => return Some(stream),
            Err(refusal) => refusal,
        };
        match refusal {
            // Told why: it is one of the address's own connections that is one too many.
            Refusal::PerIp => {
                let buf = &mut self.read_buf;
                let why = &refusal.to_string();
                listeners::refuse(stream, peer, TOO_MANY, tls, buf, why);
            }
            // Closed at once, unread (the kernel may answer with a reset) and untold.
            Refusal::ConnectRate { report: false } => drop(stream),
            Refusal::Denied | Refusal::Banned | Refusal::ConnectRate { report: true } => {
                drop(stream);
                report::refused(peer, &refusal.to_string());
            }
        }
        None
    }

    /// `/ban`: every client in the block is heard out and kicked, every one still at the gate
    /// refused `banned`, and the block refused until the ban ends. A client's id stands for its address (/32 or /128).
    pub(super) fn ban(&mut self, target: BanTarget, minutes: Option<u64>) {
        let cidr = match target {
            BanTarget::Block(cidr) => cidr,
            BanTarget::Client(id) => {
                match self.clients.find(id).and_then(|key| self.clients.get(key)) {
                    Some(conn) => Cidr::host(conn.peer().0.ip()),
                    None => return report::console_no_client(id),
                }
            }
        };
        // `MAX_BAN_MINUTES` keeps the end within what an `Instant` holds.
        let until = minutes.and_then(|m| Instant::now().checked_add(Duration::from_secs(m * 60)));
        self.access.bans().add(cidr, until);
        let inside: Vec<_> = (self.clients.open_ones())
            .filter(|(_, conn)| cidr.contains(conn.peer().0.ip()))
            .map(|(_, conn)| conn.id())
            .collect();
        report::banned(cidr, minutes, inside.len());
        // Those still at the gate (handshake, password) would be seated past the ban.
        let registry = self.poll.registry();
        for peer in (self.gate).refuse_where(registry, "banned", |p| cidr.contains(p.0.ip())) {
            self.access.left(peer.0.ip());
            self.access.note_refused(Refusal::Banned);
            report::refused(peer, &Refusal::Banned.to_string());
        }
        for id in inside {
            self.execute(Command::Kick(id));
        }
    }

    /// `/bans`: each ban in force and the time it has left.
    pub(super) fn list_bans(&mut self) {
        let now = Instant::now();
        let bans = self.access.bans().current(now);
        report::bans_header(bans.len());
        for ban in bans {
            let left = ban.until.map(|until| until.saturating_duration_since(now));
            report::ban_entry(ban.cidr, left);
        }
    }

    /// `/unban`: lifts the ban on exactly that block.
    pub(super) fn unban(&mut self, cidr: Cidr) {
        if self.access.bans().remove(cidr) {
            report::unbanned(cidr);
        } else {
            report::console_no_ban(cidr);
        }
    }

    /// SIGHUP, headless: the rule files are read again; a bad one leaves the rules as they were.
    pub(super) fn reload_rules(&mut self) {
        match self.access.reload() {
            None => {}
            Some(Ok(rules)) => report::rules_reloaded(rules.allow.len(), rules.deny.len()),
            Some(Err(e)) => report::rules_not_reloaded(&e),
        }
    }
}

/// What a client past `--max-per-ip` reads before its connection closes.
const TOO_MANY: &[u8] = b"too many connections from your address\n";
