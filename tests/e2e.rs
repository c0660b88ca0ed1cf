//! End-to-end: the shipped deploy/ files, rendered with this test's ports and directories, run by
//! the real servers (Apache mod_cgid / mod_fcgid / mod_proxy_fcgi, nginx + fcgiwrap / spawn-fcgi,
//! php-fpm for the classic PHP script), with resumable.js 1.1.0 and flow.js 2.14.1 uploading from
//! headless Debian chromium. Every process started here is stopped by PID when its guard drops,
//! also when an assertion fails. Needs what scripts/install-test-deps installs (run-tests does).

#[path = "e2e/cases.rs"]
mod cases;
mod common;
#[path = "e2e/harness.rs"]
mod harness;
#[path = "e2e/servers.rs"]
mod servers;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use cases::*;
use common::http;
use common::{sha256_file, Scratch};
use harness::*;
use servers::*;

// ------------------------------------------------------------------ the standard cases per stack

fn apache_cgid(name: &str) -> Stack {
    let mut s = Stack::apache(name);
    s.install_deploy_site("apache/cgi.conf");
    s.start_apache();
    s
}

fn nginx_fcgiwrap(name: &str) -> Stack {
    let mut s = Stack::nginx(name);
    s.start_fcgiwrap();
    s.install_deploy_site("nginx/fcgiwrap.conf");
    s.start_nginx();
    s
}

fn nginx_spawn_fcgi(name: &str) -> Stack {
    let mut s = Stack::nginx(name);
    s.start_spawn_fcgi_worker();
    s.install_deploy_site("nginx/fastcgi.conf");
    s.start_nginx();
    s
}

#[test]
fn e2e_apache_mod_cgid() {
    let s = apache_cgid("apache-cgid");
    run_standard(&s);
    // the program's own log lines (stderr) land in Apache's error log under mod_cgid
    let log = read_lossy(&s.error_log);
    assert!(
        log.contains("completed"),
        "no completion logged by the program:\n{log}"
    );
}

#[test]
fn e2e_nginx_fcgiwrap() {
    let s = nginx_fcgiwrap("nginx-fcgiwrap");
    run_standard(&s);
    // fcgiwrap -f forwards the program's stderr over FastCGI: nginx's error log has its lines
    let log = read_lossy(&s.error_log);
    assert!(
        log.contains("FastCGI sent in stderr") && log.contains("completed"),
        "no program log lines in nginx's error log:\n{log}"
    );
}

#[test]
fn e2e_nginx_spawn_fcgi() {
    let s = nginx_spawn_fcgi("nginx-spawn-fcgi");
    run_standard(&s);
}

#[test]
fn e2e_apache_mod_fcgid() {
    let mut s = Stack::apache("apache-fcgid");
    s.install_deploy_site("apache/fcgid.conf");
    s.start_apache();
    run_standard(&s);
}

#[test]
fn e2e_apache_mod_proxy_fcgi_systemd_units() {
    let mut s = Stack::apache("apache-proxy-fcgi");
    s.start_systemd_equivalent_worker();
    s.install_deploy_site("apache/proxy_fcgi.conf");
    s.start_apache();
    run_standard(&s);
    // what would go to the journal (StandardError=journal): the worker's own stderr
    let log = read_lossy(&s.dir.path().join("logs/worker.log"));
    assert!(
        log.contains("completed"),
        "no completion logged by the worker:\n{log}"
    );
}

/// The other systemd hand-over, LISTEN_FDS (fd 3), via systemd-socket-activate, behind nginx.
#[test]
fn e2e_nginx_listen_fds_socket_activation() {
    let mut s = Stack::nginx("nginx-listen-fds");
    s.start_listen_fds_worker();
    s.install_deploy_site("nginx/fastcgi.conf");
    s.start_nginx();
    run_some(
        &s,
        &[
            "resumable-last2x",
            "flow-unicode",
            "resumable-folder",
            "flow-many-octet",
        ],
    );
}

// ------------------------------------------------------------------ systemd units

