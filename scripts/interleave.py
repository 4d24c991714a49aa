"""Shared by the interleaved benchmarks (bench_recurrent.py,
bench_transformer.py): time one side's steps, and alternate two sides round
by round, which is the only comparison worth making on a machine whose
speed drifts."""
import statistics
import time


def timed(step, steps):
    """The median of `steps` timed calls of `step`, in ms, after one warm-up."""
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        step()
        if i:
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def interleave(ours, theirs, rounds):
    """`rounds` rounds of the two sides (callables giving one round's ms), in
    alternating order; a markdown row's cells: each side's median, the
    median of the per-round ratios and their range."""
    a_all, b_all, ratios = [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            a, b = ours(), theirs()
        else:
            b = theirs()
            a = ours()
        a_all.append(a)
        b_all.append(b)
        ratios.append(a / b)
    return (f"{statistics.median(a_all):.1f} | {statistics.median(b_all):.1f} | "
            f"{statistics.median(ratios):.2f}x | {min(ratios):.2f}-{max(ratios):.2f}")


def bench_binary(name):
    """The bench binary `name`, built now if it is not, in the release
    profile (what `cargo bench` builds, and what users deploy): in the dev
    profile the runtime's SIMD kernels keep the standard library's debug
    checks (each unaligned vector load goes through a checked copy, each
    pointer offset and dereference is checked), which cost the recurrent
    kernel about a third of its speed. Found by asking cargo:
    `target/*/deps/NAME-*` can also be a test target's binary of the same
    name (tests/recurrent.rs)."""
    import json
    import subprocess

    out = subprocess.run(["cargo", "build", "--release", "--bench", name, "--message-format=json"],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == name \
                and "bench" in msg["target"].get("kind", []) and msg.get("executable"):
            return msg["executable"]
    raise SystemExit(f"cargo built no bench binary `{name}`")
