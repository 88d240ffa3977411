//! Telnet on the way in: a client's bytes with its telnet commands taken out, and the answers a
//! telnet client waits for.
//!
//! A `telnet` client sends commands (`IAC ...`) among the text: option negotiation, `SB ... SE`
//! subnegotiation, `IAC IAC` for a literal 0xFF, and, for some keys, a command followed by
//! `IAC DO TIMING-MARK`, after which it shows nothing from the server until the mark is answered.
//! [`Telnet::filter`] strips them in place, however they are split across reads, and writes the
//! answers: `DO TIMING-MARK` always gets `WILL TIMING-MARK`, other options are refused, and the
//! client's first command makes chatd ask for `BINARY` input, so that UTF-8 arrives intact from
//! then on. Nothing is answered before the client's first command: an `nc` user never sees a
//! stray byte.
//!
//! Before binary input, inetutils telnet (2.4, probed byte by byte) replaces a typed byte whose
//! low 7 bits match one of its keys by a command: 0x83 (^C) by `IP`, 0x8F (^O) by `AO`, 0x9A
//! (^Z) by `SUSP`, 0x9C (^\) by `BRK`. Inside an unfinished UTF-8 sequence such a command stands
//! for that byte and is put back; outside one, `IP` is Ctrl-C: the client wants to leave
//! ([`Telnet::interrupted`]). Clients that showed they speak telnet also end lines NVT-style:
//! `CR LF`, `CR NUL`, a bare `CR` and `LF` each end one line (a bare `CR` is handed on as `LF`).
//!
//! Pure: no I/O, no clock. A read with no 0xFF from a client that never sent a command costs one
//! `memchr` and a look at its last four bytes.

/// Telnet state of one client, kept between its reads.
#[derive(Debug, Default)]
pub struct Telnet {
    /// Where the parser stands: a command may be cut by the end of a read.
    state: State,
    /// The client has sent a telnet command: it is answered, and its lines end NVT-style.
    spoken: bool,
    /// Whether the client sends in binary (its side of the BINARY option).
    binary: Binary,
    /// UTF-8 continuation bytes still due after the last text byte: a replacing command inside
    /// an unfinished sequence stands for a byte of it.
    utf8_due: u8,
    /// The last text byte was a `CR` that ended a line: an `LF` or `NUL` right after belongs to it.
    after_cr: bool,
    /// The client sent `IP` (Ctrl-C) outside a UTF-8 sequence: it leaves, and its text from there
    /// on is not heard (its commands are still answered, so it shows the goodbye).
    interrupted: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Text,
    /// After `IAC`.
    Iac,
    /// After `IAC WILL|WONT|DO|DONT`: the option byte comes next.
    Option(u8),
    /// Inside `IAC SB ...`, with how many bytes were skipped (bounded by `SB_MAX`).
    Sb(usize),
    /// After `IAC` inside a subnegotiation.
    SbIac(usize),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Binary {
    #[default]
    No,
    /// We sent `DO BINARY`; its answer is not in yet.
    Asked,
    Yes,
}

impl Telnet {
    /// Strips telnet commands from `data` in place. The text is `data[..len]`, preceded by `lead`
    /// if there is one: a stray 0xFF that ended the previous read, found not to be a command (the
    /// one case where text outgrows its bytes). The answers owed to the client are appended to
    /// `answers` (never more than `data.len() + 3` bytes).
    pub fn filter(&mut self, data: &mut [u8], answers: &mut Vec<u8>) -> (Option<u8>, usize) {
        let from = if self.spoken || self.state != State::Text {
            0
        } else {
            match memchr::memchr(IAC, data) {
                // The fast path: nothing to strip, only the UTF-8 state to carry over.
                None => {
                    self.note_text(data);
                    return (None, data.len());
                }
                Some(at) => {
                    self.note_text(&data[..at]);
                    at
                }
            }
        };
        let mut out = Out {
            data,
            len: from,
            read: from,
            lead: None,
            leading: false,
        };
        while out.read < out.data.len() {
            let byte = out.data[out.read];
            self.step(byte, &mut out, answers);
            out.read += 1;
        }
        (out.lead, out.len)
    }

