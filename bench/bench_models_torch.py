#!/usr/bin/env python3
"""bench/bench_models_torch.py - the PyTorch CPU counterpart of bench/bench_models.cpp, for comparison only:
one training step's compute (forward, cross-entropy, backward; no optimizer update) and an eval forward of
torchvision's MobileNetV2, timm's vit_tiny_patch16_224 and a ViT-S/14 at 224 px (timm's VisionTransformer with
vit_small_patch14_dinov2's shape: patch 14, 384 wide, 12 deep, 6 heads; no LayerScale, like the C++ bench),
4 classes, batch 8, 224 px, float32, training mode. Needs torch, torchvision and timm (not a dependency of
retikd). Same thread count as the C++ run:

    python3 bench/bench_models_torch.py --threads 2 --seconds 10 [--models vit_tiny,vit_small_patch14]
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
    ap.add_argument("--models", default="mobilenet_v2,vit_tiny,vit_small_patch14",
                    help="comma-separated subset of mobilenet_v2, vit_tiny, vit_small_patch14")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    t = torch.arange(args.batch) % 4
    factories = {
        "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None, num_classes=4),
        "vit_tiny": lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4),
        "vit_small_patch14": lambda: timm.models.vision_transformer.VisionTransformer(
            img_size=224, patch_size=14, embed_dim=384, depth=12, num_heads=6, num_classes=4),
    }
    models = {name: factories[name]() for name in args.models.split(",")}
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
