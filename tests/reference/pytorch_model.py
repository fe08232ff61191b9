"""Trains the small digits model that tests/checkpoint.rs and
examples/pytorch_import.rs load: Linear(64, 32) -> ReLU -> Linear(32, 10),
in PyTorch, and writes

- pytorch_model.safetensors       its state_dict in float32 (safetensors.torch.save_file),
- pytorch_model_f64.safetensors   the same weights in float64,
- pytorch_model_bf16.safetensors  the weights rounded to bfloat16,
- pytorch_model.txt               16 test inputs and the logits PyTorch computed
                                  from each file (float32, float64, bfloat16
                                  weights evaluated in float32).

Run in a virtual environment outside the repository (never needed by the tests):
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch numpy safetensors
    /tmp/venv/bin/python tests/reference/pytorch_model.py
"""

import gzip
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file

here = pathlib.Path(__file__).parent
rows = np.loadtxt(gzip.open(here / "../../examples/data/digits.csv.gz", "rt"), delimiter=",")
x = torch.tensor(rows[:, :64] / 16.0, dtype=torch.float32)
y = torch.tensor(rows[:, 64], dtype=torch.int64)

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for epoch in range(30):
    for batch in torch.randperm(len(x)).split(64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        opt.step()
with torch.no_grad():
    accuracy = (model(x).argmax(1) == y).double().mean().item()

state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, here / "pytorch_model.safetensors")
save_file({k: v.double() for k, v in state.items()}, here / "pytorch_model_f64.safetensors")
save_file({k: v.bfloat16() for k, v in state.items()}, here / "pytorch_model_bf16.safetensors")

inputs = x[-16:]
with torch.no_grad():
    f32 = model(inputs)
    f64 = model.double()(inputs.double())
    bf16 = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    bf16.load_state_dict({k: v.bfloat16().float() for k, v in state.items()})
    from_bf16 = bf16(inputs)


def line(label, t):
    shape = " ".join(str(d) for d in t.shape)
    return f"{label} [{shape}] " + " ".join(repr(v) for v in t.double().flatten().tolist())


with open(here / "pytorch_model.txt", "w") as out:
    print(f"# torch {torch.__version__}; training accuracy {accuracy:.4f}", file=out)
    print(line("inputs", inputs), file=out)
    print(line("logits_f32", f32), file=out)
    print(line("logits_f64", f64), file=out)
    print(line("logits_bf16", from_bf16), file=out)
print(f"training accuracy {accuracy:.4f}")
