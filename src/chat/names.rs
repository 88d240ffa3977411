//! `/nick` and names across instances: a name is checked against the local members and the names
//! of other instances this one has seen, and, while the bus's key-value bucket of names is up
//! (`--bus` with JetStream), claimed there first: the rename completes when the claim is granted
//! (`claimed`). A name is released when its member leaves or takes another.
//!
//! Deliberately not here: the bucket itself (`bus/link.rs`).

use std::rc::Rc;

use super::Chat;
use super::across::member;
use crate::bus::{NameOp, What};
use crate::clients::Clients;
use crate::connection::Stream;
use crate::ids::ConnId;
use crate::report;
use crate::room;

impl Chat {
    /// `/nick NAME` from client `key`: checked; claimed across instances while names are shared,
    /// else (or once granted) reported, announced and confirmed.
    pub(super) fn rename<S: Stream>(&mut self, clients: &mut Clients<S>, key: usize, new: &[u8]) {
        let new = match std::str::from_utf8(new) {
            Ok(new) if room::valid_name(new.as_bytes()) => new,
            _ => {
                let _ = clients.send(key, room::bad_name());
                return;
            }
        };
        if self.name_taken_here(clients, key, new) {
            let _ = clients.send(key, room::name_taken(new));
            return;
        }
        let Some(conn) = clients.get(key) else {
            return;
        };
        if let Some(across) = &mut self.across
            && across.names_shared
        {
            let name = new.to_owned();
            let id = conn.id();
            across.name_ops.push(NameOp::Claim { key, id, name });
            return;
        }
        self.apply_rename(clients, key, new);
    }

    /// The bucket answered a claim for member `(key, id)`.
    pub fn claimed<S: Stream>(
        &mut self,
        clients: &mut Clients<S>,
        key: usize,
        id: ConnId,
        name: &str,
        granted: bool,
    ) {
        let Some(conn) = clients.slot(key, id) else {
            if granted {
                self.release(name);
            }
            return;
        };
        if &**conn.name() == name {
            // A name taken while the bus was away, claimed now that it is back.
            if !granted {
                self.name_lost(clients, name);
            }
            return;
        }
        let here = conn.is_open();
        if !here || (granted && self.name_taken_here(clients, key, name)) {
            // Gone meanwhile, or the name was taken here while the claim was out.
            if granted {
                self.release(name);
            }
            if here {
                let _ = clients.send(key, room::name_taken(name));
            }
            return;
        }
        if !granted {
            let _ = clients.send(key, room::name_taken(name));
            return;
        }
        self.apply_rename(clients, key, name);
    }

    /// A name this instance held was claimed elsewhere while the bus was away: its member goes
    /// back to `#<id>`, and is told.
    pub fn name_lost<S: Stream>(&mut self, clients: &mut Clients<S>, name: &str) {
        report::bus_name_lost(name);
        let found = clients
            .open_ones()
            .find(|(_, conn)| &**conn.name() == name)
            .map(|(key, conn)| (key, conn.id()));
        if let Some((key, id)) = found {
            let _ = clients.send(key, room::name_lost(name));
            self.apply_rename(clients, key, &id.to_string());
        }
    }

    /// Names are claimed in the bucket again (the bus is back): every name taken here meanwhile is
    /// claimed; one that another instance took first is lost (`claimed`).
    pub fn claim_all<S: Stream>(&mut self, clients: &Clients<S>) {
        let Some(across) = &mut self.across else {
            return;
        };
        for (key, conn) in clients.open_ones() {
            if !conn.name().starts_with('#') {
                let (id, name) = (conn.id(), conn.name().to_string());
                across.name_ops.push(NameOp::Claim { key, id, name });
            }
        }
    }

    /// Gives a name back to the bucket, if it is one (not `#<id>`) and names are shared.
    pub(super) fn release(&mut self, name: &str) {
        if let Some(across) = &mut self.across
            && across.names_shared
            && !name.starts_with('#')
        {
            across.name_ops.push(NameOp::Release(name.to_owned()));
        }
    }

    /// Whether `new` is the server's, another local member's, or known as another instance's.
    fn name_taken_here<S: Stream>(&self, clients: &Clients<S>, key: usize, new: &str) -> bool {
        room::reserved(new)
            || self.remote_has(new)
            || clients
                .open_ones()
                .any(|(other, conn)| other != key && conn.name().eq_ignore_ascii_case(new))
    }

    /// Renames member `key`: reported, shared, announced, confirmed; its old name released.
    fn apply_rename<S: Stream>(&mut self, clients: &mut Clients<S>, key: usize, new: &str) {
        let Some(conn) = clients.get_mut(key) else {
            return;
        };
        // Back to `#<id>` (a name lost): `#<id>@<node>` to the other instances.
        self.share(|node| match new.starts_with('#') {
            true => What::Nick(member(conn, node), format!("{new}@{node}")),
            false => What::Nick(member(conn, node), new.to_owned()),
        });
        let old = conn.rename(Rc::from(new));
        report::renamed(conn.label(), &old, new);
        clients.send_all(Some(key), &room::renamed(&old, new));
        let _ = clients.send(key, room::you_are(new));
        self.release(&old);
    }
}
