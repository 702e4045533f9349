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

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::{AuditSink, SinkError};
use crate::audit::batch::RecordBatch;
use crate::audit::chain::{
    MAX_LOG_FILE, Position, append_line, link, parse_line, read_log_file, verify_bytes,
};
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

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    commits: AtomicU64,
    failures: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_failures: AtomicU64,
}

/// One write: a record or a batch, acknowledged together (a batch lands in one commit, so its
/// records share their outcome).
struct Job {
    /// The records' canonical bytes: one allocation for the batch, made on the caller's thread
    /// and freed on the writer's, rather than one per record.
    batch: RecordBatch,
    done: oneshot::Sender<Result<(), String>>,
}

/// What the writer thread is woken for.
enum Work {
    Write(Job),
    /// The checkpoint interval went by: seal what is unsealed.
    #[cfg_attr(not(feature = "audit-signing"), allow(dead_code))]
    Seal,
    /// Seal whatever is unsealed now, and say whether a checkpoint was written.
    #[cfg(feature = "audit-signing")]
    SealNow(oneshot::Sender<io::Result<bool>>),
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
        let file = head_path(path);
        // A head line is short; anything larger is not one.
        let bytes = match read_log_file(&file, 1024) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        Head::parse(&bytes).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: not a head file (a sequence number and a hash, and a key and signature when signed)",
                    file.display()
                ),
            )
        })
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
        let position = recover(&self.path, &mut file, self.accept_unanchored)?;
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
                    |seq| record_hash(&self.path, seq),
                    self.clock.clone(),
                )?;
                (Some(sealer), Some(every), Some(signer))
            }
        };
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

/// Refuses a path that exists but is not a regular file (a FIFO would hang the open, a link to
/// a device would be read without end).
pub(super) fn regular_or_absent(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a regular file", path.display()),
        )),
        _ => Ok(()),
    }
}

/// The head file, kept open and rewritten in place: opening, truncating and closing it on
/// every commit cost more than the commit's own write.
struct HeadFile {
    file: File,
    len: u64,
    /// Signs each head, when the sink signs checkpoints.
    #[cfg(feature = "audit-signing")]
    signer: Option<crate::audit::SigningKey>,
}

impl HeadFile {
    /// Opens the head file and records where the recovered chain stands: a new log has a head
    /// from its start, and a head that lagged (a crash between a commit and its head update)
    /// catches up.
    fn open(
        log: &Path,
        position: &Position,
        #[cfg(feature = "audit-signing")] signer: Option<crate::audit::SigningKey>,
    ) -> io::Result<HeadFile> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(head_path(log))?;
        let len = file.metadata()?.len();
        let mut head = HeadFile {
            file,
            len,
            #[cfg(feature = "audit-signing")]
            signer,
        };
        head.record(position)?;
        head.file.sync_data()?;
        Ok(head)
    }

    fn record(&mut self, position: &Position) -> io::Result<()> {
        #[cfg(feature = "audit-signing")]
        if let Some(signer) = &self.signer {
            let line = signer.sign_head(*position).line();
            return self.write(&line);
        }
        let mut line = [0u8; 20 + 1 + 64 + 1];
        let mut seq = itoa::Buffer::new();
        let digits = seq.format(position.next_seq).as_bytes();
        let mut end = digits.len();
        line[..end].copy_from_slice(digits);
        line[end] = b' ';
        end += 1;
        hex::encode_to_slice(position.head, &mut line[end..end + 64]).map_err(io::Error::other)?;
        end += 64;
        line[end] = b'\n';
        end += 1;
        self.write(&line[..end])
    }

    /// Writes `line` over the head file's content.
    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(line)?;
        // Rare: a longer line left by an older or unsigned head.
        let end = line.len() as u64;
        if end < self.len {
            self.file.set_len(end)?;
        }
        self.len = end;
        Ok(())
    }
}

fn head_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// The rotated files of `path`: `<path>.<n>`.
fn rotated(path: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!("{name}.");
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(n) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            // Digits only, no leading zero: `.+1` or `.01` is someone else's file.
            .filter(|rest| rest.bytes().all(|b| b.is_ascii_digit()) && !rest.starts_with('0'))
            .and_then(|rest| rest.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((n, dir.join(file_name)));
    }
    Ok(out)
}

/// Where the chain stands at the end of a rotated file: its records checked from its first
/// one's place (the verifier checks how the files join); `None` for a file without records.
fn end_of_rotated(bytes: &[u8], path: &Path) -> io::Result<Option<Position>> {
    let Some(first) = bytes.split(|&b| b == b'\n').next().and_then(parse_line) else {
        return if bytes.is_empty() {
            Ok(None)
        } else {
            Err(damaged(path, "its first line is not a record"))
        };
    };
    let mut position = Position {
        next_seq: first.seq,
        head: first.prev,
    };
    verify_bytes(path, bytes, &mut position, false)
        .map_err(|error| damaged(path, &error.to_string()))?;
    Ok(Some(position))
}

