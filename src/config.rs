//! Settings from an environment-like source (process env, or FastCGI params over it), validated.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::service::cors::CorsPolicy;
pub use crate::store::space::MinFreeSpace;

use crate::store::remote::{PublishConfig, S3Target};

pub const TEMP_DIR: &str = "RESUMABLE_TEMP_DIR";
pub const UPLOAD_DIR: &str = "RESUMABLE_UPLOAD_DIR";
pub const MAX_FILE_SIZE: &str = "RESUMABLE_MAX_FILE_SIZE";
pub const MAX_CHUNK_SIZE: &str = "RESUMABLE_MAX_CHUNK_SIZE";
pub const MISSING_CHUNK_STATUS: &str = "RESUMABLE_MISSING_CHUNK_STATUS";
pub const LOG_LEVEL: &str = "RESUMABLE_LOG";
pub const MAX_FILE_UPLOADS: &str = "RESUMABLE_MAX_FILE_UPLOADS";
pub const MAX_POST_SIZE: &str = "RESUMABLE_MAX_POST_SIZE";
pub const FORM_REDIRECT: &str = "RESUMABLE_FORM_REDIRECT";
pub const PUBLIC_URL: &str = "RESUMABLE_PUBLIC_URL";
pub const PARAMETER_NAMESPACE: &str = "RESUMABLE_PARAMETER_NAMESPACE";
pub const TUS_BASE_URL: &str = "RESUMABLE_TUS_BASE_URL";
pub const EXPIRE_AFTER: &str = "RESUMABLE_EXPIRE_AFTER";
pub const ON_COMPLETE: &str = "RESUMABLE_ON_COMPLETE";
pub const HOOK_TIMEOUT: &str = "RESUMABLE_HOOK_TIMEOUT";
pub const CORS_ORIGINS: &str = "RESUMABLE_CORS_ORIGINS";
pub const CORS_CREDENTIALS: &str = "RESUMABLE_CORS_CREDENTIALS";
pub const MIN_FREE_SPACE: &str = "RESUMABLE_MIN_FREE_SPACE";
pub const IO_TIMEOUT: &str = "RESUMABLE_IO_TIMEOUT";
pub const PUBLISH_URL: &str = "RESUMABLE_PUBLISH_URL";
pub const KEEP_LOCAL: &str = "RESUMABLE_KEEP_LOCAL";
pub const S3_VIRTUAL_HOSTED: &str = "RESUMABLE_S3_VIRTUAL_HOSTED";

