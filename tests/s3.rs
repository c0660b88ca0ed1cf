//! Publishing finished files to S3 (RESUMABLE_PUBLISH_URL), against a real SeaweedFS S3 gateway
//! on 127.0.0.1 with credentials configured (tests/cluster/seaweed.rs), the object store
//! inspected with boto3:
//! - a small file (one PUT) and a multipart one: the answer names the object, its bytes are
//!   the file's, the local copy goes (or stays with RESUMABLE_KEEP_LOCAL=1);
//! - a key that exists already: the file becomes `name (1).ext`, the other object untouched;
//! - the store unreachable: 503 with Retry-After, the file kept; the retry publishes it;
//! - the CGI process SIGKILLed in the middle of the multipart upload (strace kills it as it
//!   connects to send the second part): the retry aborts the unfinished upload and publishes once; no
//!   multipart upload is left;
//! - two FastCGI workers on one pair of dirs, each through its own S3 gateway over one filer,
//!   the chunks of every upload spread over both and the last ones sent to both at once:
//!   every object written once, no `(1)` copies.
//!
//! Skipped, with the reason printed, where SeaweedFS is not installed.

#[allow(dead_code)]
mod cluster;
mod common;
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "e2e/servers.rs"]
mod servers;

use std::path::Path;
use std::process::{Command, Stdio};

use cluster::seaweed::{Seaweed, ACCESS_KEY, SECRET_KEY};
use common::fastcgi_client::Worker;
use common::{binary, pseudo_random, Cgi, Client, Endpoint, TestRequest, TestResponse, Upload};

const BUCKET: &str = "uploads";
const PREFIX: &str = "incoming";
const MIB: usize = 1 << 20;

fn publishing_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("RESUMABLE_PUBLISH_URL", format!("s3://{BUCKET}/{PREFIX}")),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ]
}

fn publishing_cgi(endpoint: &str) -> Cgi {
    publishing_env(endpoint)
        .into_iter()
        .fold(Cgi::new(), |cgi, (name, value)| cgi.with_env(name, &value))
}

/// Sends every chunk in order; answers the last answer.
fn upload_all(endpoint: &dyn Endpoint, u: &Upload) -> TestResponse {
    let mut last = None;
    for k in 1..=u.chunk_count() {
        let answer = endpoint.send(&u.chunk_request(k));
        if k < u.chunk_count() {
            assert_eq!(answer.status, 200, "chunk {k}: {:?}", answer.json());
        }
        last = Some(answer);
    }
    last.unwrap()
}

/// (size, sha256) of an object, or `None` when there is none.
fn object(weed: &Seaweed, key: &str) -> Option<(u64, String)> {
    let out = weed
        .boto3(&format!(
            "import hashlib\ntry:\n    body = s3.get_object(Bucket='{BUCKET}', Key={key:?})['Body'].read()\n    \
             print(len(body), hashlib.sha256(body).hexdigest())\n\
             except s3.exceptions.NoSuchKey:\n    print('none')"
        ))
        .unwrap();
    let mut words = out.split_whitespace();
    match (words.next(), words.next()) {
        (Some(size), Some(sha)) => Some((size.parse().unwrap(), sha.to_string())),
        _ => None,
    }
}

fn keys(weed: &Seaweed) -> Vec<String> {
    let out = weed
        .boto3(&format!(
            "r = s3.list_objects_v2(Bucket='{BUCKET}', Prefix='{PREFIX}/')\n\
             print(json.dumps([o['Key'] for o in r.get('Contents', [])]))"
        ))
        .unwrap();
    let mut keys: Vec<String> = serde_json::from_str(out.trim()).unwrap();
    keys.sort();
    keys
}

/// Keys of the multipart uploads begun and neither completed nor aborted.
fn unfinished(weed: &Seaweed) -> Vec<String> {
    let out = weed
        .boto3(&format!(
            "r = s3.list_multipart_uploads(Bucket='{BUCKET}')\n\
             print(json.dumps([u['Key'] for u in r.get('Uploads', [])]))"
        ))
        .unwrap();
    serde_json::from_str(out.trim()).unwrap()
}