    /// Whether the client pressed Ctrl-C (`IP` outside a UTF-8 sequence): it wants to leave.
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    /// A 0xFF that ended the last read, taken as text now that no command byte follows it (the
    /// client's input ended).
    pub fn take_stray_iac(&mut self) -> Option<u8> {
        (self.state == State::Iac && !self.interrupted).then(|| {
            self.state = State::Text;
            self.utf8_due = 0;
            IAC
        })
    }

    /// Whether its last read ended with a 0xFF that is held, waiting for the byte that says
    /// whether it starts a command.
    pub fn holds_iac(&self) -> bool {
        self.state == State::Iac
    }

    /// Whether the client has sent a telnet command, or its last read ended inside what may be
    /// its first (its next bytes may end lines NVT-style).
    pub fn speaks_or_may(&self) -> bool {
        self.spoken || self.state != State::Text
    }

    /// Whether the client has sent a telnet command.
    pub fn speaks(&self) -> bool {
        self.spoken
    }

    fn step(&mut self, byte: u8, out: &mut Out<'_>, answers: &mut Vec<u8>) {
        match self.state {
            State::Text if byte == IAC => self.state = State::Iac,
            State::Text => self.text(byte, out),
            State::Iac => {
                self.state = State::Text;
                self.command(byte, out, answers);
            }
            State::Option(verb) => {
                self.state = State::Text;
                self.answer(verb, byte, answers);
            }
            State::Sb(skipped) if byte == IAC => self.state = State::SbIac(skipped),
            // A subnegotiation that never ends is given up after `SB_MAX` bytes: what follows
            // is text again, so a stray `IAC SB` cannot swallow a client's every line.
            State::Sb(skipped) if skipped >= SB_MAX => self.state = State::Text,
            State::Sb(skipped) => self.state = State::Sb(skipped + 1),
            State::SbIac(_) if byte == SE => self.state = State::Text,
            State::SbIac(skipped) if byte == IAC => self.state = State::Sb(skipped + 1),
            // Any other command ends the subnegotiation and is taken as a command.
            State::SbIac(_) => {
                self.state = State::Text;
                self.command(byte, out, answers);
            }
        }
    }

    /// The byte after `IAC`.
    fn command(&mut self, byte: u8, out: &mut Out<'_>, answers: &mut Vec<u8>) {
        if byte < EOF {
            // Not a telnet command (they are 236 to 255): both bytes are text, a stray 0xFF from
            // a client that does not speak telnet.
            out.leading = out.read == 0; // The 0xFF came in the previous read.
            self.text(IAC, out);
            out.leading = false;
            return self.text(byte, out);
        }
        if byte == IAC {
            return self.text(IAC, out);
        }
        if !self.spoken {
            self.spoken = true;
            // From now on the client sends in binary: UTF-8 comes through untouched.
            answers.extend_from_slice(&[IAC, DO, BINARY]);
            self.binary = Binary::Asked;
        }
        match byte {
            WILL | WONT | DO | DONT => self.state = State::Option(byte),
            SB => self.state = State::Sb(0),
            IP if self.utf8_due == 0 => self.interrupted = true,
            _ => {
                if let Some(&(_, replaced)) = REPLACED.iter().find(|(cmd, _)| *cmd == byte)
                    && self.utf8_due > 0
                {
                    self.text(replaced, out);
                }
                // NOP, DM, AYT, EC, EL, GA, SE out of place, and a key outside a UTF-8
                // sequence: nothing to hear.
            }
        }
    }

