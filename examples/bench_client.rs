//! Bench-only load generator for `bench/run` section 3: keep-alive connections that each POST
//! resumable.js multipart chunks as fast as they are answered, every chunk one never sent
//! before, and every request timed on its own; not part of the shipped binary.
//!
//! wrk cannot serve here: it corrects its percentiles for coordinated omission (one stall of a
//! backend that answers fast becomes many samples), and a Lua script that makes each request
//! new copies the 1 MiB body several times per request in the client. This client writes the
//! shared payload from one buffer and builds only the small multipart head per request.
//!
//! ```text
//! cargo run --release --example bench_client -- --addr 127.0.0.1:PORT --path /ours \
//!     --connections 8 --secs 8 --tag r1 [--uploads 8] [--size 1048576]
//! ```
//!
//! Prints one line: `BENCH requests=… duration_us=… busy_us=… p50_us=… p90_us=… p99_us=…
//! p99_9_us=… max_us=… errors=…`; the first non-200 answer is printed to stderr and ends the
//! run with exit status 1.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

/// The uploads declare this many bytes, so that none ever completes (no assembly mid-run).
const DECLARED_TOTAL: u64 = 1 << 40;
const BOUNDARY: &str = "----resumablecgibenchclient5Qz1";

#[derive(Parser, Debug)]
#[command(about = "Keep-alive multipart chunk POSTs, each timed (bench-only)")]
struct Cli {
    /// HOST:PORT of the web server.
    #[arg(long)]
    addr: String,
    /// The request path (the backend's location).
    #[arg(long)]
    path: String,
    /// Connections, one thread each.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How long to send, in seconds; requests in flight then finish and count.
    #[arg(long)]
    secs: f64,
    /// Names this run's uploads, so that no run re-sends another's chunks.
    #[arg(long)]
    tag: String,
    /// Uploads each connection keeps in flight, sending their chunks in turn.
    #[arg(long, default_value_t = 8)]
    uploads: u64,
    /// Chunk size in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    size: usize,
}

/// One connection's results: each request's latency in microseconds, or the first failure.
type Outcome = Result<Vec<u64>, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let payload: Arc<Vec<u8>> =
        Arc::new((0..cli.size).map(|i| [0xab, 0xcd, 0xef][i % 3]).collect());
    let deadline = Instant::now() + Duration::from_secs_f64(cli.secs);
    let start = Instant::now();
    let threads: Vec<_> = (0..cli.connections)
        .map(|connection| {
            let payload = Arc::clone(&payload);
            let (addr, path, tag) = (cli.addr.clone(), cli.path.clone(), cli.tag.clone());
            let (uploads, size) = (cli.uploads.max(1), cli.size as u64);
            std::thread::spawn(move || -> Outcome {
                let requests = Requests {
                    path,
                    tag,
                    connection,
                    uploads,
                    size,
                };
                run_connection(&addr, &requests, &payload, deadline)
                    .map_err(|e| format!("connection {connection}: {e}"))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failure = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(mine)) => latencies.extend(mine),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some("a connection's thread panicked".to_string())),
        }
    }
    let duration = start.elapsed();
    latencies.sort_unstable();
    let at = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64) as usize;
        latencies[rank.min(latencies.len() - 1)]
    };
    println!(
        "BENCH requests={} duration_us={} busy_us={} p50_us={} p90_us={} p99_us={} p99_9_us={} max_us={} errors={}",
        latencies.len(),
        duration.as_micros(),
        latencies.iter().sum::<u64>(),
        at(50.0),
        at(90.0),
        at(99.0),
        at(99.9),
        latencies.last().copied().unwrap_or(0),
        u8::from(failure.is_some()),
    );
    match failure {
        Some(e) => {
            eprintln!("bench_client: {e}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

/// What one connection sends: chunk n / uploads + 1 of upload n % uploads + 1, for n = 0, 1, …
struct Requests {
    path: String,
    tag: String,
    connection: usize,
    uploads: u64,
    size: u64,
}

impl Requests {
    /// The request line, headers and multipart head of request `n` (the payload and the closing
    /// delimiter follow).
    fn head(&self, n: u64) -> Vec<u8> {
        let slot = n % self.uploads + 1;
        let number = n / self.uploads + 1;
        let identifier = format!("bench-{}-{}-{slot}", self.tag, self.connection);
        let fields: [(&str, String); 9] = [
            ("resumableChunkNumber", number.to_string()),
            ("resumableChunkSize", self.size.to_string()),
            ("resumableCurrentChunkSize", self.size.to_string()),
            ("resumableTotalSize", DECLARED_TOTAL.to_string()),
            ("resumableType", "application/octet-stream".into()),
            ("resumableIdentifier", identifier),
            ("resumableFilename", "bench.bin".into()),
            ("resumableRelativePath", "bench.bin".into()),
            (
                "resumableTotalChunks",
                (DECLARED_TOTAL / self.size).to_string(),
            ),
        ];
        let mut form = String::new();
        for (name, value) in &fields {
            form += &format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            );
        }
        form += &format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        );
        let length = form.len() as u64 + self.size + closing().len() as u64;
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: bench\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
             Content-Length: {length}\r\n\r\n",
            self.path
        )
        .into_bytes();
        head.extend_from_slice(form.as_bytes());
        head
    }
}

