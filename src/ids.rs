//! The words every module shares: which client ([`ConnId`]), where it is ([`Peer`]) and why it
//! left ([`Reason`]).
//!
//! A leaf: it imports nothing of the crate's, so that any module may use it without a cycle.

use std::fmt;
use std::net::SocketAddr;

/// A client's number for the server's whole life: slab keys and tokens come back, ids never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A client's address as the operator reads it: an IPv4 client that reached an IPv6 listener is
/// shown as plain IPv4, not `[::ffff:a.b.c.d]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => write!(f, "{v4}:{}", v6.port()),
                None => write!(f, "{v6}"),
            },
            SocketAddr::V4(v4) => write!(f, "{v4}"),
        }
    }
}

/// Why a client left; `Display` gives the word in its `disconnect` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The client sent `exit`.
    Exit,
    /// The client closed its side (EOF).
    Closed,
    /// The connection was reset or failed.
    Reset,
    /// The operator used `/kick`.
    Kicked,
    /// The server shut down.
    Shutdown,
    /// The client did not read, and its output queue passed `--max-queue`.
    Slow,
    /// The client sent nothing for `--idle-timeout`.
    Timeout,
    /// The client kept sending past `--max-rate` for `--flood-timeout`.
    Flood,
}

impl Reason {
    /// Every reason, in the order `/stats` and `/metrics` list them.
    pub const ALL: [Reason; 8] = [
        Reason::Exit,
        Reason::Closed,
        Reason::Reset,
        Reason::Kicked,
        Reason::Shutdown,
        Reason::Slow,
        Reason::Timeout,
        Reason::Flood,
    ];

    /// This reason's place in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the server closed the client (rather than the client leaving): what it had sent by
    /// then is still heard, and a line it was in the middle of is reported cut.
    pub fn hears_out(self) -> bool {
        matches!(
            self,
            Reason::Kicked | Reason::Shutdown | Reason::Slow | Reason::Timeout
        )
    }

    /// Whether the server closed the client: a line it was in the middle of is reported cut. A
    /// flooder is not heard out (what it sent past the rate is dropped), but it is cut all the same.
    pub fn cuts(self) -> bool {
        self.hears_out() || self == Reason::Flood
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Exit => "exit",
            Reason::Closed => "closed",
            Reason::Reset => "reset",
            Reason::Kicked => "kicked",
            Reason::Shutdown => "shutdown",
            Reason::Slow => "slow",
            Reason::Timeout => "timeout",
            Reason::Flood => "flood",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_mapped_ipv4_peers_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4000"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Peer(mapped).to_string(), "127.0.0.1:4000");
        let v6: SocketAddr = "[::1]:4000".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Peer(v6).to_string(), "[::1]:4000");
    }
}
