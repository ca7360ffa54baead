#!/usr/bin/env python3
"""bench/race_cpu.py — the CPU inference race of docs/results.md: one student, three engines, one run.

    python3 bench/race_cpu.py --bundle student.rkd [--classify build/release/examples/classify]
                              [--threads 2] [--batches 1,8] [--rounds 5] [--seconds 1.5] [--json race.json]

Engines, all on the same network (the bundle's BN-folded student, its weights), the same thread count and the
bundle's input size (224 px for the deployed MobileNetV2):
  retikd      classify --bundle B --benchmark N (deploy::CpuEngine: fused NCHWc layers), RETIKD_NUM_THREADS
  retikd-mod  the same binary with --cpu-engine modules (the layer-by-layer reference path); --with-modules
  onnxruntime the file classify --export-onnx writes (fp32, dynamic batch), graph optimisations on
              (ORT_ENABLE_ALL), intra_op_num_threads = threads, inter_op 1, its default spinning workers
  torch       PyTorch eager: torchvision's model of the same architecture with each convolution given the folded
              weight and bias and its BatchNorm replaced by Identity (the same network), torch.set_num_threads,
              inference_mode
The engines run interleaved: each round runs every engine (in a rotating order) at every batch size for about
--seconds, so load from other processes on a shared machine hits them alike; throughput is the median over rounds
of each round's images/s, p50 / p99 latency over every call of every round. The 1-minute load average before and
after is printed: figures from a loaded machine are comparisons, not absolute speeds. Before timing, torch's and
onnxruntime's logits on one input are compared (the same network: they agree to ~1e-5).

Python is for this benchmark only (PyPI onnxruntime, numpy, torch, torchvision); the library never runs it.
"""
import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time


def read_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F16": np.float16, "F32": np.float32, "I64": np.int64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtypes[info["dtype"]]).reshape(info["shape"]).astype(np.float32)
    return out, header.get("__metadata__", {})


def torch_model(bundle):
    """torchvision's architecture with the bundle's folded weights (conv + bias, BatchNorm -> Identity)."""
    import torch
    import torchvision
    tensors, meta = read_safetensors(bundle)
    arch = meta["retikd.arch"]
    opts = json.loads(meta["retikd.model_options"])
    if arch == "mobilenet_v2":
        m = torchvision.models.mobilenet_v2(num_classes=opts["num_classes"], width_mult=opts["width_mult"])
    elif arch in ("resnet18", "resnet34"):
        m = getattr(torchvision.models, arch)(num_classes=opts["num_classes"])
    elif arch == "efficientnet_b0":
        if opts["width_mult"] != 1.0:
            raise SystemExit("race_cpu: torch efficientnet_b0 only at width 1.0")
        m = torchvision.models.efficientnet_b0(num_classes=opts["num_classes"])
    else:
        raise SystemExit(f"race_cpu: no torchvision model for {arch}")
    modules = dict(m.named_modules())
    for name, w in tensors.items():
        if not name.endswith(".weight"):
            continue
        path = name[: -len(".weight")]
        mod = modules[path]
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(w))
            bias = tensors.get(path + ".bias")
            if bias is not None:
                if mod.bias is None:
                    mod.bias = torch.nn.Parameter(torch.from_numpy(bias).clone())
                else:
                    mod.bias.copy_(torch.from_numpy(bias))
        if isinstance(mod, torch.nn.Conv2d):  # its BatchNorm: ".0" -> ".1"; convK -> bnK; downsample.0 -> .1
            parent, _, leaf = path.rpartition(".")
            if leaf.isdigit():
                bn = f"{parent}.{int(leaf) + 1}" if parent else str(int(leaf) + 1)
            elif leaf.startswith("conv"):
                bn = (parent + "." if parent else "") + "bn" + leaf[4:]
            else:
                bn = None
            if bn in modules and isinstance(modules[bn], torch.nn.BatchNorm2d):
                owner = modules[bn.rpartition(".")[0]] if "." in bn else m
                setattr(owner, bn.rpartition(".")[2], torch.nn.Identity())
    return m.eval(), meta


