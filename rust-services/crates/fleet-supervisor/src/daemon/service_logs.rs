//! The output of the supervised containers, followed as they come and go: the source of
//! `/v2/local/logs` and of the log stream to the server.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::state::{Shared, unix_now};
use super::{LogLine, Reconciler};

/// How often the running containers are listed for newly started ones.
const SCAN: Duration = Duration::from_secs(1);

/// One line of a service's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLine {
    pub app: String,
    pub service: String,
    pub line: LogLine,
}

/// Sends the output of every running supervised container until `out` closes: a container
/// first seen from `since` (Unix seconds) on, one that restarted after it was followed from
/// the restart on (never twice).
pub async fn follow_all<R: Reconciler + 'static>(
    shared: Rc<Shared<R>>,
    since: u64,
    out: mpsc::Sender<ServiceLine>,
) {
    let (lines_tx, mut lines) = mpsc::channel::<LogLine>(64);
    let mut followed: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut names: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut scan = tokio::time::interval(SCAN);
    loop {
        tokio::select! {
            _ = out.closed() => break,
            Some(line) = lines.recv() => {
                let (app, service) = names.get(&line.container_id).cloned().unwrap_or_default();
                if out.send(ServiceLine { app, service, line }).await.is_err() {
                    break;
                }
            }
            _ = scan.tick() => {
                followed.retain(|_, task| !task.is_finished());
                let Ok(states) = shared.reconciler.service_states().await else {
                    continue;
                };
                for s in states.into_iter().filter(|s| s.status == "running") {
                    if followed.contains_key(&s.container_id) {
                        continue;
                    }
                    let from = if seen.insert(s.container_id.clone()) { since } else { unix_now() };
                    names.insert(s.container_id.clone(), (s.app.clone(), s.service.clone()));
                    let (shared, lines_tx, id) = (shared.clone(), lines_tx.clone(), s.container_id.clone());
                    let task = tokio::task::spawn_local(async move {
                        if let Err(e) = shared.reconciler.follow_logs(&id, from, lines_tx).await {
                            log::debug!("logs of container {id}: {e}");
                        }
                    });
                    followed.insert(s.container_id, task);
                }
            }
        }
    }
    for task in followed.values() {
        task.abort();
    }
}
