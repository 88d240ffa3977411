//! What members' lines cause in the `--relay` room, once a read is over (`Chat::act`): relayed
//! text, `/nick`, `/who`, `/msg` (`chat/private.rs`) and `/help`, and unknown commands, in the order the lines came.
//!
//! Deliberately not here: hearing and reporting a line (`chat.rs`), the room's texts
//! (`room.rs`), or which names may be taken (`names.rs`).

use std::rc::Rc;

use super::{Chat, across};
use crate::bus::What;
use crate::clients::Clients;
use crate::connection::Stream;
use crate::room::{self, Said};

impl Chat {
    /// In the room, acts on what was heard since the last call: relays text to everyone else, and
    /// answers `/nick`, `/who`, `/msg`, `/help` and unknown commands, in the order the lines came.
    pub fn act<S: Stream>(&mut self, clients: &mut Clients<S>) {
        if self.said.is_empty() {
            return;
        }
        let mut said = std::mem::take(&mut self.said);
        for (key, id, what) in said.drain(..) {
            let Some(sender) = clients.slot(key, id) else {
                continue;
            };
            // A client on its way out may still be heard, but its commands are moot.
            if !sender.is_open() && !matches!(what, Said::Text(_)) {
                continue;
            }
            let name = Rc::clone(sender.name());
            match what {
                Said::Text(text) => {
                    let sent = clients.send_all(Some(key), &room::message(&name, &text));
                    self.relay_deliveries += sent as u64;
                    if let Some(sender) = clients.get(key) {
                        self.share(|node| What::Message(across::member(sender, node), text));
                    }
                }
                Said::Nick(new) => self.rename(clients, key, id, &new),
                Said::Who => {
                    let remote = self.remote_names();
                    let local = clients.open_ones().map(|(_, conn)| &**conn.name());
                    let line = room::who(local.chain(remote.iter().copied()));
                    let _ = clients.send(key, line);
                }
                Said::Msg { to, text } => self.private(clients, (key, id), &name, &to, &text),
                Said::Help => {
                    let _ = clients.send(key, room::help());
                }
                Said::Unknown(line) => {
                    let _ = clients.send(key, room::unknown_command(&line));
                }
            }
        }
        // Keep the list's memory for the next read.
        if self.said.is_empty() {
            self.said = said;
        }
    }
}
