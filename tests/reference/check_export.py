"""Checks that PyTorch loads a file ndlayers exported: run
`cargo run --release --example pytorch_import`, then
    /tmp/venv/bin/python tests/reference/check_export.py /tmp/ndlayers_export.safetensors
It loads the file into nn.Sequential(Linear(64, 32), ReLU(), Linear(32, 10))
with strict=True and compares its logits with those the original PyTorch
model printed into pytorch_model.txt.
"""

import pathlib
import sys

import torch
from safetensors.torch import load_file

here = pathlib.Path(__file__).parent
model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
model.load_state_dict(load_file(sys.argv[1]), strict=True)
lines = {l.split(" [")[0]: l for l in (here / "pytorch_model.txt").read_text().splitlines()}


def array(label):
    shape, values = lines[label].split(" [", 1)[1].split("] ", 1)
    return torch.tensor([float(v) for v in values.split()]).reshape([int(d) for d in shape.split()])


with torch.no_grad():
    difference = (model(array("inputs")) - array("logits_f32")).abs().max().item()
print(f"torch {torch.__version__} loaded {sys.argv[1]} (strict); largest difference from the original logits: {difference}")
