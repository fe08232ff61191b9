"""Generates tests/reference/pytorch.txt: every activation's forward and
backward as PyTorch computes them, next to the exact values (mpmath, 60
digits, from stable forms of the same formulas), in f32 and f64.

Run it from the repository root in a virtual environment with torch and mpmath:
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch mpmath
    /tmp/venv/bin/python tests/reference/pytorch.py > tests/reference/pytorch.txt

The test tests/pytorch.rs reads the file; it never needs PyTorch.

Format (one record a line, fields separated by spaces, floats as the hex of
their IEEE bits so that NaN, -0 and subnormals survive):
    # comment
    torch VERSION
    elementwise NAME DTYPE x y dy_dx exact_y exact_dy_dx
    normalize NAME DTYPE AXIS ROWS COLS x... g... y... dx... exact_y... exact_dx...
`dy_dx` is PyTorch's backward for an upstream gradient of 1. An exact value
is NaN where the function is undefined (NaN input) and at kinks, where the
derivative is a convention (the test compares PyTorch's there); at ±∞ it is
the limit.
"""
import struct
import sys

import mpmath as mp
import torch
import torch.nn as nn
import torch.nn.functional as F

mp.mp.dps = 60

SELU_ALPHA = mp.mpf("1.6732632423543772848170429916717")
SELU_SCALE = mp.mpf("1.0507009873554804934193349852946")
GELU_C = mp.mpf("0.044715")
SQRT_2_OVER_PI = mp.sqrt(2 / mp.pi)
INF = float("inf")
NAN = float("nan")


def sigmoid(x):
    # No cancellation in either tail.
    return 1 / (1 + mp.exp(-x)) if x >= 0 else mp.exp(x) / (1 + mp.exp(x))


def softplus(x):
    return x + mp.log1p(mp.exp(-x)) if x > 0 else mp.log1p(mp.exp(x))


def gelu_tanh_parts(x):
    u2 = 2 * SQRT_2_OVER_PI * (x + GELU_C * x**3)
    du2 = 2 * SQRT_2_OVER_PI * (1 + 3 * GELU_C * x**2)
    return sigmoid(u2), du2  # ½(1 + tanh u) = σ(2u)


def gelu_tanh(x):
    s, _ = gelu_tanh_parts(x)
    return x * s


def gelu_tanh_d(x):
    s, du2 = gelu_tanh_parts(x)
    return s + x * s * sigmoid(-gelu_tanh_u2(x)) * du2


def gelu_tanh_u2(x):
    return 2 * SQRT_2_OVER_PI * (x + GELU_C * x**3)


def phi(x):
    return mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi)


def cdf(x):
    # mpmath's erfc cannot take arguments past ~1e150 and underflows to 0
    # long before; far out, the asymptotic series is exact to 1e-40.
    if x > 10**100:
        return mp.mpf(1)
    if x < -(10**4):
        # Φ(x) = φ(x)/|x| · Σ (-1)ⁿ (2n-1)!!/x²ⁿ; the fifth term is below 1e-40.
        w = 1 / x**2
        return phi(x) / -x * (1 - w + 3 * w**2 - 15 * w**3 + 105 * w**4)
    return mp.erfc(-x / mp.sqrt(2)) / 2


def mish_d(x):
    t = mp.tanh(softplus(x))
    return t + x * sigmoid(x) * (1 - t * t)


