//! Keeping the names held here in the bucket: every `REFRESH` each is written again, only over
//! the entry this instance last wrote (compare-and-swap on its revision), so that it outlives
//! `NAME_AGE` only while this instance lives, and a refresh never writes over another instance's
//! entry. An instance stopped past `NAME_AGE` (SIGSTOP, a frozen VM) finds on its return that its
//! entries aged out, and maybe that another instance's member took a name meanwhile: that name is
//! lost here (`Inbound::NameLost`), as after a lost bus.
//!
//! Deliberately not here: claims and releases (`bucket.rs`).

use async_nats::jetstream::kv::{self, Store};
use futures_util::future::{join, join_all};
use tokio::time::timeout;

use super::{Held, NoAnswer, unix_now};
use crate::bus::Inbound;
use crate::bus::link::{KV_TIMEOUT, Link};

impl Link {
    /// Every `REFRESH`: the names held here are written again (`keep`), and so are the holds not
    /// yet over, unless another claim replaced one. The writes go out together, and the whole
    /// refresh takes `KV_TIMEOUT` at most, however many names are held: a stuck server must not
    /// keep the thread from its other work for 2 s a name. A name not answered in time stays as
    /// it was, and is written again next time.
    pub(in crate::bus::link) async fn refresh(&mut self, bucket: &Store) {
        // An unconfirmed claim is not written: the entry may be another instance's (`settle`).
        let unconfirmed = &self.unanswered.claims;
        let confirmed: Vec<(&String, &Held)> = (self.held.iter())
            .filter(|(key, _)| !unconfirmed.contains_key(*key))
            .collect();
        let keeps = confirmed
            .iter()
            .map(|(key, held)| timeout(KV_TIMEOUT, keep(bucket, key, &held.value, held.revision)));
        let now = unix_now();
        self.holds.retain(|_, hold| hold.until > now);
        let updates = self.holds.iter_mut().map(|(key, hold)| async move {
            let update = bucket.update(key, hold.value.clone().into(), hold.revision);
            match timeout(KV_TIMEOUT, update).await {
                Ok(Ok(revision)) => hold.revision = revision,
                // Claimed meanwhile: this instance keeps it no more.
                Ok(Err(_)) => hold.until = 0,
                Err(_) => {}
            }
        });
        let (kept, _) = join(join_all(keeps), join_all(updates)).await;
        let kept: Vec<(String, Kept)> = (confirmed.iter().zip(kept))
            .filter_map(|((key, _), kept)| Some(((*key).clone(), kept.ok()?.ok()?)))
            .collect();
        for (key, kept) in kept {
            match kept {
                Kept::Ours(revision) => {
                    if let Some(held) = self.held.get_mut(&key) {
                        held.revision = Some(revision);
                    }
                }
                Kept::Lost => {
                    if let Some(held) = self.held.remove(&key) {
                        self.tell(Inbound::NameLost(held.name)).await;
                    }
                }
            }
        }
    }

    /// Back after a loss or a stall: each name held here is checked and written again as a
    /// refresh does; one that another instance holds now is lost, and the loop renames its
    /// member. The claims granted without an answer count as confirmed from now on: `keep`
    /// reads each entry before it writes one whose revision it does not know.
    pub(in crate::bus::link) async fn reclaim(&mut self, bucket: &Store) {
        self.unanswered.claims.clear();
        self.refresh(bucket).await;
    }
}

/// What became of a name held here.
enum Kept {
    /// Written again (or found written by this instance): the entry's revision.
    Ours(u64),
    /// Another instance's now.
    Lost,
}

/// Writes `key` = `value` again over the entry at `revision` (the one this instance last wrote);
/// if the entry changed since (or the revision is not known), reads it: still this instance's
/// value, it is kept as it is; gone (deleted, or aged out while this instance could not refresh
/// it), it is created again; another's, the name is lost.
async fn keep(
    bucket: &Store,
    key: &str,
    value: &str,
    revision: Option<u64>,
) -> Result<Kept, NoAnswer> {
    if let Some(revision) = revision
        && let Ok(revision) = bucket.update(key, value.to_owned().into(), revision).await
    {
        return Ok(Kept::Ours(revision));
    }
    // Not at the revision written here (or the update failed: the read tells which).
    let entry = bucket.entry(key).await.map_err(|_| NoAnswer)?;
    match entry {
        Some(entry) if entry.operation == kv::Operation::Put => {
            if entry.value == value.as_bytes() {
                Ok(Kept::Ours(entry.revision))
            } else {
                Ok(Kept::Lost)
            }
        }
        // Absent, deleted or purged: nobody has it; created again unless another claim is first.
        _ => match bucket.create(key, value.to_owned().into()).await {
            Ok(revision) => Ok(Kept::Ours(revision)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Kept::Lost),
            Err(_) => Err(NoAnswer),
        },
    }
}
