//! The audit log against a forger: every tamper of the list, each detected by the verifier a
//! user runs (`audit_verify`, the example binary), with and without signed checkpoints; the
//! sink refusing to write on over a forged log; key rotation; a wrong key; a writer killed with
//! SIGKILL; and a copy of the checkpoints kept in a Redis stream.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use api_policy::audit::chain::{GENESIS, format_line, link, parse_line};
use api_policy::audit::checkpoint::Checkpoint;
use api_policy::audit::{AuditRecord, AuditSink, Checkpoints, FileSink, PublicKey, SigningKey};

fn record(n: u64) -> AuditRecord {
    common::audit_record(n, "dr_who", "192.0.2.7")
}

fn scratch(test: &str) -> PathBuf {
    common::scratch_log("integrity", test, "phi.log")
}

/// The verifier a user runs: the example binary `cargo test` builds beside the tests.
fn verifier() -> PathBuf {
    common::example_binary("audit_verify")
}

/// Runs `audit_verify ARGS... LOG`.
fn run(log: &Path, args: &[&str]) -> Output {
    Command::new(verifier())
        .args(args)
        .arg(log)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the verifier found the log broken (exit 1) and said `what`.
#[track_caller]
fn assert_broken(output: &Output, what: &str) {
    let report = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected BROKEN ({what}); stdout: {} stderr: {report}",
        stdout(output)
    );
    assert!(
        report.starts_with("BROKEN") && report.contains(what),
        "expected {what:?} in {report}"
    );
}

