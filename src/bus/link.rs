//! The bus thread's side: one NATS connection (async-nats) on a current-thread tokio runtime that
//! lives in this thread only. It takes numbered frames from the loop and publishes them on the
//! room's subject, hands what the other instances publish back to the loop, says when the bus
//! comes and goes, and publishes a `beat` every `BEAT`. A `/msg` for another instance goes out
//! with a reply subject on this connection's inbox, and the loop is told whether an answer came
//! within `ASK_TIMEOUT` (`bus/asks.rs`); answers to other instances' `/msg`s go out unnumbered.
//! The bucket of names is `link/bucket.rs`.
//!
//! Everything it tells the loop goes through one bounded channel and the loop's `Waker`; nothing
//! here touches a client. A frame that cannot be published (no connection) is counted, and the
//! count goes to the loop with the next `Connected`.
//!
//! Deliberately not here: the frame's bytes (`bus/wire.rs`) or what a frame causes (`chat/`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, Subject};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until, timeout};

use super::asks::Asks;
use super::nodes::BEAT;
use super::tally::Tally;
use super::wire::{self, What};
use super::{Inbound, NameOp, Outgoing, Route, Settings, Wake};

mod bucket;

use bucket::REFRESH;

/// Runs the bus until the loop drops its end of `out`. Never panics: every failure is told to the
/// loop as a line for the operator.
pub fn run(
    settings: Settings,
    out: mpsc::Receiver<Outgoing>,
    names: mpsc::Receiver<NameOp>,
    to_loop: mpsc::Sender<Inbound>,
    wake: Wake,
    counts: Counts,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let mut link = Link {
        settings,
        out,
        names,
        held: HashMap::new(),
        holds: HashMap::new(),
        unanswered: bucket::Unanswered::default(),
        asks: Asks::default(),
        to_loop,
        wake,
        counts,
        unshared: 0,
        last_seq: 0,
        slow: Tally::new(SLOW_EVERY),
    };
    match runtime {
        Ok(runtime) => runtime.block_on(link.serve()),
        Err(e) => {
            // Without a runtime there is no bus; the loop keeps serving locally.
            let _ = link.to_loop.try_send(Inbound::Unavailable(e.to_string()));
            link.wake.wake();
        }
    }
}

/// What the loop and the thread share as plain numbers.
pub struct Counts {
    /// The loop's member count, for beats.
    pub online: Arc<AtomicU64>,
    /// Payload bytes in the loop's queue to this thread; taken off as frames are received.
    pub queued: Arc<AtomicUsize>,
}

struct Link {
    settings: Settings,
    out: mpsc::Receiver<Outgoing>,
    names: mpsc::Receiver<NameOp>,
    /// Names claimed here, by bucket key (`bucket.rs`).
    held: HashMap<String, bucket::Held>,
    /// Names freed here by a leave and held for their last holder's address: bucket key -> the
    /// hold, kept in the bucket until it ends (`bucket.rs`).
    holds: HashMap<String, bucket::Hold>,
    /// Claims granted and releases kept back while the bucket did not answer (`bucket.rs`).
    unanswered: bucket::Unanswered,
    /// This instance's `/msg`s waiting for the instance that delivers them to say so.
    asks: Asks,
    to_loop: mpsc::Sender<Inbound>,
    wake: Wake,
    counts: Counts,
    /// Frames taken from the loop but not published since the last `Connected`.
    unshared: u64,
    /// The number of the last frame taken from the loop: what a beat repeats.
    last_seq: u64,
    /// NATS's slow-consumer events (one a message it dropped), told at most once a `SLOW_EVERY`.
    slow: Tally,
}

