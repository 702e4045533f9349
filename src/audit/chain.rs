//! The hash chain: `h_n = SHA-256(h_(n-1) || canonical(record_n))`, one line per record, and the
//! verifier that names the first edited, deleted, inserted or reordered record, or a torn tail.
//!
//! A line is, byte for byte:
//! `{"seq":N,"prev":"<64 hex>","hash":"<64 hex>","record":<canonical JSON>}` and a newline. The
//! record's bytes are hashed as written, so the verifier needs no JSON canonicalisation.
//!
//! # What a chain without a key proves
//! Anyone can compute SHA-256: an attacker who rewrites a record *and every hash after it*
//! leaves a consistent chain. The chain catches edits by anyone who does not (a hand edit, a
//! script fixing one line, a lost or reordered write); against a determined insider, seal it
//! with signed [checkpoints](super::checkpoint) and keep a copy of them apart from the log.
//! Deleting the last records cleanly is undetectable from the file alone, for the same reason;
//! the file sink's head file (the last sequence number and hash, written with each commit) is
//! what the verifier compares the tail against.
//!
//! # Anchors
//! An [`Anchor`] is a point the chain must pass through: after `next_seq` records, its head
//! is `head`. The head file names one; each signed checkpoint
//! ([`checkpoint`](super::checkpoint)) names one. [`verify_anchored`] checks every anchor where
//! the chain passes it, so a record rewritten *before* an anchor and re-chained after it is
//! caught even when the log goes on past the anchor, and an anchor past the log's end means
//! records at the end were removed.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Reads a file of the log (a log file, its head, its checkpoints) whole, refusing anything but
/// a regular file of at most `max` bytes: a FIFO or a link to a device would hang or exhaust the
/// reader.
///
/// # Errors
/// The file cannot be read, is not a regular file, or is larger than `max`.
pub fn read_log_file(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: not a regular file", path.display()),
        ));
    }
    if meta.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: larger than {max} bytes", path.display()),
        ));
    }
    std::fs::read(path)
}

/// The most a log file may hold for the verifier and the sink's recovery to read it whole:
/// rotate long before (64 MiB is usual).
pub const MAX_LOG_FILE: u64 = 1 << 34;

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// The next link of the chain.
#[must_use]
pub fn link(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(prev);
    hash.update(canonical);
    hash.finalize().into()
}

/// One line of a chained log, with its newline.
#[must_use]
pub fn format_line(seq: u64, prev: &[u8; 32], hash: &[u8; 32], canonical: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(canonical.len() + 180);
    append_line(&mut line, seq, prev, hash, canonical);
    line
}

/// Appends one line of a chained log, with its newline, to `out`: what [`format_line`] makes,
/// without a buffer of its own (a writer appends a whole batch to one).
pub fn append_line(
    out: &mut Vec<u8>,
    seq: u64,
    prev: &[u8; 32],
    hash: &[u8; 32],
    canonical: &[u8],
) {
    let mut hex = [0u8; 64];
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    if hex::encode_to_slice(prev, &mut hex).is_ok() {
        out.extend_from_slice(&hex);
    }
    out.extend_from_slice(b"\",\"hash\":\"");
    if hex::encode_to_slice(hash, &mut hex).is_ok() {
        out.extend_from_slice(&hex);
    }
    out.extend_from_slice(b"\",\"record\":");
    out.extend_from_slice(canonical);
    out.extend_from_slice(b"}\n");
}

/// A line read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The record's sequence number, from 0.
    pub seq: u64,
    /// The previous record's hash.
    pub prev: [u8; 32],
    /// This record's hash, as written.
    pub hash: [u8; 32],
    /// The record's canonical bytes, as written.
    pub record: &'a [u8],
}

/// Parses one line (without its newline); `None` when it is not one, or not spelt exactly as
/// [`format_line`] writes it: the sequence number and the hashes are not under the record's
/// hash, so a line that reads the same but is written differently (`"seq":0005`, upper-case
/// hex) is an edit the hashes alone would not show.
#[must_use]
pub fn parse_line(line: &[u8]) -> Option<Line<'_>> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    // No leading zero: the digits must be the number as `append_line` writes it.
    if rest[..digits] != *itoa::Buffer::new().format(seq).as_bytes() {
        return None;
    }
    let rest = rest[digits..].strip_prefix(b",\"prev\":\"")?;
    let (prev, rest) = hash_at(rest)?;
    let rest = rest.strip_prefix(b"\",\"hash\":\"")?;
    let (hash, rest) = hash_at(rest)?;
    let rest = rest.strip_prefix(b"\",\"record\":")?;
    let record = rest.strip_suffix(b"}")?;
    Some(Line {
        seq,
        prev,
        hash,
        record,
    })
}

