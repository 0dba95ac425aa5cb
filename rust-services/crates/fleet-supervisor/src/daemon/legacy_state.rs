//! balena's per-image view of the apps (its `applicationManager.getLegacyState`), behind
//! `GET /v1/device` and `GET /v2/applications/:appId/state`, and the target services the v3
//! state report lists before they have a container (`Downloading`, `Downloaded`).
//!
//! balena keys the view by numeric app id, then image id, and JavaScript walks integer keys
//! in ascending order: "the first service" of `/v1/device` is the lowest image id of the
//! lowest app id, whichever release it belongs to. A container is entered first; an image
//! (pulling, or present with no container of its image id) only where no container has its
//! image id. Two containers with one image id are a hand-over (`Handing over`, the older
//! release's id; balena takes the older by creation time, here the lower release id, which
//! balena's API hands out in creation order).

use std::collections::{BTreeMap, BTreeSet};

use fleet_release::target_state::TargetState;

use super::{Downloads, ServiceState};

/// balena's service status for the engine's container status (`Service.fromDockerContainer`:
/// the engine's `State.Running` — running, restarting, paused — is `Running`).
pub fn status_word(engine: &str) -> &str {
    match engine {
        "running" | "restarting" | "paused" => "Running",
        "created" => "Installed",
        "dead" => "Dead",
        other => other,
    }
}

/// One service of the legacy view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub status: String,
    pub release_id: Option<u64>,
    /// `Some` only for a pull under way.
    pub download_progress: Option<u8>,
}

/// Where a target service's image is, when the service has no container of its release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageState {
    /// Being pulled: whole percent.
    Pulling(u8),
    /// On the engine.
    Present,
    /// Neither (not fetched yet, or its fetch failed).
    Missing,
}

/// A target service without a container of the target release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub app_uuid: String,
    pub app_id: u64,
    pub service: String,
    pub release_uuid: String,
    pub release_id: u64,
    pub image: String,
    pub image_id: u64,
    pub state: ImageState,
}

/// The target services that have no container of the target release, and where their image is.
pub fn pending(
    target: Option<&TargetState>,
    states: &[ServiceState],
    downloads: &Downloads,
    present: &BTreeSet<String>,
) -> Vec<Pending> {
    let mut out = Vec::new();
    let Some(target) = target else {
        return out;
    };
    for app in target.apps.values() {
        let Some(release) = &app.release else {
            continue;
        };
        for (name, service) in &release.compose.services {
            let has_container = states
                .iter()
                .any(|s| s.app == app.uuid && s.service == *name && s.release == release.uuid);
            if has_container {
                continue;
            }
            let image = service.image.clone();
            let state = match downloads.pulling.get(&image) {
                Some(percent) => ImageState::Pulling(*percent),
                None if present.contains(&image) => ImageState::Present,
                None => ImageState::Missing,
            };
            out.push(Pending {
                app_uuid: app.uuid.clone(),
                app_id: app.id,
                service: name.clone(),
                release_uuid: release.uuid.clone(),
                release_id: release.id,
                image,
                image_id: release.image_ids.get(name).copied().unwrap_or(0),
                state,
            });
        }
    }
    out
}