/// systemd cannot run here (no systemd as PID 1), but `systemd-analyze verify` checks the shipped
/// units (syntax, known keys, the socket's service, an executable ExecStart). The launch they
/// describe (socket on fd 0) is exercised by e2e_apache_mod_proxy_fcgi_systemd_units.
#[test]
fn e2e_systemd_units_verify() {
    let dir = Scratch::new("systemd-verify");
    let bin = install_program(&dir);
    let vars = vec![
        ("BIN", bin.display().to_string()),
        ("SOCKET", "/run/resumable-cgi.sock".to_string()),
        ("TEMP_DIR", dir.dir("temp", true).display().to_string()),
        ("UPLOAD_DIR", dir.dir("uploads", true).display().to_string()),
    ];
    let units = dir.dir("units", false);
    for unit in ["resumable-cgi.socket", "resumable-cgi.service"] {
        write(
            &units.join(unit),
            &render(&format!("systemd/{unit}"), &vars),
        );
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("e2e PENDING systemd units: systemd-analyze not installed; units untested here");
        return;
    }
    common::assert_units_verify(
        &units.join("resumable-cgi.socket"),
        &units.join("resumable-cgi.service"),
        "",
    );
}

// ------------------------------------------------------------------ resume after a reload

/// Reloads the page while chunks are in flight, adds the same file again, and shows from the web
/// server's access log that only the chunks the server did not have were sent again.
fn reload_resume(stack: &Stack) {
    let src = stack.dir.path().join("src/reload");
    let files = [
        (
            "reload-r.bin",
            12 * CHUNK + 4321,
            "resumable",
            "multipart",
            "resumable",
        ),
        ("reload-f.bin", 10 * CHUNK + 99, "flow", "octet", "flow"),
    ];
    let mut steps = Vec::new();
    let mut shas = Vec::new();
    for (i, (name, size, lib, method, _)) in files.iter().enumerate() {
        let p = src.join(name);
        make_file(&p, *size, 900 + i as u64);
        shas.push(sha256_file(&p));
        steps.push(json!({
            "id": format!("reload-{lib}"), "lib": lib, "target": stack.url, "mode": "reload-resume",
            "atChunks": 4, "files": [p],
            "opts": {"chunkSize": CHUNK, "method": method, "simultaneousUploads": 3},
        }));
    }
    let result = run_browser(&stack.dir, &stack.origin(), json!(steps));
    let hits = access_log(&stack.access_log);
    for (i, (name, size, lib, _, prefix)) in files.iter().enumerate() {
        let s = step_summary(&result, &format!("reload-{lib}"));
        assert!(
            s["failure"].is_null()
                && s["state"]["done"] == true
                && s["state"]["errors"] == json!([]),
            "{} reload-{lib}: {s}",
            stack.name
        );
        assert_eq!(s["events"][0]["reloaded"], true);
        let total = (size / CHUNK) as u64;
        let before_ok = chunks(&hits, "POST", prefix, name, "before", Some(200));
        let before_all = chunks(&hits, "POST", prefix, name, "before", None);
        let after_posts = chunks(&hits, "POST", prefix, name, "after", None);
        let after_gets = chunks(&hits, "GET", prefix, name, "after", None);
        let after_gets_200 = chunks(&hits, "GET", prefix, name, "after", Some(200));
        // requests the reload cut off, as the server logged them (chunk, status)
        let cut: Vec<(String, u16)> = hits
            .iter()
            .filter(|h| h.method == "POST" && h.status != 200)
            .filter(|h| h.param(&format!("{prefix}Filename")).as_deref() == Some(*name))
            .map(|h| {
                (
                    h.param(&format!("{prefix}ChunkNumber")).unwrap_or_default(),
                    h.status,
                )
            })
            .collect();
        eprintln!(
            "e2e {} reload-{lib}: POSTs not answered 200 (chunk, status): {cut:?}",
            stack.name
        );
        let b: BTreeSet<u64> = before_ok.iter().copied().collect();
        let a: BTreeSet<u64> = after_posts.iter().copied().collect();
        eprintln!(
            "e2e {} reload-{lib}: {total} chunks; before reload POST 200 {before_ok:?} (all POSTs {before_all:?}); \
             after reload test GETs {} (200 for {after_gets_200:?}), POSTs {after_posts:?}",
            stack.name, after_gets.len()
        );
        assert!(
            b.len() >= 4,
            "{}: fewer chunks than planned before the reload",
            stack.name
        );
        assert!(
            b.is_disjoint(&a),
            "{}: chunks the server had were sent again: {:?}",
            stack.name,
            b.intersection(&a).collect::<Vec<_>>()
        );
        assert!(
            !a.is_empty() && (a.len() as u64) < total,
            "{}: after the reload {a:?} of {total}",
            stack.name
        );
        // every chunk was tested after the reload, and each stored one answered 200
        assert_eq!(
            after_gets.iter().copied().collect::<BTreeSet<_>>(),
            (1..=total).collect()
        );
        assert!(b.iter().all(|c| after_gets_200.contains(c)));
        assert_eq!(
            after_posts.len(),
            a.len(),
            "a chunk was POSTed twice after the reload"
        );
        assert_eq!(
            sha256_file(&stack.upload_dir.join(name)),
            shas[i],
            "{}: {name}",
            stack.name
        );
    }
}

