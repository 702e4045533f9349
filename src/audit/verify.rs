//! [`LogVerifier`]: everything that checks a file sink's log, as `audit_verify` runs it: the
//! chain through every file, the head file, and (with public keys) the signed checkpoints.

use std::fmt;
use std::path::{Path, PathBuf};

use super::FileSink;
use super::chain::{Anchor, AnchorSource, ChainError, verify_anchored};
use super::checkpoint::CheckpointFault;
#[cfg(feature = "audit-signing")]
use super::checkpoint::read_chain;
#[cfg(feature = "audit-signing")]
use super::signing::PublicKey;

/// Checks the log at a path: every rotated file and the live one, oldest first.
///
/// - The chain must hold through every file.
/// - The head file must exist (unless [`unanchored`](Self::unanchored)) and the chain must pass
///   through it: the log may go on past it, but the record it names must carry its hash.
/// - With [`public_key`](Self::public_key)s (feature `audit-signing`), the checkpoint file must
///   exist; every checkpoint must follow the one before it, be signed by one of the keys, seal
///   more records than the one before, and be on the chain; the log must reach the last one.
///   Records after it are reported as unsealed.
#[derive(Debug, Clone)]
#[must_use]
pub struct LogVerifier {
    log: PathBuf,
    unanchored: bool,
    checkpoints: Option<PathBuf>,
    #[cfg(feature = "audit-signing")]
    keys: Vec<PublicKey>,
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogReport {
    /// Records checked.
    pub records: u64,
    /// Files read.
    pub files: usize,
    /// The last record's hash.
    pub head: [u8; 32],
    /// The next sequence number.
    pub next_seq: u64,
    /// The head file's next sequence number, when there is a head file.
    pub head_file: Option<u64>,
    /// Checkpoints checked (zero without public keys).
    pub checkpoints: u64,
    /// Records sealed by the last checkpoint.
    pub sealed: u64,
    /// The ids of the keys that signed checkpoints, in the order first seen.
    pub keys: Vec<String>,
}

impl LogReport {
    /// Records after the last checkpoint.
    #[must_use]
    pub fn unsealed(&self) -> u64 {
        self.next_seq.saturating_sub(self.sealed)
    }
}

/// Why a head file is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadFault {
    /// It is not a head line (see [`Head::parse`](super::head::Head::parse)).
    Malformed,
    /// It carries no signature, though the log is checked with public keys (the sink signs its
    /// head whenever it signs checkpoints).
    Unsigned,
    /// It names a key none of the given public keys has.
    UnknownKey {
        /// The key id it names.
        key: String,
    },
    /// Its signature does not check with the key it names.
    BadSignature,
    /// It is signed with a key that the checkpoints show replaced by another.
    RetiredKey {
        /// The key id it names.
        key: String,
    },
}

/// Why a log does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// There is no log at the path.
    #[error("{}: no audit log there", .path.display())]
    NoLog {
        /// The path.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("{}: {reason}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The head file is missing: records removed from the end, or rewritten and re-chained,
    /// could not be told.
    #[error(
        "{}: no head file, so records removed from the end or rewritten could not be told (pass --unanchored if the log is known to have none)",
        .path.display()
    )]
    NoHeadFile {
        /// The head file's path.
        path: PathBuf,
    },
    /// The head file is refused.
    #[error("{}: {}", .path.display(), describe_head(.fault))]
    BadHead {
        /// The head file's path.
        path: PathBuf,
        /// What is wrong.
        fault: HeadFault,
    },
    /// The chain is broken.
    #[error("{0}")]
    Chain(ChainError),
    /// A checkpoint is refused.
    #[error("{}:{line}: {fault}", .file.display())]
    Checkpoint {
        /// The checkpoint file.
        file: PathBuf,
        /// The 1-based line (0 for the file as a whole).
        line: usize,
        /// What is wrong.
        fault: CheckpointFault,
    },
}

impl VerifyError {
    /// Whether the log could not be read at all (rather than read and found broken).
    #[must_use]
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            VerifyError::NoLog { .. } | VerifyError::Unreadable { .. }
        )
    }
}

