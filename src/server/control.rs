//! The operator's side of the loop: the console's lines, the signals, the shutdown, and the
//! metrics scrapes.

use std::rc::Rc;
use std::time::Instant;

use mio::Token;
use mio::event::Event;

use super::{Phase, Server};
use crate::chat;
use crate::console::{self, Command, ConsoleInput};
use crate::metrics::{self, After, Metrics};
use crate::report;
use crate::signals::Signal;
use crate::stats::Stats;
use crate::timers::Due;

impl Server {
    /// Sends one sd_notify message; the first failure is reported and turns notifying off.
    pub(super) fn notify(&mut self, state: &str) {
        if let Err(e) = self.notifier.notify(state) {
            report::notify_failed(&e);
        }
    }

    /// Tells systemd the online count when it changed, at most once a turn.
    pub(super) fn notify_status(&mut self) {
        let online = self.clients.len();
        if self.notifier.is_on() && self.status_sent != Some(online) {
            self.status_sent = Some(online);
            self.notify(&format!("STATUS={}", status(online)));
        }
    }
    /// A `--metrics` event: new scrapes get their timer; a whole request gets its answer, from a
    /// snapshot taken now.
    pub(super) fn scrape_event(&mut self, token: Token, event: &Event) {
        let Some(metrics) = &mut self.metrics else {
            return;
        };
        let registry = self.poll.registry();
        let Some(key) = Metrics::scrape_of(token) else {
            let deadline = Instant::now() + metrics::SCRAPE_TIMEOUT;
            for (key, id) in metrics.accept(registry) {
                self.timers.arm(deadline, Due::Scrape(key, id));
            }
            return;
        };
        if event.is_writable() {
            metrics.on_writable(key, registry);
        }
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        if readable && let After::WantsStats(key) = metrics.on_readable(key, registry) {
            let stats = self.stats();
            if let Some(metrics) = &mut self.metrics {
                metrics.answer_stats(key, &stats, self.poll.registry());
            }
        }
    }

    /// The figures of `/stats` and `GET /metrics`, gathered now.
    pub(super) fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        self.clients.stats(&mut stats);
        stats.refused_full = self.counts.refused_full;
        stats.refused_error = self.counts.refused_error;
        stats.refused_access = self.access.refused();
        stats.refused_tls = self.counts.refused_tls;
        stats.refused_auth = self.counts.refused_auth;
        stats.relay_deliveries = self.chat.relay_deliveries();
        stats.timers = self.timers.len() as u64;
        stats.turns = self.counts.turns;
        stats.busy = self.counts.busy;
        stats
    }

    pub(super) fn drain_console(&mut self) {
        while let Some(input) = self.console.next() {
            match input {
                ConsoleInput::Line(line) => match console::parse(&line) {
                    Some(Ok(command)) => self.execute(command),
                    Some(Err(error)) => report::console_error(&error),
                    None => {}
                },
                ConsoleInput::Typed { line, to } => match console::parse_typed(&line) {
                    Some(Ok(Command::Reply(text))) => {
                        self.chat.reply_to(&mut self.clients, to, &text);
                    }
                    Some(Ok(command)) => self.execute(command),
                    Some(Err(error)) => report::console_error(&error),
                    None => {}
                },
                ConsoleInput::Complete { prefix, reply } => {
                    let _ = reply.send(self.chat.roster(&self.clients, &prefix));
                }
                ConsoleInput::TooLong => report::console_too_long(console::MAX_CONSOLE_LINE),
                ConsoleInput::Closed(error) => report::console_closed(error.as_ref()),
            }
        }
    }

    /// Tells the line editor, if the console is one, where bare lines go now, when that changed
    /// since the last turn: one slot lookup a turn, and a hand-off that never waits.
    pub(super) fn aim_console(&mut self) {
        let Some(mailbox) = self.console.editor() else {
            return;
        };
        let aim = self.chat.aim(&mut self.clients);
        let same = match (&aim, &self.console_aim) {
            (None, Some(None)) => true,
            (Some((id, sticky, name)), Some(Some((was_id, was_sticky, was_name)))) => {
                id == was_id
                    && sticky == was_sticky
                    && match (name, was_name) {
                        (Some(name), Some(was)) => Rc::ptr_eq(name, was),
                        (None, None) => true,
                        _ => false,
                    }
            }
            _ => false,
        };
        if !same {
            mailbox.point(aim.as_ref().map(chat::target));
            self.console_aim = Some(aim);
        }
    }

    /// The loop's part of a command: `/quit` is a shutdown, and a client is heard out before it is
    /// kicked (what it sent before the kick is heard, not dropped with the socket); the chat does
    /// the rest.
    pub(super) fn execute(&mut self, command: Command) {
        match command {
            Command::Quit => self.begin_shutdown("/quit"),
            Command::Stats => report::stats(&self.stats()),
            Command::Ban { target, minutes } => self.ban(target, minutes),
            Command::Bans => self.list_bans(),
            Command::Unban(cidr) => self.unban(cidr),
            Command::Help => report::console_help(self.console.editor().is_some()),
            Command::Kick(id) => {
                if let Some(key) = self.clients.find(id) {
                    self.hear(key);
                }
                self.chat.command(&mut self.clients, command);
            }
            command => self.chat.command(&mut self.clients, command),
        }
    }

    /// SIGINT and SIGTERM stop the server. SIGHUP is a hangup when the console is a terminal (the
    /// operator's terminal closed: shut down as `/quit` does) and a reload when headless (the log
    /// file is reopened and the rule files read again). SIGUSR1 reopens the log file. The rest are reported and ignored.
    pub(super) fn drain_signals(&mut self) {
        for signal in self.interrupts.pending() {
            match signal {
                Signal::Stop(cause) => self.begin_shutdown(cause),
                Signal::Hangup if self.console_is_terminal => self.begin_shutdown("SIGHUP"),
                Signal::Hangup => {
                    report::reopen_log_file("SIGHUP");
                    self.reload_rules();
                    self.reload_password();
                }
                Signal::ReopenLog => report::reopen_log_file("SIGUSR1"),
                Signal::Ignored(name) => report::signal_ignored(&name),
            }
        }
    }

    /// Stops accepting, hears and tells every client, and gives their queues `GRACE` to drain.
    /// Every trigger (`/quit`, SIGINT, SIGTERM, SIGHUP on a terminal) comes here, and only the first
    /// one counts.
    pub(super) fn begin_shutdown(&mut self, cause: &str) {
        if self.phase != Phase::Running {
            return;
        }
        report::shutting_down(cause);
        self.notify("STOPPING=1");
        self.interrupts.exit_on_next_interrupt();
        self.listeners.close(self.poll.registry());
        self.close_gate();
        // What a client sent before the shutdown is heard, not dropped with the socket.
        for key in self.clients.keys() {
            if !self.clients.is_pending(key) {
                self.hear(key);
            }
        }
        self.chat.shut_down(&mut self.clients);
        // Each client that cannot flush at once gets its `Due::Linger` grace in `tend`.
        self.phase = Phase::Draining;
    }
}

/// The `STATUS=` text systemd shows (`systemctl status chatd`).
pub(super) fn status(online: usize) -> String {
    format!("{online} online")
}
