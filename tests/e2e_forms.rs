//! Plain form uploads end to end: headless Debian chromium posts to the shipped deploy/ setups
//! (nginx + the FastCGI worker under spawn-fcgi, and Apache mod_cgid) with a real `<form>`
//! submitted by a click (it navigates to the HTML answer, which must list every file), `fetch`
//! with a `FormData` (JSON), Dropzone with chunking off, and Uppy's @uppy/xhr-upload, both from
//! npm. Every stored file's sha256 equals its source's, nothing else is stored, and the URLs the
//! answers give (RESUMABLE_PUBLIC_URL, served by the web server) download the same bytes.
//! The dev server's own page has such a form too. Needs what scripts/install-test-deps installs.

mod common;
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;
mod serve_support;
#[allow(dead_code)]
#[path = "e2e/servers.rs"]
mod servers;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use common::{sha256_file, Endpoint, Scratch};
use harness::*;
use serve_support::DevServer;
use servers::*;

const MIB: usize = 1 << 20;
/// Where the web server serves the upload dir, and what RESUMABLE_PUBLIC_URL says.
const PUBLIC: &str = "/files/";

/// The rendered deploy file for the upload URL, plus RESUMABLE_PUBLIC_URL and a location that
/// serves the upload dir under it.
fn site_with_public_url(stack: &Stack, deploy: &str) -> String {
    let site = render(deploy, &stack.vars());
    let uploads = stack.upload_dir.display();
    match stack.kind {
        Kind::Nginx => format!(
            "{}\nlocation {PUBLIC} {{\n    alias {uploads}/;\n}}\n",
            site.replace(
                "    fastcgi_pass",
                &format!("    fastcgi_param RESUMABLE_PUBLIC_URL {PUBLIC};\n    fastcgi_pass")
            )
        ),
        Kind::Apache => format!(
            "{}\nAlias \"{PUBLIC}\" \"{uploads}/\"\n<Directory \"{uploads}\">\n    Require all granted\n</Directory>\n",
            site.replace(
                "    Require all granted",
                &format!("    SetEnv RESUMABLE_PUBLIC_URL {PUBLIC}\n    Require all granted")
            )
        ),
    }
}

/// One browser case: the files it sends (name relative to its source dir, size) and which of
/// them must be stored (a file over the form's MAX_FILE_SIZE is not).
struct Case {
    id: &'static str,
    kind: &'static str,
    files: Vec<(&'static str, usize)>,
    /// Files inside a picked folder (form only): stored under their relative path.
    folder: Vec<(&'static str, usize)>,
    not_stored: Vec<&'static str>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "form",
            kind: "form",
            files: vec![
                ("form-1.bin", MIB + MIB / 2),
                ("Grüße ✓ form.txt", 10_000),
                ("form-empty.txt", 0),
                ("form-too-big.bin", 5 * MIB),
            ],
            folder: vec![
                ("form-album/2024/x.bin", 50_000),
                ("form-album/y.bin", 20_000),
            ],
            not_stored: vec!["form-too-big.bin"],
        },
        Case {
            id: "fetch",
            kind: "fetch",
            files: vec![("fetch-a.bin", 2 * MIB + 3), ("fetch b.txt", 1000)],
            folder: vec![],
            not_stored: vec![],
        },
        Case {
            id: "dropzone",
            kind: "dropzone",
            files: vec![("dz-1.bin", 300_000), ("dz-2.bin", MIB)],
            folder: vec![],
            not_stored: vec![],
        },
        Case {
            id: "uppy",
            kind: "uppy",
            files: vec![("uppy-1.bin", 700_000), ("uppy 2 é.bin", 5000)],
            folder: vec![],
            not_stored: vec![],
        },
    ]
}

