//! One line for an error and its causes, as the binaries print it.

/// `outer: cause: cause`, leaving out a cause whose text the line already holds: many of our
/// errors (`"{path}: {source}"`) show their source themselves, and repeating it would only
/// double the line.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Shows {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading the bundle")]
    struct Hides(#[source] std::io::Error);

    #[test]
    fn causes_appear_once() {
        let io = || std::io::Error::other("disk on fire");
        let shows = Shows {
            path: "/x".into(),
            source: io(),
        };
        assert_eq!(one_line(&shows), "/x: disk on fire");
        assert_eq!(one_line(&Hides(io())), "reading the bundle: disk on fire");
    }
}
