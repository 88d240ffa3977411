//! `/nick`, here and across instances: a name is checked against the room's names here (`names.rs`:
//! the rule, the names in use, the names held a minute after a leave) and the names of other
//! instances this one has seen, and, while the bus's key-value bucket of names is up (`--bus` with
//! JetStream), claimed there first: the rename completes when the claim is granted (`claimed`). A
//! name is released when its member leaves or takes another.
//!
//! Deliberately not here: the bucket itself (`bus/link.rs`).

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use super::Chat;
use super::across::member;
use crate::bus::{NameOp, What};
use crate::clients::Clients;
use crate::connection::Stream;
use crate::ids::ConnId;
use crate::names::Refused;
use crate::report;
use crate::room;

impl Chat {
    /// `/nick NAME` from client `(key, id)`: checked against the room's names here (the rule, the
    /// names in use, the names held a minute after a leave: `names.rs`) and those of other
    /// instances this one has seen; then, while names are shared, claimed across instances, and
    /// renamed once the claim is granted (`claimed`); else renamed now.
    pub(super) fn rename<S: Stream>(
        &mut self,
        clients: &mut Clients<S>,
        key: usize,
        id: ConnId,
        new: &[u8],
    ) {
        let Some(conn) = clients.get(key) else {
            return;
        };
        let (old, from) = (Rc::clone(conn.name()), conn.peer().0.ip().to_canonical());
        let shared = self
            .across
            .as_ref()
            .is_some_and(|across| across.names_shared);
        let (now, seat) = (Instant::now(), (key, id));
        let claimed = match std::str::from_utf8(new) {
            Ok(new) if old.eq_ignore_ascii_case(new) => self
                .names
                .claim(seat, &old, new, from, now)
                .map(|()| (new, false)),
            Ok(new) if self.remote_has(new) => Err(Refused::Taken),
            // Reserved here, asked of the other instances, renamed once granted (`claimed`).
            Ok(new) if shared => self
                .names
                .reserve(seat, new, from, now)
                .map(|()| (new, true)),
            Ok(new) => self
                .names
                .claim(seat, &old, new, from, now)
                .map(|()| (new, false)),
            Err(_) => Err(Refused::Invalid),
        };
        let new = match claimed {
            Ok((new, false)) => new,
            Ok((new, true)) => {
                if let Some(across) = &mut self.across {
                    let name = new.to_owned();
                    across.name_ops.push(NameOp::Claim {
                        key,
                        id,
                        name,
                        from,
                    });
                }
                return;
            }
            Err(refused) => {
                let name = String::from_utf8_lossy(new);
                let line = match refused {
                    Refused::Invalid => room::bad_name(),
                    Refused::Taken => room::name_taken(&name),
                    Refused::Held => room::name_held(&name),
                };
                let _ = clients.send(key, line);
                return;
            }
        };
        self.apply_rename(clients, key, new);
    }

    /// The bucket answered a claim for member `(key, id)`: granted (`None`), taken elsewhere, or
    /// held for the address its last holder left from.
    pub fn claimed<S: Stream>(
        &mut self,
        clients: &mut Clients<S>,
        key: usize,
        id: ConnId,
        name: &str,
        refused: Option<Refused>,
    ) {
        let granted = refused.is_none();
        let Some(conn) = clients.slot(key, id) else {
            // Gone meanwhile: what it waited for is nobody's (its own name was released as it left).
            self.names.unreserve(id, name);
            if granted {
                self.release(name, None);
            }
            return;
        };
        if conn.name().eq_ignore_ascii_case(name) {
            // A name taken while the bus was away, claimed now that it is back.
            if !granted {
                self.name_lost(clients, name);
            }
            return;
        }
        self.names.unreserve(id, name);
        if !conn.is_open() {
            if granted {
                self.release(name, None);
            }
            return;
        }
        let (old, from) = (Rc::clone(conn.name()), conn.peer().0.ip().to_canonical());
        let taken_here = granted
            && (self.names)
                .claim((key, id), &old, name, from, Instant::now())
                .is_err();
        if !granted || taken_here {
            // Another instance has it (or, which a reservation prevents, someone here): this
            // member keeps its name, and is told.
            if taken_here {
                self.release(name, None);
            }
            let line = match refused {
                Some(Refused::Held) => room::name_held(name),
                _ => room::name_taken(name),
            };
            let _ = clients.send(key, line);
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
            .find(|(_, conn)| conn.name().eq_ignore_ascii_case(name))
            .map(|(key, conn)| (key, conn.id(), Rc::clone(conn.name())));
        if let Some((key, id, name)) = found {
            self.names.forget(id, &name);
            let _ = clients.send(key, room::name_lost(&name));
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
                let from = conn.peer().0.ip().to_canonical();
                across.name_ops.push(NameOp::Claim {
                    key,
                    id,
                    name,
                    from,
                });
            }
        }
    }

    /// Gives a name back to the bucket, if it is one (not `#<id>`); on a leave, held a minute
    /// there for the address `hold` it left from. Also while names are not shared (the bus
    /// away): the bus thread, which keeps the names it holds and claims them again on its return,
    /// must forget this one.
    pub(super) fn release(&mut self, name: &str, hold: Option<IpAddr>) {
        if let Some(across) = &mut self.across
            && !name.starts_with('#')
        {
            let name = name.to_owned();
            across.name_ops.push(NameOp::Release { name, hold });
        }
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
        // The same name in another case is still this member's, in the bucket too.
        if !old.eq_ignore_ascii_case(new) {
            self.release(&old, None);
        }
    }
}
