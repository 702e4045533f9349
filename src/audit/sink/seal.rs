//! [`Checkpoints`]: the file sink's signed checkpoints (feature `audit-signing`).
//!
//! The writer thread seals the chain after a commit once `every_records` records or `every`
//! time have gone by since the last checkpoint, on a timer when no records come, and once more
//! when the sink closes: it appends a [`Checkpoint`] line to `<log>.checkpoints` and fsyncs it,
//! after the records it seals are acknowledged (so the requests never wait for a signature).
//! A copy of each checkpoint may go to a second [`AuditSink`] kept apart from the log's disk
//! (a Redis stream, a SIEM), as CloudTrail publishes its digest files apart from its logs.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::AuditSink;
use crate::audit::chain::Position;
use crate::audit::checkpoint::{Checkpoint, FIRST_PREV};
use crate::audit::record::AuditRecord;
use crate::audit::signing::SigningKey;
use crate::clock::{SharedClock, rfc3339_micros};

/// Starts the task that hands checkpoints to a second sink, on the runtime given.
type StartCopy =
    Box<dyn FnOnce(&tokio::runtime::Handle) -> mpsc::UnboundedSender<AuditRecord> + Send>;

/// How a [`FileSink`](super::FileSink) signs checkpoints of its chain; see the
/// [`checkpoint`](crate::audit::checkpoint) module for what one is.
///
/// ```
/// use api_policy::audit::{Checkpoints, FileSink, SigningKey};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("checkpoints-doc-{}", std::process::id()));
/// # let key_file = dir.join("audit-signing.pem");
/// # std::fs::create_dir_all(&dir)?;
/// # std::fs::write(&key_file, SigningKey::generate()?.to_pkcs8_pem()?)?;
/// let sink = FileSink::builder(dir.join("phi.log"))
///     .checkpoints(
///         Checkpoints::new(SigningKey::from_file(&key_file)?)
///             .every_records(1_000)
///             .every(Duration::from_secs(60)),
///     )
///     .open()?;
/// # drop(sink);
/// # std::fs::remove_dir_all(dir)?;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct Checkpoints {
    key: SigningKey,
    every_records: u64,
    every: Duration,
    copy: Option<StartCopy>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("key", &self.key.id())
            .field("every_records", &self.every_records)
            .field("every", &self.every)
            .field("copy", &self.copy.is_some())
            .finish()
    }
}

impl Checkpoints {
    /// Checkpoints signed with `key`, every 1,000 records and every 60 seconds.
    pub fn new(key: SigningKey) -> Self {
        Self {
            key,
            every_records: 1_000,
            every: Duration::from_secs(60),
            copy: None,
        }
    }

    /// A checkpoint once this many records are unsealed (default 1,000; at least 1).
    pub fn every_records(mut self, records: u64) -> Self {
        self.every_records = records.max(1);
        self
    }

    /// A checkpoint once a record has waited this long unsealed (default 60 s; at least 10 ms).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval.max(Duration::from_millis(10));
        self
    }

    /// Also hands each checkpoint, as a record ([`Checkpoint::to_record`]), to `sink`, in
    /// order, from a task on the runtime the file sink is opened in. A failed copy is logged;
    /// the checkpoint file has it all the same.
    pub fn copy_to<Si: AuditSink>(mut self, sink: Si) -> Self {
        self.copy = Some(Box::new(move |runtime: &tokio::runtime::Handle| {
            let (copies, mut queue) = mpsc::unbounded_channel::<AuditRecord>();
            runtime.spawn(async move {
                while let Some(record) = queue.recv().await {
                    if let Err(error) = sink.write(record).await {
                        tracing::error!(layer = "audit", sink = sink.name(), %error,
                            "could not copy an audit checkpoint to the second sink");
                    }
                }
            });
            copies
        }));
        self
    }

    /// How often the writer must wake to seal a quiet log.
    pub(super) fn interval(&self) -> Duration {
        self.every
    }
}

/// The writer thread's side: the open checkpoint file and where the last checkpoint stood.
pub(super) struct Sealer {
    file: File,
    path: PathBuf,
    size: u64,
    key: SigningKey,
    every_records: u64,
    every: Duration,
    copies: Option<mpsc::UnboundedSender<AuditRecord>>,
    log_name: String,
    clock: SharedClock,
    /// Records sealed so far (the next sequence number the last checkpoint covers).
    sealed: u64,
    /// The hash of the last checkpoint line.
    last_line: [u8; 32],
    last_time: Instant,
}

