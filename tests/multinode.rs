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
use std::time::Instant;

use cluster::{net_ns_of, start_cluster, Dirs};

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
    cluster::lock_held_here_stops_every_node(&cluster, "node", (&s.temp_dir, &s.upload_dir));
}
