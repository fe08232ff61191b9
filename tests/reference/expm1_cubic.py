"""Fits Q in e^r - 1 = r + r²/2 + r³·Q(r) on |r| <= ln2/2 for f32 (the
double-word expm1 of the faithful sigmoid and tanh, `EXPM1_CUBIC` in
src/real.rs), minimising the error of r³·Q(r) relative to e^r - 1.

Lawson's iteration (iteratively reweighted least squares, which converges to
the minimax solution) on 4000 Chebyshev points, against values computed with
mpmath at 40 digits; then the coefficients are rounded to f32 and the error
re-measured with them. Run: python3 tests/reference/expm1_cubic.py
(needs numpy and mpmath; prints the coefficients and both errors as powers of 2).
"""
import math
import sys

import mpmath
import numpy as np

mpmath.mp.dps = 40
# `python3 expm1_cubic.py 3 exp`: degree 3, error relative to e^r (the sigmoid's need).
DEGREE = int(sys.argv[1]) if len(sys.argv) > 1 else 4
RELATIVE_TO = sys.argv[2] if len(sys.argv) > 2 else "expm1"
H = math.log(2) / 2
N = 4000

r = H * np.cos(np.pi * (np.arange(N) + 0.5) / N)
exact_expm1 = np.array([float(mpmath.expm1(mpmath.mpf(v))) for v in r])
if RELATIVE_TO == "exp":
    exact_expm1 = exact_expm1 + 1.0
# e^r - 1 - r - r²/2, the part r³·Q(r) must supply, without cancellation.
tail = np.array([float(mpmath.expm1(mpmath.mpf(v)) - mpmath.mpf(v) - mpmath.mpf(v) ** 2 / 2) for v in r])
basis = np.stack([r**3 * r**j for j in range(DEGREE + 1)], axis=1) / exact_expm1[:, None]
target = tail / exact_expm1


def relative_error(q):
    q = np.asarray(q, dtype=np.float64)
    return np.abs(basis @ q - target)


weights = np.full(N, 1.0 / N)
for _ in range(200):
    sw = np.sqrt(weights)
    q, *_ = np.linalg.lstsq(basis * sw[:, None], target * sw, rcond=None)
    err = relative_error(q)
    weights *= err
    weights /= weights.sum()

rounded = np.float32(q).astype(np.float64)
print("coefficients (f32):", ", ".join(repr(float(np.float32(c))) for c in q))
print(f"relative error: 2^{math.log2(relative_error(q).max()):.1f} fitted, "
      f"2^{math.log2(relative_error(rounded).max()):.1f} with f32 coefficients")
