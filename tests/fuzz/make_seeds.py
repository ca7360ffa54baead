#!/usr/bin/env python3
# tests/fuzz/make_seeds.py — writes the fuzz seeds that need encoders retikd does not have: small synthetic
# JPEGs (baseline, progressive, grey, 4:2:0, restart markers) and PNGs (interlaced, palette with
# transparency, 1-bit, 16-bit) with PIL, and two tiny TFLite models (a quantized CONV_2D / AVERAGE_POOL_2D /
# RESHAPE / FULLY_CONNECTED / SOFTMAX chain, and a float DEPTHWISE_CONV_2D / ADD / MEAN / SQUEEZE one) built
# field by field with the flatbuffers package, following the schema ids listed at the top of
# include/retikd/io/tflite.hpp. The images are drawn here (gradients and a disc): no fundus photograph is
# ever copied into the repository. The other seeds come from tests/fuzz/make_seeds.cpp (scripts/fuzz.sh
# --make-seeds runs both). Python is used only to make these files; nothing reads it at run time.
import io
import os
import struct
import sys

import zlib

import flatbuffers
import numpy as np
from PIL import Image

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def picture(w, h):
    y, x = np.mgrid[0:h, 0:w]
    r = ((x * 255) // max(1, w - 1)).astype(np.uint8)
    g = ((y * 255) // max(1, h - 1)).astype(np.uint8)
    b = (((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2) * 200).astype(np.uint8)
    return Image.fromarray(np.stack([r, g, b], axis=2), "RGB")


def encoded(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def adam7_png(img):
    """An interlaced (Adam7) 8-bit RGB PNG; PIL writes only non-interlaced ones."""
    a = np.asarray(img)
    h, w = a.shape[:2]
    raw = b""
    for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)]:
        sub = a[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.tobytes()

    def chunk(t, body):
        return struct.pack(">I", len(body)) + t + body + struct.pack(">I", zlib.crc32(t + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def images():
    p = picture(24, 16)
    put("image", "baseline.jpg", encoded(p, "JPEG", quality=60))
    put("image", "progressive.jpg", encoded(p, "JPEG", quality=60, progressive=True))
    put("image", "grey.jpg", encoded(p.convert("L"), "JPEG", quality=60))
    put("image", "subsampled_420.jpg", encoded(picture(17, 13), "JPEG", quality=50, subsampling=2))
    put("image", "restart.jpg", encoded(p, "JPEG", quality=50, restart_marker_blocks=1))
    put("image", "rgb.png", encoded(p, "PNG"))
    put("image", "interlaced.png", adam7_png(p))
    pal = p.convert("P", palette=Image.ADAPTIVE, colors=16)
    put("image", "palette_trns.png", encoded(pal, "PNG", transparency=3))
    put("image", "one_bit.png", encoded(p.convert("1"), "PNG"))
    put("image", "grey_alpha.png", encoded(p.convert("LA"), "PNG"))
    put("image", "rgba.png", encoded(p.convert("RGBA"), "PNG"))
    sixteen = Image.fromarray(np.asarray(p.convert("L"), dtype=np.uint16) * 257)
    put("image", "grey16.png", encoded(sixteen, "PNG"))


# ---- TFLite --------------------------------------------------------------------------------------------------

def vector(b, items, kind, elem, align):
    b.StartVector(elem, len(items), align)
    for v in reversed(items):
        {"i32": b.PrependInt32, "i64": b.PrependInt64, "f32": b.PrependFloat32, "u8": b.PrependUint8,
         "off": b.PrependUOffsetTRelative}[kind](v)
    return b.EndVector()


def table(b, fields):
    """fields: list of (slot, kind, value); kinds: off, i8, u8, i32, u32, f32."""
    b.StartObject(max(s for s, _, _ in fields) + 1 if fields else 0)
    for slot, kind, value in fields:
        if kind == "off":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "i8":
            b.PrependInt8Slot(slot, value, -128)
        elif kind == "u8":
            b.PrependUint8Slot(slot, value, 255)
        elif kind == "i32":
            b.PrependInt32Slot(slot, value, -(2 ** 31))
        elif kind == "u32":
            b.PrependUint32Slot(slot, value, 2 ** 32 - 1)
        elif kind == "f32":
            b.PrependFloat32Slot(slot, value, float("nan"))
    return b.EndObject()


def tflite_model(tensors, buffers, opcodes, operators, inputs, outputs):
    """tensors: (name, shape, type, buffer, quant or None); buffers: list of bytes; opcodes: builtin codes;
    operators: (opcode index, inputs, outputs, options type, options builder or None)."""
    b = flatbuffers.Builder(1024)
    buf_offs = []
    for data in buffers:
        if data:
            d = vector(b, list(data), "u8", 1, 16)
            buf_offs.append(table(b, [(0, "off", d)]))
        else:
            buf_offs.append(table(b, []))
    tensor_offs = []
    for name, shape, ttype, buffer, quant in tensors:
        n = b.CreateString(name)
        s = vector(b, shape, "i32", 4, 4)
        q = None
        if quant is not None:
            scale, zp, dim = quant
            sc = vector(b, scale, "f32", 4, 4)
            z = vector(b, zp, "i64", 8, 8)
            q = table(b, [(2, "off", sc), (3, "off", z), (6, "i32", dim)])
        fields = [(0, "off", s), (1, "i8", ttype), (2, "u32", buffer), (3, "off", n)]
        if q is not None:
            fields.append((4, "off", q))
        tensor_offs.append(table(b, fields))
    op_offs = []
    for idx, ins, outs, otype, options in operators:
        i = vector(b, ins, "i32", 4, 4)
        o = vector(b, outs, "i32", 4, 4)
        fields = [(0, "u32", idx), (1, "off", i), (2, "off", o)]
        if options is not None:
            opt = options(b)
            fields += [(3, "u8", otype), (4, "off", opt)]
        op_offs.append(table(b, fields))
    code_offs = [table(b, [(0, "i8", min(code, 127)), (2, "i32", 1), (3, "i32", code)]) for code in opcodes]
    t = vector(b, tensor_offs, "off", 4, 4)
    ins = vector(b, inputs, "i32", 4, 4)
    outs = vector(b, outputs, "i32", 4, 4)
    ops = vector(b, op_offs, "off", 4, 4)
    name = b.CreateString("main")
    sg = table(b, [(0, "off", t), (1, "off", ins), (2, "off", outs), (3, "off", ops), (4, "off", name)])
    sgs = vector(b, [sg], "off", 4, 4)
    codes = vector(b, code_offs, "off", 4, 4)
    bufs = vector(b, buf_offs, "off", 4, 4)
    desc = b.CreateString("retikd fuzz seed")
    model = table(b, [(0, "u32", 3), (1, "off", codes), (2, "off", sgs), (3, "off", desc), (4, "off", bufs)])
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())


def quantized_chain():
    rng = np.random.default_rng(0)
    conv_w = rng.integers(0, 255, size=(2, 1, 1, 3), dtype=np.uint8).tobytes()
    conv_b = struct.pack("<2i", 10, -5)
    fc_w = rng.integers(0, 255, size=(3, 2), dtype=np.uint8).tobytes()
    fc_b = struct.pack("<3i", 1, 2, 3)
    shape = struct.pack("<2i", 1, 2)
    u8, i32, f32 = 3, 2, 0
    q = lambda s, z: ([s], [z], 0)
    tensors = [
        ("input", [1, 4, 4, 3], u8, 0, q(1 / 255, 0)),
        ("conv_w", [2, 1, 1, 3], u8, 1, ([0.02, 0.03], [128, 120], 0)),
        ("conv_b", [2], i32, 2, ([0.0001, 0.0001], [0, 0], 0)),
        ("conv_out", [1, 4, 4, 2], u8, 0, q(0.05, 10)),
        ("pool_out", [1, 1, 1, 2], u8, 0, q(0.05, 10)),
        ("shape", [2], i32, 3, None),
        ("flat", [1, 2], u8, 0, q(0.05, 10)),
        ("fc_w", [3, 2], u8, 4, q(0.01, 128)),
        ("fc_b", [3], i32, 5, q(0.0005, 0)),
        ("logits", [1, 3], u8, 0, q(0.1, 128)),
        ("probs", [1, 3], u8, 0, q(1 / 256, 0)),
    ]
    buffers = [b"", conv_w, conv_b, shape, fc_w, fc_b]
    opcodes = [3, 1, 22, 9, 25]  # CONV_2D, AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED, SOFTMAX

    def conv(b):
        return table(b, [(0, "i8", 0), (1, "i32", 1), (2, "i32", 1), (3, "i8", 3)])

    def pool(b):
        return table(b, [(0, "i8", 1), (1, "i32", 4), (2, "i32", 4), (3, "i32", 4), (4, "i32", 4)])

    def reshape(b):
        return table(b, [(0, "off", vector(b, [1, 2], "i32", 4, 4))])

    def fc(b):
        return table(b, [(0, "i8", 0)])

    def softmax(b):
        return table(b, [(0, "f32", 1.0)])

    operators = [(0, [0, 1, 2], [3], 1, conv), (1, [3], [4], 5, pool), (2, [4, 5], [6], 17, reshape),
                 (3, [6, 7, 8], [9], 8, fc), (4, [9], [10], 9, softmax)]
    return tflite_model(tensors, buffers, opcodes, operators, [0], [10])


def float_branch():
    rng = np.random.default_rng(1)
    dw = rng.standard_normal((1, 3, 3, 2)).astype(np.float32).tobytes()
    dwb = np.array([0.1, -0.2], dtype=np.float32).tobytes()
    axes = struct.pack("<2i", 1, 2)
    f32, i32 = 0, 2
    tensors = [
        ("x", [1, 5, 5, 2], f32, 0, None),
        ("dw_w", [1, 3, 3, 2], f32, 1, None),
        ("dw_b", [2], f32, 2, None),
        ("dw_out", [1, 5, 5, 2], f32, 0, None),
        ("sum", [1, 5, 5, 2], f32, 0, None),
        ("axes", [2], i32, 3, None),
        ("mean", [1, 1, 1, 2], f32, 0, None),
        ("out", [1, 2], f32, 0, None),
    ]
    buffers = [b"", dw, dwb, axes]
    opcodes = [4, 0, 40, 43]  # DEPTHWISE_CONV_2D, ADD, MEAN, SQUEEZE

    def dwconv(b):
        return table(b, [(0, "i8", 0), (1, "i32", 1), (2, "i32", 1), (3, "i32", 1), (4, "i8", 1)])

    def add(b):
        return table(b, [(0, "i8", 0)])

    def mean(b):
        return table(b, [(0, "u8", 1)])

    def squeeze(b):
        return table(b, [(0, "off", vector(b, [1, 2], "i32", 4, 4))])

    operators = [(0, [0, 1, 2], [3], 2, dwconv), (1, [3, 0], [4], 11, add), (2, [4, 5], [6], 27, mean),
                 (3, [6], [7], 30, squeeze)]
    return tflite_model(tensors, buffers, opcodes, operators, [0], [7])


def texts():
    docs = {
        "safetensors_header.json": '{"__metadata__":{"format":"pt","k":"v"},"w":{"dtype":"F32","shape":[2,3],'
                                   '"data_offsets":[0,24]},"b":{"dtype":"F16","shape":[],"data_offsets":[24,26]}}',
        "values.json": '[null,true,false,0,-0,1.5e-3,-12E+4,123456789012345678901234567890,"",{},[]]',
        "strings.json": '{"esc":"\\"\\\\\\/\\b\\f\\n\\r\\t","u":"\\u00e9\\u20ac\\ud83d\\ude00","utf8":"\u00e9\u20ac\U0001f600"}',
        "nested.json": '{"a":{"b":{"c":[[1,[2,[3,{"d":[]}]]]]}},"e":[{"f":null}]}',
        "bundle_classes.json": '["Cataract","DR","Glaucoma","Normal"]',
        "preprocess.json": '{"fundus_crop":true,"resize":256,"crop":224,"mean":[0.485,0.456,0.406],'
                           '"std":[0.229,0.224,0.225]}',
        "many_keys.json": "{" + ",".join('"k%03d":%d' % (i, i) for i in range(40)) + "}",
    }
    for name, text in docs.items():
        put("json", name, text.encode("utf-8"))
    rows = {
        "split.tsv": "path\tlabel\tsplit\tgroup\n"
                     "images/a.png\tnormal\ttrain\tg1\n"
                     "images/b.png\tCataract\ttest\tg2\n"
                     "images/sub/c.png\tdiabetic_retinopathy\tval\tg3\n"
                     "images/alias.png\t2\tvalidation\tg3\n"
                     "images/./a.png\tglaucoma\ttest\tg1\n"
                     "images/x.png\tnormal\texcluded\tg4\n",
        "escapes.tsv": "image\tclass\tsplit\n"
                       "../outside.png\tnormal\ttrain\n"
                       "/etc/hostname\tnormal\ttrain\n"
                       "images/etc/passwd\tnormal\ttrain\n"
                       "images//b.png\tdr\ttrain\n"
                       "images/missing.png\tnormal\ttrain\n"
                       "images/a.png\tretinitis\ttrain\n"
                       "images/a.png\tnormal\tholdout\n"
                       "images/a.png\tnormal\n",
        "quoted.csv": "\ufeffsplit,\"path\",label\r\n"
                      "train,\"images/a.png\",normal\r\n"
                      "test,\"images/sub/c.png\",\"Glaucoma\"\r\n"
                      "val,\"images/\"\"b\"\".png\",dr\r\n"
                      "\r\n"
                      "train,images/b.png,3\r\n",
    }
    for name, text in rows.items():
        put("manifest", name, text.encode("utf-8"))


def safetensors_file(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    import json
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (len(h) + 8) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    f32 = np.arange(6, dtype=np.float32).tobytes()
    put("safetensors", "mixed.safetensors", safetensors_file([
        ("w", "F32", [2, 3], f32),
        ("h", "F16", [2], np.array([1.5, -2.0], dtype=np.float16).tobytes()),
        ("bf", "BF16", [2], struct.pack("<2H", 0x3F80, 0xC000)),
        ("d", "F64", [1], struct.pack("<d", 3.25)),
        ("i", "I32", [3], struct.pack("<3i", 1, -2, 3)),
        ("l", "I64", [], struct.pack("<q", -7)),
        ("empty", "F32", [0, 4], b""),
    ], {"format": "pt", "note": "fuzz seed"}))
    put("safetensors", "one.safetensors", safetensors_file([("x", "F32", [1], struct.pack("<f", 1.0))]))
    put("safetensors", "metadata_only.safetensors", safetensors_file([], {"retikd.bundle": "1"}))
    put("safetensors", "unsupported_dtype.safetensors", safetensors_file([("u", "U8", [2], b"\x01\x02")]))


def int8_per_channel():
    """INT8 per-channel CONV_2D (RELU6), MAX_POOL_2D, then DEQUANTIZE to float."""
    rng = np.random.default_rng(2)
    w = rng.integers(-127, 127, size=(3, 2, 2, 2), dtype=np.int8).tobytes()
    bias = struct.pack("<3i", 7, -3, 0)
    i8, i32, f32 = 9, 2, 0
    tensors = [
        ("in", [1, 3, 3, 2], i8, 0, ([0.02], [-1], 0)),
        ("w", [3, 2, 2, 2], i8, 1, ([0.01, 0.02, 0.03], [0, 0, 0], 0)),
        ("b", [3], i32, 2, ([0.0002, 0.0004, 0.0006], [0, 0, 0], 0)),
        ("conv", [1, 2, 2, 3], i8, 0, ([0.05], [-128], 0)),
        ("pool", [1, 1, 1, 3], i8, 0, ([0.05], [-128], 0)),
        ("out", [1, 1, 1, 3], f32, 0, None),
    ]
    opcodes = [3, 17, 6]  # CONV_2D, MAX_POOL_2D, DEQUANTIZE

    def conv(b):
        return table(b, [(0, "i8", 1), (1, "i32", 1), (2, "i32", 1), (3, "i8", 3), (4, "i32", 1), (5, "i32", 1)])

    def pool(b):
        return table(b, [(0, "i8", 1), (1, "i32", 2), (2, "i32", 2), (3, "i32", 2), (4, "i32", 2)])

    operators = [(0, [0, 1, 2], [3], 1, conv), (1, [3], [4], 5, pool), (2, [4], [5], 0, None)]
    return tflite_model(tensors, [b"", w, bias], opcodes, operators, [0], [5])


if __name__ == "__main__":
    texts()
    safetensors_seeds()
    images()
    put("tflite", "quantized_chain.tflite", quantized_chain())
    put("tflite", "float_branch.tflite", float_branch())
    put("tflite", "int8_per_channel.tflite", int8_per_channel())
    print("make_seeds.py: wrote the json, manifest, safetensors, image and tflite seeds under", OUT)
