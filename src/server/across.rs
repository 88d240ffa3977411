//! The loop's side of `--bus`: draining what the bus thread heard (woken through the shared
//! `Waker`, within the turn's work budget), and handing the chat's frames to the thread once a
//! turn, after the clients were seen to.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Waker;

use super::Server;
use crate::bus::asks::ASK_TIMEOUT;
use crate::bus::{Bus, Inbound, NameOp, What};
use crate::chat::Chat;
use crate::config::Config;
use crate::report;
use crate::timers::Due;

/// The room's link to the other instances, as the loop keeps it.
pub(super) struct Span {
    bus: Bus,
    /// Whether the bus is connected (lines that find its queue full are then reported at once).
    up: bool,
    /// The last reason the bus was unavailable, reported once until it changes.
    trouble: Option<String>,
    /// The turn's frames on their way out, with the number of the `/msg` each carries (kept for
    /// its memory).
    outbox: Vec<(What, Option<u64>)>,
    /// The turn's answers to other instances' `/msg`s.
    answers: Vec<String>,
    /// The turn's claims and releases of names.
    name_ops: Vec<NameOp>,
    /// What was last reported of the bucket of names: said again only when it changes.
    names_shared: Option<bool>,
}

impl Span {
    /// Starts the bus thread for `--bus`, if given, and tells the chat its room spans instances.
    pub(super) fn start(
        config: &Config,
        chat: &mut Chat,
        waker: &Arc<Waker>,
    ) -> io::Result<Option<Span>> {
        let Some(settings) = config.bus() else {
            return Ok(None);
        };
        chat.span(&settings.node);
        Ok(Some(Span {
            bus: Bus::start(settings, Arc::clone(waker))?,
            up: false,
            trouble: None,
            outbox: Vec::new(),
            answers: Vec::new(),
            name_ops: Vec::new(),
            names_shared: None,
        }))
    }

    pub(super) fn is_waiting(&self) -> bool {
        self.bus.is_waiting()
    }
}

impl Server {
    /// Takes what the bus thread queued, while the turn has work left (each frame costs what a
    /// member's line costs: one delivery per member); the rest waits for the next turn, which then
    /// does not sleep.
    pub(super) fn drain_bus(&mut self) {
        let Some(span) = &mut self.bus else {
            return;
        };
        span.bus.begin_drain();
        while self.work_left > 0 {
            let Some(inbound) = span.bus.next() else {
                break;
            };
            match inbound {
                Inbound::Frame(frame, reply) => {
                    let cost = self.chat.line_cost(self.clients.len());
                    self.work_left = self.work_left.saturating_sub(cost);
                    self.chat
                        .hear_across(&mut self.clients, frame, reply.as_deref());
                }
                Inbound::Answered { ask, delivered } => {
                    self.chat.answered(&mut self.clients, ask, delivered);
                }
                Inbound::Connected { unshared } => {
                    span.up = true;
                    span.trouble = None;
                    report::bus_connected(unshared + span.bus.take_unshared());
                    self.chat.hello(&self.clients);
                }
                Inbound::Lost => {
                    span.up = false;
                    // Until it is back, names are checked as this instance knows them.
                    self.chat.share_names(false);
                    report::bus_lost();
                }
                Inbound::Unavailable(reason) => {
                    if span.trouble.as_deref() != Some(reason.as_str()) {
                        report::bus_unavailable(&reason);
                        span.trouble = Some(reason);
                    }
                }
                Inbound::Names(trouble) => {
                    let shared = trouble.is_none();
                    self.chat.share_names(shared);
                    if span.names_shared != Some(shared) {
                        report::bus_names(trouble.as_deref());
                        span.names_shared = Some(shared);
                    }
                    if shared {
                        self.chat.claim_all(&self.clients);
                    }
                }
                Inbound::Claimed {
                    key,
                    id,
                    name,
                    refused,
                } => self
                    .chat
                    .claimed(&mut self.clients, key, id, &name, refused),
                Inbound::NameLost(name) => self.chat.name_lost(&mut self.clients, &name),
                Inbound::SlowConsumer(times) => report::bus_slow_consumer(times),
                Inbound::Malformed(why) => report::bus_malformed(&why),
            }
        }
    }

    /// Publishes what the chat shared this turn; while the bus is up, lines its queue had no room
    /// for are reported (while it is down they are counted until it returns).
    pub(super) fn share_out(&mut self) {
        let Some(span) = &mut self.bus else {
            return;
        };
        self.chat.take_outbox(&mut span.outbox);
        self.chat.take_name_ops(&mut span.name_ops);
        for op in span.name_ops.drain(..) {
            if let (false, NameOp::Claim { key, id, name, .. }) = (span.bus.name_op(op.clone()), op)
            {
                // The thread is that far behind: the name was checked here, and it stands.
                self.chat.claimed(&mut self.clients, key, id, &name, None);
            }
        }
        let online = self.clients.len();
        for (what, ask) in span.outbox.drain(..) {
            let sent = span.bus.publish(&what, online, ask);
            match ask {
                // Not on its way: its member is told now.
                Some(ask) if !sent => self.chat.answered(&mut self.clients, ask, false),
                // The bus thread says what became of it within `ASK_TIMEOUT`, unless it is stuck
                // (waiting on a stopped nats-server): the member is told by this deadline anyway.
                Some(ask) => self
                    .timers
                    .arm(Instant::now() + ASK_DEADLINE, Due::Ask(ask)),
                None => {}
            }
        }
        self.chat.take_answers(&mut span.answers);
        for to in span.answers.drain(..) {
            span.bus.answer(to);
        }
        span.bus.set_online(online);
        if span.up {
            let unshared = span.bus.take_unshared();
            if unshared > 0 {
                report::bus_behind(unshared);
            }
        }
    }
}

/// The loop's own deadline for a `/msg` sent across: the bus thread's `ASK_TIMEOUT`, and a little
/// more, so that the thread, when it is not stuck, says first.
const ASK_DEADLINE: Duration = ASK_TIMEOUT.saturating_add(Duration::from_millis(500));
