//! The host loop: one `step` looks at the engine and the container, acts, and says how long
//! to wait before the next look.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fleet_engine::{ContainerInspect, Engine};
use fleet_fs::Root;
use fleet_log::error::{Chain, one_line};
use sd_notify::NotifyState;

use super::spec::{self, CONTAINER_NAME, Desired, LABEL_CONFIG_HASH, PRELOAD_TARBALL};

#[derive(Debug, Clone)]
pub struct Timing {
    pub check: Duration,
    pub unhealthy_limit: u32,
    pub backoff: Duration,
    pub backoff_cap: Duration,
    pub stable: Duration,
    pub stop_timeout_s: u32,
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Engine(#[from] fleet_engine::Error),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(
        "supervisor image {image} is not in the engine and no preloaded image exists at {tarball}"
    )]
    NoImage { image: String, tarball: PathBuf },
    #[error("preloaded {tarball} did not provide {image}")]
    PreloadMismatch { image: String, tarball: PathBuf },
}

/// One run of the container as the engine reports it (its `StartedAt`), and when fleetd first
/// saw it running. Health and stability are judged per run: a container the engine restarts
/// in a crash loop is a new run each time, never one long-lived unhealthy one.
struct Run {
    engine_started_at: String,
    seen: Instant,
}

pub struct Host {
    root: Root,
    engine: Engine,
    timing: Timing,
    engine_failures: u32,
    negotiated: bool,
    problem_failures: u32,
    /// Crashes in a row (reset once one run lasted `stable`).
    crashes: u32,
    next_start: Option<Instant>,
    /// This process has started the container (not yet at boot: the engine started it).
    started_once: bool,
    /// The run being watched; `None` after it ended in a crash.
    run: Option<Run>,
    /// Failed health checks in a row, within the current run.
    unhealthy: u32,
    ready: bool,
    status: String,
}

impl Host {
    pub fn new(root: Root, engine_socket: PathBuf, timing: Timing) -> Self {
        Host {
            root,
            engine: Engine::new(engine_socket),
            timing,
            engine_failures: 0,
            negotiated: false,
            problem_failures: 0,
            crashes: 0,
            next_start: None,
            started_once: false,
            run: None,
            unhealthy: 0,
            ready: false,
            status: String::new(),
        }
    }

    fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32
            .checked_shl(n.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.timing
            .backoff
            .saturating_mul(factor)
            .min(self.timing.backoff_cap)
    }

    fn set_status(&mut self, status: String) {
        if status != self.status {
            log::info!(status = status.as_str(); "{status}");
            let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
            self.status = status;
        }
    }

    pub fn watchdog(&self) {
        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
    }

    /// One look at the world; returns the delay until the next one.
    pub async fn step(&mut self) -> Duration {
        let ping = tokio::time::timeout(Duration::from_secs(10), self.engine.ping()).await;
        if !matches!(ping, Ok(Ok(()))) {
            self.engine_failures += 1;
            self.negotiated = false;
            let delay = self
                .backoff(self.engine_failures)
                .min(Duration::from_secs(30));
            let reason = match ping {
                Ok(Err(e)) => one_line(&e),
                _ => "no answer within 10 s".into(),
            };
            self.set_status(format!(
                "waiting for the container engine ({reason}); retry in {} ms",
                delay.as_millis()
            ));
            return delay;
        }
        self.engine_failures = 0;
        if !self.negotiated {
            match self.engine.negotiate().await {
                Ok(v) => {
                    log::info!(engine = v.version.as_str(), api = self.engine.api_version(); "container engine is up");
                    self.negotiated = true;
                }
                Err(e) => log::warn!(
                    "engine version negotiation failed, using API {}: {}",
                    self.engine.api_version(),
                    Chain(&e)
                ),
            }
        }
        match self.reconcile().await {
            Ok(d) => {
                self.problem_failures = 0;
                d
            }
            Err(e) => {
                self.problem_failures += 1;
                let delay = self
                    .backoff(self.problem_failures)
                    .max(self.timing.check)
                    .min(self.timing.backoff_cap);
                self.set_status(format!("{}; retry in {} ms", Chain(&e), delay.as_millis()));
                delay
            }
        }
    }

    async fn reconcile(&mut self) -> Result<Duration, StepError> {
        let desired = spec::desired(&self.root, self.engine.socket())?;
        let image_id = self.ensure_image(&desired).await?;
        let container = self.engine.inspect_container(CONTAINER_NAME).await?;
        let Some(c) = container else {
            self.set_status(format!("creating {CONTAINER_NAME} from {}", desired.image));
            self.create_and_start(&desired).await?;
            return Ok(self.timing.check);
        };
        if let Some(why) = outdated(&c, &desired, &image_id) {
            self.set_status(format!("recreating {CONTAINER_NAME}: {why}"));
            self.engine
                .stop_container(CONTAINER_NAME, self.timing.stop_timeout_s)
                .await?;
            self.engine.remove_container(CONTAINER_NAME, true).await?;
            self.create_and_start(&desired).await?;
            return Ok(self.timing.check);
        }
        if !c.state.running {
            return self.restart_exited(&c).await;
        }
        Ok(self.check_health(&c, desired.listen_port).await)
    }

