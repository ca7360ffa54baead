#!/usr/bin/env bash
# scripts/gpu_check.sh — the GPU run of issue 6 (and issue 8's bench_jetson on a GPU), for an H100-class machine
# with CUDA 13 and PyTorch and no package installs; binaries come prebuilt by scripts/gpu_prepare.sh (carried
# folder, default build/gpu_carry). Steps (GPU_CHECK_STEPS, comma-separated, default all four):
#   tests     every CUDA test file on its own (a crash in one does not hide the others) and the CPU proof of the
#             fused kernels (test_fused_reference.cpp);
#   memcheck  compute-sanitizer memcheck on the fused-kernel tests and on the op registry's driver (test_ops.cpp);
#   bench     the fused-kernel benchmark, the whole-model benchmark (KD step, teacher forward, student step)
#             and retikd_bench_jetson's GPU section (kernels fp32/fp16, the student at batch 1/8/32, CUDA graph);
#   torch     ../shared/peers/torch_anchor.py (copied into the carried folder) eager, then with COMPILE=1 ONLY_KD=1;
# then one table of retikd vs PyTorch with ratios (table.md). Logs go to a work folder that is packed into
# $OUT/logs.tgz (a device run returns at most 8 files). Exit status: non-zero if a test or memcheck failed.
# Takes about 200–230 s on an H100, two thirds of it PyTorch (its eager run ~85–90 s with cuDNN autotuning and
# the bf16 rows; limits GPU_CHECK_EAGER_LIMIT=110, GPU_CHECK_COMPILE_LIMIT=75 — the compiled projector rows
# come within it, the compiled KD step may not). Run it with a device timeout of ~300 s.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${RETIKD_GPU_BUILD:-build/gpu_carry}
OUT=${OUT:-/tmp/retikd_gpu_check}
STEPS=",${GPU_CHECK_STEPS:-tests,memcheck,bench,torch},"
LOG=${GPU_CHECK_LOGS:-/tmp/retikd_gpu_logs}
rm -rf "$LOG"
mkdir -p "$OUT" "$LOG"
# Whatever stops the run (its own limit included), the logs written so far still come back.
trap 'tar czf "$OUT/logs.tgz" -C "$LOG" . 2>/dev/null' EXIT
status=0
t0=$(date +%s)
step() { echo "==> $* ($(( $(date +%s) - t0 )) s)"; }
want() { [[ "$STEPS" == *",$1,"* ]]; }

# cuBLAS / cuDNN from the system CUDA 13 or, failing that, from PyTorch's nvidia wheels.
PYLIBS=$(python3 -c 'import glob,os
try:
    import nvidia
    for base in nvidia.__path__:
        print(":".join(sorted(glob.glob(os.path.join(base, "*", "lib")) + glob.glob(os.path.join(base, "cu13", "lib")))))
except Exception:
    pass' 2>/dev/null | tr "\n" ":")
export LD_LIBRARY_PATH="$BUILD/lib:/usr/local/cuda/lib64:${PYLIBS}${LD_LIBRARY_PATH:-}"
card=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 | grep -v "failed")
echo "card: ${card:-unknown}   date: $(date -u +%Y-%m-%dT%H:%MZ)" | tee "$LOG/card.txt"
TESTS="$BUILD/tests/retikd_tests"
for bin in "$TESTS" "$BUILD/gpu_bench_kd" "$BUILD/retikd_bench_jetson"; do
  missing=$(ldd "$bin" 2>/dev/null | awk '/not found/{print $1}' | tr "\n" " ")
  [ -z "$missing" ] || echo "WARNING: $bin cannot load: $missing(add the library folder to LD_LIBRARY_PATH)"
done

if want tests; then
  step "CUDA tests, one file at a time"
  for f in test_cuda test_cuda_programs test_ops test_cuda_fused test_cuda_models test_fused_reference; do
    timeout 90 "$TESTS" --source-file="*$f.cpp" --no-intro --duration=false >"$LOG/$f.log" 2>&1
    rc=$?
    printf "  %-22s rc %-3s %s\n" "$f" "$rc" "$(grep -E '^\[doctest\] (test cases|assertions)' "$LOG/$f.log" | tr -s ' ' | tr '\n' ' ')"
    if [ $rc -ne 0 ]; then
      status=1
      grep -E "ERROR|FATAL|error:|CHECK|REQUIRE|outside tolerance|with context|seed|Segmentation|exception|what\(\)" \
        "$LOG/$f.log" | head -25 | sed 's/^/      /'
    fi
    skipped=$(grep -c "skipped: no CUDA device" "$LOG/$f.log" || true)
    [ "$skipped" -eq 0 ] || { echo "  $f: SKIPPED ($skipped): no device seen"; status=1; }
  done
  grep -h -m1 "dense convolution backend" "$LOG"/test_ops.log || true
  grep -h "fused.*fallback\|falls back" "$LOG"/test_cuda_*.log | sort | uniq -c | head -5 || true
