//! Settings from an environment-like source (process env, or FastCGI params over it), validated.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::store::publish::{PublishConfig, S3Target};

pub const TEMP_DIR: &str = "RESUMABLE_TEMP_DIR";
pub const UPLOAD_DIR: &str = "RESUMABLE_UPLOAD_DIR";
pub const MAX_FILE_SIZE: &str = "RESUMABLE_MAX_FILE_SIZE";
pub const MAX_CHUNK_SIZE: &str = "RESUMABLE_MAX_CHUNK_SIZE";
pub const MISSING_CHUNK_STATUS: &str = "RESUMABLE_MISSING_CHUNK_STATUS";
pub const LOG_LEVEL: &str = "RESUMABLE_LOG";
pub const PUBLISH_URL: &str = "RESUMABLE_PUBLISH_URL";
pub const KEEP_LOCAL: &str = "RESUMABLE_KEEP_LOCAL";
pub const S3_VIRTUAL_HOSTED: &str = "RESUMABLE_S3_VIRTUAL_HOSTED";

/// Every setting with its default and meaning, for `--help` and the man page.
pub const DOCUMENTED: &[(&str, &str, &str)] = &[
    (
        TEMP_DIR,
        "temp",
        "where parts are kept until a file is complete; must exist",
    ),
    (
        UPLOAD_DIR,
        "uploads",
        "where finished files are published; must exist",
    ),
    (
        MAX_FILE_SIZE,
        "10G",
        "largest declared file size (bytes, or with a K/M/G/T suffix)",
    ),
    (
        MAX_CHUNK_SIZE,
        "64M",
        "largest nominal chunk size; a body may be up to twice that plus 1 MiB",
    ),
    (
        MISSING_CHUNK_STATUS,
        "204",
        "what a test request answers for a chunk that is not stored",
    ),
    (
        LOG_LEVEL,
        "info",
        "log level on stderr: off, error, warn, info, debug or trace",
    ),
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
    PUBLISH_URL,
    KEEP_LOCAL,
    S3_VIRTUAL_HOSTED,
];

const DEFAULT_MAX_FILE_SIZE: u64 = 10 << 30;
const DEFAULT_MAX_CHUNK_SIZE: u64 = 64 << 20;

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
            max_file_size: size(MAX_FILE_SIZE, DEFAULT_MAX_FILE_SIZE)?,
            max_chunk_size: size(MAX_CHUNK_SIZE, DEFAULT_MAX_CHUNK_SIZE)?,
            missing_chunk_status,
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
    fn defaults_match_the_php_script() {
        let config = config_from(&[]).unwrap();
        assert_eq!(config.temp_dir, PathBuf::from("temp"));
        assert_eq!(config.upload_dir, PathBuf::from("uploads"));
        assert_eq!(config.missing_chunk_status, 204);
        assert_eq!(config.max_chunk_size, 64 << 20);
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
