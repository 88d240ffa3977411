//! The bus thread's bucket of names (JetStream key-value, `chatd-names-<room>`): claims
//! (create-if-absent), releases, the one-minute hold on a name freed by a leave, and the claims
//! made again after a stall; the refreshes, and the check of every name after a reconnect, are
//! `bucket/keep.rs`.
//!
//! A key is the case-folded name; its value is `<node> <id>` while a member has it, and
//! `held <address> <until>` (`wire::hold`) for `HOLD` after its member left: a claim of a held
//! key from another address is refused until then, one from the same address replaces it
//! (compare-and-swap on the entry's revision, so two claimants cannot both win).
//!
//! A bucket that does not answer in time (a stuck nats-server) grants a claim on the loop's own
//! check, and from then on the bucket counts as stalled: claims are granted at once and kept as
//! unconfirmed, releases wait (`Unanswered`), so a stall costs one `KV_TIMEOUT`, not one a name.
//! At each refresh the unconfirmed claims are made again (`settle`): one that another instance
//! holds now is lost, and the loop renames its member, as after a reconnect. A release only ever
//! frees an entry that still holds this instance's value.
//!
//! Deliberately not here: the connection, the room's frames (`link.rs`).

use std::collections::HashMap;
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

mod keep;

impl Link {
    /// Opens (creating if absent) the bucket of names, and tells the loop whether names are
    /// claimed there. Without JetStream on the server, names are checked as each instance knows
    /// them.
    pub(super) async fn open_bucket(&mut self, client: &Client) -> Option<Store> {
        match self.try_open_bucket(client).await {
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

    /// The bucket is open again (after a reconnect, or for the first time after it could not
    /// be): the names held here are checked and written into it, the releases that waited are
    /// written, and the loop is told names are claimed across the room again (it claims those
    /// taken meanwhile).
    pub(super) async fn names_back(&mut self, store: Store) -> Store {
        // The releases first: they came before the names held now were taken (a member's old
        // name freed before another member takes it).
        self.write_releases(&store).await;
        self.reclaim(&store).await;
        self.settle(&store).await;
        self.tell(Inbound::Names(None)).await;
        store
    }

    /// Opens (creating if absent) the bucket of names; why not, if it cannot.
    pub(super) async fn try_open_bucket(&self, client: &Client) -> Result<Store, String> {
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
        match timeout(KV_TIMEOUT, open).await {
            Ok(opened) => opened,
            Err(_) => Err("JetStream did not answer".to_owned()),
        }
    }

    /// A claim (create-if-absent, keyed by the case-folded name) or a release. A bucket that
    /// cannot answer grants the claim: the loop checked the name against what it knows, and the
    /// room goes on; the claim is made again once the bucket answers (`settle`).
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
                let ours = (self.held.get(&bucket_key)).is_some_and(|held| held.value == value);
                let answer = match bucket {
                    None => Ok(Ok(None)),
                    Some(_) if ours => Ok(Ok(None)),
                    Some(_) if self.unanswered.stalled => Err(NoAnswer),
                    Some(bucket) => claim(bucket, &bucket_key, &value, from)
                        .await
                        .map(|c| c.map(Some)),
                };
                let answer = answer.unwrap_or_else(|NoAnswer| {
                    self.unanswered.stalled = true;
                    self.unanswered.claims.insert(bucket_key.clone(), from);
                    Ok(None)
                });
                let refused = answer.err();
                if let Ok(revision) = answer {
                    self.holds.remove(&bucket_key);
                    // Made again (`ours`): the revision this instance wrote stays.
                    let revision = revision.or_else(|| self.held.get(&bucket_key)?.revision);
                    let (name, value) = (name.clone(), value);
                    let held = Held {
                        name,
                        value,
                        revision,
                    };
                    self.held.insert(bucket_key, held);
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
                let Some(Held { value, .. }) = self.held.remove(&bucket_key) else {
                    return;
                };
                // Granted here without the bucket's answer: its entry may be another instance's,
                // so nothing is freed (`free` would find so too, but a stall would make it wait).
                if self.unanswered.claims.remove(&bucket_key).is_some() {
                    return;
                }
                // Held for `from`: written over the member's entry, and kept until it ends.
                let hold = hold.map(|from| (from, unix_now() + HOLD.as_secs()));
                let release = Release {
                    key: bucket_key,
                    value,
                    hold,
                };
                // No bucket open (a reconnect found none yet) or a stalled one: written once it
                // answers, so that the entry does not block the name until it ages out.
                let Some(bucket) = bucket.filter(|_| !self.unanswered.stalled) else {
                    self.unanswered.defer(release);
                    return;
                };
                match free(bucket, &release).await {
                    Ok(kept) => self.keep_hold(kept),
                    Err(NoAnswer) => {
                        self.unanswered.stalled = true;
                        self.unanswered.defer(release);
                    }
                }
            }
        }
    }

