//! The audit trail on real files: group commit, rotation, recovery after a torn write and after
//! a writer killed with SIGKILL, and tamper detection across files.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use api_policy::audit::chain::{Tamper, verify};
use api_policy::audit::{AuditRecord, AuditSink, FileSink};

fn record(n: u64) -> AuditRecord {
    serde_json::from_value(serde_json::json!({
        "time": AuditRecord::timestamp(1_795_521_600_000_000 + n),
        "request_id": format!("req-{n}"),
        "actor": "pat_1",
        "actor_kind": "user",
        "session": null,
        "action": "GET /api/v2/patients/{id}",
        "resource": "/api/v2/patients/pat_1",
        "subject": "pat_1",
        "status": 200,
        "refused_by": null,
        "source_ip": "192.0.2.1",
        "user_agent": "test",
        "latency_us": n,
    }))
    .unwrap()
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("api-policy-audit-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("audit.log")
}

fn check(path: &Path) -> Result<u64, api_policy::audit::chain::ChainError> {
    verify(&FileSink::files(path).unwrap(), FileSink::head(path)).map(|v| v.records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_fsyncs_and_chain() {
    let path = scratch("group");
    let sink = FileSink::builder(&path).open().unwrap();
    let tasks: Vec<_> = (0..500)
        .map(|n| {
            let sink = sink.clone();
            tokio::spawn(async move { sink.write(record(n)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stats = sink.stats();
    assert_eq!(stats.records, 500);
    assert!(stats.commits < 500, "group commit: {stats:?}");
    assert_eq!(check(&path), Ok(500));
}

#[tokio::test]
async fn rotation_keeps_one_chain_across_files() {
    let path = scratch("rotate");
    let sink = FileSink::builder(&path)
        .rotate_at_bytes(4_000)
        .open()
        .unwrap();
    for n in 0..60 {
        sink.write(record(n)).await.unwrap();
    }
    let files = FileSink::files(&path).unwrap();
    assert!(files.len() > 3, "{files:?}");
    assert_eq!(check(&path), Ok(60));
    // Deleting a whole rotated file breaks the chain at the next one.
    std::fs::remove_file(&files[1]).unwrap();
    let error = check(&path).unwrap_err();
    assert!(matches!(error.tamper, Tamper::Deleted { .. }), "{error}");
    assert_eq!(error.file, files[2]);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_chain_continues() {
    let path = scratch("torn");
    {
        let sink = FileSink::builder(&path).open().unwrap();
        for n in 0..10 {
            sink.write(record(n)).await.unwrap();
        }
    }
    // A crash in the middle of a write: half a line, never acknowledged.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"{\"seq\":10,\"prev\":\"ab").unwrap();
    drop(file);
    assert_eq!(check(&path).unwrap_err().tamper, Tamper::Truncated);
    let sink = FileSink::builder(&path).open().unwrap();
    for n in 10..15 {
        sink.write(record(n)).await.unwrap();
    }
    assert_eq!(check(&path), Ok(15));
}

#[tokio::test]
async fn tampering_with_the_files_is_found_at_the_record() {
    let path = scratch("tamper");
    {
        let sink = FileSink::builder(&path).open().unwrap();
        for n in 0..20 {
            sink.write(record(n)).await.unwrap();
        }
    }
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let write = |lines: &[String]| std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();

    let mut edited = owned();
    edited[7] = edited[7].replace("\"status\":200", "\"status\":404");
    write(&edited);
    let e = check(&path).unwrap_err();
    assert_eq!((e.line, e.tamper), (8, Tamper::Edited));

    let mut deleted = owned();
    deleted.remove(7);
    write(&deleted);
    let e = check(&path).unwrap_err();
    assert_eq!(
        (e.line, e.tamper),
        (8, Tamper::Deleted { first_missing: 7 })
    );

    let mut inserted = owned();
    inserted.insert(12, lines[3].to_string());
    write(&inserted);
    let e = check(&path).unwrap_err();
    assert_eq!((e.line, e.tamper), (13, Tamper::Inserted));

    let mut reordered = owned();
    reordered.swap(5, 6);
    write(&reordered);
    let e = check(&path).unwrap_err();
    assert_eq!((e.line, e.tamper), (6, Tamper::Reordered));

    // The last three records removed cleanly: only the head file can tell.
    let truncated: Vec<String> = owned().into_iter().take(17).collect();
    write(&truncated);
    let e = check(&path).unwrap_err();
    assert_eq!((e.line, e.tamper), (18, Tamper::Truncated));

    std::fs::write(&path, original).unwrap();
    assert_eq!(check(&path), Ok(20));
}

/// The child side of the SIGKILL test: writes records as fast as it can and prints each
/// acknowledged request id. Runs only when the parent sets `AUDIT_CHILD_PATH`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_writer() {
    let Ok(path) = std::env::var("AUDIT_CHILD_PATH") else {
        return;
    };
    let sink = FileSink::builder(PathBuf::from(path)).open().unwrap();
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..8 {
        let (sink, acks) = (sink.clone(), acks.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let id = n * 1_000_000 + i;
                if sink.write(record(id)).await.is_ok() {
                    let _ = acks.send(id);
                }
            }
        });
    }
    let mut out = std::io::stdout();
    while let Some(id) = acked.recv().await {
        let _ = writeln!(out, "ACK req-{id}");
        let _ = out.flush();
    }
}

/// A writer killed with SIGKILL mid-stream: after a restart the chain verifies and continues,
/// and every record the writer acknowledged is in the log.
#[tokio::test]
async fn a_killed_writer_loses_no_acknowledged_record() {
    let path = scratch("kill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env("AUDIT_CHILD_PATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acknowledged.push(id.to_string());
            if acknowledged.len() == 2_000 {
                // SIGKILL: no destructor, no flush, mid-write.
                child.kill().unwrap();
                break;
            }
        }
    }
    let _ = child.wait();
    assert_eq!(acknowledged.len(), 2_000, "the child wrote too little");

    // Restart: the torn tail (if any) is cut, the chain continues.
    let sink = FileSink::builder(&path).open().unwrap();
    for n in 0..10 {
        sink.write(record(900_000_000 + n)).await.unwrap();
    }
    let total = check(&path).unwrap();
    assert!(total >= 2_010, "{total}");
    let log = std::fs::read_to_string(&path).unwrap();
    let written: std::collections::HashSet<&str> = log
        .lines()
        .filter_map(|l| l.split("\"request_id\":\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !written.contains(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
}
