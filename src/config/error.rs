//! The errors of reading a config file: each problem with its place
//! (`FILE:line:col`), and the list of all of them that `load` and `parse` return;
//! and the typed errors of the checks of single values (a URL, a `${VAR}`, a
//! retry table) that become such problems.

use std::fmt;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub col: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (Some(l), Some(c)) => write!(f, "{}:{}:{}: {}", self.file, l, c, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// All problems found in a config file, in the order they appear in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Why a destination URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// It parses, but is not http(s) or has no host.
    #[error("url {0:?} must be an http:// or https:// URL with a host")]
    NotHttp(String),
    /// It does not parse.
    #[error("url {url:?} is not a valid URL: {source}")]
    Invalid {
        /// The URL as given.
        url: String,
        /// Why.
        source: url::ParseError,
    },
}

/// Why a `${NAME}` reference in a config string cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `${` without its `}`.
    #[error("unterminated ${{ in string: write ${{NAME}}")]
    Unterminated,
    /// A name that is not letters, digits and `_`.
    #[error("invalid variable reference ${{{0}}}: names are letters, digits and _")]
    BadName(String),
    /// The variable is not set.
    #[error("environment variable {0} is not set")]
    Unset(String),
}

/// Why a `retry` table is refused; [`RetryError::field`] names its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    /// Both forms at once.
    #[error("retry takes either `schedule` or `max_attempts`/`initial`/`max`, not both")]
    BothForms,
    /// `schedule = []`.
    #[error("retry.schedule must not be empty")]
    EmptySchedule,
    /// A schedule over 100 entries.
    #[error("retry.schedule has more than 100 entries")]
    LongSchedule,
    /// `max_attempts = 0`.
    #[error("retry.max_attempts must be at least 1")]
    NoAttempts,
    /// `max_attempts` over 100.
    #[error("retry.max_attempts must be at most 100")]
    TooManyAttempts,
    /// `initial` greater than `max`.
    #[error("retry.initial must not exceed retry.max")]
    InitialOverMax,
}

impl RetryError {
    /// The field of the `retry` table the error is about.
    pub fn field(self) -> &'static str {
        match self {
            RetryError::BothForms | RetryError::EmptySchedule | RetryError::LongSchedule => {
                "schedule"
            }
            RetryError::NoAttempts | RetryError::TooManyAttempts => "max_attempts",
            RetryError::InitialOverMax => "initial",
        }
    }
}
