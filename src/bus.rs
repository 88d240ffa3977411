//! `--bus`: the room shared with other chatd instances over NATS. The loop's end of it: a handle
//! that numbers and hands frames to the bus thread without ever waiting, and takes what the thread
//! heard, after the thread woke the loop through the loop's one `Waker` (shared with the console).
//!
//! The thread (`bus/link.rs`) owns the NATS client, async-nats on a current-thread tokio runtime
//! that exists in that thread only: the loop stays one mio thread with no runtime in it. Both ways
//! go through bounded channels. Past the outbound bound a frame is counted as not shared, never
//! queued without limit; inbound, a full queue makes the thread stop reading, and NATS holds or
//! drops what comes meanwhile (a dropped frame shows as a gap in the sender's numbers).
//!
//! Layout: `wire` (the frames' bytes, pure), `nodes` (what is known of the other instances:
//! numbers, counts, names; pure), `asks` (`/msg`s waiting for an answer; pure), `tally` (a
//! bursty report said once every few seconds; pure), `link` (the thread).
//!
//! Deliberately not here: what a frame causes in the room (`chat/across.rs`), report text
//! (`report/bus.rs`).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use mio::Waker;
use tokio::sync::mpsc;

use crate::ids::ConnId;
use crate::names::Refused;

pub mod asks;
mod link;
pub mod nodes;
mod tally;
pub mod wire;

pub use nodes::{Nodes, Seen};
pub use wire::{Frame, Member, What};

/// Where and as whom to join the room.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--bus`, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// `chatd.room.<--bus-room>`.
    pub subject: String,
    /// `--node`.
    pub node: String,
    /// The key-value bucket of names: `chatd-names-<--bus-room>`.
    pub bucket: String,
    /// `--max-line`: a frame's text longer than a local member's line may be is cut
    /// (`wire::cut`).
    pub max_line: usize,
}

/// A name asked of, or given back to, the bucket of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOp {
    /// For member `id` in slot `key`, connected from `from`.
    Claim {
        key: usize,
        id: ConnId,
        name: String,
        from: IpAddr,
    },
    /// Given back: on a leave, held for a minute for the address `hold`.
    Release { name: String, hold: Option<IpAddr> },
}

/// What the bus thread tells the loop.
#[derive(Debug)]
pub enum Inbound {
    /// The first connection failed (or the runtime could not start); retrying.
    Unavailable(String),
    /// Connected, or connected again; `unshared` frames could not be published meanwhile.
    Connected { unshared: u64 },
    /// The connection dropped; async-nats is reconnecting.
    Lost,
    /// NATS dropped messages for this subscriber (it read too slowly): so many times since the
    /// last report (at most one every `SLOW_EVERY`).
    SlowConsumer(u64),
    /// A frame another instance published, with the subject to answer it on (a `/msg`).
    Frame(Frame, Option<String>),
    /// What became of this instance's `/msg` numbered `ask`: delivered by the instance that has
    /// the member, or not (no answer within `ASK_TIMEOUT`, or the bus is down).
    Answered { ask: u64, delivered: bool },
    /// A message on the room's subject that is not a frame.
    Malformed(String),
    /// Names are claimed in the bucket from now on (`None`), or cannot be (why).
    Names(Option<String>),
    /// The bucket's answer to a `NameOp::Claim`: granted (`None`), or why not.
    Claimed {
        key: usize,
        id: ConnId,
        name: String,
        refused: Option<Refused>,
    },
    /// A name held here was claimed elsewhere while the bus was away.
    NameLost(String),
}

/// One numbered frame for the thread to publish, or an answer to another instance's `/msg`.
#[derive(Debug)]
struct Outgoing {
    /// 0 for an answer: answers are not room lines, and are not numbered.
    seq: u64,
    payload: Vec<u8>,
    route: Route,
}

/// Where the thread publishes an `Outgoing`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// On the room's subject.
    Room,
    /// On the room's subject, with a reply subject the thread waits on: this instance's `/msg`
    /// numbered so.
    Ask(u64),
    /// "Delivered", on another instance's reply subject.
    Answer(String),
}

/// Wakes the loop once for however many things the thread queued since the loop last looked.
#[derive(Clone)]
struct Wake {
    waker: Arc<Waker>,
    pending: Arc<AtomicBool>,
}

impl Wake {
    fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // A failed wake leaves the loop to find the queue at its next turn.
            let _ = self.waker.wake();
        }
    }
}

/// The loop's handle on the bus.
pub struct Bus {
    node: String,
    out: mpsc::Sender<Outgoing>,
    names: mpsc::Sender<NameOp>,
    from_bus: mpsc::Receiver<Inbound>,
    pending: Arc<AtomicBool>,
    /// The loop's member count, read by the thread for its beats.
    online: Arc<AtomicU64>,
    /// Payload bytes queued for the thread and not yet taken: with the queue's length, what
    /// bounds the memory a flood of long lines can make the loop hold for the bus.
    queued: Arc<AtomicUsize>,
    /// The number of the last frame made (shared or not).
    seq: u64,
    /// Frames the outbound queue had no room for since they were last reported.
    unshared: u64,
}

