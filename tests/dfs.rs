//! Several hosts on a real distributed filesystem (issue 17): three FastCGI workers, each in its
//! own network namespace with its OWN mount of one shared volume as its temp and upload dirs,
//! behind one nginx upstream. On JuiceFS (redis for metadata, SeaweedFS as its object store)
//! and on GlusterFS (one brick, served inside a network namespace of its own, since it refuses
//! loopback addresses):
//! - the old lock, a `flock` on the upload's directory, is granted through a second mount while
//!   held through the first (why the lock is now a record lock on a lock file, which is not);
//! - the many-files scenario of tests/multinode.rs, every file checked through one mount;
//! - a worker SIGKILLed mid-assembly (strace kills it at a `copy_file_range`) while another node
//!   receives the client's retry;
//! - a node's mount unmounted under its running worker: its requests fail with 5xx, the client
//!   retries, the other nodes complete every upload.
//!
//! Each file byte-identical, published once, no chunk data left (completion records and lock
//! files stay until cleanup). A filesystem that cannot run here is skipped with the reason
//! printed. `RESUMABLE_STRESS=long` uploads more files.

#[allow(dead_code)]
mod cluster;
mod common;
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "e2e/servers.rs"]
mod servers;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cluster::seaweed::{self, free_port_pair, missing, tail, venv, wait_for_port, Seaweed};
use cluster::{send, start_cluster, Cluster, Dirs, CHUNK};
use common::fastcgi_client::{cgi_params, Addr};
use common::{pseudo_random, sha256_hex, Client, Upload};
use common::{Proc, Scratch};
use harness::read_lossy;

const NODES: usize = 3;

/// The GlusterFS client-side caches turned off on the test volume.
const STRICT_GLUSTER_OPTIONS: &[&str] = &[
    "performance.stat-prefetch",
    "performance.write-behind",
    "performance.quick-read",
    "performance.io-cache",
    "performance.read-ahead",
    "performance.open-behind",
    "performance.readdir-ahead",
];

fn files() -> usize {
    if std::env::var("RESUMABLE_STRESS").as_deref() == Ok("long") {
        60
    } else {
        16
    }
}

/// One shared volume and NODES mounts of it, torn down when dropped: mounts first (lazily, so
/// a busy one goes too), then the daemons.
struct Volume {
    name: &'static str,
    mounts: Vec<PathBuf>,
    /// Mount daemons (JuiceFS) and servers, stopped in this order after the unmounts.
    procs: Vec<Proc>,
    teardown: Vec<Vec<String>>,
    _seaweed: Option<Seaweed>,
    netns: Option<String>,
    dir: Scratch,
}

impl Volume {
    fn new(name: &'static str, dir: Scratch) -> Volume {
        Volume {
            name,
            mounts: Vec::new(),
            procs: Vec::new(),
            teardown: Vec::new(),
            _seaweed: None,
            netns: None,
            dir,
        }
    }

    /// The node's view: (temp, uploads) on its own mount.
    fn dirs(&self, node: usize) -> (PathBuf, PathBuf) {
        (
            self.mounts[node].join("temp"),
            self.mounts[node].join("uploads"),
        )
    }

    /// Unmounts node `node`'s mount where its worker sees it: `ip netns exec` gave the worker
    /// a mount namespace of its own (a copy of this one), then here too.
    fn unmount(&self, node: usize, worker: i32) {
        let mut inside = Command::new("nsenter");
        inside
            .arg(format!("--target={worker}"))
            .arg("--mount")
            .args(["umount", "-l"])
            .arg(&self.mounts[node]);
        let mut here = Command::new("umount");
        here.arg("-l").arg(&self.mounts[node]);
        for cmd in [&mut inside, &mut here] {
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        for m in &self.mounts {
            if is_mounted(m) {
                let _ = Command::new("umount").arg("-l").arg(m).output();
            }
        }
        for cmd in &self.teardown {
            let _ = Command::new(&cmd[0]).args(&cmd[1..]).output();
        }
        while let Some(p) = self.procs.pop() {
            drop(p);
        }
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = &self.dir;
    }
}

fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let needle = format!(" {} ", path.display());
    mounts.lines().any(|l| l.contains(&needle))
}

