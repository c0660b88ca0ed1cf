//! Several nodes behind one nginx upstream, for tests/multinode.rs and tests/dfs.rs: FastCGI
//! workers, each in its own network namespace (`ip netns add`, a veth pair to this namespace
//! with addresses from a private test subnet, 10.213.x.0/24, created here and only used here),
//! and the many-files scenario (chunks shuffled with duplicates across the nodes, the last
//! chunks of every file released at the same instant) with its checks.
//!
//! Namespaces, veths and processes are removed in Drop guards, by name and PID, also when an
//! assertion fails.

pub mod seaweed;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use super::common::Proc;
use super::common::{self, pseudo_random, sha256_hex, Client, TestRequest, Upload};
use super::harness::{self, read_lossy};
use super::servers::Stack;

pub const CHUNK: u64 = 64 << 10;
/// Client threads sending at once (nginx spreads each request to the next node).
const CLIENTS: usize = 12;
/// How many final chunks of every file are held back and then sent all at the same instant (the
/// very last one twice): 3 x files requests at once, 2 connections each in nginx, which fits the
/// frame's 2 x 256 worker_connections even if one nginx worker accepts them all.
const RACING_LAST: u64 = 2;

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"))
}

pub fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One network namespace with a veth pair to this one; removed by name when dropped.
pub struct Node {
    pub netns: String,
    veth_host: String,
    /// The worker's address inside the namespace.
    pub addr: String,
}

