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
//! extending a broken chain would hide where it broke.
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
use crate::audit::chain::{Position, append_line, link, parse_line};
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
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    commits: AtomicU64,
    failures: AtomicU64,
}

/// One write: a record or a batch, acknowledged together (a batch lands in one commit, so its
/// records share their outcome).
struct Job {
    /// The records' canonical bytes: one allocation for the batch, made on the caller's thread
    /// and freed on the writer's, rather than one per record.
    batch: RecordBatch,
    done: oneshot::Sender<Result<(), String>>,
}

/// A hash-chained JSON-lines audit log; cheap to clone (clones share the writer).
#[derive(Clone)]
pub struct FileSink {
    /// One count for every clone: a stack is cloned for every request it serves.
    shared: Arc<Shared>,
}

/// What the clones of a [`FileSink`] share.
struct Shared {
    jobs: mpsc::Sender<Job>,
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
        }
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> FileSinkStats {
        FileSinkStats {
            records: self.shared.counters.records.load(Ordering::Relaxed),
            commits: self.shared.counters.commits.load(Ordering::Relaxed),
            failures: self.shared.counters.failures.load(Ordering::Relaxed),
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

    /// The position the head file records: what a verifier checks the tail against.
    #[must_use]
    pub fn head(path: &Path) -> Option<Position> {
        let text = std::fs::read_to_string(head_path(path)).ok()?;
        let (seq, hash) = text.trim().split_once(' ')?;
        let mut head = [0; 32];
        hex::decode_to_slice(hash, &mut head).ok()?;
        Some(Position {
            next_seq: seq.parse().ok()?,
            head,
        })
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
        let outcome: Result<(), Option<String>> =
            match self.shared.jobs.send(Job { batch, done }).await {
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

    /// Opens the log, recovers its tail, and starts the writer thread.
    ///
    /// # Errors
    /// The file cannot be opened or read, or it is damaged before its last line.
    pub fn open(self) -> io::Result<FileSink> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        let position = recover(&self.path, &mut file)?;
        let (jobs, queue) = mpsc::channel(self.queue);
        let healthy = Arc::new(AtomicBool::new(true));
        let counters = Arc::new(Counters::default());
        let size = file.metadata()?.len();
        let head = HeadFile::open(&self.path)?;
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

/// The head file, kept open and rewritten in place: opening, truncating and closing it on
/// every commit cost more than the commit's own write.
struct HeadFile {
    file: File,
    len: u64,
}

impl HeadFile {
    fn open(log: &Path) -> io::Result<HeadFile> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(head_path(log))?;
        let len = file.metadata()?.len();
        Ok(HeadFile { file, len })
    }

    fn record(&mut self, position: &Position) -> io::Result<()> {
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
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&line[..end])?;
        // Sequence numbers only grow, so this is rare: a longer line left by an older file.
        if (end as u64) < self.len {
            self.file.set_len(end as u64)?;
        }
        self.len = end as u64;
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
            .and_then(|rest| rest.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((n, dir.join(file_name)));
    }
    Ok(out)
}

/// The last complete record of `bytes`, cutting off a torn tail; refuses damage elsewhere.
fn tail_of(bytes: &[u8], path: &Path) -> io::Result<(Option<Position>, usize)> {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut last = None;
    for (number, line) in bytes[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let parsed = parse_line(line).filter(|l| link(&l.prev, l.record) == l.hash);
        let Some(parsed) = parsed else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}:{}: the audit log is damaged; verify it and move it aside before writing on",
                    path.display(),
                    number + 1
                ),
            ));
        };
        last = Some(Position {
            next_seq: parsed.seq.saturating_add(1),
            head: parsed.hash,
        });
    }
    Ok((last, complete))
}

/// Where the chain continues: the live file's last complete record (its torn tail cut off), or
/// the newest rotated file holding one, or the start. Refuses to go on from a position behind
/// the head file's: records were removed, and writing on would hide it.
fn recover(path: &Path, file: &mut File) -> io::Result<Position> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    let (mut last, complete) = tail_of(&bytes, path)?;
    if complete < bytes.len() {
        tracing::warn!(layer = "audit", path = %path.display(), torn = bytes.len() - complete,
            "cutting off a torn last line (a write a crash interrupted; it was never acknowledged)");
        file.set_len(complete as u64)?;
        file.sync_all()?;
    }
    if last.is_none() {
        let mut files = rotated(path)?;
        files.sort();
        for (_, older) in files.iter().rev() {
            let bytes = std::fs::read(older)?;
            if let (Some(position), _) = tail_of(&bytes, older)? {
                last = Some(position);
                break;
            }
        }
    }
    let position = last.unwrap_or_default();
    if let Some(head) = FileSink::head(path)
        && head.next_seq > position.next_seq
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: the log ends at sequence number {} but its head file says {}: records are missing; verify the log before writing on",
                path.display(),
                position.next_seq,
                head.next_seq
            ),
        ));
    }
    Ok(position)
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
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut buffer = Vec::new();
        while let Some(first) = queue.blocking_recv() {
            let mut records = first.batch.len();
            batch.push(first);
            while records < self.max_batch {
                match queue.try_recv() {
                    Ok(job) => {
                        records += job.batch.len();
                        batch.push(job);
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
                next_seq: position.next_seq + 1,
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
            + 1;
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
