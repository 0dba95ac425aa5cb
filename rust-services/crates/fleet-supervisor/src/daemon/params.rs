//! Request bodies as balena's API reads them (express `json()` and `urlencoded({extended:
//! true})`): a JSON object or a form (`a=1&b=2`, nested as the `qs` library nests
//! `a[b][c]=1`, `a[]=1`, `a[0]=1`), with `force` as a boolean or `"1"`/`"true"`/`"on"`/`1`
//! (balena's `checkTruthy`), ids as numbers or numeric strings.

use serde_json::{Map, Value, json};

use super::message::{Request, Response, percent_decode};

/// The fields of a body; absent ones are `None`/false.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Params(Map<String, Value>);

impl Params {
    /// Parses the body by its `Content-Type` (a form when it says so, else JSON); an empty
    /// body has no fields. A body that does not parse is a 400 with the reason.
    pub fn of(req: &Request) -> Result<Params, Response> {
        let body = &req.body;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params::default());
        }
        let form = req
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if form {
            let text = String::from_utf8_lossy(body);
            // express's `parameterLimit`: also keeps nesting, quadratic in the worst case, small.
            if text.split('&').filter(|p| !p.is_empty()).count() > FORM_PARAMETER_LIMIT {
                return Err(bad("too many parameters"));
            }
            return Ok(Params(parse_form(&text)));
        }
        match serde_json::from_slice(body) {
            Ok(Value::Object(m)) => Ok(Params(m)),
            Ok(_) => Err(bad("body must be a JSON object")),
            Err(e) => Err(bad(&format!("body is not JSON: {e}"))),
        }
    }

    /// balena's `checkTruthy`: `true`, `1`, `"1"`, `"true"`, `"on"` (any case).
    /// Every field as given.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn truthy(&self, key: &str) -> bool {
        match self.0.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_u64() == Some(1),
            Some(Value::String(s)) => {
                ["1", "true", "on"].contains(&s.to_ascii_lowercase().as_str())
            }
            _ => false,
        }
    }

    pub fn force(&self) -> bool {
        self.truthy("force")
    }

    /// A positive integer given as a number or a numeric string (balena's `checkInt`).
    pub fn int(&self, key: &str) -> Option<u64> {
        match self.0.get(key)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|n| *n > 0)
    }

    pub fn text(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// `qs`'s default limits: keys nest at most 5 deep (the rest of the key is one segment), and
/// an index above 20 is an object key, not an array position.
const FORM_DEPTH: usize = 5;
const FORM_ARRAY_LIMIT: usize = 20;
/// express's `urlencoded()` refuses a form with more fields than this.
const FORM_PARAMETER_LIMIT: usize = 1000;

/// One form field being nested: leaves are strings, branches keep their keys in order.
enum Node {
    Leaf(Value),
    Branch(Vec<(Segment, Node)>),
}

#[derive(Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
    /// `[]`: the next array position.
    Push,
}

/// A form body as express's extended `urlencoded()` (the `qs` library) reads it: `a[b]=1`
/// nests objects, `a[]=1` and `a[0]=1` make arrays, a repeated plain key makes an array.
fn parse_form(text: &str) -> Map<String, Value> {
    let mut root: Vec<(Segment, Node)> = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (percent_decode(k), Value::String(percent_decode(v)));
        let segments = form_key(&key);
        insert(&mut root, &segments, value);
    }
    match finish(Node::Branch(root)) {
        Value::Object(m) => m,
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Map::new(),
    }
}

/// `a[b][]` → `a`, `b`, push. A key without well-formed brackets is one plain key.
fn form_key(key: &str) -> Vec<Segment> {
    let Some(open) = key.find('[').filter(|&i| i > 0) else {
        return vec![Segment::Key(key.to_string())];
    };
    let mut segments = vec![Segment::Key(key[..open].to_string())];
    let mut rest = &key[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        if segments.len() > FORM_DEPTH {
            segments.push(Segment::Key(rest.to_string()));
            return segments;
        }
        let Some(close) = inner.find(']') else { break };
        let name = &inner[..close];
        segments.push(match name.parse::<usize>() {
            _ if name.is_empty() => Segment::Push,
            Ok(i) if i <= FORM_ARRAY_LIMIT && i.to_string() == name => Segment::Index(i),
            _ => Segment::Key(name.to_string()),
        });
        rest = &inner[close + 1..];
    }
    segments
}

fn insert(branch: &mut Vec<(Segment, Node)>, segments: &[Segment], value: Value) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    let existing = (*first != Segment::Push)
        .then(|| branch.iter_mut().find(|(s, _)| s == first))
        .flatten();
    match (existing, rest.is_empty()) {
        // A repeated plain key gathers its values, as qs does.
        (Some((_, Node::Leaf(old))), true) => match old {
            Value::Array(items) => items.push(value),
            other => *other = Value::Array(vec![other.take(), value]),
        },
        (Some((_, Node::Branch(children))), false) => insert(children, rest, value),
        (Some((_, node)), _) => *node = nest(rest, value),
        (None, _) => branch.push((first.clone(), nest(rest, value))),
    }
}