fn describe_head(fault: &HeadFault) -> String {
    match fault {
        HeadFault::Malformed => "not a head file".into(),
        HeadFault::Unsigned => {
            "the head file is not signed, though the sink signs it with its checkpoints (rewritten?)".into()
        }
        HeadFault::UnknownKey { key } => {
            format!("the head file is signed with key {key}, which is not among the public keys given")
        }
        HeadFault::BadSignature => "the head file's signature does not check".into(),
        HeadFault::RetiredKey { key } => {
            format!("the head file is signed with key {key}, which a later key replaced")
        }
    }
}

impl LogVerifier {
    /// A verifier of the log at `log` (the live file; rotated ones are found beside it).
    pub fn new(log: impl Into<PathBuf>) -> Self {
        Self {
            log: log.into(),
            unanchored: false,
            checkpoints: None,
            #[cfg(feature = "audit-signing")]
            keys: Vec::new(),
        }
    }

    /// Accepts a log without a head file (one kept without it on purpose): removals from its
    /// end, and rewrites after the last checkpoint, then go unseen.
    pub fn unanchored(mut self) -> Self {
        self.unanchored = true;
        self
    }

    /// A public key checkpoints may be signed with; give every key used over the log's life.
    /// With at least one, the checkpoints are required and checked.
    #[cfg(feature = "audit-signing")]
    pub fn public_key(mut self, key: PublicKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Reads checkpoints from this file instead of `<log>.checkpoints` (a copy kept apart from
    /// the log, as a second sink keeps one).
    pub fn checkpoint_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoints = Some(path.into());
        self
    }

    /// Checks the log.
    ///
    /// # Errors
    /// The first thing wrong; see [`VerifyError`].
    pub fn verify(&self) -> Result<LogReport, VerifyError> {
        let unreadable = |path: &Path, error: std::io::Error| VerifyError::Unreadable {
            path: path.to_path_buf(),
            reason: error.to_string(),
        };
        let files = FileSink::files(&self.log).map_err(|e| unreadable(&self.log, e))?;
        if files.is_empty() {
            return Err(VerifyError::NoLog {
                path: self.log.clone(),
            });
        }
        let head_path = FileSink::head_path(&self.log);
        let head_line = match FileSink::read_head_line(&self.log) {
            Ok(head) => head,
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                return Err(VerifyError::BadHead {
                    path: head_path,
                    fault: HeadFault::Malformed,
                });
            }
            Err(error) => return Err(unreadable(&head_path, error)),
        };
        let head = head_line.as_ref().map(|h| h.position);
        if head.is_none() && !self.unanchored {
            return Err(VerifyError::NoHeadFile {
                path: FileSink::head_path(&self.log),
            });
        }
        let mut anchors: Vec<Anchor> = head
            .map(|position| Anchor {
                position,
                source: AnchorSource::HeadFile,
            })
            .into_iter()
            .collect();
        let sealed = self.checkpoint_anchors(&mut anchors)?;
        self.check_head_signature(head_line.as_ref(), &head_path, &sealed.retired)?;
        let verified = verify_anchored(&files, &anchors).map_err(VerifyError::Chain)?;
        Ok(LogReport {
            records: verified.records,
            files: files.len(),
            head: verified.head,
            next_seq: verified.next_seq,
            head_file: head.map(|h| h.next_seq),
            checkpoints: sealed.count,
            sealed: sealed.records,
            keys: sealed.keys,
        })
    }

    /// With public keys, a head file must be signed by one of them.
    #[cfg(feature = "audit-signing")]
    fn check_head_signature(
        &self,
        head: Option<&super::head::Head>,
        path: &Path,
        retired: &[String],
    ) -> Result<(), VerifyError> {
        let (Some(head), false) = (head, self.keys.is_empty()) else {
            return Ok(());
        };
        let refuse = |fault| {
            Err(VerifyError::BadHead {
                path: path.to_path_buf(),
                fault,
            })
        };
        let Some((key, _)) = &head.signature else {
            return refuse(HeadFault::Unsigned);
        };
        if retired.contains(key) {
            return refuse(HeadFault::RetiredKey { key: key.clone() });
        }
        match self.keys.iter().find(|k| k.id() == key) {
            None => refuse(HeadFault::UnknownKey { key: key.clone() }),
            Some(known) if !known.verifies_head(head) => refuse(HeadFault::BadSignature),
            Some(_) => Ok(()),
        }
    }

