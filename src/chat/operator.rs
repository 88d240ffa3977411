//! What the operator's console commands cause for the clients (more `impl Chat`, split from
//! `chat.rs` by whose lines they are).

use std::time::Instant;

use super::{Chat, KICKED};
use crate::bus::What;
use crate::clients::Clients;
use crate::connection::{NotQueued, Stream};
use crate::console::Command;
use crate::ids::{ConnId, Peer, Reason};
use crate::queue;
use crate::report;
use crate::room;

impl Chat {
    /// What the operator typed, but `/quit`, `/stats` and `/help` (the loop's: it knows the
    /// figures and whether the console is a line editor) and the hearing out before `/kick` (also
    /// the loop's: it reads the socket first).
    pub fn command<S: Stream>(&mut self, clients: &mut Clients<S>, command: Command) {
        match command {
            Command::To { id, text } => self.send_text(clients, id, &text, report::console_sent),
            Command::Reply(text) => match self.last_speaker {
                None => report::console_nobody_spoke(),
                Some((_, id)) => self.send_text(clients, id, &text, report::console_replied),
            },
            Command::Stick(id) => self.stick(clients, id),
            Command::Follow => self.follow(),
            Command::All(text) => {
                // Encoded once, shared by every queue; in the room it is the server speaking.
                let line = match self.relay {
                    true => room::from_server(&text),
                    false => queue::line(text.as_bytes()),
                };
                let sent = clients.send_all(None, &line);
                report::console_sent_all(sent);
                self.share(|_| What::All(text.into_bytes()));
            }
            Command::List => {
                let now = Instant::now();
                report::console_list_header(clients.len());
                for (_, conn) in clients.iter() {
                    let age = now.saturating_duration_since(conn.connected_at());
                    report::console_list_entry(
                        conn.id(),
                        conn.peer(),
                        self.relay.then(|| &**conn.name()),
                        age,
                        conn.counts(),
                        conn.reason(),
                    );
                }
            }
            Command::Kick(id) => match clients.find(id) {
                Some(key) => clients.close(key, Some(self.says(KICKED)), Reason::Kicked),
                None => report::console_no_client(id),
            },
            // The loop's own: it answers them itself.
            Command::Quit
            | Command::Stats
            | Command::Help
            | Command::Ban { .. }
            | Command::Bans
            | Command::Unban(_) => {}
        }
    }

    /// The operator's line for client `id`, confirmed with `confirm`; the operator is told if the
    /// client is not there or could not take it.
    pub(super) fn send_text<S: Stream>(
        &self,
        clients: &mut Clients<S>,
        id: ConnId,
        text: &str,
        confirm: fn(ConnId, Peer),
    ) {
        let Some(key) = clients.find(id) else {
            return report::console_no_client(id);
        };
        // In the room, escaped and marked as the server's, so the member can tell it from a
        // member's line; otherwise exactly what the operator typed.
        let line = match self.relay {
            true => room::to_you(text),
            false => queue::line(text.as_bytes()),
        };
        match clients.send(key, line) {
            Ok(peer) => confirm(id, peer),
            Err(NotQueued::Overflow) => report::console_not_sent_slow(id),
            Err(NotQueued::Broken) => report::console_not_sent_broken(id),
            Err(NotQueued::Leaving) => report::console_no_client(id),
        }
    }
}