#[test]
fn e2e_reload_resume_apache_mod_cgid() {
    let s = apache_cgid("reload-apache-cgid");
    reload_resume(&s);
}

#[test]
fn e2e_reload_resume_nginx_fastcgi() {
    let s = nginx_spawn_fcgi("reload-nginx-spawn-fcgi");
    reload_resume(&s);
}

// ------------------------------------------------------------------ swap the PHP script in place

/// Starts an upload against the classic PHP script (from the resumablejs npm package) under
/// php-fpm, stops halfway, points the same URL at resumable-cgi using the shipped config (temp
/// dir = the script's temp/), reloads the web server, adds the same file again and finishes.
fn swap_in_place(mut stack: Stack, deploy_site: &str, php_site: String) {
    let php_temp = stack.start_php_fpm_with_sample();
    stack.install_site(&php_site);
    match stack.kind {
        Kind::Nginx => stack.start_nginx(),
        Kind::Apache => stack.start_apache(),
    }
    assert_eq!(
        stack.probe_missing_status(),
        404,
        "the PHP script should answer the URL first"
    );
    let name = "swap.bin";
    let size = 10 * CHUNK + 777;
    let total = (size / CHUNK) as u64;
    let src = stack.dir.path().join("src/swap").join(name);
    make_file(&src, size, 4242);
    let sha = sha256_file(&src);
    let step = |mode: &str| {
        json!([{
            "id": format!("swap-{mode}"), "lib": "resumable", "target": stack.url, "mode": mode,
            "atChunks": 4, "files": [src],
            "opts": {"chunkSize": CHUNK, "simultaneousUploads": 1, "query": {"e2ephase": mode}},
        }])
    };
    let first = run_browser(&stack.dir, &stack.origin(), step("partial"));
    let s = step_summary(&first, "swap-partial");
    assert!(s["failure"].is_null(), "{s}");
    let id = format!("{size}-swapbin");
    let php_parts: BTreeSet<u64> = std::fs::read_dir(php_temp.join(&id))
        .unwrap_or_else(|e| panic!("PHP stored nothing under temp/{id}: {e}"))
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("swap.bin.part")?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        php_parts.len() >= 4 && (php_parts.len() as u64) < total,
        "PHP parts {php_parts:?}"
    );

    // the operator's switch: same URL, the shipped config, temp dir = the PHP script's temp/
    stack.temp_dir = php_temp.clone();
    stack.install_deploy_site(deploy_site);
    stack.reload(|| stack_probe(&stack) == 204);

    let second = run_browser(&stack.dir, &stack.origin(), step("upload"));
    let s = step_summary(&second, "swap-upload");
    assert!(
        s["failure"].is_null() && s["state"]["done"] == true && s["state"]["errors"] == json!([]),
        "{s}"
    );
    let hits = access_log(&stack.access_log);
    let after: BTreeSet<u64> = chunks(&hits, "POST", "resumable", name, "upload", None)
        .into_iter()
        .collect();
    eprintln!(
        "e2e {} swap: PHP stored parts {php_parts:?} of {total}; resumable-cgi received POSTs {after:?}",
        stack.name
    );
    assert!(
        php_parts.is_disjoint(&after),
        "parts the PHP script had were uploaded again"
    );
    assert_eq!(php_parts.len() + after.len(), total as usize);
    assert_eq!(
        sha256_file(&stack.upload_dir.join(name)),
        sha,
        "{}: swapped upload",
        stack.name
    );
}