/// app id → image id → entry, both in ascending order as balena's walk sees them.
pub fn apps(
    target: Option<&TargetState>,
    states: &[ServiceState],
    pending: &[Pending],
) -> BTreeMap<u64, BTreeMap<u64, Entry>> {
    let mut apps: BTreeMap<u64, BTreeMap<u64, Entry>> = BTreeMap::new();
    let target_app_id = |uuid: &str| target.and_then(|t| t.apps.get(uuid)).map(|a| a.id);
    for s in states {
        // A container not named as the supervisor names them: its ids from the target.
        let ids = s.ids.or_else(|| {
            let app = target.and_then(|t| t.apps.get(&s.app))?;
            let release = app.release.as_ref().filter(|r| r.uuid == s.release)?;
            Some(super::LegacyIds {
                app_id: app.id,
                image_id: release.image_ids.get(&s.service).copied().unwrap_or(0),
                release_id: release.id,
            })
        });
        let Some(app_id) = ids.map(|i| i.app_id).or_else(|| target_app_id(&s.app)) else {
            continue;
        };
        let image_id = ids.map_or(0, |i| i.image_id);
        let release_id = ids.map(|i| i.release_id);
        let services = apps.entry(app_id).or_default();
        match services.get_mut(&image_id) {
            None => {
                services.insert(
                    image_id,
                    Entry {
                        status: status_word(&s.status).to_string(),
                        release_id,
                        download_progress: None,
                    },
                );
            }
            Some(first) => {
                first.status = "Handing over".into();
                first.release_id = match (first.release_id, release_id) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    for p in pending {
        let (status, download_progress) = match p.state {
            ImageState::Pulling(percent) => ("Downloading", Some(percent)),
            ImageState::Present => ("Downloaded", None),
            // balena's legacy view lists only images it has or is pulling.
            ImageState::Missing => continue,
        };
        apps.entry(p.app_id)
            .or_default()
            .entry(p.image_id)
            .or_insert_with(|| Entry {
                status: status.into(),
                release_id: Some(p.release_id),
                download_progress,
            });
    }
    apps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::LegacyIds;

    /// Two apps (ids 9 and 4); app 4's release 20 has `web` (image 31) and `api` (image 12).
    fn target() -> TargetState {
        let doc = serde_json::json!({ "dev": { "apps": {
            "appnine": { "id": 9, "name": "nine", "releases": { "r9": { "id": 90,
                "composition": { "services": { "one": { "image": "reg/one" } } },
                "services": { "one": { "image_id": 1 } } } } },
            "appfour": { "id": 4, "name": "four", "releases": { "r20": { "id": 20,
                "composition": { "services": {
                    "web": { "image": "reg/web:2" }, "api": { "image": "reg/api:2" } } },
                "services": { "web": { "image_id": 31 }, "api": { "image_id": 12 } } } } }
        } } });
        fleet_release::target_state::parse(doc.to_string().as_bytes()).unwrap()
    }

    fn container(app: &str, service: &str, release: &str, ids: (u64, u64, u64)) -> ServiceState {
        ServiceState {
            app: app.into(),
            service: service.into(),
            release: release.into(),
            image: format!("reg/{service}"),
            container_id: format!("{service}-{release}"),
            status: "running".into(),
            restart_count: 0,
            ids: Some(LegacyIds {
                app_id: ids.0,
                image_id: ids.1,
                release_id: ids.2,
            }),
        }
    }

    fn first(apps: &BTreeMap<u64, BTreeMap<u64, Entry>>) -> (u64, u64, Entry) {
        let (app, services) = apps.iter().next().unwrap();
        let (image, e) = services.iter().next().unwrap();
        (*app, *image, e.clone())
    }

    #[test]
    fn the_first_service_is_the_lowest_image_id_of_the_lowest_app_id() {
        let t = target();
        // Release 19 of app 4 runs web (image 30) and api (image 11); app 9 runs too.
        let states = vec![
            container("appnine", "one", "r9", (9, 1, 90)),
            container("appfour", "web", "r19", (4, 30, 19)),
            container("appfour", "api", "r19", (4, 11, 19)),
        ];
        let mut downloads = Downloads::default();
        downloads.pulling.insert("reg/api:2".into(), 40);
        downloads.pulling.insert("reg/web:2".into(), 70);
        let pending = super::pending(Some(&t), &states, &downloads, &BTreeSet::new());
        let view = super::apps(Some(&t), &states, &pending);
        // App 4 before app 9; image 11 (running api) before 12 (the api being pulled).
        assert_eq!(
            first(&view),
            (
                4,
                11,
                Entry {
                    status: "Running".into(),
                    release_id: Some(19),
                    download_progress: None
                }
            )
        );
        assert_eq!(
            view[&4][&12],
            Entry {
                status: "Downloading".into(),
                release_id: Some(20),
                download_progress: Some(40)
            }
        );
        // Release 19's api gone (killed before its download): the pull is the first service.
        let states = vec![
            container("appnine", "one", "r9", (9, 1, 90)),
            container("appfour", "web", "r19", (4, 30, 19)),
        ];
        let pending = super::pending(Some(&t), &states, &downloads, &BTreeSet::new());
        let (app, image, e) = first(&super::apps(Some(&t), &states, &pending));
        assert_eq!((app, image, e.status.as_str()), (4, 12, "Downloading"));
        assert_eq!(e.download_progress, Some(40));
    }

    #[test]
    fn present_images_count_missing_ones_do_not_and_two_containers_hand_over() {
        let t = target();
        let states = vec![container("appfour", "web", "r19", (4, 31, 19))];
        let present = BTreeSet::from(["reg/api:2".to_string()]);
        let pending = super::pending(Some(&t), &states, &Downloads::default(), &present);
        // web of r20 has no container (r19's runs), api neither: api is there, web is not.
        assert_eq!(pending.len(), 3, "{pending:?}");
        let view = super::apps(Some(&t), &states, &pending);
        assert_eq!(view[&4][&12].status, "Downloaded");
        assert_eq!(
            view[&4][&31].status, "Running",
            "the container wins its image id"
        );
        assert!(
            !view.contains_key(&9),
            "app 9's image is neither pulled nor present"
        );
        // The same image id in two releases: a hand-over, reported with the older release.
        let states = vec![
            container("appfour", "web", "r20", (4, 31, 20)),
            container("appfour", "web", "r19", (4, 31, 19)),
        ];
        let view = super::apps(Some(&t), &states, &[]);
        assert_eq!(
            view[&4][&31],
            Entry {
                status: "Handing over".into(),
                release_id: Some(19),
                download_progress: None
            }
        );
    }

    #[test]
    fn status_words_are_balenas() {
        let words: Vec<&str> = [
            "running",
            "restarting",
            "paused",
            "created",
            "dead",
            "exited",
        ]
        .into_iter()
        .map(status_word)
        .collect();
        assert_eq!(
            words,
            [
                "Running",
                "Running",
                "Running",
                "Installed",
                "Dead",
                "exited"
            ]
        );
    }
}