fn nest(segments: &[Segment], value: Value) -> Node {
    if segments.is_empty() {
        return Node::Leaf(value);
    }
    let mut children = Vec::new();
    insert(&mut children, segments, value);
    Node::Branch(children)
}

/// A branch whose keys are all positions becomes an array (ordered by index, gaps closed);
/// any other branch an object.
fn finish(node: Node) -> Value {
    let children = match node {
        Node::Leaf(v) => return v,
        Node::Branch(children) => children,
    };
    if children.iter().all(|(s, _)| !matches!(s, Segment::Key(_))) {
        let mut indexed: Vec<(usize, usize, Value)> = children
            .into_iter()
            .enumerate()
            .map(|(order, (s, n))| {
                let at = match s {
                    Segment::Index(i) => i,
                    _ => usize::MAX,
                };
                (at, order, finish(n))
            })
            .collect();
        indexed.sort_by_key(|(at, order, _)| (*at, *order));
        return Value::Array(indexed.into_iter().map(|(_, _, v)| v).collect());
    }
    let mut object = Map::new();
    let mut pushed = 0;
    for (segment, child) in children {
        let key = match segment {
            Segment::Key(k) => k,
            Segment::Index(i) => i.to_string(),
            Segment::Push => {
                pushed += 1;
                (pushed - 1).to_string()
            }
        };
        object.insert(key, finish(child));
    }
    Value::Object(object)
}

fn bad(message: &str) -> Response {
    Response::json(400, &json!({ "status": "failed", "message": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(content_type: &str, body: &str) -> Request {
        Request {
            method: "POST".into(),
            path: "/".into(),
            query: Vec::new(),
            headers: vec![("content-type".into(), content_type.into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn json_and_form_bodies_force_and_ids_as_balena_reads_them() {
        let j = Params::of(&req(
            "application/json",
            r#"{"force":"true","appId":"12","imageId":7}"#,
        ))
        .unwrap();
        assert!(j.force());
        assert_eq!((j.int("appId"), j.int("imageId")), (Some(12), Some(7)));
        let f = Params::of(&req(
            "application/x-www-form-urlencoded",
            "force=1&serviceName=my%20svc&appId=3",
        ))
        .unwrap();
        assert!(f.force());
        assert_eq!(f.text("serviceName").as_deref(), Some("my svc"));
        assert_eq!(f.int("appId"), Some(3));
        for off in [
            r#"{"force":false}"#,
            r#"{"force":"no"}"#,
            r#"{"force":0}"#,
            "",
        ] {
            assert!(
                !Params::of(&req("application/json", off)).unwrap().force(),
                "{off}"
            );
        }
        assert_eq!(
            Params::of(&req("application/json", "[1]"))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            Params::of(&req("application/json", "{"))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(j.int("missing"), None);
    }

    fn form(body: &str) -> Value {
        Value::Object(
            Params::of(&req("application/x-www-form-urlencoded", body))
                .unwrap()
                .fields()
                .clone(),
        )
    }

    #[test]
    fn forms_nest_as_express_extended_urlencoded() {
        assert_eq!(
            form(
                "network%5Bhostname%5D=green+house&network[proxy][type]=socks5\
                 &network[proxy][port]=1080&network[proxy][noProxy][]=10.0.0.0/8\
                 &network[proxy][noProxy][]=a.lan&force=1"
            ),
            json!({"network": {"hostname": "green house", "proxy": {"type": "socks5",
                "port": "1080", "noProxy": ["10.0.0.0/8", "a.lan"]}}, "force": "1"})
        );
        // Indexed arrays come out in index order, gaps closed; an index above 20 is a key.
        assert_eq!(
            form("a[1]=y&a[0]=x&b[21]=z&c=1&c=2"),
            json!({"a": ["x", "y"], "b": {"21": "z"}, "c": ["1", "2"]})
        );
        // Past 5 levels the rest of the key is one segment; a key without brackets is plain.
        assert_eq!(
            form("a[b][c][d][e][f][g]=1&y]=3"),
            json!({"a": {"b": {"c": {"d": {"e": {"f": {"[g]": "1"}}}}}}, "y]": "3"})
        );
        // express's parameter limit: 1000 fields, one more is refused.
        let fields = |n: usize| (0..n).map(|i| format!("a[k{i}]=1")).collect::<Vec<_>>();
        let at_limit = fields(1000).join("&");
        assert_eq!(form(&at_limit)["a"].as_object().unwrap().len(), 1000);
        let over = fields(1001).join("&");
        let refused = Params::of(&req("application/x-www-form-urlencoded", &over)).unwrap_err();
        assert_eq!(refused.status, 400);
    }
}
