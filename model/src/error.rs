//! One error type for the model crate: a message that names the file, tensor or field.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
    /// An I/O failure on `path`: `PATH: cannot WHAT: REASON`.
    pub fn io(path: &std::path::Path, what: &str, e: std::io::Error) -> Self {
        Error(format!("{}: cannot {what}: {e}", path.display()))
    }
    /// Prefixes the message with where it happened (a file, a tensor).
    pub fn context(self, at: impl fmt::Display) -> Self {
        Error(format!("{at}: {}", self.0))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<mvdit_core::BackendError> for Error {
    fn from(e: mvdit_core::BackendError) -> Self {
        Error(e.to_string())
    }
}

impl From<mvdit_core::ConfigError> for Error {
    fn from(e: mvdit_core::ConfigError) -> Self {
        Error(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