# name: (torch module with default arguments, exact value, exact derivative, kinks)
ELEMENTWISE = {
    "sigmoid": (nn.Sigmoid(), sigmoid, lambda x: sigmoid(x) * sigmoid(-x), []),
    "tanh": (nn.Tanh(), mp.tanh, lambda x: 1 / mp.cosh(x) ** 2, []),
    "relu": (nn.ReLU(), lambda x: max(x, 0), lambda x: 1 if x > 0 else 0, [0]),
    "leaky_relu": (nn.LeakyReLU(), lambda x: x if x > 0 else x / 100, lambda x: 1 if x > 0 else mp.mpf(1) / 100, [0]),
    "elu": (nn.ELU(), lambda x: x if x > 0 else mp.expm1(x), lambda x: 1 if x > 0 else mp.exp(x), [0]),
    "selu": (
        nn.SELU(),
        lambda x: SELU_SCALE * (x if x > 0 else SELU_ALPHA * mp.expm1(x)),
        lambda x: SELU_SCALE * (1 if x > 0 else SELU_ALPHA * mp.exp(x)),
        [0],
    ),
    "celu": (nn.CELU(), lambda x: x if x > 0 else mp.expm1(x), lambda x: 1 if x > 0 else mp.exp(x), [0]),
    "gelu": (nn.GELU(), lambda x: x * cdf(x), lambda x: cdf(x) + x * phi(x), []),
    "gelu_tanh": (nn.GELU(approximate="tanh"), gelu_tanh, gelu_tanh_d, []),
    "silu": (nn.SiLU(), lambda x: x * sigmoid(x), lambda x: sigmoid(x) * (1 + x * sigmoid(-x)), []),
    "mish": (nn.Mish(), lambda x: x * mp.tanh(softplus(x)), mish_d, []),
    "softplus": (
        nn.Softplus(),
        lambda x: x if x > 20 else softplus(x),
        lambda x: 1 if x > 20 else sigmoid(x),
        [20],
    ),
    "softsign": (nn.Softsign(), lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2, []),
    "hardtanh": (nn.Hardtanh(), lambda x: min(max(x, -1), 1), lambda x: 1 if -1 < x < 1 else 0, [-1, 1]),
    "relu6": (nn.ReLU6(), lambda x: min(max(x, 0), 6), lambda x: 1 if 0 < x < 6 else 0, [0, 6]),
    "hardsigmoid": (
        nn.Hardsigmoid(),
        lambda x: min(max(x + 3, 0), 6) / 6,
        lambda x: mp.mpf(1) / 6 if -3 < x < 3 else 0,
        [-3, 3],
    ),
    "hardswish": (
        nn.Hardswish(),
        lambda x: x * min(max(x + 3, 0), 6) / 6,
        lambda x: 0 if x < -3 else (1 if x > 3 else x / 3 + mp.mpf(1) / 2),
        [-3, 3],
    ),
    "logsigmoid": (nn.LogSigmoid(), lambda x: -softplus(-x), lambda x: sigmoid(-x), []),
    "prelu": (nn.PReLU(), lambda x: x if x > 0 else x / 4, lambda x: 1 if x > 0 else mp.mpf(1) / 4, [0]),
}

# Points where the functions change character, the values the issues named,
# tiny and huge magnitudes, and the specials.
POINTS = sorted(
    set(
        [i / 4 for i in range(-80, 81)]
        + [-120, -110, -104, -103, -100, -90, -88, -87.5, -80, -60, -50, -40, -37.6, -37.5, -30, -25, -17]
        + [-13.09, -13.5, -9.5, -8.91, -8.5, -7.5, -5.5, -3.5, -2.9, -1e-3, -1e-8, 1e-8, 1e-3]
        + [2.9, 3.5, 4.97, 5.5, 7.5, 8.14, 8.49, 9.01, 9.5, 12.5, 16.64, 17.33, 25, 30, 40, 50, 60, 100, 1e3]
        + [1e-20, -1e-20, 1e-38, -1e-38, 1e-45, -1e-45, 1e-300, -1e-300, 5e-324, -5e-324]
        + [1e10, -1e10, 1e30, -1e30, 3e38, -3e38, 1e300, -1e300]
    )
) + [0.0, -0.0, INF, -INF, NAN]


def hexbits(v, dtype):
    if dtype == "f32":
        return "%08x" % struct.unpack("<I", struct.pack("<f", v))[0]
    return "%016x" % struct.unpack("<Q", struct.pack("<d", v))[0]


def exact(f, x, dtype, kinks):
    """f at the float x, rounded to the dtype, or NaN where undefined or conventional."""
    if x != x or (kinks and any(x == k for k in kinks)):
        return NAN
    if x in (INF, -INF):
        # Limits, from a point far enough that every function has settled.
        big = mp.mpf(10) ** 80 * (1 if x > 0 else -1)
        v = f(big)
        v = mp.mpf(0) if abs(v) < mp.mpf(10) ** -70 else v
        return INF * (1 if v > 0 else -1) if abs(v) > 10**70 else round_to(v, dtype)
    return round_to(f(mp.mpf(x)), dtype)


FORMATS = {"f32": (24, -126, 128), "f64": (53, -1022, 1024)}  # precision, min and max+1 exponent


def round_to(v, dtype, x=None):
    """The exact value v correctly rounded to the dtype (subnormals and overflow included)."""
    v = mp.mpf(v)
    if v == 0:
        return 0.0
    prec, emin, emax = FORMATS[dtype]
    if abs(v) < mp.mpf(2) ** emin:
        quantum = mp.mpf(2) ** (emin - prec + 1)
        r = mp.nint(v / quantum) * quantum
    else:
        with mp.workprec(prec):
            r = +v
    if abs(r) >= mp.mpf(2) ** emax:
        return INF if v > 0 else -INF
    return float(r) if r != 0 else (-0.0 if v < 0 else 0.0)


