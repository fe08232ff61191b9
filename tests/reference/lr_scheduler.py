"""Reference learning-rate sequences for tests/lr_scheduler.rs, from
PyTorch 2.15's torch.optim.lr_scheduler: each schedule drives an SGD with two
parameter groups (learning rates 0.1 and 0.01); the rates after the
schedule is created and after each step, one row per epoch, one column per
group. ReduceLROnPlateau gets the metric sequences written with it.

Writes tests/reference/lr_scheduler.txt: <case>/<name> [<shape>] <values...>
Run:  python tests/reference/lr_scheduler.py
"""
import math
import pathlib

import torch
from torch.optim import SGD
from torch.optim import lr_scheduler as S

here = pathlib.Path(__file__).parent
lines = [f"# PyTorch {torch.__version__}, tests/reference/lr_scheduler.py"]


def put(case, name, rows):
    if isinstance(rows[0], list):
        flat, shape = [v for row in rows for v in row], f"{len(rows)} {len(rows[0])}"
    else:
        flat, shape = rows, f"{len(rows)}"
    lines.append(f"{case}/{name} [{shape}] " + " ".join(repr(float(v)) for v in flat))


def optimizer():
    w, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    return SGD([{"params": [w]}, {"params": [b], "lr": 0.01}], lr=0.1)


def run(case, make, epochs):
    opt = optimizer()
    sched = make(opt)
    rows = [[g["lr"] for g in opt.param_groups]]
    for _ in range(epochs):
        opt.step()
        sched.step()
        rows.append([g["lr"] for g in opt.param_groups])
    put(case, "lrs", rows)


run("step", lambda o: S.StepLR(o, step_size=3, gamma=0.5), 20)
run("multistep", lambda o: S.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3), 15)
run("exponential", lambda o: S.ExponentialLR(o, gamma=0.9), 30)
run("cosine", lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001), 35)
run("linear", lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4), 10)
run("linear_decay", lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=6), 10)
run("one_cycle", lambda o: S.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=25, cycle_momentum=False), 25)
run(
    "one_cycle_three_phase",
    lambda o: S.OneCycleLR(
        o, max_lr=0.4, total_steps=40, pct_start=0.25, anneal_strategy="linear",
        div_factor=10.0, final_div_factor=100.0, three_phase=True, cycle_momentum=False,
    ),
    40,
)
run(
    "warmup_cosine",
    lambda o: S.SequentialLR(
        o,
        [S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5), S.CosineAnnealingLR(o, T_max=20)],
        milestones=[5],
    ),
    30,
)
run(
    "sequential_three",
    lambda o: S.SequentialLR(
        o,
        [S.LinearLR(o, start_factor=0.5, total_iters=3), S.ExponentialLR(o, gamma=0.8), S.StepLR(o, 2, 0.5)],
        milestones=[3, 8],
    ),
    15,
)


def plateau(case, make, metrics):
    opt = optimizer()
    sched = make(opt)
    rows = [[g["lr"] for g in opt.param_groups]]
    for m in metrics:
        opt.step()
        sched.step(m)
        rows.append([g["lr"] for g in opt.param_groups])
    put(case, "metrics", metrics)
    put(case, "lrs", rows)


losses = [1.0, 0.9, 0.899, 0.95, 0.97, 0.5, 0.6, 0.6, 0.6, math.nan, 0.6, 0.4, 0.41, 0.42, 0.43, 0.44, 0.45, 0.46, 0.47, 0.48]
plateau(
    "plateau",
    lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=2, threshold=0.01, cooldown=1, min_lr=[0.02, 0.001]),
    losses,
)
accuracies = [0.5, 0.6, 0.62, 0.66, 0.7, 0.7, 0.69, 0.8, 0.8, 0.8, 0.84, 0.86, 0.9, 0.9]
plateau(
    "plateau_max_abs",
    lambda o: S.ReduceLROnPlateau(o, mode="max", factor=0.2, patience=0, threshold=0.05, threshold_mode="abs"),
    accuracies,
)

(here / "lr_scheduler.txt").write_text("\n".join(lines) + "\n")
print(f"wrote {len(lines) - 1} tensors to {here / 'lr_scheduler.txt'}")
