//! The rest of balena's device API (v1 and v2 routes beyond the core set in `api.rs`), with
//! balena's status codes and body shapes: single-container v1 app routes, `/v1/device`,
//! `/v1/blink`, `/v1/restart`, purge, app state, device name/VPN/tags, volume cleanup and
//! journal logs. Bodies are JSON or forms ([`Params`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fleet_log::error::one_line;
use fleet_release::plan::{self, Owned};
use serde_json::{Value, json};

use super::api_keys::Scope;
use super::auth::{Auth, out_of_scope};
use super::legacy_state;
use super::message::{Request, Response};
use super::params::Params;
use super::state::Shared;
use super::{ReconcileError, Reconciler, ServiceState, client};

/// Variables balena never shows in `GET /v1/apps/:appId` (credentials).
const PRIVATE_ENV: &[&str] = &[
    "RESIN_SUPERVISOR_API_KEY",
    "RESIN_API_KEY",
    "BALENA_SUPERVISOR_API_KEY",
    "BALENA_API_KEY",
    "FLEET_SUPERVISOR_API_KEY",
    "FLEET_API_KEY",
];
/// How long `/v2/journal-logs` may take to read the journal.
const JOURNAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `/v1/blink` blinks, as balena.
const BLINK_FOR: Duration = Duration::from_secs(15);
const TAGS_TIMEOUT: Duration = Duration::from_secs(30);

fn failed(status: u16, message: &str) -> Response {
    Response::json(status, &json!({ "status": "failed", "message": message }))
}

/// An engine-side error as balena answers it: a held lock 423, unknown app/service 404,
/// else 503 with the reason.
pub fn failure(e: &ReconcileError) -> Response {
    let status = match e {
        ReconcileError::Locked { .. } => 423,
        ReconcileError::NoSuchApp { .. } | ReconcileError::NoSuchService { .. } => 404,
        ReconcileError::Failed(_) => 503,
    };
    Response::text(status, &one_line(e))
}

/// The app (UUID, numeric id) for an `appId` given in a path or body.
fn app_of<R>(shared: &Shared<R>, app_id: u64) -> Option<(String, u64)> {
    let target = shared.target.borrow();
    let app = target
        .as_ref()?
        .state
        .apps
        .values()
        .find(|a| a.id == app_id)?;
    Some((app.uuid.clone(), app.id))
}

async fn states_of<R: Reconciler>(
    shared: &Shared<R>,
    uuid: &str,
) -> Result<Vec<ServiceState>, Response> {
    match shared.reconciler.service_states().await {
        Ok(s) => Ok(s.into_iter().filter(|s| s.app == uuid).collect()),
        Err(e) => Err(failure(&e)),
    }
}

/// The one service of a single-container app, as balena's v1 routes require.
async fn single_service<R: Reconciler>(
    shared: &Shared<R>,
    app_id: &str,
) -> Result<(String, u64, ServiceState), Response> {
    let Some((uuid, id)) = app_id.parse().ok().and_then(|id| app_of(shared, id)) else {
        return Err(Response::text(400, "App not found"));
    };
    let mut states = states_of(shared, &uuid).await?;
    match states.len() {
        0 => Err(Response::text(400, "App not found")),
        1 => Ok((uuid, id, states.remove(0))),
        _ => Err(Response::text(
            400,
            "Some v1 endpoints are only allowed on single-container apps",
        )),
    }
}

/// `GET /v1/apps/:appId`: the single container's app id, commit, container id, variables
/// (credentials left out), image and release id.
pub async fn v1_app<R: Reconciler>(shared: &Shared<R>, app_id: &str, auth: &Auth) -> Response {
    if let Ok(id) = app_id.parse::<u64>()
        && !auth.allows(id)
    {
        return failed(401, "Application is not available");
    }
    let (uuid, id, s) = match single_service(shared, app_id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let target = shared.target.borrow().clone();
    let release = target
        .as_ref()
        .and_then(|t| t.state.apps.get(&uuid))
        .and_then(|a| a.release.clone());
    let env: BTreeMap<String, String> = target
        .as_ref()
        .map(|t| plan::desired_containers(&t.state, &shared.settings.host_context("")))
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.app == uuid && c.service == s.service)
        .map(|c| c.env)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !PRIVATE_ENV.contains(&k.as_str()))
        .collect();
    Response::json(
        200,
        &json!({
            "appId": id,
            "commit": release.as_ref().map(|r| r.uuid.clone()),
            "containerId": s.container_id,
            "env": env,
            "imageId": s.image,
            "releaseId": release.as_ref().filter(|r| r.uuid == s.release).map(|r| r.id),
        }),
    )
}

