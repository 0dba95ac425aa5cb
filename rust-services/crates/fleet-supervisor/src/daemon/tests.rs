//! The daemon over real TCP: the API with an in-memory [`Reconciler`] (the engine side has
//! its own tests), the local target file, and polling a real HTTP server on loopback.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::state::Shared;
use super::*;
use fleet_release::plan::CurrentState;

const EXAMPLE: &str = include_str!("../../../fleet-release/doc/target.example.json");
const DEVICE: &str = "f3a1c2d4e5b6478990a1b2c3d4e5f607";
const APP: &str = "7d2c9b1e4a5f4c3b8e6d0a1b2c3d4e5f";
const KEY: &str = "sekrit";

#[derive(Default)]
struct Memory {
    calls: RefCell<Vec<String>>,
    applied: RefCell<Vec<TargetState>>,
    locked: Cell<bool>,
    engine_down: Cell<bool>,
    /// `apply` never returns (a pull that hangs) while set.
    hang: Cell<bool>,
    /// No container yet (a first release still downloading).
    no_containers: Cell<bool>,
    downloads: RefCell<Downloads>,
}

impl Memory {
    fn log(&self, call: String) {
        self.calls.borrow_mut().push(call);
    }

    /// How many applies began.
    fn applies(&self) -> usize {
        self.calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with("apply"))
            .count()
    }

    fn gate(&self, app: &str, force: bool) -> Result<(), ReconcileError> {
        if self.locked.get() && !force {
            return Err(ReconcileError::Locked { app: app.into() });
        }
        Ok(())
    }
}

impl Reconciler for Memory {
    async fn current_state(&self) -> Result<CurrentState, ReconcileError> {
        let mut s = CurrentState::default();
        if self.locked.get() {
            s.locked_apps.insert(APP.to_string());
        }
        Ok(s)
    }

    async fn service_states(&self) -> Result<Vec<ServiceState>, ReconcileError> {
        if self.engine_down.get() {
            return Err(ReconcileError::failed(std::io::Error::other(
                "engine socket: connection refused",
            )));
        }
        if self.no_containers.get() {
            return Ok(Vec::new());
        }
        Ok(vec![ServiceState {
            app: APP.into(),
            service: "db".into(),
            release: "a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
            image: "registry.example/greenhouse-db:5521".into(),
            container_id: "c0ffee".into(),
            status: "running".into(),
            restart_count: 3,
            ids: None,
        }])
    }

    async fn apply(
        &self,
        target: &TargetState,
        force: bool,
    ) -> Result<ApplySummary, ReconcileError> {
        self.log(format!("apply force={force}"));
        if self.hang.get() {
            std::future::pending::<()>().await;
        }
        self.applied.borrow_mut().push(target.clone());
        Ok(ApplySummary::default())
    }

    fn downloads(&self) -> Downloads {
        self.downloads.borrow().clone()
    }

    async fn restart_service(&self, app: &str, s: &str, force: bool) -> Result<(), ReconcileError> {
        self.gate(app, force)?;
        if s != "db" {
            return Err(ReconcileError::NoSuchService {
                app: app.into(),
                service: s.into(),
            });
        }
        self.log(format!("restart-service {app} {s} {force}"));
        Ok(())
    }

    async fn stop_service(&self, app: &str, s: &str, force: bool) -> Result<(), ReconcileError> {
        self.gate(app, force)?;
        self.log(format!("stop-service {app} {s} {force}"));
        Ok(())
    }

    async fn start_service(&self, app: &str, s: &str, force: bool) -> Result<(), ReconcileError> {
        self.log(format!("start-service {app} {s} {force}"));
        Ok(())
    }

    async fn restart_app(&self, app: &str, force: bool) -> Result<(), ReconcileError> {
        self.gate(app, force)?;
        self.log(format!("restart {app} {force}"));
        Ok(())
    }

    fn set_service_api_keys(&self, keys: &super::api_keys::ServiceKeys) {
        self.log(format!("api-keys {}", serde_json::to_string(keys).unwrap()));
    }

    async fn purge_app(&self, app: &str, force: bool) -> Result<(), ReconcileError> {
        self.gate(app, force)?;
        self.log(format!("purge {app} {force}"));
        Ok(())
    }

    async fn remove_orphan_volumes(
        &self,
        keep: &std::collections::BTreeSet<fleet_release::plan::Owned>,
        apps: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<Vec<String>, ReconcileError> {
        let names: Vec<String> = keep.iter().map(|o| o.engine_name()).collect();
        let only = apps.map(|a| format!(" of {}", a.iter().cloned().collect::<Vec<_>>().join(",")));
        self.log(format!(
            "cleanup keeping {}{}",
            names.join(","),
            only.unwrap_or_default()
        ));
        Ok(Vec::new())
    }
}

pub(super) fn settings(dir: &Path) -> Settings {
    Settings {
        data_dir: dir.to_path_buf(),
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        api_key: KEY.into(),
        service_api_keys: Default::default(),
        uuid: None,
        api_endpoint: None,
        device_api_key: None,
        device_type: None,
        development_mode: false,
        root_ca: None,
        os_version: None,
        vpn_endpoint: None,
        vpn_port: None,
        registration: Default::default(),
    }
}

pub(super) fn timing() -> Timing {
    Timing {
        reconcile: Duration::from_secs(60),
        retry: Duration::from_millis(100),
        stall_limit: Duration::from_secs(60),
    }
}

/// Runs `body` with the daemon serving on a loopback port.
async fn with_daemon<F, Fut>(settings: Settings, timing: Timing, body: F)
where
    F: FnOnce(SocketAddr, Rc<Shared<Memory>>) -> Fut,
    Fut: Future<Output = ()>,
{
    serve_with(settings, Memory::default(), timing, body).await;
}

/// [`with_daemon`] with any engine side.
pub(super) async fn serve_with<R, F, Fut>(
    settings: Settings,
    reconciler: R,
    timing: Timing,
    body: F,
) where
    R: Reconciler + 'static,
    F: FnOnce(SocketAddr, Rc<Shared<R>>) -> Fut,
    Fut: Future<Output = ()>,
{
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let shared = Rc::new(Shared::new(settings, reconciler, timing));
            let daemon = tokio::task::spawn_local(run_on(listener, shared.clone()));
            body(addr, shared).await;
            daemon.abort();
        })
        .await;
}

