#!/usr/bin/env python3
"""tools/golden/make_golden.py - writes the PyTorch golden files of tests/golden/ that tests/test_golden.cpp
checks retikd against (issue 3, item 8). Run by hand, never by CI; torch, torchvision and timm are needed
here only, never by the library or its tests:

    python3 tools/golden/make_golden.py            # rewrites tests/golden/*.safetensors

Weights are not stored (a full-size ResNet18 is 45 MB): every parameter, buffer and model input is drawn
from a counter-based generator that tests/test_golden.cpp implements bit for bit - FNV-1a 64 of the tensor's
state-dict name, splitmix64 of (that hash + (i + 1) * golden gamma) for element i, the top 53 bits as a
double u in [-1, 1), value = center + scale * u rounded to float32 (see init_rule for center and scale).
Both sides therefore fill the same tensor names with the same values, and a name that differs between
retikd and torchvision / timm gives different values and a failing test.

References are computed in float64 from those float32 values (so the reference carries no float32 rounding
of its own) and stored as float32. Each model file holds the eval-mode logits, and a train-mode pass
(batch-norm on batch statistics, dropout and stochastic depth switched off): logits, the cross-entropy loss,
the input gradient, every BN running statistic after the pass (as probes) and every parameter's gradient -
in full for small tensors, otherwise as probes: two dot products with generator vectors ("probe1:<name>",
"probe2:<name>") and the L2 norm. The layer file stores its small inputs and weights directly.
"""
import copy
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import timm
from safetensors.torch import save_file
from timm.models.vision_transformer import Attention, VisionTransformer
from torchvision.ops import SqueezeExcitation

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")
FULL_GRAD_LIMIT = 256  # parameters with at most this many elements get their whole gradient stored
MASK64 = (1 << 64) - 1


# ---- the deterministic generator (mirrored in tests/test_golden.cpp) -------------------------------------
def fnv1a64(name):
    h = 0xCBF29CE484222325
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & MASK64
    return h


def uniform(name, n):
    """n doubles in [-1, 1) for element indices 0..n-1 of the tensor called `name`."""
    h = np.uint64(fnv1a64(name))
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = h + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53) * 2.0 - 1.0


def init_rule(name, shape):
    """(center, scale) of a tensor's values. Scales with a nonzero center are powers of two, so
    center + scale * u is exact in double and a fused multiply-add cannot change the float32 result."""
    if name.endswith("running_mean"):
        return 0.0, 0.125
    if name.endswith("running_var"):
        return 1.0, 0.5
    if name.endswith("weight") and len(shape) == 1:  # BatchNorm / LayerNorm scale
        return 1.0, 0.25
    if name.endswith("weight") and len(shape) >= 2:  # Linear / Conv: kaiming-uniform bound sqrt(6 / fan_in)
        fan_in = int(np.prod(shape[1:]))
        return 0.0, math.sqrt(6.0 / fan_in)
    if name.startswith("input"):
        return 0.0, 1.0
    return 0.0, 0.125  # biases, cls_token, pos_embed


def generated(name, shape):
    """The float32 tensor the generator gives `name` (num_batches_tracked: zero)."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape)) if shape else 1
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    center, scale = init_rule(name, shape)
    v = (center + scale * uniform(name, n)).astype(np.float32)
    return torch.from_numpy(v.reshape(shape))


def fill_generated(model):
    """Loads the generated values into every parameter and buffer, strictly, by state-dict name."""
    sd = {k: generated(k, v.shape).to(v.dtype if v.dtype == torch.int64 else torch.float64)
          for k, v in model.state_dict().items()}
    model.load_state_dict(sd, strict=True)


def probes(name, g):
    g = g.detach().double().reshape(-1).numpy()
    r1, r2 = uniform("probe1:" + name, g.size), uniform("probe2:" + name, g.size)
    return torch.tensor([float(g @ r1), float(g @ r2), float(np.sqrt(g @ g))], dtype=torch.float32)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def noise_off(model):
    """Dropout and stochastic depth to eval mode (their masks cannot be reproduced across libraries)."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, torchvision.ops.StochasticDepth, timm.layers.DropPath)):
            m.eval()


