//! balena's local-mode API, as `balena push <ip>` and `balena device logs <ip>` drive it:
//! `/v2/version`, `/v2/containerId`, `/v2/local/device-info`, `/v2/local/logs` (NDJSON,
//! streamed) and `/v2/local/target-state` in balena's v2 local format, converted to and from
//! the v3 target the daemon keeps, as balena's supervisor converts it.

use std::collections::BTreeMap;
use std::rc::Rc;

use fleet_http::Bytes;
use fleet_http::server::ChannelBody;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::Reconciler;
use super::message::{Request, Response};
use super::service_logs::{self, ServiceLine};
use super::state::{Shared, now_ms};
use super::target;
use super::versions::BALENA_SUPERVISOR_API;

/// Images `balena push` builds on the device: never pulled from a registry.
pub const LOCAL_IMAGE_PREFIX: &str = "local_image_";
/// The engine's ID of a pushed image, put on its service when the target is posted, so a
/// rebuilt image under the same name replaces the running container.
pub const LABEL_LOCAL_IMAGE_ID: &str = "io.fleet.local.image-id";
/// The device UUID of a converted target when config.json names none.
const LOCAL_DEVICE: &str = "local";

/// `GET /v2/version`: balena's API level (what balena-cli checks) and fleetOS's own.
pub fn version() -> Response {
    Response::json(
        200,
        &json!({
            "status": "success",
            "version": BALENA_SUPERVISOR_API,
            "fleetos": env!("CARGO_PKG_VERSION"),
        }),
    )
}

/// `GET /v2/local/device-info`: the device type and balena's architecture name.
pub fn device_info<R>(shared: &Shared<R>) -> Response {
    let arch = balena_arch(std::env::consts::ARCH);
    let device_type = shared
        .settings
        .device_type
        .clone()
        .unwrap_or_else(|| format!("generic-{arch}"));
    Response::json(
        200,
        &json!({ "status": "success", "info": { "arch": arch, "deviceType": device_type } }),
    )
}

/// balena's names for the architectures it builds for.
pub fn balena_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "i386",
        "arm" => "armv7hf",
        other => other,
    }
}

/// `GET /v2/containerId?serviceName=<name>` (or `service=`): that service's container;
/// without a name, every service's.
pub async fn container_id<R: Reconciler>(
    shared: &Shared<R>,
    req: &Request,
    auth: &super::auth::Auth,
) -> Response {
    let states = match shared.reconciler.service_states().await {
        // Only the services of the apps the key reaches, as balena filters them.
        Ok(s) => s
            .into_iter()
            .filter(|s| super::auth::state_in_scope(shared, auth, s))
            .collect::<Vec<_>>(),
        Err(e) => {
            let message = fleet_log::error::one_line(&e);
            return Response::json(503, &json!({ "status": "failed", "message": message }));
        }
    };
    match req.query("serviceName").or_else(|| req.query("service")) {
        Some(name) => match states.iter().find(|s| s.service == name) {
            Some(s) => Response::json(
                200,
                &json!({ "status": "success", "containerId": s.container_id }),
            ),
            None => Response::json(
                503,
                &json!({ "status": "failed", "message": "Could not find service with that name" }),
            ),
        },
        None => {
            let services: BTreeMap<&str, &str> = states
                .iter()
                .map(|s| (s.service.as_str(), s.container_id.as_str()))
                .collect();
            Response::json(200, &json!({ "status": "success", "services": services }))
        }
    }
}

fn dev_mode_only<R>(shared: &Shared<R>) -> Option<Response> {
    (!shared.settings.development_mode).then(|| {
        Response::json(
            403,
            &json!({ "status": "failed", "message": "only available in development mode (config.json developmentMode)" }),
        )
    })
}

/// `GET /v2/local/target-state`: the target in balena's v2 local format, always a document
/// (no apps yet: empty `apps`).
pub fn get_target<R>(shared: &Shared<R>) -> Response {
    if let Some(r) = dev_mode_only(shared) {
        return r;
    }
    let document = shared.target.borrow().as_ref().map(|t| t.document.clone());
    Response::json(
        200,
        &json!({ "status": "success", "state": to_v2(document.as_ref()) }),
    )
}