impl Link {
    async fn serve(&mut self) {
        let Some((client, mut events)) = self.connect().await else {
            return; // The loop is gone.
        };
        let subject = Subject::from(self.settings.subject.as_str());
        let mut room = match client.subscribe(subject.clone()).await {
            Ok(room) => room,
            Err(e) => {
                return self
                    .tell(Inbound::Unavailable(format!("subscribe: {e}")))
                    .await;
            }
        };
        // Answers to this instance's `/msg`s come on `<inbox>.<ask>`.
        let inbox = client.new_inbox();
        let mut answers = match client.subscribe(format!("{inbox}.*")).await {
            Ok(answers) => answers,
            Err(e) => {
                return self
                    .tell(Inbound::Unavailable(format!("subscribe: {e}")))
                    .await;
            }
        };
        let mut expired = Vec::new();
        // A round trip through the server before anyone is told the room is joined: a request it
        // answers itself (JetStream's account info, or "no responders" without JetStream). It
        // takes one connection's operations in order, so it has the subscriptions by then (a
        // flush only writes them out: another instance's line could still overtake them).
        let _ = timeout(CONNECT_TIMEOUT, client.request("$JS.API.INFO", "".into())).await;
        let unshared = std::mem::take(&mut self.unshared);
        self.tell(Inbound::Connected { unshared }).await;
        let mut bucket = self.open_bucket(&client).await;
        let mut up = true;
        let mut refresh = interval(REFRESH);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut beat = interval(BEAT);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The publish on its way, if any: awaited as one branch among the others, so that a
        // stuck nats-server (async-nats's queue and the socket full) holds up only the next
        // frame, never the asks' timeouts, the names or the connection's events.
        let mut sending: Option<Sending> = None;
        loop {
            let due = self.asks.next_due().map(Instant::from_std);
            tokio::select! {
                got = self.out.recv(), if sending.is_none() => {
                    let Some(frame) = got else {
                        // The loop is shutting down: what was published goes out first.
                        let _ = timeout(FLUSH_AT_EXIT, client.flush()).await;
                        return;
                    };
                    // The frames queued behind it go out in the same batch: one turn of this
                    // loop per batch, not per frame, while a member's lines stream in.
                    let mut frames = vec![frame];
                    while frames.len() < BATCH {
                        match self.out.try_recv() {
                            Ok(frame) => frames.push(frame),
                            Err(_) => break,
                        }
                    }
                    // Asked as the frames are taken, not as the wait began (which may be long).
                    let connected = up && client.connection_state() == State::Connected;
                    let mut batch = Vec::with_capacity(frames.len());
                    for frame in frames {
                        self.take(&frame);
                        let (to, reply) = match &frame.route {
                            Route::Room => (subject.clone(), None),
                            Route::Ask(ask) => {
                                (subject.clone(), Some(Subject::from(format!("{inbox}.{ask}"))))
                            }
                            Route::Answer(to) => (Subject::from(to.as_str()), None),
                        };
                        let started = connected
                            && match frame.route {
                                Route::Ask(ask) => self.asks.start(ask, Instant::now().into_std()),
                                _ => true,
                            };
                        if started {
                            batch.push((Some(frame.route), to, reply, frame.payload));
                        } else {
                            self.not_sent(&frame.route).await;
                        }
                    }
                    if !batch.is_empty() {
                        sending = Some(Box::pin(send(client.clone(), batch)));
                    }
                }
                failed = async {
                    match sending.as_mut() {
                        Some(send) => send.await,
                        None => std::future::pending().await,
                    }
                }, if sending.is_some() => {
                    sending = None;
                    for route in failed {
                        self.not_sent(&route).await;
                    }
                }
                Some(answer) = answers.next() => {
                    let ask = answer.subject.rsplit('.').next().and_then(|t| t.parse().ok());
                    if let Some(ask) = ask && self.asks.end(ask) {
                        self.tell(Inbound::Answered { ask, delivered: true }).await;
                    }
                }
                _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    self.asks.expire(Instant::now().into_std(), &mut expired);
                    for ask in expired.drain(..) {
                        self.tell(Inbound::Answered { ask, delivered: false }).await;
                    }
                }
                heard = room.next() => {
                    let Some(message) = heard else {
                        return self.tell(Inbound::Unavailable("subscription ended".into())).await;
                    };
                    let inbound = match wire::decode(&message.payload) {
                        Ok(mut frame) => {
                            wire::cut(&mut frame, self.settings.max_line);
                            Inbound::Frame(frame, message.reply.map(|r| r.to_string()))
                        }
                        Err(e) => Inbound::Malformed(e.to_string()),
                    };
                    self.tell(inbound).await;
                }
                event = events.recv() => match event {
                    Some(Event::Disconnected) if up => {
                        up = false;
                        self.tell(Inbound::Lost).await;
                    }
                    Some(Event::Connected) if !up => {
                        up = true;
                        let unshared = std::mem::take(&mut self.unshared);
                        self.tell(Inbound::Connected { unshared }).await;
                        // Opened again: a server restarted with an empty store has no bucket
                        // until one is made (the names held here then go into it).
                        bucket = match self.try_open_bucket(&client).await {
                            Ok(store) => Some(self.names_back(store).await),
                            Err(why) => {
                                self.tell(Inbound::Names(Some(why))).await;
                                None
                            }
                        };
                    }
                    Some(Event::SlowConsumer(_)) => {
                        if let Some(times) = self.slow.add(Instant::now().into_std()) {
                            self.tell(Inbound::SlowConsumer(times)).await;
                        }
                    }
                    _ => {}
                },
                op = self.names.recv() => {
                    if let Some(op) = op {
                        self.name_op(bucket.as_ref(), op).await;
                    }
                }
                _ = refresh.tick() => {
                    // No bucket yet (JetStream off, or still starting after a restart): asked
                    // again each refresh.
                    if up && bucket.is_none()
                        && let Ok(store) = self.try_open_bucket(&client).await
                    {
                        bucket = Some(self.names_back(store).await);
                    }
                    if let (true, Some(bucket)) = (up, &bucket) {
                        let stalled = self.unanswered.waiting();
                        if stalled {
                            self.settle(bucket).await;
                        }
                        // Still stalled: a refresh would only wait out its time too. Just back:
                        // each name checked before it is written again, since a long stall may
                        // have let entries age out and another instance take one.
                        match (stalled, self.unanswered.waiting()) {
                            (_, true) => {}
                            (true, false) => self.reclaim(bucket).await,
                            (false, false) => self.refresh(bucket).await,
                        }
                    }
                }
                _ = beat.tick() => {
                    // Slow-consumer events counted since the last report, once it is time.
                    if let Some(times) = self.slow.due(Instant::now().into_std()) {
                        self.tell(Inbound::SlowConsumer(times)).await;
                    }
                    // A beat waiting behind a stuck send would say nothing new: skipped.
                    if up && client.connection_state() == State::Connected && sending.is_none() {
                        let online = self.counts.online.load(Ordering::Relaxed);
                        let node = &self.settings.node;
                        let payload = wire::encode(node, self.last_seq, online, &What::Beat);
                        let beat = vec![(None, subject.clone(), None, payload)];
                        sending = Some(Box::pin(send(client.clone(), beat)));
                    }
                }
            }
        }
    }

    /// Connects, telling the loop why not and trying again with a growing delay (frames from the
    /// loop meanwhile are counted as not shared). `None` once the loop has gone.
    async fn connect(&mut self) -> Option<(Client, mpsc::Receiver<Event>)> {
        let mut delay = FIRST_RETRY;
        loop {
            let (events_in, events) = mpsc::channel(EVENTS);
            let options = ConnectOptions::new()
                .no_echo()
                .name(format!("chatd {}", self.settings.node))
                .connection_timeout(CONNECT_TIMEOUT)
                .reconnect_delay_callback(retry_delay)
                .event_callback(move |event| {
                    let events_in = events_in.clone();
                    async move {
                        // Only the link's own state changes matter; a full queue drops the rest.
                        let _ = events_in.try_send(event);
                    }
                });
            match options.connect(self.settings.url.as_str()).await {
                Ok(client) => return Some((client, events)),
                Err(e) => self.tell(Inbound::Unavailable(e.to_string())).await,
            }
            let until = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = sleep_until(until) => break,
                    got = self.out.recv() => {
                        let frame = got?;
                        self.take(&frame);
                        self.unshared += 1;
                    }
                }
            }
            delay = (delay * 2).min(MAX_RETRY);
        }
    }

    /// A frame is off the loop's queue: its number is the last one taken, its bytes no longer
    /// count against the queue's bound.
    fn take(&mut self, frame: &Outgoing) {
        if let Route::Answer(_) = frame.route {
            return; // Not numbered, not counted in the queue's bytes.
        }
        self.last_seq = frame.seq;
        self.counts
            .queued
            .fetch_sub(frame.payload.len(), Ordering::AcqRel);
    }

    /// A frame that could not be published: counted (and a `/msg`'s member told at once).
    async fn not_sent(&mut self, route: &Route) {
        match route {
            Route::Room => self.unshared += 1,
            Route::Ask(ask) => {
                self.unshared += 1;
                self.asks.end(*ask);
                let (ask, delivered) = (*ask, false);
                self.tell(Inbound::Answered { ask, delivered }).await;
            }
            Route::Answer(_) => {}
        }
    }

    /// Hands one thing to the loop and wakes it. Waits while the loop's queue is full: the bus
    /// then stops reading, and NATS, not chatd, holds (or drops) what comes meanwhile.
    async fn tell(&mut self, inbound: Inbound) {
        if self.to_loop.send(inbound).await.is_ok() {
            self.wake.wake();
        }
    }
}