fn wait_mounted(path: &Path, what: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !is_mounted(path) {
        if Instant::now() > deadline {
            return Err(format!(
                "{what} never mounted {}: {}",
                path.display(),
                tail(&read_lossy(log))
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{what} failed: {}", tail(&text)))
    }
}

fn fuse_available() -> Option<String> {
    (!Path::new("/dev/fuse").exists()).then(|| "no /dev/fuse on this machine".to_string())
}

/// JuiceFS with its metadata in redis and its data in a SeaweedFS bucket, mounted NODES times.
fn juicefs() -> Result<Volume, String> {
    let juicefs = venv().join("bin/juicefs");
    if let Some(why) =
        missing(&[juicefs.clone(), PathBuf::from("/usr/bin/redis-server")]).or_else(fuse_available)
    {
        return Err(why);
    }
    let dir = Scratch::new("dfs-juicefs");
    let weed = Seaweed::start(&dir.path().join("seaweed"))?;
    weed.create_bucket("jfs");
    let mut volume = Volume::new("juicefs", dir);
    let root = volume.dir.path().to_path_buf();
    let redis_port = free_port_pair();
    let redis_log = root.join("redis.log");
    let mut redis = Command::new("redis-server");
    redis
        .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&root);
    volume
        .procs
        .push(Proc::spawn_logged("redis", &mut redis, &redis_log));
    volume._seaweed = Some(weed);
    wait_for_port(redis_port, "redis", &redis_log, Duration::from_secs(20))?;
    let meta = format!("redis://127.0.0.1:{redis_port}/1");
    let endpoint = volume._seaweed.as_ref().unwrap().endpoint();
    run(
        Command::new(&juicefs)
            .args(["format", "--storage", "s3", "--bucket"])
            .arg(format!("{endpoint}/jfs"))
            .args(["--access-key", seaweed::ACCESS_KEY])
            .args(["--secret-key", seaweed::SECRET_KEY])
            .args([&meta, "rcgi"]),
        "juicefs format",
    )?;
    for i in 0..NODES {
        let mount = root.join(format!("mount{}", i + 1));
        std::fs::create_dir_all(&mount).unwrap();
        let log = root.join(format!("juicefs{}.log", i + 1));
        let mut cmd = Command::new(&juicefs);
        cmd.args(["mount", "--no-usage-report", "--cache-dir"])
            .arg(root.join(format!("cache{}", i + 1)))
            .arg(&meta)
            .arg(&mount);
        // mounts stop before redis and SeaweedFS (procs are stopped last first)
        volume
            .procs
            .push(Proc::spawn_logged("juicefs mount", &mut cmd, &log));
        volume.mounts.push(mount.clone());
        wait_mounted(&mount, "juicefs", &log)?;
    }
    Ok(volume)
}

/// GlusterFS: glusterd and one brick inside a network namespace of their own (on an address
/// of its loopback: GlusterFS refuses 127.0.0.1 bricks), mounted NODES times from inside it.
fn glusterfs() -> Result<Volume, String> {
    let needed = [
        "/usr/sbin/glusterd",
        "/usr/sbin/gluster",
        "/sbin/mount.glusterfs",
    ];
    if let Some(why) = missing(&needed.map(PathBuf::from)).or_else(fuse_available) {
        return Err(why);
    }
    let dir = Scratch::new("dfs-glusterfs");
    let root = dir.path().to_path_buf();
    let tag = std::process::id();
    let netns = format!("rcgi-gfs-{tag}");
    let volname = format!("rcgi{tag}");
    let mut volume = Volume::new("glusterfs", dir);
    run(
        Command::new("ip").args(["netns", "add", &netns]),
        "ip netns add",
    )?;
    volume.netns = Some(netns.clone());
    let addr = "10.254.78.1";
    run(
        Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]),
        "ip link",
    )?;
    run(
        Command::new("ip").args([
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "lo",
        ]),
        "ip addr",
    )?;
    let socket = root.join("glusterd.socket");
    let workdir = root.join("glusterd");
    std::fs::create_dir_all(&workdir).unwrap();
    let vol = root.join("glusterd.vol");
    std::fs::write(
        &vol,
        format!(
            "volume management\n    type mgmt/glusterd\n    option working-directory {}\n    \
             option glusterd-sockfile {}\n    option transport-type socket\n    \
             option transport.socket.listen-port 24007\n    option ping-timeout 0\n    \
             option event-threads 1\n    option max-port 60999\nend-volume\n",
            workdir.display(),
            socket.display()
        ),
    )
    .unwrap();
    let in_ns = |program: &str| {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{netns}")).arg(program);
        cmd
    };
    let log = root.join("glusterd.log");
    let mut glusterd = in_ns("glusterd");
    glusterd
        .args(["-N", "-f"])
        .arg(&vol)
        .arg("-l")
        .arg(&log)
        .arg("-p")
        .arg(root.join("glusterd.pid"));
    volume.procs.push(Proc::spawn_logged(
        "glusterd",
        &mut glusterd,
        &root.join("glusterd.out"),
    ));
    let cli = |args: &[&str]| {
        let mut cmd = in_ns("gluster");
        cmd.arg(format!("--glusterd-sock={}", socket.display()))
            .arg("--mode=script")
            .args(args);
        cmd
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while run(&mut cli(&["volume", "list"]), "gluster volume list").is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "glusterd never answered: {}",
                tail(&read_lossy(&log))
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let brick = root.join("brick");
    std::fs::create_dir_all(&brick).unwrap();
    run(
        &mut cli(&[
            "volume",
            "create",
            &volname,
            &format!("{addr}:{}", brick.display()),
            "force",
        ]),
        "gluster volume create",
    )?;
    // The client-side caches answer stat and read from what this client saw, and write-behind
    // (with flush-behind) lets close return before the bytes reach the brick: with them one
    // node took the lock after another's append and saw the staging file at its old size, so
    // an upload was never completed (1 run in 3). Shared files need them off (README, "What the
    // operator must provide").
    for option in STRICT_GLUSTER_OPTIONS {
        run(
            &mut cli(&["volume", "set", &volname, option, "off"]),
            "gluster volume set",
        )?;
    }
    run(
        &mut cli(&["volume", "start", &volname]),
        "gluster volume start",
    )?;
    let stop: Vec<String> = {
        let c = cli(&["volume", "stop", &volname, "force"]);
        std::iter::once(c.get_program().to_string_lossy().into_owned())
            .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    };
    volume.teardown.push(stop);
    for i in 0..NODES {
        let mount = root.join(format!("mount{}", i + 1));
        std::fs::create_dir_all(&mount).unwrap();
        volume.mounts.push(mount.clone());
        // A chunked upload's staging file grows in place, appended by whichever node holds the
        // lock, and becomes the published file: every node must see its size as of its last
        // close when it opens it. GlusterFS's FUSE client keeps attributes for a second by
        // default, so a node that saw the file small reads it short (README, "What the
        // operator must provide").
        run(
            in_ns("mount")
                .args(["-t", "glusterfs", "-o", "attribute-timeout=0"])
                .arg(format!("{addr}:/{volname}"))
                .arg(&mount),
            "mount -t glusterfs",
        )?;
        wait_mounted(&mount, "glusterfs", &log)?;
    }
    Ok(volume)
}

#[test]
fn juicefs_three_nodes_each_on_its_own_mount() {
    exercise("juicefs", juicefs);
}

#[test]
fn glusterfs_three_nodes_each_on_its_own_mount() {
    exercise("glusterfs", glusterfs);
}

fn exercise(name: &str, setup: fn() -> Result<Volume, String>) {
    // one filesystem at a time: each is several daemons, and two clusters at once on two cores
    // would only slow both
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: geteuid has no preconditions
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("dfs: SKIPPED {name}: mounting and network namespaces need root");
        return;
    }
    let t = Instant::now();
    let volume = match setup() {
        Ok(v) => v,
        Err(why) => {
            eprintln!("dfs: SKIPPED {name}: {why}");
            return;
        }
    };
    eprintln!(
        "dfs: {}: volume up, {NODES} mounts, in {} ms",
        volume.name,
        t.elapsed().as_millis()
    );
    let (temp, uploads) = volume.dirs(0);
    for d in [&temp, &uploads] {
        std::fs::create_dir_all(d).unwrap();
        std::os::unix::fs::chown(d, Some(33), Some(33)).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    directory_flock_is_not_shared_but_the_record_lock_is(&volume);

    let dirs = (0..NODES).map(|i| volume.dirs(i)).collect();
    let mut cluster = start_cluster(&format!("dfs-{name}"), NODES, Dirs::PerNode(dirs));
    let t = Instant::now();
    cluster::race_many_files(
        &cluster,
        &format!("{name}-race"),
        files(),
        0xd15c_2026,
        (&temp, &uploads),
    );
    eprintln!("dfs: {name}: many files in {} ms", t.elapsed().as_millis());
    cluster::lock_held_here_stops_every_node(&cluster, name, (&temp, &uploads));
    killed_mid_assembly_then_another_node_completes(&mut cluster, &volume);
    a_node_loses_its_mount_and_the_others_complete(&cluster, &volume);
}

/// Through mount 1 the test holds what earlier builds locked (a `flock` on an upload's
/// directory) and what this one locks (a record lock on the lock file in it); through mount 2
/// it tries both. Within one mount both exclude (so this check can tell).
fn directory_flock_is_not_shared_but_the_record_lock_is(volume: &Volume) {
    let name = volume.name;
    let upload = volume.dirs(0).0.join("flock-probe");
    std::fs::create_dir_all(&upload).unwrap();
    let through = |node: usize| volume.dirs(node).0.join("flock-probe");
    let held = std::fs::File::open(through(0)).unwrap();
    held.lock().unwrap();
    let same_mount = std::fs::File::open(through(0)).unwrap();
    assert!(
        same_mount.try_lock().is_err(),
        "{name}: flock is not even local"
    );
    let other_mount = std::fs::File::open(through(1)).unwrap();
    let granted = other_mount.try_lock().is_ok();
    eprintln!(
        "dfs: {name}: a directory flock held through mount 1 is {} through mount 2",
        if granted { "GRANTED" } else { "refused" }
    );
    assert!(
        granted,
        "{name}: the directory flock now excludes across mounts"
    );
    drop((held, same_mount, other_mount));

    let record = common::record_lock(&through(0), false).expect("record lock");
    assert!(
        common::record_lock(&through(1), false).is_none(),
        "{name}: a record lock held through mount 1 was granted through mount 2"
    );
    drop(record);
    // a FUSE release is sent without waiting for it: the unlock reaches the server soon after
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::record_lock(&through(1), false).is_none() {
        assert!(
            Instant::now() < deadline,
            "{name}: the record lock was never released"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("dfs: {name}: the record lock on the lock file excludes across mounts");
    std::fs::remove_dir_all(&upload).unwrap();
}

/// Node 1's worker is restarted under strace, which SIGKILLs it at its first
/// `copy_file_range` (appending the last part to the staging file the other chunks' requests
/// filled); the client's retry of that chunk goes through nginx to a live node, which completes
/// the upload from the staging file and the part on the shared volumes.
fn killed_mid_assembly_then_another_node_completes(cluster: &mut Cluster, volume: &Volume) {
    let name = volume.name;
    if !Path::new("/usr/bin/strace").exists() {
        eprintln!("dfs: {name}: SKIPPED the kill mid-assembly: no strace");
        return;
    }
    let (temp, uploads) = volume.dirs(0);
    let victim = cluster.worker_pids[0];
    let worker = cluster
        .stack
        .procs
        .iter()
        .find(|p| p.pid == victim)
        .unwrap();
    worker.kill();
    wait_dead(victim);
    cluster.start_worker(
        0,
        &[
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=copy_file_range",
            "-e",
            "inject=copy_file_range:signal=SIGKILL:when=1",
        ],
    );
    let u = Upload::new(
        Client::ResumableOctet,
        &format!("{name}-killed.bin"),
        pseudo_random((6 * CHUNK + 777) as usize, 77),
        CHUNK,
    );
    let (origin, url) = (cluster.stack.origin(), cluster.stack.url.clone());
    // every chunk but the one before the last straight to node 2 (which appends them as they
    // come; the last waits as a part), that one to node 1, which writes it into the staging
    // file and dies appending the last part after it
    let node = |i: usize| Addr::Tcp(cluster.worker_addr(i).parse().unwrap());
    let count = u.chunk_count();
    for k in (1..=count).filter(|&k| k != count - 1) {
        let answer = node(1).connect().send(&u.chunk_request(k), false);
        assert_eq!(answer.status, 200, "{name}: chunk {k}: {:?}", answer.json());
    }
    let completing = u.chunk_request(count - 1);
    let mut conn = node(0).connect();
    let answer = conn.request(1, false, &cgi_params(&completing, &[]), &completing.body);
    assert!(
        answer.is_err() || answer.as_ref().unwrap().response().status != 200,
        "{name}: node 1 answered the completing chunk instead of dying: {:?}",
        answer.map(|r| r.response().body)
    );
    wait_dead(cluster.worker_pids[0]);
    assert!(
        !uploads.join(&u.filename).exists(),
        "{name}: published although killed mid-assembly"
    );
    // the client retries; nginx passes over the dead node
    let (status, body) = send(&origin, &url, &completing);
    assert_eq!(status, 200, "{name}: retry: {body}");
    assert!(body.contains("\"complete\":true"), "{name}: {body}");
    let data = std::fs::read(uploads.join(&u.filename)).unwrap();
    assert_eq!(sha256_hex(&data), u.sha256(), "{name}: killed upload bytes");
    let copies: Vec<String> = common::published_files(&uploads)
        .into_iter()
        .filter(|p| p.starts_with(&format!("{name}-killed")))
        .collect();
    assert_eq!(copies, vec![u.filename.clone()]);
    cluster::assert_clean(&temp, &uploads, std::slice::from_ref(&u));
    let completed_by: Vec<usize> = cluster
        .logs()
        .iter()
        .enumerate()
        .filter(|(_, log)| log.contains(&format!("completed \"{}\"", u.filename)))
        .map(|(i, _)| i + 1)
        .collect();
    eprintln!(
        "dfs: {name}: node 1 SIGKILLed mid-assembly; node {completed_by:?} completed the retry"
    );
    assert_eq!(completed_by.len(), 1);
    assert_ne!(completed_by[0], 1);
    cluster.start_worker(0, &[]);
}

fn wait_dead(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while common::process::alive(pid) {
        assert!(Instant::now() < deadline, "worker {pid} is still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Node 3's mount is unmounted under its running worker. The client sends every chunk through
/// nginx and retries a 5xx (as resumable.js does for a 503, and any client can): node 3 answers
/// 5xx, the others store and complete every file.
fn a_node_loses_its_mount_and_the_others_complete(cluster: &Cluster, volume: &Volume) {
    let name = volume.name;
    let (temp, uploads) = volume.dirs(0);
    volume.unmount(2, cluster.worker_pids[2]);
    let (origin, url) = (cluster.stack.origin(), cluster.stack.url.clone());
    // Files of whole chunks: a node that refuses a larger body (the last chunk of a file can be
    // up to twice the chunk size) before reading it can leave nginx and the worker waiting on
    // each other until the worker's 120 s I/O timeout, which is a matter of the FastCGI
    // transport, not of the filesystem this test is about.
    let files: Vec<Upload> = (0..6u64)
        .map(|i| {
            Upload::new(
                Client::ResumableOctet,
                &format!("{name}-unmounted-{i}.bin"),
                pseudo_random(((5 + i) * CHUNK) as usize, 900 + i),
                CHUNK,
            )
        })
        .collect();
    let mut failed = 0;
    for u in &files {
        for k in 1..=u.chunk_count() {
            let mut attempts = 0;
            loop {
                // a node that answers 500 before reading a large body may have nginx reset the
                // connection: no answer at all, which a client retries like a 5xx
                let request = u.chunk_request(k);
                let t = Instant::now();
                let sent = std::panic::catch_unwind(|| send(&origin, &url, &request));
                let (status, body) = sent.unwrap_or_else(|_| {
                    eprintln!(
                        "dfs: {name}: chunk {k} of {} ({} bytes) got no answer after {} ms; node 3: {}; nginx: {}",
                        u.filename,
                        request.body.len(),
                        t.elapsed().as_millis(),
                        tail(&cluster.logs()[2]),
                        tail(&read_lossy(&cluster.stack.error_log))
                    );
                    (0, "no answer".into())
                });
                if status == 200 {
                    break;
                }
                assert!(status >= 500 || status == 0, "{name}: {status} {body}");
                failed += 1;
                attempts += 1;
                assert!(
                    attempts < 6,
                    "{name}: chunk {k} of {} kept failing",
                    u.filename
                );
            }
        }
        let data = std::fs::read(uploads.join(&u.filename)).unwrap();
        assert_eq!(sha256_hex(&data), u.sha256(), "{name}: {}", u.filename);
    }
    cluster::assert_clean(&temp, &uploads, &files);
    let node3 = &cluster.logs()[2];
    eprintln!(
        "dfs: {name}: node 3's mount gone: {failed} requests answered 5xx, every file completed by the others"
    );
    assert!(failed > 0, "{name}: node 3 was never asked");
    assert!(node3.contains("-> 500"), "{}", tail(node3));
}