def stats(latencies_ms, batch, round_ips):
    import numpy as np
    lat = np.array(latencies_ms)
    return {"images_per_s": float(np.median(round_ips)), "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "calls": int(lat.size), "rounds": len(round_ips),
            "round_images_per_s": [round(x, 1) for x in round_ips]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--classify", default="build/release/examples/classify")
    ap.add_argument("--onnx", help="the exported file (default: classify --export-onnx into a temporary file)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.5, help="per engine, batch and round")
    ap.add_argument("--engines", default="retikd,onnxruntime,torch")
    ap.add_argument("--with-modules", action="store_true", help="also time retikd's module path")
    ap.add_argument("--json")
    a = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    engines = a.engines.split(",")
    if a.with_modules:
        engines.insert(1, "retikd-mod")
    batches = [int(b) for b in a.batches.split(",")]
    env = dict(os.environ, RETIKD_NUM_THREADS=str(a.threads))
    tmp = tempfile.mkdtemp(prefix="race_cpu_")
    onnx_path = a.onnx or os.path.join(tmp, "student.onnx")
    if not a.onnx:
        subprocess.run([a.classify, "--bundle", a.bundle, "--export-onnx", onnx_path], check=True, env=env,
                       stdout=subprocess.DEVNULL)

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    size = inp.shape[2]
    rng = np.random.default_rng(0)
    inputs = {b: rng.uniform(-2, 2, size=(b, inp.shape[1], size, size)).astype(np.float32) for b in batches}

    tm = None
    if "torch" in engines:
        import torch
        torch.set_num_threads(a.threads)
        tm, _ = torch_model(a.bundle)
        with torch.inference_mode():
            ref = sess.run(None, {inp.name: inputs[batches[0]]})[0]
            got = tm(torch.from_numpy(inputs[batches[0]])).numpy()
        diff = float(np.abs(ref - got).max() / max(np.abs(ref).max(), 1e-30))
        print(f"race_cpu: torch (folded weights) vs onnxruntime on one input: {diff:.2e} (scale-relative)")
        if diff > 1e-3:
            raise SystemExit("race_cpu: torch's model is not the exported network")

    def time_python(fn, batch):
        fn()  # warm-up
        lat = []
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            fn()
            lat.append(1e3 * (time.perf_counter() - t0))
            if time.perf_counter() - start >= a.seconds and len(lat) >= 3:
                return lat

    def time_retikd(batch, modules, est_ms):
        iters = max(3, int(a.seconds * 1e3 / max(est_ms, 0.05)))
        cmd = [a.classify, "--bundle", a.bundle, "--benchmark", str(iters), "--warmup", "3", "--batch", str(batch)]
        if modules:
            cmd += ["--cpu-engine", "modules"]
        out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])["latencies_ms"]

    load_before = os.getloadavg()
    lat = {(e, b): [] for e in engines for b in batches}
    ips = {(e, b): [] for e in engines for b in batches}
    est = {(e, b): 5.0 * b for e in engines for b in batches}
    for r in range(a.rounds):
        order = engines[r % len(engines):] + engines[:r % len(engines)]
        for b in batches:
            for e in order:
                if e == "retikd":
                    l = time_retikd(b, False, est[(e, b)])
                elif e == "retikd-mod":
                    l = time_retikd(b, True, est[(e, b)])
                elif e == "onnxruntime":
                    l = time_python(lambda: sess.run(None, {inp.name: inputs[b]}), b)
                else:
                    import torch
                    xt = torch.from_numpy(inputs[b])
                    with torch.inference_mode():
                        l = time_python(lambda: tm(xt), b)
                est[(e, b)] = float(np.median(l))
                lat[(e, b)] += l
                ips[(e, b)].append(b * 1e3 * len(l) / sum(l))
        print(f"race_cpu: round {r + 1}/{a.rounds} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
    load_after = os.getloadavg()

    cpu = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    result = {"bundle": a.bundle, "onnx": onnx_path, "threads": a.threads, "img": size, "cpu": cpu,
              "load_1min_before": load_before[0], "load_1min_after": load_after[0], "rounds": a.rounds,
              "onnxruntime": ort.__version__, "rows": []}
    try:
        import torch
        import torchvision
        result["torch"] = torch.__version__
        result["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    print(f"\nCPU race: {a.bundle} at {size} px, {a.threads} threads, {a.rounds} interleaved rounds; {cpu}; "
          f"load {load_before[0]:.2f} -> {load_after[0]:.2f}")
    print("| engine | batch | images/s | p50 ms | p99 ms | vs onnxruntime |")
    print("|---|---:|---:|---:|---:|---:|")
    for b in batches:
        base = stats(lat[("onnxruntime", b)], b, ips[("onnxruntime", b)])["images_per_s"] if "onnxruntime" in engines else None
        for e in engines:
            s = stats(lat[(e, b)], b, ips[(e, b)])
            s.update({"engine": e, "batch": b})
            result["rows"].append(s)
            ratio = f"{s['images_per_s'] / base:.2f}x" if base else ""
            print(f"| {e} | {b} | {s['images_per_s']:.1f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {ratio} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
