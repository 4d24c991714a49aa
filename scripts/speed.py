#!/usr/bin/env python3
"""The speed harness: netdsl against PyTorch eager and ONNX Runtime on the
CPU, interleaved round by round, with a per-layer breakdown (a roofline
table) and peak resident memory.

    pip install torch torchvision onnxruntime onnx onnxscript
    python3 scripts/speed.py                 # everything (about 15 min on 2 cores)
    python3 scripts/speed.py --only LeNet --rounds 5 --no-layers --no-mem

The workloads are listed once, in benches/speed/workloads.json; the Rust
side is the bench binary benches/speed/main.rs (built here with
`cargo bench --bench speed --no-run`), kept running and driven over a pipe.
For each workload the three sides take turns, round by round, in a rotating
order; each side's time in a round is the median of the same number of
steps, after warm-up. The table gives each side's median over the rounds
and the median and quartiles of the per-round ratio: figures taken apart
are never compared. Threads: 2 (or --threads) on every side: the Rust
process gets RAYON_NUM_THREADS, PyTorch torch.set_num_threads (one inter-op
thread, OpenMP threads passive: OMP_WAIT_POLICY=PASSIVE), ONNX Runtime
intra_op_num_threads with intra-op spinning off. Spinning threads would
steal the cores of the side that runs next (and, with builds beside,
PyTorch's spinning OpenMP barriers made LeNet-5 b1 take 300 ms instead of
0.6 ms).

Results go to stdout and target/speed/report.md (markdown) and
target/speed/results.json.
"""
import argparse
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "benches" / "speed" / "workloads.json"
OUT = ROOT / "target" / "speed"


def load_workloads():
    return json.loads(WORKLOADS.read_text())["workloads"]


def status_mib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {key} in /proc/self/status")


# ---------------------------------------------------------------- PyTorch