/// Every setting with its default and meaning, for `--help` and the man page.
pub const DOCUMENTED: &[(&str, &str, &str)] = &[
    (
        TEMP_DIR,
        "temp",
        "Where the parts of an upload are kept until the file is complete, relative to the \
         working directory unless absolute. Must exist and be writable.",
    ),
    (
        UPLOAD_DIR,
        "uploads",
        "Where finished files are published (the folders of the client's relative path are \
         kept). Must exist and be writable. Files are assembled in its .resumable-staging/ \
         folder and then linked to their name; an existing file is never replaced \
         (\"name (1).ext\" is used instead).",
    ),
    (
        MAX_FILE_SIZE,
        "10G",
        "Largest declared file size; larger files are refused with 415. Bytes, or with a K, M, \
         G or T suffix (binary multiples).",
    ),
    (
        MAX_CHUNK_SIZE,
        "64M",
        "Largest nominal chunk size (the client's chunkSize). One request body may carry up to \
         twice that (the last chunk) plus 1 MiB of multipart framing; a larger body is refused \
         with 415 before it is read. Web server body limits must allow as much.",
    ),
    (
        MISSING_CHUNK_STATUS,
        "204",
        "What a test request answers for a chunk that is not stored: 204 works with every \
         client; 404 reproduces the classic PHP script (and makes flow.js 2.8 and later fail \
         the file).",
    ),
    (
        LOG_LEVEL,
        "info",
        "Log level on standard error: off, error, warn, info (one line per request), debug or \
         trace. Read from the process environment only.",
    ),
    (
        MAX_FILE_UPLOADS,
        "20",
        "most files one form upload stores (PHP's max_file_uploads)",
    ),
    (
        MAX_POST_SIZE,
        "RESUMABLE_MAX_FILE_SIZE",
        "largest form upload body; larger is 413",
    ),
    (
        FORM_REDIRECT,
        "none",
        "where a browser's form post is sent (303) once every file is stored",
    ),
    (
        PUBLIC_URL,
        "none",
        "URL prefix of the upload dir; answers then carry each file's \"url\"",
    ),
    (
        PARAMETER_NAMESPACE,
        "none",
        "the prefix a resumable.js page sets as parameterNamespace; fields are read with or without it",
    ),
    (
        TUS_BASE_URL,
        "SCRIPT_NAME",
        "URL prefix of tus upload URLs (Location: <prefix>/<id>), behind a proxy that rewrites paths",
    ),
    (
        EXPIRE_AFTER,
        "48h",
        "how long an untouched upload is kept (tus Upload-Expires; cleanup's default age)",
    ),
    (ON_COMPLETE, "(none)", "absolute path of a program run on each finished file before it is published (no shell); exit 0 publishes, non-zero discards"),
    (HOOK_TIMEOUT, "60", "seconds the completion program may run before it is killed with its process group (the client is told to retry)"),
    (CORS_ORIGINS, "(none)", "space-separated origins (https://app.example) allowed to upload from their pages, or *"),
    (CORS_CREDENTIALS, "0", "1: let those origins send cookies and HTTP auth (Access-Control-Allow-Credentials; not with *)"),
    (MIN_FREE_SPACE, "1%", "a new upload that would leave less free on the temp or upload filesystem is answered 503 (bytes with K/M/G/T, or a percentage; 0 turns it off)"),
    (IO_TIMEOUT, "120", "FastCGI worker: seconds a read or write on a connection may stall before it is closed"),
    (
        PUBLISH_URL,
        "",
        "s3://bucket/prefix: also publish finished files there (AWS_* settings)",
    ),
    (
        KEEP_LOCAL,
        "0",
        "1: keep the local copy of a file published to the object store",
    ),
    (
        S3_VIRTUAL_HOSTED,
        "0",
        "1: address a custom AWS_ENDPOINT_URL as bucket.host, not host/bucket",
    ),
];

/// Every name this program reads; a FastCGI param may override exactly these.
pub const ALL_NAMES: &[&str] = &[
    TEMP_DIR,
    UPLOAD_DIR,
    MAX_FILE_SIZE,
    MAX_CHUNK_SIZE,
    MISSING_CHUNK_STATUS,
    LOG_LEVEL,
    MAX_FILE_UPLOADS,
    MAX_POST_SIZE,
    FORM_REDIRECT,
    PUBLIC_URL,
    PARAMETER_NAMESPACE,
    TUS_BASE_URL,
    EXPIRE_AFTER,
    ON_COMPLETE,
    HOOK_TIMEOUT,
    CORS_ORIGINS,
    CORS_CREDENTIALS,
    MIN_FREE_SPACE,
    IO_TIMEOUT,
    PUBLISH_URL,
    KEEP_LOCAL,
    S3_VIRTUAL_HOSTED,
];

