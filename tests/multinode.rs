//! Shared directory, several nodes (issue 6): three FastCGI workers, each in its own network
//! namespace (`ip netns add`, a veth pair to this namespace with addresses from a private test
//! subnet, 10.213.x.0/24, created here and only used here), behind one nginx upstream
//! (round-robin) on 127.0.0.1, all on the same temp and upload dirs. Many uploads whose chunks
//! are spread across the nodes in random order, with duplicates, many requests at once, and the
//! last chunks of every file sent at the same instant: each file completes exactly once,
//! byte-identical, with nothing left over, and every node served chunks.
//!
//! What this proves and what it does not (several hosts on NFS or CephFS) is written in the
//! README's "Several nodes on one directory" note. Namespaces, veths and processes are removed in
//! Drop guards, by name and PID, also when an assertion fails.

mod common;
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "e2e/servers.rs"]
mod servers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use common::http;
use common::process::Proc;
use common::{pseudo_random, sha256_hex, Client, TestRequest, Upload};
use harness::{read_lossy, wait_for_listener};
use servers::Stack;

const NODES: usize = 3;
const FILES: usize = 40;
const CHUNK: u64 = 64 << 10;
/// Client threads sending at once (nginx spreads each request to the next node).
const CLIENTS: usize = 12;
/// How many final chunks of every file are held back and then sent all at the same instant (the
/// very last one twice): 3 x FILES requests at once, 2 connections each in nginx, which fits the
/// frame's 2 x 256 worker_connections even if one nginx worker accepts them all.
const RACING_LAST: u64 = 2;

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"))
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One network namespace with a veth pair to this one; removed by name when dropped.
struct Node {
    netns: String,
    veth_host: String,
    /// The worker's address inside the namespace.
    addr: String,
}

impl Node {
    fn create(index: usize, subnet: u8) -> Node {
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

/// A subnet number x (10.213.x.0/24) that no interface here uses yet, one per node.
fn free_subnets() -> Vec<u8> {
    let used = String::from_utf8_lossy(&ip(&["-4", "addr"]).stdout).into_owned();
    let start = (std::process::id() % 80) as usize * 3;
    let mut out = Vec::new();
    for k in 0..240usize {
        let x = ((start + k) % 240 + 1) as u8;
        if !used.contains(&format!("10.213.{x}.")) {
            out.push(x);
            if out.len() == NODES {
                return out;
            }
        }
    }
    panic!("no free 10.213.x.0/24 subnets");
}

/// Everything of one run; fields drop in order: nginx and the workers stop (by PID) before their
/// namespaces and veths are deleted.
struct Cluster {
    stack: Stack,
    worker_logs: Vec<PathBuf>,
    worker_pids: Vec<i32>,
    nodes: Vec<Node>,
}

fn start_cluster() -> Cluster {
    let mut nodes = Vec::new();
    for (i, subnet) in free_subnets().into_iter().enumerate() {
        nodes.push(Node::create(i + 1, subnet));
    }
    let mut stack = Stack::nginx("multinode");
    let mut worker_logs = Vec::new();
    let mut worker_pids = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let log = stack.dir.path().join(format!("logs/node{}.log", i + 1));
        // `ip netns exec` execs in place (same PID); setpriv drops to www-data and execs too
        let listen = format!("{}:9000", node.addr);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &node.netns])
            .args(["setpriv", "--reuid=33", "--regid=33", "--clear-groups"])
            .arg(&stack.bin)
            .args(["fastcgi", "--listen", &listen, "--workers", "4"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("RESUMABLE_LOG", "info");
        let p = Proc::spawn_logged(&format!("resumable-cgi node {}", i + 1), &mut cmd, &log);
        worker_pids.push(p.pid);
        stack.procs.insert(0, p);
        worker_logs.push(log);
    }
    // each listens inside its own namespace, reachable over its veth from here
    for (node, log) in nodes.iter().zip(&worker_logs) {
        wait_for_listener(&format!("{}:9000", node.addr), &node.netns, log);
    }
    let upstream: String = nodes
        .iter()
        .map(|n| format!("    server {}:9000;\n", n.addr))
        .collect();
    stack.install_http_conf(
        "nodes",
        &format!("upstream resumable_nodes {{\n{upstream}}}\n"),
    );
    // the shipped site, pointed at the upstream instead of one socket
    let site = harness::render("nginx/fastcgi.conf", &stack.vars());
    let pass = format!("fastcgi_pass unix:{};", stack.socket().display());
    assert!(site.contains(&pass), "deploy/nginx/fastcgi.conf changed");
    stack.install_site(&site.replace(&pass, "fastcgi_pass resumable_nodes;"));
    stack.start_nginx();
    Cluster {
        stack,
        worker_logs,
        worker_pids,
        nodes,
    }
}

fn net_ns_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .display()
        .to_string()
}