    /// Returns the image ID, loading the preloaded tarball when the image is missing.
    async fn ensure_image(&mut self, desired: &Desired) -> Result<String, StepError> {
        if let Some(i) = self.engine.inspect_image(&desired.image).await? {
            return Ok(i.id);
        }
        let tarball = self.root.path(PRELOAD_TARBALL);
        if !tarball.is_file() {
            return Err(StepError::NoImage {
                image: desired.image.clone(),
                tarball,
            });
        }
        self.set_status(format!(
            "loading {} from {}",
            desired.image,
            tarball.display()
        ));
        let lines = self.engine.load_image(&tarball).await?;
        log::info!(tarball = tarball.display().to_string().as_str(); "loaded: {}", lines.join("; "));
        match self.engine.inspect_image(&desired.image).await? {
            Some(i) => Ok(i.id),
            None => Err(StepError::PreloadMismatch {
                image: desired.image.clone(),
                tarball,
            }),
        }
    }

    async fn create_and_start(&mut self, desired: &Desired) -> Result<(), StepError> {
        let data = self.root.path(spec::DATA_DIR);
        if let Err(e) = fleet_fs::ensure_dir(&data) {
            log::warn!("{}", Chain(&e));
        }
        match spec::hand_over_preload(&self.root) {
            Ok(true) => log::info!("{} handed to the supervisor", spec::BALENA_APPS_JSON),
            Ok(false) => {}
            Err(e) => log::warn!(
                "{}: cannot hand it to the supervisor: {e}",
                spec::BALENA_APPS_JSON
            ),
        }
        self.engine
            .create_container(CONTAINER_NAME, &desired.create.0)
            .await?;
        self.start().await
    }

    async fn start(&mut self) -> Result<(), StepError> {
        self.engine.start_container(CONTAINER_NAME).await?;
        log::info!(container = CONTAINER_NAME, crashes = self.crashes; "started");
        self.started_once = true;
        // A new run: known (and judged) once a check sees it running.
        self.run = None;
        self.next_start = None;
        self.unhealthy = 0;
        Ok(())
    }

    /// The current run has lasted `stable`: what came before it is no longer a crash loop.
    fn ran_stable(&self) -> bool {
        self.run
            .as_ref()
            .is_some_and(|r| r.seen.elapsed() >= self.timing.stable)
    }

    /// Starts watching a new run when the engine's `StartedAt` changed (a restart by the
    /// engine's restart policy included): its health count starts from zero.
    fn observe_run(&mut self, c: &ContainerInspect) {
        let same = self
            .run
            .as_ref()
            .is_some_and(|r| r.engine_started_at == c.state.started_at);
        if !same {
            self.run = Some(Run {
                engine_started_at: c.state.started_at.clone(),
                seen: Instant::now(),
            });
            self.unhealthy = 0;
        }
    }

    async fn restart_exited(&mut self, c: &ContainerInspect) -> Result<Duration, StepError> {
        // Not started by this process yet (boot, host restart): start without counting.
        if !self.started_once {
            self.set_status(format!("starting {CONTAINER_NAME}"));
            self.start().await?;
            return Ok(self.timing.check);
        }
        let next = match self.next_start {
            Some(t) => t,
            None => {
                if self.ran_stable() {
                    self.crashes = 0;
                }
                self.crashes += 1;
                let delay = self.backoff(self.crashes);
                self.set_status(format!(
                    "{CONTAINER_NAME} exited (code {}, {} in a row); restart in {} ms",
                    c.state.exit_code,
                    self.crashes,
                    delay.as_millis()
                ));
                let t = Instant::now() + delay;
                self.next_start = Some(t);
                t
            }
        };
        let now = Instant::now();
        if now < next {
            return Ok(next - now);
        }
        self.start().await?;
        Ok(self.timing.check)
    }

