//! The device's side of a fleet server's device API, as openBalena (balena's open-source
//! API) serves it: registration with a provisioning key ([`provision`]), the target poll
//! with `If-None-Match` ([`poll`]), the current-state report ([`report`]), the log stream
//! ([`logs`]) and the OS service configuration ([`os_config`]). Every call goes through
//! [`call`]: the apiEndpoint, its TLS roots, the proxy from the environment, a time limit.

pub mod host_info;
pub mod identity;
pub mod log_buffer;
pub mod logs;
pub mod os_config;
pub mod poll;
pub mod provision;
pub mod report;
pub mod report_state;
pub mod request;

use std::rc::Rc;

pub use identity::Identity;

use super::Reconciler;
use super::state::Shared;

/// The cloud side, beside the API server and the reconcile loop: registration when
/// config.json asks for it, then the OS configuration and the log stream. Never returns.
pub async fn run<R: Reconciler + 'static>(shared: Rc<Shared<R>>) {
    if shared.settings.remote() {
        provision::until_registered(&shared).await;
        if shared.identity.borrow().is_some() {
            match os_config::fetch(&shared).await {
                Ok(w) if !w.files.is_empty() => log::info!(
                    "OS configuration: wrote {} file(s) under {}",
                    w.files.len(),
                    os_config::DIR
                ),
                Ok(_) => {}
                Err(e) => log::warn!("OS configuration not fetched: {e}"),
            }
            logs::run(shared).await;
        }
    }
    std::future::pending::<()>().await;
}