fn closing() -> String {
    format!("\r\n--{BOUNDARY}--\r\n")
}

fn run_connection(
    addr: &str,
    requests: &Requests,
    payload: &[u8],
    deadline: Instant,
) -> io::Result<Vec<u64>> {
    let tail = closing();
    let (mut writer, mut reader) = connect(addr)?;
    let mut latencies = Vec::new();
    let mut n = 0;
    while Instant::now() < deadline {
        let head = requests.head(n);
        n += 1;
        let began = Instant::now();
        writer.write_all(&head)?;
        writer.write_all(payload)?;
        writer.write_all(tail.as_bytes())?;
        let (status, closing) = read_response(&mut reader)?;
        latencies.push(began.elapsed().as_micros() as u64);
        // nginx ends a keep-alive connection after `keepalive_requests` (1000) answers, saying so.
        if closing {
            (writer, reader) = connect(addr)?;
        }
        if status != 200 {
            return Err(io::Error::other(format!("request {n} answered {status}")));
        }
    }
    Ok(latencies)
}

fn connect(addr: &str) -> io::Result<(TcpStream, BufReader<TcpStream>)> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok((stream.try_clone()?, BufReader::new(stream)))
}

/// Reads one response (Content-Length or chunked body); answers its status and whether the
/// server closes the connection after it.
fn read_response(reader: &mut impl BufRead) -> io::Result<(u16, bool)> {
    let mut line = String::new();
    read_line(reader, &mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP status line: {line:?}")))?;
    let mut length = None;
    let mut chunked = false;
    let mut closing = false;
    loop {
        read_line(reader, &mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<u64>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            closing = value.eq_ignore_ascii_case("close");
        }
    }
    if chunked {
        loop {
            read_line(reader, &mut line)?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::other(format!("bad chunk size line {line:?}")))?;
            skip(reader, size)?;
            read_line(reader, &mut line)?;
            if size == 0 {
                break;
            }
        }
    } else {
        skip(reader, length.unwrap_or(0))?;
    }
    Ok((status, closing))
}

fn read_line(reader: &mut impl BufRead, line: &mut String) -> io::Result<()> {
    line.clear();
    if reader.read_line(line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    Ok(())
}

fn skip(reader: &mut impl Read, bytes: u64) -> io::Result<()> {
    let copied = io::copy(&mut reader.take(bytes), &mut io::sink())?;
    if copied != bytes {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "a response body ended early",
        ));
    }
    Ok(())
}
