"""How far any shift gate could go: the per-scan healthy-pixel FPR of the study's scans.

Reads the evaluation shards a gate study writes (`blindspot evaluate --shard i/n`, see
docs/study-gate.md) and, for every scan, the post-processed residual of its brain pixels
(lesion pixels apart). Prints, per set, the share of scans an *oracle* shift gate rejects:
one whose score is the scan's own healthy-pixel FPR at the run's pixel threshold, calibrated
on the healthy validation scans as the gate is (threshold = the k-th largest validation
score). For a healthy scan that score is observable (its share of brain pixels above the
threshold); for a lesional one it is not (the lesion adds pixels above it).

    python3 docs/scripts/gate_oracle.py runs/study-gate

Needs numpy. Throw-away analysis; the gate itself is Rust (blindspot-ood).
"""
import gzip
import json
import sys
from pathlib import Path

import numpy as np


def f32(words):
    return np.array(words, dtype=np.uint32).view(np.float32)


def per_scan_fpr(run):
    threshold = json.load(open(run / "results.json"))["threshold"]["value"]
    fpr = {}
    for shard in sorted((run / "eval-shards").glob("shard-*.json.gz")):
        for s in json.load(gzip.open(shard))["sets"]:
            for name, px in zip(s["subjects"], s["pixels"]):
                neg = f32(px["negatives"])
                above, total = fpr.get((s["name"], name), (0, 0))
                fpr[(s["name"], name)] = (above + int((neg > threshold).sum()), total + len(neg))
    sets = {}
    for (set_name, _), (above, total) in fpr.items():
        sets.setdefault(set_name, []).append(above / max(total, 1))
    target = json.load(open(run / "results.json"))["threshold"]["target_fpr"]
    return {k: np.array(v) / target for k, v in sets.items()}


def main():
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/study-gate")
    sets = per_scan_fpr(run)
    val = np.sort(sets.pop("validation"))
    print(f"validation ({len(val)} healthy scans): per-scan FPR {val[0]:.2f}-{val[-1]:.2f}x "
          f"the target, median {np.median(val):.2f}x; largest {np.round(val[-5:], 2)}")
    for rank in (1, 2, 3):
        t = val[-rank]
        rejected = ", ".join(f"{k.removeprefix('study_')} {100 * np.mean(v > t):.0f}%"
                             for k, v in sets.items())
        print(f"oracle threshold = {rank}. largest validation FPR ({t:.2f}x): {rejected}")


if __name__ == "__main__":
    main()
