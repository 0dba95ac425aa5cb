//! Registration, as balena's supervisor does it. config.json with `apiEndpoint`,
//! `applicationId`, `deviceType` and a provisioning key (`apiKey`) but no registration yet:
//! the device makes its `uuid` and device key (kept in config.json first, so a cut during
//! registration is recovered), `POST /device/register`s with the provisioning key, and
//! records `registered_at` and `deviceId` while dropping `apiKey` (power-safe on FAT).
//! A `409` (the uuid exists: an earlier attempt got through) or a device registered
//! earlier with `apiKey` still present goes through the key exchange: the device key is
//! tried (`GET /v6/device?$filter=uuid eq '…'`), else the provisioning key finds the device
//! and `POST /api-key/device/<id>/device-key` installs the device key. A failed exchange
//! makes a new uuid and key for the next attempt (balena's `regenerateRegistrationFields`).

use std::time::Duration;

use fleet_config::Config;
use fleet_http::client::Method;
use serde_json::{Value, json};

use super::host_info;
use super::identity::{Identity, random_hex};
use super::request::{call, snippet};
use crate::daemon::Reconciler;
use crate::daemon::backoff::Backoff;
use crate::daemon::state::Shared;
use crate::daemon::versions::{os_variant, os_version, supervisor_version};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Waits after failed attempts.
const RETRY: Backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(5 * 60));