fi

if want memcheck; then
  step "compute-sanitizer memcheck"
  CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [ -n "$CS" ]; then
    for f in test_cuda_fused test_ops; do
      timeout 100 "$CS" --tool memcheck --error-exitcode 9 "$TESTS" --source-file="*$f.cpp" \
        --test-case-exclude='*torch_anchor*' --no-intro >"$LOG/memcheck_$f.log" 2>&1
      rc=$?
      printf "  memcheck %-18s rc %-3s %s\n" "$f" "$rc" "$(grep -E 'ERROR SUMMARY' "$LOG/memcheck_$f.log" | tail -1)"
      if [ $rc -ne 0 ]; then status=1; grep -E "Invalid|Address|at 0x|by thread|ERROR" "$LOG/memcheck_$f.log" | head -12 | sed 's/^/      /'; fi
    done
  else
    echo "  compute-sanitizer not found: memcheck not run"
  fi
fi

if want bench; then
  step "retikd benchmarks"
  timeout 40 "$BUILD/gpu_bench_fused" >"$LOG/bench_fused.log" 2>&1 || echo "  gpu_bench_fused failed (rc $?)"
  grep "^retikd" "$LOG/bench_fused.log" | sed 's/^/  /'
  timeout 90 "$BUILD/gpu_bench_kd" >"$LOG/bench_kd.log" 2>&1 || echo "  gpu_bench_kd failed (rc $?)"
  grep "^retikd" "$LOG/bench_kd.log" | cut -c1-400 | sed 's/^/  /'
  grep "^profile kd_step_b32 " "$LOG/bench_kd.log" | head -16 | sed 's/^/  /'
  timeout 60 "$BUILD/retikd_bench_jetson" --no-cpu --min-time 0.1 --json "$LOG/bench_jetson.json" >"$LOG/bench_jetson.log" 2>&1 \
    || echo "  bench_jetson failed (rc $?)"
  grep -E "not timed|GPU student|error" "$LOG/bench_jetson.log" | cut -c1-200 | sed 's/^/  /'
fi

if want torch; then
  PEERS="$BUILD/peers"; [ -f "$PEERS/torch_anchor.py" ] || PEERS=../shared/peers
  step "PyTorch anchor, eager"
  timeout ${GPU_CHECK_EAGER_LIMIT:-110} env PYTHONUNBUFFERED=1 python3 "$PEERS/torch_anchor.py" >"$LOG/torch_eager.log" 2>&1 || echo "  torch eager rc $?"
  grep -E "mobilenetv2 fp16 NHWC eager b1|mobilenetv2 fp32 eager b1|vit_base_patch16_224 fp32 eager b32|KD train step fp32|peak mem" "$LOG/torch_eager.log" | sed 's/^/  /'
  step "PyTorch anchor, torch.compile (projector and KD rows)"
  timeout ${GPU_CHECK_COMPILE_LIMIT:-75} env PYTHONUNBUFFERED=1 COMPILE=1 ONLY_KD=1 OUT="$LOG" python3 "$PEERS/torch_anchor.py" >"$LOG/torch_compiled.log" 2>&1 \
    || echo "  torch compiled rc $? (rows printed before the limit still count)"
  grep -E "projector|KD train|peak mem" "$LOG/torch_compiled.log" | sed 's/^/  /'
fi

