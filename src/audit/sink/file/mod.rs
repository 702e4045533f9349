//! [`FileSink`]: JSON lines on a SHA-256 hash chain, group commit, rotation, recovery.
//!
//! One writer thread owns the file. Requests queue their records; the writer takes everything
//! queued (up to a batch), appends the chained lines in one write, fsyncs once, and only then
//! acknowledges each record: many records per fsync, and no record acknowledged before it is
//! on disk. After each commit the head file (`<path>.head`: the next sequence number and the
//! last hash) is rewritten, so a verifier can tell a cleanly truncated log from a complete one.
//!
//! On start the sink recovers the chain's tail: a torn last line (a write cut short by a crash,
//! never acknowledged) is cut off, and the chain continues from the last complete record, in
//! this file or, after a rotation, the newest rotated one. A log damaged elsewhere is refused:
//! extending a broken chain would hide where it broke. So is a log the head file contradicts
//! (it ends before the head, or the record the head names carries another hash: records were
//! rewritten and the chain recomputed), and a log with records but no head file, unless
//! [`accept_unanchored`](FileSinkBuilder::accept_unanchored) says that is known and meant.
//!
//! With [`checkpoints`](FileSinkBuilder::checkpoints) (feature `audit-signing`), the writer
//! also seals the chain with signed checkpoints in `<path>.checkpoints`; see
//! [`Checkpoints`](super::Checkpoints).
//!
//! Rotation (by size, or at UTC midnight) renames the live file to `<path>.<n>` (`n` counting up
//! from 1) and starts a new one that continues the chain.
//!
//! One writer per log: two processes appending to one file would fork the chain (the
//! verifier shows where). Files are read whole on open and by the verifier: rotate by size to
//! keep them manageable.

mod files;
mod recover;
mod writer;

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

#[cfg(feature = "audit-signing")]
pub(crate) use self::files::read_mended;
pub(crate) use self::files::regular_or_absent;
use self::files::{HeadFile, head_path, rotated};
#[cfg(feature = "audit-signing")]
use self::recover::record_hash;
use self::recover::recover;
#[cfg(feature = "audit-signing")]
use self::writer::start_seal_timer;
use self::writer::{Counters, Job, Work, Writer};
use super::{AuditSink, SinkError};
use crate::audit::batch::RecordBatch;
use crate::audit::chain::Position;
use crate::audit::head::Head;
use crate::audit::record::AuditRecord;
use crate::clock::{SharedClock, SystemClock, day_of};

/// Counters of a [`FileSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileSinkStats {
    /// Records written and acknowledged.
    pub records: u64,
    /// Commits (fsyncs): `records / commits` is the group-commit factor.
    pub commits: u64,
    /// Writes that failed.
    pub failures: u64,
    /// Signed checkpoints written.
    pub checkpoints: u64,
    /// Checkpoints that could not be written (the records stay unsealed until the next one).
    pub checkpoint_failures: u64,
}

/// A hash-chained JSON-lines audit log; cheap to clone (clones share the writer).
#[derive(Clone)]
pub struct FileSink {
    /// One count for every clone: a stack is cloned for every request it serves.
    shared: Arc<Shared>,
}

