//! The supervisor HTTP API (balena's v1/v2 subset): routing and handlers (who may ask: `auth.rs`).

use std::collections::BTreeMap;

use fleet_log::error::{Chain, one_line};
use serde_json::{Value, json};

use super::api_keys::Scope;
use super::auth::{Auth, authenticate, numeric_app_id, out_of_scope, state_in_scope};
use super::device_api::{self, failure};
use super::legacy_state::ImageState;
pub use super::message::{Request, Response};
use super::power::{self, PowerAction};
use super::state::Shared;
use super::{Reconciler, ServiceState};
use super::{host_config, local, tags, vpn};

/// `/v1/healthy` also fails when the engine does not answer this fast.
const ENGINE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn route<R: Reconciler>(shared: &Shared<R>, req: &Request) -> Response {
    let path = req.path.trim_end_matches('/');
    let Some(auth) = authenticate(shared, req) else {
        return Response::text(401, "Unauthorized");
    };
    let auth = &auth;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["ping"]) => Response::text(200, "OK"),
        ("GET", ["v1", "healthy"]) => healthy(shared).await,
        ("GET", ["v2", "applications", "state"]) => applications_state(shared, auth).await,
        ("GET", ["v2", "state", "status"]) => state_status(shared, auth).await,
        ("POST", ["v2", "applications", id, "purge"]) => {
            device_api::v2_purge(shared, id, req, auth).await
        }
        ("GET", ["v2", "applications", id, "state"]) => {
            device_api::v2_app_state(shared, id, auth).await
        }
        ("GET", ["v1", "apps", id]) => device_api::v1_app(shared, id, auth).await,
        ("POST", ["v1", "apps", id, a @ ("stop" | "start")]) => {
            device_api::v1_app_action(shared, id, a, req, auth).await
        }
        ("POST", ["v1", "restart"]) => device_api::v1_restart(shared, req, auth).await,
        ("POST", ["v1", "purge"]) => device_api::v1_purge(shared, req, auth).await,
        ("GET", ["v1", "device"]) => device_api::v1_device(shared).await,
        ("POST", ["v1", "blink"]) => device_api::v1_blink(),
        ("GET", ["v1", "device", "host-config"]) => host_config::get(shared),
        ("PATCH", ["v1", "device", "host-config"]) => host_config::patch(shared, req).await,
        ("POST", ["v1", "regenerate-api-key"]) => device_api::v1_regenerate_api_key(shared, auth),
        ("GET", ["v2", "device", "name"]) => device_api::v2_device_name(shared),
        ("GET", ["v2", "device", "tags"]) => device_api::v2_device_tags(shared).await,
        ("PATCH", ["v2", "device", "tags"]) => tags::patch(shared, req),
        ("GET", ["v2", "device", "vpn"]) => vpn::v2_device_vpn().await,
        ("GET", ["v2", "cleanup-volumes"]) => device_api::v2_cleanup_volumes(shared, auth).await,
        ("POST", ["v2", "journal-logs"]) => device_api::v2_journal_logs(req).await,
        ("POST", ["v2", "applications", app_id, action]) => {
            app_action(shared, app_id, action, req, auth).await
        }
        ("POST", ["v1", "update"]) => match body(req) {
            Ok(b) if b.force || instant_updates(shared) => {
                shared.trigger_cancelling(b.force, b.cancel);
                Response::text(204, "")
            }
            Ok(_) => {
                log::debug!("update request ignored: instant updates are off and no force");
                Response::text(202, "Accepted")
            }
            Err(r) => r,
        },
        ("POST", ["v1", "reboot"]) => power(shared, PowerAction::Reboot, req).await,
        ("POST", ["v1", "shutdown"]) => power(shared, PowerAction::PowerOff, req).await,
        ("GET", ["v2", "local", "target-state"]) => local::get_target(shared),
        ("POST", ["v2", "local", "target-state"]) => local::post_target(shared, &req.body).await,
        ("GET", ["v2", "version"]) => local::version(),
        ("GET", ["v2", "containerId"]) => local::container_id(shared, req, auth).await,
        ("GET", ["v2", "local", "device-info"]) => local::device_info(shared),
        (_, ["ping"] | ["v1", "healthy" | "update" | "reboot" | "shutdown"])
        | (_, ["v2", "applications", "state"] | ["v2", "state", "status"])
        | (_, ["v2", "applications", _, _] | ["v2", "local", "target-state"]) => {
            Response::text(405, "Method Not Allowed")
        }
        _ => Response::text(404, "Not Found"),
    }
}

