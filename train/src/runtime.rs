//! Process settings a training process is fastest with. Binaries that train call [`tune`]
//! first thing in `main` and use mimalloc as their global allocator:
//!
//! - a training step frees and reallocates hundreds of MB of activations; glibc returns them to
//!   the kernel and faults them back page by page, mimalloc that keeps freed memory does not
//!   (best of 5 interleaved, img/s: resnet-light 116 → 140, vgg 150 → 177, densenet-small
//!   38 → 49; mimalloc with its default purging was slower than glibc);
//! - candle's own thread pool is off (`CANDLE_NUM_THREADS=1`, unless set): the heavy CPU ops
//!   run on rayon, and candle's pool spin-waits while rayon's threads hold the cores
//!   (resnet-heavy 64 → 71, resnet-light 100 → 108 img/s).

pub fn tune() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Before any candle op starts its pool and before other threads read the environment.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    /// `mi_option_purge_delay` (the sys crate names no constant for it); -1 keeps freed memory.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a process-wide option, which mimalloc allows at any time; harmless when
    // the process's allocator is not mimalloc.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
}