    async fn check_health(&mut self, c: &ContainerInspect, port: u16) -> Duration {
        if c.state.restarting {
            // Crashed; the engine restarts it by the restart policy (with its own backoff).
            // Stopping or starting it here would reset the engine's doubling delay.
            self.run = None;
            self.set_status(format!(
                "{CONTAINER_NAME} exited (code {}); the engine restarts it",
                c.state.exit_code
            ));
            return self.timing.check;
        }
        self.observe_run(c);
        let healthy = match &c.state.health {
            Some(h) if h.status == "starting" => None,
            Some(h) => Some(h.status == "healthy"),
            None => Some(probe(port).await),
        };
        match healthy {
            Some(true) => {
                self.unhealthy = 0;
                if self.ran_stable() {
                    self.crashes = 0;
                }
                if !self.ready {
                    let _ = sd_notify::notify(&[NotifyState::Ready]);
                    self.ready = true;
                }
                self.set_status(format!("{CONTAINER_NAME} is healthy"));
            }
            Some(false) => {
                self.unhealthy += 1;
                if self.unhealthy >= self.timing.unhealthy_limit {
                    self.set_status(format!(
                        "{CONTAINER_NAME} unhealthy {} checks in a row; restarting",
                        self.unhealthy
                    ));
                    if let Err(e) = self
                        .engine
                        .stop_container(CONTAINER_NAME, self.timing.stop_timeout_s)
                        .await
                    {
                        log::warn!("{}", Chain(&e));
                    }
                    self.unhealthy = 0;
                    // A run that ended unhealthy is a crash, however long it lasted.
                    self.run = None;
                    // The next step sees it exited and restarts it with backoff.
                    return Duration::ZERO;
                }
                self.set_status(format!(
                    "waiting for {CONTAINER_NAME} to become healthy ({} failed checks)",
                    self.unhealthy
                ));
            }
            None => self.set_status(format!("waiting for {CONTAINER_NAME}'s health check")),
        }
        self.timing.check
    }

    /// SIGTERM: stop the container (its data stays), tell systemd.
    pub async fn shutdown(&mut self) {
        let _ = sd_notify::notify(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping the supervisor container"),
        ]);
        let limit = Duration::from_secs(u64::from(self.timing.stop_timeout_s) + 15);
        match tokio::time::timeout(
            limit,
            self.engine
                .stop_container(CONTAINER_NAME, self.timing.stop_timeout_s),
        )
        .await
        {
            Ok(Ok(())) => log::info!("{CONTAINER_NAME} stopped"),
            Ok(Err(e)) if e.is_not_found() => {}
            Ok(Err(e)) => log::warn!("cannot stop {CONTAINER_NAME}: {}", Chain(&e)),
            Err(_) => log::warn!("{CONTAINER_NAME} did not stop within {} s", limit.as_secs()),
        }
    }
}

/// Why the container must be recreated, or `None` when it matches.
fn outdated(c: &ContainerInspect, desired: &Desired, image_id: &str) -> Option<String> {
    if c.config.image != desired.image {
        return Some(format!("image {} -> {}", c.config.image, desired.image));
    }
    if c.image != image_id {
        return Some(format!("{} now points to {image_id}", desired.image));
    }
    if c.config.labels.get(LABEL_CONFIG_HASH) != Some(&desired.config_hash) {
        return Some("configuration changed".into());
    }
    None
}

/// TCP probe on the supervisor's API port (host network).
async fn probe(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    matches!(
        tokio::time::timeout(Duration::from_secs(2), connect).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(stable: Duration) -> Host {
        let timing = Timing {
            check: Duration::from_secs(1),
            unhealthy_limit: 3,
            backoff: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(700),
            stable,
            stop_timeout_s: 1,
        };
        Host::new(
            Root::new("/nonexistent"),
            "/nonexistent.sock".into(),
            timing,
        )
    }

    fn inspect(started_at: &str) -> ContainerInspect {
        serde_json::from_value(serde_json::json!({
            "Id": "c1", "Image": "sha256:1",
            "Config": {"Image": "fleet/supervisor"},
            "State": {"Status": "running", "Running": true, "StartedAt": started_at},
        }))
        .unwrap()
    }

    #[test]
    fn failed_checks_count_within_one_engine_run_only() {
        let mut h = host(Duration::ZERO);
        h.observe_run(&inspect("2026-12-04T10:00:00.1Z"));
        h.unhealthy = 2;
        h.observe_run(&inspect("2026-12-04T10:00:00.1Z"));
        assert_eq!(h.unhealthy, 2, "same run: the count goes on");
        // The engine restarted it (restart policy): a new run, counted from zero.
        h.observe_run(&inspect("2026-12-04T10:00:01.3Z"));
        assert_eq!(h.unhealthy, 0);
    }

    #[test]
    fn stability_is_the_runs_not_the_last_start_by_fleetd() {
        let mut h = host(Duration::ZERO);
        h.started_once = true;
        assert!(
            !h.ran_stable(),
            "no run seen yet: a crash, not a stable run"
        );
        h.observe_run(&inspect("2026-12-04T10:00:00.1Z"));
        assert!(h.ran_stable());
        let mut h = host(Duration::from_secs(3600));
        h.observe_run(&inspect("2026-12-04T10:00:00.1Z"));
        assert!(!h.ran_stable());
    }

    #[test]
    fn backoff_doubles_to_cap() {
        let h = host(Duration::from_secs(60));
        let got: Vec<u128> = (1..=6).map(|n| h.backoff(n).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 700, 700, 700]);
    }
}
