#!/usr/bin/env python3
"""bench/compare_models_cpu.py - retikd's retikd_bench_models against bench/bench_models_torch.py on the same CPU,
interleaved: for every round and model, retikd's train step and eval forward, then PyTorch's, so both see the
same background load. Prints every round, the medians, retikd / PyTorch, and the load average around each run
(docs/results.md quotes its output). Python and torch are only the peer here, never used by the library.

    python3 bench/compare_models_cpu.py --bench build/release/bench/retikd_bench_models \\
        --threads 2 --rounds 5 --seconds 5 --models vit_tiny,vit_small_patch14
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
        result[kind] = b["images/s"]
    return result


def run_torch(script, model, threads, seconds):
    cmd = [sys.executable, script, "--threads", str(threads), "--seconds", str(seconds), "--models", model]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result, header = {}, out.splitlines()[0]
    for line in out.splitlines():
        m = re.match(r"(train_step|eval_forward)/(\S+): .*, ([0-9.]+) images/s", line)
        if m:
            result["train" if m.group(1) == "train_step" else "eval"] = float(m.group(3))
    return result, header


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="path to retikd_bench_models")
    ap.add_argument("--torch-script", default=os.path.join(here, "bench_models_torch.py"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--models", default="vit_tiny,vit_small_patch14")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; threads {args.threads}; rounds {args.rounds}; {args.seconds} s per figure")
    samples = {}  # (model, kind, lib) -> [images/s]
    loads = []
    torch_header = ""
    for r in range(args.rounds):
        for model in args.models.split(","):
            before = os.getloadavg()[0]
            ours = run_retikd(args.bench, model, args.threads, args.seconds)
            theirs, torch_header = run_torch(args.torch_script, model, args.threads, args.seconds)
            after = os.getloadavg()[0]
            loads += [before, after]
            for kind in ("train", "eval"):
                samples.setdefault((model, kind, "retikd"), []).append(ours[kind])
                samples.setdefault((model, kind, "torch"), []).append(theirs[kind])
            print(f"round {r + 1} {model}: retikd train {ours['train']:.2f} eval {ours['eval']:.2f} | torch train "
                  f"{theirs['train']:.2f} eval {theirs['eval']:.2f} images/s (load {before:.2f} -> {after:.2f})",
                  flush=True)
    print(torch_header)
    print(f"load average (1 min) around the runs: min {min(loads):.2f}, median {statistics.median(loads):.2f}, "
          f"max {max(loads):.2f}")
    print("| batch 8, 224 px, %d threads | retikd images/s | PyTorch images/s | retikd / PyTorch |" % args.threads)
    print("| --- | --- | --- | --- |")
    for model in args.models.split(","):
        for kind in ("train", "eval"):
            a = statistics.median(samples[(model, kind, "retikd")])
            b = statistics.median(samples[(model, kind, "torch")])
            label = "train step (fwd + CE + bwd)" if kind == "train" else "eval forward"
            print(f"| {model} {label} | {a:.2f} | {b:.2f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
