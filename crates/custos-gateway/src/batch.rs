//! Group commit for records the hot path must not wait on: a bounded channel to one task
//! that commits whatever has queued up in one transaction. When the database falls behind,
//! the channel fills and callers wait for room (back-pressure); nothing is dropped, and a
//! failed batch is retried until it lands.

use std::future::Future;
use tokio::sync::{mpsc, oneshot};

/// Writes one batch; an error keeps the batch for a retry.
pub trait Commit<T>: Send + Sync + 'static {
    fn commit(&self, items: &[T]) -> impl Future<Output = Result<(), String>> + Send;
    /// What is written, for log lines.
    fn what(&self) -> &'static str;
}

enum Msg<T> {
    Item(T),
    /// An item whose sender waits until it is committed: never held back by the pacing.
    Durable(T, oneshot::Sender<()>),
    Flush(oneshot::Sender<()>),
}

/// The sending side.
#[derive(Debug)]
pub struct BatchSink<T> {
    tx: mpsc::Sender<Msg<T>>,
}

impl<T> Clone for BatchSink<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

/// Room for one item, reserved before the item exists (e.g. before a response streams).
pub struct Permit<T>(mpsc::OwnedPermit<Msg<T>>);

impl<T> Permit<T> {
    pub fn send(self, item: T) {
        self.0.send(Msg::Item(item));
    }

    /// Sends the item; the receiver completes once it is committed (or the writer is gone).
    pub fn send_durable(self, item: T) -> oneshot::Receiver<()> {
        let (done, wait) = oneshot::channel();
        self.0.send(Msg::Durable(item, done));
        wait
    }
}

impl<T: Send + 'static> BatchSink<T> {
    /// Starts the writer; it commits until every sender is gone, at most once per `pace`:
    /// under load a batch then gathers what arrives in that time, so the per-commit work
    /// (a transaction, its pages written to the WAL, a thread hand-off) is paid once for many
    /// items rather than for every few. An item waits at most `pace` longer to be durable; a
    /// flush that finds the writer idle commits at once.
    pub fn spawn(
        queue: usize,
        batch_max: usize,
        pace: std::time::Duration,
        writer: impl Commit<T>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Msg<T>>(queue);
        let task = tokio::spawn(async move {
            let mut batch: Vec<T> = Vec::with_capacity(batch_max);
            let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
            let mut last_commit: Option<tokio::time::Instant> = None;
            while let Some(first) = rx.recv().await {
                let due = last_commit.map(|last| last + pace);
                if let (Msg::Item(_), Some(due)) = (&first, due) {
                    if tokio::time::Instant::now() < due {
                        // Sleeping rather than waiting on the channel: senders then do not
                        // wake this task once per item while the batch gathers.
                        tokio::time::sleep_until(due).await;
                    }
                }
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Item(e) => batch.push(e),
                        Msg::Durable(e, done) => {
                            batch.push(e);
                            flushes.push(done);
                        }
                        Msg::Flush(done) => flushes.push(done),
                    }
                    if batch.len() < batch_max {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    last_commit = Some(tokio::time::Instant::now());
                }
                while !batch.is_empty() {
                    match writer.commit(&batch).await {
                        Ok(()) => batch.clear(),
                        Err(e) => {
                            tracing::error!(error = %e, items = batch.len(), what = writer.what(), "cannot write a batch; retrying");
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        }
                    }
                }
                for done in flushes.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        (Self { tx }, task)
    }

    /// Waits for room for one item; `None` when the writer has stopped.
    pub async fn reserve(&self) -> Option<Permit<T>> {
        self.tx.clone().reserve_owned().await.ok().map(Permit)
    }

    /// Sends one item, waiting for room.
    pub async fn send(&self, item: T) -> bool {
        self.tx.send(Msg::Item(item)).await.is_ok()
    }

    /// Waits until every item sent before this call is committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}
