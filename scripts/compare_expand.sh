#!/usr/bin/env bash
# Expansion time of the compiler at a base commit against the working tree,
# interleaved round by round in one process (this machine's speed drifts by
# 30 % from minute to minute, so only per-round ratios are compared).
#
#   scripts/compare_expand.sh [BASE (default HEAD~1)] [ROUNDS (default 31)] [ONLY (a network name part)]
#
# Prints, for VGG-16, ResNet-34 and the U-Net: each side's median time and
# the median and quartiles of the per-round ratio new/old.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
base="${1:-HEAD~1}"
rounds="${2:-31}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/old" "$work/src"
# The base compiler as a package of another name, so both link into one binary.
git -C "$root" archive "$base" macros/compiler/src | tar -x -C "$work/old" --strip-components=2
cat > "$work/old/Cargo.toml" <<TOML
[package]
name = "netdsl-compiler-old"
version = "0.1.0"
edition = "2021"
[lib]
name = "netdsl_compiler_old"
path = "src/lib.rs"
[dependencies]
syn = { version = "2", features = ["full", "extra-traits"] }
quote = "1"
proc-macro2 = "1"
prettyplease = "0.2"
TOML
# Since the summary table moved to its own crate, the compiler links it
# (renamed, so that it and the working tree's copy link side by side).
if git -C "$root" cat-file -e "$base:summary/Cargo.toml" 2>/dev/null; then
    git -C "$root" archive "$base" summary/src | tar -x -C "$work"
    cat > "$work/summary/Cargo.toml" <<TOML
[package]
name = "netdsl-summary-old"
version = "0.1.0"
edition = "2021"
[lib]
name = "netdsl_summary"
path = "src/lib.rs"
TOML
    echo 'netdsl-summary = { package = "netdsl-summary-old", path = "../summary" }' >> "$work/old/Cargo.toml"
fi
cat > "$work/Cargo.toml" <<TOML
[package]
name = "compare-expand"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
old = { package = "netdsl-compiler-old", path = "old" }
new = { package = "netdsl-compiler", path = "$root/macros/compiler" }
proc-macro2 = "1"
syn = { version = "2", features = ["full"] }
[workspace]
TOML
cp "$root/scripts/compare_expand/main.rs" "$work/src/main.rs"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/compare-expand}" \
    cargo run --release --quiet --manifest-path "$work/Cargo.toml" -- "$root" "$rounds" "${3:-}"