/// What the clones of a [`FileSink`] share.
struct Shared {
    jobs: mpsc::Sender<Work>,
    healthy: Arc<AtomicBool>,
    counters: Arc<Counters>,
    path: PathBuf,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("path", &self.shared.path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl FileSink {
    /// Starts configuring a sink writing to `path`.
    pub fn builder(path: impl Into<PathBuf>) -> FileSinkBuilder {
        FileSinkBuilder {
            path: path.into(),
            rotate_bytes: None,
            rotate_daily: false,
            max_batch: 1024,
            queue: 65_536,
            clock: Arc::new(SystemClock),
            accept_unanchored: false,
            #[cfg(feature = "audit-signing")]
            checkpoints: None,
        }
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> FileSinkStats {
        FileSinkStats {
            records: self.shared.counters.records.load(Ordering::Relaxed),
            commits: self.shared.counters.commits.load(Ordering::Relaxed),
            failures: self.shared.counters.failures.load(Ordering::Relaxed),
            checkpoints: self.shared.counters.checkpoints.load(Ordering::Relaxed),
            checkpoint_failures: self
                .shared
                .counters
                .checkpoint_failures
                .load(Ordering::Relaxed),
        }
    }

    /// The files of the log at `path`, oldest first: rotated ones, then the live one, as the
    /// verifier takes them.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn files(path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut files: Vec<(u64, PathBuf)> = rotated(path)?;
        files.sort();
        let mut out: Vec<PathBuf> = files.into_iter().map(|(_, p)| p).collect();
        if path.exists() {
            out.push(path.to_path_buf());
        }
        Ok(out)
    }

    /// The position the head file records: what a verifier checks the tail against; `None`
    /// when there is no head file or it cannot be read (see [`read_head`](Self::read_head)).
    #[must_use]
    pub fn head(path: &Path) -> Option<Position> {
        Self::read_head(path).ok().flatten()
    }

    /// The position the head file of the log at `path` records; `Ok(None)` when there is no
    /// head file.
    ///
    /// # Errors
    /// The head file cannot be read, or is not a head line (see [`Head::parse`]).
    pub fn read_head(path: &Path) -> io::Result<Option<Position>> {
        Ok(Self::read_head_line(path)?.map(|head| head.position))
    }

    /// The head file of the log at `path`, with its signature if it has one; `Ok(None)` when
    /// there is no head file.
    ///
    /// # Errors
    /// The head file cannot be read, or is not a head line (see [`Head::parse`]).
    pub fn read_head_line(path: &Path) -> io::Result<Option<Head>> {
        files::read_head(path)
    }

    /// Writes a checkpoint of every record acknowledged so far, if any is unsealed, and waits
    /// for it (feature `audit-signing`): for a clean stop, before the process exits (the writer
    /// thread also seals on its way out, but a process that returns from `main` does not wait
    /// for it). `Ok(false)` when nothing was unsealed or the sink has no checkpoints.
    ///
    /// # Errors
    /// The writer is gone, or the checkpoint could not be written.
    #[cfg(feature = "audit-signing")]
    pub async fn checkpoint_now(&self) -> Result<bool, SinkError> {
        let (done, sealed) = oneshot::channel();
        self.shared
            .jobs
            .send(Work::SealNow(done))
            .await
            .map_err(|_| SinkError::Closed)?;
        match sealed.await {
            Ok(outcome) => outcome.map_err(|e| SinkError::Io(e.to_string())),
            Err(_) => Err(SinkError::Closed),
        }
    }

    /// The head file's path for the log at `path`: `<path>.head`.
    #[must_use]
    pub fn head_path(path: &Path) -> PathBuf {
        head_path(path)
    }

    /// The checkpoint file's path for the log at `path`: `<path>.checkpoints`.
    #[must_use]
    pub fn checkpoint_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".checkpoints");
        PathBuf::from(name)
    }
}

impl AuditSink for FileSink {
    async fn write(&self, record: AuditRecord) -> Result<(), SinkError> {
        super::write_alone(self, std::iter::once(&record).collect()).await
    }

    async fn write_many(&self, records: Vec<AuditRecord>) -> Vec<Result<(), SinkError>> {
        self.write_batch(records.iter().collect()).await
    }

    async fn write_batch(&self, batch: RecordBatch) -> Vec<Result<(), SinkError>> {
        // One job, one acknowledgement: the writer commits the batch at once, so its records
        // share one outcome.
        let count = batch.len();
        let (done, acknowledged) = oneshot::channel();
        let outcome: Result<(), Option<String>> = match self
            .shared
            .jobs
            .send(Work::Write(Job { batch, done }))
            .await
        {
            Err(_) => Err(None),
            Ok(()) => match acknowledged.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(Some(error)),
                Err(_) => Err(None),
            },
        };
        (0..count)
            .map(|_| match &outcome {
                Ok(()) => Ok(()),
                Err(Some(error)) => Err(SinkError::Io(error.clone())),
                Err(None) => Err(SinkError::Closed),
            })
            .collect()
    }

    fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed) && !self.shared.jobs.is_closed()
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

