//! `GET`/`PATCH /v1/device/host-config`, as balena's supervisor (`src/host-config/`): the
//! hostname is config.json's `hostname` (applied at once by restarting
//! `fleet-provision.service` over D-Bus), the proxy is balena's redsocks
//! files on the boot partition, `system-proxy/redsocks.conf` and `system-proxy/no_proxy`
//! (one address a line). All of them are written with `fleet_config`'s power-safe FAT
//! replacement.

use std::path::{Path, PathBuf};

use fleet_config::Config;
use serde_json::{Map, Value, json};

use super::message::{Request, Response};
use super::state::Shared;
use super::{Reconciler, host_units, params::Params};

/// Keys balena sets itself in the redsocks block and never reads back from it.
const FIXED_KEYS: &[&str] = &["local_ip", "local_port"];
const PROXY_TYPES: &[&str] = &["socks4", "socks5", "http-connect", "http-relay"];
/// balena's `dnsu2t` default when `dns: true`.
const DEFAULT_DNS: &str = "8.8.8.8:53";

/// Where the host configuration lives: config.json and the boot partition beside it.
#[derive(Debug, Clone)]
pub struct HostFiles {
    pub config: PathBuf,
    pub proxy_dir: PathBuf,
}

impl HostFiles {
    pub fn beside(config: &Path) -> HostFiles {
        let boot = config
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        HostFiles {
            config: config.to_path_buf(),
            proxy_dir: boot.join("system-proxy"),
        }
    }

    fn redsocks(&self) -> PathBuf {
        self.proxy_dir.join("redsocks.conf")
    }

    fn no_proxy(&self) -> PathBuf {
        self.proxy_dir.join("no_proxy")
    }
}

fn files<R>(shared: &Shared<R>) -> HostFiles {
    let config = shared
        .settings
        .registration
        .config_path
        .clone()
        .unwrap_or_else(|| PathBuf::from("/boot/config.json"));
    HostFiles::beside(&config)
}

/// `GET /v1/device/host-config`: `{network: {hostname, proxy?}}`; `proxy` only when
/// `redsocks.conf` exists, as balena.
pub fn get<R>(shared: &Shared<R>) -> Response {
    match read(&files(shared)) {
        Ok(v) => Response::json(200, &v),
        Err(e) => Response::json(503, &json!({ "status": "failed", "message": e })),
    }
}

pub fn read(files: &HostFiles) -> Result<Value, String> {
    let configured = Config::load(&files.config)
        .map_err(|e| fleet_log::error::one_line(&e))?
        .and_then(|c| c.settings().hostname.clone());
    let hostname = configured.unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    });
    let mut network = Map::new();
    network.insert("hostname".into(), hostname.into());
    if let Some(proxy) = read_proxy(files)? {
        network.insert("proxy".into(), Value::Object(proxy));
    }
    Ok(json!({ "network": network }))
}

