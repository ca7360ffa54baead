#!/usr/bin/env bash
# scripts/ablation.sh — the distillation ablation of issue 5 / docs/results.md on the real split: one teacher
# (trained once, or reused with --teacher-from), then students that differ only in their loss:
#   ce        CE only (the baseline)                           seeds 0 1 2
#   logit     CE + logit KD (Hinton, T = 4)                    seed 0
#   pca       CE + PCA projector                               seed 0
#   gl        CE + GL projector                                seed 0
#   pca_gl    CE + PCA + GL                                    seed 0
#   full      CE + PCA + GL + multi-view + adversarial (the preset's method)   seeds 0 1 2
# Every run uses the preset's student budget (or --epochs-student N) and writes OUT/<name>_s<seed>/metrics.json;
# the table OUT/ablation.md gathers test accuracy and macro-F1 (mean ± sample std over seeds where there are
# several). A finished run is skipped when run again (distill_retina resumes / skips finished stages), so a
# killed ablation continues where it stopped.
#
#   bash scripts/ablation.sh [--out DIR] [--teacher-from RUN_DIR] [--preset quick] [-- extra distill_retina args]
set -euo pipefail
cd "$(dirname "$0")/.."

out=runs/ablation
teacher_from=""
preset=quick
extra=()
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --teacher-from) teacher_from=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "ablation.sh: unknown option $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done

build_dir=${RETIKD_MAIN_BUILD_DIR:-build/main}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DRETIKD_CUDA=OFF -DRETIKD_BUILD_TESTS=OFF \
  -DRETIKD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build_dir" -j2 --target distill_retina
bin="$build_dir/examples/distill_retina"
data_args=()
if [[ -n "${RETIKD_DATA:-}" ]]; then data_args+=(--data "$RETIKD_DATA"); fi
mkdir -p "$out"

run() {  # run NAME SEED ARGS...: one student configuration, its own output directory
  local name=$1 seed=$2
  shift 2
  local dir="$out/${name}_s${seed}"
  echo "== ablation: $name seed $seed -> $dir"
  local t0=$SECONDS
  "$bin" "${data_args[@]}" --preset "$preset" --out "$dir" --teacher-from "$teacher_from" --seed "$seed" \
    --no-export --quiet "$@" "${extra[@]}" >"$dir.log" 2>&1 || { echo "ablation: $name seed $seed failed, see $dir.log" >&2; exit 1; }
  echo "   $((SECONDS - t0)) s"
}

if [[ -z "$teacher_from" ]]; then
  teacher_from="$out/teacher_run"
  echo "== ablation: training the teacher once -> $teacher_from"
  "$bin" "${data_args[@]}" --preset "$preset" --out "$teacher_from" --no-ce --no-kd --quiet "${extra[@]}" \
    >"$teacher_from.log" 2>&1 || { echo "ablation: teacher failed, see $teacher_from.log" >&2; exit 1; }
fi

no_views=(--views 0)
# The recipe of issue 5's ablation, spelled out: the quick preset's KD stage was this paper-style recipe then
# (α 0.3, λ_pca 0.7, λ_gl 0.07, λ_adv 0.7, CE and batch norm on every view, KD terms unweighted); it is logit KD now
# (kd/distiller.hpp), so every run names its weights instead of inheriting the preset's.
paper_style=(--alpha 0.3 --logit-kd 0 --lambda-pca 0.7 --lambda-gl 0.07 --lambda-adv 0.7 --ce-clean 0 --bn-clean 0
             --kd-class-weighted 0)
for seed in 0 1 2; do run ce "$seed" --no-kd; done
run logit 0 --no-ce "${no_views[@]}" "${paper_style[@]}" --logit-kd 1 --lambda-pca 0 --lambda-gl 0 --lambda-adv 0
run pca 0 --no-ce "${no_views[@]}" "${paper_style[@]}" --lambda-gl 0 --lambda-adv 0
run gl 0 --no-ce "${no_views[@]}" "${paper_style[@]}" --lambda-pca 0 --lambda-adv 0
run pca_gl 0 --no-ce "${no_views[@]}" "${paper_style[@]}" --lambda-adv 0
for seed in 0 1 2; do run full "$seed" --no-ce "${paper_style[@]}"; done

# The table: test accuracy and macro-F1 of each configuration (python3's standard library only).
python3 - "$out" <<'EOF'
import json, os, statistics, sys
out = sys.argv[1]
rows = [("ce", "CE only", "student_ce"), ("logit", "CE + logit KD", "student_kd"),
        ("pca", "CE + PCA", "student_kd"), ("gl", "CE + GL", "student_kd"),
        ("pca_gl", "CE + PCA + GL", "student_kd"),
        ("full", "CE + PCA + GL + multi-view + adversarial", "student_kd")]
def fmt(xs):
    if len(xs) == 1:
        return "%.4f" % xs[0]
    return "%.4f ± %.4f" % (statistics.mean(xs), statistics.stdev(xs))
lines = ["| configuration | seeds | test accuracy | test macro-F1 | glaucoma recall |", "|---|---|---|---|---|"]
teacher = None
for key, label, stage in rows:
    acc, f1, gl, seeds = [], [], [], []
    for seed in range(3):
        p = os.path.join(out, "%s_s%d" % (key, seed), "metrics.json")
        if not os.path.exists(p):
            continue
        m = json.load(open(p))
        s = m[stage]
        acc.append(s["accuracy"]); f1.append(s["macro_f1"]); gl.append(s["per_class"]["Glaucoma"]["recall"])
        seeds.append(str(seed))
        teacher = teacher or m.get("teacher")
    if acc:
        lines.append("| %s | %s | %s | %s | %s |" % (label, ",".join(seeds), fmt(acc), fmt(f1), fmt(gl)))
if teacher:
    lines.append("| (teacher) | | %.4f | %.4f | %.4f |" % (teacher["accuracy"], teacher["macro_f1"],
                                                          teacher["per_class"]["Glaucoma"]["recall"]))
text = "\n".join(lines) + "\n"
open(os.path.join(out, "ablation.md"), "w").write(text)
print(text)
EOF