pub(super) async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let method = fleet_http::client::Method::from_bytes(method.as_bytes()).unwrap();
    let r = client::request(
        method,
        &url,
        &headers,
        body.as_bytes(),
        None,
        client::Route::Direct,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

pub(super) async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..250 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// `POST /v1/update` with `body` (a `force`) answers 204 and a forced apply follows.
async fn forced_update_applies(addr: SocketAddr, shared: &Shared<Memory>, body: &str) {
    assert_eq!(
        call(addr, "POST", "/v1/update", Some(KEY), body).await.0,
        204
    );
    until("forced apply", || {
        shared
            .reconciler
            .calls
            .borrow()
            .iter()
            .any(|c| c == "apply force=true")
    })
    .await;
}

fn write_target(dir: &Path, doc: &str) {
    std::fs::write(dir.join(settings::TARGET_FILE), doc).unwrap();
}

#[tokio::test]
async fn auth_is_required_except_for_the_probes() {
    let tmp = tempfile::tempdir().unwrap();
    with_daemon(settings(tmp.path()), timing(), |addr, _| async move {
        assert_eq!(
            call(addr, "GET", "/ping", None, "").await,
            (200, "OK".into())
        );
        assert_eq!(call(addr, "GET", "/v1/healthy", None, "").await.0, 200);
        for path in [
            "/v2/applications/state",
            "/v2/state/status",
            "/v2/local/target-state",
        ] {
            assert_eq!(call(addr, "GET", path, None, "").await.0, 401, "{path}");
            assert_eq!(
                call(addr, "GET", path, Some("wrong"), "").await.0,
                401,
                "{path}"
            );
        }
        for path in [
            "/v1/update",
            "/v1/reboot",
            "/v1/shutdown",
            "/v2/applications/1804/restart",
        ] {
            assert_eq!(call(addr, "POST", path, None, "{}").await.0, 401, "{path}");
        }
        assert_eq!(
            call(addr, "GET", "/v2/state/status", Some(KEY), "").await.0,
            200
        );
        let with_query = format!("/v2/state/status?apikey={KEY}");
        assert_eq!(call(addr, "GET", &with_query, None, "").await.0, 200);
        assert_eq!(call(addr, "GET", "/v3/nothing", Some(KEY), "").await.0, 404);
        assert_eq!(
            call(addr, "DELETE", "/v1/update", Some(KEY), "").await.0,
            405
        );
    })
    .await;
}

/// The status of a GET with the given `Authorization` header.
async fn get_with_header(addr: SocketAddr, path: &str, authorization: &str) -> u16 {
    let url = format!("http://{addr}{path}");
    client::request(
        fleet_http::client::Method::GET,
        &url,
        &[("Authorization", authorization)],
        b"",
        None,
        client::Route::Direct,
        Duration::from_secs(30),
    )
    .await
    .unwrap()
    .status
}

#[tokio::test]
async fn the_key_is_read_as_balena_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    with_daemon(settings(tmp.path()), timing(), |addr, _| async move {
        let path = "/v2/state/status";
        assert_eq!(
            get_with_header(addr, path, &format!("ApiKey {KEY}")).await,
            200
        );
        assert_eq!(
            get_with_header(addr, path, &format!("bearer {KEY}")).await,
            200
        );
        assert_eq!(
            get_with_header(addr, path, &format!("Basic {KEY}")).await,
            401
        );
        // `?apikey=` is read first: a wrong one is not made good by the header.
        let wrong_query = format!("{path}?apikey=wrong");
        assert_eq!(
            get_with_header(addr, &wrong_query, &format!("Bearer {KEY}")).await,
            401
        );
        let right_query = format!("{path}?apikey={KEY}");
        assert_eq!(
            get_with_header(addr, &right_query, "Bearer wrong").await,
            200
        );
    })
    .await;
}

#[tokio::test]
async fn local_target_is_applied_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    write_target(tmp.path(), EXAMPLE);
    with_daemon(settings(tmp.path()), timing(), |addr, shared| async move {
        until("first apply", || {
            !shared.reconciler.applied.borrow().is_empty()
        })
        .await;
        assert_eq!(shared.reconciler.applied.borrow()[0].device_uuid, DEVICE);

        let (status, body) = call(addr, "GET", "/v2/applications/state", Some(KEY), "").await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let db = &v["greenhouse"]["services"]["db"];
        assert_eq!(v["greenhouse"]["appId"], json!(1804));
        assert_eq!(
            v["greenhouse"]["commit"],
            json!("a1b2c3d4e5f60718293a4b5c6d7e8f90")
        );
        assert_eq!(db["status"], json!("running"));
        assert_eq!(db["releaseId"], json!(5521));
        assert_eq!(db["containerId"], json!("c0ffee"));
        assert_eq!(db["restartCount"], json!(3));
        assert_eq!(db["image"], json!("registry.example/greenhouse-db:5521"));

        let (_, body) = call(addr, "GET", "/v2/state/status", Some(KEY), "").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], json!("success"));
        assert_eq!(v["appState"], json!("applied"));
        assert_eq!(v["containers"][0]["serviceName"], json!("db"));
        assert_eq!(v["containers"][0]["appId"], json!(1804));

        // /v1/update wakes the loop for a forced apply.
        forced_update_applies(addr, &shared, r#"{"force":true}"#).await;
    })
    .await;
}

