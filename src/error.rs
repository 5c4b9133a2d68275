//! The exit-code policy for errors (SPEC §6.3): every error that reaches `main` carries the
//! code wrapper exits with, decided where the error is understood.

use std::fmt;

/// An error on its way to `main`, with its exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub error: anyhow::Error,
}

impl CliError {
    /// Bad usage or configuration, found before anything ran: exit 2.
    pub fn usage(e: impl Into<anyhow::Error>) -> Self {
        CliError {
            code: 2,
            error: e.into(),
        }
    }

    /// Wrapper's own failure after starting: exit 125.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        CliError {
            code: 125,
            error: e.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::usage(e)
    }
}

/// Shorthand for command results.
pub type CliResult<T = ()> = Result<T, CliError>;
