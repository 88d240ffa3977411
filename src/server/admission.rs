//! The loop's side of admission: clients that must pass TLS and/or the password wait in the gate
//! (`gate.rs`) with a deadline on the one timer queue, and are seated or refused from there.

use mio::net::TcpStream;

use super::Server;
use crate::gate::Outcome;
use crate::ids::Peer;
use crate::report;
use crate::timers::Due;

impl Server {
    /// Takes a new client into the gate, with its deadline armed.
    pub(super) fn enter(&mut self, stream: TcpStream, peer: Peer, tls: bool) {
        match self.gate.enter(stream, peer, tls, self.poll.registry()) {
            Ok((key, serial, deadline)) => self.timers.arm(deadline, Due::Guest(key, serial)),
            Err(why) => {
                self.counts.refused_error += 1;
                report::refused(peer, &why);
            }
        }
    }

    /// An event for guest `key`: its handshake or password moves on.
    pub(super) fn guest_event(&mut self, key: usize) {
        let outcome = self.gate.on_event(key, self.poll.registry());
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

    fn settle_guest(&mut self, key: usize, outcome: Outcome) {
        match outcome {
            Outcome::Wait => {}
            Outcome::Rearm(at, serial) => self.timers.arm(at, Due::Guest(key, serial)),
            Outcome::Admit(socket, peer) => self.seat(socket, peer, true),
            Outcome::Refused(peer, why) => {
                self.counts.refused_admission += 1;
                report::refused(peer, &why);
            }
        }
    }
}