#[tokio::test]
async fn a_replaced_local_file_is_picked_up_and_a_bad_one_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    write_target(tmp.path(), EXAMPLE);
    let dir = tmp.path().to_path_buf();
    with_daemon(settings(tmp.path()), timing(), |addr, shared| async move {
        until("first apply", || {
            !shared.reconciler.applied.borrow().is_empty()
        })
        .await;
        let env_of = |t: &TargetState| {
            t.apps[APP].release.as_ref().unwrap().compose.services["db"].environment["SITE"].clone()
        };
        write_target(&dir, "{ not json");
        let applies = shared.reconciler.applied.borrow().len();
        assert_eq!(call(addr, "POST", "/v1/update", Some(KEY), "").await.0, 204);
        until("an apply after the bad file", || {
            shared.reconciler.applied.borrow().len() > applies
        })
        .await;
        assert_eq!(
            env_of(shared.reconciler.applied.borrow().last().unwrap()),
            "north"
        );

        write_target(
            &dir,
            &EXAMPLE.replace("\"SITE\": \"north\"", "\"SITE\": \"south\""),
        );
        assert_eq!(call(addr, "POST", "/v1/update", Some(KEY), "").await.0, 204);
        until("the replaced target applied", || {
            env_of(shared.reconciler.applied.borrow().last().unwrap()) == "south"
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn service_actions_map_app_ids_and_honour_locks() {
    let tmp = tempfile::tempdir().unwrap();
    write_target(tmp.path(), EXAMPLE);
    with_daemon(settings(tmp.path()), timing(), |addr, shared| async move {
        until("target loaded", || shared.target.borrow().is_some()).await;
        let post =
            |path: &'static str, body: &'static str| call(addr, "POST", path, Some(KEY), body);
        let m = &shared.reconciler;
        assert_eq!(
            post(
                "/v2/applications/1804/restart-service",
                r#"{"serviceName":"db"}"#
            )
            .await,
            (200, "OK".into())
        );
        assert_eq!(
            m.calls.borrow().last().unwrap(),
            &format!("restart-service {APP} db false")
        );
        // The app UUID works as well as balena's numeric id.
        let by_uuid = format!("/v2/applications/{APP}/stop-service");
        assert_eq!(
            call(
                addr,
                "POST",
                &by_uuid,
                Some(KEY),
                r#"{"serviceName":"db","force":true}"#
            )
            .await
            .0,
            200
        );
        assert_eq!(
            m.calls.borrow().last().unwrap(),
            &format!("stop-service {APP} db true")
        );
        assert_eq!(
            post(
                "/v2/applications/1804/start-service",
                r#"{"serviceName":"db"}"#
            )
            .await
            .0,
            200
        );
        assert_eq!(post("/v2/applications/1804/restart", "").await.0, 200);
        assert_eq!(
            m.calls.borrow().last().unwrap(),
            &format!("restart {APP} false")
        );

        assert_eq!(
            post("/v2/applications/1804/restart-service", "{}").await.0,
            400
        );
        assert_eq!(
            post(
                "/v2/applications/1804/restart-service",
                r#"{"serviceName":7}"#
            )
            .await
            .0,
            // As balena: a number is a name like any other, and no service has it.
            404
        );
        assert_eq!(
            post("/v2/applications/1804/restart-service", "not json")
                .await
                .0,
            400
        );
        assert_eq!(
            post(
                "/v2/applications/1804/restart-service",
                r#"{"serviceName":"nope"}"#
            )
            .await
            .0,
            404
        );
        assert_eq!(post("/v2/applications/99/restart", "").await.0, 404);
        assert_eq!(post("/v2/applications/1804/explode", "").await.0, 404);

        m.locked.set(true);
        let (status, body) = post("/v2/applications/1804/restart", "").await;
        assert_eq!(status, 423, "{body}");
        assert_eq!(
            post("/v2/applications/1804/restart", r#"{"force":true}"#)
                .await
                .0,
            200
        );
        // A held lock also refuses a reboot without force, before logind is asked.
        let (status, body) = post("/v1/reboot", "{}").await;
        assert_eq!(status, 423, "{body}");
        assert!(body.contains(APP), "{body}");
    })
    .await;
}

#[tokio::test]
async fn reboot_without_a_bus_reports_why() {
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: no other thread of this test process reads this variable meanwhile; the
    // tests that talk to D-Bus are all in this one test.
    unsafe {
        std::env::set_var(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}", tmp.path().join("no-bus").display()),
        )
    };
    with_daemon(settings(tmp.path()), timing(), |addr, _| async move {
        let (status, body) =
            call(addr, "POST", "/v1/shutdown", Some(KEY), r#"{"force":true}"#).await;
        assert_eq!(status, 500, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["Error"].as_str().unwrap().contains("system D-Bus"),
            "{body}"
        );
    })
    .await;
}

#[tokio::test]
async fn local_target_state_endpoint_is_development_mode_only() {
    let tmp = tempfile::tempdir().unwrap();
    with_daemon(settings(tmp.path()), timing(), |addr, _| async move {
        assert_eq!(
            call(addr, "GET", "/v2/local/target-state", Some(KEY), "")
                .await
                .0,
            403
        );
        assert_eq!(
            call(addr, "POST", "/v2/local/target-state", Some(KEY), EXAMPLE)
                .await
                .0,
            403
        );
    })
    .await;
    assert!(!tmp.path().join(settings::TARGET_FILE).exists());

    let mut dev = settings(tmp.path());
    dev.development_mode = true;
    let target_file = tmp.path().join(settings::TARGET_FILE);
    with_daemon(dev, timing(), |addr, shared| async move {
        let (status, body) = call(addr, "GET", "/v2/local/target-state", Some(KEY), "").await;
        assert_eq!(
            (status, body.as_str()),
            (
                200,
                r#"{"status":"success","state":{"local":{"config":{},"apps":{}}}}"#
            )
        );
        let (status, body) = call(addr, "POST", "/v2/local/target-state", Some(KEY), EXAMPLE).await;
        assert_eq!(status, 200, "{body}");
        until("apply of the posted target", || {
            !shared.reconciler.applied.borrow().is_empty()
        })
        .await;
        assert_eq!(std::fs::read_to_string(&target_file).unwrap(), EXAMPLE);

        // A bad document is refused with its problems; the last good one stays.
        let bad = EXAMPLE.replace("\"id\": 1804", "\"id\": \"x\"");
        let (status, body) = call(addr, "POST", "/v2/local/target-state", Some(KEY), &bad).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("failed"), "{body}");
        assert_eq!(std::fs::read_to_string(&target_file).unwrap(), EXAMPLE);
        let (_, body) = call(addr, "GET", "/v2/local/target-state", Some(KEY), "").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let app = &v["state"]["local"]["apps"]["1804"];
        assert_eq!(app["name"], json!("greenhouse"), "{body}");
        assert_eq!(app["commit"], json!("a1b2c3d4e5f60718293a4b5c6d7e8f90"));
        assert_eq!(v["state"]["local"]["name"], json!("greenhouse-7"));
    })
    .await;
}

#[tokio::test]
async fn healthy_fails_when_the_engine_is_gone_or_the_loop_stalls() {
    let tmp = tempfile::tempdir().unwrap();
    with_daemon(settings(tmp.path()), timing(), |addr, shared| async move {
        shared.reconciler.engine_down.set(true);
        let (status, body) = call(addr, "GET", "/v1/healthy", None, "").await;
        assert_eq!(status, 500);
        assert!(body.contains("connection refused"), "{body}");
    })
    .await;
    let stalling = Timing {
        stall_limit: Duration::from_millis(1),
        ..timing()
    };
    with_daemon(settings(tmp.path()), stalling, |addr, _| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, body) = call(addr, "GET", "/v1/healthy", None, "").await;
        assert_eq!(status, 500);
        assert!(body.contains("no progress"), "{body}");
    })
    .await;
}

/// A one-route HTTP server standing in for the API server: answers each request with the
/// current (status, body) and records the Authorization header it saw.
async fn target_server(
    answer: Rc<RefCell<(u16, String)>>,
    seen: Rc<RefCell<Vec<String>>>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = move |req: fleet_http::Request<fleet_http::Incoming>| {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        seen.borrow_mut()
            .push(format!("{} {} {auth}", req.method(), req.uri().path()));
        let (status, body) = answer.borrow().clone();
        async move { fleet_http::server::response(status, "application/json", body.into_bytes()) }
    };
    let handler = Rc::new(handler);
    tokio::task::spawn_local(fleet_http::server::serve(
        listener,
        Default::default(),
        move |_| {
            let handler = handler.clone();
            async move { move |req| handler(req) }
        },
    ));
    addr
}

/// A [`target_server`] answering `EXAMPLE`, and settings for a registered device polling it
/// (inside a `LocalSet`).
async fn remote_target(
    dir: &Path,
) -> (
    Rc<RefCell<(u16, String)>>,
    Rc<RefCell<Vec<String>>>,
    Settings,
) {
    let answer = Rc::new(RefCell::new((200, EXAMPLE.to_string())));
    let seen = Rc::new(RefCell::new(Vec::new()));
    let server = target_server(answer.clone(), seen.clone()).await;
    let mut s = settings(dir);
    s.api_endpoint = Some(format!("http://{server}/"));
    s.uuid = Some(DEVICE.into());
    s.device_api_key = Some("devkey".into());
    (answer, seen, s)
}

#[tokio::test]
async fn polls_the_server_and_keeps_the_last_good_target() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let (answer, seen, s) = remote_target(tmp.path()).await;
            let target_file = tmp.path().join(settings::TARGET_FILE);
            with_daemon(s, timing(), |addr, shared| async move {
                until("apply of the polled target", || {
                    !shared.reconciler.applied.borrow().is_empty()
                })
                .await;
                let poll = format!("GET /device/v3/{DEVICE}/state Bearer devkey");
                assert!(seen.borrow().contains(&poll), "{:?}", seen.borrow());
                assert_eq!(std::fs::read_to_string(&target_file).unwrap(), EXAMPLE);
                until("a state report after the apply", || {
                    seen.borrow()
                        .iter()
                        .any(|s| s == "PATCH /device/v3/state Bearer devkey")
                })
                .await;

                // Server errors, garbage and another device's target keep the last good one.
                let other = EXAMPLE.replace(DEVICE, "0000");
                for bad in [
                    (500, "oops".to_string()),
                    (200, "{not json".to_string()),
                    (200, other),
                ] {
                    *answer.borrow_mut() = bad;
                    let polls = seen.borrow().len();
                    assert_eq!(call(addr, "POST", "/v1/update", Some(KEY), "").await.0, 204);
                    until("a poll", || seen.borrow().len() > polls).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    assert_eq!(std::fs::read_to_string(&target_file).unwrap(), EXAMPLE);
                    assert_eq!(
                        shared.target.borrow().as_ref().unwrap().state.device_uuid,
                        DEVICE
                    );
                }

                // A changed target replaces it.
                let changed = EXAMPLE.replace("\"SITE\": \"north\"", "\"SITE\": \"south\"");
                *answer.borrow_mut() = (200, changed.clone());
                assert_eq!(call(addr, "POST", "/v1/update", Some(KEY), "").await.0, 204);
                until("the changed target on disk", || {
                    std::fs::read_to_string(&target_file).unwrap() == changed
                })
                .await;
            })
            .await;
        })
        .await;
}