/// The HTML answer page a form post navigated to: 200, and each file it lists with its error
/// code.
fn answer_page(page: &Value) -> BTreeMap<String, u64> {
    assert_eq!(page["status"], 200, "{page}");
    assert!(
        page["contentType"]
            .as_str()
            .is_some_and(|ct| ct.starts_with("text/html")),
        "{page}"
    );
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["error"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The form's MAX_FILE_SIZE field: between the sizes of the files it lets through and the
/// one it stops.
const FORM_MAX_FILE_SIZE: usize = 4 * MIB;

fn run_forms(stack: &Stack) {
    let src = stack.dir.path().join("src");
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    let mut steps = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        let dir = src.join(case.id);
        let mut paths = Vec::new();
        for (j, (name, size)) in case.files.iter().chain(&case.folder).enumerate() {
            let path = dir.join(name);
            make_file(&path, *size, 100 * i as u64 + j as u64);
            let sha = sha256_file(&path);
            sources.insert(name.to_string(), sha.clone());
            if !case.not_stored.contains(name) {
                expected.insert(name.to_string(), sha);
            }
            if j < case.files.len() {
                paths.push(path);
            }
        }
        let mut step =
            json!({"id": case.id, "kind": case.kind, "target": stack.url, "files": paths});
        if let Some((first, _)) = case.folder.first() {
            step["dir"] = json!(dir.join(first.split('/').next().unwrap()));
            step["maxFileSize"] = json!(FORM_MAX_FILE_SIZE);
        }
        steps.push(step);
    }
    let result = run_driver(
        &stack.dir,
        "forms-browser.mjs",
        &stack.origin(),
        json!(steps),
    );
    let outcome = |id: &str| -> Value {
        let step = result["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no result for {id}"));
        assert!(step["failure"].is_null(), "{}: {id}: {step}", stack.name);
        eprintln!("e2e-forms {} {id}: {} ms", stack.name, step["ms"]);
        step["outcome"].clone()
    };
    let mut downloads = Vec::new();

    // The form: the browser shows the HTML answer, which names every file it sent.
    let form = outcome("form");
    let listed = answer_page(&form);
    let sent: BTreeMap<String, u64> = cases()[0]
        .files
        .iter()
        .chain(&cases()[0].folder)
        .map(|(name, _)| (name.to_string(), u64::from(*name == "form-too-big.bin") * 2))
        .collect();
    assert_eq!(listed, sent, "{}: the answer page", stack.name);
    downloads.extend(form["downloads"].as_array().unwrap().clone());

    // fetch + FormData: JSON, every file stored.
    let fetched = outcome("fetch");
    assert_eq!(fetched["status"], 200, "{fetched}");
    assert_eq!(fetched["body"]["success"], true, "{fetched}");
    let names: Vec<&str> = fetched["body"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fetch-a.bin", "fetch b.txt"]);

    // Dropzone: a success per file, each answer naming its stored file and URL.
    let dz = outcome("dropzone");
    assert!(dz["errors"].as_array().unwrap().is_empty(), "{dz}");
    assert_eq!(dz["successes"].as_array().unwrap().len(), 2, "{dz}");
    for success in dz["successes"].as_array().unwrap() {
        let entry = &success["response"]["files"][0];
        assert_eq!(
            (&entry["error"], &entry["name"]),
            (&json!(0), &success["name"])
        );
        assert_eq!(
            entry["url"].as_str(),
            Some(format!("{PUBLIC}{}", success["name"].as_str().unwrap()).as_str())
        );
    }

    // Uppy: every file successful, its upload URL taken from the answer, downloadable.
    let uppy = outcome("uppy");
    assert!(uppy["failed"].as_array().unwrap().is_empty(), "{uppy}");
    assert_eq!(uppy["successful"].as_array().unwrap().len(), 2, "{uppy}");
    for file in uppy["successful"].as_array().unwrap() {
        assert!(
            file["uploadURL"].as_str().unwrap().starts_with(PUBLIC),
            "{file}"
        );
    }
    downloads.extend(uppy["downloads"].as_array().unwrap().clone());

    // What the URLs serve is what was sent.
    assert_eq!(downloads.len(), 5 + 2, "{downloads:?}");
    for download in &downloads {
        let name = download["name"].as_str().unwrap();
        assert_eq!(download["status"], 200, "{download}");
        assert_eq!(
            download["sha256"].as_str(),
            sources.get(name).map(String::as_str),
            "{name}"
        );
    }

    // And the upload dir holds exactly the stored files, byte for byte.
    let stored: BTreeMap<String, String> = tree(&stack.upload_dir)
        .into_iter()
        .filter(|(path, _)| !path.split('/').any(|c| c.starts_with('.')))
        .collect();
    let missing: BTreeSet<&String> = expected
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .collect();
    assert_eq!(
        stored,
        expected,
        "{}: upload dir vs sources (missing {missing:?})\nbrowser console: {}\nerror log:\n{}",
        stack.name,
        result["console"],
        read_lossy(&stack.error_log)
    );
    eprintln!(
        "e2e-forms {}: {} files stored, sha256 equal, {} downloads equal; browser launch {} ms, total {} ms",
        stack.name,
        stored.len(),
        downloads.len(),
        result["launchMs"],
        result["totalMs"]
    );
}

#[test]
fn forms_behind_nginx_and_the_fastcgi_worker() {
    let mut stack = Stack::nginx("forms-nginx");
    stack.start_spawn_fcgi_worker();
    stack.install_site(&site_with_public_url(&stack, "nginx/fastcgi.conf"));
    stack.start_nginx();
    run_forms(&stack);
}

#[test]
fn forms_behind_apache_cgi() {
    let mut stack = Stack::apache("forms-apache-cgi");
    stack.install_site(&site_with_public_url(&stack, "apache/cgi.conf"));
    stack.start_apache();
    run_forms(&stack);
}

/// The demo page of `resumable-cgi serve` shows a plain form beside its chunked uploader; a
/// click posts it, the answer page lists the files and links them under /files/.
#[test]
fn the_dev_servers_demo_page_has_a_plain_form() {
    let server = DevServer::start();
    let dir = Scratch::new("forms-demo");
    let mut sources = BTreeMap::new();
    let mut paths = Vec::new();
    for (i, (name, size)) in [("demo one.txt", 1000), ("démo-2.bin", 300_000)]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join("src").join(name);
        make_file(&path, size, 900 + i as u64);
        sources.insert(name.to_string(), sha256_file(&path));
        paths.push(path);
    }
    let origin = server.url().trim_end_matches('/').to_string();
    let steps = json!([{"id": "demo", "kind": "demo", "files": paths}]);
    let result = run_driver(&dir, "forms-browser.mjs", &origin, steps);
    let step = &result["steps"][0];
    assert!(step["failure"].is_null(), "{step}\n{}", server.log());
    let page = &step["outcome"];
    let listed = answer_page(page);
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        sources.keys().collect::<Vec<_>>()
    );
    assert!(listed.values().all(|&code| code == 0), "{page}");
    for download in page["downloads"].as_array().unwrap() {
        let name = download["name"].as_str().unwrap();
        assert_eq!(
            download["sha256"].as_str(),
            sources.get(name).map(String::as_str),
            "{name}"
        );
    }
    assert_eq!(tree(server.upload_dir()), sources);
}
