//! Where the line editor's bare lines go: the last to speak, or the client `/to <id>` chose; and
//! what Tab may offer.

use std::rc::Rc;

use super::Chat;
use crate::clients::Clients;
use crate::connection::Stream;
use crate::console::{MAX_COMPLETIONS, Target, starts_with_ignoring_case};
use crate::ids::ConnId;
use crate::report;

/// Where bare lines go, in a form cheap to compare each turn: (id, sticky, room name or `None`
/// once gone).
pub type Aim = (ConnId, bool, Option<Rc<str>>);

impl Chat {
    /// `/to <id>` without text: bare lines go to `#<id>` until `/to` or `/last`.
    pub(super) fn stick<S: Stream>(&mut self, clients: &Clients<S>, id: ConnId) {
        match clients.find(id) {
            Some(key) => {
                self.sticky = Some((key, id));
                report::console_sticky(id);
            }
            None => report::console_no_client(id),
        }
    }

    /// `/to` alone or `/last`: bare lines go to the last to speak again.
    pub(super) fn follow(&mut self) {
        self.sticky = None;
        report::console_following();
    }

    /// A bare line typed in the line editor, for the client its prompt showed (`to`) when the
    /// operator began typing: sent there or nowhere, never to whoever spoke since.
    pub fn reply_to<S: Stream>(&self, clients: &mut Clients<S>, to: Option<ConnId>, text: &str) {
        let Some(id) = to else {
            return report::console_nobody_spoke();
        };
        if clients.find(id).is_none() {
            return report::console_target_left(id);
        }
        let confirm = match self.last_speaker {
            Some((_, last)) if last == id => report::console_replied,
            _ => report::console_sent,
        };
        self.send_text(clients, id, text, confirm);
    }

    /// Where bare lines go now, as the prompt shows it: the sticky client, else the last to speak.
    /// One slot lookup: the loop asks every turn.
    pub fn aim<S: Stream>(&self, clients: &mut Clients<S>) -> Option<Aim> {
        let ((key, id), sticky) = match (self.sticky, self.last_speaker) {
            (Some(target), _) => (target, true),
            (None, Some(target)) => (target, false),
            (None, None) => return None,
        };
        let name = clients
            .slot(key, id)
            .filter(|conn| conn.is_open())
            .map(|conn| Rc::clone(conn.name()));
        Some((id, sticky, name))
    }

    /// For Tab: the open clients whose id, or in the room whose name, starts with `prefix`.
    pub fn roster<S: Stream>(
        &self,
        clients: &Clients<S>,
        prefix: &str,
    ) -> Vec<(ConnId, Option<String>)> {
        clients
            .open_ones()
            .map(|(_, conn)| (conn.id(), conn.name()))
            .filter(|(id, name)| {
                id.0.to_string().starts_with(prefix)
                    || (self.relay && starts_with_ignoring_case(name, prefix))
            })
            .take(MAX_COMPLETIONS)
            .map(|(id, name)| (id, room_name(id, name)))
            .collect()
    }
}

/// What the prompt shows for `aim`.
pub fn target(aim: &Aim) -> Target {
    let (id, sticky, name) = aim;
    Target {
        id: *id,
        name: name.as_deref().and_then(|name| room_name(*id, name)),
        sticky: *sticky,
        gone: name.is_none(),
    }
}

/// A client's name when it is not just its id (a room member after `/nick`).
fn room_name(id: ConnId, name: &str) -> Option<String> {
    (name != id.to_string()).then(|| name.to_owned())
}