const DEFAULT_MAX_FILE_SIZE: u64 = 10 << 30;
const DEFAULT_MAX_CHUNK_SIZE: u64 = 64 << 20;
const DEFAULT_MAX_FILE_UPLOADS: u32 = 20;
/// The most file parts a body may carry at all (each is listed in the answer).
const MAX_FILE_PARTS: u32 = crate::protocol::multipart::MAX_FILE_PARTS as u32;
const DEFAULT_EXPIRE_AFTER: std::time::Duration = std::time::Duration::from_secs(48 * 3600);
/// The longest timeout a setting may ask for: a day.
const MAX_SECONDS: u64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub temp_dir: PathBuf,
    pub upload_dir: PathBuf,
    /// Largest `totalSize` accepted; larger files are refused with 415.
    pub max_file_size: u64,
    /// Largest nominal `chunkSize` accepted. The last chunk in floor mode may be up to twice it.
    pub max_chunk_size: u64,
    /// What a test request answers for a chunk that is not stored (204, or 404 like the PHP script).
    pub missing_chunk_status: u16,
    /// Most files one form upload stores; later file parts are listed, not stored.
    pub max_file_uploads: u32,
    /// Largest body of a form upload; a larger CONTENT_LENGTH is answered 413 unread.
    pub max_post_size: u64,
    /// Where a browser that posted a form is sent (303) once every file was stored.
    pub form_redirect: Option<String>,
    /// The URL the upload dir is served under, ending in `/`: answers then carry file URLs.
    pub public_url: Option<String>,
    /// resumable.js `parameterNamespace`: a prefix on every field name (empty: none).
    pub parameter_namespace: String,
    /// The prefix of tus upload URLs; `None`: the request's SCRIPT_NAME.
    pub tus_base_url: Option<String>,
    /// How long an upload nobody touches is kept: tus answers `Upload-Expires` from it and
    /// `cleanup` removes what is older by default.
    pub expire_after: std::time::Duration,
    /// The program run on each finished file before it is published, if any.
    pub on_complete: Option<PathBuf>,
    /// How long that program may run.
    pub hook_timeout: Duration,
    /// Which other origins may upload, when any.
    pub cors: Option<CorsPolicy>,
    /// What a new upload must leave free on the temp and upload filesystems.
    pub min_free_space: MinFreeSpace,
    /// The FastCGI worker's per-read and per-write stall limit.
    pub io_timeout: Duration,
    /// Every `RESUMABLE_*` variable that was set, as given: the completion program gets them.
    pub settings: Vec<(&'static str, Vec<u8>)>,
    /// Where finished files are published besides the upload dir (RESUMABLE_PUBLISH_URL).
    pub publish: Option<PublishConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid setting {}={:?}: {}",
            self.name, self.value, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the settings through `lookup`, which answers the raw bytes of a variable.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<Config, ConfigError> {
        let text = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup(name) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes)
                    .map(|s| Some(s.trim().to_string()))
                    .map_err(|e| ConfigError {
                        name,
                        value: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                        reason: "not valid UTF-8",
                    }),
            }
        };
        let dir = |name: &'static str, default: &str| -> Result<PathBuf, ConfigError> {
            match lookup(name) {
                None => Ok(PathBuf::from(default)),
                Some(bytes) if bytes.is_empty() || bytes.contains(&0) => Err(ConfigError {
                    name,
                    value: String::from_utf8_lossy(&bytes).into_owned(),
                    reason: "must be a non-empty path",
                }),
                Some(bytes) => Ok(PathBuf::from(OsStr::from_bytes(&bytes))),
            }
        };
        let size = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match text(name)? {
                None => Ok(default),
                Some(value) => parse_size(&value).ok_or(ConfigError {
                    name,
                    value,
                    reason: "expected a positive byte count such as 1048576, 512K, 64M or 4G",
                }),
            }
        };
        let missing_chunk_status = match text(MISSING_CHUNK_STATUS)? {
            None => 204,
            Some(value) => match value.parse::<u16>() {
                Ok(status) if status != 200 && (201..=599).contains(&status) => status,
                _ => {
                    return Err(ConfigError {
                        name: MISSING_CHUNK_STATUS,
                        value,
                        reason: "expected an HTTP status other than 200, such as 204 or 404",
                    })
                }
            },
        };
        if let Some(value) = text(LOG_LEVEL)? {
            if log_level_filter(&value).is_none() {
                return Err(ConfigError {
                    name: LOG_LEVEL,
                    value,
                    reason: "expected off, error, warn, info, debug or trace",
                });
            }
        }
        let max_file_uploads = match text(MAX_FILE_UPLOADS)? {
            None => DEFAULT_MAX_FILE_UPLOADS,
            Some(value) => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_FILE_PARTS).contains(&n) => n,
                _ => {
                    return Err(ConfigError {
                        name: MAX_FILE_UPLOADS,
                        value,
                        reason: "expected a whole number from 1 to 1000",
                    })
                }
            },
        };
        // A URL goes into a Location header or a JSON answer: no control characters, and a
        // shape a browser resolves (absolute, or a path on this host).
        let url = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match text(name)? {
                None => Ok(None),
                Some(value)
                    if !value.is_empty()
                        && !value.chars().any(char::is_control)
                        && (value.starts_with("http://")
                            || value.starts_with("https://")
                            || value.starts_with('/')) =>
                {
                    Ok(Some(value))
                }
                Some(value) => Err(ConfigError {
                    name,
                    value,
                    reason: "expected an http:// or https:// URL, or a path starting with /",
                }),
            }
        };
        let max_file_size = size(MAX_FILE_SIZE, DEFAULT_MAX_FILE_SIZE)?;
        let expire_after = match text(EXPIRE_AFTER)? {
            None => DEFAULT_EXPIRE_AFTER,
            Some(value) => crate::cli::parse_age(&value)
                .ok()
                .filter(|age| !age.is_zero())
                .ok_or(ConfigError {
                    name: EXPIRE_AFTER,
                    value,
                    reason: "expected an age such as 48h, 7d, 30m or 90 (seconds)",
                })?,
        };
        let tus_base_url = match text(TUS_BASE_URL)? {
            None => None,
            Some(value) if value.bytes().any(|b| b.is_ascii_control()) || value.is_empty() => {
                return Err(ConfigError {
                    name: TUS_BASE_URL,
                    value,
                    reason: "expected a URL or path such as https://example.com/upload",
                })
            }
            Some(value) => Some(value),
        };
        let seconds = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match text(name)? {
                None => Ok(Duration::from_secs(default)),
                Some(value) => match crate::protocol::params::parse_decimal(&value) {
                    Some(n) if (1..=MAX_SECONDS).contains(&n) => Ok(Duration::from_secs(n)),
                    _ => Err(ConfigError {
                        name,
                        value,
                        reason: "expected whole seconds from 1 to 86400",
                    }),
                },
            }
        };
        let invalid = |name: &'static str, value: String, reason: &'static str| ConfigError {
            name,
            value,
            reason,
        };
        let on_complete = match lookup(ON_COMPLETE) {
            None => None,
            Some(bytes) if bytes.is_empty() => None,
            Some(bytes) if bytes.first() != Some(&b'/') || bytes.contains(&0) => {
                let value = String::from_utf8_lossy(&bytes).into_owned();
                return Err(invalid(
                    ON_COMPLETE,
                    value,
                    "expected the absolute path of a program",
                ));
            }
            Some(bytes) => Some(PathBuf::from(OsStr::from_bytes(&bytes))),
        };
        let credentials = match text(CORS_CREDENTIALS)?.as_deref() {
            None | Some("" | "0") => false,
            Some("1") => true,
            Some(other) => return Err(invalid(CORS_CREDENTIALS, other.into(), "expected 0 or 1")),
        };
        let cors = match text(CORS_ORIGINS)? {
            None => None,
            Some(value) => CorsPolicy::parse(&value, credentials)
                .map_err(|reason| invalid(CORS_ORIGINS, value.clone(), reason))?,
        };
        let min_free_space = match text(MIN_FREE_SPACE)? {
            None => MinFreeSpace::DEFAULT,
            Some(value) => MinFreeSpace::parse(&value).ok_or_else(|| {
                invalid(
                    MIN_FREE_SPACE,
                    value.clone(),
                    "expected bytes such as 512M or 2G, a percentage such as 5%, or 0",
                )
            })?,
        };
        let flag = |name: &'static str| -> Result<bool, ConfigError> {
            match text(name)?.as_deref() {
                None | Some("" | "0") => Ok(false),
                Some("1") => Ok(true),
                Some(other) => Err(ConfigError {
                    name,
                    value: other.to_string(),
                    reason: "expected 0 or 1",
                }),
            }
        };
        let publish = match text(PUBLISH_URL)? {
            None => None,
            Some(url) if url.is_empty() => None,
            Some(url) => Some(PublishConfig {
                target: S3Target::parse(&url, flag(S3_VIRTUAL_HOSTED)?).map_err(|reason| {
                    ConfigError {
                        name: PUBLISH_URL,
                        value: url.clone(),
                        reason,
                    }
                })?,
                keep_local: flag(KEEP_LOCAL)?,
            }),
        };
        let config = Config {
            temp_dir: dir(TEMP_DIR, "temp")?,
            upload_dir: dir(UPLOAD_DIR, "uploads")?,
            max_file_size,
            max_chunk_size: size(MAX_CHUNK_SIZE, DEFAULT_MAX_CHUNK_SIZE)?,
            missing_chunk_status,
            max_file_uploads,
            max_post_size: size(MAX_POST_SIZE, max_file_size)?,
            form_redirect: url(FORM_REDIRECT)?,
            // The stored path is appended to it: a prefix without its slash would glue the
            // two together.
            public_url: url(PUBLIC_URL)?.map(|mut prefix| {
                if !prefix.ends_with('/') {
                    prefix.push('/');
                }
                prefix
            }),
            parameter_namespace: namespace(text(PARAMETER_NAMESPACE)?)?,
            tus_base_url,
            expire_after,
            on_complete,
            hook_timeout: seconds(HOOK_TIMEOUT, 60)?,
            cors,
            min_free_space,
            io_timeout: seconds(IO_TIMEOUT, 120)?,
            settings: ALL_NAMES
                .iter()
                .filter_map(|&name| lookup(name).map(|value| (name, value)))
                .collect(),
            publish,
        };
        Ok(config)
    }

    /// The settings from the process environment alone.
    pub fn from_process_env() -> Result<Config, ConfigError> {
        Config::from_lookup(&process_env_lookup)
    }

    /// The most bytes a request body may carry: the largest last chunk (2 x chunk size - 1 in
    /// floor mode, capped by the file size) plus room for multipart framing and text fields.
    pub fn max_body_size(&self) -> u64 {
        let largest_chunk = self
            .max_chunk_size
            .saturating_mul(2)
            .min(self.max_file_size.max(1));
        largest_chunk.saturating_add(MULTIPART_OVERHEAD)
    }
}

