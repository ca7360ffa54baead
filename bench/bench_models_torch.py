#!/usr/bin/env python3
"""bench/bench_models_torch.py - the PyTorch CPU counterpart of bench/bench_models.cpp, for comparison only:
one training step's compute (forward, cross-entropy, backward; no optimizer update) and an eval forward of
torchvision's MobileNetV2 and timm's vit_tiny_patch16_224, 4 classes, batch 8, 224 px, float32, training mode.
Needs torch, torchvision and timm (not a dependency of retikd). Same thread count as the C++ run:

    python3 bench/bench_models_torch.py --threads 2 --seconds 10
"""
import argparse
import time

import timm
import torch
import torch.nn.functional as F
import torchvision


def timed(fn, seconds):
    """(wall seconds, process CPU seconds) per call, after one warm-up call."""
    fn()
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 3:
            return elapsed / n, (time.process_time() - cpu) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    t = torch.arange(args.batch) % 4
    models = {"mobilenet_v2": torchvision.models.mobilenet_v2(weights=None, num_classes=4),
              "vit_tiny": timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4)}
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, "
          f"threads {torch.get_num_threads()}, batch {args.batch}, 224 px")
    for name, m in models.items():
        m.train()

        def step():
            m.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), t).backward()

        s, c = timed(step, args.seconds)
        print(f"train_step/{name}: {s * 1e3:.1f} ms/iter (CPU {c * 1e3:.1f} ms), {args.batch / s:.2f} images/s")
        m.eval()

        def fwd():
            with torch.no_grad():
                m(x)

        s, c = timed(fwd, args.seconds)
        print(f"eval_forward/{name}: {s * 1e3:.1f} ms/iter (CPU {c * 1e3:.1f} ms), {args.batch / s:.2f} images/s")


if __name__ == "__main__":
    main()
