//! `serve --watch`: the folder is scanned every interval (Triton's poll mode) and the
//! registry follows it: a new file is loaded, a changed file reloaded (a swap), a removed file
//! unloaded. A file is acted on only once two scans in a row see the same size and time, so a
//! copy still being written is not read half-way.

use super::folder::{self, FileStamp};
use super::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the watcher has seen and done.
#[derive(Default)]
struct Seen {
    /// The last scan.
    previous: BTreeMap<String, FileStamp>,
    /// Files acted on (loaded, or tried and failed): acted on again only when they change.
    handled: BTreeMap<String, FileStamp>,
    /// Files whose names cannot be served, reported once each.
    reported: BTreeSet<std::path::PathBuf>,
}

/// Starts the watcher thread; it stops at the first scan after `stop` is set.
pub fn spawn(registry: Arc<Registry>, interval: Duration, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let mut seen = Seen::default();
    // What the registry loaded at start-up counts as handled.
    if let Ok(files) = folder::scan(registry.dir()) {
        for (name, stamp) in files {
            if let Ok(stamp) = stamp {
                seen.previous.insert(name.clone(), stamp);
                seen.handled.insert(name, stamp);
            }
        }
    }
    std::thread::Builder::new().name("watch-models".into()).spawn(move || {
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(interval);
            if !stop.load(Ordering::Acquire) {
                poll(&registry, &mut seen);
            }
        }
    })?;
    Ok(())
}

/// One scan and what follows from it.
fn poll(registry: &Registry, seen: &mut Seen) {
    let files = match folder::scan(registry.dir()) {
        Ok(files) => files,
        Err(err) => return tracing::warn!("--watch: {err}; the models loaded stay as they are"),
    };
    let mut now = BTreeMap::new();
    for (name, stamp) in files {
        match stamp {
            Ok(stamp) => {
                now.insert(name, stamp);
            }
            Err(path) if seen.reported.insert(path.clone()) => {
                tracing::warn!("--watch: {} is not served: {}", path.display(), super::LoadError::BadName(path.clone()))
            }
            Err(_) => {}
        }
    }
    for (name, stamp) in &now {
        let settled = seen.previous.get(name) == Some(stamp);
        if settled && seen.handled.get(name) != Some(stamp) {
            seen.handled.insert(name.clone(), *stamp);
            // The registry logs, counts and records the outcome.
            let _ = registry.load_model(name);
        }
    }
    let removed: Vec<String> = seen.handled.keys().filter(|name| !now.contains_key(*name)).cloned().collect();
    for name in removed {
        seen.handled.remove(&name);
        let _ = registry.unload_model(&name, "its file was removed from the model folder", true);
    }
    seen.previous = now;
}
