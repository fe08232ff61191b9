#!/usr/bin/env python3
"""Prints the README's activation performance table from criterion's results.

Run `cargo bench --bench activations` first; this reads
target/criterion/<layer>_<direction>_<rows>x<cols>/<path>/new/estimates.json
(criterion turns the group name's slash into an underscore).

Memory bandwidth on a shared machine drifts by 10-25% within minutes, so one
run can put a kernel and its floor in different weather. To report medians
over several runs, copy target/criterion aside after each run and pass the
copies:

    for r in 1 2 3; do
        cargo bench --bench activations && cp -r target/criterion /tmp/run$r
    done
    python3 benches/table.py /tmp/run1 /tmp/run2 /tmp/run3

Each cell is then the median over the runs; the ratio columns are medians of
the per-run ratios, so each ratio compares two figures from the same run.
"""
import json
import pathlib
import re
import statistics
import sys

DEFAULT_ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
PATHS = ["ndlayers_view", "ndlayers_owned", "naive", "memory_floor"]
BYTES = {"forward": 8, "backward": 12}
ORDER = {"sigmoid": 0, "tanh": 1, "relu": 2, "softmax": 3}


def median_seconds(group_dir, path):
    f = group_dir / path / "new" / "estimates.json"
    if not f.exists():
        return None
    return json.loads(f.read_text())["median"]["point_estimate"] * 1e-9


def read_run(root):
    """{(layer, direction, rows, cols): {path: seconds}} for one criterion directory."""
    run = {}
    for group_dir in sorted(root.iterdir()):
        m = re.fullmatch(r"([a-z0-9]+)_(forward|backward)_(\d+)x(\d+)", group_dir.name)
        if not m:
            continue
        t = {p: median_seconds(group_dir, p) for p in PATHS}
        if None not in t.values():
            key = (m.group(1), m.group(2), int(m.group(3)), int(m.group(4)))
            run[key] = t
    return run


def main():
    roots = [pathlib.Path(a) for a in sys.argv[1:]] or [DEFAULT_ROOT]
    runs = [read_run(root) for root in roots]
    keys = set.intersection(*(set(run) for run in runs)) if runs else set()
    if not keys:
        sys.exit("no results found: run `cargo bench --bench activations` first")
    keys = sorted(keys, key=lambda k: (ORDER.get(k[0], 9), k[1] != "forward", k[2] * k[3]))
    if len(runs) > 1:
        print(f"(medians over {len(runs)} runs)\n")
    print("| layer | pass | shape | view GB/s | owned GB/s | naive GB/s | floor GB/s | view vs floor (time) | view vs naive (speed-up) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in keys:
        layer, direction, r, c = key
        moved = BYTES[direction] * r * c
        gbs = {p: statistics.median(moved / run[key][p] / 1e9 for run in runs) for p in PATHS}
        vs_floor = statistics.median(run[key]["ndlayers_view"] / run[key]["memory_floor"] for run in runs)
        vs_naive = statistics.median(run[key]["naive"] / run[key]["ndlayers_view"] for run in runs)
        print(
            f"| {layer} | {direction} | {r}×{c} | {gbs['ndlayers_view']:.1f} | {gbs['ndlayers_owned']:.1f} "
            f"| {gbs['naive']:.1f} | {gbs['memory_floor']:.1f} | {vs_floor:.2f}× | {vs_naive:.1f}× |"
        )


if __name__ == "__main__":
    main()
