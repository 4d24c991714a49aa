#!/usr/bin/env python3
"""ONNX Runtime's time per node for one of the speed harness's workloads:
what the per-layer comparison in docs/performance.md puts beside netdsl's
profile. The session is the harness's (scripts/speed.py: 2 intra-op
threads, spinning off, all graph optimisations), with ONNX Runtime's own
profiler on; each node's time is its median over the steps.

    python3 scripts/speed.py --only "ResNet-18 b1" --rounds 1   # exports the model
    python3 scripts/ort_profile.py "ResNet-18 b1" [--steps 30]

Prints one line per node (its median time, op type and the node's name,
which after ORT's NCHWc layout pass is named by its output), slowest
first, and the sum.
"""
import argparse
import collections
import json
import os
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import speed  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workload", help="a workload's name in benches/speed/workloads.json")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import numpy as np
    import onnxruntime as ort

    found = [w for w in speed.load_workloads() if w["name"] == args.workload]
    if not found:
        names = ", ".join(w["name"] for w in speed.load_workloads())
        sys.exit(f"no workload named {args.workload!r}; the workloads: {names}")
    w = found[0]
    path = speed.export_onnx(w)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.gettempdir(), "netdsl_ort_profile")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.rand(*w["input"]).astype(np.float32)
    for _ in range(args.steps):
        sess.run(None, {"x": x})
    trace = pathlib.Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    times = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[(e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))].append(e["dur"])
    rows = []
    for (name, op), durs in times.items():
        durs.sort()
        rows.append((durs[len(durs) // 2] / 1000.0, op, name))
    rows.sort(reverse=True)
    print(f"{w['name']}: ONNX Runtime {ort.__version__}, {args.threads} threads, "
          f"median of {args.steps} steps per node")
    for ms, op, name in rows:
        print(f"{ms:8.3f} ms  {op:20s} {name}")
    print(f"{sum(r[0] for r in rows):8.3f} ms  sum of nodes")


if __name__ == "__main__":
    main()
