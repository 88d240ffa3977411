//! chatd: a TCP chat server on one thread and one `mio::Poll` loop.
//!
//! Clients connect with netcat or any line-based client; every connect, message and disconnect is
//! reported as one whole line, and the operator answers any client, or all, from stdin.
//!
//! # Layout
//! Each module imports only those above it in this list, so the graph has no cycle:
//! - `ids`: the shared words: `ConnId`, `Peer`, `Reason` (leaf).
//! - `access`: who may connect: CIDR blocks, `--allow`/`--deny`, bans, the per-address count and
//!   connect rate (leaf; pure but for reading the rule files).
//! - `escape`: client bytes made safe for a terminal (leaf, pure).
//! - `clock`, `json`: the time and the JSON of a report line, into bytes (leaves, pure).
//! - `stats`: the `/stats` and `/metrics` figures, and their Prometheus text (pure).
//! - `wrap`: a report line broken into indented rows to fit the operator's terminal (leaf, pure).
//! - `framing`: bytes → lines (leaf, pure).
//! - `flood`: the token bucket of `--max-rate` and the flood rule (leaf, pure).
//! - `telnet`: telnet commands taken out of a client's bytes, and the answers it waits for (leaf,
//!   pure).
//! - `queue`: a client's output queue of shared lines, capped in bytes (leaf).
//! - `timers`: the deadline queue that sets the poll timeout.
//! - `logfile`: the `--log-file` writer, which survives the file going away.
//! - `logger`: the headless logger: each report formatted once, written once per turn; the
//!   per-line message report copied into its buffer without `log`.
//! - `console`: the stdin thread, and `parse` for what the operator types (pure); on a terminal,
//!   the line editor and the hand-off that brings it the reports.
//! - `report`: every line the operator reads, and the logger setup.
//! - `room`: the `--relay` room's lines and client commands (pure).
//! - `names`: the room's nicknames: the rule, who has which, the names held after a leave (pure:
//!   the caller passes the time).
//! - `stream`: what a connection needs of its socket (a trait: TCP, or memory in tests).
//! - `tls`: the rustls server configuration, and `TlsStream`, plaintext over one
//!   `ServerConnection` on the loop.
//! - `socket`: `Socket`, plain TCP or TLS: the socket the registry holds.
//! - `password`: `--password-file`, and the constant-time check.
//! - `connection`: one peer's I/O: socket, framing state, output queue, state.
//! - `bus`: `--bus`: the bus thread (async-nats on its own current-thread runtime), its channels,
//!   the frames' bytes and what is known of the other instances.
//! - `clients`: the registry: every connection, the never-reused ids, the loop's marks.
//! - `chat`: what a line, a command, a join and a leave cause; no sockets, no poll.
//! - `config`: the command line → [`Config`].
//! - `gate`: admission: clients waiting for their TLS handshake or their password, with no id
//!   and no place in the room until they pass.
//! - `generate`: the man page and shell completions, from the clap definition.
//! - `systemd`: socket activation (LISTEN_FDS, LISTEN_FDNAMES) and sd_notify (READY, STATUS,
//!   STOPPING, WATCHDOG); the environment and a datagram socket, nothing of the loop's (leaf).
//! - `listeners`: binding the `--listen` addresses, and accepting within a budget.
//! - `metrics`: the `--metrics` HTTP listener: `GET /metrics` parsed with httparse, answered
//!   from a `Stats` snapshot the loop takes; its connections' limits.
//! - `signals`: the signals chatd answers, as loop events; the second interrupt's exit.
//! - `server`: the loop: poll, tokens, accept, reads, timers, `before_sleep`, signals, shutdown.
//!
//! docs/design.md describes the shape of a turn and what each module may not do.

// Nothing a client, the console or the environment sends may panic the server.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod access;
mod bus;
mod chat;
mod clients;
mod clock;
mod config;
mod connection;
mod console;
mod escape;
mod flood;
mod framing;
mod gate;
mod generate;
mod ids;
mod json;
mod listeners;
mod logfile;
mod logger;
mod metrics;
mod names;
mod password;
mod queue;
mod report;
mod room;
mod server;
mod signals;
mod socket;
mod stats;
mod stream;
mod systemd;
mod telnet;
mod timers;
mod tls;
mod wrap;

// What the binary, the tests, the benchmarks and the fuzz targets use.
pub use access::{Cidr, parse_list as parse_rule_list};
pub use config::{Config, Generate};
pub use console::finish_editor;
pub use console::parse as parse_console_line;
pub use escape::escape;
pub use framing::{Line, LineDecoder};
pub use generate::generate;
pub use ids::{ConnId, Peer};
pub use report::{
    Messages, flush as flush_reports, init_logging, init_logging_nowhere, label,
    messages as report_messages,
};
pub use server::Server;
pub use systemd::{ActivationError, Passed, take_listeners as take_passed_listeners};
pub use telnet::Telnet;