/// `POST /v1/apps/:appId/stop` and `/start`: the single container; `{containerId}`.
pub async fn v1_app_action<R: Reconciler>(
    shared: &Shared<R>,
    app_id: &str,
    action: &str,
    req: &Request,
    auth: &Auth,
) -> Response {
    let p = match Params::of(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Ok(id) = app_id.parse::<u64>()
        && !auth.allows(id)
    {
        return Response::text(401, "Unauthorized");
    }
    let (uuid, _, s) = match single_service(shared, app_id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let _actions = shared.actions.lock().await;
    let r = &shared.reconciler;
    let result = match action {
        "stop" => r.stop_service(&uuid, &s.service, p.force()).await,
        _ => r.start_service(&uuid, &s.service, p.force()).await,
    };
    match result {
        Ok(()) => Response::json(200, &json!({ "containerId": s.container_id })),
        Err(e) => failure(&e),
    }
}

/// `POST /v1/restart` (`appId` in the body): restarts the app's services; `OK`.
pub async fn v1_restart<R: Reconciler>(shared: &Shared<R>, req: &Request, auth: &Auth) -> Response {
    let p = match Params::of(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(app_id) = p.int("appId") else {
        return Response::text(400, "Missing app id");
    };
    if !auth.allows(app_id) {
        return out_of_scope();
    }
    let Some((uuid, _)) = app_of(shared, app_id) else {
        return Response::text(404, &format!("Application {app_id} not found"));
    };
    let _actions = shared.actions.lock().await;
    match shared.reconciler.restart_app(&uuid, p.force()).await {
        Ok(()) => Response::text(200, "OK"),
        Err(e) => failure(&e),
    }
}

async fn purge<R: Reconciler>(
    shared: &Shared<R>,
    app_id: u64,
    force: bool,
) -> Result<(), Response> {
    let Some((uuid, _)) = app_of(shared, app_id) else {
        return Err(Response::text(
            404,
            &format!("Application {app_id} not found"),
        ));
    };
    {
        let _actions = shared.actions.lock().await;
        shared
            .reconciler
            .purge_app(&uuid, force)
            .await
            .map_err(|e| failure(&e))?;
    }
    log::info!("app {uuid}: data purged through the API; recreating");
    shared.trigger(false);
    Ok(())
}

/// `POST /v1/purge` (`appId` in the body): the app's volumes emptied (containers and
/// volumes removed, then made again); `{"Data": "OK", "Error": ""}`.
pub async fn v1_purge<R: Reconciler>(shared: &Shared<R>, req: &Request, auth: &Auth) -> Response {
    let p = match Params::of(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(app_id) = p.int("appId") else {
        return Response::text(400, "Invalid or missing appId");
    };
    if !auth.allows(app_id) {
        return out_of_scope();
    }
    match purge(shared, app_id, p.force()).await {
        Ok(()) => Response::json(200, &json!({ "Data": "OK", "Error": "" })),
        Err(r) => r,
    }
}

/// `POST /v2/applications/:appId/purge`: as `/v1/purge`; `OK`.
pub async fn v2_purge<R: Reconciler>(
    shared: &Shared<R>,
    app_id: &str,
    req: &Request,
    auth: &Auth,
) -> Response {
    let p = match Params::of(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(app_id) = app_id.parse::<u64>().ok().filter(|n| *n > 0) else {
        return failed(400, "Missing app id");
    };
    if !auth.allows(app_id) {
        return out_of_scope();
    }
    match purge(shared, app_id, p.force()).await {
        Ok(()) => Response::text(200, "OK"),
        Err(r) => r,
    }
}

/// balena's legacy view of the apps ([`legacy_state::apps`]) from the engine and the target.
async fn legacy_apps<R: Reconciler>(
    shared: &Shared<R>,
) -> Result<BTreeMap<u64, BTreeMap<u64, legacy_state::Entry>>, Response> {
    let states = shared
        .reconciler
        .service_states()
        .await
        .map_err(|e| failure(&e))?;
    let present = shared
        .reconciler
        .image_refs()
        .await
        .map_err(|e| failure(&e))?;
    let target = shared.target.borrow();
    let target = target.as_ref().map(|t| &t.state);
    let pending = legacy_state::pending(target, &states, &shared.reconciler.downloads(), &present);
    Ok(legacy_state::apps(target, &states, &pending))
}

/// `GET /v2/applications/:appId/state`: `{commit, local: {appId: {services: {imageId:
/// {status, releaseId, download_progress}}}}}`, balena's legacy view of that app; `commit`
/// is the release last applied to it in full (balena's commit store).
pub async fn v2_app_state<R: Reconciler>(
    shared: &Shared<R>,
    app_id: &str,
    auth: &Auth,
) -> Response {
    let Some(id) = app_id.parse::<u64>().ok().filter(|n| *n > 0) else {
        return failed(400, &format!("Invalid application ID: {app_id}"));
    };
    let Ok(apps) = legacy_apps(shared).await else {
        return failed(
            500,
            &format!("Unable to retrieve state for application ID: {id}"),
        );
    };
    // An app out of the key's scope does not exist for it (balena's 409).
    let Some(app) = apps.get(&id).filter(|_| auth.allows(id)) else {
        return failed(409, &format!("Application ID does not exist: {id}"));
    };
    let mut services = serde_json::Map::new();
    for (image_id, e) in app {
        services.insert(
            image_id.to_string(),
            json!({
                "status": e.status,
                "releaseId": e.release_id,
                "download_progress": e.download_progress,
            }),
        );
    }
    let mut out = json!({ "local": { id.to_string(): { "services": services } } });
    // balena's `{commit, ...apps}`: an unknown commit is left out, not null.
    if let Some(commit) = shared.applied_commits.borrow().get(&id) {
        out["commit"] = json!(commit);
    }
    Response::json(200, &out)
}

/// `GET /v1/device`: balena's legacy device summary. As balena: the first service of the
/// first app in its legacy view (lowest app id, then lowest image id: a container, or an
/// image being pulled or present with no container of that image id), `Running` read as
/// `Idle`; `commit` is the release last applied in full to that app, left out while an
/// apply runs.
pub async fn v1_device<R: Reconciler>(shared: &Shared<R>) -> Response {
    let apps = legacy_apps(shared).await.unwrap_or_default();
    let last = shared.last_apply.borrow().clone();
    let downloads = shared.reconciler.downloads();
    let mut out = json!({
        "api_port": shared.settings.listen_port,
        "ip_address": host_ipv4_addresses().join(" "),
        "os_version": shared.settings.os_version,
        "mac_address": host_mac_addresses().join(" "),
        "supervisor_version": env!("CARGO_PKG_VERSION"),
        // balena sets it when an apply starts and clears it only when one succeeds: a
        // failed apply or one an update lock holds leaves it set.
        "update_pending": shared.applying.get()
            || last
                .as_ref()
                .is_some_and(|l| l.error.is_some() || !l.summary.held.is_empty()),
        "update_failed": last.as_ref().is_some_and(|l| l.error.is_some()),
        "update_downloaded": downloads.downloaded,
    });
    let first_app = apps.iter().next();
    if let Some((app_id, _)) = first_app
        && !shared.applying.get()
        && let Some(commit) = shared.applied_commits.borrow().get(app_id)
    {
        out["commit"] = json!(commit);
    }
    if let Some((_, e)) = first_app.and_then(|(_, services)| services.iter().next()) {
        let status = match e.status.as_str() {
            "Running" => "Idle",
            other => other,
        };
        out["status"] = json!(status);
        out["download_progress"] = json!(e.download_progress);
    }
    Response::json(200, &out)
}

/// IPv4 addresses of the host's interfaces other than loopback, from the kernel's routing
/// trie (`/proc/net/fib_trie`: an address is a `/32 host LOCAL` leaf).
fn host_ipv4_addresses() -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut out = BTreeSet::new();
    let mut last = None;
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if t.contains("/32 host LOCAL") {
            if let Some(ip) = last.take().filter(|ip: &String| !ip.starts_with("127.")) {
                out.insert(ip);
            }
        } else if t.parse::<std::net::Ipv4Addr>().is_ok() {
            last = Some(t.to_string());
        }
    }
    out.into_iter().collect()
}

/// MAC addresses of the host's interfaces other than loopback (`/sys/class/net`).
fn host_mac_addresses() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .filter(|e| e.file_name() != "lo")
        .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
        .map(|a| a.trim().to_uppercase())
        .filter(|a| !a.is_empty() && a != "00:00:00:00:00:00")
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `POST /v1/blink`: blinks the board's activity LED for 15 s (where the kernel has one
/// under `/sys/class/leds`), as balena identifies a device; `OK` either way.
pub fn v1_blink() -> Response {
    let led = ["led0", "ACT", "mmc0::"]
        .iter()
        .map(|n| {
            std::path::Path::new("/sys/class/leds")
                .join(n)
                .join("brightness")
        })
        .find(|p| p.exists());
    match led {
        Some(path) => {
            tokio::task::spawn_local(async move {
                let end = tokio::time::Instant::now() + BLINK_FOR;
                let mut on = false;
                while tokio::time::Instant::now() < end {
                    on = !on;
                    let _ = std::fs::write(&path, if on { "1" } else { "0" });
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let _ = std::fs::write(&path, "0");
            });
        }
        None => log::info!("identify requested: this board has no LED under /sys/class/leds"),
    }
    Response::text(200, "OK")
}

/// The device-level `config` variable of the target, with or without balena's prefixes.
pub(super) fn config_var<R>(shared: &Shared<R>, name: &str) -> Option<String> {
    let target = shared.target.borrow();
    let v = fleet_release::target_state::config_var(&target.as_ref()?.document, name)?;
    Some(v.as_str().map_or_else(|| v.to_string(), str::to_string))
}

/// `GET /v2/device/name`: `{status, deviceName}` (the target's device `name`).
pub fn v2_device_name<R>(shared: &Shared<R>) -> Response {
    let target = shared.target.borrow();
    let name = target
        .as_ref()
        .and_then(|t| {
            t.document
                .as_object()?
                .values()
                .next()?
                .get("name")
                .cloned()
        })
        .unwrap_or(Value::Null);
    Response::json(200, &json!({ "status": "success", "deviceName": name }))
}

/// `GET /v2/device/tags`: the device's tags from the server (`/v6/device_tag`, the
/// device's key), `{status, tags: [{id, name, value}]}`; 500 with the reason otherwise.
pub async fn v2_device_tags<R>(shared: &Shared<R>) -> Response {
    let s = &shared.settings;
    let (Some(endpoint), Some(uuid), Some(key)) = (&s.api_endpoint, &s.uuid, &s.device_api_key)
    else {
        return failed(
            500,
            "device tags are kept by the server: apiEndpoint, uuid and deviceApiKey are needed",
        );
    };
    let url = format!(
        "{}/v6/device_tag?$filter=device/uuid%20eq%20'{uuid}'&$select=id,tag_key,value",
        endpoint.trim_end_matches('/')
    );
    let tls = match shared.endpoint_tls() {
        Ok(t) => t,
        Err(e) => return failed(500, &format!("{url}: TLS: {e}")),
    };
    let auth = format!("Bearer {key}");
    let response = match client::get(
        &url,
        &[("Authorization", auth.as_str())],
        tls,
        client::Route::ProxyFromEnv,
        TAGS_TIMEOUT,
    )
    .await
    {
        Ok(r) if r.status == 200 => r,
        Ok(r) => return failed(500, &format!("{url}: HTTP {}", r.status)),
        Err(e) => return failed(500, &one_line(&e)),
    };
    let rows: Vec<Value> = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v.get("d").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let tags: Vec<Value> = rows
        .iter()
        .map(|t| json!({ "id": t["id"], "name": t["tag_key"], "value": t["value"] }))
        .collect();
    Response::json(200, &json!({ "status": "success", "tags": tags }))
}

/// `GET /v2/cleanup-volumes`: removes the supervisor's volumes no target app declares.
pub async fn v2_cleanup_volumes<R: Reconciler>(shared: &Shared<R>, auth: &Auth) -> Response {
    let Some(keep) = shared.target.borrow().as_ref().map(|t| {
        t.state
            .apps
            .values()
            .filter_map(|a| Some((a, a.release.as_ref()?)))
            .flat_map(|(a, r)| r.compose.volumes.iter().map(|v| Owned::new(&a.uuid, v)))
            .collect::<BTreeSet<Owned>>()
    }) else {
        return failed(503, "no target yet: nothing says which volumes are used");
    };
    // A scoped key cleans up its own app's volumes only (what balena's "if this app isn't
    // in scope of the request, do not cleanup its volumes" means to do).
    let only: Option<BTreeSet<String>> = (auth.scope != Scope::Global).then(|| {
        let target = shared.target.borrow();
        target
            .as_ref()
            .map(|t| {
                t.state
                    .apps
                    .values()
                    .filter(|a| auth.allows(a.id))
                    .map(|a| a.uuid.clone())
                    .collect()
            })
            .unwrap_or_default()
    });
    let _actions = shared.actions.lock().await;
    match shared
        .reconciler
        .remove_orphan_volumes(&keep, only.as_ref())
        .await
    {
        Ok(removed) => {
            if !removed.is_empty() {
                log::info!("removed orphaned volumes: {}", removed.join(", "));
            }
            Response::json(200, &json!({ "status": "success" }))
        }
        Err(e) => failed(500, &one_line(&e)),
    }
}

/// Whether a request is `POST /v2/journal-logs` with `follow` (answered streamed, by
/// [`journal_follow`]).
pub fn is_journal_follow(req: &Request) -> bool {
    req.method == "POST"
        && req.path.trim_end_matches('/') == "/v2/journal-logs"
        && Params::of(req).is_ok_and(|p| p.truthy("follow"))
}

/// journalctl's arguments for balena's options (`all`, `follow`, `count`, `unit`, `format`,
/// `containerId`, `since`, `until`), as balena's `spawnJournalctl` passes them.
fn journal_args(p: &Params) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if p.truthy("all") {
        args.push("-a".into());
    }
    if p.truthy("follow") {
        args.push("--follow".into());
    }
    if let Some(n) = p.int("count") {
        args.push(format!("--lines={n}"));
    }
    if let Some(unit) = p.text("unit") {
        args.push(format!("--unit={unit}"));
    }
    args.push(format!(
        "--output={}",
        p.text("format").unwrap_or_else(|| "short".into())
    ));
    if let Some(id) = p.text("containerId") {
        args.push(format!("CONTAINER_ID_FULL={id}"));
    }
    if let Some(since) = p.text("since") {
        args.push(format!("--since={since}"));
    }
    if let Some(until) = p.text("until") {
        args.push(format!("--until={until}"));
    }
    args.push("--no-pager".into());
    args
}

/// `POST /v2/journal-logs` with `follow`: journalctl's output sent as it comes, until the
/// client goes away (then journalctl is killed, as balena's `SIGKILL`) or journalctl ends.
pub fn journal_follow(req: &Request) -> Result<fleet_http::server::ChannelBody, Response> {
    let p = Params::of(req)?;
    let mut child = tokio::process::Command::new("journalctl")
        .args(journal_args(&p))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(500, &format!("journalctl: {e}")))?;
    let Some(mut stdout) = child.stdout.take() else {
        return Err(failed(500, "journalctl: no output pipe"));
    };
    let (tx, body) = fleet_http::server::ChannelBody::new(16);
    tokio::task::spawn_local(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                n = stdout.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let chunk = fleet_http::Bytes::copy_from_slice(&buf[..n]);
                        if tx.send(chunk).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
        let _ = child.kill().await;
    });
    Ok(body)
}

/// `POST /v2/journal-logs` without `follow`: `journalctl` with balena's options, its output
/// as text once it ends (within 30 s).
pub async fn v2_journal_logs(req: &Request) -> Response {
    let p = match Params::of(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let args = journal_args(&p);
    let run = tokio::process::Command::new("journalctl")
        .args(&args)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(JOURNAL_TIMEOUT, run).await {
        Ok(Ok(out)) if out.status.success() => Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: out.stdout,
        },
        Ok(Ok(out)) => failed(
            500,
            &format!(
                "journalctl {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ),
        Ok(Err(e)) => failed(500, &format!("journalctl: {e}")),
        Err(_) => failed(
            500,
            "journalctl did not finish in 30 s: ask for fewer lines",
        ),
    }
}

/// `POST /v1/regenerate-api-key`: balena's `refreshKey` of the key the request came with —
/// the global key or the calling service's own — kept in the data directory and answered as
/// text; the old key stops working at once. A service's containers hold their key in their
/// environment: the next apply (woken now) recreates them with the new one. A new global key
/// goes to the server in the state report (`api_secret`, balena's `reportCurrentState`).
/// Without a key (local mode) the global key is regenerated.
pub fn v1_regenerate_api_key<R: Reconciler>(shared: &Shared<R>, auth: &Auth) -> Response {
    let old = {
        let keys = shared.api_keys.borrow();
        auth.key
            .clone()
            .filter(|k| keys.scope_of(k).is_some())
            .unwrap_or_else(|| keys.global().to_string())
    };
    let regenerated = shared.api_keys.borrow_mut().regenerate(&old);
    match regenerated {
        Ok(Some((scope, key))) => {
            shared
                .reconciler
                .set_service_api_keys(shared.api_keys.borrow().services());
            shared.trigger(false);
            match scope {
                Scope::Global => {
                    log::info!("global supervisor API key regenerated through the API")
                }
                Scope::App(app) => log::info!(
                    "supervisor API key of a service of app {app} regenerated through the API"
                ),
            }
            Response::text(200, &key)
        }
        Ok(None) => Response::text(401, "Unauthorized"),
        Err(e) => Response::text(503, &one_line(&e)),
    }
}
