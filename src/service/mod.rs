//! The only place where protocol and store meet: built once from a validated [`Config`], it
//! turns one [`Request`] into one [`Response`], whichever transport carried it. Routing and
//! the log line live here; each kind of upload has its own flow beside it.

mod blueimp;
mod chunked;
pub mod completion;
pub mod cors;
mod form;
mod tus;

use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::protocol::{self, ChunkDialect, Params};
use crate::request::{Head, Method, Request, Response};
use crate::store::{FsStore, UploadStore};

/// The upload endpoint: settings plus the store they name.
pub struct Service {
    config: Config,
    store: Box<dyn UploadStore>,
}

/// A response and a short description of what was done, for the log line.
struct Handled {
    response: Response,
    summary: String,
}

/// An error, and the dialect whose client must be told (when it was known by then).
struct Failure {
    error: Error,
    dialect: Option<&'static dyn ChunkDialect>,
}

impl<E: Into<Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure {
            error: error.into(),
            dialect: None,
        }
    }
}

impl Service {
    pub fn new(config: Config) -> Service {
        let store = Box::new(
            FsStore::new(&config.temp_dir, &config.upload_dir).publishing(config.publish.clone()),
        );
        Service { config, store }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where a stored file (relative to the upload dir) can be downloaded, when
    /// RESUMABLE_PUBLIC_URL says where the upload dir is served.
    fn public_url(&self, stored: &str) -> Option<String> {
        let prefix = self.config.public_url.as_deref()?;
        Some(crate::escape::public_url(prefix, stored))
    }

    /// A service for one request whose settings override some of these (FastCGI params named
    /// like a `RESUMABLE_*` variable). `lookup` answers the overriding value or the base one.
    pub fn with_overrides(
        &self,
        lookup: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Service, ConfigError> {
        Config::from_lookup(lookup).map(Service::new)
    }

    /// Handles one request. Never panics on request input; every failure becomes a response
    /// and one log line. With a CORS policy, a preflight is answered here and every answer
    /// says which origins may read it.
    pub fn handle(&self, request: Request) -> Response {
        let Some(cors) = &self.config.cors else {
            return self.answer(request);
        };
        if let Some(preflight) = cors.preflight(&request.head) {
            log::info!(
                "OPTIONS preflight from {} -> {}",
                request.head.header("origin").unwrap_or_default(),
                preflight.status
            );
            return preflight;
        }
        let origin = request.head.header("origin").map(str::to_string);
        cors.decorate(origin.as_deref(), self.answer(request))
    }

    fn answer(&self, request: Request) -> Response {
        let method = request.head.method.clone();
        let is_tus = tus::claims(&request.head);
        let response = match self.route(request) {
            Ok(Handled { response, summary }) => {
                log::info!("{} {summary} -> {}", method.as_str(), response.status);
                response
            }
            Err(Failure { error, dialect }) => {
                let response = match dialect {
                    Some(dialect) => dialect.refuse(&error),
                    None => error.to_response(),
                };
                self.log_failure(&method, response.status, &error);
                response
            }
        };
        match is_tus {
            true => tus::decorate(response),
            false => response,
        }
    }

    /// Answers a request whose settings were invalid: that request's 500, with the log line
    /// naming the variable.
    pub fn refuse_misconfigured(method: &Method, error: ConfigError) -> Response {
        let error = Error::Config(error);
        let response = error.to_response();
        log::error!("{} -> {}: {error}", method.as_str(), response.status);
        response
    }

    fn log_failure(&self, method: &Method, status: u16, error: &Error) {
        if status < 500 {
            log::warn!("{} -> {status}: {error}", method.as_str());
            return;
        }
        // An operator reading the error log needs to know which directories were meant: the
        // OS error ("Read-only file system") alone does not say.
        let dirs = match error {
            Error::Store(_) => format!(
                " (temp dir {}, upload dir {})",
                self.config.temp_dir.display(),
                self.config.upload_dir.display()
            ),
            _ => String::new(),
        };
        log::error!("{} -> {status}: {error}{dirs}", method.as_str());
    }

    /// The query's parameters, read through the configured parameter namespace.
    fn params_of(&self, head: &Head) -> Params {
        Params::from_query(&head.query).with_namespace(&self.config.parameter_namespace)
    }

    fn route(&self, request: Request) -> Result<Handled, Failure> {
        if request.head.method == Method::Options {
            return Ok(Handled {
                response: tus::options(&self.config),
                summary: "options".into(),
            });
        }
        if tus::claims(&request.head) {
            return self.tus(request);
        }
        match request.head.method {
            Method::Get | Method::Head => {
                let params = self.params_of(&request.head);
                if protocol::detect(&params, &request.head).is_none() {
                    if let Some(name) = protocol::blueimp::resume_name(&params) {
                        return self.blueimp_resume(&name, &request.head);
                    }
                }
                self.probe(&params, &request.head)
            }
            Method::Post | Method::Put | Method::Patch
                if protocol::blueimp::recognizes(&request.head) =>
            {
                self.blueimp_chunk(request)
            }
            Method::Post | Method::Put => self.receive(request),
            Method::Patch | Method::Delete | Method::Options | Method::Other(_) => {
                Err(Error::MethodNotAllowed(request.head.method.as_str().to_string()).into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::request::Head;

    fn service(root: &std::path::Path, extra: &[(&str, &str)]) -> Result<Service, ConfigError> {
        let temp = root.join("temp").to_string_lossy().into_owned();
        let uploads = root.join("uploads").to_string_lossy().into_owned();
        let mut pairs = vec![
            ("RESUMABLE_TEMP_DIR".to_string(), temp),
            ("RESUMABLE_UPLOAD_DIR".to_string(), uploads),
        ];
        pairs.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        Config::from_lookup(&|name| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone().into_bytes())
        })
        .map(Service::new)
    }

    fn send(service: &Service, method: &str, query: &str, body: &[u8]) -> Response {
        let mut head = Head::from_cgi_vars([
            ("REQUEST_METHOD".to_string(), method.to_string()),
            ("QUERY_STRING".to_string(), query.to_string()),
        ]);
        head.content_length = Some(body.len() as u64);
        let mut body = Cursor::new(body.to_vec());
        service.handle(Request {
            head,
            body: &mut body,
        })
    }

    const CHUNK: &str = "flowChunkNumber=1&flowChunkSize=8&flowCurrentChunkSize=3&flowTotalSize=3&flowIdentifier=x&flowFilename=x.txt";

    #[test]
    fn overrides_derive_a_service_for_one_request() {
        let root = tempfile::tempdir().unwrap();
        let base = service(root.path(), &[]).unwrap();
        let derived = base
            .with_overrides(&|name| (name == "RESUMABLE_MAX_FILE_SIZE").then(|| b"2".to_vec()))
            .unwrap();
        assert_eq!(derived.config().max_file_size, 2);
        assert_ne!(base.config().max_file_size, 2);
        let bad = base
            .with_overrides(&|name| (name == "RESUMABLE_MAX_FILE_SIZE").then(|| b"12Q".to_vec()));
        assert_eq!(bad.err().map(|e| e.name), Some("RESUMABLE_MAX_FILE_SIZE"));
        let refused = Service::refuse_misconfigured(
            &Method::Get,
            ConfigError {
                name: "RESUMABLE_LOG",
                value: "loud".into(),
                reason: "bad",
            },
        );
        assert_eq!(refused.status, 500);
    }

    #[test]
    fn missing_directories_are_a_500_before_the_body_is_read() {
        let root = tempfile::tempdir().unwrap();
        let service = service(root.path(), &[]).unwrap();
        let response = send(&service, "POST", CHUNK, b"abc");
        assert_eq!(response.status, 500);
        assert!(String::from_utf8_lossy(response.bytes()).contains("could not store"));
    }

    #[test]
    fn a_chunk_then_its_test_then_a_refused_method() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("temp")).unwrap();
        std::fs::create_dir(root.path().join("uploads")).unwrap();
        let service = service(root.path(), &[]).unwrap();
        assert_eq!(send(&service, "GET", CHUNK, b"").status, 204);
        let stored = send(&service, "PUT", CHUNK, b"abc");
        assert_eq!(stored.status, 200);
        assert!(String::from_utf8_lossy(stored.bytes()).contains("\"complete\":true"));
        assert_eq!(
            std::fs::read(root.path().join("uploads/x.txt")).unwrap(),
            b"abc"
        );
        assert_eq!(send(&service, "HEAD", CHUNK, b"").status, 200);
        let refused = send(&service, "DELETE", CHUNK, b"");
        assert_eq!(refused.status, 405);
        assert_eq!(refused.header("Allow"), Some(crate::error::ALLOWED_METHODS));
    }
}
