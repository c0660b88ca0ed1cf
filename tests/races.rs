//! Many uploads at once across many CGI processes sharing one temp dir: hundreds of chunks in
//! random order with duplicates, then the last chunks of every file released at the same
//! instant. Every file must come out byte-identical, published exactly once, assembled by
//! exactly one request, with no leftover part, temp file or staging file, and every answer 200.

mod common;
mod reliability;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use common::dialects::{ChunkedFile, Dialect};
use common::*;
use reliability::*;
use serde_json::Value;

/// Concurrent CGI processes in the shuffled phase (2 cores: mostly waiting on each other).
const WORKERS: usize = 12;

struct Answer {
    file: usize,
    number: u64,
    response: TestResponse,
}

fn uploads_for_round(round: u64, rng: &mut Rng) -> Vec<Box<dyn Chunked>> {
    let mut uploads: Vec<Box<dyn Chunked>> = Vec::new();
    for i in 0..10u64 {
        let client = ALL_CLIENTS[(i % ALL_CLIENTS.len() as u64) as usize];
        let chunk = 512 + 256 * rng.below(3);
        let chunks = 20 + rng.below(20);
        let size = chunks * chunk + rng.below(chunk);
        let name = format!("r{round}-file{i}.bin");
        let mut upload = Upload::new(
            client,
            &name,
            pseudo_random(size as usize, round * 100 + i),
            chunk,
        );
        upload.force_chunk_size = i % 3 == 0;
        uploads.push(Box::new(upload));
    }
    // Clients whose chunks are counted (Dropzone) or sized per part (Fine Uploader).
    for (i, dialect) in [
        Dialect::Dropzone,
        Dialect::Dropzone,
        Dialect::FineUploader,
        Dialect::FineUploaderOctet,
    ]
    .into_iter()
    .enumerate()
    {
        let chunk = 512 + 256 * rng.below(3);
        let size = (20 + rng.below(20)) * chunk + 1 + rng.below(chunk);
        let data = pseudo_random(size as usize, round * 100 + 20 + i as u64);
        let name = format!("r{round}-{dialect:?}-{i}.bin");
        uploads.push(Box::new(ChunkedFile::new(dialect, &name, data, chunk)));
    }
    // Two users with the same default identifier and file name: separate uploads.
    for (i, user) in ["alice", "bob"].into_iter().enumerate() {
        let mut upload = Upload::new(
            Client::Flow,
            &format!("r{round}-shared.bin"),
            pseudo_random(30 * 512 + 7, round * 100 + 50 + i as u64),
            512,
        );
        upload.identifier = format!("same-{round}");
        upload.remote_user = Some(user.into());
        uploads.push(Box::new(upload));
    }
    uploads
}

/// One CGI process for `request`, killed by PID if it outlives the test's patience.
fn run_cgi(cgi: &Cgi, request: &TestRequest, barrier: Option<&Barrier>) -> TestResponse {
    let mut child = Proc::spawn("resumable-cgi", &mut cgi.command(request)).kill_on_drop();
    if let Some(barrier) = barrier {
        barrier.wait();
    }
    let mut stdin = child.child().stdin.take().expect("stdin");
    let body = request.body.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let (status, stdout, stderr) = child.finish(Duration::from_secs(60));
    let _ = writer.join();
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(0), "exit status; {stderr}");
    TestResponse::from_cgi(&stdout)
}

/// Sends request number `i` (with an optional barrier to release it together with others) to
/// one of several endpoints sharing one temp and upload dir.
type Sender<'a> = &'a (dyn Fn(usize, &TestRequest, Option<&Barrier>) -> TestResponse + Sync);

fn round(cgi: &Cgi, round: u64) -> usize {
    let send =
        |_: usize, request: &TestRequest, barrier: Option<&Barrier>| run_cgi(cgi, request, barrier);
    round_on(&send, &cgi.dirs.temp, &cgi.dirs.uploads, round)
}