fn assert_published(weed: &Seaweed, answer: &TestResponse, u: &Upload, key: &str) {
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(answer.json()["complete"], true);
    assert_eq!(answer.json()["object"], key, "{:?}", answer.json());
    assert_eq!(
        object(weed, key),
        Some((u.data.len() as u64, u.sha256())),
        "the object {key}"
    );
}

#[test]
fn s3_publishing_against_a_real_seaweedfs() {
    let dir = common::Scratch::new("s3");
    let mut weed = match Seaweed::start(&dir.path().join("seaweed")) {
        Ok(weed) => weed,
        Err(why) => {
            eprintln!("s3: SKIPPED: {why}");
            return;
        }
    };
    weed.create_bucket(BUCKET);
    let endpoint = weed.endpoint();
    small_and_multipart_files_are_published(&weed, &endpoint);
    an_existing_key_is_never_replaced(&weed, &endpoint);
    two_sites_racing_for_one_key_both_keep_their_file(&weed, &endpoint);
    an_unreachable_store_answers_503_and_the_retry_publishes(&weed, &endpoint);
    a_process_killed_mid_multipart_leaves_nothing_behind(&weed, &endpoint);
    let second = weed.start_gateway().expect("a second S3 gateway");
    racing_workers_through_two_gateways_publish_once(&weed, &endpoint, &second);
    assert!(unfinished(&weed).is_empty(), "{:?}", unfinished(&weed));
}

fn small_and_multipart_files_are_published(weed: &Seaweed, endpoint: &str) {
    let cgi = publishing_cgi(endpoint);
    let small = Upload::new(
        Client::Resumable,
        "small.txt",
        pseudo_random(300_000, 1),
        64 << 10,
    );
    let answer = upload_all(&cgi, &small);
    assert_published(weed, &answer, &small, "incoming/small.txt");
    assert!(
        common::published_files(&cgi.dirs.uploads).is_empty(),
        "the local copy stays: {:?}",
        common::published_files(&cgi.dirs.uploads)
    );
    // later requests for it answer the same object, and write nothing
    let again = cgi.send(&small.chunk_request(1));
    assert_eq!(again.json()["object"], "incoming/small.txt");
    assert_eq!(
        cgi.send(&small.test_request(2)).json()["object"],
        "incoming/small.txt"
    );
    cluster::assert_clean(
        &cgi.dirs.temp,
        &cgi.dirs.uploads,
        std::slice::from_ref(&small),
    );

    let keep = publishing_cgi(endpoint).with_env("RESUMABLE_KEEP_LOCAL", "1");
    let big = Upload::new(
        Client::ResumableOctet,
        "folder/big.bin",
        pseudo_random(12 * MIB + 12345, 2),
        MIB as u64,
    );
    let answer = upload_all(&keep, &big);
    assert_published(weed, &answer, &big, "incoming/folder/big.bin");
    let local = std::fs::read(keep.dirs.uploads.join("folder/big.bin")).unwrap();
    assert_eq!(common::sha256_hex(&local), big.sha256(), "kept locally");
    eprintln!(
        "s3: a 300000-byte file (one PUT) and a {}-byte file (multipart) published",
        big.data.len()
    );
}

fn an_existing_key_is_never_replaced(weed: &Seaweed, endpoint: &str) {
    weed.boto3(&format!(
        "s3.put_object(Bucket='{BUCKET}', Key='{PREFIX}/clash.bin', Body=b'somebody else')"
    ))
    .unwrap();
    let cgi = publishing_cgi(endpoint);
    let u = Upload::new(
        Client::Flow,
        "clash.bin",
        pseudo_random(6 * MIB, 3),
        MIB as u64,
    );
    let answer = upload_all(&cgi, &u);
    assert_published(weed, &answer, &u, "incoming/clash (1).bin");
    assert_eq!(
        object(weed, "incoming/clash.bin").map(|(size, _)| size),
        Some(13),
        "the existing object was replaced"
    );
    eprintln!("s3: an existing key kept; the file became incoming/clash (1).bin");
}

