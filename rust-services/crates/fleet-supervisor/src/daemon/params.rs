//! Request bodies as balena's API reads them (express `json()` and `urlencoded()`): a JSON
//! object or a form (`a=1&b=2`), with `force` as a boolean or `"1"`/`"true"`/`"on"`/`1`
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
            let fields = text
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), Value::String(percent_decode(v)))
                })
                .collect();
            return Ok(Params(fields));
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
}