/// balena cancels the apply in flight when the server sends a new target: polls go on while
/// an apply runs (one asked for by `POST /v1/update` here), and a changed target drops it.
#[tokio::test]
async fn a_new_target_from_the_server_drops_the_apply_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let (answer, seen, s) = remote_target(tmp.path()).await;
            let memory = Memory::default();
            memory.hang.set(true);
            let polls = move || {
                seen.borrow()
                    .iter()
                    .filter(|r| r.starts_with("GET /device/v3/"))
                    .count()
            };
            serve_with(s, memory, timing(), |addr, shared| async move {
                until("an apply that hangs", || shared.reconciler.applies() == 1).await;
                // The same target again: the apply goes on.
                let before = polls();
                assert_eq!(call(addr, "POST", "/v1/update", Some(KEY), "").await.0, 204);
                until("a poll during the apply", || polls() > before).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert_eq!(shared.reconciler.applies(), 1);
                // A changed one: the apply in flight is dropped and the new target applied.
                let changed = EXAMPLE.replace("\"SITE\": \"north\"", "\"SITE\": \"south\"");
                *answer.borrow_mut() = (200, changed);
                shared.reconciler.hang.set(false);
                assert_eq!(call(addr, "POST", "/v1/update", Some(KEY), "").await.0, 204);
                until("the new target applied", || {
                    shared.reconciler.applied.borrow().last().is_some_and(|t| {
                        t.apps[APP].release.as_ref().unwrap().compose.services["db"].environment
                            ["SITE"]
                            == "south"
                    })
                })
                .await;
                assert_eq!(shared.reconciler.applies(), 2);
            })
            .await;
        })
        .await;
}

#[tokio::test]
async fn an_unreachable_server_leaves_the_saved_target_running() {
    let tmp = tempfile::tempdir().unwrap();
    write_target(tmp.path(), EXAMPLE);
    // A port nothing listens on: bind, note it, close.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut s = settings(tmp.path());
    s.api_endpoint = Some(format!("http://{dead}"));
    s.uuid = Some(DEVICE.into());
    s.device_api_key = Some("devkey".into());
    with_daemon(s, timing(), |_, shared| async move {
        until("apply of the saved target", || {
            !shared.reconciler.applied.borrow().is_empty()
        })
        .await;
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(tmp.path().join(settings::TARGET_FILE)).unwrap(),
        EXAMPLE
    );
}

#[tokio::test]
async fn the_state_report_names_services_status_and_release() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(tmp.path());
    s.listen_port = 48484;
    let shared = Shared::new(s, Memory::default(), timing());
    target::accept(&shared, EXAMPLE.as_bytes()).unwrap();
    let states = shared.reconciler.service_states().await.unwrap();
    let body = cloud::report::body(&shared, DEVICE, &states, &[]);
    let device = &body[DEVICE];
    assert_eq!(device["api_port"], json!(48484));
    assert_eq!(
        device["supervisor_version"],
        json!(versions::supervisor_version())
    );
    assert_eq!(device["os_variant"], json!("prod"));
    assert!(
        device["os_version"]
            .as_str()
            .unwrap()
            .starts_with("balenaOS 2.95.0+fleetos.")
    );
    // balena's v3 shape: services under the release they run, the target's update status.
    let app = &device["apps"][APP];
    let release = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
    assert_eq!(app["release_uuid"], json!(release));
    assert_eq!(
        app["releases"][release]["update_status"],
        json!("applying changes"),
        "not applied yet"
    );
    assert_eq!(
        app["releases"][release]["services"]["db"],
        json!({ "image": "registry.example/greenhouse-db:5521", "status": "Running" })
    );
    assert!(app.get("services").is_none(), "{app}");
}

#[tokio::test]
async fn the_state_report_shows_downloads_as_balena() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = Shared::new(settings(tmp.path()), Memory::default(), timing());
    target::accept(&shared, EXAMPLE.as_bytes()).unwrap();
    let states = shared.reconciler.service_states().await.unwrap();
    let mut downloads = Downloads::default();
    downloads
        .pulling
        .insert("registry.example/greenhouse-sensor:5521".into(), 42);
    let present = std::collections::BTreeSet::from(["registry.example/greenhouse-ui:5521".into()]);
    let pending = {
        let target = shared.target.borrow();
        legacy_state::pending(
            target.as_ref().map(|t| &t.state),
            &states,
            &downloads,
            &present,
        )
    };
    let body = cloud::report::body(&shared, DEVICE, &states, &pending);
    let release = &body[DEVICE]["apps"][APP]["releases"]["a1b2c3d4e5f60718293a4b5c6d7e8f90"];
    assert_eq!(
        release["services"]["sensor"],
        json!({ "image": "registry.example/greenhouse-sensor:5521", "status": "Downloading", "download_progress": 42 })
    );
    assert_eq!(
        release["services"]["ui"],
        json!({ "image": "registry.example/greenhouse-ui:5521", "status": "Downloaded" })
    );
    assert_eq!(release["update_status"], json!("downloading"), "{release}");
    // Pulled: nothing downloading any more.
    let present = std::collections::BTreeSet::from([
        "registry.example/greenhouse-ui:5521".into(),
        "registry.example/greenhouse-sensor:5521".into(),
    ]);
    let pending = {
        let target = shared.target.borrow();
        legacy_state::pending(
            target.as_ref().map(|t| &t.state),
            &states,
            &Downloads::default(),
            &present,
        )
    };
    let body = cloud::report::body(&shared, DEVICE, &states, &pending);
    let release = &body[DEVICE]["apps"][APP]["releases"]["a1b2c3d4e5f60718293a4b5c6d7e8f90"];
    assert_eq!(release["services"]["sensor"]["status"], json!("Downloaded"));
    assert_eq!(
        release["update_status"],
        json!("applying changes"),
        "{release}"
    );
}

#[test]
fn applied_commits_survive_a_restart_as_balenas_commit_store() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = Shared::new(settings(tmp.path()), Memory::default(), timing());
    state::record_applied_commits(&shared, [(1804, "a1b2".to_string())]);
    let again = Shared::new(settings(tmp.path()), Memory::default(), timing());
    assert_eq!(
        again
            .applied_commits
            .borrow()
            .get(&1804)
            .map(String::as_str),
        Some("a1b2")
    );
}

#[test]
fn poll_interval_comes_from_the_target_config_within_bounds() {
    let doc = |v: Value| json!({ DEVICE: { "config": { "SUPERVISOR_POLL_INTERVAL": v } } });
    assert_eq!(
        cloud::poll::poll_interval(None),
        cloud::poll::DEFAULT_POLL_INTERVAL
    );
    assert_eq!(
        cloud::poll::poll_interval(Some(&doc(json!("60000")))),
        Duration::from_secs(60)
    );
    assert_eq!(
        cloud::poll::poll_interval(Some(&doc(json!(120000)))),
        Duration::from_secs(120)
    );
    assert_eq!(
        cloud::poll::poll_interval(Some(&doc(json!("5")))),
        cloud::poll::MIN_POLL_INTERVAL
    );
    assert_eq!(
        cloud::poll::poll_interval(Some(&doc(json!("soon")))),
        cloud::poll::DEFAULT_POLL_INTERVAL
    );
    // As balena's servers name it.
    let prefixed = json!({ DEVICE: { "config": { "RESIN_SUPERVISOR_POLL_INTERVAL": "300000" } } });
    assert_eq!(
        cloud::poll::poll_interval(Some(&prefixed)),
        Duration::from_secs(300)
    );
    // open-balena-api sends a user's BALENA_ value first and its RESIN_ default after it
    // (recorded); the user's wins, as on balena.
    let both = json!({ DEVICE: { "config": {
        "BALENA_SUPERVISOR_POLL_INTERVAL": "60000", "RESIN_SUPERVISOR_POLL_INTERVAL": "600000" } } });
    assert_eq!(
        cloud::poll::poll_interval(Some(&both)),
        Duration::from_secs(60)
    );
}