def state_dict_listing(model):
    return ";".join(f"{k}:{'x'.join(str(s) for s in v.shape)}" for k, v in model.state_dict().items())


def versions():
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "python": sys.version.split()[0]}


def save(name, tensors, meta):
    os.makedirs(OUT, exist_ok=True)
    meta = dict(meta, **versions(), generator="tools/golden/make_golden.py")
    path = os.path.join(OUT, name + ".safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


# ---- models -----------------------------------------------------------------------------------------------
KINK_MARGIN = 2e-6  # float32 forward error of a deep activation is well below this


def kink_distance(model, x, targets):
    """The smallest distance, over the eval and the train pass, of a ReLU / ReLU6 input to its kinks (0, 6)
    and of a max-pool window's two largest values to each other. Below float32 forward error, float32 and
    float64 take different sides and a gradient differs by a whole term: such an input is not used."""
    worst = [math.inf]

    def act_hook(mod, inputs):
        v = inputs[0].detach()
        d = v.abs()
        if isinstance(mod, torch.nn.ReLU6) or (isinstance(mod, torch.nn.Hardtanh) and mod.max_val == 6.0):
            d = torch.minimum(d, (v - 6.0).abs())
        worst[0] = min(worst[0], d.min().item())

    def pool_hook(mod, inputs):
        v = inputs[0].detach()
        k, st, pad = mod.kernel_size, mod.stride, mod.padding
        cols = F.unfold(F.pad(v, (pad,) * 4, value=-math.inf), k, stride=st)  # (N, C*k*k, L)
        cols = cols.reshape(v.shape[0], v.shape[1], k * k, -1)
        top2 = cols.topk(2, dim=2).values
        gap = top2[:, :, 0] - top2[:, :, 1]
        # Ties at zero (ReLU outputs) are harmless: the gradient reaches a clamped input either way.
        gap = torch.where(top2[:, :, 0] > KINK_MARGIN, gap, torch.full_like(gap, math.inf))
        worst[0] = min(worst[0], gap.min().item())

    hooks = []
    for m in model.modules():
        if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Hardtanh)):
            hooks.append(m.register_forward_pre_hook(act_hook))
        elif isinstance(m, torch.nn.MaxPool2d):
            hooks.append(m.register_forward_pre_hook(pool_hook))
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.eval()
        model(x)
        model.train()
        noise_off(model)
        model(x)
    model.load_state_dict(saved)  # the train pass moved the running statistics
    for h in hooks:
        h.remove()
    return worst[0]


def model_golden(file, model, batch, img_h, img_w, full_grads):
    model = model.double()
    fill_generated(model)
    tensors = {}
    targets = torch.tensor([(3 * b + 1) % 4 for b in range(batch)], dtype=torch.int64)
    # The first of "input", "input.1", "input.2", ... that keeps clear of every kink (see kink_distance).
    for attempt in range(100):
        input_name = "input" if attempt == 0 else f"input.{attempt}"
        x = generated(input_name, (batch, 3, img_h, img_w)).double()
        margin = kink_distance(model, x, targets)
        if margin >= KINK_MARGIN:
            break
    else:
        raise RuntimeError(f"{file}: no input keeps {KINK_MARGIN} clear of the kinks")
    print(f"{file}: input '{input_name}', nearest kink {margin:.3g}")
    tensors["meta.input_shape"] = torch.tensor([batch, 3, img_h, img_w], dtype=torch.int64)
    tensors["meta.targets"] = targets

    model.eval()
    with torch.no_grad():
        tensors["eval.logits"] = f32(model(x))

    saved_state = {k: v.clone() for k, v in model.state_dict().items()}  # before the train pass
    model.train()
    noise_off(model)
    xr = x.clone().requires_grad_(True)
    logits = model(xr)
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    tensors["train.logits"] = f32(logits)
    tensors["train.loss"] = f32(loss.reshape(1))
    tensors["train.input_grad"] = f32(xr.grad)
    for k, b in model.named_buffers():
        if k.endswith("running_mean") or k.endswith("running_var"):
            tensors["buffer_probe." + k] = probes(k, b)
    for k, p in model.named_parameters():
        if full_grads or p.numel() <= FULL_GRAD_LIMIT:
            tensors["grad." + k] = f32(p.grad)
        else:
            tensors["grad_probe." + k] = probes(k, p.grad)
    # How well float32 itself can do here: torch's own float32 pass against this float64 reference.
    m32 = copy.deepcopy(model).float()
    m32.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved_state.items()})
    m32.train()
    noise_off(m32)
    x32 = x.float().requires_grad_(True)
    F.cross_entropy(m32(x32), targets).backward()
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item() if b.norm() > 0 else 0.0
    worst = max(rel(p32.grad, p.grad) for p32, p in zip(m32.parameters(), model.parameters())
                if p.grad.norm() > 1e-9 * xr.grad.norm())
    f32_note = f"input grad {rel(x32.grad, xr.grad):.2e}, worst parameter grad {worst:.2e} (relative L2)"
    print(f"{file}: torch float32 vs float64: {f32_note}")
    save(file, tensors, {"state_dict": state_dict_listing(model), "class": type(model).__name__,
                         "input_name": input_name, "kink_margin": f"{margin:.6g}", "torch_float32_error": f32_note})


