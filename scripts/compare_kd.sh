#!/usr/bin/env bash
# scripts/compare_kd.sh — the fair comparison of distillation recipes (issue 15, docs/distillation.md): every
# recipe is a distill_retina run of the quick preset with one finished teacher (--teacher-from), the same seeds,
# data order, mirror views, epochs and student resolution; the CE-only baseline is the CE stage of the same
# preset. Then examples/compare_runs prints the paired comparison (means, paired differences with 95% intervals,
# McNemar's test per seed) against the first recipe.
#
#   scripts/compare_kd.sh --teacher-from runs/t14_s0 --out runs/compare [--seeds "0 1 2 3 4"]
#                         [--recipes "ce views logit gl pca pca_gl full"] [--bin build/main/examples]
#                         [-- extra distill_retina options for every run]
#
# A recipe's runs are resumable and skipped when finished (rerun the same command after an interruption).
# Choose among recipes on the "val macro-F1" column; the test columns are read once, at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
teacher_from= out=runs/compare seeds="0 1 2 3 4" recipes="ce views logit gl pca pca_gl full" bin=build/main/examples
extra=()
while (($#)); do
  case "$1" in
    --teacher-from) teacher_from=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --recipes) recipes=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "compare_kd.sh: unknown option $1 (see the header of this script)" >&2; exit 2 ;;
  esac
done
[[ -n "$teacher_from" ]] || { echo "compare_kd.sh: --teacher-from RUN_DIR is required (a finished teacher)" >&2; exit 2; }
[[ -x "$bin/distill_retina" && -x "$bin/compare_runs" ]] ||
  { echo "compare_kd.sh: $bin/distill_retina or $bin/compare_runs not built" >&2; exit 2; }

# Each recipe's options. Every KD recipe: mirror views (the CPU route: teacher targets from the frozen-block
# cache), KD terms class-weighted like CE, CE and batch-norm statistics on the clean view; feature recipes:
# normalised teacher tokens, projector warm-up (half an epoch, student features detached), KD ramp over one epoch,
# weights from gradient-norm ratios (rho), PCA at an entropy-matched temperature with a row-mean KL.
common_kd=(--no-ce --mirror-views 1 --kd-class-weighted 1 --ce-clean 1 --bn-clean 1 --lambda-adv 0)
feature=(--teacher-tokens norm --projector-warmup 0.5 --kd-ramp 1 --balance-rho "${RHO:-0.5}"
         --pca-entropy "${PCA_ENTROPY:-0.5}" --pca-row-mean 1 --alpha 1)
recipe_args() {
  case "$1" in
    ce) echo "--no-kd" ;;
    views) echo "${common_kd[*]} --ce-clean 0 --alpha 1 --logit-kd 0 --lambda-pca 0 --lambda-gl 0" ;;
    logit) echo "${common_kd[*]} --logit-kd 1 --alpha ${ALPHA:-0.5} --temperature ${T:-4} --lambda-pca 0 --lambda-gl 0" ;;
    gl) echo "${common_kd[*]} ${feature[*]} --logit-kd 0 --lambda-pca 0 --lambda-gl 1" ;;
    pca) echo "${common_kd[*]} ${feature[*]} --logit-kd 0 --lambda-pca 1 --lambda-gl 0" ;;
    pca_gl) echo "${common_kd[*]} ${feature[*]} --logit-kd 0 --lambda-pca 1 --lambda-gl 1" ;;
    full) echo "${common_kd[*]} ${feature[*]} --logit-kd 1 --temperature ${T:-4} --lambda-pca 1 --lambda-gl 1" ;;
    *) echo "compare_kd.sh: unknown recipe '$1' (ce views logit gl pca pca_gl full)" >&2; exit 2 ;;
  esac
}
stage_of() { [[ "$1" == ce ]] && echo student_ce || echo student_kd; }

mkdir -p "$out"
for s in $seeds; do
  for r in $recipes; do
    dir=$out/${r}_s$s
    # shellcheck disable=SC2046
    echo "== $r seed $s -> $dir"
    "$bin/distill_retina" --preset quick --teacher-from "$teacher_from" --seed "$s" --out "$dir" --no-export --quiet \
      $(recipe_args "$r") "${extra[@]}" > "$dir.log" 2>&1 || { echo "compare_kd.sh: $r seed $s failed, see $dir.log" >&2; exit 1; }
    tail -n 5 "$dir.log" | grep -E "^student_(ce|kd) " || true
  done
done

args=()
for r in $recipes; do
  list=
  for s in $seeds; do list+="${list:+,}$out/${r}_s$s:$(stage_of "$r")"; done
  args+=(--config "$r=$list")
done
"$bin/compare_runs" "${args[@]}" --out "$out/compare.md"
echo "compare_kd.sh: $out/compare.md"