#[derive(Debug, Default)]
struct ActionBody {
    force: bool,
    /// `POST /v1/update`: abort the apply in flight (balena v17.1).
    cancel: bool,
    service_name: Option<String>,
    image_id: Option<u64>,
}

/// The body of the POST endpoints, JSON or form: `force` (boolean or balena's truthy
/// strings), `serviceName` or `imageId` (all optional).
/// balena's `instantUpdates` (`SUPERVISOR_INSTANT_UPDATE_TRIGGER`, default on): when off,
/// `POST /v1/update` without `force` is acknowledged (`202`) and nothing is fetched.
fn instant_updates<R>(shared: &Shared<R>) -> bool {
    device_api::config_var(shared, "SUPERVISOR_INSTANT_UPDATE_TRIGGER")
        .is_none_or(|v| !["0", "false", "off"].contains(&v.to_ascii_lowercase().as_str()))
}

fn body(req: &Request) -> Result<ActionBody, Response> {
    let p = super::params::Params::of(req)?;
    Ok(ActionBody {
        force: p.force(),
        cancel: p.truthy("cancel"),
        service_name: p.text("serviceName"),
        image_id: p.int("imageId"),
    })
}

async fn healthy<R: Reconciler>(shared: &Shared<R>) -> Response {
    let stalled = shared.heartbeat.get().elapsed();
    if stalled > shared.timing.stall_limit {
        return Response::text(
            500,
            &format!("Unhealthy: the reconcile loop made no progress for {stalled:?}"),
        );
    }
    match tokio::time::timeout(ENGINE_PROBE_TIMEOUT, shared.reconciler.service_states()).await {
        Ok(Ok(_)) => Response::text(200, ""),
        Ok(Err(e)) => Response::text(500, &format!("Unhealthy: engine: {}", Chain(&e))),
        Err(_) => Response::text(500, "Unhealthy: engine did not answer"),
    }
}

async fn services<R: Reconciler>(shared: &Shared<R>) -> Result<Vec<ServiceState>, Response> {
    shared
        .reconciler
        .service_states()
        .await
        .map_err(|e| failure(&e))
}

/// `GET /v2/applications/state`: apps by name, each with its services' current state.
async fn applications_state<R: Reconciler>(shared: &Shared<R>, auth: &Auth) -> Response {
    let states = match services(shared).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Only the apps the key reaches (balena filters its app list by scope).
    let states: Vec<ServiceState> = states
        .into_iter()
        .filter(|s| state_in_scope(shared, auth, s))
        .collect();
    // Target services without a container of the target release: their image's pull.
    let pending = match super::cloud::report::pending_services(shared, &states).await {
        Ok(p) => p,
        Err(e) => return failure(&e),
    };
    let target = shared.target.borrow().clone();
    let apps = target.as_ref().map(|t| &t.state.apps);
    let mut out = serde_json::Map::new();
    let mut by_app: BTreeMap<&str, Vec<&ServiceState>> = BTreeMap::new();
    for s in &states {
        by_app.entry(&s.app).or_default().push(s);
    }
    if let Some(apps) = apps {
        for (uuid, app) in apps {
            if auth.allows(app.id) {
                by_app.entry(uuid).or_default();
            }
        }
    }
    for (uuid, services) in by_app {
        let app = apps.and_then(|a| a.get(uuid));
        let release = app.and_then(|a| a.release.as_ref());
        let mut svc = serde_json::Map::new();
        for s in services {
            let release_id = release.filter(|r| r.uuid == s.release).map(|r| r.id);
            svc.insert(
                s.service.clone(),
                json!({
                    "status": s.status,
                    "releaseId": release_id,
                    "release": s.release,
                    "image": s.image,
                    "containerId": s.container_id,
                    "restartCount": s.restart_count,
                    "downloadProgress": null,
                }),
            );
        }
        // balena lists the target release's services: one whose image is being pulled or
        // is there but has no container yet is `Downloading` (with the pull's whole percent)
        // or `Downloaded`, in place of an older release's container.
        for p in pending.iter().filter(|p| p.app_uuid == uuid) {
            let (status, progress) = match p.state {
                ImageState::Pulling(percent) => ("Downloading", Some(percent)),
                ImageState::Present => ("Downloaded", None),
                ImageState::Missing => continue,
            };
            svc.insert(
                p.service.clone(),
                json!({
                    "status": status,
                    "releaseId": p.release_id,
                    "release": p.release_uuid,
                    "image": p.image,
                    "containerId": null,
                    "restartCount": null,
                    "downloadProgress": progress,
                }),
            );
        }
        let name = app.map_or(uuid, |a| a.name.as_str());
        out.insert(
            name.to_string(),
            json!({
                "appId": app.map(|a| a.id),
                "appUuid": uuid,
                "commit": release.map(|r| r.uuid.clone()),
                "services": svc,
            }),
        );
    }
    Response::json(200, &Value::Object(out))
}