def models():
    tv = torchvision.models
    # MobileNetV2's float32 training-mode gradients are only good to ~1e-4 relative against float64 at these
    # sizes, in torch as in retikd (ReLU6 kinks and batch norm over few values per channel in the last
    # stages); the file records torch's own float32 error and the test allows 3e-4 there (see docs/models.md).
    model_golden("mobilenet_v2", tv.mobilenet_v2(weights=None, num_classes=4), 2, 64, 64, False)
    model_golden("mobilenet_v2_w035", tv.mobilenet_v2(weights=None, num_classes=4, width_mult=0.35), 2, 40, 40,
                 False)
    model_golden("resnet18", tv.resnet18(weights=None, num_classes=4), 2, 57, 57, False)
    # 96 px: at 64 px the last stages see 2x2 maps, and batch norm over 8 values per channel makes float32
    # gradients themselves uncertain at the 1e-4 level (measured against float64 in torch too).
    model_golden("efficientnet_b0", tv.efficientnet_b0(weights=None, num_classes=4), 2, 96, 96, False)
    # timm's own vit_tiny_patch16_224 definition (12 blocks, 192 wide, 3 heads), at 32 px.
    model_golden("vit_tiny_patch16",
                 timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4, img_size=32,
                                   drop_path_rate=0.1), 2, 32, 32, False)
    # A small ViT with every gradient stored in full: 2 blocks, 48 wide, 3 heads, 8-px patches at 32 px.
    model_golden("vit_small_cfg",
                 VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=4,
                                   drop_path_rate=0.1), 2, 32, 32, True)


# ---- layers -----------------------------------------------------------------------------------------------
class LayerCase:
    """Collects one layer file: named float32 inputs (stored) and float64 reference results."""

    def __init__(self):
        self.t = {}

    def leaf(self, name, shape, scale=1.0, offset=0.0, absolute=False, grad=True):
        """A stored float32 input: the generator's values (their magnitude when `absolute`) * scale + offset,
        rounded to float32 first; the reference then works on exactly the stored values, in float64."""
        v = generated("input:" + name, shape)
        if absolute:
            v = v.abs()
        v = (v * scale + offset).to(torch.float32)
        self.t[name] = v.contiguous()
        return v.double().requires_grad_(grad)

    def out(self, name, v):
        self.t[name] = f32(v)

    def grads(self, y, gy_name, **leaves):
        """Backpropagates sum(y * gy) with a stored upstream gradient gy; stores d<leaf> for each leaf."""
        gy = self.leaf(gy_name, tuple(y.shape), grad=False)
        (y * gy).sum().backward()
        for n, v in leaves.items():
            self.out("d" + n, v.grad)