def torch_model(model):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torchvision

    class LeNet(nn.Module):
        """As examples/networks/lenet.rs."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2).flatten(1)
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    def double_conv(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.ReLU(inplace=True),
                             nn.Conv2d(o, o, 3, padding=1), nn.ReLU(inplace=True))

    class Restorer(nn.Module):
        """As examples/common/restore_unet.rs."""

        def __init__(self):
            super().__init__()
            self.enc1, self.enc2 = double_conv(1, 16), double_conv(16, 32)
            self.mid = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True))
            self.up2 = nn.ConvTranspose2d(64, 32, 2, stride=2)
            self.dec2 = nn.Sequential(nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(inplace=True))
            self.up1 = nn.ConvTranspose2d(32, 16, 2, stride=2)
            self.dec1 = nn.Sequential(nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(inplace=True))
            self.out = nn.Conv2d(16, 1, 1)

        def forward(self, x):
            e1 = self.enc1(x)
            e2 = self.enc2(F.max_pool2d(e1, 2))
            b = self.mid(F.max_pool2d(e2, 2))
            d2 = self.dec2(torch.cat([e2, self.up2(b)], 1))
            return x + self.out(self.dec1(torch.cat([e1, self.up1(d2)], 1)))

    models = {
        "lenet": LeNet,
        "alexnet": lambda: torchvision.models.alexnet(weights=None),
        "vgg16": lambda: torchvision.models.vgg16(weights=None),
        "resnet18": lambda: torchvision.models.resnet18(weights=None),
        "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
        "restore_unet": Restorer,
    }
    if model is None:
        return set(models)
    torch.manual_seed(0)
    return models[model]()


class TorchSide:
    label = "PyTorch eager"

    def prepare(self, w):
        import torch
        import torch.nn.functional as F

        self.model = torch_model(w["model"])
        x = torch.rand(w["input"])
        if w["kind"] == "train":
            self.model.train()
            classes = self.model(x).shape[1]
            n = w["input"][0]
            y = torch.tensor([(i * 7) % classes for i in range(n)])
            opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)

            def step():
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(self.model(x), y).backward()
                opt.step()
        else:
            self.model.eval()

            def step():
                with torch.inference_mode():
                    self.model(x)
        self.step = step

    def run(self, n):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            self.step()
            times.append((time.perf_counter() - t) * 1e3)
        return times

    def release(self):
        self.model = self.step = None


def onnx_path(w):
    return OUT / "onnx" / f"{w['model']}_{'x'.join(map(str, w['input']))}.onnx"


def export_onnx(w):
    """The PyTorch model in eval mode, exported with torch.onnx.export (the
    TorchScript exporter, constant folding on), cached under target/speed."""
    import torch

    path = onnx_path(w)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    model = torch_model(w["model"]).eval()
    x = torch.rand(w["input"])
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (x,), str(tmp), input_names=["x"], output_names=["y"],
                      opset_version=17, do_constant_folding=True, dynamo=False)
    tmp.rename(path)
    return path


def ort_session(path, threads):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OrtSide:
    label = "ONNX Runtime"

    def __init__(self, threads):
        self.threads = threads

    def prepare(self, w):
        import numpy as np

        self.sess = ort_session(export_onnx(w), self.threads)
        x = np.random.default_rng(0).random(w["input"], dtype=np.float32)
        self.step = lambda: self.sess.run(None, {"x": x})

    run = TorchSide.run

    def release(self):
        self.sess = self.step = None


# ---------------------------------------------------------------- Rust


def rust_binary():
    """Builds the bench binary (release) and returns its path."""
    cmd = ["cargo", "bench", "--bench", "speed", "--no-run", "--message-format=json"]
    out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True).stdout
    exe = None
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "speed" and msg.get("executable"):
            exe = msg["executable"]
    if exe is None:
        sys.exit("cargo did not report the speed bench binary")
    return exe


class RustSide:
    label = "netdsl"

    def __init__(self, exe, env):
        self.proc = subprocess.Popen([exe, "--serve"], cwd=ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            sys.exit(f"the Rust side died on `{line}`")
        return reply.strip()

    def prepare(self, w):
        if self.ask(f"load {w['name']}") != "ok":
            sys.exit(f"the Rust side could not load {w['name']}")

    def run(self, n):
        return [float(t) for t in self.ask(f"run {n}").split()]

    def release(self):
        pass

    def layers(self, model, shape, reps):
        self.proc.stdin.write(f"layers {model} {','.join(map(str, shape))} {reps}\n")
        self.proc.stdin.flush()
        rows = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                sys.exit("the Rust side died in `layers`")
            if line.strip() == "end":
                return rows
            rows.append(json.loads(line))

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


# ---------------------------------------------------------------- timing


def quartiles(v):
    if len(v) < 2:
        return v[0], v[0], v[0]
    q = statistics.quantiles(v, n=4, method="inclusive")
    return q[0], statistics.median(v), q[2]


def compare(w, sides, rounds, target_ms, log):
    for s in sides:
        s.prepare(w)
    # Warm-up (excluded): three steps each, and at least 0.3 s per side.
    slowest = 0.0
    for s in sides:
        t0, times = time.perf_counter(), s.run(3)
        while time.perf_counter() - t0 < 0.3:
            times += s.run(1)
        slowest = max(slowest, statistics.median(times[-3:]))
    reps = max(1, min(200, round(target_ms / slowest)))
    per = {s.label: [] for s in sides}
    for r in range(rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        for s in order:
            per[s.label].append(statistics.median(s.run(reps)))
    for s in sides:
        s.release()
    res = {"name": w["name"], "reps": reps, "rounds": rounds, "times": per}
    log(f"  {w['name']}: " + ", ".join(f"{k} {statistics.median(v):.2f} ms" for k, v in per.items())
        + f" ({rounds} rounds x {reps} steps)")
    return res


def ratio_cell(a, b):
    r = [x / y for x, y in zip(a, b)]
    lo, med, hi = quartiles(r)
    return f"{med:.2f} ({lo:.2f}-{hi:.2f})"


# ---------------------------------------------------------------- per layer


def torch_layer_fns(rows):
    import torch
    import torch.nn.functional as F

    fns = []
    for row in rows:
        xs = [torch.rand(s) * 2 - 1 for s in row["inputs"]]
        w = torch.rand(row["weight"]) * 2 - 1 if row["weight"] else None
        a, op = row["args"], row["op"]
        cout = row["out"][1]
        if op == "conv":
            b = None if a["bn"] else torch.rand(cout)
            bn = [torch.rand(cout) for _ in range(4)]

            def f(x=xs[0], w=w, b=b, a=a, bn=bn):
                y = F.conv2d(x, w, b, a["stride"], a["pad"], 1, a["groups"])
                if a["bn"]:  # eager PyTorch runs the batch norm (no folding)
                    y = F.batch_norm(y, bn[0], bn[1] + 0.5, bn[2], bn[3], False, 0.1, 1e-5)
                if a["act"] == "relu":
                    y = F.relu(y, inplace=True)
                elif a["act"] == "relu6":
                    y = F.relu6(y, inplace=True)
                return y
        elif op == "convT":
            b = torch.rand(cout)

            def f(x=xs[0], w=w, b=b, a=a):
                return F.conv_transpose2d(x, w, b, a["stride"])
        elif op == "maxpool":
            def f(x=xs[0], a=a):
                return F.max_pool2d(x, a["k"], a["stride"], a["pad"])
        elif op == "adaptive_avg_pool":
            def f(x=xs[0], a=a):
                return F.adaptive_avg_pool2d(x, a["out"])
        elif op == "linear":
            b = torch.rand(cout)

            def f(x=xs[0], w=w, b=b, a=a):
                y = F.linear(x, w, b)
                return F.relu(y, inplace=True) if a["relu"] else y
        elif op == "add":
            def f(x=xs[0], y=xs[1], a=a):
                s = x + y
                return F.relu(s, inplace=True) if a["relu"] else s
        elif op == "cat":
            def f(x=xs[0], y=xs[1]):
                return torch.cat([x, y], 1)
        else:
            raise ValueError(f"unknown layer op {op}")
        fns.append((row["name"], f))
    return fns


def torch_layers(rows, reps):
    """Each row's mean time over `reps` runs of the whole sequence, from
    torch.profiler (one record_function range per layer)."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    fns = torch_layer_fns(rows)
    with torch.inference_mode():
        for _, f in fns:
            f()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                for name, f in fns:
                    with record_function(name):
                        f()
    by_name = {e.key: e.cpu_time_total / e.count / 1e3 for e in prof.key_averages()}
    return [by_name[r["name"]] for r in rows]