impl Sealer {
    /// Opens the checkpoint file beside `log` and checks that its last checkpoint is on the
    /// recovered chain (`hash_at` gives a record's hash by sequence number): the sink refuses
    /// to seal a chain its own earlier checkpoints contradict. A torn last line (a crash while
    /// appending it) is cut.
    pub(super) fn open(
        log: &Path,
        config: Checkpoints,
        position: &Position,
        hash_at: impl Fn(u64) -> io::Result<Option<[u8; 32]>>,
        clock: SharedClock,
    ) -> io::Result<Sealer> {
        let path = super::FileSink::checkpoint_path(log);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut bytes)?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            tracing::warn!(layer = "audit", path = %path.display(),
                "cutting off a torn last checkpoint line (a crash while it was written)");
            file.set_len(complete as u64)?;
            file.sync_all()?;
        }
        let damaged = |line: usize, what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}:{line}: {what}; verify the log with its public keys before writing on",
                    path.display()
                ),
            )
        };
        let lines: Vec<&[u8]> = bytes[..complete]
            .split_inclusive(|&b| b == b'\n')
            .map(|line| &line[..line.len() - 1])
            .collect();
        let (mut sealed, mut last_line) = (0, FIRST_PREV);
        for (index, line) in lines.iter().enumerate() {
            let number = index + 1;
            let Some(checkpoint) = Checkpoint::parse(line) else {
                return Err(damaged(number, "not a checkpoint line"));
            };
            if checkpoint.prev != last_line {
                return Err(damaged(number, "does not follow the checkpoint before it"));
            }
            // Checkpoints signed with an earlier key are checked by the verifier, which is
            // given every public key; this process holds only its own.
            if checkpoint.key == config.key.id() && !config.key.public_key().verifies(&checkpoint) {
                return Err(damaged(number, "its signature does not check"));
            }
            sealed = checkpoint.seq.saturating_add(1);
            last_line = Checkpoint::line_hash(line);
            if number == lines.len() {
                // The last checkpoint must be on the chain the log holds now.
                if sealed > position.next_seq {
                    return Err(damaged(
                        number,
                        &format!(
                            "it seals {sealed} records but the log holds {}: sealed records are missing",
                            position.next_seq
                        ),
                    ));
                }
                if hash_at(checkpoint.seq)? != Some(checkpoint.hash) {
                    return Err(damaged(
                        number,
                        &format!(
                            "the log's record {} does not carry the hash it seals: the log was rewritten",
                            checkpoint.seq
                        ),
                    ));
                }
            }
        }
        let copies = match config.copy {
            None => None,
            Some(start) => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    io::Error::other(
                        "copying checkpoints to a second sink needs a Tokio runtime: open the sink inside one",
                    )
                })?;
                Some(start(&runtime))
            }
        };
        let log_name = log
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Sealer {
            size: complete as u64,
            file,
            path,
            key: config.key,
            every_records: config.every_records,
            every: config.every,
            copies,
            log_name,
            clock,
            sealed,
            last_line,
            last_time: Instant::now(),
        })
    }

    /// Seals the chain at `position` if a checkpoint is due: enough records, or a record that
    /// has waited long enough; `timer` when the writer woke for time alone.
    pub(super) fn seal_if_due(&mut self, position: &Position, timer: bool) -> io::Result<bool> {
        let unsealed = position.next_seq.saturating_sub(self.sealed);
        let due = unsealed >= self.every_records
            || (unsealed > 0 && (timer || self.last_time.elapsed() >= self.every));
        if !due {
            return Ok(false);
        }
        self.seal(position)?;
        Ok(true)
    }

    /// Seals whatever is unsealed (the sink is closing).
    pub(super) fn seal_rest(&mut self, position: &Position) -> io::Result<bool> {
        if position.next_seq <= self.sealed {
            return Ok(false);
        }
        self.seal(position)?;
        Ok(true)
    }

    fn seal(&mut self, position: &Position) -> io::Result<()> {
        let mut checkpoint = Checkpoint {
            seq: position.next_seq - 1,
            hash: position.head,
            time: rfc3339_micros(self.clock.now_micros()),
            prev: self.last_line,
            key: String::new(),
            signature: Vec::new(),
        };
        self.key.sign(&mut checkpoint);
        let mut line = checkpoint.line();
        let line_hash = Checkpoint::line_hash(&line);
        line.push(b'\n');
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // A part that reached the file would make the next line follow a broken one.
            let _ = self.file.set_len(self.size);
            return Err(error);
        }
        self.size += line.len() as u64;
        self.sealed = position.next_seq;
        self.last_line = line_hash;
        self.last_time = Instant::now();
        if let Some(copies) = &self.copies {
            // The receiving task ends only with the runtime; then there is nowhere to copy to.
            let _ = copies.send(checkpoint.to_record(&self.log_name));
        }
        tracing::debug!(layer = "audit", path = %self.path.display(), seq = checkpoint.seq,
            key = %checkpoint.key, "audit checkpoint written");
        Ok(())
    }
}
