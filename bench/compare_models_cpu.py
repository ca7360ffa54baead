#!/usr/bin/env python3
"""bench/compare_models_cpu.py - retikd's retikd_bench_models against bench/bench_models_torch.py on the same CPU,
interleaved: for every round and model, retikd's train step and eval forward, then PyTorch's, so both see the
same background load. Prints every round, the medians, retikd / PyTorch, and the load average around each run
(docs/results.md quotes its output). Python and torch are only the peer here, never used by the library.

    python3 bench/compare_models_cpu.py --bench build/release/bench/retikd_bench_models \\
        --threads 2 --rounds 5 --seconds 5 --models vit_tiny,vit_small_patch14

--bench may be given several times as LABEL=PATH (e.g. an older build as before=PATH): each is run in every
round, and the ratio column uses the first.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    get = lambda k: fields.get(k, "?").strip()
    return (f"{get('Model name')}, family {get('CPU family')} model {get('Model')}, {get('CPU(s)')} CPUs, "
            f"{get('Hypervisor vendor') + ' guest' if 'Hypervisor vendor' in fields else 'bare metal'}")


def run_retikd(bench, model, threads, seconds):
    env = dict(os.environ, RETIKD_NUM_THREADS=str(threads))
    cmd = [bench, f"--benchmark_filter=^BM_(train_step|eval_forward)/{model}/", f"--benchmark_min_time={seconds}",
           "--benchmark_format=json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        kind = "train" if b["name"].startswith("BM_train_step") else "eval"
        assert b["time_unit"] == "ms", b["time_unit"]
        result[kind] = b["images/s"]
        result[kind + "_cpu_ms"] = b["cpu_time"]  # process CPU time per step, all threads
    return result


def run_torch(script, model, threads, seconds):
    cmd = [sys.executable, script, "--threads", str(threads), "--seconds", str(seconds), "--models", model]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result, header = {}, out.splitlines()[0]
    for line in out.splitlines():
        m = re.match(r"(train_step|eval_forward)/(\S+): .*\(CPU ([0-9.]+) ms\), ([0-9.]+) images/s", line)
        if m:
            kind = "train" if m.group(1) == "train_step" else "eval"
            result[kind] = float(m.group(4))
            result[kind + "_cpu_ms"] = float(m.group(3))
    return result, header


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, action="append", help="[LABEL=]path to retikd_bench_models")
    ap.add_argument("--torch-script", default=os.path.join(here, "bench_models_torch.py"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--models", default="vit_tiny,vit_small_patch14")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; threads {args.threads}; rounds {args.rounds}; {args.seconds} s per figure")
    benches = [b.split("=", 1) if "=" in b else ("retikd", b) for b in args.bench]
    samples = {}  # (model, kind, lib) -> [images/s]
    loads = []
    torch_header = ""
    for r in range(args.rounds):
        for model in args.models.split(","):
            before = os.getloadavg()[0]
            line = []
            for label, path in benches:
                ours = run_retikd(path, model, args.threads, args.seconds)
                for kind in ("train", "eval", "train_cpu_ms", "eval_cpu_ms"):
                    samples.setdefault((model, kind, label), []).append(ours[kind])
                line.append(f"{label} train {ours['train']:.2f} eval {ours['eval']:.2f}")
            theirs, torch_header = run_torch(args.torch_script, model, args.threads, args.seconds)
            after = os.getloadavg()[0]
            loads += [before, after]
            for kind in ("train", "eval", "train_cpu_ms", "eval_cpu_ms"):
                samples.setdefault((model, kind, "torch"), []).append(theirs[kind])
            line.append(f"torch train {theirs['train']:.2f} eval {theirs['eval']:.2f}")
            print(f"round {r + 1} {model}: " + " | ".join(line) + f" images/s (load {before:.2f} -> {after:.2f})",
                  flush=True)
    print(torch_header)
    print(f"load average (1 min) around the runs: min {min(loads):.2f}, median {statistics.median(loads):.2f}, "
          f"max {max(loads):.2f}")
    labels = [label for label, _ in benches]
    print(f"| batch 8, 224 px, {args.threads} threads | " + " | ".join(f"{l} images/s" for l in labels) +
          f" | PyTorch images/s | {labels[0]} / PyTorch |")
    print("| --- " * (len(labels) + 3) + "|")
    for model in args.models.split(","):
        for kind in ("train", "eval"):
            ours = [statistics.median(samples[(model, kind, l)]) for l in labels]
            b = statistics.median(samples[(model, kind, "torch")])
            label = "train step (fwd + CE + bwd)" if kind == "train" else "eval forward"
            print(f"| {model} {label} | " + " | ".join(f"{a:.2f}" for a in ours) + f" | {b:.2f} | {ours[0] / b:.2f}x |")
    # On a loaded machine wall time mostly measures the scheduler; process CPU time per step (all threads)
    # is the steadier figure of how much work each library does.
    print()
    print(f"| process CPU ms per step, {args.threads} threads | " + " | ".join(labels) + " | PyTorch | PyTorch / " +
          f"{labels[0]} |")
    print("| --- " * (len(labels) + 3) + "|")
    for model in args.models.split(","):
        for kind in ("train", "eval"):
            ours = [statistics.median(samples[(model, kind + "_cpu_ms", l)]) for l in labels]
            b = statistics.median(samples[(model, kind + "_cpu_ms", "torch")])
            label = "train step" if kind == "train" else "eval forward"
            print(f"| {model} {label} | " + " | ".join(f"{a:.1f}" for a in ours) + f" | {b:.1f} | {b / ours[0]:.2f}x |")


if __name__ == "__main__":
    main()
