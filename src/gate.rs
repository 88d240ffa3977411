//! Admission: clients that must finish a TLS handshake and/or give the password before they are
//! seated. Until then a client is a guest here: no id, no `connect` report, no greeting, no place
//! in the room or in "online"; it counts against `--max-clients`, holds at most its TLS session and
//! a password line of `MAX_PASSWORD` bytes, and has a deadline (`--handshake-timeout`, then
//! `--auth-timeout` from the prompt).
//!
//! The password line is heard as a seated client's lines are: through the client's telnet filter
//! (`telnet.rs`: commands taken out and answered, NVT line ends, bytes a 7-bit telnet mangled put
//! back), and taken after `--line-timeout` from a client that sent no newline (nor a telnet
//! command). The filter's state and whether the line ended with a newline are handed to the
//! connection with the client ([`Passed`]), so the session carries on where the gate left it.
//!
//! Guest `k` is registered as `Token(GUEST_BASE + k)`, readable and writable (edge-triggered, so
//! a writable event comes only when the socket takes more).
//!
//! Deliberately not here: timers and reports (the loop arms `Due::Guest` with the deadlines given
//! here and reports what `Outcome` says), or anything after admission.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ServerConfig;
use slab::Slab;

use crate::ids::Peer;
use crate::password::PasswordFile;
use crate::socket::Socket;
use crate::stream::Stream;
use crate::telnet::Telnet;
use crate::tls::{self, TlsStream};

mod guest;

use guest::{Guest, Heard, Step};

pub struct Gate {
    guests: Slab<Guest>,
    /// Guests with an event the turn's budget left unhandled: seen to next turn (readiness is
    /// edge-triggered, so no new event would come).
    pending: Vec<(usize, u64)>,
    /// Tells guests apart across reused slots (for their timers); never reused.
    next_serial: u64,
    tls: Option<Arc<ServerConfig>>,
    password: Option<PasswordFile>,
    handshake_timeout: Duration,
    auth_timeout: Duration,
    /// `--line-timeout`: a password line without a newline is taken after this long.
    line_timeout: Duration,
    /// rustls's send buffer for each TLS client (part of `--max-queue`).
    tls_reserved: usize,
}

/// What a guest's event or timer led to.
pub enum Outcome {
    /// Not done yet.
    Wait,
    /// Not done yet; the loop arms a timer (with the serial) for each instant given: a new
    /// deadline (the prompt was sent), the line timeout of a password line without a newline.
    Arm(u64, [Option<Instant>; 2]),
    /// Done: the loop seats it (its socket is deregistered), carrying on from `Passed`.
    Admit(Socket, Peer, Passed),
    /// Turned away (its socket is closed); the reason is for the report.
    Refused(Peer, String),
}

/// What a client admitted takes on to its connection.
#[derive(Debug, Default)]
pub struct Passed {
    /// The telnet state its password line left: what was negotiated, a `CR` whose `LF` or `NUL`
    /// is still to come.
    pub telnet: Telnet,
    /// Its password line ended with a newline: it is a client whose lines wait for theirs.
    pub ended_line: bool,
    /// The bytes it sent at the prompt (its first bytes were already looked at for a TLS hello).
    pub heard: u64,
}

/// What the loop arms for a new guest: its slot, its serial and its deadline.
pub type Entered = (usize, u64, Instant);

impl Gate {
    pub fn new(
        tls: Option<Arc<ServerConfig>>,
        password: Option<PasswordFile>,
        handshake_timeout: Duration,
        auth_timeout: Duration,
        line_timeout: Duration,
        max_queue: usize,
    ) -> Gate {
        Gate {
            guests: Slab::new(),
            pending: Vec::new(),
            next_serial: 0,
            tls,
            password,
            handshake_timeout,
            auth_timeout,
            line_timeout,
            tls_reserved: tls::reserved_for(max_queue),
        }
    }

    /// Whether a client from a plain listener must wait here (for the password).
    pub fn holds_plain(&self) -> bool {
        self.password.is_some()
    }

    /// Guests now: they count against `--max-clients`.
    pub fn len(&self) -> usize {
        self.guests.len()
    }

    /// The serial of the guest in slot `key`, if there is one.
    pub fn serial(&self, key: usize) -> Option<u64> {
        self.guests.get(key).map(|guest| guest.serial)
    }

    /// Guest `(key, serial)` had an event the loop could not afford this turn.
    pub fn pend(&mut self, key: usize, serial: u64) {
        if let Some(guest) = self.guests.get_mut(key).filter(|g| g.serial == serial)
            && !std::mem::replace(&mut guest.pending, true)
        {
            self.pending.push((key, serial));
        }
    }

    pub fn any_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn take_pending(&mut self) -> Vec<(usize, u64)> {
        let pending = std::mem::take(&mut self.pending);
        for &(key, _) in &pending {
            if let Some(guest) = self.guests.get_mut(key) {
                guest.pending = false;
            }
        }
        pending
    }

    pub fn password_mut(&mut self) -> Option<&mut PasswordFile> {
        self.password.as_mut()
    }

