#!/usr/bin/env python3
"""tools/onnx_peer.py — the peer check of retikd's ONNX export: runs an exported model with onnxruntime (PyPI
onnxruntime + numpy) on inputs retikd wrote, and writes onnxruntime's outputs back for the C++ test to compare.
Never used by the library or the examples at run time; tests/test_onnx.cpp and docs/deploy.md call it.

    onnx_peer.py MODEL.onnx --input X.f32 --output Y.f32 [--threads N] [--check]

X.f32: raw little-endian float32 of the model's input in NCHW order, a whole number of images (the batch is the
byte count over one image's; a model with a fixed batch must get exactly that). Y.f32: the first output, raw
float32. --check also runs onnx.checker.check_model(model, full_check=True) when the onnx package is installed.
Prints one JSON line: onnxruntime's version, the providers used, input and output shapes.
Exit status: 0 done, 1 a failure (message on stderr), 3 onnxruntime or numpy missing (the C++ test then fails
under CI and skips elsewhere).
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"onnx_peer: {e} (pip install onnxruntime numpy)", file=sys.stderr)
        return 3
    if a.check:
        try:
            import onnx
        except ImportError:
            onnx = None
        if onnx is not None:
            onnx.checker.check_model(onnx.load(a.model), full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    per_image = 1
    for d in inp.shape[1:]:
        if not isinstance(d, int):
            print(f"onnx_peer: input dimension {d} is symbolic beyond the batch", file=sys.stderr)
            return 1
        per_image *= d
    x = np.fromfile(a.input, dtype="<f4")
    if x.size == 0 or x.size % per_image:
        print(f"onnx_peer: {a.input} holds {x.size} floats, not a whole number of {per_image}-float images",
              file=sys.stderr)
        return 1
    x = x.reshape([x.size // per_image] + list(inp.shape[1:]))
    if isinstance(inp.shape[0], int) and inp.shape[0] != x.shape[0]:
        print(f"onnx_peer: the model's batch is {inp.shape[0]}, the input has {x.shape[0]} images", file=sys.stderr)
        return 1
    y = sess.run(None, {inp.name: x})[0]
    np.ascontiguousarray(y, dtype="<f4").tofile(a.output)
    print(json.dumps({"onnxruntime": ort.__version__, "providers": sess.get_providers(),
                      "input": list(x.shape), "output": list(y.shape)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