/// Sends one request through nginx: (status, body).
fn send(origin: &str, url: &str, req: &TestRequest) -> (u16, String) {
    // a test GET is answered at once; a chunk may wait for its upload's lock
    let timeout = if req.method == "GET" {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(120)
    };
    let answer = http::send(origin, url, req, timeout);
    (
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

/// xorshift for the shuffles: deterministic, so a failing order can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
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

#[test]
fn three_nodes_in_network_namespaces_share_one_directory() {
    let t0 = Instant::now();
    let cluster = start_cluster();
    let setup = t0.elapsed();
    let s = &cluster.stack;
    // three workers, three network namespaces, none of them this test's
    let ours = net_ns_of(std::process::id() as i32);
    let theirs: BTreeSet<String> = cluster.worker_pids.iter().map(|&p| net_ns_of(p)).collect();
    assert_eq!(theirs.len(), NODES, "{theirs:?}");
    assert!(!theirs.contains(&ours));

    let mut rng = Rng(0x5eed_2026);
    let uploads: Vec<Upload> = (0..FILES)
        .map(|i| {
            let chunks = 4 + rng.next() % 9; // 4..12 chunks, the last one longer
            let size = (chunks * CHUNK + rng.next() % CHUNK) as usize;
            let client = if i % 2 == 0 {
                Client::Resumable
            } else {
                Client::ResumableOctet
            };
            Upload::new(
                client,
                &format!("node-file-{i:02}.bin"),
                pseudo_random(size, 1000 + i as u64),
                CHUNK,
            )
        })
        .collect();
    // every chunk but the last RACING_LAST of each file, plus a duplicate of every fourth, shuffled
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

    // every file: byte-identical under its own name, exactly once; nothing else published
    for u in &uploads {
        let data = std::fs::read(s.upload_dir.join(&u.filename)).unwrap();
        assert_eq!(sha256_hex(&data), u.sha256(), "{}", u.filename);
        // and every test request for it now answers "present"
        assert_eq!(send(&origin, &url, &u.test_request(1)).0, 200);
    }
    let mut expected: Vec<String> = uploads.iter().map(|u| u.filename.clone()).collect();
    expected.sort();
    assert_eq!(common::published_files(&s.upload_dir), expected);
    // no leftovers: only each upload's completion record in the temp dir, an empty staging dir
    let temp = common::snapshot(&s.temp_dir);
    let stray: Vec<&String> = temp
        .iter()
        .filter(|(p, kind)| *kind != "dir" && !p.ends_with(".complete"))
        .map(|(p, _)| p)
        .collect();
    assert!(stray.is_empty(), "left in the temp dir: {stray:?}");
    assert_eq!(
        temp.keys().filter(|p| p.ends_with(".complete")).count(),
        FILES
    );
    let staging = common::snapshot(&s.upload_dir.join(".resumable-staging"));
    assert!(staging.is_empty(), "staging: {staging:?}");

    // from the workers' own logs: every node stored chunks; each file assembled once in all
    let mut per_node = Vec::new();
    let mut assembled = BTreeMap::<String, usize>::new();
    let mut assembled_by_node = Vec::new();
    for log in &cluster.worker_logs {
        let text = read_lossy(log);
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
        "multinode: {FILES} files, {total_requests} chunk requests ({} of them the racing last {RACING_LAST} per file) through nginx round-robin to {NODES} nodes in {} ms (setup {} ms)",
        racing.len(),
        upload_time.as_millis(),
        setup.as_millis()
    );
    for (i, (stored, done)) in per_node.iter().zip(&assembled_by_node).enumerate() {
        eprintln!(
            "multinode: node {} ({}): {stored} chunk requests answered 200, {done} files assembled",
            i + 1,
            cluster.nodes[i].addr
        );
    }
    eprintln!(
        "multinode: racing last chunks answered complete:true {} times for {FILES} files; completedNow:true once per file",
        completions.values().sum::<usize>()
    );
    for (f, u) in uploads.iter().enumerate() {
        assert_eq!(completed_now.get(&f), Some(&1), "{}", u.filename);
    }
    for (i, stored) in per_node.iter().enumerate() {
        assert!(*stored > 0, "node {} served no chunk", i + 1);
    }
    assert_eq!(assembled_by_node.iter().sum::<usize>(), FILES);

    lock_held_here_stops_every_node(&cluster);
}

/// The exclusion itself: this test (in the root network namespace) takes the exclusive flock on
/// an upload's temp directory, the object the workers lock. Chunks for that upload sent through
/// nginx to the nodes are written but wait, unanswered, until it is released; then they finish
/// and exactly one of them assembles the file.
fn lock_held_here_stops_every_node(cluster: &Cluster) {
    let s = &cluster.stack;
    let (origin, url) = (s.origin(), s.url.clone());
    let u = Upload::new(
        Client::ResumableOctet,
        "locked.bin",
        pseudo_random((4 * CHUNK) as usize, 4242),
        CHUNK,
    );
    assert_eq!(send(&origin, &url, &u.chunk_request(1)).0, 200);
    let dir = s.temp_dir.join(&u.identifier);
    let lock = std::fs::File::open(&dir).unwrap();
    lock.lock().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let held = Duration::from_millis(1500);
    std::thread::scope(|scope| {
        for k in 2..=u.chunk_count() {
            let (tx, origin, url, u) = (tx.clone(), &origin, &url, &u);
            scope.spawn(move || {
                let answer = send(origin, url, &u.chunk_request(k));
                let _ = tx.send((k, answer, Instant::now()));
            });
        }
        std::thread::sleep(held);
        assert!(
            rx.try_recv().is_err(),
            "a node answered while this process held the upload's lock"
        );
        // their bodies are in (temporary chunks), the rename waits for the lock
        let waiting = common::snapshot(&dir)
            .keys()
            .filter(|p| p.ends_with(".tmp"))
            .count();
        let released = Instant::now();
        lock.unlock().unwrap();
        let mut now = 0;
        for _ in 2..=u.chunk_count() {
            let (k, (status, body), at) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
            assert_eq!(status, 200, "chunk {k}: {body}");
            now += usize::from(body.contains("\"completedNow\":true"));
            eprintln!(
                "multinode: lock held here for {} ms: chunk {k} waited, answered {} ms after the release",
                held.as_millis(),
                (at - released).as_millis()
            );
        }
        eprintln!("multinode: {waiting} temporary chunks were waiting for the lock");
        assert_eq!(waiting as u64, u.chunk_count() - 1);
        assert_eq!(now, 1);
    });
    let data = std::fs::read(s.upload_dir.join(&u.filename)).unwrap();
    assert_eq!(sha256_hex(&data), u.sha256());
}