/// Two different uploads (two sites, each with its own directories) of one file name, over one
/// bucket, completed at the same instant: both look for a free key before writing, so both may
/// find `same.bin` free; `If-None-Match: *` lets only one create it, and the other becomes
/// `same (1).bin`. Nothing is overwritten, whichever way the race goes.
fn two_sites_racing_for_one_key_both_keep_their_file(weed: &Seaweed, endpoint: &str) {
    let sites = [publishing_cgi(endpoint), publishing_cgi(endpoint)];
    let files: Vec<Upload> = (0..2)
        .map(|i| {
            Upload::new(
                Client::ResumableOctet,
                "same.bin",
                pseudo_random(6 * MIB + i, 40 + i as u64),
                MIB as u64,
            )
        })
        .collect();
    for (site, u) in sites.iter().zip(&files) {
        for k in 1..u.chunk_count() {
            assert_eq!(site.send(&u.chunk_request(k)).status, 200);
        }
    }
    let barrier = std::sync::Barrier::new(2);
    let runs: Vec<common::CgiRun> = std::thread::scope(|scope| {
        let handles: Vec<_> = sites
            .iter()
            .zip(&files)
            .map(|(site, u)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let last = u.chunk_request(u.chunk_count());
                    barrier.wait();
                    site.run(&last)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let lost_at_completion = runs
        .iter()
        .any(|run| run.stderr.contains("was created by someone else meanwhile"));
    let mut got: Vec<String> = Vec::new();
    for (answer, u) in runs.iter().map(|run| &run.response).zip(&files) {
        let key = answer.json()["object"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_published(weed, answer, u, &key);
        got.push(key);
    }
    got.sort();
    assert_eq!(got, ["incoming/same (1).bin", "incoming/same.bin"]);
    eprintln!(
        "s3: two sites raced for incoming/same.bin: one got it, the other same (1).bin ({})",
        if lost_at_completion {
            "both found the key free; If-None-Match refused the second"
        } else {
            "the second saw the key taken before writing"
        }
    );
}

fn an_unreachable_store_answers_503_and_the_retry_publishes(weed: &Seaweed, endpoint: &str) {
    // a port nothing listens on
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = publishing_cgi(&dead);
    let u = Upload::new(
        Client::ResumableOctet,
        "later.bin",
        pseudo_random(7 * MIB, 4),
        MIB as u64,
    );
    let answer = upload_all(&down, &u);
    assert_eq!(answer.status, 503, "{:?}", answer.json());
    assert!(answer.header("Retry-After").is_some());
    let local = std::fs::read(down.dirs.uploads.join("later.bin")).unwrap();
    assert_eq!(common::sha256_hex(&local), u.sha256(), "the file is kept");
    // a test request while it is still down says so too
    assert_eq!(down.send(&u.test_request(u.chunk_count())).status, 503);
    // the store is back: the client's retry publishes it
    let up = Cgi {
        dirs: down.dirs,
        env: publishing_cgi(endpoint).env,
    };
    let answer = up.send(&u.chunk_request(u.chunk_count()));
    assert_published(weed, &answer, &u, "incoming/later.bin");
    assert!(!up.dirs.uploads.join("later.bin").exists());
    cluster::assert_clean(&up.dirs.temp, &up.dirs.uploads, std::slice::from_ref(&u));
    eprintln!("s3: store unreachable -> 503 + Retry-After, file kept; the retry published it");
}

fn a_process_killed_mid_multipart_leaves_nothing_behind(weed: &Seaweed, endpoint: &str) {
    if !Path::new("/usr/bin/strace").exists() {
        eprintln!("s3: SKIPPED the kill mid-multipart: no strace");
        return;
    }
    let cgi = publishing_cgi(endpoint);
    let u = Upload::new(
        Client::ResumableOctet,
        "killed.bin",
        pseudo_random(12 * MIB + 99, 5),
        MIB as u64,
    );
    for k in 1..u.chunk_count() {
        assert_eq!(cgi.send(&u.chunk_request(k)).status, 200);
    }
    // the completing request: killed as it connects to send the second part, after the upload
    // began and its first part was sent (one connection per request: the HEAD looking for the
    // key, CreateMultipartUpload, part 1, part 2)
    let last = u.chunk_request(u.chunk_count());
    let status = killed_before_second_part(&cgi, &last);
    assert_eq!(status.signal(), Some(9), "not killed: {status:?}");
    assert_eq!(unfinished(weed), vec!["incoming/killed.bin".to_string()]);
    assert_eq!(object(weed, "incoming/killed.bin"), None);
    let answer = cgi.send(&last);
    assert_published(weed, &answer, &u, "incoming/killed.bin");
    assert!(unfinished(weed).is_empty(), "{:?}", unfinished(weed));
    assert_eq!(
        keys(weed).iter().filter(|k| k.contains("killed")).count(),
        1
    );
    cluster::assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, std::slice::from_ref(&u));
    eprintln!(
        "s3: SIGKILL mid-multipart: the retry aborted the unfinished upload and published once"
    );
}

trait Signal {
    fn signal(&self) -> Option<i32>;
}
impl Signal for std::process::ExitStatus {
    fn signal(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(self)
    }
}

fn killed_before_second_part(cgi: &Cgi, request: &TestRequest) -> std::process::ExitStatus {
    let base = cgi.command(request);
    let mut command = Command::new("/usr/bin/strace");
    command
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=connect"])
        .args(["-e", "inject=connect:signal=SIGKILL:when=4"])
        .arg(binary())
        .env_clear()
        .current_dir(cgi.dirs.root.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in base.get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    let mut child = command.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&request.body);
    }
    let status = child.wait().unwrap();
    // strace reports the tracee's death as its own
    status
}

fn racing_workers_through_two_gateways_publish_once(weed: &Seaweed, first: &str, second: &str) {
    let env_of = |endpoint: &str| -> Vec<(String, String)> {
        publishing_env(endpoint)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    };
    let one_env = env_of(first);
    let one_pairs: Vec<(&str, &str)> = one_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let one = Worker::start(false, &["--workers", "8"], &one_pairs);
    let mut two_env = env_of(second);
    two_env.push((
        "RESUMABLE_TEMP_DIR".into(),
        one.dirs.temp.display().to_string(),
    ));
    two_env.push((
        "RESUMABLE_UPLOAD_DIR".into(),
        one.dirs.uploads.display().to_string(),
    ));
    let two_pairs: Vec<(&str, &str)> = two_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let two = Worker::start(false, &["--workers", "8"], &two_pairs);
    let workers = [&one, &two];
    let files: Vec<Upload> = (0..6)
        .map(|i| {
            Upload::new(
                Client::ResumableOctet,
                &format!("race-{i}.bin"),
                pseudo_random(MIB + i * 1000, 100 + i as u64),
                256 << 10,
            )
        })
        .collect();
    // every chunk but the last, alternating between the nodes
    for u in &files {
        for k in 1..u.chunk_count() {
            let answer = workers[k as usize % 2]
                .connect()
                .send(&u.chunk_request(k), false);
            assert_eq!(answer.status, 200, "{:?}", answer.json());
        }
    }
    // the last chunk of every file to both nodes at the same instant
    let barrier = std::sync::Barrier::new(files.len() * 2);
    let answers: Vec<(usize, TestResponse)> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .enumerate()
            .flat_map(|(f, u)| workers.iter().map(move |w| (f, u, *w)))
            .map(|(f, u, w)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let request = u.chunk_request(u.chunk_count());
                    let mut conn = w.connect();
                    barrier.wait();
                    (f, conn.send(&request, false))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (f, answer) in &answers {
        let key = format!("incoming/{}", files[*f].filename);
        assert_published(weed, answer, &files[*f], &key);
    }
    let race_keys: Vec<String> = keys(weed)
        .into_iter()
        .filter(|k| k.contains("race-"))
        .collect();
    let mut expected: Vec<String> = files
        .iter()
        .map(|u| format!("incoming/{}", u.filename))
        .collect();
    expected.sort();
    assert_eq!(race_keys, expected, "each file once, no (1) copies");
    let logs = format!("{}{}", one.stderr(), two.stderr());
    for u in &files {
        assert_eq!(
            logs.matches(&format!("published {:?}", u.filename)).count(),
            1,
            "{} published once: {logs}",
            u.filename
        );
    }
    one.assert_no_panic();
    two.assert_no_panic();
    cluster::assert_clean(&one.dirs.temp, &one.dirs.uploads, &files);
    eprintln!(
        "s3: {} files, last chunks raced on two workers through two gateways: each object written once",
        files.len()
    );
}
