"""Reference values for tests/layers.rs: PyTorch's nn.LayerNorm in float64,
forward and backward, on a (3, 5) input with a non-trivial scale and shift,
rows including a large common offset (1e6) and a constant row.

Run in a virtual environment outside the repository (never needed by the tests):
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch
    /tmp/venv/bin/python tests/reference/layer_norm.py > tests/reference/layer_norm.txt
"""

import torch

torch.set_default_dtype(torch.float64)
x = torch.tensor(
    [[0.5, -1.25, 2.0, 3.5, -0.75], [1e6 + 1.0, 1e6 - 2.0, 1e6 + 0.5, 1e6, 1e6 + 3.0], [4.0, 4.0, 4.0, 4.0, 4.0]],
    requires_grad=True,
)
norm = torch.nn.LayerNorm(5)
with torch.no_grad():
    norm.weight.copy_(torch.tensor([1.5, -0.5, 2.0, 0.25, 1.0]))
    norm.bias.copy_(torch.tensor([0.1, 0.2, -0.3, 0.0, 0.5]))
g = torch.tensor([[1.0, -2.0, 0.5, 3.0, -1.0], [0.25, 0.5, -0.75, 1.0, 2.0], [1.0, 1.0, -1.0, 2.0, 0.5]])
y = norm(x)
y.backward(g)


def line(label, t):
    shape = " ".join(str(d) for d in t.shape)
    return f"{label} [{shape}] " + " ".join(repr(v) for v in t.detach().flatten().tolist())


print(f"# torch {torch.__version__}")
for label, t in [("x", x), ("weight", norm.weight), ("bias", norm.bias), ("g", g), ("y", y),
                 ("dx", x.grad), ("dweight", norm.weight.grad), ("dbias", norm.bias.grad)]:
    print(line(label, t))