#[test]
fn settings_prefer_the_environment_and_make_a_stable_local_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"uuid":"c0c0c0","apiEndpoint":"http://api.local","listenPort":50000,"developmentMode":true}"#,
    )
    .unwrap();
    let args = RunArgs {
        data_dir: tmp.path().join("data"),
        config: config.clone(),
        engine_socket: "/var/run/docker.sock".into(),
        listen_address: "127.0.0.1".into(),
        reconcile_s: 60,
        retry_s: 10,
        stall_limit_s: 1800,
    };
    let env = |k: &str| (k == "FLEET_UUID").then(|| "e0e0e0".to_string());
    let s = Settings::resolve(&args, env).unwrap();
    assert_eq!(s.uuid.as_deref(), Some("e0e0e0"));
    assert_eq!(s.api_endpoint.as_deref(), Some("http://api.local"));
    assert_eq!(s.listen_port, 50000);
    assert!(s.development_mode);
    assert_eq!(s.api_key.len(), 32);
    let again = Settings::resolve(&args, env).unwrap();
    assert_eq!(again.api_key, s.api_key);
    // The global key never goes into a container: services get their own keys.
    assert_eq!(s.host_context("/run/docker.sock").supervisor_api_key, "");

    let with_key = |k: &str| match k {
        "FLEET_DEVICE_API_KEY" => Some("devkey".to_string()),
        "FLEET_LISTEN_PORT" => Some("48485".to_string()),
        _ => None,
    };
    let s = Settings::resolve(&args, with_key).unwrap();
    // The local key stays the supervisor's own: the cloud credential is not it.
    assert_eq!(s.listen_port, 48485);
    assert_eq!(s.device_api_key.as_deref(), Some("devkey"));
    assert_eq!(s.api_key, again.api_key);
    let host = s.host_context("/run/docker.sock");
    assert_ne!(host.supervisor_api_key, "devkey");
    let bad_port = |k: &str| (k == "FLEET_LISTEN_PORT").then(|| "http".to_string());
    assert!(Settings::resolve(&args, bad_port).is_err());
}

/// Runs `body` with the API server alone (no loops) serving with `limits`.
async fn with_server<F, Fut>(limits: fleet_http::server::Limits, body: F)
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
{
    let tmp = tempfile::tempdir().unwrap();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let shared = Rc::new(Shared::new(
                settings(tmp.path()),
                Memory::default(),
                timing(),
            ));
            let server = tokio::task::spawn_local(server::serve(listener, shared, limits));
            body(addr).await;
            server.abort();
        })
        .await;
}

/// Sends `raw` and reads until the server closes the connection (or 5 s pass).
async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn ambiguous_content_lengths_are_refused() {
    with_server(server::limits(), |addr| async move {
        for raw in [
            "POST /v1/update HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            "POST /v1/update HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n{}   ",
        ] {
            let answer = raw_exchange(addr, raw.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 400 "), "{raw:?}: {answer:?}");
        }
        // The same request with one valid length reaches the API (401: no key).
        let answer = raw_exchange(
            addr,
            b"POST /v1/update HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 401 "), "{answer:?}");
    })
    .await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_header_is_dropped() {
    let limits = fleet_http::server::Limits {
        header_read_timeout: Duration::from_millis(300),
        ..server::limits()
    };
    with_server(limits, |addr| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection was not closed");
        // hyper closes without an answer, or with a 408.
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let limits = fleet_http::server::Limits {
        max_connections: 2,
        ..server::limits()
    };
    with_server(limits, |addr| async move {
        // Two connections sending a header that has not ended yet: both slots taken.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            held.push(s);
        }
        // A third is not served while they are open...
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        third
            .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let early =
            tokio::time::timeout(Duration::from_millis(300), third.read_to_end(&mut answer)).await;
        assert!(early.is_err(), "served beyond the limit: {answer:?}");
        // ...and is once one closes.
        drop(held.pop());
        let late =
            tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer)).await;
        assert!(late.is_ok(), "never served");
        assert!(answer.starts_with(b"HTTP/1.1 200 "), "{answer:?}");
    })
    .await;
}

