//! The message pipeline: the hot path from "accepted" to "delivered". One task takes
//! every queued append (up to `MAX_BATCH`), keeps them in ONE store transaction, then
//! publishes each new event once, already encoded, in sequence order, and only then
//! answers the senders. Publishing from this single task is what keeps each room's
//! events in seq order on the bus; batching is what keeps commits (fsyncs) off the
//! per-message cost. At rest a lone message is committed at once: no timers. Under
//! steady load (the next message came within `BUSY_GAP` of the last commit) a commit
//! that would carry only a few messages first waits `GATHER` for more: a commit costs
//! the same for one message as for several (issue 16: ~1,000 one-message commits a
//! second, from senders spread over time, were most of the writer's work).

use std::time::Duration;

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::ChatResult;
use crate::{
    bus::DynBus,
    domain::MessageKind,
    hub::{Envelope, Topic},
    store::{Appended, DynStore, NewMessage, StoreError},
    ws::protocol::{Event, ServerFrame},
};

const MAX_BATCH: usize = 512;
/// How long a small commit under load waits for more messages (tokio's timer rounds
/// it up to its next millisecond tick).
const GATHER: Duration = Duration::from_micros(500);
/// A commit smaller than this may wait; a larger one already spreads its cost.
const GATHER_BELOW: usize = 8;
/// Load is steady when a message comes less than this after the previous commit.
const BUSY_GAP: Duration = Duration::from_millis(2);

pub(super) struct Job {
    pub msg: NewMessage,
    /// The live event as it will go out, but for its seq (unknown until the commit).
    pub event: Event,
    pub done: oneshot::Sender<Result<Appended, StoreError>>,
}

pub(super) struct Pipeline {
    tx: mpsc::Sender<Job>,
}

impl Pipeline {
    /// `files` is rung after each commit: a delete action or a retention trim may
    /// have dropped attached files (`files.rs` sweeps their blobs).
    pub fn start(store: DynStore, bus: DynBus, files: std::sync::Arc<tokio::sync::Notify>) -> Self {
        let (tx, rx) = mpsc::channel(16 * 1024);
        tokio::spawn(run(store, bus, rx, files));
        Pipeline { tx }
    }

    /// Queues an append; the receiver resolves once it is kept and published.
    pub async fn submit(
        &self,
        msg: NewMessage,
        event: Event,
    ) -> ChatResult<oneshot::Receiver<Result<Appended, StoreError>>> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { msg, event, done })
            .await
            .map_err(|_| super::ChatError::Internal("message pipeline stopped".into()))?;
        Ok(wait)
    }
}

/// The live frame of an event, given its seq (none in ephemeral rooms).
pub(super) fn event_frame(kind: MessageKind, template: &Event, seq: Option<i64>) -> ServerFrame {
    let mut ev = template.clone();
    ev.seq = seq;
    kept_frame(kind, ev)
}

/// A kept event's live frame: a `message` for text, a `notice` for joins and leaves,
/// an `action` for edits, deletes and reactions.
pub(super) fn kept_frame(kind: MessageKind, ev: Event) -> ServerFrame {
    match kind {
        MessageKind::Text => ServerFrame::Message(ev),
        MessageKind::Joined | MessageKind::Left | MessageKind::Moderation => ServerFrame::Notice(ev),
        MessageKind::Edit | MessageKind::Delete | MessageKind::React | MessageKind::Unreact => ServerFrame::Action(ev),
    }
}

async fn run(store: DynStore, bus: DynBus, mut rx: mpsc::Receiver<Job>, files: std::sync::Arc<tokio::sync::Notify>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<NewMessage> = Vec::with_capacity(MAX_BATCH);
    let mut last_commit: Option<Instant> = None;
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        if jobs.len() < GATHER_BELOW && last_commit.is_some_and(|t| t.elapsed() < BUSY_GAP) {
            tokio::time::sleep(GATHER).await;
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        batch.clear();
        batch.extend(jobs.iter().map(|j| j.msg.clone()));
        crate::metrics::batch(batch.len());
        let appended = crate::metrics::timed("append", store.append(&batch)).await;
        last_commit = Some(Instant::now());
        match appended {
            Ok(results) => {
                // The whole commit is published in one hand-off, in seq order, and
                // only then acked: a connection gets the batch's events in one write.
                let envs: Vec<Envelope> = jobs
                    .iter()
                    .zip(&results)
                    .filter_map(|(job, r)| match r {
                        Appended::New(seq) => Some(Envelope {
                            topic: Topic::Room(job.msg.room_id),
                            control: None,
                            frame: Some(event_frame(job.msg.kind, &job.event, Some(*seq)).encode()),
                            seq: Some(*seq),
                        }),
                        Appended::Duplicate(_) => None,
                    })
                    .collect();
                let published = envs.len();
                if let Err(e) = bus.publish_batch(envs).await {
                    // Kept but not delivered live: members get it on resume.
                    tracing::warn!(error = %e, events = published, "publish failed");
                }
                for (job, r) in jobs.drain(..).zip(results) {
                    let _ = job.done.send(Ok(r));
                }
                files.notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, size = batch.len(), "message batch failed");
                for job in jobs.drain(..) {
                    let _ = job.done.send(Err(e.clone()));
                }
            }
        }
    }
}
