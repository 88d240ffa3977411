//! The bus thread's bucket of names (JetStream key-value, `chatd-names-<room>`): claims
//! (create-if-absent), releases, the one-minute hold on a name freed by a leave, refreshes, and
//! the claims made again after a reconnect.
//!
//! A key is the case-folded name; its value is `<node> <id>` while a member has it, and
//! `held <address> <until>` (`wire::hold`) for `HOLD` after its member left: a claim of a held
//! key from another address is refused until then, one from the same address replaces it
//! (compare-and-swap on the entry's revision, so two claimants cannot both win).
//!
//! Deliberately not here: the connection, the room's frames (`link.rs`).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::Client;
use async_nats::jetstream::kv::{self, CreateErrorKind, Store};
use async_nats::jetstream::stream;
use futures_util::future::join_all;
use tokio::time::timeout;

use super::{KV_TIMEOUT, Link};
use crate::bus::wire;
use crate::bus::{Inbound, NameOp};
use crate::names::{HOLD, Refused};

impl Link {
    /// Opens (creating if absent) the bucket of names, and tells the loop whether names are
    /// claimed there. Without JetStream on the server, names are checked as each instance knows
    /// them.
    pub(super) async fn open_bucket(&mut self, client: &Client) -> Option<Store> {
        let jetstream = async_nats::jetstream::new(client.clone());
        // The bucket's stream made by hand, as async-nats's `create_key_value` would make it:
        // that one first asks for the account's info, whose reply from nats-server 2.9 lacks
        // fields async-nats 0.51 requires (`reserved_memory`, `reserved_storage`).
        let bucket = &self.settings.bucket;
        let config = stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age: NAME_AGE,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        };
        let open = async {
            jetstream
                .get_or_create_stream(config)
                .await
                .map_err(|e| e.to_string())?;
            jetstream
                .get_key_value(bucket.as_str())
                .await
                .map_err(|e| e.to_string())
        };
        let opened = match timeout(KV_TIMEOUT, open).await {
            Ok(opened) => opened,
            Err(_) => Err("JetStream did not answer".to_owned()),
        };
        match opened {
            Ok(store) => {
                self.tell(Inbound::Names(None)).await;
                Some(store)
            }
            Err(why) => {
                self.tell(Inbound::Names(Some(why))).await;
                None
            }
        }
    }

    /// A claim (create-if-absent, keyed by the case-folded name) or a release. A bucket that
    /// cannot answer grants the claim: the loop checked the name against what it knows, and the
    /// room goes on.
    pub(super) async fn name_op(&mut self, bucket: Option<&Store>, op: NameOp) {
        match op {
            NameOp::Claim {
                key,
                id,
                name,
                from,
            } => {
                let bucket_key = name.to_ascii_lowercase();
                let value = format!("{} {}", self.settings.node, id.0);
                let ours = self.held.get(&bucket_key).is_some_and(|(_, v)| *v == value);
                let refused = match bucket {
                    None => None,
                    Some(_) if ours => None,
                    Some(bucket) => claim(bucket, &bucket_key, &value, from).await,
                };
                if refused.is_none() {
                    self.holds.remove(&bucket_key);
                    self.held.insert(bucket_key, (name.clone(), value));
                }
                let claimed = Inbound::Claimed {
                    key,
                    id,
                    name,
                    refused,
                };
                self.tell(claimed).await;
            }
            NameOp::Release { name, hold } => {
                let bucket_key = name.to_ascii_lowercase();
                if self.held.remove(&bucket_key).is_none() {
                    return;
                }
                let Some(bucket) = bucket else {
                    return;
                };
                let Some(from) = hold else {
                    let _ = timeout(KV_TIMEOUT, bucket.delete(&bucket_key)).await;
                    return;
                };
                // Held for `from`: written over the member's entry, and kept until it ends.
                let until = unix_now() + HOLD.as_secs();
                let value = wire::hold(from, until);
                let put = bucket.put(&bucket_key, value.clone().into());
                if let Ok(Ok(revision)) = timeout(KV_TIMEOUT, put).await
                    && self.holds.len() < MAX_HOLDS
                {
                    let hold = Hold {
                        value,
                        until,
                        revision,
                    };
                    self.holds.insert(bucket_key, hold);
                }
            }
        }
    }

    /// Every `REFRESH`: the names held here are written again, so that they outlive `NAME_AGE`
    /// only while this instance lives; and so are the holds not yet over, unless another claim
    /// replaced one (the write is a compare-and-swap on the revision this instance wrote).
    /// The writes go out together and the whole refresh takes `KV_TIMEOUT` at most, however many
    /// names are held: a stuck server must not keep the thread from its other work for 2 s a
    /// name.
    pub(super) async fn refresh(&mut self, bucket: &Store) {
        let puts = self.held.iter().map(|(key, (_, value))| async move {
            let _ = bucket.put(key, value.clone().into()).await;
        });
        let now = unix_now();
        self.holds.retain(|_, hold| hold.until > now);
        let updates = self.holds.iter_mut().map(|(key, hold)| async move {
            match bucket
                .update(key, hold.value.clone().into(), hold.revision)
                .await
            {
                Ok(revision) => hold.revision = revision,
                // Claimed meanwhile: this instance keeps it no more.
                Err(_) => hold.until = 0,
            }
        });
        let all = async {
            futures_util::future::join(join_all(puts), join_all(updates)).await;
        };
        // A hold not answered in time stays as it was, and is written again next time.
        let _ = timeout(KV_TIMEOUT, all).await;
    }

    /// Back after a loss: each name held here is claimed again; one that another instance holds
    /// now is lost, and the loop renames its member.
    pub(super) async fn reclaim(&mut self, bucket: &Store) {
        let held: Vec<(String, (String, String))> = self.held.drain().collect();
        for (key, (name, value)) in held {
            let theirs = match timeout(KV_TIMEOUT, bucket.entry(&key)).await {
                Ok(Ok(Some(entry))) => {
                    entry.operation == kv::Operation::Put && entry.value != value.as_bytes()
                }
                _ => false,
            };
            if theirs {
                self.tell(Inbound::NameLost(name)).await;
            } else {
                let _ = timeout(KV_TIMEOUT, bucket.put(&key, value.clone().into())).await;
                self.held.insert(key, (name, value));
            }
        }
    }
}