impl Node {
    fn create(subnet: u8) -> Node {
        // unique in this process too: two clusters of one test binary never share a name
        static SEQ: AtomicUsize = AtomicUsize::new(1);
        let index = SEQ.fetch_add(1, Ordering::SeqCst);
        let tag = std::process::id() % 100_000;
        let node = Node {
            netns: format!("rcgi-mn-{tag}-{index}"),
            veth_host: format!("rmn{tag}h{index}"),
            addr: format!("10.213.{subnet}.2"),
        };
        let veth_ns = format!("rmn{tag}n{index}");
        // the guard exists before the first command, so a failure half-way is cleaned up too
        ip_ok(&["netns", "add", &node.netns]);
        ip_ok(&[
            "link",
            "add",
            &node.veth_host,
            "type",
            "veth",
            "peer",
            "name",
            &veth_ns,
        ]);
        ip_ok(&["link", "set", &veth_ns, "netns", &node.netns]);
        let host_addr = format!("10.213.{subnet}.1/24");
        ip_ok(&["addr", "add", &host_addr, "dev", &node.veth_host]);
        ip_ok(&["link", "set", &node.veth_host, "up"]);
        let ns_addr = format!("{}/24", node.addr);
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", node.netns.as_str(), "ip"];
            all.extend_from_slice(args);
            ip_ok(&all);
        };
        exec(&["addr", "add", &ns_addr, "dev", &veth_ns]);
        exec(&["link", "set", &veth_ns, "up"]);
        exec(&["link", "set", "lo", "up"]);
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // deleting one end of a veth pair deletes both; the namespace goes by name
        let _ = ip(&["link", "del", &self.veth_host]);
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

/// Subnet numbers x (10.213.x.0/24) that no interface here uses yet, one per node.
fn free_subnets(count: usize) -> Vec<u8> {
    let used = String::from_utf8_lossy(&ip(&["-4", "addr"]).stdout).into_owned();
    let start = (std::process::id() % 80) as usize * 3;
    let mut out = Vec::new();
    for k in 0..240usize {
        let x = ((start + k) % 240 + 1) as u8;
        if !used.contains(&format!("10.213.{x}.")) {
            out.push(x);
            if out.len() == count {
                return out;
            }
        }
    }
    panic!("no free 10.213.x.0/24 subnets");
}

/// Where the workers find their temp and upload dirs.
pub enum Dirs {
    /// All the same, from nginx's `fastcgi_param`s (the shipped site).
    FromNginx,
    /// Each node its own (temp, upload) pair, from its environment: each node's own mount of a
    /// shared filesystem.
    PerNode(Vec<(PathBuf, PathBuf)>),
}

/// Everything of one run; fields drop in order: nginx and the workers stop (by PID) before their
/// namespaces and veths are deleted.
pub struct Cluster {
    pub stack: Stack,
    pub worker_logs: Vec<PathBuf>,
    pub worker_pids: Vec<i32>,
    pub nodes: Vec<Node>,
    dirs: Dirs,
    earlier_logs: Vec<String>,
}

pub fn start_cluster(name: &str, count: usize, dirs: Dirs) -> Cluster {
    let mut nodes = Vec::new();
    for subnet in free_subnets(count) {
        nodes.push(Node::create(subnet));
    }
    let stack = Stack::nginx(name);
    let mut cluster = Cluster {
        stack,
        worker_logs: Vec::new(),
        worker_pids: Vec::new(),
        nodes,
        dirs,
        earlier_logs: vec![String::new(); count],
    };
    for i in 0..count {
        let log = cluster
            .stack
            .dir
            .path()
            .join(format!("logs/node{}.log", i + 1));
        cluster.worker_logs.push(log);
        cluster.worker_pids.push(0);
        cluster.start_worker(i, &[]);
    }
    let upstream: String = cluster
        .nodes
        .iter()
        .map(|n| format!("    server {}:9000;\n", n.addr))
        .collect();
    let stack = &mut cluster.stack;
    stack.install_http_conf(
        "nodes",
        &format!("upstream resumable_nodes {{\n{upstream}}}\n"),
    );
    // the shipped site, pointed at the upstream instead of one socket
    let mut site = harness::render("nginx/fastcgi.conf", &stack.vars());
    let pass = format!("fastcgi_pass unix:{};", stack.socket().display());
    assert!(site.contains(&pass), "deploy/nginx/fastcgi.conf changed");
    site = site.replace(&pass, "fastcgi_pass resumable_nodes;");
    if let Dirs::PerNode(_) = cluster.dirs {
        // each worker keeps the dirs of its own mount
        site = site
            .lines()
            .filter(|l| !l.contains("RESUMABLE_TEMP_DIR") && !l.contains("RESUMABLE_UPLOAD_DIR"))
            .collect::<Vec<_>>()
            .join("\n");
    }
    stack.install_site(&site);
    stack.start_nginx();
    cluster
}

impl Cluster {
    /// Starts (or restarts) node `index`'s worker, its command prefixed by `wrapper` (strace),
    /// and waits until it listens.
    pub fn start_worker(&mut self, index: usize, wrapper: &[&str]) {
        let node = &self.nodes[index];
        let log = &self.worker_logs[index];
        // `ip netns exec` execs in place (same PID); setpriv drops to www-data and execs too
        let listen = format!("{}:9000", node.addr);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &node.netns])
            .args(wrapper)
            .args(["setpriv", "--reuid=33", "--regid=33", "--clear-groups"])
            .arg(&self.stack.bin)
            .args(["fastcgi", "--listen", &listen, "--workers", "4"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("RESUMABLE_LOG", "info");
        if let Dirs::PerNode(dirs) = &self.dirs {
            cmd.env("RESUMABLE_TEMP_DIR", &dirs[index].0)
                .env("RESUMABLE_UPLOAD_DIR", &dirs[index].1);
        }
        // a restarted worker's log follows the first one's in `logs`
        self.earlier_logs[index].push_str(&read_lossy(log));
        let p = Proc::spawn_logged(&format!("resumable-cgi node {}", index + 1), &mut cmd, log);
        self.worker_pids[index] = p.pid;
        self.stack.procs.insert(0, p);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect((node.addr.as_str(), 9000)).is_err() {
            assert!(
                Instant::now() < deadline,
                "node {} never listened: {}",
                node.netns,
                read_lossy(log)
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The FastCGI address of node `index`, for a request that must reach that node.
    pub fn worker_addr(&self, index: usize) -> String {
        format!("{}:9000", self.nodes[index].addr)
    }

    /// Every log line of every node so far (of its restarted workers too).
    pub fn logs(&self) -> Vec<String> {
        self.worker_logs
            .iter()
            .zip(&self.earlier_logs)
            .map(|(log, earlier)| format!("{earlier}{}", read_lossy(log)))
            .collect()
    }
}

pub fn net_ns_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .display()
        .to_string()
}

/// Sends one request through nginx: (status, body).
pub fn send(origin: &str, url: &str, req: &TestRequest) -> (u16, String) {
    let path = if req.query.is_empty() {
        url.to_string()
    } else {
        format!("{url}?{}", req.query)
    };
    let content_type = req
        .content_type
        .as_deref()
        .unwrap_or("application/octet-stream");
    let headers: &[(&str, &str)] = if req.method == "GET" {
        &[]
    } else {
        &[("Content-Type", content_type)]
    };
    let answer = super::common::http::request(
        origin,
        &req.method,
        &path,
        headers,
        &[&req.body],
        std::time::Duration::from_secs(120),
    );
    (
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

/// xorshift for the shuffles: deterministic, so a failing order can be replayed.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// `files` uploads of 4..12 chunks (the last one longer), named `<tag>-NN.bin`.
pub fn make_uploads(tag: &str, files: usize, rng: &mut Rng) -> Vec<Upload> {
    (0..files)
        .map(|i| {
            let chunks = 4 + rng.next() % 9;
            let size = (chunks * CHUNK + rng.next() % CHUNK) as usize;
            let client = if i % 2 == 0 {
                Client::Resumable
            } else {
                Client::ResumableOctet
            };
            Upload::new(
                client,
                &format!("{tag}-{i:02}.bin"),
                pseudo_random(size, rng.next()),
                CHUNK,
            )
        })
        .collect()
}

/// The many-files scenario through nginx: every chunk but the last RACING_LAST of each file,
/// plus a duplicate of every fourth, shuffled and sent CLIENTS at a time; then the last chunks
/// of every file (the final one twice) released at the same instant. Then checks, through the
/// dirs `temp` and `uploads` (one node's view): every file byte-identical under its own name,
/// the one request that assembled it says so, each node's log names it completed once in all,
/// every node stored chunks, nothing left but completion records and lock files.
pub fn race_many_files(
    cluster: &Cluster,
    tag: &str,
    files: usize,
    seed: u64,
    view: (&Path, &Path),
) {
    let (temp, uploads_dir) = view;
    let s = &cluster.stack;
    let mut rng = Rng(seed);
    let uploads = make_uploads(tag, files, &mut rng);
    let mut early: Vec<(usize, u64)> = Vec::new();
    let mut racing: Vec<(usize, u64)> = Vec::new();
    for (f, u) in uploads.iter().enumerate() {
        let n = u.chunk_count();
        for k in 1..=n {
            if k > n - RACING_LAST {
                racing.push((f, k));
                if k == n {
                    // a duplicate of the final chunk races it on another node
                    racing.push((f, k));
                }
            } else {
                early.push((f, k));
                if k % 4 == 0 {
                    early.push((f, k));
                }
            }
        }
    }
    rng.shuffle(&mut early);
    rng.shuffle(&mut racing);
    let total_requests = early.len() + racing.len();
    let origin = s.origin();
    let url = s.url.clone();
    let failures = Mutex::new(Vec::new());
    let completions = Mutex::new(BTreeMap::<usize, usize>::new());
    // the one request that assembled the file says completedNow:true
    let completed_now = Mutex::new(BTreeMap::<usize, usize>::new());
    let before: Vec<String> = cluster.logs();

    let t = Instant::now();
    // phase 1: CLIENTS threads take chunks off one shuffled queue
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(f, k)) = early.get(i) else { break };
                let (status, body) = send(&origin, &url, &uploads[f].chunk_request(k));
                if status != 200 || body.contains("\"complete\":true") {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("early {f}/{k}: {status} {body}"));
                }
            });
        }
    });
    // phase 2: the last chunks of every file, all released at the same instant
    let barrier = Barrier::new(racing.len());
    std::thread::scope(|scope| {
        for &(f, k) in &racing {
            let (barrier, uploads, failures, completions, completed_now) =
                (&barrier, &uploads, &failures, &completions, &completed_now);
            let (origin, url) = (&origin, &url);
            scope.spawn(move || {
                let req = uploads[f].chunk_request(k);
                barrier.wait();
                let (status, body) = send(origin, url, &req);
                if status != 200 {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("racing {f}/{k}: {status} {body}"));
                }
                if body.contains("\"complete\":true") {
                    *completions.lock().unwrap().entry(f).or_default() += 1;
                }
                if body.contains("\"completedNow\":true") {
                    *completed_now.lock().unwrap().entry(f).or_default() += 1;
                }
            });
        }
    });
    let upload_time = t.elapsed();
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");

    // every file: byte-identical under its own name, exactly once; nothing else of this run
    for u in &uploads {
        let data = std::fs::read(uploads_dir.join(&u.filename)).unwrap();
        assert_eq!(sha256_hex(&data), u.sha256(), "{}", u.filename);
        // and every test request for it now answers "present"
        assert_eq!(send(&origin, &url, &u.test_request(1)).0, 200);
    }
    let mut expected: Vec<String> = uploads.iter().map(|u| u.filename.clone()).collect();
    expected.sort();
    let published: Vec<String> = common::published_files(uploads_dir)
        .into_iter()
        .filter(|p| p.starts_with(&format!("{tag}-")))
        .collect();
    assert_eq!(published, expected);
    assert_clean(temp, uploads_dir, &uploads);

    // from the workers' own logs (only what this scenario added): every node stored chunks;
    // each file assembled once in all
    let mut per_node = Vec::new();
    let mut assembled = BTreeMap::<String, usize>::new();
    let mut assembled_by_node = Vec::new();
    for (text, earlier) in cluster.logs().iter().zip(&before) {
        let text = text.get(earlier.len()..).unwrap_or(text);
        assert!(!text.contains("panicked"), "{text}");
        // chunk requests this node answered 200 (a duplicate of a stored chunk is "stored" too)
        let stored = text
            .lines()
            .filter(|l| l.contains("] POST ") && l.ends_with("-> 200"))
            .count();
        let mut done = 0;
        for l in text.lines() {
            if let Some(rest) = l.split("] completed \"").nth(1) {
                let name = rest.split('"').next().unwrap().to_string();
                *assembled.entry(name).or_default() += 1;
                done += 1;
            }
        }
        per_node.push(stored);
        assembled_by_node.push(done);
    }
    for u in &uploads {
        assert_eq!(
            assembled.get(&u.filename),
            Some(&1),
            "{} assembled {:?} times",
            u.filename,
            assembled.get(&u.filename)
        );
    }
    let completions = completions.into_inner().unwrap();
    let completed_now = completed_now.into_inner().unwrap();
    eprintln!(
        "{tag}: {files} files, {total_requests} chunk requests ({} of them the racing last {RACING_LAST} per file) through nginx round-robin to {} nodes in {} ms",
        racing.len(),
        cluster.nodes.len(),
        upload_time.as_millis(),
    );
    for (i, (stored, done)) in per_node.iter().zip(&assembled_by_node).enumerate() {
        eprintln!(
            "{tag}: node {} ({}): {stored} chunk requests answered 200, {done} files assembled",
            i + 1,
            cluster.nodes[i].addr
        );
    }
    eprintln!(
        "{tag}: racing last chunks answered complete:true {} times for {files} files; completedNow:true once per file",
        completions.values().sum::<usize>()
    );
    for (f, u) in uploads.iter().enumerate() {
        assert_eq!(completed_now.get(&f), Some(&1), "{}", u.filename);
    }
    for (i, stored) in per_node.iter().enumerate() {
        assert!(*stored > 0, "node {} served no chunk", i + 1);
    }
    assert_eq!(assembled_by_node.iter().sum::<usize>(), files);
}