fn round_on(send: Sender, temp: &Path, uploads_dir: &Path, round: u64) -> usize {
    let mut rng = Rng::new(round + 7);
    let uploads = uploads_for_round(round, &mut rng);
    // Held back per file: three random chunk numbers plus duplicates, released together.
    let mut bulk: Vec<(usize, u64)> = Vec::new();
    let mut tails: Vec<(usize, u64)> = Vec::new();
    for (file, upload) in uploads.iter().enumerate() {
        let mut numbers: Vec<u64> = (1..=upload.chunk_count()).collect();
        rng.shuffle(&mut numbers);
        let (tail, rest) = numbers.split_at(3);
        for &n in tail {
            tails.push((file, n));
        }
        tails.push((file, tail[0]));
        tails.push((file, tail[2]));
        for &n in rest {
            bulk.push((file, n));
            if rng.below(6) == 0 {
                bulk.push((file, n));
            }
        }
    }
    rng.shuffle(&mut bulk);
    let requests = bulk.len() + tails.len();

    let answers = Mutex::new(Vec::<Answer>::new());
    let queue = Mutex::new(bulk.into_iter().enumerate().collect::<Vec<_>>());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let Some((i, (file, number))) = queue.lock().unwrap().pop() else {
                    return;
                };
                let response = send(i, &uploads[file].chunk_request(number), None);
                answers.lock().unwrap().push(Answer {
                    file,
                    number,
                    response,
                });
            });
        }
    });
    // Every file's last chunks, in as many processes, released by one barrier.
    let barrier = Arc::new(Barrier::new(tails.len()));
    std::thread::scope(|scope| {
        for (i, &(file, number)) in tails.iter().enumerate() {
            let (barrier, answers, uploads) = (barrier.clone(), &answers, &uploads);
            scope.spawn(move || {
                let response = send(i, &uploads[file].chunk_request(number), Some(&barrier));
                answers.lock().unwrap().push(Answer {
                    file,
                    number,
                    response,
                });
            });
        }
    });

    let answers = answers.into_inner().unwrap();
    assert_eq!(answers.len(), requests);
    let mut completed_now: BTreeMap<usize, usize> = BTreeMap::new();
    let mut names: BTreeMap<usize, String> = BTreeMap::new();
    for answer in &answers {
        let json = answer.response.json();
        assert_eq!(
            answer.response.status, 200,
            "round {round} file {} chunk {}: {json}",
            answer.file, answer.number
        );
        if json["completedNow"] == Value::Bool(true) {
            *completed_now.entry(answer.file).or_default() += 1;
        }
        if json["complete"] == Value::Bool(true) {
            let file = json["file"].as_str().expect("file").to_string();
            let previous = names.entry(answer.file).or_insert_with(|| file.clone());
            assert_eq!(*previous, file, "every answer names the same file");
        }
    }
    for (file, upload) in uploads.iter().enumerate() {
        assert_eq!(
            completed_now.get(&file),
            Some(&1),
            "round {round}: {} assembled exactly once",
            upload.filename()
        );
        let name = &names[&file];
        let stored = std::fs::read(uploads_dir.join(name)).expect("published");
        assert_eq!(sha256_hex(&stored), upload.sha256(), "{name}");
    }
    // Exactly the expected set of published files: one per upload, the two users' same-named
    // files as `x.bin` and `x (1).bin`.
    let mut expected: Vec<String> = names.values().cloned().collect();
    expected.sort();
    let mut published: Vec<String> = published_files(uploads_dir)
        .into_iter()
        .filter(|f| f.starts_with(&format!("r{round}-")))
        .collect();
    published.sort();
    assert_eq!(published, expected, "round {round}");
    assert!(expected.contains(&format!("r{round}-shared.bin")));
    assert!(expected.contains(&format!("r{round}-shared (1).bin")));
    assert_clean(temp, uploads_dir, &format!("round {round}"));
    requests
}