    /// Once the bucket answers again after a stall: the claims granted meanwhile are made again
    /// (one another instance holds now is lost, and the loop told), then the releases that waited
    /// are written. Everything at once, within `KV_TIMEOUT`; what is not answered waits for the
    /// next refresh.
    pub(super) async fn settle(&mut self, bucket: &Store) {
        // The releases first: each came before any claim granted after it (`/nick carol` then
        // another member's `/nick bob` frees `bob` before the new claim of it is made).
        if !self.write_releases(bucket).await {
            return;
        }
        let claims: Vec<(String, String, IpAddr)> = (self.unanswered.claims.iter())
            .filter_map(|(key, from)| {
                let held = self.held.get(key)?;
                Some((key.clone(), held.value.clone(), *from))
            })
            .collect();
        let asks = claims
            .iter()
            .map(|(key, value, from)| claim(bucket, key, value, *from));
        let Ok(answers) = timeout(KV_TIMEOUT, join_all(asks)).await else {
            return;
        };
        let mut all_answered = true;
        for ((key, _, _), answer) in claims.into_iter().zip(answers) {
            match answer {
                Ok(Ok(revision)) => {
                    if let Some(held) = self.held.get_mut(&key) {
                        held.revision = Some(revision);
                    }
                }
                Ok(Err(_)) => {
                    if let Some(held) = self.held.remove(&key) {
                        self.tell(Inbound::NameLost(held.name)).await;
                    }
                }
                Err(NoAnswer) => {
                    all_answered = false;
                    continue;
                }
            }
            self.unanswered.claims.remove(&key);
        }
        // Claims of names released meanwhile (no longer held here) are dropped.
        let held = &self.held;
        self.unanswered
            .claims
            .retain(|key, _| held.contains_key(key));
        self.unanswered.stalled = !all_answered;
    }

    /// Writes the releases that waited for the bucket, in one go within `KV_TIMEOUT`; whether
    /// none is left waiting.
    async fn write_releases(&mut self, bucket: &Store) -> bool {
        if self.unanswered.releases.is_empty() {
            return true;
        }
        let releases = std::mem::take(&mut self.unanswered.releases);
        let frees = releases.iter().map(|release| free(bucket, release));
        let Ok(freed) = timeout(KV_TIMEOUT, join_all(frees)).await else {
            self.unanswered.releases = releases;
            return false;
        };
        for (release, answer) in releases.into_iter().zip(freed) {
            match answer {
                Ok(kept) => self.keep_hold(kept),
                Err(NoAnswer) => self.unanswered.defer(release),
            }
        }
        self.unanswered.releases.is_empty()
    }

    /// A hold written in the bucket, refreshed here until it ends (`MAX_HOLDS` at most).
    fn keep_hold(&mut self, kept: Option<(String, Hold)>) {
        if let Some((key, hold)) = kept
            && self.holds.len() < MAX_HOLDS
        {
            self.holds.insert(key, hold);
        }
    }
}