/// `POST /v2/local/target-state`: balena's v2 local body (`{"local": …}`, what balena-cli
/// sends) or a v3 target document; validated, kept and applied.
pub async fn post_target<R: Reconciler>(shared: &Shared<R>, body: &[u8]) -> Response {
    if let Some(r) = dev_mode_only(shared) {
        return r;
    }
    let failed = |m: String| Response::json(400, &json!({ "status": "failed", "message": m }));
    let posted: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return failed(format!("body is not JSON: {e}")),
    };
    let bytes = if posted.get("local").is_some() {
        let device = device_uuid(shared);
        let mut v3 = match from_v2(&posted, &device) {
            Ok(v3) => v3,
            Err(e) => return failed(e),
        };
        pin_local_images(shared, &mut v3).await;
        serde_json::to_vec_pretty(&v3).unwrap_or_default()
    } else {
        body.to_vec()
    };
    match target::accept(shared, &bytes) {
        Ok(changed) => {
            if changed {
                log::info!("new target from POST /v2/local/target-state");
            }
            shared.wake.notify_one();
            Response::json(200, &json!({ "status": "success", "message": "OK" }))
        }
        Err(e) => failed(e),
    }
}

/// config.json's UUID, else the current target's device, else `local`.
fn device_uuid<R>(shared: &Shared<R>) -> String {
    if let Some(uuid) = &shared.settings.uuid {
        return uuid.clone();
    }
    shared
        .target
        .borrow()
        .as_ref()
        .map_or_else(|| LOCAL_DEVICE.to_string(), |t| t.state.device_uuid.clone())
}

/// Labels each service running a pushed image (`local_image_*`) with the engine's ID of
/// it, so a rebuild under the same name is a change of the target.
async fn pin_local_images<R: Reconciler>(shared: &Shared<R>, v3: &mut Value) {
    let services = v3
        .as_object_mut()
        .into_iter()
        .flat_map(|d| d.values_mut())
        .filter_map(|device| device.get_mut("apps")?.as_object_mut())
        .flat_map(|apps| apps.values_mut())
        .filter_map(|app| app.get_mut("releases")?.as_object_mut())
        .flat_map(|releases| releases.values_mut())
        .filter_map(|release| release.get_mut("services")?.as_object_mut())
        .flat_map(|services| services.values_mut());
    for service in services {
        let Some(image) = service.get("image").and_then(Value::as_str) else {
            continue;
        };
        if !image.starts_with(LOCAL_IMAGE_PREFIX) {
            continue;
        }
        let id = match shared.reconciler.image_id(image).await {
            Ok(Some(id)) => id,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("cannot read the ID of image {image}: {e}");
                continue;
            }
        };
        if let Some(obj) = service.as_object_mut() {
            let labels = obj.entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert(LABEL_LOCAL_IMAGE_ID.into(), Value::String(id));
            }
        }
    }
}

/// balena's v2 local body → a v3 target document for `device`: app ids become app UUIDs,
/// `commit` the release, each service's non-target fields its composition (balena
/// supervisor's `fromV2TargetState` in local mode).
pub fn from_v2(v2: &Value, device: &str) -> Result<Value, String> {
    let local = v2
        .get("local")
        .and_then(Value::as_object)
        .ok_or("`local` must be an object")?;
    let mut doc = Map::new();
    if let Some(name) = local.get("name").and_then(Value::as_str) {
        doc.insert("name".into(), json!(name));
    }
    if let Some(config) = local.get("config").filter(|c| c.is_object()) {
        doc.insert("config".into(), config.clone());
    }
    let mut apps = Map::new();
    let empty = Map::new();
    let v2_apps = match local.get("apps") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(a)) => a,
        Some(_) => return Err("`local.apps` must be an object".into()),
    };
    for (id, app) in v2_apps {
        let at = |key: &str| format!("local.apps.{id}.{key}");
        let app = app
            .as_object()
            .ok_or_else(|| format!("local.apps.{id}: must be an object"))?;
        let mut releases = Map::new();
        if let Some(commit) = app
            .get("commit")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
        {
            let mut services = Map::new();
            let v2_services = match app.get("services") {
                None | Some(Value::Null) => &empty,
                Some(Value::Object(s)) => s,
                Some(_) => return Err(format!("{} must be an object", at("services"))),
            };
            for (service_id, service) in v2_services {
                let mut composition = service
                    .as_object()
                    .cloned()
                    .ok_or_else(|| format!("{}: must be an object", at("services")))?;
                let name = composition
                    .remove("serviceName")
                    .and_then(|n| n.as_str().map(str::to_string))
                    .ok_or_else(|| {
                        format!("{}.{service_id}.serviceName: missing", at("services"))
                    })?;
                let mut s = Map::new();
                s.insert(
                    "id".into(),
                    composition
                        .remove("serviceId")
                        .unwrap_or_else(|| json!(service_id)),
                );
                for (from, to) in [
                    ("imageId", "image_id"),
                    ("image", "image"),
                    ("environment", "environment"),
                    ("labels", "labels"),
                    ("running", "running"),
                    ("contract", "contract"),
                ] {
                    if let Some(v) = composition.remove(from).filter(|v| !v.is_null()) {
                        s.insert(to.into(), v);
                    }
                }
                s.insert("composition".into(), Value::Object(composition));
                services.insert(name, Value::Object(s));
            }
            let release_id = app.get("releaseId").cloned().unwrap_or(json!(0));
            releases.insert(
                commit.to_string(),
                json!({
                    "id": release_id,
                    "services": services,
                    "volumes": app.get("volumes").filter(|v| !v.is_null()).cloned().unwrap_or(json!({})),
                    "networks": app.get("networks").filter(|v| !v.is_null()).cloned().unwrap_or(json!({})),
                }),
            );
        }
        let name = app.get("name").and_then(Value::as_str).unwrap_or(id);
        apps.insert(
            id.clone(),
            json!({ "id": id, "name": name, "class": "fleet", "releases": releases }),
        );
    }
    doc.insert("apps".into(), Value::Object(apps));
    let mut out = Map::new();
    out.insert(device.to_string(), Value::Object(doc));
    Ok(Value::Object(out))
}

