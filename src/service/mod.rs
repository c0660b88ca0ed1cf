//! The only place where protocol and store meet: built once from a validated [`Config`], it
//! turns one [`Request`] into one [`Response`], whichever transport carried it. Routing and
//! the log line live here; each kind of upload has its own flow beside it.

mod chunked;

use crate::config::{Config, ConfigError};
use crate::error::{Error, ALLOWED_METHODS};
use crate::protocol::{ChunkDialect, Params};
use crate::request::{Method, Request, Response};
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

    /// A service for one request whose settings override some of these (FastCGI params named
    /// like a `RESUMABLE_*` variable). `lookup` answers the overriding value or the base one.
    pub fn with_overrides(
        &self,
        lookup: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Service, ConfigError> {
        Config::from_lookup(lookup).map(Service::new)
    }

    /// Handles one request. Never panics on request input; every failure becomes a response
    /// and one log line.
    pub fn handle(&self, request: Request) -> Response {
        let method = request.head.method.clone();
        match self.route(request) {
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

    fn route(&self, request: Request) -> Result<Handled, Failure> {
        match request.head.method {
            Method::Get | Method::Head => {
                self.probe(&Params::from_query(&request.head.query), &request.head)
            }
            Method::Post | Method::Put => self.receive(request),
            Method::Options => Ok(Handled {
                response: Response::new(204).with_header("Allow", ALLOWED_METHODS),
                summary: "options".into(),
            }),
            Method::Patch | Method::Delete | Method::Other(_) => {
                Err(Error::MethodNotAllowed(request.head.method.as_str().to_string()).into())
            }
        }
    }
}
