//! One line for an error and its causes, as the binaries print it.
//!
//! The rule of the workspace: an error's `Display` says what happened, with its path or key,
//! and never repeats its cause; the cause is chained (`#[source]`); whoever prints an error
//! for a person (a binary's edge, a log line, an API answer) prints the whole chain once,
//! through [`one_line`] or [`Chain`].

use std::fmt;

/// `outer: cause: cause`, walking `source()` to the end.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    Chain(error).to_string()
}

/// Displays an error and its causes as [`one_line`] does, without building a string first:
/// `log::warn!("{}", Chain(&e))`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: cannot open")]
    struct Open {
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading the bundle")]
    struct Read(#[source] Open);

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct Wraps(Open);

    #[test]
    fn every_cause_once_in_order() {
        let open = || Open {
            path: "/x".into(),
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(one_line(&open()), "/x: cannot open: disk on fire");
        assert_eq!(
            one_line(&Read(open())),
            "reading the bundle: /x: cannot open: disk on fire"
        );
        // `transparent` forwards both Display and source: still once.
        assert_eq!(one_line(&Wraps(open())), "/x: cannot open: disk on fire");
        assert_eq!(Chain(&Read(open())).to_string(), one_line(&Read(open())));
    }
}