/// Builds a [`FileSink`].
#[derive(Debug)]
#[must_use]
pub struct FileSinkBuilder {
    path: PathBuf,
    rotate_bytes: Option<u64>,
    rotate_daily: bool,
    max_batch: usize,
    queue: usize,
    clock: SharedClock,
    accept_unanchored: bool,
    #[cfg(feature = "audit-signing")]
    checkpoints: Option<super::Checkpoints>,
}

impl FileSinkBuilder {
    /// Rotates when the live file would grow past `bytes`.
    pub fn rotate_at_bytes(mut self, bytes: u64) -> Self {
        self.rotate_bytes = Some(bytes);
        self
    }

    /// Rotates at the first commit of each UTC day.
    pub fn rotate_daily(mut self) -> Self {
        self.rotate_daily = true;
        self
    }

    /// The most records one commit gathers from writes queued apart (default 1,024); a batch
    /// handed over at once (`write_many`, `write_batch`) is committed whole.
    pub fn max_batch(mut self, records: usize) -> Self {
        self.max_batch = records.max(1);
        self
    }

    /// How many writes (a record, or a batch from `write_many`) may wait for the writer
    /// (default 65,536); writers beyond wait (back-pressure, never loss).
    pub fn queue(mut self, records: usize) -> Self {
        self.queue = records.max(1);
        self
    }

    /// The clock daily rotation reads (default: the system clock).
    pub fn clock(mut self, clock: impl crate::clock::Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Opens a log that has records but no head file (it was lost, or the log was copied
    /// without it), starting a new head from the log's end. Without this, such a log is refused:
    /// the head file is what shows records removed from the end, or rewritten before it. Verify
    /// the log first (`audit_verify --unanchored`, with its public keys if it has checkpoints).
    pub fn accept_unanchored(mut self) -> Self {
        self.accept_unanchored = true;
        self
    }

    /// Seals the chain with signed checkpoints in `<path>.checkpoints` (feature
    /// `audit-signing`).
    #[cfg(feature = "audit-signing")]
    pub fn checkpoints(mut self, checkpoints: super::Checkpoints) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// Opens the log, recovers its tail, and starts the writer thread.
    ///
    /// # Errors
    /// The file cannot be opened or read; it is damaged before its last line; the head file
    /// contradicts it, or is missing while it has records (unless
    /// [`accept_unanchored`](Self::accept_unanchored)); its last checkpoint is not on its chain.
    pub fn open(self) -> io::Result<FileSink> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        regular_or_absent(&self.path)?;
        regular_or_absent(&head_path(&self.path))?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        let (position, live) = recover(&self.path, &mut file, self.accept_unanchored)?;
        #[cfg(feature = "audit-signing")]
        let (sealer, seal_every, head_signer) = match self.checkpoints {
            None => (None, None, None),
            Some(config) => {
                let every = config.interval();
                let signer = config.key().clone();
                let sealer = super::seal::Sealer::open(
                    &self.path,
                    config,
                    &position,
                    |seq| record_hash(&self.path, &live, seq),
                    self.clock.clone(),
                )?;
                (Some(sealer), Some(every), Some(signer))
            }
        };
        // Only the sealer looks records up; the content is not kept past opening.
        drop(live);
        let (jobs, queue) = mpsc::channel(self.queue);
        let healthy = Arc::new(AtomicBool::new(true));
        let counters = Arc::new(Counters::default());
        let size = file.metadata()?.len();
        let head = HeadFile::open(
            &self.path,
            &position,
            #[cfg(feature = "audit-signing")]
            head_signer,
        )?;
        #[cfg(feature = "audit-signing")]
        if let Some(every) = seal_every {
            start_seal_timer(&jobs, every)?;
        }
        let writer = Writer {
            path: self.path.clone(),
            file,
            head,
            size,
            position,
            day: day_of(self.clock.now_micros() / 1_000_000),
            rotate_bytes: self.rotate_bytes,
            rotate_daily: self.rotate_daily,
            max_batch: self.max_batch,
            clock: self.clock,
            healthy: healthy.clone(),
            counters: counters.clone(),
            broken: false,
            #[cfg(feature = "audit-signing")]
            sealer,
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(queue))?;
        Ok(FileSink {
            shared: Arc::new(Shared {
                jobs,
                healthy,
                counters,
                path: self.path,
            }),
        })
    }
}