/// A v3 target document (or none) → balena's v2 local state: `{"local": {name, config,
/// apps}}` with apps keyed by numeric id, services by service id. Releases given as one
/// compose file list only their per-service additions.
pub fn to_v2(document: Option<&Value>) -> Value {
    let device = document
        .and_then(Value::as_object)
        .and_then(|d| d.values().next())
        .and_then(Value::as_object);
    let field = |key: &str| device.and_then(|d| d.get(key)).cloned();
    let mut apps = Map::new();
    let v3_apps = device
        .and_then(|d| d.get("apps"))
        .and_then(Value::as_object);
    for (uuid, app) in v3_apps.into_iter().flatten() {
        let id = app.get("id").map_or_else(
            || uuid.clone(),
            |v| v.to_string().trim_matches('"').to_string(),
        );
        let release = app
            .get("releases")
            .and_then(Value::as_object)
            .and_then(|r| r.iter().next());
        let mut v2 =
            json!({ "name": app.get("name").cloned().unwrap_or(json!(uuid)), "services": {} });
        if let Some((commit, release)) = release {
            let mut services = Map::new();
            let v3_services = release.get("services").and_then(Value::as_object);
            for (i, (name, s)) in v3_services.into_iter().flatten().enumerate() {
                let service_id = s.get("id").cloned().unwrap_or(json!(i + 1));
                let mut out = s
                    .get("composition")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                out.insert("serviceName".into(), json!(name));
                out.insert("serviceId".into(), service_id.clone());
                out.insert(
                    "imageId".into(),
                    s.get("image_id").cloned().unwrap_or(service_id.clone()),
                );
                for (from, to, default) in [
                    ("image", "image", Value::Null),
                    ("environment", "environment", json!({})),
                    ("labels", "labels", json!({})),
                    ("running", "running", json!(true)),
                ] {
                    out.insert(to.into(), s.get(from).cloned().unwrap_or(default));
                }
                if let Some(contract) = s.get("contract") {
                    out.insert("contract".into(), contract.clone());
                }
                let key = service_id.to_string().trim_matches('"').to_string();
                services.insert(key, Value::Object(out));
            }
            v2["commit"] = json!(commit);
            v2["releaseId"] = release.get("id").cloned().unwrap_or(Value::Null);
            v2["services"] = Value::Object(services);
            v2["volumes"] = release.get("volumes").cloned().unwrap_or(json!({}));
            v2["networks"] = release.get("networks").cloned().unwrap_or(json!({}));
        }
        apps.insert(id, v2);
    }
    let mut local = Map::new();
    if let Some(name) = field("name") {
        local.insert("name".into(), name);
    }
    local.insert("config".into(), field("config").unwrap_or(json!({})));
    local.insert("apps".into(), Value::Object(apps));
    json!({ "local": local })
}

/// Is this `GET /v2/local/logs` (answered with a stream, not by the router)?
pub fn is_log_stream(req: &Request) -> bool {
    req.method == "GET" && req.path.trim_end_matches('/') == "/v2/local/logs"
}

