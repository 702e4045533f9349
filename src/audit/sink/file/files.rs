//! The log's files on disk, beside the live one: the head file, the rotated files, a record's
//! hash found among them.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::audit::chain::{Position, read_log_file};
use crate::audit::head::Head;

/// Refuses a path that exists but is not a regular file (a FIFO would hang the open, a link to
/// a device would be read without end).
pub(crate) fn regular_or_absent(path: &Path) -> io::Result<()> {
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
pub(super) struct HeadFile {
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
    pub(super) fn open(
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

    pub(super) fn record(&mut self, position: &Position) -> io::Result<()> {
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

pub(super) fn head_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// The rotated files of `path`: `<path>.<n>`.
pub(super) fn rotated(path: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
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

/// The head file of the log at `path`; `Ok(None)` when there is none.
pub(super) fn read_head(path: &Path) -> io::Result<Option<Head>> {
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

/// Reads a file of the log whole, from the start, and mends its last line: a line without its
/// newline is given one back when it is `whole` (only a hand removes just that byte), and cut
/// off otherwise (a write a crash tore, never acknowledged; `torn` says what, for the warning).
/// The bytes as they now are: every line ends in a newline.
pub(crate) fn read_mended(
    file: &mut File,
    path: &Path,
    torn: &str,
    whole: impl Fn(&[u8]) -> bool,
) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        if whole(&bytes[complete..]) {
            file.write_all(b"\n")?;
            bytes.push(b'\n');
        } else {
            tracing::warn!(layer = "audit", path = %path.display(), cut = bytes.len() - complete,
                "cutting off {torn}");
            file.set_len(complete as u64)?;
            bytes.truncate(complete);
        }
        file.sync_all()?;
    }
    Ok(bytes)
}
