//! Checks a hash-chained audit log, offline: every rotated file and the live one, oldest first,
//! and the head file's last position.
//!
//! ```text
//! cargo run --example audit_verify -- audit/phi-audit.log
//! ```
//!
//! Prints the number of records and the head hash, or the first edited, deleted, inserted or
//! reordered record, or a truncated tail, with its file and line; exits 0 when the chain holds,
//! 1 when it is broken, 2 when the log cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use api_policy::audit::FileSink;
use api_policy::audit::chain::verify;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!(
            "usage: audit_verify PATH   (the live log; rotated PATH.1, PATH.2, ... are found beside it)"
        );
        return ExitCode::from(2);
    };
    let files = match FileSink::files(&path) {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => {
            eprintln!("{}: no audit log there", path.display());
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("{}: {error}", path.display());
            return ExitCode::from(2);
        }
    };
    let head = FileSink::head(&path);
    match verify(&files, head) {
        Ok(verified) => {
            println!(
                "OK: {} records in {} file(s); head {} (next sequence number {}){}",
                verified.records,
                files.len(),
                hex::encode(verified.head),
                verified.next_seq,
                if head.is_some() {
                    ""
                } else {
                    "; no head file, so a cleanly truncated tail would not show"
                }
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("BROKEN: {error}");
            ExitCode::from(1)
        }
    }
}