/// `GET /v2/local/logs`: NDJSON, one object a line (`message`, `timestamp` in ms,
/// `serviceName`, `isSystem`, `isStdErr`), starting at once with a system line so the
/// client sees the answer before the first log; then the output of every supervised
/// container, including those started later, until the client goes away.
pub fn logs<R: Reconciler + 'static>(shared: Rc<Shared<R>>) -> ChannelBody {
    let (tx, body) = ChannelBody::new(64);
    tokio::task::spawn_local(stream_logs(shared, tx));
    body
}

fn ndjson(v: &Value) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

async fn stream_logs<R: Reconciler + 'static>(shared: Rc<Shared<R>>, tx: mpsc::Sender<Bytes>) {
    let first = json!({ "message": "Streaming logs", "isSystem": true, "timestamp": now_ms() });
    if tx.send(ndjson(&first)).await.is_err() {
        return;
    }
    let (lines_tx, mut lines) = mpsc::channel::<ServiceLine>(64);
    let since = super::state::unix_now();
    let follower = tokio::task::spawn_local(service_logs::follow_all(shared, since, lines_tx));
    loop {
        tokio::select! {
            _ = tx.closed() => break,
            line = lines.recv() => {
                let Some(line) = line else { break };
                let v = json!({
                    "message": line.line.message,
                    "timestamp": now_ms(),
                    "serviceName": line.service,
                    "isSystem": false,
                    "isStdErr": line.line.stderr,
                });
                if tx.send(ndjson(&v)).await.is_err() {
                    break;
                }
            }
        }
    }
    follower.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli_body() -> Value {
        // What balena-cli 25 posts for a one-Dockerfile project (`generateTargetState`).
        json!({"local": {"name": "dev", "config": {"SUPERVISOR_POLL_INTERVAL": "600000"}, "apps": {"1": {
            "name": "localapp", "commit": "10ca12e1ea5e", "releaseId": "1",
            "services": {"1": {"environment": {"A": "1"}, "labels": {"io.resin.features.supervisor-api": "1"},
                "privileged": true, "tty": true, "restart": "always", "network_mode": "host",
                "volumes": ["resin-data:/data"], "imageId": 1, "serviceName": "main", "serviceId": 1,
                "image": "local_image_main:latest", "running": true}},
            "volumes": {"resin-data": {}}, "networks": {}}}}})
    }

    #[test]
    fn v2_local_body_becomes_a_valid_v3_target() {
        let v3 = from_v2(&cli_body(), "dev0").unwrap();
        let svc = &v3["dev0"]["apps"]["1"]["releases"]["10ca12e1ea5e"]["services"]["main"];
        assert_eq!(svc["image"], "local_image_main:latest");
        assert_eq!(svc["image_id"], 1);
        assert_eq!(svc["environment"]["A"], "1");
        assert_eq!(svc["composition"]["network_mode"], "host");
        assert!(svc["composition"].get("serviceName").is_none());
        assert_eq!(v3["dev0"]["config"]["SUPERVISOR_POLL_INTERVAL"], "600000");
        let bytes = serde_json::to_vec(&v3).unwrap();
        let state = fleet_release::target_state::parse(&bytes).unwrap();
        let app = &state.apps["1"];
        assert_eq!((app.id, app.name.as_str()), (1, "localapp"));
        let release = app.release.as_ref().unwrap();
        assert_eq!((release.uuid.as_str(), release.id), ("10ca12e1ea5e", 1));
    }

    #[test]
    fn v3_back_to_v2_round_trips_what_the_cli_sent() {
        let v3 = from_v2(&cli_body(), "dev0").unwrap();
        let v2 = to_v2(Some(&v3));
        assert_eq!(v2, cli_body());
    }

    #[test]
    fn no_target_is_still_a_document() {
        assert_eq!(to_v2(None), json!({"local": {"config": {}, "apps": {}}}));
        let v3 = from_v2(&json!({"local": {"config": {}}}), "d").unwrap();
        assert_eq!(v3, json!({"d": {"config": {}, "apps": {}}}));
    }

    #[test]
    fn bad_v2_bodies_name_the_field() {
        let e = from_v2(&json!({"local": []}), "d").unwrap_err();
        assert!(e.contains("`local`"), "{e}");
        let e = from_v2(
            &json!({"local": {"apps": {"1": {"commit": "c", "services": {"1": {"image": "x"}}}}}}),
            "d",
        )
        .unwrap_err();
        assert_eq!(e, "local.apps.1.services.1.serviceName: missing");
    }

    #[test]
    fn architectures_have_balena_names() {
        assert_eq!(balena_arch("x86_64"), "amd64");
        assert_eq!(balena_arch("aarch64"), "aarch64");
        assert_eq!(balena_arch("arm"), "armv7hf");
    }
}
