"""The 18 cases of benches/activations.rs in PyTorch (allocating and `out=`)
and JAX (jit): sigmoid, tanh and relu forward and backward on 256x4096 and
4096x4096, softmax forward and backward on 65536x10, 4096x1000 and 256x32768;
float32, one thread, the same inputs (`inputs` below and `inputs` in the Rust
bench compute the same values) and the same timing method as criterion there
(10 samples of n calls each after a warm-up, the median of the per-call times).

Set up once, outside the repository (never needed by cargo test):
    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch jax numpy
Run on one core, in the same session as the Rust bench:
    taskset -c 0 cargo bench --bench activations
    taskset -c 0 /tmp/peers/bin/python benches/peers/activations.py target/peers.json
    python3 benches/table.py --peers target/peers.json
Held to AVX2 on a CPU with AVX-512, both sides:
    NDLAYERS_SIMD=avx2 taskset -c 0 cargo bench --bench activations
    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 XLA_FLAGS=--xla_cpu_max_isa=AVX2 \\
        taskset -c 0 /tmp/peers/bin/python benches/peers/activations.py target/peers-avx2.json
(On Intel CPUs PyTorch's tanh is MKL's, which ATEN_CPU_CAPABILITY does not
cap; MKL_ENABLE_INSTRUCTIONS does.)

The backward of each peer is what its autograd runs, given what it caches:
PyTorch's `sigmoid_backward` / `tanh_backward` (from the output),
`threshold_backward` (from the input) and `_softmax_backward_data`; JAX's
rules written out under `jit` (`g·y·(1-y)`, `g·(1-y²)`, `where(x > 0, g, 0)`,
`y·(g - Σ g·y)`), which is what `jax.grad` traces for them.
"""

import json
import os
import statistics
import sys

# One thread for every library, before they are imported.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

torch.set_num_threads(1)
ELEMENTWISE_SHAPES = [(256, 4096), (4096, 4096)]
SOFTMAX_SHAPES = [(65536, 10), (4096, 1000), (256, 32768)]
SAMPLES = 10
SAMPLE_SECONDS = 0.2


def inputs(shape, seed):
    """Uniform in [-8, 8): the top 24 bits of a multiplicative hash of the
    element's row-major index and the seed, as `inputs` in benches/activations.rs."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    i = np.arange(shape[0] * shape[1], dtype=np.uint64) + np.uint64(seed * 0x9E3779B97F4A7C15 % 2**64)
    h = i * golden
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    top = (h >> np.uint64(40)).astype(np.float64)
    return (top / 2.0**24 * 16.0 - 8.0).astype(np.float32).reshape(shape)


def median_seconds(call):
    """Criterion's scheme, simplified: warm up, pick n so that n calls take
    about SAMPLE_SECONDS, then the median over SAMPLES samples of time / n."""
    for _ in range(3):
        call()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            call()
        if time.perf_counter() - t > SAMPLE_SECONDS / 4:
            break
        n *= 2
    n *= 4
    times = []
    for _ in range(SAMPLES):
        t = time.perf_counter()
        for _ in range(n):
            call()
        times.append((time.perf_counter() - t) / n)
    return statistics.median(times)


def torch_cases(name, x, g):
    """{path: callable} for PyTorch's forward or backward of `name`."""
    aten = torch.ops.aten
    out = torch.empty_like(x)
    if name == "sigmoid_forward":
        return {"torch_alloc": lambda: torch.sigmoid(x), "torch_out": lambda: torch.sigmoid(x, out=out)}
    if name == "tanh_forward":
        return {"torch_alloc": lambda: torch.tanh(x), "torch_out": lambda: torch.tanh(x, out=out)}
    if name == "relu_forward":
        # torch.relu has no out= overload; clamp_min(x, 0) is the same kernel family.
        return {"torch_alloc": lambda: torch.relu(x), "torch_out": lambda: torch.clamp_min(x, 0.0, out=out)}
    if name == "softmax_forward":
        return {
            "torch_alloc": lambda: torch.softmax(x, 1),
            "torch_out": lambda: aten._softmax.out(x, 1, False, out=out),
        }
    y = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": lambda v: v,  # relu's backward reads the input
        "softmax": lambda v: torch.softmax(v, 1),
    }[name.split("_")[0]](x)
    if name == "sigmoid_backward":
        return {
            "torch_alloc": lambda: aten.sigmoid_backward(g, y),
            "torch_out": lambda: aten.sigmoid_backward.grad_input(g, y, grad_input=out),
        }
    if name == "tanh_backward":
        return {
            "torch_alloc": lambda: aten.tanh_backward(g, y),
            "torch_out": lambda: aten.tanh_backward.grad_input(g, y, grad_input=out),
        }
    if name == "relu_backward":
        return {
            "torch_alloc": lambda: aten.threshold_backward(g, y, 0.0),
            "torch_out": lambda: aten.threshold_backward.grad_input(g, y, 0.0, grad_input=out),
        }
    return {
        "torch_alloc": lambda: aten._softmax_backward_data(g, y, 1, torch.float32),
        "torch_out": lambda: aten._softmax_backward_data.out(g, y, 1, torch.float32, grad_input=out),
    }


JAX_FORWARD = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softmax": lambda v: jax.nn.softmax(v, axis=1),
}
JAX_BACKWARD = {
    "sigmoid": lambda y, g: g * y * (1 - y),
    "tanh": lambda y, g: g * (1 - y * y),
    "relu": lambda x, g: jnp.where(x > 0, g, 0),
    "softmax": lambda y, g: y * (g - jnp.sum(g * y, axis=1, keepdims=True)),
}


def jax_case(name, x, g):
    layer, direction = name.split("_")
    forward = jax.jit(JAX_FORWARD[layer])
    jx = jnp.asarray(x)
    if direction == "forward":
        return lambda: forward(jx).block_until_ready()
    cached = jx if layer == "relu" else forward(jx)
    backward = jax.jit(JAX_BACKWARD[layer])
    jg = jnp.asarray(g)
    return lambda: backward(cached, jg).block_until_ready()


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else None
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__} ({capability}), jax {jax.__version__}; median ns per element, one thread, f32")
    results = {"torch": torch.__version__, "torch_capability": capability, "jax": jax.__version__, "cases": {}}
    cases = [(f"{layer}_{d}", shape) for layer in ("sigmoid", "tanh", "relu") for shape in ELEMENTWISE_SHAPES for d in ("forward", "backward")]
    cases += [(f"softmax_{d}", shape) for shape in SOFTMAX_SHAPES for d in ("forward", "backward")]
    for name, shape in cases:
        x = inputs(shape, 1 if "softmax" not in name else 3)
        g = inputs(shape, 2 if "softmax" not in name else 4)
        calls = torch_cases(name, torch.from_numpy(x), torch.from_numpy(g))
        calls["jax"] = jax_case(name, x, g)
        seconds = {path: median_seconds(call) for path, call in calls.items()}
        key = f"{name}_{shape[0]}x{shape[1]}"
        results["cases"][key] = seconds
        elements = shape[0] * shape[1]
        print(f"{key}: " + ", ".join(f"{p} {s / elements * 1e9:.3f}" for p, s in seconds.items()), flush=True)
    if out_path:
        with open(out_path, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