#[test]
fn hundreds_of_chunks_in_random_order_across_many_processes() {
    let cgi = Cgi::new();
    let rounds = trials(3);
    let mut total = 0;
    for r in 0..rounds as u64 {
        total += round(&cgi, r);
    }
    eprintln!("{rounds} rounds, {total} CGI requests, 16 files per round");
}

/// The same rounds across three FastCGI worker processes (4 threads each) and CGI processes,
/// all on one temp and upload dir: requests go round-robin to the four, so the chunks of one
/// file and its racing last chunks land in different processes.
#[test]
fn the_same_across_fastcgi_worker_processes_and_cgi_sharing_the_dirs() {
    use common::fastcgi_client::{Addr, Worker};
    let cgi = Cgi::new();
    let workers: Vec<Worker> = (0..3)
        .map(|_| {
            let dirs = Dirs::sharing(&cgi.dirs);
            let mut command = std::process::Command::new(binary());
            let addr = Addr::free_tcp();
            command
                .arg("fastcgi")
                .arg("--listen")
                .arg(addr.listen_arg())
                .args(["--workers", "4"]);
            Worker::launch(command, dirs, addr, &[])
        })
        .collect();
    let send = |i: usize, request: &TestRequest, barrier: Option<&Barrier>| match i
        % (workers.len() + 1)
    {
        0 => run_cgi(&cgi, request, barrier),
        n => {
            let mut conn = workers[n - 1].connect();
            if let Some(barrier) = barrier {
                barrier.wait();
            }
            conn.send(request, false)
        }
    };
    let rounds = trials(2);
    let mut total = 0;
    for r in 0..rounds as u64 {
        total += round_on(&send, &cgi.dirs.temp, &cgi.dirs.uploads, 100 + r);
    }
    for worker in &workers {
        worker.assert_no_panic();
    }
    eprintln!("{rounds} rounds, {total} requests over 3 FastCGI processes and CGI");
}

/// Plupload sends a file's chunks in order, but a retried chunk can race its first attempt:
/// every chunk of four files sent three times at once, in as many processes, chunk after
/// chunk. Each file is assembled exactly once, from its own bytes, and nothing is left over.
#[test]
fn plupload_retries_racing_in_separate_processes() {
    let cgi = Cgi::new();
    for round in 0..trials(2) as u64 {
        let files: Vec<ChunkedFile> = (0..4u64)
            .map(|i| {
                let dialect = [Dialect::Plupload, Dialect::PluploadOctet][i as usize % 2];
                let size = 6 * 700 + 1 + 97 * i as usize;
                let data = pseudo_random(size, round * 10 + i);
                ChunkedFile::new(dialect, &format!("p{round}-{i}.bin"), data, 700)
            })
            .collect();
        let copies = 3;
        let mut completed_now = vec![0; files.len()];
        for index in 0..files[0].count() {
            let barrier = Arc::new(Barrier::new(files.len() * copies));
            let answers: Vec<(usize, TestResponse)> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..files.len() * copies)
                    .map(|n| {
                        let (barrier, cgi, files) = (barrier.clone(), &cgi, &files);
                        let file = n % files.len();
                        scope.spawn(move || {
                            let request = files[file].request(index);
                            (file, run_cgi(cgi, &request, Some(&barrier)))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (file, response) in answers {
                let json = response.json();
                assert_eq!(response.status, 200, "chunk {index} of file {file}: {json}");
                if json["completedNow"] == Value::Bool(true) {
                    completed_now[file] += 1;
                }
            }
        }
        assert_eq!(completed_now, vec![1; files.len()], "each assembled once");
        for file in &files {
            let stored = std::fs::read(cgi.dirs.uploads.join(&file.name)).expect("published");
            assert_eq!(sha256_hex(&stored), sha256_hex(&file.data), "{}", file.name);
        }
    }
    assert_clean(&cgi.dirs.temp, &cgi.dirs.uploads, "plupload races");
    assert_eq!(published_files(&cgi.dirs.uploads).len(), 4 * trials(2));
}
