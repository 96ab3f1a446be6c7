//! Opt-in wall-clock totals per custom op (`CIFAR_OP_PROFILE=1`), to see where a training
//! step goes without a profiler: `step_compare` prints them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static TOTALS: Mutex<BTreeMap<&'static str, (f64, u64)>> = Mutex::new(BTreeMap::new());
/// 0 unknown, 1 off, 2 on.
static ENABLED: AtomicU8 = AtomicU8::new(0);

fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var_os("CIFAR_OP_PROFILE").is_some_and(|v| v != "0");
            ENABLED.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        v => v == 2,
    }
}

/// Times `f` under `name` when profiling is on.
pub fn timed<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let t = Instant::now();
    let r = f();
    let dt = t.elapsed().as_secs_f64();
    if let Ok(mut m) = TOTALS.lock() {
        let e = m.entry(name).or_default();
        e.0 += dt;
        e.1 += 1;
    }
    r
}

/// (op, seconds, calls) since the last call, and resets the totals.
pub fn take() -> Vec<(&'static str, f64, u64)> {
    let mut m = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let v = m.iter().map(|(k, (s, n))| (*k, *s, *n)).collect();
    m.clear();
    v
}
