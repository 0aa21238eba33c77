//! Turning engine errors into one sentence, a hint, and a stable exit code.

use amberdb::Error;

/// Exit code: success.
pub const OK: i32 = 0;
/// Exit code: any failure that is not a usage error or a missing document.
pub const ERROR: i32 = 1;
/// Exit code: the command line or its input is malformed.
pub const USAGE: i32 = 2;
/// Exit code: the document does not exist.
pub const NOT_FOUND: i32 = 3;

/// An error on its way to stderr and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(USAGE, message)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prints the error and returns the exit code.
    pub fn report(&self) -> i32 {
        if self.code != OK {
            eprintln!("amberdb: {}", self.message);
            if let Some(h) = &self.hint {
                eprintln!("hint: {h}");
            }
        }
        self.code
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::InvalidCollection { .. }
            | Error::InvalidKey { .. }
            | Error::InvalidValue(_)
            | Error::TooLarge { .. } => USAGE,
            _ => ERROR,
        };
        let hint = match &e {
            Error::Locked { pid: Some(pid), .. } => Some(format!(
                "process {pid} has this data directory open; stop it, or talk to it through its server (--url)"
            )),
            Error::Locked { .. } => Some("another process has this data directory open".into()),
            Error::Poisoned { .. } => Some("check the disk (space, dmesg), then reopen the database".into()),
            Error::Conflict(_) => Some("re-read the document and retry with its current version".into()),
            _ => None,
        };
        CliError {
            code,
            message: e.to_string(),
            hint,
        }
    }
}

/// `e` as a CLI error where an `InvalidArgument` is the user's bad input (exit 2, as its
/// 400 is through a server): a refused spec, an undefined schema version. Elsewhere an
/// `InvalidArgument` keeps exit 1 (e.g. a missing data directory).
pub fn input_error(e: Error) -> CliError {
    match e {
        Error::InvalidArgument(m) => CliError::usage(m),
        e => e.into(),
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(ERROR, e.to_string())
    }
}

pub type CliResult = Result<(), CliError>;
