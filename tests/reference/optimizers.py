"""Reference trajectories for tests/optimizers.rs: PyTorch's Adam, AdamW and
SGD training a small network, in float64, the last cases with parameter
groups (biases, the one-dimensional parameters, in a group of their own).

Run in a virtual environment outside the repository (never needed by the tests):
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch
    /tmp/venv/bin/python tests/reference/optimizers.py > tests/reference/optimizers.txt

The network is Linear(3, 4) -> Tanh -> Linear(4, 2), mean squared error on
8 fixed samples, full batch. For each case the file holds the starting
state_dict, then the state_dict after steps 1, 10 and 100. Floats are
printed with repr, which round-trips exactly.
"""

import torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
x = torch.linspace(-1.0, 1.0, 24).reshape(8, 3).sin() * 2.0
y = torch.stack([x[:, 0] * x[:, 1], x[:, 2].cos()], dim=1)

CASES = [
    ("adam", torch.optim.Adam, dict(lr=1e-2)),
    ("adam_weight_decay", torch.optim.Adam, dict(lr=1e-2, weight_decay=0.1)),
    ("adamw", torch.optim.AdamW, dict(lr=1e-2)),
    ("adamw_options", torch.optim.AdamW, dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("adamw_groups", torch.optim.AdamW, dict(lr=2e-2, weight_decay=0.1, biases=dict(lr=1e-2, weight_decay=0.0))),
    ("sgd_groups", torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01, biases=dict(lr=0.05, weight_decay=0.0))),
]


def groups(model, options):
    """model.parameters(), or, with `biases` in options, two groups: the
    parameters of more than one axis, and the others with their own options."""
    biases = options.pop("biases", None)
    if biases is None:
        return list(model.parameters()), options
    params = list(model.parameters())
    return [{"params": [p for p in params if p.dim() > 1]}, {"params": [p for p in params if p.dim() <= 1], **biases}], options


def dump(label, model):
    for name, tensor in model.state_dict().items():
        shape = " ".join(str(d) for d in tensor.shape)
        values = " ".join(repr(v) for v in tensor.flatten().tolist())
        print(f"{label} {name} [{shape}] {values}")


print(f"# torch {torch.__version__}")
print("x [8 3] " + " ".join(repr(v) for v in x.flatten().tolist()))
print("y [8 2] " + " ".join(repr(v) for v in y.flatten().tolist()))
for case, optimizer, options in CASES:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    params, options = groups(model, dict(options))
    opt = optimizer(params, **options)
    print(f"case {case}")
    dump("step0", model)
    for step in range(1, 101):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if step in (1, 10, 100):
            dump(f"step{step}", model)