fn stack_probe(stack: &Stack) -> u16 {
    stack.probe_missing_status()
}

#[test]
fn e2e_swap_php_fpm_to_resumable_cgi_nginx() {
    let mut s = Stack::nginx("swap-nginx");
    let php = s.php_site_nginx();
    s.start_spawn_fcgi_worker();
    swap_in_place(s, "nginx/fastcgi.conf", php);
}

#[test]
fn e2e_swap_php_fpm_to_resumable_cgi_apache_cgid() {
    let s = Stack::apache("swap-apache");
    let php = s.php_site_apache();
    swap_in_place(s, "apache/cgi.conf", php);
}

// ------------------------------------------------------------------ the shipped size limits

/// The shipped limits let the largest legal request through and stop a larger one at the web
/// server: with the shipped RESUMABLE_MAX_CHUNK_SIZE=64M, the largest request is a last chunk of
/// 2 x 64 MiB - 1 bytes in a multipart body (here: a one-chunk file of that size). A request
/// announcing more than the configured 130 MiB is answered 413 from its headers alone.
fn largest_chunk(stack: &Stack, over_limit: (u16, u16)) {
    let chunk: u64 = 64 << 20;
    let size = 2 * chunk - 1;
    let name = format!("largest-{}.bin", stack.name);
    let src = stack.dir.path().join("src").join(&name);
    make_file(&src, size as usize, 77);
    let data = std::fs::read(&src).unwrap();
    let sha = sha256_file(&src);
    let boundary = "----e2eBoundary7MA4YWxkTrZu0gW";
    let mut head = String::new();
    for (k, v) in [
        ("resumableChunkNumber", "1".to_string()),
        ("resumableChunkSize", chunk.to_string()),
        ("resumableCurrentChunkSize", size.to_string()),
        ("resumableTotalSize", size.to_string()),
        ("resumableType", "application/octet-stream".to_string()),
        (
            "resumableIdentifier",
            format!("{size}-largest{}", stack.port),
        ),
        ("resumableFilename", name.clone()),
        ("resumableRelativePath", name.clone()),
        ("resumableTotalChunks", "1".to_string()),
    ] {
        head +=
            &format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n");
    }
    head += &format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let t = std::time::Instant::now();
    let answer = http::request(
        &stack.origin(),
        "POST",
        &stack.url,
        &[(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )],
        &[head.as_bytes(), &data, tail.as_bytes()],
        BIG_BODY_TIMEOUT,
    );
    let (status, body) = (answer.status, String::from_utf8_lossy(&answer.body));
    eprintln!(
        "e2e {}: largest legal chunk ({} bytes + {} bytes multipart) -> {status} in {} ms",
        stack.name,
        size,
        head.len() + tail.len(),
        t.elapsed().as_millis()
    );
    assert_eq!(
        status,
        200,
        "{}: {body:.400}\n{}",
        stack.name,
        read_lossy(&stack.error_log)
    );
    assert!(body.contains("\"complete\":true"), "{body}");
    assert_eq!(sha256_file(&stack.upload_dir.join(&name)), sha);
    let announced = common::http::announced_only(&stack.origin(), &stack.url, 136_314_880 + 1);
    let zeros = vec![0u8; 136_314_880 + 1];
    let over = http::request(
        &stack.origin(),
        "POST",
        &stack.url,
        &[("Content-Type", "application/octet-stream")],
        &[&zeros],
        BIG_BODY_TIMEOUT,
    )
    .status;
    eprintln!(
        "e2e {}: 130 MiB + 1 announced only -> {announced}, sent -> {over}",
        stack.name
    );
    // (status for headers only, status with the body sent); 0 = no answer within 3 s
    assert_eq!(
        (announced, over),
        over_limit,
        "{}: a body over the shipped limit must be refused",
        stack.name
    );
    let stored = tree(&stack.upload_dir)
        .into_keys()
        .filter(|k| !k.starts_with('.'))
        .collect::<Vec<_>>();
    assert_eq!(
        stored,
        vec![name.clone()],
        "{}: only the legal upload is stored",
        stack.name
    );
}

