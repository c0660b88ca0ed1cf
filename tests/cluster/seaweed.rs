//! A real SeaweedFS (master, volume server, filer and S3 gateway in one `weed server` process)
//! on 127.0.0.1 ports of its own, from the PyPI wheel scripts/install-test-deps puts in a venv;
//! plus boto3 from the same venv to look into the S3 store. Stopped by PID when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::super::common::Proc;
use super::super::harness::read_lossy;

/// The credentials the gateway is configured with.
pub const ACCESS_KEY: &str = "rcgi-test-key";
pub const SECRET_KEY: &str = "rcgi-test-secret";

/// The venv with `weed`, `juicefs` and boto3 (scripts/install-test-deps).
pub fn venv() -> PathBuf {
    std::env::var_os("RESUMABLE_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/resumable-test-venv"))
}

/// Why a tool cannot be used here, or `None` when it can.
pub fn missing(paths: &[PathBuf]) -> Option<String> {
    paths.iter().find(|p| !p.exists()).map(|p| {
        format!(
            "{} is not installed (run ./scripts/install-test-deps)",
            p.display()
        )
    })
}

/// A port p free on 127.0.0.1 with p + 10000 free too (SeaweedFS serves gRPC there).
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair");
}

pub fn wait_for_port(port: u16, what: &str, log: &Path, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "{what} never listened on {port}: {}",
                tail(&read_lossy(log))
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

pub struct Seaweed {
    /// Extra S3 gateways first, so they stop before the server.
    pub gateways: Vec<Proc>,
    server: Proc,
    pub s3_port: u16,
    pub filer_port: u16,
    dir: PathBuf,
}

impl Seaweed {
    /// Starts the server with the test credentials in `dir`; Err says why it cannot run.
    pub fn start(dir: &Path) -> Result<Seaweed, String> {
        let weed = venv().join("bin/weed");
        if let Some(why) = missing(&[weed.clone(), venv().join("bin/python")]) {
            return Err(why);
        }
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"tester","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let (master, volume, filer, s3) = (
            free_port_pair(),
            free_port_pair(),
            free_port_pair(),
            free_port_pair(),
        );
        let log = dir.join("weed.log");
        let mut cmd = Command::new(&weed);
        cmd.args(["server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", dir.join("data").display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg("-filer")
            .arg(format!("-filer.port={filer}"))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=0"])
            .args(["-volume.preStopSeconds=0", "-master.telemetry=false"])
            .arg("-master.electionTimeout=1s")
            .arg(format!("-s3.config={}", config.display()));
        let server = Proc::spawn_logged("weed server", &mut cmd, &log);
        let weed = Seaweed {
            gateways: Vec::new(),
            server,
            s3_port: s3,
            filer_port: filer,
            dir: dir.to_path_buf(),
        };
        wait_for_port(
            s3,
            "the SeaweedFS S3 gateway",
            &log,
            Duration::from_secs(60),
        )?;
        // the gateway listens before the filer can take writes: wait for a bucket to work
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match weed.boto3("s3.create_bucket(Bucket='rcgi-probe'); print('ok')") {
                Ok(out) if out.contains("ok") => break,
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(300))
                }
                other => return Err(format!("SeaweedFS never took a bucket: {other:?}")),
            }
        }
        Ok(weed)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// A second S3 gateway over the same filer; answers its endpoint.
    pub fn start_gateway(&mut self) -> Result<String, String> {
        let port = free_port_pair();
        let log = self.dir.join(format!("gateway-{port}.log"));
        let mut cmd = Command::new(venv().join("bin/weed"));
        cmd.arg("s3")
            .arg(format!("-filer=127.0.0.1:{}", self.filer_port))
            .arg(format!("-port={port}"))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-port.iceberg=0",
                "-port.lance=0",
            ])
            .arg(format!("-config={}", self.dir.join("s3.json").display()));
        self.gateways
            .push(Proc::spawn_logged("weed s3 gateway", &mut cmd, &log));
        wait_for_port(port, "the second S3 gateway", &log, Duration::from_secs(60))?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    pub fn create_bucket(&self, bucket: &str) {
        let out = self
            .boto3(&format!("s3.create_bucket(Bucket='{bucket}'); print('ok')"))
            .unwrap();
        assert!(out.contains("ok"), "{out}");
    }

    /// Runs Python with `s3`, a boto3 client of this store (path-style, test credentials);
    /// answers its stdout, or stderr as the error.
    pub fn boto3(&self, body: &str) -> Result<String, String> {
        let script = format!(
            "import boto3, json, sys\nfrom botocore.config import Config\n\
             s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{ACCESS_KEY}', \
             aws_secret_access_key='{SECRET_KEY}', region_name='us-east-1', \
             config=Config(s3={{'addressing_style': 'path'}}, retries={{'max_attempts': 1}}))\n{body}\n",
            self.endpoint()
        );
        let out = Command::new(venv().join("bin/python"))
            .arg("-c")
            .arg(script)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Stops the server now (SIGKILL: its data is thrown away with the test).
    pub fn kill(&mut self) {
        for g in &self.gateways {
            g.kill();
        }
        self.server.kill();
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // a graceful stop takes many seconds, and nothing here is worth keeping
        self.kill();
    }
}