fn read_text(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(fleet_config::fat_current(path)) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn read_proxy(files: &HostFiles) -> Result<Option<Map<String, Value>>, String> {
    let Some(conf) = read_text(&files.redsocks())? else {
        return Ok(None);
    };
    let mut proxy = parse_redsocks(&conf);
    let no_proxy = read_no_proxy(files)?;
    if !no_proxy.is_empty() {
        proxy.insert("noProxy".into(), json!(no_proxy));
    }
    Ok(Some(proxy))
}

fn read_no_proxy(files: &HostFiles) -> Result<Vec<String>, String> {
    Ok(read_text(&files.no_proxy())?
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The `label { … }` block's `key = value;` lines; balena's end of block is a `}` followed by
/// white space or the end (a password may hold `}`).
fn block<'a>(conf: &'a str, label: &str) -> Option<Vec<(&'a str, String)>> {
    let mut from = 0;
    let body = loop {
        let at = from + conf[from..].find(label)?;
        let rest = conf[at + label.len()..].trim_start_matches([' ', '\t']);
        from = at + label.len();
        if let Some(body) = rest.strip_prefix('{') {
            break body;
        }
    };
    let end = body
        .char_indices()
        .filter(|(_, c)| *c == '}')
        .map(|(i, _)| i)
        .find(|i| body[i + 1..].chars().next().is_none_or(char::is_whitespace))?;
    let mut out = Vec::new();
    for line in body[..end].lines() {
        let line = line.trim().trim_end_matches(';').trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() || FIXED_KEYS.contains(&key) {
            continue;
        }
        let value = if matches!(key, "login" | "password") {
            value.replace('"', "")
        } else {
            value.to_string()
        };
        out.push((key, value));
    }
    Some(out)
}

/// redsocks.conf → balena's proxy object (`type`, `ip`, `port` as a number, `login`,
/// `password`, `dns` as `IP:PORT`); a block balena would not accept gives `{}`.
pub fn parse_redsocks(conf: &str) -> Map<String, Value> {
    let mut proxy = Map::new();
    let Some(fields) = block(conf, "redsocks") else {
        return proxy;
    };
    for (key, value) in fields {
        let value = match key {
            "port" => match value.parse::<u64>() {
                Ok(n) => json!(n),
                Err(_) => return Map::new(),
            },
            _ => Value::String(value),
        };
        proxy.insert(key.to_string(), value);
    }
    let valid = proxy
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| PROXY_TYPES.contains(&t))
        && proxy.get("ip").is_some_and(Value::is_string)
        && proxy.get("port").is_some();
    if !valid {
        return Map::new();
    }
    if let Some(dns) = block(conf, "dnsu2t") {
        let get = |k: &str| dns.iter().find(|(key, _)| *key == k).map(|(_, v)| v);
        if let (Some(ip), Some(port)) = (get("remote_ip"), get("remote_port")) {
            proxy.insert("dns".into(), json!(format!("{ip}:{port}")));
        }
    }
    proxy
}

/// balena's `RedsocksConf.stringify`: empty (no file) without proxy fields or with `dns`
/// alone; else the `base` block, the `redsocks` block listening on 127.0.0.1:12345 and, for
/// `dns`, a `dnsu2t` block on 127.0.0.1:53.
pub fn stringify_redsocks(proxy: &Map<String, Value>) -> String {
    if proxy.is_empty() || (proxy.len() == 1 && proxy.contains_key("dns")) {
        return String::new();
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let block = |label: &str, fields: Vec<(String, String)>| {
        let lines: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| {
                let v = if matches!(k.as_str(), "login" | "password") {
                    format!(
                        "{}{v}{}",
                        if v.starts_with('"') { "" } else { "\"" },
                        if v.ends_with('"') { "" } else { "\"" }
                    )
                } else {
                    v
                };
                format!("\t{k} = {v};")
            })
            .collect();
        format!("{label} {{\n{}\n}}\n", lines.join("\n"))
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut blocks = vec![block(
        "base",
        pairs(&[
            ("log_debug", "off"),
            ("log_info", "on"),
            ("log", "stderr"),
            ("daemon", "off"),
            ("redirector", "iptables"),
        ]),
    )];
    let mut redsocks: Vec<(String, String)> = proxy
        .iter()
        .filter(|(k, _)| k.as_str() != "dns")
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    redsocks.extend(pairs(&[("local_ip", "127.0.0.1"), ("local_port", "12345")]));
    blocks.push(block("redsocks", redsocks));
    let dns = match proxy.get("dns") {
        Some(Value::Bool(true)) => Some(DEFAULT_DNS.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    if let Some((ip, port)) = dns.as_deref().and_then(|d| d.rsplit_once(':')) {
        let port = port.parse::<u64>().unwrap_or(53).to_string();
        blocks.push(block(
            "dnsu2t",
            vec![
                ("remote_ip".into(), ip.to_string()),
                ("remote_port".into(), port),
                ("local_ip".into(), "127.0.0.1".into()),
                ("local_port".into(), "53".into()),
            ],
        ));
    }
    blocks.join("\n")
}

/// A PATCH body as balena's `hostConfig.parse` accepts it (its legacy form included: any
/// proxy fields, but `dns` must be a boolean or `ADDRESS:PORT`).
#[derive(Debug, Default, PartialEq)]
pub struct Patch {
    pub hostname: Option<String>,
    /// The proxy fields to merge (without `noProxy`); `Some(empty)` removes the proxy.
    pub proxy: Option<Map<String, Value>>,
    pub no_proxy: Option<Vec<String>>,
}

pub fn parse_patch(body: &Value) -> Result<Patch, String> {
    let bad = |why: &str| format!("Could not parse host config input to a valid format: {why}");
    let network = match body.get("network") {
        Some(Value::Object(n)) => n,
        _ => return Err(bad("network must be an object")),
    };
    let mut patch = Patch::default();
    match network.get("hostname") {
        None => {}
        Some(Value::String(h)) => patch.hostname = Some(h.clone()),
        Some(_) => return Err(bad("network.hostname must be a string")),
    }
    match network.get("proxy") {
        None | Some(Value::Null) => {}
        Some(Value::Object(p)) => {
            let mut fields = p.clone();
            patch.no_proxy = match fields.remove("noProxy") {
                None | Some(Value::Null) => None,
                Some(Value::Array(list)) => Some(
                    list.iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad("network.proxy.noProxy must be a list of strings"))?,
                ),
                Some(_) => return Err(bad("network.proxy.noProxy must be a list of strings")),
            };
            match fields.get("dns") {
                None | Some(Value::Bool(_)) => {}
                Some(Value::String(d)) if is_address(d) => {}
                Some(_) => {
                    return Err(bad(
                        "network.proxy.dns must be a boolean or a string in the format 'ADDRESS:PORT'",
                    ));
                }
            }
            for (key, value) in &fields {
                if value.is_object() || value.is_array() {
                    return Err(bad(&format!(
                        "network.proxy.{key} must be a string, number or boolean"
                    )));
                }
            }
            patch.proxy = Some(fields);
        }
        Some(_) => return Err(bad("network.proxy must be an object")),
    }
    Ok(patch)
}

fn is_address(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(a, p)| {
        !a.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Writes a parsed patch: the hostname to config.json (`""` means the first 7 characters of
/// the UUID, as balena), the proxy merged over the current redsocks.conf, `noProxy` to
/// `no_proxy` (an empty list removes it). An empty `proxy` removes redsocks.conf unless only
/// `noProxy` changed, as balena.
pub fn write(files: &HostFiles, patch: &Patch, uuid: Option<&str>) -> Result<(), String> {
    fn fail(e: &(dyn std::error::Error + 'static)) -> String {
        fleet_log::error::one_line(e)
    }
    if let Some(hostname) = &patch.hostname {
        let hostname = if hostname.is_empty() {
            uuid.map(|u| u.chars().take(7).collect()).ok_or(
                "an empty hostname means the UUID's first 7 characters, and the device has no uuid",
            )?
        } else {
            hostname.clone()
        };
        let mut config = Config::load(&files.config)
            .map_err(|e| fail(&e))?
            .unwrap_or_else(Config::empty);
        config
            .set(&["hostname"], Value::String(hostname))
            .map_err(|problems| {
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                format!("{}: {}", files.config.display(), list.join("; "))
            })?;
        config.save(&files.config).map_err(|e| fail(&e))?;
    }
    let Some(input) = &patch.proxy else {
        return Ok(());
    };
    fleet_fs::ensure_dir(&files.proxy_dir).map_err(|e| fail(&e))?;
    let mut no_proxy_changed = false;
    if let Some(list) = &patch.no_proxy {
        let current = read_no_proxy(files)?;
        if list.is_empty() {
            remove(&files.no_proxy())?;
        } else {
            fleet_config::replace_on_fat(&files.no_proxy(), list.join("\n").as_bytes())
                .map_err(|e| fail(&e))?;
        }
        no_proxy_changed = current.len() != list.len() || !current.iter().all(|a| list.contains(a));
    }
    let merged = if input.is_empty() {
        Map::new()
    } else {
        let mut current = read_text(&files.redsocks())?
            .map(|c| parse_redsocks(&c))
            .unwrap_or_default();
        current.extend(input.clone());
        current
    };
    let text = stringify_redsocks(&merged);
    if !text.is_empty() {
        fleet_config::replace_on_fat(&files.redsocks(), text.as_bytes()).map_err(|e| fail(&e))?;
    } else if !no_proxy_changed {
        remove(&files.redsocks())?;
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), String> {
    fleet_fs::remove_if_exists(path)
        .map(|_| ())
        .map_err(|e| fleet_log::error::one_line(&e))
}

/// `PATCH /v1/device/host-config`: `200 OK`; `400` with the reason for a body balena would
/// refuse; `423` (text) while an app holds its update lock, unless `force`; `503` (text)
/// when writing fails.
pub async fn patch<R: Reconciler>(shared: &Shared<R>, req: &Request) -> Response {
    // JSON or a form, nested as express's extended urlencoded parser nests it.
    let params = match Params::of(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let force = params.truthy("force");
    let patch = match parse_patch(&Value::Object(params.fields().clone())) {
        Ok(p) => p,
        Err(why) => return Response::text(400, &why),
    };
    if patch.hostname.is_none() && patch.proxy.is_none() {
        return Response::text(200, "OK");
    }
    let _actions = shared.actions.lock().await;
    if !force {
        match shared.reconciler.current_state().await {
            Ok(state) if !state.locked_apps.is_empty() => {
                let apps: Vec<&str> = state.locked_apps.iter().map(String::as_str).collect();
                return Response::text(
                    423,
                    &format!(
                        "Updates are locked by app(s) {}: use force to override",
                        apps.join(", ")
                    ),
                );
            }
            Ok(_) => {}
            Err(e) => return Response::text(503, &fleet_log::error::one_line(&e)),
        }
    }
    let uuid = shared.settings.uuid.clone();
    if let Err(e) = write(&files(shared), &patch, uuid.as_deref()) {
        return Response::text(503, &e);
    }
    log::info!("host configuration changed through the API");
    if patch.hostname.is_some() {
        restart_to_apply(host_units::PROVISION_UNIT, "hostname").await;
    }
    if patch.proxy.is_some() {
        restart_to_apply(host_units::PROXY_UNIT, "proxy settings").await;
    }
    Response::text(200, "OK")
}

/// Restarts the host unit that applies `what`, as balena's supervisor restarts its units after
/// writing their files: `fleet-provision.service` applies config.json's hostname (balenaOS's
/// config.json watcher restarts its hostname service), `fleet-proxy.service` rereads both
/// proxy files (with redsocks.conf gone it removes the redirect and stays stopped on its
/// condition). Failing that, the files hold the change for the next boot: the request still
/// succeeded, as balena's does once the files are written.
async fn restart_to_apply(unit: &str, what: &str) {
    match host_units::run(host_units::Job::Restart, unit).await {
        Ok(()) => log::info!("restarted {unit} to apply the new {what}"),
        Err(e) => log::warn!(
            "the next boot applies the new {what}: {}",
            fleet_log::error::one_line(&e)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (tempfile::TempDir, HostFiles) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            br#"{"deviceType":"generic-amd64","hostname":"old-name"}"#,
        )
        .unwrap();
        let f = HostFiles::beside(&dir.path().join("config.json"));
        (dir, f)
    }

    fn patch_of(v: Value) -> Patch {
        parse_patch(&v).unwrap()
    }

    #[test]
    fn hostname_goes_to_config_json_and_reads_back() {
        let (_d, f) = files();
        assert_eq!(read(&f).unwrap()["network"]["hostname"], "old-name");
        assert!(read(&f).unwrap()["network"].get("proxy").is_none());
        write(
            &f,
            &patch_of(json!({"network":{"hostname":"greenhouse"}})),
            None,
        )
        .unwrap();
        let saved: Value = serde_json::from_slice(&std::fs::read(&f.config).unwrap()).unwrap();
        assert_eq!(saved["hostname"], "greenhouse");
        assert_eq!(saved["deviceType"], "generic-amd64");
        assert_eq!(read(&f).unwrap()["network"]["hostname"], "greenhouse");
    }

    #[test]
    fn empty_hostname_is_the_uuid_prefix_and_a_bad_one_is_refused() {
        let (_d, f) = files();
        let p = patch_of(json!({"network":{"hostname":""}}));
        write(&f, &p, Some("87d970d3a9009f361a73dc78a674a16e")).unwrap();
        assert_eq!(read(&f).unwrap()["network"]["hostname"], "87d970d");
        let err = write(
            &f,
            &patch_of(json!({"network":{"hostname":"not valid!"}})),
            None,
        )
        .unwrap_err();
        assert!(err.contains("config.json"), "{err}");
        assert!(err.contains("hostname"), "{err}");
        assert_eq!(read(&f).unwrap()["network"]["hostname"], "87d970d");
    }

    #[test]
    fn proxy_written_as_balena_and_merged() {
        let (_d, f) = files();
        let p = patch_of(json!({"network":{"proxy":{
            "type":"socks5","ip":"10.0.0.9","port":8123,"login":"user","password":"p}w",
            "noProxy":["152.10.30.4","253.1.1.0/16"]}}}));
        write(&f, &p, None).unwrap();
        let conf = std::fs::read_to_string(f.proxy_dir.join("redsocks.conf")).unwrap();
        assert!(conf.starts_with("base {\n\tlog_debug = off;\n"), "{conf}");
        assert!(conf.contains("\tredirector = iptables;\n}\n"), "{conf}");
        assert!(conf.contains("redsocks {\n"), "{conf}");
        assert!(conf.contains("\ttype = socks5;\n"), "{conf}");
        assert!(conf.contains("\tpassword = \"p}w\";\n"), "{conf}");
        assert!(
            conf.contains("\tlocal_ip = 127.0.0.1;\n\tlocal_port = 12345;\n}"),
            "{conf}"
        );
        assert_eq!(
            std::fs::read_to_string(f.proxy_dir.join("no_proxy")).unwrap(),
            "152.10.30.4\n253.1.1.0/16"
        );
        let proxy = &read(&f).unwrap()["network"]["proxy"];
        assert_eq!(
            proxy,
            &json!({"type":"socks5","ip":"10.0.0.9","port":8123,"login":"user",
                    "password":"p}w","noProxy":["152.10.30.4","253.1.1.0/16"]})
        );
        // A later patch merges over the file; dns adds the dnsu2t block.
        write(
            &f,
            &patch_of(json!({"network":{"proxy":{"port":"9000","dns":true}}})),
            None,
        )
        .unwrap();
        let proxy = &read(&f).unwrap()["network"]["proxy"];
        assert_eq!(proxy["port"], 9000);
        assert_eq!(proxy["ip"], "10.0.0.9");
        assert_eq!(proxy["dns"], "8.8.8.8:53");
        // `{}` removes the proxy; no_proxy stays as it was not named.
        write(&f, &patch_of(json!({"network":{"proxy":{}}})), None).unwrap();
        assert!(!f.proxy_dir.join("redsocks.conf").exists());
        assert!(read(&f).unwrap()["network"].get("proxy").is_none());
    }

    #[test]
    fn bodies_balena_refuses() {
        for body in [
            json!({}),
            json!({"network": "x"}),
            json!({"network": {"hostname": 5}}),
            json!({"network": {"proxy": "socks5://x"}}),
            json!({"network": {"proxy": {"dns": "8.8.8.8"}}}),
            json!({"network": {"proxy": {"noProxy": "a,b"}}}),
        ] {
            let err = parse_patch(&body).unwrap_err();
            assert!(
                err.starts_with("Could not parse host config input"),
                "{err}"
            );
        }
    }

    #[test]
    fn redsocks_written_by_hand_is_read_as_balena() {
        let conf = "base {\n log_debug = off;\n}\nredsocks {\n type = http-connect;\n ip = proxy.lan;\n port = 3128;\n local_ip = 127.0.0.1;\n login = \"me\";\n}\n";
        assert_eq!(
            Value::Object(parse_redsocks(conf)),
            json!({"type":"http-connect","ip":"proxy.lan","port":3128,"login":"me"})
        );
        // An unknown type or a port that is no number: balena reads the block as `{}`.
        assert!(parse_redsocks("redsocks {\n type = ftp;\n ip = a;\n port = 1;\n}\n").is_empty());
        assert!(
            parse_redsocks("redsocks {\n type = socks5;\n ip = a;\n port = x;\n}\n").is_empty()
        );
    }
}