/// How long the answer to a request of over 128 MiB may take.
const BIG_BODY_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn e2e_shipped_limits_fit_the_largest_chunk() {
    largest_chunk(&apache_cgid("limits-apache-cgid"), (413, 413));
    largest_chunk(&nginx_spawn_fcgi("limits-nginx-spawn-fcgi"), (413, 413));
    largest_chunk(&nginx_fcgiwrap("limits-nginx-fcgiwrap"), (413, 413));
    let mut s = Stack::apache("limits-apache-fcgid");
    s.install_deploy_site("apache/fcgid.conf");
    s.start_apache();
    // mod_fcgid does not answer 413 itself: it swallows LimitRequestBody's refusal and hands the
    // program an empty POST (CONTENT_LENGTH 0, no params), which the program refuses with 400
    largest_chunk(&s, (400, 400));
    let log = read_lossy(&s.error_log);
    assert!(log.contains("POST -> 400"), "{log}");
    drop(s);
    let mut s = Stack::apache("limits-apache-proxy-fcgi");
    s.start_spawn_fcgi_worker();
    s.install_deploy_site("apache/proxy_fcgi.conf");
    s.start_apache();
    // mod_proxy_fcgi does not check LimitRequestBody against Content-Length before dispatching:
    // headers alone get no answer (it waits for the body), and with the body the program's own
    // limit (2 x 64M + 1 MiB) refuses it first with 415 ("do not retry"), Apache logging that
    largest_chunk(&s, (0, 415));
}

/// A chunk refused before its body is read (here: it declares more bytes than a chunk may
/// have), behind nginx with the shipped `fastcgi_request_buffering off`: nginx stops sending
/// such a body and waits for the worker to end the connection, so a worker that waited for the
/// rest of the body instead held the answer until `fastcgi_read_timeout` (600 s in the shipped
/// snippet; this client gives up after 60 s) and nginx cut the answer's body. The answer comes
/// whole, and the worker serves the next request.
#[test]
fn an_early_refusal_behind_nginx_comes_whole_and_frees_the_worker() {
    let s = nginx_spawn_fcgi("nginx-early-refusal");
    // Over the shipped RESUMABLE_MAX_CHUNK_SIZE of 64M, under nginx's client_max_body_size.
    let declared = 100 << 20;
    let query = format!(
        "resumableChunkNumber=1&resumableChunkSize={declared}\
         &resumableCurrentChunkSize={declared}&resumableTotalSize={total}\
         &resumableIdentifier=early&resumableFilename=early.bin\
         &resumableRelativePath=early.bin&resumableTotalChunks=2",
        total = 2 * declared
    );
    let body = vec![7u8; 20 << 20];
    let worker_count = 2;
    for _ in 0..worker_count + 1 {
        let refused = http::request(
            &s.origin(),
            "POST",
            &format!("{}?{query}", s.url),
            &[
                ("Content-Type", "application/octet-stream"),
                ("X-Test", "early-refusal"),
            ],
            &[&body],
            Duration::from_secs(60),
        );
        assert!(
            (400..500).contains(&refused.status),
            "{}: {}",
            refused.status,
            String::from_utf8_lossy(&refused.body)
        );
        let answer = refused.json();
        assert_eq!(answer["success"], json!(false), "{answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
    let small = b"hello, whole answer";
    let stored = http::request(
        &s.origin(),
        "POST",
        &format!(
            "{}?resumableChunkNumber=1&resumableChunkSize=1048576&resumableCurrentChunkSize={n}\
             &resumableTotalSize={n}&resumableIdentifier=after&resumableFilename=after.txt\
             &resumableRelativePath=after.txt&resumableTotalChunks=1",
            s.url,
            n = small.len()
        ),
        &[("Content-Type", "application/octet-stream")],
        &[small],
        Duration::from_secs(60),
    );
    assert_eq!(
        stored.status,
        200,
        "{}",
        String::from_utf8_lossy(&stored.body)
    );
    assert_eq!(
        std::fs::read(s.upload_dir.join("after.txt")).unwrap(),
        small.to_vec()
    );
}
