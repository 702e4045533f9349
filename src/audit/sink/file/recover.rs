//! Recovery on opening: where the chain continues, and what refuses a log.

use std::fs::File;
use std::io;
use std::path::Path;

use super::files::{head_path, read_head, read_mended, rotated};
use crate::audit::chain::{MAX_LOG_FILE, Position, link, parse_line, read_log_file, verify_bytes};

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
/// head file, unless `accept_unanchored`. The live file's content comes back with the position,
/// for looking records up in without reading it again.
pub(super) fn recover(
    path: &Path,
    file: &mut File,
    accept_unanchored: bool,
) -> io::Result<(Position, Vec<u8>)> {
    // A whole record whose newline alone is missing is kept: it may be acknowledged, and a
    // crash that tears a write leaves part of a record, not all of it.
    let bytes = read_mended(file, path, "a torn last line", |tail| {
        parse_line(tail).is_some_and(|line| link(&line.prev, line.record) == line.hash)
    })?;
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
    if let Err(error) = verify_bytes(path, &bytes, &mut position, true) {
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
    match read_head(path)?.map(|head| head.position) {
        None if position.next_seq > 0 && !accept_unanchored => refused(format!(
            "the log holds {} records but has no head file ({}), so records removed from its end or rewritten could not be told; if it is known to be lost, open the log with accept_unanchored",
            position.next_seq,
            head_path(path).display()
        )),
        None => Ok((position, bytes)),
        Some(head) if head.next_seq > position.next_seq => refused(format!(
            "the log ends at sequence number {} but its head file says {}: records are missing",
            position.next_seq, head.next_seq
        )),
        Some(head) => {
            let at_head = match head.next_seq.checked_sub(1) {
                None => Some(crate::audit::chain::GENESIS),
                Some(seq) => record_hash(path, &bytes, seq)?,
            };
            if at_head == Some(head.head) {
                Ok((position, bytes))
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
/// `live` is the live file's content, as recovery read it: it is looked in first, and not read
/// again.
pub(super) fn record_hash(path: &Path, live: &[u8], seq: u64) -> io::Result<Option<[u8; 32]>> {
    if let Some(found) = hash_in(live, seq) {
        return Ok(found);
    }
    let mut files = rotated(path)?;
    files.sort();
    for (_, file) in files.into_iter().rev() {
        let bytes = match read_log_file(&file, MAX_LOG_FILE) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if let Some(found) = hash_in(&bytes, seq) {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Record `seq`'s hash in one file's `bytes`: `None` when the file starts after it (files hold
/// runs of sequence numbers, and are looked in newest first), else what the file holds of it.
fn hash_in(bytes: &[u8], seq: u64) -> Option<Option<[u8; 32]>> {
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .filter_map(parse_line)
        .peekable();
    if lines.peek().is_none_or(|first| first.seq > seq) {
        return None;
    }
    Some(lines.find(|line| line.seq == seq).map(|line| line.hash))
}