/// A hash in lower-case hex, as `append_line` writes it, and what follows it.
fn hash_at(bytes: &[u8]) -> Option<([u8; 32], &[u8])> {
    let hex_text = bytes.get(..64)?;
    if hex_text.iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    let mut out = [0; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some((out, &bytes[64..]))
}

/// What the verifier found wrong first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tamper {
    /// The record's bytes no longer hash to its stored hash.
    Edited,
    /// Records are missing before this line (its sequence number skips ahead).
    Deleted {
        /// The first missing sequence number.
        first_missing: u64,
    },
    /// This line is not part of the chain (it does not follow from the record before it, and
    /// the record after it does).
    Inserted,
    /// Records are out of order from this line.
    Reordered,
    /// The last line is incomplete (a torn write), or records the head file names are gone.
    Truncated,
    /// The line is not a record line at all.
    Malformed,
    /// The chain reaches this record's sequence number with another hash than the anchor (the
    /// head file, a checkpoint) pins: this record or one before it was rewritten, and the
    /// chain recomputed after it.
    Rewritten {
        /// What pinned the hash.
        by: AnchorSource,
    },
}

/// What pinned a point of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnchorSource {
    /// The file sink's head file.
    HeadFile,
    /// A signed checkpoint, by its 1-based line in the checkpoint file.
    Checkpoint {
        /// Its line.
        line: usize,
    },
}

impl fmt::Display for AnchorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnchorSource::HeadFile => f.write_str("the head file"),
            AnchorSource::Checkpoint { line } => write!(f, "the checkpoint at line {line}"),
        }
    }
}

/// A point the chain must pass through: after `position.next_seq` records, its head is
/// `position.head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Where the chain must stand.
    pub position: Position,
    /// What says so.
    pub source: AnchorSource,
}

/// Where the chain broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainError {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line number in it.
    pub line: usize,
    /// The sequence number the verifier expected there.
    pub expected_seq: u64,
    /// What is wrong.
    pub tamper: Tamper,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.tamper {
            Tamper::Edited => "record edited (its hash does not match its bytes)".to_string(),
            Tamper::Deleted { first_missing } => {
                format!("record(s) deleted from sequence number {first_missing}")
            }
            Tamper::Inserted => "record inserted (it does not follow the chain)".to_string(),
            Tamper::Reordered => "records reordered".to_string(),
            Tamper::Truncated => {
                "log truncated (a torn last line, or records missing at the end)".to_string()
            }
            Tamper::Malformed => "not a record line".to_string(),
            Tamper::Rewritten { by } => format!(
                "records rewritten (the chain's hash here is not the one {by} pins; this record or one before it was changed and the chain recomputed)"
            ),
        };
        write!(
            f,
            "{}:{}: {what} (expected sequence number {})",
            self.file.display(),
            self.line,
            self.expected_seq
        )
    }
}

impl std::error::Error for ChainError {}

/// What a verified chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// The last record's hash (the genesis hash for an empty log).
    pub head: [u8; 32],
    /// The next sequence number.
    pub next_seq: u64,
}

/// Where a chain stands: the next sequence number and the hash it continues from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The next record's sequence number.
    pub next_seq: u64,
    /// The last record's hash.
    pub head: [u8; 32],
}

impl Default for Position {
    fn default() -> Self {
        Self {
            next_seq: 0,
            head: GENESIS,
        }
    }
}

/// Checks the chain through `files` in order (rotated files, oldest first, then the live one),
/// and, when given, that it passes through `expected_end` (the head file's position): the log
/// may go on past the head (the head file is written after each commit), but the record the
/// head names must carry the head's hash.
///
/// # Errors
/// The first [`ChainError`]; an unreadable file is a `Malformed` error at line 0.
pub fn verify(files: &[PathBuf], expected_end: Option<Position>) -> Result<Verified, ChainError> {
    let anchors: Vec<Anchor> = expected_end
        .map(|position| Anchor {
            position,
            source: AnchorSource::HeadFile,
        })
        .into_iter()
        .collect();
    verify_anchored(files, &anchors)
}

