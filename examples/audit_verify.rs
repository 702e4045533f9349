//! Checks a hash-chained audit log, offline: every rotated file and the live one, oldest first,
//! the head file, and with public keys the signed checkpoints.
//!
//! ```text
//! cargo run --example audit_verify -- audit/phi-audit.log
//! cargo run --example audit_verify --features audit-signing -- \
//!     --public-key audit-public.pem [--public-key older-public.pem] audit/phi-audit.log
//! ```
//!
//! Flags: `--public-key PATH` (PEM or base64; repeat it for every key used over the log's life),
//! `--checkpoints PATH` (a copy of the checkpoints kept apart from the log, instead of
//! `<log>.checkpoints`), `--unanchored` (the log is known to have no head file).
//!
//! Prints the number of records, the head hash, what anchors and seals them, and how many
//! records come after the last checkpoint; or the first thing wrong, with its file and line.
//! Exits 0 when the log holds, 1 when it is broken, 2 when it cannot be read or the flags are
//! wrong.

use std::path::PathBuf;
use std::process::ExitCode;

use api_policy::audit::LogVerifier;

const USAGE: &str = "usage: audit_verify [--public-key PATH]... [--checkpoints PATH] [--unanchored] LOG\n\
    (LOG is the live log; rotated LOG.1, LOG.2, ... and LOG.head are found beside it)";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let mut args = std::env::args_os().skip(1);
    let mut log = None;
    let mut unanchored = false;
    let mut checkpoints = None;
    let mut keys: Vec<PathBuf> = Vec::new();
    while let Some(arg) = args.next() {
        let value = |args: &mut dyn Iterator<Item = std::ffi::OsString>| {
            args.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{} needs a path", arg.to_string_lossy()))
        };
        match arg.to_str() {
            Some("--unanchored") => unanchored = true,
            Some("--public-key") => keys.push(value(&mut args)?),
            Some("--checkpoints") => checkpoints = Some(value(&mut args)?),
            Some(flag) if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            _ if log.is_none() => log = Some(PathBuf::from(&arg)),
            _ => return Err("more than one log given".into()),
        }
    }
    let log = log.ok_or("no log given")?;
    let mut verifier = LogVerifier::new(&log);
    if unanchored {
        verifier = verifier.unanchored();
    }
    if let Some(path) = checkpoints {
        verifier = verifier.checkpoint_file(path);
    }
    verifier = with_keys(verifier, &keys)?;
    match verifier.verify() {
        Ok(report) => {
            println!("OK: {report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if error.is_unreadable() => {
            eprintln!("{error}");
            Ok(ExitCode::from(2))
        }
        Err(error) => {
            eprintln!("BROKEN: {error}");
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(feature = "audit-signing")]
fn with_keys(mut verifier: LogVerifier, keys: &[PathBuf]) -> Result<LogVerifier, String> {
    for path in keys {
        let key = api_policy::audit::PublicKey::from_file(path).map_err(|e| e.to_string())?;
        verifier = verifier.public_key(key);
    }
    Ok(verifier)
}

#[cfg(not(feature = "audit-signing"))]
fn with_keys(verifier: LogVerifier, keys: &[PathBuf]) -> Result<LogVerifier, String> {
    if keys.is_empty() {
        Ok(verifier)
    } else {
        Err("--public-key needs the `audit-signing` feature: \
             cargo run --example audit_verify --features audit-signing -- ..."
            .into())
    }
}