/// Longest `RESUMABLE_PARAMETER_NAMESPACE`: a prefix on field names, not a place for data.
const MAX_NAMESPACE: usize = 64;

fn namespace(value: Option<String>) -> Result<String, ConfigError> {
    match value {
        None => Ok(String::new()),
        Some(value) if value.len() <= MAX_NAMESPACE && !value.chars().any(char::is_control) => {
            Ok(value)
        }
        Some(value) => Err(ConfigError {
            name: PARAMETER_NAMESPACE,
            value,
            reason: "expected the parameterNamespace of the page: at most 64 bytes, no control characters",
        }),
    }
}

/// Slack allowed on top of the chunk bytes for multipart boundaries, part headers and fields.
pub const MULTIPART_OVERHEAD: u64 = 1 << 20;

pub fn process_env_lookup(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(|v| v.as_bytes().to_vec())
}

/// `1048576`, `512K`, `64M`, `4G`, `1T` (binary multiples, case-insensitive, optional `B`/`iB`).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let stripped = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match stripped.chars().last()? {
        'k' => (&stripped[..stripped.len() - 1], 10),
        'm' => (&stripped[..stripped.len() - 1], 20),
        'g' => (&stripped[..stripped.len() - 1], 30),
        't' => (&stripped[..stripped.len() - 1], 40),
        _ => (stripped, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    let bytes = value.checked_mul(1u64 << shift)?;
    (bytes > 0).then_some(bytes)
}

