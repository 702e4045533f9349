//! The writer thread: group commit, rotation, the head after each commit, and checkpoints.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::files::{HeadFile, rotated};
use crate::audit::batch::RecordBatch;
use crate::audit::chain::{Position, append_line, link};
use crate::clock::{SharedClock, day_of};

#[derive(Default)]
pub(super) struct Counters {
    pub(super) records: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) checkpoints: AtomicU64,
    pub(super) checkpoint_failures: AtomicU64,
}

/// One write: a record or a batch, acknowledged together (a batch lands in one commit, so its
/// records share their outcome).
pub(super) struct Job {
    /// The records' canonical bytes: one allocation for the batch, made on the caller's thread
    /// and freed on the writer's, rather than one per record.
    pub(super) batch: RecordBatch,
    pub(super) done: oneshot::Sender<Result<(), String>>,
}

/// What the writer thread is woken for.
pub(super) enum Work {
    Write(Job),
    /// The checkpoint interval went by: seal what is unsealed.
    #[cfg_attr(not(feature = "audit-signing"), allow(dead_code))]
    Seal,
    /// Seal whatever is unsealed now, and say whether a checkpoint was written.
    #[cfg(feature = "audit-signing")]
    SealNow(oneshot::Sender<io::Result<bool>>),
}

/// Wakes the writer every `every` to seal a quiet log. The thread holds the queue only weakly,
/// so it ends once every sink handle is gone.
#[cfg(feature = "audit-signing")]
pub(super) fn start_seal_timer(
    jobs: &mpsc::Sender<Work>,
    every: std::time::Duration,
) -> io::Result<()> {
    let weak = jobs.downgrade();
    std::thread::Builder::new()
        .name("audit-seal-timer".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(jobs) = weak.upgrade() else { return };
                if jobs.blocking_send(Work::Seal).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

pub(super) struct Writer {
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) size: u64,
    pub(super) position: Position,
    pub(super) head: HeadFile,
    pub(super) day: u64,
    pub(super) rotate_bytes: Option<u64>,
    pub(super) rotate_daily: bool,
    pub(super) max_batch: usize,
    pub(super) clock: SharedClock,
    pub(super) healthy: Arc<AtomicBool>,
    pub(super) counters: Arc<Counters>,
    /// Set when a failed write could not be undone: the file's tail is unknown, so nothing more
    /// is written (a restart recovers it).
    pub(super) broken: bool,
    #[cfg(feature = "audit-signing")]
    pub(super) sealer: Option<super::super::seal::Sealer>,
}

impl Writer {
    pub(super) fn run(mut self, mut queue: mpsc::Receiver<Work>) {
        #[cfg(feature = "audit-signing")]
        let mut sealing_now: Vec<oneshot::Sender<io::Result<bool>>> = Vec::new();
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut buffer = Vec::new();
        while let Some(work) = queue.blocking_recv() {
            let first = match work {
                Work::Write(job) => job,
                Work::Seal => {
                    self.seal(true);
                    continue;
                }
                #[cfg(feature = "audit-signing")]
                Work::SealNow(done) => {
                    let _ = done.send(self.seal_now());
                    continue;
                }
            };
            let mut records = first.batch.len();
            batch.push(first);
            while records < self.max_batch {
                match queue.try_recv() {
                    Ok(Work::Write(job)) => {
                        records += job.batch.len();
                        batch.push(job);
                    }
                    // A commit follows, and looks at the time itself.
                    Ok(Work::Seal) => {}
                    // After the records before it, which this commit writes.
                    #[cfg(feature = "audit-signing")]
                    Ok(Work::SealNow(done)) => {
                        sealing_now.push(done);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let outcome = self.commit(&batch, &mut buffer);
            match &outcome {
                Ok(()) => {
                    self.healthy.store(true, Ordering::Relaxed);
                    self.counters
                        .records
                        .fetch_add(records as u64, Ordering::Relaxed);
                    self.counters.commits.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    self.healthy.store(false, Ordering::Relaxed);
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(layer = "audit", sink = "file", path = %self.path.display(), %error,
                        records, "audit write failed; the records are refused");
                }
            }
            for job in batch.drain(..) {
                let _ = job
                    .done
                    .send(outcome.as_ref().map(|_| ()).map_err(ToString::to_string));
            }
            // After the acknowledgements: no request waits for a signature.
            if outcome.is_ok() {
                self.seal(false);
            }
            #[cfg(feature = "audit-signing")]
            for done in sealing_now.drain(..) {
                let _ = done.send(self.seal_now());
            }
        }
        // Every sink handle is gone: seal what is left, so a clean stop leaves nothing unsealed.
        self.seal_rest();
    }

    /// Writes a checkpoint if one is due; `timer` when the writer woke for time alone.
    #[cfg_attr(
        not(feature = "audit-signing"),
        allow(unused_variables, clippy::unused_self)
    )]
    fn seal(&mut self, timer: bool) {
        #[cfg(feature = "audit-signing")]
        if let Some(sealer) = self.sealer.as_mut() {
            let sealed = sealer.seal_if_due(&self.position, timer);
            self.count_seal(sealed);
        }
    }

    #[cfg_attr(not(feature = "audit-signing"), allow(clippy::unused_self))]
    fn seal_rest(&mut self) {
        #[cfg(feature = "audit-signing")]
        if let Some(sealer) = self.sealer.as_mut() {
            let sealed = sealer.seal_rest(&self.position);
            self.count_seal(sealed);
        }
    }

    /// Seals whatever is unsealed now, for [`FileSink::checkpoint_now`].
    #[cfg(feature = "audit-signing")]
    fn seal_now(&mut self) -> io::Result<bool> {
        let Some(sealer) = self.sealer.as_mut() else {
            return Ok(false);
        };
        let sealed = sealer.seal_rest(&self.position);
        let outcome = match &sealed {
            Ok(done) => Ok(*done),
            Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
        };
        self.count_seal(sealed);
        outcome
    }

    #[cfg(feature = "audit-signing")]
    fn count_seal(&self, sealed: io::Result<bool>) {
        match sealed {
            Ok(false) => {}
            Ok(true) => {
                self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.counters
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(layer = "audit", path = %self.path.display(), %error,
                    "could not write an audit checkpoint; the records stay unsealed until the next one");
            }
        }
    }

    /// Appends the batch's chained lines in one write and fsyncs; on failure the file is cut
    /// back to where it was and the chain does not move.
    fn commit(&mut self, batch: &[Job], buffer: &mut Vec<u8>) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "an earlier failed write could not be undone; restart to recover the log",
            ));
        }
        buffer.clear();
        let mut position = self.position;
        for canonical in batch.iter().flat_map(|job| job.batch.canonical()) {
            let hash = link(&position.head, canonical);
            append_line(buffer, position.next_seq, &position.head, &hash, canonical);
            position = Position {
                next_seq: position.next_seq.checked_add(1).ok_or_else(|| {
                    io::Error::other("the chain has reached the last sequence number")
                })?,
                head: hash,
            };
        }
        self.rotate_if_due(buffer.len() as u64)?;
        let written = self
            .file
            .write_all(buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Whatever part reached the file is not acknowledged: take it back.
            if self.file.set_len(self.size).is_err() {
                self.broken = true;
            }
            return Err(error);
        }
        self.size += buffer.len() as u64;
        self.position = position;
        // Best effort, after the log is durable: a head that lags is fine, one that leads is not.
        if let Err(error) = self.head.record(&position) {
            tracing::warn!(layer = "audit", %error, "could not update the audit head file");
        }
        Ok(())
    }

    fn rotate_if_due(&mut self, incoming: u64) -> io::Result<()> {
        let today = day_of(self.clock.now_micros() / 1_000_000);
        let by_size = self
            .rotate_bytes
            .is_some_and(|max| self.size > 0 && self.size + incoming > max);
        let by_day = self.rotate_daily && today != self.day && self.size > 0;
        if !(by_size || by_day) {
            self.day = today;
            return Ok(());
        }
        let next = rotated(&self.path)?
            .iter()
            .map(|(n, _)| *n)
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| io::Error::other("no rotated file number is left"))?;
        let mut target = self.path.as_os_str().to_owned();
        target.push(format!(".{next}"));
        self.file.sync_all()?;
        std::fs::rename(&self.path, PathBuf::from(target))?;
        match OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
        {
            Ok(file) => self.file = file,
            Err(error) => {
                // The live file was renamed away: writing on to the old handle would extend
                // the rotated file. Stop; a restart continues the chain from it.
                self.broken = true;
                return Err(error);
            }
        }
        self.size = 0;
        self.day = today;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename and the new file survive a crash only once the directory is synced.
            File::open(dir).and_then(|d| d.sync_all())?;
        }
        Ok(())
    }
}