    /// `IAC <verb> <option>`: refuse what chatd does not do; answer only what changes a state
    /// (RFC 854's rule against loops), except `DO TIMING-MARK`, always answered.
    fn answer(&mut self, verb: u8, option: u8, answers: &mut Vec<u8>) {
        let reply = match (verb, option) {
            (DO, TIMING_MARK) => Some(WILL),
            // chatd's own output stays NVT: inetutils telnet receiving in binary stops turning
            // `\n` into `\r\n` on the terminal, and every line would start where the last ended.
            (DO, _) => Some(WONT),
            (WILL, BINARY) => match std::mem::replace(&mut self.binary, Binary::Yes) {
                Binary::No => Some(DO),
                Binary::Asked | Binary::Yes => None,
            },
            (WILL, _) => Some(DONT),
            (WONT, BINARY) => match std::mem::replace(&mut self.binary, Binary::No) {
                Binary::Yes => Some(DONT),
                Binary::Asked | Binary::No => None,
            },
            _ => None, // WONT and DONT of what chatd never had on.
        };
        if let Some(reply) = reply {
            answers.extend_from_slice(&[IAC, reply, option]);
        }
    }

    /// One byte of text, NVT line ends for a client that speaks telnet.
    fn text(&mut self, byte: u8, out: &mut Out<'_>) {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        if self.interrupted {
            return;
        }
        if self.spoken {
            if after_cr && (byte == b'\n' || byte == 0) {
                return;
            }
            if byte == b'\r' {
                self.after_cr = true;
                self.utf8_due = 0;
                return out.push(b'\n');
            }
        }
        self.utf8_due = utf8_step(self.utf8_due, byte);
        out.push(byte);
    }

    /// Carries the UTF-8 state over `text`, passed through untouched. An unfinished sequence
    /// starts within the last four bytes, so they are all that is looked at.
    fn note_text(&mut self, text: &[u8]) {
        let mut due = self.utf8_due;
        if text.len() >= 4 {
            due = 0;
        }
        for &byte in &text[text.len().saturating_sub(4)..] {
            due = utf8_step(due, byte);
        }
        self.utf8_due = due;
    }
}

/// The text kept so far, written over the bytes it came from: every command is at least two
/// bytes and stands for at most one, so the write index stays at or below the read index, but
/// for a stray 0xFF carried from the previous read, which goes in `lead`.
struct Out<'a> {
    data: &'a mut [u8],
    len: usize,
    /// The index of the byte being looked at.
    read: usize,
    lead: Option<u8>,
    /// The next byte goes to `lead`.
    leading: bool,
}

impl Out<'_> {
    fn push(&mut self, byte: u8) {
        if self.leading {
            self.lead = Some(byte);
        } else {
            self.data[self.len] = byte;
            self.len += 1;
        }
    }
}

/// UTF-8 continuation bytes still due after `byte`, `due` having been due before it.
fn utf8_step(due: u8, byte: u8) -> u8 {
    match byte {
        0x80..=0xBF => due.saturating_sub(1),
        0xC0..=0xDF => 1,
        0xE0..=0xEF => 2,
        0xF0..=0xF7 => 3,
        _ => 0,
    }
}

/// The commands inetutils telnet sends in place of a typed byte, and that byte (as probed: the
/// other bytes 0x80-0xBF pass, but for 0x85, its echo toggle, which it swallows, and 0x9D, its
/// escape key, which opens its `telnet>` prompt; README.md says so).
const REPLACED: [(u8, u8); 4] = [(IP, 0x83), (AO, 0x8F), (SUSP, 0x9A), (BRK, 0x9C)];
/// The longest subnegotiation skipped; chatd asks for none.
const SB_MAX: usize = 512;

const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const AO: u8 = 245;
const IP: u8 = 244;
const BRK: u8 = 243;
const SE: u8 = 240;
const SUSP: u8 = 237;
/// The lowest command (RFC 1184's EOF).
const EOF: u8 = 236;
const BINARY: u8 = 0;
const TIMING_MARK: u8 = 6;

#[cfg(test)]
mod tests;