    #[cfg(not(feature = "audit-signing"))]
    #[allow(clippy::unnecessary_wraps, clippy::unused_self)]
    fn check_head_signature(
        &self,
        _head: Option<&super::head::Head>,
        _path: &Path,
        _retired: &[String],
    ) -> Result<(), VerifyError> {
        Ok(())
    }

    /// Checks the checkpoint file (with public keys) and adds an anchor for each checkpoint.
    #[cfg(feature = "audit-signing")]
    fn checkpoint_anchors(&self, anchors: &mut Vec<Anchor>) -> Result<Sealed, VerifyError> {
        if self.keys.is_empty() {
            return Ok(Sealed::default());
        }
        let file = self
            .checkpoints
            .clone()
            .unwrap_or_else(|| FileSink::checkpoint_path(&self.log));
        let refuse = |line: usize, fault| VerifyError::Checkpoint {
            file: file.clone(),
            line,
            fault,
        };
        let bytes = match super::chain::read_log_file(&file, super::chain::MAX_LOG_FILE) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(refuse(0, CheckpointFault::Missing));
            }
            Err(error) => {
                return Err(VerifyError::Unreadable {
                    path: file.clone(),
                    reason: error.to_string(),
                });
            }
        };
        let chain = read_chain(&bytes).map_err(|(line, fault)| refuse(line, fault))?;
        let mut sealed = Sealed::default();
        for link in chain {
            let (number, checkpoint) = (link.line, link.checkpoint);
            let key = self
                .keys
                .iter()
                .find(|k| k.id() == checkpoint.key)
                .ok_or_else(|| {
                    refuse(
                        number,
                        CheckpointFault::UnknownKey {
                            key: checkpoint.key.clone(),
                        },
                    )
                })?;
            if !key.verifies(&checkpoint) {
                return Err(refuse(number, CheckpointFault::BadSignature));
            }
            if sealed.keys.last() != Some(&checkpoint.key) {
                if sealed.keys.contains(&checkpoint.key) {
                    let key = checkpoint.key.clone();
                    return Err(refuse(number, CheckpointFault::RetiredKey { key }));
                }
                if let Some(replaced) = sealed.keys.last() {
                    sealed.retired.push(replaced.clone());
                }
                sealed.keys.push(checkpoint.key.clone());
            }
            anchors.push(checkpoint.anchor(number));
            sealed.count += 1;
            sealed.records = link.sealed;
        }
        if sealed.count == 0 {
            return Err(refuse(0, CheckpointFault::Missing));
        }
        Ok(sealed)
    }

    #[cfg(not(feature = "audit-signing"))]
    #[allow(clippy::unnecessary_wraps, clippy::unused_self)]
    fn checkpoint_anchors(&self, _anchors: &mut Vec<Anchor>) -> Result<Sealed, VerifyError> {
        Ok(Sealed::default())
    }
}

/// What the checkpoints sealed.
#[derive(Debug, Default)]
struct Sealed {
    count: u64,
    records: u64,
    keys: Vec<String>,
    /// Keys a later key replaced.
    retired: Vec<String>,
}

impl fmt::Display for LogReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records in {} file(s); head {} (next sequence number {})",
            self.records,
            self.files,
            hex::encode(self.head),
            self.next_seq
        )?;
        match self.head_file {
            Some(seq) => write!(f, "; the head file pins sequence number {seq}")?,
            None => f.write_str("; no head file (unanchored)")?,
        }
        if self.checkpoints > 0 {
            write!(
                f,
                "; {} checkpoint(s) by {} seal {} records, {} unsealed after the last",
                self.checkpoints,
                self.keys.join(", "),
                self.sealed,
                self.unsealed()
            )?;
        }
        Ok(())
    }
}