#[derive(Debug, thiserror::Error)]
enum ProvisionError {
    #[error("{0}")]
    Config(#[from] fleet_config::ConfigError),
    #[error("config.json: {0}")]
    Invalid(String),
    #[error("{0}")]
    Server(String),
    /// Neither key reaches the device: the next attempt registers anew.
    #[error("key exchange failed: {0}")]
    Exchange(String),
}

/// Registers until it succeeds (backing off between attempts) unless the device already has
/// its identity or config.json cannot register it (then says why, once).
pub async fn until_registered<R: Reconciler>(shared: &Shared<R>) {
    if shared.identity.borrow().is_some() || shared.settings.api_endpoint.is_none() {
        return;
    }
    let reg = &shared.settings.registration;
    if reg.provisioning_key.is_none() {
        log::error!(
            "apiEndpoint is set but config.json has neither a deviceApiKey with a uuid nor a \
             provisioning key (apiKey): not registering"
        );
        return;
    }
    let mut backoff = RETRY;
    loop {
        match attempt(shared).await {
            Ok(identity) => {
                shared
                    .reconciler
                    .set_registry_login(identity.registry_login());
                shared.identity.replace(Some(identity));
                shared.trigger(false);
                return;
            }
            Err(e) => {
                let wait = backoff.failed();
                log::warn!("registration failed: {e}; next try in {}s", wait.as_secs());
                if let ProvisionError::Exchange(_) = e
                    && let Err(e) = regenerate(shared)
                {
                    log::error!("cannot make a new uuid and key: {e}");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn config_path<R>(shared: &Shared<R>) -> Result<&std::path::Path, ProvisionError> {
    shared
        .settings
        .registration
        .config_path
        .as_deref()
        .ok_or_else(|| ProvisionError::Invalid("no config.json to record the registration".into()))
}

fn load<R>(shared: &Shared<R>) -> Result<Config, ProvisionError> {
    let path = config_path(shared)?;
    Config::load(path)?
        .ok_or_else(|| ProvisionError::Invalid(format!("{} is gone", path.display())))
}

fn edit(config: &mut Config, key: &str, value: Option<Value>) -> Result<(), ProvisionError> {
    let done = match value {
        Some(v) => config.set(&[key], v),
        None => config.remove(&[key]),
    };
    done.map_err(|problems| {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        ProvisionError::Invalid(text.join("; "))
    })
}

/// One registration attempt: the uuid and key it registered, recorded in config.json.
async fn attempt<R: Reconciler>(shared: &Shared<R>) -> Result<Identity, ProvisionError> {
    let path = config_path(shared)?.to_path_buf();
    let mut config = load(shared)?;
    let keys = config.settings().supervisor.clone();
    let Some(provisioning_key) = keys.provisioning_key.clone() else {
        // Registered by an earlier run of ours that was cut before `apiKey` went.
        return match (keys.uuid, keys.device_api_key) {
            (Some(uuid), Some(device_api_key)) => Ok(Identity {
                uuid,
                device_api_key,
            }),
            _ => Err(ProvisionError::Invalid(
                "apiKey is gone but no deviceApiKey".into(),
            )),
        };
    };
    let fresh = |what| random_hex(16).map_err(|e| ProvisionError::Invalid(format!("{what}: {e}")));
    let uuid = match &keys.uuid {
        Some(u) => u.clone(),
        None => fresh("uuid")?,
    };
    let device_api_key = match &keys.device_api_key {
        Some(k) => k.clone(),
        None => fresh("deviceApiKey")?,
    };
    if keys.uuid.is_none() || keys.device_api_key.is_none() {
        edit(&mut config, "uuid", Some(uuid.clone().into()))?;
        edit(
            &mut config,
            "deviceApiKey",
            Some(device_api_key.clone().into()),
        )?;
        config.save(&path)?;
    }
    let identity = Identity {
        uuid,
        device_api_key,
    };
    let device_id = if keys.registered_at.is_none() {
        match register(shared, &identity, &provisioning_key, &keys).await? {
            Some(id) => id,
            None => {
                log::info!("uuid {} is registered already: key exchange", identity.uuid);
                exchange(shared, &identity, &provisioning_key).await?
            }
        }
    } else {
        log::info!("registered earlier but apiKey is still there: key exchange");
        exchange(shared, &identity, &provisioning_key).await?
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut config = load(shared)?;
    if config.settings().supervisor.registered_at.is_none() {
        edit(&mut config, "registered_at", Some(now_ms.into()))?;
    }
    edit(&mut config, "deviceId", Some(device_id.into()))?;
    edit(&mut config, "apiKey", None)?;
    config.save(&path)?;
    log::info!(
        "registered as {} (device id {device_id}); the provisioning key is removed from {}",
        identity.uuid,
        path.display()
    );
    Ok(identity)
}

/// `POST /device/register`: the new device's id, or `None` when the uuid exists (409).
async fn register<R>(
    shared: &Shared<R>,
    identity: &Identity,
    provisioning_key: &str,
    keys: &fleet_config::SupervisorKeys,
) -> Result<Option<u64>, ProvisionError> {
    let s = &shared.settings;
    let application: u64 = keys
        .application_id
        .as_deref()
        .or(s.registration.application_id.as_deref())
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| ProvisionError::Invalid("applicationId: missing or not a number".into()))?;
    let device_type = keys
        .device_type
        .clone()
        .or(s.device_type.clone())
        .ok_or_else(|| ProvisionError::Invalid("deviceType: missing".into()))?;
    let (_, mac_address) = host_info::addresses();
    let body = json!({
        "application": application,
        "uuid": identity.uuid,
        "device_type": device_type,
        "api_key": identity.device_api_key,
        "supervisor_version": supervisor_version(),
        "os_version": os_version(s.os_version.as_deref()),
        "os_variant": os_variant(s.development_mode),
        "mac_address": mac_address,
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let r = call(
        shared,
        Method::POST,
        "/device/register",
        provisioning_key,
        &[],
        &bytes,
        TIMEOUT,
    )
    .await
    .map_err(ProvisionError::Server)?;
    match r.status {
        200 | 201 => {
            let answer: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            answer["id"].as_u64().map(Some).ok_or_else(|| {
                ProvisionError::Server(format!(
                    "/device/register: no device id in {}",
                    snippet(&r.body)
                ))
            })
        }
        409 => Ok(None),
        status => Err(ProvisionError::Server(format!(
            "/device/register: HTTP {status}: {}",
            snippet(&r.body)
        ))),
    }
}

/// The key exchange; the device's id.
async fn exchange<R>(
    shared: &Shared<R>,
    identity: &Identity,
    provisioning_key: &str,
) -> Result<u64, ProvisionError> {
    if let Some(id) = find_device(shared, &identity.uuid, &identity.device_api_key).await? {
        return Ok(id);
    }
    let Some(id) = find_device(shared, &identity.uuid, provisioning_key).await? else {
        return Err(ProvisionError::Exchange(format!(
            "the provisioning key does not reach device {}",
            identity.uuid
        )));
    };
    let body =
        serde_json::to_vec(&json!({ "apiKey": identity.device_api_key })).unwrap_or_default();
    let path = format!("/api-key/device/{id}/device-key");
    let r = call(
        shared,
        Method::POST,
        &path,
        provisioning_key,
        &[],
        &body,
        TIMEOUT,
    )
    .await
    .map_err(ProvisionError::Server)?;
    if r.status != 200 {
        return Err(ProvisionError::Exchange(format!(
            "{path}: HTTP {}: {}",
            r.status,
            snippet(&r.body)
        )));
    }
    Ok(id)
}

/// The device's id as `key` sees it; `None` when the key does not reach it.
async fn find_device<R>(
    shared: &Shared<R>,
    uuid: &str,
    key: &str,
) -> Result<Option<u64>, ProvisionError> {
    // uuids are hex (config.json validation): nothing to escape in the filter.
    let path = format!("/v6/device?$select=id&$filter=uuid%20eq%20'{uuid}'");
    let r = call(shared, Method::GET, &path, key, &[], b"", TIMEOUT)
        .await
        .map_err(ProvisionError::Server)?;
    match r.status {
        200 => {
            let answer: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            Ok(answer["d"][0]["id"].as_u64())
        }
        401 | 403 | 404 => Ok(None),
        status => Err(ProvisionError::Server(format!("/v6/device: HTTP {status}"))),
    }
}

/// A new uuid and device key for the next attempt (the old ones reach nothing).
fn regenerate<R>(shared: &Shared<R>) -> Result<(), ProvisionError> {
    let path = config_path(shared)?.to_path_buf();
    let mut config = load(shared)?;
    for key in ["uuid", "deviceApiKey", "registered_at", "deviceId"] {
        edit(&mut config, key, None)?;
    }
    config.save(&path)?;
    Ok(())
}
