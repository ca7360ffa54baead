#!/usr/bin/env python3
# scripts/tta_check.py — does horizontal-flip test-time augmentation (`classify --flip-tta`: the mean of an image's
# and its mirror's logits) lift the student (issue 15: a glaucoma lever that needs no retraining, at twice the
# inference cost)? Reads `classify --csv` files of one bundle per seed on the val and test splits, without and with
# --flip-tta, and prints per-seed figures, means, paired differences (TTA − plain, points) with 95% t intervals and
# an exact McNemar test per seed on test. The choice is made on the validation column; test is read once, after.
# Standard library only (an analysis aid, not part of the library); the scoring is class_bias_check.py's.
#
#   classify --bundle RUN/student_ce.rkd --manifest SPLIT.tsv --root DATA --split val  --csv DIR/sS_val.csv --quiet
#   classify ... --split val --flip-tta --csv DIR/sS_val_tta.csv      (and the same two for --split test)
#   scripts/tta_check.py DIR    # every seed S with sS_val.csv, sS_val_tta.csv, sS_test.csv, sS_test_tta.csv
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from class_bias_check import load, paired_text, predict, scores  # noqa: E402

METRICS = ("accuracy", "macro-F1", "glaucoma recall")


def mcnemar_exact(truth, a, b):
    """two-sided exact McNemar p-value for predictions a and b: images only one of them gets right"""
    only_a = sum(1 for t, x, y in zip(truth, a, b) if x == t and y != t)
    only_b = sum(1 for t, x, y in zip(truth, a, b) if y == t and x != t)
    n = only_a + only_b
    if n == 0:
        return only_a, only_b, 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return only_a, only_b, min(1.0, 2 * tail)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: tta_check.py DIR  (see the header of this script)")
    d = sys.argv[1]
    seeds = sorted(int(n[1:-12]) for n in os.listdir(d) if n.startswith("s") and n.endswith("_val_tta.csv"))
    if not seeds:
        sys.exit(f"{d}: no sN_val_tta.csv files")
    rows = []  # per seed: {(split, kind): (accuracy, macro-F1, glaucoma recall)}
    for s in seeds:
        row = {}
        data = {}
        for split in ("val", "test"):
            for kind, suffix in (("plain", ""), ("tta", "_tta")):
                path = os.path.join(d, f"s{s}_{split}{suffix}.csv")
                if not os.path.exists(path):
                    sys.exit(f"{path} is missing")
                data[split, kind] = load(path)
                row[split, kind] = scores(*data[split, kind], [0.0] * 4)
        truth = data["test", "plain"][1]
        if truth != data["test", "tta"][1]:
            sys.exit(f"seed {s}: the plain and TTA test files list different images")
        only_plain, only_tta, p = mcnemar_exact(truth, predict(data["test", "plain"][0], [0.0] * 4),
                                                predict(data["test", "tta"][0], [0.0] * 4))
        print(f"seed {s}: val macro-F1 {row['val', 'plain'][1]:.4f} -> {row['val', 'tta'][1]:.4f}; test acc / "
              f"macro-F1 / glaucoma recall {' / '.join(f'{x:.4f}' for x in row['test', 'plain'])} -> "
              f"{' / '.join(f'{x:.4f}' for x in row['test', 'tta'])}; McNemar (test) {only_plain} right only "
              f"plain, {only_tta} only TTA, p = {p:.3f}")
        rows.append(row)
    n = len(seeds)
    print(f"\nmeans over {n} seeds:")
    for split in ("val", "test"):
        for kind in ("plain", "tta"):
            print(f"  {split:4s} {kind:5s} " + " / ".join(
                f"{metric} {statistics.mean(r[split, kind][j] for r in rows):.4f}" for j, metric in enumerate(METRICS)))
    if n < 2:
        return
    print("paired differences TTA - plain, points, mean [95% interval]:")
    for split in ("val", "test"):
        parts = []
        for j, metric in enumerate(METRICS):
            diff = [100 * (r[split, "tta"][j] - r[split, "plain"][j]) for r in rows]
            parts.append(f"{metric} {paired_text(diff)}")
        print(f"  {split:4s} " + "; ".join(parts))


if __name__ == "__main__":
    main()
