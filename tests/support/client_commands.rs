//! The plain-TCP client commands README.md's "Run it" tells people to type (`nc -N`, `ncat`,
//! `socat`, `telnet`), as the tests run them.
//!
//! Included with `#[path]` by the test files that need it.

#![allow(dead_code)] // Each test binary uses its own part.

use std::path::Path;

/// A client command README.md's "Run it" tells people to type, as the tests run it.
pub struct ClientCommand {
    /// What failure messages call it.
    pub name: &'static str,
    pub program: &'static str,
    /// The arguments that make it connect to `127.0.0.1:PORT`.
    pub args: fn(u16) -> Vec<String>,
    /// The Debian package that has it, for the message when it is missing.
    pub package: &'static str,
    /// Lines it prints before the server's greeting (on a pipe, not a terminal).
    pub banner: &'static [&'static str],
    /// Whether it exits by itself when the server closes the connection, with its stdin still
    /// open; if not, it exits at the end of its stdin.
    pub ends_by_itself: bool,
}

impl ClientCommand {
    /// Fails the test, naming the package to install, when the program is not there.
    #[track_caller]
    pub fn require(&self) {
        let ClientCommand {
            program, package, ..
        } = *self;
        assert!(
            Path::new(program).exists(),
            "{program} is missing: install {package} (apt-get install {package}); CI installs it"
        );
    }
}

/// `nc -N 127.0.0.1 PORT` (netcat-openbsd): `-N` shuts the connection down at the end of stdin,
/// so Ctrl-D leaves.
pub const NC_N: ClientCommand = ClientCommand {
    name: "nc -N",
    program: "/usr/bin/nc",
    args: |port| vec!["-N".into(), "127.0.0.1".into(), port.to_string()],
    package: "netcat-openbsd",
    banner: &[],
    ends_by_itself: false,
};

/// `ncat 127.0.0.1 PORT`.
pub const NCAT: ClientCommand = ClientCommand {
    name: "ncat",
    program: "/usr/bin/ncat",
    args: |port| vec!["127.0.0.1".into(), port.to_string()],
    package: "ncat",
    banner: &[],
    ends_by_itself: false,
};

/// `socat - TCP:127.0.0.1:PORT`.
pub const SOCAT: ClientCommand = ClientCommand {
    name: "socat",
    program: "/usr/bin/socat",
    args: |port| vec!["-".into(), format!("TCP:127.0.0.1:{port}")],
    package: "socat",
    banner: &[],
    ends_by_itself: true,
};

/// `telnet 127.0.0.1 PORT` (inetutils-telnet).
pub const TELNET: ClientCommand = ClientCommand {
    name: "telnet",
    program: "/usr/bin/telnet",
    args: |port| vec!["127.0.0.1".into(), port.to_string()],
    package: "telnet",
    banner: &[
        "Trying 127.0.0.1...",
        "Connected to 127.0.0.1.",
        "Escape character is '^]'.",
    ],
    ends_by_itself: true,
};
