"""Trains the digits CNN that examples/pytorch_cnn.rs loads, in PyTorch:

    Conv2d(1, 16, 3, padding=1) -> BatchNorm2d(16) -> ReLU -> MaxPool2d(2)
    -> Conv2d(16, 32, 3, padding=1) -> BatchNorm2d(32) -> ReLU -> MaxPool2d(2)
    -> Flatten -> Linear(128, 10)

with Adam (lr 2e-3), batch 32, 10 epochs, and writes

- pytorch_cnn.safetensors      its state_dict in float32 (BatchNorm's running
                               statistics and num_batches_tracked included),
- pytorch_cnn_f64.safetensors  the same in float64 (num_batches_tracked stays int64),
- pytorch_cnn.txt              16 test images and the logits PyTorch computed in
                               evaluation mode, in float32 and float64.

Run in a virtual environment outside the repository (never needed by the tests):
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch numpy safetensors
    /tmp/venv/bin/python tests/reference/pytorch_cnn.py
Then `cargo run --release --example pytorch_cnn` reproduces the logits and
exports the model, and `python tests/reference/pytorch_cnn.py --check FILE`
loads that export into the same network with strict=True and compares logits.
"""

import gzip
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

here = pathlib.Path(__file__).parent
torch.set_num_threads(1)


def network():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(128, 10),
    )


rows = np.loadtxt(gzip.open(here / "../../examples/data/digits.csv.gz", "rt"), delimiter=",")
x = torch.tensor(rows[:, :64] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
y = torch.tensor(rows[:, 64], dtype=torch.int64)
inputs = x[-16:]

if len(sys.argv) == 3 and sys.argv[1] == "--check":
    model = network()
    state = load_file(sys.argv[2])
    model.load_state_dict(state, strict=True)
    model.eval()
    expected = load_file(here / "pytorch_cnn.safetensors")
    reference = network()
    reference.load_state_dict(expected, strict=True)
    reference.eval()
    with torch.no_grad():
        difference = (model(inputs) - reference(inputs)).abs().max().item()
    print(f"{sys.argv[2]} loads with strict=True; largest logit difference from the original {difference:.2e}")
    sys.exit(0)

torch.manual_seed(0)
model = network()
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
train = torch.arange(len(x) - 16)
for epoch in range(10):
    model.train()
    for batch in train[torch.randperm(len(train))].split(32):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
        opt.step()
model.eval()
with torch.no_grad():
    accuracy = (model(x[train]).argmax(1) == y[train]).double().mean().item()
    held_out = (model(inputs).argmax(1) == y[-16:]).double().mean().item()

state = {k: v.contiguous() for k, v in model.state_dict().items()}
save_file(state, here / "pytorch_cnn.safetensors")
save_file({k: (v.double() if v.is_floating_point() else v) for k, v in state.items()}, here / "pytorch_cnn_f64.safetensors")

with torch.no_grad():
    f32 = model(inputs)
    f64 = model.double()(inputs.double())


def line(label, t):
    shape = " ".join(str(d) for d in t.shape)
    return f"{label} [{shape}] " + " ".join(repr(v) for v in t.double().flatten().tolist())


with open(here / "pytorch_cnn.txt", "w") as out:
    print(f"# torch {torch.__version__}; training accuracy {accuracy:.4f}, on these 16 held-out images {held_out:.4f}", file=out)
    print(line("inputs", inputs.reshape(16, 64)), file=out)
    print(line("logits_f32", f32), file=out)
    print(line("logits_f64", f64), file=out)
print(f"training accuracy {accuracy:.4f}, held out {held_out:.4f}")
