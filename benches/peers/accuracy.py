"""PyTorch's float32 sigmoid and tanh on every one of the 2^32 float32 inputs,
measured as tests/exhaustive_f32.rs measures ndlayers: the error against a
float64 evaluation (PyTorch's own, far below a float32 ulp off), in units of
the float32 spacing at the reference (the subnormal spacing below the normal
range). Prints the largest error, where, and how many inputs are 1 ulp or
more off. One thread, in chunks of 2^26 inputs: about 10 minutes.

Set up as for activations.py (outside the repository, never needed by cargo test):
    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch jax numpy
    taskset -c 1 /tmp/peers/bin/python benches/peers/accuracy.py
Which code PyTorch runs depends on the CPU (on Intel CPUs its tanh is MKL's)
and on ATEN_CPU_CAPABILITY / MKL_ENABLE_INSTRUCTIONS, as for the timings.
"""

import numpy as np
import torch

torch.set_num_threads(1)
CHUNK = 1 << 26


def ulp_at(reference):
    """The float32 spacing around each float64 reference: 2^(e - 23) for the
    binade 2^e holding it, at least the subnormal spacing 2^-149."""
    _, exponent = torch.frexp(reference)  # reference = m * 2^exponent, 0.5 <= |m| < 1
    binade = torch.clamp(exponent.to(torch.float64) - 1, min=-126)
    return torch.exp2(binade - 23)


def main():
    worst = {name: (0.0, None) for name in ("sigmoid", "tanh")}
    off = {name: 0 for name in worst}
    for start in range(0, 1 << 32, CHUNK):
        bits = np.arange(start, start + CHUNK, dtype=np.uint64).astype(np.uint32)
        x = torch.from_numpy(bits.view(np.float32))
        finite = torch.isfinite(x)
        x64 = x.double()
        for name, f in (("sigmoid", torch.sigmoid), ("tanh", torch.tanh)):
            got, reference = f(x).double(), f(x64)
            err = torch.where(got == reference, 0.0, (got - reference).abs() / ulp_at(reference))
            err = torch.where(finite, err, 0.0)
            off[name] += int((err >= 1).sum())
            i = int(err.argmax())
            if err[i] > worst[name][0]:
                worst[name] = (float(err[i]), float(x[i]))
    print(f"PyTorch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})")
    for name, (ulps, at) in worst.items():
        print(f"{name}: max error {ulps:.3f} ulp (at x = {at:e}); {off[name]} inputs 1 ulp or more off")


if __name__ == "__main__":
    main()
