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

With `--peers FILE` (written by `benches/peers/activations.py` in the same
session), it prints instead the comparison with PyTorch and JAX in ns per
element: the view path beside PyTorch's `out=`, the owned path beside
PyTorch's allocating call, JAX's jit call, the floor and (forwards that cache
an array) the owned floor, and counts the cases each side wins. With `--peers P1,P2,P3 R1 R2 R3` (rounds of the Rust bench
and the peers script run back to back, criterion directory Ri beside peers
file Pi), each figure is the median over the rounds and each ratio the median
of the per-round ratios.
"""
import json
import pathlib
import re
import statistics
import sys

DEFAULT_ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
PATHS = ["ndlayers_view", "ndlayers_owned", "naive", "memory_floor", "owned_floor"]
# Paths a group may lack: the naive baseline (the peer table does not use it)
# and the owned floor (only the forwards of layers that cache an array).
OPTIONAL = {"naive", "owned_floor"}
BYTES = {"forward": 8, "backward": 12}
SHORT = {"forward": "fwd", "backward": "bwd"}
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
        if all(t[p] is not None for p in PATHS if p not in OPTIONAL):
            key = (m.group(1), m.group(2), int(m.group(3)), int(m.group(4)))
            run[key] = t
    return run


def peer_table(runs, peers_files):
    """The comparison with PyTorch and JAX. With several rounds (criterion
    directory i beside peers file i, run back to back), each figure is the
    median over the rounds and each ratio the median of the per-round ratios."""
    peers = [json.loads(pathlib.Path(f).read_text()) for f in peers_files]
    first = peers[0]
    rounds = f", medians over {len(runs)} rounds" if len(runs) > 1 else ""
    print(f"PyTorch {first['torch']} ({first['torch_capability']}), JAX {first['jax']}; ns per element{rounds}\n")
    print(
        "| case | view | torch `out=` | view / out= | owned | torch allocating | owned / allocating "
        "| JAX | floor | owned floor |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    wins = {"view": 0, "owned": 0}
    out_of_reach = []
    name = lambda k: f"{k[0]}_{k[1]}_{k[2]}x{k[3]}"
    keys = [k for k in runs[0] if all(k in run for run in runs) and all(name(k) in p["cases"] for p in peers)]
    keys.sort(key=lambda k: (ORDER.get(k[0], 9), k[2] * k[3], k[1] != "forward", k[2]))
    for key in keys:
        layer, direction, r, c = key
        ns = lambda values: statistics.median(values) / (r * c) * 1e9
        ours = [run[key] for run in runs]
        theirs = [p["cases"][name(key)] for p in peers]
        pairs = list(zip(ours, theirs))
        view_ratio = statistics.median(o["ndlayers_view"] / t["torch_out"] for o, t in pairs)
        owned_ratio = statistics.median(o["ndlayers_owned"] / t["torch_alloc"] for o, t in pairs)
        owned_floors = [o["owned_floor"] for o in ours]
        owned_floor = "—" if None in owned_floors else f"{ns(owned_floors):.3f}"
        if None not in owned_floors:
            floor_ratio = statistics.median(o["owned_floor"] / t["torch_alloc"] for o, t in pairs)
            if floor_ratio > 1:
                out_of_reach.append(f"{layer} {SHORT[direction]} {r}x{c} ({floor_ratio:.2f}x)")
        wins["view"] += view_ratio <= 1
        wins["owned"] += owned_ratio <= 1
        print(
            f"| {layer} {SHORT[direction]} {r}x{c} | {ns(o['ndlayers_view'] for o in ours):.3f} "
            f"| {ns(t['torch_out'] for t in theirs):.3f} | {view_ratio:.2f} "
            f"| {ns(o['ndlayers_owned'] for o in ours):.3f} | {ns(t['torch_alloc'] for t in theirs):.3f} "
            f"| {owned_ratio:.2f} | {ns(t['jax'] for t in theirs):.3f} | {ns(o['memory_floor'] for o in ours):.3f} "
            f"| {owned_floor} |"
        )
    print(f"\nndlayers at least as fast: view {wins['view']} of {len(keys)}, owned {wins['owned']} of {len(keys)}")
    if out_of_reach:
        print(f"owned floor slower than PyTorch's allocating call: {', '.join(out_of_reach)}")


def main():
    args = sys.argv[1:]
    if args[:1] == ["--peers"]:
        peers_files = args[1].split(",")
        roots = [pathlib.Path(a) for a in args[2:]] or [DEFAULT_ROOT]
        if len(roots) != len(peers_files):
            sys.exit("--peers P1,P2,... needs one criterion directory a peers file, in the same order")
        return peer_table([read_run(root) for root in roots], peers_files)
    roots = [pathlib.Path(a) for a in args] or [DEFAULT_ROOT]
    runs = [read_run(root) for root in roots]
    keys = set.intersection(*(set(run) for run in runs)) if runs else set()
    keys = {k for k in keys if all(run[k]["naive"] is not None for run in runs)}
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
