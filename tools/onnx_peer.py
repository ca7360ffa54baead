#!/usr/bin/env python3
"""tools/onnx_peer.py — the peer check of retikd's ONNX export: runs an exported model with onnxruntime (PyPI
onnxruntime + numpy) on inputs retikd wrote, and writes onnxruntime's outputs back for the C++ test to compare.
Never used by the library or the examples at run time; tests/test_onnx.cpp and docs/deploy.md call it.

    onnx_peer.py MODEL.onnx --input X.f32 --output Y.f32 [--threads N] [--check]
    onnx_peer.py --run MODEL X Y [--run MODEL X Y ...] [--threads N] [--check]     (several models, one start-up)

X.f32: raw little-endian float32 of the model's input in NCHW order, a whole number of images (the batch is the
byte count over one image's; a model with a fixed batch must get exactly that). Y.f32: the first output, raw
float32. --check also runs onnx.checker.check_model(model, full_check=True) when the onnx package is installed.
Prints one JSON line per model: onnxruntime's version, the providers used, input and output shapes.
Exit status: 0 done, 1 a failure (message on stderr), 3 onnxruntime or numpy missing (the C++ test then fails
under CI and skips elsewhere).
"""
import argparse
import json
import sys


def run_one(ort, np, onnx, model, x_path, y_path, threads):
    if onnx is not None:
        onnx.checker.check_model(onnx.load(model), full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    per_image = 1
    for d in inp.shape[1:]:
        if not isinstance(d, int):
            raise ValueError(f"{model}: input dimension {d} is symbolic beyond the batch")
        per_image *= d
    x = np.fromfile(x_path, dtype="<f4")
    if x.size == 0 or x.size % per_image:
        raise ValueError(f"{x_path} holds {x.size} floats, not a whole number of {per_image}-float images")
    x = x.reshape([x.size // per_image] + list(inp.shape[1:]))
    if isinstance(inp.shape[0], int) and inp.shape[0] != x.shape[0]:
        raise ValueError(f"{model}: the model's batch is {inp.shape[0]}, the input has {x.shape[0]} images")
    y = sess.run(None, {inp.name: x})[0]
    np.ascontiguousarray(y, dtype="<f4").tofile(y_path)
    print(json.dumps({"model": model, "onnxruntime": ort.__version__, "providers": sess.get_providers(),
                      "input": list(x.shape), "output": list(y.shape)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--input")
    ap.add_argument("--output")
    ap.add_argument("--run", nargs=3, action="append", default=[], metavar=("MODEL", "X", "Y"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    jobs = list(a.run)
    if a.model:
        if not a.input or not a.output:
            ap.error("MODEL needs --input and --output")
        jobs.append((a.model, a.input, a.output))
    if not jobs:
        ap.error("nothing to run: give MODEL --input X --output Y, or --run MODEL X Y")
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"onnx_peer: {e} (pip install onnxruntime numpy)", file=sys.stderr)
        return 3
    onnx = None
    if a.check:
        try:
            import onnx
        except ImportError:
            onnx = None
    for model, x_path, y_path in jobs:
        try:
            run_one(ort, np, onnx, model, x_path, y_path, a.threads)
        except Exception as e:  # one line naming the model, for the C++ test's message
            print(f"onnx_peer: {model}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
