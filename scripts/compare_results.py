#!/usr/bin/env python3
"""Compares two results.json files: every metric value, bits_per_weight, size_bytes, label and
id of every variant must be identical; timing fields and node keys are ignored.
Usage: compare_results.py BASELINE.json NEW.json   (exit 1 on any difference)"""
import json
import sys

IGNORED = {"seconds", "quantize_seconds", "error"}


def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in IGNORED and "seconds" not in k}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


def main(a_path, b_path):
    a, b = json.load(open(a_path)), json.load(open(b_path))
    diffs = []
    va = {v["id"]: v for v in a["variants"]}
    vb = {v["id"]: v for v in b["variants"]}
    if list(va) != list(vb):
        diffs.append(f"variant ids differ: {list(va)} vs {list(vb)}")
    for vid in va:
        if vid not in vb:
            continue
        x, y = strip(va[vid]), strip(vb[vid])
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k):
                diffs.append(f"{vid}.{k}: {x.get(k)!r} != {y.get(k)!r}")
    if strip(a.get("evals")) != strip(b.get("evals")):
        diffs.append("evals differ")
    checked = sum(len(v.get("metrics", {})) for v in va.values())
    for d in diffs:
        print(d)
    print(f"{len(va)} variants, {checked} metric blocks compared: "
          f"{'IDENTICAL' if not diffs else f'{len(diffs)} differences'}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