#[track_caller]
fn assert_ok(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "expected OK; stdout: {} stderr: {}",
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Writes the public key where the verifier reads it; its path as a flag value.
fn public_key_file(dir: &Path, name: &str, key: &PublicKey) -> String {
    let path = dir.join(name);
    std::fs::write(&path, key.to_pem()).unwrap();
    path.to_string_lossy().into_owned()
}

/// Writes `records` records one commit at a time, with a checkpoint every `every` records, and
/// waits for the checkpoints the count makes; the head file as it was when the log held each
/// count of `snapshots` records (the copies a forger with early access could have kept).
async fn sealed_log(
    path: &Path,
    checkpoints: Checkpoints,
    first: u64,
    records: u64,
    every: u64,
    snapshots: &[u64],
) -> Vec<(u64, String)> {
    let sink = FileSink::builder(path)
        .checkpoints(checkpoints.every_records(every))
        .open()
        .unwrap();
    let mut heads = Vec::new();
    for n in first..first + records {
        sink.write(record(n)).await.unwrap();
        // The head is written before a record is acknowledged.
        if snapshots.contains(&(n + 1)) {
            heads.push((n + 1, std::fs::read_to_string(head_path(path)).unwrap()));
        }
    }
    let expected = records / every;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.stats().checkpoints < expected {
        assert!(Instant::now() < deadline, "checkpoints: {:?}", sink.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    heads
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn head_path(log: &Path) -> PathBuf {
    FileSink::head_path(log)
}

/// Rewrites the head file as a forger without the key would, to name the chain's end as the
/// log holds it now (unsigned: the forger cannot sign it).
fn forge_head(log: &Path) {
    let last = lines(log)
        .last()
        .and_then(|l| parse_line(l.as_bytes()).map(|p| (p.seq, p.hash)))
        .unwrap();
    std::fs::write(
        head_path(log),
        format!("{} {}\n", last.0 + 1, hex::encode(last.1)),
    )
    .unwrap();
}

/// Re-chains lines from `from` on: each line's `prev` and `hash` recomputed from the one before
/// it, and its sequence number set to its place, as a forger who knows the format would.
fn rechain(lines: &mut [String], from: usize) {
    let mut prev = if from == 0 {
        GENESIS
    } else {
        parse_line(lines[from - 1].as_bytes()).unwrap().hash
    };
    for (i, line) in lines.iter_mut().enumerate().skip(from) {
        let record = parse_line(line.as_bytes()).unwrap().record.to_vec();
        let hash = link(&prev, &record);
        let formed = format_line(i as u64, &prev, &hash, &record);
        *line = String::from_utf8(formed).unwrap().trim_end().to_string();
        prev = hash;
    }
}

/// A record line for `record` that follows the line before it.
fn forged_line(after: Option<&str>, seq: u64, record: &AuditRecord) -> String {
    let prev = after.map_or(GENESIS, |l| parse_line(l.as_bytes()).unwrap().hash);
    let canonical = record.canonical();
    let line = format_line(seq, &prev, &link(&prev, &canonical), &canonical);
    String::from_utf8(line).unwrap().trim_end().to_string()
}

struct Fixture {
    log: PathBuf,
    signing: SigningKey,
    key: String,
    pristine: Vec<String>,
    head: String,
    /// The signed head file as it was at 15 and at 33 records.
    earlier_heads: Vec<(u64, String)>,
    checkpoints: String,
}

impl Fixture {
    /// 40 records sealed by 4 checkpoints (every 10).
    async fn new(test: &str) -> Fixture {
        let log = scratch(test);
        let signing = SigningKey::generate().unwrap();
        let earlier_heads = sealed_log(
            &log,
            Checkpoints::new(signing.clone()),
            0,
            40,
            10,
            &[15, 33],
        )
        .await;
        let dir = log.parent().unwrap();
        Fixture {
            key: public_key_file(dir, "public.pem", signing.public_key()),
            signing,
            pristine: lines(&log),
            head: std::fs::read_to_string(head_path(&log)).unwrap(),
            earlier_heads,
            checkpoints: std::fs::read_to_string(FileSink::checkpoint_path(&log)).unwrap(),
            log,
        }
    }

    /// Puts back the signed head the log had at `records` records.
    fn replay_head(&self, records: u64) {
        let (_, head) = self
            .earlier_heads
            .iter()
            .find(|(n, _)| *n == records)
            .unwrap();
        std::fs::write(head_path(&self.log), head).unwrap();
    }

    fn restore(&self) {
        write_lines(&self.log, &self.pristine);
        std::fs::write(head_path(&self.log), &self.head).unwrap();
        std::fs::write(FileSink::checkpoint_path(&self.log), &self.checkpoints).unwrap();
    }

    fn verify(&self) -> Output {
        run(&self.log, &["--public-key", &self.key])
    }

    fn verify_without_key(&self) -> Output {
        run(&self.log, &[])
    }

    /// Applies `tamper` to the pristine lines, writes them, and verifies with the key.
    fn tampered(&self, tamper: impl FnOnce(&mut Vec<String>)) -> Output {
        self.restore();
        let mut lines = self.pristine.clone();
        tamper(&mut lines);
        write_lines(&self.log, &lines);
        self.verify()
    }
}

#[tokio::test]
async fn a_pristine_sealed_log_verifies_and_reports_its_checkpoints() {
    let f = Fixture::new("pristine").await;
    let report = assert_ok(&f.verify());
    assert!(
        report.starts_with("OK: 40 records in 1 file(s)"),
        "{report}"
    );
    assert!(
        report.contains("4 checkpoint(s)") && report.contains("seal 40 records, 0 unsealed"),
        "{report}"
    );
    // Without a key, the chain and the head are still checked.
    assert_ok(&f.verify_without_key());
    // Each checkpoint is a line the format describes, chained to the one before.
    let mut prev = [0; 32];
    for (i, line) in f.checkpoints.lines().enumerate() {
        let checkpoint = Checkpoint::parse(line.as_bytes()).unwrap();
        assert_eq!(checkpoint.seq, i as u64 * 10 + 9);
        assert_eq!(checkpoint.prev, prev);
        prev = Checkpoint::line_hash(line.as_bytes());
    }
}

#[tokio::test]
async fn every_tamper_of_the_list_is_detected() {
    let f = Fixture::new("tampers").await;

    // An edited byte.
    let output = f.tampered(|l| l[12] = l[12].replacen("dr_who", "dr_how", 1));
    assert_broken(&output, ":13: record edited");
    // An edited hash.
    let output = f.tampered(|l| {
        let at = l[7].find("\"hash\":\"").unwrap() + 8;
        let flipped = if &l[7][at..=at] == "0" { "1" } else { "0" };
        l[7].replace_range(at..=at, flipped);
    });
    assert_broken(&output, ":8: record edited");
    // A deleted line.
    assert_broken(&f.tampered(|l| drop(l.remove(20))), "record(s) deleted");
    // A duplicated line.
    assert_broken(
        &f.tampered(|l| {
            let copy = l[5].clone();
            l.insert(6, copy);
        }),
        "record inserted",
    );
    // Swapped lines.
    assert_broken(&f.tampered(|l| l.swap(30, 31)), "records reordered");
    // A blank line.
    assert_broken(
        &f.tampered(|l| l.insert(17, String::new())),
        ":18: not a record line",
    );
    // CRLF line endings.
    assert_broken(
        &f.tampered(|l| l.iter_mut().for_each(|line| line.push('\r'))),
        ":1: not a record line",
    );
    // A forged line, hashed alone (its own hash right, following nothing).
    assert_broken(
        &f.tampered(|l| l.insert(25, forged_line(None, 25, &record(999)))),
        "record inserted",
    );

    // A torn truncation of sealed records (cut in the middle of record 31).
    f.restore();
    let mut text = std::fs::read_to_string(&f.log).unwrap();
    let cut = f.pristine[..31].iter().map(|l| l.len() + 1).sum::<usize>() + 40;
    text.truncate(cut);
    std::fs::write(&f.log, text).unwrap();
    assert_broken(&f.verify(), "log truncated");

    // A clean truncation of sealed records, with the signed head the log had at 33 records (a
    // copy a forger kept): the checkpoints still name 40 records.
    f.restore();
    write_lines(&f.log, &f.pristine[..33]);
    f.replay_head(33);
    assert_broken(&f.verify(), "log truncated");
    // Without the checkpoints the old head hides it: what an unkeyed chain cannot see.
    assert_ok(&f.verify_without_key());
    // A head rewritten by hand to match gives itself away: it is not signed.
    forge_head(&f.log);
    assert_broken(&f.verify(), "the head file is not signed");
    assert_ok(&f.verify_without_key());

    // A forged line inserted mid-log, the rest re-chained, the head left: the head file pins
    // another hash for record 39 (the case an earlier verifier let through).
    f.restore();
    let mut forged = f.pristine.clone();
    forged.insert(15, forged_line(Some(&f.pristine[14]), 15, &record(777_777)));
    forged.pop();
    rechain(&mut forged, 15);
    write_lines(&f.log, &forged);
    assert_broken(&f.verify_without_key(), "the head file pins");
    // With the signed head of when the log held 15 records (before the forgery), the head
    // holds: only the checkpoints catch it.
    f.replay_head(15);
    assert_broken(&f.verify(), "the checkpoint at line 2 pins");
    assert_ok(&f.verify_without_key());
    // With a head rewritten to match, its missing signature does.
    forge_head(&f.log);
    assert_broken(&f.verify(), "the head file is not signed");

    // A forged line appended and sealed with another key (its own checkpoint chained on).
    f.restore();
    let mallory = SigningKey::generate().unwrap();
    let mut appended = f.pristine.clone();
    appended.push(forged_line(
        appended.last().map(String::as_str),
        40,
        &record(666),
    ));
    // The head left as it was (a rewritten one is refused unsigned, as above): the log may go
    // on past it.
    write_lines(&f.log, &appended);
    let last = parse_line(appended[40].as_bytes()).unwrap();
    let previous = f.checkpoints.lines().last().unwrap();
    let forged_seal = seal(&mallory, 40, last.hash, previous);
    std::fs::write(
        FileSink::checkpoint_path(&f.log),
        format!("{}{forged_seal}\n", f.checkpoints),
    )
    .unwrap();
    assert_broken(&f.verify(), "which is not among the public keys given");
    // ... or claiming the real key's id: the signature does not check.
    let mut impostor = Checkpoint::parse(forged_seal.as_bytes()).unwrap();
    impostor.key = PublicKey::from_file(&f.key).unwrap().id().to_string();
    let impostor = String::from_utf8(impostor.line()).unwrap();
    std::fs::write(
        FileSink::checkpoint_path(&f.log),
        format!("{}{impostor}\n", f.checkpoints),
    )
    .unwrap();
    assert_broken(&f.verify(), "its signature does not check");
    // Appended without a checkpoint, it is merely unsealed: reported, not hidden.
    std::fs::write(FileSink::checkpoint_path(&f.log), &f.checkpoints).unwrap();
    let report = assert_ok(&f.verify());
    assert!(report.contains("1 unsealed"), "{report}");

    // A checkpoint removed from the middle of the checkpoint file.
    f.restore();
    let mut seals: Vec<String> = f.checkpoints.lines().map(str::to_string).collect();
    seals.remove(1);
    write_lines(&FileSink::checkpoint_path(&f.log), &seals);
    assert_broken(&f.verify(), "does not follow the checkpoint before it");
    // The checkpoint file removed.
    std::fs::remove_file(FileSink::checkpoint_path(&f.log)).unwrap();
    assert_broken(&f.verify(), "no checkpoints");

    // The head file deleted: a failure, unless the operator says the log is unanchored.
    f.restore();
    std::fs::remove_file(head_path(&f.log)).unwrap();
    assert_broken(&f.verify(), "no head file");
    assert_broken(&f.verify_without_key(), "no head file");
    let report = assert_ok(&run(&f.log, &["--unanchored", "--public-key", &f.key]));
    assert!(report.contains("no head file (unanchored)"), "{report}");

    // Lines spelt otherwise than the sink writes them, with every hash still right.
    assert_broken(
        &f.tampered(|l| l[5] = l[5].replacen("{\"seq\":5,", "{\"seq\":0005,", 1)),
        ":6: not a record line",
    );
    assert_broken(
        &f.tampered(|l| {
            let hash = parse_line(l[5].as_bytes()).unwrap().hash;
            let (lower, upper) = (hex::encode(hash), hex::encode_upper(hash));
            l[5] = l[5].replace(&lower, &upper);
            l[6] = l[6].replace(&lower, &upper);
        }),
        ":6: not a record line",
    );
    // A head file that is not one is a broken log (exit 1), not an unreadable one.
    f.restore();
    std::fs::write(head_path(&f.log), "forty records, honest\n").unwrap();
    assert_broken(&f.verify_without_key(), "not a head file");
    // A record at the last sequence number a chain can hold: refused, no overflow.
    f.restore();
    write_lines(&f.log, &[forged_line(None, u64::MAX, &record(1))]);
    std::fs::write(head_path(&f.log), format!("0 {}\n", hex::encode(GENESIS))).unwrap();
    assert_broken(&f.verify_without_key(), "record");
    assert!(FileSink::builder(&f.log).open().is_err());

    f.restore();
    assert_ok(&f.verify());
}

/// A checkpoint line sealing record `seq` (hash `hash`), chained after `previous`, signed by
/// `key`, as the sink would make it.
fn seal(key: &SigningKey, seq: u64, hash: [u8; 32], previous: &str) -> String {
    let mut checkpoint = Checkpoint {
        seq,
        hash,
        time: AuditRecord::timestamp(1_795_521_700_000_000),
        prev: Checkpoint::line_hash(previous.as_bytes()),
        key: key.id().to_string(),
        signature: Vec::new(),
    };
    checkpoint.signature = sign_with(key, &checkpoint.message());
    String::from_utf8(checkpoint.line()).unwrap()
}

/// Signs `message` with `key` through its PKCS#8 form, as any Ed25519 tool would.
fn sign_with(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let pem = key.to_pkcs8_pem().unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&body);
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap();
    pair.sign(message).as_ref().to_vec()
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[tokio::test]
async fn the_sink_refuses_to_write_on_over_a_forged_log() {
    let f = Fixture::new("refuse").await;
    let sealing = || Checkpoints::new(f.signing.clone());
    let opened = |checkpoints: Option<Checkpoints>| {
        let builder = FileSink::builder(&f.log);
        match checkpoints {
            Some(checkpoints) => builder.checkpoints(checkpoints).open(),
            None => builder.open(),
        }
    };
    let refused_with = |checkpoints: Option<Checkpoints>, why: &str| {
        let refused = opened(checkpoints).unwrap_err().to_string();
        assert!(refused.contains(why), "expected {why:?} in {refused}");
    };
    let mut forged = f.pristine.clone();
    forged[20] = forged[20].replacen("dr_who", "dr_how", 1);
    rechain(&mut forged, 20);
    write_lines(&f.log, &forged);
    // The head file names the old hash of record 39.
    refused_with(None, "records were rewritten");
    // With the signed head the log had at 15 records (before the rewrite), the sink finds its
    // last checkpoint contradicted.
    f.replay_head(15);
    refused_with(Some(sealing()), "does not carry the hash it seals");
    // A sink with a key it cannot check the last checkpoint with does not go on from it.
    refused_with(
        Some(Checkpoints::new(SigningKey::generate().unwrap())),
        "which this sink does not know",
    );

    // The last checkpoint removed, the records after the one before rewritten, the head
    // rewritten to match: a restart must not seal them.
    f.restore();
    let mut forged = f.pristine.clone();
    forged[35] = forged[35].replacen("dr_who", "dr_how", 1);
    rechain(&mut forged, 35);
    write_lines(&f.log, &forged);
    forge_head(&f.log);
    let mut seals: Vec<String> = f.checkpoints.lines().map(str::to_string).collect();
    seals.pop();
    write_lines(&FileSink::checkpoint_path(&f.log), &seals);
    refused_with(Some(sealing()), "no head signed by a known key vouches");
    // Nor when only the last checkpoint's newline was removed: a whole checkpoint is not a
    // torn one, and it contradicts the rewritten records.
    let whole = f.checkpoints.trim_end_matches('\n').to_string();
    std::fs::write(FileSink::checkpoint_path(&f.log), &whole).unwrap();
    refused_with(Some(sealing()), "does not carry the hash it seals");
    // Nor with the checkpoint file removed.
    std::fs::remove_file(FileSink::checkpoint_path(&f.log)).unwrap();
    refused_with(Some(sealing()), "no head signed by a known key vouches");
    assert_broken(&f.verify(), "no checkpoints");
    // Nor with a checkpoint of another key appended.
    f.restore();
    let foreign = seal(
        &SigningKey::generate().unwrap(),
        39,
        parse_line(f.pristine[39].as_bytes()).unwrap().hash,
        f.checkpoints.lines().last().unwrap(),
    );
    std::fs::write(
        FileSink::checkpoint_path(&f.log),
        format!("{}{foreign}\n", f.checkpoints),
    )
    .unwrap();
    refused_with(Some(sealing()), "seals no more records than the one before");

    // A record that lost only its newline is a whole record: it is kept, not cut.
    f.restore();
    let text = std::fs::read_to_string(&f.log).unwrap();
    std::fs::write(&f.log, text.trim_end_matches('\n')).unwrap();
    drop(opened(Some(sealing())).unwrap());
    assert_eq!(lines(&f.log), f.pristine);

    // A log whose head file is gone is refused, unless accepted as unanchored.
    f.restore();
    std::fs::remove_file(head_path(&f.log)).unwrap();
    refused_with(None, "no head file");
    let sink = FileSink::builder(&f.log)
        .accept_unanchored()
        .checkpoints(sealing())
        .open()
        .unwrap();
    sink.write(record(40)).await.unwrap();
    drop(sink);
    // The sink started a new, signed head from the log's end: the log verifies again.
    assert_ok(&f.verify());
}

/// Checkpoints enabled on a log that had none: its records are sealed only when the operator
/// says so, once.
#[tokio::test]
async fn enabling_checkpoints_on_an_existing_log_takes_a_decision() {
    let log = scratch("enable");
    let sink = FileSink::builder(&log).open().unwrap();
    for n in 0..5 {
        sink.write(record(n)).await.unwrap();
    }
    drop(sink);
    let key = SigningKey::generate().unwrap();
    let refused = FileSink::builder(&log)
        .checkpoints(Checkpoints::new(key.clone()))
        .open()
        .unwrap_err();
    assert!(refused.to_string().contains("accept_unsealed"), "{refused}");
    let sink = FileSink::builder(&log)
        .checkpoints(Checkpoints::new(key.clone()).accept_unsealed())
        .open()
        .unwrap();
    assert!(sink.checkpoint_now().await.unwrap());
    drop(sink);
    let dir = log.parent().unwrap();
    let public = public_key_file(dir, "public.pem", key.public_key());
    let report = assert_ok(&run(&log, &["--public-key", &public]));
    assert!(report.contains("seal 5 records, 0 unsealed"), "{report}");
    // From then on it opens without the decision.
    drop(
        FileSink::builder(&log)
            .checkpoints(Checkpoints::new(key))
            .open()
            .unwrap(),
    );
}

#[tokio::test]
async fn keys_rotate_across_checkpoints_and_a_wrong_key_is_refused() {
    let log = scratch("rotate");
    let dir = log.parent().unwrap().to_path_buf();
    let (old, new) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    sealed_log(&log, Checkpoints::new(old.clone()), 0, 20, 10, &[]).await;
    // Reopened with the next key alone, the sink cannot check the checkpoint it goes on from.
    let refused = FileSink::builder(&log)
        .checkpoints(Checkpoints::new(new.clone()))
        .open()
        .unwrap_err();
    assert!(refused.to_string().contains("previous key"), "{refused}");
    // Given the old public key, its checkpoints chain on from the old ones.
    let rotated = Checkpoints::new(new.clone()).previous_key(old.public_key().clone());
    sealed_log(&log, rotated, 20, 20, 10, &[]).await;
    let old_pem = public_key_file(&dir, "old.pem", old.public_key());
    let new_pem = public_key_file(&dir, "new.pem", new.public_key());
    let report = assert_ok(&run(
        &log,
        &["--public-key", &old_pem, "--public-key", &new_pem],
    ));
    assert!(report.contains("4 checkpoint(s)"), "{report}");
    assert!(
        report.contains(&format!("{}, {}", old.id(), new.id())),
        "{report}"
    );
    // The new key alone cannot vouch for the old checkpoints.
    assert_broken(
        &run(&log, &["--public-key", &new_pem]),
        &format!("signed with key {}", old.id()),
    );
    // Nor can a key that never signed anything.
    let stranger = public_key_file(
        &dir,
        "stranger.pem",
        SigningKey::generate().unwrap().public_key(),
    );
    assert_broken(
        &run(&log, &["--public-key", &stranger]),
        "not among the public keys",
    );
    // A key file that holds no key is an error of the call, not a verdict on the log.
    std::fs::write(dir.join("garbage.pem"), "hello").unwrap();
    let garbage = dir.join("garbage.pem").to_string_lossy().into_owned();
    assert_eq!(
        run(&log, &["--public-key", &garbage]).status.code(),
        Some(2)
    );
}

/// A time-based checkpoint seals a quiet log, and a closed sink seals what is left.
#[tokio::test]
async fn quiet_and_closing_logs_are_sealed() {
    let log = scratch("quiet");
    let key = SigningKey::generate().unwrap();
    let dir = log.parent().unwrap().to_path_buf();
    let public = public_key_file(&dir, "public.pem", key.public_key());
    let sink = FileSink::builder(&log)
        .checkpoints(
            Checkpoints::new(key.clone())
                .every_records(1_000)
                .every(Duration::from_millis(100)),
        )
        .open()
        .unwrap();
    for n in 0..3 {
        sink.write(record(n)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while sink.stats().checkpoints == 0 {
        assert!(Instant::now() < deadline, "no timed checkpoint");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = assert_ok(&run(&log, &["--public-key", &public]));
    assert!(report.contains("seal 3 records, 0 unsealed"), "{report}");

    // Records written just before the sink closes are sealed as it closes.
    let sink = FileSink::builder(&log)
        .checkpoints(Checkpoints::new(key).every_records(1_000))
        .open()
        .unwrap();
    for n in 3..8 {
        sink.write(record(n)).await.unwrap();
    }
    drop(sink);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let report = stdout(&run(&log, &["--public-key", &public]));
        if report.contains("seal 8 records, 0 unsealed") {
            break;
        }
        assert!(Instant::now() < deadline, "not sealed on close: {report}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The child side of the SIGKILL test: writes sealed records as fast as it can and prints each
/// acknowledged request id. Runs only when the parent sets `INTEGRITY_CHILD_LOG`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_writer() {
    let (Ok(path), Ok(key)) = (
        std::env::var("INTEGRITY_CHILD_LOG"),
        std::env::var("INTEGRITY_CHILD_KEY"),
    ) else {
        return;
    };
    let key = SigningKey::from_pem(&key).unwrap();
    let sink = FileSink::builder(PathBuf::from(path))
        .checkpoints(Checkpoints::new(key).every_records(50))
        .open()
        .unwrap();
    common::write_until_killed(sink, 4, record).await;
}

/// A sealing writer killed with SIGKILL: its log verifies with its key as it was left (a torn
/// last line being the one thing a kill may leave, which a restart cuts), and after a restart
/// every acknowledged record is there and the log verifies, sealed on.
#[tokio::test]
async fn a_log_interrupted_by_sigkill_verifies() {
    let log = scratch("kill");
    let key = SigningKey::generate().unwrap();
    let dir = log.parent().unwrap().to_path_buf();
    let public = public_key_file(&dir, "public.pem", key.public_key());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env("INTEGRITY_CHILD_LOG", &log)
        .env("INTEGRITY_CHILD_KEY", key.to_pkcs8_pem().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acknowledged = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(id) = line.unwrap().strip_prefix("ACK ") {
            acknowledged.push(id.to_string());
            if acknowledged.len() == 1_500 {
                child.kill().unwrap();
                break;
            }
        }
    }
    let _ = child.wait();
    assert_eq!(acknowledged.len(), 1_500, "the child wrote too little");

    let as_left = run(&log, &["--public-key", &public]);
    if as_left.status.code() != Some(0) {
        let report = stderr(&as_left);
        assert!(
            report.contains("torn") || report.contains("log truncated"),
            "a kill can tear the last line, nothing else: {report}"
        );
    }
    // Restart: a torn tail is cut, the chain and the checkpoints go on.
    let sink = FileSink::builder(&log)
        .checkpoints(Checkpoints::new(key).every_records(50))
        .open()
        .unwrap();
    for n in 0..50 {
        sink.write(record(900_000_000 + n)).await.unwrap();
    }
    drop(sink);
    let report = assert_ok(&run(&log, &["--public-key", &public]));
    assert!(report.contains("checkpoint(s)"), "{report}");
    let text = std::fs::read_to_string(&log).unwrap();
    let written: std::collections::HashSet<&str> = text
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

/// Checkpoints copied to a Redis stream, apart from the log's disk: the copy alone lets the
/// verifier catch a log and checkpoint file truncated together with a forged head.
#[tokio::test]
async fn checkpoints_copied_to_a_redis_stream_catch_a_truncated_pair() {
    use api_policy::audit::RedisStreamSink;
    let Some(url) = common::redis_or_skip("checkpoint_copy").await else {
        return;
    };
    let backend = api_policy::backend::RedisBackend::builder(url.clone())
        .prefix(common::unique_prefix("ckpt"))
        .build()
        .unwrap();
    let copy = RedisStreamSink::new(&backend, "checkpoints");
    let log = scratch("copy");
    let dir = log.parent().unwrap().to_path_buf();
    let key = SigningKey::generate().unwrap();
    let public = public_key_file(&dir, "public.pem", key.public_key());
    let sink = FileSink::builder(&log)
        .checkpoints(
            Checkpoints::new(key.clone())
                .every_records(10)
                .copy_to(copy.clone()),
        )
        .open()
        .unwrap();
    let mut head_at_20 = String::new();
    for n in 0..30 {
        sink.write(record(n)).await.unwrap();
        if n == 19 {
            head_at_20 = std::fs::read_to_string(head_path(&log)).unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let copied = loop {
        let entries: Vec<String> = copied_checkpoints(&url, copy.stream_key()).await;
        if entries.len() == 3 {
            break entries;
        }
        assert!(Instant::now() < deadline, "copies: {entries:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(sink);
    // The copy is the checkpoint file, line for line, and its stream's own chain holds.
    let file = std::fs::read_to_string(FileSink::checkpoint_path(&log)).unwrap();
    assert_eq!(copied, file.lines().map(str::to_string).collect::<Vec<_>>());
    assert!(copy.verify().await.unwrap().is_ok());

    // A forger cuts the log and the checkpoint file back by one checkpoint, and puts back the
    // signed head of that time: the files agree with each other.
    let kept: Vec<String> = lines(&log).into_iter().take(20).collect();
    write_lines(&log, &kept);
    std::fs::write(head_path(&log), head_at_20).unwrap();
    let seals: Vec<String> = file.lines().take(2).map(str::to_string).collect();
    write_lines(&FileSink::checkpoint_path(&log), &seals);
    assert_ok(&run(&log, &["--public-key", &public]));
    // The copy kept apart does not.
    let apart = dir.join("copied.checkpoints");
    write_lines(&apart, &copied);
    let apart = apart.to_string_lossy().into_owned();
    assert_broken(
        &run(&log, &["--public-key", &public, "--checkpoints", &apart]),
        "log truncated",
    );
}

/// The checkpoint lines a stream sink holds, from its records, in stream order.
async fn copied_checkpoints(url: &str, stream: &str) -> Vec<String> {
    let mut redis = common::raw_connection(url).await;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    entries
        .into_iter()
        .filter_map(|(_, fields)| {
            let record = fields.into_iter().find(|(k, _)| k == "record")?.1;
            let record: AuditRecord = serde_json::from_str(&record).ok()?;
            Checkpoint::from_record(&record).map(|c| String::from_utf8(c.line()).unwrap())
        })
        .collect()
}

/// The demo with `--audit-signing-key`: its PHI requests land in a log sealed with checkpoints,
/// and after Ctrl-C the last records are sealed too; the verifier, given the public key, finds
/// every record sealed.
#[tokio::test]
async fn the_demo_seals_its_audit_log() {
    let dir = scratch("demo").parent().unwrap().to_path_buf();
    let key = SigningKey::generate().unwrap();
    let private = dir.join("audit-signing.pem");
    std::fs::write(&private, key.to_pkcs8_pem().unwrap()).unwrap();
    let public = public_key_file(&dir, "public.pem", key.public_key());
    let (demo, base, log) = common::start_example(
        "server",
        "/health",
        &["--audit-signing-key", &private.to_string_lossy()],
    )
    .await;
    for n in 1..=5 {
        let answer = reqwest::get(format!("{base}/api/v1/appointments/apt_{n}"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let status = demo.interrupt(Duration::from_secs(10));
    assert!(status.is_some(), "the demo did not stop on Ctrl-C");
    let report = assert_ok(&run(&log, &["--public-key", &public]));
    assert!(
        report.starts_with("OK: 5 records") && report.contains("seal 5 records, 0 unsealed"),
        "{report}"
    );
}

/// The newest rotated file is checked on opening too: a record edited there, its own hash
/// recomputed, is refused rather than written on.
#[tokio::test]
async fn the_sink_checks_the_newest_rotated_file() {
    let log = scratch("rotated");
    let sink = FileSink::builder(&log)
        .rotate_at_bytes(3_000)
        .open()
        .unwrap();
    for n in 0..12 {
        sink.write(record(n)).await.unwrap();
    }
    drop(sink);
    let files = FileSink::files(&log).unwrap();
    assert!(files.len() >= 2, "{files:?}");
    let newest_rotated = &files[files.len() - 2];
    let mut rotated = lines(newest_rotated);
    let line = parse_line(rotated[0].as_bytes()).unwrap();
    let edited = String::from_utf8(line.record.to_vec())
        .unwrap()
        .replacen("dr_who", "dr_how", 1);
    let formed = format_line(
        line.seq,
        &line.prev,
        &link(&line.prev, edited.as_bytes()),
        edited.as_bytes(),
    );
    rotated[0] = String::from_utf8(formed).unwrap().trim_end().to_string();
    write_lines(newest_rotated, &rotated);
    let refused = FileSink::builder(&log).open().unwrap_err().to_string();
    assert!(refused.contains("damaged"), "{refused}");
}

/// The head an empty log starts with is the same for every log a key signs: it vouches for no
/// record, so a log rewritten from its first record with that head and no checkpoints is not
/// sealed on the next start.
#[tokio::test]
async fn the_empty_logs_head_vouches_for_nothing() {
    let f = Fixture::new("genesis").await;
    // Another log signed with the same key, as it starts: its head file.
    let other = scratch("genesis-other");
    drop(
        FileSink::builder(&other)
            .checkpoints(Checkpoints::new(f.signing.clone()))
            .open()
            .unwrap(),
    );
    let empty_head = std::fs::read_to_string(head_path(&other)).unwrap();
    let mut forged = f.pristine[..10].to_vec();
    forged[0] = forged[0].replacen("dr_who", "dr_how", 1);
    rechain(&mut forged, 0);
    write_lines(&f.log, &forged);
    std::fs::write(FileSink::checkpoint_path(&f.log), "").unwrap();
    std::fs::write(head_path(&f.log), empty_head).unwrap();
    let refused = FileSink::builder(&f.log)
        .checkpoints(Checkpoints::new(f.signing.clone()))
        .open()
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("no head signed by a known key vouches"),
        "{refused}"
    );
}

/// After a key change, the earlier key signs nothing more: a checkpoint or head it signs after
/// its successor did is refused.
#[tokio::test]
async fn a_replaced_key_signs_nothing_after_its_successor() {
    let log = scratch("retired");
    let dir = log.parent().unwrap().to_path_buf();
    let (old, new) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    sealed_log(&log, Checkpoints::new(old.clone()), 0, 10, 10, &[]).await;
    let rotated = Checkpoints::new(new.clone()).previous_key(old.public_key().clone());
    sealed_log(&log, rotated, 10, 10, 10, &[]).await;
    let keys = [
        "--public-key".to_string(),
        public_key_file(&dir, "old.pem", old.public_key()),
        "--public-key".to_string(),
        public_key_file(&dir, "new.pem", new.public_key()),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_ok(&run(&log, &keys));
    // The old key, leaked, seals a forged record appended after the new key's checkpoints.
    let mut appended = lines(&log);
    appended.push(forged_line(
        appended.last().map(String::as_str),
        20,
        &record(666),
    ));
    write_lines(&log, &appended);
    let seals = std::fs::read_to_string(FileSink::checkpoint_path(&log)).unwrap();
    let last = parse_line(appended[20].as_bytes()).unwrap();
    let forged_seal = seal(&old, 20, last.hash, seals.lines().last().unwrap());
    std::fs::write(
        FileSink::checkpoint_path(&log),
        format!("{seals}{forged_seal}\n"),
    )
    .unwrap();
    assert_broken(&run(&log, &keys), "which a later key replaced");
}

/// A head or checkpoint file that is not a regular file (a FIFO would hang a reader) is
/// refused at once.
#[tokio::test]
async fn files_that_are_not_regular_files_are_refused() {
    let f = Fixture::new("fifo").await;
    std::fs::remove_file(head_path(&f.log)).unwrap();
    let made = Command::new("mkfifo")
        .arg(head_path(&f.log))
        .status()
        .unwrap();
    assert!(made.success());
    let started = Instant::now();
    let output = f.verify();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_broken(&output, "not a head file");
    assert!(FileSink::builder(&f.log).open().is_err());
}

/// The demo refuses to start on a log rewritten behind its head file, naming why, rather than
/// writing on and hiding it under a fresh head.
#[tokio::test]
async fn the_demo_refuses_to_start_on_a_rewritten_log() {
    let log = scratch("demo-refuses");
    {
        let sink = FileSink::builder(&log).open().unwrap();
        for n in 0..10 {
            sink.write(record(n)).await.unwrap();
        }
    }
    let mut forged = lines(&log);
    forged[3] = forged[3].replacen("dr_who", "dr_how", 1);
    rechain(&mut forged, 3);
    write_lines(&log, &forged);
    let port = common::free_port().to_string();
    let output = Command::new(common::example_binary("server"))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .arg("--audit-log")
        .arg(&log)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let why = stderr(&output);
    assert!(
        why.contains("audit.log") && why.contains("records were rewritten"),
        "{why}"
    );
}
