#!/usr/bin/env bash
# scripts/gpu_check.sh — the one GPU run of issue 6, for an H100-class machine with CUDA 13 and PyTorch and no
# package installs; binaries come prebuilt by scripts/gpu_prepare.sh (carried folder, default build/gpu_carry).
# In one run, on one card, under 4 minutes:
#   1. every CUDA test (test_cuda*.cpp) and the CPU proof of the fused kernels (test_fused_reference.cpp);
#   2. compute-sanitizer memcheck on the fused-kernel tests and test_cuda_ops2.cpp (if compute-sanitizer is found);
#   3. the fused-kernel benchmark (CUDA events, 5 warm-up, median of 30);
#   4. ../shared/peers/torch_anchor.py (copied into the carried folder) with COMPILE=1 ONLY_KD=1;
# then one table of retikd vs PyTorch with ratios. Logs and the table go to $OUT (or /tmp/retikd_gpu_check);
# copy the table, the card and the date into docs/results.md. Exit status: non-zero if a test or memcheck
# failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${RETIKD_GPU_BUILD:-build/gpu_carry}
OUT=${OUT:-/tmp/retikd_gpu_check}
mkdir -p "$OUT"
status=0
t0=$(date +%s)
step() { echo "==> $* ($(( $(date +%s) - t0 )) s)"; }

# cuBLAS / cuDNN from the system CUDA 13 or, failing that, from PyTorch's nvidia wheels.
PYLIBS=$(python3 -c 'import glob,os
try:
    import nvidia
    for base in nvidia.__path__:
        print(":".join(sorted(glob.glob(os.path.join(base, "*", "lib")))))
except Exception:
    pass' 2>/dev/null | tr "\n" ":")
export LD_LIBRARY_PATH="$BUILD/lib:/usr/local/cuda/lib64:${PYLIBS}${LD_LIBRARY_PATH:-}"
card=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
echo "card: ${card:-unknown}   date: $(date -u +%Y-%m-%dT%H:%MZ)" | tee "$OUT/card.txt"
TESTS="$BUILD/tests/retikd_tests"
# retikd_tests links cuDNN when it was built with it (dense convolutions): say so plainly if the loader
# cannot find a library, instead of reporting every test as failed.
missing=$(ldd "$TESTS" 2>/dev/null | awk '/not found/{print $1}' | tr "\n" " ")
[ -z "$missing" ] || echo "WARNING: $TESTS cannot load: $missing(add the library folder to LD_LIBRARY_PATH)"

step "CUDA tests"
timeout 100 "$TESTS" --source-file='*test_cuda*' --no-intro --duration=false >"$OUT/tests.log" 2>&1
rc=$?; tail -3 "$OUT/tests.log"; [ $rc -eq 0 ] || { echo "CUDA tests FAILED (rc $rc), see $OUT/tests.log"; status=1; }
timeout 60 "$TESTS" --source-file='*test_fused_reference.cpp' --no-intro >"$OUT/reference.log" 2>&1
rc=$?; tail -1 "$OUT/reference.log"; [ $rc -eq 0 ] || { echo "fused reference FAILED"; status=1; }
skipped=$(grep -c "skipped: no CUDA device" "$OUT/tests.log" || true)
[ "$skipped" -eq 0 ] || { echo "CUDA tests were SKIPPED ($skipped): no device seen"; status=1; }

step "compute-sanitizer memcheck on the fused-kernel tests"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$CS" ]; then
  timeout 100 "$CS" --tool memcheck --error-exitcode 9 "$TESTS" --source-file='*test_cuda_fused.cpp' \
    --test-case-exclude='*torch_anchor*' --no-intro >"$OUT/memcheck.log" 2>&1
  rc=$?; tail -2 "$OUT/memcheck.log"; [ $rc -eq 0 ] || { echo "memcheck FAILED (rc $rc)"; status=1; }
  # The second batch of ops (conv, depthwise, norms, pooling, resize, losses, fused optimizer).
  timeout 90 "$CS" --tool memcheck --error-exitcode 9 "$TESTS" --source-file='*test_cuda_ops2.cpp' \
    --no-intro >"$OUT/memcheck_ops2.log" 2>&1
  rc=$?; tail -2 "$OUT/memcheck_ops2.log"; [ $rc -eq 0 ] || { echo "memcheck ops2 FAILED (rc $rc)"; status=1; }
else
  echo "compute-sanitizer not found: memcheck not run" | tee "$OUT/memcheck.log"
fi

step "retikd fused-kernel benchmark"
timeout 40 "$BUILD/gpu_bench_fused" >"$OUT/bench.log" 2>&1 || echo "benchmark failed, see $OUT/bench.log"
cat "$OUT/bench.log"

step "PyTorch anchor (torch.compile, projector rows)"
PEERS="$BUILD/peers"; [ -f "$PEERS/torch_anchor.py" ] || PEERS=../shared/peers
if [ -f "$PEERS/torch_anchor.py" ]; then
  timeout 110 env COMPILE=1 ONLY_KD=1 OUT="$OUT" python3 "$PEERS/torch_anchor.py" >"$OUT/torch.log" 2>&1
  grep -E "projector" "$OUT/torch.log" || echo "no projector rows from torch_anchor.py (see $OUT/torch.log)"
else
  echo "torch_anchor.py not found" | tee "$OUT/torch.log"
fi

step "table"
val() { awk -v k="$1" '$1=="retikd" && $2==k {print $3}' "$OUT/bench.log"; }
tval() { grep -F "$1" "$OUT/torch.log" | grep -oE '[0-9]+\.[0-9]+ ms' | head -1 | cut -d' ' -f1; }
row() {  # name, retikd ms, torch ms
  local r=${2:-} t=${3:-} ratio="-"
  if [ -n "$r" ] && [ -n "$t" ]; then ratio=$(awk -v a="$t" -v b="$r" 'BEGIN{printf "%.2fx", a/b}'); fi
  printf "| %-58s | %10s | %12s | %8s |\n" "$1" "${r:--}" "${t:--}" "$ratio"
}
{
  echo "card: ${card:-unknown}, $(date -u +%Y-%m-%d)"
  printf "| %-58s | %10s | %12s | %8s |\n" "work (retikd excludes the 7x7->14x14 upsample)" "retikd ms" "torch ms" "torch/us"
  printf "|%s|%s|%s|%s|\n" "$(printf -- '-%.0s' {1..60})" "------------" "--------------" "----------"
  row "PCA step fwd+bwd+KL, B32 12x64 196 tok, fp32" "$(val pca_fp32)" "$(tval 'PCA projector fwd+bwd+KL compiled')"
  row "PCA step fwd+bwd+KL, TF32 GEMMs" "$(val pca_tf32)" "$(tval 'PCA projector fwd+bwd+KL compiled')"
  row "PCA fused loss kernel alone (fwd+bwd)" "$(val pca_kernel)" ""
  row "GL step fwd+bwd+MSE, 8 groups 1280->768, 196 pos, fp32" "$(val gl_fp32)" "$(tval 'GL projector fwd+bwd+MSE compiled')"
  echo "tests: $(tail -1 "$OUT/tests.log" 2>/dev/null); memcheck: $(tail -1 "$OUT/memcheck.log" 2>/dev/null); memcheck ops2: $(tail -1 "$OUT/memcheck_ops2.log" 2>/dev/null)"
  grep -m1 "dense convolution backend" "$OUT/tests.log" || true
} | tee "$OUT/table.md"
step "done (status $status)"
exit $status
