"""Reference values for gradient clipping (tests/clip.rs), from PyTorch 2.15:
torch.nn.utils.clip_grad_norm_ (2-norm and inf-norm) and clip_grad_value_ on
the gradients of four parameters shaped as Linear(3, 4) and Linear(4, 2).

Writes tests/reference/clip.txt, one tensor a line:
    <case>/<name> [<shape>] <values...>
Run:  python tests/reference/clip.py
"""
import pathlib

import torch

torch.manual_seed(0)
here = pathlib.Path(__file__).parent
shapes = {"0.weight": (4, 3), "0.bias": (4,), "2.weight": (2, 4), "2.bias": (2,)}
lines = []


def put(case, name, t):
    t = t.detach().double().contiguous()
    shape = " ".join(str(d) for d in t.shape)
    lines.append(f"{case}/{name} [{shape}] " + " ".join(repr(v) for v in t.flatten().tolist()))


for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
    grads = {name: torch.randn(*shape, dtype=dtype) * 3 for name, shape in shapes.items()}
    for name, g in grads.items():
        put(f"grads.{suffix}", name, g)
    for case, clip in (
        ("norm2", lambda ps: torch.nn.utils.clip_grad_norm_(ps, 0.5, norm_type=2.0)),
        ("norminf", lambda ps: torch.nn.utils.clip_grad_norm_(ps, 0.5, norm_type=float("inf"))),
        ("norm_large", lambda ps: torch.nn.utils.clip_grad_norm_(ps, 1e3)),
        ("value", lambda ps: torch.nn.utils.clip_grad_value_(ps, 0.7)),
    ):
        params = []
        for name, g in grads.items():
            p = torch.zeros_like(g, requires_grad=True)
            p.grad = g.clone()
            params.append(p)
        total = clip(params)
        c = f"{case}.{suffix}"
        if total is not None:
            put(c, "total", total.reshape(1))
        for (name, _), p in zip(grads.items(), params):
            put(c, name, p.grad)

(here / "clip.txt").write_text(f"# PyTorch {torch.__version__}, tests/reference/clip.py\n" + "\n".join(lines) + "\n")
print(f"wrote {len(lines)} lines")