/// `GET /v2/state/status`: balena's overall status plus the last apply.
async fn state_status<R: Reconciler>(shared: &Shared<R>, auth: &Auth) -> Response {
    let states = match services(shared).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Only the containers of the apps the key reaches, as balena filters them.
    let states: Vec<ServiceState> = states
        .into_iter()
        .filter(|s| state_in_scope(shared, auth, s))
        .collect();
    let target = shared.target.borrow().clone();
    let last = shared.last_apply.borrow().clone();
    let settled = last
        .as_ref()
        .is_some_and(|l| l.error.is_none() && l.summary.held.is_empty());
    let app_state = if !shared.applying.get() && settled {
        "applied"
    } else {
        "applying"
    };
    let containers: Vec<Value> = states
        .iter()
        .map(|s| {
            let app_id = target
                .as_ref()
                .and_then(|t| t.state.apps.get(&s.app))
                .map(|a| a.id);
            json!({
                "appId": app_id,
                "appUuid": s.app,
                "serviceName": s.service,
                "status": s.status,
                "imageId": s.image,
                "containerId": s.container_id,
                "releaseUuid": s.release,
                "restartCount": s.restart_count,
            })
        })
        .collect();
    let release = last.as_ref().and_then(|l| l.release.clone());
    Response::json(
        200,
        &json!({
            "status": "success",
            "appState": app_state,
            "overallDownloadProgress": null,
            "containers": containers,
            "release": release,
            "lastApply": last,
        }),
    )
}

async fn app_action<R: Reconciler>(
    shared: &Shared<R>,
    app_id: &str,
    action: &str,
    req: &Request,
    auth: &Auth,
) -> Response {
    let b = match body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    // balena checks the key's scope before looking the app up.
    if !numeric_app_id(shared, app_id).map_or(auth.scope == Scope::Global, |id| auth.allows(id)) {
        return out_of_scope();
    }
    let Some(app) = shared.app_uuid(app_id) else {
        return Response::text(
            404,
            &format!("Application {app_id} not found in the target"),
        );
    };
    // balena names the service by `serviceName` or by its release's `imageId`.
    let by_image = b.image_id.and_then(|image_id| {
        let target = shared.target.borrow();
        let release = target.as_ref()?.state.apps.get(&app)?.release.as_ref()?;
        release
            .image_ids
            .iter()
            .find(|(_, id)| **id == image_id)
            .map(|(service, _)| service.clone())
    });
    if b.image_id.is_some() && by_image.is_none() && b.service_name.is_none() {
        return Response::text(
            404,
            "Service not found, a container must exist for this action",
        );
    }
    let service = b.service_name.as_deref().or(by_image.as_deref());
    let _actions = shared.actions.lock().await;
    let r = &shared.reconciler;
    let result = match (action, service) {
        ("restart", _) => r.restart_app(&app, b.force).await,
        ("restart-service" | "stop-service" | "start-service", None) => {
            return Response::text(400, "Missing serviceName");
        }
        ("restart-service", Some(s)) => r.restart_service(&app, s, b.force).await,
        ("stop-service", Some(s)) => r.stop_service(&app, s, b.force).await,
        ("start-service", Some(s)) => r.start_service(&app, s, b.force).await,
        _ => return Response::text(404, "Not Found"),
    };
    match result {
        Ok(()) => Response::text(200, "OK"),
        Err(e) => failure(&e),
    }
}

async fn power<R: Reconciler>(shared: &Shared<R>, action: PowerAction, req: &Request) -> Response {
    let b = match body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let answer = |status: u16, data: &str, error: Option<String>| {
        Response::json(status, &json!({ "Data": data, "Error": error }))
    };
    if !b.force {
        match shared.reconciler.current_state().await {
            Ok(state) if !state.locked_apps.is_empty() => {
                let apps: Vec<&str> = state.locked_apps.iter().map(String::as_str).collect();
                return answer(
                    423,
                    "",
                    Some(format!(
                        "updates are locked by app(s) {}; use force to override",
                        apps.join(", ")
                    )),
                );
            }
            Ok(_) => {}
            Err(e) => {
                return answer(
                    503,
                    "",
                    Some(format!("cannot check update locks: {}", Chain(&e))),
                );
            }
        }
    }
    match power::request(action).await {
        Ok(()) => {
            log::info!("{} requested through the API", action.verb());
            answer(202, "OK", None)
        }
        Err(e) => answer(500, "", Some(one_line(&e))),
    }
}
