"""Reference values for tests/networks.rs, `probability_targets_match_pytorch`:
PyTorch's cross-entropy against probability targets, in float64.

Run in a virtual environment outside the repository (never needed by the tests):
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch
    /tmp/venv/bin/python tests/reference/cross_entropy.py
and paste the printed values into the test.
"""

import torch
import torch.nn.functional as F

logits = torch.tensor([[1.5, -0.5, 0.25], [-2.0, 3.0, 0.5]], dtype=torch.float64, requires_grad=True)
target = torch.tensor([[0.7, 0.2, 0.1], [0.0, 0.25, 0.75]], dtype=torch.float64)
loss = F.cross_entropy(logits, target)
loss.backward()
print(f"torch {torch.__version__}")
print(f"loss = {loss.item()!r}")
for row in logits.grad.tolist():
    print("grad row = [" + ", ".join(repr(v) for v in row) + "]")
