"""Reference values for the losses' reductions (tests/reductions.rs), from
PyTorch 2.15: cross_entropy with class indices and with probabilities, and
mse_loss, each with reduction="mean" and "sum": the loss and the gradient
with respect to the logits / prediction, float64; then cross_entropy with
per-class weights, label smoothing, and both (class indices and
probabilities).

Writes tests/reference/reductions.txt: <case>/<name> [<shape>] <values...>
Run:  python tests/reference/reductions.py
"""
import pathlib

import torch
import torch.nn.functional as F

torch.manual_seed(0)
here = pathlib.Path(__file__).parent
lines = []


def put(case, name, t):
    t = t.detach().double().contiguous().reshape(-1) if t.dim() == 0 else t.detach().double().contiguous()
    shape = " ".join(str(d) for d in t.shape)
    lines.append(f"{case}/{name} [{shape}] " + " ".join(repr(v) for v in t.flatten().tolist()))


logits = torch.randn(5, 4, dtype=torch.float64) * 2
labels = torch.tensor([3, 0, 1, 1, 2])
probabilities = torch.softmax(torch.randn(5, 4, dtype=torch.float64), dim=1)
prediction = torch.randn(3, 4, dtype=torch.float64)
target = torch.randn(3, 4, dtype=torch.float64)
put("inputs", "logits", logits)
put("inputs", "labels", labels.double())
put("inputs", "probabilities", probabilities)
put("inputs", "prediction", prediction)
put("inputs", "target", target)
for reduction in ("mean", "sum"):
    for name, f, x, t in (
        ("ce_labels", F.cross_entropy, logits, labels),
        ("ce_probabilities", F.cross_entropy, logits, probabilities),
        ("mse", F.mse_loss, prediction, target),
    ):
        x = x.clone().requires_grad_()
        loss = f(x, t, reduction=reduction)
        loss.backward()
        put(f"{name}.{reduction}", "loss", loss)
        put(f"{name}.{reduction}", "grad", x.grad)
weight = torch.tensor([0.5, 2.0, 1.0, 0.25], dtype=torch.float64)
put("inputs", "weight", weight)
for reduction in ("mean", "sum"):
    for name, options in (
        ("weighted", dict(weight=weight)),
        ("smoothed", dict(label_smoothing=0.1)),
        ("weighted_smoothed", dict(weight=weight, label_smoothing=0.3)),
    ):
        for target_name, t in (("labels", labels), ("probabilities", probabilities)):
            x = logits.clone().requires_grad_()
            loss = F.cross_entropy(x, t, reduction=reduction, **options)
            loss.backward()
            case = f"ce_{target_name}_{name}.{reduction}"
            put(case, "loss", loss)
            put(case, "grad", x.grad)
(here / "reductions.txt").write_text(f"# PyTorch {torch.__version__}, tests/reference/reductions.py\n" + "\n".join(lines) + "\n")
print(f"wrote {len(lines)} lines")