def torch_ceiling():
    import torch

    n = 1024
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(5))
    src, dst = torch.ones(64 << 20), torch.zeros(64 << 20)
    dst.copy_(src)
    best_copy = min(timed(lambda: dst.copy_(src)) for _ in range(5))
    return {"matmul_gflops": 2 * n ** 3 / best / 1e9, "copy_gbs": 2 * 4 * (64 << 20) / best_copy / 1e9}


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def op_class(row):
    a = row["args"]
    if row["op"] == "conv":
        if a["groups"] > 1:
            return "depthwise conv"
        return "conv 1x1" if a["k"] == 1 else f"conv {a['k']}x{a['k']}"
    return {"convT": "transposed conv", "maxpool": "pooling", "adaptive_avg_pool": "pooling",
            "linear": "linear", "add": "add", "cat": "cat"}[row["op"]]


def layer_report(model, shape, rust, torch_ms, roof, whole):
    p, bw = roof["matmul_gflops"] * 1e9, roof["copy_gbs"] * 1e9
    lines = [f"#### {model}, input {list(shape)}", "",
             "| layer | GFLOP | MB moved | FLOP/byte | roofline ms | netdsl ms | PyTorch ms | netdsl / PyTorch | netdsl % of roofline | PyTorch % of roofline |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row, t in zip(rust, torch_ms):
        roof_ms = max(row["flops"] / p, row["bytes"] / bw) * 1e3
        ours = row["ms"]
        lines.append(f"| {row['name']} | {row['flops'] / 1e9:.3f} | {row['bytes'] / 1e6:.2f} | "
                     f"{row['flops'] / row['bytes']:.1f} | {roof_ms:.3f} | {ours:.3f} | {t:.3f} | "
                     f"{ours / t:.2f} | {100 * roof_ms / ours:.0f}% | {100 * roof_ms / t:.0f}% |")
    so, st = sum(r["ms"] for r in rust), sum(torch_ms)
    lines.append(f"| **sum of layers** | {sum(r['flops'] for r in rust) / 1e9:.3f} | | | | **{so:.2f}** | **{st:.2f}** | {so / st:.2f} | | |")
    if whole:
        lines.append(f"| whole network (main table) | | | | | {whole[0]:.2f} | {whole[1]:.2f} | {whole[0] / whole[1]:.2f} | | |")
    lines.append("")
    classes = {}
    for row, t in zip(rust, torch_ms):
        c = classes.setdefault(op_class(row), [0.0, 0.0, 0.0])
        c[0] += row["ms"]
        c[1] += t
        c[2] += row["flops"]
    lines += ["| op class | netdsl ms | PyTorch ms | gap ms | netdsl GFLOP/s | PyTorch GFLOP/s |", "| --- | --- | --- | --- | --- | --- |"]
    for c, (o, t, f) in sorted(classes.items(), key=lambda kv: kv[1][1] - kv[1][0]):
        lines.append(f"| {c} | {o:.2f} | {t:.2f} | {o - t:+.2f} | {f / o / 1e6:.1f} | {f / t / 1e6:.1f} |")
    gaps = [(r, t) for r, t in sorted(zip(rust, torch_ms), key=lambda rt: rt[1] - rt[0]["ms"])[:5] if r["ms"] > t]
    lines += ["", "Largest gaps (netdsl - PyTorch): " + ("; ".join(
        f"{r['name']} {r['ms'] - t:+.2f} ms ({r['ms'] / t:.1f}x)" for r, t in gaps) or "none: every layer is faster"), ""]
    return lines


# ---------------------------------------------------------------- memory


def mem_child(engine, name):
    """Runs in a fresh process: peak resident memory of one inference
    workload on one engine, printed as JSON."""
    w = next(w for w in load_workloads() if w["name"] == name)
    start = status_mib("VmRSS")
    if engine == "torch":
        import torch

        torch.set_num_threads(int(os.environ.get("THREADS", "2")))
        start = status_mib("VmRSS")
        model, x = torch_model(w["model"]).eval(), torch.rand(w["input"])
        with torch.inference_mode():
            for _ in range(3):
                model(x)
    else:
        import numpy as np

        start = status_mib("VmRSS")
        sess = ort_session(onnx_path(w), int(os.environ.get("THREADS", "2")))
        x = np.random.default_rng(0).random(w["input"], dtype=np.float32)
        for _ in range(3):
            sess.run(None, {"x": x})
    print(json.dumps({"peak_mib": status_mib("VmHWM"), "start_mib": start}))


def measure_mem(exe, env, w, with_ort):
    def child(cmd):
        out = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, check=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    res = {"netdsl": child([exe, "--mem", w["name"]]),
           "PyTorch eager": child([sys.executable, __file__, "--mem-child", "torch", w["name"]])}
    if with_ort:
        res["ONNX Runtime"] = child([sys.executable, __file__, "--mem-child", "ort", w["name"]])
    return res


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15, help="rounds per workload (default 15)")
    ap.add_argument("--round-ms", type=float, default=100.0,
                    help="steps per round: about this many ms of the slowest side (default 100)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="comma-separated substrings of workload names")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--no-layers", action="store_true")
    ap.add_argument("--no-mem", action="store_true")
    ap.add_argument("--layer-rounds", type=int, default=3)
    ap.add_argument("--layer-reps", type=int, default=5)
    ap.add_argument("--omp-wait-policy", default="PASSIVE",
                    help="PyTorch's OpenMP threads: PASSIVE (default) sleep at barriers instead of spinning, "
                         "as ONNX Runtime's with spinning off; ACTIVE spins (PyTorch's default behaviour), "
                         "which on a loaded machine slows PyTorch down by orders of magnitude")
    ap.add_argument("--check", action="store_true",
                    help="only check that both sides implement every listed workload")
    ap.add_argument("--mem-child", nargs=2, metavar=("ENGINE", "NAME"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    # Before torch is imported: libgomp reads it once.
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), THREADS=str(args.threads))
    if args.mem_child:
        return mem_child(*args.mem_child)

    workloads = load_workloads()
    missing = {w["model"] for w in workloads} - torch_model(None)
    if missing:
        sys.exit(f"scripts/speed.py has no PyTorch model for {sorted(missing)}")
    exe = rust_binary()
    listed = subprocess.run([exe, "--list"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            check=True, text=True).stdout.splitlines()
    if listed != [w["name"] for w in workloads]:
        sys.exit(f"the Rust side lists {listed}, workloads.json {[w['name'] for w in workloads]}")
    if args.check:
        print(f"ok: {len(workloads)} workloads on both sides")
        return
    if args.only:
        keys = [k.strip().lower() for k in args.only.split(",")]
        workloads = [w for w in workloads if any(k in w["name"].lower() for k in keys)]

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    log = lambda s: print(s, file=sys.stderr, flush=True)
    load = os.getloadavg()
    log(f"torch {torch.__version__}, threads {args.threads}, load average {load[0]:.1f}")

    rust = RustSide(exe, env)
    torch_side = TorchSide()
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": args.threads,
               "torch": torch.__version__, "load_before": load, "argv": sys.argv[1:], "workloads": []}
    if not args.no_onnx:
        import onnxruntime

        results["onnxruntime"] = onnxruntime.__version__
    for w in workloads:
        sides = [rust, torch_side]
        if w["kind"] == "infer" and not args.no_onnx:
            sides.append(OrtSide(args.threads))
        results["workloads"].append(compare(w, sides, args.rounds, args.round_ms, log))

    layers = []
    if not args.no_layers:
        roof_r = json.loads(rust.ask("ceiling"))
        roof_t = torch_ceiling()
        roof = {k: max(roof_r[k], roof_t[k]) for k in ("matmul_gflops", "copy_gbs")}
        results["ceiling"] = {"netdsl": roof_r, "PyTorch": roof_t}
        seen = set()
        for w in workloads:
            if w["kind"] != "infer" or w["model"] in seen:
                continue
            seen.add(w["model"])
            log(f"  layers of {w['model']} at {w['input']}")
            ours, theirs = [], []
            for _ in range(args.layer_rounds):  # alternating, as the main table
                ours.append(rust.layers(w["model"], w["input"], args.layer_reps))
                theirs.append(torch_layers(ours[-1], args.layer_reps))
            rows = ours[0]
            for i, row in enumerate(rows):
                row["ms"] = statistics.median(o[i]["ms"] for o in ours)
            torch_ms = [statistics.median(t[i] for t in theirs) for i in range(len(rows))]
            res = next(r for r in results["workloads"] if r["name"] == w["name"])
            whole = [statistics.median(res["times"][k]) for k in ("netdsl", "PyTorch eager")]
            layers.append((w["model"], w["input"], rows, torch_ms, whole))
        results["layers"] = [{"model": m, "input": s, "rows": r, "torch_ms": t} for m, s, r, t, _ in layers]
    rust.close()

    mem = {}
    if not args.no_mem:
        for w in workloads:
            if w["kind"] == "infer":
                log(f"  memory of {w['name']}")
                mem[w["name"]] = measure_mem(exe, env, w, not args.no_onnx)
        results["memory"] = mem
    results["load_after"] = os.getloadavg()

    # The report.
    lines = [f"{results['date']}, `python3 scripts/speed.py {' '.join(sys.argv[1:])}`, {args.threads} threads, "
             f"torch {torch.__version__} (OMP_WAIT_POLICY={args.omp_wait_policy})" + (f", onnxruntime {results['onnxruntime']}" if "onnxruntime" in results else "")
             + f"; load average {load[0]:.1f} before, {results['load_after'][0]:.1f} after.", "",
             "| workload | netdsl ms | PyTorch eager ms | ONNX Runtime ms | netdsl / PyTorch, median (quartiles) of rounds "
             "| netdsl / ONNX Runtime | peak RSS MiB: netdsl / PyTorch / ORT |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["workloads"]:
        t = r["times"]
        ort = "ONNX Runtime" in t
        m = mem.get(r["name"])
        mcell = " / ".join(f"{m[k]['peak_mib']:.0f}" for k in m) if m else "—"
        lines.append(f"| {r['name']} | {statistics.median(t['netdsl']):.2f} | {statistics.median(t['PyTorch eager']):.2f} | "
                     f"{statistics.median(t['ONNX Runtime']):.2f} | " if ort else
                     f"| {r['name']} | {statistics.median(t['netdsl']):.2f} | {statistics.median(t['PyTorch eager']):.2f} | — | ")
        lines[-1] += (f"{ratio_cell(t['netdsl'], t['PyTorch eager'])} | "
                      + (f"{ratio_cell(t['netdsl'], t['ONNX Runtime'])} | " if ort else "— | ") + f"{mcell} |")
    if mem:
        lines += ["", "Resident memory at start (before building the network, after imports), MiB: "
                  + "; ".join(f"{n}: " + " / ".join(f"{m[k]['start_mib']:.0f}" for k in m) for n, m in mem.items())]
    if layers:
        c = results["ceiling"]
        lines += ["", f"Ceilings, measured in this run: matmul 1024^3 netdsl (gemm) {c['netdsl']['matmul_gflops']:.0f} GFLOP/s, "
                  f"PyTorch (MKL) {c['PyTorch']['matmul_gflops']:.0f}; copy of 256 MB {c['netdsl']['copy_gbs']:.1f} GB/s (Rust threads), "
                  f"{c['PyTorch']['copy_gbs']:.1f} (torch). The roofline takes the larger of each.", ""]
        for m, s, r, t, whole in layers:
            lines += layer_report(m, s, r, t, roof, whole)
    report = "\n".join(lines) + "\n"
    print(report)
    (OUT / "report.md").write_text(report)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
