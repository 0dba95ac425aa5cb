//! The compose walker: YAML value → [`Compose`], every problem collected with its path.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use super::scalar;
use super::{
    Checked, Compose, DEFAULT_NETWORK, DeviceMapping, Healthcheck, IpamPool, LEGACY_DATA_VOLUME,
    NetworkAttachment, NetworkMode, NetworkOptions, RestartPolicy, Service, Ulimit, VolumeMount,
    VolumeOptions,
};
use crate::Problem;
use crate::labels;

/// Largest compose file accepted; real ones are a few KiB.
pub const MAX_COMPOSE_BYTES: usize = 1024 * 1024;

const VERSIONS: &[&str] = &["2", "2.0", "2.1", "2.2", "2.3", "2.4"];
/// `build` keys balena's builder refuses (balena-compose-parser's build deny list).
const BUILDER_REFUSED_BUILD_KEYS: &[&str] = &[
    "additional_contexts",
    "cache_to",
    "dockerfile_inline",
    "entitlements",
    "isolation",
    "network",
    "no_cache",
    "platforms",
    "privileged",
    "pull",
    "secrets",
    "ssh",
    "tags",
    "ulimits",
];

/// Service keys balena's compose parser refuses: refused here too. Other keys this device
/// does not know are dropped with a warning, so a release written for a newer balena still
/// runs (see [`Walker::unknown`]).
pub(super) const BALENA_REFUSED_SERVICE_KEYS: &[&str] = &[
    "blkio_config",
    "configs",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "credential_spec",
    "deploy",
    "develop",
    "external_links",
    "gpus",
    "isolation",
    "links",
    "logging",
    "mem_swappiness",
    "memswap_limit",
    "oom_kill_disable",
    "platform",
    "pull_policy",
    "runtime",
    "scale",
    "secrets",
    "stdin_open",
    "storage_opt",
];
/// Top-level, network and service-network keys balena refuses.
const BALENA_REFUSED_OTHER_KEYS: &[&str] = &[
    "configs",
    "secrets",
    "attachable",
    "enable_ipv4",
    "link_local_ips",
];

pub(super) fn parse_str(text: &str) -> Result<Compose, Vec<Problem>> {
    into_result(check_str(text))
}

pub(super) fn parse_value(value: Value) -> Result<Compose, Vec<Problem>> {
    into_result(check_value(value))
}

fn into_result(checked: Checked) -> Result<Compose, Vec<Problem>> {
    match checked.compose {
        Some(compose) => Ok(compose),
        None => Err(checked.problems),
    }
}

fn file_problem(message: String) -> Checked {
    Checked {
        compose: None,
        problems: vec![Problem::new("(file)", message)],
        ignored: Vec::new(),
    }
}

pub(super) fn check_str(text: &str) -> Checked {
    if text.len() > MAX_COMPOSE_BYTES {
        return file_problem(format!("larger than the {MAX_COMPOSE_BYTES}-byte limit"));
    }
    match serde_norway::from_str(text) {
        Ok(value) => check_value(value),
        Err(e) => file_problem(format!("not valid YAML: {e}")),
    }
}

pub(super) fn check_value(value: Value) -> Checked {
    walk(value, false)
}

/// [`check_str`] for a user's project file, as balena's builder reads it (see
/// [`Walker::project`]).
pub(super) fn check_project_str(text: &str, vars: &dyn Fn(&str) -> Option<String>) -> Checked {
    if text.len() > MAX_COMPOSE_BYTES {
        return file_problem(format!("larger than the {MAX_COMPOSE_BYTES}-byte limit"));
    }
    let mut value = match serde_norway::from_str(text) {
        Ok(value) => value,
        Err(e) => return file_problem(format!("not valid YAML: {e}")),
    };
    let substituted = super::interpolate::substitute(&mut value, vars);
    let mut checked = walk(value, true);
    if !substituted.problems.is_empty() {
        checked.compose = None;
    }
    checked.problems.splice(0..0, substituted.problems);
    checked.ignored.splice(0..0, substituted.warnings);
    checked
}

fn walk(mut value: Value, project: bool) -> Checked {
    if let Err(e) = value.apply_merge() {
        return file_problem(format!("bad YAML merge key: {e}"));
    }
    let mut w = Walker {
        project,
        ..Walker::default()
    };
    let compose = w.top(value);
    Checked {
        compose: w.problems.is_empty().then_some(compose),
        problems: w.problems,
        ignored: w.ignored,
    }
}

/// Which top-level section [`Walker::declared`] reads.
struct Section {
    key: &'static str,
    kind: &'static str,
    driver: &'static str,
}