/// For each of `uploads`: only its completion record and the lock file left in its temp
/// folder, and nothing at all in the staging folder.
pub fn assert_clean(temp: &Path, uploads_dir: &Path, uploads: &[Upload]) {
    let mut records = BTreeSet::new();
    for u in uploads {
        for (path, kind) in common::snapshot(&temp.join(&u.identifier)) {
            assert!(
                kind == "dir" || common::kept_after_completion(&path),
                "left in the temp dir: {}/{path}",
                u.identifier
            );
            if path.ends_with(".complete") {
                records.insert(u.identifier.clone());
            }
        }
    }
    assert_eq!(records.len(), uploads.len(), "one completion record each");
    let staging = common::snapshot(&uploads_dir.join(".resumable-staging"));
    assert!(staging.is_empty(), "staging: {staging:?}");
}

/// The exclusion itself: this test (in the root network namespace, through the `view` dirs: one
/// node's mount) takes the exclusive record lock on an upload's lock file, the lock the workers
/// take. Chunks for that upload sent through nginx to the nodes are written but wait,
/// unanswered, until it is released; then they finish and exactly one of them assembles the
/// file. A build whose lock does not reach across mounts answers while it is held.
pub fn lock_held_here_stops_every_node(cluster: &Cluster, tag: &str, view: (&Path, &Path)) {
    let (temp, uploads) = view;
    let s = &cluster.stack;
    let (origin, url) = (s.origin(), s.url.clone());
    let u = Upload::new(
        Client::ResumableOctet,
        &format!("{tag}-locked.bin"),
        pseudo_random((7 * CHUNK) as usize, 4242),
        CHUNK,
    );
    assert_eq!(send(&origin, &url, &u.chunk_request(1)).0, 200);
    let before = cluster.logs();
    let dir = temp.join(&u.identifier);
    let lock = common::record_lock(&dir, true).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let held = Duration::from_millis(2000);
    std::thread::scope(|scope| {
        for k in 2..=u.chunk_count() {
            let (tx, origin, url, u) = (tx.clone(), &origin, &url, &u);
            scope.spawn(move || {
                let answer = send(origin, url, &u.chunk_request(k));
                let _ = tx.send((k, answer, Instant::now()));
            });
        }
        std::thread::sleep(held);
        if let Ok((k, (status, body), _)) = rx.try_recv() {
            panic!("{tag}: a node answered chunk {k} ({status} {body}) while this process held the upload's lock");
        }
        // their bodies are in (temporary chunks), the rename waits for the lock; chunk 2, which
        // continues the staging file, waits for it before its body (to write it straight in)
        let waiting = common::snapshot(&dir)
            .keys()
            .filter(|p| p.ends_with(".tmp"))
            .count()
            + 1;
        let released = Instant::now();
        drop(lock);
        let mut now = 0;
        for _ in 2..=u.chunk_count() {
            let (k, (status, body), at) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(status, 200, "chunk {k}: {body}");
            now += usize::from(body.contains("\"completedNow\":true"));
            eprintln!(
                "{tag}: lock held here for {} ms: chunk {k} waited, answered {} ms after the release",
                held.as_millis(),
                (at - released).as_millis()
            );
        }
        eprintln!(
            "{tag}: {waiting} chunks were waiting for the lock (temporary chunks, and chunk 2)"
        );
        assert_eq!(waiting as u64, u.chunk_count() - 1);
        assert_eq!(now, 1);
    });
    let data = std::fs::read(uploads.join(&u.filename)).unwrap();
    assert_eq!(sha256_hex(&data), u.sha256());
    // the waiting chunks were spread over the nodes (their own mounts, on a shared filesystem)
    let needle = format!("of {:?}", u.filename);
    let nodes = cluster
        .logs()
        .iter()
        .zip(&before)
        .filter(|(log, earlier)| log.get(earlier.len()..).unwrap_or(log).contains(&needle))
        .count();
    eprintln!("{tag}: {nodes} nodes had chunks waiting");
    assert!(
        nodes >= 2,
        "{tag}: only {nodes} node received the held upload's chunks"
    );
}
