#!/usr/bin/env python3
# scripts/class_bias_check.py — does a post-hoc per-class logit bias, fitted on the validation split, lift the
# student on test (issue 15: a glaucoma-recall lever that needs no retraining)? Reads `classify --csv` files of
# one bundle per seed on the val and test splits, fits on validation only — (a) one bias on the glaucoma
# log-probability, (b) one bias per class by coordinate ascent, each on a grid of -2..4 in steps of 0.05,
# maximising macro-F1, ties to the smaller bias — applies it to test and prints per-seed figures, means and
# paired differences with 95% t intervals. Standard library only (an analysis aid, not part of the library).
#
#   classify --bundle RUN/student_ce.rkd --manifest SPLIT.tsv --root DATA --split val  --csv sS_val.csv --quiet
#   classify --bundle RUN/student_ce.rkd --manifest SPLIT.tsv --root DATA --split test --csv sS_test.csv --quiet
#   scripts/class_bias_check.py DIR    # DIR holds s0_val.csv, s0_test.csv, s1_val.csv, ... (every seed found)
import csv
import math
import os
import statistics
import sys

CLASSES = ["Cataract", "DR", "Glaucoma", "Normal"]
GLAUCOMA = CLASSES.index("Glaucoma")
GRID = [round(-2 + 0.05 * i, 2) for i in range(121)]
# two-sided 95% Student t quantiles by degrees of freedom (n seeds - 1)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def load(path):
    logp, truth = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["status"] != "ok":
                sys.exit(f"{path}: {row['path']} was not classified ({row['error']})")
            logp.append([math.log(max(float(row["p_" + c]), 1e-12)) for c in CLASSES])
            truth.append(CLASSES.index(row["truth"]))
    return logp, truth


def predict(logp, bias):
    """argmax(log p + bias) per image"""
    return [max(range(4), key=lambda k: lp[k] + bias[k]) for lp in logp]


def scores(logp, truth, bias):
    """accuracy, macro-F1 and glaucoma recall of argmax(log p + bias)"""
    pred = predict(logp, bias)
    f1, recall = [], []
    for k in range(4):
        tp = sum(1 for p, t in zip(pred, truth) if p == k and t == k)
        fp = sum(1 for p, t in zip(pred, truth) if p == k and t != k)
        fn = sum(1 for p, t in zip(pred, truth) if p != k and t == k)
        f1.append(2 * tp / max(2 * tp + fp + fn, 1))
        recall.append(tp / max(tp + fn, 1))
    accuracy = sum(1 for p, t in zip(pred, truth) if p == t) / len(truth)
    return accuracy, sum(f1) / 4, recall[GLAUCOMA]


def best_on_grid(logp, truth, bias, k):
    best_key, best_bias = None, bias
    for c in GRID:
        trial = list(bias)
        trial[k] = c
        key = (round(scores(logp, truth, trial)[1], 10), -abs(c))
        if best_key is None or key > best_key:
            best_key, best_bias = key, trial
    return best_bias


def paired_text(diff):
    """'mean [low, high]' of paired differences (points) with a 95% Student t interval"""
    n = len(diff)
    mean = statistics.mean(diff)
    half = T975.get(n - 1, 1.96) * statistics.stdev(diff) / math.sqrt(n)
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"


def fit_glaucoma(logp, truth):
    return best_on_grid(logp, truth, [0.0] * 4, GLAUCOMA)


def fit_all(logp, truth, rounds=3):
    bias = [0.0] * 4
    for _ in range(rounds):
        for k in range(4):
            bias = best_on_grid(logp, truth, bias, k)
    return bias


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__ or "usage: class_bias_check.py DIR")
    d = sys.argv[1]
    seeds = sorted(int(n[1:-8]) for n in os.listdir(d) if n.startswith("s") and n.endswith("_val.csv"))
    if not seeds:
        sys.exit(f"{d}: no sN_val.csv files")
    methods = ["none", "glaucoma bias", "per-class bias"]
    table = []
    for s in seeds:
        val = load(os.path.join(d, f"s{s}_val.csv"))
        test = load(os.path.join(d, f"s{s}_test.csv"))
        biases = [[0.0] * 4, fit_glaucoma(*val), fit_all(*val)]
        row = []
        for name, b in zip(methods, biases):
            v = scores(*val, b)[1]
            t = scores(*test, b)
            row.append(t)
            print(f"seed {s} {name:15s} bias {' '.join(f'{x:+.2f}' for x in b)}  val macro-F1 {v:.4f}  "
                  f"test acc {t[0]:.4f} macro-F1 {t[1]:.4f} glaucoma recall {t[2]:.3f}")
        table.append(row)
    n = len(seeds)
    print(f"\nmeans over {n} seeds (test accuracy / macro-F1 / glaucoma recall):")
    for m, name in enumerate(methods):
        print(f"  {name:15s} " + " / ".join(f"{statistics.mean(r[m][j] for r in table):.4f}" for j in range(3)))
    if n < 2:
        return
    print("paired differences against no bias, points, mean [95% interval]:")
    for m in (1, 2):
        parts = []
        for j, metric in enumerate(("accuracy", "macro-F1", "glaucoma recall")):
            parts.append(f"{metric} {paired_text([100 * (r[m][j] - r[0][j]) for r in table])}")
        print(f"  {methods[m]:15s} " + "; ".join(parts))


if __name__ == "__main__":
    main()
