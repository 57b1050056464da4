//! Hot reload: re-read the config every interval and swap in a changed, valid one.
//!
//! Polling file contents (not mtimes, not inotify) is cheap for config-sized files and also
//! sees Kubernetes ConfigMap symlink swaps and same-second edits. An invalid change is logged
//! (file, field, reason) once and the previous config keeps serving.

use super::Shared;
use crate::config::{read_sources, Config};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn watch(
    shared: Arc<Shared>,
    path: PathBuf,
    interval: Duration,
    initial: Vec<(String, String)>,
    shutdown: impl Future<Output = ()>,
) {
    let mut last: Result<Vec<(String, String)>, String> = Ok(initial);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let path = path.clone();
        let current = match tokio::task::spawn_blocking(move || read_sources(&path)).await {
            Ok(read) => read.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if current == last {
            continue;
        }
        match current.as_ref().map_err(Clone::clone).and_then(|sources| {
            Config::from_sources_with(sources, shared.load_options).map_err(|e| e.to_string())
        }) {
            Ok(config) => {
                let domains = config.domains().count();
                shared.install(config);
                shared.metrics.config_reload(true);
                tracing::info!(config = %path_display(&current), domains, "configuration reloaded");
            }
            Err(error) => {
                shared.metrics.config_reload(false);
                tracing::error!(%error, "configuration change rejected; keeping the previous one");
            }
        }
        last = current;
    }
}

fn path_display(sources: &Result<Vec<(String, String)>, String>) -> String {
    match sources {
        Ok(files) => files
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => e.clone(),
    }
}