#[derive(Default)]
struct Walker {
    /// Reading a user's project file (`fleet compose check`), not a release: `build`
    /// without `image` is what the builder turns into an image, and an empty top-level
    /// section is refused as balena's builder refuses it.
    project: bool,
    problems: Vec<Problem>,
    /// Accepted but not acted on (see [`super::check`]).
    ignored: Vec<Problem>,
    /// Services with `profiles`: compose starts them only for an active profile, and a
    /// device has none, so they are left out.
    profiled: BTreeSet<String>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl Walker {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn ignore(&mut self, path: &str, message: impl Into<String>) {
        self.ignored.push(Problem::new(path, message));
    }

    /// A key this device does not read, in `what` (`service `web``, `network `n``): `x-`
    /// extension fields are for the file's author (silent); keys balena refuses are
    /// refused; any other is dropped with a warning naming it.
    fn unknown(&mut self, path: &str, what: &str, key: &str, refused: &[&str]) {
        if key.starts_with("x-") {
            return;
        }
        let what = if what.is_empty() {
            String::new()
        } else {
            format!("{what}: ")
        };
        if refused.contains(&key) {
            self.err(
                path,
                format!("{what}unsupported key `{key}` (balena refuses it too)"),
            );
        } else {
            self.ignore(
                path,
                format!(
                    "{what}key `{key}` is not supported by this device: dropped, the rest applies"
                ),
            );
        }
    }

    /// A mapping's entries with string keys; other keys are reported.
    fn entries(&mut self, path: &str, v: Value) -> Vec<(String, Value)> {
        match v {
            Value::Mapping(m) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    match k {
                        Value::String(k) => out.push((k, v)),
                        other => self.err(path, format!("key {} is not a string", kind(&other))),
                    }
                }
                out
            }
            Value::Null => Vec::new(),
            other => {
                self.err(path, format!("expected a mapping, found {}", kind(&other)));
                Vec::new()
            }
        }
    }

    /// A scalar as text (numbers and booleans as YAML spells them).
    fn text(&mut self, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.err(path, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    fn boolean(&mut self, path: &str, v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.err(
                    path,
                    format!("expected true or false, found {}", kind(other)),
                );
                None
            }
        }
    }

    fn unsigned(&mut self, path: &str, v: &Value) -> Option<u64> {
        match v.as_u64() {
            Some(n) => Some(n),
            None => {
                self.err(path, "expected a non-negative integer");
                None
            }
        }
    }

    fn integer(&mut self, path: &str, v: &Value) -> Option<i64> {
        let n = match v {
            Value::String(s) => s.trim().parse().ok(),
            other => other.as_i64(),
        };
        if n.is_none() {
            self.err(path, "expected an integer");
        }
        n
    }

    /// `pid` / `ipc`: one of `allowed`, or `service:NAME` (another service's namespace, see
    /// `link_service_namespaces`); `container:` is refused, as balena's builder does.
    fn namespace_mode(
        &mut self,
        service: &str,
        path: &str,
        v: &Value,
        allowed: &[&str],
    ) -> Option<String> {
        let mode = self.text(path, v)?;
        if allowed.contains(&mode.as_str()) || mode.starts_with("service:") {
            Some(mode)
        } else {
            self.err(
                path,
                format!(
                    "service `{service}`: `{mode}` is not supported (one of {}, service:NAME)",
                    allowed.join(", ")
                ),
            );
            None
        }
    }

    /// A project file's `build` (a context, or a mapping): the keys balena's builder refuses
    /// and a remote (`.git`) context are refused; the rest is the builder's.
    fn build(&mut self, service: &str, path: &str, v: &Value) {
        let context = match v {
            Value::String(c) => Some(c.as_str()),
            Value::Mapping(m) => {
                for key in m.keys().filter_map(Value::as_str) {
                    if BUILDER_REFUSED_BUILD_KEYS.contains(&key) {
                        self.err(
                            &format!("{path}.{key}"),
                            format!("service `{service}`: build `{key}` is not allowed (balena's builder refuses it)"),
                        );
                    }
                }
                m.get(Value::String("context".into()))
                    .and_then(Value::as_str)
            }
            _ => None,
        };
        if let Some(c) = context.filter(|c| c.ends_with(".git")) {
            self.err(
                &format!("{path}.context"),
                format!("service `{service}`: build context `{c}` is remote (balena's builder refuses it)"),
            );
        }
    }

    /// Bytes: a number, or `512m`-style text.
    fn size(&mut self, path: &str, v: &Value) -> Option<u64> {
        match v {
            Value::Number(_) => self.unsigned(path, v),
            other => self
                .text(path, other)
                .and_then(|t| scalar::bytes(&t).map_err(|e| self.err(path, e)).ok()),
        }
    }

    /// A string or a list of strings.
    fn texts(&mut self, path: &str, v: &Value) -> Vec<String> {
        match v {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.text(&format!("{path}[{i}]"), item))
                .collect(),
            Value::Null => Vec::new(),
            other => self.text(path, other).into_iter().collect(),
        }
    }

    /// Compose's "dictionary or list of KEY=VALUE" form (environment, labels, sysctls).
    fn dict(&mut self, path: &str, v: Value) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    if let Some(s) = self.text(&p, item) {
                        match s.split_once('=') {
                            Some((k, val)) if !k.is_empty() => {
                                out.insert(k.to_string(), val.to_string());
                            }
                            _ => self.err(&p, format!("`{s}` is not KEY=VALUE")),
                        }
                    }
                }
            }
            other => {
                for (k, val) in self.entries(path, other) {
                    let p = format!("{path}.{k}");
                    let val = match val {
                        Value::Null => Some(String::new()),
                        val => self.text(&p, &val),
                    };
                    if let Some(val) = val {
                        out.insert(k, val);
                    }
                }
            }
        }
        out
    }

    fn command(&mut self, path: &str, v: &Value) -> Option<Vec<String>> {
        match v {
            Value::String(s) => match scalar::split_command(s) {
                Ok(words) => Some(words),
                Err(e) => {
                    self.err(path, e);
                    None
                }
            },
            Value::Sequence(_) => Some(self.texts(path, v)),
            other => {
                self.err(
                    path,
                    format!("expected a string or a list, found {}", kind(other)),
                );
                None
            }
        }
    }

    fn duration(&mut self, path: &str, v: &Value) -> Option<u64> {
        let s = self.text(path, v)?;
        scalar::duration_ms(&s).map_err(|e| self.err(path, e)).ok()
    }

    fn top(&mut self, value: Value) -> Compose {
        let mut services = None;
        let mut volumes = BTreeSet::new();
        let mut networks = BTreeSet::from([DEFAULT_NETWORK.to_string()]);
        let mut volume_options = BTreeMap::new();
        let mut network_options = BTreeMap::new();
        for (key, v) in self.entries("(top level)", value) {
            match key.as_str() {
                "version" => match self.text("version", &v) {
                    Some(ver) if VERSIONS.contains(&ver.as_str()) => {}
                    // balena's builder (compose-go) ignores `version`; so does the device.
                    Some(ver) => self.ignore(
                        "version",
                        format!("compose version `{ver}` is not read: the file is read as balena reads 2.4 and the compose specification"),
                    ),
                    None => {}
                },
                "services" => services = Some(v),
                "volumes" | "networks" if v.is_null() && self.project => self.err(
                    &key,
                    format!(
                        "`{key}` is empty: a mapping is expected (balena's builder refuses it too)"
                    ),
                ),
                "volumes" => {
                    let (names, options) = self.declared_volumes(v);
                    volumes = names;
                    volume_options = options;
                }
                "networks" => {
                    let (names, options) = self.declared_networks(v);
                    networks.extend(names);
                    network_options = options;
                }
                other => self.unknown(other, "", other, BALENA_REFUSED_OTHER_KEYS),
            }
        }
        let mut parsed = BTreeMap::new();
        match services {
            None => self.err(
                "services",
                "missing: a compose file needs at least one service",
            ),
            Some(v) => {
                for (name, spec) in self.entries("services", v) {
                    let path = format!("services.{name}");
                    if !is_valid_name(&name) {
                        self.err(
                            &path,
                            format!(
                                "service name `{name}` is not valid ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"
                            ),
                        );
                    }
                    if let Some(s) = self.service(&name, spec, &volumes, &networks) {
                        parsed.insert(name, s);
                    }
                }
                for name in std::mem::take(&mut self.profiled) {
                    parsed.remove(&name);
                    self.ignore(
                        &format!("services.{name}.profiles"),
                        format!("service `{name}` has `profiles`: not run (a device has no active profile)"),
                    );
                }
                if parsed.is_empty() && self.problems.is_empty() {
                    self.err(
                        "services",
                        "no services to run (none defined, or every one has `profiles`)",
                    );
                }
            }
        }
        self.link_service_namespaces(&mut parsed);
        self.check_depends_on(&parsed);
        // The legacy single-container volume needs no declaration.
        if parsed
            .values()
            .any(|s| s.volumes.iter().any(|m| m.volume == LEGACY_DATA_VOLUME))
        {
            volumes.insert(LEGACY_DATA_VOLUME.to_string());
        }
        let mut compose = Compose {
            services: parsed,
            volumes,
            networks,
            volume_options,
            network_options,
        };
        super::add_feature_volumes(&mut compose);
        compose
    }

    fn declared_volumes(
        &mut self,
        v: Value,
    ) -> (BTreeSet<String>, BTreeMap<String, VolumeOptions>) {
        self.declared(
            v,
            Section {
                key: "volumes",
                kind: "volume",
                driver: "local",
            },
            |o: &mut VolumeOptions| (&mut o.driver_opts, &mut o.labels),
            |_, _, _, key, val, _| Some((key, val)),
        )
    }

    fn declared_networks(
        &mut self,
        v: Value,
    ) -> (BTreeSet<String>, BTreeMap<String, NetworkOptions>) {
        self.declared(
            v,
            Section {
                key: "networks",
                kind: "network",
                driver: "bridge",
            },
            |o: &mut NetworkOptions| (&mut o.driver_opts, &mut o.labels),
            |w, name, p, key, val, o| {
                match key.as_str() {
                    "internal" => o.internal = w.boolean(p, &val).unwrap_or(false),
                    "enable_ipv6" => o.enable_ipv6 = w.boolean(p, &val).unwrap_or(false),
                    "ipam" => o.ipam = w.ipam(name, p, val),
                    _ => return Some((key, val)),
                }
                None
            },
        )
    }

    /// Top-level `volumes` / `networks`: each name, and per entry the keys both read alike
    /// (`driver` with its one allowed value, `driver_opts`, `labels`, `name` accepted and
    /// unused, `external` refused); `own` reads the section's other keys, handing back
    /// those it does not know.
    fn declared<O: Default + PartialEq>(
        &mut self,
        v: Value,
        section: Section,
        common: impl Fn(&mut O) -> (&mut BTreeMap<String, String>, &mut BTreeMap<String, String>),
        mut own: impl FnMut(&mut Self, &str, &str, String, Value, &mut O) -> Option<(String, Value)>,
    ) -> (BTreeSet<String>, BTreeMap<String, O>) {
        let Section { key, kind, driver } = section;
        let mut out = BTreeSet::new();
        let mut options = BTreeMap::new();
        for (name, spec) in self.entries(key, v) {
            let path = format!("{key}.{name}");
            if !is_valid_name(&name) {
                self.err(&path, format!("{kind} name `{name}` is not valid"));
            }
            let mut o = O::default();
            for (k, val) in self.entries(&path, spec) {
                let p = format!("{path}.{k}");
                match k.as_str() {
                    "driver" => match self.text(&p, &val) {
                        Some(d) if d == driver => {}
                        Some(d) => self.err(
                            &p,
                            format!(
                                "{kind} `{name}`: driver `{d}` is not supported ({driver} only)"
                            ),
                        ),
                        None => {}
                    },
                    "driver_opts" => *common(&mut o).0 = self.dict(&p, val),
                    "labels" => *common(&mut o).1 = self.dict(&p, val),
                    // balena's builder removes `name` and open-balena-api's target states
                    // carry it: accepted and left unused.
                    "name" => {
                        if self.text(&p, &val).is_some() {
                            self.ignore(&p, format!("{kind} `{name}`: `name` is not used: the engine name is the supervisor's (<app>_{name})"));
                        }
                    }
                    "external" => self.err(
                        &p,
                        format!("{kind} `{name}`: external {key} are not supported"),
                    ),
                    _ => {
                        if let Some((other, _)) = own(self, &name, &p, k, val, &mut o) {
                            self.unknown(
                                &p,
                                &format!("{kind} `{name}`"),
                                &other,
                                BALENA_REFUSED_OTHER_KEYS,
                            );
                        }
                    }
                }
            }
            if o != O::default() {
                options.insert(name.clone(), o);
            }
            out.insert(name);
        }
        (out, options)
    }

    /// `ipam`: `driver` (default only), `config` (subnet, ip_range, gateway, aux_addresses),
    /// `options`. The builder writes `ipam: {}` for every network.
    fn ipam(&mut self, network: &str, path: &str, v: Value) -> Vec<IpamPool> {
        let mut pools = Vec::new();
        for (key, val) in self.entries(path, v) {
            let p = format!("{path}.{key}");
            match key.as_str() {
                "driver" => match self.text(&p, &val) {
                    Some(d) if d == "default" => {}
                    Some(d) => self.err(
                        &p,
                        format!(
                            "network `{network}`: IPAM driver `{d}` is not supported (default only)"
                        ),
                    ),
                    None => {}
                },
                "options" => {
                    if !self.dict(&p, val).is_empty() {
                        self.ignore(&p, format!("network `{network}`: IPAM options are not used by the default driver"));
                    }
                }
                "config" => {
                    let Value::Sequence(items) = val else {
                        self.err(&p, format!("expected a list, found {}", kind(&val)));
                        continue;
                    };
                    for (i, item) in items.into_iter().enumerate() {
                        let ip = format!("{p}[{i}]");
                        let mut pool = IpamPool::default();
                        for (k, x) in self.entries(&ip, item) {
                            let kp = format!("{ip}.{k}");
                            match k.as_str() {
                                "subnet" => pool.subnet = self.text(&kp, &x),
                                "ip_range" => pool.ip_range = self.text(&kp, &x),
                                "gateway" => pool.gateway = self.text(&kp, &x),
                                "aux_addresses" => self.err(
                                    &kp,
                                    format!("network `{network}`: `aux_addresses` is not supported (balena refuses it too)"),
                                ),
                                other => self.err(
                                    &kp,
                                    format!("network `{network}`: unsupported IPAM key `{other}`"),
                                ),
                            }
                        }
                        pools.push(pool);
                    }
                }
                other => self.err(
                    &p,
                    format!("network `{network}`: unsupported IPAM key `{other}`"),
                ),
            }
        }
        pools
    }

    fn service(
        &mut self,
        name: &str,
        spec: Value,
        volumes: &BTreeSet<String>,
        networks: &BTreeSet<String>,
    ) -> Option<Service> {
        let base = format!("services.{name}");
        if !matches!(spec, Value::Mapping(_)) {
            self.err(
                &base,
                format!(
                    "service `{name}`: expected a mapping, found {}",
                    kind(&spec)
                ),
            );
            return None;
        }
        let mut s = Service::with_image("");
        let mut image = None;
        let mut networks_given = None;
        let mut network_mode = NetworkMode::Bridge;
        let mut bind_features = Vec::new();
        let mut has_build = false;
        for (key, v) in self.entries(&base, spec) {
            let p = format!("{base}.{key}");
            if v.is_null() {
                // balena's builder writes unset keys as null (`command: null`): unset.
                continue;
            }
            match key.as_str() {
                "image" => image = self.text(&p, &v),
                "command" => s.command = self.command(&p, &v),
                "entrypoint" => s.entrypoint = self.command(&p, &v),
                "environment" => s.environment = self.dict(&p, v),
                "labels" => s.labels = self.dict(&p, v),
                "depends_on" => s.depends_on = self.depends_on(&p, v),
                "restart" => {
                    if let Some(r) = self.text(&p, &v) {
                        // balena's supervisor lower-cases and trims the policy.
                        match r.trim().to_ascii_lowercase().as_str() {
                            "always" => s.restart = RestartPolicy::Always,
                            "no" | "false" => s.restart = RestartPolicy::No,
                            "on-failure" => s.restart = RestartPolicy::OnFailure,
                            "unless-stopped" => s.restart = RestartPolicy::UnlessStopped,
                            other if other.starts_with("on-failure:") => {
                                match other["on-failure:".len()..].parse::<u64>() {
                                    Ok(n) => {
                                        s.restart = RestartPolicy::OnFailure;
                                        s.restart_max_retries = Some(n);
                                    }
                                    Err(_) => self.err(&p, format!(
                                        "service `{name}`: restart `{other}`: the retry count is not a non-negative integer"
                                    )),
                                }
                            }
                            // An unknown policy is `always` in balena's supervisor
                            // (createRestartPolicy), so a release with `never` runs.
                            other => {
                                s.restart = RestartPolicy::Always;
                                self.ignore(&p, format!(
                                    "service `{name}`: restart `{other}` is not one of always, no, on-failure, unless-stopped: `always` applies, as in balena"
                                ));
                            }
                        }
                    }
                }
                "network_mode" => {
                    if let Some(m) = self.text(&p, &v) {
                        match m.as_str() {
                            "host" => network_mode = NetworkMode::Host,
                            "none" => network_mode = NetworkMode::None,
                            "bridge" => {}
                            other if other.starts_with("service:") => {
                                network_mode = NetworkMode::Service;
                                s.network_mode_service = Some(other["service:".len()..].to_string());
                            }
                            other => self.err(&p, format!(
                                "service `{name}`: network_mode `{other}` is not supported (host, bridge, none or service:NAME)"
                            )),
                        }
                    }
                }
                "networks" => networks_given = Some(self.service_networks(name, &p, v, networks)),
                "ports" => s.ports = self.ports(&p, v),
                "expose" => {
                    for (i, item) in self.texts(&p, &v).iter().enumerate() {
                        match scalar::exposed_ports(item) {
                            Ok(m) => s.expose.extend(m),
                            Err(e) => self.err(&format!("{p}[{i}]"), e),
                        }
                    }
                }
                "volumes" => {
                    let tmpfs;
                    (s.volumes, bind_features, tmpfs) = self.service_volumes(name, &p, v, volumes);
                    s.tmpfs.extend(tmpfs);
                }
                "privileged" => s.privileged = self.boolean(&p, &v).unwrap_or(false),
                "cap_add" => s.cap_add = self.texts(&p, &v),
                "cap_drop" => s.cap_drop = self.texts(&p, &v),
                "devices" => {
                    for (i, item) in self.texts(&p, &v).iter().enumerate() {
                        match device(item) {
                            Ok(d) => s.devices.push(d),
                            Err(e) => {
                                self.err(&format!("{p}[{i}]"), format!("service `{name}`: {e}"))
                            }
                        }
                    }
                }
                "ulimits" => {
                    for (lim, val) in self.entries(&p, v) {
                        if let Some(u) = self.ulimit(&format!("{p}.{lim}"), val) {
                            s.ulimits.insert(lim, u);
                        }
                    }
                }
                "tmpfs" => s.tmpfs.extend(self.texts(&p, &v)),
                "profiles" => {
                    for (i, profile) in self.texts(&p, &v).iter().enumerate() {
                        if !is_valid_name(profile) {
                            self.err(&format!("{p}[{i}]"), format!("service `{name}`: profile `{profile}` is not valid ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"));
                        }
                    }
                    self.profiled.insert(name.to_string());
                }
                "working_dir" => s.working_dir = self.text(&p, &v),
                "user" => s.user = self.text(&p, &v),
                "stop_signal" => s.stop_signal = self.text(&p, &v),
                "stop_grace_period" => s.stop_grace_period_ms = self.duration(&p, &v),
                "healthcheck" => s.healthcheck = self.healthcheck(&p, v),
                "mem_limit" => s.mem_limit = self.size(&p, &v),
                "cpu_shares" => s.cpu_shares = self.unsigned(&p, &v),
                "sysctls" => s.sysctls = self.dict(&p, v),
                "dns" => s.dns = self.texts(&p, &v),
                "extra_hosts" => {
                    s.extra_hosts = match v {
                        Value::Mapping(_) => self
                            .dict(&p, v)
                            .into_iter()
                            .map(|(h, ip)| format!("{h}:{ip}"))
                            .collect(),
                        v => self.texts(&p, &v),
                    }
                }
                "hostname" => s.hostname = self.text(&p, &v),
                "read_only" => s.read_only = self.boolean(&p, &v).unwrap_or(false),
                "security_opt" => {
                    s.security_opt = self.texts(&p, &v);
                    for (i, opt) in s.security_opt.iter().enumerate() {
                        if !is_supported_security_opt(opt) {
                            self.err(&format!("{p}[{i}]"), format!("service `{name}`: security_opt `{opt}` is not supported (balena refuses it too: no-new-privileges, apparmor or seccomp `unconfined` only)"));
                        }
                    }
                }
                "group_add" => s.group_add = self.texts(&p, &v),
                "init" => s.init = self.boolean(&p, &v),
                "tty" => s.tty = self.boolean(&p, &v).unwrap_or(false),
                "cgroup_parent" => s.cgroup_parent = self.text(&p, &v),
                "cpu_quota" => s.cpu_quota = self.integer(&p, &v),
                "cpuset" => s.cpuset = self.text(&p, &v),
                "dns_opt" => s.dns_opt = self.texts(&p, &v),
                "dns_search" => s.dns_search = self.texts(&p, &v),
                "domainname" => s.domainname = self.text(&p, &v),
                "ipc"
                    if self.project
                        && v.as_str().is_some_and(|m| m.trim().starts_with("service:")) =>
                {
                    self.err(
                        &p,
                        format!(
                            "service `{name}`: ipc `service:` is not supported by balena's builder"
                        ),
                    )
                }
                "ipc" => {
                    s.ipc =
                        self.namespace_mode(name, &p, &v, &["host", "private", "shareable", "none"])
                }
                "mac_address" => s.mac_address = self.text(&p, &v),
                "mem_reservation" => s.mem_reservation = self.size(&p, &v),
                "oom_score_adj" => match self.integer(&p, &v) {
                    Some(n) if (-1000..=1000).contains(&n) => s.oom_score_adj = Some(n),
                    Some(n) => self.err(
                        &p,
                        format!("service `{name}`: oom_score_adj {n} is outside -1000..1000"),
                    ),
                    None => {}
                },
                "pid" => s.pid = self.namespace_mode(name, &p, &v, &["host"]),
                "pids_limit" => match self.integer(&p, &v) {
                    Some(n) if n >= 0 => s.pids_limit = Some(n),
                    Some(n) => self.err(
                        &p,
                        format!(
                            "service `{name}`: pids_limit {n} is negative (balena refuses it too)"
                        ),
                    ),
                    None => {}
                },
                "shm_size" => s.shm_size = self.size(&p, &v),
                "userns_mode" => s.userns_mode = self.text(&p, &v),
                "volumes_from" => {
                    if self
                        .texts(&p, &v)
                        .iter()
                        .any(|f| f.starts_with("container:"))
                    {
                        self.err(&p, format!("service `{name}`: volumes_from `container:` is not supported (balena refuses it too)"));
                    } else {
                        self.ignore(&p, format!("service `{name}`: key `volumes_from` is not supported by this device: dropped, the rest applies"));
                    }
                }
                "build" => {
                    has_build = true;
                    if self.project {
                        self.build(name, &p, &v);
                    } else {
                        self.ignore(
                            &p,
                            format!("service `{name}`: `build` is for the builder: dropped, `image` runs"),
                        );
                    }
                }
                other => self.unknown(
                    &p,
                    &format!("service `{name}`"),
                    other,
                    BALENA_REFUSED_SERVICE_KEYS,
                ),
            }
        }
        match image {
            Some(i) if !i.trim().is_empty() => s.image = i,
            Some(_) => self.err(&format!("{base}.image"), format!("service `{name}`: image is empty")),
            None if self.project && has_build => self.ignore(
                &format!("{base}.build"),
                format!("service `{name}`: `build` without `image`: the builder makes its image (checked as if it had one)"),
            ),
            None => self.err(&format!("{base}.image"), format!("service `{name}`: missing `image` (builds happen before a release, not on the device)")),
        }
        if network_mode != NetworkMode::Bridge {
            s.network_mode = network_mode;
            s.networks.clear();
            if networks_given.as_ref().is_some_and(|n| !n.is_empty()) {
                self.err(
                    &format!("{base}.networks"),
                    format!(
                        "service `{name}`: `networks` cannot be combined with network_mode {}",
                        network_mode.name()
                    ),
                );
            }
        } else if let Some(n) = networks_given
            && !n.is_empty()
        {
            s.networks = n;
        }
        // Host paths balena allows become its feature labels, as balena's parser does.
        for feature in bind_features {
            s.labels
                .entry(format!("io.balena.features.{feature}"))
                .or_insert_with(|| "1".to_string());
        }
        for problem in labels::check(&s.labels) {
            self.err(
                &format!("{base}.labels.{}", problem.0),
                format!("service `{name}`: {}", problem.1),
            );
        }
        for (key, reason) in labels::warnings(&s.labels) {
            self.ignore(
                &format!("{base}.labels.{key}"),
                format!("service `{name}`: {reason}"),
            );
        }
        Some(s)
    }

    /// `ports`: short strings (`[ip:]host[-range]:container[-range][/proto]`) or the long
    /// syntax (`target`, `published` number or range, `host_ip`, `protocol`; `mode`,
    /// `name`, `app_protocol` describe the port and change nothing on one engine).
    fn ports(&mut self, path: &str, v: Value) -> Vec<super::PortMapping> {
        let Value::Sequence(items) = v else {
            self.err(path, format!("expected a list, found {}", kind(&v)));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let p = format!("{path}[{i}]");
            let short = match item {
                Value::Mapping(_) => self.long_port(&p, item),
                other => self.text(&p, &other),
            };
            if let Some(short) = short {
                match scalar::port_mappings(&short) {
                    Ok(m) => out.extend(m),
                    Err(e) => self.err(&p, e),
                }
            }
        }
        out
    }

    /// A long-syntax port as the equivalent short string.
    fn long_port(&mut self, path: &str, v: Value) -> Option<String> {
        let (mut target, mut published, mut host_ip, mut protocol) = (None, None, None, None);
        for (key, val) in self.entries(path, v) {
            let p = format!("{path}.{key}");
            match key.as_str() {
                "target" => target = self.text(&p, &val),
                "published" => published = self.text(&p, &val),
                "host_ip" => host_ip = self.text(&p, &val),
                "protocol" => protocol = self.text(&p, &val),
                "mode" | "name" | "app_protocol" => {}
                other => self.unknown(&p, "port", other, &[]),
            }
        }
        let Some(target) = target else {
            self.err(path, "a long-syntax port needs `target`");
            return None;
        };
        let mut short = match (host_ip, published) {
            (Some(ip), Some(p)) if ip.contains(':') => format!("[{ip}]:{p}:{target}"),
            (Some(ip), Some(p)) => format!("{ip}:{p}:{target}"),
            (Some(ip), None) => format!("{ip}::{target}"),
            (None, Some(p)) => format!("{p}:{target}"),
            (None, None) => target,
        };
        if let Some(proto) = protocol {
            short = format!("{short}/{proto}");
        }
        Some(short)
    }

    fn depends_on(&mut self, path: &str, v: Value) -> Vec<String> {
        match v {
            Value::Mapping(_) => {
                let mut out = Vec::new();
                for (dep, cond) in self.entries(path, v) {
                    let p = format!("{path}.{dep}");
                    for (key, val) in self.entries(&p, cond) {
                        match (key.as_str(), val.as_str()) {
                            ("condition", Some("service_started")) => {}
                            // balena's builder turns only `service_started`, required, into its
                            // short form and refuses the rest.
                            ("condition", Some(c)) if self.project => self.err(
                                &format!("{p}.condition"),
                                format!("depends_on `{dep}`: condition `{c}` is not supported by balena's builder (service_started only)"),
                            ),
                            ("required", Some(_) | None) if self.project && val.as_bool() == Some(false) => self.err(
                                &format!("{p}.required"),
                                format!("depends_on `{dep}`: `required: false` is not supported by balena's builder"),
                            ),
                            ("required" | "restart", _) if self.project => {}
                            ("condition", Some(c @ ("service_healthy" | "service_completed_successfully"))) => self.ignore(
                                &format!("{p}.condition"),
                                format!("`{c}` is accepted but not waited for: services are only started in dependency order"),
                            ),
                            ("condition", _) => self.err(
                                &format!("{p}.condition"),
                                "expected service_started, service_healthy or service_completed_successfully",
                            ),
                            (other, _) => {
                                self.unknown(&format!("{p}.{other}"), "depends_on", other, &[])
                            }
                        }
                    }
                    out.push(dep);
                }
                out
            }
            v => self.texts(path, &v),
        }
    }

    fn service_networks(
        &mut self,
        service: &str,
        path: &str,
        v: Value,
        declared: &BTreeSet<String>,
    ) -> BTreeMap<String, NetworkAttachment> {
        let mut out = BTreeMap::new();
        let check = |w: &mut Walker, name: &str, p: &str| {
            if !declared.contains(name) {
                w.err(p, format!("service `{service}`: network `{name}` is not declared under top-level `networks`"));
            }
        };
        match v {
            Value::Sequence(_) => {
                for (i, n) in self.texts(path, &v).into_iter().enumerate() {
                    check(self, &n, &format!("{path}[{i}]"));
                    out.insert(n, NetworkAttachment::default());
                }
            }
            v => {
                for (n, spec) in self.entries(path, v) {
                    let p = format!("{path}.{n}");
                    check(self, &n, &p);
                    let mut att = NetworkAttachment::default();
                    for (key, val) in self.entries(&p, spec) {
                        let kp = format!("{p}.{key}");
                        match key.as_str() {
                            "aliases" => att.aliases = self.texts(&kp, &val),
                            "ipv4_address" => att.ipv4_address = self.text(&kp, &val),
                            other => self.unknown(
                                &kp,
                                &format!("service `{service}`"),
                                other,
                                BALENA_REFUSED_OTHER_KEYS,
                            ),
                        }
                    }
                    out.insert(n, att);
                }
            }
        }
        out
    }

    fn service_volumes(
        &mut self,
        service: &str,
        path: &str,
        v: Value,
        declared: &BTreeSet<String>,
    ) -> (Vec<VolumeMount>, Vec<&'static str>, Vec<String>) {
        let Value::Sequence(items) = v else {
            self.err(
                path,
                format!("service `{service}`: expected a list, found {}", kind(&v)),
            );
            return (Vec::new(), Vec::new(), Vec::new());
        };
        let mut out = Vec::new();
        let mut features = Vec::new();
        let mut tmpfs = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let p = format!("{path}[{i}]");
            if let Some(feature) = feature_bind(&item) {
                features.push(feature);
                continue;
            }
            // `type: tmpfs` is a tmpfs mount at `target`, as the `tmpfs` key makes it; its
            // options (size, mode) have no short form: balena refuses them, not drops them.
            if let Value::Mapping(m) = &item
                && m.get(Value::String("type".into())).and_then(Value::as_str) == Some("tmpfs")
            {
                if m.get(Value::String("tmpfs".into()))
                    .is_some_and(|o| o.as_mapping().is_some_and(|o| !o.is_empty()))
                {
                    self.err(&p, format!("service `{service}`: tmpfs options (`tmpfs: {{size, mode}}`) are not supported (balena refuses long-syntax volume options too)"));
                    continue;
                }
                match m
                    .get(Value::String("target".into()))
                    .and_then(Value::as_str)
                {
                    Some(t) if t.starts_with('/') => tmpfs.push(t.to_string()),
                    _ => self.err(
                        &p,
                        format!("service `{service}`: a tmpfs mount needs an absolute `target`"),
                    ),
                }
                continue;
            }
            let parsed = match item {
                Value::String(s) => short_volume(&s),
                Value::Mapping(_) => self.long_volume(&p, item),
                other => Err(format!(
                    "expected a string or a mapping, found {}",
                    kind(&other)
                )),
            };
            match parsed {
                Ok(m) => {
                    if !declared.contains(&m.volume) && m.volume != LEGACY_DATA_VOLUME {
                        self.err(&p, format!(
                            "service `{service}`: volume `{}` is not declared under top-level `volumes`",
                            m.volume
                        ));
                    }
                    if !m.target.starts_with('/') {
                        self.err(
                            &p,
                            format!(
                                "service `{service}`: mount target `{}` is not an absolute path",
                                m.target
                            ),
                        );
                    }
                    out.push(m);
                }
                Err(e) => self.err(&p, format!("service `{service}`: {e}")),
            }
        }
        (out, features, tmpfs)
    }

    fn long_volume(&mut self, path: &str, v: Value) -> Result<VolumeMount, String> {
        let (mut kind_, mut source, mut target, mut read_only) = (None, None, None, false);
        for (key, val) in self.entries(path, v) {
            let p = format!("{path}.{key}");
            match key.as_str() {
                "type" => kind_ = self.text(&p, &val),
                "source" => source = self.text(&p, &val),
                "target" => target = self.text(&p, &val),
                "read_only" => read_only = self.boolean(&p, &val).unwrap_or(false),
                other => return Err(format!("unsupported key `{other}` in a volume entry")),
            }
        }
        match kind_.as_deref() {
            None | Some("volume") => {}
            Some("bind") => {
                return Err(format!(
                    "bind mount of `{}` refused: only named volumes are supported",
                    source.unwrap_or_default()
                ));
            }
            Some(other) => {
                return Err(format!(
                    "volume type `{other}` is not supported (volume only)"
                ));
            }
        }
        let target = target.ok_or("volume entry without `target`")?;
        match source {
            Some(src) if is_host_path(&src) => Err(format!(
                "bind mount of `{src}` refused: only named volumes are supported"
            )),
            Some(src) if !src.is_empty() => Ok(VolumeMount {
                volume: src,
                target,
                read_only,
            }),
            _ => Err(format!(
                "anonymous volume at `{target}` refused: name the volume"
            )),
        }
    }

    fn ulimit(&mut self, path: &str, v: Value) -> Option<Ulimit> {
        match v {
            Value::Number(n) => match n.as_i64() {
                Some(n) => Some(Ulimit { soft: n, hard: n }),
                None => {
                    self.err(path, "expected an integer");
                    None
                }
            },
            v => {
                let (mut soft, mut hard) = (None, None);
                for (key, val) in self.entries(path, v) {
                    let p = format!("{path}.{key}");
                    let n = val.as_i64();
                    if n.is_none() {
                        self.err(&p, "expected an integer");
                    }
                    match key.as_str() {
                        "soft" => soft = n,
                        "hard" => hard = n,
                        other => self.err(&p, format!("unsupported key `{other}` (soft or hard)")),
                    }
                }
                match (soft, hard) {
                    (Some(soft), Some(hard)) if soft <= hard => Some(Ulimit { soft, hard }),
                    (Some(_), Some(_)) => {
                        self.err(path, "soft limit is above the hard limit");
                        None
                    }
                    _ => {
                        self.err(path, "needs both `soft` and `hard`");
                        None
                    }
                }
            }
        }
    }

    fn healthcheck(&mut self, path: &str, v: Value) -> Option<Healthcheck> {
        let mut hc = Healthcheck {
            test: Vec::new(),
            interval_ms: None,
            timeout_ms: None,
            start_period_ms: None,
            retries: None,
        };
        let mut disable = false;
        for (key, val) in self.entries(path, v) {
            let p = format!("{path}.{key}");
            match key.as_str() {
                "test" => {
                    hc.test = match &val {
                        Value::String(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                        _ => self.texts(&p, &val),
                    };
                    if !matches!(
                        hc.test.first().map(String::as_str),
                        Some("NONE" | "CMD" | "CMD-SHELL")
                    ) {
                        self.err(&p, "a test list starts with NONE, CMD or CMD-SHELL");
                    }
                }
                "interval" => hc.interval_ms = self.duration(&p, &val),
                "timeout" => hc.timeout_ms = self.duration(&p, &val),
                "start_period" => hc.start_period_ms = self.duration(&p, &val),
                "retries" => {
                    hc.retries = self.unsigned(&p, &val).and_then(|n| u32::try_from(n).ok())
                }
                "disable" => disable = self.boolean(&p, &val).unwrap_or(false),
                other => self.unknown(&p, "healthcheck", other, &[]),
            }
        }
        if disable {
            hc.test = vec!["NONE".to_string()];
        }
        Some(hc)
    }

    /// `service:NAME` in `network_mode`, `ipc` and `pid`: NAME must be another service of the
    /// file, and it is started first (an implicit `depends_on`, as docker-compose does).
    fn link_service_namespaces(&mut self, services: &mut BTreeMap<String, Service>) {
        let names: BTreeSet<String> = services.keys().cloned().collect();
        for (name, s) in services.iter_mut() {
            let wanted = [
                ("network_mode", s.network_mode_service.clone()),
                (
                    "ipc",
                    s.ipc
                        .as_ref()
                        .and_then(|m| m.strip_prefix("service:"))
                        .map(str::to_string),
                ),
                (
                    "pid",
                    s.pid
                        .as_ref()
                        .and_then(|m| m.strip_prefix("service:"))
                        .map(str::to_string),
                ),
            ];
            for (key, other) in wanted {
                let Some(other) = other else { continue };
                if other == *name || !names.contains(&other) {
                    self.err(
                        &format!("services.{name}.{key}"),
                        format!("service `{name}`: `service:{other}` does not name another service of the file"),
                    );
                } else if !s.depends_on.contains(&other) {
                    s.depends_on.push(other);
                }
            }
        }
    }

    fn check_depends_on(&mut self, services: &BTreeMap<String, Service>) {
        for (name, s) in services {
            for (i, dep) in s.depends_on.iter().enumerate() {
                if !services.contains_key(dep) {
                    self.err(
                        &format!("services.{name}.depends_on[{i}]"),
                        format!("service `{name}` depends on unknown service `{dep}`"),
                    );
                } else if dep == name {
                    self.err(
                        &format!("services.{name}.depends_on[{i}]"),
                        format!("service `{name}` depends on itself"),
                    );
                }
            }
        }
        if let Err(cycle) = start_order(services) {
            self.err(
                "services",
                format!("depends_on forms a cycle through {}", cycle.join(", ")),
            );
        }
    }
}

