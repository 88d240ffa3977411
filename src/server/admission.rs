//! The loop's side of admission: accepting within a budget, refusing past `--max-clients`, and
//! seating a client; those that must pass TLS and/or the password first wait in the gate
//! (`gate.rs`) with a deadline on the one timer queue, and are seated or refused from there.

use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::Server;
use crate::chat;
use crate::escape::escape;
use crate::gate::{self, Outcome, Passed};
use crate::ids::Peer;
use crate::listeners::{self, Accepted};
use crate::report;
use crate::socket::Socket;
use crate::timers::Due;

impl Server {
    /// Accepts until the listener would block, or up to `ACCEPT_BUDGET` connections a turn (a
    /// burst of joins must not hold up everyone else's traffic; the rest waits for the next turn).
    pub(super) fn accept(&mut self, index: usize) {
        for _ in 0..ACCEPT_BUDGET {
            if self.work_left == 0 {
                break; // The rest next turn: in the room each join is announced to everyone.
            }
            match self.listeners.accept(index) {
                Accepted::Client(stream, peer) => {
                    let tls = self.listeners.is_tls(index);
                    self.admit(stream, peer, tls);
                }
                Accepted::Drained => return,
                Accepted::Failed { retry } => {
                    if retry {
                        let at = Instant::now() + ACCEPT_RETRY;
                        self.timers.arm(at, Due::AcceptRetry);
                    }
                    return;
                }
            }
        }
        self.listeners.pend(index);
    }

    /// Seats a new client, or hands it to the gate if it must pass TLS or the password first, or
    /// refuses it: access control first (before a byte is read), then `--max-clients` (guests
    /// count). From here on it counts against `--max-per-ip` until it is refused or reaped.
    fn admit(&mut self, stream: TcpStream, peer: Peer, tls: bool) {
        let Some(stream) = self.screen(stream, peer, tls) else {
            return;
        };
        if self.clients.is_full(self.gate.len()) {
            self.counts.refused_full += 1;
            let buf = &mut self.read_buf;
            let full = chat::SERVER_FULL;
            return listeners::refuse(stream, peer, full, tls, buf, "server full");
        }
        listeners::tune(&stream, self.keepalive);
        self.access.seated(peer.0.ip());
        if tls || self.gate.holds_plain() {
            return self.enter(stream, peer, tls);
        }
        self.seat(Socket::Plain(stream), peer, None);
    }

    /// Gives a client its id, its `connect` report, its greeting and its place in the room.
    /// `passed`: it passed the gate, whose telnet state and line ending it carries on with, and
    /// what it sent after its handshake or password may already wait unread (no readiness edge
    /// will announce it): it is read next turn.
    fn seat(&mut self, socket: Socket, peer: Peer, passed: Option<Passed>) {
        match self.clients.open(socket, peer, self.poll.registry()) {
            Ok((key, id)) => {
                let cost = self.chat.line_cost(self.clients.len());
                self.work_left = self.work_left.saturating_sub(cost);
                self.arm_idle_timer(key, id);
                let waiting = passed.is_some();
                if let (Some(passed), Some(conn)) = (passed, self.clients.get_mut(key)) {
                    conn.carry_over(passed.telnet, passed.ended_line, passed.heard);
                }
                self.chat.join(&mut self.clients, key);
                if waiting {
                    self.clients.pend(key);
                }
            }
            Err(e) => {
                self.counts.refused_error += 1;
                self.access.left(peer.0.ip());
                report::refused(peer, &e.to_string());
            }
        }
    }

    /// Takes a new client into the gate, with its deadline armed.
    pub(super) fn enter(&mut self, stream: TcpStream, peer: Peer, tls: bool) {
        match self.gate.enter(stream, peer, tls, self.poll.registry()) {
            Ok((key, serial, deadline)) => self.timers.arm(deadline, Due::Guest(key, serial)),
            Err(why) => {
                self.counts.refused_error += 1;
                self.access.left(peer.0.ip());
                report::refused(peer, &why);
            }
        }
    }

    /// An event for guest `(key, serial)`: its handshake or password moves on, if this turn has
    /// work left (a handshake costs as much CPU as reading a lot of lines: `GUEST_STEP`); else it
    /// waits for the next turn, as a client with unread input does.
    pub(super) fn guest_event(&mut self, key: usize, serial: u64) {
        if self.work_left == 0 {
            return self.gate.pend(key, serial);
        }
        self.work_left = self.work_left.saturating_sub(GUEST_STEP);
        let outcome = self.gate.on_event(key, serial, self.poll.registry());
        self.settle_guest(key, outcome);
    }

    /// Guest `(key, serial)`'s timer: refused if its time is up.
    pub(super) fn guest_timer(&mut self, key: usize, serial: u64) {
        let outcome = self.gate.expire(key, serial, self.poll.registry());
        self.settle_guest(key, outcome);
    }

    /// Every guest is turned away at shutdown (they were never in the room).
    pub(super) fn close_gate(&mut self) {
        for peer in self.gate.close_all(self.poll.registry()) {
            self.access.left(peer.0.ip());
            report::refused(peer, "shutdown");
        }
    }

    /// Headless SIGHUP: the password file is read again (a bad one keeps the old password).
    pub(super) fn reload_password(&mut self) {
        if let Some(password) = self.gate.password_mut() {
            match password.reload() {
                Ok(()) => report::password_reloaded(password.path()),
                Err(e) => report::password_reload_failed(&e),
            }
        }
    }

    /// What the gate's outcome for guest `key` causes: a timer, a seat, or a refusal reported.
    fn settle_guest(&mut self, key: usize, outcome: Outcome) {
        match outcome {
            Outcome::Wait => {}
            Outcome::Arm(serial, instants) => {
                for at in instants.into_iter().flatten() {
                    self.timers.arm(at, Due::Guest(key, serial));
                }
            }
            Outcome::Admit(socket, peer, passed) => self.seat(socket, peer, Some(passed)),
            Outcome::Refused(peer, why) => {
                self.access.left(peer.0.ip());
                if why == gate::AUTH {
                    self.counts.refused_auth += 1;
                } else if why.starts_with("tls") {
                    self.counts.refused_tls += 1;
                }
                // rustls's words, not the client's bytes; escaped all the same.
                report::refused(peer, &escape(why.as_bytes()));
            }
        }
    }
}

/// The work one guest step (a TLS handshake flight, a password read) counts against the turn's
/// budget: a server-side handshake costs about 0.25 ms of CPU, what reading some 128 KiB of short
/// lines does; so a turn moves at most a few handshakes on before everyone else's input.
const GUEST_STEP: usize = 64 * 1024;

/// Connections accepted from one listener per turn.
const ACCEPT_BUDGET: usize = 256;
/// How soon to try `accept` again after it failed (typically out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
