//! What the validator finds: a JSON path, a reason and how serious it is.

/// How serious a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file is refused; nothing of it is applied.
    Error,
    /// The key is ignored; the rest applies.
    Warning,
}

/// One finding of the validator, naming the JSON path (`os.sshKeys[1]`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