/// Services in an order where each comes after everything it depends on (ties by name);
/// `Err` lists the services caught in a cycle. Unknown dependencies are ignored here.
pub fn start_order(services: &BTreeMap<String, Service>) -> Result<Vec<String>, Vec<String>> {
    let mut order = Vec::new();
    let mut placed = BTreeSet::new();
    while placed.len() < services.len() {
        let ready: Vec<&String> = services
            .iter()
            .filter(|(n, s)| {
                !placed.contains(*n)
                    && s.depends_on
                        .iter()
                        .all(|d| placed.contains(d) || !services.contains_key(d) || d == *n)
            })
            .map(|(n, _)| n)
            .collect();
        if ready.is_empty() {
            return Err(services
                .keys()
                .filter(|n| !placed.contains(*n))
                .cloned()
                .collect());
        }
        for n in ready {
            placed.insert(n.clone());
            order.push(n.clone());
        }
    }
    Ok(order)
}

/// The feature a bind mount of a host path stands for, as balena's compose parser turns
/// the binds it allows into labels: engine socket, D-Bus, /sys, /proc, kernel modules,
/// firmware, the journal.
fn feature_bind(item: &Value) -> Option<&'static str> {
    let source = match item {
        Value::String(s) => s.split(':').next()?.to_string(),
        Value::Mapping(m) => {
            let get = |k: &str| m.get(Value::String(k.to_string())).and_then(Value::as_str);
            if get("type") != Some("bind") {
                return None;
            }
            get("source")?.to_string()
        }
        _ => return None,
    };
    Some(match source.trim_end_matches('/') {
        "/var/run/docker.sock"
        | "/run/docker.sock"
        | "/var/run/balena-engine.sock"
        | "/run/balena-engine.sock"
        | "/var/run/balena.sock" => "balena-socket",
        "/run/dbus" | "/var/run/dbus" => "dbus",
        "/sys" => "sysfs",
        "/proc" => "procfs",
        "/lib/modules" => "kernel-modules",
        "/lib/firmware" => "firmware",
        "/var/log/journal" | "/run/log/journal" | "/etc/machine-id" => "journal-logs",
        _ => return None,
    })
}

