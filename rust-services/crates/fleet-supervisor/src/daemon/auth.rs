//! Who a supervisor API request comes from: the key it presents, read as balena reads it,
//! and the scope that key brings (balena's auth middleware and `isScoped`).

use serde_json::json;

use super::ServiceState;
use super::api_keys::Scope;
use super::message::{Request, Response};
use super::state::Shared;

/// Paths that answer without a key, as on balena: liveness probes.
const OPEN_PATHS: &[&str] = &["/ping", "/v1/healthy"];

/// Who made a request: the key presented and what it may reach.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The key as presented (`?apikey=` first, else the `Authorization` header), if any.
    pub key: Option<String>,
    pub scope: Scope,
}

impl Auth {
    /// balena's `req.auth.isScoped({apps: [app_id]})`.
    pub fn allows(&self, app_id: u64) -> bool {
        self.scope.allows(app_id)
    }
}

/// balena's auth middleware: open paths and every path in local mode (no key, whatever
/// `Authorization` says) reach every app; else the key presented must be one of ours and
/// brings its scope. `None`: 401.
pub fn authenticate<R>(shared: &Shared<R>, req: &Request) -> Option<Auth> {
    let path = req.path.trim_end_matches('/');
    let key = presented_key(req);
    if OPEN_PATHS.contains(&path) || shared.settings.local_mode() {
        return Some(Auth {
            key,
            scope: Scope::Global,
        });
    }
    let scope = shared.api_keys.borrow().scope_of(key.as_deref()?)?;
    Some(Auth { key, scope })
}

/// Whether a request may reach the API at all (any scope).
pub fn permitted<R>(shared: &Shared<R>, req: &Request) -> bool {
    authenticate(shared, req).is_some()
}

/// The key as balena reads it: `?apikey=<key>`, else `Authorization: Bearer <key>` or
/// `ApiKey <key>` (scheme in any case).
fn presented_key(req: &Request) -> Option<String> {
    if let Some(key) = req.query("apikey").filter(|k| !k.is_empty()) {
        return Some(key.to_string());
    }
    let (scheme, token) = req.header("authorization")?.split_once(' ')?;
    let token = token.trim();
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("apikey");
    (known && !token.is_empty()).then(|| token.to_string())
}

/// The numeric app id a path's `:appId` names (a number, or an app UUID of the target).
pub fn numeric_app_id<R>(shared: &Shared<R>, app_id: &str) -> Option<u64> {
    if let Ok(id) = app_id.parse::<u64>() {
        return Some(id);
    }
    let target = shared.target.borrow();
    target.as_ref()?.state.apps.get(app_id).map(|a| a.id)
}

/// The numeric app id of a service state (its container's labels, else the target's app).
pub fn state_app_id<R>(shared: &Shared<R>, s: &ServiceState) -> Option<u64> {
    s.ids.map(|i| i.app_id).filter(|id| *id > 0).or_else(|| {
        let target = shared.target.borrow();
        target.as_ref()?.state.apps.get(&s.app).map(|a| a.id)
    })
}

/// Whether a supervised container belongs to an app the key reaches (one of no known app:
/// the global key only).
pub fn state_in_scope<R>(shared: &Shared<R>, auth: &Auth, s: &ServiceState) -> bool {
    state_app_id(shared, s).map_or(auth.scope == Scope::Global, |id| auth.allows(id))
}

/// balena's `401 {"status":"failed","message":"Unauthorized"}` for an app out of scope.
pub fn out_of_scope() -> Response {
    Response::json(
        401,
        &json!({ "status": "failed", "message": "Unauthorized" }),
    )
}
