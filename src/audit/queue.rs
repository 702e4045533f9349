//! [`RecordQueue`]: where a buffered layer's records wait for its writer, as canonical bytes in
//! one growing batch.
//!
//! A request appends its record's bytes to the batch the writer will take next, so a record
//! costs no allocation and no channel slot of its own; the writer swaps the whole batch out at
//! once. Bounded in records: a full queue makes a request wait for the writer to take the
//! batch, or refuses it (for the layer to drop and count).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::batch::RecordBatch;

/// Why a record did not join the queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue holds as many records as it may.
    Full,
    /// The writer is gone: nothing will take the record.
    Closed,
}

/// The queue shared by the layer (through a [`QueueHandle`]) and its writer.
#[derive(Debug)]
pub(crate) struct RecordQueue {
    waiting: Mutex<RecordBatch>,
    capacity: usize,
    /// Wakes the writer when the queue stops being empty, and when the layer is gone.
    filled: Notify,
    /// Wakes requests waiting for room when the writer takes the batch.
    emptied: Notify,
    /// Set when the layer is gone: the writer writes what is left and stops.
    closed: AtomicBool,
    /// Set when the writer is gone (its runtime shut down).
    writer_gone: AtomicBool,
}

impl RecordQueue {
    /// A queue of at most `capacity` records, the handle the layer keeps, and the writer's end.
    pub(crate) fn bounded(capacity: usize) -> (QueueHandle, WriterEnd) {
        let queue = Arc::new(Self {
            waiting: Mutex::new(RecordBatch::default()),
            capacity,
            filled: Notify::new(),
            emptied: Notify::new(),
            closed: AtomicBool::new(false),
            writer_gone: AtomicBool::new(false),
        });
        (QueueHandle(queue.clone()), WriterEnd(queue))
    }

    /// The batch waiting; a panic while it was held cannot have left it half-written (an append
    /// is one `extend_from_slice` and one `push`), so a poisoned lock is taken as it is.
    fn lock(&self) -> MutexGuard<'_, RecordBatch> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The layer's end: appends records, and closes the queue when the layer is dropped.
#[derive(Debug)]
pub(crate) struct QueueHandle(Arc<RecordQueue>);

impl QueueHandle {
    /// Appends a record given as its canonical bytes, if there is room; how many records wait
    /// now.
    pub(crate) fn try_push(&self, canonical: &[u8]) -> Result<usize, Refused> {
        let queue = &self.0;
        if queue.writer_gone.load(Ordering::Relaxed) {
            return Err(Refused::Closed);
        }
        let mut waiting = queue.lock();
        if waiting.len() >= queue.capacity {
            return Err(Refused::Full);
        }
        waiting.push_canonical(canonical);
        let depth = waiting.len();
        drop(waiting);
        if depth == 1 {
            queue.filled.notify_one();
        }
        Ok(depth)
    }

    /// Appends a record, waiting for room while the queue is full (back-pressure); how many
    /// records wait now.
    pub(crate) async fn push(&self, canonical: &[u8]) -> Result<usize, Refused> {
        loop {
            // Registered before the lock is let go, so the writer's taking the batch between
            // the check and the wait still wakes this request.
            let room = self.0.emptied.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push(canonical) {
                Err(Refused::Full) => room.await,
                done => return done,
            }
        }
    }

    /// The most records the queue holds.
    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity
    }
}

impl Drop for QueueHandle {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.filled.notify_one();
    }
}

/// The writer's end: takes whole batches; marks the writer gone when dropped.
#[derive(Debug)]
pub(crate) struct WriterEnd(Arc<RecordQueue>);

impl WriterEnd {
    /// Waits until a record is waiting, then until `gather` has passed (so a batch holds
    /// every record of that moment), and takes them all; `None` once the layer is gone and
    /// every record has been taken.
    pub(crate) async fn next_batch(&self, gather: std::time::Duration) -> Option<RecordBatch> {
        let queue = &self.0;
        loop {
            let filled = queue.filled.notified();
            tokio::pin!(filled);
            filled.as_mut().enable();
            let waiting = queue.lock().len();
            if waiting == 0 {
                if queue.closed.load(Ordering::Acquire) {
                    return None;
                }
                filled.await;
                continue;
            }
            if waiting < queue.capacity && !queue.closed.load(Ordering::Acquire) {
                tokio::time::sleep(gather).await;
            }
            let batch = std::mem::take(&mut *queue.lock());
            queue.emptied.notify_waiters();
            return Some(batch);
        }
    }
}

impl Drop for WriterEnd {
    fn drop(&mut self) {
        self.0.writer_gone.store(true, Ordering::Relaxed);
        // Requests waiting for room would wait for ever: they find the writer gone instead.
        self.0.emptied.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_writer_takes_every_record_waiting_at_once_in_order() {
        let (handle, writer) = RecordQueue::bounded(8);
        for (depth, record) in [&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"]
            .into_iter()
            .enumerate()
        {
            assert_eq!(handle.try_push(record), Ok(depth + 1));
        }
        let batch = writer.next_batch(Duration::ZERO).await.unwrap();
        let records: Vec<&[u8]> = batch.canonical().collect();
        assert_eq!(records, [&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"]);
        assert_eq!(
            handle.try_push(b"{}"),
            Ok(1),
            "the queue starts again empty"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_or_waits_for_the_writer() {
        let (handle, writer) = RecordQueue::bounded(2);
        handle.try_push(b"1").unwrap();
        handle.try_push(b"2").unwrap();
        assert_eq!(handle.try_push(b"3"), Err(Refused::Full));
        let handle = Arc::new(handle);
        let waiting = tokio::spawn({
            let handle = handle.clone();
            async move { handle.push(b"3").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "a full queue makes the request wait"
        );
        let first = writer.next_batch(Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(waiting.await.unwrap(), Ok(1));
        let second = writer.next_batch(Duration::ZERO).await.unwrap();
        assert_eq!(second.canonical().collect::<Vec<_>>(), [&b"3"[..]]);
    }

    #[tokio::test]
    async fn the_writer_drains_then_stops_when_the_layer_is_gone() {
        let (handle, writer) = RecordQueue::bounded(4);
        handle.try_push(b"last").unwrap();
        drop(handle);
        let batch = writer.next_batch(Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            batch.len(),
            1,
            "a closed queue is written at once, not after the wait"
        );
        assert!(writer.next_batch(Duration::ZERO).await.is_none());
    }

    #[tokio::test]
    async fn records_find_the_writer_gone() {
        let (handle, writer) = RecordQueue::bounded(1);
        handle.try_push(b"1").unwrap();
        let handle = Arc::new(handle);
        let waiting = tokio::spawn({
            let handle = handle.clone();
            async move { handle.push(b"2").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(writer);
        assert_eq!(waiting.await.unwrap(), Err(Refused::Closed));
        assert_eq!(handle.try_push(b"3"), Err(Refused::Closed));
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_for_the_first_record() {
        let (handle, writer) = RecordQueue::bounded(4);
        let taken = tokio::spawn(async move { writer.next_batch(Duration::ZERO).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        handle.try_push(b"1").unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(5), taken)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(batch.len(), 1);
    }
}
