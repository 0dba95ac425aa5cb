//! The local-mode API over real TCP, with a device whose engine side is in memory: no key
//! in local mode, balena's v2 local target, pushed images pinned by ID, the log stream.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::state::Shared;
use super::tests::{call, serve_with, settings, timing, until};
use super::*;
use fleet_release::plan::CurrentState;

/// A development device after `balena push`: one running service `main` of a pushed image.
#[derive(Default)]
struct Pushed {
    image_id: RefCell<String>,
    applied: RefCell<Vec<TargetState>>,
}

impl Reconciler for Pushed {
    async fn current_state(&self) -> Result<CurrentState, ReconcileError> {
        Ok(CurrentState::default())
    }

    async fn service_states(&self) -> Result<Vec<ServiceState>, ReconcileError> {
        Ok(vec![ServiceState {
            app: "1".into(),
            service: "main".into(),
            release: "10ca12e1ea5e".into(),
            image: "local_image_main:latest".into(),
            container_id: "beef01".into(),
            status: "running".into(),
            restart_count: 0,
            ids: None,
        }])
    }

    async fn apply(&self, target: &TargetState, _: bool) -> Result<ApplySummary, ReconcileError> {
        self.applied.borrow_mut().push(target.clone());
        Ok(ApplySummary::default())
    }

    async fn restart_service(&self, _: &str, _: &str, _: bool) -> Result<(), ReconcileError> {
        Ok(())
    }

    async fn stop_service(&self, _: &str, _: &str, _: bool) -> Result<(), ReconcileError> {
        Ok(())
    }

    async fn start_service(&self, _: &str, _: &str, _: bool) -> Result<(), ReconcileError> {
        Ok(())
    }

