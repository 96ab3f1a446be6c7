//! Opt-in wall-clock totals per custom op (`CIFAR_OP_PROFILE=1`, or `=2` to split them by
//! operand shapes), to see where a training step goes without a profiler: `step_compare`
//! prints them. Only with the cargo feature `op-profile` (the benches turn it on); without it
//! the ops carry no timing code and the variable is not read.

#[cfg(not(feature = "op-profile"))]
mod off {
    #[inline(always)]
    pub fn timed<R>(_name: &'static str, f: impl FnOnce() -> R) -> R {
        f()
    }

    #[inline(always)]
    pub fn timed_shaped<R>(_name: &'static str, _shapes: &[&[usize]], f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Nothing is timed without the `op-profile` feature.
    pub fn take() -> Vec<(String, f64, u64)> {
        Vec::new()
    }
}
#[cfg(not(feature = "op-profile"))]
pub use off::*;

#[cfg(feature = "op-profile")]
pub use on::*;

#[cfg(feature = "op-profile")]
mod on {
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static TOTALS: Mutex<BTreeMap<String, (f64, u64)>> = Mutex::new(BTreeMap::new());
/// 0 unknown, then 1 + the level (0 off, 1 per op, 2 per op and shapes).
static LEVEL: AtomicU8 = AtomicU8::new(0);

pub fn level() -> u8 {
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let l = std::env::var("CIFAR_OP_PROFILE").ok().and_then(|v| v.parse::<u8>().ok()).unwrap_or(0).min(2);
            LEVEL.store(l + 1, Ordering::Relaxed);
            l
        }
        v => v - 1,
    }
}

/// Times `f` under `name` when profiling is on.
pub fn timed<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    timed_shaped(name, &[], f)
}

/// Times `f` under `name`, and at level 2 under `name` with the `shapes`.
pub fn timed_shaped<R>(name: &'static str, shapes: &[&[usize]], f: impl FnOnce() -> R) -> R {
    let l = level();
    if l == 0 {
        return f();
    }
    let t = Instant::now();
    let r = f();
    let dt = t.elapsed().as_secs_f64();
    let key = if l >= 2 && !shapes.is_empty() { format!("{name} {shapes:?}") } else { name.to_string() };
    if let Ok(mut m) = TOTALS.lock() {
        let e = m.entry(key).or_default();
        e.0 += dt;
        e.1 += 1;
    }
    r
}

/// (op, seconds, calls) since the last call, and resets the totals.
pub fn take() -> Vec<(String, f64, u64)> {
    let mut m = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let v = m.iter().map(|(k, (s, n))| (k.clone(), *s, *n)).collect();
    m.clear();
    v
}
}