def elementwise():
    for name, (module, f, df, kinks) in ELEMENTWISE.items():
        for dtype, tdtype in (("f32", torch.float32), ("f64", torch.float64)):
            x = torch.tensor(POINTS, dtype=tdtype, requires_grad=True)
            m = module.to(tdtype)
            y = m(x)
            y.backward(torch.ones_like(y))
            for xi, yi, gi in zip(x.detach().tolist(), y.detach().tolist(), x.grad.tolist()):
                ey = exact(f, xi, dtype, [])
                # Derivatives at kinks are conventions: no exact value.
                edy = exact(df, xi, dtype, kinks)
                fields = [xi, yi, gi, ey, edy]
                print("elementwise", name, dtype, " ".join(hexbits(v, dtype) for v in fields))


SPECIAL_ROWS = [
    [0.5, -1.0, 2.0, 0.0, 3.0, -4.0, 1.25],
    [1000.0, 999.0, -1000.0, 0.0, 1e-7, 3.5, 1000.0],
    [-30.0, 30.0, -1e30, 1e-30, 20.0, 19.5, -20.0],
    [1e38, -1e38, 3e38, 0.0, 1.0, 2.0, 3.0],
    [INF, 0.0, 1.0, 2.0, -INF, 3.0, 4.0],
    [-INF, -1.0, 0.0, 1.0, 2.0, -3.0, 5.0],
    [NAN, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
    [-88.0, -104.0, 0.0, -80.0, -700.0, -745.0, -50.0],
]
GRAD = [[((r * 7 + c) % 5 - 2) * 0.375 + 0.125 for c in range(7)] for r in range(8)]

NORMALIZE = {
    "softmax": (lambda x, d: F.softmax(x, dim=d), "softmax"),
    "log_softmax": (lambda x, d: F.log_softmax(x, dim=d), "log_softmax"),
    "softmin": (lambda x, d: F.softmin(x, dim=d), "softmin"),
}


def exact_normalize(kind, lane, glane):
    """(y, dx) for one lane, exact; NaN everywhere if the lane holds NaN.

    Infinities are taken as the limit: ±10^100 stands for ±∞."""
    if any(v != v for v in lane):
        n = len(lane)
        return [NAN] * n, [NAN] * n
    big = mp.mpf(10) ** 100
    xs = [big if v == INF else -big if v == -INF else mp.mpf(v) for v in lane]
    gs = [mp.mpf(v) for v in glane]
    if kind == "softmin":
        xs = [-v for v in xs]
    m = max(xs)
    e = [mp.exp(v - m) for v in xs]
    s = sum(e)
    p = [v / s for v in e]
    if kind == "log_softmax":
        y = [v - m - mp.log(s) for v in xs]
        gsum = sum(gs)
        dx = [g - pi * gsum for g, pi in zip(gs, p)]
    else:
        y = p
        dot = sum(g * pi for g, pi in zip(gs, p))
        dx = [pi * (g - dot) for g, pi in zip(gs, p)]
        if kind == "softmin":
            dx = [-v for v in dx]
    # -10^100 - max - log(s) stands for -∞.
    y = [-INF if v < -(10**90) else v for v in y]
    return y, dx


def normalize():
    for name, (f, kind) in NORMALIZE.items():
        for dtype, tdtype in (("f32", torch.float32), ("f64", torch.float64)):
            for axis in (0, 1):
                rows = [[float(torch.tensor(v, dtype=tdtype)) for v in row] for row in SPECIAL_ROWS]
                x = torch.tensor(rows, dtype=tdtype, requires_grad=True)
                g = torch.tensor(GRAD, dtype=tdtype)
                y = f(x, axis)
                y.backward(g)
                nr, nc = len(rows), len(rows[0])
                ey = [[NAN] * nc for _ in range(nr)]
                edx = [[NAN] * nc for _ in range(nr)]
                lanes = range(nr) if axis == 1 else range(nc)
                for lane in lanes:
                    idx = [(lane, c) for c in range(nc)] if axis == 1 else [(r, lane) for r in range(nr)]
                    xl = [rows[r][c] for r, c in idx]
                    gl = [float(g[r, c]) for r, c in idx]
                    yl, dxl = exact_normalize(kind, xl, gl)
                    for (r, c), yv, dv in zip(idx, yl, dxl):
                        ey[r][c] = NAN if yv != yv else round_to(yv, dtype)
                        edx[r][c] = NAN if dv != dv else round_to(dv, dtype)
                flat = lambda a: [v for row in a for v in row]
                fields = flat(rows) + flat(g.tolist()) + flat(y.detach().tolist()) + flat(x.grad.tolist())
                fields += flat(ey) + flat(edx)
                print(
                    "normalize", name, dtype, axis, nr, nc, " ".join(hexbits(v, dtype) for v in fields)
                )


if __name__ == "__main__":
    print("# Generated by tests/reference/pytorch.py; do not edit.")
    print("torch", torch.__version__.split("+")[0])
    elementwise()
    normalize()
    sys.stdout.flush()