    /// Takes a new client in: a TLS session if it came to a TLS listener (then the handshake
    /// first), else straight to the password prompt. `Err` with the reason if it cannot be.
    pub fn enter(
        &mut self,
        tcp: TcpStream,
        peer: Peer,
        tls: bool,
        registry: &Registry,
    ) -> Result<Entered, String> {
        let now = Instant::now();
        let (socket, step, deadline) = match (&self.tls, tls) {
            (Some(config), true) => {
                let stream = TlsStream::new(tcp, config, self.tls_reserved)
                    .map_err(|e| format!("tls: {e}"))?;
                let deadline = now + self.handshake_timeout;
                (Socket::Tls(Box::new(stream)), Step::Handshake, deadline)
            }
            _ => (Socket::Plain(tcp), Step::Password, now + self.auth_timeout),
        };
        let entry = self.guests.vacant_entry();
        let key = entry.key();
        let serial = self.next_serial;
        self.next_serial += 1;
        let mut guest = Guest {
            socket,
            peer,
            serial,
            step,
            deadline,
            line: Vec::new(),
            input: 0,
            telnet: Telnet::default(),
            last_input: now,
            line_timer: None,
            pending: false,
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        registry
            .register(&mut guest.socket, token(key), interest)
            .map_err(|e| e.to_string())?;
        if step == Step::Password {
            guest.prompt();
        }
        entry.insert(guest);
        Ok((key, serial, deadline))
    }

    /// A poll event for guest `(key, serial)`: moves its handshake or its password on.
    pub fn on_event(&mut self, key: usize, serial: u64, registry: &Registry) -> Outcome {
        let Some(guest) = self.guests.get_mut(key).filter(|g| g.serial == serial) else {
            return Outcome::Wait; // Gone already (the slot perhaps reused): a late event.
        };
        let mut deadline = None;
        if guest.step == Step::Handshake {
            let Socket::Tls(stream) = &mut guest.socket else {
                return Outcome::Wait; // Only a TLS guest shakes hands.
            };
            match stream.handshake() {
                Ok(false) => return Outcome::Wait,
                Ok(true) if self.password.is_none() => {
                    return self.admit(key, registry, false);
                }
                Ok(true) => {
                    guest.step = Step::Password;
                    guest.deadline = Instant::now() + self.auth_timeout;
                    guest.prompt();
                    deadline = Some(guest.deadline);
                }
                Err(e) => return self.refuse(key, registry, format!("tls: {e}")),
            }
        } else if let Socket::Tls(stream) = &mut guest.socket {
            let _ = stream.push(); // The prompt, if the socket would not take it before.
        }
        match self.hear_password(key) {
            Heard::More => match (deadline, self.arm_line_timer(key)) {
                (None, None) => Outcome::Wait,
                (deadline, line) => Outcome::Arm(serial, [deadline, line]),
            },
            heard => self.settle(key, heard, registry),
        }
    }

    /// Guest `(key, serial)`'s timer: its password line taken if its line timeout has passed,
    /// refused if its deadline has.
    pub fn expire(&mut self, key: usize, serial: u64, registry: &Registry) -> Outcome {
        let now = Instant::now();
        let Some(guest) = self.guests.get_mut(key).filter(|g| g.serial == serial) else {
            return Outcome::Wait;
        };
        if guest.line_timer.is_some_and(|at| at <= now) {
            guest.line_timer = None;
            // Bytes that came meanwhile are heard first: a timer that measures silence never
            // fires on them (as for seated clients, `Server::silent`).
            match self.hear_password(key) {
                Heard::More => {}
                heard => return self.settle(key, heard, registry),
            }
            let Some(guest) = self.guests.get_mut(key) else {
                return Outcome::Wait;
            };
            if guest.line_is_due(now, self.line_timeout) {
                // As for a seated client (`Connection::line_timed_out`), a 0xFF held waiting for
                // a command byte is the line's last byte.
                guest.line.extend(guest.telnet.take_stray_iac());
                return match self.judge(key) {
                    Heard::Right => self.admit(key, registry, false),
                    heard => self.settle(key, heard, registry),
                };
            }
            if let Some(at) = self.arm_line_timer(key) {
                return Outcome::Arm(serial, [Some(at), None]);
            }
        }
        let Some(guest) = self.guests.get(key) else {
            return Outcome::Wait;
        };
        if guest.deadline > now {
            return Outcome::Wait; // A later deadline has its own timer.
        }
        let why = match guest.step {
            Step::Handshake => "tls: handshake timeout",
            Step::Password => AUTH,
        };
        self.refuse(key, registry, why.to_owned())
    }

    /// Turns every guest away (shutdown); gives each one's address.
    pub fn close_all(&mut self, registry: &Registry) -> Vec<Peer> {
        self.refuse_where(registry, "shutdown", |_| true)
    }

    /// Turns away every guest whose address `matches` (a `/ban`), for `why`; gives their
    /// addresses.
    pub fn refuse_where(
        &mut self,
        registry: &Registry,
        why: &str,
        matches: impl Fn(&Peer) -> bool,
    ) -> Vec<Peer> {
        let keys: Vec<usize> = (self.guests.iter())
            .filter(|(_, guest)| matches(&guest.peer))
            .map(|(key, _)| key)
            .collect();
        keys.into_iter()
            .filter_map(|key| match self.refuse(key, registry, why.to_owned()) {
                Outcome::Refused(peer, _) => Some(peer),
                _ => None,
            })
            .collect()
    }

    /// Reads guest `key`'s password line (see `Guest::read_line`) and writes the answers its
    /// telnet commands are owed, before anything else is written to it.
    fn hear_password(&mut self, key: usize) -> Heard {
        let Some(guest) = self
            .guests
            .get_mut(key)
            .filter(|g| g.step == Step::Password)
        else {
            return Heard::More;
        };
        let mut answers = Vec::new();
        let heard = guest.read_line(&mut answers);
        if !answers.is_empty() {
            // Best effort, as the prompt: a guest's socket holds next to nothing yet.
            let _ = guest.socket.write_all(&answers);
            let _ = guest.socket.flush();
        }
        if guest.telnet.interrupted() {
            return Heard::Wrong; // Ctrl-C in telnet at the prompt: it leaves.
        }
        match heard {
            Heard::Right => self.judge(key),
            heard => heard,
        }
    }

    /// Whether guest `key`'s line is the password.
    fn judge(&self, key: usize) -> Heard {
        let (Some(guest), Some(password)) = (self.guests.get(key), &self.password) else {
            return Heard::Wrong;
        };
        match password.matches(crate::password::first_line(&guest.line)) {
            true => Heard::Right,
            false => Heard::Wrong,
        }
    }

    /// What a heard line makes of guest `key`; `Right` means a line ended with a newline.
    fn settle(&mut self, key: usize, heard: Heard, registry: &Registry) -> Outcome {
        match heard {
            Heard::More => Outcome::Wait,
            Heard::Right => self.admit(key, registry, true),
            Heard::Wrong => self.refuse(key, registry, AUTH.to_owned()),
            Heard::TlsOnPlain => self.refuse(key, registry, TLS_ON_PLAIN.to_owned()),
        }
    }

    /// Arms guest `key`'s line timer if its line waits for one (a partial line from a client
    /// that sent no telnet command) and none is armed; gives when it is due.
    fn arm_line_timer(&mut self, key: usize) -> Option<Instant> {
        let guest = self.guests.get_mut(key)?;
        let waits = guest.step == Step::Password
            && guest.line_timer.is_none()
            && (!guest.line.is_empty() || guest.telnet.holds_iac())
            && !guest.telnet.speaks();
        let at = guest.last_input + self.line_timeout;
        waits.then(|| *guest.line_timer.insert(at))
    }

    /// Removes guest `key` and hands it to the loop; `ended_line`: its password line ended with
    /// a newline.
    fn admit(&mut self, key: usize, registry: &Registry, ended_line: bool) -> Outcome {
        let Some(mut guest) = self.guests.try_remove(key) else {
            return Outcome::Wait;
        };
        let _ = registry.deregister(&mut guest.socket);
        guest.line.clear();
        let passed = Passed {
            telnet: guest.telnet,
            ended_line,
            heard: guest.input as u64,
        };
        Outcome::Admit(guest.socket, guest.peer, passed)
    }

    /// Removes guest `key` and closes its socket: a line for a password failure, close_notify
    /// after a TLS one that got that far.
    fn refuse(&mut self, key: usize, registry: &Registry, why: String) -> Outcome {
        let Some(mut guest) = self.guests.try_remove(key) else {
            return Outcome::Wait;
        };
        let _ = registry.deregister(&mut guest.socket);
        if why == AUTH {
            let _ = guest.socket.write(DENIED);
        } else if why == TLS_ON_PLAIN {
            let _ = guest.socket.write(tls::TLS_ALERT);
        }
        if let Socket::Tls(stream) = &mut guest.socket
            && !stream.is_handshaking()
        {
            stream.close_notify();
        }
        let _ = guest.socket.shutdown_write();
        // Unread input would make the close a reset, which can destroy the line: read what came.
        let mut scrap = [0u8; 512];
        let _ = guest.socket.read(&mut scrap);
        Outcome::Refused(guest.peer, why)
    }
}

/// Whether `token` is a guest's.
pub fn owns(token: Token) -> bool {
    (GUEST_BASE..GUEST_END).contains(&token.0)
}

/// The guest slot of a guest's token.
pub fn key_of(token: Token) -> usize {
    token.0 - GUEST_BASE
}

fn token(key: usize) -> Token {
    Token(GUEST_BASE + key)
}

/// Guests' tokens: far above the clients', below the metrics listener's (`usize::MAX / 2`).
const GUEST_BASE: usize = usize::MAX / 4;
const GUEST_END: usize = usize::MAX / 2;
const DENIED: &[u8] = b"access denied\n";
/// The refusal reason for a wrong password or none in time.
pub const AUTH: &str = "auth";
const TLS_ON_PLAIN: &str = "tls on the plain port";
