//! The loop's timers: what each due timer does, and arming the per-client ones.

use std::time::{Duration, Instant};

use super::Server;
use crate::clients::{Clients, Marks};
use crate::ids::ConnId;
use crate::timers::Due;

impl Server {
    pub(super) fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(due) = self.timers.pop_due(now) {
            match due {
                Due::Line(key, id) => {
                    // The mark stays set meanwhile, so the read in `silent` arms no second timer.
                    // The read in `silent` may have shown it ends its lines: then it waits.
                    // A client held back (`--max-rate`, perhaps in the middle of a line) is not
                    // silent: the rest of its line waits unread in its socket.
                    if self.silent(key, id, self.line_timeout, now)
                        && self
                            .clients
                            .slot(key, id)
                            .is_some_and(|c| !c.waits_for_newline() && !c.is_held_back())
                    {
                        self.chat.line_timed_out(&mut self.clients, key);
                    }
                    // Bytes still unfinished (more came since it was armed): wait out the rest.
                    // Held back, the read its flood timer makes arms the line timer again.
                    self.clients.marks(key, id).map(Marks::disarm_line);
                    if !self.is_held_back(key, id) {
                        self.arm_line_timer(key, id);
                    }
                }
                Due::Idle(key, id) => {
                    let idle = self.idle_timeout;
                    if idle.is_some_and(|idle| self.silent(key, id, idle, now)) {
                        self.chat.time_out(&mut self.clients, key);
                    } else {
                        self.arm_idle_timer(key, id);
                    }
                }
                Due::Linger(key, id) => {
                    // Its output had its grace; its hearing out may go on a while longer.
                    let left = self
                        .clients
                        .slot(key, id)
                        .and_then(|c| c.hearing_time_left(now));
                    match left {
                        Some(left) => {
                            self.clients.drop_output(key, id);
                            self.timers.arm(now + left, Due::Linger(key, id));
                        }
                        None => self.chat.give_up(&mut self.clients, key, id),
                    }
                }
                Due::Flood(key, id) => {
                    // Read again within the turn's budget; still over the rate, it is held back
                    // again (or dropped) by `hold_back`.
                    if let Some(marks) = self.clients.marks(key, id) {
                        marks.set_flood_timer(false);
                        self.hear(key);
                    }
                }
                Due::AcceptRetry => {
                    // Still failing, `accept` arms the next retry itself.
                    self.listeners.retry_fired();
                    for index in 0..self.listeners.len() {
                        self.accept(index);
                    }
                }
                Due::Guest(key, serial) => self.guest_timer(key, serial),
                // Answered already, it is gone: this does nothing.
                Due::Ask(ask) => self.chat.answered(&mut self.clients, ask, false),
                Due::Scrape(key, id) => {
                    if let Some(metrics) = &mut self.metrics {
                        metrics.expire(key, id, self.poll.registry());
                    }
                }
                Due::Watchdog => {
                    // From the loop's own timer, so a loop that is stuck stops sending and systemd
                    // restarts it.
                    self.notify("WATCHDOG=1");
                    if let Some(period) = self.watchdog.filter(|_| self.notifier.is_on()) {
                        self.timers.arm(now + period, Due::Watchdog);
                    }
                }
            }
        }
    }

    /// Whether open client `(key, id)` has sent nothing for `span` at `now`. Bytes that arrived
    /// during a long turn wait unread in the socket, and no event announces them until the next
    /// poll: they are heard first, so a timer that measures silence never fires on them (and never
    /// cuts a line in two).
    pub(super) fn silent(&mut self, key: usize, id: ConnId, span: Duration, now: Instant) -> bool {
        let silent = |clients: &mut Clients| {
            let conn = clients.slot(key, id).filter(|conn| conn.is_open());
            conn.is_some_and(|conn| conn.last_input() + span <= now)
        };
        silent(&mut self.clients) && {
            self.hear_now(key);
            silent(&mut self.clients)
        }
    }

    /// Whether client `(key, id)` is held back by its bucket (`--max-rate`).
    fn is_held_back(&self, key: usize, id: ConnId) -> bool {
        self.clients
            .get(key)
            .is_some_and(|conn| conn.id() == id && conn.is_held_back())
    }

    /// Open client `(key, id)` stopped reading at an empty bucket (`--max-rate`): its socket is
    /// left unread, so TCP makes the sender wait, until `Due::Flood` reads it again once tokens
    /// are back. Held back without a break for `--flood-timeout`, it is flooding: dropped.
    pub(super) fn hold_back(&mut self, key: usize, id: ConnId) {
        let now = Instant::now();
        let conn = self.clients.slot(key, id).filter(|conn| conn.is_open());
        let Some(bucket) = conn.and_then(|conn| conn.bucket()) else {
            return;
        };
        if bucket.is_overdue(now) {
            return self.chat.flood(&mut self.clients, key);
        }
        let at = bucket.wake_at();
        let marks = self.clients.marks(key, id);
        if marks.is_some_and(|marks| marks.set_flood_timer(true)) {
            self.timers.arm(at, Due::Flood(key, id));
        }
    }

    /// Arms the line timer of client `(key, id)` if it is open with an unfinished line, has none
    /// armed, and has never ended a line with a newline (the lab's client; the others wait for
    /// their newline).
    pub(super) fn arm_line_timer(&mut self, key: usize, id: ConnId) {
        let Some(conn) = self.clients.slot(key, id) else {
            return;
        };
        let at = conn.last_input() + self.line_timeout;
        if conn.is_open()
            && conn.has_partial()
            && !conn.waits_for_newline()
            && self.clients.marks(key, id).is_some_and(Marks::arm_line)
        {
            self.timers.arm(at, Due::Line(key, id));
        }
    }

    /// Arms the idle timer of open client `(key, id)`, due `--idle-timeout` after its last input.
    pub(super) fn arm_idle_timer(&mut self, key: usize, id: ConnId) {
        if let (Some(idle), Some(conn)) = (self.idle_timeout, self.clients.slot(key, id))
            && conn.is_open()
        {
            self.timers
                .arm(conn.last_input() + idle, Due::Idle(key, id));
        }
    }
}