fn damaged(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: {what}; the audit log is damaged: verify it and move it aside before writing on",
            path.display()
        ),
    )
}

/// Where the chain continues: the live file's last complete record (its torn tail cut off), or
/// the newest rotated file holding one, or the start. The live file's chain is checked from
/// the rotated file's end, and against the head file: a log that ends before its head, or
/// whose record at the head carries another hash, is refused (records were removed, or
/// rewritten and re-chained), and writing on would hide it; so is a log with records and no
/// head file, unless `accept_unanchored`.
fn recover(path: &Path, file: &mut File, accept_unanchored: bool) -> io::Result<Position> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    let mut complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        let tail = &bytes[complete..];
        if parse_line(tail).is_some_and(|line| link(&line.prev, line.record) == line.hash) {
            // A whole record whose newline alone is missing is kept: it may be acknowledged,
            // and a crash that tears a write leaves part of a record, not all of it.
            file.write_all(b"\n")?;
            bytes.push(b'\n');
            complete = bytes.len();
        } else {
            tracing::warn!(layer = "audit", path = %path.display(), torn = bytes.len() - complete,
                "cutting off a torn last line (a write a crash interrupted; it was never acknowledged)");
            file.set_len(complete as u64)?;
        }
        file.sync_all()?;
    }
    let mut files = rotated(path)?;
    files.sort();
    let mut start = None;
    for (_, older) in files.iter().rev() {
        let bytes = read_log_file(older, MAX_LOG_FILE)?;
        if let Some(position) = end_of_rotated(&bytes, older)? {
            start = Some(position);
            break;
        }
    }
    let mut position = start.unwrap_or_default();
    // Checked from where the rotated files end, so a live file that does not continue them,
    // or whose records no longer follow each other, is refused here.
    if let Err(error) = verify_bytes(path, &bytes[..complete], &mut position, true) {
        return Err(damaged(path, &error.to_string()));
    }
    let refused = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: {why}; verify the log before writing on",
                path.display()
            ),
        ))
    };
    match FileSink::read_head(path)? {
        None if position.next_seq > 0 && !accept_unanchored => refused(format!(
            "the log holds {} records but has no head file ({}), so records removed from its end or rewritten could not be told; if it is known to be lost, open the log with accept_unanchored",
            position.next_seq,
            head_path(path).display()
        )),
        None => Ok(position),
        Some(head) if head.next_seq > position.next_seq => refused(format!(
            "the log ends at sequence number {} but its head file says {}: records are missing",
            position.next_seq, head.next_seq
        )),
        Some(head) => {
            let at_head = match head.next_seq.checked_sub(1) {
                None => Some(crate::audit::chain::GENESIS),
                Some(seq) => record_hash(path, seq)?,
            };
            if at_head == Some(head.head) {
                Ok(position)
            } else {
                refused(format!(
                    "the record before sequence number {} does not carry the hash its head file names: records were rewritten",
                    head.next_seq
                ))
            }
        }
    }
}

/// The hash of record `seq`, found in the live file or the rotated ones (newest first).
fn record_hash(path: &Path, seq: u64) -> io::Result<Option<[u8; 32]>> {
    let mut files = rotated(path)?;
    files.sort();
    let newest_first =
        std::iter::once(path.to_path_buf()).chain(files.into_iter().rev().map(|(_, p)| p));
    for file in newest_first {
        let bytes = match read_log_file(&file, MAX_LOG_FILE) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        let mut lines = bytes
            .split(|&b| b == b'\n')
            .filter_map(parse_line)
            .peekable();
        // Files hold runs of sequence numbers, newest file first: skip those that start later.
        if lines.peek().is_none_or(|first| first.seq > seq) {
            continue;
        }
        return Ok(lines.find(|line| line.seq == seq).map(|line| line.hash));
    }
    Ok(None)
}

/// Wakes the writer every `every` to seal a quiet log. The thread holds the queue only weakly,
/// so it ends once every sink handle is gone.
#[cfg(feature = "audit-signing")]
fn start_seal_timer(jobs: &mpsc::Sender<Work>, every: std::time::Duration) -> io::Result<()> {
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

struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    position: Position,
    head: HeadFile,
    day: u64,
    rotate_bytes: Option<u64>,
    rotate_daily: bool,
    max_batch: usize,
    clock: SharedClock,
    healthy: Arc<AtomicBool>,
    counters: Arc<Counters>,
    /// Set when a failed write could not be undone: the file's tail is unknown, so nothing more
    /// is written (a restart recovers it).
    broken: bool,
    #[cfg(feature = "audit-signing")]
    sealer: Option<super::seal::Sealer>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Work>) {
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
