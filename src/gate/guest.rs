//! A guest at the gate: its socket and where it stands, and the reading of its password line.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::ids::Peer;
use crate::password::MAX_PASSWORD;
use crate::socket::Socket;
use crate::stream::Stream;
use crate::telnet::Telnet;

/// A client not seated yet: it owes its handshake or its password.
pub(super) struct Guest {
    pub(super) socket: Socket,
    pub(super) peer: Peer,
    pub(super) serial: u64,
    /// Waiting for the TLS handshake, or for the password line.
    pub(super) step: Step,
    pub(super) deadline: Instant,
    /// The password line so far, its telnet commands taken out (at most `MAX_PASSWORD` + 1
    /// bytes).
    pub(super) line: Vec<u8>,
    /// Bytes read at the password prompt, commands included (at most `MAX_INPUT`).
    pub(super) input: usize,
    /// Its telnet state, handed on with it.
    pub(super) telnet: Telnet,
    /// When its last byte arrived: the line timeout counts from here.
    pub(super) last_input: Instant,
    /// When its line timer, if one is armed, is due.
    pub(super) line_timer: Option<Instant>,
    /// It is on the gate's pending list.
    pub(super) pending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Handshake,
    Password,
}

impl Guest {
    /// Asks for the password (best effort: a few bytes the new socket takes at once).
    pub(super) fn prompt(&mut self) {
        let _ = self.socket.write(PROMPT);
        let _ = self.socket.flush();
    }

    /// Reads the password line a byte at a time, so that nothing after it is taken from the
    /// socket (it is the client's first message once seated), through the telnet filter a
    /// seated client's bytes go through: its commands taken out (their answers appended to
    /// `answers`), its line ended NVT-style if it speaks telnet. `Right` when the line ended.
    pub(super) fn read_line(&mut self, answers: &mut Vec<u8>) -> Heard {
        let mut byte = [0u8; 1];
        loop {
            match self.socket.read(&mut byte) {
                // At the end of its input, an unfinished line is its line, as once seated.
                Ok(0) if !self.line.is_empty() => return Heard::Right,
                Ok(0) => return Heard::Wrong,
                Ok(_) => {
                    self.input += 1;
                    self.last_input = Instant::now();
                    let (lead, kept) = self.telnet.filter(&mut byte, answers);
                    for text in lead.into_iter().chain(byte[..kept].iter().copied()) {
                        if text == b'\n' {
                            return Heard::Right;
                        }
                        self.line.push(text);
                    }
                    if !self.socket.is_tls() && self.input == 2 && self.line == [0x16, 0x03] {
                        return Heard::TlsOnPlain;
                    }
                    if self.line.len() > MAX_PASSWORD + 1 || self.input > MAX_INPUT {
                        return Heard::Wrong;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Heard::More,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Heard::Wrong,
            }
        }
    }

    /// Whether its partial line is due as a line at `now`: it sent no newline and no telnet
    /// command, and nothing for `--line-timeout`.
    pub(super) fn line_is_due(&self, now: Instant, line_timeout: Duration) -> bool {
        (!self.line.is_empty() || self.telnet.holds_iac())
            && !self.telnet.speaks()
            && self.last_input + line_timeout <= now
    }
}

/// What reading a password line found.
pub(super) enum Heard {
    More,
    /// From `read_line`: a line ended; from `judge` on: the password.
    Right,
    Wrong,
    TlsOnPlain,
}

const PROMPT: &[u8] = b"password:\n";
/// The most a guest may send at the prompt before its line ends, telnet commands included (a
/// telnet client's negotiation is some tens of bytes).
const MAX_INPUT: usize = 4 * MAX_PASSWORD;
