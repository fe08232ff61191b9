#!/usr/bin/env python3
"""Prints the README's activation performance table from criterion's results.

Run `cargo bench --bench activations` first; this reads
target/criterion/<layer>_<direction>_<rows>x<cols>/<path>/new/estimates.json
(criterion turns the group name's slash into an underscore).
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
PATHS = ["ndlayers_view", "ndlayers_owned", "naive", "memory_floor"]
BYTES = {"forward": 8, "backward": 12}


def median_seconds(group_dir, path):
    f = group_dir / path / "new" / "estimates.json"
    if not f.exists():
        return None
    return json.loads(f.read_text())["median"]["point_estimate"] * 1e-9


def main():
    rows = []
    for group_dir in sorted(ROOT.iterdir()):
        m = re.fullmatch(r"([a-z0-9]+)_(forward|backward)_(\d+)x(\d+)", group_dir.name)
        if not m:
            continue
        layer, direction, r, c = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        moved = BYTES[direction] * r * c
        t = {p: median_seconds(group_dir, p) for p in PATHS}
        if None in t.values():
            continue
        gbs = {p: moved / t[p] / 1e9 for p in PATHS}
        rows.append((layer, direction, r * c, f"{r}x{c}", t, gbs))
    if not rows:
        sys.exit("no results under target/criterion: run `cargo bench --bench activations` first")
    order = {"sigmoid": 0, "tanh": 1, "relu": 2, "softmax": 3}
    rows.sort(key=lambda row: (order.get(row[0], 9), row[1] != "forward", row[2]))
    print("| layer | pass | shape | view GB/s | owned GB/s | naive GB/s | floor GB/s | view vs floor (time) | view vs naive (speed-up) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for layer, direction, _, shape, t, g in rows:
        print(
            f"| {layer} | {direction} | {shape.replace('x', '×')} | {g['ndlayers_view']:.1f} | {g['ndlayers_owned']:.1f} "
            f"| {g['naive']:.1f} | {g['memory_floor']:.1f} | {t['ndlayers_view'] / t['memory_floor']:.2f}× "
            f"| {t['naive'] / t['ndlayers_view']:.1f}× |"
        )


if __name__ == "__main__":
    main()
