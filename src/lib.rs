//! chatd: a TCP chat server on one thread and one `mio::Poll` loop.
//!
//! Clients connect with netcat or any line-based client; every connect, message and disconnect is
//! reported as one whole line, and the operator answers any client, or all, from stdin.
//!
//! # Layout
//! - `config`: the command line → [`Config`].
//! - `server`: the loop: tokens, dispatch, accept, pending reads, timers, `before_sleep`, shutdown.
//! - `connection`: one peer: socket, id, framing state, output queue, state.
//! - `queue`: a client's output queue of shared lines, capped in bytes.
//! - `framing`: bytes → lines (pure).
//! - `console`: the stdin thread, and `parse` for what the operator types (pure).
//! - `room`: the `--relay` room: client commands and the lines clients read.
//! - `report`: every line the operator reads, escaping, logger setup.
//! - `logger`: the headless logger: each report formatted once, written once per turn.
//! - `logfile`: the `--log-file` writer, which survives the file going away.
//! - `timers`: the deadline queue that sets the poll timeout.

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

pub mod config;
pub mod connection;
pub mod console;
pub mod framing;
pub mod logfile;
pub mod logger;
pub mod queue;
pub mod report;
pub mod room;
pub mod server;
pub mod timers;

pub use config::Config;
pub use server::Server;
