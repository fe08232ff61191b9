"""Reference values for the CNN layers (tests/cnn.rs), from PyTorch.

Writes tests/reference/cnn.txt: one tensor a line,
    <case>/<tensor> <dtype> [<shape>] <values...>
values in row-major order, printed exactly (repr of the float). For every
case: the inputs (x, weight, bias, upstream gradient g) and what PyTorch
computed from them (y, dx and the parameter gradients; running statistics
for BatchNorm). Run with PyTorch 2.15 (CPU, its default oneDNN/native
kernels):  python tests/reference/cnn.py
"""
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_num_threads(1)
lines = []


def put(case, name, t):
    t = t.detach().contiguous()
    dtype = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64"}[t.dtype]
    if t.dtype == torch.float32:
        values = " ".join(repr(float(v)) for v in t.flatten().tolist())
    else:
        values = " ".join(repr(v) for v in t.flatten().tolist())
    shape = " ".join(str(d) for d in t.shape)
    lines.append(f"{case}/{name} {dtype} [{shape}] {values}")


def conv(case, dtype, n, cin, cout, hw, k, stride=1, padding=0, dilation=1, groups=1, bias=True):
    x = torch.randn(n, cin, *hw, dtype=dtype, requires_grad=True)
    w = (torch.randn(cout, cin // groups, *k, dtype=dtype) * 0.5).requires_grad_()
    b = (torch.randn(cout, dtype=dtype) * 0.5).requires_grad_() if bias else None
    y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    g = torch.randn_like(y)
    y.backward(g)
    c = f"conv.{case}.{'f32' if dtype == torch.float32 else 'f64'}"
    lines.append(f"# {c}: stride {stride} padding {padding} dilation {dilation} groups {groups}")
    put(c, "x", x)
    put(c, "weight", w)
    if bias:
        put(c, "bias", b)
    put(c, "g", g)
    put(c, "y", y)
    put(c, "dx", x.grad)
    put(c, "dweight", w.grad)
    if bias:
        put(c, "dbias", b.grad)


def pool(case, dtype, kind, x, kernel, stride=None, padding=0):
    x = x.to(dtype).requires_grad_()
    f = F.max_pool2d if kind == "max" else F.avg_pool2d
    y = f(x, kernel, stride, padding)
    g = torch.randn_like(y)
    y.backward(g)
    c = f"{kind}pool.{case}.{'f32' if dtype == torch.float32 else 'f64'}"
    put(c, "x", x)
    put(c, "g", g)
    put(c, "y", y)
    put(c, "dx", x.grad)


def batch_norm(case, dtype, shape, batches=3, constant_channel=False):
    channels = shape[1]
    bn = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(channels).to(dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(channels, dtype=dtype) * 0.5 + 1)
        bn.bias.copy_(torch.randn(channels, dtype=dtype) * 0.5)
    c = f"batchnorm.{case}.{'f32' if dtype == torch.float32 else 'f64'}"
    put(c, "weight", bn.weight)
    put(c, "bias", bn.bias)
    for step in range(batches + 1):
        training = step < batches
        bn.train(training)
        x = torch.randn(*shape, dtype=dtype) * 2 + 1
        if constant_channel:
            x[:, 0] = 3.0
        x.requires_grad_()
        bn.zero_grad()
        y = bn(x)
        g = torch.randn_like(y)
        y.backward(g)
        s = f"{c}.{'train' if training else 'eval'}{step}"
        put(s, "x", x)
        put(s, "g", g)
        put(s, "y", y)
        put(s, "dx", x.grad)
        put(s, "dweight", bn.weight.grad)
        put(s, "dbias", bn.bias.grad)
        put(s, "running_mean", bn.running_mean)
        put(s, "running_var", bn.running_var)
        put(s, "num_batches_tracked", bn.num_batches_tracked)


for dtype in (torch.float32, torch.float64):
    conv("basic", dtype, 2, 3, 4, (5, 6), (3, 3))
    conv("strided", dtype, 2, 2, 3, (7, 5), (2, 3), stride=(2, 1), padding=(1, 2))
    conv("dilated", dtype, 1, 2, 2, (8, 8), (3, 3), padding=2, dilation=2)
    conv("groups", dtype, 2, 4, 6, (5, 5), (3, 2), groups=2)
    conv("depthwise", dtype, 2, 3, 3, (6, 6), (3, 3), padding=1, groups=3)
    conv("multiplier", dtype, 1, 2, 4, (5, 4), (3, 3), stride=2, padding=1, groups=2)
    conv("nobias", dtype, 3, 2, 2, (4, 5), (1, 1), bias=False)
    conv("batch1", dtype, 1, 1, 5, (9, 7), (4, 2), stride=(3, 2), padding=(1, 0), dilation=(1, 2))

    pool("plain", dtype, "max", torch.randn(2, 3, 6, 6), 2)
    pool("overlap", dtype, "max", torch.randn(2, 2, 7, 5), 3, 2, 1)
    ties = torch.randint(0, 3, (1, 2, 6, 6)).float()
    pool("ties", dtype, "max", ties, 3, 1, 1)
    nans = torch.randn(1, 2, 6, 6)
    nans[0, 0, 0, 1] = nans[0, 0, 1, 0] = float("nan")
    nans[0, 1, 3, 3] = float("nan")
    nans[0, 1, 2, 2] = float("inf")
    pool("nan", dtype, "max", nans, 2, 2, 1)
    pool("overlap", dtype, "avg", torch.randn(2, 2, 7, 5), 3, 2, 1)
    pool("rect", dtype, "avg", torch.randn(1, 3, 5, 7), (2, 3), (1, 2))

    batch_norm("images", dtype, (4, 3, 5, 5))
    batch_norm("rows", dtype, (16, 5))
    batch_norm("constant", dtype, (3, 2, 2, 3), constant_channel=True)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cnn.txt")
with open(out, "w") as f:
    f.write(f"# PyTorch {torch.__version__}, tests/reference/cnn.py\n")
    f.write("\n".join(lines) + "\n")
print(f"wrote {len(lines)} lines to {out}")