/// balena v17.1's `cancel`: the apply in flight is aborted and the target applied again.
#[tokio::test]
async fn update_with_cancel_drops_the_apply_in_flight_and_applies_again() {
    let tmp = tempfile::tempdir().unwrap();
    write_target(tmp.path(), EXAMPLE);
    let memory = Memory::default();
    memory.hang.set(true);
    serve_with(
        settings(tmp.path()),
        memory,
        timing(),
        |addr, shared| async move {
            until("an apply that hangs", || shared.reconciler.applies() == 1).await;
            assert!(shared.applying.get());
            assert_eq!(
                call(addr, "POST", "/v1/update", Some(KEY), r#"{"cancel":true}"#)
                    .await
                    .0,
                204
            );
            // The hanging apply was dropped: a second one started (and hangs too).
            until("a second apply", || shared.reconciler.applies() == 2).await;
            assert!(shared.reconciler.applied.borrow().is_empty());
            // Now one that finishes: `cancel` as a string, as balena's checkTruthy reads it.
            shared.reconciler.hang.set(false);
            assert_eq!(
                call(addr, "POST", "/v1/update", Some(KEY), r#"{"cancel":"1"}"#)
                    .await
                    .0,
                204
            );
            until("an apply that finished", || {
                shared.reconciler.applied.borrow().len() == 1
            })
            .await;
            assert!(!shared.applying.get());
        },
    )
    .await;
}

#[tokio::test]
async fn update_requests_are_acknowledged_only_when_instant_updates_are_off() {
    let tmp = tempfile::tempdir().unwrap();
    let mut doc: Value = serde_json::from_str(EXAMPLE).unwrap();
    doc[DEVICE]["config"] = json!({ "SUPERVISOR_INSTANT_UPDATE_TRIGGER": "false" });
    write_target(tmp.path(), &doc.to_string());
    with_daemon(settings(tmp.path()), timing(), |addr, shared| async move {
        until("first apply", || {
            !shared.reconciler.applied.borrow().is_empty()
        })
        .await;
        // balena: `202 Accepted`, nothing fetched, unless `force` (then 204 and an apply).
        let (status, body) = call(addr, "POST", "/v1/update", Some(KEY), "").await;
        assert_eq!((status, body.as_str()), (202, "Accepted"));
        forced_update_applies(addr, &shared, r#"{"force":"1"}"#).await;
    })
    .await;
}

#[tokio::test]
async fn the_state_report_carries_what_the_target_asks_that_is_not_done() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = Shared::new(settings(tmp.path()), Memory::default(), timing());
    let mut doc: Value = serde_json::from_str(EXAMPLE).unwrap();
    doc[DEVICE]["config"] = json!({ "BALENA_HOST_CONFIG_gpu_mem": "64" });
    doc[DEVICE]["apps"]["hostos"] = json!({ "id": 9, "name": "os", "is_host": true });
    target::accept(&shared, doc.to_string().as_bytes()).unwrap();
    let body = cloud::report::body(&shared, DEVICE, &[], &[]);
    let warnings = body[DEVICE]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("HOST_CONFIG_gpu_mem")
    );
    assert!(warnings[1].as_str().unwrap().contains("host OS"));
}

#[test]
fn header_values_from_the_environment_are_checked_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let args = RunArgs {
        data_dir: tmp.path().join("data"),
        config: tmp.path().join("absent.json"),
        engine_socket: "/var/run/docker.sock".into(),
        listen_address: "127.0.0.1".into(),
        reconcile_s: 60,
        retry_s: 10,
        stall_limit_s: 1800,
    };
    let bad_key = |k: &str| (k == "FLEET_DEVICE_API_KEY").then(|| "key\r\nX-Evil: 1".to_string());
    let e = Settings::resolve(&args, bad_key).unwrap_err().to_string();
    assert!(
        e.starts_with("deviceApiKey (FLEET_DEVICE_API_KEY): has a character"),
        "{e}"
    );
    let long_uuid = |k: &str| (k == "FLEET_UUID").then(|| "a".repeat(65));
    let e = Settings::resolve(&args, long_uuid).unwrap_err().to_string();
    assert!(
        e.contains("uuid (FLEET_UUID): is 65 bytes long, at most 64"),
        "{e}"
    );
    // A tampered local key file is refused too, naming the file.
    std::fs::write(tmp.path().join("data").join("api-key"), "two words").unwrap();
    let e = Settings::resolve(&args, |_| None).unwrap_err().to_string();
    assert!(e.contains("api-key: has a character"), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn balena_device_api_routes_answer_with_balena_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    write_target(tmp.path(), EXAMPLE);
    with_daemon(settings(tmp.path()), timing(), |addr, shared| async move {
        until("target loaded", || shared.target.borrow().is_some()).await;
        let m = &shared.reconciler;
        let json_of = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        let get = |path: &'static str| call(addr, "GET", path, Some(KEY), "");
        let post =
            |path: &'static str, body: &'static str| call(addr, "POST", path, Some(KEY), body);

        // v1 single-container routes (the memory engine has one container, `db`).
        let (status, body) = get("/v1/apps/1804").await;
        assert_eq!(status, 200, "{body}");
        let app = json_of(&body);
        assert_eq!(
            (app["appId"].as_u64(), app["containerId"].as_str()),
            (Some(1804), Some("c0ffee"))
        );
        assert_eq!(app["releaseId"], 5521);
        assert!(app["env"]["BALENA_APP_ID"].is_string(), "{app}");
        assert!(
            app["env"].get("BALENA_SUPERVISOR_API_KEY").is_none(),
            "credentials hidden: {app}"
        );
        assert_eq!(get("/v1/apps/99").await, (400, "App not found".into()));
        assert_eq!(
            post("/v1/apps/1804/stop", r#"{"force":"1"}"#).await,
            (200, r#"{"containerId":"c0ffee"}"#.into())
        );
        assert_eq!(
            m.calls.borrow().last().unwrap(),
            &format!("stop-service {APP} db true")
        );
        assert_eq!(post("/v1/apps/1804/start", "").await.0, 200);
        assert_eq!(
            post("/v1/restart", r#"{"appId":"1804"}"#).await,
            (200, "OK".into())
        );
        assert_eq!(
            m.calls.borrow().last().unwrap(),
            &format!("restart {APP} false")
        );
        assert_eq!(
            post("/v1/restart", "{}").await,
            (400, "Missing app id".into())
        );

        // Purge: v1 and v2 shapes; a held lock is 423 unless forced.
        assert_eq!(
            post("/v1/purge", r#"{"appId":1804}"#).await,
            (200, r#"{"Data":"OK","Error":""}"#.into())
        );
        // The purge wakes the loop, which recreates what was removed.
        assert!(
            m.calls.borrow().contains(&format!("purge {APP} false")),
            "{:?}",
            m.calls.borrow()
        );
        assert_eq!(
            post("/v1/purge", "{}").await,
            (400, "Invalid or missing appId".into())
        );
        m.locked.set(true);
        assert_eq!(post("/v2/applications/1804/purge", "").await.0, 423);
        assert_eq!(
            post("/v2/applications/1804/purge", r#"{"force":"true"}"#).await,
            (200, "OK".into())
        );
        m.locked.set(false);
        assert_eq!(post("/v2/applications/0/purge", "").await.0, 400);

        // App state by numeric id.
        let (status, body) = get("/v2/applications/1804/state").await;
        assert_eq!(status, 200, "{body}");
        let state = json_of(&body);
        let services = state["local"]["1804"]["services"].as_object().unwrap();
        assert_eq!(services.len(), 1, "{state}");
        let (_, db) = services.iter().next().unwrap();
        assert_eq!(
            (db["status"].as_str(), db["releaseId"].as_u64()),
            (Some("Running"), Some(5521))
        );
        assert_eq!(get("/v2/applications/77/state").await.0, 409);
        assert_eq!(get("/v2/applications/abc/state").await.0, 400);

        // Device routes.
        let (status, body) = get("/v1/device").await;
        assert_eq!(status, 200, "{body}");
        let dev = json_of(&body);
        assert_eq!(dev["status"], "Idle", "{dev}");
        assert!(
            dev["api_port"].is_u64() && dev["update_pending"].is_boolean(),
            "{dev}"
        );
        assert_eq!(
            json_of(&get("/v2/device/name").await.1)["status"],
            "success"
        );
        // /v2/device/vpn asks the host's systemd: tests/supervisor runs it against one.
        let (status, body) = get("/v2/device/tags").await;
        assert_eq!(
            (status, json_of(&body)["status"].as_str()),
            (500, Some("failed"))
        );
        assert_eq!(post("/v1/blink", "").await, (200, "OK".into()));
        let host = json_of(&get("/v1/device/host-config").await.1);
        assert!(host["network"]["hostname"].is_string(), "{host}");
        assert!(
            host["network"].get("proxy").is_none(),
            "no redsocks.conf: {host}"
        );

        // Volume cleanup keeps what the target declares.
        assert_eq!(
            get("/v2/cleanup-volumes").await,
            (200, r#"{"status":"success"}"#.into())
        );
        assert!(
            m.calls
                .borrow()
                .iter()
                .any(|c| c.starts_with("cleanup keeping ")),
            "{:?}",
            m.calls.borrow()
        );
        // Unknown imageId: no such service.
        assert_eq!(
            post(
                "/v2/applications/1804/restart-service",
                r#"{"imageId":424242}"#
            )
            .await
            .0,
            404
        );
        // Every new route wants the key.
        assert_eq!(call(addr, "GET", "/v1/device", None, "").await.0, 401);
    })
    .await;
}

#[tokio::test]
async fn v1_device_reports_a_pull_and_a_downloaded_update_as_balena() {
    let tmp = tempfile::tempdir().unwrap();
    write_target(tmp.path(), EXAMPLE);
    with_daemon(settings(tmp.path()), timing(), |addr, shared| async move {
        until("target loaded", || shared.target.borrow().is_some()).await;
        let m = &shared.reconciler;
        let device = || async {
            let (status, body) = call(addr, "GET", "/v1/device", Some(KEY), "").await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        };
        // A first release pulling: no container, the image being pulled is the service.
        m.no_containers.set(true);
        m.downloads
            .borrow_mut()
            .pulling
            .insert("registry.example/greenhouse-db:5521".into(), 42);
        let dev = device().await;
        assert_eq!(
            (
                &dev["status"],
                &dev["download_progress"],
                &dev["update_downloaded"]
            ),
            (&json!("Downloading"), &json!(42), &json!(false)),
            "{dev}"
        );
        // balena's app list shows the pull too (`downloadProgress`), the others (image
        // neither pulling nor present) not at all.
        let (status, body) = call(addr, "GET", "/v2/applications/state", Some(KEY), "").await;
        assert_eq!(status, 200, "{body}");
        let apps: Value = serde_json::from_str(&body).unwrap();
        let services = &apps["greenhouse"]["services"];
        assert_eq!(services["db"]["status"], json!("Downloading"), "{body}");
        assert_eq!(services["db"]["downloadProgress"], json!(42), "{body}");
        assert_eq!(services["db"]["releaseId"], json!(5521), "{body}");
        assert!(services.get("ui").is_none(), "{body}");
        // Pulled, the containers not created yet (e.g. a lock holds the update).
        *m.downloads.borrow_mut() = Downloads {
            pulling: Default::default(),
            downloaded: true,
        };
        m.no_containers.set(false);
        let dev = device().await;
        assert_eq!(
            (
                &dev["status"],
                &dev["download_progress"],
                &dev["update_downloaded"]
            ),
            (&json!("Idle"), &Value::Null, &json!(true)),
            "{dev}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_regenerated_api_key_replaces_the_old_one_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    with_daemon(settings(tmp.path()), timing(), |addr, shared| async move {
        assert_eq!(
            call(addr, "POST", "/v1/regenerate-api-key", None, "")
                .await
                .0,
            401
        );
        let (status, new_key) = call(addr, "POST", "/v1/regenerate-api-key", Some(KEY), "").await;
        assert_eq!(status, 200);
        assert_eq!(new_key.len(), 32, "{new_key}");
        assert!(new_key.bytes().all(|b| b.is_ascii_hexdigit()), "{new_key}");
        // Kept where the key is kept, so a restart keeps it too.
        let kept = std::fs::read_to_string(tmp.path().join(api_keys::API_KEY_FILE)).unwrap();
        assert_eq!(kept, new_key);
        let again = Settings::resolve(
            &RunArgs {
                data_dir: tmp.path().into(),
                config: tmp.path().join("none.json"),
                engine_socket: "/nonexistent".into(),
                listen_address: "127.0.0.1".into(),
                reconcile_s: 60,
                retry_s: 10,
                stall_limit_s: 60,
            },
            |_| None,
        )
        .unwrap();
        assert_eq!(again.api_key, new_key);
        assert_eq!(
            call(addr, "GET", "/v2/state/status", Some(KEY), "").await.0,
            401
        );
        let old_query = format!("/v2/state/status?apikey={KEY}");
        assert_eq!(call(addr, "GET", &old_query, None, "").await.0, 401);
        assert_eq!(
            call(addr, "GET", "/v2/state/status", Some(&new_key), "")
                .await
                .0,
            200
        );
        // The new global key goes to the server as `api_secret` in the next report.
        let body = cloud::report::body(&shared, DEVICE, &[], &[]);
        assert_eq!(body[DEVICE]["api_secret"], json!(new_key));
    })
    .await;
}

/// [`EXAMPLE`] with a second app (id 1900) whose `probe` service has
/// `features.supervisor-api`, as is `ui` of the first app (id 1804).
fn two_apps() -> String {
    let mut doc: Value = serde_json::from_str(EXAMPLE).unwrap();
    let composition = "services:\n  probe:\n    image: registry.example/probe:1\n    labels:\n      io.balena.features.supervisor-api: '1'\n";
    doc[DEVICE]["apps"]["9e0e0e0e0e0e4e0e8e0e0e0e0e0e0e0e"] = json!({
        "id": 1900,
        "name": "watcher",
        "class": "fleet",
        "releases": { "b0b0b0b0b0b04b0b8b0b0b0b0b0b0b0b": {
            "id": 7000,
            "composition": composition,
        }},
    });
    doc.to_string()
}

#[tokio::test]
async fn each_service_key_reaches_its_own_app_only() {
    let tmp = tempfile::tempdir().unwrap();
    write_target(tmp.path(), &two_apps());
    with_daemon(settings(tmp.path()), timing(), |addr, shared| async move {
        until("first apply", || {
            !shared.reconciler.applied.borrow().is_empty()
        })
        .await;
        let keys = shared.api_keys.borrow().services().clone();
        let (ui, probe) = (keys[&1804]["ui"].clone(), keys[&1900]["probe"].clone());
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(
            keys[&1804].len(),
            1,
            "only services with the feature: {keys:?}"
        );
        // The engine side got them before the apply.
        let handed = format!("api-keys {}", serde_json::to_string(&keys).unwrap());
        assert!(
            shared.reconciler.calls.borrow().contains(&handed),
            "{:?}",
            shared.reconciler.calls.borrow()
        );
        // Kept: a restart reads the same keys.
        let kept = api_keys::read_service_keys(tmp.path()).unwrap();
        assert_eq!(kept, keys);

        let unauthorized = (
            401,
            json!({"status": "failed", "message": "Unauthorized"}).to_string(),
        );
        for (key, own, other) in [(&ui, 1804, 1900), (&probe, 1900, 1804)] {
            let restart = |app: u64| format!("/v2/applications/{app}/restart");
            assert_eq!(
                call(addr, "POST", &restart(own), Some(key), "{}").await.0,
                200
            );
            assert_eq!(
                call(addr, "POST", &restart(other), Some(key), "{}").await,
                unauthorized
            );
            let purge = format!("/v2/applications/{other}/purge");
            assert_eq!(
                call(addr, "POST", &purge, Some(key), "{}").await,
                unauthorized
            );
            let body = format!("{{\"appId\":{other}}}");
            assert_eq!(
                call(addr, "POST", "/v1/restart", Some(key), &body).await,
                unauthorized
            );
            assert_eq!(
                call(addr, "POST", "/v1/purge", Some(key), &body).await,
                unauthorized
            );
            let v1_app = format!("/v1/apps/{other}");
            assert_eq!(
                call(addr, "GET", &v1_app, Some(key), "").await,
                (
                    401,
                    json!({"status": "failed", "message": "Application is not available"})
                        .to_string()
                )
            );
            let stop = format!("/v1/apps/{other}/stop");
            assert_eq!(
                call(addr, "POST", &stop, Some(key), "{}").await,
                (401, "Unauthorized".into())
            );
            let state = format!("/v2/applications/{other}/state");
            let (status, _) = call(addr, "GET", &state, Some(key), "").await;
            assert_eq!(status, 409);
            // Device-wide routes take any key of ours.
            assert_eq!(
                call(addr, "GET", "/v2/device/name", Some(key), "").await.0,
                200
            );
        }
        // The app list shows the key's own app only; the global key sees both.
        let names = |body: &str| -> Vec<String> {
            let v: Value = serde_json::from_str(body).unwrap();
            v.as_object().unwrap().keys().cloned().collect()
        };
        let (_, body) = call(addr, "GET", "/v2/applications/state", Some(&probe), "").await;
        assert_eq!(names(&body), ["watcher"]);
        let (_, body) = call(addr, "GET", "/v2/applications/state", Some(&ui), "").await;
        assert_eq!(names(&body), ["greenhouse"]);
        let (_, body) = call(addr, "GET", "/v2/applications/state", Some(KEY), "").await;
        assert_eq!(names(&body), ["greenhouse", "watcher"]);
        // The containers (all of app 1804 here) are hidden from the other app's key.
        let (_, body) = call(addr, "GET", "/v2/containerId", Some(&probe), "").await;
        assert_eq!(
            body,
            json!({"status": "success", "services": {}}).to_string()
        );
        let (_, body) = call(addr, "GET", "/v2/containerId", Some(&ui), "").await;
        assert!(body.contains("c0ffee"), "{body}");
        // The cleanup with a scoped key touches its own app's volumes only.
        assert_eq!(
            call(addr, "GET", "/v2/cleanup-volumes", Some(&probe), "")
                .await
                .0,
            200
        );
        assert!(
            shared
                .reconciler
                .calls
                .borrow()
                .iter()
                .any(|c| c.starts_with("cleanup keeping")
                    && c.ends_with("of 9e0e0e0e0e0e4e0e8e0e0e0e0e0e0e0e")),
            "{:?}",
            shared.reconciler.calls.borrow()
        );
        for app in [1804, 1900] {
            let path = format!("/v2/applications/{app}/restart");
            assert_eq!(call(addr, "POST", &path, Some(KEY), "{}").await.0, 200);
        }

        // Regenerating with the service's key replaces that key only.
        let (status, new_ui) = call(addr, "POST", "/v1/regenerate-api-key", Some(&ui), "").await;
        assert_eq!(status, 200);
        assert_eq!(new_ui.len(), 32);
        assert_ne!(new_ui, ui);
        assert_eq!(
            call(addr, "GET", "/v2/state/status", Some(&ui), "").await.0,
            401
        );
        assert_eq!(
            call(
                addr,
                "POST",
                "/v2/applications/1804/restart",
                Some(&new_ui),
                "{}"
            )
            .await
            .0,
            200
        );
        assert_eq!(
            call(
                addr,
                "POST",
                "/v2/applications/1900/restart",
                Some(&new_ui),
                "{}"
            )
            .await,
            unauthorized
        );
        assert_eq!(
            call(addr, "GET", "/v2/state/status", Some(&probe), "")
                .await
                .0,
            200
        );
        assert_eq!(
            call(addr, "GET", "/v2/state/status", Some(KEY), "").await.0,
            200
        );
        assert_eq!(
            api_keys::read_service_keys(tmp.path()).unwrap()[&1804]["ui"],
            new_ui
        );
        // The global key is not reported as changed, and the engine side has the new key.
        let body = cloud::report::body(&shared, DEVICE, &[], &[]);
        assert_eq!(body[DEVICE]["api_secret"], json!(KEY));
        let calls = shared.reconciler.calls.borrow();
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("api-keys") && c.contains(&new_ui)),
            "{calls:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn host_config_patch_writes_hostname_and_proxy_and_reads_them_back() {
    let tmp = tempfile::tempdir().unwrap();
    let boot = tmp.path().join("boot");
    std::fs::create_dir(&boot).unwrap();
    std::fs::write(
        boot.join("config.json"),
        br#"{"deviceType":"generic-amd64"}"#,
    )
    .unwrap();
    let mut s = settings(tmp.path());
    s.uuid = Some(DEVICE.into());
    s.registration.config_path = Some(boot.join("config.json"));
    with_daemon(s, timing(), |addr, shared| async move {
        let patch = |body: &'static str| call(addr, "PATCH", "/v1/device/host-config", Some(KEY), body);
        let get = || call(addr, "GET", "/v1/device/host-config", Some(KEY), "");
        assert_eq!(
            patch(r#"{"network":{"hostname":"greenhouse","proxy":{"type":"http-connect","ip":"10.1.1.1","port":3128,"noProxy":["10.0.0.0/8"]}}}"#).await,
            (200, "OK".into())
        );
        let config: Value =
            serde_json::from_slice(&std::fs::read(boot.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["hostname"], "greenhouse");
        let conf = std::fs::read_to_string(boot.join("system-proxy/redsocks.conf")).unwrap();
        assert!(conf.contains("\ttype = http-connect;\n"), "{conf}");
        let (status, body) = get().await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"network":{"hostname":"greenhouse","proxy":{
                "type":"http-connect","ip":"10.1.1.1","port":3128,"noProxy":["10.0.0.0/8"]}}})
        );
        // balena's 400: a body it cannot parse; the files stay.
        let (status, body) = patch(r#"{"network":{"hostname":7}}"#).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("hostname"), "{body}");
        // An invalid hostname is named with config.json; the old one stays.
        let (status, body) = patch(r#"{"network":{"hostname":"bad name!"}}"#).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("config.json") && body.contains("hostname"), "{body}");
        // 423 while an app holds its lock, unless forced.
        shared.reconciler.locked.set(true);
        assert_eq!(patch(r#"{"network":{"hostname":""}}"#).await.0, 423);
        assert_eq!(
            patch(r#"{"network":{"hostname":"","proxy":{}},"force":true}"#).await,
            (200, "OK".into())
        );
        let host: Value = serde_json::from_str(&get().await.1).unwrap();
        assert_eq!(host, json!({"network":{"hostname":&DEVICE[..7]}}));
    })
    .await;
}

/// `follow` is answered at once and streamed: the head arrives while journalctl still runs
/// (it follows until the client goes away), unlike a whole answer that ends the body.
#[tokio::test]
async fn journal_logs_with_follow_stream_until_the_client_leaves() {
    with_server(server::limits(), |addr| async move {
        let body = r#"{"follow":true,"count":1}"#;
        let raw = format!(
            "POST /v2/journal-logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
                .await
                .expect("the head arrives while journalctl follows")
                .unwrap();
            assert!(
                n > 0,
                "closed before the head: {}",
                String::from_utf8_lossy(&head)
            );
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/plain"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        // Still following: the body has not ended (a whole answer would close it).
        let mut rest = Vec::new();
        let more = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut rest)).await;
        assert!(
            more.is_err(),
            "the stream ended: {}",
            String::from_utf8_lossy(&rest)
        );
    })
    .await;
}

/// balena's preload file is the first target when none was kept, then renamed so it is
/// never read again; a kept target wins over it.
#[tokio::test]
async fn apps_json_is_the_first_target_of_a_preloaded_device() {
    let example: Value = serde_json::from_str(EXAMPLE).unwrap();
    let device = example
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    let apps_json = json!({"config": device["config"], "apps": device["apps"], "pinDevice": false});
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("apps.json"), apps_json.to_string()).unwrap();
    let mut s = settings(tmp.path());
    s.uuid = Some(DEVICE.into());
    let dir = tmp.path().to_path_buf();
    with_daemon(s, timing(), |_addr, shared| async move {
        until("preloaded target applied", || {
            !shared.reconciler.applied.borrow().is_empty()
        })
        .await;
        let applied = shared.reconciler.applied.borrow()[0].clone();
        assert_eq!(applied.device_uuid, DEVICE);
        assert!(applied.apps.contains_key(APP), "{:?}", applied.apps.keys());
        assert!(dir.join(settings::TARGET_FILE).exists());
        assert!(!dir.join("apps.json").exists());
        assert!(dir.join("apps.json.preloaded").exists());
    })
    .await;

    // A kept target wins; a bad apps.json is left where it is.
    let tmp = tempfile::tempdir().unwrap();
    write_target(tmp.path(), EXAMPLE);
    std::fs::write(tmp.path().join("apps.json"), "[]").unwrap();
    let dir = tmp.path().to_path_buf();
    with_daemon(settings(tmp.path()), timing(), |_addr, shared| async move {
        until("kept target loaded", || shared.target.borrow().is_some()).await;
        assert!(dir.join("apps.json").exists());
    })
    .await;
}

/// What [`recording_server`] saw: `METHOD /path`, the Authorization header, the body.
type Recorded = Rc<RefCell<Vec<(String, String, Vec<u8>)>>>;

/// A server that records every request with its body and answers 200.
async fn recording_server(seen: Recorded) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::task::spawn_local(fleet_http::server::serve(
        listener,
        Default::default(),
        move |_| {
            let seen = seen.clone();
            async move {
                move |req: fleet_http::Request<fleet_http::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let (head, body) = req.into_parts();
                        let auth = head
                            .headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string();
                        let body =
                            fleet_http::server::read_body(body, 1 << 20, Duration::from_secs(5))
                                .await
                                .map(|b| b.to_vec())
                                .unwrap_or_default();
                        seen.borrow_mut().push((
                            format!("{} {}", head.method, head.uri.path()),
                            auth,
                            body,
                        ));
                        fleet_http::server::response(200, "application/json", b"{}".to_vec())
                    }
                }
            }
        },
    ));
    addr
}

/// `PATCH /v2/device/tags`: 202 at once, then the tags reach the server's
/// `PATCH /device/v3/tags` as `{uuid: tags}` with the device key, and are recorded as reported.
#[tokio::test]
async fn device_tags_are_queued_then_sent_to_the_server() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let seen = Rc::new(RefCell::new(Vec::new()));
            let server = recording_server(seen.clone()).await;
            let tmp = tempfile::tempdir().unwrap();
            let mut s = settings(tmp.path());
            s.api_endpoint = Some(format!("http://{server}"));
            s.uuid = Some(DEVICE.into());
            s.device_api_key = Some("devkey".into());
            let dir = tmp.path().to_path_buf();
            serve_with(s, Memory::default(), timing(), |addr, _| async move {
                let patch =
                    |body: &'static str| call(addr, "PATCH", "/v2/device/tags", Some(KEY), body);
                let (status, body) = patch(r#"{"room":"lab","rack":"3"}"#).await;
                assert_eq!((status, body.as_str()), (202, r#"{"status":"success"}"#));
                let (status, body) = patch(r#"{"room":5}"#).await;
                assert_eq!(status, 400, "{body}");
                assert!(body.contains("Invalid tags body"), "{body}");
                let sent = || {
                    seen.borrow()
                        .iter()
                        .find(|(what, _, _)| what == "PATCH /device/v3/tags")
                        .cloned()
                };
                until("tags sent", || sent().is_some()).await;
                let (_, auth, body) = sent().unwrap();
                assert_eq!(auth, "Bearer devkey");
                assert_eq!(
                    serde_json::from_slice::<Value>(&body).unwrap(),
                    json!({ DEVICE: {"rack": "3", "room": "lab"} })
                );
                let kept = || {
                    std::fs::read(dir.join("device-tags.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                };
                until("tags recorded as reported", || {
                    kept()
                        .is_some_and(|k| k["reported"]["room"] == "lab" && k["target"] == json!({}))
                })
                .await;
            })
            .await;
        })
        .await;
}
