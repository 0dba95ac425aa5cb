//! Variables in a project file, substituted as balena's builder (compose) substitutes them
//! before it reads the file: `$VAR`, `${VAR}`, `${VAR:-default}` / `${VAR-default}`,
//! `${VAR:+other}` / `${VAR+other}`, `${VAR:?message}` / `${VAR?message}`, `$$` for `$`.
//! Only a user's project file has them: a release from a server carries the values.

use std::collections::BTreeMap;

use serde_norway::Value;

use crate::Problem;

/// What substituting a document found: refusals (`${VAR:?}` unset, a bad `${…}`) and
/// warnings (a variable that is not set becomes empty, as compose warns).
#[derive(Debug, Default)]
pub struct Substituted {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Substitutes every string value (not keys) of `doc` in place; `lookup` gives a
/// variable's value.
pub fn substitute(doc: &mut Value, lookup: &dyn Fn(&str) -> Option<String>) -> Substituted {
    let mut out = Substituted::default();
    walk(doc, "", lookup, &mut out);
    out
}

/// `KEY=VALUE` lines of a `.env` file: `#` comments and blank lines skipped, an optional
/// `export `, surrounding single or double quotes removed. Later lines win.
pub fn dotenv(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
            .unwrap_or(value);
        vars.insert(key.trim().to_string(), unquoted.to_string());
    }
    vars
}

fn walk(v: &mut Value, path: &str, lookup: &dyn Fn(&str) -> Option<String>, out: &mut Substituted) {
    match v {
        Value::String(s) if s.contains('$') => match expand(s, lookup, &mut |w| {
            out.warnings.push(Problem::new(path, w));
        }) {
            Ok(new) => *s = new,
            Err(e) => out.problems.push(Problem::new(path, e)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), lookup, out);
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let p = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                walk(item, &p, lookup, out);
            }
        }
        _ => {}
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// One string with its variables substituted; `warn` hears of unset variables.
fn expand(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warn: &mut dyn FnMut(String),
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body)
                .ok_or_else(|| format!("`{s}`: `${{` without its closing `}}`"))?;
            out.push_str(&braced(&body[..end], lookup, warn)?);
            rest = &body[end + 1..];
        } else {
            let len = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
            if len == 0 || after.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!("`{s}`: `$` is neither `$$` nor a variable"));
            }
            out.push_str(&value_of(&after[..len], lookup, warn));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the `}` closing a `${` is in `body` (nested `${…}` in a default counted).
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// `NAME` followed by nothing or one of `:-`, `-`, `:+`, `+`, `:?`, `?` and its word.
fn braced(
    inner: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warn: &mut dyn FnMut(String),
) -> Result<String, String> {
    let len = inner.find(|c| !is_name_char(c)).unwrap_or(inner.len());
    let (name, op) = inner.split_at(len);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("`${{{inner}}}` does not name a variable"));
    }
    let set = lookup(name);
    let (empty_counts, op) = match op.strip_prefix(':') {
        Some(op) => (true, op),
        None => (false, op),
    };
    let present = set.as_ref().filter(|v| !(empty_counts && v.is_empty()));
    let Some(kind) = op.chars().next() else {
        return Ok(value_of(name, lookup, warn));
    };
    let word = &op[1..];
    match (kind, present) {
        ('-', Some(v)) => Ok(v.clone()),
        ('-', None) => expand(word, lookup, warn),
        ('+', Some(_)) => expand(word, lookup, warn),
        ('+', None) => Ok(String::new()),
        ('?', Some(v)) => Ok(v.clone()),
        ('?', None) => Err(format!("variable `{name}` is required: {word}")),
        _ => Err(format!(
            "`${{{inner}}}` is not a substitution compose knows"
        )),
    }
}

fn value_of(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warn: &mut dyn FnMut(String),
) -> String {
    lookup(name).unwrap_or_else(|| {
        warn(format!("variable `{name}` is not set: an empty string"));
        String::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(s: &str) -> (Result<String, String>, Vec<String>) {
        let mut warnings = Vec::new();
        let r = expand(s, &vars, &mut |w| warnings.push(w));
        (r, warnings)
    }

    #[test]
    fn substitutes_as_compose_does() {
        for (input, expected) in [
            ("${PORT}:80", "8080:80"),
            ("$PORT/tcp", "8080/tcp"),
            ("cost $$5", "cost $5"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${NONE-dflt}", "dflt"),
            ("${NONE:-${PORT}}", "8080"),
            ("${PORT:+set}", "set"),
            ("${EMPTY:+set}", ""),
            ("${EMPTY+set}", "set"),
            ("${PORT:?needed}", "8080"),
        ] {
            assert_eq!(run(input), (Ok(expected.to_string()), vec![]), "{input}");
        }
        assert_eq!(
            run("a${NONE}b"),
            (
                Ok("ab".into()),
                vec!["variable `NONE` is not set: an empty string".into()]
            )
        );
    }

    #[test]
    fn bad_forms_and_required_variables_are_refused() {
        for (input, needle) in [
            ("${NONE:?set it}", "variable `NONE` is required: set it"),
            ("${EMPTY:?set it}", "variable `EMPTY` is required"),
            ("${PORT", "without its closing"),
            ("${}", "does not name a variable"),
            ("${PORT/x}", "not a substitution"),
            ("$ 5", "neither `$$` nor a variable"),
        ] {
            let (r, _) = run(input);
            assert!(
                r.as_ref().is_err_and(|e| e.contains(needle)),
                "{input}: {r:?}"
            );
        }
    }

    #[test]
    fn document_paths_and_dotenv() {
        let mut doc: Value =
            serde_norway::from_str("services:\n  web:\n    ports: ['${PORT}:80', '${NONE:?x}']\n")
                .unwrap();
        let s = substitute(&mut doc, &vars);
        assert_eq!(
            doc["services"]["web"]["ports"][0],
            Value::String("8080:80".into())
        );
        assert_eq!(s.problems.len(), 1);
        assert_eq!(s.problems[0].path, "services.web.ports[1]");
        let env = dotenv("# c\nA=1\nexport B=\"two words\"\n\nC='x'\nbad line\nA=3\n");
        assert_eq!(
            env.into_iter().collect::<Vec<_>>(),
            [("A", "3"), ("B", "two words"), ("C", "x")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
