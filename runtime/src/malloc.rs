//! Keeping freed tensor memory in the process (glibc's `malloc`).
//!
//! Every candle operation allocates its output afresh, and a forward frees
//! most of what it allocated. glibc's defaults hand large freed blocks back
//! to the kernel (anything from 128 KB up is `mmap`ed and `munmap`ed, and
//! the heap's free top is trimmed), so the next forward page-faults the
//! same memory in again, one 4 KB page at a time: 35 % of the transformer
//! encoder layer's time on the 2-core benchmark machine (60 ms against 40
//! with the thresholds below). glibc raises its thresholds by itself after
//! the first large free, but only part of the way and not for the thread
//! pool's own arenas.
//!
//! So the first network or block built in a process raises both thresholds
//! once (`mallopt`): blocks up to 32 MB (glibc's ceiling) come from the
//! heap, and freed memory is kept for the next forward instead of being
//! returned. The process's resident memory then stays at its peak, as with
//! PyTorch's and jemalloc's caching allocators. Set `NETDSL_MALLOC=system`
//! to keep glibc's defaults; other C libraries (musl, macOS, Windows) are
//! left as they are.

use std::sync::OnceLock;

/// Largest block served from the heap rather than `mmap` (glibc refuses
/// more than 32 MB on 64-bit targets).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Free memory at the heap's top kept before trimming: 1 GB, in effect
/// never trimmed during inference or training.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Raises glibc's `mmap` and trim thresholds once per process (see the
/// module's docs); `true` when they are raised, `false` where the C library
/// is not glibc or `NETDSL_MALLOC=system` asks for its defaults. Generated
/// networks and blocks call it when built; calling it again does nothing.
pub fn keep_freed_memory() -> bool {
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| {
        if std::env::var("NETDSL_MALLOC").is_ok_and(|v| v == "system") {
            return false;
        }
        raise_thresholds()
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn raise_thresholds() -> bool {
    // SAFETY: `mallopt` only sets two of malloc's parameters; glibc takes
    // its lock, so it is safe beside allocating threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn raise_thresholds() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_thresholds() {
        if std::env::var("NETDSL_MALLOC").is_ok_and(|v| v == "system") {
            return;
        }
        assert!(super::keep_freed_memory());
        // Once per process: the second call reports the first's outcome.
        assert!(super::keep_freed_memory());
    }
}