def layers():
    c = LayerCase()

    # LayerNorm, timm's eps 1e-6, over the last dim of (2, 5, 24).
    # "ln": values of spread 4 around 3 (a mean the normalisation must remove); "ln_small": spread 2^-8 around
    # 0.5, a variance (~5e-6) where the epsilon matters and a one-pass E[x^2] - E[x]^2 in float32 would not do.
    for tag, scale, offset in (("ln", 4.0, 3.0), ("ln_small", 2.0 ** -8, 0.5)):
        x, w, b = c.leaf(tag + ".x", (2, 5, 24), scale, offset), c.leaf(tag + ".w", (24,)), c.leaf(tag + ".b", (24,))
        y = F.layer_norm(x, (24,), w, b, eps=1e-6)
        c.out(tag + ".y", y)
        c.grads(y, tag + ".gy", **{tag + ".x": x, tag + ".w": w, tag + ".b": b})

    # BatchNorm2d in training (batch statistics, biased variance; running stats updated with the unbiased
    # one, momentum 0.1) and in eval (running statistics).
    x, w, b = c.leaf("bn.x", (3, 6, 5, 4), 2.0), c.leaf("bn.w", (6,)), c.leaf("bn.b", (6,))
    rm, rv = c.leaf("bn.rm", (6,), grad=False), c.leaf("bn.rv", (6,), 1.0, 0.5, absolute=True, grad=False)
    y_eval = F.batch_norm(x, rm.clone(), rv.clone(), w, b, training=False, eps=1e-5)
    c.out("bn.y_eval", y_eval)
    rm_t, rv_t = rm.clone(), rv.clone()
    y = F.batch_norm(x, rm_t, rv_t, w, b, training=True, momentum=0.1, eps=1e-5)
    c.out("bn.y_train", y)
    c.out("bn.rm_after", rm_t)
    c.out("bn.rv_after", rv_t)
    c.grads(y, "bn.gy", **{"bn.x": x, "bn.w": w, "bn.b": b})

    # GELU exact (erf, timm's Mlp default) and tanh approximation; SiLU. Inputs over [-8, 8).
    for tag, fn in (("gelu", lambda v: F.gelu(v)), ("gelu_tanh", lambda v: F.gelu(v, approximate="tanh")),
                    ("silu", F.silu)):
        x = c.leaf(tag + ".x", (512,), 8.0)
        y = fn(x)
        c.out(tag + ".y", y)
        c.grads(y, tag + ".gy", **{tag + ".x": x})

    # timm's Attention (dim 24, 3 heads, qkv bias): output, pre-softmax logits, probabilities, gradients.
    attn = Attention(24, num_heads=3, qkv_bias=True).double()
    for k, p in attn.named_parameters():
        p.data = c.leaf("attn." + k, tuple(p.shape), 0.5, grad=False)
    x = c.leaf("attn.x", (2, 7, 24))
    y = attn(x)
    with torch.no_grad():
        B, N, C = x.shape
        qkv = attn.qkv(x).reshape(B, N, 3, 3, C // 3).permute(2, 0, 3, 1, 4)
        logits = (qkv[0] * (C // 3) ** -0.5) @ qkv[1].transpose(-2, -1)
        c.out("attn.logits", logits)
        c.out("attn.probs", logits.softmax(-1))
    c.out("attn.y", y)
    c.grads(y, "attn.gy", **{"attn.x": x, "attn.qkv.weight": attn.qkv.weight, "attn.proj.weight": attn.proj.weight,
                             "attn.qkv.bias": attn.qkv.bias})

    # Bilinear resize, align_corners=False: (5, 7) -> (9, 4) (up in h, down in w) and -> (3, 11).
    for tag, (oh, ow) in (("resize_a", (9, 4)), ("resize_b", (3, 11))):
        x = c.leaf(tag + ".x", (2, 3, 5, 7))
        y = F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners=False)
        c.out(tag + ".y", y)
        c.grads(y, tag + ".gy", **{tag + ".x": x})

    # Depthwise convolutions with asymmetric padding (TensorFlow "SAME" style: the odd pixel after), stride 2:
    # 3x3 pad (top 0, bottom 1, left 0, right 1) and 5x5 pad (1, 2, 2, 1); plus a grouped conv with bias.
    for tag, k, pads in (("dw3", 3, (0, 1, 0, 1)), ("dw5", 5, (1, 2, 2, 1))):
        x, w = c.leaf(tag + ".x", (2, 6, 9, 8)), c.leaf(tag + ".w", (6, 1, k, k), 0.5)
        top, bottom, left, right = pads
        y = F.conv2d(F.pad(x, (left, right, top, bottom)), w, stride=2, groups=6)
        c.out(tag + ".y", y)
        c.grads(y, tag + ".gy", **{tag + ".x": x, tag + ".w": w})
    x, w, b = c.leaf("gconv.x", (2, 6, 7, 7)), c.leaf("gconv.w", (4, 3, 3, 3), 0.5), c.leaf("gconv.b", (4,))
    y = F.conv2d(x, w, b, stride=1, padding=1, groups=2)
    c.out("gconv.y", y)
    c.grads(y, "gconv.gy", **{"gconv.x": x, "gconv.w": w, "gconv.b": b})

    # torchvision's SqueezeExcitation with SiLU inside, as EfficientNet uses it.
    se = SqueezeExcitation(16, 4, activation=torch.nn.SiLU).double()
    for k, p in se.named_parameters():
        p.data = c.leaf("se." + k, tuple(p.shape), 0.5, grad=False)
    x = c.leaf("se.x", (2, 16, 5, 5))
    y = se(x)
    c.out("se.y", y)
    c.grads(y, "se.gy", **{"se.x": x, "se.fc1.weight": se.fc1.weight, "se.fc2.bias": se.fc2.bias})

    # Losses on (6, 5) logits: cross-entropy with class weights and label smoothing 0.1; KD KL divergence at
    # temperature 4 (batchmean, no tau^2); BCE with logits and pos_weight; MSE.
    s, t = c.leaf("loss.s", (6, 5), 4.0), c.leaf("loss.t", (6, 5), 4.0)
    target = torch.tensor([0, 4, 2, 2, 1, 3], dtype=torch.int64)
    c.t["loss.target"] = target
    cw = c.leaf("loss.class_w", (5,), 1.0, 0.25, absolute=True, grad=False)
    ce = F.cross_entropy(s, target, weight=cw, label_smoothing=0.1)
    c.out("loss.ce", ce.reshape(1))
    (ds,) = torch.autograd.grad(ce, s)
    c.out("loss.ce.ds", ds)
    kl = F.kl_div(F.log_softmax(s / 4.0, -1), F.softmax(t / 4.0, -1), reduction="batchmean")
    c.out("loss.kl", kl.reshape(1))
    ds, dt = torch.autograd.grad(kl, (s, t))
    c.out("loss.kl.ds", ds)
    c.out("loss.kl.dt", dt)
    y01 = c.leaf("loss.y01", (6, 5), 0.5, 0.5, grad=False)  # targets in [0, 1)
    pw = c.leaf("loss.pos_w", (5,), 1.0, 0.5, absolute=True, grad=False)
    bce = F.binary_cross_entropy_with_logits(s, y01, pos_weight=pw)
    c.out("loss.bce", bce.reshape(1))
    (ds,) = torch.autograd.grad(bce, s)
    c.out("loss.bce.ds", ds)
    mse = F.mse_loss(s, t)
    c.out("loss.mse", mse.reshape(1))
    ds, dt = torch.autograd.grad(mse, (s, t))
    c.out("loss.mse.ds", ds)
    c.out("loss.mse.dt", dt)

    save("layers", c.t, {})


def generator_check():
    """Samples of the generator itself, so a C++ port that drifts fails before any model comparison."""
    t = {}
    for name, shape in (("features.0.0.weight", (32, 3, 3, 3)), ("blocks.0.norm1.weight", (8,)),
                        ("bn1.running_var", (8,)), ("bn1.running_mean", (8,)), ("fc.bias", (8,)),
                        ("input", (1, 3, 4, 4))):
        t[name] = generated(name, shape)
    t["probe1:fc.weight"] = torch.from_numpy(uniform("probe1:fc.weight", 16))  # float64, bit-exact
    save("generator", t, {})


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    generator_check()
    layers()
    models()
    print(json.dumps(versions()))