    async fn restart_app(&self, _: &str, _: bool) -> Result<(), ReconcileError> {
        Ok(())
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, ReconcileError> {
        Ok((image == "local_image_main:latest").then(|| self.image_id.borrow().clone()))
    }

    async fn follow_logs(
        &self,
        container_id: &str,
        _since: u64,
        out: tokio::sync::mpsc::Sender<LogLine>,
    ) -> Result<(), ReconcileError> {
        for message in ["hello from main", "second line"] {
            let line = LogLine {
                container_id: container_id.into(),
                message: message.into(),
                stderr: false,
            };
            if out.send(line).await.is_err() {
                break;
            }
        }
        // The container keeps running: the stream stays open.
        std::future::pending::<()>().await;
        Ok(())
    }
}

async fn with_device<F, Fut>(settings: Settings, body: F)
where
    F: FnOnce(SocketAddr, Rc<Shared<Pushed>>) -> Fut,
    Fut: Future<Output = ()>,
{
    serve_with(settings, Pushed::default(), timing(), body).await;
}

fn local_mode(dir: &std::path::Path) -> Settings {
    let mut s = settings(dir);
    s.development_mode = true;
    s.device_type = Some("qemux86-64".into());
    s
}

/// What balena-cli posts after building `main` (its `generateTargetState`).
fn pushed_body() -> String {
    json!({"local": {"config": {}, "apps": {"1": {
        "name": "localapp", "commit": "10ca12e1ea5e", "releaseId": "1",
        "services": {"1": {"environment": {}, "labels": {}, "restart": "always",
            "imageId": 1, "serviceName": "main", "serviceId": 1,
            "image": "local_image_main:latest", "running": true}},
        "volumes": {}, "networks": {}}}}})
    .to_string()
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn local_mode_needs_no_key_and_ignores_an_unrelated_one() {
    let tmp = tempfile::tempdir().unwrap();
    with_device(local_mode(tmp.path()), |addr, _| async move {
        for key in [None, Some("a-balena-cloud-token")] {
            let (status, body) = call(addr, "GET", "/v2/version", key, "").await;
            assert_eq!(status, 200, "{body}");
            let v = json_of(&body);
            assert_eq!(v["status"], "success");
            assert_eq!(v["version"], versions::BALENA_SUPERVISOR_API);
            assert_eq!(v["fleetos"], env!("CARGO_PKG_VERSION"));
            let (status, _) = call(addr, "GET", "/v2/state/status", key, "").await;
            assert_eq!(status, 200);
        }
        let (status, body) = call(addr, "GET", "/v2/local/device-info", None, "").await;
        assert_eq!(status, 200);
        let info = &json_of(&body)["info"];
        assert_eq!(info["deviceType"], "qemux86-64");
        assert_eq!(info["arch"], local::balena_arch(std::env::consts::ARCH));
    })
    .await;

    // A managed device (or a production one) still wants the key.
    let mut managed = local_mode(tmp.path());
    managed.api_endpoint = Some("https://api.example.com".into());
    with_device(managed, |addr, _| async move {
        assert_eq!(call(addr, "GET", "/v2/version", None, "").await.0, 401);
        assert_eq!(
            call(addr, "GET", "/v2/version", Some("sekrit"), "").await.0,
            200
        );
        assert_eq!(call(addr, "GET", "/v2/local/logs", None, "").await.0, 401);
    })
    .await;
}

#[tokio::test]
async fn container_id_by_service_name() {
    let tmp = tempfile::tempdir().unwrap();
    with_device(local_mode(tmp.path()), |addr, _| async move {
        let (status, body) = call(addr, "GET", "/v2/containerId?serviceName=main", None, "").await;
        assert_eq!(status, 200);
        assert_eq!(json_of(&body)["containerId"], "beef01");
        let (status, body) = call(addr, "GET", "/v2/containerId?service=main", None, "").await;
        assert_eq!(
            (status, &json_of(&body)["containerId"]),
            (200, &json!("beef01"))
        );
        let (status, body) = call(addr, "GET", "/v2/containerId", None, "").await;
        assert_eq!(
            (status, &json_of(&body)["services"]),
            (200, &json!({"main": "beef01"}))
        );
        let (status, body) = call(addr, "GET", "/v2/containerId?serviceName=nope", None, "").await;
        assert_eq!(status, 503);
        assert_eq!(json_of(&body)["status"], "failed");
    })
    .await;
}

#[tokio::test]
async fn a_push_sets_the_target_and_a_rebuild_under_the_same_name_changes_it() {
    let tmp = tempfile::tempdir().unwrap();
    with_device(local_mode(tmp.path()), |addr, shared| async move {
        // What the CLI reads first and posts back with its apps replaced.
        let (status, body) = call(addr, "GET", "/v2/local/target-state", None, "").await;
        assert_eq!(status, 200);
        assert!(json_of(&body)["state"]["local"].is_object(), "{body}");

        shared.reconciler.image_id.replace("sha256:aaa".into());
        let (status, body) =
            call(addr, "POST", "/v2/local/target-state", None, &pushed_body()).await;
        assert_eq!(status, 200, "{body}");
        until("the first apply", || {
            !shared.reconciler.applied.borrow().is_empty()
        })
        .await;
        let label = |shared: &Shared<Pushed>| {
            let t = shared.target.borrow();
            let doc = &t.as_ref().unwrap().document;
            doc["local"]["apps"]["1"]["releases"]["10ca12e1ea5e"]["services"]["main"]["labels"]
                [local::LABEL_LOCAL_IMAGE_ID]
                .clone()
        };
        assert_eq!(label(&shared), json!("sha256:aaa"));
        let (_, body) = call(addr, "GET", "/v2/local/target-state", None, "").await;
        let app = &json_of(&body)["state"]["local"]["apps"]["1"];
        assert_eq!(
            app["services"]["1"]["image"], "local_image_main:latest",
            "{body}"
        );

        // Same body, new build: a new target.
        shared.reconciler.image_id.replace("sha256:bbb".into());
        let (status, _) = call(addr, "POST", "/v2/local/target-state", None, &pushed_body()).await;
        assert_eq!(status, 200);
        assert_eq!(label(&shared), json!("sha256:bbb"));

        let (status, body) = call(
            addr,
            "POST",
            "/v2/local/target-state",
            None,
            r#"{"local": 5}"#,
        )
        .await;
        assert_eq!(status, 400);
        assert!(
            json_of(&body)["message"]
                .as_str()
                .unwrap()
                .contains("local"),
            "{body}"
        );
        assert_eq!(label(&shared), json!("sha256:bbb"));
    })
    .await;
}

#[tokio::test]
async fn log_stream_starts_at_once_then_carries_service_output() {
    let tmp = tempfile::tempdir().unwrap();
    with_device(local_mode(tmp.path()), |addr, _| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"GET /v2/local/logs HTTP/1.1\r\nHost: device\r\nAuthorization: Bearer x\r\n\r\n",
            )
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let read_until = async {
            while !String::from_utf8_lossy(&seen).contains("second line") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "stream ended: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read_until)
            .await
            .expect("the service's lines within 20 s");
        let text = String::from_utf8_lossy(&seen).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(json_of)
            .collect();
        assert_eq!(lines[0]["message"], "Streaming logs");
        assert_eq!(lines[0]["isSystem"], true);
        assert_eq!(lines[1]["message"], "hello from main");
        assert_eq!(lines[1]["serviceName"], "main");
        assert_eq!(lines[1]["isSystem"], false);
        assert!(lines[1]["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    })
    .await;
}