step "table"
val() { awk -v k="$1" '$1=="retikd" && $2==k {print $3; exit}' "$LOG"/bench_fused.log "$LOG"/bench_kd.log 2>/dev/null; }
tval() { grep -hF "$1" "$LOG"/"$2" 2>/dev/null | grep -oE '[0-9]+\.[0-9]+ ms' | head -1 | cut -d' ' -f1; }
jval() { grep -F "$1" "$LOG/bench_jetson.log" 2>/dev/null | grep -E "batch $2 " | grep -oE '[0-9]+\.[0-9]+ ms' | head -1 | cut -d' ' -f1; }
row() {  # name, retikd ms, torch ms
  local r=${2:-} t=${3:-} ratio="-"
  if [ -n "$r" ] && [ -n "$t" ]; then ratio=$(awk -v a="$t" -v b="$r" 'BEGIN{printf "%.2fx", a/b}'); fi
  printf "| %-66s | %10s | %10s | %8s |\n" "$1" "${r:--}" "${t:--}" "$ratio"
}
{
  echo "card: ${card:-unknown}, $(date -u +%Y-%m-%d)"
  echo
  printf "| %-66s | %10s | %10s | %8s |\n" "work" "retikd ms" "torch ms" "torch/us"
  printf "|%s|%s|%s|%s|\n" "$(printf -- '-%.0s' {1..68})" "------------" "------------" "----------"
  row "PCA step fwd+bwd+KL, B32 12x64 196 tok, strict fp32 (vs torch.compile)" "$(val pca_fp32)" "$(tval 'PCA projector fwd+bwd+KL compiled' torch_compiled.log)"
  row "PCA step, TF32 projection as torch's cuDNN conv (vs torch.compile)" "$(val pca_tf32proj)" "$(tval 'PCA projector fwd+bwd+KL compiled' torch_compiled.log)"
  row "PCA step, strict fp32, tiled (sm_53) route" "$(val pca_fp32_tiled)" "$(tval 'PCA projector fwd+bwd+KL compiled' torch_compiled.log)"
  row "PCA fused loss alone (fwd+bwd), automatic route" "$(val pca_kernel)" ""
  row "PCA fused loss alone (fwd+bwd), tiled route" "$(val pca_kernel_tiled)" ""
  row "GL step fwd+bwd+MSE, 8 groups 1280->768, strict fp32 (vs torch.compile)" "$(val gl_fp32)" "$(tval 'GL projector fwd+bwd+MSE compiled' torch_compiled.log)"
  row "GL step, TF32 GEMMs (vs torch.compile)" "$(val gl_tf32)" "$(tval 'GL projector fwd+bwd+MSE compiled' torch_compiled.log)"
  row "GL step, strict fp32, tiled (sm_53) route" "$(val gl_fp32_tiled)" "$(tval 'GL projector fwd+bwd+MSE compiled' torch_compiled.log)"
  row "KD train step fp32 B32 224, ViT-B/16 -> MobileNetV2 (torch eager)" "$(val kd_step_b32)" "$(tval 'KD train step fp32 eager' torch_eager.log)"
  row "KD train step, TF32 convs + fp32 GEMMs = torch's default (torch eager)" "$(val kd_step_b32_tf32conv)" "$(tval 'KD train step fp32 eager' torch_eager.log)"
  row "KD train step fp32 (torch.compile)" "$(val kd_step_b32)" "$(tval 'KD train step fp32 compiled' torch_compiled.log)"
  row "  of which the teacher's forward (retikd alone)" "$(val kd_teacher_part_b32)" ""
  row "MobileNetV2 training step fp32 B32 224 (CE, AdamW)" "$(val student_step_b32)" ""
  row "MobileNetV2 training step, TF32 convs" "$(val student_step_b32_tf32conv)" ""
  row "ViT-B/16 forward fp32 B32 (torch eager)" "$(val teacher_fwd_b32)" "$(tval 'vit_base_patch16_224 fp32 eager b32' torch_eager.log)"
  row "MobileNetV2 fp16 b1: retikd CUDA graph vs torch fp16 NHWC eager" "$(jval 'fp16 CUDA graph' 1)" "$(tval 'mobilenetv2 fp16 NHWC eager b1' torch_eager.log)"
  row "MobileNetV2 fp16 b1: retikd eager vs torch fp16 NHWC eager" "$(jval 'GPU student fp16  ' 1)" "$(tval 'mobilenetv2 fp16 NHWC eager b1' torch_eager.log)"
  row "MobileNetV2 fp32 b1: retikd eager vs torch fp32 eager" "$(jval 'GPU student fp32  ' 1)" "$(tval 'mobilenetv2 fp32 eager b1' torch_eager.log)"
  echo
  echo "retikd KD-step device memory (GiB, taken from the driver): $(awk '$2=="kd_step_mem_gib"{print $3}' "$LOG/bench_kd.log" 2>/dev/null);" \
       "torch peak allocated (GiB): eager $(grep -h 'peak mem' "$LOG/torch_eager.log" 2>/dev/null | awk '{print $NF}'), compiled $(grep -h 'peak mem' "$LOG/torch_compiled.log" 2>/dev/null | awk '{print $NF}')"
  grep -h -m1 "dense convolution backend" "$LOG"/test_ops.log 2>/dev/null || true
} | tee "$OUT/table.md"
cp "$LOG/bench_jetson.log" "$OUT/" 2>/dev/null || true
step "done (status $status)"
exit $status