/// Checks the chain through `files` in order, and that it passes through every anchor: where
/// the chain reaches an anchor's sequence number it must carry the anchor's hash, and the log
/// must reach every anchor.
///
/// # Errors
/// The first [`ChainError`]; an unreadable file is a `Malformed` error at line 0.
pub fn verify_anchored(files: &[PathBuf], anchors: &[Anchor]) -> Result<Verified, ChainError> {
    let mut anchors = Anchors::new(anchors);
    let mut position = Position::default();
    let mut records = 0;
    let at_start = |file: &PathBuf, tamper| ChainError {
        file: file.clone(),
        line: 1,
        expected_seq: 0,
        tamper,
    };
    if let (Some(first), Some(by)) = (files.first(), anchors.passed(&position)) {
        return Err(at_start(first, Tamper::Rewritten { by }));
    }
    for (index, file) in files.iter().enumerate() {
        let last_file = index + 1 == files.len();
        let bytes = read_log_file(file, MAX_LOG_FILE).map_err(|_| ChainError {
            file: file.clone(),
            line: 0,
            expected_seq: position.next_seq,
            tamper: Tamper::Malformed,
        })?;
        records += check_bytes(file, &bytes, &mut position, last_file, &mut anchors)?;
    }
    if let (true, Some(file)) = (anchors.beyond(&position), files.last()) {
        return Err(ChainError {
            file: file.clone(),
            line: line_count(file) + 1,
            expected_seq: position.next_seq,
            tamper: Tamper::Truncated,
        });
    }
    Ok(Verified {
        records,
        head: position.head,
        next_seq: position.next_seq,
    })
}

/// The anchors not yet passed, in the order the chain reaches them.
struct Anchors {
    sorted: Vec<Anchor>,
    next: usize,
}

impl Anchors {
    fn new(anchors: &[Anchor]) -> Self {
        let mut sorted = anchors.to_vec();
        sorted.sort_by_key(|a| a.position.next_seq);
        Self { sorted, next: 0 }
    }

    fn none() -> Self {
        Self {
            sorted: Vec::new(),
            next: 0,
        }
    }

    /// Checks the anchors at the chain's position; the first whose hash differs.
    fn passed(&mut self, position: &Position) -> Option<AnchorSource> {
        while let Some(anchor) = self.sorted.get(self.next) {
            if anchor.position.next_seq > position.next_seq {
                return None;
            }
            self.next += 1;
            if anchor.position.next_seq == position.next_seq
                && anchor.position.head != position.head
            {
                return Some(anchor.source);
            }
        }
        None
    }

    /// Whether an anchor lies beyond the chain's end.
    fn beyond(&self, position: &Position) -> bool {
        self.sorted[self.next..]
            .iter()
            .any(|a| a.position.next_seq > position.next_seq)
    }
}