/// The `security_opt` values balena's parser accepts: the ones that need no file or
/// label policy on the device.
fn is_supported_security_opt(opt: &str) -> bool {
    let (key, value) = match opt.split_once([':', '=']) {
        Some((k, v)) => (k, Some(v)),
        None => (opt, None),
    };
    match key {
        "no-new-privileges" => matches!(value, None | Some("true" | "false")),
        "apparmor" | "seccomp" => value == Some("unconfined"),
        _ => false,
    }
}

fn is_host_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('.') || s.starts_with('~') || s.starts_with('$')
}

/// `name:/path[:ro|rw]` → named volume mount; host paths are refused.
fn short_volume(s: &str) -> Result<VolumeMount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => {
            return Err(format!(
                "anonymous volume at `{t}` refused: name the volume"
            ));
        }
        [s, t] => (*s, *t, None),
        [s, t, m] => (*s, *t, Some(*m)),
        _ => return Err(format!("`{s}` is not SOURCE:TARGET[:MODE]")),
    };
    if is_host_path(source) {
        return Err(format!(
            "bind mount of `{source}` refused: only named volumes are supported"
        ));
    }
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(m) => return Err(format!("volume mode `{m}` is not ro or rw")),
    };
    Ok(VolumeMount {
        volume: source.to_string(),
        target: target.to_string(),
        read_only,
    })
}

/// `/dev/x[:/dev/y[:rwm]]` → device mapping.
fn device(s: &str) -> Result<DeviceMapping, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(format!("`{s}` is not HOST[:CONTAINER[:PERMISSIONS]]")),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(format!("device `{s}`: paths must be absolute"));
    }
    if permissions.is_empty() || !permissions.chars().all(|c| "rwm".contains(c)) {
        return Err(format!(
            "device `{s}`: permissions `{permissions}` are not a subset of rwm"
        ));
    }
    Ok(DeviceMapping {
        host: host.to_string(),
        container: container.to_string(),
        permissions: permissions.to_string(),
    })
}