/// Claims `key` for `value` (a member's `<node> <id>`), asked from address `from`: created if
/// absent; if the key holds a name freed by a leave, replaced if the hold is over or is `from`'s,
/// else refused as held. Granted (`None`) if the bucket cannot answer.
async fn claim(bucket: &Store, key: &str, value: &str, from: IpAddr) -> Option<Refused> {
    let create = bucket.create(key, value.to_owned().into());
    match timeout(KV_TIMEOUT, create).await {
        Ok(Ok(_)) => return None,
        Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => {}
        _ => return None,
    }
    let entry = match timeout(KV_TIMEOUT, bucket.entry(key)).await {
        Ok(Ok(Some(entry))) if entry.operation == kv::Operation::Put => entry,
        _ => return Some(Refused::Taken),
    };
    match wire::read_hold(&entry.value) {
        None => Some(Refused::Taken),
        Some((holder, until)) if holder != from && unix_now() < until => Some(Refused::Held),
        Some(_) => {
            let update = bucket.update(key, value.to_owned().into(), entry.revision);
            match timeout(KV_TIMEOUT, update).await {
                Ok(Ok(_)) => None,
                // Another claim came first.
                _ => Some(Refused::Taken),
            }
        }
    }
}

/// The time as the bucket's holds say it: seconds since 1970 (instances sharing a room keep their
/// clocks in step, as NTP does).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A name freed here by a leave, held in the bucket for its last holder's address.
#[derive(Debug)]
pub(super) struct Hold {
    /// `held <address> <until>`.
    value: String,
    /// Seconds since 1970.
    until: u64,
    /// The entry's revision as this instance last wrote it.
    revision: u64,
}

/// The most holds refreshed at once; past it, a hold is written once and lasts `NAME_AGE`.
const MAX_HOLDS: usize = 4096;
/// How long a claimed name lives in the bucket without a refresh: the names of an instance that
/// died are free again within this.
const NAME_AGE: Duration = Duration::from_secs(30);
/// How often the names held here are refreshed.
pub(super) const REFRESH: Duration = Duration::from_secs(10);