fn line_count(file: &Path) -> usize {
    std::fs::read(file).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Checks one file's lines, continuing from `position`; the records checked.
pub(crate) fn verify_bytes(
    file: &Path,
    bytes: &[u8],
    position: &mut Position,
    last_file: bool,
) -> Result<u64, ChainError> {
    check_bytes(file, bytes, position, last_file, &mut Anchors::none())
}

/// [`verify_bytes`], checking the anchors the chain passes on the way.
fn check_bytes(
    file: &Path,
    bytes: &[u8],
    position: &mut Position,
    last_file: bool,
    anchors: &mut Anchors,
) -> Result<u64, ChainError> {
    let complete = bytes.ends_with(b"\n") || bytes.is_empty();
    let raw: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .take(bytes.iter().filter(|&&b| b == b'\n').count() + usize::from(!complete))
        .collect();
    let error = |line: usize, expected_seq: u64, tamper: Tamper| ChainError {
        file: file.to_path_buf(),
        line: line + 1,
        expected_seq,
        tamper,
    };
    // Parsed up front (for the look-ahead), judged in order: a malformed line late in the
    // file does not hide an earlier edit.
    let parsed: Vec<Option<Line<'_>>> = raw.iter().map(|text| parse_line(text)).collect();
    let lines: Vec<Line<'_>> = parsed.iter().map_while(Clone::clone).collect();
    for (i, line) in lines.iter().enumerate() {
        let expected = position.next_seq;
        if link(&line.prev, line.record) != line.hash {
            return Err(error(i, expected, Tamper::Edited));
        }
        if line.seq == expected && line.prev == position.head {
            // The last sequence number a chain can hold: a line claiming it ends the chain.
            let Some(next) = position.next_seq.checked_add(1) else {
                return Err(error(i, expected, Tamper::Malformed));
            };
            position.next_seq = next;
            position.head = line.hash;
            if let Some(by) = anchors.passed(position) {
                return Err(error(i, expected, Tamper::Rewritten { by }));
            }
            continue;
        }
        let next = lines.get(i + 1);
        // Two lines following from the same record: one was slipped in. The genuine one is
        // the one the chain goes on from.
        if let Some(before) = i.checked_sub(1).map(|j| &lines[j])
            && line.prev == before.prev
            && line.seq == before.seq
        {
            return if next.is_none_or(|n| n.prev == line.hash) {
                Err(error(i - 1, expected - 1, Tamper::Inserted))
            } else {
                Err(error(i, expected, Tamper::Inserted))
            };
        }
        // In sequence, but not following from the record before: that record was edited and
        // its hash recomputed (its own line checks out, its successor no longer follows).
        if line.seq == expected
            && i > 0
            && next.is_none_or(|n| n.prev == line.hash)
            && lines[..i].iter().all(|l| l.hash != line.prev)
        {
            return Err(error(i - 1, expected - 1, Tamper::Edited));
        }
        // A genuine later record here, with the expected one further on: the order changed.
        if line.seq > expected
            && lines[i..]
                .iter()
                .any(|l| l.seq == expected && l.prev == position.head)
        {
            return Err(error(i, expected, Tamper::Reordered));
        }
        // The line after follows from the record before this one: this one was slipped in.
        if next.is_some_and(|n| n.prev == position.head && n.seq == expected) {
            return Err(error(i, expected, Tamper::Inserted));
        }
        if line.seq > expected {
            // The expected record further on means the order changed; nowhere, it was deleted.
            let later = lines[i..].iter().any(|l| l.seq == expected);
            let tamper = if later {
                Tamper::Reordered
            } else {
                Tamper::Deleted {
                    first_missing: expected,
                }
            };
            return Err(error(i, expected, tamper));
        }
        if line.seq < expected && lines[..i].iter().any(|l| l.hash == line.hash) {
            return Err(error(i, expected, Tamper::Inserted));
        }
        let tamper = if line.seq < expected {
            Tamper::Reordered
        } else {
            Tamper::Inserted
        };
        return Err(error(i, expected, tamper));
    }
    if lines.len() < raw.len() {
        // The first line that is not a record line, after every good one before it.
        let at = lines.len();
        let tamper = if at + 1 == raw.len() && !complete && last_file {
            Tamper::Truncated
        } else {
            Tamper::Malformed
        };
        return Err(error(at, position.next_seq, tamper));
    }
    if !complete && last_file {
        // A whole record, but its newline never made it: the write was torn after it.
        return Err(error(
            raw.len() - 1,
            position.next_seq.saturating_sub(1),
            Tamper::Truncated,
        ));
    }
    Ok(lines.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(records: &[&str]) -> Vec<u8> {
        let mut position = Position::default();
        let mut out = Vec::new();
        for record in records {
            let hash = link(&position.head, record.as_bytes());
            out.extend(format_line(
                position.next_seq,
                &position.head,
                &hash,
                record.as_bytes(),
            ));
            position = Position {
                next_seq: position.next_seq + 1,
                head: hash,
            };
        }
        out
    }

    fn check(bytes: &[u8]) -> Result<u64, ChainError> {
        verify_bytes(
            Path::new("audit.log"),
            bytes,
            &mut Position::default(),
            true,
        )
    }

    fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn records() -> Vec<String> {
        (0..8)
            .map(|i| format!("{{\"n\":{i},\"who\":\"u{i}\"}}"))
            .collect()
    }

    fn log() -> Vec<u8> {
        let r = records();
        chain(&r.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn an_intact_chain_verifies_and_lines_round_trip() {
        assert_eq!(check(&log()), Ok(8));
        let first = lines(&log())[0].clone();
        let parsed = parse_line(first.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!((parsed.seq, parsed.prev), (0, GENESIS));
        assert_eq!(parsed.record, records()[0].as_bytes());
        assert_eq!(check(b""), Ok(0));
    }

    #[test]
    fn each_tampering_is_named_at_its_line() {
        let original = lines(&log());
        let join = |ls: &[Vec<u8>]| ls.concat();

        let mut edited = original.clone();
        edited[4] = String::from_utf8(edited[4].clone())
            .unwrap()
            .replace("u4", "u9")
            .into_bytes();
        let e = check(&join(&edited)).unwrap_err();
        assert_eq!((e.line, e.tamper), (5, Tamper::Edited));

        let mut deleted = original.clone();
        deleted.remove(4);
        let e = check(&join(&deleted)).unwrap_err();
        assert_eq!(
            (e.line, e.tamper),
            (5, Tamper::Deleted { first_missing: 4 })
        );

        // A forged record with a correct hash of its own, slipped in before record 4.
        let forged_record = b"{\"n\":99,\"who\":\"mallory\"}";
        let prev = parse_line(original[3].strip_suffix(b"\n").unwrap())
            .unwrap()
            .hash;
        let forged = format_line(4, &prev, &link(&prev, forged_record), forged_record);
        let mut inserted = original.clone();
        inserted.insert(4, forged);
        let e = check(&join(&inserted)).unwrap_err();
        assert_eq!((e.line, e.tamper), (5, Tamper::Inserted));
        // A copy of an earlier line slipped in.
        let mut duplicated = original.clone();
        duplicated.insert(6, original[2].clone());
        let e = check(&join(&duplicated)).unwrap_err();
        assert_eq!((e.line, e.tamper), (7, Tamper::Inserted));

        // An edit whose hash was recomputed: its own line checks out, the next no longer follows.
        let mut rehashed = original.clone();
        let line = parse_line(original[5].strip_suffix(b"\n").unwrap()).unwrap();
        let changed = b"{\"n\":5,\"who\":\"someone-else\"}";
        rehashed[5] = format_line(5, &line.prev, &link(&line.prev, changed), changed);
        let e = check(&join(&rehashed)).unwrap_err();
        assert_eq!((e.line, e.tamper), (6, Tamper::Edited));

        let mut reordered = original.clone();
        reordered.swap(3, 4);
        let e = check(&join(&reordered)).unwrap_err();
        assert_eq!((e.line, e.tamper), (4, Tamper::Reordered));

        let mut torn = join(&original);
        torn.truncate(torn.len() - 20);
        let e = check(&torn).unwrap_err();
        assert_eq!((e.line, e.tamper), (8, Tamper::Truncated));
        let mut no_newline = join(&original);
        no_newline.pop();
        assert_eq!(check(&no_newline).unwrap_err().tamper, Tamper::Truncated);

        let mut garbage = original.clone();
        garbage[2] = b"hello\n".to_vec();
        assert_eq!(
            check(&join(&garbage)).unwrap_err().tamper,
            Tamper::Malformed
        );
    }

    #[test]
    fn the_head_file_catches_a_clean_truncation() {
        let dir = std::env::temp_dir().join(format!("chain-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("audit.log");
        let all = log();
        let full = verify_bytes(&file, &all, &mut Position::default(), true).unwrap();
        assert_eq!(full, 8);
        let mut end = Position::default();
        verify_bytes(&file, &all, &mut end, true).unwrap();
        let kept: Vec<Vec<u8>> = lines(&all).into_iter().take(6).collect();
        std::fs::write(&file, kept.concat()).unwrap();
        let e = verify(std::slice::from_ref(&file), Some(end)).unwrap_err();
        assert_eq!((e.line, e.tamper), (7, Tamper::Truncated));
        std::fs::write(&file, &all).unwrap();
        assert_eq!(verify(&[file], Some(end)).unwrap().records, 8);
        let _ = std::fs::remove_dir_all(dir);
    }
}