/// Claims `key` for `value` (a member's `<node> <id>`), asked from address `from`: created if
/// absent, granted if it holds `value` already (a claim made again); if the key holds a name freed
/// by a leave, replaced if the hold is over or is `from`'s, else refused as held. Granted: the
/// entry's revision, for the refreshes' compare-and-swap.
async fn claim(
    bucket: &Store,
    key: &str,
    value: &str,
    from: IpAddr,
) -> Result<Result<u64, Refused>, NoAnswer> {
    let create = bucket.create(key, value.to_owned().into());
    match timeout(KV_TIMEOUT, create).await {
        Ok(Ok(revision)) => return Ok(Ok(revision)),
        Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => {}
        _ => return Err(NoAnswer),
    }
    let entry = match timeout(KV_TIMEOUT, bucket.entry(key)).await {
        Ok(Ok(Some(entry))) if entry.operation == kv::Operation::Put => entry,
        Ok(Ok(_)) => return Ok(Err(Refused::Taken)),
        _ => return Err(NoAnswer),
    };
    if entry.value == value.as_bytes() {
        return Ok(Ok(entry.revision));
    }
    match wire::read_hold(&entry.value) {
        None => Ok(Err(Refused::Taken)),
        Some((holder, until)) if holder != from && unix_now() < until => Ok(Err(Refused::Held)),
        Some(_) => {
            let update = bucket.update(key, value.to_owned().into(), entry.revision);
            match timeout(KV_TIMEOUT, update).await {
                Ok(Ok(revision)) => Ok(Ok(revision)),
                // Another claim came first.
                Ok(Err(_)) => Ok(Err(Refused::Taken)),
                Err(_) => Err(NoAnswer),
            }
        }
    }
}

/// Frees `release.key` if its entry still holds this instance's `release.value`: deleted, or
/// written over with the hold (compare-and-swap on the entry's revision, so another instance's
/// claim is never freed). The hold written, to refresh until it ends.
async fn free(bucket: &Store, release: &Release) -> Result<Option<(String, Hold)>, NoAnswer> {
    let key = &release.key;
    let entry = match timeout(KV_TIMEOUT, bucket.entry(key.as_str())).await {
        Ok(Ok(entry)) => entry,
        _ => return Err(NoAnswer),
    };
    let Some(entry) = entry.filter(|entry| {
        entry.operation == kv::Operation::Put && entry.value == release.value.as_bytes()
    }) else {
        return Ok(None); // Not ours (any more): nothing to free.
    };
    let Some((from, until)) = release.hold else {
        let delete = bucket.delete_expect_revision(key, Some(entry.revision));
        return match timeout(KV_TIMEOUT, delete).await {
            Ok(_) => Ok(None), // Deleted, or changed meanwhile: not ours to free.
            Err(_) => Err(NoAnswer),
        };
    };
    let value = wire::hold(from, until);
    let update = bucket.update(key, value.clone().into(), entry.revision);
    match timeout(KV_TIMEOUT, update).await {
        Ok(Ok(revision)) => {
            let hold = Hold {
                value,
                until,
                revision,
            };
            Ok(Some((key.clone(), hold)))
        }
        Ok(Err(_)) => Ok(None),
        Err(_) => Err(NoAnswer),
    }
}

/// The bucket did not answer in time (or failed).
pub(super) struct NoAnswer;

/// A name held here: its member's, in the bucket under its case-folded key.
#[derive(Debug)]
pub(super) struct Held {
    /// As its member wrote it.
    pub(super) name: String,
    /// `<node> <id>`: what this instance claimed it with.
    pub(super) value: String,
    /// The entry's revision as this instance last wrote it (create, update): a refresh writes
    /// only over that one (`keep.rs`). `None` while not known (granted without the bucket's
    /// answer, or the answer lost): the refresh then reads the entry first.
    pub(super) revision: Option<u64>,
}

/// A name given back, to free in the bucket.
#[derive(Debug)]
pub(super) struct Release {
    /// The bucket key.
    key: String,
    /// The value this instance claimed it with: only an entry that still holds it is freed.
    value: String,
    /// Held for this address until then (seconds since 1970), or deleted.
    hold: Option<(IpAddr, u64)>,
}

/// What waits for a stalled bucket to answer again.
#[derive(Debug, Default)]
pub(super) struct Unanswered {
    /// A claim went unanswered: claims are granted on the loop's check, releases wait, until a
    /// `settle` has every answer.
    stalled: bool,
    /// Claims granted without the bucket's answer: bucket key -> the claimant's address.
    claims: HashMap<String, IpAddr>,
    /// Releases not written yet; past `MAX_HOLDS`, a release is let go (its entry ages out within
    /// `NAME_AGE`).
    releases: Vec<Release>,
}

impl Unanswered {
    /// Whether a `settle` has anything to do.
    pub(super) fn waiting(&self) -> bool {
        self.stalled || !self.claims.is_empty()
    }

    fn defer(&mut self, release: Release) {
        if self.releases.len() < MAX_HOLDS {
            self.releases.push(release);
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
