//! Shared directory, several nodes (issue 6): three FastCGI workers, each in its own network
//! namespace, behind one nginx upstream (round-robin) on 127.0.0.1, all on the same temp and
//! upload dirs (tests/cluster has the nodes and the scenario). Many uploads whose chunks are
//! spread across the nodes in random order, with duplicates, many requests at once, and the
//! last chunks of every file sent at the same instant: each file completes exactly once,
//! byte-identical, with nothing left over, and every node served chunks. tests/dfs.rs runs the
//! same with each node on its own mount of a distributed filesystem.
//!
//! What this proves and what it does not is written in the README's "Several hosts" section.

#[allow(dead_code)]
mod cluster;
mod common;
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "e2e/servers.rs"]
mod servers;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster::{net_ns_of, send, start_cluster, Cluster, Dirs, CHUNK};
use common::{pseudo_random, sha256_hex, Client, Upload};

const NODES: usize = 3;
const FILES: usize = 40;

#[test]
fn three_nodes_in_network_namespaces_share_one_directory() {
    let t0 = Instant::now();
    let cluster = start_cluster("multinode", NODES, Dirs::FromNginx);
    eprintln!("multinode: setup {} ms", t0.elapsed().as_millis());
    // three workers, three network namespaces, none of them this test's
    let ours = net_ns_of(std::process::id() as i32);
    let theirs: BTreeSet<String> = cluster.worker_pids.iter().map(|&p| net_ns_of(p)).collect();
    assert_eq!(theirs.len(), NODES, "{theirs:?}");
    assert!(!theirs.contains(&ours));
    let s = &cluster.stack;
    cluster::race_many_files(
        &cluster,
        "node-file",
        FILES,
        0x5eed_2026,
        (&s.temp_dir, &s.upload_dir),
    );
    lock_held_here_stops_every_node(&cluster);
}

/// The exclusion itself: this test (in the root network namespace) takes the exclusive record
/// lock on an upload's lock file, the lock the workers take. Chunks for that upload sent through
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
    let lock = common::record_lock(&dir, true).unwrap();
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
        drop(lock);
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
