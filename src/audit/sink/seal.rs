//! [`Checkpoints`]: the file sink's signed checkpoints (feature `audit-signing`).
//!
//! The writer thread seals the chain after a commit once `every_records` records or `every`
//! time have gone by since the last checkpoint, on a timer when no records come, and once more
//! when the sink closes: it appends a [`Checkpoint`] line to `<log>.checkpoints` and fsyncs it,
//! after the records it seals are acknowledged (so the requests never wait for a signature).
//! A copy of each checkpoint may go to a second [`AuditSink`] kept apart from the log's disk
//! (a Redis stream, a SIEM), as CloudTrail publishes its digest files apart from its logs.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::AuditSink;
use crate::audit::chain::Position;
use crate::audit::checkpoint::{Checkpoint, FIRST_PREV, read_chain};
use crate::audit::record::AuditRecord;
use crate::audit::signing::{PublicKey, SigningKey};
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
    previous: Vec<PublicKey>,
    accept_unsealed: bool,
    every_records: u64,
    every: Duration,
    copy: Option<StartCopy>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("key", &self.key.id())
            .field("previous", &self.previous)
            .field("accept_unsealed", &self.accept_unsealed)
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
            previous: Vec::new(),
            accept_unsealed: false,
            every_records: 1_000,
            every: Duration::from_secs(60),
            copy: None,
        }
    }

    /// A public key the log's checkpoints and head were signed with before this key: after a
    /// key change, the sink checks the last checkpoint and the head it goes on from with it.
    pub fn previous_key(mut self, key: PublicKey) -> Self {
        self.previous.push(key);
        self
    }

    /// Seals, on opening, records after the last checkpoint that no signed head vouches for:
    /// once, when checkpoints are first enabled on an existing log, or after verifying a log
    /// whose head or checkpoints were lost. Without it such a log is refused.
    pub fn accept_unsealed(mut self) -> Self {
        self.accept_unsealed = true;
        self
    }

    /// The signing key.
    pub(super) fn key(&self) -> &SigningKey {
        &self.key
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
    /// Set when a failed write could not be cut back.
    broken: bool,
}

impl Sealer {
    /// Opens the checkpoint file beside `log` and checks what this sink is about to vouch for:
    /// - the checkpoints follow each other, each sealing more records than the one before, and
    ///   the last is signed by this key or a [previous one](Checkpoints::previous_key) and is
    ///   on the chain the log holds now (`hash_at` gives a record's hash by sequence number);
    /// - the records after the last checkpoint, which this process did not write, are
    ///   vouched for by a head file signed by one of those keys (unless
    ///   [`accept_unsealed`](Checkpoints::accept_unsealed)): otherwise a forger who removed the
    ///   last checkpoints and rewrote those records would have them sealed by the next start.
    ///
    /// A last line without its newline is cut when it is not a whole checkpoint (a crash while
    /// appending it), and given its newline back when it is.
    pub(super) fn open(
        log: &Path,
        config: Checkpoints,
        position: &Position,
        hash_at: impl Fn(u64) -> io::Result<Option<[u8; 32]>>,
        clock: SharedClock,
    ) -> io::Result<Sealer> {
        let path = super::FileSink::checkpoint_path(log);
        super::regular_or_absent(&path)?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let bytes = super::read_mended(&mut file, &path, "a torn last checkpoint line", |tail| {
            Checkpoint::parse(tail).is_some()
        })?;
        let damaged = |line: usize, what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}:{line}: {what}; verify the log with its public keys before writing on",
                    path.display()
                ),
            )
        };
        let signed_by_known = |key: &str| {
            std::iter::once(config.key.public_key())
                .chain(&config.previous)
                .find(|known| known.id() == key)
        };
        let chain =
            read_chain(&bytes).map_err(|(line, fault)| damaged(line, &fault.to_string()))?;
        let (sealed, last_line, last_key) = match chain.last() {
            None => (0, FIRST_PREV, None),
            Some(last) => {
                // The checkpoint this sink goes on from: its own or a known earlier key's, and
                // on the chain the log holds now.
                let (number, checkpoint) = (last.line, &last.checkpoint);
                let Some(key) = signed_by_known(&checkpoint.key) else {
                    return Err(damaged(
                        number,
                        &format!(
                            "signed with key {}, which this sink does not know (after a key change, give the earlier public key as a previous key)",
                            checkpoint.key
                        ),
                    ));
                };
                if !key.verifies(checkpoint) {
                    return Err(damaged(number, "its signature does not check"));
                }
                if last.sealed > position.next_seq {
                    return Err(damaged(
                        number,
                        &format!(
                            "it seals {} records but the log holds {}: sealed records are missing",
                            last.sealed, position.next_seq
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
                (last.sealed, last.line_hash, Some(checkpoint.key.clone()))
            }
        };
        if sealed < position.next_seq && !config.accept_unsealed {
            // Records this process did not write, about to be sealed: something signed must
            // vouch for them. The head file names where the chain stood after the last commit
            // (recovery checked the record it names carries its hash).
            let head = super::FileSink::read_head_line(log)?;
            let vouched = head.as_ref().and_then(|head| {
                let (key, _) = head.signature.as_ref()?;
                // Signed by this key, or by the one the last checkpoint names: an earlier key
                // vouches for nothing after its successor signed.
                let current = *key == *config.key.id() || last_key.as_deref() == Some(key);
                signed_by_known(key)
                    .filter(|_| current)
                    .filter(|known| known.verifies_head(head))
                    .map(|_| head.position.next_seq)
            });
            match vouched {
                // A signed head older than the last checkpoint was not this log's last one;
                // and the head of an empty log is the same for every log the key signs.
                Some(through) if through >= sealed && through > 0 => {
                    if through < position.next_seq {
                        tracing::warn!(layer = "audit", path = %log.display(),
                            records = position.next_seq - through,
                            "records past the signed head (a crash between a commit and its head update) are sealed now");
                    }
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: records {sealed} to {} come after the last checkpoint and no head signed by a known key vouches for them (checkpoints removed, a head rewritten, or checkpoints enabled on a log that had none); verify the log, then open it once with accept_unsealed to seal them",
                            log.display(),
                            position.next_seq - 1
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
            size: bytes.len() as u64,
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
            broken: false,
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
        if self.broken {
            return Err(io::Error::other(
                "a failed checkpoint write could not be undone; restart to recover the file",
            ));
        }
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
            // A part that reached the file would make the next line follow a broken one: cut
            // it, or, when that fails too, write no more checkpoints (a restart cuts it).
            if self.file.set_len(self.size).is_err() {
                self.broken = true;
            }
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
