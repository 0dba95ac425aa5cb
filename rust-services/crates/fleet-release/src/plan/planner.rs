//! Current + target → ordered steps.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::desired::{ContainerConfig, desired_containers};
use super::model::{Container, ContainerStatus, CurrentState, Owned};
use crate::compose::{NetworkOptions, VolumeOptions};
use crate::labels::{HostContext, UpdateStrategy};
use crate::target_state::TargetState;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Update even where the app holds its update lock.
    pub force: bool,
}

/// One action on the engine. Containers are named by their engine name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Pull the image, or load it when it is available locally.
    FetchImage {
        image: String,
    },
    /// Delete an image no container uses (delete-then-download).
    RemoveImage {
        image: String,
    },
    CreateNetwork {
        network: Owned,
        /// `driver_opts`, `labels`, `internal`, `enable_ipv6`, `ipam` from the compose file.
        #[serde(skip_serializing_if = "is_default")]
        options: NetworkOptions,
    },
    RemoveNetwork {
        network: Owned,
    },
    CreateVolume {
        volume: Owned,
        /// `driver_opts` and `labels` from the compose file.
        #[serde(skip_serializing_if = "is_default")]
        options: VolumeOptions,
    },
    /// Stop a running container (stop signal, then kill after the grace period).
    Stop {
        container: String,
    },
    Remove {
        container: String,
    },
    Create {
        config: Box<ContainerConfig>,
    },
    Start {
        container: String,
    },
    /// Give a container whose configuration is current its balena name (one created
    /// under an older naming), so balena's tools find it; it keeps running.
    Rename {
        container: String,
        to: String,
    },
    /// Hand-over: wait until the new container signals it took over (the
    /// `handover-complete` file in the lock directory) or `timeout_ms` passed, then stop
    /// the old one.
    HandoverKill {
        container: String,
        timeout_ms: u64,
    },
}

/// An update the planner held back because the app holds its update lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub app: String,
    pub service: String,
    pub container: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub held: Vec<Held>,
}

impl Plan {
    /// No steps and nothing held: the device is at the target.
    pub fn is_converged(&self) -> bool {
        self.steps.is_empty() && self.held.is_empty()
    }
}

struct Builder<'a> {
    steps: Vec<Step>,
    held: Vec<Held>,
    images: BTreeSet<String>,
    current: &'a CurrentState,
    options: PlanOptions,
}

impl Builder<'_> {
    fn fetch(&mut self, image: &str) {
        if self.images.insert(image.to_string()) {
            self.steps.push(Step::FetchImage {
                image: image.to_string(),
            });
        }
    }

    fn locked(&self, app: &str) -> bool {
        !self.options.force && self.current.locked_apps.contains(app)
    }

    /// Whether replacing these containers would kill a running one of a locked app; if so
    /// they are recorded as held.
    fn hold_if_locked(&mut self, app: &str, olds: &[&Container]) -> bool {
        if !self.locked(app) {
            return false;
        }
        let running: Vec<&&Container> = olds
            .iter()
            .filter(|c| c.status == ContainerStatus::Running)
            .collect();
        for c in &running {
            self.held.push(Held {
                app: c.app.clone(),
                service: c.service.clone(),
                container: c.name.clone(),
            });
        }
        !running.is_empty()
    }

    fn stop_and_remove(&mut self, c: &Container) {
        if c.status == ContainerStatus::Running {
            self.steps.push(Step::Stop {
                container: c.name.clone(),
            });
        }
        self.steps.push(Step::Remove {
            container: c.name.clone(),
        });
    }

    fn create_and_start(&mut self, config: &ContainerConfig) {
        self.fetch(&config.spec.image);
        self.steps.push(Step::Create {
            config: Box::new(config.clone()),
        });
        self.steps.push(Step::Start {
            container: config.name.clone(),
        });
    }
}

