"""Offline: threshold rules for 2-4 references on collected grids (``fewshot.py collect``, and
``elpv_collect.py`` as a check set that never chooses).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_shot/few_refs_rules.py --tune TAG [--check TAG]

Rules, per bank of n references (its n leave-one-out peaks, median ``level``; ``prior`` = the raw
threshold learned once for one reference, 6.5 for the default features):
- 'relative': f x level (the shipped rule, f = 1.15);
- 'shrink': exp((n log(f x level) + n0 log(prior)) / (n + n0)), the leave-one-out level pulled
  toward the prior with the weight of n0 references.
- 'unlike': the shipped threshold, and a query whose mean patch distance is R times the references'
  median leave-one-out mean or more held at 0.5 (``uncertain``: it looks unlike them overall).
- 'widen': the shipped threshold with the logistic scale widened for 2-3 references,
  hypot(0.08, spread[n - 2]) x threshold (``ExpertConfig.few_reference_spread``; ``--spread``).
  The spread is the tuning sets' root-mean-square log error of an n-reference threshold against the
  same product's mean 4-reference one, less the 4-reference error (``--errors`` prints them).
- 'cap': 'widen', and a bank of 2 references whose leave-one-out level is over C (``--cap``) gives
  no normal verdict (its scores under 0.5 held at 0.5, ``uncertain``: the two references differ
  from each other as much as defects do, so the threshold they give may pass defects).
Verdict balanced accuracy at the shipped band (uncertain counts as wrong), per set the mean over
draws, then the mean over sets, per reference count; the share of confident wrong answers
(``riad_agent.eval.expert_eval.confidently_wrong``: a defect at <= 0.2, a good part at >= 0.8) beside it.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling fewshot.py
from fewshot import CACHE, sigmoid, verdict_bacc

from riad_agent.eval.expert_eval import confidently_wrong

PRIOR = 6.5
FACTOR = 1.15
SCALE = 0.08


def threshold(row: dict, rule: str, n0: float) -> float:
    peaks = [float(g.max()) for g in row["held"]]
    level = float(np.median(peaks))
    if rule in ("relative", "unlike", "widen", "cap"):
        return FACTOR * level
    n = len(peaks)
    return float(np.exp((n * np.log(FACTOR * level) + n0 * np.log(PRIOR)) / (n + n0)))


def scores(
    row: dict, thr: float, unlike: float | None = None, scale: float = SCALE
) -> tuple[np.ndarray, np.ndarray]:
    raw = np.array([q["grid"].max() for q in row["queries"]])
    labels = np.array([q["label"] for q in row["queries"]])
    calibrated = sigmoid((raw - thr) / (scale * thr))
    if unlike is not None:
        level = float(np.median([g.mean() for g in row["held"]]))
        ratio = np.array([q["grid"].mean() for q in row["queries"]]) / level
        calibrated = np.where(ratio >= unlike, 0.5, calibrated)
    return calibrated, labels


def threshold_errors(rows: list[dict]) -> dict[int, float]:
    """Per reference count, the rms log error of the shipped threshold against the product's mean
    4-reference threshold (over draws)."""
    four: dict[str, list[float]] = {}
    for row in rows:
        if row["shots"] == 4 and not row["name"].startswith("trainrot"):
            four.setdefault(row["name"], []).append(float(np.log(threshold(row, "relative", 0.0))))
    errors: dict[int, list[float]] = {}
    for row in rows:
        if len(row["held"]) >= 2 and row["name"] in four:
            error = np.log(threshold(row, "relative", 0.0)) - np.mean(four[row["name"]])
            errors.setdefault(row["shots"], []).append(float(error))
    return {n: float(np.sqrt(np.mean(np.square(e)))) for n, e in sorted(errors.items())}


def table(
    rows: list[dict], rule: str, n0: float, spread: tuple[float, ...] = ()
) -> dict[int, tuple[float, float, dict[str, float]]]:
    out = {}
    for shots in sorted({r["shots"] for r in rows}):
        per_set: dict[str, list[float]] = {}
        wrong = []
        for row in rows:
            if row["shots"] != shots or len(row["held"]) < 2:
                continue
            n = len(row["held"])
            scale = SCALE
            if rule == "widen" and n - 2 < len(spread):
                scale = float(np.hypot(SCALE, spread[n - 2]))
            if rule == "cap" and n - 2 < len(spread):
                scale = float(np.hypot(SCALE, spread[n - 2]))
            s, y = scores(row, threshold(row, rule, n0), n0 if rule == "unlike" else None, scale)
            if rule == "cap" and n == 2 and float(np.median([g.max() for g in row["held"]])) > n0:
                s = np.where(s < 0.5, 0.5, s)
            per_set.setdefault(row["name"], []).append(verdict_bacc(s, y)[0])
            wrong.append(confidently_wrong(list(y), list(s)))
        if per_set:
            means = {k: float(np.mean(v)) for k, v in per_set.items()}
            out[shots] = (float(np.mean(list(means.values()))), float(np.mean(wrong)), means)
    return out


def load(tags: list[str]) -> list[dict]:
    """The collected rows of these tags."""
    return [row for tag in tags for row in pickle.load((CACHE / f"fewshot-{tag}.pkl").open("rb"))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tune", nargs="+", required=True)
    parser.add_argument("--check", nargs="*", default=[])
    parser.add_argument("--n0", type=float, nargs="*", default=[0.5, 1, 2, 3, 4, 6])
    parser.add_argument("--unlike", type=float, nargs="*", default=[1.6, 1.8, 2.0])
    parser.add_argument("--spread", type=float, nargs="*", default=[0.15, 0.04])
    parser.add_argument("--cap", type=float, nargs="*", default=[7.0, 8.0, 8.5, 9.0])
    parser.add_argument("--errors", action="store_true", help="print the thresholds' errors")
    args = parser.parse_args()
    for label, rows in (("tuning", load(args.tune)), ("check", load(args.check))):
        if not rows:
            continue
        print(f"== {label} ==")
        if args.errors:
            print("rms log error of the threshold vs the 4-reference one:", threshold_errors(rows))
        rules = (
            [("relative", 0.0)] + [("shrink", n0) for n0 in args.n0] + [("unlike", r) for r in args.unlike]
        )
        for rule, n0 in [*rules, ("widen", 0.0), *[("cap", c) for c in args.cap]]:
            result = table(rows, rule, n0, tuple(args.spread))
            cells = "  ".join(
                f"k={k}: {bacc:.3f} (conf. wrong {wrong:.2f})" for k, (bacc, wrong, _) in result.items()
            )
            knob = {"unlike": "R", "cap": "C"}.get(rule, "n0")
            print(f"{rule:8s} {knob}={n0:<4} {cells}")
            if label == "check" or rule == "relative":
                for k, (_, _, sets) in result.items():
                    print("      ", k, {s.split("/")[-1]: round(v, 3) for s, v in sets.items()})


if __name__ == "__main__":
    main()