/// One frame to publish: its route (`None` for a beat), subject, reply subject (a `/msg`'s) and
/// payload.
type Publish = (Option<Route>, Subject, Option<Subject>, Vec<u8>);

/// A batch of publishes on its way; it gives the routes of the frames async-nats could not take.
type Sending = Pin<Box<dyn Future<Output = Vec<Route>>>>;

/// Publishes each frame of `batch` in order; gives the routes of those that could not go.
async fn send(client: Client, batch: Vec<Publish>) -> Vec<Route> {
    let mut failed = Vec::new();
    for (route, to, reply, payload) in batch {
        let sent = match reply {
            Some(reply) => client.publish_with_reply(to, reply, payload.into()).await,
            None => client.publish(to, payload.into()).await,
        };
        if let (Err(_), Some(route)) = (sent, route) {
            failed.push(route);
        }
    }
    failed
}

/// async-nats's delay before reconnect attempt `attempts`: as the first connection's.
fn retry_delay(attempts: usize) -> Duration {
    let doublings = u32::try_from(attempts.min(8)).unwrap_or(8);
    (FIRST_RETRY * 2u32.pow(doublings)).min(MAX_RETRY)
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a bucket operation may take before it is given up.
const KV_TIMEOUT: Duration = Duration::from_secs(2);
const FLUSH_AT_EXIT: Duration = Duration::from_millis(500);
/// The most frames published in one batch.
const BATCH: usize = 256;
/// At most one slow-consumer report this often (NATS says it once a message it drops).
const SLOW_EVERY: Duration = Duration::from_secs(5);
/// Connection events queued between async-nats's callback and the link.
const EVENTS: usize = 64;
