//! Real servers on 127.0.0.1 for one test: Apache (non-default instance), nginx, fcgiwrap,
//! php-fpm, and the resumable-cgi FastCGI worker via the shipped spawn-fcgi script. Each test
//! writes only the frame (ports, pid files, logs, modules) itself; the upload URL's configuration
//! is the rendered file from deploy/.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::common::http;
use crate::common::process::Proc;
use crate::common::scratch::{Scratch, WWW_DATA};
use crate::harness::*;

/// One web server stack under test. Fields drop in order: processes stop before the directory goes.
pub struct Stack {
    pub procs: Vec<Proc>,
    pub name: String,
    pub port: u16,
    /// The URL path the upload page posts to (the old PHP script's URL).
    pub url: String,
    pub temp_dir: PathBuf,
    pub upload_dir: PathBuf,
    pub access_log: PathBuf,
    pub error_log: PathBuf,
    pub bin: PathBuf,
    pub kind: Kind,
    pub dir: Scratch,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Apache,
    Nginx,
}

pub const URL: &str = "/upload/upload.php";

impl Stack {
    pub fn origin(&self) -> String {
        format!("http://{}", self.address())
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn new(name: &str, kind: Kind) -> Stack {
        let dir = Scratch::new(name);
        let bin = install_program(&dir);
        let temp_dir = dir.dir("data/temp", true);
        let upload_dir = dir.dir("data/uploads", true);
        dir.dir("logs", false);
        Stack {
            procs: Vec::new(),
            name: name.into(),
            port: free_port(),
            url: URL.into(),
            temp_dir,
            upload_dir,
            access_log: dir.path().join("logs/access.log"),
            error_log: dir.path().join("logs/error.log"),
            bin,
            kind,
            dir,
        }
    }

    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("URL", self.url.clone()),
            ("BIN", self.bin.display().to_string()),
            ("TEMP_DIR", self.temp_dir.display().to_string()),
            ("UPLOAD_DIR", self.upload_dir.display().to_string()),
            ("SOCKET", self.socket().display().to_string()),
            (
                "FCGIWRAP_SOCKET",
                self.dir
                    .path()
                    .join("run/fcgiwrap.sock")
                    .display()
                    .to_string(),
            ),
            (
                "PIDFILE",
                self.dir
                    .path()
                    .join("run/spawn-fcgi.pid")
                    .display()
                    .to_string(),
            ),
        ]
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/resumable-cgi.sock")
    }

    /// Puts the rendered site snippet in place (conf.d/site.conf), replacing what was there.
    pub fn install_site(&self, text: &str) {
        write(&self.dir.path().join("conf.d/site.conf"), text);
    }

    /// Puts `text` at nginx's http level (conf.d/http/NAME.conf), e.g. an upstream block.
    #[allow(dead_code)] // used by tests/multinode.rs, not by tests/e2e.rs
    pub fn install_http_conf(&self, name: &str, text: &str) {
        write(
            &self.dir.path().join(format!("conf.d/http/{name}.conf")),
            text,
        );
    }

    pub fn install_deploy_site(&self, deploy_rel: &str) {
        let text = render(deploy_rel, &self.vars());
        self.install_site(&text);
    }

    // ---------------------------------------------------------------- Apache

    pub fn apache(name: &str) -> Stack {
        Stack::new(name, Kind::Apache)
    }

    pub fn start_apache(&mut self) {
        let root = self.dir.path().to_path_buf();
        let www = self.dir.dir("www", false);
        let conf = format!(
            r#"# frame written by tests/e2e/servers.rs; the upload URL comes from conf.d (deploy/apache/*)
ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
User www-data
Group www-data
PidFile {root}/run/httpd.pid
DefaultRuntimeDir {root}/run
Mutex file:{root}/run default
ErrorLog {root}/logs/error.log
LogLevel warn
LogFormat "%h %t \"%r\" %>s %b %D" e2e
CustomLog {root}/logs/access.log e2e
LoadModule mpm_event_module  /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule alias_module      /usr/lib/apache2/modules/mod_alias.so
LoadModule env_module        /usr/lib/apache2/modules/mod_env.so
LoadModule cgid_module       /usr/lib/apache2/modules/mod_cgid.so
LoadModule proxy_module      /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_fcgi_module /usr/lib/apache2/modules/mod_proxy_fcgi.so
LoadModule fcgid_module      /usr/lib/apache2/modules/mod_fcgid.so
ScriptSock {root}/run/cgid.sock
FcgidIPCDir {root}/run/fcgid
FcgidProcessTableFile {root}/run/fcgid_shm
DocumentRoot "{www}"
<Directory />
    Require all denied
</Directory>
Include {root}/conf.d/*.conf
"#,
            root = root.display(),
            port = self.port,
            www = www.display(),
        );
        self.dir.dir("run", false);
        let conf_path = root.join("httpd.conf");
        write(&conf_path, &conf);
        let out = Command::new("apache2")
            .arg("-t")
            .arg("-f")
            .arg(&conf_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "apache2 -t: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = root.join("logs/apache.out");
        let p = Proc::spawn_logged(
            "apache2",
            Command::new("apache2")
                .arg("-f")
                .arg(&conf_path)
                .arg("-D")
                .arg("FOREGROUND"),
            &log,
        );
        self.procs.push(p);
        wait_for_listener(&self.address(), "apache2", &self.error_log);
    }

    // ---------------------------------------------------------------- nginx

    pub fn nginx(name: &str) -> Stack {
        Stack::new(name, Kind::Nginx)
    }

    pub fn start_nginx(&mut self) {
        let root = self.dir.path().to_path_buf();
        let www = self.dir.dir("www", false);
        self.dir.dir("run", false);
        self.dir.dir("tmp", true);
        let conf = format!(
            r#"# frame written by tests/e2e/servers.rs; the upload URL comes from conf.d (deploy/nginx/*)
user www-data www-data;
worker_processes 2;
pid {root}/run/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    access_log {root}/logs/access.log;
    client_body_temp_path {root}/tmp/body;
    fastcgi_temp_path     {root}/tmp/fastcgi;
    proxy_temp_path       {root}/tmp/proxy;
    scgi_temp_path        {root}/tmp/scgi;
    uwsgi_temp_path       {root}/tmp/uwsgi;
    # http-level additions (an upstream block, say); matching nothing is fine
    include {root}/conf.d/http/*.conf;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {www};
        include {root}/conf.d/*.conf;
    }}
}}
"#,
            root = root.display(),
            port = self.port,
            www = www.display(),
        );
        let conf_path = root.join("nginx.conf");
        write(&conf_path, &conf);
        let args = |cmd: &mut Command| {
            cmd.arg("-p")
                .arg(&root)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(root.join("logs/error.log"));
        };
        let mut t = Command::new("nginx");
        args(&mut t);
        let out = t.arg("-t").output().unwrap();
        assert!(
            out.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cmd = Command::new("nginx");
        args(&mut cmd);
        cmd.arg("-g").arg("daemon off;");
        let p = Proc::spawn_logged("nginx", &mut cmd, &root.join("logs/nginx.out"));
        self.procs.push(p);
        wait_for_listener(&self.address(), "nginx", &self.error_log);
    }

    /// Re-reads the configuration (the operator's `nginx -s reload` / `apachectl graceful`), then
    /// waits until `probe` says the new configuration answers.
    pub fn reload(&self, probe: impl Fn() -> bool) {
        let server = &self.procs[self.server_index()];
        server.signal(match self.kind {
            Kind::Nginx => Signal::HUP,
            Kind::Apache => Signal::USR1, // graceful
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        while !probe() {
            assert!(
                Instant::now() < deadline,
                "{}: reload not in effect",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn server_index(&self) -> usize {
        let name = match self.kind {
            Kind::Nginx => "nginx",
            Kind::Apache => "apache2",
        };
        self.procs
            .iter()
            .position(|p| p.name == name)
            .expect("server started")
    }

    // ---------------------------------------------------------------- FastCGI side

    /// fcgiwrap on a unix socket as www-data, in the foreground under spawn-fcgi -n.
    pub fn start_fcgiwrap(&mut self) {
        let run = self.dir.dir("run", false);
        let sock = run.join("fcgiwrap.sock");
        let log = self.dir.path().join("logs/fcgiwrap.log");
        let p = Proc::spawn_logged(
            "fcgiwrap",
            Command::new("spawn-fcgi")
                .args(["-n", "-s"])
                .arg(&sock)
                .args(["-M", "0660", "-U", "www-data", "-G", "www-data"])
                .args([
                    "-u",
                    "www-data",
                    "-g",
                    "www-data",
                    "--",
                    "/usr/sbin/fcgiwrap",
                    "-f",
                    "-c",
                    "2",
                ]),
            &log,
        );
        self.procs.insert(0, p);
        wait_for_socket(&sock, "fcgiwrap");
    }

    /// The resumable-cgi FastCGI worker, started by the shipped deploy/spawn-fcgi script.
    pub fn start_spawn_fcgi_worker(&mut self) {
        self.dir.dir("run", false);
        let script = self.dir.path().join("spawn-fcgi.sh");
        write(&script, &render("spawn-fcgi/spawn-fcgi.sh", &self.vars()));
        let out = Command::new("sh").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "spawn-fcgi.sh: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let pidfile = self.dir.path().join("run/spawn-fcgi.pid");
        let p = Proc::from_pidfile("resumable-cgi fastcgi (spawn-fcgi)", &pidfile);
        let pid = p.pid;
        self.procs.insert(0, p);
        wait_for_socket(&self.socket(), "resumable-cgi fastcgi");
        // what the script promises: a 0660 socket owned by www-data, the worker running as www-data
        let meta = std::fs::metadata(self.socket()).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.uid(), meta.gid()),
            (0o660, WWW_DATA, WWW_DATA)
        );
        let status = read_lossy(Path::new(&format!("/proc/{pid}/status")));
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
        assert_eq!(
            uid.split_whitespace().nth(1),
            Some("33"),
            "worker user: {uid}"
        );
    }

    /// The worker with the socket passed the sd_listen_fds way (LISTEN_FDS=1, fd 3), by
    /// systemd's own systemd-socket-activate, which binds, waits for the first connection and
    /// execs the worker in place (same PID). The command line and settings are the unit's.
    pub fn start_listen_fds_worker(&mut self) {
        self.dir.dir("run", false);
        let vars = self.vars();
        let service = render("systemd/resumable-cgi.service", &vars);
        let exec = service
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart")
            .to_string();
        let mut cmd = Command::new("systemd-socket-activate");
        cmd.arg("-l").arg(self.socket());
        for env in service
            .lines()
            .filter_map(|l| l.strip_prefix("Environment="))
        {
            cmd.arg("-E").arg(env);
        }
        cmd.args(exec.split_whitespace());
        let log = self.dir.path().join("logs/worker.log");
        let p = Proc::spawn_logged(
            "resumable-cgi fastcgi (systemd-socket-activate)",
            &mut cmd,
            &log,
        );
        self.procs.insert(0, p);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "no socket from systemd-socket-activate:\n{}",
                read_lossy(&log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // it binds as root with the umask; SocketUser/SocketMode is what the .socket unit adds
        std::os::unix::fs::chown(self.socket(), Some(WWW_DATA), Some(WWW_DATA)).unwrap();
        std::fs::set_permissions(self.socket(), std::fs::Permissions::from_mode(0o660)).unwrap();
    }

    /// The worker the way the shipped systemd units start it: their ExecStart and Environment=
    /// lines, the listening socket (SocketMode/User of the .socket unit) on fd 0, as www-data.
    /// spawn-fcgi -n does exactly the StandardInput=socket hand-over without forking.
    pub fn start_systemd_equivalent_worker(&mut self) -> (String, String) {
        self.dir.dir("run", false);
        let vars = self.vars();
        let service = render("systemd/resumable-cgi.service", &vars);
        let socket = render("systemd/resumable-cgi.socket", &vars);
        let value = |unit: &str, key: &str| -> Vec<String> {
            unit.lines()
                .filter_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
                .collect()
        };
        let exec = value(&service, "ExecStart").pop().expect("ExecStart");
        assert_eq!(value(&service, "StandardInput"), vec!["socket".to_string()]);
        let listen = value(&socket, "ListenStream").pop().expect("ListenStream");
        let mode = value(&socket, "SocketMode").pop().expect("SocketMode");
        let user = value(&service, "User").pop().expect("User");
        let group = value(&service, "Group").pop().expect("Group");
        let mut cmd = Command::new("spawn-fcgi");
        cmd.env_clear().env("PATH", "/usr/bin:/bin");
        for env in value(&service, "Environment") {
            let (k, v) = env.split_once('=').unwrap();
            cmd.env(k, v);
        }
        cmd.args(["-n", "-s", &listen, "-M", &mode])
            .args(["-U", &value(&socket, "SocketUser").pop().unwrap()])
            .args(["-G", &value(&socket, "SocketGroup").pop().unwrap()])
            .args(["-u", &user, "-g", &group, "--"])
            .args(exec.split_whitespace());
        let log = self.dir.path().join("logs/worker.log");
        let p = Proc::spawn_logged("resumable-cgi fastcgi (systemd-equivalent)", &mut cmd, &log);
        self.procs.insert(0, p);
        wait_for_socket(Path::new(&listen), "resumable-cgi fastcgi");
        (service, socket)
    }

    /// php-fpm running the classic resumable.js PHP sample, extracted from the npm package.
    /// Returns the script's temp dir (`temp/` beside the script, its cwd).
    pub fn start_php_fpm_with_sample(&mut self) -> PathBuf {
        let root = self.dir.path().to_path_buf();
        let script_dir = self.dir.dir("www/upload", true);
        let md = std::fs::read_to_string(
            repo().join("tests/js/node_modules/resumablejs/samples/Backend on PHP.md"),
        )
        .expect("resumablejs npm package (scripts/install-test-deps)");
        let mut php = String::new();
        let mut inside = false;
        for line in md.lines() {
            if line.starts_with("```php") {
                inside = true;
            } else if line.starts_with("```") {
                inside = false;
            } else if inside {
                php.push_str(line);
                php.push('\n');
            }
        }
        assert!(
            php.contains("move_uploaded_file"),
            "PHP sample not found in the package"
        );
        write(&script_dir.join("upload.php"), &php);
        let php_tmp = self.dir.dir("php-upload-tmp", true);
        let sock = root.join("run/php-fpm.sock");
        self.dir.dir("run", false);
        let conf = format!(
            r#"[global]
pid = {root}/run/php-fpm.pid
error_log = {root}/logs/php-fpm.log
daemonize = no
[upload]
user = www-data
group = www-data
listen = {sock}
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = static
pm.max_children = 3
catch_workers_output = yes
php_admin_value[upload_max_filesize] = 64M
php_admin_value[post_max_size] = 64M
php_admin_value[upload_tmp_dir] = {tmp}
"#,
            root = root.display(),
            sock = sock.display(),
            tmp = php_tmp.display(),
        );
        let conf_path = root.join("php-fpm.conf");
        write(&conf_path, &conf);
        let p = Proc::spawn_logged(
            "php-fpm",
            Command::new("php-fpm8.2")
                .arg("-F")
                .arg("-y")
                .arg(&conf_path),
            &root.join("logs/php-fpm.out"),
        );
        self.procs.insert(0, p);
        wait_for_socket(&sock, "php-fpm");
        self.dir.dir("www/upload/temp", true)
    }

    /// The "before" state an operator has: nginx handing the URL to the PHP script under php-fpm.
    pub fn php_site_nginx(&self) -> String {
        format!(
            r#"location = {url} {{
    client_max_body_size 130m;
    include /etc/nginx/fastcgi_params;
    fastcgi_param SCRIPT_FILENAME {script};
    fastcgi_pass unix:{sock};
}}
"#,
            url = self.url,
            script = self.dir.path().join("www/upload/upload.php").display(),
            sock = self.dir.path().join("run/php-fpm.sock").display(),
        )
    }

    /// The same for Apache: the URL handed to php-fpm with the SetHandler form.
    pub fn php_site_apache(&self) -> String {
        format!(
            r#"Alias "{url}" "{script}"
<Location "{url}">
    SetHandler "proxy:unix:{sock}|fcgi://localhost"
    Require all granted
</Location>
"#,
            url = self.url,
            script = self.dir.path().join("www/upload/upload.php").display(),
            sock = self.dir.path().join("run/php-fpm.sock").display(),
        )
    }

    /// Status of a test GET for a chunk nobody has: 204 from resumable-cgi, 404 from the PHP sample.
    pub fn probe_missing_status(&self) -> u16 {
        let target = format!(
            "{}?resumableChunkNumber=1&resumableChunkSize=1048576&resumableCurrentChunkSize=10&resumableTotalSize=10&resumableType=&resumableIdentifier=probe-{}&resumableFilename=probe.bin&resumableRelativePath=probe.bin&resumableTotalChunks=1",
            self.url,
            free_port()
        );
        http::request(
            &self.origin(),
            "GET",
            &target,
            &[],
            &[],
            Duration::from_secs(10),
        )
        .status
    }
}