/// The steps from `current` to `target`. Pure: reads nothing but its arguments.
pub fn plan(
    current: &CurrentState,
    target: &TargetState,
    host: &HostContext,
    options: PlanOptions,
) -> Plan {
    let desired = desired_containers(target, host);
    let desired_keys: BTreeSet<(&str, &str)> = desired
        .iter()
        .map(|d| (d.app.as_str(), d.service.as_str()))
        .collect();
    let wanted_images: BTreeSet<&str> = desired.iter().map(|d| d.spec.image.as_str()).collect();
    let mut b = Builder {
        steps: Vec::new(),
        held: Vec::new(),
        images: current.images.clone(),
        current,
        options,
    };

    // 1. Networks and volumes of every target app.
    for app in target.apps.values() {
        let Some(release) = &app.release else {
            continue;
        };
        for n in &release.compose.networks {
            let network = Owned::new(&app.uuid, n);
            if !current.networks.contains(&network) {
                let options = release.compose.network_options.get(n).cloned();
                b.steps.push(Step::CreateNetwork {
                    network,
                    options: options.unwrap_or_default(),
                });
            }
        }
        for v in &release.compose.volumes {
            let volume = Owned::new(&app.uuid, v);
            if !current.volumes.contains(&volume) {
                let options = release.compose.volume_options.get(v).cloned();
                b.steps.push(Step::CreateVolume {
                    volume,
                    options: options.unwrap_or_default(),
                });
            }
        }
    }

    // 2. Images fetched before anything is killed (download-first strategies and new
    //    services), so a failed download leaves the running app untouched.
    let mut by_service: BTreeMap<(&str, &str), Vec<&Container>> = BTreeMap::new();
    for c in &current.containers {
        by_service
            .entry((c.app.as_str(), c.service.as_str()))
            .or_default()
            .push(c);
    }
    for d in &desired {
        let has_old = by_service
            .get(&(d.app.as_str(), d.service.as_str()))
            .is_some_and(|cs| cs.iter().any(|c| c.digest != d.digest));
        if !has_old
            || matches!(
                d.strategy,
                UpdateStrategy::DownloadThenKill | UpdateStrategy::HandOver
            )
        {
            b.fetch(&d.spec.image);
        }
    }

    // 3. Containers of services no longer in the target.
    let mut obsolete: BTreeMap<&str, Vec<&Container>> = BTreeMap::new();
    for c in &current.containers {
        if !desired_keys.contains(&(c.app.as_str(), c.service.as_str())) {
            obsolete.entry(c.app.as_str()).or_default().push(c);
        }
    }
    for (app, cs) in &obsolete {
        if b.hold_if_locked(app, cs) {
            continue;
        }
        for c in cs {
            b.stop_and_remove(c);
        }
    }

    // 4. Each target service, apps in order and services in depends_on order.
    let mut renames = Vec::new();
    for d in &desired {
        let mut cs: Vec<&Container> = by_service
            .get(&(d.app.as_str(), d.service.as_str()))
            .cloned()
            .unwrap_or_default();
        // Prefer the running one when several match (a hand-over interrupted mid-way).
        cs.sort_by_key(|c| (c.status != ContainerStatus::Running, c.name.clone()));
        let keep = cs.iter().find(|c| c.digest == d.digest).copied();
        let olds: Vec<&Container> = cs
            .iter()
            .filter(|c| keep.is_none_or(|k| k.name != c.name))
            .copied()
            .collect();
        let rename = keep.filter(|k| k.name != d.name).map(|k| {
            (
                d.app.as_str(),
                Step::Rename {
                    container: k.name.clone(),
                    to: d.name.clone(),
                },
            )
        });

        if olds.is_empty() {
            renames.extend(rename);
            match keep {
                Some(k) if k.status == ContainerStatus::Created => b.steps.push(Step::Start {
                    container: k.name.clone(),
                }),
                Some(_) => {}
                None => b.create_and_start(d),
            }
            continue;
        }
        if b.hold_if_locked(&d.app, &olds) {
            continue;
        }
        renames.extend(rename);
        match d.strategy {
            UpdateStrategy::HandOver => {
                // A change inside one release (variables, config) keeps balena's container
                // name, and two containers cannot share a name: that old one goes first, as
                // with download-then-kill (the image is fetched already).
                let (same_name, olds): (Vec<&Container>, Vec<&Container>) =
                    olds.into_iter().partition(|c| c.name == d.name);
                for c in &same_name {
                    b.stop_and_remove(c);
                }
                match keep {
                    None => b.create_and_start(d),
                    Some(k) if k.status == ContainerStatus::Created => b.steps.push(Step::Start {
                        container: k.name.clone(),
                    }),
                    Some(_) => {}
                }
                for c in &olds {
                    if c.status == ContainerStatus::Running {
                        b.steps.push(Step::HandoverKill {
                            container: c.name.clone(),
                            timeout_ms: d.handover_timeout_ms,
                        });
                    }
                    b.steps.push(Step::Remove {
                        container: c.name.clone(),
                    });
                }
            }
            strategy => {
                for c in &olds {
                    b.stop_and_remove(c);
                }
                if strategy == UpdateStrategy::DeleteThenDownload {
                    let old_names: BTreeSet<&str> = olds.iter().map(|c| c.name.as_str()).collect();
                    let old_images: BTreeSet<&str> =
                        olds.iter().map(|c| c.image.as_str()).collect();
                    for image in old_images {
                        let used_elsewhere = current
                            .containers
                            .iter()
                            .any(|c| c.image == image && !old_names.contains(c.name.as_str()));
                        if !used_elsewhere
                            && !wanted_images.contains(image)
                            && b.images.remove(image)
                        {
                            b.steps.push(Step::RemoveImage {
                                image: image.to_string(),
                            });
                        }
                    }
                }
                match keep {
                    None => b.create_and_start(d),
                    Some(k) if k.status == ContainerStatus::Created => b.steps.push(Step::Start {
                        container: k.name.clone(),
                    }),
                    Some(_) => {}
                }
            }
        }
    }

    // 5. A container kept as it is but named otherwise (an unchanged service of a new
    //    release, or one created under an older naming) gets balena's name, as balena's
    //    metadata update does; by now any container that held the name is gone.
    //    An app holding back an update is left entirely as it is.
    let held_apps: BTreeSet<String> = b.held.iter().map(|h| h.app.clone()).collect();
    let renames: Vec<Step> = renames
        .into_iter()
        .filter(|(app, _)| !held_apps.contains(*app))
        .map(|(_, step)| step)
        .collect();
    b.steps.extend(renames);

    // 6. Networks nothing will use any more (volumes are kept: they hold the user's data).
    for network in &current.networks {
        let wanted = target
            .apps
            .get(&network.app)
            .and_then(|a| a.release.as_ref())
            .is_some_and(|r| r.compose.networks.contains(&network.name));
        if !wanted && !held_apps.contains(&network.app) {
            b.steps.push(Step::RemoveNetwork {
                network: network.clone(),
            });
        }
    }

    Plan {
        steps: b.steps,
        held: b.held,
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