impl Bus {
    /// Starts the bus thread; it connects in the background and says how that went.
    pub fn start(settings: Settings, waker: Arc<Waker>) -> io::Result<Bus> {
        let (out, out_rx) = mpsc::channel(OUTBOUND);
        let (to_loop, from_bus) = mpsc::channel(INBOUND);
        let (names, names_rx) = mpsc::channel(NAME_OPS);
        let pending = Arc::new(AtomicBool::new(false));
        let online = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let wake = Wake {
            waker,
            pending: Arc::clone(&pending),
        };
        let node = settings.node.clone();
        let counts = link::Counts {
            online: Arc::clone(&online),
            queued: Arc::clone(&queued),
        };
        thread::Builder::new()
            .name("bus".into())
            .spawn(move || link::run(settings, out_rx, names_rx, to_loop, wake, counts))?;
        Ok(Bus {
            node,
            out,
            names,
            from_bus,
            pending,
            online,
            queued,
            seq: 0,
            unshared: 0,
        })
    }

    /// Numbers `what` and hands it to the thread; if its queue is full, the frame is counted as
    /// not shared (the number is used all the same, so receivers see the gap), and false is
    /// returned. `ask` numbers a `/msg` whose answer the thread will report. Never waits.
    pub fn publish(&mut self, what: &What, online: usize, ask: Option<u64>) -> bool {
        self.seq += 1;
        let online = online as u64;
        self.online.store(online, Ordering::Relaxed);
        let payload = wire::encode(&self.node, self.seq, online, what);
        let len = payload.len();
        let room = self.queued.load(Ordering::Acquire) + len <= OUTBOUND_BYTES;
        // Counted before it is sent, so that the thread never takes off more than was added.
        self.queued.fetch_add(len, Ordering::AcqRel);
        let seq = self.seq;
        let route = ask.map_or(Route::Room, Route::Ask);
        let frame = Outgoing {
            seq,
            payload,
            route,
        };
        if !room || self.out.try_send(frame).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.unshared += 1;
            return false;
        }
        true
    }

    /// Tells the instance that sent a `/msg` (its reply subject `to`) that it was delivered here.
    /// A full queue drops the answer: the sender then tells its member nobody has the name.
    pub fn answer(&mut self, to: String) {
        let _ = self.out.try_send(Outgoing {
            seq: 0,
            payload: ANSWER.to_vec(),
            route: Route::Answer(to),
        });
    }

    /// Hands a claim or a release to the thread; false if its queue is full.
    pub fn name_op(&mut self, op: NameOp) -> bool {
        self.names.try_send(op).is_ok()
    }

    /// Frames the queue had no room for since the last call.
    pub fn take_unshared(&mut self) -> u64 {
        std::mem::take(&mut self.unshared)
    }

    /// The next thing the thread heard, if any. Call `begin_drain` first.
    pub fn next(&mut self) -> Option<Inbound> {
        self.from_bus.try_recv().ok()
    }

    /// Before draining: what the thread queues from now on wakes the loop again.
    pub fn begin_drain(&self) {
        self.pending.store(false, Ordering::Release);
    }

    /// Whether the thread has queued something not yet taken (the loop then polls without
    /// waiting).
    pub fn is_waiting(&self) -> bool {
        !self.from_bus.is_empty()
    }

    /// Keeps the count the beats carry current.
    pub fn set_online(&self, online: usize) {
        self.online.store(online as u64, Ordering::Relaxed);
    }
}

/// Frames the loop may queue for the thread before they are counted as not shared: a member's
/// burst of a few thousand lines fits while the thread publishes them.
const OUTBOUND: usize = 65_536;
/// And their payload bytes (lines may be up to `--max-line` long).
const OUTBOUND_BYTES: usize = 32 << 20;
/// What an instance answers to a `/msg` it delivered.
const ANSWER: &[u8] = b"delivered";
/// Claims and releases the loop may queue for the thread.
const NAME_OPS: usize = 4096;
/// Frames the thread may queue for the loop before it stops reading the bus.
const INBOUND: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle whose thread never takes anything: what a stuck bus looks like to the loop.
    fn stuck() -> (Bus, mpsc::Receiver<Outgoing>) {
        let (out, out_rx) = mpsc::channel(OUTBOUND);
        let (names, _) = mpsc::channel(NAME_OPS);
        let (_, from_bus) = mpsc::channel(INBOUND);
        let bus = Bus {
            node: "a".into(),
            out,
            names,
            from_bus,
            pending: Arc::new(AtomicBool::new(false)),
            online: Arc::new(AtomicU64::new(0)),
            queued: Arc::new(AtomicUsize::new(0)),
            seq: 0,
            unshared: 0,
        };
        (bus, out_rx)
    }

    #[test]
    fn a_stuck_bus_counts_lines_past_the_queue_and_never_waits() {
        let (mut bus, _thread_end) = stuck();
        for _ in 0..OUTBOUND + 5 {
            bus.publish(&What::All(b"x".to_vec()), 1, None);
        }
        assert_eq!(bus.take_unshared(), 5);
        assert_eq!(bus.take_unshared(), 0);
        assert_eq!(
            bus.seq,
            OUTBOUND as u64 + 5,
            "every line numbered, shared or not"
        );
    }

    #[test]
    fn long_lines_are_bounded_in_bytes_too() {
        let (mut bus, mut thread_end) = stuck();
        let line = vec![b'x'; 64 * 1024];
        let fits = OUTBOUND_BYTES / (line.len() + 40);
        for _ in 0..fits + 10 {
            bus.publish(&What::All(line.clone()), 1, None);
        }
        let unshared = bus.take_unshared();
        assert!((10..=11).contains(&unshared), "{unshared}");
        assert!(bus.queued.load(Ordering::Acquire) <= OUTBOUND_BYTES);
        // What the thread takes off makes room again.
        let taken = thread_end.try_recv().expect("a queued frame");
        bus.queued.fetch_sub(taken.payload.len(), Ordering::AcqRel);
        bus.publish(&What::All(line), 1, None);
        assert_eq!(bus.take_unshared(), 0);
    }
}
