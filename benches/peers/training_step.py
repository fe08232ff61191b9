"""The training step of benches/networks.rs in JAX (jit), PyTorch (eager) and
numpy (by hand): Linear -> ReLU -> Linear, softmax cross-entropy, plain SGD
(lr 0.01), float32, the same shapes and batches. Prints samples per second.

Set up once, outside the repository (never needed by cargo test):
    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch jax numpy
Run on one core, in the same session as the Rust bench:
    taskset -c 0 /tmp/peers/bin/python benches/peers/training_step.py
Held to AVX2 on a CPU with AVX-512, both sides:
    NDLAYERS_SIMD=avx2 taskset -c 0 cargo bench --no-default-features --bench networks -- train_step
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        OPENBLAS_CORETYPE=Haswell taskset -c 0 /tmp/peers/bin/python benches/peers/training_step.py
"""

import os

# One thread for every library, before they are imported.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
# Flags already set (e.g. --xla_cpu_max_isa=AVX2) are kept.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
).strip()

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

torch.set_num_threads(1)
NETWORKS = [(64, 128, 10, 64), (784, 256, 10, 128), (784, 1024, 10, 256)]
LR = np.float32(0.01)


def median_rate(step, batch, seconds=3.0):
    """Samples per second of the median of timed runs of `step` (as criterion reports ours)."""
    for _ in range(20):
        step()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            step()
        if time.perf_counter() - t > 0.2:
            break
        n *= 2
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(n):
            step()
        times.append((time.perf_counter() - t) / n)
    return batch / statistics.median(times)


def data(inputs, hidden, classes, batch):
    rng = np.random.default_rng(0)
    x = ((np.arange(batch)[:, None] * 7 + np.arange(inputs)[None, :] * 3) % 17 / 16.0).astype(np.float32)
    y = (np.arange(batch) % classes).astype(np.int64)
    w1 = rng.uniform(-1, 1, (inputs, hidden)).astype(np.float32) * np.sqrt(6 / inputs)
    w2 = rng.uniform(-1, 1, (hidden, classes)).astype(np.float32) * np.sqrt(6 / (hidden + classes))
    return x, y, w1, np.zeros(hidden, np.float32), w2, np.zeros(classes, np.float32)


def numpy_step(x, y, p):
    w1, b1, w2, b2 = p
    h = x @ w1 + b1
    a = np.maximum(h, 0)
    z = a @ w2 + b2
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    prob = e / e.sum(axis=1, keepdims=True)
    g = prob
    g[np.arange(len(y)), y] -= 1
    g /= len(y)
    dw2 = a.T @ g
    db2 = g.sum(0)
    da = g @ w2.T
    dh = da * (h > 0)
    dw1 = x.T @ dh
    db1 = dh.sum(0)
    for param, grad in zip(p, (dw1, db1, dw2, db2)):
        param -= LR * grad


def jax_loss(params, x, y):
    w1, b1, w2, b2 = params
    logits = jax.nn.relu(x @ w1 + b1) @ w2 + b2
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


@jax.jit
def jax_step(params, x, y):
    grads = jax.grad(jax_loss)(params, x, y)
    return tuple(p - LR * g for p, g in zip(params, grads))


print(f"jax {jax.__version__}, torch {torch.__version__}, numpy {np.__version__}; samples/s, one thread, f32")
for inputs, hidden, classes, batch in NETWORKS:
    x, y, *params = data(inputs, hidden, classes, batch)
    rates = {}

    jparams = tuple(jnp.asarray(p) for p in params)
    jx, jy = jnp.asarray(x), jnp.asarray(y.astype(np.int32))
    state = {"p": jparams}

    def run_jax():
        state["p"] = jax_step(state["p"], jx, jy)
        state["p"][0].block_until_ready()

    rates["JAX jit"] = median_rate(run_jax, batch)

    model = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(params[0].T.copy()))
        model[2].weight.copy_(torch.from_numpy(params[2].T.copy()))
    opt = torch.optim.SGD(model.parameters(), lr=float(LR))
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def run_torch():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(tx), ty).backward()
        opt.step()

    rates["PyTorch eager"] = median_rate(run_torch, batch)
    nparams = [p.copy() for p in params]
    rates["numpy"] = median_rate(lambda: numpy_step(x, y, nparams), batch)
    print(f"{inputs}-{hidden}-{classes} batch {batch}: " + ", ".join(f"{k} {v:,.0f}" for k, v in rates.items()))
