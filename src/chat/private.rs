//! `/msg NAME text`, here and across instances. A member of this instance gets it at once; for a
//! name no member here has, the line goes out on the bus as a `to` frame with a reply subject, the
//! instance that has a member of that name delivers it and answers, and the sender is told nobody
//! has the name when no answer comes (`bus/asks.rs`: within `ASK_TIMEOUT`, or at once while the
//! bus is down). The frame carries its send time, and the receiver drops one that comes too late
//! to be answered in time (`asks::too_late`): what the sender was told was not delivered never is. The loop never waits for it: the sender's side is one entry in `Across::asks`.
//!
//! Deliberately not here: the frame's bytes (`bus/wire.rs`), or the wait (`bus/link.rs`).

use std::time::{Instant, SystemTime};

use super::{Chat, across};
use crate::bus::asks::{self, ASK_TIMEOUT, MAX_ASKS};
use crate::bus::{Frame, What};
use crate::clients::Clients;
use crate::connection::Stream;
use crate::ids::ConnId;
use crate::report;
use crate::room;

/// A `/msg` of this instance on its way to another.
#[derive(Debug)]
pub(super) struct Ask {
    key: usize,
    id: ConnId,
    to: String,
    since: Instant,
}

impl Chat {
    /// `/msg NAME text` from member `(key, id)`, called `from`: `text` for the member called `to`
    /// alone, here or on another instance, as `<from> (to you): <text>`. The sender hears back only
    /// if it could not be delivered.
    pub(super) fn private<S: Stream>(
        &mut self,
        clients: &mut Clients<S>,
        (key, id): (usize, ConnId),
        from: &str,
        to: &[u8],
        text: &[u8],
    ) {
        if to.is_empty() || text.is_empty() {
            let _ = clients.send(key, room::msg_usage());
            return;
        }
        // A recipient that cannot take it is dropped (`slow`) or failing: leaving, as good as gone.
        let delivered = match self.recipient(clients, to) {
            Some(recipient) => clients.send(recipient, room::private(from, text)).is_ok(),
            None => self.ask_across(clients, (key, id), to, text),
        };
        if delivered {
            self.relay_deliveries += 1;
        } else {
            let _ = clients.send(key, room::no_such_name(to));
        }
    }

    /// The other instance's answer to `ask` (or its absence): a member whose `/msg` reached
    /// nobody is told so: that nobody has the name, or, for a name this instance knows a member
    /// of another instance by, that no answer came (a stuck bus, a stopped instance) and the line
    /// was not delivered (the receiver drops it if it comes later: `asks::too_late`).
    pub fn answered<S: Stream>(&mut self, clients: &mut Clients<S>, ask: u64, delivered: bool) {
        let Some(across) = &mut self.across else {
            return;
        };
        let Some(Ask { key, id, to, .. }) = across.asks.remove(&ask) else {
            return;
        };
        if !delivered && clients.slot(key, id).is_some_and(|c| c.is_open()) {
            let line = if self.remote_has(&to) {
                room::no_answer(to.as_bytes())
            } else {
                room::no_such_name(to.as_bytes())
            };
            let _ = clients.send(key, line);
        }
    }

    /// A `to` frame from another instance: delivered if a member here has the name (reported as
    /// that member's command, and answered on `reply`); nothing at all otherwise.
    pub(super) fn hear_private<S: Stream>(
        &mut self,
        clients: &mut Clients<S>,
        frame: &Frame,
        reply: Option<&str>,
    ) {
        let What::To(from, to, text, sent) = &frame.what else {
            return;
        };
        let Some(key) = self.recipient(clients, to.as_bytes()) else {
            return;
        };
        // Held up (a stuck nats-server) past the time its sender waits: the sender was, or will
        // be, told it was not delivered, so it is not, and the operator is told.
        let now = asks::unix_ms(SystemTime::now());
        if let Some(sent) = *sent
            && asks::too_late(sent, now)
        {
            let late = now.saturating_sub(sent);
            return report::bus_msg_late(&frame.node, &from.peer, from.id, to, late);
        }
        report::remote_command(&frame.node, &from.peer, from.id, to, text);
        if clients.send(key, room::private(&from.name, text)).is_err() {
            return;
        }
        self.relay_deliveries += 1;
        if let (Some(across), Some(reply)) = (&mut self.across, reply)
            && is_reply_subject(reply)
        {
            across.answers.push(reply.to_owned());
        }
    }

    /// Sends `/msg` text on to the instance that has a member called `to`, if the name could be
    /// one of another instance's (a name, or `#<id>@<node>` of another node). False if not, or
    /// if too many are on their way.
    fn ask_across<S: Stream>(
        &mut self,
        clients: &mut Clients<S>,
        (key, id): (usize, ConnId),
        to: &[u8],
        text: &[u8],
    ) -> bool {
        let (Some(across), Some(sender)) = (&mut self.across, clients.slot(key, id)) else {
            return false;
        };
        let Ok(to) = std::str::from_utf8(to) else {
            return false;
        };
        let remote = across::is_remote_name(to).is_some_and(|node| node != across.node);
        if !(remote || crate::names::valid(to.as_bytes()) && !crate::names::reserved(to)) {
            return false;
        }
        let now = Instant::now();
        if across.asks.len() >= MAX_ASKS {
            // Answers that never came (a bus thread gone): forgotten, so the map stays bounded.
            across
                .asks
                .retain(|_, ask| now.duration_since(ask.since) < 2 * ASK_TIMEOUT);
            if across.asks.len() >= MAX_ASKS {
                return false;
            }
        }
        across.next_ask += 1;
        let ask = across.next_ask;
        let (key, to) = (key, to.to_owned());
        let sent = Some(asks::unix_ms(SystemTime::now()));
        let what = What::To(
            across::member(sender, &across.node),
            to.clone(),
            text.to_vec(),
            sent,
        );
        across.outbox.push((what, Some(ask)));
        let since = now;
        across.asks.insert(ask, Ask { key, id, to, since });
        true
    }

    /// The slot of the open member here called `name`: a nickname (in any case), or `#<id>` (also
    /// written `#<id>@<this node>`) for a member that has none.
    fn recipient<S: Stream>(&self, clients: &mut Clients<S>, name: &[u8]) -> Option<usize> {
        let mut name = std::str::from_utf8(name).ok()?;
        if let Some(across) = &self.across
            && across::is_remote_name(name) == Some(across.node.as_str())
        {
            name = name.split_once('@').map_or(name, |(local, _)| local);
        }
        if let Some((key, id)) = self.names.holder(name) {
            return clients.slot(key, id).filter(|c| c.is_open()).map(|_| key);
        }
        let id = ConnId(name.strip_prefix('#')?.parse().ok()?);
        let key = clients.find(id)?;
        // `#7` is only a name while #7 has no other.
        (**clients.get(key)?.name() == *name).then_some(key)
    }
}

/// Whether `subject` is one chatd answers on: a NATS inbox (`_INBOX.` and printable ASCII
/// without spaces), so a frame cannot make this instance publish on the room's or any other
/// subject.
fn is_reply_subject(subject: &str) -> bool {
    subject.len() <= 256
        && subject.starts_with("_INBOX.")
        && subject.bytes().all(|b| b.is_ascii_graphic())
}