pub fn log_level_filter(text: &str) -> Option<log::LevelFilter> {
    text.trim().parse().ok()
}

/// Sets up `env_logger` on stderr. The level comes from `RESUMABLE_LOG` (default `info`), because
/// web servers rarely pass `RUST_LOG` through to a CGI program.
pub fn init_logging() {
    let level = std::env::var(LOG_LEVEL)
        .ok()
        .and_then(|v| log_level_filter(&v))
        .unwrap_or(log::LevelFilter::Info);
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .format_target(false)
        .target(env_logger::Target::Stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, Vec<u8>> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        Config::from_lookup(&|name| map.get(name).cloned())
    }

    #[test]
    fn every_setting_is_documented_once() {
        let mut documented: Vec<&str> = DOCUMENTED.iter().map(|(name, _, _)| *name).collect();
        let mut read = ALL_NAMES.to_vec();
        documented.sort_unstable();
        read.sort_unstable();
        assert_eq!(documented, read);
    }

    #[test]
    fn defaults_match_the_php_script() {
        let config = config_from(&[]).unwrap();
        assert_eq!(config.temp_dir, PathBuf::from("temp"));
        assert_eq!(config.upload_dir, PathBuf::from("uploads"));
        assert_eq!(config.missing_chunk_status, 204);
        assert_eq!(config.max_chunk_size, 64 << 20);
        assert_eq!(config.max_file_uploads, 20);
        assert_eq!(config.max_post_size, config.max_file_size);
        assert_eq!((config.form_redirect, config.public_url), (None, None));
        assert_eq!(config.parameter_namespace, "");
        assert_eq!(config.expire_after.as_secs(), 48 * 3600);
        assert_eq!(config.tus_base_url, None);
        assert_eq!(config.on_complete, None);
        assert_eq!(config.hook_timeout, Duration::from_secs(60));
        assert_eq!(config.cors, None);
        assert_eq!(config.min_free_space, MinFreeSpace::BasisPoints(100));
        assert_eq!(config.io_timeout, Duration::from_secs(120));
    }

    #[test]
    fn form_settings() {
        let config = config_from(&[
            (MAX_FILE_SIZE, "1G"),
            (MAX_FILE_UPLOADS, "3"),
            (PUBLIC_URL, "https://example.com/files"),
            (FORM_REDIRECT, "/thanks.html"),
        ])
        .unwrap();
        assert_eq!(config.max_post_size, 1 << 30, "follows the file size");
        assert_eq!(config.max_file_uploads, 3);
        assert_eq!(
            config.public_url.as_deref(),
            Some("https://example.com/files/")
        );
        assert_eq!(config.form_redirect.as_deref(), Some("/thanks.html"));
        assert_eq!(
            config_from(&[(MAX_POST_SIZE, "8M")]).unwrap().max_post_size,
            8 << 20
        );
        for (name, bad) in [
            (MAX_FILE_UPLOADS, "0"),
            (MAX_FILE_UPLOADS, "1001"),
            (MAX_FILE_UPLOADS, "many"),
            (MAX_POST_SIZE, "0"),
            (FORM_REDIRECT, "/ok\r\nSet-Cookie: x=1"),
            (FORM_REDIRECT, "javascript:alert(1)"),
            (PUBLIC_URL, "files/"),
        ] {
            assert_eq!(config_from(&[(name, bad)]).unwrap_err().name, name, "{bad}");
        }
    }

    #[test]
    fn the_namespace_is_taken_as_written() {
        let config = config_from(&[(PARAMETER_NAMESPACE, "up_")]).unwrap();
        assert_eq!(config.parameter_namespace, "up_");
        let long = "n".repeat(65);
        assert_eq!(
            config_from(&[(PARAMETER_NAMESPACE, &long)])
                .unwrap_err()
                .name,
            PARAMETER_NAMESPACE
        );
    }

    #[test]
    fn tus_settings() {
        let config = config_from(&[(EXPIRE_AFTER, "7d"), (TUS_BASE_URL, "/files")]).unwrap();
        assert_eq!(config.expire_after.as_secs(), 7 * 86_400);
        assert_eq!(config.tus_base_url.as_deref(), Some("/files"));
        for bad in ["0", "soon", "-1h"] {
            assert_eq!(
                config_from(&[(EXPIRE_AFTER, bad)]).unwrap_err().name,
                EXPIRE_AFTER
            );
        }
        assert_eq!(
            config_from(&[(TUS_BASE_URL, "/a\nb")]).unwrap_err().name,
            TUS_BASE_URL
        );
    }

    #[test]
    fn operations_settings() {
        let config = config_from(&[
            (ON_COMPLETE, "/usr/local/bin/scan"),
            (HOOK_TIMEOUT, "5"),
            (CORS_ORIGINS, "https://app.example"),
            (CORS_CREDENTIALS, "1"),
            (MIN_FREE_SPACE, "2G"),
            (IO_TIMEOUT, "30"),
        ])
        .unwrap();
        assert_eq!(
            config.on_complete,
            Some(PathBuf::from("/usr/local/bin/scan"))
        );
        assert_eq!(config.hook_timeout, Duration::from_secs(5));
        assert!(config.cors.is_some());
        assert_eq!(config.min_free_space, MinFreeSpace::Bytes(2 << 30));
        assert_eq!(config.io_timeout, Duration::from_secs(30));
        // the hook gets exactly the settings that were set
        assert!(config
            .settings
            .iter()
            .any(|(n, v)| *n == HOOK_TIMEOUT && v == b"5"));
        assert!(!config.settings.iter().any(|(n, _)| *n == MAX_FILE_SIZE));
        for (name, bad) in [
            (ON_COMPLETE, "scan.sh"),
            (HOOK_TIMEOUT, "0"),
            (HOOK_TIMEOUT, "1.5"),
            (IO_TIMEOUT, "86401"),
            (CORS_ORIGINS, "app.example"),
            (CORS_CREDENTIALS, "yes"),
            (MIN_FREE_SPACE, "lots"),
        ] {
            assert_eq!(config_from(&[(name, bad)]).unwrap_err().name, name, "{bad}");
        }
        let star = config_from(&[(CORS_ORIGINS, "*"), (CORS_CREDENTIALS, "1")]).unwrap_err();
        assert_eq!(star.name, CORS_ORIGINS);
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        for bad in [
            "",
            "0",
            "-1",
            "1.5M",
            "0x10",
            "M",
            "99999999999999999999",
            "16777216T",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let err = config_from(&[(MAX_CHUNK_SIZE, "lots")]).unwrap_err();
        assert_eq!(err.name, MAX_CHUNK_SIZE);
        assert!(err.to_string().contains("RESUMABLE_MAX_CHUNK_SIZE"));
        assert_eq!(
            config_from(&[(MISSING_CHUNK_STATUS, "200")])
                .unwrap_err()
                .name,
            MISSING_CHUNK_STATUS
        );
        assert_eq!(
            config_from(&[(LOG_LEVEL, "loud")]).unwrap_err().name,
            LOG_LEVEL
        );
        assert_eq!(config_from(&[(TEMP_DIR, "")]).unwrap_err().name, TEMP_DIR);
        assert_eq!(
            config_from(&[(PUBLISH_URL, "https://x")]).unwrap_err().name,
            PUBLISH_URL
        );
        assert_eq!(
            config_from(&[(PUBLISH_URL, "s3://b-1/p"), (KEEP_LOCAL, "yes")])
                .unwrap_err()
                .name,
            KEEP_LOCAL
        );
        let publishing = config_from(&[(PUBLISH_URL, "s3://b-1/p/"), (KEEP_LOCAL, "1")])
            .unwrap()
            .publish
            .unwrap();
        assert_eq!(publishing.target.prefix, "p");
        assert!(publishing.keep_local && !publishing.target.virtual_hosted);
        assert_eq!(
            config_from(&[(MISSING_CHUNK_STATUS, "404")])
                .unwrap()
                .missing_chunk_status,
            404
        );
    }
}
