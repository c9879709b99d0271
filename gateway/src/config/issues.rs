//! What is wrong with a configuration: each problem with its key path and, once located in
//! the source, its line and column. Shared by the loader, the validator and the compiler.

use std::fmt;

/// One problem found in a configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConfigIssue {
    /// Key path such as `routes[3].upstream` (empty for the whole document).
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// 1-based column in the file, when known.
    pub column: Option<usize>,
    /// What is wrong, as a sentence.
    pub message: String,
}

impl ConfigIssue {
    /// An issue at a key path; its location is filled in later from the source.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), line: None, column: None, message: message.into() }
    }
}

/// A configuration that cannot be used, with every problem found in it.
#[derive(Clone, Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<inline>`) the configuration came from.
    pub source_name: String,
    /// All problems, in file order where locations are known.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for issue in &self.issues {
            write!(f, "error: {}", self.source_name)?;
            if let Some(line) = issue.line {
                write!(f, ":{line}")?;
                if let Some(col) = issue.column {
                    write!(f, ":{col}")?;
                }
            }
            if issue.path.is_empty() {
                writeln!(f, ": {}", issue.message)?;
            } else {
                writeln!(f, ": {}: {}", issue.path, issue.message)?;
            }
        }
        let n = self.issues.len();
        write!(f, "{n} error{}; configuration not applied", if n == 1 { "" } else { "s" })
    }
}
