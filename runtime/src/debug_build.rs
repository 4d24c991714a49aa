//! A warning, once per process on stderr, when the runtime was compiled
//! without optimisation and runs a network on a real-sized input: candle's
//! kernels and the runtime's convolution are then about 100x slower, and a
//! user's own crate does not inherit this repository's profile override.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this build of the runtime was compiled with `opt-level = 0`.
pub const UNOPTIMIZED: bool = cfg!(netdsl_unoptimized);

/// Inputs of fewer elements run fast enough either way (tests of tiny nets).
const REAL_SIZE: usize = 16_384;

/// The environment variable that silences the warning.
pub const SILENCE_VAR: &str = "NETDSL_NO_DEBUG_WARNING";

static DONE: AtomicBool = AtomicBool::new(false);

/// Never print the unoptimised-build warning in this process.
pub fn silence_debug_build_warning() {
    DONE.store(true, Ordering::Relaxed);
}

/// The warning's text.
pub fn debug_build_warning(network: &str) -> String {
    format!(
        "netdsl: `{network}` runs in a build without optimisation (opt-level 0), where candle's \
         kernels are about 100x slower.\n\
         Add to your Cargo.toml (dependencies optimised, your own code still quick to build):\n\
         \n    [profile.dev.package.\"*\"]\n    opt-level = 3\n\n\
         or build with --release. Silence this with {SILENCE_VAR}=1 or \
         netdsl::silence_debug_build_warning()."
    )
}

fn should_warn(unoptimized: bool, elements: usize, silenced_by_env: bool) -> bool {
    unoptimized && elements >= REAL_SIZE && !silenced_by_env
}

/// Called by every generated `forward` with its input's element count.
pub fn warn_if_unoptimized(network: &str, elements: usize) {
    if !UNOPTIMIZED || DONE.load(Ordering::Relaxed) {
        return;
    }
    let silenced = std::env::var_os(SILENCE_VAR).is_some_and(|v| v != "0");
    if should_warn(UNOPTIMIZED, elements, silenced) && !DONE.swap(true, Ordering::Relaxed) {
        eprintln!("{}", debug_build_warning(network));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_unoptimised_on_real_inputs_unless_silenced() {
        assert!(should_warn(true, 64 * 784, false));
        assert!(!should_warn(true, 64 * 784, true));
        assert!(!should_warn(true, 100, false));
        assert!(!should_warn(false, 64 * 784, false));
        let text = debug_build_warning("VGG11");
        assert!(text.contains("[profile.dev.package.\"*\"]") && text.contains("opt-level = 3"));
        assert!(text.contains(SILENCE_VAR));
    }

    #[test]
    fn this_workspace_builds_the_runtime_optimised() {
        // The repository's own profile override applies to the runtime, so
        // its tests never print the warning.
        let unoptimized = std::hint::black_box(UNOPTIMIZED);
        assert!(!unoptimized, "the runtime was built at opt-level 0");
    }
}
